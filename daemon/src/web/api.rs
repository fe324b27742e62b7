//! The dashboard's routes: the JSON API under `/api/`, the CA certificate,
//! and the embedded pages. Every response carries the security headers;
//! every state-changing request needs a session and its CSRF token (setup
//! and login, which have no session yet, need a same-origin `Origin`).

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::assets::ASSETS;
use crate::accounts::{Auth, AuthError, COOKIE, NewSession, Session, actor};
use crate::home::devices::{DeviceError, Devices, Update, parse_id};
use crate::store::AuditKind;
use crate::store::{AuditEvent, CredentialId};

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
}

/// The client's address, put on each request by the server.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/state", get(state))
        .route("/api/setup", post(setup))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/session", get(session))
        .route("/api/password", post(change_password))
        .route("/api/password/require", post(require_password_change))
        .route("/api/totp/enroll", post(enroll))
        .route("/api/totp/qr.svg", get(qr))
        .route("/api/totp/reenroll", post(reenroll))
        .route("/api/totp/confirm", post(confirm))
        .route("/api/sessions", get(sessions))
        .route("/api/sessions/{id}", axum::routing::delete(revoke))
        .route("/api/audit", get(audit))
        .route("/api/audit/verify", get(audit_verify))
        .route("/api/audit/export", get(audit_export))
        .route("/api/audit/types", get(audit_types))
        .route("/api/lockdown", post(lockdown))
        .route("/api/keys", get(keys_status))
        .route("/api/backup", post(backup_download))
        .route("/api/erase", post(erase_everything))
        .route("/api/keys/rotate", post(keys_rotate))
        .route("/api/warnings", get(warnings))
        .route("/api/warnings/{id}/acknowledge", post(acknowledge_warning))
        .route("/api/privacy", get(privacy))
        .route("/api/devices", get(devices))
        .route("/api/devices/{id}", axum::routing::patch(update).delete(forget))
        .route("/api/devices/{id}/adopt", post(adopt))
        .route("/api/devices/{id}/ignore", post(ignore))
        .route("/api/devices/{id}/command", post(command))
        .route("/api/devices/{id}/rotate", post(rotate))
        .route("/api/events", get(events))
        .route(
            "/api/integrations/homeassistant",
            get(ha_status).patch(ha_settings),
        )
        .route("/api/integrations/homeassistant/enable", post(ha_enable))
        .route("/api/integrations/homeassistant/rotate", post(ha_rotate))
        .route("/api/integrations/homeassistant/disable", post(ha_disable))
        .route("/api/relay", get(relay_status))
        .route("/api/relay/enable", post(relay_enable))
        .route("/api/relay/disable", post(relay_disable))
        .route("/api/relay/clients", post(relay_register))
        .route("/api/relay/clients/{id}", axum::routing::delete(relay_unregister))
        .route("/api/relay/links/{id}", axum::routing::delete(relay_revoke))
        .route("/api/openapi.json", get(openapi))
        .route("/ca.pem", get(ca))
        .route("/metrics", get(metrics))
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

fn session_json(s: &Session) -> Value {
    json!({
        "username": s.username,
        "csrf": s.csrf,
        "totp_enabled": s.totp_enabled,
        "must_change_password": s.must_change_password,
    })
}

fn with_cookie(app: &App, new: NewSession) -> Response {
    let value = format!(
        "{COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        new.token.expose(),
        app.session_max.as_secs()
    );
    let mut r = Json(session_json(&new.session)).into_response();
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Runs slow or blocking auth work (argon2id) off the async threads.
async fn blocking<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&Auth) -> Result<T, AuthError> + Send + 'static,
) -> Result<T, ApiError> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || f(&app.auth))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
        .map_err(ApiError::from)
}

