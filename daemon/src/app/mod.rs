//! The running daemon: opens the store (`store::open_or_init`), starts
//! every part under the supervisor, and stops them on request.

pub mod admin;
mod start;
pub mod telemetry;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use self::admin::{Admin, AdminError};
use crate::broker::{self, BrokerError};
use crate::config::Config;
use crate::exit::ExitCode;
use crate::home::devices::{self};
use crate::net::pki::{self, PkiError, TlsFiles};
use crate::store::files::DataDir;
use crate::store::{Store, StoreError};
use crate::supervisor::{self, Supervisor, SupervisorError};

/// How often the server certificate is checked for renewal.
const RENEWAL_CHECK: Duration = Duration::from_secs(12 * 3600);
/// How often live state checks which devices hold a broker session. A
/// device whose connection dies has no last will on the hub tap, so this
/// sweep is what marks it offline; five seconds is about as soon as anyone
/// looks again, and a sweep asks the broker once per adopted device.
const LIVE_SESSION_SWEEP: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("certificates: {0}")]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Matter(#[from] crate::matter::MatterError),
    #[error(transparent)]
    Dns(#[from] crate::dns::DnsError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl DaemonError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            DaemonError::Store(e) | DaemonError::Pki(PkiError::Store(e)) => e.exit_code(),
            DaemonError::Broker(BrokerError::Bind { .. }) => ExitCode::Unavailable,
            DaemonError::Broker(BrokerError::EnvOverride(_)) => ExitCode::Usage,
            DaemonError::Broker(BrokerError::Tls(_)) => ExitCode::DataErr,
            DaemonError::Admin(e) => e.exit_code(),
            DaemonError::Matter(crate::matter::MatterError::Bind { .. }) => ExitCode::Unavailable,
            DaemonError::Matter(crate::matter::MatterError::Store(e)) => e.exit_code(),
            DaemonError::Dns(crate::dns::DnsError::Bind { .. }) => ExitCode::Unavailable,
            DaemonError::Dns(crate::dns::DnsError::NoUpstream(_) | crate::dns::DnsError::NoListener) => {
                ExitCode::Usage
            }
            DaemonError::Dns(crate::dns::DnsError::Store(e)) => e.exit_code(),
            _ => ExitCode::Software,
        }
    }
}

/// What the caller bound before calling [`run`].
pub struct Bound {
    /// MQTT over TLS.
    pub mqtt_tls: Vec<std::net::TcpListener>,
    /// Plain MQTT.
    pub mqtt_plain: Vec<std::net::TcpListener>,
    /// The admin socket.
    pub admin: tokio::net::UnixListener,
    /// The dashboard (HTTPS).
    pub web: Vec<std::net::TcpListener>,
    /// Matter's UDP socket, when `[matter] enabled`.
    pub matter: Option<std::net::UdpSocket>,
    /// The DNS resolver's sockets, when `[dns] enabled`.
    pub dns: Option<crate::dns::Sockets>,
}

/// The broker address hearth tells Home Assistant and prints: the configured
/// one; else the address the first listener is bound to, when it is a
/// specific one (the certificate carries it, see [`certificate_names`], and
/// nothing else reaches that listener); else the host's mDNS name.
fn advertised_host(
    configured: Option<&str>,
    listener: Option<&std::net::SocketAddr>,
    hostname: Option<String>,
) -> String {
    if let Some(host) = configured {
        return host.to_owned();
    }
    match listener {
        Some(addr) if !addr.ip().is_unspecified() => addr.ip().to_string(),
        _ => hostname
            .map(|h| if h.contains('.') { h } else { format!("{h}.local") })
            .unwrap_or_else(|| "localhost".into()),
    }
}

/// The names the server certificate carries: the host's, plus configured
/// extra names and any specific address the TLS listeners are bound to.
fn certificate_names(config: &Config) -> Vec<String> {
    let mut extra = config.tls_extra_names.clone();
    for addr in config.mqtt.tls_listen.iter().chain(&config.web.listen) {
        if !addr.ip().is_unspecified() {
            extra.push(addr.ip().to_string());
        }
    }
    pki::server_names(&extra)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DaemonError> + Send + 'static,
) -> Result<T, DaemonError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DaemonError::Internal(e.to_string()))?
}

/// Runs the daemon until `shutdown` is cancelled, then drains its tasks
/// within the configured grace period.
pub async fn run(
    config: Config,
    data_dir: DataDir,
    store: Store,
    bound: Bound,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    run_with_tap(config, data_dir, store, bound, shutdown, None).await
}

