//! Configuration: the TOML file as written (`RawConfig`), then validated into
//! the `Config` the daemon runs with.
//!
//! Validation refuses unknown keys, and refuses any setting that would lower
//! protection unless its documented opt-in key is set. It must never quietly
//! correct an unsafe value into a safe-looking one, and never print a secret.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::broker::BridgeConfig;
use crate::dns::{BlockAnswer, DnsConfig};
use crate::matter::MatterConfig;
use crate::relay::RelayConfig;
use crate::web::metrics::MetricsAccess;

/// The commented default configuration, as `hearth print-default-config`
/// prints it. A test keeps it equal to `RawConfig::default()`.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {problem}. To fix: {fix}")]
    Invalid {
        key: &'static str,
        problem: String,
        fix: String,
    },
}

fn invalid(key: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// The file as written, with defaults filled in. `Serialize` prints the
/// effective configuration; any secret field must be a `secret::Secret`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    pub log: RawLog,
    pub daemon: RawDaemon,
    pub store: RawStore,
    pub mqtt: RawMqtt,
    pub tls: RawTls,
    pub bridge: RawBridge,
    pub discovery: RawDiscovery,
    pub web: RawWeb,
    pub relay: RawRelay,
    pub matter: RawMatter,
    pub dns: RawDns,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDns {
    pub enabled: bool,
    pub listen: Vec<String>,
    pub upstream: Vec<String>,
    pub cache_entries: usize,
    pub client_rate_per_sec: u32,
    pub client_burst: u32,
    pub names_per_device: usize,
    pub history_days: u32,
    pub block_answer: String,
}

impl Default for RawDns {
    fn default() -> Self {
        let d = DnsConfig::default();
        RawDns {
            enabled: d.enabled,
            listen: Vec::new(),
            upstream: Vec::new(),
            cache_entries: d.cache_entries,
            client_rate_per_sec: d.client_rate,
            client_burst: d.client_burst,
            names_per_device: d.names_per_device,
            history_days: d.history_days,
            block_answer: d.block_answer.as_str().into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMatter {
    pub enabled: bool,
    pub port: u16,
}

impl Default for RawMatter {
    fn default() -> Self {
        let d = MatterConfig::default();
        RawMatter {
            enabled: d.enabled,
            port: d.port,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRelay {
    pub listen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    pub token_rate_per_sec: u32,
    pub token_burst: u32,
    pub address_rate_per_sec: u32,
    pub address_burst: u32,
}

impl Default for RawRelay {
    fn default() -> Self {
        RawRelay {
            listen: "127.0.0.1:8444".into(),
            tls_cert: None,
            tls_key: None,
            token_rate_per_sec: 5,
            token_burst: 20,
            address_rate_per_sec: 20,
            address_burst: 60,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWeb {
    pub enabled: bool,
    pub listen: Vec<String>,
    pub session_idle_mins: u64,
    pub session_max_hours: u64,
    pub metrics: String,
}

impl Default for RawWeb {
    fn default() -> Self {
        RawWeb {
            enabled: true,
            listen: vec!["0.0.0.0:8443".into()],
            session_idle_mins: 30,
            session_max_hours: 12,
            metrics: "loopback".into(),
        }
    }
}

/// The dashboard, validated.
#[derive(Clone, Debug)]
pub struct WebConfig {
    pub enabled: bool,
    pub listen: Vec<SocketAddr>,
    pub session_idle: Duration,
    pub session_max: Duration,
    pub metrics: MetricsAccess,
}

/// `"private"`, `"loopback"`, or a list of interface names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawInterfaces {
    Mode(String),
    Names(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDiscovery {
    pub enabled: bool,
    pub interfaces: RawInterfaces,
    pub service_types: Vec<String>,
    /// Service types hearth does not know, with the kind of device behind
    /// them: `"_foo._tcp" = "bulb"`. Browsed as well.
    pub service_kinds: std::collections::BTreeMap<String, String>,
    pub max_pending: usize,
    pub advertise: bool,
}

impl Default for RawDiscovery {
    fn default() -> Self {
        let d = crate::discovery::DiscoveryConfig::default();
        RawDiscovery {
            enabled: d.enabled,
            interfaces: RawInterfaces::Mode("private".into()),
            service_types: d.service_types,
            service_kinds: std::collections::BTreeMap::new(),
            max_pending: d.max_pending,
            advertise: d.advertise,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub level: String,
    pub format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: "info".into(),
            format: "auto".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDaemon {
    pub shutdown_grace_secs: u64,
    pub worker_threads: usize,
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            shutdown_grace_secs: 10,
            worker_threads: 1,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMqtt {
    pub tls_listen: Vec<String>,
    pub plain_listen: Vec<String>,
    pub allow_plaintext_lan: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_host: Option<String>,
    pub max_packet_size: u32,
    pub max_connections: usize,
    pub max_inflight: u16,
    pub max_queue: usize,
    pub session_expiry_secs: u64,
    pub message_expiry_secs: u64,
    pub handshake_timeout_secs: u64,
    pub connect_rate_per_sec: u32,
    pub connect_burst: u32,
    pub max_retained: usize,
}

impl Default for RawMqtt {
    fn default() -> Self {
        let l = crate::broker::Limits::default();
        RawMqtt {
            tls_listen: vec!["0.0.0.0:8883".into()],
            plain_listen: vec!["127.0.0.1:1883".into()],
            allow_plaintext_lan: false,
            advertised_host: None,
            max_packet_size: l.max_packet_size,
            max_connections: l.max_connections,
            max_inflight: l.max_inflight,
            max_queue: l.max_queue,
            session_expiry_secs: l.session_expiry.as_secs(),
            message_expiry_secs: l.message_expiry.as_secs(),
            handshake_timeout_secs: l.handshake_timeout.as_secs(),
            connect_rate_per_sec: l.connect_rate_per_sec,
            connect_burst: l.connect_burst,
            max_retained: l.max_retained,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    /// Extra DNS names or IP addresses for the server certificate.
    pub extra_names: Vec<String>,
}

/// The optional egress bridge to an upstream (cluster) broker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBridge {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<crate::store::secret::Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    pub client_id: String,
    pub topics: Vec<String>,
    pub remote_prefix: String,
    pub qos: u8,
}

impl Default for RawBridge {
    fn default() -> Self {
        RawBridge {
            enabled: false,
            upstream: None,
            ca_file: None,
            username: None,
            password: None,
            password_file: None,
            client_id: "hearth-bridge".into(),
            topics: vec!["hearth/+/state".into(), "hearth/+/availability".into()],
            remote_prefix: "hearth".into(),
            qos: 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// journald when stderr is connected to the journal, else text.
    Auto,
    Text,
    Journald,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub level: tracing::Level,
    pub format: LogFormat,
}

#[derive(Clone, Debug)]
pub struct MqttConfig {
    pub tls_listen: Vec<SocketAddr>,
    pub plain_listen: Vec<SocketAddr>,
    pub allow_plaintext_lan: bool,
    /// The host name devices are told to connect to; `<hostname>.local`
    /// when unset.
    pub advertised_host: Option<String>,
    pub limits: crate::broker::Limits,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: Option<PathBuf>,
    pub log: LogConfig,
    pub shutdown_grace: Duration,
    /// Async worker threads; 1 runs everything on one thread, as mosquitto does.
    pub worker_threads: usize,
    pub key_file: Option<PathBuf>,
    pub mqtt: MqttConfig,
    /// Extra names for the server certificate.
    pub tls_extra_names: Vec<String>,
    /// The egress bridge, when enabled.
    pub bridge: Option<BridgeConfig>,
    pub discovery: crate::discovery::DiscoveryConfig,
    pub web: WebConfig,
    pub relay: RelayConfig,
    pub matter: MatterConfig,
    pub dns: DnsConfig,
    raw: RawConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config::validate(RawConfig::default()).expect("the default configuration is valid")
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: format!("{}{}", locate(text, e.span()), e.message()),
        })?;
        Config::validate(raw)
    }

    pub fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        if let Some(dir) = &raw.data_dir
            && !dir.is_absolute()
        {
            return Err(invalid(
                "data_dir",
                format!("{} is a relative path", dir.display()),
                "give an absolute path, such as /var/lib/hearth",
            ));
        }
        let level = match raw.log.level.as_str() {
            "error" => tracing::Level::ERROR,
            "warn" => tracing::Level::WARN,
            "info" => tracing::Level::INFO,
            "debug" => tracing::Level::DEBUG,
            "trace" => tracing::Level::TRACE,
            other => {
                return Err(invalid(
                    "log.level",
                    format!("'{other}' is not a log level"),
                    "use one of error, warn, info, debug, trace",
                ));
            }
        };
        let format = match raw.log.format.as_str() {
            "auto" => LogFormat::Auto,
            "text" => LogFormat::Text,
            "journald" => LogFormat::Journald,
            other => {
                return Err(invalid(
                    "log.format",
                    format!("'{other}' is not a log format"),
                    "use one of auto, text, journald",
                ));
            }
        };
        let grace = raw.daemon.shutdown_grace_secs;
        if !(1..=300).contains(&grace) {
            return Err(invalid(
                "daemon.shutdown_grace_secs",
                format!("{grace} is outside 1..=300"),
                "choose a grace period between 1 and 300 seconds",
            ));
        }
        let workers = raw.daemon.worker_threads;
        if !(1..=64).contains(&workers) {
            return Err(invalid(
                "daemon.worker_threads",
                format!("{workers} is outside 1..=64"),
                "use 1 (lowest latency, one core) or up to the number of cores",
            ));
        }
        if let Some(key) = &raw.store.key_file
            && !key.is_absolute()
        {
            return Err(invalid(
                "store.key_file",
                format!("{} is a relative path", key.display()),
                "give an absolute path to the key file",
            ));
        }
        let mqtt = validate_mqtt(&raw.mqtt)?;
        for name in &raw.tls.extra_names {
            let ok = name.parse::<std::net::IpAddr>().is_ok() || valid_dns_name(name);
            if !ok {
                return Err(invalid(
                    "tls.extra_names",
                    format!("'{name}' is neither an IP address nor a DNS name"),
                    "list host names like \"hub.example.org\" or addresses like \"192.168.1.2\"",
                ));
            }
        }
        let bridge = validate_bridge(&raw.bridge)?;
        let discovery = validate_discovery(&raw.discovery)?;
        let web = validate_web(&raw.web)?;
        let relay = validate_relay(&raw.relay)?;
        if raw.matter.port == 0 {
            return Err(invalid(
                "matter.port",
                "0 is not a port",
                "use Matter's own port, 5540, or another from 1 to 65535",
            ));
        }
        let matter = MatterConfig {
            enabled: raw.matter.enabled,
            port: raw.matter.port,
        };
        let dns = validate_dns(&raw.dns)?;
        Ok(Config {
            matter,
            dns,
            bridge,
            discovery,
            web,
            relay,
            tls_extra_names: raw.tls.extra_names.clone(),
            data_dir: raw.data_dir.clone(),
            log: LogConfig { level, format },
            shutdown_grace: Duration::from_secs(grace),
            worker_threads: workers,
            key_file: raw.store.key_file.clone(),
            mqtt,
            raw,
        })
    }

    /// Checks what the configuration names on disk. `init` skips this,
    /// since it creates the key file.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        if let Some((cert, key)) = &self.relay.tls {
            for (name, file) in [("relay.tls_cert", cert), ("relay.tls_key", key)] {
                if !file.is_file() {
                    return Err(invalid(
                        name,
                        format!("{} does not exist or is not a file", file.display()),
                        "give the PEM files of the relay's certificate chain and key",
                    ));
                }
            }
        }
        if let Some(file) = &self.raw.bridge.ca_file
            && self.bridge.is_some()
            && !file.is_file()
        {
            return Err(invalid(
                "bridge.ca_file",
                format!("{} does not exist or is not a file", file.display()),
                "give the PEM file of the CA that signed the upstream broker's certificate",
            ));
        }
        if let Some(key) = &self.key_file
            && !key.is_file()
        {
            return Err(invalid(
                "store.key_file",
                format!("{} does not exist or is not a file", key.display()),
                "restore the key file there, run `hearth init` to create one for a new store, \
                 or remove store.key_file to use the data directory's own key",
            ));
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.raw).expect("the config serialises")
    }

    /// Settings in force that lower protection. Each was explicitly opted
    /// into; the daemon logs them at start and the dashboard will show them.
    pub fn warnings(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.mqtt.plain_listen.iter().any(|a| !a.ip().is_loopback()) {
            out.push("mqtt.allow_plaintext_lan: plain MQTT listens on a LAN address; device passwords cross the LAN in clear");
        }
        if self.bridge.is_some() {
            out.push("bridge.enabled: device state on the bridged topics is forwarded to an upstream broker");
        }
        out
    }
}

/// "line L, column C (key a.b): " for a span of the TOML text, naming the key
/// from the line's `key =` and the nearest `[table]` header above it.
fn locate(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else { return String::new() };
    let before = &text[..span.start.min(text.len())];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.len() - line_start + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(['[', ']']).trim());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty());
    match (table, key) {
        (Some(t), Some(k)) => format!("line {line_no}, column {column} (key {t}.{k}): "),
        (None, Some(k)) => format!("line {line_no}, column {column} (key {k}): "),
        _ => format!("line {line_no}, column {column}: "),
    }
}

fn parse_addrs(key: &'static str, addrs: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for a in addrs {
        let addr: SocketAddr = a.parse().map_err(|_| {
            invalid(
                key,
                format!("'{a}' is not an IP address with a port"),
                "write it as \"0.0.0.0:8883\" or \"[::1]:1883\"",
            )
        })?;
        if out.contains(&addr) {
            return Err(invalid(
                key,
                format!("{addr} is listed twice"),
                "list each address once",
            ));
        }
        out.push(addr);
    }
    Ok(out)
}

fn validate_mqtt(raw: &RawMqtt) -> Result<MqttConfig, ConfigError> {
    let tls_listen = parse_addrs("mqtt.tls_listen", &raw.tls_listen)?;
    let plain_listen = parse_addrs("mqtt.plain_listen", &raw.plain_listen)?;
    if !raw.allow_plaintext_lan
        && let Some(lan) = plain_listen.iter().find(|a| !a.ip().is_loopback())
    {
        return Err(invalid(
            "mqtt.plain_listen",
            format!(
                "{lan} is not a loopback address, and plain MQTT there would send device passwords \
                 across the LAN in clear"
            ),
            "bind plain MQTT to 127.0.0.1 or [::1] and let LAN devices use mqtt.tls_listen; only if a \
             device cannot do TLS, set mqtt.allow_plaintext_lan = true (the dashboard will warn)",
        ));
    }
    for p in &plain_listen {
        if p.port() != 0
            && tls_listen.iter().any(|t| {
                t.port() == p.port()
                    && (t.ip() == p.ip() || t.ip().is_unspecified() || p.ip().is_unspecified())
            })
        {
            return Err(invalid(
                "mqtt.plain_listen",
                format!("{p} overlaps a TLS listener on the same port"),
                "give plain and TLS MQTT different ports",
            ));
        }
    }
    if let Some(host) = &raw.advertised_host
        && !(host.parse::<std::net::IpAddr>().is_ok() || valid_dns_name(host))
    {
        return Err(invalid(
            "mqtt.advertised_host",
            format!("'{host}' is neither an IP address nor a DNS name"),
            "give the name or address devices should connect to",
        ));
    }
    let range = |key: &'static str, value: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(invalid(
                key,
                format!("{value} is outside {min}..={max}"),
                format!("choose a value from {min} to {max}"),
            ))
        }
    };
    let limits = crate::broker::Limits {
        max_packet_size: range(
            "mqtt.max_packet_size",
            raw.max_packet_size.into(),
            1024,
            16 * 1024 * 1024,
        )? as u32,
        max_connections: range("mqtt.max_connections", raw.max_connections as u64, 1, 100_000)? as usize,
        max_inflight: range("mqtt.max_inflight", raw.max_inflight.into(), 1, 1024)? as u16,
        max_queue: range("mqtt.max_queue", raw.max_queue as u64, 1, 100_000)? as usize,
        session_expiry: std::time::Duration::from_secs(range(
            "mqtt.session_expiry_secs",
            raw.session_expiry_secs,
            0,
            7 * 24 * 3600,
        )?),
        message_expiry: std::time::Duration::from_secs(range(
            "mqtt.message_expiry_secs",
            raw.message_expiry_secs,
            1,
            24 * 3600,
        )?),
        handshake_timeout: std::time::Duration::from_secs(range(
            "mqtt.handshake_timeout_secs",
            raw.handshake_timeout_secs,
            1,
            60,
        )?),
        connect_rate_per_sec: range(
            "mqtt.connect_rate_per_sec",
            raw.connect_rate_per_sec.into(),
            1,
            10_000,
        )? as u32,
        connect_burst: range("mqtt.connect_burst", raw.connect_burst.into(), 1, 100_000)? as u32,
        max_retained: range("mqtt.max_retained", raw.max_retained as u64, 0, 1_000_000)? as usize,
        max_retained_payload: crate::broker::Limits::default().max_retained_payload,
    };
    Ok(MqttConfig {
        tls_listen,
        plain_listen,
        allow_plaintext_lan: raw.allow_plaintext_lan,
        advertised_host: raw.advertised_host.clone(),
        limits,
    })
}

fn validate_discovery(raw: &RawDiscovery) -> Result<crate::discovery::DiscoveryConfig, ConfigError> {
    use crate::discovery::Interfaces;
    let interfaces = match &raw.interfaces {
        RawInterfaces::Mode(m) if m == "private" => Interfaces::Private,
        RawInterfaces::Mode(m) if m == "loopback" => Interfaces::Loopback,
        RawInterfaces::Names(names)
            if !names.is_empty()
                && names.iter().all(|n| {
                    !n.is_empty()
                        && n.len() <= 15
                        && n.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
                }) =>
        {
            Interfaces::Named(names.clone())
        }
        other => {
            return Err(invalid(
                "discovery.interfaces",
                format!("{other:?} is not \"private\", \"loopback\" or a list of interface names"),
                "use \"private\" (every interface with a private or link-local address) or names like [\"eth0\"]",
            ));
        }
    };
    let service_type = |key: &'static str, ty: &str| {
        let valid = ty
            .strip_prefix('_')
            .and_then(|t| t.strip_suffix("._tcp").or_else(|| t.strip_suffix("._udp")))
            .is_some_and(|name| {
                (1..=15).contains(&name.len())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if valid {
            Ok(())
        } else {
            Err(invalid(
                key,
                format!("'{ty}' is not a DNS-SD service type"),
                "write service types like \"_hap._tcp\"",
            ))
        }
    };
    for ty in &raw.service_types {
        service_type("discovery.service_types", ty)?;
    }
    let mut service_types = raw.service_types.clone();
    let mut service_kinds = crate::discovery::classify::ExtraKinds::new();
    for (ty, kind) in &raw.service_kinds {
        service_type("discovery.service_kinds", ty)?;
        let kind = crate::store::DeviceKind::parse(kind)
            .filter(|k| *k != crate::store::DeviceKind::Other)
            .ok_or_else(|| {
                invalid(
                    "discovery.service_kinds",
                    format!("'{kind}' (for {ty}) is not a kind of device hearth offers"),
                    "use bulb, light_strip, plug, camera, doorbell, motion_sensor, contact_sensor, climate_sensor or water_sensor",
                )
            })?;
        service_kinds.insert(ty.clone(), kind);
        if !service_types.contains(ty) {
            service_types.push(ty.clone());
        }
    }
    if !(1..=10_000).contains(&raw.max_pending) {
        return Err(invalid(
            "discovery.max_pending",
            format!("{} is outside 1..=10000", raw.max_pending),
            "choose how many pending devices to keep, from 1 to 10000",
        ));
    }
    Ok(crate::discovery::DiscoveryConfig {
        enabled: raw.enabled,
        interfaces,
        service_types,
        service_kinds,
        max_pending: raw.max_pending,
        advertise: raw.advertise,
    })
}

fn validate_web(raw: &RawWeb) -> Result<WebConfig, ConfigError> {
    let listen = parse_addrs("web.listen", &raw.listen)?;
    if raw.enabled && listen.is_empty() {
        return Err(invalid(
            "web.listen",
            "is empty while the dashboard is enabled",
            "give an address such as \"0.0.0.0:8443\", or set web.enabled = false",
        ));
    }
    if !(5..=1440).contains(&raw.session_idle_mins) {
        return Err(invalid(
            "web.session_idle_mins",
            format!("{} is outside 5..=1440", raw.session_idle_mins),
            "choose how many idle minutes end a dashboard session, from 5 to 1440",
        ));
    }
    if !(1..=720).contains(&raw.session_max_hours) {
        return Err(invalid(
            "web.session_max_hours",
            format!("{} is outside 1..=720", raw.session_max_hours),
            "choose how many hours a dashboard session lasts at most, from 1 to 720",
        ));
    }
    let metrics = match raw.metrics.as_str() {
        "loopback" => MetricsAccess::Loopback,
        "token" => MetricsAccess::Token,
        "off" => MetricsAccess::Off,
        other => {
            return Err(invalid(
                "web.metrics",
                format!("{other:?} is not a metrics access mode"),
                "use \"loopback\" (local scrapers only), \"token\" (a bearer token from `hearth metrics token`) or \"off\"",
            ));
        }
    };
    Ok(WebConfig {
        metrics,
        enabled: raw.enabled,
        listen,
        session_idle: Duration::from_secs(raw.session_idle_mins * 60),
        session_max: Duration::from_secs(raw.session_max_hours * 3600),
    })
}

/// An address with an optional port (53 when absent).
fn dns_addr(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>().ok().or_else(|| {
        s.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// Whether hearth may answer DNS on `ip`: loopback, private, link-local or
/// unique local. Never a public address: an open resolver is abused.
fn lan_address(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1]))
        }
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

fn validate_dns(raw: &RawDns) -> Result<DnsConfig, ConfigError> {
    let mut listen = Vec::new();
    for s in &raw.listen {
        let addr = dns_addr(s).ok_or_else(|| {
            invalid(
                "dns.listen",
                format!("'{s}' is not an address"),
                "list hearth's LAN addresses, like \"192.168.1.2\" (port 53) or \"192.168.1.2:53\"",
            )
        })?;
        if addr.ip().is_unspecified() || !lan_address(addr.ip()) {
            return Err(invalid(
                "dns.listen",
                format!("{addr} is not one of hearth's LAN addresses"),
                "name each LAN address hearth should answer on (private, link-local, unique local or loopback); hearth never answers DNS on every address or a public one",
            ));
        }
        if addr.port() == 0 {
            return Err(invalid(
                "dns.listen",
                format!("{addr} has port 0"),
                "use port 53, or omit the port",
            ));
        }
        listen.push(addr);
    }
    let mut upstream = Vec::new();
    for s in &raw.upstream {
        let addr = dns_addr(s).filter(|a| !a.ip().is_unspecified() && a.port() != 0).ok_or_else(|| {
            invalid(
                "dns.upstream",
                format!("'{s}' is not a resolver's address"),
                "list resolvers like \"192.168.1.1\" (port 53), or leave it empty to use /etc/resolv.conf",
            )
        })?;
        if listen.contains(&addr) {
            return Err(invalid(
                "dns.upstream",
                format!("{addr} is also in dns.listen: hearth would forward to itself"),
                "name the router's or another resolver's address",
            ));
        }
        upstream.push(addr);
    }
    if raw.cache_entries > 1_000_000 {
        return Err(invalid(
            "dns.cache_entries",
            format!("{} is above 1000000", raw.cache_entries),
            "a home needs a few thousand; 0 turns the cache off",
        ));
    }
    let (rate, burst) = (raw.client_rate_per_sec, raw.client_burst);
    if !(1..=10_000).contains(&rate) || !(1..=100_000).contains(&burst) || burst < rate {
        return Err(invalid(
            "dns.client_rate_per_sec",
            format!("rate {rate} with burst {burst}"),
            "use a rate from 1 to 10000 queries a second and a burst at least as large, up to 100000",
        ));
    }
    if !(1..=10_000).contains(&raw.names_per_device) {
        return Err(invalid(
            "dns.names_per_device",
            format!("{} is outside 1..=10000", raw.names_per_device),
            "keep from 1 to 10000 names per device",
        ));
    }
    if !(1..=3650).contains(&raw.history_days) {
        return Err(invalid(
            "dns.history_days",
            format!("{} is outside 1..=3650", raw.history_days),
            "keep names from 1 day to 10 years",
        ));
    }
    let block_answer = BlockAnswer::parse(&raw.block_answer).ok_or_else(|| {
        invalid(
            "dns.block_answer",
            format!("'{}' is not a way to answer", raw.block_answer),
            "use nxdomain or zero",
        )
    })?;
    Ok(DnsConfig {
        enabled: raw.enabled,
        listen,
        upstream,
        cache_entries: raw.cache_entries,
        client_rate: rate,
        client_burst: burst,
        names_per_device: raw.names_per_device,
        history_days: raw.history_days,
        block_answer,
        ..DnsConfig::default()
    })
}

fn validate_relay(raw: &RawRelay) -> Result<RelayConfig, ConfigError> {
    let listen: SocketAddr = raw.listen.parse().map_err(|_| {
        invalid(
            "relay.listen",
            format!("'{}' is not an address and port", raw.listen),
            "write it as \"127.0.0.1:8444\"",
        )
    })?;
    let tls = match (&raw.tls_cert, &raw.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "relay.tls_cert",
                "only one of relay.tls_cert and relay.tls_key is set",
                "set both (a certificate chain and its key), or neither to serve plain HTTP on loopback",
            ));
        }
    };
    if tls.is_none() && !listen.ip().is_loopback() {
        return Err(invalid(
            "relay.listen",
            format!("{listen} is not loopback, and the relay would speak plain HTTP there"),
            "keep relay.listen on 127.0.0.1 behind your tunnel or reverse proxy, or set relay.tls_cert and relay.tls_key",
        ));
    }
    for (key, rate, burst) in [
        (
            "relay.token_rate_per_sec",
            raw.token_rate_per_sec,
            raw.token_burst,
        ),
        (
            "relay.address_rate_per_sec",
            raw.address_rate_per_sec,
            raw.address_burst,
        ),
    ] {
        if !(1..=1000).contains(&rate) || !(1..=10_000).contains(&burst) || burst < rate {
            return Err(invalid(
                key,
                format!("rate {rate}/s with burst {burst} is out of range"),
                "choose a rate of 1 to 1000 per second and a burst from the rate to 10000",
            ));
        }
    }
    Ok(RelayConfig {
        listen,
        tls,
        token_rate: (raw.token_rate_per_sec, raw.token_burst),
        address_rate: (raw.address_rate_per_sec, raw.address_burst),
    })
}

fn validate_bridge(raw: &RawBridge) -> Result<Option<BridgeConfig>, ConfigError> {
    if !raw.enabled {
        return Ok(None);
    }
    let upstream = raw.upstream.as_deref().unwrap_or("");
    let Some(hostport) = upstream.strip_prefix("mqtts://") else {
        return Err(invalid(
            "bridge.upstream",
            format!("'{upstream}' is not an mqtts:// URL"),
            "give the upstream broker as mqtts://host:8883; the bridge only speaks TLS",
        ));
    };
    let valid_hostport = hostport.rsplit_once(':').is_some_and(|(host, port)| {
        port.parse::<u16>().is_ok_and(|p| p != 0)
            && (valid_dns_name(host) || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok())
    });
    if !valid_hostport {
        return Err(invalid(
            "bridge.upstream",
            format!("'{upstream}' has no valid host and port"),
            "write it as mqtts://host:8883",
        ));
    }
    if raw.password.is_some() && raw.password_file.is_some() {
        return Err(invalid(
            "bridge.password",
            "both bridge.password and bridge.password_file are set",
            "keep one; bridge.password_file keeps the secret out of the config",
        ));
    }
    let password = match &raw.password_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    "bridge.password_file",
                    format!("cannot read {}: {e}", path.display()),
                    "make it readable by hearth",
                )
            })?;
            Some(crate::store::secret::Secret::new(
                text.trim_end_matches(['\n', '\r']),
            ))
        }
        None => raw.password.clone(),
    };
    for topic in &raw.topics {
        if !crate::broker::acl::valid_filter(topic) || topic == "#" {
            return Err(invalid(
                "bridge.topics",
                format!("'{topic}' is not a topic filter the bridge may forward"),
                "list filters like \"hearth/+/state\"; '#' and '$' topics are not allowed",
            ));
        }
    }
    if raw.topics.is_empty() {
        return Err(invalid(
            "bridge.topics",
            "no topics are listed",
            "list the local topic filters to forward",
        ));
    }
    let prefix_ok = !raw.remote_prefix.is_empty()
        && raw
            .remote_prefix
            .split('/')
            .all(|l| !l.is_empty() && !l.contains(['+', '#', '$']));
    if !prefix_ok {
        return Err(invalid(
            "bridge.remote_prefix",
            format!("'{}' is not a plain topic prefix", raw.remote_prefix),
            "use levels without wildcards, such as \"homes/house-1\"",
        ));
    }
    if raw.qos > 1 {
        return Err(invalid(
            "bridge.qos",
            format!("{} is not 0 or 1", raw.qos),
            "use 0 or 1",
        ));
    }
    if !crate::broker::connect::valid_client_id(&raw.client_id) {
        return Err(invalid(
            "bridge.client_id",
            format!("'{}' is not a valid client id", raw.client_id),
            "use 1 to 64 letters, digits, '-' or '_'",
        ));
    }
    Ok(Some(BridgeConfig {
        upstream: hostport.to_owned(),
        ca_file: raw.ca_file.clone(),
        username: raw.username.clone(),
        password,
        client_id: raw.client_id.clone(),
        topics: raw.topics.clone(),
        remote_prefix: raw.remote_prefix.clone(),
        qos: raw.qos,
    }))
}