#[utoipa::path(get, path = "/api/state", responses((status = 200, description = "Whether setup is needed and whether this client is logged in")))]
async fn state(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let setup_needed = app.auth.setup_needed()?;
    let logged_in = cookie(&headers).is_some_and(|t| app.auth.session(&t).is_ok());
    Ok(Json(
        json!({ "setup_needed": setup_needed, "logged_in": logged_in }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SetupBody {
    code: String,
    username: String,
    password: String,
}

#[utoipa::path(post, path = "/api/setup", request_body = SetupBody, responses((status = 200, description = "Owner created; session cookie set"), (status = 403, description = "Wrong setup code"), (status = 409, description = "Already set up")))]
async fn setup(
    State(app): State<Arc<App>>,
    Client(from): Client,
    Body(b): Body<SetupBody>,
) -> Result<Response, ApiError> {
    let new = blocking(&app, move |auth| {
        auth.setup(&b.code, &b.username, &b.password, from)
    })
    .await?;
    Ok(with_cookie(&app, new))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
    #[serde(default)]
    code: Option<String>,
}

#[utoipa::path(post, path = "/api/login", request_body = LoginBody, responses((status = 200, description = "Logged in; session cookie set"), (status = 401, description = "Wrong credentials, or a two-factor code is needed"), (status = 429, description = "Throttled")))]
async fn login(
    State(app): State<Arc<App>>,
    Client(from): Client,
    Body(b): Body<LoginBody>,
) -> Result<Response, ApiError> {
    let new = blocking(&app, move |auth| {
        auth.login(&b.username, &b.password, b.code.as_deref(), from)
    })
    .await?;
    Ok(with_cookie(&app, new))
}

#[utoipa::path(post, path = "/api/logout", responses((status = 204, description = "Logged out")))]
async fn logout(State(app): State<Arc<App>>, Authed(s): Authed) -> Result<Response, ApiError> {
    app.auth.logout(&s)?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("__Host-hearth=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(r)
}

#[utoipa::path(get, path = "/api/session", responses((status = 200, description = "The current session"), (status = 401, description = "Not logged in")))]
async fn session(Authed(s): Authed) -> Json<Value> {
    Json(session_json(&s))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current: String,
    new: String,
}

#[utoipa::path(post, path = "/api/password", request_body = PasswordBody, responses((status = 204, description = "Changed; other sessions ended"), (status = 403, description = "Current password wrong")))]
async fn change_password(
    State(app): State<Arc<App>>,
    Authed(s): Authed,
    Body(b): Body<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    blocking(&app, move |auth| auth.change_password(&s, &b.current, &b.new)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/password/require", responses((status = 200, description = "The password must be changed at the next login; every other session ended")))]
async fn require_password_change(
    State(app): State<Arc<App>>,
    Authed(s): Authed,
) -> Result<Json<Value>, ApiError> {
    let ended = blocking(&app, move |auth| auth.require_password_change(&s)).await?;
    Ok(Json(json!({ "required": true, "sessions_ended": ended })))
}

#[utoipa::path(post, path = "/api/totp/enroll", responses((status = 200, description = "A new TOTP secret, pending confirmation")))]
async fn enroll(State(app): State<Arc<App>>, Authed(s): Authed) -> Result<Json<Value>, ApiError> {
    let (secret, uri) = app.auth.enroll(&s)?;
    Ok(Json(json!({ "secret": secret, "uri": uri })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReenrollBody {
    password: String,
}

#[utoipa::path(post, path = "/api/totp/reenroll", request_body = ReenrollBody, responses((status = 200, description = "A new secret and its otpauth URI; the old one works until the new one is confirmed"), (status = 403, description = "Wrong password")))]
async fn reenroll(
    State(app): State<Arc<App>>,
    Authed(s): Authed,
    Body(b): Body<ReenrollBody>,
) -> Result<Json<Value>, ApiError> {
    let (secret, uri) = blocking(&app, move |auth| auth.reenroll(&s, &b.password)).await?;
    Ok(Json(json!({ "secret": secret, "uri": uri })))
}

#[utoipa::path(get, path = "/api/totp/qr.svg", responses((status = 200, description = "The pending enrolment's QR code", content_type = "image/svg+xml")))]
async fn qr(State(app): State<Arc<App>>, Authed(s): Authed) -> Result<Response, ApiError> {
    let svg = app.auth.enrollment_qr(&s)?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    code: String,
}

#[utoipa::path(post, path = "/api/totp/confirm", request_body = CodeBody, responses((status = 200, description = "Enrolled; ten recovery codes, shown once"), (status = 400, description = "Wrong code")))]
async fn confirm(
    State(app): State<Arc<App>>,
    Authed(s): Authed,
    Body(b): Body<CodeBody>,
) -> Result<Json<Value>, ApiError> {
    let codes = blocking(&app, move |auth| auth.confirm(&s, &b.code)).await?;
    let codes: Vec<&str> = codes.iter().map(|c| c.expose()).collect();
    Ok(Json(json!({ "recovery_codes": codes })))
}

#[utoipa::path(get, path = "/api/sessions", responses((status = 200, description = "The owner's live sessions")))]
async fn sessions(State(app): State<Arc<App>>, Authed(s): Authed) -> Result<Json<Value>, ApiError> {
    let list = app.auth.sessions(&s)?;
    Ok(Json(Value::Array(
        list.into_iter()
            .map(|(id, created, last)| {
                json!({
                    "id": id.as_str(),
                    "created_at": crate::accounts::unix_secs(created),
                    "last_seen_at": last,
                    "current": id == s.id,
                })
            })
            .collect(),
    )))
}

#[utoipa::path(delete, path = "/api/sessions/{id}", responses((status = 204, description = "Revoked"), (status = 404, description = "No such session")))]
async fn revoke(
    State(app): State<Arc<App>>,
    Authed(s): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id =
        CredentialId::parse(&id).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such session"))?;
    if app.auth.revoke(&s, &id)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "no such session"))
    }
}

/// Which audit events to show.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// Only this event type, such as `login_failed`.
    event: Option<String>,
    /// Only this outcome: `ok`, `refused` or `failed`.
    outcome: Option<String>,
    /// Only events at or after this Unix time (seconds).
    since: Option<u64>,
    /// Only events at or before this Unix time (seconds).
    until: Option<u64>,
    /// At most this many, newest first (1 to 10,000; 100 by default).
    limit: Option<usize>,
}

fn audit_events(app: &App, q: &AuditQuery) -> Result<Vec<Value>, ApiError> {
    if let Some(event) = q.event.as_deref()
        && AuditKind::parse(event).is_none()
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown event type; GET /api/audit/types lists them",
        ));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, crate::store::AUDIT_KEPT as usize);
    let filtered = q.event.is_some() || q.outcome.is_some() || q.since.is_some() || q.until.is_some();
    let read = if filtered {
        crate::store::AUDIT_KEPT as usize
    } else {
        limit
    };
    let events = app
        .devices_store(|store| store.audit(read))
        .map_err(AuthError::from)?;
    Ok(events
        .into_iter()
        .filter(|e| {
            let at = crate::accounts::unix_secs(e.at);
            q.event.as_ref().is_none_or(|v| *v == e.event)
                && q.outcome.as_ref().is_none_or(|v| *v == e.outcome)
                && q.since.is_none_or(|s| at >= s)
                && q.until.is_none_or(|u| at <= u)
        })
        .take(limit)
        .map(|e| {
            json!({
                "seq": e.seq,
                "at": crate::accounts::unix_secs(e.at),
                "wording": AuditKind::parse(&e.event).map_or_else(|| e.event.clone(), |k| k.wording().to_owned()),
                "event": e.event,
                "actor": e.actor,
                "outcome": e.outcome,
                "detail": e.detail,
            })
        })
        .collect())
}

#[utoipa::path(get, path = "/api/audit", params(AuditQuery), responses((status = 200, description = "Audit events, newest first, filtered by type and time"), (status = 400, description = "An unknown or malformed filter")))]
async fn audit(
    State(app): State<Arc<App>>,
    _session: Authed,
    q: Result<axum::extract::Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    Ok(Json(Value::Array(audit_events(&app, &q)?)))
}

#[utoipa::path(get, path = "/api/audit/types", responses((status = 200, description = "Every event type hearth writes to the audit log, with the words the dashboard shows for it")))]
async fn audit_types(_session: Authed) -> Json<Value> {
    Json(Value::Array(
        AuditKind::ALL
            .iter()
            .map(|k| json!({ "event": k.name(), "wording": k.wording() }))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/audit/export", responses((status = 200, description = "Every audit event kept, oldest first, as a JSON file to download", content_type = "application/json")))]
async fn audit_export(State(app): State<Arc<App>>, _session: Authed) -> Result<Response, ApiError> {
    let mut all = audit_events(
        &app,
        &AuditQuery {
            limit: Some(crate::store::AUDIT_KEPT as usize),
            ..AuditQuery::default()
        },
    )?;
    all.reverse();
    let mut r = Json(Value::Array(all)).into_response();
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"hearth-audit.json\""),
    );
    Ok(r)
}

#[utoipa::path(get, path = "/api/audit/verify", responses((status = 200, description = "Whether the audit log's hash chain is whole: the entries checked and, if it breaks, the first bad entry and why")))]
async fn audit_verify(State(app): State<Arc<App>>, _session: Authed) -> Result<Json<Value>, ApiError> {
    let auth = app.auth.clone();
    let verdict = tokio::task::spawn_blocking(move || auth.with_store(|s| s.verify_audit()))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
        .map_err(AuthError::from)?;
    Ok(Json(json!({
        "verified": verdict.verified(),
        "entries": verdict.entries,
        "before_chain": verdict.before_chain,
        "problem": verdict.problem,
    })))
}

#[utoipa::path(get, path = "/api/warnings", responses((status = 200, description = "Standing warnings: changes that lowered protection, until the owner acknowledges them")))]
async fn warnings(State(app): State<Arc<App>>, _session: Authed) -> Result<Json<Value>, ApiError> {
    let list = app
        .devices_store(|store| crate::store::warnings::standing(store))
        .map_err(AuthError::from)?;
    Ok(Json(json!(list)))
}

#[utoipa::path(post, path = "/api/warnings/{id}/acknowledge", params(("id" = String, Path, description = "The warning's id")), responses((status = 200, description = "Acknowledged (audited)"), (status = 404, description = "No such standing warning")))]
async fn acknowledge_warning(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if id.len() > 32 {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such warning"));
    }
    let done = app
        .devices_store(|store| crate::store::warnings::acknowledge(store, &id, actor(&session)))
        .map_err(AuthError::from)?;
    if !done {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such warning"));
    }
    Ok(Json(json!({ "acknowledged": true })))
}

#[utoipa::path(get, path = "/api/keys", responses((status = 200, description = "The data key rotation's progress: rows re-sealed, of all, and whether the old key is destroyed")))]
async fn keys_status(State(app): State<Arc<App>>, _session: Authed) -> Result<Json<Value>, ApiError> {
    let p = app.keys.progress().await?;
    Ok(Json(
        json!({ "done": p.done, "total": p.total, "finished": p.finished }),
    ))
}

#[utoipa::path(post, path = "/api/keys/rotate", responses((status = 202, description = "Rotation started (or already under way): a new data key seals new values at once; the others are re-sealed in the background, then the old key is destroyed")))]
async fn keys_rotate(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let p = app.keys.rotate(actor(&session)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "done": p.done, "total": p.total, "finished": p.finished })),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    /// What the backup is sealed under (12 characters or more).
    passphrase: String,
    /// The owner's password, again.
    password: String,
    /// A TOTP or recovery code, when two-factor authentication is on.
    code: Option<String>,
}

#[utoipa::path(post, path = "/api/backup", request_body = BackupBody, responses((status = 200, description = "The backup file: the store and the master key, sealed under the passphrase with argon2id and ChaCha20-Poly1305", content_type = "application/octet-stream"), (status = 400, description = "A passphrase under 12 characters"), (status = 401, description = "Wrong password or code")))]
async fn backup_download(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Client(from): Client,
    Body(b): Body<BackupBody>,
) -> Result<Response, ApiError> {
    crate::safety::backup::check_passphrase(&b.passphrase)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let auth = app.auth.clone();
    let s = session.clone();
    let (password, code) = (b.password, b.code);
    tokio::task::spawn_blocking(move || {
        auth.reauthenticate(&s, &password, code.as_deref(), from, AuditKind::BackupRefused)
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))??;
    let data_dir = crate::store::DataDir::new(app.auth.data_dir());
    let key_path = app.key_path.clone();
    let passphrase = zeroize::Zeroizing::new(b.passphrase);
    let sealed =
        tokio::task::spawn_blocking(move || -> Result<Vec<u8>, crate::safety::backup::BackupError> {
            let master_key = match key_path {
                Some(p) => Some(zeroize::Zeroizing::new(std::fs::read(&p).map_err(|source| {
                    crate::safety::backup::BackupError::Io {
                        path: p.clone(),
                        source,
                    }
                })?)),
                None => None,
            };
            let contents = crate::safety::backup::Contents {
                db: crate::safety::backup::snapshot(&data_dir)?,
                config: None,
                master_key,
            };
            crate::safety::backup::seal(&contents, &passphrase)
        })
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
        .map_err(|e| {
            tracing::error!(error = %e, "could not make a backup");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the backup could not be made")
        })?;
    let detail = format!("{} bytes, downloaded from the dashboard", sealed.len());
    app.auth
        .audit(AuditEvent::ok(AuditKind::BackupCreated, actor(&session), detail));
    let mut r = sealed.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"hearth.hearthbackup\""),
    );
    Ok(r)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EraseBody {
    /// Must be "erase everything".
    confirm: String,
    /// The owner's password, again.
    password: String,
    /// A TOTP or recovery code, when two-factor authentication is on.
    code: Option<String>,
}

#[utoipa::path(post, path = "/api/erase", request_body = EraseBody, responses((status = 200, description = "The keys are destroyed (nothing on the disk opens any more), the known backups removed; hearth stops and removes its files, and starts fresh next time"), (status = 400, description = "Not confirmed"), (status = 401, description = "Wrong password or code")))]
async fn erase_everything(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Client(from): Client,
    Body(b): Body<EraseBody>,
) -> Result<Json<Value>, ApiError> {
    if b.confirm != "erase everything" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "type \"erase everything\" to confirm",
        ));
    }
    let auth = app.auth.clone();
    let s = session.clone();
    let (password, code) = (b.password, b.code);
    tokio::task::spawn_blocking(move || {
        auth.reauthenticate(&s, &password, code.as_deref(), from, AuditKind::EraseRefused)
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))??;
    tracing::warn!("erase from the dashboard: destroying the keys, then stopping");
    let keys = app.devices_store(|s| s.destroy_keys()).map_err(AuthError::from)?;
    let data_dir = crate::store::DataDir::new(app.auth.data_dir());
    let key_path = app.key_path.clone();
    tokio::task::spawn_blocking(move || {
        crate::safety::erase::shred_keys_and_backups(&data_dir, key_path.as_deref())
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
    .map_err(|e| {
        tracing::error!(error = %e, "erase: could not remove the key file or a backup");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the keys are destroyed, but a file could not be removed",
        )
    })?;
    app.erased.store(true, std::sync::atomic::Ordering::SeqCst);
    let stop = app.shutdown.clone();
    tokio::spawn(async move {
        // Long enough for this answer to reach the browser.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.cancel();
    });
    Ok(Json(json!({ "erased": true, "data_keys_destroyed": keys })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LockdownBody {
    #[serde(default)]
    rotate_devices: bool,
    /// Every login after this one must choose a new password first.
    #[serde(default)]
    require_new_password: bool,
}

#[utoipa::path(post, path = "/api/lockdown", request_body = LockdownBody, responses((status = 200, description = "Every other dashboard session ended, every relay link and Home Assistant's password revoked, and with rotate_devices every device credential rotated (the new provisioning shown once)")))]
async fn lockdown(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Body(b): Body<LockdownBody>,
) -> Result<Json<Value>, ApiError> {
    let ha = homeassistant(&app)?.clone();
    let report = crate::safety::lockdown::lockdown(
        Some(&app.auth),
        Some(session.id.clone()),
        &ha,
        &app.devices,
        crate::safety::lockdown::Options {
            rotate_devices: b.rotate_devices,
            require_new_password: b.require_new_password,
        },
        actor(&session),
    )
    .await?;
    Ok(Json(serde_json::to_value(report).map_err(|_| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })?))
}

/// Prometheus metrics: counts only. Loopback clients, or the bearer token
/// from `hearth metrics token`, as `web.metrics` says.
async fn metrics(
    State(app): State<Arc<App>>,
    Client(from): Client,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use crate::web::metrics::MetricsAccess;
    let Some(metrics) = app.metrics.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "metrics are off (web.metrics = \"off\")",
        ));
    };
    match metrics.access {
        MetricsAccess::Off => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "metrics are off (web.metrics = \"off\")",
            ));
        }
        MetricsAccess::Loopback => {
            if !from.is_loopback() && !from.to_canonical().is_loopback() {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "metrics are served to this hub only; set web.metrics = \"token\" to scrape from elsewhere",
                ));
            }
        }
        MetricsAccess::Token => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty() && t.len() <= 256);
            let auth = app.auth.clone();
            let valid = match given {
                Some(t) => {
                    let t = t.to_owned();
                    tokio::task::spawn_blocking(move || auth.metrics_token_valid(&t))
                        .await
                        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))??
                }
                None => false,
            };
            if !valid {
                let mut r = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "a valid metrics token is needed (hearth metrics token)",
                )
                .into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"hearth metrics\""),
                );
                return Ok(r);
            }
        }
    }
    let body = metrics.render().await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/privacy", responses((status = 200, description = "What hearth stores, in what form, and what leaves the house")))]
