//! The one error table: every [`polygear::Error`], by its [`ErrorKind`] and
//! the I/O error kind it keeps ([`polygear::Error::io_kind`]), mapped onto a
//! stable code and the exception class each language raises.
//!
//! | kind              | code                                  | Python                   | Ruby                        | Node                   |
//! |-------------------|---------------------------------------|--------------------------|-----------------------------|------------------------|
//! | `Connection`      | from the I/O kind ([`IO_CODES`]), else `ECONNERROR` | `GearmanConnectionError` | `Polygear::ConnectionError` | `ConnectionError`      |
//! | `Timeout`         | `ETIMEDOUT`                           | `GearmanTimeoutError`    | `Polygear::TimeoutError`    | `TimeoutError`         |
//! | `Protocol`        | `EPROTOCOL`                           | `ProtocolError`          | `Polygear::ProtocolError`   | `ProtocolError`        |
//! | `Server`          | `ESERVER`                             | `ServerError`            | `Polygear::ServerError`     | `ServerError`          |
//! | `JobFailed`       | `EJOBFAILED`                          | `JobFailed`              | `Polygear::JobFailed`       | `JobFailedError`       |
//! | `JobException`    | `EJOBEXCEPTION`                       | `JobException`           | `Polygear::JobException`    | `JobExceptionError`    |
//! | `InvalidArgument` | `EINVAL`                              | `InvalidArgumentError`   | `ArgumentError` (built in)  | `InvalidArgumentError` |
//! | `Closed`          | `ECLOSED`                             | `ClosedError`            | `Polygear::ClosedError`     | `ClosedError`          |
//!
//! Python's classes live in `polygear._errors` (base `GearmanError`), Ruby's
//! are defined by the extension under `Polygear` (base `Polygear::Error`),
//! Node's in `node/index.js` (base `GearmanError`), which builds them from the
//! record the addon encodes with [`ErrorClass::tag`] and [`code`].

use std::io::ErrorKind as IoKind;
use std::time::Duration;

use polygear::{job_timeout_message, Error, ErrorKind};

/// The unit a language gives timeouts in: Python and Ruby seconds, Node
/// milliseconds. Timeout messages use it and say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Python, Ruby.
    Seconds,
    /// Node.
    Milliseconds,
}

impl TimeUnit {
    /// `d` in this unit: "10 s", "5 ms", "0.25 s".
    pub fn format(self, d: Duration) -> String {
        match self {
            TimeUnit::Seconds => format!("{} s", polygear::format_decimal(d.as_secs_f64())),
            TimeUnit::Milliseconds => {
                format!("{} ms", polygear::format_decimal(d.as_secs_f64() * 1e3))
            }
        }
    }

    /// The unit's name: "seconds" or "milliseconds".
    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "seconds",
            TimeUnit::Milliseconds => "milliseconds",
        }
    }
}

/// The message a binding raises `e` with: [`Error::JobTimeout`] with the
/// deadline in the language's unit, which it names ("job H:vm:245 did not
/// finish within 5 ms (timeout is in milliseconds)"); every other error as
/// the core words it.
pub fn message(e: &Error, unit: TimeUnit) -> String {
    match e {
        Error::JobTimeout {
            handle,
            function,
            after,
            started,
        } => format!(
            "{} (timeout is in {})",
            job_timeout_message(handle, function, unit.format(*after), *started),
            unit.name()
        ),
        other => other.to_string(),
    }
}

/// Whether `e` is a job cancelled by its submitter or an administrator
/// ([`Error::JobCancelled`]): each language raises a subclass of its
/// JobFailed class for it, with code [`CANCELLED_CODE`].
pub fn is_cancelled(e: &Error) -> bool {
    matches!(e, Error::JobCancelled { .. })
}

/// The code of a cancelled job's error (a JobFailed subclass in each language).
pub const CANCELLED_CODE: &str = "ECANCELED";

/// How one [`ErrorKind`] surfaces in each language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorClass {
    /// The core's category.
    pub kind: ErrorKind,
    /// The stable code (Node's `err.code`) when no I/O kind refines it.
    pub code: &'static str,
    /// The kind field of the Node addon's encoded error record.
    pub tag: &'static str,
    /// Class name in `polygear._errors`.
    pub python: &'static str,
    /// Constant name: under `Polygear`, or a built-in class if it starts with `::`.
    pub ruby: &'static str,
    /// Class name exported by `node/index.js`.
    pub node: &'static str,
}

/// The base class of Ruby's classes, under `Polygear` (Python's base
/// `GearmanError` and Node's are written in their packages).
pub const RUBY_BASE: &str = "Error";

