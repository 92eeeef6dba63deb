//! Getting jobs from one server: the grab/sleep state machine
//! ([`Grabber`]) and the per-server task that runs it over one connection
//! after another ([`server_task`], [`run_session`], [`session_loop`]).
//!
//! The protocol loop is GRAB → JOB_ASSIGN* | NO_JOB → PRE_SLEEP → NOOP →
//! GRAB. A GRAB is only sent while holding a slot (a permit of the
//! `concurrency` semaphore), which moves into the [`Job`] it brings. Several
//! GRABs may be in flight: the window starts at 1 after a NOOP, doubles
//! with every JOB_ASSIGN (up to [`MAX_GRABS_IN_FLIGHT`]) and drops back to
//! 1 on NO_JOB. NOOPs that come right after PRE_SLEEP and lead to NO_JOB
//! again (a gearmand 1.1 quirk) are answered with a growing delay (see
//! [`QUICK_WAKE`]); a poll timer grabs anyway after `poll_interval`. When a
//! connection fails, the task reconnects with exponential backoff.
//!
//! Names: a [`Grabber`] is the state machine over one [`Session`] (not the
//! connection itself: the session is); its packet handler is
//! [`Grabber::on_packet`]. The "server task" is the task that owns one
//! server's sessions, one after another; jobs and the session's outbox
//! write from any thread, so this module only reads, grabs and flushes a
//! full socket.
//!
//! Separate from `session.rs` (the outgoing side any thread uses) and from
//! `queue.rs` (the hand-out to callers): this is the part owned by one task
//! per server.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::transport::{ReadHalf, Stream};
use bytes::Bytes;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::job::Job;
use super::queue::WorkerState;
use super::session::{CloseReason, Session};
use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::frame::FrameReader;
use crate::outbox::writable;
use crate::protocol::{Decimal, Packet, PacketCodec, PacketType};
use crate::util::{later, lock};

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

/// How [`run_session`] ended.
enum SessionEnd {
    /// The worker is closing; do not reconnect.
    Closing,
    /// The connection failed; reconnect after a backoff.
    Lost(String),
}

/// One server's task: connects, runs a session until it ends, and
/// reconnects after a backoff (doubling from `min_backoff` up to
/// `max_backoff`, reset by a successful connect) until the worker closes.
pub(super) async fn server_task(state: Arc<WorkerState>, idx: usize) {
    let mut closing = state.closing.subscribe();
    let addr = state.opts.servers[idx].clone();
    let name = state.addrs[idx].clone();
    let mut backoff = Backoff::new(state.opts.min_backoff, state.opts.max_backoff);
    let mut use_all = true;
    // Failures since the start or the last loss (for the tracing level and
    // `reconnect`), and consecutive failed attempts (for the events).
    let mut failures = 0u32;
    let mut attempts = 0u32;
    loop {
        if *closing.borrow() {
            return;
        }
        let connected = tokio::select! {
            r = addr.open(state.opts.connect_timeout, state.tls.as_ref()) => r,
            _ = closing.changed() => return,
        };
        let delay = match connected {
            Ok(stream) => {
                if failures > 0 {
                    tracing::info!(server = %addr, "worker reconnected");
                }
                backoff.reset();
                attempts = 0;
                let reconnect = failures > 0;
                match run_session(&state, idx, stream, &mut use_all, &mut closing, reconnect).await
                {
                    SessionEnd::Closing => return,
                    SessionEnd::Lost(reason) => {
                        failures = 1;
                        tracing::warn!(server = %addr, %reason, "worker connection lost; reconnecting");
                        state.reports.disconnected(idx, &name, &reason);
                    }
                }
                backoff.next_delay()
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(server = %addr, error = %e, "worker cannot connect; retrying");
                } else {
                    tracing::debug!(server = %addr, error = %e, "worker cannot connect; retrying");
                }
                failures = failures.saturating_add(1);
                attempts = attempts.saturating_add(1);
                let delay = backoff.next_delay();
                state
                    .reports
                    .connect_failed(idx, &name, &e, attempts, delay);
                delay
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = closing.changed() => return,
        }
    }
}

/// The grab/sleep state machine of one session: which GRABs are in flight,
/// how many may be, and whether the worker sleeps (PRE_SLEEP sent).
struct Grabber<'a> {
    state: &'a Arc<WorkerState>,
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

