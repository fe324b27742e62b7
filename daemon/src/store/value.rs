//! How typed values become the bytes that get sealed, and back.
//!
//! Fields that are read together are packed into one record, sealed as one
//! envelope: one AEAD operation per row instead of one per field keeps the
//! sealed store within 2x of plaintext (docs/PERFORMANCE.md). Before sealing,
//! every value is length-prefixed and padded to a multiple of [`PAD_TO`]
//! bytes, so ciphertext lengths tell little about a nickname and nothing
//! about whether a field is set.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{DeviceFields, DeviceKind, DeviceStatus, Learnt};
use crate::store::secret::Secret;

/// Sealed values are padded to a multiple of this many bytes, so a
/// ciphertext's length tells only which 32-byte band a name falls in (most
/// names and rooms fit the first), at a cost of at most 31 bytes a value.
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

/// A value that can be stored in a sealed column or record.
pub trait Field {
    fn encode_into(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Option<Self>
    where
        Self: Sized;

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

impl Field for String {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<String> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

impl Field for Secret {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.expose().as_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Secret> {
        String::decode(bytes).map(Secret::new)
    }
}

impl Field for UnixTime {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<UnixTime> {
        Some(UnixTime(i64::from_be_bytes(bytes.try_into().ok()?)))
    }
}

impl Field for DeviceKind {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_str().as_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<DeviceKind> {
        DeviceKind::parse(std::str::from_utf8(bytes).ok()?)
    }
}

/// Addresses as a count, then each as a family byte (4 or 6) and its octets.
impl Field for Vec<IpAddr> {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.len().min(255) as u8);
        for addr in self.iter().take(255) {
            match addr {
                IpAddr::V4(a) => {
                    out.push(4);
                    out.extend_from_slice(&a.octets());
                }
                IpAddr::V6(a) => {
                    out.push(6);
                    out.extend_from_slice(&a.octets());
                }
            }
        }
    }
    fn decode(bytes: &[u8]) -> Option<Vec<IpAddr>> {
        let (&count, mut rest) = bytes.split_first()?;
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let (&family, tail) = rest.split_first()?;
            let len = match family {
                4 => 4,
                6 => 16,
                _ => return None,
            };
            let octets = tail.get(..len)?;
            out.push(match family {
                4 => IpAddr::from(<[u8; 4]>::try_from(octets).ok()?),
                _ => IpAddr::from(<[u8; 16]>::try_from(octets).ok()?),
            });
            rest = &tail[len..];
        }
        rest.is_empty().then_some(out)
    }
}

impl Field for bool {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn decode(bytes: &[u8]) -> Option<bool> {
        match bytes {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }
}

impl<T: Field> Field for Option<T> {
    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode_into(out);
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

/// Format version, the first byte of every record.
const RECORD_V1: u8 = 1;

/// Packs several fields into one value: a version byte, then each field as a
/// 32-bit length and its bytes.
pub struct RecordWriter {
    buf: Vec<u8>,
}

impl RecordWriter {
    pub fn new() -> RecordWriter {
        let mut buf = Vec::with_capacity(256);
        buf.push(RECORD_V1);
        RecordWriter { buf }
    }

    pub fn field(mut self, value: &dyn Field) -> RecordWriter {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        value.encode_into(&mut self.buf);
        let len = (self.buf.len() - at - 4) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

impl Default for RecordWriter {
    fn default() -> Self {
        RecordWriter::new()
    }
}

/// Reads back what a [`RecordWriter`] wrote, in the same order.
pub struct RecordReader<'a> {
    rest: &'a [u8],
}

impl<'a> RecordReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Option<RecordReader<'a>> {
        match bytes.split_first()? {
            (&RECORD_V1, rest) => Some(RecordReader { rest }),
            _ => None,
        }
    }

    pub fn field<T: Field>(&mut self) -> Option<T> {
        let len = u32::from_be_bytes(self.rest.get(..4)?.try_into().ok()?) as usize;
        let bytes = self.rest.get(4..4 + len)?;
        self.rest = &self.rest[4 + len..];
        T::decode(bytes)
    }

