//! The database schema, its migrations, and the SQL the store runs.
//!
//! Migrations are applied in order and counted in `PRAGMA user_version`;
//! an applied migration is never edited, only followed by a new one.
//! Every column says what it holds and whether it is sealed. A sealed column
//! always holds an envelope, even for an absent value, so that NULLs and
//! lengths do not tell which devices have, say, a stream URL.

/// One entry per schema version. `MIGRATIONS[n]` moves `user_version` n → n+1.
pub const MIGRATIONS: &[&str] = &[
    // 1: key hierarchy, devices, owners, credentials.
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL, -- setting name: 'store_id', 'master_check', 'active_key'; not secret
    value BLOB NOT NULL              -- its value; 'master_check' is an HKDF output, not the key; not sealed
) WITHOUT ROWID;

CREATE TABLE data_keys (
    id      TEXT PRIMARY KEY NOT NULL, -- data key id, 16 hex digits; not secret
    wrapped BLOB NOT NULL,             -- the data key, sealed under the master key's wrap subkey
    state   TEXT NOT NULL CHECK (state IN ('active', 'retired')) -- one 'active' key seals new values
) WITHOUT ROWID;

CREATE TABLE devices (
    id        TEXT PRIMARY KEY NOT NULL, -- random 128-bit id, hex; opaque; not sealed
    status    TEXT NOT NULL CHECK (status IN ('pending', 'adopted')), -- lifecycle; not sealed
    mac_index BLOB,                      -- blind index (HMAC-SHA256/16) of the MAC, for look-ups; one-way
    key_id    TEXT NOT NULL,             -- data key the sealed columns of this row are under
    record    BLOB NOT NULL  -- sealed: kind, vendor profile, nickname, room, vendor, model, firmware, MAC, every IP address, SSID, stream URL, device secret, last-seen and creation times (one envelope; see value.rs)
) WITHOUT ROWID;
CREATE INDEX devices_mac_index ON devices (mac_index);

CREATE TABLE owners (
    id          TEXT PRIMARY KEY NOT NULL, -- random 128-bit id, hex; opaque; not sealed
    email_index BLOB NOT NULL UNIQUE,      -- blind index of the lower-cased e-mail; one-way
    key_id      TEXT NOT NULL,             -- data key the sealed columns are under
    record      BLOB NOT NULL, -- sealed: e-mail, argon2id PHC password hash (hashed, then sealed against offline guessing), creation time
    last_login  BLOB NOT NULL  -- sealed: time of the last login
) WITHOUT ROWID;

CREATE TABLE credentials (
    id          TEXT PRIMARY KEY NOT NULL, -- random 128-bit id, hex; opaque; not sealed
    principal   TEXT NOT NULL,             -- who it authenticates: 'device:<id>', 'owner:<id>', ...; opaque ids only
    kind        TEXT NOT NULL,             -- what it is for: 'mqtt_password', 'session', ...
    secret_hash BLOB NOT NULL UNIQUE,      -- SHA-256 of a random secret of 128 bits or more; the secret is never stored
    expires_at  INTEGER,                   -- Unix time in ms after which it is refused, or NULL; not sealed
    key_id      TEXT NOT NULL,             -- data key the sealed columns are under
    created_at  BLOB NOT NULL              -- sealed: when it was issued
) WITHOUT ROWID;
CREATE INDEX credentials_principal ON credentials (principal);
"#,
    // 2: sealed secrets hearth itself holds (the local CA's key).
    r#"
CREATE TABLE secrets (
    id     TEXT PRIMARY KEY NOT NULL, -- the secret's name: 'ca_key', 'ca_cert', 'server_cert_info'; not secret
    key_id TEXT NOT NULL,             -- data key the sealed column is under
    value  BLOB NOT NULL              -- sealed: the secret itself (a private key in PEM, ...)
) WITHOUT ROWID;
"#,
    // 3: match adverts to devices without storing what they advertised.
    r#"
ALTER TABLE devices ADD COLUMN ident_index BLOB /* blind index (HMAC-SHA256/16) of the identity a device advertised over mDNS (its MAC or service instance), to match later adverts; one-way */;
CREATE INDEX devices_ident_index ON devices (ident_index);
"#,
    r#"