/// One row per [`ErrorKind`], in the order of [`class_of`].
#[rustfmt::skip]
pub const CLASSES: [ErrorClass; 8] = [
    row(ErrorKind::Connection, "ECONNERROR", "connection", "GearmanConnectionError", "ConnectionError", "ConnectionError"),
    row(ErrorKind::Timeout, "ETIMEDOUT", "timeout", "GearmanTimeoutError", "TimeoutError", "TimeoutError"),
    row(ErrorKind::Protocol, "EPROTOCOL", "protocol", "ProtocolError", "ProtocolError", "ProtocolError"),
    row(ErrorKind::Server, "ESERVER", "server", "ServerError", "ServerError", "ServerError"),
    row(ErrorKind::JobFailed, "EJOBFAILED", "jobfailed", "JobFailed", "JobFailed", "JobFailedError"),
    row(ErrorKind::JobException, "EJOBEXCEPTION", "jobexception", "JobException", "JobException", "JobExceptionError"),
    row(ErrorKind::InvalidArgument, "EINVAL", "invalid", "InvalidArgumentError", "::ArgumentError", "InvalidArgumentError"),
    row(ErrorKind::Closed, "ECLOSED", "closed", "ClosedError", "ClosedError", "ClosedError"),
];

const fn row(
    kind: ErrorKind,
    code: &'static str,
    tag: &'static str,
    python: &'static str,
    ruby: &'static str,
    node: &'static str,
) -> ErrorClass {
    ErrorClass {
        kind,
        code,
        tag,
        python,
        ruby,
        node,
    }
}

/// The POSIX-style codes of the I/O error kinds a connection error may keep
/// (the peer's EOF counts as a reset); other kinds give `ECONNERROR`.
pub const IO_CODES: [(IoKind, &str); 13] = [
    (IoKind::ConnectionRefused, "ECONNREFUSED"),
    (IoKind::ConnectionReset, "ECONNRESET"),
    (IoKind::UnexpectedEof, "ECONNRESET"),
    (IoKind::ConnectionAborted, "ECONNABORTED"),
    (IoKind::NotConnected, "ENOTCONN"),
    (IoKind::TimedOut, "ETIMEDOUT"),
    (IoKind::BrokenPipe, "EPIPE"),
    (IoKind::HostUnreachable, "EHOSTUNREACH"),
    (IoKind::NetworkUnreachable, "ENETUNREACH"),
    (IoKind::AddrNotAvailable, "EADDRNOTAVAIL"),
    (IoKind::AddrInUse, "EADDRINUSE"),
    (IoKind::PermissionDenied, "EACCES"),
    (IoKind::NotFound, "ENOTFOUND"),
];

/// The row of `kind`.
pub fn class_of(kind: ErrorKind) -> &'static ErrorClass {
    &CLASSES[index_of(kind)]
}

/// The index of `kind`'s row in [`CLASSES`].
pub fn index_of(kind: ErrorKind) -> usize {
    // Exhaustive: a new ErrorKind does not compile until it has a row.
    match kind {
        ErrorKind::Connection => 0,
        ErrorKind::Timeout => 1,
        ErrorKind::Protocol => 2,
        ErrorKind::Server => 3,
        ErrorKind::JobFailed => 4,
        ErrorKind::JobException => 5,
        ErrorKind::InvalidArgument => 6,
        ErrorKind::Closed => 7,
    }
}

/// The code of a connection error with I/O kind `kind`.
pub fn io_code(kind: IoKind) -> &'static str {
    IO_CODES
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(CLASSES[0].code, |(_, code)| code)
}

/// The stable code of `e`: a connection error's from the I/O kind it keeps,
/// every other error's from its row.
pub fn code(e: &Error) -> &'static str {
    let class = class_of(e.kind());
    match (class.kind, e.io_kind()) {
        (ErrorKind::Connection, Some(kind)) => io_code(kind),
        _ => class.code,
    }
}

