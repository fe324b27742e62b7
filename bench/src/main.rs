//! hearth's benchmarks. `bench/run` builds everything in release mode and
//! runs this. Each benchmark measures hearth against a reference in the same
//! run, alternating between them over several rounds, and prints medians and
//! ratios for docs/PERFORMANCE.md.
//!
//! - `store`: insert, update and read-all of 1,000 and 10,000 devices in the
//!   sealed store, against the same schema and SQL with plaintext values.
//! - `rss`: resident memory of an idle `hearth run` with an empty store.
//! - `mqtt`: the broker against mosquitto (see `mqtt.rs`).
//! - `discovery`: advert-to-pending time (see `discovery.rs`).
//! - `corpus`: real devices' adverts to pending, against python-zeroconf.
//! - `flood`: memory under a sustained mDNS flood, against mdns-sd
//!   (`--seconds N`, 60 by default).
//! - `web`: the dashboard's HTTPS server against nginx (see `web.rs`).
//! - `ha`: Home Assistant's command path through the canonical topics,
//!   against Tasmota's own topics on mosquitto (see `ha.rs`).
//! - `ha-live`: a real Home Assistant 2026 on hearth against the same on
//!   mosquitto: device state to Home Assistant state, and broker start to
//!   every entity available (see `ha_live.rs`).
//! - `relay`: a voice directive to the bulb, against Home Assistant's
//!   publish on the same daemon (see `relay.rs`).
//! - `lockdown`: "log everyone out" against the same revocations by hand
//!   (see `web.rs`).
//! - `matter`: the Matter bridge against a matter.js controller across a
//!   veth: commissioning time, a Matter command to the bulb against the
//!   relay's directive, idle RSS with the bridge off and on (see
//!   `matter.rs`).
//! - `dns`: the DNS resolver against dnsmasq as a forwarder, both before a
//!   cacheless dnsmasq upstream: hit and miss latency, queries per second,
//!   RSS with a full cache, and the default rate limit under a flood (see
//!   `dns.rs`).
//!
//! `bench/run dashboard` is not here: it is `bench/dashboard.mjs`, which
//! drives headless Chromium with the browser tests' playwright-core (the
//! Home page's render against a static copy of its DOM, and a live update
//! against the event stream). `bench/run all` runs it after these.

mod discovery;
mod dns;
mod ha;
mod ha_live;
mod keys;
mod matter;
mod measure;
mod mqtt;
mod relay;
mod start;
mod web;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hearth::store::schema::{INSERT_DEVICE, MIGRATIONS, SELECT_DEVICES, UPDATE_DEVICE};
use hearth::store::value::{decode_device_record, encode_device_record};
use hearth::store::{DataDir, DeviceFields, DeviceId, DeviceKind, DeviceStatus, Store, UnixTime};
use rusqlite::types::Value;

const ROUNDS: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map(String::as_str).unwrap_or("all");
    let hearth = args
        .iter()
        .position(|a| a == "--hearth")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/hearth"));
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|r| r.parse().ok())
        .unwrap_or(3usize)
        .max(1);
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|r| r.parse().ok())
        .unwrap_or(60u64)
        .clamp(1, 600);
    println!("machine: {}", machine());
    match what {
        "store" => store_bench(),
        "rss" => rss_bench(&hearth),
        "mqtt" => mqtt::run(&hearth, rounds),
        "discovery" => discovery::run(&hearth, rounds),
        "flood" => discovery::flood(&hearth, seconds),
        "corpus" => discovery::corpus(&hearth, rounds),
        "web" => web::run(&hearth, rounds),
        "ha" => ha::run(&hearth, rounds),
        "ha-live" => ha_live::run(&hearth, rounds),
        "relay" => relay::run(&hearth, rounds),
        "lockdown" => web::lockdown(&hearth, rounds),
        "keys" => keys::run(rounds),
        "matter" => matter::run(&hearth, rounds),
        "dns" => dns::run(&hearth, rounds),
        "all" => {
            store_bench();
            rss_bench(&hearth);
            mqtt::run(&hearth, rounds);
            discovery::run(&hearth, rounds);
            discovery::flood(&hearth, seconds);
            discovery::corpus(&hearth, rounds);
            web::run(&hearth, rounds);
            ha::run(&hearth, rounds);
            ha_live::run(&hearth, rounds);
            relay::run(&hearth, rounds);
            web::lockdown(&hearth, rounds);
            keys::run(rounds);
            matter::run(&hearth, rounds);
            dns::run(&hearth, rounds);
        }
        other => {
            eprintln!(
                "unknown benchmark {other}; use store, rss, mqtt, discovery, flood, corpus, web, ha, ha-live, relay, lockdown, keys, matter, dns or all"
            );
            std::process::exit(64);
        }
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cpu}, {cores} cores, {}", std::env::consts::ARCH)
}

