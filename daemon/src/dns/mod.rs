//! hearth as the LAN's DNS resolver (off by default): it answers on the
//! owner's LAN addresses, forwards to the owner's upstream resolvers through
//! a bounded cache, and sees which adopted device looks up which name.
//!
//! - `server`: the request handler (rate limit, policy, cache, forwarding)
//!   and the TCP listener; UDP is hickory-server's.
//! - `history`: what each device looked up, bounded and aged, and its policy.
//! - `clouds`: the shipped cloud domains per vendor, the owner's, and the
//!   LAN's own names.
//! - `cache`, `upstream`: the answers cache; where queries go.
//!
//! Names a device or client looked up are the home's: they are kept only
//! in the store (sealed) and in answers to the owner, never in a log or a
//! metric. Other clients' queries are counted, never recorded by name.

mod cache;
pub mod clouds;
pub mod history;
mod server;
pub mod upstream;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_server::resolver::net::runtime::TokioRuntimeProvider;
use tokio_util::sync::CancellationToken;

use self::cache::Cache;
use self::clouds::Clouds;
use self::history::{History, Noted, Policy};
use crate::home::devices::Devices;
use crate::net::rate::Keyed;
use crate::store::{Actor, AuditEvent, AuditKind, DeviceId, DeviceStatus, Store, StoreError, UnixTime};
use crate::supervisor::Supervisor;

/// How often the devices' records are written to the store.
const FLUSH_EVERY: Duration = Duration::from_secs(30);
/// A device that has made no query for this long, while watched, may use
/// its own DNS.
pub const OWN_DNS_AFTER: Duration = Duration::from_secs(3600);
/// The owner's cloud domains, in `secrets`.
const OWNER_DOMAINS: &str = "dns_cloud_domains";
/// When the watch began, in `secrets`.
const WATCHING_SINCE: &str = "dns_watching_since";
/// Client addresses the rate limiter tracks at most.
const MAX_CLIENTS: usize = 4096;

/// The `[dns]` section, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsConfig {
    pub enabled: bool,
    /// The LAN addresses hearth answers on (UDP and TCP), when systemd's
    /// `hearth.socket` does not hand them over.
    pub listen: Vec<SocketAddr>,
    /// Empty: the nameservers in /etc/resolv.conf.
    pub upstream: Vec<SocketAddr>,
    pub cache_entries: usize,
    /// Queries per second per client address, and the burst.
    pub client_rate: u32,
    pub client_burst: u32,
    /// Names kept per device, and for how long.
    pub names_per_device: usize,
    pub history_days: u32,
    pub block_answer: BlockAnswer,
    /// Queries forwarded at once, at most; past it, SERVFAIL.
    pub max_in_flight: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: false,
            listen: Vec::new(),
            upstream: Vec::new(),
            cache_entries: 10_000,
            client_rate: 50,
            client_burst: 200,
            names_per_device: 500,
            history_days: 30,
            block_answer: BlockAnswer::Nxdomain,
            max_in_flight: 256,
        }
    }
}

/// How a blocked name is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockAnswer {
    /// NXDOMAIN: the name does not exist.
    Nxdomain,
    /// 0.0.0.0 and ::, for A and AAAA; no records for other types.
    Zero,
}

impl BlockAnswer {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockAnswer::Nxdomain => "nxdomain",
            BlockAnswer::Zero => "zero",
        }
    }

    pub fn parse(s: &str) -> Option<BlockAnswer> {
        [BlockAnswer::Nxdomain, BlockAnswer::Zero]
            .into_iter()
            .find(|b| b.as_str() == s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot listen for DNS on {addr}: {message}")]
    Bind { addr: SocketAddr, message: String },
    #[error("no upstream resolver: {0}; set dns.upstream to the router's or another resolver's address")]
    NoUpstream(String),
    #[error(
        "dns is enabled but has nothing to listen on: set dns.listen to hearth's LAN addresses, or enable hearth.socket"
    )]
    NoListener,
    #[error("the DNS resolver could not start: {0}")]
    Resolver(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no such adopted device")]
    NoDevice,
    #[error("'{0}' is not a domain: give one like vendor-cloud.example")]
    BadDomain(String),
    #[error("the list holds {0} domains already")]
    TooMany(usize),
}

