//! The Matter bridge (issue 23), against a controller nobody on the project
//! wrote: matter.js (tests/matter/controller.mjs) in one network namespace,
//! hearth with `[matter] enabled` in another, joined by a veth pair with
//! multicast routed on each side, as the integration test runs them.
//!
//! Per round, on a fresh daemon and a fresh controller each time:
//!
//! - idle RSS with the bridge off: three lights and plugs adopted and
//!   exposed, read a fixed time after the daemon started;
//! - commissioning: the `commission` line written until its answer, which
//!   matter.js gives once PASE, the certificates, the CASE reconnect over
//!   operational mDNS and its first read of the whole node are done;
//! - idle RSS with the bridge on and one fabric, read at the same time
//!   after start (or 2 s after commissioning, if that is later);
//! - a Matter command to the bulb's MQTT command: on and off, then
//!   `moveToLevelWithOnOff`, one at a time, from the line written to the
//!   controller until the bulb, simulated in-process in the hub's
//!   namespace (`hearth::sim::device`), has the command. matter.js's own
//!   handling (the line, JSON, encrypting the invoke) is in the figure; a
//!   packet socket on hearth's end of the veth splits it where the invoke
//!   arrives, so hearth's own part is shown too;
//! - the reference in the same run: the voice relay's directive to the same
//!   kind of bulb (relay.rs, on loopback), and Home Assistant's publish.
//!
//! It never prints a pairing code, a name or an address, and sends nothing
//! outside the namespaces it makes.

