//! Data key rotation and master key rewrapping.
//!
//! A rotation has three steps, each crash-safe on its own:
//!
//! 1. [`Store::begin_rotation`] wraps a fresh data key under the master key
//!    and stores it as `next`, in one transaction. From then on new values
//!    are sealed with it, and the store opens values under either key.
//! 2. [`Store::rotate_batch`] re-seals up to `limit` rows still under the old
//!    key, and recomputes their blind indexes, in one transaction per batch.
//! 3. When no row is left under the old key, the same call makes `next` the
//!    active key and deletes the old one (`secure_delete` zeroes it), then
//!    truncates the write-ahead log so no copy of it is left there.
//!
//! Killed at any point, the store opens with every value readable: a
//! `next` key in `data_keys` means a rotation is under way, and calling
//! `rotate_batch` again resumes it. There is nothing to roll back.

use rusqlite::{OptionalExtension, params};

use super::AuditKind;
use super::crypto::{DataKeyMaterial, FieldLoc, KeyId};
use super::{AuditEvent, DataKey, Durability, MasterKey, Store, StoreError, schema, value, write};

/// Where a rotation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    /// Rows already under the new key.
    pub done: u64,
    /// Rows with sealed values in all.
    pub total: u64,
    /// Whether the old key is destroyed and the rotation over.
    pub finished: bool,
}

impl Store {
    /// Whether a rotation is under way.
    pub fn rotating(&self) -> bool {
        self.key.previous().is_some()
    }

    /// Starts a rotation, or returns the one under way: a fresh data key,
    /// wrapped under the master key, stored as `next` and sealing every new
    /// value from now on. Returns the new key's id.
    pub fn begin_rotation(&mut self) -> Result<KeyId, StoreError> {
        if self.rotating() {
            return Ok(self.key.id());
        }
        let material = DataKeyMaterial::generate()?;
        let wrapped = self.master.wrap(&material)?;
        write(&mut self.conn, Durability::Full, |tx| {
            tx.execute(
                "INSERT INTO data_keys (id, wrapped, state) VALUES (?1, ?2, 'next')",
                params![material.id.to_hex(), wrapped],
            )?;
            Ok(())
        })?;
        let old = std::mem::replace(&mut self.key, DataKey::from_material(&material));
        self.key.set_previous(old);
        Ok(material.id)
    }

    /// How far the rotation is: rows under the new key, of all.
    pub fn rotation_progress(&self) -> Result<Progress, StoreError> {
        let mut total = 0;
        let mut left = 0;
        let old = self.key.previous().map(|p| p.id().to_hex());
        for (table, _) in schema::SEALED {
            let n: i64 = self
                .conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
            total += n as u64;
            if let Some(old) = &old {
                let n: i64 = self.conn.query_row(
                    &format!("SELECT count(*) FROM {table} WHERE key_id = ?1"),
                    [old],
                    |r| r.get(0),
                )?;
                left += n as u64;
            }
        }
        Ok(Progress {
            done: total - left,
            total,
            finished: old.is_none(),
        })
    }

