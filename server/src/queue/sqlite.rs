//! SQLite queue (`-q libsqlite3`): WAL mode with `synchronous=FULL`, one
//! transaction per batch, rows keyed by the server's job id. The database is
//! locked exclusively: one server per file.

use std::path::Path;

use bytes::Bytes;
use rusqlite::{params, Connection};

use super::{Rejected, ScheduleOp, Store, StoreError, StoredJob, StoredKey, StoredSchedule};
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
            CREATE TABLE IF NOT EXISTS polygear_schedules (
                name TEXT PRIMARY KEY,
                cron TEXT NOT NULL,
                function_name BLOB NOT NULL,
                data BLOB NOT NULL,
                last_fired INTEGER NOT NULL DEFAULT 0)",
        )
        .map_err(err)?;
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
            .prepare("SELECT id, function_name, unique_key, priority, when_to_run, reducer, data FROM polygear_queue ORDER BY id")
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
            });
        }
        Ok(rows)
    }

    fn commit(
        &mut self,
        deletes: &[&StoredKey],
        inserts: &[&StoredJob],
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
                "INSERT OR REPLACE INTO polygear_queue (id, function_name, unique_key, priority, when_to_run, reducer, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            ).map_err(failed)?;
            for row in inserts {
                ins.execute(params![
                    row.id,
                    &row.function[..],
                    &row.unique[..],
                    row.priority as i64,
                    row.when,
                    &row.reducer[..],
                    &row.data[..]
                ])
                .map_err(failed)?;
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
