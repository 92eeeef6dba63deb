//! The one error type of the crate.

use std::time::Duration;

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
    /// A foreground job's own deadline passed. `started`: whether a worker
    /// had taken the job when it did (`None`: unknown, the server did not
    /// say); `Some(false)` means it was still queued.
    #[error("{}", job_timeout_message(.handle, .function, format_duration(*.after), *.started))]
    JobTimeout {
        /// Job handle.
        handle: String,
        /// The job's function.
        function: String,
        /// The deadline that passed.
        after: Duration,
        /// Whether a worker was running the job.
        started: Option<bool>,
    },
    /// The peer broke the wire protocol (or is not a Gearman server).
    #[error("{}", protocol_message(.0))]
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
    #[error("job {handle} failed{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    JobFailed {
        /// Job handle.
        handle: String,
        /// Why, when the server failed the job itself and said so (polygeard:
        /// "the worker exceeded its 1 s timeout").
        reason: Option<String>,
    },
    /// The server cancelled the job (polygeard: admin `cancel job`, the
    /// dashboard, [`Client::cancel`](crate::Client::cancel)); its clients get
    /// this instead of [`Error::JobFailed`]. Counts as
    /// [`ErrorKind::JobFailed`].
    /// Its text is the same as a [`Error::JobFailed`] with that reason.
    #[error("job {handle} failed: {reason}")]
    JobCancelled {
        /// Job handle.
        handle: String,
        /// The server's reason, e.g. "cancelled by an administrator".
        reason: String,
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
    /// The server does not offer a polygear extension (`feature`, e.g.
    /// "retained results"): it is not polygeard. Nothing was sent to it, and
    /// the connection stays usable. Its [`ErrorKind`] is `Server`.
    #[error("server {addr} does not support {feature} (a polygeard extension)")]
    Unsupported {
        /// `host:port`.
        addr: String,
        /// The extension asked for.
        feature: String,
    },
}

impl Error {
    /// A short, stable category name used by the language bindings.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Connect { .. }
            | Error::ConnectionLost { .. }
            | Error::NoServer(_)
            | Error::Io(_) => ErrorKind::Connection,
            Error::Timeout(_) | Error::JobTimeout { .. } => ErrorKind::Timeout,
            Error::Protocol(_) => ErrorKind::Protocol,
            Error::Server { .. } | Error::Unsupported { .. } => ErrorKind::Server,
            Error::JobFailed { .. } | Error::JobCancelled { .. } => ErrorKind::JobFailed,
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

    /// The error of a job that ended with WORK_FAIL, preceded by the
    /// server's `reason` if it gave one (WORK_FAIL_REASON): [`Error::JobCancelled`]
    /// for a reason that starts with "cancelled", else [`Error::JobFailed`].
    pub fn job_failed(handle: String, reason: Option<String>) -> Error {
        match reason {
            Some(reason) if is_cancel_reason(&reason) => Error::JobCancelled { handle, reason },
            reason => Error::JobFailed { handle, reason },
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

/// Whether a WORK_FAIL_REASON text says the job was cancelled
/// (polygeard: "cancelled by an administrator").
fn is_cancel_reason(reason: &str) -> bool {
    reason == "cancelled" || reason.starts_with("cancelled ")
}

/// The text of [`Error::JobTimeout`] with the deadline already rendered
/// (`after`, e.g. "10 s"); the language bindings render it in their unit.
pub fn job_timeout_message(
    handle: &str,
    function: &str,
    after: impl std::fmt::Display,
    started: Option<bool>,
) -> String {
    if started == Some(false) {
        format!(
            "no worker has taken job {handle} for function '{function}' in {after}; \
             is a worker registered?"
        )
    } else {
        format!("job {handle} did not finish within {after}")
    }
}

/// A duration for messages: "5 ms" below a second, else "10 s", "1.5 s".
pub fn format_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", format_decimal(d.as_secs_f64() * 1e3))
    } else {
        format!("{} s", format_decimal(d.as_secs_f64()))
    }
}

/// At most three decimals, without trailing zeros: `1.5`, `10`, `0.001`.
pub fn format_decimal(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_owned()
    }
}

fn protocol_message(e: &ProtocolError) -> String {
    match e {
        // Says it all ("the server at h:80 answered 'HTTP', not Gearman").
        ProtocolError::NotGearman { .. } => e.to_string(),
        _ => format!("protocol error: {e}"),
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

    #[test]
    fn job_timeouts_name_the_deadline_and_whether_a_worker_took_the_job() {
        let queued = Error::JobTimeout {
            handle: "H:vm:1".into(),
            function: "x".into(),
            after: Duration::from_secs(10),
            started: Some(false),
        };
        assert_eq!(
            queued.to_string(),
            "no worker has taken job H:vm:1 for function 'x' in 10 s; is a worker registered?"
        );
        assert_eq!(queued.kind(), ErrorKind::Timeout);
        let running = Error::JobTimeout {
            handle: "H:vm:2".into(),
            function: "x".into(),
            after: Duration::from_millis(5),
            started: Some(true),
        };
        assert_eq!(running.to_string(), "job H:vm:2 did not finish within 5 ms");
        let unknown = Error::JobTimeout {
            handle: "H:vm:3".into(),
            function: "x".into(),
            after: Duration::from_millis(1500),
            started: None,
        };
        assert_eq!(
            unknown.to_string(),
            "job H:vm:3 did not finish within 1.5 s"
        );
        assert_eq!(format_duration(Duration::from_micros(2500)), "2.5 ms");
        assert_eq!(format_duration(Duration::ZERO), "0 ms");
    }

    #[test]
    fn failed_jobs_give_the_servers_reason() {
        let with = Error::JobFailed {
            handle: "H:1".into(),
            reason: Some("the worker exceeded its 1 s timeout".into()),
        };
        assert_eq!(
            with.to_string(),
            "job H:1 failed: the worker exceeded its 1 s timeout"
        );
        let without = Error::JobFailed {
            handle: "H:1".into(),
            reason: None,
        };
        assert_eq!(without.to_string(), "job H:1 failed");
        let cancelled =
            Error::job_failed("H:2".into(), Some("cancelled by an administrator".into()));
        assert!(matches!(cancelled, Error::JobCancelled { .. }));
        assert_eq!(
            cancelled.to_string(),
            "job H:2 failed: cancelled by an administrator"
        );
        assert_eq!(cancelled.kind(), ErrorKind::JobFailed);
        let other = Error::job_failed(
            "H:3".into(),
            Some("the worker exceeded its 1 s timeout".into()),
        );
        assert!(matches!(
            other,
            Error::JobFailed {
                reason: Some(_),
                ..
            }
        ));
        assert!(matches!(
            Error::job_failed("H:4".into(), None),
            Error::JobFailed { reason: None, .. }
        ));
    }

    #[test]
    fn a_peer_that_is_not_gearman_is_a_protocol_error() {
        let e: Error = ProtocolError::BadMagic(*b"HTTP")
            .from_peer("127.0.0.1:8080")
            .into();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert_eq!(
            e.to_string(),
            "the server at 127.0.0.1:8080 answered 'HTTP', not Gearman"
        );
        let other: Error = ProtocolError::UnknownType(77).into();
        assert_eq!(other.to_string(), "protocol error: unknown packet type 77");
    }
}
