//! Retries with backoff and the dead set (polygear extensions, issue #19).
//!
//! A function may have a [`RetryPolicy`] (`--retry`, admin `retry`). A
//! *background* job of such a function whose run fails (WORK_FAIL,
//! WORK_EXCEPTION, its worker disconnects or gives it up, its CAN_DO_TIMEOUT
//! expires) is not ended: it waits out its backoff like an epoch job (in no
//! queue, its timer armed; in SQLite its row's `when_to_run` and `attempts`
//! updated) and then runs again. The failure that uses its last attempt
//! ends it as before for its clients, and moves it to the dead set: a bounded
//! list of records (function, unique, data, attempts, last error, times),
//! oldest first, listed, requeued and deleted by the admin `dead` commands.
//! Foreground jobs and functions without a policy behave exactly as in
//! gearmand (`--job-retries` still counts lost assignments).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use polygear::protocol::admin::{write_dead_line, write_retry_line, AdminCommand, DeadTarget};
use polygear::protocol::Decimal;
use polygear::{DeadJob, RetryPolicy};

use super::submit::submission_key;
use super::timers::TimerEvent;
use super::{unix_now, State};
use crate::admin::put_ok_value;
use crate::queue::{DeadOp, DeadRow, Op, Recovered, StoredKey};

/// The error of a dead job whose worker sent WORK_FAIL.
pub(crate) const WORK_FAIL: &str = "WORK_FAIL";
/// The error of a dead job whose worker went away (or gave it up) while running it.
pub(crate) const LOST: &str = "the worker's connection closed while running it";

/// The retry policies and the dead set of one server.
pub(crate) struct Retries {
    policies: HashMap<Bytes, RetryPolicy>,
    /// Oldest first.
    dead: VecDeque<DeadRow>,
    next_dead_id: i64,
    max_dead: usize,
    max_age: Duration,
    max_bytes: usize,
    /// xorshift state for the jitter.
    rng: u64,
    /// Records dropped for `--dead-max`, `--dead-max-age`, `--dead-max-bytes`.
    pub dropped: u64,
    /// Failed runs sent back to wait out a backoff.
    pub retried: u64,
    /// Dead jobs requeued by `dead retry`.
    pub requeued: u64,
}

impl Retries {
    pub(crate) fn new(cfg: &crate::ServerConfig) -> Retries {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut r = Retries {
            policies: HashMap::new(),
            dead: VecDeque::new(),
            next_dead_id: 1,
            max_dead: cfg.dead_max,
            max_age: cfg.dead_max_age,
            max_bytes: cfg.dead_max_bytes,
            rng: seed | 1,
            dropped: 0,
            retried: 0,
            requeued: 0,
        };
        for (f, p) in &cfg.retry_policies {
            r.set(Bytes::copy_from_slice(f.as_bytes()), *p);
        }
        r
    }

    fn set(&mut self, function: Bytes, p: RetryPolicy) {
        if p.max_attempts == 0 {
            self.policies.remove(&function);
        } else {
            self.policies.insert(function, p);
        }
    }

    /// Records in the dead set.
    pub(crate) fn dead_len(&self) -> usize {
        self.dead.len()
    }

    /// A number in `[0, 1)`.
    fn jitter(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What [`State::retry_failed`] did with a failed run.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// No policy applies: the caller ends the job as usual.
    No,
    /// The job waits out its backoff: the caller does nothing more.
    Later,
    /// Its attempts ran out and it is in the dead set: the caller ends it
    /// as usual (its stored row is already deleted with the record's insert).
    Dead,
}

impl State {
    /// A run of job `h` failed with `error`: back after its backoff, into
    /// the dead set, or (no policy, not a background job) left to the caller.
    pub(super) fn retry_failed(&mut self, h: u64, error: &str) -> Retry {
        if self.retries.policies.is_empty() {
            return Retry::No;
        }
        let Some(job) = self.jobs.get(&h) else {
            return Retry::No;
        };
        if !job.background || job.ignore || job.cancelled || !job.running() {
            return Retry::No;
        }
        let Some(&policy) = self.retries.policies.get(&self.funcs[job.func].name) else {
            return Retry::No;
        };
        let attempts = job.attempts.saturating_add(1);
        if attempts >= policy.max_attempts {
            self.bury(h, attempts, error);
            return Retry::Dead;
        }
        let jitter = self.retries.jitter();
        let delay = policy.delay(attempts, jitter);
        let Some(job) = self.jobs.get_mut(&h) else {
            return Retry::No;
        };
        job.attempts = attempts;
        let worker = std::mem::replace(&mut job.worker, 0);
        job.delayed = true;
        job.num = 0;
        job.den = 0;
        job.since = std::time::Instant::now();
        let (fid, prio, durable) = (job.func, job.prio as usize, job.durable);
        if let Some(c) = self.peers.get_mut(&worker) {
            c.holding.remove(&h);
        }
        let f = &mut self.funcs[fid];
        f.running = f.running.saturating_sub(1);
        f.waiting[prio] += 1;
        // Replaces the CAN_DO_TIMEOUT timer, if any.
        self.timers.arm(delay, TimerEvent::EpochDue { job: h });
        self.retries.retried += 1;
        tracing::debug!(
            "job {} failed ({error}); attempt {} in {delay:?}",
            String::from_utf8_lossy(&self.handle(h)),
            attempts + 1
        );
        if let (Some(p), true) = (self.persist.as_ref(), durable != 0) {
            let at = SystemTime::now() + delay;
            let when = at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
            let _ = p.tx.send(Op::Dead(DeadOp::Reschedule {
                id: durable,
                when: when as i64,
                attempts,
            }));
        }
        Retry::Later
    }

