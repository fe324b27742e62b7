//! Which devices the bridge shows, as what, and on which endpoint: the
//! owner's adopted lights and plugs exposed to voice, under their voice
//! name. Endpoint ids are handed out once and never reused, and the map is
//! kept sealed. It must never show a camera or doorbell, and never tell a
//! controller a nickname, room, model or address.

use std::collections::BTreeMap;

use rs_matter::dm::DeviceType;
use rs_matter::dm::devices::{DEV_TYPE_DIMMABLE_LIGHT, DEV_TYPE_ON_OFF_LIGHT};
use serde::{Deserialize, Serialize};

use crate::home::devices::DeviceSummary;
use crate::store::{DeviceId, DeviceKind, DeviceStatus, Store, StoreError};

/// Color Temperature Light; rs-matter 0.4.1 does not define it.
pub const DEV_TYPE_COLOR_TEMPERATURE_LIGHT: DeviceType = DeviceType {
    dtype: 0x010C,
    drev: 4,
};

/// On/Off Plug-in Unit; rs-matter 0.4.1 does not define it.
pub const DEV_TYPE_ON_OFF_PLUG_IN_UNIT: DeviceType = DeviceType {
    dtype: 0x010A,
    drev: 4,
};

/// The first endpoint a bridged device gets: 0 is the root, 1 the
/// Aggregator.
pub const FIRST_BRIDGED: u16 = 2;

/// The sealed record of the endpoint map.
const RECORD: &str = "matter_endpoints";

/// What a bridged device is to a controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    OnOffLight,
    DimmableLight,
    ColorTemperatureLight,
    Plug,
}

impl Shape {
    /// A device kind as Matter shows it; `None` for what the bridge never
    /// shows (cameras, doorbells, sensors, anything else).
    pub fn of(kind: DeviceKind, color_temp: bool) -> Option<Shape> {
        match kind {
            // hearth's lights all take a brightness (`Devices::set_brightness`).
            DeviceKind::Bulb | DeviceKind::LightStrip if color_temp => Some(Shape::ColorTemperatureLight),
            DeviceKind::Bulb | DeviceKind::LightStrip => Some(Shape::DimmableLight),
            DeviceKind::Plug => Some(Shape::Plug),
            DeviceKind::Camera
            | DeviceKind::Doorbell
            | DeviceKind::MotionSensor
            | DeviceKind::ContactSensor
            | DeviceKind::ClimateSensor
            | DeviceKind::WaterSensor
            | DeviceKind::Other => None,
        }
    }

    pub fn device_type(self) -> DeviceType {
        match self {
            Shape::OnOffLight => DEV_TYPE_ON_OFF_LIGHT,
            Shape::DimmableLight => DEV_TYPE_DIMMABLE_LIGHT,
            Shape::ColorTemperatureLight => DEV_TYPE_COLOR_TEMPERATURE_LIGHT,
            Shape::Plug => DEV_TYPE_ON_OFF_PLUG_IN_UNIT,
        }
    }

    /// Whether it has LevelControl.
    pub fn dimmable(self) -> bool {
        matches!(self, Shape::DimmableLight | Shape::ColorTemperatureLight)
    }
}

/// One device as the bridge shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Bridged {
    pub device: DeviceId,
    pub shape: Shape,
    /// Bridged Device Basic Information's NodeLabel: the voice name, which
    /// the owner chose for assistants' clouds to hear.
    pub label: String,
    /// Bridged Device Basic Information's Reachable: the device is live.
    pub reachable: bool,
    pub power: Option<bool>,
    /// 0 to 100.
    pub brightness: Option<u8>,
    /// Mireds.
    pub color_temp: Option<u16>,
}

impl std::fmt::Debug for Bridged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridged")
            .field("device", &self.device)
            .field("shape", &self.shape)
            .field("reachable", &self.reachable)
            .finish_non_exhaustive()
    }
}

/// The devices to bridge, from the device list: adopted, exposed to voice,
/// with a voice name, and a light or a plug.
pub fn select(devices: &[DeviceSummary]) -> Vec<Bridged> {
    devices
        .iter()
        .filter(|d| d.status == DeviceStatus::Adopted && d.expose_voice)
        .filter_map(|d| {
            // A light has a colour temperature once it has reported one,
            // now or before.
            let shape = Shape::of(d.kind, d.learnt.color_temp || d.reported.color_temp.is_some())?;
            let label = d.voice_name.clone().filter(|v| !v.is_empty())?;
            Some(Bridged {
                device: d.id.clone(),
                shape,
                label,
                reachable: d.online,
                power: d.reported.power,
                brightness: d.reported.brightness,
                color_temp: d.reported.color_temp,
            })
        })
        .collect()
}

/// Which device is on which endpoint, and the next id to hand out. Ids are
/// never reused: a controller that kept an endpoint of a forgotten device
/// must not find another device there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    next: u16,
    map: BTreeMap<DeviceId, u16>,
}

