//! Translation of `polygear::Error` into JS errors.
//!
//! napi-rs cannot construct custom `Error` subclasses from Rust, so every
//! error crosses the boundary as a plain `Error` whose message is a record
//! `PGERR␟kind␟code␟extra␟message`; the JS facade (`node/index.js`) parses it
//! and re-throws the matching subclass with a stable `code`. The kind (the
//! record's tag) and the code come from the shared error table
//! ([`polygear_bindings::errors`]): the code of a connection error from the
//! I/O error kind the core keeps.

use polygear::{Error, ErrorKind};
use polygear_bindings::args::ArgError;
use polygear_bindings::errors::{self, class_of, TimeUnit};

/// Field separator of the encoded error record (ASCII unit separator).
const SEP: char = '\u{1f}';

/// Builds the encoded JS error for `kind` / `code`.
pub fn encoded(kind: &str, code: &str, extra: &str, message: &str) -> napi::Error {
    napi::Error::new(
        napi::Status::GenericFailure,
        format!("PGERR{SEP}{kind}{SEP}{code}{SEP}{extra}{SEP}{message}"),
    )
}

/// An argument the caller passed is not acceptable (becomes an `InvalidArgumentError` in JS).
pub fn invalid(message: impl AsRef<str>) -> napi::Error {
    let class = class_of(ErrorKind::InvalidArgument);
    encoded(class.tag, class.code, "", message.as_ref())
}

/// A refused argument: `invalid`, or the core's error.
pub fn arg_err(e: ArgError) -> napi::Error {
    match e {
        ArgError::Value(m) => invalid(m),
        ArgError::Core(e) => to_napi(e),
    }
}

/// The operation was aborted through an `AbortSignal`.
pub fn aborted() -> napi::Error {
    encoded("aborted", "ABORT_ERR", "", "The operation was aborted")
}

/// A connection-class error that has no core error value (the embedded
/// server could not bind): the code of the I/O error kind.
pub fn io_error(kind: std::io::ErrorKind, message: &str) -> napi::Error {
    encoded(
        class_of(ErrorKind::Connection).tag,
        errors::io_code(kind),
        "",
        message,
    )
}

/// Separates the handle from the server's reason in a `JobFailedError`'s
/// extra field (ASCII record separator).
const REASON_SEP: char = '\u{1e}';

/// Converts a core error into the encoded JS error, its message worded by
/// [`errors::message`] with timeouts in milliseconds. The record's extra
/// field is the server's code (`ServerError`, with the server's text as
/// message), the job handle (`JobExceptionError`, with the worker's text as
/// message) or the job handle and the server's reason (`JobFailedError`;
/// a cancelled job, [`errors::is_cancelled`], has code `ECANCELED` and
/// becomes its subclass `JobCancelledError`). `Error::Unsupported` (not
/// polygeard) is a `ServerError` without a server code.
pub fn to_napi(err: Error) -> napi::Error {
    let (class, code) = errors::classify(&err);
    let message = errors::message(&err, TimeUnit::Milliseconds);
    match err {
        Error::Server {
            code: server_code,
            text,
        } => encoded(class.tag, code, &server_code, &text),
        Error::JobFailed { handle, reason } => {
            let extra = match reason {
                Some(r) => format!("{handle}{REASON_SEP}{r}"),
                None => handle,
            };
            encoded(class.tag, code, &extra, &message)
        }
        // A JobFailed subclass in JS (`JobCancelledError`), told apart by its code.
        Error::JobCancelled { handle, reason } => encoded(
            class.tag,
            errors::CANCELLED_CODE,
            &format!("{handle}{REASON_SEP}{reason}"),
            &message,
        ),
        Error::JobException { handle, message } => encoded(class.tag, code, &handle, &message),
        _ => encoded(class.tag, code, "", &message),
    }
}
