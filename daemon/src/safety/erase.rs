//! `hearth erase`: crypto-erase first, then the files.
//!
//! 1. The data keys are destroyed inside the database: their wrapped copies
//!    are overwritten with zeros and deleted (SQLite's `secure_delete` is
//!    on), and the write-ahead log is folded in and truncated.
//! 2. The master key file is overwritten with random bytes, synced, and
//!    removed. (A master key given as a systemd credential cannot be
//!    removed from here; step 1 already made it useless, and the summary
//!    says so.)
//! 3. Every file in the data directory is removed: the database and its
//!    WAL, the CA and server certificates, the setup code. The directory
//!    itself stays, empty and private, so `hearth run` starts as a fresh
//!    install.
//!
//! 4. Every backup `hearth backup create` wrote (listed in the data
//!    directory, and still starting with the backup header) is overwritten
//!    and removed. A backup copied elsewhere, or downloaded from the
//!    dashboard, is out of hearth's reach: it stays sealed under its
//!    passphrase.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::store::files::resolve_key_path;
use crate::store::{DataDir, DirState, StoreError};

/// What an erase did.
#[derive(Debug, serde::Serialize)]
pub struct Erased {
    /// Data keys destroyed inside the database.
    pub data_keys_destroyed: usize,
    /// The master key file overwritten and removed, if hearth owned it.
    pub master_key_removed: Option<PathBuf>,
    /// A master key hearth cannot remove (a systemd credential).
    pub master_key_elsewhere: Option<PathBuf>,
    /// Files removed from the data directory.
    pub files_removed: usize,
    /// Backups hearth wrote, overwritten and removed.
    pub backups_removed: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("{0} holds no hearth store: there is nothing to erase")]
    Nothing(String),
    #[error("hearth is running on {0}: stop it first (systemctl stop hearth, or Ctrl-C)")]
    Running(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("erasing {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EraseError + '_ {
    move |source| EraseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Erases the store in `data_dir`; `key_file` is the configured master key
/// path, if any.
pub fn erase(data_dir: &DataDir, key_file: Option<&Path>) -> Result<Erased, EraseError> {
    let dir = data_dir.path();
    if data_dir.state()? != DirState::Store {
        return Err(EraseError::Nothing(dir.display().to_string()));
    }
    let socket = dir.join(crate::store::files::ADMIN_SOCKET);
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return Err(EraseError::Running(dir.display().to_string()));
    }

    // 1. The data keys, inside the database.
    let db = data_dir.db_path();
    let data_keys_destroyed = {
        let conn = rusqlite::Connection::open(&db).map_err(|e| EraseError::Store(e.into()))?;
        let sql = |e: rusqlite::Error| EraseError::Store(e.into());
        conn.pragma_update(None, "secure_delete", "ON").map_err(sql)?;
        conn.execute("UPDATE data_keys SET wrapped = zeroblob(length(wrapped))", [])
            .map_err(sql)?;
        let n = conn.execute("DELETE FROM data_keys", []).map_err(sql)?;
        conn.execute_batch("DELETE FROM meta; PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(sql)?;
        n
    };

    // 2. The master key.
    let key_path = resolve_key_path(key_file, data_dir);
    let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(PathBuf::from)
        .is_some_and(|c| key_path.starts_with(c));
    let (master_key_removed, master_key_elsewhere) = if credential {
        (None, Some(key_path))
    } else if key_path.exists() {
        let len = fs::metadata(&key_path).map_err(io(&key_path))?.len() as usize;
        let mut noise = vec![0u8; len.max(64)];
        crate::store::crypto::fill_random(&mut noise).map_err(|e| EraseError::Store(e.into()))?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&key_path)
            .map_err(io(&key_path))?;
        f.write_all(&noise).map_err(io(&key_path))?;
        f.sync_all().map_err(io(&key_path))?;
        drop(f);
        fs::remove_file(&key_path).map_err(io(&key_path))?;
        (Some(key_path), None)
    } else {
        (None, None)
    };

    // 4 (before the list goes with the rest). The backups hearth wrote.
    let mut backups_removed = Vec::new();
    for path in crate::safety::backup::known(data_dir) {
        overwrite_and_remove(&path)?;
        backups_removed.push(path);
    }

    // 3. Everything else in the data directory.
    let mut files_removed = 0;
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            files_removed += count_files(&path);
            fs::remove_dir_all(&path).map_err(io(&path))?;
        } else {
            fs::remove_file(&path).map_err(io(&path))?;
            files_removed += 1;
        }
    }
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Erased {
        data_keys_destroyed,
        master_key_removed,
        master_key_elsewhere,
        files_removed,
        backups_removed,
    })
}

/// The dashboard's erase, inside a running hearth: the keys in the store
/// (already destroyed by the caller through `Store::destroy_keys`), then
/// the master key file and the known backups. The files go when hearth has
/// stopped ([`remove_files`]).
pub fn shred_keys_and_backups(data_dir: &DataDir, key_file: Option<&Path>) -> Result<(), EraseError> {
    let key_path = resolve_key_path(key_file, data_dir);
    let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(PathBuf::from)
        .is_some_and(|c| key_path.starts_with(c));
    if !credential && key_path.exists() {
        overwrite_and_remove(&key_path)?;
    }
    for path in crate::safety::backup::known(data_dir) {
        overwrite_and_remove(&path)?;
    }
    Ok(())
}

/// Removes every file in the data directory, which stays, empty.
pub fn remove_files(data_dir: &DataDir) -> Result<usize, EraseError> {
    let dir = data_dir.path();
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            removed += count_files(&path);
            fs::remove_dir_all(&path).map_err(io(&path))?;
        } else {
            fs::remove_file(&path).map_err(io(&path))?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn overwrite_and_remove(path: &Path) -> Result<(), EraseError> {
    let len = fs::metadata(path).map_err(io(path))?.len() as usize;
    let mut noise = vec![0u8; len.clamp(64, 1 << 20)];
    crate::store::crypto::fill_random(&mut noise).map_err(|e| EraseError::Store(e.into()))?;
    let mut f = fs::OpenOptions::new().write(true).open(path).map_err(io(path))?;
    let mut left = len.max(64);
    while left > 0 {
        let n = left.min(noise.len());
        f.write_all(&noise[..n]).map_err(io(path))?;
        left -= n;
    }
    f.sync_all().map_err(io(path))?;
    drop(f);
    fs::remove_file(path).map_err(io(path))
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() { count_files(&p) } else { 1 }
                })
                .sum()
        })
        .unwrap_or(0)
}
