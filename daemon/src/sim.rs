//! The simulated home: mDNS announcements with the TXT records each vendor
//! really sends, and devices that speak their vendor's MQTT scheme. Used by
//! `hearth demo` and by the tests' `hearth-sim`.
//!
//! It announces only on the address it is given (loopback for the demo),
//! never onto a LAN it was not asked to use.

use std::collections::HashMap;
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};

use crate::home::vendor;
use crate::home::vendor::Profile;

/// (service type, instance, port, TXT)
pub type Announcement = (
    &'static str,
    &'static str,
    u16,
    &'static [(&'static str, &'static str)],
);

/// The simulated home.
pub const HOME: &[Announcement] = &[
    (
        "_hap._tcp",
        "Sim Bulb",
        51827,
        &[
            ("c#", "3"),
            ("ci", "5"),
            ("id", "5A:1B:2C:3D:4E:01"),
            ("md", "SimBulb A19"),
            ("fv", "1.2.0"),
            ("sf", "1"),
            ("s#", "1"),
        ],
    ),
    (
        "_esphomelib._tcp",
        "sim-porch-light",
        6053,
        &[
            ("mac", "5a1b2c3d4e06"),
            ("version", "2024.6.1"),
            ("platform", "ESP32"),
            ("board", "esp32dev"),
            ("friendly_name", "Porch Light"),
            ("project_name", "Simhome.Smart Light"),
            ("network", "wifi"),
        ],
    ),
    (
        "_shelly._tcp",
        "shellyplusduo-5a1b2c3d4e08",
        80,
        &[("gen", "2"), ("app", "PlusDuo"), ("ver", "1.4.4")],
    ),
    // Tasmota says only what it is; its name is its default host name.
    (
        "_http._tcp",
        "tasmota-bulb-4E05-1234",
        80,
        &[("devicetype", "tasmota")],
    ),
    (
        "_hap._tcp",
        "Sim Camera",
        51828,
        &[
            ("c#", "2"),
            ("ci", "17"),
            ("id", "5A:1B:2C:3D:4E:02"),
            ("md", "SimCam 2"),
            ("sf", "1"),
            ("s#", "1"),
        ],
    ),
    ("_rtsp._tcp", "Sim Garden Cam", 554, &[]),
    (
        "_shelly._tcp",
        "shellyplusplugs-5a1b2c3d4e04",
        80,
        &[
            ("gen", "2"),
            ("app", "PlusPlugS"),
            ("ver", "1.4.4"),
            ("arch", "esp8266"),
        ],
    ),
    (
        "_hap._tcp",
        "Sim Doorbell",
        51829,
        &[
            ("c#", "2"),
            ("ci", "18"),
            ("id", "5A:1B:2C:3D:4E:03"),
            ("md", "SimBell"),
            ("sf", "1"),
            ("s#", "1"),
        ],
    ),
];

/// The bulb's HomeKit id under another name: what `spoof` announces.
pub fn spoof() -> Vec<Announcement> {
    vec![("_hap._tcp", "Sim Bulb 2", 51830, HOME[0].3)]
}

/// An mDNS daemon on the interface that holds `address` only.
fn daemon_on(address: std::net::IpAddr) -> ServiceDaemon {
    let daemon = ServiceDaemon::new().expect("mDNS daemon");
    daemon.disable_interface(IfKind::All).expect("interfaces");
    if address.is_loopback() {
        daemon.enable_interface(IfKind::LoopbackV4).expect("loopback");
        daemon.set_multicast_loop_v4(true).expect("multicast loop");
    } else {
        daemon.enable_interface(IfKind::Addr(address)).expect("interface");
    }
    daemon
}

/// Prints `resolved <port> txt=<entries>` for the first instance of `ty`
/// heard within `seconds`, as an owner's tools would see hearth on the LAN.
/// With `all`, it keeps browsing for the whole time and prints how many
/// instances resolved: the benchmarks' reference mDNS browser.
pub fn browse(ty: &str, address: std::net::IpAddr, seconds: u64, all: bool) {
    let daemon = daemon_on(address);
    let events = daemon.browse(&format!("{ty}.local.")).expect("browse");
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    let mut resolved = 0u64;
    while let Ok(event) = events.recv_deadline(deadline) {
        if let mdns_sd::ServiceEvent::ServiceResolved(s) = event {
            resolved += 1;
            if all {
                continue;
            }
            let txt: Vec<String> = s
                .txt_properties
                .iter()
                .map(|p| format!("{}={}", p.key(), p.val_str()))
                .collect();
            println!("resolved {} txt={} {}", s.port, txt.len(), txt.join(","));
            break;
        }
    }
    if all {
        println!("resolved {resolved}");
    }
    let _ = daemon.shutdown();
}

/// Announces `home` from `address` until the returned daemon is shut down.
pub fn announce(home: &[Announcement], address: std::net::IpAddr) -> ServiceDaemon {
    let daemon = daemon_on(address);
    for (i, (ty, instance, port, txt)) in home.iter().enumerate() {
        let props: HashMap<String, String> = txt.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        let host = format!("sim-{}-{i}.local.", address.to_string().replace(['.', ':'], "-"));
        let info = ServiceInfo::new(&format!("{ty}.local."), instance, &host, address, *port, props)
            .expect("service info");
        daemon.register(info).expect("register");
    }
    daemon
}

