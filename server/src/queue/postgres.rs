//! PostgreSQL queue (`-q postgres`) in gearmand's table layout, so that
//! gearmand and polygeard can each replay the other's queue:
//!
//! ```sql
//! CREATE TABLE queue (unique_key VARCHAR(64), function_name VARCHAR(255),
//!   priority INTEGER, data BYTEA, when_to_run INTEGER,
//!   UNIQUE (unique_key, function_name))
//! ```
//!
//! Rows are keyed by (function, unique); the server's job ids and reducers
//! are not stored (gearmand's layout has no column for them). Function names
//! and uniques go to text columns: one that is not valid UTF-8, holds a NUL
//! byte or is longer than its column is refused on its own (the rest of the
//! batch commits). Each batch is one transaction: the deletes, then every
//! insert in one statement over arrays (`unnest`) with `ON CONFLICT`, so a
//! key already stored (by another server) refuses that job only. Only plain
//! connections are made (no TLS).
//!
//! With a lease, servers share the table: the column `polygear_owner` (added
//! when missing; gearmand names its columns, so it is not in the way) names
//! the server holding a row, and `<table>_polygear_leases` holds each
//! server's lease, timed by the database clock. A server claims the rows of
//! no server and of servers whose lease expired (`FOR UPDATE SKIP LOCKED`,
//! so two survivors never take the same row), inserts rows as its own and
//! deletes only its own. A row of its own that the server does not know (its
//! insert committed while the connection broke, so the submission was
//! refused) is overwritten by a new submission of that key. Without a lease the server behaves as gearmand:
//! it reads every row and deletes by key.
//!
//! A broken connection fails the call with [`StoreError::Unavailable`]; the
//! next call reconnects, and after a failed attempt the store waits (100 ms,
//! doubling up to 5 s) before trying again, failing fast meanwhile.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use postgres::types::ToSql;
use postgres::{Client, Config, GenericClient, NoTls, Row, Statement};

use super::net::Backoff;
use super::{Rejected, Store, StoreError, StoredJob, StoredKey, Upkeep};
use crate::{Lease, ServerError};

/// Why a job is refused when its key is already stored.
const TAKEN: &str = "a job with this function and unique is already queued (on another server?)";

/// The columns replayed, in this order (gearmand's SELECT).
const ROW: &str = "unique_key, function_name, priority, data, when_to_run";

/// gearmand's columns and the types accepted for each.
const COLUMNS: [(&str, &[&str]); 5] = [
    ("unique_key", TEXT_TYPES),
    ("function_name", TEXT_TYPES),
    ("priority", INT_TYPES),
    ("data", &["bytea"]),
    ("when_to_run", INT_TYPES),
];
const TEXT_TYPES: &[&str] = &["character varying", "text", "character"];
const INT_TYPES: &[&str] = &["integer", "smallint", "bigint"];

/// The SQL text of every statement, built once from the table name.
struct Sql {
    table: String,
    leases: String,
    /// Occurrences of periodic jobs claimed by the servers sharing the table.
    firings: String,
    /// The owner index, qualified like the table.
    owner_index: String,
    /// Its name alone (CREATE INDEX takes no schema).
    owner_index_name: String,
    insert: String,
    delete: String,
}

