//! Login throttling: after [`FREE_FAILURES`] failures in a row a key must
//! wait 1 s, then 2 s, 4 s … up to [`MAX_DELAY`] between attempts. Keys are
//! opaque strings chosen by the caller ("user:<hash>", "addr:<ip>").
//!
//! It never locks anyone out for good: a success clears the key, and a key
//! left alone for [`MAX_DELAY`] after its wait is forgotten. Its memory is
//! bounded whatever a flood of new keys does, and it keeps no clock of its
//! own (time is passed in), so it never sleeps and tests need not either.
//!
//! It is hearth's own because rate-limiting crates (governor and its kin)
//! limit attempts per period: none makes the wait double with failures in a
//! row, clears it on success, and evicts quiet keys before throttled ones
//! when its table is full, which is what stops a password being guessed
//! without letting a flood of addresses lock the owner out.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Failures in a row that cost nothing: an owner's typos seldom run longer,
/// and five guesses are nothing against a twelve-character password.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait, and how long a key must stay quiet to be forgotten.
/// Fifteen minutes holds a guesser to four tries an hour per key, while
/// someone failing on purpose can keep the owner out for no longer.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);

/// The wait after `failures` failures in a row.
fn delay(failures: u32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    // 2^10 s already passes the cap; the clamp keeps the shift small.
    let doublings = (failures - FREE_FAILURES).min(10);
    Duration::from_secs(1 << doublings).min(MAX_DELAY)
}

#[derive(Clone, Copy)]
struct Entry {
    failures: u32,
    /// When the next attempt may be made: the last failure (or reserved
    /// attempt) plus its delay.
    free_at: Instant,
}

impl Entry {
    /// Throttled keys are the ones a flood must not push out.
    fn throttled(&self) -> bool {
        self.failures >= FREE_FAILURES
    }

    /// Quiet for [`MAX_DELAY`] after its wait ended. Counting from the end
    /// of the wait, not the last failure, means a key at the cap is not
    /// forgotten the moment its wait ends.
    fn forgotten(&self, now: Instant) -> bool {
        now >= self.free_at + MAX_DELAY
    }

    /// Eviction order: unthrottled before throttled, then fewest failures,
    /// then the one free (or last failing) earliest.
    fn rank(&self) -> (bool, u32, Instant) {
        (self.throttled(), self.failures, self.free_at)
    }
}

/// Failure counts per key, at most `max_keys` of them.
///
/// When a new key arrives and the table is full, one entry makes room, in
/// this order of preference:
/// 1. one already forgotten (quiet for [`MAX_DELAY`] after its wait);
/// 2. the least restrictive unthrottled one: fewest failures, then oldest;
/// 3. only when every entry is throttled, the one whose wait ends first
///    (the oldest, among equal delays).
///
/// So a flood of new keys, each failing a few times, churns only among
/// themselves and never erases a key that is being throttled. A flood of
/// keys that each fail past [`FREE_FAILURES`] can, but that costs the
/// flooder the same back-off on every key.
pub struct Throttle {
    max_keys: usize,
    entries: HashMap<Arc<str>, Entry>,
    /// Keys by `free_at`: the head is the first to be forgotten.
    by_free: BTreeSet<(Instant, Arc<str>)>,
    /// Keys by [`Entry::rank`]: the head is the least restrictive.
    by_rank: BTreeSet<((bool, u32, Instant), Arc<str>)>,
}

impl Throttle {
    /// A throttle holding at most `max_keys` keys (at least one).
    pub fn new(max_keys: usize) -> Throttle {
        Throttle {
            max_keys: max_keys.max(1),
            entries: HashMap::new(),
            by_free: BTreeSet::new(),
            by_rank: BTreeSet::new(),
        }
    }

    /// May `key` make an attempt now? `Err` carries how long to wait.
    ///
    /// A passing check on a throttled key reserves the attempt: further
    /// checks are refused until the caller reports the outcome with
    /// [`failure`](Self::failure) or [`success`](Self::success), or the
    /// current delay passes again. Without this, a burst of parallel
    /// attempts sent the moment a wait ends would all get through.
    pub fn check(&mut self, key: &str, now: Instant) -> Result<(), Duration> {
        let Some((name, entry)) = self.entries.get_key_value(key).map(|(k, e)| (k.clone(), *e)) else {
            return Ok(());
        };
        if entry.forgotten(now) {
            self.remove(key);
            return Ok(());
        }
        if now < entry.free_at {
            return Err(entry.free_at - now);
        }
        if entry.throttled() {
            self.put(
                name,
                Entry {
                    free_at: now + delay(entry.failures),
                    ..entry
                },
            );
        }
        Ok(())
    }

