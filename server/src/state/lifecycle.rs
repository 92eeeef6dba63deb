//! A job's life once it exists: progress and results relayed to its clients
//! (WORK_*), its end (complete, fail, exception, cancel, reaped), the
//! CAN_DO_TIMEOUT expiry, workers that lose a job (disconnect, CANT_DO),
//! epoch jobs coming due, and jobs restored from the durable queue. Separate
//! from submission and scheduling: everything here removes or returns a job
//! that those two put in place.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use polygear::protocol::{atoi, PacketType};

use super::retry::{Retry, LOST, WORK_FAIL};
use super::submit::submission_key;
use super::timers::TimerEvent;
use super::{unix_now, ConnId, State};
use crate::index::shrink;
use crate::queue::{Op, StoredJob, StoredKey};
use crate::stats::Outcome;
use crate::wire::{parse_handle, put_pkt};

/// The WORK_FAIL_REASON of a job cancelled by `cancel job` or the dashboard.
const CANCELLED: &str = "cancelled by an administrator";

impl State {
    /// WORK_STATUS: records the progress and relays it to the clients.
    pub(super) fn work_status(
        &mut self,
        cid: ConnId,
        handle: &[u8],
        numerator: &[u8],
        denominator: &[u8],
    ) {
        let Some(n) = self.held_job(cid, handle) else {
            self.reply_error(cid, "JOB_NOT_FOUND", "Job given in work result not found");
            return;
        };
        if let Some(job) = self.jobs.get_mut(&n) {
            job.num = atoi(numerator).clamp(0, u32::MAX as i64) as u32;
            job.den = atoi(denominator).clamp(0, u32::MAX as i64) as u32;
        }
        self.forward(n, |b, _| {
            put_pkt(b, PacketType::WorkStatus, &[handle, numerator, denominator])
        });
    }

    /// WORK_DATA / WORK_WARNING (kept apart because they share a payload shape).
    pub(super) fn work_data(&mut self, cid: ConnId, kind: PacketType, handle: &[u8], data: &[u8]) {
        let Some(n) = self.held_job(cid, handle) else {
            self.reply_error(cid, "JOB_NOT_FOUND", "Job does not exist on server");
            return;
        };
        self.forward(n, |b, _| put_pkt(b, kind, &[handle, data]));
    }

    /// WORK_COMPLETE: the result goes to the clients and the job ends.
    pub(super) fn work_complete(&mut self, cid: ConnId, handle: &[u8], data: &[u8]) {
        let Some(n) = self.held_job(cid, handle) else {
            self.reply_error(cid, "JOB_NOT_FOUND", "Job given in work result not found");
            return;
        };
        self.forward(n, |b, _| {
            put_pkt(b, PacketType::WorkComplete, &[handle, data])
        });
        self.discard(n, Outcome::Complete, data);
    }

    /// WORK_FAIL: the clients are told and the job ends.
    pub(super) fn work_fail(&mut self, cid: ConnId, handle: &[u8]) {
        if handle.len() >= 64 {
            self.reply_error(
                cid,
                "ARGUMENT_TOO_LARGE",
                "Error occurred due to GEARMAND_JOB_HANDLE_SIZE being too small from snprintf",
            );
            return;
        }
        let Some(n) = self.held_job(cid, handle) else {
            self.reply_error(cid, "JOB_NOT_FOUND", "Job given in work result not found");
            return;
        };
        if self.retry_failed(n, WORK_FAIL) == Retry::Later {
            return;
        }
        self.forward(n, |b, _| put_pkt(b, PacketType::WorkFail, &[handle]));
        self.discard(n, Outcome::Fail, b"");
    }

    /// WORK_EXCEPTION: clients with the `exceptions` option get it, the
    /// others a WORK_FAIL; the job ends.
    pub(super) fn work_exception(&mut self, cid: ConnId, handle: &[u8], data: &[u8]) {
        let Some(n) = self.held_job(cid, handle) else {
            self.reply_error(
                cid,
                "JOB_NOT_FOUND",
                "An exception was received for a job that does not exist",
            );
            return;
        };
        if self.retry_failed(n, &String::from_utf8_lossy(data)) == Retry::Later {
            return;
        }
        self.forward(n, |b, exceptions| {
            if exceptions {
                put_pkt(b, PacketType::WorkException, &[handle, data])
            } else {
                // gearmand appends a NUL here (`handle\0`); libgearman
                // clients such as the C `gearman` tool then never match
                // the handle and hang. The plain form works everywhere.
                put_pkt(b, PacketType::WorkFail, &[handle])
            }
        });
        self.discard(n, Outcome::Exception, data);
    }