    /// Moves job `h`, failed for the last time, into the dead set (its
    /// stored row is deleted in the same transaction as the record's insert).
    fn bury(&mut self, h: u64, attempts: u32, error: &str) {
        let handle = String::from_utf8_lossy(&self.handle(h)).into_owned();
        let Some(job) = self.jobs.get_mut(&h) else {
            return;
        };
        let durable = std::mem::replace(&mut job.durable, 0);
        let function = self.funcs[job.func].name.clone();
        let row = DeadRow {
            id: self.retries.next_dead_id,
            priority: job.prio,
            job: DeadJob {
                handle,
                function: String::from_utf8_lossy(&function).into_owned(),
                unique: Bytes::copy_from_slice(job.unique()),
                data: Bytes::copy_from_slice(job.data()),
                attempts,
                error: error.to_string(),
                submitted: job.submitted,
                failed_at: unix_now(),
            },
            function,
        };
        self.retries.next_dead_id += 1;
        tracing::info!(
            "job {} of {} is dead after {attempts} attempts: {error}",
            row.job.handle,
            row.job.function
        );
        let delete =
            (durable != 0).then(|| self.stored_key(durable, &row.function, &row.job.unique));
        if let Some(p) = self.persist.as_ref() {
            let _ = p.tx.send(Op::Dead(DeadOp::Bury {
                row: row.clone(),
                delete,
            }));
        }
        self.retries.dead.push_back(row);
        self.prune_dead();
    }

    fn stored_key(&self, id: i64, function: &Bytes, unique: &[u8]) -> StoredKey {
        let keyed = self.persist.as_ref().is_some_and(|p| p.keyed);
        StoredKey {
            id,
            function: if keyed {
                function.clone()
            } else {
                Bytes::new()
            },
            unique: if keyed {
                Bytes::copy_from_slice(unique)
            } else {
                Bytes::new()
            },
        }
    }

    /// Drops the oldest records beyond `--dead-max` or `--dead-max-bytes`
    /// and those older than `--dead-max-age` (0: no limit). (Sums the
    /// payloads: O(records), once per job that dies.)
    fn prune_dead(&mut self) {
        let r = &mut self.retries;
        let oldest = unix_now().saturating_sub(r.max_age.as_secs().min(i64::MAX as u64) as i64);
        let size = |d: &DeadRow| d.job.data.len() + d.job.unique.len() + d.job.error.len();
        let mut bytes: usize = r.dead.iter().map(size).sum();
        let mut gone = Vec::new();
        while let Some(front) = r.dead.front() {
            let too_many = r.max_dead > 0 && r.dead.len() > r.max_dead;
            let too_big = r.max_bytes > 0 && bytes > r.max_bytes;
            let too_old = !r.max_age.is_zero() && front.job.failed_at < oldest;
            if !(too_many || too_big || too_old) {
                break;
            }
            if let Some(d) = r.dead.pop_front() {
                bytes -= size(&d);
                gone.push(d.id);
            }
        }
        if gone.is_empty() {
            return;
        }
        r.dropped += gone.len() as u64;
        tracing::debug!("dropped {} dead jobs for the dead set's limits", gone.len());
        if let Some(p) = self.persist.as_ref() {
            for id in gone {
                let _ = p.tx.send(Op::Dead(DeadOp::Forget(id)));
            }
        }
    }

    /// Takes what the store kept at start: attempt counts of the restored
    /// jobs (call after [`State::restore`]) and the dead set.
    pub(crate) fn restore_retries(&mut self, rec: Recovered) {
        if !rec.attempts.is_empty() {
            for job in self.jobs.values_mut() {
                if let Some(&(attempts, submitted)) = rec.attempts.get(&job.durable) {
                    job.attempts = attempts;
                    if submitted > 0 {
                        job.submitted = submitted;
                    }
                }
            }
        }
        let max = rec.dead.iter().map(|d| d.id).max().unwrap_or(0);
        self.retries.next_dead_id = self.retries.next_dead_id.max(max + 1);
        self.retries.dead.extend(rec.dead);
        self.prune_dead();
    }

