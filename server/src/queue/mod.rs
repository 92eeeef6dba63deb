//! The durable queue of background jobs, behind one interface ([`Store`])
//! with one guarantee for every backend: a background job is stored
//! (committed) before its JOB_CREATED is sent, a finished (completed, failed
//! or cancelled) job is deleted, and on start the queue is reloaded.
//!
//! One dedicated thread per server ([`start`]) owns the store. It takes every
//! pending insert and delete as one batch and commits the batch in one
//! transaction or pipeline (group commit): a client that pipelines its
//! submissions pays one round trip to the database per batch, not per job.
//! Only then are the JOB_CREATED replies waiting on those inserts released.
//!
//! A failed commit (database down, disk full) acknowledges nothing: each
//! submission in it is answered `ERROR QUEUE_ERROR` instead of JOB_CREATED, in
//! its place among the connection's replies, and its job is dropped (the
//! client may submit again); the connection stays usable. Deletes of finished
//! jobs in a failed batch are retried with the next one.
//!
//! Shared stores (PostgreSQL, MySQL with a lease) let several servers use one
//! table: each row names the server holding it, every server renews a lease,
//! and a server whose lease expired has its queued jobs claimed by the others
//! ([`Store::upkeep`]). A server that cannot renew its lease in time stops
//! handing out the stored jobs it holds (see `State::lease_renewed`).

mod dead;
mod memcached;
#[cfg(feature = "mysql")]
mod mysql;
mod net;
#[cfg(feature = "postgres")]
mod postgres;
mod redis;
mod sqlite;

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::outbox::Outbox;
use crate::wire::put_error;
use crate::{QueueConfig, ServerError, Shared};
pub(crate) use dead::{DeadOp, DeadRow, Recovered};

/// Most operations committed in one batch.
const MAX_BATCH: usize = 100_000;

/// One change to the durable queue.
pub(crate) enum Op {
    Insert {
        row: StoredJob,
        ack: Option<Ack>,
    },
    Delete(StoredKey),
    /// A job held back (delayed, in no queue) until its insert commits:
    /// queued then, dropped if the store refuses or fails it. A periodic
    /// firing on a shared store: `claim` (schedule name, occurrence) is
    /// claimed in the store first ([`Store::claim_firings`]), so of the
    /// servers sharing the table only the first to claim it runs it.
    InsertHeld {
        row: StoredJob,
        claim: (String, i64),
    },
    /// A retry or dead-set change (see [`DeadOp`]).
    Dead(DeadOp),
    /// Keep (or replace) a retained result ([`Store::commit_extras`]).
    PutResult(StoredResult),
    /// Forget the retained result of this handle number.
    DeleteResult(u64),
    /// Handles below this number may have been given out: a restart starts
    /// above it (see `State::reserve_handles`).
    HandleFloor(u64),
    /// A periodic schedule changed or fired (applied before the batch's jobs).
    Schedule(ScheduleOp),
}

/// A periodic schedule as stored (see `state::periodic`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredSchedule {
    pub name: String,
    /// The cron expression as given.
    pub cron: String,
    pub function: Bytes,
    pub data: Bytes,
    /// Unix time of the last occurrence fired; 0 = never.
    pub last_fired: i64,
}

/// One change to the stored schedules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScheduleOp {
    /// Adds or replaces a schedule (by name).
    Put(StoredSchedule),
    Delete(String),
    /// The occurrence at unix time `at` fired.
    Fired {
        name: String,
        at: i64,
    },
}

/// A retained result or unique window as stored (see `state::retain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredResult {
    /// The job's handle number (the handle is `<prefix>:<number>`).
    pub handle: u64,
    pub function: Bytes,
    /// The unique key holding a window (empty: none).
    pub key: Bytes,
    /// 0 complete, 1 failed, 2 exception.
    pub state: u8,
    pub data: Bytes,
    /// Unix seconds: the entry is gone after this.
    pub expires: i64,
    /// Unix seconds: the key's window ends (0: no window).
    pub window_until: i64,
}

/// The retained-result changes of one batch.
#[derive(Debug, Default)]
pub(crate) struct ResultOps {
    pub put: Vec<StoredResult>,
    pub delete: Vec<u64>,
}

