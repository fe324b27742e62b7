//! The voice-assistant relay: the only part of hearth meant to be reached
//! from outside the home, so it is narrow and denies by default.
//!
//! - Its own listener ([`RelayConfig`]), plain HTTP on loopback for
//!   the owner's tunnel or reverse proxy, or TLS with the owner's
//!   certificate. It listens only while the owner has it enabled.
//! - Five routes (`router`); anything else is a bare 404.
//! - An OAuth 2.0 authorization server for account linking (`oauth`).
//! - Alexa Smart Home (`alexa`) and Google Smart Home (`google`)
//!   fulfilment, over the devices and actions each link was granted, under
//!   the owner's voice names, through canonical commands only.
//!
//! Every call is audited and counted against its link; no response carries
//! a nickname, room, model, firmware or address.

mod alexa;
mod google;
mod oauth;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::accounts::Auth;
use crate::accounts::Counters;
use crate::broker::Broker;
use crate::home::canonical::Command;
use crate::home::live::{DeviceState, LiveState};
use crate::home::vendor::Profile;
use crate::home::vendor::Scheme;
use crate::net::rate::Keyed;
use crate::net::serve::{Capacity, Event, Http, Tracker};
use crate::net::tls::Reloadable;
use crate::store::AuditKind;
use crate::store::relay::RelayLink;
use crate::store::secret::TokenHash;
use crate::store::{
    Actor, AuditEvent, Device, DeviceId, DeviceKind, DeviceStatus, LinkId, Store, StoreError, UnixTime,
};
use crate::supervisor::Supervisor;

pub use self::oauth::{ALEXA_REDIRECTS, GOOGLE_REDIRECTS, NewClient};

/// The voice relay's listener, validated. Whether it runs is the owner's
/// choice on the dashboard, kept in the store.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub listen: SocketAddr,
    /// Certificate chain and key files, when the relay serves TLS itself.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    pub token_rate: (u32, u32),
    pub address_rate: (u32, u32),
}

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY: usize = 16 * 1024;
/// A request's headers must arrive within this, counted from when hyper
/// starts waiting for them (so an idle kept-alive connection ends too).
/// Assistants send a whole request at once; only a stalling client needs
/// longer.
const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
/// From accept, the TLS handshake and the first request's headers must
/// both be done within this, however the client drips its bytes.
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A request must be answered within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections held at once.
const MAX_CONNECTIONS: usize = 64;
/// Connections held at once from one address. Behind a tunnel every
/// connection comes from the tunnel's address, so this is then the
/// relay's own cap.
const MAX_PER_ADDRESS: usize = 16;
/// Bytes buffered for a request head.
const MAX_HEAD: usize = 32 * 1024;
/// Tokens, and addresses, each rate limit tracks at most.
const RATE_KEYS: usize = 4096;
/// How long a command waits for the device to report the new state before
/// the answer says what was asked for, with that much uncertainty.
pub const CONFIRM_WAIT: Duration = Duration::from_secs(2);
/// The store row that keeps whether the owner enabled the relay.
const SETTINGS: &str = "relay_settings";

/// Actions a link may be granted.
pub const ACTIONS: [&str; 3] = ["power", "brightness", "color_temp"];

/// Colour temperatures a command may ask for, in kelvin (153 to 500 mireds).
pub const KELVIN_RANGE: (u32, u32) = (2000, 6500);

/// The assistant a client was registered for. A link answers only on its
/// own assistant's route, so a token that leaks from one assistant's cloud
/// cannot drive the other's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assistant {
    Alexa,
    Google,
}

