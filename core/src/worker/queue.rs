//! The job queue and its hand-out to [`Worker::next_job`] callers, around
//! [`WorkerState`], the state one worker's handles and tasks share.
//!
//! Server tasks (`grab.rs`) push assigned jobs into the [`Queue`]; callers of
//! `next_job`/`try_next_job` take them with [`WorkerState::hand_out`], which
//! counts them as [`Running`] and says whom to [`Wake`] next. The
//! [`Registry`] holds the registered functions and the live [`Session`] of
//! each server; [`Tasks`] the spawned server tasks. With
//! [`WorkerOptions::handoff_delay`] a queued job may wait for a busy caller
//! to come back for it; the hand-off watchdog here wakes an idle caller once
//! it has waited that long.
//!
//! Separate from the grab/sleep state machine because this side faces the
//! callers (any thread, any number of them) rather than one connection.
//! `WorkerState` lives here because the queue is what most of it guards;
//! the rest (options, slots, stop and close flags) is read everywhere.
//!
//! [`Worker::next_job`]: super::Worker::next_job

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::events::Reports;
use super::grab::server_task;
use super::job::Job;
use super::session::{CloseReason, Session};
use super::WorkerOptions;
use crate::backoff::Backoff;
use crate::protocol::PacketType;
use crate::util::lock;

/// Jobs handed out by `next_job` and not yet ended.
#[derive(Debug, Default)]
pub(super) struct Running {
    pub(super) count: std::sync::atomic::AtomicUsize,
    /// Notified when `count` drops to zero (`shutdown` waits for it).
    pub(super) idle: Notify,
}

/// What every (re)connect replays and every registration change reaches.
#[derive(Debug, Default)]
pub(super) struct Registry {
    /// Registered functions in registration order, with the CAN_DO_TIMEOUT in ms.
    pub(super) functions: Vec<(Bytes, Option<u32>)>,
    /// The live connection of each server, if any.
    pub(super) sessions: Vec<Option<Arc<Session>>>,
}

/// Jobs waiting for a `next_job` caller, and the GRABs that may add more.
#[derive(Debug, Default)]
pub(super) struct Queue {
    /// Assigned jobs not yet handed out by `next_job`.
    pub(super) jobs: VecDeque<Job>,
    /// GRABs sent whose reply has not arrived yet.
    pub(super) grabs: usize,
}

/// Whom [`WorkerState::hand_out`] asks to wake after taking a job.
pub(super) enum Wake {
    Nobody,
    Next,
    All,
}

/// The worker's spawned tasks: one per server, plus the hand-off watchdog.
#[derive(Debug, Default)]
pub(super) struct Tasks {
    started: bool,
    pub(super) handles: Vec<JoinHandle<()>>,
}

/// Everything one worker's handles, server tasks and watchdog share.
#[derive(Debug)]
pub(super) struct WorkerState {
    /// The validated options.
    pub(super) opts: WorkerOptions,
    /// `opts.tls`, loaded.
    pub(super) tls: Option<crate::tls::TlsConnector>,
    /// Each server's address as text (for logs and errors).
    pub(super) addrs: Vec<Arc<str>>,
    /// SET_CLIENT_ID payload, sent after every connect.
    pub(super) client_id: Option<Bytes>,
    /// `concurrency` permits: a GRAB holds one, then the job it brings.
    pub(super) slots: Arc<Semaphore>,
    /// [`Worker::stop`](super::Worker::stop) was called (shared with every session).
    pub(super) stopped: Arc<AtomicBool>,
    /// Connections waiting for a free slot to GRAB (see [`Session::send_final`]).
    pub(super) wanting: Arc<AtomicUsize>,
    /// `shutdown` started: grabbed jobs are no longer handed out (the server
    /// requeues them when the connection closes).
    pub(super) draining: AtomicBool,
    pub(super) running: Arc<Running>,
    /// Set once to close every connection and end the tasks.
    pub(super) closing: watch::Sender<bool>,
    pub(super) registry: Mutex<Registry>,
    pub(super) queue: Mutex<Queue>,
    /// Wakes `next_job` callers (a job was queued, or the worker stopped).
    pub(super) job_ready: Notify,
    /// A job was queued without waking a caller (see `handoff_delay`).
    pub(super) deferred: Notify,
    pub(super) tasks: Mutex<Tasks>,
    /// Connection events and each server's link status.
    pub(super) reports: Reports,
    /// Per server: the status queries of [`Job::cancelled`](super::Job::cancelled).
    pub(super) probes: Vec<Arc<super::probe::Probe>>,
}