    /// The job `handle` if this connection currently holds it.
    pub(super) fn held_job(&self, cid: ConnId, handle: &[u8]) -> Option<u64> {
        let n = parse_handle(&self.prefix, handle)?;
        let job = self.jobs.get(&n)?;
        (job.worker == cid).then_some(n)
    }

    /// Arms the timer that queues delayed job `h` at unix time `when`.
    pub(super) fn schedule_epoch(&mut self, h: u64, when: i64) {
        let delay = Duration::from_secs((when - unix_now()).max(0) as u64);
        self.timers.arm(delay, TimerEvent::EpochDue { job: h });
    }

    /// An epoch job's time came: queue it and wake a worker.
    pub(super) fn epoch_due(&mut self, h: u64) {
        let Some(job) = self.jobs.get_mut(&h) else {
            return;
        };
        if !job.delayed {
            return;
        }
        job.delayed = false;
        job.since = std::time::Instant::now();
        let (fid, prio) = (job.func, job.prio);
        self.enqueue(fid, prio as usize, h, false);
        self.wake(fid);
    }

    /// The CAN_DO_TIMEOUT of assignment `gen` of job `h` to `cid` expired (a
    /// stale timer, for a job since finished or reassigned, does nothing).
    pub(super) fn job_timed_out(&mut self, h: u64, cid: ConnId, gen: u32) {
        let Some(job) = self.jobs.get(&h) else { return };
        if job.worker != cid || job.assign_gen != gen {
            return;
        }
        if self.cfg.timeout_requeue {
            tracing::info!(
                "worker timeout reached on job {}, requeueing it",
                String::from_utf8_lossy(&self.handle(h))
            );
            if let Some(c) = self.peers.get_mut(&cid) {
                c.holding.remove(&h);
            }
            self.requeue_lost(h, cid);
            return;
        }
        tracing::info!(
            "worker timeout reached on job {}, failing it",
            String::from_utf8_lossy(&self.handle(h))
        );
        let ms = self
            .peers
            .get(&cid)
            .and_then(|p| p.abilities.get(job.func))
            .map_or(0, |a| a.timeout_ms);
        let reason = format!(
            "the worker exceeded its {} timeout",
            polygear::format_duration(Duration::from_millis(ms.into()))
        );
        if self.retry_failed(h, &reason) == Retry::Later {
            return;
        }
        self.fail_clients(h, &reason);
        self.discard(h, Outcome::Timeout, b"");
    }

    /// A worker lost job `h` (disconnect, CANT_DO, RESET_ABILITIES): back to
    /// the head of its queue, or failed once `--job-retries` assignments were used.
    pub(super) fn requeue_lost(&mut self, h: u64, cid: ConnId) {
        let Some(job) = self.jobs.get_mut(&h) else {
            return;
        };
        if job.worker != cid {
            return;
        }
        match self.retry_failed(h, LOST) {
            Retry::Later => return,
            Retry::Dead => {
                self.fail_clients(h, LOST);
                self.discard(h, Outcome::RetriesExhausted, b"");
                return;
            }
            Retry::No => {}
        }
        let Some(job) = self.jobs.get_mut(&h) else {
            return;
        };
        job.retries += 1;
        let (fid, prio) = (job.func, job.prio as usize);
        let retries = self.cfg.job_retries;
        if job.ignore || (retries > 0 && job.retries >= retries) {
            let outcome = if job.ignore {
                Outcome::Abandoned
            } else {
                Outcome::RetriesExhausted
            };
            if !job.ignore {
                tracing::warn!(
                    "dropped job due to max retry count: {}",
                    String::from_utf8_lossy(&self.handle(h))
                );
                self.fail_clients(
                    h,
                    &format!(
                        "no worker could finish it in {retries} attempts (--job-retries {retries})"
                    ),
                );
            }
            self.discard(h, outcome, b"");
            return;
        }
        job.worker = 0;
        job.since = std::time::Instant::now();
        job.num = 0;
        job.den = 0;
        self.timers.disarm(h);
        let f = &mut self.funcs[fid];
        f.running = f.running.saturating_sub(1);
        f.waiting[prio] += 1;
        self.enqueue(fid, prio, h, true);
        self.wake(fid);
    }

