//! The job server's state: functions, jobs, connections. One owner
//! (`Mutex<State>`), short critical sections, O(1) queue operations.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use polygear::protocol::{atoi, Packet, PacketType, Priority};

use crate::index::{shrink, IntMap, UniqueIndex};
use crate::outbox::Outbox;
use crate::persist::{Ack, Op, Persister, StoredJob};
use crate::wire::{parse_handle, put_error, put_pkt, HandleBuf};
use crate::{ServerConfig, Shared};

pub(crate) type ConnId = u64;

/// Longest unique id accepted (gearmand rejects longer than 64 bytes).
const MAX_UNIQUE: usize = 64;
/// Longest client id kept (gearmand truncates to 127 bytes).
const MAX_CLIENT_ID: usize = 127;

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
    pub num: u32,
    pub den: u32,
    pub assign_gen: u32,
    /// Connection holding the job, 0 while it waits.
    pub worker: ConnId,
    /// Row id in the persistent queue, 0 if not stored.
    pub durable: i64,
    pub clients: Vec<ConnId>,
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

/// The coalescing key of a submission (see [`Job::key`]).
fn submission_key<'a>(unique: &'a [u8], data: &'a [u8]) -> Option<&'a [u8]> {
    let k = if unique == b"-" { data } else { unique };
    (!k.is_empty()).then_some(k)
}

pub(crate) struct Function {
    pub name: Bytes,
    pub queues: [VecDeque<u64>; 3],
    /// Jobs not running, per priority (including abandoned ones not yet reaped).
    pub waiting: [u64; 3],
    pub total: u64,
    pub running: u64,
    /// One entry per CAN_DO registration.
    pub workers: Vec<ConnId>,
    pub wake_pos: usize,
    pub maxqueue: [u32; 3],
    pub alive: bool,
}

pub(crate) struct Ability {
    pub func: u32,
    pub timeout_ms: u32,
}

pub(crate) struct Conn {
    pub out: Arc<Outbox>,
    pub fd: i64,
    pub ip: String,
    pub client_id: Bytes,
    pub exceptions: bool,
    /// Registrations in registration order (oldest first).
    pub abilities: Vec<Ability>,
    pub sleeping: bool,
    pub noop_sent: bool,
    pub holding: Vec<u64>,
    pub attached: IntMap<u64, u32>,
    pub rr: usize,
    pub next_ticket: u64,
}

/// What the connection should do after a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close,
}

