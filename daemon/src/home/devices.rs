//! Device lifecycle as library operations: add (provision), list, adopt,
//! rename, update, control, forget and rotate. Each keeps the store, its
//! audit entry, the broker's credential table and live sessions in step.
//! The dashboard's routes and the admin socket (the CLI) both call these,
//! so an operation means the same through either door.
//!
//! A device gets a credential only through these operations, never from
//! anything it says on the network. Forgetting or rotating cuts the device's
//! live session before the call returns; forgetting also drops its live
//! state.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize, Serializer};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::broker::acl::{self, Principal};
use crate::broker::{Broker, Credentials, Identity, Owner};
use crate::home::live::{DeviceState, LiveState};
use crate::home::vendor::{self, Profile, power_command};
use crate::store::AuditKind;
use crate::store::secret::{Secret, TokenHash, random_token};
use crate::store::{
    Actor, AuditEvent, Device, DeviceFields, DeviceId, DeviceKind, DeviceStatus, Learnt, Store, StoreError,
};

/// The credential kind of a device's MQTT password.
pub const MQTT_PASSWORD: &str = "mqtt_password";
/// The longest nickname or room accepted, in characters.
pub const MAX_NAME_CHARS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("no device with id {0}")]
    NotFound(String),
    #[error("the topic base is taken by another device; choose another with --topic")]
    TopicTaken,
    #[error("internal error: {0}")]
    Internal(String),
}

/// Where devices reach the broker.
#[derive(Clone, Debug)]
pub struct MqttEndpoint {
    pub host: String,
    pub port: u16,
    pub ca_cert: PathBuf,
}

/// A request to provision a device by hand.
/// Addresses a device added by hand may be given, at most.
pub const MAX_ADDED_ADDRESSES: usize = 8;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AddDevice {
    pub profile: Profile,
    #[serde(default = "default_kind")]
    pub kind: DeviceKind,
    pub nickname: String,
    #[serde(default)]
    pub room: Option<String>,
    /// The topic base; generated from the id when absent.
    #[serde(default)]
    pub topic: Option<String>,
    /// Its LAN addresses, so that DNS knows its queries (at most 8).
    #[serde(default)]
    pub addresses: Vec<std::net::IpAddr>,
}

fn default_kind() -> DeviceKind {
    DeviceKind::Other
}

/// The owner's adoption of a pending device.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Adopt {
    pub id: String,
    pub nickname: String,
    #[serde(default)]
    pub room: Option<String>,
    /// What it is, when its advert told hearth wrong or nothing (a Tasmota
    /// advert names no model): otherwise the kind discovery gave it stays.
    #[serde(default)]
    pub kind: Option<DeviceKind>,
}

/// A new name or room for a device.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    pub id: String,
    pub nickname: String,
    #[serde(default)]
    pub room: Option<String>,
}

/// A password shown once, at provisioning: it serialises as itself (for the
/// owner's eyes only), but `Debug` redacts it.
#[derive(Clone)]
pub struct ShownOnce(pub(crate) Secret);

impl Serialize for ShownOnce {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose())
    }
}

impl std::fmt::Debug for ShownOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::store::secret::REDACTED)
    }
}

/// What the owner enters into the device.
#[derive(Clone, Debug, Serialize)]
pub struct MqttDetails {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: ShownOnce,
    pub ca_cert: PathBuf,
    pub client_id: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Provisioning {
    pub id: DeviceId,
    pub profile: Profile,
    pub kind: DeviceKind,
    pub mqtt: MqttDetails,
    pub topics: Vec<String>,
}

/// A device as the owner's own tools list it. It carries names, so it goes
/// only to the admin socket's caller, never to a log.
#[derive(Clone, Serialize)]
pub struct DeviceSummary {
    pub id: DeviceId,
    pub status: DeviceStatus,
    pub kind: DeviceKind,
    pub profile: String,
    pub nickname: Option<String>,
    pub room: Option<String>,
    pub topics: Vec<String>,
    pub online: bool,
    /// An advert claimed this device's identity from an address it was not
    /// adopted at.
    pub flagged: bool,
    /// Who made it, or whose firmware it runs, as its advert said.
    pub vendor: Option<String>,
    /// Its model, when its advert named one (never an ESPHome board).
    pub model: Option<String>,
    /// The board an ESPHome node said it runs on.
    pub board: Option<String>,
    /// Its MAC, `aa:bb:cc:dd:ee:ff`, when its advert carried one.
    pub mac: Option<String>,
    /// The name it announced itself by over mDNS.
    pub advertised_name: Option<String>,
    pub voice_name: Option<String>,
    pub expose_ha: bool,
    pub expose_voice: bool,
    /// What it showed it can do.
    pub learnt: Learnt,
    /// Where it was found or adopted: for the owner to tell devices apart.
    pub addresses: Vec<std::net::IpAddr>,
    /// When hearth first recorded it (found, or added by hand): Unix ms.
    pub created_at: i64,
    /// What it last reported about itself, while live state tracks it.
    #[serde(flatten)]
    pub reported: Reported,
}

/// What a device last reported about itself; each field is `null` until it
/// has. The same for the dashboard's list and `hearth devices list --json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Reported {
    pub power: Option<bool>,
    /// 0 to 100.
    pub brightness: Option<u8>,
    /// Mireds.
    pub color_temp: Option<u16>,
    /// Unix seconds.
    pub last_motion_at: Option<u64>,
    /// Unix seconds.
    pub last_press_at: Option<u64>,
    pub open: Option<bool>,
    pub water: Option<bool>,
    /// Tenths of a degree Celsius.
    pub temperature: Option<i16>,
    /// Tenths of a percent of relative humidity.
    pub humidity: Option<u16>,
}

