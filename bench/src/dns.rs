//! `dns`: hearth's resolver (issue 24) against dnsmasq as the forwarder
//! under test, both in front of the same upstream on loopback: a second
//! dnsmasq with its cache off (`--cache-size=0`), answering every
//! `*.bench.example` with 192.0.2.1 for an hour, so that a miss is a real
//! upstream round trip. Each round starts all three afresh and measures
//! hearth and the reference forwarder (dnsmasq, `--cache-size=10000`) the
//! same way, in alternating order:
//!
//! - latency of a cache hit (one name, repeated after a warm-up) and of a
//!   miss (a new name each time), 10,000 queries each over UDP, one in
//!   flight;
//! - queries per second of cache hits with 64 in flight for 5 s, from 64
//!   sockets on 64 loopback addresses (hearth limits each client address;
//!   the benchmark raises the limit, and this spreads the load as a LAN
//!   would);
//! - resident memory when started, and with a full cache (the 10,000 misses
//!   fill hearth's default `cache_entries` and dnsmasq's `--cache-size`).
//!
//! Then once: hearth with its default rate limit (50 queries/s, burst 200,
//! per client address) under a paced flood from one address, while another
//! address asks ten times a second.
//!
//! Queries are built by hand (a DNS query is a header and one question);
//! every loop is bounded in count and in time, and nothing leaves loopback.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::measure::{self, median, percentile_us};
use crate::start::{self, Process};

/// Queries per latency measurement.
const QUERIES: usize = 10_000;
/// Concurrent queries in the throughput measurement, one per socket.
const IN_FLIGHT: usize = 64;
/// How long the throughput measurement runs.
const THROUGHPUT_FOR: Duration = Duration::from_secs(5);
/// A query not answered in this long is lost.
const LOST_AFTER: Duration = Duration::from_millis(500);
/// The most a latency measurement may take.
const MEASURE_AT_MOST: Duration = Duration::from_secs(90);
/// The name of the cache hits.
const HIT: &str = "hit.bench.example";
/// The upstream's wildcard and the address it answers.
const ZONE: &str = "bench.example";
const ANSWER: &str = "192.0.2.1";
/// The cache capacity of both forwarders (hearth's default).
const CACHE: usize = 10_000;

/// A DNS query for `name`, type A, class IN, recursion desired.
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    // RD; one question, no other records.
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 1, 0, 1]);
    q
}

/// `message` answers query `id`: a response, NOERROR, at least one answer.
pub fn answered(message: &[u8], id: u16) -> bool {
    message.len() >= 12
        && message[..2] == id.to_be_bytes()
        && message[2] & 0x80 != 0
        && message[3] & 0x0f == 0
        && u16::from_be_bytes([message[6], message[7]]) >= 1
}

/// A table row: its label, the figure of a round, the unit.
type Row = (&'static str, fn(&Round) -> f64, &'static str);

/// One forwarder's figures in one round.
#[derive(Default)]
struct Round {
    hit_p50: f64,
    hit_p99: f64,
    miss_p50: f64,
    miss_p99: f64,
    qps: f64,
    rss_start: f64,
    rss_full: f64,
    lost: usize,
}

/// A forwarder under test: where it answers and its process.
struct Server {
    port: u16,
    process: Process,
    data: Option<std::path::PathBuf>,
}

/// The upstream both forwarders ask: a dnsmasq with its cache off that
/// answers every name under the zone; its port and the process.
fn upstream(dir: &Path) -> (u16, start::Process) {
    let port = start::free_port();
    let child = start::dnsmasq(
        dir,
        port,
        &[
            "--cache-size=0".into(),
            format!("--address=/{ZONE}/{ANSWER}"),
            // dnsmasq's own records have a TTL of 0 by default, which no
            // forwarder would cache.
            "--local-ttl=3600".into(),
        ],
        HIT,
    );
    (port, child)
}

