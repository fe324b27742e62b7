//! The embedded MQTT broker: listeners, the credential check, and topic ACLs.
//!
//! Every decision about who may connect and where they may publish or
//! subscribe goes through this module, and it fails closed: no answer is a
//! refusal. The broker crate (rmqtt) stays behind this module's interface:
//! nothing else in hearth names it, so it could be replaced.
//!
//! ```text
//!  LAN device ──TLS──┐
//!                    ├──► front::Front (hearth's accept loop: TLS, CONNECT
//!  local tool ─plain─┘         deadline, caps)   │ loopback
//!                                                ▼
//!                          rmqtt (internal listener) ──► hooks::Decider
//!                                                  (auth, ACL, hub tap)
//! ```
//!
//! rmqtt's own log output never reaches hearth's logs (`telemetry` drops
//! its targets whatever `RUST_LOG` says): it names client addresses and ids
//! and repeats topic filters verbatim.

pub mod acl;
pub mod connect;
pub mod front;
pub mod hooks;

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use rmqtt::codec::types::{Publish as CodecPublish, QoS};
use rmqtt::codec::v5::PublishProperties;
use rmqtt::context::ServerContext;
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::session::SessionState;
use rmqtt::types::{ClientId, From as MsgFrom, Id, Publish};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use self::connect::{Credentials, Identity, Owner};
use self::front::{Front, Mode};
use self::hooks::HookStats;
pub use self::hooks::HubMessage;
use crate::net::pki::TlsFiles;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "the environment sets {0}, which would override the broker's built-in settings (such as where \
         retained messages are kept). Unset it and start again"
    )]
    EnvOverride(String),
    #[error("cannot listen for MQTT on {addr}: {message}")]
    Bind { addr: SocketAddr, message: String },
    #[error(transparent)]
    NotArmed(#[from] hooks::NotArmed),
    #[error("MQTT TLS: {0}")]
    Tls(#[from] crate::net::tls::TlsError),
    #[error("the broker failed: {0}")]
    Internal(String),
    #[error("hearth may not publish to that topic")]
    TopicDenied,
}

/// A validated egress bridge.
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    /// `host:port` of the upstream broker; always TLS.
    pub upstream: String,
    pub ca_file: Option<std::path::PathBuf>,
    pub username: Option<String>,
    pub password: Option<crate::store::secret::Secret>,
    pub client_id: String,
    pub topics: Vec<String>,
    pub remote_prefix: String,
    pub qos: u8,
}

/// Limits that keep bad input from taking the broker down.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_packet_size: u32,
    pub max_inflight: u16,
    pub max_queue: usize,
    pub session_expiry: Duration,
    pub message_expiry: Duration,
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub connect_rate_per_sec: u32,
    pub connect_burst: u32,
    pub max_retained: usize,
    pub max_retained_payload: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_packet_size: 256 * 1024,
            max_inflight: 16,
            max_queue: 1000,
            session_expiry: Duration::from_secs(2 * 3600),
            message_expiry: Duration::from_secs(5 * 60),
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            connect_rate_per_sec: 5,
            connect_burst: 20,
            max_retained: 10_000,
            max_retained_payload: 64 * 1024,
        }
    }
}

/// What the broker listens on, already bound by the caller.
pub struct Listeners {
    /// MQTT over TLS.
    pub tls: Vec<std::net::TcpListener>,
    /// Plain MQTT.
    pub plain: Vec<std::net::TcpListener>,
}

/// A running broker.
pub struct Broker {
    scx: ServerContext,
    creds: Arc<Credentials>,
    hook_stats: Arc<HookStats>,
    front: Arc<Front>,
    hub: broadcast::Sender<HubMessage>,
    tls_addrs: Vec<SocketAddr>,
    plain_addrs: Vec<SocketAddr>,
    server: std::sync::Mutex<Option<JoinHandle<()>>>,
    token: CancellationToken,
}

