//! What an mDNS advert says a device is: a pure function from an advert to a
//! kind, a vendor profile, and whatever model, firmware and identity the TXT
//! record offers.
//!
//! An advert is a claim, never proof. Nothing here trusts it: classification
//! only decides how a *pending* device is shown to the owner, and an advert
//! that is too large or malformed is dropped before it gets here.

use std::net::IpAddr;

use crate::home::vendor::{self, Profile};
use crate::store::DeviceKind;

// Bounds on what one advert may carry; anything larger is dropped whole.
// Each is above what a real device sends (the corpus in tests/fixtures/
// adverts/ stays well inside them) and small enough that a forged advert
// costs little to read.

/// TXT entries in one advert.
pub const MAX_TXT_ENTRIES: usize = 32;
/// Bytes in one TXT entry: DNS's own limit for a character string.
pub const MAX_TXT_VALUE: usize = 255;
/// Bytes of TXT in all: what fits one Ethernet-sized mDNS packet.
pub const MAX_TXT_TOTAL: usize = 1300;
/// Bytes in an instance name: DNS's limit for one label.
pub const MAX_INSTANCE: usize = 63;
/// Addresses one advert may give; a device has one or two per interface.
pub const MAX_ADDRESSES: usize = 16;

/// The service types hearth browses by default: those of the devices it
/// offers. Media players, printers and brokers are not browsed at all.
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
    "_nanoleafapi._tcp",
    "_elg._tcp",
    "_esp-cam._tcp",
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
    /// The first label of the SRV target, lower-cased: the device's mDNS
    /// host name, which every service it advertises shares.
    pub host: String,
    /// Where the packet that completed the advert came from.
    pub source: Option<IpAddr>,
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
            && self.host.len() <= MAX_INSTANCE
    }
}

/// What hearth makes of an advert: a device to offer, or something it
/// recognised and leaves alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Boxed: a classified device is far larger than a reason.
    Offer(Box<Classified>),
    NotOffered(NotOffered),
}

/// Why an advert is not offered for adoption. Counted, never stored: these
/// are the rest of the home's network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotOffered {
    /// A hub or bridge (Hue bridge, HomeKit bridges).
    Bridge,
    Thermostat,
    /// A sensor whose vendor speaks no MQTT scheme hearth supports (it would
    /// never report), or of a kind hearth has none for (smoke, gas).
    UnsupportedSensor,
    /// A power or energy meter.
    Meter,
    /// A TV, speaker or streaming device.
    Media,
    /// Anything else recognised, or a device of a vendor hearth knows whose
    /// kind it cannot tell.
    Other,
}

impl NotOffered {
    pub const ALL: [NotOffered; 6] = [
        NotOffered::Bridge,
        NotOffered::Thermostat,
        NotOffered::UnsupportedSensor,
        NotOffered::Meter,
        NotOffered::Media,
        NotOffered::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotOffered::Bridge => "bridge",
            NotOffered::Thermostat => "thermostat",
            NotOffered::UnsupportedSensor => "unsupported_sensor",
            NotOffered::Meter => "meter",
            NotOffered::Media => "media",
            NotOffered::Other => "other",
        }
    }
}

