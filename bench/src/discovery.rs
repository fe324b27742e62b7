//! Advert-to-pending time: how long from a device announcing itself over
//! mDNS until `hearth devices list` shows it pending. Runs inside a network
//! namespace the benchmark creates (multicast on its loopback), with the
//! real daemon and `hearth-sim announce` (the simulated home of 8 devices).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::start::{self, Process};

pub(crate) fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip (iproute2)");
    assert!(status.success(), "ip {args:?} failed (run as root)");
}

fn listed(hearth: &Path, data: &Path) -> usize {
    let out = Command::new(hearth)
        .args(["devices", "list", "--json", "--data-dir"])
        .arg(data)
        .output()
        .expect("hearth devices list");
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0)
}

/// A network namespace of the benchmark's own: loopback up, multicast on
/// and routed there. Deleted on drop.
pub(crate) struct Ns(String);

impl Ns {
    fn new(what: &str) -> Ns {
        let ns = Ns::bare(what);
        ip(&[
            "netns",
            "exec",
            &ns.0,
            "ip",
            "route",
            "add",
            "224.0.0.0/4",
            "dev",
            "lo",
        ]);
        ns
    }

    /// A namespace with its loopback up and multicast on, and no route for
    /// multicast yet (a benchmark with a veth routes it there).
    pub(crate) fn bare(what: &str) -> Ns {
        let ns = Ns(format!("hearth-bench-{what}-{}", std::process::id()));
        ip(&["netns", "add", &ns.0]);
        ip(&["netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"]);
        ip(&[
            "netns",
            "exec",
            &ns.0,
            "ip",
            "link",
            "set",
            "lo",
            "multicast",
            "on",
        ]);
        ns
    }

    /// Its name, as `ip netns` knows it (`/var/run/netns/NAME`).
    pub(crate) fn name(&self) -> &str {
        &self.0
    }

