//! The DNS message format as mDNS uses it (RFC 1035 §4, RFC 6762 §18),
//! parsed with hard bounds.
//!
//! Everything here reads bytes from anyone on the LAN, so every loop is
//! bounded: the packet size, the number of records, the length of a name,
//! the number of compression pointers followed (each must point backwards),
//! and the number of TXT strings. A message that breaks a bound is refused
//! whole. Names and TXT values describe a home, so none of these types has a
//! `Debug` that prints them.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The largest mDNS message (RFC 6762 §17).
pub const MAX_PACKET: usize = 9000;
/// Questions plus records in one message.
const MAX_ENTRIES: usize = 64;
/// A name's wire length (RFC 1035 §2.3.4).
const MAX_NAME: usize = 255;
/// Compression pointers followed while reading one name.
const MAX_POINTERS: usize = 16;
/// Strings in one TXT record.
const MAX_TXT_STRINGS: usize = 64;

pub const A: u16 = 1;
pub const PTR: u16 = 12;
pub const TXT: u16 = 16;
pub const AAAA: u16 = 28;
pub const SRV: u16 = 33;
pub const ANY: u16 = 255;

const CLASS_IN: u16 = 1;
/// The cache-flush bit of a record's class, and the unicast-response bit of
/// a question's.
const TOP_BIT: u16 = 0x8000;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message truncated")]
    Truncated,
    #[error("message larger than {MAX_PACKET} bytes")]
    TooLarge,
    #[error("more than {MAX_ENTRIES} questions and records")]
    TooManyEntries,
    #[error("malformed name")]
    BadName,
    #[error("compression pointer does not point backwards")]
    BadPointer,
    #[error("malformed record data")]
    BadRecord,
}

/// A domain name as its labels. Comparisons ignore ASCII case.
#[derive(Clone, Default)]
pub struct Name(Vec<String>);

impl Name {
    /// A name written with dots, for names hearth itself chooses (service
    /// types, its own host). Its labels cannot contain dots.
    pub fn dotted(s: &str) -> Name {
        Name(
            s.trim_end_matches('.')
                .split('.')
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// `first` as one label (it may contain dots or spaces) in front of `rest`.
    pub fn prefixed(first: &str, rest: &Name) -> Name {
        let mut labels = Vec::with_capacity(rest.0.len() + 1);
        labels.push(first.to_owned());
        labels.extend(rest.0.iter().cloned());
        Name(labels)
    }

    pub fn labels(&self) -> &[String] {
        &self.0
    }

    /// Whether this name is `label.<parent>` for exactly one label, and if so
    /// that label.
    pub fn child_of(&self, parent: &Name) -> Option<&str> {
        (self.0.len() == parent.0.len() + 1 && self.0[1..] == *parent).then(|| self.0[0].as_str())
    }

    /// A key for maps: lower-cased labels, dots inside a label escaped.
    pub fn key(&self) -> String {
        let mut out = String::new();
        for (i, label) in self.0.iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            for c in label.chars() {
                match c {
                    '.' => out.push_str("\\."),
                    '\\' => out.push_str("\\\\"),
                    c => out.push(c.to_ascii_lowercase()),
                }
            }
        }
        out
    }
}

/// Shows how many labels, never what they say.
impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Name({} labels)", self.0.len())
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }
}

impl PartialEq<[String]> for Name {
    fn eq(&self, other: &[String]) -> bool {
        self.0.len() == other.len() && self.0.iter().zip(other).all(|(a, b)| a.eq_ignore_ascii_case(b))
    }
}

impl PartialEq<Name> for [String] {
    fn eq(&self, other: &Name) -> bool {
        other == self
    }
}

pub enum Data {
    Ptr(Name),
    Srv {
        port: u16,
        target: Name,
    },
    /// The character strings, each at most 255 bytes.
    Txt(Vec<Vec<u8>>),
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// A type hearth does not read.
    Other,
}

pub struct Record {
    pub name: Name,
    pub rtype: u16,
    /// The cache-flush bit (RFC 6762 §10.2).
    pub flush: bool,
    pub ttl: u32,
    pub data: Data,
}

impl Record {
    /// A goodbye (RFC 6762 §10.1): TTL 0 withdraws the record.
    pub fn is_goodbye(&self) -> bool {
        self.ttl == 0
    }
}

pub struct Question {
    pub name: Name,
    pub qtype: u16,
}

