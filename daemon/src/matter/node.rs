//! The Matter thread: the node hearth shows controllers (the root endpoint
//! and an Aggregator, endpoint 1, for the bridged devices to come), run by
//! rs-matter on a local executor. It must never block on tokio, and never
//! be reached but through its command channel.

use std::net::UdpSocket;
use std::num::NonZeroU8;
use std::sync::{Arc, Mutex};

use std::cell::{Cell, RefCell};

use embassy_futures::select::{Either5, select5};
use rs_matter::crypto::{Crypto, default_crypto};
use rs_matter::dm::clusters::decl::bridged_device_basic_information::{
    self as bridged_info, ClusterHandler as _,
};
use rs_matter::dm::clusters::desc::{self, ClusterHandler as _};
use rs_matter::dm::clusters::identify;
use rs_matter::dm::clusters::net_comm::DummyNetworks;
use rs_matter::dm::devices::DEV_TYPE_AGGREGATOR;
use rs_matter::dm::devices::test::{DAC_PRIVKEY, TEST_DEV_ATT};
use rs_matter::dm::networks::unix::UnixNetifs;
use rs_matter::dm::{Async, DataModel, Dataver, Endpoint, endpoints};
use rs_matter::dm::{AttrChangeNotifier, Cluster, InvokeContext, ReadContext};
use rs_matter::error::Error;
use rs_matter::fabric::FabricPersist;
use rs_matter::im::{InteractionModel, InteractionModelState};
use rs_matter::persist::KvBlobStoreAccess;
use rs_matter::respond::DefaultResponder;
use rs_matter::sc::pase::CommWindowState;
use rs_matter::tlv::{TLVBuilderParent, Utf8StrBuilder};
use rs_matter::transport::exchange::MatterBuffers;
use rs_matter::transport::network::NoNetwork;
use rs_matter::utils::init::InitMaybeUninit;
use rs_matter::with;
use rs_matter::{Matter, clusters, devices, root_endpoint};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bridge::Bridged;
use super::dynamic::{self as bridged, Colors, Layout, Levels, OnOffs, Table};
use super::fabrics::Joined;
use super::kv::SealedKv;
use super::{Command, PAIRING_WINDOW_SECS, Setup, Status};
use crate::discovery::mdns::Service;
use crate::store::{DeviceId, Store};

/// The Aggregator's endpoint; bridged devices get ids above it.
pub const AGGREGATOR: u16 = 1;

/// The root endpoint and the Aggregator; bridged endpoints follow.
const FIXED: [Endpoint<'static>; 2] = [
    root_endpoint!(eth),
    Endpoint::new(
        AGGREGATOR,
        devices!(DEV_TYPE_AGGREGATOR),
        clusters!(desc::DescHandler::CLUSTER),
    ),
];

/// A command a controller gave, for the tokio side to carry out through
/// `Devices`, as the relay's are.
#[derive(Debug)]
pub(crate) enum Action {
    Power(DeviceId, bool),
    /// Brightness, 1 to 100.
    Brightness(DeviceId, u8),
    /// Colour temperature, in mireds.
    ColorTemp(DeviceId, u16),
    /// The commissioning window closed by itself: a controller joined, or
    /// its time ran out.
    PairingClosed {
        joined: bool,
    },
    /// The fabrics changed (one joined, or a controller removed itself).
    Fabrics(Vec<Joined>),
}

/// The fabrics rs-matter holds now.
fn joined(matter: &Matter<'_>) -> Vec<Joined> {
    matter.with_state(|s| {
        s.fabrics
            .iter()
            .map(|f| Joined {
                index: f.fab_idx().get(),
                label: f.label().to_owned(),
                vendor_id: f.vendor_id(),
                key: format!("{:016x}{:016x}", f.compressed_fabric_id(), f.node_id()),
            })
            .collect()
    })
}

/// Removes fabric `index`, or all of them, from rs-matter's state and its
/// sealed store; how many went. The caller restarts the transport, which
/// ends their sessions.
fn remove_fabrics<K: KvBlobStoreAccess>(
    matter: &Matter<'_>,
    kv: K,
    index: Option<u8>,
) -> Result<usize, Error> {
    let mut persist = FabricPersist::new(kv);
    let removed = matter.with_state(|s| {
        let gone: Vec<NonZeroU8> = s
            .fabrics
            .iter()
            .map(|f| f.fab_idx())
            .filter(|i| index.is_none_or(|want| i.get() == want))
            .collect();
        for i in &gone {
            s.fabrics.remove(*i)?;
            persist.remove(*i)?;
        }
        Ok::<_, Error>(gone.len())
    })?;
    persist.run()?;
    Ok(removed)
}