CREATE TABLE audit (
    id     TEXT PRIMARY KEY NOT NULL, -- sequence number, 20 zero-padded digits, so it sorts in order; not secret
    at     INTEGER NOT NULL,          -- Unix time in seconds; not sealed
    key_id TEXT NOT NULL,             -- data key the sealed column is under
    record BLOB NOT NULL              -- sealed: the event's name and its detail (account, client address, device id)
) WITHOUT ROWID;
"#,
    // 5: the voice relay's OAuth clients, account links and tokens.
    r#"
CREATE TABLE relay_clients (
    id          TEXT PRIMARY KEY NOT NULL, -- the OAuth client_id: random 128-bit id, hex; the assistant sends it; not secret
    secret_hash BLOB NOT NULL UNIQUE,      -- SHA-256 of the client secret (256 random bits); the secret is never stored
    key_id      TEXT NOT NULL,             -- data key the sealed column is under
    record      BLOB NOT NULL              -- sealed: the owner's label, the assistant, the redirect-URI allow-list, creation time
) WITHOUT ROWID;

CREATE TABLE relay_links (
    id        TEXT PRIMARY KEY NOT NULL,   -- random 128-bit id, hex; Google's agentUserId; opaque; not sealed
    client_id TEXT NOT NULL REFERENCES relay_clients (id) ON DELETE CASCADE, -- the client it was granted to
    calls     INTEGER NOT NULL DEFAULT 0,  -- how many relay calls it made; a count; not sealed
    key_id    TEXT NOT NULL,               -- data key the sealed column is under
    record    BLOB NOT NULL                -- sealed: the actions it may take, creation time
) WITHOUT ROWID;
CREATE INDEX relay_links_client ON relay_links (client_id);

CREATE TABLE relay_link_devices (
    link_id   TEXT NOT NULL REFERENCES relay_links (id) ON DELETE CASCADE, -- the link
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,     -- a device it may see; opaque ids only
    PRIMARY KEY (link_id, device_id)
) WITHOUT ROWID;
CREATE INDEX relay_link_devices_device ON relay_link_devices (device_id);

CREATE TABLE relay_tokens (
    hash        BLOB PRIMARY KEY NOT NULL, -- SHA-256 of the token (256 random bits); the token is never stored
    link_id     TEXT NOT NULL REFERENCES relay_links (id) ON DELETE CASCADE, -- the link it acts for
    kind        TEXT NOT NULL CHECK (kind IN ('access', 'refresh')), -- what it is
    expires_at  INTEGER NOT NULL,          -- Unix time in ms after which it is refused; not sealed
    issued_with BLOB,                      -- access tokens: the hash of the refresh token issued beside it; one-way
    rotated_at  INTEGER,                   -- refresh tokens: when it was exchanged (Unix ms), NULL while current
    successor   BLOB                       -- refresh tokens: the hash of the refresh token that replaced it; one-way
) WITHOUT ROWID;
CREATE INDEX relay_tokens_link ON relay_tokens (link_id);
"#,
    // 6: the audit log becomes a keyed hash chain.
    r#"
ALTER TABLE audit ADD COLUMN mac BLOB /* HMAC-SHA256 under the sealed audit chain key of (sequence number, time, the record's plaintext, the previous entry's mac); NULL only for entries written before the chain began; one-way */;
"#,
    // 7: relay calls are audited once per link and minute.
    r#"
CREATE TABLE relay_tallies (
    id      TEXT PRIMARY KEY NOT NULL, -- "<link id>/<minute>": the link and the minute the calls fell in; opaque; not sealed
    minute  INTEGER NOT NULL,          -- Unix time in minutes; which minutes are over and go to the audit log; not sealed
    key_id  TEXT NOT NULL,             -- data key the sealed column is under
    record  BLOB NOT NULL              -- sealed: how many calls of each action and result, until the minute is audited and the row deleted
) WITHOUT ROWID;
"#,
    // 8: a data key can be 'next': rotated in, sealing new values, while
    // the values under the active one are re-sealed.
    r#"
