//! The privacy report (ETSI EN 303 645 5.8 and 5.11): every category of
//! data hearth holds, with its count, where it is, and in what form; how
//! long each is kept; and what leaves the house. `hearth privacy report`
//! adds the listeners that are open; the dashboard's Privacy page shows the
//! rest. Both add the Matter section ([`matter`]): the controllers, the
//! devices they see, and that none of it leaves the LAN through hearth.

use serde::Serialize;
use serde_json::{Value, json};

use super::count;
use crate::home::devices::{DeviceError, Devices};
use crate::matter::{Matter, MatterError};
use crate::store::{Store, StoreError, UnixTime};

#[derive(Serialize)]
pub struct Held {
    pub what: &'static str,
    pub count: u64,
    /// Where on disk.
    pub r#where: &'static str,
    pub form: &'static str,
}

/// Every category of data held, counted.
pub fn held(store: &Store) -> Result<Vec<Held>, StoreError> {
    let n = store.inventory()?;
    const DB: &str = "hearth.db (SQLite) in the data directory";
    Ok(vec![
        Held {
            what: "Adopted devices: kind, vendor scheme, nickname, room, voice name, vendor, model, firmware, MAC and IP addresses, SSID, stream URL, last-seen time",
            count: n.adopted,
            r#where: DB,
            form: "sealed (ChaCha20-Poly1305), one envelope per device",
        },
        Held {
            what: "Discovered devices waiting for you (what they advertised)",
            count: n.pending,
            r#where: DB,
            form: "sealed",
        },
        Held {
            what: "Device MQTT passwords (and Home Assistant's)",
            count: n.mqtt_passwords,
            r#where: DB,
            form: "SHA-256 hashes of 128-bit random secrets only",
        },
        Held {
            what: "Owner accounts: e-mail or username, password",
            count: n.owners,
            r#where: DB,
            form: "sealed; the password as an argon2id hash, then sealed",
        },
        Held {
            what: "Dashboard sessions",
            count: n.sessions,
            r#where: DB,
            form: "SHA-256 hashes of 128-bit tokens only",
        },
        Held {
            what: "Two-factor recovery codes",
            count: n.recovery_codes,
            r#where: DB,
            form: "hashes only",
        },
        Held {
            what: "Voice assistants registered (labels, redirect URIs)",
            count: n.relay_clients,
            r#where: DB,
            form: "sealed; client secrets as SHA-256 hashes only",
        },
        Held {
            what: "Voice assistant links (devices and actions granted, call counts)",
            count: n.relay_links,
            r#where: DB,
            form: "sealed; device ids as opaque pairs",
        },
        Held {
            what: "Voice assistant access and refresh tokens",
            count: n.relay_tokens,
            r#where: DB,
            form: "SHA-256 hashes of 256-bit tokens only",
        },
        Held {
            what: "Audit events",
            count: n.audit,
            r#where: DB,
            form: "sealed, and chained with a keyed hash",
        },
        Held {
            what: "hearth's own secrets: the local CA's key, the two-factor secret, settings, warnings",
            count: n.secrets,
            r#where: DB,
            form: "sealed",
        },
        Held {
            what: "Matter controllers (fabrics): each one's keys, certificates, access list and label, and when it joined; with the bridge's setup code and its device-to-endpoint map",
            count: crate::matter::kv::fabric_records(store)? as u64,
            r#where: DB,
            form: "sealed, one record per controller",
        },
        Held {
            what: "What each adopted device looked up through hearth's DNS resolver (each name with its count, how many were blocked, first and last seen), and its DNS policy",
            count: n.dns_devices,
            r#where: DB,
            form: "sealed, one record per device; other clients' queries are only counted, in memory",
        },
        Held {
            what: "The master key",
            count: 1,
            r#where: "master.key in the data directory (0600), a configured key file, or a systemd credential",
            form: "256 random bits; never in the database",
        },
        Held {
            what: "The local CA certificate and the server certificate and key",
            count: 3,
            r#where: "ca.pem and tls/ in the data directory (the key 0600)",
            form: "public certificates; the server key in a private file, the CA key sealed in the database",
        },
    ])
}