/// Bridged Device Basic Information, as the bridged endpoints list it.
pub(super) const BRIDGED_INFO_CLUSTER: Cluster<'static> = BridgedInfo::CLUSTER;

/// Bridged Device Basic Information for every bridged endpoint: the voice
/// name as NodeLabel, whether the device is live as Reachable, and an
/// opaque UniqueID. Nothing else about a device is told.
struct BridgedInfo {
    dataver: Dataver,
    devices: RefCell<Vec<(u16, Bridged)>>,
}

impl BridgedInfo {
    fn device(&self, ep: u16) -> Result<Bridged, Error> {
        self.devices
            .borrow()
            .iter()
            .find(|(e, _)| *e == ep)
            .map(|(_, b)| b.clone())
            .ok_or_else(|| rs_matter::error::ErrorCode::EndpointNotFound.into())
    }

    /// Takes the devices' new state; the attributes that changed, by
    /// endpoint. A device no longer bridged shows as unreachable until
    /// its endpoint leaves the node.
    fn update(&self, set: &[(u16, Bridged)]) -> Vec<(u16, bridged_info::AttributeId)> {
        let mut changed = Vec::new();
        let mut devices = self.devices.borrow_mut();
        // Endpoints that left the node are gone; new ones are listed.
        devices.retain(|(ep, _)| set.iter().any(|(e, _)| e == ep));
        for (ep, b) in set {
            if !devices.iter().any(|(e, _)| e == ep) {
                devices.push((*ep, b.clone()));
            }
        }
        for (ep, old) in devices.iter_mut() {
            let new = set.iter().find(|(e, _)| e == ep).map(|(_, b)| b);
            let reachable = new.is_some_and(|b| b.reachable);
            if old.reachable != reachable {
                old.reachable = reachable;
                changed.push((*ep, bridged_info::AttributeId::Reachable));
            }
            if let Some(new) = new
                && new.label != old.label
            {
                old.label.clone_from(&new.label);
                changed.push((*ep, bridged_info::AttributeId::NodeLabel));
            }
        }
        changed
    }
}

impl bridged_info::ClusterHandler for BridgedInfo {
    const CLUSTER: Cluster<'static> = bridged_info::FULL_CLUSTER
        .with_revision(4)
        .with_attrs(with!(
            required;
            bridged_info::AttributeId::NodeLabel
                | bridged_info::AttributeId::Reachable
                | bridged_info::AttributeId::UniqueID
        ))
        .with_cmds(with!());

    fn dataver(&self) -> u32 {
        self.dataver.get()
    }

    fn dataver_changed(&self) {
        self.dataver.changed();
    }

    fn node_label<P: TLVBuilderParent>(
        &self,
        ctx: impl ReadContext,
        builder: Utf8StrBuilder<P>,
    ) -> Result<P, Error> {
        builder.set(&self.device(ctx.attr().endpoint_id)?.label)
    }

    fn reachable(&self, ctx: impl ReadContext) -> Result<bool, Error> {
        Ok(self.device(ctx.attr().endpoint_id)?.reachable)
    }

    fn unique_id<P: TLVBuilderParent>(
        &self,
        ctx: impl ReadContext,
        builder: Utf8StrBuilder<P>,
    ) -> Result<P, Error> {
        // hearth's own random id: 32 hex digits, the attribute's most.
        builder.set(self.device(ctx.attr().endpoint_id)?.device.as_str())
    }

    fn handle_keep_active(
        &self,
        _ctx: impl InvokeContext,
        _request: bridged_info::KeepActiveRequest<'_>,
    ) -> Result<(), Error> {
        Err(rs_matter::error::ErrorCode::CommandNotFound.into())
    }
}

/// What the thread is handed.
pub(super) struct Parts {
    pub store: Arc<Mutex<Store>>,
    pub setup: Setup,
    pub socket: UdpSocket,
    pub commands: mpsc::Receiver<Command>,
    pub actions: mpsc::UnboundedSender<Action>,
    /// What to publish over mDNS, through discovery's responder.
    pub publish: tokio::sync::watch::Sender<Vec<Service>>,
    pub stop: CancellationToken,
}

