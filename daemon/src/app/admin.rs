//! The local admin socket: how `hearth devices …` and `hearth status` talk to
//! a running daemon.
//!
//! It is a Unix socket in the data directory, mode 0600, and it also checks
//! the caller's uid (the daemon's own, or root), so only the owner's shell on
//! the hub can use it. One JSON request per connection, one JSON answer,
//! bounded in size and time. It must never accept a request from the network.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::exit::ExitCode;
use crate::home::devices::{AddDevice, Adopt, DeviceError, Devices, Rename, parse_id};
use crate::store::AuditKind;
use crate::store::files::ADMIN_SOCKET;
use crate::store::{Actor, StoreError};

/// The largest request accepted, in bytes.
const MAX_REQUEST: usize = 64 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "no hearth is running on {dir} (cannot reach {socket}). Start it with `hearth run --data-dir {dir}`"
    )]
    NotRunning {
        dir: String,
        socket: String,
        #[source]
        source: std::io::Error,
    },
    #[error("another hearth is already running on {0}")]
    AlreadyRunning(String),
    #[error("cannot create the admin socket {path}: {source}")]
    Bind { path: PathBuf, source: std::io::Error },
    #[error("the admin socket answered badly: {0}")]
    Protocol(String),
    #[error("{message}")]
    Refused { message: String, code: u8 },
}

impl AdminError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            AdminError::NotRunning { .. } => ExitCode::Unavailable,
            AdminError::AlreadyRunning(_) => ExitCode::TempFail,
            AdminError::Bind { .. } | AdminError::Protocol(_) => ExitCode::Software,
            AdminError::Refused { code, .. } => match *code {
                64 => ExitCode::Usage,
                65 => ExitCode::DataErr,
                69 => ExitCode::Unavailable,
                77 => ExitCode::NoPerm,
                _ => ExitCode::Software,
            },
        }
    }
}

/// A request, as the CLI sends it.
#[derive(Debug, Deserialize, Serialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    DevicesAdd(AddDevice),
    DevicesList,
    DevicesForget {
        id: String,
    },
    DevicesRotate {
        id: String,
    },
    DevicesAdopt(Adopt),
    DevicesRename(Rename),
    DevicesSet {
        id: String,
        on: bool,
    },
    DevicesExpose(Expose),
    HomeassistantStatus,
    HomeassistantEnable,
    HomeassistantRotate,
    HomeassistantDisable,
    HomeassistantSet(crate::home::homeassistant::SettingsChange),
    RelayStatus,
    RelayEnable,
    RelayDisable,
    AuditVerify,
    PrivacyReport,
    /// Start rotating the data key, or join the rotation under way.
    KeysRotate,
    /// How far the rotation is.
    KeysStatus,
    /// A new read-only token for `/metrics`, replacing any earlier one.
    MetricsToken,
    /// `hearth backup create` wrote a backup: audit it.
    BackupCreated {
        detail: String,
    },
    Lockdown {
        #[serde(default)]
        rotate_devices: bool,
        #[serde(default)]
        require_new_password: bool,
    },
    /// Open Matter pairing for 15 minutes and answer the codes.
    MatterPair,
    /// The Matter bridge's counts.
    MatterStatus,
    /// Close Matter pairing before its 15 minutes are up.
    MatterClose,
    /// The controllers (fabrics) that joined.
    MatterControllers,
    /// Remove the controller with this fabric index.
    MatterRemove {
        index: u8,
    },
    /// The DNS resolver's counts and each device's summary.
    DnsStatus,
    /// What one device looked up.
    DnsDevice {
        id: String,
    },
    /// Set one device's DNS policy.
    DnsPolicy {
        id: String,
        policy: String,
    },
    /// The cloud domain lists.
    DnsClouds,
    /// Add (or remove) one of the owner's cloud domains.
    DnsCloud {
        domain: String,
        add: bool,
    },
}