/// A DNS name of letters, digits, hyphens and dots, 1 to 253 bytes.
fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commented_default_is_the_default() {
        let parsed: RawConfig = toml::from_str(DEFAULT_TOML).unwrap();
        assert_eq!(parsed, RawConfig::default());
        assert!(Config::default().warnings().is_empty());
    }

    /// docs/configuration.md lists every key, in its table's section.
    #[test]
    fn every_key_is_documented() {
        const DOC: &str = include_str!("../../../docs/configuration.md");
        fn walk(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
            for (k, v) in table {
                match v {
                    toml::Value::Table(t) => walk(&format!("{prefix}{k}."), t, out),
                    _ => out.push(format!("{prefix}{k}")),
                }
            }
        }
        let mut keys = Vec::new();
        walk("", &toml::from_str(DEFAULT_TOML).unwrap(), &mut keys);
        assert!(keys.len() > 30, "{keys:?}");
        for key in keys {
            let (section, name) = key.rsplit_once('.').unwrap_or(("", &key));
            // A row names the key (or several keys) in its first cell.
            let has_row = |part: &str, name: &str| {
                part.lines()
                    .filter_map(|l| l.strip_prefix('|')?.split('|').next())
                    .any(|cell| cell.contains(&format!("`{name}`")))
            };
            let in_section = !section.is_empty()
                && DOC
                    .split("\n## ")
                    .any(|part| part.starts_with(&format!("`[{section}]`")) && has_row(part, name));
            assert!(
                in_section || has_row(DOC, &key),
                "docs/configuration.md has no row for {key}"
            );
        }
    }

    #[test]
    fn effective_config_round_trips() {
        let config = Config::from_toml("[log]\nlevel = \"debug\"\n", Path::new("t.toml")).unwrap();
        let printed = config.to_toml();
        let again = Config::from_toml(&printed, Path::new("printed")).unwrap();
        assert_eq!(again.raw, config.raw);
        assert!(printed.contains("level = \"debug\""), "{printed}");
    }

    /// Table of (config text, Ok or the key and a phrase the error must name).
    #[test]
    fn validation_table() {
        #[track_caller]
        fn check(text: &str, expect: Result<(), (&str, &str)>) {
            let got = Config::from_toml(text, Path::new("test.toml"));
            match (got, expect) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err((key, phrase))) => {
                    let msg = e.to_string();
                    assert!(msg.contains(key), "error for {text:?} does not name {key}: {msg}");
                    assert!(msg.contains(phrase), "error for {text:?} lacks {phrase:?}: {msg}");
                }
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        }
        check("", Ok(()));
        check("bogus = 1", Err(("bogus", "unknown field")));
        check("[mqtt]\ntls_port = 1", Err(("tls_port", "unknown field")));
        check("[lgo]\nlevel = \"info\"", Err(("lgo", "unknown field")));
        check("[log]\nlevel = \"loud\"", Err(("log.level", "not a log level")));
        check("[log]\nformat = \"xml\"", Err(("log.format", "not a log format")));
        check("data_dir = \"rel/dir\"", Err(("data_dir", "absolute")));
        check(
            "[daemon]\nshutdown_grace_secs = 0",
            Err(("daemon.shutdown_grace_secs", "1..=300")),
        );
        check("[store]\nkey_file = \"k\"", Err(("store.key_file", "absolute")));
        check(
            "[mqtt]\nplain_listen = [\"0.0.0.0:1883\"]",
            Err(("mqtt.plain_listen", "allow_plaintext_lan = true")),
        );
        check(
            "[mqtt]\nplain_listen = [\"192.168.1.2:1883\"]",
            Err(("mqtt.plain_listen", "not a loopback")),
        );
        check("[mqtt]\nplain_listen = [\"[::1]:1883\"]", Ok(()));
        check(
            "[mqtt]\nplain_listen = [\"0.0.0.0:1883\"]\nallow_plaintext_lan = true",
            Ok(()),
        );
        check(
            "[mqtt]\ntls_listen = [\"localhost:8883\"]",
            Err(("mqtt.tls_listen", "not an IP address")),
        );
        check(
            "[mqtt]\ntls_listen = [\"0.0.0.0:8883\", \"0.0.0.0:8883\"]",
            Err(("mqtt.tls_listen", "twice")),
        );
        check(
            "[mqtt]\ntls_listen = [\"0.0.0.0:1883\"]",
            Err(("mqtt.plain_listen", "overlaps a TLS listener")),
        );
        check(
            "[mqtt]\nallow_plaintext_lan = \"yes\"",
            Err(("allow_plaintext_lan", "invalid type")),
        );
        check(
            "[relay]\nlisten = \"0.0.0.0:8444\"",
            Err(("relay.listen", "not loopback")),
        );
        check(
            "[relay]\nlisten = \"0.0.0.0:8444\"\ntls_cert = \"/c.pem\"",
            Err(("relay.tls_cert", "only one")),
        );
        check(
            "[relay]\nlisten = \"0.0.0.0:8444\"\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"",
            Ok(()),
        );
        check("[relay]\nlisten = \"[::1]:8444\"", Ok(()));
        check(
            "[relay]\nlisten = \"relay\"",
            Err(("relay.listen", "not an address")),
        );
        check(
            "[relay]\ntoken_rate_per_sec = 0",
            Err(("relay.token_rate_per_sec", "out of range")),
        );
        check("[relay]\nopen = true", Err(("open", "unknown field")));
        check("[matter]\nenabled = true\nport = 5541", Ok(()));
        check(
            "[dns]\nenabled = true\nlisten = [\"192.168.1.2\", \"[fd00::2]:53\", \"127.0.0.1:5353\"]\nupstream = [\"192.168.1.1\"]",
            Ok(()),
        );
        check(
            "[dns]\nlisten = [\"0.0.0.0\"]",
            Err(("dns.listen", "not one of hearth's LAN addresses")),
        );
        check(
            "[dns]\nlisten = [\"203.0.113.5:53\"]",
            Err(("dns.listen", "not one of hearth's LAN addresses")),
        );
        check(
            "[dns]\nlisten = [\"hub.lan\"]",
            Err(("dns.listen", "not an address")),
        );
        check(
            "[dns]\nlisten = [\"192.168.1.2\"]\nupstream = [\"192.168.1.2:53\"]",
            Err(("dns.upstream", "forward to itself")),
        );
        check(
            "[dns]\nupstream = [\"0.0.0.0\"]",
            Err(("dns.upstream", "not a resolver")),
        );
        check(
            "[dns]\nclient_rate_per_sec = 0",
            Err(("dns.client_rate_per_sec", "rate 0")),
        );
        check(
            "[dns]\nclient_burst = 10",
            Err(("dns.client_rate_per_sec", "burst 10")),
        );
        check("[dns]\nhistory_days = 0", Err(("dns.history_days", "outside")));
        check(
            "[dns]\nblock_answer = \"0.0.0.0\"",
            Err(("dns.block_answer", "not a way")),
        );
        check("[dns]\nresolvers = []", Err(("resolvers", "unknown field")));
        check("[matter]\nport = 0", Err(("matter.port", "not a port")));
        check(
            "[matter]\npasscode = 20202021",
            Err(("passcode", "unknown field")),
        );
        check("[matter]\nport = 70000", Err(("port", "invalid value")));
        check("[web]\nmetrics = \"token\"", Ok(()));
        check("[web]\nmetrics = \"off\"", Ok(()));
        check(
            "[web]\nmetrics = \"public\"",
            Err(("web.metrics", "\"loopback\" (local scrapers only)")),
        );
    }

    #[test]
    fn opt_in_is_reported_as_a_warning() {
        let c = Config::from_toml(
            "[mqtt]\nplain_listen = [\"0.0.0.0:1883\"]\nallow_plaintext_lan = true",
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(c.warnings().len(), 1);
    }

    #[test]
    fn bridge_password_is_never_printed() {
        let c = Config::from_toml(
            "[bridge]\nenabled = true\nupstream = \"mqtts://up.example:8883\"\npassword = \"hunter2-bridge\"\n",
            Path::new("t"),
        )
        .unwrap();
        let printed = c.to_toml();
        assert!(!printed.contains("hunter2-bridge"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
        assert!(!format!("{c:?}").contains("hunter2-bridge"));
        assert_eq!(
            c.bridge.as_ref().unwrap().password.as_ref().unwrap().expose(),
            "hunter2-bridge"
        );
        assert_eq!(c.warnings().len(), 1);
    }

    #[test]
    fn missing_key_file_is_named() {
        let c = Config::from_toml("[store]\nkey_file = \"/nonexistent/hearth.key\"", Path::new("t")).unwrap();
        let e = c.check_files().unwrap_err().to_string();
        assert!(
            e.contains("store.key_file") && e.contains("/nonexistent/hearth.key"),
            "{e}"
        );
    }
}
