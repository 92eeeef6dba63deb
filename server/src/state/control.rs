//! Operator control of scheduling (polygear extensions of the admin
//! protocol): pausing a function (its jobs queue, none is handed out, its
//! workers are not woken for it) and draining a worker connection (it
//! finishes the jobs it holds and gets no new one).
//!
//! Both are in memory only: a restart forgets them. The hooks that enforce
//! them sit in [`super::schedule`] (`wake`, `first_runnable`, `grab`).

use bytes::Bytes;

use super::{ConnId, State};

impl State {
    /// Pauses function `name` (created if unknown, like `create function`,
    /// so a pause can precede the first submission).
    pub(crate) fn pause(&mut self, name: &[u8]) {
        let fid = self.func_id(name);
        self.funcs[fid].paused = true;
        self.funcs.touch(fid);
    }

    /// Resumes function `name`: its workers list it ready again for each
    /// priority with waiting jobs, and waiting GRABs or sleeping workers are
    /// served or woken. False if it was not paused.
    pub(crate) fn resume(&mut self, name: &[u8]) -> bool {
        let Some(fid) = self.find_func(name) else {
            return false;
        };
        if !self.funcs[fid].paused {
            return false;
        }
        self.funcs[fid].paused = false;
        self.funcs.touch(fid);
        let State { funcs, peers, .. } = self;
        let f = &funcs[fid];
        for (prio, q) in f.queues.iter().enumerate() {
            if q.is_empty() {
                continue;
            }
            for w in &f.workers {
                if let Some(p) = peers.get_mut(w) {
                    p.abilities.mark_ready(fid, prio);
                }
            }
        }
        // One waiting job per waiting GRAB, then NOOPs for the rest.
        let mut left: u64 = self.funcs[fid].waiting.iter().sum();
        while left > 0 && self.grabs_waiting > 0 && self.has_runnable(fid) {
            match self.grab_waiting_for(fid) {
                Some(cid) => self.serve_waiting_grab(cid),
                None => break,
            }
            left -= 1;
        }
        if self.has_runnable(fid) {
            self.wake(fid);
        }
        true
    }

    /// The paused functions' names, sorted.
    pub(crate) fn paused_functions(&self) -> Vec<Bytes> {
        let mut names: Vec<Bytes> = self
            .funcs
            .iter()
            .filter(|f| f.paused)
            .map(|f| f.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Drains the worker connections matching `id`: the `fd` column of
    /// `workers` (a decimal number) or the client id set by SET_CLIENT_ID.
    /// They keep their jobs but get no new one (a waiting GRAB is answered
    /// NO_JOB now). Returns how many connections matched.
    pub(crate) fn drain_worker(&mut self, id: &[u8]) -> usize {
        let fd: Option<i64> = std::str::from_utf8(id).ok().and_then(|s| s.parse().ok());
        let ids: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| fd == Some(p.fd.max(0)) || p.client_id.as_ref() == id)
            .map(|(&cid, _)| cid)
            .collect();
        for &cid in &ids {
            self.end_grab_wait(cid, None);
            if let Some(p) = self.peers.get_mut(&cid) {
                p.draining = true;
            }
        }
        ids.len()
    }

    /// The fds (as in `workers`) of the draining connections, sorted.
    pub(crate) fn draining_workers(&self) -> Vec<(i64, Bytes)> {
        let mut v: Vec<(i64, Bytes)> = self
            .peers
            .values()
            .filter(|p| p.draining)
            .map(|p| (p.fd.max(0), p.client_id.clone()))
            .collect();
        v.sort();
        v
    }
}