    /// A field added after the record format was first written: absent in
    /// older records, so `None` when the record ends before it.
    pub fn trailing_field<T: Field>(&mut self) -> Option<Option<T>> {
        if self.rest.is_empty() {
            Some(None)
        } else {
            self.field::<Option<T>>()
        }
    }

    /// Whether every byte was read: the fields after this one are absent.
    pub fn at_end(&self) -> bool {
        self.rest.is_empty()
    }

    /// Succeeds only if every byte was read.
    pub fn end(self) -> Option<()> {
        self.rest.is_empty().then_some(())
    }
}

/// The sealed record of a device: everything but its id and status.
pub fn encode_device_record(f: &DeviceFields, created_at: UnixTime) -> Vec<u8> {
    RecordWriter::new()
        .field(&f.kind)
        .field(&f.profile)
        .field(&f.nickname)
        .field(&f.room)
        .field(&f.vendor)
        .field(&f.model)
        .field(&f.firmware)
        .field(&f.mac)
        .field(&f.addresses)
        .field(&f.ssid)
        .field(&f.stream_url)
        .field(&f.device_secret)
        .field(&f.last_seen)
        .field(&created_at)
        .field(&f.topic)
        .field(&f.identity)
        .field(&Some(f.flagged))
        .field(&f.voice_name)
        .field(&Some(f.expose_ha))
        .field(&Some(f.expose_voice))
        .field(&Some(f.learnt.color_temp))
        .field(&Some(f.learnt.snapshots))
        .field(&Some(f.heard_from.into_iter().collect::<Vec<IpAddr>>()))
        .field(&f.board)
        .field(&f.advertised_name)
        .finish()
}

/// The inverse of [`encode_device_record`]; `None` if the bytes are not a
/// whole, well-formed record.
pub fn decode_device_record(bytes: &[u8], status: DeviceStatus) -> Option<(DeviceFields, UnixTime)> {
    let mut r = RecordReader::new(bytes)?;
    let fields = DeviceFields {
        status,
        kind: r.field()?,
        profile: r.field()?,
        nickname: r.field()?,
        room: r.field()?,
        vendor: r.field()?,
        model: r.field()?,
        firmware: r.field()?,
        mac: r.field()?,
        addresses: r.field()?,
        ssid: r.field()?,
        stream_url: r.field()?,
        device_secret: r.field()?,
        last_seen: r.field()?,
        topic: None,
        identity: None,
        flagged: false,
        voice_name: None,
        expose_ha: false,
        expose_voice: false,
        learnt: Learnt::default(),
        heard_from: None,
        board: None,
        advertised_name: None,
    };
    let created_at = r.field()?;
    let fields = DeviceFields {
        topic: r.trailing_field()?,
        identity: r.trailing_field()?,
        flagged: r.trailing_field::<bool>()?.unwrap_or(false),
        voice_name: r.trailing_field()?,
        expose_ha: r.trailing_field::<bool>()?.unwrap_or(false),
        expose_voice: r.trailing_field::<bool>()?.unwrap_or(false),
        learnt: Learnt {
            color_temp: r.trailing_field::<bool>()?.unwrap_or(false),
            snapshots: r.trailing_field::<bool>()?.unwrap_or(false),
        },
        heard_from: r
            .trailing_field::<Vec<IpAddr>>()?
            .and_then(|a| a.first().copied()),
        ..fields
    };
    let had_board = !r.at_end();
    let mut fields = DeviceFields {
        board: r.trailing_field()?,
        advertised_name: r.trailing_field()?,
        ..fields
    };
    // Before the board had a field of its own, an ESPHome node's board was
    // stored as its model (ESPHome always sends one): it is moved where it
    // belongs, and the node has no model until an advert names one.
    if !had_board && fields.profile == "esphome" {
        fields.board = fields.model.take();
    }
    r.end()?;
    Some((fields, created_at))
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
    fn device_records_round_trip_and_reject_damage() {
        let mut f = DeviceFields::new(DeviceKind::Camera, "generic");
        f.nickname = Some("Front door".into());
        f.addresses = vec!["192.168.1.9".parse().unwrap()];
        f.device_secret = Some(Secret::new("s3cret"));
        f.last_seen = Some(UnixTime(5));
        f.topic = Some("tasmota_ab12cd".into());
        let bytes = encode_device_record(&f, UnixTime(42));
        let (back, created) = decode_device_record(&bytes, f.status).unwrap();
        assert_eq!((back, created), (f.clone(), UnixTime(42)));
        assert!(decode_device_record(&bytes[..bytes.len() - 1], f.status).is_none());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_device_record(&longer, f.status).is_none());
        // A record written before the trailing fields existed still opens.
        let mut older = f.clone();
        older.topic = None;
        older.identity = None;
        older.flagged = false;
        let old_bytes = encode_device_record(&older, UnixTime(42));
        // topic (None: 5 bytes), identity (None: 5), flagged (Some(false): 6),
        // voice_name (None: 5), expose_ha, expose_voice and the two learnt
        // flags (Some(false): 6 each), heard_from (Some(empty): 6), board
        // and advertised_name (None: 5 each).
        let before_trailing = &old_bytes[..old_bytes.len() - 61];
        assert_eq!(decode_device_record(before_trailing, f.status).unwrap().0, older);
        let mut flagged = f.clone();
        flagged.flagged = true;
        flagged.identity = Some("mac:aa:bb:cc:dd:ee:ff".into());
        flagged.voice_name = Some("porch light".into());
        flagged.expose_ha = true;
        flagged.expose_voice = true;
        flagged.heard_from = Some("192.168.1.77".parse().unwrap());
        flagged.learnt = Learnt {
            color_temp: true,
            snapshots: true,
        };
        flagged.board = Some("esp32dev".into());
        flagged.advertised_name = Some("Porch light".into());
        let bytes = encode_device_record(&flagged, UnixTime(1));
        assert_eq!(decode_device_record(&bytes, f.status).unwrap().0, flagged);
        let mut version = bytes;
        version[0] = 9;
        assert!(decode_device_record(&version, f.status).is_none());
    }