/// The sockets hearth answers DNS on.
#[derive(Debug, Default)]
pub struct Sockets {
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: Vec<std::net::TcpListener>,
}

impl Sockets {
    pub fn addrs(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self.udp.iter().filter_map(|s| s.local_addr().ok()).collect();
        for t in &self.tcp {
            if let Ok(a) = t.local_addr()
                && !v.contains(&a)
            {
                v.push(a);
            }
        }
        v
    }
}

/// Binds UDP and TCP on each address (port 53 needs hearth.socket or
/// CAP_NET_BIND_SERVICE; the tests use higher ports).
pub fn bind(listen: &[SocketAddr]) -> Result<Sockets, DnsError> {
    let mut s = Sockets::default();
    for addr in listen {
        let fail = |e: std::io::Error| DnsError::Bind {
            addr: *addr,
            message: e.to_string(),
        };
        s.udp.push(std::net::UdpSocket::bind(addr).map_err(fail)?);
        // UDP may have been given port 0: TCP takes the same port.
        let port = s
            .udp
            .last()
            .and_then(|u| u.local_addr().ok())
            .map_or(addr.port(), |a| a.port());
        s.tcp
            .push(std::net::TcpListener::bind(SocketAddr::new(addr.ip(), port)).map_err(fail)?);
    }
    Ok(s)
}

/// What the resolver has done since it started. Counts only.
#[derive(Default)]
pub struct Counters {
    pub from_devices: AtomicU64,
    pub from_others: AtomicU64,
    pub cache_hits: AtomicU64,
    pub forwarded: AtomicU64,
    pub blocked: AtomicU64,
    pub local: AtomicU64,
    pub failed: AtomicU64,
    pub refused: AtomicU64,
    pub rate_limited: AtomicU64,
    pub malformed: AtomicU64,
    pub tcp_turned_away: AtomicU64,
}

/// The counters, read.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Counts {
    /// Queries answered or dropped, from adopted devices.
    pub from_devices: u64,
    /// From any other client (phones, laptops): counted, never recorded.
    pub from_others: u64,
    pub cache_hits: u64,
    /// Sent to an upstream resolver (cache misses).
    pub forwarded: u64,
    /// Answered as blocked by a device's policy.
    pub blocked: u64,
    /// `.local` names: answered NXDOMAIN, never forwarded.
    pub local: u64,
    /// SERVFAIL: the upstream failed or too many queries were in flight.
    pub failed: u64,
    /// Zone transfers and other kinds hearth does not answer.
    pub refused: u64,
    /// Dropped: the client sent more than its rate allows.
    pub rate_limited: u64,
    /// Answered FORMERR, or dropped unreadable.
    pub malformed: u64,
    /// TCP connections closed at once: too many open.
    pub tcp_turned_away: u64,
}

