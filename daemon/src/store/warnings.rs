//! The settings watcher: every change that lowers protection (a plaintext
//! LAN listener or the bridge turned on in the config, the voice relay
//! enabled, a device exposed to an integration, Home Assistant told device
//! details) is audited and kept as a standing warning until the owner
//! acknowledges it. Protection removed, and nobody noticing, is how the
//! leak this project answers went on for weeks.
//!
//! Warnings are one sealed record in `secrets`, at most [`MAX_WARNINGS`]
//! (the oldest acknowledged ones go first). They name what changed with
//! opaque ids only. The words of each kind of warning are written here and
//! read back here ([`Warning::group`], [`Warning::device`]), so the two
//! cannot drift apart; older records, written with the same words, read the
//! same way.

use serde::{Deserialize, Serialize};

use crate::store::AuditKind;
use crate::store::{Actor, AuditEvent, DeviceId, Store, StoreError, UnixTime};

const RECORD: &str = "protection_warnings";
/// Warnings kept at most.
pub const MAX_WARNINGS: usize = 100;

/// Raised when the voice relay is turned on.
pub const RELAY_ENABLED: &str =
    "the voice relay was enabled: assistants you link can reach the devices you grant them";
/// Raised when Home Assistant is connected.
pub const HOMEASSISTANT_CONNECTED: &str = "Home Assistant was connected: it sees the devices exposed to it";
/// Raised when Home Assistant is told device details.
pub const HOMEASSISTANT_DETAILS: &str =
    "Home Assistant is now told each exposed device's model, vendor and firmware";
const CONFIGURATION: &str = "configuration: ";
const DEVICE: &str = "device ";
const EXPOSED_TO: &str = " was exposed to ";
const LOOKED_UP: &str = " started looking up ";

/// What a device was exposed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposure {
    HomeAssistant,
    Voice,
}

impl Exposure {
    fn words(self) -> &'static str {
        match self {
            Exposure::HomeAssistant => "Home Assistant",
            Exposure::Voice => "voice assistants",
        }
    }
}

/// What a warning is about, for grouping them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    ExposedHomeassistant,
    ExposedVoice,
    Relay,
    Homeassistant,
    Configuration,
    /// An adopted device started looking up a known cloud domain.
    DnsCloud,
    Other,
}

impl Group {
    /// A stable machine word.
    pub fn as_str(self) -> &'static str {
        match self {
            Group::ExposedHomeassistant => "exposed_homeassistant",
            Group::ExposedVoice => "exposed_voice",
            Group::Relay => "relay",
            Group::Homeassistant => "homeassistant",
            Group::Configuration => "configuration",
            Group::DnsCloud => "dns_cloud",
            Group::Other => "other",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub id: String,
    /// Unix seconds.
    pub at: u64,
    pub what: String,
    pub acknowledged: bool,
}

#[derive(Default, Serialize, Deserialize)]
struct Record {
    warnings: Vec<Warning>,
    /// The protection-lowering config settings seen at the last start.
    config: Vec<String>,
}

impl Warning {
    /// The device and what it was exposed to, for an exposure warning.
    fn exposure(&self) -> Option<(DeviceId, Exposure)> {
        let (id, to) = self.what.strip_prefix(DEVICE)?.split_once(EXPOSED_TO)?;
        let to = [Exposure::HomeAssistant, Exposure::Voice]
            .into_iter()
            .find(|e| e.words() == to)?;
        Some((DeviceId::parse(id)?, to))
    }

    /// The device and the cloud domain, for a new-cloud-domain warning.
    fn cloud(&self) -> Option<(DeviceId, &str)> {
        let (id, domain) = self.what.strip_prefix(DEVICE)?.split_once(LOOKED_UP)?;
        Some((DeviceId::parse(id)?, domain))
    }

