//! hearth's canonical topics: one scheme for every adopted device, whatever
//! its vendor speaks, for Home Assistant (and the voice relay) to use.
//!
//! - `hearth/<id>/state`: JSON, retained. Lights and plugs:
//!   `{"state":"ON","brightness":0-255,"color_temp":mireds}` (what is known,
//!   with `color_mode` for Home Assistant's JSON light);
//!   cameras and motion sensors: `{"online":true,"motion":false}`, doorbells
//!   also `"pressed":false`; contact sensors `"open"`, water sensors
//!   `"water"` (booleans), climate sensors `"temperature"` (°C) and
//!   `"humidity"` (%), each once known.
//! - `hearth/<id>/snapshot`: a camera's latest image, as it sent it (only
//!   generic cameras send one, on this very topic).
//! - `hearth/<id>/set`: commands, in the same JSON as a light's state.
//! - `hearth/<id>/availability`: `online` or `offline`, retained, from the
//!   device's own reports and last will, or its broker session ending.
//!
//! hearth's generic scheme *is* this scheme, so a generic device whose
//! topic base is its id publishes and obeys these topics itself
//! ([`Scheme::native`]); for every other device [`run`] translates.
//! Availability is always hearth's to publish. Nothing here logs a payload,
//! a name or a topic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerError, HubMessage, Owner};
use crate::home::devices::Devices;
use crate::home::live::{DeviceState, LiveState};
use crate::home::vendor;
use crate::home::vendor::Scheme;
use crate::store::{DeviceId, DeviceKind};

/// The largest command payload read.
pub const MAX_COMMAND: usize = 1024;
/// How long a camera's canonical state says `"motion":true` (or a
/// doorbell's `"pressed":true`) after it last reported one: ten seconds,
/// what docs/homeassistant.md asks generic devices that hold events
/// themselves to use, so both kinds look the same in Home Assistant.
pub const EVENT_HOLD: Duration = Duration::from_secs(10);

pub fn state_topic(id: &DeviceId) -> String {
    format!("hearth/{id}/state")
}

pub fn set_topic(id: &DeviceId) -> String {
    format!("hearth/{id}/set")
}

pub fn availability_topic(id: &DeviceId) -> String {
    format!("hearth/{id}/availability")
}

pub fn snapshot_topic(id: &DeviceId) -> String {
    format!("hearth/{id}/snapshot")
}

/// Whether hearth knows what a device of `kind` would report: a light or
/// plug its power, a contact, water or climate sensor its reading. Until
/// then its canonical state is not published ("unknown" is what Home
/// Assistant should show, and a state without its key makes templates
/// warn). Motion and presses are events, known from the start.
pub fn state_known(kind: DeviceKind, s: &DeviceState) -> bool {
    match kind {
        DeviceKind::Camera | DeviceKind::Doorbell | DeviceKind::MotionSensor => true,
        DeviceKind::ContactSensor => s.open.is_some(),
        DeviceKind::WaterSensor => s.water.is_some(),
        DeviceKind::ClimateSensor => s.temperature.is_some() || s.humidity.is_some(),
        DeviceKind::Bulb | DeviceKind::LightStrip | DeviceKind::Plug | DeviceKind::Other => s.power.is_some(),
    }
}

/// A command on a canonical set topic: what it asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Command {
    pub power: Option<bool>,
    /// 0 to 255.
    pub brightness: Option<u8>,
    /// Mireds.
    pub color_temp: Option<u16>,
}

/// Reads a command: a JSON object with any of `state` (`ON`, `OFF`),
/// `brightness` (0 to 255) and `color_temp` (mireds, 100 to 1,000). Other
/// keys (Home Assistant sends `transition`, `color_mode`, ...) are ignored; a
/// known key with a bad value refuses the whole command, and so does a
/// command that asks for nothing.
pub fn parse_command(payload: &[u8]) -> Option<Command> {
    if payload.len() > MAX_COMMAND {
        return None;
    }
    let v: Map<String, Value> = serde_json::from_slice(payload).ok()?;
    let mut c = Command::default();
    if let Some(s) = v.get("state") {
        c.power = match s.as_str()? {
            s if s.eq_ignore_ascii_case("on") => Some(true),
            s if s.eq_ignore_ascii_case("off") => Some(false),
            _ => return None,
        };
    }
    if let Some(b) = v.get("brightness") {
        c.brightness = Some(u8::try_from(b.as_u64()?).ok()?);
    }
    if let Some(m) = v.get("color_temp") {
        c.color_temp = Some(m.as_u64().filter(|m| (100..=1000).contains(m))? as u16);
    }
    (c != Command::default()).then_some(c)
}

