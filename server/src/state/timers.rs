//! Deadlines: the CAN_DO_TIMEOUT of a running job, the time of a delayed
//! (epoch) job, and the end of a worker's wait for a job (a GRAB that found
//! none). All of a server's deadlines sit in one ordered map behind the
//! state lock and are fired by one task ([`run`]) that sleeps until the
//! earliest one, instead of one task per deadline. Kept apart from the
//! lifecycle because it is about *when*; what firing means is
//! [`super::lifecycle`]'s business.
//!
//! A job has at most one pending timer (a delayed job is not running, a
//! running one is not delayed). Arming a job's timer replaces the previous
//! one and a job that ends or goes back to its queue disarms it, so the map
//! only holds live deadlines; firing still checks the job (and, for a
//! timeout, its assignment generation), so a late timer can do no harm.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{ConnId, State};
use crate::index::{shrink, IntMap};
use crate::Shared;

/// Deadlines fired per lock acquisition (the task then lets others take it).
const BATCH: usize = 512;
/// Deadlines further away are treated as this far (as `tokio::time::sleep`
/// does), so the instant arithmetic cannot overflow.
const FAR_FUTURE: Duration = Duration::from_secs(86400 * 365 * 30);

/// What to do when a deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerEvent {
    /// Worker `worker` has held assignment `gen` of job `job` for its whole
    /// CAN_DO_TIMEOUT.
    JobTimeout { job: u64, worker: ConnId, gen: u32 },
    /// Delayed job `job` reached its epoch time.
    EpochDue { job: u64 },
    /// The shared queue's lease may have run out (one pending at a time).
    LeaseDue,
}

/// The key of the lease timer among the jobs' (no job has this handle).
const LEASE_KEY: u64 = u64::MAX;

impl TimerEvent {
    fn job(&self) -> u64 {
        match *self {
            TimerEvent::JobTimeout { job, .. } | TimerEvent::EpochDue { job } => job,
            TimerEvent::LeaseDue => LEASE_KEY,
        }
    }
}

/// Deadline, then insertion order (unique).
type Key = (Instant, u64);

/// The pending deadlines of one server.
pub(crate) struct Timers {
    due: BTreeMap<Key, TimerEvent>,
    /// The pending timer of each job that has one.
    by_job: IntMap<u64, Key>,
    next_id: u64,
    /// Waiting GRABs (deadline, worker, entry id) in arrival order: they all
    /// wait equally long, so the front is the earliest. An entry whose GRAB
    /// got a job stays until its deadline and is then skipped.
    grabs: VecDeque<(Instant, ConnId, u64)>,
    next_grab: u64,
    /// Wakes the timer task when the earliest deadline moves closer.
    wake: Arc<Notify>,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            due: BTreeMap::new(),
            by_job: IntMap::default(),
            next_id: 0,
            grabs: VecDeque::new(),
            next_grab: 0,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Schedules `ev` to fire `after` from now, replacing the pending timer
    /// of the same job if any.
    pub(crate) fn arm(&mut self, after: Duration, ev: TimerEvent) {
        let at = Instant::now() + after.min(FAR_FUTURE);
        let key = (at, self.next_id);
        self.next_id += 1;
        if let Some(old) = self.by_job.insert(ev.job(), key) {
            self.due.remove(&old);
        }
        let earliest = self.due.first_key_value().is_none_or(|(k, _)| key < *k);
        self.due.insert(key, ev);
        if earliest {
            // Stores a permit if the task is busy, so the wake-up is not lost.
            self.wake.notify_one();
        }
    }

    /// Lists worker `cid`'s GRAB as waiting `after` from now; returns its
    /// entry id.
    pub(crate) fn add_grab(&mut self, after: Duration, cid: ConnId) -> u64 {
        let at = Instant::now() + after.min(FAR_FUTURE);
        let id = self.next_grab;
        self.next_grab += 1;
        if self.grabs.is_empty() && self.due.first_key_value().is_none_or(|(k, _)| at < k.0) {
            self.wake.notify_one();
        }
        self.grabs.push_back((at, cid, id));
        id
    }

