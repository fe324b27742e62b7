//! The OAuth 2.0 authorization server for account linking (RFC 6749, with
//! RFC 9700's advice): the authorization code grant with PKCE S256, exact
//! redirect URIs, single-use 60-second codes, one-hour opaque access tokens
//! and rotating refresh tokens. Every token is stored as a hash; pending
//! consents and codes are held only in memory, as hashes, and bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

use super::{ACTIONS, Peer, Relay, RelayError, VoiceDevice, bare, body_of};
use crate::store::AuditKind;
use crate::store::relay::{IssuedTokens, Refreshed, RelayClient, RelayClientFields, RelayLinkFields};
use crate::store::secret::{Secret, TokenHash, random_token};
use crate::store::{Actor, AuditEvent, DeviceId, LinkId, OwnerId, RelayClientId, UnixTime};

/// An authorization code lives this long.
pub const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// An access token lives this long.
pub const ACCESS_LIFETIME: Duration = Duration::from_secs(3600);
/// A refresh token lives this long unless used (each use makes a new one).
pub const REFRESH_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// An exchanged refresh token may be presented again this soon, for a
/// retried request whose answer was lost.
pub const REFRESH_GRACE: Duration = Duration::from_secs(30);
/// The consent page must be answered within this of the login.
const CONSENT_LIFETIME: Duration = Duration::from_secs(300);
/// Pending consents and codes held at once.
const MAX_PENDING: usize = 64;

/// Alexa's account-linking redirect URIs; `{id}` is the skill's vendor id.
pub const ALEXA_REDIRECTS: [&str; 3] = [
    "https://pitangui.amazon.com/api/skill/link/{id}",
    "https://layla.amazon.com/api/skill/link/{id}",
    "https://alexa.amazon.co.jp/api/skill/link/{id}",
];
/// Google's; `{id}` is the project id.
pub const GOOGLE_REDIRECTS: [&str; 2] = [
    "https://oauth-redirect.googleusercontent.com/r/{id}",
    "https://oauth-redirect-sandbox.googleusercontent.com/r/{id}",
];

/// An authorization request that passed its checks.
#[derive(Clone)]
struct AuthRequest {
    client: RelayClientId,
    client_name: String,
    redirect_uri: String,
    state: Option<String>,
    challenge: Option<String>,
}

struct Ticket {
    req: AuthRequest,
    owner: OwnerId,
    expires: Instant,
}

struct Code {
    req: AuthRequest,
    devices: Vec<DeviceId>,
    actions: Vec<String>,
    expires: Instant,
    /// Set once exchanged, then to the link it made. A second exchange
    /// revokes that link.
    used: Option<Option<LinkId>>,
}

/// Consents waiting for the owner, and codes waiting for the assistant.
#[derive(Default)]
pub struct Pending {
    inner: Mutex<PendingInner>,
}

#[derive(Default)]
struct PendingInner {
    tickets: HashMap<[u8; 32], Ticket>,
    codes: HashMap<[u8; 32], Code>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn sweep(&self, now: Instant) {
        let mut p = self.lock();
        p.tickets.retain(|_, t| t.expires > now);
        p.codes.retain(|_, c| c.expires > now);
    }
}

/// What the dashboard registers.
#[derive(Clone, Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct NewClient {
    pub name: String,
    /// `alexa` or `google`: a link answers only on its assistant's route.
    pub assistant: String,
    pub redirect_uris: Vec<String>,
}

impl Relay {
    /// Registers a client; the secret is returned once and stored hashed.
    pub fn register_client(&self, new: NewClient, by: Actor) -> Result<(RelayClient, Secret), RelayError> {
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(RelayError::Refused(
                "the name must be 1 to 64 characters, without control characters".into(),
            ));
        }
        if !matches!(new.assistant.as_str(), "alexa" | "google") {
            return Err(RelayError::Refused(
                "the assistant is alexa or google: its links answer only on that assistant's route".into(),
            ));
        }
        if new.redirect_uris.is_empty() || new.redirect_uris.len() > 10 {
            return Err(RelayError::Refused("give 1 to 10 redirect URIs".into()));
        }
        for uri in &new.redirect_uris {
            if !valid_redirect(uri) {
                return Err(RelayError::Refused(format!(
                    "'{uri}' is not an https:// URL without a fragment (at most 512 characters)"
                )));
            }
        }
        let secret = random_token(256).map_err(|e| RelayError::Internal(e.to_string()))?;
        let fields = RelayClientFields {
            name: name.to_owned(),
            assistant: new.assistant,
            redirect_uris: new.redirect_uris,
            created_at: UnixTime::now().0,
        };
        let mut store = self.store();
        let id = store.insert_relay_client(&fields, &TokenHash::of(secret.expose()))?;
        store.append_audit(&AuditEvent::ok(
            AuditKind::RelayClientRegistered,
            by,
            format!("client {id}"),
        ))?;
        Ok((RelayClient { id, fields }, secret))
    }
}

