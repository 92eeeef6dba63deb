//! Small helpers: argument conversion (checked by `polygear_bindings::args`),
//! cancellation and the eager first poll.

use std::time::Duration;

use napi_derive::napi;
use polygear::{ServerAddr, TlsOptions};
use polygear_bindings::args;
use tokio::sync::watch;

use crate::error::arg_err;

pub use polygear_bindings::lock;

/// Parses `host[:port]` strings (each may also be a comma-separated list).
pub fn parse_servers(list: &[String]) -> napi::Result<Vec<ServerAddr>> {
    args::servers(list).map_err(arg_err)
}

/// TLS settings as index.js passes them: `tls: true` arrives as
/// `{ fromEnv: true }`, an object with the file names as itself (unknown
/// keys are refused in index.js).
#[napi(object)]
pub struct TlsArgs {
    /// `tls: true`: libgearman's environment variables.
    pub from_env: Option<bool>,
    /// PEM file of the CAs that sign the server's certificate.
    pub ca_file: Option<String>,
    /// Client certificate (PEM), for servers that verify clients.
    pub cert_file: Option<String>,
    /// Its private key (PEM).
    pub key_file: Option<String>,
    /// Name the server's certificate must carry.
    pub server_name: Option<String>,
}

/// [`TlsArgs`] as the core's settings (`None`: plain TCP).
pub fn tls_options(a: Option<TlsArgs>) -> napi::Result<Option<TlsOptions>> {
    let Some(a) = a else { return Ok(None) };
    if a.from_env == Some(true) {
        return Ok(Some(args::tls_default()));
    }
    args::tls(
        a.ca_file.map(Into::into),
        a.cert_file.map(Into::into),
        a.key_file.map(Into::into),
        a.server_name,
    )
    .map(Some)
    .map_err(arg_err)
}

/// Milliseconds (finite, ≥ 0) to a `Duration`.
pub fn millis(name: &str, ms: f64) -> napi::Result<Duration> {
    args::millis(name, ms).map_err(arg_err)
}

/// A job or connect timeout in milliseconds (more than 0) to a `Duration`.
pub fn timeout_millis(name: &str, ms: f64) -> napi::Result<Duration> {
    args::timeout_millis(name, ms).map_err(arg_err)
}

/// A one-shot cancellation switch, fired from JS (e.g. by an `AbortSignal`).
#[napi]
pub struct Canceller {
    tx: watch::Sender<bool>,
}

#[napi]
impl Canceller {
    /// A fresh, untriggered canceller.
    #[napi(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Canceller {
            tx: watch::channel(false).0,
        }
    }

    /// Fires the canceller: operations watching it end with an abort error.
    #[napi]
    pub fn cancel(&self) {
        self.tx.send_replace(true);
    }

    /// A watcher for Rust futures.
    pub fn watch(&self) -> CancelWatch {
        CancelWatch(Some(self.tx.subscribe()))
    }
}

/// The waiting side of a [`Canceller`].
#[derive(Clone, Default)]
pub struct CancelWatch(Option<watch::Receiver<bool>>);

impl CancelWatch {
    /// A watcher that never fires.
    pub fn never() -> Self {
        CancelWatch(None)
    }

    /// Whether a canceller is behind it (a signal was given).
    pub fn armed(&self) -> bool {
        self.0.is_some()
    }

    /// Whether the canceller has fired.
    pub fn fired(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Resolves when the canceller fires; never if it is dropped unfired.
    pub async fn cancelled(&mut self) {
        if let Some(rx) = self.0.as_mut() {
            if rx.wait_for(|fired| *fired).await.is_ok() {
                return;
            }
        }
        std::future::pending::<()>().await
    }
}

/// Counts a client's unfinished submissions, to pick [`eager`] only for a
/// submission that is alone in flight.
#[derive(Debug, Default, Clone)]
pub struct InFlight(std::sync::Arc<std::sync::atomic::AtomicUsize>);

/// One counted submission; uncounted when dropped.
pub struct InFlightGuard(InFlight);

impl InFlight {
    /// Counts one more submission; `true` if no other one is unfinished.
    pub fn enter(&self) -> (bool, InFlightGuard) {
        let before = self.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        (before == 0, InFlightGuard(self.clone()))
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// With `now`, polls `fut` once on the calling (JS) thread, inside the
/// runtime's context; either way returns a future that finishes it on the
/// runtime.
///
/// A submission's first poll writes its request straight to the socket (the
/// core writes from the caller), so a lone request leaves before the JS
/// thread returns instead of after a hand-off to a runtime thread: one
/// thread wake-up less per job when jobs run one at a time. With many in
/// flight the JS thread is the busy one, so the runtime thread writes.
/// Later polls re-register their wakers, so a wake-up that hits the
/// throw-away waker of the first poll is not lost.
pub fn eager<F, T>(
    now: bool,
    fut: F,
) -> impl std::future::Future<Output = napi::Result<T>> + Send + 'static
where
    F: std::future::Future<Output = napi::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::task::{Context, Poll, Waker};
    let mut fut = Box::pin(fut);
    let first = if now {
        // Never unwind into the JS thread: a panic becomes a rejected promise.
        catch_unwind(AssertUnwindSafe(|| {
            napi::bindgen_prelude::within_runtime_if_available(|| {
                fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
            })
        }))
        .unwrap_or_else(|_| {
            Poll::Ready(Err(napi::Error::from_reason(
                "internal error: panic in polygear native code",
            )))
        })
    } else {
        Poll::Pending
    };
    async move {
        match first {
            Poll::Ready(v) => v,
            Poll::Pending => fut.await,
        }
    }
}