use std::io::{BufRead, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth::home::vendor::Profile;
use hearth::store::DeviceKind;
use serde_json::{Value, json};

use crate::discovery::{Ns, ip};
use crate::measure::{cpu_secs, percentile_us, rss_mib};
use crate::relay;
use crate::start::{self, Process};

/// At least this many rounds, whatever `--rounds` says: commissioning is
/// measured once per round.
const MIN_ROUNDS: usize = 5;
/// Commands per round and kind (on/off, level, relay, Home Assistant).
const COMMANDS: usize = 200;
/// No phase of commands runs longer than this.
const PHASE_LIMIT: Duration = Duration::from_secs(40);
/// Nor the whole benchmark, after which it reports the rounds it has.
const TOTAL_LIMIT: Duration = Duration::from_secs(300);
/// How long one command may take to reach the bulb, or be answered.
const WAIT: Duration = Duration::from_secs(10);
/// RSS is read this long after the daemon started, with Matter off or on.
const SAMPLE_AT: Duration = Duration::from_secs(10);
/// The two ends of the veth (a LAN that exists only in the benchmark).
const CTL_ADDR: &str = "10.251.8.1/24";
const HUB_ADDR: &str = "10.251.8.2/24";
const HUB_IP: &str = "10.251.8.2";
const MATTER_PORT: u16 = 5540;

/// Two namespaces joined by a veth: the controller's and the hub's. Both
/// (and with them the veth) are deleted on drop.
struct Lan {
    ctl: Ns,
    hub: Ns,
    ctl_link: String,
    hub_link: String,
}

impl Lan {
    fn new() -> Lan {
        let ctl = Ns::bare("matter-ctl");
        let hub = Ns::bare("matter-hub");
        let pid = std::process::id();
        let (a, b) = (format!("hbm{pid}a"), format!("hbm{pid}b"));
        ip(&[
            "link",
            "add",
            &a,
            "netns",
            ctl.name(),
            "type",
            "veth",
            "peer",
            "name",
            &b,
            "netns",
            hub.name(),
        ]);
        for (ns, link, addr) in [(&ctl, &a, CTL_ADDR), (&hub, &b, HUB_ADDR)] {
            ip(&["-n", ns.name(), "addr", "add", addr, "dev", link]);
            ip(&["-n", ns.name(), "link", "set", link, "up"]);
            // matter.js joins the IPv4 mDNS group without naming an
            // interface: without a route it has no IPv4 mDNS.
            ip(&["-n", ns.name(), "route", "add", "224.0.0.0/4", "dev", link]);
        }
        Lan {
            ctl,
            hub,
            ctl_link: a,
            hub_link: b,
        }
    }
}

/// hearth in the hub's namespace, discovering (and so answering Matter's
/// mDNS) on the veth, with the bridge on or off.
fn hearth_in(lan: &Lan, hearth: &Path, dir: &Path, matter: bool) -> (Process, PathBuf) {
    start::hearth_by(
        lan.hub.exec(hearth),
        dir,
        &format!(
            "[mqtt]\ntls_listen = [\"127.0.0.1:0\"]\nplain_listen = []\n[log]\nlevel = \"warn\"\n\
             [web]\nlisten = [\"127.0.0.1:0\"]\n[discovery]\ninterfaces = \"private\"\n\
             [matter]\nenabled = {matter}\nport = {MATTER_PORT}\n"
        ),
    )
}

/// Three devices a controller will see, adopted by hand and exposed to
/// voice under a voice name (what the bridge shows): the provisioning of
/// the first, the bulb the commands go to.
fn bridged_devices(data: &Path) -> Value {
    let mut first = None;
    for (kind, voice) in [
        (DeviceKind::Bulb, "bench light"),
        (DeviceKind::Plug, "bench kettle"),
        (DeviceKind::Bulb, "bench lamp"),
    ] {
        let device = start::add_device(data, Profile::Generic, kind, format!("{voice} device"), None);
        start::expose(data, device["id"].as_str().unwrap(), Some(voice));
        first.get_or_insert(device);
    }
    first.unwrap()
}

/// A matter.js controller in the controller's namespace, one command at a
/// time; stopped (SIGTERM, then SIGKILL) on drop.
struct Controller {
    stdin: ChildStdin,
    lines: Receiver<(String, Instant)>,
    next: u64,
    _process: Process,
}

impl Controller {
    fn start(lan: &Lan, storage: &Path) -> Controller {
        std::fs::create_dir_all(storage).unwrap();
        // Its log stays quiet and unread: it would name addresses and, at
        // debug, the pairing payload.
        let mut child = lan
            .ctl
            .exec(Path::new("node"))
            .arg("tests/matter/controller.mjs")
            .env("MATTER_STORAGE_PATH", storage)
            .env("MATTER_MDNS_NETWORKINTERFACE", &lan.ctl_link)
            .env("MATTER_FABRIC_LABEL", "hearth bench")
            .env("MATTER_LOG_LEVEL", "warn")
            .env("COMMISSION_TIMEOUT_MS", "60000")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node (bench/run installs matter.js)");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((line, Instant::now())).is_err() {
                    return;
                }
            }
        });
        let mut c = Controller {
            stdin,
            lines,
            next: 0,
            _process: Process::new(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (line, _) = c
                .recv(deadline)
                .expect("the controller did not start within 60 s");
            if serde_json::from_str::<Value>(&line).is_ok_and(|v| v["event"] == "ready") {
                return c;
            }
        }
    }

    fn recv(&mut self, deadline: Instant) -> Option<(String, Instant)> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.lines.recv_timeout(left).ok()
    }

    /// Sends `cmd`: its answer (or None after `limit`), when the line was
    /// written and when the answer arrived.
    fn ask(&mut self, mut cmd: Value, limit: Duration) -> (Option<Value>, Instant, Instant) {
        self.next += 1;
        let id = self.next;
        cmd["id"] = json!(id);
        let line = format!("{cmd}\n");
        let sent = Instant::now();
        self.stdin.write_all(line.as_bytes()).unwrap();
        let deadline = sent + limit;
        while let Some((line, at)) = self.recv(deadline) {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["id"] == json!(id) && v.get("event").is_none() {
                return (Some(v), sent, at);
            }
        }
        (None, sent, Instant::now())
    }
}

/// The bulb, simulated in this process on a thread that joined the hub's
/// network namespace (so it reaches hearth's broker on that loopback):
/// each line it says, timestamped on the same clock as the controller's
/// commands. Stopped and joined on drop.
struct Bulb {
    lines: Receiver<(String, Instant)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bulb {
    fn start(ns: &Ns, provisioning: Value) -> Bulb {
        let netns = PathBuf::from("/var/run/netns").join(ns.name());
        let (tx, lines) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let file = std::fs::File::open(&netns).expect("the hub's namespace");
            // Only this thread moves; the namespace a socket is made in is
            // the one it keeps.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(hearth::sim::device(
                provisioning,
                "127.0.0.1".into(),
                async move {
                    let _ = stopped.await;
                },
                move |line| {
                    let _ = tx.send((line.to_owned(), Instant::now()));
                },
            ));
        });
        let bulb = Bulb {
            lines,
            stop: Some(stop),
            thread: Some(thread),
        };
        bulb.wait_for("connected", Instant::now() + WAIT)
            .expect("the simulated bulb did not connect");
        bulb
    }

    /// When the bulb said `want`, if it did before `deadline`.
    fn wait_for(&self, want: &str, deadline: Instant) -> Option<Instant> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((line, at)) if line == want => return Some(at),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn drain(&self) {
        while self.lines.try_recv().is_ok() {}
    }
}