impl Counters {
    pub fn read(&self) -> Counts {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            from_devices: r(&self.from_devices),
            from_others: r(&self.from_others),
            cache_hits: r(&self.cache_hits),
            forwarded: r(&self.forwarded),
            blocked: r(&self.blocked),
            local: r(&self.local),
            failed: r(&self.failed),
            refused: r(&self.refused),
            rate_limited: r(&self.rate_limited),
            malformed: r(&self.malformed),
            tcp_turned_away: r(&self.tcp_turned_away),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// The resolver's state, shared by the handler, the tasks and the owner's
/// calls.
pub(crate) struct Inner {
    config: DnsConfig,
    upstreams: Vec<SocketAddr>,
    search: Vec<String>,
    listening: Vec<SocketAddr>,
    resolver: hickory_server::resolver::Resolver<TokioRuntimeProvider>,
    cache: Mutex<Cache>,
    limits: Mutex<Keyed<IpAddr>>,
    in_flight: tokio::sync::Semaphore,
    /// Adopted devices by their known addresses.
    who: RwLock<HashMap<IpAddr, DeviceId>>,
    /// Adopted devices and when they were adopted (Unix seconds).
    adopted: RwLock<HashMap<DeviceId, u64>>,
    histories: Mutex<HashMap<DeviceId, History>>,
    clouds: RwLock<Clouds>,
    owner_domains: Mutex<Vec<String>>,
    /// New cloud domains to warn about.
    new_clouds: Mutex<Vec<(DeviceId, String)>>,
    wake: tokio::sync::Notify,
    counters: Counters,
    /// When hearth began watching (Unix seconds), kept across restarts.
    since: u64,
    store: Arc<Mutex<Store>>,
}

/// The running resolver.
pub struct Dns {
    inner: Arc<Inner>,
}

/// The resolver, for the owner: counts and settings, no names.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Status {
    pub enabled: bool,
    /// The addresses hearth answers on (hearth's own).
    #[schema(value_type = Vec<String>)]
    pub listening: Vec<SocketAddr>,
    /// How many upstream resolvers it forwards to.
    pub upstreams: usize,
    pub cache_entries: usize,
    pub cache_capacity: usize,
    /// Unix seconds: when the watch began.
    pub watching_since: u64,
    pub devices_watched: usize,
    pub counts: Counts,
}

/// What one device looked up, for the owner.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeviceDns {
    pub policy: String,
    pub queries: u64,
    /// No query seen in the hour (or more) it has been watched: it may use
    /// a resolver of its own, hard-coded or over HTTPS.
    pub may_use_own_dns: bool,
    pub names: Vec<NameSeen>,
    /// The known cloud domains it looked up.
    pub clouds: Vec<String>,
}

/// One adopted device's DNS in brief: no names.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeviceSummary {
    pub id: String,
    pub policy: String,
    pub queries: u64,
    /// The known cloud domains it looked up.
    pub clouds: Vec<String>,
    pub may_use_own_dns: bool,
}

/// One name, for the owner.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct NameSeen {
    pub name: String,
    pub count: u64,
    pub blocked: u64,
    /// Unix seconds.
    pub first: u64,
    pub last: u64,
    /// The known cloud domain it is under, if any.
    pub cloud: Option<String>,
    /// The vendor whose cloud that is (`None` for the owner's domains).
    pub vendor: Option<String>,
}

/// The cloud domain lists, for the owner.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CloudLists {
    pub shipped: Vec<ShippedVendor>,
    pub owner: Vec<String>,
}

#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ShippedVendor {
    pub name: String,
    pub domains: Vec<String>,
    pub source: String,
    pub note: String,
}

/// What the resolver does with a name, for a device with `policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// `.local`: NXDOMAIN, never forwarded.
    Local,
    Block,
    Forward,
}

pub(crate) fn decide(name: &str, policy: Policy, cloud: bool, search: &[String]) -> Verdict {
    if clouds::is_mdns(name) {
        return Verdict::Local;
    }
    match policy {
        Policy::Observe => Verdict::Forward,
        Policy::BlockCloud if cloud => Verdict::Block,
        Policy::BlockCloud => Verdict::Forward,
        Policy::LanOnly if clouds::is_lan(name, search) => Verdict::Forward,
        Policy::LanOnly => Verdict::Block,
    }
}

fn now_secs() -> u64 {
    (UnixTime::now().0 / 1000).max(0) as u64
}

