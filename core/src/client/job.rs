//! The per-job hand-off between a connection's reader and the caller waiting
//! on a foreground job.
//!
//! A [`JobSlot`] is one job's mailbox: the reader (in `conn.rs`) stores the
//! JOB_CREATED reply, the WORK_* events and a terminal error in it and wakes
//! the caller; `Client::submit` or a `RunningJob` (in `mod.rs`) takes them
//! out. A [`Submission`] is a queued foreground SUBMIT (its slot, its
//! connection and its deadlines) and [`SubmitGuard`] undoes it if the caller
//! gives up. This is separate from `conn.rs` because it is the only state the
//! caller and the reader share, and its locking rules (who may register,
//! detach or abandon) are easiest to check in one place.
//!
//! Naming: a "slot" in the client is always a `JobSlot` (per-job state);
//! a configured server is a `Server` (`pool.rs`), one socket to it a `Conn`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::conn::Conn;
use super::JobEvent;
use crate::error::{Error, Result};
use crate::util::lock;

// ---------------------------------------------------------------------------
// Per-job state shared between the connection reader and a RunningJob

#[derive(Default)]
pub(super) struct JobSlot {
    pub(super) st: Mutex<JobState>,
    pub(super) notify: Notify,
}

#[derive(Default)]
pub(super) struct JobState {
    /// Reply to the SUBMIT: the handle, or the server's ERROR.
    pub(super) created: Option<Result<Bytes>>,
    /// Events not yet read.
    pub(super) events: VecDeque<JobEvent>,
    /// Terminal failure (connection lost, client closed).
    pub(super) error: Option<Error>,
    /// Why the server failed the job (polygeard's WORK_FAIL_REASON).
    pub(super) fail_reason: Option<String>,
    /// The submitter gave up before JOB_CREATED (timeout or cancellation):
    /// a late JOB_CREATED must not register a waiter nobody reads.
    abandoned: bool,
    /// Do not wake the submitter for JOB_CREATED (it waits for the result anyway).
    pub(super) quiet_created: bool,
}

impl fmt::Debug for JobSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.st);
        f.debug_struct("JobSlot")
            .field("queued_events", &st.events.len())
            .field("failed", &st.error.is_some())
            .finish()
    }
}

impl JobSlot {
    /// Records the reason of the WORK_FAIL that follows (no wake-up: the
    /// WORK_FAIL itself wakes the caller).
    pub(super) fn set_fail_reason(&self, reason: String) {
        lock(&self.st).fail_reason = Some(reason);
    }

    /// [`Error::JobFailed`] for `handle`, with the server's reason if it
    /// gave one ([`Error::JobCancelled`] if it says cancelled).
    pub(super) fn failed(&self, handle: String) -> Error {
        Error::job_failed(handle, lock(&self.st).fail_reason.clone())
    }

    pub(super) fn push(&self, ev: JobEvent) {
        lock(&self.st).events.push_back(ev);
        self.notify.notify_one();
    }

    /// Records the reply to the SUBMIT; false if the submitter abandoned it.
    pub(super) fn set_created(&self, r: Result<Bytes>) -> bool {
        let mut st = lock(&self.st);
        if st.abandoned {
            return false;
        }
        let quiet = st.quiet_created && r.is_ok();
        st.created = Some(r);
        drop(st);
        if !quiet {
            self.notify.notify_one();
        }
        true
    }

    /// Gives up on a submission whose JOB_CREATED has not been consumed;
    /// detaches it if the reply arrived meanwhile.
    fn abandon(self: &Arc<Self>, conn: &Conn) {
        let late = {
            let mut st = lock(&self.st);
            st.abandoned = true;
            st.created.take()
        };
        if let Some(Ok(key)) = late {
            conn.detach(&key, self);
        }
    }

    pub(super) fn fail(&self, e: Error) {
        lock(&self.st).error.get_or_insert(e);
        self.notify.notify_one();
    }

    /// Waits for JOB_CREATED; `Err(None)` means the deadline passed.
    pub(super) async fn wait_created(&self, deadline: Instant) -> Result<Bytes, Option<Error>> {
        loop {
            let notified = self.notify.notified();
            {
                let mut st = lock(&self.st);
                if let Some(r) = st.created.take() {
                    return r.map_err(Some);
                }
                if let Some(e) = st.error.take() {
                    return Err(Some(e));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(None);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// A foreground submission in flight, and its clean-up

/// A queued foreground SUBMIT.
pub(super) struct Submission {
    pub(super) slot: Arc<JobSlot>,
    pub(super) conn: Arc<Conn>,
    /// Index of the server it went to (in `Pool::servers`).
    pub(super) server: usize,
    /// Whole-job deadline, and the timeout it came from.
    pub(super) deadline: Option<Instant>,
    pub(super) timeout: Option<std::time::Duration>,
    /// Deadline for JOB_CREATED.
    pub(super) created_deadline: Instant,
    /// `created_deadline` is the client's `submit_timeout` (not a shorter
    /// job deadline): missing it means the server does not answer.
    pub(super) created_by_submit_timeout: bool,
}

impl Submission {
    /// JOB_CREATED did not come in time; if the server had the whole
    /// `submit_timeout`, its connection is given up (see `Pool::unresponsive`).
    pub(super) fn created_timeout(&self, pool: &super::pool::Pool, function: &str) -> Error {
        let why = format!(
            "no JOB_CREATED from {} for function {function:?}",
            self.conn.addr
        );
        if self.created_by_submit_timeout {
            pool.unresponsive(&self.conn, &why);
        }
        Error::Timeout(why)
    }
}

/// Cleans up after `Client::submit` however it ends (including when its
/// future is dropped): no per-job state outlives the call.
pub(super) struct SubmitGuard<'a> {
    pub(super) sub: &'a Submission,
    pub(super) key: Option<Bytes>,
    pub(super) done: bool,
}

impl Drop for SubmitGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        match &self.key {
            Some(k) => self.sub.conn.detach(k, &self.sub.slot),
            None => self.sub.slot.abandon(&self.sub.conn),
        }
    }
}
