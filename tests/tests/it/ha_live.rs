//! Real Home Assistants against a running hearth: 2026.2.3 with device-based
//! and per-component discovery, 2024.3.3 with per-component discovery
//! (installed by tests/ha/install-live). Each `hass` runs in a network
//! namespace the test creates, with hearth and the simulated devices, and is
//! read over its own websocket API (tests/ha/live.py); nothing reaches a
//! network outside it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::discovery::Netns;
use crate::harness::{Daemon, Device, TestHome, signal, text, tool};

/// hearth inside the namespace: fixed ports, because Home Assistant's MQTT
/// entry names one and hearth restarts under it. The namespace is the
/// test's own, so they are free.
const CONFIG: &str = "[mqtt]\ntls_listen = [\"127.0.0.1:8883\"]\nplain_listen = [\"127.0.0.1:1883\"]\n\
[discovery]\nenabled = false\n[web]\nlisten = [\"127.0.0.1:8443\"]\n";

/// How long Home Assistant may take to show a state the device has
/// reported.
const SHOWN_WITHIN: f64 = 1.0;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Version {
    /// 2026.2.3 on Python 3.13, in a Debian 13 root.
    Current,
    /// 2024.3.3 on the host's Python 3.11; per-component discovery only.
    Old,
}

fn cache() -> PathBuf {
    std::env::var_os("HEARTH_HA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/hearth-tests"))
}

fn root() -> PathBuf {
    cache().join("ha-2026-root")
}

fn venv_2024() -> PathBuf {
    cache().join("ha-2024-venv")
}

fn ha_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ha")
}

/// Asserts that install-live installed exactly what the lock file pins: a
/// stale Home Assistant would test something other than what is written
/// down.
fn installed(version: Version) {
    let (lock, stamp) = match version {
        Version::Current => ("live-2026.lock", root().join("opt/ha/.hearth-lock")),
        Version::Old => ("live-2024.lock", venv_2024().join(".hearth-lock")),
    };
    let pinned = std::fs::read(ha_dir().join(lock)).expect("lock file");
    let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, &pinned));
    let stamp = std::fs::read_to_string(&stamp).unwrap_or_default();
    assert!(
        stamp.trim_end().ends_with(&digest),
        "Home Assistant ({version:?}) is not installed as tests/ha/{lock} pins: run tests/ha/install-live (scripts/test-all does)"
    );
}

/// A command run in the Debian 13 root, with /dev and /proc mounted in a
/// mount namespace of its own (nothing stays mounted after it), and a clean
/// environment.
fn in_root(args: &[&str]) -> Command {
    let mut cmd = tool("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "root=$1; shift; mount --rbind /dev \"$root/dev\" && mount -t proc proc \"$root/proc\" && \
             exec chroot \"$root\" env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 \"$@\"",
        )
        .arg("sh")
        .arg(root())
        .args(args);
    cmd
}

/// A namespace with loopback up and multicast routed to it, where Home
/// Assistant's zeroconf (which its analytics and HTTP client need) can
/// start.
fn namespace() -> Netns {
    let ns = Netns::new();
    let out = crate::harness::run(
        tool("ip").args(["-n", ns.name(), "route", "add", "224.0.0.0/4", "dev", "lo"]),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "route: {}", text(&out.stderr));
    ns
}

