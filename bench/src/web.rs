//! The dashboard benchmark: hearth's HTTPS server against Debian's nginx on
//! loopback, with the same certificate (hearth's), the same files (a copy of
//! web-ui/), the same security headers (copied from hearth's own answer) and
//! the same client: hyper's HTTP/1.1 client over tokio-rustls, trusting only
//! hearth's CA and verifying the certificate against 127.0.0.1, offering the
//! cipher suites in a browser's order and never resuming a TLS session.
//!
//! Per round:
//! - static pages: every client fetches the page set (index.html and every
//!   file it loads, found by following its `href`, `src` and `import`s) over
//!   one keep-alive connection, again and again; requests/s, p50/p99 per
//!   request and server CPU per request, hearth and nginx alternating;
//! - fresh connections: TCP connect, full TLS handshake, one GET of the
//!   index, close;
//! - API: the owner is set up through `/api/setup` and logs in once (timed:
//!   argon2id is deliberately slow), 100 devices are added through the admin
//!   socket, then `GET /api/devices` (and `GET /api/session`, the cheapest
//!   route behind a session, for comparison) over keep-alive connections;
//! - live state: one simulated device (`hearth-sim device`) is connected, and
//!   the clock runs from a `POST .../command` toggling its power to the
//!   matching `device` event on `/api/events`, with one open stream and then
//!   with 50;
//! - memory: hearth idle with the dashboard and with `[web] enabled =
//!   false`, after the static load, with 100 devices, with 50 open event
//!   streams; nginx (master and worker) idle and after the static load.
//!
//! Every phase stops at a request count or a wall time, whichever comes
//! first, and every wait has a deadline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hearth::home::vendor::Profile;
use hearth::store::DeviceKind;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::measure::{cpu_secs, percentile_us, rss_mib};
use crate::start::{self, Process, free_port, wait_for_file, wait_for_port};

/// Concurrent clients in the static, handshake and API phases.
const CLIENTS: [usize; 2] = [1, 16];
/// A measured phase ends at this wall time or request count, whichever
/// comes first.
const PHASE: Duration = Duration::from_secs(4);
const PHASE_REQUESTS: usize = 200_000;
const PHASE_HANDSHAKES: usize = 5_000;
/// Devices in the store for the API phase (the simulated one comes on top).
const DEVICES: usize = 100;
/// Power toggles timed with one open event stream, and with `STREAMS`.
const TOGGLES: usize = 50;
const STREAMS: usize = 50;
const FANOUT_TOGGLES: usize = 20;
/// Any single request, handshake or event must arrive within this.
const DEADLINE: Duration = Duration::from_secs(10);
/// Memory is read after this long without load.
const SETTLE: Duration = Duration::from_secs(2);

const OWNER: &str = "owner";
const PASSWORD: &str = "bench owner passphrase 7341";

type Error = Box<dyn std::error::Error + Send + Sync>;
type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A server to measure: where it listens, whom to trust, which processes
/// are it (for CPU and memory).
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    pids: Vec<u32>,
}

impl Target {
    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn cpu(&self) -> f64 {
        self.pids.iter().map(|p| cpu_secs(*p)).sum()
    }

    fn rss(&self) -> f64 {
        self.pids.iter().map(|p| rss_mib(*p)).sum()
    }

    /// Proportional set size: pages shared between nginx's master and
    /// worker counted once, not twice as in the sum of their RSS.
    fn pss(&self) -> f64 {
        self.pids.iter().map(|p| pss_mib(*p)).sum()
    }
}

fn pss_mib(pid: u32) -> f64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    rollup
        .lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// An owner session: the cookie to send and the CSRF token.
#[derive(Clone)]
struct Session {
    cookie: String,
    csrf: String,
}

/// One file of the page set and its size, which every answer must match.
#[derive(Clone)]
struct Page {
    path: String,
    len: Option<usize>,
}

/// The client's TLS: hearth's CA as the only root, a browser's order of
/// cipher suites (AES-128-GCM first, so that hearth, which picks by its own
/// order, and nginx, which follows the client's, agree), HTTP/1.1 by ALPN,
/// and no resumption, so every new connection is a full handshake.
fn client_tls(ca: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::crypto::ring::{cipher_suite as cs, default_provider};
    let pem = std::fs::read(ca).expect("read hearth's CA");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("CA PEM")).expect("CA");
    }
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..default_provider()
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// TCP, TLS (verified against 127.0.0.1) and an HTTP/1.1 connection.
async fn connect(t: &Target) -> Result<(Sender, String), Error> {
    let tcp = tokio::net::TcpStream::connect(t.addr).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(t.tls.clone())
        .connect(ServerName::from(t.addr.ip()), tcp)
        .await?;
    let (_, c) = tls.get_ref();
    let negotiated = format!(
        "{:?}, {:?}, {:?}",
        c.protocol_version()
            .unwrap_or(rustls::ProtocolVersion::Unknown(0)),
        c.negotiated_cipher_suite().map(|s| s.suite()),
        c.negotiated_key_exchange_group().map(|g| g.name()),
    );
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, negotiated))
}