/// Counts, for status and metrics.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BrokerStats {
    pub connections: isize,
    pub sessions: isize,
    pub identities: usize,
    pub connects_allowed: u64,
    pub refused_credentials: u64,
    pub refused_client_id: u64,
    pub refused_will: u64,
    pub refused_duplicate: u64,
    pub refused_sessions: u64,
    pub takeovers: u64,
    pub denied_publish: u64,
    pub denied_subscribe: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub accepted: u64,
    pub refused_rate: u64,
    pub refused_capacity: u64,
    pub handshake_failed: u64,
    pub handshake_timeout: u64,
}

fn listener_builder(name: &str, addr: SocketAddr, limits: &Limits) -> Builder {
    Builder::new()
        .name(name)
        .laddr(addr)
        .allow_anonymous(false)
        .max_packet_size(limits.max_packet_size)
        .max_inflight(NonZeroU16::new(limits.max_inflight.max(1)).expect("non-zero"))
        .max_mqueue_len(limits.max_queue)
        .session_expiry_interval(limits.session_expiry)
        .max_session_expiry_interval(limits.session_expiry)
        .message_expiry_interval(limits.message_expiry)
        .reuseaddr(Some(true))
        .nodelay(true)
        .max_connections(limits.max_connections)
        .max_handshaking_limit(limits.max_connections.min(1024))
        .handshake_timeout(limits.handshake_timeout)
        .max_clientid_len(64)
        .max_topic_levels(acl::MAX_LEVELS)
}

/// Binds through the broker crate and records the real address, so port 0
/// works (its handshake executor is keyed by the configured port).
fn bind(builder: Builder) -> Result<(rmqtt::net::Listener, SocketAddr), BrokerError> {
    let want = builder.laddr;
    let bind_err = |e: rmqtt::Error| BrokerError::Bind {
        addr: want,
        message: e.to_string(),
    };
    let mut listener = builder.bind().map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    Arc::make_mut(&mut listener.cfg).laddr = addr;
    Ok((listener, addr))
}

