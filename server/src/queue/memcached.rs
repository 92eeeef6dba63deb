//! memcached queue (`-q libmemcached`), in gearmand's layout: one item per
//! job under the key `<prefix><function>-<unique>`, the payload as its
//! value and the priority (0 high, 1 normal, 2 low) as its flags, no expiry.
//! Several servers share the keys as libmemcached does by default: the
//! one-at-a-time hash of the key modulo the number of servers, in the order
//! given.
//!
//! Not durable: memcached keeps items in memory only, so every queued job
//! is lost when memcached restarts, and memcached may evict items when it
//! runs out of memory (run it with `-M` to refuse stores instead). A
//! `kill -9` of polygeard loses nothing acknowledged while memcached runs.
//!
//! The key names no more than function and unique, so replay splits it as
//! [`split_function_unique`] describes (a function name containing `-` comes
//! back intact only with a libgearman UUID unique). A job whose key memcached
//! cannot take (over 250 bytes, or with spaces or control characters), a
//! payload larger than memcached's item size and a scheduled (epoch) job
//! (there is no room for its time; gearmand refuses them too) are refused
//! one by one: the client gets an error instead of JOB_CREATED.
//!
//! Each batch is one round trip per server (up to [`CHUNK`] commands): the
//! `delete`s then the `set`s are written at once and their replies read
//! after. Replay lists the keys with `lru_crawler metadump all` and reads
//! them with multi-key `get`s. (gearmand's replay lists them with `stats
//! cachedump`, which under memcached 1.5+'s default segmented LRU misses
//! items: for gearmand to take over a queue, run memcached with
//! `-o no_lru_maintainer`.) A broken connection fails the batch and is
//! reopened on a later batch after 100 ms, doubling to 5 s.

use std::io;

use bytes::Bytes;

use super::net::{invalid, split_function_unique, Conn, Link};
use super::{Rejected, Store, StoreError, StoredJob, StoredKey};
use crate::ServerError;

/// Commands per round trip (bounded so that neither side's socket buffers
/// fill up while the other still writes).
const CHUNK: usize = 1000;
/// Keys per `get` command on replay.
const GET_KEYS: usize = 100;
/// memcached's longest key.
const MAX_KEY: usize = 250;
/// Longest reply line accepted (a `metadump` line, a `VALUE` header).
const MAX_LINE: usize = 4096;
/// Largest value accepted on replay.
const MAX_VALUE: usize = 1 << 30;

/// One command of a batch: a delete, or a set of the insert at an index.
enum Cmd {
    Delete(Vec<u8>),
    Set(Vec<u8>, usize),
}

pub(crate) struct MemcachedStore {
    links: Vec<Link>,
    prefix: Vec<u8>,
}

/// `host[:port]` items of a comma (or space) separated list.
fn parse_servers(list: &str) -> Result<Vec<(String, u16)>, String> {
    let items: Vec<&str> = list
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Err("no memcached server given (--libmemcached-servers)".into());
    }
    items
        .into_iter()
        .map(|item| match item.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => p
                .parse()
                .map(|p| (h.trim_matches(['[', ']']).to_string(), p))
                .map_err(|_| format!("bad memcached port in {item:?}")),
            _ => Ok((item.trim_matches(['[', ']']).to_string(), 11211)),
        })
        .collect()
}

/// libmemcached's default key hash (one-at-a-time over C `char`s).
fn one_at_a_time(key: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &b in key {
        h = h.wrapping_add(b as i8 as i32 as u32);
        h = h.wrapping_add(h << 10);
        h ^= h >> 6;
    }
    h = h.wrapping_add(h << 3);
    h ^= h >> 11;
    h.wrapping_add(h << 15)
}

/// Whether memcached's text protocol can carry `key`.
fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY && key.iter().all(|&b| b > b' ' && b != 0x7f)
}

/// Why the job under `key` cannot be stored, if it cannot.
fn refusal(key: &[u8], job: &StoredJob) -> Option<&'static str> {
    if !valid_key(key) {
        return Some("memcached cannot take this function and unique as a key (over 250 bytes, spaces or control characters)");
    }
    // The value and flags are gearmand's (payload, priority): no room for a
    // time to run at. Refused as gearmand refuses it, rather than run early.
    (job.when != 0).then_some("the memcached queue does not keep scheduled (epoch) jobs")
}