fn request(
    t: &Target,
    method: Method,
    path: &str,
    session: Option<&Session>,
    body: Option<Value>,
) -> Request<Full<Bytes>> {
    let mut r = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(header::HOST, t.host());
    if let Some(s) = session {
        r = r.header(header::COOKIE, &s.cookie);
        if method != Method::GET {
            r = r.header("x-csrf-token", &s.csrf);
        }
    }
    if method != Method::GET {
        // What a browser sends with a fetch from the dashboard's own page.
        r = r.header(header::ORIGIN, format!("https://{}", t.host()));
    }
    let body = match body {
        Some(v) => {
            r = r.header(header::CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(v.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    r.body(body).expect("request")
}

/// Sends a request and reads the whole answer.
async fn send(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, HeaderMap, Bytes), Error> {
    tokio::time::timeout(DEADLINE, async {
        sender.ready().await?;
        let (parts, body) = sender.send_request(req).await?.into_parts();
        let bytes = body.collect().await?.to_bytes();
        Ok((parts.status, parts.headers, bytes))
    })
    .await
    .map_err(|_| Error::from("no answer in time"))?
}

/// index.html and everything it loads: its `href="/..."` and `src="/..."`
/// and, through the modules, every `import ... from './x.js'`.
fn page_set(dir: &Path) -> Vec<Page> {
    let file = |path: &str| {
        let name = if path == "/" {
            "index.html"
        } else {
            path.trim_start_matches('/')
        };
        std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let mut paths = vec!["/".to_owned()];
    let mut i = 0;
    while i < paths.len() {
        let text = String::from_utf8(file(&paths[i])).expect("UTF-8");
        let mut found = Vec::new();
        for attr in ["href=\"/", "src=\"/"] {
            for part in text.split(attr).skip(1) {
                found.push(format!("/{}", part.split('"').next().unwrap_or("")));
            }
        }
        for line in text.lines().map(str::trim_start) {
            if !line.starts_with("import ") {
                continue;
            }
            if let Some(m) = line.split("'./").nth(1).and_then(|r| r.split('\'').next()) {
                found.push(format!("/{m}"));
            }
        }
        for p in found {
            if p.len() > 1 && !paths.contains(&p) {
                paths.push(p);
            }
        }
        i += 1;
    }
    paths
        .into_iter()
        .map(|path| Page {
            len: Some(file(&path).len()),
            path,
        })
        .collect()
}

/// What a measured phase gives.
#[derive(Default)]
struct Phase {
    done: usize,
    errors: usize,
    secs: f64,
    lat: Vec<Duration>,
    cpu_us_per_request: f64,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.done as f64 / self.secs
    }
}

/// `clients` connections, each fetching `pages` in turn over keep-alive;
/// after one unmeasured pass per connection, until `PHASE` or
/// `PHASE_REQUESTS`.
async fn keepalive(t: &Target, pages: &[Page], session: Option<&Session>, clients: usize) -> Phase {
    let barrier = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (t, pages, session) = (t.clone(), pages.to_vec(), session.cloned());
        let (barrier, count) = (barrier.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(PHASE_REQUESTS / clients);
            let mut errors = 0;
            let mut sender = match connect(&t).await {
                Ok((s, _)) => Some(s),
                Err(_) => None,
            };
            if let Some(s) = sender.as_mut() {
                for p in &pages {
                    let _ = send(s, request(&t, Method::GET, &p.path, session.as_ref(), None)).await;
                }
            }
            barrier.wait().await;
            let Some(mut s) = sender else {
                return (lat, 1);
            };
            let start = Instant::now();
            'outer: loop {
                for p in &pages {
                    if start.elapsed() >= PHASE || count.fetch_add(1, Ordering::Relaxed) >= PHASE_REQUESTS {
                        break 'outer;
                    }
                    let t0 = Instant::now();
                    match send(&mut s, request(&t, Method::GET, &p.path, session.as_ref(), None)).await {
                        Ok((StatusCode::OK, _, body)) if p.len.is_none_or(|n| n == body.len()) => {
                            lat.push(t0.elapsed())
                        }
                        Ok(_) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            match connect(&t).await {
                                Ok((n, _)) => s = n,
                                Err(_) => break 'outer,
                            }
                        }
                    }
                }
            }
            (lat, errors)
        }));
    }
    // The clock starts once every client is connected and warm.
    barrier.wait().await;
    let (start, cpu0) = (Instant::now(), t.cpu());
    gather(t, tasks, start, cpu0).await
}

