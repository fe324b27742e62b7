//! What an advert may do to the store: propose a pending device, refresh
//! one, or flag an adopted device whose identity was claimed from elsewhere.
//!
//! An advert can never adopt, re-adopt, or change an adopted device's
//! identity, profile, topic or addresses. Every value it carries is stored
//! sealed, like all other metadata.

use std::net::IpAddr;

use super::classify::{Advert, Classified, MAX_ADDRESSES};
use crate::store::{DeviceFields, DeviceId, DeviceStatus, Store, StoreError, UnixTime};

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
}

/// A pending device not heard from for this long may make room for a new
/// one when the pending list is full. During a flood every entry is fresh,
/// so nothing churns; after it, the junk ages out and real devices get in.
pub const STALE_PENDING: std::time::Duration = std::time::Duration::from_secs(60);

/// Makes room in a full pending list by forgetting the pending device seen
/// least recently, if it is stale. Returns whether there is room now.
fn evict_stale_pending(store: &mut Store, now: UnixTime) -> Result<bool, StoreError> {
    let stale_before = now.0 - STALE_PENDING.as_millis() as i64;
    let oldest = store
        .devices()?
        .into_iter()
        .filter(|d| d.fields.status == DeviceStatus::Pending)
        .min_by_key(|d| d.fields.last_seen.map(|t| t.0).unwrap_or(i64::MIN));
    match oldest {
        Some(d) if d.fields.last_seen.map(|t| t.0).unwrap_or(i64::MIN) < stale_before => {
            store.forget_device(&d.id)?;
            Ok(true)
        }
        _ => Ok(false),
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

/// Applies one classified advert to the store.
pub fn record_advert(
    store: &mut Store,
    advert: &Advert,
    c: &Classified,
    max_pending: usize,
) -> Result<Outcome, StoreError> {
    let now = UnixTime::now();
    match store.device_by_identity(&c.identity)? {
        None => {
            if store.pending_count()? >= max_pending && !evict_stale_pending(store, now)? {
                return Ok(Outcome::PendingFull);
            }
            let mut f = DeviceFields::new(c.kind, c.profile);
            f.vendor = c.vendor.clone();
            f.model = c.model.clone();
            f.firmware = c.firmware.clone();
            f.mac = c.mac.clone();
            f.topic = c.topic.clone();
            f.identity = Some(c.identity.clone());
            merge(&mut f.addresses, &advert.addresses);
            f.last_seen = Some(now);
            Ok(Outcome::Created(store.insert_device(&f)?.id))
        }
        Some(device) if device.fields.status == DeviceStatus::Pending => {
            let mut f = device.fields;
            merge(&mut f.addresses, &advert.addresses);
            // A pending device is not trusted: its details follow the latest
            // advert, which is all it is.
            f.kind = c.kind;
            f.model = c.model.clone().or(f.model);
            f.firmware = c.firmware.clone().or(f.firmware);
            f.topic = c.topic.clone().or(f.topic);
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
    use crate::discovery::classify::classify;
    use crate::store::{DataDir, DeviceKind};

    fn store() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let store = crate::daemon::open_or_init(&DataDir::new(tmp.path().join("d")), None).unwrap();
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
        }
    }

    #[test]
    fn adverts_propose_then_refresh_pending_devices() {
        let (_t, mut s) = store();
        let a = bulb("192.168.1.20");
        let c = classify(&a).unwrap();
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
        let c = classify(&a).unwrap();
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
            let c = classify(&a).unwrap();
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
        let c = classify(&a).unwrap();
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
            s.find_credential("mqtt_password", &crate::secret::TokenHash::of("x"))
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
            let c = classify(&a).unwrap();
            assert!(matches!(
                record_advert(&mut s, &a, &c, 3).unwrap(),
                Outcome::Created(_)
            ));
        }
        let mut a = bulb("192.168.1.20");
        a.txt[1].1 = "1A:2B:3C:4D:5E:FF".into();
        let c = classify(&a).unwrap();
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
}
