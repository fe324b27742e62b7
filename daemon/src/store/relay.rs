//! The voice relay's rows: OAuth clients, account links, the devices each
//! link may see, and token hashes.
//!
//! Clients and links keep their details in one sealed record each. Tokens
//! are stored only as SHA-256 hashes. A link's devices are a table of
//! opaque id pairs, so that forgetting a device (`ON DELETE CASCADE`) or
//! withdrawing it from voice assistants (`update_device_in`) takes it out of
//! every link in the same transaction.

use rusqlite::{OptionalExtension, Transaction, params};

use super::{
    Actor, AuditEvent, DataKey, DeviceId, Durability, LinkId, RelayClientId, Store, StoreError, UnixTime,
    append_audit_in, open_bytes, seal_bytes, write,
};

/// Calls of one link in one minute: "action: result" to how many.
type Tally = std::collections::BTreeMap<String, u64>;

fn tally_in(tx: &Transaction<'_>, key: &DataKey, id: &str) -> Result<Tally, StoreError> {
    let mut stmt = tx.prepare_cached("SELECT record FROM relay_tallies WHERE id = ?1")?;
    let mut rows = stmt.query([id])?;
    let Some(row) = rows.next()? else {
        return Ok(Tally::new());
    };
    let mut scratch = Vec::new();
    let bytes = open_bytes(key, row, 0, ("relay_tallies", "record", id), &mut scratch)?;
    // A tally that opens but does not parse was written by no hearth; it
    // starts again rather than stopping the relay.
    Ok(serde_json::from_slice(bytes).unwrap_or_default())
}
use super::AuditKind;
use crate::store::secret::TokenHash;

/// What the owner registered for one assistant.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelayClientFields {
    /// The owner's label for it, such as "Alexa".
    pub name: String,
    /// `alexa` or `google` (`other`, which older versions accepted, is
    /// answered on neither route).
    pub assistant: String,
    /// Redirect URIs it may use, compared exactly.
    pub redirect_uris: Vec<String>,
    /// Unix time in ms.
    pub created_at: i64,
}

/// Labels and URIs are the owner's; they stay out of logs.
impl std::fmt::Debug for RelayClientFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayClientFields")
            .field("assistant", &self.assistant)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayClient {
    pub id: RelayClientId,
    pub fields: RelayClientFields,
}

/// What one account link may do.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelayLinkFields {
    /// Granted actions: `power`, `brightness`, `color_temp`.
    pub actions: Vec<String>,
    /// Unix time in ms.
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayLink {
    pub id: LinkId,
    pub client_id: RelayClientId,
    /// Relay calls it made.
    pub calls: u64,
    /// The devices it may see, in id order.
    pub devices: Vec<DeviceId>,
    pub fields: RelayLinkFields,
}

/// A fresh access and refresh token pair, as hashes.
#[derive(Clone, Copy, Debug)]
pub struct IssuedTokens {
    pub access: TokenHash,
    pub access_expires: UnixTime,
    pub refresh: TokenHash,
    pub refresh_expires: UnixTime,
}

/// What presenting a refresh token led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refreshed {
    /// The new pair is stored.
    Issued(LinkId),
    /// No such live token for this client.
    Unknown,
    /// An exchanged token came back after its grace window (or after its
    /// successor was itself used): the whole link is revoked.
    Reused(LinkId),
}

/// How long an exchanged refresh token is remembered, to catch its reuse;
/// after that it is swept, and presenting it is merely unknown.
const ROTATED_KEPT_MS: i64 = 30 * 24 * 3600 * 1000;

const ACCESS: &str = "access";
const REFRESH: &str = "refresh";

impl Store {
    /// Registers a client; its secret is given as a hash.
    pub fn insert_relay_client(
        &mut self,
        fields: &RelayClientFields,
        secret: &TokenHash,
    ) -> Result<RelayClientId, StoreError> {
        let id = RelayClientId::generate()?;
        let key = &self.key;
        let record = seal_json(key, "relay_clients", id.as_str(), fields)?;
        write(&mut self.conn, Durability::Full, |tx| {
            tx.execute(
                "INSERT INTO relay_clients (id, secret_hash, key_id, record) VALUES (?1, ?2, ?3, ?4)",
                params![
                    id.as_str(),
                    secret.as_bytes().as_slice(),
                    key.id().to_hex(),
                    record
                ],
            )?;
            Ok(())
        })?;
        Ok(id)
    }