/// A device hearth offers. Its `Debug` shows only what kind of device it
/// is: the names, MAC and identity describe a home.
#[derive(Clone, PartialEq, Eq)]
pub struct Classified {
    pub kind: DeviceKind,
    /// The vendor profile name stored with the device: an MQTT scheme
    /// (`tasmota`, `shelly`, `esphome`, `generic`) or the ecosystem it was
    /// found in (`homekit`, `hue`, `wled`, `rtsp`, `shelly_gen1`, ...).
    pub profile: &'static str,
    /// Who made it, or whose firmware it runs: `Shelly`, `Tasmota`,
    /// `ESPHome`, ... (`None` where the advert does not say, as HomeKit's).
    pub vendor: Option<String>,
    /// The product's model, when the advert names one. Never an ESPHome
    /// node's board: that is the chip it runs on, not what it is.
    pub model: Option<String>,
    /// The board an ESPHome node or Espressif camera says it runs on.
    pub board: Option<String>,
    pub firmware: Option<String>,
    /// Its MAC, when the advert carries one (TXT `mac=` and the like, or
    /// the end of its name). A HomeKit `id=` is not one: HAP makes it up
    /// at every reset, so it only ties the device's services together.
    pub mac: Option<String>,
    /// The name it announces itself by: an ESPHome node's friendly name,
    /// else its mDNS instance name.
    pub advertised_name: Option<String>,
    /// The device's identity, the same for every service it advertises:
    /// its MAC (from the TXT record, or the end of its instance or host
    /// name); without one, its mDNS host name; else the service type and
    /// instance name. An advert claiming an adopted device's MAC from
    /// elsewhere is flagged, whatever host name it uses.
    pub identity: String,
    /// Other identities it may be stored under: its host name, and the
    /// service type and instance name (what hearth stored before identities
    /// were per device).
    pub aliases: Vec<String>,
    /// The MQTT topic base it would use when adopted, if its scheme has one.
    pub topic: Option<String>,
    /// How much this service type says about the device: a vendor's own
    /// service (3) over HomeKit's (2) over a web server or stream (1). A
    /// pending device keeps what its most telling service said.
    pub rank: u8,
}

impl std::fmt::Debug for Classified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classified")
            .field("kind", &self.kind)
            .field("profile", &self.profile)
            .field("rank", &self.rank)
            .finish_non_exhaustive()
    }
}

impl Classified {
    /// The MQTT scheme an adopted device of this profile speaks.
    pub fn mqtt_profile(&self) -> Profile {
        Profile::parse(self.profile).unwrap_or(Profile::Generic)
    }
}

