//! Scheduling: workers and their abilities (CAN_DO, CANT_DO,
//! RESET_ABILITIES), sleeping and waking (PRE_SLEEP, NOOP) and handing out
//! jobs (GRAB_JOB*). Separate from submission (which only fills queues) and
//! from the lifecycle (what happens once a job is out of the queue).
//!
//! Costs: a duplicate CAN_DO only counts, a CANT_DO or a disconnect costs
//! O(1) per registration, and a GRAB or PRE_SLEEP is O(1) amortized,
//! whatever the number of functions a worker registered (see
//! [`super::abilities`]).

use std::time::Duration;

use polygear::protocol::PacketType;

use super::abilities::Ability;
use super::timers::TimerEvent;
use super::{ConnId, State};
use crate::stats::Outcome;
use crate::wire::{put_pkt, HandleBuf};

/// Longest function name accepted (gearmand's `GEARMAN_FUNCTION_MAX_SIZE`).
pub(crate) const MAX_FUNCTION_NAME: usize = 512;

/// A worker's GRABs that found no job and wait for one: a job submitted
/// meanwhile goes to the oldest at once, without a NOOP and a second GRAB;
/// at the end of the wait, or before any other reply to the worker, each is
/// answered NO_JOB. Several GRABs of a pipelining worker wait together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrabWait {
    /// The JOB_ASSIGN* form they asked for.
    kind: PacketType,
    /// How many wait.
    count: u32,
    /// The timer entry of the first (see [`super::timers::Timers::add_grab`]).
    entry: u64,
}

impl State {
    /// Whether function `f` has a job waiting in a queue.
    pub(super) fn has_runnable(&self, f: u32) -> bool {
        self.funcs[f].queues.iter().any(|q| !q.is_empty())
    }

    /// A job for `fid` is waiting: hands it to a worker whose GRAB waits
    /// for one, or NOOPs sleeping workers that can do `fid` (at most
    /// `worker_wakeup`, 0 = all).
    pub(super) fn wake(&mut self, fid: u32) {
        if self.funcs[fid].paused {
            return;
        }
        if self.grabs_waiting > 0 {
            if let Some(cid) = self.grab_waiting_for(fid) {
                self.serve_waiting_grab(cid);
                return;
            }
        }
        let limit = self.cfg.worker_wakeup;
        let State { funcs, peers, .. } = self;
        let f = &mut funcs[fid];
        let n = f.workers.len();
        if n == 0 {
            return;
        }
        let mut woken = 0;
        for i in 0..n {
            let idx = (f.wake_pos + i) % n;
            let cid = f.workers[idx];
            if let Some(c) = peers.get_mut(&cid) {
                if c.sleeping && !c.noop_sent && !c.draining {
                    c.noop_sent = true;
                    c.out.write(|b| put_pkt(b, PacketType::Noop, &[]));
                    woken += 1;
                    if limit > 0 && woken >= limit {
                        f.wake_pos = idx + 1;
                        break;
                    }
                }
            }
        }
    }

    /// A worker that can do `fid` whose GRAB waits for a job (taking turns
    /// like the NOOPs).
    pub(super) fn grab_waiting_for(&mut self, fid: u32) -> Option<ConnId> {
        let State { funcs, peers, .. } = self;
        let f = &mut funcs[fid];
        let n = f.workers.len();
        for i in 0..n {
            let idx = (f.wake_pos + i) % n;
            let cid = f.workers[idx];
            if peers
                .get(&cid)
                .is_some_and(|c| c.grab_waiting.is_some() && !c.draining)
            {
                f.wake_pos = idx + 1;
                return Some(cid);
            }
        }
        None
    }

    /// Whether a GRAB answered in form `kind` joins worker `cid`'s waiting
    /// GRABs (one of another form ends their wait first).
    pub(super) fn joins_grab_wait(&self, cid: ConnId, kind: PacketType) -> bool {
        self.peers
            .get(&cid)
            .and_then(|c| c.grab_waiting)
            .is_some_and(|w| w.kind == kind)
    }

