//! What an advert may do to the store: propose a pending device, refresh
//! one, or flag an adopted device whose identity was claimed from elsewhere.
//!
//! An advert can never adopt, re-adopt, or change an adopted device's
//! identity, profile, topic or addresses. Every value it carries is stored
//! sealed, like all other metadata.

use std::collections::HashMap;
use std::net::IpAddr;

use super::classify::{Advert, Classified, MAX_ADDRESSES, rank_of_stored};
use crate::store::{Device, DeviceFields, DeviceId, DeviceStatus, Store, StoreError, UnixTime};

/// What one advert did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new pending device.
    Created(DeviceId),
    /// A known device was seen again (pending: its details merged).
    Refreshed(DeviceId),
    /// An advert claimed an adopted device's identity from an address it was
    /// not adopted at: flagged for the owner, nothing else changed.
    Flagged(DeviceId),
    /// Dropped: the pending list is full.
    PendingFull,
    /// Dropped: the address it came from holds its whole share of the
    /// pending list already.
    SourceFull,
}

/// A pending device not heard from for this long may make room for a new
/// one when the pending list is full. During a flood every entry is fresh,
/// so nothing churns; after it, the junk ages out and real devices get in.
pub const STALE_PENDING: std::time::Duration = std::time::Duration::from_secs(60);

/// One source address may hold at most this fraction of the pending list
/// (1/4): a flood from one address never fills it, so it never evicts what
/// others announced.
pub const SOURCE_SHARE_DIVISOR: usize = 4;

/// How long counts of pending devices per source address are trusted
/// before they are read from the store again.
const SHARES_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// The most pending devices one source address may hold.
pub fn source_share(max_pending: usize) -> usize {
    (max_pending / SOURCE_SHARE_DIVISOR).max(1)
}

/// Pending devices per source address, read from the store at most once a
/// second and counted up in between, so a flood does not open every
/// pending record for every advert.
#[derive(Default)]
pub struct Shares {
    counts: HashMap<IpAddr, usize>,
    read_at: Option<std::time::Instant>,
}

impl Shares {
    fn of(&mut self, store: &Store, source: IpAddr) -> Result<usize, StoreError> {
        let now = std::time::Instant::now();
        if self
            .read_at
            .is_none_or(|at| now.duration_since(at) > SHARES_FRESH)
        {
            self.counts.clear();
            for d in store.devices()? {
                if d.fields.status == DeviceStatus::Pending
                    && let Some(from) = d.fields.heard_from
                {
                    *self.counts.entry(from).or_default() += 1;
                }
            }
            self.read_at = Some(now);
        }
        Ok(self.counts.get(&source).copied().unwrap_or(0))
    }

    fn added(&mut self, source: Option<IpAddr>) {
        if let Some(s) = source {
            *self.counts.entry(s).or_default() += 1;
        }
    }

