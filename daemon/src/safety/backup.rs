//! Encrypted backups: one file holding a snapshot of the store, the
//! configuration and (when the master key is a key file) the master key,
//! sealed under a passphrase with argon2id and ChaCha20-Poly1305.
//!
//! ```text
//! "HEARTHBK" (8) ‖ version (1) ‖ header length (u32 BE) ‖ header (JSON) ‖
//! nonce (12) ‖ ciphertext ‖ tag (16)
//! ```
//!
//! The header (the argon2id parameters and salt, a check value derived from
//! the key, the creation time) is the associated data, so changing it breaks
//! the tag too. The check value lets a restore say "wrong passphrase" rather
//! than "damaged file". Nothing in the file is readable without the
//! passphrase: the plaintext is a list of (name, bytes) entries.
//!
//! A restore checks everything before it touches the data directory: the
//! tag, the entries, and then the store itself, opened in a staging
//! directory with every sealed value checked. Only then is the staging
//! directory exchanged with the data directory in one `renameat2` call.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::store::crypto::{self, Kdf};
use crate::store::{DataDir, DirState, Store, StoreError, files};

const MAGIC: &[u8; 8] = b"HEARTHBK";
const VERSION: u8 = 1;
/// A backup larger than this is refused rather than read into memory.
pub const MAX_BACKUP: u64 = 1 << 30;
/// Passphrases shorter than this are refused.
pub const MIN_PASSPHRASE: usize = 12;

const DB: &str = "hearth.db";
const CONFIG: &str = "hearth.toml";
const KEY: &str = "master.key";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a hearth backup (or a newer version of one)")]
    NotABackup(String),
    #[error("wrong passphrase for {0}: nothing was changed")]
    WrongPassphrase(String),
    #[error("{0} was altered or damaged after it was written: nothing was changed")]
    Tampered(String),
    #[error("a backup passphrase needs at least {MIN_PASSPHRASE} characters")]
    WeakPassphrase,
    #[error("hearth is running on {0}: stop it first (systemctl stop hearth, or Ctrl-C)")]
    Running(String),
    #[error("the store in the backup does not open: {0}")]
    BadStore(#[source] StoreError),
    #[error(
        "the backup holds no master key (it was made in passphrase mode): set HEARTH_PASSPHRASE_FILE to a file holding the store's passphrase"
    )]
    NoKey,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
}