    /// Ends worker `cid`'s wait for a job with a NO_JOB per waiting GRAB:
    /// the wait ran out (`entry` is the timer's, ignored if the GRABs got
    /// jobs since), or (`None`) the worker sent a request whose reply must
    /// follow the GRABs'.
    pub(crate) fn end_grab_wait(&mut self, cid: ConnId, entry: Option<u64>) {
        if self.grabs_waiting == 0 {
            return;
        }
        let Some(c) = self.peers.get_mut(&cid) else {
            return;
        };
        let count = match c.grab_waiting {
            Some(w) if entry.is_none_or(|e| e == w.entry) => w.count,
            _ => return,
        };
        c.grab_waiting = None;
        self.grabs_waiting -= 1;
        c.out.write(|b| {
            for _ in 0..count {
                put_pkt(b, PacketType::NoJob, &[]);
            }
        });
    }

    /// Puts job `h` in its function's queue (at the head for a job a worker
    /// lost) and lists the function ready for its workers if the queue was
    /// empty; the caller wakes a worker.
    pub(super) fn enqueue(&mut self, fid: u32, prio: usize, h: u64, front: bool) {
        let State { funcs, peers, .. } = self;
        let f = &mut funcs[fid];
        let was_empty = f.queues[prio].is_empty();
        if front {
            f.queues[prio].push_front(h);
        } else {
            f.queues[prio].push_back(h);
        }
        if was_empty {
            for w in &f.workers {
                if let Some(p) = peers.get_mut(w) {
                    p.abilities.mark_ready(fid, prio);
                }
            }
        }
    }

    /// PRE_SLEEP: NOOP at once if work is waiting, else mark the worker asleep.
    pub(super) fn pre_sleep(&mut self, cid: ConnId) {
        let runnable = (0..3).any(|prio| self.first_runnable(cid, prio).is_some());
        if let Some(c) = self.peers.get_mut(&cid) {
            if runnable {
                c.out.write(|b| put_pkt(b, PacketType::Noop, &[]));
            } else {
                c.sleeping = true;
                c.noop_sent = false;
            }
        }
    }

    /// The first of `cid`'s functions listed ready at `prio` whose queue has
    /// a job (functions found empty or paused are unlisted on the way;
    /// `resume` lists them again). None for a draining worker.
    fn first_runnable(&mut self, cid: ConnId, prio: usize) -> Option<u32> {
        let State { funcs, peers, .. } = self;
        let peer = peers.get_mut(&cid)?;
        if peer.draining {
            return None;
        }
        let abilities = &mut peer.abilities;
        loop {
            let fid = abilities.first_ready(prio)?;
            if !funcs[fid].paused && !funcs[fid].queues[prio].is_empty() {
                return Some(fid);
            }
            abilities.unlist_first(prio);
        }
    }

    /// CAN_DO / CAN_DO_TIMEOUT: registers `function` (a duplicate counts
    /// once more and takes the new timeout, like gearmand's).
    pub(super) fn can_do(&mut self, cid: ConnId, function: &[u8], timeout_ms: u32) {
        if function.len() > MAX_FUNCTION_NAME {
            self.metrics.refused += 1;
            self.reply_error(cid, "ARGUMENT_TOO_LARGE", &function_name_too_long(function));
            return;
        }
        let Some(c) = self.peers.get_mut(&cid) else {
            return;
        };
        if let Some(fid) = self.funcs.find(function) {
            if let Some(a) = c.abilities.get_mut(fid) {
                a.count = a.count.saturating_add(1);
                a.timeout_ms = timeout_ms;
                self.funcs[fid].registrations += 1;
                return;
            }
        }
        let limit = self.cfg.max_worker_functions;
        if limit > 0 && c.abilities.len() >= limit {
            self.metrics.refused += 1;
            self.reply_error(
                cid,
                "TOO_MANY_FUNCTIONS",
                &format!(
                    "This connection already registered {limit} functions (polygeard --max-worker-functions)"
                ),
            );
            return;
        }
        let fid = self.func_id(function);
        let State { funcs, peers, .. } = self;
        let f = &mut funcs[fid];
        let slot = f.workers.len();
        f.workers.push(cid);
        f.registrations += 1;
        let Some(c) = peers.get_mut(&cid) else {
            return;
        };
        c.abilities.insert(fid, timeout_ms, slot);
        for (prio, q) in f.queues.iter().enumerate() {
            if !q.is_empty() {
                c.abilities.mark_ready(fid, prio);
            }
        }
        self.funcs.touch(fid);
    }

