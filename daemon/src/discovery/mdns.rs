//! hearth's own mDNS querier and responder (RFC 6762, RFC 6763), with
//! bounded memory.
//!
//! A general-purpose mDNS library caches every record it is sent until the
//! record's TTL, which the sender chooses; a flood of adverts with new names
//! therefore grows its memory for as long as the flood lasts (measured with
//! mdns-sd: about 1.4 MB/s under 10,000 adverts/s). hearth needs far less
//! than a general cache, so it keeps only:
//!
//! - instances of the browsed service types, at most [`MAX_INSTANCES`];
//! - addresses of hosts that a cached instance names, at most [`MAX_HOSTS`],
//!   each with at most [`MAX_ADDRESSES`] addresses.
//!
//! A full table evicts its least recently seen entry. Packets are parsed at
//! most [`MAX_PACKETS_PER_SEC`] a second, only from sources inside the subnet
//! of a chosen interface, and the rest are dropped unread. Resolution
//! queries are rate-limited too, so a flood cannot make hearth flood back.
//!
//! Receiving is IPv4; AAAA records that IPv4 packets carry are kept.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::classify::{Advert, MAX_ADDRESSES};
use super::wire::{self, A, AAAA, ANY, Data, Message, Name, PTR, Question, Record, SRV, TXT};
use super::{DiscoveryStats, Interfaces, is_home_address};
use crate::net::rate::Bucket;

pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
pub const PORT: u16 = 5353;
/// Instances of browsed types held while they resolve: a home with a couple
/// of hundred devices, each advertising two of the browsed types, fits; each
/// entry is a few hundred bytes at most.
pub const MAX_INSTANCES: usize = 512;
/// Hosts whose addresses are held: one per instance at most, as above.
pub const MAX_HOSTS: usize = 512;
/// Packets parsed per second at most; the rest are dropped unread. A home
/// LAN sends tens a second, a few hundred when a device joins; this is far
/// above both and bounds the CPU a flood can take (docs/PERFORMANCE.md,
/// "Discovery under an advert flood").
pub const MAX_PACKETS_PER_SEC: f64 = 2000.0;
/// Resolution queries sent per second at most, so a flood of new names
/// cannot make hearth flood the LAN back; twenty a second still resolves a
/// whole home's new instances within seconds.
const MAX_QUERIES_PER_SEC: f64 = 20.0;
/// The same instance is asked about at most this often: RFC 6762 §5.2
/// puts at least a second between a query and its first repeat.
const ASK_AGAIN: Duration = Duration::from_secs(1);
/// Browse queries start one second apart and double up to this (RFC 6762 §5.2).
const MAX_BROWSE_INTERVAL: Duration = Duration::from_secs(3600);
/// Interfaces are looked at again this often, to follow DHCP and hot-plug.
const RESCAN: Duration = Duration::from_secs(30);
/// Record TTLs for hearth's own adverts (RFC 6762 §10).
const HOST_TTL: u32 = 120;
const OTHER_TTL: u32 = 4500;

/// An IPv4 interface discovery uses, with the IPv6 addresses hearth's own
/// adverts give for it: link-local and unique local only, never a global
/// one (Matter controllers reach hearth over either).
#[derive(Clone, PartialEq, Eq)]
pub struct Iface {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub v6: Vec<Ipv6Addr>,
}

/// An IPv6 address that stays on the home's network: link-local
/// (`fe80::/10`) or unique local (`fc00::/7`).
fn is_home_v6(ip: &Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    first & 0xffc0 == 0xfe80 || first & 0xfe00 == 0xfc00
}

impl Iface {
    fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

/// The interfaces the policy allows, now. Never one with a public address.
pub fn select(policy: &Interfaces) -> std::io::Result<Vec<Iface>> {
    let mut out = Vec::new();
    let all = if_addrs::get_if_addrs()?;
    let v6_of = |name: &str| -> Vec<Ipv6Addr> {
        let mut v6: Vec<Ipv6Addr> = all
            .iter()
            .filter(|i| i.name == name)
            .filter_map(|i| match &i.addr {
                if_addrs::IfAddr::V6(a) if is_home_v6(&a.ip) => Some(a.ip),
                _ => None,
            })
            .collect();
        v6.sort();
        v6.dedup();
        v6
    };
    for i in &all {
        let if_addrs::IfAddr::V4(v4) = &i.addr else {
            continue;
        };
        let ip = IpAddr::V4(v4.ip);
        let allowed = match policy {
            Interfaces::Loopback => v4.ip.is_loopback(),
            Interfaces::Private => is_home_address(&ip),
            Interfaces::Named(names) => names.contains(&i.name) && is_home_address(&ip),
        };
        let iface = Iface {
            addr: v4.ip,
            prefix: v4.prefixlen.min(32),
            // Loopback's `::1` is not a home address: none.
            v6: v6_of(&i.name),
        };
        if allowed && !out.contains(&iface) {
            out.push(iface);
        }
    }
    Ok(out)
}

/// The bound, not yet joined, socket: binding early lets start-up report a
/// failure before any task runs.
pub fn bind() -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Other responders on the host (avahi, a simulator) share the port.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Only the groups this socket joins, on the interfaces it joins them on.
    socket.set_multicast_all_v4(false)?;
    socket.set_multicast_loop_v4(true)?;
    socket.set_multicast_ttl_v4(255)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT)).into())?;
    Ok(socket.into())
}