/// Decodes `%XX` escapes (how `metadump` prints keys).
fn url_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (s[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn no_setup(_: &mut Conn) -> Result<(), StoreError> {
    Ok(())
}

impl MemcachedStore {
    /// Connects to every server; fails if one is unreachable now.
    pub(crate) fn open(servers: &str, prefix: &str) -> Result<MemcachedStore, ServerError> {
        let mut links: Vec<Link> = parse_servers(servers)
            .map_err(ServerError::Config)?
            .iter()
            .map(|(h, p)| Link::new("memcached", h, *p))
            .collect();
        for l in &mut links {
            l.conn(no_setup)
                .map_err(|e| ServerError::Queue(e.to_string()))?;
        }
        Ok(MemcachedStore {
            links,
            prefix: prefix.as_bytes().to_vec(),
        })
    }

    fn key(&self, function: &[u8], unique: &[u8]) -> Vec<u8> {
        [&self.prefix[..], function, b"-", unique].concat()
    }

    /// Which server holds `key`.
    fn server_of(&self, key: &[u8]) -> usize {
        one_at_a_time(key) as usize % self.links.len()
    }

    /// Runs `cmds` on server `s` in round trips of [`CHUNK`]; returns the
    /// refused sets (index, reason).
    fn run(
        &mut self,
        s: usize,
        cmds: &[Cmd],
        inserts: &[&StoredJob],
    ) -> Result<Vec<(usize, String)>, StoreError> {
        let mut refused = Vec::new();
        for chunk in cmds.chunks(CHUNK) {
            let replies = self.links[s].exchange(
                no_setup,
                |out| write_cmds(out, chunk, inserts),
                |c| {
                    chunk
                        .iter()
                        .map(|_| c.line(MAX_LINE))
                        .collect::<io::Result<Vec<_>>>()
                },
            )?;
            for (cmd, r) in chunk.iter().zip(replies) {
                let ok = match cmd {
                    Cmd::Delete(_) => r == b"DELETED" || r == b"NOT_FOUND",
                    Cmd::Set(..) => r == b"STORED",
                };
                let reason = String::from_utf8_lossy(&r).into_owned();
                match cmd {
                    _ if ok => {}
                    Cmd::Set(_, i) if r.starts_with(b"SERVER_ERROR") => refused.push((*i, reason)),
                    _ => {
                        // ERROR or CLIENT_ERROR: the stream may be out of step.
                        self.links[s].drop_conn();
                        let what = &self.links[s].what;
                        return Err(StoreError::Failed(format!("{what}: {reason}")));
                    }
                }
            }
        }
        Ok(refused)
    }

    /// Every key on server `s` (`lru_crawler metadump all`).
    fn dump_keys(&mut self, s: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        for _ in 0..200 {
            let lines = self.links[s].exchange(
                no_setup,
                |out| out.extend_from_slice(b"lru_crawler metadump all\r\n"),
                |c| {
                    let mut lines = Vec::new();
                    loop {
                        let l = c.any_line(MAX_LINE)?;
                        let last = l == b"END"
                            || l.starts_with(b"BUSY")
                            || l.starts_with(b"ERROR")
                            || l.starts_with(b"CLIENT_ERROR")
                            || l.starts_with(b"SERVER_ERROR");
                        lines.push(l);
                        if last {
                            return Ok(lines);
                        }
                    }
                },
            )?;
            let last = lines.last().cloned().unwrap_or_default();
            if last.starts_with(b"BUSY") {
                // Another crawl is running: wait for it.
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
            if last != b"END" {
                let what = &self.links[s].what;
                let msg = String::from_utf8_lossy(&last);
                return Err(StoreError::Failed(format!(
                    "{what}: lru_crawler metadump: {msg}"
                )));
            }
            return Ok(lines[..lines.len() - 1]
                .iter()
                .filter_map(|l| {
                    let k = l.split(|&b| b == b' ').next()?.strip_prefix(b"key=")?;
                    Some(url_decode(k))
                })
                .collect());
        }
        Err(StoreError::Failed(format!(
            "{}: the LRU crawler stayed busy",
            self.links[s].what
        )))
    }

    /// Reads `keys` from server `s` with multi-key `get`s.
    fn get_jobs(&mut self, s: usize, keys: &[Vec<u8>]) -> Result<Vec<StoredJob>, StoreError> {
        let mut jobs = Vec::new();
        for chunk in keys.chunks(GET_KEYS * 10) {
            let gets: Vec<&[Vec<u8>]> = chunk.chunks(GET_KEYS).collect();
            let items = self.links[s].exchange(
                no_setup,
                |out| {
                    for g in &gets {
                        out.extend_from_slice(b"get");
                        for k in *g {
                            out.push(b' ');
                            out.extend_from_slice(k);
                        }
                        out.extend_from_slice(b"\r\n");
                    }
                },
                |c| {
                    let mut items = Vec::new();
                    for _ in 0..gets.len() {
                        read_values(c, &mut items)?;
                    }
                    Ok(items)
                },
            )?;
            jobs.extend(
                items
                    .into_iter()
                    .filter_map(|(k, flags, v)| self.job(&k, flags, v)),
            );
        }
        Ok(jobs)
    }

    fn job(&self, key: &[u8], flags: u32, data: Vec<u8>) -> Option<StoredJob> {
        let (function, unique) = split_function_unique(key.strip_prefix(&self.prefix[..])?)?;
        (!function.is_empty()).then(|| StoredJob {
            id: 0,
            function: Bytes::copy_from_slice(function),
            unique: Bytes::copy_from_slice(unique),
            priority: flags.min(2) as u8,
            when: 0,
            reducer: Bytes::new(),
            data: Bytes::from(data),
            handle: 0,
            retain: 0,
        })
    }
}

/// Writes the commands of `chunk`: `delete KEY`, `set KEY PRIORITY 0 LEN`.
fn write_cmds(out: &mut Vec<u8>, chunk: &[Cmd], inserts: &[&StoredJob]) {
    for cmd in chunk {
        match cmd {
            Cmd::Delete(k) => {
                out.extend_from_slice(b"delete ");
                out.extend_from_slice(k);
                out.extend_from_slice(b"\r\n");
            }
            Cmd::Set(k, i) => {
                let job = inserts[*i];
                out.extend_from_slice(b"set ");
                out.extend_from_slice(k);
                out.extend_from_slice(
                    format!(" {} 0 {}\r\n", job.priority, job.data.len()).as_bytes(),
                );
                out.extend_from_slice(&job.data);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// Reads the `VALUE KEY FLAGS LEN` items of one `get` up to its `END`.
fn read_values(c: &mut Conn, items: &mut Vec<(Vec<u8>, u32, Vec<u8>)>) -> io::Result<()> {
    loop {
        let line = c.line(MAX_LINE)?;
        if line == b"END" {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let parts: Vec<&str> = text.split(' ').collect();
        let [_, key, flags, len] = parts[..] else {
            return Err(invalid(&format!("unexpected get reply {text:?}")));
        };
        let (Ok(flags), Ok(len)) = (flags.parse::<u32>(), len.parse::<usize>()) else {
            return Err(invalid(&format!("unexpected get reply {text:?}")));
        };
        if parts[0] != "VALUE" || len > MAX_VALUE {
            return Err(invalid(&format!("unexpected get reply {text:?}")));
        }
        items.push((key.as_bytes().to_vec(), flags, c.block(len)?));
    }
}

impl Store for MemcachedStore {
    fn load(&mut self) -> Result<Vec<StoredJob>, StoreError> {
        let mut jobs = Vec::new();
        for s in 0..self.links.len() {
            let keys: Vec<Vec<u8>> = self
                .dump_keys(s)?
                .into_iter()
                .filter(|k| k.starts_with(&self.prefix) && valid_key(k))
                .collect();
            jobs.extend(self.get_jobs(s, &keys)?);
        }
        Ok(jobs)
    }

    fn commit(
        &mut self,
        deletes: &[&StoredKey],
        inserts: &[&StoredJob],
    ) -> Result<Vec<Rejected>, StoreError> {
        let mut per_server: Vec<Vec<Cmd>> = (0..self.links.len()).map(|_| Vec::new()).collect();
        let mut rejected = Vec::new();
        for d in deletes {
            let k = self.key(&d.function, &d.unique);
            if valid_key(&k) {
                per_server[self.server_of(&k)].push(Cmd::Delete(k));
            }
        }
        for (i, job) in inserts.iter().enumerate() {
            let k = self.key(&job.function, &job.unique);
            match refusal(&k, job) {
                None => per_server[self.server_of(&k)].push(Cmd::Set(k, i)),
                Some(reason) => rejected.push(Rejected {
                    id: job.id,
                    reason: reason.into(),
                }),
            }
        }
        for (s, cmds) in per_server.iter().enumerate() {
            if cmds.is_empty() {
                continue;
            }
            for (i, reason) in self.run(s, cmds, inserts)? {
                rejected.push(Rejected {
                    id: inserts[i].id,
                    reason: format!("{}: {reason}", self.links[s].what),
                });
            }
        }
        Ok(rejected)
    }

    fn keyed(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_lists() {
        assert_eq!(
            parse_servers("a, b:1234,[::1]:99").unwrap(),
            [
                ("a".to_string(), 11211),
                ("b".to_string(), 1234),
                ("::1".to_string(), 99)
            ]
        );
        assert!(parse_servers(" , ").is_err());
        assert!(parse_servers("a:x").is_err());
    }

    #[test]
    fn hashes_like_libhashkit_one_at_a_time() {
        // Values of libhashkit_one_at_a_time (Debian's libhashkit.so.2).
        assert_eq!(one_at_a_time(b""), 0);
        assert_eq!(one_at_a_time(b"a"), 0xca2e_9442);
        assert_eq!(
            one_at_a_time(b"The quick brown fox jumps over the lazy dog"),
            0x519e_91f5
        );
        // Bytes above 0x7f are sign-extended C chars.
        assert_eq!(one_at_a_time("é".as_bytes()), 0x0191_48ae);
    }

    #[test]
    fn checks_keys_and_decodes_dumped_ones() {
        assert!(valid_key(b"gear_f-u"));
        assert!(!valid_key(b"gear_f-a b"));
        assert!(!valid_key(b"gear_f-a\nb"));
        assert!(!valid_key(&[b'k'; 251]));
        assert_eq!(url_decode(b"gear_f-a%2Fb%zz%4"), b"gear_f-a/b%zz%4");
    }
}