CREATE TABLE data_keys_8 (
    id      TEXT PRIMARY KEY NOT NULL, -- data key id, 16 hex digits; not secret
    wrapped BLOB NOT NULL,             -- the data key, sealed under the master key's wrap subkey
    state   TEXT NOT NULL CHECK (state IN ('active', 'next')) -- 'active' is named in meta; 'next' is being rotated in
) WITHOUT ROWID;
INSERT INTO data_keys_8 (id, wrapped, state) SELECT id, wrapped, state FROM data_keys WHERE state = 'active';
DROP TABLE data_keys;
ALTER TABLE data_keys_8 RENAME TO data_keys;
"#,
    // 9: the DNS resolver's record of what each adopted device looked up.
    r#"
CREATE TABLE dns_devices (
    id      TEXT PRIMARY KEY NOT NULL REFERENCES devices (id) ON DELETE CASCADE, -- the device's id; opaque; not sealed
    key_id  TEXT NOT NULL,   -- data key the sealed column is under
    record  BLOB NOT NULL    -- sealed: the device's DNS policy and the names it looked up, each with a count, a count blocked, first and last seen
) WITHOUT ROWID;
"#,
];

/// The schema version this build writes.
pub const VERSION: u32 = MIGRATIONS.len() as u32;

/// The schema version that created `table` (1 for the first migration's
/// tables; one past the last migration for a table no migration creates).
pub fn created_in(table: &str) -> u32 {
    let create = format!("CREATE TABLE {table} (");
    MIGRATIONS
        .iter()
        .position(|m| m.contains(&create))
        .map_or(VERSION + 1, |i| i as u32 + 1)
}

/// Sealed columns per table. The store opens every one of these at start
/// (`Store::open`), and key rotation will re-seal them.
pub const SEALED: &[(&str, &[&str])] = &[
    ("devices", &["record"]),
    ("owners", &["record", "last_login"]),
    ("credentials", &["created_at"]),
    ("audit", &["record"]),
    ("secrets", &["value"]),
    ("relay_clients", &["record"]),
    ("relay_links", &["record"]),
    ("relay_tallies", &["record"]),
    ("dns_devices", &["record"]),
];

pub const INSERT_DEVICE: &str = "INSERT INTO devices (id, status, mac_index, key_id, record, ident_index) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

pub const UPDATE_DEVICE: &str = "UPDATE devices SET status = ?2, mac_index = ?3, key_id = ?4, record = ?5, ident_index = ?6 WHERE id = ?1";

pub const SELECT_DEVICES: &str = "SELECT id, status, mac_index, key_id, record FROM devices";
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sealed_table_is_created_by_a_migration() {
        for (table, _) in SEALED {
            assert!((1..=VERSION).contains(&created_in(table)), "{table}");
        }
        assert_eq!(created_in("devices"), 1);
        assert_eq!(created_in("dns_devices"), VERSION);
        assert_eq!(created_in("nothing"), VERSION + 1);
    }

    /// Every column of every table carries a comment (the house rule), and
    /// every sealed column listed in `SEALED` exists.
    #[test]
    fn every_column_is_commented_and_sealed_list_is_true() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for m in MIGRATIONS {
            conn.execute_batch(m).unwrap();
        }
        let mut tables = conn
            .prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'table'")
            .unwrap();
        let tables: Vec<(String, String)> = tables
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(tables.len() >= 5);
        for (name, sql) in &tables {
            let mut cols = conn.prepare(&format!("PRAGMA table_info({name})")).unwrap();
            let cols: Vec<String> = cols
                .query_map([], |r| r.get(1))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for col in cols {
                // Columns added by ALTER TABLE appear as ", col TYPE /* ... */".
                let line = sql
                    .lines()
                    .find(|l| {
                        let l = l.trim_start().trim_start_matches(", ");
                        l.starts_with(&format!("{col} "))
                    })
                    .unwrap_or_else(|| panic!("{name}.{col} has no line of its own"));
                assert!(
                    line.contains("--") || line.contains("/*"),
                    "{name}.{col} has no comment"
                );
            }
        }
        for (table, cols) in SEALED {
            for col in *cols {
                let sql = &tables.iter().find(|(n, _)| n == table).unwrap().1;
                let line = sql
                    .lines()
                    .find(|l| l.trim_start().starts_with(&format!("{col} ")))
                    .unwrap();
                assert!(
                    line.contains("sealed"),
                    "{table}.{col} is listed as sealed but not documented so"
                );
            }
        }
    }
}
