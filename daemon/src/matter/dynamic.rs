//! The node's endpoints while it runs: the root and the Aggregator, then
//! one endpoint per bridged device, added and removed as the owner exposes,
//! hides or forgets devices. Each bridged light has rs-matter's OnOff and
//! LevelControl handlers, coupled; each plug its OnOff. A controller's
//! command becomes an [`Action`] for the tokio side; what a device reports
//! reaches the handlers as an out-of-band update, so subscribers hear it.
//!
//! Handlers are allocated once per endpoint and never freed (`Box::leak`):
//! rs-matter couples OnOff and LevelControl by `'a` references, and an
//! endpoint id is never reused, so a removed endpoint's few hundred bytes
//! stay until hearth restarts.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use rs_matter::dm::clusters::app::color_control::{
    self, ColorCapabilitiesBitmap, ColorControlHandler, ColorControlHooks, SetDeviceColor,
};
use rs_matter::dm::clusters::app::level_control::{
    self, AttributeDefaults, LevelControlHandler, LevelControlHooks,
};
use rs_matter::dm::clusters::app::on_off::{
    self, EffectVariantEnum, NoLevelControl, OnOffHandler, OnOffHooks, StartUpOnOffEnum,
};
use rs_matter::dm::clusters::desc::{self, ClusterHandler as _};
use rs_matter::dm::clusters::identify;
use rs_matter::dm::devices::{DEV_TYPE_BRIDGED_NODE, DEV_TYPE_DIMMABLE_LIGHT, DEV_TYPE_ON_OFF_LIGHT};
use rs_matter::dm::{
    AsyncHandler, Cluster, Dataver, DeviceType, Endpoint, HandlerContext, InvokeContext, InvokeReply,
    MatchContext, Metadata, Node, ReadContext, ReadReply, WriteContext,
};
use rs_matter::error::{Error, ErrorCode};
use rs_matter::tlv::Nullable;
use rs_matter::with;
use tokio::sync::{Notify, mpsc};

use super::bridge::{Bridged, DEV_TYPE_COLOR_TEMPERATURE_LIGHT, DEV_TYPE_ON_OFF_PLUG_IN_UNIT, Shape};
use super::node::Action;
use crate::store::DeviceId;

/// The endpoints the node has now, for rs-matter's metadata.
pub(super) struct Layout {
    endpoints: RefCell<Vec<Endpoint<'static>>>,
}

