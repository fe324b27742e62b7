//! The settings watcher: every change that lowers protection (a plaintext
//! LAN listener or the bridge turned on in the config, the voice relay
//! enabled, a device exposed to an integration, Home Assistant told device
//! details) is audited and kept as a standing warning until the owner
//! acknowledges it. Protection removed, and nobody noticing, is how the
//! leak this project answers went on for weeks.
//!
//! Warnings are one sealed record in `secrets`, at most [`MAX_WARNINGS`]
//! (the oldest acknowledged ones go first). They name what changed with
//! opaque ids only.

use serde::{Deserialize, Serialize};

use crate::store::AuditKind;
use crate::store::{Actor, AuditEvent, Store, StoreError, UnixTime};

const RECORD: &str = "protection_warnings";
/// Warnings kept at most.
pub const MAX_WARNINGS: usize = 100;

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
        push(&mut r, format!("configuration: {w}"))?;
    }
    r.config = now.iter().map(|w| (*w).to_owned()).collect();
    save(store, &r)?;
    for w in &new {
        store.append_audit(&AuditEvent::ok(
            AuditKind::ProtectionLowered,
            Actor::Hearth,
            format!("configuration: {w}"),
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
}
