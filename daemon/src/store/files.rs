//! The data directory on disk: its layout, its permissions, the master key
//! file, and checks that run before SQLite is allowed to touch anything.
//!
//! Nothing here may modify an existing store or key. Initialising happens only
//! in a directory that is missing or empty, and it never replaces a file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::StoreError;
use super::crypto::MasterKey;

/// The database, inside the data directory.
pub const DB_FILE: &str = "hearth.db";
/// The running daemon's admin socket (the CLI's way in; a connection that
/// answers means hearth is running on this directory).
pub const ADMIN_SOCKET: &str = "admin.sock";
/// The master key file, when no systemd credential or configured path is used.
pub const KEY_FILE: &str = "master.key";
/// The name systemd's `LoadCredential=` gives the key under `$CREDENTIALS_DIRECTORY`.
pub const CREDENTIAL_NAME: &str = "hearth.key";
/// The largest key file read; a real one is 65 bytes.
const MAX_KEY_FILE: u64 = 4096;

/// What a data directory holds.
#[derive(Debug, PartialEq, Eq)]
pub enum DirState {
    Missing,
    Empty,
    Store,
    /// Files, but no database: hearth will not initialise over them.
    NotAStore,
}

#[derive(Clone, Debug)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    pub fn new(path: impl Into<PathBuf>) -> DataDir {
        DataDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn db_path(&self) -> PathBuf {
        self.path.join(DB_FILE)
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.path.join(ADMIN_SOCKET)
    }

    pub fn default_key_path(&self) -> PathBuf {
        self.path.join(KEY_FILE)
    }

    pub fn state(&self) -> Result<DirState, StoreError> {
        let mut entries = match fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(DirState::Missing),
            Err(e) => return Err(StoreError::io(&self.path, e)),
        };
        if entries.next().is_none() {
            return Ok(DirState::Empty);
        }
        if self.db_path().exists() {
            Ok(DirState::Store)
        } else {
            Ok(DirState::NotAStore)
        }
    }

    /// Creates the directory (mode 0700) if it is missing, and tightens an
    /// empty one to 0700. Called only before initialising.
    pub fn create_private(&self) -> Result<(), StoreError> {
        match fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
        {
            Ok(()) => {}
            Err(e) => return Err(StoreError::io(&self.path, e)),
        }
        fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700))
            .map_err(|e| StoreError::io(&self.path, e))
    }

    /// Refuses a store directory that others can read or enter.
    pub fn check_permissions(&self) -> Result<(), StoreError> {
        let meta = fs::metadata(&self.path).map_err(|e| StoreError::io(&self.path, e))?;
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StoreError::DirPermissions {
                path: self.path.clone(),
                mode,
            });
        }
        Ok(())
    }
}

/// Where the master key comes from, in order: the configured path, the
/// systemd credential, the key file in the data directory.
pub fn resolve_key_path(configured: Option<&Path>, data_dir: &DataDir) -> PathBuf {
    if let Some(path) = configured {
        return path.to_path_buf();
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let candidate = Path::new(&dir).join(CREDENTIAL_NAME);
        if candidate.exists() {
            return candidate;
        }
    }
    data_dir.default_key_path()
}

/// The systemd credential holding the passphrase, in passphrase mode.
pub const PASSPHRASE_CREDENTIAL: &str = "hearth.passphrase";
/// The environment variable naming a file that holds the passphrase.
pub const PASSPHRASE_ENV: &str = "HEARTH_PASSPHRASE_FILE";

/// The argon2id parameters of a store in passphrase mode, read without the
/// key from its `meta` table; `None` for a store with a key file.
///
/// The file is opened `immutable`, so this look creates no `-wal` or `-shm`
/// file and changes nothing, even when the store is then refused. (A rewrap
/// folds its write-ahead log in before it returns, so the parameters are in
/// the main file.)
pub fn passphrase_kdf(db_path: &Path) -> Result<Option<crate::store::crypto::Kdf>, StoreError> {
    preflight_db(db_path)?;
    let mut uri = String::from("file:");
    for b in db_path.to_string_lossy().bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'-' | b'_' => uri.push(b as char),
            _ => uri.push_str(&format!("%{b:02X}")),
        }
    }
    uri.push_str("?immutable=1");
    let Ok(conn) = rusqlite::Connection::open_with_flags(
        &uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
            | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    ) else {
        // A damaged file is for `Store::open` to diagnose.
        return Ok(None);
    };
    // A damaged file is for `Store::open` to diagnose: here it only means
    // "not in passphrase mode as far as can be read".
    let v: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = 'master_kdf'", [], |r| {
            r.get(0)
        })
        .ok();
    v.map(|v| {
        serde_json::from_slice(&v).map_err(|_| StoreError::Corrupt {
            path: db_path.to_path_buf(),
            detail: "the passphrase parameters in meta are malformed".into(),
        })
    })
    .transpose()
}