impl Broker {
    /// Starts the broker: context, retained store, access hooks (proved
    /// armed), then listeners. Nothing accepts a connection before the
    /// hooks are armed.
    pub async fn start(
        listeners: Listeners,
        tls_files: &TlsFiles,
        limits: Limits,
        creds: Arc<Credentials>,
        bridge: Option<&BridgeConfig>,
    ) -> Result<Broker, BrokerError> {
        if let Some((name, _)) = std::env::vars_os().find(|(k, _)| {
            k.to_str()
                .is_some_and(|k| k.to_ascii_lowercase().starts_with("rmqtt_plugin_"))
        }) {
            return Err(BrokerError::EnvOverride(name.to_string_lossy().into_owned()));
        }
        // Retained messages live in memory only, bounded, and never expire on
        // their own (Home Assistant discovery relies on them).
        let retainer = format!(
            "storage.type = \"ram\"\nmax_retained_messages = {}\nmax_payload_size = \"{}KB\"\nretained_message_ttl = \"0s\"\n",
            limits.max_retained,
            limits.max_retained_payload / 1024
        );
        let mut builder = ServerContext::new()
            .node_id(1)
            .busy_check_enable(false)
            .mqtt_max_sessions(limits.max_connections as isize)
            .plugins_config_map_add("rmqtt-retainer", &retainer);
        if let Some(bridge) = bridge {
            builder = builder.plugins_config_map_add(BRIDGE_PLUGIN, bridge_toml(bridge));
        }
        let scx = builder.build().await;
        rmqtt_retainer::register(&scx, true, false)
            .await
            .map_err(|e| BrokerError::Internal(format!("retained store: {e}")))?;

        let hook_stats = Arc::new(HookStats::default());
        let (hub, _) = broadcast::channel(1024);
        hooks::install(
            &scx,
            creds.clone(),
            hook_stats.clone(),
            hub.clone(),
            hooks::deciding_types(),
            bridge.is_some(),
            true,
        )
        .await?;

        // The front's upstream: the broker crate's only listener, on loopback.
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let (internal, internal_addr) = bind(listener_builder("internal", loopback, &limits))?;
        let server = MqttServer::new(scx.clone())
            .listener_by_id(internal.tcp().map_err(internal_err)?, 1)
            .build();

        let config = crate::net::tls::server_config(&tls_files.server_cert, &tls_files.server_key)?;
        let rate = connect::ConnectRate::new(limits.connect_rate_per_sec, limits.connect_burst, 4096);
        let front = Arc::new(Front::new(config, internal_addr, &limits, rate));
        let token = CancellationToken::new();
        let serve =
            |listeners: Vec<std::net::TcpListener>, mode: Mode| -> Result<Vec<SocketAddr>, BrokerError> {
                let io = |e: std::io::Error| BrokerError::Internal(e.to_string());
                let mut addrs = Vec::new();
                for std_listener in listeners {
                    let addr = std_listener.local_addr().map_err(io)?;
                    std_listener.set_nonblocking(true).map_err(io)?;
                    let listener = tokio::net::TcpListener::from_std(std_listener).map_err(io)?;
                    tokio::spawn(front.clone().serve(listener, mode, token.clone()));
                    addrs.push(addr);
                }
                Ok(addrs)
            };
        let tls_addrs = serve(listeners.tls, Mode::Tls)?;
        let plain_addrs = serve(listeners.plain, Mode::Plain)?;
        let server = tokio::spawn(async move {
            if let Err(error) = server.run().await {
                tracing::error!(%error, "mqtt broker stopped");
            }
        });
        // The bridge starts only after the guard that keeps denied publishes
        // from it is armed (with the other hooks, above).
        if bridge.is_some() {
            rmqtt_bridge_egress_mqtt::register(&scx, true, false)
                .await
                .map_err(|e| BrokerError::Internal(format!("bridge: {e}")))?;
            tracing::info!("egress bridge enabled");
        }
        tracing::info!(
            tls = tls_addrs.len(),
            plain = plain_addrs.len(),
            "mqtt broker listening"
        );
        Ok(Broker {
            scx,
            creds,
            hook_stats,
            front,
            hub,
            tls_addrs,
            plain_addrs,
            server: std::sync::Mutex::new(Some(server)),
            token,
        })
    }

    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    pub fn plain_addrs(&self) -> &[SocketAddr] {
        &self.plain_addrs
    }

    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.creds
    }

    /// Swaps in a renewed server certificate.
    pub fn reload_tls(&self, files: &TlsFiles) -> Result<(), BrokerError> {
        self.front.reload(crate::net::tls::server_config(
            &files.server_cert,
            &files.server_key,
        )?);
        Ok(())
    }

    /// Messages devices published that the ACL allowed.
    pub fn subscribe_hub(&self) -> broadcast::Receiver<HubMessage> {
        self.hub.subscribe()
    }

    /// Cuts the live session with this client id, if there is one.
    pub async fn kick(&self, client_id: &str) -> bool {
        let mut entry = self
            .scx
            .extends
            .shared()
            .await
            .entry(Id::from(self.scx.node.id(), ClientId::from(client_id.to_owned())));
        if entry.session().is_none() {
            return false;
        }
        entry.kick(true, true, true).await.is_ok()
    }

    /// The client ids connected now under `username`'s identity.
    pub async fn sessions_of(&self, username: &str) -> Vec<String> {
        let mut online = Vec::new();
        for c in self.tracked_sessions(username).await {
            if self.is_online(&c).await {
                online.push(c);
            }
        }
        online
    }

    /// The client ids of every session the broker holds under `username`'s
    /// identity, connected or kept for a client that will resume it: what
    /// revocation cuts and narrowing narrows.
    pub async fn tracked_sessions(&self, username: &str) -> Vec<String> {
        let Some(identity) = self.creds.get(username) else {
            return Vec::new();
        };
        let candidates = match &identity.client_id {
            Some(c) => vec![c.clone()],
            None => self.creds.sessions_of(&identity.secret),
        };
        let mut held = Vec::new();
        for c in candidates {
            if session_exists(&self.scx, &c).await {
                held.push(c);
            }
        }
        held
    }

    /// Drops every subscription of `username`'s live sessions that its
    /// identity's rules no longer allow, so narrowing an identity's rules
    /// also narrows what it already subscribed to. Returns how many were
    /// dropped.
    pub async fn enforce_subscriptions(&self, username: &str) -> usize {
        let Some(identity) = self.creds.get(username) else {
            return 0;
        };
        let mut dropped = 0;
        for client_id in self.tracked_sessions(username).await {
            let shared = self.scx.extends.shared().await;
            // The router keys subscriptions by the session's whole id
            // (address, username, ...), not the client id alone.
            let Some(session) = shared
                .entry(Id::from(self.scx.node.id(), ClientId::from(client_id)))
                .session()
            else {
                continue;
            };
            let entry = shared.entry(session.id.clone());
            for sub in entry.subscriptions().await.unwrap_or_default() {
                let filter: &str = sub.topic.as_ref();
                if acl::decide(&identity.principal, acl::Action::Subscribe, filter) == acl::Decision::Allow {
                    continue;
                }
                match rmqtt::types::Unsubscribe::from(&sub.topic, false, false) {
                    Ok(unsub) => {
                        if entry.unsubscribe(&unsub).await.unwrap_or(false) {
                            dropped += 1;
                        }
                    }
                    Err(error) => tracing::warn!(%error, "a subscription could not be dropped"),
                }
            }
        }
        dropped
    }

    /// Whether a session with this client id is connected now.
    pub async fn is_online(&self, client_id: &str) -> bool {
        session_online(&self.scx, client_id).await
    }

    /// Publishes as hearth itself. Only `$` topics and wildcards are refused.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos: u8,
        retain: bool,
    ) -> Result<(), BrokerError> {
        if acl::decide(&acl::Principal::Hub, acl::Action::Publish, topic) != acl::Decision::Allow {
            return Err(BrokerError::TopicDenied);
        }
        let from = MsgFrom::from_system(Id::new(
            self.scx.node.id(),
            0,
            None,
            None,
            ClientId::from_static("hearth"),
            None,
        ));
        let qos = match qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        let publish = CodecPublish {
            dup: false,
            retain,
            qos,
            topic: topic.into(),
            packet_id: None,
            payload,
            properties: Some(PublishProperties::default()),
        };
        let publish = Publish::from(publish).create_time(rmqtt::utils::timestamp_millis());
        let expiry = (!retain).then(|| Duration::from_secs(300));
        SessionState::forwards(&self.scx, from, publish, false, expiry)
            .await
            .map_err(|e| BrokerError::Internal(e.to_string()))
    }

    pub async fn stats(&self) -> BrokerStats {
        let h = &self.hook_stats;
        let f = &self.front.stats;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        BrokerStats {
            connections: self.scx.connections.count(),
            sessions: self.scx.sessions.count(),
            identities: self.creds.len(),
            connects_allowed: get(&h.connects_allowed),
            refused_credentials: get(&h.refused_credentials),
            refused_client_id: get(&h.refused_client_id),
            refused_will: get(&h.refused_will),
            refused_duplicate: get(&h.refused_duplicate),
            refused_sessions: get(&h.refused_sessions),
            takeovers: get(&h.takeovers),
            denied_publish: get(&h.denied_publish),
            denied_subscribe: get(&h.denied_subscribe),
            messages_in: get(&h.messages_in),
            messages_out: get(&h.messages_out),
            accepted: get(&f.accepted),
            refused_rate: get(&f.refused_rate),
            refused_capacity: get(&f.refused_capacity),
            handshake_failed: get(&f.handshake_failed),
            handshake_timeout: get(&f.handshake_timeout),
        }
    }

    /// Stops accepting, cuts every session, and stops the broker's tasks.
    pub async fn shutdown(&self) {
        self.token.cancel();
        let server = self.server.lock().expect("server lock").take();
        if let Some(server) = server {
            server.abort();
            let _ = server.await;
        }
        let ids: Vec<String> = self
            .scx
            .extends
            .shared()
            .await
            .iter()
            .map(|e| e.id().client_id.to_string())
            .collect();
        for id in ids {
            self.kick(&id).await;
        }
    }
}

