//! Fencing for a queue table shared by several servers: this server may hand
//! out the stored jobs it holds only while its lease lasts. When the lease
//! runs out without a renewal (database unreachable, partition), the waiting
//! stored jobs are parked (taken out of their queues, not handed out; their
//! rows stay) and new background submissions are refused. A later renewal
//! that finds the lease still this server's puts the parked jobs back; one
//! that finds it lapsed (other servers may have claimed the rows) drops them,
//! and the queue thread re-reads the rows that are still this server's.

use std::time::Instant;

use super::timers::TimerEvent;
use super::State;
use crate::index::IntMap;

impl State {
    /// The queue thread renewed the lease until `until`.
    pub(crate) fn lease_renewed(&mut self, until: Instant) {
        self.lease_until = Some(until);
        let after = until.saturating_duration_since(Instant::now());
        self.timers.arm(after, TimerEvent::LeaseDue);
        if self.fenced {
            self.fenced = false;
            tracing::info!(
                "the shared queue lease is renewed: handing out {} parked stored jobs again",
                self.parked.len()
            );
            let mut parked = std::mem::take(&mut self.parked);
            parked.sort_unstable(); // handles grow: creation order
            for h in parked {
                let Some(job) = self.jobs.get(&h) else {
                    continue;
                };
                let (fid, prio) = (job.func, job.prio as usize);
                self.enqueue(fid, prio, h, false);
                self.wake(fid);
            }
        }
    }

    /// Fences this server if its lease has run out (called before handing
    /// out jobs, before storing a submission and when the lease timer fires:
    /// it does nothing if the lease was renewed meanwhile).
    pub(super) fn check_lease(&mut self) {
        let expired = self
            .lease_until
            .is_some_and(|until| Instant::now() >= until);
        if self.fenced || !expired {
            return;
        }
        self.fenced = true;
        self.park_waiting_stored();
        tracing::warn!(
            "the shared queue lease ran out (database unreachable?): {} stored jobs parked, \
             background submissions refused until it is renewed",
            self.parked.len()
        );
    }

    /// Whether the lease ran out (stored jobs are not handed out).
    pub(crate) fn fenced(&self) -> bool {
        self.fenced
    }

    /// Whether background jobs may be stored and handed out now.
    pub(crate) fn holds_lease(&mut self) -> bool {
        self.check_lease();
        !self.fenced
    }

