//! What an mDNS advert says a device is: a pure function from an advert to a
//! kind, a vendor profile, and whatever model, firmware and identity the TXT
//! record offers.
//!
//! An advert is a claim, never proof. Nothing here trusts it: classification
//! only decides how a *pending* device is shown to the owner, and an advert
//! that is too large or malformed is dropped before it gets here.

use std::net::IpAddr;

use crate::broker::acl::{self, Profile};
use crate::store::DeviceKind;

/// Bounds on what one advert may carry; anything larger is dropped whole.
pub const MAX_TXT_ENTRIES: usize = 32;
pub const MAX_TXT_VALUE: usize = 255;
pub const MAX_TXT_TOTAL: usize = 1300;
pub const MAX_INSTANCE: usize = 63;
pub const MAX_ADDRESSES: usize = 16;

/// The service types hearth browses by default.
pub const DEFAULT_SERVICE_TYPES: &[&str] = &[
    "_hap._tcp",
    "_hap._udp",
    "_hue._tcp",
    "_shelly._tcp",
    "_http._tcp",
    "_esphomelib._tcp",
    "_wled._tcp",
    "_rtsp._tcp",
    "_axis-video._tcp",
    "_googlecast._tcp",
    "_mqtt._tcp",
];

/// One resolved advert, reduced to what hearth reads. Its `Debug` shows
/// only the service type: the rest describes a home.
#[derive(Clone, PartialEq, Eq)]
pub struct Advert {
    /// `_hap._tcp` and so on, without `.local.`.
    pub service_type: String,
    /// The instance name, e.g. `shellyplus1-a8032ab12345`.
    pub instance: String,
    pub port: u16,
    pub addresses: Vec<IpAddr>,
    pub txt: Vec<(String, String)>,
}

impl std::fmt::Debug for Advert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advert")
            .field("service_type", &self.service_type)
            .finish_non_exhaustive()
    }
}

impl Advert {
    pub fn txt(&self, key: &str) -> Option<&str> {
        self.txt
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Whether the advert is within bounds. Oversized adverts are dropped,
    /// not truncated: a truncated claim is still a claim.
    pub fn within_bounds(&self) -> bool {
        let total: usize = self.txt.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        self.txt.len() <= MAX_TXT_ENTRIES
            && self
                .txt
                .iter()
                .all(|(k, v)| k.len() <= MAX_TXT_VALUE && v.len() <= MAX_TXT_VALUE)
            && total <= MAX_TXT_TOTAL
            && !self.instance.is_empty()
            && self.instance.len() <= MAX_INSTANCE
            && self.addresses.len() <= MAX_ADDRESSES
            && self.service_type.len() <= 32
    }
}

/// What hearth makes of an advert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    pub kind: DeviceKind,
    /// The vendor profile name stored with the device: an MQTT scheme
    /// (`tasmota`, `shelly`, `esphome`, `generic`) or the ecosystem it was
    /// found in (`homekit`, `hue`, `wled`, `rtsp`, ...).
    pub profile: &'static str,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub mac: Option<String>,
    /// A stable identity for deduplication: the MAC or device id the advert
    /// gives, else the service type and instance name.
    pub identity: String,
    /// The MQTT topic base it would use when adopted, if its scheme has one.
    pub topic: Option<String>,
}

impl Classified {
    /// The MQTT scheme an adopted device of this profile speaks.
    pub fn mqtt_profile(&self) -> Profile {
        Profile::parse(self.profile).unwrap_or(Profile::Generic)
    }
}

/// A MAC address in `aa:bb:cc:dd:ee:ff` form, from the forms adverts use
/// (`AA:BB:..`, `aabbcc..`, `AA-BB-..`).
pub fn normalise_mac(raw: &str) -> Option<String> {
    let hex: String = raw.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let sep_ok = raw.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '-');
    if hex.len() != 12 || !sep_ok {
        return None;
    }
    let lower = hex.to_ascii_lowercase();
    Some(
        (0..6)
            .map(|i| &lower[i * 2..i * 2 + 2])
            .collect::<Vec<_>>()
            .join(":"),
    )
}

