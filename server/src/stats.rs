//! What the server counts for `/metrics` and the dashboard, kept where it is
//! cheap to count and read without HTTP:
//!
//! * per function ([`FuncStats`], inside the function's record in
//!   `state/functions.rs`): submissions per priority, ends per [`Outcome`],
//!   the queue-wait and run-time histograms — integer adds on the job's path,
//!   no name lookup, no formatting;
//! * server-wide ([`ServerStats`], in the state): totals, the recent failures
//!   and a ring of per-[`SAMPLE_EVERY`] samples for the dashboard's charts;
//! * the durable queue's commits ([`CommitStats`], in `Shared`, written by
//!   the store's thread).
//!
//! Readers copy everything under the state lock into a [`Snapshot`]
//! (gauges such as queue lengths and workers are read there, never
//! maintained twice) and format it after the lock is released.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;

use crate::state::State;
use crate::wire::HandleBuf;

/// Upper bounds (nanoseconds) of the latency histograms' buckets:
/// 1 ms … 5 min, +Inf implied.
pub(crate) const SECONDS_BOUNDS: [u64; 16] = [
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
    300_000_000_000,
];

/// Upper bounds of the commit batch size histogram's buckets (operations).
pub(crate) const BATCH_BOUNDS: [u64; 12] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 20000];

/// A fixed-bucket histogram of integers (nanoseconds or counts): one
/// comparison per bucket up to the hit and two adds per observation.
#[derive(Clone, Debug)]
pub(crate) struct Histogram<const N: usize> {
    bounds: &'static [u64; N],
    /// Observations per bucket (not cumulative); `counts[N]` is above the last bound.
    counts: [u64; N],
    over: u64,
    sum: u64,
}

impl<const N: usize> Histogram<N> {
    pub(crate) const fn new(bounds: &'static [u64; N]) -> Self {
        Histogram {
            bounds,
            counts: [0; N],
            over: 0,
            sum: 0,
        }
    }

    pub(crate) fn observe(&mut self, v: u64) {
        self.sum = self.sum.saturating_add(v);
        match self.bounds.iter().position(|&b| v <= b) {
            Some(i) => self.counts[i] += 1,
            None => self.over += 1,
        }
    }

    pub(crate) fn observe_duration(&mut self, d: Duration) {
        self.observe(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.over
    }

    pub(crate) fn sum(&self) -> u64 {
        self.sum
    }

    /// (upper bound divided by `divisor`, observations in the bucket) per
    /// bucket, `f64::MAX` (+Inf) last: what `prometheus-client` encodes (it
    /// makes the counts cumulative).
    pub(crate) fn buckets(&self, divisor: f64) -> Vec<(f64, u64)> {
        let mut v: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .zip(self.counts.iter())
            .map(|(&b, &c)| (b as f64 / divisor, c))
            .collect();
        v.push((f64::MAX, self.over));
        v
    }
}

/// A latency histogram in nanoseconds.
pub(crate) type Latency = Histogram<16>;

pub(crate) fn latency() -> Latency {
    Histogram::new(&SECONDS_BOUNDS)
}

/// How a job ended (`outcome` label of `polygear_jobs_total`); its
/// discriminant is its index in [`FuncStats::outcomes`] and [`Outcome::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// WORK_COMPLETE.
    Complete,
    /// WORK_FAIL.
    Fail,
    /// WORK_EXCEPTION.
    Exception,
    /// The worker overran its CAN_DO_TIMEOUT (the job failed).
    Timeout,
    /// Its workers vanished more than `--job-retries` times.
    RetriesExhausted,
    /// Cancelled (admin `cancel job`, dashboard).
    Cancelled,
    /// Nobody waited for it any more (foreground client gone, refused by
    /// the queue) and it was reaped.
    Abandoned,
    /// A shared queue's lease was lost: another server owns it now.
    LeaseLost,
}

impl Outcome {
    /// Every outcome, in discriminant order.
    pub(crate) const ALL: [Outcome; 8] = [
        Outcome::Complete,
        Outcome::Fail,
        Outcome::Exception,
        Outcome::Timeout,
        Outcome::RetriesExhausted,
        Outcome::Cancelled,
        Outcome::Abandoned,
        Outcome::LeaseLost,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Fail => "fail",
            Outcome::Exception => "exception",
            Outcome::Timeout => "timeout",
            Outcome::RetriesExhausted => "retries_exhausted",
            Outcome::Cancelled => "cancelled",
            Outcome::Abandoned => "abandoned",
            Outcome::LeaseLost => "lease_lost",
        }
    }

    fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::Fail | Outcome::Exception | Outcome::Timeout | Outcome::RetriesExhausted
        )
    }
}