    /// Reserves one attempt on each of `keys` at once, before the caller's
    /// slow check: if none of them must wait, the attempt is recorded as a
    /// failure on every key now, and the caller gives it back with
    /// [`refund`](Self::refund) or clears the keys with
    /// [`success`](Self::success) if it was not a failure. So however many
    /// attempts arrive together, at most [`FREE_FAILURES`] pass before the
    /// first wait. `Err` carries the longest wait among the keys.
    pub fn reserve(&mut self, keys: &[&str], now: Instant) -> Result<(), Duration> {
        let wait = keys
            .iter()
            .filter_map(|k| self.entries.get(*k))
            .filter(|e| !e.forgotten(now) && now < e.free_at)
            .map(|e| e.free_at - now)
            .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        for key in keys {
            self.failure(key, now);
        }
        Ok(())
    }

    /// Gives back one attempt reserved on `key` that turned out not to be a
    /// guess (the right password, with the second factor still to come).
    pub fn refund(&mut self, key: &str, now: Instant) {
        let Some((name, entry)) = self.entries.get_key_value(key).map(|(k, e)| (k.clone(), *e)) else {
            return;
        };
        if entry.failures <= 1 {
            self.remove(key);
            return;
        }
        let failures = entry.failures - 1;
        // Below the free failures there is no wait; above them, the wait
        // already set stands, since a refund must never open a gap.
        let free_at = if failures < FREE_FAILURES {
            entry.free_at.min(now)
        } else {
            entry.free_at
        };
        self.put(name, Entry { failures, free_at });
    }

    /// Records a failed attempt for `key`.
    pub fn failure(&mut self, key: &str, now: Instant) {
        let (name, previous) = match self.entries.get_key_value(key) {
            Some((name, entry)) if !entry.forgotten(now) => (name.clone(), Some(*entry)),
            Some((name, _)) => (name.clone(), None),
            None => {
                if self.entries.len() >= self.max_keys {
                    self.evict(now);
                }
                (Arc::from(key), None)
            }
        };
        let failures = previous.map_or(0, |e| e.failures).saturating_add(1);
        let mut free_at = now + delay(failures);
        if let Some(e) = previous {
            // A failure never shortens a wait already set.
            free_at = free_at.max(e.free_at);
        }
        self.put(name, Entry { failures, free_at });
    }

    /// Records a successful attempt: the key starts afresh.
    pub fn success(&mut self, key: &str) {
        self.remove(key);
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Inserts or replaces `name`'s entry, keeping both indexes in step.
    fn put(&mut self, name: Arc<str>, entry: Entry) {
        self.unindex(&name);
        self.by_free.insert((entry.free_at, name.clone()));
        self.by_rank.insert((entry.rank(), name.clone()));
        self.entries.insert(name, entry);
    }

    fn remove(&mut self, key: &str) {
        self.unindex(key);
        self.entries.remove(key);
    }

    fn unindex(&mut self, key: &str) {
        if let Some((name, old)) = self.entries.get_key_value(key) {
            self.by_free.remove(&(old.free_at, name.clone()));
            self.by_rank.remove(&(old.rank(), name.clone()));
        }
    }

    /// Drops one entry to make room; see the type's documentation.
    fn evict(&mut self, now: Instant) {
        let soonest = self.by_free.first().map(|(_, name)| name.clone());
        let forgotten = soonest
            .as_ref()
            .filter(|name| self.entries.get(&***name).is_some_and(|e| e.forgotten(now)));
        let loosest = self
            .by_rank
            .first()
            .filter(|((throttled, _, _), _)| !throttled)
            .map(|(_, name)| name.clone());
        if let Some(name) = forgotten.cloned().or(loosest).or(soonest) {
            self.remove(&name);
        }
    }
}

impl fmt::Debug for Throttle {
    /// Keys name users and addresses, so only the counts are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("keys", &self.entries.len())
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_reservations_lets_only_the_free_failures_through() {
        let mut t = Throttle::new(16);
        let now = Instant::now();
        let passed = (0..64)
            .filter(|_| t.reserve(&["addr:a", "user:u"], now).is_ok())
            .count();
        assert_eq!(passed, FREE_FAILURES as usize);
        // A success clears the keys; a refund gives one attempt back.
        t.success("addr:a");
        t.success("user:u");
        assert!(t.reserve(&["addr:a", "user:u"], now).is_ok());
        t.refund("addr:a", now);
        t.refund("user:u", now);
        assert!(t.is_empty(), "a refunded first attempt leaves nothing");
        // One throttled key holds back the other.
        for _ in 0..FREE_FAILURES {
            t.failure("user:v", now);
        }
        assert!(t.reserve(&["addr:b", "user:v"], now).is_err());
        assert!(
            !t.entries.contains_key("addr:b"),
            "a refused reservation records nothing"
        );
    }

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    /// Fails `key` `n` times, each as soon as it is allowed; returns the time
    /// of the last failure.
    fn fail_n(t: &mut Throttle, key: &str, n: u32, mut now: Instant) -> Instant {
        for _ in 0..n {
            if let Err(wait) = t.check(key, now) {
                now += wait;
                t.check(key, now).expect("free after the wait");
            }
            t.failure(key, now);
        }
        now
    }

