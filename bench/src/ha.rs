//! Home Assistant's command path: through hearth's canonical topics, against
//! the usual setup, Home Assistant speaking a Tasmota bulb's own topics on
//! mosquitto. Same machine, same run, alternating, same TLS certificate.
//!
//! - hearth: Home Assistant (user `homeassistant`) publishes
//!   `{"brightness":B}` on `hearth/<id>/set`; hearth turns it into
//!   `cmnd/<t>/Dimmer`; the simulated Tasmota bulb answers on
//!   `stat/<t>/RESULT`; hearth publishes `hearth/<id>/state`, and the clock
//!   stops when Home Assistant reads the new brightness there.
//! - mosquitto: Home Assistant publishes `cmnd/<t>/Dimmer` itself and the
//!   clock stops when it reads the bulb's `stat/<t>/RESULT`.
//!
//! The bulbs are `hearth::sim::device`, in this process, over TLS. Each
//! phase runs twice: bulbs with Nagle's algorithm on, as device firmware
//! usually leaves it, and off. Home Assistant's client has it off, and
//! mosquitto runs with `set_tcp_nodelay true`, its best setting here. Per
//! round: 1 bulb (1,000 commands or 20 s), then 50 bulbs round-robin
//! (2,000 commands or 20 s); p50/p99, broker CPU per command, and the
//! broker's RSS with the bulbs and Home Assistant connected.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hearth::home::vendor::Profile;
use hearth::store::DeviceKind;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::measure::{cpu_secs, median, percentile_us, rss_mib};
use crate::start::{self, Mosquitto, Process};

const PHASE_LIMIT: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(10);

/// One broker set up for a phase: where Home Assistant connects, how it
/// commands bulb `i` and how it reads that bulb's brightness back.
struct Setup {
    process: Process,
    port: u16,
    ca: PathBuf,
    ha_user: String,
    ha_password: String,
    bulbs: Vec<Value>,
    /// (command topic, state topic) per bulb.
    topics: Vec<(String, String)>,
    hearth: bool,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// The command for brightness level `level` (0 to 100) and the value
    /// that shows it arrived.
    fn command(&self, level: u8) -> (String, u64) {
        if self.hearth {
            let b = hearth::home::vendor::to_255(level);
            (json!({ "brightness": b }).to_string(), u64::from(b))
        } else {
            (level.to_string(), u64::from(level))
        }
    }

    /// The brightness a state message reports, on the scale of `command`.
    fn reported(&self, payload: &[u8]) -> Option<u64> {
        let v: Value = serde_json::from_slice(payload).ok()?;
        if self.hearth {
            v["brightness"].as_u64()
        } else {
            v["Dimmer"].as_u64()
        }
    }
}

fn start_hearth(hearth: &Path, bulbs: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let port = start::free_port();
    let (process, data) = spawn(hearth, dir.path(), port);
    let mut provisioning = Vec::new();
    let mut topics = Vec::new();
    for i in 0..bulbs {
        let p = start::add_device(
            &data,
            Profile::Tasmota,
            DeviceKind::Bulb,
            format!("bulb {i}"),
            None,
        );
        let id = p["id"].as_str().unwrap().to_owned();
        start::expose(&data, &id, None);
        topics.push((format!("hearth/{id}/set"), format!("hearth/{id}/state")));
        provisioning.push(p);
    }
    let conn = start::homeassistant(&data);
    Setup {
        process,
        port,
        ca: data.join("ca.pem"),
        ha_user: conn["mqtt"]["username"].as_str().unwrap().into(),
        ha_password: conn["mqtt"]["password"].as_str().unwrap().into(),
        bulbs: provisioning,
        topics,
        hearth: true,
        _dir: dir,
    }
}

fn spawn(hearth: &Path, dir: &Path, port: u16) -> (Process, PathBuf) {
    let started = start::hearth(
        hearth,
        dir,
        &format!(
            "[mqtt]\ntls_listen = [\"127.0.0.1:{port}\"]\nplain_listen = []\n[log]\nlevel = \"warn\"\n\
             [discovery]\nenabled = false\n[web]\nenabled = false\n"
        ),
    );
    std::thread::sleep(Duration::from_millis(200));
    started
}

