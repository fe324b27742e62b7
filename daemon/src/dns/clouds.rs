//! Which names are a vendor's cloud, and which are the LAN's own.
//!
//! hearth ships a small list of cloud domains per vendor, each with the
//! public page it was taken from (`clouds.toml`); the owner adds more. A
//! domain matches itself and every name under it.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The shipped list, compiled in.
const SHIPPED: &str = include_str!("clouds.toml");
/// Domains the owner may add, at most.
pub const MAX_OWNER_DOMAINS: usize = 500;

/// One vendor's entry in the shipped list.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Vendor {
    pub name: String,
    pub domains: Vec<String>,
    pub source: String,
    pub note: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct List {
    vendor: Vec<Vendor>,
}

/// The shipped list. A test proves it parses and every domain is valid.
pub fn shipped() -> &'static [Vendor] {
    static LIST: OnceLock<Vec<Vendor>> = OnceLock::new();
    LIST.get_or_init(|| {
        toml::from_str::<List>(SHIPPED)
            .map(|l| l.vendor)
            .unwrap_or_default()
    })
}

/// Where a cloud domain comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The shipped list: the vendor's index in [`shipped`].
    Shipped(usize),
    /// The owner added it.
    Owner,
}

/// Every known cloud domain, for matching.
#[derive(Clone, Debug, Default)]
pub struct Clouds {
    by_domain: HashMap<String, Origin>,
}

impl Clouds {
    /// The shipped list and the owner's domains.
    pub fn new(owner: &[String]) -> Clouds {
        let mut by_domain = HashMap::new();
        for (i, v) in shipped().iter().enumerate() {
            for d in &v.domains {
                by_domain.insert(d.clone(), Origin::Shipped(i));
            }
        }
        for d in owner {
            by_domain.entry(d.clone()).or_insert(Origin::Owner);
        }
        Clouds { by_domain }
    }

    /// The known cloud domain `name` is, or is under, if any: the longest
    /// one that matches.
    pub fn matches<'a>(&'a self, name: &str) -> Option<(&'a str, Origin)> {
        let mut rest = name;
        loop {
            if let Some((d, o)) = self.by_domain.get_key_value(rest) {
                return Some((d.as_str(), *o));
            }
            rest = rest.split_once('.')?.1;
        }
    }

    pub fn len(&self) -> usize {
        self.by_domain.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }
}

/// A domain the owner typed, normalised: lower case, no leading or final
/// dot, at least two labels of letters, digits and hyphens, and not an
/// address. `None` for anything else.
pub fn domain(input: &str) -> Option<String> {
    let d = input
        .trim()
        .trim_start_matches("*.")
        .trim_matches('.')
        .to_ascii_lowercase();
    if d.len() > 253 || d.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let labels: Vec<&str> = d.split('.').collect();
    let ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()));
    ok.then_some(d)
}

/// Multicast DNS's names: never forwarded (RFC 6762, section 3).
pub fn is_mdns(name: &str) -> bool {
    name == "local" || name.ends_with(".local")
}

/// Zones that name things on the LAN: what a LAN-only device may still
/// look up. Reverse zones of private and link-local addresses count.
const LAN_ZONES: &[&str] = &[
    "home.arpa",
    "lan",
    "internal",
    "localdomain",
    "localhost",
    "10.in-addr.arpa",
    "168.192.in-addr.arpa",
    "254.169.in-addr.arpa",
    "d.f.ip6.arpa",
    "8.e.f.ip6.arpa",
    "9.e.f.ip6.arpa",
    "a.e.f.ip6.arpa",
    "b.e.f.ip6.arpa",
];

/// Whether `name` is the LAN's own: a single label, under a LAN zone, under
/// one of the LAN's search domains, or under 16-31.172.in-addr.arpa.
pub fn is_lan(name: &str, search: &[String]) -> bool {
    if !name.contains('.') || is_mdns(name) {
        return true;
    }
    let under = |zone: &str| name == zone || name.strip_suffix(zone).is_some_and(|p| p.ends_with('.'));
    if LAN_ZONES.iter().any(|z| under(z)) || search.iter().any(|z| under(z)) {
        return true;
    }
    (16..32).any(|n| under(&format!("{n}.172.in-addr.arpa")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_list_parses_and_every_entry_is_sourced_and_valid() {
        let list = shipped();
        assert!(list.len() >= 5, "{} vendors", list.len());
        for v in list {
            assert!(v.source.starts_with("https://"), "{}: {}", v.name, v.source);
            assert!(!v.domains.is_empty() && !v.note.is_empty(), "{}", v.name);
            for d in &v.domains {
                assert_eq!(domain(d).as_deref(), Some(d.as_str()), "{}: {d}", v.name);
            }
        }
        let clouds = Clouds::new(&[]);
        assert!(clouds.matches("shelly.cloud").is_some());
    }

    #[test]
    fn a_domain_matches_itself_and_names_under_it_only() {
        let clouds = Clouds::new(&["canary-cloud.example".into()]);
        for (name, hit) in [
            ("canary-cloud.example", Some("canary-cloud.example")),
            ("eu.api.canary-cloud.example", Some("canary-cloud.example")),
            ("notcanary-cloud.example", None),
            ("canary-cloud.example.evil", None),
            ("example", None),
            ("iot.shelly.cloud", Some("shelly.cloud")),
        ] {
            assert_eq!(clouds.matches(name).map(|m| m.0), hit, "{name}");
        }
        assert_eq!(
            clouds.matches("a.canary-cloud.example").map(|m| m.1),
            Some(Origin::Owner)
        );
    }

    #[test]
    fn owner_domains_are_normalised_or_refused() {
        for (input, out) in [
            ("Tuya.COM", Some("tuya.com")),
            ("*.tuyaeu.com", Some("tuyaeu.com")),
            (".a.b.", Some("a.b")),
            ("localhost", None),
            ("192.168.1.1", None),
            ("a..b", None),
            ("-a.b", None),
            ("a b.c", None),
            ("a.123", None),
            ("", None),
        ] {
            assert_eq!(domain(input).as_deref(), out, "{input:?}");
        }
        assert_eq!(domain(&format!("{}.com", "a".repeat(64))), None);
    }

    #[test]
    fn lan_names_are_told_from_the_internet() {
        let search = vec!["fritz.box".to_owned()];
        for (name, lan) in [
            ("printer", true),
            ("hub.local", true),
            ("nas.home.arpa", true),
            ("router.fritz.box", true),
            ("fritz.box", true),
            ("1.1.168.192.in-addr.arpa", true),
            ("5.0.20.172.in-addr.arpa", true),
            ("5.0.40.172.in-addr.arpa", false),
            ("8.8.8.8.in-addr.arpa", false),
            ("shelly.cloud", false),
            ("notfritz.box", false),
            ("example.lan", true),
        ] {
            assert_eq!(is_lan(name, &search), lan, "{name}");
        }
        assert!(is_mdns("local") && is_mdns("a.local") && !is_mdns("local.example"));
    }
}
