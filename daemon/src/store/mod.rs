//! The only module that touches SQLite. It owns the database file and the key
//! hierarchy, and hands out typed, decrypted values.
//!
//! Every value that describes a home is sealed (see `crypto`) before it is
//! bound into a statement; there is no code path that writes it in clear.
//! Decrypted values leave this module only as typed fields whose `Debug`
//! redacts them, so a stray `{:?}` cannot leak a nickname into a log.

pub mod audit;
pub mod crypto;
pub mod files;
pub mod keys;
pub mod open;
pub mod relay;
pub mod schema;
pub mod secret;
pub mod value;
pub mod warnings;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};

pub use self::audit::{Actor, Entry as AuditEntry, Event as AuditEvent, Kind as AuditKind, Outcome};
pub use self::crypto::{CryptoError, KeyId, MasterKey};
use self::crypto::{DataKey, DataKeyMaterial, FieldLoc};
pub use self::files::{DataDir, DirState};
pub use self::open::{InitOutcome, init, open_or_init};
use self::value::Field;
pub use self::value::UnixTime;
use crate::exit::ExitCode;
use crate::store::secret::{Secret, TokenHash};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Discovered, not trusted, no credential.
    Pending,
    /// Adopted by the owner.
    Adopted,
}

impl DeviceStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Adopted => "adopted",
        }
    }

    fn parse(s: &str) -> Option<DeviceStatus> {
        match s {
            "pending" => Some(DeviceStatus::Pending),
            "adopted" => Some(DeviceStatus::Adopted),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Camera,
    Doorbell,
    Bulb,
    Plug,
    LightStrip,
    /// Reports motion (a PIR sensor).
    MotionSensor,
    /// Reports whether a door or window is open.
    ContactSensor,
    /// Reports temperature and humidity.
    ClimateSensor,
    /// Reports water (a leak or flood sensor).
    WaterSensor,
    Other,
}

impl DeviceKind {
    pub const ALL: [DeviceKind; 10] = [
        DeviceKind::Camera,
        DeviceKind::Doorbell,
        DeviceKind::Bulb,
        DeviceKind::Plug,
        DeviceKind::LightStrip,
        DeviceKind::MotionSensor,
        DeviceKind::ContactSensor,
        DeviceKind::ClimateSensor,
        DeviceKind::WaterSensor,
        DeviceKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Camera => "camera",
            DeviceKind::Doorbell => "doorbell",
            DeviceKind::Bulb => "bulb",
            DeviceKind::Plug => "plug",
            DeviceKind::LightStrip => "light_strip",
            DeviceKind::MotionSensor => "motion_sensor",
            DeviceKind::ContactSensor => "contact_sensor",
            DeviceKind::ClimateSensor => "climate_sensor",
            DeviceKind::WaterSensor => "water_sensor",
            DeviceKind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<DeviceKind> {
        DeviceKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Everything stored about a device besides its id. All of it but `status`
/// is sealed on disk.
#[derive(Clone, PartialEq)]
pub struct DeviceFields {
    pub status: DeviceStatus,
    pub kind: DeviceKind,
    pub profile: String,
    pub nickname: Option<String>,
    pub room: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub mac: Option<String>,
    pub addresses: Vec<IpAddr>,
    pub ssid: Option<String>,
    pub stream_url: Option<String>,
    pub device_secret: Option<Secret>,
    pub last_seen: Option<UnixTime>,
    /// The device's MQTT topic base (its Tasmota topic, Shelly prefix,
    /// ESPHome name, or its id for the generic scheme).
    pub topic: Option<String>,
    /// The identity it advertised over mDNS (`mac:…` or `<service>:<name>`).
    pub identity: Option<String>,
    /// Set when an advert claimed this adopted device's identity from
    /// an address it was not adopted at: shown to the owner, never followed.
    pub flagged: bool,
    /// What voice assistants call it, when exposed to them.
    pub voice_name: Option<String>,
    /// Exposed to Home Assistant (off until the owner turns it on).
    pub expose_ha: bool,
    /// Exposed to voice assistants through the relay (off until the owner
    /// turns it on).
    pub expose_voice: bool,
    /// What the device has shown it can do, kept across restarts.
    pub learnt: Learnt,
    /// A pending device: the address its first advert came from, so that no
    /// one address can fill the pending list.
    pub heard_from: Option<IpAddr>,
}

/// What hearth has learnt a device can do from its own reports, beyond
/// what its kind says. Only ever gained: a light that once reported a colour
/// temperature keeps the control after a restart, before it reports again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Learnt {
    /// It has reported a colour temperature.
    pub color_temp: bool,
    /// It has sent a snapshot.
    pub snapshots: bool,
}

impl Learnt {
    /// Everything either knows.
    pub fn union(self, other: Learnt) -> Learnt {
        Learnt {
            color_temp: self.color_temp || other.color_temp,
            snapshots: self.snapshots || other.snapshots,
        }
    }

    /// Whether `other` adds nothing to this.
    pub fn covers(self, other: Learnt) -> bool {
        self.union(other) == self
    }
}

impl DeviceFields {
    /// A pending device of `kind` and `profile` with nothing else known.
    pub fn new(kind: DeviceKind, profile: impl Into<String>) -> DeviceFields {
        DeviceFields {
            status: DeviceStatus::Pending,
            kind,
            profile: profile.into(),
            nickname: None,
            room: None,
            vendor: None,
            model: None,
            firmware: None,
            mac: None,
            addresses: Vec::new(),
            ssid: None,
            stream_url: None,
            device_secret: None,
            last_seen: None,
            topic: None,
            identity: None,
            flagged: false,
            voice_name: None,
            expose_ha: false,
            expose_voice: false,
            learnt: Learnt::default(),
            heard_from: None,
        }
    }
}

/// Only the status is shown: every other field describes the home.
impl fmt::Debug for DeviceFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceFields")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    pub id: DeviceId,
    pub created_at: UnixTime,
    pub fields: DeviceFields,
}

/// An owner account. `Debug` shows the id only.
#[derive(Clone)]
pub struct Owner {
    pub id: OwnerId,
    pub email: String,
    pub password_hash: Secret,
    pub last_login: Option<UnixTime>,
    pub created_at: UnixTime,
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Owner")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A stored credential: who it is for and when it lapses. The secret itself
/// exists only as a hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub id: CredentialId,
    pub principal: String,
    pub kind: String,
    pub expires_at: Option<UnixTime>,
    pub created_at: UnixTime,
}

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
}

/// Audit events kept; older ones are pruned as new ones arrive.
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
        for (table, columns) in schema::SEALED.iter().filter(|(t, _)| *t != "audit") {
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

    // ---- devices -------------------------------------------------------

    pub fn insert_device(&mut self, fields: &DeviceFields) -> Result<Device, StoreError> {
        let id = DeviceId::generate()?;
        let device = Device {
            id,
            created_at: UnixTime::now(),
            fields: fields.clone(),
        };
        let key = &self.key;
        write(&mut self.conn, Durability::Normal, |tx| {
            let mut stmt = tx.prepare_cached(schema::INSERT_DEVICE)?;
            let row = seal_device(key, &device)?;
            stmt.execute(rusqlite::params_from_iter(row.iter()))?;
            Ok(())
        })?;
        Ok(device)
    }

    /// Inserts a device and its first credential in one transaction, so no
    /// device exists without the credential it was provisioned with.
    pub fn insert_device_with_credential(
        &mut self,
        id: DeviceId,
        fields: &DeviceFields,
        kind: &str,
        hash: &TokenHash,
    ) -> Result<(Device, Credential), StoreError> {
        let device = Device {
            id,
            created_at: UnixTime::now(),
            fields: fields.clone(),
        };
        let cred = Credential {
            id: CredentialId::generate()?,
            principal: device.id.principal(),
            kind: kind.to_owned(),
            expires_at: None,
            created_at: device.created_at,
        };
        let key = &self.key;
        write(&mut self.conn, Durability::Full, |tx| {
            let mut stmt = tx.prepare_cached(schema::INSERT_DEVICE)?;
            stmt.execute(rusqlite::params_from_iter(seal_device(key, &device)?.iter()))?;
            insert_credential(tx, key, &cred, hash)
        })?;
        Ok((device, cred))
    }

    /// Replaces every field of an existing device.
    pub fn update_device(&mut self, id: &DeviceId, fields: &DeviceFields) -> Result<(), StoreError> {
        let key = &self.key;
        write(&mut self.conn, Durability::Normal, |tx| {
            update_device_in(tx, key, id, fields)
        })
    }

    /// Inserts or updates many devices in one transaction.
    pub fn update_devices(&mut self, devices: &[(DeviceId, DeviceFields)]) -> Result<(), StoreError> {
        let key = &self.key;
        write(&mut self.conn, Durability::Normal, |tx| {
            for (id, fields) in devices {
                update_device_in(tx, key, id, fields)?;
            }
            Ok(())
        })
    }

    pub fn device(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        let sql = format!("{} WHERE id = ?1", schema::SELECT_DEVICES);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([id.as_str()])?;
        match rows.next()? {
            Some(row) => Ok(Some(open_device(&self.key, row, &mut Vec::new())?)),
            None => Ok(None),
        }
    }

    /// Every device, pending and adopted, in id order.
    pub fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let mut stmt = self.conn.prepare_cached(schema::SELECT_DEVICES)?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        let mut scratch = Vec::with_capacity(512);
        while let Some(row) = rows.next()? {
            out.push(open_device(&self.key, row, &mut scratch)?);
        }
        Ok(out)
    }

    /// Finds a device by MAC through the blind index; the MAC is normalised
    /// to lower case first.
    pub fn device_by_mac(&self, mac: &str) -> Result<Option<Device>, StoreError> {
        let mac = mac.to_ascii_lowercase();
        let index = |k: &DataKey| k.blind_index("devices.mac", mac.as_bytes());
        let (now, before) = indexes(&self.key, index);
        let sql = format!("{} WHERE mac_index IN (?1, ?2)", schema::SELECT_DEVICES);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([now.as_slice(), before.as_slice()])?;
        match rows.next()? {
            Some(row) => Ok(Some(open_device(&self.key, row, &mut Vec::new())?)),
            None => Ok(None),
        }
    }

    /// The device that advertised `identity`, through the blind index.
    pub fn device_by_identity(&self, identity: &str) -> Result<Option<Device>, StoreError> {
        let (now, before) = indexes(&self.key, |k| identity_index(k, identity));
        let sql = format!("{} WHERE ident_index IN (?1, ?2)", schema::SELECT_DEVICES);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([now.as_slice(), before.as_slice()])?;
        match rows.next()? {
            Some(row) => Ok(Some(open_device(&self.key, row, &mut Vec::new())?)),
            None => Ok(None),
        }
    }

    /// How many devices are pending.
    pub fn pending_count(&self) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM devices WHERE status = 'pending'", [], |r| {
                r.get::<_, i64>(0)
            })? as usize)
    }

    /// Removes a device and every credential it held, in one transaction.
    /// Returns whether it existed.
    pub fn forget_device(&mut self, id: &DeviceId) -> Result<bool, StoreError> {
        let principal = id.principal();
        write(&mut self.conn, Durability::Full, |tx| {
            tx.execute("DELETE FROM credentials WHERE principal = ?1", [&principal])?;
            Ok(tx.execute("DELETE FROM devices WHERE id = ?1", [id.as_str()])? > 0)
        })
    }

    // ---- owners --------------------------------------------------------

    pub fn create_owner(&mut self, email: &str, password_hash: &Secret) -> Result<Owner, StoreError> {
        let owner = Owner {
            id: OwnerId::generate()?,
            email: email.to_owned(),
            password_hash: password_hash.clone(),
            last_login: None,
            created_at: UnixTime::now(),
        };
        let key = &self.key;
        write(&mut self.conn, Durability::Full, |tx| {
            let pk = owner.id.as_str();
            let record = value::RecordWriter::new()
                .field(&owner.email)
                .field(&owner.password_hash)
                .field(&owner.created_at)
                .finish();
            tx.execute(
                "INSERT INTO owners (id, email_index, key_id, record, last_login) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    pk,
                    email_index(key, email),
                    key.id().to_hex(),
                    seal_bytes(key, "owners", "record", pk, &record)?,
                    seal_field(key, "owners", "last_login", pk, &owner.last_login)?,
                ],
            )?;
            Ok(())
        })?;
        Ok(owner)
    }

    pub fn owner_by_email(&self, email: &str) -> Result<Option<Owner>, StoreError> {
        let (now, before) = indexes(&self.key, |k| email_index(k, email));
        self.owner_where_index(&now, &before)
    }

    fn owner_where_index(&self, index: &[u8], or: &[u8]) -> Result<Option<Owner>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, record, last_login FROM owners WHERE email_index IN (?1, ?2)")?;
        let mut rows = stmt.query([index, or])?;
        let Some(row) = rows.next()? else { return Ok(None) };
        let id: String = row.get(0)?;
        let mut scratch = Vec::new();
        let record = open_bytes(&self.key, row, 1, ("owners", "record", &id), &mut scratch)?;
        let bad = || StoreError::SealedValue {
            table: "owners",
            column: "record",
            id: id.clone(),
            source: CryptoError::Malformed("record does not decode"),
        };
        let mut r = value::RecordReader::new(record).ok_or_else(bad)?;
        let (email, password_hash, created_at) = (r.field(), r.field(), r.field());
        let (Some(email), Some(password_hash), Some(created_at), Some(())) =
            (email, password_hash, created_at, r.end())
        else {
            return Err(bad());
        };
        Ok(Some(Owner {
            email,
            password_hash,
            created_at,
            last_login: open_field(&self.key, row, 2, "owners", "last_login", &id)?,
            id: OwnerId(id),
        }))
    }

    /// How many owner accounts exist: none until first-run setup.
    pub fn owner_count(&self) -> Result<usize, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM owners", [], |r| r.get(0))?;
        Ok(n as usize)
    }

    /// Every owner account's id.
    pub fn owner_ids(&self) -> Result<Vec<OwnerId>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT id FROM owners ORDER BY id")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids.into_iter().map(OwnerId).collect())
    }

    /// The owner with this id.
    pub fn owner(&self, id: &OwnerId) -> Result<Option<Owner>, StoreError> {
        let email_index: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT email_index FROM owners WHERE id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        let Some(index) = email_index else { return Ok(None) };
        self.owner_where_index(&index, &index)
    }

    /// Replaces an owner's password hash (sealed, `synchronous=FULL`).
    pub fn set_owner_password(&mut self, id: &OwnerId, password_hash: &Secret) -> Result<(), StoreError> {
        let owner = self.owner(id)?.ok_or(StoreError::NotFound("owner"))?;
        let key = &self.key;
        let pk = id.as_str();
        let record = value::RecordWriter::new()
            .field(&owner.email)
            .field(password_hash)
            .field(&owner.created_at)
            .finish();
        let sealed = seal_bytes(key, "owners", "record", pk, &record)?;
        write(&mut self.conn, Durability::Full, |tx| {
            tx.execute(
                "UPDATE owners SET record = ?2, key_id = ?3 WHERE id = ?1",
                params![pk, sealed, key.id().to_hex()],
            )?;
            Ok(())
        })
    }

    pub fn record_login(&mut self, id: &OwnerId, at: UnixTime) -> Result<(), StoreError> {
        let key = &self.key;
        let sealed = seal_field(key, "owners", "last_login", id.as_str(), &Some(at))?;
        let n = write(&mut self.conn, Durability::Normal, |tx| {
            Ok(tx.execute(
                "UPDATE owners SET last_login = ?2 WHERE id = ?1",
                params![id.as_str(), sealed],
            )?)
        })?;
        if n == 0 {
            return Err(StoreError::NotFound("owner"));
        }
        Ok(())
    }

    // ---- credentials ---------------------------------------------------

    /// Stores the hash of a new credential for `principal`. Committed with
    /// `synchronous=FULL`: a credential the caller has handed out survives
    /// a power cut.
    pub fn put_credential(
        &mut self,
        principal: &str,
        kind: &str,
        hash: &TokenHash,
        expires_at: Option<UnixTime>,
    ) -> Result<Credential, StoreError> {
        let cred = Credential {
            id: CredentialId::generate()?,
            principal: principal.to_owned(),
            kind: kind.to_owned(),
            expires_at,
            created_at: UnixTime::now(),
        };
        let key = &self.key;
        write(&mut self.conn, Durability::Full, |tx| {
            insert_credential(tx, key, &cred, hash)
        })?;
        Ok(cred)
    }

    /// Revokes every credential of `kind` that `principal` holds and stores
    /// a new one, in one transaction.
    pub fn replace_credential(
        &mut self,
        principal: &str,
        kind: &str,
        hash: &TokenHash,
    ) -> Result<Credential, StoreError> {
        let cred = Credential {
            id: CredentialId::generate()?,
            principal: principal.to_owned(),
            kind: kind.to_owned(),
            expires_at: None,
            created_at: UnixTime::now(),
        };
        let key = &self.key;
        write(&mut self.conn, Durability::Full, |tx| {
            tx.execute(
                "DELETE FROM credentials WHERE principal = ?1 AND kind = ?2",
                params![principal, kind],
            )?;
            insert_credential(tx, key, &cred, hash)
        })?;
        Ok(cred)
    }

    /// Every unexpired credential of `kind`, with its hash: what the broker
    /// loads at start.
    pub fn credentials_of_kind(&self, kind: &str) -> Result<Vec<(Credential, TokenHash)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, principal, kind, expires_at, created_at, secret_hash FROM credentials \
             WHERE kind = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
        )?;
        let mut rows = stmt.query(params![kind, UnixTime::now().0])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let hash: Vec<u8> = row.get(5)?;
            let hash = TokenHash::from_slice(&hash).ok_or_else(|| StoreError::Corrupt {
                path: self.db_path.clone(),
                detail: format!("credential {id} has a malformed hash"),
            })?;
            out.push((
                Credential {
                    principal: row.get(1)?,
                    kind: row.get(2)?,
                    expires_at: row.get::<_, Option<i64>>(3)?.map(UnixTime),
                    created_at: open_field(&self.key, row, 4, "credentials", "created_at", &id)?,
                    id: CredentialId(id),
                },
                hash,
            ));
        }
        Ok(out)
    }

    /// The unexpired credential of `kind` whose secret hashes to `hash`.
    pub fn find_credential(&self, kind: &str, hash: &TokenHash) -> Result<Option<Credential>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, principal, kind, expires_at, created_at FROM credentials \
             WHERE secret_hash = ?1 AND kind = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
        )?;
        let mut rows = stmt.query(params![hash.as_bytes().as_slice(), kind, UnixTime::now().0])?;
        let Some(row) = rows.next()? else { return Ok(None) };
        let id: String = row.get(0)?;
        Ok(Some(Credential {
            principal: row.get(1)?,
            kind: row.get(2)?,
            expires_at: row.get::<_, Option<i64>>(3)?.map(UnixTime),
            created_at: open_field(&self.key, row, 4, "credentials", "created_at", &id)?,
            id: CredentialId(id),
        }))
    }

    /// Stores (or replaces) a named secret, sealed, with `synchronous=FULL`.
    pub fn put_secret(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let key = &self.key;
        let sealed = seal_bytes(key, "secrets", "value", name, value)?;
        write(&mut self.conn, Durability::Full, |tx| {
            tx.execute(
                "INSERT INTO secrets (id, key_id, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id, value = excluded.value",
                params![name, key.id().to_hex(), sealed],
            )?;
            Ok(())
        })
    }

    /// Deletes a named secret; whether it existed.
    pub fn delete_secret(&mut self, name: &str) -> Result<bool, StoreError> {
        write(&mut self.conn, Durability::Full, |tx| {
            Ok(tx.execute("DELETE FROM secrets WHERE id = ?1", [name])? > 0)
        })
    }

    /// A named secret, opened; zeroed when dropped.
    pub fn secret(&self, name: &str) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT value FROM secrets WHERE id = ?1")?;
        let mut rows = stmt.query([name])?;
        let Some(row) = rows.next()? else { return Ok(None) };
        let mut scratch = zeroize::Zeroizing::new(Vec::new());
        let bytes = open_bytes(&self.key, row, 0, ("secrets", "value", name), &mut scratch)?;
        Ok(Some(zeroize::Zeroizing::new(bytes.to_vec())))
    }

    /// Every unexpired credential of `kind` that `principal` holds.
    pub fn credentials_of(&self, principal: &str, kind: &str) -> Result<Vec<Credential>, StoreError> {
        Ok(self
            .credentials_of_kind(kind)?
            .into_iter()
            .map(|(c, _)| c)
            .filter(|c| c.principal == principal)
            .collect())
    }

    /// Deletes one credential; whether it existed.
    pub fn delete_credential(&mut self, id: &CredentialId) -> Result<bool, StoreError> {
        write(&mut self.conn, Durability::Full, |tx| {
            Ok(tx.execute("DELETE FROM credentials WHERE id = ?1", [id.as_str()])? > 0)
        })
    }

    /// Deletes every credential of `kind` that `principal` holds.
    pub fn delete_credentials(&mut self, principal: &str, kind: &str) -> Result<usize, StoreError> {
        write(&mut self.conn, Durability::Full, |tx| {
            Ok(tx.execute(
                "DELETE FROM credentials WHERE principal = ?1 AND kind = ?2",
                params![principal, kind],
            )?)
        })
    }

    /// Deletes credentials past their expiry.
    pub fn delete_expired_credentials(&mut self) -> Result<usize, StoreError> {
        let now = UnixTime::now().0;
        write(&mut self.conn, Durability::Normal, |tx| {
            Ok(tx.execute(
                "DELETE FROM credentials WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                [now],
            )?)
        })
    }

    // ---- audit ---------------------------------------------------------

    /// Appends an event to the audit table, sealed; keeps the newest
    /// [`AUDIT_KEPT`] events.
    pub fn append_audit(&mut self, e: &AuditEvent) -> Result<(), StoreError> {
        let key = &self.key;
        write(&mut self.conn, Durability::Normal, |tx| {
            append_audit_in(tx, key, e)
        })
    }

    /// The newest `limit` audit entries, newest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, at, record FROM audit ORDER BY id DESC LIMIT ?1")?;
        let mut rows = stmt.query([limit as i64])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let pk: String = row.get(0)?;
            let seq = pk.parse::<i64>().unwrap_or(-1);
            let mut scratch = Vec::new();
            // An altered entry is shown as such, not hidden and not fatal:
            // `verify_audit` says where the chain broke.
            let decoded = open_bytes(&self.key, row, 2, ("audit", "record", &pk), &mut scratch)
                .ok()
                .and_then(audit::decode);
            let (event, detail, actor, outcome) = decoded.unwrap_or_else(|| {
                (
                    "altered".to_owned(),
                    format!(
                        "entry {} does not open: it was altered",
                        pk.trim_start_matches('0')
                    ),
                    String::new(),
                    String::new(),
                )
            });
            out.push(AuditEntry {
                seq,
                at: UnixTime(row.get(1)?),
                event,
                actor,
                outcome,
                detail,
            });
        }
        Ok(out)
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
        })
    }

    /// Deletes every credential of `principal`; returns how many there were.
    pub fn revoke_credentials(&mut self, principal: &str) -> Result<usize, StoreError> {
        write(&mut self.conn, Durability::Full, |tx| {
            Ok(tx.execute("DELETE FROM credentials WHERE principal = ?1", [principal])?)
        })
    }
}

