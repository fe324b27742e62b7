//! The owner's account: first-run setup, login and logout, the password,
//! two-factor enrolment, and the owner's sessions. Each handler calls one
//! `accounts::Auth` operation.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, App, Authed, Body, Client, cookie, off_thread};
use crate::accounts::{Auth, AuthError, COOKIE, NewSession, Session};
use crate::store::CredentialId;

fn session_json(s: &Session) -> Value {
    json!({
        "username": s.username,
        "csrf": s.csrf,
        "totp_enabled": s.totp_enabled,
        "must_change_password": s.must_change_password,
    })
}

/// A new session's answer and cookie; the browser it was opened in is
/// noted for the owner's list of sessions.
fn with_cookie(app: &App, new: NewSession, headers: &HeaderMap) -> Response {
    if let Some(agent) = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()) {
        app.auth.describe_session(&new.session.id, agent);
    }
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
pub(super) async fn blocking<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&Auth) -> Result<T, AuthError> + Send + 'static,
) -> Result<T, ApiError> {
    let app = app.clone();
    off_thread(move || f(&app.auth)).await?.map_err(ApiError::from)
}

#[utoipa::path(get, path = "/api/state", responses((status = 200, description = "Whether setup is needed and whether this client is logged in")))]
pub(super) async fn state(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let setup_needed = app.auth.setup_needed()?;
    let logged_in = cookie(&headers).is_some_and(|t| app.auth.session(&t).is_ok());
    Ok(Json(
        json!({ "setup_needed": setup_needed, "logged_in": logged_in }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SetupBody {
    code: String,
    username: String,
    password: String,
}

#[utoipa::path(post, path = "/api/setup", request_body = SetupBody, responses((status = 200, description = "Owner created; session cookie set"), (status = 403, description = "Wrong setup code"), (status = 409, description = "Already set up")))]
pub(super) async fn setup(
    State(app): State<Arc<App>>,
    Client(from): Client,
    headers: HeaderMap,
    Body(b): Body<SetupBody>,
) -> Result<Response, ApiError> {
    let new = blocking(&app, move |auth| {
        auth.setup(&b.code, &b.username, &b.password, from)
    })
    .await?;
    Ok(with_cookie(&app, new, &headers))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    username: String,
    password: String,
    #[serde(default)]
    code: Option<String>,
}

#[utoipa::path(post, path = "/api/login", request_body = LoginBody, responses((status = 200, description = "Logged in; session cookie set"), (status = 401, description = "Wrong credentials, or a two-factor code is needed"), (status = 429, description = "Throttled")))]
pub(super) async fn login(
    State(app): State<Arc<App>>,
    Client(from): Client,
    headers: HeaderMap,
    Body(b): Body<LoginBody>,
) -> Result<Response, ApiError> {
    let new = blocking(&app, move |auth| {
        auth.login(&b.username, &b.password, b.code.as_deref(), from)
    })
    .await?;
    Ok(with_cookie(&app, new, &headers))
}

#[utoipa::path(post, path = "/api/logout", responses((status = 204, description = "Logged out")))]
pub(super) async fn logout(State(app): State<Arc<App>>, Authed(s): Authed) -> Result<Response, ApiError> {
    app.auth.logout(&s)?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("__Host-hearth=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(r)
}

#[utoipa::path(get, path = "/api/session", responses((status = 200, description = "The current session"), (status = 401, description = "Not logged in")))]
pub(super) async fn session(Authed(s): Authed) -> Json<Value> {
    Json(session_json(&s))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordBody {
    current: String,
    new: String,
}

#[utoipa::path(post, path = "/api/password", request_body = PasswordBody, responses((status = 204, description = "Changed; other sessions ended"), (status = 403, description = "Current password wrong")))]
pub(super) async fn change_password(
    State(app): State<Arc<App>>,
    Authed(s): Authed,
    Body(b): Body<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    blocking(&app, move |auth| auth.change_password(&s, &b.current, &b.new)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/password/require", responses((status = 200, description = "The password must be changed at the next login; every other session ended")))]
pub(super) async fn require_password_change(
    State(app): State<Arc<App>>,
    Authed(s): Authed,
) -> Result<Json<Value>, ApiError> {
    let ended = blocking(&app, move |auth| auth.require_password_change(&s)).await?;
    Ok(Json(json!({ "required": true, "sessions_ended": ended })))
}

#[utoipa::path(post, path = "/api/totp/enroll", responses((status = 200, description = "A new TOTP secret, pending confirmation")))]
pub(super) async fn enroll(State(app): State<Arc<App>>, Authed(s): Authed) -> Result<Json<Value>, ApiError> {
    let (secret, uri) = app.auth.enroll(&s)?;
    Ok(Json(json!({ "secret": secret, "uri": uri })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReenrollBody {
    password: String,
}

#[utoipa::path(post, path = "/api/totp/reenroll", request_body = ReenrollBody, responses((status = 200, description = "A new secret and its otpauth URI; the old one works until the new one is confirmed"), (status = 403, description = "Wrong password")))]
pub(super) async fn reenroll(
    State(app): State<Arc<App>>,
    Authed(s): Authed,
    Body(b): Body<ReenrollBody>,
) -> Result<Json<Value>, ApiError> {
    let (secret, uri) = blocking(&app, move |auth| auth.reenroll(&s, &b.password)).await?;
    Ok(Json(json!({ "secret": secret, "uri": uri })))
}

#[utoipa::path(get, path = "/api/totp/qr.svg", responses((status = 200, description = "The pending enrolment's QR code", content_type = "image/svg+xml")))]
pub(super) async fn qr(State(app): State<Arc<App>>, Authed(s): Authed) -> Result<Response, ApiError> {
    let svg = app.auth.enrollment_qr(&s)?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CodeBody {
    code: String,
}

#[utoipa::path(post, path = "/api/totp/confirm", request_body = CodeBody, responses((status = 200, description = "Enrolled; ten recovery codes, shown once"), (status = 400, description = "Wrong code")))]
pub(super) async fn confirm(
    State(app): State<Arc<App>>,
    Authed(s): Authed,
    Body(b): Body<CodeBody>,
) -> Result<Json<Value>, ApiError> {
    let codes = blocking(&app, move |auth| auth.confirm(&s, &b.code)).await?;
    let codes: Vec<&str> = codes.iter().map(|c| c.expose()).collect();
    Ok(Json(json!({ "recovery_codes": codes })))
}

#[utoipa::path(get, path = "/api/sessions", responses((status = 200, description = "The owner's live sessions")))]
pub(super) async fn sessions(
    State(app): State<Arc<App>>,
    Authed(s): Authed,
) -> Result<Json<Value>, ApiError> {
    let list = app.auth.sessions(&s)?;
    Ok(Json(Value::Array(
        list.into_iter()
            .map(|i| {
                json!({
                    "current": i.id == s.id,
                    "id": i.id.as_str(),
                    "created_at": crate::accounts::unix_secs(i.created),
                    "last_seen_at": i.last_seen,
                    "from": i.from.map(|a| a.to_string()),
                    "browser": i.browser,
                    "system": i.system,
                })
            })
            .collect(),
    )))
}

#[utoipa::path(delete, path = "/api/sessions/{id}", responses((status = 204, description = "Revoked"), (status = 404, description = "No such session")))]
pub(super) async fn revoke(
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
