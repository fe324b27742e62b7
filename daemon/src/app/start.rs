//! One `start` per part, in the order `run` calls them. Each takes what it
//! needs from the parts before it, spawns its tasks under the supervisor,
//! and returns its handle.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::admin::{self, Admin};
use super::{DaemonError, LIVE_SESSION_SWEEP, RENEWAL_CHECK, advertised_host, blocking};
use crate::accounts::Auth;
use crate::broker::{self, Broker, Credentials};
use crate::config::Config;
use crate::discovery::DiscoveryStats;
use crate::home::devices::{self, Devices, MqttEndpoint};
use crate::home::homeassistant::HomeAssistant;
use crate::home::live::LiveState;
use crate::net::pki::{self, TlsFiles};
use crate::relay::Relay;
use crate::safety::rotate::Rotator;
use crate::store::Store;
use crate::store::files::{self, DataDir};
use crate::supervisor::Supervisor;
use crate::web::Web;

/// Reports what the store says about itself before anything runs: settings
/// that lower protection become standing warnings, and the audit chain is
/// verified. Neither is fatal: the home keeps working.
pub(super) fn check_store(store: &mut Store, config: &Config) {
    for setting in config.warnings() {
        tracing::warn!(setting, "protection lowered by configuration");
    }
    match crate::store::warnings::check_config(store, &config.warnings()) {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            settings = n,
            "a configuration change lowered protection; the dashboard shows it until acknowledged"
        ),
        Err(error) => tracing::error!(%error, "could not record protection-lowering settings"),
    }
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
}

/// The broker, with the certificates it serves made or renewed first and
/// every device's credential loaded.
pub(super) struct Started {
    pub broker: Arc<Broker>,
    pub endpoint: MqttEndpoint,
    pub device_count: usize,
    pub credentials: usize,
}

