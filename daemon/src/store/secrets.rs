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

    /// Deletes the named secrets in one transaction; how many existed.
    pub fn delete_secrets(&mut self, names: &[String]) -> Result<usize, StoreError> {
        write(&mut self.conn, Durability::Full, |tx| {
            let mut n = 0;
            for name in names {
                n += tx.execute("DELETE FROM secrets WHERE id = ?1", [name])?;
            }
            Ok(n)
        })
    }

    /// The names of the secrets that start with `prefix`, in order. Names
    /// are hearth's own record names (`matter_kv_0001`), never a value.
    pub fn secret_names(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // `substr` rather than LIKE, whose `_` would match any character.
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM secrets WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id")?;
        let names = stmt
            .query_map([prefix], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(names)
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