fn valid_redirect(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("https://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    uri.len() <= 512
        && !host.is_empty()
        && !host.contains('@')
        && !uri.contains('#')
        && !uri.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Parameters of a form or query string; `None` if any name repeats among
/// `single`.
fn params(raw: &[u8], single: &[&str]) -> Option<Vec<(String, String)>> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(raw).ok()?;
    for name in single {
        if pairs.iter().filter(|(k, _)| k == name).count() > 1 {
            return None;
        }
    }
    Some(pairs)
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

const REQUEST_PARAMS: [&str; 7] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "scope",
    "code_challenge",
    "code_challenge_method",
];

/// Why an authorization request failed: shown on the page when the client
/// or redirect URI cannot be trusted, else sent back to the redirect URI.
enum Refusal {
    Page(&'static str),
    Redirect(AuthRequest, &'static str),
}

async fn check_request(relay: &Arc<Relay>, pairs: &[(String, String)]) -> Result<AuthRequest, Refusal> {
    let client = param(pairs, "client_id")
        .and_then(RelayClientId::parse)
        .ok_or(Refusal::Page("This link request names no client hearth knows."))?;
    let found = relay
        .with_store({
            let client = client.clone();
            move |s| s.relay_client(&client)
        })
        .await
        .map_err(|_| Refusal::Page("hearth could not read its clients."))?;
    let Some((c, _)) = found else {
        return Err(Refusal::Page("This link request names no client hearth knows."));
    };
    let redirect_uri = param(pairs, "redirect_uri").unwrap_or("");
    if !c.fields.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(Refusal::Page(
            "This link request's redirect URI is not one registered for its client.",
        ));
    }
    let state = param(pairs, "state").map(str::to_owned);
    let req = AuthRequest {
        client,
        client_name: c.fields.name,
        redirect_uri: redirect_uri.to_owned(),
        state: state.clone(),
        challenge: param(pairs, "code_challenge").map(str::to_owned),
    };
    if param(pairs, "response_type") != Some("code") {
        return Err(Refusal::Redirect(req, "unsupported_response_type"));
    }
    if state.as_ref().is_some_and(|s| s.len() > 512) {
        return Err(Refusal::Redirect(req, "invalid_request"));
    }
    match (&req.challenge, param(pairs, "code_challenge_method")) {
        (None, None) => {}
        (Some(c), Some("S256"))
            if c.len() == 43 && URL_SAFE_NO_PAD.decode(c).is_ok_and(|b| b.len() == 32) => {}
        _ => return Err(Refusal::Redirect(req, "invalid_request")),
    }
    Ok(req)
}

/// `uri` with `pairs` added to its query.
fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let q = serde_urlencoded::to_string(pairs).expect("pairs encode");
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{q}")
}

fn redirect_to(location: &str) -> Response<Body> {
    let mut res = bare(StatusCode::FOUND, None);
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

fn refuse(r: Refusal) -> Response<Body> {
    match r {
        Refusal::Page(why) => page(
            StatusCode::BAD_REQUEST,
            "Link refused",
            &format!("<p>{}</p>", esc(why)),
        ),
        Refusal::Redirect(req, error) => {
            let mut q = vec![("error", error)];
            if let Some(s) = &req.state {
                q.push(("state", s));
            }
            redirect_to(&with_query(&req.redirect_uri, &q))
        }
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>hearth: {t}</title></head><body><main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    );
    let mut res = Response::new(Body::from(html));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        esc(name),
        esc(value)
    )
}

fn login_page(
    status: StatusCode,
    pairs: &[(String, String)],
    req: &AuthRequest,
    error: Option<&str>,
) -> Response<Body> {
    let mut hiddens = String::new();
    for name in REQUEST_PARAMS {
        if let Some(v) = param(pairs, name) {
            hiddens.push_str(&hidden(name, v));
        }
    }
    let error = error
        .map(|e| format!("<p role=\"alert\" data-testid=\"relay-error\">{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "<p>{client} asks to link with this home. Sign in as the owner to choose what it may reach.</p>{error}\
         <form method=\"post\" action=\"/oauth/authorize\">{hiddens}{step}\
         <p><label>Username <input name=\"username\" type=\"text\" autocomplete=\"username\" autocapitalize=\"none\" required data-testid=\"relay-username\"></label></p>\
         <p><label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required data-testid=\"relay-password\"></label></p>\
         <p><label>Two-factor code <input name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required data-testid=\"relay-code\"></label></p>\
         <p><button type=\"submit\" data-testid=\"relay-login\">Sign in</button></p></form>",
        client = esc(&req.client_name),
        step = hidden("step", "login"),
    );
    page(status, "Link a voice assistant", &body)
}

fn consent_page(
    ticket: &str,
    req: &AuthRequest,
    devices: &[VoiceDevice],
    error: Option<&str>,
) -> Response<Body> {
    let error = error
        .map(|e| format!("<p role=\"alert\" data-testid=\"relay-error\">{}</p>", esc(e)))
        .unwrap_or_default();
    let list = if devices.is_empty() {
        "<p data-testid=\"relay-no-devices\">No device is offered yet: expose a light or plug to voice assistants \
         and give it a voice name on the dashboard first.</p>"
            .to_owned()
    } else {
        devices
            .iter()
            .map(|d| {
                format!(
                    "<li><label><input type=\"checkbox\" name=\"device\" value=\"{id}\" data-testid=\"relay-device\"> {name}</label></li>",
                    id = esc(d.id.as_str()),
                    name = esc(&d.voice_name)
                )
            })
            .collect::<Vec<_>>()
            .join("")
    };
    let actions = [
        ("power", "Turn on and off"),
        ("brightness", "Set brightness"),
        ("color_temp", "Set colour temperature"),
    ]
    .iter()
    .map(|(a, label)| {
        format!(
            "<li><label><input type=\"checkbox\" name=\"action\" value=\"{a}\"{checked} data-testid=\"relay-action-{a}\"> {label}</label></li>",
            checked = if *a == "power" { " checked" } else { "" }
        )
    })
    .collect::<Vec<_>>()
    .join("");
    let body = format!(
        "{error}<form method=\"post\" action=\"/oauth/authorize\">{t}{step}\
         <fieldset><legend>Devices {client} may see, by their voice names</legend><ul>{list}</ul></fieldset>\
         <fieldset><legend>What it may do</legend><ul>{actions}</ul></fieldset>\
         <p>Cameras and doorbells are never offered. You can revoke this link at any time on the dashboard.</p>\
         <p><button type=\"submit\" name=\"decision\" value=\"allow\" data-testid=\"relay-allow\">Allow</button> \
         <button type=\"submit\" name=\"decision\" value=\"deny\" data-testid=\"relay-deny\">Deny</button></p></form>",
        t = hidden("ticket", ticket),
        step = hidden("step", "consent"),
        client = esc(&req.client_name),
    );
    page(StatusCode::OK, "Choose what to share", &body)
}

/// `GET /oauth/authorize`: checks the request, then asks the owner to sign in.
pub async fn authorize_page(State(relay): State<Arc<Relay>>, RawQuery(query): RawQuery) -> Response<Body> {
    let raw = query.unwrap_or_default();
    let Some(pairs) = params(raw.as_bytes(), &REQUEST_PARAMS) else {
        return refuse(Refusal::Page(
            "This link request repeats a parameter or cannot be read.",
        ));
    };
    match check_request(&relay, &pairs).await {
        Ok(req) => login_page(StatusCode::OK, &pairs, &req, None),
        Err(r) => refuse(r),
    }
}

/// `POST /oauth/authorize`: the sign-in, then the consent.
pub async fn authorize_form(
    State(relay): State<Arc<Relay>>,
    axum::Extension(peer): axum::Extension<Peer>,
    body: Body,
) -> Response<Body> {
    let raw = match body_of(body).await {
        Ok(b) => b,
        Err(res) => return res,
    };
    let Some(pairs) = params(
        &raw,
        &["step", "ticket", "username", "password", "code", "decision"],
    ) else {
        return refuse(Refusal::Page("This form repeats a field or cannot be read."));
    };
    match param(&pairs, "step") {
        Some("login") => login(&relay, &pairs, peer).await,
        Some("consent") => consent(&relay, &pairs).await,
        _ => refuse(Refusal::Page("This form cannot be read.")),
    }
}

async fn login(relay: &Arc<Relay>, pairs: &[(String, String)], peer: Peer) -> Response<Body> {
    if params_repeat(pairs) {
        return refuse(Refusal::Page("This link request repeats a parameter."));
    }
    let req = match check_request(relay, pairs).await {
        Ok(r) => r,
        Err(r) => return refuse(r),
    };
    let (user, password, code) = (
        param(pairs, "username").unwrap_or("").to_owned(),
        param(pairs, "password").unwrap_or("").to_owned(),
        param(pairs, "code").unwrap_or("").to_owned(),
    );
    let auth = relay.auth.clone();
    let from = peer.0.ip();
    let verified =
        tokio::task::spawn_blocking(move || auth.verify_with_totp(&user, &password, &code, from)).await;
    let owner = match verified {
        Ok(Ok(owner)) => owner,
        Ok(Err(crate::accounts::AuthError::Throttled(d))) => {
            let msg = format!("Too many attempts; try again in {} s.", d.as_secs().max(1));
            return login_page(StatusCode::TOO_MANY_REQUESTS, pairs, &req, Some(&msg));
        }
        Ok(Err(crate::accounts::AuthError::Policy(msg))) => {
            return login_page(
                StatusCode::FORBIDDEN,
                pairs,
                &req,
                Some(&format!("To link an assistant, {msg}.")),
            );
        }
        Ok(Err(_)) => {
            return login_page(
                StatusCode::UNAUTHORIZED,
                pairs,
                &req,
                Some("The username, password or two-factor code is wrong."),
            );
        }
        Err(_) => return bare(StatusCode::INTERNAL_SERVER_ERROR, None),
    };
    new_ticket(relay, req, owner, None).await
}

fn params_repeat(pairs: &[(String, String)]) -> bool {
    REQUEST_PARAMS
        .iter()
        .any(|n| pairs.iter().filter(|(k, _)| k == n).count() > 1)
}

/// Stores a consent ticket and shows the consent page.
async fn new_ticket(
    relay: &Arc<Relay>,
    req: AuthRequest,
    owner: OwnerId,
    error: Option<&str>,
) -> Response<Body> {
    let Ok(ticket) = random_token(256) else {
        return bare(StatusCode::INTERNAL_SERVER_ERROR, None);
    };
    {
        let mut p = relay.oauth.lock();
        let now = Instant::now();
        p.tickets.retain(|_, t| t.expires > now);
        if p.tickets.len() >= MAX_PENDING {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Busy",
                "<p>Too many link requests are waiting; try again in a few minutes.</p>",
            );
        }
        p.tickets.insert(
            *TokenHash::of(ticket.expose()).as_bytes(),
            Ticket {
                req: req.clone(),
                owner,
                expires: now + CONSENT_LIFETIME,
            },
        );
    }
    let devices = {
        let r = relay.clone();
        tokio::task::spawn_blocking(move || r.offerable()).await
    };
    match devices {
        Ok(Ok(devices)) => consent_page(ticket.expose(), &req, &devices, error),
        _ => bare(StatusCode::INTERNAL_SERVER_ERROR, None),
    }
}

async fn consent(relay: &Arc<Relay>, pairs: &[(String, String)]) -> Response<Body> {
    let ticket = param(pairs, "ticket").unwrap_or("");
    let taken = relay
        .oauth
        .lock()
        .tickets
        .remove(TokenHash::of(ticket).as_bytes());
    let Some(t) = taken.filter(|t| t.expires > Instant::now()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Link expired",
            "<p>This consent page has expired or was already answered. Start linking again from the assistant's app.</p>",
        );
    };
    let req = t.req;
    let deny = |req: &AuthRequest| {
        let mut q = vec![("error", "access_denied")];
        if let Some(s) = &req.state {
            q.push(("state", s.as_str()));
        }
        redirect_to(&with_query(&req.redirect_uri, &q))
    };
    if param(pairs, "decision") != Some("allow") {
        relay.auth.audit(AuditEvent::refused(
            AuditKind::RelayConsentDenied,
            Actor::Visitor,
            format!("client {}", req.client),
        ));
        return deny(&req);
    }
    let offered = {
        let r = relay.clone();
        match tokio::task::spawn_blocking(move || r.offerable()).await {
            Ok(Ok(d)) => d,
            _ => return bare(StatusCode::INTERNAL_SERVER_ERROR, None),
        }
    };
    // Only what was offered can be granted: an id typed into the form that
    // is not an offered device (a camera, say) is never linked.
    let devices: Vec<DeviceId> = pairs
        .iter()
        .filter(|(k, _)| k == "device")
        .filter_map(|(_, v)| offered.iter().find(|d| d.id.as_str() == v).map(|d| d.id.clone()))
        .collect();
    let mut actions: Vec<String> = ACTIONS
        .iter()
        .filter(|a| pairs.iter().any(|(k, v)| k == "action" && v == *a))
        .map(|a| (*a).to_owned())
        .collect();
    actions.dedup();
    if devices.is_empty() || actions.is_empty() {
        return new_ticket(
            relay,
            req,
            t.owner,
            Some("Choose at least one device and one action."),
        )
        .await;
    }
    let Ok(code) = random_token(256) else {
        return bare(StatusCode::INTERNAL_SERVER_ERROR, None);
    };
    {
        let mut p = relay.oauth.lock();
        let now = Instant::now();
        p.codes.retain(|_, c| c.expires > now);
        if p.codes.len() >= MAX_PENDING {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Busy",
                "<p>Too many link requests are waiting; try again in a minute.</p>",
            );
        }
        p.codes.insert(
            *TokenHash::of(code.expose()).as_bytes(),
            Code {
                req: req.clone(),
                devices,
                actions,
                expires: now + CODE_LIFETIME,
                used: None,
            },
        );
    }
    relay.auth.audit(AuditEvent::ok(
        AuditKind::RelayConsentGiven,
        Actor::Visitor,
        format!("client {}", req.client),
    ));
    let mut q = vec![("code", code.expose())];
    if let Some(s) = &req.state {
        q.push(("state", s.as_str()));
    }
    redirect_to(&with_query(&req.redirect_uri, &q))
}

