//! The credentials table: who holds which credential, of which kind, until
//! when. The secret itself is stored only as a hash.

use rusqlite::{Transaction, params};

use super::crypto::DataKey;
use super::{CredentialId, Durability, Store, StoreError, UnixTime, open_field, seal_field, write};
use crate::store::secret::TokenHash;

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

impl Store {
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

    /// Deletes every credential of `principal`; returns how many there were.
    pub fn revoke_credentials(&mut self, principal: &str) -> Result<usize, StoreError> {
        write(&mut self.conn, Durability::Full, |tx| {
            Ok(tx.execute("DELETE FROM credentials WHERE principal = ?1", [principal])?)
        })
    }
}

pub(super) fn insert_credential(
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