impl WorkerState {
    pub(super) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.job_ready.notify_waiters();
    }

    /// Closes every connection (after flushing) and ends the server tasks.
    pub(super) fn close(&self) {
        self.stop();
        self.closing.send_replace(true);
    }

    /// Spawns one task per server on the current runtime (once).
    pub(super) fn ensure_started(self: &Arc<Self>) -> bool {
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
            self.reports.restart();
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
    pub(super) fn hand_out(&self, q: &mut Queue) -> Option<(Job, Wake)> {
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

    pub(super) fn wake(&self, wake: Wake) {
        match wake {
            Wake::Nobody => {}
            Wake::Next => self.job_ready.notify_one(),
            // Other callers may now return None.
            Wake::All => self.job_ready.notify_waiters(),
        }
    }

    /// The CAN_DO_TIMEOUT `function` is registered with now, if any.
    pub(super) fn registered_timeout(&self, function: &[u8]) -> Option<Duration> {
        let reg = lock(&self.registry);
        let (_, ms) = reg.functions.iter().find(|(f, _)| &f[..] == function)?;
        ms.map(|ms| Duration::from_millis(u64::from(ms)))
    }

    /// Waits until every handed-out job has ended.
    pub(super) async fn idle(&self) {
        loop {
            let idle = self.running.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.running.count.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Closes every live connection for a hand-back: nothing more is sent
    /// over them (the results of jobs still running are dropped), and the
    /// server requeues their jobs once the server tasks close the sockets.
    /// Returns how many handed-out jobs had not ended.
    pub(super) fn hand_back(&self) -> usize {
        {
            let reg = lock(&self.registry);
            for s in reg.sessions.iter().flatten() {
                s.close(CloseReason::HandedBack);
            }
        }
        self.running.count.load(Ordering::Acquire)
    }

    /// True if some connection has GRABs written but not yet tracked.
    pub(super) fn untracked_grabs(&self) -> bool {
        let reg = lock(&self.registry);
        reg.sessions
            .iter()
            .flatten()
            .any(|s| s.has_untracked_grabs())
    }

    /// Sends one packet to every live connection.
    pub(super) fn broadcast(reg: &Registry, ty: PacketType, fields: &[&[u8]]) {
        for s in reg.sessions.iter().flatten() {
            if let Err(e) = s.send(ty, fields) {
                tracing::debug!(server = %s.addr, error = %e, "could not send {}", ty.name());
            }
        }
    }

    /// Drops buffered (not yet handed out) jobs matching `pred` without
    /// sending anything: the server has requeued them already.
    pub(super) fn discard_buffered(&self, pred: impl Fn(&Job) -> bool) {
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

/// Longest pause of the hand-off watchdog while a job it woke a caller for
/// stays queued (every caller is busy).
const MAX_WATCHDOG_BACKOFF: Duration = Duration::from_millis(50);

/// With [`WorkerOptions::handoff_delay`]: wakes an idle `next_job` caller
/// for the oldest queued job once it has waited that long without a running
/// job's caller coming back for it.
async fn handoff_watchdog(state: Arc<WorkerState>, delay: Duration) {
    let mut closing = state.closing.subscribe();
    // The job last woken for, and how long to wait before looking again.
    let mut woken_for: Option<Instant> = None;
    // 2 × delay, 4 × delay, … up to the cap (the first look is `delay` after the wake-up).
    let mut backoff = Backoff::new(
        delay.saturating_mul(2).min(MAX_WATCHDOG_BACKOFF),
        MAX_WATCHDOG_BACKOFF,
    );
    loop {
        if *closing.borrow() {
            return;
        }
        let oldest = lock(&state.queue).jobs.front().map(|j| j.assigned);
        let check_at = match oldest {
            // Still queued after its wake-up: no caller is idle (the wake-up
            // is kept for the next one that asks); look again less often.
            Some(t) if woken_for == Some(t) => Instant::now() + backoff.next_delay(),
            Some(t) if t.elapsed() >= delay => {
                state.job_ready.notify_one();
                woken_for = Some(t);
                backoff.reset();
                // Give the woken caller time to take it before waking another.
                Instant::now() + delay
            }
            Some(t) => t + delay,
            None => {
                tokio::select! {
                    _ = state.deferred.notified() => continue,
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