impl Layout {
    pub fn new(fixed: &[Endpoint<'static>]) -> Layout {
        Layout {
            endpoints: RefCell::new(fixed.to_vec()),
        }
    }

    fn set(&self, ep: u16, endpoint: Option<Endpoint<'static>>) {
        let mut eps = self.endpoints.borrow_mut();
        eps.retain(|e| e.id != ep);
        eps.extend(endpoint);
        eps.sort_by_key(|e| e.id);
    }
}

impl Metadata for Layout {
    fn access<F, R>(&self, f: F) -> R
    where
        F: FnOnce(&Node<'_>) -> R,
    {
        let eps = self.endpoints.borrow();
        f(&Node { endpoints: &eps })
    }
}

/// Converts Matter's CurrentLevel (1 to 254) to hearth's brightness (1 to
/// 100), and back.
pub fn brightness_of(level: u8) -> u8 {
    ((u16::from(level.clamp(1, 254)) * 100 + 127) / 254).max(1) as u8
}

pub fn level_of(brightness: u8) -> u8 {
    ((u16::from(brightness.min(100)) * 254 + 50) / 100).max(1) as u8
}

/// How long a controller's command stands against reports that say
/// otherwise, waiting for the device to confirm it.
const SETTLE: Duration = Duration::from_secs(3);

/// Whether a device's `reported` value is to be taken, given what a
/// controller last `asked` for: always once the device has confirmed the
/// command (which ends the wait) or [`SETTLE`] has passed; not while a
/// report of the earlier state may still be on its way.
fn takes<T: PartialEq + Copy>(asked: &Cell<Option<(T, Instant)>>, reported: T, now: Instant) -> bool {
    match asked.get() {
        Some((want, _)) if want == reported => {
            asked.set(None);
            true
        }
        Some((_, at)) if now.duration_since(at) < SETTLE => false,
        _ => {
            asked.set(None);
            true
        }
    }
}

/// What the bridge knows of one device, shared by its clusters' hooks.
struct Shared {
    device: DeviceId,
    on: Cell<bool>,
    /// CurrentLevel, 1 to 254.
    level: Cell<Option<u8>>,
    /// The colour temperature last set, in mireds.
    mireds: Cell<Option<u16>>,
    /// What a controller last asked for, and when, until the device
    /// confirms it: a report of the state before (still on its way) must
    /// not undo it.
    asked_on: Cell<Option<(bool, Instant)>>,
    asked_brightness: Cell<Option<(u8, Instant)>>,
    /// Signalled when the device reported a change of its own.
    reported_on: Notify,
    reported_level: Notify,
    actions: mpsc::UnboundedSender<Action>,
}

/// OnOff for a light: Lighting feature, coupled to LevelControl.
struct LightOnOff(&'static Shared);
/// OnOff for a plug.
struct PlugOnOff(&'static Shared);
/// LevelControl for a light.
struct Level(&'static Shared);
/// ColorControl (colour temperature only) for a light that has one.
struct Color(&'static Shared);

macro_rules! on_off_hooks {
    ($ty:ty, $cluster:expr) => {
        impl OnOffHooks for $ty {
            const CLUSTER: Cluster<'static> = $cluster;

            fn on_off(&self) -> bool {
                self.0.on.get()
            }

            fn set_on_off(&self, on: bool) {
                if self.0.on.replace(on) != on {
                    self.0.asked_on.set(Some((on, Instant::now())));
                    // The tokio side gone means hearth is stopping.
                    let _ = self
                        .0
                        .actions
                        .send(Action::Power(self.0.device.clone(), on));
                }
            }

            fn start_up_on_off(&self) -> Nullable<StartUpOnOffEnum> {
                // The device keeps its own power-on behaviour.
                Nullable::none()
            }

            fn set_start_up_on_off(&self, _value: Nullable<StartUpOnOffEnum>) -> Result<(), Error> {
                Err(ErrorCode::InvalidAction.into())
            }

            async fn handle_off_with_effect(&self, _effect: EffectVariantEnum) {}

            async fn run<F: Fn(on_off::OutOfBandMessage)>(&self, notify: F) {
                loop {
                    self.0.reported_on.notified().await;
                    notify(on_off::OutOfBandMessage::Update);
                }
            }
        }
    };
}

on_off_hooks!(
    LightOnOff,
    on_off::FULL_CLUSTER
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
        ))
);

on_off_hooks!(
    PlugOnOff,
    on_off::FULL_CLUSTER
        .with_revision(6)
        .with_features(0)
        .with_attrs(with!(required; on_off::AttributeId::OnOff))
        .with_cmds(with!(
            on_off::CommandId::Off | on_off::CommandId::On | on_off::CommandId::Toggle
        ))
);

impl LevelControlHooks for Level {
    const MIN_LEVEL: u8 = 1;
    const MAX_LEVEL: u8 = 254;
    const FASTEST_RATE: u8 = 254;
    const CLUSTER: Cluster<'static> = level_control::FULL_CLUSTER
        .with_revision(6)
        .with_features(level_control::Feature::ON_OFF.bits())
        .with_attrs(with!(
            required;
            level_control::AttributeId::CurrentLevel
                | level_control::AttributeId::MinLevel
                | level_control::AttributeId::MaxLevel
                | level_control::AttributeId::OnLevel
                | level_control::AttributeId::Options
        ))
        .with_cmds(with!(
            level_control::CommandId::MoveToLevel
                | level_control::CommandId::Move
                | level_control::CommandId::Step
                | level_control::CommandId::Stop
                | level_control::CommandId::MoveToLevelWithOnOff
                | level_control::CommandId::MoveWithOnOff
                | level_control::CommandId::StepWithOnOff
                | level_control::CommandId::StopWithOnOff
        ));

    fn set_device_level(&self, level: u8) -> Result<Option<u8>, ()> {
        let before = self.0.level.replace(Some(level));
        if before.map(brightness_of) != Some(brightness_of(level)) {
            self.0
                .asked_brightness
                .set(Some((brightness_of(level), Instant::now())));
            let _ = self
                .0
                .actions
                .send(Action::Brightness(self.0.device.clone(), brightness_of(level)));
        }
        Ok(Some(level))
    }

    fn current_level(&self) -> Option<u8> {
        self.0.level.get()
    }

    fn set_current_level(&self, level: Option<u8>) {
        self.0.level.set(level);
    }

    async fn run<F: Fn(level_control::OutOfBandMessage)>(&self, notify: F) {
        loop {
            self.0.reported_level.notified().await;
            if let Some(level) = self.0.level.get() {
                notify(level_control::OutOfBandMessage::Update(level));
            }
        }
    }
}

impl ColorControlHooks for Color {
    const CLUSTER: Cluster<'static> = color_control::FULL_CLUSTER
        .with_revision(9)
        .with_features(color_control::Feature::COLOR_TEMPERATURE.bits())
        .with_attrs(with!(
            required;
            color_control::AttributeId::RemainingTime
                | color_control::AttributeId::ColorTemperatureMireds
                | color_control::AttributeId::ColorMode
                | color_control::AttributeId::Options
                | color_control::AttributeId::NumberOfPrimaries
                | color_control::AttributeId::EnhancedColorMode
                | color_control::AttributeId::ColorCapabilities
                | color_control::AttributeId::ColorTempPhysicalMinMireds
                | color_control::AttributeId::ColorTempPhysicalMaxMireds
                | color_control::AttributeId::CoupleColorTempToLevelMinMireds
                | color_control::AttributeId::StartUpColorTemperatureMireds
        ))
        .with_cmds(with!(
            color_control::CommandId::MoveToColorTemperature
                | color_control::CommandId::MoveColorTemperature
                | color_control::CommandId::StepColorTemperature
                | color_control::CommandId::StopMoveStep
        ));
    const COLOR_CAPABILITIES: ColorCapabilitiesBitmap = ColorCapabilitiesBitmap::COLOR_TEMPERATURE;
    // hearth's range for every vendor: 2,000 to 6,500 K.
    const COLOR_TEMP_PHYSICAL_MIN_MIREDS: u16 = *crate::home::vendor::MIREDS.start();
    const COLOR_TEMP_PHYSICAL_MAX_MIREDS: u16 = *crate::home::vendor::MIREDS.end();

    fn set_device_color(&self, target: SetDeviceColor) -> Result<(), ()> {
        let SetDeviceColor::ColorTemperature { mireds } = target else {
            // Only colour temperature is offered.
            return Err(());
        };
        if self.0.mireds.replace(Some(mireds)) != Some(mireds) {
            let _ = self
                .0
                .actions
                .send(Action::ColorTemp(self.0.device.clone(), mireds));
        }
        Ok(())
    }

    fn start_up_color_temperature_mireds(&self) -> Result<Nullable<u16>, Error> {
        // The device keeps its own power-on colour.
        Ok(Nullable::none())
    }

    fn set_start_up_color_temperature_mireds(&self, _value: Nullable<u16>) -> Result<(), Error> {
        Err(ErrorCode::InvalidAction.into())
    }
}

type LightOnOffHandler = OnOffHandler<'static, LightOnOff, Level>;
type ColorHandler = ColorControlHandler<'static, Color, LightOnOff, Level>;
type LevelHandler = LevelControlHandler<'static, Level, LightOnOff>;
type PlugOnOffHandler = OnOffHandler<'static, PlugOnOff, NoLevelControl>;

/// One handler's background task.
type Running<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + 'a>>;

/// One bridged endpoint's handlers.
#[derive(Clone, Copy)]
enum Handlers {
    /// OnOff, LevelControl, and ColorControl if it has a colour
    /// temperature.
    Light(
        &'static LightOnOffHandler,
        &'static LevelHandler,
        Option<&'static ColorHandler>,
    ),
    Plug(&'static PlugOnOffHandler),
}

const LIGHT_TYPES: &[DeviceType] = &[DEV_TYPE_DIMMABLE_LIGHT, DEV_TYPE_BRIDGED_NODE];
const COLOR_LIGHT_TYPES: &[DeviceType] = &[DEV_TYPE_COLOR_TEMPERATURE_LIGHT, DEV_TYPE_BRIDGED_NODE];
const ON_OFF_LIGHT_TYPES: &[DeviceType] = &[DEV_TYPE_ON_OFF_LIGHT, DEV_TYPE_BRIDGED_NODE];
const PLUG_TYPES: &[DeviceType] = &[DEV_TYPE_ON_OFF_PLUG_IN_UNIT, DEV_TYPE_BRIDGED_NODE];

const LIGHT_CLUSTERS: &[Cluster<'static>] = &[
    desc::DescHandler::CLUSTER,
    identify::CLUSTER,
    super::node::BRIDGED_INFO_CLUSTER,
    LightOnOff::CLUSTER,
    Level::CLUSTER,
];
const COLOR_LIGHT_CLUSTERS: &[Cluster<'static>] = &[
    desc::DescHandler::CLUSTER,
    identify::CLUSTER,
    super::node::BRIDGED_INFO_CLUSTER,
    LightOnOff::CLUSTER,
    Level::CLUSTER,
    Color::CLUSTER,
];
const PLUG_CLUSTERS: &[Cluster<'static>] = &[
    desc::DescHandler::CLUSTER,
    identify::CLUSTER,
    super::node::BRIDGED_INFO_CLUSTER,
    PlugOnOff::CLUSTER,
];

/// The endpoint a bridged device shows as.
pub(super) fn endpoint(ep: u16, shape: Shape) -> Endpoint<'static> {
    match shape {
        Shape::Plug => Endpoint::new(ep, PLUG_TYPES, PLUG_CLUSTERS),
        Shape::OnOffLight => Endpoint::new(ep, ON_OFF_LIGHT_TYPES, LIGHT_CLUSTERS),
        Shape::DimmableLight => Endpoint::new(ep, LIGHT_TYPES, LIGHT_CLUSTERS),
        Shape::ColorTemperatureLight => Endpoint::new(ep, COLOR_LIGHT_TYPES, COLOR_LIGHT_CLUSTERS),
    }
}

struct Live {
    ep: u16,
    shape: Shape,
    shared: &'static Shared,
    handlers: Handlers,
}

/// Every bridged endpoint's clusters, by endpoint id.
pub(super) struct Table {
    live: RefCell<Vec<Live>>,
    /// Signalled when endpoints came or went, so `run` takes up the new set.
    changed: Notify,
    actions: mpsc::UnboundedSender<Action>,
}

/// What changed when the table took a new set.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Changes {
    /// Endpoints that came or went.
    pub structure: bool,
    /// Endpoints that came, whose every attribute is new to subscribers.
    pub added: Vec<u16>,
    /// OnOff or CurrentLevel reported by a device, by endpoint.
    pub reported: usize,
}

impl Table {
    pub fn new(actions: mpsc::UnboundedSender<Action>) -> Table {
        Table {
            live: RefCell::new(Vec::new()),
            changed: Notify::new(),
            actions,
        }
    }

    fn find(&self, ep: u16) -> Result<Handlers, Error> {
        self.live
            .borrow()
            .iter()
            .find(|l| l.ep == ep)
            .map(|l| l.handlers)
            .ok_or_else(|| ErrorCode::EndpointNotFound.into())
    }

    /// Takes the devices to bridge now: adds endpoints for new ones,
    /// removes those gone (from `layout` too), and hands what devices
    /// reported to their handlers.
    pub fn update(
        &self,
        set: &[(u16, Bridged)],
        layout: &Layout,
        rand: &mut impl rs_matter::crypto::Rng,
    ) -> Changes {
        let mut changes = Changes::default();
        let mut live = self.live.borrow_mut();
        let before = live.len();
        // A device that changed shape (a light that reported a colour
        // temperature for the first time) is built again on its endpoint.
        live.retain(|l| {
            let keep = set
                .iter()
                .any(|(ep, b)| *ep == l.ep && b.device == l.shared.device && b.shape == l.shape);
            if !keep {
                layout.set(l.ep, None);
            }
            keep
        });
        changes.structure |= live.len() != before;
        for (ep, b) in set {
            if let Some(l) = live.iter().find(|l| l.ep == *ep) {
                if let Some(power) = b.power
                    && takes(&l.shared.asked_on, power, Instant::now())
                    && l.shared.on.replace(power) != power
                {
                    l.shared.reported_on.notify_one();
                    changes.reported += 1;
                }
                if let Handlers::Light(..) = l.handlers
                    && let Some(brightness) = b.brightness
                    && takes(&l.shared.asked_brightness, brightness.max(1), Instant::now())
                    && l.shared.level.get().map(brightness_of) != Some(brightness.max(1))
                {
                    l.shared.level.set(Some(level_of(brightness)));
                    l.shared.reported_level.notify_one();
                    changes.reported += 1;
                }
                continue;
            }
            let shared: &'static Shared = Box::leak(Box::new(Shared {
                device: b.device.clone(),
                on: Cell::new(b.power.unwrap_or(false)),
                level: Cell::new(Some(level_of(b.brightness.unwrap_or(100)))),
                mireds: Cell::new(b.color_temp),
                asked_on: Cell::new(None),
                asked_brightness: Cell::new(None),
                reported_on: Notify::new(),
                reported_level: Notify::new(),
                actions: self.actions.clone(),
            }));
            let handlers = match b.shape {
                Shape::Plug => Handlers::Plug(Box::leak(Box::new(OnOffHandler::new_standalone(
                    Dataver::new_rand(rand),
                    *ep,
                    PlugOnOff(shared),
                )))),
                Shape::OnOffLight | Shape::DimmableLight | Shape::ColorTemperatureLight => {
                    let on_off: &'static LightOnOffHandler = Box::leak(Box::new(OnOffHandler::new(
                        Dataver::new_rand(rand),
                        *ep,
                        LightOnOff(shared),
                    )));
                    let level: &'static LevelHandler = Box::leak(Box::new(LevelControlHandler::new(
                        Dataver::new_rand(rand),
                        *ep,
                        Level(shared),
                        AttributeDefaults::new(),
                    )));
                    on_off.init(Some(level));
                    level.init(Some(on_off));
                    let color = (b.shape == Shape::ColorTemperatureLight).then(|| {
                        let color: &'static ColorHandler = Box::leak(Box::new(ColorControlHandler::new(
                            Dataver::new_rand(rand),
                            *ep,
                            Color(shared),
                            color_control::AttributeDefaults::new(),
                        )));
                        color.init(Some(on_off));
                        color
                    });
                    Handlers::Light(on_off, level, color)
                }
            };
            layout.set(*ep, Some(endpoint(*ep, b.shape)));
            live.push(Live {
                ep: *ep,
                shape: b.shape,
                shared,
                handlers,
            });
            changes.structure = true;
            changes.added.push(*ep);
        }
        if changes.structure {
            self.changed.notify_one();
        }
        changes
    }

    /// How many endpoints are bridged.
    pub fn len(&self) -> usize {
        self.live.borrow().len()
    }

    /// Every handler's background task, taken up again whenever endpoints
    /// come or go.
    async fn run_all(&self, ctx: &impl HandlerContext) -> Result<(), Error> {
        loop {
            let handlers: Vec<Handlers> = self.live.borrow().iter().map(|l| l.handlers).collect();
            let mut runs: Vec<Running<'_>> = Vec::new();
            for h in handlers {
                match h {
                    Handlers::Light(on_off, level, color) => {
                        runs.push(Box::pin(async move {
                            on_off::HandlerAsyncAdaptor(on_off).run(ctx).await
                        }));
                        runs.push(Box::pin(async move {
                            level_control::HandlerAsyncAdaptor(level).run(ctx).await
                        }));
                        if let Some(color) = color {
                            runs.push(Box::pin(async move {
                                color_control::HandlerAsyncAdaptor(color).run(ctx).await
                            }));
                        }
                    }
                    Handlers::Plug(on_off) => runs.push(Box::pin(async move {
                        on_off::HandlerAsyncAdaptor(on_off).run(ctx).await
                    })),
                }
            }
            let mut changed = std::pin::pin!(self.changed.notified());
            let done = std::future::poll_fn(|cx| {
                if changed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                for run in runs.iter_mut() {
                    if let Poll::Ready(r) = run.as_mut().poll(cx) {
                        return Poll::Ready(Some(r));
                    }
                }
                Poll::Pending
            })
            .await;
            if let Some(result) = done {
                return result;
            }
        }
    }
}