fn token_error(status: StatusCode, error: &str, basic: bool) -> Response<Body> {
    let mut res = Response::new(Body::from(json!({ "error": error }).to_string()));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if status == StatusCode::UNAUTHORIZED && basic {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"hearth relay\""),
        );
    }
    res
}

fn token_ok(access: &Secret, refresh: &Secret) -> Response<Body> {
    let body = json!({
        "access_token": access.expose(),
        "token_type": "Bearer",
        "expires_in": ACCESS_LIFETIME.as_secs(),
        "refresh_token": refresh.expose(),
    });
    let mut res = Response::new(Body::from(body.to_string()));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// The client's id and secret, from HTTP Basic (RFC 6749 2.3.1) or the
/// body; `None` if both or neither are used. The bool says Basic was used.
fn client_credentials(headers: &HeaderMap, pairs: &[(String, String)]) -> Option<(String, String, bool)> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("basic"))
        .map(|(_, v)| v.trim());
    let body = (param(pairs, "client_id"), param(pairs, "client_secret"));
    match (basic, body) {
        (Some(b), (_, None)) => {
            let decoded = STANDARD.decode(b).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (id, secret) = text.split_once(':')?;
            let id: String = serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("x={id}"))
                .ok()?
                .pop()?
                .1;
            let secret: String = serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("x={secret}"))
                .ok()?
                .pop()?
                .1;
            if body.0.is_some_and(|b| b != id) {
                return None;
            }
            Some((id, secret, true))
        }
        (None, (Some(id), Some(secret))) => Some((id.to_owned(), secret.to_owned(), false)),
        _ => None,
    }
}

