//! hearth's Matter bridge against a controller nobody on the project
//! wrote: matter.js (tests/matter/controller.mjs) in one network namespace,
//! hearth in another, joined by a veth pair, with real multicast between
//! them. The controller commissions hearth with the manual pairing code,
//! and a simulated bulb, adopted by hearth, obeys it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::discovery::{Killed, Netns};
use crate::harness::{TestHome, hearth, run, text, tool};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("matter")
}

/// matter.js, as pinned in tests/matter/package-lock.json, installed when
/// it is missing.
fn ensure_installed() {
    if dir()
        .join("node_modules/@project-chip/matter.js/package.json")
        .exists()
    {
        return;
    }
    let out = run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir()),
        Duration::from_secs(300),
    );
    assert!(
        out.status.success(),
        "npm ci in tests/matter: {}",
        text(&out.stderr)
    );
}

/// Runs `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = run(tool("ip").args(args), Duration::from_secs(10));
    assert!(out.status.success(), "ip {args:?}: {}", text(&out.stderr));
}

/// A matter.js controller in `ns`, one JSON command at a time.
struct Controller {
    _child: Killed,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// Unsolicited lines (attribute and structure events) seen so far.
    events: Vec<Value>,
    log: PathBuf,
    next: u64,
}

impl Controller {
    fn start(ns: &Netns, link: &str, home: &TestHome, name: &str) -> Controller {
        let storage = home.path(&format!("{name}-storage"));
        std::fs::create_dir_all(&storage).unwrap();
        let log = home.path(&format!("{name}.log"));
        let mut child: Child = ns
            .exec(Path::new("node"))
            .arg(dir().join("controller.mjs"))
            .env("MATTER_STORAGE_PATH", &storage)
            .env("MATTER_MDNS_NETWORKINTERFACE", link)
            .env("MATTER_FABRIC_LABEL", name)
            .env("COMMISSION_TIMEOUT_MS", "60000")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("node");
        let stdin = child.stdin.take().unwrap();
        let lines = crate::harness::lines_of(&mut child);
        let mut c = Controller {
            _child: Killed(child),
            stdin,
            lines,
            events: Vec::new(),
            log,
            next: 0,
        };
        c.wait_event("ready", Duration::from_secs(60), |_| true);
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `cmd` and returns its answer, whether `ok` or not.
    fn try_ask(&mut self, mut cmd: Value) -> Value {
        self.next += 1;
        let id = self.next;
        cmd["id"] = json!(id);
        writeln!(self.stdin, "{cmd}").unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to {cmd}; controller log:\n{}", self.log()));
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
            if v.get("event").is_some() {
                self.events.push(v);
            } else if v["id"] == json!(id) {
                return v;
            }
        }
    }

    /// Sends `cmd`, which must succeed.
    #[track_caller]
    fn ask(&mut self, cmd: Value) -> Value {
        let answer = self.try_ask(cmd.clone());
        assert_eq!(
            answer["ok"],
            json!(true),
            "{cmd} answered {answer}; controller log tail:\n{}\nhearth's log tail:\n{}",
            tail(&self.log()),
            tail(&std::fs::read_to_string(self.log.with_file_name("daemon.log")).unwrap_or_default())
        );
        answer
    }

