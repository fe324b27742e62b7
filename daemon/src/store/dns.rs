//! The DNS resolver's rows: per adopted device, its policy and the names it
//! looked up, in one sealed record. Forgetting a device deletes its row
//! (`ON DELETE CASCADE`) in the same transaction.

use rusqlite::params;

use super::{DeviceId, Durability, Store, StoreError, open_bytes, seal_bytes, write};

/// One name a device looked up.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LookedUp {
    /// The name, lower case, without the final dot.
    pub name: String,
    /// Queries for it.
    pub count: u64,
    /// Of those, how many hearth answered as blocked.
    #[serde(default)]
    pub blocked: u64,
    /// Unix seconds.
    pub first: u64,
    /// Unix seconds.
    pub last: u64,
}

/// What hearth keeps of one device's DNS.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DnsRecord {
    /// `observe`, `block_cloud` or `lan_only`.
    pub policy: String,
    /// The names, at most the configured number, most recent last.
    pub names: Vec<LookedUp>,
    /// The known cloud domains it has looked up, to warn once per new one.
    #[serde(default)]
    pub clouds: Vec<String>,
}

/// Names are the home's: counts only.
impl std::fmt::Debug for DnsRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsRecord")
            .field("policy", &self.policy)
            .field("names", &self.names.len())
            .field("clouds", &self.clouds.len())
            .finish()
    }
}

impl std::fmt::Debug for LookedUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookedUp")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Every device's record. A record that opens but does not parse was
    /// written by no hearth; it reads as empty rather than stopping DNS.
    pub fn dns_records(&self) -> Result<Vec<(DeviceId, DnsRecord)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, record FROM dns_devices ORDER BY id")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let Some(device) = DeviceId::parse(&id) else {
                continue;
            };
            let bytes = open_bytes(&self.key, row, 1, ("dns_devices", "record", &id), &mut scratch)?;
            out.push((device, serde_json::from_slice(bytes).unwrap_or_default()));
        }
        Ok(out)
    }

    /// Writes the given records in one transaction. A device forgotten
    /// meanwhile is skipped, not recreated.
    pub fn put_dns_records(&mut self, records: &[(DeviceId, DnsRecord)]) -> Result<usize, StoreError> {
        let key = &self.key;
        let mut sealed = Vec::with_capacity(records.len());
        for (id, r) in records {
            let json = serde_json::to_vec(r).expect("a DNS record serialises");
            sealed.push((id, seal_bytes(key, "dns_devices", "record", id.as_str(), &json)?));
        }
        let key_id = key.id().to_hex();
        write(&mut self.conn, Durability::Normal, |tx| {
            let mut n = 0;
            for (id, bytes) in &sealed {
                n += tx.execute(
                    "INSERT INTO dns_devices (id, key_id, record) \
                     SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM devices WHERE id = ?1) \
                     ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id, record = excluded.record",
                    params![id.as_str(), key_id, bytes],
                )?;
            }
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DeviceFields, DeviceKind, DeviceStatus, MasterKey};

    #[test]
    fn records_round_trip_sealed_and_go_with_their_device() {
        let dir = tempfile::tempdir().unwrap();
        let (master, _) = MasterKey::generate().unwrap();
        let mut store = Store::create(&dir.path().join("hearth.db"), &master).unwrap();
        let mut f = DeviceFields::new(DeviceKind::Plug, "shelly");
        f.status = DeviceStatus::Adopted;
        let id = store.insert_device(&f).unwrap().id;
        let record = DnsRecord {
            policy: "block_cloud".into(),
            names: vec![LookedUp {
                name: "eu.canary-cloud.example".into(),
                count: 3,
                blocked: 1,
                first: 10,
                last: 20,
            }],
            clouds: vec!["canary-cloud.example".into()],
        };
        let ghost = DeviceId::parse(&"ab".repeat(16)).unwrap();
        assert_eq!(
            store
                .put_dns_records(&[(id.clone(), record.clone()), (ghost, record.clone())])
                .unwrap(),
            1,
            "a device that does not exist gets no row"
        );
        assert_eq!(store.dns_records().unwrap(), vec![(id.clone(), record.clone())]);
        assert!(!format!("{record:?}").contains("canary"), "Debug names no name");
        store.forget_device(&id).unwrap();
        assert!(store.dns_records().unwrap().is_empty());
    }
}
