//! The Matter thread: the node hearth shows controllers (the root endpoint
//! and an Aggregator, endpoint 1, for the bridged devices to come), run by
//! rs-matter on a local executor. It must never block on tokio, and never
//! be reached but through its command channel.

use std::net::UdpSocket;
use std::num::NonZeroU8;
use std::sync::{Arc, Mutex};

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use embassy_futures::select::{Either5, select5};
use rs_matter::crypto::{Crypto, default_crypto};
use rs_matter::dm::clusters::app::on_off::{
    self, EffectVariantEnum, NoLevelControl, OnOffHandler, OnOffHooks, StartUpOnOffEnum,
};
use rs_matter::dm::clusters::decl::bridged_device_basic_information::{
    self as bridged_info, ClusterHandler as _,
};
use rs_matter::dm::clusters::desc::{self, ClusterHandler as _};
use rs_matter::dm::clusters::net_comm::DummyNetworks;
use rs_matter::dm::devices::DEV_TYPE_AGGREGATOR;
use rs_matter::dm::devices::test::{DAC_PRIVKEY, TEST_DEV_ATT};
use rs_matter::dm::devices::{DEV_TYPE_BRIDGED_NODE, DEV_TYPE_ON_OFF_LIGHT};
use rs_matter::dm::networks::unix::UnixNetifs;
use rs_matter::dm::{Async, DataModel, Dataver, Endpoint, Node, endpoints};
use rs_matter::dm::{
    AsyncHandler, AttrChangeNotifier, Cluster, DeviceType, HandlerContext, InvokeContext, InvokeReply,
    MatchContext, ReadContext, ReadReply, WriteContext,
};
use rs_matter::error::Error;
use rs_matter::fabric::FabricPersist;
use rs_matter::im::{InteractionModel, InteractionModelState};
use rs_matter::persist::KvBlobStoreAccess;
use rs_matter::respond::DefaultResponder;
use rs_matter::sc::pase::CommWindowState;
use rs_matter::tlv::{Nullable, TLVBuilderParent, Utf8StrBuilder};
use rs_matter::transport::exchange::MatterBuffers;
use rs_matter::transport::network::NoNetwork;
use rs_matter::utils::init::InitMaybeUninit;
use rs_matter::with;
use rs_matter::{Matter, clusters, devices, root_endpoint};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bridge::{Bridged, DEV_TYPE_ON_OFF_PLUG_IN_UNIT, Shape};
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

/// Until LevelControl and ColorControl join, every light is shown as an
/// On/Off Light: a controller must not be told of clusters the bridge does
/// not serve.
const LIGHT: &[DeviceType] = &[DEV_TYPE_ON_OFF_LIGHT, DEV_TYPE_BRIDGED_NODE];
const PLUG: &[DeviceType] = &[DEV_TYPE_ON_OFF_PLUG_IN_UNIT, DEV_TYPE_BRIDGED_NODE];

const BRIDGED_CLUSTERS: &[Cluster<'static>] = &[
    desc::DescHandler::CLUSTER,
    BridgedInfo::CLUSTER,
    DeviceOnOff::CLUSTER,
];

fn bridged_endpoint(ep: u16, shape: Shape) -> Endpoint<'static> {
    let types = match shape {
        Shape::Plug => PLUG,
        Shape::OnOffLight | Shape::DimmableLight | Shape::ColorTemperatureLight => LIGHT,
    };
    Endpoint::new(ep, types, BRIDGED_CLUSTERS)
}

