//! An assigned job: [`Job`], the handle user code gets from
//! [`Worker::next_job`](super::Worker::next_job) and ends with
//! [`Job::complete`], [`Job::fail`] or [`Job::exception`].
//!
//! Separate because it is the worker's second public type and the only part
//! user code holds across threads: its methods are synchronous and write
//! through the job's [`Session`] (no hop through the server task), and its `Drop`
//! fails an unfinished job and updates the worker's count of running jobs
//! ([`Running`], kept in `queue.rs`). How jobs are created (`grab.rs`) and
//! queued for callers (`queue.rs`) lives elsewhere.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::queue::Running;
use super::session::Session;
use crate::error::Result;
use crate::protocol::{Decimal, PacketType};

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

/// A job assigned to this worker. Exactly one of [`Job::complete`],
/// [`Job::fail`] or [`Job::exception`] ends it; dropping an unfinished job
/// sends WORK_FAIL so no client waits forever.
///
/// All methods are synchronous (packets are written at once, or queued
/// behind a full socket), so they can be called from any thread. The
/// `send_*` methods (output a job may stream without end) block while the
/// server leaves more than 96 MiB of this connection's output unread: they
/// write it out themselves until at most 64 MiB are left, and fail with
/// [`Error::Timeout`](crate::Error) if the server does not read for 60 s.
/// Ending a job never waits.
pub struct Job {
    handle: Bytes,
    handle_text: Bytes,
    pub(super) function: Bytes,
    unique: Bytes,
    reducer: Bytes,
    data: Bytes,
    /// The connection the job came over; its packets go back there.
    pub(super) session: Arc<Session>,
    /// Ended, or given up (the server requeues it): dropping sends nothing.
    pub(super) finished: bool,
    /// Set once `next_job` handed the job out (then `shutdown` waits for it).
    pub(super) running: Option<Arc<Running>>,
    /// Released when the job ends, or handed to a GRAB sent with its last packet.
    slot: Option<OwnedSemaphorePermit>,
    /// When the job was assigned (how long it has waited to be handed out).
    pub(super) assigned: Instant,
    /// The CAN_DO_TIMEOUT its function was registered with when it was assigned.
    pub(super) timeout: Option<Duration>,
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
    /// A job just assigned over `session` (JOB_ASSIGN*), holding the `slot`
    /// its GRAB reserved.
    pub(super) fn new(
        handle: Bytes,
        function: Bytes,
        unique: Bytes,
        reducer: Bytes,
        data: Bytes,
        session: Arc<Session>,
        slot: OwnedSemaphorePermit,
    ) -> Job {
        Job {
            handle_text: utf8_bytes(handle.clone()),
            handle,
            function: utf8_bytes(function),
            unique: utf8_bytes(unique),
            reducer: utf8_bytes(reducer),
            data,
            session,
            finished: false,
            running: None,
            slot: Some(slot),
            assigned: Instant::now(),
            timeout: None,
        }
    }

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
    /// The timeout the job's function was registered with (CAN_DO_TIMEOUT)
    /// when the job was assigned, rounded up to milliseconds: once the job
    /// runs longer the server gives up on it (polygeard fails it to its
    /// clients, gearmand requeues it). `None` if registered without one.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    /// Whether the job was cancelled ([`Client::cancel`](crate::Client::cancel),
    /// admin `cancel job`): asks the server (GET_STATUS over one connection
    /// per server that the worker keeps, so polling every 100 ms is fine).
    /// True once the server no longer has the job for this worker: it was
    /// cancelled (polygeard reports a cancelled job as unknown), or the
    /// server already failed it (its [`Job::timeout`] passed, no retry
    /// policy). A job the server requeued (a retry policy's backoff after
    /// a timeout, gearmand's requeue) is still known, so this stays false
    /// for it: the worker's late result is then refused by the server. A
    /// job that sees `true` should stop and end (its result is dropped by
    /// the server; [`Job::fail`] is fine). gearmand cancels only queued
    /// jobs, so there this stays false for a running job.
    pub async fn cancelled(&self) -> Result<bool> {
        Ok(!self.session.probe.known(self.handle()).await?)
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
        let (n, d) = (Decimal::from(numerator), Decimal::from(denominator));
        self.session.send(
            PacketType::WorkStatus,
            &[&self.handle, n.as_bytes(), d.as_bytes()],
        )
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
    /// Ends the job locally without telling the server anything: its slot
    /// is free for the next job and [`Worker::shutdown`](super::Worker::shutdown)
    /// no longer waits for it. For a job the server has already given up on
    /// (its [`Job::timeout`] passed: the server failed or requeued it and
    /// refuses this worker's results). For any other job, prefer an ending
    /// method: the server keeps an abandoned job assigned to this worker
    /// until the connection closes.
    pub fn abandon(mut self) {
        self.finished = true;
        // Dropped with `self`: the slot returns to the semaphore.
        drop(self.slot.take());
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