async fn gather(
    t: &Target,
    tasks: Vec<tokio::task::JoinHandle<(Vec<Duration>, usize)>>,
    start: Instant,
    cpu0: f64,
) -> Phase {
    let mut phase = Phase::default();
    for task in tasks {
        let (lat, errors) = task.await.expect("client task");
        phase.lat.extend(lat);
        phase.errors += errors;
    }
    phase.secs = start.elapsed().as_secs_f64();
    phase.done = phase.lat.len();
    phase.cpu_us_per_request = (t.cpu() - cpu0) * 1e6 / phase.done.max(1) as f64;
    phase.lat.sort_unstable();
    phase
}

/// `clients` loops of: connect, full TLS handshake, GET the index, close.
async fn handshakes(t: &Target, index: &Page, clients: usize) -> Phase {
    let count = Arc::new(AtomicUsize::new(0));
    let cpu0 = t.cpu();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (t, index, count) = (t.clone(), index.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0);
            while start.elapsed() < PHASE && count.fetch_add(1, Ordering::Relaxed) < PHASE_HANDSHAKES {
                let t0 = Instant::now();
                let ok = match tokio::time::timeout(DEADLINE, connect(&t)).await {
                    Ok(Ok((mut s, _))) => matches!(
                        send(&mut s, request(&t, Method::GET, &index.path, None, None)).await,
                        Ok((StatusCode::OK, _, body)) if index.len.is_none_or(|n| n == body.len())
                    ),
                    _ => false,
                };
                if ok {
                    lat.push(t0.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    gather(t, tasks, start, cpu0).await
}

/// Named figures over rounds, in the order first added.
#[derive(Default)]
struct Sheet {
    rows: Vec<(String, Vec<f64>)>,
    errors: usize,
}

impl Sheet {
    fn add(&mut self, name: &str, v: f64) {
        match self.rows.iter_mut().find(|(n, _)| n == name) {
            Some((_, vs)) => vs.push(v),
            None => self.rows.push((name.to_owned(), vec![v])),
        }
    }

    fn median(&self, name: &str) -> Option<f64> {
        let (_, vs) = self.rows.iter().find(|(n, _)| n == name)?;
        let mut vs = vs.clone();
        vs.sort_by(|a, b| a.total_cmp(b));
        Some(vs[vs.len() / 2])
    }

    fn phase(&mut self, name: &str, p: &Phase) {
        self.add(&format!("{name} req/s"), p.rate());
        self.add(&format!("{name} p50 us"), percentile_us(&p.lat, 0.50));
        self.add(&format!("{name} p99 us"), percentile_us(&p.lat, 0.99));
        self.add(&format!("{name} CPU us/req"), p.cpu_us_per_request);
        self.errors += p.errors;
    }
}

fn say_phase(round: usize, who: &str, name: &str, p: &Phase) {
    println!(
        "round {round} {who:<6} {name:<22} {:>8.0}/s  p50 {:>6.0} us  p99 {:>6.0} us  cpu {:>5.0} us/req  n {} errors {}",
        p.rate(),
        percentile_us(&p.lat, 0.50),
        percentile_us(&p.lat, 0.99),
        p.cpu_us_per_request,
        p.done,
        p.errors
    );
}

/// `hearth run` on a new data directory under `dir`, the dashboard on
/// `web` (or disabled), returned once its admin socket exists.
fn spawn_hearth(hearth: &Path, dir: &Path, web: Option<u16>) -> (Process, PathBuf) {
    let web = match web {
        Some(port) => format!("[web]\nlisten = [\"127.0.0.1:{port}\"]\n"),
        None => "[web]\nenabled = false\nlisten = [\"127.0.0.1:0\"]\n".to_owned(),
    };
    start::hearth(
        hearth,
        dir,
        &format!(
            "[mqtt]\ntls_listen = [\"127.0.0.1:{}\"]\nplain_listen = []\n[log]\nlevel = \"warn\"\n\
             [discovery]\nenabled = false\n{web}",
            free_port()
        ),
    )
}

/// Debian's nginx: on the PATH, or in /usr/sbin for a user whose PATH
/// lacks it.
fn nginx() -> &'static str {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("nginx").is_file()));
    if on_path { "nginx" } else { "/usr/sbin/nginx" }
}

/// nginx's worker processes: the master's children.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// nginx with one worker (hearth serves on one thread), TLS 1.2 and 1.3
/// with hearth's certificate, a copy of web-ui/, no access log, and the
/// response headers hearth sends on its pages.
fn start_nginx(dir: &Path, data: &Path, web_ui: &Path, headers: &HeaderMap) -> (Process, u16) {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    for entry in std::fs::read_dir(web_ui).unwrap().flatten() {
        let name = entry.file_name();
        if name != "README.md" {
            std::fs::copy(entry.path(), www.join(&name)).unwrap();
        }
    }
    for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(dir.join("tmp").join(sub)).unwrap();
    }
    let mut add_headers = String::new();
    for (name, value) in headers {
        if [header::DATE, header::CONTENT_LENGTH, header::CONTENT_TYPE].contains(name) {
            continue;
        }
        let value = value.to_str().expect("ASCII header");
        assert!(!value.contains('"'), "header {name} has a double quote");
        add_headers.push_str(&format!("    add_header {name} \"{value}\" always;\n"));
    }
    let port = free_port();
    let d = dir.display();
    let user = if unsafe { libc::geteuid() } == 0 {
        // The workers must read the 0700 temporary directory.
        "user root root;\n"
    } else {
        ""
    };
    let conf = format!(
        "{user}worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  include /etc/nginx/mime.types;\n  default_type application/octet-stream;\n\
         \x20 charset utf-8;\n  charset_types text/css application/javascript;\n\
         \x20 access_log off;\n  server_tokens off;\n  keepalive_requests 1000000;\n  keepalive_timeout 65s;\n\
         \x20 client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
         \x20 fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
         \x20 server {{\n    listen 127.0.0.1:{port} ssl;\n\
         \x20   ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_protocols TLSv1.2 TLSv1.3;\n\
         \x20   root {};\n    index index.html;\n{add_headers}  }}\n}}\n",
        data.join("tls/server.pem").display(),
        data.join("tls/server.key").display(),
        www.display(),
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(nginx())
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx (apt-get install nginx)");
    let process = Process::new(child);
    wait_for_port(port, "nginx");
    (process, port)
}

