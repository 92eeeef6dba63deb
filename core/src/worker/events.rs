//! What the server tasks report about their connections: [`WorkerEvent`]s
//! for subscribers ([`Worker::events`](super::Worker::events): the bindings
//! log them) and each server's link status, which
//! [`Worker::connect`](super::Worker::connect) waits on.
//!
//! Separate from `grab.rs` (which only says what happened) so that the
//! wording of the log lines and the fail-fast rule live in one place.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::error::{format_duration, Error, Result};

/// Events kept for a subscriber that does not keep up (older ones are skipped).
const EVENT_CAPACITY: usize = 256;

/// Something that happened to one of the worker's server connections.
///
/// `Display` gives a log line; [`WorkerEvent::is_problem`] says whether it
/// deserves a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerEvent {
    /// A connection is up and the registered functions were sent over it.
    Connected {
        /// `host:port`.
        server: String,
        /// An earlier attempt to this server failed, or an earlier
        /// connection to it was lost.
        reconnect: bool,
    },
    /// An attempt to connect failed; the next one follows after `retry_in`.
    ConnectFailed {
        /// `host:port`.
        server: String,
        /// Why (e.g. "Connection refused (os error 111)").
        error: String,
        /// Consecutive failed attempts to this server, starting at 1.
        attempt: u32,
        /// The delay before the next attempt.
        retry_in: Duration,
    },
    /// An established connection failed; the worker reconnects.
    Disconnected {
        /// `host:port`.
        server: String,
        /// What happened.
        reason: String,
    },
}

impl WorkerEvent {
    /// The server (`host:port`) the event is about.
    pub fn server(&self) -> &str {
        match self {
            WorkerEvent::Connected { server, .. }
            | WorkerEvent::ConnectFailed { server, .. }
            | WorkerEvent::Disconnected { server, .. } => server,
        }
    }

    /// True for failures (a failed connect, a lost connection), false for
    /// good news.
    pub fn is_problem(&self) -> bool {
        !matches!(self, WorkerEvent::Connected { .. })
    }
}

impl fmt::Display for WorkerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerEvent::Connected {
                server,
                reconnect: false,
            } => write!(f, "worker connected to {server}"),
            WorkerEvent::Connected {
                server,
                reconnect: true,
            } => write!(f, "worker reconnected to {server}"),
            WorkerEvent::ConnectFailed {
                server,
                error,
                attempt,
                retry_in,
            } => write!(
                f,
                "worker cannot connect to {server}: {error} (attempt {attempt}; retrying in {})",
                format_duration(*retry_in)
            ),
            WorkerEvent::Disconnected { server, reason } => {
                write!(
                    f,
                    "worker lost its connection to {server}: {reason}; reconnecting"
                )
            }
        }
    }
}

/// One server's link as [`Worker::connect`](super::Worker::connect) sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No attempt has ended yet (or the connection was lost and the
    /// reconnect attempt has not ended).
    Pending,
    /// Connected, functions registered.
    Up,
    /// The latest attempt failed.
    Down,
}

/// Every server's [`Link`] and the latest failure (for the error).
#[derive(Debug)]
struct Links {
    links: Vec<Link>,
    /// The latest failed attempt: server, I/O error kind and text.
    last: Option<(Arc<str>, io::ErrorKind, String)>,
}

impl Links {
    /// `Ok` once a server is up, the error once every one is down, `None` meanwhile.
    fn outcome(&self) -> Option<Result<()>> {
        if self.links.contains(&Link::Up) {
            return Some(Ok(()));
        }
        if !self.links.iter().all(|l| *l == Link::Down) {
            return None;
        }
        let last = self.last.as_ref().map(|(addr, kind, text)| {
            Box::new(Error::Connect {
                addr: addr.to_string(),
                source: io::Error::new(*kind, text.clone()),
            })
        });
        Some(Err(Error::NoServer(last)))
    }
}

/// The reporting side the server tasks use.
#[derive(Debug)]
pub(super) struct Reports {
    events: broadcast::Sender<WorkerEvent>,
    links: watch::Sender<Links>,
}

impl Reports {
    /// Reports for `servers` servers, none attempted yet.
    pub(super) fn new(servers: usize) -> Reports {
        Reports {
            events: broadcast::channel(EVENT_CAPACITY).0,
            links: watch::channel(Links {
                links: vec![Link::Pending; servers],
                last: None,
            })
            .0,
        }
    }