impl Dns {
    /// Starts the resolver on `sockets`, with its tasks under `supervisor`.
    pub async fn start(
        config: DnsConfig,
        sockets: Sockets,
        store: Arc<Mutex<Store>>,
        devices: Arc<Devices>,
        supervisor: &Supervisor,
    ) -> Result<Arc<Dns>, DnsError> {
        if sockets.udp.is_empty() && sockets.tcp.is_empty() {
            return Err(DnsError::NoListener);
        }
        let listening = sockets.addrs();
        let host = match std::fs::read_to_string(upstream::RESOLV_CONF) {
            Ok(text) => upstream::parse(&text),
            Err(_) if !config.upstream.is_empty() => upstream::Host::default(),
            Err(e) => {
                return Err(DnsError::NoUpstream(format!(
                    "{} cannot be read ({e})",
                    upstream::RESOLV_CONF
                )));
            }
        };
        let local: Vec<IpAddr> = if_addrs::get_if_addrs()
            .map(|v| v.into_iter().map(|i| i.ip()).collect())
            .unwrap_or_default();
        let upstreams = upstream::choose(&config.upstream, &host, &listening, &local);
        if upstreams.is_empty() {
            return Err(DnsError::NoUpstream(if config.upstream.is_empty() {
                format!("{} names none but hearth itself", upstream::RESOLV_CONF)
            } else {
                "every configured upstream is hearth itself".into()
            }));
        }
        let resolver = resolver(&upstreams)?;

        let (records, owner, since) = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
                let mut s = store.lock().expect("store lock");
                let records = s.dns_records()?;
                let owner: Vec<String> = s
                    .secret(OWNER_DOMAINS)?
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                let since = match s.secret(WATCHING_SINCE)? {
                    Some(b) => std::str::from_utf8(&b).ok().and_then(|t| t.parse().ok()),
                    None => None,
                };
                let since = match since {
                    Some(t) => t,
                    None => {
                        let t = now_secs();
                        s.put_secret(WATCHING_SINCE, t.to_string().as_bytes())?;
                        t
                    }
                };
                Ok((records, owner, since))
            })
            .await
            .map_err(|e| DnsError::Resolver(e.to_string()))??
        };

        let inner = Arc::new(Inner {
            upstreams,
            search: host.search,
            listening,
            resolver,
            cache: Mutex::new(Cache::new(config.cache_entries)),
            limits: Mutex::new(Keyed::new(config.client_rate, config.client_burst, MAX_CLIENTS)),
            in_flight: tokio::sync::Semaphore::new(config.max_in_flight),
            who: RwLock::new(HashMap::new()),
            adopted: RwLock::new(HashMap::new()),
            histories: Mutex::new(
                records
                    .into_iter()
                    .map(|(id, r)| (id, History::from_record(r)))
                    .collect(),
            ),
            clouds: RwLock::new(Clouds::new(&owner)),
            owner_domains: Mutex::new(owner),
            new_clouds: Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
            counters: Counters::default(),
            since,
            store,
            config,
        });
        inner.learn_devices(&devices).await?;

        let mut server = Server::new(server::Handler(inner.clone()));
        for udp in sockets.udp {
            let addr = udp.local_addr().ok();
            let udp = udp
                .set_nonblocking(true)
                .and_then(|()| tokio::net::UdpSocket::from_std(udp))
                .map_err(|e| not_listening(addr, e))?;
            server.register_socket(udp);
        }
        let server_token = server.shutdown_token().clone();
        supervisor.spawn("dns-udp", move |token| async move {
            token.cancelled().await;
            server_token.cancel();
            let _ = server.block_until_done().await;
            Ok(())
        });
        for tcp in sockets.tcp {
            let addr = tcp.local_addr().ok();
            let tcp = tcp
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(tcp))
                .map_err(|e| not_listening(addr, e))?;
            let inner = inner.clone();
            supervisor.spawn("dns-tcp", move |token| async move {
                server::serve_tcp(tcp, inner, token).await;
                Ok(())
            });
        }
        {
            let (inner, mut changes) = (inner.clone(), devices.subscribe_changes());
            supervisor.spawn("dns-devices", move |token| async move {
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return Ok(()),
                        changed = changes.changed() => if changed.is_err() { return Ok(()) },
                    }
                    if let Err(error) = inner.learn_devices(&devices).await {
                        tracing::warn!(%error, "DNS could not reload the devices' addresses");
                    }
                }
            });
        }
        {
            let inner = inner.clone();
            supervisor.spawn("dns-records", move |token| async move {
                keep_records(inner, token).await;
                Ok(())
            });
        }
        tracing::info!(
            listeners = inner.listening.len(),
            upstreams = inner.upstreams.len(),
            "DNS resolver started"
        );
        Ok(Arc::new(Dns { inner }))
    }

    pub fn status(&self) -> Status {
        let i = &self.inner;
        Status {
            enabled: true,
            listening: i.listening.clone(),
            upstreams: i.upstreams.len(),
            cache_entries: i.cache.lock().expect("cache lock").len(),
            cache_capacity: i.config.cache_entries,
            watching_since: i.since,
            devices_watched: i.adopted.read().expect("adopted lock").len(),
            counts: i.counters.read(),
        }
    }

    pub fn counts(&self) -> Counts {
        self.inner.counters.read()
    }

    /// Entries in the cache now.
    pub fn cache_entries(&self) -> usize {
        self.inner.cache.lock().expect("cache lock").len()
    }

    /// What `id` looked up, or `None` if it is not an adopted device.
    pub fn device(&self, id: &DeviceId) -> Option<DeviceDns> {
        let i = &self.inner;
        let adopted_at = *i.adopted.read().expect("adopted lock").get(id)?;
        let histories = i.histories.lock().expect("histories lock");
        let clouds = i.clouds.read().expect("clouds lock");
        let empty = History::default();
        let h = histories.get(id).unwrap_or(&empty);
        let names = h
            .names()
            .into_iter()
            .rev()
            .map(|n| {
                let m = clouds.matches(&n.name);
                NameSeen {
                    cloud: m.map(|(d, _)| d.to_owned()),
                    vendor: m.and_then(|(_, o)| match o {
                        clouds::Origin::Shipped(v) => clouds::shipped().get(v).map(|v| v.name.clone()),
                        clouds::Origin::Owner => None,
                    }),
                    name: n.name,
                    count: n.count,
                    blocked: n.blocked,
                    first: n.first,
                    last: n.last,
                }
            })
            .collect();
        let s = i.summary(id, adopted_at, h);
        Some(DeviceDns {
            policy: s.policy,
            queries: s.queries,
            may_use_own_dns: s.may_use_own_dns,
            clouds: s.clouds,
            names,
        })
    }

    /// Every adopted device's summary, in id order: no names.
    pub fn devices(&self) -> Vec<DeviceSummary> {
        let i = &self.inner;
        let adopted = i.adopted.read().expect("adopted lock");
        let histories = i.histories.lock().expect("histories lock");
        let empty = History::default();
        let mut v: Vec<DeviceSummary> = adopted
            .iter()
            .map(|(id, at)| i.summary(id, *at, histories.get(id).unwrap_or(&empty)))
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Sets a device's policy; audited. `false` if it already had it.
    pub async fn set_policy(&self, id: &DeviceId, policy: Policy, by: Actor) -> Result<bool, DnsError> {
        let i = &self.inner;
        if !i.adopted.read().expect("adopted lock").contains_key(id) {
            return Err(DnsError::NoDevice);
        }
        let (was, record) = {
            let mut histories = i.histories.lock().expect("histories lock");
            let h = histories.entry(id.clone()).or_default();
            let was = h.policy;
            h.policy = policy;
            h.dirty = false;
            (was, h.to_record())
        };
        if was == policy {
            return Ok(false);
        }
        let (store, id) = (i.store.clone(), id.clone());
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            let mut s = store.lock().expect("store lock");
            s.put_dns_records(&[(id.clone(), record)])?;
            s.append_audit(&AuditEvent::ok(
                AuditKind::DnsPolicyChanged,
                by,
                format!("device {id}: {} to {}", was.as_str(), policy.as_str()),
            ))
        })
        .await
        .map_err(|e| DnsError::Resolver(e.to_string()))??;
        Ok(true)
    }

    pub fn cloud_lists(&self) -> CloudLists {
        CloudLists {
            shipped: clouds::shipped()
                .iter()
                .map(|v| ShippedVendor {
                    name: v.name.clone(),
                    domains: v.domains.clone(),
                    source: v.source.clone(),
                    note: v.note.clone(),
                })
                .collect(),
            owner: self.inner.owner_domains.lock().expect("domains lock").clone(),
        }
    }

    /// Adds (`add`) or removes an owner's cloud domain; audited. Whether the
    /// list changed.
    pub async fn change_cloud(&self, input: &str, add: bool, by: Actor) -> Result<bool, DnsError> {
        let domain =
            clouds::domain(input).ok_or_else(|| DnsError::BadDomain(input.chars().take(80).collect()))?;
        let i = &self.inner;
        let list = {
            let mut owner = i.owner_domains.lock().expect("domains lock");
            let had = owner.contains(&domain);
            if had == add {
                return Ok(false);
            }
            if add {
                if owner.len() >= clouds::MAX_OWNER_DOMAINS {
                    return Err(DnsError::TooMany(owner.len()));
                }
                owner.push(domain.clone());
                owner.sort();
            } else {
                owner.retain(|d| *d != domain);
            }
            owner.clone()
        };
        *i.clouds.write().expect("clouds lock") = Clouds::new(&list);
        let store = i.store.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            let mut s = store.lock().expect("store lock");
            s.put_secret(
                OWNER_DOMAINS,
                &serde_json::to_vec(&list).expect("a list serialises"),
            )?;
            s.append_audit(&AuditEvent::ok(
                AuditKind::DnsCloudDomains,
                by,
                format!("{} {domain}", if add { "added" } else { "removed" }),
            ))
        })
        .await
        .map_err(|e| DnsError::Resolver(e.to_string()))??;
        Ok(true)
    }

    /// Writes every changed record now (the tests and a stop use it).
    pub async fn flush(&self) -> Result<usize, DnsError> {
        flush(&self.inner).await
    }
}