impl Drop for Bulb {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Joined if it stops within 5 s; otherwise left to the process's
        // exit rather than hang the benchmark.
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// When each Matter packet addressed to hearth reached the hub's end of
/// the veth: a packet socket in the hub's namespace, read on a thread of
/// its own, with the kernel's receive time carried over to the same clock
/// as the rest (see [`arrived`]), so a
/// command's time splits into the controller's part (matter.js and the
/// wire) and hearth's (its socket to the bulb). Only the time and the
/// destination port are read from each packet. Stopped on drop.
struct Capture {
    /// Each packet's arrival and UDP payload length.
    arrivals: Arc<Mutex<Vec<(Instant, usize)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    fn start(ns: &Ns, link: &str) -> Capture {
        let netns = PathBuf::from("/var/run/netns").join(ns.name());
        let link = std::ffi::CString::new(link).unwrap();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = {
            let (arrivals, stop) = (arrivals.clone(), stop.clone());
            std::thread::spawn(move || {
                let file = std::fs::File::open(&netns).expect("the hub's namespace");
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                let fd = packet_socket(&link);
                let _ = ready_tx.send(());
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                    let n = unsafe {
                        libc::recvfrom(
                            fd.as_raw_fd(),
                            buf.as_mut_ptr().cast(),
                            buf.len(),
                            0,
                            (&raw mut from).cast(),
                            &mut len,
                        )
                    };
                    if n <= 0 || from.sll_pkttype != libc::PACKET_HOST {
                        continue;
                    }
                    if let Some((MATTER_PORT, len)) =
                        udp_port(u16::from_be(from.sll_protocol), &buf[..n as usize])
                    {
                        arrivals.lock().unwrap().push((arrived(&fd), len));
                    }
                }
            })
        };
        ready
            .recv_timeout(Duration::from_secs(5))
            .expect("the packet socket did not open");
        Capture {
            arrivals,
            stop,
            thread: Some(thread),
        }
    }

    /// The command's invoke among the packets for hearth's Matter port that
    /// arrived after `from` and no later than `to`: the first of the
    /// longest. The others are shorter: acknowledgements and status
    /// responses to earlier reports (42 and 50 bytes of UDP payload here)
    /// and, when hearth answers the invoke before the bulb has the command,
    /// matter.js's read-back (67; the invoke is 75 for on and off, 86 for a
    /// level). Also how many packets had that longest length, and the
    /// length of each counted in `lengths`; the ones before `to` are
    /// forgotten.
    fn invoke_between(
        &self,
        from: Instant,
        to: Instant,
        lengths: &mut std::collections::BTreeMap<usize, usize>,
    ) -> (Option<Instant>, usize) {
        let mut a = self.arrivals.lock().unwrap();
        let within: Vec<(Instant, usize)> =
            a.iter().filter(|(t, _)| *t > from && *t <= to).copied().collect();
        a.retain(|(t, _)| *t > to);
        for (_, len) in &within {
            *lengths.entry(*len).or_default() += 1;
        }
        let Some(longest) = within.iter().map(|(_, len)| *len).max() else {
            return (None, 0);
        };
        let mut invokes = within.iter().filter(|(_, len)| *len == longest);
        (invokes.next().map(|(t, _)| *t), 1 + invokes.count())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// When the kernel received the packet just read from `fd`, on the
/// benchmark's clock: the thread reading it may run much later on a busy
/// machine. The kernel stamps it on the wall clock; the wall clock and
/// `Instant` are read back to back to carry it over.
fn arrived(fd: &std::os::fd::OwnedFd) -> Instant {
    // SIOCGSTAMPNS: the last packet's receive time, a timespec.
    const SIOCGSTAMPNS: libc::c_ulong = 0x8907;
    let mut stamp: libc::timespec = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCGSTAMPNS as _, &raw mut stamp) };
    let mut wall: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &raw mut wall) };
    let now = Instant::now();
    if rc != 0 {
        return now;
    }
    let ns = |t: &libc::timespec| t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128;
    let ago = (ns(&wall) - ns(&stamp)).clamp(0, 1_000_000_000);
    now - Duration::from_nanos(ago as u64)
}

