//! The audit log: append-only, sealed at rest, and a keyed hash chain.
//!
//! Each entry's `mac` is HMAC-SHA256, under a random chain key kept sealed
//! in `secrets`, of its sequence number, its time, its record's plaintext
//! and the previous entry's `mac`. The chain's two ends are kept in a
//! sealed head record: the first kept entry's predecessor (entries beyond
//! [`AUDIT_KEPT`] are pruned from the front) and the last entry. So an
//! entry edited, deleted, inserted or moved breaks the chain at that entry,
//! and so does cutting entries off either end — unless an attacker also
//! puts back an older copy of the sealed head, which no check inside one
//! file can tell from the real thing.
//!
//! Verification does not stop hearth: the home keeps working, and the
//! dashboard and `hearth audit verify` say where the chain broke.

use ring::hmac;
use rusqlite::{OptionalExtension, Transaction, params};

use super::{AUDIT_KEPT, DataKey, Store, StoreError, UnixTime, open_bytes, seal_bytes, value};

/// The `secrets` row holding the chain key.
const CHAIN_KEY: &str = "audit_chain_key";
/// The `secrets` row holding the chain's ends.
const HEAD: &str = "audit_head";
const GENESIS: [u8; 32] = [0; 32];

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Head {
    first_seq: i64,
    first_prev: String,
    last_seq: i64,
    last_mac: String,
}

/// What verifying the chain found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    /// Chained entries checked.
    pub entries: u64,
    /// Entries from before the chain began (older hearth versions).
    pub before_chain: u64,
    /// The first bad entry and what is wrong with it.
    pub problem: Option<Problem>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The sequence number of the first entry that fails.
    pub entry: i64,
    pub why: String,
}

/// Who did what an audit entry records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// The owner, in the dashboard session with this public id.
    Session(String),
    /// The owner, at the admin socket (the `hearth` command, as root or
    /// hearth's own user).
    Cli,
    /// Someone not signed in: a login, the setup page, a consent page.
    Visitor,
    /// An MQTT principal: a device's id, or `homeassistant`.
    Principal(String),
    /// A voice assistant, through the relay link with this id.
    Link(String),
    /// hearth itself: the settings watcher, start-up, a sweep.
    Hearth,
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Session(id) => write!(f, "session {id}"),
            Actor::Cli => f.write_str("cli"),
            Actor::Visitor => f.write_str("visitor"),
            Actor::Principal(p) => write!(f, "principal {p}"),
            Actor::Link(l) => write!(f, "link {l}"),
            Actor::Hearth => f.write_str("hearth"),
        }
    }
}

/// How the action an audit entry records ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It was done.
    Ok,
    /// It was refused: a wrong password, code or token, or not allowed.
    Refused,
    /// It was tried and failed.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// Defines [`Kind`]: each event's variant, the name stored in the log (never
/// changed, so older entries keep their meaning) and the wording the
/// dashboard shows.
macro_rules! kinds {
    ($($variant:ident => $name:literal, $wording:literal;)*) => {
        /// Every kind of audit event, in one place.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Kind {
            $($variant,)*
        }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            /// The name stored in the log and used in filters.
            pub fn name(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)*
                }
            }

            /// What the dashboard shows for it.
            pub fn wording(self) -> &'static str {
                match self {
                    $(Kind::$variant => $wording,)*
                }
            }

            pub fn parse(name: &str) -> Option<Kind> {
                Kind::ALL.iter().copied().find(|k| k.name() == name)
            }
        }
    };
}