/// Which device each address belongs to. An address two devices claim (a
/// device that moved, or several behind one address) is nobody's: its
/// queries are counted as another client's rather than blamed on either.
fn owners_of_addresses<'a>(
    devices: impl Iterator<Item = (&'a DeviceId, &'a [IpAddr])>,
) -> HashMap<IpAddr, DeviceId> {
    let mut who: HashMap<IpAddr, Option<DeviceId>> = HashMap::new();
    for (id, addresses) in devices {
        for a in addresses {
            who.entry(*a)
                .and_modify(|owner| {
                    if owner.as_ref() != Some(id) {
                        *owner = None;
                    }
                })
                .or_insert_with(|| Some(id.clone()));
        }
    }
    who.into_iter().filter_map(|(a, id)| Some((a, id?))).collect()
}

/// Whether a device that made `queries` while watched since `since` may use
/// its own DNS at `now` (all Unix seconds).
pub fn may_use_own_dns(queries: u64, since: u64, now: u64) -> bool {
    queries == 0 && now.saturating_sub(since) >= OWN_DNS_AFTER.as_secs()
}

fn resolver(
    upstreams: &[SocketAddr],
) -> Result<hickory_server::resolver::Resolver<TokioRuntimeProvider>, DnsError> {
    let mut config = ResolverConfig::from_parts(None, Vec::new(), Vec::new());
    for u in upstreams {
        let mut ns = NameServerConfig::udp_and_tcp(u.ip());
        for c in &mut ns.connections {
            c.port = u.port();
        }
        config.add_name_server(ns);
    }
    let mut builder =
        hickory_server::resolver::Resolver::builder_with_config(config, TokioRuntimeProvider::default());
    let o = builder.options_mut();
    // hearth keeps its own cache (bounded, counted).
    o.cache_size = 0;
    o.timeout = Duration::from_secs(2);
    o.attempts = 2;
    o.use_hosts_file = ResolveHosts::Never;
    o.preserve_intermediates = true;
    o.ndots = 0;
    o.recursion_desired = true;
    builder.build().map_err(|e| DnsError::Resolver(e.to_string()))
}

