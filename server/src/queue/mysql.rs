//! MySQL/MariaDB queue (`-q mysql`) in gearmand's table layout:
//! `unique_key, function_name, priority (0 = HIGH, 1 = NORMAL, 2 = LOW), data,
//! when_to_run`, one row per job, unique on `(unique_key, function_name)`.
//! The reducer is not stored (gearmand's layout has no column for it).
//!
//! A table we create has binary key columns (`VARBINARY(64)`,
//! `VARBINARY(255)`): byte lengths, so the key fits any charset (gearmand's
//! `VARCHAR` key is "too long" under utf8mb4) and any bytes are stored
//! exactly. An existing gearmand table with `VARCHAR` columns works too; keys
//! it cannot hold (too long, not UTF-8) are refused one by one.
//!
//! Each batch is one transaction: deletes, then multi-row inserts. A job
//! whose key is already in the table (left behind by an earlier run) replaces
//! that row instead of failing the batch (gearmand's duplicate-key bug); with
//! a shared table only this server's own row is replaced, and an insert that
//! collides with another server's row is refused alone.
//!
//! Sharing (`--queue-lease`): a nullable `polygear_owner` column names the
//! server holding a row, and `<table>_polygear_leases` holds each server's
//! lease on the database clock. Rows of a server whose lease expired are
//! claimed with `FOR UPDATE SKIP LOCKED` (MariaDB >= 10.6, MySQL >= 8), so
//! two survivors never take the same job.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, TxOpts, Value};

use super::net::Backoff;
use super::{Rejected, Store, StoreError, StoredJob, StoredKey, Upkeep};
use crate::{Lease, QueueConfig, ServerError};

/// Rows per multi-row statement (bounds the prepared statement shapes).
const CHUNK: usize = 256;
/// Attempts of a batch that hits a deadlock.
const DEADLOCK_TRIES: usize = 3;

/// MySQL error codes that mean the connection is gone or the statement was
/// killed (server shutdown, KILL, idle timeout), not that it was wrong.
const CONNECTION_LOST: [u16; 5] = [1053, 1077, 1317, 1927, 4031];
/// Deadlock / lock wait timeout: the transaction may be retried.
const DEADLOCK: [u16; 2] = [1213, 1205];

/// A row's `unique_key, function_name, polygear_owner`.
type KeyOwner = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);

/// What the columns of the table accept.
#[derive(Debug, Clone, Copy)]
struct Columns {
    /// Character key columns (gearmand's VARCHAR): lengths count characters,
    /// values must be UTF-8, and comparisons follow the collation.
    text: bool,
    unique_max: usize,
    function_max: usize,
    /// A character `data` column: the data must be UTF-8.
    data_text: bool,
    /// Bytes (or characters) `data` holds.
    data_max: usize,
    /// `when_to_run` is narrower than BIGINT: it holds 32 bits.
    when_32: bool,
}

pub(crate) struct MysqlStore {
    opts: Opts,
    /// Where the server is, for messages.
    place: String,
    conn: Option<Conn>,
    /// Whether `conn` has been used already (a broken reused connection is
    /// retried once on a fresh one).
    conn_used: bool,
    backoff: Backoff,
    last_error: String,
    /// Quoted table names.
    table: String,
    leases: String,
    /// Occurrences of periodic jobs claimed by the servers sharing the table.
    firings: String,
    lease: Option<Lease>,
    cols: Columns,
    max_packet: usize,
    /// The lease end last reported to the server (it fences itself then).
    held_until: Option<Instant>,
    /// The database found the lease expired, not yet reported as a lapse.
    pending_lapse: bool,
}

/// Quotes an identifier with backticks.
fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Classifies a driver error.
fn classify(e: mysql::Error) -> StoreError {
    match e {
        mysql::Error::MySqlError(m) if !CONNECTION_LOST.contains(&m.code) => {
            StoreError::Failed(format!("MySQL error {}: {}", m.code, m.message))
        }
        mysql::Error::MySqlError(m) => StoreError::Unavailable(format!(
            "MySQL connection lost: error {}: {}",
            m.code, m.message
        )),
        mysql::Error::DriverError(d) => StoreError::Unavailable(format!("MySQL connection: {d}")),
        mysql::Error::IoError(io) => StoreError::Unavailable(format!("MySQL connection: {io}")),
        e => StoreError::Unavailable(format!("MySQL connection: {e}")),
    }
}

/// A read or write timed out (the server hangs: not worth an immediate retry).
fn is_timeout(e: &mysql::Error) -> bool {
    matches!(e, mysql::Error::IoError(io)
        if matches!(io.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock))
}