impl Sql {
    fn new(table: &str, shared: bool) -> Result<Sql, ServerError> {
        let ok = !table.is_empty()
            && table.split('.').count() <= 2
            && table.split('.').all(|part| {
                part.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
            });
        if !ok {
            return Err(ServerError::Config(format!(
                "--libpq-table {table:?}: use a plain SQL name (letters, digits, _; optionally schema.table)"
            )));
        }
        let (schema, name) = match table.split_once('.') {
            Some((s, n)) => (format!("{s}."), n),
            None => (String::new(), table),
        };
        let owner_index_name = format!("{name}_polygear_owner");
        let (insert, delete) = if shared {
            (
                format!(
                    "INSERT INTO {table} (priority, unique_key, function_name, data, when_to_run, polygear_owner) \
                     SELECT p, u, f, d, w, $6::text FROM unnest($1::int4[], $2::text[], $3::text[], $4::bytea[], $5::int4[]) AS x(p, u, f, d, w) \
                     ON CONFLICT (unique_key, function_name) DO UPDATE SET priority = EXCLUDED.priority, data = EXCLUDED.data, \
                     when_to_run = EXCLUDED.when_to_run WHERE {table}.polygear_owner = EXCLUDED.polygear_owner \
                     RETURNING unique_key, function_name"
                ),
                format!(
                    "DELETE FROM {table} AS q USING unnest($1::text[], $2::text[]) AS k(u, f) \
                     WHERE q.unique_key = k.u AND q.function_name = k.f AND q.polygear_owner = $3::text"
                ),
            )
        } else {
            (
                format!(
                    "INSERT INTO {table} (priority, unique_key, function_name, data, when_to_run) \
                     SELECT p, u, f, d, w FROM unnest($1::int4[], $2::text[], $3::text[], $4::bytea[], $5::int4[]) AS x(p, u, f, d, w) \
                     ON CONFLICT (unique_key, function_name) DO NOTHING RETURNING unique_key, function_name"
                ),
                format!(
                    "DELETE FROM {table} AS q USING unnest($1::text[], $2::text[]) AS k(u, f) \
                     WHERE q.unique_key = k.u AND q.function_name = k.f"
                ),
            )
        };
        Ok(Sql {
            table: table.to_string(),
            leases: format!("{table}_polygear_leases"),
            firings: format!("{table}_polygear_firings"),
            owner_index: format!("{schema}{owner_index_name}"),
            owner_index_name,
            insert,
            delete,
        })
    }

    fn create_table(&self) -> String {
        // gearmand's DDL, word for word.
        format!(
            "CREATE TABLE IF NOT EXISTS {} (unique_key VARCHAR(64), function_name VARCHAR(255), \
             priority INTEGER, data BYTEA, when_to_run INTEGER, UNIQUE (unique_key, function_name))",
            self.table
        )
    }

    fn renew(&self) -> String {
        format!(
            "UPDATE {} SET lease_until = now() + make_interval(secs => $2::float8) \
             WHERE server_id = $1::text AND lease_until > now()",
            self.leases
        )
    }

    fn upsert_lease(&self) -> String {
        format!(
            "INSERT INTO {} (server_id, lease_until) VALUES ($1::text, now() + make_interval(secs => $2::float8)) \
             ON CONFLICT (server_id) DO UPDATE SET lease_until = EXCLUDED.lease_until",
            self.leases
        )
    }

    /// Claims rows of servers whose lease expired (and, at start, rows of
    /// no server).
    fn claim(&self, with_unowned: bool) -> String {
        let unowned = if with_unowned {
            "polygear_owner IS NULL OR "
        } else {
            ""
        };
        format!(
            "UPDATE {t} SET polygear_owner = $1::text WHERE ctid IN (SELECT ctid FROM {t} WHERE {unowned}polygear_owner IN \
             (SELECT server_id FROM {l} WHERE lease_until < now() AND server_id <> $1::text) FOR UPDATE SKIP LOCKED) \
             RETURNING {ROW}",
            t = self.table,
            l = self.leases
        )
    }

    /// This server's rows; `FOR UPDATE` waits for a survivor claiming one
    /// of them at this moment and then leaves it out.
    fn mine(&self) -> String {
        format!(
            "SELECT {ROW} FROM {} WHERE polygear_owner = $1::text FOR UPDATE",
            self.table
        )
    }

    fn drop_dead_leases(&self) -> String {
        format!(
            "DELETE FROM {l} AS l WHERE l.lease_until < now() AND l.server_id <> $1::text \
             AND NOT EXISTS (SELECT 1 FROM {t} AS q WHERE q.polygear_owner = l.server_id)",
            t = self.table,
            l = self.leases
        )
    }
}

/// One open connection with its prepared statements.
struct Conn {
    client: Client,
    insert: Statement,
    delete: Statement,
    /// Reads every row (a table not shared).
    all: Statement,
    /// Lease statements (shared tables only).
    lease: Option<LeaseStatements>,
}

struct LeaseStatements {
    renew: Statement,
    upsert: Statement,
    claim_dead: Statement,
    claim_free: Statement,
    mine: Statement,
    drop_dead: Statement,
}

impl Conn {
    fn prepare(mut client: Client, sql: &Sql, shared: bool) -> Result<Conn, postgres::Error> {
        let lease = if shared {
            Some(LeaseStatements {
                renew: client.prepare(&sql.renew())?,
                upsert: client.prepare(&sql.upsert_lease())?,
                claim_dead: client.prepare(&sql.claim(false))?,
                claim_free: client.prepare(&sql.claim(true))?,
                mine: client.prepare(&sql.mine())?,
                drop_dead: client.prepare(&sql.drop_dead_leases())?,
            })
        } else {
            None
        };
        Ok(Conn {
            insert: client.prepare(&sql.insert)?,
            delete: client.prepare(&sql.delete)?,
            all: client.prepare(&format!("SELECT {ROW} FROM {}", sql.table))?,
            client,
            lease,
        })
    }
}

