//! hearth's one TLS policy: the server configuration the MQTT front, the
//! dashboard and the voice relay all build, and the holder that lets a
//! renewed certificate reach new connections without a restart.
//!
//! It never logs a name a certificate carries, and an error names only the
//! file it could not read.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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

    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites(),
        ..provider::default_provider()
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.ignore_client_order = true;
    Ok(config)
}

/// The policy for an HTTP/1.1 listener (the dashboard, the relay): the same
/// as [`server_config`], and ALPN offers `http/1.1` only.
pub fn http_server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let mut config = server_config(cert, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The cipher suites, in the server's order of preference.
fn suites() -> Vec<rustls::SupportedCipherSuite> {
    use provider::cipher_suite as cs;
    if cfg!(any(target_arch = "aarch64", target_arch = "arm")) {
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
    }
}

/// A listener's current TLS configuration. A renewed certificate swapped in
/// here is used by every connection accepted afterwards; those already
/// open keep theirs.
#[derive(Debug)]
pub struct Reloadable(RwLock<Arc<ServerConfig>>);

impl Reloadable {
    pub fn new(config: ServerConfig) -> Reloadable {
        Reloadable(RwLock::new(Arc::new(config)))
    }

    /// The configuration for a connection accepted now.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.0.read().expect("tls config lock").clone()
    }

    pub fn replace(&self, config: ServerConfig) {
        *self.0.write().expect("tls config lock") = Arc::new(config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["hearth.local".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    #[test]
    fn the_policy_is_enforced_and_shared() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = files(dir.path());
        let config = server_config(&cert, &key).unwrap();
        assert!(config.ignore_client_order, "the server's order");
        assert!(config.alpn_protocols.is_empty());
        let http = http_server_config(&cert, &key).unwrap();
        assert_eq!(http.alpn_protocols, [b"http/1.1".to_vec()]);
        // AEAD suites with ECDHE only; the first by the architecture.
        let names: Vec<String> = suites().iter().map(|s| format!("{:?}", s.suite())).collect();
        assert_eq!(names.len(), 9);
        assert!(
            names.iter().all(|n| n.contains("GCM") || n.contains("CHACHA20")),
            "{names:?}"
        );
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("TLS13_") || n.contains("ECDHE")),
            "{names:?}"
        );
        let first = if cfg!(any(target_arch = "aarch64", target_arch = "arm")) {
            "TLS13_CHACHA20_POLY1305_SHA256"
        } else {
            "TLS13_AES_128_GCM_SHA256"
        };
        assert_eq!(names[0], first);
    }

    #[test]
    fn unreadable_files_name_the_path_only() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = server_config(&missing, &missing).unwrap_err();
        assert!(
            matches!(err, TlsError::Pem { ref path, .. } if path.ends_with("missing.pem")),
            "{err}"
        );
    }

    #[test]
    fn a_reload_reaches_the_next_connection() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = files(dir.path());
        let tls = Reloadable::new(server_config(&cert, &key).unwrap());
        let before = tls.current();
        tls.replace(http_server_config(&cert, &key).unwrap());
        assert!(
            before.alpn_protocols.is_empty(),
            "an open connection keeps its own"
        );
        assert_eq!(tls.current().alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