/// An AF_PACKET socket for every packet on `link` (layer 3 up), waking
/// every 100 ms so that it can be stopped.
fn packet_socket(link: &std::ffi::CStr) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let all = (libc::ETH_P_ALL as u16).to_be();
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(all),
        )
    };
    assert!(raw >= 0, "packet socket: {}", std::io::Error::last_os_error());
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
    let index = unsafe { libc::if_nametoindex(link.as_ptr()) };
    assert!(index > 0, "the hub's veth");
    let mut at: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    at.sll_family = libc::AF_PACKET as u16;
    at.sll_protocol = all;
    at.sll_ifindex = index as i32;
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const at).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    let wake = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const wake).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
    fd
}

/// The UDP destination port and payload length of an IPv4 or IPv6 packet
/// (no extension headers), if it is UDP.
fn udp_port(ethertype: u16, p: &[u8]) -> Option<(u16, usize)> {
    let udp = match ethertype {
        0x0800 if p.len() >= 20 && p[9] == 17 => usize::from(p[0] & 0x0f) * 4,
        0x86dd if p.len() >= 40 && p[6] == 17 => 40,
        _ => return None,
    };
    let h = p.get(udp..udp + 8)?;
    Some((
        u16::from_be_bytes([h[2], h[3]]),
        usize::from(u16::from_be_bytes([h[4], h[5]])).saturating_sub(8),
    ))
}

/// One phase of Matter commands to the bulb.
#[derive(Default)]
struct Phase {
    /// Command line written until the bulb had it, sorted.
    to_bulb: Vec<Duration>,
    /// Command line written until matter.js answered (after its read-back).
    answered: Vec<Duration>,
    /// Command line written until its packet reached hearth's veth, sorted.
    to_hearth: Vec<Duration>,
    /// That packet's arrival until the bulb had the command, sorted.
    in_hearth: Vec<Duration>,
    /// Commands during which more than one packet of the invoke's length
    /// reached hearth before the bulb had the command (the split is then
    /// less certain).
    several: usize,
    /// Commands whose read-back (matter.js reads the attribute from hearth
    /// after the command) still found the value from before.
    stale: usize,
    /// How many packets of each UDP payload length reached hearth between
    /// a command and the bulb having it.
    lengths: std::collections::BTreeMap<usize, usize>,
    sent: usize,
    lost: usize,
    cpu_us: f64,
}

/// Up to [`COMMANDS`] commands (or [`PHASE_LIMIT`]), one at a time, each a
/// change: on and off, or level 76 and 178 (hearth's brightness 30 and 70).
fn phase(
    c: &mut Controller,
    bulb: &Bulb,
    capture: &Capture,
    pid: u32,
    node: &str,
    endpoint: u64,
    level: bool,
) -> Phase {
    let mut p = Phase::default();
    let cpu0 = cpu_secs(pid);
    let started = Instant::now();
    while p.sent < COMMANDS && started.elapsed() < PHASE_LIMIT {
        let even = p.sent % 2 == 0;
        let (cmd, want) = match (level, even) {
            (false, true) => (
                json!({"cmd": "on", "node": node, "endpoint": endpoint}),
                "state ON",
            ),
            (false, false) => (
                json!({"cmd": "off", "node": node, "endpoint": endpoint}),
                "state OFF",
            ),
            (true, true) => (
                json!({"cmd": "level", "node": node, "endpoint": endpoint, "level": 76}),
                "brightness 30",
            ),
            (true, false) => (
                json!({"cmd": "level", "node": node, "endpoint": endpoint, "level": 178}),
                "brightness 70",
            ),
        };
        bulb.drain();
        // What matter.js's read-back after the command should find.
        let (attribute, value) = match &cmd["level"] {
            Value::Null => ("onOff", json!(cmd["cmd"] == "on")),
            level => ("currentLevel", level.clone()),
        };
        let (answer, sent, answered) = c.ask(cmd, WAIT);
        p.sent += 1;
        let ok = answer.as_ref().is_some_and(|a| a["ok"] == true);
        if ok && answer.as_ref().is_some_and(|a| a[attribute] != value) {
            p.stale += 1;
        }
        match bulb.wait_for(want, sent + WAIT) {
            Some(at) if ok => {
                p.to_bulb.push(at - sent);
                p.answered.push(answered - sent);
                let (arrived, invokes) = capture.invoke_between(sent, at, &mut p.lengths);
                if let Some(arrived) = arrived {
                    p.to_hearth.push(arrived - sent);
                    p.in_hearth.push(at - arrived);
                }
                if invokes > 1 {
                    p.several += 1;
                }
            }
            _ => p.lost += 1,
        }
    }
    p.cpu_us = (cpu_secs(pid) - cpu0) * 1e6 / p.sent.max(1) as f64;
    p.to_bulb.sort();
    p.answered.sort();
    p.to_hearth.sort();
    p.in_hearth.sort();
    p
}