/// mosquitto with hearth's certificate, a password per bulb and for Home
/// Assistant, and Tasmota's topics confined per bulb.
fn start_mosquitto(hearth: &Path, bulbs: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let port = start::free_port();
    let (mut h, data) = spawn(hearth, dir.path(), port);
    h.stop();
    let password = |i: usize| format!("{:032x}", (i as u128 + 7) * 0x9e37_79b9_7f4a_7c15);
    let mut users = format!("ha:{}\n", password(usize::MAX / 2));
    let mut provisioning = Vec::new();
    let mut topics = Vec::new();
    for i in 0..bulbs {
        let user = format!("tasmota_{i:04}");
        users += &format!("{user}:{}\n", password(i));
        provisioning.push(json!({
            "profile": "tasmota",
            "kind": "bulb",
            "mqtt": {
                "host": "127.0.0.1", "port": port, "username": user, "password": password(i),
                "ca_cert": data.join("ca.pem"), "client_id": user,
            },
            "topics": [format!("stat/{user}/#"), format!("tele/{user}/#"), format!("cmnd/{user}/#")],
        }));
        topics.push((format!("cmnd/{user}/Dimmer"), format!("stat/{user}/RESULT")));
    }
    let process = Mosquitto {
        port,
        users: &users,
        acl: Some(
            "user ha\ntopic write cmnd/#\ntopic read stat/#\ntopic read tele/#\n\
             pattern write stat/%u/#\npattern write tele/%u/#\npattern read cmnd/%u/#\n",
        ),
        limits: "max_inflight_messages 16\nmax_queued_messages 1000\nmax_packet_size 262144\n",
        tuning: "tls_version tlsv1.2\nset_tcp_nodelay true\n",
    }
    .write(dir.path(), &data)
    .start();
    Setup {
        process,
        port,
        ca: data.join("ca.pem"),
        ha_user: "ha".into(),
        ha_password: password(usize::MAX / 2),
        bulbs: provisioning,
        topics,
        hearth: false,
        _dir: dir,
    }
}

/// What one phase measured.
#[derive(Clone, Default)]
struct Phase {
    p50_us: f64,
    p99_us: f64,
    sent: usize,
    lost: usize,
    cpu_us_per_cmd: f64,
    rss_mib: f64,
}

/// Runs the bulbs (with Nagle off if `nodelay`) and Home Assistant against
/// `s`, then `commands` commands.
async fn phase(s: &Setup, commands: usize, nodelay: bool) -> Phase {
    // The bulbs, each reporting "connected" once.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (ready_tx, mut ready) = mpsc::unbounded_channel::<()>();
    for p in &s.bulbs {
        let (mut p, ready_tx, mut stop) = (p.clone(), ready_tx.clone(), stop.clone());
        p["tcp_nodelay"] = nodelay.into();
        tokio::spawn(hearth::sim::device(
            p,
            "127.0.0.1".into(),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
            move |line| {
                if line == "connected" {
                    let _ = ready_tx.send(());
                }
            },
        ));
    }
    for _ in 0..s.bulbs.len() {
        tokio::time::timeout(WAIT, ready.recv())
            .await
            .expect("a bulb did not connect");
    }

    // Home Assistant.
    let mut opts = MqttOptions::new("ha-bench", "127.0.0.1", s.port);
    opts.set_credentials(&s.ha_user, &s.ha_password);
    opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(start::mqtt_tls(&s.ca))));
    opts.set_keep_alive(Duration::from_secs(60));
    opts.set_inflight(16);
    let (client, mut events) = AsyncClient::new(opts, 256);
    // Nagle off for Home Assistant's client on both brokers.
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    events.set_network_options(net);
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Vec<u8>, Instant)>();
    let (subacks_tx, mut subacks) = mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec(), Instant::now()));
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = subacks_tx.send(());
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    for (_, st) in &s.topics {
        client.subscribe(st.clone(), QoS::AtLeastOnce).await.unwrap();
    }
    for _ in 0..s.topics.len() {
        tokio::time::timeout(WAIT, subacks.recv())
            .await
            .expect("no SUBACK");
    }
    // Let retained states and the bulbs' first reports drain.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while rx.try_recv().is_ok() {}

    let pid = s.process.id();
    let cpu_before = cpu_secs(pid);
    let started = Instant::now();
    let mut lat = Vec::with_capacity(commands);
    let mut lost = 0;
    let n = s.bulbs.len();
    let mut sent = 0;
    while sent < commands && started.elapsed() < PHASE_LIMIT {
        let bulb = sent % n;
        // Alternate between two levels, so that every command is a change.
        let level = if (sent / n).is_multiple_of(2) { 50 } else { 100 };
        let (payload, want) = s.command(level);
        let (cmd, st) = &s.topics[bulb];
        let t0 = Instant::now();
        client
            .publish(cmd.clone(), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
        sent += 1;
        let deadline = t0 + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some((topic, p, at))) => {
                    if &topic == st && s.reported(&p) == Some(want) {
                        lat.push(at - t0);
                        break;
                    }
                }
                _ => {
                    lost += 1;
                    break;
                }
            }
        }
    }
    let cpu = cpu_secs(pid) - cpu_before;
    let rss = rss_mib(pid);
    let _ = stop_tx.send(true);
    drop(client);
    lat.sort();
    Phase {
        p50_us: percentile_us(&lat, 0.5),
        p99_us: percentile_us(&lat, 0.99),
        sent,
        lost,
        cpu_us_per_cmd: cpu * 1e6 / sent.max(1) as f64,
        rss_mib: rss,
    }
}

