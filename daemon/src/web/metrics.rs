//! `/metrics`: counts in the Prometheus text format, for the owner's own
//! monitoring. Every label value is a fixed word (a device kind, a state,
//! an outcome); no name, address, topic or id ever appears, so the output
//! can be scraped into any monitoring system without leaking the home.
//!
//! Who may read it is `web.metrics`: loopback clients only (the default),
//! a read-only bearer token from `hearth metrics token`, or nobody.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::accounts::Counters;
use crate::broker::Broker;
use crate::home::devices::{DeviceError, Devices};
use crate::store::{DeviceKind, DeviceStatus};

/// Who may read `/metrics` on the dashboard listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsAccess {
    /// Clients on a loopback address, without a token.
    Loopback,
    /// Any client with the bearer token from `hearth metrics token`.
    Token,
    /// Nobody: `/metrics` is not served.
    Off,
}

/// What a scrape reads.
pub struct Metrics {
    /// Who may read them.
    pub access: MetricsAccess,
    pub broker: Arc<Broker>,
    pub devices: Arc<Devices>,
    pub counters: Arc<Counters>,
    /// The database and its write-ahead log, for the store size.
    pub db_path: PathBuf,
    pub started: Instant,
    /// The DNS resolver, when `[dns] enabled`: counts only, never a name.
    pub dns: Option<Arc<crate::dns::Dns>>,
}

