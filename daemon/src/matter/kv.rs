//! rs-matter's key-value store over hearth's sealed store: each blob (a
//! fabric with its keys and ACLs, the basic information settings, ...) is
//! one sealed record in `secrets`, named by its key only. It must never
//! write a blob anywhere else, and never log one.

use std::sync::{Arc, Mutex};

use rs_matter::error::{Error, ErrorCode};
use rs_matter::persist::{CASE_RESUMPTION_KEY, FABRIC_KEYS_START, KvBlobStore};

use crate::store::{Store, StoreError};

/// The record a key's blob is kept in. The name says only which slot of
/// rs-matter's key layout it is (a fabric index, or a setting's number).
fn record(key: u16) -> String {
    format!("{PREFIX}{key:04x}")
}

/// The prefix every record of rs-matter's key-value store has.
pub const PREFIX: &str = "matter_kv_";

/// Whether `name` is the record of a fabric: rs-matter keeps fabric `n`
/// (its keys, certificates and access list) under key
/// `FABRIC_KEYS_START + n`, a range of 256 keys.
fn is_fabric(name: &str) -> bool {
    let start = FABRIC_KEYS_START;
    name.strip_prefix(PREFIX)
        .and_then(|hex| u16::from_str_radix(hex, 16).ok())
        .is_some_and(|key| (start..start + 256).contains(&key))
}

/// How many controllers' fabrics the store holds. For when the bridge is
/// not running; while it runs, the thread knows better.
pub fn fabric_records(store: &Store) -> Result<usize, StoreError> {
    Ok(store
        .secret_names(PREFIX)?
        .iter()
        .filter(|n| is_fabric(n))
        .count())
}

/// Removes every fabric from the store, with rs-matter's CASE resumption
/// cache (what lets those controllers resume a session) and the dates
/// `matter_fabrics` keeps: how many fabrics went. Only while rs-matter is
/// not running (the bridge off, or its thread stopped): a running stack
/// would write its fabrics back from memory, and is asked instead.
pub fn remove_fabrics_offline(store: &mut Store) -> Result<usize, StoreError> {
    let names: Vec<String> = store
        .secret_names(PREFIX)?
        .into_iter()
        .filter(|n| is_fabric(n))
        .collect();
    let removed = store.delete_secrets(&names)?;
    store.delete_secret(&record(CASE_RESUMPTION_KEY))?;
    super::fabrics::record(store, &[])?;
    Ok(removed)
}

/// rs-matter's `KvBlobStore` on the sealed store. Its calls come from the
/// Matter thread, synchronously; each is one short transaction.
#[derive(Clone)]
pub struct SealedKv {
    store: Arc<Mutex<Store>>,
}

impl std::fmt::Debug for SealedKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedKv")
    }
}

impl SealedKv {
    pub fn new(store: Arc<Mutex<Store>>) -> SealedKv {
        SealedKv { store }
    }

    fn failed(what: &'static str, error: &dyn std::fmt::Display) -> Error {
        // The error names the store's failure; no blob is part of it.
        tracing::error!(%error, what, "matter: the sealed store failed");
        ErrorCode::StdIoError.into()
    }
}