pub fn run(hearth: &Path, rounds: usize) {
    println!(
        "\n## dns: hearth's resolver against dnsmasq (forwarder, cache {CACHE}), both before a cacheless dnsmasq upstream on loopback; {rounds} rounds; medians"
    );
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for round in 0..rounds {
        let tmp = tempfile::tempdir().unwrap();
        let (up_port, upstream) = upstream(tmp.path());
        let mut h = start_hearth(hearth, tmp.path(), up_port, 10_000, 100_000);
        let ref_port = start::free_port();
        let d = Server {
            port: ref_port,
            process: start::dnsmasq(
                tmp.path(),
                ref_port,
                &[
                    format!("--cache-size={CACHE}"),
                    format!("--server=127.0.0.1#{up_port}"),
                    "--dns-forward-max=1000".into(),
                ],
                HIT,
            ),
            data: None,
        };
        // Both started: let them settle before the first reading.
        std::thread::sleep(Duration::from_secs(1));
        let (a, b) = if round % 2 == 0 {
            let a = measure_server(&h, round, "hearth");
            (a, measure_server(&d, round, "dnsmasq"))
        } else {
            let b = measure_server(&d, round, "dnsmasq");
            (measure_server(&h, round, "hearth"), b)
        };
        let status = start::admin(h.data.as_ref().unwrap(), hearth::app::admin::Request::DnsStatus);
        let s = &status["status"];
        println!(
            "round {}: hearth cache {} of {}, {} hits, {} forwarded, {} rate-limited, {} failed",
            round + 1,
            s["cache_entries"],
            s["cache_capacity"],
            s["counts"]["cache_hits"],
            s["counts"]["forwarded"],
            s["counts"]["rate_limited"],
            s["counts"]["failed"],
        );
        for (who, r) in [("hearth", &a), ("dnsmasq", &b)] {
            println!(
                "round {}: {who:7} hit p50 {:.0} µs p99 {:.0} µs, miss p50 {:.0} µs p99 {:.0} µs, {:.0} q/s, RSS {:.1} → {:.1} MiB, {} lost",
                round + 1,
                r.hit_p50,
                r.hit_p99,
                r.miss_p50,
                r.miss_p99,
                r.qps,
                r.rss_start,
                r.rss_full,
                r.lost
            );
        }
        ours.push(a);
        theirs.push(b);
        h.process.stop();
        drop(d);
        drop(upstream);
    }
    let m = |v: &[Round], f: fn(&Round) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    println!("\n| medians of {rounds} rounds | hearth | dnsmasq | hearth / dnsmasq |");
    println!("|---|---:|---:|---:|");
    let rows: [Row; 8] = [
        ("cache hit, p50", |r| r.hit_p50, "µs"),
        ("cache hit, p99", |r| r.hit_p99, "µs"),
        ("cache miss, p50", |r| r.miss_p50, "µs"),
        ("cache miss, p99", |r| r.miss_p99, "µs"),
        ("cache hits, 64 in flight", |r| r.qps, "q/s"),
        ("RSS started", |r| r.rss_start, "MiB"),
        ("RSS, 10,000 cached", |r| r.rss_full, "MiB"),
        (
            "RSS growth for 10,000 cached",
            |r| r.rss_full - r.rss_start,
            "MiB",
        ),
    ];
    for (what, f, unit) in rows {
        let (x, y) = (m(&ours, f), m(&theirs, f));
        let fmt = |v: f64| {
            if unit == "MiB" {
                format!("{v:.1} {unit}")
            } else {
                format!("{v:.0} {unit}")
            }
        };
        // dnsmasq allocates its whole cache when it starts: no growth.
        let ratio = if y.abs() < 0.05 {
            "—".to_owned()
        } else {
            format!("{:.2}×", x / y)
        };
        println!("| {what} | {} | {} | {ratio} |", fmt(x), fmt(y));
    }
    let lost: usize = ours.iter().map(|r| r.lost).sum();
    let lost_ref: usize = theirs.iter().map(|r| r.lost).sum();
    println!("queries lost over all rounds: hearth {lost}, dnsmasq {lost_ref}");
    flood(hearth);
}