impl ResultOps {
    fn is_empty(&self) -> bool {
        self.put.is_empty() && self.delete.is_empty()
    }
}

/// The polygear extensions' changes of one batch, committed with its job
/// rows ([`Store::commit_extras`]).
#[derive(Default)]
pub(crate) struct Extras<'a> {
    /// Retry and dead-set changes.
    pub dead: Vec<&'a DeadOp>,
    /// Retained-result changes (only for stores that keep results).
    pub results: ResultOps,
    /// The highest handle floor of the batch ([`Op::HandleFloor`]).
    pub handle_floor: Option<u64>,
}

impl Extras<'_> {
    fn is_empty(&self) -> bool {
        self.dead.is_empty() && self.results.is_empty() && self.handle_floor.is_none()
    }
}

/// A JOB_CREATED reply to release once the insert is durable.
pub(crate) struct Ack {
    pub out: Arc<Outbox>,
    pub ticket: u64,
    pub handle: u64,
}

/// A background job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredJob {
    /// The server's id for the stored row (0 when the store keys rows by
    /// function and unique and the server assigns ids on restore).
    pub id: i64,
    pub function: Bytes,
    pub unique: Bytes,
    /// 0 = HIGH, 1 = NORMAL, 2 = LOW (gearmand's stored values).
    pub priority: u8,
    /// Epoch seconds to run at; 0 = now.
    pub when: i64,
    pub reducer: Bytes,
    pub data: Bytes,
    /// The job's handle number when it was stored, kept by stores that can
    /// (SQLite) so the handle survives a restart; 0: a new one is given.
    pub handle: u64,
    /// Seconds its result is retained after it ends (SUBMIT_RETAIN; 0: none).
    pub retain: u32,
}

/// Names a stored job for its delete: by id (SQLite) or by function and
/// unique (gearmand's layouts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredKey {
    pub id: i64,
    pub function: Bytes,
    pub unique: Bytes,
}

/// A store refused one insert of a batch (the rest committed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejected {
    pub id: i64,
    pub reason: String,
}

/// What a shared store's periodic upkeep found.
#[derive(Debug, Default)]
pub(crate) struct Upkeep {
    /// Until when (at the latest) this server may hand out the stored jobs
    /// it holds: the renewal's start plus the lease, less a safety margin.
    pub lease_until: Option<Instant>,
    /// The lease had expired before this renewal: other servers may have
    /// claimed this server's jobs, so the ones held in memory are forgotten
    /// and `claimed` holds what is still this server's.
    pub lapsed: bool,
    /// Jobs newly claimed (from dead servers, or re-read after a lapse).
    pub claimed: Vec<StoredJob>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// Connecting, or the connection broke (the store reconnects later).
    #[error("{0}")]
    Unavailable(String),
    /// The database answered with an error.
    #[error("{0}")]
    Failed(String),
}

/// One durable queue backend, driven by the queue thread (blocking calls).
pub(crate) trait Store: Send {
    /// Reads every job this server is to run, at start (for a shared store:
    /// its own rows, rows of no server, and rows of servers whose lease
    /// expired, claimed first).
    fn load(&mut self) -> Result<Vec<StoredJob>, StoreError>;

    /// Commits one batch: the deletes, then the inserts, atomically where the
    /// store allows it. Inserts the store refuses one by one (a job with the
    /// same function and unique held by another server) come back in the
    /// list; the others are durable when this returns `Ok`.
    fn commit(
        &mut self,
        deletes: &[&StoredKey],
        inserts: &[&StoredJob],
    ) -> Result<Vec<Rejected>, StoreError>;

    /// [`Store::commit`] plus the polygear extensions' changes of the batch
    /// (retries and the dead set, retained results), in the same transaction
    /// where the store keeps them (SQLite): a job's row is never deleted
    /// without its dead record or its result being stored. Stores that keep
    /// none (the default) ignore them: those records stay in memory (the job
    /// rows' inserts and deletes a [`DeadOp`] implies are in `deletes` and
    /// `inserts`).
    fn commit_extras(
        &mut self,
        deletes: &[&StoredKey],
        inserts: &[&StoredJob],
        extras: &Extras<'_>,
    ) -> Result<Vec<Rejected>, StoreError> {
        let _ = extras;
        if deletes.is_empty() && inserts.is_empty() {
            // Only records this store does not keep: no round trip.
            return Ok(Vec::new());
        }
        self.commit(deletes, inserts)
    }

