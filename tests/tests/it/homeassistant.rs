//! Home Assistant over hearth's broker: a real MQTT client (rumqttc) plays
//! Home Assistant with the `homeassistant` credential the CLI issues, while
//! simulated devices speak their vendors' schemes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, SubscribeReasonCode, Transport};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::harness::{Daemon, Device, start_device, text};
use crate::mqtt;

const LIMIT: Duration = Duration::from_secs(15);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What Home Assistant's side hears.
enum Heard {
    Message(String, Vec<u8>, bool),
    SubAck(Vec<SubscribeReasonCode>),
    Closed,
}

/// Home Assistant: connected with the issued credential, a random client id
/// and its will on `homeassistant/status`.
struct Ha {
    client: AsyncClient,
    heard: mpsc::UnboundedReceiver<Heard>,
    /// Retained or live messages by topic, newest last.
    seen: HashMap<String, Vec<Vec<u8>>>,
    /// Whether the newest message on each topic came as retained.
    retained: HashMap<String, bool>,
}

fn ha_options(daemon: &Daemon, conn: &Value, client_id: &str) -> MqttOptions {
    let m = &conn["mqtt"];
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", daemon.tls_port());
    opts.set_credentials(m["username"].as_str().unwrap(), m["password"].as_str().unwrap());
    opts.set_transport(Transport::Tls(rumqttc::TlsConfiguration::Rustls(
        mqtt::client_tls(daemon),
    )));
    opts.set_last_will(LastWill::new(
        "homeassistant/status",
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    opts.set_keep_alive(Duration::from_secs(30));
    opts
}

impl Ha {
    async fn connect(daemon: &Daemon, conn: &Value, client_id: &str) -> Ha {
        let (client, mut events) = AsyncClient::new(ha_options(daemon, conn, client_id), 256);
        let code = mqtt::connack(&mut events).await.expect("connect");
        assert_eq!(
            code,
            rumqttc::ConnectReturnCode::Success,
            "Home Assistant's CONNACK"
        );
        let (tx, heard) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let h = match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        Heard::Message(p.topic.clone(), p.payload.to_vec(), p.retain)
                    }
                    Ok(Event::Incoming(Packet::SubAck(a))) => Heard::SubAck(a.return_codes),
                    Ok(_) => continue,
                    Err(_) => {
                        let _ = tx.send(Heard::Closed);
                        return;
                    }
                };
                if tx.send(h).is_err() {
                    return;
                }
            }
        });
        Ha {
            client,
            heard,
            seen: HashMap::new(),
            retained: HashMap::new(),
        }
    }

    async fn next(&mut self, deadline: Instant) -> Option<Heard> {
        let left = deadline.saturating_duration_since(Instant::now());
        let h = tokio::time::timeout(left, self.heard.recv()).await.ok()??;
        if let Heard::Message(t, p, retain) = &h {
            self.seen.entry(t.clone()).or_default().push(p.clone());
            self.retained.insert(t.clone(), *retain);
        }
        Some(h)
    }

    /// Subscribes and returns the broker's answer.
    async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let deadline = Instant::now() + LIMIT;
        loop {
            match self.next(deadline).await {
                Some(Heard::SubAck(codes)) => return codes[0],
                Some(Heard::Closed) => panic!("closed while subscribing to {filter}"),
                Some(_) => {}
                None => panic!("no SUBACK for {filter}"),
            }
        }
    }

    /// Waits for a message on `topic` that `want` accepts; returns it.
    async fn until(&mut self, what: &str, topic: &str, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        if let Some(p) = self.seen.get(topic).and_then(|v| v.last())
            && want(p)
        {
            return p.clone();
        }
        let deadline = Instant::now() + LIMIT;
        loop {
            match self.next(deadline).await {
                Some(Heard::Message(t, p, _)) if t == topic && want(&p) => return p,
                Some(Heard::Closed) => panic!("closed while waiting for {what}"),
                Some(_) => {}
                None => panic!(
                    "no {what} on {topic} within {LIMIT:?}; last there: {:?}",
                    self.seen
                        .get(topic)
                        .and_then(|v| v.last())
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                ),
            }
        }
    }

    /// Home Assistant's command to `d`: a QoS 1 publish on its `set` topic.
    async fn command(&self, d: &Device, payload: &str) {
        self.client
            .publish(format!("hearth/{}/set", d.id()), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    /// Waits for the session to end.
    async fn closed(&mut self) {
        let deadline = Instant::now() + LIMIT;
        loop {
            match self.next(deadline).await {
                Some(Heard::Closed) => return,
                Some(_) => {}
                None => panic!("the session was not cut"),
            }
        }
    }
}

fn json(p: &[u8]) -> Value {
    serde_json::from_slice(p).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(p)))
}

/// A canonical topic of a device: `hearth/<32 hex>/<leaf>`.
fn canonical(topic: &Value, id: &str, leaf: &str) {
    let t = topic.as_str().unwrap_or_else(|| panic!("{leaf} topic missing"));
    assert_eq!(t, format!("hearth/{id}/{leaf}"));
}

