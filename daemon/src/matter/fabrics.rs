//! The controllers that have joined hearth's Matter bridge (its fabrics),
//! as the owner sees them: the label each gave itself, its vendor, and
//! when hearth first saw it. rs-matter keeps the fabrics themselves (keys,
//! certificates, ACLs) in the sealed key-value store; this keeps only when
//! each was added, sealed too. A label is the controller's choice and may
//! name the home, so it is never logged and never in `Debug`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, UnixTime};

/// The sealed record of when each fabric was first seen.
const RECORD: &str = "matter_fabrics";

/// A fabric as the Matter thread reports it.
#[derive(Clone, PartialEq, Eq)]
pub struct Joined {
    /// The fabric index rs-matter gave it (1 to 254).
    pub index: u8,
    pub label: String,
    pub vendor_id: u16,
    /// The compressed fabric id and hearth's node id in it: tells a
    /// fabric from a later one that got the same index.
    pub key: String,
}

impl std::fmt::Debug for Joined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joined")
            .field("index", &self.index)
            .field("vendor_id", &self.vendor_id)
            .finish_non_exhaustive()
    }
}

/// A controller, for the dashboard, the CLI and the privacy report.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fabric {
    pub index: u8,
    /// The label the controller set ("" when it set none).
    pub label: String,
    pub vendor_id: u16,
    /// The vendor's name where hearth knows it.
    pub vendor: Option<String>,
    /// When hearth first saw it.
    pub added: Option<UnixTime>,
}

impl std::fmt::Debug for Fabric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fabric")
            .field("index", &self.index)
            .field("vendor_id", &self.vendor_id)
            .field("added", &self.added)
            .finish_non_exhaustive()
    }
}

/// The controllers as the CLI and the dashboard's API show them:
/// `{"controllers": [{index, label, vendor_id, vendor, added}]}`, `added` in
/// Unix seconds.
pub fn listing(list: &[Fabric]) -> serde_json::Value {
    serde_json::json!({
        "controllers": list.iter().map(|f| serde_json::json!({
            "index": f.index,
            "label": f.label,
            "vendor_id": f.vendor_id,
            "vendor": f.vendor,
            "added": f.added.map(|t| t.0 / 1000),
        })).collect::<Vec<_>>(),
    })
}

/// The vendors whose ids the Connectivity Standards Alliance assigned to
/// the big controllers, and the test range rs-matter and matter.js use.
pub fn vendor_name(id: u16) -> Option<&'static str> {
    Some(match id {
        0x1349 => "Apple",
        0x6006 => "Google",
        0x1217 => "Amazon",
        0xFFF1..=0xFFF4 => "a test vendor",
        _ => return None,
    })
}

#[derive(Default, Serialize, Deserialize)]
struct Seen {
    /// Key to when it was first seen.
    added: BTreeMap<String, UnixTime>,
}

fn load(store: &Store) -> Result<Seen, StoreError> {
    let Some(bytes) = store.secret(RECORD)? else {
        return Ok(Seen::default());
    };
    // A record that does not decode loses only the dates.
    Ok(serde_json::from_slice(&bytes).unwrap_or_default())
}

/// Records the fabrics now joined: a new one gets the current time, a gone
/// one is dropped. The indices of the new ones.
pub fn record(store: &mut Store, joined: &[Joined]) -> Result<Vec<u8>, StoreError> {
    let mut seen = load(store)?;
    let now = UnixTime::now();
    let before = seen.added.len();
    seen.added.retain(|key, _| joined.iter().any(|j| &j.key == key));
    let mut new = Vec::new();
    for j in joined {
        if !seen.added.contains_key(&j.key) {
            seen.added.insert(j.key.clone(), now);
            new.push(j.index);
        }
    }
    if !new.is_empty() || seen.added.len() != before {
        store.put_secret(RECORD, &serde_json::to_vec(&seen).expect("the record serialises"))?;
    }
    Ok(new)
}

/// The fabrics joined, with when each was added.
pub fn list(store: &Store, joined: Vec<Joined>) -> Result<Vec<Fabric>, StoreError> {
    let seen = load(store)?;
    Ok(joined
        .into_iter()
        .map(|j| Fabric {
            index: j.index,
            vendor: vendor_name(j.vendor_id).map(str::to_owned),
            vendor_id: j.vendor_id,
            added: seen.added.get(&j.key).copied(),
            label: j.label,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(index: u8, key: &str) -> Joined {
        Joined {
            index,
            label: "Flat 3".into(),
            vendor_id: 0x1349,
            key: key.into(),
        }
    }

    #[test]
    fn fabrics_are_dated_once_dropped_when_gone_and_kept_sealed() {
        let (dir, store) = crate::matter::kv::tests::store();
        let mut store = store.lock().unwrap();
        assert_eq!(record(&mut store, &[joined(1, "aa")]).unwrap(), [1]);
        assert_eq!(record(&mut store, &[joined(1, "aa")]).unwrap(), Vec::<u8>::new());
        assert_eq!(
            record(&mut store, &[joined(1, "aa"), joined(2, "bb")]).unwrap(),
            [2]
        );
        let list = list(&store, vec![joined(1, "aa"), joined(2, "bb")]).unwrap();
        assert!(list.iter().all(|f| f.added.is_some()));
        assert_eq!(list[0].vendor.as_deref(), Some("Apple"));
        // Index 1 removed, and a new fabric later given index 1 again: a
        // new one, dated anew.
        assert_eq!(record(&mut store, &[joined(2, "bb")]).unwrap(), Vec::<u8>::new());
        assert_eq!(
            record(&mut store, &[joined(1, "cc"), joined(2, "bb")]).unwrap(),
            [1]
        );
        let shown = format!("{:?}", list[0]);
        assert!(!shown.contains("Flat"), "{shown}");
        drop(store);
        let mut bytes = std::fs::read(dir.path().join("hearth.db")).unwrap();
        if let Ok(wal) = std::fs::read(dir.path().join("hearth.db-wal")) {
            bytes.extend(wal);
        }
        assert!(!bytes.windows(4).any(|w| w == b"\"cc\""));
    }

    #[test]
    fn vendors_hearth_names() {
        assert_eq!(vendor_name(0x6006), Some("Google"));
        assert_eq!(vendor_name(0xFFF1), Some("a test vendor"));
        assert_eq!(vendor_name(0x1234), None);
    }
}
