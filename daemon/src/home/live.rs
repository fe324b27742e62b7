//! Live device state for the dashboard: whether each adopted device is
//! online, its power and brightness, and when it last saw motion, learnt
//! from what it publishes through the broker's hub tap.
//!
//! It holds only the devices the caller tracks (the adopted ones), so a
//! publish can never grow it, and it never writes the store: this state is
//! what devices say, not what the owner decided. It holds no names. The one
//! thing kept is what a device showed it can do (`devices::remember_learnt` hands it
//! to `Devices::learn`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::broker::HubMessage;
use crate::broker::Owner;
use crate::home::vendor::Profile;
use crate::home::vendor::{self, StateUpdate};
use crate::store::{DeviceId, Learnt};

/// How many changes a slow subscriber may fall behind before it lags.
const CHANGES_CAPACITY: usize = 256;

/// What hearth last heard from a device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeviceState {
    pub online: bool,
    pub power: Option<bool>,
    /// 0 to 100.
    pub brightness: Option<u8>,
    /// Mireds; known once the light has reported one.
    pub color_temp: Option<u16>,
    /// Unix seconds.
    pub last_motion_at: Option<u64>,
    /// Unix seconds: a doorbell's last press.
    pub last_press_at: Option<u64>,
    /// Whether the camera has sent a snapshot since hearth started.
    pub snapshots: bool,
    /// A contact sensor: the door or window is open.
    pub open: Option<bool>,
    /// A water sensor: it senses water.
    pub water: Option<bool>,
    /// A climate sensor: tenths of a degree Celsius.
    pub temperature: Option<i16>,
    /// A climate sensor: tenths of a percent of relative humidity.
    pub humidity: Option<u16>,
}

impl DeviceState {
    /// What these reports show the device can do.
    pub fn learnt(&self) -> Learnt {
        Learnt {
            color_temp: self.color_temp.is_some(),
            snapshots: self.snapshots,
        }
    }
}

/// A tracked device: how to read its reports, and what they said.
struct Entry {
    profile: Profile,
    base: String,
    state: DeviceState,
}

/// Every tracked device's state, and a channel of changes to it.
pub struct LiveState {
    devices: Mutex<HashMap<DeviceId, Entry>>,
    changes: broadcast::Sender<(DeviceId, DeviceState)>,
}

impl Default for LiveState {
    fn default() -> LiveState {
        LiveState::new()
    }
}