/// Where the passphrase comes from: `HEARTH_PASSPHRASE_FILE`, else the
/// systemd credential.
pub fn passphrase_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(PASSPHRASE_ENV) {
        return Some(PathBuf::from(p));
    }
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    Some(Path::new(&dir).join(PASSPHRASE_CREDENTIAL)).filter(|p| p.exists())
}

/// Reads a passphrase file (its first line), refusing one others can read.
pub fn read_passphrase(path: &Path) -> Result<zeroize::Zeroizing<String>, StoreError> {
    let meta = fs::metadata(path).map_err(|e| StoreError::key_io(path, e))?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = zeroize::Zeroizing::new(String::new());
    File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE).read_to_string(&mut text))
        .map_err(|e| StoreError::key_io(path, e))?;
    Ok(zeroize::Zeroizing::new(
        text.lines().next().unwrap_or("").to_owned(),
    ))
}

/// Where `hearth keys rewrap` writes the new key before the store takes it.
pub fn pending_key_path(key_path: &Path) -> PathBuf {
    let mut name = key_path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    key_path.with_file_name(name)
}

/// Reads and checks the master key file.
pub fn load_master_key(path: &Path) -> Result<MasterKey, StoreError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::KeyMissing {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(StoreError::key_io(path, e)),
    };
    if !meta.is_file() {
        return Err(StoreError::KeyMalformed {
            path: path.to_path_buf(),
            reason: "it is not a regular file".into(),
        });
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut contents = zeroize::Zeroizing::new(Vec::new());
    File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE).read_to_end(&mut contents))
        .map_err(|e| StoreError::key_io(path, e))?;
    MasterKey::from_file_contents(&contents).map_err(|e| StoreError::KeyMalformed {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes a fresh master key to `path`, which must not exist yet (mode 0600,
/// fsynced with its directory).
pub fn write_new_key(path: &Path) -> Result<MasterKey, StoreError> {
    let (key, contents) = MasterKey::generate()?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::key_io(path, e))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::key_io(path, e))?;
    sync_parent(path)?;
    Ok(key)
}

pub fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(parent, e))
}

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Checks the database file's header and length before SQLite opens it, so
/// that a truncated or foreign file is named as such and nothing is written.
pub fn preflight_db(path: &Path) -> Result<(), StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let mut file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
    let mut header = [0u8; 100];
    if len < header.len() as u64 {
        return Err(corrupt(format!(
            "the file is {len} bytes, shorter than a SQLite header"
        )));
    }
    file.read_exact(&mut header)
        .map_err(|e| StoreError::io(path, e))?;
    if &header[..16] != SQLITE_MAGIC {
        return Err(corrupt("the file does not start with the SQLite header".into()));
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(corrupt(format!(
            "the header names an impossible page size {page_size}"
        )));
    }
    // With a non-empty write-ahead log, the log may hold pages the main file
    // does not have yet; SQLite's own recovery decides then.
    let wal = path.with_file_name(format!("{DB_FILE}-wal"));
    let wal_pending = fs::metadata(&wal).map(|m| m.len() > 0).unwrap_or(false);
    if wal_pending {
        return Ok(());
    }
    if len % page_size != 0 {
        return Err(corrupt(format!(
            "the file is {len} bytes, not a whole number of {page_size}-byte pages (truncated?)"
        )));
    }
    let change_counter = &header[24..28];
    let valid_for = &header[92..96];
    let pages = u64::from(u32::from_be_bytes(header[28..32].try_into().expect("4 bytes")));
    if change_counter == valid_for && pages * page_size != len {
        return Err(corrupt(format!(
            "the header says {pages} pages ({} bytes) but the file is {len} bytes (truncated?)",
            pages * page_size
        )));
    }
    Ok(())
}
