//! hearth's device simulator, for tests: a thin command line over
//! `hearth::sim`.
//!
//! - `hearth-sim announce [--address IP] [--seconds N]` announces the
//!   simulated home over mDNS (4 bulbs of different vendors, 2 cameras, a
//!   plug and a doorbell), with the TXT records each vendor really sends.
//! - `hearth-sim spoof [--address IP]` misbehaves: it announces the
//!   simulated bulb's HomeKit id under another name, from that address.
//! - `hearth-sim device --provisioning FILE [--host H]` is one device, given
//!   what `hearth devices adopt --json` printed: it speaks its vendor's MQTT
//!   scheme and prints `connected`, `state ON|OFF`, `disconnected`, `refused`.
//! - `hearth-sim browse TYPE` prints the port and TXT of one instance heard.
//!
//! The address (default 127.0.0.1) picks the interface. Run it only where
//! the test owns the network: a namespace of its own, or loopback.

use std::time::Duration;

use hearth::sim;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let seconds: u64 = flag("--seconds").and_then(|s| s.parse().ok()).unwrap_or(3600);
    let address: std::net::IpAddr = flag("--address")
        .map(|a| a.parse().expect("--address takes an IP address"))
        .unwrap_or_else(|| "127.0.0.1".parse().expect("an IP address"));
    match args.get(1).map(String::as_str) {
        Some("announce") | Some("spoof") => {
            let home = if args[1] == "spoof" {
                sim::spoof()
            } else {
                sim::HOME.to_vec()
            };
            let daemon = sim::announce(&home, address);
            for (ty, ..) in &home {
                sim::say(&format!("announced {ty}"));
            }
            std::thread::sleep(Duration::from_secs(seconds));
            let _ = daemon.shutdown();
        }
        Some("device") => {
            let file =
                flag("--provisioning").expect("usage: hearth-sim device --provisioning FILE [--host H]");
            let provisioning: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(file).expect("read provisioning"))
                    .expect("json");
            let host = flag("--host").unwrap_or_else(|| "127.0.0.1".into());
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async move {
                    let stop = tokio::time::sleep(Duration::from_secs(seconds));
                    sim::device(provisioning, host, stop, sim::say).await
                });
        }
        Some("browse") => {
            let ty = args.get(2).expect("usage: hearth-sim browse TYPE [--seconds N]");
            sim::browse(ty, address, seconds);
        }
        _ => {
            eprintln!("usage: hearth-sim announce|spoof|device|browse ...");
            std::process::exit(64);
        }
    }
}