/// Which integrations may see a device.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expose {
    pub id: String,
    #[serde(default)]
    pub homeassistant: Option<bool>,
    #[serde(default)]
    pub voice: Option<bool>,
    /// What voice assistants call it.
    #[serde(default)]
    pub voice_name: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
struct Response {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u8>,
}

/// What `hearth status` reports: listeners and counts, nothing about devices
/// but how many there are.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub mqtt_tls: Vec<String>,
    pub mqtt_plain: Vec<String>,
    pub ca_cert: PathBuf,
    pub devices: usize,
    pub broker: serde_json::Value,
    /// Discovery's counters, when it runs.
    pub discovery: Option<serde_json::Value>,
    /// The dashboard's addresses, when it runs.
    #[serde(default)]
    pub web: Vec<String>,
}

/// The daemon side: everything a request may touch.
pub struct Admin {
    pub devices: Arc<Devices>,
    pub homeassistant: Arc<crate::home::homeassistant::HomeAssistant>,
    /// The voice relay; `None` when the dashboard is off.
    pub relay: Option<Arc<crate::relay::Relay>>,
    pub keys: Arc<crate::safety::rotate::Rotator>,
    /// The dashboard's accounts; `None` when the dashboard is off.
    pub auth: Option<Arc<crate::accounts::Auth>>,
    /// Dashboard session limits (idle minutes, hours), for the report.
    pub session_limits: (u64, u64),
    pub broker: Arc<Broker>,
    pub discovery: Option<Arc<crate::discovery::DiscoveryStats>>,
    pub web: Vec<std::net::SocketAddr>,
    /// The Matter bridge; `None` unless `[matter] enabled`.
    pub matter: Option<Arc<crate::matter::Matter>>,
    /// The DNS resolver; `None` unless `[dns] enabled`.
    pub dns: Option<Arc<crate::dns::Dns>>,
}

impl Admin {
    async fn status(&self) -> Result<Status, DeviceError> {
        let devices = self.devices.list().await?.len();
        let stats = self.broker.stats().await;
        Ok(Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            mqtt_tls: self.broker.tls_addrs().iter().map(ToString::to_string).collect(),
            web: self.web.iter().map(ToString::to_string).collect(),
            mqtt_plain: self
                .broker
                .plain_addrs()
                .iter()
                .map(ToString::to_string)
                .collect(),
            ca_cert: self.devices.endpoint().ca_cert.clone(),
            devices,
            broker: serde_json::to_value(stats).expect("stats serialise"),
            discovery: self.discovery.as_ref().map(|d| d.snapshot()),
        })
    }
}

/// Creates the socket (mode 0600). A stale socket from a crashed daemon is
/// replaced; a live one means another daemon owns this data directory.
pub fn bind(data_dir: &Path) -> Result<UnixListener, AdminError> {
    let path = data_dir.join(ADMIN_SOCKET);
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(AdminError::AlreadyRunning(data_dir.display().to_string()));
        }
        let _ = std::fs::remove_file(&path);
    }
    let bind_err = |source| AdminError::Bind {
        path: path.clone(),
        source,
    };
    // The data directory is 0700 already; the mode is set before anyone
    // could connect because the umask-free bind is followed at once by chmod
    // inside a directory only we can enter.
    let listener = UnixListener::bind(&path).map_err(bind_err)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    Ok(listener)
}

/// Serves requests until `token` is cancelled.
pub async fn serve(listener: UnixListener, admin: Arc<Admin>, token: CancellationToken) {
    let me = unsafe { libc::geteuid() };
    loop {
        let stream = tokio::select! {
            _ = token.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let allowed = stream
            .peer_cred()
            .map(|c| c.uid() == me || c.uid() == 0)
            .unwrap_or(false);
        if !allowed {
            tracing::warn!("admin socket: refused a caller with another uid");
            continue;
        }
        let admin = admin.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, handle(stream, &admin)).await;
        });
    }
}

