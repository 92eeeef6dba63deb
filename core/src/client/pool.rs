//! The server pool behind a `Client`: the configured servers, their
//! connections and reconnect backoff, routing, and request/reply helpers.
//!
//! [`Pool`] is the state every clone of a `Client` shares (the `Client`
//! itself is only an `Arc<Pool>`). It holds one [`Server`] per configured
//! address: the live `Conn` to it, if any (`conn.rs`), and its [`Health`]
//! (exponential backoff after a failed connect). It decides which server a
//! request goes to ([`Pool::order`]: by the stable hash of the unique, else
//! round-robin), opens connections lazily and remembers which server created
//! a background handle ([`HandleMemory`]) so a later GET_STATUS asks it first.
//! This is separate from `conn.rs` because it is about *which* server and
//! *whether* to connect, never about the bytes on one socket.
//!
//! Naming: a `Server` is a configured server (address, connection,
//! backoff), a `Conn` one connection to it, and a "slot" always a per-job
//! `JobSlot` (`job.rs`). `options.servers` lists the addresses; the
//! `servers` field here holds one `Server` for each, in the same order.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::conn::{Conn, Dead, Expect, Pending, Waiter};
use super::{ClientOptions, JobStatus};
use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::protocol::{Magic, Packet};
use crate::servers::{route, ServerAddr};
use crate::tls::TlsConnector;
use crate::util::{later, lock};

/// How long a client whose job timed out waits for the server to say
/// whether a worker had taken it (GET_STATUS) before reporting the timeout.
const STATUS_PROBE: std::time::Duration = std::time::Duration::from_secs(1);

/// How many background handles remember which server created them.
const HANDLE_MEMORY: usize = 16_384;

/// The state shared by all clones of one `Client`.
pub(super) struct Pool {
    pub(super) options: ClientOptions,
    /// `options.tls`, loaded.
    tls: Option<TlsConnector>,
    /// One per `options.servers` entry, in the same order.
    pub(super) servers: Vec<Server>,
    /// Round-robin position for requests without a unique.
    rr: AtomicUsize,
    closed: AtomicBool,
    /// Background handle -> index of the server that created it.
    pub(super) handles: Mutex<HandleMemory>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.options.servers)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.close("client dropped");
    }
}

/// One configured server: its live connection (if any) and reconnect backoff.
pub(super) struct Server {
    addr: ServerAddr,
    /// `host:port`, as errors and logs name the server.
    pub(super) name: String,
    conn: Mutex<Option<Arc<Conn>>>,
    health: Mutex<Health>,
    connecting: tokio::sync::Mutex<()>,
}

/// Reconnect backoff of one server.
struct Health {
    backoff: Backoff,
    retry_at: Option<Instant>,
    last_error: String,
    /// The I/O kind of the last failure, kept by the errors of the backoff.
    last_kind: Option<std::io::ErrorKind>,
}

impl Server {
    fn live(&self) -> Option<Arc<Conn>> {
        let c = {
            let g = lock(&self.conn);
            match &*g {
                Some(c) if c.alive.load(Ordering::Acquire) => c.clone(),
                _ => return None,
            }
        };
        if c.closed_while_undriven() {
            c.fail(Dead::Lost("closed by the server".into()));
            return None;
        }
        Some(c)
    }

