//! Scheduling: workers and their abilities (CAN_DO, CANT_DO,
//! RESET_ABILITIES), sleeping and waking (PRE_SLEEP, NOOP) and handing out
//! jobs (GRAB_JOB*). Separate from submission (which only fills queues) and
//! from the lifecycle (what happens once a job is out of the queue).
//!
//! Known costs, tracked elsewhere: duplicate CAN_DO registrations are removed
//! one `Vec::remove` at a time (quadratic in the duplicates), and a GRAB scans
//! the worker's abilities (O(functions of the worker)).

use std::time::Duration;

use polygear::protocol::PacketType;

use super::timers::TimerEvent;
use super::{Ability, ConnId, State};
use crate::wire::{put_pkt, HandleBuf};

impl State {
    /// Whether function `f` has a job waiting in a queue.
    pub(super) fn has_runnable(&self, f: u32) -> bool {
        self.funcs
            .get(f as usize)
            .is_some_and(|f| f.queues.iter().any(|q| !q.is_empty()))
    }

    /// NOOPs sleeping workers that can do `fid` (at most `worker_wakeup`, 0 = all).
    pub(super) fn wake(&mut self, fid: u32) {
        let limit = self.cfg.worker_wakeup;
        let State { funcs, peers, .. } = self;
        let f = &mut funcs[fid as usize];
        let n = f.workers.len();
        if n == 0 {
            return;
        }
        let mut woken = 0;
        for i in 0..n {
            let idx = (f.wake_pos + i) % n;
            let cid = f.workers[idx];
            if let Some(c) = peers.get_mut(&cid) {
                if c.sleeping && !c.noop_sent {
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

    /// PRE_SLEEP: NOOP at once if work is waiting, else mark the worker asleep.
    pub(super) fn pre_sleep(&mut self, cid: ConnId) {
        let runnable = match self.peers.get(&cid) {
            Some(c) => c.abilities.iter().any(|a| self.has_runnable(a.func)),
            None => return,
        };
        if let Some(c) = self.peers.get_mut(&cid) {
            if runnable {
                c.out.write(|b| put_pkt(b, PacketType::Noop, &[]));
            } else {
                c.sleeping = true;
                c.noop_sent = false;
            }
        }
    }

    /// CAN_DO / CAN_DO_TIMEOUT: one more registration (duplicates are kept).
    pub(super) fn can_do(&mut self, cid: ConnId, function: &[u8], timeout_ms: u32) {
        let fid = self.func_id(function);
        if let Some(c) = self.peers.get_mut(&cid) {
            c.abilities.push(Ability {
                func: fid,
                timeout_ms,
            });
            self.funcs[fid as usize].workers.push(cid);
        }
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
        let mut removed = Vec::new();
        c.abilities.retain(|a| {
            let hit = fid.is_none_or(|f| a.func == f);
            if hit {
                removed.push(a.func);
            }
            !hit
        });
        let held: Vec<u64> = c.holding.clone();
        for f in &removed {
            let workers = &mut self.funcs[*f as usize].workers;
            if let Some(p) = workers.iter().position(|&w| w == cid) {
                workers.remove(p);
            }
        }
        for h in held {
            let matches = self
                .jobs
                .get(&h)
                .is_some_and(|j| fid.is_none_or(|f| j.func == f));
            if matches {
                if let Some(c) = self.peers.get_mut(&cid) {
                    c.holding.retain(|&x| x != h);
                }
                self.requeue_lost(h, cid);
            }
        }
    }

    /// GRAB_JOB*: assigns the best waiting job (JOB_ASSIGN* in the requested
    /// form) or answers NO_JOB; arms the CAN_DO_TIMEOUT timer if any.
    pub(super) fn grab(&mut self, cid: ConnId, kind: PacketType) {
        let found = self.take_job(cid);
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
        peer.sleeping = false;
        peer.noop_sent = false;
        let Some((h, timeout_ms)) = found else {
            peer.out.write(|b| put_pkt(b, PacketType::NoJob, &[]));
            return;
        };
        let Some(job) = jobs.get_mut(&h) else { return };
        job.worker = cid;
        job.assign_gen = job.assign_gen.wrapping_add(1);
        let f = &mut funcs[job.func as usize];
        f.waiting[job.prio as usize] = f.waiting[job.prio as usize].saturating_sub(1);
        f.running += 1;
        peer.holding.push(h);
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
    }

    /// Pops the best job for this worker: HIGH before NORMAL before LOW across
    /// all its functions, FIFO within a priority, functions rotated round-robin.
    fn take_job(&mut self, cid: ConnId) -> Option<(u64, u32)> {
        let mut reaped = Vec::new();
        let mut found = None;
        {
            let State {
                peers, funcs, jobs, ..
            } = self;
            let peer = peers.get_mut(&cid)?;
            let n = peer.abilities.len();
            'search: for prio in 0..3 {
                for i in 0..n {
                    let idx = (peer.rr + i) % n;
                    let ab = &peer.abilities[idx];
                    let f = &mut funcs[ab.func as usize];
                    while let Some(h) = f.queues[prio].pop_front() {
                        let Some(job) = jobs.get(&h) else { continue };
                        if job.ignore {
                            // Abandoned or cancelled while waiting: reap it.
                            reaped.push(h);
                            continue;
                        }
                        peer.rr = idx + 1;
                        found = Some((h, ab.timeout_ms));
                        break 'search;
                    }
                }
            }
        }
        for h in reaped {
            self.discard(h);
        }
        found
    }
}