/// The OnOff cluster of every bridged endpoint.
pub(super) struct OnOffs<'a>(pub &'a Table);

/// The LevelControl cluster of every bridged light.
pub(super) struct Levels<'a>(pub &'a Table);

impl AsyncHandler for OnOffs<'_> {
    async fn read(&self, ctx: impl ReadContext, reply: impl ReadReply) -> Result<(), Error> {
        match self.0.find(ctx.attr().endpoint_id)? {
            Handlers::Light(h, _, _) => on_off::HandlerAsyncAdaptor(h).read(ctx, reply).await,
            Handlers::Plug(h) => on_off::HandlerAsyncAdaptor(h).read(ctx, reply).await,
        }
    }

    async fn write(&self, ctx: impl WriteContext) -> Result<(), Error> {
        match self.0.find(ctx.attr().endpoint_id)? {
            Handlers::Light(h, _, _) => on_off::HandlerAsyncAdaptor(h).write(ctx).await,
            Handlers::Plug(h) => on_off::HandlerAsyncAdaptor(h).write(ctx).await,
        }
    }

    async fn invoke(&self, ctx: impl InvokeContext, reply: impl InvokeReply) -> Result<(), Error> {
        match self.0.find(ctx.cmd().endpoint_id)? {
            Handlers::Light(h, _, _) => on_off::HandlerAsyncAdaptor(h).invoke(ctx, reply).await,
            Handlers::Plug(h) => on_off::HandlerAsyncAdaptor(h).invoke(ctx, reply).await,
        }
    }

    fn bump_dataver(&self, ctx: impl MatchContext) {
        for l in self.0.live.borrow().iter() {
            if ctx.endpt().is_none_or(|ep| ep == l.ep) {
                match l.handlers {
                    Handlers::Light(h, _, _) => on_off::HandlerAsyncAdaptor(h).bump_dataver(&ctx),
                    Handlers::Plug(h) => on_off::HandlerAsyncAdaptor(h).bump_dataver(&ctx),
                }
            }
        }
    }

    async fn run(&self, ctx: impl HandlerContext) -> Result<(), Error> {
        self.0.run_all(&ctx).await
    }
}

