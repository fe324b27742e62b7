//! Each vendor's MQTT scheme in one place: the commands hearth sends a
//! device, and the reading of what a device reports about itself.
//!
//! Parsing is bounded and total: a payload over [`MAX_STATE_PAYLOAD`] bytes,
//! a topic outside the device's own base or malformed JSON yields `None`,
//! never a panic. Nothing here logs; payloads may carry what a device knows.

use serde_json::Value;

use crate::broker::acl::Profile;

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

/// The topic and payload that set a light's brightness, `level` 0 to 100
/// (larger values count as 100), in its vendor's scheme. Level 0 switches
/// the light off and any other level switches it on, in every scheme: that
/// is what Tasmota's `Dimmer` does, and the others are told so explicitly.
///
/// - Tasmota: `cmnd/<base>/Dimmer`, payload `<level>`.
/// - Shelly Gen2: `<base>/rpc`, JSON-RPC `Light.Set` with `id`, `on` and
///   `brightness`.
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
                r#"{{"id":1,"src":"hearth","method":"Light.Set","params":{{"id":0,"on":{on},"brightness":{level}}}}}"#
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
/// hearth keeps.
///
/// - Tasmota: `stat/<base>/RESULT` and `tele/<base>/STATE` (JSON with
///   `POWER`, `Dimmer` and `CT`), `stat/<base>/POWER` (`ON`/`OFF`),
///   `tele/<base>/LWT` (`Online`/`Offline`).
/// - Shelly Gen2: `<base>/status/switch:0` and `<base>/status/light:0`
///   (`output`, `brightness`), `<base>/online` (`true`/`false`),
///   `<base>/events/rpc` (`NotifyStatus`/`NotifyFullStatus` carrying
///   `switch:0` or `light:0`).
/// - ESPHome: `<base>/light/main/state` (`state`, `brightness` 0..255,
///   `color_temp` in mireds),
///   `<base>/status` (`online`/`offline`), `<base>/binary_sensor/motion/state`
///   (`ON` is motion), `<base>/binary_sensor/button/state` (`ON` is a press).
/// - Generic, hearth's canonical scheme: `hearth/<base>/state` (`state`,
///   `brightness` 0..255, `color_temp` in mireds, `motion`, `pressed`),
///   `hearth/<base>/snapshot` (a camera's image, any size the broker takes),
///   `hearth/<base>/availability` or `hearth/<base>/status`
///   (`online`/`offline`), and the older `hearth/<base>/motion` (`ON`,
///   `true`, `1` or `{"motion":true}` is motion).
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

/// A 0..=100 level from a JSON number; anything else is not a level.
fn level(v: &Value) -> Option<u8> {
    v.as_u64().filter(|l| *l <= 100).map(|l| l as u8)
}

fn tasmota(base: &str, topic: &str, text: &str) -> Option<StateUpdate> {
    let mut u = StateUpdate::default();
    if let Some(rest) = below(topic, &["stat", base]) {
        match rest {
            "POWER" => u.power = Some(on_off(text)?),
            "RESULT" => tasmota_json(&mut u, &json(text)?),
            _ => return None,
        }
    } else {
        match below(topic, &["tele", base])? {
            "LWT" => u.online = Some(online_offline(text)?),
            "STATE" => tasmota_json(&mut u, &json(text)?),
            _ => return None,
        }
    }
    u.some()
}

fn tasmota_json(u: &mut StateUpdate, v: &Value) {
    u.power = v.get("POWER").and_then(Value::as_str).and_then(on_off);
    u.brightness = v.get("Dimmer").and_then(level);
    u.color_temp = v.get("CT").and_then(mireds);
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
        "status/switch:0" | "status/light:0" => shelly_component(&mut u, &json(text)?),
        "events/rpc" => {
            let v = json(text)?;
            let method = v.get("method").and_then(Value::as_str)?;
            if method != "NotifyStatus" && method != "NotifyFullStatus" {
                return None;
            }
            let params = v.get("params")?;
            for component in ["switch:0", "light:0"] {
                if let Some(c) = params.get(component) {
                    shelly_component(&mut u, c);
                }
            }
        }
        _ => return None,
    }
    u.some()
}

/// A Shelly component's status; a partial one (as in `NotifyStatus`) only
/// updates what it carries.
fn shelly_component(u: &mut StateUpdate, v: &Value) {
    if let Some(on) = v.get("output").and_then(Value::as_bool) {
        u.power = Some(on);
    }
    if let Some(l) = v.get("brightness").and_then(level) {
        u.brightness = Some(l);
    }
}

fn esphome(rest: &str, text: &str) -> Option<StateUpdate> {
    let mut u = StateUpdate::default();
    match rest {
        "status" => u.online = Some(online_offline(text)?),
        "light/main/state" => {
            let v = json(text)?;
            u.power = v.get("state").and_then(Value::as_str).and_then(on_off);
            u.brightness = v.get("brightness").and_then(level_255);
            u.color_temp = v.get("color_temp").and_then(mireds);
        }
        "binary_sensor/motion/state" => u.motion = on_off(text)?,
        "binary_sensor/button/state" => u.press = on_off(text)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::acl::{Action, Decision, Principal, decide, device_rules};

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
                r#"{"id":1,"src":"hearth","method":"Light.Set","params":{"id":0,"on":true,"brightness":40}}"#,
            ),
            (
                Profile::Shelly,
                0,
                "b1/rpc",
                r#"{"id":1,"src":"hearth","method":"Light.Set","params":{"id":0,"on":false,"brightness":0}}"#,
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
            let (topic, _) = crate::devices::power_command(profile, "b1", true);
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
                ("porch/binary_sensor/door/state", "ON", None),
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
}