    fn assert_consistent(t: &Throttle) {
        assert_eq!(t.by_free.len(), t.entries.len());
        assert_eq!(t.by_rank.len(), t.entries.len());
    }

    #[test]
    fn five_failures_are_free_then_the_wait_doubles() {
        let mut t = Throttle::new(10);
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            assert_eq!(t.check("user:a", t0), Ok(()));
            t.failure("user:a", t0);
        }
        assert_eq!(t.check("user:a", t0), Ok(()));
        t.failure("user:a", t0);
        assert_eq!(t.check("user:a", t0), Err(S));
        assert_eq!(t.check("user:a", t0 + 400 * MS), Err(600 * MS));
        let mut now = t0 + S;
        for expected in [2, 4, 8, 16, 32] {
            assert_eq!(t.check("user:a", now), Ok(()));
            t.failure("user:a", now);
            assert_eq!(t.check("user:a", now), Err(expected * S));
            assert_eq!(t.check("user:a", now + expected * S - MS), Err(MS));
            now += expected * S;
        }
        assert_eq!(t.check("user:a", now), Ok(()));
        // Other keys are untouched.
        assert_eq!(t.check("user:b", t0), Ok(()));
        assert_consistent(&t);
    }

    #[test]
    fn a_passing_check_on_a_throttled_key_reserves_the_attempt() {
        let mut t = Throttle::new(10);
        let t0 = Instant::now();
        let last = fail_n(&mut t, "addr:x", FREE_FAILURES + 1, t0);
        let free = last + 2 * S;
        assert_eq!(t.check("addr:x", free), Ok(()));
        // A second attempt in parallel, before the first is reported.
        assert_eq!(t.check("addr:x", free), Err(2 * S));
        assert_eq!(t.check("addr:x", free + S), Err(S));
        t.failure("addr:x", free + S);
        assert_eq!(t.check("addr:x", free + S), Err(4 * S));
        // Below the threshold nothing is reserved.
        let mut u = Throttle::new(10);
        u.failure("addr:y", t0);
        assert_eq!(u.check("addr:y", t0), Ok(()));
        assert_eq!(u.check("addr:y", t0), Ok(()));
    }