    /// Removes registration `ab` of function `fid` from the function's
    /// worker list (O(1): the last worker takes its slot).
    pub(super) fn unregister(&mut self, fid: u32, ab: &Ability) {
        let State { funcs, peers, .. } = self;
        let f = &mut funcs[fid];
        f.registrations = f.registrations.saturating_sub(ab.count as u64);
        if ab.slot < f.workers.len() {
            f.workers.swap_remove(ab.slot);
            if let Some(&moved) = f.workers.get(ab.slot) {
                if let Some(a) = peers.get_mut(&moved).and_then(|p| p.abilities.get_mut(fid)) {
                    a.slot = ab.slot;
                }
            }
        }
        self.funcs.touch(fid);
    }

    /// CANT_DO (one function) or RESET_ABILITIES (`None`): unregister and
    /// requeue the jobs held for the affected functions.
    pub(super) fn cant_do(&mut self, cid: ConnId, function: Option<&[u8]>) {
        let fid = match function {
            Some(name) => match self.find_func(name) {
                Some(f) => Some(f),
                None => return,
            },
            None => None,
        };
        let Some(c) = self.peers.get_mut(&cid) else {
            return;
        };
        let removed: Vec<(u32, Ability)> = match fid {
            Some(f) => c.abilities.remove(f).map(|a| (f, a)).into_iter().collect(),
            None => c.abilities.take_all(),
        };
        let held: Vec<u64> = match fid {
            None => c.holding.keys().copied().collect(),
            Some(f) => {
                let jobs = &self.jobs;
                c.holding
                    .keys()
                    .copied()
                    .filter(|h| jobs.get(h).is_some_and(|j| j.func == f))
                    .collect()
            }
        };
        for (f, ab) in &removed {
            self.unregister(*f, ab);
        }
        let mut held = held;
        held.sort_unstable();
        for h in held {
            if let Some(c) = self.peers.get_mut(&cid) {
                c.holding.remove(&h);
            }
            self.requeue_lost(h, cid);
        }
    }

    /// GRAB_JOB*: assigns the best waiting job (JOB_ASSIGN* in the requested
    /// form) and arms its CAN_DO_TIMEOUT timer if any. With none waiting the
    /// GRAB waits up to `grab_wait` for one (see [`GrabWait`]) and is then
    /// answered NO_JOB; with `grab_wait` 0, at once (gearmand).
    pub(super) fn grab(&mut self, cid: ConnId, kind: PacketType) {
        let wait = self.cfg.grab_wait;
        let Some(peer) = self.peers.get_mut(&cid) else {
            return;
        };
        peer.sleeping = false;
        peer.noop_sent = false;
        if let Some(w) = &mut peer.grab_waiting {
            // Its GRABs wait because no job is there for it (a job queued
            // since would have gone to them): this one waits behind them.
            // (A GRAB of another form ended the wait before it came here.)
            w.count = w.count.saturating_add(1);
            return;
        }
        match self.take_job(cid) {
            Some((h, timeout_ms)) => self.assign(cid, kind, h, timeout_ms),
            None => {
                let State {
                    peers,
                    timers,
                    grabs_waiting,
                    ..
                } = self;
                let Some(peer) = peers.get_mut(&cid) else {
                    return;
                };
                if wait.is_zero() || peer.abilities.is_empty() || peer.draining {
                    peer.out.write(|b| put_pkt(b, PacketType::NoJob, &[]));
                } else {
                    let entry = timers.add_grab(wait, cid);
                    peer.grab_waiting = Some(GrabWait {
                        kind,
                        count: 1,
                        entry,
                    });
                    *grabs_waiting += 1;
                }
            }
        }
    }