impl BackupError {
    pub fn exit_code(&self) -> crate::exit::ExitCode {
        use crate::exit::ExitCode;
        match self {
            BackupError::Io { .. } => ExitCode::IoErr,
            BackupError::NotABackup(_) | BackupError::Tampered(_) | BackupError::BadStore(_) => {
                ExitCode::DataErr
            }
            BackupError::WrongPassphrase(_) => ExitCode::NoPerm,
            BackupError::WeakPassphrase | BackupError::NoKey => ExitCode::Usage,
            BackupError::Running(_) => ExitCode::TempFail,
            BackupError::Store(e) => e.exit_code(),
            BackupError::Crypto(_) => ExitCode::Software,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    kdf: Kdf,
    check: String,
    created_at: i64,
}

/// What a backup holds.
pub struct Contents {
    pub db: Zeroizing<Vec<u8>>,
    pub config: Option<String>,
    pub master_key: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for Contents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contents")
            .field("db_bytes", &self.db.len())
            .field("config", &self.config.is_some())
            .field("master_key", &self.master_key.is_some())
            .finish()
    }
}

/// Checks a passphrase's length; whitespace at its ends is not counted.
/// What the audit log says of a backup of `bytes` bytes: the same words
/// whichever door made it (`how`: "downloaded from the dashboard", "sealed
/// under a passphrase" for the CLI).
pub fn audit_detail(bytes: usize, how: &str) -> String {
    format!("{bytes} bytes, {how}")
}

pub fn check_passphrase(passphrase: &str) -> Result<(), BackupError> {
    if passphrase.trim().chars().count() < MIN_PASSPHRASE {
        return Err(BackupError::WeakPassphrase);
    }
    Ok(())
}

/// A consistent, compacted copy of the store, made with `VACUUM INTO` from
/// a read-only connection (so a running hearth keeps writing meanwhile).
/// Freed pages, which may hold zeroed old rows, are not copied.
pub fn snapshot(data_dir: &DataDir) -> Result<Zeroizing<Vec<u8>>, BackupError> {
    let db = data_dir.db_path();
    let mut tmp = [0u8; 8];
    crypto::fill_random(&mut tmp)?;
    let out = data_dir.path().join(format!(".backup-{}.db", hex::encode(tmp)));
    let result = (|| {
        let conn = rusqlite::Connection::open_with_flags(
            &db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(StoreError::from)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(StoreError::from)?;
        // Created first with mode 0600, so the copy is never readable by
        // others, even for a moment.
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&out)
            .map_err(io(&out))?;
        fs::remove_file(&out).map_err(io(&out))?;
        let old = unsafe { libc::umask(0o077) };
        let vacuum = conn.execute("VACUUM INTO ?1", [out.to_string_lossy()]);
        unsafe { libc::umask(old) };
        vacuum.map_err(StoreError::from)?;
        Ok(Zeroizing::new(fs::read(&out).map_err(io(&out))?))
    })();
    let _ = fs::remove_file(&out);
    result
}

/// Seals `contents` under `passphrase`.
pub fn seal(contents: &Contents, passphrase: &str) -> Result<Vec<u8>, BackupError> {
    check_passphrase(passphrase)?;
    let kdf = Kdf::generate()?;
    let key = kdf.derive(passphrase.as_bytes())?;
    let header = serde_json::to_vec(&Header {
        kdf,
        check: hex::encode(crypto::check_of(&key)),
        created_at: crate::store::UnixTime::now().0 / 1000,
    })
    .expect("a header serialises");
    let mut plain = Zeroizing::new(Vec::with_capacity(contents.db.len() + 4096));
    let mut entry = |name: &str, bytes: &[u8]| {
        plain.extend_from_slice(&(name.len() as u16).to_be_bytes());
        plain.extend_from_slice(name.as_bytes());
        plain.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        plain.extend_from_slice(bytes);
    };
    entry(DB, &contents.db);
    if let Some(c) = &contents.config {
        entry(CONFIG, c.as_bytes());
    }
    if let Some(k) = &contents.master_key {
        entry(KEY, k);
    }
    let mut out = Vec::with_capacity(plain.len() + header.len() + 64);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&header);
    let aad = out.clone();
    out.extend_from_slice(&crypto::seal_file(&key, &aad, &plain)?);
    Ok(out)
}

/// Opens a backup: the header, the passphrase (by its check value), then
/// the tag over everything. `name` is for messages.
pub fn open(bytes: &[u8], passphrase: &str, name: &str) -> Result<Contents, BackupError> {
    let not = || BackupError::NotABackup(name.to_owned());
    if bytes.len() < 13 || &bytes[..8] != MAGIC || bytes[8] != VERSION {
        return Err(not());
    }
    let len = u32::from_be_bytes(bytes[9..13].try_into().expect("4 bytes")) as usize;
    if len > 4096 || bytes.len() < 13 + len {
        return Err(BackupError::Tampered(name.to_owned()));
    }
    let header: Header =
        serde_json::from_slice(&bytes[13..13 + len]).map_err(|_| BackupError::Tampered(name.to_owned()))?;
    let key = header
        .kdf
        .derive(passphrase.as_bytes())
        .map_err(|_| BackupError::Tampered(name.to_owned()))?;
    let check = hex::encode(crypto::check_of(&key));
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        check.as_bytes(),
        header.check.as_bytes(),
    )) {
        return Err(BackupError::WrongPassphrase(name.to_owned()));
    }
    let plain = crypto::open_file(&key, &bytes[..13 + len], &bytes[13 + len..])
        .map_err(|_| BackupError::Tampered(name.to_owned()))?;
    let mut rest: &[u8] = &plain;
    let mut contents = Contents {
        db: Zeroizing::new(Vec::new()),
        config: None,
        master_key: None,
    };
    let mut seen_db = false;
    while !rest.is_empty() {
        let bad = || BackupError::Tampered(name.to_owned());
        let n = u16::from_be_bytes(rest.get(..2).ok_or_else(bad)?.try_into().expect("2")) as usize;
        let entry_name = std::str::from_utf8(rest.get(2..2 + n).ok_or_else(bad)?).map_err(|_| bad())?;
        rest = &rest[2 + n..];
        let m = u64::from_be_bytes(rest.get(..8).ok_or_else(bad)?.try_into().expect("8")) as usize;
        let data = rest.get(8..8 + m).ok_or_else(bad)?;
        rest = &rest[8 + m..];
        match entry_name {
            DB => {
                contents.db = Zeroizing::new(data.to_vec());
                seen_db = true;
            }
            CONFIG => contents.config = Some(String::from_utf8(data.to_vec()).map_err(|_| bad())?),
            KEY => contents.master_key = Some(Zeroizing::new(data.to_vec())),
            _ => return Err(bad()),
        }
    }
    if !seen_db {
        return Err(BackupError::Tampered(name.to_owned()));
    }
    Ok(contents)
}