/// Priority label values, in the state's order (0 = high).
pub(crate) const PRIORITIES: [&str; 3] = ["high", "normal", "low"];

/// Counters of one function (reset when the function is forgotten or dropped).
#[derive(Clone, Debug)]
pub(crate) struct FuncStats {
    pub submitted: [u64; 3],
    pub outcomes: [u64; Outcome::ALL.len()],
    /// Submit (or epoch due, or requeue) → handed to a worker.
    pub queue_wait: Latency,
    /// Handed to a worker → finished.
    pub run: Latency,
}

impl Default for FuncStats {
    fn default() -> Self {
        FuncStats {
            submitted: [0; 3],
            outcomes: [0; Outcome::ALL.len()],
            queue_wait: latency(),
            run: latency(),
        }
    }
}

/// One WORK_FAIL / WORK_EXCEPTION (or timeout) kept for the dashboard.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub unix_ms: u64,
    pub function: Bytes,
    pub handle: u64,
    pub outcome: Outcome,
    /// The exception's data (cut at [`FAILURE_MESSAGE_MAX`] bytes).
    pub message: Bytes,
}

/// Failures kept.
pub(crate) const RECENT_FAILURES: usize = 50;
/// Bytes of an exception message kept.
pub(crate) const FAILURE_MESSAGE_MAX: usize = 512;
/// Interval of the dashboard's samples.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Samples kept (10 minutes).
pub(crate) const SAMPLES: usize = 120;

/// Server-wide running totals (monotonic), sampled into [`Sample`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub submitted: u64,
    pub completed: u64,
    pub failed: u64,
    pub assigned: u64,
    pub wait_ns: u64,
    pub finished_running: u64,
    pub run_ns: u64,
}

/// One interval of the dashboard's charts.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct Sample {
    /// End of the interval, unix milliseconds.
    pub t: u64,
    pub submitted: u64,
    pub completed: u64,
    pub failed: u64,
    /// Mean queue wait of the jobs handed out in the interval (ms).
    pub wait_ms: f64,
    /// Mean run time of the jobs that finished in the interval (ms).
    pub run_ms: f64,
    /// Jobs queued at the end of the interval.
    pub queued: u64,
}

/// Server-wide statistics kept in the state.
#[derive(Debug, Default)]
pub(crate) struct ServerStats {
    pub totals: Totals,
    pub failures: VecDeque<Failure>,
    last: Totals,
    pub samples: VecDeque<Sample>,
}