/// The owner's first session, through `/api/setup` with the setup code
/// hearth wrote into `data`; and how long the call took.
async fn setup_owner(t: &Target, data: &Path) -> (Session, Duration) {
    let code = std::fs::read_to_string(data.join(hearth::accounts::SETUP_CODE_FILE)).expect("setup code");
    let body = json!({ "code": code.trim(), "username": OWNER, "password": PASSWORD });
    open_session(t, "/api/setup", body).await
}

/// A new session for the owner, through `/api/login`; and how long the call
/// took.
async fn login(t: &Target) -> (Session, Duration) {
    open_session(
        t,
        "/api/login",
        json!({ "username": OWNER, "password": PASSWORD }),
    )
    .await
}

/// POSTs `body` to `path` on a new connection (not timed) and times the
/// call alone: the session it opened, and how long it took.
async fn open_session(t: &Target, path: &str, body: Value) -> (Session, Duration) {
    let (mut s, _) = connect(t).await.expect("connect");
    let t0 = Instant::now();
    let (status, headers, body) = send(&mut s, request(t, Method::POST, path, None, Some(body)))
        .await
        .expect(path);
    let took = t0.elapsed();
    assert_eq!(
        status,
        StatusCode::OK,
        "{path}: {}",
        String::from_utf8_lossy(&body)
    );
    (session_from(&headers, &body), took)
}

fn session_from(headers: &HeaderMap, body: &[u8]) -> Session {
    let cookie = headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_owned();
    let v: Value = serde_json::from_slice(body).expect("session JSON");
    Session {
        cookie,
        csrf: v["csrf"].as_str().expect("csrf").to_owned(),
    }
}

/// A `device` event as a stream saw it: which stream, when, which device,
/// its power.
struct Seen {
    stream: usize,
    at: Instant,
    id: String,
    power: Option<bool>,
}

/// Open `/api/events` streams, each read by a task that forwards its
/// `device` events.
struct Streams {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    seen: tokio::sync::mpsc::UnboundedReceiver<Seen>,
}

impl Drop for Streams {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn open_streams(t: &Target, session: &Session, n: usize) -> Streams {
    let (tx, seen) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for stream in 0..n {
        let (mut s, _) = connect(t).await.expect("connect");
        s.ready().await.expect("ready");
        let res = tokio::time::timeout(
            DEADLINE,
            s.send_request(request(t, Method::GET, "/api/events", Some(session), None)),
        )
        .await
        .expect("event stream in time")
        .expect("event stream");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static("text/event-stream"))
        );
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let _keep = s;
            let mut body = res.into_body();
            let mut buf = String::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else { continue };
                let at = Instant::now();
                buf.push_str(&String::from_utf8_lossy(&data));
                while let Some(end) = buf.find("\n\n") {
                    let event: String = buf.drain(..end + 2).collect();
                    let mut name = "";
                    let mut payload = "";
                    for line in event.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            name = v.trim();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            payload = v.trim();
                        }
                    }
                    if name == "device" {
                        let v: Value = serde_json::from_str(payload).unwrap_or_default();
                        let _ = tx.send(Seen {
                            stream,
                            at,
                            id: v["id"].as_str().unwrap_or("").to_owned(),
                            power: v["power"].as_bool(),
                        });
                    }
                }
            }
        }));
    }
    Streams { tasks, seen }
}