/// hearth answering DNS on a free loopback port, forwarding to
/// 127.0.0.1:`upstream`, with `rate`/`burst` per client address.
fn start_hearth(hearth: &Path, dir: &Path, upstream: u16, rate: u32, burst: u32) -> Server {
    let port = start::free_port();
    // Loopback listeners and no discovery: nothing leaves the machine.
    let config = format!(
        "[mqtt]\ntls_listen = [\"127.0.0.1:0\"]\nplain_listen = [\"127.0.0.1:0\"]\n[discovery]\nenabled = false\n\
         [web]\nlisten = [\"127.0.0.1:0\"]\n\
         [dns]\nenabled = true\nlisten = [\"127.0.0.1:{port}\"]\nupstream = [\"127.0.0.1:{upstream}\"]\n\
         cache_entries = {CACHE}\nclient_rate_per_sec = {rate}\nclient_burst = {burst}\n"
    );
    let dir = dir.join("hearth");
    std::fs::create_dir_all(&dir).unwrap();
    let (process, data) = start::hearth(hearth, &dir, &config);
    start::wait_for_dns(port, HIT, "hearth");
    Server {
        port,
        process,
        data: Some(data),
    }
}

fn measure_server(s: &Server, round: usize, who: &str) -> Round {
    let pid = s.process.id();
    let mut r = Round {
        rss_start: measure::rss_mib(pid),
        ..Round::default()
    };
    // Warm-up: the hit is cached, the sockets and the code paths are warm.
    let (_, lost) = latencies(s.port, 200, |_| HIT.to_owned());
    r.lost += lost;
    let (mut hits, lost) = latencies(s.port, QUERIES, |_| HIT.to_owned());
    r.lost += lost;
    hits.sort();
    r.hit_p50 = percentile_us(&hits, 0.5);
    r.hit_p99 = percentile_us(&hits, 0.99);
    let (mut misses, lost) = latencies(s.port, QUERIES, |i| format!("n{i}.r{round}.{who}.{ZONE}"));
    r.lost += lost;
    misses.sort();
    r.miss_p50 = percentile_us(&misses, 0.5);
    r.miss_p99 = percentile_us(&misses, 0.99);
    // The misses filled the cache; let the allocator settle.
    std::thread::sleep(Duration::from_millis(500));
    r.rss_full = measure::rss_mib(pid);
    let (qps, lost) = throughput(s.port);
    r.qps = qps;
    r.lost += lost;
    r
}

/// `count` queries, one in flight, for `name(i)`: each answered one's time,
/// and how many were lost.
fn latencies(port: u16, count: usize, name: impl Fn(usize) -> String) -> (Vec<Duration>, usize) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(("127.0.0.1", port)).unwrap();
    let mut times = Vec::with_capacity(count);
    let mut lost = 0;
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + MEASURE_AT_MOST;
    for i in 0..count {
        if Instant::now() > deadline {
            lost += count - i;
            break;
        }
        let id = i as u16;
        let q = query(id, &name(i));
        let sent = Instant::now();
        socket.send(&q).unwrap();
        loop {
            let left = LOST_AFTER.saturating_sub(sent.elapsed());
            if left.is_zero() {
                lost += 1;
                break;
            }
            socket.set_read_timeout(Some(left)).unwrap();
            match socket.recv(&mut buf) {
                Ok(n) if answered(&buf[..n], id) => {
                    times.push(sent.elapsed());
                    break;
                }
                // A late answer to an earlier query.
                Ok(_) => continue,
                Err(_) => {
                    lost += 1;
                    break;
                }
            }
        }
    }
    (times, lost)
}