/// The device side of each vendor's scheme: (subscribe, lwt topic, lwt
/// offline, online payload).
fn scheme(profile: Profile, base: &str) -> (String, String, &'static str, &'static str) {
    match profile {
        Profile::Tasmota => (
            format!("cmnd/{base}/#"),
            format!("tele/{base}/LWT"),
            "Offline",
            "Online",
        ),
        Profile::Shelly => (format!("{base}/rpc"), format!("{base}/online"), "false", "true"),
        Profile::Esphome => (
            format!("{base}/light/main/command"),
            format!("{base}/status"),
            "offline",
            "online",
        ),
        Profile::Generic => (
            format!("hearth/{base}/set"),
            format!("hearth/{base}/availability"),
            "offline",
            "online",
        ),
    }
}

/// What a simulated device is doing. `brightness` (0 to 100) and
/// `color_temp` (mireds) only matter for a light.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Light {
    on: bool,
    brightness: u8,
    color_temp: u16,
}

/// A command, as read from the vendor's format: what it sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Command {
    power: Option<bool>,
    brightness: Option<u8>,
    color_temp: Option<u16>,
}

impl Command {
    fn some(self) -> Option<Command> {
        (self.power.is_some() || self.brightness.is_some() || self.color_temp.is_some()).then_some(self)
    }

    /// The state after obeying: a brightness alone switches the light on,
    /// or off at 0, as `vendor::brightness_command` promises.
    fn obey(self, current: Light) -> Light {
        let mut next = current;
        if let Some(b) = self.brightness {
            next.brightness = b;
            next.on = b > 0;
        }
        if let Some(on) = self.power {
            next.on = on;
        }
        if let Some(m) = self.color_temp {
            next.color_temp = m;
        }
        next
    }
}

/// Reads a command on `topic` in the vendor's format. A device that is not
/// `dimmable` ignores brightness, as a plug would.
fn command(profile: Profile, dimmable: bool, topic: &str, payload: &[u8], current: Light) -> Option<Command> {
    let text = std::str::from_utf8(payload).ok()?.trim();
    let level = |v: &serde_json::Value| v.as_u64().filter(|l| *l <= 100).map(|l| l as u8);
    let mut c = Command::default();
    match profile {
        Profile::Tasmota => {
            // Tasmota's command names are case-insensitive.
            let name = topic.rsplit('/').next()?.to_ascii_uppercase();
            match name.as_str() {
                "POWER" => {
                    c.power = match text.to_ascii_uppercase().as_str() {
                        "ON" | "1" => Some(true),
                        "OFF" | "0" => Some(false),
                        "TOGGLE" | "2" => Some(!current.on),
                        _ => None,
                    }
                }
                "DIMMER" if dimmable => c.brightness = text.parse().ok().filter(|l| *l <= 100),
                "CT" if dimmable => c.color_temp = text.parse().ok().filter(|m| vendor::MIREDS.contains(m)),
                _ => {}
            }
        }
        Profile::Shelly => {
            let v: serde_json::Value = serde_json::from_str(text).ok()?;
            let params = &v["params"];
            match v["method"].as_str()? {
                "Switch.Set" => c.power = params["on"].as_bool(),
                "Light.Set" if dimmable => {
                    c.power = params["on"].as_bool();
                    c.brightness = level(&params["brightness"]);
                }
                _ => {}
            }
        }
        Profile::Esphome | Profile::Generic => {
            let v: serde_json::Value = serde_json::from_str(text).ok()?;
            c.power = match v["state"].as_str() {
                Some("ON") => Some(true),
                Some("OFF") => Some(false),
                _ => None,
            };
            // Both on ESPHome's scale: brightness 0..255, mireds.
            if dimmable {
                c.brightness = v["brightness"]
                    .as_u64()
                    .and_then(|b| u8::try_from(b).ok())
                    .map(vendor::from_255);
                c.color_temp = v["color_temp"]
                    .as_u64()
                    .and_then(|m| u16::try_from(m).ok())
                    .filter(|m| vendor::MIREDS.contains(m));
            }
        }
    }
    c.some()
}

/// Seconds since the epoch, as Shelly's `ts`.
fn now_ts() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() / 10) as f64 / 100.0)
        .unwrap_or(0.0)
}