/// How long each kind of data is kept.
pub fn retention(session_idle_mins: u64, session_max_hours: u64) -> Vec<String> {
    vec![
        format!(
            "Audit events: the newest {}; older ones are deleted as new ones arrive.",
            crate::store::AUDIT_KEPT
        ),
        format!(
            "Dashboard sessions: end after {session_idle_mins} idle minutes, and after {session_max_hours} hours in any case."
        ),
        "Voice assistant access tokens: 1 hour. Refresh tokens: a year unless used; each use replaces it, and the replaced one is remembered 30 days to catch its reuse.".into(),
        "Authorization codes and consent pages: 60 s and 5 minutes, in memory only.".into(),
        "Live state (power, brightness, last motion and doorbell press): in memory only, never written to disk, gone at restart.".into(),
        "Last-seen times: only the latest, in the sealed device record.".into(),
        "A device's data: until you forget it, which deletes it and its credentials at once.".into(),
        "DNS: each device keeps at most dns.names_per_device names (500 by default), each for dns.history_days (30) after it was last looked up; other clients' queries are counted in memory, never recorded.".into(),
        "A Matter controller: until you remove it, or a lockdown removes them all; turning the bridge off keeps them, sealed.".into(),
        "Everything: until you run hearth erase, which destroys the keys first.".into(),
    ]
}

/// The whole report, with `listeners` when the caller knows them.
pub fn report(
    store: &Store,
    session_idle_mins: u64,
    session_max_hours: u64,
    listeners: Option<Value>,
) -> Result<Value, StoreError> {
    let links: Vec<Value> = store
        .relay_links()?
        .into_iter()
        .map(|l| json!({ "id": l.id, "devices": l.devices.len(), "calls": l.calls }))
        .collect();
    let mut v = json!({
        "held": held(store)?,
        "retention": retention(session_idle_mins, session_max_hours),
        "leaves_home": {
            "by_default": "Nothing: hearth needs no cloud account and makes no outbound connection.",
            "voice_links": links,
            "home_assistant": "Only if connected, on your LAN: the nickname, room, kind and live state of the devices you exposed (model, vendor and firmware only if you share device details).",
            "dns": DNS_FORWARDS,
        },
    });
    if let Some(l) = listeners {
        v["listeners"] = l;
    }
    Ok(v)
}

/// What the report says of the DNS resolver's queries.
pub const DNS_FORWARDS: &str = "Only if the DNS resolver is on: each name the LAN looks up and hearth has not cached or blocked goes to your upstream resolvers (those in dns.upstream, or your router's from /etc/resolv.conf), as it would without hearth. hearth adds nothing to the query and picks no resolver of its own.";

/// The privacy report's DNS section: counts only, never a name.
pub fn dns(dns: Option<&crate::dns::Dns>) -> Value {
    let Some(dns) = dns else {
        return json!({ "enabled": false, "what": "The DNS resolver is off: hearth sees no lookups." });
    };
    let s = dns.status();
    let devices = dns.devices();
    let blocking = devices.iter().filter(|d| d.policy != "observe").count();
    let clouds = devices.iter().filter(|d| !d.clouds.is_empty()).count();
    json!({
        "enabled": true,
        "queries_from_devices": s.counts.from_devices,
        "queries_from_others": s.counts.from_others,
        "blocked": s.counts.blocked,
        "devices_watched": s.devices_watched,
        "devices_blocking": blocking,
        "devices_reaching_clouds": clouds,
        "what": format!(
            "The DNS resolver is on: {} watched, {} looked up a known cloud domain, {} with a policy that blocks. Other clients' lookups are counted, never recorded.",
            count(s.devices_watched, "device"),
            count(clouds, "device"),
            count(blocking, "device"),
        ),
        "leaves_home": DNS_FORWARDS,
    })
}