fn is_deadlock(e: &mysql::Error) -> bool {
    matches!(e, mysql::Error::MySqlError(m) if DEADLOCK.contains(&m.code))
}

/// `(unique_key = ? AND function_name = ?) OR ...` for `n` keys rounded up
/// to a power of two (few statement shapes; [`key_params`] repeats the last
/// key); with character columns also an exact byte comparison (collations
/// may ignore case or trailing spaces).
fn keys_match(n: usize, text: bool) -> String {
    let n = n.next_power_of_two();
    let one = if text {
        "(unique_key = ? AND function_name = ? AND BINARY unique_key = ? AND BINARY function_name = ?)"
    } else {
        "(unique_key = ? AND function_name = ?)"
    };
    vec![one; n].join(" OR ")
}

/// The parameters for [`keys_match`].
fn key_params<'a>(
    keys: impl ExactSizeIterator<Item = (&'a Bytes, &'a Bytes)> + Clone,
    text: bool,
    out: &mut Vec<Value>,
) {
    let n = keys.len();
    let last = keys.clone().last();
    let pad = std::iter::repeat_n(last, n.next_power_of_two() - n).flatten();
    for (u, f) in keys.chain(pad) {
        out.push(Value::Bytes(u.to_vec()));
        out.push(Value::Bytes(f.to_vec()));
        if text {
            out.push(Value::Bytes(u.to_vec()));
            out.push(Value::Bytes(f.to_vec()));
        }
    }
}

