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
//!   scheme and prints `connected`, `state ON|OFF`, `brightness N` (lights),
//!   `motion` (cameras and doorbells), `disconnected`, `refused`. Each
//!   `flip` line on its standard input switches a light or plug by hand.
//! - `hearth-sim browse TYPE [--all]` prints the port and TXT of one instance
//!   heard; with `--all` it browses for the whole time and counts them.
//! - `hearth-sim idle --port P [--count N] [--seconds S]` opens N TCP
//!   connections to the broker and sends nothing; it prints how many the
//!   broker closed.
//! - `hearth-sim garbage --port P [--count N]` sends N blobs of random bytes,
//!   each on its own connection.
//! - `hearth-sim flood [--rate N] [--seconds S]` misbehaves: it sends N
//!   unsolicited mDNS announcements a second on loopback, each a new HomeKit
//!   bulb with its own name and MAC, and prints how many it sent.
//! - `hearth-sim mdns-garbage [--count N]` sends N malformed mDNS packets on
//!   loopback: random bytes, and announcements with bytes changed.
//! - `hearth-sim query TYPE` asks as a legacy unicast querier (from a port
//!   other than 5353) for TYPE's instances, and prints `answer <port>` for
//!   each SRV record in a reply that echoes its query id.
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
                    // Each `flip` on standard input is someone switching
                    // the device by hand.
                    let (flip, switch) = tokio::sync::mpsc::unbounded_channel();
                    std::thread::spawn(move || {
                        for line in std::io::stdin().lines() {
                            match line {
                                Ok(l) if l.trim() == "flip" => {
                                    if flip.send(()).is_err() {
                                        return;
                                    }
                                }
                                Ok(_) => {}
                                Err(_) => return,
                            }
                        }
                    });
                    sim::device_with_switch(provisioning, host, stop, sim::say, switch).await
                });
        }
        Some("flood") => {
            let rate: u64 = flag("--rate").and_then(|s| s.parse().ok()).unwrap_or(10_000);
            flood(rate, seconds);
        }
        Some("idle") | Some("garbage") => {
            let host = flag("--host").unwrap_or_else(|| "127.0.0.1".into());
            let port: u16 = flag("--port").and_then(|p| p.parse().ok()).expect("--port");
            let count: usize = flag("--count").and_then(|c| c.parse().ok()).unwrap_or(1);
            misbehave(&args[1], &host, port, count, seconds);
        }
        Some("browse") => {
            let ty = args.get(2).expect("usage: hearth-sim browse TYPE [--seconds N]");
            sim::browse(ty, address, seconds, args.iter().any(|a| a == "--all"));
        }
        Some("mdns-garbage") => {
            let count: usize = flag("--count").and_then(|c| c.parse().ok()).unwrap_or(1000);
            mdns_garbage(count);
        }
        Some("query") => {
            let ty = args.get(2).expect("usage: hearth-sim query TYPE");
            legacy_query(ty);
        }
        _ => {
            eprintln!(
                "usage: hearth-sim announce|spoof|device|browse|flood|idle|garbage|mdns-garbage|query ..."
            );
            std::process::exit(64);
        }
    }
}