/// Toggles the device's power `toggles` times, each once every open stream
/// has seen the last; returns the command POST's round trip, the time to
/// the first stream's matching event and to the last stream's.
async fn toggle(
    t: &Target,
    session: &Session,
    id: &str,
    streams: &mut Streams,
    n_streams: usize,
    toggles: usize,
    mut power: bool,
) -> (Vec<Duration>, Vec<Duration>, Vec<Duration>, bool) {
    let (mut s, _) = connect(t).await.expect("connect");
    let path = format!("/api/devices/{id}/command");
    let (mut post, mut first, mut last) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..toggles {
        power = !power;
        let t0 = Instant::now();
        let (status, ..) = send(
            &mut s,
            request(
                t,
                Method::POST,
                &path,
                Some(session),
                Some(json!({ "power": power })),
            ),
        )
        .await
        .expect("command");
        post.push(t0.elapsed());
        assert_eq!(status, StatusCode::ACCEPTED);
        let mut got = vec![false; n_streams];
        let mut first_at = None;
        let mut remaining = n_streams;
        while remaining > 0 {
            let seen = tokio::time::timeout_at((t0 + DEADLINE).into(), streams.seen.recv())
                .await
                .expect("the device event within the deadline")
                .expect("streams open");
            if seen.id == id && seen.power == Some(power) && seen.at >= t0 && !got[seen.stream] {
                got[seen.stream] = true;
                remaining -= 1;
                first_at.get_or_insert(seen.at);
                if remaining == 0 {
                    last.push(seen.at - t0);
                }
            }
        }
        first.push(first_at.expect("seen") - t0);
    }
    for v in [&mut post, &mut first, &mut last] {
        v.sort_unstable();
    }
    (post, first, last, power)
}

/// The simulated device's process, once it says it is connected.
fn start_device(sim: &Path, dir: &Path, provisioning: &Value) -> Process {
    use std::io::BufRead;
    let file = dir.join("device.json");
    std::fs::write(&file, provisioning.to_string()).unwrap();
    let mut child = Command::new(sim)
        .args(["device", "--seconds", "600", "--provisioning"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hearth-sim (bench/run builds it)");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let process = Process::new(child);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line == "connected" => return process,
            Ok(line) => assert!(line != "refused", "the simulated device was refused"),
            Err(_) => panic!("the simulated device did not connect"),
        }
    }
}

/// Waits until the dashboard shows the device online; returns its power as
/// shown (off when not known yet: the first command then changes it
/// either way).
async fn device_power(t: &Target, session: &Session, id: &str) -> bool {
    let (mut s, _) = connect(t).await.expect("connect");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, _, body) = send(
            &mut s,
            request(t, Method::GET, "/api/devices", Some(session), None),
        )
        .await
        .expect("devices");
        let list: Value = serde_json::from_slice(&body).unwrap_or_default();
        let d = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["id"] == id)
            .cloned()
            .unwrap_or_default();
        if d["online"] == true {
            return d["power"].as_bool().unwrap_or(false);
        }
        assert!(Instant::now() < deadline, "the device never showed online");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn add_device(data: &Path, nickname: String, room: Option<String>) -> Value {
    start::add_device(data, Profile::Generic, DeviceKind::Bulb, nickname, room)
}

