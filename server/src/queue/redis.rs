//! Redis queue (`-q redis`), in gearmand's layout: one hash per job under
//! the key `<prefix>-<function>-<unique>` with the fields `data` (the
//! payload) and `priority` (`0` high, `1` normal, `2` low, in decimal).
//! polygeard adds the fields `function` and `unique` (and `when` for a
//! scheduled job, `reducer` when there is one); gearmand ignores them on
//! replay, and polygeard reads them when present, so a function name with a
//! `-` comes back intact (gearmand splits the key at the first `-`, its
//! issue #159). Keys without them (written by gearmand) are split by
//! [`split_function_unique`]. gearmand's older plain-string values (the
//! payload under the same key) are read as normal-priority jobs.
//!
//! Each batch is one round trip: `MULTI`, the `DEL`s, the `HSET`s, `EXEC`,
//! written at once; the JOB_CREATED replies wait for the `EXEC` reply.
//! Replay scans `<prefix>-*` with `SCAN` (never `KEYS`) and reads the hashes
//! with pipelined `HGETALL`s.
//!
//! Durability: once `EXEC` has answered, a job survives a `kill -9` of
//! polygeard whatever Redis's settings are, as long as Redis keeps running.
//! That it also survives a crash of Redis or of its machine (the guarantee
//! of the SQLite queue) takes `appendonly yes` with `appendfsync always`:
//! Redis then fsyncs its append-only file before it answers. With
//! `appendfsync everysec` (Redis's default for AOF) up to about two seconds
//! of acknowledged jobs can be lost on a power loss or OS crash (and, when
//! a slow disk delays the write, on a `kill -9` of Redis); with RDB
//! snapshots only (`appendonly no`) everything since the last snapshot;
//! a replica promoted after a failover may lack the latest jobs.
//!
//! A broken connection fails the batch (its submissions get an error) and
//! is reopened on a later batch after 100 ms, doubling to 5 s while Redis
//! stays down. A batch whose `EXEC` was sent but not answered may still
//! have been stored: its jobs may run although the client got an error.

use std::collections::{HashMap, HashSet};
use std::io;

use bytes::Bytes;

use super::net::{invalid, split_function_unique, unavailable, Conn, Link};
use super::{Rejected, Store, StoreError, StoredJob, StoredKey};
use crate::ServerError;

/// Keys read per pipelined round trip on replay.
const LOAD_CHUNK: usize = 1000;
/// Largest bulk reply accepted (Redis's own limit for a string).
const MAX_BULK: usize = 512 * 1024 * 1024;
/// Longest status or error line accepted.
const MAX_LINE: usize = 64 * 1024;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Status(Vec<u8>),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// Appends one command (an array of bulk strings) to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads one reply (nested arrays included).
pub(crate) fn read_reply(conn: &mut Conn) -> io::Result<Reply> {
    let line = conn.line(MAX_LINE)?;
    let (&kind, rest) = line.split_first().ok_or_else(|| invalid("empty reply"))?;
    let number = || -> io::Result<i64> {
        std::str::from_utf8(rest)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("bad number in reply"))
    };
    Ok(match kind {
        b'+' => Reply::Status(rest.to_vec()),
        b'-' => Reply::Error(String::from_utf8_lossy(rest).into_owned()),
        b':' => Reply::Int(number()?),
        b'$' => match number()? {
            -1 => Reply::Bulk(None),
            n if (0..=MAX_BULK as i64).contains(&n) => Reply::Bulk(Some(conn.block(n as usize)?)),
            _ => return Err(invalid("bad bulk length")),
        },
        b'*' => match number()? {
            -1 => Reply::Array(None),
            n if n >= 0 => {
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(read_reply(conn)?);
                }
                Reply::Array(Some(items))
            }
            _ => return Err(invalid("bad array length")),
        },
        _ => return Err(invalid("unknown reply type")),
    })
}

