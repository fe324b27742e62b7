//! rs-matter's key-value store over hearth's sealed store: each blob (a
//! fabric with its keys and ACLs, the basic information settings, ...) is
//! one sealed record in `secrets`, named by its key only. It must never
//! write a blob anywhere else, and never log one.

use std::sync::{Arc, Mutex};

use rs_matter::error::{Error, ErrorCode};
use rs_matter::persist::KvBlobStore;

use crate::store::Store;

/// The record a key's blob is kept in. The name says only which slot of
/// rs-matter's key layout it is (a fabric index, or a setting's number).
fn record(key: u16) -> String {
    format!("matter_kv_{key:04x}")
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

    /// A fresh store in a temporary directory.
    pub(crate) fn store() -> (tempfile::TempDir, Arc<Mutex<Store>>) {
        let dir = tempfile::tempdir().unwrap();
        let (master, _) = crate::store::MasterKey::generate().unwrap();
        let store = Store::create(&dir.path().join("hearth.db"), &master).unwrap();
        (dir, Arc::new(Mutex::new(store)))
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