/// The inserts of one batch that the table can hold, as column arrays.
#[derive(Default)]
struct Inserts<'a> {
    ids: Vec<i64>,
    priority: Vec<i32>,
    unique: Vec<&'a str>,
    function: Vec<&'a str>,
    data: Vec<&'a [u8]>,
    when: Vec<i32>,
}

impl<'a> Inserts<'a> {
    /// Splits `rows` into storable ones and refusals.
    fn build(rows: &[&'a StoredJob], limits: &Limits, rejected: &mut Vec<Rejected>) -> Self {
        let mut ins = Inserts::default();
        let mut keys = HashSet::new();
        for row in rows {
            let checked = text(&row.function, "function name", limits.function)
                .and_then(|f| Ok((f, text(&row.unique, "unique", limits.unique)?)))
                .and_then(|(f, u)| match keys.insert((f, u)) {
                    true => Ok((f, u)),
                    // One statement may not touch a key twice.
                    false => Err(TAKEN.to_string()),
                });
            match checked {
                Ok((function, unique)) => {
                    ins.ids.push(row.id);
                    ins.priority.push(i32::from(row.priority.min(2)));
                    ins.unique.push(unique);
                    ins.function.push(function);
                    ins.data.push(&row.data);
                    ins.when.push(row.when.clamp(0, i64::from(i32::MAX)) as i32);
                }
                Err(reason) => rejected.push(Rejected { id: row.id, reason }),
            }
        }
        ins
    }

    /// The rows that `stored` (the keys the INSERT returned) does not hold.
    fn refused(&self, stored: Vec<Row>) -> Result<Vec<Rejected>, postgres::Error> {
        if stored.len() == self.ids.len() {
            return Ok(Vec::new());
        }
        let mut keys = HashSet::with_capacity(stored.len());
        for r in &stored {
            keys.insert(key(r.try_get(0)?, r.try_get(1)?));
        }
        let mut out = Vec::new();
        for (i, id) in self.ids.iter().enumerate() {
            if !keys.contains(&key(self.unique[i], self.function[i])) {
                out.push(Rejected {
                    id: *id,
                    reason: TAKEN.to_string(),
                });
            }
        }
        Ok(out)
    }
}

/// One string for a (unique, function) pair (NUL never occurs in either).
fn key(unique: &str, function: &str) -> String {
    format!("{unique}\0{function}")
}

/// `bytes` as a value of a text column of at most `max` characters.
fn text<'a>(bytes: &'a Bytes, what: &str, max: Option<usize>) -> Result<&'a str, String> {
    let s = std::str::from_utf8(bytes).map_err(|_| {
        format!("the {what} is not valid UTF-8 (the PostgreSQL queue stores it as text)")
    })?;
    if s.contains('\0') {
        return Err(format!(
            "the {what} contains a NUL byte (PostgreSQL text cannot hold it)"
        ));
    }
    if let Some(max) = max {
        if s.chars().count() > max {
            return Err(format!(
                "the {what} is longer than the queue table's column allows ({max} characters)"
            ));
        }
    }
    Ok(s)
}

/// Longest function name and unique the table's columns hold (`None`: no
/// limit).
#[derive(Debug, Default, Clone, Copy)]
struct Limits {
    function: Option<usize>,
    unique: Option<usize>,
}

pub(crate) struct PgStore {
    config: Config,
    /// `host:port/dbname` for messages (never the password).
    target: String,
    sql: Sql,
    lease: Option<Lease>,
    limits: Limits,
    conn: Option<Conn>,
    backoff: Backoff,
}

