//! The broker benchmark: hearth against mosquitto 2.0, same machine, same
//! run, alternating rounds, with equivalent settings: a password per client,
//! an ACL confining each client to `hearth/<user>/#`, TLS with the same
//! certificate, in-flight 16, queue 1,000, 256 KiB packets, no persistence.
//!
//! Per round and broker:
//! - latency: 1,000 TLS clients each publish a 16-byte QoS 1 message once a
//!   second to a topic they subscribe to; p50/p99 of publish→delivery, and
//!   every message is counted (a QoS 1 loss is a failure);
//! - throughput: one TLS client publishes as fast as its in-flight window
//!   allows to a topic it subscribes to, QoS 0 and QoS 1;
//! - memory: resident set of the broker process idle, with the 1,000
//!   connections, and after the load; CPU% during the latency phase.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hearth::home::vendor::Profile;
use hearth::store::DeviceKind;
use rumqttc::{AsyncClient, Event, MqttOptions, NetworkOptions, Packet, QoS, TlsConfiguration, Transport};

use crate::measure::{cpu_secs, median, rss_mib};
use crate::start::{self, Mosquitto, Process};

const CLIENTS: usize = 1000;
const LATENCY_SECS: u64 = 20;
const THROUGHPUT_MSGS: u64 = 20_000;
const PAYLOAD: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Hearth,
    Mosquitto,
}

struct Credential {
    user: String,
    password: String,
    client_id: String,
}

/// A broker under test: its process, its TLS port, the credentials.
struct Broker {
    process: Process,
    port: u16,
    ca: PathBuf,
    creds: Vec<Credential>,
    _dir: tempfile::TempDir,
}

#[derive(Default, Clone)]
struct Round {
    p50_us: f64,
    p99_us: f64,
    sent: u64,
    lost: u64,
    qos0_msgs_per_s: f64,
    qos0_lost: u64,
    qos1_msgs_per_s: f64,
    qos1_lost: u64,
    rss_idle_mib: f64,
    rss_loaded_mib: f64,
    rss_after_mib: f64,
    cpu_percent: f64,
}

/// `hearth run` with a fresh data directory under `dir` and its TLS listener
/// on `port`, returned once its admin socket exists.
fn spawn_hearth(hearth: &Path, dir: &Path, port: u16) -> (Process, PathBuf) {
    start::hearth(
        hearth,
        dir,
        &format!(
            "[mqtt]\ntls_listen = [\"127.0.0.1:{port}\"]\nplain_listen = []\n[log]\nlevel = \"warn\"\n\
             [discovery]\nenabled = false\n[web]\nlisten = [\"127.0.0.1:0\"]\n"
        ),
    )
}

fn start_hearth(hearth: &Path) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let port = start::free_port();
    let (process, data) = spawn_hearth(hearth, dir.path(), port);
    std::thread::sleep(Duration::from_millis(200));
    let creds = (0..CLIENTS)
        .map(|i| {
            let d = start::add_device(
                &data,
                Profile::Generic,
                DeviceKind::Other,
                format!("bench {i}"),
                None,
            );
            Credential {
                user: d["mqtt"]["username"].as_str().unwrap().into(),
                password: d["mqtt"]["password"].as_str().unwrap().into(),
                client_id: d["mqtt"]["client_id"].as_str().unwrap().into(),
            }
        })
        .collect();
    Broker {
        process,
        port,
        ca: data.join("ca.pem"),
        creds,
        _dir: dir,
    }
}

/// mosquitto with hearth's certificate (from a throw-away hearth data
/// directory), a hashed password file and the equivalent ACL pattern.
fn start_mosquitto(hearth: &Path) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    // Borrow a CA and server certificate from a fresh hearth install.
    let port = start::free_port();
    let (mut h, data) = spawn_hearth(hearth, dir.path(), port);
    h.stop();

    let creds: Vec<Credential> = (0..CLIENTS)
        .map(|i| Credential {
            user: format!("u{i}"),
            password: format!("{:032x}", (i as u128 + 1) * 0x9e37_79b9_7f4a_7c15),
            client_id: format!("c{i}"),
        })
        .collect();
    let users: String = creds
        .iter()
        .map(|c| format!("{}:{}\n", c.user, c.password))
        .collect();
    let process = Mosquitto {
        port,
        users: &users,
        acl: Some("pattern readwrite hearth/%u/#\n"),
        limits: "max_inflight_messages 16\nmax_queued_messages 1000\nmax_packet_size 262144\n",
        tuning: "tls_version tlsv1.2\n",
    }
    .write(dir.path(), &data)
    .start();
    Broker {
        process,
        port,
        ca: data.join("ca.pem"),
        creds,
        _dir: dir,
    }
}

