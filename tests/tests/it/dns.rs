//! The DNS resolver against real DNS clients: `dig` from several addresses
//! in a client namespace, hearth in a hub namespace, dnsmasq as the
//! upstream in a third; joined by veth pairs that exist only in the test.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::discovery::{Killed, Netns};
use crate::harness::{hearth, listener_port, run, set_up_owner, text, tool};

const HUB: &str = "10.53.1.2";
const HUB_UP: &str = "10.53.2.2";
const UPSTREAM: &str = "10.53.2.1";
const DEV_A: &str = "10.53.1.11";
const DEV_B: &str = "10.53.1.12";
const FLOODER: &str = "10.53.1.13";
const STRANGER: &str = "10.53.1.50";
const CLIENTS: [&str; 4] = [DEV_A, DEV_B, FLOODER, STRANGER];

/// Runs `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = run(tool("ip").args(args), Duration::from_secs(10));
    assert!(out.status.success(), "ip {args:?}: {}", text(&out.stderr));
}

/// A random-enough tag for canary names.
fn tag() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:x}{:x}", std::process::id(), t)
}

/// client —veth— hub —veth— upstream, with dnsmasq serving the upstream's
/// records and logging each query it gets.
struct Net {
    client: Netns,
    hub: Netns,
    upstream: Netns,
    dir: tempfile::TempDir,
    _dnsmasq: Killed,
    /// /etc/netns/<hub>, removed on drop.
    etc: Option<PathBuf>,
}

impl Net {
    fn new() -> Net {
        let (client, hub, upstream) = (Netns::new(), Netns::new(), Netns::new());
        // Each end is made inside its namespace, so fixed names never
        // collide between tests running at once.
        ip(&[
            "link",
            "add",
            "vc",
            "netns",
            client.name(),
            "type",
            "veth",
            "peer",
            "name",
            "vh1",
            "netns",
            hub.name(),
        ]);
        ip(&[
            "link",
            "add",
            "vh2",
            "netns",
            hub.name(),
            "type",
            "veth",
            "peer",
            "name",
            "vu",
            "netns",
            upstream.name(),
        ]);
        for a in CLIENTS {
            ip(&[
                "-n",
                client.name(),
                "addr",
                "add",
                &format!("{a}/24"),
                "dev",
                "vc",
            ]);
        }
        ip(&[
            "-n",
            hub.name(),
            "addr",
            "add",
            &format!("{HUB}/24"),
            "dev",
            "vh1",
        ]);
        ip(&[
            "-n",
            hub.name(),
            "addr",
            "add",
            &format!("{HUB_UP}/24"),
            "dev",
            "vh2",
        ]);
        ip(&[
            "-n",
            upstream.name(),
            "addr",
            "add",
            &format!("{UPSTREAM}/24"),
            "dev",
            "vu",
        ]);
        for (ns, dev) in [(&client, "vc"), (&hub, "vh1"), (&hub, "vh2"), (&upstream, "vu")] {
            ip(&["-n", ns.name(), "link", "set", dev, "up"]);
        }
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("dnsmasq.log");
        std::fs::write(&log, "").unwrap();
        let dnsmasq = Killed(
            upstream
                .exec(Path::new("/usr/sbin/dnsmasq"))
                .args([
                    "--keep-in-foreground",
                    "--conf-file=/dev/null",
                    "--pid-file=",
                    "--user=root",
                    "--no-resolv",
                    "--no-hosts",
                    "--bind-interfaces",
                    "--log-queries",
                    "--local-ttl=300",
                    "--neg-ttl=60",
                    "--cache-size=0",
                    &format!("--listen-address={UPSTREAM}"),
                    &format!("--log-facility={}", log.display()),
                    "--address=/shelly.cloud/203.0.113.7",
                    "--address=/example.org/198.51.100.9",
                    "--address=/gone.example.net/",
                    "--host-record=v6.example.net,2001:db8::53",
                    "--host-record=target.example.net,192.0.2.44",
                    "--cname=alias.example.net,target.example.net",
                    "--host-record=nas.home.arpa,10.53.9.9",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let net = Net {
            client,
            hub,
            upstream,
            dir,
            _dnsmasq: dnsmasq,
            etc: None,
        };
        // Ready once dnsmasq answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let d = net.dig_upstream("v6.example.net", "AAAA");
            if d.status == "NOERROR" {
                break;
            }
            assert!(Instant::now() < deadline, "dnsmasq did not answer: {d:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        net
    }

    /// dig in the upstream namespace, straight at dnsmasq (never through
    /// hearth, so it never counts as a query from hearth).
    fn dig_upstream(&self, name: &str, qtype: &str) -> Dig {
        dig(&self.upstream, UPSTREAM, &[&format!("@{UPSTREAM}"), name, qtype])
    }

    /// dig from `src` in the client namespace at hearth, over UDP.
    fn dig(&self, src: &str, name: &str, qtype: &str) -> Dig {
        dig(&self.client, src, &[&format!("@{HUB}"), name, qtype])
    }

    fn dig_tcp(&self, src: &str, name: &str, qtype: &str) -> Dig {
        dig(&self.client, src, &[&format!("@{HUB}"), "+tcp", name, qtype])
    }

    /// How many queries for `name` (any type) dnsmasq got from hearth.
    fn upstream_queries(&self, name: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("query[") && l.contains(&format!("] {name} from {HUB_UP}")))
            .count()
    }

    fn upstream_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }

    /// Writes the hub's own resolv.conf, which `ip netns exec` mounts over
    /// /etc/resolv.conf.
    fn hub_resolv_conf(&mut self, body: &str) {
        let etc = PathBuf::from("/etc/netns").join(self.hub.name());
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("resolv.conf"), body).unwrap();
        self.etc = Some(etc);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(etc) = &self.etc {
            let _ = std::fs::remove_dir_all(etc);
        }
    }
}

/// What dig printed, read.
#[derive(Debug, Default)]
struct Dig {
    /// NOERROR, NXDOMAIN, ...; empty when no answer came (dig's own exit
    /// code is kept in `code`).
    status: String,
    code: Option<i32>,
    /// (name, ttl, type, data) per answer record.
    answers: Vec<(String, u32, String, String)>,
    raw: String,
}

impl Dig {
    /// The answers without their TTLs, sorted.
    fn records(&self) -> Vec<(String, String, String)> {
        let mut v: Vec<_> = self
            .answers
            .iter()
            .map(|(n, _, t, d)| (n.clone(), t.clone(), d.clone()))
            .collect();
        v.sort();
        v
    }

