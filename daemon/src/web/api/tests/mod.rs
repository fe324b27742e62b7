//! Handler tests for the dashboard API: requests go straight into
//! [`router`] with `oneshot`, with the server's [`Peer`] extension added as
//! the accept loop would. No socket is opened for HTTP.
//!
//! argon2id is slow in debug builds, so each test logs in only as often as
//! its point needs.

mod account;
mod audit;
mod guards;
mod homeassistant;
mod matter;
mod metrics;
mod openapi;
mod sessions;
mod warnings;

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
use crate::broker::Broker;
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
    /// The Matter bridge, when the fixture runs one.
    matter: Option<Arc<crate::matter::Matter>>,
    /// Stops the Matter thread, if one runs, when the fixture goes.
    _matter_stop: Option<tokio_util::sync::DropGuard>,
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
        Fixture::build(idle, max, false).await
    }

    /// With a Matter bridge running, on a loopback UDP port of the
    /// system's choosing.
    async fn with_matter() -> Fixture {
        Fixture::build(IDLE, MAX, true).await
    }

    async fn build(idle: Duration, max: Duration, with_matter: bool) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("d");
        let mut store = crate::store::open_or_init(&DataDir::new(&data_dir), None).unwrap();
        pki::ensure(&mut store, &data_dir, &pki::server_names(&[])).unwrap();
        let files = TlsFiles::in_dir(&data_dir);
        let broker = Broker::listening_nowhere(&files).await;
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
            dns: None,
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
        let (matter, matter_stop) = if with_matter {
            let stop = tokio_util::sync::CancellationToken::new();
            let socket = std::net::UdpSocket::bind("[::1]:0").unwrap();
            let (publish, _) = tokio::sync::watch::channel(Vec::new());
            let matter = crate::matter::Matter::start(
                store.clone(),
                devices.clone(),
                Arc::new(crate::home::live::LiveState::new()),
                socket,
                publish,
                &crate::supervisor::Supervisor::new(stop.clone()),
            )
            .unwrap();
            (Some(matter), Some(stop.drop_guard()))
        } else {
            (None, None)
        };
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
            matter: matter.clone(),
            dns: None,
        });
        Fixture {
            router: router(app),
            store,
            data_dir,
            setup_code: code.expose().to_owned(),
            matter,
            _matter_stop: matter_stop,
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
/// ignore, the adopted one for other device routes, `session` for sessions;
/// a Matter controller's `{index}` is 1, the first a controller gets.
fn concrete(path: &str, pending: &DeviceId, adopted: &DeviceId, session: &str) -> String {
    let id = if path.starts_with("/api/sessions/") {
        session.to_owned()
    } else if path.ends_with("/adopt") || path.ends_with("/ignore") {
        pending.to_string()
    } else {
        adopted.to_string()
    };
    path.replace("{id}", &id).replace("{index}", "1")
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
