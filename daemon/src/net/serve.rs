//! hearth's one HTTP/1.1 serve loop, for every HTTP listener (the dashboard
//! and the voice relay): accept, hold a place, TLS, hyper with its deadlines
//! and caps, and a graceful end.
//!
//! What differs between listeners is data in [`Http`]: the deadlines, the
//! header buffer, TLS or plain, and how connections are capped
//! ([`Capacity`]). It never logs a client's address; what it counts, it
//! reports as an [`Event`] carrying no address either.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Extensions, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::tls::Reloadable;

/// How long open connections get to finish their request at shutdown.
const DRAIN: Duration = Duration::from_secs(2);
/// The pause after a failed accept (out of descriptors, usually), instead
/// of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// One HTTP listener's policy.
pub struct Http {
    /// Names the listener in the one line a failed accept logs.
    pub name: &'static str,
    /// TLS, or plain HTTP (the relay behind the owner's tunnel).
    pub tls: Option<Arc<Reloadable>>,
    /// The TLS handshake must finish within this, if set.
    pub handshake_timeout: Option<Duration>,
    /// From accept, the TLS handshake and the first request's headers must
    /// both be done within this, if set, however the client drips its bytes.
    pub first_request_timeout: Option<Duration>,
    /// A request's headers must arrive within this, counted from when hyper
    /// starts waiting for them (so an idle kept-alive connection ends too).
    pub header_timeout: Duration,
    /// A request must be answered within this, or gets `timed_out()`.
    pub request_timeout: Duration,
    /// Bytes hyper buffers for a request head.
    pub max_buf_size: usize,
    pub keep_alive: bool,
    pub capacity: Capacity,
    /// Puts the client's address on each request (each router has its own
    /// type for it).
    pub peer: fn(&mut Extensions, SocketAddr),
    /// The answer to a request that ran past `request_timeout`.
    pub timed_out: fn() -> Response<Body>,
    /// Told of each [`Event`].
    pub count: Box<dyn Fn(Event) + Send + Sync>,
}

/// How many connections a listener holds.
pub enum Capacity {
    /// At most this many at once, shared by every listener given the same
    /// semaphore; the next accept waits for a place, and the kernel's
    /// backlog holds the rest.
    Wait(Arc<Semaphore>),
    /// Accepting never waits: see [`Tracker`].
    Track(Arc<Mutex<Tracker>>),
}

/// What the loop counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Refused: the per-address cap was reached.
    RefusedAddress,
    /// Refused: full, and every connection had a request going.
    RefusedFull,
    /// An idle connection was closed to make room.
    Evicted,
    /// A connection ended before a whole request head (a deadline, a failed
    /// handshake, a client that left); not counted if it was evicted.
    NoRequest,
}