const BRIDGE_PLUGIN: &str = "rmqtt-bridge-egress-mqtt";

/// A TOML string with TOML's own quoting, so no value can break out of it.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The bridge plugin's configuration. It holds the upstream password, so it
/// lives only in memory and is never logged.
fn bridge_toml(b: &BridgeConfig) -> String {
    let mut out = String::from("[[bridges]]\nenable = true\nname = \"upstream\"\n");
    out += &format!("client_id_prefix = {}\n", toml_str(&b.client_id));
    out += &format!("server = {}\n", toml_str(&format!("tls://{}", b.upstream)));
    if let Some(ca) = &b.ca_file {
        out += &format!("root_cert = {}\n", toml_str(&ca.display().to_string()));
    }
    if let Some(user) = &b.username {
        out += &format!("username = {}\n", toml_str(user));
    }
    if let Some(password) = &b.password {
        out += &format!("password = {}\n", toml_str(password.expose()));
    }
    out += "concurrent_client_limit = 1\nconnect_timeout = \"10s\"\nkeepalive = \"60s\"\n";
    out += "reconnect_interval = \"5s\"\nmessage_channel_capacity = 100000\nmqtt_ver = \"v4\"\nv4.clean_session = true\n";
    for topic in &b.topics {
        out += "[[bridges.entries]]\n";
        out += &format!("local.topic_filter = {}\n", toml_str(topic));
        out += &format!("remote.qos = {}\nremote.retain = false\n", b.qos);
        out += &format!(
            "remote.topic = {}\n",
            toml_str(&format!("{}/${{local.topic}}", b.remote_prefix))
        );
    }
    out
}

