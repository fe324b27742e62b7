//! MQTT clients for the tests: rumqttc over TLS, and hand-built packets for
//! the cases where a test must misbehave on the wire.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport};

use crate::harness::{Daemon, Device};

/// A rustls client config trusting hearth's CA, with an explicit provider
/// (two are compiled into this test binary).
pub fn client_tls(daemon: &Daemon) -> Arc<rustls::ClientConfig> {
    client_tls_for(&daemon.ca_cert())
}

/// A TLS client configuration that trusts the CA in the PEM file `ca`.
pub fn client_tls_for(ca: &std::path::Path) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(ca).expect("read CA");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

use rustls::pki_types::pem::PemObject;

/// rumqttc options to connect over TLS as `device`.
pub fn options(daemon: &Daemon, device: &Device) -> MqttOptions {
    let mut opts = MqttOptions::new(device.client_id(), "127.0.0.1", daemon.tls_port());
    opts.set_credentials(device.username(), device.password());
    opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(client_tls(daemon))));
    opts.set_keep_alive(Duration::from_secs(30));
    opts
}

/// Polls until a CONNACK arrives, and returns its return code.
pub async fn connack(events: &mut EventLoop) -> Result<rumqttc::ConnectReturnCode, String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => return Ok(ack.code),
            Ok(Ok(_)) => {}
            Ok(Err(rumqttc::ConnectionError::ConnectionRefused(code))) => return Ok(code),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("no CONNACK within 10 s".into()),
        }
    }
}

/// A connected client whose event loop runs on its own task, handing
/// incoming publishes to a channel and reporting when the connection ends.
pub struct Client {
    pub client: AsyncClient,
    pub messages: tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
    pub closed: tokio::sync::oneshot::Receiver<Instant>,
}

pub async fn connect(opts: MqttOptions) -> Client {
    let (client, mut events) = AsyncClient::new(opts, 64);
    let code = connack(&mut events).await.expect("connect");
    assert_eq!(code, rumqttc::ConnectReturnCode::Success, "CONNACK");
    let (tx, messages) = tokio::sync::mpsc::unbounded_channel();
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = closed_tx.send(Instant::now());
                    return;
                }
            }
        }
    });
    Client {
        client,
        messages,
        closed,
    }
}

impl Client {
    /// Publishes to `topic` (which this client subscribed to) and waits for
    /// the message to come back: a full round trip through the broker.
    pub async fn round_trip(&mut self, topic: &str, payload: &[u8], limit: Duration) -> Duration {
        let start = Instant::now();
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .await
            .expect("publish");
        loop {
            let left = limit.saturating_sub(start.elapsed());
            let msg = tokio::time::timeout(left, self.messages.recv())
                .await
                .unwrap_or_else(|_| panic!("no round trip within {limit:?}"))
                .expect("client closed");
            if msg.topic == topic && msg.payload.as_ref() == payload {
                return start.elapsed();
            }
        }
    }
}

fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return;
        }
    }
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// An MQTT 3.1.1 CONNECT with username and password, clean session.
pub fn connect_packet(client_id: &str, username: &str, password: &str) -> Vec<u8> {
    let mut body = Vec::new();
    string(b"MQTT", &mut body);
    body.push(4);
    body.push(0xC2);
    body.extend_from_slice(&60u16.to_be_bytes());
    string(client_id.as_bytes(), &mut body);
    string(username.as_bytes(), &mut body);
    string(password.as_bytes(), &mut body);
    let mut packet = vec![0x10];
    remaining_length(body.len(), &mut packet);
    packet.extend(body);
    packet
}

/// An MQTT 3.1.1 PUBLISH at QoS 0.
pub fn publish_packet(topic: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    string(topic, &mut body);
    body.extend_from_slice(payload);
    let mut packet = vec![0x30];
    remaining_length(body.len(), &mut packet);
    packet.extend(body);
    packet
}

/// An MQTT 3.1.1 SUBSCRIBE of one filter at QoS 0.
pub fn subscribe_packet(packet_id: u16, filter: &[u8]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    string(filter, &mut body);
    body.push(0);
    let mut packet = vec![0x82];
    remaining_length(body.len(), &mut packet);
    packet.extend(body);
    packet
}

/// Opens a plain connection and sends CONNECT; returns the stream and the
/// CONNACK return code.
pub fn raw_connect(port: u16, device: &Device) -> (TcpStream, u8) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&connect_packet(
        device.client_id(),
        device.username(),
        device.password(),
    ))
    .unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).expect("CONNACK");
    assert_eq!(ack[0], 0x20, "not a CONNACK");
    (s, ack[3])
}

/// Whether the peer closes `s` within `limit` (reads until EOF or error).
pub fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
        if start.elapsed() > limit {
            return false;
        }
    }
}