/// What one round measured.
struct Round {
    rss_off: f64,
    rss_on: f64,
    commission: Duration,
    commission_matter_js_ms: f64,
    on_off: Phase,
    level: Phase,
    relay: relay::Phase,
    homeassistant: relay::Phase,
}

/// The bulb's endpoint on the controller's side, found by its NodeLabel
/// (the voice name), asking again for up to 30 s while matter.js reads.
fn endpoint_of_bulb(c: &mut Controller, node: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (parts, _, _) = c.ask(json!({"cmd": "parts", "node": node}), Duration::from_secs(20));
        let found = parts.as_ref().and_then(|p| {
            p["endpoints"]
                .as_array()?
                .iter()
                .find(|e| e["nodeLabel"] == "bench light")
                .and_then(|e| e["endpoint"].as_u64())
        });
        if let Some(endpoint) = found {
            return endpoint;
        }
        assert!(
            Instant::now() < deadline,
            "the bulb was not among the bridged endpoints within 30 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Idle RSS of a daemon with the bridge off, at [`SAMPLE_AT`] after start.
fn rss_off(lan: &Lan, hearth: &Path) -> f64 {
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (daemon, data) = hearth_in(lan, hearth, tmp.path(), false);
    bridged_devices(&data);
    std::thread::sleep((started + SAMPLE_AT).saturating_duration_since(Instant::now()));
    rss_mib(daemon.id())
}

fn matter_round(lan: &Lan, hearth: &Path, rt: &tokio::runtime::Runtime) -> Round {
    let rss_off = rss_off(lan, hearth);

    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (daemon, data) = hearth_in(lan, hearth, tmp.path(), true);
    let bulb = bridged_devices(&data);
    let pairing = start::admin(&data, hearth::app::admin::Request::MatterPair);
    let code = pairing["manual_code"].as_str().expect("a manual pairing code");
    let mut controller = Controller::start(lan, &tmp.path().join("controller"));
    let (joined, sent, answered) = controller.ask(
        json!({"cmd": "commission", "code": code, "ip": HUB_IP, "port": MATTER_PORT}),
        Duration::from_secs(70),
    );
    let joined = joined.expect("no answer to commission within 70 s");
    // The answer carries no code; an error names neither, only what failed.
    assert_eq!(joined["ok"], true, "commissioning failed: {}", joined["error"]);
    let commission = answered - sent;
    let node = joined["node"].as_str().unwrap().to_owned();
    let at = (started + SAMPLE_AT).max(answered + Duration::from_secs(2));
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
    let rss_on = rss_mib(daemon.id());
    let status = start::admin(&data, hearth::app::admin::Request::MatterStatus);
    assert_eq!(status["fabrics"], 1, "one controller joined");

    let endpoint = endpoint_of_bulb(&mut controller, &node);
    let device = Bulb::start(&lan.hub, bulb);
    let capture = Capture::start(&lan.hub, &lan.hub_link);
    // Settle: matter.js subscribes to the node after connecting.
    std::thread::sleep(Duration::from_millis(500));
    let on_off = phase(
        &mut controller,
        &device,
        &capture,
        daemon.id(),
        &node,
        endpoint,
        false,
    );
    let level = phase(
        &mut controller,
        &device,
        &capture,
        daemon.id(),
        &node,
        endpoint,
        true,
    );
    drop(capture);
    drop(device);
    drop(controller);
    drop(daemon);

    // The reference, on the same machine and between the same rounds.
    let (reference, bulb, ha, token, _mqtt, port) = relay::prepare(hearth);
    let relay = rt.block_on(relay::phase(&reference, &bulb, &ha, &token, port, true, COMMANDS));
    let homeassistant = rt.block_on(relay::phase(
        &reference, &bulb, &ha, &token, port, false, COMMANDS,
    ));
    Round {
        rss_off,
        rss_on,
        commission,
        commission_matter_js_ms: joined["ms"].as_f64().unwrap_or(f64::NAN),
        on_off,
        level,
        relay,
        homeassistant,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pooled<'a>(v: impl Iterator<Item = &'a Vec<Duration>>) -> Vec<Duration> {
    let mut all: Vec<Duration> = v.flatten().copied().collect();
    all.sort();
    all
}

fn median_f(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(hearth: &Path, rounds: usize) {
    let rounds = rounds.max(MIN_ROUNDS);
    assert!(
        Path::new("tests/matter/node_modules/@project-chip/matter.js/package.json").exists(),
        "matter.js is not installed (bench/run matter runs npm ci in tests/matter)"
    );
    println!(
        "\n## matter: {rounds} rounds, a fresh daemon and controller each; {COMMANDS} on/off and {COMMANDS} level \
         commands over Matter, then {COMMANDS} relay directives and {COMMANDS} Home Assistant publishes, one at a \
         time, each until the bulb has the command"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let lan = Lan::new();
    let begun = Instant::now();
    let mut done: Vec<Round> = Vec::new();
    for r in 0..rounds {
        if begun.elapsed() > TOTAL_LIMIT {
            println!("(stopped after {r} rounds: {} s passed)", TOTAL_LIMIT.as_secs());
            break;
        }
        let round = matter_round(&lan, hearth, &rt);
        let us = |v: &[Duration], p| percentile_us(v, p);
        println!(
            "round {}: commissioned in {:.0} ms (matter.js says {:.0} ms); RSS off {:.1} MiB, on {:.1} MiB",
            r + 1,
            ms(round.commission),
            round.commission_matter_js_ms,
            round.rss_off,
            round.rss_on
        );
        for (what, to_bulb, sent, lost, cpu) in [
            (
                "matter on/off",
                &round.on_off.to_bulb,
                round.on_off.sent,
                round.on_off.lost,
                round.on_off.cpu_us,
            ),
            (
                "matter level",
                &round.level.to_bulb,
                round.level.sent,
                round.level.lost,
                round.level.cpu_us,
            ),
            (
                "relay",
                &round.relay.latencies,
                round.relay.sent,
                round.relay.lost,
                round.relay.cpu_us,
            ),
            (
                "home assistant",
                &round.homeassistant.latencies,
                round.homeassistant.sent,
                round.homeassistant.lost,
                round.homeassistant.cpu_us,
            ),
        ] {
            println!(
                "  {what:<14}: p50 {:>7.0} us  p99 {:>7.0} us  max {:>7.0} us  sent {sent} lost {lost}  daemon cpu {cpu:.0} us/cmd",
                us(to_bulb, 0.5),
                us(to_bulb, 0.99),
                us(to_bulb, 1.0),
            );
        }
        for (what, p) in [("on/off", &round.on_off), ("level", &round.level)] {
            println!(
                "  {what:<6} split : to hearth's veth p50 {:>6.0} us p99 {:>6.0} us; veth to bulb p50 {:>6.0} us p99 {:>6.0} us ({} of {}, {} with several; lengths {:?}); {} read-backs stale",
                us(&p.to_hearth, 0.5),
                us(&p.to_hearth, 0.99),
                us(&p.in_hearth, 0.5),
                us(&p.in_hearth, 0.99),
                p.in_hearth.len(),
                p.to_bulb.len(),
                p.several,
                p.lengths,
                p.stale
            );
        }
        done.push(round);
    }
    assert!(!done.is_empty(), "no round finished");
    let n = done.len();

    let on_off = pooled(done.iter().map(|r| &r.on_off.to_bulb));
    let level = pooled(done.iter().map(|r| &r.level.to_bulb));
    let relay = pooled(done.iter().map(|r| &r.relay.latencies));
    let ha = pooled(done.iter().map(|r| &r.homeassistant.latencies));
    let answers = pooled(done.iter().flat_map(|r| [&r.on_off.answered, &r.level.answered]));
    let lost: usize = done
        .iter()
        .map(|r| r.on_off.lost + r.level.lost + r.relay.lost + r.homeassistant.lost)
        .sum();
    println!("\ncommand to the bulb's MQTT command, pooled over {n} rounds (counts in brackets)");
    println!(
        "{:<34} {:>10} {:>10} {:>14} {:>14}",
        "", "p50 us", "p99 us", "p50 / relay", "p99 / relay"
    );
    let (r50, r99) = (percentile_us(&relay, 0.5), percentile_us(&relay, 0.99));
    for (what, v) in [
        ("matter on/off", &on_off),
        ("matter level", &level),
        ("relay (BrightnessAbsolute)", &relay),
        ("home assistant (MQTT)", &ha),
    ] {
        let (p50, p99) = (percentile_us(v, 0.5), percentile_us(v, 0.99));
        println!(
            "{:<34} {p50:>10.0} {p99:>10.0} {:>13.2}x {:>13.2}x",
            format!("{what} [{}]", v.len()),
            p50 / r50,
            p99 / r99
        );
    }
    let to_hearth = pooled(
        done.iter()
            .flat_map(|r| [&r.on_off.to_hearth, &r.level.to_hearth]),
    );
    let in_hearth = pooled(
        done.iter()
            .flat_map(|r| [&r.on_off.in_hearth, &r.level.in_hearth]),
    );
    println!(
        "matter, split at hearth's veth [{}]: line written to packet arrived p50 {:.0} us, p99 {:.0} us; \
         packet arrived to the bulb p50 {:.0} us, p99 {:.0} us ({:.2}x / {:.2}x the relay's)",
        in_hearth.len(),
        percentile_us(&to_hearth, 0.5),
        percentile_us(&to_hearth, 0.99),
        percentile_us(&in_hearth, 0.5),
        percentile_us(&in_hearth, 0.99),
        percentile_us(&in_hearth, 0.5) / r50,
        percentile_us(&in_hearth, 0.99) / r99,
    );
    println!(
        "matter.js's answer (after its read-back), p50 {:.0} us, p99 {:.0} us",
        percentile_us(&answers, 0.5),
        percentile_us(&answers, 0.99)
    );
    let cpu = |f: fn(&Round) -> f64| median_f(&mut done.iter().map(f).collect::<Vec<_>>());
    println!(
        "daemon CPU per command, medians: matter on/off {:.0} us, matter level {:.0} us, relay {:.0} us, home assistant {:.0} us",
        cpu(|r| r.on_off.cpu_us),
        cpu(|r| r.level.cpu_us),
        cpu(|r| r.relay.cpu_us),
        cpu(|r| r.homeassistant.cpu_us)
    );
    println!("commands lost over all rounds: {lost}");
    println!(
        "matter.js's read-back after a command found the old value: {} of {} on/off, {} of {} level",
        done.iter().map(|r| r.on_off.stale).sum::<usize>(),
        on_off.len(),
        done.iter().map(|r| r.level.stale).sum::<usize>(),
        level.len()
    );

    let mut commissions: Vec<Duration> = done.iter().map(|r| r.commission).collect();
    commissions.sort();
    let mut js: Vec<f64> = done.iter().map(|r| r.commission_matter_js_ms).collect();
    println!(
        "commissioning ({n} rounds): median {:.0} ms, min {:.0} ms, max {:.0} ms (matter.js's own clock: median {:.0} ms)",
        ms(commissions[n / 2]),
        ms(commissions[0]),
        ms(commissions[n - 1]),
        median_f(&mut js)
    );
    let mut off: Vec<f64> = done.iter().map(|r| r.rss_off).collect();
    let mut on: Vec<f64> = done.iter().map(|r| r.rss_on).collect();
    let mut diff: Vec<f64> = done.iter().map(|r| r.rss_on - r.rss_off).collect();
    println!(
        "idle RSS, medians over {n} rounds: Matter off {:.1} MiB, on with one fabric {:.1} MiB, difference {:+.1} MiB \
         (per round: {:.1} to {:.1})",
        median_f(&mut off),
        median_f(&mut on),
        median_f(&mut diff),
        diff[0],
        diff[n - 1]
    );
    let size = std::fs::metadata(hearth).map(|m| m.len()).unwrap_or(0);
    println!(
        "release hearth binary: {size} bytes ({:.2} MiB)",
        size as f64 / 1048576.0
    );
}
