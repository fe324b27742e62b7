//! hearth's device simulator.
//!
//! `hearth-sim announce [--seconds N]` announces a simulated home over mDNS
//! on loopback, with the TXT records each vendor really sends: a HomeKit
//! bulb, camera and doorbell, a Shelly Gen2 plug, a Tasmota plug, an
//! ESPHome light, a WLED strip and an RTSP camera. It prints one line per
//! device announced, then keeps announcing until killed or the time is up.
//! Run it where hearth's discovery listens on loopback (a network namespace
//! of the test's own, or `hearth demo`).

use std::collections::HashMap;
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};

/// (service type, instance, port, TXT)
type Announcement = (
    &'static str,
    &'static str,
    u16,
    &'static [(&'static str, &'static str)],
);

/// The simulated home.
const HOME: &[Announcement] = &[
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
    ("_http._tcp", "tasmota-4E05-1234", 80, &[]),
    (
        "_esphomelib._tcp",
        "sim-porch-light",
        6053,
        &[
            ("mac", "5a1b2c3d4e06"),
            ("version", "2024.6.1"),
            ("platform", "ESP32"),
            ("board", "esp32dev"),
            ("project_name", "sim.smart_light"),
            ("network", "wifi"),
        ],
    ),
    ("_wled._tcp", "wled-sim-desk", 80, &[("mac", "5a1b2c3d4e07")]),
    ("_rtsp._tcp", "Sim Garden Cam", 554, &[]),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(3600);
    match args.get(1).map(String::as_str) {
        Some("announce") => announce(seconds),
        _ => {
            eprintln!("usage: hearth-sim announce [--seconds N]");
            std::process::exit(64);
        }
    }
}

fn announce(seconds: u64) {
    let daemon = ServiceDaemon::new().expect("mDNS daemon");
    daemon.disable_interface(IfKind::All).expect("interfaces");
    daemon.enable_interface(IfKind::LoopbackV4).expect("loopback");
    daemon.set_multicast_loop_v4(true).expect("multicast loop");
    for (i, (ty, instance, port, txt)) in HOME.iter().enumerate() {
        let props: HashMap<String, String> = txt.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        let host = format!("sim-device-{i}.local.");
        let info = ServiceInfo::new(
            &format!("{ty}.local."),
            instance,
            &host,
            "127.0.0.1",
            *port,
            props,
        )
        .expect("service info");
        daemon.register(info).expect("register");
        println!("announced {ty}");
    }
    std::thread::sleep(Duration::from_secs(seconds));
    let _ = daemon.shutdown();
}
