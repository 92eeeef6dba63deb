//! TLS on the server's ports (rustls), gearmand's `--ssl` options.
//!
//! With TLS on, every connection on the Gearman port must speak it (binary
//! and admin text alike; there is no STARTTLS, as in gearmand), and so must
//! the HTTP port. With [`TlsConfig::verify_clients`] a client must present a
//! certificate signed by the CA file (mutual TLS): only holders of one can
//! submit, work or administer.
//!
//! The handshake runs in the connection's own task under a deadline
//! ([`HANDSHAKE_TIMEOUT`]), never in the accept loop. A peer that sends
//! something other than a TLS handshake gets a plain-text reply saying
//! TLS is required (a Gearman ERROR packet, an admin `ERR` line, or an HTTP
//! 400, after what its first byte looks like) and is closed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use polygear::protocol::{Magic, Packet};
use polygear::transport::Stream;
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ServerError;

/// How long a new connection may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// gearmand's `--ssl` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The server's PEM certificate (chain) (`--ssl-certificate`,
    /// `GEARMAND_SERVER_PEM`).
    pub cert_file: PathBuf,
    /// Its PEM private key (`--ssl-key`, `GEARMAND_SERVER_KEY`).
    pub key_file: PathBuf,
    /// PEM file of the CA that signs client certificates (`--ssl-ca-file`,
    /// `GEARMAND_CA_CERTIFICATE`); needed by `verify_clients`.
    pub ca_file: Option<PathBuf>,
    /// Require a client certificate signed by `ca_file` (mutual TLS,
    /// `--ssl-verify-client`).
    pub verify_clients: bool,
}

/// Which port a peer that skipped TLS reached (to answer in its language).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Port {
    Gearman,
    Http,
}

/// The loaded configuration: accepts connections.
#[derive(Clone)]
pub(crate) struct Acceptor {
    inner: tokio_rustls::TlsAcceptor,
}

fn config_error(e: impl std::fmt::Display) -> ServerError {
    ServerError::Config(format!("TLS: {e}"))
}

impl Acceptor {
    /// Loads the files (an unreadable file, a key that does not match the
    /// certificate, or `verify_clients` without a CA file is an error).
    pub(crate) fn new(cfg: &TlsConfig, alpn: &[&[u8]]) -> Result<Acceptor, ServerError> {
        let certs = polygear::tls::load_certs(&cfg.cert_file).map_err(config_error)?;
        let key = polygear::tls::load_key(&cfg.key_file).map_err(config_error)?;
        let provider = polygear::tls::provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?;
        let builder = if cfg.verify_clients {
            let Some(ca) = &cfg.ca_file else {
                return Err(config_error(
                    "--ssl-verify-client needs --ssl-ca-file (the CA that signs client certificates)",
                ));
            };
            let roots = polygear::tls::load_roots(ca).map_err(config_error)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(config_error)?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| config_error(format!("certificate {}: {e}", cfg.cert_file.display())))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // The provider's order (AES-128-GCM first, polygear::tls::provider),
        // not the client's.
        config.ignore_client_order = true;
        Ok(Acceptor {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Runs the handshake on a new Gearman connection. `None`: the peer
    /// went away, failed the handshake (logged at debug) or spoke plain
    /// text (answered, see the module doc). The flag is true when the peer
    /// presented a certificate the server verified.
    pub(crate) async fn accept(&self, tcp: TcpStream) -> Option<(Stream, bool)> {
        let (tls, verified) = self.handshake(tcp, Port::Gearman).await?;
        let (tcp, session) = tls.into_inner();
        Some((Stream::tls(tcp, session), verified))
    }

    /// [`Acceptor::accept`] keeping tokio-rustls' stream (for hyper).
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
        port: Port,
    ) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, bool)> {
        let handshake = async {
            let mut first = [0u8; 1];
            match tcp.peek(&mut first).await {
                Ok(1) if first[0] == TLS_HANDSHAKE => {}
                Ok(1) => {
                    refuse_plain(tcp, first[0], port).await;
                    return None;
                }
                _ => return None,
            }
            match self.inner.accept(tcp).into_fallible().await {
                Ok(tls) => {
                    let verified = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .is_some_and(|c| !c.is_empty());
                    Some((tls, verified))
                }
                Err((e, tcp)) => {
                    tracing::debug!("TLS handshake failed: {e}");
                    linger(tcp).await;
                    None
                }
            }
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .ok()
            .flatten()
    }
}

/// Closes a connection whose handshake failed so that the alert rustls
/// sent is read: with TLS 1.3 a client has finished its side and may have
/// sent requests already; closing with them unread would reset the
/// connection and lose the alert that says why (no certificate, say).
async fn linger(mut tcp: TcpStream) {
    let _ = tcp.shutdown().await;
    let drain = async {
        let mut sink = [0u8; 4096];
        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

const REQUIRED: &str = "this server requires TLS on this port (connect with TLS, e.g. gearman -S)";

/// Answers a peer that skipped the handshake, in what it seems to speak.
async fn refuse_plain(mut tcp: TcpStream, first: u8, port: Port) {
    let mut out = BytesMut::new();
    match (port, first) {
        (Port::Http, _) => out.extend_from_slice(
            format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{REQUIRED}\n",
                REQUIRED.len() + 1
            )
            .as_bytes(),
        ),
        (Port::Gearman, 0) => {
            let _ = Packet::Error {
                code: bytes::Bytes::from_static(b"TLS_REQUIRED"),
                text: bytes::Bytes::from_static(REQUIRED.as_bytes()),
            }
            .encode(Magic::Res, &mut out);
        }
        (Port::Gearman, _) => {
            out.extend_from_slice(format!("ERR TLS_REQUIRED {}\r\n", REQUIRED.replace(' ', "+")).as_bytes())
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(&out)).await;
    let _ = tcp.shutdown().await;
}