/// A running `hass` and the driver that reads it. Stops both and removes
/// Home Assistant's config directory on drop.
pub struct HomeAssistant {
    version: Version,
    hass: Option<Child>,
    driver: Option<Child>,
    to_driver: Option<ChildStdin>,
    from_driver: mpsc::Receiver<String>,
    /// The config directory, as this process sees it.
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// What `integrations homeassistant enable` printed, turned into the MQTT
/// entry Home Assistant's config flow would have stored.
fn mqtt_entry(version: Version, conn: &Value) -> Value {
    let m = &conn["mqtt"];
    let pem = std::fs::read_to_string(m["ca_cert"].as_str().expect("ca_cert")).expect("CA");
    let broker = json!({
        // The address hearth listens on in the namespace; what hearth
        // prints as its host is checked on its own, at the end.
        "broker": "127.0.0.1",
        "port": m["port"],
        "username": m["username"],
        "password": m["password"],
        "protocol": "3.1.1",
        "certificate": pem,
    });
    let options = json!({
        "discovery": true,
        "discovery_prefix": conn["discovery_prefix"],
        "birth_message": {"topic": "homeassistant/status", "payload": "online", "qos": 0, "retain": false},
        "will_message": {"topic": "homeassistant/status", "payload": "offline", "qos": 0, "retain": false},
    });
    let mut entry = json!({
        "entry_id": "01hearthmqttentry00000000",
        "domain": "mqtt",
        "title": "hearth",
        "pref_disable_new_entities": false,
        "pref_disable_polling": false,
        "source": "user",
        "unique_id": null,
        "disabled_by": null,
    });
    let storage_minor = match version {
        // Since 2024.12 the entry is version 2.1, with the discovery and
        // birth settings in its options (storage minor version 5).
        Version::Current => {
            entry["version"] = 2.into();
            entry["minor_version"] = 1.into();
            entry["data"] = broker;
            entry["options"] = options;
            entry["created_at"] = "2026-01-01T00:00:00+00:00".into();
            entry["modified_at"] = "2026-01-01T00:00:00+00:00".into();
            entry["discovery_keys"] = json!({});
            entry["subentries"] = json!([]);
            5
        }
        // Before, everything was in its data.
        Version::Old => {
            let mut data = broker;
            for (k, v) in options.as_object().unwrap() {
                data[k] = v.clone();
            }
            entry["version"] = 1.into();
            entry["minor_version"] = 1.into();
            entry["data"] = data;
            entry["options"] = json!({});
            1
        }
    };
    json!({
        "version": 1,
        "minor_version": storage_minor,
        "key": "core.config_entries",
        "data": {"entries": [entry]},
    })
}

const CONFIGURATION_YAML: &str = "homeassistant:\n  name: hearth test\n  latitude: 0\n  longitude: 0\n  \
elevation: 0\n  unit_system: metric\n  time_zone: UTC\n  currency: EUR\n  country: DE\n\
frontend:\nhttp:\n  server_port: 8123\n";

impl HomeAssistant {
    /// Starts `hass` on a fresh config directory with hearth's MQTT entry
    /// already in it, and onboards it. Must run inside the test's namespace.
    pub fn start(version: Version, conn: &Value, name: &str) -> HomeAssistant {
        installed(version);
        let (dir, inner, tmp) = match version {
            Version::Current => {
                let inner = format!("/run/hearth-ha/{name}");
                let dir = root().join(inner.trim_start_matches('/'));
                let _ = std::fs::remove_dir_all(&dir);
                (dir, inner, None)
            }
            Version::Old => {
                let tmp = tempfile::tempdir().expect("tempdir");
                let dir = tmp.path().join("config");
                let inner = dir.display().to_string();
                (dir, inner, Some(tmp))
            }
        };
        std::fs::create_dir_all(dir.join(".storage")).expect("config dir");
        std::fs::write(dir.join("configuration.yaml"), CONFIGURATION_YAML).expect("configuration.yaml");
        std::fs::write(
            dir.join(".storage/core.config_entries"),
            serde_json::to_vec_pretty(&mqtt_entry(version, conn)).unwrap(),
        )
        .expect("config entries");
        let url = "http://127.0.0.1:8123";
        let (mut hass, mut driver) = match version {
            Version::Current => {
                std::fs::copy(ha_dir().join("live.py"), dir.join("live.py")).expect("driver");
                let script = format!("{inner}/live.py");
                (
                    in_root(&["/opt/ha/bin/hass", "-c", &inner]),
                    in_root(&["/opt/ha/bin/python", &script, url]),
                )
            }
            Version::Old => {
                let mut hass = Command::new(venv_2024().join("bin/hass"));
                hass.arg("-c").arg(&dir);
                let mut driver = Command::new(venv_2024().join("bin/python"));
                driver.arg(ha_dir().join("live.py")).arg(url);
                (hass, driver)
            }
        };
        let out = std::fs::File::create(dir.join("hass.out")).expect("hass.out");
        let hass = hass
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start hass");
        let err = std::fs::File::create(dir.join("driver.err")).expect("driver.err");
        let mut driver = driver
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("start the driver");
        let to_driver = driver.stdin.take();
        let stdout = driver.stdout.take().unwrap();
        let (tx, from_driver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut ha = HomeAssistant {
            version,
            hass: Some(hass),
            driver: Some(driver),
            to_driver,
            from_driver,
            dir,
            _tmp: tmp,
        };
        let r = ha.ask(json!({"op": "onboard", "timeout": 240}), Duration::from_secs(250));
        assert_eq!(r["ok"], true, "onboarding {version:?}: {r}\n{}", ha.tail());
        ha
    }

    /// One command to the driver, and its answer.
    fn ask(&mut self, cmd: Value, limit: Duration) -> Value {
        let stdin = self.to_driver.as_mut().expect("driver");
        writeln!(stdin, "{cmd}").expect("to the driver");
        stdin.flush().unwrap();
        match self.from_driver.recv_timeout(limit) {
            Ok(line) => serde_json::from_str(&line).expect("driver json"),
            Err(_) => panic!(
                "the driver did not answer {} within {limit:?}: {}\n{}",
                cmd["op"],
                std::fs::read_to_string(self.dir.join("driver.err")).unwrap_or_default(),
                self.tail()
            ),
        }
    }

    /// Registries and states.
    fn dump(&mut self) -> Value {
        let r = self.ask(json!({"op": "dump"}), Duration::from_secs(40));
        assert_eq!(r["ok"], true, "dump: {r}");
        r
    }

    fn call(&mut self, domain: &str, service: &str, entities: &[&str], data: Value) {
        let r = self.ask(
            json!({"op": "call", "domain": domain, "service": service,
                   "target": {"entity_id": entities}, "data": data}),
            Duration::from_secs(40),
        );
        assert_eq!(r["ok"], true, "{domain}.{service} on {entities:?}: {r}");
    }

    /// Waits until every entity matches, up to `limit` seconds; the answer
    /// says how long it took, or what the states were.
    fn wait(&mut self, expect: Value, limit: f64) -> Value {
        self.ask(
            json!({"op": "wait", "expect": expect, "timeout": limit}),
            Duration::from_secs_f64(limit + 30.0),
        )
    }

    /// Home Assistant's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("home-assistant.log")).unwrap_or_default()
    }