/// A socket the runtime could not take over.
fn not_listening(addr: Option<SocketAddr>, e: std::io::Error) -> DnsError {
    DnsError::Bind {
        addr: addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        message: e.to_string(),
    }
}

impl Inner {
    fn summary(&self, id: &DeviceId, adopted_at: u64, h: &History) -> DeviceSummary {
        let queries = h.queries();
        DeviceSummary {
            id: id.to_string(),
            policy: h.policy.as_str().to_owned(),
            may_use_own_dns: may_use_own_dns(queries, self.since.max(adopted_at), now_secs()),
            queries,
            clouds: h.clouds().map(str::to_owned).collect(),
        }
    }

    /// Reloads the adopted devices' known addresses.
    async fn learn_devices(&self, devices: &Devices) -> Result<(), DnsError> {
        let adopted = devices
            .adopted()
            .await
            .map_err(|e| DnsError::Resolver(e.to_string()))?;
        let adopted: Vec<_> = adopted
            .into_iter()
            .filter(|d| d.fields.status == DeviceStatus::Adopted)
            .collect();
        let who = owners_of_addresses(adopted.iter().map(|d| (&d.id, d.fields.addresses.as_slice())));
        let ids: HashMap<DeviceId, u64> = adopted
            .iter()
            .map(|d| (d.id.clone(), (d.created_at.0 / 1000).max(0) as u64))
            .collect();
        self.histories
            .lock()
            .expect("histories lock")
            .retain(|id, _| ids.contains_key(id));
        *self.who.write().expect("who lock") = who;
        *self.adopted.write().expect("adopted lock") = ids;
        Ok(())
    }