/// "Duplicates: N" from an INSERT's info; `None` if absent.
fn duplicates(info: &str) -> Option<u64> {
    let rest = &info[info.find("Duplicates:")? + "Duplicates:".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

fn bytes_col(v: Option<Value>) -> Bytes {
    match v {
        Some(Value::Bytes(b)) => Bytes::from(b),
        _ => Bytes::new(),
    }
}

fn int_col(v: Option<Value>) -> i64 {
    match v {
        Some(Value::Int(i)) => i,
        Some(Value::UInt(u)) => u as i64,
        Some(Value::Bytes(b)) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

/// A job row as read: `unique_key, function_name, priority, when_to_run,
/// data`. NULLs read as gearmand reads them (0, empty).
fn job_from(mut row: mysql::Row) -> StoredJob {
    StoredJob {
        id: 0,
        unique: bytes_col(row.take(0)),
        function: bytes_col(row.take(1)),
        priority: int_col(row.take(2)).clamp(0, 2) as u8,
        when: int_col(row.take(3)),
        reducer: Bytes::new(),
        data: bytes_col(row.take(4)),
        handle: 0,
        retain: 0,
    }
}

impl MysqlStore {
    /// Connects, checks (or creates) the tables and, with a lease, the
    /// owner column and the lease table.
    pub(crate) fn open(cfg: &QueueConfig) -> Result<MysqlStore, ServerError> {
        let QueueConfig::Mysql {
            host,
            port,
            user,
            password,
            db,
            table,
            lease,
        } = cfg
        else {
            return Err(ServerError::Config("not a MySQL queue".into()));
        };
        let place = format!("MySQL queue at {host}:{port} (database {db:?})");
        let cfg_err = |m: String| ServerError::Config(format!("{place}: {m}"));
        if db.is_empty() {
            return Err(cfg_err("no database given (--mysql-db)".into()));
        }
        if table.is_empty() || table.len() > 48 {
            return Err(cfg_err(format!(
                "table name {table:?} must have 1 to 48 characters"
            )));
        }
        if let Some(l) = lease {
            if l.server_id.is_empty() || l.server_id.len() > 255 {
                return Err(cfg_err("--server-id must have 1 to 255 bytes".into()));
            }
        }
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(host.clone()))
            .tcp_port(*port)
            .prefer_socket(false)
            .user((!user.is_empty()).then(|| user.clone()))
            .pass((!password.is_empty()).then(|| password.clone()))
            .db_name(Some(db.clone()))
            .tcp_connect_timeout(Some(Duration::from_secs(5)))
            .read_timeout(Some(Duration::from_secs(10)))
            .write_timeout(Some(Duration::from_secs(10)))
            // Claims scan the table: under READ COMMITTED they keep locks
            // only on the rows they take. A lock wait ends (as an error)
            // before the read timeout.
            .init(vec![
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                "SET SESSION innodb_lock_wait_timeout = 5",
            ])
            .stmt_cache_size(CHUNK + 64);
        let mut store = MysqlStore {
            opts: opts.into(),
            place,
            conn: None,
            conn_used: false,
            backoff: Backoff::new(),
            last_error: String::new(),
            table: quote(table),
            leases: quote(&format!("{table}_polygear_leases")),
            firings: quote(&format!("{table}_polygear_firings")),
            lease: lease.clone(),
            cols: Columns {
                text: false,
                unique_max: 64,
                function_max: 255,
                data_text: false,
                data_max: usize::MAX,
                when_32: true,
            },
            max_packet: 1 << 24,
            held_until: None,
            pending_lapse: false,
        };
        let place = store.place.clone();
        let queue_err = |e: StoreError| ServerError::Queue(format!("{place}: {e}"));
        store.connect().map_err(queue_err)?;
        store.prepare_tables(table).map_err(|e| match e {
            SetupError::Store(e) => queue_err(e),
            SetupError::Schema(m) => ServerError::Config(format!("{place}: {m}")),
        })?;
        Ok(store)
    }

    /// A fresh connection (and the server's packet limit).
    fn connect(&mut self) -> Result<(), StoreError> {
        let mut conn = Conn::new(self.opts.clone()).map_err(classify)?;
        let max: Option<u64> = conn
            .query_first("SELECT @@max_allowed_packet")
            .map_err(classify)?;
        self.max_packet = max.unwrap_or(1 << 24) as usize;
        self.conn = Some(conn);
        self.conn_used = false;
        Ok(())
    }

    /// Reconnects if needed, unless a recent attempt failed (backing off
    /// from 100 ms to 5 s).
    fn ensure_connected(&mut self) -> Result<(), StoreError> {
        if self.conn.is_none() {
            if self.backoff.check().is_err() {
                return Err(StoreError::Unavailable(format!(
                    "{} unreachable ({}); reconnecting",
                    self.place, self.last_error
                )));
            }
            match self.connect() {
                Ok(()) => {
                    self.backoff.reset();
                    tracing::info!("{}: connected", self.place);
                }
                Err(e) => {
                    self.last_error = e.to_string();
                    self.backoff.failed();
                    return Err(e);
                }
            }
        }
        self.conn_used = true;
        Ok(())
    }

    /// Runs `f` on the connection. A broken connection is dropped (the next
    /// call reconnects); one that broke after serving earlier calls (server
    /// restart, idle timeout, KILL) is retried once on a fresh connection,
    /// which is safe because every operation here is idempotent. Deadlocks
    /// are retried too.
    fn run<T>(
        &mut self,
        mut f: impl FnMut(&mut Conn, &Self) -> Result<T, mysql::Error>,
    ) -> Result<T, StoreError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let reused = self.conn.is_some() && self.conn_used;
            self.ensure_connected()?;
            // Out of `self` while `f` borrows `self`.
            let mut conn = self.conn.take().expect("connected");
            let result = f(&mut conn, self);
            self.conn = Some(conn);
            match result {
                Ok(v) => return Ok(v),
                Err(e) if is_deadlock(&e) && tries < DEADLOCK_TRIES => continue,
                Err(e) => match (is_timeout(&e), classify(e)) {
                    (timeout, StoreError::Unavailable(m)) => {
                        self.conn = None;
                        self.last_error = m.clone();
                        if reused && tries == 1 && !timeout {
                            continue;
                        }
                        return Err(StoreError::Unavailable(m));
                    }
                    (_, failed) => return Err(failed),
                },
            }
        }
    }

    fn prepare_tables(&mut self, name: &str) -> Result<(), SetupError> {
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {} (
                unique_key VARBINARY(64) NOT NULL,
                function_name VARBINARY(255) NOT NULL,
                priority INT NOT NULL,
                data LONGBLOB NOT NULL,
                when_to_run INT NOT NULL,
                {}
                UNIQUE KEY unique_key (unique_key, function_name)
            ) ENGINE=InnoDB",
            self.table,
            if self.lease.is_some() {
                "polygear_owner VARBINARY(255) NULL,"
            } else {
                ""
            }
        );
        self.run(|c, _| c.query_drop(&create))?;
        let cols = self.columns(name)?;
        self.cols = check_columns(name, &cols)?;
        self.check_unique_index(name)?;
        if self.lease.is_some() {
            match cols.iter().find(|c| c.0 == "polygear_owner") {
                None => {
                    let alter = format!(
                        "ALTER TABLE {} ADD COLUMN polygear_owner VARBINARY(255) NULL",
                        self.table
                    );
                    self.run(|c, _| c.query_drop(&alter))?;
                    tracing::info!("table {name}: added the column polygear_owner (shared queue)");
                }
                Some((_, ty, _)) if !matches!(ty.as_str(), "varbinary" | "varchar") => {
                    return Err(SetupError::Schema(format!(
                        "table {name}: column polygear_owner is {ty}, expected VARBINARY(255)"
                    )));
                }
                Some(_) => {}
            }
            let leases = format!(
                "CREATE TABLE IF NOT EXISTS {} (
                    server_id VARBINARY(255) NOT NULL PRIMARY KEY,
                    lease_until DATETIME(3) NOT NULL
                ) ENGINE=InnoDB",
                self.leases
            );
            self.run(|c, _| c.query_drop(&leases))?;
            let firings = format!(
                "CREATE TABLE IF NOT EXISTS {} (
                    name VARBINARY(255) NOT NULL,
                    fired_at BIGINT NOT NULL,
                    PRIMARY KEY (name, fired_at)
                ) ENGINE=InnoDB",
                self.firings
            );
            self.run(|c, _| c.query_drop(&firings))?;
        }
        Ok(())
    }

    /// `(name, data type, max length)` of each column of table `name`.
    fn columns(&mut self, name: &str) -> Result<Vec<(String, String, usize)>, StoreError> {
        let rows: Vec<(String, String, Option<u64>)> = self.run(|c, _| {
            c.exec(
                "SELECT LOWER(COLUMN_NAME), LOWER(DATA_TYPE), CHARACTER_MAXIMUM_LENGTH
                 FROM information_schema.COLUMNS
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                (name,),
            )
        })?;
        Ok(rows
            .into_iter()
            .map(|(n, t, l)| (n, t, l.unwrap_or(0) as usize))
            .collect())
    }

    /// The table needs a unique index on exactly (unique_key, function_name).
    fn check_unique_index(&mut self, name: &str) -> Result<(), SetupError> {
        let found: Option<String> = self.run(|c, _| {
            c.exec_first(
                "SELECT INDEX_NAME FROM information_schema.STATISTICS
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND NON_UNIQUE = 0
                 GROUP BY INDEX_NAME
                 HAVING COUNT(*) = 2
                    AND SUM(LOWER(COLUMN_NAME) IN ('unique_key', 'function_name')) = 2",
                (name,),
            )
        })?;
        match found {
            Some(_) => Ok(()),
            None => Err(SetupError::Schema(format!(
                "table {name} has no UNIQUE KEY (unique_key, function_name) \
                 (gearmand's layout needs one)"
            ))),
        }
    }

    fn owner(&self) -> Option<Vec<u8>> {
        self.lease.as_ref().map(|l| l.server_id.as_bytes().to_vec())
    }

    fn lease_micros(&self) -> u64 {
        self.lease
            .as_ref()
            .map_or(0, |l| l.duration.as_micros() as u64)
    }

    /// Why the table cannot hold `row`, if it cannot.
    fn refuse(&self, row: &StoredJob) -> Option<String> {
        let k = self.cols;
        let len = |b: &Bytes| -> Option<usize> {
            if k.text {
                std::str::from_utf8(b).ok().map(|s| s.chars().count())
            } else {
                Some(b.len())
            }
        };
        let (Some(u), Some(f)) = (len(&row.unique), len(&row.function)) else {
            return Some("the queue table's VARCHAR key columns take only UTF-8".into());
        };
        if u > k.unique_max || f > k.function_max {
            return Some(format!(
                "the queue table takes uniques up to {} and function names up to {} {}",
                k.unique_max,
                k.function_max,
                if k.text { "characters" } else { "bytes" }
            ));
        }
        if k.data_text && std::str::from_utf8(&row.data).is_err() {
            return Some("the queue table's text data column takes only UTF-8".into());
        }
        if row.data.len() > k.data_max {
            return Some(format!(
                "the queue table's data column holds at most {} bytes",
                k.data_max
            ));
        }
        if k.when_32 && i32::try_from(row.when).is_err() {
            return Some("the queue table's when_to_run column holds 32-bit times".into());
        }
        if row_size(row) + 1024 > self.max_packet {
            return Some(format!(
                "the job is larger than the MySQL server's max_allowed_packet ({} bytes)",
                self.max_packet
            ));
        }
        None
    }

    /// Writes one batch in one transaction; returns the inserts refused.
    /// `one_by_one`: each insert alone behind a savepoint, a failing one
    /// refused with the database's error (after a whole batch failed).
    fn write(
        &self,
        c: &mut Conn,
        deletes: &[&StoredKey],
        inserts: &[&StoredJob],
        one_by_one: bool,
    ) -> Result<Vec<Rejected>, mysql::Error> {
        let mut tx = c.start_transaction(TxOpts::default())?;
        let owner = self.owner();
        for chunk in deletes.chunks(CHUNK) {
            let mut params = Vec::new();
            let mut sql = format!("DELETE FROM {} WHERE ", self.table);
            if let Some(o) = &owner {
                sql.push_str("polygear_owner = ? AND ");
                params.push(Value::Bytes(o.clone()));
            }
            sql.push_str(&format!("({})", keys_match(chunk.len(), self.cols.text)));
            key_params(
                chunk.iter().map(|k| (&k.unique, &k.function)),
                self.cols.text,
                &mut params,
            );
            tx.exec_drop(&sql, params)?;
        }
        let mut rejected = Vec::new();
        if one_by_one {
            for &row in inserts {
                tx.query_drop("SAVEPOINT polygear_job")?;
                match self.insert(&mut tx, &[row], owner.as_deref()) {
                    Ok(r) => rejected.extend(r),
                    Err(mysql::Error::MySqlError(e)) if !CONNECTION_LOST.contains(&e.code) => {
                        tx.query_drop("ROLLBACK TO SAVEPOINT polygear_job")?;
                        rejected.push(Rejected {
                            id: row.id,
                            reason: format!("MySQL error {}: {}", e.code, e.message),
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
        } else {
            for chunk in self.insert_chunks(inserts) {
                rejected.extend(self.insert(&mut tx, &chunk, owner.as_deref())?);
            }
        }
        tx.commit()?;
        Ok(rejected)
    }

    /// Splits inserts into statements of at most [`CHUNK`] rows and half the
    /// packet limit.
    fn insert_chunks<'a>(&self, inserts: &[&'a StoredJob]) -> Vec<Vec<&'a StoredJob>> {
        let budget = self.max_packet / 2;
        let mut out: Vec<Vec<&StoredJob>> = Vec::new();
        let mut size = 0;
        for &row in inserts {
            let s = row_size(row);
            match out.last_mut() {
                Some(last) if last.len() < CHUNK && size + s <= budget => {
                    last.push(row);
                    size += s;
                }
                _ => {
                    out.push(vec![row]);
                    size = s;
                }
            }
        }
        out
    }

    /// One multi-row insert. A key already in the table is replaced when the
    /// row is this server's (or the table is not shared); otherwise the
    /// existing row stays and the insert is refused.
    fn insert(
        &self,
        tx: &mut mysql::Transaction<'_>,
        rows: &[&StoredJob],
        owner: Option<&[u8]>,
    ) -> Result<Vec<Rejected>, mysql::Error> {
        let (cols, one) = match owner {
            Some(_) => (", polygear_owner", "(?, ?, ?, ?, ?, ?)"),
            None => ("", "(?, ?, ?, ?, ?)"),
        };
        // Replace only an exact match (a collation may ignore case) held by
        // this server.
        let mut cond = String::from(
            "BINARY unique_key = BINARY VALUES(unique_key) \
             AND BINARY function_name = BINARY VALUES(function_name)",
        );
        if owner.is_some() {
            cond.push_str(
                " AND (polygear_owner IS NULL OR polygear_owner = VALUES(polygear_owner))",
            );
        }
        let sql = format!(
            "INSERT INTO {} (unique_key, function_name, priority, data, when_to_run{cols}) \
             VALUES {} ON DUPLICATE KEY UPDATE \
             priority = IF({cond}, VALUES(priority), priority), \
             data = IF({cond}, VALUES(data), data), \
             when_to_run = IF({cond}, VALUES(when_to_run), when_to_run){}",
            self.table,
            vec![one; rows.len()].join(", "),
            // Last: the conditions above read the owner before it changes.
            if owner.is_some() {
                format!(", polygear_owner = IF({cond}, VALUES(polygear_owner), polygear_owner)")
            } else {
                String::new()
            }
        );
        let mut params = Vec::with_capacity(rows.len() * 6);
        for r in rows {
            params.push(Value::Bytes(r.unique.to_vec()));
            params.push(Value::Bytes(r.function.to_vec()));
            params.push(Value::Int(r.priority as i64));
            params.push(Value::Bytes(r.data.to_vec()));
            params.push(Value::Int(r.when));
            if let Some(o) = owner {
                params.push(Value::Bytes(o.to_vec()));
            }
        }
        tx.exec_drop(&sql, params)?;
        // Each new row counts 1 affected, each replaced row 2 (and one
        // "Duplicate"), a row left as it was 0: every row went in when new +
        // replaced = all. A single-row insert reports no duplicates.
        let n = rows.len() as u64;
        let affected = tx.affected_rows();
        let clean = match duplicates(&tx.info_str()) {
            Some(d) => affected.checked_sub(d) == Some(n),
            None => n == 1 && affected >= 1,
        };
        if clean {
            return Ok(Vec::new());
        }
        self.not_written(tx, rows, owner)
    }

    /// After an insert met existing keys: the rows whose key is not now held
    /// exactly by this job (another server's row, or a collation match).
    fn not_written(
        &self,
        tx: &mut mysql::Transaction<'_>,
        rows: &[&StoredJob],
        owner: Option<&[u8]>,
    ) -> Result<Vec<Rejected>, mysql::Error> {
        let sql = format!(
            "SELECT unique_key, function_name, {} FROM {} WHERE {}",
            if owner.is_some() {
                "polygear_owner"
            } else {
                "NULL"
            },
            self.table,
            keys_match(rows.len(), false)
        );
        let mut params = Vec::new();
        key_params(
            rows.iter().map(|r| (&r.unique, &r.function)),
            false,
            &mut params,
        );
        let found: Vec<KeyOwner> = tx.exec(&sql, params)?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let exact = found
                    .iter()
                    .find(|(u, f, _)| u[..] == r.unique[..] && f[..] == r.function[..]);
                let reason = match exact {
                    Some((_, _, o)) if owner.is_none() || o.as_deref() == owner => return None,
                    Some((_, _, o)) => format!(
                        "a job with this function and unique is queued by server {} (shared queue)",
                        String::from_utf8_lossy(o.as_deref().unwrap_or_default())
                    ),
                    None => "the queue table holds a job whose unique matches this one \
                             under its collation"
                        .into(),
                };
                Some(Rejected { id: r.id, reason })
            })
            .collect())
    }

    /// Sets this server's lease to now + duration (creating it).
    fn upsert_lease(&self, c: &mut Conn) -> Result<(), mysql::Error> {
        c.exec_drop(
            format!(
                "INSERT INTO {} (server_id, lease_until) \
                 VALUES (?, NOW(3) + INTERVAL ? MICROSECOND) \
                 ON DUPLICATE KEY UPDATE lease_until = VALUES(lease_until)",
                self.leases
            ),
            (self.owner(), self.lease_micros()),
        )
    }

    /// Extends a lease that has not expired; false if it had.
    fn renew_lease(&self, c: &mut Conn) -> Result<bool, mysql::Error> {
        c.exec_drop(
            format!(
                "UPDATE {} SET lease_until = NOW(3) + INTERVAL ? MICROSECOND \
                 WHERE server_id = ? AND lease_until > NOW(3)",
                self.leases
            ),
            (self.lease_micros(), self.owner()),
        )?;
        Ok(c.affected_rows() == 1)
    }

    /// Takes over, in one transaction, the rows of servers without a live
    /// lease (and rows of no server if `orphans`, and this server's own rows
    /// if `mine`); returns the rows taken.
    fn claim(
        &self,
        c: &mut Conn,
        orphans: bool,
        mine: bool,
    ) -> Result<Vec<StoredJob>, mysql::Error> {
        let owner = self.owner();
        let mut tx = c.start_transaction(TxOpts::default())?;
        let sql = format!(
            "SELECT unique_key, function_name, priority, when_to_run, data FROM {t} \
             WHERE {orphans} (polygear_owner <> ? AND NOT EXISTS \
                 (SELECT 1 FROM {l} WHERE server_id = {t}.polygear_owner AND lease_until >= NOW(3))) \
             {mine} FOR UPDATE SKIP LOCKED",
            t = self.table,
            l = self.leases,
            orphans = if orphans { "polygear_owner IS NULL OR" } else { "" },
            mine = if mine { "OR polygear_owner = ?" } else { "" },
        );
        let mut params = vec![Value::from(owner.clone())];
        if mine {
            params.push(Value::from(owner.clone()));
        }
        let rows: Vec<StoredJob> = tx
            .exec_iter(&sql, params)?
            .map(|r| r.map(job_from))
            .collect::<Result<_, _>>()?;
        for chunk in rows.chunks(CHUNK) {
            let mut params = vec![Value::from(owner.clone())];
            key_params(
                chunk.iter().map(|r| (&r.unique, &r.function)),
                self.cols.text,
                &mut params,
            );
            tx.exec_drop(
                format!(
                    "UPDATE {} SET polygear_owner = ? WHERE {}",
                    self.table,
                    keys_match(chunk.len(), self.cols.text)
                ),
                params,
            )?;
        }
        tx.commit()?;
        Ok(rows)
    }

    /// Whether some server's lease has expired.
    fn any_dead(&self, c: &mut Conn) -> Result<bool, mysql::Error> {
        let n: Option<u64> = c.query_first(format!(
            "SELECT COUNT(*) FROM {} WHERE lease_until < NOW(3)",
            self.leases
        ))?;
        Ok(n.unwrap_or(0) > 0)
    }

    /// Deletes lease rows of servers that are dead and hold no rows.
    fn forget_dead(&self, c: &mut Conn) -> Result<(), mysql::Error> {
        c.query_drop(format!(
            "DELETE FROM {l} WHERE lease_until < NOW(3) AND NOT EXISTS \
             (SELECT 1 FROM {t} WHERE {t}.polygear_owner = {l}.server_id)",
            l = self.leases,
            t = self.table
        ))
    }
}