/// A realistic device: every sealed field set, as after adoption.
fn device(i: usize) -> DeviceFields {
    let kind = if i.is_multiple_of(4) {
        DeviceKind::Camera
    } else {
        DeviceKind::Bulb
    };
    let mut f = DeviceFields::new(kind, "tasmota");
    f.nickname = Some(format!("Living room lamp {i}"));
    f.room = Some(format!("Room {}", i % 12));
    f.vendor = Some("Tasmota".into());
    f.model = Some("Sonoff Basic R2".into());
    f.firmware = Some("13.4.0".into());
    f.mac = Some(format!(
        "aa:bb:cc:{:02x}:{:02x}:{:02x}",
        i >> 16 & 0xff,
        i >> 8 & 0xff,
        i & 0xff
    ));
    f.addresses = vec![
        IpAddr::from([10, 0, (i >> 8) as u8, i as u8]),
        format!("fd00::{:x}", i + 1).parse().unwrap(),
    ];
    f.ssid = Some("HomeNet-5G".into());
    if kind == DeviceKind::Camera {
        f.stream_url = Some(format!("rtsp://10.0.0.{}/stream1", i % 250));
    }
    f.last_seen = Some(UnixTime::now());
    f
}

#[derive(Default)]
struct Times {
    insert: Vec<Duration>,
    update: Vec<Duration>,
    read_all: Vec<Duration>,
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn store_bench() {
    println!("\n## store: {ROUNDS} rounds, alternating sealed and plaintext; medians");
    println!(
        "{:>7} | {:>10} | {:>12} | {:>12} | {:>6}",
        "devices", "operation", "sealed ms", "plain ms", "ratio"
    );
    for n in [1_000usize, 10_000] {
        let (mut sealed, mut plain) = (Times::default(), Times::default());
        for _ in 0..ROUNDS {
            run_sealed(n, &mut sealed);
            run_plain(n, &mut plain);
        }
        for (name, s, p) in [
            ("insert", &sealed.insert, &plain.insert),
            ("update", &sealed.update, &plain.update),
            ("read-all", &sealed.read_all, &plain.read_all),
        ] {
            let (s, p) = (median(s), median(p));
            println!(
                "{n:>7} | {name:>10} | {:>12.2} | {:>12.2} | {:>5.2}x",
                ms(s),
                ms(p),
                s.as_secs_f64() / p.as_secs_f64()
            );
        }
    }
    println!("(insert and update: one transaction per device; read-all: every device, decoded)");
}

/// How many read-all passes make one sample, so short reads are not noise.
fn read_passes(n: usize) -> u32 {
    if n <= 1_000 { 20 } else { 3 }
}

fn run_sealed(n: usize, t: &mut Times) {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let mut store: Store = hearth::store::open_or_init(&data, None).unwrap();
    let fields: Vec<DeviceFields> = (0..n).map(device).collect();

    let start = Instant::now();
    let ids: Vec<_> = fields
        .iter()
        .map(|f| store.insert_device(f).unwrap().id)
        .collect();
    t.insert.push(start.elapsed());

    let start = Instant::now();
    for (id, f) in ids.iter().zip(&fields) {
        let mut f = f.clone();
        f.last_seen = Some(UnixTime::now());
        store.update_device(id, &f).unwrap();
    }
    t.update.push(start.elapsed());

    let passes = read_passes(n);
    let start = Instant::now();
    for _ in 0..passes {
        let all = store.devices().unwrap();
        assert_eq!(all.len(), n);
        std::hint::black_box(all);
    }
    t.read_all.push(start.elapsed() / passes);
}

/// The plaintext reference: the store's own schema, pragmas and SQL, with
/// each value written as its plain bytes instead of an envelope.
fn run_plain(n: usize, t: &mut Times) {
    let tmp = tempfile::tempdir().unwrap();
    let mut conn = rusqlite::Connection::open(tmp.path().join("plain.db")).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .unwrap();
    for pragma in [
        "PRAGMA foreign_keys = ON",
        "PRAGMA secure_delete = ON",
        "PRAGMA synchronous = NORMAL",
        "PRAGMA temp_store = MEMORY",
    ] {
        conn.execute_batch(pragma).unwrap();
    }
    for m in MIGRATIONS {
        conn.execute_batch(m).unwrap();
    }
    let fields: Vec<DeviceFields> = (0..n).map(device).collect();
    // Random ids, as the store makes them (they are not sealed).
    let ids: Vec<String> = (0..n)
        .map(|_| DeviceId::generate().unwrap().to_string())
        .collect();

    let start = Instant::now();
    for (id, f) in ids.iter().zip(&fields) {
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx.prepare_cached(INSERT_DEVICE).unwrap();
            stmt.execute(rusqlite::params_from_iter(
                plain_row(id, f, UnixTime::now()).iter(),
            ))
            .unwrap();
        }
        tx.commit().unwrap();
    }
    t.insert.push(start.elapsed());