pub(crate) struct State {
    pub cfg: Arc<ServerConfig>,
    pub prefix: Bytes,
    pub shared: Weak<Shared>,
    next_handle: u64,
    /// Boxed so the (often half-empty) hash table holds only pointers.
    pub jobs: IntMap<u64, Box<Job>>,
    uniques: UniqueIndex,
    /// Reducer names of reduce jobs (rare, kept out of `Job`).
    reducers: IntMap<u64, Bytes>,
    peak_jobs: usize,
    /// Ask the caller to return freed memory to the OS (after a large drain).
    pub trim_requested: bool,
    pub funcs: Vec<Function>,
    func_ids: HashMap<Bytes, u32>,
    pub conns: IntMap<ConnId, Conn>,
    next_conn: ConnId,
    pub persist: Option<Persister>,
    pub shutdown_requested: Option<bool>,
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl State {
    pub(crate) fn new(cfg: Arc<ServerConfig>, prefix: Bytes, shared: Weak<Shared>) -> State {
        State {
            cfg,
            prefix,
            shared,
            next_handle: 1,
            jobs: IntMap::default(),
            uniques: UniqueIndex::new(),
            reducers: IntMap::default(),
            peak_jobs: 0,
            trim_requested: false,
            funcs: Vec::new(),
            func_ids: HashMap::new(),
            conns: IntMap::default(),
            next_conn: 1,
            persist: None,
            shutdown_requested: None,
        }
    }

    fn handle(&self, n: u64) -> HandleBuf {
        HandleBuf::new(&self.prefix, n)
    }

    pub(crate) fn func_id(&mut self, name: &[u8]) -> u32 {
        if let Some(&id) = self.func_ids.get(name) {
            return id;
        }
        let id = self.funcs.len() as u32;
        let name = Bytes::copy_from_slice(name);
        self.funcs.push(Function {
            name: name.clone(),
            queues: Default::default(),
            waiting: [0; 3],
            total: 0,
            running: 0,
            workers: Vec::new(),
            wake_pos: 0,
            maxqueue: [0; 3],
            alive: true,
        });
        self.func_ids.insert(name, id);
        id
    }

    /// Forgets an (empty, unused) function.
    pub(crate) fn drop_function(&mut self, fid: u32) {
        let f = &mut self.funcs[fid as usize];
        f.alive = false;
        let name = f.name.clone();
        self.func_ids.remove(&name);
    }

    pub(crate) fn find_func(&self, name: &[u8]) -> Option<u32> {
        self.func_ids.get(name).copied()
    }

    // ---------------------------------------------------------------- connections

    pub(crate) fn add_conn(&mut self, out: Arc<Outbox>, fd: i64, ip: String) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                out,
                fd,
                ip,
                client_id: Bytes::from_static(b"-"),
                exceptions: self.cfg.exceptions,
                abilities: Vec::new(),
                sleeping: false,
                noop_sent: false,
                holding: Vec::new(),
                attached: IntMap::default(),
                rr: 0,
                next_ticket: 1,
            },
        );
        id
    }

    pub(crate) fn remove_conn(&mut self, cid: ConnId) {
        let Some(conn) = self.conns.remove(&cid) else {
            return;
        };
        // Jobs held by this worker go back to the head of their queue.
        for h in conn.holding {
            self.requeue_lost(h, cid);
        }
        for ab in &conn.abilities {
            if let Some(f) = self.funcs.get_mut(ab.func as usize) {
                if let Some(p) = f.workers.iter().position(|&w| w == cid) {
                    f.workers.remove(p);
                }
            }
        }
        // Detach from foreground jobs; a job nobody waits for any more is abandoned
        // unless it was submitted in the background.
        for (h, _) in conn.attached {
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
        if conn.noop_sent {
            let funcs: Vec<u32> = conn.abilities.iter().map(|a| a.func).collect();
            for f in funcs {
                if self.has_runnable(f) {
                    self.wake(f);
                }
            }
        }
    }

    fn release_unique(&mut self, h: u64) {
        if let Some(job) = self.jobs.get(&h) {
            if let Some(k) = job.key() {
                self.uniques.remove(job.func, k, h);
            }
        }
    }

    fn has_runnable(&self, f: u32) -> bool {
        self.funcs
            .get(f as usize)
            .is_some_and(|f| f.queues.iter().any(|q| !q.is_empty()))
    }

    fn out(&self, cid: ConnId) -> Option<&Arc<Outbox>> {
        self.conns.get(&cid).map(|c| &c.out)
    }

    fn reply(&self, cid: ConnId, f: impl FnOnce(&mut BytesMut)) {
        if let Some(o) = self.out(cid) {
            o.write(f);
        }
    }

    fn reply_error(&self, cid: ConnId, code: &str, text: &str) {
        self.reply(cid, |b| put_error(b, code, text));
    }

    // ---------------------------------------------------------------- requests

    /// Handles one request packet from connection `cid`.
    pub(crate) fn handle_packet(&mut self, cid: ConnId, p: Packet) -> Flow {
        match p {
            Packet::EchoReq { data } => {
                self.reply(cid, |b| put_pkt(b, PacketType::EchoRes, &[&data]));
            }
            Packet::SubmitJob {
                function,
                unique,
                data,
                priority,
                background,
            } => self.submit(cid, &function, unique, data, priority, background, None, 0),
            Packet::SubmitReduceJob {
                function,
                unique,
                reducer,
                data,
                background,
                ..
            } => self.submit(
                cid,
                &function,
                unique,
                data,
                Priority::Normal,
                background,
                Some(&reducer),
                0,
            ),
            Packet::SubmitJobEpoch {
                function,
                unique,
                when,
                data,
            } => self.submit(
                cid,
                &function,
                unique,
                data,
                Priority::Normal,
                true,
                None,
                when,
            ),
            Packet::GrabJob => self.grab(cid, PacketType::JobAssign),
            Packet::GrabJobUniq => self.grab(cid, PacketType::JobAssignUniq),
            Packet::GrabJobAll => self.grab(cid, PacketType::JobAssignAll),
            Packet::PreSleep => self.pre_sleep(cid),
            Packet::CanDo { function } => self.can_do(cid, &function, 0),
            Packet::CanDoTimeout { function, timeout } => {
                let t = if timeout == 0 { 0 } else { timeout.max(1000) };
                self.can_do(cid, &function, t)
            }
            Packet::CantDo { function } => self.cant_do(cid, Some(&function)),
            Packet::ResetAbilities => self.cant_do(cid, None),
            Packet::SetClientId { id } => {
                if let Some(c) = self.conns.get_mut(&cid) {
                    let n = id.len().min(MAX_CLIENT_ID);
                    // Copied: a slice would pin the whole read buffer.
                    c.client_id = Bytes::copy_from_slice(&id[..n]);
                }
            }
            Packet::OptionReq { name } => {
                if name.eq_ignore_ascii_case(b"exceptions") {
                    if let Some(c) = self.conns.get_mut(&cid) {
                        c.exceptions = true;
                    }
                    self.reply(cid, |b| put_pkt(b, PacketType::OptionRes, &[&name]));
                } else {
                    self.reply_error(
                        cid,
                        "UNKNOWN_OPTION",
                        "Server does not recognize given option",
                    );
                }
            }
            Packet::GetStatus { handle } => {
                let job = parse_handle(&self.prefix, &handle).and_then(|n| self.jobs.get(&n));
                let (known, running, num, den) = match job {
                    Some(j) => (true, j.running(), j.num, j.den),
                    None => (false, false, 0, 0),
                };
                self.reply(cid, |b| {
                    put_status(
                        b,
                        PacketType::StatusRes,
                        &handle,
                        known,
                        running,
                        num,
                        den,
                        None,
                    )
                });
            }
            Packet::GetStatusUnique { unique } => {
                let jobs = &self.jobs;
                let job = self
                    .funcs
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.alive)
                    .find_map(|(i, _)| {
                        let fid = i as u32;
                        self.uniques.get(fid, &unique, |h| {
                            jobs.get(&h)
                                .is_some_and(|j| j.func == fid && j.key() == Some(&unique[..]))
                        })
                    })
                    .and_then(|h| self.jobs.get(&h));
                let (known, running, num, den, clients) = match job {
                    Some(j) => (true, j.running(), j.num, j.den, j.clients.len() as u64),
                    None => (false, false, 0, 0, 0),
                };
                self.reply(cid, |b| {
                    put_status(
                        b,
                        PacketType::StatusResUnique,
                        &unique,
                        known,
                        running,
                        num,
                        den,
                        Some(clients),
                    )
                });
            }
            Packet::WorkStatus {
                handle,
                numerator,
                denominator,
            } => {
                let Some(n) = self.held_job(cid, &handle) else {
                    self.reply_error(cid, "JOB_NOT_FOUND", "Job given in work result not found");
                    return Flow::Continue;
                };
                if let Some(job) = self.jobs.get_mut(&n) {
                    job.num = atoi(&numerator).clamp(0, u32::MAX as i64) as u32;
                    job.den = atoi(&denominator).clamp(0, u32::MAX as i64) as u32;
                }
                self.forward(n, |b, _| {
                    put_pkt(
                        b,
                        PacketType::WorkStatus,
                        &[&handle, &numerator, &denominator],
                    )
                });
            }
            Packet::WorkData { handle, data } => {
                self.work_data(cid, PacketType::WorkData, &handle, &data)
            }
            Packet::WorkWarning { handle, data } => {
                self.work_data(cid, PacketType::WorkWarning, &handle, &data)
            }
            Packet::WorkComplete { handle, data } => {
                let Some(n) = self.held_job(cid, &handle) else {
                    self.reply_error(cid, "JOB_NOT_FOUND", "Job given in work result not found");
                    return Flow::Continue;
                };
                self.forward(n, |b, _| {
                    put_pkt(b, PacketType::WorkComplete, &[&handle, &data])
                });
                self.finish(n);
            }
            Packet::WorkFail { handle } => {
                if handle.len() >= 64 {
                    self.reply_error(
                        cid,
                        "ARGUMENT_TOO_LARGE",
                        "Error occurred due to GEARMAND_JOB_HANDLE_SIZE being too small from snprintf",
                    );
                    return Flow::Continue;
                }
                let Some(n) = self.held_job(cid, &handle) else {
                    self.reply_error(cid, "JOB_NOT_FOUND", "Job given in work result not found");
                    return Flow::Continue;
                };
                self.forward(n, |b, _| put_pkt(b, PacketType::WorkFail, &[&handle]));
                self.finish(n);
            }
            Packet::WorkException { handle, data } => {
                let Some(n) = self.held_job(cid, &handle) else {
                    self.reply_error(
                        cid,
                        "JOB_NOT_FOUND",
                        "An exception was received for a job that does not exist",
                    );
                    return Flow::Continue;
                };
                self.forward(n, |b, exceptions| {
                    if exceptions {
                        put_pkt(b, PacketType::WorkException, &[&handle, &data])
                    } else {
                        // gearmand appends a NUL here (`handle\0`); libgearman
                        // clients such as the C `gearman` tool then never match
                        // the handle and hang. The plain form works everywhere.
                        put_pkt(b, PacketType::WorkFail, &[&handle])
                    }
                });
                self.finish(n);
            }
            _ => {
                self.reply_error(cid, "INVALID_COMMAND", "Command not expected");
            }
        }
        Flow::Continue
    }

    /// WORK_DATA / WORK_WARNING (kept apart because they share a payload shape).
    pub(crate) fn work_data(&mut self, cid: ConnId, kind: PacketType, handle: &[u8], data: &[u8]) {
        let Some(n) = self.held_job(cid, handle) else {
            self.reply_error(cid, "JOB_NOT_FOUND", "Job does not exist on server");
            return;
        };
        self.forward(n, |b, _| put_pkt(b, kind, &[handle, data]));
    }

    /// The job `handle` if this connection currently holds it.
    fn held_job(&self, cid: ConnId, handle: &[u8]) -> Option<u64> {
        let n = parse_handle(&self.prefix, handle)?;
        let job = self.jobs.get(&n)?;
        (job.worker == cid).then_some(n)
    }

    /// Sends a packet to every client attached to job `n`, most recent first.
    fn forward(&self, n: u64, f: impl Fn(&mut BytesMut, bool)) {
        let Some(job) = self.jobs.get(&n) else { return };
        for &c in job.clients.iter().rev() {
            if let Some(conn) = self.conns.get(&c) {
                let ex = conn.exceptions;
                conn.out.write(|b| f(b, ex));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn submit(
        &mut self,
        cid: ConnId,
        function: &[u8],
        unique: Bytes,
        data: Bytes,
        priority: Priority,
        background: bool,
        reducer: Option<&[u8]>,
        when: i64,
    ) {
        if unique.len() > MAX_UNIQUE {
            self.reply_error(cid, "ARGUMENT_TOO_LARGE", "Unique value too large");
            return;
        }
        let fid = self.func_id(function);
        if let Some(key) = submission_key(&unique, &data) {
            if let Some(h) = self.lookup_unique(fid, key) {
                if let Some(job) = self.jobs.get_mut(&h) {
                    if !background {
                        job.clients.push(cid);
                        if let Some(c) = self.conns.get_mut(&cid) {
                            *c.attached.entry(h).or_insert(0) += 1;
                        }
                    }
                    let hb = self.handle(h);
                    self.reply(cid, |b| put_pkt(b, PacketType::JobCreated, &[&hb]));
                    return;
                }
            }
        }
        let prio = priority.as_index();
        let f = &self.funcs[fid as usize];
        let limit = f.maxqueue[prio];
        if limit > 0 && f.total >= limit as u64 {
            self.reply_error(cid, "QUEUE_ERROR", "Job queue is full");
            return;
        }
        let reducer = reducer
            .filter(|r| !r.is_empty())
            .map(Bytes::copy_from_slice);
        let h = self.create_job(
            fid,
            prio as u8,
            &unique,
            &data,
            reducer,
            when,
            background,
            if background { None } else { Some(cid) },
        );
        let hb = self.handle(h);
        if background && self.persist.is_some() {
            let State {
                persist,
                jobs,
                conns,
                funcs,
                reducers,
                ..
            } = self;
            let (Some(p), Some(job), Some(conn)) =
                (persist.as_mut(), jobs.get_mut(&h), conns.get_mut(&cid))
            else {
                return;
            };
            let id = p.next_id;
            p.next_id += 1;
            job.durable = id;
            let ticket = conn.next_ticket;
            conn.next_ticket += 1;
            conn.out
                .gate(ticket, |b| put_pkt(b, PacketType::JobCreated, &[&hb]));
            let row = StoredJob {
                id,
                function: funcs[fid as usize].name.clone(),
                unique,
                priority: prio as u8,
                when,
                reducer: reducers.get(&h).cloned().unwrap_or_default(),
                data,
            };
            let ack = Ack {
                out: conn.out.clone(),
                ticket,
                handle: h,
            };
            if p.tx
                .send(Op::Insert {
                    row,
                    ack: Some(ack),
                })
                .is_err()
            {
                conn.out.kill();
            }
        } else {
            self.reply(cid, |b| put_pkt(b, PacketType::JobCreated, &[&hb]));
        }
    }

    /// The live (not abandoned/cancelled) job with this function and key.
    fn lookup_unique(&self, fid: u32, key: &[u8]) -> Option<u64> {
        let jobs = &self.jobs;
        let h = self.uniques.get(fid, key, |h| {
            jobs.get(&h)
                .is_some_and(|j| j.func == fid && j.key() == Some(key))
        })?;
        jobs.get(&h).filter(|j| !j.ignore).map(|_| h)
    }

    /// Creates a job and queues it (or schedules it, for a future epoch time).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create_job(
        &mut self,
        fid: u32,
        prio: u8,
        unique: &[u8],
        data: &[u8],
        reducer: Option<Bytes>,
        when: i64,
        background: bool,
        client: Option<ConnId>,
    ) -> u64 {
        let h = self.next_handle;
        self.next_handle += 1;
        let delayed = when > unix_now();
        let mut clients = Vec::new();
        if let Some(c) = client {
            clients.push(c);
            if let Some(conn) = self.conns.get_mut(&c) {
                *conn.attached.entry(h).or_insert(0) += 1;
            }
        }
        let mut payload = Vec::with_capacity(unique.len() + data.len());
        payload.extend_from_slice(unique);
        payload.extend_from_slice(data);
        let job = Job {
            payload: payload.into_boxed_slice(),
            ulen: unique.len() as u32,
            func: fid,
            prio,
            ignore: false,
            background,
            delayed,
            retries: 0,
            num: 0,
            den: 0,
            assign_gen: 0,
            worker: 0,
            durable: 0,
            clients,
        };
        if let Some(k) = job.key() {
            let jobs = &self.jobs;
            self.uniques.insert(fid, k, h, |old| {
                jobs.get(&old)
                    .is_some_and(|j| j.func == fid && j.key() == Some(k))
            });
        }
        self.jobs.insert(h, Box::new(job));
        if self.jobs.len() > self.peak_jobs {
            self.peak_jobs = self.jobs.len();
        }
        if let Some(r) = reducer {
            self.reducers.insert(h, r);
        }
        let f = &mut self.funcs[fid as usize];
        f.total += 1;
        f.waiting[prio as usize] += 1;
        if delayed {
            self.schedule_epoch(h, when);
        } else {
            f.queues[prio as usize].push_back(h);
            self.wake(fid);
        }
        h
    }

    fn schedule_epoch(&self, h: u64, when: i64) {
        let shared = self.shared.clone();
        let delay = Duration::from_secs((when - unix_now()).max(0) as u64);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(s) = shared.upgrade() {
                s.state.lock().epoch_due(h);
                crate::outbox::flush_dirty();
            }
        });
    }

    fn epoch_due(&mut self, h: u64) {
        let Some(job) = self.jobs.get_mut(&h) else {
            return;
        };
        if !job.delayed {
            return;
        }
        job.delayed = false;
        let (fid, prio) = (job.func, job.prio);
        self.funcs[fid as usize].queues[prio as usize].push_back(h);
        self.wake(fid);
    }

    /// NOOPs sleeping workers that can do `fid` (at most `worker_wakeup`, 0 = all).
    fn wake(&mut self, fid: u32) {
        let limit = self.cfg.worker_wakeup;
        let State { funcs, conns, .. } = self;
        let f = &mut funcs[fid as usize];
        let n = f.workers.len();
        if n == 0 {
            return;
        }
        let mut woken = 0;
        for i in 0..n {
            let idx = (f.wake_pos + i) % n;
            let cid = f.workers[idx];
            if let Some(c) = conns.get_mut(&cid) {
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

    fn pre_sleep(&mut self, cid: ConnId) {
        let runnable = match self.conns.get(&cid) {
            Some(c) => c.abilities.iter().any(|a| self.has_runnable(a.func)),
            None => return,
        };
        if let Some(c) = self.conns.get_mut(&cid) {
            if runnable {
                c.out.write(|b| put_pkt(b, PacketType::Noop, &[]));
            } else {
                c.sleeping = true;
                c.noop_sent = false;
            }
        }
    }

    fn can_do(&mut self, cid: ConnId, function: &[u8], timeout_ms: u32) {
        let fid = self.func_id(function);
        if let Some(c) = self.conns.get_mut(&cid) {
            c.abilities.push(Ability {
                func: fid,
                timeout_ms,
            });
            self.funcs[fid as usize].workers.push(cid);
        }
    }

    /// CANT_DO (one function) or RESET_ABILITIES (`None`): unregister and
    /// requeue the jobs held for the affected functions.
    fn cant_do(&mut self, cid: ConnId, function: Option<&[u8]>) {
        let fid = match function {
            Some(name) => match self.find_func(name) {
                Some(f) => Some(f),
                None => return,
            },
            None => None,
        };
        let Some(c) = self.conns.get_mut(&cid) else {
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
                if let Some(c) = self.conns.get_mut(&cid) {
                    c.holding.retain(|&x| x != h);
                }
                self.requeue_lost(h, cid);
            }
        }
    }

    fn grab(&mut self, cid: ConnId, kind: PacketType) {
        let found = self.take_job(cid);
        let State {
            jobs,
            conns,
            funcs,
            prefix,
            reducers,
            ..
        } = self;
        let Some(conn) = conns.get_mut(&cid) else {
            return;
        };
        conn.sleeping = false;
        conn.noop_sent = false;
        let Some((h, timeout_ms)) = found else {
            conn.out.write(|b| put_pkt(b, PacketType::NoJob, &[]));
            return;
        };
        let Some(job) = jobs.get_mut(&h) else { return };
        job.worker = cid;
        job.assign_gen = job.assign_gen.wrapping_add(1);
        let f = &mut funcs[job.func as usize];
        f.waiting[job.prio as usize] = f.waiting[job.prio as usize].saturating_sub(1);
        f.running += 1;
        conn.holding.push(h);
        let hb = HandleBuf::new(prefix, h);
        let fname = &f.name;
        let reducer = if kind == PacketType::JobAssignAll {
            reducers.get(&h)
        } else {
            None
        };
        conn.out.write(|b| match (kind, reducer) {
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
            let gen = job.assign_gen;
            let shared = self.shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(timeout_ms as u64)).await;
                if let Some(s) = shared.upgrade() {
                    s.state.lock().job_timed_out(h, cid, gen);
                    crate::outbox::flush_dirty();
                }
            });
        }
    }

    /// Pops the best job for this worker: HIGH before NORMAL before LOW across
    /// all its functions, FIFO within a priority, functions rotated round-robin.
    fn take_job(&mut self, cid: ConnId) -> Option<(u64, u32)> {
        let mut reaped = Vec::new();
        let mut found = None;
        {
            let State {
                conns, funcs, jobs, ..
            } = self;
            let conn = conns.get_mut(&cid)?;
            let n = conn.abilities.len();
            'search: for prio in 0..3 {
                for i in 0..n {
                    let idx = (conn.rr + i) % n;
                    let ab = &conn.abilities[idx];
                    let f = &mut funcs[ab.func as usize];
                    while let Some(h) = f.queues[prio].pop_front() {
                        let Some(job) = jobs.get(&h) else { continue };
                        if job.ignore {
                            // Abandoned or cancelled while waiting: reap it.
                            reaped.push(h);
                            continue;
                        }
                        conn.rr = idx + 1;
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

    fn job_timed_out(&mut self, h: u64, cid: ConnId, gen: u32) {
        let Some(job) = self.jobs.get(&h) else { return };
        if job.worker != cid || job.assign_gen != gen {
            return;
        }
        if self.cfg.timeout_requeue {
            tracing::info!(
                "worker timeout reached on job {}, requeueing it",
                String::from_utf8_lossy(&self.handle(h))
            );
            if let Some(c) = self.conns.get_mut(&cid) {
                c.holding.retain(|&x| x != h);
            }
            self.requeue_lost(h, cid);
            return;
        }
        tracing::info!(
            "worker timeout reached on job {}, failing it",
            String::from_utf8_lossy(&self.handle(h))
        );
        let hb = self.handle(h);
        self.forward(h, |b, _| put_pkt(b, PacketType::WorkFail, &[&hb]));
        self.finish(h);
    }

    /// A worker lost job `h` (disconnect, CANT_DO, RESET_ABILITIES): back to
    /// the head of its queue, or failed once `--job-retries` assignments were used.
    fn requeue_lost(&mut self, h: u64, cid: ConnId) {
        let Some(job) = self.jobs.get_mut(&h) else {
            return;
        };
        if job.worker != cid {
            return;
        }
        job.retries += 1;
        let (fid, prio) = (job.func, job.prio as usize);
        let retries = self.cfg.job_retries;
        if job.ignore || (retries > 0 && job.retries >= retries) {
            if !job.ignore {
                tracing::warn!(
                    "dropped job due to max retry count: {}",
                    String::from_utf8_lossy(&self.handle(h))
                );
                let hb = self.handle(h);
                self.forward(h, |b, _| put_pkt(b, PacketType::WorkFail, &[&hb]));
            }
            self.finish(h);
            return;
        }
        job.worker = 0;
        job.num = 0;
        job.den = 0;
        let f = &mut self.funcs[fid as usize];
        f.running = f.running.saturating_sub(1);
        f.waiting[prio] += 1;
        f.queues[prio].push_front(h);
        self.wake(fid);
    }

    /// Removes a job that ended (completed, failed, dropped) or was reaped.
    fn finish(&mut self, h: u64) {
        self.discard(h);
    }

    /// Removes job `h` and everything that refers to it.
    fn discard(&mut self, h: u64) {
        let Some(job) = self.jobs.remove(&h) else {
            return;
        };
        if let Some(k) = job.key() {
            self.uniques.remove(job.func, k, h);
        }
        if !self.reducers.is_empty() {
            self.reducers.remove(&h);
        }
        let f = &mut self.funcs[job.func as usize];
        f.total = f.total.saturating_sub(1);
        if job.running() {
            f.running = f.running.saturating_sub(1);
            if let Some(c) = self.conns.get_mut(&job.worker) {
                if let Some(p) = c.holding.iter().position(|&x| x == h) {
                    c.holding.swap_remove(p);
                }
            }
        } else {
            f.waiting[job.prio as usize] = f.waiting[job.prio as usize].saturating_sub(1);
        }
        shrink_queue(&mut f.queues[job.prio as usize]);
        for c in &job.clients {
            if let Some(conn) = self.conns.get_mut(c) {
                if let std::collections::hash_map::Entry::Occupied(mut e) = conn.attached.entry(h) {
                    let c = e.get_mut();
                    *c = c.saturating_sub(1);
                    if *e.get() == 0 {
                        e.remove();
                    }
                }
            }
        }
        if job.durable != 0 {
            if let Some(p) = self.persist.as_ref() {
                let _ = p.tx.send(Op::Delete(job.durable));
            }
        }
        shrink(&mut self.jobs);
        if self.peak_jobs > 65536 && self.jobs.len() * 4 < self.peak_jobs {
            // Most of a large queue drained: give the memory back to the OS.
            self.peak_jobs = self.jobs.len();
            self.trim_requested = true;
        }
    }

    /// Admin `cancel job`: clients get WORK_FAIL, the stored copy is deleted,
    /// a waiting job is reaped when reached, a running one finishes unseen.
    pub(crate) fn cancel_job(&mut self, h: u64) -> bool {
        if !self.jobs.contains_key(&h) {
            return false;
        }
        let hb = self.handle(h);
        self.forward(h, |b, _| put_pkt(b, PacketType::WorkFail, &[&hb]));
        self.release_unique(h);
        let Some(job) = self.jobs.get_mut(&h) else {
            return false;
        };
        let clients = std::mem::take(&mut job.clients);
        job.ignore = true;
        job.background = false;
        let durable = std::mem::replace(&mut job.durable, 0);
        let delayed = job.delayed;
        for c in clients {
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.attached.remove(&h);
            }
        }
        if durable != 0 {
            if let Some(p) = self.persist.as_ref() {
                let _ = p.tx.send(Op::Delete(durable));
            }
        }
        if delayed {
            // Never reaches a queue: remove it now. (A waiting job is reaped
            // by the next grab that reaches it; a running one finishes unseen.)
            self.discard(h);
        }
        true
    }

    /// Jobs whose insert failed to commit are abandoned (their clients were disconnected).
    pub(crate) fn abandon_unpersisted(&mut self, handles: &[u64]) {
        for &h in handles {
            if let Some(job) = self.jobs.get_mut(&h) {
                job.durable = 0;
                job.background = false;
                if job.clients.is_empty() {
                    job.ignore = true;
                }
            }
        }
    }

    /// Re-creates background jobs read from the persistent queue at startup.
    pub(crate) fn restore(&mut self, rows: Vec<StoredJob>) -> usize {
        let mut dups = Vec::new();
        let mut n = 0;
        for row in rows {
            let fid = self.func_id(&row.function);
            if let Some(k) = submission_key(&row.unique, &row.data) {
                if self.lookup_unique(fid, k).is_some() {
                    dups.push(row.id);
                    continue;
                }
            }
            let reducer = (!row.reducer.is_empty()).then_some(row.reducer);
            let h = self.create_job(
                fid,
                row.priority.min(2),
                &row.unique,
                &row.data,
                reducer,
                row.when,
                true,
                None,
            );
            if let Some(j) = self.jobs.get_mut(&h) {
                j.durable = row.id;
            }
            n += 1;
        }
        if let Some(p) = self.persist.as_ref() {
            for id in dups {
                let _ = p.tx.send(Op::Delete(id));
            }
        }
        n
    }
}

/// Gives a queue's memory back once it is mostly empty.
fn shrink_queue(q: &mut VecDeque<u64>) {
    let cap = q.capacity();
    if cap > 4096 && q.len() * 8 < cap {
        q.shrink_to(q.len() * 2);
    }
}

#[allow(clippy::too_many_arguments)]
fn put_status(
    b: &mut BytesMut,
    kind: PacketType,
    first: &[u8],
    known: bool,
    running: bool,
    num: u32,
    den: u32,
    clients: Option<u64>,
) {
    let mut tmp = BytesMut::with_capacity(64);
    let mut n1 = BytesMut::new();
    crate::wire::put_dec(&mut n1, num as u64);
    let mut d1 = BytesMut::new();
    crate::wire::put_dec(&mut d1, den as u64);
    let k: &[u8] = if known { b"1" } else { b"0" };
    let r: &[u8] = if running { b"1" } else { b"0" };
    match clients {
        Some(c) => {
            crate::wire::put_dec(&mut tmp, c);
            put_pkt(b, kind, &[first, k, r, &n1, &d1, &tmp]);
        }
        None => put_pkt(b, kind, &[first, k, r, &n1, &d1]),
    }
}
