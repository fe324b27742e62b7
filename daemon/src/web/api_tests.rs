//! Handler tests for the dashboard API: requests go straight into
//! [`router`] with `oneshot`, with the server's [`Peer`] extension added as
//! the accept loop would. No socket is opened for HTTP.
//!
//! argon2id is slow in debug builds, so each test logs in only as often as
//! its point needs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{App, MAX_BODY, Peer, router};
use crate::accounts::totp::{self, TotpSecret};
use crate::accounts::{Auth, COOKIE, SETUP_CODE_FILE, unix_now};
use crate::broker::{Broker, Credentials, Limits, Listeners};
use crate::home::devices::{Devices, MQTT_PASSWORD, MqttEndpoint};
use crate::net::pki::{self, TlsFiles};
use crate::store::secret::TokenHash;
use crate::store::{DataDir, Device, DeviceFields, DeviceId, DeviceKind, DeviceStatus, Store};

const HOST: &str = "hearth.test";
const ORIGIN: &str = "https://hearth.test";
const OWNER: &str = "owner";
const PASSWORD: &str = "copper kettle under the stairs";
const NEW_PASSWORD: &str = "seven quiet herons at dawn";
const IDLE: Duration = Duration::from_secs(3600);
const MAX: Duration = Duration::from_secs(12 * 3600);
/// Far beyond any handler's time, argon2id in a debug build included.
const STUCK: Duration = Duration::from_secs(60);

/// A client address; tests vary it to tell per-address from per-account
/// throttling apart.
fn addr(last: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)), 50_000)
}

/// The address requests come from unless a test says otherwise.
const HOME: u8 = 10;

struct Fixture {
    router: Router,
    store: Arc<Mutex<Store>>,
    data_dir: PathBuf,
    setup_code: String,
    _tmp: tempfile::TempDir,
}

/// A logged-in browser: its session cookie and CSRF token.
#[derive(Clone)]
struct Browser {
    token: String,
    csrf: String,
}

/// A response, read whole.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The API's sentence for the owner.
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("status {}: no error field", self.status))
            .to_owned()
    }

    fn set_cookie(&self) -> Option<String> {
        self.headers
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().expect("ASCII cookie").to_owned())
    }

    /// The browser this login or setup response makes.
    fn browser(&self) -> Browser {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let cookie = self.set_cookie().expect("a session cookie");
        let token = cookie
            .split(';')
            .next()
            .and_then(|kv| kv.strip_prefix(&format!("{COOKIE}=")))
            .expect("the session cookie first")
            .to_owned();
        assert!(!token.is_empty());
        Browser {
            token,
            csrf: self.json()["csrf"].as_str().expect("csrf in the body").to_owned(),
        }
    }
}

/// What an unauthorised request must not have changed.
#[derive(Debug, PartialEq)]
struct Snapshot {
    devices: Vec<Device>,
    device_credentials: Vec<crate::store::Credential>,
    sessions: usize,
    audit: Vec<(String, String)>,
}

impl Fixture {
    async fn new() -> Fixture {
        Fixture::with_timeouts(IDLE, MAX).await
    }

    async fn with_timeouts(idle: Duration, max: Duration) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("d");
        let mut store = crate::store::open_or_init(&DataDir::new(&data_dir), None).unwrap();
        pki::ensure(&mut store, &data_dir, &pki::server_names(&[])).unwrap();
        let files = TlsFiles::in_dir(&data_dir);
        let broker = Broker::start(
            Listeners {
                tls: vec![],
                plain: vec![],
            },
            &files,
            Limits::default(),
            Arc::new(Credentials::new()),
            None,
        )
        .await
        .unwrap();
        let store = Arc::new(Mutex::new(store));
        let endpoint = MqttEndpoint {
            host: "localhost".into(),
            port: 8883,
            ca_cert: files.ca_cert.clone(),
        };
        let broker = Arc::new(broker);
        let broker_handle = broker.clone();
        let devices = Arc::new(Devices::new(store.clone(), broker.clone(), endpoint));
        let homeassistant = {
            let (store, devices) = (store.clone(), devices.clone());
            tokio::task::spawn_blocking(move || {
                crate::home::homeassistant::HomeAssistant::load(store, devices, broker).unwrap()
            })
            .await
            .unwrap()
        };
        let (auth, code) = {
            let (store, dir) = (store.clone(), data_dir.clone());
            tokio::task::spawn_blocking(move || {
                let auth = Auth::new(store, dir, idle, max).unwrap();
                let code = auth.prepare_setup().unwrap().expect("a first run");
                (auth, code)
            })
            .await
            .unwrap()
        };
        let auth = Arc::new(auth);
        let metrics = Arc::new(crate::web::metrics::Metrics {
            access: crate::web::metrics::MetricsAccess::Loopback,
            broker: broker_handle.clone(),
            devices: devices.clone(),
            counters: auth.counters.clone(),
            db_path: data_dir.join("hearth.db"),
            started: std::time::Instant::now(),
        });
        // The default rates, on a port of the system's choosing.
        let relay_config = crate::relay::RelayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: None,
            token_rate: (5, 20),
            address_rate: (20, 60),
        };
        let relay = Arc::new(crate::relay::Relay::new(
            store.clone(),
            Arc::new(crate::home::live::LiveState::new()),
            broker_handle,
            auth.clone(),
            relay_config,
            crate::supervisor::Supervisor::new(tokio_util::sync::CancellationToken::new()),
        ));
        let app = Arc::new(App {
            auth,
            devices,
            live: None,
            ca_cert: files.ca_cert,
            session_max: max,
            homeassistant: Some(Arc::new(homeassistant)),
            relay: Some(relay),
            keys: crate::safety::rotate::Rotator::new(store.clone()),
            key_path: Some(data_dir.join("master.key")),
            shutdown: tokio_util::sync::CancellationToken::new(),
            erased: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            metrics: Some(metrics),
        });
        Fixture {
            router: router(app),
            store,
            data_dir,
            setup_code: code.expose().to_owned(),
            _tmp: tmp,
        }
    }

    /// A request as a browser on this origin would send it.
    fn request(method: Method, path: &str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::ORIGIN, ORIGIN)
    }

    async fn send_from(&self, peer: SocketAddr, mut req: Request<Body>) -> Reply {
        req.extensions_mut().insert(Peer(peer));
        // A stuck handler (a lock taken twice, say) ends the run rather than
        // hanging it: a panic alone would not, as the runtime waits for the
        // stuck blocking thread when it drops.
        let Ok(response) = tokio::time::timeout(STUCK, self.router.clone().oneshot(req)).await else {
            // Straight to stderr: the harness would swallow `eprintln!`.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("no answer within {STUCK:?}: a handler is stuck\n").as_bytes(),
            );
            std::process::abort();
        };
        let response = response.expect("infallible");
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        self.send_from(addr(HOME), req).await
    }

    /// A request with a JSON body (or none) as `who`, with its CSRF token.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>, who: Option<&Browser>) -> Reply {
        let mut b = Fixture::request(method, path);
        if let Some(w) = who {
            b = b
                .header(header::COOKIE, format!("{COOKIE}={}", w.token))
                .header("x-csrf-token", &w.csrf);
        }
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        };
        self.send(req.unwrap()).await
    }

    async fn get(&self, path: &str, who: Option<&Browser>) -> Reply {
        self.call(Method::GET, path, None, who).await
    }

    async fn post_json(&self, path: &str, body: &Value, who: Option<&Browser>) -> Reply {
        self.call(Method::POST, path, Some(body), who).await
    }

    async fn setup_from(&self, peer: SocketAddr, code: &str, username: &str, password: &str) -> Reply {
        let body = json!({ "code": code, "username": username, "password": password });
        let req = Fixture::request(Method::POST, "/api/setup")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send_from(peer, req).await
    }

    async fn setup(&self, code: &str, username: &str, password: &str) -> Reply {
        self.setup_from(addr(HOME), code, username, password).await
    }

    /// Sets up the owner account; returns its first session.
    async fn owner(&self) -> Browser {
        self.setup(&self.setup_code, OWNER, PASSWORD).await.browser()
    }

    async fn login_from(
        &self,
        peer: SocketAddr,
        username: &str,
        password: &str,
        code: Option<&str>,
    ) -> Reply {
        let mut body = json!({ "username": username, "password": password });
        if let Some(c) = code {
            body["code"] = json!(c);
        }
        let req = Fixture::request(Method::POST, "/api/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send_from(peer, req).await
    }

    async fn login(&self, username: &str, password: &str, code: Option<&str>) -> Reply {
        self.login_from(addr(HOME), username, password, code).await
    }

    /// Whether `who`'s session still works.
    async fn alive(&self, who: &Browser) -> bool {
        let r = self.get("/api/session", Some(who)).await;
        match r.status {
            StatusCode::OK => true,
            StatusCode::UNAUTHORIZED => false,
            s => panic!("GET /api/session answered {s}"),
        }
    }

    fn add_pending(&self) -> DeviceId {
        let mut f = DeviceFields::new(DeviceKind::Bulb, "tasmota");
        f.topic = Some("lamp1".into());
        self.store.lock().unwrap().insert_device(&f).unwrap().id
    }

    fn add_adopted(&self) -> DeviceId {
        let mut f = DeviceFields::new(DeviceKind::Plug, "tasmota");
        f.status = DeviceStatus::Adopted;
        f.nickname = Some("Kettle".into());
        f.topic = Some("plug1".into());
        let (device, _) = self
            .store
            .lock()
            .unwrap()
            .insert_device_with_credential(
                DeviceId::generate().unwrap(),
                &f,
                MQTT_PASSWORD,
                &TokenHash::of("00112233445566778899aabbccddeeff"),
            )
            .unwrap();
        device.id
    }

    fn snapshot(&self) -> Snapshot {
        let store = self.store.lock().unwrap();
        let devices = store.devices().unwrap();
        let mut device_credentials = Vec::new();
        for d in &devices {
            device_credentials.extend(store.credentials_of(&d.id.principal(), MQTT_PASSWORD).unwrap());
        }
        Snapshot {
            devices,
            device_credentials,
            sessions: store.credentials_of_kind(crate::accounts::SESSION).unwrap().len(),
            audit: store
                .audit(1000)
                .unwrap()
                .into_iter()
                .map(|e| (e.event, e.detail))
                .collect(),
        }
    }

    fn audit_events(&self) -> Vec<String> {
        self.snapshot().audit.into_iter().map(|(e, _)| e).collect()
    }

    /// Every operation the OpenAPI document lists, as (method, path).
    async fn operations(&self) -> Vec<(Method, String)> {
        let doc = self.get("/api/openapi.json", None).await.json();
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("a method");
                ops.push((m, path.clone()));
            }
        }
        ops
    }
}