    /// Removes and returns the earliest waiting GRAB whose wait ran out at `now`.
    fn pop_grab_due(&mut self, now: Instant) -> Option<(ConnId, u64)> {
        let &(at, cid, id) = self.grabs.front()?;
        if at > now {
            return None;
        }
        self.grabs.pop_front();
        if self.grabs.is_empty() && self.grabs.capacity() > 1024 {
            self.grabs.shrink_to(64);
        }
        Some((cid, id))
    }

    /// Drops job `job`'s pending timer (it ended or went back to its queue).
    pub(crate) fn disarm(&mut self, job: u64) {
        if self.by_job.is_empty() {
            return;
        }
        if let Some(key) = self.by_job.remove(&job) {
            self.due.remove(&key);
            shrink(&mut self.by_job);
        }
    }

    /// Removes and returns the earliest event due at `now`.
    fn pop_due(&mut self, now: Instant) -> Option<TimerEvent> {
        let first = self.due.first_entry()?;
        if first.key().0 > now {
            return None;
        }
        let ev = first.remove();
        self.by_job.remove(&ev.job());
        shrink(&mut self.by_job);
        Some(ev)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let job = self.due.first_key_value().map(|(k, _)| k.0);
        let grab = self.grabs.front().map(|g| g.0);
        match (job, grab) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl State {
    /// Fires up to [`BATCH`] timers due at `now`; returns the next deadline
    /// (already passed if more are due).
    pub(crate) fn fire_timers(&mut self, now: Instant) -> Option<Instant> {
        for _ in 0..BATCH {
            match self.timers.pop_due(now) {
                Some(TimerEvent::JobTimeout { job, worker, gen }) => {
                    self.job_timed_out(job, worker, gen)
                }
                Some(TimerEvent::EpochDue { job }) => self.epoch_due(job),
                Some(TimerEvent::LeaseDue) => self.check_lease(),
                None => match self.timers.pop_grab_due(now) {
                    Some((cid, id)) => self.end_grab_wait(cid, Some(id)),
                    None => break,
                },
            }
        }
        self.timers.next_deadline()
    }
}

/// The server's timer task: sleeps until the earliest deadline (or until an
/// earlier one is armed), fires everything due, and exits when the server stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let wake = shared.state.lock().timers.wake.clone();
    loop {
        let next = shared.with_state(|st| st.fire_timers(Instant::now()));
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = wake.notified() => {}
            _ = shared.stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(job: u64) -> TimerEvent {
        TimerEvent::EpochDue { job }
    }

    #[test]
    fn fires_in_deadline_order_and_keeps_one_timer_per_job() {
        let mut t = Timers::new();
        t.arm(Duration::from_millis(300), ev(1));
        t.arm(Duration::from_millis(100), ev(2));
        t.arm(Duration::from_millis(200), ev(3));
        // Re-arming job 1 replaces its timer; disarming job 3 drops it.
        t.arm(Duration::from_millis(50), ev(1));
        t.disarm(3);
        assert_eq!(t.due.len(), 2);
        let now = Instant::now() + Duration::from_secs(1);
        assert_eq!(t.pop_due(now), Some(ev(1)));
        assert_eq!(t.pop_due(now), Some(ev(2)));
        assert_eq!(t.pop_due(now), None);
        assert!(t.by_job.is_empty() && t.next_deadline().is_none());
        t.disarm(2); // already fired: nothing to do
    }

    #[test]
    fn not_due_before_its_deadline() {
        let mut t = Timers::new();
        t.arm(Duration::from_secs(10), ev(1));
        assert_eq!(t.pop_due(Instant::now()), None);
        assert!(t.next_deadline().is_some());
    }

    #[test]
    fn far_deadlines_do_not_overflow() {
        let mut t = Timers::new();
        t.arm(Duration::from_secs(i64::MAX as u64), ev(1));
        t.arm(Duration::MAX, ev(2));
        assert_eq!(t.due.len(), 2);
    }
}