    /// Whether [`Store::commit_extras`] stores retained results (else
    /// they are not passed to it at all).
    fn keeps_results(&self) -> bool {
        false
    }

    /// Claims occurrences `(schedule name, unix time)` of periodic jobs for
    /// this server: `true` where it is the first of the servers sharing the
    /// store to claim one. Default (a store not shared): all `true`.
    fn claim_firings(&mut self, firings: &[(&str, i64)]) -> Result<Vec<bool>, StoreError> {
        Ok(vec![true; firings.len()])
    }

    /// The handle floor kept by the store ([`Op::HandleFloor`]), at start;
    /// 0 where handles are not kept (the default).
    fn load_handle_floor(&mut self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// The retained results kept by the store, at start (the default: none).
    fn load_results(&mut self) -> Result<Vec<StoredResult>, StoreError> {
        Ok(Vec::new())
    }

    /// Whether rows are keyed by (function, unique) as in gearmand's layouts,
    /// so that every stored job needs a unique of its own.
    fn keyed(&self) -> bool;

    /// How often [`Store::upkeep`] must run; `None` for a store that is not
    /// shared.
    fn upkeep_every(&self) -> Option<Duration> {
        None
    }

    /// Renews this server's lease and claims the jobs of servers whose lease
    /// expired.
    fn upkeep(&mut self) -> Result<Upkeep, StoreError> {
        Ok(Upkeep::default())
    }

    /// Reads the retry state (attempt counts, the dead set) at start; only
    /// SQLite keeps it.
    fn load_retries(&mut self) -> Result<Recovered, StoreError> {
        Ok(Recovered::default())
    }

    /// Reads the stored periodic schedules, at start. Default: none (the
    /// store keeps no schedules; they live in memory).
    fn load_schedules(&mut self) -> Result<Vec<StoredSchedule>, StoreError> {
        Ok(Vec::new())
    }

    /// Applies schedule changes in order. Default: nothing is stored.
    fn commit_schedules(&mut self, _ops: &[ScheduleOp]) -> Result<(), StoreError> {
        Ok(())
    }

    /// The server is stopping (it hands out nothing any more): a shared store
    /// ends this server's lease, so that the others take over its queued jobs
    /// at their next claim instead of after the lease.
    fn release(&mut self) {}
}

/// Handle on the queue thread, kept in the server's state.
pub(crate) struct Persister {
    pub tx: Sender<Op>,
    pub next_id: i64,
    /// Rows are keyed by (function, unique): see [`Store::keyed`].
    pub keyed: bool,
    /// Counts the uniques generated for stored jobs that had none.
    pub generated: u64,
    /// Distinguishes generated uniques of this process from earlier ones.
    pub generation: String,
}

impl Persister {
    /// A unique for a job stored without one (keyed stores only): unique
    /// across restarts and servers, in the text form of a UUID as libgearman
    /// makes them (8-4-4-4-12 hex digits), so that a key
    /// `<function>-<unique>` splits right even when the function has a `-`.
    pub(crate) fn generate_unique(&mut self) -> Bytes {
        self.generated += 1;
        Bytes::from(format!("{}-{:012x}", self.generation, self.generated))
    }
}

/// An opened store and what was read from it at start.
pub(crate) struct Opened {
    pub store: Box<dyn Store>,
    /// The queued jobs.
    pub rows: Vec<StoredJob>,
    /// Attempt counts and the dead set (see [`DeadOp`]).
    pub recovered: Recovered,
    /// Retained results and unique windows.
    pub results: Vec<StoredResult>,
    /// Periodic schedules and their last firings.
    pub schedules: Vec<StoredSchedule>,
    /// Handles below it were given out before (0: unknown).
    pub handle_floor: u64,
}

/// Opens the configured store and reads its jobs (blocking: run it off the
/// async runtime). `None` for the in-memory queue.
pub(crate) fn open(cfg: &QueueConfig) -> Result<Option<Opened>, ServerError> {
    let mut store: Box<dyn Store> = match cfg {
        QueueConfig::Memory => return Ok(None),
        QueueConfig::Sqlite { path } => Box::new(sqlite::SqliteStore::open(path)?),
        QueueConfig::Redis {
            host,
            port,
            password,
            prefix,
        } => Box::new(redis::RedisStore::open(host, *port, password, prefix)?),
        QueueConfig::Memcached { servers, prefix } => {
            Box::new(memcached::MemcachedStore::open(servers, prefix)?)
        }
        #[cfg(feature = "postgres")]
        QueueConfig::Postgres {
            conninfo,
            table,
            lease,
        } => Box::new(postgres::PgStore::open(conninfo, table, lease.clone())?),
        #[cfg(feature = "mysql")]
        cfg @ QueueConfig::Mysql { .. } => Box::new(mysql::MysqlStore::open(cfg)?),
        #[cfg(not(feature = "postgres"))]
        QueueConfig::Postgres { .. } => return Err(not_built("PostgreSQL", "postgres")),
        #[cfg(not(feature = "mysql"))]
        QueueConfig::Mysql { .. } => return Err(not_built("MySQL", "mysql")),
    };
    let rows = store
        .load()
        .map_err(|e| ServerError::Queue(format!("reading the stored jobs: {e}")))?;
    let results = store
        .load_results()
        .map_err(|e| ServerError::Queue(format!("reading the retained results: {e}")))?;
    let recovered = store
        .load_retries()
        .map_err(|e| ServerError::Queue(format!("reading the dead set: {e}")))?;
    let schedules = store
        .load_schedules()
        .map_err(|e| ServerError::Queue(format!("reading the stored schedules: {e}")))?;
    let handle_floor = store
        .load_handle_floor()
        .map_err(|e| ServerError::Queue(format!("reading the handle floor: {e}")))?;
    Ok(Some(Opened {
        store,
        rows,
        recovered,
        results,
        schedules,
        handle_floor,
    }))
}

/// A queue this build of the server library left out (the language
/// bindings embed it without the SQL drivers).
#[allow(dead_code)]
fn not_built(what: &str, feature: &str) -> ServerError {
    ServerError::Config(format!(
        "this build has no {what} queue (polygear-server's `{feature}` feature); use polygeard"
    ))
}

/// A value for [`Persister::generation`]: the process id and start time
/// (in nanoseconds, modulo 2^48) as the first 8-4-4-4 digits of a UUID.
pub(crate) fn generation() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let part = |shift: u32| (nanos >> shift) & 0xffff;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}",
        std::process::id(),
        part(32),
        part(16),
        part(0)
    )
}