/// Checks a device-based discovery config against Home Assistant's
/// documented schema: `dev` with identifiers and a name, `o` with a name,
/// `cmps` whose every entry has a known platform `p` and a `unique_id`,
/// and topics in the canonical pattern.
fn check_device_config(v: &Value, id: &str, nickname: &str) -> Vec<String> {
    let dev = &v["dev"];
    assert!(dev["ids"].as_array().is_some_and(|a| !a.is_empty()), "{v}");
    assert_eq!(dev["name"], nickname);
    for detail in ["mf", "mdl", "sw", "hw", "sn", "cns", "connections"] {
        assert!(
            dev.get(detail).is_none(),
            "{detail} sent without the owner's consent: {v}"
        );
    }
    assert_eq!(v["o"]["name"], "hearth");
    assert!(v["o"]["sw"].is_string());
    canonical(&v["availability_topic"], id, "availability");
    let cmps = v["cmps"].as_object().expect("cmps");
    assert!(!cmps.is_empty());
    let mut platforms = Vec::new();
    for (object, c) in cmps {
        let p = c["p"]
            .as_str()
            .unwrap_or_else(|| panic!("{object} has no platform"));
        assert!(["light", "switch", "binary_sensor", "camera"].contains(&p), "{p}");
        assert!(
            c["unique_id"].as_str().is_some_and(|u| u.contains(id)),
            "{object}: {c}"
        );
        if let Some(t) = c.get("command_topic") {
            canonical(t, id, "set");
        }
        match p {
            "camera" => canonical(&c["topic"], id, "snapshot"),
            _ => canonical(&c["state_topic"], id, "state"),
        }
        platforms.push(p.to_owned());
    }
    platforms
}

/// Provisions each (profile, kind, nickname) in the hall, then shows them
/// all to Home Assistant.
fn exposed<const N: usize>(daemon: &Daemon, devices: [(&str, &str, &str); N]) -> [Device; N] {
    let devices = devices.map(|(profile, kind, nickname)| daemon.add_device(profile, kind, nickname, "Hall"));
    for d in &devices {
        daemon.expose_to_homeassistant(d, true);
    }
    devices
}

async fn said(lines: &mut mpsc::UnboundedReceiver<String>, want: &str) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, lines.recv()).await {
            Ok(Some(l)) if l == want => return,
            Ok(Some(_)) => {}
            _ => panic!("the device never said {want:?}"),
        }
    }
}