impl Assistant {
    /// The word a client's record keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            Assistant::Alexa => "alexa",
            Assistant::Google => "google",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the relay could not listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the relay's TLS files: {0}")]
    Tls(String),
    #[error("{0}")]
    Refused(String),
    #[error(
        "turn on two-factor authentication in the dashboard first (Security): the relay cannot be enabled without it, because linking an assistant asks for a two-factor code"
    )]
    TwoFactorNeeded,
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A device as the relay shows it: its voice name and what it can do.
#[derive(Clone, Debug)]
pub struct VoiceDevice {
    pub id: DeviceId,
    /// The owner's voice name; never the nickname.
    pub voice_name: String,
    pub kind: DeviceKind,
    pub scheme: Scheme,
    /// Whether it takes a colour temperature.
    pub color_temp: bool,
}

impl VoiceDevice {
    pub fn dims(&self) -> bool {
        self.kind.dims()
    }
}

/// What a command for a device led to.
#[derive(Debug)]
pub enum Outcome {
    /// Carried out; the state after it, and whether the device confirmed it.
    Done(DeviceState, bool),
    /// Not one of the link's devices, or no longer offered.
    NotFound,
    /// The link may not take this action on it, or it cannot do it.
    NotAllowed,
    /// Offline.
    Offline,
    /// A value outside what the device takes.
    OutOfRange,
    Failed,
}

/// The relay: its settings, its pending authorizations, its listener.
pub struct Relay {
    store: Arc<Mutex<Store>>,
    live: Arc<LiveState>,
    broker: Arc<Broker>,
    auth: Arc<Auth>,
    config: RelayConfig,
    supervisor: Supervisor,
    oauth: oauth::Pending,
    /// Keyed by the first 8 bytes of a token's hash.
    token_rate: Mutex<Keyed<[u8; 8]>>,
    address_rate: Mutex<Keyed<IpAddr>>,
    /// Cancels the running listener; `None` while disabled.
    running: Mutex<Option<(CancellationToken, SocketAddr)>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Settings {
    enabled: bool,
}

impl Relay {
    pub fn new(
        store: Arc<Mutex<Store>>,
        live: Arc<LiveState>,
        broker: Arc<Broker>,
        auth: Arc<Auth>,
        config: RelayConfig,
        supervisor: Supervisor,
    ) -> Relay {
        let (tr, tb) = config.token_rate;
        let (ar, ab) = config.address_rate;
        Relay {
            store,
            live,
            broker,
            auth,
            token_rate: Mutex::new(Keyed::new(tr, tb, RATE_KEYS)),
            address_rate: Mutex::new(Keyed::new(ar, ab, RATE_KEYS)),
            config,
            supervisor,
            oauth: oauth::Pending::default(),
            running: Mutex::new(None),
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().expect("store lock")
    }

    /// Runs `f` on the store, on this thread.
    pub fn with_store_sync<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&mut self.store())
    }

