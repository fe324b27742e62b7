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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::connect::ConnectRate;
use crate::net::tls::Reloadable;

/// Bytes buffered in each direction of a spliced connection. MQTT packets
/// from home devices are small; 4 KiB keeps 1,000 connections cheap.
const SPLICE_BUFFER: usize = 4096;

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
    config: Reloadable,
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
            config: Reloadable::new(config),
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
        self.config.replace(config);
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

    /// One deadline covers the whole handshake: TLS, the CONNECT, and the
    /// broker's CONNACK. Whatever bytes a client sent, a connection that has
    /// not been answered by then is closed and its slot freed.
    async fn handle(&self, tcp: TcpStream, mode: Mode) {
        let deadline = tokio::time::Instant::now() + self.handshake_timeout;
        let _ = tcp.set_nodelay(true);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
        match mode {
            Mode::Plain => self.admit(tcp, fd, deadline).await,
            Mode::Tls => {
                let acceptor = TlsAcceptor::from(self.config.current());
                match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => self.admit(tls, fd, deadline).await,
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

    /// Waits for a whole, well-formed CONNECT before `deadline`, then hands
    /// the connection to the broker, which must answer it before the same
    /// deadline. `fd` is the client's TCP socket.
    async fn admit<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut client: S,
        fd: RawFd,
        deadline: tokio::time::Instant,
    ) {
        let first =
            match tokio::time::timeout_at(deadline, read_connect(&mut client, self.max_packet_size)).await {
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
        if splice(client, fd, upstream, deadline).await == Spliced::Unanswered {
            self.stats.handshake_timeout.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Spliced {
    Closed,
    /// The broker had not answered the CONNECT by the deadline.
    Unanswered,
}

/// Copies both ways until either side closes. After every read from the
/// client it re-arms TCP_QUICKACK, so the client's segments are acknowledged
/// at once: devices (and many client libraries) leave Nagle's algorithm on,
/// and the broker answers a QoS 1 publish in separate small writes, so a
/// delayed ACK here would stall such a client for 40 ms whenever it has
/// something queued.
async fn splice<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    fd: RawFd,
    mut upstream: TcpStream,
    connack_deadline: tokio::time::Instant,
) -> Spliced {
    // One task, both directions: no lock around the TLS stream and no
    // wake-up hand-off between tasks on the per-message path. MQTT packets
    // from home devices are small, so a write never holds the other
    // direction up for long.
    let mut inbound = vec![0u8; SPLICE_BUFFER];
    let mut outbound = vec![0u8; SPLICE_BUFFER];
    // Until the broker's first byte (its CONNACK) the handshake deadline
    // still runs: the broker crate waits without limit on a CONNECT that
    // parses but never completes.
    let mut answered = false;
    let mut framer = Framer::default();
    loop {
        tokio::select! {
            read = client.read(&mut inbound) => {
                let n = match read {
                    Ok(0) | Err(_) => return Spliced::Closed,
                    Ok(n) => n,
                };
                quickack(fd);
                if upstream.write_all(&inbound[..n]).await.is_err() {
                    return Spliced::Closed;
                }
            }
            read = upstream.read(&mut outbound[framer.carried()..]) => {
                let n = match read {
                    Ok(0) | Err(_) => return Spliced::Closed,
                    Ok(n) => n,
                };
                answered = true;
                let filled = framer.carried() + n;
                // Each packet (or each piece of a packet larger than the
                // buffer) is written and flushed on its own: one TLS record
                // never holds the end of one packet and the start of another.
                let mut at = 0;
                loop {
                    match framer.piece(&outbound[at..filled]) {
                        Piece::Write(len) => {
                            let bytes = &outbound[at..at + len];
                            if client.write_all(bytes).await.is_err() || client.flush().await.is_err() {
                                return Spliced::Closed;
                            }
                            at += len;
                        }
                        Piece::NeedMore => break,
                        Piece::Malformed => return Spliced::Closed,
                    }
                }
                // A fixed header cut by the read waits at the buffer's start.
                outbound.copy_within(at..filled, 0);
                framer.carry(filled - at);
            }
            _ = tokio::time::sleep_until(connack_deadline), if !answered => return Spliced::Unanswered,
        }
    }
}

/// Finds MQTT packet boundaries in the broker's byte stream.
#[derive(Debug, Default)]
struct Framer {
    /// Bytes of the current packet not yet written.
    left: usize,
    /// Bytes of an incomplete fixed header kept at the buffer's start.
    carried: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Piece {
    /// Write this many bytes from the start of the slice on their own.
    Write(usize),
    /// The slice is empty, or holds only part of a fixed header.
    NeedMore,
    /// A remaining length of more than 4 bytes: not MQTT.
    Malformed,
}

impl Framer {
    fn carried(&self) -> usize {
        self.carried
    }

    fn carry(&mut self, n: usize) {
        self.carried = n;
    }

    /// The next piece of `buf` to write on its own: up to the end of the
    /// current packet, or all of `buf` when the packet goes on beyond it.
    fn piece(&mut self, buf: &[u8]) -> Piece {
        if buf.is_empty() {
            return Piece::NeedMore;
        }
        if self.left == 0 {
            let mut remaining = 0usize;
            let mut header = None;
            for i in 1..5 {
                let Some(&b) = buf.get(i) else {
                    return Piece::NeedMore;
                };
                remaining |= usize::from(b & 0x7f) << (7 * (i - 1));
                if b & 0x80 == 0 {
                    header = Some(i + 1);
                    break;
                }
            }
            let Some(header) = header else {
                return Piece::Malformed;
            };
            self.left = header + remaining;
        }
        let len = self.left.min(buf.len());
        self.left -= len;
        Piece::Write(len)
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
            return connect_header_ok(&buf[..total]).then_some(buf);
        }
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether a whole CONNECT packet opens with a variable header the broker
/// can answer: protocol name "MQTT" (3.1.1, 5) or "MQIsdp" (3.1) with its
/// level, the connect flags, the keepalive and the client id's length. A
/// shorter packet (`10 00`, `10 02 00 04`, ...) is refused here at once.
fn connect_header_ok(packet: &[u8]) -> bool {
    // Skip the fixed header: the type byte and 1 to 4 length bytes.
    let Some(len_bytes) = packet[1..].iter().take(4).position(|b| b & 0x80 == 0) else {
        return false;
    };
    let body = &packet[2 + len_bytes..];
    let (name, level): (&[u8], &[u8]) = match body {
        [0, 4, b'M', b'Q', b'T', b'T', level, ..] => (b"MQTT", &[*level]),
        [0, 6, b'M', b'Q', b'I', b's', b'd', b'p', level, ..] => (b"MQIsdp", &[*level]),
        _ => return false,
    };
    let level_ok = match name {
        b"MQTT" => matches!(level, [4] | [5]),
        _ => level == [3],
    };
    // Name, level, flags (1), keepalive (2), client id length (2).
    level_ok && body.len() >= 2 + name.len() + 1 + 1 + 2 + 2
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
        let connect = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 0];
        let mut input: &[u8] = &[&connect[..], &[0x82, 9]].concat();
        assert_eq!(
            read_connect(&mut input, 100).await.unwrap(),
            [&connect[..], &[0x82, 9]].concat()
        );
        // Whole by its length, but with no protocol name.
        let mut nameless: &[u8] = &[0x10, 3, 1, 2, 3];
        assert_eq!(read_connect(&mut nameless, 100).await, None);
        let mut short: &[u8] = &[0x10, 3, 1];
        assert_eq!(read_connect(&mut short, 100).await, None);
        let mut wrong: &[u8] = &[0x20, 2, 0, 0];
        assert_eq!(read_connect(&mut wrong, 100).await, None);
    }

    /// The broker crate waits without limit on some CONNECTs it cannot
    /// finish parsing: until its first byte, the deadline still runs.
    #[tokio::test]
    async fn an_unanswered_connect_is_cut_at_the_deadline() {
        let broker = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = broker.local_addr().unwrap();
        let silent = tokio::spawn(async move {
            let (s, _) = broker.accept().await.unwrap();
            let (s2, _) = broker.accept().await.unwrap();
            (s, s2)
        });
        let (client, _peer) = tokio::io::duplex(64);
        let upstream = TcpStream::connect(addr).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        let started = Instant::now();
        assert_eq!(splice(client, -1, upstream, deadline).await, Spliced::Unanswered);
        assert!(started.elapsed() < Duration::from_secs(2));

        // Once the broker has answered, an idle connection stays open.
        let (client, _peer) = tokio::io::duplex(64);
        let upstream = TcpStream::connect(addr).await.unwrap();
        let (_first, mut second) = silent.await.unwrap();
        second.write_all(&[0x20, 2, 0, 0]).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        let idle = tokio::time::timeout(Duration::from_millis(500), splice(client, -1, upstream, deadline));
        assert!(idle.await.is_err(), "an answered connection was cut");
    }

    #[test]
    fn framer_splits_at_packet_boundaries() {
        let mut f = Framer::default();
        // A CONNACK, a PUBLISH and a PINGRESP in one read.
        let read = [0x20, 2, 0, 0, 0x30, 3, 0, 1, b'a', 0xd0, 0];
        assert_eq!(f.piece(&read), Piece::Write(4));
        assert_eq!(f.piece(&read[4..]), Piece::Write(5));
        assert_eq!(f.piece(&read[9..]), Piece::Write(2));
        assert_eq!(f.piece(&read[11..]), Piece::NeedMore);
        // A packet larger than one read goes out in pieces that end exactly
        // at its end; the next packet starts a new piece.
        let mut big = vec![0x30, 0x90, 0x01]; // remaining length 144
        big.extend(std::iter::repeat_n(7, 144));
        big.extend([0xd0, 0]);
        assert_eq!(f.piece(&big[..100]), Piece::Write(100));
        assert_eq!(f.piece(&big[100..]), Piece::Write(47));
        assert_eq!(f.piece(&big[147..]), Piece::Write(2));
        // A fixed header cut in the middle needs more bytes.
        assert_eq!(f.piece(&[0x30, 0x90]), Piece::NeedMore);
        assert_eq!(f.piece(&[0x30, 0xff, 0xff, 0xff, 0xff]), Piece::Malformed);
    }

    #[test]
    fn connect_header_checks() {
        // MQTT 3.1.1, client id "a": name, level 4, flags, keepalive 60.
        let v311: &[u8] = &[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'a'];
        assert!(connect_header_ok(v311));
        let mut v5 = v311.to_vec();
        v5[8] = 5;
        assert!(connect_header_ok(&v5));
        let v31: &[u8] = &[
            0x10, 14, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 2, 0, 60, 0, 0,
        ];
        assert!(connect_header_ok(v31));
        // What outside testing sent, and its neighbours: whole packets by
        // their length, too short to answer.
        for bad in [
            &[0x10, 0][..],
            &[0x10, 1, 0],
            &[0x10, 2, 0, 4],
            &[0x10, 6, 0, 4, b'M', b'Q', b'T', b'T'],
            &[0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60],
            &[0x10, 13, 0, 4, b'M', b'Q', b'T', b'X', 4, 2, 0, 60, 0, 1, b'a'],
            &[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 9, 2, 0, 60, 0, 1, b'a'],
            &[
                0x10, 14, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 4, 2, 0, 60, 0, 0,
            ],
        ] {
            assert!(!connect_header_ok(bad), "{bad:?}");
        }
    }
}