/// The row and code of `e`.
pub fn classify(e: &Error) -> (&'static ErrorClass, &'static str) {
    (class_of(e.kind()), code(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn every_kind_has_its_row() {
        for (i, class) in CLASSES.iter().enumerate() {
            assert_eq!(class_of(class.kind), &CLASSES[i]);
        }
        let tags: std::collections::HashSet<_> = CLASSES.iter().map(|c| c.tag).collect();
        assert_eq!(tags.len(), CLASSES.len(), "tags are unique");
    }

    #[test]
    fn codes_follow_the_io_kind() {
        let refused = Error::Connect {
            addr: "h:1".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(code(&refused), "ECONNREFUSED");
        let lost = Error::ConnectionLost {
            addr: "h:1".into(),
            reason: "closed by the server".into(),
            kind: io::ErrorKind::ConnectionReset,
        };
        assert_eq!(code(&lost), "ECONNRESET");
        assert_eq!(
            code(&Error::NoServer(Some(Box::new(refused)))),
            "ECONNREFUSED"
        );
        assert_eq!(code(&Error::NoServer(None)), "ECONNERROR");
        assert_eq!(code(&Error::Io(io::ErrorKind::BrokenPipe.into())), "EPIPE");
        assert_eq!(code(&Error::Io(io::ErrorKind::Other.into())), "ECONNERROR");
        let unresolved = Error::Connect {
            addr: "nosuch.invalid:4730".into(),
            source: io::Error::new(io::ErrorKind::NotFound, "could not resolve host"),
        };
        assert_eq!(code(&unresolved), "ENOTFOUND");
        let timed_out = Error::Connect {
            addr: "h:1".into(),
            source: io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
        };
        assert_eq!(classify(&timed_out), (&CLASSES[0], "ETIMEDOUT"));
    }

    fn package_file(path: &str) -> String {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        std::fs::read_to_string(format!("{root}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The packages define every class of the table, Node's declares every
    /// code and translates every tag: the table cannot drift from them.
    #[test]
    fn the_packages_know_every_row() {
        let (dts, js) = (
            package_file("node/index.d.ts"),
            package_file("node/index.js"),
        );
        let python = package_file("python/polygear/_errors.py");
        let ruby = package_file("ruby/lib/polygear/errors.rb");
        let codes = CLASSES
            .iter()
            .map(|c| c.code)
            .chain(IO_CODES.iter().map(|(_, c)| *c));
        for code in codes {
            assert!(
                dts.contains(&format!("| '{code}'")),
                "index.d.ts ErrorCode lacks {code}"
            );
        }
        for class in &CLASSES {
            assert!(
                js.contains(&format!("case '{}':", class.tag)),
                "index.js: tag {}",
                class.tag
            );
            assert!(
                js.contains(&format!("class {} extends GearmanError", class.node)),
                "index.js: {}",
                class.node
            );
            assert!(
                python.contains(&format!("class {}(", class.python)),
                "_errors.py: {}",
                class.python
            );
            if !class.ruby.starts_with("::") {
                assert!(
                    ruby.contains(&format!("class {} <", class.ruby))
                        && ruby.contains(&format!("module {RUBY_BASE}")),
                    "errors.rb: {}",
                    class.ruby
                );
            }
        }
    }

    #[test]
    fn messages_give_timeouts_in_the_languages_unit() {
        let running = Error::JobTimeout {
            handle: "H:vm:245".into(),
            function: "x".into(),
            after: Duration::from_millis(5),
            started: Some(true),
        };
        assert_eq!(
            message(&running, TimeUnit::Milliseconds),
            "job H:vm:245 did not finish within 5 ms (timeout is in milliseconds)"
        );
        assert_eq!(
            message(&running, TimeUnit::Seconds),
            "job H:vm:245 did not finish within 0.005 s (timeout is in seconds)"
        );
        let queued = Error::JobTimeout {
            handle: "H".into(),
            function: "x".into(),
            after: Duration::from_secs(10),
            started: Some(false),
        };
        assert_eq!(
            message(&queued, TimeUnit::Seconds),
            "no worker has taken job H for function 'x' in 10 s; is a worker registered? (timeout is in seconds)"
        );
        assert_eq!(
            message(&queued, TimeUnit::Milliseconds),
            "no worker has taken job H for function 'x' in 10000 ms; is a worker registered? (timeout is in milliseconds)"
        );
        assert_eq!(classify(&queued).1, "ETIMEDOUT");
        let failed = Error::JobFailed {
            handle: "H".into(),
            reason: Some("the worker exceeded its 1 s timeout".into()),
        };
        assert_eq!(
            message(&failed, TimeUnit::Seconds),
            "job H failed: the worker exceeded its 1 s timeout"
        );
    }

    #[test]
    fn other_kinds_use_their_row() {
        let cases = [
            (
                Error::Timeout("t".into()),
                "ETIMEDOUT",
                "GearmanTimeoutError",
            ),
            (
                Error::server(&"E".into(), &"t".into()),
                "ESERVER",
                "ServerError",
            ),
            (
                Error::JobFailed {
                    handle: "H".into(),
                    reason: None,
                },
                "EJOBFAILED",
                "JobFailed",
            ),
            (
                Error::JobException {
                    handle: "H".into(),
                    message: "m".into(),
                },
                "EJOBEXCEPTION",
                "JobException",
            ),
            (
                Error::InvalidArgument("x".into()),
                "EINVAL",
                "InvalidArgumentError",
            ),
            (Error::Closed("x".into()), "ECLOSED", "ClosedError"),
        ];
        for (e, want, python) in cases {
            let (class, code) = classify(&e);
            assert_eq!((code, class.python), (want, python), "{e}");
        }
    }
}