/// What hearth advertises about itself.
pub struct Own {
    pub host: Name,
    pub instance: String,
    /// Service type (`_hearth._tcp`) and port.
    pub services: Vec<(String, u16)>,
    /// Services another part publishes while it runs (the Matter bridge's
    /// `_matterc._udp` while pairing is open, `_matter._tcp` per fabric),
    /// each under its own instance name, with subtypes and TXT.
    pub dynamic: Option<tokio::sync::watch::Receiver<Vec<Service>>>,
}

/// One service published for another part.
#[derive(Clone, PartialEq, Eq)]
pub struct Service {
    pub instance: String,
    /// `_matterc._udp`
    pub ty: String,
    pub port: u16,
    /// `_L3840`, answered as `_L3840._sub._matterc._udp.local`.
    pub subtypes: Vec<String>,
    pub txt: Vec<(String, String)>,
}

impl Service {
    fn type_name(&self) -> Name {
        Name::dotted(&format!("{}.local", self.ty))
    }

    fn full(&self) -> Name {
        Name::prefixed(&self.instance, &self.type_name())
    }

    /// Answers `q` if it asks for this service: a PTR for its type or one
    /// of its subtypes, or its SRV or TXT; whether it did.
    fn answer(&self, q: &Question, host: &Name, answers: &mut Vec<Record>, extra: &mut Vec<Record>) -> bool {
        let wants = |t: u16| q.qtype == t || q.qtype == ANY;
        let subtype = self
            .subtypes
            .iter()
            .any(|sub| q.name == Name::dotted(&format!("{sub}._sub.{}.local", self.ty)));
        if (q.name == self.type_name() || subtype) && wants(PTR) {
            answers.push(ptr(&q.name, self.full(), OTHER_TTL));
            self.records(host, OTHER_TTL, HOST_TTL, extra);
            true
        } else if q.name == self.full() && (wants(SRV) || wants(TXT)) {
            let mut records = Vec::new();
            self.records(host, OTHER_TTL, HOST_TTL, &mut records);
            answers.extend(records.into_iter().filter(|r| wants(r.rtype)));
            true
        } else {
            false
        }
    }

    fn records(&self, host: &Name, ttl: u32, host_ttl: u32, out: &mut Vec<Record>) {
        out.push(Record {
            name: self.full(),
            rtype: SRV,
            flush: true,
            ttl: host_ttl,
            data: Data::Srv {
                port: self.port,
                target: host.clone(),
            },
        });
        out.push(Record {
            name: self.full(),
            rtype: TXT,
            flush: true,
            ttl,
            data: Data::Txt(
                self.txt
                    .iter()
                    .map(|(k, v)| format!("{k}={v}").into_bytes())
                    .collect(),
            ),
        });
    }
}

pub struct Engine {
    socket: UdpSocket,
    policy: Interfaces,
    ifaces: Vec<Iface>,
    types: Vec<(String, Name)>,
    own: Option<Own>,
    /// The published services last announced, to say goodbye to those
    /// that go.
    published: Vec<Service>,
    cache: Cache,
    tx: mpsc::Sender<Advert>,
    stats: Arc<DiscoveryStats>,
    packets: Bucket,
    queries: Bucket,
}

impl Engine {
    pub fn new(
        socket: std::net::UdpSocket,
        policy: Interfaces,
        service_types: &[String],
        own: Option<Own>,
        tx: mpsc::Sender<Advert>,
        stats: Arc<DiscoveryStats>,
    ) -> std::io::Result<Engine> {
        let mut engine = Engine {
            socket: UdpSocket::from_std(socket)?,
            policy,
            ifaces: Vec::new(),
            types: service_types
                .iter()
                .map(|t| (t.clone(), Name::dotted(&format!("{t}.local"))))
                .collect(),
            own,
            published: Vec::new(),
            cache: Cache::default(),
            tx,
            stats,
            packets: one_second(MAX_PACKETS_PER_SEC),
            queries: one_second(MAX_QUERIES_PER_SEC),
        };
        // Join now, so that once the daemon answers on its admin socket it
        // hears the group.
        engine.rescan();
        Ok(engine)
    }

