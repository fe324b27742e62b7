//! Home Assistant over hearth's own broker: the `homeassistant` MQTT
//! principal, and MQTT discovery of the devices the owner exposed to it.
//!
//! The principal may read and write `homeassistant/#`, read the canonical
//! state and availability of exposed devices and write their canonical set
//! topics; nothing else. Discovery is device-based
//! (`homeassistant/device/<id>/config`, Home Assistant 2024.11 or later), or
//! per component for older versions. Configs are retained (in memory only);
//! un-exposing or forgetting a device, or turning the integration off,
//! publishes an empty retained config so Home Assistant drops the entity.
//!
//! A config carries the owner's nickname and room (Home Assistant is local
//! and the owner's own); model, vendor and firmware only when the owner
//! turns on "share device details". Nothing here logs a name.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker::acl::{Principal, Rule};
use crate::broker::{Broker, Identity, Owner};
use crate::home::canonical::{availability_topic, set_topic, snapshot_topic, state_topic};
use crate::home::devices::{DeviceError, Devices, MQTT_PASSWORD, MqttEndpoint, ShownOnce};
use crate::home::live::LiveState;
use crate::store::AuditKind;
use crate::store::secret::{TokenHash, random_token};
use crate::store::{Actor, AuditEvent, Device, DeviceKind, Learnt, Store};

/// The MQTT username Home Assistant connects with.
pub const USERNAME: &str = "homeassistant";
/// The principal its credential belongs to in the store.
pub const PRINCIPAL: &str = "integration:homeassistant";
/// Home Assistant's default discovery prefix.
pub const DISCOVERY_PREFIX: &str = "homeassistant";
/// Where Home Assistant announces itself (`online` after it starts).
pub const STATUS_TOPIC: &str = "homeassistant/status";
/// The store's sealed record of the owner's settings.
const SETTINGS: &str = "homeassistant.settings";
/// After Home Assistant says it is online, configs are re-published after a
/// random delay in this range (milliseconds), so a restarting Home
/// Assistant is not met by every publisher at once.
const REPUBLISH_DELAY_MS: (u64, u64) = (500, 3_000);

/// How discovery configs are laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryMode {
    /// One config per device, `homeassistant/device/<id>/config` (Home
    /// Assistant 2024.11 and later).
    #[default]
    Device,
    /// One config per entity, `homeassistant/<component>/<id>/<object>/config`,
    /// for Home Assistant 2024.4 to 2024.10 (and any later one set to it).
    Component,
    /// One config per entity, with the JSON light's `color_mode` flag, for
    /// Home Assistant 2024.3 and older: they refuse a light whose
    /// `supported_color_modes` comes without it, while 2025.3 and later log
    /// an error for every config that carries it, so no one format serves
    /// both.
    Legacy,
}

/// The owner's settings for the integration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Send model, vendor and firmware in each device's config.
    #[serde(default)]
    pub share_device_details: bool,
    #[serde(default)]
    pub discovery: DiscoveryMode,
}

/// A change to the settings; absent fields stay.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    #[serde(default)]
    pub share_device_details: Option<bool>,
    #[serde(default)]
    pub discovery: Option<DiscoveryMode>,
}

/// What the owner enters into Home Assistant's MQTT integration. Shown
/// once: hearth keeps only the password's hash.
#[derive(Clone, Debug, Serialize)]
pub struct Connection {
    pub mqtt: ConnectionMqtt,
    pub discovery_prefix: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConnectionMqtt {
    pub host: String,
    pub port: u16,
    pub username: &'static str,
    pub password: ShownOnce,
    pub ca_cert: PathBuf,
}

/// The integration as the owner's tools show it.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub enabled: bool,
    pub connected: bool,
    /// Home Assistant's sessions connected now (one per running instance,
    /// more while one reconnects).
    pub sessions: usize,
    pub exposed: usize,
    pub settings: Settings,
    pub discovery_prefix: &'static str,
    pub host: String,
    pub port: u16,
}

/// The integration's state, shared by the admin socket, the dashboard and
/// the discovery task.
pub struct HomeAssistant {
    devices: Arc<Devices>,
    broker: Arc<Broker>,
    store: Arc<Mutex<Store>>,
    endpoint: MqttEndpoint,
    /// The current credential's hash; `None` while the integration is off.
    secret: Mutex<Option<TokenHash>>,
    settings: Mutex<Settings>,
    /// Bumped on every change the discovery task must act on.
    changes: tokio::sync::watch::Sender<u64>,
}

