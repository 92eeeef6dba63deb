//! One connection to one job server: a writer task draining a shared buffer
//! and a reader task dispatching replies (FIFO) and WORK_* packets (by handle).
//!
//! A [`Conn`] is one TCP socket to one server, nothing else (the configured
//! server it belongs to, with its reconnect backoff, is a `Server` in
//! `pool.rs`). Requests are written in the order their expected reply is
//! queued ([`Pending`], [`Expect`]), so replies are matched by position; the
//! WORK_* packets of foreground jobs are matched by handle to the jobs
//! attached on this connection ([`Attached`]) and delivered to their
//! `JobSlot`s (`job.rs`). When the socket fails, [`Dead`] says why and every
//! waiter gets the error. This is separate from the pool because it is the
//! only code that runs on the I/O tasks and the only user of [`ConnState`], the
//! state behind the connection's lock.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::transport::{ReadHalf, Stream};
use bytes::{Bytes, BytesMut};
use tokio::sync::{oneshot, watch, Notify};

use super::job::JobSlot;
use super::{ClientOptions, JobEvent};
use crate::error::{Error, Result};
use crate::frame::FrameReader;
use crate::outbox::{flush_until_empty, settle, Outbox, BACKLOG_HIGH, BACKLOG_LOW};
use crate::protocol::{atoi, Magic, Packet, PacketCodec, ProtocolError, OPTION_FAIL_REASONS};
use crate::util::lock;

/// Handles whose local waiters all left are still tracked (the server keeps
/// sending their WORK_* packets once per attachment) until their final
/// packet, unless a connection tracks more jobs than this.
const MAX_TRACKED_JOBS: usize = 65_536;

/// The kind of reply a queued request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    Created,
    Status,
    StatusUnique,
    Echo,
    Option,
    /// GET_RESULT (polygear extension): RESULT_RES.
    Result,
}

/// Who gets the reply to a queued request.
pub(super) enum Waiter {
    /// A foreground submission: registered under its handle on JOB_CREATED.
    Job(Arc<JobSlot>),
    /// Any other request: gets the reply packet.
    Reply(oneshot::Sender<Result<Packet>>),
    /// Fire and forget (OPTION_REQ after connect; an ERROR reply is tolerated).
    Nobody,
    /// The `OPTION_REQ polygear-fail-reasons` after connect: its answer says
    /// whether the server speaks polygear's extensions ([`Conn::extensions`]).
    Probe,
}

impl Waiter {
    fn fail(self, e: Error) {
        match self {
            Waiter::Job(slot) => slot.fail(e),
            Waiter::Reply(tx) => {
                let _ = tx.send(Err(e));
            }
            Waiter::Nobody | Waiter::Probe => {}
        }
    }
}

/// A request on the wire whose reply has not arrived yet.
pub(super) struct Pending {
    pub(super) expect: Expect,
    pub(super) waiter: Waiter,
}

/// Local waiters of one handle on one connection.
struct Attached {
    waiters: Vec<Arc<JobSlot>>,
    /// Foreground attachments the server counts for this connection: it sends
    /// every WORK_* packet this many times in a row.
    attached: u32,
    /// Copies of the current packet still to skip.
    skip: u32,
}

/// Why a connection stopped: lost (an error), the peer is not a Gearman
/// server, or closed on purpose.
pub(super) enum Dead {
    Lost(String),
    NotGearman(ProtocolError),
    Closed(String),
}

impl Dead {
    fn error(&self, addr: &str) -> Error {
        match self {
            Dead::Lost(reason) => Error::ConnectionLost {
                addr: addr.to_owned(),
                reason: reason.clone(),
                kind: std::io::ErrorKind::ConnectionReset,
            },
            Dead::NotGearman(e) => Error::Protocol(e.clone()),
            Dead::Closed(why) => Error::Closed(why.clone()),
        }
    }
}

/// The connection's state behind its lock, shared by callers and the I/O tasks.
struct ConnState {
    /// The socket's write side (direct writes; the writer task when full).
    out: Outbox,
    pending: VecDeque<Pending>,
    jobs: HashMap<Bytes, Attached>,
    dead: bool,
    /// Why it died (for requests made after that).
    why: String,
}

