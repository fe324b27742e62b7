//! Answering one query: the client's rate, the device's policy, the cache,
//! then the upstream. UDP is hickory-server's loop; TCP is hearth's own, so
//! that connections are capped in number, per address and in time.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::cache::{self, Answer};
use super::{BlockAnswer, Inner, Verdict, bump, decide};

/// How long an upstream may take, over its attempts, before SERVFAIL.
const UPSTREAM_DEADLINE: Duration = Duration::from_secs(5);
/// The EDNS payload hearth offers (DNS Flag Day 2020).
const EDNS_PAYLOAD: u16 = 1232;
/// TTL of a blocked answer.
const BLOCKED_TTL: u32 = 60;
/// Open TCP connections, at most, and per client address.
pub const MAX_TCP: usize = 64;
pub const MAX_TCP_PER_CLIENT: usize = 8;
/// A TCP client must send its next query's length within this...
const TCP_IDLE: Duration = Duration::from_secs(10);
/// ...and the query within this.
const TCP_MESSAGE: Duration = Duration::from_secs(5);
/// The smallest DNS message: its header.
const HEADER_LEN: usize = 12;

pub(super) struct Handler(pub Arc<Inner>);

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        self.0.answer(request, response).await
    }
}

/// The header of an answer never sent.
fn unsent(request: &Request) -> ResponseInfo {
    ResponseInfo::from(Header {
        metadata: Metadata::response_from_request(&request.metadata),
        counts: HeaderCounts::default(),
    })
}

impl Inner {
    pub(super) async fn answer<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let src = request.src().ip();
        let now = Instant::now();
        if !self.limits.lock().expect("limits lock").take(src, now) {
            bump(&self.counters.rate_limited);
            return unsent(request);
        }
        let device = self.device_at(&src);
        bump(match device {
            Some(_) => &self.counters.from_devices,
            None => &self.counters.from_others,
        });
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;
        let edns = request.edns.as_ref().map(|theirs| {
            let mut ours = Edns::new();
            ours.set_max_payload(theirs.max_payload().clamp(512, EDNS_PAYLOAD));
            ours
        });
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let code = |code: ResponseCode| {
            let mut m = meta;
            m.response_code = code;
            m
        };