/// A command a controller gave, for the tokio side to carry out through
/// `Devices`, as the relay's are.
#[derive(Debug)]
pub(crate) enum Action {
    Power(DeviceId, bool),
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

/// One bridged device's OnOff, as rs-matter's OnOff handler sees it.
struct DeviceOnOff {
    device: DeviceId,
    /// What the device last reported, or a controller last set.
    on: Rc<Cell<bool>>,
    actions: mpsc::UnboundedSender<Action>,
}

impl OnOffHooks for DeviceOnOff {
    const CLUSTER: Cluster<'static> = on_off::FULL_CLUSTER
        .with_revision(6)
        .with_features(on_off::Feature::LIGHTING.bits())
        .with_attrs(with!(
            required;
            on_off::AttributeId::OnOff
                | on_off::AttributeId::GlobalSceneControl
                | on_off::AttributeId::OnTime
                | on_off::AttributeId::OffWaitTime
                | on_off::AttributeId::StartUpOnOff
        ))
        .with_cmds(with!(
            on_off::CommandId::Off
                | on_off::CommandId::On
                | on_off::CommandId::Toggle
                | on_off::CommandId::OffWithEffect
                | on_off::CommandId::OnWithRecallGlobalScene
                | on_off::CommandId::OnWithTimedOff
        ));

    fn on_off(&self) -> bool {
        self.on.get()
    }

    fn set_on_off(&self, on: bool) {
        self.on.set(on);
        // The tokio side gone means hearth is stopping.
        let _ = self.actions.send(Action::Power(self.device.clone(), on));
    }

    fn start_up_on_off(&self) -> Nullable<StartUpOnOffEnum> {
        // The device keeps its own power-on behaviour.
        Nullable::none()
    }

    fn set_start_up_on_off(&self, _value: Nullable<StartUpOnOffEnum>) -> Result<(), Error> {
        Err(rs_matter::error::ErrorCode::InvalidAction.into())
    }

    async fn handle_off_with_effect(&self, _effect: EffectVariantEnum) {}
}

/// One handler's background task.
type Running<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + 'a>>;

/// Every bridged endpoint's OnOff, each rs-matter's own handler, found by
/// endpoint.
struct OnOffs<'a> {
    handlers: Vec<(u16, OnOffHandler<'a, DeviceOnOff, NoLevelControl>)>,
}

impl<'a> OnOffs<'a> {
    fn find(&self, ep: Option<u16>) -> Result<&OnOffHandler<'a, DeviceOnOff, NoLevelControl>, Error> {
        self.handlers
            .iter()
            .find(|(e, _)| Some(*e) == ep)
            .map(|(_, h)| h)
            .ok_or_else(|| rs_matter::error::ErrorCode::EndpointNotFound.into())
    }
}

