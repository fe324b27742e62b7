//! The LAN dashboard: HTTPS only (hearth's local CA), owner accounts, the
//! JSON API and the embedded pages.
//!
//! The server is hyper's HTTP/1.1 over tokio-rustls, with the router from
//! `api`. Each connection has a TLS handshake deadline and a header-read
//! deadline, each request a body limit and an answer deadline, and the
//! number of connections is capped.

pub mod api;
pub mod assets;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::net::pki::TlsFiles;
use crate::supervisor::Supervisor;

/// A TLS handshake must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's headers must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("dashboard TLS: {0}")]
    Tls(#[from] crate::broker::front::TlsError),
    #[error("dashboard listener: {0}")]
    Io(#[from] std::io::Error),
}

/// The running dashboard's TLS configuration, swapped on renewal.
#[derive(Clone)]
pub struct Web {
    tls: Arc<RwLock<Arc<ServerConfig>>>,
    addrs: Vec<SocketAddr>,
}

impl Web {
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Loads the renewed server certificate for new connections.
    pub fn reload_tls(&self, files: &TlsFiles) -> Result<(), WebError> {
        let config = tls_config(files)?;
        *self.tls.write().expect("tls lock") = Arc::new(config);
        Ok(())
    }
}

fn tls_config(files: &TlsFiles) -> Result<ServerConfig, WebError> {
    let mut config = crate::broker::front::server_config(&files.server_cert, &files.server_key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Starts serving on the bound listeners.
pub fn start(
    listeners: Vec<std::net::TcpListener>,
    files: &TlsFiles,
    app: Arc<api::App>,
    supervisor: &Supervisor,
) -> Result<Web, WebError> {
    let tls = Arc::new(RwLock::new(Arc::new(tls_config(files)?)));
    let router = api::router(app);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut addrs = Vec::new();
    for listener in listeners {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        addrs.push(listener.local_addr()?);
        let (tls, router, limit) = (tls.clone(), router.clone(), limit.clone());
        supervisor.spawn("web", move |token| async move {
            serve(listener, tls, router, limit, token).await;
            Ok(())
        });
    }
    Ok(Web { tls, addrs })
}

async fn serve(
    listener: TcpListener,
    tls: Arc<RwLock<Arc<ServerConfig>>>,
    router: axum::Router,
    limit: Arc<Semaphore>,
    token: CancellationToken,
) {
    loop {
        let permit = tokio::select! {
            _ = token.cancelled() => return,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = token.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "dashboard accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.read().expect("tls lock").clone());
        let (router, token) = (router.clone(), token.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(api::Peer(peer));
                    let router = router.clone();
                    async move {
                        tokio::time::timeout(
                            api::REQUEST_TIMEOUT,
                            router.oneshot(req.map(axum::body::Body::new)),
                        )
                        .await
                        .unwrap_or_else(|_| {
                            Ok(axum::response::IntoResponse::into_response((
                                axum::http::StatusCode::REQUEST_TIMEOUT,
                                axum::Json(serde_json::json!({ "error": "the request took too long" })),
                            )))
                        })
                    }
                });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(64 * 1024);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = token.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                }
            }
        });
    }
}