    /// The end of Home Assistant's output, for a failure message.
    fn tail(&self) -> String {
        let out = std::fs::read_to_string(self.dir.join("hass.out")).unwrap_or_default();
        let start = out.len().saturating_sub(3000);
        let start = (start..out.len()).find(|&i| out.is_char_boundary(i)).unwrap_or(0);
        format!("hass output ends with:\n{}", &out[start..])
    }
}

impl Drop for HomeAssistant {
    fn drop(&mut self) {
        drop(self.to_driver.take());
        if let Some(mut d) = self.driver.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        if let Some(mut hass) = self.hass.take() {
            // SIGTERM lets it close its files; it is killed if it lingers.
            signal(&hass, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while hass.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = hass.kill();
            let _ = hass.wait();
        }
        if self.version == Version::Current {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// WARNING or worse from Home Assistant's MQTT integration or its templates,
/// or about a topic of hearth's, each with the last line of its traceback.
pub fn log_problems(log: &str) -> Vec<String> {
    let lines: Vec<&str> = log.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let mut parts = line.splitn(4, ' ');
        let (Some(_date), Some(_time), Some(level), Some(rest)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !["WARNING", "ERROR", "CRITICAL"].contains(&level) {
            continue;
        }
        let ours = rest.contains("[homeassistant.components.mqtt")
            || rest.contains("[homeassistant.helpers.template")
            || rest.contains("hearth/")
            || rest.contains("homeassistant/");
        if !ours {
            continue;
        }
        // A traceback follows its line, up to the next dated line.
        let last = lines[i + 1..]
            .iter()
            .take_while(|l| !l.starts_with("20"))
            .filter(|l| !l.trim().is_empty())
            .last();
        let mut entry: String = line.chars().take(400).collect();
        if let Some(last) = last {
            entry.push_str(" … ");
            entry.extend(last.chars().take(200));
        }
        found.push(entry);
    }
    found
}

/// Every check that failed against one Home Assistant. A failed check does
/// not stop the story: the later steps still run, so one run shows every
/// defect (the test fails at the end if there was any).
struct Verdict {
    version: Version,
    mode: &'static str,
    failures: Vec<String>,
    /// How much of Home Assistant's log earlier checks have read.
    log_read: usize,
}

impl Verdict {
    fn fail(&mut self, what: String) {
        eprintln!("ha_live {:?} {}: FAILED: {what}", self.version, self.mode);
        self.failures.push(what);
    }

    /// No WARNING or ERROR of the MQTT integration or templates since the
    /// last check.
    fn log_clean(&mut self, ha: &HomeAssistant, when: &str) {
        self.log_clean_but(ha, when, &[]);
    }

    /// The same, but for lines containing one of `expected`: what the step
    /// itself makes any Home Assistant log, whatever the broker.
    fn log_clean_but(&mut self, ha: &HomeAssistant, when: &str, expected: &[&str]) {
        let log = ha.log();
        let new = log.get(self.log_read..).unwrap_or_default();
        let mut problems = log_problems(new);
        problems.retain(|p| !expected.iter().any(|e| p.contains(e)));
        self.log_read = log.len();
        if !problems.is_empty() {
            self.fail(format!("Home Assistant logged, {when}:\n{}", problems.join("\n")));
        }
    }

    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "Home Assistant {:?} with {} discovery:\n\n{}",
            self.version,
            self.mode,
            self.failures.join("\n\n")
        );
    }
}

/// One exposed device and the entity platforms Home Assistant must show
/// for it.
struct Exposed {
    device: Device,
    nickname: &'static str,
    platforms: &'static [&'static str],
}

/// The MQTT entities of the device with hearth's id `id`: (entity_id,
/// platform), sorted by platform.
fn entities_of(dump: &Value, id: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = dump["entities"]
        .as_array()
        .expect("entity registry")
        .iter()
        .filter(|e| e["platform"] == "mqtt")
        .filter(|e| e["unique_id"].as_str().is_some_and(|u| u.contains(id)))
        .map(|e| {
            let entity = e["entity_id"].as_str().unwrap().to_owned();
            let platform = entity.split('.').next().unwrap().to_owned();
            (entity, platform)
        })
        .collect();
    found.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    found
}

/// Home Assistant's device for hearth's id `id`.
fn device_of<'a>(dump: &'a Value, id: &str) -> Option<&'a Value> {
    dump["devices"]
        .as_array()
        .expect("device registry")
        .iter()
        .find(|d| {
            d["identifiers"].as_array().is_some_and(|ids| {
                ids.iter()
                    .any(|pair| pair[1].as_str().is_some_and(|s| s.contains(id)))
            })
        })
}

