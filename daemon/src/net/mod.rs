//! What every listener shares, and nothing else: the certificate authority
//! and TLS files (`pki`), the one TLS policy (`tls`), the one HTTP/1.1 serve
//! loop with its deadlines and connection caps (`serve`), the one token
//! bucket (`rate`), and the sockets systemd passes (`activation`).
//!
//! net knows no domain: it never imports the broker, the home, discovery,
//! the dashboard, the relay, accounts, config or the app. It never logs an
//! address, a name a certificate carries, or a rate-limit key.

pub mod activation;
pub mod pki;
pub mod rate;
pub mod serve;
pub mod tls;
