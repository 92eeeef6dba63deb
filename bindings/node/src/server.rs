//! `startServer` / `NativeServer`: the polygear job server running inside
//! this process, on napi-rs' tokio runtime.

use std::path::PathBuf;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use polygear_server::{QueueConfig, RunningServer, Server, ServerConfig, ServerError, TlsConfig};
use std::sync::Mutex;

use tokio::sync::{oneshot, watch};

use crate::error::{encoded, invalid, io_error};
use crate::util::lock;
use polygear_bindings::errors::class_of;

/// Embedded server options.
#[napi(object)]
pub struct ServerArgs {
    /// Address to bind (default 127.0.0.1).
    pub host: Option<String>,
    /// TCP port; 0 (default) picks a free one.
    pub port: Option<u32>,
    /// SQLite file for durable background jobs (default: in memory).
    pub queue_file: Option<String>,
    /// Assignments a job may lose to vanished workers before it fails (0 = unlimited).
    pub job_retries: Option<u32>,
    /// Every connection starts with the `exceptions` option on.
    pub exceptions: Option<bool>,
    /// Allow the admin `shutdown` command.
    pub allow_shutdown: Option<bool>,
    /// Job handle prefix (handles become `PREFIX:N`).
    pub handle_prefix: Option<String>,
    /// TLS on the port (checked in index.js).
    pub tls: Option<ServerTlsArgs>,
    /// Retry policies at start (`--retry`).
    pub retry: Option<Vec<ServerRetryArg>>,
    /// Per-function retention of background results, ms (`--retain`).
    pub retain: Option<Vec<ServerDurationArg>>,
    /// Per-function unique windows, ms (`--unique-window`).
    pub unique_window: Option<Vec<ServerDurationArg>>,
    /// Periodic jobs (`--schedule`).
    pub schedules: Option<Vec<ServerScheduleArg>>,
}

/// A retry policy of the embedded server (times in ms).
#[napi(object)]
pub struct ServerRetryArg {
    /// Function name.
    pub function: String,
    /// Runs in all, the first included.
    pub max_attempts: u32,
    /// Delay after the first failure (default 1000 ms).
    pub backoff: Option<f64>,
    /// Cap of the delay (default 1 h).
    pub max_delay: Option<f64>,
}

/// A per-function duration of the embedded server, ms (whole seconds, rounded up).
#[napi(object)]
pub struct ServerDurationArg {
    /// Function name.
    pub function: String,
    /// Milliseconds.
    pub ms: f64,
}

/// A periodic job of the embedded server.
#[napi(object)]
pub struct ServerScheduleArg {
    /// Its name.
    pub name: String,
    /// Cron expression (UTC).
    pub cron: String,
    /// The function its jobs go to.
    pub function: String,
    /// The jobs' payload.
    pub data: Option<String>,
}

/// The #19 options, taken out of [`ServerArgs`] before its other fields are used.
struct ExtensionArgs {
    retry: Option<Vec<ServerRetryArg>>,
    retain: Option<Vec<ServerDurationArg>>,
    unique_window: Option<Vec<ServerDurationArg>>,
    schedules: Option<Vec<ServerScheduleArg>>,
}

/// Milliseconds as the whole seconds the server keeps, rounded up.
fn whole_seconds(name: &str, ms: f64) -> Result<u32> {
    let d = crate::util::millis(name, ms)?;
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(secs).map_err(|_| invalid(format!("{name} is too large")))
}

fn durations(name: &str, list: Option<Vec<ServerDurationArg>>) -> Result<Vec<(String, u32)>> {
    list.unwrap_or_default()
        .into_iter()
        .map(|d| Ok((d.function, whole_seconds(name, d.ms)?)))
        .collect()
}

/// The embedded server's TLS files.
#[napi(object)]
pub struct ServerTlsArgs {
    /// The server's PEM certificate (chain).
    pub cert_file: String,
    /// Its PEM private key.
    pub key_file: String,
    /// The CA that signs client certificates.
    pub ca_file: Option<String>,
    /// Require a client certificate signed by `ca_file` (mutual TLS).
    pub verify_clients: Option<bool>,
}

/// The JS error for a server that could not start on `host:port` (a busy
/// port says so and how to avoid it).
fn server_err(e: ServerError, host: &str, port: u16) -> napi::Error {
    match e {
        ServerError::Io(io) if io.kind() == std::io::ErrorKind::AddrInUse => io_error(
            io.kind(),
            &format!(
                "cannot start the server: port {port} on {host} is already in use; stop what \
                 listens there or pick another port (port: 0 picks a free one)"
            ),
        ),
        ServerError::Io(io) => io_error(
            io.kind(),
            &format!("cannot start the server on {host}:{port}: {io}"),
        ),
        ServerError::Config(msg) => invalid(msg),
        other => {
            let class = class_of(polygear::ErrorKind::Server);
            encoded(class.tag, class.code, "", &other.to_string())
        }
    }
}

