//! The devices table: every device hearth knows, pending or adopted, with
//! its fields sealed in one record and its advertised identity behind a
//! blind index.

use std::fmt;
use std::net::IpAddr;

use rusqlite::Transaction;

use super::crypto::{self, CryptoError, DataKey};
use super::insert_credential;
use super::schema;
use super::value::{self};
use super::{
    Credential, CredentialId, DeviceId, Durability, Store, StoreError, UnixTime, indexes, open_bytes,
    seal_bytes, write,
};
use crate::store::secret::{Secret, TokenHash};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Discovered, not trusted, no credential.
    Pending,
    /// Adopted by the owner.
    Adopted,
}

impl DeviceStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Adopted => "adopted",
        }
    }

    pub(super) fn parse(s: &str) -> Option<DeviceStatus> {
        match s {
            "pending" => Some(DeviceStatus::Pending),
            "adopted" => Some(DeviceStatus::Adopted),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Camera,
    Doorbell,
    Bulb,
    Plug,
    LightStrip,
    /// Reports motion (a PIR sensor).
    MotionSensor,
    /// Reports whether a door or window is open.
    ContactSensor,
    /// Reports temperature and humidity.
    ClimateSensor,
    /// Reports water (a leak or flood sensor).
    WaterSensor,
    Other,
}

impl DeviceKind {
    pub const ALL: [DeviceKind; 10] = [
        DeviceKind::Camera,
        DeviceKind::Doorbell,
        DeviceKind::Bulb,
        DeviceKind::Plug,
        DeviceKind::LightStrip,
        DeviceKind::MotionSensor,
        DeviceKind::ContactSensor,
        DeviceKind::ClimateSensor,
        DeviceKind::WaterSensor,
        DeviceKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Camera => "camera",
            DeviceKind::Doorbell => "doorbell",
            DeviceKind::Bulb => "bulb",
            DeviceKind::Plug => "plug",
            DeviceKind::LightStrip => "light_strip",
            DeviceKind::MotionSensor => "motion_sensor",
            DeviceKind::ContactSensor => "contact_sensor",
            DeviceKind::ClimateSensor => "climate_sensor",
            DeviceKind::WaterSensor => "water_sensor",
            DeviceKind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<DeviceKind> {
        DeviceKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether a device of this kind only reports (motion, presses, readings) and
    /// is never commanded.
    pub fn is_sensor(self) -> bool {
        matches!(
            self,
            DeviceKind::Camera
                | DeviceKind::Doorbell
                | DeviceKind::MotionSensor
                | DeviceKind::ContactSensor
                | DeviceKind::ClimateSensor
                | DeviceKind::WaterSensor
        )
    }

    /// Whether a device of this kind sends snapshots.
    pub fn has_camera(self) -> bool {
        matches!(self, DeviceKind::Camera | DeviceKind::Doorbell)
    }

    /// Whether a device of this kind reports motion.
    pub fn senses_motion(self) -> bool {
        matches!(
            self,
            DeviceKind::Camera | DeviceKind::Doorbell | DeviceKind::MotionSensor
        )
    }

    /// Whether a device of this kind dims.
    pub fn dims(self) -> bool {
        matches!(self, DeviceKind::Bulb | DeviceKind::LightStrip)
    }
}

/// Everything stored about a device besides its id. All of it but `status`
/// is sealed on disk.
#[derive(Clone, PartialEq)]
pub struct DeviceFields {
    pub status: DeviceStatus,
    pub kind: DeviceKind,
    pub profile: String,
    pub nickname: Option<String>,
    pub room: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub mac: Option<String>,
    pub addresses: Vec<IpAddr>,
    pub ssid: Option<String>,
    pub stream_url: Option<String>,
    pub device_secret: Option<Secret>,
    pub last_seen: Option<UnixTime>,
    /// The device's MQTT topic base (its Tasmota topic, Shelly prefix,
    /// ESPHome name, or its id for the generic scheme).
    pub topic: Option<String>,
    /// The identity it advertised over mDNS (`mac:…` or `<service>:<name>`).
    pub identity: Option<String>,
    /// Set when an advert claimed this adopted device's identity from
    /// an address it was not adopted at: shown to the owner, never followed.
    pub flagged: bool,
    /// What voice assistants call it, when exposed to them.
    pub voice_name: Option<String>,
    /// Exposed to Home Assistant (off until the owner turns it on).
    pub expose_ha: bool,
    /// Exposed to voice assistants through the relay (off until the owner
    /// turns it on).
    pub expose_voice: bool,
    /// What the device has shown it can do, kept across restarts.
    pub learnt: Learnt,
    /// A pending device: the address its first advert came from, so that no
    /// one address can fill the pending list.
    pub heard_from: Option<IpAddr>,
    /// The board an ESPHome node (or Espressif camera) said it runs on:
    /// not its model.
    pub board: Option<String>,
    /// The name it announced itself by over mDNS (an ESPHome friendly
    /// name, else its instance name), for the owner to tell devices apart.
    pub advertised_name: Option<String>,
}

/// What hearth has learnt a device can do from its own reports, beyond
/// what its kind says. Only ever gained: a light that once reported a colour
/// temperature keeps the control after a restart, before it reports again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Learnt {
    /// It has reported a colour temperature.
    pub color_temp: bool,
    /// It has sent a snapshot.
    pub snapshots: bool,
}

impl Learnt {
    /// Everything either knows.
    pub fn union(self, other: Learnt) -> Learnt {
        Learnt {
            color_temp: self.color_temp || other.color_temp,
            snapshots: self.snapshots || other.snapshots,
        }
    }

    /// Whether `other` adds nothing to this.
    pub fn covers(self, other: Learnt) -> bool {
        self.union(other) == self
    }
}

impl DeviceFields {
    /// A pending device of `kind` and `profile` with nothing else known.
    pub fn new(kind: DeviceKind, profile: impl Into<String>) -> DeviceFields {
        DeviceFields {
            status: DeviceStatus::Pending,
            kind,
            profile: profile.into(),
            nickname: None,
            room: None,
            vendor: None,
            model: None,
            firmware: None,
            mac: None,
            addresses: Vec::new(),
            ssid: None,
            stream_url: None,
            device_secret: None,
            last_seen: None,
            topic: None,
            identity: None,
            flagged: false,
            voice_name: None,
            expose_ha: false,
            expose_voice: false,
            learnt: Learnt::default(),
            heard_from: None,
            board: None,
            advertised_name: None,
        }
    }
}

/// Only the status is shown: every other field describes the home.
impl fmt::Debug for DeviceFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceFields")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    pub id: DeviceId,
    pub created_at: UnixTime,
    pub fields: DeviceFields,
}

impl Store {
    pub fn insert_device(&mut self, fields: &DeviceFields) -> Result<Device, StoreError> {
        let id = DeviceId::generate()?;
        let device = Device {
            id,
            created_at: UnixTime::now(),
            fields: fields.clone(),
        };
        let key = &self.key;
        write(&mut self.conn, Durability::Normal, |tx| {
            let mut stmt = tx.prepare_cached(schema::INSERT_DEVICE)?;
            let row = seal_device(key, &device)?;
            stmt.execute(rusqlite::params_from_iter(row.iter()))?;
            Ok(())
        })?;
        Ok(device)
    }

    /// Inserts a device and its first credential in one transaction, so no
    /// device exists without the credential it was provisioned with.
    pub fn insert_device_with_credential(
        &mut self,
        id: DeviceId,
        fields: &DeviceFields,
        kind: &str,
        hash: &TokenHash,
    ) -> Result<(Device, Credential), StoreError> {
        let device = Device {
            id,
            created_at: UnixTime::now(),
            fields: fields.clone(),
        };
        let cred = Credential {
            id: CredentialId::generate()?,
            principal: device.id.principal(),
            kind: kind.to_owned(),
            expires_at: None,
            created_at: device.created_at,
        };
        let key = &self.key;
        write(&mut self.conn, Durability::Full, |tx| {
            let mut stmt = tx.prepare_cached(schema::INSERT_DEVICE)?;
            stmt.execute(rusqlite::params_from_iter(seal_device(key, &device)?.iter()))?;
            insert_credential(tx, key, &cred, hash)
        })?;
        Ok((device, cred))
    }

    /// Replaces every field of an existing device.
    pub fn update_device(&mut self, id: &DeviceId, fields: &DeviceFields) -> Result<(), StoreError> {
        let key = &self.key;
        write(&mut self.conn, Durability::Normal, |tx| {
            update_device_in(tx, key, id, fields)
        })
    }

    /// Inserts or updates many devices in one transaction.
    pub fn update_devices(&mut self, devices: &[(DeviceId, DeviceFields)]) -> Result<(), StoreError> {
        let key = &self.key;
        write(&mut self.conn, Durability::Normal, |tx| {
            for (id, fields) in devices {
                update_device_in(tx, key, id, fields)?;
            }
            Ok(())
        })
    }

    pub fn device(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        let sql = format!("{} WHERE id = ?1", schema::SELECT_DEVICES);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([id.as_str()])?;
        match rows.next()? {
            Some(row) => Ok(Some(open_device(&self.key, row, &mut Vec::new())?)),
            None => Ok(None),
        }
    }

    /// Every device, pending and adopted, in id order.
    pub fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let mut stmt = self.conn.prepare_cached(schema::SELECT_DEVICES)?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        let mut scratch = Vec::with_capacity(512);
        while let Some(row) = rows.next()? {
            out.push(open_device(&self.key, row, &mut scratch)?);
        }
        Ok(out)
    }

    /// Finds a device by MAC through the blind index; the MAC is normalised
    /// to lower case first.
    pub fn device_by_mac(&self, mac: &str) -> Result<Option<Device>, StoreError> {
        let mac = mac.to_ascii_lowercase();
        let index = |k: &DataKey| k.blind_index("devices.mac", mac.as_bytes());
        let (now, before) = indexes(&self.key, index);
        let sql = format!("{} WHERE mac_index IN (?1, ?2)", schema::SELECT_DEVICES);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([now.as_slice(), before.as_slice()])?;
        match rows.next()? {
            Some(row) => Ok(Some(open_device(&self.key, row, &mut Vec::new())?)),
            None => Ok(None),
        }
    }

    /// The device that advertised `identity`, through the blind index.
    pub fn device_by_identity(&self, identity: &str) -> Result<Option<Device>, StoreError> {
        let (now, before) = indexes(&self.key, |k| identity_index(k, identity));
        let sql = format!("{} WHERE ident_index IN (?1, ?2)", schema::SELECT_DEVICES);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([now.as_slice(), before.as_slice()])?;
        match rows.next()? {
            Some(row) => Ok(Some(open_device(&self.key, row, &mut Vec::new())?)),
            None => Ok(None),
        }
    }

    /// How many devices are pending.
    pub fn pending_count(&self) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM devices WHERE status = 'pending'", [], |r| {
                r.get::<_, i64>(0)
            })? as usize)
    }

    /// Removes a device and every credential it held, in one transaction.
    /// Returns whether it existed.
    pub fn forget_device(&mut self, id: &DeviceId) -> Result<bool, StoreError> {
        let principal = id.principal();
        write(&mut self.conn, Durability::Full, |tx| {
            tx.execute("DELETE FROM credentials WHERE principal = ?1", [&principal])?;
            Ok(tx.execute("DELETE FROM devices WHERE id = ?1", [id.as_str()])? > 0)
        })
    }
}