    let start = Instant::now();
    for (id, f) in ids.iter().zip(&fields) {
        let mut f = f.clone();
        f.last_seen = Some(UnixTime::now());
        let tx = conn.transaction().unwrap();
        {
            // As the sealed store does: keep created_at from the stored record.
            let record: Vec<u8> = tx
                .prepare_cached("SELECT record FROM devices WHERE id = ?1")
                .unwrap()
                .query_row([id], |r| r.get(0))
                .unwrap();
            let (_, created_at) = decode_device_record(&record, f.status).unwrap();
            let mut stmt = tx.prepare_cached(UPDATE_DEVICE).unwrap();
            stmt.execute(rusqlite::params_from_iter(plain_row(id, &f, created_at).iter()))
                .unwrap();
        }
        tx.commit().unwrap();
    }
    t.update.push(start.elapsed());

    let passes = read_passes(n);
    let start = Instant::now();
    for _ in 0..passes {
        let mut stmt = conn.prepare_cached(SELECT_DEVICES).unwrap();
        let mut rows = stmt.query([]).unwrap();
        let mut all = Vec::with_capacity(n);
        while let Some(row) = rows.next().unwrap() {
            // As a plaintext store would: borrow the row's bytes, no copies.
            let id = row.get_ref(0).unwrap().as_str().unwrap().to_owned();
            let status = match row.get_ref(1).unwrap().as_str().unwrap() {
                "adopted" => DeviceStatus::Adopted,
                _ => DeviceStatus::Pending,
            };
            let record = row.get_ref(4).unwrap().as_blob().unwrap();
            let (fields, created_at) = decode_device_record(record, status).unwrap();
            all.push((id, fields, created_at));
        }
        assert_eq!(all.len(), n);
        std::hint::black_box(all);
    }
    t.read_all.push(start.elapsed() / passes);
}

/// A device row as the store writes it, minus the sealing: the same record
/// encoding, and the MAC itself as its index.
fn plain_row(id: &str, f: &DeviceFields, created_at: UnixTime) -> Vec<Value> {
    vec![
        Value::Text(id.to_owned()),
        Value::Text("pending".into()),
        match &f.mac {
            Some(mac) => Value::Blob(mac.to_ascii_lowercase().into_bytes()),
            None => Value::Null,
        },
        Value::Text("plain".into()),
        Value::Blob(encode_device_record(f, created_at)),
        Value::Null,
    ]
}

/// Starts `hearth run` on an empty store and reads its resident memory once
/// it has been idle for a moment.
fn rss_bench(hearth: &Path) {
    println!("\n## rss: idle `hearth run`, empty store, {ROUNDS} runs; median");
    let mut samples = Vec::new();
    for _ in 0..ROUNDS {
        let tmp = tempfile::tempdir().unwrap();
        // Loopback listeners and no discovery: the benchmark sends nothing
        // onto the machine's network.
        let config = tmp.path().join("hearth.toml");
        std::fs::write(
            &config,
            "[mqtt]\ntls_listen = [\"127.0.0.1:0\"]\nplain_listen = [\"127.0.0.1:0\"]\n[discovery]\nenabled = false\n\
             [web]\nlisten = [\"127.0.0.1:0\"]\n",
        )
        .unwrap();
        let mut child = std::process::Command::new(hearth)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .env_remove("NOTIFY_SOCKET")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start hearth (build it with bench/run)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !tmp.path().join("data/hearth.db").exists() {
            assert!(Instant::now() < deadline, "hearth did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_secs(2));
        samples.push(measure::rss_mib(child.id()));
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = child.wait();
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    println!(
        "idle RSS: {:.1} MiB (min {:.1}, max {:.1})",
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1]
    );
}