    /// Re-seals up to `limit` rows still under the old key, in one
    /// transaction. When none is left, finishes the rotation: the new key
    /// becomes the active one, the old one is deleted, `by`'s rotation is
    /// audited, and the write-ahead log is truncated.
    pub fn rotate_batch(&mut self, limit: usize, by: &super::Actor) -> Result<Progress, StoreError> {
        let Some(old_id) = self.key.previous().map(DataKey::id) else {
            return self.rotation_progress();
        };
        let key = &self.key;
        let finished = write(&mut self.conn, Durability::Normal, |tx| {
            let mut room = limit.max(1);
            for (table, columns) in schema::SEALED {
                if room == 0 {
                    break;
                }
                let sql = format!(
                    "SELECT id, {} FROM {table} WHERE key_id = ?1 LIMIT ?2",
                    columns.join(", ")
                );
                let rows: Vec<(String, Vec<Vec<u8>>)> = {
                    let mut stmt = tx.prepare(&sql)?;
                    let mapped = stmt.query_map(params![old_id.to_hex(), room as i64], |r| {
                        let mut sealed = Vec::with_capacity(columns.len());
                        for i in 0..columns.len() {
                            sealed.push(r.get(i + 1)?);
                        }
                        Ok((r.get(0)?, sealed))
                    })?;
                    mapped.collect::<Result<_, _>>()?
                };
                room -= rows.len();
                for (id, sealed) in rows {
                    let mut resealed = Vec::with_capacity(columns.len());
                    for (column, bytes) in columns.iter().zip(&sealed) {
                        let loc = FieldLoc {
                            table,
                            column,
                            pk: &id,
                        };
                        let plain = zeroize::Zeroizing::new(key.open(loc, bytes).map_err(|source| {
                            StoreError::SealedValue {
                                table,
                                column,
                                id: id.clone(),
                                source,
                            }
                        })?);
                        if *table == "devices" {
                            reindex_device(tx, key, &id, &plain)?;
                        } else if *table == "owners" && *column == "record" {
                            reindex_owner(tx, key, &id, &plain)?;
                        }
                        resealed.push(key.seal(loc, &plain)?);
                    }
                    let sets: Vec<String> = columns
                        .iter()
                        .enumerate()
                        .map(|(i, c)| format!("{c} = ?{}", i + 3))
                        .collect();
                    let sql = format!(
                        "UPDATE {table} SET key_id = ?2, {} WHERE id = ?1",
                        sets.join(", ")
                    );
                    let mut args: Vec<rusqlite::types::Value> =
                        vec![id.clone().into(), key.id().to_hex().into()];
                    args.extend(resealed.into_iter().map(rusqlite::types::Value::Blob));
                    tx.execute(&sql, rusqlite::params_from_iter(args))?;
                }
            }
            if room == 0 {
                return Ok(false);
            }
            // Nothing is left under the old key: it goes.
            tx.execute(
                "UPDATE data_keys SET state = 'active' WHERE id = ?1 AND state = 'next'",
                [key.id().to_hex()],
            )?;
            tx.execute("DELETE FROM data_keys WHERE id = ?1", [old_id.to_hex()])?;
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'active_key'",
                [key.id().to_hex().into_bytes()],
            )?;
            super::append_audit_in(
                tx,
                key,
                &AuditEvent::ok(
                    AuditKind::KeysRotated,
                    by.clone(),
                    format!(
                        "data key {old_id} destroyed; every value re-sealed under {}",
                        key.id()
                    ),
                ),
            )?;
            Ok(true)
        })?;
        if finished {
            self.key.retire_previous();
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .optional()?;
        }
        self.rotation_progress()
    }

    /// Crypto-erase, from inside a running hearth: every wrapped data key is
    /// zeroed and deleted, the meta entries go, and the WAL is folded in and
    /// truncated. From here on nothing on the disk opens; the caller stops
    /// hearth and removes the files. Returns the keys destroyed.
    pub fn destroy_keys(&mut self) -> Result<usize, StoreError> {
        let n = write(&mut self.conn, Durability::Full, |tx| {
            tx.execute("UPDATE data_keys SET wrapped = zeroblob(length(wrapped))", [])?;
            let n = tx.execute("DELETE FROM data_keys", [])?;
            tx.execute("DELETE FROM meta", [])?;
            Ok(n)
        })?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .optional()?;
        Ok(n)
    }

    /// Wraps every data key under `new` instead of the current master key,
    /// and stores `new`'s check value, in one transaction. The caller puts
    /// `new` where the next start finds it (see `keys::rewrap` in the CLI).
    pub fn rewrap(
        &mut self,
        new: &MasterKey,
        kdf: Option<&crate::store::crypto::Kdf>,
    ) -> Result<(), StoreError> {
        let master = &self.master;
        write(&mut self.conn, Durability::Full, |tx| {
            let keys: Vec<(String, Vec<u8>)> = tx
                .prepare("SELECT id, wrapped FROM data_keys")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (id, wrapped) in keys {
                let kid = KeyId::from_hex(&id)?;
                let material = master.unwrap_material(kid, &wrapped)?;
                tx.execute(
                    "UPDATE data_keys SET wrapped = ?2 WHERE id = ?1",
                    params![id, new.wrap(&material)?],
                )?;
            }
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'master_check'",
                [new.check_value().to_vec()],
            )?;
            // Passphrase mode: how to derive the master key, beside it.
            match kdf {
                Some(k) => tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('master_kdf', ?1) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [serde_json::to_vec(k).expect("kdf serialises")],
                )?,
                None => tx.execute("DELETE FROM meta WHERE key = 'master_kdf'", [])?,
            };
            Ok(())
        })?;
        self.master = new.clone();
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .optional()?;
        Ok(())
    }
}

