//! polygeard's state driven in memory, for the fuzz targets (`fuzz/`,
//! feature `fuzzing`; not a public API).
//!
//! A [`Sim`] is one server [`State`] (in-memory queue, no persistence) with
//! simulated connections: each has a real peer record whose [`Outbox`] is
//! not backed by a socket (what the server writes to it accumulates, under
//! the configured output limit, until [`Sim::read`] takes it). Bytes sent on
//! a connection go through the server's codec and the same steps as
//! `conn.rs` (a `\0RES` packet or a type that is no request is answered from
//! its header, a protocol error closes the connection, everything else goes
//! to `State::handle_packet` / `State::handle_text`); closing a connection,
//! or the output limit killing it, is `State::remove_peer`, as in `conn.rs`.
//! Time only moves with [`Sim::advance`], which fires the due timers
//! (CAN_DO_TIMEOUT, epoch jobs) like the server's timer task.
//!
//! [`Sim::check_invariants`] panics with a description of the first broken
//! invariant of the job table, the queues, the per-function counters, the
//! workers and clients of every job, and the memory bounds; a few requests
//! are also checked against what they must do (coalescing, GRAB, results,
//! CANT_DO, a closed connection's jobs), and [`Sim::read`] checks that the
//! server's output is a well-formed stream of replies.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use polygear::protocol::{Frame, Magic, Packet, PacketCodec, PacketType};
use tokio::time::Instant;

use crate::conn::{Flow, In};
use crate::outbox::Outbox;
use crate::state::{ConnId, State};
use crate::wire::{parse_handle, HandleBuf};
use crate::ServerConfig;

/// The job handle prefix of a simulated server (handles are `H:sim:N`).
pub const PREFIX: &str = "H:sim";

/// A simulated server and its connections.
pub struct Sim {
    st: State,
    conns: Vec<SimConn>,
    /// How far [`Sim::advance`] moved the clock.
    clock: Duration,
    /// Request bytes received, frames decoded and submissions seen: what
    /// the input could create (the memory bounds).
    input_bytes: u64,
    frames: u64,
    submits: u64,
    /// The admin `shutdown` was accepted.
    shutdown: bool,
}

struct SimConn {
    cid: ConnId,
    out: Arc<Outbox>,
    codec: PacketCodec,
    inbuf: BytesMut,
    open: bool,
    /// The server's output not yet decoded by [`Sim::read`].
    outbuf: BytesMut,
}

impl Sim {
    /// A server with `cfg` (its `queue` is ignored: jobs stay in memory).
    pub fn new(cfg: ServerConfig) -> Sim {
        Sim {
            st: State::new(Arc::new(cfg), Bytes::from_static(PREFIX.as_bytes())),
            conns: Vec::new(),
            clock: Duration::ZERO,
            input_bytes: 0,
            frames: 0,
            submits: 0,
            shutdown: false,
        }
    }

    /// Opens a connection; returns its index (connections are never reused).
    pub fn connect(&mut self) -> usize {
        let cfg = &self.st.cfg;
        let out = Arc::new(Outbox::detached(cfg.max_output, &self.st.budget));
        let codec = PacketCodec::server(cfg.max_packet, cfg.max_line);
        let n = self.conns.len();
        let cid = self
            .st
            .add_peer(out.clone(), 10 + n as i64, "127.0.0.1".into());
        self.conns.push(SimConn {
            cid,
            out,
            codec,
            inbuf: BytesMut::new(),
            open: true,
            outbuf: BytesMut::new(),
        });
        n
    }

    /// Number of connections opened so far (open or closed).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Whether connection `conn` is open.
    pub fn is_open(&self, conn: usize) -> bool {
        self.conns.get(conn).is_some_and(|c| c.open)
    }

