//! The systemd units: `systemd/hearth.service`, its exposure score and the
//! real daemon working under its system call filter, and
//! `systemd/hearth.socket`, the resolver's port 53 handed to it.
//!
//! systemd is not PID 1 where CI runs, so `systemd-run` cannot apply the
//! unit. The test reads the unit's `SystemCallFilter=` lines, expands their
//! groups with the machine's own `systemd-analyze syscall-filter` (the
//! table systemd itself uses), and runs hearth under that allow-list with
//! `hearth-seccomp-exec`: any other call kills it with SIGSYS, as the unit
//! would. See packaging/README.md.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Daemon, text};
use crate::http::Target;

/// The unprivileged user the daemon runs as here, as `User=hearth` would.
const NOBODY: u32 = 65534;

/// The exposure score CI accepts, at most.
const EXPOSURE_LIMIT: f64 = 1.5;

fn unit_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../systemd/hearth.service")
}

fn socket_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../systemd/hearth.socket")
}

pub fn unit_values(key: &str) -> Vec<String> {
    values_in(&unit_path(), key)
}

fn values_in(path: &std::path::Path, key: &str) -> Vec<String> {
    let unit = std::fs::read_to_string(path).expect("read the unit");
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().to_owned())
        .collect()
}

/// `systemd-analyze verify` has nothing to say of `units` (but that the
/// binary is not installed here).
fn verify(units: &[PathBuf]) {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(units)
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let complaints: Vec<String> = text(&out.stderr)
        .lines()
        .filter(|l| !l.contains("is not executable"))
        .map(str::to_owned)
        .collect();
    assert!(complaints.is_empty(), "systemd-analyze verify: {complaints:?}");
}