/// Starts the queue thread on an opened store.
pub(crate) fn start(
    store: Box<dyn Store>,
    rx: Receiver<Op>,
    shared: Weak<Shared>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("polygeard-queue".into())
        .spawn(move || run(store, rx, shared))
        .expect("spawn queue thread")
}

fn run(mut store: Box<dyn Store>, rx: Receiver<Op>, shared: Weak<Shared>) {
    // A shared store renewed the lease while loading, and the server fences
    // itself from that renewal on (`Server::bind`): the first upkeep is due
    // a period later.
    let every = store.upkeep_every();
    let mut last_upkeep = Instant::now();
    let mut batch: Vec<Op> = Vec::new();
    // Deletes (and result changes) whose commit failed, retried with the next batch.
    let mut retry: Vec<Op> = Vec::new();
    loop {
        let wait = match every {
            Some(e) => e.saturating_sub(last_upkeep.elapsed()),
            None if retry.is_empty() => Duration::from_secs(3600),
            None => Duration::from_secs(1),
        };
        match rx.recv_timeout(wait) {
            Ok(op) => batch.push(op),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if every.is_some_and(|e| last_upkeep.elapsed() >= e) {
            last_upkeep = Instant::now();
            upkeep(store.as_mut(), &shared);
        }
        if batch.is_empty() && retry.is_empty() {
            continue;
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        // Retried changes go first: they were made before the new ones.
        batch.splice(0..0, retry.drain(..));
        commit_schedules(store.as_mut(), &mut batch);
        commit_batch(store.as_mut(), &mut batch, &mut retry, &shared);
    }
    if !retry.is_empty() {
        // The server is stopping: one last try for the pending deletes.
        batch.append(&mut retry);
        commit_batch(store.as_mut(), &mut batch, &mut retry, &shared);
    }
    store.release();
    tracing::debug!("queue thread finished");
}

/// Takes the schedule changes out of `batch` and stores them, before the
/// batch's jobs: a firing is recorded before its job, so a crash in between
/// loses that firing rather than repeating it after the restart. A failure
/// is logged (the schedules go on in memory).
fn commit_schedules(store: &mut dyn Store, batch: &mut Vec<Op>) {
    if !batch.iter().any(|op| matches!(op, Op::Schedule(_))) {
        return;
    }
    let mut ops = Vec::new();
    batch.retain_mut(|op| match op {
        Op::Schedule(s) => {
            ops.push(std::mem::replace(s, ScheduleOp::Delete(String::new())));
            false
        }
        _ => true,
    });
    if let Err(e) = store.commit_schedules(&ops) {
        tracing::error!("storing {} schedule changes failed: {e}", ops.len());
    }
}

/// Renews the lease and hands claimed jobs to the server's state.
fn upkeep(store: &mut dyn Store, shared: &Weak<Shared>) {
    match store.upkeep() {
        Ok(u) => {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let n = u.claimed.len();
            shared.with_state(|st| {
                if u.lapsed {
                    st.lease_lost();
                }
                if let Some(until) = u.lease_until {
                    st.lease_renewed(until);
                }
                if !u.lapsed {
                    st.metrics.jobs_claimed += n as u64;
                }
                if !u.claimed.is_empty() {
                    st.restore(u.claimed);
                }
            });
            if u.lapsed {
                tracing::warn!(
                    "the queue lease had expired; re-read {n} jobs still held by this server"
                );
            } else if n > 0 {
                tracing::info!("claimed {n} queued jobs of servers whose lease expired");
            }
        }
        Err(e) => tracing::warn!("queue lease renewal failed: {e}"),
    }
}

/// The job row an operation inserts.
fn job_insert(op: &Op) -> Option<&StoredJob> {
    match op {
        Op::Insert { row, .. } | Op::InsertHeld { row, .. } => Some(row),
        Op::Dead(d) => d.job_insert(),
        _ => None,
    }
}

/// The job row an operation deletes.
fn job_delete(op: &Op) -> Option<&StoredKey> {
    match op {
        Op::Delete(k) => Some(k),
        Op::Dead(d) => d.job_delete(),
        _ => None,
    }
}

/// A batch with extension records failed to commit (`first`): commits its
/// job rows alone and, if that works, each extension record in its own
/// transaction, so one record the store can never take (a result over
/// SQLite's blob limit) cannot block every later batch. A record that fails
/// on its own is dropped and logged. If the job rows fail too, the store
/// itself is failing: the caller retries everything with the next batch.
fn commit_extras_apart(
    store: &mut dyn Store,
    deletes: &[&StoredKey],
    inserts: &[&StoredJob],
    extras: &Extras<'_>,
    first: &StoreError,
) -> Result<Vec<Rejected>, StoreError> {
    let rejected = store.commit_extras(deletes, inserts, &Extras::default())?;
    tracing::warn!("a batch with dead-set or result records failed ({first}); committed its jobs alone, the records one by one");
    let mut dropped = 0usize;
    let mut one = |e: Extras<'_>| {
        if let Err(err) = store.commit_extras(&[], &[], &e) {
            dropped += 1;
            tracing::error!(
                "a dead-set or retained-result record could not be stored, dropped: {err}"
            );
        }
    };
    for &d in &extras.dead {
        one(Extras {
            dead: vec![d],
            ..Default::default()
        });
    }
    for r in &extras.results.put {
        one(Extras {
            results: ResultOps {
                put: vec![r.clone()],
                delete: vec![],
            },
            ..Default::default()
        });
    }
    if let Some(n) = extras.handle_floor {
        one(Extras {
            handle_floor: Some(n),
            ..Default::default()
        });
    }
    for &h in &extras.results.delete {
        one(Extras {
            results: ResultOps {
                put: vec![],
                delete: vec![h],
            },
            ..Default::default()
        });
    }
    if dropped > 0 {
        tracing::error!("{dropped} dead-set or retained-result records dropped");
    }
    Ok(rejected)
}

/// Claims the periodic firings of `batch` ([`Op::InsertHeld`]) in the
/// store; the row ids of those another server claimed first (or all of
/// them if the claim failed: at most once). Empty for stores not shared.
fn claim_firings(store: &mut dyn Store, batch: &[Op]) -> HashSet<i64> {
    let held: Vec<(i64, &str, i64)> = batch
        .iter()
        .filter_map(|op| match op {
            Op::InsertHeld { row, claim } => Some((row.id, claim.0.as_str(), claim.1)),
            _ => None,
        })
        .collect();
    if held.is_empty() {
        return HashSet::new();
    }
    let claims: Vec<(&str, i64)> = held.iter().map(|&(_, n, at)| (n, at)).collect();
    match store.claim_firings(&claims) {
        Ok(won) => held
            .iter()
            .zip(won)
            .filter(|(_, won)| !won)
            .map(|(&(id, _, _), _)| id)
            .collect(),
        Err(e) => {
            tracing::warn!(
                "claiming {} periodic firings failed, not run: {e}",
                held.len()
            );
            held.iter().map(|&(id, _, _)| id).collect()
        }
    }
}

/// Commits `batch` (emptied) and answers the submissions waiting on it.
fn commit_batch(
    store: &mut dyn Store,
    batch: &mut Vec<Op>,
    retry: &mut Vec<Op>,
    shared: &Weak<Shared>,
) {
    // Periodic firings another server sharing the table claimed first are
    // not stored (and dropped below).
    let lost = claim_firings(store, batch);
    // An insert and a delete of the same job in one batch cancel out.
    let inserted: HashSet<i64> = batch.iter().filter_map(job_insert).map(|r| r.id).collect();
    let cancelled: HashSet<i64> = batch
        .iter()
        .filter_map(job_delete)
        .filter(|k| inserted.contains(&k.id))
        .map(|k| k.id)
        .collect();
    let deletes: Vec<&StoredKey> = batch
        .iter()
        .filter_map(job_delete)
        .filter(|k| !cancelled.contains(&k.id))
        .collect();
    let inserts: Vec<&StoredJob> = batch
        .iter()
        .filter_map(job_insert)
        .filter(|r| !cancelled.contains(&r.id) && !lost.contains(&r.id))
        .collect();
    let mut extras = Extras {
        dead: batch
            .iter()
            .filter_map(|op| match op {
                Op::Dead(d) => Some(d),
                _ => None,
            })
            .collect(),
        results: ResultOps::default(),
        handle_floor: batch
            .iter()
            .filter_map(|op| match op {
                Op::HandleFloor(n) => Some(*n),
                _ => None,
            })
            .max(),
    };
    for op in batch.iter().filter(|_| store.keeps_results()) {
        match op {
            Op::PutResult(r) => extras.results.put.push(r.clone()),
            Op::DeleteResult(h) => extras.results.delete.push(*h),
            _ => {}
        }
    }
    let result = if deletes.is_empty() && inserts.is_empty() && extras.is_empty() {
        Ok(Vec::new())
    } else {
        let started = std::time::Instant::now();
        let mut r = store.commit_extras(&deletes, &inserts, &extras);
        if let Err(e) = &r {
            if !extras.is_empty() {
                r = commit_extras_apart(store, &deletes, &inserts, &extras, e);
            }
        }
        if let Some(shared) = shared.upgrade() {
            shared
                .commits
                .observe(started.elapsed(), deletes.len() + inserts.len());
        }
        r
    };
    let (error, rejected) = match result {
        Ok(rejected) => (
            None,
            rejected
                .into_iter()
                .map(|r| (r.id, r.reason))
                .collect::<std::collections::HashMap<_, _>>(),
        ),
        Err(e) => {
            tracing::error!("persistent queue write failed: {e}");
            (
                Some(format!("The job could not be stored: {e}")),
                Default::default(),
            )
        }
    };
    let mut failed = Vec::new();
    let mut acks = Vec::new();
    let mut held = Vec::new();
    for op in batch.drain(..) {
        match op {
            Op::InsertHeld { row, .. } => {
                if error.is_some() || rejected.contains_key(&row.id) || lost.contains(&row.id) {
                    failed.push(row.handle);
                } else {
                    held.push(row.handle);
                }
            }
            Op::Insert {
                row,
                ack: Some(ack),
            } => {
                let reason = error.as_ref().or_else(|| rejected.get(&row.id));
                if let Some(msg) = reason {
                    // The client must not believe the job is durable.
                    ack.out
                        .fail_gate(ack.ticket, |b| put_error(b, "QUEUE_ERROR", msg));
                    failed.push(ack.handle);
                }
                acks.push(ack);
            }
            Op::Delete(k) if error.is_some() && !cancelled.contains(&k.id) => {
                retry.push(Op::Delete(k))
            }
            op @ (Op::PutResult(_) | Op::DeleteResult(_))
                if error.is_some() && store.keeps_results() =>
            {
                retry.push(op)
            }
            // Retried with the next batch; a requeued job already finished
            // (its insert and delete cancelled out) only leaves the dead set.
            Op::Dead(DeadOp::Unbury { dead_id, row }) if error.is_some() => {
                retry.push(Op::Dead(if cancelled.contains(&row.id) {
                    DeadOp::Forget(dead_id)
                } else {
                    DeadOp::Unbury { dead_id, row }
                }))
            }
            Op::Dead(d) if error.is_some() => retry.push(Op::Dead(d)),
            op @ Op::HandleFloor(_) if error.is_some() => retry.push(op),
            _ => {}
        }
    }
    // Refused jobs are abandoned before the replies go out: a client told
    // ERROR must not then see its job handed to a worker.
    if !failed.is_empty() || !held.is_empty() {
        if let Some(shared) = shared.upgrade() {
            shared.with_state(|st| {
                st.abandon_unpersisted(&failed);
                st.release_held(&held);
            });
        }
    }
    for ack in acks {
        ack.out.release(ack.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refuses any batch holding the retained result of handle 13, as a
    /// store refuses a record it can never take.
    #[derive(Default)]
    struct Picky {
        committed: Vec<String>,
    }

    impl Store for Picky {
        fn load(&mut self) -> Result<Vec<StoredJob>, StoreError> {
            Ok(Vec::new())
        }
        fn commit(
            &mut self,
            deletes: &[&StoredKey],
            inserts: &[&StoredJob],
        ) -> Result<Vec<Rejected>, StoreError> {
            self.commit_extras(deletes, inserts, &Extras::default())
        }
        fn commit_extras(
            &mut self,
            deletes: &[&StoredKey],
            inserts: &[&StoredJob],
            extras: &Extras<'_>,
        ) -> Result<Vec<Rejected>, StoreError> {
            if extras.results.put.iter().any(|r| r.handle == 13) {
                return Err(StoreError::Failed("string or blob too big".into()));
            }
            let mut what: Vec<String> = deletes.iter().map(|k| format!("-{}", k.id)).collect();
            what.extend(inserts.iter().map(|r| format!("+{}", r.id)));
            what.extend(extras.results.put.iter().map(|r| format!("r{}", r.handle)));
            self.committed.push(what.join(" "));
            Ok(Vec::new())
        }
        fn keyed(&self) -> bool {
            false
        }
        fn keeps_results(&self) -> bool {
            true
        }
    }

    fn result(handle: u64) -> StoredResult {
        StoredResult {
            handle,
            function: Bytes::from_static(b"f"),
            key: Bytes::new(),
            state: 0,
            data: Bytes::from_static(b"out"),
            expires: 0,
            window_until: 0,
        }
    }

    #[test]
    fn a_record_the_store_never_takes_is_dropped_and_blocks_nothing() {
        let mut store = Picky::default();
        let key = StoredKey {
            id: 4,
            function: Bytes::new(),
            unique: Bytes::new(),
        };
        let mut batch = vec![
            Op::Delete(key),
            Op::PutResult(result(12)),
            Op::PutResult(result(13)),
        ];
        let mut retry = Vec::new();
        commit_batch(&mut store, &mut batch, &mut retry, &Weak::new());
        // The job row and the good result are stored, the poison is dropped,
        // and nothing is left to retry (it would fail every later batch).
        assert_eq!(store.committed, ["-4", "r12"]);
        assert!(retry.is_empty());
        let mut batch = vec![Op::PutResult(result(14))];
        commit_batch(&mut store, &mut batch, &mut retry, &Weak::new());
        assert_eq!(store.committed.last().map(String::as_str), Some("r14"));
    }
}
