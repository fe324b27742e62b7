//! Discovery over mDNS: browses the configured service types, classifies
//! what it hears, and proposes devices as pending.
//!
//! Discovery can only propose. It never adopts, never issues a credential,
//! and never changes an adopted device's identity because an advert said so.
//! It listens only on interfaces with private or link-local addresses (or
//! loopback, when configured), never on one with a public address, and it
//! logs counts only.

pub mod classify;
pub mod mdns;
pub mod pending;
pub mod wire;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use self::classify::{Advert, ExtraKinds, NotOffered, Verdict, classify_with};
use self::pending::{Outcome, Shares};
use crate::net::rate::Bucket;
use crate::store::Store;
use crate::supervisor::Supervisor;

/// Adverts that reach the store per second at most (new or changed ones;
/// repeats and adverts left alone cost no store work); the rest are dropped
/// and counted. A real home's adverts rarely change, so this is only ever
/// reached by a flood; at this rate a flood fills the pending list
/// (`max_pending`) within seconds, and nothing new is added once it is full.
const MAX_ADVERTS_PER_SEC: f64 = 200.0;
/// How long the same identity is not reprocessed unless its addresses change.
const DEDUPE_WINDOW: Duration = Duration::from_secs(5);
/// Identities remembered for deduplication.
const DEDUPE_ENTRIES: usize = 4096;
/// Adverts waiting to be processed.
const QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot bind the mDNS socket (UDP port 5353): {0}")]
    Bind(std::io::Error),
}

/// Which interfaces discovery uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interfaces {
    /// Every interface with a private or link-local address.
    Private,
    /// Loopback only: tests and `hearth demo`.
    Loopback,
    /// These interfaces by name, and only their private or link-local
    /// addresses.
    Named(Vec<String>),
}

#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    pub enabled: bool,
    pub interfaces: Interfaces,
    pub service_types: Vec<String>,
    /// Service types the owner added, with the kind of device behind them.
    pub service_kinds: ExtraKinds,
    pub max_pending: usize,
    /// Advertise hearth itself as `_hearth._tcp` and `_secure-mqtt._tcp`.
    pub advertise: bool,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            enabled: true,
            interfaces: Interfaces::Private,
            service_types: classify::DEFAULT_SERVICE_TYPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            service_kinds: ExtraKinds::new(),
            max_pending: 256,
            advertise: true,
        }
    }
}

/// Private (RFC 1918, unique-local) or link-local: the addresses a home LAN
/// uses. A public address never qualifies.
pub fn is_home_address(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unique_local() || v6.is_unicast_link_local(),
    }
}

/// Counters, for status. Counts only.
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    /// mDNS packets parsed.
    pub packets: AtomicU64,
    /// Packets dropped unread by the packet rate.
    pub dropped_packets: AtomicU64,
    /// Packets refused by the parser.
    pub malformed: AtomicU64,
    /// Packets from outside every chosen interface's subnet.
    pub foreign: AtomicU64,
    /// Resolved instances handed to processing.
    pub adverts: AtomicU64,
    pub dropped_queue: AtomicU64,
    pub dropped_rate: AtomicU64,
    pub dropped_oversized: AtomicU64,
    pub ignored: AtomicU64,
    /// Recognised and not offered, by [`NotOffered`] reason.
    pub not_offered: [AtomicU64; NotOffered::ALL.len()],
    pub deduplicated: AtomicU64,
    pub created: AtomicU64,
    pub refreshed: AtomicU64,
    pub flagged: AtomicU64,
    pub pending_full: AtomicU64,
    /// New devices refused because their source address held its share.
    pub source_full: AtomicU64,
}

impl DiscoveryStats {
    /// The counters as JSON, for `hearth status`.
    pub fn snapshot(&self) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "packets": g(&self.packets),
            "dropped_packets": g(&self.dropped_packets),
            "malformed": g(&self.malformed),
            "foreign": g(&self.foreign),
            "adverts": g(&self.adverts),
            "dropped_queue": g(&self.dropped_queue),
            "dropped_rate": g(&self.dropped_rate),
            "dropped_oversized": g(&self.dropped_oversized),
            "ignored": g(&self.ignored),
            "not_offered": NotOffered::ALL
                .iter()
                .zip(&self.not_offered)
                .map(|(why, n)| (why.as_str().to_owned(), serde_json::json!(g(n))))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
            "deduplicated": g(&self.deduplicated),
            "created": g(&self.created),
            "refreshed": g(&self.refreshed),
            "flagged": g(&self.flagged),
            "pending_full": g(&self.pending_full),
            "source_full": g(&self.source_full),
        })
    }
}

/// Binds the mDNS socket, then starts hearth's own querier and responder
/// and the processing task under the supervisor. `mqtt_port` is advertised
/// as `_secure-mqtt._tcp`.
pub fn start(
    config: &DiscoveryConfig,
    supervisor: &Supervisor,
    store: Arc<Mutex<Store>>,
    mqtt_port: Option<u16>,
    changes: tokio::sync::watch::Sender<u64>,
    published: Option<tokio::sync::watch::Receiver<Vec<mdns::Service>>>,
) -> Result<Arc<DiscoveryStats>, DiscoveryError> {
    let stats = Arc::new(DiscoveryStats::default());
    let socket = mdns::bind().map_err(DiscoveryError::Bind)?;
    let (tx, rx) = mpsc::channel::<Advert>(QUEUE);
    let mut own = match (config.advertise, mqtt_port) {
        (true, Some(port)) => Some(own_adverts(port)),
        // Another part's services still need hearth's host name.
        _ if published.is_some() => Some(mdns::Own {
            services: Vec::new(),
            ..own_adverts(0)
        }),
        _ => None,
    };
    if let Some(own) = &mut own {
        own.dynamic = published;
    }
    let engine = mdns::Engine::new(
        socket,
        config.interfaces.clone(),
        &config.service_types,
        own,
        tx,
        stats.clone(),
    )
    .map_err(DiscoveryError::Bind)?;
    supervisor.spawn("mdns", move |token| async move {
        engine.run(token).await;
        Ok(())
    });
    let max_pending = config.max_pending;
    let extra = Arc::new(config.service_kinds.clone());
    let processing_stats = stats.clone();
    supervisor.spawn("discovery", move |token| async move {
        process(rx, store, processing_stats, max_pending, extra, changes, token).await;
        Ok(())
    });
    Ok(stats)
}