impl HomeAssistant {
    /// Reads the credential and settings from the store (blocking: call it
    /// off the async workers, or at start).
    pub fn load(
        store: Arc<Mutex<Store>>,
        devices: Arc<Devices>,
        broker: Arc<Broker>,
    ) -> Result<HomeAssistant, DeviceError> {
        let (secret, settings) = {
            let s = store.lock().expect("store lock");
            let secret = s
                .credentials_of_kind(MQTT_PASSWORD)?
                .into_iter()
                .find(|(c, _)| c.principal == PRINCIPAL)
                .map(|(_, h)| h);
            let settings = match s.secret(SETTINGS)? {
                Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                    tracing::warn!(%error, "Home Assistant settings unreadable; using the defaults");
                    Settings::default()
                }),
                None => Settings::default(),
            };
            (secret, settings)
        };
        let endpoint = devices.endpoint().clone();
        Ok(HomeAssistant {
            devices,
            broker,
            store,
            endpoint,
            secret: Mutex::new(secret),
            settings: Mutex::new(settings),
            changes: tokio::sync::watch::Sender::new(0),
        })
    }

    pub fn enabled(&self) -> bool {
        self.secret.lock().expect("ha lock").is_some()
    }

    pub fn settings(&self) -> Settings {
        self.settings.lock().expect("ha lock").clone()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, DeviceError> + Send + 'static,
    ) -> Result<T, DeviceError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&mut store.lock().expect("store lock")))
            .await
            .map_err(|e| DeviceError::Internal(e.to_string()))?
    }

    pub async fn status(&self) -> Result<Status, DeviceError> {
        let exposed = self
            .devices
            .adopted()
            .await?
            .iter()
            .filter(|d| d.fields.expose_ha)
            .count();
        let sessions = self.broker.sessions_of(USERNAME).await.len();
        Ok(Status {
            enabled: self.enabled(),
            connected: sessions > 0,
            sessions,
            exposed,
            settings: self.settings(),
            discovery_prefix: DISCOVERY_PREFIX,
            host: self.endpoint.host.clone(),
            port: self.endpoint.port,
        })
    }

    /// Turns the integration on: a new `homeassistant` credential, shown
    /// once. Refused when it is on already (rotate instead).
    pub async fn enable(&self, by: Actor) -> Result<Connection, DeviceError> {
        if self.enabled() {
            return Err(DeviceError::Invalid(
                "Home Assistant is already connected; rotate its password to see a new one".into(),
            ));
        }
        let c = self.issue(AuditKind::HomeassistantEnabled, by).await?;
        self.with_store(|store| {
            Ok(crate::store::warnings::raise(
                store,
                crate::store::warnings::HOMEASSISTANT_CONNECTED,
            )?)
        })
        .await?;
        Ok(c)
    }

    /// A new password; the old one is refused from now on and its sessions
    /// are cut.
    pub async fn rotate(&self, by: Actor) -> Result<Connection, DeviceError> {
        if !self.enabled() {
            return Err(DeviceError::NotFound(
                "the Home Assistant connection (turn it on first)".into(),
            ));
        }
        self.issue(AuditKind::HomeassistantRotated, by).await
    }

    /// Lockdown: replaces the password with one nobody is shown, so the old
    /// one is refused and its session cut; the owner rotates to reconnect.
    /// Whether the connection was on.
    pub async fn lock(&self, by: Actor) -> Result<bool, DeviceError> {
        if !self.enabled() {
            return Ok(false);
        }
        self.issue(AuditKind::HomeassistantLockedDown, by).await?;
        Ok(true)
    }

    async fn issue(&self, event: AuditKind, by: Actor) -> Result<Connection, DeviceError> {
        let password = random_token(128).map_err(|e| DeviceError::Internal(e.to_string()))?;
        let hash = TokenHash::of(password.expose());
        self.with_store(move |store| {
            store.replace_credential(PRINCIPAL, MQTT_PASSWORD, &hash)?;
            store.append_audit(&AuditEvent::ok(
                event,
                by,
                "MQTT principal homeassistant: new password",
            ))?;
            Ok(())
        })
        .await?;
        let old_sessions = self.broker.tracked_sessions(USERNAME).await;
        *self.secret.lock().expect("ha lock") = Some(hash);
        let rules = rules_for(&self.exposed().await?);
        self.install(rules);
        for client_id in old_sessions {
            self.broker.kick(&client_id).await;
        }
        self.changed();
        tracing::info!(event = event.name(), "Home Assistant credential issued");
        Ok(Connection {
            mqtt: ConnectionMqtt {
                host: self.endpoint.host.clone(),
                port: self.endpoint.port,
                username: USERNAME,
                password: ShownOnce(password),
                ca_cert: self.endpoint.ca_cert.clone(),
            },
            discovery_prefix: DISCOVERY_PREFIX,
        })
    }

    /// Turns the integration off: the credential is revoked, its sessions
    /// cut, and every discovery config cleared. Returns whether it was on.
    pub async fn disable(&self, by: Actor) -> Result<bool, DeviceError> {
        let was = self.enabled();
        self.with_store(|store| {
            store.delete_credentials(PRINCIPAL, MQTT_PASSWORD)?;
            store.append_audit(&AuditEvent::ok(
                AuditKind::HomeassistantDisabled,
                by,
                "MQTT principal homeassistant: password revoked",
            ))?;
            Ok(())
        })
        .await?;
        let sessions = self.broker.tracked_sessions(USERNAME).await;
        *self.secret.lock().expect("ha lock") = None;
        self.broker.credentials().remove(USERNAME);
        for client_id in sessions {
            self.broker.kick(&client_id).await;
        }
        self.changed();
        tracing::info!("Home Assistant connection turned off");
        Ok(was)
    }

    /// Changes the settings; the configs are re-published to match.
    pub async fn set(&self, change: SettingsChange, by: Actor) -> Result<Settings, DeviceError> {
        let mut next = self.settings();
        let shares_now = change.share_device_details == Some(true) && !next.share_device_details;
        if let Some(s) = change.share_device_details {
            next.share_device_details = s;
        }
        if let Some(d) = change.discovery {
            next.discovery = d;
        }
        let bytes = serde_json::to_vec(&next).map_err(|e| DeviceError::Internal(e.to_string()))?;
        let detail = format!(
            "share device details {}, {} discovery",
            if next.share_device_details { "on" } else { "off" },
            match next.discovery {
                DiscoveryMode::Device => "device",
                DiscoveryMode::Component => "per-component",
                DiscoveryMode::Legacy => "per-component (legacy)",
            }
        );
        self.with_store(move |store| {
            store.put_secret(SETTINGS, &bytes)?;
            store.append_audit(&AuditEvent::ok(AuditKind::HomeassistantSettings, by, detail))?;
            if shares_now {
                crate::store::warnings::raise(store, crate::store::warnings::HOMEASSISTANT_DETAILS)?;
            }
            Ok(())
        })
        .await?;
        *self.settings.lock().expect("ha lock") = next.clone();
        self.changed();
        Ok(next)
    }

    /// The adopted devices exposed to Home Assistant.
    async fn exposed(&self) -> Result<Vec<Device>, DeviceError> {
        Ok(self
            .devices
            .adopted()
            .await?
            .into_iter()
            .filter(|d| d.fields.expose_ha && d.fields.topic.is_some())
            .collect())
    }

    /// Puts the principal in the broker's table with these rules, while the
    /// integration is on.
    fn install(&self, rules: Vec<Rule>) {
        let Some(secret) = *self.secret.lock().expect("ha lock") else {
            return;
        };
        self.broker.credentials().insert(
            USERNAME.to_owned(),
            Identity {
                owner: Owner::HomeAssistant,
                principal: Principal::Confined { rules },
                client_id: None,
                secret,
            },
        );
    }
}