/// A server started by [`start_server`]; stops on `stop()`, on admin
/// `shutdown`, or when this object is garbage-collected.
#[napi]
pub struct NativeServer {
    host: String,
    port: u32,
    stop_tx: Mutex<Option<oneshot::Sender<()>>>,
    done: watch::Receiver<bool>,
}

/// Starts a server; resolves once it accepts connections.
#[napi(ts_return_type = "Promise<NativeServer>")]
pub fn start_server(env: Env, args: Option<ServerArgs>) -> Result<AsyncBlock<NativeServer>> {
    let mut cfg = ServerConfig::default();
    let mut extensions = None;
    if let Some(mut a) = args {
        extensions = Some(ExtensionArgs {
            retry: a.retry.take(),
            retain: a.retain.take(),
            unique_window: a.unique_window.take(),
            schedules: a.schedules.take(),
        });
        if let Some(h) = a.host {
            cfg.listen = h;
        }
        if let Some(p) = a.port {
            cfg.port = u16::try_from(p).map_err(|_| invalid("port must be 0..65535"))?;
        }
        if let Some(f) = a.queue_file {
            cfg.queue = QueueConfig::Sqlite {
                path: PathBuf::from(f),
            };
        }
        if let Some(r) = a.job_retries {
            cfg.job_retries = r;
        }
        if let Some(e) = a.exceptions {
            cfg.exceptions = e;
        }
        if let Some(s) = a.allow_shutdown {
            cfg.allow_shutdown = s;
        }
        cfg.job_handle_prefix = a.handle_prefix;
        if let Some(t) = a.tls {
            let verify_clients = t.verify_clients.unwrap_or(false);
            if verify_clients && t.ca_file.is_none() {
                return Err(invalid(
                    "options.tls.verifyClients needs options.tls.caFile (the CA that signs client certificates)",
                ));
            }
            cfg.tls = Some(TlsConfig {
                cert_file: t.cert_file.into(),
                key_file: t.key_file.into(),
                ca_file: t.ca_file.map(Into::into),
                verify_clients,
            });
        }
    }
    let (host, port) = (cfg.listen.clone(), cfg.port);
    if let Some(a) = &mut extensions {
        for r in a.retry.take().unwrap_or_default() {
            let mut policy = polygear::RetryPolicy::new(
                r.max_attempts,
                crate::util::millis("retry backoff", r.backoff.unwrap_or(1000.0))?,
            );
            if let Some(m) = r.max_delay {
                policy.max_delay = crate::util::millis("retry maxDelay", m)?;
            }
            cfg.retry_policies.push((r.function, policy));
        }
        cfg.retain = durations("options.retain", a.retain.take())?;
        cfg.unique_windows = durations("options.uniqueWindow", a.unique_window.take())?;
        for sc in a.schedules.take().unwrap_or_default() {
            cfg.schedules.push(polygear_server::ScheduleSpec {
                name: sc.name,
                cron: sc.cron,
                function: sc.function,
                data: sc.data.unwrap_or_default().into(),
            });
        }
    }
    AsyncBlockBuilder::new(async move {
        let running: RunningServer = Server::bind(cfg)
            .await
            .map_err(|e| server_err(e, &host, port))?;
        let addr = running.local_addr();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (done_tx, done) = watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = running.stopped() => {}
                _ = stop_rx => {} // stop() or the JS object was collected
            }
            running.shutdown().await;
            done_tx.send_replace(true);
        });
        Ok(NativeServer {
            host: addr.ip().to_string(),
            port: addr.port() as u32,
            stop_tx: Mutex::new(Some(stop_tx)),
            done,
        })
    })
    .build(&env)
}

#[napi]
impl NativeServer {
    /// The bound address.
    #[napi(getter)]
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// The bound port.
    #[napi(getter)]
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Stops the server (closing every connection); resolves once it is down.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn stop(&self, env: Env) -> Result<AsyncBlock<()>> {
        let tx = lock(&self.stop_tx).take();
        if let Some(tx) = tx {
            let _ = tx.send(());
        }
        let mut done = self.done.clone();
        AsyncBlockBuilder::new(async move {
            let _ = done.wait_for(|d| *d).await;
            Ok(())
        })
        .build(&env)
    }

    /// Calls `callback` once the server has stopped (by `stop()` or admin
    /// `shutdown`). Unlike a pending Promise, this does not keep Node alive.
    #[napi(ts_args_type = "callback: () => void")]
    pub fn on_stopped(&self, callback: ThreadsafeFunction<(), (), (), Status, false, true>) {
        let mut done = self.done.clone();
        napi::bindgen_prelude::spawn(async move {
            let _ = done.wait_for(|d| *d).await;
            callback.call((), ThreadsafeFunctionCallMode::NonBlocking);
        });
    }
}