        if request.metadata.op_code != OpCode::Query {
            bump(&self.counters.refused);
            return only(&mut response, builder, meta, ResponseCode::NotImp, request).await;
        }
        let Ok(info) = request.request_info() else {
            bump(&self.counters.malformed);
            return only(&mut response, builder, meta, ResponseCode::FormErr, request).await;
        };
        let qtype = info.query.query_type();
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR | RecordType::ANY) {
            bump(&self.counters.refused);
            let rcode = if qtype == RecordType::ANY {
                ResponseCode::NotImp
            } else {
                ResponseCode::Refused
            };
            return only(&mut response, builder, meta, rcode, request).await;
        }
        let qname: Name = info.query.name().clone().into();
        // One allocation: the name in ASCII, lower case, without its dot.
        let mut name = qname.to_ascii();
        name.make_ascii_lowercase();
        if name.ends_with('.') {
            name.pop();
        }

        let cloud = self
            .clouds
            .read()
            .expect("clouds lock")
            .matches(&name)
            .map(|(d, _)| d.to_owned());
        let verdict = match &device {
            Some(d) => self.judge(d, &name, cloud.as_deref()),
            None => decide(&name, Default::default(), cloud.is_some(), &self.search),
        };
        match verdict {
            Verdict::Local => {
                bump(&self.counters.local);
                only(&mut response, builder, meta, ResponseCode::NXDomain, request).await
            }
            Verdict::Block => {
                bump(&self.counters.blocked);
                let records: Vec<Record> = match (self.config.block_answer, qtype) {
                    (BlockAnswer::Zero, RecordType::A) => {
                        vec![Record::from_rdata(
                            qname.clone(),
                            BLOCKED_TTL,
                            RData::A(A::new(0, 0, 0, 0)),
                        )]
                    }
                    (BlockAnswer::Zero, RecordType::AAAA) => vec![Record::from_rdata(
                        qname.clone(),
                        BLOCKED_TTL,
                        RData::AAAA(AAAA::new(0, 0, 0, 0, 0, 0, 0, 0)),
                    )],
                    _ => Vec::new(),
                };
                let rcode = match self.config.block_answer {
                    BlockAnswer::Nxdomain => ResponseCode::NXDomain,
                    BlockAnswer::Zero => ResponseCode::NoError,
                };
                let r = builder.build(code(rcode), records.iter(), [], [], []);
                send(&mut response, r, request).await
            }
            Verdict::Forward => {
                let hit = self.cache.lock().expect("cache lock").get(&name, qtype, now);
                let answer = match hit {
                    Some(a) => {
                        bump(&self.counters.cache_hits);
                        a
                    }
                    None => match self.forward(&name, qname, qtype).await {
                        Some(a) => a,
                        None => {
                            bump(&self.counters.failed);
                            return only(&mut response, builder, meta, ResponseCode::ServFail, request).await;
                        }
                    },
                };
                let now = Instant::now();
                let answers = Answer::aged(&answer.answers, answer.stored, now);
                let authorities = Answer::aged(&answer.authorities, answer.stored, now);
                let r = builder.build(code(answer.code), answers.iter(), authorities.iter(), [], []);
                send(&mut response, r, request).await
            }
        }
    }

    /// Asks the upstreams, and caches what they say. `None`: they failed, or
    /// too many queries are in flight.
    async fn forward(&self, name: &str, qname: Name, qtype: RecordType) -> Option<Answer> {
        let _permit = self.in_flight.try_acquire().ok()?;
        bump(&self.counters.forwarded);
        let looked = tokio::time::timeout(UPSTREAM_DEADLINE, self.resolver.lookup(qname, qtype)).await;
        let stored = Instant::now();
        let (code, answers, authorities, negative) = match looked {
            Ok(Ok(lookup)) => (ResponseCode::NoError, lookup.answers().to_vec(), Vec::new(), None),
            Ok(Err(e)) if e.is_no_records_found() => {
                let hickory_server::net::NetError::Dns(hickory_server::net::DnsError::NoRecordsFound(no)) = e
                else {
                    return None;
                };
                let soa: Vec<Record> = no.soa.map(|s| s.into_record_of_rdata()).into_iter().collect();
                (no.response_code, Vec::new(), soa, no.negative_ttl)
            }
            _ => return None,
        };
        let lifetime = if answers.is_empty() {
            cache::lifetime(&[], negative)
        } else {
            cache::lifetime(&answers, None)
        };
        let answer = Answer {
            code,
            answers: Arc::from(answers),
            authorities: Arc::from(authorities),
            stored,
            expires: stored + lifetime,
        };
        self.cache
            .lock()
            .expect("cache lock")
            .put(name, qtype, answer.clone(), stored);
        Some(answer)
    }
}

/// An answer of a response code alone.
async fn only<R: ResponseHandler>(
    response: &mut R,
    builder: MessageResponseBuilder<'_>,
    mut meta: Metadata,
    code: ResponseCode,
    request: &Request,
) -> ResponseInfo {
    meta.response_code = code;
    send(response, builder.build_no_records(meta), request).await
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    message: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Request,
) -> ResponseInfo {
    match response.send_response(message).await {
        Ok(info) => info,
        Err(_) => unsent(request),
    }
}

/// Where a TCP answer is written: the handler encodes into it, the
/// connection's loop frames and sends it.
#[derive(Clone, Default)]
struct TcpReply(Arc<Mutex<Option<Vec<u8>>>>);

#[async_trait::async_trait]
impl ResponseHandler for TcpReply {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, hickory_server::net::NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(u16::MAX);
        let info = response.destructive_emit(&mut encoder)?;
        *self.0.lock().expect("reply lock") = Some(bytes);
        Ok(info)
    }
}

/// A FORMERR for a message whose header could be read but not the rest:
/// its id and opcode, QR set, no records.
fn format_error(message: &[u8]) -> Option<Vec<u8>> {
    if message.len() < HEADER_LEN || message[2] & 0x80 != 0 {
        return None;
    }
    let mut out = vec![0u8; HEADER_LEN];
    out[..2].copy_from_slice(&message[..2]);
    out[2] = 0x80 | (message[2] & 0x78) | (message[2] & 0x01);
    out[3] = 0x80 | ResponseCode::FormErr.low();
    Some(out)
}

/// Connections open, in all and per address.
#[derive(Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