    fn data(&self, qtype: &str) -> Vec<String> {
        self.answers
            .iter()
            .filter(|a| a.2 == qtype)
            .map(|a| a.3.clone())
            .collect()
    }
}

fn dig(ns: &Netns, src: &str, args: &[&str]) -> Dig {
    let out = run(
        ns.exec(Path::new("/usr/bin/dig"))
            .args(["-b", src, "+tries=1", "+time=2"])
            .args(args),
        Duration::from_secs(15),
    );
    let raw = text(&out.stdout);
    let mut d = Dig {
        code: out.status.code(),
        raw: raw.clone(),
        ..Dig::default()
    };
    if let Some(i) = raw.find(", status: ") {
        d.status = raw[i + 10..].split(',').next().unwrap_or("").to_owned();
    }
    let mut in_answer = false;
    for line in raw.lines() {
        if line.starts_with(";; ANSWER SECTION:") {
            in_answer = true;
            continue;
        }
        if in_answer {
            if line.trim().is_empty() || line.starts_with(';') {
                break;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 5 {
                d.answers.push((
                    f[0].trim_end_matches('.').to_owned(),
                    f[1].parse().unwrap_or(u32::MAX),
                    f[3].to_owned(),
                    f[4..].join(" ").trim_end_matches('.').to_owned(),
                ));
            }
        }
    }
    d
}

/// hearth in the hub namespace, with its own data directory.
struct Hub {
    home: crate::harness::TestHome,
    child: Option<Killed>,
}

fn hub_config(dns: &str) -> String {
    format!(
        "[mqtt]\ntls_listen = [\"127.0.0.1:0\"]\nplain_listen = []\n[web]\nlisten = [\"127.0.0.1:0\"]\n\
         [discovery]\nenabled = false\n[log]\nlevel = \"debug\"\n[dns]\nenabled = true\nlisten = [\"{HUB}:53\"]\n{dns}"
    )
}

impl Hub {
    fn start(net: &Net, dns: &str) -> Hub {
        let mut hub = Hub {
            home: crate::harness::TestHome::new(),
            child: None,
        };
        hub.restart(net, dns);
        hub
    }

    /// hearth's command line in the hub namespace, not yet run.
    fn command(&self, net: &Net, dns: &str) -> Command {
        let config = self.home.path("hearth.toml");
        std::fs::write(&config, hub_config(dns)).unwrap();
        let mut cmd = net.hub.exec(Path::new(env!("CARGO_BIN_EXE_hearth-under-test")));
        for var in ["RUST_LOG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM"] {
            cmd.env_remove(var);
        }
        cmd.arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(self.home.data_dir());
        cmd
    }

    /// (Re)starts hearth; the log is appended to.
    fn restart(&mut self, net: &Net, dns: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.path("daemon.log"))
            .unwrap();
        let child = self
            .command(net, dns)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(Killed(child));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.cli(&["status"]).status.success() {
            if let Some(s) = self.child.as_mut().unwrap().0.try_wait().unwrap() {
                panic!("hearth exited with {s}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "hearth did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, and a clean exit.
    fn stop(&mut self) {
        let mut k = self.child.take().expect("running");
        crate::harness::signal(&k.0, libc::SIGTERM);
        let status = crate::harness::wait_status(&mut k.0, Duration::from_secs(20));
        assert!(status.success(), "hearth stopped with {status}: {}", self.log());
    }

    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|k| k.0.try_wait().unwrap().is_none())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.path("daemon.log")).unwrap_or_default()
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        run(
            hearth().args(args).arg("--data-dir").arg(self.home.data_dir()),
            Duration::from_secs(30),
        )
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cli(&all);
        assert!(out.status.success(), "hearth {args:?}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json")
    }

    /// A Shelly plug adopted at `address`; its id.
    fn add(&self, nickname: &str, address: &str) -> String {
        let d = self.json(&[
            "devices",
            "add",
            "--profile",
            "shelly",
            "--kind",
            "plug",
            "--nickname",
            nickname,
            "--address",
            address,
        ]);
        d["id"].as_str().unwrap().to_owned()
    }

    fn status(&self) -> Value {
        self.json(&["dns", "status"])
    }

    fn counts(&self) -> Value {
        self.status()["status"]["counts"].clone()
    }

    /// `dns names ID`: each name with (count, blocked).
    fn names(&self, id: &str) -> Vec<(String, u64, u64)> {
        let v = self.json(&["dns", "names", id]);
        let mut names: Vec<(String, u64, u64)> = v["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["name"].as_str().unwrap().to_owned(),
                    n["count"].as_u64().unwrap(),
                    n["blocked"].as_u64().unwrap(),
                )
            })
            .collect();
        names.sort();
        names
    }