/// Routes anyone may call: the rest need a session.
fn public(method: &Method, path: &str) -> bool {
    matches!(
        (method.as_str(), path),
        ("GET", "/api/state") | ("POST", "/api/setup") | ("POST", "/api/login")
    )
}

/// A body that would be accepted, so a refusal is the guard's doing.
fn body_for(method: &Method, path: &str) -> Option<Value> {
    let v = match (method.as_str(), path.rsplit('/').next().unwrap_or("")) {
        ("POST", "password") => json!({ "current": PASSWORD, "new": NEW_PASSWORD }),
        ("POST", "confirm") => json!({ "code": "123456" }),
        ("POST", "reenroll") => json!({ "password": PASSWORD }),
        ("POST", "adopt") => json!({ "nickname": "Hall lamp" }),
        ("POST", "command") => json!({ "power": true }),
        ("PATCH", "homeassistant") => json!({ "share_device_details": true }),
        ("PATCH", _) => json!({ "nickname": "Renamed", "expose_ha": true }),
        _ => return None,
    };
    Some(v)
}

/// `path` with its `{id}` filled in: the pending device for adopt and
/// ignore, the adopted one for other device routes, `session` for sessions.
fn concrete(path: &str, pending: &DeviceId, adopted: &DeviceId, session: &str) -> String {
    let id = if path.starts_with("/api/sessions/") {
        session.to_owned()
    } else if path.ends_with("/adopt") || path.ends_with("/ignore") {
        pending.to_string()
    } else {
        adopted.to_string()
    };
    path.replace("{id}", &id)
}

/// The id of `who`'s own session, from the session list.
async fn session_id(f: &Fixture, who: &Browser) -> String {
    let list = f.get("/api/sessions", Some(who)).await.json();
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .and_then(|s| s["id"].as_str())
        .expect("the current session is listed")
        .to_owned()
}

fn assert_json_error(r: &Reply, status: StatusCode, contains: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let error = r.error();
    assert!(
        error.to_lowercase().contains(&contains.to_lowercase()),
        "error {error:?} should mention {contains:?}"
    );
}