#[test]
fn the_unit_is_exposed_at_most_1_5_and_asks_for_every_hardening() {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit_path())
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let report = text(&out.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for hearth.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{report}{}", text(&out.stderr)));
    assert!(
        score <= EXPOSURE_LIMIT,
        "exposure {score} is above {EXPOSURE_LIMIT}:\n{report}"
    );
    verify(&[unit_path()]);

    // What the issue asks for, each spelled out (the score alone would let
    // one setting trade for another).
    for (key, value) in [
        ("Type", "notify"),
        ("Restart", "on-failure"),
        ("StateDirectory", "hearth"),
        ("StateDirectoryMode", "0700"),
        ("ConfigurationDirectory", "hearth"),
        ("LoadCredential", "hearth.key:/etc/hearth/master.key"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("PrivateUsers", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectHostname", "yes"),
        ("ProtectProc", "invisible"),
        ("ProcSubset", "pid"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("UMask", "0077"),
        ("IPAddressDeny", "any"),
    ] {
        assert!(
            unit_values(key).iter().any(|v| v == value),
            "the unit lacks {key}={value}"
        );
    }
    assert!(!unit_values("WatchdogSec").is_empty(), "no WatchdogSec");
    assert!(
        !unit_values("StartLimitBurst").is_empty(),
        "Restart= has no start limit"
    );
    let allowed = unit_values("IPAddressAllow").join(" ");
    for range in [
        "localhost",
        "link-local",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
        "224.0.0.251",
        "ff02::fb",
    ] {
        assert!(
            allowed.split(' ').any(|r| r == range),
            "IPAddressAllow lacks {range}"
        );
    }
}

#[test]
fn the_socket_unit_verifies_and_answers_53_on_the_lan_only() {
    // Beside the service, as systemd loads them: the socket names no
    // Service=, so it must find hearth.service by its name.
    verify(&[socket_path(), unit_path()]);
    let socket = |key: &str| values_in(&socket_path(), key);
    assert!(socket("Service").is_empty(), "the socket names its service");
    for (key, value) in [
        ("ListenDatagram", "53"),
        ("ListenStream", "53"),
        ("FileDescriptorName", "dns"),
        ("BindIPv6Only", "both"),
        ("FreeBind", "yes"),
        ("IPAddressDeny", "any"),
        ("WantedBy", "sockets.target"),
    ] {
        assert!(
            socket(key).iter().any(|v| v == value),
            "hearth.socket lacks {key}={value}"
        );
    }
    // systemd applies the socket unit's allow-list to the sockets it
    // passes, not the service's: the socket's list is the service's, less
    // the mDNS groups.
    let ranges = |values: Vec<String>| -> BTreeSet<String> {
        values
            .iter()
            .flat_map(|v| v.split_whitespace().map(str::to_owned))
            .collect()
    };
    let mut lan = ranges(unit_values("IPAddressAllow"));
    lan.remove("224.0.0.251");
    lan.remove("ff02::fb");
    assert!(lan.contains("192.168.0.0/16") && lan.contains("fc00::/7"));
    assert_eq!(ranges(socket("IPAddressAllow")), lan);
    // Port 53 comes from the socket, so the service still needs no
    // capability.
    assert_eq!(unit_values("CapabilityBoundingSet"), [""]);
    assert_eq!(unit_values("AmbientCapabilities"), [""]);
}

/// Runs the probe under `systemd-socket-activate` (systemd's own
/// implementation of the passing protocol) with `args`, sends traffic with
/// `poke` until the probe has started and exited, and returns its line.
fn activated(args: &[String], name: &str, poke: impl Fn()) -> String {
    let mut child = Command::new("systemd-socket-activate")
        .args(args)
        .arg(env!("CARGO_BIN_EXE_hearth-activation-probe"))
        .arg(name)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate (Debian's systemd package)");
    // It binds, then starts the probe at the first traffic.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the probe never ran");
        poke();
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

#[test]
fn hearth_takes_the_sockets_passed_under_the_units_name_once() {
    let name = values_in(&socket_path(), "FileDescriptorName")
        .pop()
        .expect("hearth.socket names its sockets");
    // Two UDP sockets, one under another name: hearth takes its own, once,
    // and leaves the environment for the other name.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args = [
        "--datagram".to_owned(),
        format!("--listen=127.0.0.1:{port}"),
        format!("--listen=127.0.0.2:{port}"),
        format!("--fdname={name}:other"),
    ];
    let said = activated(&args, &name, || {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let _ = udp.send_to(b"?", ("127.0.0.1", port));
    });
    assert_eq!(said, "udp=1 tcp=0 again=0 env=kept");

    // A TCP listener, the only socket passed: taken, and the environment
    // cleared.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args = [format!("--listen=127.0.0.1:{port}"), format!("--fdname={name}")];
    let said = activated(&args, &name, || {
        let _ =
            std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200));
    });
    assert_eq!(said, "udp=0 tcp=1 again=0 env=removed");

    // A Unix socket under the name is refused by its number.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let args = [format!("--listen={}", path.display()), format!("--fdname={name}")];
    let said = activated(&args, &name, || {
        let _ = std::os::unix::net::UnixStream::connect(&path);
    });
    assert!(
        said.starts_with("error: passed descriptor 3 is a Unix stream socket"),
        "{said}"
    );
}

/// What `hearth.socket` gives hearth in practice: port 53, bound by
/// systemd (here its `systemd-socket-activate`, as root) and passed to
/// hearth running as the unit's unprivileged user with no capability. The
/// resolver answers on it, forwarding to a dnsmasq upstream, all inside a
/// network namespace of the test's own.
#[test]
fn hearth_answers_dns_on_port_53_from_the_passed_socket_without_privilege() {
    let ns = crate::discovery::Netns::new();
    let in_ns = |program: &str| {
        let mut c = crate::harness::tool("ip");
        c.args(["netns", "exec", ns.name(), program]);
        c
    };
    let mut upstream = in_ns("dnsmasq")
        .args([
            "--no-daemon",
            "--port=5300",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--address=/canary-activated.example/192.0.2.53",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dnsmasq (Debian's dnsmasq-base)");
    // systemd-socket-activate starts hearth at the first datagram: dig
    // pokes until it is answered (bounded), while the harness waits for
    // the admin socket.
    let name = ns.name().to_owned();
    let asker = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        while std::time::Instant::now() < deadline {
            let out = crate::harness::run(
                crate::harness::tool("ip").args([
                    "netns",
                    "exec",
                    &name,
                    "dig",
                    "@127.0.0.1",
                    "+short",
                    "+tries=1",
                    "+time=1",
                    "canary-activated.example",
                ]),
                Duration::from_secs(5),
            );
            let answer = text(&out.stdout).trim().to_owned();
            if answer == "192.0.2.53" {
                return answer;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        String::new()
    });
    let wrapper: Vec<OsString> = [
        "ip",
        "netns",
        "exec",
        ns.name(),
        "systemd-socket-activate",
        "--datagram",
        "--listen=127.0.0.1:53",
        "--fdname=dns",
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    let daemon = Daemon::start_raw_via(
        "[mqtt]\ntls_listen = [\"127.0.0.1:0\"]\nplain_listen = [\"127.0.0.1:0\"]\n\
         [discovery]\nenabled = false\n[web]\nenabled = false\n\
         [dns]\nenabled = true\nupstream = [\"127.0.0.1:5300\"]\n",
        &wrapper,
        NOBODY,
    );
    assert_eq!(
        asker.join().unwrap(),
        "192.0.2.53",
        "no answer on port 53: {}",
        daemon.log()
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
    };
    assert_eq!(field("Uid:").as_deref(), Some("65534"), "{status}");
    assert_eq!(field("CapEff:").as_deref(), Some("0000000000000000"), "{status}");
    let dns = daemon.cli_json(&["dns", "status"]);
    assert_eq!(
        dns["status"]["listening"],
        serde_json::json!(["127.0.0.1:53"]),
        "{dns}"
    );
    assert!(
        dns["status"]["counts"]["from_others"].as_u64() >= Some(1),
        "{dns}"
    );
    let log = daemon.log();
    assert!(!log.contains("canary-activated"), "a name reached the log: {log}");
    let _ = upstream.kill();
    let _ = upstream.wait();
}

/// A UDP resolver on loopback that answers every query NXDOMAIN, from a
/// thread (the test's process ends it); its address.
fn nxdomain_upstream() -> std::net::SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            // The header and the question only: QR, RA and NXDOMAIN set,
            // no answer, authority or additional records.
            let mut end = 12;
            while end < n && buf[end] != 0 {
                end += usize::from(buf[end]) + 1;
            }
            let end = (end + 5).min(n);
            if n < 12 {
                continue;
            }
            let mut reply = buf[..end].to_vec();
            reply[2] |= 0x80;
            reply[3] = 0x80 | 3;
            reply[6..12].fill(0);
            let _ = socket.send_to(&reply, from);
        }
    });
    addr
}