fn options(b: &Broker, c: &Credential, tls: &Arc<rustls::ClientConfig>) -> MqttOptions {
    let mut o = MqttOptions::new(&c.client_id, "127.0.0.1", b.port);
    o.set_credentials(&c.user, &c.password);
    o.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls.clone())));
    o.set_keep_alive(Duration::from_secs(60));
    o.set_inflight(16);
    o
}

/// Both brokers confine a client to `hearth/<username>/#`.
fn topic(c: &Credential) -> String {
    format!("hearth/{}/bench", c.user)
}

/// Connects every client and subscribes it to its own topic; returns the
/// clients and a channel of (send nanos) for each delivery.
async fn connect_all(
    b: &Broker,
    start: Instant,
    received: Arc<std::sync::Mutex<Vec<u64>>>,
    counted: Arc<AtomicU64>,
) -> Vec<(AsyncClient, String)> {
    let tls = start::mqtt_tls(&b.ca);
    let mut clients = Vec::with_capacity(CLIENTS);
    for chunk in b.creds.chunks(50) {
        let mut joins = Vec::new();
        for c in chunk {
            let (client, mut events) = AsyncClient::new(options(b, c, &tls), 64);
            let t = topic(c);
            let (ready_tx, ready) = tokio::sync::oneshot::channel();
            let received = received.clone();
            let counted = counted.clone();
            let sub = client.clone();
            let topic_for_sub = t.clone();
            tokio::spawn(async move {
                let mut ready_tx = Some(ready_tx);
                loop {
                    match events.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            sub.subscribe(topic_for_sub.clone(), QoS::AtLeastOnce)
                                .await
                                .unwrap();
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            if let Some(tx) = ready_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let now = start.elapsed().as_nanos() as u64;
                            let sent = u64::from_be_bytes(p.payload[..8].try_into().unwrap());
                            received.lock().unwrap().push(now.saturating_sub(sent));
                            counted.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            if ready_tx.is_some() {
                                panic!("client failed to connect: {e}");
                            }
                            return;
                        }
                    }
                }
            });
            joins.push((client, t, ready));
        }
        for (client, t, ready) in joins {
            tokio::time::timeout(Duration::from_secs(30), ready)
                .await
                .expect("subscribe")
                .unwrap();
            clients.push((client, t));
        }
    }
    clients
}