/// A cluster that only some bridged endpoints have, each endpoint's own
/// handler found with `$pick` (`None`: the endpoint lacks the cluster).
/// `OnOffs::run` runs their tasks.
macro_rules! some_endpoints {
    ($ty:ident, $module:ident, $pick:expr) => {
        impl AsyncHandler for $ty<'_> {
            async fn read(&self, ctx: impl ReadContext, reply: impl ReadReply) -> Result<(), Error> {
                let h = ($pick)(self.0.find(ctx.attr().endpoint_id)?).ok_or(ErrorCode::ClusterNotFound)?;
                $module::HandlerAsyncAdaptor(h).read(ctx, reply).await
            }

            async fn write(&self, ctx: impl WriteContext) -> Result<(), Error> {
                let h = ($pick)(self.0.find(ctx.attr().endpoint_id)?).ok_or(ErrorCode::ClusterNotFound)?;
                $module::HandlerAsyncAdaptor(h).write(ctx).await
            }

            async fn invoke(&self, ctx: impl InvokeContext, reply: impl InvokeReply) -> Result<(), Error> {
                let h = ($pick)(self.0.find(ctx.cmd().endpoint_id)?).ok_or(ErrorCode::ClusterNotFound)?;
                $module::HandlerAsyncAdaptor(h).invoke(ctx, reply).await
            }

            fn bump_dataver(&self, ctx: impl MatchContext) {
                for l in self.0.live.borrow().iter() {
                    if let Some(h) = ($pick)(l.handlers)
                        && ctx.endpt().is_none_or(|ep| ep == l.ep)
                    {
                        $module::HandlerAsyncAdaptor(h).bump_dataver(&ctx);
                    }
                }
            }

            async fn run(&self, _ctx: impl HandlerContext) -> Result<(), Error> {
                std::future::pending().await
            }
        }
    };
}