/// The list of backups hearth wrote, in the data directory, so that
/// `hearth erase` can remove them too.
pub const LIST: &str = "backups.list";

/// Adds `path` to the list of backups (newest 100 kept).
pub fn remember(data_dir: &DataDir, path: &Path) -> Result<(), BackupError> {
    let list = data_dir.path().join(LIST);
    let mut paths: Vec<String> = fs::read_to_string(&list)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty() && *l != path.to_string_lossy())
        .map(str::to_owned)
        .collect();
    paths.push(path.to_string_lossy().into_owned());
    let keep = paths.len().saturating_sub(100);
    write(&list, format!("{}\n", paths[keep..].join("\n")).as_bytes())
}

/// The backups hearth wrote that still exist and are still hearth backups.
pub fn known(data_dir: &DataDir) -> Vec<PathBuf> {
    fs::read_to_string(data_dir.path().join(LIST))
        .unwrap_or_default()
        .lines()
        .map(PathBuf::from)
        .filter(|p| {
            let mut magic = [0u8; 8];
            fs::File::open(p)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
                .is_ok()
                && &magic == MAGIC
        })
        .collect()
}

/// Reads a backup file, bounded in size.
pub fn read(path: &Path) -> Result<Vec<u8>, BackupError> {
    let meta = fs::metadata(path).map_err(io(path))?;
    if meta.len() > MAX_BACKUP {
        return Err(BackupError::NotABackup(path.display().to_string()));
    }
    fs::read(path).map_err(io(path))
}

/// Writes `bytes` to `path` (mode 0600) through a temporary file renamed
/// into place, so a half-written backup never carries the name.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let tmp = path.with_extension("partial");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    files::sync_parent(path)?;
    Ok(())
}

/// What a restore did.
#[derive(Debug, serde::Serialize)]
pub struct Restored {
    pub data_dir: PathBuf,
    /// Where the backup's configuration was written, if it had one.
    pub config: Option<PathBuf>,
    pub devices: usize,
}