    /// Removes job `h`, which ended with `outcome` (`message`: the result
    /// of a completed job, an exception's data), and everything that refers
    /// to it; its end is kept if it asked for retention (see `retain`).
    pub(super) fn discard(&mut self, h: u64, outcome: Outcome, message: &[u8]) {
        let Some(job) = self.jobs.remove(&h) else {
            return;
        };
        let outcome = if job.cancelled {
            Outcome::Cancelled
        } else {
            outcome
        };
        let ran = job.running().then(|| job.since.elapsed());
        self.count_end(job.func, h, outcome, ran, message);
        self.keep_result(h, &job, outcome, message);
        self.timers.disarm(h);
        if let Some(k) = job.key() {
            self.uniques.remove(job.func, k, h);
        }
        if !self.reducers.is_empty() {
            self.reducers.remove(&h);
        }
        let f = &mut self.funcs[job.func];
        f.total = f.total.saturating_sub(1);
        if job.running() {
            f.running = f.running.saturating_sub(1);
            if let Some(c) = self.peers.get_mut(&job.worker) {
                c.holding.remove(&h);
                shrink(&mut c.holding);
            }
        } else {
            f.waiting[job.prio as usize] = f.waiting[job.prio as usize].saturating_sub(1);
        }
        shrink_queue(&mut f.queues[job.prio as usize]);
        self.funcs.touch(job.func);
        for c in &job.clients {
            if let Some(peer) = self.peers.get_mut(c) {
                if let std::collections::hash_map::Entry::Occupied(mut e) = peer.attached.entry(h) {
                    let c = e.get_mut();
                    *c = c.saturating_sub(1);
                    if *e.get() == 0 {
                        e.remove();
                    }
                }
            }
        }
        if job.durable != 0 {
            self.delete_stored(job.durable, job.func, job.unique());
        }
        shrink(&mut self.jobs);
        if self.peak_jobs > 65536 && self.jobs.len() * 4 < self.peak_jobs {
            // Most of a large queue drained: give the memory back to the OS.
            self.peak_jobs = self.jobs.len();
            self.trim_requested = true;
        }
    }

    /// Admin `cancel job`: clients get WORK_FAIL, the stored copy is deleted,
    /// a waiting job is reaped when reached, a running one finishes unseen.
    /// False if there is no such job or it was cancelled already.
    pub(crate) fn cancel_job(&mut self, h: u64) -> bool {
        if self.jobs.get(&h).is_none_or(|j| j.cancelled) {
            return false;
        }
        self.fail_clients(h, CANCELLED);
        self.release_unique(h);
        let Some(job) = self.jobs.get_mut(&h) else {
            return false;
        };
        let clients = std::mem::take(&mut job.clients);
        job.ignore = true;
        job.cancelled = true;
        job.background = false;
        let durable = std::mem::replace(&mut job.durable, 0);
        let delayed = job.delayed;
        for c in clients {
            if let Some(peer) = self.peers.get_mut(&c) {
                peer.attached.remove(&h);
            }
        }
        if let Some(job) = self.jobs.get(&h).filter(|_| durable != 0) {
            self.delete_stored(durable, job.func, job.unique());
        }
        if delayed {
            // Never reaches a queue: remove it now. (A waiting job is reaped
            // by the next grab that reaches it; a running one finishes unseen.)
            self.discard(h, Outcome::Cancelled, b"");
        }
        true
    }