    /// The lease had lapsed in the database: other servers may own this
    /// server's rows now, so every waiting or delayed stored job is dropped from memory
    /// (not running ones: they finish, and their delete is a no-op if the
    /// row was claimed); the queue thread then restores the rows still ours.
    pub(crate) fn lease_lost(&mut self) {
        self.park_waiting_stored();
        // Delayed stored jobs (epoch time, a retry's backoff) too: another
        // server may have claimed their rows and run them.
        let delayed: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.durable != 0 && j.delayed && !j.running())
            .map(|(&h, _)| h)
            .collect();
        for h in std::mem::take(&mut self.parked).into_iter().chain(delayed) {
            self.forget_stored(h);
        }
    }

    /// Takes every waiting stored job out of its queue into `parked`.
    fn park_waiting_stored(&mut self) {
        let waiting: IntMap<u64, ()> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.durable != 0 && !j.running() && !j.delayed && !j.ignore)
            .map(|(&h, _)| (h, ()))
            .collect();
        if waiting.is_empty() {
            return;
        }
        for fid in 0..self.funcs.slots() {
            for q in self.funcs[fid].queues.iter_mut() {
                if !q.is_empty() {
                    q.retain(|h| !waiting.contains_key(h));
                }
            }
        }
        self.parked.extend(waiting.into_keys());
    }

    /// A stored job reached the head of a queue while fenced (a worker left
    /// it, or its epoch time came): parked instead of handed out.
    pub(super) fn park(&mut self, h: u64) {
        self.parked.push(h);
    }

    /// Drops job `h` from memory without deleting its row; a foreground
    /// client attached to it gets WORK_FAIL.
    fn forget_stored(&mut self, h: u64) {
        self.fail_clients(
            h,
            "this server lost its lease on the persistent queue to another server",
        );
        if let Some(job) = self.jobs.get_mut(&h) {
            job.durable = 0;
        }
        self.discard(h, crate::stats::Outcome::LeaseLost, b"");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{channel, Receiver};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use polygear::protocol::{Frame, Packet, PacketCodec};
    use tokio_util::codec::Decoder;

    use super::super::{ConnId, State};
    use crate::outbox::Outbox;
    use crate::queue::{Op, Persister, StoredJob};
    use crate::ServerConfig;

    /// A state with a keyed store (the ops it sends come out of the receiver),
    /// two stored jobs and a worker for them.
    fn setup() -> (State, Receiver<Op>, ConnId, Arc<Outbox>) {
        // A GRAB that finds nothing is answered at once (no waiting).
        let cfg = ServerConfig {
            grab_wait: Duration::ZERO,
            ..ServerConfig::default()
        };
        let mut st = State::new(Arc::new(cfg), Bytes::from_static(b"H:t"));
        let (tx, rx) = channel();
        st.persist = Some(Persister {
            tx,
            next_id: 1,
            keyed: true,
            generated: 0,
            generation: "test".into(),
        });
        let row = |u: &'static str| StoredJob {
            id: 0,
            function: Bytes::from_static(b"f"),
            unique: Bytes::from_static(u.as_bytes()),
            priority: 1,
            when: 0,
            reducer: Bytes::new(),
            data: Bytes::from_static(b"d"),
            handle: 0,
            retain: 0,
        };
        st.lease_renewed(Instant::now() + Duration::from_secs(60));
        assert_eq!(st.restore(vec![row("a"), row("b")]), 2);
        let out = Arc::new(Outbox::detached(1 << 20, &st.budget));
        let w = st.add_peer(out.clone(), 3, "127.0.0.1".into());
        st.handle_packet(
            w,
            Packet::CanDo {
                function: "f".into(),
            },
        );
        (st, rx, w, out)
    }

    /// Nothing but handle reservations was sent to the store.
    fn no_job_ops(rx: &Receiver<crate::queue::Op>) -> bool {
        rx.try_iter()
            .all(|op| matches!(op, crate::queue::Op::HandleFloor(_)))
    }

    /// GRAB_JOB_UNIQ on `w`: the unique handed out, or `None` for NO_JOB.
    fn grab(st: &mut State, w: ConnId, out: &Outbox) -> Option<Bytes> {
        st.handle_packet(w, Packet::GrabJobUniq);
        let mut buf = out.take_held();
        let mut codec = PacketCodec::new(1 << 20);
        let mut last = None;
        while let Some(Frame::Packet(_, p)) = codec.decode(&mut buf).unwrap() {
            last = Some(p);
        }
        match last {
            Some(Packet::JobAssignUniq { unique, .. }) => Some(unique),
            Some(Packet::NoJob) => None,
            other => panic!("GRAB answered {other:?}"),
        }
    }

    #[test]
    fn a_lease_that_runs_out_parks_stored_jobs_and_a_renewal_brings_them_back() {
        let (mut st, rx, w, out) = setup();
        st.lease_until = Some(Instant::now() - Duration::from_millis(1));
        assert_eq!(grab(&mut st, w, &out), None, "fenced: nothing handed out");
        assert!(st.fenced() && st.parked.len() == 2);
        st.lease_renewed(Instant::now() + Duration::from_secs(60));
        assert!(!st.fenced());
        assert_eq!(grab(&mut st, w, &out).as_deref(), Some(&b"a"[..]));
        assert_eq!(grab(&mut st, w, &out).as_deref(), Some(&b"b"[..]));
        assert!(no_job_ops(&rx), "nothing deleted from the store");
    }

    #[test]
    fn a_lapsed_lease_forgets_waiting_stored_jobs_without_deleting_their_rows() {
        let (mut st, rx, w, out) = setup();
        st.lease_lost();
        assert!(st.jobs.is_empty());
        assert!(no_job_ops(&rx), "rows kept for whoever owns them now");
        assert_eq!(grab(&mut st, w, &out), None);
    }
}
