//! The job server's state: functions, jobs and the peers (connections) that
//! submit and run them. One owner (`Mutex<State>` in [`crate::Shared`]), short
//! critical sections, O(1) queue operations.
//!
//! This file holds the data types and the helpers every part uses (function
//! ids, the peer registry, replies). The operations on them are split by
//! concern, like gearmand's server.cc / job.cc / function.cc:
//!
//! * [`functions`]: the function table (by name, idle ones forgotten);
//! * [`abilities`]: a worker's registrations and which of them have jobs;
//! * [`dispatch`]: which request packet goes where;
//! * [`submit`]: creating jobs and coalescing them by unique key;
//! * [`schedule`]: workers, their abilities, waking and handing out jobs;
//! * [`lifecycle`]: a job's progress and end (results, timeouts, lost
//!   workers, epoch jobs, cancel) and restoring the durable queue;
//! * [`control`]: pausing functions and draining workers (admin);
//! * [`periodic`]: periodic jobs (cron schedules) and their firing task;
//! * [`lease`]: fencing (parking stored jobs) when a shared queue's lease runs out;
//! * [`retain`]: retained results of ended jobs and unique windows;
//! * [`retry`]: retries with backoff and the dead set (polygear extension);
//! * [`timers`]: the deadlines (CAN_DO_TIMEOUT, epoch jobs) and the one task
//!   that fires them.

mod abilities;
mod control;
mod dispatch;
mod functions;
mod lease;
mod lifecycle;
pub(crate) mod periodic;
pub(crate) mod retain;
mod retry;
mod schedule;
mod submit;
pub(crate) mod timers;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use polygear::protocol::PacketType;

use crate::budget::Budget;
use crate::index::{IntMap, UniqueIndex};
use crate::outbox::Outbox;
use crate::queue::Persister;
use crate::wire::{put_error, put_pkt, HandleBuf};
use crate::ServerConfig;
pub(crate) use abilities::Abilities;
pub(crate) use functions::Functions;
pub use retry::parse_retry_flag;
use timers::Timers;

/// Handles reserved at a time (see [`State::reserve_handles`]).
const HANDLE_BLOCK: u64 = 10_000;

/// Identifies a connection: its [`Peer`] record here and its task in `crate::conn`.
pub(crate) type ConnId = u64;

pub(crate) struct Job {
    /// The unique id followed by the workload (one allocation).
    pub payload: Box<[u8]>,
    pub ulen: u32,
    pub func: u32,
    pub prio: u8,
    pub ignore: bool,
    pub background: bool,
    /// Waiting for its epoch time (not in any queue yet).
    pub delayed: bool,
    pub retries: u32,
    /// Failed runs so far under its function's retry policy (see [`retry`]).
    pub attempts: u32,
    pub num: u32,
    pub den: u32,
    pub assign_gen: u32,
    /// Connection holding the job, 0 while it waits.
    pub worker: ConnId,
    /// Row id in the persistent queue, 0 if not stored.
    pub durable: i64,
    pub clients: Vec<ConnId>,
    /// When it entered its queue (submit, epoch due, requeue) while it
    /// waits; when a worker got it while it runs (for the latency histograms).
    pub since: std::time::Instant,
    /// Cancelled (admin `cancel job`, dashboard): counted so when it ends.
    pub cancelled: bool,
    /// Seconds to keep its result after it ends (SUBMIT_RETAIN; 0: the
    /// function's setting). See [`retain`].
    pub retain: u32,
    /// Unix seconds of its submission (restored ones: their first), for the dead set.
    pub submitted: i64,
}

impl Job {
    pub(crate) fn unique(&self) -> &[u8] {
        &self.payload[..self.ulen as usize]
    }

    pub(crate) fn data(&self) -> &[u8] {
        &self.payload[self.ulen as usize..]
    }

    /// The coalescing key: the unique, or the data for unique `-`; `None` if empty.
    pub(crate) fn key(&self) -> Option<&[u8]> {
        let u = self.unique();
        let k = if u == b"-" { self.data() } else { u };
        (!k.is_empty()).then_some(k)
    }

    pub(crate) fn running(&self) -> bool {
        self.worker != 0
    }
}

/// The state's record of one connection (client, worker or admin; a peer can
/// be all three). Its I/O lives in `crate::conn`.
pub(crate) struct Peer {
    pub out: Arc<Outbox>,
    pub fd: i64,
    pub ip: String,
    pub client_id: Bytes,
    pub exceptions: bool,
    /// Sent `OPTION_REQ polygear-fail-reasons`: gets WORK_FAIL_REASON
    /// before a WORK_FAIL the server decided itself.
    pub fail_reasons: bool,
    pub abilities: Abilities,
    pub sleeping: bool,
    pub noop_sent: bool,
    /// GRAB_JOB*s that found no job and wait for one (see [`schedule`]).
    pub grab_waiting: Option<schedule::GrabWait>,
    /// Jobs assigned to this worker.
    pub holding: IntMap<u64, ()>,
    pub attached: IntMap<u64, u32>,
    pub next_ticket: u64,
    /// SUBMIT_RETAIN seconds for the next background submission.
    pub retain_next: Option<u32>,
    /// Drained (admin `drain worker`): gets no new jobs (see [`control`]).
    pub draining: bool,
}

