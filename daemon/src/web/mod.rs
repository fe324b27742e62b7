//! The LAN dashboard: HTTPS only (hearth's local CA), owner accounts, the
//! JSON API and the embedded pages.
//!
//! The server is `net::serve`'s HTTP/1.1 loop under `net::tls`'s policy,
//! with the router from `api`. Each connection has a TLS handshake deadline and a header-read
//! deadline, each request a body limit and an answer deadline, and the
//! number of connections is capped.

pub mod api;
pub mod assets;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::net::pki::TlsFiles;
use crate::net::serve::{Capacity, Http};
use crate::net::tls::{Reloadable, TlsError};
use crate::supervisor::Supervisor;

/// A TLS handshake must finish within this: two round trips, which a
/// phone on weak Wi-Fi makes in well under a second; ten seconds only
/// bounds how long a silent client holds one of [`MAX_CONNECTIONS`].
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's headers must arrive within this. A browser sends them at
/// once; the bound is for a client that trickles them to hold a connection.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog. A
/// browser tab holds a few (one for its event stream), so this serves
/// dozens of the household's tabs, and bounds head buffers to
/// 256 × [`MAX_HEAD`] = 16 MiB.
pub const MAX_CONNECTIONS: usize = 256;
/// Bytes buffered for a request head.
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("dashboard TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("dashboard listener: {0}")]
    Io(#[from] std::io::Error),
}

/// The running dashboard's TLS configuration, swapped on renewal.
#[derive(Clone)]
pub struct Web {
    tls: Arc<Reloadable>,
    addrs: Vec<SocketAddr>,
}

impl Web {
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Loads the renewed server certificate for new connections.
    pub fn reload_tls(&self, files: &TlsFiles) -> Result<(), WebError> {
        self.tls.replace(tls_config(files)?);
        Ok(())
    }
}

fn tls_config(files: &TlsFiles) -> Result<rustls::ServerConfig, WebError> {
    Ok(crate::net::tls::http_server_config(
        &files.server_cert,
        &files.server_key,
    )?)
}

/// Starts serving on the bound listeners.
pub fn start(
    listeners: Vec<std::net::TcpListener>,
    files: &TlsFiles,
    app: Arc<api::App>,
    supervisor: &Supervisor,
) -> Result<Web, WebError> {
    let tls = Arc::new(Reloadable::new(tls_config(files)?));
    let router = api::router(app);
    let http = Arc::new(Http {
        name: "dashboard",
        tls: Some(tls.clone()),
        handshake_timeout: Some(HANDSHAKE_TIMEOUT),
        first_request_timeout: None,
        header_timeout: HEADER_TIMEOUT,
        request_timeout: api::REQUEST_TIMEOUT,
        max_buf_size: MAX_HEAD,
        keep_alive: true,
        // One cap over every listener.
        capacity: Capacity::Wait(Arc::new(Semaphore::new(MAX_CONNECTIONS))),
        peer: |extensions, addr| {
            extensions.insert(api::Peer(addr));
        },
        timed_out: || {
            (
                StatusCode::REQUEST_TIMEOUT,
                axum::Json(serde_json::json!({ "error": "the request took too long" })),
            )
                .into_response()
        },
        count: Box::new(|_| {}),
    });
    let mut addrs = Vec::new();
    for listener in listeners {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        addrs.push(listener.local_addr()?);
        let (router, http) = (router.clone(), http.clone());
        supervisor.spawn("web", move |token| async move {
            crate::net::serve::serve(listener, router, http, token).await;
            Ok(())
        });
    }
    Ok(Web { tls, addrs })
}