/// Everything wrong with what Home Assistant shows: each exposed device
/// with its name and exactly its entities, each entity online and with a
/// known state, lights with colour temperature; nothing of `gone`.
fn problems(dump: &Value, exposed: &[&Exposed], gone: &[&Device]) -> Vec<String> {
    let mut wrong = Vec::new();
    let states = &dump["states"];
    for x in exposed {
        let id = x.device.id();
        match device_of(dump, id) {
            None => wrong.push(format!("{}: no device", x.nickname)),
            Some(d) if d["name"] != x.nickname => {
                wrong.push(format!("{}: device named {}", x.nickname, d["name"]))
            }
            Some(_) => {}
        }
        let entities = entities_of(dump, id);
        let platforms: Vec<&str> = entities.iter().map(|(_, p)| p.as_str()).collect();
        if platforms != x.platforms {
            wrong.push(format!(
                "{}: entities {platforms:?}, not {:?}",
                x.nickname, x.platforms
            ));
        }
        for (entity, platform) in &entities {
            let s = &states[entity];
            match s["state"].as_str() {
                None => wrong.push(format!("{}: {entity} has no state", x.nickname)),
                Some(st @ ("unavailable" | "unknown")) => {
                    wrong.push(format!("{}: {entity} is {st}", x.nickname))
                }
                Some(_) => {}
            }
            if platform == "light"
                && !s["attributes"]["supported_color_modes"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m == "color_temp"))
            {
                wrong.push(format!(
                    "{}: {entity} has no colour temperature ({})",
                    x.nickname, s["attributes"]["supported_color_modes"]
                ));
            }
        }
    }
    for d in gone {
        if !entities_of(dump, d.id()).is_empty() || device_of(dump, d.id()).is_some() {
            wrong.push(format!("{}: still in Home Assistant", d.id()));
        }
    }
    // No entity of hearth's that belongs to no device the test knows.
    let known: Vec<&str> = exposed.iter().map(|x| x.device.id()).collect();
    for e in dump["entities"].as_array().unwrap() {
        let u = e["unique_id"].as_str().unwrap_or_default();
        if e["platform"] == "mqtt"
            && !known.iter().any(|id| u.contains(id))
            && !gone.iter().any(|d| u.contains(d.id()))
        {
            wrong.push(format!("stray entity {} ({u})", e["entity_id"]));
        }
    }
    wrong
}