impl Grabber<'_> {
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
        lock(&self.state.queue).grabs += sent.len();
        self.grabs.extend(sent);
        self.sleeping = false;
    }

    /// Sends GRABs while there is work to pull, a free slot and room in the
    /// pipeline. Several in flight let a busy worker take several jobs per
    /// round trip; a worker with one slot keeps the classic one-GRAB loop.
    fn fill_grabs(&mut self, use_all: bool) -> Result<()> {
        while self.need_grab && self.grabs.len() < self.window && !self.state.is_stopped() {
            let Ok(permit) = self.state.slots.clone().try_acquire_owned() else {
                break;
            };
            self.send_grab(permit, use_all)?;
        }
        Ok(())
    }

    /// The reply to the oldest GRAB in flight arrived; returns its slot.
    fn grab_done(&mut self) -> Option<OwnedSemaphorePermit> {
        let (permit, _) = self.grabs.pop_front()?;
        let mut q = lock(&self.state.queue);
        q.grabs -= 1;
        let idle = q.grabs == 0;
        drop(q);
        if idle && self.state.is_stopped() {
            self.state.job_ready.notify_waiters();
        }
        Some(permit)
    }

    /// After NO_JOB (or a failed grab): sleep until NOOP unless a NOOP came already.
    fn go_to_sleep(&mut self, poll: &mut std::pin::Pin<&mut tokio::time::Sleep>) -> Result<()> {
        if self.need_grab || !self.grabs.is_empty() || self.state.is_stopped() {
            return Ok(());
        }
        self.session.send(PacketType::PreSleep, &[])?;
        self.sleeping = true;
        self.slept_at = Instant::now();
        poll.as_mut()
            .reset(later(self.slept_at, self.state.opts.poll_interval));
        Ok(())
    }

    fn on_packet(
        &mut self,
        packet: Packet,
        use_all: &mut bool,
        poll: &mut std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> Result<()> {
        let stopped = self.state.is_stopped();
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
                        .min(self.state.opts.poll_interval);
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
                if &code[..] == b"TLS_REQUIRED" {
                    // A TLS server reached without TLS: it closes next.
                    return Err(Error::Server {
                        code: "TLS_REQUIRED".into(),
                        text: String::from_utf8_lossy(&text).into_owned(),
                    });
                }
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
        let timeout = self.state.registered_timeout(&function);
        let mut job = Job::new(
            handle,
            function,
            unique,
            reducer,
            data,
            self.session.clone(),
            slot,
        );
        job.timeout = timeout;
        {
            let mut q = lock(&self.state.queue);
            q.grabs -= 1;
            if self.state.draining.load(Ordering::Acquire) {
                // Shutting down: leave the job to the server, which requeues
                // it when this connection closes.
                job.finished = true;
                drop(q);
                drop(job);
                self.state.job_ready.notify_waiters();
                self.need_grab = false;
                return Ok(());
            }
            q.jobs.push_back(job);
        }
        if self.state.opts.handoff_delay.is_none()
            || self.state.running.count.load(Ordering::Acquire) == 0
        {
            self.state.job_ready.notify_one();
        } else {
            // A running job's caller takes it when it comes back, or the
            // watchdog wakes an idle caller after `handoff_delay`.
            self.state.deferred.notify_one();
        }
        // Keep pulling while the server has work (and slots are free).
        self.need_grab = !stopped;
        self.window = (self.window * 2).min(MAX_GRABS_IN_FLIGHT);
        self.quick_wake = false;
        self.misses = 0;
        Ok(())
    }
}

/// One connection from connect to teardown: replays SET_CLIENT_ID and the
/// registered functions, publishes the session, runs [`session_loop`], then
/// unpublishes it and flushes (on close) or drops (on loss) what is left.
async fn run_session(
    state: &Arc<WorkerState>,
    idx: usize,
    stream: Stream,
    use_all: &mut bool,
    closing: &mut watch::Receiver<bool>,
    reconnect: bool,
) -> SessionEnd {
    let (rd, wr) = stream.into_split();
    let mut reader = FrameReader::new(rd, PacketCodec::new(state.opts.max_packet));
    let session = Arc::new(Session::new(
        state.addrs[idx].clone(),
        wr,
        state.stopped.clone(),
        state.wanting.clone(),
        state.probes[idx].clone(),
    ));
    {
        // Registration and publication under one lock: a concurrent
        // register() either sees this session or is replayed here, never both.
        let mut reg = lock(&state.registry);
        if *closing.borrow() {
            return SessionEnd::Closing;
        }
        if let Some(id) = &state.client_id {
            let _ = session.send(PacketType::SetClientId, &[id]);
        }
        for (function, timeout) in &reg.functions {
            let _ = match timeout {
                None => session.send(PacketType::CanDo, &[function]),
                Some(ms) => session.send(
                    PacketType::CanDoTimeout,
                    &[function, Decimal::from(*ms).as_bytes()],
                ),
            };
        }
        reg.sessions[idx] = Some(session.clone());
    }
    state.reports.connected(idx, &state.addrs[idx], reconnect);
    let mut grabber = Grabber {
        state,
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
        state,
        idx,
        session: session.clone(),
    };
    let end = session_loop(&mut grabber, &mut reader, use_all, closing).await;

    // Tear down: unpublish, forget the grab in flight and buffered jobs.
    unpublish(state, idx, &session);
    grabber.track_sent();
    while grabber.grab_done().is_some() {}
    match &end {
        SessionEnd::Closing => {
            session.close(CloseReason::Shutdown);
            let flushed = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, session.finish()).await;
            if !matches!(flushed, Ok(Ok(()))) {
                tracing::debug!(server = %session.addr, "could not flush the last packets");
            }
            session.release();
        }
        SessionEnd::Lost(reason) => {
            session.close(CloseReason::Lost(reason.clone()));
            state.discard_buffered(|j| Arc::ptr_eq(&j.session, &session));
        }
    }
    end
}

