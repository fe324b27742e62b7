//! hearth's local certificate authority, and the server certificate it
//! issues for the MQTT (and later the dashboard) TLS listeners.
//!
//! The CA's private key lives only sealed in the store; a copy of the data
//! directory without the master key cannot mint certificates. The server key
//! is a 0600 file because the broker reads PEM paths. This module never logs
//! a name a certificate carries.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::store::{Store, StoreError, crypto};

/// How long the CA is valid.
pub const CA_DAYS: i64 = 3650;
/// How long a server certificate is valid (the CA/Browser Forum's maximum).
pub const SERVER_DAYS: i64 = 397;
/// A server certificate is renewed this long before it expires: a month
/// gives a hub that was off, or failed to renew at one check
/// (`RENEWAL_CHECK` in app/), weeks of further tries before any client sees
/// an expired certificate.
pub const RENEW_BEFORE_DAYS: i64 = 30;

const CA_KEY: &str = "ca_key";
const CA_CERT: &str = "ca_cert";
const CA_NAME: &str = "ca_name";
const SERVER_INFO: &str = "server_cert_info";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the stored CA is incomplete or malformed: {0}")]
    Malformed(&'static str),
}

/// Where the TLS files are.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA certificate, for devices and browsers to trust.
    pub ca_cert: PathBuf,
    /// The server certificate.
    pub server_cert: PathBuf,
    /// The server's private key (mode 0600).
    pub server_key: PathBuf,
}

impl TlsFiles {
    pub fn in_dir(data_dir: &Path) -> TlsFiles {
        TlsFiles {
            ca_cert: data_dir.join("ca.pem"),
            server_cert: data_dir.join("tls/server.pem"),
            server_key: data_dir.join("tls/server.key"),
        }
    }
}

/// What was issued last, to decide on renewal without parsing X.509.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ServerInfo {
    not_after: i64,
    names: Vec<String>,
}

/// The names the server certificate must carry: the host name, `<host>.local`,
/// `localhost`, the loopback addresses, and any extra names or addresses.
pub fn server_names(extra: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(host) = hostname() {
        names.push(host.clone());
        if !host.ends_with(".local") && !host.contains('.') {
            names.push(format!("{host}.local"));
        }
    }
    for n in ["localhost", "127.0.0.1", "::1"] {
        names.push(n.to_owned());
    }
    names.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.to_ascii_lowercase()));
    names
}

/// The host's name, lower-cased, if it is a valid DNS name.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let host = std::str::from_utf8(&buf[..end]).ok()?.trim().to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid.then_some(host)
}

/// Makes sure the CA exists and its certificate is written out, and that the
/// server certificate is present, carries `names`, and is not within 30 days
/// of expiry. Returns whether a new server certificate was issued.
pub fn ensure(store: &mut Store, data_dir: &Path, names: &[String]) -> Result<bool, PkiError> {
    let files = TlsFiles::in_dir(data_dir);
    let (ca_params, ca_key, ca_pem) = ensure_ca(store)?;
    write_if_changed(&files.ca_cert, ca_pem.as_bytes(), 0o644)?;

    let now = OffsetDateTime::now_utc();
    let info: Option<ServerInfo> = store
        .secret(SERVER_INFO)?
        .and_then(|b| serde_json::from_slice(&b).ok());
    let fresh = info.as_ref().is_some_and(|i| {
        i.names == names && i.not_after - (now + Duration::days(RENEW_BEFORE_DAYS)).unix_timestamp() > 0
    });
    if fresh && files.server_cert.exists() && files.server_key.exists() {
        return Ok(false);
    }

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<_, _>>()?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "hearth");
    params.distinguished_name = dn;
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(SERVER_DAYS);
    params.serial_number = Some(serial()?);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer)?;

    let tls_dir = files.server_key.parent().expect("tls/ has a parent");
    fs::create_dir_all(tls_dir).map_err(|e| io(tls_dir, e))?;
    write_atomic(&files.server_key, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&files.server_cert, cert.pem().as_bytes(), 0o644)?;
    let info = ServerInfo {
        not_after: params.not_after.unix_timestamp(),
        names: names.to_vec(),
    };
    store.put_secret(SERVER_INFO, &serde_json::to_vec(&info).expect("serialise"))?;
    tracing::info!(
        names = names.len(),
        days = SERVER_DAYS,
        "server certificate issued"
    );
    Ok(true)
}

/// The CA's parameters, key and PEM certificate, creating them on first use.
fn ensure_ca(store: &mut Store) -> Result<(CertificateParams, KeyPair, String), PkiError> {
    if let (Some(key), Some(cert), Some(name)) = (
        store.secret(CA_KEY)?,
        store.secret(CA_CERT)?,
        store.secret(CA_NAME)?,
    ) {
        let key = std::str::from_utf8(&key).map_err(|_| PkiError::Malformed("CA key is not PEM"))?;
        let key = KeyPair::from_pem(key)?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| PkiError::Malformed("CA name"))?;
        let cert = String::from_utf8(cert.to_vec()).map_err(|_| PkiError::Malformed("CA cert"))?;
        return Ok((ca_params(&name), key, cert));
    }
    // A per-install name, so two homes' CAs never share a subject.
    let mut tag = [0u8; 4];
    crypto::fill_random(&mut tag).map_err(StoreError::from)?;
    let name = format!("hearth local CA {}", hex::encode(tag));
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = ca_params(&name);
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(CA_DAYS);
    params.serial_number = Some(serial()?);
    let cert = params.self_signed(&key)?.pem();
    store.put_secret(CA_KEY, key.serialize_pem().as_bytes())?;
    store.put_secret(CA_CERT, cert.as_bytes())?;
    store.put_secret(CA_NAME, name.as_bytes())?;
    tracing::info!(years = CA_DAYS / 365, "local certificate authority created");
    Ok((params, key, cert))
}

/// The parts of the CA's parameters an `Issuer` needs; the same on every
/// start, so server certificates chain to the stored CA certificate.
fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "hearth");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn san(name: &str) -> Result<SanType, rcgen::Error> {
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) => Ok(SanType::DnsName(name.to_owned().try_into()?)),
    }
}

fn serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    crypto::fill_random(&mut bytes).map_err(StoreError::from)?;
    bytes[0] &= 0x7f; // positive
    Ok(SerialNumber::from_slice(&bytes))
}

fn io(path: &Path, source: std::io::Error) -> PkiError {
    PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_if_changed(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    if fs::read(path).ok().as_deref() == Some(contents) {
        return Ok(());
    }
    write_atomic(path, contents, mode)
}

/// Writes through a temporary file and a rename, so a reader never sees half
/// a key.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    crate::store::files::sync_parent(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_include_loopback_and_are_unique() {
        let names = server_names(&["hub.example".into(), "LOCALHOST".into(), "192.168.1.5".into()]);
        for n in ["localhost", "127.0.0.1", "::1", "hub.example", "192.168.1.5"] {
            assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
        }
        assert_eq!(
            names
                .iter()
                .filter(|n| n.eq_ignore_ascii_case("localhost"))
                .count(),
            1
        );
        assert!(matches!(san("::1").unwrap(), SanType::IpAddress(_)));
        assert!(matches!(san("hub.local").unwrap(), SanType::DnsName(_)));
    }
}