/// systemd's system call groups, from the machine's systemd.
fn syscall_groups() -> HashMap<String, Vec<String>> {
    let out = Command::new("systemd-analyze")
        .args(["syscall-filter", "--no-pager"])
        .output()
        .expect("systemd-analyze syscall-filter");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text(&out.stdout).lines() {
        if line.starts_with('@') {
            current = Some(line.trim().to_owned());
            groups.entry(line.trim().to_owned()).or_default();
        } else if line.trim().is_empty() || !line.starts_with(char::is_whitespace) {
            current = None;
        } else if let Some(g) = &current {
            let item = line.trim();
            if !item.starts_with('#') {
                groups.get_mut(g).unwrap().push(item.to_owned());
            }
        }
    }
    groups
}

fn expand(item: &str, groups: &HashMap<String, Vec<String>>, out: &mut BTreeSet<String>) {
    if item.starts_with('@') {
        let members = groups
            .get(item)
            .unwrap_or_else(|| panic!("systemd knows no group {item}"));
        for m in members {
            expand(m, groups, out);
        }
    } else {
        out.insert(item.to_owned());
    }
}

/// The unit's allow-list: its `SystemCallFilter=` lines in order, a `~`
/// line taking calls away.
pub fn unit_allow_list() -> BTreeSet<String> {
    let groups = syscall_groups();
    let mut allowed = BTreeSet::new();
    for value in unit_values("SystemCallFilter") {
        let (deny, items) = match value.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, value.as_str()),
        };
        let mut set = BTreeSet::new();
        for item in items.split_whitespace() {
            expand(item, &groups, &mut set);
        }
        if deny {
            allowed.retain(|c| !set.contains(c));
        } else {
            allowed.extend(set);
        }
    }
    allowed
}