async fn privacy(State(app): State<Arc<App>>, _session: Authed) -> Result<Json<Value>, ApiError> {
    let shared = match &app.homeassistant {
        Some(ha) => {
            let st = ha.status().await?;
            let details = if st.settings.share_device_details {
                "model, vendor and firmware too (\"share device details\" is on)"
            } else {
                "not model, vendor or firmware (\"share device details\" is off)"
            };
            json!([{
                "with": "Home Assistant",
                "enabled": st.enabled,
                "share_device_details": st.settings.share_device_details,
                "devices": st.exposed,
                "what": if st.enabled {
                    format!(
                        "On, over hearth's own broker on your LAN: for the {} device(s) you exposed, their nickname, room, kind and live state; {details}.",
                        st.exposed
                    )
                } else {
                    "Off: Home Assistant is told nothing.".to_owned()
                },
            }])
        }
        None => json!([]),
    };
    let mut shared = shared;
    if app.relay.is_some() {
        let v = relay_view(&app).await?;
        let links: Vec<Value> = v["links"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|l| {
                json!({
                    "id": l["id"],
                    "client_name": l["client_name"],
                    "devices": l["devices"].as_array().map(Vec::len).unwrap_or(0),
                    "calls": l["calls"],
                })
            })
            .collect();
        let enabled = v["enabled"].as_bool().unwrap_or(false);
        let what = if links.is_empty() {
            "No assistant is linked: voice assistants are told nothing.".to_owned()
        } else {
            format!(
                "{} link(s), through the relay{}: each sees only the devices you chose, by their voice names, with on/off, brightness and colour temperature. Never a nickname, room, model, firmware, address or camera.",
                links.len(),
                if enabled {
                    ""
                } else {
                    " (off now: nothing listens)"
                }
            )
        };
        if let Some(a) = shared.as_array_mut() {
            a.push(json!({
                "with": "Voice assistants",
                "enabled": enabled,
                "links": links,
                "what": what,
            }));
        }
    }
    let (idle, max) = (app.session_idle_mins(), app.session_max.as_secs() / 3600);
    let report = app
        .devices_store(|store| crate::safety::privacy::report(store, idle, max, None))
        .map_err(AuthError::from)?;
    Ok(Json(json!({
        "held": report["held"],
        "retention": report["retention"],
        "shared": shared,
        "stored": [
            { "what": "Device names, rooms, voice names, kinds, models, firmware, MAC and IP addresses, advertised TXT records", "form": "sealed with ChaCha20-Poly1305 under a key kept outside the database" },
            { "what": "Device MQTT passwords", "form": "only a SHA-256 hash of a 128-bit random secret; the password is shown once" },
            { "what": "Your password", "form": "argon2id hash, then sealed" },
            { "what": "Your two-factor secret", "form": "sealed; recovery codes only as hashes" },
            { "what": "Dashboard sessions", "form": "only a SHA-256 hash of each 128-bit session token" },
            { "what": "Voice relay clients and links (labels, redirect URIs, granted devices and actions)", "form": "sealed; client secrets and every access and refresh token only as SHA-256 hashes" },
            { "what": "Audit events (logins, failures, enrolments, revocations)", "form": "sealed; the newest 10,000 are kept" },
            { "what": "Logs", "form": "counts and opaque ids only: never names, addresses or tokens" }
        ],
        "leaves_home": [
            "Nothing by default: hearth needs no cloud account and makes no outbound connection.",
            "hearth answers mDNS on the LAN with its service types and port only: no version, name or model.",
            "An MQTT bridge, if you configure one, sends only the topics you list, over TLS.",
            "Home Assistant runs in your home: what it is told stays on your LAN unless Home Assistant itself sends it on.",
            "Voice assistants you link get only what their requests ask of the relay: voice names and on/off, brightness and colour temperature, for the devices you chose. hearth never calls them."
        ]
    })))
}