/// What the report says of Matter traffic, whatever the bridge's state.
pub const MATTER_STAYS_ON_THE_LAN: &str = "Matter stays on your LAN: hearth answers the controllers you paired directly, over UDP, with no cloud and no account link, and never calls out. What a controller's own vendor (Apple, Google, Amazon or another) does with what its controller learns is that vendor's business, outside hearth's control.";

/// A controller, as the report shows it to the owner. The label is the
/// controller's own choice; it is shown, never logged.
#[derive(Serialize)]
pub struct Controller {
    pub label: String,
    pub vendor: String,
    /// When hearth first saw it, if it knows.
    pub added: Option<UnixTime>,
}

/// The privacy report's Matter section.
#[derive(Serialize)]
pub struct MatterSection {
    /// Whether the bridge is on (`[matter] enabled`), running or stopped.
    pub enabled: bool,
    /// The controllers paired, while the bridge runs.
    pub controllers: Vec<Controller>,
    /// Controllers paired earlier and kept, sealed, while the bridge is
    /// off or stopped (counted from the store).
    pub kept: usize,
    /// The devices the controllers see, by the voice names they see.
    pub devices: Vec<String>,
    /// In a sentence.
    pub what: String,
    pub leaves_home: &'static str,
}

/// The Matter section: `matter` is the bridge when it runs.
pub async fn matter(matter: Option<&Matter>, devices: &Devices) -> Result<MatterSection, DeviceError> {
    let kept = || async {
        devices
            .with_store(|s| Ok(crate::matter::kv::fabric_records(s)?))
            .await
    };
    let Some(m) = matter else {
        return Ok(matter_section(Bridge::Off, Vec::new(), kept().await?, Vec::new()));
    };
    let fabrics = match m.fabrics().await {
        Ok(f) => f,
        // Configured on, but its thread has stopped (the log says why):
        // no controller reaches hearth now, and the store says how many
        // are kept.
        Err(MatterError::Stopped) => {
            return Ok(matter_section(
                Bridge::Stopped,
                Vec::new(),
                kept().await?,
                Vec::new(),
            ));
        }
        Err(MatterError::Store(s)) => return Err(DeviceError::Store(s)),
        Err(e) => return Err(DeviceError::Internal(e.to_string())),
    };
    let controllers = fabrics
        .into_iter()
        .map(|f| Controller {
            vendor: f
                .vendor
                .unwrap_or_else(|| format!("vendor id 0x{:04X}", f.vendor_id)),
            label: f.label,
            added: f.added,
        })
        .collect();
    let mut names: Vec<String> = crate::matter::bridge::select(&devices.list().await?)
        .into_iter()
        .map(|b| b.label)
        .collect();
    names.sort();
    Ok(matter_section(Bridge::On, controllers, 0, names))
}

/// The bridge's state, as the report tells it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Bridge {
    Off,
    /// Configured on, but its thread has stopped (the log says why).
    Stopped,
    On,
}

