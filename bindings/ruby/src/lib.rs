//! Native part of the `polygear` Ruby gem: thin magnus glue over the
//! `polygear` core crate (client, worker, admin) and `polygear-server`.
//!
//! Every blocking call releases the GVL while tokio does the work (see
//! [`gvl::wait`]), so other Ruby threads keep running, and stays
//! interruptible (`Thread#raise`, `Thread#kill`, `Timeout`, signals).
//! Ruby objects are never touched without the GVL: arguments are copied
//! into Rust values first, results are converted after the GVL is back.
//! The idiomatic Ruby API (keyword arguments, blocks, structs) lives in
//! `ruby/lib/polygear/*.rb`; this crate exposes `Polygear::Native::*`,
//! `Polygear::Job` and the exception classes.
//!
//! What the three language bindings share (argument checks, the
//! caller-driven runtime and its wait loop, the error table) is in
//! `polygear-bindings` (`bindings/common`).

use std::sync::OnceLock;
use std::time::Duration;

use magnus::{prelude::*, value::Opaque, Error, ExceptionClass, RModule, Ruby, Value};
use polygear::ErrorKind;
use polygear_bindings::args::{self, ArgError};
use polygear_bindings::errors::{self, TimeUnit};

mod admin;
mod client;
mod gvl;
mod server;
mod worker;

pub(crate) use polygear_bindings::lock;

/// The one tokio runtime of the process, created on first use: the
/// current-thread runtime driven by the Ruby threads that wait on it
/// ([`gvl::wait`]); see [`polygear_bindings::runtime`] for why. A failure to
/// create it is a Ruby `RuntimeError`.
pub(crate) fn runtime(ruby: &Ruby) -> Result<&'static tokio::runtime::Runtime, Error> {
    polygear_bindings::runtime::driven().map_err(|e| {
        Error::new(
            ruby.exception_runtime_error(),
            format!("cannot start the tokio runtime: {e}"),
        )
    })
}

/// The exception class of each row of the shared error table
/// ([`errors::CLASSES`]), looked up once by `Init_polygear_ext`.
static ERRORS: OnceLock<Vec<Opaque<ExceptionClass>>> = OnceLock::new();

/// `Polygear::JobCancelled` (a `JobFailed` subclass), for a job cancelled
/// by its submitter or an administrator ([`errors::is_cancelled`]).
static CANCELLED: OnceLock<Opaque<ExceptionClass>> = OnceLock::new();

/// Looks up the class of every kind in the shared error table: `Polygear::*`
/// as `ruby/lib/polygear/errors.rb` defines them (each includes the module
/// `Polygear::Error` and subclasses a built-in exception, which a class
/// defined here could not express as readably), `ArgumentError` is Ruby's.
fn define_errors(ruby: &Ruby, m: RModule) -> Result<(), Error> {
    let mut classes = Vec::with_capacity(errors::CLASSES.len());
    for row in &errors::CLASSES {
        let class: ExceptionClass = match row.ruby.strip_prefix("::") {
            Some(builtin) => ruby.class_object().const_get(builtin)?,
            None => m.const_get(row.ruby).map_err(|_| {
                Error::new(
                    ruby.exception_load_error(),
                    format!(
                        "Polygear::{} is not defined: load the extension with `require \"polygear\"`",
                        row.ruby
                    ),
                )
            })?,
        };
        classes.push(class.into());
    }
    let _ = ERRORS.set(classes);
    let cancelled: ExceptionClass = m.const_get("JobCancelled").map_err(|_| {
        Error::new(
            ruby.exception_load_error(),
            "Polygear::JobCancelled is not defined: load the extension with `require \"polygear\"`",
        )
    })?;
    let _ = CANCELLED.set(cancelled.into());
    Ok(())
}

/// An exception of the class the shared table gives `kind`, with `msg` and
/// the instance variables `ivars`.
fn exception(ruby: &Ruby, kind: ErrorKind, msg: String, ivars: Vec<(&str, String)>) -> Error {
    let Some(classes) = ERRORS.get() else {
        return Error::new(ruby.exception_runtime_error(), msg);
    };
    exception_of_class(ruby.get_inner(classes[errors::index_of(kind)]), msg, ivars)
}

/// An exception of `class` with `msg` and the instance variables `ivars`.
fn exception_of_class(class: ExceptionClass, msg: String, ivars: Vec<(&str, String)>) -> Error {
    if ivars.is_empty() {
        return Error::new(class, msg);
    }
    match class.new_instance((msg.as_str(),)) {
        Ok(exc) => {
            for (name, value) in ivars {
                if let Err(err) = exc.funcall::<_, _, Value>("instance_variable_set", (name, value))
                {
                    return err;
                }
            }
            Error::from(exc)
        }
        Err(err) => err,
    }
}