fn homeassistant(app: &App) -> Result<&Arc<crate::home::homeassistant::HomeAssistant>, ApiError> {
    app.homeassistant.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "this hearth runs no Home Assistant integration",
        )
    })
}

#[utoipa::path(get, path = "/api/integrations/homeassistant", responses((status = 200, description = "Whether the Home Assistant connection is on and connected, how many devices it sees, and its settings")))]
async fn ha_status(State(app): State<Arc<App>>, _session: Authed) -> Result<Json<Value>, ApiError> {
    let st = homeassistant(&app)?.status().await?;
    let mut v = serde_json::to_value(&st)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?;
    if let Some(o) = v.as_object_mut() {
        o.insert("ca_cert_url".into(), json!("/ca.pem"));
    }
    Ok(Json(v))
}

#[utoipa::path(post, path = "/api/integrations/homeassistant/enable", responses((status = 200, description = "What to enter into Home Assistant's MQTT integration; the password is shown once"), (status = 400, description = "Already on: rotate instead")))]
async fn ha_enable(State(app): State<Arc<App>>, Authed(session): Authed) -> Result<Json<Value>, ApiError> {
    let c = homeassistant(&app)?.enable(actor(&session)).await?;
    Ok(Json(serde_json::to_value(&c).map_err(|_| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })?))
}

