//! How typed values become the bytes that get sealed, and back.
//!
//! Before sealing, every value is length-prefixed and padded to a multiple of
//! [`PAD_TO`] bytes, so ciphertext lengths tell little about a nickname and
//! nothing about whether a field is set.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::DeviceKind;
use crate::secret::Secret;

const PAD_TO: usize = 32;

/// Milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct UnixTime(pub i64);

impl UnixTime {
    pub fn now() -> UnixTime {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        UnixTime(ms)
    }
}

pub fn pad(encoded: &[u8]) -> Vec<u8> {
    let len = 4 + encoded.len();
    let padded = len.div_ceil(PAD_TO) * PAD_TO;
    let mut out = Vec::with_capacity(padded);
    out.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    out.extend_from_slice(encoded);
    out.resize(padded, 0);
    out
}

pub fn unpad(padded: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(padded.get(..4)?.try_into().ok()?) as usize;
    padded.get(4..4 + len)
}

/// A value that can be sealed into one column.
pub trait Field {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Option<Self>
    where
        Self: Sized;
}

impl Field for String {
    fn encode(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<String> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

impl Field for Secret {
    fn encode(&self) -> Vec<u8> {
        self.expose().as_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<Secret> {
        String::decode(bytes).map(Secret::new)
    }
}

impl Field for UnixTime {
    fn encode(&self) -> Vec<u8> {
        self.0.to_be_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<UnixTime> {
        Some(UnixTime(i64::from_be_bytes(bytes.try_into().ok()?)))
    }
}

impl Field for DeviceKind {
    fn encode(&self) -> Vec<u8> {
        self.as_str().as_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<DeviceKind> {
        DeviceKind::parse(std::str::from_utf8(bytes).ok()?)
    }
}

impl Field for Vec<IpAddr> {
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("addresses serialise")
    }
    fn decode(bytes: &[u8]) -> Option<Vec<IpAddr>> {
        serde_json::from_slice(bytes).ok()
    }
}

impl<T: Field> Field for Option<T> {
    fn encode(&self) -> Vec<u8> {
        match self {
            None => vec![0],
            Some(v) => {
                let mut out = vec![1];
                out.extend(v.encode());
                out
            }
        }
    }
    fn decode(bytes: &[u8]) -> Option<Option<T>> {
        match bytes.split_first()? {
            (0, []) => Some(None),
            (1, rest) => T::decode(rest).map(Some),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Field + PartialEq + std::fmt::Debug>(v: T) {
        let padded = pad(&v.encode());
        assert_eq!(padded.len() % PAD_TO, 0);
        assert_eq!(T::decode(unpad(&padded).unwrap()).unwrap(), v);
    }

    #[test]
    fn values_round_trip() {
        round_trip("Betty's room".to_string());
        round_trip(String::new());
        round_trip(Some("x".to_string()));
        round_trip(None::<String>);
        round_trip(UnixTime(1_700_000_000_123));
        round_trip(Some(UnixTime(-5)));
        round_trip(DeviceKind::LightStrip);
        round_trip(vec![
            "10.0.0.7".parse::<IpAddr>().unwrap(),
            "fe80::1".parse().unwrap(),
        ]);
        round_trip(Vec::<IpAddr>::new());
    }

    #[test]
    fn absent_and_short_values_look_alike() {
        assert_eq!(
            pad(&None::<String>.encode()).len(),
            pad(&Some("Front door".to_string()).encode()).len()
        );
    }

    #[test]
    fn malformed_bytes_are_rejected() {
        assert_eq!(unpad(&[0, 0, 0, 9, 1]), None);
        assert_eq!(Option::<String>::decode(&[2]), None);
        assert_eq!(Option::<String>::decode(&[0, 1]), None);
        assert_eq!(UnixTime::decode(&[1, 2, 3]), None);
        assert_eq!(DeviceKind::decode(b"toaster"), None);
    }
}