/// Appends an audit event inside a transaction, chained to the one before
/// it (see `audit`).
fn append_audit_in(tx: &Transaction<'_>, key: &DataKey, e: &AuditEvent) -> Result<(), StoreError> {
    audit::append(tx, key, e)
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

fn insert_credential(
    tx: &Transaction<'_>,
    key: &DataKey,
    cred: &Credential,
    hash: &TokenHash,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO credentials (id, principal, kind, secret_hash, expires_at, key_id, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            cred.id.as_str(),
            cred.principal,
            cred.kind,
            hash.as_bytes().as_slice(),
            cred.expires_at.map(|t| t.0),
            key.id().to_hex(),
            seal_field(
                key,
                "credentials",
                "created_at",
                cred.id.as_str(),
                &cred.created_at
            )?,
        ],
    )?;
    Ok(())
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

fn identity_index(key: &DataKey, identity: &str) -> [u8; crypto::BLIND_INDEX_LEN] {
    key.blind_index("devices.identity", identity.as_bytes())
}

fn email_index(key: &DataKey, email: &str) -> [u8; crypto::BLIND_INDEX_LEN] {
    key.blind_index("owners.email", email.trim().to_lowercase().as_bytes())
}

fn update_device_in(
    tx: &Transaction<'_>,
    key: &DataKey,
    id: &DeviceId,
    fields: &DeviceFields,
) -> Result<(), StoreError> {
    // created_at lives in the record and never changes: keep the stored one.
    let created_at = {
        let mut stmt = tx.prepare_cached("SELECT record FROM devices WHERE id = ?1")?;
        let mut rows = stmt.query([id.as_str()])?;
        let Some(row) = rows.next()? else {
            return Err(StoreError::NotFound("device"));
        };
        let mut scratch = Vec::new();
        let record = open_bytes(key, row, 0, ("devices", "record", id.as_str()), &mut scratch)?;
        value::decode_device_record(record, fields.status)
            .ok_or_else(|| undecodable(id.as_str()))?
            .1
    };
    let device = Device {
        id: id.clone(),
        created_at,
        fields: fields.clone(),
    };
    let mut stmt = tx.prepare_cached(schema::UPDATE_DEVICE)?;
    stmt.execute(rusqlite::params_from_iter(seal_device(key, &device)?.iter()))?;
    // A device withdrawn from voice assistants leaves every account link
    // in the same transaction; cameras and doorbells are never in one.
    let voice = fields.status == DeviceStatus::Adopted
        && fields.expose_voice
        && !matches!(fields.kind, DeviceKind::Camera | DeviceKind::Doorbell);
    if !voice {
        tx.prepare_cached("DELETE FROM relay_link_devices WHERE device_id = ?1")?
            .execute([id.as_str()])?;
    }
    Ok(())
}

fn undecodable(id: &str) -> StoreError {
    StoreError::SealedValue {
        table: "devices",
        column: "record",
        id: id.to_owned(),
        source: CryptoError::Malformed("record does not decode"),
    }
}

/// The column values of a device row, in `schema::INSERT_DEVICE` order.
fn seal_device(key: &DataKey, d: &Device) -> Result<Vec<rusqlite::types::Value>, StoreError> {
    use rusqlite::types::Value;
    let pk = d.id.as_str();
    let f = &d.fields;
    let mac_index = match &f.mac {
        Some(mac) => Value::Blob(
            key.blind_index("devices.mac", mac.to_ascii_lowercase().as_bytes())
                .to_vec(),
        ),
        None => Value::Null,
    };
    let ident_index = match &f.identity {
        Some(identity) => Value::Blob(identity_index(key, identity).to_vec()),
        None => Value::Null,
    };
    let record = value::encode_device_record(f, d.created_at);
    Ok(vec![
        Value::Text(pk.to_owned()),
        Value::Text(f.status.as_str().to_owned()),
        mac_index,
        Value::Text(key.id().to_hex()),
        Value::Blob(seal_bytes(key, "devices", "record", pk, &record)?),
        ident_index,
    ])
}

fn open_device(key: &DataKey, row: &rusqlite::Row<'_>, scratch: &mut Vec<u8>) -> Result<Device, StoreError> {
    let text =
        |i| -> Result<&str, StoreError> { Ok(row.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?) };
    let id = text(0)?;
    let status = DeviceStatus::parse(text(1)?).ok_or_else(|| StoreError::SealedValue {
        table: "devices",
        column: "status",
        id: id.to_owned(),
        source: CryptoError::Malformed("unknown status"),
    })?;
    let record = open_bytes(key, row, 4, ("devices", "record", id), scratch)?;
    let (fields, created_at) = value::decode_device_record(record, status).ok_or_else(|| undecodable(id))?;
    Ok(Device {
        id: DeviceId(id.to_owned()),
        created_at,
        fields,
    })
}