kinds! {
    Login => "login", "Logged in";
    LoginFailed => "login_failed", "Log-in failed";
    Logout => "logout", "Logged out";
    RecoveryCodeUsed => "recovery_code_used", "Recovery code used";
    OwnerCreated => "owner_created", "Owner account created";
    SetupRefused => "setup_refused", "First-run setup refused";
    PasswordChanged => "password_changed", "Password changed";
    PasswordChangeRefused => "password_change_refused", "Password change refused";
    PasswordChangeRequired => "password_change_required", "New password required at the next log-in";
    TotpEnrolled => "totp_enrolled", "Two-factor authentication set up";
    TotpReset => "totp_reset", "Two-factor authentication reset";
    SessionRevoked => "session_revoked", "Session revoked";
    DeviceAdded => "device_added", "Device added by hand";
    DeviceAdopted => "device_adopted", "Device adopted";
    DeviceRenamed => "device_renamed", "Device renamed";
    DeviceExposureChanged => "device_exposure_changed", "Device's exposure changed";
    DeviceCredentialRotated => "device_credential_rotated", "Device password rotated";
    DeviceForgotten => "device_forgotten", "Device forgotten";
    DeviceIgnored => "device_ignored", "Discovered device ignored";
    HomeassistantEnabled => "homeassistant_enabled", "Home Assistant connected";
    HomeassistantRotated => "homeassistant_rotated", "Home Assistant password rotated";
    HomeassistantDisabled => "homeassistant_disabled", "Home Assistant disconnected";
    HomeassistantLockedDown => "homeassistant_locked_down", "Home Assistant cut off by a lockdown";
    HomeassistantSettings => "homeassistant_settings", "Home Assistant settings changed";
    RelayEnabled => "relay_enabled", "Voice relay turned on";
    RelayDisabled => "relay_disabled", "Voice relay turned off";
    RelayClientRegistered => "relay_client_registered", "Voice assistant registered";
    RelayClientDeleted => "relay_client_deleted", "Voice assistant removed";
    RelayLogin => "relay_login", "Logged in to link a voice assistant";
    RelayConsentGiven => "relay_consent_given", "Voice assistant link allowed";
    RelayConsentDenied => "relay_consent_denied", "Voice assistant link refused";
    RelayLinkCreated => "relay_link_created", "Voice assistant linked";
    RelayLinkRevoked => "relay_link_revoked", "Voice assistant link revoked";
    RelayCalls => "relay_calls", "Voice assistant calls";
    ProtectionLowered => "protection_lowered", "Protection lowered";
    WarningAcknowledged => "warning_acknowledged", "Warning acknowledged";
    MetricsTokenIssued => "metrics_token_issued", "Metrics token issued";
    Lockdown => "lockdown", "Lockdown: everyone logged out";
    KeysRotated => "keys_rotated", "Data key rotated";
    KeysRewrapped => "keys_rewrapped", "Master key changed";
    BackupCreated => "backup_created", "Backup created";
    Restored => "restored", "Backup restored";
    BackupRefused => "backup_refused", "Backup refused: the password or code was wrong";
    EraseRefused => "erase_refused", "Erase refused: the password or code was wrong";
    MatterPairingOpened => "matter_pairing_opened", "Matter pairing opened for 15 minutes";
    MatterPairingClosed => "matter_pairing_closed", "Matter pairing closed";
    MatterControllerAdded => "matter_controller_added", "Matter controller added";
    MatterControllerRemoved => "matter_controller_removed", "Matter controller removed";
    DnsPolicyChanged => "dns_policy_changed", "A device's DNS policy changed";
    DnsCloudDomains => "dns_cloud_domains", "Cloud domain list changed";
    DnsNewCloud => "dns_new_cloud", "A device started looking up a cloud domain";
}

/// One audit entry to append: the event type, who, how it ended, and a
/// detail of opaque ids (never a token, and never shown outside the
/// dashboard and the admin socket).
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: Kind,
    pub actor: Actor,
    pub outcome: Outcome,
    pub detail: String,
}

impl Event {
    /// An action `actor` did.
    pub fn ok(kind: Kind, actor: Actor, detail: impl Into<String>) -> Event {
        Event {
            kind,
            actor,
            outcome: Outcome::Ok,
            detail: detail.into(),
        }
    }

    /// An action `actor` was refused.
    pub fn refused(kind: Kind, actor: Actor, detail: impl Into<String>) -> Event {
        Event {
            outcome: Outcome::Refused,
            ..Event::ok(kind, actor, detail)
        }
    }

    /// An action `actor` tried, which failed.
    pub fn failed(kind: Kind, actor: Actor, detail: impl Into<String>) -> Event {
        Event {
            outcome: Outcome::Failed,
            ..Event::ok(kind, actor, detail)
        }
    }
}

/// One audit entry as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its place in the chain.
    pub seq: i64,
    pub at: UnixTime,
    pub event: String,
    /// Empty for entries written before hearth recorded actors.
    pub actor: String,
    /// `ok`, `refused` or `failed`; empty for entries written before
    /// hearth recorded outcomes.
    pub outcome: String,
    pub detail: String,
}

