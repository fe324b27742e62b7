//! The running daemon: opens the store (`store::open_or_init`), starts
//! every part under the supervisor, and stops them on request.

pub mod admin;
pub mod telemetry;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use self::admin::{Admin, AdminError};
use crate::broker::{self, Broker, BrokerError, Credentials};
use crate::config::Config;
use crate::exit::ExitCode;
use crate::home::devices::{self, Devices, MqttEndpoint};
use crate::net::pki::{self, PkiError, TlsFiles};
use crate::store::files::{self, DataDir};
use crate::store::{Store, StoreError};
use crate::supervisor::{self, Supervisor, SupervisorError};

/// How often the server certificate is checked for renewal.
const RENEWAL_CHECK: Duration = Duration::from_secs(12 * 3600);
/// How often the dashboard's live view checks which devices hold a broker session.
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
    store: Store,
    bound: Bound,
    shutdown: CancellationToken,
    issued: Option<tokio::sync::mpsc::UnboundedSender<devices::Issued>>,
) -> Result<(), DaemonError> {
    let started = std::time::Instant::now();
    let supervisor = Supervisor::new(shutdown.clone());
    supervisor::notify::spawn_watchdog(&supervisor);
    for setting in config.warnings() {
        tracing::warn!(setting, "protection lowered by configuration");
    }

    let mut store = store;
    match crate::store::warnings::check_config(&mut store, &config.warnings()) {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            settings = n,
            "a configuration change lowered protection; the dashboard shows it until acknowledged"
        ),
        Err(error) => tracing::error!(%error, "could not record protection-lowering settings"),
    }
    // A broken audit chain is reported, never fatal: the home keeps working.
    match store.verify_audit() {
        Ok(v) => match v.problem {
            Some(p) => tracing::error!(
                entry = p.entry,
                why = %p.why,
                "the audit log's hash chain is broken; see the dashboard's Security page or run hearth audit verify"
            ),
            None => tracing::info!(entries = v.entries, "audit log verified"),
        },
        Err(error) => tracing::error!(%error, "the audit log could not be verified"),
    }
    let store = Arc::new(Mutex::new(store));
    let files = TlsFiles::in_dir(data_dir.path());
    let names = certificate_names(&config);
    let creds = Arc::new(Credentials::new());
    let (device_count, loaded) = {
        let (store, dir, names, creds) = (
            store.clone(),
            data_dir.path().to_path_buf(),
            names.clone(),
            creds.clone(),
        );
        blocking(move || {
            let mut store = store.lock().expect("store lock");
            pki::ensure(&mut store, &dir, &names)?;
            let loaded = devices::load_credentials(&store, &creds)?;
            Ok((store.devices()?.len(), loaded))
        })
        .await?
    };

    let listeners = broker::Listeners {
        tls: bound.mqtt_tls,
        plain: bound.mqtt_plain,
    };
    let broker = Arc::new(
        Broker::start(
            listeners,
            &files,
            config.mqtt.limits.clone(),
            creds,
            config.bridge.as_ref(),
        )
        .await?,
    );
    let port = broker
        .tls_addrs()
        .first()
        .or(broker.plain_addrs().first())
        .map(|a| a.port())
        .unwrap_or(0);
    let host = advertised_host(
        config.mqtt.advertised_host.as_deref(),
        broker.tls_addrs().first().or(broker.plain_addrs().first()),
        pki::hostname(),
    );
    let endpoint = MqttEndpoint {
        host,
        port,
        ca_cert: files.ca_cert.clone(),
    };
    let devices = Devices::new(store.clone(), broker.clone(), endpoint);
    let devices = Arc::new(match issued {
        Some(tap) => devices.with_issued_tap(tap),
        None => devices,
    });
    let keys = crate::safety::rotate::Rotator::new(store.clone());
    let erased = Arc::new(std::sync::atomic::AtomicBool::new(false));
    keys.resume()
        .await
        .map_err(|e| DaemonError::Internal(e.to_string()))?;

    let mut discovery = None;
    if config.discovery.enabled {
        let port = broker.tls_addrs().first().map(|a| a.port());
        // Without multicast hearth still works: devices can be added by hand.
        match crate::discovery::start(
            &config.discovery,
            &supervisor,
            store.clone(),
            port,
            devices.change_notifier(),
        ) {
            Ok(stats) => discovery = Some(stats),
            Err(error) => tracing::error!(%error, "mDNS discovery could not start; add devices by hand"),
        }
    }

    // Live state feeds the dashboard and the canonical topics that Home
    // Assistant reads.
    let live = Arc::new(crate::home::live::LiveState::new());
    {
        let (live, devices) = (live.clone(), devices.clone());
        supervisor.spawn("live-devices", move |token| async move {
            crate::home::live::follow_devices(live, devices, token).await;
            Ok(())
        });
    }
    {
        let (live, hub) = (live.clone(), broker.subscribe_hub());
        supervisor.spawn("live-state", move |token| async move {
            crate::home::live::run(live, hub, token).await;
            Ok(())
        });
    }
    {
        let (live, devices) = (live.clone(), devices.clone());
        supervisor.spawn("live-learnt", move |token| async move {
            crate::home::live::remember_learnt(live, devices, token).await;
            Ok(())
        });
    }
    {
        let (live, broker) = (live.clone(), broker.clone());
        supervisor.spawn("live-online", move |token| async move {
            crate::home::live::watch_sessions(live, broker, LIVE_SESSION_SWEEP, token).await;
            Ok(())
        });
    }
    {
        let (devices, live, broker) = (devices.clone(), live.clone(), broker.clone());
        supervisor.spawn("canonical", move |token| async move {
            crate::home::canonical::run(devices, live, broker, token).await;
            Ok(())
        });
    }

    let homeassistant = {
        let (store, devices, broker) = (store.clone(), devices.clone(), broker.clone());
        Arc::new(
            blocking(move || {
                crate::home::homeassistant::HomeAssistant::load(store, devices, broker)
                    .map_err(|e| DaemonError::Internal(e.to_string()))
            })
            .await?,
        )
    };
    {
        let (ha, live) = (homeassistant.clone(), live.clone());
        supervisor.spawn("homeassistant", move |token| async move {
            crate::home::homeassistant::run(ha, live, token).await;
            Ok(())
        });
    }

    let mut web = None;
    let mut relay = None;
    let mut accounts = None;
    if config.web.enabled {
        // Hashing the decoy password takes a while: off the async workers.
        let (auth, code) = {
            let (store, dir) = (store.clone(), data_dir.path().to_path_buf());
            let (idle, max) = (config.web.session_idle, config.web.session_max);
            blocking(move || {
                let internal = |e: crate::accounts::AuthError| DaemonError::Internal(e.to_string());
                let auth = crate::accounts::Auth::new(store, dir, idle, max).map_err(internal)?;
                let code = auth.prepare_setup().map_err(internal)?;
                Ok((auth, code))
            })
            .await?
        };
        if let Some(code) = code {
            // The one secret hearth logs, as the first-run design asks: it
            // works once, only until the owner account exists, and is also
            // in a 0600 file in the data directory.
            let file = data_dir.path().join(crate::accounts::SETUP_CODE_FILE);
            tracing::warn!(
                setup_code = code.expose(),
                file = %file.display(),
                "first run: open the dashboard and enter this one-time setup code"
            );
        }
        let auth = Arc::new(auth);
        let app_counters = auth.counters.clone();
        accounts = Some(auth.clone());
        let r = Arc::new(crate::relay::Relay::new(
            store.clone(),
            live.clone(),
            broker.clone(),
            auth.clone(),
            config.relay.clone(),
            supervisor.clone(),
        ));
        // An enabled relay that cannot listen is logged, not fatal: local
        // control of the home does not depend on it.
        r.flush_calls(crate::store::UnixTime::now());
        if let Err(error) = r.resume() {
            tracing::error!(%error, "the voice relay is enabled but could not start");
        }
        {
            let r = r.clone();
            supervisor.spawn("relay-sweep", move |token| async move {
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(60)) => {
                            let r = r.clone();
                            let _ = tokio::task::spawn_blocking(move || r.sweep()).await;
                        }
                    }
                }
            });
        }
        relay = Some(r.clone());
        let app = Arc::new(crate::web::api::App {
            auth,
            devices: devices.clone(),
            live: Some(live.clone()),
            ca_cert: files.ca_cert.clone(),
            session_max: config.web.session_max,
            homeassistant: Some(homeassistant.clone()),
            relay: Some(r),
            keys: keys.clone(),
            key_path: match files::passphrase_kdf(&data_dir.db_path()) {
                Ok(None) => Some(files::resolve_key_path(config.key_file.as_deref(), &data_dir)),
                _ => None,
            },
            shutdown: shutdown.clone(),
            erased: erased.clone(),
            metrics: (config.web.metrics != crate::web::metrics::MetricsAccess::Off).then(|| {
                Arc::new(crate::web::metrics::Metrics {
                    access: config.web.metrics,
                    broker: broker.clone(),
                    devices: devices.clone(),
                    counters: app_counters.clone(),
                    db_path: data_dir.db_path(),
                    started,
                })
            }),
        });
        web = Some(
            crate::web::start(bound.web, &files, app, &supervisor)
                .map_err(|e| DaemonError::Internal(e.to_string()))?,
        );
    }

    let admin = Arc::new(Admin {
        devices: devices.clone(),
        homeassistant: homeassistant.clone(),
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
    });
    let admin_listener = bound.admin;
    supervisor.spawn("admin", move |token| async move {
        admin::serve(admin_listener, admin, token).await;
        Ok(())
    });
    {
        let (store, broker, dir) = (store.clone(), broker.clone(), data_dir.path().to_path_buf());
        supervisor.spawn("tls-renewal", move |token| async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(RENEWAL_CHECK) => {}
                }
                let (store, d, names) = (store.clone(), dir.clone(), names.clone());
                let renewed = blocking(move || {
                    let mut store = store.lock().expect("store lock");
                    Ok(pki::ensure(&mut store, &d, &names)?)
                })
                .await?;
                if renewed {
                    broker.reload_tls(&TlsFiles::in_dir(&dir))?;
                    if let Some(web) = &web {
                        web.reload_tls(&TlsFiles::in_dir(&dir))
                            .map_err(|e| DaemonError::Internal(e.to_string()))?;
                    }
                }
            }
        });
    }

    tracing::info!(devices = device_count, credentials = loaded, "hearth running");
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
    drop(devices);
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
