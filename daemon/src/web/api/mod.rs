//! The dashboard's routes: the JSON API under `/api/`, the CA certificate,
//! and the embedded pages. Every response carries the security headers;
//! every state-changing request needs a session and its CSRF token (setup
//! and login, which have no session yet, need a same-origin `Origin`).
//!
//! This file holds what every route shares: the state, the router, the
//! security headers, the error type and the extractors that check the
//! session, the CSRF token and the origin. The handlers live by resource in
//! the submodules; each only parses, calls the domain service that owns the
//! operation, and maps the result.

mod account;
mod audit;
mod devices;
mod dns;
mod events;
mod homeassistant;
mod matter;
mod metrics;
mod names;
mod openapi;
mod relay;
mod safety;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::assets::ASSETS;
use crate::accounts::{Auth, AuthError, COOKIE, Session};
use crate::home::devices::{DeviceError, Devices};

/// Largest request body: every API body is a small JSON object.
pub const MAX_BODY: usize = 16 * 1024;
/// A request must be answered within this (SSE streams only need their
/// headers out within it). The slowest honest handlers hash a password with
/// argon2id, under a second on a Pi 4; fifteen leaves room for a loaded hub
/// and still frees the connection a stuck handler holds.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

/// What the handlers share.
pub struct App {
    pub auth: Arc<Auth>,
    pub devices: Arc<Devices>,
    pub live: Option<Arc<crate::home::live::LiveState>>,
    pub ca_cert: PathBuf,
    pub session_max: Duration,
    /// The Home Assistant integration, when the daemon runs one.
    pub homeassistant: Option<Arc<crate::home::homeassistant::HomeAssistant>>,
    /// The voice relay, when the daemon runs one.
    pub relay: Option<Arc<crate::relay::Relay>>,
    /// Data key rotation.
    pub keys: Arc<crate::safety::rotate::Rotator>,
    /// The master key file, put into backups; `None` when the master key
    /// comes from a passphrase.
    pub key_path: Option<PathBuf>,
    /// Stops hearth (after an erase from the dashboard).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Set by an erase from the dashboard: the files go once hearth stopped.
    pub erased: Arc<std::sync::atomic::AtomicBool>,
    /// `/metrics`, unless `web.metrics = "off"`.
    pub metrics: Option<Arc<crate::web::metrics::Metrics>>,
    /// The Matter bridge, when `[matter] enabled`.
    pub matter: Option<Arc<crate::matter::Matter>>,
    /// The DNS resolver, when `[dns] enabled`.
    pub dns: Option<Arc<crate::dns::Dns>>,
}

