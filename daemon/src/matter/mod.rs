//! hearth as a Matter bridge (issue 23): rs-matter on a thread of its own,
//! its fabrics in the sealed store, pairing opened only by the owner.
//!
//! rs-matter's futures are neither `Send` nor small, so it runs on one OS
//! thread with a large stack and a local executor (`async_io::block_on`),
//! and talks to the tokio side only through channels. It must never write
//! a fabric or the setup code outside the sealed store, never log a code,
//! a name or an address, and never open pairing but by the owner's action.

pub mod bridge;
pub mod codes;
mod dynamic;
pub mod fabrics;
pub mod kv;
mod node;

use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use rs_matter::dm::clusters::basic_info::BasicInfoConfig;
use rs_matter::dm::devices::test::{TEST_PID, TEST_VID};
use tokio::sync::{mpsc, oneshot};

use crate::discovery::mdns::Service;
use crate::home::devices::Devices;
use crate::home::live::LiveState;
use crate::store::{Actor, AuditEvent, AuditKind, Store, StoreError};
use crate::supervisor::Supervisor;

pub use self::codes::{Codes, Setup};
pub use self::fabrics::Fabric;

/// Matter's own UDP port.
pub const DEFAULT_PORT: u16 = rs_matter::MATTER_PORT;

/// How long an owner's `hearth matter pair` keeps pairing open: the most
/// the spec allows (900 s). Pairing closes sooner once a controller joins.
pub const PAIRING_WINDOW_SECS: u16 = rs_matter::sc::pase::MAX_COMM_WINDOW_TIMEOUT_SECS;

/// The Matter thread's stack: rs-matter's futures are tens of kilobytes
/// each, nested.
const THREAD_STACK: usize = 16 * 1024 * 1024;

/// `[matter]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatterConfig {
    pub enabled: bool,
    pub port: u16,
}

