//! The secrets table: named values hearth keeps for itself, such as the
//! local CA's key, the relay's and Home Assistant's settings and the standing
//! warnings; each sealed and written with `synchronous=FULL`.

use rusqlite::params;

use super::{Durability, Store, StoreError, open_bytes, seal_bytes, write};

impl Store {
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
}