/// hearth's own adverts: `_hearth._tcp` and `_secure-mqtt._tcp` on the MQTT
/// TLS port, under the host name its certificate carries. Their TXT records
/// are empty: no version, name or model, so nothing on the LAN learns what
/// the hub runs.
fn own_adverts(port: u16) -> mdns::Own {
    let host = crate::net::pki::hostname()
        .map(|h| h.split('.').next().unwrap_or("hearth").to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "hearth".into());
    mdns::Own {
        host: wire::Name::dotted(&format!("{host}.local")),
        instance: "hearth".into(),
        services: vec![("_hearth._tcp".into(), port), ("_secure-mqtt._tcp".into(), port)],
        dynamic: None,
    }
}

/// Bounds, classification, deduplication and a global rate on store work,
/// then the store.
async fn process(
    mut rx: mpsc::Receiver<Advert>,
    store: Arc<Mutex<Store>>,
    stats: Arc<DiscoveryStats>,
    max_pending: usize,
    extra: Arc<ExtraKinds>,
    changes: tokio::sync::watch::Sender<u64>,
    token: tokio_util::sync::CancellationToken,
) {
    let mut seen: HashMap<String, (Instant, Vec<IpAddr>)> = HashMap::new();
    let shares = Arc::new(Mutex::new(Shares::default()));
    let mut store_work = Bucket::new(MAX_ADVERTS_PER_SEC, MAX_ADVERTS_PER_SEC, Instant::now());
    loop {
        let advert = tokio::select! {
            _ = token.cancelled() => return,
            advert = rx.recv() => match advert {
                Some(a) => a,
                None => return,
            },
        };
        let now = Instant::now();
        if !advert.within_bounds() {
            stats.dropped_oversized.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let classified = match classify_with(&advert, &extra) {
            Some(Verdict::Offer(c)) => c,
            Some(Verdict::NotOffered(why)) => {
                stats.not_offered[why as usize].fetch_add(1, Ordering::Relaxed);
                continue;
            }
            None => {
                stats.ignored.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        // Per service: a device's other services may say more about it.
        let key = format!("{} {}", advert.service_type, classified.identity);
        if let Some((at, addrs)) = seen.get(&key)
            && now.duration_since(*at) < DEDUPE_WINDOW
            && *addrs == advert.addresses
        {
            stats.deduplicated.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // The rate bounds store work only: what is left alone or seen
        // already costs a lookup, and a burst of devices starting together
        // (after a power cut) is not dropped for its repeats.
        if !store_work.take(now) {
            stats.dropped_rate.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if seen.len() >= DEDUPE_ENTRIES {
            seen.retain(|_, (at, _)| now.duration_since(*at) < DEDUPE_WINDOW);
            if seen.len() >= DEDUPE_ENTRIES {
                seen.clear();
            }
        }
        seen.insert(key, (now, advert.addresses.clone()));
        let (store, shares) = (store.clone(), shares.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            let mut store = store.lock().expect("store lock");
            let mut shares = shares.lock().unwrap_or_else(|e| e.into_inner());
            pending::record_advert(&mut store, &mut shares, &advert, &classified, max_pending)
        })
        .await;
        match outcome {
            Ok(Ok(Outcome::Created(id))) => {
                stats.created.fetch_add(1, Ordering::Relaxed);
                changes.send_modify(|n| *n = n.wrapping_add(1));
                tracing::info!(device = %id, "device discovered (pending)");
            }
            Ok(Ok(Outcome::Refreshed(_))) => {
                stats.refreshed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(Outcome::Flagged(id))) => {
                stats.flagged.fetch_add(1, Ordering::Relaxed);
                changes.send_modify(|n| *n = n.wrapping_add(1));
                tracing::warn!(device = %id, "an advert claimed an adopted device from an address it was not adopted at; flagged");
            }
            Ok(Ok(Outcome::PendingFull)) => {
                stats.pending_full.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(Outcome::SourceFull)) => {
                stats.source_full.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(error)) => tracing::error!(%error, "discovery could not record an advert"),
            Err(error) => tracing::error!(%error, "discovery task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_home_addresses_qualify() {
        for ok in [
            "192.168.1.2",
            "10.0.0.1",
            "172.16.5.4",
            "169.254.1.1",
            "fe80::1",
            "fd00::1",
        ] {
            assert!(is_home_address(&ok.parse().unwrap()), "{ok}");
        }
        for no in [
            "8.8.8.8",
            "1.1.1.1",
            "2001:db8::1",
            "2a00:1450::1",
            "127.0.0.1",
            "::1",
        ] {
            assert!(!is_home_address(&no.parse().unwrap()), "{no}");
        }
    }
}
