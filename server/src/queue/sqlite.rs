//! SQLite queue (`-q libsqlite3`): WAL mode with `synchronous=FULL`, one
//! transaction per batch, rows keyed by the server's job id. The database is
//! locked exclusively: one server per file. Retained results live in
//! `polygear_results`, written in the same transactions; the queue rows
//! keep each job's handle number and retention (columns added to older
//! databases on open). Retries keep a job's attempts and first submission
//! in its queue row; the dead set is `polygear_dead`.

use std::path::Path;

use bytes::Bytes;
use rusqlite::{params, Connection};

use super::{
    DeadOp, DeadRow, Extras, Recovered, Rejected, ScheduleOp, Store, StoreError, StoredJob,
    StoredKey, StoredResult, StoredSchedule,
};
use crate::ServerError;

pub(crate) struct SqliteStore {
    conn: Connection,
    path: String,
}

fn failed(e: rusqlite::Error) -> StoreError {
    StoreError::Failed(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file.
    pub(crate) fn open(path: &Path) -> Result<SqliteStore, ServerError> {
        let err = |e: rusqlite::Error| ServerError::Queue(format!("{}: {e}", path.display()));
        let conn = Connection::open(path).map_err(err)?;
        // One server per database: a second one would replay the same jobs.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS polygear_queue (
                id INTEGER PRIMARY KEY,
                function_name BLOB NOT NULL,
                unique_key BLOB NOT NULL,
                priority INTEGER NOT NULL,
                when_to_run INTEGER NOT NULL,
                reducer BLOB NOT NULL,
                data BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS polygear_results (
                handle INTEGER PRIMARY KEY,
                function_name BLOB NOT NULL,
                unique_key BLOB NOT NULL,
                state INTEGER NOT NULL,
                data BLOB NOT NULL,
                expires INTEGER NOT NULL,
                window_until INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS polygear_dead (
                id INTEGER PRIMARY KEY,
                handle TEXT NOT NULL,
                function_name BLOB NOT NULL,
                unique_key BLOB NOT NULL,
                priority INTEGER NOT NULL,
                data BLOB NOT NULL,
                attempts INTEGER NOT NULL,
                error TEXT NOT NULL,
                submitted INTEGER NOT NULL,
                failed_at INTEGER NOT NULL);

            CREATE TABLE IF NOT EXISTS polygear_meta (
                name TEXT PRIMARY KEY,
                value INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS polygear_schedules (
                name TEXT PRIMARY KEY,
                cron TEXT NOT NULL,
                function_name BLOB NOT NULL,
                data BLOB NOT NULL,
                last_fired INTEGER NOT NULL DEFAULT 0)",
        )
        .map_err(err)?;
        // Databases written before retained results and retries lack these
        // columns (0 for their rows).
        let cols: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('polygear_queue')")
            .and_then(|mut st| {
                st.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<_, _>>()
            })
            .map_err(err)?;
        for col in ["handle", "retain", "attempts", "submitted"] {
            if !cols.iter().any(|c| c == col) {
                conn.execute_batch(&format!(
                    "ALTER TABLE polygear_queue ADD COLUMN {col} INTEGER NOT NULL DEFAULT 0"
                ))
                .map_err(err)?;
            }
        }
        Ok(SqliteStore {
            conn,
            path: path.display().to_string(),
        })
    }
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<Vec<StoredJob>, StoreError> {
        let path = &self.path;
        let sql = |e: rusqlite::Error| StoreError::Failed(format!("{path}: {e}"));
        let mut st = self
            .conn
            .prepare("SELECT id, function_name, unique_key, priority, when_to_run, reducer, data, handle, retain FROM polygear_queue ORDER BY id")
            .map_err(sql)?;
        let mut q = st.query([]).map_err(sql)?;
        let mut rows = Vec::new();
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
                handle: r.get::<_, i64>(7).map_err(sql)?.max(0) as u64,
                retain: r.get::<_, i64>(8).map_err(sql)?.clamp(0, u32::MAX as i64) as u32,
            });
        }
        Ok(rows)
    }

    fn commit(
        &mut self,
        deletes: &[&StoredKey],
        inserts: &[&StoredJob],
    ) -> Result<Vec<Rejected>, StoreError> {
        self.commit_extras(deletes, inserts, &Extras::default())
    }

    fn keeps_results(&self) -> bool {
        true
    }

    fn load_handle_floor(&mut self) -> Result<u64, StoreError> {
        let path = &self.path;
        let v: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM polygear_meta WHERE name = 'handle_floor'",
                [],
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(|e| StoreError::Failed(format!("{path}: {e}")))?;
        Ok(v.unwrap_or(0).max(0) as u64)
    }

    fn load_results(&mut self) -> Result<Vec<StoredResult>, StoreError> {
        let path = &self.path;
        let sql = |e: rusqlite::Error| StoreError::Failed(format!("{path}: {e}"));
        let mut st = self
            .conn
            .prepare("SELECT handle, function_name, unique_key, state, data, expires, window_until FROM polygear_results ORDER BY handle")
            .map_err(sql)?;
        let mut q = st.query([]).map_err(sql)?;
        let mut rows = Vec::new();
        while let Some(r) = q.next().map_err(sql)? {
            let blob = |i: usize| -> Result<Bytes, rusqlite::Error> {
                Ok(Bytes::from(r.get::<_, Vec<u8>>(i)?))
            };
            rows.push(StoredResult {
                handle: r.get::<_, i64>(0).map_err(sql)?.max(0) as u64,
                function: blob(1).map_err(sql)?,
                key: blob(2).map_err(sql)?,
                state: r.get::<_, i64>(3).map_err(sql)?.clamp(0, 255) as u8,
                data: blob(4).map_err(sql)?,
                expires: r.get(5).map_err(sql)?,
                window_until: r.get(6).map_err(sql)?,
            });
        }
        Ok(rows)
    }

    fn load_retries(&mut self) -> Result<Recovered, StoreError> {
        let path = &self.path;
        let sql = |e: rusqlite::Error| StoreError::Failed(format!("{path}: {e}"));
        let mut out = Recovered::default();
        let mut st = self
            .conn
            .prepare("SELECT id, attempts, submitted FROM polygear_queue WHERE attempts > 0 OR submitted > 0")
            .map_err(sql)?;
        let mut q = st.query([]).map_err(sql)?;
        while let Some(r) = q.next().map_err(sql)? {
            let attempts: i64 = r.get(1).map_err(sql)?;
            out.attempts.insert(
                r.get(0).map_err(sql)?,
                (
                    attempts.clamp(0, u32::MAX as i64) as u32,
                    r.get(2).map_err(sql)?,
                ),
            );
        }
        let mut st = self
            .conn
            .prepare("SELECT id, handle, function_name, unique_key, priority, data, attempts, error, submitted, failed_at FROM polygear_dead ORDER BY failed_at, id")
            .map_err(sql)?;
        let mut q = st.query([]).map_err(sql)?;
        while let Some(r) = q.next().map_err(sql)? {
            let blob = |i: usize| -> Result<Bytes, rusqlite::Error> {
                Ok(Bytes::from(r.get::<_, Vec<u8>>(i)?))
            };
            let function = blob(2).map_err(sql)?;
            let attempts: i64 = r.get(6).map_err(sql)?;
            out.dead.push(DeadRow {
                id: r.get(0).map_err(sql)?,
                priority: r.get::<_, i64>(4).map_err(sql)?.clamp(0, 2) as u8,
                job: polygear::DeadJob {
                    handle: r.get(1).map_err(sql)?,
                    function: String::from_utf8_lossy(&function).into_owned(),
                    unique: blob(3).map_err(sql)?,
                    data: blob(5).map_err(sql)?,
                    attempts: attempts.clamp(0, u32::MAX as i64) as u32,
                    error: r.get(7).map_err(sql)?,
                    submitted: r.get(8).map_err(sql)?,
                    failed_at: r.get(9).map_err(sql)?,
                },
                function,
            });
        }
        Ok(out)
    }

    fn commit_extras(
        &mut self,
        deletes: &[&StoredKey],
        inserts: &[&StoredJob],
        extras: &Extras<'_>,
    ) -> Result<Vec<Rejected>, StoreError> {
        let tx = self.conn.transaction().map_err(failed)?;
        {
            let mut del = tx
                .prepare_cached("DELETE FROM polygear_queue WHERE id = ?1")
                .map_err(failed)?;
            for k in deletes {
                del.execute(params![k.id]).map_err(failed)?;
            }
            let mut ins = tx.prepare_cached(
                "INSERT OR REPLACE INTO polygear_queue (id, function_name, unique_key, priority, when_to_run, reducer, data, handle, retain, submitted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, CAST(strftime('%s', 'now') AS INTEGER))",
            ).map_err(failed)?;
            for row in inserts {
                ins.execute(params![
                    row.id,
                    &row.function[..],
                    &row.unique[..],
                    row.priority as i64,
                    row.when,
                    &row.reducer[..],
                    &row.data[..],
                    row.handle as i64,
                    row.retain as i64
                ])
                .map_err(failed)?;
            }
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO polygear_results (handle, function_name, unique_key, state, data, expires, window_until) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            ).map_err(failed)?;
            for r in &extras.results.put {
                put.execute(params![
                    r.handle as i64,
                    &r.function[..],
                    &r.key[..],
                    r.state as i64,
                    &r.data[..],
                    r.expires,
                    r.window_until
                ])
                .map_err(failed)?;
            }
            let mut del = tx
                .prepare_cached("DELETE FROM polygear_results WHERE handle = ?1")
                .map_err(failed)?;
            for &h in &extras.results.delete {
                del.execute(params![h as i64]).map_err(failed)?;
            }
            if let Some(n) = extras.handle_floor {
                tx.execute(
                    "INSERT INTO polygear_meta (name, value) VALUES ('handle_floor', ?1)
                     ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)",
                    params![n.min(i64::MAX as u64) as i64],
                )
                .map_err(failed)?;
            }
            for op in &extras.dead {
                match op {
                    DeadOp::Reschedule { id, when, attempts } => {
                        tx.prepare_cached(
                            "UPDATE polygear_queue SET when_to_run = ?2, attempts = ?3 WHERE id = ?1",
                        )
                        .and_then(|mut st| st.execute(params![id, when, attempts]))
                        .map_err(failed)?;
                    }
                    DeadOp::Bury { row, .. } => {
                        let j = &row.job;
                        tx.prepare_cached(
                            "INSERT OR REPLACE INTO polygear_dead (id, handle, function_name, unique_key, priority, data, attempts, error, submitted, failed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                        )
                        .and_then(|mut st| {
                            st.execute(params![
                                row.id,
                                j.handle,
                                &row.function[..],
                                &j.unique[..],
                                row.priority as i64,
                                &j.data[..],
                                j.attempts,
                                j.error,
                                j.submitted,
                                j.failed_at
                            ])
                        })
                        .map_err(failed)?;
                    }
                    DeadOp::Unbury { dead_id: id, .. } | DeadOp::Forget(id) => {
                        tx.prepare_cached("DELETE FROM polygear_dead WHERE id = ?1")
                            .and_then(|mut st| st.execute(params![id]))
                            .map_err(failed)?;
                    }
                }
            }
        }
        tx.commit().map_err(failed)?;
        Ok(Vec::new())
    }

    fn keyed(&self) -> bool {
        false
    }

    fn load_schedules(&mut self) -> Result<Vec<StoredSchedule>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT name, cron, function_name, data, last_fired FROM polygear_schedules ORDER BY name")
            .map_err(failed)?;
        let rows = st
            .query_map([], |r| {
                Ok(StoredSchedule {
                    name: r.get(0)?,
                    cron: r.get(1)?,
                    function: Bytes::from(r.get::<_, Vec<u8>>(2)?),
                    data: Bytes::from(r.get::<_, Vec<u8>>(3)?),
                    last_fired: r.get(4)?,
                })
            })
            .map_err(failed)?;
        rows.collect::<Result<_, _>>().map_err(failed)
    }

    fn commit_schedules(&mut self, ops: &[ScheduleOp]) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(failed)?;
        for op in ops {
            match op {
                ScheduleOp::Put(s) => tx.execute(
                    "INSERT OR REPLACE INTO polygear_schedules (name, cron, function_name, data, last_fired) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![s.name, s.cron, &s.function[..], &s.data[..], s.last_fired],
                ),
                ScheduleOp::Delete(name) => {
                    tx.execute("DELETE FROM polygear_schedules WHERE name = ?1", params![name])
                }
                ScheduleOp::Fired { name, at } => tx.execute(
                    "UPDATE polygear_schedules SET last_fired = ?2 WHERE name = ?1",
                    params![name, at],
                ),
            }
            .map_err(failed)?;
        }
        tx.commit().map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ResultOps;
    use super::*;

    /// A queue database as polygear wrote it before its extensions' columns
    /// and tables, holding job 7 of function `f` (`rest`: its other columns).
    fn old_database(dir: &Path, rest: &str) -> std::path::PathBuf {
        let path = dir.join("old.sqlite3");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE polygear_queue (id INTEGER PRIMARY KEY, function_name BLOB NOT NULL,
             unique_key BLOB NOT NULL, priority INTEGER NOT NULL, when_to_run INTEGER NOT NULL,
             reducer BLOB NOT NULL, data BLOB NOT NULL);
             INSERT INTO polygear_queue VALUES (7, X'66', {rest});"
        ))
        .unwrap();
        path
    }

    #[test]
    fn old_databases_gain_the_new_columns_and_results_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = old_database(dir.path(), "X'75', 1, 0, X'', X'64'");
        let mut s = SqliteStore::open(&path).unwrap();
        let rows = s.load().unwrap();
        assert_eq!((rows[0].id, rows[0].handle, rows[0].retain), (7, 0, 0));
        let job = StoredJob {
            id: 8,
            handle: 42,
            retain: 60,
            ..rows[0].clone()
        };
        let kept = StoredResult {
            handle: 41,
            function: Bytes::from_static(b"f"),
            key: Bytes::new(),
            state: 0,
            data: Bytes::from_static(b"out\0put"),
            expires: 123,
            window_until: 0,
        };
        let del = StoredKey {
            id: 7,
            function: Bytes::new(),
            unique: Bytes::new(),
        };
        let results = ResultOps {
            put: vec![kept.clone()],
            delete: vec![],
        };
        let extras = Extras {
            results,
            ..Default::default()
        };
        s.commit_extras(&[&del], &[&job], &extras).unwrap();
        drop(s);
        // Opening again is idempotent and finds everything.
        let mut s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.load().unwrap(), vec![job]);
        assert_eq!(s.load_results().unwrap(), vec![kept]);
        let results = ResultOps {
            put: vec![],
            delete: vec![41],
        };
        let extras = Extras {
            results,
            ..Default::default()
        };
        s.commit_extras(&[], &[], &extras).unwrap();
        assert!(s.load_results().unwrap().is_empty());
    }

    fn job(id: i64) -> StoredJob {
        StoredJob {
            id,
            function: Bytes::from_static(b"f"),
            unique: Bytes::from(format!("u{id}")),
            priority: 1,
            when: 0,
            reducer: Bytes::new(),
            data: Bytes::from_static(b"d\0x"),
            handle: 0,
            retain: 0,
        }
    }

    #[test]
    fn an_older_database_gets_the_retry_columns_and_keeps_its_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let path = old_database(dir.path(), "x'7537', 1, 0, x'', x'640078'");
        let mut s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.load().unwrap(), vec![job(7)]);
        assert!(s.load_retries().unwrap().attempts.is_empty());
        let op = DeadOp::Reschedule {
            id: 7,
            when: 2_000_000_000,
            attempts: 2,
        };
        s.commit_extras(
            &[],
            &[],
            &Extras {
                dead: vec![&op],
                ..Default::default()
            },
        )
        .unwrap();
        drop(s);
        // Opening again does not add the columns twice.
        let mut s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.load().unwrap()[0].when, 2_000_000_000);
        assert_eq!(s.load_retries().unwrap().attempts.get(&7), Some(&(2, 0)));
    }

    #[test]
    fn burying_and_requeueing_are_atomic_with_the_job_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite3");
        let mut s = SqliteStore::open(&path).unwrap();
        s.commit(&[], &[&job(1)]).unwrap();
        let submitted = s.load_retries().unwrap().attempts[&1].1;
        assert!(submitted > 1_600_000_000, "stored with its submission time");
        let dead = DeadRow {
            id: 4,
            priority: 1,
            function: Bytes::from_static(b"f"),
            job: polygear::DeadJob {
                handle: "H:x:1".into(),
                function: "f".into(),
                unique: Bytes::from_static(b"u1"),
                data: Bytes::from_static(b"d\0x"),
                attempts: 3,
                error: "boom".into(),
                submitted,
                failed_at: submitted + 5,
            },
        };
        let key = StoredKey {
            id: 1,
            function: Bytes::new(),
            unique: Bytes::new(),
        };
        let bury = DeadOp::Bury {
            row: dead.clone(),
            delete: Some(key.clone()),
        };
        s.commit_extras(
            &[&key],
            &[],
            &Extras {
                dead: vec![&bury],
                ..Default::default()
            },
        )
        .unwrap();
        assert!(s.load().unwrap().is_empty());
        assert_eq!(s.load_retries().unwrap().dead, vec![dead]);
        let unbury = DeadOp::Unbury {
            dead_id: 4,
            row: job(2),
        };
        s.commit_extras(
            &[],
            &[&job(2)],
            &Extras {
                dead: vec![&unbury],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.load().unwrap(), vec![job(2)]);
        assert!(s.load_retries().unwrap().dead.is_empty());
    }
}