impl Reported {
    fn of(s: &DeviceState) -> Reported {
        Reported {
            power: s.power,
            brightness: s.brightness,
            color_temp: s.color_temp,
            last_motion_at: s.last_motion_at,
            last_press_at: s.last_press_at,
            open: s.open,
            water: s.water,
            temperature: s.temperature,
            humidity: s.humidity,
        }
    }
}

/// The owner's changes to an adopted device's settings; absent fields stay.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    #[serde(default)]
    pub nickname: Option<String>,
    #[serde(default)]
    pub room: Option<String>,
    #[serde(default)]
    pub voice_name: Option<String>,
    #[serde(default)]
    pub expose_ha: Option<bool>,
    #[serde(default)]
    pub expose_voice: Option<bool>,
}

/// A credential issued by adoption or rotation, handed in process to
/// `hearth demo`'s simulated firmware (see [`Devices::with_issued_tap`]).
/// `Provisioning` redacts its password in `Debug`, so nothing on the way
/// can print it.
#[derive(Clone, Debug)]
pub struct Issued {
    pub provisioning: Provisioning,
    /// Issued by an adoption; otherwise by a rotation.
    pub adopted: bool,
}

/// The device operations, over the shared store and the running broker.
pub struct Devices {
    store: Arc<Mutex<Store>>,
    broker: Arc<Broker>,
    endpoint: MqttEndpoint,
    /// Bumped whenever the device list changes, for live views.
    changes: tokio::sync::watch::Sender<u64>,
    /// Where credentials issued by adoption and rotation also go, in
    /// process; only `hearth demo` sets one.
    issued: Option<tokio::sync::mpsc::UnboundedSender<Issued>>,
    /// The live state that follows these devices, once it runs (see
    /// [`Devices::attach_live`]): forgetting a device drops its live state
    /// before the call returns, whichever door asked.
    live: std::sync::OnceLock<Arc<LiveState>>,
}

fn check_name(what: &str, value: &str) -> Result<(), DeviceError> {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || value.chars().any(char::is_control) || value.trim() != value {
        return Err(DeviceError::Invalid(format!(
            "the {what} must be 1 to {MAX_NAME_CHARS} characters, without control characters or \
             leading and trailing spaces"
        )));
    }
    Ok(())
}

/// Refuses a voice name that is the device's nickname, compared without
/// case and with runs of white space as one: the voice name is what the
/// assistants' clouds hear and keep, and the nickname must stay home.
fn check_voice_name(nickname: Option<&str>, voice_name: Option<&str>) -> Result<(), DeviceError> {
    let fold = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    if let (Some(n), Some(v)) = (nickname, voice_name)
        && fold(n) == fold(v)
    {
        return Err(DeviceError::Invalid(
            "the voice name must not be the device's nickname: the assistants' clouds hear and keep \
             the voice name, so choose one of its own"
                .into(),
        ));
    }
    Ok(())
}

/// The topic base a new device gets when the owner names none.
fn default_topic(profile: Profile, id: &DeviceId) -> String {
    let id = id.as_str();
    match profile {
        Profile::Generic => id.to_owned(),
        Profile::Tasmota => format!("tasmota_{}", &id[..6]),
        Profile::Shelly => format!("shelly-{}", &id[..8]),
        Profile::Esphome => format!("esphome-{}", &id[..8]),
    }
}

/// The MQTT identity of an adopted device, or `None` if it has no usable
/// profile or topic (then it cannot connect).
pub fn identity_of(device: &Device, secret: TokenHash) -> Option<Identity> {
    // Devices found in ecosystems without an MQTT scheme of their own
    // (HomeKit, WLED, ...) speak hearth's generic scheme once adopted.
    let profile = Profile::parse(&device.fields.profile).unwrap_or(Profile::Generic);
    let topic = device
        .fields
        .topic
        .as_deref()
        .filter(|t| vendor::valid_base(t) || *t == device.id.as_str())?;
    Some(Identity {
        owner: Owner::Device(device.id.clone()),
        principal: Principal::Confined {
            rules: vendor::device_rules(profile, topic),
        },
        client_id: Some(device.id.to_string()),
        secret,
    })
}

/// Loads every adopted device's credential into the broker's table. Called
/// once at start.
pub fn load_credentials(store: &Store, creds: &Credentials) -> Result<usize, StoreError> {
    let hashes = store.credentials_of_kind(MQTT_PASSWORD)?;
    let mut loaded = 0;
    for device in store.devices()? {
        if device.fields.status != DeviceStatus::Adopted {
            continue;
        }
        let principal = device.id.principal();
        let Some((_, hash)) = hashes.iter().find(|(c, _)| c.principal == principal) else {
            continue;
        };
        if let Some(identity) = identity_of(&device, *hash) {
            creds.insert(device.id.to_string(), identity);
            loaded += 1;
        }
    }
    Ok(loaded)
}

impl Devices {
    pub fn new(store: Arc<Mutex<Store>>, broker: Arc<Broker>, endpoint: MqttEndpoint) -> Devices {
        Devices {
            store,
            broker,
            endpoint,
            changes: tokio::sync::watch::Sender::new(0),
            issued: None,
            live: std::sync::OnceLock::new(),
        }
    }

