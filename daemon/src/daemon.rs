//! The daemon: finds or creates the store, starts every service under the
//! supervisor, and stops them on request.
//!
//! It must never re-initialise an existing data directory, even a broken one:
//! a store that does not open is reported and left exactly as it was.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::store::files::{self, DataDir, DirState};
use crate::store::{Store, StoreError};
use crate::supervisor::{self, Supervisor, SupervisorError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
}

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
    let key_path = files::resolve_key_path(key_file, data_dir);
    let master = files::load_master_key(&key_path)?;
    Store::open(&data_dir.db_path(), &master, &key_path)
}

/// Runs the daemon until `shutdown` is cancelled, then drains its tasks
/// within the configured grace period.
pub async fn run(config: Config, store: Store, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let supervisor = Supervisor::new(shutdown.clone());
    supervisor::notify::spawn_watchdog(&supervisor);

    for setting in config.warnings() {
        tracing::warn!(setting, "protection lowered by configuration");
    }
    let devices = store.devices()?.len();
    tracing::info!(devices, key_id = %store.key_id(), "hearth running");
    supervisor::notify::ready();

    shutdown.cancelled().await;
    tracing::info!("stopping");
    supervisor::notify::stopping();
    supervisor.shutdown(config.shutdown_grace).await?;
    drop(store);
    tracing::info!("stopped");
    Ok(())
}