fn payload(start: Instant, seq: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(PAYLOAD);
    p.extend_from_slice(&(start.elapsed().as_nanos() as u64).to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn throughput(b: &Broker, qos: QoS) -> (f64, u64) {
    let tls = start::mqtt_tls(&b.ca);
    let c = &b.creds[0];
    let (client, mut events) = AsyncClient::new(options(b, c, &tls), 1024);
    // Nagle off on this client, for both brokers: the throughput figure is
    // then the brokers' own, not a delayed-ACK artefact.
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    events.set_network_options(net);
    let t = topic(c);
    let got = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    {
        let got = got.clone();
        let sub = client.clone();
        let t = t.clone();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            while let Ok(ev) = events.poll().await {
                match ev {
                    Event::Incoming(Packet::ConnAck(_)) => sub.subscribe(t.clone(), qos).await.unwrap(),
                    Event::Incoming(Packet::SubAck(_)) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Event::Incoming(Packet::Publish(_)) => {
                        got.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .unwrap()
        .unwrap();
    let start = Instant::now();
    for i in 0..THROUGHPUT_MSGS {
        client
            .publish(t.clone(), qos, false, payload(start, i))
            .await
            .unwrap();
    }
    // Wait until everything arrived, or nothing has arrived for 2 s.
    let mut last = (0, Instant::now());
    loop {
        let n = got.load(Ordering::Relaxed);
        if n >= THROUGHPUT_MSGS {
            break;
        }
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let n = got.load(Ordering::Relaxed);
    let secs = if n >= THROUGHPUT_MSGS {
        start.elapsed()
    } else {
        last.1 - start
    }
    .as_secs_f64();
    let _ = client.disconnect().await;
    (n as f64 / secs, THROUGHPUT_MSGS - n.min(THROUGHPUT_MSGS))
}

fn round(b: &Broker) -> Round {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let pid = b.process.id();
    let mut r = Round {
        rss_idle_mib: rss_mib(pid),
        ..Round::default()
    };
    rt.block_on(async {
        let start = Instant::now();
        let received = Arc::new(std::sync::Mutex::new(Vec::with_capacity(
            CLIENTS * LATENCY_SECS as usize,
        )));
        let counted = Arc::new(AtomicU64::new(0));
        let clients = connect_all(b, start, received.clone(), counted.clone()).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        r.rss_loaded_mib = rss_mib(pid);

        // Every client publishes once a second, spread evenly over the second.
        let cpu0 = cpu_secs(pid);
        let wall0 = Instant::now();
        let sent = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for (i, (client, t)) in clients.iter().cloned().enumerate() {
            let sent = sent.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros((i as u64 * 1_000_000) / CLIENTS as u64)).await;
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                for seq in 0..LATENCY_SECS {
                    tick.tick().await;
                    client
                        .publish(t.clone(), QoS::AtLeastOnce, false, payload(start, seq))
                        .await
                        .unwrap();
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // Let the last messages land.
        let deadline = Instant::now() + Duration::from_secs(5);
        while counted.load(Ordering::Relaxed) < sent.load(Ordering::Relaxed) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        r.cpu_percent = 100.0 * (cpu_secs(pid) - cpu0) / wall0.elapsed().as_secs_f64();
        r.sent = sent.load(Ordering::Relaxed);
        r.lost = r.sent.saturating_sub(counted.load(Ordering::Relaxed));
        let mut lat = received.lock().unwrap().clone();
        lat.sort_unstable();
        r.p50_us = percentile(&lat, 0.50);
        r.p99_us = percentile(&lat, 0.99);
        for (c, _) in &clients {
            let _ = c.disconnect().await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;

        let (rate, lost) = throughput(b, QoS::AtMostOnce).await;
        r.qos0_msgs_per_s = rate;
        r.qos0_lost = lost;
        let (rate, lost) = throughput(b, QoS::AtLeastOnce).await;
        r.qos1_msgs_per_s = rate;
        r.qos1_lost = lost;
        tokio::time::sleep(Duration::from_secs(1)).await;
        r.rss_after_mib = rss_mib(pid);
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    r
}

pub fn run(hearth: &Path, rounds: usize) {
    hearth::supervisor::raise_nofile();
    println!(
        "\n## mqtt: {rounds} rounds alternating hearth and mosquitto; {CLIENTS} TLS clients x 1 msg/s x {LATENCY_SECS} s, \
         QoS 1, {PAYLOAD}-byte payload; throughput {THROUGHPUT_MSGS} messages"
    );
    let version = Command::new("mosquitto").arg("-h").output().map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    });
    println!(
        "reference: {}",
        version.unwrap_or_else(|_| "mosquitto not found".into())
    );
    let (mut h, mut m) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        for kind in [Kind::Hearth, Kind::Mosquitto] {
            let b = match kind {
                Kind::Hearth => start_hearth(hearth),
                Kind::Mosquitto => start_mosquitto(hearth),
            };
            let r = round(&b);
            println!(
                "round {} {:<9} p50 {:>7.0} us  p99 {:>7.0} us  sent {:>5} lost {}  qos0 {:>7.0}/s (lost {})  qos1 {:>7.0}/s (lost {})  rss {:.1}/{:.1}/{:.1} MiB  cpu {:.0}%",
                i + 1,
                format!("{kind:?}"),
                r.p50_us,
                r.p99_us,
                r.sent,
                r.lost,
                r.qos0_msgs_per_s,
                r.qos0_lost,
                r.qos1_msgs_per_s,
                r.qos1_lost,
                r.rss_idle_mib,
                r.rss_loaded_mib,
                r.rss_after_mib,
                r.cpu_percent
            );
            match kind {
                Kind::Hearth => h.push(r),
                Kind::Mosquitto => m.push(r),
            }
        }
    }
    let med = |v: &[Round], f: fn(&Round) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    println!("\nmedians          hearth   mosquitto   ratio (hearth/mosquitto)");
    type Row = (&'static str, fn(&Round) -> f64);
    let rows: [Row; 9] = [
        ("p50 latency us", |r| r.p50_us),
        ("p99 latency us", |r| r.p99_us),
        ("QoS1 lost", |r| r.lost as f64),
        ("QoS0 msgs/s", |r| r.qos0_msgs_per_s),
        ("QoS1 msgs/s", |r| r.qos1_msgs_per_s),
        ("RSS idle MiB", |r| r.rss_idle_mib),
        ("RSS 1000 conns MiB", |r| r.rss_loaded_mib),
        ("RSS after MiB", |r| r.rss_after_mib),
        ("broker CPU %", |r| r.cpu_percent),
    ];
    for (name, f) in rows {
        let (a, b) = (med(&h, f), med(&m, f));
        println!("{name:<18} {a:>9.1} {b:>10.1}   {:>6.2}x", a / b);
    }
    let total_lost: u64 = h.iter().map(|r| r.lost + r.qos1_lost).sum();
    println!("hearth QoS 1 messages lost over all rounds: {total_lost}");
}
