//! Server addresses, connecting, and the stable routing of keys to servers.

use std::fmt;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::tls::TlsConnector;
use crate::transport::Stream;

/// The default Gearman port.
pub const DEFAULT_PORT: u16 = 4730;

/// One job server: host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerAddr {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (4730 by default).
    pub port: u16,
}

impl ServerAddr {
    /// A server at `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        ServerAddr {
            host: host.into(),
            port,
        }
    }

    /// Parses a comma-separated list in libgearman's syntax (`host[:port][,host[:port]…]`),
    /// as used by `GEARMAN_SERVER` and `-h`.
    pub fn parse_list(s: &str) -> Result<Vec<ServerAddr>> {
        let list: Vec<ServerAddr> = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<_>>()?;
        if list.is_empty() {
            return Err(Error::InvalidArgument(format!("no server in {s:?}")));
        }
        Ok(list)
    }

    /// Opens a TCP connection with TCP_NODELAY set, failing after `timeout`.
    pub async fn connect(&self, timeout: Duration) -> Result<TcpStream> {
        let addr = self.to_string();
        let fut = async {
            let resolved = self.resolve().await?;
            TcpStream::connect(&resolved[..]).await
        };
        let stream = match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(Error::Connect { addr, source }),
            Err(_) => {
                return Err(Error::Connect {
                    addr,
                    source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
                })
            }
        };
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// The socket addresses of the host; an unknown host name is an error
    /// of kind `NotFound` ("could not resolve host 'x.invalid': …").
    async fn resolve(&self) -> std::io::Result<Vec<std::net::SocketAddr>> {
        if let Ok(ip) = self.host.parse::<std::net::IpAddr>() {
            return Ok(vec![std::net::SocketAddr::new(ip, self.port)]);
        }
        let not_found = |why: String| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("could not resolve host '{}': {why}", self.host),
            )
        };
        let found: Vec<_> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| not_found(e.to_string()))?
            .collect();
        if found.is_empty() {
            return Err(not_found("no address".into()));
        }
        Ok(found)
    }

    /// Connects and, with `tls`, runs the TLS handshake: both within `timeout`.
    pub async fn open(&self, timeout: Duration, tls: Option<&TlsConnector>) -> Result<Stream> {
        let Some(tls) = tls else {
            return Ok(Stream::plain(self.connect(timeout).await?));
        };
        let opened = async {
            let tcp = self.connect(timeout).await?;
            tls.handshake(tcp, &self.host, &self.to_string()).await
        };
        match tokio::time::timeout(timeout, opened).await {
            Ok(r) => r,
            Err(_) => Err(Error::Connect {
                addr: self.to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("TLS handshake did not finish within {timeout:?}"),
                ),
            }),
        }
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for ServerAddr {
    type Err = Error;

    /// `host`, `host:port`, `[v6]:port` or `:port`.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = || Error::InvalidArgument(format!("bad server address {s:?}"));
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest.split_once(']').ok_or_else(bad)?;
            (h, p.strip_prefix(':'))
        } else if s.matches(':').count() == 1 {
            let (h, p) = s.split_once(':').unwrap();
            (h, Some(p))
        } else {
            (s, None)
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => DEFAULT_PORT,
        };
        let host = if host.is_empty() { "localhost" } else { host };
        Ok(ServerAddr::new(host, port))
    }
}

/// Stable 64-bit FNV-1a hash, identical in every process and language binding,
/// so the same unique key always routes to the same server.
pub fn stable_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The order in which to try `n` servers for `key`: the hashed server first,
/// then the following ones (wrapping), so failover is deterministic too.
pub fn route(key: &[u8], n: usize) -> impl Iterator<Item = usize> {
    let start = if n == 0 {
        0
    } else {
        (stable_hash(key) % n as u64) as usize
    };
    (0..n).map(move |i| (start + i) % n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert_eq!(
            "h".parse::<ServerAddr>().unwrap(),
            ServerAddr::new("h", 4730)
        );
        assert_eq!(
            "h:1".parse::<ServerAddr>().unwrap(),
            ServerAddr::new("h", 1)
        );
        assert_eq!(
            "[::1]:7".parse::<ServerAddr>().unwrap(),
            ServerAddr::new("::1", 7)
        );
        assert_eq!(
            ServerAddr::parse_list("a:1, b").unwrap(),
            vec![ServerAddr::new("a", 1), ServerAddr::new("b", 4730)]
        );
        assert!("h:x".parse::<ServerAddr>().is_err());
        assert!(ServerAddr::parse_list(",").is_err());
    }

    #[tokio::test]
    async fn an_unknown_host_is_not_found() {
        let e = ServerAddr::new("nosuch.invalid", 4730)
            .connect(Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::NotFound));
        assert!(
            e.to_string()
                .starts_with("could not connect to nosuch.invalid:4730: could not resolve host 'nosuch.invalid': "),
            "{e}"
        );
    }

    #[test]
    fn routing_is_stable_and_covers_all() {
        let a: Vec<_> = route(b"key", 3).collect();
        assert_eq!(a, route(b"key", 3).collect::<Vec<_>>());
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, vec![0, 1, 2]);
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
    }
}