    /// Whether the admin `shutdown` was accepted (the server would stop).
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown
    }

    /// Bytes arrive on connection `conn` (ignored if it is closed): every
    /// complete request is applied, like `conn.rs` does.
    pub fn send(&mut self, conn: usize, bytes: &[u8]) {
        if !self.is_open(conn) {
            return;
        }
        self.input_bytes += bytes.len() as u64;
        self.conns[conn].inbuf.extend_from_slice(bytes);
        while self.is_open(conn) {
            let c = &mut self.conns[conn];
            let Some(input) = In::from_frame(c.codec.decode_raw_frame(&mut c.inbuf)) else {
                break;
            };
            self.frames += 1;
            if !self.apply(conn, input) {
                self.close(conn);
            }
            self.reap();
        }
    }

    /// Encodes `p` as a request and sends it on `conn`.
    pub fn send_packet(&mut self, conn: usize, p: &Packet) {
        if let Ok(b) = p.to_bytes(Magic::Req) {
            self.send(conn, &b);
        }
    }

    /// Applies one input (`conn.rs`'s `apply`); false if the connection closes.
    fn apply(&mut self, conn: usize, input: In) -> bool {
        let c = &self.conns[conn];
        let (cid, out) = (c.cid, c.out.clone());
        match input {
            In::Packet(p) => {
                let check = self.before(cid, &p);
                self.st.handle_packet(cid, p);
                self.after(cid, check);
            }
            In::Text(line) => {
                if let Some(mut listing) = self.st.handle_text(cid, &line) {
                    out.write(|b| while listing.render(b) {});
                }
            }
            other => {
                if other.answer_invalid(&out) == Flow::Close {
                    return false;
                }
            }
        }
        if self.st.shutdown_requested.take().is_some() {
            self.shutdown = true;
        }
        self.st.trim_requested = false;
        true
    }

    /// Closes connection `conn` (the peer hung up): `State::remove_peer`,
    /// then checks what became of the jobs it held and waited for.
    pub fn close(&mut self, conn: usize) {
        if !self.is_open(conn) {
            return;
        }
        let c = &mut self.conns[conn];
        c.open = false;
        c.out.close();
        let cid = c.cid;
        let (held, attached) = match self.st.peers.get(&cid) {
            Some(p) => (
                p.holding
                    .keys()
                    .filter_map(|h| self.st.jobs.get(h).map(|j| (*h, j.retries, j.ignore)))
                    .collect::<Vec<_>>(),
                p.attached.keys().copied().collect::<Vec<_>>(),
            ),
            None => panic!("connection {conn} (peer {cid}) is open but has no peer record"),
        };
        self.st.remove_peer(cid);
        let retries = self.st.cfg.job_retries;
        for (h, old_retries, ignore) in held {
            let gone = ignore || (retries > 0 && old_retries + 1 >= retries);
            match self.st.jobs.get(&h) {
                Some(j) => {
                    assert!(
                        !gone,
                        "job {h} (ignore={ignore}, retries {old_retries}+1 of {retries}) survived \
                         the loss of its worker {cid}"
                    );
                    // Requeued, or handed at once to a worker whose GRAB waited.
                    assert!(
                        j.worker == 0
                            || (j.worker != cid
                                && self
                                    .st
                                    .peers
                                    .get(&j.worker)
                                    .is_some_and(|p| p.holding.contains_key(&h))),
                        "job {h} still runs after its worker {cid} left"
                    );
                    assert_eq!(
                        j.retries,
                        old_retries + 1,
                        "job {h} lost by worker {cid}: retries not counted"
                    );
                }
                None => assert!(
                    gone,
                    "job {h} was dropped when its worker {cid} left (retries {old_retries}+1 \
                     of {retries}); it should have been requeued"
                ),
            }
        }
        for h in attached {
            if let Some(j) = self.st.jobs.get(&h) {
                assert!(
                    !j.clients.contains(&cid),
                    "job {h} still lists the closed client {cid}"
                );
                assert!(
                    j.background || !j.clients.is_empty() || j.ignore,
                    "foreground job {h} lost its last client {cid} but is not abandoned"
                );
            }
        }
    }

    /// Closes every connection whose output limit killed it (`conn.rs`
    /// notices the kill and removes the peer), until none is left: a removed
    /// peer's jobs may wake others, whose output may exceed their limit.
    fn reap(&mut self) {
        loop {
            let killed = (0..self.conns.len())
                .find(|&i| self.conns[i].open && self.conns[i].out.is_killed());
            match killed {
                Some(i) => self.close(i),
                None => return,
            }
        }
    }

    /// Moves the clock by `by` and fires the timers due by then.
    pub fn advance(&mut self, by: Duration) {
        self.clock = self.clock.saturating_add(by);
        let Some(now) = Instant::now().checked_add(self.clock) else {
            return;
        };
        while let Some(next) = self.st.fire_timers(now) {
            if next > now {
                break;
            }
        }
        self.reap();
    }

    /// Takes what the server wrote to connection `conn` (also after it
    /// closed) and decodes it. Panics if it is not a well-formed stream of
    /// `\0RES` replies (of a type a server sends) and admin text lines.
    pub fn read(&mut self, conn: usize) -> Vec<Frame> {
        let Some(c) = self.conns.get_mut(conn) else {
            return Vec::new();
        };
        let held = c.out.take_held();
        c.outbuf.extend_from_slice(&held);
        let mut codec = PacketCodec::server(u32::MAX as usize, usize::MAX / 2);
        let mut frames = Vec::new();
        loop {
            match codec.decode_frame(&mut c.outbuf) {
                Ok(Some(f)) => {
                    if let Frame::Packet(magic, p) = &f {
                        assert_eq!(*magic, Magic::Res, "the server sent {p:?} with REQ magic");
                        assert!(is_reply(p.packet_type()), "the server sent {p:?}");
                    }
                    frames.push(f);
                }
                Ok(None) => break,
                Err(e) => panic!(
                    "connection {conn}: the server's output does not decode: {e} (at {:02x?})",
                    &c.outbuf[..c.outbuf.len().min(64)]
                ),
            }
        }
        assert!(
            c.outbuf.is_empty(),
            "connection {conn}: the server wrote an incomplete reply: {:02x?}",
            &c.outbuf[..c.outbuf.len().min(64)]
        );
        frames
    }

    /// The handles of all jobs, oldest first.
    pub fn handles(&self) -> Vec<Vec<u8>> {
        let mut hs: Vec<u64> = self.st.jobs.keys().copied().collect();
        hs.sort_unstable();
        hs.into_iter().map(|h| self.handle(h)).collect()
    }

    /// The handles of the jobs connection `conn` holds as a worker.
    pub fn held(&self, conn: usize) -> Vec<Vec<u8>> {
        let Some(c) = self.conns.get(conn) else {
            return Vec::new();
        };
        match self.st.peers.get(&c.cid) {
            Some(p) => p.holding.keys().map(|&h| self.handle(h)).collect(),
            None => Vec::new(),
        }
    }

    fn handle(&self, h: u64) -> Vec<u8> {
        HandleBuf::new(&self.st.prefix, h).to_vec()
    }

    /// Number of jobs in the job table.
    pub fn jobs(&self) -> usize {
        self.st.jobs.len()
    }

    /// The live (not abandoned or cancelled) job of function `function` with
    /// coalescing key `key`, found by scanning the job table (not the index).
    fn live_job(&self, function: &[u8], key: &[u8]) -> Option<u64> {
        self.st
            .jobs
            .iter()
            .find(|(_, j)| {
                !j.ignore && j.key() == Some(key) && self.st.funcs[j.func].name == function
            })
            .map(|(&h, _)| h)
    }

    /// What to verify after `p` is handled.
    fn before(&mut self, cid: ConnId, p: &Packet) -> Check {
        let jobs = self.st.jobs.len();
        let (function, unique, data, background, prio) = match p {
            Packet::SubmitJob {
                function,
                unique,
                data,
                priority,
                background,
            } => (function, unique, data, *background, priority.as_index()),
            Packet::SubmitReduceJob {
                function,
                unique,
                data,
                background,
                ..
            } => (function, unique, data, *background, 1),
            Packet::SubmitJobEpoch {
                function,
                unique,
                data,
                ..
            } => (function, unique, data, true, 1),
            Packet::GrabJob | Packet::GrabJobUniq | Packet::GrabJobAll => {
                return self.grab_check(cid);
            }
            Packet::WorkComplete { handle, .. }
            | Packet::WorkFail { handle }
            | Packet::WorkException { handle, .. } => {
                let h = parse_handle(&self.st.prefix, handle)
                    .filter(|h| self.st.jobs.get(h).is_some_and(|j| j.worker == cid));
                return Check::Ends { job: h, jobs };
            }
            Packet::CantDo { function } => return Check::CantDo(Some(function.clone())),
            Packet::ResetAbilities => return Check::CantDo(None),
            _ => return Check::Nothing,
        };
        self.submits += 1;
        if unique.len() > 64 {
            return Check::NoNewJob { jobs };
        }
        let key: &[u8] = if &unique[..] == b"-" { data } else { unique };
        if !key.is_empty() {
            if let Some(h) = self.live_job(function, key) {
                return Check::Joins {
                    job: h,
                    jobs,
                    foreground: !background,
                };
            }
        }
        let full = self.st.find_func(function).is_some_and(|f| {
            let f = &self.st.funcs[f];
            f.maxqueue[prio] > 0 && f.total >= f.maxqueue[prio] as u64
        });
        if full {
            Check::NoNewJob { jobs }
        } else {
            Check::NewJob { jobs }
        }
    }

    fn grab_check(&self, cid: ConnId) -> Check {
        let Some(peer) = self.st.peers.get(&cid) else {
            return Check::Nothing;
        };
        // A draining worker gets nothing; a paused function gives nothing.
        let runnable = !peer.draining
            && peer.abilities.funcs().any(|fid| {
                !self.st.funcs[fid].paused
                    && self.st.funcs[fid]
                        .queues
                        .iter()
                        .flatten()
                        .any(|h| self.st.jobs.get(h).is_some_and(|j| !j.ignore))
            });
        Check::Grab {
            runnable,
            held: peer.holding.len(),
        }
    }

    fn after(&self, cid: ConnId, check: Check) {
        let st = &self.st;
        let jobs = st.jobs.len();
        match check {
            Check::Nothing => {}
            Check::NoNewJob { jobs: before } => {
                assert_eq!(jobs, before, "a refused submission created a job")
            }
            Check::NewJob { jobs: before } => assert_eq!(
                jobs,
                before + 1,
                "a submission with no live job of the same key created no job"
            ),
            Check::Joins {
                job,
                jobs: before,
                foreground,
            } => {
                assert_eq!(
                    jobs, before,
                    "a submission created a new job although live job {job} has its key"
                );
                if foreground {
                    assert!(
                        st.jobs.get(&job).is_some_and(|j| j.clients.contains(&cid)),
                        "a foreground submission coalesced with job {job} but is not its client"
                    );
                }
            }
            Check::Grab { runnable, held } => {
                let now = st.peers.get(&cid).map_or(0, |p| p.holding.len());
                if runnable {
                    assert_eq!(now, held + 1, "GRAB got no job although one was runnable");
                } else {
                    assert_eq!(now, held, "GRAB got a job although none was runnable");
                }
            }
            Check::Ends { job, jobs: before } => match job {
                Some(h) => assert!(
                    !st.jobs.contains_key(&h),
                    "job {h} did not end with its worker's result"
                ),
                None => assert_eq!(jobs, before, "a result for a job not held changed the jobs"),
            },
            Check::CantDo(function) => {
                let Some(peer) = st.peers.get(&cid) else {
                    return;
                };
                let fid = match &function {
                    Some(name) => match st.find_func(name) {
                        Some(f) => Some(f),
                        None => return,
                    },
                    None => None,
                };
                let hit = |f: u32| fid.is_none_or(|x| x == f);
                assert!(
                    !peer.abilities.funcs().any(hit),
                    "CANT_DO/RESET_ABILITIES left the registration"
                );
                assert!(
                    !peer
                        .holding
                        .keys()
                        .any(|h| st.jobs.get(h).is_some_and(|j| hit(j.func))),
                    "CANT_DO/RESET_ABILITIES: the worker still holds a job of the function"
                );
            }
        }
    }

    /// Panics, saying what is wrong, unless the state is consistent.
    pub fn check_invariants(&self) {
        let st = &self.st;
        // Peers: exactly the open connections.
        let open: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|c| c.open)
            .map(|c| c.cid)
            .collect();
        assert_eq!(
            st.peers.len(),
            open.len(),
            "{} peer records for {} open connections",
            st.peers.len(),
            open.len()
        );
        for cid in &open {
            assert!(
                st.peers.contains_key(cid),
                "open connection {cid} has no peer"
            );
        }

        // Queues: each entry is a job of that function and priority.
        let mut in_queues: HashMap<u64, usize> = HashMap::new();
        for (fid, f) in st.funcs.all() {
            let name = String::from_utf8_lossy(&f.name);
            if !f.alive {
                assert!(
                    f.total == 0 && f.workers.is_empty() && f.queues.iter().all(|q| q.is_empty()),
                    "dropped function {name:?} still has jobs or workers"
                );
            }
            for (prio, q) in f.queues.iter().enumerate() {
                for &h in q {
                    let Some(j) = st.jobs.get(&h) else {
                        panic!("queue {name:?}/{prio} holds job {h}, which is not in the job table")
                    };
                    assert!(
                        j.func == fid && j.prio as usize == prio,
                        "job {h} (function {}, priority {}) is queued in {name:?}/{prio}",
                        j.func,
                        j.prio
                    );
                    *in_queues.entry(h).or_default() += 1;
                }
            }
        }

        // Jobs held by workers.
        let mut holder: HashMap<u64, ConnId> = HashMap::new();
        for (&cid, p) in &st.peers {
            for &h in p.holding.keys() {
                if let Some(other) = holder.insert(h, cid) {
                    panic!("job {h} is held by {other} and {cid}");
                }
                let Some(j) = st.jobs.get(&h) else {
                    panic!("worker {cid} holds job {h}, which is not in the job table")
                };
                assert_eq!(
                    j.worker, cid,
                    "worker {cid} holds job {h}, assigned to {}",
                    j.worker
                );
            }
        }

        // Every job in exactly one place; counters per function.
        let mut counts = vec![(0u64, 0u64, [0u64; 3]); st.funcs.slots() as usize];
        let mut live_keys = HashSet::new();
        let mut payload = 0u64;
        for (&h, j) in &st.jobs {
            let f = st.funcs.get(j.func);
            assert!(
                f.is_some_and(|f| f.alive),
                "job {h} belongs to a missing or dropped function {}",
                j.func
            );
            assert!(j.prio < 3, "job {h} has priority {}", j.prio);
            let queued = in_queues.get(&h).copied().unwrap_or(0);
            let c = &mut counts[j.func as usize];
            c.0 += 1;
            if j.worker != 0 {
                assert_eq!(queued, 0, "running job {h} is also queued {queued} times");
                assert_eq!(
                    holder.get(&h),
                    Some(&j.worker),
                    "running job {h} is not held by its worker {}",
                    j.worker
                );
                assert!(!j.delayed, "job {h} runs and waits for its epoch");
                c.1 += 1;
            } else {
                if j.delayed {
                    assert_eq!(queued, 0, "delayed job {h} is queued {queued} times");
                } else {
                    assert_eq!(queued, 1, "waiting job {h} is queued {queued} times");
                }
                c.2[j.prio as usize] += 1;
            }
            for &c in &j.clients {
                let Some(peer) = st.peers.get(&c) else {
                    panic!("job {h} lists client {c}, which is gone")
                };
                let n = j.clients.iter().filter(|&&x| x == c).count() as u32;
                assert_eq!(
                    peer.attached.get(&h).copied().unwrap_or(0),
                    n,
                    "client {c} is attached to job {h} a different number of times"
                );
            }
            assert!(
                j.background || !j.clients.is_empty() || j.ignore,
                "foreground job {h} has no client but is not abandoned"
            );
            assert!(
                j.ulen as usize <= 64,
                "job {h} has a unique of {} bytes",
                j.ulen
            );
            if !j.ignore {
                if let Some(k) = j.key() {
                    assert!(
                        live_keys.insert((j.func, k)),
                        "two live jobs of function {} share the key {:?}",
                        j.func,
                        String::from_utf8_lossy(k)
                    );
                }
            }
            payload += j.payload.len() as u64;
        }
        for (fid, f) in st.funcs.all() {
            let (total, running, waiting) = counts[fid as usize];
            let name = String::from_utf8_lossy(&f.name);
            assert_eq!(
                f.total, total,
                "function {name:?}: total {} != {total} jobs",
                f.total
            );
            assert_eq!(
                f.running, running,
                "function {name:?}: running {} != {running}",
                f.running
            );
            assert_eq!(
                f.waiting, waiting,
                "function {name:?}: waiting {:?} != {waiting:?}",
                f.waiting
            );
        }
        for (&h, &n) in &in_queues {
            assert!(n <= 1, "job {h} is queued {n} times");
        }

        // Clients' attachments and workers' registrations.
        let mut registrations: HashMap<(u32, ConnId), i64> = HashMap::new();
        let mut counted: HashMap<u32, u64> = HashMap::new();
        let mut grabs_waiting = 0;
        for (&cid, p) in &st.peers {
            // A GRAB waits only while no job it could take is queued (a job
            // queued meanwhile goes to it at once); a paused function's jobs
            // it cannot take, and a draining worker's GRAB never waits.
            if p.grab_waiting.is_some() {
                grabs_waiting += 1;
                assert!(!p.draining, "draining worker {cid}'s GRAB waits");
                let runnable = p.abilities.funcs().any(|fid| {
                    !st.funcs[fid].paused
                        && st.funcs[fid]
                            .queues
                            .iter()
                            .flatten()
                            .any(|h| st.jobs.get(h).is_some_and(|j| !j.ignore))
                });
                assert!(
                    !runnable,
                    "worker {cid}'s GRAB waits although a job it can do is queued"
                );
            }
            for (&h, &n) in &p.attached {
                let Some(j) = st.jobs.get(&h) else {
                    panic!("client {cid} is attached to job {h}, which is not in the job table")
                };
                assert!(
                    n > 0 && j.clients.contains(&cid),
                    "client {cid}: stale attachment to job {h}"
                );
            }
            for (fid, a) in p.abilities.in_order() {
                let f = st.funcs.get(fid).filter(|f| f.alive);
                let Some(f) = f else {
                    panic!("worker {cid} can do a missing or dropped function {fid}");
                };
                assert_eq!(
                    f.workers.get(a.slot),
                    Some(&cid),
                    "worker {cid}'s slot in function {fid}'s worker list"
                );
                *registrations.entry((fid, cid)).or_default() += 1;
                *counted.entry(fid).or_default() += a.count as u64;
                // A GRAB finds every function with a waiting job (O(1) GRAB).
                for (prio, q) in f.queues.iter().enumerate() {
                    assert!(
                        q.is_empty() || f.paused || p.abilities.is_listed(fid, prio),
                        "worker {cid}: function {fid} has jobs of priority {prio} but is not \
                         in its ready list"
                    );
                }
            }
        }
        assert_eq!(
            grabs_waiting, st.grabs_waiting,
            "peers with a waiting GRAB counted"
        );
        for (fid, f) in st.funcs.all() {
            for &w in &f.workers {
                *registrations.entry((fid, w)).or_default() -= 1;
            }
            assert_eq!(
                counted.get(&fid).copied().unwrap_or(0),
                f.registrations,
                "function {fid}: registrations counted by its workers"
            );
        }
        for ((fid, cid), n) in registrations {
            assert_eq!(
                n, 0,
                "function {fid}: worker {cid} has {n} more registrations than the function lists"
            );
        }

        // Memory: no more than the input could create.
        assert!(
            st.jobs.len() as u64 <= self.submits,
            "{} jobs from {} submissions",
            st.jobs.len(),
            self.submits
        );
        assert!(
            payload <= self.input_bytes,
            "jobs hold {payload} bytes, more than the {} received",
            self.input_bytes
        );
        assert!(
            st.funcs.len() as u64 <= self.frames,
            "{} functions from {} requests",
            st.funcs.len(),
            self.frames
        );
        for (i, c) in self.conns.iter().enumerate() {
            if c.open && !c.out.is_killed() {
                let pending = c.out.pending();
                assert!(
                    pending <= st.cfg.max_output,
                    "connection {i} has {pending} bytes of output queued, over the limit of {}",
                    st.cfg.max_output
                );
            }
        }
    }
}