/// Cache hits with [`IN_FLIGHT`] queries outstanding, one per socket, each
/// socket on its own loopback address, for [`THROUGHPUT_FOR`]: answers per
/// second, and how many were lost.
fn throughput(port: u16) -> (f64, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let start = Instant::now();
        let deadline = start + THROUGHPUT_FOR;
        let mut tasks = Vec::new();
        for i in 0..IN_FLIGHT {
            let socket = tokio::net::UdpSocket::bind((Ipv4Addr::new(127, 0, 1, 1 + i as u8), 0))
                .await
                .unwrap();
            socket.connect(("127.0.0.1", port)).await.unwrap();
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut lost) = (0usize, 0usize);
                let mut buf = [0u8; 1500];
                let mut id = 0u16;
                while Instant::now() < deadline {
                    id = id.wrapping_add(1);
                    if socket.send(&query(id, HIT)).await.is_err() {
                        lost += 1;
                        continue;
                    }
                    let sent = Instant::now();
                    loop {
                        let left = LOST_AFTER.saturating_sub(sent.elapsed());
                        match tokio::time::timeout(left, socket.recv(&mut buf)).await {
                            Ok(Ok(n)) if answered(&buf[..n], id) => {
                                ok += 1;
                                break;
                            }
                            Ok(Ok(_)) => continue,
                            _ => {
                                lost += 1;
                                break;
                            }
                        }
                    }
                }
                (ok, lost)
            }));
        }
        let (mut ok, mut lost) = (0, 0);
        for t in tasks {
            let (o, l) = t.await.unwrap();
            ok += o;
            lost += l;
        }
        (ok as f64 / start.elapsed().as_secs_f64(), lost)
    })
}

/// hearth with its default rate limit: one address sends 2,000 cache hits
/// a second for 3 s, another asks ten times a second.
fn flood(hearth: &Path) {
    const RATE: u32 = 50;
    const BURST: u32 = 200;
    const FLOOD_RATE: u32 = 2_000;
    const FLOOD_FOR: Duration = Duration::from_secs(3);
    println!(
        "\n## dns: a flood from one address against the default limit ({RATE}/s, burst {BURST}, per address)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (up_port, _upstream) = upstream(tmp.path());
    // wait_for_dns spends one query of the probing address's burst.
    let mut h = start_hearth(hearth, tmp.path(), up_port, RATE, BURST);
    let port = h.port;
    let other = std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.3:0").unwrap();
        socket.connect(("127.0.0.1", port)).unwrap();
        socket.set_read_timeout(Some(LOST_AFTER)).unwrap();
        let mut buf = [0u8; 1500];
        let mut answered_n = 0;
        let asked = (FLOOD_FOR.as_millis() / 100) as u16;
        for id in 0..asked {
            let sent = Instant::now();
            let _ = socket.send(&query(id, HIT));
            if let Ok(n) = socket.recv(&mut buf)
                && answered(&buf[..n], id)
            {
                answered_n += 1;
            }
            std::thread::sleep(Duration::from_millis(100).saturating_sub(sent.elapsed()));
        }
        (asked, answered_n)
    });
    let socket = UdpSocket::bind("127.0.0.2:0").unwrap();
    socket.connect(("127.0.0.1", port)).unwrap();
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1500];
    let (mut sent, mut got) = (0u32, 0u32);
    let start = Instant::now();
    let total = FLOOD_RATE * FLOOD_FOR.as_secs() as u32;
    while sent < total && start.elapsed() < FLOOD_FOR + Duration::from_secs(1) {
        // Paced: query k leaves at k / FLOOD_RATE seconds.
        let due = Duration::from_secs_f64(f64::from(sent) / f64::from(FLOOD_RATE));
        if start.elapsed() >= due {
            if socket.send(&query(sent as u16, HIT)).is_ok() {
                sent += 1;
            }
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
        while let Ok(n) = socket.recv(&mut buf) {
            if n >= 12 && buf[2] & 0x80 != 0 {
                got += 1;
            }
        }
    }
    let elapsed = start.elapsed();
    // Late answers.
    let drain = Instant::now() + LOST_AFTER;
    while Instant::now() < drain {
        match socket.recv(&mut buf) {
            Ok(n) if n >= 12 && buf[2] & 0x80 != 0 => got += 1,
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let (asked, other_answered) = other.join().unwrap();
    let status = start::admin(h.data.as_ref().unwrap(), hearth::app::admin::Request::DnsStatus);
    let limited = &status["status"]["counts"]["rate_limited"];
    let most = f64::from(BURST) + f64::from(RATE) * elapsed.as_secs_f64();
    println!(
        "flooding address: {sent} queries in {:.1} s, {got} answered (the limit allows at most {most:.0}); {limited} rate-limited in all",
        elapsed.as_secs_f64()
    );
    println!("other address: {other_answered} of {asked} answered during the flood");
    h.process.stop();
}