/// Decodes a record: event and detail, then (since the actor was added)
/// actor and outcome.
pub(super) fn decode(record: &[u8]) -> Option<(String, String, String, String)> {
    let mut r = value::RecordReader::new(record)?;
    let event: String = r.field()?;
    let detail: String = r.field()?;
    let actor: Option<String> = r.trailing_field()?;
    let outcome: Option<String> = r.trailing_field()?;
    r.end()?;
    Some((
        event,
        detail,
        actor.unwrap_or_default(),
        outcome.unwrap_or_default(),
    ))
}

impl Verdict {
    pub fn verified(&self) -> bool {
        self.problem.is_none()
    }
}

fn secret_in(conn: &rusqlite::Connection, key: &DataKey, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT value FROM secrets WHERE id = ?1")?;
    let mut rows = stmt.query([name])?;
    let Some(row) = rows.next()? else { return Ok(None) };
    let mut scratch = zeroize::Zeroizing::new(Vec::new());
    let bytes = open_bytes(key, row, 0, ("secrets", "value", name), &mut scratch)?;
    Ok(Some(bytes.to_vec()))
}

fn put_secret_in(tx: &Transaction<'_>, key: &DataKey, name: &str, value: &[u8]) -> Result<(), StoreError> {
    let sealed = seal_bytes(key, "secrets", "value", name, value)?;
    tx.prepare_cached(
        "INSERT INTO secrets (id, key_id, value) VALUES (?1, ?2, ?3) \
         ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id, value = excluded.value",
    )?
    .execute(params![name, key.id().to_hex(), sealed])?;
    Ok(())
}

fn chain_key(tx: &Transaction<'_>, key: &DataKey) -> Result<hmac::Key, StoreError> {
    if let Some(bytes) = secret_in(tx, key, CHAIN_KEY)? {
        return Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes));
    }
    let mut fresh = zeroize::Zeroizing::new([0u8; 32]);
    super::crypto::fill_random(fresh.as_mut())?;
    put_secret_in(tx, key, CHAIN_KEY, fresh.as_ref())?;
    Ok(hmac::Key::new(hmac::HMAC_SHA256, fresh.as_ref()))
}

fn head(conn: &rusqlite::Connection, key: &DataKey) -> Result<Option<Head>, StoreError> {
    Ok(secret_in(conn, key, HEAD)?.and_then(|b| serde_json::from_slice(&b).ok()))
}