    #[test]
    fn success_clears_the_key() {
        let mut t = Throttle::new(10);
        let t0 = Instant::now();
        let last = fail_n(&mut t, "user:a", 8, t0);
        assert!(t.check("user:a", last).is_err());
        t.success("user:a");
        assert_eq!(t.len(), 0);
        assert!(t.is_empty());
        assert_consistent(&t);
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.check("user:a", last), Ok(()));
            t.failure("user:a", last);
        }
        assert_eq!(t.check("user:a", last), Err(S));
        // Success of an unknown key is harmless.
        t.success("user:nobody");
    }

    #[test]
    fn the_wait_is_capped_at_fifteen_minutes() {
        assert_eq!(delay(0), Duration::ZERO);
        assert_eq!(delay(4), Duration::ZERO);
        assert_eq!(delay(5), S);
        assert_eq!(delay(14), 512 * S);
        assert_eq!(delay(15), MAX_DELAY);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
        let mut t = Throttle::new(10);
        let t0 = Instant::now();
        let last = fail_n(&mut t, "user:a", 40, t0);
        assert_eq!(t.check("user:a", last), Err(MAX_DELAY));
        assert_eq!(t.check("user:a", last + MAX_DELAY), Ok(()));
        // Failures reported without checking still never wait longer.
        for _ in 0..100 {
            t.failure("user:a", last + MAX_DELAY);
        }
        assert_eq!(t.check("user:a", last + MAX_DELAY), Err(MAX_DELAY));
    }

    #[test]
    fn failures_decay_when_the_key_is_left_alone() {
        let mut t = Throttle::new(10);
        let t0 = Instant::now();
        // Below the threshold: forgotten MAX_DELAY after the last failure.
        fail_n(&mut t, "user:a", FREE_FAILURES - 1, t0);
        assert_eq!(t.check("user:a", t0 + MAX_DELAY - MS), Ok(()));
        assert_eq!(t.len(), 1);
        assert_eq!(t.check("user:a", t0 + MAX_DELAY), Ok(()));
        assert_eq!(t.len(), 0);

        // Throttled: forgotten MAX_DELAY after its wait ends, and then the
        // free failures are free again.
        let last = fail_n(&mut t, "user:b", FREE_FAILURES + 2, t0);
        let free = last + 4 * S;
        let quiet = free + MAX_DELAY;
        t.failure("user:b", quiet);
        assert_eq!(t.check("user:b", quiet), Ok(()), "decayed to one failure");
        let last = fail_n(&mut t, "user:b", FREE_FAILURES - 1, quiet);
        assert_eq!(t.check("user:b", last), Err(S));
        assert_consistent(&t);
    }

    #[test]
    fn a_quiet_key_just_short_of_decay_is_kept() {
        let mut t = Throttle::new(10);
        let t0 = Instant::now();
        let last = fail_n(&mut t, "user:a", FREE_FAILURES + 2, t0);
        let almost = last + 4 * S + MAX_DELAY - MS;
        t.failure("user:a", almost);
        assert_eq!(t.check("user:a", almost), Err(8 * S));
    }

    #[test]
    fn a_flood_of_new_keys_stays_bounded_and_keeps_throttled_keys() {
        let max = 1000;
        let mut t = Throttle::new(max);
        let t0 = Instant::now();
        let last = fail_n(&mut t, "user:victim", FREE_FAILURES + 3, t0);
        let wait = t.check("user:victim", last).unwrap_err();
        assert_eq!(wait, 8 * S);
        // Someone who failed four times is more restrictive than the flood
        // and survives it too: the flood evicts its own one-failure keys.
        fail_n(&mut t, "addr:neighbour", FREE_FAILURES - 1, last);
        for i in 0..100_000u32 {
            let key = format!("addr:10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff);
            let now = last + u32::min(i, 999) * MS;
            t.check(&key, now).unwrap();
            t.failure(&key, now);
            assert!(t.len() <= max, "{} keys after {i}", t.len());
        }
        assert_eq!(t.len(), max);
        assert_consistent(&t);
        assert_eq!(t.check("user:victim", last + S), Err(7 * S));
        t.failure("addr:neighbour", last + S);
        assert_eq!(t.check("addr:neighbour", last + S), Err(S), "its count survived");
    }

    #[test]
    fn eviction_takes_the_least_restrictive_entry() {
        let mut t = Throttle::new(3);
        let t0 = Instant::now();
        fail_n(&mut t, "a", 3, t0);
        t.failure("b", t0 + S);
        t.failure("c", t0 + 2 * S);
        t.failure("d", t0 + 3 * S);
        // "b" had the fewest failures and is older than "c".
        assert!(!t.entries.contains_key("b"));
        assert!(t.entries.contains_key("a") && t.entries.contains_key("c"));
        // A forgotten entry goes first, even with more failures.
        let later = t0 + MAX_DELAY + 500 * MS;
        t.failure("e", later);
        assert!(!t.entries.contains_key("a"), "forgotten");
        assert_eq!(t.len(), 3);
        assert_consistent(&t);
    }

    #[test]
    fn when_every_entry_is_throttled_the_oldest_goes() {
        let mut t = Throttle::new(3);
        let t0 = Instant::now();
        let mut now = t0;
        for key in ["a", "b", "c"] {
            now = fail_n(&mut t, key, FREE_FAILURES, now) + MS;
        }
        t.failure("d", now);
        assert!(!t.entries.contains_key("a"));
        for key in ["b", "c"] {
            assert!(t.check(key, now).is_err(), "{key} still throttled");
        }
        assert_eq!(t.len(), 3);
        assert_consistent(&t);
    }

    #[test]
    fn debug_shows_no_keys() {
        let mut t = Throttle::new(0);
        t.failure("addr:192.0.2.7", Instant::now());
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("192.0.2.7"), "{dbg}");
        assert_eq!(t.len(), 1, "max_keys is at least one");
    }
}