fn topic_base(instance: &str) -> Option<String> {
    let base = instance.to_ascii_lowercase();
    acl::valid_base(&base).then_some(base)
}

fn hap_kind(category: Option<&str>) -> DeviceKind {
    match category.and_then(|c| c.parse::<u32>().ok()) {
        Some(5) => DeviceKind::Bulb,
        Some(17) => DeviceKind::Camera,
        Some(18) => DeviceKind::Doorbell,
        Some(7) | Some(8) => DeviceKind::Plug,
        _ => DeviceKind::Other,
    }
}

fn shelly_kind(model: Option<&str>, instance: &str) -> DeviceKind {
    let m = format!("{} {}", model.unwrap_or(""), instance).to_ascii_lowercase();
    if m.contains("bulb")
        || m.contains("duo")
        || m.contains("vintage")
        || m.contains("rgbw")
        || m.contains("dimmer")
    {
        DeviceKind::Bulb
    } else if m.contains("strip") {
        DeviceKind::LightStrip
    } else {
        DeviceKind::Plug
    }
}

/// Classifies an advert, or `None` for a service hearth does not adopt.
pub fn classify(a: &Advert) -> Option<Classified> {
    let instance = a.instance.as_str();
    let lower = instance.to_ascii_lowercase();
    let owned = |s: Option<&str>| s.map(str::to_owned);
    let mac = ["mac", "macaddress", "id", "deviceid"]
        .iter()
        .find_map(|k| a.txt(k).and_then(normalise_mac));
    let mut c = Classified {
        kind: DeviceKind::Other,
        profile: "generic",
        vendor: None,
        model: None,
        firmware: None,
        mac: mac.clone(),
        identity: String::new(),
        topic: None,
    };
    match a.service_type.as_str() {
        "_hap._tcp" | "_hap._udp" => {
            c.kind = hap_kind(a.txt("ci"));
            c.profile = "homekit";
            c.model = owned(a.txt("md"));
            c.firmware = owned(a.txt("fv"));
        }
        "_hue._tcp" => {
            c.profile = "hue";
            c.vendor = Some("Philips Hue".into());
            c.model = owned(a.txt("modelid"));
        }
        "_shelly._tcp" => {
            c.profile = if a.txt("gen").and_then(|g| g.parse::<u32>().ok()).unwrap_or(1) >= 2 {
                "shelly"
            } else {
                "generic"
            };
            c.vendor = Some("Shelly".into());
            c.model = owned(a.txt("app"));
            c.firmware = owned(a.txt("ver"));
            c.kind = shelly_kind(a.txt("app"), instance);
            c.topic = topic_base(instance);
        }
        "_http._tcp" if lower.starts_with("shelly") => {
            c.vendor = Some("Shelly".into());
            c.kind = shelly_kind(None, instance);
            c.profile = "generic";
        }
        "_http._tcp" if lower.starts_with("tasmota") => {
            c.vendor = Some("Tasmota".into());
            c.kind = if lower.contains("bulb") {
                DeviceKind::Bulb
            } else {
                DeviceKind::Plug
            };
            c.profile = "tasmota";
            c.topic = topic_base(&lower.replace('-', "_"));
        }
        "_http._tcp" => return None,
        "_esphomelib._tcp" => {
            c.profile = "esphome";
            c.vendor = Some("ESPHome".into());
            c.model = owned(a.txt("board").or(a.txt("project_name")));
            c.firmware = owned(a.txt("version"));
            let project = a.txt("project_name").unwrap_or("").to_ascii_lowercase();
            c.kind = if project.contains("light") || project.contains("bulb") {
                DeviceKind::Bulb
            } else if project.contains("plug") || project.contains("switch") {
                DeviceKind::Plug
            } else {
                DeviceKind::Other
            };
            c.topic = topic_base(instance);
        }
        "_wled._tcp" => {
            c.profile = "wled";
            c.vendor = Some("WLED".into());
            c.kind = DeviceKind::LightStrip;
        }
        "_rtsp._tcp" => {
            c.profile = "rtsp";
            c.kind = DeviceKind::Camera;
        }
        "_axis-video._tcp" => {
            c.profile = "rtsp";
            c.vendor = Some("Axis".into());
            c.kind = DeviceKind::Camera;
        }
        "_googlecast._tcp" => {
            c.profile = "googlecast";
            c.vendor = Some("Google".into());
            c.model = owned(a.txt("md"));
        }
        "_mqtt._tcp" => {
            c.profile = "mqtt";
        }
        _ => return None,
    }
    c.identity = match &mac {
        Some(mac) => format!("mac:{mac}"),
        None => format!("{}:{}", a.service_type, lower),
    };
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert(service_type: &str, instance: &str, txt: &[(&str, &str)]) -> Advert {
        Advert {
            service_type: service_type.into(),
            instance: instance.into(),
            port: 80,
            addresses: vec!["192.168.1.20".parse().unwrap()],
            txt: txt.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
        }
    }

    /// (advert, expected kind, profile, model, identity)
    #[test]
    fn classification_table() {
        #[track_caller]
        fn check(a: Advert, kind: DeviceKind, profile: &str, model: Option<&str>, identity: &str) {
            let c = classify(&a).unwrap_or_else(|| panic!("{a:?} not classified"));
            assert_eq!(
                (c.kind, c.profile, c.model.as_deref()),
                (kind, profile, model),
                "{a:?}"
            );
            assert_eq!(c.identity, identity);
        }
        let hap = |ci: &str| {
            advert(
                "_hap._tcp",
                "Lamp",
                &[
                    ("c#", "2"),
                    ("ci", ci),
                    ("id", "1A:2B:3C:4D:5E:6F"),
                    ("md", "LCA003"),
                    ("sf", "1"),
                ],
            )
        };
        check(
            hap("5"),
            DeviceKind::Bulb,
            "homekit",
            Some("LCA003"),
            "mac:1a:2b:3c:4d:5e:6f",
        );
        check(
            hap("17"),
            DeviceKind::Camera,
            "homekit",
            Some("LCA003"),
            "mac:1a:2b:3c:4d:5e:6f",
        );
        check(
            hap("18"),
            DeviceKind::Doorbell,
            "homekit",
            Some("LCA003"),
            "mac:1a:2b:3c:4d:5e:6f",
        );
        check(
            hap("7"),
            DeviceKind::Plug,
            "homekit",
            Some("LCA003"),
            "mac:1a:2b:3c:4d:5e:6f",
        );
        check(
            hap("2"),
            DeviceKind::Other,
            "homekit",
            Some("LCA003"),
            "mac:1a:2b:3c:4d:5e:6f",
        );
        check(
            advert(
                "_shelly._tcp",
                "shellyplusplugs-a8032ab12345",
                &[("gen", "2"), ("app", "PlusPlugS"), ("ver", "1.4.4")],
            ),
            DeviceKind::Plug,
            "shelly",
            Some("PlusPlugS"),
            "_shelly._tcp:shellyplusplugs-a8032ab12345",
        );
        check(
            advert("_shelly._tcp", "shellyduo-a1b2", &[("gen", "1"), ("app", "Duo")]),
            DeviceKind::Bulb,
            "generic",
            Some("Duo"),
            "_shelly._tcp:shellyduo-a1b2",
        );
        check(
            advert("_http._tcp", "tasmota-1A2B3C-4567", &[]),
            DeviceKind::Plug,
            "tasmota",
            None,
            "_http._tcp:tasmota-1a2b3c-4567",
        );
        check(
            advert(
                "_esphomelib._tcp",
                "porch-light",
                &[
                    ("mac", "a8032ab12345"),
                    ("version", "2024.6.1"),
                    ("project_name", "acme.smart_light"),
                    ("board", "esp32dev"),
                ],
            ),
            DeviceKind::Bulb,
            "esphome",
            Some("esp32dev"),
            "mac:a8:03:2a:b1:23:45",
        );
        check(
            advert("_wled._tcp", "wled-desk", &[("mac", "A8032AB12346")]),
            DeviceKind::LightStrip,
            "wled",
            None,
            "mac:a8:03:2a:b1:23:46",
        );
        check(
            advert("_rtsp._tcp", "Garden Cam", &[]),
            DeviceKind::Camera,
            "rtsp",
            None,
            "_rtsp._tcp:garden cam",
        );
        check(
            advert(
                "_axis-video._tcp",
                "AXIS M3106",
                &[("macaddress", "00408C123456")],
            ),
            DeviceKind::Camera,
            "rtsp",
            None,
            "mac:00:40:8c:12:34:56",
        );
        check(
            advert(
                "_hue._tcp",
                "Hue Bridge",
                &[("bridgeid", "x"), ("modelid", "BSB002")],
            ),
            DeviceKind::Other,
            "hue",
            Some("BSB002"),
            "_hue._tcp:hue bridge",
        );
        check(
            advert(
                "_googlecast._tcp",
                "Kitchen speaker",
                &[("md", "Google Nest Mini")],
            ),
            DeviceKind::Other,
            "googlecast",
            Some("Google Nest Mini"),
            "_googlecast._tcp:kitchen speaker",
        );
        // Services hearth does not adopt.
        assert!(classify(&advert("_http._tcp", "printer", &[])).is_none());
        assert!(classify(&advert("_ipp._tcp", "printer", &[])).is_none());
    }

    #[test]
    fn topic_bases_come_only_from_valid_names() {
        let e = classify(&advert("_esphomelib._tcp", "porch-light", &[])).unwrap();
        assert_eq!(e.topic.as_deref(), Some("porch-light"));
        assert_eq!(e.mqtt_profile(), Profile::Esphome);
        // An advert cannot claim a reserved subtree as its topic base.
        let evil = classify(&advert("_esphomelib._tcp", "homeassistant", &[])).unwrap();
        assert_eq!(evil.topic, None);
        let t = classify(&advert("_http._tcp", "tasmota-AB12", &[])).unwrap();
        assert_eq!(t.topic.as_deref(), Some("tasmota_ab12"));
    }

    #[test]
    fn macs_are_normalised_or_ignored() {
        assert_eq!(
            normalise_mac("AA:BB:CC:DD:EE:FF").as_deref(),
            Some("aa:bb:cc:dd:ee:ff")
        );
        assert_eq!(
            normalise_mac("aabbccddeeff").as_deref(),
            Some("aa:bb:cc:dd:ee:ff")
        );
        assert_eq!(
            normalise_mac("AA-BB-CC-DD-EE-FF").as_deref(),
            Some("aa:bb:cc:dd:ee:ff")
        );
        for bad in [
            "",
            "aabbcc",
            "zz:bb:cc:dd:ee:ff",
            "aa bb cc dd ee ff",
            "aabbccddeeff00",
        ] {
            assert_eq!(normalise_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn oversized_adverts_are_out_of_bounds() {
        let ok = advert("_hap._tcp", "Lamp", &[("ci", "5")]);
        assert!(ok.within_bounds());
        let big_value = "x".repeat(MAX_TXT_VALUE + 1);
        assert!(!advert("_hap._tcp", "Lamp", &[("ci", big_value.as_str())]).within_bounds());
        let many: Vec<(String, String)> = (0..MAX_TXT_ENTRIES + 1)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        let mut a = ok.clone();
        a.txt = many;
        assert!(!a.within_bounds());
        let mut long = ok.clone();
        long.instance = "n".repeat(MAX_INSTANCE + 1);
        assert!(!long.within_bounds());
        let mut total = ok.clone();
        total.txt = (0..10).map(|i| (format!("k{i}"), "v".repeat(200))).collect();
        assert!(!total.within_bounds());
        assert_eq!(format!("{ok:?}"), "Advert { service_type: \"_hap._tcp\", .. }");
    }
}