    /// The admin commands of this feature (`retry …`, `dead …`).
    pub(crate) fn retry_admin(&mut self, cmd: AdminCommand, b: &mut BytesMut) {
        match cmd {
            AdminCommand::SetRetry { function, policy } => {
                self.retries
                    .set(Bytes::copy_from_slice(function.as_bytes()), policy);
                b.put_slice(b"OK\r\n");
            }
            AdminCommand::ShowRetry => {
                let mut rows: Vec<_> = self.retries.policies.iter().collect();
                rows.sort_by(|a, b| a.0.cmp(b.0));
                for (f, p) in rows {
                    write_retry_line(b, f, p);
                }
                b.put_slice(b".\n");
            }
            AdminCommand::DeadList(function) => {
                self.prune_dead();
                for d in &self.retries.dead {
                    if function.as_ref().is_none_or(|f| *f == d.job.function) {
                        write_dead_line(b, &d.job);
                    }
                }
                b.put_slice(b".\n");
            }
            AdminCommand::DeadRetry(target) => {
                let n = self.requeue_dead(&target);
                put_ok_value(b, Decimal::from(n as u64).as_bytes());
            }
            AdminCommand::DeadDelete(target) => {
                let gone = self.take_dead(&target);
                if let Some(p) = self.persist.as_ref() {
                    for d in &gone {
                        let _ = p.tx.send(Op::Dead(DeadOp::Forget(d.id)));
                    }
                }
                put_ok_value(b, Decimal::from(gone.len() as u64).as_bytes());
            }
            _ => {}
        }
    }

    /// Removes and returns the dead records `target` names.
    fn take_dead(&mut self, target: &DeadTarget) -> Vec<DeadRow> {
        let hit = |d: &DeadRow| match target {
            DeadTarget::All => true,
            DeadTarget::Function(f) => *f == d.job.function,
            DeadTarget::Job(h) => *h == d.job.handle,
        };
        let (taken, kept) = std::mem::take(&mut self.retries.dead)
            .into_iter()
            .partition(|d| hit(d));
        self.retries.dead = kept;
        taken.into_iter().collect()
    }

    /// `dead retry`: the records become fresh background jobs (attempts
    /// reset), each stored with its record's delete in one transaction. A
    /// record whose unique key a live job holds joins that job (it only
    /// leaves the dead set). Returns the records taken.
    fn requeue_dead(&mut self, target: &DeadTarget) -> usize {
        if self.persist.is_some() && self.lease_until.is_some() && !self.holds_lease() {
            // Fenced (shared queue, lease lost): nothing may be stored now.
            tracing::warn!("dead retry refused: this server lost its queue lease");
            return 0;
        }
        let taken = self.take_dead(target);
        let n = taken.len();
        let now = unix_now();
        for d in taken {
            let fid = self.func_id(&d.function);
            let key = submission_key(&d.job.unique, &d.job.data);
            // A live job with its key, or a unique window holding the key's
            // finished result: it joins that (only leaves the dead set).
            let live = key.is_some_and(|k| {
                self.lookup_unique(fid, k).is_some()
                    || self.results.window_hit(&d.function, k, now).is_some()
            });
            if live {
                if let Some(p) = self.persist.as_ref() {
                    let _ = p.tx.send(Op::Dead(DeadOp::Forget(d.id)));
                }
                continue;
            }
            let h = self.create_job(
                fid,
                d.priority.min(2),
                &d.job.unique,
                &d.job.data,
                None,
                0,
                true,
                None,
            );
            self.retries.requeued += 1;
            let Some(row) = self.stored_row(h) else {
                continue;
            };
            if let Some(p) = self.persist.as_ref() {
                let _ = p.tx.send(Op::Dead(DeadOp::Unbury { dead_id: d.id, row }));
            }
        }
        n
    }
}

/// Parses a `--retry FUNCTION=ATTEMPTS[:BACKOFF_MS[:MAX_DELAY_MS]]` value.
pub fn parse_retry_flag(s: &str) -> Result<(String, RetryPolicy), String> {
    let bad = || format!("--retry {s:?}: expected FUNCTION=ATTEMPTS[:BACKOFF_MS[:MAX_DELAY_MS]]");
    let (function, rest) = s.rsplit_once('=').ok_or_else(bad)?;
    if function.is_empty() || function.contains([' ', '\t', '\n', '\r', '\0']) {
        return Err(bad());
    }
    let nums: Vec<u64> = rest
        .split(':')
        .map(|n| n.parse::<u64>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let mut policy = RetryPolicy::new(
        u32::try_from(nums[0]).map_err(|_| bad())?,
        polygear::protocol::admin::DEFAULT_BACKOFF,
    );
    match nums[1..] {
        [] => {}
        [b] => policy.backoff = Duration::from_millis(b),
        [b, m] => {
            policy.backoff = Duration::from_millis(b);
            policy.max_delay = Duration::from_millis(m);
        }
        _ => return Err(bad()),
    }
    Ok((function.to_string(), policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_flags_parse() {
        let (f, p) = parse_retry_flag("img.resize=3").unwrap();
        assert_eq!(f, "img.resize");
        assert_eq!(p, RetryPolicy::new(3, Duration::from_secs(1)));
        let (_, p) = parse_retry_flag("f=5:200:3000").unwrap();
        assert_eq!(
            (p.max_attempts, p.backoff, p.max_delay),
            (5, Duration::from_millis(200), Duration::from_secs(3))
        );
        for bad in ["f", "=3", "f=", "f=x", "f=1:2:3:4", "f=99999999999"] {
            assert!(parse_retry_flag(bad).is_err(), "{bad}");
        }
    }
}