/// Bytes a row takes in an insert statement (roughly).
fn row_size(row: &StoredJob) -> usize {
    row.unique.len() + row.function.len() + row.data.len() + 64
}

/// Why opening failed before the store ran.
enum SetupError {
    Store(StoreError),
    /// The table's layout does not fit.
    Schema(String),
}

impl From<StoreError> for SetupError {
    fn from(e: StoreError) -> Self {
        SetupError::Store(e)
    }
}

/// Checks gearmand's columns; returns what the key columns accept.
fn check_columns(name: &str, cols: &[(String, String, usize)]) -> Result<Columns, SetupError> {
    const KEY: &[&str] = &["varchar", "char", "varbinary", "binary"];
    const INT: &[&str] = &["tinyint", "smallint", "mediumint", "int", "bigint"];
    const DATA: &[&str] = &[
        "longblob",
        "mediumblob",
        "blob",
        "varbinary",
        "longtext",
        "mediumtext",
        "text",
    ];
    let want: [(&str, &[&str], &str); 5] = [
        ("unique_key", KEY, "VARBINARY(64)"),
        ("function_name", KEY, "VARBINARY(255)"),
        ("priority", INT, "INT"),
        ("data", DATA, "LONGBLOB"),
        ("when_to_run", &["int", "bigint"], "INT"),
    ];
    let mut problems = Vec::new();
    for (col, types, expect) in want {
        match cols.iter().find(|c| c.0 == col) {
            None => problems.push(format!("missing column {col} ({expect})")),
            Some((_, ty, _)) if !types.contains(&ty.as_str()) => {
                problems.push(format!("column {col} is {ty}, expected {expect}"))
            }
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        return Err(SetupError::Schema(format!(
            "table {name} does not have gearmand's queue layout: {}",
            problems.join("; ")
        )));
    }
    let col = |n: &str| cols.iter().find(|c| c.0 == n).expect("checked");
    let (u, f) = (col("unique_key"), col("function_name"));
    let text = |ty: &str| ty.contains("char");
    if text(&u.1) != text(&f.1) {
        return Err(SetupError::Schema(format!(
            "table {name}: unique_key and function_name must both be VARCHAR or both VARBINARY"
        )));
    }
    let (data, when) = (col("data"), col("when_to_run"));
    Ok(Columns {
        text: text(&u.1),
        unique_max: u.2,
        function_max: f.2,
        data_text: data.1.contains("text"),
        data_max: if data.2 == 0 { usize::MAX } else { data.2 },
        when_32: when.1 != "bigint",
    })
}

impl Store for MysqlStore {
    fn load(&mut self) -> Result<Vec<StoredJob>, StoreError> {
        if self.lease.is_none() {
            let sql = format!(
                "SELECT unique_key, function_name, priority, when_to_run, data FROM {}",
                self.table
            );
            return self.run(|c, _| {
                c.query_iter(&sql)?
                    .map(|r| r.map(job_from))
                    .collect::<Result<Vec<_>, _>>()
            });
        }
        let t0 = Instant::now();
        let rows = self.run(|c, s| {
            s.upsert_lease(c)?;
            s.claim(c, true, true)
        })?;
        self.held_until = self.lease.as_ref().map(|l| l.held_from(t0));
        Ok(rows)
    }

    fn commit(
        &mut self,
        deletes: &[&StoredKey],
        inserts: &[&StoredJob],
    ) -> Result<Vec<Rejected>, StoreError> {
        let mut rejected = Vec::new();
        let mut ok = Vec::with_capacity(inserts.len());
        for &row in inserts {
            match self.refuse(row) {
                Some(reason) => rejected.push(Rejected { id: row.id, reason }),
                None => ok.push(row),
            }
        }
        let written = match self.run(|c, s| s.write(c, deletes, &ok, false)) {
            // One job the table cannot take (a charset, a limit) must not
            // fail the others.
            Err(StoreError::Failed(e)) if !ok.is_empty() => {
                tracing::warn!("{}: {e}; storing the batch job by job", self.place);
                self.run(|c, s| s.write(c, deletes, &ok, true))
            }
            other => other,
        };
        rejected.extend(written?);
        Ok(rejected)
    }

    fn keyed(&self) -> bool {
        true
    }

    /// One `INSERT IGNORE` per occurrence into `<table>_polygear_firings`
    /// (first come wins), in one transaction that also forgets claims older
    /// than a day.
    fn claim_firings(&mut self, firings: &[(&str, i64)]) -> Result<Vec<bool>, StoreError> {
        if self.lease.is_none() {
            return Ok(vec![true; firings.len()]);
        }
        let claim = format!(
            "INSERT IGNORE INTO {} (name, fired_at) VALUES (?, ?)",
            self.firings
        );
        let forget = format!("DELETE FROM {} WHERE fired_at < ?", self.firings);
        let oldest = firings.iter().map(|f| f.1).min().unwrap_or(0) - 86_400;
        self.run(|c, _| {
            let mut tx = c.start_transaction(TxOpts::default())?;
            let mut won = Vec::with_capacity(firings.len());
            for &(name, at) in firings {
                tx.exec_drop(&claim, (name.as_bytes(), at))?;
                won.push(tx.affected_rows() == 1);
            }
            tx.exec_drop(&forget, (oldest,))?;
            tx.commit()?;
            Ok(won)
        })
    }

    fn upkeep_every(&self) -> Option<Duration> {
        self.lease.as_ref().map(|l| l.duration / 3)
    }

    fn release(&mut self) {
        if self.lease.is_none() {
            return;
        }
        let done = self.run(|c, s| {
            c.exec_drop(
                format!(
                    "UPDATE {} SET lease_until = NOW(3) - INTERVAL 1 SECOND WHERE server_id = ?",
                    s.leases
                ),
                (s.owner(),),
            )
        });
        match done {
            Ok(()) => tracing::info!(
                "{}: queue lease released: other servers take over this server's queued jobs",
                self.place
            ),
            Err(e) => tracing::warn!("{}: releasing the queue lease: {e}", self.place),
        }
    }

    fn upkeep(&mut self) -> Result<Upkeep, StoreError> {
        let Some(lease) = self.lease.clone() else {
            return Ok(Upkeep::default());
        };
        let t0 = Instant::now();
        if !self.run(|c, s| s.renew_lease(c))? {
            self.pending_lapse = true;
            self.run(|c, s| s.upsert_lease(c))?;
        }
        // Past the reported end the server fenced itself and forgot its
        // stored jobs: they are re-read like after an expiry.
        let lapsed = self.pending_lapse || self.held_until.is_some_and(|u| t0 >= u);
        // The claim scans the table: only when there is something to claim.
        let dead = self.run(|c, s| s.any_dead(c))?;
        let claimed = if lapsed || dead {
            self.run(|c, s| s.claim(c, false, lapsed))?
        } else {
            Vec::new()
        };
        let lease_until = lease.held_from(t0);
        self.held_until = Some(lease_until);
        self.pending_lapse = false;
        if dead {
            if let Err(e) = self.run(|c, s| s.forget_dead(c)) {
                tracing::warn!("{}: removing dead servers' leases: {e}", self.place);
            }
        }
        Ok(Upkeep {
            lease_until: Some(lease_until),
            lapsed,
            claimed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_read_from_the_insert_info() {
        assert_eq!(
            duplicates("Records: 3  Duplicates: 1  Warnings: 0"),
            Some(1)
        );
        assert_eq!(
            duplicates("Records: 2  Duplicates: 0  Warnings: 0"),
            Some(0)
        );
        assert_eq!(duplicates(""), None);
    }

    #[test]
    fn key_lists_are_padded_to_a_power_of_two_with_the_last_key() {
        let keys = [
            (Bytes::from("u1"), Bytes::from("f")),
            (Bytes::from("u2"), Bytes::from("f")),
            (Bytes::from("u3"), Bytes::from("f")),
        ];
        let mut params = Vec::new();
        key_params(keys.iter().map(|(u, f)| (u, f)), false, &mut params);
        assert_eq!(params.len(), 8);
        assert_eq!(params[6], Value::Bytes(b"u3".to_vec()));
        assert_eq!(keys_match(3, false).matches('?').count(), 8);
        assert_eq!(keys_match(3, true).matches('?').count(), 16);
    }

    fn col(n: &str, t: &str, len: usize) -> (String, String, usize) {
        (n.into(), t.into(), len)
    }

    #[test]
    fn gearmand_columns_are_accepted_and_others_named() {
        let gearmand = [
            col("unique_key", "varchar", 64),
            col("function_name", "varchar", 255),
            col("priority", "int", 0),
            col("data", "longblob", 4294967295),
            col("when_to_run", "int", 0),
        ];
        let c = check_columns("q", &gearmand).ok().unwrap();
        assert!(c.text && c.when_32 && !c.data_text);
        assert_eq!((c.unique_max, c.function_max), (64, 255));
        let Err(SetupError::Schema(m)) = check_columns("q", &gearmand[..3]) else {
            panic!("accepted a table without data and when_to_run");
        };
        assert!(m.contains("missing column data") && m.contains("missing column when_to_run"));
    }
}