/// Accepts on `listener` until `shutdown` is cancelled. Each connection is
/// its own task; `shutdown` ends each one gracefully (its request in flight
/// gets [`DRAIN`] to finish).
pub async fn serve(listener: TcpListener, router: Router, http: Arc<Http>, shutdown: CancellationToken) {
    loop {
        let ready = match &http.capacity {
            Capacity::Wait(limit) => tokio::select! {
                _ = shutdown.cancelled() => return,
                p = limit.clone().acquire_owned() => match p {
                    Ok(p) => Ready::Permit(p),
                    Err(_) => return,
                },
            },
            Capacity::Track(tracker) => Ready::Track(tracker),
        };
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, listener = http.name, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let place = match ready {
            Ready::Permit(permit) => Place::Permit { _permit: permit },
            Ready::Track(tracker) => match Tracker::admit(tracker, peer.ip()) {
                Ok((slot, evicted)) => {
                    if evicted {
                        (http.count)(Event::Evicted);
                    }
                    Place::Slot(slot)
                }
                Err(why) => {
                    (http.count)(why);
                    drop(tcp);
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let tls = http.tls.as_ref().map(|t| t.current());
        let (router, http, shutdown) = (router.clone(), http.clone(), shutdown.clone());
        tokio::spawn(async move {
            let (started, evict) = place.watch();
            // Runs out only while no request head has arrived.
            let first_request = async {
                match http.first_request_timeout {
                    Some(t) => tokio::time::sleep(t).await,
                    None => std::future::pending::<()>().await,
                }
                if started.load(Ordering::Acquire) {
                    std::future::pending::<()>().await;
                }
            };
            let served = async {
                let (started, tag) = (started.clone(), http.peer);
                let on_request = move |req: &mut Request<hyper::body::Incoming>| {
                    started.store(true, Ordering::Release);
                    tag(req.extensions_mut(), peer);
                };
                match tls {
                    Some(config) => {
                        let accept = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
                        let stream = match http.handshake_timeout {
                            Some(t) => tokio::time::timeout(t, accept).await.ok().and_then(Result::ok),
                            None => accept.await.ok(),
                        };
                        if let Some(stream) = stream {
                            connection(stream, router, &http, on_request, &shutdown).await;
                        }
                    }
                    None => connection(tcp, router, &http, on_request, &shutdown).await,
                }
            };
            let evicted = tokio::select! {
                _ = served => false,
                _ = evict.cancelled() => true,
                _ = first_request => false,
            };
            // Eviction was counted when it happened.
            if !evicted && !started.load(Ordering::Acquire) {
                (http.count)(Event::NoRequest);
            }
            drop(place);
        });
    }
}

/// Serves HTTP/1.1 on one connection until it closes, or, once `shutdown`
/// is cancelled, until its request in flight is answered (at most
/// [`DRAIN`]). `on_request` sees each request head as it arrives.
async fn connection<I, F>(io: I, router: Router, http: &Http, on_request: F, shutdown: &CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(&mut Request<hyper::body::Incoming>) + Send + Sync + 'static,
{
    let (request_timeout, timed_out) = (http.request_timeout, http.timed_out);
    let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        on_request(&mut req);
        let router = router.clone();
        async move {
            tokio::time::timeout(request_timeout, router.oneshot(req.map(Body::new)))
                .await
                .unwrap_or_else(|_| Ok(timed_out()))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_timeout)
        .max_buf_size(http.max_buf_size)
        .keep_alive(http.keep_alive);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN, conn).await;
        }
    }
}

/// Where the next connection will go, known before it is accepted.
enum Ready<'a> {
    Permit(OwnedSemaphorePermit),
    Track(&'a Arc<Mutex<Tracker>>),
}

/// What an accepted connection holds until it ends.
enum Place {
    Permit { _permit: OwnedSemaphorePermit },
    Slot(Slot),
}

impl Place {
    /// Whether a request head has arrived, and the token that evicts it.
    fn watch(&self) -> (Arc<AtomicBool>, CancellationToken) {
        match self {
            // Nothing evicts a connection holding a permit.
            Place::Permit { .. } => (Arc::new(AtomicBool::new(false)), CancellationToken::new()),
            Place::Slot(s) => (s.started.clone(), s.evicted.clone()),
        }
    }
}

/// The connections a listener holds, oldest first, so that accepting never
/// waits: a connection over its address's cap or over the total is
/// refused at once, and when the total is reached the oldest connection
/// that has not yet sent a whole request head makes room. A stalling
/// client therefore never delays one that talks.
pub struct Tracker {
    max: usize,
    max_per_address: usize,
    next: u64,
    conns: BTreeMap<u64, Tracked>,
    per_address: HashMap<IpAddr, usize>,
}

struct Tracked {
    ip: IpAddr,
    /// Set once a request head arrived; until then it may be evicted.
    started: Arc<AtomicBool>,
    evict: CancellationToken,
}

/// One admitted connection; dropping it frees its place.
struct Slot {
    id: u64,
    tracker: Arc<Mutex<Tracker>>,
    started: Arc<AtomicBool>,
    evicted: CancellationToken,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.tracker.lock().expect("tracker lock").remove(self.id);
    }
}

