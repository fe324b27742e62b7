//! What each adopted device looked up: a bounded, aged record per device,
//! held in memory and written to the store (sealed) in batches.

use std::collections::{BTreeSet, HashMap};

use crate::store::dns::{DnsRecord, LookedUp};

/// What the resolver does for one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Answer everything; record what it asks.
    #[default]
    Observe,
    /// Answer known cloud domains as blocked.
    BlockCloud,
    /// Answer only names on the LAN.
    LanOnly,
}

impl Policy {
    pub const ALL: [Policy; 3] = [Policy::Observe, Policy::BlockCloud, Policy::LanOnly];

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Observe => "observe",
            Policy::BlockCloud => "block_cloud",
            Policy::LanOnly => "lan_only",
        }
    }

    /// Accepts `block-cloud` as well as `block_cloud`.
    pub fn parse(s: &str) -> Option<Policy> {
        let s = s.replace('-', "_");
        Policy::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// One device's record while hearth runs.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub policy: Policy,
    /// Each name, with when it was last looked up in order: seconds tell
    /// apart only look-ups a second apart.
    names: HashMap<String, (LookedUp, u64)>,
    /// The order the next look-up takes.
    next: u64,
    /// Known cloud domains it has looked up.
    clouds: BTreeSet<String>,
    /// Changed since the last write.
    pub dirty: bool,
}

/// What noting a query found.
#[derive(Debug, PartialEq, Eq)]
pub enum Noted {
    Known,
    /// A known cloud domain it had never looked up before.
    NewCloud,
}

impl History {
    pub fn from_record(r: DnsRecord) -> History {
        // Records keep the names least recently seen first.
        let next = r.names.len() as u64;
        History {
            policy: Policy::parse(&r.policy).unwrap_or_default(),
            names: r
                .names
                .into_iter()
                .enumerate()
                .map(|(i, n)| (n.name.clone(), (n, i as u64)))
                .collect(),
            next,
            clouds: r.clouds.into_iter().collect(),
            dirty: false,
        }
    }

    pub fn to_record(&self) -> DnsRecord {
        DnsRecord {
            policy: self.policy.as_str().to_owned(),
            names: self.names(),
            clouds: self.clouds.iter().cloned().collect(),
        }
    }

    /// The names, least recently seen first.
    pub fn names(&self) -> Vec<LookedUp> {
        let mut v: Vec<&(LookedUp, u64)> = self.names.values().collect();
        v.sort_by_key(|(n, order)| (n.last, *order));
        v.into_iter().map(|(n, _)| n.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Every query the device made, as counted in its record.
    pub fn queries(&self) -> u64 {
        self.names.values().map(|(n, _)| n.count).sum()
    }

    /// The cloud domains it has looked up.
    pub fn clouds(&self) -> impl Iterator<Item = &str> {
        self.clouds.iter().map(String::as_str)
    }

    /// Counts a query for `name` at `now` (Unix seconds). Past `cap` names,
    /// the least recently seen one goes.
    pub fn note(&mut self, name: &str, cloud: Option<&str>, blocked: bool, now: u64, cap: usize) -> Noted {
        self.dirty = true;
        let order = self.next;
        self.next += 1;
        match self.names.get_mut(name) {
            Some((n, o)) => {
                n.count += 1;
                n.blocked += u64::from(blocked);
                n.last = now.max(n.last);
                *o = order;
            }
            None => {
                while self.names.len() >= cap.max(1) {
                    let oldest = self
                        .names
                        .values()
                        .min_by_key(|(n, o)| (n.last, *o))
                        .map(|(n, _)| n.name.clone());
                    match oldest {
                        Some(o) => self.names.remove(&o),
                        None => break,
                    };
                }
                let seen = LookedUp {
                    name: name.to_owned(),
                    count: 1,
                    blocked: u64::from(blocked),
                    first: now,
                    last: now,
                };
                self.names.insert(name.to_owned(), (seen, order));
            }
        }
        match cloud {
            Some(d) if self.clouds.insert(d.to_owned()) => Noted::NewCloud,
            _ => Noted::Known,
        }
    }

    /// Drops names last seen before `cutoff` (Unix seconds); how many.
    pub fn age(&mut self, cutoff: u64) -> usize {
        let before = self.names.len();
        self.names.retain(|_, (n, _)| n.last >= cutoff);
        let gone = before - self.names.len();
        if gone > 0 {
            self.dirty = true;
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_counted_bounded_and_aged() {
        let mut h = History::default();
        assert_eq!(h.note("a.example", None, false, 10, 3), Noted::Known);
        h.note("a.example", None, true, 11, 3);
        h.note("b.example", None, false, 12, 3);
        h.note("c.example", None, false, 13, 3);
        let a = h.names().into_iter().find(|n| n.name == "a.example").unwrap();
        assert_eq!((a.count, a.blocked, a.first, a.last), (2, 1, 10, 11));
        // A fourth name pushes out the least recently seen one.
        h.note("d.example", None, false, 14, 3);
        let names: Vec<String> = h.names().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["b.example", "c.example", "d.example"]);
        // Within one second, the order of the look-ups decides.
        h.note("z.example", None, false, 14, 3);
        h.note("d.example", None, false, 14, 3);
        let names: Vec<String> = h.names().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["c.example", "z.example", "d.example"]);
        assert_eq!(h.age(14), 1);
        assert_eq!(h.len(), 2);
        assert_eq!(h.queries(), 3);
    }

    #[test]
    fn a_cloud_domain_is_new_once_and_survives_the_store() {
        let mut h = History {
            policy: Policy::BlockCloud,
            ..History::default()
        };
        assert_eq!(
            h.note("eu.shelly.cloud", Some("shelly.cloud"), true, 1, 10),
            Noted::NewCloud
        );
        assert_eq!(
            h.note("us.shelly.cloud", Some("shelly.cloud"), true, 2, 10),
            Noted::Known
        );
        let back = History::from_record(h.to_record());
        assert_eq!(back.policy, Policy::BlockCloud);
        assert_eq!(back.clouds().collect::<Vec<_>>(), ["shelly.cloud"]);
        assert_eq!(back.names(), h.names());
    }

    #[test]
    fn policies_read_both_spellings() {
        assert_eq!(Policy::parse("block-cloud"), Some(Policy::BlockCloud));
        assert_eq!(Policy::parse("lan_only"), Some(Policy::LanOnly));
        assert_eq!(Policy::parse("block"), None);
        for p in Policy::ALL {
            assert_eq!(Policy::parse(p.as_str()), Some(p));
        }
    }
}