    /// The adopted device at `ip`, if any.
    fn device_at(&self, ip: &IpAddr) -> Option<DeviceId> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*ip, IpAddr::V4),
            v4 => *v4,
        };
        self.who.read().expect("who lock").get(&ip).cloned()
    }

    /// Decides a query for `name` from device `id` under its policy, and
    /// counts it in the device's record: one lock of the records.
    fn judge(&self, id: &DeviceId, name: &str, cloud: Option<&str>) -> Verdict {
        let (verdict, noted) = {
            let mut histories = self.histories.lock().expect("histories lock");
            let h = histories.entry(id.clone()).or_default();
            let verdict = decide(name, h.policy, cloud.is_some(), &self.search);
            let blocked = verdict == Verdict::Block;
            let noted = h.note(name, cloud, blocked, now_secs(), self.config.names_per_device);
            (verdict, noted)
        };
        if let (Noted::NewCloud, Some(d)) = (noted, cloud) {
            self.new_clouds
                .lock()
                .expect("new clouds lock")
                .push((id.clone(), d.to_owned()));
            self.wake.notify_one();
        }
        verdict
    }
}

/// Writes changed records every [`FLUSH_EVERY`], warnings of new cloud
/// domains at once, and everything left at a stop.
async fn keep_records(inner: Arc<Inner>, token: CancellationToken) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.tick().await;
    loop {
        let stop = tokio::select! {
            _ = token.cancelled() => true,
            _ = tick.tick() => false,
            _ = inner.wake.notified() => false,
        };
        let warnings: Vec<(DeviceId, String)> =
            std::mem::take(&mut *inner.new_clouds.lock().expect("new clouds lock"));
        if !warnings.is_empty() {
            let store = inner.store.clone();
            let n = warnings.len();
            let done = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
                let mut s = store.lock().expect("store lock");
                for (id, domain) in &warnings {
                    crate::store::warnings::raise_new_cloud(&mut s, id, domain)?;
                }
                Ok(())
            })
            .await;
            match done {
                Ok(Ok(())) => tracing::info!(
                    devices = n,
                    "a device looked up a cloud domain for the first time; the dashboard shows it"
                ),
                Ok(Err(error)) => tracing::error!(%error, "could not record a new cloud domain"),
                Err(error) => tracing::error!(%error, "could not record a new cloud domain"),
            }
        }
        if let Err(error) = flush(&inner).await {
            tracing::error!(%error, "could not write the devices' DNS records");
        }
        if stop {
            return;
        }
    }
}