    /// Cancels job `h` at once (taken out of its queue by the caller): its
    /// clients get WORK_FAIL, its stored copy is deleted.
    #[cfg_attr(not(feature = "http"), allow(dead_code))] // the dashboard's cancel
    pub(crate) fn cancel_now(&mut self, h: u64) {
        self.fail_clients(h, CANCELLED);
        if let Some(job) = self.jobs.get_mut(&h) {
            job.cancelled = true;
        }
        self.discard(h, Outcome::Cancelled, b"");
    }

    /// Jobs whose insert failed to commit (their submitters got ERROR) are
    /// dropped, unless a foreground client joined one meanwhile (it then
    /// runs for that client, in memory).
    pub(crate) fn abandon_unpersisted(&mut self, handles: &[u64]) {
        self.metrics.queue_refused += handles.len() as u64;
        for &h in handles {
            let Some(job) = self.jobs.get_mut(&h) else {
                continue;
            };
            job.durable = 0;
            job.background = false;
            if !job.clients.is_empty() {
                continue;
            }
            job.ignore = true;
            let delayed = job.delayed;
            self.release_unique(h);
            if delayed {
                // In no queue: gone now. (A waiting job is reaped when
                // reached; a running one finishes unseen.)
                self.discard(h, Outcome::Abandoned, b"");
            }
        }
    }

    /// Sends the delete of stored job `id` to the queue thread.
    /// (Function and unique are copied only for a store keyed by them.)
    fn delete_stored(&self, id: i64, func: u32, unique: &[u8]) {
        if let Some(p) = self.persist.as_ref() {
            let key = if p.keyed {
                StoredKey {
                    id,
                    function: self.funcs[func].name.clone(),
                    unique: Bytes::copy_from_slice(unique),
                }
            } else {
                StoredKey {
                    id,
                    function: Bytes::new(),
                    unique: Bytes::new(),
                }
            };
            let _ = p.tx.send(Op::Delete(key));
        }
    }

    /// Re-creates background jobs read from the persistent queue (at start,
    /// or claimed from a server whose lease expired). Rows without an id
    /// (keyed stores) get one here.
    pub(crate) fn restore(&mut self, rows: Vec<StoredJob>) -> usize {
        let mut dups = Vec::new();
        let mut n = 0;
        // Stored handles (SQLite) are kept, so `GET_RESULT` of a handle given
        // out before a restart still works; new jobs are numbered after them.
        let top = rows.iter().map(|r| r.handle).max().unwrap_or(0);
        self.next_handle = self.next_handle.max(top + 1);
        for mut row in rows {
            let fid = self.func_id(&row.function);
            if let Some(k) = submission_key(&row.unique, &row.data) {
                if self.lookup_unique(fid, k).is_some() {
                    // Only an id-keyed store (SQLite) can hold two rows for one
                    // key; in a keyed store the row is the live job's own.
                    if row.id != 0 {
                        dups.push(StoredKey {
                            id: row.id,
                            function: row.function,
                            unique: row.unique,
                        });
                    }
                    continue;
                }
            }
            if row.id == 0 {
                if let Some(p) = self.persist.as_mut() {
                    row.id = p.next_id;
                    p.next_id += 1;
                }
            }
            let reducer = (!row.reducer.is_empty()).then_some(row.reducer);
            let next = self.next_handle;
            let reuse = row.handle != 0
                && !self.jobs.contains_key(&row.handle)
                && !self.results.contains(row.handle);
            if reuse {
                self.next_handle = row.handle;
            }
            let h = self.create_job(
                fid,
                row.priority.min(2),
                &row.unique,
                &row.data,
                reducer,
                row.when,
                true,
                None,
            );
            if reuse {
                self.next_handle = next;
            }
            if let Some(j) = self.jobs.get_mut(&h) {
                j.durable = row.id;
                j.retain = row.retain;
            }
            n += 1;
        }
        if let Some(p) = self.persist.as_ref() {
            for k in dups {
                let _ = p.tx.send(Op::Delete(k));
            }
        }
        n
    }
}

/// Gives a queue's memory back once it is mostly empty.
fn shrink_queue(q: &mut VecDeque<u64>) {
    let cap = q.capacity();
    if cap > 4096 && q.len() * 8 < cap {
        q.shrink_to(q.len() * 2);
    }
}