/// The client's address, put on each request by the server.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/state", get(account::state))
        .route("/api/setup", post(account::setup))
        .route("/api/login", post(account::login))
        .route("/api/logout", post(account::logout))
        .route("/api/session", get(account::session))
        .route("/api/password", post(account::change_password))
        .route("/api/password/require", post(account::require_password_change))
        .route("/api/totp/enroll", post(account::enroll))
        .route("/api/totp/qr.svg", get(account::qr))
        .route("/api/totp/reenroll", post(account::reenroll))
        .route("/api/totp/confirm", post(account::confirm))
        .route("/api/sessions", get(account::sessions))
        .route("/api/sessions/{id}", axum::routing::delete(account::revoke))
        .route("/api/audit", get(audit::audit))
        .route("/api/audit/verify", get(audit::audit_verify))
        .route("/api/audit/export", get(audit::audit_export))
        .route("/api/audit/types", get(audit::audit_types))
        .route("/api/lockdown", post(safety::lockdown))
        .route("/api/keys", get(safety::keys_status))
        .route("/api/backup", post(safety::backup_download))
        .route("/api/erase", post(safety::erase_everything))
        .route("/api/keys/rotate", post(safety::keys_rotate))
        .route("/api/warnings", get(safety::warnings))
        .route(
            "/api/warnings/acknowledge",
            post(safety::acknowledge_all_warnings),
        )
        .route(
            "/api/warnings/{id}/acknowledge",
            post(safety::acknowledge_warning),
        )
        .route("/api/privacy", get(safety::privacy))
        .route("/api/devices", get(devices::devices))
        .route(
            "/api/devices/{id}",
            axum::routing::patch(devices::update).delete(devices::forget),
        )
        .route("/api/devices/{id}/adopt", post(devices::adopt))
        .route("/api/devices/{id}/ignore", post(devices::ignore))
        .route("/api/devices/{id}/command", post(devices::command))
        .route("/api/devices/{id}/rotate", post(devices::rotate))
        .route("/api/events", get(events::events))
        .route(
            "/api/integrations/homeassistant",
            get(homeassistant::ha_status).patch(homeassistant::ha_settings),
        )
        .route(
            "/api/integrations/homeassistant/enable",
            post(homeassistant::ha_enable),
        )
        .route(
            "/api/integrations/homeassistant/rotate",
            post(homeassistant::ha_rotate),
        )
        .route(
            "/api/integrations/homeassistant/disable",
            post(homeassistant::ha_disable),
        )
        .route("/api/relay", get(relay::relay_status))
        .route("/api/relay/enable", post(relay::relay_enable))
        .route("/api/relay/disable", post(relay::relay_disable))
        .route("/api/relay/clients", post(relay::relay_register))
        .route(
            "/api/relay/clients/{id}",
            axum::routing::delete(relay::relay_unregister),
        )
        .route(
            "/api/relay/links/{id}",
            axum::routing::delete(relay::relay_revoke),
        )
        .route("/api/dns", get(dns::dns_status))
        .route("/api/dns/clouds", get(dns::clouds).post(dns::cloud_add))
        .route(
            "/api/dns/clouds/{domain}",
            axum::routing::delete(dns::cloud_remove),
        )
        .route(
            "/api/devices/{id}/dns",
            get(dns::device_dns).put(dns::device_policy),
        )
        .route("/api/matter", get(matter::matter_status))
        .route("/api/matter/qr.svg", get(matter::matter_qr))
        .route(
            "/api/matter/pairing",
            post(matter::matter_pair_open).delete(matter::matter_pair_close),
        )
        .route("/api/matter/fabrics", get(matter::matter_fabrics))
        .route(
            "/api/matter/fabrics/{index}",
            axum::routing::delete(matter::matter_remove),
        )
        .route("/api/openapi.json", get(openapi::openapi))
        .route("/ca.pem", get(ca))
        .route("/metrics", get(metrics::metrics))
        .fallback(asset)
        .layer(axum::middleware::map_response(security_headers))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