#[utoipa::path(post, path = "/api/integrations/homeassistant/rotate", responses((status = 200, description = "A new password, shown once; the old one is refused and its session cut")))]
async fn ha_rotate(State(app): State<Arc<App>>, Authed(session): Authed) -> Result<Json<Value>, ApiError> {
    let c = homeassistant(&app)?.rotate(actor(&session)).await?;
    Ok(Json(serde_json::to_value(&c).map_err(|_| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })?))
}

#[utoipa::path(post, path = "/api/integrations/homeassistant/disable", responses((status = 200, description = "Off: the credential revoked, the session cut, every device removed from Home Assistant")))]
async fn ha_disable(State(app): State<Arc<App>>, Authed(session): Authed) -> Result<Json<Value>, ApiError> {
    let was = homeassistant(&app)?.disable(actor(&session)).await?;
    Ok(Json(json!({ "was_enabled": was })))
}

#[utoipa::path(patch, path = "/api/integrations/homeassistant", responses((status = 200, description = "The settings, changed")))]
async fn ha_settings(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Body(b): Body<crate::home::homeassistant::SettingsChange>,
) -> Result<Json<crate::home::homeassistant::Settings>, ApiError> {
    Ok(Json(homeassistant(&app)?.set(b, actor(&session)).await?))
}