    /// What the warning is about, read from its words.
    pub fn group(&self) -> Group {
        if self.cloud().is_some() {
            return Group::DnsCloud;
        }
        match self.exposure() {
            Some((_, Exposure::HomeAssistant)) => Group::ExposedHomeassistant,
            Some((_, Exposure::Voice)) => Group::ExposedVoice,
            None if self.what.starts_with("the voice relay") => Group::Relay,
            None if self.what.starts_with("Home Assistant") => Group::Homeassistant,
            None if self.what.starts_with(CONFIGURATION) => Group::Configuration,
            None => Group::Other,
        }
    }

    /// The device a warning names, if it names one.
    pub fn device(&self) -> Option<DeviceId> {
        self.exposure()
            .map(|(d, _)| d)
            .or_else(|| self.cloud().map(|(d, _)| d))
    }

    /// The words after the device, for an exposure warning: "was exposed
    /// to Home Assistant".
    pub fn about_device(&self) -> Option<String> {
        self.exposure()
            .map(|(_, to)| format!("{}{}", EXPOSED_TO.trim_start(), to.words()))
            .or_else(|| {
                self.cloud()
                    .map(|(_, domain)| format!("{}{domain}", LOOKED_UP.trim_start()))
            })
    }
}

fn load(store: &Store) -> Result<Record, StoreError> {
    Ok(store
        .secret(RECORD)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

fn save(store: &mut Store, r: &Record) -> Result<(), StoreError> {
    store.put_secret(RECORD, &serde_json::to_vec(r).expect("warnings serialise"))
}

fn push(r: &mut Record, what: String) -> Result<(), StoreError> {
    let mut id = [0u8; 8];
    crate::store::crypto::fill_random(&mut id)?;
    r.warnings.push(Warning {
        id: hex::encode(id),
        at: (UnixTime::now().0 / 1000) as u64,
        what,
        acknowledged: false,
    });
    while r.warnings.len() > MAX_WARNINGS {
        let i = r.warnings.iter().position(|w| w.acknowledged).unwrap_or(0);
        r.warnings.remove(i);
    }
    Ok(())
}

/// Records a change that lowered protection: audited, and a standing
/// warning.
pub fn raise(store: &mut Store, what: &str) -> Result<(), StoreError> {
    let mut r = load(store)?;
    push(&mut r, what.to_owned())?;
    save(store, &r)?;
    store.append_audit(&AuditEvent::ok(AuditKind::ProtectionLowered, Actor::Hearth, what))
}

/// Records that a device was newly exposed to an integration.
pub fn raise_exposed(store: &mut Store, device: &DeviceId, to: Exposure) -> Result<(), StoreError> {
    raise(store, &format!("{DEVICE}{device}{EXPOSED_TO}{}", to.words()))
}

/// Records that an adopted device looked up a known cloud domain for the
/// first time: audited, and a standing warning.
pub fn raise_new_cloud(store: &mut Store, device: &DeviceId, domain: &str) -> Result<(), StoreError> {
    let what = format!("{DEVICE}{device}{LOOKED_UP}{domain}");
    let mut r = load(store)?;
    push(&mut r, what.clone())?;
    save(store, &r)?;
    store.append_audit(&AuditEvent::ok(AuditKind::DnsNewCloud, Actor::Hearth, what))
}

/// Compares the configuration's protection-lowering settings with those of
/// the last start; each new one is raised.
pub fn check_config(store: &mut Store, now: &[&str]) -> Result<usize, StoreError> {
    let mut r = load(store)?;
    let new: Vec<String> = now
        .iter()
        .filter(|w| !r.config.iter().any(|c| c == *w))
        .map(|w| (*w).to_owned())
        .collect();
    for w in &new {
        push(&mut r, format!("{CONFIGURATION}{w}"))?;
    }
    r.config = now.iter().map(|w| (*w).to_owned()).collect();
    save(store, &r)?;
    for w in &new {
        store.append_audit(&AuditEvent::ok(
            AuditKind::ProtectionLowered,
            Actor::Hearth,
            format!("{CONFIGURATION}{w}"),
        ))?;
    }
    Ok(new.len())
}

/// The warnings not yet acknowledged, oldest first.
pub fn standing(store: &Store) -> Result<Vec<Warning>, StoreError> {
    Ok(load(store)?
        .warnings
        .into_iter()
        .filter(|w| !w.acknowledged)
        .collect())
}

/// Acknowledges one warning; whether it was standing.
pub fn acknowledge(store: &mut Store, id: &str, by: Actor) -> Result<bool, StoreError> {
    let mut r = load(store)?;
    let Some(w) = r.warnings.iter_mut().find(|w| w.id == id && !w.acknowledged) else {
        return Ok(false);
    };
    w.acknowledged = true;
    let what = w.what.clone();
    save(store, &r)?;
    store.append_audit(&AuditEvent::ok(AuditKind::WarningAcknowledged, by, what))?;
    Ok(true)
}

/// Acknowledges every standing warning in one write of the record, then
/// audits each as [`acknowledge`] does; how many there were.
pub fn acknowledge_all(store: &mut Store, by: Actor) -> Result<usize, StoreError> {
    let mut r = load(store)?;
    let mut done = Vec::new();
    for w in r.warnings.iter_mut().filter(|w| !w.acknowledged) {
        w.acknowledged = true;
        done.push(w.what.clone());
    }
    if done.is_empty() {
        return Ok(0);
    }
    save(store, &r)?;
    for what in &done {
        store.append_audit(&AuditEvent::ok(
            AuditKind::WarningAcknowledged,
            by.clone(),
            what.as_str(),
        ))?;
    }
    Ok(done.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MasterKey;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (master, _) = MasterKey::generate().unwrap();
        let store = Store::create(&dir.path().join("hearth.db"), &master).unwrap();
        (dir, store)
    }

    #[test]
    fn a_new_cloud_domain_is_a_device_warning_read_back_from_its_words() {
        let (_d, mut s) = store();
        let device = DeviceId::parse(&"c4".repeat(16)).unwrap();
        raise_new_cloud(&mut s, &device, "shelly.cloud").unwrap();
        let w = standing(&s).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].group(), Group::DnsCloud);
        assert_eq!(w[0].device(), Some(device));
        assert_eq!(
            w[0].about_device().as_deref(),
            Some("started looking up shelly.cloud")
        );
        assert!(s.audit(5).unwrap().iter().any(|e| e.event == "dns_new_cloud"));
    }

    #[test]
    fn a_new_config_setting_is_raised_once_and_stands_until_acknowledged() {
        let (_d, mut s) = store();
        assert_eq!(check_config(&mut s, &[]).unwrap(), 0);
        assert!(standing(&s).unwrap().is_empty());
        assert_eq!(check_config(&mut s, &["mqtt.allow_plaintext_lan: x"]).unwrap(), 1);
        assert_eq!(
            check_config(&mut s, &["mqtt.allow_plaintext_lan: x"]).unwrap(),
            0,
            "raised once"
        );
        let w = standing(&s).unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].what.contains("allow_plaintext_lan"));
        assert!(
            s.audit(5)
                .unwrap()
                .iter()
                .any(|e| e.event == "protection_lowered" && e.actor == "hearth")
        );
        assert!(acknowledge(&mut s, &w[0].id, Actor::Cli).unwrap());
        assert!(!acknowledge(&mut s, &w[0].id, Actor::Cli).unwrap(), "once");
        assert!(standing(&s).unwrap().is_empty());
        // Turned off and on again: raised again.
        check_config(&mut s, &[]).unwrap();
        assert_eq!(check_config(&mut s, &["mqtt.allow_plaintext_lan: x"]).unwrap(), 1);
    }

    #[test]
    fn warnings_are_bounded() {
        let (_d, mut s) = store();
        for i in 0..(MAX_WARNINGS + 20) {
            raise(&mut s, &format!("device {i} exposed")).unwrap();
        }
        let w = standing(&s).unwrap();
        assert_eq!(w.len(), MAX_WARNINGS);
        assert!(w.last().unwrap().what.contains(&format!("{}", MAX_WARNINGS + 19)));
    }

    #[test]
    fn acknowledge_all_clears_every_standing_warning_and_audits_each() {
        let (_d, mut s) = store();
        assert_eq!(acknowledge_all(&mut s, Actor::Cli).unwrap(), 0, "none standing");
        raise(&mut s, RELAY_ENABLED).unwrap();
        raise(&mut s, HOMEASSISTANT_CONNECTED).unwrap();
        let first = standing(&s).unwrap()[0].id.clone();
        assert!(acknowledge(&mut s, &first, Actor::Cli).unwrap());
        check_config(&mut s, &["bridge.enabled: x"]).unwrap();
        let before = s.audit(100).unwrap().len();
        assert_eq!(
            acknowledge_all(&mut s, Actor::Cli).unwrap(),
            2,
            "only the standing ones"
        );
        assert!(standing(&s).unwrap().is_empty());
        let audit = s.audit(100).unwrap();
        assert_eq!(audit.len(), before + 2);
        assert!(
            audit[..2]
                .iter()
                .all(|e| e.event == "warning_acknowledged" && e.actor == "cli")
        );
        assert!(audit[..2].iter().any(|e| e.detail.contains("bridge.enabled")));
        assert_eq!(acknowledge_all(&mut s, Actor::Cli).unwrap(), 0, "once");
        assert_eq!(s.audit(100).unwrap().len(), before + 2);
    }

    fn warning(what: &str) -> Warning {
        Warning {
            id: "0".into(),
            at: 0,
            what: what.into(),
            acknowledged: false,
        }
    }

    #[test]
    fn each_kind_of_warning_reads_back_as_its_group() {
        let id = DeviceId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let (_d, mut s) = store();
        raise_exposed(&mut s, &id, Exposure::HomeAssistant).unwrap();
        raise_exposed(&mut s, &id, Exposure::Voice).unwrap();
        raise(&mut s, RELAY_ENABLED).unwrap();
        raise(&mut s, HOMEASSISTANT_CONNECTED).unwrap();
        raise(&mut s, HOMEASSISTANT_DETAILS).unwrap();
        check_config(&mut s, &["mqtt.allow_plaintext_lan: x"]).unwrap();
        raise(&mut s, "something new").unwrap();
        let got: Vec<(Group, Option<DeviceId>, Option<String>)> = standing(&s)
            .unwrap()
            .iter()
            .map(|w| (w.group(), w.device(), w.about_device()))
            .collect();
        let on = |to: &str| Some(format!("was exposed to {to}"));
        assert_eq!(
            got,
            [
                (
                    Group::ExposedHomeassistant,
                    Some(id.clone()),
                    on("Home Assistant")
                ),
                (Group::ExposedVoice, Some(id.clone()), on("voice assistants")),
                (Group::Relay, None, None),
                (Group::Homeassistant, None, None),
                (Group::Homeassistant, None, None),
                (Group::Configuration, None, None),
                (Group::Other, None, None),
            ]
        );
        // Words written before this module wrote them: read the same.
        let old = warning("device 0123456789abcdef0123456789abcdef was exposed to Home Assistant");
        assert_eq!(
            (old.group(), old.device()),
            (Group::ExposedHomeassistant, Some(id))
        );
        for (what, group) in [
            ("device nothex was exposed to Home Assistant", Group::Other),
            (
                "device 0123456789abcdef0123456789abcdef was exposed to a toaster",
                Group::Other,
            ),
            ("configuration: bridge.enabled: x", Group::Configuration),
        ] {
            let w = warning(what);
            assert_eq!((w.group(), w.device()), (group, None), "{what}");
        }
    }
}
