//! `Polygear::Native::Server`: the Rust job server running in-process.

use std::sync::Mutex;

use magnus::{function, method, prelude::*, Error, RModule, Ruby};
use polygear::ErrorKind;
use polygear_bindings::errors;
use polygear_server::{BackgroundServer, ScheduleSpec, ServerConfig, ServerError, TlsConfig};

use crate::{gvl, lock, secs};

/// The #19 settings of `Polygear::Server.new` as `Polygear::Server.extensions`
/// passes them: retry policies `[function, max_attempts, backoff_s,
/// max_delay_s]`, retention and unique windows `[function, seconds]`,
/// schedules `[name, cron, function, data]`.
type Extensions = (
    Vec<(String, u32, f64, Option<f64>)>,
    Vec<(String, u32)>,
    Vec<(String, u32)>,
    Vec<(String, String, String, String)>,
);

/// Puts [`Extensions`] into `config`; a bad value is an `ArgumentError`.
fn apply_extensions(ruby: &Ruby, config: &mut ServerConfig, ext: Extensions) -> Result<(), Error> {
    let (retry, retain, windows, schedules) = ext;
    for (function, max_attempts, backoff, max_delay) in retry {
        let mut policy = polygear::RetryPolicy::new(max_attempts, secs(ruby, "backoff", backoff)?);
        if let Some(m) = max_delay {
            policy.max_delay = secs(ruby, "max_delay", m)?;
        }
        config.retry_policies.push((function, policy));
    }
    config.retain = retain;
    config.unique_windows = windows;
    for (name, cron, function, data) in schedules {
        let spec = ScheduleSpec {
            name,
            cron,
            function,
            data: data.into(),
        };
        spec.check().map_err(|e| {
            Error::new(
                ruby.exception_arg_error(),
                format!("cannot start the server: {e}"),
            )
        })?;
        config.schedules.push(spec);
    }
    Ok(())
}

/// An in-process job server (port 0 picks a free one); dropping it stops it.
#[magnus::wrap(class = "Polygear::Native::Server", free_immediately, size)]
struct NativeServer {
    port: u16,
    inner: Mutex<Option<BackgroundServer>>,
}

impl NativeServer {
    /// `tls`: `nil` or `[cert_file, key_file, ca_file, verify_clients]`
    /// (checked by `Polygear::Server`); `ext`: see [`Extensions`].
    fn start(
        ruby: &Ruby,
        host: String,
        port: u16,
        tls: Option<(String, String, Option<String>, bool)>,
        ext: Extensions,
    ) -> Result<Self, Error> {
        let mut config = ServerConfig {
            listen: host.clone(),
            port,
            tls: tls.map(|(cert, key, ca, verify_clients)| TlsConfig {
                cert_file: cert.into(),
                key_file: key.into(),
                ca_file: ca.map(Into::into),
                verify_clients,
            }),
            ..Default::default()
        };
        apply_extensions(ruby, &mut config, ext)?;
        let server =
            BackgroundServer::start(config).map_err(|e| start_error(ruby, &host, port, e))?;
        Ok(NativeServer {
            port: server.port(),
            inner: Mutex::new(Some(server)),
        })
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn is_running(&self) -> bool {
        lock(&self.inner).is_some()
    }

    /// Stops the server (idempotent); connected clients see the connection close.
    fn stop(ruby: &Ruby, rb_self: &Self) -> Result<(), Error> {
        let server = lock(&rb_self.inner).take();
        if let Some(server) = server {
            // stop() joins the server thread: wait for it without the GVL.
            gvl::wait(ruby, async move {
                let _ = tokio::task::spawn_blocking(move || server.stop()).await;
            })?;
        }
        Ok(())
    }
}

/// Why the server did not start, as the exception to raise: bad settings
/// (e.g. a TLS file that cannot be read) are an `ArgumentError`; a port in
/// use or another socket error a `Polygear::ConnectionError` that says so,
/// with the I/O code (`EADDRINUSE`, `EACCES`, ...) as `#code`.
fn start_error(ruby: &Ruby, host: &str, port: u16, e: ServerError) -> Error {
    match e {
        ServerError::Config(msg) => Error::new(
            ruby.exception_arg_error(),
            format!("cannot start the server: {msg}"),
        ),
        ServerError::Io(io) => {
            let code = errors::io_code(io.kind());
            let msg = match io.kind() {
                std::io::ErrorKind::AddrInUse => format!(
                    "cannot start the server: port {port} on {host} is already in use \
                     ({code}); stop what listens there or pick another port (port: 0 picks a free one)"
                ),
                _ => format!("cannot start the server on {host}:{port}: {io} ({code})"),
            };
            crate::error_of_kind(ruby, ErrorKind::Connection, code, msg)
        }
        e => crate::error_of_kind(
            ruby,
            ErrorKind::Connection,
            errors::class_of(ErrorKind::Connection).code,
            format!("cannot start the server: {e}"),
        ),
    }
}

pub(crate) fn define(ruby: &Ruby, native: RModule) -> Result<(), Error> {
    let c = native.define_class("Server", ruby.class_object())?;
    c.define_singleton_method("start", function!(NativeServer::start, 4))?;
    c.define_method("port", method!(NativeServer::port, 0))?;
    c.define_method("running?", method!(NativeServer::is_running, 0))?;
    c.define_method("stop", method!(NativeServer::stop, 0))?;
    Ok(())
}