/// The rank of the service a stored device's details came from (see
/// [`Classified::rank`]). A Shelly's model (`app=`) comes only from its own
/// service; its web server's names none.
pub fn rank_of_stored(profile: &str, model: Option<&str>) -> u8 {
    match profile {
        "shelly" | "shelly_gen1" if model.is_some() => 3,
        "esphome" | "wled" | "hue" | "nanoleaf" | "elgato" | "axis" | "doorbird" | "esp_cam" => 3,
        "homekit" => 2,
        _ => 1,
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

/// A MAC at the end of a name, as Shelly and others name themselves
/// (`shellyplus1pm-a8032ab12345`): the last `-` separated part, if it is
/// twelve hex digits.
fn mac_in_name(name: &str) -> Option<String> {
    let last = name.rsplit(['-', '_']).next()?;
    (last.len() == 12 && last.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| normalise_mac(last))
        .flatten()
}

fn topic_base(instance: &str) -> Option<String> {
    let base = instance.to_ascii_lowercase();
    vendor::valid_base(&base).then_some(base)
}

/// What a HomeKit accessory category (`ci`, HAP specification's
/// accessory categories) is to hearth.
fn hap_kind(category: Option<&str>) -> Result<DeviceKind, NotOffered> {
    match category.and_then(|c| c.parse::<u32>().ok()) {
        Some(5) => Ok(DeviceKind::Bulb),
        Some(7) | Some(8) => Ok(DeviceKind::Plug),
        Some(17) => Ok(DeviceKind::Camera),
        Some(18) => Ok(DeviceKind::Doorbell),
        Some(2) => Err(NotOffered::Bridge),
        Some(9) | Some(20) | Some(21) => Err(NotOffered::Thermostat),
        // HomeKit sensors, doors, windows and locks speak no MQTT.
        Some(6) | Some(10) | Some(11) | Some(12) | Some(13) => Err(NotOffered::UnsupportedSensor),
        Some(26) | Some(31) | Some(34) | Some(35) | Some(36) => Err(NotOffered::Media),
        _ => Err(NotOffered::Other),
    }
}

/// Lower case, letters and digits only: `Plus 1PM` and `plus-1pm` alike.
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// What a Shelly is, from its model (`app=`, or the model part of its
/// name: `shellyplusplugs`, `shellyht`, `shelly0110dimg3`). Shelly's model
/// codes, not words: `PowerStrip` is a power strip, `HT` a temperature and
/// humidity sensor, `EM` an energy meter.
fn shelly_kind(model: &str) -> Result<DeviceKind, NotOffered> {
    let m = squash(model);
    let m = m.strip_prefix("shelly").unwrap_or(&m);
    let has = |w: &str| m.contains(w);
    if has("powerstrip") || has("pstrip") {
        Ok(DeviceKind::Plug)
    } else if m.starts_with("ht") || m.ends_with("ht") || has("plusht") {
        Ok(DeviceKind::ClimateSensor)
    } else if has("flood") || has("water") {
        Ok(DeviceKind::WaterSensor)
    } else if m.starts_with("dw") || has("doorwindow") {
        Ok(DeviceKind::ContactSensor)
    } else if has("motion") {
        Ok(DeviceKind::MotionSensor)
    } else if has("smoke") || has("gas") {
        Err(NotOffered::UnsupportedSensor)
    } else if has("trv") {
        Err(NotOffered::Thermostat)
    } else if has("blugw") || has("gateway") {
        Err(NotOffered::Bridge)
    } else if has("display") {
        Err(NotOffered::Other)
    } else if has("3em")
        || has("proem")
        || has("pmmini")
        || m.starts_with("em")
        || m.ends_with("em")
        || has("emg")
    {
        Err(NotOffered::Meter)
    } else if has("strip") || has("rgbw") {
        // RGBW controllers drive LED strips.
        Ok(DeviceKind::LightStrip)
    } else if has("bulb")
        || has("duo")
        || has("vintage")
        || has("10v")
        || has("dimmer")
        || has("dim")
        || has("dali")
        || has("0110")
        || has("walldimmer")
        || m.starts_with("pluswd")
    {
        Ok(DeviceKind::Bulb)
    } else {
        Ok(DeviceKind::Plug)
    }
}

/// What a device is from words in the names its owner or maker gave it
/// (an ESPHome node's name and project, a Tasmota host name), or `None`.
fn kind_from_words(text: &str) -> Option<Result<DeviceKind, NotOffered>> {
    let t = text.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
    Some(if has(&["doorbell", "door bell", "door-bell", "door_bell"]) {
        Ok(DeviceKind::Doorbell)
    } else if has(&["thermostat", "trv", "radiator"]) {
        Err(NotOffered::Thermostat)
    } else if has(&[
        "strip",
        "wled",
        "ws2812",
        "ws2811",
        "sk6812",
        "neopixel",
        "addressable",
    ]) {
        Ok(DeviceKind::LightStrip)
    } else if has(&["plug", "socket", "outlet", "relay", "switch", "power strip"]) {
        Ok(DeviceKind::Plug)
    } else if has(&["bulb", "light", "lamp", "led", "dimmer"]) {
        Ok(DeviceKind::Bulb)
    } else if has(&["camera", "cam"]) {
        Ok(DeviceKind::Camera)
    } else if has(&["motion", "pir", "presence", "occupancy"]) {
        Ok(DeviceKind::MotionSensor)
    } else if has(&["door", "window", "contact"]) {
        Ok(DeviceKind::ContactSensor)
    } else if has(&["leak", "water", "flood"]) {
        Ok(DeviceKind::WaterSensor)
    } else if has(&[
        "temp", "humid", "climate", "weather", "bme280", "bme680", "dht", "sht3", "sht4", "aht", "hygro",
    ]) {
        Ok(DeviceKind::ClimateSensor)
    } else if has(&["energy", "meter", "power monitor"]) {
        Err(NotOffered::Meter)
    } else if has(&["proxy", "voice", "speaker", "assist", "media"]) {
        Err(NotOffered::Other)
    } else {
        return None;
    })
}

/// The MAC a DoorBird's `_axis-video._tcp` advert carries starts with
/// DoorBird's OUI (Bird Home Automation, 1C:CA:E3).
const DOORBIRD_OUI: &str = "1c:ca:e3";

/// Classifies an advert with the built-in rules only.
pub fn classify(a: &Advert) -> Option<Verdict> {
    classify_with(a, &ExtraKinds::new())
}

/// Service types the owner named in the config, with the kind of device
/// that advertises them.
pub type ExtraKinds = std::collections::BTreeMap<String, DeviceKind>;

/// Classifies an advert: a device to offer, one recognised and not
/// offered, or `None` for a service hearth knows nothing of (a web server
/// of an unknown vendor, a type it does not browse).
pub fn classify_with(a: &Advert, extra: &ExtraKinds) -> Option<Verdict> {
    let instance = a.instance.as_str();
    let lower = instance.to_ascii_lowercase();
    let owned = |s: Option<&str>| s.map(str::to_owned);
    let hap = matches!(a.service_type.as_str(), "_hap._tcp" | "_hap._udp");
    // A MAC-shaped `id=` ties the device's services together (HomeKit's
    // is one), but only these keys name the device's own MAC.
    let own_mac = ["mac", "macaddress", "deviceid"]
        .iter()
        .chain((!hap).then_some(&"id"))
        .find_map(|k| a.txt(k).and_then(normalise_mac))
        .or_else(|| mac_in_name(&lower))
        .or_else(|| mac_in_name(&a.host));
    let txt_mac = ["mac", "macaddress", "deviceid", "id"]
        .iter()
        .find_map(|k| a.txt(k).and_then(normalise_mac));
    let mac = txt_mac
        .clone()
        .or_else(|| mac_in_name(&lower))
        .or_else(|| mac_in_name(&a.host));
    let mut c = Classified {
        kind: DeviceKind::Other,
        profile: "generic",
        vendor: None,
        model: None,
        board: None,
        firmware: None,
        mac: own_mac,
        advertised_name: Some(instance.to_owned()),
        identity: String::new(),
        aliases: Vec::new(),
        topic: None,
        rank: 1,
    };
    let kind = match a.service_type.as_str() {
        "_hap._tcp" | "_hap._udp" => {
            c.profile = "homekit";
            c.rank = 2;
            c.model = owned(a.txt("md"));
            c.firmware = owned(a.txt("fv"));
            hap_kind(a.txt("ci"))
        }
        "_hue._tcp" => Err(NotOffered::Bridge),
        "_shelly._tcp" => shelly(a, &mut c, &lower),
        "_http._tcp" if lower.starts_with("shelly") => shelly(a, &mut c, &lower),
        // Tasmota says so in its TXT record; older builds only in their
        // default host name.
        "_http._tcp" if a.txt("devicetype") == Some("tasmota") || lower.starts_with("tasmota") => {
            c.vendor = Some("Tasmota".into());
            c.profile = "tasmota";
            c.topic = topic_base(&lower.replace('-', "_"));
            kind_from_words(lower.trim_start_matches("tasmota")).unwrap_or(Ok(DeviceKind::Plug))
        }
        "_http._tcp" => return None,
        "_esphomelib._tcp" => {
            c.profile = "esphome";
            c.rank = 3;
            c.vendor = Some("ESPHome".into());
            c.model = a.txt("project_name").and_then(esphome_product);
            c.board = owned(a.txt("board"));
            if let Some(name) = a.txt("friendly_name") {
                c.advertised_name = Some(name.to_owned());
            }
            c.firmware = owned(a.txt("version"));
            c.topic = topic_base(instance);
            let words = [a.txt("friendly_name"), a.txt("project_name"), Some(instance)]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            // A node whose purpose its names do not tell is left alone.
            kind_from_words(&words).unwrap_or(Err(NotOffered::Other))
        }
        "_wled._tcp" => {
            c.profile = "wled";
            c.rank = 3;
            c.vendor = Some("WLED".into());
            Ok(DeviceKind::LightStrip)
        }
        "_nanoleafapi._tcp" => {
            c.profile = "nanoleaf";
            c.rank = 3;
            c.vendor = Some("Nanoleaf".into());
            c.model = owned(a.txt("md"));
            c.firmware = owned(a.txt("srcvers"));
            Ok(DeviceKind::LightStrip)
        }
        "_elg._tcp" => {
            c.profile = "elgato";
            c.rank = 3;
            c.vendor = Some("Elgato".into());
            c.model = owned(a.txt("md"));
            let strip = squash(a.txt("md").unwrap_or("")).contains("strip");
            Ok(if strip {
                DeviceKind::LightStrip
            } else {
                DeviceKind::Bulb
            })
        }
        "_rtsp._tcp" => {
            c.profile = "rtsp";
            Ok(DeviceKind::Camera)
        }
        // Espressif's camera web server firmware (esp-who).
        "_esp-cam._tcp" => {
            c.profile = "esp_cam";
            c.rank = 3;
            c.vendor = Some("Espressif".into());
            c.board = owned(a.txt("board"));
            Ok(DeviceKind::Camera)
        }
        "_axis-video._tcp" => {
            c.rank = 3;
            let doorbird = txt_mac.as_deref().is_some_and(|m| m.starts_with(DOORBIRD_OUI));
            if doorbird {
                c.profile = "doorbird";
                c.vendor = Some("DoorBird".into());
                Ok(DeviceKind::Doorbell)
            } else {
                c.profile = "axis";
                c.vendor = Some("Axis".into());
                // Axis names its door stations A81xx.
                let door = lower.contains("a81") || lower.contains("door");
                Ok(if door {
                    DeviceKind::Doorbell
                } else {
                    DeviceKind::Camera
                })
            }
        }
        other => match extra.get(other) {
            Some(kind) => {
                c.profile = "generic";
                Ok(*kind)
            }
            None => return None,
        },
    };
    c.kind = match kind {
        Ok(DeviceKind::Other) => return Some(Verdict::NotOffered(NotOffered::Other)),
        Ok(k) => k,
        Err(why) => return Some(Verdict::NotOffered(why)),
    };
    // Sensors report over MQTT or not at all: only where the vendor's own
    // scheme is one hearth reads.
    if c.kind.is_sensor()
        && !c.kind.has_camera()
        && Profile::parse(c.profile).is_none_or(|p| p == Profile::Generic)
        && !extra.contains_key(&a.service_type)
    {
        return Some(Verdict::NotOffered(NotOffered::UnsupportedSensor));
    }
    let legacy = format!("{}:{}", a.service_type, lower);
    let by_host = (!a.host.is_empty()).then(|| format!("host:{}", a.host));
    c.identity = match (&mac, &by_host) {
        (Some(m), _) => format!("mac:{m}"),
        (None, Some(h)) => h.clone(),
        (None, None) => legacy.clone(),
    };
    for alias in by_host.into_iter().chain([legacy]) {
        if alias != c.identity {
            c.aliases.push(alias);
        }
    }
    Some(Verdict::Offer(Box::new(c)))
}

/// The product in an ESPHome `project_name`, which ESPHome asks makers to
/// write as `author.product` (`China Athom Technology.Athom Plug V2`).
fn esphome_product(project: &str) -> Option<String> {
    let product = project.split_once('.').map_or(project, |(_, p)| p).trim();
    (!product.is_empty()).then(|| product.to_owned())
}

/// A Shelly, from `_shelly._tcp` or its `_http._tcp`: Gen2 and later
/// (`gen=2` or more) speak Shelly's RPC over MQTT, the `shelly` scheme;
/// Gen1 speaks a scheme hearth does not, and is found as `shelly_gen1`.
fn shelly(a: &Advert, c: &mut Classified, lower: &str) -> Result<DeviceKind, NotOffered> {
    let gen2 = a.txt("gen").and_then(|g| g.parse::<u32>().ok()).unwrap_or(1) >= 2;
    c.profile = if gen2 { "shelly" } else { "shelly_gen1" };
    // Gen2's web server service names no model: its own service decides.
    c.rank = if a.service_type == "_shelly._tcp" { 3 } else { 1 };
    c.vendor = Some("Shelly".into());
    c.model = a.txt("app").map(str::to_owned);
    c.firmware = a.txt("ver").map(str::to_owned);
    if gen2 {
        c.topic = topic_base(lower);
    }
    // The model: `app=`, else the name without its MAC or id suffix.
    let model = match a.txt("app") {
        Some(app) => app.to_owned(),
        None => lower.rsplit_once('-').map_or(lower, |(m, _)| m).to_owned(),
    };
    shelly_kind(&model)
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
            host: String::new(),
            source: None,
        }
    }

    #[track_caller]
    fn offer(a: &Advert) -> Classified {
        match classify(a) {
            Some(Verdict::Offer(c)) => *c,
            other => panic!("{a:?} not offered: {other:?}"),
        }
    }

    /// (advert, expected kind, profile, model, identity)
    #[test]
    fn classification_table() {
        #[track_caller]
        fn check(a: Advert, kind: DeviceKind, profile: &str, model: Option<&str>, identity: &str) {
            let c = offer(&a);
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
        for (ci, kind) in [
            ("5", DeviceKind::Bulb),
            ("17", DeviceKind::Camera),
            ("18", DeviceKind::Doorbell),
            ("7", DeviceKind::Plug),
            ("8", DeviceKind::Plug),
        ] {
            check(hap(ci), kind, "homekit", Some("LCA003"), "mac:1a:2b:3c:4d:5e:6f");
        }
        for (ci, why) in [
            ("2", NotOffered::Bridge),
            ("9", NotOffered::Thermostat),
            ("10", NotOffered::UnsupportedSensor),
            ("31", NotOffered::Media),
            ("1", NotOffered::Other),
        ] {
            assert_eq!(classify(&hap(ci)), Some(Verdict::NotOffered(why)), "ci={ci}");
        }
        check(
            advert(
                "_shelly._tcp",
                "shellyplusplugs-a8032ab12345",
                &[("gen", "2"), ("app", "PlusPlugS"), ("ver", "1.4.4")],
            ),
            DeviceKind::Plug,
            "shelly",
            Some("PlusPlugS"),
            "mac:a8:03:2a:b1:23:45",
        );
        check(
            advert("_http._tcp", "shellybulbduo-a1b2", &[("app", "shellybulbduo")]),
            DeviceKind::Bulb,
            "shelly_gen1",
            Some("shellybulbduo"),
            "_http._tcp:shellybulbduo-a1b2",
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
            Some("smart_light"),
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
            "axis",
            None,
            "mac:00:40:8c:12:34:56",
        );
        check(
            advert(
                "_axis-video._tcp",
                "Doorstation - 1CCAE3000001",
                &[("macaddress", "1CCAE3000001")],
            ),
            DeviceKind::Doorbell,
            "doorbird",
            None,
            "mac:1c:ca:e3:00:00:01",
        );
        assert_eq!(
            classify(&advert("_hue._tcp", "Hue Bridge", &[("modelid", "BSB002")])),
            Some(Verdict::NotOffered(NotOffered::Bridge))
        );
        // Services hearth does not offer, or knows nothing of.
        assert!(classify(&advert("_http._tcp", "printer", &[])).is_none());
        assert!(classify(&advert("_ipp._tcp", "printer", &[])).is_none());
        assert!(classify(&advert("_googlecast._tcp", "Kitchen", &[])).is_none());
    }

    /// A service of a device in the corpus of real devices' adverts
    /// (tests/fixtures/adverts), as discovery would hear it.
    fn real(device: &str, service_type: &str) -> Advert {
        let corpus = [
            include_str!("../../../tests/fixtures/adverts/lights-plugs-sensors.json"),
            include_str!("../../../tests/fixtures/adverts/cameras-doorbells-others.json"),
        ];
        let service = corpus
            .iter()
            .flat_map(|text| {
                let v: serde_json::Value = serde_json::from_str(text).unwrap();
                v["devices"].as_array().unwrap().clone()
            })
            .find(|d| d["id"] == device)
            .and_then(|d| {
                d["services"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["type"] == service_type)
                    .cloned()
            })
            .unwrap_or_else(|| panic!("no {service_type} of {device} in the corpus"));
        let text = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
        let host = text(&service["host"]);
        Advert {
            service_type: service_type.into(),
            instance: text(&service["instance"]),
            port: service["port"].as_u64().unwrap() as u16,
            addresses: vec!["192.168.1.20".parse().unwrap()],
            txt: service["txt"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), text(v)))
                .collect(),
            host: host.split('.').next().unwrap().to_ascii_lowercase(),
            source: None,
        }
    }

    /// What tells two devices of one make apart, from real adverts: who
    /// made it, its model, its MAC and the name it announces. An ESPHome
    /// node's board is kept as its board, never as its model.
    #[test]
    fn real_adverts_say_what_tells_devices_apart() {
        #[track_caller]
        fn check(
            (device, service_type): (&str, &str),
            vendor: Option<&str>,
            model: Option<&str>,
            board: Option<&str>,
            mac: Option<&str>,
            name: &str,
        ) {
            let c = offer(&real(device, service_type));
            assert_eq!(
                (
                    c.vendor.as_deref(),
                    c.model.as_deref(),
                    c.board.as_deref(),
                    c.mac.as_deref(),
                    c.advertised_name.as_deref(),
                ),
                (vendor, model, board, mac, Some(name)),
                "{device} {service_type}"
            );
        }
        check(
            ("esphome-athom-plug-v2", "_esphomelib._tcp"),
            Some("ESPHome"),
            Some("Athom Plug V2"),
            Some("esp8285"),
            Some("e8:db:84:a1:b2:c3"),
            "Athom Plug V2 a1b2c3",
        );
        check(
            ("esphome-athom-ws2812b", "_esphomelib._tcp"),
            Some("ESPHome"),
            Some("WS2812B Controller"),
            Some("esp8285"),
            Some("e8:db:84:7f:8e:9d"),
            "athom-ws2812b-7f8e9d",
        );
        // A node without a project: its board, and no model at all.
        check(
            ("esphome-esp32-cam", "_esphomelib._tcp"),
            Some("ESPHome"),
            None,
            Some("esp32cam"),
            Some("a4:cf:12:b3:c4:d5"),
            "Front Door Cam",
        );
        check(
            ("shelly-plus-plug-s", "_shelly._tcp"),
            Some("Shelly"),
            Some("PlusPlugS"),
            None,
            Some("e8:6b:ea:ea:a0:00"),
            "shellyplusplugs-e86beaeaa000",
        );
        check(
            ("shelly-1", "_http._tcp"),
            Some("Shelly"),
            Some("switch1"),
            None,
            Some("34:94:54:72:a6:43"),
            "shelly1-34945472A643",
        );
        check(
            ("tasmota-bulb", "_http._tcp"),
            Some("Tasmota"),
            None,
            None,
            None,
            "tasmota-5D6E7F-1234",
        );
        check(
            ("wled-esp32-strip", "_wled._tcp"),
            Some("WLED"),
            None,
            None,
            Some("3c:71:bf:4d:5e:6f"),
            "wled-4d5e6f",
        );
        check(
            ("axis-m1065-lw", "_axis-video._tcp"),
            Some("Axis"),
            None,
            None,
            Some("00:40:8c:12:34:56"),
            "AXIS M1065-LW - 00408C123456",
        );
        check(
            ("esp-eye-camera-web-server", "_esp-cam._tcp"),
            Some("Espressif"),
            None,
            Some("ESP-EYE"),
            None,
            "ESP-EYE-OV2640-A1B2C3",
        );
        // HomeKit names the model but not the maker, and its `id=` is made
        // up at every reset: it ties services together, it is no MAC.
        check(
            ("lifx-a19", "_hap._tcp"),
            None,
            Some("LIFX A19"),
            None,
            None,
            "LIFX A19 5D3E1F",
        );
        let lifx = offer(&real("lifx-a19", "_hap._tcp"));
        assert_eq!(lifx.identity, "mac:5d:6e:7f:80:91:a2");
        // Two identical plugs differ in MAC and name.
        let a = offer(&real("esphome-athom-plug-v2", "_esphomelib._tcp"));
        let mut b_advert = real("esphome-athom-plug-v2", "_esphomelib._tcp");
        for (k, v) in &mut b_advert.txt {
            match k.as_str() {
                "mac" => *v = "e8db84ffee01".into(),
                "friendly_name" => *v = "Athom Plug V2 ffee01".into(),
                _ => {}
            }
        }
        let b = offer(&b_advert);
        assert_eq!((&a.vendor, &a.model), (&b.vendor, &b.model));
        assert_ne!(a.mac, b.mac);
        assert_ne!(a.advertised_name, b.advertised_name);
        // What it announces stays out of its Debug.
        let shown = format!("{a:?}");
        for secret in ["e8:db:84", "Athom Plug V2", "athom-smart-plug"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    /// Shelly's model codes, as its devices send them.
    #[test]
    fn shelly_models() {
        for (model, kind) in [
            ("PowerStrip", Ok(DeviceKind::Plug)),
            ("Plus1PM", Ok(DeviceKind::Plug)),
            ("Mini1G3", Ok(DeviceKind::Plug)),
            ("PlusRGBWPM", Ok(DeviceKind::LightStrip)),
            ("Plus10V", Ok(DeviceKind::Bulb)),
            ("ht-sensor", Ok(DeviceKind::ClimateSensor)),
            ("water-sensor", Ok(DeviceKind::WaterSensor)),
            ("BluGw", Err(NotOffered::Bridge)),
            ("WallDisplay", Err(NotOffered::Other)),
            ("shelly0110dimg3", Ok(DeviceKind::Bulb)),
            ("PlusWallDimmer", Ok(DeviceKind::Bulb)),
            ("PlusHT", Ok(DeviceKind::ClimateSensor)),
            ("HTG3", Ok(DeviceKind::ClimateSensor)),
            ("shellyht", Ok(DeviceKind::ClimateSensor)),
            ("shellyflood", Ok(DeviceKind::WaterSensor)),
            ("shellydw2", Ok(DeviceKind::ContactSensor)),
            ("PlusSmoke", Err(NotOffered::UnsupportedSensor)),
            ("Pro3EM", Err(NotOffered::Meter)),
            ("shellyem3", Err(NotOffered::Meter)),
            ("shellytrv", Err(NotOffered::Thermostat)),
        ] {
            assert_eq!(shelly_kind(model), kind, "{model}");
        }
    }

    /// Every service of one device gives one identity: its host name, or
    /// without one its MAC; the older per-service identity stays an alias.
    #[test]
    fn one_identity_per_device_across_services() {
        let mut own = advert(
            "_shelly._tcp",
            "shellyplus1pm-441793d69718",
            &[("gen", "2"), ("app", "Plus1PM")],
        );
        own.host = "shellyplus1pm-441793d69718".into();
        let mut web = advert("_http._tcp", "shellyplus1pm-441793d69718", &[("gen", "2")]);
        web.host = own.host.clone();
        let (a, b) = (offer(&own), offer(&web));
        assert_eq!(a.identity, "mac:44:17:93:d6:97:18");
        assert_eq!(a.identity, b.identity);
        assert_eq!((a.profile, b.profile), ("shelly", "shelly"));
        assert!(a.rank > b.rank);
        assert_eq!(
            a.aliases,
            vec![
                "host:shellyplus1pm-441793d69718".to_owned(),
                "_shelly._tcp:shellyplus1pm-441793d69718".to_owned()
            ]
        );
        // Without a MAC anywhere, the host name ties the services together.
        let mut nano = advert("_nanoleafapi._tcp", "Canvas ADF9", &[]);
        nano.host = "canvas-adf9".into();
        let mut hap = advert("_hap._tcp", "Canvas ADF9", &[("ci", "5")]);
        hap.host = nano.host.clone();
        assert_eq!(offer(&nano).identity, "host:canvas-adf9");
        assert_eq!(offer(&nano).identity, offer(&hap).identity);
        // A Gen1 sensor speaks a scheme hearth does not read: not offered.
        let gen1 = advert("_http._tcp", "shellyht-6F1B2C", &[("app", "shellyht")]);
        assert_eq!(
            classify(&gen1),
            Some(Verdict::NotOffered(NotOffered::UnsupportedSensor))
        );
    }

    #[test]
    fn owners_name_the_kind_of_service_types_hearth_does_not_know() {
        let a = advert("_examplelight._tcp", "Desk", &[]);
        assert_eq!(classify(&a), None);
        let extra = ExtraKinds::from([("_examplelight._tcp".to_owned(), DeviceKind::Bulb)]);
        let Some(Verdict::Offer(c)) = classify_with(&a, &extra) else {
            panic!("not offered")
        };
        assert_eq!((c.kind, c.profile), (DeviceKind::Bulb, "generic"));
    }

    #[test]
    fn topic_bases_come_only_from_valid_names() {
        let e = offer(&advert("_esphomelib._tcp", "porch-light", &[]));
        assert_eq!(e.topic.as_deref(), Some("porch-light"));
        assert_eq!(e.mqtt_profile(), Profile::Esphome);
        // An advert cannot claim a reserved subtree as its topic base.
        let evil = offer(&advert(
            "_esphomelib._tcp",
            "homeassistant",
            &[("friendly_name", "Hall light")],
        ));
        assert_eq!(evil.topic, None);
        let t = offer(&advert("_http._tcp", "tasmota-AB12", &[]));
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