/// One round; figures go into `h` (hearth), `n` (nginx, the same names for
/// a ratio) and `only` (hearth alone).
fn round(hearth: &Path, web_ui: &Path, r: usize, h: &mut Sheet, n: &mut Sheet, only: &mut Sheet) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // Idle without the dashboard, same configuration otherwise.
    {
        let dir = tempfile::tempdir().unwrap();
        let (p, _) = spawn_hearth(hearth, dir.path(), None);
        std::thread::sleep(SETTLE);
        only.add("RSS idle, [web] enabled = false, MiB", rss_mib(p.id()));
    }

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (hp, data) = spawn_hearth(hearth, dir.path(), Some(port));
    wait_for_port(port, "hearth's dashboard");
    std::thread::sleep(SETTLE);
    let ht = Target {
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        tls: client_tls(&data.join("ca.pem")),
        pids: vec![hp.id()],
    };
    h.add("RSS idle MiB", ht.rss());
    h.add("PSS idle MiB", ht.pss());

    let pages = page_set(web_ui);
    let (headers, hearth_tls) = rt.block_on(async {
        let (mut s, negotiated) = connect(&ht).await.expect("connect to hearth");
        let (status, headers, _) = send(&mut s, request(&ht, Method::GET, "/", None, None))
            .await
            .expect("GET /");
        assert_eq!(status, StatusCode::OK);
        (headers, negotiated)
    });
    let ndir = tempfile::tempdir().unwrap();
    let (np, nport) = start_nginx(ndir.path(), &data, web_ui, &headers);
    std::thread::sleep(Duration::from_millis(500));
    let nt = Target {
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), nport),
        tls: ht.tls.clone(),
        pids: std::iter::once(np.id()).chain(children(np.id())).collect(),
    };
    assert!(nt.pids.len() >= 2, "nginx has no worker");
    std::thread::sleep(SETTLE);
    n.add("RSS idle MiB", nt.rss());
    n.add("PSS idle MiB", nt.pss());
    let nginx_tls = rt.block_on(async { connect(&nt).await.expect("connect to nginx").1 });
    if r == 1 {
        let total: usize = pages.iter().filter_map(|p| p.len).sum();
        println!(
            "page set: {} files, {:.1} KiB: {}",
            pages.len(),
            total as f64 / 1024.0,
            pages
                .iter()
                .map(|p| p.path.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!("TLS with hearth: {hearth_tls}; with nginx: {nginx_tls}");
    }

    rt.block_on(async {
        for c in CLIENTS {
            for (who, t, sheet) in [("hearth", &ht, &mut *h), ("nginx", &nt, &mut *n)] {
                let p = keepalive(t, &pages, None, c).await;
                say_phase(r, who, &format!("pages keep-alive c={c}"), &p);
                sheet.phase(&format!("pages keep-alive c={c}"), &p);
            }
        }
        for c in CLIENTS {
            for (who, t, sheet) in [("hearth", &ht, &mut *h), ("nginx", &nt, &mut *n)] {
                let p = handshakes(t, &pages[0], c).await;
                say_phase(r, who, &format!("new TLS + GET c={c}"), &p);
                sheet.phase(&format!("new TLS + GET c={c}"), &p);
            }
        }
    });
    std::thread::sleep(SETTLE);
    h.add("RSS after the static load MiB", ht.rss());
    n.add("RSS after the static load MiB", nt.rss());
    h.add("PSS after the static load MiB", ht.pss());
    n.add("PSS after the static load MiB", nt.pss());
    drop(np);

    // The API, behind an owner session, with 100 devices.
    let (session, setup_took) = rt.block_on(setup_owner(&ht, &data));
    let (_, login_took) = rt.block_on(login(&ht));
    only.add("setup (argon2id hash) ms", setup_took.as_secs_f64() * 1e3);
    only.add("one login (argon2id verify) ms", login_took.as_secs_f64() * 1e3);
    std::thread::sleep(SETTLE);
    only.add("RSS after setup and one login MiB", ht.rss());
    for i in 0..DEVICES {
        add_device(&data, format!("Bench lamp {i}"), Some(format!("Room {}", i % 8)));
    }
    let provisioning = add_device(&data, "Simulated lamp".into(), None);
    let id = provisioning["id"].as_str().expect("id").to_owned();
    // `hearth devices add` does not mark the device list changed, so the
    // live state would not track these devices; the owner's first edit
    // does, as it would in the dashboard.
    rt.block_on(async {
        let (mut s, _) = connect(&ht).await.expect("connect");
        let path = format!("/api/devices/{id}");
        let patch = request(
            &ht,
            Method::PATCH,
            &path,
            Some(&session),
            Some(json!({ "room": "Lab" })),
        );
        let (status, ..) = send(&mut s, patch).await.expect("PATCH");
        assert_eq!(status, StatusCode::OK);
    });
    let sim = hearth.with_file_name("hearth-sim");
    let device = start_device(&sim, dir.path(), &provisioning);
    std::thread::sleep(SETTLE);
    only.add("RSS with 101 devices MiB", ht.rss());
    rt.block_on(async {
        let list = vec![Page {
            path: "/api/devices".into(),
            len: None,
        }];
        let session_route = vec![Page {
            path: "/api/session".into(),
            len: None,
        }];
        let (mut s, _) = connect(&ht).await.expect("connect");
        let (_, _, body) = send(&mut s, request(&ht, Method::GET, "/api/devices", Some(&session), None))
            .await
            .expect("devices");
        let listed = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len));
        assert_eq!(listed, Some(DEVICES + 1));
        only.add("GET /api/devices body KiB", body.len() as f64 / 1024.0);
        for c in CLIENTS {
            let p = keepalive(&ht, &list, Some(&session), c).await;
            say_phase(r, "hearth", &format!("GET /api/devices c={c}"), &p);
            only.phase(&format!("GET /api/devices c={c}"), &p);
            let p = keepalive(&ht, &session_route, Some(&session), c).await;
            say_phase(r, "hearth", &format!("GET /api/session c={c}"), &p);
            only.phase(&format!("GET /api/session c={c}"), &p);
        }

        // Live state: one stream, then 50.
        let power = device_power(&ht, &session, &id).await;
        let mut one = open_streams(&ht, &session, 1).await;
        let (post, first, _, power) = toggle(&ht, &session, &id, &mut one, 1, TOGGLES, power).await;
        drop(one);
        println!(
            "round {r} hearth command→event, 1 stream:   p50 {:>6.0} us  p99 {:>6.0} us  (the POST alone: p50 {:.0} us, p99 {:.0} us)",
            percentile_us(&first, 0.5),
            percentile_us(&first, 0.99),
            percentile_us(&post, 0.5),
            percentile_us(&post, 0.99)
        );
        only.add("command→event, 1 stream, p50 us", percentile_us(&first, 0.5));
        only.add("command→event, 1 stream, p99 us", percentile_us(&first, 0.99));
        only.add("command POST alone p50 us", percentile_us(&post, 0.5));
        only.add("command POST alone p99 us", percentile_us(&post, 0.99));

        let before = ht.rss();
        let mut many = open_streams(&ht, &session, STREAMS).await;
        tokio::time::sleep(SETTLE).await;
        let with = ht.rss();
        only.add(&format!("RSS with {STREAMS} event streams MiB"), with);
        only.add("RSS per event stream KiB", (with - before) * 1024.0 / STREAMS as f64);
        let (_, first, last, _) = toggle(&ht, &session, &id, &mut many, STREAMS, FANOUT_TOGGLES, power).await;
        drop(many);
        println!(
            "round {r} hearth command→event, {STREAMS} streams: first p50 {:>6.0} us, last p50 {:>6.0} us p99 {:>6.0} us; RSS {before:.1} → {with:.1} MiB",
            percentile_us(&first, 0.5),
            percentile_us(&last, 0.5),
            percentile_us(&last, 0.99)
        );
        only.add(&format!("command→event, {STREAMS} streams, last p50 us"), percentile_us(&last, 0.5));
        only.add(&format!("command→event, {STREAMS} streams, last p99 us"), percentile_us(&last, 0.99));
    });
    drop(device);
    rt.shutdown_timeout(Duration::from_secs(1));
    drop(hp);
}

