//! Small shared helpers: argument conversion and cancellation.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use napi_derive::napi;
use polygear::ServerAddr;
use tokio::sync::watch;

use crate::error::invalid;

/// Locks `m`, going on with the data of a poisoned lock (a panicking
/// thread cannot leave these values half-updated).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Parses `host[:port]` strings (each may also be a comma-separated list).
pub fn parse_servers(list: &[String]) -> napi::Result<Vec<ServerAddr>> {
    let mut out = Vec::new();
    for s in list {
        out.extend(ServerAddr::parse_list(s).map_err(|e| invalid(e.to_string()))?);
    }
    if out.is_empty() {
        return Err(invalid("at least one server is required"));
    }
    Ok(out)
}

/// Milliseconds (finite, ≥ 0) to a `Duration`.
pub fn millis(name: &str, ms: f64) -> napi::Result<Duration> {
    if !ms.is_finite() || !(0.0..=1e15).contains(&ms) {
        return Err(invalid(format!(
            "{name} must be a finite number of milliseconds ≥ 0"
        )));
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
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
