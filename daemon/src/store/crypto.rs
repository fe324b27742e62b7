//! Field sealing: the key hierarchy, the AEAD envelope and the blind index.
//!
//! This module owns every byte of key material. It must never hand out a key,
//! print one, or produce a value that can be opened without the key it names.
//! There is no plaintext mode and no fallback.
//!
//! Key hierarchy:
//!
//! ```text
//! master key (key file or systemd credential, 256 bits)
//!   ├─ HKDF "wrap"  → wraps data keys (stored wrapped in the database)
//!   └─ HKDF "check" → a public check value that tells "wrong key" from "corrupt"
//! data key (random 256 bits, one active at a time)
//!   ├─ HKDF "seal"  → ChaCha20-Poly1305 for every sealed field
//!   └─ HKDF "index" → HMAC-SHA256 blind index, truncated to 16 bytes
//! ```
//!
//! ChaCha20-Poly1305 is the only cipher: a Raspberry Pi 4 has no AES
//! instructions, and ChaCha is constant-time in software.

use std::fmt;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Length of master and data keys, in bytes.
pub const KEY_LEN: usize = 32;
/// Length of a blind index, in bytes (HMAC-SHA256 truncated). 128 bits make
/// an accidental collision among a home's few thousand rows negligible
/// (around 2^-100), at half the size of the full MAC.
pub const BLIND_INDEX_LEN: usize = 16;
/// Envelope format version. Bump it when the layout changes; old versions
/// must still open.
const ENVELOPE_V1: u8 = 1;
const KEY_ID_LEN: usize = 8;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

const HKDF_SALT: &[u8] = b"hearth key hierarchy v1";
const INFO_WRAP: &[u8] = b"hearth/master/wrap";
const INFO_CHECK: &[u8] = b"hearth/master/check";
const INFO_SEAL: &[u8] = b"hearth/data/seal";
const INFO_INDEX: &[u8] = b"hearth/data/index";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the system random number generator failed")]
    Random,
    #[error("sealed value is malformed ({0})")]
    Malformed(&'static str),
    #[error("sealed value names key {found}, but it was expected under key {expected}")]
    WrongKeyId { found: KeyId, expected: KeyId },
    /// The tag did not verify: a wrong key, a value moved to another row or
    /// column, or flipped bytes. AEAD cannot tell these apart.
    #[error("sealed value failed authentication")]
    Unauthentic,
    #[error("key material is malformed: {0}")]
    BadKeyMaterial(&'static str),
}

/// An 8-byte random identifier of a data key. Not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    pub fn generate() -> Result<KeyId, CryptoError> {
        let mut id = [0u8; KEY_ID_LEN];
        fill_random(&mut id)?;
        Ok(KeyId(id))
    }

    pub fn from_hex(s: &str) -> Result<KeyId, CryptoError> {
        let bytes = hex::decode(s).map_err(|_| CryptoError::BadKeyMaterial("key id is not hex"))?;
        let id = bytes
            .try_into()
            .map_err(|_| CryptoError::BadKeyMaterial("key id has the wrong length"))?;
        Ok(KeyId(id))
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Where a sealed value lives. It is bound into the AEAD's associated data,
/// so a value copied to another table, column or row no longer opens.
#[derive(Clone, Copy, Debug)]
pub struct FieldLoc<'a> {
    pub table: &'static str,
    pub column: &'static str,
    pub pk: &'a str,
}