    /// Answers worker `cid`'s oldest waiting GRAB with the best job for it,
    /// if there is one now.
    pub(super) fn serve_waiting_grab(&mut self, cid: ConnId) {
        let Some(w) = self.peers.get(&cid).and_then(|c| c.grab_waiting) else {
            return;
        };
        let Some((h, timeout_ms)) = self.take_job(cid) else {
            return;
        };
        if let Some(c) = self.peers.get_mut(&cid) {
            c.grab_waiting = (w.count > 1).then_some(GrabWait {
                count: w.count - 1,
                ..w
            });
            if c.grab_waiting.is_none() {
                self.grabs_waiting -= 1;
            }
        }
        self.assign(cid, w.kind, h, timeout_ms);
    }

    /// Hands job `h` to worker `cid` (JOB_ASSIGN* in form `kind`) and arms
    /// its CAN_DO_TIMEOUT timer if any.
    fn assign(&mut self, cid: ConnId, kind: PacketType, h: u64, timeout_ms: u32) {
        let State {
            jobs,
            peers,
            funcs,
            prefix,
            reducers,
            ..
        } = self;
        let Some(peer) = peers.get_mut(&cid) else {
            return;
        };
        let Some(job) = jobs.get_mut(&h) else { return };
        let now = std::time::Instant::now();
        let waited = now.saturating_duration_since(job.since);
        job.since = now;
        job.worker = cid;
        job.assign_gen = job.assign_gen.wrapping_add(1);
        let f = &mut funcs[job.func];
        f.waiting[job.prio as usize] = f.waiting[job.prio as usize].saturating_sub(1);
        f.running += 1;
        let fid = job.func;
        peer.holding.insert(h, ());
        let hb = HandleBuf::new(prefix, h);
        let fname = &f.name;
        let reducer = if kind == PacketType::JobAssignAll {
            reducers.get(&h)
        } else {
            None
        };
        peer.out.write(|b| match (kind, reducer) {
            (PacketType::JobAssign, _) => put_pkt(b, kind, &[&hb, fname, job.data()]),
            (PacketType::JobAssignAll, Some(r)) => {
                put_pkt(b, kind, &[&hb, fname, job.unique(), r, job.data()])
            }
            _ => put_pkt(
                b,
                PacketType::JobAssignUniq,
                &[&hb, fname, job.unique(), job.data()],
            ),
        });
        if timeout_ms > 0 {
            let ev = TimerEvent::JobTimeout {
                job: h,
                worker: cid,
                gen: job.assign_gen,
            };
            self.timers
                .arm(Duration::from_millis(timeout_ms as u64), ev);
        }
        self.count_assigned(fid, waited);
    }

    /// Pops the best job for this worker: HIGH before NORMAL before LOW across
    /// all its functions, FIFO within a priority, functions taking turns.
    fn take_job(&mut self, cid: ConnId) -> Option<(u64, u32)> {
        self.check_lease();
        let fenced = self.fenced;
        let mut parked = Vec::new();
        let mut reaped = Vec::new();
        let mut found = None;
        'search: for prio in 0..3 {
            while let Some(fid) = self.first_runnable(cid, prio) {
                let State {
                    peers, funcs, jobs, ..
                } = self;
                let abilities = &mut peers.get_mut(&cid)?.abilities;
                let q = &mut funcs[fid].queues[prio];
                while let Some(h) = q.pop_front() {
                    let Some(job) = jobs.get(&h) else { continue };
                    if job.ignore {
                        // Abandoned or cancelled while waiting: reap it.
                        reaped.push(h);
                        continue;
                    }
                    if fenced && job.durable != 0 {
                        // Back in a queue (a worker left it, its epoch came)
                        // after the lease ran out.
                        parked.push(h);
                        continue;
                    }
                    if q.is_empty() {
                        abilities.unlist_first(prio);
                    } else {
                        abilities.rotate_first(prio);
                    }
                    let timeout = abilities.get(fid).map_or(0, |a| a.timeout_ms);
                    found = Some((h, timeout));
                    break 'search;
                }
                abilities.unlist_first(prio);
            }
        }
        for h in reaped {
            self.discard(h, Outcome::Abandoned, b"");
        }
        for h in parked {
            self.park(h);
        }
        found
    }
}

/// The ERROR text for an over-long function name.
pub(crate) fn function_name_too_long(name: &[u8]) -> String {
    format!(
        "Function name of {} bytes is longer than the limit of {MAX_FUNCTION_NAME} bytes",
        name.len()
    )
}
