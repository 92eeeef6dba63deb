//! Submissions: SUBMIT_JOB* requests become jobs, and a submission whose
//! unique key matches a live job of the same function joins it instead
//! (coalescing). Separate from scheduling because it only fills queues; who
//! runs a job is [`super::schedule`]'s business.

use bytes::Bytes;
use polygear::protocol::{PacketType, Priority};

use super::schedule::{function_name_too_long, MAX_FUNCTION_NAME};
use super::{unix_now, ConnId, Job, State, HANDLE_BLOCK};
use crate::queue::{Ack, Op, StoredJob};
use crate::wire::put_pkt;

/// Longest unique id accepted (gearmand rejects longer than 64 bytes).
const MAX_UNIQUE: usize = 64;

/// The coalescing key of a submission (see [`Job::key`]).
pub(super) fn submission_key<'a>(unique: &'a [u8], data: &'a [u8]) -> Option<&'a [u8]> {
    let k = if unique == b"-" { data } else { unique };
    (!k.is_empty()).then_some(k)
}

impl State {
    /// SUBMIT_JOB*: joins the live job with the same key, or creates one and
    /// answers JOB_CREATED (for a durable background job, once it is stored).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn submit(
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
        // SUBMIT_RETAIN applies to the next background submission only,
        // also when it is refused (it never carries over to a later one).
        let retain = if background { self.take_retain(cid) } else { 0 };
        if unique.len() > MAX_UNIQUE {
            self.reply_error(cid, "ARGUMENT_TOO_LARGE", "Unique value too large");
            return;
        }
        if function.len() > MAX_FUNCTION_NAME {
            self.metrics.refused += 1;
            self.reply_error(cid, "ARGUMENT_TOO_LARGE", &function_name_too_long(function));
            return;
        }
        let fid = self.func_id(function);
        if let Some(key) = submission_key(&unique, &data) {
            if let Some(h) = self.lookup_unique(fid, key) {
                if let Some(job) = self.jobs.get_mut(&h) {
                    job.retain = job.retain.max(retain);
                    if !background {
                        job.clients.push(cid);
                        if let Some(c) = self.peers.get_mut(&cid) {
                            *c.attached.entry(h).or_insert(0) += 1;
                        }
                    }
                    let hb = self.handle(h);
                    self.reply(cid, |b| put_pkt(b, PacketType::JobCreated, &[&hb]));
                    return;
                }
            }
            if self.answer_from_window(cid, function, key, background, retain) {
                return;
            }
        }
        if background && self.persist.is_some() && self.lease_until.is_some() && !self.holds_lease()
        {
            self.metrics.queue_refused += 1;
            self.reply_error(
                cid,
                "QUEUE_ERROR",
                "This server lost its lease on the shared queue (database unreachable?); submit to another server",
            );
            return;
        }
        let prio = priority.as_index();
        let f = &self.funcs[fid];
        let limit = f.maxqueue[prio];
        if limit > 0 && f.total >= limit as u64 {
            self.reply_error(cid, "QUEUE_ERROR", "Job queue is full");
            return;
        }
        let reducer = reducer
            .filter(|r| !r.is_empty())
            .map(Bytes::copy_from_slice);
        // gearmand's table layouts key rows by (function, unique): a job
        // without a unique of its own (empty, or `-` for "the data") gets a
        // generated one, or it would replace another job's row.
        let unique = match self.persist.as_mut() {
            Some(p) if background && p.keyed && (unique.is_empty() || &unique[..] == b"-") => {
                p.generate_unique()
            }
            _ => unique,
        };
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
        if let Some(job) = self.jobs.get_mut(&h) {
            job.retain = retain;
        }
        let hb = self.handle(h);
        if background && self.persist.is_some() {
            let State {
                persist,
                jobs,
                peers,
                funcs,
                reducers,
                ..
            } = self;
            let (Some(p), Some(job), Some(peer)) =
                (persist.as_mut(), jobs.get_mut(&h), peers.get_mut(&cid))
            else {
                return;
            };
            let id = p.next_id;
            p.next_id += 1;
            job.durable = id;
            let ticket = peer.next_ticket;
            peer.next_ticket += 1;
            peer.out
                .gate(ticket, |b| put_pkt(b, PacketType::JobCreated, &[&hb]));
            let row = StoredJob {
                id,
                function: funcs[fid].name.clone(),
                unique,
                priority: prio as u8,
                when,
                reducer: reducers.get(&h).cloned().unwrap_or_default(),
                data,
                handle: h,
                retain,
            };
            let ack = Ack {
                out: peer.out.clone(),
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
                peer.out.kill();
            }
        } else {
            self.reply(cid, |b| put_pkt(b, PacketType::JobCreated, &[&hb]));
        }
    }

    /// Gives job `h` a row id in the durable store and returns its row, built
    /// from the job (to run now); `None` without a store. For the rare
    /// servers-side submissions (periodic firings, dead jobs requeued): a
    /// client's submission builds its row from the packet's buffers instead.
    pub(super) fn stored_row(&mut self, h: u64) -> Option<StoredJob> {
        let State {
            persist,
            jobs,
            funcs,
            reducers,
            ..
        } = self;
        let (p, job) = (persist.as_mut()?, jobs.get_mut(&h)?);
        let id = p.next_id;
        p.next_id += 1;
        job.durable = id;
        Some(StoredJob {
            id,
            function: funcs[job.func].name.clone(),
            unique: Bytes::copy_from_slice(job.unique()),
            priority: job.prio,
            when: 0,
            reducer: reducers.get(&h).cloned().unwrap_or_default(),
            data: Bytes::copy_from_slice(job.data()),
            handle: h,
            retain: job.retain,
        })
    }

    /// The live (not abandoned/cancelled) job with this function and key.
    pub(super) fn lookup_unique(&self, fid: u32, key: &[u8]) -> Option<u64> {
        let jobs = &self.jobs;
        let h = self.uniques.get(fid, key, |h| {
            jobs.get(&h)
                .is_some_and(|j| j.func == fid && j.key() == Some(key))
        })?;
        jobs.get(&h).filter(|j| !j.ignore).map(|_| h)
    }

    /// Creates a job and queues it (or schedules it, for a future epoch time).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn create_job(
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
        if self.next_handle + HANDLE_BLOCK / 2 >= self.handle_ceiling && self.persist.is_some() {
            self.reserve_handles();
        }
        let now = unix_now();
        let delayed = when > now;
        let mut clients = Vec::new();
        if let Some(c) = client {
            clients.push(c);
            if let Some(peer) = self.peers.get_mut(&c) {
                *peer.attached.entry(h).or_insert(0) += 1;
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
            attempts: 0,
            num: 0,
            den: 0,
            assign_gen: 0,
            worker: 0,
            durable: 0,
            clients,
            since: std::time::Instant::now(),
            cancelled: false,
            retain: 0,
            submitted: now,
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
        self.count_submitted(fid, prio);
        let f = &mut self.funcs[fid];
        f.total += 1;
        f.waiting[prio as usize] += 1;
        self.funcs.touch(fid);
        if delayed {
            self.schedule_epoch(h, when);
        } else {
            self.enqueue(fid, prio as usize, h, false);
            self.wake(fid);
        }
        h
    }

    /// Drops job `h` from the unique index (a new submission then makes a new job).
    pub(super) fn release_unique(&mut self, h: u64) {
        if let Some(job) = self.jobs.get(&h) {
            if let Some(k) = job.key() {
                self.uniques.remove(job.func, k, h);
            }
        }
    }
}
