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
/// post-quantum key exchange aws-lc-rs offers).
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
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