fn relay(app: &App) -> Result<&Arc<crate::relay::Relay>, ApiError> {
    app.relay
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "this hearth runs no voice relay"))
}

/// The relay's state, clients and links, for the Voice page.
async fn relay_view(app: &App) -> Result<Value, ApiError> {
    let relay = relay(app)?.clone();
    let r = relay.clone();
    let (enabled, clients, links, offered, voice_names) = tokio::task::spawn_blocking(move || {
        let enabled = r.enabled_setting()?;
        let (clients, links) = r.with_store_sync(|s| Ok((s.relay_clients()?, s.relay_links()?)))?;
        let offered = r.offerable()?;
        let names: std::collections::HashMap<_, _> = offered
            .iter()
            .map(|d| (d.id.clone(), d.voice_name.clone()))
            .collect();
        Ok::<_, crate::store::StoreError>((enabled, clients, links, offered.len(), names))
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))??;
    let client_name = |id: &crate::store::RelayClientId| {
        clients
            .iter()
            .find(|c| &c.id == id)
            .map(|c| c.fields.name.clone())
            .unwrap_or_default()
    };
    let config = relay.config();
    Ok(json!({
        "enabled": enabled,
        "listening": relay.listening().map(|a| a.to_string()),
        "listen": config.listen.to_string(),
        "tls": config.tls.is_some(),
        "offerable_devices": offered,
        "redirect_templates": {
            "alexa": crate::relay::ALEXA_REDIRECTS,
            "google": crate::relay::GOOGLE_REDIRECTS,
        },
        "clients": clients.iter().map(|c| json!({
            "id": c.id,
            "name": c.fields.name,
            "assistant": c.fields.assistant,
            "redirect_uris": c.fields.redirect_uris,
            "created_at": c.fields.created_at / 1000,
        })).collect::<Vec<_>>(),
        "links": links.iter().map(|l| json!({
            "id": l.id,
            "client_id": l.client_id,
            "client_name": client_name(&l.client_id),
            "devices": l.devices.iter().map(|d| json!({
                "id": d,
                "voice_name": voice_names.get(d),
            })).collect::<Vec<_>>(),
            "actions": l.fields.actions,
            "calls": l.calls,
            "created_at": l.fields.created_at / 1000,
        })).collect::<Vec<_>>(),
    }))
}

#[utoipa::path(get, path = "/api/relay", responses((status = 200, description = "Whether the voice relay is on and where it listens, its registered clients and its account links with their call counts")))]
async fn relay_status(State(app): State<Arc<App>>, _session: Authed) -> Result<Json<Value>, ApiError> {
    Ok(Json(relay_view(&app).await?))
}