/// The principal's rules for these exposed devices.
pub fn rules_for(exposed: &[Device]) -> Vec<Rule> {
    let mut rules = vec![Rule::subtree(DISCOVERY_PREFIX, true, true)];
    for d in exposed {
        rules.push(Rule::topic(&state_topic(&d.id), false, true));
        rules.push(Rule::topic(&availability_topic(&d.id), false, true));
        if d.fields.kind.has_camera() {
            rules.push(Rule::topic(&snapshot_topic(&d.id), false, true));
        } else if !d.fields.kind.is_sensor() {
            rules.push(Rule::topic(&set_topic(&d.id), true, false));
        }
    }
    rules
}

/// One entity of a device: its object id and its config (with `p`, the
/// platform).
fn components(d: &Device, learnt: Learnt) -> Vec<(&'static str, Map<String, Value>)> {
    let id = &d.id;
    let unique = |object: &str| json!(format!("hearth_{id}_{object}"));
    let mut out = Vec::new();
    let mut c = Map::new();
    match d.fields.kind {
        DeviceKind::Bulb | DeviceKind::LightStrip => {
            c.insert("p".into(), json!("light"));
            c.insert("unique_id".into(), unique("light"));
            c.insert("name".into(), Value::Null);
            c.insert("state_topic".into(), json!(state_topic(id)));
            c.insert("schema".into(), json!("json"));
            c.insert("command_topic".into(), json!(set_topic(id)));
            c.insert("brightness".into(), json!(true));
            c.insert("brightness_scale".into(), json!(255));
            let mode = if learnt.color_temp {
                "color_temp"
            } else {
                "brightness"
            };
            // The state says which mode it is in. No `color_mode` flag
            // here: Home Assistant 2024.4 and later need none, and 2025.3
            // onwards log an error for every config that carries it. Legacy
            // configs add it back (see `configs`): 2024.3 refuses a light
            // without it.
            c.insert("supported_color_modes".into(), json!([mode]));
            out.push(("light", c));
        }
        DeviceKind::Plug => {
            c.insert("p".into(), json!("switch"));
            c.insert("unique_id".into(), unique("switch"));
            c.insert("name".into(), Value::Null);
            c.insert("state_topic".into(), json!(state_topic(id)));
            c.insert("command_topic".into(), json!(set_topic(id)));
            c.insert("payload_on".into(), json!(r#"{"state":"ON"}"#));
            c.insert("payload_off".into(), json!(r#"{"state":"OFF"}"#));
            c.insert("value_template".into(), json!("{{ value_json.state }}"));
            c.insert("state_on".into(), json!("ON"));
            c.insert("state_off".into(), json!("OFF"));
            out.push(("switch", c));
        }
        DeviceKind::Camera | DeviceKind::Doorbell | DeviceKind::MotionSensor => {
            c.insert("p".into(), json!("binary_sensor"));
            c.insert("unique_id".into(), unique("motion"));
            c.insert("name".into(), json!("Motion"));
            c.insert("device_class".into(), json!("motion"));
            c.insert("state_topic".into(), json!(state_topic(id)));
            c.insert(
                "value_template".into(),
                json!("{{ 'ON' if value_json.motion else 'OFF' }}"),
            );
            out.push(("motion", c));
            if d.fields.kind == DeviceKind::Doorbell {
                let mut press = Map::new();
                press.insert("p".into(), json!("binary_sensor"));
                press.insert("unique_id".into(), unique("press"));
                press.insert("name".into(), json!("Press"));
                press.insert("state_topic".into(), json!(state_topic(id)));
                press.insert(
                    "value_template".into(),
                    json!("{{ 'ON' if value_json.pressed else 'OFF' }}"),
                );
                out.push(("press", press));
            }
            if learnt.snapshots {
                let mut cam = Map::new();
                cam.insert("p".into(), json!("camera"));
                cam.insert("unique_id".into(), unique("camera"));
                cam.insert("name".into(), Value::Null);
                cam.insert("topic".into(), json!(snapshot_topic(id)));
                out.push(("camera", cam));
            }
        }
        DeviceKind::ContactSensor => {
            out.push(("contact", reading(id, "binary_sensor", "door", "open", "Door")));
        }
        DeviceKind::WaterSensor => {
            out.push((
                "water",
                reading(id, "binary_sensor", "moisture", "water", "Water"),
            ));
        }
        DeviceKind::ClimateSensor => {
            let mut t = reading(id, "sensor", "temperature", "temperature", "Temperature");
            t.insert("unit_of_measurement".into(), json!("°C"));
            t.insert("state_class".into(), json!("measurement"));
            out.push(("temperature", t));
            let mut h = reading(id, "sensor", "humidity", "humidity", "Humidity");
            h.insert("unit_of_measurement".into(), json!("%"));
            h.insert("state_class".into(), json!("measurement"));
            out.push(("humidity", h));
        }
        DeviceKind::Other => {}
    }
    out
}

/// A sensor entity reading `key` of the canonical state. A key the state
/// does not carry yet renders `None`, which Home Assistant's MQTT sensors
/// and binary sensors take as unknown (tested with `is defined`, so its
/// templates do not warn).
fn reading(
    id: &crate::store::DeviceId,
    platform: &str,
    class: &str,
    key: &str,
    name: &str,
) -> Map<String, Value> {
    let value = if platform == "binary_sensor" {
        format!("{{{{ 'ON' if value_json.{key} else 'OFF' }}}}")
    } else {
        format!("{{{{ value_json.{key} }}}}")
    };
    let mut c = Map::new();
    c.insert("p".into(), json!(platform));
    c.insert("unique_id".into(), json!(format!("hearth_{id}_{key}")));
    c.insert("name".into(), json!(name));
    c.insert("device_class".into(), json!(class));
    c.insert("state_topic".into(), json!(state_topic(id)));
    c.insert(
        "value_template".into(),
        json!(format!(
            "{{% if value_json.{key} is defined %}}{value}{{% else %}}None{{% endif %}}"
        )),
    );
    c
}

/// The `dev` mapping: identifiers and the owner's name; room; details only
/// when shared.
fn device_info(d: &Device, settings: &Settings) -> Value {
    let f = &d.fields;
    let mut dev = Map::new();
    dev.insert("ids".into(), json!([format!("hearth_{}", d.id)]));
    dev.insert(
        "name".into(),
        json!(f.nickname.clone().unwrap_or_else(|| d.id.to_string())),
    );
    if let Some(room) = &f.room {
        dev.insert("sa".into(), json!(room));
    }
    if settings.share_device_details {
        for (key, value) in [("mf", &f.vendor), ("mdl", &f.model), ("sw", &f.firmware)] {
            if let Some(v) = value {
                dev.insert(key.into(), json!(v));
            }
        }
    }
    Value::Object(dev)
}

fn origin() -> Value {
    json!({ "name": "hearth", "sw": env!("CARGO_PKG_VERSION") })
}

/// The discovery configs for these exposed devices: topic to payload.
pub fn configs(exposed: &[(Device, Learnt)], settings: &Settings) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (d, learnt) in exposed {
        let cmps = components(d, *learnt);
        if cmps.is_empty() {
            continue;
        }
        let id = &d.id;
        // Shared by every component; the state topic is each component's
        // own, as a camera has none.
        let shared = [
            ("availability_topic", json!(availability_topic(id))),
            ("qos", json!(1)),
        ];
        match settings.discovery {
            DiscoveryMode::Device => {
                let mut root = Map::new();
                root.insert("dev".into(), device_info(d, settings));
                root.insert("o".into(), origin());
                for (k, v) in &shared {
                    root.insert((*k).into(), v.clone());
                }
                let cmps: Map<String, Value> = cmps
                    .into_iter()
                    .map(|(object, c)| (object.to_owned(), Value::Object(c)))
                    .collect();
                root.insert("cmps".into(), Value::Object(cmps));
                out.insert(
                    format!("{DISCOVERY_PREFIX}/device/{id}/config"),
                    Value::Object(root).to_string(),
                );
            }
            DiscoveryMode::Component | DiscoveryMode::Legacy => {
                for (object, mut c) in cmps {
                    let Some(Value::String(platform)) = c.remove("p") else {
                        continue;
                    };
                    if settings.discovery == DiscoveryMode::Legacy && c.contains_key("supported_color_modes")
                    {
                        c.insert("color_mode".into(), json!(true));
                    }
                    c.insert("device".into(), device_info(d, settings));
                    c.insert("origin".into(), origin());
                    for (k, v) in &shared {
                        c.insert((*k).into(), v.clone());
                    }
                    out.insert(
                        format!("{DISCOVERY_PREFIX}/{platform}/{id}/{object}/config"),
                        Value::Object(c).to_string(),
                    );
                }
            }
        }
    }
    out
}

/// Keeps Home Assistant's discovery configs and the principal's rules equal
/// to the exposed devices and the settings, until `token` is cancelled.
pub async fn run(ha: Arc<HomeAssistant>, live: Arc<LiveState>, token: CancellationToken) {
    let mut hub = ha.broker.subscribe_hub();
    let mut list = ha.devices.subscribe_changes();
    let mut mine = ha.changes.subscribe();
    let mut published: BTreeMap<String, String> = BTreeMap::new();
    let mut republish_at: Option<Instant> = None;
    sync(&ha, &live, &mut published, false).await;
    loop {
        let republish = async {
            match republish_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = token.cancelled() => return,
            // Also when a light first reports a colour temperature, or a
            // camera first sends a snapshot: `Devices::learn` keeps it and
            // marks the list changed.
            changed = list.changed() => {
                if changed.is_err() {
                    return;
                }
                sync(&ha, &live, &mut published, false).await;
            }
            changed = mine.changed() => {
                if changed.is_err() {
                    return;
                }
                sync(&ha, &live, &mut published, false).await;
            }
            msg = hub.recv() => match msg {
                Ok(msg) => {
                    let online = matches!(msg.from, Owner::HomeAssistant)
                        && msg.topic == STATUS_TOPIC
                        && msg.payload.as_ref() == b"online";
                    if online && republish_at.is_none() {
                        republish_at = Some(Instant::now() + random_delay());
                    }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            _ = republish => {
                republish_at = None;
                sync(&ha, &live, &mut published, true).await;
            }
        }
    }
}

fn random_delay() -> Duration {
    let (low, high) = REPUBLISH_DELAY_MS;
    let mut b = [0u8; 8];
    let r = crate::store::crypto::fill_random(&mut b)
        .map(|()| u64::from_le_bytes(b))
        .unwrap_or(0);
    Duration::from_millis(low + r % (high - low + 1))
}

/// Brings the principal's rules and the retained configs in line. New
/// rules are widened before configs appear (Home Assistant subscribes as
/// soon as it reads one) and narrowed after removed configs are cleared
/// (so it still hears the removal), and then its subscriptions are cut to
/// the narrowed rules. `force` re-publishes every config.
/// How long new discovery configs wait after old ones were cleared in the
/// same change, for Home Assistant to finish removing their entities.
const REMOVAL_SETTLE: Duration = Duration::from_millis(1000);

async fn sync(ha: &HomeAssistant, live: &LiveState, published: &mut BTreeMap<String, String>, force: bool) {
    let enabled = ha.enabled();
    let exposed = if enabled {
        match ha.exposed().await {
            Ok(e) => e,
            Err(error) => {
                tracing::error!(%error, "Home Assistant discovery could not list the devices");
                return;
            }
        }
    } else {
        Vec::new()
    };
    let snapshot = live.snapshot();
    let with_learnt: Vec<(Device, Learnt)> = exposed
        .iter()
        .map(|d| {
            let heard = snapshot.get(&d.id).map(|s| s.learnt()).unwrap_or_default();
            (d.clone(), d.fields.learnt.union(heard))
        })
        .collect();
    let desired = configs(&with_learnt, &ha.settings());
    let rules = rules_for(&exposed);
    if enabled {
        let mut wide = rules.clone();
        if let Some(current) = ha.broker.credentials().get(USERNAME)
            && let Principal::Confined { rules: old } = &current.principal
        {
            wide.extend(old.iter().filter(|r| !rules.contains(r)).cloned());
        }
        ha.install(wide);
    }
    // Removed configs are cleared before new ones go out: switching the
    // discovery format moves every entity to another topic under the same
    // unique id, and Home Assistant refuses a config whose unique id another
    // topic still holds ("conflicting MQTT discovery message"), then drops
    // both. It removes an entity asynchronously, so new topics wait a moment
    // after a clear.
    let removed: Vec<&String> = published.keys().filter(|t| !desired.contains_key(*t)).collect();
    for topic in &removed {
        publish(&ha.broker, topic, String::new()).await;
    }
    if !removed.is_empty() && desired.keys().any(|t| !published.contains_key(t)) {
        tokio::time::sleep(REMOVAL_SETTLE).await;
    }
    for (topic, payload) in &desired {
        if force || published.get(topic) != Some(payload) {
            publish(&ha.broker, topic, payload.clone()).await;
        }
    }
    if enabled {
        ha.install(rules);
        let dropped = ha.broker.enforce_subscriptions(USERNAME).await;
        if dropped > 0 {
            tracing::debug!(dropped, "Home Assistant subscriptions narrowed");
        }
    }
    *published = desired;
}

async fn publish(broker: &Broker, topic: &str, payload: String) {
    if let Err(error) = broker.publish(topic, payload.into(), 1, true).await {
        tracing::warn!(%error, "a Home Assistant discovery config could not be published");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::acl::{Action, Decision, decide};
    use crate::store::{DeviceFields, DeviceId, DeviceStatus, UnixTime};

    fn device(kind: DeviceKind, profile: &str) -> Device {
        let mut f = DeviceFields::new(kind, profile);
        f.status = DeviceStatus::Adopted;
        f.nickname = Some("Hall lamp".into());
        f.room = Some("Hall".into());
        f.model = Some("SimBulb A19".into());
        f.firmware = Some("1.2.0".into());
        f.expose_ha = true;
        f.topic = Some("b1".into());
        Device {
            id: DeviceId::generate().unwrap(),
            fields: f,
            created_at: UnixTime::now(),
        }
    }

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn a_bulb_is_one_device_config_with_a_json_light() {
        let d = device(DeviceKind::Bulb, "tasmota");
        let out = configs(&[(d.clone(), Learnt::default())], &Settings::default());
        let topic = format!("homeassistant/device/{}/config", d.id);
        assert_eq!(out.keys().collect::<Vec<_>>(), vec![&topic]);
        let v = parse(&out[&topic]);
        assert_eq!(v["dev"]["ids"][0], format!("hearth_{}", d.id));
        assert_eq!(v["dev"]["name"], "Hall lamp");
        assert_eq!(v["dev"]["sa"], "Hall");
        // Details stay home unless the owner shares them.
        for key in ["mf", "mdl", "sw"] {
            assert!(v["dev"].get(key).is_none(), "{key}");
        }
        assert_eq!(v["o"]["name"], "hearth");
        assert_eq!(v["availability_topic"], format!("hearth/{}/availability", d.id));
        let light = &v["cmps"]["light"];
        assert_eq!(light["state_topic"], format!("hearth/{}/state", d.id));
        assert_eq!(light["p"], "light");
        assert_eq!(light["schema"], "json");
        assert_eq!(light["command_topic"], format!("hearth/{}/set", d.id));
        assert_eq!(light["unique_id"], format!("hearth_{}_light", d.id));
        assert_eq!(light["supported_color_modes"], json!(["brightness"]));
        assert!(light.get("color_mode").is_none(), "{light}");

        let shared = Settings {
            share_device_details: true,
            ..Settings::default()
        };
        let learnt = Learnt {
            color_temp: true,
            ..Learnt::default()
        };
        let v = parse(&configs(&[(d.clone(), learnt)], &shared)[&topic]);
        assert_eq!(v["dev"]["mdl"], "SimBulb A19");
        assert_eq!(v["dev"]["sw"], "1.2.0");
        assert_eq!(v["cmps"]["light"]["supported_color_modes"], json!(["color_temp"]));
    }

    /// The `color_mode` flag only where the Home Assistant that reads it
    /// needs it: legacy per-entity configs (2024.3 refuses a light without
    /// it); never in device or per-entity configs (2024.4 and later need
    /// none; 2025.3 onwards log an error for it).
    #[test]
    fn the_color_mode_flag_only_in_legacy_light_configs() {
        let lamp = device(DeviceKind::Bulb, "tasmota");
        let per_device = configs(&[(lamp.clone(), Learnt::default())], &Settings::default());
        let v = parse(&per_device[&format!("homeassistant/device/{}/config", lamp.id)]);
        assert!(v["cmps"]["light"].get("color_mode").is_none(), "{v}");
        let component = Settings {
            discovery: DiscoveryMode::Component,
            ..Settings::default()
        };
        let light_topic = format!("homeassistant/light/{}/light/config", lamp.id);
        let per_component = configs(&[(lamp.clone(), Learnt::default())], &component);
        let v = parse(&per_component[&light_topic]);
        assert!(v.get("color_mode").is_none(), "{v}");
        assert_eq!(v["supported_color_modes"], json!(["brightness"]));
        let legacy = Settings {
            discovery: DiscoveryMode::Legacy,
            ..Settings::default()
        };
        let v = parse(&configs(&[(lamp.clone(), Learnt::default())], &legacy)[&light_topic]);
        assert_eq!(v["color_mode"], true, "{v}");
        assert_eq!(v["supported_color_modes"], json!(["brightness"]));
    }

    #[test]
    fn per_component_configs_carry_device_and_origin_each() {
        let cam = device(DeviceKind::Camera, "homekit");
        let plug = device(DeviceKind::Plug, "shelly");
        let other = device(DeviceKind::Other, "generic");
        let settings = Settings {
            discovery: DiscoveryMode::Component,
            ..Settings::default()
        };
        let out = configs(
            &[
                (cam.clone(), Learnt::default()),
                (plug.clone(), Learnt::default()),
                (other, Learnt::default()),
            ],
            &settings,
        );
        let motion = format!("homeassistant/binary_sensor/{}/motion/config", cam.id);
        let switch = format!("homeassistant/switch/{}/switch/config", plug.id);
        assert_eq!(out.len(), 2, "{:?}", out.keys());
        let m = parse(&out[&motion]);
        assert_eq!(m["device_class"], "motion");
        assert_eq!(m["device"]["name"], "Hall lamp");
        assert_eq!(m["origin"]["name"], "hearth");
        assert!(m.get("p").is_none());
        let s = parse(&out[&switch]);
        assert_eq!(s["payload_on"], r#"{"state":"ON"}"#);
        assert_eq!(s["command_topic"], format!("hearth/{}/set", plug.id));
    }

    #[test]
    fn a_doorbell_has_motion_and_press_and_a_camera_with_snapshots_an_image() {
        let bell = device(DeviceKind::Doorbell, "homekit");
        let cam = device(DeviceKind::Camera, "generic");
        let snaps = Learnt {
            snapshots: true,
            ..Learnt::default()
        };
        let out = configs(
            &[(bell.clone(), Learnt::default()), (cam.clone(), snaps)],
            &Settings::default(),
        );
        let b = parse(&out[&format!("homeassistant/device/{}/config", bell.id)]);
        let cmps = b["cmps"].as_object().unwrap();
        assert_eq!(cmps.keys().collect::<Vec<_>>(), vec!["motion", "press"]);
        assert_eq!(cmps["press"]["p"], "binary_sensor");
        assert!(
            cmps["press"]["value_template"]
                .as_str()
                .unwrap()
                .contains("pressed")
        );
        let c = parse(&out[&format!("homeassistant/device/{}/config", cam.id)]);
        assert_eq!(c["cmps"]["camera"]["p"], "camera");
        assert_eq!(
            c["cmps"]["camera"]["topic"],
            format!("hearth/{}/snapshot", cam.id)
        );
        assert!(c["cmps"]["camera"].get("state_topic").is_none());
    }

    #[test]
    fn rules_reach_only_exposed_canonical_topics() {
        let bulb = device(DeviceKind::Bulb, "tasmota");
        let cam = device(DeviceKind::Camera, "homekit");
        let p = Principal::Confined {
            rules: rules_for(&[bulb.clone(), cam.clone()]),
        };
        let (b, c) = (&bulb.id, &cam.id);
        let cases = [
            (Action::Subscribe, "homeassistant/#".to_owned(), Decision::Allow),
            (
                Action::Publish,
                "homeassistant/status".to_owned(),
                Decision::Allow,
            ),
            (Action::Subscribe, format!("hearth/{b}/state"), Decision::Allow),
            (
                Action::Subscribe,
                format!("hearth/{b}/availability"),
                Decision::Allow,
            ),
            (Action::Publish, format!("hearth/{b}/set"), Decision::Allow),
            (Action::Subscribe, format!("hearth/{c}/state"), Decision::Allow),
            (Action::Subscribe, format!("hearth/{c}/snapshot"), Decision::Allow),
            (Action::Subscribe, format!("hearth/{b}/snapshot"), Decision::Deny),
            // A camera takes no commands.
            (Action::Publish, format!("hearth/{c}/set"), Decision::Deny),
            (Action::Publish, format!("hearth/{b}/state"), Decision::Deny),
            (Action::Subscribe, format!("hearth/{b}/#"), Decision::Deny),
            (Action::Subscribe, "hearth/+/state".to_owned(), Decision::Deny),
            (Action::Subscribe, "#".to_owned(), Decision::Deny),
            // Never the vendor's own topics.
            (Action::Subscribe, "stat/b1/#".to_owned(), Decision::Deny),
            (Action::Publish, "cmnd/b1/POWER".to_owned(), Decision::Deny),
            (Action::Subscribe, "$SYS/#".to_owned(), Decision::Deny),
        ];
        for (action, topic, want) in cases {
            assert_eq!(decide(&p, action, &topic), want, "{action:?} {topic}");
        }
    }
}