/// The messages a device publishes about its state, in the vendor's
/// format: (topic, payload). `at_connect` is the report at each connection,
/// otherwise it answers a command; `power_news` says the command was about
/// power or changed it.
///
/// - Tasmota: `tele/<t>/STATE` at connect; after a command
///   `stat/<t>/RESULT`, and `stat/<t>/POWER` when the power was commanded
///   or changed.
/// - Shelly Gen2: the component's whole status on `<id>/status/<c>:0` and,
///   when it changed, a `NotifyStatus` on `<id>/events/rpc`.
/// - ESPHome: the light's JSON on `<name>/light/main/state`, as its light
///   JSON schema writes it (`color_mode` first, an empty `color` object).
/// - Generic: the whole canonical state on `hearth/<id>/state`.
fn report(
    profile: Profile,
    base: &str,
    light: Light,
    dimmable: bool,
    at_connect: bool,
    power_news: bool,
) -> Vec<(String, String)> {
    let Light {
        on,
        brightness,
        color_temp,
    } = light;
    let state = if on { "ON" } else { "OFF" };
    match profile {
        Profile::Tasmota => {
            let fields = if dimmable {
                format!(r#""POWER":"{state}","Dimmer":{brightness},"CT":{color_temp}"#)
            } else {
                format!(r#""POWER":"{state}""#)
            };
            if at_connect {
                vec![(
                    format!("tele/{base}/STATE"),
                    format!(
                        r#"{{"Uptime":"0T00:00:01","UptimeSec":1,{fields},"Wifi":{{"AP":1,"RSSI":70,"Signal":-65}}}}"#
                    ),
                )]
            } else {
                let mut out = vec![(format!("stat/{base}/RESULT"), format!("{{{fields}}}"))];
                if power_news {
                    out.push((format!("stat/{base}/POWER"), state.to_owned()));
                }
                out
            }
        }
        Profile::Shelly => {
            let (component, status) = if dimmable {
                (
                    "light:0",
                    format!(r#"{{"id":0,"source":"MQTT","output":{on},"brightness":{brightness}}}"#),
                )
            } else {
                ("switch:0", format!(r#"{{"id":0,"source":"MQTT","output":{on}}}"#))
            };
            let mut out = vec![(format!("{base}/status/{component}"), status.clone())];
            if !at_connect {
                out.push((
                    format!("{base}/events/rpc"),
                    format!(
                        r#"{{"src":"{base}","dst":"{base}/events","method":"NotifyStatus","params":{{"ts":{},"{component}":{status}}}}}"#,
                        now_ts()
                    ),
                ));
            }
            out
        }
        Profile::Esphome if dimmable => vec![(
            format!("{base}/light/main/state"),
            format!(
                r#"{{"color_mode":"color_temp","state":"{state}","brightness":{},"color":{{}},"color_temp":{color_temp}}}"#,
                vendor::to_255(brightness)
            ),
        )],
        Profile::Esphome => vec![(
            format!("{base}/light/main/state"),
            format!(r#"{{"color_mode":"onoff","state":"{state}","color":{{}}}}"#),
        )],
        Profile::Generic if dimmable => vec![(
            format!("hearth/{base}/state"),
            format!(
                r#"{{"state":"{state}","brightness":{},"color_temp":{color_temp},"color_mode":"color_temp"}}"#,
                vendor::to_255(brightness)
            ),
        )],
        Profile::Generic => vec![(
            format!("hearth/{base}/state"),
            format!(r#"{{"state":"{state}"}}"#),
        )],
    }
}

/// A Shelly's answer to an RPC on `<id>/rpc`: the request's `id`, and the
/// `result`, published on `<src>/rpc`. `None` for a request it does not
/// answer, or whose `src` lies outside the device's own subtree (the broker
/// would refuse that publish, as it would a real Shelly's).
fn rpc_answer(base: &str, payload: &[u8], was_on: bool) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let id = v.get("id").filter(|id| id.is_u64() || id.is_string())?;
    let src = v.get("src")?.as_str()?;
    if !src.starts_with(&format!("{base}/")) || src.contains(['+', '#']) {
        return None;
    }
    let result = match v.get("method")?.as_str()? {
        "Switch.Set" => format!(r#"{{"was_on":{was_on}}}"#),
        "Light.Set" => "null".to_owned(),
        _ => return None,
    };
    Some((
        format!("{src}/rpc"),
        format!(r#"{{"id":{id},"src":"{base}","dst":"{src}","result":{result}}}"#),
    ))
}

/// A simulated sensor's reading at `step` (0 at each connection, then one
/// more every 20 to 40 s): a climate sensor's slow drift, a door opened
/// and closed in turn, a leak now and then.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reading {
    Climate { celsius: f64, percent: f64 },
    Contact { open: bool },
    Water { wet: bool },
}

impl Reading {
    fn at(kind: &str, step: u32) -> Option<Reading> {
        Some(match kind {
            "climate_sensor" => Reading::Climate {
                celsius: 21.0 + f64::from(step % 7) * 0.3 - 0.9,
                percent: 45.0 + f64::from(step % 5) * 0.8,
            },
            "contact_sensor" => Reading::Contact { open: step % 2 == 1 },
            "water_sensor" => Reading::Water { wet: step % 6 == 5 },
            _ => return None,
        })
    }

    /// What the simulator prints, for whoever watches it.
    fn line(self) -> String {
        match self {
            Reading::Climate { celsius, percent } => {
                format!("temperature {celsius:.1} humidity {percent:.1}")
            }
            Reading::Contact { open } => (if open { "open" } else { "closed" }).to_owned(),
            Reading::Water { wet } => (if wet { "water" } else { "dry" }).to_owned(),
        }
    }

    /// The messages that carry it in the vendor's scheme: (topic, payload),
    /// retained where the firmware retains them. Empty where the scheme
    /// has no such sensor: Shelly Gen2 has no contact component, Tasmota
    /// reports only climate readings in its `SENSOR` telemetry.
    fn messages(self, profile: Profile, base: &str, at_connect: bool) -> Vec<(String, String, bool)> {
        let on_off = |b: bool| (if b { "ON" } else { "OFF" }).to_owned();
        match (profile, self) {
            (Profile::Generic, r) => {
                let fields = match r {
                    Reading::Climate { celsius, percent } => {
                        format!(r#""temperature":{celsius:.1},"humidity":{percent:.1}"#)
                    }
                    Reading::Contact { open } => format!(r#""open":{open}"#),
                    Reading::Water { wet } => format!(r#""water":{wet}"#),
                };
                vec![(
                    format!("hearth/{base}/state"),
                    format!(r#"{{"online":true,{fields}}}"#),
                    true,
                )]
            }
            // ESPHome retains its states unless told otherwise.
            (Profile::Esphome, Reading::Climate { celsius, percent }) => vec![
                (
                    format!("{base}/sensor/temperature/state"),
                    format!("{celsius:.1}"),
                    true,
                ),
                (
                    format!("{base}/sensor/humidity/state"),
                    format!("{percent:.1}"),
                    true,
                ),
            ],
            (Profile::Esphome, Reading::Contact { open }) => {
                vec![(format!("{base}/binary_sensor/door/state"), on_off(open), true)]
            }
            (Profile::Esphome, Reading::Water { wet }) => {
                vec![(format!("{base}/binary_sensor/leak/state"), on_off(wet), true)]
            }
            (Profile::Tasmota, Reading::Climate { celsius, percent }) => vec![(
                format!("tele/{base}/SENSOR"),
                format!(
                    r#"{{"AM2301":{{"Temperature":{celsius:.1},"Humidity":{percent:.1}}},"TempUnit":"C"}}"#
                ),
                false,
            )],
            (Profile::Shelly, r @ (Reading::Climate { .. } | Reading::Water { .. })) => {
                let components = match r {
                    Reading::Climate { celsius, percent } => vec![
                        (
                            "temperature:0",
                            format!(
                                r#"{{"id":0,"tC":{celsius:.1},"tF":{:.1}}}"#,
                                celsius * 9.0 / 5.0 + 32.0
                            ),
                        ),
                        ("humidity:0", format!(r#"{{"id":0,"rh":{percent:.1}}}"#)),
                    ],
                    _ => {
                        let wet = matches!(r, Reading::Water { wet: true });
                        vec![("flood:0", format!(r#"{{"id":0,"alarm":{wet},"mute":false}}"#))]
                    }
                };
                let params: Vec<String> = components.iter().map(|(c, s)| format!(r#""{c}":{s}"#)).collect();
                let method = if at_connect {
                    "NotifyFullStatus"
                } else {
                    "NotifyStatus"
                };
                let mut out: Vec<(String, String, bool)> = components
                    .into_iter()
                    .map(|(c, s)| (format!("{base}/status/{c}"), s, false))
                    .collect();
                out.push((
                    format!("{base}/events/rpc"),
                    format!(
                        r#"{{"src":"{base}","dst":"{base}/events","method":"{method}","params":{{"ts":{},{}}}}}"#,
                        now_ts(),
                        params.join(",")
                    ),
                    false,
                ));
                out
            }
            _ => Vec::new(),
        }
    }
}

/// How long a simulated motion sensor reports motion before it clears.
const MOTION_LASTS: Duration = Duration::from_secs(3);

/// Where a device of `profile` reports motion: the topic, the payload that
/// says motion is seen, and the one that says it has passed (the topics
/// `vendor::parse_state` reads). Tasmota and Shelly have no motion topic of
/// their own there.
fn motion_event(profile: Profile, kind: &str, base: &str) -> Option<(String, &'static str, &'static str)> {
    match profile {
        // hearth's generic scheme is the canonical one: each state message
        // is the whole state, so a doorbell's press and its motion travel
        // together (a message with one key would reset the other).
        Profile::Generic if kind == "doorbell" => Some((
            format!("hearth/{base}/state"),
            r#"{"online":true,"motion":true,"pressed":true}"#,
            r#"{"online":true,"motion":false,"pressed":false}"#,
        )),
        Profile::Generic => Some((
            format!("hearth/{base}/state"),
            r#"{"online":true,"motion":true}"#,
            r#"{"online":true,"motion":false}"#,
        )),
        Profile::Esphome => Some((format!("{base}/binary_sensor/motion/state"), "ON", "OFF")),
        Profile::Tasmota | Profile::Shelly => None,
    }
}

/// Where a doorbell of `profile` reports a press, and the payloads for
/// pressed and released.
fn press_event(profile: Profile, base: &str) -> Option<(String, &'static str, &'static str)> {
    match profile {
        // Sent with the motion, in one whole state (see `motion_event`).
        Profile::Generic => None,
        Profile::Esphome => Some((format!("{base}/binary_sensor/button/state"), "ON", "OFF")),
        Profile::Tasmota | Profile::Shelly => None,
    }
}

/// A small grey PNG (16 × 12, 8-bit greyscale, stored without
/// compression): what a simulated camera sends as its snapshot.
pub fn snapshot_png() -> Vec<u8> {
    const W: usize = 16;
    const H: usize = 12;
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    // Each row: filter byte 0, then a gentle gradient.
    let mut raw = Vec::with_capacity(H * (W + 1));
    for y in 0..H {
        raw.push(0);
        raw.extend((0..W).map(|x| (96 + 8 * x + 4 * y) as u8));
    }
    // zlib: header, one stored deflate block, Adler-32.
    let mut z = vec![0x78, 0x01, 0x01];
    z.extend_from_slice(&(raw.len() as u16).to_le_bytes());
    z.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
    z.extend_from_slice(&raw);
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(W as u32).to_be_bytes());
    ihdr.extend_from_slice(&(H as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &z);
    chunk(&mut png, b"IEND", &[]);
    png
}

/// A random wait between `low` and `high` milliseconds, so simulated
/// cameras do not all see motion at once.
fn jitter(low: u64, high: u64) -> Duration {
    let mut b = [0u8; 8];
    let r = match crate::store::crypto::fill_random(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => (high - low) / 2,
    };
    Duration::from_millis(low + r % (high - low + 1))
}

/// Prints a line and flushes, for whoever watches the simulator.
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// One simulated device, given what `devices adopt --json` printed. Runs
/// until `stop` resolves, reporting through `report_line`: `connected`,
/// `state ON|OFF` after each power command (or a brightness that switched
/// it), `brightness N` when a light's brightness changes, `motion` when a
/// camera, doorbell or motion sensor sees some, a sensor's reading
/// (`temperature T humidity H`, `open`/`closed`, `water`/`dry`),
/// `disconnected` and `refused`.
///
/// At each connection it publishes its online status (retained, with the
/// offline status as its last will) and its state. Lights obey brightness
/// commands; a Shelly answers each RPC on its `src`'s `rpc` topic; cameras,
/// doorbells and motion sensors report motion a few seconds after
/// connecting and then every 20 to 40 s; climate, contact and water sensors
/// report a reading at each connection and a new one every 20 to 40 s.
///
/// Like most device firmware it leaves Nagle's algorithm on, unless `p`
/// carries `"tcp_nodelay": true` (the benchmarks measure both).
pub async fn device(
    p: serde_json::Value,
    host: String,
    stop: impl std::future::Future<Output = ()>,
    report_line: impl Fn(&str),
) {
    let (_keep, switch) = tokio::sync::mpsc::unbounded_channel();
    device_with_switch(p, host, stop, report_line, switch).await
}

/// [`device`], whose light or plug someone also switches by hand: each
/// message on `switch` flips it on its own side, and it reports its new
/// state as its firmware would (`state ON|OFF` is said too).
pub async fn device_with_switch(
    p: serde_json::Value,
    host: String,
    stop: impl std::future::Future<Output = ()>,
    report_line: impl Fn(&str),
    mut switch: tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    use rumqttc::{
        AsyncClient, ConnectionError, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
    };
    use rustls::pki_types::pem::PemObject;

    let profile = Profile::parse(p["profile"].as_str().expect("profile")).unwrap_or(Profile::Generic);
    let kind = p["kind"].as_str().unwrap_or("other");
    let dimmable = matches!(kind, "bulb" | "light_strip");
    let base = base_of(&p, profile);
    let camera = matches!(kind, "camera" | "doorbell");
    let motion = if camera || kind == "motion_sensor" {
        motion_event(profile, kind, &base)
    } else {
        None
    };
    // hearth's generic scheme is the canonical one: state retained, and an
    // event held as long as hearth holds one for a translated device.
    let retain_state = profile == Profile::Generic;
    let idle_sensor = motion
        .as_ref()
        .filter(|_| profile == Profile::Generic)
        .map(|(topic, _, idle)| (topic.clone(), (*idle).to_owned()));
    // A contact, water or climate sensor reports readings, and obeys no
    // command.
    let sensor = Reading::at(kind, 0).is_some();
    let step = std::sync::atomic::AtomicU32::new(0);
    let motion_lasts = if profile == Profile::Generic {
        crate::home::canonical::EVENT_HOLD
    } else {
        MOTION_LASTS
    };
    let m = &p["mqtt"];
    let pem = std::fs::read(m["ca_cert"].as_str().expect("ca_cert")).expect("read CA");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("CA")).expect("CA");
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let (subscribe, lwt, offline, online) = scheme(profile, &base);
    let mut opts = MqttOptions::new(
        m["client_id"].as_str().unwrap(),
        host,
        m["port"].as_u64().unwrap() as u16,
    );
    opts.set_credentials(m["username"].as_str().unwrap(), m["password"].as_str().unwrap());
    opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(std::sync::Arc::new(tls))));
    opts.set_last_will(LastWill::new(&lwt, offline, QoS::AtLeastOnce, true));
    let (client, mut events) = AsyncClient::new(opts, 64);
    if p["tcp_nodelay"].as_bool() == Some(true) {
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        events.set_network_options(net);
    }
    // Set at each CONNACK, for the motion loop; the event loop is never
    // cancelled but at `stop`, so a packet is never cut off half-written.
    let connected = std::sync::atomic::AtomicBool::new(false);
    let connects = tokio::sync::Notify::new();

    let shared = std::sync::Mutex::new(Light {
        on: false,
        brightness: 100,
        color_temp: 370,
    });
    let protocol = async {
        loop {
            let event = events.poll().await;
            // Read after the wait: the device may have been switched by
            // hand meanwhile.
            let light = *shared.lock().expect("light");
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected.store(true, std::sync::atomic::Ordering::SeqCst);
                    connects.notify_one();
                    client
                        .subscribe(&subscribe, QoS::AtLeastOnce)
                        .await
                        .expect("subscribe");
                    client
                        .publish(&lwt, QoS::AtLeastOnce, true, online)
                        .await
                        .expect("online");
                    // A generic camera's or doorbell's state is its sensors',
                    // idle at first; a sensor reports its reading.
                    let mut reading_line = None;
                    if let Some(reading) = Reading::at(kind, 0) {
                        step.store(0, std::sync::atomic::Ordering::SeqCst);
                        for (topic, payload, retain) in reading.messages(profile, &base, true) {
                            client
                                .publish(topic, QoS::AtLeastOnce, retain, payload)
                                .await
                                .expect("reading");
                        }
                        reading_line = Some(reading.line());
                    } else {
                        let reports = match idle_sensor.clone() {
                            Some(idle) => vec![idle],
                            None => report(profile, &base, light, dimmable, true, true),
                        };
                        for (topic, payload) in reports {
                            client
                                .publish(topic, QoS::AtLeastOnce, retain_state, payload)
                                .await
                                .expect("report");
                        }
                    }
                    // A generic camera keeps its latest snapshot retained.
                    if camera && profile == Profile::Generic {
                        client
                            .publish(
                                format!("hearth/{base}/snapshot"),
                                QoS::AtLeastOnce,
                                true,
                                snapshot_png(),
                            )
                            .await
                            .expect("snapshot");
                    }
                    report_line("connected");
                    if let Some(line) = reading_line {
                        report_line(&line);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(msg))) => {
                    if sensor {
                        continue;
                    }
                    // A Shelly answers an RPC to its `src`, whatever it did.
                    let answer = (profile == Profile::Shelly)
                        .then(|| rpc_answer(&base, &msg.payload, light.on))
                        .flatten();
                    if let Some((topic, payload)) = answer {
                        client
                            .publish(topic, QoS::AtLeastOnce, false, payload)
                            .await
                            .expect("answer");
                    }
                    let Some(c) = command(profile, dimmable, &msg.topic, &msg.payload, light) else {
                        continue;
                    };
                    let next = c.obey(light);
                    let power_news = c.power.is_some() || next.on != light.on;
                    for (topic, payload) in report(profile, &base, next, dimmable, false, power_news) {
                        client
                            .publish(topic, QoS::AtLeastOnce, retain_state, payload)
                            .await
                            .expect("report");
                    }
                    if c.power.is_some() || next.on != light.on {
                        report_line(if next.on { "state ON" } else { "state OFF" });
                    }
                    if next.brightness != light.brightness {
                        report_line(&format!("brightness {}", next.brightness));
                    }
                    if next.color_temp != light.color_temp {
                        report_line(&format!("color_temp {}", next.color_temp));
                    }
                    *shared.lock().expect("light") = next;
                }
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(_)) => {
                    report_line("refused");
                    return;
                }
                Err(_) => {
                    if connected.swap(false, std::sync::atomic::Ordering::SeqCst) {
                        report_line("disconnected");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    };

    let motion = async {
        let Some((topic, seen, passed)) = motion else {
            return std::future::pending().await;
        };
        loop {
            connects.notified().await;
            // Once shortly after each connection, then now and then.
            let mut wait = jitter(2_000, 5_000);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = connects.notified() => {
                        wait = jitter(2_000, 5_000);
                        continue;
                    }
                }
                if !connected.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                client
                    .publish(&topic, QoS::AtLeastOnce, retain_state, seen)
                    .await
                    .expect("motion");
                report_line("motion");
                // Someone came to the door, and rings.
                let press = press_event(profile, &base).filter(|_| kind == "doorbell");
                if let Some((topic, pressed, _)) = &press {
                    client
                        .publish(topic, QoS::AtLeastOnce, false, *pressed)
                        .await
                        .expect("press");
                }
                if kind == "doorbell" && (press.is_some() || profile == Profile::Generic) {
                    report_line("press");
                }
                // A sensor says when the event has passed, too.
                tokio::time::sleep(motion_lasts).await;
                if connected.load(std::sync::atomic::Ordering::SeqCst) {
                    client
                        .publish(&topic, QoS::AtLeastOnce, retain_state, passed)
                        .await
                        .expect("motion passed");
                    if let Some((topic, _, released)) = &press {
                        client
                            .publish(topic, QoS::AtLeastOnce, false, *released)
                            .await
                            .expect("press passed");
                    }
                }
                wait = jitter(20_000, 40_000);
            }
        }
    };

    let readings = async {
        if !sensor {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(jitter(20_000, 40_000)).await;
            if !connected.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            let n = step.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let Some(reading) = Reading::at(kind, n) else {
                return;
            };
            for (topic, payload, retain) in reading.messages(profile, &base, false) {
                client
                    .publish(topic, QoS::AtLeastOnce, retain, payload)
                    .await
                    .expect("reading");
            }
            report_line(&reading.line());
        }
    };

    let by_hand = async {
        if sensor || camera {
            return std::future::pending().await;
        }
        while switch.recv().await.is_some() {
            let mut light = *shared.lock().expect("light");
            light.on = !light.on;
            *shared.lock().expect("light") = light;
            for (topic, payload) in report(profile, &base, light, dimmable, false, true) {
                client
                    .publish(topic, QoS::AtLeastOnce, retain_state, payload)
                    .await
                    .expect("report");
            }
            report_line(if light.on { "state ON" } else { "state OFF" });
        }
        std::future::pending().await
    };

    tokio::select! {
        _ = stop => {}
        _ = protocol => {}
        _ = motion => {}
        _ = readings => {}
        _ = by_hand => {}
    }
}

/// The topic base from the provisioning's first topic filter: the level
/// after the scheme's prefix, if it has one.
fn base_of(p: &serde_json::Value, profile: Profile) -> String {
    let first = p["topics"][0].as_str().expect("topics");
    let levels: Vec<&str> = first.split('/').collect();
    match profile {
        Profile::Shelly | Profile::Esphome => levels[0],
        Profile::Tasmota | Profile::Generic => levels.get(1).copied().unwrap_or(levels[0]),
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::vendor::{brightness_command, parse_state};

    const OFF: Light = Light {
        on: false,
        brightness: 100,
        color_temp: 370,
    };

    /// What hearth reads from a batch of messages, later ones over earlier.
    #[track_caller]
    fn read_all<'a>(
        profile: Profile,
        messages: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> crate::home::vendor::StateUpdate {
        let mut all = crate::home::vendor::StateUpdate::default();
        for (topic, payload) in messages {
            let u = parse_state(profile, "b1", topic, payload.as_bytes())
                .unwrap_or_else(|| panic!("{profile} {topic} {payload} is read"));
            all.online = u.online.or(all.online);
            all.power = u.power.or(all.power);
            all.brightness = u.brightness.or(all.brightness);
            all.color_temp = u.color_temp.or(all.color_temp);
            all.motion |= u.motion;
            all.open = u.open.or(all.open);
            all.water = u.water.or(all.water);
            all.temperature = u.temperature.or(all.temperature);
            all.humidity = u.humidity.or(all.humidity);
        }
        all
    }

    fn pairs(v: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
        v.iter().map(|(t, p)| (t.as_str(), p.as_str()))
    }

    /// What hearth sends, the simulator obeys, and what the simulator
    /// reports, hearth reads back: both sides of every vendor's scheme.
    #[test]
    fn brightness_and_power_round_trip_through_each_scheme() {
        for profile in Profile::ALL {
            let (topic, payload) = brightness_command(profile, "b1", 40);
            let c = command(profile, true, &topic, payload.as_bytes(), OFF).expect("a command");
            let lit = c.obey(OFF);
            assert_eq!(
                lit,
                Light {
                    on: true,
                    brightness: 40,
                    color_temp: 370,
                },
                "{profile}"
            );
            for at_connect in [false, true] {
                let messages = report(profile, "b1", lit, true, at_connect, true);
                let u = read_all(profile, pairs(&messages));
                assert_eq!((u.power, u.brightness), (Some(true), Some(40)), "{profile}");
            }

            let (topic, payload) = brightness_command(profile, "b1", 0);
            let dark = command(profile, true, &topic, payload.as_bytes(), lit)
                .expect("a command")
                .obey(lit);
            assert!(!dark.on, "{profile}");

            let (topic, payload) = crate::home::vendor::power_command(profile, "b1", true);
            let on = command(profile, true, &topic, payload.as_bytes(), dark)
                .expect("a command")
                .obey(dark);
            assert!(on.on, "{profile}");
            let messages = report(profile, "b1", on, false, false, true);
            let u = read_all(profile, pairs(&messages));
            assert_eq!(u.power, Some(true), "{profile}");

            // A plug does not dim.
            let (topic, payload) = brightness_command(profile, "b1", 40);
            let plug = command(profile, false, &topic, payload.as_bytes(), OFF);
            assert!(plug.is_none_or(|c| c.brightness.is_none()), "{profile}");
        }
    }

    #[test]
    fn colour_temperature_round_trips_where_the_scheme_has_it() {
        for profile in Profile::ALL {
            let Some((topic, payload)) = crate::home::vendor::color_temp_command(profile, "b1", 250) else {
                assert_eq!(profile, Profile::Shelly);
                continue;
            };
            let warm = command(profile, true, &topic, payload.as_bytes(), OFF)
                .expect("a command")
                .obey(OFF);
            assert_eq!(warm.color_temp, 250, "{profile}");
            let messages = report(profile, "b1", warm, true, false, false);
            let u = read_all(profile, pairs(&messages));
            assert_eq!(u.color_temp, Some(250), "{profile}");
        }
    }

    #[test]
    fn motion_and_online_are_what_hearth_reads() {
        for profile in Profile::ALL {
            let (_, lwt, offline, online) = scheme(profile, "b1");
            let u = parse_state(profile, "b1", &lwt, online.as_bytes()).expect("online");
            assert_eq!(u.online, Some(true), "{profile}");
            let u = parse_state(profile, "b1", &lwt, offline.as_bytes()).expect("offline");
            assert_eq!(u.online, Some(false), "{profile}");
            if let Some((topic, seen, passed)) = motion_event(profile, "camera", "b1") {
                let u = parse_state(profile, "b1", &topic, seen.as_bytes()).expect("motion");
                assert!(u.motion, "{profile}");
                let passed = parse_state(profile, "b1", &topic, passed.as_bytes());
                assert!(passed.is_none_or(|u| !u.motion), "{profile}");
            }
        }
        // The simulated home's cameras and doorbell are adopted with the
        // generic scheme, which has a motion topic.
        assert!(motion_event(Profile::Generic, "camera", "b1").is_some());
    }

    #[test]
    fn tasmota_commands_go_by_topic() {
        let c = |topic: &str, payload: &str| command(Profile::Tasmota, true, topic, payload.as_bytes(), OFF);
        assert_eq!(c("cmnd/b1/power", "toggle").unwrap().power, Some(true));
        assert_eq!(c("cmnd/b1/Dimmer", "101"), None);
        assert_eq!(c("cmnd/b1/Dimmer", "x"), None);
        assert_eq!(c("cmnd/b1/Color", "ON"), None);
    }

    #[test]
    fn the_snapshot_is_a_png_with_good_checksums() {
        let png = snapshot_png();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // Walk the chunks: each length fits, and the last is IEND.
        let mut at = 8;
        let mut kinds = Vec::new();
        while at < png.len() {
            let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
            kinds.push(String::from_utf8(png[at + 4..at + 8].to_vec()).unwrap());
            at += 12 + len;
        }
        assert_eq!(at, png.len());
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
        // The IEND chunk's CRC is the well-known constant.
        assert_eq!(&png[png.len() - 4..], &[0xae, 0x42, 0x60, 0x82]);
        let u = parse_state(Profile::Generic, "b1", "hearth/b1/snapshot", &png).unwrap();
        assert!(u.snapshot);
    }

    /// As the firmware does: Tasmota reports the power on `stat/<t>/POWER`
    /// too when it was commanded, Shelly notifies a change on
    /// `events/rpc` besides the component's status, and every message
    /// lies in the device's own subtree.
    #[test]
    fn reports_are_the_firmware_topics() {
        use crate::broker::acl::{Action, Decision, Principal, decide};
        use crate::home::vendor::device_rules;
        let lit = Light {
            on: true,
            brightness: 40,
            color_temp: 370,
        };
        let topics = |profile, at_connect, news| -> Vec<String> {
            report(profile, "b1", lit, true, at_connect, news)
                .into_iter()
                .map(|(t, _)| t)
                .collect()
        };
        assert_eq!(topics(Profile::Tasmota, true, true), ["tele/b1/STATE"]);
        assert_eq!(
            topics(Profile::Tasmota, false, true),
            ["stat/b1/RESULT", "stat/b1/POWER"]
        );
        assert_eq!(topics(Profile::Tasmota, false, false), ["stat/b1/RESULT"]);
        assert_eq!(topics(Profile::Shelly, true, true), ["b1/status/light:0"]);
        assert_eq!(
            topics(Profile::Shelly, false, true),
            ["b1/status/light:0", "b1/events/rpc"]
        );
        assert_eq!(topics(Profile::Esphome, false, true), ["b1/light/main/state"]);
        for profile in Profile::ALL {
            let device = Principal::Confined {
                rules: device_rules(profile, "b1"),
            };
            for at_connect in [false, true] {
                for (topic, _) in report(profile, "b1", lit, true, at_connect, true) {
                    assert_eq!(
                        decide(&device, Action::Publish, &topic),
                        Decision::Allow,
                        "{topic}"
                    );
                }
            }
        }
    }

    /// hearth's Shelly RPCs are answered on `<src>/rpc`, inside the
    /// device's subtree, with the request's id; a `src` outside it gets no
    /// answer (the broker would refuse it).
    #[test]
    fn shelly_answers_rpcs_to_its_src() {
        use crate::broker::acl::{Action, Decision, Principal, decide};
        use crate::home::vendor::device_rules;
        let device = Principal::Confined {
            rules: device_rules(Profile::Shelly, "b1"),
        };
        let (_, payload) = crate::home::vendor::power_command(Profile::Shelly, "b1", true);
        let (topic, answer) = rpc_answer("b1", payload.as_bytes(), false).expect("an answer");
        assert_eq!(topic, "b1/hearth/rpc");
        assert_eq!(decide(&device, Action::Publish, &topic), Decision::Allow);
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(v["id"], 1);
        assert_eq!(v["src"], "b1");
        assert_eq!(v["dst"], "b1/hearth");
        assert_eq!(v["result"]["was_on"], false);
        // hearth does not read an answer as state.
        assert_eq!(
            parse_state(Profile::Shelly, "b1", &topic, answer.as_bytes()),
            None
        );
        let (_, payload) = brightness_command(Profile::Shelly, "b1", 40);
        let (_, answer) = rpc_answer("b1", payload.as_bytes(), true).expect("an answer");
        assert!(answer.ends_with(r#""result":null}"#), "{answer}");
        for request in [
            r#"{"id":1,"src":"hearth","method":"Switch.Set","params":{"id":0,"on":true}}"#,
            r#"{"id":1,"src":"b10/x","method":"Switch.Set","params":{"id":0,"on":true}}"#,
            r#"{"id":1,"src":"b1/#","method":"Switch.Set","params":{"id":0,"on":true}}"#,
            r#"{"id":1,"src":"b1/x","method":"Shelly.Reboot"}"#,
            r#"{"id":[1],"src":"b1/x","method":"Switch.Set"}"#,
            r#"{"src":"b1/x","method":"Switch.Set"}"#,
            "not json",
        ] {
            assert_eq!(rpc_answer("b1", request.as_bytes(), false), None, "{request}");
        }
    }

    /// Each sensor reports in its scheme what hearth reads back, inside
    /// its own subtree; where the scheme has no such sensor it reports
    /// nothing.
    #[test]
    fn sensor_readings_are_what_hearth_reads() {
        use crate::broker::acl::{Action, Decision, Principal, decide};
        use crate::home::vendor::device_rules;
        for profile in Profile::ALL {
            let device = Principal::Confined {
                rules: device_rules(profile, "b1"),
            };
            for kind in ["climate_sensor", "contact_sensor", "water_sensor"] {
                for step in 0..12 {
                    let reading = Reading::at(kind, step).expect("a reading");
                    let messages = reading.messages(profile, "b1", step == 0);
                    let has = matches!(
                        (profile, kind),
                        (Profile::Generic | Profile::Esphome, _)
                            | (Profile::Shelly, "climate_sensor" | "water_sensor")
                            | (Profile::Tasmota, "climate_sensor")
                    );
                    assert_eq!(!messages.is_empty(), has, "{profile} {kind}");
                    if !has {
                        continue;
                    }
                    for (topic, _, _) in &messages {
                        assert_eq!(
                            decide(&device, Action::Publish, topic),
                            Decision::Allow,
                            "{topic}"
                        );
                    }
                    let u = read_all(profile, messages.iter().map(|(t, p, _)| (t.as_str(), p.as_str())));
                    match reading {
                        Reading::Climate { celsius, percent } => {
                            assert_eq!(u.temperature, Some((celsius * 10.0).round() as i16), "{profile}");
                            assert_eq!(u.humidity, Some((percent * 10.0).round() as u16), "{profile}");
                        }
                        Reading::Contact { open } => assert_eq!(u.open, Some(open), "{profile}"),
                        Reading::Water { wet } => assert_eq!(u.water, Some(wet), "{profile}"),
                    }
                }
            }
            // A motion sensor reports motion where the scheme has a topic.
            if let Some((topic, seen, _)) = motion_event(profile, "motion_sensor", "b1") {
                assert!(read_all(profile, [(topic.as_str(), seen)]).motion, "{profile}");
            }
        }
        // The door opens and closes, the water comes now and then.
        assert_ne!(Reading::at("contact_sensor", 0), Reading::at("contact_sensor", 1));
        assert!((0..6).any(|s| Reading::at("water_sensor", s) == Some(Reading::Water { wet: true })));
        assert_eq!(Reading::at("bulb", 0), None);
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..100 {
            let d = jitter(20_000, 40_000);
            assert!(
                d >= Duration::from_secs(20) && d <= Duration::from_secs(40),
                "{d:?}"
            );
        }
    }
}