/// The root key. It only wraps data keys; nothing is sealed with it directly.
#[derive(Clone)]
pub struct MasterKey {
    wrap: Zeroizing<[u8; KEY_LEN]>,
    check: [u8; 32],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Makes a fresh random master key and returns it with the bytes to write
    /// to the key file.
    pub fn generate() -> Result<(MasterKey, Zeroizing<String>), CryptoError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(bytes.as_mut())?;
        let file = Zeroizing::new(format!("{}\n", hex::encode(bytes.as_ref())));
        Ok((MasterKey::from_bytes(&bytes), file))
    }

    /// Parses a key file: 64 hex digits (an optional trailing newline is
    /// allowed) or exactly 32 raw bytes, as a systemd credential may hold.
    pub fn from_file_contents(contents: &[u8]) -> Result<MasterKey, CryptoError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if contents.len() == KEY_LEN {
            key.copy_from_slice(contents);
        } else {
            let text = std::str::from_utf8(contents)
                .map_err(|_| CryptoError::BadKeyMaterial("key file is neither 32 raw bytes nor hex"))?;
            let text = text.trim_end_matches(['\n', '\r']);
            if text.len() != KEY_LEN * 2 {
                return Err(CryptoError::BadKeyMaterial(
                    "key file must hold 64 hex digits or 32 raw bytes",
                ));
            }
            hex::decode_to_slice(text, key.as_mut())
                .map_err(|_| CryptoError::BadKeyMaterial("key file holds a non-hex character"))?;
        }
        if key.iter().all(|b| *b == 0) {
            return Err(CryptoError::BadKeyMaterial("key file is all zeros"));
        }
        Ok(MasterKey::from_bytes(&key))
    }

    /// The master key derived from a passphrase (passphrase mode).
    pub fn from_passphrase(passphrase: &[u8], kdf: &Kdf) -> Result<MasterKey, CryptoError> {
        let bytes = kdf.derive(passphrase)?;
        Ok(MasterKey::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8; KEY_LEN]) -> MasterKey {
        let wrap = derive(bytes, INFO_WRAP);
        let check = derive(bytes, INFO_CHECK);
        MasterKey { wrap, check: *check }
    }

    /// A value stored beside the wrapped keys. It lets `open` say "wrong
    /// master key" rather than "corrupt database", and reveals nothing of the
    /// key (it is an HKDF output).
    pub fn check_value(&self) -> [u8; 32] {
        self.check
    }

    pub fn matches_check(&self, stored: &[u8]) -> bool {
        self.check.as_slice().ct_eq(stored).into()
    }

    /// Wraps a data key for storage in the database.
    pub fn wrap(&self, data_key: &DataKeyMaterial) -> Result<Vec<u8>, CryptoError> {
        seal_with(
            &aead_key(&self.wrap),
            data_key.id,
            &wrap_aad(data_key.id),
            data_key.bytes.as_ref(),
        )
    }

    /// Unwraps a data key. Fails with `Unauthentic` if this is not the master
    /// key that wrapped it, or if the wrapped bytes were altered.
    pub fn unwrap(&self, id: KeyId, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        Ok(DataKey::from_material(&self.unwrap_material(id, wrapped)?))
    }

    /// Unwraps a data key's bytes, to wrap them again under another master
    /// key.
    pub fn unwrap_material(&self, id: KeyId, wrapped: &[u8]) -> Result<DataKeyMaterial, CryptoError> {
        let plain = Zeroizing::new(open_with(&aead_key(&self.wrap), id, &wrap_aad(id), wrapped)?);
        let bytes: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(
            plain
                .as_slice()
                .try_into()
                .map_err(|_| CryptoError::Malformed("wrapped data key has the wrong length"))?,
        );
        Ok(DataKeyMaterial { id, bytes })
    }
}

/// How a key is derived from a passphrase: argon2id, its cost and salt.
/// Stored beside what it protects (not secret).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Kdf {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
    /// 16 random bytes, hex.
    pub salt: String,
}

impl Kdf {
    /// 64 MiB and 3 passes: about 0.5 s on a Raspberry Pi 4 (see
    /// docs/PERFORMANCE.md, `bench/run kdf`).
    pub const M_KIB: u32 = 64 * 1024;
    pub const T: u32 = 3;