pub(super) async fn broker(
    config: &Config,
    data_dir: &DataDir,
    store: &Arc<Mutex<Store>>,
    files: &TlsFiles,
    names: &[String],
    listeners: broker::Listeners,
) -> Result<Started, DaemonError> {
    let creds = Arc::new(Credentials::new());
    let (device_count, credentials) = {
        let (store, dir, names, creds) = (
            store.clone(),
            data_dir.path().to_path_buf(),
            names.to_vec(),
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
    let broker = Arc::new(
        Broker::start(
            listeners,
            files,
            config.mqtt.limits.clone(),
            creds,
            config.bridge.as_ref(),
        )
        .await?,
    );
    let first = broker
        .tls_addrs()
        .first()
        .or(broker.plain_addrs().first())
        .copied();
    let endpoint = MqttEndpoint {
        host: advertised_host(
            config.mqtt.advertised_host.as_deref(),
            first.as_ref(),
            pki::hostname(),
        ),
        port: first.map(|a| a.port()).unwrap_or(0),
        ca_cert: files.ca_cert.clone(),
    };
    Ok(Started {
        broker,
        endpoint,
        device_count,
        credentials,
    })
}

/// The home: the devices service, live state with its four tasks, the
/// canonical topics and Home Assistant.
pub(super) struct Home {
    pub devices: Arc<Devices>,
    pub live: Arc<LiveState>,
    pub homeassistant: Arc<HomeAssistant>,
}

pub(super) async fn home(
    store: &Arc<Mutex<Store>>,
    broker: &Arc<Broker>,
    endpoint: MqttEndpoint,
    issued: Option<tokio::sync::mpsc::UnboundedSender<devices::Issued>>,
    supervisor: &Supervisor,
) -> Result<Home, DaemonError> {
    let devices = Devices::new(store.clone(), broker.clone(), endpoint);
    let devices = Arc::new(match issued {
        Some(tap) => devices.with_issued_tap(tap),
        None => devices,
    });
    // Live state feeds the dashboard and the canonical topics that Home
    // Assistant reads.
    let live = Arc::new(LiveState::new());
    // Before any task runs: forgetting drops live state, and the device
    // list carries it, from the first request on.
    devices.attach_live(live.clone());
    {
        let (live, devices) = (live.clone(), devices.clone());
        supervisor.spawn("live-devices", move |token| async move {
            crate::home::devices::keep_live_in_step(live, devices, token).await;
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
            crate::home::devices::remember_learnt(live, devices, token).await;
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
                HomeAssistant::load(store, devices, broker).map_err(|e| DaemonError::Internal(e.to_string()))
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
    Ok(Home {
        devices,
        live,
        homeassistant,
    })
}

/// The data key's rotator, resuming a rotation a stop cut short.
pub(super) async fn rotator(store: &Arc<Mutex<Store>>) -> Result<Arc<Rotator>, DaemonError> {
    let keys = Rotator::new(store.clone());
    keys.resume()
        .await
        .map_err(|e| DaemonError::Internal(e.to_string()))?;
    Ok(keys)
}

/// mDNS discovery, when configured. Without multicast hearth still works:
/// devices can be added by hand, so a failure here is logged, not fatal.
pub(super) fn discovery(
    config: &Config,
    supervisor: &Supervisor,
    store: &Arc<Mutex<Store>>,
    broker: &Broker,
    devices: &Devices,
    published: Option<tokio::sync::watch::Receiver<Vec<crate::discovery::mdns::Service>>>,
) -> Option<Arc<DiscoveryStats>> {
    if !config.discovery.enabled {
        return None;
    }
    let port = broker.tls_addrs().first().map(|a| a.port());
    match crate::discovery::start(
        &config.discovery,
        supervisor,
        store.clone(),
        port,
        devices.change_notifier(),
        published,
    ) {
        Ok(stats) => Some(stats),
        Err(error) => {
            tracing::error!(%error, "mDNS discovery could not start; add devices by hand");
            None
        }
    }
}

/// The owner's accounts, made ready for first-run setup (the one secret
/// hearth logs: the one-time setup code, which works only until the owner
/// account exists and is also in a 0600 file in the data directory).
pub(super) async fn accounts(
    config: &Config,
    store: &Arc<Mutex<Store>>,
    data_dir: &DataDir,
) -> Result<Arc<Auth>, DaemonError> {
    // Hashing the decoy password takes a while: off the async workers.
    let (auth, code) = {
        let (store, dir) = (store.clone(), data_dir.path().to_path_buf());
        let (idle, max) = (config.web.session_idle, config.web.session_max);
        blocking(move || {
            let internal = |e: crate::accounts::AuthError| DaemonError::Internal(e.to_string());
            let auth = Auth::new(store, dir, idle, max).map_err(internal)?;
            let code = auth.prepare_setup().map_err(internal)?;
            Ok((auth, code))
        })
        .await?
    };
    if let Some(code) = code {
        let file = data_dir.path().join(crate::accounts::SETUP_CODE_FILE);
        tracing::warn!(
            setup_code = code.expose(),
            file = %file.display(),
            "first run: open the dashboard and enter this one-time setup code"
        );
    }
    Ok(Arc::new(auth))
}

/// The voice relay: its listener runs only while the owner has it enabled.
/// An enabled relay that cannot listen is logged, not fatal: local control
/// of the home does not depend on it.
pub(super) fn relay(
    config: &Config,
    store: &Arc<Mutex<Store>>,
    home: &Home,
    broker: &Arc<Broker>,
    auth: &Arc<Auth>,
    supervisor: &Supervisor,
) -> Arc<Relay> {
    let relay = Arc::new(Relay::new(
        store.clone(),
        home.live.clone(),
        broker.clone(),
        auth.clone(),
        config.relay.clone(),
        supervisor.clone(),
    ));
    relay.flush_calls(crate::store::UnixTime::now());
    if let Err(error) = relay.resume() {
        tracing::error!(%error, "the voice relay is enabled but could not start");
    }
    let r = relay.clone();
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
    relay
}

/// What the dashboard serves from.
pub(super) struct Dashboard<'a> {
    pub config: &'a Config,
    pub data_dir: &'a DataDir,
    pub files: &'a TlsFiles,
    pub broker: &'a Arc<Broker>,
    pub home: &'a Home,
    pub auth: &'a Arc<Auth>,
    pub relay: &'a Arc<Relay>,
    pub keys: &'a Arc<Rotator>,
    pub shutdown: &'a CancellationToken,
    pub erased: &'a Arc<AtomicBool>,
    pub started: Instant,
    pub matter: Option<Arc<crate::matter::Matter>>,
    pub dns: Option<Arc<crate::dns::Dns>>,
}

pub(super) fn dashboard(
    d: Dashboard<'_>,
    listeners: Vec<std::net::TcpListener>,
    supervisor: &Supervisor,
) -> Result<Web, DaemonError> {
    let config = d.config;
    let app = Arc::new(crate::web::api::App {
        auth: d.auth.clone(),
        devices: d.home.devices.clone(),
        live: Some(d.home.live.clone()),
        ca_cert: d.files.ca_cert.clone(),
        session_max: config.web.session_max,
        homeassistant: Some(d.home.homeassistant.clone()),
        relay: Some(d.relay.clone()),
        keys: d.keys.clone(),
        key_path: match files::passphrase_kdf(&d.data_dir.db_path()) {
            Ok(None) => Some(files::resolve_key_path(config.key_file.as_deref(), d.data_dir)),
            _ => None,
        },
        shutdown: d.shutdown.clone(),
        erased: d.erased.clone(),
        metrics: (config.web.metrics != crate::web::metrics::MetricsAccess::Off).then(|| {
            Arc::new(crate::web::metrics::Metrics {
                access: config.web.metrics,
                broker: d.broker.clone(),
                devices: d.home.devices.clone(),
                counters: d.auth.counters.clone(),
                db_path: d.data_dir.db_path(),
                started: d.started,
                dns: d.dns.clone(),
            })
        }),
        matter: d.matter,
        dns: d.dns,
    });
    crate::web::start(listeners, d.files, app, supervisor).map_err(|e| DaemonError::Internal(e.to_string()))
}

/// The admin socket the CLI talks to.
pub(super) fn admin(admin: Admin, listener: tokio::net::UnixListener, supervisor: &Supervisor) {
    let admin = Arc::new(admin);
    supervisor.spawn("admin", move |token| async move {
        admin::serve(listener, admin, token).await;
        Ok(())
    });
}

/// Checks the server certificate every [`RENEWAL_CHECK`] and, when it was
/// renewed, has the broker and the dashboard serve the new one.
pub(super) fn renewal(
    store: &Arc<Mutex<Store>>,
    broker: &Arc<Broker>,
    web: Option<Web>,
    data_dir: &DataDir,
    names: Vec<String>,
    supervisor: &Supervisor,
) {
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
