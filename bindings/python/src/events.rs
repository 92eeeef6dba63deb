//! The worker's connection events ([`polygear::WorkerEvent`]) as records for
//! the Python logger `polygear`: a failed connect is a warning the first time
//! and then every [`WARN_EVERY`]th attempt (the others are debug records, so a
//! server that stays down does not flood the log), a lost connection a
//! warning, a (re)connect info.
//!
//! The records are logged by Python code (a thread or task of `work()`) that
//! asks for them with [`next`]: Rust threads do not call into Python, which
//! they could not do safely while the interpreter shuts down.

use std::sync::Arc;
use std::time::Duration;

use polygear::WorkerEvent;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::Mutex as AsyncMutex;

/// Of the consecutive failed attempts to one server, the first and every
/// `WARN_EVERY`th are warnings.
const WARN_EVERY: u32 = 10;

// The levels of Python's `logging`.
const DEBUG: i32 = 10;
const INFO: i32 = 20;
const WARNING: i32 = 30;

/// A worker's events, subscribed when it is made (so none is missed).
pub(crate) type Events = Arc<AsyncMutex<broadcast::Receiver<WorkerEvent>>>;

/// A log record: level and message.
pub(crate) type Record = (i32, String);

/// The level `ev` is logged at.
fn level(ev: &WorkerEvent) -> i32 {
    match ev {
        WorkerEvent::ConnectFailed { attempt, .. }
            if *attempt == 1 || attempt % WARN_EVERY == 0 =>
        {
            WARNING
        }
        WorkerEvent::ConnectFailed { .. } => DEBUG,
        ev if ev.is_problem() => WARNING,
        _ => INFO,
    }
}

/// The record of the next event, waiting at most `wait`; None if none came
/// (or the worker is gone).
pub(crate) async fn next(events: Events, wait: Duration) -> Option<Record> {
    let mut rx = events.lock().await;
    match tokio::time::timeout(wait, rx.recv()).await.ok()? {
        Ok(ev) => Some((level(&ev), format!("polygear: {ev}"))),
        Err(RecvError::Lagged(n)) => Some((
            WARNING,
            format!("polygear: {n} worker connection events were not logged (too many at once)"),
        )),
        Err(RecvError::Closed) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_connects_warn_once_then_every_tenth() {
        let failed = |attempt| WorkerEvent::ConnectFailed {
            server: "h:1".into(),
            error: "refused".into(),
            attempt,
            retry_in: Duration::from_secs(1),
        };
        let levels: Vec<i32> = (1..=20).map(|a| level(&failed(a))).collect();
        let warned: Vec<u32> = (1..=20)
            .filter(|a| levels[*a as usize - 1] == WARNING)
            .collect();
        assert_eq!(warned, [1, 10, 20]);
        assert_eq!(level(&failed(2)), DEBUG);
        let lost = WorkerEvent::Disconnected {
            server: "h:1".into(),
            reason: "reset".into(),
        };
        assert_eq!(level(&lost), WARNING);
        let up = WorkerEvent::Connected {
            server: "h:1".into(),
            reconnect: true,
        };
        assert_eq!(level(&up), INFO);
    }
}
