//! The MQTT-over-TLS front: hearth's own accept loop on a listener the
//! caller bound. It terminates TLS and splices the plaintext to the broker's
//! internal loopback listener.
//!
//! hearth owns TLS here rather than leaving it to the broker crate, so that
//! the server's cipher order is enforced, the certificate can be renewed
//! without a restart, every handshake has a deadline, connections are capped,
//! and a flooding address is refused before any TLS work. It never logs a
//! client's address.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::auth::ConnectRate;

/// Bytes buffered in each direction of a spliced connection. MQTT packets
/// from home devices are small; 4 KiB keeps 1,000 connections cheap.
const SPLICE_BUFFER: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Pem { path: String, message: String },
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the server's TLS configuration: TLS 1.3 and 1.2 only, ECDHE with
/// AEAD suites only, the server's order enforced. ChaCha20 comes first on
/// ARM (no AES instructions on a Pi 4), AES-GCM first elsewhere.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let pem_err = |path: &Path, e: rustls::pki_types::pem::Error| TlsError::Pem {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_err(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(cert, e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;

    use provider::cipher_suite as cs;
    let suites = if cfg!(any(target_arch = "aarch64", target_arch = "arm")) {
        vec![
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ]
    } else {
        vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ]
    };
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites,
        ..provider::default_provider()
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.ignore_client_order = true;
    Ok(config)
}

/// Counters the front keeps. Counts only.
#[derive(Debug, Default)]
pub struct FrontStats {
    pub accepted: AtomicU64,
    pub refused_rate: AtomicU64,
    pub refused_capacity: AtomicU64,
    pub handshake_failed: AtomicU64,
    pub handshake_timeout: AtomicU64,
}

/// The shared state of every TLS listener.
pub struct TlsFront {
    config: RwLock<Arc<ServerConfig>>,
    upstream: SocketAddr,
    handshake_timeout: Duration,
    capacity: Arc<Semaphore>,
    rate: ConnectRate,
    pub stats: FrontStats,
}

impl TlsFront {
    pub fn new(
        config: ServerConfig,
        upstream: SocketAddr,
        handshake_timeout: Duration,
        max_connections: usize,
        rate: ConnectRate,
    ) -> TlsFront {
        TlsFront {
            config: RwLock::new(Arc::new(config)),
            upstream,
            handshake_timeout,
            capacity: Arc::new(Semaphore::new(max_connections)),
            rate,
            stats: FrontStats::default(),
        }
    }

    /// Swaps in a renewed certificate; new connections use it at once.
    pub fn reload(&self, config: ServerConfig) {
        *self.config.write().expect("tls config lock") = Arc::new(config);
    }

    /// Accepts until `token` is cancelled. Each connection is its own task,
    /// cut when `token` is cancelled.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, token: CancellationToken) {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = token.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(error) => {
                        // Out of descriptors, usually: back off instead of spinning.
                        tracing::warn!(%error, "mqtt tls accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            if !self.rate.allow(peer.ip(), Instant::now()) {
                self.stats.refused_rate.fetch_add(1, Ordering::Relaxed);
                continue; // dropped: closes the socket
            }
            let Ok(permit) = self.capacity.clone().try_acquire_owned() else {
                self.stats.refused_capacity.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            let front = self.clone();
            let token = token.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = token.cancelled() => {}
                    _ = front.handle(tcp) => {}
                }
                drop(permit);
            });
        }
    }

    async fn handle(&self, tcp: TcpStream) {
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(self.config.read().expect("tls config lock").clone());
        let mut tls = match tokio::time::timeout(self.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(_)) => {
                self.stats.handshake_failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(_) => {
                self.stats.handshake_timeout.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let Ok(mut upstream) = TcpStream::connect(self.upstream).await else {
            tracing::warn!("mqtt tls front cannot reach the broker");
            return;
        };
        let _ = upstream.set_nodelay(true);
        let _ =
            tokio::io::copy_bidirectional_with_sizes(&mut tls, &mut upstream, SPLICE_BUFFER, SPLICE_BUFFER)
                .await;
    }
}