    /// Fresh parameters with a random salt.
    pub fn generate() -> Result<Kdf, CryptoError> {
        let mut salt = [0u8; 16];
        fill_random(&mut salt)?;
        Ok(Kdf {
            m_kib: Kdf::M_KIB,
            t: Kdf::T,
            p: 1,
            salt: hex::encode(salt),
        })
    }

    /// Derives 32 bytes from `passphrase`. Parameters read from a file are
    /// bounded first, so a crafted file cannot make hearth allocate more
    /// than 1 GiB or spin for minutes.
    pub fn derive(&self, passphrase: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
        if !(8 * 1024..=1024 * 1024).contains(&self.m_kib)
            || !(1..=16).contains(&self.t)
            || !(1..=4).contains(&self.p)
        {
            return Err(CryptoError::BadKeyMaterial(
                "the passphrase parameters are out of bounds (8 MiB to 1 GiB, 1 to 16 passes, 1 to 4 lanes)",
            ));
        }
        let salt =
            hex::decode(&self.salt)
                .ok()
                .filter(|s| s.len() == 16)
                .ok_or(CryptoError::BadKeyMaterial(
                    "the passphrase salt is not 16 bytes of hex",
                ))?;
        let params = argon2::Params::new(self.m_kib, self.t, self.p, Some(KEY_LEN))
            .map_err(|_| CryptoError::BadKeyMaterial("bad argon2 parameters"))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        argon
            .hash_password_into(passphrase, &salt, out.as_mut())
            .map_err(|_| CryptoError::BadKeyMaterial("argon2id failed"))?;
        Ok(out)
    }
}

/// Seals `plaintext` under a 32-byte key with ChaCha20-Poly1305 and a fresh
/// nonce: `nonce (12) ‖ ciphertext ‖ tag (16)`. For backups.
pub fn seal_file(key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = aead_key(key)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[NONCE_LEN..],
        )
        .map_err(|_| CryptoError::Unauthentic)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Opens what [`seal_file`] sealed; `Unauthentic` if the key is wrong or a
/// byte was changed.
pub fn open_file(key: &[u8; KEY_LEN], aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed("too short"));
    }
    let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().expect("NONCE_LEN bytes");
    let mut buf = Zeroizing::new(sealed[NONCE_LEN..].to_vec());
    let n = aead_key(key)
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
        .map_err(|_| CryptoError::Unauthentic)?
        .len();
    buf.truncate(n);
    Ok(buf)
}

/// A value derived from a key that tells a wrong passphrase from a damaged
/// file, and reveals nothing of the key.
pub fn check_of(key: &[u8; KEY_LEN]) -> [u8; 32] {
    *derive(key, INFO_CHECK)
}

/// A freshly generated data key before it is wrapped. Zeroed on drop.
pub struct DataKeyMaterial {
    pub id: KeyId,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl DataKeyMaterial {
    pub fn generate() -> Result<DataKeyMaterial, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(bytes.as_mut())?;
        Ok(DataKeyMaterial {
            id: KeyId::generate()?,
            bytes,
        })
    }
}

/// The key every field is sealed with, and the blind-index key. While a
/// rotation runs it also holds the key being retired, which opens the
/// values not yet re-sealed; new values are always sealed with this one.
pub struct DataKey {
    id: KeyId,
    seal: LessSafeKey,
    index: hmac::Key,
    previous: Option<Box<DataKey>>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey({}, <redacted>)", self.id)
    }
}