impl PgStore {
    /// Connects, creates the table when absent (and the lease table and
    /// owner column for a shared queue) and checks its columns.
    pub(crate) fn open(
        conninfo: &str,
        table: &str,
        lease: Option<Lease>,
    ) -> Result<PgStore, ServerError> {
        let config = config(conninfo)?;
        let target = describe_target(&config);
        let shared = lease.is_some();
        let sql = Sql::new(table, shared)?;
        let mut client = config.connect(NoTls).map_err(|e| {
            ServerError::Queue(format!(
                "cannot connect to PostgreSQL at {target}: {}",
                describe(&e)
            ))
        })?;
        let at = |e: postgres::Error| {
            ServerError::Queue(format!("PostgreSQL at {target}: {}", describe(&e)))
        };
        let limits = match setup(&mut client, &sql, shared) {
            // Another server created the same table at the same moment.
            Err(Setup::Db(e)) if is_duplicate(&e) => setup(&mut client, &sql, shared),
            other => other,
        }
        .map_err(|e| match e {
            Setup::Db(e) => at(e),
            Setup::Layout(msg) => ServerError::Queue(format!("PostgreSQL at {target}: {msg}")),
        })?;
        let conn = Conn::prepare(client, &sql, shared).map_err(at)?;
        Ok(PgStore {
            config,
            target,
            sql,
            lease,
            limits,
            conn: Some(conn),
            backoff: Backoff::new(),
        })
    }

    /// The open connection, reconnecting if there is none (unless backing
    /// off after a failed attempt).
    fn conn(&mut self) -> Result<&mut Conn, StoreError> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            if self.backoff.check().is_err() {
                return Err(StoreError::Unavailable(format!(
                    "reconnecting to PostgreSQL at {}",
                    self.target
                )));
            }
            let shared = self.lease.is_some();
            let opened = self
                .config
                .connect(NoTls)
                .and_then(|c| Conn::prepare(c, &self.sql, shared));
            match opened {
                Ok(c) => {
                    tracing::info!("reconnected to PostgreSQL at {}", self.target);
                    self.backoff.reset();
                    self.conn = Some(c);
                }
                Err(e) => {
                    self.backoff.failed();
                    return Err(StoreError::Unavailable(format!(
                        "cannot connect to PostgreSQL at {}: {}",
                        self.target,
                        describe(&e)
                    )));
                }
            }
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("no connection".into()))
    }

    /// Classifies `e`; a connection problem drops the connection so that
    /// the next call reconnects.
    fn fail(&mut self, e: postgres::Error) -> StoreError {
        let msg = format!("PostgreSQL at {}: {}", self.target, describe(&e));
        if is_connection_problem(&e) || self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
            StoreError::Unavailable(msg)
        } else {
            StoreError::Failed(msg)
        }
    }

    fn owner(&self) -> Option<&str> {
        self.lease.as_ref().map(|l| l.server_id.as_str())
    }
}

/// At start: renews the lease, claims free rows and returns this server's
/// (every row without a lease).
fn load_rows(conn: &mut Conn, lease: Option<&Lease>) -> Result<Vec<Row>, postgres::Error> {
    let (Some(lease), Some(st)) = (lease, &conn.lease) else {
        return conn.client.query(&conn.all, &[]);
    };
    let (me, secs) = (&lease.server_id, lease.duration.as_secs_f64());
    let mut tx = conn.client.transaction()?;
    tx.execute(&st.upsert, &[me, &secs])?;
    tx.execute(&st.claim_free, &[me])?;
    let rows = tx.query(&st.mine, &[me])?;
    tx.commit()?;
    Ok(rows)
}

/// Renews the lease; if it had lapsed, takes it again and re-reads this
/// server's rows.
fn renew(conn: &mut Conn, lease: &Lease) -> Result<Upkeep, postgres::Error> {
    let mut up = Upkeep::default();
    let Some(st) = &conn.lease else {
        return Ok(up);
    };
    let (me, secs) = (&lease.server_id, lease.duration.as_secs_f64());
    let t0 = Instant::now();
    if conn.client.execute(&st.renew, &[me, &secs])? == 0 {
        conn.client.execute(&st.upsert, &[me, &secs])?;
        up.lapsed = true;
        up.claimed = jobs(conn.client.query(&st.mine, &[me])?)?;
    }
    up.lease_until = Some(lease.held_from(t0));
    Ok(up)
}

/// Claims the rows of servers whose lease expired and drops the leases of
/// dead servers that hold no row any more, in one transaction.
fn claim_dead(conn: &mut Conn, me: &str) -> Result<Vec<StoredJob>, postgres::Error> {
    let Some(st) = &conn.lease else {
        return Ok(Vec::new());
    };
    let mut tx = conn.client.transaction()?;
    let claimed = tx.query(&st.claim_dead, &[&me])?;
    tx.execute(&st.drop_dead, &[&me])?;
    tx.commit()?;
    jobs(claimed)
}