impl Default for MatterConfig {
    fn default() -> Self {
        MatterConfig {
            enabled: false,
            port: DEFAULT_PORT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MatterError {
    #[error("cannot bind Matter's UDP port {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the Matter thread: {0}")]
    Thread(std::io::Error),
    #[error("the Matter stack failed: {0}")]
    Stack(String),
    #[error("the Matter stack has stopped")]
    Stopped,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What hearth tells controllers it is. Test attestation (vendor 0xFFF1)
/// until hearth has a vendor id of its own; no field names the home.
pub fn device_info() -> BasicInfoConfig<'static> {
    BasicInfoConfig {
        vid: TEST_VID,
        pid: TEST_PID,
        hw_ver: 1,
        hw_ver_str: "1",
        sw_ver: 1,
        sw_ver_str: env!("CARGO_PKG_VERSION"),
        serial_no: "hearth",
        manufacturing_date: "20261206",
        product_name: "hearth bridge",
        vendor_name: "hearth",
        device_name: "hearth",
        ..BasicInfoConfig::new()
    }
}

/// A request to the Matter thread.
pub(crate) enum Command {
    /// Open pairing for [`PAIRING_WINDOW_SECS`].
    OpenPairing(oneshot::Sender<Result<(), String>>),
    /// How many fabrics, and whether pairing is open.
    Status(oneshot::Sender<Status>),
    /// The devices to bridge now, each with its endpoint.
    Bridge(Vec<(u16, bridge::Bridged)>),
    /// The controllers (fabrics) that have joined.
    Fabrics(oneshot::Sender<Vec<fabrics::Joined>>),
    /// Removes one fabric (`Some(index)`) or all of them, and closes
    /// every session: how many went.
    RemoveFabrics(Option<u8>, oneshot::Sender<Result<usize, String>>),
    /// Closes pairing if it is open: whether it was.
    ClosePairing(oneshot::Sender<Result<bool, String>>),
}

/// What `hearth matter status` shows: counts only.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub fabrics: usize,
    /// Devices the bridge shows.
    pub bridged: usize,
    pub pairing_open: bool,
    pub port: u16,
}

/// The running bridge, as the rest of hearth sees it.
pub struct Matter {
    commands: mpsc::Sender<Command>,
    store: Arc<Mutex<Store>>,
    setup: Setup,
    port: u16,
}

impl std::fmt::Debug for Matter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matter")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Binds Matter's UDP socket, dual-stack, before anything runs (so a port
/// in use fails the start, not a thread later).
pub fn bind(port: u16) -> Result<UdpSocket, MatterError> {
    let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    UdpSocket::bind(addr).map_err(|source| MatterError::Bind { addr, source })
}

impl Matter {
    /// Starts the Matter thread on `socket`, with the setup code drawn (or
    /// read) from the store. The supervisor's task `matter` stops it.
    pub fn start(
        store: Arc<Mutex<Store>>,
        devices: Arc<Devices>,
        live: Arc<LiveState>,
        socket: UdpSocket,
        publish: tokio::sync::watch::Sender<Vec<Service>>,
        supervisor: &Supervisor,
    ) -> Result<Arc<Matter>, MatterError> {
        let setup = Setup::load_or_create(&mut store.lock().expect("store lock"))?;
        let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
        let (commands, rx) = mpsc::channel(16);
        let (actions, mut actions_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = oneshot::channel();
        let stop = supervisor.token().child_token();
        let thread = {
            let (store, setup, stop) = (store.clone(), setup.clone(), stop.clone());
            std::thread::Builder::new()
                .name("matter".into())
                .stack_size(THREAD_STACK)
                .spawn(move || {
                    let result = node::run(node::Parts {
                        store,
                        setup,
                        socket,
                        commands: rx,
                        actions,
                        publish,
                        stop,
                    });
                    let _ = done_tx.send(result);
                })
                .map_err(MatterError::Thread)?
        };
        supervisor.spawn("matter", move |token| async move {
            let mut done_rx = done_rx;
            let result = tokio::select! {
                _ = token.cancelled() => {
                    stop.cancel();
                    (&mut done_rx).await.ok()
                }
                result = &mut done_rx => result.ok(),
            };
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            // The bridge is an extra: its failure is logged, and the home
            // goes on without it.
            if let Some(Err(error)) = result {
                tracing::error!(%error, "the matter bridge stopped");
            }
            Ok(())
        });
        {
            let devices = devices.clone();
            let store = store.clone();
            let store_for_audit = store.clone();
            supervisor.spawn("matter-actions", move |token| async move {
                // A controller's command goes through the same service as
                // the relay's and the dashboard's.
                loop {
                    let action = tokio::select! {
                        _ = token.cancelled() => return Ok(()),
                        action = actions_rx.recv() => match action {
                            Some(a) => a,
                            None => return Ok(()),
                        },
                    };
                    match action {
                        node::Action::Power(id, on) => {
                            if let Err(error) = devices.set_power(&id, on).await {
                                tracing::warn!(device = %id, %error, "matter: a controller's command was not carried out");
                            }
                        }
                        node::Action::Brightness(id, level) => {
                            if let Err(error) = devices.set_brightness(&id, level).await {
                                tracing::warn!(device = %id, %error, "matter: a controller's command was not carried out");
                            }
                        }
                        node::Action::PairingClosed { joined } => {
                            let detail = if joined { "a controller joined" } else { "the 15 minutes ran out" };
                            audit_blocking(&store, AuditEvent::ok(AuditKind::MatterPairingClosed, Actor::Hearth, detail)).await;
                        }
                        node::Action::Fabrics(joined) => {
                            let store = store.clone();
                            let added = tokio::task::spawn_blocking(move || {
                                fabrics::record(&mut store.lock().expect("store lock"), &joined)
                            })
                            .await;
                            match added {
                                Ok(Ok(added)) => {
                                    for index in added {
                                        audit_blocking(&store_for_audit, AuditEvent::ok(
                                            AuditKind::MatterControllerAdded,
                                            Actor::Hearth,
                                            format!("fabric {index}"),
                                        ))
                                        .await;
                                    }
                                }
                                Ok(Err(error)) => tracing::error!(%error, "matter: the controllers' record could not be saved"),
                                Err(_) => {}
                            }
                        }
                    }
                }
            });
        }
        {
            let (store, commands) = (store.clone(), commands.clone());
            supervisor.spawn("matter-devices", move |token| async move {
                follow_devices(devices, live, store, commands, token).await;
                Ok(())
            });
        }
        tracing::info!(port, "matter bridge started");
        Ok(Arc::new(Matter {
            commands,
            store,
            setup,
            port,
        }))
    }

    /// The setup codes, for the owner.
    pub fn codes(&self) -> Codes {
        self.setup.codes(&device_info())
    }

    /// Opens pairing for [`PAIRING_WINDOW_SECS`], audited, and returns the
    /// codes to pair with.
    pub async fn open_pairing(&self, by: Actor) -> Result<Codes, MatterError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::OpenPairing(tx))
            .await
            .map_err(|_| MatterError::Stopped)?;
        rx.await
            .map_err(|_| MatterError::Stopped)?
            .map_err(MatterError::Stack)?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.lock().expect("store lock").append_audit(&AuditEvent::ok(
                AuditKind::MatterPairingOpened,
                by,
                String::new(),
            ))
        })
        .await
        .map_err(|e| MatterError::Stack(e.to_string()))??;
        tracing::info!(secs = PAIRING_WINDOW_SECS, "matter pairing opened by the owner");
        Ok(self.codes())
    }

    /// Closes pairing before its 15 minutes are up, audited; whether it
    /// was open.
    pub async fn close_pairing(&self, by: Actor) -> Result<bool, MatterError> {
        let (tx, rx) = oneshot::channel();
        self.ask(Command::ClosePairing(tx)).await?;
        let closed = rx
            .await
            .map_err(|_| MatterError::Stopped)?
            .map_err(MatterError::Stack)?;
        if closed {
            self.audit(AuditEvent::ok(AuditKind::MatterPairingClosed, by, "by the owner"))
                .await?;
        }
        Ok(closed)
    }

    /// The controllers that have joined, with when hearth first saw each.
    pub async fn fabrics(&self) -> Result<Vec<Fabric>, MatterError> {
        let (tx, rx) = oneshot::channel();
        self.ask(Command::Fabrics(tx)).await?;
        let joined = rx.await.map_err(|_| MatterError::Stopped)?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || fabrics::list(&store.lock().expect("store lock"), joined))
            .await
            .map_err(|e| MatterError::Stack(e.to_string()))?
            .map_err(MatterError::from)
    }

    /// Removes the controller with fabric `index`, audited: it can no
    /// longer reach hearth, and its sessions end. Whether it was there.
    pub async fn remove_fabric(&self, index: u8, by: Actor) -> Result<bool, MatterError> {
        let removed = self.remove(Some(index)).await?;
        if removed > 0 {
            self.audit(AuditEvent::ok(
                AuditKind::MatterControllerRemoved,
                by,
                format!("fabric {index}"),
            ))
            .await?;
        }
        Ok(removed > 0)
    }

    /// Removes every controller (lockdown, erase), closing pairing too;
    /// how many there were. The caller audits.
    pub async fn remove_all_fabrics(&self) -> Result<usize, MatterError> {
        let (tx, rx) = oneshot::channel();
        self.ask(Command::ClosePairing(tx)).await?;
        rx.await
            .map_err(|_| MatterError::Stopped)?
            .map_err(MatterError::Stack)?;
        self.remove(None).await
    }

    async fn remove(&self, index: Option<u8>) -> Result<usize, MatterError> {
        let (tx, rx) = oneshot::channel();
        self.ask(Command::RemoveFabrics(index, tx)).await?;
        let removed = rx
            .await
            .map_err(|_| MatterError::Stopped)?
            .map_err(MatterError::Stack)?;
        // Forget when the removed ones were added.
        let (tx, rx) = oneshot::channel();
        self.ask(Command::Fabrics(tx)).await?;
        let joined = rx.await.map_err(|_| MatterError::Stopped)?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || fabrics::record(&mut store.lock().expect("store lock"), &joined))
            .await
            .map_err(|e| MatterError::Stack(e.to_string()))??;
        Ok(removed)
    }

    async fn ask(&self, command: Command) -> Result<(), MatterError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| MatterError::Stopped)
    }

    async fn audit(&self, event: AuditEvent) -> Result<(), MatterError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.lock().expect("store lock").append_audit(&event))
            .await
            .map_err(|e| MatterError::Stack(e.to_string()))??;
        Ok(())
    }

    pub async fn status(&self) -> Result<Status, MatterError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Status(tx))
            .await
            .map_err(|_| MatterError::Stopped)?;
        let mut status = rx.await.map_err(|_| MatterError::Stopped)?;
        status.port = self.port;
        Ok(status)
    }
}