/// Sends the commands queued in `conn.out` and reads `n` replies.
fn round_trip(conn: &mut Conn, n: usize) -> io::Result<Vec<Reply>> {
    conn.flush()?;
    (0..n).map(|_| read_reply(conn)).collect()
}

/// The store's view of one Redis server.
pub(crate) struct RedisStore {
    link: Link,
    password: Vec<u8>,
    prefix: Vec<u8>,
}

/// `AUTH` on a new connection when there is a password.
fn auth(c: &mut Conn, password: &[u8], what: &str) -> Result<(), StoreError> {
    if password.is_empty() {
        return Ok(());
    }
    encode(&mut c.out, &[b"AUTH", password]);
    match round_trip(c, 1).map_err(|e| unavailable(what, e))?.pop() {
        Some(Reply::Error(e)) => Err(StoreError::Failed(format!("{what}: AUTH: {e}"))),
        _ => Ok(()),
    }
}

impl RedisStore {
    /// Connects (and authenticates); fails if Redis is unreachable now.
    pub(crate) fn open(
        host: &str,
        port: u16,
        password: &str,
        prefix: &str,
    ) -> Result<RedisStore, ServerError> {
        let mut store = RedisStore {
            link: Link::new("redis", host, port),
            password: password.as_bytes().to_vec(),
            prefix: prefix.as_bytes().to_vec(),
        };
        let (pw, what) = (&store.password, store.link.what.clone());
        store
            .link
            .conn(|c| auth(c, pw, &what))
            .map_err(|e| ServerError::Queue(e.to_string()))?;
        Ok(store)
    }

    fn what(&self) -> &str {
        &self.link.what
    }