    /// Runs `f` on the store, off the async workers.
    pub async fn with_store<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&mut this.store()))
            .await
            .map_err(|e| StoreError::Io {
                path: std::path::PathBuf::new(),
                source: std::io::Error::other(e.to_string()),
            })?
    }

    /// Whether the owner enabled the relay (kept in the store).
    pub fn enabled_setting(&self) -> Result<bool, StoreError> {
        Ok(match self.store().secret(SETTINGS)? {
            Some(bytes) => serde_json::from_slice::<Settings>(&bytes)
                .map(|s| s.enabled)
                .unwrap_or(false),
            None => false,
        })
    }

    /// Where it listens while it runs.
    pub fn listening(&self) -> Option<SocketAddr> {
        self.running.lock().expect("relay lock").as_ref().map(|(_, a)| *a)
    }

    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// Starts the listener if the owner left the relay enabled, and the
    /// rule of [`Relay::may_enable`] still holds (a relay enabled by an
    /// older hearth that did not ask stays off until two-factor is on).
    pub fn resume(self: &Arc<Self>) -> Result<(), RelayError> {
        if self.enabled_setting()? {
            match self.may_enable() {
                Ok(()) => self.start()?,
                Err(RelayError::TwoFactorNeeded) => {
                    tracing::warn!("the voice relay stays off: no owner has two-factor authentication");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The one rule for turning the relay on, whichever door asks (the
    /// dashboard, the CLI, a restart): an owner must have two-factor
    /// authentication, since linking an assistant asks for a code.
    pub fn may_enable(&self) -> Result<(), RelayError> {
        if self
            .auth
            .any_owner_has_two_factor()
            .map_err(|e| RelayError::Internal(e.to_string()))?
        {
            Ok(())
        } else {
            Err(RelayError::TwoFactorNeeded)
        }
    }

    /// Turns the relay on or off, remembers it, and audits it. Turning it
    /// on follows [`Relay::may_enable`].
    pub fn set_enabled(self: &Arc<Self>, on: bool, by: Actor) -> Result<Option<SocketAddr>, RelayError> {
        let was_on = self.enabled_setting()?;
        if on {
            self.may_enable()?;
            self.start()?;
        } else if let Some((stop, _)) = self.running.lock().expect("relay lock").take() {
            stop.cancel();
        }
        let bytes = serde_json::to_vec(&Settings { enabled: on }).expect("serialise");
        let mut store = self.store();
        store.put_secret(SETTINGS, &bytes)?;
        store.append_audit(&AuditEvent::ok(
            if on {
                AuditKind::RelayEnabled
            } else {
                AuditKind::RelayDisabled
            },
            by,
            "",
        ))?;
        if on && !was_on {
            crate::store::warnings::raise(&mut store, crate::store::warnings::RELAY_ENABLED)?;
        }
        drop(store);
        Ok(self.listening())
    }

    fn start(self: &Arc<Self>) -> Result<(), RelayError> {
        let mut running = self.running.lock().expect("relay lock");
        if running.is_some() {
            return Ok(());
        }
        let tls = match &self.config.tls {
            Some((cert, key)) => Some(Arc::new(Reloadable::new(tls_config(cert, key)?))),
            None => None,
        };
        let addr = self.config.listen;
        let listener =
            std::net::TcpListener::bind(addr).map_err(|source| RelayError::Listen { addr, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| RelayError::Listen { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| RelayError::Listen { addr, source })?;
        let listener =
            TcpListener::from_std(listener).map_err(|source| RelayError::Listen { addr, source })?;
        let stop = CancellationToken::new();
        let router = router(self.clone());
        {
            let http = Arc::new(http(tls, self.auth.counters.clone()));
            // The owner turning the relay off, or hearth stopping, ends it.
            let shutdown = stop.child_token();
            self.supervisor.spawn("relay", move |token| async move {
                tokio::select! {
                    _ = crate::net::serve::serve(listener, router, http, shutdown.clone()) => {}
                    _ = token.cancelled() => shutdown.cancel(),
                }
                Ok(())
            });
        }
        tracing::info!(%bound, tls = self.config.tls.is_some(), "voice relay listening");
        *running = Some((stop, bound));
        Ok(())
    }

    /// The devices `link` may see now: adopted, exposed to voice
    /// assistants, never a camera or doorbell, and with a voice name.
    pub fn devices_of(&self, link: &RelayLink) -> Result<Vec<VoiceDevice>, StoreError> {
        let store = self.store();
        let mut out = Vec::new();
        for id in &link.devices {
            if let Some(d) = store.device(id)?
                && let Some(v) = self.voice_device(d)
            {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Every device the owner may grant to a link.
    pub fn offerable(&self) -> Result<Vec<VoiceDevice>, StoreError> {
        let devices = self.store().devices()?;
        Ok(devices.into_iter().filter_map(|d| self.voice_device(d)).collect())
    }

    fn voice_device(&self, d: Device) -> Option<VoiceDevice> {
        let f = d.fields;
        let offered = f.status == DeviceStatus::Adopted && f.expose_voice && !f.kind.is_sensor();
        if !offered {
            return None;
        }
        let voice_name = f.voice_name.filter(|v| !v.is_empty())?;
        let scheme = Scheme {
            kind: f.kind,
            profile: Profile::parse(&f.profile).unwrap_or(Profile::Generic),
            base: f.topic?,
        };
        let color_temp = f.kind.dims()
            && (f.learnt.color_temp || self.live.get(&d.id).is_some_and(|s| s.color_temp.is_some()));
        Some(VoiceDevice {
            id: d.id,
            voice_name,
            kind: f.kind,
            scheme,
            color_temp,
        })
    }

    /// The link a bearer access token acts for, if it is live and was made
    /// for `assistant`: another assistant's token is unknown here.
    pub async fn link_of(
        self: &Arc<Self>,
        token: &str,
        assistant: Assistant,
    ) -> Result<Option<RelayLink>, StoreError> {
        if token.is_empty() || token.len() > 256 {
            return Ok(None);
        }
        let hash = TokenHash::of(token);
        self.with_store(move |s| {
            let Some(id) = s.relay_access(&hash)? else {
                return Ok(None);
            };
            let Some(link) = s.relay_link(&id)? else {
                return Ok(None);
            };
            let bound = s
                .relay_client(&link.client_id)?
                .is_some_and(|(c, _)| c.fields.assistant == assistant.as_str());
            Ok(bound.then_some(link))
        })
        .await
    }

    /// Whether `token` (already known to be live) may make another call now.
    fn token_allowed(&self, token: &str) -> bool {
        let mut key = [0u8; 8];
        key.copy_from_slice(&TokenHash::of(token).as_bytes()[..8]);
        self.token_rate
            .lock()
            .expect("rate lock")
            .take(key, Instant::now())
    }

    fn address_allowed(&self, ip: IpAddr) -> bool {
        self.address_rate
            .lock()
            .expect("rate lock")
            .take(ip, Instant::now())
    }

    /// The live state of a device, if it is tracked.
    pub fn state(&self, id: &DeviceId) -> Option<DeviceState> {
        self.live.get(id)
    }

    /// Carries out `command` on one of `link`'s devices, if the link holds
    /// it and may take the action, and waits up to [`CONFIRM_WAIT`] for the
    /// device to report it.
    pub async fn command(
        &self,
        link: &RelayLink,
        devices: &[VoiceDevice],
        id: &str,
        command: Command,
    ) -> Outcome {
        let Some(dev) = devices.iter().find(|d| d.id.as_str() == id) else {
            return Outcome::NotFound;
        };
        let wants = |a: &str| link.fields.actions.iter().any(|x| x == a);
        let allowed = (command.power.is_none() || wants("power"))
            && (command.brightness.is_none() || (wants("brightness") && dev.dims()))
            && (command.color_temp.is_none() || (wants("color_temp") && dev.color_temp));
        if !allowed {
            return Outcome::NotAllowed;
        }
        let Some(before) = self.live.get(&dev.id).filter(|s| s.online) else {
            return Outcome::Offline;
        };
        let mut changes = self.live.subscribe();
        if let Err(error) =
            crate::home::canonical::dispatch(&self.broker, &dev.id, &dev.scheme, command).await
        {
            tracing::warn!(%error, device = %dev.id, "a relay command could not be published");
            return Outcome::Failed;
        }
        let expected = expect(&before, command);
        let confirmed = tokio::time::timeout(CONFIRM_WAIT, async {
            if let Some(now) = self.live.get(&dev.id)
                && matches(&now, &expected)
            {
                return Some(now);
            }
            loop {
                match changes.recv().await {
                    Ok((changed, state)) if changed == dev.id && matches(&state, &expected) => {
                        return Some(state);
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(now) = self.live.get(&dev.id)
                            && matches(&now, &expected)
                        {
                            return Some(now);
                        }
                    }
                    Err(_) => return None,
                }
            }
        })
        .await
        .ok()
        .flatten();
        match confirmed {
            Some(state) => Outcome::Done(state, true),
            None => Outcome::Done(expected, false),
        }
    }

    /// Counts and audits one call of `link`. Never carries a secret: ids,
    /// the action and its result only.
    pub async fn audit(self: &Arc<Self>, link: &LinkId, what: String) {
        let link = link.clone();
        crate::accounts::Counters::bump(&self.auth.counters.relay_calls);
        let result = self.with_store(move |s| s.record_relay_call(&link, &what)).await;
        if let Err(error) = result {
            tracing::error!(%error, "could not audit a relay call");
        }
    }

    /// Revokes a link and every token it holds, and audits why.
    pub async fn revoke(
        self: &Arc<Self>,
        link: &LinkId,
        why: &'static str,
        by: Actor,
    ) -> Result<bool, StoreError> {
        let event = AuditEvent::ok(AuditKind::RelayLinkRevoked, by, format!("link {link}: {why}"));
        let link = link.clone();
        self.delete_audited(move |s| s.delete_relay_link(&link), event)
            .await
    }

    /// Deletes an OAuth client with every link and token it holds, and
    /// audits it. Returns whether it existed.
    pub async fn delete_client(
        self: &Arc<Self>,
        client: &crate::store::RelayClientId,
        by: Actor,
    ) -> Result<bool, StoreError> {
        let event = AuditEvent::ok(AuditKind::RelayClientDeleted, by, format!("client {client}"));
        let client = client.clone();
        self.delete_audited(move |s| s.delete_relay_client(&client), event)
            .await
    }

    /// Runs `delete` and, when it removed something, appends `event` in the
    /// same store lock. Returns whether anything was removed.
    async fn delete_audited(
        self: &Arc<Self>,
        delete: impl FnOnce(&mut Store) -> Result<bool, StoreError> + Send + 'static,
        event: AuditEvent,
    ) -> Result<bool, StoreError> {
        self.with_store(move |s| {
            let gone = delete(s)?;
            if gone {
                s.append_audit(&event)?;
            }
            Ok(gone)
        })
        .await
    }

    /// Deletes expired tokens and authorizations.
    pub fn sweep(&self) {
        self.oauth.sweep(Instant::now());
        self.flush_calls(UnixTime::now());
        if let Err(error) = self.store().delete_expired_relay_tokens() {
            tracing::warn!(%error, "could not delete expired relay tokens");
        }
    }

    /// Audits the relay calls of every minute before `before`: each
    /// minute's calls of one link become one `relay_calls` entry.
    pub fn flush_calls(&self, before: UnixTime) {
        if let Err(error) = self.store().flush_relay_tallies(before) {
            tracing::warn!(%error, "could not audit the relay calls");
        }
    }
}

/// The state a command should lead to, from the state before it.
fn expect(before: &DeviceState, c: Command) -> DeviceState {
    let mut s = before.clone();
    if let Some(b) = c.brightness {
        let level = crate::home::vendor::from_255(b);
        s.brightness = Some(level);
        s.power = Some(level > 0);
    }
    if let Some(p) = c.power {
        s.power = Some(p);
    }
    if let Some(m) = c.color_temp {
        s.color_temp = Some(m);
    }
    s
}

fn matches(now: &DeviceState, want: &DeviceState) -> bool {
    let close = |a: Option<u16>, b: Option<u16>| match (a, b) {
        (Some(a), Some(b)) => a.abs_diff(b) <= 2,
        (a, b) => a == b,
    };
    now.power == want.power
        && (want.power == Some(false) || now.brightness == want.brightness || want.brightness.is_none())
        && (want.power == Some(false) || close(now.color_temp, want.color_temp))
}

/// Kelvin to mireds, rounded.
pub fn mireds(kelvin: u32) -> u16 {
    ((1_000_000 + kelvin / 2) / kelvin.max(1)) as u16
}

/// Mireds to kelvin, rounded.
pub fn kelvin(mireds: u16) -> u32 {
    let m = u32::from(mireds.max(1));
    (1_000_000 + m / 2) / m
}

/// The owner's certificate under hearth's one TLS policy (`net::tls`: the
/// same versions, suites and order as the dashboard and MQTT, the server's
/// order enforced).
fn tls_config(cert: &std::path::Path, key: &std::path::Path) -> Result<rustls::ServerConfig, RelayError> {
    crate::net::tls::http_server_config(cert, key).map_err(|e| RelayError::Tls(e.to_string()))
}

/// The client's address, put on each request by the server.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// The relay's five routes. Anything else, including another method on
/// one of them, is a 404 with no body.
pub fn router(relay: Arc<Relay>) -> Router {
    Router::new()
        .route(
            "/oauth/authorize",
            get(oauth::authorize_page).post(oauth::authorize_form),
        )
        .route("/oauth/token", post(oauth::token))
        .route("/alexa", post(alexa::handle))
        .route("/google", post(google::handle))
        .route("/health", get(|| async { StatusCode::OK }))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(relay.clone(), guard))
        .with_state(relay)
}

async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

/// Per-address rate, body size, and the headers every answer carries.
async fn guard(
    axum::extract::State(relay): axum::extract::State<Arc<Relay>>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response<Body> {
    let peer = req.extensions().get::<Peer>().map(|p| p.0.ip());
    if let Some(ip) = peer
        && !relay.address_allowed(ip)
    {
        return bare(StatusCode::TOO_MANY_REQUESTS, Some("1"));
    }
    let too_long = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_BODY);
    if too_long {
        return bare(StatusCode::PAYLOAD_TOO_LARGE, None);
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            // No form-action: Chromium applies it to the redirect that
            // follows the consent form, and that goes to the assistant.
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    if relay.config.tls.is_some() {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    res
}

/// A response with no body.
fn bare(status: StatusCode, retry_after: Option<&'static str>) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = status;
    if let Some(r) = retry_after {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(r));
    }
    res
}

/// Reads a request body of at most [`MAX_BODY`] bytes.
async fn body_of(body: Body) -> Result<axum::body::Bytes, Response<Body>> {
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| bare(StatusCode::PAYLOAD_TOO_LARGE, None))
}

/// The bearer token of an `Authorization` header.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// How the relay's listener serves: accepting never waits (`Tracker`), and
/// from accept the TLS handshake and the first request's headers must both
/// be done within [`FIRST_REQUEST_TIMEOUT`].
fn http(tls: Option<Arc<Reloadable>>, counters: Arc<Counters>) -> Http {
    Http {
        name: "relay",
        tls,
        handshake_timeout: None,
        first_request_timeout: Some(FIRST_REQUEST_TIMEOUT),
        header_timeout: HEADER_TIMEOUT,
        request_timeout: REQUEST_TIMEOUT,
        max_buf_size: MAX_HEAD,
        keep_alive: true,
        capacity: Capacity::Track(Arc::new(Mutex::new(Tracker::new(
            MAX_CONNECTIONS,
            MAX_PER_ADDRESS,
        )))),
        peer: |extensions, addr| {
            extensions.insert(Peer(addr));
        },
        timed_out: || bare(StatusCode::SERVICE_UNAVAILABLE, None),
        count: Box::new(move |event| {
            Counters::bump(match event {
                Event::RefusedAddress => &counters.relay_refused_address,
                Event::RefusedFull => &counters.relay_refused_full,
                Event::Evicted => &counters.relay_evicted,
                Event::NoRequest => &counters.relay_no_request,
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kelvin_and_mireds_round_trip_within_the_range() {
        for k in (KELVIN_RANGE.0..=KELVIN_RANGE.1).step_by(100) {
            let back = kelvin(mireds(k));
            assert!(back.abs_diff(k) <= k / 100, "{k} K came back as {back} K");
        }
        assert_eq!(mireds(2000), 500);
        assert_eq!(kelvin(153), 6536);
    }
}