    fn policy(&self, id: &str, policy: &str) {
        let out = self.cli(&["dns", "policy", id, policy]);
        assert!(out.status.success(), "policy {policy}: {}", text(&out.stderr));
    }

    fn web_port(&self) -> u16 {
        listener_port(&self.json(&["status"]), "web")
    }
}

/// Forwarding, caching, per-device records, each policy, warnings, audit,
/// `.local`, privacy and persistence: one topology, one hearth.
#[test]
fn dns_resolver_forwards_caches_records_and_applies_policies() {
    let started = Instant::now();
    let net = Net::new();
    let mut hub = Hub::start(&net, &format!("upstream = [\"{UPSTREAM}:53\"]\n"));
    let a = hub.add("Porch plug", DEV_A);
    let b = hub.add("Desk plug", DEV_B);
    let t = tag();
    let canary_a = format!("canary-a{t}.example.org");
    let canary_b = format!("canary-b{t}.example.org");
    let canary_x = format!("canary-x{t}.example.org");

    // 1. Forwarding: what dnsmasq serves, over UDP and TCP.
    for (name, qtype) in [
        ("shelly.cloud", "A"),
        ("v6.example.net", "AAAA"),
        ("alias.example.net", "A"),
        ("gone.example.net", "A"),
    ] {
        let want = net.dig_upstream(name, qtype);
        let udp = net.dig(STRANGER, name, qtype);
        let tcp = net.dig_tcp(STRANGER, name, qtype);
        assert_eq!(udp.status, want.status, "{name} {qtype} over UDP: {}", udp.raw);
        assert_eq!(tcp.status, want.status, "{name} {qtype} over TCP: {}", tcp.raw);
        assert_eq!(udp.records(), want.records(), "{name} {qtype} over UDP");
        assert_eq!(tcp.records(), want.records(), "{name} {qtype} over TCP");
    }
    assert_eq!(net.dig(STRANGER, "shelly.cloud", "A").data("A"), ["203.0.113.7"]);
    assert_eq!(
        net.dig(STRANGER, "v6.example.net", "AAAA").data("AAAA"),
        ["2001:db8::53"]
    );
    let alias = net.dig(STRANGER, "alias.example.net", "A");
    assert_eq!(alias.data("CNAME"), ["target.example.net"], "{}", alias.raw);
    assert_eq!(alias.data("A"), ["192.0.2.44"], "{}", alias.raw);
    assert_eq!(net.dig(STRANGER, "gone.example.net", "A").status, "NXDOMAIN");

    // 2. Caching: the same query twice reaches dnsmasq once.
    let hits_before = hub.counts()["cache_hits"].as_u64().unwrap();
    let cached = format!("cached{t}.example.org");
    let first = net.dig(STRANGER, &cached, "A");
    std::thread::sleep(Duration::from_millis(1100));
    let second = net.dig(STRANGER, &cached, "A");
    assert_eq!(first.data("A"), ["198.51.100.9"], "{}", first.raw);
    assert_eq!(second.data("A"), ["198.51.100.9"], "{}", second.raw);
    assert!(
        second.answers[0].1 < first.answers[0].1 && first.answers[0].1 <= 300,
        "TTLs {} then {}",
        first.answers[0].1,
        second.answers[0].1
    );
    // dnsmasq's log is written as it goes: wait for the first, then prove
    // no second came.
    let deadline = Instant::now() + Duration::from_secs(5);
    while net.upstream_queries(&cached) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(net.upstream_queries(&cached), 1, "{}", net.upstream_log());
    assert!(hub.counts()["cache_hits"].as_u64().unwrap() > hits_before);

    // 3. Per-device records: each device its own names; the stranger's
    // counted, never recorded.
    let others_before = hub.counts()["from_others"].as_u64().unwrap();
    for _ in 0..2 {
        assert_eq!(net.dig(DEV_A, &canary_a, "A").status, "NOERROR");
    }
    assert_eq!(net.dig(DEV_A, "shelly.cloud", "A").data("A"), ["203.0.113.7"]);
    assert_eq!(net.dig(DEV_B, &canary_b, "A").status, "NOERROR");
    for _ in 0..3 {
        assert_eq!(net.dig(STRANGER, &canary_x, "A").status, "NOERROR");
    }
    assert_eq!(
        hub.names(&a),
        vec![(canary_a.clone(), 2, 0), ("shelly.cloud".to_owned(), 1, 0)]
    );
    assert_eq!(hub.names(&b), vec![(canary_b.clone(), 1, 0)]);
    assert!(hub.counts()["from_others"].as_u64().unwrap() >= others_before + 3);
    let status = hub.status().to_string();
    for secret in [&canary_a, &canary_b, &canary_x] {
        assert!(
            !status.contains(secret.as_str()),
            "a name in dns status: {status}"
        );
    }
    let devices = hub.status()["devices"].clone();
    let a_row = devices.as_array().unwrap().iter().find(|d| d["id"] == a).unwrap();
    assert_eq!(a_row["queries"], 3);
    assert_eq!(a_row["clouds"], serde_json::json!(["shelly.cloud"]));

    // 4. Policies. observe: answered (above). block-cloud: NXDOMAIN for the
    // cloud, the rest resolves.
    hub.policy(&a, "block-cloud");
    assert_eq!(net.dig(DEV_A, "shelly.cloud", "A").status, "NXDOMAIN");
    assert_eq!(net.dig(DEV_A, "iot.shelly.cloud", "A").status, "NXDOMAIN");
    assert_eq!(net.dig(DEV_A, "example.org", "A").data("A"), ["198.51.100.9"]);
    // Another device, still observing, gets the cloud's address.
    assert_eq!(net.dig(DEV_B, "shelly.cloud", "A").data("A"), ["203.0.113.7"]);
    let names = hub.names(&a);
    assert!(names.contains(&("shelly.cloud".to_owned(), 2, 1)), "{names:?}");
    assert!(
        names.contains(&("iot.shelly.cloud".to_owned(), 1, 1)),
        "{names:?}"
    );
    // lan-only: nothing outside the LAN, LAN names still.
    hub.policy(&b, "lan-only");
    assert_eq!(net.dig(DEV_B, "example.org", "A").status, "NXDOMAIN");
    assert_eq!(net.dig(DEV_B, "nas.home.arpa", "A").data("A"), ["10.53.9.9"]);
    let names = hub.names(&b);
    assert!(names.contains(&("example.org".to_owned(), 1, 1)), "{names:?}");
    assert!(names.contains(&("nas.home.arpa".to_owned(), 1, 0)), "{names:?}");
    // The owner's cloud domain is then blocked for block-cloud.
    let out = hub.cli(&["dns", "cloud-add", "example.org"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        hub.json(&["dns", "clouds"])["owner"],
        serde_json::json!(["example.org"])
    );
    assert_eq!(net.dig(DEV_A, "example.org", "A").status, "NXDOMAIN");
    assert_eq!(net.dig(STRANGER, "example.org", "A").data("A"), ["198.51.100.9"]);

    // 5. `.local` is answered NXDOMAIN and never forwarded.
    let printer = format!("printer{t}.local");
    assert_eq!(net.dig(DEV_A, &printer, "A").status, "NXDOMAIN");
    assert_eq!(net.dig(STRANGER, &printer, "A").status, "NXDOMAIN");
    assert!(hub.counts()["local"].as_u64().unwrap() >= 2);

    // Policy changes audited, and new cloud domains are standing warnings,
    // both on the dashboard (on the hub's loopback).
    let port = hub.web_port();
    let (ca, data) = (hub.home.data_dir().join("ca.pem"), hub.home.data_dir());
    let (audit, warnings, metrics) = net.hub.enter(move || {
        let web = crate::http::Target::tls(port, &ca);
        let metrics = web.send("GET", "/metrics", &[], b"").text();
        let owner = set_up_owner(web, &data, "owner", "correct horse battery staple");
        // The warning is written by the records' task: wait a little.
        let deadline = Instant::now() + Duration::from_secs(10);
        let warnings = loop {
            let w = owner.api("GET", "/api/warnings", None).json();
            if w.to_string().contains("example.org") || Instant::now() > deadline {
                break w;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let audit = owner
            .api("GET", "/api/audit?event=dns_policy_changed", None)
            .json();
        (audit, warnings, metrics)
    });
    let audit_text = audit.to_string();
    assert_eq!(audit.as_array().map(Vec::len), Some(2), "{audit_text}");
    assert!(
        audit_text.contains("block_cloud") && audit_text.contains("lan_only"),
        "{audit_text}"
    );
    let warned: Vec<String> = warnings
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.to_string())
        .filter(|w| w.contains("started looking up"))
        .collect();
    assert!(warned.iter().any(|w| w.contains("shelly.cloud")), "{warnings}");
    assert!(warned.iter().any(|w| w.contains("example.org")), "{warnings}");
    assert!(metrics.contains("hearth_dns_queries_total"), "{metrics}");

    // 10. Persistence, and block_answer = "zero" after the restart.
    hub.stop();
    hub.restart(
        &net,
        &format!("upstream = [\"{UPSTREAM}:53\"]\nblock_answer = \"zero\"\n"),
    );
    let names = hub.names(&a);
    assert!(names.contains(&(canary_a.clone(), 2, 0)), "{names:?}");
    assert!(names.contains(&("shelly.cloud".to_owned(), 2, 1)), "{names:?}");
    assert_eq!(
        hub.names(&b).iter().find(|n| n.0 == canary_b).map(|n| n.1),
        Some(1)
    );
    assert_eq!(hub.json(&["dns", "names", &a])["policy"], "block_cloud");
    assert_eq!(hub.json(&["dns", "names", &b])["policy"], "lan_only");
    assert_eq!(
        hub.json(&["dns", "clouds"])["owner"],
        serde_json::json!(["example.org"])
    );
    let zero = net.dig(DEV_A, "shelly.cloud", "A");
    assert_eq!(zero.status, "NOERROR", "{}", zero.raw);
    assert_eq!(zero.data("A"), ["0.0.0.0"]);
    assert_eq!(net.dig(DEV_A, "shelly.cloud", "AAAA").data("AAAA"), ["::"]);
    assert_eq!(net.dig(DEV_B, "nas.home.arpa", "A").data("A"), ["10.53.9.9"]);

    // 9. Privacy: no name and no client address in the log or /metrics;
    // no canary in the data directory's bytes, though the records are there.
    assert!(
        !net.upstream_log().contains(&printer),
        "a .local name reached upstream"
    );
    let port = hub.web_port();
    let ca = hub.home.data_dir().join("ca.pem");
    let metrics2 = net.hub.enter(move || {
        crate::http::Target::tls(port, &ca)
            .send("GET", "/metrics", &[], b"")
            .text()
    });
    hub.stop();
    let log = hub.log();
    assert!(log.contains("DNS resolver started"), "debug log: {log}");
    assert!(log.contains("DEBUG"), "hearth did not log at debug level: {log}");
    eprintln!(
        "dns: hearth's log: {} lines; its own address in it: {}",
        log.lines().count(),
        log.contains(HUB)
    );
    let mut secrets: Vec<String> = vec![
        "shelly.cloud".into(),
        "example.org".into(),
        "example.net".into(),
        "home.arpa".into(),
        printer.clone(),
        canary_a.clone(),
        canary_b.clone(),
        canary_x.clone(),
        cached.clone(),
    ];
    secrets.extend(CLIENTS.iter().map(|c| c.to_string()));
    for (what, body) in [("log", &log), ("/metrics", &metrics), ("/metrics", &metrics2)] {
        for s in &secrets {
            assert!(!body.contains(s.as_str()), "{s} is in hearth's {what}");
        }
    }
    assert!(!log.contains("panicked"), "{log}");
    let canaries = vec![
        canary_a.clone(),
        canary_b.clone(),
        canary_x.clone(),
        cached.clone(),
    ];
    let found = hearth_tests::find_canaries(&hub.home.data_dir(), &canaries);
    assert!(found.is_empty(), "canaries in the data directory: {found:?}");
    // Cloud domains (not the names looked up) are in the audit's words.
    let domains = hearth_tests::find_canaries(
        &hub.home.data_dir(),
        &["shelly.cloud".into(), "example.org".into()],
    );
    assert!(
        domains.is_empty(),
        "cloud domains in the data directory: {domains:?}"
    );
    let db = rusqlite::Connection::open(hub.home.data_dir().join("hearth.db")).unwrap();
    let rows: i64 = db
        .query_row("SELECT count(*) FROM dns_devices", [], |r| r.get(0))
        .unwrap();
    assert!(rows >= 2, "the devices' records are in dns_devices ({rows})");
    eprintln!("dns: the resolver test took {:?}", started.elapsed());
}

/// Sends each payload over UDP from `src` in the client namespace; for
/// each, whether an answer came back within 0.5 s (its flags byte, or -1).
fn send_raw(net: &Net, src: &str, payloads: &[Vec<u8>]) -> Vec<i64> {
    let hex: Vec<String> = payloads.iter().map(|p| hex(p)).collect();
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('{src}', 0))\n\
         s.settimeout(0.5)\n\
         for h in {hex:?}:\n\
         \x20   s.sendto(bytes.fromhex(h), ('{HUB}', 53))\n\
         \x20   try:\n\
         \x20       r = s.recv(65535)\n\
         \x20       print(r[3] if len(r) > 3 else 0)\n\
         \x20   except socket.timeout:\n\
         \x20       print(-1)\n"
    );
    let out = run(
        net.client
            .exec(Path::new("/usr/bin/python3"))
            .args(["-c", &script]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// Whether a read saw the peer close (not a timeout of ours).
fn closed(read: &std::io::Result<usize>) -> bool {
    match read {
        Ok(n) => *n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A query for `name` (A), as a client sends it.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The default upstream (the hub's resolv.conf), bad input over UDP and
/// TCP, and a flood from one address while others are answered.
#[test]
fn dns_resolver_survives_bad_input_and_a_flood() {
    let started = Instant::now();
    let mut net = Net::new();
    net.hub_resolv_conf(&format!("nameserver {UPSTREAM}\nsearch example.net\n"));
    let mut hub = Hub::start(&net, "");
    let a = hub.add("Porch plug", DEV_A);
    assert_eq!(hub.status()["status"]["upstreams"], 1);
    // 6. resolv.conf's nameserver is the upstream: answers are dnsmasq's.
    assert_eq!(net.dig(DEV_A, "shelly.cloud", "A").data("A"), ["203.0.113.7"]);
    assert_eq!(net.upstream_queries("shelly.cloud"), 1, "{}", net.upstream_log());

    // 7. Malformed UDP, then a normal query still answered.
    let mut noise = hearth_tests::Noise::new(24);
    let claims_five = vec![0xab, 0xcd, 0x01, 0x00, 0, 5, 0, 0, 0, 0, 0, 0];
    let mut response = query(0x4242, "example.org");
    response[2] |= 0x80;
    let mut oversized = query(0x4343, "example.org");
    oversized.resize(4000, 0x41);
    let payloads = vec![
        noise.bytes(40),
        noise.bytes(300),
        vec![0x12, 0x34, 0x01],
        claims_five,
        oversized,
        response,
        query(0x4444, "example.org"),
    ];
    let replies = send_raw(&net, STRANGER, &payloads);
    eprintln!("dns: replies' flags to the bad packets: {replies:?}");
    assert_eq!(replies.len(), payloads.len());
    assert_eq!(replies[2], -1, "a truncated header is dropped");
    assert_eq!(replies[3] & 0x0f, 1, "a header claiming 5 questions: FORMERR");
    assert_eq!(replies[5], -1, "a response sent to hearth is never answered");
    assert_eq!(replies[6] & 0x0f, 0, "a good query after the bad ones: NOERROR");
    assert!(hub.alive(), "{}", hub.log());
    assert_eq!(net.dig(DEV_A, "example.org", "A").data("A"), ["198.51.100.9"]);

    // TCP: a stalled connection is closed within ~10 s; a 9th from one
    // address is closed at once, another address is still answered.
    let tcp = net.client.enter(|| {
        use std::io::{Read, Write};
        let connect = |src: &str| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.bind(&std::net::SocketAddr::new(src.parse::<IpAddr>().unwrap(), 0).into())
                .unwrap();
            s.connect(&std::net::SocketAddr::new(HUB.parse().unwrap(), 53).into())
                .unwrap();
            let mut t: std::net::TcpStream = s.into();
            t.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            t.write_all(&[0]).unwrap();
            t
        };
        let opened = Instant::now();
        let mut stalled: Vec<std::net::TcpStream> = (0..8).map(|_| connect(FLOODER)).collect();
        std::thread::sleep(Duration::from_millis(200));
        let mut ninth = connect(FLOODER);
        let t = Instant::now();
        let mut buf = [0u8; 16];
        let ninth_read = ninth.read(&mut buf);
        let ninth_closed = (closed(&ninth_read), t.elapsed());
        // Another address is answered meanwhile.
        let mut other = connect(STRANGER);
        let q = query(0x5151, "example.org");
        // The 0 sent first is the high byte of the length.
        other.write_all(&[q.len() as u8]).unwrap();
        other.write_all(&q).unwrap();
        let mut len = [0u8; 2];
        other.read_exact(&mut len).unwrap();
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        other.read_exact(&mut answer).unwrap();
        let first = stalled[0].read(&mut buf);
        let stalled_closed = (closed(&first), opened.elapsed());
        (ninth_closed, answer, stalled_closed)
    });
    let ((ninth_closed, ninth_after), answer, (stalled_closed, stalled_after)) = tcp;
    eprintln!(
        "dns: the 9th TCP connection was closed after {ninth_after:?}, a stalled one after {stalled_after:?}"
    );
    assert!(
        ninth_closed && ninth_after < Duration::from_secs(2),
        "the 9th stayed open"
    );
    assert_eq!(&answer[..2], &[0x51, 0x51]);
    assert_eq!(answer[3] & 0x0f, 0, "NOERROR over TCP from another address");
    assert!(stalled_closed, "a stalled connection was never closed");
    assert!(
        stalled_after > Duration::from_secs(9) && stalled_after < Duration::from_secs(12),
        "a stalled connection stayed open {stalled_after:?}"
    );
    assert!(hub.counts()["tcp_turned_away"].as_u64().unwrap() >= 1);

    // 8. A flood from one address; another is answered throughout.
    let flood = format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('{FLOODER}', 0))\n\
         s.setblocking(False)\n\
         q = bytes.fromhex('{}')\n\
         end = time.time() + 2.5\n\
         n = 0\n\
         while n < 3000 and time.time() < end:\n\
         \x20   try:\n\
         \x20       s.sendto(q, ('{HUB}', 53)); n += 1\n\
         \x20   except BlockingIOError:\n\
         \x20       time.sleep(0.001)\n\
         \x20   if n % 100 == 0: time.sleep(0.05)\n\
         print(n)\n",
        hex(&query(0x6161, "flood.example.org"))
    );
    let limited_before = hub.counts()["rate_limited"].as_u64().unwrap();
    let flooder = net
        .client
        .exec(Path::new("/usr/bin/python3"))
        .args(["-c", &flood])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let flood_started = Instant::now();
    let mut answered = Vec::new();
    while flood_started.elapsed() < Duration::from_secs(2) {
        let d = net.dig(DEV_A, &format!("during{}.example.org", answered.len()), "A");
        assert_eq!(d.code, Some(0), "dig during the flood: {}", d.raw);
        answered.push((d.status.clone(), d.data("A"), flood_started.elapsed()));
    }
    let out = crate::harness::wait_output(flooder, Duration::from_secs(10));
    let sent: u64 = text(&out.stdout).trim().parse().unwrap_or(0);
    eprintln!("dns: the flood sent {sent} queries; digs during it: {answered:?}");
    assert!(sent >= 1000, "the flood was too small to mean anything: {sent}");
    assert!(answered.len() >= 3, "{answered:?}");
    for (status, data, _) in &answered {
        assert_eq!(status, "NOERROR", "{answered:?}");
        assert_eq!(data, &["198.51.100.9"], "{answered:?}");
    }
    let limited = hub.counts()["rate_limited"].as_u64().unwrap();
    assert!(limited > limited_before + 500, "rate_limited {limited}");
    eprintln!(
        "dns: {} digs answered during the flood; {limited} queries rate-limited",
        answered.len()
    );
    assert_eq!(
        hub.json(&["dns", "names", &a])["queries"].as_u64().unwrap() as usize,
        2 + answered.len()
    );
    assert!(hub.alive(), "{}", hub.log());
    hub.stop();
    let log = hub.log();
    assert!(!log.contains("panicked"), "{log}");
    for s in ["flood.example.org", "during0.example.org", FLOODER, DEV_A] {
        assert!(!log.contains(s), "{s} is in hearth's log");
    }
    eprintln!("dns: the bad-input test took {:?}", started.elapsed());
}

/// hearth refuses to start when resolv.conf names only hearth itself.
#[test]
fn dns_resolver_refuses_to_forward_to_itself() {
    let mut net = Net::new();
    net.hub_resolv_conf(&format!("nameserver {HUB}\n"));
    let hub = Hub {
        home: crate::harness::TestHome::new(),
        child: None,
    };
    let out = run(&mut hub.command(&net, ""), Duration::from_secs(30));
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(64),
        "EX_USAGE, as for a bad setting: {err}"
    );
    assert!(
        err.contains("no upstream resolver") && err.contains("names none but hearth itself"),
        "{err}"
    );
}