async fn handle(stream: UnixStream, admin: &Admin) {
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read).take(MAX_REQUEST as u64 + 1);
    let mut line = String::new();
    let response = match reader.read_line(&mut line).await {
        Ok(n) if n > MAX_REQUEST => refusal("the request is too large", ExitCode::Usage),
        Ok(_) => match serde_json::from_str::<Request>(&line) {
            Ok(request) => dispatch(request, admin).await,
            Err(e) => refusal(&format!("malformed request: {e}"), ExitCode::Usage),
        },
        Err(_) => return,
    };
    let mut bytes = serde_json::to_vec(&response).expect("response serialises");
    bytes.push(b'\n');
    let _ = write.write_all(&bytes).await;
}

fn refusal(message: &str, code: ExitCode) -> Response {
    Response {
        ok: false,
        result: None,
        error: Some(message.to_owned()),
        code: Some(code as u8),
    }
}

/// A key rotation's failure, answered like a device operation's.
fn rotate_error(e: crate::safety::rotate::RotateError) -> DeviceError {
    match e {
        crate::safety::rotate::RotateError::Store(e) => DeviceError::Store(e),
        crate::safety::rotate::RotateError::Stopped(m) => DeviceError::Internal(m),
    }
}

fn answer<T: Serialize>(result: Result<T, DeviceError>) -> Response {
    match result {
        Ok(value) => Response {
            ok: true,
            result: Some(serde_json::to_value(value).expect("result serialises")),
            error: None,
            code: None,
        },
        Err(e) => {
            let code = match &e {
                DeviceError::Invalid(_) | DeviceError::TopicTaken => ExitCode::Usage,
                DeviceError::NotFound(_) => ExitCode::DataErr,
                DeviceError::Store(s) => s.exit_code(),
                DeviceError::Internal(_) => ExitCode::Software,
            };
            if code == ExitCode::Software {
                tracing::error!(error = %e, "admin request failed");
            }
            refusal(&e.to_string(), code)
        }
    }
}

/// The DNS resolver's requests; names leave only in these answers.
async fn dns_request(r: Request, dns: &crate::dns::Dns) -> Result<serde_json::Value, DeviceError> {
    use crate::dns::DnsError;
    let map = |e: DnsError| match e {
        DnsError::NoDevice => DeviceError::Invalid("that device is not adopted".into()),
        DnsError::BadDomain(_) | DnsError::TooMany(_) => DeviceError::Invalid(e.to_string()),
        DnsError::Store(s) => DeviceError::Store(s),
        e => DeviceError::Internal(e.to_string()),
    };
    match r {
        Request::DnsStatus => Ok(serde_json::json!({
            "status": json(&dns.status()),
            "devices": dns.devices(),
        })),
        Request::DnsDevice { id } => {
            let id = parse_id(&id)?;
            dns.device(&id)
                .map(|d| json(&d))
                .ok_or_else(|| DeviceError::NotFound(format!("{id} (or it is not adopted)")))
        }
        Request::DnsPolicy { id, policy } => {
            let id = parse_id(&id)?;
            let p = crate::dns::history::Policy::parse(&policy).ok_or_else(|| {
                DeviceError::Invalid(format!(
                    "'{}' is not a DNS policy: use observe, block-cloud or lan-only",
                    policy.chars().take(40).collect::<String>()
                ))
            })?;
            let changed = dns.set_policy(&id, p, Actor::Cli).await.map_err(map)?;
            Ok(serde_json::json!({ "policy": p.as_str(), "changed": changed }))
        }
        Request::DnsClouds => Ok(json(&dns.cloud_lists())),
        Request::DnsCloud { domain, add } => {
            let changed = dns.change_cloud(&domain, add, Actor::Cli).await.map_err(map)?;
            Ok(serde_json::json!({ "changed": changed }))
        }
        _ => Err(DeviceError::Internal("not a DNS request".into())),
    }
}

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("an answer serialises")
}

