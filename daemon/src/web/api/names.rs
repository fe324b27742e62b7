//! Names for the owner's eyes: a device's nickname in place of its id, "you,
//! in this browser" in place of a session id, in the standing warnings and
//! the audit log the dashboard shows. The raw ids stay beside them, and the
//! audit export stays raw.
//!
//! The names are secrets: this module must never log them, put them in a
//! metric or show them in `Debug` output.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::store::warnings::Warning;
use crate::store::{DeviceKind, Store, StoreError};

/// A device as the owner knows it.
enum DeviceName {
    Nickname(String),
    Unnamed(DeviceKind),
}

/// Every name one request may need, read once.
pub(super) struct Names {
    devices: HashMap<String, DeviceName>,
    /// Relay link id to its client's name.
    links: HashMap<String, String>,
    /// Relay client id to its name.
    clients: HashMap<String, String>,
    /// The public id of the caller's session.
    this_session: String,
}

/// Counts only: the names themselves are secrets.
impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Names")
            .field("devices", &self.devices.len())
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

const GONE: &str = "a device hearth no longer has";
const SOME_ASSISTANT: &str = "a voice assistant";

fn quoted(name: &str) -> String {
    format!("\u{201c}{name}\u{201d}")
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|first| first.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Whether `s` is an id as hearth makes them: 32 lower-case hex digits.
fn is_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Names {
    /// Reads the devices and the relay's clients and links.
    pub(super) fn load(store: &Store, this_session: &str) -> Result<Names, StoreError> {
        let devices = store
            .devices()?
            .into_iter()
            .map(|d| (d.id.as_str().to_owned(), d.fields.nickname, d.fields.kind));
        let clients: Vec<(String, String)> = store
            .relay_clients()?
            .into_iter()
            .map(|c| (c.id.as_str().to_owned(), c.fields.name))
            .collect();
        let links: Vec<(String, String)> = store
            .relay_links()?
            .into_iter()
            .map(|l| (l.id.as_str().to_owned(), l.client_id.as_str().to_owned()))
            .collect();
        Ok(Names::new(devices, clients, links, this_session))
    }

    /// From devices (id, nickname, kind), relay clients (id, name) and
    /// relay links (id, client id).
    fn new(
        devices: impl IntoIterator<Item = (String, Option<String>, DeviceKind)>,
        clients: Vec<(String, String)>,
        links: Vec<(String, String)>,
        this_session: &str,
    ) -> Names {
        let devices = devices
            .into_iter()
            .map(|(id, nickname, kind)| {
                let name = match nickname.filter(|n| !n.trim().is_empty()) {
                    Some(n) => DeviceName::Nickname(n),
                    None => DeviceName::Unnamed(kind),
                };
                (id, name)
            })
            .collect();
        let clients: HashMap<String, String> = clients.into_iter().collect();
        let links = links
            .into_iter()
            .filter_map(|(link, client)| clients.get(&client).map(|name| (link, name.clone())))
            .collect();
        Names {
            devices,
            links,
            clients,
            this_session: this_session.to_owned(),
        }
    }

    /// `“Desk lamp”`, `an unnamed bulb`, or `a device hearth no longer has`.
    fn device(&self, id: &str) -> String {
        match self.devices.get(id) {
            Some(DeviceName::Nickname(n)) => quoted(n),
            Some(DeviceName::Unnamed(kind)) => {
                format!("an unnamed {}", kind.as_str().replace('_', " "))
            }
            None => GONE.to_owned(),
        }
    }

    /// Who an audit entry's actor is, in the owner's words.
    pub(super) fn actor(&self, actor: &str) -> String {
        let (what, id) = actor.split_once(' ').unwrap_or((actor, ""));
        match (what, id) {
            ("session", id) if id == self.this_session => "you, in this browser".to_owned(),
            ("session", _) => "you, in another browser".to_owned(),
            ("cli", "") => "you, with the hearth command".to_owned(),
            ("visitor", "") => "someone not signed in".to_owned(),
            ("hearth", "") => "hearth".to_owned(),
            ("principal", "homeassistant") => "Home Assistant".to_owned(),
            ("principal", id) => self.device(id.strip_prefix("device:").unwrap_or(id)),
            ("link", id) => self
                .links
                .get(id)
                .map_or_else(|| SOME_ASSISTANT.to_owned(), |n| quoted(n)),
            _ => actor.to_owned(),
        }
    }

    /// An audit entry's detail with each id put in words: a device by its
    /// name, a session, relay link or client by whose it is. Any other id
    /// is cut to its first eight digits: the whole is in the raw detail.
    pub(super) fn detail(&self, detail: &str) -> String {
        let mut out = String::with_capacity(detail.len());
        let mut rest = detail;
        while let Some((start, id)) = next_id(rest) {
            let before = &rest[..start];
            let (lead, word) = last_word(before);
            let named = match word {
                "device" | "device:" => Some(self.device(id)),
                "session" if id == self.this_session => Some("this browser's session".to_owned()),
                "session" => Some("another browser's session".to_owned()),
                "link" => Some(self.links.get(id).map_or_else(
                    || "a voice assistant's link".to_owned(),
                    |n| format!("the link of {}", quoted(n)),
                )),
                "client" => Some(self.clients.get(id).map_or_else(
                    || "a voice assistant client".to_owned(),
                    |n| format!("voice assistant client {}", quoted(n)),
                )),
                _ => None,
            };
            match named {
                Some(n) => {
                    out.push_str(lead);
                    out.push_str(&n);
                }
                None if self.devices.contains_key(id) => {
                    out.push_str(before);
                    out.push_str(&self.device(id));
                }
                None => {
                    out.push_str(before);
                    out.push_str(&id[..8]);
                    out.push('\u{2026}');
                }
            }
            rest = &rest[start + id.len()..];
        }
        out.push_str(rest);
        out
    }

    /// A standing warning with its group, and its words with the device it
    /// names put by name.
    pub(super) fn warning(&self, w: &Warning) -> Value {
        let device = w.device();
        let text = match (&device, w.about_device()) {
            (Some(d), Some(about)) => format!("{} {about}", capitalised(&self.device(d.as_str()))),
            _ => capitalised(&w.what),
        };
        let mut v = json!({
            "id": w.id,
            "at": w.at,
            "what": w.what,
            "acknowledged": w.acknowledged,
            "group": w.group().as_str(),
            "text": text,
        });
        if let Some(d) = device {
            v["device_id"] = json!(d.as_str());
        }
        v
    }
}

/// `before` split at the word an id follows: "device " in "link 3 for
/// device ", "device:" in "principal device:".
fn last_word(before: &str) -> (&str, &str) {
    let trimmed = before.strip_suffix(' ').unwrap_or(before);
    let start = trimmed.rfind(' ').map_or(0, |i| i + 1);
    (&before[..start], &trimmed[start..])
}

/// The first id in `s` standing as a word of its own: where it starts, and
/// the id.
fn next_id(s: &str) -> Option<(usize, &str)> {
    let b = s.as_bytes();
    let hex = |c: u8| matches!(c, b'0'..=b'9' | b'a'..=b'f');
    let word = |c: u8| c.is_ascii_alphanumeric();
    let mut i = 0;
    while i < b.len() {
        if hex(b[i]) && (i == 0 || !word(b[i - 1])) {
            let end = (i..b.len()).find(|&j| !hex(b[j])).unwrap_or(b.len());
            if is_id(&s[i..end]) && (end == b.len() || !word(b[end])) {
                return Some((i, &s[i..end]));
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAMP: &str = "0123456789abcdef0123456789abcdef";
    const BULB: &str = "11111111111111111111111111111111";
    const GONE_ID: &str = "22222222222222222222222222222222";
    const MINE: &str = "33333333333333333333333333333333";
    const OTHER: &str = "44444444444444444444444444444444";
    const LINK: &str = "55555555555555555555555555555555";
    const CLIENT: &str = "66666666666666666666666666666666";

    fn names() -> Names {
        Names::new(
            [
                (LAMP.to_owned(), Some("Desk lamp".to_owned()), DeviceKind::Bulb),
                (BULB.to_owned(), None, DeviceKind::LightStrip),
            ],
            vec![(CLIENT.to_owned(), "Kitchen speaker".to_owned())],
            vec![(LINK.to_owned(), CLIENT.to_owned())],
            MINE,
        )
    }

    #[test]
    fn actors_are_named_for_the_owner() {
        let n = names();
        let check = |actor: String, expect: &str| assert_eq!(n.actor(&actor), expect, "{actor}");
        check(format!("session {MINE}"), "you, in this browser");
        check(format!("session {OTHER}"), "you, in another browser");
        check("cli".into(), "you, with the hearth command");
        check("visitor".into(), "someone not signed in");
        check("hearth".into(), "hearth");
        check("principal homeassistant".into(), "Home Assistant");
        check(format!("principal {LAMP}"), "\u{201c}Desk lamp\u{201d}");
        check(format!("principal device:{LAMP}"), "\u{201c}Desk lamp\u{201d}");
        check(format!("principal {BULB}"), "an unnamed light strip");
        check(format!("principal {GONE_ID}"), GONE);
        check(format!("link {LINK}"), "\u{201c}Kitchen speaker\u{201d}");
        check(format!("link {OTHER}"), "a voice assistant");
        check("someone new".into(), "someone new");
    }

    #[test]
    fn details_put_every_id_in_words() {
        let n = names();
        let check = |detail: String, expect: &str| assert_eq!(n.detail(&detail), expect, "{detail}");
        check(
            format!("device {LAMP}: exposed to Home Assistant"),
            "\u{201c}Desk lamp\u{201d}: exposed to Home Assistant",
        );
        check(format!("device {BULB}"), "an unnamed light strip");
        check(
            format!("device {GONE_ID}: credential revoked, record erased"),
            "a device hearth no longer has: credential revoked, record erased",
        );
        check(format!("session {MINE}"), "this browser's session");
        check(format!("session {OTHER}"), "another browser's session");
        check(
            format!("link {LINK}: 3 call(s)"),
            "the link of \u{201c}Kitchen speaker\u{201d}: 3 call(s)",
        );
        check(
            format!("link {OTHER} for client {CLIENT}, 2 device(s)"),
            "a voice assistant's link for voice assistant client \u{201c}Kitchen speaker\u{201d}, 2 device(s)",
        );
        check(format!("client {GONE_ID}"), "a voice assistant client");
        check(
            format!("{LAMP} and {OTHER} alone"),
            "\u{201c}Desk lamp\u{201d} and 44444444\u{2026} alone",
        );
        // Not ids: too short, too long, upper case, inside a word.
        for same in [
            "from 192.0.2.7".to_owned(),
            format!("{LAMP}0"),
            LAMP.to_uppercase(),
            format!("x{LAMP}"),
            String::new(),
        ] {
            check(same.clone(), &same);
        }
        for d in [
            format!("device {LAMP}"),
            format!("session {OTHER}"),
            format!("a {GONE_ID}"),
        ] {
            assert!(next_id(&n.detail(&d)).is_none(), "{d}");
        }
    }

    #[test]
    fn warnings_name_their_device() {
        let n = names();
        let w = |what: String| Warning {
            id: "1".into(),
            at: 5,
            what,
            acknowledged: false,
        };
        let v = n.warning(&w(format!("device {LAMP} was exposed to Home Assistant")));
        assert_eq!(v["group"], "exposed_homeassistant");
        assert_eq!(
            v["text"],
            "\u{201c}Desk lamp\u{201d} was exposed to Home Assistant"
        );
        assert_eq!(v["device_id"], LAMP);
        assert_eq!(v["at"], 5);
        let v = n.warning(&w(format!("device {BULB} was exposed to voice assistants")));
        assert_eq!(
            (v["group"].as_str(), v["text"].as_str()),
            (
                Some("exposed_voice"),
                Some("An unnamed light strip was exposed to voice assistants")
            )
        );
        let v = n.warning(&w(format!("device {GONE_ID} was exposed to voice assistants")));
        assert_eq!(
            v["text"],
            "A device hearth no longer has was exposed to voice assistants"
        );
        let v = n.warning(&w(crate::store::warnings::RELAY_ENABLED.to_owned()));
        assert_eq!(v["group"], "relay");
        assert!(
            v["text"]
                .as_str()
                .unwrap()
                .starts_with("The voice relay was enabled")
        );
        assert!(v.get("device_id").is_none());
    }

    #[test]
    fn debug_shows_no_name() {
        let d = format!("{:?}", names());
        assert!(!d.contains("Desk lamp") && !d.contains("Kitchen"), "{d}");
    }
}