/// The section, its sentence made from what it holds.
fn matter_section(
    bridge: Bridge,
    controllers: Vec<Controller>,
    kept: usize,
    devices: Vec<String>,
) -> MatterSection {
    let shown = match devices.len() {
        0 => "no device (only lights and plugs exposed to voice, with a voice name, are shown)".to_owned(),
        n => format!(
            "{} by {} voice {} ({}), with on/off, brightness for lights, and whether each is reachable",
            count(n, "device"),
            if n == 1 { "its" } else { "their" },
            if n == 1 { "name" } else { "names" },
            devices.join(", ")
        ),
    };
    let what = match (bridge, controllers.len()) {
        (Bridge::Off, _) if kept == 0 => {
            "Off: no Matter controller is told anything, and hearth does not listen on Matter's port."
                .to_owned()
        }
        (Bridge::Stopped, _) => format!(
            "On, but the bridge has stopped (hearth's log says why): no Matter controller is told anything now. {} paired earlier {} kept, sealed; a lockdown removes them.",
            count(kept, "controller"),
            if kept == 1 { "is" } else { "are" }
        ),
        (Bridge::Off, _) => format!(
            "Off: no Matter controller is told anything. {} paired earlier {} kept, sealed, and would reach hearth again if you turned the bridge on; a lockdown removes them.",
            count(kept, "controller"),
            if kept == 1 { "is" } else { "are" }
        ),
        (Bridge::On, 0) => format!(
            "On, with no controller paired: nothing is told until you pair one (`hearth matter pair`), and then it sees {shown}."
        ),
        (Bridge::On, n) => format!(
            "On, on your LAN: {} {} {shown}; and hearth's name and version. Never a nickname, room, model, firmware, address or camera.",
            count(n, "controller"),
            if n == 1 { "sees" } else { "see" }
        ),
    };
    MatterSection {
        enabled: bridge != Bridge::Off,
        controllers,
        kept,
        devices,
        what,
        leaves_home: MATTER_STAYS_ON_THE_LAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller(label: &str) -> Controller {
        Controller {
            label: label.into(),
            vendor: "Apple".into(),
            added: None,
        }
    }

    /// What the section says, in each state the bridge can be in.
    #[test]
    fn the_matter_section_says_what_each_state_tells() {
        let names = || vec!["desk lamp".to_owned(), "kettle".to_owned()];
        type Case = (
            Bridge,
            Vec<Controller>,
            usize,
            Vec<String>,
            &'static [&'static str],
            &'static [&'static str],
        );
        let cases: Vec<Case> = vec![
            (
                Bridge::Stopped,
                vec![],
                0,
                vec![],
                &[
                    "On, but the bridge has stopped",
                    "0 controllers paired earlier are kept",
                ],
                &["Off"],
            ),
            (
                Bridge::Stopped,
                vec![],
                1,
                vec![],
                &["stopped", "1 controller paired earlier is kept"],
                &["turned the bridge on"],
            ),
            (
                Bridge::Off,
                vec![],
                0,
                vec![],
                &["Off", "does not listen"],
                &["kept", "lockdown"],
            ),
            (
                Bridge::Off,
                vec![],
                1,
                vec![],
                &[
                    "Off",
                    "1 controller paired earlier is kept",
                    "a lockdown removes them",
                ],
                &[],
            ),
            (
                Bridge::Off,
                vec![],
                3,
                vec![],
                &["3 controllers paired earlier are kept"],
                &[],
            ),
            (
                Bridge::On,
                vec![],
                0,
                vec![],
                &[
                    "On, with no controller paired",
                    "no device (only lights and plugs",
                ],
                &["Off"],
            ),
            (
                Bridge::On,
                vec![],
                0,
                names(),
                &[
                    "no controller paired",
                    "2 devices by their voice names (desk lamp, kettle)",
                ],
                &[],
            ),
            (
                Bridge::On,
                vec![controller("Flat 3")],
                0,
                vec!["hall".into()],
                &[
                    "1 controller sees 1 device by its voice name (hall)",
                    "Never a nickname",
                ],
                &["Flat 3"],
            ),
            (
                Bridge::On,
                vec![controller("a"), controller("b")],
                0,
                names(),
                &["2 controllers see 2 devices"],
                &[],
            ),
        ];
        for (bridge, controllers, kept, devices, has, lacks) in cases {
            let s = matter_section(bridge, controllers, kept, devices);
            assert_eq!(s.enabled, bridge != Bridge::Off);
            for want in has {
                assert!(s.what.contains(want), "{want:?} not in {:?}", s.what);
            }
            for not in lacks {
                assert!(!s.what.contains(not), "{not:?} in {:?}", s.what);
            }
            assert!(!s.what.contains("(s)"), "{}", s.what);
            assert_eq!(s.leaves_home, MATTER_STAYS_ON_THE_LAN);
        }
        assert!(MATTER_STAYS_ON_THE_LAN.contains("no cloud and no account link"));
        assert!(MATTER_STAYS_ON_THE_LAN.contains("outside hearth's control"));
    }
}