impl ServerStats {
    /// Closes an interval: the deltas since the last sample become one.
    pub(crate) fn sample(&mut self, unix_ms: u64, queued: u64) {
        let (t, l) = (self.totals, self.last);
        let mean = |ns: u64, n: u64| {
            if n == 0 {
                0.0
            } else {
                ns as f64 / n as f64 / 1e6
            }
        };
        let s = Sample {
            t: unix_ms,
            submitted: t.submitted - l.submitted,
            completed: t.completed - l.completed,
            failed: t.failed - l.failed,
            wait_ms: mean(t.wait_ns - l.wait_ns, t.assigned - l.assigned),
            run_ms: mean(t.run_ns - l.run_ns, t.finished_running - l.finished_running),
            queued,
        };
        self.last = t;
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl State {
    /// A job of function `fid` was created at priority `prio`.
    pub(crate) fn count_submitted(&mut self, fid: u32, prio: u8) {
        self.funcs[fid].stats.submitted[(prio as usize).min(2)] += 1;
        self.stats.totals.submitted += 1;
    }

    /// A job of `fid` waited `wait` in its queue before a worker got it.
    pub(crate) fn count_assigned(&mut self, fid: u32, wait: Duration) {
        self.funcs[fid].stats.queue_wait.observe_duration(wait);
        let t = &mut self.stats.totals;
        t.assigned += 1;
        t.wait_ns = t.wait_ns.saturating_add(wait.as_nanos() as u64);
    }

    /// Job `h` of `fid` ended with `outcome`, after running for `ran` if a
    /// worker held it; `message` is an exception's data.
    pub(crate) fn count_end(
        &mut self,
        fid: u32,
        h: u64,
        outcome: Outcome,
        ran: Option<Duration>,
        message: &[u8],
    ) {
        let f = &mut self.funcs[fid];
        f.stats.outcomes[outcome.index()] += 1;
        let t = &mut self.stats.totals;
        if let Some(d) = ran {
            f.stats.run.observe_duration(d);
            t.finished_running += 1;
            t.run_ns = t.run_ns.saturating_add(d.as_nanos() as u64);
        }
        if outcome == Outcome::Complete {
            t.completed += 1;
        } else if outcome.is_failure() {
            t.failed += 1;
            let function = f.name.clone();
            let failures = &mut self.stats.failures;
            if failures.len() == RECENT_FAILURES {
                failures.pop_front();
            }
            failures.push_back(Failure {
                unix_ms: unix_ms(),
                function,
                handle: h,
                outcome,
                message: Bytes::copy_from_slice(&message[..message.len().min(FAILURE_MESSAGE_MAX)]),
            });
        }
    }

    /// Closes a dashboard sample (called every [`SAMPLE_EVERY`]).
    pub(crate) fn take_sample(&mut self) {
        let queued = self
            .funcs
            .iter()
            .map(|f| f.waiting.iter().sum::<u64>())
            .sum();
        self.stats.sample(unix_ms(), queued);
    }
}

/// The durable queue's group commits, written by the store's thread.
#[derive(Debug)]
pub(crate) struct CommitStats {
    inner: Mutex<(Latency, Histogram<12>)>,
}

impl Default for CommitStats {
    fn default() -> Self {
        CommitStats {
            inner: Mutex::new((latency(), Histogram::new(&BATCH_BOUNDS))),
        }
    }
}

impl CommitStats {
    /// One commit of `ops` inserts and deletes took `took`.
    pub(crate) fn observe(&self, took: Duration, ops: usize) {
        let mut g = self.inner.lock();
        g.0.observe_duration(took);
        g.1.observe(ops as u64);
    }

    pub(crate) fn get(&self) -> (Latency, Histogram<12>) {
        self.inner.lock().clone()
    }
}

// ------------------------------------------------------------- snapshots

/// One function as the metrics and the dashboard see it.
#[derive(Clone, Debug)]
pub(crate) struct FuncSnapshot {
    pub name: String,
    pub queued: [u64; 3],
    pub running: u64,
    /// Connections registered for it.
    pub workers: u64,
    pub stats: FuncStats,
}

/// One connection that registered functions (a worker).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct WorkerSnapshot {
    pub fd: i64,
    pub client_id: String,
    pub address: String,
    pub functions: Vec<String>,
    pub running: usize,
}

/// A failure, formatted.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct FailureSnapshot {
    pub time_ms: u64,
    pub function: String,
    pub handle: String,
    pub outcome: &'static str,
    pub message: String,
}

/// Everything read under the state lock for one scrape or status poll.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub functions: Vec<FuncSnapshot>,
    /// Functions left out of `functions` (beyond the limit asked for).
    pub functions_omitted: usize,
    pub workers: Vec<WorkerSnapshot>,
    pub workers_omitted: usize,
    pub connections: u64,
    pub jobs: u64,
    pub failures: Vec<FailureSnapshot>,
    pub samples: Vec<Sample>,
    pub totals: Totals,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl State {
    /// Copies what the metrics and the dashboard show. `max_functions` and
    /// `max_workers` bound the time under the lock (0 = all); `detail`
    /// adds workers, failures and samples (the dashboard's).
    pub(crate) fn snapshot(
        &self,
        max_functions: usize,
        max_workers: usize,
        detail: bool,
    ) -> Snapshot {
        let limit = |n: usize| if n == 0 { usize::MAX } else { n };
        let functions: Vec<FuncSnapshot> = self
            .funcs
            .iter()
            .take(limit(max_functions))
            .map(|f| FuncSnapshot {
                name: lossy(&f.name),
                queued: f.waiting,
                running: f.running,
                workers: f.workers.len() as u64,
                stats: f.stats.clone(),
            })
            .collect();
        let functions_omitted = self.funcs.len().saturating_sub(functions.len());
        let mut workers = Vec::new();
        let mut workers_omitted = 0;
        let mut failures = Vec::new();
        let mut samples = Vec::new();
        if detail {
            let mut peers: Vec<_> = self
                .peers
                .values()
                .filter(|p| p.abilities.funcs().next().is_some() || !p.holding.is_empty())
                .collect();
            peers.sort_by_key(|p| p.fd);
            workers_omitted = peers.len().saturating_sub(limit(max_workers));
            workers = peers
                .into_iter()
                .take(limit(max_workers))
                .map(|p| WorkerSnapshot {
                    fd: p.fd,
                    client_id: lossy(&p.client_id),
                    address: p.ip.clone(),
                    functions: p
                        .abilities
                        .funcs()
                        .take(100)
                        .map(|fid| lossy(&self.funcs[fid].name))
                        .collect(),
                    running: p.holding.len(),
                })
                .collect();
            failures = self
                .stats
                .failures
                .iter()
                .rev()
                .map(|f| FailureSnapshot {
                    time_ms: f.unix_ms,
                    function: lossy(&f.function),
                    handle: lossy(&HandleBuf::new(&self.prefix, f.handle)),
                    outcome: f.outcome.label(),
                    message: lossy(&f.message),
                })
                .collect();
            samples = self.stats.samples.iter().cloned().collect();
        }
        Snapshot {
            functions,
            functions_omitted,
            workers,
            workers_omitted,
            connections: self.peers.len() as u64,
            jobs: self.jobs.len() as u64,
            failures,
            samples,
            totals: self.stats.totals,
        }
    }
}