impl Store for PgStore {
    fn load(&mut self) -> Result<Vec<StoredJob>, StoreError> {
        let lease = self.lease.clone();
        let result = load_rows(self.conn()?, lease.as_ref()).and_then(jobs);
        result.map_err(|e| self.fail(e))
    }

    fn commit(
        &mut self,
        deletes: &[&StoredKey],
        inserts: &[&StoredJob],
    ) -> Result<Vec<Rejected>, StoreError> {
        let mut rejected = Vec::new();
        let limits = self.limits;
        let ins = Inserts::build(inserts, &limits, &mut rejected);
        let (del_u, del_f) = delete_keys(deletes);
        let owner = self.owner().map(str::to_string);
        let conn = self.conn()?;
        match write(conn, &del_u, &del_f, &ins, owner.as_deref()) {
            Ok(refused) => {
                rejected.extend(refused);
                Ok(rejected)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn keyed(&self) -> bool {
        true
    }

    /// One insert per occurrence into `<table>_polygear_firings` (first
    /// come wins: `ON CONFLICT DO NOTHING`), in one transaction that also
    /// forgets claims older than a day.
    fn claim_firings(&mut self, firings: &[(&str, i64)]) -> Result<Vec<bool>, StoreError> {
        if self.lease.is_none() {
            return Ok(vec![true; firings.len()]);
        }
        let table = self.sql.firings.clone();
        let conn = self.conn()?;
        let result = (|| -> Result<Vec<bool>, postgres::Error> {
            let mut tx = conn.client.transaction()?;
            let claim = tx.prepare(&format!(
                "INSERT INTO {table} (name, fired_at) VALUES ($1::text, $2::int8) ON CONFLICT DO NOTHING"
            ))?;
            let mut won = Vec::with_capacity(firings.len());
            for &(name, at) in firings {
                won.push(tx.execute(&claim, &[&name, &at])? == 1);
            }
            let oldest = firings.iter().map(|f| f.1).min().unwrap_or(0) - 86_400;
            tx.execute(
                &format!("DELETE FROM {table} WHERE fired_at < $1::int8"),
                &[&oldest],
            )?;
            tx.commit()?;
            Ok(won)
        })();
        result.map_err(|e| self.fail(e))
    }

    fn upkeep_every(&self) -> Option<Duration> {
        self.lease.as_ref().map(|l| l.duration / 3)
    }

    fn release(&mut self) {
        let Some(me) = self.lease.as_ref().map(|l| l.server_id.clone()) else {
            return;
        };
        let sql = format!(
            "UPDATE {} SET lease_until = now() - interval '1 second' WHERE server_id = $1::text",
            self.sql.leases
        );
        let done = match self.conn() {
            Ok(c) => c.client.execute(&sql, &[&me]).map_err(|e| describe(&e)),
            Err(e) => Err(e.to_string()),
        };
        match done {
            Ok(_) => tracing::info!(
                "queue lease released: other servers take over this server's queued jobs"
            ),
            Err(e) => tracing::warn!("releasing the queue lease: {e}"),
        }
    }

    fn upkeep(&mut self) -> Result<Upkeep, StoreError> {
        let Some(lease) = self.lease.clone() else {
            return Ok(Upkeep::default());
        };
        let renewed = renew(self.conn()?, &lease);
        let mut up = renewed.map_err(|e| self.fail(e))?;
        // A failed claim does not undo the renewal: report both.
        let claimed = match self.conn() {
            Ok(conn) => claim_dead(conn, &lease.server_id).map_err(|e| self.fail(e)),
            Err(e) => Err(e),
        };
        match claimed {
            Ok(jobs) => up.claimed.extend(jobs),
            Err(e) => {
                tracing::warn!("claiming the queued jobs of servers whose lease expired: {e}")
            }
        }
        Ok(up)
    }
}

/// Commits one batch: the deletes, then the inserts; returns the inserts
/// refused because their key is taken.
fn write(
    conn: &mut Conn,
    del_u: &[&str],
    del_f: &[&str],
    ins: &Inserts,
    owner: Option<&str>,
) -> Result<Vec<Rejected>, postgres::Error> {
    let both = !del_u.is_empty() && !ins.ids.is_empty();
    if !both {
        // One statement is atomic on its own: no BEGIN/COMMIT round trips.
        delete(&mut conn.client, &conn.delete, del_u, del_f, owner)?;
        let stored = insert(&mut conn.client, &conn.insert, ins, owner)?;
        return ins.refused(stored);
    }
    let mut tx = conn.client.transaction()?;
    delete(&mut tx, &conn.delete, del_u, del_f, owner)?;
    let stored = insert(&mut tx, &conn.insert, ins, owner)?;
    tx.commit()?;
    ins.refused(stored)
}

fn delete(
    c: &mut impl GenericClient,
    st: &Statement,
    del_u: &[&str],
    del_f: &[&str],
    owner: Option<&str>,
) -> Result<(), postgres::Error> {
    if del_u.is_empty() {
        return Ok(());
    }
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&del_u, &del_f];
    if let Some(o) = &owner {
        params.push(o);
    }
    // 0 rows: the job is no longer this server's (or was never stored).
    c.execute(st, &params)?;
    Ok(())
}

fn insert(
    c: &mut impl GenericClient,
    st: &Statement,
    ins: &Inserts,
    owner: Option<&str>,
) -> Result<Vec<Row>, postgres::Error> {
    if ins.ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &ins.priority,
        &ins.unique,
        &ins.function,
        &ins.data,
        &ins.when,
    ];
    if let Some(o) = &owner {
        params.push(o);
    }
    c.query(st, &params)
}

/// The keys of `deletes` as (uniques, functions); keys no text column can
/// hold are left out (no such row exists).
fn delete_keys<'a>(deletes: &[&'a StoredKey]) -> (Vec<&'a str>, Vec<&'a str>) {
    deletes
        .iter()
        .filter_map(|k| {
            Some((
                std::str::from_utf8(&k.unique).ok()?,
                std::str::from_utf8(&k.function).ok()?,
            ))
        })
        .unzip()
}