/// The canonical state of a device of `kind`, as JSON. `events` says
/// whether motion was seen, and the doorbell pressed, within [`EVENT_HOLD`].
pub fn state_json(kind: DeviceKind, s: &DeviceState, events: Events) -> String {
    let mut out = Map::new();
    if kind.is_sensor() {
        out.insert("online".into(), json!(s.online));
        if kind.senses_motion() {
            out.insert("motion".into(), json!(events.motion));
        }
        if kind == DeviceKind::Doorbell {
            out.insert("pressed".into(), json!(events.pressed));
        }
        if let Some(open) = s.open.filter(|_| kind == DeviceKind::ContactSensor) {
            out.insert("open".into(), json!(open));
        }
        if let Some(water) = s.water.filter(|_| kind == DeviceKind::WaterSensor) {
            out.insert("water".into(), json!(water));
        }
        if kind == DeviceKind::ClimateSensor {
            if let Some(t) = s.temperature {
                out.insert("temperature".into(), json!(f64::from(t) / 10.0));
            }
            if let Some(h) = s.humidity {
                out.insert("humidity".into(), json!(f64::from(h) / 10.0));
            }
        }
    } else {
        if let Some(on) = s.power {
            out.insert("state".into(), json!(if on { "ON" } else { "OFF" }));
        }
        if kind.dims() {
            if let Some(b) = s.brightness {
                out.insert("brightness".into(), json!(vendor::to_255(b)));
            }
            if let Some(m) = s.color_temp {
                out.insert("color_temp".into(), json!(m));
            }
            // Home Assistant's JSON light reads the mode it is in.
            if s.brightness.is_some() || s.color_temp.is_some() {
                let mode = if s.color_temp.is_some() {
                    "color_temp"
                } else {
                    "brightness"
                };
                out.insert("color_mode".into(), json!(mode));
            }
        }
    }
    Value::Object(out).to_string()
}

/// The events a sensor's canonical state holds for a while.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    pub motion: bool,
    pub pressed: bool,
}

/// An event held in the canonical state for [`EVENT_HOLD`] after it
/// happened.
#[derive(Default)]
struct Hold {
    /// The event's time as live state had it, last we looked.
    seen_at: Option<u64>,
    until: Option<Instant>,
}

impl Hold {
    /// Notes the event's latest time; one within the hold starts it.
    fn follow(&mut self, at: Option<u64>) {
        if at == self.seen_at {
            return;
        }
        self.seen_at = at;
        if let Some(at) = at {
            let age = Duration::from_secs(crate::home::live::unix_now().saturating_sub(at));
            if age < EVENT_HOLD {
                self.until = Some(Instant::now() + (EVENT_HOLD - age));
            }
        }
    }

    fn on(&self) -> bool {
        self.until.is_some()
    }

    /// Ends the hold if it is over; whether it did.
    fn expire(&mut self, now: Instant) -> bool {
        let over = self.until.is_some_and(|at| at <= now);
        if over {
            self.until = None;
        }
        over
    }
}

/// The vendor commands that carry out a canonical command for a device of
/// this scheme, in order. A brightness switches a light on (0 switches it
/// off), so `state` is only sent on its own when no brightness comes with
/// it, or when it is `OFF`. Things a device cannot do are left out.
pub fn vendor_commands(scheme: &Scheme, c: Command) -> Vec<(String, String)> {
    let (profile, base) = (scheme.profile, scheme.base.as_str());
    let dims = scheme.kind.dims();
    let mut out = Vec::new();
    if scheme.kind.is_sensor() {
        return out;
    }
    let brightness = c.brightness.filter(|_| dims && c.power != Some(false));
    match (c.power, brightness) {
        (Some(false), _) => out.push(crate::home::vendor::power_command(profile, base, false)),
        (_, Some(b)) => {
            // Never let a low but non-zero brightness round to "off".
            let level = if b == 0 { 0 } else { vendor::from_255(b).max(1) };
            out.push(vendor::brightness_command(profile, base, level));
        }
        (Some(true), None) => out.push(crate::home::vendor::power_command(profile, base, true)),
        (None, None) => {}
    }
    if let Some(m) = c.color_temp.filter(|_| dims && c.power != Some(false))
        && let Some(cmd) = vendor::color_temp_command(profile, base, m)
    {
        out.push(cmd);
    }
    out
}

