//! The answers cache: bounded in entries, each kept for its own TTL (capped),
//! negative answers for the SOA's minimum (or a short default).

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::{Record, RecordType};

/// No answer is kept longer than this, whatever its TTL says.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a negative answer without an SOA is kept.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// How many entries an eviction looks at to pick the one expiring first.
const EVICTION_SAMPLE: usize = 8;

/// One cached answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub code: ResponseCode,
    pub answers: Arc<[Record]>,
    pub authorities: Arc<[Record]>,
    pub stored: Instant,
    pub expires: Instant,
}

impl Answer {
    /// The records with their TTLs lowered by the time spent in the cache;
    /// borrowed as they are within their first second.
    pub fn aged(records: &[Record], stored: Instant, now: Instant) -> Cow<'_, [Record]> {
        let spent = now.saturating_duration_since(stored).as_secs() as u32;
        if spent == 0 {
            return Cow::Borrowed(records);
        }
        records
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.ttl = r.ttl.saturating_sub(spent);
                r
            })
            .collect()
    }
}

/// A key, looked up by a borrowed name: a hit allocates nothing.
trait Key {
    fn name(&self) -> &str;
    fn rtype(&self) -> RecordType;
}

impl Key for (String, RecordType) {
    fn name(&self) -> &str {
        &self.0
    }
    fn rtype(&self) -> RecordType {
        self.1
    }
}

impl Key for (&str, RecordType) {
    fn name(&self) -> &str {
        self.0
    }
    fn rtype(&self) -> RecordType {
        self.1
    }
}

impl<'a> Borrow<dyn Key + 'a> for (String, RecordType) {
    fn borrow(&self) -> &(dyn Key + 'a) {
        self
    }
}

impl Hash for dyn Key + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
        self.rtype().hash(state);
    }
}

impl PartialEq for dyn Key + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name() && self.rtype() == other.rtype()
    }
}

impl Eq for dyn Key + '_ {}

/// How often a full cache sweeps out what expired, at most: a sweep walks
/// every entry.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The cache.
pub struct Cache {
    entries: HashMap<(String, RecordType), Answer>,
    capacity: usize,
    swept: Option<Instant>,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            entries: HashMap::new(),
            capacity,
            swept: None,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&mut self, name: &str, rtype: RecordType, now: Instant) -> Option<Answer> {
        let key = (name, rtype);
        let key: &dyn Key = &key;
        match self.entries.get(key) {
            Some(a) if a.expires > now => Some(a.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps an answer; a full cache first drops what has expired (once a
    /// second at most), then the entry expiring soonest among a few.
    pub fn put(&mut self, name: &str, rtype: RecordType, answer: Answer, now: Instant) {
        if self.capacity == 0 || answer.expires <= now {
            return;
        }
        let key = (name.to_owned(), rtype);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            if self
                .swept
                .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY)
            {
                self.entries.retain(|_, a| a.expires > now);
                self.swept = Some(now);
            }
            if self.entries.len() >= self.capacity {
                let victim = self
                    .entries
                    .iter()
                    .take(EVICTION_SAMPLE)
                    .min_by_key(|(_, a)| a.expires)
                    .map(|(k, _)| k.clone());
                if let Some(v) = victim {
                    self.entries.remove(&v);
                }
            }
        }
        self.entries.insert(key, answer);
    }
}

/// How long an answer may be kept: its smallest TTL, capped at [`MAX_TTL`].
pub fn lifetime(records: &[Record], negative: Option<u32>) -> Duration {
    let ttl = match records.iter().map(|r| r.ttl).min() {
        Some(t) => Duration::from_secs(u64::from(t)),
        None => negative.map_or(NEGATIVE_TTL, |t| Duration::from_secs(u64::from(t))),
    };
    ttl.min(MAX_TTL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::proto::rr::{Name, RData, rdata::A};

    fn a(ttl: u32) -> Record {
        Record::from_rdata(
            Name::from_ascii("x.example.").unwrap(),
            ttl,
            RData::A(A::new(192, 0, 2, 1)),
        )
    }

    fn answer(now: Instant, secs: u64) -> Answer {
        Answer {
            code: ResponseCode::NoError,
            answers: Arc::from(vec![a(secs as u32)]),
            authorities: Arc::from(Vec::new()),
            stored: now,
            expires: now + Duration::from_secs(secs),
        }
    }

    #[test]
    fn entries_expire_and_the_cache_never_grows_past_its_bound() {
        let now = Instant::now();
        let mut c = Cache::new(3);
        c.put("a", RecordType::A, answer(now, 10), now);
        assert!(c.get("a", RecordType::A, now).is_some());
        assert!(c.get("a", RecordType::AAAA, now).is_none());
        assert!(c.get("a", RecordType::A, now + Duration::from_secs(11)).is_none());
        assert!(c.is_empty(), "an expired entry is dropped when met");
        for (i, secs) in [30, 5, 20, 40].into_iter().enumerate() {
            c.put(&format!("n{i}"), RecordType::A, answer(now, secs), now);
            assert!(c.len() <= 3);
        }
        assert!(
            c.get("n1", RecordType::A, now).is_none(),
            "the soonest to expire went"
        );
        assert!(c.get("n3", RecordType::A, now).is_some());
    }

    #[test]
    fn a_full_cache_sweeps_what_expired_at_most_once_a_second() {
        let now = Instant::now();
        let mut c = Cache::new(3);
        c.put("short", RecordType::A, answer(now, 2), now);
        c.put("long1", RecordType::A, answer(now, 100), now);
        c.put("long2", RecordType::A, answer(now, 100), now);
        // Full, nothing expired: the sweep finds nothing and the soonest to
        // expire goes.
        c.put("new1", RecordType::A, answer(now, 100), now);
        assert_eq!(c.len(), 3);
        assert!(c.get("short", RecordType::A, now).is_none());
        // Within the second, no second sweep; a sampled entry goes.
        c.put(
            "new2",
            RecordType::A,
            answer(now, 100),
            now + Duration::from_millis(500),
        );
        assert_eq!(c.len(), 3);
        // Later, the sweep drops every expired entry at once.
        let later = now + Duration::from_secs(101);
        c.put("new3", RecordType::A, answer(later, 100), later);
        assert_eq!(c.len(), 1);
        assert!(c.get("new3", RecordType::A, later).is_some());
    }

    #[test]
    fn ttls_are_lowered_by_the_time_in_the_cache_and_capped() {
        let now = Instant::now();
        let fresh = [a(100)];
        let aged = Answer::aged(&fresh, now, now + Duration::from_secs(30));
        assert_eq!(aged[0].ttl, 70);
        assert!(matches!(
            Answer::aged(&fresh, now, now + Duration::from_millis(900)),
            Cow::Borrowed(_)
        ));
        assert_eq!(lifetime(&[a(100), a(40)], None), Duration::from_secs(40));
        assert_eq!(lifetime(&[a(u32::MAX)], None), MAX_TTL);
        assert_eq!(lifetime(&[], Some(300)), Duration::from_secs(300));
        assert_eq!(lifetime(&[], None), NEGATIVE_TTL);
    }
}