    /// Every client, in id order.
    pub fn relay_clients(&self) -> Result<Vec<RelayClient>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, record FROM relay_clients ORDER BY id")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let fields = open_json(&self.key, row, 1, "relay_clients", &id)?;
            out.push(RelayClient {
                id: RelayClientId(id),
                fields,
            });
        }
        Ok(out)
    }

    /// One client and the hash of its secret.
    pub fn relay_client(&self, id: &RelayClientId) -> Result<Option<(RelayClient, TokenHash)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT record, secret_hash FROM relay_clients WHERE id = ?1")?;
        let mut rows = stmt.query([id.as_str()])?;
        let Some(row) = rows.next()? else { return Ok(None) };
        let fields = open_json(&self.key, row, 0, "relay_clients", id.as_str())?;
        let hash: Vec<u8> = row.get(1)?;
        let hash = TokenHash::from_slice(&hash).ok_or_else(|| StoreError::Corrupt {
            path: self.db_path.clone(),
            detail: format!("relay client {id} has a malformed secret hash"),
        })?;
        Ok(Some((
            RelayClient {
                id: id.clone(),
                fields,
            },
            hash,
        )))
    }

    /// Deletes a client with its links and their tokens.
    pub fn delete_relay_client(&mut self, id: &RelayClientId) -> Result<bool, StoreError> {
        write(&mut self.conn, Durability::Full, |tx| {
            Ok(tx.execute("DELETE FROM relay_clients WHERE id = ?1", [id.as_str()])? > 0)
        })
    }

    /// Creates a link with its devices and first token pair, in one
    /// transaction.
    pub fn insert_relay_link(
        &mut self,
        client: &RelayClientId,
        fields: &RelayLinkFields,
        devices: &[DeviceId],
        tokens: &IssuedTokens,
    ) -> Result<LinkId, StoreError> {
        let id = LinkId::generate()?;
        let key = &self.key;
        let record = seal_json(key, "relay_links", id.as_str(), fields)?;
        write(&mut self.conn, Durability::Full, |tx| {
            tx.execute(
                "INSERT INTO relay_links (id, client_id, key_id, record) VALUES (?1, ?2, ?3, ?4)",
                params![id.as_str(), client.as_str(), key.id().to_hex(), record],
            )?;
            for d in devices {
                tx.execute(
                    "INSERT OR IGNORE INTO relay_link_devices (link_id, device_id) VALUES (?1, ?2)",
                    params![id.as_str(), d.as_str()],
                )?;
            }
            insert_tokens(tx, &id, tokens)?;
            Ok(())
        })?;
        Ok(id)
    }

    /// Every link, in id order.
    pub fn relay_links(&self) -> Result<Vec<RelayLink>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, client_id, calls, record FROM relay_links ORDER BY id")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(self.link_from(row)?);
        }
        Ok(out)
    }

    pub fn relay_link(&self, id: &LinkId) -> Result<Option<RelayLink>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, client_id, calls, record FROM relay_links WHERE id = ?1")?;
        let mut rows = stmt.query([id.as_str()])?;
        match rows.next()? {
            Some(row) => Ok(Some(self.link_from(row)?)),
            None => Ok(None),
        }
    }

    fn link_from(&self, row: &rusqlite::Row<'_>) -> Result<RelayLink, StoreError> {
        let id: String = row.get(0)?;
        let fields = open_json(&self.key, row, 3, "relay_links", &id)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT device_id FROM relay_link_devices WHERE link_id = ?1 ORDER BY device_id",
        )?;
        let devices = stmt
            .query_map([&id], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter_map(|d| DeviceId::parse(&d))
            .collect();
        Ok(RelayLink {
            client_id: RelayClientId(row.get(1)?),
            calls: row.get::<_, i64>(2)? as u64,
            devices,
            fields,
            id: LinkId(id),
        })
    }

    /// Whether `device` is one of `link`'s devices: one indexed look-up.
    pub fn relay_link_has(&self, link: &LinkId, device: &DeviceId) -> Result<bool, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM relay_link_devices WHERE link_id = ?1 AND device_id = ?2")?;
        Ok(stmt.exists(params![link.as_str(), device.as_str()])?)
    }

    /// Deletes a link and every token it holds, at once.
    pub fn delete_relay_link(&mut self, id: &LinkId) -> Result<bool, StoreError> {
        write(&mut self.conn, Durability::Full, |tx| {
            Ok(tx.execute("DELETE FROM relay_links WHERE id = ?1", [id.as_str()])? > 0)
        })
    }

    /// The link a live access token acts for.
    pub fn relay_access(&self, hash: &TokenHash) -> Result<Option<LinkId>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT link_id FROM relay_tokens WHERE hash = ?1 AND kind = 'access' AND expires_at > ?2",
        )?;
        Ok(stmt
            .query_row(params![hash.as_bytes().as_slice(), UnixTime::now().0], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
            .map(LinkId))
    }

    /// Exchanges the refresh token `old` of `client` for `new`, in one
    /// transaction. A token already exchanged may be presented again within
    /// `grace_ms` of its exchange, as long as its successor is unused: the
    /// successor pair (lost on the way, or the request was retried) is
    /// replaced. Any later presentation revokes the whole link.
    pub fn refresh_relay_tokens(
        &mut self,
        client: &RelayClientId,
        old: &TokenHash,
        grace_ms: i64,
        new: &IssuedTokens,
    ) -> Result<Refreshed, StoreError> {
        let now = UnixTime::now().0;
        write(&mut self.conn, Durability::Full, |tx| {
            let row = tx
                .query_row(
                    "SELECT t.link_id, t.expires_at, t.rotated_at, t.successor FROM relay_tokens t \
                     JOIN relay_links l ON l.id = t.link_id \
                     WHERE t.hash = ?1 AND t.kind = 'refresh' AND l.client_id = ?2",
                    params![old.as_bytes().as_slice(), client.as_str()],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, Option<i64>>(2)?,
                            r.get::<_, Option<Vec<u8>>>(3)?,
                        ))
                    },
                )
                .optional()?;
            let Some((link, expires_at, rotated_at, successor)) = row else {
                return Ok(Refreshed::Unknown);
            };
            let link = LinkId(link);
            if expires_at <= now {
                return Ok(Refreshed::Unknown);
            }
            if let Some(rotated_at) = rotated_at {
                // The successor is unused if it is still current.
                let successor_unused = match &successor {
                    Some(s) => tx
                        .query_row(
                            "SELECT rotated_at IS NULL FROM relay_tokens WHERE hash = ?1",
                            [s.as_slice()],
                            |r| r.get::<_, bool>(0),
                        )
                        .optional()?
                        .unwrap_or(false),
                    None => false,
                };
                if now - rotated_at > grace_ms || !successor_unused {
                    tx.execute("DELETE FROM relay_links WHERE id = ?1", [link.as_str()])?;
                    return Ok(Refreshed::Reused(link));
                }
                let s = successor.expect("an unused successor exists");
                tx.execute(
                    "DELETE FROM relay_tokens WHERE hash = ?1 OR issued_with = ?1",
                    [s.as_slice()],
                )?;
                tx.execute(
                    "UPDATE relay_tokens SET successor = ?2 WHERE hash = ?1",
                    params![old.as_bytes().as_slice(), new.refresh.as_bytes().as_slice()],
                )?;
            } else {
                tx.execute(
                    "UPDATE relay_tokens SET rotated_at = ?2, successor = ?3, expires_at = min(expires_at, ?4) \
                     WHERE hash = ?1",
                    params![
                        old.as_bytes().as_slice(),
                        now,
                        new.refresh.as_bytes().as_slice(),
                        now + ROTATED_KEPT_MS
                    ],
                )?;
            }
            insert_tokens(tx, &link, new)?;
            Ok(Refreshed::Issued(link))
        })
    }

    /// Counts a relay call against its link and in the link's tally for
    /// this minute, in one transaction. `what` is the action and its result,
    /// opaque ids only. Finished minutes go to the audit log as one entry
    /// per link ([`Store::flush_relay_tallies`]).
    pub fn record_relay_call(&mut self, link: &LinkId, what: &str) -> Result<(), StoreError> {
        let key = &self.key;
        let minute = UnixTime::now().0.div_euclid(60_000);
        write(&mut self.conn, Durability::Normal, |tx| {
            tx.execute(
                "UPDATE relay_links SET calls = calls + 1 WHERE id = ?1",
                [link.as_str()],
            )?;
            let id = format!("{link}/{minute}");
            let mut tally = tally_in(tx, key, &id)?;
            *tally.entry(what.to_owned()).or_insert(0) += 1;
            let bytes = serde_json::to_vec(&tally).expect("a tally serialises");
            let sealed = seal_bytes(key, "relay_tallies", "record", &id, &bytes)?;
            tx.prepare_cached(
                "INSERT INTO relay_tallies (id, minute, key_id, record) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id, record = excluded.record",
            )?
            .execute(params![id, minute, key.id().to_hex(), sealed])?;
            Ok(())
        })
    }

    /// Writes every tally of a minute before `before` (Unix ms) to the
    /// audit log, one `relay_calls` entry per link and minute, and deletes
    /// it, in one transaction. Returns the entries written.
    pub fn flush_relay_tallies(&mut self, before: UnixTime) -> Result<usize, StoreError> {
        let key = &self.key;
        let minute = before.0.div_euclid(60_000);
        write(&mut self.conn, Durability::Normal, |tx| {
            let ids: Vec<String> = tx
                .prepare("SELECT id FROM relay_tallies WHERE minute < ?1 ORDER BY minute, id")?
                .query_map([minute], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for id in &ids {
                let tally = tally_in(tx, key, id)?;
                let (link, m) = id.split_once('/').unwrap_or((id.as_str(), "0"));
                let start = m.parse::<i64>().unwrap_or(0) * 60;
                let total: u64 = tally.values().sum();
                let each: Vec<String> = tally.iter().map(|(what, n)| format!("{n}× {what}")).collect();
                append_audit_in(
                    tx,
                    key,
                    &AuditEvent::ok(
                        AuditKind::RelayCalls,
                        Actor::Link(link.to_owned()),
                        format!(
                            "link {link}: {total} call{} in the minute from {start}: {}",
                            if total == 1 { "" } else { "s" },
                            each.join("; ")
                        ),
                    ),
                )?;
                tx.execute("DELETE FROM relay_tallies WHERE id = ?1", [id])?;
            }
            Ok(ids.len())
        })
    }

    /// Deletes expired relay tokens.
    pub fn delete_expired_relay_tokens(&mut self) -> Result<usize, StoreError> {
        let now = UnixTime::now().0;
        write(&mut self.conn, Durability::Normal, |tx| {
            Ok(tx.execute("DELETE FROM relay_tokens WHERE expires_at <= ?1", [now])?)
        })
    }

    /// Deletes every link and relay token: "log everyone out".
    pub fn delete_relay_links(&mut self) -> Result<usize, StoreError> {
        write(&mut self.conn, Durability::Full, |tx| {
            Ok(tx.execute("DELETE FROM relay_links", [])?)
        })
    }
}

