//! The one error type of the crate.

use bytes::Bytes;

use crate::protocol::admin::{AdminError, ListingError};
use crate::protocol::{CodecError, ProtocolError};

/// Everything that can go wrong talking to a Gearman server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Could not connect to a server (refused, unreachable, bad address).
    #[error("could not connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// An established connection failed or was closed by the peer.
    #[error("connection to {addr} lost: {reason}")]
    ConnectionLost {
        /// `host:port`.
        addr: String,
        /// What happened.
        reason: String,
        /// The kind of I/O error the loss counts as: `ConnectionReset` (the
        /// connection broke or the peer closed it, or a reply did not fit
        /// the request), `UnexpectedEof` when an admin reply was cut short.
        kind: std::io::ErrorKind,
    },
    /// Every configured server is down: the last server's error (`None`:
    /// no server configured).
    #[error("no server available ({})", no_server_reason(.0))]
    NoServer(Option<Box<Error>>),
    /// Any other I/O failure.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// An operation ran past its deadline.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The peer broke the wire protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The server answered with an ERROR packet (e.g. `QUEUE_ERROR`).
    #[error("server error {code}: {text}")]
    Server {
        /// Error code, e.g. `QUEUE_ERROR`.
        code: String,
        /// Error text.
        text: String,
    },
    /// The worker reported WORK_FAIL (or the server gave up on the job).
    #[error("job {handle} failed")]
    JobFailed {
        /// Job handle.
        handle: String,
    },
    /// The worker raised an exception (WORK_EXCEPTION); `message` is its text.
    #[error("job {handle} raised: {message}")]
    JobException {
        /// Job handle.
        handle: String,
        /// The worker's exception text.
        message: String,
    },
    /// A caller-supplied value is not acceptable (too long, empty, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The client, worker or job was closed or stopped.
    #[error("closed: {0}")]
    Closed(String),
}

impl Error {
    /// A short, stable category name used by the language bindings.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Connect { .. }
            | Error::ConnectionLost { .. }
            | Error::NoServer(_)
            | Error::Io(_) => ErrorKind::Connection,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Protocol(_) => ErrorKind::Protocol,
            Error::Server { .. } => ErrorKind::Server,
            Error::JobFailed { .. } => ErrorKind::JobFailed,
            Error::JobException { .. } => ErrorKind::JobException,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::Closed(_) => ErrorKind::Closed,
        }
    }

    /// The kind of the I/O error behind a connection error: `Connect` and
    /// `Io` keep their `std::io::Error`, `ConnectionLost` its kind, and
    /// `NoServer` its last server's error. `None` for the other errors.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Error::Connect { source, .. } | Error::Io(source) => Some(source.kind()),
            Error::ConnectionLost { kind, .. } => Some(*kind),
            Error::NoServer(last) => last.as_deref().and_then(Error::io_kind),
            _ => None,
        }
    }

    /// Builds [`Error::Server`] from an ERROR packet's fields.
    pub fn server(code: &Bytes, text: &Bytes) -> Error {
        Error::Server {
            code: String::from_utf8_lossy(code).into_owned(),
            text: String::from_utf8_lossy(text).into_owned(),
        }
    }
}

fn no_server_reason(last: &Option<Box<Error>>) -> String {
    match last {
        Some(e) => e.to_string(),
        None => "no server configured".into(),
    }
}

/// An `ERR` reply of the admin protocol: the server refused the command.
impl From<AdminError> for Error {
    fn from(e: AdminError) -> Error {
        Error::Server {
            code: e.code,
            text: e.text,
        }
    }
}

/// A listing reply that was an `ERR` line or malformed.
impl From<ListingError> for Error {
    fn from(e: ListingError) -> Error {
        match e {
            ListingError::Server(e) => e.into(),
            ListingError::Malformed(e) => e.into(),
        }
    }
}

/// A failure of the tokio-util codec impls.
impl From<CodecError> for Error {
    fn from(e: CodecError) -> Error {
        match e {
            CodecError::Io(e) => e.into(),
            CodecError::Protocol(e) => e.into(),
        }
    }
}

/// Coarse error categories, mapped to exception classes by the bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Connection refused, lost, or no server reachable.
    Connection,
    /// A deadline passed.
    Timeout,
    /// Malformed traffic.
    Protocol,
    /// An ERROR packet from the server.
    Server,
    /// WORK_FAIL.
    JobFailed,
    /// WORK_EXCEPTION.
    JobException,
    /// Bad argument from the caller.
    InvalidArgument,
    /// Used after close/stop.
    Closed,
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn connection_errors_keep_their_io_kind() {
        let refused = Error::Connect {
            addr: "h:1".into(),
            source: io::ErrorKind::ConnectionRefused.into(),
        };
        assert_eq!(refused.io_kind(), Some(io::ErrorKind::ConnectionRefused));
        let lost = Error::ConnectionLost {
            addr: "h:1".into(),
            reason: "closed by the server".into(),
            kind: io::ErrorKind::ConnectionReset,
        };
        assert_eq!(
            lost.to_string(),
            "connection to h:1 lost: closed by the server"
        );
        assert_eq!(lost.io_kind(), Some(io::ErrorKind::ConnectionReset));
        let none = Error::NoServer(Some(Box::new(refused)));
        assert_eq!(
            none.to_string(),
            "no server available (could not connect to h:1: connection refused)"
        );
        assert_eq!(none.io_kind(), Some(io::ErrorKind::ConnectionRefused));
        assert_eq!(none.kind(), ErrorKind::Connection);
        let unconfigured = Error::NoServer(None);
        assert_eq!(
            unconfigured.to_string(),
            "no server available (no server configured)"
        );
        assert_eq!(unconfigured.io_kind(), None);
        assert_eq!(
            Error::Io(io::ErrorKind::BrokenPipe.into()).io_kind(),
            Some(io::ErrorKind::BrokenPipe)
        );
        assert_eq!(Error::Timeout("t".into()).io_kind(), None);
        assert_eq!(Error::Closed("c".into()).io_kind(), None);
    }
}