pub fn run(hearth: &Path, rounds: usize) {
    hearth::supervisor::raise_nofile();
    let web_ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web-ui");
    let version = Command::new(nginx())
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned());
    println!(
        "\n## web: {rounds} rounds, hearth and nginx alternating per phase; each phase {} s or {PHASE_REQUESTS} \
         requests ({PHASE_HANDSHAKES} handshakes), clients {CLIENTS:?}",
        PHASE.as_secs()
    );
    println!(
        "reference: {}",
        version.unwrap_or_else(|_| "nginx not found".into())
    );
    let (mut h, mut n, mut only) = (Sheet::default(), Sheet::default(), Sheet::default());
    for r in 1..=rounds {
        round(hearth, &web_ui, r, &mut h, &mut n, &mut only);
    }
    println!("\nmedians over {rounds} rounds                hearth       nginx   ratio (hearth/nginx)");
    for (name, _) in &h.rows {
        let a = h.median(name).unwrap_or(f64::NAN);
        match n.median(name) {
            Some(b) => println!("{name:<38} {a:>10.1} {b:>11.1}   {:>6.2}x", a / b),
            None => println!("{name:<38} {a:>10.1}"),
        }
    }
    println!("\nhearth alone, medians");
    for (name, _) in &only.rows {
        println!("{name:<46} {:>10.1}", only.median(name).unwrap_or(f64::NAN));
    }
    println!(
        "failed or wrong answers over all rounds: hearth {}, nginx {}",
        h.errors + only.errors,
        n.errors
    );
}

// --- lockdown ----------------------------------------------------------------

/// Dashboard sessions, each with an open event stream, in a lockdown round.
const LOCKDOWN_SESSIONS: usize = 20;

/// Opens an event stream for `session`; the returned receiver fires when
/// the stream ends.
async fn stream_until_closed(t: &Target, session: &Session) -> tokio::sync::oneshot::Receiver<Instant> {
    let (mut s, _) = connect(t).await.expect("connect");
    s.ready().await.expect("ready");
    let res = tokio::time::timeout(
        DEADLINE,
        s.send_request(request(t, Method::GET, "/api/events", Some(session), None)),
    )
    .await
    .expect("event stream in time")
    .expect("event stream");
    assert_eq!(res.status(), StatusCode::OK);
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _keep = s;
        let mut body = res.into_body();
        while let Some(Ok(_)) = body.frame().await {}
        let _ = tx.send(Instant::now());
    });
    rx
}

/// Home Assistant's MQTT client; the receiver fires when its session is cut.
fn ha_client(data: &Path, ca: &Path) -> tokio::sync::oneshot::Receiver<Instant> {
    let c = start::homeassistant(data);
    let port = c["mqtt"]["port"].as_u64().unwrap() as u16;
    let mut opts = rumqttc::MqttOptions::new("ha-lockdown", "127.0.0.1", port);
    opts.set_credentials(
        c["mqtt"]["username"].as_str().unwrap(),
        c["mqtt"]["password"].as_str().unwrap(),
    );
    let mut tls = (*client_tls(ca)).clone();
    tls.alpn_protocols.clear();
    opts.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
        Arc::new(tls),
    )));
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 8);
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _client = client;
        let mut connected = false;
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => connected = true,
                Ok(_) => {}
                Err(_) if connected => {
                    let _ = tx.send(Instant::now());
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    });
    rx
}

/// One lockdown measurement: the revoking call (or calls), and when the
/// last event stream and Home Assistant's session were cut, from the start.
struct Cut {
    call: Duration,
    streams: Duration,
    mqtt: Duration,
}