async fn dispatch(request: Request, admin: &Admin) -> Response {
    match request {
        Request::Status => answer(admin.status().await),
        Request::DevicesAdd(req) => answer(admin.devices.add(req, Actor::Cli).await),
        Request::DevicesList => answer(admin.devices.list().await),
        Request::DevicesForget { id } => {
            let result = match parse_id(&id) {
                Ok(id) => admin.devices.forget(&id, Actor::Cli).await.and_then(|existed| {
                    if existed {
                        Ok(serde_json::json!({ "forgotten": id }))
                    } else {
                        Err(DeviceError::NotFound(id.to_string()))
                    }
                }),
                Err(e) => Err(e),
            };
            answer(result)
        }
        Request::DevicesAdopt(req) => answer(admin.devices.adopt(req, Actor::Cli).await),
        Request::DevicesRename(req) => answer(
            admin
                .devices
                .rename(req, Actor::Cli)
                .await
                .map(|id| serde_json::json!({ "renamed": id })),
        ),
        Request::DevicesSet { id, on } => {
            let result = match parse_id(&id) {
                Ok(id) => admin
                    .devices
                    .control(&id, Some(on), None, None)
                    .await
                    .map(|()| serde_json::json!({ "sent": if on { "on" } else { "off" } })),
                Err(e) => Err(e),
            };
            answer(result)
        }
        Request::DevicesRotate { id } => {
            let result = match parse_id(&id) {
                Ok(id) => admin.devices.rotate(&id, Actor::Cli).await,
                Err(e) => Err(e),
            };
            answer(result)
        }
        Request::DevicesExpose(req) => {
            let result = match parse_id(&req.id) {
                Ok(id) => {
                    let update = crate::home::devices::Update {
                        expose_ha: req.homeassistant,
                        expose_voice: req.voice,
                        voice_name: req.voice_name,
                        ..Default::default()
                    };
                    admin
                        .devices
                        .update(&id, update, Actor::Cli)
                        .await
                        .map(|()| serde_json::json!({ "updated": id }))
                }
                Err(e) => Err(e),
            };
            answer(result)
        }
        Request::HomeassistantStatus => answer(admin.homeassistant.status().await),
        Request::HomeassistantEnable => answer(admin.homeassistant.enable(Actor::Cli).await),
        Request::HomeassistantRotate => answer(admin.homeassistant.rotate(Actor::Cli).await),
        Request::HomeassistantDisable => answer(
            admin
                .homeassistant
                .disable(Actor::Cli)
                .await
                .map(|was| serde_json::json!({ "disabled": true, "was_enabled": was })),
        ),
        Request::HomeassistantSet(change) => answer(admin.homeassistant.set(change, Actor::Cli).await),
        Request::Lockdown {
            rotate_devices,
            require_new_password,
        } => answer(
            crate::safety::lockdown::lockdown(
                admin.auth.as_ref(),
                None,
                &admin.homeassistant,
                &admin.devices,
                admin.matter.as_deref(),
                crate::safety::lockdown::Options {
                    rotate_devices,
                    require_new_password,
                },
                Actor::Cli,
            )
            .await,
        ),
        Request::PrivacyReport => {
            let matter_port = match &admin.matter {
                Some(m) => m.status().await.ok().map(|s| s.port),
                None => None,
            };
            let listeners = serde_json::json!([
                { "what": "MQTT over TLS, for devices", "addresses": admin.broker.tls_addrs().iter().map(ToString::to_string).collect::<Vec<_>>() },
                { "what": "plain MQTT, for local tools", "addresses": admin.broker.plain_addrs().iter().map(ToString::to_string).collect::<Vec<_>>() },
                { "what": "the dashboard, HTTPS", "addresses": admin.web.iter().map(ToString::to_string).collect::<Vec<_>>() },
                { "what": "the voice relay", "addresses": admin.relay.as_ref().and_then(|r| r.listening()).map(|a| vec![a.to_string()]).unwrap_or_default() },
                { "what": "mDNS (discovery and hearth's own adverts)", "addresses": if admin.discovery.is_some() { vec!["UDP 5353 on the chosen interfaces".to_owned()] } else { vec![] } },
                { "what": "Matter, UDP, for the controllers you paired", "addresses": matter_port.map(|p| vec![format!("[::]:{p} (IPv4 and IPv6)")]).unwrap_or_default() },
                { "what": "DNS, UDP and TCP, for the LAN", "addresses": admin.dns.as_ref().map(|d| d.status().listening.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap_or_default() },
                { "what": "the admin socket, owner only", "addresses": ["admin.sock in the data directory (0600)"] },
            ]);
            let (idle, max) = admin.session_limits;
            let report = admin
                .devices
                .with_store(move |store| {
                    Ok(crate::safety::privacy::report(store, idle, max, Some(listeners))?)
                })
                .await;
            let matter = crate::safety::privacy::matter(admin.matter.as_deref(), &admin.devices).await;
            let dns = crate::safety::privacy::dns(admin.dns.as_deref());
            answer(report.and_then(|mut v| {
                v["dns"] = dns;
                v["matter"] = serde_json::to_value(matter?).expect("the section serialises");
                Ok(v)
            }))
        }
        Request::AuditVerify => answer(admin.devices.with_store(|store| Ok(store.verify_audit()?)).await),
        Request::KeysRotate => answer(admin.keys.rotate(Actor::Cli).await.map_err(rotate_error)),
        Request::KeysStatus => answer(admin.keys.progress().await.map_err(rotate_error)),
        Request::MetricsToken => {
            let result = match admin.auth.clone() {
                Some(auth) => tokio::task::spawn_blocking(move || auth.issue_metrics_token(Actor::Cli))
                    .await
                    .map_err(|e| DeviceError::Internal(e.to_string()))
                    .and_then(|r| r.map_err(|e| DeviceError::Internal(e.to_string())))
                    .map(|token| serde_json::json!({ "token": token.expose() })),
                None => Err(DeviceError::Invalid(
                    "the dashboard is off (web.enabled = false), so /metrics is not served".into(),
                )),
            };
            answer(result)
        }
        Request::BackupCreated { detail } => answer(
            admin
                .devices
                .with_store(move |s| {
                    s.append_audit(&crate::store::AuditEvent::ok(
                        AuditKind::BackupCreated,
                        Actor::Cli,
                        detail,
                    ))?;
                    Ok(serde_json::json!({ "audited": true }))
                })
                .await,
        ),
        r @ (Request::MatterPair
        | Request::MatterStatus
        | Request::MatterClose
        | Request::MatterControllers
        | Request::MatterRemove { .. }) => {
            let Some(matter) = admin.matter.clone() else {
                return answer::<()>(Err(DeviceError::Invalid(
                    "the Matter bridge is off: set enabled = true under [matter] and restart hearth".into(),
                )));
            };
            let result = match r {
                Request::MatterPair => matter.open_pairing(Actor::Cli).await.map(|c| {
                    serde_json::json!({
                        "manual_code": c.manual,
                        "manual_code_pretty": c.manual_pretty,
                        "qr": c.qr,
                        "open_secs": crate::matter::PAIRING_WINDOW_SECS,
                    })
                }),
                Request::MatterClose => matter
                    .close_pairing(Actor::Cli)
                    .await
                    .map(|was_open| serde_json::json!({ "was_open": was_open })),
                Request::MatterControllers => matter
                    .fabrics()
                    .await
                    .map(|list| crate::matter::fabrics::listing(&list)),
                Request::MatterRemove { index } => match matter.remove_fabric(index, Actor::Cli).await {
                    Ok(true) => Ok(serde_json::json!({ "removed": true })),
                    Ok(false) => {
                        return refusal(
                            &format!(
                                "no controller with index {index}; `hearth matter controllers` lists them"
                            ),
                            ExitCode::DataErr,
                        );
                    }
                    Err(e) => Err(e),
                },
                _ => matter
                    .status()
                    .await
                    .map(|s| serde_json::to_value(s).expect("status serialises")),
            };
            answer(result.map_err(|e| match e {
                crate::matter::MatterError::Store(s) => DeviceError::Store(s),
                e => DeviceError::Internal(e.to_string()),
            }))
        }
        r @ (Request::DnsStatus
        | Request::DnsDevice { .. }
        | Request::DnsPolicy { .. }
        | Request::DnsClouds
        | Request::DnsCloud { .. }) => {
            let Some(dns) = admin.dns.clone() else {
                return answer::<()>(Err(DeviceError::Invalid(
                    "the DNS resolver is off: set enabled = true under [dns] and restart hearth (docs/dns.md)".into(),
                )));
            };
            answer(dns_request(r, &dns).await)
        }
        r @ (Request::RelayStatus | Request::RelayEnable | Request::RelayDisable) => {
            let Some(relay) = admin.relay.clone() else {
                return answer::<()>(Err(DeviceError::Invalid(
                    "the voice relay needs the dashboard: set web.enabled = true".into(),
                )));
            };
            let on = match r {
                Request::RelayEnable => Some(true),
                Request::RelayDisable => Some(false),
                _ => None,
            };
            let result = tokio::task::spawn_blocking(move || -> Result<_, crate::relay::RelayError> {
                if let Some(on) = on {
                    relay.set_enabled(on, Actor::Cli)?;
                }
                let enabled = relay.enabled_setting()?;
                Ok(serde_json::json!({
                    "enabled": enabled,
                    "listening": relay.listening().map(|a| a.to_string()),
                }))
            })
            .await;
            use crate::relay::RelayError as E;
            match result {
                Ok(Ok(v)) => answer(Ok(v)),
                // The dashboard's rule (`Relay::may_enable`): a missing
                // permission, which no configuration can grant.
                Ok(Err(e @ E::TwoFactorNeeded)) => refusal(&e.to_string(), ExitCode::NoPerm),
                Ok(Err(E::Store(s))) => answer::<()>(Err(DeviceError::Store(s))),
                Ok(Err(e)) => answer::<()>(Err(DeviceError::Invalid(e.to_string()))),
                Err(e) => answer::<()>(Err(DeviceError::Internal(e.to_string()))),
            }
        }
    }
}

/// The client side, for the CLI: sends one request and returns the result.
pub fn request(data_dir: &Path, request: &Request) -> Result<serde_json::Value, AdminError> {
    let path = data_dir.join(ADMIN_SOCKET);
    let mut stream =
        std::os::unix::net::UnixStream::connect(&path).map_err(|source| AdminError::NotRunning {
            dir: data_dir.display().to_string(),
            socket: path.display().to_string(),
            source,
        })?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT + Duration::from_secs(5)))
        .map_err(|e| AdminError::Protocol(e.to_string()))?;
    let mut line = serde_json::to_vec(request).expect("request serialises");
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(|e| AdminError::Protocol(e.to_string()))?;
    let mut answer = String::new();
    BufReader::new(stream.take(16 * 1024 * 1024))
        .read_line(&mut answer)
        .map_err(|e| AdminError::Protocol(e.to_string()))?;
    let response: Response =
        serde_json::from_str(&answer).map_err(|e| AdminError::Protocol(format!("{e} in {answer:?}")))?;
    if response.ok {
        Ok(response.result.unwrap_or(serde_json::Value::Null))
    } else {
        Err(AdminError::Refused {
            message: response.error.unwrap_or_default(),
            code: response.code.unwrap_or(ExitCode::Software as u8),
        })
    }
}

// `StoreError` conversions for callers that hold one.
impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Refused {
            message: e.to_string(),
            code: e.exit_code() as u8,
        }
    }
}