#[test]
fn hearth_runs_its_whole_day_under_the_units_system_call_filter() {
    let allowed = unit_allow_list();
    // The filter is real: these are out, by the unit's own groups.
    for banned in [
        "setrlimit",
        "setpriority",
        "mount",
        "setuid",
        "sched_setaffinity",
        "reboot",
    ] {
        assert!(!allowed.contains(banned), "{banned} is allowed");
    }
    assert!(allowed.contains("epoll_wait") && allowed.contains("sendmsg"));
    let list = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        list.path(),
        allowed.iter().cloned().collect::<Vec<_>>().join("\n"),
    )
    .unwrap();

    // Proof the wrapper bites: `nice` calls setpriority (@resources).
    let killed = Command::new(env!("CARGO_BIN_EXE_hearth-seccomp-exec"))
        .arg(list.path())
        .args(["65536", "0:0", "--", "nice", "-n", "5", "true"])
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        killed.status.signal(),
        Some(libc::SIGSYS),
        "nice ran under the filter: {:?}",
        killed.status
    );

    // As the unit's service user, not root: SQLite, for one, calls fchown
    // (in @privileged) on its journals only when it runs as root.
    let wrapper: Vec<OsString> = vec![
        env!("CARGO_BIN_EXE_hearth-seccomp-exec").into(),
        list.path().into(),
        "65536".into(),
        format!("{NOBODY}:{NOBODY}").into(),
        "--".into(),
    ];
    // Discovery on loopback too: netlink for the interfaces, multicast.
    // The Matter bridge on its own UDP port (dual-stack), its thread and
    // its services published through discovery's responder.
    let matter_port = std::net::UdpSocket::bind("[::]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The DNS resolver on loopback, forwarding to an upstream that answers
    // NXDOMAIN to anything.
    let dns_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let upstream = nxdomain_upstream();
    let daemon = Daemon::start_raw_via(
        &format!(
            "[mqtt]\ntls_listen = [\"127.0.0.1:0\"]\nplain_listen = [\"127.0.0.1:0\"]\n\
             [discovery]\ninterfaces = \"loopback\"\n[web]\nlisten = [\"127.0.0.1:0\"]\n\
             [relay]\nlisten = \"127.0.0.1:0\"\n[matter]\nenabled = true\nport = {matter_port}\n\
             [dns]\nenabled = true\nlisten = [\"127.0.0.1:{dns_port}\"]\nupstream = [\"{upstream}\"]\n"
        ),
        &wrapper,
        NOBODY,
    );
    for transport in ["+notcp", "+tcp"] {
        let out = crate::harness::run(
            crate::harness::tool("dig").args([
                "@127.0.0.1",
                "-p",
                &dns_port.to_string(),
                transport,
                "+tries=1",
                "+time=5",
                &format!("nowhere{transport}.example"),
            ]),
            Duration::from_secs(10),
        );
        assert!(
            text(&out.stdout).contains("status: NXDOMAIN"),
            "{transport}: {}{}",
            text(&out.stdout),
            daemon.log()
        );
    }
    let web = Target::tls(daemon.web_port(), &daemon.ca_cert());
    assert_eq!(web.send("GET", "/api/state", &[], b"").status, 200);
    assert_eq!(web.send("GET", "/metrics", &[], b"").status, 200);
    // Store writes, a device's credential, MQTT over TLS with it.
    let device = crate::harness::Device(daemon.cli_json(&[
        "devices",
        "add",
        "--profile",
        "generic",
        "--kind",
        "bulb",
        "--nickname",
        "Lamp",
        "--room",
        "Hall",
    ]));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _client = rt.block_on(crate::mqtt::connect(crate::mqtt::options(&daemon, &device)));
    let metrics = web.send("GET", "/metrics", &[], b"").text();
    assert!(
        metrics.lines().any(|l| l == "hearth_mqtt_connections 1"),
        "{metrics}"
    );
    // The heavier paths: the relay listener, Home Assistant's principal, a
    // key rotation, a backup (argon2id, 64 MiB) and a lockdown.
    // The relay is enabled only for an owner with two-factor on, set up
    // through the dashboard (argon2id, TOTP) under the filter too.
    daemon.owner_with_two_factor("owner@home.invalid", "a seccomp test passphrase");
    daemon.cli_json(&["relay", "enable"]);
    daemon.cli_json(&["integrations", "homeassistant", "enable"]);
    daemon.cli_json(&["keys", "rotate"]);
    let pass = daemon.home.path("pass");
    std::fs::write(&pass, "a backup passphrase\n").unwrap();
    let backup = daemon.home.path("b.hearthbackup");
    let out = daemon.cli(&[
        "backup",
        "create",
        "--out",
        backup.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Matter pairing opened and closed again by the lockdown, which also
    // restarts the Matter transport.
    daemon.cli_json(&["matter", "pair"]);
    assert_eq!(daemon.cli_json(&["matter", "status"])["port"], matter_port);
    let locked = daemon.cli_json(&["lockdown"]);
    assert_eq!(locked["matter_controllers_removed"], 0);
    assert_eq!(daemon.cli_json(&["matter", "status"])["pairing_open"], false);
    // mDNS had time to browse and announce.
    std::thread::sleep(Duration::from_secs(2));
    let (status, log) = daemon.stop();
    assert_eq!(
        status.signal(),
        None,
        "hearth was killed by a signal: {status:?}\n{log}"
    );
    assert!(status.success(), "hearth stopped with {status:?}:\n{log}");
    assert!(log.contains("hearth running"), "{log}");
    assert!(log.contains("matter bridge started"), "{log}");
    assert!(!log.contains("the matter bridge stopped"), "{log}");
}
