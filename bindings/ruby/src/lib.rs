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

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use magnus::{prelude::*, value::Opaque, Error, ExceptionClass, RModule, Ruby, Value};

mod admin;
mod client;
mod gvl;
mod server;
mod worker;

/// The one tokio runtime of the process, created on first use: a
/// current-thread runtime driven by the Ruby threads that wait on it
/// ([`gvl::wait`]). The thread waiting for a reply reads it from the socket
/// itself instead of a runtime thread reading it and waking the waiter (one
/// thread hand-off less per packet, most of a serial round trip). Its
/// connections only move while some thread waits, which every call of this
/// blocking API does; what a job sends meanwhile is written directly by the
/// sending thread. Its epoll instance would be shared with a forked child:
/// create clients and workers after `fork`, not before.
pub(crate) fn rt() -> Result<&'static tokio::runtime::Runtime, String> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the tokio runtime: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// [`rt`] with the failure turned into a Ruby `RuntimeError`.
pub(crate) fn runtime(ruby: &Ruby) -> Result<&'static tokio::runtime::Runtime, Error> {
    rt().map_err(|e| Error::new(ruby.exception_runtime_error(), e))
}

/// The exception classes, created once by `Init_polygear_ext`.
struct ErrorClasses {
    base: Opaque<ExceptionClass>,
    connection: Opaque<ExceptionClass>,
    timeout: Opaque<ExceptionClass>,
    protocol: Opaque<ExceptionClass>,
    server: Opaque<ExceptionClass>,
    job_failed: Opaque<ExceptionClass>,
    job_exception: Opaque<ExceptionClass>,
    closed: Opaque<ExceptionClass>,
}

static ERRORS: OnceLock<ErrorClasses> = OnceLock::new();

fn define_errors(ruby: &Ruby, m: RModule) -> Result<(), Error> {
    let base = m.define_error("Error", ruby.exception_standard_error())?;
    let classes = ErrorClasses {
        base: base.into(),
        connection: m.define_error("ConnectionError", base)?.into(),
        timeout: m.define_error("TimeoutError", base)?.into(),
        protocol: m.define_error("ProtocolError", base)?.into(),
        server: m.define_error("ServerError", base)?.into(),
        job_failed: m.define_error("JobFailed", base)?.into(),
        job_exception: m.define_error("JobException", base)?.into(),
        closed: m.define_error("ClosedError", base)?.into(),
    };
    let _ = ERRORS.set(classes);
    Ok(())
}

/// Converts a core error into the matching `Polygear::*` exception.
///
/// `JobFailed`/`JobException` carry `@handle` (and `@worker_message`),
/// `ServerError` carries `@code`; invalid arguments become `ArgumentError`.
pub(crate) fn map_err(ruby: &Ruby, e: polygear::Error) -> Error {
    use polygear::Error as E;
    let Some(c) = ERRORS.get() else {
        return Error::new(ruby.exception_runtime_error(), e.to_string());
    };
    let msg = e.to_string();
    let (class, ivars): (Opaque<ExceptionClass>, Vec<(&str, String)>) = match e {
        E::Connect { .. } | E::ConnectionLost { .. } | E::NoServer(_) | E::Io(_) => {
            (c.connection, vec![])
        }
        E::Timeout(_) => (c.timeout, vec![]),
        E::Protocol(_) => (c.protocol, vec![]),
        E::Server { code, .. } => (c.server, vec![("@code", code)]),
        E::JobFailed { handle } => (c.job_failed, vec![("@handle", handle)]),
        E::JobException { handle, message } => (
            c.job_exception,
            vec![("@handle", handle), ("@worker_message", message)],
        ),
        E::InvalidArgument(_) => return Error::new(ruby.exception_arg_error(), msg),
        E::Closed(_) => (c.closed, vec![]),
        #[allow(unreachable_patterns)]
        _ => (c.base, vec![]),
    };
    let class = ruby.get_inner(class);
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

/// A `Polygear::ConnectionError` with `msg`.
pub(crate) fn connection_error(ruby: &Ruby, msg: String) -> Error {
    match ERRORS.get() {
        Some(c) => Error::new(ruby.get_inner(c.connection), msg),
        None => Error::new(ruby.exception_runtime_error(), msg),
    }
}

/// Locks `m`, going on with the data of a poisoned lock (a panicking
/// thread cannot leave these values half-updated).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Converts an optional number of seconds (Float/Integer) to a Duration;
/// negative or non-finite values are an `ArgumentError`.
pub(crate) fn opt_secs(ruby: &Ruby, secs: Option<f64>) -> Result<Option<Duration>, Error> {
    match secs {
        None => Ok(None),
        Some(s) if (0.0..1e10).contains(&s) => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(Error::new(
            ruby.exception_arg_error(),
            format!("invalid timeout: {s}"),
        )),
    }
}

/// Parses `["host:port", "h2,h3:4731"]` into server addresses.
pub(crate) fn parse_servers(
    ruby: &Ruby,
    list: Vec<String>,
) -> Result<Vec<polygear::ServerAddr>, Error> {
    let mut out = Vec::new();
    for s in &list {
        out.extend(polygear::ServerAddr::parse_list(s).map_err(|e| map_err(ruby, e))?);
    }
    if out.is_empty() {
        return Err(Error::new(
            ruby.exception_arg_error(),
            "at least one server is required",
        ));
    }
    Ok(out)
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
