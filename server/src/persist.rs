//! Durable queue for background jobs: SQLite in WAL mode with
//! `synchronous=FULL`, written by one dedicated thread that commits every
//! pending insert/delete in one transaction (group commit) and only then
//! releases the JOB_CREATED replies waiting on those inserts.
//!
//! A failed commit (disk full, I/O error) acknowledges nothing: each
//! submission in it is answered `ERROR QUEUE_ERROR` instead of JOB_CREATED,
//! in its place among the connection's replies, and its job is dropped
//! (the client may submit again); the connection stays usable. Deletes of
//! finished jobs in a failed batch are retried with the next one.

use std::collections::HashSet;
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use bytes::Bytes;
use rusqlite::{params, Connection};

use crate::outbox::Outbox;
use crate::wire::put_error;
use crate::{ServerError, Shared};

/// Most operations committed in one transaction.
const MAX_BATCH: usize = 100_000;

/// One change to the durable queue.
pub(crate) enum Op {
    Insert { row: StoredJob, ack: Option<Ack> },
    Delete(i64),
}

/// A JOB_CREATED reply to release once the insert is durable.
pub(crate) struct Ack {
    pub out: Arc<Outbox>,
    pub ticket: u64,
    pub handle: u64,
}

/// A background job as stored.
pub(crate) struct StoredJob {
    pub id: i64,
    pub function: Bytes,
    pub unique: Bytes,
    pub priority: u8,
    pub when: i64,
    pub reducer: Bytes,
    pub data: Bytes,
}

/// Handle on the persistence thread.
pub(crate) struct Persister {
    pub tx: Sender<Op>,
    pub next_id: i64,
}

fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    // One server per database: a second one would replay the same jobs.
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS polygear_queue (
            id INTEGER PRIMARY KEY,
            function_name BLOB NOT NULL,
            unique_key BLOB NOT NULL,
            priority INTEGER NOT NULL,
            when_to_run INTEGER NOT NULL,
            reducer BLOB NOT NULL,
            data BLOB NOT NULL)",
    )?;
    Ok(conn)
}

/// Opens (creating if needed) the database and reads every stored job in order.
pub(crate) fn load(path: &Path) -> Result<(Connection, Vec<StoredJob>), ServerError> {
    let sql = |e: rusqlite::Error| ServerError::Queue(format!("{}: {e}", path.display()));
    let conn = open(path).map_err(sql)?;
    let mut rows = Vec::new();
    {
        let mut st = conn
            .prepare("SELECT id, function_name, unique_key, priority, when_to_run, reducer, data FROM polygear_queue ORDER BY id")
            .map_err(sql)?;
        let mut q = st.query([]).map_err(sql)?;
        while let Some(r) = q.next().map_err(sql)? {
            let blob = |i: usize| -> Result<Bytes, rusqlite::Error> {
                Ok(Bytes::from(r.get::<_, Vec<u8>>(i)?))
            };
            rows.push(StoredJob {
                id: r.get(0).map_err(sql)?,
                function: blob(1).map_err(sql)?,
                unique: blob(2).map_err(sql)?,
                priority: r.get::<_, i64>(3).map_err(sql)?.clamp(0, 2) as u8,
                when: r.get(4).map_err(sql)?,
                reducer: blob(5).map_err(sql)?,
                data: blob(6).map_err(sql)?,
            });
        }
    }
    Ok((conn, rows))
}

/// Starts the persistence thread on an opened database.
pub(crate) fn start(conn: Connection, rx: Receiver<Op>, shared: Weak<Shared>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("polygeard-persist".into())
        .spawn(move || run(conn, rx, shared))
        .expect("spawn persistence thread")
}

fn run(mut conn: Connection, rx: Receiver<Op>, shared: Weak<Shared>) {
    let mut batch: Vec<Op> = Vec::new();
    let mut deleted: HashSet<i64> = HashSet::new();
    // Deletes whose commit failed, retried with the next batch.
    let mut retry: Vec<i64> = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.extend(retry.drain(..).map(Op::Delete));
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        // An insert and a delete of the same job in one batch cancel out.
        deleted.clear();
        let mut inserted: HashSet<i64> = HashSet::new();
        for op in &batch {
            if let Op::Insert { row, .. } = op {
                inserted.insert(row.id);
            }
        }
        for op in &batch {
            if let Op::Delete(id) = op {
                if inserted.contains(id) {
                    deleted.insert(*id);
                }
            }
        }
        let result = commit(&mut conn, &batch, &deleted);
        let error = result.as_ref().err().map(|e| {
            tracing::error!("persistent queue write failed: {e}");
            format!("The job could not be stored: {e}")
        });
        let mut failed = Vec::new();
        for op in batch.drain(..) {
            match op {
                Op::Insert { ack: Some(ack), .. } => {
                    if let Some(msg) = &error {
                        // The client must not believe the job is durable.
                        ack.out
                            .fail_gate(ack.ticket, |b| put_error(b, "QUEUE_ERROR", msg));
                        failed.push(ack.handle);
                    }
                    ack.out.release(ack.ticket);
                }
                Op::Delete(id) if error.is_some() && !deleted.contains(&id) => retry.push(id),
                _ => {}
            }
        }
        if !failed.is_empty() {
            if let Some(shared) = shared.upgrade() {
                shared.with_state(|st| st.abandon_unpersisted(&failed));
            }
        }
    }
    tracing::debug!("persistence thread finished");
}

fn commit(conn: &mut Connection, batch: &[Op], skip: &HashSet<i64>) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        let mut ins = tx.prepare_cached(
            "INSERT OR REPLACE INTO polygear_queue (id, function_name, unique_key, priority, when_to_run, reducer, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut del = tx.prepare_cached("DELETE FROM polygear_queue WHERE id = ?1")?;
        for op in batch {
            match op {
                Op::Insert { row, .. } => {
                    if skip.contains(&row.id) {
                        continue;
                    }
                    ins.execute(params![
                        row.id,
                        &row.function[..],
                        &row.unique[..],
                        row.priority as i64,
                        row.when,
                        &row.reducer[..],
                        &row.data[..]
                    ])?;
                }
                Op::Delete(id) => {
                    if skip.contains(id) {
                        continue;
                    }
                    del.execute(params![id])?;
                }
            }
        }
    }
    tx.commit()
}
