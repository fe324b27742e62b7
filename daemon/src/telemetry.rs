//! Logging set-up: journald under systemd, text on stderr otherwise.
//!
//! What gets logged is decided at each call site, and the rule there is
//! counts and opaque ids only. This module only decides where logs go.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. `RUST_LOG` overrides the configured level.
/// Calling it twice is harmless (the second call changes nothing).
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("hearth={0},warn", config.level)));
    let journald = match config.format {
        LogFormat::Journald => true,
        LogFormat::Text => false,
        // systemd sets JOURNAL_STREAM when stderr goes to the journal.
        LogFormat::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    if journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                let _ = registry
                    .with(layer.with_syslog_identifier("hearth".into()))
                    .try_init();
                return;
            }
            Err(error) => eprintln!("hearth: journald is not reachable ({error}); logging to stderr"),
        }
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = registry.with(fmt).try_init();
}
