//! Async Gearman worker: registers functions, grabs jobs from every server,
//! runs up to `concurrency` of them at once, and stops gracefully.
//!
//! API CONTRACT (bindings and the CLI rely on these names and signatures).
//!
//! Design: one task per server owns that server's connection (reconnecting
//! with exponential backoff) and runs the GRAB → NO_JOB → PRE_SLEEP → NOOP
//! loop of the protocol. A GRAB is only sent while holding a permit of a
//! semaphore sized `concurrency`; the permit moves into the [`Job`] and is
//! released when the job ends (or is dropped). Outgoing packets are written
//! by the thread that makes them (non-blocking, see `outbox`); only a full
//! socket hands them to the connection task, so [`Job`] methods never block
//! and a result leaves at once, even on a runtime nobody is driving.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::outbox::{settle, Outbox};
use crate::protocol::packet::MAGIC_REQ;
use crate::protocol::{Frame, Packet, PacketCodec, PacketType, HEADER_LEN};
use crate::servers::ServerAddr;
use crate::{Error, Result};

/// Worker configuration.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Job servers; the worker connects to all of them at once.
    pub servers: Vec<ServerAddr>,
    /// Sent with SET_CLIENT_ID after every (re)connect, if set.
    pub client_id: Option<String>,
    /// Jobs processed at the same time (across all servers). Default 1.
    pub concurrency: usize,
    /// Deadline for establishing a TCP connection (default 5 s).
    pub connect_timeout: Duration,
    /// Largest packet accepted from a server (default 64 MiB).
    pub max_packet: usize,
    /// First delay before reconnecting (doubles up to `max_backoff`).
    pub min_backoff: Duration,
    /// Longest delay between reconnection attempts.
    pub max_backoff: Duration,
    /// While sleeping, grab again after this long even without a NOOP
    /// (covers lost NOOPs and epoch jobs on gearmand 1.1). Default 10 s.
    pub poll_interval: Duration,
    /// `None` (default): a job that arrives is handed to an idle
    /// [`Worker::next_job`] caller at once. `Some(d)`: while another handed-out
    /// job is still running, the new job waits up to `d` for that job's
    /// caller to come back for it ([`Worker::try_next_job`]) before an idle
    /// caller is woken. For callers on threads that share one interpreter
    /// lock (Ruby, Python), where every hand-off to another thread costs a
    /// context switch: a busy thread then runs queued jobs back to back.
    /// `Some(Duration::ZERO)` is the same as `None`.
    pub handoff_delay: Option<Duration>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            servers: vec![ServerAddr::new("127.0.0.1", crate::DEFAULT_PORT)],
            client_id: None,
            concurrency: 1,
            connect_timeout: Duration::from_secs(5),
            max_packet: crate::protocol::DEFAULT_MAX_PACKET,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            poll_interval: Duration::from_secs(10),
            handoff_delay: None,
        }
    }
}

/// Longest function name accepted (gearmand's limit is 512 bytes).
const MAX_FUNCTION_LEN: usize = 512;
/// Longest client id gearmand stores.
const MAX_CLIENT_ID_LEN: usize = 127;
/// A NOOP this soon after PRE_SLEEP means the server thinks a job is
/// runnable. If the GRAB that follows keeps getting NO_JOB (a gearmand 1.1
/// bug with future epoch jobs ahead of lower-priority ones), the worker would
/// spin; after [`MAX_QUICK_MISSES`] such rounds it waits before grabbing,
/// doubling from [`QUICK_MISS_DELAY`] up to [`MAX_QUICK_MISS_DELAY`].
const QUICK_WAKE: Duration = Duration::from_millis(2);
/// See [`QUICK_WAKE`].
const MAX_QUICK_MISSES: u32 = 8;
/// See [`QUICK_WAKE`].
const QUICK_MISS_DELAY: Duration = Duration::from_millis(10);
/// Longest such delay. Kept short: with several workers on one server the
/// losers of NOOP races look the same, and while a worker waits here the
/// server sends it no further NOOP, so queued jobs would wait on it.
const MAX_QUICK_MISS_DELAY: Duration = Duration::from_millis(250);
/// Most GRABs one connection keeps in flight (each holds a free slot).
const MAX_GRABS_IN_FLIGHT: usize = 32;
/// How long a closing connection may take to flush its last packets.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Small helpers

/// `at + d`, saturating at a far-future instant instead of panicking on
/// huge durations (e.g. a `poll_interval` of `Duration::MAX`).
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or_else(|| at + Duration::from_secs(100 * 365 * 24 * 3600))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `b` if it is UTF-8, else a lossy UTF-8 copy (so `&str` accessors never fail).
fn utf8_bytes(b: Bytes) -> Bytes {
    if std::str::from_utf8(&b).is_ok() {
        b
    } else {
        Bytes::from(String::from_utf8_lossy(&b).into_owned())
    }
}

fn as_str(b: &Bytes) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

/// Appends one `\0REQ` packet made of `fields` (joined by NULs) to `dst`.
fn encode_req(dst: &mut BytesMut, ty: PacketType, fields: &[&[u8]]) -> Result<()> {
    let len = fields.iter().map(|f| f.len()).sum::<usize>() + fields.len().saturating_sub(1);
    let size = u32::try_from(len).map_err(|_| {
        Error::InvalidArgument(format!(
            "{} payload of {len} bytes does not fit in a packet",
            ty.name()
        ))
    })?;
    dst.reserve(HEADER_LEN + len);
    dst.put_slice(&MAGIC_REQ);
    dst.put_u32(ty as u32);
    dst.put_u32(size);
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            dst.put_u8(0);
        }
        dst.put_slice(f);
    }
    Ok(())
}

/// Decimal digits of `v` in a stack buffer.
fn decimal(v: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

fn check_function(function: &str) -> Result<()> {
    if function.is_empty() {
        return Err(Error::InvalidArgument("empty function name".into()));
    }
    if function.len() > MAX_FUNCTION_LEN {
        return Err(Error::InvalidArgument(format!(
            "function name longer than {MAX_FUNCTION_LEN} bytes"
        )));
    }
    if function.contains('\0') {
        return Err(Error::InvalidArgument(
            "function name contains a NUL byte".into(),
        ));
    }
    Ok(())
}

/// CAN_DO_TIMEOUT milliseconds: rounded up, at least 1, saturating at u32::MAX.
fn timeout_ms(d: Duration) -> u32 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    ms.clamp(1, u32::MAX as u128) as u32
}

// ---------------------------------------------------------------------------
// One TCP connection's outgoing side

#[derive(Debug, Clone)]
enum CloseReason {
    Lost(String),
    Shutdown,
}

#[derive(Debug)]
struct Out {
    outbox: Outbox,
    closed: Option<CloseReason>,
    /// The connection task wants to GRAB (GRAB_JOB_ALL if `true`) but every
    /// slot is taken: the job that ends next sends the GRAB right behind its
    /// final packet, in the same write, and hands its slot over in `sent`.
    grab_wanted: Option<bool>,
    /// GRABs written (by the task or an ending job) and their slots, in
    /// wire order, not yet moved to the task's list of GRABs in flight.
    sent: Vec<(OwnedSemaphorePermit, bool)>,
}