/// Stored jobs from rows of [`ROW`] (NULLs read as gearmand's defaults).
fn jobs(rows: Vec<Row>) -> Result<Vec<StoredJob>, postgres::Error> {
    rows.iter()
        .map(|r| {
            let s = |i: usize| -> Result<Bytes, postgres::Error> {
                Ok(Bytes::from(
                    r.try_get::<_, Option<String>>(i)?.unwrap_or_default(),
                ))
            };
            Ok(StoredJob {
                id: 0,
                unique: s(0)?,
                function: s(1)?,
                priority: int(r, 2)?.map_or(1, |p| p.clamp(0, 2) as u8),
                data: Bytes::from(r.try_get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default()),
                handle: 0,
                retain: 0,
                when: int(r, 4)?.unwrap_or(0).max(0),
                reducer: Bytes::new(),
            })
        })
        .collect()
}

/// An integer column of any width.
fn int(r: &Row, i: usize) -> Result<Option<i64>, postgres::Error> {
    if let Ok(v) = r.try_get::<_, Option<i32>>(i) {
        return Ok(v.map(i64::from));
    }
    if let Ok(v) = r.try_get::<_, Option<i16>>(i) {
        return Ok(v.map(i64::from));
    }
    r.try_get::<_, Option<i64>>(i)
}

/// Why the table could not be set up.
enum Setup {
    Db(postgres::Error),
    Layout(String),
}

impl From<postgres::Error> for Setup {
    fn from(e: postgres::Error) -> Setup {
        Setup::Db(e)
    }
}

/// Whether table `$1` has a unique index on exactly (unique_key,
/// function_name), which `ON CONFLICT` needs.
const HAS_KEY: &str = "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass($1::text) \
    AND i.indisunique AND i.indnkeyatts = 2 AND i.indpred IS NULL AND i.indexprs IS NULL \
    AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a \
         WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)) = ARRAY['function_name', 'unique_key'])";

