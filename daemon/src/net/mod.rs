//! What every listener shares: the certificate authority and TLS files.

pub mod pki;