pub struct Message {
    pub id: u16,
    pub response: bool,
    pub questions: Vec<Question>,
    /// Answers, authority and additional records, in order.
    pub records: Vec<Record>,
}

/// Parses one message, or refuses it whole.
pub fn parse(buf: &[u8]) -> Result<Message, WireError> {
    if buf.len() > MAX_PACKET {
        return Err(WireError::TooLarge);
    }
    let header = buf.get(..12).ok_or(WireError::Truncated)?;
    let word = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let (id, flags) = (word(0), word(2));
    let counts = [word(4), word(6), word(8), word(10)];
    let total: usize = counts.iter().map(|c| usize::from(*c)).sum();
    if total > MAX_ENTRIES {
        return Err(WireError::TooManyEntries);
    }
    let mut pos = 12;
    let mut questions = Vec::with_capacity(usize::from(counts[0]));
    for _ in 0..counts[0] {
        let (name, next) = read_name(buf, pos)?;
        let fixed = buf.get(next..next + 4).ok_or(WireError::Truncated)?;
        questions.push(Question {
            name,
            qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
        });
        pos = next + 4;
    }
    let mut records = Vec::with_capacity(total - questions.len());
    for _ in 0..(total - questions.len()) {
        let (record, next) = read_record(buf, pos)?;
        records.push(record);
        pos = next;
    }
    Ok(Message {
        id,
        response: flags & 0x8000 != 0,
        questions,
        records,
    })
}

fn read_name(buf: &[u8], start: usize) -> Result<(Name, usize), WireError> {
    let (mut labels, mut pos, mut end, mut len, mut hops) = (Vec::new(), start, None, 1, 0);
    loop {
        let b = *buf.get(pos).ok_or(WireError::Truncated)?;
        match b & 0xc0 {
            0x00 if b == 0 => return Ok((Name(labels), end.unwrap_or(pos + 1))),
            0x00 => {
                let n = usize::from(b);
                let label = buf.get(pos + 1..pos + 1 + n).ok_or(WireError::Truncated)?;
                len += n + 1;
                if len > MAX_NAME {
                    return Err(WireError::BadName);
                }
                labels.push(String::from_utf8_lossy(label).into_owned());
                pos += 1 + n;
            }
            0xc0 => {
                let low = *buf.get(pos + 1).ok_or(WireError::Truncated)?;
                let target = usize::from(b & 0x3f) << 8 | usize::from(low);
                end.get_or_insert(pos + 2);
                hops += 1;
                if target >= pos || hops > MAX_POINTERS {
                    return Err(WireError::BadPointer);
                }
                pos = target;
            }
            _ => return Err(WireError::BadName),
        }
    }
}

fn read_record(buf: &[u8], start: usize) -> Result<(Record, usize), WireError> {
    let (name, pos) = read_name(buf, start)?;
    let fixed = buf.get(pos..pos + 10).ok_or(WireError::Truncated)?;
    let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let class = u16::from_be_bytes([fixed[2], fixed[3]]);
    let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    let at = pos + 10;
    let rdata = buf.get(at..at + rdlen).ok_or(WireError::Truncated)?;
    // Names inside record data may point back anywhere earlier in the
    // message, but must start inside the record.
    let data = match rtype {
        PTR => Data::Ptr(read_name(buf, at)?.0),
        SRV if rdlen >= 7 => Data::Srv {
            port: u16::from_be_bytes([rdata[4], rdata[5]]),
            target: read_name(buf, at + 6)?.0,
        },
        SRV => return Err(WireError::BadRecord),
        TXT => {
            let (mut strings, mut i) = (Vec::new(), 0);
            while i < rdata.len() {
                let n = usize::from(rdata[i]);
                let s = rdata.get(i + 1..i + 1 + n).ok_or(WireError::BadRecord)?;
                if strings.len() == MAX_TXT_STRINGS {
                    return Err(WireError::BadRecord);
                }
                if n > 0 {
                    strings.push(s.to_vec());
                }
                i += 1 + n;
            }
            Data::Txt(strings)
        }
        A => Data::A(
            <[u8; 4]>::try_from(rdata)
                .map_err(|_| WireError::BadRecord)?
                .into(),
        ),
        AAAA => Data::Aaaa(
            <[u8; 16]>::try_from(rdata)
                .map_err(|_| WireError::BadRecord)?
                .into(),
        ),
        _ => Data::Other,
    };
    // Only class IN describes hosts and services; a record of another class
    // must not replace (cache-flush) or withdraw (goodbye) an IN record of
    // the same name and type, so hearth does not read it at all.
    let data = if class & !TOP_BIT == CLASS_IN {
        data
    } else {
        Data::Other
    };
    let record = Record {
        name,
        rtype,
        flush: class & TOP_BIT != 0,
        ttl,
        data,
    };
    Ok((record, at + rdlen))
}