pub(super) fn identity_index(key: &DataKey, identity: &str) -> [u8; crypto::BLIND_INDEX_LEN] {
    key.blind_index("devices.identity", identity.as_bytes())
}

pub(super) fn update_device_in(
    tx: &Transaction<'_>,
    key: &DataKey,
    id: &DeviceId,
    fields: &DeviceFields,
) -> Result<(), StoreError> {
    // created_at lives in the record and never changes: keep the stored one.
    let created_at = {
        let mut stmt = tx.prepare_cached("SELECT record FROM devices WHERE id = ?1")?;
        let mut rows = stmt.query([id.as_str()])?;
        let Some(row) = rows.next()? else {
            return Err(StoreError::NotFound("device"));
        };
        let mut scratch = Vec::new();
        let record = open_bytes(key, row, 0, ("devices", "record", id.as_str()), &mut scratch)?;
        value::decode_device_record(record, fields.status)
            .ok_or_else(|| undecodable(id.as_str()))?
            .1
    };
    let device = Device {
        id: id.clone(),
        created_at,
        fields: fields.clone(),
    };
    let mut stmt = tx.prepare_cached(schema::UPDATE_DEVICE)?;
    stmt.execute(rusqlite::params_from_iter(seal_device(key, &device)?.iter()))?;
    // A device withdrawn from voice assistants leaves every account link
    // in the same transaction; cameras and doorbells are never in one.
    let voice = fields.status == DeviceStatus::Adopted
        && fields.expose_voice
        && !matches!(fields.kind, DeviceKind::Camera | DeviceKind::Doorbell);
    if !voice {
        tx.prepare_cached("DELETE FROM relay_link_devices WHERE device_id = ?1")?
            .execute([id.as_str()])?;
    }
    Ok(())
}