/// A command as a canonical set topic carries it.
pub fn command_json(c: Command) -> String {
    let mut out = Map::new();
    if let Some(p) = c.power {
        out.insert("state".into(), (if p { "ON" } else { "OFF" }).into());
    }
    if let Some(b) = c.brightness {
        out.insert("brightness".into(), b.into());
    }
    if let Some(m) = c.color_temp {
        out.insert("color_temp".into(), m.into());
    }
    Value::Object(out).to_string()
}

/// Gives a device a canonical command from inside hearth (the voice relay):
/// published on its `hearth/<id>/set`, and, for a device that does not speak
/// the canonical scheme, carried out in its vendor's scheme exactly as a
/// command from Home Assistant is.
pub async fn dispatch(
    broker: &Broker,
    id: &DeviceId,
    scheme: &Scheme,
    c: Command,
) -> Result<(), BrokerError> {
    broker
        .publish(&set_topic(id), command_json(c).into(), 1, false)
        .await?;
    if !scheme.native(id) {
        for (topic, payload) in vendor_commands(scheme, c) {
            broker.publish(&topic, payload.into(), 1, false).await?;
        }
    }
    Ok(())
}

/// What was last published for a device.
#[derive(Default)]
struct Published {
    scheme: Option<Scheme>,
    state: Option<String>,
    online: Option<bool>,
    motion: Hold,
    press: Hold,
}

impl Published {
    fn next_expiry(&self) -> Option<Instant> {
        [self.motion.until, self.press.until].into_iter().flatten().min()
    }
}

/// Keeps the canonical topics of every adopted device up to date, and
/// carries canonical commands from Home Assistant to devices that do not
/// speak the scheme, until `token` is cancelled.
pub async fn run(devices: Arc<Devices>, live: Arc<LiveState>, broker: Arc<Broker>, token: CancellationToken) {
    let mut hub = broker.subscribe_hub();
    let mut changes = live.subscribe();
    let mut list = devices.subscribe_changes();
    let mut known: HashMap<DeviceId, Published> = HashMap::new();
    sync_devices(&devices, &live, &broker, &mut known).await;
    loop {
        let next_clear = known.values().filter_map(Published::next_expiry).min();
        let clear = async {
            match next_clear {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = token.cancelled() => return,
            changed = list.changed() => {
                if changed.is_err() {
                    return;
                }
                sync_devices(&devices, &live, &broker, &mut known).await;
            }
            change = changes.recv() => match change {
                Ok((id, state)) => {
                    if let Some(p) = known.get_mut(&id) {
                        publish(&broker, &id, p, &state).await;
                    }
                }
                Err(RecvError::Lagged(_)) => republish_all(&live, &broker, &mut known).await,
                Err(RecvError::Closed) => return,
            },
            msg = hub.recv() => match msg {
                Ok(msg) => command(&broker, &known, &msg).await,
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "canonical commands fell behind the hub");
                }
                Err(RecvError::Closed) => return,
            },
            _ = clear => {
                let now = Instant::now();
                let snapshot = live.snapshot();
                for (id, p) in known.iter_mut() {
                    // Both run: `|` does not short-circuit.
                    if p.motion.expire(now) | p.press.expire(now)
                        && let Some(state) = snapshot.get(id)
                    {
                        publish(&broker, id, p, state).await;
                    }
                }
            }
        }
    }
}