impl Endpoints {
    /// The map kept in the store, or an empty one.
    pub fn load(store: &Store) -> Result<Endpoints, StoreError> {
        let Some(bytes) = store.secret(RECORD)? else {
            return Ok(Endpoints {
                next: FIRST_BRIDGED,
                map: BTreeMap::new(),
            });
        };
        serde_json::from_slice(&bytes).map_err(|_| StoreError::SealedValue {
            table: "secrets",
            column: "value",
            id: RECORD.into(),
            source: crate::store::CryptoError::Malformed("the Matter endpoint map does not decode"),
        })
    }

    pub fn save(&self, store: &mut Store) -> Result<(), StoreError> {
        store.put_secret(RECORD, &serde_json::to_vec(self).expect("the map serialises"))
    }

    /// Gives each of `devices` an endpoint, keeping the ones they had, and
    /// drops the devices no longer bridged; whether anything changed.
    /// `None` once the 16-bit ids run out.
    pub fn assign<'a>(&mut self, devices: impl IntoIterator<Item = &'a DeviceId>) -> Option<bool> {
        let wanted: Vec<&DeviceId> = devices.into_iter().collect();
        let before = self.map.len();
        self.map.retain(|id, _| wanted.contains(&id));
        let mut changed = self.map.len() != before;
        for id in wanted {
            if !self.map.contains_key(id) {
                let ep = self.next;
                self.next = self.next.checked_add(1)?;
                self.map.insert(id.clone(), ep);
                changed = true;
            }
        }
        Some(changed)
    }

    pub fn endpoint(&self, id: &DeviceId) -> Option<u16> {
        self.map.get(id).copied()
    }

    /// The device on an endpoint.
    pub fn device(&self, endpoint: u16) -> Option<&DeviceId> {
        self.map.iter().find(|(_, ep)| **ep == endpoint).map(|(id, _)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> DeviceId {
        DeviceId::parse(&format!("{n:032x}")).unwrap()
    }

    #[test]
    fn shapes_bridge_lights_and_plugs_only() {
        #[track_caller]
        fn check(kind: DeviceKind, ct: bool, want: Option<(Shape, u16)>) {
            let got = Shape::of(kind, ct).map(|s| (s, s.device_type().dtype));
            assert_eq!(got, want, "{kind:?}");
        }
        check(DeviceKind::Bulb, false, Some((Shape::DimmableLight, 0x0101)));
        check(
            DeviceKind::LightStrip,
            false,
            Some((Shape::DimmableLight, 0x0101)),
        );
        check(
            DeviceKind::Bulb,
            true,
            Some((Shape::ColorTemperatureLight, 0x010C)),
        );
        check(DeviceKind::Plug, false, Some((Shape::Plug, 0x010A)));
        check(DeviceKind::Plug, true, Some((Shape::Plug, 0x010A)));
        for never in [
            DeviceKind::Camera,
            DeviceKind::Doorbell,
            DeviceKind::MotionSensor,
            DeviceKind::ContactSensor,
            DeviceKind::ClimateSensor,
            DeviceKind::WaterSensor,
            DeviceKind::Other,
        ] {
            check(never, false, None);
            check(never, true, None);
        }
        assert_eq!(Shape::OnOffLight.device_type().dtype, 0x0100);
        assert!(!Shape::Plug.dimmable() && Shape::DimmableLight.dimmable());
    }

    #[test]
    fn endpoints_are_never_reused_and_kept_sealed() {
        let (dir, store) = crate::matter::kv::tests::store();
        let mut eps = Endpoints::load(&store.lock().unwrap()).unwrap();
        assert_eq!(eps.assign([&id(1), &id(2)]), Some(true));
        assert_eq!((eps.endpoint(&id(1)), eps.endpoint(&id(2))), (Some(2), Some(3)));
        assert_eq!(
            eps.assign([&id(2), &id(1)]),
            Some(false),
            "the same set changes nothing"
        );
        // Device 1 goes, device 3 comes: 3 gets a new id, not 2.
        assert_eq!(eps.assign([&id(2), &id(3)]), Some(true));
        assert_eq!(eps.endpoint(&id(1)), None);
        assert_eq!(eps.endpoint(&id(3)), Some(4));
        assert_eq!(eps.device(3), Some(&id(2)));
        // Device 1 back: a new endpoint again.
        eps.assign([&id(1), &id(2), &id(3)]);
        assert_eq!(eps.endpoint(&id(1)), Some(5));
        eps.save(&mut store.lock().unwrap()).unwrap();
        let again = Endpoints::load(&store.lock().unwrap()).unwrap();
        assert_eq!(again, eps);
        drop(store);
        let mut bytes = std::fs::read(dir.path().join("hearth.db")).unwrap();
        if let Ok(wal) = std::fs::read(dir.path().join("hearth.db-wal")) {
            bytes.extend(wal);
        }
        let needle = id(3).to_string();
        assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()));
        let mut full = Endpoints {
            next: u16::MAX,
            map: BTreeMap::new(),
        };
        assert_eq!(full.assign([&id(1)]), None, "ids ran out");
    }
}
