//! The only module that touches SQLite. It owns the database file and the key
//! hierarchy, and hands out typed, decrypted values.
//!
//! Every value that describes a home is sealed (see `crypto`) before it is
//! bound into a statement; there is no code path that writes it in clear.
//! Decrypted values leave this module only as typed fields whose `Debug`
//! redacts them, so a stray `{:?}` cannot leak a nickname into a log.
//!
//! This file opens the store and holds what every table shares (sealing,
//! transactions, migrations); each table group has its own file: devices,
//! owners, credentials, secrets, relay, audit.

pub mod audit;
mod credentials;
pub mod crypto;
mod devices;
pub mod dns;
pub mod files;
pub mod keys;
pub mod open;
mod owners;
pub mod relay;
pub mod schema;
pub mod secret;
mod secrets;
pub mod value;
pub mod warnings;

use std::fmt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};

/// Appends an audit event inside a transaction, chained to the one before
/// it (see `audit`).
use self::audit::append as append_audit_in;
pub use self::audit::{Actor, Entry as AuditEntry, Event as AuditEvent, Kind as AuditKind, Outcome};
pub use self::credentials::Credential;
use self::credentials::insert_credential;
pub use self::crypto::{CryptoError, KeyId, MasterKey};
use self::crypto::{DataKey, DataKeyMaterial, FieldLoc};
pub use self::devices::{Device, DeviceFields, DeviceKind, DeviceStatus, Learnt};
use self::devices::{identity_index, undecodable};
pub use self::files::{DataDir, DirState};
pub use self::open::{InitOutcome, init, open_or_init};
pub use self::owners::Owner;
use self::owners::email_index;
use self::value::Field;
pub use self::value::UnixTime;
use crate::exit::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the master key file {path} does not exist. Restore it from your backup of the key, \
         or point store.key_file at it. Without it the store cannot be opened; hearth will not make a new one"
    )]
    KeyMissing { path: PathBuf },
    #[error("cannot read the master key file {path}: {source}. Check that the user running hearth owns it")]
    KeyIo { path: PathBuf, source: std::io::Error },
    #[error(
        "the master key file {path} has mode {mode:04o}, readable by others. Run `chmod 600 {}` and start again",
        path.display()
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("the master key file {path} is not a hearth key: {reason}")]
    KeyMalformed { path: PathBuf, reason: String },
    #[error(
        "the master key in {key_path} does not open the store {db_path}. It is a different key from the one \
         this store was made with: restore the right key file (or systemd credential) and start again. \
         Nothing was changed"
    )]
    WrongKey { key_path: PathBuf, db_path: PathBuf },
    #[error(
        "the store {db_path} is in passphrase mode, and no passphrase was given: set HEARTH_PASSPHRASE_FILE \
         to a file holding it (mode 0600), or give it as the systemd credential hearth.passphrase"
    )]
    PassphraseMissing { db_path: PathBuf },
    #[error(
        "the data directory {path} has mode {mode:04o}, open to other users. Run `chmod 700 {}` and start again",
        path.display()
    )]
    DirPermissions { path: PathBuf, mode: u32 },
    #[error(
        "the data directory {path} is not empty but holds no hearth store ({}). hearth will not initialise \
         over existing files: choose an empty directory, or move these files away",
        files::DB_FILE
    )]
    NotAStore { path: PathBuf },
    #[error(
        "the store {path} is corrupt: {detail}. Nothing was changed. Restore it from a backup, or move the \
         data directory away to start fresh"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "the store {path} has schema version {found}, newer than this hearth understands ({supported}). \
         Install the newer hearth that wrote it, or restore a backup"
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("a sealed value in {table}.{column} of row {id} does not open: {source}")]
    SealedValue {
        table: &'static str,
        column: &'static str,
        id: String,
        source: CryptoError,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cryptography failed: {0}")]
    Crypto(#[from] CryptoError),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0} not found")]
    NotFound(&'static str),
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn key_io(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::KeyIo {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The sysexits code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            StoreError::KeyMissing { .. }
            | StoreError::KeyIo { .. }
            | StoreError::KeyPermissions { .. }
            | StoreError::KeyMalformed { .. }
            | StoreError::WrongKey { .. }
            | StoreError::PassphraseMissing { .. }
            | StoreError::DirPermissions { .. } => ExitCode::NoPerm,
            StoreError::NotAStore { .. }
            | StoreError::Corrupt { .. }
            | StoreError::NewerSchema { .. }
            | StoreError::SealedValue { .. } => ExitCode::DataErr,
            StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                ExitCode::NoPerm
            }
            StoreError::Io { .. } => ExitCode::IoErr,
            StoreError::Sqlite(e) if is_corruption(e) => ExitCode::DataErr,
            StoreError::Crypto(_) | StoreError::Sqlite(_) | StoreError::NotFound(_) => ExitCode::Software,
        }
    }
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh random 128-bit id.
            pub fn generate() -> Result<$name, CryptoError> {
                let mut b = [0u8; 16];
                crypto::fill_random(&mut b)?;
                Ok($name(hex::encode(b)))
            }

            /// Accepts only the form `generate` makes: 32 lower-case hex digits.
            pub fn parse(s: &str) -> Option<$name> {
                let ok = s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                ok.then(|| $name(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// Ids are opaque random values, safe to log.
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// A device's opaque id.
    DeviceId
);

impl DeviceId {
    /// The principal its credentials are stored under: `device:<id>`.
    pub fn principal(&self) -> String {
        format!("device:{}", self.0)
    }
}
id_type!(
    /// An owner account's opaque id.
    OwnerId
);
id_type!(
    /// A stored credential's opaque id.
    CredentialId
);
id_type!(
    /// A voice relay OAuth client's id: its `client_id`.
    RelayClientId
);
id_type!(
    /// A voice relay account link's opaque id.
    LinkId
);

/// How hard a write must reach the disk before it counts as committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    /// WAL with `synchronous=NORMAL`: survives a crash of hearth, may lose the
    /// last commits on power loss. Device metadata.
    Normal,
    /// `synchronous=FULL`: fsync on every commit. Credentials and keys.
    Full,
}

/// Row counts by kind, for the privacy report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    pub adopted: u64,
    pub pending: u64,
    pub mqtt_passwords: u64,
    pub owners: u64,
    pub sessions: u64,
    pub recovery_codes: u64,
    pub relay_clients: u64,
    pub relay_links: u64,
    pub relay_tokens: u64,
    pub audit: u64,
    pub secrets: u64,
    pub dns_devices: u64,
}

/// Audit events kept; older ones are pruned as new ones arrive. Ten
/// thousand is years of an owner's actions at a few a day, in a few
/// megabytes of store.
pub const AUDIT_KEPT: i64 = 10_000;

/// An open store.
pub struct Store {
    conn: Connection,
    key: DataKey,
    /// Wraps a new data key when one is rotated in.
    master: MasterKey,
    db_path: PathBuf,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("key_id", &self.key.id())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Creates a new store at `db_path`, which must not exist, with a fresh
    /// data key wrapped under `master`.
    pub fn create(db_path: &Path, master: &MasterKey) -> Result<Store, StoreError> {
        if db_path.exists() {
            return Err(StoreError::Io {
                path: db_path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "refusing to overwrite"),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(db_path, flags)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if mode != "wal" {
            return Err(StoreError::Corrupt {
                path: db_path.to_path_buf(),
                detail: format!("SQLite refused WAL mode (got {mode})"),
            });
        }
        configure(&conn)?;
        migrate(&mut conn, db_path)?;

        let material = DataKeyMaterial::generate()?;
        let wrapped = master.wrap(&material)?;
        let mut store_id = [0u8; 16];
        crypto::fill_random(&mut store_id)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO data_keys (id, wrapped, state) VALUES (?1, ?2, 'active')",
            params![material.id.to_hex(), wrapped],
        )?;
        for (k, v) in [
            ("store_id", store_id.to_vec()),
            ("master_check", master.check_value().to_vec()),
            ("active_key", material.id.to_hex().into_bytes()),
        ] {
            tx.execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", params![k, v])?;
        }
        tx.commit()?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Store {
            conn,
            key: DataKey::from_material(&material),
            master: master.clone(),
            db_path: db_path.to_path_buf(),
        })
    }

    /// Opens an existing store. Before anything is written it checks the
    /// file, the schema version, the master key, the database's integrity
    /// and every sealed value; any failure leaves the files as they were.
    pub fn open(db_path: &Path, master: &MasterKey, key_path: &Path) -> Result<Store, StoreError> {
        files::preflight_db(db_path)?;
        let corrupt = |detail: String| StoreError::Corrupt {
            path: db_path.to_path_buf(),
            detail,
        };
        let map_sql = |e: rusqlite::Error| {
            if is_corruption(&e) {
                corrupt(e.to_string())
            } else {
                StoreError::Sqlite(e)
            }
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(db_path, flags).map_err(map_sql)?;
        configure(&conn).map_err(map_sql)?;

        let problems: Vec<String> = {
            let mut stmt = conn.prepare("PRAGMA integrity_check(20)").map_err(map_sql)?;
            stmt.query_map([], |r| r.get(0))
                .map_err(map_sql)?
                .collect::<Result<_, _>>()
                .map_err(map_sql)?
        };
        if problems != ["ok"] {
            return Err(corrupt(format!(
                "SQLite integrity check: {}",
                problems.join("; ")
            )));
        }
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(map_sql)?;
        if version > schema::VERSION {
            return Err(StoreError::NewerSchema {
                path: db_path.to_path_buf(),
                found: version,
                supported: schema::VERSION,
            });
        }
        if version == 0 {
            return Err(corrupt("it has no hearth schema".into()));
        }

        let meta = |k: &str| -> Result<Vec<u8>, StoreError> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
                .optional()
                .map_err(map_sql)?
                .ok_or_else(|| corrupt(format!("the meta entry '{k}' is missing")))
        };
        if !master.matches_check(&meta("master_check")?) {
            return Err(StoreError::WrongKey {
                key_path: key_path.to_path_buf(),
                db_path: db_path.to_path_buf(),
            });
        }
        let active = String::from_utf8(meta("active_key")?)
            .ok()
            .and_then(|s| KeyId::from_hex(&s).ok())
            .ok_or_else(|| corrupt("the active key id is malformed".into()))?;
        let wrapped: Vec<u8> = conn
            .query_row(
                "SELECT wrapped FROM data_keys WHERE id = ?1 AND state = 'active'",
                [active.to_hex()],
                |r| r.get(0),
            )
            .optional()
            .map_err(map_sql)?
            .ok_or_else(|| corrupt("the active data key is missing".into()))?;
        // The check value matched, so the master key is right: a key that
        // does not unwrap was altered on disk.
        let key = master
            .unwrap(active, &wrapped)
            .map_err(|e| corrupt(format!("the wrapped data key does not open ({e})")))?;
        // A rotation that was under way: the new key seals, the old one
        // still opens what is not re-sealed yet.
        let next: Option<(String, Vec<u8>)> = conn
            .query_row(
                "SELECT id, wrapped FROM data_keys WHERE state = 'next'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(map_sql)?;
        let key = match next {
            None => key,
            Some((id, wrapped)) => {
                let id = KeyId::from_hex(&id).map_err(|_| corrupt("the next key id is malformed".into()))?;
                master
                    .unwrap(id, &wrapped)
                    .map_err(|e| corrupt(format!("the wrapped next data key does not open ({e})")))?
                    .succeeding(key)
            }
        };

        let store = Store {
            conn,
            master: master.clone(),
            key,
            db_path: db_path.to_path_buf(),
        };
        store.verify_sealed()?;
        // Only now, with everything verified, may the store be written to.
        let mut store = store;
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(map_sql)?;
        if mode != "wal" {
            return Err(corrupt(format!("SQLite refused WAL mode (got {mode})")));
        }
        migrate(&mut store.conn, db_path)?;
        Ok(store)
    }

    /// Opens every sealed value in the store. Used at start, so a flipped
    /// byte is found before the daemon serves anything.
    ///
    /// The audit log is left to [`Store::verify_audit`]: a tampered entry
    /// is the owner's to see on the dashboard, and no reason to stop the
    /// home.
    pub fn verify_sealed(&self) -> Result<(), StoreError> {
        let version: u32 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (table, columns) in schema::SEALED.iter().filter(|(t, _)| *t != "audit") {
            // A table a later migration creates is not there yet in an older
            // store, which `migrate` brings up to date after this check.
            if version < schema::created_in(table) {
                continue;
            }
            let sql = format!("SELECT id, key_id, {} FROM {table}", columns.join(", "));
            let mut stmt = self.conn.prepare(&sql)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let id: String = row.get(0)?;
                let key_id: String = row.get(1)?;
                let known = key_id == self.key.id().to_hex()
                    || self.key.previous().is_some_and(|p| key_id == p.id().to_hex());
                if !known {
                    return Err(StoreError::Corrupt {
                        path: self.db_path.clone(),
                        detail: format!("row {id} of {table} names unknown data key {key_id}"),
                    });
                }
                for (i, column) in columns.iter().enumerate() {
                    let sealed: Vec<u8> = row.get(i + 2)?;
                    let loc = FieldLoc {
                        table,
                        column,
                        pk: &id,
                    };
                    self.key.open(loc, &sealed).map_err(|e| StoreError::Corrupt {
                        path: self.db_path.clone(),
                        detail: format!("the sealed value {table}.{column} of row {id} does not open ({e})"),
                    })?;
                }
            }
        }
        Ok(())
    }

    pub fn key_id(&self) -> KeyId {
        self.key.id()
    }

    /// `PRAGMA integrity_check`, for tests and `hearth` self-checks.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    /// How many rows of each kind the store holds, for the privacy report.
    pub fn inventory(&self) -> Result<Inventory, StoreError> {
        let c = |sql: &str| -> Result<u64, StoreError> {
            Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
        };
        let cred = |kind: &str| -> Result<u64, StoreError> {
            Ok(self
                .conn
                .query_row("SELECT COUNT(*) FROM credentials WHERE kind = ?1", [kind], |r| {
                    r.get::<_, i64>(0)
                })? as u64)
        };
        Ok(Inventory {
            adopted: c("SELECT COUNT(*) FROM devices WHERE status = 'adopted'")?,
            pending: c("SELECT COUNT(*) FROM devices WHERE status = 'pending'")?,
            mqtt_passwords: cred("mqtt_password")?,
            owners: c("SELECT COUNT(*) FROM owners")?,
            sessions: cred("web_session")?,
            recovery_codes: cred("totp_recovery")?,
            relay_clients: c("SELECT COUNT(*) FROM relay_clients")?,
            relay_links: c("SELECT COUNT(*) FROM relay_links")?,
            relay_tokens: c("SELECT COUNT(*) FROM relay_tokens")?,
            audit: c("SELECT COUNT(*) FROM audit")?,
            secrets: c("SELECT COUNT(*) FROM secrets")?,
            dns_devices: c("SELECT COUNT(*) FROM dns_devices")?,
        })
    }
}

/// Runs `f` in one transaction, committed with the given durability.
fn write<T>(
    conn: &mut Connection,
    durability: Durability,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if durability == Durability::Full {
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    let result = (|| {
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    })();
    if durability == Durability::Full {
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    result
}

fn configure(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted rows are zeroed, so a forgotten device's ciphertext does not
    // linger in free pages.
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "journal_size_limit", 4 * 1024 * 1024)?;
    Ok(())
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > schema::VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: schema::VERSION,
        });
    }
    for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as u32)?;
        tx.commit()?;
        tracing::info!(schema_version = i + 1, "store migrated");
    }
    Ok(())
}