/// Follows the adopted device list: new devices get their topics, and a
/// forgotten device's retained state and availability are cleared.
async fn sync_devices(
    devices: &Devices,
    live: &LiveState,
    broker: &Broker,
    known: &mut HashMap<DeviceId, Published>,
) {
    let schemes = match devices.canonical_schemes().await {
        Ok(s) => s,
        Err(error) => {
            tracing::error!(%error, "canonical topics could not list the adopted devices");
            return;
        }
    };
    let current: HashMap<DeviceId, Scheme> = schemes.into_iter().collect();
    let gone: Vec<DeviceId> = known
        .keys()
        .filter(|id| !current.contains_key(*id))
        .cloned()
        .collect();
    for id in gone {
        known.remove(&id);
        for topic in [state_topic(&id), availability_topic(&id)] {
            send(broker, &topic, String::new()).await;
        }
    }
    let snapshot = live.snapshot();
    for (id, scheme) in current {
        let p = known.entry(id.clone()).or_default();
        if p.scheme.as_ref() != Some(&scheme) {
            p.scheme = Some(scheme);
            p.state = None;
            p.online = None;
        }
        let state = snapshot.get(&id).cloned().unwrap_or_default();
        publish(broker, &id, p, &state).await;
    }
}

async fn republish_all(live: &LiveState, broker: &Broker, known: &mut HashMap<DeviceId, Published>) {
    let snapshot = live.snapshot();
    for (id, p) in known.iter_mut() {
        if let Some(state) = snapshot.get(id) {
            publish(broker, id, p, state).await;
        }
    }
}

/// Publishes what changed in a device's canonical availability and state.
async fn publish(broker: &Broker, id: &DeviceId, p: &mut Published, s: &DeviceState) {
    let Some(scheme) = p.scheme.clone() else { return };
    if p.online != Some(s.online) {
        p.online = Some(s.online);
        let payload = if s.online { "online" } else { "offline" };
        send(broker, &availability_topic(id), payload.to_owned()).await;
    }
    p.motion.follow(s.last_motion_at);
    p.press.follow(s.last_press_at);
    if scheme.native(id) {
        return;
    }
    // A light or plug whose power is not known yet (after a restart, until
    // it reports) has no state to tell: Home Assistant's JSON light fails on
    // a state without `state`, and "unknown" is what it should show. So for
    // a sensor whose reading is not known.
    if !state_known(scheme.kind, s) {
        return;
    }
    let events = Events {
        motion: p.motion.on(),
        pressed: p.press.on(),
    };
    let state = state_json(scheme.kind, s, events);
    if p.state.as_deref() != Some(state.as_str()) {
        send(broker, &state_topic(id), state.clone()).await;
        p.state = Some(state);
    }
}

/// Retained, at least once; an empty payload clears the topic.
async fn send(broker: &Broker, topic: &str, payload: String) {
    if let Err(error) = broker.publish(topic, payload.into(), 1, true).await {
        tracing::warn!(%error, "a canonical topic could not be published");
    }
}