    /// Records written before the board had its own field stored an ESPHome
    /// node's board as its model; they open with it as the board. Records
    /// with the field, and other vendors' models, are read as written.
    #[test]
    fn an_esphome_board_stored_as_a_model_opens_as_the_board() {
        let mut node = DeviceFields::new(DeviceKind::Bulb, "esphome");
        node.model = Some("esp32dev".into());
        let bytes = encode_device_record(&node, UnixTime(7));
        // board and advertised_name (None: 5 bytes each).
        let old = &bytes[..bytes.len() - 10];
        let (back, created) = decode_device_record(old, node.status).unwrap();
        assert_eq!(created, UnixTime(7));
        assert_eq!(
            (back.model.as_deref(), back.board.as_deref()),
            (None, Some("esp32dev"))
        );
        let mut named = node.clone();
        named.model = Some("Athom Plug V2".into());
        named.board = Some("esp8285".into());
        let bytes = encode_device_record(&named, UnixTime(7));
        assert_eq!(decode_device_record(&bytes, node.status).unwrap().0, named);
        let mut shelly = DeviceFields::new(DeviceKind::Plug, "shelly");
        shelly.model = Some("PlusPlugS".into());
        let bytes = encode_device_record(&shelly, UnixTime(7));
        let old = &bytes[..bytes.len() - 10];
        assert_eq!(decode_device_record(old, node.status).unwrap().0, shelly);
    }

    #[test]
    fn malformed_bytes_are_rejected() {
        assert_eq!(Vec::<IpAddr>::decode(&[1, 5, 1, 2, 3, 4]), None);
        assert_eq!(Vec::<IpAddr>::decode(&[1, 4, 1, 2, 3]), None);
        assert_eq!(Vec::<IpAddr>::decode(&[0, 0]), None);
        assert_eq!(unpad(&[0, 0, 0, 9, 1]), None);
        assert_eq!(Option::<String>::decode(&[2]), None);
        assert_eq!(Option::<String>::decode(&[0, 1]), None);
        assert_eq!(UnixTime::decode(&[1, 2, 3]), None);
        assert_eq!(DeviceKind::decode(b"toaster"), None);
    }
}
