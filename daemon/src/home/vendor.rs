//! Each vendor's MQTT scheme in one place: the profiles, the topics a
//! device of each may use (its broker rules), the commands hearth sends a
//! device, and the reading of what a device reports about itself. The
//! broker's `acl` decides on rules alone and names no vendor.
//!
//! Parsing is bounded and total: a payload over [`MAX_STATE_PAYLOAD`] bytes,
//! a topic outside the device's own base or malformed JSON yields `None`,
//! never a panic. Nothing here logs; payloads may carry what a device knows.

use serde_json::Value;

use std::fmt;

use crate::broker::acl::Rule;
use crate::store::{DeviceId, DeviceKind};

/// A vendor's topic scheme. It decides a device's rules at adoption.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// hearth's own scheme: `hearth/<id>/#`.
    Generic,
    /// Tasmota: publishes `stat/<t>/#` and `tele/<t>/#`, obeys `cmnd/<t>/#`.
    Tasmota,
    /// Shelly Gen2: everything under `<id>/#`.
    Shelly,
    /// ESPHome: everything under `<name>/#`.
    Esphome,
}

impl Profile {
    pub const ALL: [Profile; 4] = [
        Profile::Generic,
        Profile::Tasmota,
        Profile::Shelly,
        Profile::Esphome,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Generic => "generic",
            Profile::Tasmota => "tasmota",
            Profile::Shelly => "shelly",
            Profile::Esphome => "esphome",
        }
    }

    pub fn parse(s: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rules of a device with `profile` whose topic base is `base` (the
/// device id for generic, the Tasmota topic, the Shelly prefix, the ESPHome
/// name). `base` must have passed [`valid_base`].
pub fn device_rules(profile: Profile, base: &str) -> Vec<Rule> {
    match profile {
        Profile::Generic => vec![Rule::subtree(&format!("hearth/{base}"), true, true)],
        Profile::Tasmota => vec![
            Rule::subtree(&format!("stat/{base}"), true, false),
            Rule::subtree(&format!("tele/{base}"), true, false),
            Rule::subtree(&format!("cmnd/{base}"), false, true),
        ],
        Profile::Shelly | Profile::Esphome => vec![Rule::subtree(base, true, true)],
    }
}

/// Top-level names no device may take as its own topic base, because other
/// parties own those subtrees.
const RESERVED_BASES: &[&str] = &[
    "hearth",
    "homeassistant",
    "cmnd",
    "stat",
    "tele",
    "tasmota",
    "tasmotas",
    "shellies",
    "esphome",
    "sys",
    "share",
    "queue",
];

/// A topic base is one level of `[a-z0-9_-]`, 1 to 64 bytes, starting with a
/// letter or digit, and not a reserved name.
pub fn valid_base(base: &str) -> bool {
    let ok_chars = base
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    let first_ok = base.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    ok_chars && first_ok && base.len() <= 64 && !RESERVED_BASES.contains(&base)
}

/// The largest state payload read. Real state reports are a few hundred
/// bytes; anything bigger is not worth parsing.
pub const MAX_STATE_PAYLOAD: usize = 4096;

/// A brightness level, 0 to 100, on ESPHome's 0 to 255 scale.
pub fn to_255(level: u8) -> u8 {
    // Rounded, so that from_255(to_255(l)) == l for every level 0..=100.
    ((u16::from(level.min(100)) * 255 + 50) / 100) as u8
}

/// An ESPHome brightness, 0 to 255, as a level 0 to 100.
pub fn from_255(value: u8) -> u8 {
    ((u16::from(value) * 100 + 127) / 255) as u8
}

/// The topic and payload that switch a device of `profile` on or off, in
/// the vendor's own scheme (see [`brightness_command`] for each scheme's
/// topics; a Shelly RPC's `src` is [`shelly_src`]).
pub fn power_command(profile: Profile, base: &str, on: bool) -> (String, String) {
    let state = if on { "ON" } else { "OFF" };
    match profile {
        Profile::Tasmota => (format!("cmnd/{base}/POWER"), state.to_owned()),
        Profile::Shelly => (
            format!("{base}/rpc"),
            // The answer goes to `<src>/rpc`, inside the device's subtree.
            format!(
                r#"{{"id":1,"src":"{}","method":"Switch.Set","params":{{"id":0,"on":{on}}}}}"#,
                shelly_src(base)
            ),
        ),
        Profile::Esphome => (
            format!("{base}/light/main/command"),
            format!(r#"{{"state":"{state}"}}"#),
        ),
        Profile::Generic => (format!("hearth/{base}/set"), format!(r#"{{"state":"{state}"}}"#)),
    }
}

/// The topic and payload that set a light's brightness, `level` 0 to 100
/// (larger values count as 100), in its vendor's scheme. Level 0 switches
/// the light off and any other level switches it on, in every scheme: that
/// is what Tasmota's `Dimmer` does, and the others are told so explicitly.
///
/// - Tasmota: `cmnd/<base>/Dimmer`, payload `<level>`.
/// - Shelly Gen2: `<base>/rpc`, JSON-RPC `Light.Set` with `id`, `on` and
///   `brightness`, from [`shelly_src`].
/// - ESPHome: `<base>/light/main/command`, `{"state":"ON","brightness":B}`
///   with B on 0..255 (`"OFF"` for level 0).
/// - Generic (hearth's canonical scheme): `hearth/<base>/set`,
///   `{"state":"ON","brightness":B}` with B on 0..255 (`"OFF"` for level 0).
pub fn brightness_command(profile: Profile, base: &str, level: u8) -> (String, String) {
    let level = level.min(100);
    let on = level > 0;
    match profile {
        Profile::Tasmota => (format!("cmnd/{base}/Dimmer"), level.to_string()),
        Profile::Shelly => (
            format!("{base}/rpc"),
            format!(
                r#"{{"id":1,"src":"{}","method":"Light.Set","params":{{"id":0,"on":{on},"brightness":{level}}}}}"#,
                shelly_src(base)
            ),
        ),
        Profile::Esphome => (
            format!("{base}/light/main/command"),
            format!(
                r#"{{"state":"{}","brightness":{}}}"#,
                if on { "ON" } else { "OFF" },
                to_255(level)
            ),
        ),
        Profile::Generic => (
            format!("hearth/{base}/set"),
            format!(
                r#"{{"state":"{}","brightness":{}}}"#,
                if on { "ON" } else { "OFF" },
                to_255(level)
            ),
        ),
    }
}

/// The `src` hearth gives its Shelly Gen2 RPCs: `<base>/hearth`. A Shelly
/// answers a request on `<src>/rpc`, and a device may publish only inside
/// its own `<base>/#` subtree (the broker's ACL), so a `src` outside it
/// (such as a bare `hearth`) would have every answer refused. The answers
/// land on `<base>/hearth/rpc`, which [`parse_state`] does not read: the
/// state comes from the device's status and notifications.
pub fn shelly_src(base: &str) -> String {
    format!("{base}/hearth")
}

/// The warmest and coolest colour temperatures hearth sends, in mireds
/// (6,500 K to 2,000 K): Tasmota's `CT` range, and Home Assistant's default.
pub const MIREDS: std::ops::RangeInclusive<u16> = 153..=500;

/// The topic and payload that set a light's colour temperature, in mireds
/// (clamped to [`MIREDS`]), or `None` when the scheme has no such command.
///
/// - Tasmota: `cmnd/<base>/CT`, payload `<mireds>`.
/// - ESPHome: `<base>/light/main/command`, `{"state":"ON","color_temp":M}`.
/// - Generic: `hearth/<base>/set`, `{"state":"ON","color_temp":M}`.
/// - Shelly Gen2's light and switch components have none.
pub fn color_temp_command(profile: Profile, base: &str, mireds: u16) -> Option<(String, String)> {
    let m = mireds.clamp(*MIREDS.start(), *MIREDS.end());
    match profile {
        Profile::Tasmota => Some((format!("cmnd/{base}/CT"), m.to_string())),
        Profile::Esphome => Some((
            format!("{base}/light/main/command"),
            format!(r#"{{"state":"ON","color_temp":{m}}}"#),
        )),
        Profile::Generic => Some((
            format!("hearth/{base}/set"),
            format!(r#"{{"state":"ON","color_temp":{m}}}"#),
        )),
        Profile::Shelly => None,
    }
}

/// What one report from a device says about it. Absent fields are not
/// known from this report; `motion` is an event, true when motion was seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateUpdate {
    pub online: Option<bool>,
    pub power: Option<bool>,
    pub brightness: Option<u8>,
    /// Mireds.
    pub color_temp: Option<u16>,
    pub motion: bool,
    /// A doorbell's button was pressed.
    pub press: bool,
    /// A camera sent a snapshot (on its `snapshot` topic).
    pub snapshot: bool,
    /// A contact sensor: whether the door or window is open.
    pub open: Option<bool>,
    /// A water sensor: whether it senses water.
    pub water: Option<bool>,
    /// A climate sensor's temperature, in tenths of a degree Celsius.
    pub temperature: Option<i16>,
    /// A climate sensor's relative humidity, in tenths of a percent.
    pub humidity: Option<u16>,
}

impl StateUpdate {
    fn is_empty(&self) -> bool {
        self.online.is_none()
            && self.power.is_none()
            && self.brightness.is_none()
            && self.color_temp.is_none()
            && !self.motion
            && !self.press
            && !self.snapshot
            && self.open.is_none()
            && self.water.is_none()
            && self.temperature.is_none()
            && self.humidity.is_none()
    }

    /// `None` when the report said nothing hearth keeps.
    fn some(self) -> Option<StateUpdate> {
        (!self.is_empty()).then_some(self)
    }
}

/// Reads a state report published on `topic` by a device of `profile` whose
/// topic base is `base`. `None` when the topic is not one of the device's
/// state topics, the payload is too big or malformed, or it says nothing
/// hearth keeps. The fixtures in `tests/fixtures/mqtt/` hold real payloads
/// of each scheme, with their sources, and what must be read from them.
///
/// - Tasmota: `stat/<base>/RESULT` and `tele/<base>/STATE` (JSON with
///   `POWER`, or `POWER1` on a device with several relays, `Dimmer` and
///   `CT`), `stat/<base>/POWER` or `POWER1` (`ON`/`OFF`),
///   `tele/<base>/LWT` (`Online`/`Offline`), and `tele/<base>/SENSOR`: the
///   `Temperature` and `Humidity` of the first sensor (in name order) that
///   reports a humidity, else of the first that reports a temperature, in
///   `TempUnit` (`C` unless `F`); the chip's own (`ESP32`, `ESP8266`) and
///   `Global` are not room readings and are skipped.
/// - Shelly Gen2: `<base>/online` (`true`/`false`), `<base>/status/<c>:0`
///   and the same components in `<base>/events/rpc` (`NotifyStatus`,
///   `NotifyFullStatus`): `switch:0` and `light:0` (`output`,
///   `brightness`), `temperature:0` (`tC`), `humidity:0` (`rh`) and
///   `flood:0` (`alarm` is water). Gen2 has no contact or motion component
///   of its own. Other components, other instances and RPC answers (on
///   `<base>/hearth/rpc`) are not read.
/// - ESPHome: `<base>/status` (`online`/`offline`, its birth message and
///   last will) and `<base>/<component>/<object>/state` for any object id
///   (ESPHome derives it from the entity's name): `light` (JSON `state`,
///   `brightness` 0..255, `color_temp` in mireds), `switch` (`ON`/`OFF` is
///   the power), `sensor` (a number as text, read by its object id) and
///   `binary_sensor` (`ON`/`OFF`, read by its object id). The object id is
///   split into words at `_` and `-`; the first rule a word matches wins:
///   `button` or `doorbell` is a press, `motion`, `presence`, `occupancy` or
///   `pir` is motion, `door`, `window`, `contact` or `opening` is open (a
///   contact), `water`, `leak`, `flood` or `moisture` is water; for a
///   sensor, `temperature` or `temp` is a temperature in °C and `humidity`
///   a relative humidity. Any other object id is not read.
/// - Generic, hearth's canonical scheme: `hearth/<base>/state` (`state`,
///   `brightness` 0..255, `color_temp` in mireds, `motion`, `pressed`,
///   `open`, `water`, `temperature` in °C, `humidity` in %),
///   `hearth/<base>/snapshot` (a camera's image, any size the broker takes),
///   `hearth/<base>/availability` or `hearth/<base>/status`
///   (`online`/`offline`), and the older `hearth/<base>/motion` (`ON`,
///   `true`, `1` or `{"motion":true}` is motion).
///
/// A temperature outside -100 °C to 150 °C or a humidity outside 0 to 100 %
/// is no reading.
pub fn parse_state(profile: Profile, base: &str, topic: &str, payload: &[u8]) -> Option<StateUpdate> {
    if base.is_empty() {
        return None;
    }
    // An image is not read, only noticed: the one report that may be big.
    if profile == Profile::Generic && below(topic, &["hearth", base]) == Some("snapshot") {
        return (!payload.is_empty()).then_some(StateUpdate {
            snapshot: true,
            ..StateUpdate::default()
        });
    }
    if payload.len() > MAX_STATE_PAYLOAD {
        return None;
    }
    let text = std::str::from_utf8(payload).ok()?.trim();
    match profile {
        Profile::Tasmota => tasmota(base, topic, text),
        Profile::Shelly => shelly(below(topic, &[base])?, text),
        Profile::Esphome => esphome(below(topic, &[base])?, text),
        Profile::Generic => generic(below(topic, &["hearth", base])?, text),
    }
}

/// The rest of `topic` after the literal levels `prefix`, if it lies under
/// them.
fn below<'a>(topic: &'a str, prefix: &[&str]) -> Option<&'a str> {
    let mut rest = topic;
    for level in prefix {
        rest = rest.strip_prefix(level)?.strip_prefix('/')?;
    }
    Some(rest)
}

fn json(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

/// `ON`/`OFF` in any case.
fn on_off(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("on") {
        Some(true)
    } else if text.eq_ignore_ascii_case("off") {
        Some(false)
    } else {
        None
    }
}

fn online_offline(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("online") {
        Some(true)
    } else if text.eq_ignore_ascii_case("offline") {
        Some(false)
    } else {
        None
    }
}

/// A 0..=100 level from a JSON number (Shelly may write it as `53.0`);
/// anything else is not a level.
fn level(v: &Value) -> Option<u8> {
    v.as_f64()
        .filter(|l| (0.0..=100.0).contains(l))
        .map(|l| l.round() as u8)
}

/// Degrees Celsius as tenths, within what a home sensor can read.
fn tenths_celsius(c: f64) -> Option<i16> {
    (c.is_finite() && (-100.0..=150.0).contains(&c)).then(|| (c * 10.0).round() as i16)
}

/// A relative humidity in percent as tenths.
fn tenths_percent(p: f64) -> Option<u16> {
    (p.is_finite() && (0.0..=100.0).contains(&p)).then(|| (p * 10.0).round() as u16)
}

fn tasmota(base: &str, topic: &str, text: &str) -> Option<StateUpdate> {
    let mut u = StateUpdate::default();
    if let Some(rest) = below(topic, &["stat", base]) {
        match rest {
            "POWER" | "POWER1" => u.power = Some(on_off(text)?),
            "RESULT" => tasmota_json(&mut u, &json(text)?),
            _ => return None,
        }
    } else {
        match below(topic, &["tele", base])? {
            "LWT" => u.online = Some(online_offline(text)?),
            "STATE" => tasmota_json(&mut u, &json(text)?),
            "SENSOR" => tasmota_sensor(&mut u, &json(text)?),
            _ => return None,
        }
    }
    u.some()
}

fn tasmota_json(u: &mut StateUpdate, v: &Value) {
    // With more than one relay Tasmota numbers them; `POWER` drives the
    // first.
    u.power = ["POWER", "POWER1"]
        .into_iter()
        .find_map(|key| v.get(key).and_then(Value::as_str).and_then(on_off));
    u.brightness = v.get("Dimmer").and_then(level);
    u.color_temp = v.get("CT").and_then(mireds);
}

/// A `tele/<t>/SENSOR` report: one object per sensor, named by its model.
fn tasmota_sensor(u: &mut StateUpdate, v: &Value) {
    let Some(all) = v.as_object() else {
        return;
    };
    let fahrenheit = v.get("TempUnit").and_then(Value::as_str) == Some("F");
    let room = all
        .iter()
        .filter(|(name, _)| !name.starts_with("ESP") && name.as_str() != "Global")
        .filter_map(|(_, reading)| reading.as_object());
    let number = |r: &serde_json::Map<String, Value>, key: &str| r.get(key).and_then(Value::as_f64);
    let chosen = room
        .clone()
        .find(|r| number(r, "Humidity").is_some())
        .or_else(|| room.clone().find(|r| number(r, "Temperature").is_some()));
    if let Some(r) = chosen {
        u.temperature = number(r, "Temperature")
            .map(|t| if fahrenheit { (t - 32.0) * 5.0 / 9.0 } else { t })
            .and_then(tenths_celsius);
        u.humidity = number(r, "Humidity").and_then(tenths_percent);
    }
}

/// A colour temperature in mireds, within what any bulb reports.
fn mireds(v: &Value) -> Option<u16> {
    v.as_u64().filter(|m| (100..=1000).contains(m)).map(|m| m as u16)
}

/// A 0..=255 brightness from a JSON number, as a level 0..=100.
fn level_255(v: &Value) -> Option<u8> {
    v.as_u64().and_then(|b| u8::try_from(b).ok()).map(from_255)
}

fn shelly(rest: &str, text: &str) -> Option<StateUpdate> {
    let mut u = StateUpdate::default();
    match rest {
        "online" => {
            u.online = Some(match text {
                "true" => true,
                "false" => false,
                _ => return None,
            })
        }
        "events/rpc" => {
            let v = json(text)?;
            let method = v.get("method").and_then(Value::as_str)?;
            if method != "NotifyStatus" && method != "NotifyFullStatus" {
                return None;
            }
            for (key, c) in v.get("params")?.as_object()? {
                shelly_component(&mut u, key, c);
            }
        }
        _ => {
            let key = rest.strip_prefix("status/")?;
            if !shelly_component(&mut u, key, &json(text)?) {
                return None;
            }
        }
    }
    u.some()
}

/// A Shelly component's status; a partial one (as in `NotifyStatus`) only
/// updates what it carries. False when hearth does not read the component.
fn shelly_component(u: &mut StateUpdate, key: &str, v: &Value) -> bool {
    let number = |k: &str| v.get(k).and_then(Value::as_f64);
    match key {
        "switch:0" | "light:0" => {
            if let Some(on) = v.get("output").and_then(Value::as_bool) {
                u.power = Some(on);
            }
            if let Some(l) = v.get("brightness").and_then(level) {
                u.brightness = Some(l);
            }
        }
        "temperature:0" => {
            if let Some(t) = number("tC").and_then(tenths_celsius) {
                u.temperature = Some(t);
            }
        }
        "humidity:0" => {
            if let Some(h) = number("rh").and_then(tenths_percent) {
                u.humidity = Some(h);
            }
        }
        "flood:0" => {
            if let Some(alarm) = v.get("alarm").and_then(Value::as_bool) {
                u.water = Some(alarm);
            }
        }
        _ => return false,
    }
    true
}

/// An ESPHome object id: what it derives from an entity's name.
fn object_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// What an ESPHome sensor or binary sensor reports, from its object id
/// (the rule is in [`parse_state`]'s doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    Press,
    Motion,
    Open,
    Water,
    Temperature,
    Humidity,
}

fn reading_of(object: &str) -> Option<Reading> {
    let has = |words: &[&str]| object.split(['_', '-']).any(|w| words.contains(&w));
    [
        (&["button", "doorbell"][..], Reading::Press),
        (&["motion", "presence", "occupancy", "pir"], Reading::Motion),
        (&["door", "window", "contact", "opening"], Reading::Open),
        (&["water", "leak", "flood", "moisture"], Reading::Water),
        (&["temperature", "temp"], Reading::Temperature),
        (&["humidity"], Reading::Humidity),
    ]
    .into_iter()
    .find(|(words, _)| has(words))
    .map(|(_, r)| r)
}

fn esphome(rest: &str, text: &str) -> Option<StateUpdate> {
    let mut u = StateUpdate::default();
    if rest == "status" {
        u.online = Some(online_offline(text)?);
        return u.some();
    }
    let mut levels = rest.split('/');
    let (component, object) = (levels.next()?, levels.next()?);
    if levels.next() != Some("state") || levels.next().is_some() || !object_id(object) {
        return None;
    }
    match component {
        "light" => {
            let v = json(text)?;
            u.power = v.get("state").and_then(Value::as_str).and_then(on_off);
            u.brightness = v.get("brightness").and_then(level_255);
            u.color_temp = v.get("color_temp").and_then(mireds);
        }
        "switch" => u.power = Some(on_off(text)?),
        "binary_sensor" => {
            let on = on_off(text)?;
            match reading_of(object)? {
                Reading::Press => u.press = on,
                Reading::Motion => u.motion = on,
                Reading::Open => u.open = Some(on),
                Reading::Water => u.water = Some(on),
                Reading::Temperature | Reading::Humidity => return None,
            }
        }
        "sensor" => {
            // A number as ESPHome prints it, or `nan`/`None` for no reading.
            let value: f64 = text.parse().ok()?;
            match reading_of(object)? {
                Reading::Temperature => u.temperature = tenths_celsius(value),
                Reading::Humidity => u.humidity = tenths_percent(value),
                _ => return None,
            }
        }
        _ => return None,
    }
    u.some()
}

fn generic(rest: &str, text: &str) -> Option<StateUpdate> {
    let mut u = StateUpdate::default();
    match rest {
        "availability" | "status" => u.online = Some(online_offline(text)?),
        "state" => {
            let v = json(text)?;
            u.power = v.get("state").and_then(Value::as_str).and_then(on_off);
            u.brightness = v.get("brightness").and_then(level_255);
            u.color_temp = v.get("color_temp").and_then(mireds);
            u.motion = v.get("motion").and_then(Value::as_bool).unwrap_or(false);
            u.press = v.get("pressed").and_then(Value::as_bool).unwrap_or(false);
            if let Some(online) = v.get("online").and_then(Value::as_bool) {
                u.online = Some(online);
            }
            u.open = v.get("open").and_then(Value::as_bool);
            u.water = v.get("water").and_then(Value::as_bool);
            u.temperature = v
                .get("temperature")
                .and_then(Value::as_f64)
                .and_then(tenths_celsius);
            u.humidity = v.get("humidity").and_then(Value::as_f64).and_then(tenths_percent);
        }
        "motion" => {
            u.motion = match text {
                "1" | "true" => true,
                t if t.eq_ignore_ascii_case("on") => true,
                t if t.starts_with('{') => json(t)?.get("motion").and_then(Value::as_bool)?,
                _ => false,
            }
        }
        _ => return None,
    }
    u.some()
}

/// How one adopted device is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheme {
    pub kind: DeviceKind,
    pub profile: Profile,
    pub base: String,
}

impl Scheme {
    /// Whether the device speaks the canonical topics itself.
    pub fn native(&self, id: &DeviceId) -> bool {
        self.profile == Profile::Generic && self.base == id.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::acl::{Action, Decision, Principal, decide};

    fn update(
        online: Option<bool>,
        power: Option<bool>,
        brightness: Option<u8>,
        motion: bool,
    ) -> StateUpdate {
        StateUpdate {
            online,
            power,
            brightness,
            color_temp: None,
            motion,
            ..StateUpdate::default()
        }
    }

    fn power(on: bool) -> StateUpdate {
        update(None, Some(on), None, false)
    }

    fn online(on: bool) -> StateUpdate {
        update(Some(on), None, None, false)
    }

    const MOTION: StateUpdate = StateUpdate {
        online: None,
        power: None,
        brightness: None,
        color_temp: None,
        motion: true,
        press: false,
        snapshot: false,
        open: None,
        water: None,
        temperature: None,
        humidity: None,
    };

    #[track_caller]
    fn check(profile: Profile, base: &str, cases: &[(&str, &str, Option<StateUpdate>)]) {
        for (topic, payload, want) in cases {
            let got = parse_state(profile, base, topic, payload.as_bytes());
            assert_eq!(got, *want, "{profile} {topic:?} {payload:?}");
        }
    }

    #[test]
    fn brightness_scale_round_trips() {
        assert_eq!((to_255(0), to_255(40), to_255(100)), (0, 102, 255));
        assert_eq!((from_255(0), from_255(102), from_255(255)), (0, 40, 100));
        for l in 0..=100 {
            assert_eq!(from_255(to_255(l)), l, "{l}");
        }
        assert_eq!(to_255(200), 255);
    }

    #[test]
    fn brightness_commands() {
        let cases = [
            (Profile::Tasmota, 40, "cmnd/b1/Dimmer", "40"),
            (
                Profile::Shelly,
                40,
                "b1/rpc",
                r#"{"id":1,"src":"b1/hearth","method":"Light.Set","params":{"id":0,"on":true,"brightness":40}}"#,
            ),
            (
                Profile::Shelly,
                0,
                "b1/rpc",
                r#"{"id":1,"src":"b1/hearth","method":"Light.Set","params":{"id":0,"on":false,"brightness":0}}"#,
            ),
            (
                Profile::Esphome,
                40,
                "b1/light/main/command",
                r#"{"state":"ON","brightness":102}"#,
            ),
            (
                Profile::Esphome,
                0,
                "b1/light/main/command",
                r#"{"state":"OFF","brightness":0}"#,
            ),
            (
                Profile::Generic,
                100,
                "hearth/b1/set",
                r#"{"state":"ON","brightness":255}"#,
            ),
            (
                Profile::Generic,
                250,
                "hearth/b1/set",
                r#"{"state":"ON","brightness":255}"#,
            ),
            (
                Profile::Generic,
                40,
                "hearth/b1/set",
                r#"{"state":"ON","brightness":102}"#,
            ),
            (
                Profile::Generic,
                0,
                "hearth/b1/set",
                r#"{"state":"OFF","brightness":0}"#,
            ),
        ];
        for (profile, level, topic, payload) in cases {
            let got = brightness_command(profile, "b1", level);
            assert_eq!(got, (topic.to_owned(), payload.to_owned()), "{profile} {level}");
            if payload.starts_with('{') {
                serde_json::from_str::<Value>(&got.1).expect("valid JSON");
            }
        }
    }

    /// Every command goes where the device may subscribe, and every state
    /// topic read is one it may publish: otherwise the scheme cannot work.
    #[test]
    fn commands_and_state_topics_are_within_the_device_rules() {
        let state_topics = |p: Profile| -> Vec<&'static str> {
            match p {
                Profile::Tasmota => vec!["stat/b1/RESULT", "stat/b1/POWER", "tele/b1/STATE", "tele/b1/LWT"],
                Profile::Shelly => vec![
                    "b1/status/switch:0",
                    "b1/status/light:0",
                    "b1/online",
                    "b1/events/rpc",
                ],
                Profile::Esphome => vec![
                    "b1/light/main/state",
                    "b1/status",
                    "b1/binary_sensor/motion/state",
                ],
                Profile::Generic => vec![
                    "hearth/b1/state",
                    "hearth/b1/availability",
                    "hearth/b1/status",
                    "hearth/b1/motion",
                ],
            }
        };
        for profile in Profile::ALL {
            let device = Principal::Confined {
                rules: device_rules(profile, "b1"),
            };
            let (topic, _) = brightness_command(profile, "b1", 50);
            assert_eq!(
                decide(&device, Action::Subscribe, &topic),
                Decision::Allow,
                "{topic}"
            );
            let (topic, _) = power_command(profile, "b1", true);
            assert_eq!(
                decide(&device, Action::Subscribe, &topic),
                Decision::Allow,
                "{topic}"
            );
            for topic in state_topics(profile) {
                assert_eq!(
                    decide(&device, Action::Publish, topic),
                    Decision::Allow,
                    "{topic}"
                );
            }
        }
    }

    #[test]
    fn tasmota_state() {
        check(
            Profile::Tasmota,
            "b1",
            &[
                ("stat/b1/POWER", "ON", Some(power(true))),
                ("stat/b1/POWER", "off", Some(power(false))),
                ("stat/b1/POWER", "maybe", None),
                ("stat/b1/POWER1", "ON", Some(power(true))),
                ("stat/b1/POWER2", "ON", None),
                ("stat/b1/RESULT", r#"{"POWER2":"ON"}"#, None),
                (
                    "stat/b1/RESULT",
                    r#"{"POWER":"OFF","POWER1":"ON"}"#,
                    Some(power(false)),
                ),
                ("stat/b1/RESULT", r#"{"POWER":"ON"}"#, Some(power(true))),
                (
                    "stat/b1/RESULT",
                    r#"{"POWER":"ON","Dimmer":40}"#,
                    Some(update(None, Some(true), Some(40), false)),
                ),
                (
                    "stat/b1/RESULT",
                    r#"{"Dimmer":7}"#,
                    Some(update(None, None, Some(7), false)),
                ),
                (
                    "tele/b1/STATE",
                    r#"{"Time":"2024-06-01T10:00:00","Uptime":"0T00:01:00","POWER":"OFF","Dimmer":40}"#,
                    Some(update(None, Some(false), Some(40), false)),
                ),
                ("tele/b1/LWT", "Online", Some(online(true))),
                ("tele/b1/LWT", "Offline", Some(online(false))),
                // Out of range, wrong types, nothing known.
                ("stat/b1/RESULT", r#"{"Dimmer":101}"#, None),
                ("stat/b1/RESULT", r#"{"POWER":1}"#, None),
                ("stat/b1/RESULT", r#"{"Wifi":{"RSSI":40}}"#, None),
                ("stat/b1/RESULT", "[]", None),
                // Topics hearth does not read, or commands.
                ("tele/b1/SENSOR", r#"{"POWER":"ON"}"#, None),
                ("cmnd/b1/POWER", "ON", None),
                ("stat/b1", "ON", None),
            ],
        );
    }

    #[test]
    fn shelly_state() {
        check(
            Profile::Shelly,
            "shellyplus1-a8",
            &[
                (
                    "shellyplus1-a8/status/switch:0",
                    r#"{"id":0,"source":"MQTT","output":true,"apower":0.0}"#,
                    Some(power(true)),
                ),
                (
                    "shellyplus1-a8/status/light:0",
                    r#"{"id":0,"output":false,"brightness":40}"#,
                    Some(update(None, Some(false), Some(40), false)),
                ),
                ("shellyplus1-a8/online", "true", Some(online(true))),
                ("shellyplus1-a8/online", "false", Some(online(false))),
                ("shellyplus1-a8/online", "yes", None),
                (
                    "shellyplus1-a8/events/rpc",
                    r#"{"src":"shellyplus1-a8","dst":"x/events","method":"NotifyStatus","params":{"ts":1.0,"light:0":{"id":0,"brightness":55}}}"#,
                    Some(update(None, None, Some(55), false)),
                ),
                (
                    "shellyplus1-a8/events/rpc",
                    r#"{"method":"NotifyFullStatus","params":{"switch:0":{"id":0,"output":false}}}"#,
                    Some(power(false)),
                ),
                (
                    "shellyplus1-a8/events/rpc",
                    r#"{"method":"NotifyEvent","params":{"switch:0":{"output":false}}}"#,
                    None,
                ),
                ("shellyplus1-a8/events/rpc", r#"{"method":"NotifyStatus"}"#, None),
                (
                    "shellyplus1-a8/status/switch:0",
                    r#"{"id":0,"output":"on"}"#,
                    None,
                ),
                (
                    "shellyplus1-a8/status/switch:1",
                    r#"{"id":1,"output":true}"#,
                    None,
                ),
                ("shellyplus1-a8/rpc", r#"{"output":true}"#, None),
                (
                    "shellyplus1-a8/status/light:0",
                    r#"{"output":true,"brightness":53.0}"#,
                    Some(update(None, Some(true), Some(53), false)),
                ),
                (
                    "shellyplus1-a8/status/temperature:0",
                    r#"{"id":0,"tC":null,"tF":null,"errors":["read"]}"#,
                    None,
                ),
                ("shellyplus1-a8/status/humidity:0", r#"{"id":0,"rh":100.5}"#, None),
                ("shellyplus1-a8/status/flood:0", r#"{"id":0,"alarm":"yes"}"#, None),
                (
                    "shellyplus1-a8/status/temperature:1",
                    r#"{"id":1,"tC":20.0}"#,
                    None,
                ),
                ("shellyplus1-a8/status/", r#"{"id":0}"#, None),
                ("shellyplus1-a8/hearth/rpc", r#"{"id":1,"result":null}"#, None),
                (
                    "shellyplus1-a8/events/rpc",
                    r#"{"method":"NotifyStatus","params":[{"switch:0":{"output":true}}]}"#,
                    None,
                ),
            ],
        );
    }

    #[test]
    fn esphome_state() {
        check(
            Profile::Esphome,
            "porch",
            &[
                (
                    "porch/light/main/state",
                    r#"{"state":"ON","brightness":102,"color_mode":"brightness"}"#,
                    Some(update(None, Some(true), Some(40), false)),
                ),
                ("porch/light/main/state", r#"{"state":"OFF"}"#, Some(power(false))),
                (
                    "porch/light/main/state",
                    r#"{"brightness":255}"#,
                    Some(update(None, None, Some(100), false)),
                ),
                ("porch/light/main/state", r#"{"brightness":256}"#, None),
                ("porch/status", "online", Some(online(true))),
                ("porch/status", "offline", Some(online(false))),
                ("porch/binary_sensor/motion/state", "ON", Some(MOTION)),
                ("porch/binary_sensor/motion/state", "OFF", None),
                (
                    "porch/binary_sensor/button/state",
                    "ON",
                    Some(StateUpdate {
                        press: true,
                        ..StateUpdate::default()
                    }),
                ),
                (
                    "porch/binary_sensor/door/state",
                    "ON",
                    Some(StateUpdate {
                        open: Some(true),
                        ..StateUpdate::default()
                    }),
                ),
                // A binary sensor whose object id names nothing hearth keeps.
                ("porch/binary_sensor/status_led/state", "ON", None),
                ("porch/binary_sensor/door/state", "OPEN", None),
                ("porch/sensor/temperature/state", "hot", None),
                ("porch/sensor/temperature/state", "nan", None),
                ("porch/sensor/temperature/state", "151", None),
                ("porch/sensor/humidity/state", "-1", None),
                // Not one object id level, or not a state.
                ("porch/light/Main/state", r#"{"state":"ON"}"#, None),
                ("porch/light/a/b/state", r#"{"state":"ON"}"#, None),
                ("porch/light//state", r#"{"state":"ON"}"#, None),
                ("porch/light/main", r#"{"state":"ON"}"#, None),
                ("porch/switch/plug/command", "ON", None),
                ("porch/cover/garage/state", "open", None),
                ("porch/light/main/command", r#"{"state":"ON"}"#, None),
            ],
        );
    }

    #[test]
    fn generic_state() {
        check(
            Profile::Generic,
            "a1",
            &[
                (
                    "hearth/a1/state",
                    r#"{"state":"ON","brightness":102}"#,
                    Some(update(None, Some(true), Some(40), false)),
                ),
                (
                    "hearth/a1/state",
                    r#"{"state":"ON","brightness":255,"color_temp":370}"#,
                    Some(StateUpdate {
                        color_temp: Some(370),
                        ..update(None, Some(true), Some(100), false)
                    }),
                ),
                ("hearth/a1/state", r#"{"brightness":256}"#, None),
                (
                    "hearth/a1/state",
                    r#"{"online":true,"motion":true}"#,
                    Some(StateUpdate {
                        online: Some(true),
                        ..MOTION
                    }),
                ),
                (
                    "hearth/a1/state",
                    r#"{"online":true,"motion":false}"#,
                    Some(online(true)),
                ),
                ("hearth/a1/state", r#"{"state":"OFF"}"#, Some(power(false))),
                ("hearth/a1/status", "online", Some(online(true))),
                ("hearth/a1/availability", "offline", Some(online(false))),
                (
                    "hearth/a1/state",
                    r#"{"pressed":true}"#,
                    Some(StateUpdate {
                        press: true,
                        ..StateUpdate::default()
                    }),
                ),
                (
                    "hearth/a1/snapshot",
                    "\u{89}PNG",
                    Some(StateUpdate {
                        snapshot: true,
                        ..StateUpdate::default()
                    }),
                ),
                ("hearth/a1/snapshot", "", None),
                ("hearth/a1/motion", "ON", Some(MOTION)),
                ("hearth/a1/motion", "true", Some(MOTION)),
                ("hearth/a1/motion", r#"{"motion":true}"#, Some(MOTION)),
                ("hearth/a1/motion", r#"{"motion":false}"#, None),
                ("hearth/a1/motion", "OFF", None),
                (
                    "hearth/a1/state",
                    r#"{"online":true,"temperature":21.5,"humidity":44.4}"#,
                    Some(StateUpdate {
                        online: Some(true),
                        temperature: Some(215),
                        humidity: Some(444),
                        ..StateUpdate::default()
                    }),
                ),
                (
                    "hearth/a1/state",
                    r#"{"open":true,"water":false}"#,
                    Some(StateUpdate {
                        open: Some(true),
                        water: Some(false),
                        ..StateUpdate::default()
                    }),
                ),
                (
                    "hearth/a1/state",
                    r#"{"temperature":"warm","humidity":101}"#,
                    None,
                ),
                ("hearth/a1/set", r#"{"state":"ON"}"#, None),
                ("hearth/a1/state/x", r#"{"state":"ON"}"#, None),
            ],
        );
    }

    #[test]
    fn another_base_is_not_read() {
        let cases = [
            (Profile::Tasmota, "stat/b10/POWER", "ON"),
            (Profile::Tasmota, "stat/b/POWER", "ON"),
            (Profile::Tasmota, "tele/b10/LWT", "Online"),
            (Profile::Shelly, "b10/online", "true"),
            (Profile::Shelly, "b1x/online", "true"),
            (Profile::Esphome, "b/status", "online"),
            (Profile::Esphome, "status", "online"),
            (Profile::Generic, "hearth/b10/state", r#"{"state":"ON"}"#),
            (Profile::Generic, "b1/state", r#"{"state":"ON"}"#),
            (Profile::Generic, "hearth/b1", r#"{"state":"ON"}"#),
        ];
        for (profile, topic, payload) in cases {
            assert_eq!(
                parse_state(profile, "b1", topic, payload.as_bytes()),
                None,
                "{topic}"
            );
        }
        // Nor does an empty base match anything.
        assert_eq!(parse_state(Profile::Shelly, "", "/online", b"true"), None);
    }

    #[test]
    fn malformed_and_oversized_payloads_are_ignored() {
        let topics = [
            (Profile::Tasmota, "stat/b1/RESULT"),
            (Profile::Tasmota, "tele/b1/STATE"),
            (Profile::Shelly, "b1/status/light:0"),
            (Profile::Shelly, "b1/events/rpc"),
            (Profile::Esphome, "b1/light/main/state"),
            (Profile::Esphome, "b1/light/ceiling/state"),
            (Profile::Esphome, "b1/sensor/temperature/state"),
            (Profile::Esphome, "b1/binary_sensor/front_door/state"),
            (Profile::Tasmota, "tele/b1/SENSOR"),
            (Profile::Shelly, "b1/status/temperature:0"),
            (Profile::Shelly, "b1/status/flood:0"),
            (Profile::Generic, "hearth/b1/state"),
            (Profile::Generic, "hearth/b1/motion"),
        ];
        let bad: [&[u8]; 8] = [
            b"",
            b"{",
            b"{\"state\":",
            b"\xff\xfe{}",
            b"null",
            b"\"ON\"",
            b"{\"state\":{\"state\":\"ON\"}}",
            b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        ];
        for (profile, topic) in topics {
            for payload in bad {
                assert_eq!(
                    parse_state(profile, "b1", topic, payload),
                    None,
                    "{topic} {payload:?}"
                );
            }
        }
        // Deep nesting fails in serde_json's recursion limit, not the stack.
        let deep = "[".repeat(4000);
        assert_eq!(
            parse_state(Profile::Generic, "b1", "hearth/b1/state", deep.as_bytes()),
            None
        );
        // Just under the bound is read; just over it is not.
        let pad = |n: usize| format!(r#"{{"state":"ON","x":"{}"}}"#, "p".repeat(n));
        let fits = pad(MAX_STATE_PAYLOAD - pad(0).len());
        assert_eq!(fits.len(), MAX_STATE_PAYLOAD);
        assert_eq!(
            parse_state(Profile::Generic, "b1", "hearth/b1/state", fits.as_bytes()),
            Some(power(true))
        );
        let over = pad(MAX_STATE_PAYLOAD - pad(0).len() + 1);
        assert_eq!(
            parse_state(Profile::Generic, "b1", "hearth/b1/state", over.as_bytes()),
            None
        );
    }

    /// Every fixture payload with any one byte replaced reads without a
    /// panic, whatever it reads.
    #[test]
    fn damaged_fixture_payloads_never_panic() {
        for text in FIXTURES {
            let fixture: Fixture = serde_json::from_str(text).expect("a fixture");
            let profile = Profile::parse(&fixture.scheme).expect("a scheme");
            for e in &fixture.examples {
                for at in 0..e.payload.len() {
                    for b in [0u8, 0xff, b'"', b'[', b'}', b'9', b'-', b'e'] {
                        let mut p = e.payload.clone().into_bytes();
                        p[at] = b;
                        let _ = parse_state(profile, &e.base, &e.topic, &p);
                    }
                }
            }
        }
    }

    /// What a fixture says hearth must read: `StateUpdate`'s fields.
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Reads {
        online: Option<bool>,
        power: Option<bool>,
        brightness: Option<u8>,
        color_temp: Option<u16>,
        motion: bool,
        press: bool,
        open: Option<bool>,
        water: Option<bool>,
        temperature: Option<i16>,
        humidity: Option<u16>,
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Example {
        base: String,
        topic: String,
        payload: String,
        source: String,
        reads: Option<Reads>,
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Fixture {
        scheme: String,
        #[allow(dead_code)]
        about: String,
        examples: Vec<Example>,
    }

    const FIXTURES: [&str; 3] = [
        include_str!("../../../tests/fixtures/mqtt/tasmota.json"),
        include_str!("../../../tests/fixtures/mqtt/shelly-gen2.json"),
        include_str!("../../../tests/fixtures/mqtt/esphome.json"),
    ];

    /// Real payloads, each with its source, read as the fixture documents;
    /// and the same payloads cut short, or under another base, read as
    /// nothing.
    #[test]
    fn fixtures_read_as_documented() {
        for text in FIXTURES {
            let fixture: Fixture = serde_json::from_str(text).expect("a fixture");
            let profile = Profile::parse(&fixture.scheme).expect("a scheme");
            assert!(fixture.examples.len() >= 10, "{profile}");
            for e in &fixture.examples {
                assert!(!e.source.trim().is_empty(), "{} has a source", e.topic);
                assert!(crate::home::vendor::valid_base(&e.base), "{}", e.base);
                let want = e.reads.as_ref().map(|r| StateUpdate {
                    online: r.online,
                    power: r.power,
                    brightness: r.brightness,
                    color_temp: r.color_temp,
                    motion: r.motion,
                    press: r.press,
                    snapshot: false,
                    open: r.open,
                    water: r.water,
                    temperature: r.temperature,
                    humidity: r.humidity,
                });
                let got = parse_state(profile, &e.base, &e.topic, e.payload.as_bytes());
                assert_eq!(got, want, "{profile} {} {}", e.topic, e.payload);
                // The device may publish it: otherwise it never arrives.
                let device = Principal::Confined {
                    rules: device_rules(profile, &e.base),
                };
                assert_eq!(
                    decide(&device, Action::Publish, &e.topic),
                    Decision::Allow,
                    "{}",
                    e.topic
                );
                // Another device's base reads nothing.
                assert_eq!(
                    parse_state(profile, "other", &e.topic, e.payload.as_bytes()),
                    None,
                    "{}",
                    e.topic
                );
                // Every cut of a JSON payload is malformed and reads nothing.
                if e.payload.starts_with('{') {
                    for cut in 1..e.payload.len() {
                        let Some(part) = e.payload.get(..cut) else {
                            continue;
                        };
                        assert_eq!(
                            parse_state(profile, &e.base, &e.topic, part.as_bytes()),
                            None,
                            "{} cut at {cut}",
                            e.topic
                        );
                    }
                }
            }
        }
    }

    fn device(profile: Profile, base: &str) -> Principal {
        Principal::Confined {
            rules: device_rules(profile, base),
        }
    }

    #[track_caller]
    fn check_rules(principal: &Principal, cases: &[(Action, &str, Decision)]) {
        for (action, topic, want) in cases {
            let got = decide(principal, *action, topic);
            assert_eq!(got, *want, "{action:?} {topic:?}");
        }
    }

    #[test]
    fn tasmota_directions() {
        let d = device(Profile::Tasmota, "plug1");
        check_rules(
            &d,
            &[
                (Action::Publish, "stat/plug1/RESULT", Decision::Allow),
                (Action::Publish, "tele/plug1/STATE", Decision::Allow),
                (Action::Publish, "tele/plug1/LWT", Decision::Allow),
                (Action::Subscribe, "cmnd/plug1/#", Decision::Allow),
                (Action::Subscribe, "cmnd/plug1/POWER", Decision::Allow),
                // Not the other way round.
                (Action::Publish, "cmnd/plug1/POWER", Decision::Deny),
                (Action::Subscribe, "stat/plug1/#", Decision::Deny),
                (Action::Subscribe, "tele/plug1/#", Decision::Deny),
                // Not the group topic, nor another plug.
                (Action::Subscribe, "cmnd/tasmotas/#", Decision::Deny),
                (Action::Subscribe, "cmnd/+/POWER", Decision::Deny),
                (Action::Publish, "stat/plug2/RESULT", Decision::Deny),
                (Action::Publish, "hearth/plug1/state", Decision::Deny),
            ],
        );
    }

    #[test]
    fn shelly_and_esphome_own_one_subtree() {
        let s = device(Profile::Shelly, "shellyplus1-a8032ab1");
        check_rules(
            &s,
            &[
                (Action::Publish, "shellyplus1-a8032ab1/online", Decision::Allow),
                (
                    Action::Publish,
                    "shellyplus1-a8032ab1/status/switch:0",
                    Decision::Allow,
                ),
                (Action::Subscribe, "shellyplus1-a8032ab1/rpc", Decision::Allow),
                (Action::Subscribe, "shellyplus1-a8032ab2/rpc", Decision::Deny),
                (Action::Subscribe, "+/rpc", Decision::Deny),
            ],
        );
        let e = device(Profile::Esphome, "porch-light");
        check_rules(
            &e,
            &[
                (Action::Publish, "porch-light/light/main/state", Decision::Allow),
                (
                    Action::Subscribe,
                    "porch-light/light/main/command",
                    Decision::Allow,
                ),
                (Action::Publish, "porch-light/status", Decision::Allow),
                (Action::Publish, "porch-lights/status", Decision::Deny),
                (Action::Subscribe, "homeassistant/#", Decision::Deny),
            ],
        );
    }

    #[test]
    fn topic_bases() {
        for ok in ["a1", "plug1", "porch-light", "shellyplus1-a8032ab1", "x_y"] {
            assert!(valid_base(ok), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "_x",
            "A1",
            "a/b",
            "a+",
            "a#",
            "$SYS",
            "a b",
            "homeassistant",
            "hearth",
            "cmnd",
        ] {
            assert!(!valid_base(bad), "{bad}");
        }
        assert!(!valid_base(&"a".repeat(65)));
        assert_eq!(device_rules(Profile::Tasmota, "p")[2].filter(), "cmnd/p/#");
    }
}
