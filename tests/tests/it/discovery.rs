//! Discovery with real multicast, inside a network namespace the test
//! creates: hearth and the simulated home both run there, on its loopback.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{TestHome, hearth, lines_of, run, text, timed_lines_of, tool};

/// A network namespace of the test's own, with loopback up and multicast
/// on. Deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn new() -> Netns {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "hearth-t{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        for args in [
            vec!["netns", "add", &name],
            vec!["netns", "exec", &name, "ip", "link", "set", "lo", "up"],
            vec![
                "netns",
                "exec",
                &name,
                "ip",
                "link",
                "set",
                "lo",
                "multicast",
                "on",
            ],
        ] {
            let out = run(tool("ip").args(&args), Duration::from_secs(10));
            assert!(
                out.status.success(),
                "ip {args:?}: {} (the tests run as root and need iproute2)",
                text(&out.stderr)
            );
        }
        Netns { name }
    }

    /// Two namespaces joined by a veth pair, `a` at `10.251.7.1/24` and `b`
    /// at `10.251.7.2/24`: two hosts on a LAN that exists only inside the
    /// test.
    fn pair() -> (Netns, Netns) {
        let ((a, _), (b, _)) = Netns::linked();
        (a, b)
    }

    /// [`Netns::pair`], with the name of each side's end of the veth.
    pub(crate) fn linked() -> ((Netns, String), (Netns, String)) {
        let (a, b) = (Netns::new(), Netns::new());
        let (va, vb) = (format!("v{}a", &a.name[7..]), format!("v{}b", &b.name[7..]));
        let (va, vb) = (&va[..va.len().min(15)], &vb[..vb.len().min(15)]);
        for args in [
            vec![
                "link", "add", va, "netns", &a.name, "type", "veth", "peer", "name", vb, "netns", &b.name,
            ],
            vec!["-n", &a.name, "addr", "add", "10.251.7.1/24", "dev", va],
            vec!["-n", &b.name, "addr", "add", "10.251.7.2/24", "dev", vb],
            vec!["-n", &a.name, "link", "set", va, "up"],
            vec!["-n", &b.name, "link", "set", vb, "up"],
        ] {
            let out = run(tool("ip").args(&args), Duration::from_secs(10));
            assert!(out.status.success(), "ip {args:?}: {}", text(&out.stderr));
        }
        let (va, vb) = (va.to_owned(), vb.to_owned());
        ((a, va), (b, vb))
    }

    /// Runs `body` on a thread that has entered the namespace: every socket
    /// it opens (a client's address, the namespace's loopback), every
    /// thread and process it starts, is in the namespace. A panic in `body`
    /// is the caller's.
    pub fn enter<T: Send + 'static>(&self, body: impl FnOnce() -> T + Send + 'static) -> T {
        use std::os::fd::AsRawFd;
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).expect("the namespace");
            // setns moves only the calling thread.
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            body()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Its name, as `ip netns` knows it (`/var/run/netns/NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command run inside the namespace.
    pub fn exec(&self, program: &std::path::Path) -> Command {
        let mut cmd = tool("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// `hearth-sim device` from the provisioning in `file`, inside the
    /// namespace for at most `seconds`: the process, and each line it says
    /// ("connected", "state ON", ...) with when it arrived.
    pub fn sim_device(
        &self,
        file: &std::path::Path,
        seconds: u64,
    ) -> (Killed, std::sync::mpsc::Receiver<(String, Instant)>) {
        let mut child = self
            .exec(std::path::Path::new(env!("CARGO_BIN_EXE_hearth-sim")))
            .arg("device")
            .arg("--provisioning")
            .arg(file)
            .args(["--seconds", &seconds.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = timed_lines_of(&mut child);
        (Killed(child), lines)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn devices(home: &TestHome) -> serde_json::Value {
    let out = run(
        hearth()
            .args(["devices", "list", "--json", "--data-dir"])
            .arg(home.data_dir()),
        Duration::from_secs(20),
    );
    if !out.status.success() {
        return serde_json::Value::Array(vec![]);
    }
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Array(vec![]))
}

/// hearth running inside `ns`, discovering on its loopback.
fn daemon_in(ns: &Netns, home: &TestHome) -> Killed {
    daemon_with(ns, home, "loopback")
}

/// hearth running inside `ns`, with `discovery.interfaces = INTERFACES`.
fn daemon_with(ns: &Netns, home: &TestHome, interfaces: &str) -> Killed {
    daemon_config(ns, home, &format!("interfaces = \"{interfaces}\"\n"))
}

/// hearth running inside `ns`, with `discovery` settings `DISCOVERY`.
pub(crate) fn daemon_config(ns: &Netns, home: &TestHome, discovery: &str) -> Killed {
    let config = home.path("hearth.toml");
    std::fs::write(
        &config,
        format!(
            "[mqtt]\ntls_listen = [\"127.0.0.1:0\"]\nplain_listen = []\n[web]\nlisten = [\"127.0.0.1:0\"]\n\
             [discovery]\n{discovery}"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(home.path("daemon.log")).unwrap();
    let daemon = Killed(
        ns.exec(std::path::Path::new(env!("CARGO_BIN_EXE_hearth-under-test")))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(home.data_dir())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    // Ready once the admin socket answers: discovery has joined the group
    // by then.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !run(
        hearth().args(["status", "--data-dir"]).arg(home.data_dir()),
        Duration::from_secs(10),
    )
    .status
    .success()
    {
        assert!(
            Instant::now() < deadline,
            "hearth did not start: {}",
            std::fs::read_to_string(home.path("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon
}

/// `hearth-sim ARGS` inside `ns`.
fn sim_in(ns: &Netns, args: &[&str]) -> Killed {
    Killed(
        ns.exec(std::path::Path::new(env!("CARGO_BIN_EXE_hearth-sim")))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Polls `devices list` until `done` holds, for up to 20 s.
fn wait_for(home: &TestHome, what: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = devices(home);
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not within 20 s: {list}; log: {}",
            std::fs::read_to_string(home.path("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every vendor profile of the simulated home is discovered, classified and
/// listed as pending, with no credential and no topics.
#[test]
fn the_simulated_home_is_discovered_as_pending() {
    let ns = Netns::new();
    let home = TestHome::new();
    let _daemon = daemon_in(&ns, &home);
    let started = Instant::now();
    let _sim = sim_in(&ns, &["announce", "--seconds", "60"]);
    let (mut first, mut all) = (None, None);
    let mut list = serde_json::Value::Null;
    while Instant::now() < started + Duration::from_secs(20) {
        list = devices(&home);
        let n = list.as_array().map(Vec::len).unwrap_or(0);
        if n > 0 && first.is_none() {
            first = Some(started.elapsed());
        }
        if n >= 8 {
            all = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::read_to_string(home.path("daemon.log")).unwrap_or_default();
    let all = all.unwrap_or_else(|| panic!("only {list} within 20 s; log: {log}"));
    println!("advert to pending: first {first:?}, all 8 {all:?}");

    let mut kinds: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["profile"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "bulb/esphome",
            "bulb/homekit",
            "bulb/shelly",
            "bulb/tasmota",
            "camera/homekit",
            "camera/rtsp",
            "doorbell/homekit",
            "plug/shelly",
        ]
    );
    for d in list.as_array().unwrap() {
        assert_eq!(d["status"], "pending");
        assert_eq!(
            d["topics"].as_array().unwrap().len(),
            0,
            "a pending device has no credential"
        );
    }
    // hearth's own adverts carry no banner: empty TXT records.
    let status = run(
        hearth()
            .args(["status", "--json", "--data-dir"])
            .arg(home.data_dir()),
        Duration::from_secs(10),
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let tls_port = status["mqtt_tls"][0]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    for ty in ["_hearth._tcp", "_secure-mqtt._tcp"] {
        let out = run(
            ns.exec(std::path::Path::new(env!("CARGO_BIN_EXE_hearth-sim")))
                .args(["browse", ty, "--seconds", "10"]),
            Duration::from_secs(20),
        );
        let seen = text(&out.stdout);
        assert_eq!(
            seen.trim(),
            format!("resolved {tls_port} txt=0"),
            "{ty}: {seen} {}",
            text(&out.stderr)
        );
    }
    // Logs carry counts and ids, never what the adverts said.
    for leak in [
        "Sim Bulb",
        "SimCam",
        "sim-porch-light",
        "Porch Light",
        "5a:1b:2c",
        "5A:1B:2C",
        "shellyplusplugs",
    ] {
        assert!(!log.contains(leak), "{leak} reached the log");
    }
}

/// An advert claiming an adopted device's identity from another address is
/// flagged for the owner, and followed in nothing.
#[test]
fn a_spoofed_advert_for_an_adopted_device_is_flagged_not_followed() {
    let ns = Netns::new();
    let home = TestHome::new();
    let _daemon = daemon_in(&ns, &home);
    let sim = sim_in(&ns, &["announce", "--seconds", "60"]);
    let list = wait_for(&home, "the simulated bulb", |l| {
        l.as_array()
            .is_some_and(|a| a.iter().any(|d| d["profile"] == "homekit" && d["kind"] == "bulb"))
    });
    let bulb = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["profile"] == "homekit" && d["kind"] == "bulb")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = run(
        hearth()
            .args(["devices", "adopt", &bulb, "--nickname", "Desk lamp", "--data-dir"])
            .arg(home.data_dir()),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    drop(sim);

    let _spoof = sim_in(&ns, &["spoof", "--address", "127.0.0.2", "--seconds", "60"]);
    let list = wait_for(&home, "the flag", |l| {
        l.as_array()
            .is_some_and(|a| a.iter().any(|d| d["id"] == bulb.as_str() && d["flagged"] == true))
    });
    let d = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == bulb.as_str())
        .unwrap();
    assert_eq!(d["status"], "adopted");
    assert_eq!(d["nickname"], "Desk lamp");
    let status = run(
        hearth()
            .args(["status", "--json", "--data-dir"])
            .arg(home.data_dir()),
        Duration::from_secs(10),
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(status["discovery"]["flagged"].as_u64().unwrap() >= 1, "{status}");
    // The owner sees it in the text listing too.
    let out = run(
        hearth()
            .args(["devices", "list", "--data-dir"])
            .arg(home.data_dir()),
        Duration::from_secs(10),
    );
    assert!(text(&out.stdout).contains("adopted!"), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("! 1 device flagged"),
        "{}",
        text(&out.stdout)
    );
    // The spoofer did not become a device of its own either.
    assert_eq!(
        list.as_array()
            .unwrap()
            .iter()
            .filter(|d| d["profile"] == "homekit" && d["kind"] == "bulb")
            .count(),
        1
    );
}

/// Two hosts: the simulated home in one namespace, hearth in another, joined
/// by a veth pair. hearth listens on its private LAN address only (the
/// default policy) and finds all eight devices across the link.
#[test]
fn discovery_across_two_hosts() {
    let (lan_a, lan_b) = Netns::pair();
    let home = TestHome::new();
    let _daemon = daemon_with(&lan_b, &home, "private");
    let _sim = sim_in(
        &lan_a,
        &["announce", "--address", "10.251.7.1", "--seconds", "60"],
    );
    let list = wait_for(&home, "all eight devices across the link", |l| {
        l.as_array().is_some_and(|a| a.len() >= 8)
    });
    assert!(list.as_array().unwrap().iter().all(|d| d["status"] == "pending"));
}

/// End to end: a discovered ESPHome bulb is adopted, connects with its
/// credential, obeys on/off sent through the broker in its own scheme, and
/// is cut off at once when forgotten, its credential refused after.
#[test]
fn adopt_command_and_forget_a_simulated_bulb() {
    let ns = Netns::new();
    let home = TestHome::new();
    let _daemon = daemon_in(&ns, &home);
    let _sim = sim_in(&ns, &["announce", "--seconds", "60"]);
    let list = wait_for(&home, "the ESPHome bulb", |l| {
        l.as_array()
            .is_some_and(|a| a.iter().any(|d| d["profile"] == "esphome"))
    });
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["profile"] == "esphome")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cli = |args: &[&str]| {
        let out = run(
            hearth().args(args).arg("--data-dir").arg(home.data_dir()),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        out.stdout
    };
    let provisioning = cli(&["devices", "adopt", &id, "--nickname", "Porch", "--json"]);
    let file = home.path("porch.json");
    std::fs::write(&file, &provisioning).unwrap();

    let (_bulb, rx) = ns.sim_device(&file, 60);
    let expect = |want: &str| -> Instant {
        loop {
            let (line, at) = rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no {want:?}"));
            if line == want {
                return at;
            }
        }
    };
    expect("connected");
    cli(&["devices", "set", &id, "on"]);
    expect("state ON");
    cli(&["devices", "set", &id, "off"]);
    expect("state OFF");

    let asked = Instant::now();
    cli(&["devices", "forget", &id]);
    let cut = expect("disconnected");
    assert!(
        cut.duration_since(asked) < Duration::from_secs(1),
        "cut after {:?}",
        cut.duration_since(asked)
    );
    expect("refused");
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// 10,000 adverts a second from one address, each a new device: the daemon
/// keeps answering, the flood holds no more than its address's share of
/// the pending list, a quiet camera announced from elsewhere stays, and
/// memory stays bounded.
#[test]
fn an_advert_flood_leaves_the_daemon_responsive_and_bounded() {
    let ns = Netns::new();
    let home = TestHome::new();
    let daemon = daemon_config(&ns, &home, "interfaces = \"loopback\"\nmax_pending = 50\n");
    let pid = daemon.0.id();
    // A quiet real camera, announced by python-zeroconf from an address of
    // its own, pending before the flood.
    let camera = home.path("camera.json");
    std::fs::write(
        &camera,
        serde_json::json!({"devices": [crate::corpus::corpus_device("axis-m1065-lw")]}).to_string(),
    )
    .unwrap();
    let quiet = crate::corpus::Announcer::start(&ns, &[&camera]);
    let camera_at = quiet.announced["axis-m1065-lw"].0.clone();
    let listed = |l: &serde_json::Value| {
        l.as_array().is_some_and(|a| {
            a.iter()
                .any(|d| d["kind"] == "camera" && d["addresses"][0] == camera_at.as_str())
        })
    };
    wait_for(&home, "the quiet camera", listed);
    let before = rss_mib(pid);
    let mut flood = ns
        .exec(std::path::Path::new(env!("CARGO_BIN_EXE_hearth-sim")))
        .args(["flood", "--rate", "10000", "--seconds", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(4) {
        let asked = Instant::now();
        let out = run(
            hearth()
                .args(["status", "--json", "--data-dir"])
                .arg(home.data_dir()),
            Duration::from_secs(10),
        );
        assert!(
            out.status.success(),
            "status failed under the flood: {}",
            text(&out.stderr)
        );
        slowest = slowest.max(asked.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = crate::harness::wait_output(
        std::mem::replace(&mut flood, tool("true").spawn().unwrap()),
        Duration::from_secs(20),
    );
    let sent = text(&out.stdout);
    assert!(out.status.success(), "flood: {}", text(&out.stderr));
    std::thread::sleep(Duration::from_secs(1));
    let during = rss_mib(pid);
    let out = run(
        hearth()
            .args(["status", "--json", "--data-dir"])
            .arg(home.data_dir()),
        Duration::from_secs(10),
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &status["discovery"];
    println!(
        "flood: {} | status slowest {slowest:?} | rss {before:.1} -> {during:.1} MiB | {d}",
        sent.trim()
    );
    assert!(
        slowest < Duration::from_secs(2),
        "status took {slowest:?} under the flood"
    );
    assert!(
        d["adverts"].as_u64().unwrap() > 1000,
        "the flood did not arrive: {d}"
    );
    // The flood's one address holds its share of the list (a quarter of
    // 50) and no more; the camera is still there.
    assert_eq!(d["created"].as_u64().unwrap(), 1 + 12, "{d}");
    assert!(d["source_full"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(d["pending_full"], 0, "the list filled: {d}");
    let list = devices(&home);
    assert_eq!(list.as_array().unwrap().len(), 1 + 12, "{list}");
    assert!(listed(&list), "the quiet camera was evicted: {list}");
    // The packet rate is what keeps parsing work bounded.
    assert!(d["dropped_packets"].as_u64().unwrap() > 0, "{d}");
    // Fixed tables: a few MiB of growth at most (a general mDNS cache grew
    // about 6 MiB in these 4 s and kept growing; docs/PERFORMANCE.md).
    assert!(
        during - before < 16.0,
        "RSS grew from {before:.1} to {during:.1} MiB"
    );
}

/// Malformed mDNS packets are counted and dropped, and the daemon still
/// answers a legacy unicast query for its own advert afterwards.
#[test]
fn malformed_mdns_is_dropped_and_legacy_queries_are_answered() {
    let ns = Netns::new();
    let home = TestHome::new();
    let _daemon = daemon_in(&ns, &home);
    let status = || {
        let out = run(
            hearth()
                .args(["status", "--json", "--data-dir"])
                .arg(home.data_dir()),
            Duration::from_secs(10),
        );
        assert!(out.status.success(), "status: {}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let out = run(
        ns.exec(std::path::Path::new(env!("CARGO_BIN_EXE_hearth-sim")))
            .args(["mdns-garbage", "--count", "2000"]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = status();
    let d = &s["discovery"];
    assert!(d["malformed"].as_u64().unwrap() > 500, "{d}");
    let tls_port = s["mqtt_tls"][0]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let out = run(
        ns.exec(std::path::Path::new(env!("CARGO_BIN_EXE_hearth-sim")))
            .args(["query", "_hearth._tcp"]),
        Duration::from_secs(10),
    );
    assert_eq!(
        text(&out.stdout).trim(),
        format!("answer {tls_port}"),
        "{}",
        text(&out.stderr)
    );
}

/// The Python with python-zeroconf (tests/mdns/requirements.txt) installed:
/// `HEARTH_MDNS_PYTHON`, or tests/mdns/.venv, made here if it is missing and
/// brought to the pinned version (pip changes nothing when it is there
/// already; scripts/test-all does the same).
pub(crate) fn zeroconf_python() -> std::path::PathBuf {
    static PYTHON: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("HEARTH_MDNS_PYTHON") {
                return p.into();
            }
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mdns");
            let python = dir.join(".venv/bin/python");
            if !python.exists() {
                let out = run(
                    tool("python3").args(["-m", "venv"]).arg(dir.join(".venv")),
                    Duration::from_secs(120),
                );
                assert!(
                    out.status.success(),
                    "python3 -m venv (Debian's python3-venv): {}",
                    text(&out.stderr)
                );
            }
            let out = run(
                Command::new(&python)
                    .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "-r"])
                    .arg(dir.join("requirements.txt")),
                Duration::from_secs(300),
            );
            assert!(
                out.status.success(),
                "pip install zeroconf: {}",
                text(&out.stderr)
            );
            python
        })
        .clone()
}

/// tests/mdns/announce.py inside `ns`: a HomeKit bulb announced by
/// python-zeroconf, an mDNS implementation independent of hearth's.
struct Zeroconf {
    _child: Killed,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

/// Where the bulb is when adopted, and where it or an impostor turns up.
const HOME_ADDR: &str = "192.168.77.20";
const AWAY_ADDR: &str = "192.168.77.99";

/// tests/mdns/SCRIPT ARGS run by python-zeroconf's Python inside `ns`
/// (with the multicast route it sends by): the child, killed on drop, its
/// standard input, and its standard output line by line.
pub(crate) fn zeroconf_script<A: AsRef<std::ffi::OsStr>>(
    ns: &Netns,
    script: &str,
    args: &[A],
) -> (
    Killed,
    std::process::ChildStdin,
    std::sync::mpsc::Receiver<String>,
) {
    let out = run(
        ns.exec(std::path::Path::new("ip"))
            .args(["route", "replace", "224.0.0.0/4", "dev", "lo"]),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "ip route: {}", text(&out.stderr));
    let mut child = ns
        .exec(&zeroconf_python())
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("mdns")
                .join(script),
        )
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let lines = lines_of(&mut child);
    (Killed(child), stdin, lines)
}

impl Zeroconf {
    fn start(ns: &Netns) -> Zeroconf {
        let (child, stdin, lines) = zeroconf_script::<&str>(ns, "announce.py", &[]);
        Zeroconf {
            _child: child,
            stdin,
            lines,
        }
    }

    /// Runs one command of announce.py and waits until it is done.
    fn send(&mut self, command: &str) {
        use std::io::Write;
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let answer = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("announce.py did not answer {command:?}"));
        assert_eq!(answer, format!("ok {command}"), "announce.py");
    }
}

/// The discovery counters of `hearth status`.
pub(crate) fn discovery_stats(home: &TestHome) -> serde_json::Value {
    let out = run(
        hearth()
            .args(["status", "--json", "--data-dir"])
            .arg(home.data_dir()),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "status: {}", text(&out.stderr));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["discovery"].clone()
}

/// The python-zeroconf bulb, announced at HOME_ADDR, discovered and then
/// adopted by the owner. Returns the daemon, the announcer and the id.
fn adopted_zeroconf_bulb(ns: &Netns, home: &TestHome) -> (Killed, Zeroconf, String) {
    let daemon = daemon_in(ns, home);
    let mut bulb = Zeroconf::start(ns);
    bulb.send(&format!("register real {HOME_ADDR}"));
    let list = wait_for(home, "the python-zeroconf bulb", |l| {
        l.as_array()
            .is_some_and(|a| a.iter().any(|d| d["profile"] == "homekit" && d["kind"] == "bulb"))
    });
    let id = list.as_array().unwrap()[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let out = run(
        hearth()
            .args(["devices", "adopt", &id, "--nickname", "Desk lamp", "--data-dir"])
            .arg(home.data_dir()),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    (daemon, bulb, id)
}

fn flagged(list: &serde_json::Value, id: &str) -> bool {
    list.as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("{id} is gone: {list}"))["flagged"]
        == true
}

/// Stops the daemon, then reads what the store holds for the bulb: it is
/// still adopted under the owner's name, at the address it was adopted at
/// and no other, and flagged or not as `expect_flag`.
fn assert_stored_unmoved(daemon: Killed, home: &TestHome, id: &str, expect_flag: bool) {
    crate::harness::signal(&daemon.0, libc::SIGTERM);
    let mut daemon = daemon;
    crate::harness::wait_status(&mut daemon.0, Duration::from_secs(20));
    let dir = hearth::store::DataDir::new(home.data_dir());
    let store = hearth::store::open_or_init(&dir, None).unwrap();
    let d = store
        .device(&hearth::store::DeviceId::parse(id).unwrap())
        .unwrap()
        .unwrap()
        .fields;
    assert_eq!(d.status, hearth::store::DeviceStatus::Adopted);
    assert_eq!(d.nickname.as_deref(), Some("Desk lamp"));
    assert_eq!(
        d.addresses,
        vec![HOME_ADDR.parse::<std::net::IpAddr>().unwrap()],
        "the store's address changed"
    );
    assert_eq!(d.flagged, expect_flag);
    assert_eq!(store.devices().unwrap().len(), 1, "a second device appeared");
}

/// Waits for the bulb's flag, then checks that nothing else changed.
fn expect_flag(daemon: Killed, home: &TestHome, id: &str) {
    let announced = Instant::now();
    let list = wait_for(home, "the flag", |l| flagged(l, id));
    println!("announced to flagged: {:?}", announced.elapsed());
    let d = list.as_array().unwrap().iter().find(|d| d["id"] == id).unwrap();
    assert_eq!(d["status"], "adopted");
    assert_eq!(d["nickname"], "Desk lamp");
    assert!(discovery_stats(home)["flagged"].as_u64().unwrap() >= 1);
    assert_stored_unmoved(daemon, home, id, true);
}

/// An adopted bulb re-announced by python-zeroconf with the same host name at
/// a new address (`update_service`): its A record carries the cache-flush
/// bit, so the old address is no longer current, and the move is flagged,
/// not followed.
#[test]
fn an_adopted_device_that_moves_is_flagged_not_followed() {
    let ns = Netns::new();
    let home = TestHome::new();
    let (daemon, mut bulb, id) = adopted_zeroconf_bulb(&ns, &home);
    bulb.send(&format!("update real {AWAY_ADDR}"));
    expect_flag(daemon, &home, &id);
}

/// A goodbye (`unregister_service`, TTL 0) and then the bulb back from
/// another address: flagged, not followed.
#[test]
fn an_adopted_device_back_from_another_address_after_a_goodbye_is_flagged() {
    let ns = Netns::new();
    let home = TestHome::new();
    let (daemon, mut bulb, id) = adopted_zeroconf_bulb(&ns, &home);
    bulb.send("unregister real");
    // Back as a device that restarted: a fresh responder, whose cache does
    // not remember the name it just withdrew.
    bulb.send(&format!("register back {AWAY_ADDR}"));
    expect_flag(daemon, &home, &id);
}

/// A second responder claims the bulb's instance, identity and host name
/// from another address while the real bulb still announces from home:
/// flagged, and the impostor is neither followed nor a device of its own.
#[test]
fn a_second_responder_claiming_an_adopted_device_is_flagged() {
    let ns = Netns::new();
    let home = TestHome::new();
    let (daemon, mut bulb, id) = adopted_zeroconf_bulb(&ns, &home);
    bulb.send(&format!("claim spoof {AWAY_ADDR}"));
    bulb.send(&format!("update real {HOME_ADDR}"));
    expect_flag(daemon, &home, &id);
}

/// The negative case: the adopted bulb re-announcing from its own address,
/// and coming back there after a goodbye, is refreshed and never flagged.
#[test]
fn an_adopted_device_re_announcing_from_home_is_not_flagged() {
    let ns = Netns::new();
    let home = TestHome::new();
    let (daemon, mut bulb, id) = adopted_zeroconf_bulb(&ns, &home);
    // Past the deduplication window, so that each announcement reaches the
    // store's check rather than being dropped as a repeat.
    let refreshed = |home: &TestHome| discovery_stats(home)["refreshed"].as_u64().unwrap();
    for step in [
        vec![format!("update real {HOME_ADDR}")],
        vec!["unregister real".to_owned(), format!("register back {HOME_ADDR}")],
    ] {
        std::thread::sleep(Duration::from_secs(6));
        let before = refreshed(&home);
        for command in &step {
            bulb.send(command);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while refreshed(&home) <= before {
            assert!(
                Instant::now() < deadline,
                "{step:?} did not refresh the bulb within 20 s: {}",
                discovery_stats(&home)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Anything else it sent has arrived by now.
        std::thread::sleep(Duration::from_secs(2));
        assert!(!flagged(&devices(&home), &id), "{step:?} flagged it");
    }
    assert_eq!(discovery_stats(&home)["flagged"], 0);
    assert_stored_unmoved(daemon, &home, &id, false);
}
