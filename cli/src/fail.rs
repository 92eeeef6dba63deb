//! Errors of the command and the exit codes they map to.

use std::process::ExitCode;

/// Why the command stops with a non-zero exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// Bad command line (exit 2).
    Usage(String),
    /// A job failed or an admin command was refused; the message (if any)
    /// was already printed (exit 1).
    Failed(Option<String>),
    /// Connection, protocol, server or local I/O error (exit 3).
    Runtime(String),
    /// A deadline given with `-t` passed (exit 4).
    Timeout(String),
}

/// Exit code: a job failed (WORK_FAIL / WORK_EXCEPTION) or the server refused an admin command.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: usage error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: connection / server / I/O error.
pub const EXIT_RUNTIME: u8 = 3;
/// Exit code: timeout.
pub const EXIT_TIMEOUT: u8 = 4;

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Failed(_) => EXIT_FAILED,
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Runtime(_) => EXIT_RUNTIME,
            CliError::Timeout(_) => EXIT_TIMEOUT,
        })
    }

    /// Prints the one-line message (if there is one) to stderr.
    pub fn report(&self) {
        match self {
            CliError::Usage(m) => eprintln!("polygear: {m} (see 'polygear --help')"),
            CliError::Failed(Some(m)) | CliError::Runtime(m) | CliError::Timeout(m) => {
                eprintln!("polygear: {m}")
            }
            CliError::Failed(None) => {}
        }
    }
}

impl From<polygear::Error> for CliError {
    fn from(e: polygear::Error) -> Self {
        use polygear::ErrorKind;
        let msg = describe(&e);
        match e.kind() {
            ErrorKind::Timeout => CliError::Timeout(msg),
            ErrorKind::InvalidArgument => CliError::Usage(msg),
            ErrorKind::JobFailed | ErrorKind::JobException => CliError::Failed(Some(msg)),
            _ => CliError::Runtime(msg),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Runtime(strip_os_error(&e.to_string()))
    }
}

/// A one-line, human description of a library error, without the
/// `(os error N)` noise: `could not connect to 127.0.0.1:1: Connection refused`.
pub fn describe(e: &polygear::Error) -> String {
    use polygear::Error;
    match e {
        Error::Connect { addr, source } => {
            format!(
                "could not connect to {addr}: {}",
                strip_os_error(&source.to_string())
            )
        }
        // "no server available (could not connect to …)": the last server's reason is the useful part.
        Error::NoServer(Some(last)) if matches!(**last, Error::Connect { .. }) => describe(last),
        Error::InvalidArgument(m) => m.clone(),
        other => strip_os_error(&other.to_string()),
    }
}

/// Removes every ` (os error N)` from a message.
pub fn strip_os_error(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(at) = rest.find(" (os error ") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + " (os error ".len()..];
        match tail.find(')') {
            Some(close)
                if tail[..close]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'-') =>
            {
                rest = &tail[close + 1..];
            }
            _ => {
                out.push_str(" (os error ");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out.lines().next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_read_well() {
        let e = polygear::Error::Connect {
            addr: "127.0.0.1:1".into(),
            source: std::io::Error::from_raw_os_error(111),
        };
        assert_eq!(
            describe(&e),
            "could not connect to 127.0.0.1:1: Connection refused"
        );
        let e = polygear::Error::NoServer(Some(Box::new(polygear::Error::Connect {
            addr: "h:1".into(),
            source: std::io::Error::from_raw_os_error(111),
        })));
        assert_eq!(describe(&e), "could not connect to h:1: Connection refused");
        assert_eq!(
            CliError::from(e),
            CliError::Runtime("could not connect to h:1: Connection refused".into())
        );
        assert_eq!(strip_os_error("a (os error x) b"), "a (os error x) b");
        assert_eq!(strip_os_error("one\ntwo"), "one");
    }

    #[test]
    fn kinds_map_to_exit_classes() {
        assert!(matches!(
            CliError::from(polygear::Error::Timeout("t".into())),
            CliError::Timeout(_)
        ));
        assert!(matches!(
            CliError::from(polygear::Error::JobFailed {
                handle: "H:x:1".into(),
                reason: None,
            }),
            CliError::Failed(Some(_))
        ));
        assert!(matches!(
            CliError::from(polygear::Error::InvalidArgument("u".into())),
            CliError::Usage(_)
        ));
        assert_eq!(
            CliError::Usage(String::new()).exit_code(),
            ExitCode::from(EXIT_USAGE)
        );
    }
}