fn name(out: &mut Vec<u8>, dotted: &str) {
    for label in dotted.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

fn record(out: &mut Vec<u8>, owner: &str, rtype: u16, class: u16, rdata: &[u8]) {
    name(out, owner);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&class.to_be_bytes());
    out.extend_from_slice(&120u32.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

/// One unsolicited announcement of a HomeKit bulb numbered `n`: PTR, SRV,
/// TXT and A records, as a device sends when it joins.
fn announcement(n: u64) -> Vec<u8> {
    let instance = format!("flood{n}._hap._tcp.local");
    let host = format!("floodhost{n}.local");
    let mut p = vec![0, 0, 0x84, 0, 0, 0, 0, 4, 0, 0, 0, 0];
    let mut rdata = Vec::new();
    name(&mut rdata, &instance);
    record(&mut p, "_hap._tcp.local", 12, 1, &rdata);
    let mut srv = vec![0, 0, 0, 0, 0xca, 0x73];
    name(&mut srv, &host);
    record(&mut p, &instance, 33, 0x8001, &srv);
    let mut txt = Vec::new();
    let b = n.to_be_bytes();
    for s in [
        "ci=5".to_owned(),
        format!(
            "id=02:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            b[3], b[4], b[5], b[6], b[7]
        ),
    ] {
        txt.push(s.len() as u8);
        txt.extend_from_slice(s.as_bytes());
    }
    record(&mut p, &instance, 16, 0x8001, &txt);
    record(&mut p, &host, 1, 0x8001, &[127, 0, 0, 1]);
    p
}

/// A socket that sends to the mDNS group on loopback, from `port`.
fn mdns_sender(port: u16) -> socket2::Socket {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    socket.set_reuse_address(true).expect("reuse");
    socket.set_reuse_port(true).expect("reuse");
    socket
        .bind(&std::net::SocketAddr::from(([0, 0, 0, 0], port)).into())
        .expect("bind");
    socket
        .set_multicast_if_v4(&std::net::Ipv4Addr::LOCALHOST)
        .expect("multicast if");
    socket.set_multicast_loop_v4(true).expect("multicast loop");
    socket
}

fn group() -> socket2::SockAddr {
    std::net::SocketAddr::from(([224, 0, 0, 251], 5353)).into()
}

fn mdns_garbage(count: usize) {
    let socket = mdns_sender(5353);
    let mut noise = hearth_tests::Noise::new(0x005e_ed0f_6a7b_a6e5 ^ u64::from(std::process::id()));
    for i in 0..count {
        let packet = if i % 2 == 0 {
            noise.bytes(1 + i % 600)
        } else {
            let mut p = announcement(i as u64);
            for _ in 0..1 + i % 4 {
                let at = (noise.next_u64() as usize) % p.len();
                p[at] = noise.bytes(1)[0];
            }
            p
        };
        let _ = socket.send_to(&packet, &group());
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    sim::say(&format!("sent {count}"));
}

fn legacy_query(ty: &str) {
    use hearth::discovery::wire;
    let socket: std::net::UdpSocket = mdns_sender(0).into();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let name = wire::Name::dotted(&format!("{ty}.local"));
    let mut packet = wire::query(&[(&name, wire::PTR)]);
    packet[..2].copy_from_slice(&0x4242u16.to_be_bytes());
    let _ = socket.send_to(&packet, std::net::SocketAddr::from(([224, 0, 0, 251], 5353)));
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 9000];
    while std::time::Instant::now() < deadline {
        let Ok(n) = socket.recv(&mut buf) else { continue };
        let Ok(reply) = wire::parse(&buf[..n]) else {
            continue;
        };
        if reply.id != 0x4242 || !reply.response {
            continue;
        }
        for r in &reply.records {
            if let wire::Data::Srv { port, .. } = r.data {
                println!("answer {port}");
            }
        }
    }
}

fn flood(rate: u64, seconds: u64) {
    let socket = mdns_sender(5353);
    let to = group();
    let start = std::time::Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        // Pace in slices of 10 ms.
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let _ = socket.send_to(&announcement(sent), &to);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    sim::say(&format!("sent {sent}"));
}

fn misbehave(what: &str, host: &str, port: u16, count: usize, seconds: u64) {
    use std::io::{Read, Write};
    let mut noise = hearth_tests::Noise::new(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let mut streams = Vec::new();
    for i in 0..count {
        let Ok(mut s) = std::net::TcpStream::connect((host, port)) else {
            continue;
        };
        if what == "garbage" {
            let blob = noise.bytes(64 + i * 31);
            let _ = s.write_all(&blob);
        }
        streams.push(s);
    }
    sim::say(&format!("opened {}", streams.len()));
    if what == "idle" {
        // Count the sockets the broker closes within the time given.
        let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
        let mut closed = 0;
        for s in &mut streams {
            let left = deadline
                .saturating_duration_since(std::time::Instant::now())
                .max(Duration::from_millis(1));
            let _ = s.set_read_timeout(Some(left));
            let mut buf = [0u8; 64];
            if matches!(s.read(&mut buf), Ok(0) | Err(_)) && std::time::Instant::now() < deadline {
                closed += 1;
            }
        }
        sim::say(&format!("closed {closed}"));
    }
}