fn nagle(nodelay: bool) -> &'static str {
    if nodelay { "off" } else { "on" }
}

pub fn run(hearth: &Path, rounds: usize) {
    hearth::supervisor::raise_nofile();
    println!(
        "\n## ha: {rounds} rounds alternating hearth (canonical topics) and mosquitto (Tasmota's own topics); \
         1 bulb x 1,000 commands, 50 bulbs x 2,000 commands, bulbs with Nagle on and off, each at most {} s",
        PHASE_LIMIT.as_secs()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut results: HashMap<(&str, usize, bool), Vec<Phase>> = HashMap::new();
    let mut errors = 0;
    for r in 0..rounds {
        for (bulbs, commands) in [(1usize, 1000usize), (50, 2000)] {
            for nodelay in [false, true] {
                for who in ["hearth", "mosquitto"] {
                    let s = if who == "hearth" {
                        start_hearth(hearth, bulbs)
                    } else {
                        start_mosquitto(hearth, bulbs)
                    };
                    let p = rt.block_on(phase(&s, commands, nodelay));
                    println!(
                        "round {} {who:<9} {bulbs:>2} bulb(s), Nagle {:<3}: p50 {:>6.0} us  p99 {:>6.0} us  sent {:>5} lost {}  cpu {:>5.0} us/cmd  rss {:.1} MiB",
                        r + 1,
                        nagle(nodelay),
                        p.p50_us,
                        p.p99_us,
                        p.sent,
                        p.lost,
                        p.cpu_us_per_cmd,
                        p.rss_mib
                    );
                    errors += p.lost;
                    results.entry((who, bulbs, nodelay)).or_default().push(p);
                    drop(s);
                }
            }
        }
    }
    println!("\nmedians over {rounds} rounds                       hearth   mosquitto   ratio");
    type Row = (&'static str, fn(&Phase) -> f64);
    let rows: [Row; 4] = [
        ("p50 command to state us", |p| p.p50_us),
        ("p99 command to state us", |p| p.p99_us),
        ("broker CPU us per command", |p| p.cpu_us_per_cmd),
        ("broker RSS MiB", |p| p.rss_mib),
    ];
    for bulbs in [1usize, 50] {
        for nodelay in [false, true] {
            for (name, f) in rows {
                let of = |who| median(&results[&(who, bulbs, nodelay)].iter().map(f).collect::<Vec<_>>());
                let (h, m) = (of("hearth"), of("mosquitto"));
                println!(
                    "{bulbs:>2} bulb(s), Nagle {:<3}, {name:<26} {h:>9.1} {m:>11.1} {:>6.2}x",
                    nagle(nodelay),
                    h / m
                );
            }
        }
    }
    println!("commands without an answer over all rounds: {errors}");
}
