//! The privacy report (ETSI EN 303 645 5.8 and 5.11): every category of
//! data hearth holds, with its count, where it is, and in what form; how
//! long each is kept; and what leaves the house. `hearth privacy report`
//! adds the listeners that are open; the dashboard's Privacy page shows the
//! rest.

use serde::Serialize;
use serde_json::{Value, json};

use crate::store::{Store, StoreError};

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
        },
    });
    if let Some(l) = listeners {
        v["listeners"] = l;
    }
    Ok(v)
}