    /// A new subscriber to the events from now on.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<WorkerEvent> {
        self.events.subscribe()
    }

    fn publish(&self, event: WorkerEvent) {
        // No subscriber is fine: nobody listens.
        let _ = self.events.send(event);
    }

    fn set_link(&self, idx: usize, link: Link) {
        self.links.send_modify(|l| l.links[idx] = link);
    }

    /// Forgets every link's status (the server tasks are restarted).
    pub(super) fn restart(&self) {
        self.links.send_modify(|l| {
            l.links.fill(Link::Pending);
            l.last = None;
        });
    }

    // Each report publishes its event before it updates the link: a
    // `connect` caller has the events that led to its outcome.

    /// Server `idx` is connected and its registrations were sent.
    pub(super) fn connected(&self, idx: usize, server: &str, reconnect: bool) {
        self.publish(WorkerEvent::Connected {
            server: server.to_string(),
            reconnect,
        });
        self.set_link(idx, Link::Up);
    }

    /// An attempt to connect to server `idx` failed with `error`.
    pub(super) fn connect_failed(
        &self,
        idx: usize,
        server: &Arc<str>,
        error: &Error,
        attempt: u32,
        retry_in: Duration,
    ) {
        // The cause alone: the event names the server already.
        let (kind, text) = match error {
            Error::Connect { source, .. } => (source.kind(), source.to_string()),
            e => (e.io_kind().unwrap_or(io::ErrorKind::Other), e.to_string()),
        };
        self.publish(WorkerEvent::ConnectFailed {
            server: server.to_string(),
            error: text.clone(),
            attempt,
            retry_in,
        });
        self.links.send_modify(|l| {
            l.links[idx] = Link::Down;
            l.last = Some((server.clone(), kind, text));
        });
    }

    /// Server `idx`'s connection was lost; a reconnect follows.
    pub(super) fn disconnected(&self, idx: usize, server: &str, reason: &str) {
        self.publish(WorkerEvent::Disconnected {
            server: server.to_string(),
            reason: reason.to_string(),
        });
        self.set_link(idx, Link::Pending);
    }

    /// Waits until a server is up (`Ok`) or every one failed its latest
    /// attempt (`Error::NoServer` with the latest failure), or `closing`
    /// turns true (`Error::Closed`).
    pub(super) async fn reachable(&self, mut closing: watch::Receiver<bool>) -> Result<()> {
        let mut links = self.links.subscribe();
        loop {
            if *closing.borrow_and_update() {
                return Err(Error::Closed("the worker was shut down".into()));
            }
            if let Some(outcome) = links.borrow_and_update().outcome() {
                return outcome;
            }
            tokio::select! {
                r = links.changed() => {
                    if r.is_err() {
                        return Err(Error::Closed("the worker was shut down".into()));
                    }
                }
                _ = closing.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_log_lines() {
        let failed = WorkerEvent::ConnectFailed {
            server: "127.0.0.1:1".into(),
            error: "Connection refused (os error 111)".into(),
            attempt: 3,
            retry_in: Duration::from_millis(400),
        };
        assert_eq!(
            failed.to_string(),
            "worker cannot connect to 127.0.0.1:1: Connection refused (os error 111) \
             (attempt 3; retrying in 400 ms)"
        );
        assert!(failed.is_problem());
        assert_eq!(failed.server(), "127.0.0.1:1");
        let up = WorkerEvent::Connected {
            server: "h:4730".into(),
            reconnect: true,
        };
        assert_eq!(up.to_string(), "worker reconnected to h:4730");
        assert!(!up.is_problem());
        let lost = WorkerEvent::Disconnected {
            server: "h:4730".into(),
            reason: "closed by the server".into(),
        };
        assert_eq!(
            lost.to_string(),
            "worker lost its connection to h:4730: closed by the server; reconnecting"
        );
        assert!(lost.is_problem());
    }

    #[test]
    fn delays_are_written_for_people() {
        let d = |ms| format_duration(Duration::from_millis(ms));
        assert_eq!(d(0), "0 ms");
        assert_eq!(d(999), "999 ms");
        assert_eq!(d(2000), "2 s");
        assert_eq!(d(1500), "1.5 s");
    }

    #[tokio::test]
    async fn reachable_once_one_is_up_or_all_are_down() {
        let reports = Reports::new(2);
        let (_close, closing) = watch::channel(false);
        let a: Arc<str> = Arc::from("a:1");
        let refused = Error::Connect {
            addr: "a:1".into(),
            source: io::Error::new(io::ErrorKind::ConnectionRefused, "refused"),
        };
        let mut events = reports.subscribe();
        reports.connect_failed(0, &a, &refused, 1, Duration::from_millis(100));
        // One server still pending: no outcome yet.
        assert!(reports.links.borrow().outcome().is_none());
        reports.connected(1, "b:2", false);
        reports.reachable(closing.clone()).await.unwrap();
        reports.disconnected(1, "b:2", "closed by the server");
        assert!(reports.links.borrow().outcome().is_none());
        reports.connect_failed(
            1,
            &Arc::from("b:2"),
            &refused,
            1,
            Duration::from_millis(100),
        );
        let err = reports.reachable(closing.clone()).await.unwrap_err();
        assert_eq!(err.io_kind(), Some(io::ErrorKind::ConnectionRefused));
        assert!(matches!(&err, Error::NoServer(Some(last))
            if matches!(&**last, Error::Connect { addr, .. } if addr == "b:2")));
        // Restarted tasks start from scratch.
        reports.restart();
        assert!(reports.links.borrow().outcome().is_none());
        // The events, in order.
        let mut seen = Vec::new();
        while let Ok(e) = events.try_recv() {
            seen.push(e);
        }
        assert_eq!(seen.len(), 4);
        assert!(matches!(
            &seen[0],
            WorkerEvent::ConnectFailed { attempt: 1, .. }
        ));
        assert!(matches!(
            &seen[1],
            WorkerEvent::Connected {
                reconnect: false,
                ..
            }
        ));
        assert!(matches!(&seen[2], WorkerEvent::Disconnected { .. }));
        assert!(matches!(&seen[3], WorkerEvent::ConnectFailed { .. }));
    }

    #[tokio::test]
    async fn reachable_ends_when_the_worker_closes() {
        let reports = Reports::new(1);
        let (close, closing) = watch::channel(false);
        let waiter = reports.reachable(closing);
        tokio::pin!(waiter);
        assert!(futures_poll_once(waiter.as_mut()).await.is_none());
        close.send_replace(true);
        let err = waiter.await.unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Closed);
    }

    /// Polls `f` once: its output if it is ready at once.
    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            r = f => Some(r),
            _ = std::future::ready(()) => None,
        }
    }
}