/// A canonical command from an integration, for a device that does not
/// obey the canonical topics itself. The broker's ACL has already decided
/// that the sender may publish there.
async fn command(broker: &Broker, known: &HashMap<DeviceId, Published>, msg: &HubMessage) {
    if !matches!(msg.from, Owner::HomeAssistant) {
        return;
    }
    let Some(id) = msg
        .topic
        .strip_prefix("hearth/")
        .and_then(|rest| rest.strip_suffix("/set"))
        .and_then(DeviceId::parse)
    else {
        return;
    };
    let Some(scheme) = known.get(&id).and_then(|p| p.scheme.as_ref()) else {
        return;
    };
    if scheme.native(&id) {
        return;
    }
    let Some(c) = parse_command(&msg.payload) else {
        tracing::debug!(device = %id, "a canonical command was not understood");
        return;
    };
    for (topic, payload) in vendor_commands(scheme, c) {
        if let Err(error) = broker.publish(&topic, payload.into(), 1, false).await {
            tracing::warn!(%error, device = %id, "a translated command could not be sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::vendor::Profile;

    fn scheme(kind: DeviceKind, profile: Profile) -> Scheme {
        Scheme {
            kind,
            profile,
            base: "b1".into(),
        }
    }

    #[test]
    fn commands_parse_and_refuse() {
        let c = |s: &str| parse_command(s.as_bytes());
        assert_eq!(
            c(r#"{"state":"ON","brightness":128,"color_temp":300,"transition":2}"#),
            Some(Command {
                power: Some(true),
                brightness: Some(128),
                color_temp: Some(300)
            })
        );
        assert_eq!(c(r#"{"state":"off"}"#).unwrap().power, Some(false));
        for bad in [
            "",
            "ON",
            "{}",
            "[]",
            r#"{"transition":2}"#,
            r#"{"state":"TOGGLE"}"#,
            r#"{"state":1}"#,
            r#"{"brightness":256}"#,
            r#"{"brightness":-1}"#,
            r#"{"brightness":"128"}"#,
            r#"{"color_temp":5000}"#,
            "\u{0}",
        ] {
            assert_eq!(c(bad), None, "{bad:?}");
        }
        let big = format!(r#"{{"state":"ON","pad":"{}"}}"#, "x".repeat(MAX_COMMAND));
        assert_eq!(c(&big), None);
    }

    #[test]
    fn state_is_what_is_known_on_the_canonical_scale() {
        let s = DeviceState {
            online: true,
            power: Some(true),
            brightness: Some(40),
            color_temp: Some(370),
            ..DeviceState::default()
        };
        let none = Events::default();
        let motion = Events {
            motion: true,
            pressed: false,
        };
        assert_eq!(
            state_json(DeviceKind::Bulb, &s, none),
            r#"{"brightness":102,"color_mode":"color_temp","color_temp":370,"state":"ON"}"#
        );
        assert_eq!(state_json(DeviceKind::Plug, &s, none), r#"{"state":"ON"}"#);
        assert_eq!(
            state_json(DeviceKind::Camera, &s, motion),
            r#"{"motion":true,"online":true}"#
        );
        assert_eq!(
            state_json(DeviceKind::Doorbell, &s, motion),
            r#"{"motion":true,"online":true,"pressed":false}"#
        );
        assert_eq!(state_json(DeviceKind::Bulb, &DeviceState::default(), none), "{}");
    }

    #[test]
    fn commands_become_vendor_commands() {
        let bulb = scheme(DeviceKind::Bulb, Profile::Tasmota);
        let on_dim = Command {
            power: Some(true),
            brightness: Some(128),
            color_temp: Some(300),
        };
        assert_eq!(
            vendor_commands(&bulb, on_dim),
            vec![
                ("cmnd/b1/Dimmer".to_owned(), "50".to_owned()),
                ("cmnd/b1/CT".to_owned(), "300".to_owned()),
            ]
        );
        // Off wins, and sends nothing else.
        let off = Command {
            power: Some(false),
            ..on_dim
        };
        assert_eq!(
            vendor_commands(&bulb, off),
            vec![("cmnd/b1/POWER".to_owned(), "OFF".to_owned())]
        );
        // The faintest brightness stays on.
        let faint = Command {
            brightness: Some(1),
            ..Command::default()
        };
        assert_eq!(
            vendor_commands(&bulb, faint),
            vec![("cmnd/b1/Dimmer".to_owned(), "1".to_owned())]
        );
        // A plug does not dim, and Shelly has no colour temperature.
        let plug = scheme(DeviceKind::Plug, Profile::Tasmota);
        assert_eq!(
            vendor_commands(&plug, on_dim),
            vec![("cmnd/b1/POWER".to_owned(), "ON".to_owned())]
        );
        let shelly = scheme(DeviceKind::Bulb, Profile::Shelly);
        assert_eq!(vendor_commands(&shelly, on_dim).len(), 1);
        // A camera is not switched.
        let cam = scheme(DeviceKind::Camera, Profile::Esphome);
        assert_eq!(
            vendor_commands(
                &cam,
                Command {
                    brightness: Some(9),
                    ..Command::default()
                }
            ),
            vec![]
        );
    }

    #[test]
    fn only_a_generic_device_on_its_own_id_is_native() {
        let id = DeviceId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let mut s = scheme(DeviceKind::Bulb, Profile::Generic);
        assert!(!s.native(&id));
        s.base = id.to_string();
        assert!(s.native(&id));
        s.profile = Profile::Esphome;
        assert!(!s.native(&id));
    }
}
