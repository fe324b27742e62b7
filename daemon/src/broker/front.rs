//! The MQTT front: hearth's own accept loop on every listener the caller
//! bound, TLS or plain. It terminates TLS, waits for a whole CONNECT packet,
//! and only then splices the connection to the broker's internal loopback
//! listener.
//!
//! hearth owns this rather than leaving it to the broker crate, so that the
//! server's cipher order is enforced, the certificate can be renewed without
//! a restart, a connection that never sends its CONNECT is closed at a
//! deadline (the broker crate's version probe has none), connections are
//! capped, and a flooding address is refused before any TLS work. It never
//! logs a client's address.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
/// ARM (no AES instructions on a Pi 4), AES-GCM first elsewhere. This is
/// hearth's one TLS policy: the dashboard, MQTT and the voice relay all
/// build their configuration here.
///
/// hearth's own certificates are ECDSA; the relay serves one the owner
/// supplies, which may be RSA, so the RSA twins of the TLS 1.2 suites
/// follow the ECDSA ones. rustls offers a TLS 1.2 suite only for the key
/// type of the certificate, so an ECDSA listener never offers them.
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
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ]
    } else {
        vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
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

/// Whether a listener speaks TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Tls,
    Plain,
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

/// The shared state of every listener.
pub struct Front {
    config: RwLock<Arc<ServerConfig>>,
    upstream: SocketAddr,
    handshake_timeout: Duration,
    max_packet_size: usize,
    capacity: Arc<Semaphore>,
    rate: ConnectRate,
    pub stats: FrontStats,
}

impl Front {
    pub fn new(
        config: ServerConfig,
        upstream: SocketAddr,
        limits: &super::Limits,
        rate: ConnectRate,
    ) -> Front {
        Front {
            config: RwLock::new(Arc::new(config)),
            upstream,
            handshake_timeout: limits.handshake_timeout,
            max_packet_size: limits.max_packet_size as usize,
            capacity: Arc::new(Semaphore::new(limits.max_connections)),
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
    pub async fn serve(self: Arc<Self>, listener: TcpListener, mode: Mode, token: CancellationToken) {
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
                    _ = front.handle(tcp, mode) => {}
                }
                drop(permit);
            });
        }
    }

    async fn handle(&self, tcp: TcpStream, mode: Mode) {
        let _ = tcp.set_nodelay(true);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
        match mode {
            Mode::Plain => self.admit(tcp, fd).await,
            Mode::Tls => {
                let acceptor = TlsAcceptor::from(self.config.read().expect("tls config lock").clone());
                let deadline = tokio::time::Instant::now() + self.handshake_timeout;
                match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => self.admit(tls, fd).await,
                    Ok(Err(_)) => {
                        self.stats.handshake_failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        self.stats.handshake_timeout.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Waits for a whole CONNECT within the handshake deadline, then hands
    /// the connection to the broker. `fd` is the client's TCP socket.
    async fn admit<S: AsyncRead + AsyncWrite + Unpin>(&self, mut client: S, fd: RawFd) {
        let first = match tokio::time::timeout(
            self.handshake_timeout,
            read_connect(&mut client, self.max_packet_size),
        )
        .await
        {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                self.stats.handshake_failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(_) => {
                self.stats.handshake_timeout.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let Ok(mut upstream) = TcpStream::connect(self.upstream).await else {
            tracing::warn!("mqtt front cannot reach the broker");
            return;
        };
        let _ = upstream.set_nodelay(true);
        if upstream.write_all(&first).await.is_err() {
            return;
        }
        splice(client, fd, upstream).await;
    }
}

/// Copies both ways until either side closes. After every read from the
/// client it re-arms TCP_QUICKACK, so the client's segments are acknowledged
/// at once: devices (and many client libraries) leave Nagle's algorithm on,
/// and the broker answers a QoS 1 publish in separate small writes, so a
/// delayed ACK here would stall such a client for 40 ms whenever it has
/// something queued.
async fn splice<S: AsyncRead + AsyncWrite + Unpin>(mut client: S, fd: RawFd, mut upstream: TcpStream) {
    // One task, both directions: no lock around the TLS stream and no
    // wake-up hand-off between tasks on the per-message path. MQTT packets
    // from home devices are small, so a write never holds the other
    // direction up for long.
    let mut inbound = vec![0u8; SPLICE_BUFFER];
    let mut outbound = vec![0u8; SPLICE_BUFFER];
    loop {
        tokio::select! {
            read = client.read(&mut inbound) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                quickack(fd);
                if upstream.write_all(&inbound[..n]).await.is_err() {
                    return;
                }
            }
            read = upstream.read(&mut outbound) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if client.write_all(&outbound[..n]).await.is_err() || client.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

fn quickack(fd: RawFd) {
    let one: libc::c_int = 1;
    // Best effort: a failure only means a delayed ACK.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Reads until `buf` holds a whole MQTT CONNECT packet, and returns every
/// byte read (a client may send more packets right behind it). `None` if the
/// first packet is not a CONNECT, is larger than `max`, or the peer closes.
async fn read_connect<S: AsyncRead + Unpin>(client: &mut S, max: usize) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(total) = connect_len(&buf, max)?
            && buf.len() >= total
        {
            return Some(buf);
        }
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The total length of the CONNECT at the start of `buf`: `Some(None)` while
/// more bytes are needed, `None` if it is not a CONNECT or is too large.
fn connect_len(buf: &[u8], max: usize) -> Option<Option<usize>> {
    let Some(&first) = buf.first() else {
        return Some(None);
    };
    if first != 0x10 {
        return None;
    }
    let mut remaining = 0usize;
    for i in 1..5 {
        let Some(&b) = buf.get(i) else { return Some(None) };
        remaining += usize::from(b & 0x7f) << (7 * (i - 1));
        if b & 0x80 == 0 {
            let total = i + 1 + remaining;
            return (total <= max).then_some(Some(total));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_framing() {
        let max = 1000;
        assert_eq!(connect_len(&[], max), Some(None));
        assert_eq!(connect_len(&[0x10], max), Some(None));
        assert_eq!(connect_len(&[0x10, 5], max), Some(Some(7)));
        assert_eq!(connect_len(&[0x10, 0x80], max), Some(None));
        assert_eq!(connect_len(&[0x10, 0x80, 0x01], max), Some(Some(131)));
        // Not a CONNECT: a CONNACK, a PUBLISH, garbage.
        assert_eq!(connect_len(&[0x20, 2, 0, 0], max), None);
        assert_eq!(connect_len(&[0x30, 1], max), None);
        assert_eq!(connect_len(&[0xff], max), None);
        // Larger than allowed, or a length that never ends.
        assert_eq!(connect_len(&[0x10, 0xff, 0x7f], max), None);
        assert_eq!(
            connect_len(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x01], usize::MAX),
            None
        );
    }

    #[tokio::test]
    async fn reads_exactly_a_connect_and_what_follows() {
        let mut input: &[u8] = &[0x10, 3, 1, 2, 3, 0x82, 9];
        assert_eq!(
            read_connect(&mut input, 100).await.unwrap(),
            vec![0x10, 3, 1, 2, 3, 0x82, 9]
        );
        let mut short: &[u8] = &[0x10, 3, 1];
        assert_eq!(read_connect(&mut short, 100).await, None);
        let mut wrong: &[u8] = &[0x20, 2, 0, 0];
        assert_eq!(read_connect(&mut wrong, 100).await, None);
    }
}
