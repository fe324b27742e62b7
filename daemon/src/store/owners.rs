//! The owners table: the owner's account, its email behind a blind index
//! and its password hash sealed.

use std::fmt;

use rusqlite::{OptionalExtension, params};

use super::crypto::{self, CryptoError, DataKey};
use super::value::{self};
use super::{
    Durability, OwnerId, Store, StoreError, UnixTime, indexes, open_bytes, open_field, seal_bytes,
    seal_field, write,
};
use crate::store::secret::Secret;

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

impl Store {
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
}

pub(super) fn email_index(key: &DataKey, email: &str) -> [u8; crypto::BLIND_INDEX_LEN] {
    key.blind_index("owners.email", email.trim().to_lowercase().as_bytes())
}