impl Tracker {
    /// At most `max` connections, and `max_per_address` from one address.
    pub fn new(max: usize, max_per_address: usize) -> Tracker {
        Tracker {
            max,
            max_per_address,
            next: 0,
            conns: BTreeMap::new(),
            per_address: HashMap::new(),
        }
    }

    /// Admits a connection from `ip`, or says why not. The second value is
    /// whether an idle connection was evicted to make room.
    fn admit(this: &Arc<Mutex<Tracker>>, ip: IpAddr) -> Result<(Slot, bool), Event> {
        let mut t = this.lock().expect("tracker lock");
        if t.per_address.get(&ip).copied().unwrap_or(0) >= t.max_per_address {
            return Err(Event::RefusedAddress);
        }
        let mut evicted = false;
        if t.conns.len() >= t.max {
            let idle = t
                .conns
                .iter()
                .find(|(_, c)| !c.started.load(Ordering::Acquire))
                .map(|(id, _)| *id);
            let Some(id) = idle else {
                return Err(Event::RefusedFull);
            };
            if let Some(c) = t.remove(id) {
                c.evict.cancel();
            }
            evicted = true;
        }
        let id = t.next;
        t.next += 1;
        let (started, evict) = (Arc::new(AtomicBool::new(false)), CancellationToken::new());
        t.conns.insert(
            id,
            Tracked {
                ip,
                started: started.clone(),
                evict: evict.clone(),
            },
        );
        *t.per_address.entry(ip).or_insert(0) += 1;
        drop(t);
        Ok((
            Slot {
                id,
                tracker: this.clone(),
                started,
                evicted: evict,
            },
            evicted,
        ))
    }

    fn remove(&mut self, id: u64) -> Option<Tracked> {
        let c = self.conns.remove(&id)?;
        if let Some(n) = self.per_address.get_mut(&c.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&c.ip);
            }
        }
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracker_caps_addresses_and_evicts_only_idle_connections() {
        const MAX_CONNECTIONS: usize = 64;
        const MAX_PER_ADDRESS: usize = 16;
        let tracker = Arc::new(Mutex::new(Tracker::new(MAX_CONNECTIONS, MAX_PER_ADDRESS)));
        let ip = |n: u8| IpAddr::from([127, 0, 0, n]);
        let mut held = Vec::new();
        for _ in 0..MAX_PER_ADDRESS {
            held.push(Tracker::admit(&tracker, ip(2)).unwrap().0);
        }
        assert_eq!(Tracker::admit(&tracker, ip(2)).err(), Some(Event::RefusedAddress));
        // A closed connection frees its address's place.
        held.pop();
        held.push(Tracker::admit(&tracker, ip(2)).unwrap().0);
        // Fill the listener from other addresses, every connection idle.
        let mut n = 3;
        while held.len() < MAX_CONNECTIONS {
            let a = ip(n);
            while held.len() < MAX_CONNECTIONS
                && let Ok((slot, evicted)) = Tracker::admit(&tracker, a)
            {
                assert!(!evicted);
                held.push(slot);
            }
            n += 1;
        }
        // Full: the oldest idle connection makes room.
        let (slot, evicted) = Tracker::admit(&tracker, ip(200)).unwrap();
        assert!(evicted);
        assert!(held[0].evicted.is_cancelled());
        assert!(!held[1].evicted.is_cancelled());
        held.push(slot);
        // Once every connection has a request going, a newcomer is refused.
        for s in &held {
            s.started.store(true, Ordering::Release);
        }
        assert_eq!(Tracker::admit(&tracker, ip(201)).err(), Some(Event::RefusedFull));
        drop(held);
        let t = tracker.lock().unwrap();
        assert!(t.conns.is_empty() && t.per_address.is_empty());
    }
}