    fn removed(&mut self, source: Option<IpAddr>) {
        if let Some(n) = source.and_then(|s| self.counts.get_mut(&s)) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Makes room in a full pending list by forgetting a stale pending device:
/// one from the source address that holds the most, then the one seen least
/// recently. Returns whether there is room now.
fn evict_stale_pending(store: &mut Store, shares: &mut Shares, now: UnixTime) -> Result<bool, StoreError> {
    let stale_before = now.0 - STALE_PENDING.as_millis() as i64;
    let pending: Vec<_> = store
        .devices()?
        .into_iter()
        .filter(|d| d.fields.status == DeviceStatus::Pending)
        .collect();
    let mut held: HashMap<Option<IpAddr>, usize> = HashMap::new();
    for d in &pending {
        *held.entry(d.fields.heard_from).or_default() += 1;
    }
    let victim = pending
        .iter()
        .filter(|d| d.fields.last_seen.map(|t| t.0).unwrap_or(i64::MIN) < stale_before)
        .max_by_key(|d| {
            (
                held[&d.fields.heard_from],
                std::cmp::Reverse(d.fields.last_seen.map(|t| t.0).unwrap_or(i64::MIN)),
            )
        });
    match victim {
        Some(d) => {
            store.forget_device(&d.id)?;
            shares.removed(d.fields.heard_from);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Adds addresses to a list, keeping every one seen (a first resolution may
/// carry only some), bounded.
fn merge(known: &mut Vec<IpAddr>, seen: &[IpAddr]) {
    for a in seen {
        if !known.contains(a) && known.len() < MAX_ADDRESSES {
            known.push(*a);
        }
    }
}

/// The device an advert is about: under its identity, or one of the
/// identities it may have been stored under before.
fn known_as(store: &Store, c: &Classified) -> Result<Option<Device>, StoreError> {
    for identity in std::iter::once(&c.identity).chain(&c.aliases) {
        if let Some(d) = store.device_by_identity(identity)? {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

/// Applies one classified advert to the store.
pub fn record_advert(
    store: &mut Store,
    shares: &mut Shares,
    advert: &Advert,
    c: &Classified,
    max_pending: usize,
) -> Result<Outcome, StoreError> {
    let now = UnixTime::now();
    match known_as(store, c)? {
        None => {
            if let Some(source) = advert.source
                && shares.of(store, source)? >= source_share(max_pending)
            {
                return Ok(Outcome::SourceFull);
            }
            if store.pending_count()? >= max_pending && !evict_stale_pending(store, shares, now)? {
                return Ok(Outcome::PendingFull);
            }
            let mut f = DeviceFields::new(c.kind, c.profile);
            f.vendor = c.vendor.clone();
            f.model = c.model.clone();
            f.board = c.board.clone();
            f.firmware = c.firmware.clone();
            f.mac = c.mac.clone();
            f.advertised_name = c.advertised_name.clone();
            f.topic = c.topic.clone();
            f.identity = Some(c.identity.clone());
            f.heard_from = advert.source;
            merge(&mut f.addresses, &advert.addresses);
            f.last_seen = Some(now);
            let id = store.insert_device(&f)?.id;
            shares.added(advert.source);
            Ok(Outcome::Created(id))
        }
        Some(device) if device.fields.status == DeviceStatus::Pending => {
            let mut f = device.fields;
            merge(&mut f.addresses, &advert.addresses);
            // A pending device is not trusted: its details follow the latest
            // advert of its most telling service (a Shelly's own service
            // over its web server's), which is all it is.
            if c.rank >= rank_of_stored(&f.profile, f.model.as_deref()) {
                f.kind = c.kind;
                f.profile = c.profile.to_owned();
                f.vendor = c.vendor.clone().or(f.vendor);
                f.model = c.model.clone().or(f.model);
                f.board = c.board.clone().or(f.board);
                f.advertised_name = c.advertised_name.clone().or(f.advertised_name);
                f.firmware = c.firmware.clone().or(f.firmware);
                f.topic = c.topic.clone().or(f.topic);
            }
            f.mac = f.mac.or(c.mac.clone());
            f.last_seen = Some(now);
            store.update_device(&device.id, &f)?;
            Ok(Outcome::Refreshed(device.id))
        }
        Some(device) => {
            let mut f = device.fields;
            // The advert's addresses are the host's current ones (the mDNS
            // cache applies cache-flush and goodbye records), so any one the
            // device was not adopted at means it moved, or someone else
            // claims to be it: either way the owner decides, not the advert.
            let elsewhere = advert.addresses.iter().any(|a| !f.addresses.contains(a));
            if elsewhere {
                if !f.flagged {
                    f.flagged = true;
                    store.update_device(&device.id, &f)?;
                }
                return Ok(Outcome::Flagged(device.id));
            }
            // Seen where it is known to be: only the time changes.
            f.last_seen = Some(now);
            store.update_device(&device.id, &f)?;
            Ok(Outcome::Refreshed(device.id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::classify::{Verdict, classify};
    use crate::store::{DataDir, DeviceKind};

    fn store() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let store = crate::store::open_or_init(&DataDir::new(tmp.path().join("d")), None).unwrap();
        (tmp, store)
    }

    fn bulb(addr: &str) -> Advert {
        Advert {
            service_type: "_hap._tcp".into(),
            instance: "Lamp".into(),
            port: 51827,
            addresses: vec![addr.parse().unwrap()],
            txt: vec![
                ("ci".into(), "5".into()),
                ("id".into(), "1A:2B:3C:4D:5E:6F".into()),
                ("md".into(), "LCA003".into()),
            ],
            host: String::new(),
            source: None,
        }
    }

    fn offered(a: &Advert) -> Classified {
        match classify(a) {
            Some(Verdict::Offer(c)) => *c,
            other => panic!("not offered: {other:?}"),
        }
    }

    fn record_advert(s: &mut Store, a: &Advert, c: &Classified, max: usize) -> Result<Outcome, StoreError> {
        super::record_advert(s, &mut Shares::default(), a, c, max)
    }

    #[test]
    fn adverts_propose_then_refresh_pending_devices() {
        let (_t, mut s) = store();
        let a = bulb("192.168.1.20");
        let c = offered(&a);
        let Outcome::Created(id) = record_advert(&mut s, &a, &c, 10).unwrap() else {
            panic!()
        };
        let d = s.device(&id).unwrap().unwrap();
        assert_eq!(
            (d.fields.status, d.fields.kind),
            (DeviceStatus::Pending, DeviceKind::Bulb)
        );
        assert_eq!(d.fields.model.as_deref(), Some("LCA003"));
        // A second resolution with another address: merged, same device.
        let mut again = bulb("fe80::1");
        again.addresses.push("192.168.1.20".parse().unwrap());
        assert_eq!(
            record_advert(&mut s, &again, &c, 10).unwrap(),
            Outcome::Refreshed(id.clone())
        );
        let d = s.device(&id).unwrap().unwrap();
        assert_eq!(d.fields.addresses.len(), 2);
        assert_eq!(s.devices().unwrap().len(), 1);
    }

    #[test]
    fn an_advert_never_moves_an_adopted_device() {
        let (_t, mut s) = store();
        let a = bulb("192.168.1.20");
        let c = offered(&a);
        let Outcome::Created(id) = record_advert(&mut s, &a, &c, 10).unwrap() else {
            panic!()
        };
        let mut adopted = s.device(&id).unwrap().unwrap().fields;
        adopted.status = DeviceStatus::Adopted;
        adopted.nickname = Some("Desk".into());
        s.update_device(&id, &adopted).unwrap();

        // The same identity from a new address: flagged, not followed.
        let spoof = bulb("192.168.1.99");
        assert_eq!(
            record_advert(&mut s, &spoof, &c, 10).unwrap(),
            Outcome::Flagged(id.clone())
        );
        let d = s.device(&id).unwrap().unwrap();
        assert!(d.fields.flagged);
        assert_eq!(
            d.fields.addresses,
            vec!["192.168.1.20".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(d.fields.status, DeviceStatus::Adopted);
        assert_eq!(d.fields.nickname.as_deref(), Some("Desk"));

        // Seen again where it belongs: refreshed, still adopted, still flagged
        // until the owner looks.
        assert_eq!(
            record_advert(&mut s, &a, &c, 10).unwrap(),
            Outcome::Refreshed(id.clone())
        );
        assert_eq!(
            s.device(&id).unwrap().unwrap().fields.status,
            DeviceStatus::Adopted
        );
    }

    /// The rule for adopted devices, from a table: the addresses the device
    /// was adopted at, the addresses an advert carries now, and whether it
    /// is flagged. A flagged advert changes nothing else: not the
    /// addresses, the status, the name or the last-seen time.
    #[test]
    fn an_adopted_device_is_flagged_by_any_address_it_was_not_adopted_at() {
        let check = |adopted_at: &[&str], advert_from: &[&str], flagged: bool| {
            let (_t, mut s) = store();
            let mut a = bulb(adopted_at[0]);
            a.addresses = adopted_at.iter().map(|x| x.parse().unwrap()).collect();
            let c = offered(&a);
            let Outcome::Created(id) = record_advert(&mut s, &a, &c, 10).unwrap() else {
                panic!()
            };
            let mut f = s.device(&id).unwrap().unwrap().fields;
            f.status = DeviceStatus::Adopted;
            f.nickname = Some("Desk".into());
            f.last_seen = Some(UnixTime(1));
            s.update_device(&id, &f).unwrap();

            let mut advert = bulb(advert_from[0]);
            advert.addresses = advert_from.iter().map(|x| x.parse().unwrap()).collect();
            let outcome = record_advert(&mut s, &advert, &c, 10).unwrap();
            let d = s.device(&id).unwrap().unwrap().fields;
            let case = format!("adopted at {adopted_at:?}, advert from {advert_from:?}");
            assert_eq!(d.addresses, f.addresses, "{case}: the addresses changed");
            assert_eq!(d.status, DeviceStatus::Adopted, "{case}");
            assert_eq!(d.nickname.as_deref(), Some("Desk"), "{case}");
            assert_eq!(d.flagged, flagged, "{case}");
            if flagged {
                assert_eq!(outcome, Outcome::Flagged(id), "{case}");
                assert_eq!(
                    d.last_seen,
                    Some(UnixTime(1)),
                    "{case}: a flagged advert refreshed it"
                );
            } else {
                assert_eq!(outcome, Outcome::Refreshed(id), "{case}");
                assert_ne!(d.last_seen, Some(UnixTime(1)), "{case}: not refreshed");
            }
        };
        let (home, away, link) = ("192.168.1.20", "192.168.1.99", "fe80::20");
        check(&[home], &[home], false);
        check(&[home, link], &[link], false);
        check(&[home, link], &[home, link], false);
        check(&[home], &[away], true);
        // The old address beside a new one (a move whose old record has not
        // gone yet, or a second responder answering beside the real one).
        check(&[home], &[home, away], true);
        check(&[home], &[home, link], true);
        check(&[home, link], &[away, link], true);
    }

    /// Forgetting erases the device; if it keeps advertising it comes back
    /// as a new pending device with no credential, never adopted again.
    #[test]
    fn a_forgotten_device_comes_back_only_as_pending() {
        let (_t, mut s) = store();
        let a = bulb("192.168.1.20");
        let c = offered(&a);
        let Outcome::Created(id) = record_advert(&mut s, &a, &c, 10).unwrap() else {
            panic!()
        };
        let mut f = s.device(&id).unwrap().unwrap().fields;
        f.status = DeviceStatus::Adopted;
        f.nickname = Some("Desk".into());
        s.update_device(&id, &f).unwrap();
        assert!(s.forget_device(&id).unwrap());
        let Outcome::Created(again) = record_advert(&mut s, &a, &c, 10).unwrap() else {
            panic!()
        };
        assert_ne!(again, id);
        let d = s.device(&again).unwrap().unwrap();
        assert_eq!(d.fields.status, DeviceStatus::Pending);
        assert_eq!(d.fields.nickname, None);
        assert!(
            s.find_credential("mqtt_password", &crate::store::secret::TokenHash::of("x"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_pending_list_is_bounded() {
        let (_t, mut s) = store();
        for i in 0..3 {
            let mut a = bulb("192.168.1.20");
            a.txt[1].1 = format!("1A:2B:3C:4D:5E:{i:02X}");
            let c = offered(&a);
            assert!(matches!(
                record_advert(&mut s, &a, &c, 3).unwrap(),
                Outcome::Created(_)
            ));
        }
        let mut a = bulb("192.168.1.20");
        a.txt[1].1 = "1A:2B:3C:4D:5E:FF".into();
        let c = offered(&a);
        assert_eq!(record_advert(&mut s, &a, &c, 3).unwrap(), Outcome::PendingFull);
        assert_eq!(s.pending_count().unwrap(), 3);

        // Once one entry is stale, a new device takes its place.
        let mut stale = s.devices().unwrap().remove(1);
        stale.fields.last_seen = Some(UnixTime(UnixTime::now().0 - 2 * STALE_PENDING.as_millis() as i64));
        s.update_device(&stale.id, &stale.fields).unwrap();
        let Outcome::Created(new) = record_advert(&mut s, &a, &c, 3).unwrap() else {
            panic!("no room made")
        };
        assert_eq!(s.pending_count().unwrap(), 3);
        assert!(
            s.device(&stale.id).unwrap().is_none(),
            "the stale entry was not the one evicted"
        );
        assert!(s.device(&new).unwrap().is_some());
    }

    fn from(source: &str, i: u32) -> Advert {
        let mut a = bulb("192.168.1.20");
        a.txt[1].1 = format!("1A:2B:3C:4D:{:02X}:{:02X}", i / 256, i % 256);
        a.source = Some(source.parse().unwrap());
        a
    }

    /// No source address holds more than its share of the pending list, so
    /// a flood from one never fills it; when the list is full, a stale
    /// entry of the address holding most makes room, not a quiet device.
    #[test]
    fn one_address_holds_at_most_its_share() {
        let (_t, mut s) = store();
        let mut shares = Shares::default();
        let max = 8;
        assert_eq!(source_share(max), 2);
        let mut record = |s: &mut Store, a: &Advert| {
            let c = offered(a);
            super::record_advert(s, &mut shares, a, &c, max).unwrap()
        };
        let (flood, camera) = ("192.168.1.66", "192.168.1.9");
        let mut created = 0;
        for i in 0..50 {
            match record(&mut s, &from(flood, i)) {
                Outcome::Created(_) => created += 1,
                Outcome::SourceFull => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(created, 2);
        let Outcome::Created(quiet) = record(&mut s, &from(camera, 1000)) else {
            panic!("the quiet device was refused")
        };
        // Fill the list from other addresses.
        for (n, i) in (2000..2005).enumerate() {
            let a = from(&format!("192.168.1.{}", 100 + n), i);
            assert!(matches!(record(&mut s, &a), Outcome::Created(_)));
        }
        assert_eq!(s.pending_count().unwrap(), max);
        // All stale, the quiet device seen longest ago: the flood's address
        // holds the most, so one of its entries goes.
        let old = UnixTime(UnixTime::now().0 - 2 * STALE_PENDING.as_millis() as i64);
        for mut d in s.devices().unwrap() {
            let oldest = UnixTime(old.0 - 1000);
            d.fields.last_seen = Some(if d.id == quiet { oldest } else { old });
            s.update_device(&d.id, &d.fields).unwrap();
        }
        let Outcome::Created(_) = record(&mut s, &from("192.168.1.200", 3000)) else {
            panic!("no room made")
        };
        assert!(
            s.device(&quiet).unwrap().is_some(),
            "the quiet device was evicted"
        );
        let flood_ip: IpAddr = flood.parse().unwrap();
        let from_flood = s
            .devices()
            .unwrap()
            .into_iter()
            .filter(|d| d.fields.heard_from == Some(flood_ip))
            .count();
        assert_eq!(from_flood, 1, "the evicted entry was not the flood's");
    }

    /// A device's services may each classify it; a pending device keeps
    /// what its most telling service said (a Shelly's own service over its
    /// web server), whatever order they come in.
    #[test]
    fn the_most_telling_service_decides() {
        let (_t, mut s) = store();
        let mut own = bulb("192.168.1.30");
        own.service_type = "_shelly._tcp".into();
        own.instance = "shellyplusrgbwpm-a8032ab12345".into();
        own.host = "shellyplusrgbwpm-a8032ab12345".into();
        own.txt = vec![("gen".into(), "2".into()), ("app".into(), "PlusRGBWPM".into())];
        let mut web = own.clone();
        web.service_type = "_hap._tcp".into();
        web.txt = vec![("ci".into(), "8".into())];
        for order in [[&own, &web], [&web, &own]] {
            for d in s.devices().unwrap() {
                s.forget_device(&d.id).unwrap();
            }
            for a in order {
                let c = offered(a);
                record_advert(&mut s, a, &c, 10).unwrap();
            }
            let all = s.devices().unwrap();
            assert_eq!(all.len(), 1, "one device, one entry");
            assert_eq!(
                (all[0].fields.kind, all[0].fields.profile.as_str()),
                (DeviceKind::LightStrip, "shelly")
            );
        }
    }
}