/// The write side of one TCP connection (one per connect; a reconnect makes a
/// new one, so jobs of a dead connection see it closed).
#[derive(Debug)]
struct Session {
    addr: Arc<str>,
    out: Mutex<Out>,
    /// Wakes the connection task when the socket was full and it must flush.
    wake: Notify,
    /// A function was registered: grab again even if asleep (the server
    /// sends no NOOP for jobs queued before the CAN_DO).
    regrab: AtomicBool,
    /// The worker's stop flag: an ending job sends no GRAB once it is set.
    stopped: Arc<AtomicBool>,
    /// How many of the worker's connections want a slot to GRAB (shared).
    wanting: Arc<AtomicUsize>,
}

impl Session {
    fn new(
        addr: Arc<str>,
        wr: OwnedWriteHalf,
        stopped: Arc<AtomicBool>,
        wanting: Arc<AtomicUsize>,
    ) -> Session {
        Session {
            addr,
            out: Mutex::new(Out {
                outbox: Outbox::new(wr, BytesMut::new()),
                closed: None,
                grab_wanted: None,
                sent: Vec::new(),
            }),
            wake: Notify::new(),
            regrab: AtomicBool::new(false),
            stopped,
            wanting,
        }
    }

    fn closed_error(&self, reason: &CloseReason) -> Error {
        match reason {
            CloseReason::Lost(r) => Error::ConnectionLost {
                addr: self.addr.to_string(),
                reason: r.clone(),
            },
            CloseReason::Shutdown => Error::Closed("worker shut down".into()),
        }
    }

    /// Writes one packet now from the calling thread, or queues it behind
    /// bytes the connection task is still flushing. Never blocks.
    fn send(&self, ty: PacketType, fields: &[&[u8]]) -> Result<()> {
        let out = lock(&self.out);
        self.push(out, Some((ty, fields)), None)
    }