fn seal_field(
    key: &DataKey,
    table: &'static str,
    column: &'static str,
    pk: &str,
    value: &dyn Field,
) -> Result<Vec<u8>, StoreError> {
    seal_bytes(key, table, column, pk, &value.encode())
}

fn seal_bytes(
    key: &DataKey,
    table: &'static str,
    column: &'static str,
    pk: &str,
    bytes: &[u8],
) -> Result<Vec<u8>, StoreError> {
    Ok(key.seal(FieldLoc { table, column, pk }, &value::pad(bytes))?)
}

/// Opens the sealed column `index` of `row` into `scratch` and returns the
/// value's bytes, unpadded.
fn open_bytes<'s>(
    key: &DataKey,
    row: &rusqlite::Row<'_>,
    index: usize,
    loc: (&'static str, &'static str, &str),
    scratch: &'s mut Vec<u8>,
) -> Result<&'s [u8], StoreError> {
    let (table, column, pk) = loc;
    let fail = |source| StoreError::SealedValue {
        table,
        column,
        id: pk.to_owned(),
        source,
    };
    let sealed = row
        .get_ref(index)?
        .as_blob()
        .map_err(|_| fail(CryptoError::Malformed("sealed column does not hold a blob")))?;
    let padded = key
        .open_into(FieldLoc { table, column, pk }, sealed, scratch)
        .map_err(fail)?;
    value::unpad(padded).ok_or(fail(CryptoError::Malformed("sealed value is not padded")))
}

fn open_field<T: Field>(
    key: &DataKey,
    row: &rusqlite::Row<'_>,
    index: usize,
    table: &'static str,
    column: &'static str,
    pk: &str,
) -> Result<T, StoreError> {
    let mut scratch = Vec::new();
    let bytes = open_bytes(key, row, index, (table, column, pk), &mut scratch)?;
    T::decode(bytes).ok_or_else(|| StoreError::SealedValue {
        table,
        column,
        id: pk.to_owned(),
        source: CryptoError::Malformed("sealed value does not decode"),
    })
}

/// A blind index under the data key and, while a rotation runs, under the
/// key being retired (else the same one again), for `IN (?1, ?2)` look-ups.
fn indexes(
    key: &DataKey,
    f: impl Fn(&DataKey) -> [u8; crypto::BLIND_INDEX_LEN],
) -> ([u8; crypto::BLIND_INDEX_LEN], [u8; crypto::BLIND_INDEX_LEN]) {
    let now = f(key);
    (now, key.previous().map_or(now, f))
}