    /// Switches `endpoint` on or off, and reads OnOff back until it says so
    /// (a light's off runs through its LevelControl's task, which may end
    /// just after the command's answer), for up to 5 s.
    #[track_caller]
    fn switch(&mut self, node: &str, endpoint: u64, on: bool) {
        let cmd = if on { "on" } else { "off" };
        let answer = self.ask(json!({"cmd": cmd, "node": node, "endpoint": endpoint}));
        if answer["onOff"] == on {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let read = self.ask(
                json!({"cmd": "read", "node": node, "endpoint": endpoint, "cluster": "onOff", "attribute": "onOff"}),
            );
            if read["value"] == on {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{cmd} answered {answer}, and OnOff still reads {read} after 5 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `cmd` until it succeeds, for up to 30 s.
    #[track_caller]
    fn ask_until_ok(&mut self, cmd: Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self.try_ask(cmd.clone());
            if answer["ok"] == true {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "{cmd} still answers {answer} after 30 s"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits up to `limit` for an event named `name` that `pick` accepts,
    /// among those seen already and those to come.
    fn wait_event(&mut self, name: &str, limit: Duration, pick: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["event"] == name && pick(e)) {
            return self.events.remove(i);
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no {name} event within {limit:?}; controller log tail:\n{}",
                    tail(&self.log())
                )
            });
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
            if v["event"] == name && pick(&v) {
                return v;
            }
            if v.get("event").is_some() {
                self.events.push(v);
            }
        }
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The simulated device's lines, each awaited in turn.
struct Device {
    _child: Killed,
    /// hearth's log, for a failure's message.
    daemon_log: PathBuf,
    stdin: ChildStdin,
    lines: Receiver<(String, Instant)>,
}

impl Device {
    #[track_caller]
    fn expect(&self, want: &str) {
        let caller = std::panic::Location::caller();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut heard = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((line, _)) = self.lines.recv_timeout(left) else {
                panic!(
                    "{caller}: the simulated device never said {want:?}; it said {heard:?}; hearth's log tail:\n{}",
                    tail(&std::fs::read_to_string(&self.daemon_log).unwrap_or_default())
                );
            };
            if line == want {
                return;
            }
            heard.push(line);
        }
    }

    /// Nothing reaches the device for `quiet`: no command got through.
    #[track_caller]
    fn expect_silence(&self, quiet: Duration) {
        if let Ok((line, _)) = self.lines.recv_timeout(quiet) {
            assert!(!line.starts_with("state"), "the device obeyed: {line}");
        }
    }

    /// Someone switches the bulb by hand.
    fn flip(&mut self) {
        writeln!(self.stdin, "flip").unwrap();
    }
}

/// hearth in `ns` with the Matter bridge on, discovery (for Matter's
/// mDNS) on the veth.
fn hearth_in(ns: &Netns, home: &TestHome) -> Killed {
    crate::discovery::daemon_config(ns, home, "interfaces = \"private\"\n[matter]\nenabled = true\n")
}

/// `hearth ARGS --data-dir … --json`, which must succeed.
fn cli(home: &TestHome, args: &[&str]) -> Value {
    let out = run(
        hearth()
            .args(args)
            .arg("--data-dir")
            .arg(home.data_dir())
            .arg("--json"),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "hearth {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A device of `kind` added by hand, running as `hearth-sim device` in
/// `ns`, exposed to voice as `voice_name`.
fn adopted(ns: &Netns, home: &TestHome, kind: &str, voice_name: &str) -> (String, Device) {
    let provisioning = cli(
        home,
        &[
            "devices",
            "add",
            "--profile",
            "esphome",
            "--kind",
            kind,
            "--nickname",
            "Porch light",
        ],
    );
    let id = provisioning["id"].as_str().expect("id").to_owned();
    let file = home.path(&format!("{id}.json"));
    std::fs::write(&file, provisioning.to_string()).unwrap();
    let mut child = ns
        .exec(Path::new(env!("CARGO_BIN_EXE_hearth-sim")))
        .arg("device")
        .arg("--provisioning")
        .arg(&file)
        .args(["--seconds", "600"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let lines = crate::harness::timed_lines_of(&mut child);
    let device = Device {
        _child: Killed(child),
        daemon_log: home.path("daemon.log"),
        stdin,
        lines,
    };
    device.expect("connected");
    cli(
        home,
        &[
            "devices",
            "expose",
            &id,
            "--voice",
            "on",
            "--voice-name",
            voice_name,
        ],
    );
    (id, device)
}

/// The bridged endpoint whose NodeLabel is `label`, from a `parts` answer.
fn endpoint_of(parts: &Value, label: &str) -> Option<u64> {
    parts["endpoints"]
        .as_array()?
        .iter()
        .find(|e| e["nodeLabel"] == label)
        .and_then(|e| e["endpoint"].as_u64())
}

/// Asks for the parts list until `found` finds what it looks for, for up
/// to 30 s; what it found.
fn parts_until<T>(c: &mut Controller, node: &str, found: impl Fn(&Value) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let parts = c.try_ask(json!({"cmd": "parts", "node": node}));
        if let Some(t) = found(&parts) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "not in the parts list within 30 s: {parts}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Opens pairing and returns the manual code.
fn pair(home: &TestHome) -> String {
    let codes = cli(home, &["matter", "pair"]);
    let code = codes["manual_code"].as_str().expect("manual code").to_owned();
    assert_eq!(code.len(), 11, "{codes}");
    code
}

/// The whole path a home-lab owner takes: matter.js commissions hearth
/// with the code `hearth matter pair` printed, sees the bridged bulb under
/// its voice name, switches it (the bulb obeys), hears when it is switched
/// by hand, and a second controller joins as a second fabric (over IPv6);
/// a plug exposed later joins, a lamp forgotten leaves.
#[test]
fn a_matter_controller_commissions_hearth_and_switches_a_bulb() {
    ensure_installed();
    let ((ctl_ns, ctl_link), (hub_ns, hub_link)) = Netns::linked();
    // IPv4 multicast in a namespace needs a route (matter.js's mDNS joins
    // 224.0.0.251 on the link).
    ip(&[
        "-n",
        ctl_ns.name(),
        "route",
        "add",
        "224.0.0.0/4",
        "dev",
        &ctl_link,
    ]);
    ip(&[
        "-n",
        hub_ns.name(),
        "route",
        "add",
        "224.0.0.0/4",
        "dev",
        &hub_link,
    ]);
    // Link-local IPv6 usable at once (no duplicate address detection), as
    // on a LAN that has been up a while: Matter controllers prefer it.
    let hub_v6 = {
        for (ns, link) in [(&ctl_ns, &ctl_link), (&hub_ns, &hub_link)] {
            let out = run(
                ns.exec(Path::new("sysctl"))
                    .args(["-qw", &format!("net.ipv6.conf.{link}.accept_dad=0")]),
                Duration::from_secs(10),
            );
            assert!(out.status.success(), "sysctl: {}", text(&out.stderr));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = run(
                tool("ip").args([
                    "-n",
                    hub_ns.name(),
                    "-6",
                    "addr",
                    "show",
                    "dev",
                    &hub_link,
                    "scope",
                    "link",
                ]),
                Duration::from_secs(10),
            );
            let shown = text(&out.stdout);
            if let Some(addr) = shown
                .split_whitespace()
                .skip_while(|w| *w != "inet6")
                .nth(1)
                .filter(|_| !shown.contains("tentative"))
            {
                break addr.split('/').next().unwrap().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no link-local address on the hub: {shown}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let home = TestHome::new();
    let _hearth = hearth_in(&hub_ns, &home);
    let (id, mut bulb) = adopted(&hub_ns, &home, "bulb", "desk lamp");

    let status = cli(&home, &["matter", "status"]);
    assert_eq!(status["fabrics"], 0, "{status}");

    let code = pair(&home);
    let first_code = code.clone();
    let mut first = Controller::start(&ctl_ns, &ctl_link, &home, "kitchen-hub-a7");
    let joined = first.ask(json!({"cmd": "commission", "code": code, "ip": "10.251.7.2", "port": 5540}));
    let node = joined["node"].as_str().unwrap().to_owned();
    eprintln!("commissioned in {} ms", joined["ms"]);

    let parts = first.ask(json!({"cmd": "parts", "node": node}));
    assert_eq!(parts["aggregator"], 1, "{parts}");
    let lamp = endpoint_of(&parts, "desk lamp").unwrap_or_else(|| panic!("no desk lamp: {parts}"));
    let entry = parts["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["endpoint"] == lamp)
        .unwrap();
    assert_eq!(entry["reachable"], true, "{parts}");
    // Never the nickname.
    assert!(!parts.to_string().contains("Porch"), "{parts}");
    // Identify, which light device types require, answers.
    let identify = first.ask(
        json!({"cmd": "read", "node": node, "endpoint": lamp, "cluster": "identify", "attribute": "identifyTime"}),
    );
    assert_eq!(identify["value"], 0, "{identify}");

    first.ask(json!({"cmd": "subscribe", "node": node}));
    first.switch(&node, lamp, true);
    bulb.expect("state ON");
    first.switch(&node, lamp, false);
    bulb.expect("state OFF");

    // Dimmed, as a slider does (moveToLevelWithOnOff): on at half.
    let dimmed = first.ask(json!({"cmd": "level", "node": node, "endpoint": lamp, "level": 127}));
    assert_eq!(dimmed["currentLevel"], 127, "{dimmed}");
    bulb.expect("brightness 50");
    // The bulb has reported a colour temperature: it is a Color
    // Temperature Light (0x010C), and a controller warms it.
    parts_until(&mut first, &node, |p| {
        let types = p["endpoints"]
            .as_array()?
            .iter()
            .find(|e| e["endpoint"] == lamp)?["deviceTypes"]
            .clone();
        types.as_array()?.contains(&json!(0x010C)).then_some(())
    });
    // matter.js takes up the endpoint's new clusters on its own time.
    let warm = first.ask_until_ok(json!({"cmd": "colorTemp", "node": node, "endpoint": lamp, "mireds": 250}));
    assert_eq!(warm["colorTemperatureMireds"], 250, "{warm}");
    bulb.expect("color_temp 250");
    first.switch(&node, lamp, false);
    bulb.expect("state OFF");

    // Switched by hand: the controller hears it as an attribute report.
    first.events.clear();
    bulb.flip();
    bulb.expect("state ON");
    first.wait_event("attribute", Duration::from_secs(30), |e| {
        e["endpoint"] == lamp && e["attribute"] == "onOff" && e["value"] == true
    });

    // A second controller joins as a second fabric, over IPv6 this time:
    // pairing at hearth's link-local address.
    let code = pair(&home);
    let mut second = Controller::start(&ctl_ns, &ctl_link, &home, "phone-app-c3");
    let joined = second
        .ask(json!({"cmd": "commission", "code": code, "ip": format!("{hub_v6}%{ctl_link}"), "port": 5540}));
    let node2 = joined["node"].as_str().unwrap().to_owned();
    second.switch(&node2, lamp, false);
    bulb.expect("state OFF");
    let status = cli(&home, &["matter", "status"]);
    assert_eq!(status["fabrics"], 2, "{status}");
    assert_eq!(status["pairing_open"], false, "{status}");

    // The owner sees both controllers by the labels they gave, with when
    // each joined, and removes the second: it can no longer reach hearth,
    // while the first reconnects and goes on.
    let listed = cli(&home, &["matter", "controllers"]);
    let controllers = listed["controllers"].as_array().unwrap();
    assert_eq!(controllers.len(), 2, "{listed}");
    assert!(
        controllers.iter().all(|c| c["added"].as_u64().is_some()),
        "{listed}"
    );
    let index = |label: &str| {
        controllers
            .iter()
            .find(|c| c["label"] == label)
            .unwrap_or_else(|| panic!("no {label}: {listed}"))["index"]
            .as_u64()
            .unwrap()
            .to_string()
    };
    let (first_index, second_index) = (index("kitchen-hub-a7"), index("phone-app-c3"));
    assert_ne!(first_index, second_index);
    cli(&home, &["matter", "remove", &second_index]);
    let refused = second.try_ask(json!({"cmd": "on", "node": node2, "endpoint": lamp}));
    assert_eq!(
        refused["ok"], false,
        "a removed controller still reached hearth: {refused}"
    );
    bulb.expect_silence(Duration::from_secs(1));
    let again = first.ask_until_ok(json!({"cmd": "on", "node": node, "endpoint": lamp}));
    assert_eq!(again["onOff"], true, "{again}");
    bulb.expect("state ON");
    let status = cli(&home, &["matter", "status"]);
    assert_eq!(status["fabrics"], 1, "{status}");

    // Nothing of it in the clear: not the pairing code, the controllers'
    // labels, the voice names or the link-local address, in the data
    // directory's bytes (fabrics included) or in hearth's log.
    let canaries: Vec<String> = [
        first_code.as_str(),
        "kitchen-hub-a7",
        "phone-app-c3",
        "desk lamp",
        "kettle",
        hub_v6.as_str(),
    ]
    .map(str::to_owned)
    .to_vec();
    let found = hearth_tests::find_canaries(&home.data_dir(), &canaries);
    assert!(found.is_empty(), "in the clear on disk: {found:?}");
    let log = std::fs::read(home.path("daemon.log")).unwrap();
    let found = hearth_tests::find_in_bytes(&log, &canaries);
    assert!(found.is_empty(), "in hearth's log: {found:?}");

    // A plug exposed now joins at once, on a new endpoint: the controller
    // hears the parts list change (matter.js then reads the new endpoint
    // on its own time, so `parts` is asked until it has).
    first.events.clear();
    let (_plug_id, _plug) = adopted(&hub_ns, &home, "plug", "kettle");
    first.wait_event("attribute", Duration::from_secs(10), |e| {
        e["endpoint"] == 1 && e["attribute"] == "partsList"
    });
    let kettle = parts_until(&mut first, &node, |p| endpoint_of(p, "kettle"));
    assert!(kettle > lamp, "kettle {kettle}, lamp {lamp}");

    // Forgotten: its endpoint leaves the node, and is not given again.
    cli(&home, &["devices", "forget", &id]);
    parts_until(&mut first, &node, |p| {
        let listed = p["partsList"].as_array()?.contains(&json!(lamp));
        (!listed && endpoint_of(p, "desk lamp").is_none()).then_some(())
    });
    let gone = first.try_ask(json!({"cmd": "on", "node": node, "endpoint": lamp}));
    assert_eq!(gone["ok"], false, "{gone}");
}

/// A controller that really joined (its fabric in rs-matter's sealed
/// store) is listed by the privacy report, and a lockdown removes it: the
/// count says one, the controller can no longer reach hearth, and its
/// fabric record is gone from the store.
#[test]
fn lockdown_removes_a_commissioned_controller_and_its_fabric_record() {
    ensure_installed();
    let ((ctl_ns, ctl_link), (hub_ns, hub_link)) = Netns::linked();
    for (ns, link) in [(&ctl_ns, &ctl_link), (&hub_ns, &hub_link)] {
        ip(&["-n", ns.name(), "route", "add", "224.0.0.0/4", "dev", link]);
    }
    let home = TestHome::new();
    let hub = hearth_in(&hub_ns, &home);
    let (_id, bulb) = adopted(&hub_ns, &home, "bulb", "desk lamp");
    let code = pair(&home);
    let mut c = Controller::start(&ctl_ns, &ctl_link, &home, "Flat 3 hub");
    let joined = c.ask(json!({"cmd": "commission", "code": code, "ip": "10.251.7.2", "port": 5540}));
    let node = joined["node"].as_str().unwrap().to_owned();
    let parts = c.ask(json!({"cmd": "parts", "node": node}));
    let lamp = endpoint_of(&parts, "desk lamp").unwrap_or_else(|| panic!("no desk lamp: {parts}"));
    c.switch(&node, lamp, true);
    bulb.expect("state ON");

    // The privacy report: the controller under its own label, the lamp
    // under its voice name, one fabric held in the store. When it joined
    // is recorded just after commissioning, off the Matter thread.
    let deadline = Instant::now() + Duration::from_secs(10);
    let report = loop {
        let report = cli(&home, &["privacy", "report"]);
        if report["matter"]["controllers"][0]["added"].is_number() || Instant::now() > deadline {
            break report;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let m = &report["matter"];
    assert_eq!(m["enabled"], true, "{m}");
    let controllers = m["controllers"].as_array().unwrap();
    assert_eq!(controllers.len(), 1, "{m}");
    assert_eq!(controllers[0]["label"], "Flat 3 hub", "{m}");
    assert!(controllers[0]["added"].is_number(), "{m}");
    assert!(!controllers[0]["vendor"].as_str().unwrap().is_empty(), "{m}");
    assert_eq!(m["devices"], json!(["desk lamp"]), "{m}");
    assert!(
        m["what"]
            .as_str()
            .unwrap()
            .starts_with("On, on your LAN: 1 controller sees 1 device"),
        "{m}"
    );
    let held = |report: &Value| {
        report["held"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["what"].as_str().unwrap().starts_with("Matter controllers"))
            .map(|h| h["count"].clone())
    };
    assert_eq!(held(&report), Some(json!(1)), "{report}");

    let done = cli(&home, &["lockdown"]);
    assert_eq!(done["matter_controllers_removed"], 1, "{done}");
    let status = cli(&home, &["matter", "status"]);
    assert_eq!(status["fabrics"], 0, "{status}");
    assert_eq!(status["pairing_open"], false, "{status}");
    let report = cli(&home, &["privacy", "report"]);
    assert_eq!(report["matter"]["controllers"], json!([]), "{report}");
    assert_eq!(held(&report), Some(json!(0)), "{report}");
    // Its sessions ended with its fabric: it cannot switch the lamp again.
    let refused = c.try_ask(json!({"cmd": "off", "node": node, "endpoint": lamp}));
    assert_eq!(refused["ok"], false, "{refused}");

    drop(hub);
    let store = hearth::store::open_or_init(&hearth::store::DataDir::new(home.data_dir()), None).unwrap();
    let kv = store.secret_names("matter_kv_").unwrap();
    assert!(
        !kv.iter().any(|n| n.as_str() <= "matter_kv_00ff"),
        "a fabric record is left: {kv:?}"
    );
    assert!(store.secret("matter_setup").unwrap().is_some());
    let lockdown = store
        .audit(50)
        .unwrap()
        .into_iter()
        .find(|e| e.event == "lockdown")
        .expect("the lockdown audited");
    assert!(
        lockdown.detail.contains("1 Matter controller removed"),
        "{}",
        lockdown.detail
    );
}