#[utoipa::path(post, path = "/api/relay/enable", responses((status = 200, description = "On: the relay listens"), (status = 400, description = "Two-factor authentication is off"), (status = 409, description = "The relay's address is taken or its TLS files do not load")))]
async fn relay_enable(State(app): State<Arc<App>>, Authed(session): Authed) -> Result<Json<Value>, ApiError> {
    let r = relay(&app)?.clone();
    // The rule lives in Relay::may_enable, which the CLI's door shares.
    tokio::task::spawn_blocking(move || r.set_enabled(true, actor(&session)))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))??;
    Ok(Json(relay_view(&app).await?))
}

#[utoipa::path(post, path = "/api/relay/disable", responses((status = 200, description = "Off: nothing listens; links and tokens are kept")))]
async fn relay_disable(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
) -> Result<Json<Value>, ApiError> {
    let r = relay(&app)?.clone();
    tokio::task::spawn_blocking(move || r.set_enabled(false, actor(&session)))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))??;
    Ok(Json(relay_view(&app).await?))
}

#[utoipa::path(post, path = "/api/relay/clients", request_body = crate::relay::NewClient, responses((status = 200, description = "The client id and its secret, shown once"), (status = 400, description = "A bad name, assistant or redirect URI")))]
async fn relay_register(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Body(b): Body<crate::relay::NewClient>,
) -> Result<Json<Value>, ApiError> {
    let r = relay(&app)?.clone();
    let (client, secret) = tokio::task::spawn_blocking(move || r.register_client(b, actor(&session)))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))??;
    Ok(Json(json!({
        "client_id": client.id,
        "client_secret": secret.expose(),
        "authorize_path": "/oauth/authorize",
        "token_path": "/oauth/token",
    })))
}

#[utoipa::path(delete, path = "/api/relay/clients/{id}", params(("id" = String, Path, description = "The client id")), responses((status = 200, description = "Deleted, with every link and token it had"), (status = 404, description = "No such client")))]
async fn relay_unregister(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = relay(&app)?.clone();
    let by = actor(&session);
    let id = crate::store::RelayClientId::parse(&id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such client"))?;
    let gone = r
        .with_store(move |s| {
            let gone = s.delete_relay_client(&id)?;
            if gone {
                s.append_audit(&AuditEvent::ok(
                    AuditKind::RelayClientDeleted,
                    by,
                    format!("client {id}"),
                ))?;
            }
            Ok(gone)
        })
        .await?;
    if !gone {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such client"));
    }
    Ok(Json(json!({ "deleted": true })))
}

#[utoipa::path(delete, path = "/api/relay/links/{id}", params(("id" = String, Path, description = "The link id")), responses((status = 200, description = "Revoked: its tokens stop working at once"), (status = 404, description = "No such link")))]
async fn relay_revoke(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = relay(&app)?.clone();
    let id = crate::store::LinkId::parse(&id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such link"))?;
    if !r.revoke(&id, "revoked by the owner", actor(&session)).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such link"));
    }
    Ok(Json(json!({ "revoked": true })))
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

    async fn device_list(&self) -> Result<Vec<Value>, ApiError> {
        let list = self.devices.list().await?;
        Ok(list
            .into_iter()
            .map(|d| {
                let live = self.live.as_ref().and_then(|l| l.get(&d.id));
                let mut v = serde_json::to_value(&d).unwrap_or(Value::Null);
                if let Some(o) = v.as_object_mut() {
                    let online = live.as_ref().map(|l| l.online).unwrap_or(false) || d.online;
                    o.insert("online".into(), json!(online));
                    o.insert("power".into(), json!(live.as_ref().and_then(|l| l.power)));
                    o.insert(
                        "brightness".into(),
                        json!(live.as_ref().and_then(|l| l.brightness)),
                    );
                    o.insert(
                        "last_motion_at".into(),
                        json!(live.as_ref().and_then(|l| l.last_motion_at)),
                    );
                    o.insert("open".into(), json!(live.as_ref().and_then(|l| l.open)));
                    o.insert("water".into(), json!(live.as_ref().and_then(|l| l.water)));
                    o.insert(
                        "temperature".into(),
                        json!(live.as_ref().and_then(|l| l.temperature)),
                    );
                    o.insert("humidity".into(), json!(live.as_ref().and_then(|l| l.humidity)));
                }
                v
            })
            .collect())
    }
}

#[utoipa::path(get, path = "/api/devices", responses((status = 200, description = "Adopted and pending devices, with live state")))]
async fn devices(State(app): State<Arc<App>>, _session: Authed) -> Result<Json<Value>, ApiError> {
    Ok(Json(Value::Array(app.device_list().await?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AdoptBody {
    nickname: String,
    #[serde(default)]
    room: Option<String>,
    /// What it is, when discovery guessed wrong or could not tell.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    kind: Option<crate::store::DeviceKind>,
}

async fn provisioning_json(
    app: &App,
    p: crate::home::devices::Provisioning,
) -> Result<Json<Value>, ApiError> {
    let mut v = serde_json::to_value(&p)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?;
    let pem = tokio::fs::read_to_string(&app.ca_cert).await.unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("ca_pem".into(), json!(pem));
    }
    Ok(Json(v))
}

#[utoipa::path(post, path = "/api/devices/{id}/adopt", request_body = AdoptBody, responses((status = 200, description = "Adopted; the provisioning details, shown once")))]
async fn adopt(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(id): Path<String>,
    Body(b): Body<AdoptBody>,
) -> Result<Json<Value>, ApiError> {
    let p = app
        .devices
        .adopt(
            crate::home::devices::Adopt {
                id: id.clone(),
                nickname: b.nickname,
                room: b.room.filter(|r| !r.is_empty()),
                kind: b.kind,
            },
            actor(&session),
        )
        .await?;
    provisioning_json(&app, p).await
}

#[utoipa::path(post, path = "/api/devices/{id}/ignore", responses((status = 204, description = "The pending device is dropped")))]
async fn ignore(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if app.devices.ignore(&id, actor(&session)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "no such device"))
    }
}

#[utoipa::path(patch, path = "/api/devices/{id}", responses((status = 200, description = "The device, updated")))]
async fn update(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(id): Path<String>,
    Body(b): Body<Update>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    app.devices.update(&id, b, actor(&session)).await?;
    let list = app.device_list().await?;
    list.into_iter()
        .find(|d| d["id"] == id.as_str())
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such device"))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    #[serde(default)]
    power: Option<bool>,
    #[serde(default)]
    brightness: Option<u8>,
}

#[utoipa::path(post, path = "/api/devices/{id}/command", request_body = CommandBody, responses((status = 202, description = "Sent to the device")))]
async fn command(
    State(app): State<Arc<App>>,
    _session: Authed,
    Path(id): Path<String>,
    Body(b): Body<CommandBody>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if b.power.is_none() && b.brightness.is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "give power, brightness or both",
        ));
    }
    if let Some(level) = b.brightness {
        app.devices.set_brightness(&id, level).await?;
    }
    if let Some(on) = b.power {
        app.devices.set_power(&id, on).await?;
    }
    Ok(StatusCode::ACCEPTED)
}