fn insert_tokens(tx: &Transaction<'_>, link: &LinkId, t: &IssuedTokens) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO relay_tokens (hash, link_id, kind, expires_at, issued_with) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    stmt.execute(params![
        t.refresh.as_bytes().as_slice(),
        link.as_str(),
        REFRESH,
        t.refresh_expires.0,
        None::<Vec<u8>>
    ])?;
    stmt.execute(params![
        t.access.as_bytes().as_slice(),
        link.as_str(),
        ACCESS,
        t.access_expires.0,
        Some(t.refresh.as_bytes().as_slice())
    ])?;
    Ok(())
}

fn seal_json<T: serde::Serialize>(
    key: &DataKey,
    table: &'static str,
    pk: &str,
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    let bytes = zeroize::Zeroizing::new(serde_json::to_vec(value).expect("a record serialises"));
    seal_bytes(key, table, "record", pk, &bytes)
}

fn open_json<T: serde::de::DeserializeOwned>(
    key: &DataKey,
    row: &rusqlite::Row<'_>,
    index: usize,
    table: &'static str,
    pk: &str,
) -> Result<T, StoreError> {
    let mut scratch = zeroize::Zeroizing::new(Vec::new());
    let bytes = open_bytes(key, row, index, (table, "record", pk), &mut scratch)?;
    serde_json::from_slice(bytes).map_err(|_| StoreError::SealedValue {
        table,
        column: "record",
        id: pk.to_owned(),
        source: super::CryptoError::Malformed("record does not decode"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DeviceFields, DeviceKind, DeviceStatus, MasterKey};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (master, _) = MasterKey::generate().unwrap();
        let store = Store::create(&dir.path().join("hearth.db"), &master).unwrap();
        (dir, store)
    }

    fn tokens(n: u8) -> IssuedTokens {
        let far = UnixTime(UnixTime::now().0 + 3_600_000);
        IssuedTokens {
            access: TokenHash::of(&format!("access-{n}")),
            access_expires: far,
            refresh: TokenHash::of(&format!("refresh-{n}")),
            refresh_expires: far,
        }
    }

    fn light(store: &mut Store, voice: bool) -> DeviceId {
        let mut f = DeviceFields::new(DeviceKind::Bulb, "generic");
        f.status = DeviceStatus::Adopted;
        f.expose_voice = voice;
        store.insert_device(&f).unwrap().id
    }

    fn client(store: &mut Store) -> RelayClientId {
        let fields = RelayClientFields {
            name: "Alexa".into(),
            assistant: "alexa".into(),
            redirect_uris: vec!["https://example.test/cb".into()],
            created_at: 0,
        };
        let secret = crate::store::secret::random_token(256).unwrap();
        store
            .insert_relay_client(&fields, &TokenHash::of(secret.expose()))
            .unwrap()
    }

    fn link(store: &mut Store, client: &RelayClientId, devices: &[DeviceId], n: u8) -> LinkId {
        let fields = RelayLinkFields {
            actions: vec!["power".into()],
            created_at: 0,
        };
        store
            .insert_relay_link(client, &fields, devices, &tokens(n))
            .unwrap()
    }

    #[test]
    fn links_keep_devices_and_tokens_and_lose_them_with_the_device() {
        let (_dir, mut s) = store();
        let (a, b) = (light(&mut s, true), light(&mut s, true));
        let c = client(&mut s);
        let l = link(&mut s, &c, &[a.clone(), b.clone()], 1);
        let got = s.relay_link(&l).unwrap().unwrap();
        let mut want = vec![a.clone(), b.clone()];
        want.sort();
        assert_eq!(got.devices, want);
        assert_eq!(s.relay_access(&tokens(1).access).unwrap(), Some(l.clone()));
        assert_eq!(
            s.relay_access(&tokens(1).refresh).unwrap(),
            None,
            "a refresh token is no access token"
        );

        // Withdrawn from voice: out of the link in the same write.
        let mut f = s.device(&a).unwrap().unwrap().fields;
        f.expose_voice = false;
        s.update_device(&a, &f).unwrap();
        assert!(!s.relay_link_has(&l, &a).unwrap());
        assert!(s.relay_link_has(&l, &b).unwrap());
        // Forgotten: out too.
        s.forget_device(&b).unwrap();
        assert!(s.relay_link(&l).unwrap().unwrap().devices.is_empty());

        // Calls are counted at once, and audited once per link and minute.
        let audited = |s: &Store| {
            s.audit(100)
                .unwrap()
                .iter()
                .filter(|e| e.event == "relay_calls")
                .count()
        };
        let before = UnixTime::now();
        s.record_relay_call(&l, "TurnOn: ok").unwrap();
        s.record_relay_call(&l, "TurnOn: ok").unwrap();
        s.record_relay_call(&l, "TurnOff: deviceOffline").unwrap();
        assert_eq!(s.relay_link(&l).unwrap().unwrap().calls, 3);
        assert_eq!(
            s.flush_relay_tallies(before).unwrap(),
            0,
            "their minute is not over"
        );
        assert_eq!(audited(&s), 0);
        let sealed: Vec<u8> = s
            .conn
            .query_row("SELECT record FROM relay_tallies", [], |r| r.get(0))
            .unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"TurnOn"), "the tally is sealed");
        let later = UnixTime(UnixTime::now().0 + 61_000);
        assert_eq!(s.flush_relay_tallies(later).unwrap(), 1);
        assert_eq!(s.flush_relay_tallies(later).unwrap(), 0, "once");
        let e = s.audit(1).unwrap().remove(0);
        assert_eq!((e.event.as_str(), e.outcome.as_str()), ("relay_calls", "ok"));
        assert_eq!(e.actor, format!("link {l}"));
        assert!(e.detail.contains("3 calls in the minute"), "{}", e.detail);
        assert!(e.detail.contains("2× TurnOn: ok"), "{}", e.detail);
        assert!(e.detail.contains("1× TurnOff: deviceOffline"), "{}", e.detail);
        assert!(s.verify_audit().unwrap().verified());

        // Deleting the client takes its links and tokens.
        assert!(s.delete_relay_client(&c).unwrap());
        assert!(s.relay_links().unwrap().is_empty());
        assert_eq!(s.relay_access(&tokens(1).access).unwrap(), None);
    }

    #[test]
    fn refresh_rotates_allows_one_retry_in_grace_and_revokes_on_reuse() {
        let (_dir, mut s) = store();
        let c = client(&mut s);
        let l = link(&mut s, &c, &[], 1);
        let other = client(&mut s);

        // Another client cannot use this link's refresh token.
        assert_eq!(
            s.refresh_relay_tokens(&other, &tokens(1).refresh, 60_000, &tokens(9))
                .unwrap(),
            Refreshed::Unknown
        );
        // Rotation: 1 -> 2.
        assert_eq!(
            s.refresh_relay_tokens(&c, &tokens(1).refresh, 60_000, &tokens(2))
                .unwrap(),
            Refreshed::Issued(l.clone())
        );
        // The exchanged token is kept 30 days at most, for reuse detection.
        let kept: i64 = s
            .conn
            .query_row(
                "SELECT expires_at FROM relay_tokens WHERE hash = ?1",
                [tokens(1).refresh.as_bytes().as_slice()],
                |r| r.get(0),
            )
            .unwrap();
        assert!(kept <= UnixTime::now().0 + ROTATED_KEPT_MS);
        // A retry with 1 inside the grace window replaces pair 2 with pair 3.
        assert_eq!(
            s.refresh_relay_tokens(&c, &tokens(1).refresh, 60_000, &tokens(3))
                .unwrap(),
            Refreshed::Issued(l.clone())
        );
        assert_eq!(
            s.relay_access(&tokens(2).access).unwrap(),
            None,
            "the lost pair is gone"
        );
        assert_eq!(s.relay_access(&tokens(3).access).unwrap(), Some(l.clone()));
        // 3 is used: 3 -> 4. Now 1 again is reuse, whatever the clock says.
        assert_eq!(
            s.refresh_relay_tokens(&c, &tokens(3).refresh, 60_000, &tokens(4))
                .unwrap(),
            Refreshed::Issued(l.clone())
        );
        assert_eq!(
            s.refresh_relay_tokens(&c, &tokens(1).refresh, 60_000, &tokens(5))
                .unwrap(),
            Refreshed::Reused(l.clone())
        );
        assert_eq!(s.relay_link(&l).unwrap(), None);
        assert_eq!(s.relay_access(&tokens(4).access).unwrap(), None);
        assert_eq!(s.relay_access(&tokens(5).access).unwrap(), None);

        // Outside the grace window (0 ms), a second use is reuse at once.
        let l2 = link(&mut s, &c, &[], 6);
        assert_eq!(
            s.refresh_relay_tokens(&c, &tokens(6).refresh, 0, &tokens(7))
                .unwrap(),
            Refreshed::Issued(l2.clone())
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(
            s.refresh_relay_tokens(&c, &tokens(6).refresh, 0, &tokens(8))
                .unwrap(),
            Refreshed::Reused(l2)
        );
    }

    #[test]
    fn expired_tokens_are_refused_and_swept() {
        let (_dir, mut s) = store();
        let c = client(&mut s);
        let past = UnixTime(UnixTime::now().0 - 1);
        let t = IssuedTokens {
            access_expires: past,
            refresh_expires: past,
            ..tokens(1)
        };
        let fields = RelayLinkFields {
            actions: vec!["power".into()],
            created_at: 0,
        };
        s.insert_relay_link(&c, &fields, &[], &t).unwrap();
        assert_eq!(
            s.relay_access(&t.access).unwrap(),
            None,
            "an expired access token"
        );
        assert_eq!(
            s.refresh_relay_tokens(&c, &t.refresh, 60_000, &tokens(2))
                .unwrap(),
            Refreshed::Unknown,
            "an expired refresh token"
        );
        assert_eq!(s.delete_expired_relay_tokens().unwrap(), 2);
    }

    #[test]
    fn records_are_sealed_and_tokens_are_hashes_on_disk() {
        let (dir, mut s) = store();
        let d = light(&mut s, true);
        let fields = RelayClientFields {
            name: "Kitchen speaker label".into(),
            assistant: "google".into(),
            redirect_uris: vec!["https://redirect.example.test/r/project-xyzzy".into()],
            created_at: 0,
        };
        let c = s.insert_relay_client(&fields, &TokenHash::of("s")).unwrap();
        link(&mut s, &c, &[d], 1);
        s.verify_sealed().unwrap();
        drop(s);
        let mut bytes = std::fs::read(dir.path().join("hearth.db")).unwrap();
        if let Ok(wal) = std::fs::read(dir.path().join("hearth.db-wal")) {
            bytes.extend(wal);
        }
        for needle in ["Kitchen speaker label", "project-xyzzy", "refresh-1", "access-1"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} is on disk in clear"
            );
        }
    }
}