    /// Lets forgetting a device also drop its live state at once, rather
    /// than when `live` next follows the device list, and lets the list
    /// carry what each device reported. `app` attaches it before any task
    /// runs. The first live state attached stays.
    pub fn attach_live(&self, live: Arc<LiveState>) {
        let _ = self.live.set(live);
    }

    /// Also hands every credential that an adoption or a rotation issues,
    /// whoever asked for it (dashboard, API, CLI), to `tap`. `hearth demo`
    /// uses this so that its simulated devices connect once the owner
    /// adopts them, with the very credential the owner was shown, without
    /// the secret ever being written anywhere. The daemon proper never sets
    /// one.
    pub fn with_issued_tap(mut self, tap: tokio::sync::mpsc::UnboundedSender<Issued>) -> Devices {
        self.issued = Some(tap);
        self
    }

    fn tap(&self, provisioning: &Provisioning, adopted: bool) {
        if let Some(tap) = &self.issued {
            // A demo that stopped listening just misses it.
            let _ = tap.send(Issued {
                provisioning: provisioning.clone(),
                adopted,
            });
        }
    }

    /// The sender that marks the device list changed (discovery uses it).
    pub fn change_notifier(&self) -> tokio::sync::watch::Sender<u64> {
        self.changes.clone()
    }

    /// Wakes whenever the device list changes.
    pub fn subscribe_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn endpoint(&self) -> &MqttEndpoint {
        &self.endpoint
    }

