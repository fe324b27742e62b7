//! Logging set-up: journald under systemd, text on stderr otherwise.
//!
//! What gets logged is decided at each call site, and the rule there is
//! counts and opaque ids only. This module only decides where logs go.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, LogFormat};

/// Log targets that never reach hearth's log, whatever `RUST_LOG` says: the
/// broker crate and its plugins write client ids, addresses, usernames and
/// the very topic filters a client sent (newlines included, so a client
/// could forge a log line). The Matter stack logs peers' addresses, and
/// prints pairing codes in places. The DNS crates log every query's name
/// and its client's address.
const SILENCED: &[&str] = &["rmqtt", "rs_matter", "hickory"];

/// Whether a log event from `target` may be written at all.
fn allowed(target: &str) -> bool {
    !SILENCED.iter().any(|t| target.starts_with(t))
}

/// Installs the global subscriber. `RUST_LOG` overrides the configured level.
/// By default only hearth's own events are written: a dependency's message
/// may carry what a client sent. Calling it twice is harmless (the second
/// call changes nothing).
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("hearth={0}", config.level)));
    let journald = match config.format {
        LogFormat::Journald => true,
        LogFormat::Text => false,
        // systemd sets JOURNAL_STREAM when stderr goes to the journal.
        LogFormat::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
    };
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::filter::filter_fn(|meta| {
            allowed(meta.target())
        }));
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_broker_crates_are_silenced() {
        for target in [
            "rmqtt",
            "rmqtt::session",
            "rmqtt_codec::v3",
            "rmqtt_retainer",
            "rmqtt_bridge_egress_mqtt",
            "rs_matter",
            "rs_matter::transport::core",
            "hickory_server::server",
            "hickory_resolver::name_server",
            "hickory_proto::udp",
            "hickory_net::xfer",
        ] {
            assert!(!super::allowed(target), "{target}");
        }
        for target in ["hearth", "hearth::broker::front", "rustls::server"] {
            assert!(super::allowed(target), "{target}");
        }
    }
}