async fn security_headers(uri: Uri, mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    set(
        h,
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=()",
    );
    if uri.path().starts_with("/api/") {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    h.remove(header::SERVER);
    response
}

/// An API error: a status and a sentence for the owner.
pub struct ApiError {
    status: StatusCode,
    body: Value,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({ "error": message.into() }),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let status = match &e {
            AuthError::Unauthenticated | AuthError::BadCredentials => StatusCode::UNAUTHORIZED,
            AuthError::TotpRequired => {
                return ApiError {
                    status: StatusCode::UNAUTHORIZED,
                    body: json!({ "error": e.to_string(), "totp_required": true }),
                    retry_after: None,
                };
            }
            AuthError::Throttled(wait) => {
                let secs = wait.as_secs().max(1);
                return ApiError {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    body: json!({ "error": e.to_string(), "retry_after_secs": secs }),
                    retry_after: Some(secs),
                };
            }
            AuthError::BadSetupCode | AuthError::WrongPassword => StatusCode::FORBIDDEN,
            AuthError::AlreadySetUp => StatusCode::CONFLICT,
            AuthError::Policy(_) | AuthError::BadCode | AuthError::CodeNeeded | AuthError::NoEnrolment => {
                StatusCode::BAD_REQUEST
            }
            AuthError::Store(_) | AuthError::Internal(_) => {
                tracing::error!(error = %e, "dashboard request failed");
                return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the log");
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<DeviceError> for ApiError {
    fn from(e: DeviceError) -> ApiError {
        let status = match &e {
            DeviceError::NotFound(_) => StatusCode::NOT_FOUND,
            DeviceError::Invalid(_) => StatusCode::BAD_REQUEST,
            DeviceError::TopicTaken => StatusCode::CONFLICT,
            _ => {
                tracing::error!(error = %e, "dashboard device request failed");
                return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the log");
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<crate::relay::RelayError> for ApiError {
    fn from(e: crate::relay::RelayError) -> ApiError {
        use crate::relay::RelayError as E;
        match &e {
            E::Refused(_) | E::TwoFactorNeeded => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
            E::Listen { .. } | E::Tls(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            E::Store(_) | E::Internal(_) => {
                tracing::error!(error = %e, "dashboard relay request failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the log")
            }
        }
    }
}

impl From<crate::safety::rotate::RotateError> for ApiError {
    fn from(e: crate::safety::rotate::RotateError) -> ApiError {
        tracing::error!(error = %e, "dashboard key rotation request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the log")
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        tracing::error!(error = %e, "dashboard store request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the log")
    }
}

fn rejection(e: axum::extract::rejection::JsonRejection) -> ApiError {
    ApiError::new(e.status(), e.body_text())
}

/// A JSON body whose rejection is an `ApiError`.
struct Body<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let Json(v) = Json::<T>::from_request(req, state).await.map_err(rejection)?;
        Ok(Body(v))
    }
}

fn peer(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<Peer>()
        .map(|p| p.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Refuses a cross-site request: a browser always sends `Origin` with a
/// state-changing fetch, and it must name this host over HTTPS.
fn same_origin(parts: &Parts) -> Result<(), ApiError> {
    let Some(origin) = parts.headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if origin.to_str().ok() == Some(&format!("https://{host}")) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-origin request refused",
        ))
    }
}

/// The client, for setup and login: its address, after the origin check.
struct Client(IpAddr);

impl FromRequestParts<Arc<App>> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<App>) -> Result<Self, ApiError> {
        same_origin(parts)?;
        Ok(Client(peer(parts)))
    }
}

/// A logged-in request. For any method but GET and HEAD it also needs the
/// session's CSRF token in `X-CSRF-Token` and a same-origin `Origin`.
struct Authed(Session);

impl FromRequestParts<Arc<App>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let token = cookie(&parts.headers).ok_or(AuthError::Unauthenticated)?;
        let session = app.auth.session(&token)?;
        // Until the password is changed, only these answer.
        if session.must_change_password
            && !matches!(parts.uri.path(), "/api/session" | "/api/password" | "/api/logout")
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "change your password first (Security page): it was required at this login",
            ));
        }
        if parts.method != Method::GET && parts.method != Method::HEAD {
            same_origin(parts)?;
            let given = parts
                .headers
                .get("x-csrf-token")
                .map(|v| v.as_bytes())
                .unwrap_or(b"");
            if !bool::from(given.ct_eq(session.csrf.as_bytes())) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "missing or wrong CSRF token; reload the page",
                ));
            }
        }
        Ok(Authed(session))
    }
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// Runs blocking work (argon2id, SQLite, files) off the async threads; a
/// task that panicked is an internal error.
async fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
}

impl App {
    fn session_idle_mins(&self) -> u64 {
        self.auth.idle().as_secs() / 60
    }

    fn devices_store<T>(
        &self,
        f: impl FnOnce(&mut crate::store::Store) -> Result<T, crate::store::StoreError>,
    ) -> Result<T, crate::store::StoreError> {
        self.auth.with_store(f)
    }
}

async fn ca(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let pem = tokio::fs::read(&app.ca_cert)
        .await
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "no CA certificate yet"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-pem-file"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"hearth-ca.pem\"",
            ),
        ],
        pem,
    )
        .into_response())
}

async fn asset(uri: Uri) -> Response {
    let path = match uri.path() {
        "/index.html" => "/",
        p => p,
    };
    match ASSETS.iter().find(|(p, ..)| *p == path) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[cfg(test)]
mod tests;