fn mac_of(k: &hmac::Key, seq: i64, at: i64, record: &[u8], prev: &[u8]) -> [u8; 32] {
    let mut ctx = hmac::Context::with_key(k);
    ctx.update(b"hearth audit chain v1");
    ctx.update(&seq.to_be_bytes());
    ctx.update(&at.to_be_bytes());
    ctx.update(&(record.len() as u64).to_be_bytes());
    ctx.update(record);
    ctx.update(prev);
    ctx.sign().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

fn pk(seq: i64) -> String {
    format!("{seq:020}")
}

/// Appends one event, chained, and prunes the oldest beyond [`AUDIT_KEPT`].
pub(super) fn append(tx: &Transaction<'_>, key: &DataKey, e: &Event) -> Result<(), StoreError> {
    let at = UnixTime::now().0;
    let record = value::RecordWriter::new()
        .field(&e.kind.name().to_owned())
        .field(&e.detail)
        .field(&Some(e.actor.to_string()))
        .field(&Some(e.outcome.as_str().to_owned()))
        .finish();
    let last: Option<String> = tx.query_row("SELECT max(id) FROM audit", [], |r| r.get(0))?;
    let seq = last.and_then(|l| l.parse::<i64>().ok()).unwrap_or(0) + 1;
    let k = chain_key(tx, key)?;
    let mut h = head(tx, key)?.unwrap_or(Head {
        first_seq: seq,
        first_prev: hex::encode(GENESIS),
        last_seq: seq - 1,
        last_mac: hex::encode(GENESIS),
    });
    let prev = hex::decode(&h.last_mac).unwrap_or_else(|_| GENESIS.to_vec());
    let mac = mac_of(&k, seq, at, &record, &prev);
    let id = pk(seq);
    let sealed = seal_bytes(key, "audit", "record", &id, &record)?;
    tx.prepare_cached("INSERT INTO audit (id, at, key_id, record, mac) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![id, at, key.id().to_hex(), sealed, mac.as_slice()])?;
    h.last_seq = seq;
    h.last_mac = hex::encode(mac);
    let cutoff = seq - AUDIT_KEPT;
    if cutoff >= h.first_seq {
        let before: Option<Vec<u8>> = tx
            .query_row("SELECT mac FROM audit WHERE id = ?1", [pk(cutoff)], |r| r.get(0))
            .optional()?
            .flatten();
        h.first_seq = cutoff + 1;
        h.first_prev = hex::encode(before.unwrap_or_else(|| GENESIS.to_vec()));
    }
    if cutoff > 0 {
        tx.prepare_cached("DELETE FROM audit WHERE id <= ?1")?
            .execute([pk(cutoff)])?;
    }
    put_secret_in(tx, key, HEAD, &serde_json::to_vec(&h).expect("head serialises"))?;
    Ok(())
}

impl Store {
    /// Checks the whole chain, oldest first, and names the first bad entry.
    pub fn verify_audit(&self) -> Result<Verdict, StoreError> {
        let key = &self.key;
        let head = head(&self.conn, key)?;
        let k = secret_in(&self.conn, key, CHAIN_KEY)?.map(|b| hmac::Key::new(hmac::HMAC_SHA256, &b));
        let mut verdict = Verdict {
            entries: 0,
            before_chain: 0,
            problem: None,
        };
        let fail = |mut v: Verdict, entry: i64, why: &str| {
            v.problem = Some(Problem {
                entry,
                why: why.to_owned(),
            });
            Ok(v)
        };
        let mut stmt = self
            .conn
            .prepare("SELECT id, at, record, mac FROM audit ORDER BY id")?;
        let mut rows = stmt.query([])?;
        let (mut expected, mut prev) = match &head {
            Some(h) => (h.first_seq, hex::decode(&h.first_prev).unwrap_or_default()),
            None => (0, Vec::new()),
        };
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let Some(seq) = id.parse::<i64>().ok().filter(|_| id.len() == 20) else {
                return fail(
                    verdict,
                    expected,
                    &format!("a row with the malformed id {id:?} is in the log"),
                );
            };
            let mac: Option<Vec<u8>> = row.get(3)?;
            let Some(mac) = mac else {
                if head.as_ref().is_none_or(|h| seq < h.first_seq) {
                    verdict.before_chain += 1;
                    continue;
                }
                return fail(verdict, seq, "it has no chain value");
            };
            let (Some(h), Some(k)) = (&head, &k) else {
                return fail(verdict, seq, "the chain's key or head is missing");
            };
            if seq < h.first_seq {
                return fail(verdict, seq, "it is older than the chain's first entry");
            }
            if seq > expected {
                return fail(verdict, expected, "it is missing");
            }
            let at: i64 = row.get(1)?;
            let mut scratch = Vec::new();
            let Ok(record) = open_bytes(key, row, 2, ("audit", "record", &id), &mut scratch) else {
                return fail(
                    verdict,
                    seq,
                    "its sealed record does not open (altered, or moved from another entry)",
                );
            };
            if mac_of(k, seq, at, record, &prev).as_slice() != mac.as_slice() {
                return fail(
                    verdict,
                    seq,
                    "it does not match the chain (altered, inserted or reordered)",
                );
            }
            prev = mac;
            expected = seq + 1;
            verdict.entries += 1;
        }
        if let Some(h) = &head {
            if expected <= h.last_seq {
                return fail(
                    verdict,
                    expected,
                    "it and every later entry are missing (the log was cut short)",
                );
            }
            if hex::encode(&prev) != h.last_mac {
                return fail(
                    verdict,
                    h.last_seq,
                    "the last entry is not the one the chain's head names",
                );
            }
        }
        Ok(verdict)
    }
}

use super::{Durability, write};

impl Store {
    /// Appends an event to the audit table, sealed; keeps the newest
    /// [`AUDIT_KEPT`] events.
    pub fn append_audit(&mut self, e: &Event) -> Result<(), StoreError> {
        let key = &self.key;
        write(&mut self.conn, Durability::Normal, |tx| append(tx, key, e))
    }

    /// The newest `limit` audit entries, newest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<Entry>, StoreError> {
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
                .and_then(decode);
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
            out.push(Entry {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MasterKey;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (master, _) = MasterKey::generate().unwrap();
        let store = Store::create(&dir.path().join("hearth.db"), &master).unwrap();
        (dir, store)
    }

    fn with_events(n: usize) -> (tempfile::TempDir, Store) {
        let (dir, mut s) = store();
        for i in 0..n {
            s.append_audit(&Event::refused(
                Kind::LoginFailed,
                Actor::Visitor,
                format!("from 192.0.2.{i}"),
            ))
            .unwrap();
        }
        (dir, s)
    }

    fn problem(s: &Store) -> Option<(i64, String)> {
        s.verify_audit().unwrap().problem.map(|p| (p.entry, p.why))
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let (_d, s) = with_events(5);
        let v = s.verify_audit().unwrap();
        assert!(v.verified(), "{v:?}");
        assert_eq!(v.entries, 5);
        let (_d, s) = store();
        assert!(s.verify_audit().unwrap().verified(), "an empty log verifies");
    }

    #[test]
    fn an_edited_time_or_record_is_named() {
        let (_d, s) = with_events(5);
        s.conn
            .execute("UPDATE audit SET at = at + 1 WHERE id = ?1", [pk(3)])
            .unwrap();
        assert_eq!(problem(&s).unwrap().0, 3);

        let (_d, s) = with_events(5);
        // Another entry's sealed record, moved in: it does not open here.
        s.conn
            .execute(
                "UPDATE audit SET record = (SELECT record FROM audit WHERE id = ?2) WHERE id = ?1",
                [pk(2), pk(4)],
            )
            .unwrap();
        assert_eq!(problem(&s).unwrap().0, 2);
    }

    #[test]
    fn a_deleted_entry_is_named_in_the_middle_and_at_either_end() {
        for (gone, named) in [(3, 3), (5, 5), (1, 1)] {
            let (_d, s) = with_events(5);
            s.conn
                .execute("DELETE FROM audit WHERE id = ?1", [pk(gone)])
                .unwrap();
            let p = problem(&s).unwrap_or_else(|| panic!("deleting {gone} went unnoticed"));
            assert_eq!(p.0, named, "deleting {gone}: {p:?}");
        }
    }

    #[test]
    fn reordered_entries_are_named() {
        let (_d, s) = with_events(5);
        // Swap the contents of 2 and 4 (time, record, mac), keeping ids.
        s.conn
            .execute_batch(&format!(
                "CREATE TEMP TABLE t AS SELECT * FROM audit WHERE id IN ('{a}', '{b}');
                 UPDATE audit SET at = (SELECT at FROM t WHERE id = '{b}'), record = (SELECT record FROM t WHERE id = '{b}'), mac = (SELECT mac FROM t WHERE id = '{b}') WHERE id = '{a}';
                 UPDATE audit SET at = (SELECT at FROM t WHERE id = '{a}'), record = (SELECT record FROM t WHERE id = '{a}'), mac = (SELECT mac FROM t WHERE id = '{a}') WHERE id = '{b}';",
                a = pk(2),
                b = pk(4)
            ))
            .unwrap();
        assert_eq!(problem(&s).unwrap().0, 2);
    }

    #[test]
    fn a_removed_chain_value_or_head_is_named() {
        let (_d, s) = with_events(3);
        s.conn
            .execute("UPDATE audit SET mac = NULL WHERE id = ?1", [pk(2)])
            .unwrap();
        assert_eq!(problem(&s).unwrap().0, 2);
        let (_d, s) = with_events(3);
        s.conn
            .execute("DELETE FROM secrets WHERE id = ?1", [HEAD])
            .unwrap();
        assert!(problem(&s).is_some());
    }

    #[test]
    fn pruning_keeps_the_chain_verifiable() {
        let (_d, mut s) = store();
        // Fewer than AUDIT_KEPT appends would not prune; write AUDIT_KEPT + 3
        // cheaply in one transaction.
        let key = &s.key;
        write_many(&mut s.conn, key, AUDIT_KEPT as usize + 3);
        let v = s.verify_audit().unwrap();
        assert!(v.verified(), "{v:?}");
        assert_eq!(v.entries, AUDIT_KEPT as u64);
        // Cutting the new front off is still noticed.
        s.conn
            .execute("DELETE FROM audit WHERE id = ?1", [pk(4)])
            .unwrap();
        assert_eq!(problem(&s).unwrap().0, 4);
    }

    fn write_many(conn: &mut rusqlite::Connection, key: &DataKey, n: usize) {
        let tx = conn.transaction().unwrap();
        for i in 0..n {
            append(
                &tx,
                key,
                &Event::ok(Kind::RelayCalls, Actor::Hearth, format!("{i}")),
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
}