#[test]
fn home_assistant_discovers_controls_and_loses_exposed_devices() {
    let daemon = Daemon::start();
    let lamp = daemon.add_device("tasmota", "bulb", "Hall lamp", "Hall");
    let camera = daemon.add_device("generic", "camera", "Porch camera", "Hall");
    let plug = daemon.add_device("shelly", "plug", "Kettle", "Hall");
    let hidden = daemon.add_device("esphome", "bulb", "Bedroom light", "Hall");
    let fan = daemon.add_device("shelly", "plug", "Fan", "Hall");
    let bell = daemon.add_device("esphome", "doorbell", "Front door", "Hall");
    for d in [&lamp, &camera, &plug, &fan, &bell] {
        daemon.expose_to_homeassistant(d, true);
    }
    let status = daemon.cli_json(&["integrations", "homeassistant", "status"]);
    assert_eq!(status["enabled"], false);
    assert_eq!(status["exposed"], 5);

    let conn = daemon.cli_json(&["integrations", "homeassistant", "enable"]);
    let m = &conn["mqtt"];
    assert_eq!(m["username"], "homeassistant");
    assert_eq!(m["port"], daemon.tls_port());
    assert!(m["password"].as_str().is_some_and(|p| p.len() == 32), "{conn}");
    assert!(std::path::Path::new(m["ca_cert"].as_str().unwrap()).exists());
    assert_eq!(conn["discovery_prefix"], "homeassistant");
    // Enabling twice does not hand out a second password.
    let again = daemon.cli(&["integrations", "homeassistant", "enable", "--json"]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("rotate"), "{}", text(&again.stderr));
    // The password is not in the daemon's log.
    assert!(!daemon.log().contains(m["password"].as_str().unwrap()));

    let rt = rt();
    let (mut lamp_says, lamp_stop) = start_device(&rt, &lamp);
    let mut camera_device = None;
    rt.block_on(async {
        said(&mut lamp_says, "connected").await;
        let mut ha = Ha::connect(&daemon, &conn, "ha-3fP9qLk2").await;
        assert_eq!(
            ha.subscribe("homeassistant/#").await,
            SubscribeReasonCode::Success(QoS::AtLeastOnce)
        );
        ha.client
            .publish("homeassistant/status", QoS::AtLeastOnce, true, "online")
            .await
            .unwrap();

        // One retained config per exposed device, in HA's schema.
        let config_of = |d: &Device| format!("homeassistant/device/{}/config", d.id());
        let lamp_cfg = json(
            &ha.until("the lamp's config", &config_of(&lamp), |p| !p.is_empty())
                .await,
        );
        assert_eq!(check_device_config(&lamp_cfg, lamp.id(), "Hall lamp"), ["light"]);
        let light = &lamp_cfg["cmps"]["light"];
        assert_eq!(light["schema"], "json");
        assert_eq!(light["brightness"], true);
        let cam_cfg = json(
            &ha.until("the camera's config", &config_of(&camera), |p| !p.is_empty())
                .await,
        );
        assert_eq!(
            check_device_config(&cam_cfg, camera.id(), "Porch camera"),
            ["binary_sensor"]
        );
        assert_eq!(cam_cfg["cmps"]["motion"]["device_class"], "motion");
        let plug_cfg = json(
            &ha.until("the plug's config", &config_of(&plug), |p| !p.is_empty())
                .await,
        );
        assert_eq!(check_device_config(&plug_cfg, plug.id(), "Kettle"), ["switch"]);
        assert!(
            !ha.seen.contains_key(&config_of(&hidden)),
            "an unexposed device was announced"
        );

        // As Home Assistant would: subscribe to what the configs name.
        for d in [&lamp, &camera, &plug] {
            for leaf in ["state", "availability"] {
                let t = format!("hearth/{}/{leaf}", d.id());
                assert_eq!(
                    ha.subscribe(&t).await,
                    SubscribeReasonCode::Success(QoS::AtLeastOnce),
                    "{t}"
                );
            }
        }
        // The camera starts now, so its first motion comes after Home
        // Assistant subscribed.
        camera_device = Some(start_device(&rt, &camera));
        let bell_state = format!("hearth/{}/state", bell.id());
        assert_eq!(
            ha.subscribe(&bell_state).await,
            SubscribeReasonCode::Success(QoS::AtLeastOnce)
        );
        let bell_device = start_device(&rt, &bell);
        let lamp_state = format!("hearth/{}/state", lamp.id());
        let lamp_avail = format!("hearth/{}/availability", lamp.id());
        ha.until("the lamp online", &lamp_avail, |p| p == b"online").await;
        ha.until(
            "the plug offline",
            &format!("hearth/{}/availability", plug.id()),
            |p| p == b"offline",
        )
        .await;
        ha.until("the lamp's state", &lamp_state, |p| json(p)["state"] == "OFF")
            .await;

        // A command on the canonical topic reaches the Tasmota bulb in its
        // own scheme, and its report comes back canonical.
        ha.client
            .publish(
                lamp_cfg["cmps"]["light"]["command_topic"].as_str().unwrap(),
                QoS::AtLeastOnce,
                false,
                r#"{"state":"ON","brightness":128}"#,
            )
            .await
            .unwrap();
        said(&mut lamp_says, "brightness 50").await;
        ha.until("the lamp on at 128", &lamp_state, |p| {
            let v = json(p);
            v["state"] == "ON" && v["brightness"] == 128
        })
        .await;
        ha.command(&lamp, r#"{"color_temp":300}"#).await;
        said(&mut lamp_says, "color_temp 300").await;
        ha.until("the lamp at 300 mireds", &lamp_state, |p| {
            json(p)["color_temp"] == 300
        })
        .await;
        // Having learnt it, the light offers colour temperature.
        ha.until(
            "the lamp's config with colour temperature",
            &config_of(&lamp),
            |p| !p.is_empty() && json(p)["cmps"]["light"]["supported_color_modes"][0] == "color_temp",
        )
        .await;

        // The camera's motion reaches its state.
        let cam_state = format!("hearth/{}/state", camera.id());
        ha.until("motion", &cam_state, |p| json(p)["motion"] == true)
            .await;
        // It sends snapshots, so it becomes a camera in Home Assistant too,
        // and its image is there to read.
        let cam_cfg = json(
            &ha.until("the camera's config with an image", &config_of(&camera), |p| {
                !p.is_empty() && json(p)["cmps"].get("camera").is_some()
            })
            .await,
        );
        let mut platforms = check_device_config(&cam_cfg, camera.id(), "Porch camera");
        platforms.sort();
        assert_eq!(platforms, ["binary_sensor", "camera"]);
        let image = cam_cfg["cmps"]["camera"]["topic"].as_str().unwrap().to_owned();
        assert_eq!(
            ha.subscribe(&image).await,
            SubscribeReasonCode::Success(QoS::AtLeastOnce)
        );
        let png = ha.until("the snapshot", &image, |p| !p.is_empty()).await;
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

        // The ESPHome doorbell's button, translated: a press, then none.
        let bell_cfg = json(
            &ha.until("the doorbell's config", &config_of(&bell), |p| !p.is_empty())
                .await,
        );
        let mut platforms = check_device_config(&bell_cfg, bell.id(), "Front door");
        platforms.sort();
        assert_eq!(platforms, ["binary_sensor", "binary_sensor"]);
        assert!(
            bell_cfg["cmps"]["press"]["value_template"]
                .as_str()
                .unwrap()
                .contains("pressed")
        );
        ha.until("the doorbell pressed", &bell_state, |p| {
            json(p)["pressed"] == true
        })
        .await;
        drop(bell_device);

        // Confinement: never `#`, never a vendor's raw topics.
        let denied = SubscribeReasonCode::Failure;
        assert_eq!(ha.subscribe("#").await, denied);
        assert_eq!(ha.subscribe(&format!("stat/{}/#", lamp.base())).await, denied);
        assert_eq!(ha.subscribe(&format!("hearth/{}/set", lamp.id())).await, denied);
        assert_eq!(
            ha.subscribe(&format!("hearth/{}/state", hidden.id())).await,
            denied
        );
        assert_eq!(ha.subscribe("hearth/+/state").await, denied);
        let before = daemon.stats()["denied_publish"].as_u64().unwrap();
        ha.client
            .publish(
                format!("cmnd/{}/POWER", lamp.base()),
                QoS::AtLeastOnce,
                false,
                "OFF",
            )
            .await
            .unwrap();
        ha.command(&hidden, r#"{"state":"ON"}"#).await;
        let deadline = Instant::now() + LIMIT;
        while daemon.stats()["denied_publish"].as_u64().unwrap() < before + 2 {
            assert!(Instant::now() < deadline, "the raw publishes were not denied");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // The lamp goes away: Home Assistant sees it unavailable.
        let _ = lamp_stop.send(());
        ha.until("the lamp offline", &lamp_avail, |p| p == b"offline")
            .await;

        // Un-exposing the camera clears its config, and its topics close.
        daemon.expose_to_homeassistant(&camera, false);
        ha.until(
            "the camera's config cleared",
            &config_of(&camera),
            <[u8]>::is_empty,
        )
        .await;
        assert_eq!(ha.subscribe(&cam_state).await, denied);

        // Un-exposing also ends what Home Assistant subscribed to already:
        // the fan (played here by a client with its credential) reports,
        // Home Assistant hears it; once un-exposed, no more.
        let fan_state = format!("hearth/{}/state", fan.id());
        assert_eq!(
            ha.subscribe(&fan_state).await,
            SubscribeReasonCode::Success(QoS::AtLeastOnce)
        );
        let fan_device = mqtt::connect(mqtt::options(&daemon, &fan)).await;
        let report = |on: bool| format!(r#"{{"id":0,"output":{on}}}"#);
        let fan_topic = format!("{}/status/switch:0", fan.base());
        fan_device
            .client
            .publish(&fan_topic, QoS::AtLeastOnce, false, report(true))
            .await
            .unwrap();
        ha.until("the fan on", &fan_state, |p| json(p)["state"] == "ON")
            .await;
        daemon.expose_to_homeassistant(&fan, false);
        ha.until("the fan's config cleared", &config_of(&fan), <[u8]>::is_empty)
            .await;
        fan_device
            .client
            .publish(&fan_topic, QoS::AtLeastOnce, false, report(false))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while ha.next(deadline).await.is_some() {}
        let last = ha.seen[&fan_state].last().unwrap().clone();
        assert_eq!(
            json(&last)["state"],
            "ON",
            "an un-exposed device's state still reached Home Assistant"
        );

        // Home Assistant restarts: every config comes again.
        let plug_count = ha.seen[&config_of(&plug)].len();
        ha.client
            .publish("homeassistant/status", QoS::AtLeastOnce, true, "online")
            .await
            .unwrap();
        let deadline = Instant::now() + LIMIT;
        while ha.seen[&config_of(&plug)].len() == plug_count {
            assert!(ha.next(deadline).await.is_some(), "configs were not re-published");
        }

        // Forgetting the lamp clears its config and canonical topics.
        let v = daemon.cli_json(&["devices", "forget", lamp.id()]);
        assert_eq!(v["forgotten"], lamp.id());
        ha.until("the lamp's config cleared", &config_of(&lamp), <[u8]>::is_empty)
            .await;

        // A late subscriber finds no ghost of either.
        let mut late = Ha::connect(&daemon, &conn, "ha-late").await;
        late.subscribe("homeassistant/#").await;
        let deadline = Instant::now() + Duration::from_secs(2);
        while late.next(deadline).await.is_some() {}
        assert!(late.seen.contains_key(&config_of(&plug)));
        assert_eq!(
            late.retained.get(&config_of(&plug)),
            Some(&true),
            "configs are retained"
        );
        for gone in [config_of(&lamp), config_of(&camera)] {
            assert!(
                late.seen.get(&gone).is_none_or(|v| v.iter().all(Vec::is_empty)),
                "{gone}"
            );
        }
        drop(late);

        // Rotation: the old password is refused and its session cut.
        let rotated = daemon.cli_json(&["integrations", "homeassistant", "rotate"]);
        assert_ne!(rotated["mqtt"]["password"], conn["mqtt"]["password"]);
        ha.closed().await;
        let (_, mut events) = AsyncClient::new(ha_options(&daemon, &conn, "ha-old"), 8);
        assert_ne!(
            mqtt::connack(&mut events).await,
            Ok(rumqttc::ConnectReturnCode::Success)
        );
        let mut ha = Ha::connect(&daemon, &rotated, "ha-new").await;
        ha.subscribe("homeassistant/#").await;
        ha.until("the plug's config", &config_of(&plug), |p| !p.is_empty())
            .await;

        // Turning it off removes every device from Home Assistant.
        let off = daemon.cli_json(&["integrations", "homeassistant", "disable"]);
        assert_eq!(off["was_enabled"], true);
        ha.closed().await;
        let (_, mut events) = AsyncClient::new(ha_options(&daemon, &rotated, "ha-after"), 8);
        assert_ne!(
            mqtt::connack(&mut events).await,
            Ok(rumqttc::ConnectReturnCode::Success)
        );
    });
    drop(camera_device);
    let log = daemon.log();
    for secret in ["Hall lamp", "Porch camera", "Kettle"] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

#[test]
fn per_component_discovery_for_older_home_assistant() {
    let daemon = Daemon::start();
    let [lamp, plug] = exposed(
        &daemon,
        [("esphome", "bulb", "Desk lamp"), ("tasmota", "plug", "Heater")],
    );
    let conn = daemon.cli_json(&["integrations", "homeassistant", "enable"]);
    let rt = rt();
    let (mut lamp_says, _stop) = start_device(&rt, &lamp);
    rt.block_on(async {
        said(&mut lamp_says, "connected").await;
        let mut ha = Ha::connect(&daemon, &conn, "ha-2023").await;
        ha.subscribe("homeassistant/#").await;
        let device_topic = format!("homeassistant/device/{}/config", lamp.id());
        ha.until("the device config", &device_topic, |p| !p.is_empty())
            .await;

        let v = daemon.cli_json(&["integrations", "homeassistant", "set", "--discovery", "component"]);
        assert_eq!(v["discovery"], "component");
        // The device-based configs go, then one config per entity comes:
        // every clear before the first new config, or Home Assistant finds
        // the unique ids taken and drops both.
        let cleared = [
            device_topic.clone(),
            format!("homeassistant/device/{}/config", plug.id()),
        ];
        let (mut clears, mut first_new) = (Vec::new(), None);
        let deadline = Instant::now() + LIMIT;
        while clears.len() < cleared.len() || first_new.is_none() {
            match ha.next(deadline).await {
                Some(Heard::Message(t, p, _)) if p.is_empty() && cleared.contains(&t) => {
                    clears.push(Instant::now())
                }
                Some(Heard::Message(t, p, _))
                    if !p.is_empty() && !t.starts_with("homeassistant/device/") && t.ends_with("/config") =>
                {
                    first_new.get_or_insert(Instant::now());
                }
                Some(Heard::Closed) | None => panic!(
                    "cleared {} of 2; new config seen: {}",
                    clears.len(),
                    first_new.is_some()
                ),
                Some(_) => {}
            }
        }
        assert!(
            clears.iter().all(|c| *c < first_new.unwrap()),
            "a per-entity config came before the device configs were cleared"
        );
        let light_topic = format!("homeassistant/light/{}/light/config", lamp.id());
        let light = json(
            &ha.until("the light's config", &light_topic, |p| !p.is_empty())
                .await,
        );
        assert_eq!(light["device"]["name"], "Desk lamp");
        assert_eq!(light["origin"]["name"], "hearth");
        assert_eq!(light["schema"], "json");
        assert!(light.get("p").is_none());
        canonical(&light["command_topic"], lamp.id(), "set");
        canonical(&light["state_topic"], lamp.id(), "state");
        canonical(&light["availability_topic"], lamp.id(), "availability");
        let switch_topic = format!("homeassistant/switch/{}/switch/config", plug.id());
        let switch = json(
            &ha.until("the switch's config", &switch_topic, |p| !p.is_empty())
                .await,
        );
        assert_eq!(switch["payload_on"], r#"{"state":"ON"}"#);

        // It works the same through this layout: ESPHome obeys.
        let state = format!("hearth/{}/state", lamp.id());
        ha.subscribe(&state).await;
        ha.command(&lamp, r#"{"state":"ON","brightness":255}"#).await;
        said(&mut lamp_says, "state ON").await;
        ha.until("the lamp on", &state, |p| json(p)["brightness"] == 255)
            .await;

        // Sharing device details is the owner's choice.
        let v = daemon.cli_json(&[
            "integrations",
            "homeassistant",
            "set",
            "--share-device-details",
            "on",
        ]);
        assert_eq!(v["share_device_details"], true);
    });
}

/// The Python with Home Assistant installed (scripts/test-all makes it).
fn ha_python() -> std::path::PathBuf {
    std::env::var_os("HEARTH_HA_PYTHON")
        .map(Into::into)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/ha/.venv/bin/python").into())
}

/// Every config, in both layouts, for every kind of device, passes Home
/// Assistant's own discovery code (tests/ha/validate.py).
#[test]
fn configs_pass_home_assistants_own_schemas() {
    let python = ha_python();
    assert!(
        python.exists(),
        "{} is missing: scripts/test-all installs Home Assistant there",
        python.display()
    );
    let daemon = Daemon::start();
    let devices = exposed(
        &daemon,
        [
            ("tasmota", "bulb", "Lamp"),
            ("esphome", "light_strip", "Strip"),
            ("shelly", "plug", "Kettle"),
            ("generic", "camera", "Garden"),
            ("esphome", "doorbell", "Door"),
        ],
    );
    daemon.cli_json(&[
        "integrations",
        "homeassistant",
        "set",
        "--share-device-details",
        "on",
    ]);
    let conn = daemon.cli_json(&["integrations", "homeassistant", "enable"]);
    let rt = rt();
    // The lamp reports a colour temperature and the camera a snapshot, so
    // their richer configs are checked too.
    let (mut lamp_says, _lamp) = start_device(&rt, &devices[0]);
    let (mut camera_says, _camera) = start_device(&rt, &devices[3]);
    let lines = rt.block_on(async {
        said(&mut lamp_says, "connected").await;
        said(&mut camera_says, "connected").await;
        let mut ha = Ha::connect(&daemon, &conn, "ha-schema").await;
        ha.subscribe("homeassistant/#").await;
        let lamp = format!("homeassistant/device/{}/config", devices[0].id());
        let camera = format!("homeassistant/device/{}/config", devices[3].id());
        ha.until("the lamp with colour temperature", &lamp, |p| {
            !p.is_empty() && json(p)["cmps"]["light"]["supported_color_modes"][0] == "color_temp"
        })
        .await;
        ha.until("the camera with an image", &camera, |p| {
            !p.is_empty() && json(p)["cmps"].get("camera").is_some()
        })
        .await;
        daemon.cli_json(&["integrations", "homeassistant", "set", "--discovery", "component"]);
        let image = format!("homeassistant/camera/{}/camera/config", devices[3].id());
        ha.until("the per-entity camera", &image, |p| !p.is_empty()).await;
        let press = format!("homeassistant/binary_sensor/{}/press/config", devices[4].id());
        ha.until("the per-entity press sensor", &press, |p| !p.is_empty())
            .await;
        // The rest of this burst of configs.
        let deadline = Instant::now() + Duration::from_millis(1500);
        while ha.next(deadline).await.is_some() {}
        // Legacy configs, for 2024.3 and older: the same topics, the light
        // with its color_mode flag, checked by 2024.3's schema as they are.
        daemon.cli_json(&["integrations", "homeassistant", "set", "--discovery", "legacy"]);
        let light = format!("homeassistant/light/{}/light/config", devices[0].id());
        ha.until("the legacy light", &light, |p| {
            !p.is_empty() && json(p)["color_mode"] == true
        })
        .await;
        let mut lines = String::new();
        for (topic, payloads) in &ha.seen {
            for p in payloads {
                let payload = String::from_utf8(p.clone()).unwrap();
                lines += &serde_json::json!({ "topic": topic, "payload": payload }).to_string();
                lines.push('\n');
            }
        }
        lines
    });
    let file = daemon.home.path("configs.jsonl");
    std::fs::write(&file, lines).unwrap();
    let out = crate::harness::run(
        std::process::Command::new(&python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/ha/validate.py"))
            .arg(&file),
        Duration::from_secs(120),
    );
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    // Device-based: 2 light, switch, motion + camera, motion + press, plus
    // the lamp's earlier config; per entity: the same 7 entities.
    let valid: usize = report
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(valid >= 14, "{report}");
    assert!(
        report.contains("(camera)") && report.contains("homeassistant/camera/"),
        "{report}"
    );
}

/// Every live session of Home Assistant's credential is tracked, however
/// many there are: 50 at once (the table once kept 16 and forgot the
/// oldest, whose session then escaped rotation, lockdown and narrowing, and
/// made `status` say Home Assistant was disconnected). Un-exposing the lamp
/// narrows all 50; rotating cuts all 50; 50 more on the new password are all
/// cut by a lockdown.
#[test]
fn every_home_assistant_session_is_narrowed_and_cut() {
    let daemon = Daemon::start();
    let lamp = daemon.add_device("generic", "bulb", "Hall lamp", "Hall");
    daemon.expose_to_homeassistant(&lamp, true);
    let conn = daemon.cli_json(&["integrations", "homeassistant", "enable"]);
    let state = format!("hearth/{}/state", lamp.id());
    let sessions_now = || daemon.cli_json(&["integrations", "homeassistant", "status"])["sessions"].clone();
    let rt = rt();
    rt.block_on(async {
        let connect_all = async |conn: &Value, prefix: &str| {
            let mut all = Vec::new();
            for i in 0..50 {
                let mut ha = Ha::connect(&daemon, conn, &format!("{prefix}-{i}")).await;
                assert_eq!(
                    ha.subscribe(&state).await,
                    SubscribeReasonCode::Success(QoS::AtLeastOnce)
                );
                all.push(ha);
            }
            all
        };
        let mut all = connect_all(&conn, "ha").await;
        assert_eq!(sessions_now(), 50);
        // Without --json, status is for a person to read.
        let out = daemon.cli(&["integrations", "homeassistant", "status"]);
        let shown = text(&out.stdout);
        assert!(serde_json::from_str::<Value>(&shown).is_err(), "{shown}");
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with("sessions") && l.ends_with(" 50")),
            "{shown}"
        );
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with("connected") && l.ends_with(" yes")),
            "{shown}"
        );
        assert_eq!(
            daemon.cli_json(&["integrations", "homeassistant", "status"])["connected"],
            true
        );

        let device = mqtt::connect(mqtt::options(&daemon, &lamp)).await;
        let report = async |brightness: u8| {
            device
                .client
                .publish(
                    &state,
                    QoS::AtLeastOnce,
                    false,
                    format!(r#"{{"state":"ON","brightness":{brightness}}}"#),
                )
                .await
                .unwrap();
        };
        report(17).await;
        for ha in &mut all {
            ha.until("the lamp's report", &state, |p| json(p)["brightness"] == 17)
                .await;
        }

        // Un-exposed: within a second (hearth narrows after clearing the
        // config), not one of the 50 hears the next report.
        daemon.expose_to_homeassistant(&lamp, false);
        tokio::time::sleep(Duration::from_secs(1)).await;
        report(99).await;
        let quiet_until = Instant::now() + Duration::from_millis(1500);
        for (i, ha) in all.iter_mut().enumerate() {
            while let Some(h) = ha.next(quiet_until).await {
                if let Heard::Message(t, p, _) = h {
                    assert!(
                        !(t == state && json(&p)["brightness"] == 99),
                        "session {i} still hears the un-exposed lamp"
                    );
                }
            }
        }

        // Rotation cuts all 50.
        let rotated = daemon.cli_json(&["integrations", "homeassistant", "rotate"]);
        for ha in &mut all {
            ha.closed().await;
        }
        assert_eq!(sessions_now(), 0);

        // 50 more on the new password, all cut by a lockdown.
        daemon.expose_to_homeassistant(&lamp, true);
        let mut again = connect_all(&rotated, "ha-new").await;
        assert_eq!(sessions_now(), 50);
        daemon.cli_json(&["lockdown"]);
        for ha in &mut again {
            ha.closed().await;
        }
        assert_eq!(sessions_now(), 0);
    });
}

/// After a restart, before the devices report, hearth tells Home Assistant
/// nothing about a plug's or a translated light's state: it once published
/// a retained `{}`, on which Home Assistant's JSON light fails with
/// `KeyError: 'state'`. The first report then arrives whole.
#[test]
fn a_restart_publishes_no_empty_state() {
    let daemon = Daemon::start();
    let [plug, lamp] = exposed(
        &daemon,
        [("tasmota", "plug", "Heater"), ("shelly", "bulb", "Desk lamp")],
    );
    let conn = daemon.cli_json(&["integrations", "homeassistant", "enable"]);
    let daemon = Daemon::start_in(daemon.stop_keeping_home());
    let rt = rt();
    rt.block_on(async {
        let mut ha = Ha::connect(&daemon, &conn, "ha-after-restart").await;
        for d in [&plug, &lamp] {
            ha.subscribe(&format!("hearth/{}/state", d.id())).await;
        }
        let quiet_until = Instant::now() + Duration::from_secs(2);
        while let Some(h) = ha.next(quiet_until).await {
            if let Heard::Message(t, p, _) = h {
                assert!(
                    !t.ends_with("/state") || json(&p).get("state").is_some(),
                    "{t}: {}",
                    String::from_utf8_lossy(&p)
                );
            }
        }
    });
    let plug = Device({
        let mut v = plug.0.clone();
        v["mqtt"]["port"] = daemon.tls_port().into();
        v
    });
    let (mut says, _stop) = start_device(&rt, &plug);
    rt.block_on(async {
        said(&mut says, "connected").await;
        let mut ha = Ha::connect(&daemon, &conn, "ha-after-report").await;
        let topic = format!("hearth/{}/state", plug.id());
        ha.subscribe(&topic).await;
        ha.until("the plug's first report", &topic, |p| {
            json(p).get("state").is_some()
        })
        .await;
    });
}

/// hearth's generic scheme is the canonical one, and the simulated generic
/// firmware speaks it as documented: every state message is the whole
/// state, retained. A doorbell's press comes with its motion (a message
/// with one key once reset the other in Home Assistant's templates), the
/// motion is held for the documented 10 s, and a Home Assistant that
/// connects later reads the state at once instead of `unknown`.
#[test]
fn generic_firmware_sends_whole_retained_states() {
    let daemon = Daemon::start();
    let [bell, lamp] = exposed(
        &daemon,
        [
            ("generic", "doorbell", "Front door"),
            ("generic", "bulb", "Desk lamp"),
        ],
    );
    let conn = daemon.cli_json(&["integrations", "homeassistant", "enable"]);
    let rt = rt();
    let (mut bell_says, _bell) = start_device(&rt, &bell);
    let (mut lamp_says, _lamp) = start_device(&rt, &lamp);
    rt.block_on(async {
        said(&mut lamp_says, "connected").await;
        said(&mut bell_says, "press").await;
        let bell_state = format!("hearth/{}/state", bell.id());
        let lamp_state = format!("hearth/{}/state", lamp.id());
        // Connecting after the events: the retained states are there.
        let mut ha = Ha::connect(&daemon, &conn, "ha-late").await;
        ha.subscribe(&bell_state).await;
        ha.subscribe(&lamp_state).await;
        let rang = json(&ha.until("the bell's state", &bell_state, |_| true).await);
        assert!(ha.retained[&bell_state]);
        assert_eq!(rang["motion"], true, "{rang}");
        assert_eq!(rang["pressed"], true, "{rang}");
        let lit = json(&ha.until("the lamp's state", &lamp_state, |_| true).await);
        assert!(ha.retained[&lamp_state]);
        assert_eq!(lit["color_mode"], "color_temp", "{lit}");
        assert!(lit.get("state").is_some(), "{lit}");
        // Held 10 s, then both clear together.
        let started = Instant::now();
        let idle = json(
            &ha.until("the bell idle", &bell_state, |p| json(p)["motion"] == false)
                .await,
        );
        assert_eq!(idle["pressed"], false, "{idle}");
        assert!(
            started.elapsed() > Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    });
}

/// What a device showed it can do outlives a restart: a light that reported
/// a colour temperature keeps the control, and a camera that sent a
/// snapshot keeps its camera entity, in the configs a Home Assistant reads
/// after hearth restarts and before either device speaks again. Both once
/// dropped out until the device reported, so a Home Assistant started in
/// between never had them.
#[test]
fn learnt_controls_outlive_a_restart() {
    let daemon = Daemon::start();
    let [lamp, cam] = exposed(
        &daemon,
        [("generic", "bulb", "Desk lamp"), ("generic", "camera", "Porch")],
    );
    let conn = daemon.cli_json(&["integrations", "homeassistant", "enable"]);
    let rt = rt();
    let lamp_config = format!("homeassistant/device/{}/config", lamp.id());
    let cam_config = format!("homeassistant/device/{}/config", cam.id());
    let learnt = |lamp_cfg: &[u8], cam_cfg: &[u8]| {
        let (l, c) = (json(lamp_cfg), json(cam_cfg));
        l["cmps"]["light"]["supported_color_modes"] == serde_json::json!(["color_temp"])
            && c["cmps"].get("camera").is_some()
    };
    {
        let (mut lamp_says, _lamp) = start_device(&rt, &lamp);
        let (mut cam_says, _cam) = start_device(&rt, &cam);
        rt.block_on(async {
            said(&mut lamp_says, "connected").await;
            said(&mut cam_says, "connected").await;
            let mut ha = Ha::connect(&daemon, &conn, "ha-before").await;
            ha.subscribe("homeassistant/device/+/config").await;
            ha.until("the lamp's colour temperature", &lamp_config, |p| {
                json(p)["cmps"]["light"]["supported_color_modes"] == serde_json::json!(["color_temp"])
            })
            .await;
            ha.until("the camera entity", &cam_config, |p| {
                json(p)["cmps"].get("camera").is_some()
            })
            .await;
        });
        // Stopped here: the devices stay silent from now on.
    }
    // Kept in the store, not only in memory.
    let kept = Instant::now() + LIMIT;
    loop {
        let list = daemon.cli_json(&["devices", "list"]);
        let of = |d: &Device| {
            list.as_array()
                .unwrap()
                .iter()
                .find(|e| e["id"] == d.id())
                .map(|e| e["learnt"].clone())
                .unwrap()
        };
        if of(&lamp)["color_temp"] == true && of(&cam)["snapshots"] == true {
            break;
        }
        assert!(Instant::now() < kept, "not kept: {list}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let daemon = Daemon::start_in(daemon.stop_keeping_home());
    rt.block_on(async {
        let mut ha = Ha::connect(&daemon, &conn, "ha-after").await;
        ha.subscribe("homeassistant/device/+/config").await;
        let lamp_cfg = ha.until("the lamp's config", &lamp_config, |_| true).await;
        let cam_cfg = ha.until("the camera's config", &cam_config, |_| true).await;
        assert!(
            learnt(&lamp_cfg, &cam_cfg),
            "after the restart: {} / {}",
            String::from_utf8_lossy(&lamp_cfg),
            String::from_utf8_lossy(&cam_cfg)
        );
        // And no later config takes them back.
        let quiet_until = Instant::now() + Duration::from_secs(2);
        while ha.next(quiet_until).await.is_some() {}
        let (l, c) = (&ha.seen[&lamp_config], &ha.seen[&cam_config]);
        assert!(learnt(l.last().unwrap(), c.last().unwrap()));
    });
}

/// Sensors and a plug on the vendors' own schemes, as the simulator speaks
/// them (the firmware's topics and payloads): each reading crosses the
/// device's confinement, hearth's reading of its scheme and reaches Home
/// Assistant canonical; and a Shelly plug obeys an RPC whose answer it may
/// publish, since hearth's `src` lies in its own subtree.
#[test]
fn vendor_sensors_and_rpcs_reach_home_assistant() {
    let daemon = Daemon::start();
    let climates = [
        daemon.add_device("shelly", "climate_sensor", "Hall climate", "Hall"),
        daemon.add_device("tasmota", "climate_sensor", "Attic climate", "Hall"),
        daemon.add_device("esphome", "climate_sensor", "Porch climate", "Hall"),
    ];
    let door = daemon.add_device("esphome", "contact_sensor", "Back door", "Hall");
    let leak = daemon.add_device("shelly", "water_sensor", "Cellar leak", "Hall");
    let motion = daemon.add_device("esphome", "motion_sensor", "Hall motion", "Hall");
    let kettle = daemon.add_device("shelly", "plug", "Kettle", "Hall");
    let all: Vec<&Device> = climates.iter().chain([&door, &leak, &motion, &kettle]).collect();
    for d in &all {
        daemon.expose_to_homeassistant(d, true);
    }
    let conn = daemon.cli_json(&["integrations", "homeassistant", "enable"]);
    let rt = rt();
    rt.block_on(async {
        let mut ha = Ha::connect(&daemon, &conn, "ha-vendors").await;
        for d in &all {
            let t = format!("hearth/{}/state", d.id());
            assert_eq!(
                ha.subscribe(&t).await,
                SubscribeReasonCode::Success(QoS::AtLeastOnce)
            );
        }
        let mut devices = Vec::new();
        for d in &all {
            let (mut says, stop) = start_device(&rt, d);
            said(&mut says, "connected").await;
            devices.push((says, stop));
        }
        let state = |d: &Device| format!("hearth/{}/state", d.id());
        for d in &climates {
            let s = json(
                &ha.until("a climate reading", &state(d), |p| {
                    json(p)["temperature"].is_number() && json(p)["humidity"].is_number()
                })
                .await,
            );
            let t = s["temperature"].as_f64().unwrap();
            let h = s["humidity"].as_f64().unwrap();
            assert!((15.0..=25.0).contains(&t) && (40.0..=50.0).contains(&h), "{s}");
        }
        let s = json(
            &ha.until("the door", &state(&door), |p| json(p)["open"].is_boolean())
                .await,
        );
        assert_eq!(s["open"], false, "{s}");
        let s = json(
            &ha.until("the leak", &state(&leak), |p| json(p)["water"].is_boolean())
                .await,
        );
        assert_eq!(s["water"], false, "{s}");
        ha.until("motion", &state(&motion), |p| json(p)["motion"] == true)
            .await;

        // The kettle: a command becomes a Shelly RPC, whose answer the plug
        // publishes on <id>/hearth/rpc, and it stays connected to report.
        let kettle_says = &mut devices.last_mut().unwrap().0;
        ha.command(&kettle, r#"{"state":"ON"}"#).await;
        said(kettle_says, "state ON").await;
        ha.until("the kettle on", &state(&kettle), |p| json(p)["state"] == "ON")
            .await;
        ha.command(&kettle, r#"{"state":"OFF"}"#).await;
        said(kettle_says, "state OFF").await;
        ha.until("the kettle off", &state(&kettle), |p| json(p)["state"] == "OFF")
            .await;
    });
    // Nothing the devices sent reached the log.
    let log = daemon.log();
    for secret in ["Hall climate", "Back door", "Kettle", "hearth/rpc"] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}
