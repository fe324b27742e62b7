//! A real Home Assistant (2026.2.3, installed by tests/ha/install-live) on
//! hearth, against the same Home Assistant on mosquitto carrying the same
//! topics and discovery configs, in the same run, inside a network
//! namespace of the benchmark's own.
//!
//! - state: a device publishes a new brightness on `hearth/<id>/state`; the
//!   clock stops at Home Assistant's `state_changed` event for its light
//!   (the event's `time_fired`, read over its websocket API by
//!   tests/ha/live.py). Same machine, same clock.
//! - burst: every device publishes a new brightness at once; the clock
//!   stops for each light at its own `state_changed` event. Several MQTT
//!   packets then travel together towards Home Assistant, whose client
//!   reads one packet per socket-readable event.
//! - start: the broker stopped, Home Assistant showing every light
//!   unavailable; the clock runs from the broker's start until Home
//!   Assistant shows every light available with its state again (the
//!   devices and Home Assistant reconnect by themselves).
//!
//! - cold: hearth and mosquitto running with every light online; the clock
//!   runs from the start of a fresh `hass` (a new configuration directory
//!   with only its MQTT entry) until it shows every light available with
//!   its state: Home Assistant's own start, its MQTT session, discovery and
//!   the retained states. The first start of each is a warm-up, not
//!   counted.
//!
//! Two Home Assistants run at once, one per broker; the measurements
//! alternate between them. Both brokers use hearth's certificate.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hearth::home::vendor::Profile;
use hearth::store::DeviceKind;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{Value, json};

use crate::start::{self, Mosquitto, Process};

const LIGHTS: usize = 5;
const CHANGES: usize = 50;
const BURSTS: usize = 20;
const HEARTH_PORT: u16 = 8883;
const MOSQUITTO_PORT: u16 = 8884;

fn root() -> PathBuf {
    std::env::var_os("HEARTH_HA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/hearth-tests"))
        .join("ha-2026-root")
}

fn driver_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ha/live.py")
}

/// A command in the Debian 13 root, with /dev and /proc mounted only for
/// it.
fn in_root(args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "root=$1; shift; mount --rbind /dev \"$root/dev\" && mount -t proc proc \"$root/proc\" && \
             exec chroot \"$root\" env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 \"$@\"",
        )
        .arg("sh")
        .arg(root())
        .args(args)
        .stdin(Stdio::null());
    cmd
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip");
    assert!(status.success(), "ip {args:?}");
}

struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// One Home Assistant, on one broker, and its driver.
struct Ha {
    hass: Child,
    driver: Child,
    to_driver: ChildStdin,
    from_driver: mpsc::Receiver<String>,
    dir: PathBuf,
}

impl Ha {
    fn start(name: &str, http_port: u16, broker_port: u16, user: &str, password: &str, ca: &Path) -> Ha {
        let inner = format!("/run/hearth-bench/{}-{name}", std::process::id());
        let dir = root().join(inner.trim_start_matches('/'));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(".storage")).unwrap();
        std::fs::write(
            dir.join("configuration.yaml"),
            format!(
                "homeassistant:\n  name: bench\n  latitude: 0\n  longitude: 0\n  elevation: 0\n  \
                 unit_system: metric\n  time_zone: UTC\n  currency: EUR\n  country: DE\n\
                 frontend:\nhttp:\n  server_port: {http_port}\n"
            ),
        )
        .unwrap();
        let entry = json!({
            "version": 1, "minor_version": 5, "key": "core.config_entries",
            "data": {"entries": [{
                "entry_id": "01hearthbenchentry0000000", "version": 2, "minor_version": 1,
                "domain": "mqtt", "title": name,
                "data": {"broker": "127.0.0.1", "port": broker_port, "username": user,
                         "password": password, "protocol": "3.1.1",
                         "certificate": std::fs::read_to_string(ca).unwrap()},
                "options": {"discovery": true, "discovery_prefix": "homeassistant",
                    "birth_message": {"topic": "homeassistant/status", "payload": "online", "qos": 0, "retain": false},
                    "will_message": {"topic": "homeassistant/status", "payload": "offline", "qos": 0, "retain": false}},
                "pref_disable_new_entities": false, "pref_disable_polling": false, "source": "user",
                "unique_id": null, "disabled_by": null,
                "created_at": "2026-01-01T00:00:00+00:00", "modified_at": "2026-01-01T00:00:00+00:00",
                "discovery_keys": {}, "subentries": []
            }]}
        });
        std::fs::write(dir.join(".storage/core.config_entries"), entry.to_string()).unwrap();
        std::fs::copy(driver_source(), dir.join("live.py")).expect("tests/ha/live.py");
        let out = std::fs::File::create(dir.join("hass.out")).unwrap();
        let hass = in_root(&["/opt/ha/bin/hass", "-c", &inner])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("hass");
        let url = format!("http://127.0.0.1:{http_port}");
        let mut driver = in_root(&["/opt/ha/bin/python", &format!("{inner}/live.py"), &url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("driver.err")).unwrap())
            .spawn()
            .expect("driver");
        let to_driver = driver.stdin.take().unwrap();
        let stdout = driver.stdout.take().unwrap();
        let (tx, from_driver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut ha = Ha {
            hass,
            driver,
            to_driver,
            from_driver,
            dir,
        };
        let r = ha.ask(json!({"op": "onboard", "timeout": 240}), 250.0);
        assert_eq!(r["ok"], true, "onboarding Home Assistant on {name}: {r}");
        ha
    }