    /// Sends the commands `queue` writes and reads `n` replies.
    fn pipeline(
        &mut self,
        n: usize,
        queue: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Vec<Reply>, StoreError> {
        let (pw, what) = (&self.password, self.link.what.clone());
        self.link.exchange(
            |c| auth(c, pw, &what),
            queue,
            |c| (0..n).map(|_| read_reply(c)).collect(),
        )
    }

    /// `<prefix>-<function>-<unique>`.
    fn key(&self, function: &[u8], unique: &[u8]) -> Vec<u8> {
        [&self.prefix[..], b"-", function, b"-", unique].concat()
    }

    /// Every key under `<prefix>-`, by `SCAN`.
    fn scan(&mut self) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut pattern = glob_escape(&self.prefix);
        pattern.extend_from_slice(b"-*");
        let mut seen = HashSet::new();
        let mut keys = Vec::new();
        let mut cursor = b"0".to_vec();
        loop {
            let r = self.pipeline(1, |out| {
                encode(
                    out,
                    &[b"SCAN", &cursor, b"MATCH", &pattern, b"COUNT", b"1000"],
                )
            })?;
            let Some(Reply::Array(Some(mut parts))) = r.into_iter().next() else {
                return Err(StoreError::Failed(format!(
                    "{}: bad SCAN reply",
                    self.what()
                )));
            };
            let (Some(Reply::Array(Some(found))), Some(Reply::Bulk(Some(next)))) =
                (parts.pop(), parts.pop())
            else {
                return Err(StoreError::Failed(format!(
                    "{}: bad SCAN reply",
                    self.what()
                )));
            };
            for k in found {
                if let Reply::Bulk(Some(k)) = k {
                    if seen.insert(k.clone()) {
                        keys.push(k);
                    }
                }
            }
            if next == b"0" {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Reads the jobs under `keys` (hashes, or gearmand's old plain strings).
    fn read_jobs(&mut self, keys: &[Vec<u8>]) -> Result<Vec<StoredJob>, StoreError> {
        let replies = self.pipeline(keys.len(), |out| {
            for k in keys {
                encode(out, &[b"HGETALL", k]);
            }
        })?;
        let mut jobs = Vec::new();
        let mut strings = Vec::new();
        for (k, r) in keys.iter().zip(replies) {
            match r {
                Reply::Array(Some(items)) if !items.is_empty() => {
                    if let Some(job) = self.job_from_hash(k, items) {
                        jobs.push(job);
                    }
                }
                Reply::Error(e) if e.starts_with("WRONGTYPE") => strings.push(k.clone()),
                Reply::Error(e) => {
                    return Err(StoreError::Failed(format!("{}: HGETALL: {e}", self.what())))
                }
                _ => {} // deleted since the scan
            }
        }
        if !strings.is_empty() {
            let replies = self.pipeline(strings.len(), |out| {
                for k in &strings {
                    encode(out, &[b"GET", k]);
                }
            })?;
            for (k, r) in strings.iter().zip(replies) {
                if let Reply::Bulk(Some(data)) = r {
                    let fields = HashMap::from([(b"data".to_vec(), data)]);
                    jobs.extend(self.job(k, fields));
                }
            }
        }
        Ok(jobs)
    }

    fn job_from_hash(&self, key: &[u8], items: Vec<Reply>) -> Option<StoredJob> {
        let mut fields = HashMap::new();
        let mut it = items.into_iter();
        while let (Some(Reply::Bulk(Some(f))), Some(Reply::Bulk(Some(v)))) = (it.next(), it.next())
        {
            fields.insert(f, v);
        }
        self.job(key, fields)
    }

    /// A job from its key and fields; `None` for a key that names no job.
    fn job(&self, key: &[u8], mut fields: HashMap<Vec<u8>, Vec<u8>>) -> Option<StoredJob> {
        let mut take = |name: &str| fields.remove(name.as_bytes());
        let number = |v: Option<Vec<u8>>, default: i64| {
            v.and_then(|v| String::from_utf8(v).ok()?.trim().parse::<i64>().ok())
                .unwrap_or(default)
        };
        let (function, unique) = match (take("function"), take("unique")) {
            (Some(f), Some(u)) => (f, u),
            _ => {
                let rest = key.strip_prefix(&self.prefix[..])?.strip_prefix(b"-")?;
                let (f, u) = split_function_unique(rest)?;
                (f.to_vec(), u.to_vec())
            }
        };
        if function.is_empty() {
            return None;
        }
        Some(StoredJob {
            id: 0,
            function: Bytes::from(function),
            unique: Bytes::from(unique),
            priority: number(take("priority"), 1).clamp(0, 2) as u8,
            when: number(take("when"), 0),
            reducer: Bytes::from(take("reducer").unwrap_or_default()),
            data: Bytes::from(take("data").unwrap_or_default()),
            handle: 0,
            retain: 0,
        })
    }
}

/// `s` with Redis glob pattern characters escaped.
fn glob_escape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

impl Store for RedisStore {
    fn load(&mut self) -> Result<Vec<StoredJob>, StoreError> {
        let keys = self.scan()?;
        let mut jobs = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(LOAD_CHUNK) {
            jobs.extend(self.read_jobs(chunk)?);
        }
        Ok(jobs)
    }

    fn commit(
        &mut self,
        deletes: &[&StoredKey],
        inserts: &[&StoredJob],
    ) -> Result<Vec<Rejected>, StoreError> {
        let del_keys: Vec<Vec<u8>> = deletes
            .iter()
            .map(|k| self.key(&k.function, &k.unique))
            .collect();
        let ins_keys: Vec<Vec<u8>> = inserts
            .iter()
            .map(|j| self.key(&j.function, &j.unique))
            .collect();
        let dels = usize::from(!del_keys.is_empty());
        let n = 2 + dels + inserts.len();
        let replies = self.pipeline(n, |out| {
            encode(out, &[b"MULTI"]);
            if !del_keys.is_empty() {
                let mut args: Vec<&[u8]> = vec![b"DEL"];
                args.extend(del_keys.iter().map(|k| &k[..]));
                encode(out, &args);
            }
            for (job, key) in inserts.iter().zip(&ins_keys) {
                encode_hset(out, key, job);
            }
            encode(out, &[b"EXEC"]);
        })?;
        let what = self.what().to_string();
        let fail = |e: String| StoreError::Failed(format!("{what}: {e}"));
        if let Some(e) = replies.iter().find_map(|r| match r {
            Reply::Error(e) => Some(e.clone()),
            _ => None,
        }) {
            return Err(fail(e)); // MULTI refused, or a command was (EXECABORT)
        }
        let Some(Reply::Array(Some(results))) = replies.last() else {
            return Err(fail(format!("unexpected EXEC reply {:?}", replies.last())));
        };
        if let Some(Reply::Error(e)) = results.first().filter(|_| dels == 1) {
            return Err(fail(format!("DEL: {e}")));
        }
        Ok(results
            .iter()
            .skip(dels)
            .zip(inserts)
            .filter_map(|(r, job)| match r {
                Reply::Error(e) => Some(Rejected {
                    id: job.id,
                    reason: format!("{what}: {e}"),
                }),
                _ => None,
            })
            .collect())
    }

    fn keyed(&self) -> bool {
        true
    }
}

/// `HSET key data .. priority .. function .. unique ..` (+ `when`, `reducer`).
fn encode_hset(out: &mut Vec<u8>, key: &[u8], job: &StoredJob) {
    let priority = job.priority.to_string();
    let when = job.when.to_string();
    let mut args: Vec<&[u8]> = vec![
        b"HSET",
        key,
        b"data",
        &job.data,
        b"priority",
        priority.as_bytes(),
        b"function",
        &job.function,
        b"unique",
        &job.unique,
    ];
    if job.when != 0 {
        args.extend([b"when".as_slice(), when.as_bytes()]);
    }
    if !job.reducer.is_empty() {
        args.extend([b"reducer".as_slice(), &job.reducer[..]]);
    }
    encode(out, &args);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    /// A connection to a local socket that has sent `bytes`.
    fn conn_reading(bytes: &'static [u8]) -> Conn {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(bytes).unwrap();
        });
        let c = Conn::open("127.0.0.1", port).unwrap();
        t.join().unwrap();
        c
    }

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        let mut out = Vec::new();
        encode(&mut out, &[b"DEL", b"a\r\nb"]);
        assert_eq!(out, b"*2\r\n$3\r\nDEL\r\n$4\r\na\r\nb\r\n");
    }

    #[test]
    fn reads_every_reply_type() {
        let mut c = conn_reading(
            b"+OK\r\n-ERR no\r\n:42\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n$1\r\nx\r\n*1\r\n:1\r\n*-1\r\n",
        );
        assert_eq!(read_reply(&mut c).unwrap(), Reply::Status(b"OK".to_vec()));
        assert_eq!(read_reply(&mut c).unwrap(), Reply::Error("ERR no".into()));
        assert_eq!(read_reply(&mut c).unwrap(), Reply::Int(42));
        assert_eq!(
            read_reply(&mut c).unwrap(),
            Reply::Bulk(Some(b"a\r\n".to_vec()))
        );
        assert_eq!(read_reply(&mut c).unwrap(), Reply::Bulk(None));
        assert_eq!(
            read_reply(&mut c).unwrap(),
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"x".to_vec())),
                Reply::Array(Some(vec![Reply::Int(1)]))
            ]))
        );
        assert_eq!(read_reply(&mut c).unwrap(), Reply::Array(None));
        assert!(read_reply(&mut c).is_err(), "EOF is an error");
    }

    #[test]
    fn rejects_malformed_replies() {
        for bad in [
            b"?x\r\n".as_slice(),
            b"$abc\r\n",
            b"$-5\r\n",
            b"$3\r\nabcd\r\n",
            b"+OK\n",
        ] {
            let mut c = conn_reading(Box::leak(bad.to_vec().into_boxed_slice()));
            assert!(read_reply(&mut c).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn escapes_glob_characters() {
        assert_eq!(glob_escape(b"a*b?[c]\\"), b"a\\*b\\?\\[c\\]\\\\");
    }
}