/// Who holds the connected session with this client id: `None` when none
/// is connected, else its username (if it gave one).
async fn session_owner(scx: &ServerContext, client_id: &str) -> Option<Option<String>> {
    let entry = scx
        .extends
        .shared()
        .await
        .entry(Id::from(scx.node.id(), ClientId::from(client_id.to_owned())));
    let session = entry.session()?;
    if !session.connected().await.unwrap_or(false) {
        return None;
    }
    Some(session.id.username.as_ref().map(|u| u.to_string()))
}

/// Whether the broker holds a session with this client id, connected or not.
async fn session_exists(scx: &ServerContext, client_id: &str) -> bool {
    scx.extends
        .shared()
        .await
        .entry(Id::from(scx.node.id(), ClientId::from(client_id.to_owned())))
        .session()
        .is_some()
}

/// Whether a session with this client id is connected now.
async fn session_online(scx: &ServerContext, client_id: &str) -> bool {
    let entry = scx
        .extends
        .shared()
        .await
        .entry(Id::from(scx.node.id(), ClientId::from(client_id.to_owned())));
    match entry.session() {
        Some(session) => session.connected().await.unwrap_or(false),
        None => false,
    }
}

fn internal_err(e: rmqtt::Error) -> BrokerError {
    BrokerError::Internal(e.to_string())
}
#[cfg(test)]
impl Broker {
    /// A broker with default limits, an empty credential table and no
    /// listener, for the tests of what drives it.
    pub(crate) async fn listening_nowhere(files: &TlsFiles) -> Broker {
        let listeners = Listeners {
            tls: vec![],
            plain: vec![],
        };
        Broker::start(
            listeners,
            files,
            Limits::default(),
            Arc::new(Credentials::new()),
            None,
        )
        .await
        .expect("a broker on no listener starts")
    }
}