some_endpoints!(Levels, level_control, |h| match h {
    Handlers::Light(_, level, _) => Some::<&'static LevelHandler>(level),
    Handlers::Plug(_) => None,
});

/// The ColorControl cluster of every bridged light with a colour
/// temperature. rs-matter 0.4.1's handler keeps the colour temperature
/// itself and takes no out-of-band update: a colour temperature the device
/// reports on its own is not reported on to controllers.
pub(super) struct Colors<'a>(pub &'a Table);

some_endpoints!(Colors, color_control, |h| match h {
    Handlers::Light(_, _, color) => color,
    Handlers::Plug(_) => None::<&'static ColorHandler>,
});

/// The cluster ids the bridged endpoints' handlers answer for.
pub(super) const ON_OFF: u32 = LightOnOff::CLUSTER.id;
pub(super) const LEVEL: u32 = Level::CLUSTER.id;
pub(super) const COLOR: u32 = Color::CLUSTER.id;

const _: () = assert!(PlugOnOff::CLUSTER.id == ON_OFF);

#[cfg(test)]
mod tests {
    use super::*;

    /// A report of the state before a controller's command does not undo
    /// the command; the device's confirmation ends the wait, and after
    /// SETTLE any report is taken (the device did not obey).
    #[test]
    fn a_late_report_does_not_undo_a_command() {
        let t0 = Instant::now();
        let asked = Cell::new(Some((false, t0)));
        assert!(
            !takes(&asked, true, t0 + Duration::from_millis(5)),
            "the earlier on, late"
        );
        assert!(
            takes(&asked, false, t0 + Duration::from_millis(20)),
            "the confirmation"
        );
        assert_eq!(asked.get(), None);
        assert!(
            takes(&asked, true, t0 + Duration::from_millis(30)),
            "switched by hand afterwards"
        );
        let asked = Cell::new(Some((40u8, t0)));
        assert!(!takes(&asked, 100, t0 + Duration::from_secs(1)));
        assert!(
            takes(&asked, 100, t0 + SETTLE),
            "never confirmed: the device's word stands"
        );
        assert_eq!(asked.get(), None);
    }

    #[test]
    fn levels_and_brightness_map_both_ways() {
        assert_eq!(brightness_of(254), 100);
        assert_eq!(brightness_of(1), 1);
        assert_eq!(brightness_of(127), 50);
        assert_eq!(level_of(100), 254);
        assert_eq!(level_of(0), 1);
        assert_eq!(level_of(50), 127);
        for b in 1..=100u8 {
            assert_eq!(brightness_of(level_of(b)), b, "{b}");
        }
    }
}