// ---- first run ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_code_works_once_then_dies() {
    let f = Fixture::new().await;
    let file = f.data_dir.join(SETUP_CODE_FILE);
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&file).expect("the setup-code file exists before setup");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), f.setup_code);
    }
    let state = f.get("/api/state", None).await.json();
    assert_eq!(state["setup_needed"], true);
    assert_eq!(state["logged_in"], false);

    // Typed by hand: lower case, without dashes.
    let typed = f.setup_code.replace('-', "").to_lowercase();
    let r = f.setup(&typed, OWNER, PASSWORD).await;
    let owner = r.browser();
    assert_eq!(r.json()["username"], OWNER);
    assert!(!file.exists(), "the setup-code file outlives setup");
    let cookie = format!("{COOKIE}={}", owner.token);
    let req = Fixture::request(Method::GET, "/api/state")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let state = f.send(req).await.json();
    assert_eq!(state["setup_needed"], false);
    assert_eq!(state["logged_in"], true);

    // The same code, or any other, cannot make a second owner.
    for code in [f.setup_code.as_str(), "AAAA-BBBB-CCCC"] {
        let r = f.setup(code, "intruder", NEW_PASSWORD).await;
        assert_json_error(&r, StatusCode::CONFLICT, "already set up");
        assert!(r.set_cookie().is_none());
    }
    assert_eq!(f.store.lock().unwrap().owner_count().unwrap(), 1);
    assert!(!file.exists());
    assert!(f.alive(&owner).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_code_cannot_make_two_owners_at_once() {
    let f = Fixture::new().await;
    // Both requests carry the right code and race through the slow hash.
    let (a, b) = tokio::join!(
        f.setup_from(addr(1), &f.setup_code, "first", PASSWORD),
        f.setup_from(addr(2), &f.setup_code, "second", NEW_PASSWORD),
    );
    let ok = [&a, &b].iter().filter(|r| r.status == StatusCode::OK).count();
    assert_eq!(ok, 1, "statuses {} and {}", a.status, b.status);
    let refused = if a.status == StatusCode::OK { &b } else { &a };
    assert!(
        matches!(refused.status, StatusCode::CONFLICT | StatusCode::FORBIDDEN),
        "{}",
        refused.status
    );
    assert!(refused.set_cookie().is_none());
    assert_eq!(f.store.lock().unwrap().owner_count().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_setup_code_is_refused_and_throttled_per_address() {
    let f = Fixture::new().await;
    let file = f.data_dir.join(SETUP_CODE_FILE);
    for _ in 0..crate::accounts::throttle::FREE_FAILURES {
        let r = f.setup_from(addr(1), "AAAA-BBBB-CCCC", OWNER, PASSWORD).await;
        assert_json_error(&r, StatusCode::FORBIDDEN, "setup code is wrong");
        assert!(r.set_cookie().is_none());
    }
    assert_eq!(f.get("/api/state", None).await.json()["setup_needed"], true);
    assert!(file.exists());
    assert_eq!(f.audit_events(), vec!["setup_refused"; 5]);

    // That address now waits, even with the right code.
    let r = f.setup_from(addr(1), &f.setup_code, OWNER, PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert_eq!(r.json()["retry_after_secs"], wait);
    assert!(file.exists());

    // Another address is not held up by it.
    f.setup_from(addr(2), &f.setup_code, OWNER, PASSWORD)
        .await
        .browser();
    assert!(!file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_refuses_weak_passwords_and_keeps_the_code() {
    let f = Fixture::new().await;
    let cases = [
        ("short pass", "at least 12"),
        ("Password1234!", "common"),
        ("qwertyuiop123", "common"),
        ("Marguerite2024!", "username"),
    ];
    for (password, why) in cases {
        let r = f.setup(&f.setup_code, "marguerite", password).await;
        assert_json_error(&r, StatusCode::BAD_REQUEST, why);
        assert!(!r.error().contains(password), "the error echoes the password");
        assert!(r.set_cookie().is_none());
    }
    let r = f.setup(&f.setup_code, "", PASSWORD).await;
    assert_json_error(&r, StatusCode::BAD_REQUEST, "username");
    assert_eq!(f.store.lock().unwrap().owner_count().unwrap(), 0);
    assert!(f.data_dir.join(SETUP_CODE_FILE).exists());
    // A policy refusal is not a wrong code: nothing was throttled.
    f.owner().await;
}

// ---- login -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_does_not_tell_whether_the_user_exists() {
    let f = Fixture::new().await;
    f.owner().await;
    let unknown = f.login_from(addr(1), "nobody", PASSWORD, None).await;
    let wrong = f
        .login_from(addr(2), OWNER, "not the password at all", None)
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.body, unknown.body);
    for r in [&unknown, &wrong] {
        assert!(r.set_cookie().is_none());
        assert_eq!(r.json(), json!({ "error": "invalid username or password" }));
    }
    // Usernames are matched without regard to case or spaces around them.
    f.login(" Owner ", PASSWORD, None).await.browser();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_is_host_bound_secure_and_strict() {
    let f = Fixture::new().await;
    let setup = f.setup(&f.setup_code, OWNER, PASSWORD).await;
    let login = f.login(OWNER, PASSWORD, None).await;
    for r in [&setup, &login] {
        let cookie = r.set_cookie().expect("a cookie");
        let mut parts = cookie.split(';').map(str::trim);
        let (name, value) = parts.next().unwrap().split_once('=').unwrap();
        assert_eq!(name, "__Host-hearth");
        assert!(value.len() >= 22, "a 128-bit token");
        let attrs: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
        for want in ["secure", "httponly", "samesite=strict", "path=/"] {
            assert!(attrs.iter().any(|a| a == want), "{want} missing");
        }
        assert!(
            !attrs.iter().any(|a| a.starts_with("domain")),
            "a __Host- cookie has no Domain"
        );
        assert!(attrs.contains(&format!("max-age={}", MAX.as_secs())));
        // The token is never in the body; the CSRF token is, and differs.
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains(value));
        assert_ne!(r.json()["csrf"], value);
    }
    assert_ne!(setup.browser().token, login.browser().token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_is_throttled_per_account() {
    let f = Fixture::new().await;
    f.owner().await;
    // Five addresses, one wrong guess each: only the account's key fills.
    for i in 0..crate::accounts::throttle::FREE_FAILURES {
        let r = f
            .login_from(addr(i as u8 + 1), OWNER, "not the password at all", None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let last_failure = std::time::Instant::now();
    // A fresh address with the right password still waits.
    let r = f.login_from(addr(50), OWNER, PASSWORD, None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    assert!(r.set_cookie().is_none());
    // Other accounts are not held up by it.
    let r = f
        .login_from(addr(50), "somebody", "not the password at all", None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // The wait is short and ends; then the right password works.
    let wait = Duration::from_millis(1100).saturating_sub(last_failure.elapsed());
    tokio::time::sleep(wait).await;
    f.login_from(addr(50), OWNER, PASSWORD, None).await.browser();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_is_throttled_per_address() {
    let f = Fixture::new().await;
    f.owner().await;
    // One address guessing at many accounts.
    for i in 0..crate::accounts::throttle::FREE_FAILURES {
        let r = f.login_from(addr(1), &format!("guess{i}"), PASSWORD, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = f.login_from(addr(1), OWNER, PASSWORD, None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.json()["retry_after_secs"].as_u64().unwrap() >= 1);
    // The owner, elsewhere, is not locked out by it.
    f.login_from(addr(2), OWNER, PASSWORD, None).await.browser();
}

// ---- two-factor --------------------------------------------------------

/// Enrols `who` in TOTP; returns the secret, the step whose code confirmed
/// it, and the recovery codes.
async fn enrol(f: &Fixture, who: &Browser) -> (TotpSecret, u64, Vec<String>) {
    let r = f.post_json("/api/totp/enroll", &json!({}), Some(who)).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let text = v["secret"].as_str().unwrap();
    let uri = v["uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={text}")));
    let secret = TotpSecret::from_base32(text).unwrap();

    let qr = f.get("/api/totp/qr.svg", Some(who)).await;
    assert_eq!(qr.status, StatusCode::OK);
    assert_eq!(qr.headers[header::CONTENT_TYPE], "image/svg+xml");
    assert!(String::from_utf8_lossy(&qr.body).contains("<svg"));

    let step = unix_now() / totp::PERIOD;
    let r = f
        .post_json(
            "/api/totp/confirm",
            &json!({ "code": wrong_code(&secret, step) }),
            Some(who),
        )
        .await;
    assert_json_error(&r, StatusCode::BAD_REQUEST, "code is wrong");
    let r = f
        .post_json(
            "/api/totp/confirm",
            &json!({ "code": code(&secret, step) }),
            Some(who),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let codes: Vec<String> = r.json()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (secret, step, codes)
}

fn code(secret: &TotpSecret, step: u64) -> String {
    format!("{:06}", totp::code_at(secret, step))
}

/// Six digits that match no step near `step`.
fn wrong_code(secret: &TotpSecret, step: u64) -> String {
    let near: Vec<String> = (step.saturating_sub(2)..=step + 3)
        .map(|s| code(secret, s))
        .collect();
    (0..)
        .map(|n: u32| format!("{:06}", (n * 7919) % 1_000_000))
        .find(|c| !near.contains(c))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_window_and_replay() {
    let f = Fixture::new().await;
    let owner = f.owner().await;
    let (secret, confirmed, _) = enrol(&f, &owner).await;
    assert_eq!(
        f.get("/api/session", Some(&owner)).await.json()["totp_enabled"],
        true
    );
    assert!(f.audit_events().contains(&"totp_enrolled".to_owned()));
    // Failures below stay under the throttle's free allowance per key
    // (account and address), so every refusal here is the code's doing.

    // The password alone is not enough, and says so only to who knows it.
    let r = f.login(OWNER, PASSWORD, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["totp_required"], true);
    assert!(r.set_cookie().is_none());
    let unknown = f
        .login_from(addr(1), "nobody", "not the password at all", None)
        .await;
    let wrong = f
        .login_from(addr(2), OWNER, "not the password at all", None)
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body, unknown.body);
    // A right code with a wrong password is still a wrong password.
    let step = unix_now() / totp::PERIOD;
    let r = f
        .login_from(
            addr(3),
            OWNER,
            "not the password at all",
            Some(&code(&secret, step + 1)),
        )
        .await;
    assert_eq!(r.body, unknown.body);

    // Codes count one step either side of now. The server's clock may move
    // on a step after `step` is read; each case holds either way.
    let step = unix_now() / totp::PERIOD;
    let r = f.login(OWNER, PASSWORD, Some(&code(&secret, step + 3))).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a code from the future worked"
    );
    assert_eq!(r.json()["totp_required"], true);
    // The code that confirmed enrolment is spent.
    let r = f.login(OWNER, PASSWORD, Some(&code(&secret, confirmed))).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the enrolment code was replayed"
    );

    // The next step's code is in the window (clock skew) and works once.
    let next = code(&secret, step + 1);
    let second = f.login(OWNER, PASSWORD, Some(&next)).await.browser();
    assert!(f.alive(&second).await);
    let r = f.login(OWNER, PASSWORD, Some(&next)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "a TOTP code was replayed");
    assert_eq!(r.json()["totp_required"], true);
    assert!(r.set_cookie().is_none());
    // So is every earlier one, even inside the window.
    let r = f.login(OWNER, PASSWORD, Some(&code(&secret, step))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "an older TOTP code worked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_code_works_once() {
    let f = Fixture::new().await;
    let owner = f.owner().await;
    let (_, _, codes) = enrol(&f, &owner).await;
    assert_eq!(codes.len(), totp::RECOVERY_CODES);
    let distinct: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(distinct.len(), codes.len());

    // Typed by hand: upper case, spaces for dashes.
    let typed = codes[0].to_uppercase().replace('-', " ");
    f.login(OWNER, PASSWORD, Some(&typed)).await.browser();
    assert!(f.audit_events().contains(&"recovery_code_used".to_owned()));
    let r = f.login(OWNER, PASSWORD, Some(&codes[0])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "a recovery code worked twice");
    assert!(r.set_cookie().is_none());
    // It is not a password either.
    let r = f.login(OWNER, &codes[1], Some(&codes[1])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The others still work.
    f.login(OWNER, PASSWORD, Some(&codes[1])).await.browser();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_factor_moves_to_a_new_phone_only_with_the_password() {
    let f = Fixture::new().await;
    let owner = f.owner().await;
    let (old, _, old_codes) = enrol(&f, &owner).await;
    // Enrolling over it is refused: a stolen session must not swap it.
    let r = f.post_json("/api/totp/enroll", &json!({}), Some(&owner)).await;
    assert_json_error(&r, StatusCode::BAD_REQUEST, "set it up again with your password");
    let r = f
        .post_json(
            "/api/totp/reenroll",
            &json!({ "password": "not the password at all" }),
            Some(&owner),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(f.audit_events().contains(&"totp_reset".to_owned()));
    let r = f
        .post_json(
            "/api/totp/reenroll",
            &json!({ "password": PASSWORD }),
            Some(&owner),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let new = TotpSecret::from_base32(r.json()["secret"].as_str().unwrap()).unwrap();
    // Until confirmed, the old secret still logs in.
    let step = unix_now() / totp::PERIOD;
    let r = f
        .post_json(
            "/api/totp/confirm",
            &json!({ "code": code(&new, step) }),
            Some(&owner),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let new_codes = r.json()["recovery_codes"].as_array().unwrap().len();
    assert_eq!(new_codes, totp::RECOVERY_CODES);
    // The move is audited as a change of the second factor: the refusal
    // and the move, beside the one first enrolment.
    let events = f.audit_events();
    let count = |e: &str| events.iter().filter(|x| *x == e).count();
    assert_eq!((count("totp_enrolled"), count("totp_reset")), (1, 2));
    // The old phone and the old recovery codes are refused; the new ones work.
    let r = f.login(OWNER, PASSWORD, Some(&code(&old, step + 1))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = f.login(OWNER, PASSWORD, Some(&old_codes[0])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    f.login(OWNER, PASSWORD, Some(&code(&new, step + 1)))
        .await
        .browser();
}

// ---- sessions ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_makes_the_old_cookie_useless() {
    let f = Fixture::new().await;
    let owner = f.owner().await;
    let r = f.post_json("/api/logout", &json!({}), Some(&owner)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let clear = r.set_cookie().expect("the cookie is cleared");
    assert!(clear.starts_with(&format!("{COOKIE}=;")));
    assert!(clear.contains("Max-Age=0"));

    // A copy kept by an attacker is worth nothing.
    assert_eq!(
        f.get("/api/session", Some(&owner)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        f.get("/api/devices", Some(&owner)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = f.post_json("/api/totp/enroll", &json!({}), Some(&owner)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = f.post_json("/api/logout", &json!({}), Some(&owner)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(f.snapshot().sessions, 0);
    assert!(f.audit_events().contains(&"logout".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_session_ends_it_and_only_it() {
    let f = Fixture::new().await;
    let a = f.owner().await;
    let b = f.login(OWNER, PASSWORD, None).await.browser();
    let list = f.get("/api/sessions", Some(&a)).await.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    let b_id = session_id(&f, &b).await;
    assert_ne!(b_id, session_id(&f, &a).await);

    let path = format!("/api/sessions/{b_id}");
    let r = f.call(Method::DELETE, &path, None, Some(&a)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(!f.alive(&b).await, "a revoked session still works");
    assert!(f.alive(&a).await);
    assert!(f.audit_events().contains(&"session_revoked".to_owned()));

    // Gone, unknown and malformed ids are all just "no such session".
    for path in [
        path.as_str(),
        "/api/sessions/00000000000000000000000000000000",
        "/api/sessions/x",
    ] {
        let r = f.call(Method::DELETE, path, None, Some(&a)).await;
        assert_json_error(&r, StatusCode::NOT_FOUND, "no such session");
    }
    assert_eq!(f.snapshot().sessions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_names_actor_and_outcome_filters_and_exports() {
    let f = Fixture::new().await;
    let a = f.owner().await;
    let a_id = session_id(&f, &a).await;
    f.login_from(addr(7), OWNER, "not the password at all", None)
        .await;
    let b = f.login(OWNER, PASSWORD, None).await.browser();
    let b_id = session_id(&f, &b).await;
    let r = f
        .call(Method::DELETE, &format!("/api/sessions/{b_id}"), None, Some(&a))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    let all = f.get("/api/audit", Some(&a)).await.json();
    let all = all.as_array().unwrap();
    let find = |event: &str| all.iter().find(|e| e["event"] == event).unwrap().clone();
    let failed = find("login_failed");
    assert_eq!(
        (failed["actor"].as_str(), failed["outcome"].as_str()),
        (Some("visitor"), Some("refused"))
    );
    assert!(failed["detail"].as_str().unwrap().contains("192.0.2.7"));
    let revoked = find("session_revoked");
    assert_eq!(
        revoked["actor"],
        format!("session {a_id}"),
        "the revoking session acts"
    );
    assert_eq!(revoked["outcome"], "ok");
    assert!(revoked["detail"].as_str().unwrap().contains(&b_id));
    assert_eq!(find("login")["outcome"], "ok");
    // Each entry carries the words the dashboard shows for its type, from
    // the one list of types, which the API also serves.
    assert_eq!(find("session_revoked")["wording"], "Session revoked");
    let types = f.get("/api/audit/types", Some(&a)).await.json();
    let types = types.as_array().unwrap();
    assert_eq!(types.len(), crate::store::AuditKind::ALL.len());
    for e in all {
        assert!(
            types
                .iter()
                .any(|t| t["event"] == e["event"] && t["wording"] == e["wording"]),
            "{e}"
        );
    }
    assert_eq!(
        f.get("/api/audit/types", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let seqs: Vec<i64> = all.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first: {seqs:?}");

    // By type, by outcome, by time, and a limit.
    let only = f.get("/api/audit?event=login_failed", Some(&a)).await.json();
    assert_eq!(only.as_array().unwrap().len(), 1);
    let refused = f.get("/api/audit?outcome=refused", Some(&a)).await.json();
    assert!(
        refused
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["outcome"] == "refused")
    );
    assert!(!refused.as_array().unwrap().is_empty());
    let future = f.get("/api/audit?since=4102444800", Some(&a)).await.json();
    assert_eq!(future, json!([]));
    let past = f.get("/api/audit?until=1000000000", Some(&a)).await.json();
    assert_eq!(past, json!([]));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let window = f
        .get(
            &format!("/api/audit?since={}&until={}", now - 600, now + 600),
            Some(&a),
        )
        .await
        .json();
    assert_eq!(window.as_array().unwrap().len(), all.len());
    let one = f.get("/api/audit?limit=1", Some(&a)).await.json();
    assert_eq!(one.as_array().unwrap()[0]["seq"], all[0]["seq"]);
    // Unknown or malformed filters are a clear 400, never ignored.
    for bad in [
        "/api/audit?who=me",
        "/api/audit?since=yesterday",
        "/api/audit?limit=-1",
        "/api/audit?event=no_such_event",
    ] {
        assert_eq!(
            f.get(bad, Some(&a)).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }

    // Export: every kept event, oldest first, as a file; a session needed.
    let r = f.get("/api/audit/export", Some(&a)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers
            .get("content-disposition")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let exported = r.json();
    let exported = exported.as_array().unwrap();
    assert_eq!(exported.len(), all.len());
    assert_eq!(exported[0]["seq"], all[all.len() - 1]["seq"]);
    assert_eq!(
        f.get("/api/audit/export", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_can_be_required_at_the_next_login() {
    let f = Fixture::new().await;
    let a = f.owner().await;
    let b = f.login(OWNER, PASSWORD, None).await.browser();
    let r = f.post_json("/api/password/require", &json!({}), Some(&a)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["sessions_ended"], 1);
    assert!(!f.alive(&b).await, "other sessions end");
    assert!(f.alive(&a).await, "the asking session goes on");
    assert_eq!(f.get("/api/devices", Some(&a)).await.status, StatusCode::OK);
    assert!(f.audit_events().contains(&"password_change_required".to_owned()));

    // The next login: only the session, the password change and logout
    // answer until the password is changed.
    let c = f.login(OWNER, PASSWORD, None).await.browser();
    let me = f.get("/api/session", Some(&c)).await.json();
    assert_eq!(me["must_change_password"], true);
    for path in ["/api/devices", "/api/audit", "/api/privacy"] {
        let r = f.get(path, Some(&c)).await;
        assert_json_error(&r, StatusCode::FORBIDDEN, "change your password first");
    }
    let r = f.post_json("/api/lockdown", &json!({}), Some(&c)).await;
    assert_json_error(&r, StatusCode::FORBIDDEN, "change your password first");
    let r = f
        .post_json(
            "/api/password",
            &json!({ "current": PASSWORD, "new": NEW_PASSWORD }),
            Some(&c),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(f.get("/api/devices", Some(&c)).await.status, StatusCode::OK);
    let d = f.login(OWNER, NEW_PASSWORD, None).await.browser();
    assert_eq!(
        f.get("/api/session", Some(&d)).await.json()["must_change_password"],
        false
    );
    assert_eq!(f.get("/api/devices", Some(&d)).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_ends_other_sessions() {
    let f = Fixture::new().await;
    let a = f.owner().await;
    let b = f.login(OWNER, PASSWORD, None).await.browser();

    let r = f
        .post_json(
            "/api/password",
            &json!({ "current": "not the password at all", "new": NEW_PASSWORD }),
            Some(&a),
        )
        .await;
    assert_json_error(&r, StatusCode::FORBIDDEN, "current password is wrong");
    let r = f
        .post_json(
            "/api/password",
            &json!({ "current": PASSWORD, "new": "short" }),
            Some(&a),
        )
        .await;
    assert_json_error(&r, StatusCode::BAD_REQUEST, "at least 12");
    assert!(f.alive(&b).await, "a refused change ended a session");

    let r = f
        .post_json(
            "/api/password",
            &json!({ "current": PASSWORD, "new": NEW_PASSWORD }),
            Some(&a),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(!f.alive(&b).await, "another session outlived the password change");
    assert!(f.alive(&a).await, "the session that changed it ended");
    assert_eq!(f.snapshot().sessions, 1);

    assert_eq!(
        f.login(OWNER, PASSWORD, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    f.login(OWNER, NEW_PASSWORD, None).await.browser();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_absolute_timeouts_end_sessions() {
    let f = Fixture::with_timeouts(Duration::from_millis(400), MAX).await;
    let owner = f.owner().await;
    assert!(f.alive(&owner).await);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!f.alive(&owner).await, "an idle session still works");
    assert_eq!(f.snapshot().sessions, 0);

    let f = Fixture::with_timeouts(IDLE, Duration::from_millis(900)).await;
    let owner = f.owner().await;
    // In use all along, it still ends at its absolute expiry.
    let mut alive_at_end = true;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        alive_at_end = f.alive(&owner).await;
    }
    assert!(!alive_at_end, "a session outlived its absolute expiry");
}

// ---- the guards on every route -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_changing_route_needs_a_session() {
    let f = Fixture::new().await;
    let owner = f.owner().await;
    let own_id = session_id(&f, &owner).await;
    let (pending, adopted) = (f.add_pending(), f.add_adopted());
    let before = f.snapshot();

    let ops = f.operations().await;
    let guarded: Vec<_> = ops.iter().filter(|(m, p)| !public(m, p)).collect();
    assert!(guarded.len() >= 23, "only {} guarded operations", guarded.len());
    assert!(
        guarded.iter().filter(|(m, _)| *m != Method::GET).count() >= 15,
        "state-changing routes missing from the document"
    );
    for (method, path) in guarded {
        let uri = concrete(path, &pending, &adopted, &own_id);
        let body = body_for(method, path);
        // No cookie; a made-up token; the real token under another name;
        // the CSRF token alone.
        let cookies = [
            None,
            Some(format!("{COOKIE}=00000000000000000000000000000000")),
            Some(format!("hearth={}", owner.token)),
            Some(format!("{COOKIE}={}", owner.csrf)),
        ];
        for cookie in cookies {
            let mut b = Fixture::request(method.clone(), &uri).header("x-csrf-token", &owner.csrf);
            if let Some(c) = &cookie {
                b = b.header(header::COOKIE, c);
            }
            let req = match &body {
                Some(v) => b
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(v.to_string())),
                None => b.body(Body::empty()),
            };
            let r = f.send(req.unwrap()).await;
            assert_json_error(&r, StatusCode::UNAUTHORIZED, "not logged in");
            assert!(r.set_cookie().is_none());
        }
    }
    assert_eq!(
        f.snapshot(),
        before,
        "an unauthenticated request changed something"
    );
    assert!(f.alive(&owner).await);
    // No enrolment was started either.
    let r = f.get("/api/totp/qr.svg", Some(&owner)).await;
    assert_json_error(&r, StatusCode::BAD_REQUEST, "start enrolment first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_changing_route_needs_the_csrf_token_and_same_origin() {
    let f = Fixture::new().await;
    let a = f.owner().await;
    let b = f.login(OWNER, PASSWORD, None).await.browser();
    let b_id = session_id(&f, &b).await;
    assert_ne!(a.csrf, b.csrf);
    let (pending, adopted) = (f.add_pending(), f.add_adopted());
    let before = f.snapshot();

    let ops = f.operations().await;
    let changing: Vec<_> = ops
        .iter()
        .filter(|(m, p)| *m != Method::GET && !public(m, p))
        .collect();
    assert!(
        changing.len() >= 15,
        "only {} state-changing operations",
        changing.len()
    );
    // (CSRF header, Origin) pairs that must be refused.
    let bad = [
        (None, Some(ORIGIN)),
        (Some(""), Some(ORIGIN)),
        (Some("0000"), Some(ORIGIN)),
        (Some(b.csrf.as_str()), Some(ORIGIN)),
        (Some(a.token.as_str()), Some(ORIGIN)),
        (Some(a.csrf.as_str()), Some("https://evil.example")),
        (Some(a.csrf.as_str()), Some("http://hearth.test")),
        (Some(a.csrf.as_str()), Some("https://hearth.test.evil.example")),
        (Some(a.csrf.as_str()), Some("null")),
    ];
    for (method, path) in changing {
        // Revoking b's session would show if the guard let it through.
        let uri = concrete(path, &pending, &adopted, &b_id);
        let body = body_for(method, path);
        for (csrf, origin) in &bad {
            let mut req = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .header(header::HOST, HOST)
                .header(header::COOKIE, format!("{COOKIE}={}", a.token));
            if let Some(t) = csrf {
                req = req.header("x-csrf-token", *t);
            }
            if let Some(o) = origin {
                req = req.header(header::ORIGIN, *o);
            }
            let req = match &body {
                Some(v) => req
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(v.to_string())),
                None => req.body(Body::empty()),
            };
            let r = f.send(req.unwrap()).await;
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{method} {path} with csrf {:?} origin {origin:?}",
                csrf.map(|c| c.len())
            );
            assert!(r.error().contains("CSRF") || r.error().contains("cross-origin"));
        }
    }
    assert_eq!(f.snapshot(), before, "a forged request changed something");
    assert!(f.alive(&a).await && f.alive(&b).await);
    let r = f.get("/api/totp/qr.svg", Some(&a)).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "a forged request started enrolment"
    );

    // The same requests with the right token go through.
    let r = f
        .call(
            Method::POST,
            &format!("/api/devices/{pending}/ignore"),
            None,
            Some(&a),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = f
        .call(Method::DELETE, &format!("/api/sessions/{b_id}"), None, Some(&a))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(!f.alive(&b).await);
    assert!(f.store.lock().unwrap().device(&pending).unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_and_login_refuse_other_origins() {
    let f = Fixture::new().await;
    for (path, body) in [
        (
            "/api/setup",
            json!({ "code": f.setup_code, "username": OWNER, "password": PASSWORD }),
        ),
        ("/api/login", json!({ "username": OWNER, "password": PASSWORD })),
    ] {
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::ORIGIN, "https://evil.example")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let r = f.send(req).await;
        assert_json_error(&r, StatusCode::FORBIDDEN, "cross-origin");
        assert!(r.set_cookie().is_none());
    }
    assert_eq!(f.store.lock().unwrap().owner_count().unwrap(), 0);
    // The refused setup did not spend the code.
    f.owner().await;
}

// ---- bodies ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused() {
    let f = Fixture::new().await;
    let owner = f.owner().await;
    let adopted = f.add_adopted();
    let before = f.snapshot();
    let big = "a".repeat(MAX_BODY + 1);
    let cases = [
        (
            Method::POST,
            "/api/login".to_owned(),
            json!({ "username": OWNER, "password": big }),
        ),
        (
            Method::PATCH,
            format!("/api/devices/{adopted}"),
            json!({ "nickname": big }),
        ),
        (
            Method::POST,
            "/api/password".to_owned(),
            json!({ "current": PASSWORD, "new": big }),
        ),
    ];
    for (method, path, body) in cases {
        let r = f.call(method.clone(), &path, Some(&body), Some(&owner)).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{method} {path}");
        assert!(!r.error().is_empty());
    }
    // Without a Content-Length, the limit holds as the body streams in.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..20).map(|_| Ok(vec![b' '; 1024])).collect();
    let req = Fixture::request(Method::POST, "/api/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    let r = f.send(req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(f.snapshot(), before);

    // Just under the limit is read (and refused on its merits).
    let mut body = json!({ "code": "AAAA-BBBB-CCCC", "username": OWNER, "password": "" });
    let room = MAX_BODY - body.to_string().len();
    body["password"] = json!("p".repeat(room));
    assert_eq!(body.to_string().len(), MAX_BODY);
    let req = Fixture::request(Method::POST, "/api/setup")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    assert_eq!(f.send(req).await.status, StatusCode::CONFLICT);
    // The server is still answering.
    assert!(f.alive(&owner).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_and_malformed_bodies_are_refused() {
    let f = Fixture::new().await;
    let r = f
        .post_json(
            "/api/setup",
            &json!({ "code": f.setup_code, "username": OWNER, "password": PASSWORD, "admin": true }),
            None,
        )
        .await;
    assert!(
        matches!(
            r.status,
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
        ),
        "{}",
        r.status
    );
    assert!(r.error().contains("unknown field `admin`"), "{}", r.error());
    assert_eq!(f.store.lock().unwrap().owner_count().unwrap(), 0);

    let owner = f.owner().await;
    let adopted = f.add_adopted();
    let before = f.snapshot();
    let cases = [
        (
            Method::POST,
            "/api/login".to_owned(),
            json!({ "username": OWNER, "password": PASSWORD, "remember": true }),
            "remember",
        ),
        (
            Method::POST,
            "/api/password".to_owned(),
            json!({ "current": PASSWORD, "new": NEW_PASSWORD, "others": "keep" }),
            "others",
        ),
        // A status cannot be set through an update.
        (
            Method::PATCH,
            format!("/api/devices/{adopted}"),
            json!({ "nickname": "Renamed", "status": "pending" }),
            "status",
        ),
        (
            Method::POST,
            format!("/api/devices/{adopted}/command"),
            json!({ "power": true, "topic": "cmnd/other/POWER" }),
            "topic",
        ),
    ];
    for (method, path, body, field) in cases {
        let r = f.call(method.clone(), &path, Some(&body), Some(&owner)).await;
        assert!(
            matches!(
                r.status,
                StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
            ),
            "{method} {path}: {}",
            r.status
        );
        assert!(
            r.error().contains(&format!("unknown field `{field}`")),
            "{method} {path}: {}",
            r.error()
        );
    }
    assert_eq!(f.snapshot(), before);

    // Not JSON, or not said to be JSON.
    let req = Fixture::request(Method::POST, "/api/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"username\":"))
        .unwrap();
    let r = f.send(req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!r.error().is_empty());
    let req = Fixture::request(Method::POST, "/api/login")
        .body(Body::from(
            json!({ "username": OWNER, "password": PASSWORD }).to_string(),
        ))
        .unwrap();
    let r = f.send(req).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(r.error().to_lowercase().contains("content-type"));
}

// ---- headers and the document ------------------------------------------

fn check_security_headers(what: &str, r: &Reply) {
    let h = &r.headers;
    let get = |name: &str| {
        h.get(name)
            .unwrap_or_else(|| panic!("{what}: no {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let hsts = get("strict-transport-security");
    let max_age: u64 = hsts
        .split(';')
        .find_map(|p| p.trim().strip_prefix("max-age="))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: HSTS {hsts:?}"));
    assert!(max_age >= 180 * 24 * 3600, "{what}: HSTS max-age {max_age}");
    let csp = get("content-security-policy");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-eval"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(csp.contains("default-src 'self'"), "{what}: {csp}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    assert!(!h.contains_key(header::SERVER), "{what}: a Server header");
    assert!(!h.contains_key("x-powered-by"), "{what}: X-Powered-By");
    for (name, value) in h {
        let v = value.to_str().unwrap_or("");
        assert!(
            !v.contains(env!("CARGO_PKG_VERSION")) && !v.to_lowercase().contains("axum"),
            "{what}: {name} carries a version banner"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let f = Fixture::new().await;
    let mut replies = vec![
        ("GET /", f.get("/", None).await),
        ("GET /api/state", f.get("/api/state", None).await),
        ("GET /api/openapi.json", f.get("/api/openapi.json", None).await),
        ("GET /ca.pem", f.get("/ca.pem", None).await),
        ("GET /nowhere", f.get("/nowhere", None).await),
        ("GET /api/nowhere", f.get("/api/nowhere", None).await),
        ("GET /api/devices", f.get("/api/devices", None).await),
        ("GET /api/login", f.get("/api/login", None).await),
        (
            "POST /api/setup wrong code",
            f.setup_from(addr(1), "AAAA-BBBB-CCCC", OWNER, PASSWORD).await,
        ),
        (
            "POST /api/login unknown field",
            f.post_json("/api/login", &json!({ "x": 1 }), None).await,
        ),
        (
            "POST /api/login too big",
            f.post_json("/api/login", &json!({ "x": "a".repeat(MAX_BODY) }), None)
                .await,
        ),
    ];
    let owner = f.owner().await;
    replies.push(("GET /api/devices", f.get("/api/devices", Some(&owner)).await));
    replies.push(("GET /api/privacy", f.get("/api/privacy", Some(&owner)).await));
    let head = Fixture::request(Method::HEAD, "/api/state")
        .body(Body::empty())
        .unwrap();
    replies.push(("HEAD /api/state", f.send(head).await));
    let forged = Fixture::request(Method::POST, "/api/logout")
        .header(header::COOKIE, format!("{COOKIE}={}", owner.token))
        .body(Body::empty())
        .unwrap();
    replies.push(("POST /api/logout without CSRF", f.send(forged).await));
    replies.push((
        "POST /api/logout",
        f.post_json("/api/logout", &json!({}), Some(&owner)).await,
    ));

    let statuses: std::collections::HashSet<u16> = replies.iter().map(|(_, r)| r.status.as_u16()).collect();
    for s in [200, 204, 401, 403, 404, 405, 413, 422] {
        assert!(statuses.contains(&s), "no {s} among the responses checked");
    }
    for (what, r) in &replies {
        check_security_headers(what, r);
        if what.contains(" /api/") {
            assert_eq!(r.headers[header::CACHE_CONTROL], "no-store", "{what}");
        }
    }
}

// ---- Home Assistant ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_connection_is_shown_once_rotated_and_turned_off() {
    let f = Fixture::new().await;
    let owner = f.owner().await;
    let base = "/api/integrations/homeassistant";
    let st = f.get(base, Some(&owner)).await.json();
    assert_eq!(
        (st["enabled"].as_bool(), st["exposed"].as_u64()),
        (Some(false), Some(0))
    );
    assert_eq!(st["settings"]["share_device_details"], false);
    assert_eq!(st["ca_cert_url"], "/ca.pem");
    assert!(st.get("password").is_none());

    let r = f
        .call(Method::POST, &format!("{base}/enable"), None, Some(&owner))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    let first = r.json();
    assert_eq!(first["mqtt"]["username"], "homeassistant");
    assert_eq!(first["discovery_prefix"], "homeassistant");
    let password = first["mqtt"]["password"].as_str().unwrap().to_owned();
    assert!(password.len() == 32 && password.bytes().all(|b| b.is_ascii_hexdigit()));
    // Never again: not in the status, and a second enable hands out none.
    let st = f.get(base, Some(&owner)).await;
    assert!(!String::from_utf8_lossy(&st.body).contains(&password));
    assert_eq!(st.json()["enabled"], true);
    let again = f
        .call(Method::POST, &format!("{base}/enable"), None, Some(&owner))
        .await;
    assert_json_error(&again, StatusCode::BAD_REQUEST, "rotate");
    assert!(again.json().get("mqtt").is_none());

    let rotated = f
        .call(Method::POST, &format!("{base}/rotate"), None, Some(&owner))
        .await
        .json();
    assert_ne!(rotated["mqtt"]["password"], password.as_str());

    let off = f
        .call(Method::POST, &format!("{base}/disable"), None, Some(&owner))
        .await
        .json();
    assert_eq!(off["was_enabled"], true);
    assert_eq!(f.get(base, Some(&owner)).await.json()["enabled"], false);
    let rotate_off = f
        .call(Method::POST, &format!("{base}/rotate"), None, Some(&owner))
        .await;
    assert_json_error(&rotate_off, StatusCode::NOT_FOUND, "turn it on first");
    let events = f.audit_events();
    for e in [
        "homeassistant_enabled",
        "homeassistant_rotated",
        "homeassistant_disabled",
    ] {
        assert!(events.iter().any(|x| x == e), "{e} not audited: {events:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_settings_change_and_show_on_the_privacy_page() {
    let f = Fixture::new().await;
    let owner = f.owner().await;
    let base = "/api/integrations/homeassistant";
    let privacy = f.get("/api/privacy", Some(&owner)).await.json();
    assert_eq!(privacy["shared"][0]["with"], "Home Assistant");
    assert_eq!(privacy["shared"][0]["enabled"], false);

    let r = f
        .call(
            Method::PATCH,
            base,
            Some(&json!({ "share_device_details": true, "discovery": "component" })),
            Some(&owner),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json(),
        json!({ "share_device_details": true, "discovery": "component" })
    );
    assert!(f.audit_events().iter().any(|e| e == "homeassistant_settings"));
    for bad in [
        json!({ "share_everything": true }),
        json!({ "discovery": "yaml" }),
        json!({ "share_device_details": "yes" }),
    ] {
        let r = f.call(Method::PATCH, base, Some(&bad), Some(&owner)).await;
        assert!(r.status.is_client_error(), "{bad}: {}", r.status);
    }
    let st = f.get(base, Some(&owner)).await.json();
    assert_eq!(st["settings"]["discovery"], "component");

    f.call(Method::POST, &format!("{base}/enable"), None, Some(&owner))
        .await;
    let privacy = f.get("/api/privacy", Some(&owner)).await.json();
    let line = &privacy["shared"][0];
    assert_eq!(
        (line["enabled"].as_bool(), line["share_device_details"].as_bool()),
        (Some(true), Some(true))
    );
    assert!(line["what"].as_str().unwrap().contains("firmware too"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_the_routes() {
    let f = Fixture::new().await;
    let r = f.get("/api/openapi.json", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_ne!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let ops: std::collections::HashSet<(String, String)> = f
        .operations()
        .await
        .into_iter()
        .map(|(m, p)| (m.to_string(), p))
        .collect();
    let want = [
        ("GET", "/api/state"),
        ("POST", "/api/setup"),
        ("POST", "/api/login"),
        ("POST", "/api/logout"),
        ("GET", "/api/session"),
        ("POST", "/api/password"),
        ("POST", "/api/totp/enroll"),
        ("POST", "/api/totp/reenroll"),
        ("POST", "/api/password/require"),
        ("GET", "/api/totp/qr.svg"),
        ("POST", "/api/totp/confirm"),
        ("GET", "/api/sessions"),
        ("DELETE", "/api/sessions/{id}"),
        ("GET", "/api/audit"),
        ("GET", "/api/audit/verify"),
        ("GET", "/api/audit/export"),
        ("GET", "/api/audit/types"),
        ("POST", "/api/lockdown"),
        ("GET", "/api/keys"),
        ("POST", "/api/keys/rotate"),
        ("POST", "/api/backup"),
        ("POST", "/api/erase"),
        ("GET", "/api/warnings"),
        ("POST", "/api/warnings/{id}/acknowledge"),
        ("GET", "/api/privacy"),
        ("GET", "/api/devices"),
        ("PATCH", "/api/devices/{id}"),
        ("DELETE", "/api/devices/{id}"),
        ("POST", "/api/devices/{id}/adopt"),
        ("POST", "/api/devices/{id}/ignore"),
        ("POST", "/api/devices/{id}/command"),
        ("POST", "/api/devices/{id}/rotate"),
        ("GET", "/api/events"),
        ("GET", "/api/integrations/homeassistant"),
        ("PATCH", "/api/integrations/homeassistant"),
        ("POST", "/api/integrations/homeassistant/enable"),
        ("POST", "/api/integrations/homeassistant/rotate"),
        ("POST", "/api/integrations/homeassistant/disable"),
        ("GET", "/api/relay"),
        ("POST", "/api/relay/enable"),
        ("POST", "/api/relay/disable"),
        ("POST", "/api/relay/clients"),
        ("DELETE", "/api/relay/clients/{id}"),
        ("DELETE", "/api/relay/links/{id}"),
    ];
    for (m, p) in want {
        assert!(
            ops.contains(&(m.to_owned(), p.to_owned())),
            "{m} {p} is not in the document"
        );
    }
    assert_eq!(
        ops.len(),
        want.len(),
        "the document lists routes not checked here"
    );
    // Every operation says what it answers.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
        }
    }
}

// ---- metrics -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_counts_for_loopback_only_by_default() {
    let f = Fixture::new().await;
    let _owner = f.owner().await;
    assert_eq!(
        f.login(OWNER, "not the password", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    f.login(OWNER, PASSWORD, None).await.browser();
    let scrape = |peer: SocketAddr| {
        let req = Fixture::request(Method::GET, "/metrics")
            .body(Body::empty())
            .unwrap();
        f.send_from(peer, req)
    };
    // From the LAN: refused, saying how to open it.
    let r = scrape(addr(HOME)).await;
    assert_json_error(&r, StatusCode::FORBIDDEN, "web.metrics");
    // From this hub, over IPv4 or IPv6.
    for peer in ["127.0.0.1:40000", "[::1]:40000"] {
        let r = scrape(peer.parse().unwrap()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            r.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        let text = String::from_utf8(r.body).unwrap();
        for line in [
            "hearth_logins_total 1",
            "hearth_login_failures_total 1",
            "hearth_relay_calls_total 0",
            "hearth_mqtt_connections 0",
            "hearth_devices{kind=\"bulb\",state=\"online\"} 0",
            "hearth_mqtt_acl_denied_total{action=\"publish\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // Every sample is a name, fixed labels and a number.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = l.rsplit_once(' ').unwrap();
            assert!(value.parse::<u64>().is_ok(), "{l}");
            assert!(series.starts_with("hearth_"), "{l}");
        }
        let store = text
            .lines()
            .find(|l| l.starts_with("hearth_store_bytes "))
            .unwrap();
        assert!(
            store.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap() > 4096,
            "{store}"
        );
    }
}