fn data_model<'a>(
    layout: &'a Layout,
    mut rand: impl rs_matter::crypto::Rng + Copy,
    info: &'a BridgedInfo,
    table: &'a Table,
) -> impl DataModel + 'a {
    (
        layout,
        endpoints::EthSysHandlerBuilder::new()
            .netif_diag(&UnixNetifs)
            .build(rand)
            .chain(
                |e, c| e == AGGREGATOR && c == desc::DescHandler::CLUSTER.id,
                Async(desc::DescHandler::new_aggregator(Dataver::new_rand(&mut rand)).adapt()),
            )
            .chain(
                |e, c| e > AGGREGATOR && c == desc::DescHandler::CLUSTER.id,
                Async(desc::DescHandler::new(Dataver::new_rand(&mut rand)).adapt()),
            )
            // Identify, which every light and plug device type requires: one
            // handler for all bridged endpoints, with no visible effect
            // (IdentifyType None).
            .chain(
                |e, c| e > AGGREGATOR && c == identify::CLUSTER.id,
                Async(identify::IdentifyHandler::new(Dataver::new_rand(&mut rand)).adapt()),
            )
            .chain(
                |e, c| e > AGGREGATOR && c == BridgedInfo::CLUSTER.id,
                Async(bridged_info::HandlerAdaptor(info)),
            )
            .chain(|e, c| e > AGGREGATOR && c == bridged::ON_OFF, OnOffs(table))
            .chain(|e, c| e > AGGREGATOR && c == bridged::LEVEL, Levels(table))
            .chain(|e, c| e > AGGREGATOR && c == bridged::COLOR, Colors(table)),
    )
}