// ------------------------------------------------------------- actions

/// A queued job as the dashboard lists it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct QueuedJob {
    pub handle: String,
    pub priority: &'static str,
    pub unique: String,
    pub data_bytes: usize,
    pub background: bool,
    pub durable: bool,
    pub waiting_ms: u64,
}

/// Why a dashboard action was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ActionError {
    #[error("no such function")]
    NoSuchFunction,
    #[error("no such job")]
    NoSuchJob,
    #[error("the job is running: only a queued job can be cancelled")]
    Running,
    #[error("the function has jobs or workers: only an empty function can be dropped")]
    FunctionInUse,
}

impl State {
    /// The first `limit` queued jobs of `function` (high, normal, then low).
    pub(crate) fn queued_jobs(
        &self,
        function: &[u8],
        limit: usize,
    ) -> Result<Vec<QueuedJob>, ActionError> {
        let fid = self
            .find_func(function)
            .ok_or(ActionError::NoSuchFunction)?;
        let now = Instant::now();
        let f = &self.funcs[fid];
        let mut out = Vec::new();
        for (prio, q) in f.queues.iter().enumerate() {
            for h in q {
                if out.len() >= limit {
                    return Ok(out);
                }
                let Some(j) = self.jobs.get(h).filter(|j| !j.ignore && !j.running()) else {
                    continue;
                };
                let unique = j.unique();
                out.push(QueuedJob {
                    handle: lossy(&HandleBuf::new(&self.prefix, *h)),
                    priority: PRIORITIES[prio],
                    unique: lossy(&unique[..unique.len().min(64)]),
                    data_bytes: j.data().len(),
                    background: j.background,
                    durable: j.durable != 0,
                    waiting_ms: now.saturating_duration_since(j.since).as_millis() as u64,
                });
            }
        }
        Ok(out)
    }

    /// Cancels the queued (not running) job `handle`: it leaves its queue
    /// and the durable store, its clients get WORK_FAIL.
    pub(crate) fn cancel_queued(&mut self, handle: &[u8]) -> Result<(), ActionError> {
        let h = crate::wire::parse_handle(&self.prefix, handle).ok_or(ActionError::NoSuchJob)?;
        let job = self
            .jobs
            .get(&h)
            .filter(|j| !j.ignore)
            .ok_or(ActionError::NoSuchJob)?;
        if job.running() {
            return Err(ActionError::Running);
        }
        let (fid, prio) = (job.func, job.prio as usize);
        let q = &mut self.funcs[fid].queues[prio];
        if let Some(i) = q.iter().position(|&x| x == h) {
            q.remove(i);
        }
        self.cancel_now(h);
        Ok(())
    }

    /// Drops function `name` (ASCII case ignored, exact name preferred) if
    /// it has no job and no worker (admin `drop function`).
    pub(crate) fn drop_function(&mut self, name: &[u8]) -> Result<(), ActionError> {
        let fid = self
            .funcs
            .find_ignore_case(name)
            .ok_or(ActionError::NoSuchFunction)?;
        let f = &self.funcs[fid];
        if !f.workers.is_empty() || f.total > 0 {
            return Err(ActionError::FunctionInUse);
        }
        self.funcs.remove(fid);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    #[test]
    fn outcome_discriminants_index_all() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i, "{o:?}");
        }
    }
}