pub(crate) struct State {
    pub cfg: Arc<ServerConfig>,
    pub prefix: Bytes,
    next_handle: u64,
    /// Handles below it may be given out before the next reservation
    /// (stored as the store's handle floor; see [`State::reserve_handles`]).
    handle_ceiling: u64,
    /// Boxed so the (often half-empty) hash table holds only pointers.
    pub jobs: IntMap<u64, Box<Job>>,
    uniques: UniqueIndex,
    /// Reducer names of reduce jobs (rare, kept out of `Job`).
    reducers: IntMap<u64, Bytes>,
    peak_jobs: usize,
    /// Ask the caller to return freed memory to the OS (after a large drain).
    pub trim_requested: bool,
    pub funcs: Functions,
    pub peers: IntMap<ConnId, Peer>,
    next_peer: ConnId,
    pub persist: Option<Persister>,
    pub shutdown_requested: Option<bool>,
    /// CAN_DO_TIMEOUT and epoch deadlines (fired by [`timers::run`]).
    timers: Timers,
    /// Until when this server may hand out stored jobs (shared queue only).
    lease_until: Option<std::time::Instant>,
    /// The lease ran out: stored jobs are not handed out nor accepted.
    fenced: bool,
    /// Waiting stored jobs taken out of their queues while fenced.
    parked: Vec<u64>,
    /// Memory for all connections' buffers (shared with the connection tasks).
    pub budget: Arc<Budget>,
    pub metrics: Metrics,
    /// Workers whose GRAB waits for a job (see [`schedule`]).
    pub(crate) grabs_waiting: usize,
    /// Totals, recent failures and samples for `/metrics` and the dashboard.
    pub stats: crate::stats::ServerStats,
    /// Retained results and unique windows (see [`retain`]).
    pub results: retain::Results,
    /// Retry policies and the dead set (see [`retry`]).
    pub retries: retry::Retries,
    /// Periodic jobs (see [`periodic`]).
    pub schedules: periodic::Schedules,
}