fn new_pair() -> Option<(Secret, Secret, IssuedTokens)> {
    let access = random_token(256).ok()?;
    let refresh = random_token(256).ok()?;
    let now = UnixTime::now().0;
    let issued = IssuedTokens {
        access: TokenHash::of(access.expose()),
        access_expires: UnixTime(now + ACCESS_LIFETIME.as_millis() as i64),
        refresh: TokenHash::of(refresh.expose()),
        refresh_expires: UnixTime(now + REFRESH_LIFETIME.as_millis() as i64),
    };
    Some((access, refresh, issued))
}

/// `POST /oauth/token`: the code and refresh grants.
pub async fn token(State(relay): State<Arc<Relay>>, headers: HeaderMap, body: Body) -> Response<Body> {
    let raw = match body_of(body).await {
        Ok(b) => b,
        Err(res) => return res,
    };
    let single = [
        "grant_type",
        "code",
        "redirect_uri",
        "client_id",
        "client_secret",
        "code_verifier",
        "refresh_token",
    ];
    let Some(pairs) = params(&raw, &single) else {
        return token_error(StatusCode::BAD_REQUEST, "invalid_request", false);
    };
    let Some((client_id, secret, basic)) = client_credentials(&headers, &pairs) else {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client", true);
    };
    let client = match RelayClientId::parse(&client_id) {
        Some(id) => {
            let found = relay.with_store(move |s| s.relay_client(&id)).await;
            match found {
                Ok(Some((c, hash))) if hash.matches(&secret) => c,
                Ok(_) => return token_error(StatusCode::UNAUTHORIZED, "invalid_client", basic),
                Err(_) => return bare(StatusCode::INTERNAL_SERVER_ERROR, None),
            }
        }
        None => return token_error(StatusCode::UNAUTHORIZED, "invalid_client", basic),
    };
    match param(&pairs, "grant_type") {
        Some("authorization_code") => exchange_code(&relay, &client, &pairs).await,
        Some("refresh_token") => refresh(&relay, &client, &pairs).await,
        Some(_) => token_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", false),
        None => token_error(StatusCode::BAD_REQUEST, "invalid_request", false),
    }
}