/// Recomputes a device's blind indexes under the new key from its record.
fn reindex_device(
    tx: &rusqlite::Transaction<'_>,
    key: &DataKey,
    id: &str,
    padded: &[u8],
) -> Result<(), StoreError> {
    let status: String = tx.query_row("SELECT status FROM devices WHERE id = ?1", [id], |r| r.get(0))?;
    let status = super::DeviceStatus::parse(&status).ok_or_else(|| super::undecodable(id))?;
    let record = value::unpad(padded).ok_or_else(|| super::undecodable(id))?;
    let (fields, _) = value::decode_device_record(record, status).ok_or_else(|| super::undecodable(id))?;
    let mac = fields.mac.as_ref().map(|m| {
        key.blind_index("devices.mac", m.to_ascii_lowercase().as_bytes())
            .to_vec()
    });
    let ident = fields
        .identity
        .as_ref()
        .map(|i| super::identity_index(key, i).to_vec());
    tx.execute(
        "UPDATE devices SET mac_index = ?2, ident_index = ?3 WHERE id = ?1",
        params![id, mac, ident],
    )?;
    Ok(())
}

/// Recomputes an owner's e-mail index under the new key from its record.
fn reindex_owner(
    tx: &rusqlite::Transaction<'_>,
    key: &DataKey,
    id: &str,
    padded: &[u8],
) -> Result<(), StoreError> {
    let bad = || StoreError::SealedValue {
        table: "owners",
        column: "record",
        id: id.to_owned(),
        source: super::CryptoError::Malformed("record does not decode"),
    };
    let record = value::unpad(padded).ok_or_else(bad)?;
    let email: String = value::RecordReader::new(record)
        .and_then(|mut r| r.field())
        .ok_or_else(bad)?;
    tx.execute(
        "UPDATE owners SET email_index = ?2 WHERE id = ?1",
        params![id, super::email_index(key, &email).to_vec()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::store::secret::{Secret, TokenHash};
    use crate::store::{Actor, DeviceFields, DeviceKind};

    fn home(devices: usize) -> (tempfile::TempDir, MasterKey, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (master, _) = MasterKey::generate().unwrap();
        let mut s = Store::create(&dir.path().join("hearth.db"), &master).unwrap();
        for i in 0..devices {
            let mut f = DeviceFields::new(DeviceKind::Bulb, "tasmota");
            f.nickname = Some(format!("lamp {i}"));
            f.mac = Some(format!("AA:BB:CC:00:00:{i:02x}"));
            f.identity = Some(format!("mac:aabbcc0000{i:02x}"));
            s.insert_device(&f).unwrap();
        }
        s.create_owner(
            "owner@example.org",
            &Secret::new("$argon2id$v=19$m=1,t=1,p=1$x$y".to_owned()),
        )
        .unwrap();
        s.put_credential("owner:x", "session", &TokenHash::of("t"), None)
            .unwrap();
        s.put_secret("ca_key", b"-----BEGIN PRIVATE KEY-----").unwrap();
        for i in 0..20 {
            s.append_audit(&AuditEvent::ok(AuditKind::Login, Actor::Visitor, format!("{i}")))
                .unwrap();
        }
        (dir, master, s)
    }

    fn readable(s: &Store, lamps: usize) {
        s.verify_sealed().unwrap();
        assert!(s.devices().unwrap().len() >= lamps);
        for i in [0, lamps - 1] {
            let d = s
                .device_by_mac(&format!("aa:bb:cc:00:00:{i:02x}"))
                .unwrap()
                .unwrap();
            assert_eq!(d.fields.nickname.as_deref(), Some(format!("lamp {i}").as_str()));
            assert!(
                s.device_by_identity(&format!("mac:aabbcc0000{i:02x}"))
                    .unwrap()
                    .is_some()
            );
        }
        assert!(s.owner_by_email("Owner@example.org").unwrap().is_some());
        assert!(s.secret("ca_key").unwrap().is_some());
        assert!(s.verify_audit().unwrap().verified());
    }

    #[test]
    fn a_rotation_reseals_everything_in_batches_and_destroys_the_old_key() {
        let (dir, master, mut s) = home(30);
        let old = s.key_id();
        let old_wrapped: Vec<u8> = s
            .conn
            .query_row("SELECT wrapped FROM data_keys", [], |r| r.get(0))
            .unwrap();
        let new = s.begin_rotation().unwrap();
        assert_ne!(new, old);
        assert_eq!(s.begin_rotation().unwrap(), new, "a second call resumes");
        let first = s.rotation_progress().unwrap();
        assert!(!first.finished && first.done < first.total, "{first:?}");
        // Written mid-rotation: sealed with the new key at once.
        let mut f = DeviceFields::new(DeviceKind::Plug, "shelly");
        f.mac = Some("aa:bb:cc:ff:ff:ff".into());
        s.insert_device(&f).unwrap();
        let mut batches = 0;
        loop {
            let p = s.rotate_batch(7, &Actor::Cli).unwrap();
            batches += 1;
            readable(&s, 30);
            if p.finished {
                assert_eq!(p.done, p.total);
                break;
            }
            assert!(batches < 100);
        }
        assert!(batches > 5, "{batches}");
        assert_eq!(s.key_id(), new);
        let ids: Vec<String> = s
            .conn
            .prepare("SELECT id FROM data_keys")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, [new.to_hex()], "only the new key is left");
        let e = s.audit(1).unwrap().remove(0);
        assert_eq!((e.event.as_str(), e.actor.as_str()), ("keys_rotated", "cli"));
        drop(s);
        // Neither the old wrapped key nor its id is anywhere on the disk.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(old_wrapped.len()).any(|w| w == old_wrapped));
            assert!(!bytes.windows(16).any(|w| w == old.to_hex().as_bytes()));
        }
        let s = Store::open(&dir.path().join("hearth.db"), &master, Path::new("k")).unwrap();
        assert!(!s.rotating());
        readable(&s, 30);
    }

    #[test]
    fn a_rotation_cut_short_resumes_after_reopening() {
        let (dir, master, mut s) = home(10);
        let new = s.begin_rotation().unwrap();
        s.rotate_batch(4, &Actor::Cli).unwrap();
        drop(s);
        let mut s = Store::open(&dir.path().join("hearth.db"), &master, Path::new("k")).unwrap();
        assert!(s.rotating());
        assert_eq!(s.key_id(), new);
        readable(&s, 10);
        while !s.rotate_batch(4, &Actor::Hearth).unwrap().finished {}
        readable(&s, 10);
    }

    #[test]
    fn rewrap_changes_the_master_key_and_only_the_new_one_opens() {
        let (dir, old, mut s) = home(3);
        let (new, _) = MasterKey::generate().unwrap();
        s.rewrap(&new, None).unwrap();
        drop(s);
        let path = dir.path().join("hearth.db");
        assert!(matches!(
            Store::open(&path, &old, Path::new("k")),
            Err(StoreError::WrongKey { .. })
        ));
        readable(&Store::open(&path, &new, Path::new("k")).unwrap(), 3);
    }
}
