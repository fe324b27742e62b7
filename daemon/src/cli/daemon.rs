//! Starting the daemon: `hearth init`, `hearth run` (and `hearth demo`'s
//! start), the configuration file and the data directory it names.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{
    Config, ConfigError, DataDir, InitOutcome, RunArgs, StopSignal, SupervisorError, app, demo, stop_signal,
    telemetry,
};

/// Binds MQTT listeners, so an address in use is reported before anything
/// starts.
pub(super) fn bind_all(
    addrs: &[std::net::SocketAddr],
    key: &str,
) -> anyhow::Result<Vec<std::net::TcpListener>> {
    addrs
        .iter()
        .map(|addr| {
            std::net::TcpListener::bind(addr).map_err(|e| {
                anyhow::Error::from(app::DaemonError::Broker(crate::broker::BrokerError::Bind {
                    addr: *addr,
                    message: format!("{e}; change {key} or stop what uses the port"),
                }))
            })
        })
        .collect()
}

pub(super) fn load_config(path: Option<&Path>) -> Result<Config, ConfigError> {
    match path {
        Some(p) => Config::load(p),
        None => Ok(Config::default()),
    }
}

/// Where the data lives: the flag, the config, systemd's `STATE_DIRECTORY`,
/// then a per-user default.
pub fn resolve_data_dir(flag: Option<&Path>, config: &Config) -> anyhow::Result<DataDir> {
    let path = if let Some(p) = flag {
        std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display()))?
    } else if let Some(p) = &config.data_dir {
        p.clone()
    } else if let Some(dirs) = std::env::var_os("STATE_DIRECTORY") {
        // systemd may list several, colon-separated; ours is the first.
        let first = dirs
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        PathBuf::from(first)
    } else if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/lib/hearth")
    } else if let Some(state) = std::env::var_os("XDG_STATE_HOME") {
        PathBuf::from(state).join("hearth")
    } else {
        let home = std::env::var_os("HOME").context("HOME is not set; pass --data-dir")?;
        PathBuf::from(home).join(".local/state/hearth")
    };
    Ok(DataDir::new(path))
}

pub(super) fn check_config(file: &Path) -> anyhow::Result<()> {
    let config = Config::load(file)?;
    config.check_files()?;
    for w in config.warnings() {
        eprintln!("hearth: warning: {w}");
    }
    print!("{}", config.to_toml());
    Ok(())
}

pub(super) fn init(args: RunArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref())?;
    telemetry::init(&config.log);
    let data_dir = resolve_data_dir(args.data_dir.as_deref(), &config)?;
    match crate::store::init(&data_dir, config.key_file.as_deref())? {
        InitOutcome::Created {
            key_path,
            key_written,
        } => {
            println!("initialised {}", data_dir.path().display());
            if key_written {
                println!(
                    "master key written to {} (mode 0600). Back it up somewhere safe: without it the store cannot be read.",
                    key_path.display()
                );
            } else {
                println!("using the existing master key {}", key_path.display());
            }
        }
        InitOutcome::AlreadyInitialised => {
            println!(
                "{} already holds a hearth store; nothing was changed",
                data_dir.path().display()
            );
        }
    }
    Ok(())
}

pub(super) fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref())?;
    config.check_files()?;
    telemetry::init(&config.log);
    let data_dir = resolve_data_dir(args.data_dir.as_deref(), &config)?;
    serve(config, data_dir, None)
}

/// Runs the daemon on `data_dir` until a signal; with `demo`, also the
/// simulated home (`demo::run`).
pub(super) fn serve(config: Config, data_dir: DataDir, demo: Option<demo::Options>) -> anyhow::Result<()> {
    let store = crate::store::open_or_init(&data_dir, config.key_file.as_deref())?;
    crate::supervisor::raise_nofile();
    crate::supervisor::return_large_blocks();
    let mqtt_tls = bind_all(&config.mqtt.tls_listen, "mqtt.tls_listen")?;
    let mqtt_plain = bind_all(&config.mqtt.plain_listen, "mqtt.plain_listen")?;
    let web = if config.web.enabled {
        bind_all(&config.web.listen, "web.listen")?
    } else {
        Vec::new()
    };
    let matter = if config.matter.enabled {
        Some(crate::matter::bind(config.matter.port).map_err(|e| {
            anyhow::Error::from(app::DaemonError::Matter(e))
                .context("change matter.port or stop what uses the port")
        })?)
    } else {
        None
    };

    // The sockets systemd's hearth.socket passes, taken while this process
    // has one thread (the runtime is not built yet).
    let passed = crate::net::activation::take("dns").context("the sockets systemd passed")?;
    let dns = if config.dns.enabled {
        let mut sockets = crate::dns::bind(&config.dns.listen).map_err(|e| {
            anyhow::Error::from(app::DaemonError::Dns(e))
                .context("change dns.listen, or use hearth.socket for port 53 (docs/dns.md)")
        })?;
        sockets.udp.extend(passed.udp);
        sockets.tcp.extend(passed.tcp);
        Some(sockets)
    } else {
        if !passed.is_empty() {
            tracing::warn!(
                "hearth.socket passes port 53, but [dns] enabled = false: the LAN's DNS queries to hearth go unanswered; enable [dns] or disable hearth.socket"
            );
        }
        None
    };

    let runtime = if config.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(config.worker_threads);
        b
    }
    .enable_all()
    .thread_name("hearth")
    .build()
    .context("cannot start the async runtime")?;
    let grace = config.shutdown_grace;
    let result = runtime.block_on(async move {
        let token = CancellationToken::new();
        let admin = crate::app::admin::bind(data_dir.path())?;
        let bound = app::Bound {
            mqtt_tls,
            mqtt_plain,
            admin,
            web,
            matter,
            dns,
        };
        let dir = data_dir.path().to_path_buf();
        // The demo's simulated firmware learns each credential that
        // adoption issues in process, never from a file or a log.
        let (issued, issued_rx) = match demo {
            Some(options) if options.firmware => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            _ => (None, None),
        };
        let mut daemon = tokio::spawn(app::run_with_tap(
            config,
            data_dir,
            store,
            bound,
            token.clone(),
            issued,
        ));
        if let Some(options) = demo {
            let token = token.clone();
            tokio::spawn(async move {
                if let Err(error) = demo::run(dir, token.clone(), options.leave_pending, issued_rx).await {
                    eprintln!("hearth demo: {error:#}");
                    token.cancel();
                }
            });
        }
        let signal = tokio::select! {
            s = stop_signal() => s.context("cannot install signal handlers")?,
            finished = &mut daemon => {
                // A task failed and stopped the daemon on its own.
                return finished.context("the daemon panicked")?.map_err(anyhow::Error::from);
            }
        };
        tracing::info!(?signal, "stop requested");
        token.cancel();
        // The supervisor enforces the grace for SIGTERM; SIGINT gets one second.
        let limit = match signal {
            StopSignal::Terminate => grace + Duration::from_secs(1),
            StopSignal::Interrupt => Duration::from_secs(1),
        };
        match tokio::time::timeout(limit, daemon).await {
            Ok(finished) => finished
                .context("the daemon panicked")?
                .map_err(anyhow::Error::from),
            Err(_) => Err(anyhow::Error::from(SupervisorError::GraceExceeded {
                grace: limit,
                pending: vec!["daemon"],
            })),
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}