fn pkce_ok(challenge: Option<&str>, verifier: Option<&str>) -> bool {
    match (challenge, verifier) {
        (None, None) => true,
        (Some(c), Some(v)) => {
            let well_formed = (43..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
            let digest = ring::digest::digest(&ring::digest::SHA256, v.as_bytes());
            use subtle::ConstantTimeEq;
            well_formed && bool::from(URL_SAFE_NO_PAD.encode(digest).as_bytes().ct_eq(c.as_bytes()))
        }
        // A verifier without a challenge is a downgrade attempt; a
        // challenge without a verifier, a stolen code.
        _ => false,
    }
}

async fn exchange_code(
    relay: &Arc<Relay>,
    client: &RelayClient,
    pairs: &[(String, String)],
) -> Response<Body> {
    let code = param(pairs, "code").unwrap_or("");
    let key = *TokenHash::of(code).as_bytes();
    enum Found {
        Fresh(AuthRequest, Vec<DeviceId>, Vec<String>),
        Reused(Option<LinkId>),
        Bad,
    }
    let found = {
        let mut p = relay.oauth.lock();
        match p.codes.get_mut(&key) {
            None => Found::Bad,
            Some(c) if c.expires <= Instant::now() => {
                p.codes.remove(&key);
                Found::Bad
            }
            Some(c) if c.used.is_some() => Found::Reused(c.used.clone().flatten()),
            Some(c) => {
                let ok = c.req.client == client.id
                    && param(pairs, "redirect_uri") == Some(c.req.redirect_uri.as_str())
                    && pkce_ok(c.req.challenge.as_deref(), param(pairs, "code_verifier"));
                if ok {
                    // Marked used now; the link is filled in below.
                    c.used = Some(None);
                    Found::Fresh(c.req.clone(), c.devices.clone(), c.actions.clone())
                } else {
                    // A failed exchange burns the code.
                    p.codes.remove(&key);
                    Found::Bad
                }
            }
        }
    };
    match found {
        Found::Bad => token_error(StatusCode::BAD_REQUEST, "invalid_grant", false),
        Found::Reused(link) => {
            // RFC 6749 4.1.2: a code used twice revokes what it granted.
            if let Some(link) = link {
                let _ = relay
                    .revoke(&link, "authorization code reused", Actor::Visitor)
                    .await;
            }
            token_error(StatusCode::BAD_REQUEST, "invalid_grant", false)
        }
        Found::Fresh(req, devices, actions) => {
            let Some((access, refresh, issued)) = new_pair() else {
                return bare(StatusCode::INTERNAL_SERVER_ERROR, None);
            };
            let fields = RelayLinkFields {
                actions,
                created_at: UnixTime::now().0,
            };
            let client_id = req.client.clone();
            let n = devices.len();
            let made = relay
                .with_store(move |s| {
                    let link = s.insert_relay_link(&client_id, &fields, &devices, &issued)?;
                    s.append_audit(&AuditEvent::ok(
                        AuditKind::RelayLinkCreated,
                        Actor::Link(link.to_string()),
                        format!(
                            "link {link} for client {client_id}, {n} device{}",
                            if n == 1 { "" } else { "s" }
                        ),
                    ))?;
                    Ok(link)
                })
                .await;
            match made {
                Ok(link) => {
                    if let Some(c) = relay.oauth.lock().codes.get_mut(&key) {
                        c.used = Some(Some(link));
                    }
                    token_ok(&access, &refresh)
                }
                Err(error) => {
                    tracing::error!(%error, "could not store a new relay link");
                    bare(StatusCode::INTERNAL_SERVER_ERROR, None)
                }
            }
        }
    }
}

async fn refresh(relay: &Arc<Relay>, client: &RelayClient, pairs: &[(String, String)]) -> Response<Body> {
    let presented = TokenHash::of(param(pairs, "refresh_token").unwrap_or(""));
    let Some((access, refresh, issued)) = new_pair() else {
        return bare(StatusCode::INTERNAL_SERVER_ERROR, None);
    };
    let client_id = client.id.clone();
    let grace = REFRESH_GRACE.as_millis() as i64;
    let result = relay
        .with_store(move |s| {
            let r = s.refresh_relay_tokens(&client_id, &presented, grace, &issued)?;
            if let Refreshed::Reused(link) = &r {
                s.append_audit(&AuditEvent::refused(
                    AuditKind::RelayLinkRevoked,
                    Actor::Link(link.to_string()),
                    format!("link {link}: a refresh token was used again"),
                ))?;
            }
            Ok(r)
        })
        .await;
    match result {
        Ok(Refreshed::Issued(_)) => token_ok(&access, &refresh),
        Ok(Refreshed::Unknown | Refreshed::Reused(_)) => {
            token_error(StatusCode::BAD_REQUEST, "invalid_grant", false)
        }
        Err(error) => {
            tracing::error!(%error, "could not refresh relay tokens");
            bare(StatusCode::INTERNAL_SERVER_ERROR, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_ok(Some(challenge), Some(verifier)));
        assert!(!pkce_ok(
            Some(challenge),
            Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj")
        ));
        assert!(!pkce_ok(Some(challenge), None));
        assert!(!pkce_ok(None, Some(verifier)));
        assert!(pkce_ok(None, None));
        assert!(!pkce_ok(Some(challenge), Some("short")));
    }

    #[test]
    fn redirect_uris_must_be_https_without_fragment_or_userinfo() {
        assert!(valid_redirect("https://layla.amazon.com/api/skill/link/M2X"));
        assert!(valid_redirect("https://example.test/cb?x=1"));
        for bad in [
            "http://example.test/cb",
            "https://example.test/cb#frag",
            "https://user@example.test/cb",
            "https:///cb",
            "https://example.test/a b",
            "javascript:alert(1)",
        ] {
            assert!(!valid_redirect(bad), "{bad}");
        }
    }

    #[test]
    fn query_is_appended_and_encoded() {
        assert_eq!(
            with_query("https://a.test/cb", &[("code", "x y"), ("state", "s&t")]),
            "https://a.test/cb?code=x+y&state=s%26t"
        );
        assert_eq!(
            with_query("https://a.test/cb?k=1", &[("code", "c")]),
            "https://a.test/cb?k=1&code=c"
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