/// [`run`], with every credential that adoption or rotation issues also
/// handed to `issued` in process: `hearth demo`'s simulated firmware.
pub async fn run_with_tap(
    config: Config,
    data_dir: DataDir,
    mut store: Store,
    bound: Bound,
    shutdown: CancellationToken,
    issued: Option<tokio::sync::mpsc::UnboundedSender<devices::Issued>>,
) -> Result<(), DaemonError> {
    let started = std::time::Instant::now();
    let supervisor = Supervisor::new(shutdown.clone());
    supervisor::notify::spawn_watchdog(&supervisor);
    start::check_store(&mut store, &config);
    let store = Arc::new(Mutex::new(store));
    let files = TlsFiles::in_dir(data_dir.path());
    let names = certificate_names(&config);

    let listeners = broker::Listeners {
        tls: bound.mqtt_tls,
        plain: bound.mqtt_plain,
    };
    let started_broker = start::broker(&config, &data_dir, &store, &files, &names, listeners).await?;
    let broker = started_broker.broker.clone();
    let home = start::home(&store, &broker, started_broker.endpoint, issued, &supervisor).await?;
    let keys = start::rotator(&store).await?;
    let erased = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The Matter bridge publishes its services through discovery's own
    // responder, on discovery's interfaces.
    let (published, publish) = match bound.matter.is_some() {
        true => {
            let (tx, rx) = tokio::sync::watch::channel(Vec::new());
            (Some(rx), Some(tx))
        }
        false => (None, None),
    };
    let discovery = start::discovery(&config, &supervisor, &store, &broker, &home.devices, published);
    if bound.matter.is_some() && discovery.is_none() {
        tracing::warn!(
            "the Matter bridge runs without mDNS (discovery is off or failed): controllers will not find it"
        );
    }
    let matter = match (bound.matter, publish) {
        (Some(socket), Some(publish)) => Some(crate::matter::Matter::start(
            store.clone(),
            home.devices.clone(),
            home.live.clone(),
            socket,
            publish,
            &supervisor,
        )?),
        _ => None,
    };

    let dns = match bound.dns {
        Some(sockets) => Some(
            crate::dns::Dns::start(
                config.dns.clone(),
                sockets,
                store.clone(),
                home.devices.clone(),
                &supervisor,
            )
            .await?,
        ),
        None => None,
    };

    // The owner's accounts, the voice relay and the dashboard run together:
    // the relay's consent and the owner's sign-in are the dashboard's pages.
    let (mut accounts, mut relay, mut web) = (None, None, None);
    if config.web.enabled {
        let auth = start::accounts(&config, &store, &data_dir).await?;
        let r = start::relay(&config, &store, &home, &broker, &auth, &supervisor);
        let dashboard = start::Dashboard {
            config: &config,
            data_dir: &data_dir,
            files: &files,
            broker: &broker,
            home: &home,
            auth: &auth,
            relay: &r,
            keys: &keys,
            shutdown: &shutdown,
            erased: &erased,
            started,
            matter: matter.clone(),
            dns: dns.clone(),
        };
        web = Some(start::dashboard(dashboard, bound.web, &supervisor)?);
        (accounts, relay) = (Some(auth), Some(r));
    }

    let admin = Admin {
        devices: home.devices.clone(),
        homeassistant: home.homeassistant.clone(),
        relay: relay.clone(),
        keys: keys.clone(),
        auth: accounts,
        session_limits: (
            config.web.session_idle.as_secs() / 60,
            config.web.session_max.as_secs() / 3600,
        ),
        broker: broker.clone(),
        discovery,
        web: web.as_ref().map(|w| w.addrs().to_vec()).unwrap_or_default(),
        matter,
        dns,
    };
    start::admin(admin, bound.admin, &supervisor);
    start::renewal(&store, &broker, web, &data_dir, names, &supervisor);

    tracing::info!(
        devices = started_broker.device_count,
        credentials = started_broker.credentials,
        "hearth running"
    );
    supervisor::notify::ready();

    shutdown.cancelled().await;
    tracing::info!("stopping");
    supervisor::notify::stopping();
    broker.shutdown().await;
    supervisor.shutdown(config.shutdown_grace).await?;
    if let Some(r) = relay.take() {
        // This minute's relay calls too; a crash leaves them in their
        // tally until the next start's first sweep.
        r.flush_calls(crate::store::UnixTime(i64::MAX));
    }
    let _ = std::fs::remove_file(data_dir.admin_socket());
    drop(home);
    if erased.load(std::sync::atomic::Ordering::SeqCst) {
        drop(store);
        match crate::safety::erase::remove_files(&data_dir) {
            Ok(n) => tracing::warn!(files = n, "erased: the next start is a fresh install"),
            Err(error) => tracing::error!(%error, "erased the keys, but could not remove every file"),
        }
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::advertised_host;

    #[test]
    fn the_advertised_host_is_one_the_listener_and_certificate_serve() {
        let any = "0.0.0.0:8883".parse().unwrap();
        let loopback = "127.0.0.1:8883".parse().unwrap();
        let lan = "192.168.1.5:8883".parse().unwrap();
        let host = || Some("hub".to_owned());
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a std::net::SocketAddr>,
            Option<String>,
            &'a str,
        );
        let cases: [Case; 6] = [
            (Some("hub.example"), Some(&loopback), host(), "hub.example"),
            (None, Some(&loopback), host(), "127.0.0.1"),
            (None, Some(&lan), host(), "192.168.1.5"),
            (None, Some(&any), host(), "hub.local"),
            (None, Some(&any), Some("hub.lan".into()), "hub.lan"),
            (None, None, None, "localhost"),
        ];
        for (configured, listener, hostname, want) in cases {
            assert_eq!(advertised_host(configured, listener, hostname), want);
        }
    }
}