impl DataKey {
    pub fn from_material(material: &DataKeyMaterial) -> DataKey {
        let seal = derive(material.bytes.as_ref(), INFO_SEAL);
        let index = derive(material.bytes.as_ref(), INFO_INDEX);
        DataKey {
            id: material.id,
            seal: aead_key(&seal),
            index: hmac::Key::new(hmac::HMAC_SHA256, index.as_ref()),
            previous: None,
        }
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// This key, still able to open values sealed with `previous`.
    pub fn succeeding(mut self, previous: DataKey) -> DataKey {
        self.previous = Some(Box::new(DataKey {
            previous: None,
            ..previous
        }));
        self
    }

    /// Keeps `previous` to open the values not yet re-sealed.
    pub fn set_previous(&mut self, previous: DataKey) {
        self.previous = Some(Box::new(DataKey {
            previous: None,
            ..previous
        }));
    }

    /// The key being retired, while a rotation runs.
    pub fn previous(&self) -> Option<&DataKey> {
        self.previous.as_deref()
    }

    /// Forgets the retired key: the rotation is over.
    pub fn retire_previous(&mut self) {
        self.previous = None;
    }

    /// The key a value sealed under `found` opens with.
    fn for_id(&self, found: KeyId) -> Result<&DataKey, CryptoError> {
        if found == self.id {
            return Ok(self);
        }
        match &self.previous {
            Some(p) if p.id == found => Ok(p),
            _ => Err(CryptoError::WrongKeyId {
                found,
                expected: self.id,
            }),
        }
    }

    /// Seals `plaintext` for the given location with a fresh random nonce.
    pub fn seal(&self, loc: FieldLoc<'_>, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal_with(&self.seal, self.id, field_aad(loc, self.id).as_slice(), plaintext)
    }

    /// Opens a value sealed by `seal` for the same location.
    pub fn open(&self, loc: FieldLoc<'_>, envelope: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = self.for_id(envelope_key_id(envelope)?)?;
        open_with(&key.seal, key.id, field_aad(loc, key.id).as_slice(), envelope)
    }

    /// Like [`DataKey::open`], but decrypts into `scratch` (reused across
    /// calls, so a read of many rows allocates once) and returns the
    /// plaintext inside it.
    pub fn open_into<'s>(
        &self,
        loc: FieldLoc<'_>,
        envelope: &[u8],
        scratch: &'s mut Vec<u8>,
    ) -> Result<&'s [u8], CryptoError> {
        let key = self.for_id(envelope_key_id(envelope)?)?;
        let nonce: [u8; NONCE_LEN] = envelope[1 + KEY_ID_LEN..HEADER_LEN]
            .try_into()
            .expect("slice length is NONCE_LEN");
        scratch.clear();
        scratch.extend_from_slice(&envelope[HEADER_LEN..]);
        let plain = key
            .seal
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(field_aad(loc, key.id).as_slice()),
                scratch,
            )
            .map_err(|_| CryptoError::Unauthentic)?;
        Ok(plain)
    }

    /// A deterministic, keyed digest for equality look-ups by a secret value
    /// (a MAC address, an e-mail). `domain` separates index families so equal
    /// values in different columns do not collide.
    pub fn blind_index(&self, domain: &str, value: &[u8]) -> [u8; BLIND_INDEX_LEN] {
        let mut ctx = hmac::Context::with_key(&self.index);
        ctx.update(&(domain.len() as u32).to_be_bytes());
        ctx.update(domain.as_bytes());
        ctx.update(value);
        let tag = ctx.sign();
        let mut out = [0u8; BLIND_INDEX_LEN];
        out.copy_from_slice(&tag.as_ref()[..BLIND_INDEX_LEN]);
        out
    }
}

/// Reads the key id out of an envelope without opening it.
pub fn envelope_key_id(envelope: &[u8]) -> Result<KeyId, CryptoError> {
    if envelope.len() < HEADER_LEN + TAG_LEN {
        return Err(CryptoError::Malformed("too short"));
    }
    if envelope[0] != ENVELOPE_V1 {
        return Err(CryptoError::Malformed("unknown envelope version"));
    }
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&envelope[1..1 + KEY_ID_LEN]);
    Ok(KeyId(id))
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn fill_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    SystemRandom::new().fill(buf).map_err(|_| CryptoError::Random)
}

