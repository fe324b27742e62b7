//! hearth's device simulator.
//!
//! `hearth-sim announce [--address IP] [--seconds N]` announces a simulated
//! home over mDNS, with the TXT records each vendor really sends: a HomeKit
//! bulb, camera and doorbell, a Shelly Gen2 plug, a Tasmota plug, an ESPHome
//! light, a WLED strip and an RTSP camera. It prints one line per device
//! announced, then keeps announcing until killed or the time is up.
//!
//! `hearth-sim spoof [--address IP]` misbehaves: it announces the simulated
//! bulb's HomeKit id under another name, from the given address.
//!
//! `hearth-sim browse TYPE [--address IP] [--seconds N]` prints what one
//! instance of TYPE advertises: its port and TXT entries.
//!
//! The address (default 127.0.0.1) picks the interface. Run it only where
//! the test owns the network: a namespace of its own, or `hearth demo`'s
//! loopback.

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
    let address: std::net::IpAddr = args
        .iter()
        .position(|a| a == "--address")
        .and_then(|i| args.get(i + 1))
        .map(|a| a.parse().expect("--address takes an IP address"))
        .unwrap_or_else(|| "127.0.0.1".parse().expect("an IP address"));
    if args.get(1).map(String::as_str) == Some("browse") {
        let ty = args.get(2).expect("usage: hearth-sim browse TYPE [--seconds N]");
        browse(ty, address, seconds);
        return;
    }
    let home: Vec<Announcement> = match args.get(1).map(String::as_str) {
        Some("announce") => HOME.to_vec(),
        // The bulb's HomeKit id, under another name, from another address.
        Some("spoof") => vec![("_hap._tcp", "Sim Bulb 2", 51830, HOME[0].3)],
        _ => {
            eprintln!("usage: hearth-sim announce|spoof [--address IP] [--seconds N]");
            std::process::exit(64);
        }
    };
    announce(&home, address, seconds);
}

/// Prints `resolved <port> txt=<entries>` for each instance of `ty` heard
/// within `seconds`, as an owner's tools would see hearth on the LAN.
fn browse(ty: &str, address: std::net::IpAddr, seconds: u64) {
    let daemon = ServiceDaemon::new().expect("mDNS daemon");
    daemon.disable_interface(IfKind::All).expect("interfaces");
    if address.is_loopback() {
        daemon.enable_interface(IfKind::LoopbackV4).expect("loopback");
        daemon.set_multicast_loop_v4(true).expect("multicast loop");
    } else {
        daemon.enable_interface(IfKind::Addr(address)).expect("interface");
    }
    let events = daemon.browse(&format!("{ty}.local.")).expect("browse");
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    while let Ok(event) = events.recv_deadline(deadline) {
        if let mdns_sd::ServiceEvent::ServiceResolved(s) = event {
            let txt: Vec<String> = s
                .txt_properties
                .iter()
                .map(|p| format!("{}={}", p.key(), p.val_str()))
                .collect();
            println!("resolved {} txt={} {}", s.port, txt.len(), txt.join(","));
            break;
        }
    }
    let _ = daemon.shutdown();
}

fn announce(home: &[Announcement], address: std::net::IpAddr, seconds: u64) {
    let daemon = ServiceDaemon::new().expect("mDNS daemon");
    daemon.disable_interface(IfKind::All).expect("interfaces");
    if address.is_loopback() {
        daemon.enable_interface(IfKind::LoopbackV4).expect("loopback");
        daemon.set_multicast_loop_v4(true).expect("multicast loop");
    } else {
        daemon.enable_interface(IfKind::Addr(address)).expect("interface");
    }
    for (i, (ty, instance, port, txt)) in home.iter().enumerate() {
        let props: HashMap<String, String> = txt.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        let host = format!("sim-{}-{i}.local.", address.to_string().replace(['.', ':'], "-"));
        let info = ServiceInfo::new(&format!("{ty}.local."), instance, &host, address, *port, props)
            .expect("service info");
        daemon.register(info).expect("register");
        println!("announced {ty}");
    }
    std::thread::sleep(Duration::from_secs(seconds));
    let _ = daemon.shutdown();
}
