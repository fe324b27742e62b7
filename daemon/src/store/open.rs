//! Creating and opening the data directory's store: `init` makes a new
//! one, `open_or_init` opens what is there. Neither ever re-initialises an
//! existing data directory, even a broken one: a store that does not open
//! is reported and left exactly as it was.

use std::path::{Path, PathBuf};

use super::files::{self, DataDir, DirState};
use super::{Store, StoreError};

/// What `init` did.
#[derive(Debug, PartialEq, Eq)]
pub enum InitOutcome {
    /// A new store was made; the key came from (or was written to) this path.
    Created { key_path: PathBuf, key_written: bool },
    /// The directory already held a store; nothing was changed.
    AlreadyInitialised,
}

/// Creates the data directory (0700), the master key (0600) unless it comes
/// from elsewhere, and the database. Changes nothing in a directory that
/// already holds a store, and refuses one that holds anything else.
pub fn init(data_dir: &DataDir, key_file: Option<&Path>) -> Result<InitOutcome, StoreError> {
    match data_dir.state()? {
        DirState::Store => return Ok(InitOutcome::AlreadyInitialised),
        DirState::NotAStore => {
            return Err(StoreError::NotAStore {
                path: data_dir.path().to_path_buf(),
            });
        }
        DirState::Missing | DirState::Empty => {}
    }
    data_dir.create_private()?;
    let key_path = files::resolve_key_path(key_file, data_dir);
    let (master, key_written) = if key_path.exists() {
        (files::load_master_key(&key_path)?, false)
    } else {
        (files::write_new_key(&key_path)?, true)
    };
    // Build the database under a temporary name and rename it into place, so
    // a crash never leaves a half-made hearth.db behind.
    let staging = data_dir.path().join(format!("{}.init", files::DB_FILE));
    drop(Store::create(&staging, &master)?);
    // SQLite gives the -wal and -shm files the database's own mode.
    std::fs::set_permissions(&staging, std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(|e| {
        StoreError::Io {
            path: staging.clone(),
            source: e,
        }
    })?;
    std::fs::rename(&staging, data_dir.db_path()).map_err(|e| StoreError::Io {
        path: staging.clone(),
        source: e,
    })?;
    files::sync_parent(&data_dir.db_path())?;
    tracing::info!(key_written, "data directory initialised");
    Ok(InitOutcome::Created {
        key_path,
        key_written,
    })
}

/// Opens the store in `data_dir`, initialising it first only if the
/// directory is missing or empty.
pub fn open_or_init(data_dir: &DataDir, key_file: Option<&Path>) -> Result<Store, StoreError> {
    match data_dir.state()? {
        DirState::Missing | DirState::Empty => {
            init(data_dir, key_file)?;
        }
        DirState::NotAStore => {
            return Err(StoreError::NotAStore {
                path: data_dir.path().to_path_buf(),
            });
        }
        DirState::Store => {}
    }
    data_dir.check_permissions()?;
    let db = data_dir.db_path();
    // Passphrase mode: the master key is derived, and there is no key file.
    let key_path = files::resolve_key_path(key_file, data_dir);
    let passphrase_mode = if key_path.exists() && files::passphrase_path().is_none() {
        None
    } else {
        files::passphrase_kdf(&db)?
    };
    if let Some(kdf) = passphrase_mode {
        let path =
            files::passphrase_path().ok_or_else(|| StoreError::PassphraseMissing { db_path: db.clone() })?;
        let passphrase = files::read_passphrase(&path)?;
        let master = crate::store::MasterKey::from_passphrase(passphrase.as_bytes(), &kdf)?;
        return Store::open(&db, &master, &path);
    }
    let pending = files::pending_key_path(&key_path);
    if !key_path.exists() && pending.exists() {
        // A rewrap that stopped after the store took the new key but before
        // the key file was renamed into place.
        std::fs::rename(&pending, &key_path).map_err(|e| StoreError::key_io(&key_path, e))?;
    }
    let master = files::load_master_key(&key_path)?;
    match Store::open(&db, &master, &key_path) {
        Err(StoreError::WrongKey { .. }) if pending.exists() => {
            let next = files::load_master_key(&pending)?;
            let store = Store::open(&db, &next, &pending)?;
            std::fs::rename(&pending, &key_path).map_err(|e| StoreError::key_io(&key_path, e))?;
            files::sync_parent(&key_path)?;
            Ok(store)
        }
        other => other,
    }
}