/// Restores `contents` into `data_dir`, atomically. The store is opened
/// with the backup's master key, or else with `master` (passphrase mode).
/// hearth must not be running there.
pub fn restore(
    contents: &Contents,
    data_dir: &DataDir,
    master: Option<crate::store::MasterKey>,
    mut progress: impl FnMut(&str),
) -> Result<Restored, BackupError> {
    let dir = data_dir.path();
    if std::os::unix::net::UnixStream::connect(dir.join(crate::store::files::ADMIN_SOCKET)).is_ok() {
        return Err(BackupError::Running(dir.display().to_string()));
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = parent.join(format!(".{name}.restoring"));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    fs::create_dir(&staging).map_err(io(&staging))?;
    fs::set_permissions(&staging, fs::Permissions::from_mode(0o700)).map_err(io(&staging))?;
    let result = (|| {
        progress("writing the store into a staging directory");
        let db = staging.join(files::DB_FILE);
        write(&db, &contents.db)?;
        let key_path = staging.join(files::KEY_FILE);
        let master = match (&contents.master_key, master) {
            (Some(k), _) => {
                write(&key_path, k)?;
                files::load_master_key(&key_path)?
            }
            (None, Some(m)) => m,
            (None, None) => {
                let kdf = files::passphrase_kdf(&db)?.ok_or(BackupError::NoKey)?;
                let path = files::passphrase_path().ok_or(BackupError::NoKey)?;
                let passphrase = files::read_passphrase(&path)?;
                crate::store::MasterKey::from_passphrase(passphrase.as_bytes(), &kdf)?
            }
        };
        progress("opening it and checking every sealed value");
        let store = Store::open(&db, &master, &key_path).map_err(BackupError::BadStore)?;
        let devices = store.devices().map_err(BackupError::BadStore)?.len();
        drop(store);
        let config = match &contents.config {
            Some(c) => {
                let p = staging.join("restored-config.toml");
                write(&p, c.as_bytes())?;
                Some(dir.join("restored-config.toml"))
            }
            None => None,
        };
        // The backups the old data directory knew of stay known, so that
        // an erase still finds them.
        let list = dir.join(LIST);
        if list.exists() {
            fs::copy(&list, staging.join(LIST)).map_err(io(&list))?;
        }
        progress("putting it in place");
        match data_dir.state()? {
            DirState::Missing => {
                fs::rename(&staging, dir).map_err(io(dir))?;
            }
            _ => {
                exchange(&staging, dir)?;
                // The old data directory is now at `staging`.
                fs::remove_dir_all(&staging).map_err(io(&staging))?;
            }
        }
        files::sync_parent(dir)?;
        Ok(Restored {
            data_dir: dir.to_path_buf(),
            config,
            devices,
        })
    })();
    if result.is_err() && staging.exists() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

/// Swaps two directories in one step (Linux `renameat2` with
/// `RENAME_EXCHANGE`): at every moment the data directory is whole, old or
/// new.
fn exchange(a: &Path, b: &Path) -> Result<(), BackupError> {
    use std::os::unix::ffi::OsStrExt;
    let ca = std::ffi::CString::new(a.as_os_str().as_bytes())
        .map_err(|_| BackupError::NotABackup(a.display().to_string()))?;
    let cb = std::ffi::CString::new(b.as_os_str().as_bytes())
        .map_err(|_| BackupError::NotABackup(b.display().to_string()))?;
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        return Err(io(b)(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents() -> Contents {
        Contents {
            db: Zeroizing::new(b"SQLite format 3\0 and the rest".to_vec()),
            config: Some("[web]\n".into()),
            master_key: Some(Zeroizing::new(b"00ff".to_vec())),
        }
    }

    #[test]
    fn a_backup_opens_only_with_its_passphrase_and_unaltered() {
        let sealed = seal(&contents(), "correct horse battery").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"SQLite"));
        assert!(!sealed.windows(5).any(|w| w == b"[web]"));
        let back = open(&sealed, "correct horse battery", "b").unwrap();
        assert_eq!(back.db.as_slice(), contents().db.as_slice());
        assert_eq!(back.config.as_deref(), Some("[web]\n"));
        assert!(matches!(
            open(&sealed, "wrong horse battery", "b"),
            Err(BackupError::WrongPassphrase(_))
        ));
        // Any byte changed, header or body, is refused.
        for at in [20, sealed.len() / 2, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert!(open(&bad, "correct horse battery", "b").is_err(), "byte {at}");
        }
        let mut bad = sealed.clone();
        bad.truncate(sealed.len() - 10);
        assert!(matches!(
            open(&bad, "correct horse battery", "b"),
            Err(BackupError::Tampered(_))
        ));
        assert!(matches!(
            open(b"not a backup", "x", "b"),
            Err(BackupError::NotABackup(_))
        ));
        assert!(matches!(
            seal(&contents(), "short"),
            Err(BackupError::WeakPassphrase)
        ));
    }
}