/// Creates what is missing and checks the table's columns.
fn setup(client: &mut Client, sql: &Sql, shared: bool) -> Result<Limits, Setup> {
    client.batch_execute(&sql.create_table())?;
    let cols = client.query(
        "SELECT a.attname::text, format_type(a.atttypid, NULL)::text, \
         CASE WHEN a.atttypid IN ('varchar'::regtype, 'bpchar'::regtype) AND a.atttypmod > 4 THEN a.atttypmod - 4 END \
         FROM pg_attribute a WHERE a.attrelid = to_regclass($1::text) AND a.attnum > 0 AND NOT a.attisdropped",
        &[&sql.table],
    )?;
    let mut found = Vec::new();
    for r in &cols {
        let name: String = r.try_get(0)?;
        let ty: String = r.try_get(1)?;
        let max: Option<i32> = r.try_get(2)?;
        found.push((name, ty, max));
    }
    let limits = check_columns(&sql.table, &found).map_err(Setup::Layout)?;
    if !client
        .query_one(HAS_KEY, &[&sql.table])?
        .try_get::<_, bool>(0)?
    {
        return Err(Setup::Layout(format!(
            "table {} has no UNIQUE (unique_key, function_name) constraint (gearmand's layout has one)",
            sql.table
        )));
    }
    if shared {
        if !found.iter().any(|(n, _, _)| n == "polygear_owner") {
            client.batch_execute(&format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS polygear_owner VARCHAR(255)",
                sql.table
            ))?;
        }
        let index =
            client.query_one("SELECT to_regclass($1::text) IS NULL", &[&sql.owner_index])?;
        if index.try_get::<_, bool>(0)? {
            client.batch_execute(&format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} (polygear_owner)",
                sql.owner_index_name, sql.table
            ))?;
        }
        client.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} (server_id VARCHAR(255) PRIMARY KEY, lease_until TIMESTAMPTZ NOT NULL);
             CREATE TABLE IF NOT EXISTS {} (name VARCHAR(255) NOT NULL, fired_at BIGINT NOT NULL, PRIMARY KEY (name, fired_at))",
            sql.leases, sql.firings
        ))?;
    }
    Ok(limits)
}