async fn lockdown_round(hearth: &Path, by_hand: bool) -> Cut {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_process, data) = spawn_hearth(hearth, dir.path(), Some(port));
    wait_for_port(port, "hearth's dashboard");
    wait_for_file(&data.join(hearth::accounts::SETUP_CODE_FILE), "no setup code");
    let t = Target {
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        tls: client_tls(&data.join("ca.pem")),
        pids: vec![],
    };
    let (owner, _) = setup_owner(&t, &data).await;
    let mut closed = Vec::new();
    let mut sessions = Vec::new();
    for _ in 0..LOCKDOWN_SESSIONS {
        let (s, _) = login(&t).await;
        closed.push(stream_until_closed(&t, &s).await);
        sessions.push(s);
    }
    let ha_cut = ha_client(&data, &data.join("ca.pem"));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t0 = Instant::now();
    if by_hand {
        // The owner does it by hand on the dashboard: every other session
        // revoked one by one, then Home Assistant disconnected.
        let (mut c, _) = connect(&t).await.expect("connect");
        let (_, _, body) = send(
            &mut c,
            request(&t, Method::GET, "/api/sessions", Some(&owner), None),
        )
        .await
        .expect("sessions");
        let list: Value = serde_json::from_slice(&body).unwrap();
        for s in list.as_array().unwrap().iter().filter(|s| s["current"] != true) {
            let path = format!("/api/sessions/{}", s["id"].as_str().unwrap());
            let (status, _, _) = send(&mut c, request(&t, Method::DELETE, &path, Some(&owner), None))
                .await
                .expect("revoke");
            assert!(status.is_success(), "revoking a session: {status}");
        }
        let (status, _, _) = send(
            &mut c,
            request(
                &t,
                Method::POST,
                "/api/integrations/homeassistant/disable",
                Some(&owner),
                None,
            ),
        )
        .await
        .expect("disable");
        assert_eq!(status, StatusCode::OK);
    } else {
        let (mut c, _) = connect(&t).await.expect("connect");
        let (status, _, body) = send(
            &mut c,
            request(&t, Method::POST, "/api/lockdown", Some(&owner), Some(json!({}))),
        )
        .await
        .expect("lockdown");
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    }
    let call = t0.elapsed();
    let mut streams = Duration::ZERO;
    for rx in closed {
        let at = tokio::time::timeout(DEADLINE, rx)
            .await
            .expect("an event stream of a revoked session stayed open")
            .expect("stream task");
        streams = streams.max(at - t0);
    }
    let mqtt = tokio::time::timeout(DEADLINE, ha_cut)
        .await
        .expect("Home Assistant's session stayed open")
        .expect("HA task")
        - t0;
    // And each old session is refused now.
    let (mut c, _) = connect(&t).await.expect("connect");
    for s in &sessions {
        let (status, _, _) = send(&mut c, request(&t, Method::GET, "/api/session", Some(s), None))
            .await
            .expect("session");
        assert_eq!(status, StatusCode::UNAUTHORIZED, "an old session still works");
    }
    Cut { call, streams, mqtt }
}

/// `bench/run lockdown`: one lockdown against the same revocations done by
/// hand through the dashboard's API, with 20 sessions, each with an open
/// event stream, and Home Assistant connected.
pub fn lockdown(hearth: &Path, rounds: usize) {
    println!(
        "\n## lockdown: {rounds} rounds; {LOCKDOWN_SESSIONS} dashboard sessions with open event streams and Home Assistant connected; \
         POST /api/lockdown against revoking each session and disconnecting Home Assistant by hand"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (mut one, mut hand) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        for by_hand in [false, true] {
            let c = rt.block_on(lockdown_round(hearth, by_hand));
            println!(
                "round {} {:<8}: call {:>7.1} ms  last stream cut {:>7.1} ms  Home Assistant cut {:>7.1} ms",
                r + 1,
                if by_hand { "by hand" } else { "lockdown" },
                ms(c.call),
                ms(c.streams),
                ms(c.mqtt)
            );
            if by_hand { hand.push(c) } else { one.push(c) }
        }
    }
    let median = |v: &[Cut], f: fn(&Cut) -> Duration| {
        let mut x: Vec<f64> = v.iter().map(|c| ms(f(c))).collect();
        x.sort_by(|a, b| a.partial_cmp(b).unwrap());
        x[x.len() / 2]
    };
    println!("\nmedians over {rounds} rounds          lockdown   by hand   ratio");
    type Row = (&'static str, fn(&Cut) -> Duration);
    let rows: [Row; 3] = [
        ("revoking call(s) ms", |c| c.call),
        ("last event stream cut ms", |c| c.streams),
        ("Home Assistant session cut ms", |c| c.mqtt),
    ];
    for (name, f) in rows {
        let (a, b) = (median(&one, f), median(&hand, f));
        println!("{name:<32} {a:>9.1} {b:>9.1} {:>6.2}x", a / b);
    }
}