impl AsyncHandler for OnOffs<'_> {
    async fn read(&self, ctx: impl ReadContext, reply: impl ReadReply) -> Result<(), Error> {
        let h = self.find(Some(ctx.attr().endpoint_id))?;
        on_off::HandlerAsyncAdaptor(h).read(ctx, reply).await
    }

    async fn write(&self, ctx: impl WriteContext) -> Result<(), Error> {
        let h = self.find(Some(ctx.attr().endpoint_id))?;
        on_off::HandlerAsyncAdaptor(h).write(ctx).await
    }

    async fn invoke(&self, ctx: impl InvokeContext, reply: impl InvokeReply) -> Result<(), Error> {
        let h = self.find(Some(ctx.cmd().endpoint_id))?;
        on_off::HandlerAsyncAdaptor(h).invoke(ctx, reply).await
    }

    fn bump_dataver(&self, ctx: impl MatchContext) {
        for (e, h) in &self.handlers {
            if ctx.endpt().is_none_or(|ep| ep == *e) {
                on_off::HandlerAsyncAdaptor(h).bump_dataver(&ctx);
            }
        }
    }

    async fn run(&self, ctx: impl HandlerContext) -> Result<(), Error> {
        let ctx = &ctx;
        let adaptors: Vec<_> = self
            .handlers
            .iter()
            .map(|(_, h)| on_off::HandlerAsyncAdaptor(h))
            .collect();
        let mut runs: Vec<Running<'_>> = adaptors
            .iter()
            .map(|a| Box::pin(a.run(ctx)) as Pin<Box<dyn Future<Output = _>>>)
            .collect();
        if runs.is_empty() {
            return std::future::pending().await;
        }
        std::future::poll_fn(|cx| {
            for run in runs.iter_mut() {
                if let Poll::Ready(r) = run.as_mut().poll(cx) {
                    return Poll::Ready(r);
                }
            }
            Poll::Pending
        })
        .await
    }
}

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
        for (ep, old) in self.devices.borrow_mut().iter_mut() {
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
    endpoints: &'a [Endpoint<'static>],
    mut rand: impl rs_matter::crypto::Rng + Copy,
    info: &'a BridgedInfo,
    on_offs: &'a OnOffs<'a>,
) -> impl DataModel + 'a {
    (
        Node { endpoints },
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
            .chain(
                |e, c| e > AGGREGATOR && c == BridgedInfo::CLUSTER.id,
                Async(bridged_info::HandlerAdaptor(info)),
            )
            .chain(|e, c| e > AGGREGATOR && c == DeviceOnOff::CLUSTER.id, on_offs),
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
    let mut eps: Vec<Endpoint<'static>> = FIXED.into();
    eps.extend(devices.iter().map(|(ep, b)| bridged_endpoint(*ep, b.shape)));
    eps.sort_by_key(|e| e.id);

    let crypto = default_crypto(rand::rng(), DAC_PRIVKEY);
    let mut rand = crypto.rand().map_err(err)?;
    // Each OnOff's state, for what devices report later.
    let mut powers: Vec<(u16, Rc<Cell<bool>>)> = Vec::new();
    let on_offs = OnOffs {
        handlers: devices
            .iter()
            .map(|(ep, b)| {
                let on = Rc::new(Cell::new(b.power.unwrap_or(false)));
                powers.push((*ep, on.clone()));
                let hooks = DeviceOnOff {
                    device: b.device.clone(),
                    on,
                    actions: parts.actions.clone(),
                };
                (
                    *ep,
                    OnOffHandler::new_standalone(Dataver::new_rand(&mut rand), *ep, hooks),
                )
            })
            .collect(),
    };
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
        data_model(&eps, rand, &info, &on_offs),
        &kv,
        &*state,
    );
    let responder = DefaultResponder::new(&im);
    let socket = async_io::Async::new(parts.socket).map_err(|e| e.to_string())?;
    let stop = parts.stop;
    let actions = parts.actions;
    let commands = RefCell::new(commands);
    let bridged = Cell::new(devices.len());
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
        let mut commands = commands.borrow_mut();
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
                    bridged.set(set.len());
                    for (ep, attr) in info.update(&set) {
                        im.notify_attr_changed(ep, BridgedInfo::CLUSTER.id, attr as _);
                    }
                    // What a device reported reaches subscribers; setting
                    // the cell directly sends no command back to it.
                    for (ep, b) in &set {
                        let Some((_, on)) = powers.iter().find(|(e, _)| e == ep) else {
                            continue;
                        };
                        if let Some(power) = b.power
                            && on.get() != power
                        {
                            on.set(power);
                            im.notify_attr_changed(
                                *ep,
                                DeviceOnOff::CLUSTER.id,
                                on_off::AttributeId::OnOff as _,
                            );
                        }
                    }
                }
                Some(Command::Status(reply)) => {
                    let fabrics = matter.with_state(|s| s.fabrics.iter().count());
                    let pairing_open = matches!(matter.comm_window_state(), CommWindowState::Open { .. });
                    let _ = reply.send(Status {
                        fabrics,
                        bridged: bridged.get(),
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

    fn device(n: u8, label: &str, reachable: bool) -> Bridged {
        Bridged {
            device: DeviceId::parse(&format!("{n:032x}")).unwrap(),
            shape: Shape::Plug,
            label: label.into(),
            reachable,
            power: None,
            brightness: None,
        }
    }

    /// Reachable follows live state, NodeLabel the voice name; a device
    /// no longer bridged is unreachable; nothing else is reported changed.
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
        assert_eq!(
            info.update(&[(2, device(1, "desk lamp", false))]),
            [(2, Reachable), (2, NodeLabel), (3, Reachable)]
        );
        assert_eq!(info.device(2).unwrap().label, "desk lamp");
        assert!(!info.device(3).unwrap().reachable);
        assert!(info.device(4).is_err());
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
                shape: Shape::DimmableLight,
                label: "desk lamp".into(),
                reachable: true,
                power: Some(true),
                brightness: None,
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