#[utoipa::path(post, path = "/api/devices/{id}/rotate", responses((status = 200, description = "A new credential, shown once; the old one is refused")))]
async fn rotate(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let parsed = parse_id(&id)?;
    let p = app.devices.rotate(&parsed, actor(&session)).await?;
    provisioning_json(&app, p).await
}

#[utoipa::path(delete, path = "/api/devices/{id}", responses((status = 204, description = "Forgotten: credential revoked, session cut, sealed data erased")))]
async fn forget(
    State(app): State<Arc<App>>,
    Authed(session): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let parsed = parse_id(&id)?;
    if !app.devices.forget(&parsed, actor(&session)).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such device"));
    }
    if let Some(live) = &app.live {
        live.forget(&parsed);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/events", responses((status = 200, description = "Server-Sent Events: `device` (live state) and `devices` (the list changed)", content_type = "text/event-stream")))]
async fn events(
    State(app): State<Arc<App>>,
    Authed(s): Authed,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut changes = app.devices.subscribe_changes();
    let mut live = app.live.as_ref().map(|l| l.subscribe());
    let mut revoked = app.auth.revocations();
    let app2 = app.clone();
    let stream = async_stream(move |tx| async move {
        loop {
            // The stream ends when its session does.
            if app2.auth.session_alive(&s.id).is_err() {
                return;
            }
            let event = tokio::select! {
                r = revoked.changed() => match r {
                    // Sessions were revoked: check this one again.
                    Ok(()) => continue,
                    Err(_) => return,
                },
                changed = changes.changed() => match changed {
                    Ok(()) => Event::default().event("devices").data("{}"),
                    Err(_) => return,
                },
                update = async {
                    match live.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => match update {
                    Ok((id, state)) => {
                        let mut v = serde_json::to_value(&state).unwrap_or(Value::Null);
                        if let Some(o) = v.as_object_mut() {
                            o.insert("id".into(), json!(id.as_str()));
                        }
                        Event::default().event("device").data(v.to_string())
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        Event::default().event("devices").data("{}")
                    }
                    Err(_) => return,
                },
                _ = tokio::time::sleep(Duration::from_secs(60)) => continue,
            };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// A stream fed by a task, ended when the task returns or the client goes.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "hearth dashboard API",
        description = "The JSON API behind hearth's LAN dashboard. Every state-changing request needs the session cookie and the X-CSRF-Token header."
    ),
    paths(
        state,
        setup,
        login,
        logout,
        session,
        change_password,
        require_password_change,
        enroll,
        reenroll,
        qr,
        confirm,
        sessions,
        revoke,
        audit,
        audit_verify,
        audit_export,
        audit_types,
        lockdown,
        keys_status,
        keys_rotate,
        backup_download,
        erase_everything,
        warnings,
        acknowledge_warning,
        privacy,
        devices,
        adopt,
        ignore,
        update,
        command,
        rotate,
        forget,
        events,
        ha_status,
        ha_enable,
        ha_rotate,
        ha_disable,
        ha_settings,
        relay_status,
        relay_enable,
        relay_disable,
        relay_register,
        relay_unregister,
        relay_revoke
    )
)]
struct ApiDoc;

async fn openapi() -> Response {
    use utoipa::OpenApi;
    let mut doc = ApiDoc::openapi();
    // No version banner, here either.
    doc.info.version = "1".into();
    Json(doc).into_response()
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
#[path = "api_tests.rs"]
mod tests;