/// Runs the node until `stop`; blocks the calling thread.
pub(super) fn run(parts: Parts) -> Result<(), String> {
    let info = super::device_info();
    let port = parts.socket.local_addr().map(|a| a.port()).unwrap_or(0);
    let comm = parts.setup.comm_data();
    // rs-matter's state is large: built in place on the heap, not on the
    // stack.
    let mut matter = Box::<Matter<'_>>::new_uninit();
    let matter: &Matter<'_> = matter.init_with(Matter::init(&info, comm, &TEST_DEV_ATT, port));
    let mut buffers = Box::<MatterBuffers>::new_uninit();
    let buffers: &MatterBuffers = buffers.init_with(MatterBuffers::init());
    let state = Box::new(InteractionModelState::<DummyNetworks>::new(DummyNetworks));

    let mut commands = parts.commands;
    // The node is built from the first set of devices to bridge, which
    // follows at once; a change to the set takes a restart for now.
    let devices = loop {
        match commands.blocking_recv() {
            None => return Ok(()),
            Some(Command::Bridge(set)) => break set,
            Some(Command::OpenPairing(reply)) => {
                let _ = reply.send(Err("the Matter bridge is still starting".into()));
            }
            Some(Command::Fabrics(reply)) => {
                let _ = reply.send(Vec::new());
            }
            Some(Command::RemoveFabrics(_, reply)) => {
                let _ = reply.send(Err("the Matter bridge is still starting".into()));
            }
            Some(Command::ClosePairing(reply)) => {
                let _ = reply.send(Ok(false));
            }
            Some(Command::Status(reply)) => {
                let _ = reply.send(Status {
                    fabrics: 0,
                    bridged: 0,
                    pairing_open: false,
                    port: 0,
                });
            }
        }
    };
    let crypto = default_crypto(rand::rng(), DAC_PRIVKEY);
    let mut rand = crypto.rand().map_err(err)?;
    let layout = Layout::new(&FIXED);
    let table = Table::new(parts.actions.clone());
    table.update(&devices, &layout, &mut rand);
    let info = BridgedInfo {
        dataver: Dataver::new_rand(&mut rand),
        devices: RefCell::new(devices.clone()),
    };
    let kv = matter.kv(SealedKv::new(parts.store));
    matter.startup(&kv).map_err(err)?;
    let im = InteractionModel::new(
        matter,
        &crypto,
        buffers,
        data_model(&layout, rand, &info, &table),
        &kv,
        &*state,
    );
    let responder = DefaultResponder::new(&im);
    let socket = async_io::Async::new(parts.socket).map_err(|e| e.to_string())?;
    let stop = parts.stop;
    let actions = parts.actions;
    // Held by one run of `control` at a time.
    let commands = tokio::sync::Mutex::new(commands);
    let rand = RefCell::new(rand);
    // Wakes the mDNS publisher when hearth itself changed what rs-matter
    // publishes (a fabric removed).
    let mdns_changed = tokio::sync::Notify::new();
    // What the last look saw: the window open, and the fabrics.
    let window_open = Cell::new(false);
    let fabrics_before = RefCell::new(joined(matter));
    let _ = actions.send(Action::Fabrics(fabrics_before.borrow().clone()));

    // Ok(true): restart the transport (fabrics were removed, and their
    // sessions must end); Ok(false): stop.
    let control = || async {
        let mut commands = commands.lock().await;
        loop {
            let command = tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok::<bool, Error>(false),
                command = commands.recv() => command,
                _ = async_io::Timer::after(std::time::Duration::from_secs(1)) => {
                    let open = matches!(matter.comm_window_state(), CommWindowState::Open { .. });
                    let now = joined(matter);
                    let more = now.len() > fabrics_before.borrow().len();
                    if window_open.replace(open) && !open {
                        let _ = actions.send(Action::PairingClosed { joined: more });
                    }
                    if *fabrics_before.borrow() != now {
                        let _ = actions.send(Action::Fabrics(now.clone()));
                        *fabrics_before.borrow_mut() = now;
                    }
                    continue;
                }
            };
            match command {
                None => return Ok(false),
                Some(Command::OpenPairing(reply)) => {
                    let result = match matter.comm_window_state() {
                        // Already open: the owner's codes stay the same.
                        CommWindowState::Open { .. } => Ok(()),
                        CommWindowState::Closed => im
                            .open_basic_comm_window(PAIRING_WINDOW_SECS)
                            .map_err(|e| e.to_string()),
                    };
                    if result.is_ok() {
                        window_open.set(true);
                    }
                    let _ = reply.send(result);
                }
                Some(Command::ClosePairing(reply)) => {
                    let result = im.close_comm_window().map_err(|e| e.to_string());
                    // Closed by the owner: not reported as closing by itself.
                    window_open.set(false);
                    let _ = reply.send(result);
                }
                Some(Command::Fabrics(reply)) => {
                    let _ = reply.send(joined(matter));
                }
                Some(Command::RemoveFabrics(index, reply)) => {
                    let result = remove_fabrics(matter, &kv, index);
                    let removed = matches!(result, Ok(n) if n > 0);
                    let now = joined(matter);
                    *fabrics_before.borrow_mut() = now;
                    let _ = reply.send(result.map_err(|e| e.to_string()));
                    if removed {
                        mdns_changed.notify_one();
                        return Ok(true);
                    }
                }
                Some(Command::Bridge(set)) => {
                    let changes = table.update(&set, &layout, &mut *rand.borrow_mut());
                    tracing::debug!(
                        bridged = set.len(),
                        reported = changes.reported,
                        structure = changes.structure,
                        "matter: the bridged set"
                    );
                    for (ep, attr) in info.update(&set) {
                        im.notify_attr_changed(ep, BridgedInfo::CLUSTER.id, attr as _);
                    }
                    if changes.structure {
                        // The root's and the Aggregator's parts lists
                        // changed, and so did the node's configuration.
                        for ep in [0, AGGREGATOR] {
                            im.notify_attr_changed(
                                ep,
                                desc::DescHandler::CLUSTER.id,
                                desc::AttributeId::PartsList as _,
                            );
                        }
                        for ep in &changes.added {
                            im.notify_endpoint_changed(*ep);
                        }
                        im.bump_configuration_version()?;
                    }
                }
                Some(Command::Status(reply)) => {
                    let fabrics = matter.with_state(|s| s.fabrics.iter().count());
                    let pairing_open = matches!(matter.comm_window_state(), CommWindowState::Open { .. });
                    let _ = reply.send(Status {
                        fabrics,
                        bridged: table.len(),
                        pairing_open,
                        port: 0,
                    });
                }
            }
        }
    };

    let publish = parts.publish;
    // After each change rs-matter signals, what it wants published goes
    // to discovery's responder, which adds the host name and address.
    let mdns = || async {
        loop {
            // Rendered outside `mdns_services`, which holds rs-matter's
            // state that rendering reads again.
            let mut wanted = Vec::new();
            matter.mdns_services(|svc| {
                wanted.push(svc);
                Ok(())
            })?;
            let mut services = Vec::new();
            for svc in wanted {
                let mut buf = [0u8; 512];
                let (s, _) = svc.service(matter, &mut buf)?;
                services.push(Service {
                    instance: s.name.to_owned(),
                    ty: s.service_protocol.to_owned(),
                    port: s.port,
                    subtypes: s.service_subtypes.map(str::to_owned).collect(),
                    txt: s.txt_kvs.map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
                });
            }
            publish.send_replace(services);
            tokio::select! {
                _ = matter.transport().wait_mdns() => {}
                _ = mdns_changed.notified() => {}
            }
        }
    };

    let result = async_io::block_on(async {
        im.startup().await?;
        loop {
            let restart = match select5(
                matter.run(&crypto, &socket, &socket, NoNetwork),
                responder.run::<4, 4>(),
                im.run(),
                control(),
                mdns(),
            )
            .await
            {
                Either5::First(r) | Either5::Second(r) | Either5::Third(r) | Either5::Fifth(r) => {
                    r.map(|()| false)
                }
                Either5::Fourth(r) => r,
            }?;
            if !restart {
                return Ok(());
            }
            // Every session ends, so a removed controller's open ones go
            // too; the others reconnect.
            matter.reset_transport()?;
        }
    });
    result.map_err(err)
}