/// Counters reported by the admin `metrics` command.
#[derive(Default)]
pub(crate) struct Metrics {
    /// Idle functions forgotten beyond `max_idle_functions`.
    pub functions_forgotten: u64,
    /// Requests refused for a limit (function name length, functions per connection).
    pub refused: u64,
    /// Background submissions answered ERROR because the queue could not store them.
    pub queue_refused: u64,
    /// Stored jobs claimed from servers whose lease expired (shared queue).
    pub jobs_claimed: u64,
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl State {
    /// At start: handles below `floor` were given out before the restart
    /// (a `result`, `cancel` or dead record may still name them).
    pub(crate) fn start_handles_at(&mut self, floor: u64) {
        self.next_handle = self.next_handle.max(floor);
    }

    /// Stores a handle floor a block ahead of the next handle, so that after
    /// a restart (even a kill -9) no handle given out before comes back for
    /// another job. Called at start and whenever half a block was used: one
    /// small write per [`HANDLE_BLOCK`] jobs. Only stores that keep it
    /// (SQLite) make handles unique across restarts.
    pub(crate) fn reserve_handles(&mut self) {
        let Some(p) = self.persist.as_ref() else {
            return;
        };
        self.handle_ceiling = self.next_handle + HANDLE_BLOCK;
        let _ =
            p.tx.send(crate::queue::Op::HandleFloor(self.handle_ceiling));
    }

    pub(crate) fn new(cfg: Arc<ServerConfig>, prefix: Bytes) -> State {
        let results = retain::Results::new(cfg.retain_max_bytes, &cfg.retain, &cfg.unique_windows);
        State {
            retries: retry::Retries::new(&cfg),
            funcs: Functions::new(cfg.max_idle_functions),
            budget: Arc::new(Budget::new(cfg.max_buffered)),
            cfg,
            prefix,
            next_handle: 1,
            handle_ceiling: 0,
            jobs: IntMap::default(),
            uniques: UniqueIndex::new(),
            reducers: IntMap::default(),
            peak_jobs: 0,
            trim_requested: false,
            peers: IntMap::default(),
            next_peer: 1,
            persist: None,
            shutdown_requested: None,
            timers: Timers::new(),
            lease_until: None,
            fenced: false,
            parked: Vec::new(),
            metrics: Metrics::default(),
            grabs_waiting: 0,
            stats: Default::default(),
            results,
            schedules: Default::default(),
        }
    }

    fn handle(&self, n: u64) -> HandleBuf {
        HandleBuf::new(&self.prefix, n)
    }

    pub(crate) fn func_id(&mut self, name: &[u8]) -> u32 {
        self.funcs.id(name)
    }

    pub(crate) fn find_func(&self, name: &[u8]) -> Option<u32> {
        self.funcs.find(name)
    }

    /// Forgets the longest-idle functions beyond the configured number
    /// (called between requests, when no function id is in use).
    pub(crate) fn forget_idle_functions(&mut self) {
        let n = self.funcs.forget_idle();
        if n > 0 {
            self.metrics.functions_forgotten += n as u64;
            tracing::debug!("forgot {n} idle functions");
        }
    }

    // ---------------------------------------------------------------- peers

    /// Registers a new connection writing to `out`.
    pub(crate) fn add_peer(&mut self, out: Arc<Outbox>, fd: i64, ip: String) -> ConnId {
        let id = self.next_peer;
        self.next_peer += 1;
        self.peers.insert(
            id,
            Peer {
                out,
                fd,
                ip,
                client_id: Bytes::from_static(b"-"),
                exceptions: self.cfg.exceptions,
                fail_reasons: false,
                abilities: Abilities::default(),
                sleeping: false,
                noop_sent: false,
                grab_waiting: None,
                holding: IntMap::default(),
                attached: IntMap::default(),
                next_ticket: 1,
                retain_next: None,
                draining: false,
            },
        );
        id
    }

    /// Forgets a closed connection: its held jobs are lost (requeued), its
    /// registrations and attachments dropped, a pending wake-up passed on.
    pub(crate) fn remove_peer(&mut self, cid: ConnId) {
        let Some(peer) = self.peers.remove(&cid) else {
            return;
        };
        if peer.grab_waiting.is_some() {
            self.grabs_waiting -= 1;
        }
        // Jobs held by this worker go back to the head of their queue (in
        // the order they were assigned, as handles grow).
        let mut held: Vec<u64> = peer.holding.keys().copied().collect();
        held.sort_unstable();
        for h in held {
            self.requeue_lost(h, cid);
        }
        let mut abilities = peer.abilities;
        let funcs: Vec<u32> = abilities.funcs().collect();
        for (fid, ab) in abilities.take_all() {
            self.unregister(fid, &ab);
        }
        // Detach from foreground jobs; a job nobody waits for any more is abandoned
        // unless it was submitted in the background.
        for (h, _) in peer.attached {
            if let Some(job) = self.jobs.get_mut(&h) {
                job.clients.retain(|&c| c != cid);
                if job.clients.is_empty() && !job.background {
                    job.ignore = true;
                    if !job.running() {
                        // Nobody will ever see the result: drop the unique key now so a
                        // new submission creates a fresh job.
                        self.release_unique(h);
                    }
                }
            }
        }
        // If this worker had been woken but never grabbed, pass the wake-up on.
        if peer.noop_sent {
            for f in funcs {
                if self.has_runnable(f) {
                    self.wake(f);
                }
            }
        }
        self.forget_idle_functions();
    }

    // ---------------------------------------------------------------- output

    fn out(&self, cid: ConnId) -> Option<&Arc<Outbox>> {
        self.peers.get(&cid).map(|c| &c.out)
    }

    fn reply(&self, cid: ConnId, f: impl FnOnce(&mut BytesMut)) {
        if let Some(o) = self.out(cid) {
            o.write(f);
        }
    }

    fn reply_error(&self, cid: ConnId, code: &str, text: &str) {
        self.reply(cid, |b| put_error(b, code, text));
    }

    /// Fails job `n` for its clients on the server's own decision: those
    /// that opted in get WORK_FAIL_REASON with `reason` first. Every copy of
    /// the reason goes out before any WORK_FAIL, so a connection attached
    /// twice sees each packet twice in a row, as for every other packet.
    fn fail_clients(&self, n: u64, reason: &str) {
        let hb = self.handle(n);
        for peer in self.clients_of(n).filter(|p| p.fail_reasons) {
            peer.out
                .write(|b| put_pkt(b, PacketType::WorkFailReason, &[&hb, reason.as_bytes()]));
        }
        self.forward(n, |b, _| put_pkt(b, PacketType::WorkFail, &[&hb]));
    }

    /// Sends a packet to every client attached to job `n`, most recent first.
    fn forward(&self, n: u64, f: impl Fn(&mut BytesMut, bool)) {
        for peer in self.clients_of(n) {
            let ex = peer.exceptions;
            peer.out.write(|b| f(b, ex));
        }
    }

    /// The connected clients attached to job `n`, most recent first.
    fn clients_of(&self, n: u64) -> impl Iterator<Item = &Peer> {
        self.jobs
            .get(&n)
            .into_iter()
            .flat_map(|job| job.clients.iter().rev())
            .filter_map(|c| self.peers.get(c))
    }
}