    fn ask(&mut self, cmd: Value, limit: f64) -> Value {
        writeln!(self.to_driver, "{cmd}").unwrap();
        self.to_driver.flush().unwrap();
        let line = self
            .from_driver
            .recv_timeout(Duration::from_secs_f64(limit))
            .unwrap_or_else(|_| panic!("the driver did not answer {}", cmd["op"]));
        serde_json::from_str(&line).unwrap()
    }

    fn wait(&mut self, expect: Value, limit: f64) -> Value {
        self.ask(
            json!({"op": "wait", "expect": expect, "timeout": limit}),
            limit + 30.0,
        )
    }

    /// The light entity of each device id, in order.
    fn lights(&mut self, ids: &[String]) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let dump = self.ask(json!({"op": "dump"}), 40.0);
            let found: Vec<Option<String>> = ids
                .iter()
                .map(|id| {
                    dump["entities"].as_array().unwrap().iter().find_map(|e| {
                        let u = e["unique_id"].as_str().unwrap_or_default();
                        let entity = e["entity_id"].as_str().unwrap_or_default();
                        (u.contains(id.as_str()) && entity.starts_with("light.")).then(|| entity.to_owned())
                    })
                })
                .collect();
            if found.iter().all(Option::is_some) {
                return found.into_iter().map(Option::unwrap).collect();
            }
            assert!(
                Instant::now() < deadline,
                "Home Assistant did not discover every light"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        unsafe { libc::kill(self.hass.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.hass.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.hass.kill();
        let _ = self.hass.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A device that speaks hearth's canonical topics itself (a generic one):
/// at each connection it says it is online and publishes its state, both
/// retained, with `offline` as its last will.
struct Lamp {
    client: AsyncClient,
    state_topic: String,
    state: Arc<Mutex<String>>,
}

fn state(brightness: u64) -> String {
    json!({"state": "ON", "brightness": brightness, "color_temp": 370}).to_string()
}

impl Lamp {
    fn start(
        rt: &tokio::runtime::Runtime,
        id: &str,
        port: u16,
        user: &str,
        password: &str,
        client_id: &str,
        ca: &Path,
    ) -> Lamp {
        let avail = format!("hearth/{id}/availability");
        let state_topic = format!("hearth/{id}/state");
        let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_credentials(user, password);
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(start::mqtt_tls(ca))));
        opts.set_last_will(LastWill::new(&avail, "offline", QoS::AtLeastOnce, true));
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = AsyncClient::new(opts, 64);
        let now = Arc::new(Mutex::new(state(100)));
        let (c, s, t) = (client.clone(), now.clone(), state_topic.clone());
        rt.spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = c.try_publish(&avail, QoS::AtLeastOnce, true, "online");
                        let current = s.lock().unwrap().clone();
                        let _ = c.try_publish(&t, QoS::AtLeastOnce, true, current);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        Lamp {
            client,
            state_topic,
            state: now,
        }
    }

    fn set(&self, brightness: u64) {
        let s = state(brightness);
        *self.state.lock().unwrap() = s.clone();
        self.client
            .try_publish(&self.state_topic, QoS::AtLeastOnce, true, s)
            .expect("publish");
    }
}

fn spawn_hearth(hearth: &Path, dir: &Path) -> Process {
    start::hearth(
        hearth,
        dir,
        &format!(
            "[mqtt]\ntls_listen = [\"127.0.0.1:{HEARTH_PORT}\"]\nplain_listen = []\n[log]\nlevel = \"warn\"\n\
             [discovery]\nenabled = false\n[web]\nenabled = false\n"
        ),
    )
    .0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

pub fn run(hearth: &Path, rounds: usize) {
    if !root().join("opt/ha/.hearth-lock").exists() {
        println!("\n## ha-live: skipped, Home Assistant 2026 is not installed (run tests/ha/install-live)");
        return;
    }
    let hearth = std::fs::canonicalize(hearth).expect("the hearth binary");
    let ns = Namespace(format!("hearth-bench-ha-{}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
    ip(&["-n", &ns.0, "link", "set", "lo", "multicast", "on"]);
    ip(&["-n", &ns.0, "route", "add", "224.0.0.0/4", "dev", "lo"]);
    let path = format!("/run/netns/{}", ns.0);
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        assert_eq!(
            unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns"
        );
        in_namespace(&hearth, rounds);
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

fn in_namespace(hearth: &Path, rounds: usize) {
    println!(
        "\n## ha-live: Home Assistant 2026.2.3 on hearth and on mosquitto (same topics, same configs), \
         {LIGHTS} lights; {rounds} rounds of {CHANGES} state changes each, one broker restart and one fresh Home Assistant each"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut hearth_child = spawn_hearth(hearth, dir.path());
    let data = dir.path().join("data");
    let ca = data.join("ca.pem");
    let mut devices = Vec::new();
    for i in 0..LIGHTS {
        let p = start::add_device(
            &data,
            Profile::Generic,
            DeviceKind::Bulb,
            format!("lamp {i}"),
            None,
        );
        start::expose(&data, p["id"].as_str().unwrap(), None);
        devices.push(p);
    }
    let conn = start::homeassistant(&data);
    let ha_user = conn["mqtt"]["username"].as_str().unwrap().to_owned();
    let ha_password = conn["mqtt"]["password"].as_str().unwrap().to_owned();
    let ids: Vec<String> = devices
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();

    // mosquitto: hearth's certificate, a password per device and for Home
    // Assistant; no ACL (it carries only this benchmark's topics).
    let mdir = tempfile::tempdir().unwrap();
    let secret = |i: usize| format!("{:032x}", (i as u128 + 11) * 0x9e37_79b9_7f4a_7c15);
    let mut users = format!("ha:{}\n", secret(999));
    for i in 0..LIGHTS {
        users += &format!("lamp{i}:{}\n", secret(i));
    }
    let conf = Mosquitto {
        port: MOSQUITTO_PORT,
        users: &users,
        acl: None,
        limits: "",
        tuning: "set_tcp_nodelay true\n",
    }
    .write(mdir.path(), &data);
    let mut mosquitto = conf.start();

    // The same discovery configs on mosquitto: copied from hearth, as Home
    // Assistant's own session reads them there.
    let configs = rt.block_on(read_configs(&ha_user, &ha_password, &ca));
    assert_eq!(configs.len(), LIGHTS, "hearth's discovery configs");
    rt.block_on(write_configs(&configs, &secret(999), &ca));

    let on_hearth: Vec<Lamp> = devices
        .iter()
        .map(|p| {
            let m = &p["mqtt"];
            Lamp::start(
                &rt,
                p["id"].as_str().unwrap(),
                HEARTH_PORT,
                m["username"].as_str().unwrap(),
                m["password"].as_str().unwrap(),
                m["client_id"].as_str().unwrap(),
                &ca,
            )
        })
        .collect();
    let on_mosquitto: Vec<Lamp> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            Lamp::start(
                &rt,
                id,
                MOSQUITTO_PORT,
                &format!("lamp{i}"),
                &secret(i),
                &format!("lamp{i}"),
                &ca,
            )
        })
        .collect();

    let available = |lights: &[String]| -> Value {
        Value::Object(
            lights
                .iter()
                .map(|e| (e.clone(), json!({"not": ["unavailable", "unknown"]})))
                .collect(),
        )
    };
    let mut cold_s: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    // A fresh Home Assistant on broker `k`, timed from its start until it
    // shows every light available.
    let cold_start = |k: usize, cold_s: &mut [Vec<f64>; 2]| -> (Ha, Vec<String>) {
        let t0 = Instant::now();
        let mut ha = if k == 0 {
            Ha::start("hearth", 8123, HEARTH_PORT, &ha_user, &ha_password, &ca)
        } else {
            Ha::start("mosquitto", 8124, MOSQUITTO_PORT, "ha", &secret(999), &ca)
        };
        let lights = ha.lights(&ids);
        let r = ha.wait(available(&lights), 60.0);
        assert_eq!(
            r["ok"], true,
            "lights not available after Home Assistant's start: {r}"
        );
        cold_s[k].push(t0.elapsed().as_secs_f64());
        (ha, lights)
    };
    // The first start of each warms the page cache and Python's bytecode
    // cache for both (they share the installation): not counted.
    let mut warm_up: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let (mut ha_h, lights_h) = cold_start(0, &mut warm_up);
    let (mut ha_m, lights_m) = cold_start(1, &mut warm_up);
    println!(
        "first starts (not counted): hearth {:.1} s, mosquitto {:.1} s",
        warm_up[0][0], warm_up[1][0]
    );

    let mut state_ms: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut burst_ms: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut start_s: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut lost = [0usize; 2];
    let mut level = 0u64;
    for round in 0..rounds {
        for _ in 0..CHANGES {
            level = level % 250 + 1;
            for (k, (lamps, lights, ha)) in [
                (&on_hearth, &lights_h, &mut ha_h),
                (&on_mosquitto, &lights_m, &mut ha_m),
            ]
            .into_iter()
            .enumerate()
            {
                let i = level as usize % LIGHTS;
                let sent = epoch();
                lamps[i].set(level);
                let r = ha.wait(json!({&lights[i]: {"attributes": {"brightness": level}}}), 5.0);
                match r["changed"][&lights[i]].as_f64() {
                    Some(at) if r["ok"] == true => state_ms[k].push((at - sent) * 1e3),
                    _ => lost[k] += 1,
                }
            }
        }
        for _ in 0..BURSTS {
            level = level % 250 + 1;
            for (k, (lamps, lights, ha)) in [
                (&on_hearth, &lights_h, &mut ha_h),
                (&on_mosquitto, &lights_m, &mut ha_m),
            ]
            .into_iter()
            .enumerate()
            {
                let sent = epoch();
                for lamp in lamps {
                    lamp.set(level);
                }
                let want = Value::Object(
                    lights
                        .iter()
                        .map(|e| (e.clone(), json!({"attributes": {"brightness": level}})))
                        .collect(),
                );
                let r = ha.wait(want, 5.0);
                if r["ok"] != true {
                    lost[k] += 1;
                    continue;
                }
                for e in lights {
                    if let Some(at) = r["changed"][e].as_f64() {
                        burst_ms[k].push((at - sent) * 1e3);
                    }
                }
            }
        }
        // A broker restart: from its start until every light is back.
        for k in 0..2 {
            let (ha, lights) = if k == 0 {
                (&mut ha_h, &lights_h)
            } else {
                (&mut ha_m, &lights_m)
            };
            if k == 0 {
                hearth_child.stop();
            } else {
                mosquitto.stop();
            }
            let gone = Value::Object(
                lights
                    .iter()
                    .map(|e| (e.clone(), json!({"state": "unavailable"})))
                    .collect(),
            );
            let r = ha.wait(gone, 60.0);
            assert_eq!(
                r["ok"], true,
                "Home Assistant did not notice the broker stopping: {r}"
            );
            let t0 = Instant::now();
            if k == 0 {
                hearth_child = spawn_hearth(hearth, dir.path());
            } else {
                mosquitto = conf.start();
                // mosquitto keeps nothing across a restart: the configs come
                // back as an owner's tool would put them.
                rt.block_on(write_configs(&configs, &secret(999), &ca));
            }
            let r = ha.wait(available(lights), 120.0);
            if r["ok"] == true {
                start_s[k].push(t0.elapsed().as_secs_f64());
            } else {
                lost[k] += 1;
                println!(
                    "round {}: not every light came back after the restart: {}",
                    round + 1,
                    r["states"]
                );
            }
        }
        // A fresh Home Assistant on each, one at a time.
        drop(ha_h);
        ha_h = cold_start(0, &mut cold_s).0;
        drop(ha_m);
        ha_m = cold_start(1, &mut cold_s).0;
        let med = |v: &[f64]| {
            let mut s = v.to_vec();
            s.sort_by(f64::total_cmp);
            percentile(&s, 0.5)
        };
        println!(
            "round {}: state change median hearth {:.1} ms, mosquitto {:.1} ms; burst median hearth {:.1} ms, mosquitto {:.1} ms; \
             restart to available hearth {:.1} s, mosquitto {:.1} s; Home Assistant's start to available hearth {:.1} s, mosquitto {:.1} s",
            round + 1,
            med(&state_ms[0]),
            med(&state_ms[1]),
            med(&burst_ms[0]),
            med(&burst_ms[1]),
            start_s[0].last().copied().unwrap_or(f64::NAN),
            start_s[1].last().copied().unwrap_or(f64::NAN),
            cold_s[0].last().copied().unwrap_or(f64::NAN),
            cold_s[1].last().copied().unwrap_or(f64::NAN),
        );
    }
    println!("\nover {rounds} rounds                                  hearth   mosquitto");
    for (name, v, p) in [
        ("device state to Home Assistant state, p50 ms", &state_ms, 0.5),
        ("device state to Home Assistant state, p99 ms", &state_ms, 0.99),
        ("all lights at once, each light, p50 ms", &burst_ms, 0.5),
        ("all lights at once, each light, p99 ms", &burst_ms, 0.99),
        ("all lights at once, each light, max ms", &burst_ms, 1.0),
        ("broker start to every light available, p50 s", &start_s, 0.5),
        ("broker start to every light available, max s", &start_s, 1.0),
        (
            "Home Assistant's start to every light available, p50 s",
            &cold_s,
            0.5,
        ),
        (
            "Home Assistant's start to every light available, max s",
            &cold_s,
            1.0,
        ),
    ] {
        let of = |k: usize| {
            let mut s = v[k].clone();
            s.sort_by(f64::total_cmp);
            percentile(&s, p)
        };
        println!("{name:<48} {:>8.1} {:>11.1}", of(0), of(1));
    }
    println!(
        "changes, bursts or restarts Home Assistant did not show within their bound (5 s; 120 s): hearth {}, mosquitto {}",
        lost[0], lost[1]
    );
    drop(ha_h);
    drop(ha_m);
    hearth_child.stop();
    mosquitto.stop();
}

/// hearth's retained discovery configs, as Home Assistant's credential
/// reads them.
async fn read_configs(user: &str, password: &str, ca: &Path) -> Vec<(String, Vec<u8>)> {
    let mut opts = MqttOptions::new("bench-config-copy", "127.0.0.1", HEARTH_PORT);
    opts.set_credentials(user, password);
    opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(start::mqtt_tls(ca))));
    let (client, mut events) = AsyncClient::new(opts, 64);
    client
        .subscribe("homeassistant/+/+/config", QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .subscribe("homeassistant/+/+/+/config", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut configs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(ev) = tokio::time::timeout_at(deadline, events.poll()).await {
        if let Ok(Event::Incoming(Packet::Publish(p))) = ev
            && !p.payload.is_empty()
        {
            configs.push((p.topic.clone(), p.payload.to_vec()));
        }
    }
    let _ = client.disconnect().await;
    configs
}

async fn write_configs(configs: &[(String, Vec<u8>)], password: &str, ca: &Path) {
    let mut opts = MqttOptions::new("bench-config-write", "127.0.0.1", MOSQUITTO_PORT);
    opts.set_credentials("ha", password);
    opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(start::mqtt_tls(ca))));
    let (client, mut events) = AsyncClient::new(opts, 64);
    for (t, p) in configs {
        client
            .publish(t, QoS::AtLeastOnce, true, p.clone())
            .await
            .unwrap();
    }
    let mut acked = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while acked < configs.len() {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            _ => panic!("mosquitto did not take the configs"),
        }
    }
    let _ = client.disconnect().await;
}
