//! The worker's connection events ([`polygear::WorkerEvent`]) as plain JS
//! objects, forwarded to a weak thread-safe function (index.js emits them
//! on the `Worker` and logs them).

use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;
use polygear::WorkerEvent;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;

/// A connection event (times in milliseconds).
#[napi(object)]
pub struct NativeWorkerEvent {
    /// `'connect'`, `'connectError'`, `'disconnect'` (or `'other'` for an
    /// event this addon does not know yet).
    pub kind: String,
    /// `host:port`.
    pub server: String,
    /// The core's log line for it.
    pub message: String,
    /// `'connect'`: an earlier attempt failed or a connection was lost.
    pub reconnect: Option<bool>,
    /// `'connectError'`: why the attempt failed.
    pub error: Option<String>,
    /// `'connectError'`: consecutive failed attempts, from 1.
    pub attempt: Option<u32>,
    /// `'connectError'`: delay before the next attempt.
    pub retry_in: Option<f64>,
    /// `'disconnect'`: what happened.
    pub reason: Option<String>,
}

/// The JS callback (weak: it does not keep Node alive).
pub type EventSink =
    ThreadsafeFunction<NativeWorkerEvent, (), NativeWorkerEvent, Status, false, true>;

impl From<&WorkerEvent> for NativeWorkerEvent {
    fn from(ev: &WorkerEvent) -> Self {
        let mut out = NativeWorkerEvent {
            kind: "other".into(),
            server: ev.server().to_string(),
            message: ev.to_string(),
            reconnect: None,
            error: None,
            attempt: None,
            retry_in: None,
            reason: None,
        };
        match ev {
            WorkerEvent::Connected { reconnect, .. } => {
                out.kind = "connect".into();
                out.reconnect = Some(*reconnect);
            }
            WorkerEvent::ConnectFailed {
                error,
                attempt,
                retry_in,
                ..
            } => {
                out.kind = "connectError".into();
                out.error = Some(error.clone());
                out.attempt = Some(*attempt);
                out.retry_in = Some(retry_in.as_secs_f64() * 1000.0);
            }
            WorkerEvent::Disconnected { reason, .. } => {
                out.kind = "disconnect".into();
                out.reason = Some(reason.clone());
            }
            _ => {}
        }
        out
    }
}

/// Forwards `events` to `sink` until `closed` fires (the worker was shut
/// down) or the worker is gone; a receiver that lagged skips what it missed.
pub async fn forward_events(
    mut events: broadcast::Receiver<WorkerEvent>,
    mut closed: watch::Receiver<bool>,
    sink: EventSink,
) {
    loop {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            _ = closed.wait_for(|c| *c) => return,
        };
        match ev {
            Ok(ev) => {
                if sink.call((&ev).into(), ThreadsafeFunctionCallMode::NonBlocking) != Status::Ok {
                    return; // the environment is going away
                }
            }
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        }
    }
}
