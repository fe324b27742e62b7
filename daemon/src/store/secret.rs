//! Secrets in memory: a redacting wrapper, random bearer tokens, and the
//! one-way hashes under which credentials are stored.
//!
//! Nothing here may format a secret into a string that could reach a log:
//! `Debug`, `Display` and `Serialize` of [`Secret`] all print `<redacted>`.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::digest;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::store::crypto::{CryptoError, fill_random};

/// Shown wherever a secret would otherwise be printed.
pub const REDACTED: &str = "<redacted>";

/// A secret string. Zeroed on drop; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret itself. Call sites are few and greppable on purpose.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// A new random bearer token or device password of `bits` bits (at least
/// 128), hex-encoded so it survives every device's configuration form.
pub fn random_token(bits: usize) -> Result<Secret, CryptoError> {
    assert!(
        bits >= 128 && bits.is_multiple_of(8),
        "tokens carry at least 128 bits"
    );
    let mut bytes = Zeroizing::new(vec![0u8; bits / 8]);
    fill_random(&mut bytes)?;
    Ok(Secret::new(hex::encode(bytes.as_slice())))
}

/// SHA-256 of a random token of 128 bits or more. A slow hash adds nothing
/// for such tokens, and keeps every MQTT reconnect cheap.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> TokenHash {
        let d = digest::digest(&digest::SHA256, token.as_bytes());
        TokenHash(d.as_ref().try_into().expect("SHA-256 is 32 bytes"))
    }

    pub fn from_slice(bytes: &[u8]) -> Option<TokenHash> {
        bytes.try_into().ok().map(TokenHash)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time comparison.
    pub fn matches(&self, token: &str) -> bool {
        self.0.ct_eq(TokenHash::of(token).as_bytes()).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("stored password hash is not a valid argon2id PHC string")]
    BadStoredHash,
}

/// argon2id with OWASP's first recommended parameter set (19 MiB, t=2, p=1),
/// which takes well under a second on a Raspberry Pi 4.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("static argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a human-chosen secret into a PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    fill_random(&mut salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Checks a password against a stored PHC string. Only argon2id is accepted.
pub fn verify_password(password: &str, phc: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(phc).map_err(|_| PasswordError::BadStoredHash)?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(PasswordError::BadStoredHash);
    }
    Ok(argon2().verify_password(password.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2-canary");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            password: Secret,
        }
        let dbg = format!("{:?}", Holder { password: s.clone() });
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert_eq!(s.expose(), "hunter2-canary");
    }

    #[test]
    fn tokens_are_random_and_long_enough() {
        let a = random_token(128).unwrap();
        let b = random_token(128).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 32);
        assert_eq!(random_token(256).unwrap().expose().len(), 64);
    }

    #[test]
    fn token_hash_matches_only_its_token() {
        let t = random_token(128).unwrap();
        let h = TokenHash::of(t.expose());
        assert!(h.matches(t.expose()));
        assert!(!h.matches("something else"));
        assert_eq!(TokenHash::from_slice(h.as_bytes()), Some(h));
        assert_eq!(TokenHash::from_slice(&[0; 31]), None);
    }

    #[test]
    fn password_hash_is_argon2id_and_verifies() {
        let phc = hash_password("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse battery", &phc).unwrap());
        assert!(!verify_password("correct horse batterx", &phc).unwrap());
        assert!(verify_password("x", "not a phc").is_err());
    }
}