    /// [`Session::send`] for a job's last packet: `slot` is the job's slot.
    /// If the connection task waits for a slot to GRAB, the GRAB goes out
    /// right behind this packet, in the same write, and takes the slot
    /// over: no wake-up of the task, one read less for the server. Only
    /// when no other connection waits for a slot: those get it through the
    /// (first-come, first-served) semaphore, so servers take turns.
    fn send_final(
        &self,
        ty: PacketType,
        fields: &[&[u8]],
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<()> {
        let mut out = lock(&self.out);
        let grab = match (slot, out.grab_wanted) {
            (Some(slot), Some(all))
                if !self.stopped.load(Ordering::Acquire)
                    && self.wanting.load(Ordering::Acquire) == 1 =>
            {
                self.set_wanted(&mut out, None);
                Some((slot, all))
            }
            _ => None,
        };
        self.push(out, Some((ty, fields)), grab)
    }

    /// Sends a GRAB holding `slot` (GRAB_JOB_ALL if `all`).
    fn send_grab(&self, slot: OwnedSemaphorePermit, all: bool) -> Result<()> {
        let out = lock(&self.out);
        self.push(out, None, Some((slot, all)))
    }

    /// Writes `packet` and/or a GRAB (recorded in `out.sent`, in wire order).
    fn push(
        &self,
        mut out: MutexGuard<'_, Out>,
        packet: Option<(PacketType, &[&[u8]])>,
        grab: Option<(OwnedSemaphorePermit, bool)>,
    ) -> Result<()> {
        if let Some(reason) = &out.closed {
            return Err(self.closed_error(reason));
        }
        let mut encoded = Ok(());
        let pushed = out.outbox.push(|buf| {
            if let Some((ty, fields)) = packet {
                encoded = encode_req(buf, ty, fields);
            }
            if let (Ok(()), Some((_, all))) = (&encoded, &grab) {
                let ty = if *all {
                    PacketType::GrabJobAll
                } else {
                    PacketType::GrabJobUniq
                };
                encoded = encode_req(buf, ty, &[]);
            }
        });
        if let (Ok(()), Some(grab)) = (&encoded, grab) {
            out.sent.push(grab);
        }
        drop(out);
        match settle(pushed, || lock(&self.out), |out: &mut Out| &mut out.outbox) {
            Ok(false) => {}
            Ok(true) => self.wake.notify_one(),
            Err(e) => return Err(self.write_failed(e)),
        }
        encoded
    }

    /// Closes the outbox after a failed write (unless it was closed
    /// already); the connection task notices, ends the session and
    /// reconnects.
    fn write_failed(&self, e: std::io::Error) -> Error {
        let mut out = lock(&self.out);
        let reason = match &out.closed {
            Some(reason) => reason.clone(),
            None => {
                let reason = CloseReason::Lost(format!("write failed: {e}"));
                out.outbox.close();
                out.closed = Some(reason.clone());
                reason
            }
        };
        drop(out);
        self.wake.notify_one();
        self.closed_error(&reason)
    }

    /// For the connection task: the GRABs written since the last call, in
    /// wire order.
    fn take_sent(&self) -> Vec<(OwnedSemaphorePermit, bool)> {
        std::mem::take(&mut lock(&self.out).sent)
    }

    /// For the connection task: whether (and which) GRAB an ending job
    /// should send for it.
    fn want_grab(&self, want: Option<bool>) {
        let mut out = lock(&self.out);
        self.set_wanted(&mut out, want);
    }

    /// Sets `grab_wanted`, keeping the worker-wide count of wanting connections.
    fn set_wanted(&self, out: &mut Out, want: Option<bool>) {
        match (out.grab_wanted.is_some(), want.is_some()) {
            (false, true) => {
                self.wanting.fetch_add(1, Ordering::AcqRel);
            }
            (true, false) => {
                self.wanting.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
        out.grab_wanted = want;
    }

    /// GRABs written but not yet tracked by the connection task.
    fn has_untracked_grabs(&self) -> bool {
        !lock(&self.out).sent.is_empty()
    }

    /// Refuses further packets. On a shutdown what is queued may still be
    /// flushed ([`Session::finish`]); a lost connection drops it and
    /// releases the socket at once (running jobs may hold the session).
    fn close(&self, reason: CloseReason) {
        let mut out = lock(&self.out);
        if matches!(reason, CloseReason::Lost(_)) {
            out.outbox.close();
        }
        if out.closed.is_none() {
            out.closed = Some(reason);
        }
        // No job hands a slot to this connection any more; GRABs it handed
        // over and the task did not track die with the connection.
        self.set_wanted(&mut out, None);
        let untracked = std::mem::take(&mut out.sent);
        drop(out);
        drop(untracked);
        self.wake.notify_one();
    }

    /// For the connection task, before it waits: records whether (and
    /// which) GRAB an ending job should send for it, then flushes like
    /// [`Session::flush_step`] (one lock for both).
    fn before_wait(&self, want: Option<bool>) -> std::io::Result<Option<Arc<OwnedWriteHalf>>> {
        let mut out = lock(&self.out);
        self.set_wanted(&mut out, want);
        Self::flush_locked(&mut out)
    }

    /// For the connection task: flushes what the socket takes. `Ok(None)`
    /// when nothing is left, else the write half to await writability on.
    fn flush_step(&self) -> std::io::Result<Option<Arc<OwnedWriteHalf>>> {
        Self::flush_locked(&mut lock(&self.out))
    }

    fn flush_locked(out: &mut Out) -> std::io::Result<Option<Arc<OwnedWriteHalf>>> {
        if let Some(CloseReason::Lost(reason)) = &out.closed {
            return Err(std::io::Error::other(reason.clone()));
        }
        if !out.outbox.flushing() {
            return Ok(None);
        }
        out.outbox.flush_step()
    }

    /// Writes everything still queued, waiting for the socket as needed
    /// (the caller then closes the outbox, releasing the write half).
    async fn finish(&self) -> std::io::Result<()> {
        loop {
            match self.flush_step()? {
                Some(wr) => wr.writable().await?,
                // A job's thread is writing (never for long: its writes do not
                // block): what it still holds must leave before the close.
                None if lock(&self.out).outbox.writing() => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                None => return Ok(()),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Job

/// A job assigned to this worker. Exactly one of [`Job::complete`],
/// [`Job::fail`] or [`Job::exception`] ends it; dropping an unfinished job
/// sends WORK_FAIL so no client waits forever.
///
/// All methods are synchronous and non-blocking (packets are written at once,
/// or queued behind a full socket), so they can be called from any thread.
pub struct Job {
    handle: Bytes,
    handle_text: Bytes,
    function: Bytes,
    unique: Bytes,
    reducer: Bytes,
    data: Bytes,
    session: Arc<Session>,
    finished: bool,
    /// Set once `next_job` handed the job out (then `shutdown` waits for it).
    running: Option<Arc<Running>>,
    /// Released when the job ends, or handed to a GRAB sent with its last packet.
    slot: Option<OwnedSemaphorePermit>,
    /// When the job was assigned (how long it has waited to be handed out).
    assigned: Instant,
}

/// Jobs handed out by `next_job` and not yet ended.
#[derive(Debug, Default)]
struct Running {
    count: std::sync::atomic::AtomicUsize,
    idle: Notify,
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("handle", &self.handle())
            .field("function", &self.function())
            .field("unique", &self.unique())
            .field("reducer", &self.reducer())
            .field("data_len", &self.data.len())
            .field("server", &self.session.addr)
            .finish()
    }
}

impl Job {
    /// The job handle given by the server.
    pub fn handle(&self) -> &str {
        as_str(&self.handle_text)
    }
    /// The function name.
    pub fn function(&self) -> &str {
        as_str(&self.function)
    }
    /// The unique key (empty if none).
    pub fn unique(&self) -> &str {
        as_str(&self.unique)
    }
    /// The reducer name from JOB_ASSIGN_ALL (empty if none).
    pub fn reducer(&self) -> &str {
        as_str(&self.reducer)
    }
    /// The workload.
    pub fn data(&self) -> &Bytes {
        &self.data
    }
    /// WORK_DATA: send a chunk of partial output to waiting clients.
    pub fn send_data(&self, data: impl Into<Bytes>) -> Result<()> {
        let data = data.into();
        self.session
            .send(PacketType::WorkData, &[&self.handle, &data])
    }
    /// WORK_WARNING.
    pub fn send_warning(&self, data: impl Into<Bytes>) -> Result<()> {
        let data = data.into();
        self.session
            .send(PacketType::WorkWarning, &[&self.handle, &data])
    }
    /// WORK_STATUS: progress `numerator / denominator`.
    pub fn send_status(&self, numerator: u32, denominator: u32) -> Result<()> {
        let (mut a, mut b) = ([0u8; 10], [0u8; 10]);
        let (n, d) = (decimal(numerator, &mut a), decimal(denominator, &mut b));
        self.session
            .send(PacketType::WorkStatus, &[&self.handle, n, d])
    }
    /// WORK_COMPLETE with the result; ends the job.
    pub fn complete(mut self, result: impl Into<Bytes>) -> Result<()> {
        let result = result.into();
        self.finished = true;
        let slot = self.slot.take();
        self.session
            .send_final(PacketType::WorkComplete, &[&self.handle, &result], slot)
    }
    /// WORK_FAIL; ends the job.
    pub fn fail(mut self) -> Result<()> {
        self.finished = true;
        let slot = self.slot.take();
        self.session
            .send_final(PacketType::WorkFail, &[&self.handle], slot)
    }
    /// WORK_EXCEPTION with a message; ends the job (clients without the
    /// exceptions option see WORK_FAIL).
    pub fn exception(mut self, message: impl Into<Bytes>) -> Result<()> {
        let message = message.into();
        self.finished = true;
        let slot = self.slot.take();
        self.session
            .send_final(PacketType::WorkException, &[&self.handle, &message], slot)
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if !self.finished {
            let slot = self.slot.take();
            if let Err(e) = self
                .session
                .send_final(PacketType::WorkFail, &[&self.handle], slot)
            {
                tracing::debug!(handle = self.handle(), error = %e, "could not fail a dropped job");
            }
        }
        if let Some(r) = self.running.take() {
            if r.count.fetch_sub(1, Ordering::AcqRel) == 1 {
                r.idle.notify_waiters();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Shared worker state

#[derive(Debug, Default)]
struct Registry {
    /// Registered functions in registration order, with the CAN_DO_TIMEOUT in ms.
    functions: Vec<(Bytes, Option<u32>)>,
    /// The live connection of each server, if any.
    sessions: Vec<Option<Arc<Session>>>,
}

#[derive(Debug, Default)]
struct Queue {
    /// Assigned jobs not yet handed out by `next_job`.
    jobs: VecDeque<Job>,
    /// GRABs sent whose reply has not arrived yet.
    grabs: usize,
}

/// Whom [`Shared::hand_out`] asks to wake after taking a job.
enum Wake {
    Nobody,
    Next,
    All,
}

#[derive(Debug, Default)]
struct Tasks {
    started: bool,
    handles: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    opts: WorkerOptions,
    addrs: Vec<Arc<str>>,
    client_id: Option<Bytes>,
    slots: Arc<Semaphore>,
    stopped: Arc<AtomicBool>,
    /// Connections waiting for a free slot to GRAB (see [`Session::send_final`]).
    wanting: Arc<AtomicUsize>,
    /// `shutdown` started: grabbed jobs are no longer handed out (the server
    /// requeues them when the connection closes).
    draining: AtomicBool,
    running: Arc<Running>,
    closing: watch::Sender<bool>,
    registry: Mutex<Registry>,
    queue: Mutex<Queue>,
    job_ready: Notify,
    /// A job was queued without waking a caller (see `handoff_delay`).
    deferred: Notify,
    tasks: Mutex<Tasks>,
}

impl Shared {
    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.job_ready.notify_waiters();
    }

    /// Closes every connection (after flushing) and ends the server tasks.
    fn close(&self) {
        self.stop();
        self.closing.send_replace(true);
    }

    /// Spawns one task per server on the current runtime (once).
    fn ensure_started(self: &Arc<Self>) -> bool {
        let mut tasks = lock(&self.tasks);
        if tasks.started {
            // Server tasks only end on close. If they all ended anyway, the
            // runtime that ran them was shut down: restart them on this one.
            let orphaned = !tasks.handles.is_empty()
                && tasks.handles.iter().all(|h| h.is_finished())
                && !*self.closing.borrow();
            if !orphaned {
                return true;
            }
            if tokio::runtime::Handle::try_current().is_err() {
                return false;
            }
            tracing::warn!("polygear worker tasks were stopped with their runtime; restarting");
            tasks.handles.clear();
            tasks.started = false;
        }
        if self.is_stopped() {
            return false;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::error!("polygear worker used outside a tokio runtime");
            return false;
        };
        tasks.started = true;
        for idx in 0..self.opts.servers.len() {
            tasks.handles.push(rt.spawn(server_task(self.clone(), idx)));
        }
        if let Some(delay) = self.opts.handoff_delay {
            tasks
                .handles
                .push(rt.spawn(handoff_watchdog(self.clone(), delay)));
        }
        true
    }

    /// Takes the oldest assigned job for a caller (counted as running) and
    /// says whom else to wake: the next caller if more jobs are due now,
    /// everybody once a stopped worker has nothing left.
    fn hand_out(&self, q: &mut Queue) -> Option<(Job, Wake)> {
        let mut job = q.jobs.pop_front()?;
        self.running.count.fetch_add(1, Ordering::AcqRel);
        job.running = Some(self.running.clone());
        let wake = match (q.jobs.front(), self.opts.handoff_delay) {
            (Some(_), None) => Wake::Next,
            (Some(next), Some(delay)) if next.assigned.elapsed() >= delay => Wake::Next,
            (Some(_), Some(_)) => Wake::Nobody,
            (None, _) if q.grabs == 0 && self.is_stopped() => Wake::All,
            (None, _) => Wake::Nobody,
        };
        Some((job, wake))
    }

    fn wake(&self, wake: Wake) {
        match wake {
            Wake::Nobody => {}
            Wake::Next => self.job_ready.notify_one(),
            // Other callers may now return None.
            Wake::All => self.job_ready.notify_waiters(),
        }
    }

    /// True if some connection has GRABs written but not yet tracked.
    fn untracked_grabs(&self) -> bool {
        let reg = lock(&self.registry);
        reg.sessions
            .iter()
            .flatten()
            .any(|s| s.has_untracked_grabs())
    }

    /// Sends one packet to every live connection.
    fn broadcast(reg: &Registry, ty: PacketType, fields: &[&[u8]]) {
        for s in reg.sessions.iter().flatten() {
            if let Err(e) = s.send(ty, fields) {
                tracing::debug!(server = %s.addr, error = %e, "could not send {}", ty.name());
            }
        }
    }

    /// Drops buffered (not yet handed out) jobs matching `pred` without
    /// sending anything: the server has requeued them already.
    fn discard_buffered(&self, pred: impl Fn(&Job) -> bool) {
        let mut q = lock(&self.queue);
        let mut kept = VecDeque::with_capacity(q.jobs.len());
        let mut dropped = Vec::new();
        for mut job in q.jobs.drain(..) {
            if pred(&job) {
                job.finished = true;
                dropped.push(job);
            } else {
                kept.push_back(job);
            }
        }
        q.jobs = kept;
        drop(q);
        if !dropped.is_empty() {
            tracing::debug!(
                count = dropped.len(),
                "discarded buffered jobs requeued by the server"
            );
            self.job_ready.notify_waiters();
        }
    }
}

// ---------------------------------------------------------------------------
// Per-server connection task

enum SessionEnd {
    /// The worker is closing; do not reconnect.
    Closing,
    /// The connection failed; reconnect after a backoff.
    Lost(String),
}

/// Longest pause of the hand-off watchdog while a job it woke a caller for
/// stays queued (every caller is busy).
const MAX_WATCHDOG_BACKOFF: Duration = Duration::from_millis(50);

/// With [`WorkerOptions::handoff_delay`]: wakes an idle `next_job` caller
/// for the oldest queued job once it has waited that long without a running
/// job's caller coming back for it.
async fn handoff_watchdog(shared: Arc<Shared>, delay: Duration) {
    let mut closing = shared.closing.subscribe();
    // The job last woken for, and how long to wait before looking again.
    let mut woken_for: Option<Instant> = None;
    let mut backoff = delay;
    loop {
        if *closing.borrow() {
            return;
        }
        let oldest = lock(&shared.queue).jobs.front().map(|j| j.assigned);
        let check_at = match oldest {
            // Still queued after its wake-up: no caller is idle (the wake-up
            // is kept for the next one that asks); look again less often.
            Some(t) if woken_for == Some(t) => {
                backoff = (backoff * 2).min(MAX_WATCHDOG_BACKOFF);
                Instant::now() + backoff
            }
            Some(t) if t.elapsed() >= delay => {
                shared.job_ready.notify_one();
                woken_for = Some(t);
                backoff = delay;
                // Give the woken caller time to take it before waking another.
                Instant::now() + delay
            }
            Some(t) => t + delay,
            None => {
                tokio::select! {
                    _ = shared.deferred.notified() => continue,
                    _ = closing.changed() => return,
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(check_at) => {}
            _ = closing.changed() => return,
        }
    }
}

async fn server_task(shared: Arc<Shared>, idx: usize) {
    let mut closing = shared.closing.subscribe();
    let addr = shared.opts.servers[idx].clone();
    let mut backoff = shared.opts.min_backoff;
    let mut use_all = true;
    let mut failures = 0u32;
    loop {
        if *closing.borrow() {
            return;
        }
        let connected = tokio::select! {
            r = addr.connect(shared.opts.connect_timeout) => r,
            _ = closing.changed() => return,
        };
        match connected {
            Ok(stream) => {
                if failures > 0 {
                    tracing::info!(server = %addr, "worker reconnected");
                }
                backoff = shared.opts.min_backoff;
                match run_session(&shared, idx, stream, &mut use_all, &mut closing).await {
                    SessionEnd::Closing => return,
                    SessionEnd::Lost(reason) => {
                        failures = 1;
                        tracing::warn!(server = %addr, %reason, "worker connection lost; reconnecting");
                    }
                }
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(server = %addr, error = %e, "worker cannot connect; retrying");
                } else {
                    tracing::debug!(server = %addr, error = %e, "worker cannot connect; retrying");
                }
                failures = failures.saturating_add(1);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = closing.changed() => return,
        }
        backoff = backoff.saturating_mul(2).min(shared.opts.max_backoff);
    }
}

/// State of one connection's grab/sleep loop.
struct Conn<'a> {
    shared: &'a Arc<Shared>,
    session: Arc<Session>,
    /// A GRAB should be sent as soon as a slot is free.
    need_grab: bool,
    /// The GRABs in flight, oldest first: the slot each reserved and
    /// whether it is a GRAB_JOB_ALL. The server answers them in order.
    grabs: VecDeque<(OwnedSemaphorePermit, bool)>,
    /// How many GRABs may be in flight: 1 after a NOOP, doubled by every
    /// JOB_ASSIGN (up to [`MAX_GRABS_IN_FLIGHT`]), back to 1 on NO_JOB, so
    /// an idle worker sends one GRAB per wake-up and a busy one pipelines.
    window: usize,
    /// PRE_SLEEP sent; waiting for NOOP (or the poll timer).
    sleeping: bool,
    /// When the last PRE_SLEEP was sent.
    slept_at: Instant,
    /// The GRAB in flight answers a NOOP that came right after PRE_SLEEP.
    quick_wake: bool,
    /// Consecutive quick NOOPs that led to NO_JOB (see [`QUICK_WAKE`]).
    misses: u32,
}

impl Conn<'_> {
    fn send_grab(&mut self, permit: OwnedSemaphorePermit, use_all: bool) -> Result<()> {
        self.session.send_grab(permit, use_all)?;
        self.track_sent();
        self.sleeping = false;
        Ok(())
    }

    /// Moves the GRABs written since last time (by this task or by ending
    /// jobs) to the list in flight, before any reply to them is handled.
    fn track_sent(&mut self) {
        let sent = self.session.take_sent();
        if sent.is_empty() {
            return;
        }
        lock(&self.shared.queue).grabs += sent.len();
        self.grabs.extend(sent);
        self.sleeping = false;
    }

    /// Sends GRABs while there is work to pull, a free slot and room in the
    /// pipeline. Several in flight let a busy worker take several jobs per
    /// round trip; a worker with one slot keeps the classic one-GRAB loop.
    fn fill_grabs(&mut self, use_all: bool) -> Result<()> {
        while self.need_grab && self.grabs.len() < self.window && !self.shared.is_stopped() {
            let Ok(permit) = self.shared.slots.clone().try_acquire_owned() else {
                break;
            };
            self.send_grab(permit, use_all)?;
        }
        Ok(())
    }

    /// The reply to the oldest GRAB in flight arrived; returns its slot.
    fn grab_done(&mut self) -> Option<OwnedSemaphorePermit> {
        let (permit, _) = self.grabs.pop_front()?;
        let mut q = lock(&self.shared.queue);
        q.grabs -= 1;
        let idle = q.grabs == 0;
        drop(q);
        if idle && self.shared.is_stopped() {
            self.shared.job_ready.notify_waiters();
        }
        Some(permit)
    }

    /// After NO_JOB (or a failed grab): sleep until NOOP unless a NOOP came already.
    fn go_to_sleep(&mut self, poll: &mut std::pin::Pin<&mut tokio::time::Sleep>) -> Result<()> {
        if self.need_grab || !self.grabs.is_empty() || self.shared.is_stopped() {
            return Ok(());
        }
        self.session.send(PacketType::PreSleep, &[])?;
        self.sleeping = true;
        self.slept_at = Instant::now();
        poll.as_mut()
            .reset(later(self.slept_at, self.shared.opts.poll_interval));
        Ok(())
    }

    fn handle(
        &mut self,
        packet: Packet,
        use_all: &mut bool,
        poll: &mut std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> Result<()> {
        let stopped = self.shared.is_stopped();
        let (handle, function, unique, reducer, data) = match packet {
            Packet::Noop => {
                if stopped {
                    self.sleeping = false;
                    return Ok(());
                }
                let quick = self.sleeping && self.slept_at.elapsed() < QUICK_WAKE;
                if !quick {
                    self.misses = 0;
                } else if self.misses >= MAX_QUICK_MISSES {
                    // Spurious wake-ups: stay asleep for a growing delay.
                    let steps = (self.misses - MAX_QUICK_MISSES).min(16);
                    let delay = (QUICK_MISS_DELAY * (1 << steps))
                        .min(MAX_QUICK_MISS_DELAY)
                        .min(self.shared.opts.poll_interval);
                    self.misses = self.misses.saturating_add(1);
                    tracing::debug!(server = %self.session.addr, ?delay, "NOOP without a job again; delaying GRAB");
                    poll.as_mut().reset(later(Instant::now(), delay));
                    return Ok(());
                }
                self.sleeping = false;
                self.need_grab = true;
                self.quick_wake = quick;
                return Ok(());
            }
            Packet::NoJob => {
                if self.grab_done().is_none() {
                    tracing::debug!(server = %self.session.addr, "ignoring NO_JOB without a GRAB");
                    return Ok(());
                }
                // The queue is empty: pull again only after a NOOP (GRABs
                // still in flight may yet bring jobs).
                self.need_grab = false;
                self.window = 1;
                self.session.want_grab(None);
                if std::mem::take(&mut self.quick_wake) {
                    self.misses = self.misses.saturating_add(1);
                }
                return self.go_to_sleep(poll);
            }
            Packet::Error { code, text } => {
                if &code[..] == b"JOB_NOT_FOUND" {
                    tracing::warn!(
                        server = %self.session.addr,
                        text = %String::from_utf8_lossy(&text),
                        "server no longer knows a job (requeued after a timeout or cancelled)"
                    );
                    return Ok(());
                }
                if self.grabs.front().is_some_and(|(_, all)| *all) {
                    tracing::debug!(
                        server = %self.session.addr,
                        code = %String::from_utf8_lossy(&code),
                        "GRAB_JOB_ALL refused; using GRAB_JOB_UNIQ on this server"
                    );
                    *use_all = false;
                    self.grab_done();
                    self.need_grab = !stopped;
                    return Ok(());
                }
                tracing::warn!(
                    server = %self.session.addr,
                    code = %String::from_utf8_lossy(&code),
                    text = %String::from_utf8_lossy(&text),
                    "server error"
                );
                if !self.grabs.is_empty() {
                    // Treat as a failed grab; wait for a NOOP or the poll timer.
                    self.grab_done();
                    self.need_grab = false;
                    return self.go_to_sleep(poll);
                }
                return Ok(());
            }
            Packet::JobAssign {
                handle,
                function,
                data,
            } => (handle, function, Bytes::new(), Bytes::new(), data),
            Packet::JobAssignUniq {
                handle,
                function,
                unique,
                data,
            } => (handle, function, unique, Bytes::new(), data),
            Packet::JobAssignAll {
                handle,
                function,
                unique,
                reducer,
                data,
            } => (handle, function, unique, reducer, data),
            other => {
                tracing::debug!(
                    server = %self.session.addr,
                    "ignoring unexpected {} packet",
                    other.packet_type().name()
                );
                return Ok(());
            }
        };
        let Some((slot, _)) = self.grabs.pop_front() else {
            return Err(
                crate::protocol::ProtocolError::Unexpected("JOB_ASSIGN without GRAB").into(),
            );
        };
        let job = Job {
            handle_text: utf8_bytes(handle.clone()),
            handle,
            function: utf8_bytes(function),
            unique: utf8_bytes(unique),
            reducer: utf8_bytes(reducer),
            data,
            session: self.session.clone(),
            finished: false,
            running: None,
            slot: Some(slot),
            assigned: Instant::now(),
        };
        {
            let mut q = lock(&self.shared.queue);
            q.grabs -= 1;
            if self.shared.draining.load(Ordering::Acquire) {
                // Shutting down: leave the job to the server, which requeues
                // it when this connection closes.
                let mut job = job;
                job.finished = true;
                drop(q);
                drop(job);
                self.shared.job_ready.notify_waiters();
                self.need_grab = false;
                return Ok(());
            }
            q.jobs.push_back(job);
        }
        if self.shared.opts.handoff_delay.is_none()
            || self.shared.running.count.load(Ordering::Acquire) == 0
        {
            self.shared.job_ready.notify_one();
        } else {
            // A running job's caller takes it when it comes back, or the
            // watchdog wakes an idle caller after `handoff_delay`.
            self.shared.deferred.notify_one();
        }
        // Keep pulling while the server has work (and slots are free).
        self.need_grab = !stopped;
        self.window = (self.window * 2).min(MAX_GRABS_IN_FLIGHT);
        self.quick_wake = false;
        self.misses = 0;
        Ok(())
    }
}

async fn run_session(
    shared: &Arc<Shared>,
    idx: usize,
    stream: TcpStream,
    use_all: &mut bool,
    closing: &mut watch::Receiver<bool>,
) -> SessionEnd {
    let (mut rd, wr) = stream.into_split();
    let session = Arc::new(Session::new(
        shared.addrs[idx].clone(),
        wr,
        shared.stopped.clone(),
        shared.wanting.clone(),
    ));
    {
        // Registration and publication under one lock: a concurrent
        // register() either sees this session or is replayed here, never both.
        let mut reg = lock(&shared.registry);
        if *closing.borrow() {
            return SessionEnd::Closing;
        }
        if let Some(id) = &shared.client_id {
            let _ = session.send(PacketType::SetClientId, &[id]);
        }
        for (function, timeout) in &reg.functions {
            let _ = match timeout {
                None => session.send(PacketType::CanDo, &[function]),
                Some(ms) => {
                    let mut b = [0u8; 10];
                    session.send(PacketType::CanDoTimeout, &[function, decimal(*ms, &mut b)])
                }
            };
        }
        reg.sessions[idx] = Some(session.clone());
    }
    let mut conn = Conn {
        shared,
        session: session.clone(),
        need_grab: true,
        grabs: VecDeque::new(),
        window: 1,
        sleeping: false,
        slept_at: Instant::now(),
        quick_wake: false,
        misses: 0,
    };
    // Also runs if this future is dropped (its runtime shut down).
    let _cleanup = SessionCleanup {
        shared,
        idx,
        session: session.clone(),
    };
    let end = session_loop(&mut conn, &mut rd, use_all, closing).await;

    // Tear down: unpublish, forget the grab in flight and buffered jobs.
    unpublish(shared, idx, &session);
    conn.track_sent();
    while conn.grab_done().is_some() {}
    match &end {
        SessionEnd::Closing => {
            session.close(CloseReason::Shutdown);
            let flushed = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, session.finish()).await;
            if !matches!(flushed, Ok(Ok(()))) {
                tracing::debug!(server = %session.addr, "could not flush the last packets");
            }
            lock(&session.out).outbox.close();
        }
        SessionEnd::Lost(reason) => {
            session.close(CloseReason::Lost(reason.clone()));
            shared.discard_buffered(|j| Arc::ptr_eq(&j.session, &session));
        }
    }
    end
}

fn unpublish(shared: &Shared, idx: usize, session: &Arc<Session>) {
    let mut reg = lock(&shared.registry);
    if reg.sessions[idx]
        .as_ref()
        .is_some_and(|s| Arc::ptr_eq(s, session))
    {
        reg.sessions[idx] = None;
    }
}

/// Leaves no trace of a session however its task ends: unpublished,
/// closed (so its jobs report the loss), its buffered jobs dropped.
struct SessionCleanup<'a> {
    shared: &'a Arc<Shared>,
    idx: usize,
    session: Arc<Session>,
}

impl Drop for SessionCleanup<'_> {
    fn drop(&mut self) {
        unpublish(self.shared, self.idx, &self.session);
        self.session
            .close(CloseReason::Lost("connection task stopped".into()));
        self.shared
            .discard_buffered(|j| Arc::ptr_eq(&j.session, &self.session));
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        // GRABs in flight when the task was dropped: fix the count.
        while self.grab_done().is_some() {}
    }
}

async fn session_loop(
    conn: &mut Conn<'_>,
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    use_all: &mut bool,
    closing: &mut watch::Receiver<bool>,
) -> SessionEnd {
    let shared = conn.shared;
    let mut codec = PacketCodec::new(shared.opts.max_packet);
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let poll = tokio::time::sleep(shared.opts.poll_interval);
    tokio::pin!(poll);
    loop {
        // GRABs that ending jobs sent, before the replies to them.
        conn.track_sent();
        // Everything already read.
        loop {
            match codec.decode_frame(&mut rbuf) {
                Ok(Some(Frame::Packet(_, packet))) => {
                    if let Err(e) = conn.handle(packet, use_all, &mut poll) {
                        return SessionEnd::Lost(e.to_string());
                    }
                }
                Ok(Some(Frame::Text(_))) => {}
                Ok(None) => break,
                Err(e) => return SessionEnd::Lost(format!("protocol error: {e}")),
            }
        }
        if conn.session.regrab.swap(false, Ordering::AcqRel) && !shared.is_stopped() {
            conn.sleeping = false;
            conn.need_grab = true;
        }
        if let Err(e) = conn.fill_grabs(*use_all) {
            return SessionEnd::Lost(e.to_string());
        }
        // Pulling, but every slot is taken: wait for one, or for a job that
        // ends to send the GRAB with its last packet.
        let want_slot = conn.need_grab && conn.grabs.len() < conn.window && !shared.is_stopped();
        let blocked = match conn.session.before_wait(want_slot.then_some(*use_all)) {
            Ok(blocked) => blocked,
            Err(e) => return SessionEnd::Lost(e.to_string()),
        };
        if rbuf.capacity() - rbuf.len() < 4096 {
            rbuf.reserve(16 * 1024);
        }
        tokio::select! {
            biased;
            r = rd.read_buf(&mut rbuf) => match r {
                Ok(0) => return SessionEnd::Lost("closed by the server".into()),
                Ok(_) => {}
                Err(e) => return SessionEnd::Lost(e.to_string()),
            },
            p = shared.slots.clone().acquire_owned(), if want_slot => {
                if let Ok(permit) = p {
                    if !shared.is_stopped() && conn.need_grab {
                        if let Err(e) = conn.send_grab(permit, *use_all) {
                            return SessionEnd::Lost(e.to_string());
                        }
                    }
                }
            }
            _ = &mut poll, if conn.sleeping && conn.grabs.is_empty() => {
                // Safety net for lost NOOPs and delayed (epoch) jobs.
                conn.sleeping = false;
                conn.need_grab = !shared.is_stopped();
            }
            r = writable(&blocked), if blocked.is_some() => {
                if let Err(e) = r {
                    return SessionEnd::Lost(e.to_string());
                }
            }
            _ = conn.session.wake.notified() => {}
            _ = closing.changed() => return SessionEnd::Closing,
        }
    }
}

/// Waits until a full socket takes bytes again.
async fn writable(wr: &Option<Arc<OwnedWriteHalf>>) -> std::io::Result<()> {
    match wr {
        Some(wr) => wr.writable().await,
        None => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------
// Worker

/// Owned by the `Worker` handles only: when the last one goes, connections close.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// A cheap-to-clone handle to a worker connected to every configured server.
///
/// Dropping the last handle closes the connections; the server then requeues
/// any job this worker still held.
#[derive(Debug, Clone)]
pub struct Worker {
    inner: Arc<Handle>,
}

impl Worker {
    /// Creates a worker; connections are opened by the first `next_job`/`run`
    /// (which must run inside a tokio runtime). Fails only on invalid options.
    pub fn new(options: WorkerOptions) -> Result<Worker> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.to_string()));
        if options.servers.is_empty() {
            return bad("no job server configured");
        }
        if options.concurrency == 0 {
            return bad("concurrency must be at least 1");
        }
        if options.concurrency > Semaphore::MAX_PERMITS || options.concurrency > u32::MAX as usize {
            return bad("concurrency is too large");
        }
        if options.poll_interval.is_zero() {
            return bad("poll_interval must be greater than zero");
        }
        if options.min_backoff.is_zero() {
            return bad("min_backoff must be greater than zero");
        }
        if options.max_packet < HEADER_LEN {
            return bad("max_packet is too small");
        }
        let client_id = match &options.client_id {
            None => None,
            Some(id) if id.contains('\0') || id.len() > MAX_CLIENT_ID_LEN => {
                return bad("client_id must be at most 127 bytes without NUL");
            }
            Some(id) => Some(Bytes::from(id.clone())),
        };
        let mut options = options;
        options.max_backoff = options.max_backoff.max(options.min_backoff);
        if options.handoff_delay == Some(Duration::ZERO) {
            options.handoff_delay = None;
        }
        let n = options.servers.len();
        let shared = Shared {
            addrs: options
                .servers
                .iter()
                .map(|a| Arc::from(a.to_string()))
                .collect(),
            client_id,
            slots: Arc::new(Semaphore::new(options.concurrency)),
            stopped: Arc::new(AtomicBool::new(false)),
            wanting: Arc::new(AtomicUsize::new(0)),
            draining: AtomicBool::new(false),
            running: Arc::new(Running::default()),
            closing: watch::channel(false).0,
            registry: Mutex::new(Registry {
                functions: Vec::new(),
                sessions: vec![None; n],
            }),
            queue: Mutex::new(Queue::default()),
            job_ready: Notify::new(),
            deferred: Notify::new(),
            tasks: Mutex::new(Tasks::default()),
            opts: options,
        };
        Ok(Worker {
            inner: Arc::new(Handle {
                shared: Arc::new(shared),
            }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Registers a function (CAN_DO, or CAN_DO_TIMEOUT when `timeout` is set);
    /// takes effect on every connection, now and after reconnects.
    ///
    /// Registering an already registered function with the same timeout does
    /// nothing; with a different timeout it re-registers (CANT_DO first, which
    /// makes the server requeue jobs of that function this worker holds).
    pub fn register(&self, function: &str, timeout: Option<Duration>) -> Result<()> {
        check_function(function)?;
        let ms = timeout.map(timeout_ms);
        let name = Bytes::copy_from_slice(function.as_bytes());
        let mut reg = lock(&self.shared().registry);
        let pos = reg.functions.iter().position(|(f, _)| *f == name);
        if let Some(i) = pos {
            if reg.functions[i].1 == ms {
                return Ok(());
            }
            reg.functions.remove(i);
            Shared::broadcast(&reg, PacketType::CantDo, &[&name]);
        }
        match ms {
            None => Shared::broadcast(&reg, PacketType::CanDo, &[&name]),
            Some(ms) => {
                let mut b = [0u8; 10];
                Shared::broadcast(
                    &reg,
                    PacketType::CanDoTimeout,
                    &[&name, decimal(ms, &mut b)],
                );
            }
        }
        reg.functions.push((name, ms));
        for s in reg.sessions.iter().flatten() {
            s.regrab.store(true, Ordering::Release);
            s.wake.notify_one();
        }
        Ok(())
    }

    /// Unregisters a function (CANT_DO).
    pub fn unregister(&self, function: &str) -> Result<()> {
        check_function(function)?;
        let mut reg = lock(&self.shared().registry);
        let Some(i) = reg
            .functions
            .iter()
            .position(|(f, _)| &f[..] == function.as_bytes())
        else {
            return Ok(());
        };
        reg.functions.remove(i);
        Shared::broadcast(&reg, PacketType::CantDo, &[function.as_bytes()]);
        drop(reg);
        self.shared()
            .discard_buffered(|j| &j.function[..] == function.as_bytes());
        Ok(())
    }

    /// Unregisters every function (RESET_ABILITIES).
    pub fn reset(&self) -> Result<()> {
        let mut reg = lock(&self.shared().registry);
        reg.functions.clear();
        Shared::broadcast(&reg, PacketType::ResetAbilities, &[]);
        drop(reg);
        self.shared().discard_buffered(|_| true);
        Ok(())
    }

    /// The next job if one is assigned already, without waiting: `None` if
    /// none is, or once [`Worker::shutdown`] began. Never connects; use
    /// [`Worker::next_job`] for that. A caller that takes its next job with
    /// this before ending the current one keeps the job on its thread (see
    /// [`WorkerOptions::handoff_delay`]).
    pub fn try_next_job(&self) -> Option<Job> {
        let shared = self.shared();
        if shared.draining.load(Ordering::Acquire) {
            return None;
        }
        let (job, wake) = shared.hand_out(&mut lock(&shared.queue))?;
        shared.wake(wake);
        Some(job)
    }

    /// The next job to process. Waits (without busy-polling) until a job is
    /// assigned and fewer than `concurrency` jobs are unfinished; `None` once
    /// the worker is stopped and no grabbed job is left.
    pub async fn next_job(&self) -> Option<Job> {
        let shared = self.shared();
        if !shared.ensure_started()
            && (lock(&shared.queue).jobs.is_empty() || shared.draining.load(Ordering::Acquire))
        {
            return None;
        }
        loop {
            let notified = shared.job_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut q = lock(&shared.queue);
                if shared.draining.load(Ordering::Acquire) {
                    return None;
                }
                if let Some((job, wake)) = shared.hand_out(&mut q) {
                    drop(q);
                    shared.wake(wake);
                    return Some(job);
                }
                if shared.is_stopped() && q.grabs == 0 {
                    drop(q);
                    // A GRAB an ending job sent just before the stop may not be
                    // tracked yet: its reply (a job to hand out) is still due.
                    if !shared.untracked_grabs() {
                        return None;
                    }
                }
            }
            notified.await;
        }
    }

    /// Runs `handler` for every job, up to `concurrency` at once, until
    /// [`Worker::stop`]; then waits for running handlers to finish. The
    /// handler ends each job itself (complete/fail/exception); a job it drops
    /// unfinished is failed.
    pub async fn run<F, Fut>(&self, handler: F) -> Result<()>
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Closed("Worker::run needs a tokio runtime".into()));
        }
        let handler = Arc::new(handler);
        let limit = self.shared().opts.concurrency;
        let mut set: JoinSet<()> = JoinSet::new();
        let report = |r: std::result::Result<(), tokio::task::JoinError>| {
            if let Err(e) = r {
                tracing::error!(error = %e, "job handler panicked (its job was failed)");
            }
        };
        loop {
            while let Some(r) = set.try_join_next() {
                report(r);
            }
            if set.len() >= limit {
                if let Some(r) = set.join_next().await {
                    report(r);
                }
                continue;
            }
            tokio::select! {
                job = self.next_job() => match job {
                    Some(job) => {
                        let h = handler.clone();
                        set.spawn(async move { h(job).await });
                    }
                    None => break,
                },
                Some(r) = set.join_next(), if !set.is_empty() => report(r),
            }
        }
        while let Some(r) = set.join_next().await {
            report(r);
        }
        Ok(())
    }

    /// Graceful stop: grab no new jobs; jobs already running may finish.
    pub fn stop(&self) {
        self.shared().stop();
    }

    /// True once [`Worker::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.shared().is_stopped()
    }

    /// Graceful shutdown: stops taking jobs, waits until every job handed
    /// out by `next_job`/`run` has ended, then closes the connections.
    ///
    /// Jobs grabbed but not yet handed out are not run: they are left to the
    /// server, which requeues them when the connection closes. A GRAB still
    /// unanswered is not waited for either, so this finishes as soon as the
    /// running jobs end (plus at most a few seconds to flush their results).
    /// After it returns, `next_job` returns `None`.
    pub async fn shutdown(&self) {
        let shared = self.shared();
        shared.stop();
        shared.draining.store(true, Ordering::Release);
        shared.job_ready.notify_waiters();
        shared.discard_buffered(|_| true);
        loop {
            let idle = shared.running.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if shared.running.count.load(Ordering::Acquire) == 0 {
                break;
            }
            idle.await;
        }
        shared.close();
        let handles = std::mem::take(&mut lock(&shared.tasks).handles);
        for h in handles {
            let _ = h.await;
        }
        // Assigned while closing; the server has requeued them.
        shared.discard_buffered(|_| true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Magic;

    #[test]
    fn encodes_like_the_packet_codec() {
        let mut b = BytesMut::new();
        encode_req(&mut b, PacketType::WorkComplete, &[b"H:x:1", b"a\0b"]).unwrap();
        let p = Packet::WorkComplete {
            handle: "H:x:1".into(),
            data: Bytes::from_static(b"a\0b"),
        };
        assert_eq!(&b[..], &p.to_bytes(Magic::Req).unwrap()[..]);
        b.clear();
        encode_req(&mut b, PacketType::GrabJobAll, &[]).unwrap();
        assert_eq!(
            &b[..],
            &Packet::GrabJobAll.to_bytes(Magic::Req).unwrap()[..]
        );
    }

    #[test]
    fn formats_numbers_and_timeouts() {
        let mut buf = [0u8; 10];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(1234, &mut buf), b"1234");
        assert_eq!(decimal(u32::MAX, &mut buf), b"4294967295");
        assert_eq!(timeout_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(timeout_ms(Duration::from_micros(1)), 1);
        assert_eq!(timeout_ms(Duration::ZERO), 1);
        assert_eq!(timeout_ms(Duration::from_secs(u64::MAX)), u32::MAX);
    }

    #[test]
    fn new_validates_options_without_a_runtime() {
        let ok = Worker::new(WorkerOptions::default()).unwrap();
        assert!(!ok.is_stopped());
        let bad = |o: WorkerOptions| Worker::new(o).unwrap_err().kind();
        let d = WorkerOptions::default;
        use crate::ErrorKind::InvalidArgument as I;
        assert_eq!(
            bad(WorkerOptions {
                servers: vec![],
                ..d()
            }),
            I
        );
        assert_eq!(
            bad(WorkerOptions {
                concurrency: 0,
                ..d()
            }),
            I
        );
        assert_eq!(
            bad(WorkerOptions {
                poll_interval: Duration::ZERO,
                ..d()
            }),
            I
        );
        assert_eq!(
            bad(WorkerOptions {
                min_backoff: Duration::ZERO,
                ..d()
            }),
            I
        );
        assert_eq!(
            bad(WorkerOptions {
                client_id: Some("a\0b".into()),
                ..d()
            }),
            I
        );
    }

    #[test]
    fn registrations_are_deduplicated() {
        let w = Worker::new(WorkerOptions::default()).unwrap();
        w.register("f", None).unwrap();
        w.register("f", None).unwrap();
        w.register("g", Some(Duration::from_secs(2))).unwrap();
        w.register("g", Some(Duration::from_secs(3))).unwrap();
        let names = |w: &Worker| {
            lock(&w.shared().registry)
                .functions
                .iter()
                .map(|(f, t)| (String::from_utf8(f.to_vec()).unwrap(), *t))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&w),
            vec![("f".into(), None), ("g".into(), Some(3000))]
        );
        w.unregister("f").unwrap();
        w.unregister("nope").unwrap();
        assert_eq!(names(&w), vec![("g".into(), Some(3000))]);
        w.reset().unwrap();
        assert!(names(&w).is_empty());
        assert!(w.register("", None).is_err());
        assert!(w.register(&"x".repeat(MAX_FUNCTION_LEN + 1), None).is_err());
    }

    #[tokio::test]
    async fn stopped_before_start_returns_none_and_shutdown_is_immediate() {
        let w = Worker::new(WorkerOptions::default()).unwrap();
        w.stop();
        assert!(w.next_job().await.is_none());
        tokio::time::timeout(Duration::from_secs(5), w.shutdown())
            .await
            .unwrap();
        assert!(w.run(|_job| async {}).await.is_ok());
    }
}