/// What [`Sim::before`] expects of a request.
enum Check {
    Nothing,
    /// A submission that must not create a job (unique too long, queue full).
    NoNewJob {
        jobs: usize,
    },
    /// A submission that must create a job.
    NewJob {
        jobs: usize,
    },
    /// A submission that must join live job `job`.
    Joins {
        job: u64,
        jobs: usize,
        foreground: bool,
    },
    /// A GRAB: a job must be assigned iff one is runnable.
    Grab {
        runnable: bool,
        held: usize,
    },
    /// WORK_COMPLETE/FAIL/EXCEPTION: ends `job` if the sender holds it,
    /// else changes nothing.
    Ends {
        job: Option<u64>,
        jobs: usize,
    },
    /// CANT_DO of a function (`None`: RESET_ABILITIES).
    CantDo(Option<Bytes>),
}

/// Whether a server sends packets of type `t`.
fn is_reply(t: PacketType) -> bool {
    use PacketType as T;
    matches!(
        t,
        T::Noop
            | T::NoJob
            | T::JobCreated
            | T::JobAssign
            | T::JobAssignUniq
            | T::JobAssignAll
            | T::WorkStatus
            | T::WorkComplete
            | T::WorkFail
            | T::WorkException
            | T::WorkData
            | T::WorkWarning
            | T::StatusRes
            | T::StatusResUnique
            | T::EchoRes
            | T::Error
            | T::OptionRes
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use polygear::protocol::Priority;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn packets(frames: Vec<Frame>) -> Vec<Packet> {
        frames
            .into_iter()
            .map(|f| match f {
                Frame::Packet(_, p) => p,
                Frame::Text(t) => panic!("text {t:?}"),
            })
            .collect()
    }

    fn submit(unique: &str, data: &str) -> Packet {
        Packet::SubmitJob {
            function: b("rev"),
            unique: b(unique),
            data: b(data),
            priority: Priority::Normal,
            background: false,
        }
    }

    #[test]
    fn worker_flow_with_coalescing_and_a_lost_worker() {
        let mut sim = Sim::new(ServerConfig::default());
        let (w, c1, c2) = (sim.connect(), sim.connect(), sim.connect());
        sim.send_packet(w, &Packet::CanDo { function: b("rev") });
        sim.send_packet(w, &Packet::PreSleep);
        sim.send_packet(c1, &submit("same", "abc"));
        sim.send_packet(c2, &submit("same", "DIFFERENT"));
        sim.check_invariants();
        let created = Packet::JobCreated {
            handle: b("H:sim:1"),
        };
        assert_eq!(packets(sim.read(c1)), std::slice::from_ref(&created));
        assert_eq!(packets(sim.read(c2)), [created]);
        assert_eq!(packets(sim.read(w)), [Packet::Noop]);
        sim.send_packet(w, &Packet::GrabJobUniq);
        let assign = Packet::JobAssignUniq {
            handle: b("H:sim:1"),
            function: b("rev"),
            unique: b("same"),
            data: b("abc"),
        };
        assert_eq!(packets(sim.read(w)), [assign]);
        assert_eq!(sim.held(w), [b"H:sim:1".to_vec()]);
        sim.check_invariants();

        // The worker goes away: the job is requeued for the next one.
        sim.close(w);
        sim.check_invariants();
        let w2 = sim.connect();
        sim.send_packet(w2, &Packet::CanDo { function: b("rev") });
        sim.send_packet(w2, &Packet::GrabJob);
        let complete = Packet::WorkComplete {
            handle: b("H:sim:1"),
            data: b("cba"),
        };
        sim.send_packet(w2, &complete);
        sim.check_invariants();
        assert_eq!(sim.jobs(), 0);
        assert_eq!(packets(sim.read(c1)), std::slice::from_ref(&complete));
        assert_eq!(packets(sim.read(c2)), [complete]);
        assert_eq!(packets(sim.read(w2)).len(), 1, "JOB_ASSIGN");

        sim.send(c1, b"show jobs\r\n");
        assert_eq!(sim.read(c1), [Frame::Text(b(".")),]);
    }

    #[test]
    fn pause_and_drain_keep_the_invariants() {
        let mut sim = Sim::new(ServerConfig {
            grab_wait: Duration::from_millis(500),
            ..ServerConfig::default()
        });
        let (w, c, a) = (sim.connect(), sim.connect(), sim.connect());
        sim.send_packet(w, &Packet::CanDo { function: b("p") });
        sim.send(a, b"pause p\r\n");
        sim.send_packet(
            c,
            &Packet::SubmitJob {
                function: b("p"),
                unique: b(""),
                data: b("x"),
                priority: polygear::protocol::Priority::Normal,
                background: true,
            },
        );
        // The GRAB waits although a (paused) job is queued.
        sim.send_packet(w, &Packet::GrabJob);
        sim.check_invariants();
        assert!(sim.held(w).is_empty());
        sim.send(a, b"resume p\r\n");
        sim.check_invariants();
        assert_eq!(sim.held(w).len(), 1);
        // A drained worker's GRAB is answered at once.
        sim.send(a, b"drain worker -\r\n");
        sim.send_packet(
            c,
            &Packet::SubmitJob {
                function: b("p"),
                unique: b(""),
                data: b("y"),
                priority: polygear::protocol::Priority::Normal,
                background: true,
            },
        );
        sim.read(w);
        sim.send_packet(w, &Packet::GrabJob);
        sim.check_invariants();
        assert_eq!(packets(sim.read(w)), [Packet::NoJob]);
        assert_eq!(sim.held(w).len(), 1);
    }

    #[test]
    fn timeouts_epochs_and_the_output_limit() {
        let mut sim = Sim::new(ServerConfig {
            max_output: 100,
            grab_wait: Duration::ZERO,
            ..ServerConfig::default()
        });
        let (w, c) = (sim.connect(), sim.connect());
        sim.send_packet(
            w,
            &Packet::CanDoTimeout {
                function: b("t"),
                timeout: 10,
            },
        );
        sim.send_packet(
            c,
            &Packet::SubmitJobEpoch {
                function: b("t"),
                unique: b(""),
                when: unix_now() + 60,
                data: b("x"),
            },
        );
        sim.send_packet(w, &Packet::GrabJob);
        assert_eq!(packets(sim.read(w)), [Packet::NoJob]);
        sim.advance(Duration::from_secs(61));
        sim.send_packet(w, &Packet::GrabJob);
        assert_eq!(sim.held(w).len(), 1);
        sim.check_invariants();
        // CAN_DO_TIMEOUT 10 ms counts as 1 s; then the job fails.
        sim.advance(Duration::from_millis(1001));
        sim.check_invariants();
        assert_eq!(sim.jobs(), 0);

        // More output than the limit kills the connection.
        sim.send_packet(
            c,
            &Packet::EchoReq {
                data: b(&"e".repeat(200)),
            },
        );
        assert!(!sim.is_open(c));
        sim.check_invariants();
    }

    #[test]
    fn a_grab_that_finds_nothing_waits_for_the_next_job() {
        let mut sim = Sim::new(ServerConfig {
            grab_wait: Duration::from_millis(5),
            ..ServerConfig::default()
        });
        let (w, c) = (sim.connect(), sim.connect());
        sim.send_packet(w, &Packet::CanDo { function: b("rev") });
        sim.send_packet(w, &Packet::GrabJobUniq);
        assert_eq!(packets(sim.read(w)), [], "the GRAB waits");
        sim.check_invariants();

        // A job submitted meanwhile goes straight to it: no NOOP, no second GRAB.
        sim.send_packet(c, &submit("u1", "abc"));
        let handle = b("H:sim:1");
        assert_eq!(
            packets(sim.read(w)),
            [Packet::JobAssignUniq {
                handle: handle.clone(),
                function: b("rev"),
                unique: b("u1"),
                data: b("abc"),
            }]
        );
        sim.check_invariants();

        // WORK_COMPLETE with the next GRAB: the GRAB waits, the result goes out.
        let complete = Packet::WorkComplete {
            handle,
            data: b("cba"),
        };
        sim.send_packet(w, &complete);
        sim.send_packet(w, &Packet::GrabJobUniq);
        sim.send_packet(w, &Packet::GrabJobUniq); // pipelined: waits with it
        assert_eq!(packets(sim.read(w)), []);
        sim.check_invariants();
        assert_eq!(
            packets(sim.read(c)),
            [
                Packet::JobCreated {
                    handle: b("H:sim:1")
                },
                complete
            ]
        );

        // Another request is answered after the waiting GRABs' NO_JOBs.
        sim.send_packet(w, &Packet::EchoReq { data: b("e") });
        assert_eq!(
            packets(sim.read(w)),
            [
                Packet::NoJob,
                Packet::NoJob,
                Packet::EchoRes { data: b("e") }
            ]
        );
        sim.check_invariants();

        // Or the wait runs out.
        sim.send_packet(w, &Packet::GrabJob);
        sim.advance(Duration::from_millis(4));
        assert_eq!(packets(sim.read(w)), []);
        sim.advance(Duration::from_millis(2));
        assert_eq!(packets(sim.read(w)), [Packet::NoJob]);
        sim.check_invariants();

        // A worker without a function, or with waiting off, hears at once.
        let idle = sim.connect();
        sim.send_packet(idle, &Packet::GrabJob);
        assert_eq!(packets(sim.read(idle)), [Packet::NoJob]);
        let mut gearmand_like = Sim::new(ServerConfig {
            grab_wait: Duration::ZERO,
            ..ServerConfig::default()
        });
        let w = gearmand_like.connect();
        gearmand_like.send_packet(w, &Packet::CanDo { function: b("rev") });
        gearmand_like.send_packet(w, &Packet::GrabJob);
        assert_eq!(packets(gearmand_like.read(w)), [Packet::NoJob]);
    }

    #[test]
    fn a_lost_worker_with_a_waiting_grab_leaves_no_trace() {
        let mut sim = Sim::new(ServerConfig::default());
        let (w, c) = (sim.connect(), sim.connect());
        sim.send_packet(w, &Packet::CanDo { function: b("rev") });
        sim.send_packet(w, &Packet::GrabJob);
        sim.close(w);
        sim.check_invariants();
        // The job waits for the next worker; the old GRAB's timer finds no one.
        sim.send_packet(c, &submit("", "x"));
        sim.advance(Duration::from_millis(10));
        sim.check_invariants();
        assert_eq!(sim.jobs(), 1);
    }

    fn unix_now() -> i64 {
        crate::state::unix_now()
    }
}
