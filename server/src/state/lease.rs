//! Fencing for a queue table shared by several servers: this server may hand
//! out the stored jobs it holds only while its lease lasts. When the lease
//! runs out without a renewal (database unreachable, partition), the waiting
//! stored jobs are forgotten (their rows stay; a survivor may claim them) and
//! new background submissions are refused until a renewal succeeds. After a
//! lapse the queue thread re-reads the rows still held by this server.

use std::time::Instant;

use polygear::protocol::PacketType;

use super::timers::TimerEvent;
use super::State;
use crate::wire::put_pkt;

impl State {
    /// The queue thread renewed the lease until `until`.
    pub(crate) fn lease_renewed(&mut self, until: Instant) {
        self.lease_until = Some(until);
        self.fenced = false;
        let after = until.saturating_duration_since(Instant::now());
        self.timers.arm(after, TimerEvent::LeaseDue);
    }

    /// The lease timer fired: fence unless it was renewed meanwhile.
    pub(super) fn lease_due(&mut self) {
        self.check_lease();
    }

    /// Fences this server if its lease has run out (called before handing
    /// out jobs and when the lease timer fires).
    pub(super) fn check_lease(&mut self) {
        if self.fenced {
            return;
        }
        if self
            .lease_until
            .is_some_and(|until| Instant::now() >= until)
        {
            tracing::warn!(
                "the shared queue lease ran out (database unreachable?): \
                 stored jobs are not handed out and background submissions are refused until it is renewed"
            );
            self.fenced = true;
            self.lease_lost();
        }
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

    /// Forgets every waiting stored job (not running ones: they finish, and
    /// their delete is a no-op if the row was claimed by another server).
    pub(crate) fn lease_lost(&mut self) {
        let waiting: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.durable != 0 && !j.running())
            .map(|(&h, _)| h)
            .collect();
        for h in waiting {
            self.forget_stored(h);
        }
    }

    /// Drops job `h` from memory without deleting its row; a foreground
    /// client attached to it gets WORK_FAIL.
    pub(super) fn forget_stored(&mut self, h: u64) {
        let hb = self.handle(h);
        self.forward(h, |b, _| put_pkt(b, PacketType::WorkFail, &[&hb]));
        if let Some(job) = self.jobs.get_mut(&h) {
            job.durable = 0;
        }
        self.discard(h);
    }
}