/// Converts a core error into the exception of its kind in the shared table
/// (`Polygear::ConnectionError`, ..., `ArgumentError` for invalid arguments).
///
/// Every `Polygear::Error` carries `@code` (the table's stable code; a
/// `ServerError` the server's own), `JobFailed`/`JobException` carry
/// `@handle` (and `@reason` / `@worker_message`). The message is the shared
/// table's, timeouts in seconds ("(timeout is in seconds)"). A cancelled job
/// is a `Polygear::JobCancelled` (a `JobFailed`) with code `ECANCELED`.
pub(crate) fn map_err(ruby: &Ruby, e: polygear::Error) -> Error {
    use polygear::Error as E;
    let msg = errors::message(&e, TimeUnit::Seconds);
    if let (true, Some(class)) = (errors::is_cancelled(&e), CANCELLED.get()) {
        let (handle, reason) = match e {
            E::JobCancelled { handle, reason } => (handle, reason),
            _ => unreachable!("is_cancelled is true only for JobCancelled"),
        };
        let ivars = vec![
            ("@handle", handle),
            ("@reason", reason),
            ("@code", errors::CANCELLED_CODE.to_string()),
        ];
        return exception_of_class(ruby.get_inner(*class), msg, ivars);
    }
    let (kind, code) = (e.kind(), errors::code(&e).to_string());
    let mut ivars = match e {
        E::Server { code, .. } => return exception(ruby, kind, msg, vec![("@code", code)]),
        E::JobFailed { handle, reason } => {
            let mut v = vec![("@handle", handle)];
            v.extend(reason.map(|r| ("@reason", r)));
            v
        }
        E::JobException { handle, message } => {
            vec![("@handle", handle), ("@worker_message", message)]
        }
        _ => vec![],
    };
    if kind != ErrorKind::InvalidArgument {
        ivars.push(("@code", code));
    }
    exception(ruby, kind, msg, ivars)
}

/// The exception for an error of `kind` with stable code `code` that has no
/// core error value.
pub(crate) fn error_of_kind(ruby: &Ruby, kind: ErrorKind, code: &str, msg: String) -> Error {
    exception(ruby, kind, msg, vec![("@code", code.to_string())])
}

/// A refused argument: `ArgumentError`, or the core's error.
pub(crate) fn arg_err(ruby: &Ruby, e: ArgError) -> Error {
    match e {
        ArgError::Value(m) => Error::new(ruby.exception_arg_error(), m),
        ArgError::Core(e) => map_err(ruby, e),
    }
}

/// A number of seconds ≥ 0 (else an `ArgumentError`).
pub(crate) fn secs(ruby: &Ruby, name: &str, secs: f64) -> Result<Duration, Error> {
    args::seconds(name, secs).map_err(|e| arg_err(ruby, e))
}

/// An optional job, connect or admin timeout in seconds: nil, or more than
/// zero (0, negative, NaN: an `ArgumentError` naming the unit).
pub(crate) fn opt_timeout(
    ruby: &Ruby,
    name: &str,
    secs: Option<f64>,
) -> Result<Option<Duration>, Error> {
    secs.map(|s| args::timeout_seconds(name, s))
        .transpose()
        .map_err(|e| arg_err(ruby, e))
}

/// Parses `["host:port", "h2,h3:4731"]` into server addresses.
pub(crate) fn parse_servers(
    ruby: &Ruby,
    list: Vec<String>,
) -> Result<Vec<polygear::ServerAddr>, Error> {
    args::servers(list).map_err(|e| arg_err(ruby, e))
}

/// `tls:` as `Polygear::Util.tls` passes it: `nil` (plain TCP) or
/// `[from_env, ca_file, cert_file, key_file, server_name]`.
pub(crate) type TlsArg = Option<(
    bool,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
)>;

/// [`TlsArg`] as the core's settings: `from_env` reads libgearman's
/// variables; otherwise exactly the files given.
pub(crate) fn tls_options(ruby: &Ruby, tls: TlsArg) -> Result<Option<polygear::TlsOptions>, Error> {
    let Some((from_env, ca, cert, key, name)) = tls else {
        return Ok(None);
    };
    if from_env {
        return Ok(Some(args::tls_default()));
    }
    args::tls(
        ca.map(Into::into),
        cert.map(Into::into),
        key.map(Into::into),
        name,
    )
    .map(Some)
    .map_err(|e| arg_err(ruby, e))
}

#[magnus::init(name = "polygear_ext")]
fn init(ruby: &Ruby) -> Result<(), Error> {
    let m = ruby.define_module("Polygear")?;
    let profile = ruby.str_new(polygear::BUILD_PROFILE);
    profile.freeze();
    m.const_set("BUILD_PROFILE", profile)?;
    define_errors(ruby, m)?;
    let native = m.define_module("Native")?;
    client::define(ruby, m, native)?;
    worker::define(ruby, m, native)?;
    admin::define(ruby, native)?;
    server::define(ruby, native)?;
    Ok(())
}