/// Polls until Home Assistant shows every exposed device right, within
/// `limit`; returns the registries and states as they last were.
fn settle(
    v: &mut Verdict,
    ha: &mut HomeAssistant,
    exposed: &[&Exposed],
    gone: &[&Device],
    limit: Duration,
    when: &str,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let dump = ha.dump();
        let wrong = problems(&dump, exposed, gone);
        if wrong.is_empty() {
            return dump;
        }
        if Instant::now() >= deadline {
            v.fail(format!("{when}, after {limit:?}:\n{}", wrong.join("\n")));
            return dump;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// [`settle`] (nothing gone) within `limit` of `when`, and still right
/// `later` on, with a second to spare: late messages (a retained state, a
/// device's next report) must not spoil it either.
fn settle_and_stay(
    v: &mut Verdict,
    ha: &mut HomeAssistant,
    exposed: &[&Exposed],
    limit: Duration,
    later: Duration,
    when: &str,
) {
    settle(v, ha, exposed, &[], limit, &format!("after {when}"));
    std::thread::sleep(later);
    settle(
        v,
        ha,
        exposed,
        &[],
        Duration::from_secs(1),
        &format!("{} s after {when}", later.as_secs()),
    );
}

/// The one entity of `platform` that Home Assistant has for `device`.
fn entity(dump: &Value, device: &Device, platform: &str) -> String {
    let all = entities_of(dump, device.id());
    let mut of: Vec<&(String, String)> = all.iter().filter(|(_, p)| p == platform).collect();
    assert_eq!(of.len(), 1, "{platform} of {}: {all:?}", device.id());
    of.pop().unwrap().0.clone()
}

/// A simulated device's reports, as lines.
struct Sim {
    lines: mpsc::Receiver<String>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Sim {
    fn start(rt: &tokio::runtime::Runtime, d: &Device) -> Sim {
        let (tx, lines) = mpsc::channel();
        let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
        let p = d.0.clone();
        rt.spawn(async move {
            let stop = async {
                let _ = stop.await;
            };
            hearth::sim::device(p, "127.0.0.1".into(), stop, move |line| {
                let _ = tx.send(line.to_owned());
            })
            .await;
        });
        Sim {
            lines,
            _stop: stop_tx,
        }
    }

    /// Waits for the device to say `want`.
    fn said(&self, v: &mut Verdict, name: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut heard = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l == want => return,
                Ok(l) => heard.push(l),
                Err(_) => {
                    return v.fail(format!(
                        "{name} never said {want:?} within 15 s; it said {heard:?}"
                    ));
                }
            }
        }
    }

    /// Forgets what the device said so far.
    fn drain(&self) {
        while self.lines.try_recv().is_ok() {}
    }
}

fn set_discovery(daemon: &Daemon, mode: &str) {
    let out = daemon.cli(&["integrations", "homeassistant", "set", "--discovery", mode]);
    assert!(
        out.status.success(),
        "set --discovery {mode}: {}",
        text(&out.stderr)
    );
}

/// Checks that Home Assistant showed `expect` within a second of the
/// device changing.
fn shown(v: &mut Verdict, ha: &mut HomeAssistant, expect: Value, what: &str) {
    let r = ha.wait(expect, SHOWN_WITHIN);
    if r["ok"] != true {
        v.fail(format!(
            "did not show {what} within {SHOWN_WITHIN} s of the device changing; it shows {}",
            r["states"]
        ));
    }
}

/// Home Assistants run one at a time: each takes a core while it starts,
/// and the one-second bounds are about hearth, not about the machine.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The whole story against one Home Assistant: discovery of every kind of
/// device, states, control, un-expose and re-expose, a hearth restart and a
/// live switch of discovery mode.
fn live(version: Version, mode: &'static str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    installed(version);
    let ns = namespace();
    let name = ns.name().to_owned();
    ns.enter(move || live_in_namespace(version, mode, &name));
}

fn live_in_namespace(version: Version, mode: &'static str, ns: &str) {
    let home = TestHome::new();
    let mut daemon = Daemon::start_in_raw(home, CONFIG);
    let exposed = [
        Exposed {
            device: daemon.add_device("generic", "bulb", "Hall lamp", "Hall"),
            nickname: "Hall lamp",
            platforms: &["light"],
        },
        Exposed {
            device: daemon.add_device("tasmota", "bulb", "Desk lamp", "Hall"),
            nickname: "Desk lamp",
            platforms: &["light"],
        },
        Exposed {
            device: daemon.add_device("esphome", "light_strip", "Shelf strip", "Hall"),
            nickname: "Shelf strip",
            platforms: &["light"],
        },
        Exposed {
            device: daemon.add_device("shelly", "plug", "Kettle", "Hall"),
            nickname: "Kettle",
            platforms: &["switch"],
        },
        Exposed {
            device: daemon.add_device("generic", "camera", "Porch camera", "Hall"),
            nickname: "Porch camera",
            platforms: &["binary_sensor", "camera"],
        },
        Exposed {
            device: daemon.add_device("generic", "doorbell", "Front door", "Hall"),
            nickname: "Front door",
            platforms: &["binary_sensor", "binary_sensor", "camera"],
        },
    ];
    let [lamp, desk, strip, plug, _camera, _bell] = &exposed;
    for x in &exposed {
        daemon.expose_to_homeassistant(&x.device, true);
    }
    set_discovery(&daemon, mode);
    let conn = daemon.cli_json(&["integrations", "homeassistant", "enable"]);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sims: Vec<Sim> = exposed.iter().map(|x| Sim::start(&rt, &x.device)).collect();
    let mut v = Verdict {
        version,
        mode,
        failures: Vec::new(),
        log_read: 0,
    };
    for (s, x) in sims.iter().zip(&exposed) {
        s.said(&mut v, x.nickname, "connected");
    }
    let [lamp_sim, desk_sim, strip_sim, plug_sim, _camera_sim, _bell_sim] = &sims[..] else {
        unreachable!()
    };

    let mut ha = HomeAssistant::start(version, &conn, ns);
    let all: Vec<&Exposed> = exposed.iter().collect();
    // The cameras report motion 2 to 5 s after connecting; by then every
    // device has reported.
    let dump = settle(
        &mut v,
        &mut ha,
        &all,
        &[],
        Duration::from_secs(60),
        "after it started",
    );
    v.log_clean(&ha, "after it started");

    // Control: each call reaches the simulated device, and Home Assistant
    // shows what the device then reported within a second.
    let light = |d: &Exposed| entity(&dump, &d.device, "light");
    let (lamp_e, desk_e, strip_e) = (light(lamp), light(desk), light(strip));
    let plug_e = entity(&dump, &plug.device, "switch");
    ha.call(
        "light",
        "turn_on",
        &[&lamp_e],
        json!({"brightness": 128, "color_temp_kelvin": 3000}),
    );
    lamp_sim.said(&mut v, "Hall lamp", "brightness 50");
    lamp_sim.said(&mut v, "Hall lamp", "color_temp 333");
    shown(
        &mut v,
        &mut ha,
        json!({&lamp_e: {"state": "on", "attributes": {"brightness": 128, "color_mode": "color_temp"}}}),
        "the Hall lamp on at 128 and 3000 K",
    );
    let kelvin = ha.dump()["states"][&lamp_e]["attributes"]["color_temp_kelvin"].as_f64();
    if !kelvin.is_some_and(|k| (2990.0..=3010.0).contains(&k)) {
        v.fail(format!(
            "the Hall lamp's colour temperature shows as {kelvin:?} K, not 3000"
        ));
    }

    let lights = [lamp_e.as_str(), desk_e.as_str(), strip_e.as_str()];
    let light_sims = [
        (lamp_sim, "Hall lamp"),
        (desk_sim, "Desk lamp"),
        (strip_sim, "Shelf strip"),
    ];
    let every = |want: Value| -> Value {
        Value::Object(lights.iter().map(|e| (e.to_string(), want.clone())).collect())
    };
    ha.call("light", "turn_on", &lights, json!({"brightness": 255}));
    for (s, name) in light_sims {
        s.said(&mut v, name, "state ON");
    }
    shown(
        &mut v,
        &mut ha,
        every(json!({"state": "on", "attributes": {"brightness": 255}})),
        "every light on at full brightness",
    );
    for (s, _) in light_sims {
        s.drain();
    }
    ha.call("light", "turn_off", &lights, json!({}));
    for (s, name) in light_sims {
        s.said(&mut v, name, "state OFF");
    }
    shown(&mut v, &mut ha, every(json!({"state": "off"})), "every light off");
    ha.call("switch", "turn_on", &[&plug_e], json!({}));
    plug_sim.said(&mut v, "Kettle", "state ON");
    shown(&mut v, &mut ha, json!({&plug_e: {"state": "on"}}), "the plug on");
    v.log_clean(&ha, "during the service calls");

    // Un-expose: the plug leaves Home Assistant, device and entity; back
    // again, it is online with its state.
    let rest: Vec<&Exposed> = exposed.iter().filter(|x| x.nickname != "Kettle").collect();
    daemon.expose_to_homeassistant(&plug.device, false);
    settle(
        &mut v,
        &mut ha,
        &rest,
        &[&plug.device],
        Duration::from_secs(5),
        "after un-exposing the plug",
    );
    daemon.expose_to_homeassistant(&plug.device, true);
    let dump = settle(
        &mut v,
        &mut ha,
        &all,
        &[],
        Duration::from_secs(5),
        "after exposing the plug again",
    );
    if dump["states"][&plug_e]["state"] != "on" {
        v.fail(format!(
            "the plug shows {} after exposing it again, not on",
            dump["states"][&plug_e]["state"]
        ));
    }
    v.log_clean(&ha, "while un-exposing and exposing the plug");

    // A hearth restart: Home Assistant and the devices reconnect by
    // themselves, and every entity comes back right.
    let home = daemon.stop_keeping_home();
    daemon = Daemon::start_in_raw(home, CONFIG);
    for (s, x) in sims.iter().zip(&exposed) {
        s.said(&mut v, x.nickname, "connected");
    }
    settle_and_stay(
        &mut v,
        &mut ha,
        &all,
        Duration::from_secs(60),
        Duration::from_secs(5),
        "hearth restarted",
    );
    // Home Assistant's client warns when its broker goes away, which a
    // restart does, on mosquitto too.
    v.log_clean_but(
        &ha,
        "after hearth restarted",
        &[
            "[homeassistant.components.mqtt.client] Disconnected from MQTT server",
            "[homeassistant.components.mqtt.client] Error returned from MQTT server: The connection was lost.",
        ],
    );

    // A live switch of discovery mode. Home Assistant 2024.3 understands
    // only per-component configs, so it goes to device-based discovery and
    // back; the current one stays in the other mode.
    let other = if mode == "device" { "component" } else { "device" };
    // What Home Assistant 2024.3 says of every message on a device-based
    // discovery topic, a config or the empty one that clears it.
    let unsupported = "[homeassistant.components.mqtt.discovery] Integration device is not supported";
    set_discovery(&daemon, other);
    if version == Version::Old {
        let gone: Vec<&Device> = exposed.iter().map(|x| &x.device).collect();
        settle(
            &mut v,
            &mut ha,
            &[],
            &gone,
            Duration::from_secs(10),
            "after switching to device-based discovery, which it does not know",
        );
        // It warns about each device config it cannot read, rightly; the
        // configs may come after the entities went, so wait for one
        // warning a device.
        let deadline = Instant::now() + Duration::from_secs(10);
        while ha
            .log()
            .get(v.log_read..)
            .unwrap_or_default()
            .matches(unsupported)
            .count()
            < exposed.len()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        v.log_clean_but(&ha, "while in device-based discovery", &[unsupported]);
        set_discovery(&daemon, mode);
    }
    settle_and_stay(
        &mut v,
        &mut ha,
        &all,
        Duration::from_secs(10),
        Duration::from_secs(3),
        "switching discovery mode live",
    );
    // Back in per-component discovery, hearth clears the device configs,
    // and 2024.3 warns of each once more.
    let expected: &[&str] = if version == Version::Old {
        &[unsupported]
    } else {
        &[]
    };
    v.log_clean_but(&ha, "after switching discovery mode live", expected);

    // What hearth printed as the broker must be an address its listener
    // and certificate serve: here, 127.0.0.1.
    if conn["mqtt"]["host"] != "127.0.0.1" {
        v.fail(format!(
            "`integrations homeassistant enable` printed the broker as {}, but it listens on 127.0.0.1 only",
            conn["mqtt"]["host"]
        ));
    }
    drop(ha);
    drop(daemon);
    v.finish();
}

#[test]
fn home_assistant_2026_device_discovery() {
    live(Version::Current, "device");
}

#[test]
fn home_assistant_2026_component_discovery() {
    live(Version::Current, "component");
}

#[test]
fn home_assistant_2024_legacy_discovery() {
    live(Version::Old, "legacy");
}
