//! [`Client::cancel`]: the submitter cancels a job it (or another client)
//! created, through the admin protocol's `cancel job` on the server that
//! holds it.
//!
//! Why the admin command and not a new binary packet: gearmand and
//! polygeard already have it (gearmand cancels queued jobs, polygeard also
//! running ones), it needs no new packet type that old peers would choke
//! on, and cancelling is rare enough that one short admin connection per
//! call costs nothing that matters.

use crate::admin::{check_word, Admin};
use crate::error::{Error, Result};

use super::submit::check_handle;
use super::Client;

impl Client {
    /// Cancels job `handle`: `Ok(true)` if a server had it queued or
    /// running, `Ok(false)` if none knows it (finished, never existed).
    ///
    /// On polygeard a queued job never runs (its stored copy is deleted at
    /// once; `status` counts it until a worker's GRAB reaches and drops it,
    /// as gearmand does); a running job
    /// is marked cancelled: its clients get WORK_FAIL at once (polygear's
    /// clients: [`Error::JobCancelled`]), the worker's later result is
    /// dropped, and the worker's [`Job::cancelled`](crate::Job::cancelled)
    /// turns true. gearmand cancels only queued jobs (a running one answers
    /// `false`).
    ///
    /// Asks the server that created the handle when this client knows it
    /// (its own submissions, or a single server), else each server in turn
    /// until one knows the handle: with several servers that give handles
    /// the same prefix (same host name), cancel through the client that
    /// submitted the job. Opens one admin connection per server asked, with
    /// the client's TLS options, `connect_timeout` and `submit_timeout`.
    pub async fn cancel(&self, handle: &str) -> Result<bool> {
        let inner = &self.inner;
        check_handle(handle)?;
        // Sent in an admin text line: checked before any I/O.
        check_word("job handle", handle)?;
        let order: Vec<usize> = match inner.server_of(handle) {
            Some(i) => vec![i],
            None => (0..inner.servers.len()).collect(),
        };
        let mut answered = false;
        let mut last_err = None;
        for i in order {
            match self.cancel_on(i, handle).await {
                Ok(true) => return Ok(true),
                Ok(false) => answered = true,
                Err(e) => last_err = Some(e),
            }
        }
        if answered {
            Ok(false)
        } else {
            Err(inner.all_failed(last_err))
        }
    }

    /// `cancel job HANDLE` on server `i`: whether it had the job.
    async fn cancel_on(&self, i: usize, handle: &str) -> Result<bool> {
        let opts = &self.inner.options;
        let addr = &opts.servers[i];
        let connect = Admin::connect_with(addr, opts.submit_timeout, opts.tls.as_ref());
        let mut admin = match tokio::time::timeout(opts.connect_timeout, connect).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Error::Timeout(format!(
                    "connecting to {addr} took longer than {:?}",
                    opts.connect_timeout
                )))
            }
        };
        match admin.cancel_job(handle).await {
            Ok(()) => Ok(true),
            Err(Error::Server { code, .. }) if code == "UNKNOWN_JOB" => Ok(false),
            Err(e) => Err(e),
        }
    }
}