impl KvBlobStore for SealedKv {
    fn load<'a>(&mut self, key: u16, buf: &'a mut [u8]) -> Result<Option<&'a [u8]>, Error> {
        let store = self.store.lock().expect("store lock");
        let Some(value) = store.secret(&record(key)).map_err(|e| Self::failed("load", &e))? else {
            return Ok(None);
        };
        let out = buf.get_mut(..value.len()).ok_or(ErrorCode::NoSpace)?;
        out.copy_from_slice(&value);
        Ok(Some(out))
    }

    fn store(&mut self, key: u16, data: &[u8], _buf: &mut [u8]) -> Result<(), Error> {
        let mut store = self.store.lock().expect("store lock");
        store
            .put_secret(&record(key), data)
            .map_err(|e| Self::failed("store", &e))
    }

    fn remove(&mut self, key: u16, _buf: &mut [u8]) -> Result<(), Error> {
        let mut store = self.store.lock().expect("store lock");
        store
            .delete_secret(&record(key))
            .map(drop)
            .map_err(|e| Self::failed("remove", &e))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rs_matter::persist::BASIC_INFO_KEY;

    /// A fresh store in a temporary directory.
    pub(crate) fn store() -> (tempfile::TempDir, Arc<Mutex<Store>>) {
        let dir = tempfile::tempdir().unwrap();
        let (master, _) = crate::store::MasterKey::generate().unwrap();
        let store = Store::create(&dir.path().join("hearth.db"), &master).unwrap();
        (dir, Arc::new(Mutex::new(store)))
    }

    /// With the bridge off, the fabrics go (and the resumption cache and
    /// their dates with them); the settings and the setup code stay.
    #[test]
    fn fabrics_are_counted_and_removed_offline_and_nothing_else() {
        let (_dir, store) = store();
        let mut kv = SealedKv::new(store.clone());
        let mut buf = [0u8; 4096];
        for key in [
            FABRIC_KEYS_START + 1,
            FABRIC_KEYS_START + 2,
            FABRIC_KEYS_START + 255,
        ] {
            kv.store(key, b"a fabric", &mut []).unwrap();
        }
        kv.store(BASIC_INFO_KEY, b"settings", &mut []).unwrap();
        kv.store(CASE_RESUMPTION_KEY, b"resumption", &mut []).unwrap();
        let setup = crate::matter::Setup::load_or_create(&mut store.lock().unwrap()).unwrap();
        let joined = crate::matter::fabrics::Joined {
            index: 1,
            label: String::new(),
            vendor_id: 0xFFF1,
            key: "aa".into(),
        };
        crate::matter::fabrics::record(&mut store.lock().unwrap(), std::slice::from_ref(&joined)).unwrap();
        // A name that only looks like one of the range is not counted.
        store.lock().unwrap().put_secret("matter_kv_00zz", b"x").unwrap();

        assert_eq!(fabric_records(&store.lock().unwrap()).unwrap(), 3);
        assert_eq!(remove_fabrics_offline(&mut store.lock().unwrap()).unwrap(), 3);
        assert_eq!(fabric_records(&store.lock().unwrap()).unwrap(), 0);
        for key in [
            FABRIC_KEYS_START + 1,
            FABRIC_KEYS_START + 2,
            FABRIC_KEYS_START + 255,
            CASE_RESUMPTION_KEY,
        ] {
            assert_eq!(kv.load(key, &mut buf).unwrap(), None, "key {key:#x}");
        }
        assert_eq!(kv.load(BASIC_INFO_KEY, &mut buf).unwrap(), Some(&b"settings"[..]));
        let listed = crate::matter::fabrics::list(&store.lock().unwrap(), vec![joined]).unwrap();
        assert_eq!(listed[0].added, None, "the dates went too");
        assert_eq!(
            crate::matter::Setup::load_or_create(&mut store.lock().unwrap()).unwrap(),
            setup
        );
        // Nothing left to remove.
        assert_eq!(remove_fabrics_offline(&mut store.lock().unwrap()).unwrap(), 0);
    }

    #[test]
    fn blobs_round_trip_and_are_sealed_on_disk() {
        let (dir, store) = store();
        let mut kv = SealedKv::new(store.clone());
        let mut buf = [0u8; 4096];
        let fabric = b"fabric-canary: NOC chain and IPK xyzzy".repeat(20);
        let setting = b"basic-info-canary plugh";
        assert_eq!(kv.load(0, &mut buf).unwrap(), None);
        kv.store(0, &fabric, &mut [0u8; 16]).unwrap();
        kv.store(256, setting, &mut [0u8; 16]).unwrap();
        assert_eq!(kv.load(0, &mut buf).unwrap(), Some(&fabric[..]));
        assert_eq!(kv.load(256, &mut buf).unwrap(), Some(&setting[..]));
        // Too small a buffer is rs-matter's NoSpace, not a panic.
        assert!(kv.load(0, &mut [0u8; 8]).is_err());
        kv.store(256, b"replaced-canary-quux", &mut []).unwrap();
        assert_eq!(
            kv.load(256, &mut buf).unwrap(),
            Some(&b"replaced-canary-quux"[..])
        );
        kv.remove(256, &mut []).unwrap();
        kv.remove(256, &mut []).unwrap();
        assert_eq!(kv.load(256, &mut buf).unwrap(), None);

        store.lock().unwrap().verify_sealed().unwrap();
        drop(kv);
        drop(store);
        let mut bytes = std::fs::read(dir.path().join("hearth.db")).unwrap();
        if let Ok(wal) = std::fs::read(dir.path().join("hearth.db-wal")) {
            bytes.extend(wal);
        }
        for needle in [
            "fabric-canary",
            "xyzzy",
            "basic-info-canary",
            "plugh",
            "replaced-canary-quux",
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} is on disk in clear"
            );
        }
    }
}