    /// `program` run inside the namespace (`ip netns exec` execs it, so the
    /// child's pid is the program's).
    pub(crate) fn exec(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).arg(program);
        c
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The real daemon in `ns`, discovering on its loopback, once it answers:
/// the child, and the data directory (inside the returned temporary one).
fn hearth_in(ns: &Ns, hearth: &Path) -> (Process, tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (daemon, data) = start::hearth_by(
        ns.exec(hearth),
        tmp.path(),
        "[mqtt]\ntls_listen = [\"127.0.0.1:0\"]\nplain_listen = []\n[web]\nenabled = false\n\
         [discovery]\ninterfaces = \"loopback\"\n",
    );
    (daemon, tmp, data)
}

pub fn run(hearth: &Path, rounds: usize) {
    let sim = hearth.with_file_name("hearth-sim");
    assert!(sim.exists(), "build hearth-sim (bench/run does)");
    println!("\n## discovery: advert to pending, 8 simulated devices, {rounds} rounds; medians");
    let (mut firsts, mut alls) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let ns = Ns::new(&format!("discovery-{round}"));
        let (daemon, _tmp, data) = hearth_in(&ns, hearth);
        std::thread::sleep(Duration::from_millis(500));
        let start = Instant::now();
        let mut announcer = ns
            .exec(&sim)
            .args(["announce", "--seconds", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (mut first, mut all) = (None, None);
        while start.elapsed() < Duration::from_secs(20) {
            let n = listed(hearth, &data);
            if n > 0 && first.is_none() {
                first = Some(start.elapsed());
            }
            if n >= 8 {
                all = Some(start.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = announcer.kill();
        let _ = announcer.wait();
        drop(daemon);
        drop(ns);
        let (first, all) = (
            first.expect("nothing discovered"),
            all.expect("not all 8 discovered"),
        );
        println!(
            "round {}: first {:.0} ms, all 8 {:.0} ms",
            round + 1,
            ms(first),
            ms(all)
        );
        firsts.push(first);
        alls.push(all);
    }
    firsts.sort();
    alls.sort();
    println!(
        "advert to pending, median: first device {:.0} ms, all 8 devices {:.0} ms (floor 1,500 ms)",
        ms(firsts[firsts.len() / 2]),
        ms(alls[alls.len() / 2])
    );
}

/// Memory under a sustained flood: `hearth-sim flood` sends 10,000
/// announcements a second, each a new HomeKit bulb, for `seconds`, while the
/// daemon and a reference mDNS browser (mdns-sd, through `hearth-sim browse
/// --all`) listen in the same namespace. Prints both RSS figures over time.
pub fn flood(hearth: &Path, seconds: u64) {
    let sim = hearth.with_file_name("hearth-sim");
    assert!(sim.exists(), "build hearth-sim (bench/run does)");
    println!("\n## discovery: RSS under a {seconds} s flood at 10,000 adverts/s, hearth against mdns-sd");
    let ns = Ns::new("flood");
    let (daemon, _tmp, data) = hearth_in(&ns, hearth);
    let spawn = |program: &Path, args: &[&str]| {
        ns.exec(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let total = (seconds + 15).to_string();
    let mut reference = spawn(&sim, &["browse", "_hap._tcp", "--all", "--seconds", &total]);
    std::thread::sleep(Duration::from_secs(2));
    // `ip netns exec` execs the program, so the child's pid is the program's.
    let pids = [daemon.id(), reference.id()];
    let rss = || pids.map(crate::measure::rss_mib);
    let before = rss();
    println!(
        "before: hearth {:.1} MiB, mdns-sd {:.1} MiB",
        before[0], before[1]
    );
    let mut flood = spawn(
        &sim,
        &["flood", "--rate", "10000", "--seconds", &seconds.to_string()],
    );
    let start = Instant::now();
    let mut peak = before;
    let mut step = 0;
    while start.elapsed() < Duration::from_secs(seconds + 10) {
        std::thread::sleep(Duration::from_secs(1));
        let now = rss();
        peak = [peak[0].max(now[0]), peak[1].max(now[1])];
        step += 1;
        if step % 10 == 0 {
            println!(
                "{:>3} s: hearth {:.1} MiB, mdns-sd {:.1} MiB{}",
                step,
                now[0],
                now[1],
                if start.elapsed() > Duration::from_secs(seconds) {
                    " (flood over)"
                } else {
                    ""
                }
            );
        }
    }
    let _ = flood.wait();
    let status = Command::new(hearth)
        .args(["status", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .expect("hearth status");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
    println!("hearth discovery counters: {}", status["discovery"]);
    println!(
        "growth: hearth {:+.1} MiB (peak {:.1}), mdns-sd {:+.1} MiB (peak {:.1})",
        peak[0] - before[0],
        peak[0],
        peak[1] - before[1],
        peak[1]
    );
    let _ = reference.kill();
    let _ = reference.wait();
    drop(daemon);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The corpus of real devices' adverts (tests/fixtures/adverts), announced
/// by python-zeroconf each from an address of its own (tests/mdns/corpus.py),
/// against python-zeroconf's own browser resolving the same service types
/// in the same namespace (tests/mdns/browse.py): for every device hearth
/// lists, the time from its first probe to hearth's pending entry (its
/// `created_at`), and to the reference's first resolved service of it.
pub fn corpus(hearth: &Path, rounds: usize) {
    let python = Path::new("tests/mdns/.venv/bin/python");
    assert!(python.exists(), "tests/mdns/.venv (bench/run makes it)");
    let files = [
        "tests/fixtures/adverts/lights-plugs-sensors.json",
        "tests/fixtures/adverts/cameras-doorbells-others.json",
    ];
    println!(
        "\n## corpus: real devices' adverts to hearth's pending list, against python-zeroconf's browser; {rounds} rounds"
    );
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let ns = Ns::new(&format!("corpus-{round}"));
        let (daemon, _tmp, data) = hearth_in(&ns, hearth);
        std::thread::sleep(Duration::from_millis(500));
        let (mut browser, browsed) = lines_of(
            ns.exec(python)
                .arg("tests/mdns/browse.py")
                .args(hearth::discovery::classify::DEFAULT_SERVICE_TYPES),
        );
        wait_line(&browsed, |l| l == "browsing");
        let (mut announcer, announced) = lines_of(ns.exec(python).arg("tests/mdns/corpus.py").args(files));
        // address -> first probe (Unix s)
        let mut started = std::collections::HashMap::new();
        wait_line(&announced, |l| {
            let p: Vec<&str> = l.split(' ').collect();
            if p[0] == "announced" {
                started.insert(p[2].to_owned(), p[3].parse::<f64>().unwrap());
            }
            l == "ready"
        });
        // Until hearth's list has not grown for 3 s.
        let (mut list, mut since) = (serde_json::Value::Null, Instant::now());
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline && since.elapsed() < Duration::from_secs(3) {
            let now = devices(hearth, &data);
            if now.as_array().map(Vec::len) != list.as_array().map(Vec::len) {
                since = Instant::now();
            }
            list = now;
            std::thread::sleep(Duration::from_millis(200));
        }
        let resolved: Vec<String> = browsed.try_iter().collect();
        for child in [&mut announcer, &mut browser] {
            let _ = child.kill();
            let _ = child.wait();
        }
        drop(daemon);
        drop(ns);
        let (mut h, mut r) = (Vec::new(), Vec::new());
        for d in list.as_array().into_iter().flatten() {
            let Some(address) = d["addresses"][0].as_str() else {
                continue;
            };
            let Some(t0) = started.get(address) else { continue };
            h.push(d["created_at"].as_f64().unwrap() / 1000.0 - t0);
            let first = resolved
                .iter()
                .filter_map(|l| {
                    let p: Vec<&str> = l.split(' ').collect();
                    (p.len() == 3 && p[1] == address).then(|| p[2].parse::<f64>().unwrap())
                })
                .reduce(f64::min);
            if let Some(at) = first {
                r.push(at - t0);
            }
        }
        println!(
            "round {}: hearth listed {} devices, median {:.2} s, worst {:.2} s; python-zeroconf resolved {} of them, median {:.2} s, worst {:.2} s",
            round + 1,
            h.len(),
            quantile(&mut h, 0.5),
            quantile(&mut h, 1.0),
            r.len(),
            quantile(&mut r, 0.5),
            quantile(&mut r, 1.0),
        );
        ours.extend(h);
        theirs.extend(r);
    }
    println!(
        "first probe to known, over {rounds} rounds: hearth pending median {:.2} s, worst {:.2} s; \
         python-zeroconf resolved median {:.2} s, worst {:.2} s",
        quantile(&mut ours, 0.5),
        quantile(&mut ours, 1.0),
        quantile(&mut theirs, 0.5),
        quantile(&mut theirs, 1.0),
    );
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn devices(hearth: &Path, data: &Path) -> serde_json::Value {
    let out = Command::new(hearth)
        .args(["devices", "list", "--json", "--data-dir"])
        .arg(data)
        .output()
        .expect("hearth devices list");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Starts `cmd` with its standard output read line by line into a channel.
fn lines_of(cmd: &mut Command) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// Reads lines until `done` says so, for at most 60 s.
fn wait_line(lines: &std::sync::mpsc::Receiver<String>, mut done: impl FnMut(&str) -> bool) {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("no answer within 60 s");
        if done(&line) {
            return;
        }
    }
}