/// A query message (QM: answers come back by multicast).
pub fn query(questions: &[(&Name, u16)]) -> Vec<u8> {
    let mut out = header(0, 0, questions.len(), 0);
    for (name, qtype) in questions {
        write_name(&mut out, name);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
    }
    out
}

/// A response message. `id` and `questions` are echoed for legacy unicast
/// queriers (RFC 6762 §6.7); multicast responses use id 0 and none.
pub fn response(id: u16, questions: &[Question], answers: &[Record], additionals: &[Record]) -> Vec<u8> {
    let mut out = header(id, 0x8400, questions.len(), answers.len());
    out[10..12].copy_from_slice(&(additionals.len() as u16).to_be_bytes());
    for q in questions {
        write_name(&mut out, &q.name);
        out.extend_from_slice(&q.qtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
    }
    for r in answers.iter().chain(additionals) {
        write_record(&mut out, r);
    }
    out
}

fn header(id: u16, flags: u16, questions: usize, answers: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    for word in [id, flags, questions as u16, answers as u16, 0, 0] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out
}

fn write_name(out: &mut Vec<u8>, name: &Name) {
    for label in &name.0 {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    out.push(0);
}

fn write_record(out: &mut Vec<u8>, r: &Record) {
    write_name(out, &r.name);
    out.extend_from_slice(&r.rtype.to_be_bytes());
    let class = if r.flush { CLASS_IN | TOP_BIT } else { CLASS_IN };
    out.extend_from_slice(&class.to_be_bytes());
    out.extend_from_slice(&r.ttl.to_be_bytes());
    let mut rdata = Vec::new();
    match &r.data {
        Data::Ptr(name) => write_name(&mut rdata, name),
        Data::Srv { port, target } => {
            rdata.extend_from_slice(&[0, 0, 0, 0]);
            rdata.extend_from_slice(&port.to_be_bytes());
            write_name(&mut rdata, target);
        }
        Data::Txt(strings) if strings.is_empty() => rdata.push(0),
        Data::Txt(strings) => {
            for s in strings {
                let s = &s[..s.len().min(255)];
                rdata.push(s.len() as u8);
                rdata.extend_from_slice(s);
            }
        }
        Data::A(ip) => rdata.extend_from_slice(&ip.octets()),
        Data::Aaaa(ip) => rdata.extend_from_slice(&ip.octets()),
        Data::Other => {}
    }
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(&rdata);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcement() -> Vec<u8> {
        let ty = Name::dotted("_hap._tcp.local");
        let instance = Name::prefixed("Sim Bulb.2", &ty);
        let host = Name::dotted("bulb.local");
        let records = [
            Record {
                name: ty.clone(),
                rtype: PTR,
                flush: false,
                ttl: 4500,
                data: Data::Ptr(instance.clone()),
            },
            Record {
                name: instance.clone(),
                rtype: SRV,
                flush: true,
                ttl: 120,
                data: Data::Srv {
                    port: 51827,
                    target: host.clone(),
                },
            },
            Record {
                name: instance,
                rtype: TXT,
                flush: true,
                ttl: 4500,
                data: Data::Txt(vec![b"ci=5".to_vec(), b"md=Bulb".to_vec()]),
            },
            Record {
                name: host,
                rtype: A,
                flush: true,
                ttl: 120,
                data: Data::A(Ipv4Addr::new(192, 168, 1, 20)),
            },
        ];
        response(0, &[], &records, &[])
    }

    #[test]
    fn a_written_message_reads_back() {
        let m = parse(&announcement()).unwrap();
        assert!(m.response);
        assert_eq!(m.records.len(), 4);
        let ty = Name::dotted("_hap._tcp.local");
        let Data::Ptr(instance) = &m.records[0].data else {
            panic!("not a PTR")
        };
        assert_eq!(instance.child_of(&ty), Some("Sim Bulb.2"));
        assert!(matches!(m.records[1].data, Data::Srv { port: 51827, .. }));
        assert!(m.records[1].flush);
        let Data::Txt(t) = &m.records[2].data else {
            panic!("not a TXT")
        };
        assert_eq!(t, &[b"ci=5".to_vec(), b"md=Bulb".to_vec()]);
        assert!(matches!(m.records[3].data, Data::A(ip) if ip == Ipv4Addr::new(192, 168, 1, 20)));
        assert_eq!(Name::dotted("_HAP._tcp.local."), ty);
        assert_eq!(instance.key(), "sim bulb\\.2._hap._tcp.local");
    }

    /// The cache-flush bit and the TTL as the cache reads them, and a class
    /// other than IN read as nothing.
    #[test]
    fn flush_goodbye_and_class_are_read_from_each_record() {
        fn a_record(class: u16, ttl: u32) -> Vec<u8> {
            let mut p = vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0];
            p.extend_from_slice(&[1, b'h', 5, b'l', b'o', b'c', b'a', b'l', 0, 0, 1]);
            p.extend_from_slice(&class.to_be_bytes());
            p.extend_from_slice(&ttl.to_be_bytes());
            p.extend_from_slice(&[0, 4, 192, 168, 1, 7]);
            p
        }
        // (class, ttl) -> (flush, goodbye, an address read)
        let check = |class: u16, ttl: u32, expect: (bool, bool, bool)| {
            let m = parse(&a_record(class, ttl)).unwrap();
            let r = &m.records[0];
            let got = (r.flush, r.is_goodbye(), matches!(r.data, Data::A(_)));
            assert_eq!(got, expect, "class {class:#06x} ttl {ttl}");
        };
        check(CLASS_IN, 120, (false, false, true));
        check(CLASS_IN | TOP_BIT, 120, (true, false, true));
        check(CLASS_IN, 0, (false, true, true));
        check(CLASS_IN | TOP_BIT, 0, (true, true, true));
        // CHAOS (3), with and without the flush bit: not an address.
        check(3, 120, (false, false, false));
        check(3 | TOP_BIT, 0, (true, true, false));
    }

    #[test]
    fn compression_pointers_must_point_backwards() {
        // A name at offset 12 made of a pointer to itself.
        let mut p = vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 120, 0, 4, 1, 2, 3, 4]);
        assert_eq!(parse(&p).err(), Some(WireError::BadPointer));
        // A pointer forwards.
        let mut p = vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(&[0xc0, 40, 0, 1, 0, 1, 0, 0, 0, 120, 0, 4, 1, 2, 3, 4]);
        assert_eq!(parse(&p).err(), Some(WireError::BadPointer));
        // A label that runs back into an earlier pointer: the hop bound ends it.
        let mut p = vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(&[1, b'a', 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 120, 0, 4, 1, 2, 3, 4]);
        assert!(parse(&p).is_err());
    }

    #[test]
    fn bounds_refuse_the_whole_message() {
        let mut p = vec![0, 0, 0x84, 0, 0, 0, 0, 200, 0, 0, 0, 0];
        p.resize(100, 0);
        assert_eq!(parse(&p).err(), Some(WireError::TooManyEntries));
        assert_eq!(parse(&[0u8; MAX_PACKET + 1]).err(), Some(WireError::TooLarge));
        assert_eq!(parse(&[0u8; 5]).err(), Some(WireError::Truncated));
        // A name longer than 255 bytes.
        let mut p = vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        for _ in 0..5 {
            p.push(63);
            p.extend_from_slice(&[b'x'; 63]);
        }
        p.push(0);
        assert_eq!(parse(&p).err(), Some(WireError::BadName));
        // An A record with five bytes.
        let mut p = vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(&[1, b'h', 0, 0, 1, 0, 1, 0, 0, 0, 120, 0, 5, 1, 2, 3, 4, 5]);
        assert_eq!(parse(&p).err(), Some(WireError::BadRecord));
    }

    #[test]
    fn every_truncation_and_random_noise_is_an_error_not_a_panic() {
        let good = announcement();
        for cut in 0..good.len() {
            assert!(parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for round in 0..20_000 {
            let mut p = good.clone();
            for _ in 0..1 + round % 8 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state as usize) % p.len();
                p[at] = (state >> 32) as u8;
            }
            let _ = parse(&p);
        }
    }
}