impl LiveState {
    pub fn new() -> LiveState {
        LiveState {
            devices: Mutex::new(HashMap::new()),
            changes: broadcast::Sender::new(CHANGES_CAPACITY),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, Entry>> {
        // The map is always consistent between statements, so a panic
        // elsewhere while holding the lock leaves nothing half-done.
        self.devices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts tracking an adopted device, whose reports are read in
    /// `profile`'s scheme under `base`. A device tracked already keeps its
    /// state; only how its reports are read changes. Devices whose stored
    /// profile is not an MQTT scheme (HomeKit, RTSP, ...) speak the generic
    /// one, as `devices::identity_of` decides.
    pub fn track(&self, id: DeviceId, profile: Profile, base: &str) {
        let mut devices = self.lock();
        match devices.get_mut(&id) {
            Some(entry) if entry.profile == profile && entry.base == base => {}
            Some(entry) => {
                entry.profile = profile;
                entry.base = base.to_owned();
            }
            None => {
                devices.insert(
                    id,
                    Entry {
                        profile,
                        base: base.to_owned(),
                        state: DeviceState::default(),
                    },
                );
            }
        }
    }

    /// Tracks exactly these devices: new ones start with no state, the
    /// others keep theirs, and devices no longer listed are dropped.
    pub fn sync(&self, schemes: Vec<(DeviceId, Profile, String)>) {
        let keep: std::collections::HashSet<DeviceId> = schemes.iter().map(|(id, _, _)| id.clone()).collect();
        self.lock().retain(|id, _| keep.contains(id));
        for (id, profile, base) in schemes {
            self.track(id, profile, &base);
        }
    }

    /// Stops tracking a device and drops its state. Returns whether it was
    /// tracked.
    pub fn forget(&self, id: &DeviceId) -> bool {
        self.lock().remove(id).is_some()
    }

    pub fn get(&self, id: &DeviceId) -> Option<DeviceState> {
        self.lock().get(id).map(|e| e.state.clone())
    }

    /// Every tracked device's state.
    pub fn snapshot(&self) -> HashMap<DeviceId, DeviceState> {
        self.lock()
            .iter()
            .map(|(id, e)| (id.clone(), e.state.clone()))
            .collect()
    }

    /// Each change to a tracked device's state, with its new state.
    pub fn subscribe(&self) -> broadcast::Receiver<(DeviceId, DeviceState)> {
        self.changes.subscribe()
    }

    /// How a tracked device's reports are read, or `None` if it is not
    /// tracked.
    fn scheme_of(&self, id: &DeviceId) -> Option<(Profile, String)> {
        self.lock().get(id).map(|e| (e.profile, e.base.clone()))
    }

    /// Marks a tracked device online or offline (the broker knows when a
    /// session ends, even when the device's last will is not heard).
    /// Returns whether that changed anything.
    pub fn set_online(&self, id: &DeviceId, online: bool) -> bool {
        self.apply(
            id,
            StateUpdate {
                online: Some(online),
                ..StateUpdate::default()
            },
        )
    }

    /// Applies a report to a tracked device's state, and tells subscribers
    /// if that changed anything. Untracked devices are ignored. Returns
    /// whether the state changed.
    pub fn apply(&self, id: &DeviceId, update: StateUpdate) -> bool {
        self.apply_at(id, update, unix_now())
    }

    fn apply_at(&self, id: &DeviceId, update: StateUpdate, now: u64) -> bool {
        let changed = {
            let mut devices = self.lock();
            let Some(entry) = devices.get_mut(id) else {
                return false;
            };
            let before = entry.state.clone();
            let s = &mut entry.state;
            if let Some(online) = update.online {
                s.online = online;
            }
            if let Some(power) = update.power {
                s.power = Some(power);
            }
            if let Some(b) = update.brightness {
                s.brightness = Some(b.min(100));
            }
            if let Some(m) = update.color_temp {
                s.color_temp = Some(m);
            }
            if update.motion {
                s.last_motion_at = Some(now);
            }
            if update.press {
                s.last_press_at = Some(now);
            }
            if update.snapshot {
                s.snapshots = true;
            }
            if let Some(o) = update.open {
                s.open = Some(o);
            }
            if let Some(w) = update.water {
                s.water = Some(w);
            }
            if let Some(t) = update.temperature {
                s.temperature = Some(t);
            }
            if let Some(h) = update.humidity {
                s.humidity = Some(h.min(1000));
            }
            // A device that reports anything but its going away is online,
            // whether or not its own online message was heard.
            if update.online.is_none() && update != StateUpdate::default() {
                s.online = true;
            }
            (*s != before).then(|| s.clone())
        };
        match changed {
            Some(state) => {
                // No subscriber is not an error: the dashboard may be closed.
                let _ = self.changes.send((id.clone(), state));
                true
            }
            None => false,
        }
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads every message devices publish through the hub tap, and applies
/// what tracked devices report about themselves, until `token` is
/// cancelled or the hub closes.
pub async fn run(live: Arc<LiveState>, mut hub: broadcast::Receiver<HubMessage>, token: CancellationToken) {
    loop {
        let msg = tokio::select! {
            _ = token.cancelled() => return,
            msg = hub.recv() => msg,
        };
        match msg {
            Ok(msg) => handle(&live, &msg),
            Err(RecvError::Lagged(missed)) => {
                // A later report carries the state again; only counts are
                // logged, never what was missed.
                tracing::debug!(missed, "live state fell behind the hub");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Keeps `online` true to the broker's sessions, every `every`, until
/// `token` is cancelled. A device's last will does not pass the hub tap (the
/// broker publishes it, not the device), so without this a device that
/// drops off would look online until it next spoke.
pub async fn watch_sessions(
    live: Arc<LiveState>,
    broker: Arc<crate::broker::Broker>,
    every: std::time::Duration,
    token: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        sweep(&live, |id| {
            let broker = broker.clone();
            async move { broker.is_online(id.as_str()).await }
        })
        .await;
    }
}

/// Sets each tracked device's `online` to whether `connected` says it has a
/// session (its client id is its device id). Both ways, so a device that
/// reconnects between the check and the update is not left offline.
async fn sweep<F, Fut>(live: &LiveState, mut connected: F)
where
    F: FnMut(DeviceId) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let ids: Vec<DeviceId> = live.lock().keys().cloned().collect();
    for id in ids {
        let online = connected(id.clone()).await;
        live.set_online(&id, online);
    }
}

/// One hub message: the credential that published it names the device (the
/// broker's identity is keyed by device id), and only that device's own
/// scheme and base are used to read it.
fn handle(live: &LiveState, msg: &HubMessage) {
    let Owner::Device(id) = &msg.from else {
        return;
    };
    let Some((profile, base)) = live.scheme_of(id) else {
        return;
    };
    if let Some(update) = vendor::parse_state(profile, &base, &msg.topic, &msg.payload) {
        live.apply(id, update);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> DeviceId {
        DeviceId::parse(&format!("{n:032x}")).expect("an id")
    }

    fn power(on: bool) -> StateUpdate {
        StateUpdate {
            power: Some(on),
            ..StateUpdate::default()
        }
    }

    #[test]
    fn apply_changes_state_and_broadcasts_only_changes() {
        let live = LiveState::new();
        let mut changes = live.subscribe();
        live.track(id(1), Profile::Tasmota, "b1");
        assert_eq!(live.get(&id(1)), Some(DeviceState::default()));
        assert!(changes.try_recv().is_err(), "tracking is not a change");

        assert!(live.apply(&id(1), power(true)));
        let want = DeviceState {
            online: true,
            power: Some(true),
            ..DeviceState::default()
        };
        assert_eq!(changes.try_recv().unwrap(), (id(1), want.clone()));
        assert_eq!(live.get(&id(1)), Some(want.clone()));

        // The same report again changes nothing, and says nothing.
        assert!(!live.apply(&id(1), power(true)));
        assert!(!live.apply(&id(1), StateUpdate::default()));
        assert!(changes.try_recv().is_err());

        let dim = StateUpdate {
            brightness: Some(40),
            ..StateUpdate::default()
        };
        assert!(live.apply(&id(1), dim));
        assert_eq!(changes.try_recv().unwrap().1.brightness, Some(40));
        // An absent field keeps what was known.
        assert!(live.apply(&id(1), power(false)));
        let got = changes.try_recv().unwrap().1;
        assert_eq!((got.power, got.brightness), (Some(false), Some(40)));

        assert!(live.set_online(&id(1), false));
        assert!(!changes.try_recv().unwrap().1.online);
        assert!(!live.set_online(&id(1), false));
        assert!(changes.try_recv().is_err());
        // Going offline keeps the last known power and brightness.
        let got = live.get(&id(1)).unwrap();
        assert_eq!(
            (got.online, got.power, got.brightness),
            (false, Some(false), Some(40))
        );
    }

    #[test]
    fn motion_records_the_time_once_per_second() {
        let live = LiveState::new();
        let mut changes = live.subscribe();
        live.track(id(2), Profile::Generic, "cam");
        let motion = StateUpdate {
            motion: true,
            ..StateUpdate::default()
        };
        assert!(live.apply_at(&id(2), motion, 1_000));
        assert_eq!(changes.try_recv().unwrap().1.last_motion_at, Some(1_000));
        assert!(!live.apply_at(&id(2), motion, 1_000));
        assert!(live.apply_at(&id(2), motion, 1_030));
        assert_eq!(live.get(&id(2)).unwrap().last_motion_at, Some(1_030));
    }

    #[test]
    fn untracked_and_forgotten_devices_are_ignored() {
        let live = LiveState::new();
        let mut changes = live.subscribe();
        assert!(!live.apply(&id(3), power(true)));
        assert!(!live.set_online(&id(3), true));
        assert_eq!(live.get(&id(3)), None);
        assert!(live.snapshot().is_empty());

        live.track(id(3), Profile::Shelly, "s1");
        live.track(id(4), Profile::Shelly, "s2");
        assert!(live.apply(&id(3), power(true)));
        assert_eq!(live.snapshot().len(), 2);
        assert!(live.forget(&id(3)));
        assert!(!live.forget(&id(3)));
        assert_eq!(live.get(&id(3)), None);
        assert!(!live.apply(&id(3), power(false)));
        assert_eq!(live.snapshot().keys().collect::<Vec<_>>(), vec![&id(4)]);
        assert_eq!(changes.try_recv().unwrap().0, id(3));
        assert!(changes.try_recv().is_err());
    }

    #[test]
    fn tracking_again_keeps_state_but_rereads_the_scheme() {
        let live = LiveState::new();
        live.track(id(5), Profile::Generic, "old");
        live.apply(&id(5), power(true));
        live.track(id(5), Profile::Generic, "new");
        assert_eq!(live.get(&id(5)).unwrap().power, Some(true));
        let msg = |topic: &str, payload: &'static [u8]| HubMessage {
            from: Owner::Device(id(5)),
            topic: topic.into(),
            payload: bytes::Bytes::from_static(payload),
            retain: false,
        };
        handle(&live, &msg("hearth/old/state", br#"{"state":"OFF"}"#));
        assert_eq!(live.get(&id(5)).unwrap().power, Some(true));
        handle(&live, &msg("hearth/new/state", br#"{"state":"OFF"}"#));
        assert_eq!(live.get(&id(5)).unwrap().power, Some(false));
    }

    #[tokio::test]
    async fn sweep_follows_the_broker_sessions() {
        let live = LiveState::new();
        live.track(id(9), Profile::Generic, "a");
        live.track(id(10), Profile::Generic, "b");
        live.apply(&id(9), power(true));
        let mut changes = live.subscribe();
        // 9 dropped off without a word; 10 connected but has not spoken.
        sweep(&live, |id| async move { id.as_str().ends_with('a') }).await;
        assert!(!live.get(&id(9)).unwrap().online);
        assert!(live.get(&id(10)).unwrap().online);
        let mut got = [changes.try_recv().unwrap(), changes.try_recv().unwrap()];
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!((got[0].0.clone(), got[0].1.online), (id(9), false));
        assert_eq!((got[1].0.clone(), got[1].1.online), (id(10), true));
        // Nothing changed, nothing said; the last power is kept.
        sweep(&live, |id| async move { id.as_str().ends_with('a') }).await;
        assert!(changes.try_recv().is_err());
        assert_eq!(live.get(&id(9)).unwrap().power, Some(true));
    }

    #[tokio::test]
    async fn run_reads_the_hub_by_publisher_and_survives_lag() {
        let live = Arc::new(LiveState::new());
        live.track(id(6), Profile::Esphome, "porch");
        live.track(id(7), Profile::Esphome, "garden");
        let mut changes = live.subscribe();
        let (hub, rx) = broadcast::channel(4);
        let token = CancellationToken::new();
        let msg = |from: Owner, topic: &str, payload: &'static [u8]| HubMessage {
            from,
            topic: topic.into(),
            payload: bytes::Bytes::from_static(payload),
            retain: false,
        };
        // Overflow the channel before the task reads it: it lags, then goes
        // on with what is left.
        for _ in 0..6 {
            hub.send(msg(Owner::Device(id(6)), "porch/status", b"online"))
                .unwrap();
        }
        let task = tokio::spawn(run(live.clone(), rx, token.clone()));
        let next = async |changes: &mut broadcast::Receiver<(DeviceId, DeviceState)>| {
            tokio::time::timeout(std::time::Duration::from_secs(5), changes.recv())
                .await
                .expect("a change")
                .expect("open")
        };
        let (who, state) = next(&mut changes).await;
        assert_eq!((who, state.online), (id(6), true));

        // Another device's topic, the hub's own publish, an untracked
        // device: none of them changes anything. Then a real report.
        hub.send(msg(
            Owner::Device(id(7)),
            "porch/light/main/state",
            br#"{"state":"ON"}"#,
        ))
        .unwrap();
        hub.send(msg(Owner::Hub, "porch/light/main/state", br#"{"state":"ON"}"#))
            .unwrap();
        hub.send(msg(
            Owner::Device(id(8)),
            "porch/light/main/state",
            br#"{"state":"ON"}"#,
        ))
        .unwrap();
        hub.send(msg(
            Owner::Device(id(6)),
            "porch/light/main/state",
            br#"{"state":"ON","brightness":255}"#,
        ))
        .unwrap();
        let (who, state) = next(&mut changes).await;
        assert_eq!(who, id(6));
        assert_eq!((state.power, state.brightness), (Some(true), Some(100)));
        assert_eq!(live.get(&id(7)), Some(DeviceState::default()));
        assert_eq!(live.get(&id(8)), None);

        token.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("run stops when cancelled")
            .unwrap();
    }
}