fn err(e: Error) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matter::bridge::Shape;

    fn device(n: u8, label: &str, reachable: bool) -> Bridged {
        Bridged {
            device: DeviceId::parse(&format!("{n:032x}")).unwrap(),
            shape: Shape::Plug,
            label: label.into(),
            reachable,
            power: None,
            brightness: None,
            color_temp: None,
        }
    }

    /// Reachable follows live state, NodeLabel the voice name; a device
    /// no longer bridged leaves; nothing else is reported changed.
    #[test]
    fn bridged_info_follows_the_devices() {
        use bridged_info::AttributeId::{NodeLabel, Reachable};
        let info = BridgedInfo {
            dataver: Dataver::new(0),
            devices: RefCell::new(vec![(2, device(1, "lamp", true)), (3, device(2, "fan", true))]),
        };
        assert_eq!(
            info.update(&[(2, device(1, "lamp", true)), (3, device(2, "fan", true))]),
            []
        );
        // Endpoint 3 leaves the node, 4 joins: neither is a change of an
        // attribute, which only endpoints that stay report.
        assert_eq!(
            info.update(&[(2, device(1, "desk lamp", false)), (4, device(3, "kettle", true))]),
            [(2, Reachable), (2, NodeLabel)]
        );
        assert_eq!(info.device(2).unwrap().label, "desk lamp");
        assert!(!info.device(2).unwrap().reachable);
        assert!(info.device(3).is_err());
        assert_eq!(info.device(4).unwrap().label, "kettle");
    }

    /// The whole stack starts on the sealed store with two bridged
    /// devices, answers, opens pairing (twice is once), and stops when told.
    #[test]
    fn the_node_runs_opens_pairing_and_stops() {
        let (_dir, store) = crate::matter::kv::tests::store();
        let setup = Setup::load_or_create(&mut store.lock().unwrap()).unwrap();
        let socket = UdpSocket::bind("[::1]:0").unwrap();
        let (tx, rx) = mpsc::channel(4);
        let (actions, _actions) = mpsc::unbounded_channel();
        let (publish, published) = tokio::sync::watch::channel(Vec::new());
        let stop = CancellationToken::new();
        let parts = Parts {
            store: store.clone(),
            setup,
            socket,
            commands: rx,
            actions,
            publish,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .stack_size(crate::matter::THREAD_STACK)
            .spawn(move || run(parts))
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let lamp = Bridged {
                device: DeviceId::parse(&"ab".repeat(16)).unwrap(),
                shape: Shape::ColorTemperatureLight,
                label: "desk lamp".into(),
                reachable: true,
                power: Some(true),
                brightness: None,
                color_temp: Some(300),
            };
            let plug = Bridged {
                device: DeviceId::parse(&"cd".repeat(16)).unwrap(),
                shape: Shape::Plug,
                ..lamp.clone()
            };
            tx.send(Command::Bridge(vec![(3, plug), (2, lamp)]))
                .await
                .unwrap();
            let status = || async {
                let (reply, answer) = tokio::sync::oneshot::channel();
                tx.send(Command::Status(reply)).await.unwrap();
                answer.await.unwrap()
            };
            let before = status().await;
            assert_eq!(
                (before.fabrics, before.pairing_open, before.bridged),
                (0, false, 2)
            );
            for _ in 0..2 {
                let (reply, answer) = tokio::sync::oneshot::channel();
                tx.send(Command::OpenPairing(reply)).await.unwrap();
                answer.await.unwrap().unwrap();
            }
            assert!(status().await.pairing_open);
            // Pairing open: `_matterc._udp` goes to discovery's responder.
            let mut published = published;
            let service = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                loop {
                    if let Some(s) = published.borrow_and_update().first().cloned() {
                        break s;
                    }
                    published.changed().await.unwrap();
                }
            })
            .await
            .unwrap();
            assert_eq!(service.ty, "_matterc._udp");
            assert_eq!(service.instance.len(), 16);
            assert!(
                service.subtypes.iter().any(|s| s.starts_with("_L")),
                "{:?}",
                service.subtypes
            );
            assert!(service.txt.iter().any(|(k, _)| k == "D"));
        });
        stop.cancel();
        thread.join().unwrap().unwrap();
        store.lock().unwrap().verify_sealed().unwrap();
    }
}