/// Ages every record and writes the changed ones; how many.
async fn flush(inner: &Arc<Inner>) -> Result<usize, DnsError> {
    let cutoff = now_secs().saturating_sub(u64::from(inner.config.history_days) * 86_400);
    let changed: Vec<(DeviceId, crate::store::dns::DnsRecord)> = {
        let mut histories = inner.histories.lock().expect("histories lock");
        histories
            .iter_mut()
            .filter_map(|(id, h)| {
                h.age(cutoff);
                if !h.dirty {
                    return None;
                }
                h.dirty = false;
                Some((id.clone(), h.to_record()))
            })
            .collect()
    };
    if changed.is_empty() {
        return Ok(0);
    }
    let store = inner.store.clone();
    let n = tokio::task::spawn_blocking(move || store.lock().expect("store lock").put_dns_records(&changed))
        .await
        .map_err(|e| DnsError::Resolver(e.to_string()))??;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_policy_decides_as_documented() {
        let search = vec!["fritz.box".to_owned()];
        use Verdict::*;
        for (name, cloud, observe, block, lan) in [
            ("iot.shelly.cloud", true, Forward, Block, Block),
            ("example.org", false, Forward, Forward, Block),
            ("nas.fritz.box", false, Forward, Forward, Forward),
            ("hub.local", false, Local, Local, Local),
            ("printer", false, Forward, Forward, Forward),
        ] {
            assert_eq!(decide(name, Policy::Observe, cloud, &search), observe, "{name}");
            assert_eq!(decide(name, Policy::BlockCloud, cloud, &search), block, "{name}");
            assert_eq!(decide(name, Policy::LanOnly, cloud, &search), lan, "{name}");
        }
    }

    #[test]
    fn a_silent_device_is_suspected_only_after_an_hour_watched() {
        let hour = OWN_DNS_AFTER.as_secs();
        assert!(!may_use_own_dns(0, 1000, 1000 + hour - 1));
        assert!(may_use_own_dns(0, 1000, 1000 + hour));
        assert!(!may_use_own_dns(1, 1000, 1000 + 10 * hour));
        assert!(!may_use_own_dns(0, 1000, 10), "a clock that went back");
    }

    #[test]
    fn an_address_two_devices_claim_is_nobodys() {
        let (a, b) = (
            DeviceId::parse(&"a1".repeat(16)).unwrap(),
            DeviceId::parse(&"b2".repeat(16)).unwrap(),
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a_at = [ip("10.0.0.5"), ip("10.0.0.9"), ip("10.0.0.5")];
        let b_at = [ip("10.0.0.6"), ip("10.0.0.9")];
        let who = owners_of_addresses([(&a, &a_at[..]), (&b, &b_at[..])].into_iter());
        assert_eq!(who.get(&ip("10.0.0.5")), Some(&a), "its own, even listed twice");
        assert_eq!(who.get(&ip("10.0.0.6")), Some(&b));
        assert_eq!(who.get(&ip("10.0.0.9")), None, "shared");
        assert_eq!(who.len(), 2);
    }

    #[test]
    fn block_answers_parse() {
        assert_eq!(BlockAnswer::parse("zero"), Some(BlockAnswer::Zero));
        assert_eq!(BlockAnswer::parse("nxdomain"), Some(BlockAnswer::Nxdomain));
        assert_eq!(BlockAnswer::parse("0.0.0.0"), None);
    }
}
