//! The simulated home: mDNS announcements with the TXT records each vendor
//! really sends, and devices that speak their vendor's MQTT scheme. Used by
//! `hearth demo` and by the tests' `hearth-sim`.
//!
//! It announces only on the address it is given (loopback for the demo),
//! never onto a LAN it was not asked to use.

use std::collections::HashMap;
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};

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
            ("project_name", "sim.smart_light"),
            ("network", "wifi"),
        ],
    ),
    (
        "_shelly._tcp",
        "shellyplusduo-5a1b2c3d4e08",
        80,
        &[("gen", "2"), ("app", "PlusDuo"), ("ver", "1.4.4")],
    ),
    ("_http._tcp", "tasmota-bulb-4E05-1234", 80, &[]),
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
fn scheme(profile: &str, base: &str) -> (String, String, &'static str, &'static str) {
    match profile {
        "tasmota" => (
            format!("cmnd/{base}/#"),
            format!("tele/{base}/LWT"),
            "Offline",
            "Online",
        ),
        "shelly" => (format!("{base}/rpc"), format!("{base}/online"), "false", "true"),
        "esphome" => (
            format!("{base}/light/main/command"),
            format!("{base}/status"),
            "offline",
            "online",
        ),
        _ => (
            format!("hearth/{base}/set"),
            format!("hearth/{base}/availability"),
            "offline",
            "online",
        ),
    }
}

/// Reads a power command in the vendor's format: `Some(on)`.
fn command(profile: &str, payload: &[u8], current: bool) -> Option<bool> {
    let text = std::str::from_utf8(payload).ok()?.trim();
    match profile {
        "tasmota" => match text.to_ascii_uppercase().as_str() {
            "ON" | "1" => Some(true),
            "OFF" | "0" => Some(false),
            "TOGGLE" | "2" => Some(!current),
            _ => None,
        },
        "shelly" => {
            let v: serde_json::Value = serde_json::from_str(text).ok()?;
            (v["method"] == "Switch.Set")
                .then(|| v["params"]["on"].as_bool())
                .flatten()
        }
        _ => {
            let v: serde_json::Value = serde_json::from_str(text).ok()?;
            match v["state"].as_str()? {
                "ON" => Some(true),
                "OFF" => Some(false),
                _ => None,
            }
        }
    }
}

/// The state report in the vendor's format: (topic, payload).
fn report(profile: &str, base: &str, on: bool) -> (String, String) {
    let state = if on { "ON" } else { "OFF" };
    match profile {
        "tasmota" => (format!("stat/{base}/RESULT"), format!(r#"{{"POWER":"{state}"}}"#)),
        "shelly" => (
            format!("{base}/status/switch:0"),
            format!(r#"{{"id":0,"output":{on}}}"#),
        ),
        "esphome" => (
            format!("{base}/light/main/state"),
            format!(r#"{{"state":"{state}"}}"#),
        ),
        _ => (
            format!("hearth/{base}/state"),
            format!(r#"{{"state":"{state}"}}"#),
        ),
    }
}

/// Prints a line and flushes, for whoever watches the simulator.
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// One simulated device, given what `devices adopt --json` printed. Runs
/// until `stop` resolves, reporting through `report_line`.
pub async fn device(
    p: serde_json::Value,
    host: String,
    stop: impl std::future::Future<Output = ()>,
    report_line: impl Fn(&str),
) {
    use rumqttc::{
        AsyncClient, ConnectionError, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
    };
    use rustls::pki_types::pem::PemObject;

    let profile = p["profile"].as_str().expect("profile").to_owned();
    let first = p["topics"][0].as_str().expect("topics");
    // The topic base: the level after the scheme's prefix, if it has one.
    let levels: Vec<&str> = first.split('/').collect();
    let base = match profile.as_str() {
        "tasmota" => levels[1],
        "shelly" | "esphome" => levels[0],
        _ => levels[1],
    }
    .to_owned();
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
    let (subscribe, lwt, offline, online) = scheme(&profile, &base);
    let mut opts = MqttOptions::new(
        m["client_id"].as_str().unwrap(),
        host,
        m["port"].as_u64().unwrap() as u16,
    );
    opts.set_credentials(m["username"].as_str().unwrap(), m["password"].as_str().unwrap());
    opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(std::sync::Arc::new(tls))));
    opts.set_last_will(LastWill::new(&lwt, offline, QoS::AtLeastOnce, true));
    let (client, mut events) = AsyncClient::new(opts, 64);
    tokio::pin!(stop);
    let mut on = false;
    let mut was_connected = false;
    loop {
        let event = tokio::select! {
            _ = &mut stop => return,
            event = events.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                was_connected = true;
                client
                    .subscribe(&subscribe, QoS::AtLeastOnce)
                    .await
                    .expect("subscribe");
                client
                    .publish(&lwt, QoS::AtLeastOnce, true, online)
                    .await
                    .expect("online");
                report_line("connected");
            }
            Ok(Event::Incoming(Packet::Publish(msg))) => {
                if let Some(new) = command(&profile, &msg.payload, on) {
                    on = new;
                    let (topic, payload) = report(&profile, &base, on);
                    client
                        .publish(topic, QoS::AtLeastOnce, false, payload)
                        .await
                        .expect("report");
                    report_line(if on { "state ON" } else { "state OFF" });
                }
            }
            Ok(_) => {}
            Err(ConnectionError::ConnectionRefused(_)) => {
                report_line("refused");
                return;
            }
            Err(_) => {
                if was_connected {
                    report_line("disconnected");
                    was_connected = false;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