impl Metrics {
    /// The whole exposition, in the Prometheus text format (0.0.4).
    pub async fn render(&self) -> Result<String, DeviceError> {
        let mut out = String::with_capacity(4096);
        let devices = self.devices.list().await?;
        family(
            &mut out,
            "hearth_devices",
            "gauge",
            "Devices by kind and state (pending, online or offline).",
        );
        for kind in DeviceKind::ALL {
            for state in ["pending", "online", "offline"] {
                let n = devices
                    .iter()
                    .filter(|d| d.kind == kind)
                    .filter(|d| match (d.status, state) {
                        (DeviceStatus::Pending, "pending") => true,
                        (DeviceStatus::Adopted, "online") => d.online,
                        (DeviceStatus::Adopted, "offline") => !d.online,
                        _ => false,
                    })
                    .count();
                let _ = writeln!(
                    out,
                    "hearth_devices{{kind=\"{}\",state=\"{state}\"}} {n}",
                    kind.as_str()
                );
            }
        }

        let s = self.broker.stats().await;
        family(
            &mut out,
            "hearth_mqtt_connections",
            "gauge",
            "Open MQTT connections.",
        );
        sample(&mut out, "hearth_mqtt_connections", s.connections as u64);
        family(
            &mut out,
            "hearth_mqtt_messages_received_total",
            "counter",
            "MQTT PUBLISH packets received from clients.",
        );
        sample(&mut out, "hearth_mqtt_messages_received_total", s.messages_in);
        family(
            &mut out,
            "hearth_mqtt_messages_sent_total",
            "counter",
            "MQTT PUBLISH packets delivered to clients.",
        );
        sample(&mut out, "hearth_mqtt_messages_sent_total", s.messages_out);
        family(
            &mut out,
            "hearth_mqtt_acl_denied_total",
            "counter",
            "Publishes and subscriptions refused by a topic ACL.",
        );
        let _ = writeln!(
            out,
            "hearth_mqtt_acl_denied_total{{action=\"publish\"}} {}",
            s.denied_publish
        );
        let _ = writeln!(
            out,
            "hearth_mqtt_acl_denied_total{{action=\"subscribe\"}} {}",
            s.denied_subscribe
        );
        family(
            &mut out,
            "hearth_mqtt_connects_refused_total",
            "counter",
            "MQTT connections refused before a session.",
        );
        for (why, n) in [
            ("credentials", s.refused_credentials),
            ("client_id", s.refused_client_id),
            ("will", s.refused_will),
            ("duplicate", s.refused_duplicate),
            ("sessions", s.refused_sessions),
            ("rate", s.refused_rate),
            ("capacity", s.refused_capacity),
            ("handshake", s.handshake_failed + s.handshake_timeout),
        ] {
            let _ = writeln!(out, "hearth_mqtt_connects_refused_total{{reason=\"{why}\"}} {n}");
        }

        let c = &self.counters;
        family(
            &mut out,
            "hearth_logins_total",
            "counter",
            "Dashboard logins that opened a session.",
        );
        sample(&mut out, "hearth_logins_total", c.logins.load(Ordering::Relaxed));
        family(
            &mut out,
            "hearth_login_failures_total",
            "counter",
            "Wrong passwords or two-factor codes, at any form that asks for them.",
        );
        sample(
            &mut out,
            "hearth_login_failures_total",
            c.login_failures.load(Ordering::Relaxed),
        );
        family(
            &mut out,
            "hearth_login_throttled_total",
            "counter",
            "Login attempts refused by the throttle before any password check.",
        );
        sample(
            &mut out,
            "hearth_login_throttled_total",
            c.login_throttled.load(Ordering::Relaxed),
        );
        family(
            &mut out,
            "hearth_relay_connections_refused_total",
            "counter",
            "Relay connections refused or closed before a request: over the per-address cap, the relay full, evicted while idle to make room, or ended without a request (a deadline passed, the handshake failed, or the client left).",
        );
        for (why, n) in [
            ("address_cap", &c.relay_refused_address),
            ("full", &c.relay_refused_full),
            ("evicted_idle", &c.relay_evicted),
            ("no_request", &c.relay_no_request),
        ] {
            let _ = writeln!(
                out,
                "hearth_relay_connections_refused_total{{reason=\"{why}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        family(
            &mut out,
            "hearth_relay_calls_total",
            "counter",
            "Voice assistant calls through the relay.",
        );
        sample(
            &mut out,
            "hearth_relay_calls_total",
            c.relay_calls.load(Ordering::Relaxed),
        );

        if let Some(dns) = &self.dns {
            let n = dns.counts();
            family(
                &mut out,
                "hearth_dns_queries_total",
                "counter",
                "DNS queries received, from adopted devices and from other clients (rate-limited ones included).",
            );
            let _ = writeln!(
                out,
                "hearth_dns_queries_total{{from=\"device\"}} {}",
                n.from_devices
            );
            let _ = writeln!(
                out,
                "hearth_dns_queries_total{{from=\"other\"}} {}",
                n.from_others
            );
            family(
                &mut out,
                "hearth_dns_answers_total",
                "counter",
                "DNS queries by how they were answered.",
            );
            for (how, v) in [
                ("cache", n.cache_hits),
                ("forwarded", n.forwarded),
                ("blocked", n.blocked),
                ("local", n.local),
                ("failed", n.failed),
                ("refused", n.refused),
                ("malformed", n.malformed),
                ("rate_limited", n.rate_limited),
            ] {
                let _ = writeln!(out, "hearth_dns_answers_total{{how=\"{how}\"}} {v}");
            }
            family(
                &mut out,
                "hearth_dns_tcp_turned_away_total",
                "counter",
                "DNS TCP connections closed at once: too many open, in all or from one address.",
            );
            sample(&mut out, "hearth_dns_tcp_turned_away_total", n.tcp_turned_away);
            family(
                &mut out,
                "hearth_dns_cache_entries",
                "gauge",
                "Answers in the DNS cache.",
            );
            sample(&mut out, "hearth_dns_cache_entries", dns.cache_entries() as u64);
        }

        family(
            &mut out,
            "hearth_store_bytes",
            "gauge",
            "Size of the encrypted store on disk, write-ahead log included.",
        );
        sample(&mut out, "hearth_store_bytes", store_bytes(&self.db_path));
        family(
            &mut out,
            "hearth_uptime_seconds",
            "gauge",
            "Seconds since hearth started.",
        );
        sample(
            &mut out,
            "hearth_uptime_seconds",
            self.started.elapsed().as_secs(),
        );
        family(&mut out, "hearth_build_info", "gauge", "hearth's version.");
        let _ = writeln!(
            out,
            "hearth_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        Ok(out)
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, value: u64) {
    let _ = writeln!(out, "{name} {value}");
}

fn store_bytes(db: &std::path::Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    [db.to_path_buf(), PathBuf::from(wal)]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_the_label_serde_gives_it() {
        for kind in DeviceKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}