    fn check_backoff(&self) -> Result<()> {
        let h = lock(&self.health);
        if let Some(at) = h.retry_at {
            let now = Instant::now();
            if at > now {
                return Err(Error::Connect {
                    addr: self.name.clone(),
                    source: std::io::Error::new(
                        h.last_kind.unwrap_or(std::io::ErrorKind::NotConnected),
                        format!(
                            "{} (next attempt in {} ms)",
                            h.last_error,
                            (at - now).as_millis()
                        ),
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Bounded map of background handles to the index of the server that created them.
#[derive(Default)]
pub(super) struct HandleMemory {
    map: HashMap<String, usize>,
    order: VecDeque<String>,
}

impl HandleMemory {
    pub(super) fn remember(&mut self, handle: &str, idx: usize) {
        if self.map.insert(handle.to_owned(), idx).is_none() {
            self.order.push_back(handle.to_owned());
            while self.order.len() > HANDLE_MEMORY {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    pub(super) fn get(&self, handle: &str) -> Option<usize> {
        self.map.get(handle).copied()
    }
}

impl Pool {
    /// The pool for validated options; connects nothing yet.
    pub(super) fn new(options: ClientOptions, tls: Option<TlsConnector>) -> Pool {
        let servers = options
            .servers
            .iter()
            .map(|a| Server {
                addr: a.clone(),
                name: a.to_string(),
                conn: Mutex::new(None),
                health: Mutex::new(Health {
                    backoff: Backoff::new(options.min_backoff, options.max_backoff),
                    retry_at: None,
                    last_error: String::new(),
                    last_kind: None,
                }),
                connecting: tokio::sync::Mutex::new(()),
            })
            .collect();
        Pool {
            tls,
            options,
            servers,
            rr: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            handles: Mutex::new(HandleMemory::default()),
        }
    }

    pub(super) fn close(&self, why: &str) {
        self.closed.store(true, Ordering::SeqCst);
        for server in &self.servers {
            let conn = lock(&server.conn).take();
            if let Some(c) = conn {
                c.fail(Dead::Closed(why.to_owned()));
            }
        }
    }

    fn closed_error() -> Error {
        Error::Closed("client closed".into())
    }

    /// Server indices to try for a key: hashed order for a unique, round-robin otherwise.
    pub(super) fn order(&self, key: &[u8]) -> impl Iterator<Item = usize> {
        let n = self.servers.len();
        let start = if n <= 1 {
            0
        } else if key.is_empty() {
            self.rr.fetch_add(1, Ordering::Relaxed) % n
        } else {
            route(key, n).next().unwrap_or(0)
        };
        (0..n).map(move |i| (start + i) % n)
    }

    /// The server that created `handle`, when known: the only one, or the
    /// one this client submitted the job to (`None`: ask each in turn).
    pub(super) fn server_of(&self, handle: &str) -> Option<usize> {
        if self.servers.len() == 1 {
            Some(0)
        } else {
            crate::util::lock(&self.handles).get(handle)
        }
    }

    pub(super) fn all_failed(&self, last: Option<Error>) -> Error {
        if self.closed.load(Ordering::SeqCst) {
            return Self::closed_error();
        }
        match last {
            Some(e) if self.servers.len() == 1 => e,
            Some(e) => Error::NoServer(Some(Box::new(e))),
            None => Error::NoServer(None),
        }
    }

    /// The live connection to server `i`, connecting if needed (respecting backoff).
    pub(super) async fn conn(&self, i: usize) -> Result<Arc<Conn>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Self::closed_error());
        }
        let server = &self.servers[i];
        if let Some(c) = server.live() {
            return Ok(c);
        }
        server.check_backoff()?;
        let _guard = server.connecting.lock().await;
        if let Some(c) = server.live() {
            return Ok(c);
        }
        server.check_backoff()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::InvalidArgument(
                "polygear::Client must be used inside a tokio runtime".into(),
            ));
        }
        match server
            .addr
            .open(self.options.connect_timeout, self.tls.as_ref())
            .await
        {
            Ok(stream) => {
                let conn = Conn::start(stream, server.name.clone(), &self.options);
                let mut g = lock(&server.conn);
                if self.closed.load(Ordering::SeqCst) {
                    drop(g);
                    conn.fail(Dead::Closed("client closed".into()));
                    return Err(Self::closed_error());
                }
                let previous = g.replace(conn.clone());
                drop(g);
                let mut h = lock(&server.health);
                if previous.is_some_and(|p| !p.answered()) {
                    // The last connection died without a single reply (a peer
                    // that accepts, then resets or garbles): this one is used,
                    // but if it dies too, the next call waits out a backoff
                    // (or goes to another server) instead of reconnecting at once.
                    let delay = h.backoff.next_delay();
                    h.retry_at = Some(later(Instant::now(), delay));
                } else {
                    h.backoff.reset();
                    h.retry_at = None;
                }
                tracing::debug!(server = %server.name, "gearman client connected");
                Ok(conn)
            }
            Err(e) => {
                let mut h = lock(&server.health);
                let delay = h.backoff.next_delay();
                h.retry_at = Some(later(Instant::now(), delay));
                h.last_kind = e.io_kind();
                h.last_error = match &e {
                    Error::Connect { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                tracing::debug!(server = %server.name, error = %e, "gearman client connect failed");
                Err(e)
            }
        }
    }

    /// Queues a request on the first reachable server in the key's order;
    /// `send` returns an error when the connection died meanwhile (then the next one is tried).
    pub(super) async fn send_routed<F>(&self, key: &[u8], mut send: F) -> Result<(usize, Arc<Conn>)>
    where
        F: FnMut(&Conn) -> Result<bool>,
    {
        let mut last_err = None;
        for i in self.order(key) {
            let conn = match self.conn(i).await {
                Ok(c) => c,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            loop {
                match send(&conn) {
                    Ok(true) => return Ok((i, conn)),
                    // Backpressure: wait for the server to read, then retry.
                    Ok(false) => match self.throttle(&conn).await {
                        Ok(()) => continue,
                        Err(e) => last_err = Some(e),
                    },
                    Err(e) => last_err = Some(e),
                }
                break;
            }
        }
        Err(self.all_failed(last_err))
    }

    pub(super) async fn request(
        &self,
        i: usize,
        packet: &Packet,
        expect: Expect,
    ) -> Result<Packet> {
        let conn = self.conn(i).await?;
        self.request_on(&conn, packet, expect).await
    }

    pub(super) async fn request_on(
        &self,
        conn: &Conn,
        packet: &Packet,
        expect: Expect,
    ) -> Result<Packet> {
        let rx = loop {
            let mut reply = None;
            let queued = conn.enqueue(
                |buf| packet.encode(Magic::Req, buf),
                || {
                    let (tx, rx) = oneshot::channel();
                    reply = Some(rx);
                    Pending {
                        expect,
                        waiter: Waiter::Reply(tx),
                    }
                },
            )?;
            match reply {
                Some(rx) if queued => break rx,
                _ => self.throttle(conn).await?,
            }
        };
        self.wait_reply(conn, rx, packet.packet_type().name()).await
    }

    /// [`Error::JobTimeout`] for a foreground job whose deadline (`after`)
    /// passed: asks the server on the job's connection whether a worker had
    /// taken it, waiting at most [`STATUS_PROBE`] (no answer: `started: None`).
    pub(super) async fn job_timeout(
        &self,
        conn: &Conn,
        handle: &[u8],
        function: &str,
        after: std::time::Duration,
    ) -> Error {
        let packet = Packet::GetStatus {
            handle: bytes::Bytes::copy_from_slice(handle),
        };
        let probe = self.request_on(conn, &packet, Expect::Status);
        let started = match tokio::time::timeout(STATUS_PROBE, probe).await {
            Ok(Ok(Packet::StatusRes { known, running, .. })) => known.then_some(running),
            _ => None,
        };
        Error::JobTimeout {
            handle: String::from_utf8_lossy(handle).into_owned(),
            function: function.to_owned(),
            after,
            started,
        }
    }

    /// A server left a request unanswered for the whole `submit_timeout`
    /// (hung, or cut off by the network): its connection is closed (failing
    /// what else waits on it) and the server backs off, so the next calls
    /// go to the other servers instead of waiting on it again.
    pub(super) fn unresponsive(&self, conn: &Conn, why: &str) {
        conn.fail(Dead::Lost(why.to_string()));
        if let Some(server) = self.servers.iter().find(|s| s.name == conn.addr) {
            let mut h = lock(&server.health);
            let delay = h.backoff.next_delay();
            h.retry_at = Some(later(Instant::now(), delay));
            h.last_kind = Some(std::io::ErrorKind::TimedOut);
            h.last_error = why.to_string();
        }
    }

    /// [`Conn::throttle`] for `submit_timeout`; a server that reads nothing
    /// for that long is given up like one that does not answer.
    pub(super) async fn throttle(&self, conn: &Conn) -> Result<()> {
        let r = conn.throttle(self.options.submit_timeout).await;
        if let Err(Error::Timeout(why)) = &r {
            self.unresponsive(conn, why);
        }
        r
    }

    pub(super) async fn wait_reply(
        &self,
        conn: &Conn,
        rx: oneshot::Receiver<Result<Packet>>,
        what: &str,
    ) -> Result<Packet> {
        match tokio::time::timeout(self.options.submit_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::ConnectionLost {
                addr: conn.addr.clone(),
                reason: "connection closed before the reply".into(),
                kind: std::io::ErrorKind::ConnectionReset,
            }),
            Err(_) => {
                let why = format!(
                    "no reply to {what} from {} within {:?}",
                    conn.addr, self.options.submit_timeout
                );
                self.unresponsive(conn, &why);
                Err(Error::Timeout(why))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reply helpers

pub(super) fn unexpected_reply(conn: &Conn, p: &Packet) -> Error {
    Error::ConnectionLost {
        addr: conn.addr.clone(),
        reason: format!("unexpected reply {}", p.packet_type().name()),
        kind: std::io::ErrorKind::ConnectionReset,
    }
}

pub(super) fn status_from(reply: Packet, addr: &str) -> Result<JobStatus> {
    match reply {
        Packet::StatusRes {
            handle,
            known,
            running,
            numerator,
            denominator,
        } => Ok(JobStatus {
            handle: String::from_utf8_lossy(&handle).into_owned(),
            known,
            running,
            numerator,
            denominator,
            client_count: None,
        }),
        Packet::StatusResUnique {
            unique,
            known,
            running,
            numerator,
            denominator,
            client_count,
        } => Ok(JobStatus {
            handle: String::from_utf8_lossy(&unique).into_owned(),
            known,
            running,
            numerator,
            denominator,
            client_count: Some(client_count),
        }),
        other => Err(Error::ConnectionLost {
            addr: addr.to_owned(),
            reason: format!("unexpected reply {}", other.packet_type().name()),
            kind: std::io::ErrorKind::ConnectionReset,
        }),
    }
}