/// Removes `session` from the registry unless a newer one replaced it.
fn unpublish(state: &WorkerState, idx: usize, session: &Arc<Session>) {
    let mut reg = lock(&state.registry);
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
    state: &'a Arc<WorkerState>,
    idx: usize,
    session: Arc<Session>,
}

impl Drop for SessionCleanup<'_> {
    fn drop(&mut self) {
        unpublish(self.state, self.idx, &self.session);
        self.session
            .close(CloseReason::Lost("connection task stopped".into()));
        self.state
            .discard_buffered(|j| Arc::ptr_eq(&j.session, &self.session));
    }
}

impl Drop for Grabber<'_> {
    fn drop(&mut self) {
        // GRABs in flight when the task was dropped: fix the count.
        while self.grab_done().is_some() {}
    }
}

/// Reads and handles packets, sends GRABs as slots free up and flushes a
/// full socket, until the connection fails or the worker closes.
async fn session_loop(
    grabber: &mut Grabber<'_>,
    reader: &mut FrameReader<ReadHalf>,
    use_all: &mut bool,
    closing: &mut watch::Receiver<bool>,
) -> SessionEnd {
    let state = grabber.state;
    let poll = tokio::time::sleep(state.opts.poll_interval);
    tokio::pin!(poll);
    loop {
        // GRABs that ending jobs sent, before the replies to them.
        grabber.track_sent();
        // Everything already read.
        loop {
            match reader.next_packet() {
                Ok(Some(packet)) => {
                    if let Err(e) = grabber.on_packet(packet, use_all, &mut poll) {
                        return SessionEnd::Lost(e.to_string());
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return SessionEnd::Lost(
                        Error::from(e.from_peer(&grabber.session.addr)).to_string(),
                    )
                }
            }
        }
        if grabber.session.regrab.swap(false, Ordering::AcqRel) && !state.is_stopped() {
            grabber.sleeping = false;
            grabber.need_grab = true;
        }
        if let Err(e) = grabber.fill_grabs(*use_all) {
            return SessionEnd::Lost(e.to_string());
        }
        // Pulling, but every slot is taken: wait for one, or for a job that
        // ends to send the GRAB with its last packet.
        let want_slot =
            grabber.need_grab && grabber.grabs.len() < grabber.window && !state.is_stopped();
        let blocked = match grabber.session.before_wait(want_slot.then_some(*use_all)) {
            Ok(blocked) => blocked,
            Err(e) => return SessionEnd::Lost(e.to_string()),
        };
        tokio::select! {
            biased;
            r = reader.fill() => match r {
                Ok(0) => return SessionEnd::Lost("closed by the server".into()),
                Ok(_) => {}
                Err(e) => return SessionEnd::Lost(e.to_string()),
            },
            p = state.slots.clone().acquire_owned(), if want_slot => {
                if let Ok(permit) = p {
                    if !state.is_stopped() && grabber.need_grab {
                        if let Err(e) = grabber.send_grab(permit, *use_all) {
                            return SessionEnd::Lost(e.to_string());
                        }
                    }
                }
            }
            _ = &mut poll, if grabber.sleeping && grabber.grabs.is_empty() => {
                // Safety net for lost NOOPs and delayed (epoch) jobs.
                grabber.sleeping = false;
                grabber.need_grab = !state.is_stopped();
            }
            r = writable(&blocked), if blocked.is_some() => {
                if let Err(e) = r {
                    return SessionEnd::Lost(e.to_string());
                }
            }
            _ = grabber.session.wake.notified() => {}
            _ = closing.changed() => return SessionEnd::Closing,
        }
    }
}