/// One connection to one server.
pub(super) struct Conn {
    pub(super) addr: String,
    pub(super) alive: AtomicBool,
    state: Mutex<ConnState>,
    wake_writer: Notify,
    /// The server sent at least one packet (a peer that accepts and then
    /// resets or garbles is not a working server: see `Pool::conn`).
    answered: AtomicBool,
    /// The reader and writer tasks, aborted when the connection dies (a
    /// writer waiting on a full socket must not keep it open).
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Whether the server accepted `OPTION_REQ polygear-fail-reasons`, i.e.
    /// is polygeard and takes its extension packets; `None` until it answered.
    extensions: watch::Sender<Option<bool>>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("addr", &self.addr)
            .field("alive", &self.alive.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Wraps a connected stream, queues the handshake and spawns the I/O tasks.
    pub(super) fn start(stream: Stream, addr: String, options: &ClientOptions) -> Arc<Conn> {
        let (rd, wr) = stream.into_split();
        let mut wbuf = BytesMut::with_capacity(8 * 1024);
        let mut pending = VecDeque::new();
        if let Some(id) = &options.client_id {
            let _ = Packet::SetClientId {
                id: Bytes::copy_from_slice(id.as_bytes()),
            }
            .encode(Magic::Req, &mut wbuf);
        }
        if options.exceptions {
            let _ = Packet::OptionReq {
                name: Bytes::from_static(b"exceptions"),
            }
            .encode(Magic::Req, &mut wbuf);
            pending.push_back(Pending {
                expect: Expect::Option,
                waiter: Waiter::Nobody,
            });
        }
        // Why polygeard fails a job itself (other servers answer ERROR,
        // which the `Nobody` waiter ignores).
        let _ = Packet::OptionReq {
            name: Bytes::from_static(OPTION_FAIL_REASONS.as_bytes()),
        }
        .encode(Magic::Req, &mut wbuf);
        pending.push_back(Pending {
            expect: Expect::Option,
            waiter: Waiter::Probe,
        });
        let conn = Arc::new(Conn {
            addr,
            alive: AtomicBool::new(true),
            state: Mutex::new(ConnState {
                // The writer task sends the handshake.
                out: Outbox::new(wr, wbuf),
                pending,
                jobs: HashMap::new(),
                dead: false,
                why: String::new(),
            }),
            wake_writer: Notify::new(),
            answered: AtomicBool::new(false),
            tasks: Mutex::new(Vec::with_capacity(2)),
            extensions: watch::channel(None).0,
        });
        let writer = tokio::spawn(write_loop(conn.clone()));
        let reader = tokio::spawn(read_loop(conn.clone(), rd, options.max_packet));
        {
            let mut tasks = lock(&conn.tasks);
            tasks.push(writer.abort_handle());
            tasks.push(reader.abort_handle());
        }
        if !conn.alive.load(Ordering::Acquire) {
            writer.abort();
            reader.abort();
        }
        conn.wake_writer.notify_one();
        conn
    }

    /// On a current-thread runtime (driven only while a caller waits) an
    /// idle connection's reader may not have seen the server go away: peek
    /// at the socket, so a restarted server costs a reconnect, not a failed
    /// request. Multi-thread runtimes notice at once and skip this.
    pub(super) fn closed_while_undriven(&self) -> bool {
        let undriven = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        if !undriven {
            return false;
        }
        // A connection somebody is using right now is not idle: its reader
        // notices a close itself (and waiting for the lock would cost more).
        let sh = match self.state.try_lock() {
            Ok(sh) => sh,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        sh.pending.is_empty() && sh.out.peer_closed()
    }

    /// Appends a request and its reply expectation (made by `pending`)
    /// atomically (so the FIFO order matches the wire). If `write` cannot
    /// encode the request it writes nothing, and nothing is queued: the
    /// error is returned. `Ok(false)`: nothing was queued because more than
    /// [`BACKLOG_HIGH`] bytes are unsent (backpressure: the caller waits in
    /// [`Conn::throttle`] and tries again). The check and the append share
    /// one lock, so concurrent senders cannot overshoot the limit.
    pub(super) fn enqueue(
        &self,
        write: impl FnOnce(&mut BytesMut) -> Result<(), ProtocolError>,
        pending: impl FnOnce() -> Pending,
    ) -> Result<bool> {
        let mut sh = lock(&self.state);
        if sh.dead {
            return Err(Error::ConnectionLost {
                addr: self.addr.clone(),
                reason: sh.why.clone(),
                kind: std::io::ErrorKind::ConnectionReset,
            });
        }
        if sh.out.pending() > BACKLOG_HIGH {
            return Ok(false);
        }
        let mut encoded = Ok(());
        let pushed = sh.out.push(|buf| encoded = write(buf));
        if encoded.is_ok() {
            sh.pending.push_back(pending());
        }
        drop(sh);
        let relock = || lock(&self.state);
        if let Err(e) = settle(
            pushed,
            relock,
            |sh: &mut ConnState| &mut sh.out,
            &self.wake_writer,
        ) {
            // The pending entry just queued is failed with the rest.
            self.fail(Dead::Lost(format!("write failed: {e}")));
        }
        encoded?;
        Ok(true)
    }

    /// Backpressure for senders refused by [`Conn::enqueue`]: waits until
    /// at most [`BACKLOG_LOW`] bytes of requests are unread (the writer task
    /// flushes meanwhile), so a client submitting faster than the server
    /// reads does not grow its buffer without bound. Fails after `limit`,
    /// or if the connection dies.
    pub(super) async fn throttle(&self, limit: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            {
                let sh = lock(&self.state);
                if sh.dead {
                    return Err(Error::ConnectionLost {
                        addr: self.addr.clone(),
                        reason: sh.why.clone(),
                        kind: std::io::ErrorKind::ConnectionReset,
                    });
                }
                if sh.out.pending() <= BACKLOG_LOW {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "server {} did not read this client's requests within {limit:?}",
                    self.addr
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Whether the server speaks polygear's extension packets (answered the
    /// probe sent on connect), waiting at most `limit` for its answer.
    /// `false` for any other server, and for a connection that died first
    /// (the request that follows then reports the loss).
    pub(super) async fn extensions(&self, limit: Duration) -> Result<bool> {
        let mut rx = self.extensions.subscribe();
        let answer = tokio::time::timeout(limit, async {
            rx.wait_for(Option::is_some)
                .await
                .map(|v| v.unwrap_or(false))
        })
        .await;
        match answer {
            Ok(Ok(yes)) => Ok(yes),
            Ok(Err(_)) => Ok(false),
            Err(_) => Err(Error::Timeout(format!(
                "server {} did not answer the OPTION_REQ sent on connect within {limit:?}",
                self.addr
            ))),
        }
    }

    /// [`Conn::extensions`] as known now (`None`: no answer yet).
    pub(super) fn extensions_now(&self) -> Option<bool> {
        *self.extensions.borrow()
    }

    fn set_extensions(&self, yes: bool) {
        self.extensions.send_if_modified(|v| {
            let changed = v.is_none();
            if changed {
                *v = Some(yes);
            }
            changed
        });
    }

    /// Whether the server ever sent a packet on this connection.
    pub(super) fn answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed)
    }

    /// Stops delivering events of `key` to `slot` (job dropped or timed out).
    ///
    /// The entry itself stays until the job's final packet: the server still
    /// sends each packet once per attachment of this connection, and a later
    /// coalesced submission must skip those copies.
    pub(super) fn detach(&self, key: &[u8], slot: &Arc<JobSlot>) {
        let mut sh = lock(&self.state);
        let many = sh.jobs.len() > MAX_TRACKED_JOBS;
        if let Some(a) = sh.jobs.get_mut(key) {
            a.waiters.retain(|w| !Arc::ptr_eq(w, slot));
            if a.waiters.is_empty() && many {
                sh.jobs.remove(key);
            }
        }
    }

    /// Marks the connection dead and fails everything waiting on it (idempotent).
    pub(super) fn fail(&self, dead: Dead) {
        let (pending, jobs) = {
            let mut sh = lock(&self.state);
            if sh.dead {
                return;
            }
            sh.dead = true;
            sh.why = match &dead {
                Dead::Lost(reason) | Dead::Closed(reason) => reason.clone(),
                Dead::NotGearman(e) => e.to_string(),
            };
            self.alive.store(false, Ordering::Release);
            sh.out.close();
            (
                std::mem::take(&mut sh.pending),
                std::mem::take(&mut sh.jobs),
            )
        };
        self.set_extensions(false);
        if let Dead::Lost(reason) = &dead {
            tracing::debug!(server = %self.addr, %reason, "gearman client connection lost");
        }
        for p in pending {
            p.waiter.fail(dead.error(&self.addr));
        }
        for (_, a) in jobs {
            for w in a.waiters {
                w.fail(dead.error(&self.addr));
            }
        }
        self.wake_writer.notify_one();
        for h in std::mem::take(&mut *lock(&self.tasks)) {
            h.abort();
        }
    }

    fn pop(&self, sh: &mut ConnState, expect: Expect, name: &str) -> Result<Pending, String> {
        match sh.pending.pop_front() {
            Some(p) if p.expect == expect => Ok(p),
            Some(p) => {
                let want = p.expect;
                sh.pending.push_front(p);
                Err(format!(
                    "got {name} while waiting for the reply to a {want:?} request"
                ))
            }
            None => Err(format!("unsolicited {name}")),
        }
    }

    fn reply(&self, sh: &mut ConnState, expect: Expect, p: Packet) -> Result<(), String> {
        let pd = self.pop(sh, expect, p.packet_type().name())?;
        match pd.waiter {
            Waiter::Reply(tx) => {
                let _ = tx.send(Ok(p));
            }
            Waiter::Job(slot) => slot.fail(Error::ConnectionLost {
                addr: self.addr.clone(),
                reason: "reply out of order".into(),
                kind: std::io::ErrorKind::ConnectionReset,
            }),
            Waiter::Probe => self.set_extensions(true),
            Waiter::Nobody => {}
        }
        Ok(())
    }

    /// Handles one packet from the server (called by the reader with the lock held).
    fn dispatch(&self, sh: &mut ConnState, p: Packet) -> Result<(), String> {
        match p {
            Packet::JobCreated { handle } => {
                let pd = self.pop(sh, Expect::Created, "JOB_CREATED")?;
                match pd.waiter {
                    Waiter::Job(slot) => {
                        // Copy: the handle outlives the read buffer it was sliced from.
                        let key = Bytes::copy_from_slice(&handle);
                        // Decided under the slot's lock, so a submitter that
                        // gives up concurrently either sees the handle (and
                        // detaches) or is never registered.
                        let listening = slot.set_created(Ok(key.clone()));
                        let room = sh.jobs.len() < MAX_TRACKED_JOBS;
                        match sh.jobs.get_mut(&key[..]) {
                            Some(a) => {
                                a.attached += 1;
                                if listening {
                                    a.waiters.push(slot);
                                }
                            }
                            None if listening || room => {
                                sh.jobs.insert(
                                    key,
                                    Attached {
                                        waiters: if listening { vec![slot] } else { Vec::new() },
                                        attached: 1,
                                        skip: 0,
                                    },
                                );
                            }
                            None => {}
                        }
                    }
                    Waiter::Reply(tx) => {
                        let _ = tx.send(Ok(Packet::JobCreated { handle }));
                    }
                    Waiter::Nobody | Waiter::Probe => {}
                }
            }
            // A TLS server reached without TLS answers this before closing.
            Packet::Error { code, text } if &code[..] == b"TLS_REQUIRED" => {
                return Err(String::from_utf8_lossy(&text).into_owned())
            }
            Packet::Error { code, text } => match sh.pending.pop_front() {
                Some(pd) => {
                    let err = Error::server(&code, &text);
                    match pd.waiter {
                        Waiter::Job(slot) => {
                            slot.set_created(Err(err));
                        }
                        Waiter::Probe => self.set_extensions(false),
                        w => w.fail(err),
                    }
                }
                None => tracing::debug!(
                    server = %self.addr,
                    code = %String::from_utf8_lossy(&code),
                    text = %String::from_utf8_lossy(&text),
                    "unsolicited ERROR"
                ),
            },
            p @ Packet::StatusRes { .. } => self.reply(sh, Expect::Status, p)?,
            p @ Packet::StatusResUnique { .. } => self.reply(sh, Expect::StatusUnique, p)?,
            p @ Packet::EchoRes { .. } => self.reply(sh, Expect::Echo, p)?,
            p @ Packet::OptionRes { .. } => self.reply(sh, Expect::Option, p)?,
            p @ Packet::ResultRes { .. } => self.reply(sh, Expect::Result, p)?,
            Packet::WorkData { handle, data } => route_event(sh, &handle, JobEvent::Data(data)),
            Packet::WorkWarning { handle, data } => {
                route_event(sh, &handle, JobEvent::Warning(data))
            }
            Packet::WorkStatus {
                handle,
                numerator,
                denominator,
            } => route_event(
                sh,
                &handle,
                JobEvent::Status {
                    numerator: atoi(&numerator).clamp(0, u32::MAX as i64) as u32,
                    denominator: atoi(&denominator).clamp(0, u32::MAX as i64) as u32,
                },
            ),
            Packet::WorkComplete { handle, data } => {
                route_event(sh, &handle, JobEvent::Complete(data))
            }
            Packet::WorkFailReason { handle, reason } => {
                if let Some(a) = take_turn(sh, &handle) {
                    let reason = String::from_utf8_lossy(&reason).into_owned();
                    for w in &a.waiters {
                        w.set_fail_reason(reason.clone());
                    }
                }
            }
            Packet::WorkFail { handle } => route_event(sh, &handle, JobEvent::Failed),
            Packet::WorkException { handle, data } => {
                route_event(sh, &handle, JobEvent::Exception(data))
            }
            Packet::Noop => {}
            other => {
                tracing::debug!(server = %self.addr, packet = other.packet_type().name(), "ignored packet");
            }
        }
        Ok(())
    }
}

/// Delivers a WORK_* event to every local waiter of `handle`; drops the
/// per-job state after the final event.
fn route_event(sh: &mut ConnState, handle: &[u8], ev: JobEvent) {
    let Some(a) = take_turn(sh, handle) else {
        return;
    };
    if ev.is_final() {
        if let Some(a) = sh.jobs.remove(handle) {
            deliver(&a.waiters, ev);
        }
    } else {
        deliver(&a.waiters, ev);
    }
}

/// The attachment of `handle` if this packet is news, `None` for a job
/// nobody attached or the repeat of the previous packet (the server sends
/// each packet once per attachment of this connection, in a row).
fn take_turn<'a>(sh: &'a mut ConnState, handle: &[u8]) -> Option<&'a mut Attached> {
    let a = sh.jobs.get_mut(handle)?;
    if a.skip > 0 {
        a.skip -= 1;
        return None;
    }
    a.skip = a.attached.saturating_sub(1);
    Some(a)
}

fn deliver(waiters: &[Arc<JobSlot>], ev: JobEvent) {
    if let Some((last, rest)) = waiters.split_last() {
        for w in rest {
            w.push(ev.clone());
        }
        last.push(ev);
    }
}

/// Marks the connection dead when an I/O task ends for any reason, including
/// being dropped by a runtime that shuts down, so no caller waits on a
/// connection nobody serves.
struct DeadOnDrop(Arc<Conn>);

impl Drop for DeadOnDrop {
    fn drop(&mut self) {
        self.0.fail(Dead::Lost("connection task stopped".into()));
    }
}

/// Flushes the write buffer whenever a direct write found the socket full.
async fn write_loop(conn: Arc<Conn>) {
    let _guard = DeadOnDrop(conn.clone());
    loop {
        conn.wake_writer.notified().await;
        let step = || {
            let mut sh = lock(&conn.state);
            if sh.dead {
                // Ends the task; failing a dead connection again does nothing.
                return Err(io::ErrorKind::NotConnected.into());
            }
            sh.out.flush_step()
        };
        if let Err(e) = flush_until_empty(step, false).await {
            conn.fail(Dead::Lost(format!("write failed: {e}")));
            return;
        }
    }
}

/// Reads replies and dispatches everything one read brought under one lock.
async fn read_loop(conn: Arc<Conn>, rd: ReadHalf, max_packet: usize) {
    let _guard = DeadOnDrop(conn.clone());
    let mut reader = FrameReader::new(rd, PacketCodec::new(max_packet));
    let reason = loop {
        match reader.fill().await {
            Ok(0) => break "closed by the server".to_string(),
            Ok(_) => {}
            Err(e) => break format!("read failed: {e}"),
        }
        let mut sh = lock(&conn.state);
        if sh.dead {
            return;
        }
        loop {
            match reader.next_packet() {
                Ok(Some(p)) => {
                    conn.answered.store(true, Ordering::Relaxed);
                    if let Err(reason) = conn.dispatch(&mut sh, p) {
                        drop(sh);
                        conn.fail(Dead::Lost(format!("protocol error: {reason}")));
                        return;
                    }
                }
                Ok(None) => break,
                Err(e @ ProtocolError::BadMagic(_)) => {
                    // Not a Gearman server (an HTTP server answering, say).
                    drop(sh);
                    conn.fail(Dead::NotGearman(e.from_peer(&conn.addr)));
                    return;
                }
                Err(e) => {
                    drop(sh);
                    conn.fail(Dead::Lost(format!("protocol error: {e}")));
                    return;
                }
            }
        }
    };
    conn.fail(Dead::Lost(reason));
}
