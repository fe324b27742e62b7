//! A token-bucket rate limit per key, in bounded memory.

use std::collections::HashMap;
use std::time::Instant;

pub struct Limiter {
    rate: f64,
    burst: f64,
    max_keys: usize,
    buckets: HashMap<String, (f64, Instant)>,
}

impl Limiter {
    /// `rate` calls a second per key, up to `burst` at once; at most
    /// `max_keys` keys are tracked.
    pub fn new(rate: u32, burst: u32, max_keys: usize) -> Limiter {
        Limiter {
            rate: f64::from(rate),
            burst: f64::from(burst),
            max_keys,
            buckets: HashMap::new(),
        }
    }

    /// Takes one call from `key`'s bucket, if there is one to take.
    pub fn allow(&mut self, key: &str, now: Instant) -> bool {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            self.make_room(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let (tokens, at) = self.buckets.entry(key.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops every key whose bucket has refilled (it would start full
    /// anyway); if none has, the key seen longest ago.
    fn make_room(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets
            .retain(|_, (t, at)| *t + now.saturating_duration_since(*at).as_secs_f64() * rate < burst);
        if self.buckets.len() >= self.max_keys
            && let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
        {
            self.buckets.remove(&oldest);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let mut l = Limiter::new(5, 20, 100);
        let t0 = Instant::now();
        assert_eq!((0..25).filter(|_| l.allow("a", t0)).count(), 20);
        assert!(l.allow("b", t0), "keys are apart");
        // One second refills five.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..10).filter(|_| l.allow("a", t1)).count(), 5);
    }

    #[test]
    fn memory_stays_bounded_under_many_keys() {
        let mut l = Limiter::new(1, 2, 64);
        let t0 = Instant::now();
        for i in 0..10_000 {
            l.allow(&format!("k{i}"), t0);
            assert!(l.len() <= 64);
        }
        // A busy key survives while idle ones make room.
        let mut t = t0;
        for i in 0..1000 {
            t += Duration::from_millis(1);
            l.allow("busy", t);
            l.allow(&format!("new{i}"), t);
            assert!(l.len() <= 64);
        }
    }
}
