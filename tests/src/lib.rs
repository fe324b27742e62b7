//! Shared pieces of hearth's tests that do not need the built binaries:
//! canary scanning of files, file snapshots, and deterministic noise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let entry = entry.expect("dir entry");
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                // Sockets and other special files hold no bytes to scan.
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// SHA-256 of every file under `dir`, keyed by path.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    files_under(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read file");
            let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
            (p, hex::encode(digest.as_ref()))
        })
        .collect()
}

/// The byte forms a canary string could take on disk: UTF-8, UTF-16LE and
/// UTF-16BE.
pub fn encodings(canary: &str) -> Vec<Vec<u8>> {
    let le = canary.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let be = canary.encode_utf16().flat_map(u16::to_be_bytes).collect();
    vec![canary.as_bytes().to_vec(), le, be]
}

/// Which canaries appear, in any encoding, in any file under `dir`. Returns
/// (canary, file) pairs.
pub fn find_canaries(dir: &Path, canaries: &[String]) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for file in files_under(dir) {
        let bytes = std::fs::read(&file).expect("read file");
        found.extend(
            find_in_bytes(&bytes, canaries)
                .into_iter()
                .map(|c| (c, file.clone())),
        );
    }
    found
}

/// Which canaries appear, in any encoding, in `bytes`.
pub fn find_in_bytes(bytes: &[u8], canaries: &[String]) -> Vec<String> {
    canaries
        .iter()
        .filter(|c| {
            encodings(c)
                .iter()
                .any(|enc| bytes.windows(enc.len()).any(|w| w == enc.as_slice()))
        })
        .cloned()
        .collect()
}

/// A deterministic xorshift generator for test noise: garbage bytes and
/// varying counts. Not for anything secret.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Noise {
        Noise(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `len` bytes of noise.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