struct Slot {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut o = self.open.lock().expect("open lock");
        o.total -= 1;
        if let Some(n) = o.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                o.by_ip.remove(&self.ip);
            }
        }
    }
}

fn take_slot(open: &Arc<Mutex<Open>>, ip: IpAddr) -> Option<Slot> {
    let mut o = open.lock().expect("open lock");
    let mine = o.by_ip.get(&ip).copied().unwrap_or(0);
    if o.total >= MAX_TCP || mine >= MAX_TCP_PER_CLIENT {
        return None;
    }
    o.total += 1;
    *o.by_ip.entry(ip).or_default() += 1;
    Some(Slot {
        open: open.clone(),
        ip,
    })
}

/// Accepts DNS over TCP until `token` is cancelled.
pub(super) async fn serve_tcp(
    listener: tokio::net::TcpListener,
    inner: Arc<Inner>,
    token: CancellationToken,
) {
    let open = Arc::new(Mutex::new(Open::default()));
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = token.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    // Out of descriptors or the like: wait rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = take_slot(&open, peer.ip()) else {
            bump(&inner.counters.tcp_turned_away);
            drop(stream);
            continue;
        };
        let (inner, token) = (inner.clone(), token.clone());
        tasks.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = connection(stream, peer, &inner) => {}
            }
            drop(slot);
        });
    }
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), tasks.wait()).await;
}

async fn connection(mut stream: tokio::net::TcpStream, peer: SocketAddr, inner: &Inner) {
    let _ = stream.set_nodelay(true);
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(TCP_IDLE, stream.read_u16()).await else {
            return;
        };
        let len = usize::from(len);
        let mut message = vec![0u8; len];
        if !matches!(
            tokio::time::timeout(TCP_MESSAGE, stream.read_exact(&mut message)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let reply = match Request::from_bytes(message.clone(), peer, Protocol::Tcp) {
            Ok(request) if request.metadata.message_type == hickory_server::proto::op::MessageType::Query => {
                let out = TcpReply::default();
                let _ = inner.answer::<TcpReply>(&request, out.clone()).await;
                out.0.lock().expect("reply lock").take()
            }
            // A response sent to a resolver: never answered (no reflection).
            Ok(_) => None,
            Err(_) => {
                bump(&inner.counters.malformed);
                match format_error(&message) {
                    Some(b) => Some(b),
                    // Not even a header: the stream cannot be trusted.
                    None => return,
                }
            }
        };
        if let Some(bytes) = reply {
            let mut framed = Vec::with_capacity(bytes.len() + 2);
            framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            framed.extend_from_slice(&bytes);
            if !matches!(
                tokio::time::timeout(TCP_MESSAGE, stream.write_all(&framed)).await,
                Ok(Ok(()))
            ) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_error_keeps_the_id_and_sets_the_response_bit() {
        let query = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff];
        let e = format_error(&query).unwrap();
        assert_eq!(&e[..2], &[0x12, 0x34]);
        assert_eq!(e[2] & 0x80, 0x80, "QR");
        assert_eq!(e[2] & 0x01, 0x01, "RD copied");
        assert_eq!(e[3] & 0x0f, 1, "FORMERR");
        assert_eq!(&e[4..], &[0; 8]);
        assert!(format_error(&query[..5]).is_none(), "no header");
        let mut response = query;
        response[2] |= 0x80;
        assert!(format_error(&response).is_none(), "never answer a response");
    }

    #[test]
    fn tcp_slots_are_capped_in_all_and_per_address() {
        let open = Arc::new(Mutex::new(Open::default()));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<Slot> = (0..MAX_TCP_PER_CLIENT)
            .map(|_| take_slot(&open, a).unwrap())
            .collect();
        assert!(take_slot(&open, a).is_none(), "per address");
        let others: Vec<Slot> = (0..MAX_TCP - MAX_TCP_PER_CLIENT)
            .map(|i| take_slot(&open, IpAddr::from([10, 0, (i / 200) as u8, (i % 200) as u8])).unwrap())
            .collect();
        assert!(take_slot(&open, "192.0.2.9".parse().unwrap()).is_none(), "in all");
        drop(held);
        assert!(
            take_slot(&open, a).is_some(),
            "a closed connection frees its slot"
        );
        drop(others);
        assert_eq!(open.lock().unwrap().total, 0);
        assert!(open.lock().unwrap().by_ip.is_empty());
    }
}