fn seal_with(key: &LessSafeKey, id: KeyId, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.push(ENVELOPE_V1);
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[HEADER_LEN..],
        )
        .map_err(|_| CryptoError::Malformed("plaintext too long"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

fn open_with(key: &LessSafeKey, id: KeyId, aad: &[u8], envelope: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if envelope_key_id(envelope)? != id {
        return Err(CryptoError::Unauthentic);
    }
    let nonce: [u8; NONCE_LEN] = envelope[1 + KEY_ID_LEN..HEADER_LEN]
        .try_into()
        .expect("slice length is NONCE_LEN");
    let mut buf = envelope[HEADER_LEN..].to_vec();
    let plain = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
        .map_err(|_| CryptoError::Unauthentic)?;
    let len = plain.len();
    buf.truncate(len);
    Ok(buf)
}

/// The associated data of a sealed field. Built on the stack for the usual
/// sizes: this runs once per value on every read.
struct FieldAad {
    buf: [u8; 160],
    len: usize,
    spill: Vec<u8>,
}

impl FieldAad {
    fn as_slice(&self) -> &[u8] {
        if self.spill.is_empty() {
            &self.buf[..self.len]
        } else {
            &self.spill
        }
    }
}

fn field_aad(loc: FieldLoc<'_>, id: KeyId) -> FieldAad {
    let parts = [
        b"hearth/field/v1".as_slice(),
        loc.table.as_bytes(),
        loc.column.as_bytes(),
        loc.pk.as_bytes(),
        &id.0,
    ];
    let total: usize = parts.iter().map(|p| 4 + p.len()).sum();
    let mut aad = FieldAad {
        buf: [0; 160],
        len: 0,
        spill: Vec::new(),
    };
    if total > aad.buf.len() {
        aad.spill.reserve(total);
    }
    for part in parts {
        // Length-prefixed, so ("ab","c") and ("a","bc") differ.
        let len = (part.len() as u32).to_be_bytes();
        if total > aad.buf.len() {
            aad.spill.extend_from_slice(&len);
            aad.spill.extend_from_slice(part);
        } else {
            aad.buf[aad.len..aad.len + 4].copy_from_slice(&len);
            aad.buf[aad.len + 4..aad.len + 4 + part.len()].copy_from_slice(part);
            aad.len += 4 + part.len();
        }
    }
    aad
}

fn wrap_aad(id: KeyId) -> Vec<u8> {
    let mut aad = b"hearth/data-key/v1/".to_vec();
    aad.extend_from_slice(&id.0);
    aad
}

struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

fn derive(ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(ikm);
    let mut out = Zeroizing::new([0u8; 32]);
    prk.expand(&[info], Len32)
        .and_then(|okm| okm.fill(out.as_mut()))
        .expect("HKDF-SHA256 can always produce 32 bytes");
    out
}

fn aead_key(bytes: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("32-byte ChaCha20 key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_key() -> DataKey {
        DataKey::from_material(&DataKeyMaterial::generate().unwrap())
    }

    const LOC: FieldLoc<'static> = FieldLoc {
        table: "devices",
        column: "nickname",
        pk: "abc",
    };

    #[test]
    fn seal_open_round_trip_and_nonces_differ() {
        let key = data_key();
        let a = key.seal(LOC, b"Betty's room").unwrap();
        let b = key.seal(LOC, b"Betty's room").unwrap();
        assert_ne!(a, b, "a fresh nonce per seal");
        assert_eq!(key.open(LOC, &a).unwrap(), b"Betty's room");
        let mut scratch = Vec::new();
        assert_eq!(key.open_into(LOC, &a, &mut scratch).unwrap(), b"Betty's room");
        assert_eq!(a.len(), HEADER_LEN + 12 + TAG_LEN);
        assert!(!a.windows(12).any(|w| w == b"Betty's room"));
    }

    #[test]
    fn every_part_of_the_location_is_bound() {
        let key = data_key();
        let sealed = key.seal(LOC, b"x").unwrap();
        for other in [
            FieldLoc {
                table: "owners",
                ..LOC
            },
            FieldLoc {
                column: "room",
                ..LOC
            },
            FieldLoc { pk: "abd", ..LOC },
        ] {
            assert_eq!(key.open(other, &sealed), Err(CryptoError::Unauthentic));
        }
    }

    #[test]
    fn flipped_bits_and_truncation_fail() {
        let key = data_key();
        let sealed = key.seal(LOC, b"front door").unwrap();
        for i in HEADER_LEN..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(key.open(LOC, &bad), Err(CryptoError::Unauthentic), "byte {i}");
            assert_eq!(
                key.open_into(LOC, &bad, &mut Vec::new()),
                Err(CryptoError::Unauthentic),
                "byte {i}"
            );
        }
        assert!(matches!(
            key.open(LOC, &sealed[..10]),
            Err(CryptoError::Malformed(_))
        ));
        let mut bad_version = sealed.clone();
        bad_version[0] = 9;
        assert!(matches!(
            key.open(LOC, &bad_version),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn long_primary_keys_spill_to_the_heap_and_still_bind() {
        let key = data_key();
        let long = "k".repeat(300);
        let loc = FieldLoc { pk: &long, ..LOC };
        let sealed = key.seal(loc, b"x").unwrap();
        assert_eq!(key.open(loc, &sealed).unwrap(), b"x");
        let other = "k".repeat(299) + "j";
        assert!(key.open(FieldLoc { pk: &other, ..LOC }, &sealed).is_err());
    }

    #[test]
    fn another_data_key_cannot_open() {
        let (a, b) = (data_key(), data_key());
        let sealed = a.seal(LOC, b"x").unwrap();
        assert!(matches!(
            b.open(LOC, &sealed),
            Err(CryptoError::WrongKeyId { .. })
        ));
    }

    #[test]
    fn wrap_unwrap_and_wrong_master() {
        let (master, file) = MasterKey::generate().unwrap();
        let (other, _) = MasterKey::generate().unwrap();
        let material = DataKeyMaterial::generate().unwrap();
        let wrapped = master.wrap(&material).unwrap();
        let key = master.unwrap(material.id, &wrapped).unwrap();
        let sealed = DataKey::from_material(&material).seal(LOC, b"v").unwrap();
        assert_eq!(key.open(LOC, &sealed).unwrap(), b"v");
        assert_eq!(
            other.unwrap(material.id, &wrapped).unwrap_err(),
            CryptoError::Unauthentic
        );
        assert!(master.matches_check(&master.check_value()));
        assert!(!other.matches_check(&master.check_value()));
        let reparsed = MasterKey::from_file_contents(file.as_bytes()).unwrap();
        assert!(reparsed.matches_check(&master.check_value()));
    }

    #[test]
    fn key_file_formats() {
        let raw = [7u8; 32];
        assert!(MasterKey::from_file_contents(&raw).is_ok());
        assert!(MasterKey::from_file_contents(hex::encode(raw).as_bytes()).is_ok());
        for bad in [&b""[..], b"abc", &[0u8; 32], &[b'g'; 64]] {
            assert!(MasterKey::from_file_contents(bad).is_err());
        }
    }

    #[test]
    fn blind_index_is_keyed_and_domain_separated() {
        let (a, b) = (data_key(), data_key());
        let mac = b"aa:bb:cc:dd:ee:ff";
        assert_eq!(a.blind_index("mac", mac), a.blind_index("mac", mac));
        assert_ne!(a.blind_index("mac", mac), b.blind_index("mac", mac));
        assert_ne!(a.blind_index("mac", mac), a.blind_index("email", mac));
    }

    #[test]
    fn debug_never_shows_key_material() {
        let (master, _) = MasterKey::generate().unwrap();
        assert_eq!(format!("{master:?}"), "MasterKey(<redacted>)");
        let key = data_key();
        assert!(format!("{key:?}").contains("<redacted>"));
    }
}