/// Appends `event` to the audit log; a failure is logged, not returned
/// (the thread's events have no one to answer).
async fn audit_blocking(store: &Arc<Mutex<Store>>, event: AuditEvent) {
    let store = store.clone();
    if let Ok(Err(error)) =
        tokio::task::spawn_blocking(move || store.lock().expect("store lock").append_audit(&event)).await
    {
        tracing::error!(%error, "matter: an audit entry could not be written");
    }
}

/// How often reachability is looked at again when no device changed.
const REACHABLE_POLL: std::time::Duration = std::time::Duration::from_secs(30);

/// Keeps the bridged set in step with the device list: gives each newly
/// bridged device an endpoint (sealed, never reused) and hands the set to
/// the Matter thread, at once when the list or a bridged device's live
/// state changes, until `token` is cancelled.
async fn follow_devices(
    devices: Arc<Devices>,
    live: Arc<LiveState>,
    store: Arc<Mutex<Store>>,
    commands: mpsc::Sender<Command>,
    token: tokio_util::sync::CancellationToken,
) {
    let mut changes = devices.subscribe_changes();
    let mut reports = live.subscribe();
    let loaded = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || bridge::Endpoints::load(&store.lock().expect("store lock"))).await
    };
    let mut endpoints = match loaded {
        Ok(Ok(e)) => e,
        Ok(Err(error)) => {
            tracing::error!(%error, "matter: the endpoint map does not open; no device is bridged");
            // The node still starts, with no bridged device.
            let _ = commands.send(Command::Bridge(Vec::new())).await;
            return;
        }
        Err(_) => return,
    };
    let mut set: Vec<(u16, bridge::Bridged)> = Vec::new();
    loop {
        match devices.list().await {
            Ok(list) => {
                let bridged = bridge::select(&list);
                match endpoints.assign(bridged.iter().map(|b| &b.device)) {
                    None => tracing::error!("matter: endpoint ids ran out; no new device is bridged"),
                    Some(true) => {
                        let (store, map) = (store.clone(), endpoints.clone());
                        let saved = tokio::task::spawn_blocking(move || {
                            map.save(&mut store.lock().expect("store lock"))
                        })
                        .await;
                        if let Ok(Err(error)) = saved {
                            tracing::error!(%error, "matter: the endpoint map could not be saved");
                        }
                    }
                    Some(false) => {}
                }
                set = bridged
                    .into_iter()
                    .filter_map(|b| Some((endpoints.endpoint(&b.device)?, b)))
                    .collect();
                tracing::debug!(bridged = set.len(), "matter: bridged devices");
            }
            Err(error) => tracing::error!(%error, "matter: the device list could not be read"),
        }
        // Until the list changes (or the poll is due), a bridged device's
        // report is handed on as it comes, without reading the list again.
        let mut dirty = true;
        loop {
            if dirty && commands.send(Command::Bridge(set.clone())).await.is_err() {
                return;
            }
            let report = tokio::select! {
                _ = token.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return } else { None },
                report = reports.recv() => match report {
                    Ok(report) => Some(report),
                    // Missed some: the list tells the state of every device.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = tokio::time::sleep(REACHABLE_POLL) => None,
            };
            let Some((id, state)) = report else { break };
            // Reports of devices not bridged change nothing here.
            dirty = false;
            if let Some((_, b)) = set.iter_mut().find(|(_, b)| b.device == id) {
                b.power = state.power;
                b.brightness = state.brightness;
                b.reachable = state.online;
                dirty = true;
            }
        }
    }
}
