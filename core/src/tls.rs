//! TLS towards a job server (rustls): which CA to trust, an optional client
//! certificate for servers that require one (mutual TLS), and the name to
//! check the server's certificate against.
//!
//! Settings are read once into a [`TlsConnector`] (files loaded and checked
//! when the client, worker or admin is made, so a missing file is an error
//! there, not at the first job); every connection then runs its handshake
//! with it and is wrapped into a [`Stream`]. libgearman's environment
//! variables (`GEARMAND_CA_CERTIFICATE`, `GEARMAN_CLIENT_PEM`,
//! `GEARMAN_CLIENT_KEY`) are read by [`TlsOptions::from_env`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::transport::Stream;

/// TLS settings of a client, worker or admin connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the certificate authorities trusted to sign the server's
    /// certificate; `None`: the system's trust store.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate (chain) presented to a server that asks for one.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Name the server's certificate must carry; `None`: the host name (or
    /// IP address) connected to.
    pub server_name: Option<String>,
}

impl TlsOptions {
    /// libgearman's variables: `GEARMAND_CA_CERTIFICATE`,
    /// `GEARMAN_CLIENT_PEM`, `GEARMAN_CLIENT_KEY` (unset: `None`).
    pub fn from_env() -> TlsOptions {
        let path = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        TlsOptions {
            ca_file: path("GEARMAND_CA_CERTIFICATE"),
            cert_file: path("GEARMAN_CLIENT_PEM"),
            key_file: path("GEARMAN_CLIENT_KEY"),
            server_name: None,
        }
    }

    /// Loads the files into a connector.
    pub fn connector(&self) -> Result<TlsConnector> {
        TlsConnector::new(self)
    }
}

/// The crypto provider of every TLS configuration here: ring (builds with
/// only a C compiler; rustls marks it deprecated because it lacks the
/// post-quantum key exchange aws-lc-rs offers), preferring what costs a
/// job server least: AES-128-GCM (5–8 % less CPU per 4 KiB job than
/// AES-256-GCM in bench/tls.py) and X25519 (a quarter of P-384's CPU per
/// handshake). Every suite and group of ring's default stays offered.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::{default_provider, kx_group};
    use rustls::CipherSuite;
    let mut p = default_provider();
    let rank = |s: CipherSuite| match s {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
        CipherSuite::TLS13_AES_256_GCM_SHA384 => 1,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => 2,
        _ => 3,
    };
    p.cipher_suites.sort_by_key(|s| rank(s.suite()));
    let preferred = [kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    p.kx_groups.sort_by_key(|g| {
        preferred
            .iter()
            .position(|k| k.name() == g.name())
            .unwrap_or(preferred.len())
    });
    Arc::new(p)
}

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path)
        .map_err(|e| invalid(format!("TLS certificate file {}: {e}", path.display())))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("TLS certificate file {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "TLS certificate file {}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path)
        .map_err(|e| invalid(format!("TLS key file {}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| invalid(format!("TLS key file {}: {e}", path.display())))?
        .ok_or_else(|| {
            invalid(format!(
                "TLS key file {}: no PEM private key in it",
                path.display()
            ))
        })
}

/// A root store with every certificate of a PEM file.
pub fn load_roots(path: &Path) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| invalid(format!("TLS CA file {}: {e}", path.display())))?;
    }
    Ok(roots)
}

fn system_roots() -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        // A system store may hold certificates rustls cannot parse: skip them.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(invalid(
            "TLS: no trusted certificate in the system store; give a CA file".into(),
        ));
    }
    Ok(roots)
}

/// Loaded TLS settings: runs the handshake of each new connection.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// Loads `options`' files (an unreadable or empty file is an
    /// [`Error::InvalidArgument`] naming it).
    pub fn new(options: &TlsOptions) -> Result<TlsConnector> {
        let roots = match &options.ca_file {
            Some(path) => load_roots(path)?,
            None => system_roots()?,
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let config = match (&options.cert_file, &options.key_file) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                .map_err(|e| {
                    invalid(format!(
                        "TLS client certificate {} with key {}: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?,
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(invalid(
                    "TLS: a client certificate needs both a certificate file and a key file".into(),
                ))
            }
        };
        Ok(TlsConnector {
            config: Arc::new(config),
            server_name: options.server_name.clone(),
        })
    }

    /// Runs the handshake over `tcp` (connected to `host`; `addr` names the
    /// server in errors). A refused certificate is an [`Error::Connect`]
    /// whose message says what rustls found wrong.
    pub async fn handshake(&self, tcp: TcpStream, host: &str, addr: &str) -> Result<Stream> {
        let name = self.server_name.as_deref().unwrap_or(host);
        let name = ServerName::try_from(name.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|e| invalid(format!("TLS server name {name:?}: {e}")))?
            .to_owned();
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| Error::Connect {
                addr: addr.to_string(),
                source: std::io::Error::new(e.kind(), format!("TLS handshake failed: {e}")),
            })?;
        let (tcp, session) = tls.into_inner();
        Ok(Stream::tls(tcp, session))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_prefers_aes_128_gcm_and_x25519_and_drops_nothing() {
        let p = provider();
        #[allow(deprecated)]
        let default = rustls::crypto::ring::default_provider();
        assert_eq!(
            p.cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        assert_eq!(p.kx_groups[0].name(), rustls::NamedGroup::X25519);
        assert_eq!(p.cipher_suites.len(), default.cipher_suites.len());
        assert_eq!(p.kx_groups.len(), default.kx_groups.len());
    }
}