    pub async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, DeviceError> + Send + 'static,
    ) -> Result<T, DeviceError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&mut store.lock().expect("store lock")))
            .await
            .map_err(|e| DeviceError::Internal(e.to_string()))?
    }

    /// Provisions a device by hand: a record, a credential and ACL rules
    /// from its profile. The password is in the result and nowhere else.
    pub async fn add(&self, req: AddDevice, by: Actor) -> Result<Provisioning, DeviceError> {
        check_name("nickname", &req.nickname)?;
        if let Some(room) = &req.room {
            check_name("room", room)?;
        }
        if let Some(topic) = &req.topic
            && !vendor::valid_base(topic)
        {
            return Err(DeviceError::Invalid(
                "the topic base must be 1 to 64 characters of a-z, 0-9, '_' and '-', starting with a letter \
                 or digit, and not a reserved name (hearth, homeassistant, cmnd, stat, tele, ...)"
                    .into(),
            ));
        }
        if req.addresses.len() > MAX_ADDED_ADDRESSES {
            return Err(DeviceError::Invalid(format!(
                "give at most {MAX_ADDED_ADDRESSES} addresses"
            )));
        }
        let (password, hash) = new_password()?;
        let id = DeviceId::generate().map_err(|e| DeviceError::Internal(e.to_string()))?;
        let topic = req
            .topic
            .clone()
            .unwrap_or_else(|| default_topic(req.profile, &id));
        let device = self
            .with_store(move |store| {
                if store
                    .devices()?
                    .iter()
                    .any(|d| d.fields.topic.as_deref() == Some(topic.as_str()))
                {
                    return Err(DeviceError::TopicTaken);
                }
                let mut fields = DeviceFields::new(req.kind, req.profile.as_str());
                fields.status = DeviceStatus::Adopted;
                fields.nickname = Some(req.nickname);
                fields.room = req.room;
                fields.addresses = req.addresses;
                fields.topic = Some(topic);
                let device = store
                    .insert_device_with_credential(id, &fields, MQTT_PASSWORD, &hash)?
                    .0;
                store.append_audit(&AuditEvent::ok(
                    AuditKind::DeviceAdded,
                    by,
                    format!("device {}: credential issued", device.id),
                ))?;
                Ok(device)
            })
            .await?;
        let provisioning = self.issue(&device, password, hash)?;
        tracing::info!(device = %device.id, "device provisioned");
        self.changed();
        Ok(provisioning)
    }

    /// Puts the device's new credential into the broker's table and returns
    /// what the owner enters into the device.
    fn issue(&self, device: &Device, password: Secret, hash: TokenHash) -> Result<Provisioning, DeviceError> {
        let identity = identity_of(device, hash)
            .ok_or_else(|| DeviceError::Invalid("the device has no usable profile or topic".into()))?;
        let topics = topics_of(&identity);
        self.broker.credentials().insert(device.id.to_string(), identity);
        Ok(self.provisioning(device, password, topics))
    }

    fn provisioning(&self, device: &Device, password: Secret, topics: Vec<String>) -> Provisioning {
        Provisioning {
            id: device.id.clone(),
            profile: Profile::parse(&device.fields.profile).unwrap_or(Profile::Generic),
            kind: device.fields.kind,
            mqtt: MqttDetails {
                host: self.endpoint.host.clone(),
                port: self.endpoint.port,
                username: device.id.to_string(),
                password: ShownOnce(password),
                ca_cert: self.endpoint.ca_cert.clone(),
                client_id: device.id.to_string(),
            },
            topics,
        }
    }

    pub async fn list(&self) -> Result<Vec<DeviceSummary>, DeviceError> {
        let devices = self.with_store(|store| Ok(store.devices()?)).await?;
        let mut out = Vec::with_capacity(devices.len());
        for d in devices {
            let identity = self.broker.credentials().get(d.id.as_str());
            let live = self.live.get().and_then(|l| l.get(&d.id));
            let online = live.as_ref().is_some_and(|l| l.online)
                || (identity.is_some() && self.broker.is_online(d.id.as_str()).await);
            out.push(DeviceSummary {
                topics: identity.map(|i| topics_of(&i)).unwrap_or_default(),
                online,
                id: d.id,
                status: d.fields.status,
                kind: d.fields.kind,
                profile: d.fields.profile,
                flagged: d.fields.flagged,
                nickname: d.fields.nickname,
                room: d.fields.room,
                vendor: d.fields.vendor,
                model: d.fields.model,
                board: d.fields.board,
                mac: d.fields.mac,
                advertised_name: d.fields.advertised_name,
                voice_name: d.fields.voice_name,
                expose_ha: d.fields.expose_ha,
                expose_voice: d.fields.expose_voice,
                learnt: d.fields.learnt,
                addresses: d.fields.addresses,
                created_at: d.created_at.0,
                reported: live.as_ref().map(Reported::of).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Adopts a pending device: the owner names it, and it gets a credential
    /// and the topic rules of its vendor profile. Nothing an advert says can
    /// do this.
    pub async fn adopt(&self, mut req: Adopt, by: Actor) -> Result<Provisioning, DeviceError> {
        let id = parse_id(&req.id)?;
        // An empty room is no room, from the dashboard's form or the CLI.
        req.room = req.room.filter(|r| !r.is_empty());
        check_name("nickname", &req.nickname)?;
        if let Some(room) = &req.room {
            check_name("room", room)?;
        }
        if req.kind == Some(DeviceKind::Other) {
            return Err(DeviceError::Invalid(
                "a device is adopted as a bulb, light strip, plug, camera, doorbell or sensor".into(),
            ));
        }
        let (password, hash) = new_password()?;
        let device = self
            .with_store(move |store| {
                let mut device = store
                    .device(&id)?
                    .filter(|d| d.fields.status == DeviceStatus::Pending)
                    .ok_or_else(|| DeviceError::NotFound(format!("{id} (or it is not pending)")))?;
                let profile = Profile::parse(&device.fields.profile).unwrap_or(Profile::Generic);
                let topic = device
                    .fields
                    .topic
                    .clone()
                    .filter(|t| vendor::valid_base(t))
                    .unwrap_or_else(|| default_topic(profile, &id));
                let taken = store.devices()?.iter().any(|d| {
                    d.id != id
                        && d.fields.status == DeviceStatus::Adopted
                        && d.fields.topic.as_deref() == Some(&topic)
                });
                if taken {
                    return Err(DeviceError::TopicTaken);
                }
                let f = &mut device.fields;
                f.status = DeviceStatus::Adopted;
                f.nickname = Some(req.nickname);
                f.room = req.room;
                f.topic = Some(topic);
                f.flagged = false;
                if let Some(kind) = req.kind {
                    f.kind = kind;
                }
                store.update_device(&id, f)?;
                store.replace_credential(&id.principal(), MQTT_PASSWORD, &hash)?;
                store.append_audit(&AuditEvent::ok(
                    AuditKind::DeviceAdopted,
                    by,
                    format!("device {id}: credential issued"),
                ))?;
                Ok(device)
            })
            .await?;
        let provisioning = self.issue(&device, password, hash)?;
        tracing::info!(device = %device.id, "device adopted");
        self.tap(&provisioning, true);
        self.changed();
        Ok(provisioning)
    }

    /// Renames an adopted device, or moves it to another room (an empty
    /// room clears it): the CLI's name for [`Devices::update`], so both doors
    /// rename by the same rules.
    pub async fn rename(&self, req: Rename, by: Actor) -> Result<DeviceId, DeviceError> {
        let id = parse_id(&req.id)?;
        check_name("nickname", &req.nickname)?;
        let update = Update {
            nickname: Some(req.nickname),
            room: req.room,
            ..Update::default()
        };
        self.update(&id, update, by).await?;
        Ok(id)
    }

    /// Changes an adopted device's names, room and exposure.
    pub async fn update(&self, id: &DeviceId, req: Update, by: Actor) -> Result<(), DeviceError> {
        for (what, value) in [
            ("nickname", &req.nickname),
            ("room", &req.room),
            ("voice name", &req.voice_name),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                check_name(what, v)?;
            }
        }
        let key = id.clone();
        let renamed = req.nickname.is_some() || req.room.is_some();
        let voice_named = req.voice_name.is_some();
        self.with_store(move |store| {
            let mut device = store
                .device(&key)?
                .filter(|d| d.fields.status == DeviceStatus::Adopted)
                .ok_or_else(|| DeviceError::NotFound(format!("{key} (or it is not adopted)")))?;
            let f = &mut device.fields;
            if let Some(n) = req.nickname {
                if n.is_empty() {
                    return Err(DeviceError::Invalid("a device needs a nickname".into()));
                }
                f.nickname = Some(n);
            }
            if let Some(r) = req.room {
                f.room = Some(r).filter(|r| !r.is_empty());
            }
            if let Some(v) = req.voice_name {
                f.voice_name = Some(v).filter(|v| !v.is_empty());
            }
            if renamed || voice_named {
                check_voice_name(f.nickname.as_deref(), f.voice_name.as_deref())?;
            }
            if req.expose_voice == Some(true) && f.kind.is_sensor() {
                return Err(DeviceError::Invalid(
                    "cameras, doorbells and sensors are never exposed to voice assistants".into(),
                ));
            }
            let newly_ha = req.expose_ha == Some(true) && !f.expose_ha;
            let newly_voice = req.expose_voice == Some(true) && !f.expose_voice;
            let mut changed = Vec::new();
            if renamed {
                changed.push("renamed".to_owned());
            }
            if voice_named {
                changed.push("voice name set".to_owned());
            }
            for (to, was, now) in [
                ("Home Assistant", f.expose_ha, req.expose_ha),
                ("voice assistants", f.expose_voice, req.expose_voice),
            ] {
                match now {
                    Some(true) if !was => changed.push(format!("exposed to {to}")),
                    Some(false) if was => changed.push(format!("no longer exposed to {to}")),
                    _ => {}
                }
            }
            if let Some(e) = req.expose_ha {
                f.expose_ha = e;
            }
            if let Some(e) = req.expose_voice {
                f.expose_voice = e;
            }
            store.update_device(&key, f)?;
            if !changed.is_empty() {
                let kind = if changed.iter().any(|c| c.contains("exposed")) {
                    AuditKind::DeviceExposureChanged
                } else {
                    AuditKind::DeviceRenamed
                };
                store.append_audit(&AuditEvent::ok(
                    kind,
                    by,
                    format!("device {key}: {}", changed.join(", ")),
                ))?;
            }
            use crate::store::warnings::{Exposure, raise_exposed};
            for (newly, to) in [
                (newly_ha, Exposure::HomeAssistant),
                (newly_voice, Exposure::Voice),
            ] {
                if newly {
                    raise_exposed(store, &key, to)?;
                }
            }
            Ok(())
        })
        .await?;
        self.changed();
        Ok(())
    }

    /// Drops a pending device the owner does not want. It may be proposed
    /// again if it keeps advertising.
    pub async fn ignore(&self, id: &DeviceId, by: Actor) -> Result<bool, DeviceError> {
        let key = id.clone();
        let existed = self
            .with_store(move |store| match store.device(&key)? {
                Some(d) if d.fields.status == DeviceStatus::Pending => {
                    store.append_audit(&AuditEvent::ok(
                        AuditKind::DeviceIgnored,
                        by,
                        format!("device {key}"),
                    ))?;
                    Ok(store.forget_device(&key)?)
                }
                Some(_) => Err(DeviceError::Invalid(
                    "only a pending device can be ignored".into(),
                )),
                None => Ok(false),
            })
            .await?;
        self.changed();
        Ok(existed)
    }

    /// Keeps what an adopted device showed it can do. Returns whether the
    /// record gained anything (then the list is marked changed, so
    /// integrations offer the new control).
    pub async fn learn(&self, id: &DeviceId, learnt: Learnt) -> Result<bool, DeviceError> {
        let key = id.clone();
        let gained = self
            .with_store(move |store| {
                let Some(mut device) = store
                    .device(&key)?
                    .filter(|d| d.fields.status == DeviceStatus::Adopted)
                else {
                    return Ok(false);
                };
                if device.fields.learnt.covers(learnt) {
                    return Ok(false);
                }
                device.fields.learnt = device.fields.learnt.union(learnt);
                store.update_device(&key, &device.fields)?;
                Ok(true)
            })
            .await?;
        if gained {
            self.changed();
        }
        Ok(gained)
    }

    /// Sets an adopted device's brightness, then its power, as the owner
    /// asked: at least one of them.
    pub async fn control(
        &self,
        id: &DeviceId,
        power: Option<bool>,
        brightness: Option<u8>,
        color_temp: Option<u16>,
    ) -> Result<(), DeviceError> {
        if power.is_none() && brightness.is_none() && color_temp.is_none() {
            return Err(DeviceError::Invalid(
                "give power, brightness, color_temp or several".into(),
            ));
        }
        if let Some(level) = brightness {
            self.set_brightness(id, level).await?;
        }
        if let Some(mireds) = color_temp {
            self.set_color_temp(id, mireds).await?;
        }
        if let Some(on) = power {
            self.set_power(id, on).await?;
        }
        Ok(())
    }

    /// Switches an adopted device on or off, in its own vendor's scheme,
    /// through hearth's hub link.
    pub async fn set_power(&self, id: &DeviceId, on: bool) -> Result<(), DeviceError> {
        self.command(id, |profile, base| Some(power_command(profile, base, on)))
            .await
    }

    /// How each adopted device's reports are read: its vendor scheme and
    /// topic base, as its ACL has them.
    pub async fn schemes(&self) -> Result<Vec<(DeviceId, Profile, String)>, DeviceError> {
        let devices = self.with_store(|store| Ok(store.devices()?)).await?;
        Ok(devices
            .into_iter()
            .filter(|d| d.fields.status == DeviceStatus::Adopted)
            .filter_map(|d| {
                let profile = Profile::parse(&d.fields.profile).unwrap_or(Profile::Generic);
                let base = d.fields.topic.clone()?;
                Some((d.id, profile, base))
            })
            .collect())
    }

    /// How each adopted device is reached, for the canonical topics.
    pub async fn canonical_schemes(
        &self,
    ) -> Result<Vec<(DeviceId, crate::home::vendor::Scheme)>, DeviceError> {
        let devices = self.adopted().await?;
        Ok(devices
            .into_iter()
            .filter_map(|d| {
                let scheme = crate::home::vendor::Scheme {
                    kind: d.fields.kind,
                    profile: Profile::parse(&d.fields.profile).unwrap_or(Profile::Generic),
                    base: d.fields.topic.clone()?,
                };
                Some((d.id, scheme))
            })
            .collect())
    }

    /// Every adopted device, with its names: for integrations the owner
    /// turned on, never for a log.
    pub async fn adopted(&self) -> Result<Vec<Device>, DeviceError> {
        let devices = self.with_store(|store| Ok(store.devices()?)).await?;
        Ok(devices
            .into_iter()
            .filter(|d| d.fields.status == DeviceStatus::Adopted)
            .collect())
    }

    /// Sets an adopted light's brightness (0 to 100), in its vendor's scheme.
    pub async fn set_brightness(&self, id: &DeviceId, level: u8) -> Result<(), DeviceError> {
        if level > 100 {
            return Err(DeviceError::Invalid("brightness is 0 to 100".into()));
        }
        self.command(id, |profile, base| {
            Some(crate::home::vendor::brightness_command(profile, base, level))
        })
        .await
    }

    /// Sets a light's colour temperature, in mireds, where its firmware
    /// takes one (Shelly's light and switch components do not).
    pub async fn set_color_temp(&self, id: &DeviceId, mireds: u16) -> Result<(), DeviceError> {
        let range = crate::home::vendor::MIREDS;
        if !range.contains(&mireds) {
            return Err(DeviceError::Invalid(format!(
                "colour temperature is {} to {} mireds",
                range.start(),
                range.end()
            )));
        }
        self.command(id, |profile, base| {
            crate::home::vendor::color_temp_command(profile, base, mireds)
        })
        .await
    }

    async fn command(
        &self,
        id: &DeviceId,
        make: impl FnOnce(Profile, &str) -> Option<(String, String)>,
    ) -> Result<(), DeviceError> {
        let key = id.clone();
        let device = self
            .with_store(move |store| {
                store
                    .device(&key)?
                    .filter(|d| d.fields.status == DeviceStatus::Adopted)
                    .ok_or_else(|| DeviceError::NotFound(format!("{key} (or it is not adopted)")))
            })
            .await?;
        let topic_base = device
            .fields
            .topic
            .clone()
            .ok_or_else(|| DeviceError::Invalid("the device has no topic".into()))?;
        let (topic, payload) = make(
            Profile::parse(&device.fields.profile).unwrap_or(Profile::Generic),
            &topic_base,
        )
        .ok_or_else(|| DeviceError::Invalid("this device's firmware takes no such command".into()))?;
        self.broker
            .publish(&topic, payload.into(), 1, false)
            .await
            .map_err(|e| DeviceError::Internal(e.to_string()))?;
        tracing::info!(device = %id, "command sent");
        Ok(())
    }

    /// Forgets a device: its record, every credential and every voice grant
    /// it held go in one transaction (audited), then its identity leaves the
    /// broker, its live session is cut and its live state is dropped; the
    /// list is marked changed, which takes it out of Home Assistant. The
    /// dashboard and the CLI both forget through this. Returns whether it
    /// existed.
    pub async fn forget(&self, id: &DeviceId, by: Actor) -> Result<bool, DeviceError> {
        let key = id.clone();
        let existed = self
            .with_store(move |store| {
                let existed = store.forget_device(&key)?;
                if existed {
                    store.append_audit(&AuditEvent::ok(
                        AuditKind::DeviceForgotten,
                        by,
                        format!("device {key}: credential revoked, record erased"),
                    ))?;
                }
                Ok(existed)
            })
            .await?;
        self.broker.credentials().remove(id.as_str());
        self.broker.kick(id.as_str()).await;
        if let Some(live) = self.live.get() {
            live.forget(id);
        }
        if existed {
            tracing::info!(device = %id, "device forgotten");
        }
        self.changed();
        Ok(existed)
    }

    /// Issues a new password, refuses the old one from now on, and cuts the
    /// session that used it.
    pub async fn rotate(&self, id: &DeviceId, by: Actor) -> Result<Provisioning, DeviceError> {
        let (password, hash) = new_password()?;
        let key = id.clone();
        let device = self
            .with_store(move |store| {
                let device = store
                    .device(&key)?
                    .filter(|d| d.fields.status == DeviceStatus::Adopted)
                    .ok_or_else(|| DeviceError::NotFound(key.to_string()))?;
                store.replace_credential(&key.principal(), MQTT_PASSWORD, &hash)?;
                store.append_audit(&AuditEvent::ok(
                    AuditKind::DeviceCredentialRotated,
                    by,
                    format!("device {key}"),
                ))?;
                Ok(device)
            })
            .await?;
        let provisioning = self.issue(&device, password, hash)?;
        self.broker.kick(id.as_str()).await;
        tracing::info!(device = %id, "device credential rotated");
        self.tap(&provisioning, false);
        Ok(provisioning)
    }
}

/// A new device password (128 random bits) and the hash that is stored.
fn new_password() -> Result<(Secret, TokenHash), DeviceError> {
    let password = random_token(128).map_err(|e| DeviceError::Internal(e.to_string()))?;
    let hash = TokenHash::of(password.expose());
    Ok((password, hash))
}

pub fn parse_id(id: &str) -> Result<DeviceId, DeviceError> {
    DeviceId::parse(id).ok_or_else(|| DeviceError::Invalid("a device id is 32 lower-case hex digits".into()))
}

fn topics_of(identity: &Identity) -> Vec<String> {
    match &identity.principal {
        Principal::Confined { rules } => rules.iter().map(acl::Rule::filter).collect(),
        Principal::Hub => vec!["#".into()],
    }
}

/// Keeps the tracked set equal to the adopted devices: at start, and each
/// time the device list changes (adoption, forgetting), until `token` is
/// cancelled.
pub async fn keep_live_in_step(live: Arc<LiveState>, devices: Arc<Devices>, token: CancellationToken) {
    let mut changes = devices.subscribe_changes();
    loop {
        match devices.schemes().await {
            Ok(schemes) => live.sync(schemes),
            Err(error) => tracing::error!(%error, "live state could not list the adopted devices"),
        }
        tokio::select! {
            _ = token.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

/// Hands what tracked devices show they can do (a colour temperature, a
/// snapshot) to the store, once per device and capability, until `token` is
/// cancelled: Home Assistant and the voice relay then offer the control
/// after a restart too, before the device reports again.
pub async fn remember_learnt(live: Arc<LiveState>, devices: Arc<Devices>, token: CancellationToken) {
    let mut changes = live.subscribe();
    let mut known: HashMap<DeviceId, Learnt> = match devices.adopted().await {
        Ok(adopted) => adopted.into_iter().map(|d| (d.id, d.fields.learnt)).collect(),
        Err(error) => {
            tracing::error!(%error, "live state could not read what devices are known to do");
            HashMap::new()
        }
    };
    // What was heard before this task subscribed.
    let mut pending: Vec<(DeviceId, DeviceState)> = live.snapshot().into_iter().collect();
    loop {
        let change = match pending.pop() {
            Some(heard) => Ok(heard),
            None => tokio::select! {
                _ = token.cancelled() => return,
                change = changes.recv() => change,
            },
        };
        let (id, state) = match change {
            Ok(c) => c,
            // A missed change is seen again: snapshots stay true and a light
            // repeats its colour temperature in every report.
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let now = state.learnt();
        let had = known.get(&id).copied().unwrap_or_default();
        if had.covers(now) {
            continue;
        }
        match devices.learn(&id, now).await {
            Ok(_) => {
                known.insert(id, had.union(now));
            }
            Err(error) => tracing::error!(%error, "what a device can do could not be kept"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::net::pki::{self, TlsFiles};
    use crate::store::DataDir;

    /// Devices over a fresh store and a broker that listens nowhere, with
    /// one pending bulb.
    /// Live state attached and kept in step with the list, as the daemon
    /// runs it, once it tracks `id`; cancel the token and await the handle
    /// to stop it.
    async fn follow_live(
        devices: &Arc<Devices>,
        id: &DeviceId,
    ) -> (
        Arc<LiveState>,
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let live = Arc::new(LiveState::new());
        devices.attach_live(live.clone());
        let token = tokio_util::sync::CancellationToken::new();
        let follow = tokio::spawn(keep_live_in_step(live.clone(), devices.clone(), token.clone()));
        while live.get(id).is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        (live, token, follow)
    }

    async fn pending_device() -> (tempfile::TempDir, Devices, DeviceId) {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("d");
        let mut store = crate::store::open_or_init(&DataDir::new(&data_dir), None).unwrap();
        pki::ensure(&mut store, &data_dir, &pki::server_names(&[])).unwrap();
        let pending = store
            .insert_device(&DeviceFields::new(DeviceKind::Bulb, "esphome"))
            .unwrap()
            .id;
        let files = TlsFiles::in_dir(&data_dir);
        let broker = Broker::listening_nowhere(&files).await;
        let endpoint = MqttEndpoint {
            host: "localhost".into(),
            port: 8883,
            ca_cert: files.ca_cert.clone(),
        };
        let devices = Devices::new(Arc::new(Mutex::new(store)), Arc::new(broker), endpoint);
        (tmp, devices, pending)
    }

    fn adopt(id: &DeviceId) -> Adopt {
        Adopt {
            id: id.to_string(),
            nickname: "Porch".into(),
            room: None,
            kind: None,
        }
    }

    /// The in-process tap `hearth demo` uses: an adoption and a rotation
    /// hand it the very credential the caller got, whoever the caller is; a
    /// device added by hand does not; and what it carries never prints its
    /// password.
    #[tokio::test]
    async fn the_issued_tap_gets_what_adoption_and_rotation_issue() {
        let (_tmp, devices, pending) = pending_device().await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let devices = devices.with_issued_tap(tx);

        let given = devices.adopt(adopt(&pending), Actor::Cli).await.unwrap();
        let issued = rx.try_recv().expect("adoption reaches the tap");
        assert!(issued.adopted);
        assert_eq!(issued.provisioning.id, pending);
        assert_eq!(
            issued.provisioning.mqtt.password.0.expose(),
            given.mqtt.password.0.expose()
        );
        let printed = format!("{issued:?}");
        assert!(!printed.contains(given.mqtt.password.0.expose()), "{printed}");

        let rotated = devices.rotate(&pending, Actor::Cli).await.unwrap();
        let issued = rx.try_recv().expect("rotation reaches the tap");
        assert!(!issued.adopted);
        assert_eq!(
            issued.provisioning.mqtt.password.0.expose(),
            rotated.mqtt.password.0.expose()
        );

        let by_hand = AddDevice {
            profile: Profile::Tasmota,
            kind: DeviceKind::Plug,
            nickname: "Kettle".into(),
            room: None,
            topic: None,
            addresses: Vec::new(),
        };
        devices.add(by_hand, Actor::Cli).await.unwrap();
        assert!(
            rx.try_recv().is_err(),
            "a device added by hand has no simulated firmware"
        );
    }

    /// A device added by hand is announced as an adoption is, so the DNS
    /// resolver matches its `--address` at once (the DNS integration tests
    /// found it matched nothing until a restart).
    #[tokio::test]
    async fn adding_a_device_by_hand_tells_the_watchers() {
        let (_tmp, devices, _) = pending_device().await;
        let mut changes = devices.subscribe_changes();
        changes.mark_unchanged();
        let by_hand = AddDevice {
            profile: Profile::Shelly,
            kind: DeviceKind::Plug,
            nickname: "Porch plug".into(),
            room: None,
            topic: None,
            addresses: vec!["10.53.1.11".parse().unwrap()],
        };
        devices.add(by_hand, Actor::Cli).await.unwrap();
        assert!(changes.has_changed().unwrap(), "an added device went unannounced");
    }

    /// Forgetting is one operation whichever door asks (the dashboard's
    /// DELETE and the CLI's admin socket both call it): when it returns, the
    /// device's credential is out of the broker and its live state is gone,
    /// not only once the live view next follows the device list. Before,
    /// only the dashboard dropped the live state itself.
    #[tokio::test]
    async fn forgetting_drops_the_credential_and_the_live_state_at_once() {
        let (_tmp, devices, id) = pending_device().await;
        let devices = Arc::new(devices);
        devices.adopt(adopt(&id), Actor::Cli).await.unwrap();
        // Live state runs as the daemon runs it.
        let (live, token, follow) = follow_live(&devices, &id).await;
        let on = vendor::StateUpdate {
            power: Some(true),
            ..vendor::StateUpdate::default()
        };
        assert!(live.apply(&id, on));
        assert!(devices.broker.credentials().get(id.as_str()).is_some());

        assert!(devices.forget(&id, Actor::Cli).await.unwrap());
        // Nothing was awaited since: the live view has not run again.
        assert_eq!(live.get(&id), None, "the forgotten device's live state stayed");
        assert!(devices.broker.credentials().get(id.as_str()).is_none());
        assert!(!live.apply(&id, on), "a report after forgetting is ignored");
        assert!(devices.list().await.unwrap().is_empty());
        assert!(!devices.forget(&id, Actor::Cli).await.unwrap());
        token.cancel();
        follow.await.unwrap();
    }

    /// What tells two devices apart reaches the list, as the dashboard and
    /// `hearth devices list --json` both show it; unknown facts are null.
    #[tokio::test]
    async fn the_list_carries_what_tells_devices_apart() {
        let (_tmp, devices, id) = pending_device().await;
        let stored = id.clone();
        devices
            .with_store(move |s| {
                let mut f = s.device(&stored)?.unwrap().fields;
                f.vendor = Some("ESPHome".into());
                f.model = Some("Athom RGBCCT Bulb".into());
                f.board = Some("esp8285".into());
                f.mac = Some("e8:db:84:d4:e5:f6".into());
                f.advertised_name = Some("Athom RGBCCT Bulb d4e5f6".into());
                f.addresses = vec!["192.168.1.41".parse().unwrap()];
                s.update_device(&stored, &f)?;
                Ok(())
            })
            .await
            .unwrap();
        let json = serde_json::to_value(devices.list().await.unwrap()).unwrap();
        let d = &json[0];
        assert_eq!(d["id"], serde_json::json!(id.to_string()));
        assert_eq!(d["vendor"], serde_json::json!("ESPHome"));
        assert_eq!(d["model"], serde_json::json!("Athom RGBCCT Bulb"));
        assert_eq!(d["board"], serde_json::json!("esp8285"));
        assert_eq!(d["mac"], serde_json::json!("e8:db:84:d4:e5:f6"));
        assert_eq!(
            d["advertised_name"],
            serde_json::json!("Athom RGBCCT Bulb d4e5f6")
        );
        assert_eq!(d["addresses"], serde_json::json!(["192.168.1.41"]));
        // A device nothing was announced about says so with nulls.
        devices
            .with_store(|s| {
                s.insert_device(&DeviceFields::new(DeviceKind::Plug, "generic"))?;
                Ok(())
            })
            .await
            .unwrap();
        let json = serde_json::to_value(devices.list().await.unwrap()).unwrap();
        let bare = json
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] != serde_json::json!(id.to_string()))
            .unwrap();
        for field in ["vendor", "model", "board", "mac", "advertised_name"] {
            assert_eq!(bare[field], serde_json::Value::Null, "{field}");
        }
    }

    #[tokio::test]
    async fn the_list_carries_what_each_device_last_reported() {
        let (_tmp, devices, id) = pending_device().await;
        let devices = Arc::new(devices);
        devices.adopt(adopt(&id), Actor::Cli).await.unwrap();
        let listed = |list: Vec<DeviceSummary>| {
            let d = list.into_iter().find(|d| d.id == id).unwrap();
            (
                d.online,
                d.reported.power,
                d.reported.brightness,
                d.reported.color_temp,
            )
        };
        // Before live state tracks it, nothing is claimed.
        assert_eq!(listed(devices.list().await.unwrap()), (false, None, None, None));

        let (live, token, follow) = follow_live(&devices, &id).await;
        let report = vendor::StateUpdate {
            online: Some(true),
            power: Some(true),
            brightness: Some(40),
            color_temp: Some(300),
            ..vendor::StateUpdate::default()
        };
        assert!(live.apply(&id, report));
        assert_eq!(
            listed(devices.list().await.unwrap()),
            (true, Some(true), Some(40), Some(300))
        );
        // As both front doors show it: the fields are there, null or not.
        let json = serde_json::to_value(devices.list().await.unwrap()).unwrap();
        assert_eq!(json[0]["power"], serde_json::json!(true));
        assert_eq!(json[0]["color_temp"], serde_json::json!(300));
        assert_eq!(json[0]["temperature"], serde_json::Value::Null);
        token.cancel();
        follow.await.unwrap();
    }
}
