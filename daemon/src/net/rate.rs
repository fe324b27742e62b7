//! hearth's one token bucket: a plain [`Bucket`] for a single stream (mDNS
//! packets, adverts reaching the store), and [`Keyed`], a bucket per key
//! (client address, relay token) in bounded memory.
//!
//! A bucket is refilled when it is used, from the time passed since; nothing
//! runs in the background. Neither type allocates on a call, except
//! [`Keyed`] when it first meets a key, so both fit a hot receive path. Keys
//! are never logged.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

/// How fast a bucket refills and how much it holds.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Rate {
    per_second: f64,
    burst: f64,
}

/// What a bucket holds, as of `at`.
#[derive(Clone, Copy, Debug)]
struct Level {
    tokens: f64,
    at: Instant,
}

impl Rate {
    /// A burst below one would never let anything through.
    fn new(per_second: f64, burst: f64) -> Rate {
        Rate {
            per_second,
            burst: burst.max(1.0),
        }
    }

    fn full(self, now: Instant) -> Level {
        Level {
            tokens: self.burst,
            at: now,
        }
    }

    /// The tokens `level` holds at `now`.
    fn refilled(self, level: &Level, now: Instant) -> f64 {
        (level.tokens + now.saturating_duration_since(level.at).as_secs_f64() * self.per_second)
            .min(self.burst)
    }

    /// Refills `level` to `now` and takes one token, if there is one.
    fn take(self, level: &mut Level, now: Instant) -> bool {
        level.tokens = self.refilled(level, now);
        level.at = now;
        if level.tokens >= 1.0 {
            level.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One token bucket: `per_second` calls a second, up to `burst` at once.
/// It starts full.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    rate: Rate,
    level: Level,
}

impl Bucket {
    pub fn new(per_second: f64, burst: f64, now: Instant) -> Bucket {
        let rate = Rate::new(per_second, burst);
        Bucket {
            rate,
            level: rate.full(now),
        }
    }

    /// Takes one call from the bucket, if there is one to take.
    pub fn take(&mut self, now: Instant) -> bool {
        self.rate.take(&mut self.level, now)
    }
}

/// A token bucket per key, at most `max_keys` of them.
///
/// When the table is full and a new key comes, every key whose bucket has
/// refilled is forgotten (it would start full anyway, so nothing is lost).
/// If none has, the new key is refused rather than an old one forgotten:
/// forgetting a drained bucket would hand its key a fresh burst, so a client
/// able to make up keys could reset the limit of any other.
#[derive(Debug)]
pub struct Keyed<K> {
    rate: Rate,
    max_keys: usize,
    buckets: HashMap<K, Level>,
}

impl<K: Eq + Hash> Keyed<K> {
    /// `per_second` calls a second per key, up to `burst` at once; at most
    /// `max_keys` keys are tracked.
    pub fn new(per_second: u32, burst: u32, max_keys: usize) -> Keyed<K> {
        Keyed {
            rate: Rate::new(f64::from(per_second), f64::from(burst)),
            max_keys,
            buckets: HashMap::new(),
        }
    }

    /// Takes one call from `key`'s bucket, if there is one to take.
    pub fn take(&mut self, key: K, now: Instant) -> bool {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.max_keys {
            let rate = self.rate;
            self.buckets
                .retain(|_, level| rate.refilled(level, now) < rate.burst);
            if self.buckets.len() >= self.max_keys {
                return false;
            }
        }
        let rate = self.rate;
        let level = self.buckets.entry(key).or_insert_with(|| rate.full(now));
        rate.take(level, now)
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::time::Duration;

    #[test]
    fn a_bucket_holds_its_burst_and_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(20.0, 20.0, t0);
        assert_eq!((0..30).filter(|_| b.take(t0)).count(), 20);
        // A tenth of a second refills two; a long pause no more than the burst.
        assert_eq!(
            (0..5).filter(|_| b.take(t0 + Duration::from_millis(100))).count(),
            2
        );
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..30).filter(|_| b.take(later)).count(), 20);
        // A clock read out of order takes nothing back.
        assert!(!b.take(t0));
    }

    #[test]
    fn a_burst_then_the_rate() {
        let mut l = Keyed::new(5, 20, 100);
        let t0 = Instant::now();
        assert_eq!((0..25).filter(|_| l.take("a", t0)).count(), 20);
        assert!(l.take("b", t0), "keys are apart");
        // One second refills five.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..10).filter(|_| l.take("a", t1)).count(), 5);
    }

    #[test]
    fn memory_stays_bounded_under_many_keys() {
        let mut l = Keyed::new(1, 2, 64);
        let t0 = Instant::now();
        for i in 0..10_000 {
            l.take(format!("k{i}"), t0);
            assert!(l.len() <= 64);
        }
        let mut t = t0;
        for i in 0..1000 {
            t += Duration::from_millis(1);
            l.take("busy".to_owned(), t);
            l.take(format!("new{i}"), t);
            assert!(l.len() <= 64);
        }
        // Once the table's buckets have refilled, they make room.
        let t = t0 + Duration::from_secs(2);
        assert!(l.take("busy".to_owned(), t));
        assert!(l.len() <= 64);
    }

    #[test]
    fn a_full_table_refuses_new_keys_until_old_ones_go_idle() {
        let rate = |l: &mut Keyed<IpAddr>, ip: &str, t| l.take(ip.parse().unwrap(), t);
        let mut l = Keyed::new(2, 3, 2);
        let t0 = Instant::now();
        assert!((0..3).all(|_| rate(&mut l, "192.168.1.10", t0)), "burst");
        assert!(!rate(&mut l, "192.168.1.10", t0), "over the burst");
        assert!(
            rate(&mut l, "192.168.1.10", t0 + Duration::from_millis(600)),
            "refilled one"
        );
        // Bounded: a third key while two are fresh is refused...
        assert!(rate(&mut l, "192.168.1.11", t0));
        assert!(!rate(&mut l, "192.168.1.12", t0));
        assert_eq!(l.len(), 2);
        // ...and admitted once the others have refilled.
        assert!(rate(&mut l, "192.168.1.12", t0 + Duration::from_secs(5)));
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn a_zero_burst_still_lets_one_through() {
        let t0 = Instant::now();
        let mut l = Keyed::new(1, 0, 4);
        assert!(l.take(1u8, t0));
        assert!(!l.take(1u8, t0));
    }
}