/// Checks gearmand's columns in `found` (name, type, length limit).
fn check_columns(table: &str, found: &[(String, String, Option<i32>)]) -> Result<Limits, String> {
    let mut problems = Vec::new();
    let mut limits = Limits::default();
    for (name, types) in COLUMNS {
        match found.iter().find(|(n, _, _)| n == name) {
            None => problems.push(format!("column {name} is missing")),
            Some((_, ty, _)) if !types.contains(&ty.as_str()) => problems.push(format!(
                "column {name} is {ty} (expected {})",
                types.join(" or ")
            )),
            Some((_, _, max)) => {
                let max = max.and_then(|m| usize::try_from(m).ok());
                match name {
                    "unique_key" => limits.unique = max,
                    "function_name" => limits.function = max,
                    _ => {}
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(limits)
    } else {
        Err(format!(
            "table {table} does not have gearmand's layout: {} (expected unique_key VARCHAR(64), function_name VARCHAR(255), priority INTEGER, data BYTEA, when_to_run INTEGER)",
            problems.join(", ")
        ))
    }
}

/// Parses a libpq connection string, filling in libpq's environment
/// defaults (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE; the local
/// socket directory and the login name) and timeouts so that a dead network
/// cannot hang a call forever.
fn config(conninfo: &str) -> Result<Config, ServerError> {
    let mut c = Config::from_str(conninfo)
        .map_err(|e| ServerError::Config(format!("--libpq-conninfo: {}", describe(&e))))?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if c.get_hosts().is_empty() {
        let host = env("PGHOST").unwrap_or_else(|| "/var/run/postgresql".into());
        c.host(&host);
    }
    if c.get_ports().is_empty() {
        if let Some(p) = env("PGPORT").and_then(|p| p.parse().ok()) {
            c.port(p);
        }
    }
    if c.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(|| env("USER"))
            .unwrap_or_else(|| "postgres".into());
        c.user(&user);
    }
    if c.get_password().is_none() {
        if let Some(p) = env("PGPASSWORD") {
            c.password(p);
        }
    }
    if c.get_dbname().is_none() {
        if let Some(d) = env("PGDATABASE") {
            c.dbname(&d);
        }
    }
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(Duration::from_secs(5));
    }
    if c.get_tcp_user_timeout().is_none() {
        c.tcp_user_timeout(Duration::from_secs(15));
    }
    c.keepalives(true);
    if c.get_keepalives_idle() >= Duration::from_secs(7200) {
        c.keepalives_idle(Duration::from_secs(5));
    }
    if c.get_keepalives_interval().is_none() {
        c.keepalives_interval(Duration::from_secs(2));
    }
    if c.get_keepalives_retries().is_none() {
        c.keepalives_retries(3);
    }
    if c.get_application_name().is_none() {
        c.application_name("polygeard");
    }
    Ok(c)
}

/// `host:port/dbname` (the first host), for messages.
fn describe_target(c: &Config) -> String {
    let host = match c.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let db = c.get_dbname().or(c.get_user()).unwrap_or("?");
    format!("{host}:{port}/{db}")
}

/// An error's message with the database's severity, detail and hint, or
/// the chain of causes for other errors.
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{}: {}", db.severity(), db.message());
        if let Some(d) = db.detail() {
            s.push_str(&format!(" ({d})"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!(" (hint: {h})"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(&format!(": {c}"));
        }
        src = cause.source();
    }
    s
}

/// A broken or closing connection, as opposed to an error in a statement.
fn is_connection_problem(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        // I/O and protocol errors end the connection.
        None => true,
        Some(db) => {
            let code = db.code().code();
            // 08: connection exception; 57P01-57P03: shutdown, cannot connect now.
            code.starts_with("08") || code.starts_with("57P")
        }
    }
}

fn is_duplicate(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    matches!(
        e.code(),
        Some(c) if *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::DUPLICATE_TABLE || *c == SqlState::DUPLICATE_OBJECT
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_sql_names() {
        for ok in ["queue", "gear_q1", "jobs.queue", "_q$"] {
            assert!(Sql::new(ok, true).is_ok(), "{ok}");
        }
        for bad in ["", "1q", "q;drop table x", "a.b.c", "q q", "\"q\"", "a."] {
            assert!(Sql::new(bad, false).is_err(), "{bad}");
        }
        let sql = Sql::new("jobs.queue", true).unwrap();
        assert_eq!(sql.leases, "jobs.queue_polygear_leases");
        assert_eq!(sql.owner_index, "jobs.queue_polygear_owner");
        assert_eq!(sql.owner_index_name, "queue_polygear_owner");
    }

    fn col(n: &str, t: &str, max: Option<i32>) -> (String, String, Option<i32>) {
        (n.into(), t.into(), max)
    }

    #[test]
    fn gearmands_columns_are_checked_and_give_the_limits() {
        let good = [
            col("unique_key", "character varying", Some(64)),
            col("function_name", "character varying", Some(255)),
            col("priority", "integer", None),
            col("data", "bytea", None),
            col("when_to_run", "integer", None),
            col("polygear_owner", "character varying", Some(255)),
        ];
        let l = check_columns("queue", &good).unwrap();
        assert_eq!((l.unique, l.function), (Some(64), Some(255)));
        let bad = [
            col("unique_key", "text", None),
            col("function_name", "bytea", None),
            col("priority", "integer", None),
        ];
        let e = check_columns("queue", &bad).unwrap_err();
        assert!(e.contains("column function_name is bytea"), "{e}");
        assert!(e.contains("column data is missing"), "{e}");
        assert!(e.contains("column when_to_run is missing"), "{e}");
        assert!(!e.contains("unique_key is"), "{e}");
    }

    #[test]
    fn text_columns_take_utf8_without_nul_within_the_limit() {
        let b = |s: &[u8]| Bytes::copy_from_slice(s);
        assert_eq!(text(&b("ééé".as_bytes()), "unique", Some(3)), Ok("ééé"));
        assert!(text(&b("éééé".as_bytes()), "unique", Some(3))
            .unwrap_err()
            .contains("(3 characters)"));
        assert!(text(&b(b"\xff"), "unique", None)
            .unwrap_err()
            .contains("UTF-8"));
        assert!(text(&b(b"a\0b"), "unique", None)
            .unwrap_err()
            .contains("NUL"));
    }

    fn job(id: i64, unique: &[u8]) -> StoredJob {
        StoredJob {
            id,
            function: Bytes::from_static(b"f"),
            unique: Bytes::copy_from_slice(unique),
            priority: 7,
            when: i64::MAX,
            reducer: Bytes::new(),
            data: Bytes::from_static(b"d"),
            handle: 0,
            retain: 0,
        }
    }

    #[test]
    fn a_batch_stores_each_key_once_and_clamps_numbers() {
        let jobs = [job(1, b"a"), job(2, b"\xfe"), job(3, b"a"), job(4, b"b")];
        let refs: Vec<&StoredJob> = jobs.iter().collect();
        let mut rejected = Vec::new();
        let ins = Inserts::build(&refs, &Limits::default(), &mut rejected);
        assert_eq!(ins.ids, [1, 4]);
        assert_eq!(ins.priority, [2, 2]);
        assert_eq!(ins.when, [i32::MAX, i32::MAX]);
        let ids: Vec<i64> = rejected.iter().map(|r| r.id).collect();
        assert_eq!(ids, [2, 3]);
        assert_eq!(rejected[1].reason, TAKEN);
    }
}