    pub async fn run(mut self, token: CancellationToken) {
        let mut buf = vec![0u8; wire::MAX_PACKET + 1];
        let mut browse_every = Duration::from_secs(1);
        let mut next_browse = Instant::now();
        let mut next_rescan = Instant::now();
        // RFC 6762 §8.3: at least two announcements, one second apart.
        let mut announcements = 0u8;
        let mut next_announce = Instant::now();
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tokio::time::sleep_until(next_rescan) => {
                    next_rescan = Instant::now() + RESCAN;
                    if self.rescan() {
                        // New interfaces: browse and announce afresh.
                        browse_every = Duration::from_secs(1);
                        next_browse = Instant::now();
                        announcements = 0;
                        next_announce = Instant::now();
                    }
                }
                _ = tokio::time::sleep_until(next_browse) => {
                    self.browse().await;
                    next_browse = Instant::now() + browse_every;
                    browse_every = (browse_every * 2).min(MAX_BROWSE_INTERVAL);
                }
                changed = dynamic_changed(&mut self.own) => {
                    if !changed && let Some(own) = &mut self.own {
                        // Their publisher stopped: nothing more will come.
                        own.dynamic = None;
                    }
                    let now = self.own.as_ref().map(Own::dynamic_services).unwrap_or_default();
                    self.goodbye_gone(&now).await;
                    self.published = now;
                    // What is left or new: announced afresh.
                    announcements = 0;
                    next_announce = Instant::now();
                }
                _ = tokio::time::sleep_until(next_announce), if announcements < 2 => {
                    self.announce(OTHER_TTL, HOST_TTL).await;
                    announcements += 1;
                    next_announce = Instant::now() + Duration::from_secs(1);
                }
                received = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = received {
                        self.receive(&buf[..n], from).await;
                    }
                }
            }
        }
        // Goodbye (RFC 6762 §10.1): the same records with TTL 0.
        self.announce(0, 0).await;
    }

    /// Joins the group on interfaces that appeared; leaves those that went.
    fn rescan(&mut self) -> bool {
        let now = match select(&self.policy) {
            Ok(now) => now,
            Err(error) => {
                tracing::warn!(%error, "could not list network interfaces");
                return false;
            }
        };
        let mut changed = false;
        for gone in self.ifaces.iter().filter(|i| !now.contains(i)) {
            let _ = self.socket.leave_multicast_v4(GROUP, gone.addr);
            changed = true;
        }
        for new in now.iter().filter(|i| !self.ifaces.contains(i)) {
            match self.socket.join_multicast_v4(GROUP, new.addr) {
                Ok(()) => changed = true,
                Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {}
                Err(error) => tracing::warn!(%error, "could not join the mDNS group on an interface"),
            }
        }
        if changed {
            tracing::info!(interfaces = now.len(), "mDNS interfaces");
        }
        self.ifaces = now;
        changed
    }

    async fn browse(&mut self) {
        let questions: Vec<(&Name, u16)> = self.types.iter().map(|(_, n)| (n, PTR)).collect();
        let packet = wire::query(&questions);
        for i in 0..self.ifaces.len() {
            self.send_multicast(i, &packet).await;
        }
    }

    /// Goodbyes (TTL 0) for the published services not in `now`.
    async fn goodbye_gone(&mut self, now: &[Service]) {
        let Some(own) = &self.own else { return };
        let mut records = Vec::new();
        for gone in self.published.iter().filter(|s| !now.contains(s)) {
            records.push(ptr(&gone.type_name(), gone.full(), 0));
            gone.records(&own.host, 0, 0, &mut records);
        }
        if records.is_empty() {
            return;
        }
        let packet = wire::response(0, &[], &records, &[]);
        for i in 0..self.ifaces.len() {
            self.send_multicast(i, &packet).await;
        }
    }

    async fn announce(&mut self, ttl: u32, host_ttl: u32) {
        let Some(own) = &self.own else { return };
        for i in 0..self.ifaces.len() {
            let mut records = Vec::new();
            for (ty, port) in &own.services {
                own.service_records(ty, *port, ttl, host_ttl, &mut records);
            }
            for service in own.dynamic_services() {
                records.push(ptr(&service.type_name(), service.full(), ttl));
                service.records(&own.host, ttl, host_ttl, &mut records);
            }
            records.extend(own.addresses(&self.ifaces[i], host_ttl));
            let packet = wire::response(0, &[], &records, &[]);
            self.send_multicast(i, &packet).await;
        }
    }

    async fn send_multicast(&self, iface: usize, packet: &[u8]) {
        let Some(i) = self.ifaces.get(iface) else { return };
        if socket2::SockRef::from(&self.socket)
            .set_multicast_if_v4(&i.addr)
            .is_ok()
        {
            let _ = self.socket.send_to(packet, SocketAddrV4::new(GROUP, PORT)).await;
        }
    }

    async fn receive(&mut self, bytes: &[u8], from: SocketAddr) {
        let SocketAddr::V4(from) = from else { return };
        // The source must be on the link of a chosen interface (RFC 6762 §11).
        let Some(iface) = self.ifaces.iter().position(|i| i.contains(*from.ip())) else {
            self.stats.foreign.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !self.packets.take(Instant::now().into_std()) {
            self.stats.dropped_packets.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.stats.packets.fetch_add(1, Ordering::Relaxed);
        let message = match wire::parse(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if message.response {
            let now = Instant::now();
            let learned = self.cache.learn(&message, &self.types, now);
            for key in &learned {
                if let Some(i) = self.cache.instances.get_mut(key) {
                    i.source = Some(IpAddr::V4(*from.ip()));
                }
            }
            for key in learned {
                self.settle(&key, iface, now).await;
            }
        } else {
            self.answer(&message, from, iface).await;
        }
    }

    /// Hands a resolved instance on, or asks for what it lacks.
    async fn settle(&mut self, key: &str, iface: usize, now: Instant) {
        match self.cache.advert(key, &self.types, now) {
            Some(advert) => {
                self.stats.adverts.fetch_add(1, Ordering::Relaxed);
                if self.tx.try_send(advert).is_err() {
                    self.stats.dropped_queue.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                let Some(instance) = self.cache.instances.get_mut(key) else {
                    return;
                };
                if instance
                    .asked
                    .is_some_and(|at| now.duration_since(at) < ASK_AGAIN)
                    || !self.queries.take(Instant::now().into_std())
                {
                    return;
                }
                instance.asked = Some(now);
                let full = Name::prefixed(&instance.label, &self.types[instance.ty].1);
                let mut questions = Vec::new();
                if instance.srv.is_none() {
                    questions.push((&full, SRV));
                }
                if instance.txt.is_none() {
                    questions.push((&full, TXT));
                }
                if let Some((_, target, _)) = &instance.srv {
                    questions.push((target, A));
                }
                let packet = wire::query(&questions);
                self.send_multicast(iface, &packet).await;
            }
        }
    }

    /// Answers questions about hearth's own names; ignores the rest.
    async fn answer(&mut self, message: &Message, from: SocketAddrV4, iface: usize) {
        let Some(own) = &self.own else { return };
        let Some(addr) = self.ifaces.get(iface).cloned() else {
            return;
        };
        let (mut answers, mut extra) = (Vec::new(), Vec::new());
        let meta = Name::dotted("_services._dns-sd._udp.local");
        for q in &message.questions {
            let wants = |t: u16| q.qtype == t || q.qtype == ANY;
            if q.name == meta && wants(PTR) {
                for (ty, _) in &own.services {
                    answers.push(ptr(&meta, Name::dotted(&format!("{ty}.local")), OTHER_TTL));
                }
            }
            for (ty, port) in &own.services {
                let type_name = Name::dotted(&format!("{ty}.local"));
                let full = Name::prefixed(&own.instance, &type_name);
                if q.name == type_name && wants(PTR) {
                    answers.push(ptr(&type_name, full.clone(), OTHER_TTL));
                    own.instance_records(&full, *port, OTHER_TTL, HOST_TTL, &mut extra);
                    extra.extend(own.addresses(&addr, HOST_TTL));
                } else if q.name == full && (wants(SRV) || wants(TXT)) {
                    let mut records = Vec::new();
                    own.instance_records(&full, *port, OTHER_TTL, HOST_TTL, &mut records);
                    answers.extend(records.into_iter().filter(|r| wants(r.rtype)));
                    extra.extend(own.addresses(&addr, HOST_TTL));
                }
            }
            for service in own.dynamic_services() {
                if q.name == meta && wants(PTR) {
                    answers.push(ptr(&meta, service.type_name(), OTHER_TTL));
                }
                if service.answer(q, &own.host, &mut answers, &mut extra) {
                    extra.extend(own.addresses(&addr, HOST_TTL));
                }
            }
            if q.name == own.host {
                answers.extend(
                    own.addresses(&addr, HOST_TTL)
                        .into_iter()
                        .filter(|r| wants(r.rtype)),
                );
            }
        }
        if answers.is_empty() {
            return;
        }
        if from.port() == PORT {
            let packet = wire::response(0, &[], &answers, &extra);
            self.send_multicast(iface, &packet).await;
        } else {
            // A legacy unicast querier (RFC 6762 §6.7): reply to it alone,
            // with its id and questions, and short TTLs.
            let questions: Vec<Question> = message
                .questions
                .iter()
                .map(|q| Question {
                    name: q.name.clone(),
                    qtype: q.qtype,
                })
                .collect();
            for r in answers.iter_mut().chain(extra.iter_mut()) {
                r.ttl = r.ttl.min(10);
                r.flush = false;
            }
            let packet = wire::response(message.id, &questions, &answers, &extra);
            let _ = self.socket.send_to(&packet, from).await;
        }
    }
}

/// Whether the dynamic services changed (`false` once their publisher is
/// gone); pends forever when there are none.
async fn dynamic_changed(own: &mut Option<Own>) -> bool {
    match own.as_mut().and_then(|o| o.dynamic.as_mut()) {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

fn ptr(name: &Name, target: Name, ttl: u32) -> Record {
    Record {
        name: name.clone(),
        rtype: PTR,
        flush: false,
        ttl,
        data: Data::Ptr(target),
    }
}

impl Own {
    /// What other parts publish now.
    fn dynamic_services(&self) -> Vec<Service> {
        self.dynamic
            .as_ref()
            .map(|d| d.borrow().clone())
            .unwrap_or_default()
    }

    fn service_records(&self, ty: &str, port: u16, ttl: u32, host_ttl: u32, out: &mut Vec<Record>) {
        let type_name = Name::dotted(&format!("{ty}.local"));
        let full = Name::prefixed(&self.instance, &type_name);
        out.push(ptr(&type_name, full.clone(), ttl));
        self.instance_records(&full, port, ttl, host_ttl, out);
    }

    /// SRV and an empty TXT: no version, name or model.
    fn instance_records(&self, full: &Name, port: u16, ttl: u32, host_ttl: u32, out: &mut Vec<Record>) {
        out.push(Record {
            name: full.clone(),
            rtype: SRV,
            flush: true,
            ttl: host_ttl,
            data: Data::Srv {
                port,
                target: self.host.clone(),
            },
        });
        out.push(Record {
            name: full.clone(),
            rtype: TXT,
            flush: true,
            ttl,
            data: Data::Txt(Vec::new()),
        });
    }

    /// The host's A record on `iface`, and its AAAA records there.
    fn addresses(&self, iface: &Iface, ttl: u32) -> Vec<Record> {
        let a = Record {
            name: self.host.clone(),
            rtype: A,
            flush: true,
            ttl,
            data: Data::A(iface.addr),
        };
        std::iter::once(a)
            .chain(iface.v6.iter().map(|ip| Record {
                name: self.host.clone(),
                rtype: AAAA,
                flush: true,
                ttl,
                data: Data::Aaaa(*ip),
            }))
            .collect()
    }
}

/// A token bucket holding one second's worth. It is a plain value, so
/// taking from it on the receive path allocates nothing. It reads tokio's
/// clock, which tests may pause.
fn one_second(rate: f64) -> Bucket {
    Bucket::new(rate, rate, Instant::now().into_std())
}

struct Instance {
    /// Index into the browsed types.
    ty: usize,
    label: String,
    /// Port, target host, and the target's map key.
    srv: Option<(u16, Name, String)>,
    txt: Option<Vec<(String, String)>>,
    seen: Instant,
    asked: Option<Instant>,
    /// When a goodbye for the instance takes effect (RFC 6762 §10.1).
    leaves: Option<Instant>,
    /// Where the latest packet about it came from.
    source: Option<IpAddr>,
}

/// How long a withdrawn record lingers (RFC 6762 §10.1), and how recent a
/// record must be to survive another's cache-flush bit (§10.2): one second
/// either way, so that records sent together, or a goodbye crossing a
/// re-announcement, are not lost.
const GRACE: Duration = Duration::from_secs(1);

/// One address of a host, as the cache holds it.
struct Address {
    ip: IpAddr,
    /// When it was last received with a TTL above zero.
    received: Instant,
    /// When a goodbye takes it away.
    leaves: Option<Instant>,
}

struct Host {
    addrs: Vec<Address>,
    seen: Instant,
}

impl Host {
    /// Applies one address record received at `now`: a goodbye withdraws the
    /// address a second later; a record with the cache-flush bit replaces
    /// the host's addresses of its type (A or AAAA) received more than a
    /// second earlier; any other record adds to them. Without this, an old
    /// address would stay "known" for as long as the host is cached, and a
    /// device that moved, or a second responder claiming its host name,
    /// would look like the device at home.
    fn apply(&mut self, ip: IpAddr, ttl: u32, flush: bool, now: Instant) {
        self.addrs.retain(|a| a.leaves.is_none_or(|at| at > now));
        if ttl == 0 {
            if let Some(a) = self.addrs.iter_mut().find(|a| a.ip == ip) {
                a.leaves = Some(a.leaves.map_or(now + GRACE, |at| at.min(now + GRACE)));
            }
            return;
        }
        if flush {
            self.addrs.retain(|a| {
                a.ip.is_ipv4() != ip.is_ipv4() || now.saturating_duration_since(a.received) <= GRACE
            });
        }
        if let Some(a) = self.addrs.iter_mut().find(|a| a.ip == ip) {
            a.received = now;
            a.leaves = None;
        } else if self.addrs.len() < MAX_ADDRESSES {
            self.addrs.push(Address {
                ip,
                received: now,
                leaves: None,
            });
        }
    }

    /// The addresses no goodbye has taken away by `now`.
    fn current(&self, now: Instant) -> Vec<IpAddr> {
        self.addrs
            .iter()
            .filter(|a| a.leaves.is_none_or(|at| at > now))
            .map(|a| a.ip)
            .collect()
    }
}

/// The bounded cache. Both tables evict their least recently seen entry
/// when full.
#[derive(Default)]
struct Cache {
    instances: HashMap<String, Instance>,
    hosts: HashMap<String, Host>,
}

impl Cache {
    /// Takes what a response says about browsed instances and the hosts
    /// they name. Returns the keys of the instances it touched.
    fn learn(&mut self, message: &Message, types: &[(String, Name)], now: Instant) -> Vec<String> {
        let mut touched = Vec::new();
        // Instances whose goodbye has taken effect are gone: what comes
        // back for them later starts afresh.
        self.instances.retain(|_, i| i.leaves.is_none_or(|at| at > now));
        for r in &message.records {
            let (instance, ty) = match &r.data {
                Data::Ptr(target) => match types.iter().position(|(_, t)| r.name == *t) {
                    Some(ty) => (target, ty),
                    None => continue,
                },
                Data::Srv { .. } | Data::Txt(_) => {
                    match types.iter().position(|(_, t)| r.name.child_of(t).is_some()) {
                        Some(ty) => (&r.name, ty),
                        None => continue,
                    }
                }
                _ => continue,
            };
            let Some(label) = instance.child_of(&types[ty].1) else {
                continue;
            };
            let key = instance.key();
            if r.is_goodbye() {
                // The instance leaves the cache a second later (its pending
                // device in the store stays until it ages out). A goodbye
                // hands nothing on, so it touches nothing.
                if let Some(entry) = self.instances.get_mut(&key) {
                    entry.leaves = Some(entry.leaves.map_or(now + GRACE, |at| at.min(now + GRACE)));
                }
                continue;
            }
            let entry = self.instance(&key, ty, label, now);
            entry.leaves = None;
            match &r.data {
                Data::Srv { port, target } => entry.srv = Some((*port, target.clone(), target.key())),
                Data::Txt(strings) => entry.txt = Some(strings.iter().map(|s| key_value(s)).collect()),
                _ => {}
            }
            if !touched.contains(&key) {
                touched.push(key);
            }
        }
        for r in &message.records {
            let ip = match r.data {
                Data::A(ip) => IpAddr::V4(ip),
                Data::Aaaa(ip) => IpAddr::V6(ip),
                _ => continue,
            };
            // Only hosts that a cached instance names: an address flood
            // finds no room here.
            let host = r.name.key();
            let named_by: Vec<String> = self
                .instances
                .iter()
                .filter(|(_, i)| i.srv.as_ref().is_some_and(|(_, _, h)| *h == host))
                .map(|(k, _)| k.clone())
                .collect();
            if named_by.is_empty() {
                continue;
            }
            if r.is_goodbye() {
                // Withdrawn a second from now; nothing to hand on yet.
                if let Some(entry) = self.hosts.get_mut(&host) {
                    entry.apply(ip, 0, r.flush, now);
                }
                continue;
            }
            if !self.hosts.contains_key(&host) && self.hosts.len() >= MAX_HOSTS {
                evict_oldest(&mut self.hosts, |h| h.seen);
            }
            let entry = self.hosts.entry(host).or_insert_with(|| Host {
                addrs: Vec::new(),
                seen: now,
            });
            entry.seen = now;
            entry.apply(ip, r.ttl, r.flush, now);
            for key in named_by {
                if !touched.contains(&key) {
                    touched.push(key);
                }
            }
        }
        touched
    }

    fn instance(&mut self, key: &str, ty: usize, label: &str, now: Instant) -> &mut Instance {
        if !self.instances.contains_key(key) && self.instances.len() >= MAX_INSTANCES {
            evict_oldest(&mut self.instances, |i| i.seen);
        }
        let entry = self.instances.entry(key.to_owned()).or_insert_with(|| Instance {
            ty,
            label: label.to_owned(),
            srv: None,
            txt: None,
            seen: now,
            asked: None,
            leaves: None,
            source: None,
        });
        entry.seen = now;
        entry
    }

    /// The instance as an advert, once its port, TXT and an address are
    /// known. It carries the host's current addresses only: what the
    /// cache-flush and goodbye rules have left at `now`.
    fn advert(&self, key: &str, types: &[(String, Name)], now: Instant) -> Option<Advert> {
        let instance = self.instances.get(key)?;
        if instance.leaves.is_some_and(|at| at <= now) {
            return None;
        }
        let (port, target, host) = instance.srv.as_ref()?;
        let txt = instance.txt.clone()?;
        let mut addresses = self.hosts.get(host)?.current(now);
        if addresses.is_empty() {
            return None;
        }
        addresses.sort();
        Some(Advert {
            service_type: types[instance.ty].0.clone(),
            instance: instance.label.clone(),
            port: *port,
            addresses,
            txt,
            host: target
                .labels()
                .first()
                .map(|l| l.to_ascii_lowercase())
                .unwrap_or_default(),
            source: instance.source,
        })
    }
}

fn evict_oldest<V>(map: &mut HashMap<String, V>, seen: impl Fn(&V) -> Instant) {
    if let Some(oldest) = map.iter().min_by_key(|(_, v)| seen(v)).map(|(k, _)| k.clone()) {
        map.remove(&oldest);
    }
}

/// `key=value`, or a bare `key` (RFC 6763 §6.4).
fn key_value(s: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(s);
    match text.split_once('=') {
        Some((k, v)) => (k.to_owned(), v.to_owned()),
        None => (text.into_owned(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A published service answers for its type and each subtype with a
    /// PTR (SRV and TXT beside it), for its own name with SRV or TXT, and
    /// stays silent otherwise; its TXT survives the wire.
    #[test]
    fn published_services_answer_their_type_subtypes_and_name() {
        let service = Service {
            instance: "0123456789ABCDEF".into(),
            ty: "_matterc._udp".into(),
            port: 5540,
            subtypes: vec!["_L840".into(), "_CM".into()],
            txt: vec![("D".into(), "840".into()), ("CM".into(), "1".into())],
        };
        let host = Name::dotted("hub.local");
        let full = Name::dotted("0123456789ABCDEF._matterc._udp.local");
        let ask = |name: &str, qtype: u16| {
            let (mut answers, mut extra) = (Vec::new(), Vec::new());
            let q = Question {
                name: Name::dotted(name),
                qtype,
            };
            let answered = service.answer(&q, &host, &mut answers, &mut extra);
            (answered, answers, extra)
        };
        for name in [
            "_matterc._udp.local",
            "_L840._sub._matterc._udp.local",
            "_CM._sub._matterc._udp.local",
        ] {
            let (answered, answers, extra) = ask(name, PTR);
            assert!(answered, "{name}");
            assert_eq!(answers.len(), 1);
            assert!(matches!(&answers[0].data, Data::Ptr(t) if *t == full));
            assert_eq!(extra.len(), 2, "SRV and TXT beside it");
        }
        assert!(!ask("_L841._sub._matterc._udp.local", PTR).0);
        assert!(!ask("_matter._tcp.local", PTR).0);
        assert!(!ask("_matterc._udp.local", A).0);
        let (answered, answers, _) = ask("0123456789ABCDEF._matterc._udp.local", SRV);
        assert!(answered);
        assert_eq!(answers.len(), 1);
        assert!(matches!(&answers[0].data, Data::Srv { port: 5540, target } if *target == host));
        let (_, answers, _) = ask("0123456789ABCDEF._matterc._udp.local", TXT);
        let packet = wire::response(0, &[], &answers, &[]);
        let parsed = wire::parse(&packet).unwrap();
        let Data::Txt(t) = &parsed.records[0].data else {
            panic!("not a TXT record")
        };
        assert_eq!(t, &vec![b"D=840".to_vec(), b"CM=1".to_vec()]);
    }

    fn types() -> Vec<(String, Name)> {
        ["_hap._tcp", "_shelly._tcp"]
            .iter()
            .map(|t| ((*t).to_owned(), Name::dotted(&format!("{t}.local"))))
            .collect()
    }

    fn record(name: Name, rtype: u16, data: Data) -> Record {
        Record {
            name,
            rtype,
            flush: false,
            ttl: 120,
            data,
        }
    }

    fn message(records: Vec<Record>) -> Message {
        Message {
            id: 0,
            response: true,
            questions: Vec::new(),
            records,
        }
    }

    fn bulb(n: usize, addr: [u8; 4]) -> Message {
        let ty = Name::dotted("_hap._tcp.local");
        let full = Name::prefixed(&format!("Bulb {n}"), &ty);
        let host = Name::dotted(&format!("bulb{n}.local"));
        message(vec![
            record(ty, PTR, Data::Ptr(full.clone())),
            record(
                full.clone(),
                SRV,
                Data::Srv {
                    port: 80,
                    target: host.clone(),
                },
            ),
            record(full, TXT, Data::Txt(vec![b"ci=5".to_vec(), b"sf".to_vec()])),
            record(host, A, Data::A(addr.into())),
        ])
    }

    #[test]
    fn a_full_announcement_resolves_at_once() {
        let mut cache = Cache::default();
        let touched = cache.learn(&bulb(1, [192, 168, 1, 5]), &types(), Instant::now());
        assert_eq!(touched.len(), 1);
        let advert = cache.advert(&touched[0], &types(), Instant::now()).unwrap();
        assert_eq!(advert.service_type, "_hap._tcp");
        assert_eq!(advert.instance, "Bulb 1");
        assert_eq!(advert.port, 80);
        assert_eq!(advert.txt("ci"), Some("5"));
        assert_eq!(advert.addresses, ["192.168.1.5".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn addresses_accumulate_across_packets() {
        let mut cache = Cache::default();
        cache.learn(&bulb(1, [192, 168, 1, 5]), &types(), Instant::now());
        let host = Name::dotted("bulb1.local");
        let more = message(vec![record(host, AAAA, Data::Aaaa("fe80::5".parse().unwrap()))]);
        let touched = cache.learn(&more, &types(), Instant::now());
        assert_eq!(touched.len(), 1, "the instance naming the host is touched");
        let advert = cache.advert(&touched[0], &types(), Instant::now()).unwrap();
        assert_eq!(advert.addresses.len(), 2);
    }

    #[test]
    fn unbrowsed_types_and_unnamed_hosts_take_no_room() {
        let mut cache = Cache::default();
        let other = Name::dotted("_printer._tcp.local");
        let m = message(vec![
            record(other.clone(), PTR, Data::Ptr(Name::prefixed("P", &other))),
            record(Name::dotted("stranger.local"), A, Data::A([10, 0, 0, 1].into())),
        ]);
        assert!(cache.learn(&m, &types(), Instant::now()).is_empty());
        assert!(cache.instances.is_empty() && cache.hosts.is_empty());
        // A PTR whose target is not an instance of the type it is filed under.
        let ty = Name::dotted("_hap._tcp.local");
        let m = message(vec![record(
            ty,
            PTR,
            Data::Ptr(Name::dotted("x._other._tcp.local")),
        )]);
        assert!(cache.learn(&m, &types(), Instant::now()).is_empty());
    }

    #[test]
    fn a_flood_of_new_names_stays_within_the_bounds() {
        let mut cache = Cache::default();
        let start = Instant::now();
        for n in 0..(MAX_INSTANCES * 4) {
            let touched = cache.learn(
                &bulb(n, [10, 0, (n >> 8) as u8, n as u8]),
                &types(),
                start + Duration::from_millis(n as u64),
            );
            assert!(cache.advert(&touched[0], &types(), Instant::now()).is_some());
        }
        assert_eq!(cache.instances.len(), MAX_INSTANCES);
        assert!(cache.hosts.len() <= MAX_HOSTS);
        // The newest are kept.
        let newest = Name::prefixed(
            &format!("Bulb {}", MAX_INSTANCES * 4 - 1),
            &Name::dotted("_hap._tcp.local"),
        );
        assert!(cache.instances.contains_key(&newest.key()));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// RFC 6762 §10.1 and §10.2 on one host's addresses: each case is the
    /// records received (milliseconds from the start, address, TTL,
    /// cache-flush bit), then the addresses current at a later time.
    #[test]
    fn cache_flush_and_goodbye_rules_for_addresses() {
        type Step = (u64, &'static str, u32, bool);
        let check = |what: &str, steps: &[Step], at: u64, expect: &[&str]| {
            let start = Instant::now();
            let mut host = Host {
                addrs: Vec::new(),
                seen: start,
            };
            for (ms, addr, ttl, flush) in steps {
                host.apply(ip(addr), *ttl, *flush, start + Duration::from_millis(*ms));
            }
            let mut got = host.current(start + Duration::from_millis(at));
            got.sort();
            let mut want: Vec<IpAddr> = expect.iter().map(|a| ip(a)).collect();
            want.sort();
            assert_eq!(got, want, "{what}");
        };
        let (home, away) = ("192.168.1.20", "192.168.1.99");
        check(
            "records without the flush bit accumulate",
            &[(0, home, 120, false), (5000, away, 120, false)],
            5000,
            &[home, away],
        );
        check(
            "a flush replaces what was received more than a second earlier",
            &[(0, home, 120, true), (5000, away, 120, true)],
            5000,
            &[away],
        );
        check(
            "a flush keeps what was received within the second",
            &[(0, home, 120, true), (800, away, 120, true)],
            800,
            &[home, away],
        );
        check(
            "a flush keeps what was received exactly a second earlier",
            &[(0, home, 120, true), (1000, away, 120, true)],
            1000,
            &[home, away],
        );
        check(
            "a record received again is recent again",
            &[
                (0, home, 120, true),
                (4500, home, 120, true),
                (5000, away, 120, true),
            ],
            5000,
            &[home, away],
        );
        check(
            "an A record's flush leaves AAAA records alone",
            &[(0, "fe80::20", 120, true), (5000, away, 120, true)],
            5000,
            &["fe80::20", away],
        );
        check(
            "a goodbye lingers for a second",
            &[(0, home, 120, true), (5000, home, 0, true)],
            5999,
            &[home],
        );
        check(
            "then the address is gone",
            &[(0, home, 120, true), (5000, home, 0, true)],
            6000,
            &[],
        );
        check(
            "a second goodbye does not extend the first",
            &[(0, home, 120, true), (5000, home, 0, true), (5900, home, 0, true)],
            6000,
            &[],
        );
        check(
            "a goodbye then a return from another address",
            &[
                (0, home, 120, true),
                (5000, home, 0, true),
                (5200, away, 120, true),
            ],
            5200,
            &[away],
        );
        check(
            "a goodbye, and the return within its second without the flush bit",
            &[
                (0, home, 120, false),
                (5000, home, 0, false),
                (5200, away, 120, false),
            ],
            7000,
            &[away],
        );
        check(
            "a goodbye cancelled by the same address coming back",
            &[
                (0, home, 120, true),
                (5000, home, 0, true),
                (5500, home, 120, true),
            ],
            9000,
            &[home],
        );
        check(
            "a goodbye for an address never received changes nothing",
            &[(0, home, 120, true), (5000, away, 0, true)],
            9000,
            &[home],
        );
        // Without the flush bit, at most MAX_ADDRESSES, the first kept.
        let start = Instant::now();
        let mut host = Host {
            addrs: Vec::new(),
            seen: start,
        };
        for n in 0..40u8 {
            host.apply(IpAddr::from([10, 0, 0, n]), 120, false, start);
        }
        let current = host.current(start);
        assert_eq!(current.len(), MAX_ADDRESSES);
        assert_eq!(current[0], IpAddr::from([10, 0, 0, 0]));
    }

    /// A bulb's full announcement with the cache-flush bit on its unique
    /// records, as responders send it (RFC 6762 §10.2), with `ttl`.
    fn announced(addr: &str, ttl: u32) -> Message {
        let mut m = bulb(1, [0, 0, 0, 0]);
        for r in &mut m.records {
            r.flush = r.rtype != PTR;
            r.ttl = ttl;
            if let Data::A(_) = r.data {
                r.data = match ip(addr) {
                    IpAddr::V4(v4) => Data::A(v4),
                    IpAddr::V6(v6) => Data::Aaaa(v6),
                };
                r.rtype = if ip(addr).is_ipv4() { A } else { AAAA };
            }
        }
        m
    }

    /// Whole packets through the cache: what advert each sequence hands on.
    /// Each case is the packets (milliseconds from the start, the address
    /// announced, TTL), then the advert's addresses at a later time (`None`:
    /// no advert).
    #[test]
    fn adverts_carry_only_current_addresses() {
        let check = |what: &str, packets: &[(u64, &str, u32)], at: u64, expect: Option<&[&str]>| {
            let start = Instant::now();
            let mut cache = Cache::default();
            let mut key = None;
            for (ms, addr, ttl) in packets {
                let now = start + Duration::from_millis(*ms);
                let touched = cache.learn(&announced(addr, *ttl), &types(), now);
                key = key.or(touched.first().cloned());
            }
            let got = cache
                .advert(&key.unwrap(), &types(), start + Duration::from_millis(at))
                .map(|a| a.addresses);
            let want = expect.map(|e| e.iter().map(|a| ip(a)).collect::<Vec<_>>());
            assert_eq!(got, want, "{what}");
        };
        let (home, away) = ("192.168.1.20", "192.168.1.99");
        check("announced", &[(0, home, 120)], 0, Some(&[home]));
        check(
            "re-announced from home",
            &[(0, home, 120), (5000, home, 120)],
            5000,
            Some(&[home]),
        );
        check(
            "moved: the same host name at a new address",
            &[(0, home, 120), (5000, away, 120)],
            5000,
            Some(&[away]),
        );
        check(
            "a spoof and the real device within the same second",
            &[(0, home, 120), (5000, home, 120), (5300, away, 120)],
            5300,
            Some(&[home, away]),
        );
        check(
            "gone: the goodbye took the instance and its address",
            &[(0, home, 120), (5000, home, 0)],
            6000,
            None,
        );
        check(
            "still there during the goodbye's second",
            &[(0, home, 120), (5000, home, 0)],
            5500,
            Some(&[home]),
        );
        check(
            "a goodbye, then back from another address",
            &[(0, home, 120), (5000, home, 0), (8000, away, 120)],
            8000,
            Some(&[away]),
        );
        check(
            "a goodbye, then back from another address within the second",
            &[(0, home, 120), (5000, home, 0), (5400, away, 120)],
            7000,
            Some(&[away]),
        );
    }

    #[test]
    fn subnets_contain_what_they_should() {
        let lan = Iface {
            addr: Ipv4Addr::new(192, 168, 1, 10),
            prefix: 24,
            v6: Vec::new(),
        };
        assert!(lan.contains(Ipv4Addr::new(192, 168, 1, 200)));
        assert!(!lan.contains(Ipv4Addr::new(192, 168, 2, 1)));
        let lo = Iface {
            addr: Ipv4Addr::LOCALHOST,
            prefix: 8,
            v6: Vec::new(),
        };
        assert!(lo.contains(Ipv4Addr::new(127, 0, 0, 2)));
        let any = Iface {
            addr: Ipv4Addr::new(10, 0, 0, 1),
            prefix: 0,
            v6: Vec::new(),
        };
        assert!(any.contains(Ipv4Addr::new(8, 8, 8, 8)));
    }
}
