//! Translation of `polygear::Error` into JS errors.
//!
//! napi-rs cannot construct custom `Error` subclasses from Rust, so every
//! error crosses the boundary as a plain `Error` whose message is a record
//! `PGERR␟kind␟code␟extra␟message`; the JS facade (`node/index.js`) parses it
//! and re-throws the matching subclass with a stable `code`.

use std::io::ErrorKind as IoKind;

use polygear::{Error, ErrorKind};

/// Field separator of the encoded error record (ASCII unit separator).
const SEP: char = '\u{1f}';

/// Builds the encoded JS error for `kind` / `code`.
pub fn encoded(kind: &str, code: &str, extra: &str, message: &str) -> napi::Error {
    napi::Error::new(
        napi::Status::GenericFailure,
        format!("PGERR{SEP}{kind}{SEP}{code}{SEP}{extra}{SEP}{message}"),
    )
}

/// An argument the caller passed is not acceptable (becomes a `TypeError`/`RangeError` in JS).
pub fn invalid(message: impl AsRef<str>) -> napi::Error {
    encoded("invalid", "EINVAL", "", message.as_ref())
}

/// The operation was aborted through an `AbortSignal`.
pub fn aborted() -> napi::Error {
    encoded("aborted", "ABORT_ERR", "", "The operation was aborted")
}

/// The POSIX-style code for an I/O error kind.
fn io_code(kind: IoKind) -> &'static str {
    match kind {
        IoKind::ConnectionRefused => "ECONNREFUSED",
        IoKind::ConnectionReset => "ECONNRESET",
        IoKind::ConnectionAborted => "ECONNABORTED",
        IoKind::NotConnected => "ENOTCONN",
        IoKind::TimedOut => "ETIMEDOUT",
        IoKind::BrokenPipe => "EPIPE",
        IoKind::AddrNotAvailable => "EADDRNOTAVAIL",
        IoKind::AddrInUse => "EADDRINUSE",
        IoKind::HostUnreachable => "EHOSTUNREACH",
        IoKind::NetworkUnreachable => "ENETUNREACH",
        IoKind::UnexpectedEof => "ECONNRESET",
        IoKind::NotFound => "ENOTFOUND",
        _ => "ECONNERROR",
    }
}

/// Best-effort code from the text of an aggregated connection error.
fn code_from_text(text: &str) -> &'static str {
    let t = text.to_ascii_lowercase();
    if t.contains("refused") {
        "ECONNREFUSED"
    } else if t.contains("timed out") {
        "ETIMEDOUT"
    } else if t.contains("reset")
        || t.contains("lost")
        || t.contains("closed")
        || t.contains("broken pipe")
    {
        "ECONNRESET"
    } else if t.contains("unreachable") {
        "EHOSTUNREACH"
    } else if t.contains("lookup") || t.contains("resolve") || t.contains("not known") {
        "ENOTFOUND"
    } else {
        "ECONNERROR"
    }
}

/// Converts a core error into the encoded JS error.
pub fn to_napi(err: Error) -> napi::Error {
    let message = err.to_string();
    match (&err, err.kind()) {
        (Error::Connect { source, .. }, _) => {
            // While backing off, the core reports NotConnected with the last failure's text.
            let code = match source.kind() {
                IoKind::NotConnected | IoKind::Other => code_from_text(&source.to_string()),
                kind => io_code(kind),
            };
            encoded("connection", code, "", &message)
        }
        (Error::Io(source), _) => encoded("connection", io_code(source.kind()), "", &message),
        (Error::ConnectionLost { .. }, _) => encoded("connection", "ECONNRESET", "", &message),
        (Error::NoServer(_), _) => encoded("connection", code_from_text(&message), "", &message),
        (Error::Server { code, text }, _) => encoded("server", "ESERVER", code, text),
        (Error::JobFailed { handle }, _) => encoded("jobfailed", "EJOBFAILED", handle, &message),
        (
            Error::JobException {
                handle,
                message: text,
            },
            _,
        ) => encoded("jobexception", "EJOBEXCEPTION", handle, text),
        (_, ErrorKind::Timeout) => encoded("timeout", "ETIMEDOUT", "", &message),
        (_, ErrorKind::Protocol) => encoded("protocol", "EPROTOCOL", "", &message),
        (_, ErrorKind::InvalidArgument) => encoded("invalid", "EINVAL", "", &message),
        (_, ErrorKind::Closed) => encoded("closed", "ECLOSED", "", &message),
        (_, ErrorKind::Connection) => encoded("connection", code_from_text(&message), "", &message),
        (_, ErrorKind::Server) => encoded("server", "ESERVER", "", &message),
        (_, ErrorKind::JobFailed) => encoded("jobfailed", "EJOBFAILED", "", &message),
        (_, ErrorKind::JobException) => encoded("jobexception", "EJOBEXCEPTION", "", &message),
    }
}