pub(super) fn undecodable(id: &str) -> StoreError {
    StoreError::SealedValue {
        table: "devices",
        column: "record",
        id: id.to_owned(),
        source: CryptoError::Malformed("record does not decode"),
    }
}

/// The column values of a device row, in `schema::INSERT_DEVICE` order.
pub(super) fn seal_device(key: &DataKey, d: &Device) -> Result<Vec<rusqlite::types::Value>, StoreError> {
    use rusqlite::types::Value;
    let pk = d.id.as_str();
    let f = &d.fields;
    let mac_index = match &f.mac {
        Some(mac) => Value::Blob(
            key.blind_index("devices.mac", mac.to_ascii_lowercase().as_bytes())
                .to_vec(),
        ),
        None => Value::Null,
    };
    let ident_index = match &f.identity {
        Some(identity) => Value::Blob(identity_index(key, identity).to_vec()),
        None => Value::Null,
    };
    let record = value::encode_device_record(f, d.created_at);
    Ok(vec![
        Value::Text(pk.to_owned()),
        Value::Text(f.status.as_str().to_owned()),
        mac_index,
        Value::Text(key.id().to_hex()),
        Value::Blob(seal_bytes(key, "devices", "record", pk, &record)?),
        ident_index,
    ])
}

pub(super) fn open_device(
    key: &DataKey,
    row: &rusqlite::Row<'_>,
    scratch: &mut Vec<u8>,
) -> Result<Device, StoreError> {
    let text =
        |i| -> Result<&str, StoreError> { Ok(row.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?) };
    let id = text(0)?;
    let status = DeviceStatus::parse(text(1)?).ok_or_else(|| StoreError::SealedValue {
        table: "devices",
        column: "status",
        id: id.to_owned(),
        source: CryptoError::Malformed("unknown status"),
    })?;
    let record = open_bytes(key, row, 4, ("devices", "record", id), scratch)?;
    let (fields, created_at) = value::decode_device_record(record, status).ok_or_else(|| undecodable(id))?;
    Ok(Device {
        id: DeviceId(id.to_owned()),
        created_at,
        fields,
    })
}
