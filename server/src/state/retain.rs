//! Retained results and unique windows (polygear extensions, off by default).
//!
//! * Retention: when a background job that asked for it (`SUBMIT_RETAIN`
//!   before its SUBMIT_JOB_BG*, or its function's `retain` setting) ends, its
//!   end (complete with the result, failed, or exception with the message) is
//!   kept for the retention time; `GET_RESULT handle` answers `RESULT_RES`.
//! * Unique windows: when a job of a function with a window completes and
//!   has a non-empty unique key, that (function, key) stays reserved with the
//!   result for the window: a submission with the same key in the window gets
//!   the finished job's handle (and, in the foreground, its result at once)
//!   and nothing runs again. Only completed jobs hold a window.
//!
//! Both share one store of ended jobs, indexed by handle number, bounded by
//! `--retain-max-bytes` (the entries closest to expiry are dropped first and
//! counted). Expired entries are removed lazily: on every lookup, submission
//! and job end (no timer). With the SQLite queue each entry is also written
//! to the `polygear_results` table through the queue thread, in the same
//! transaction as the delete of the job's queue row.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use polygear::protocol::PacketType;

use super::{unix_now, ConnId, Job, State};
use crate::index::IntMap;
use crate::queue::{Op, StoredResult};
use crate::stats::Outcome;
use crate::wire::{parse_handle, put_pkt};

/// How a retained job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Complete,
    Failed,
    Exception,
}

impl Ended {
    /// The state's name in RESULT_RES.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Ended::Complete => "complete",
            Ended::Failed => "failed",
            Ended::Exception => "exception",
        }
    }

    /// The stored code (SQLite column `state`).
    pub(crate) fn code(self) -> u8 {
        match self {
            Ended::Complete => 0,
            Ended::Failed => 1,
            Ended::Exception => 2,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Ended> {
        match c {
            0 => Some(Ended::Complete),
            1 => Some(Ended::Failed),
            2 => Some(Ended::Exception),
            _ => None,
        }
    }
}

/// One ended job kept for its retention or unique window.
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    pub function: Bytes,
    /// The coalescing key (unique, or the data for unique `-`) if the job
    /// holds a unique window, else empty.
    pub key: Bytes,
    pub state: Ended,
    pub data: Bytes,
    /// Unix seconds after which the entry is gone.
    pub expires: i64,
    /// Unix seconds until which `key` is reserved (0: no window).
    pub window_until: i64,
}

impl Kept {
    fn bytes(&self) -> usize {
        self.function.len() + self.key.len() + self.data.len() + 64
    }
}

/// Retention and window settings and the ended jobs kept for them.
pub(crate) struct Results {
    kept: IntMap<u64, Kept>,
    /// (expires, handle), earliest first.
    expiry: BTreeSet<(i64, u64)>,
    /// (function, key) → handle of a completed job holding a window.
    windows: HashMap<(Bytes, Bytes), u64>,
    bytes: usize,
    /// Most bytes kept (`--retain-max-bytes`).
    pub max_bytes: usize,
    /// Entries dropped before their expiry to stay under `max_bytes`.
    pub dropped: u64,
    /// Per-function retention in seconds (admin `retain`, `--retain`).
    pub retain: HashMap<Bytes, u32>,
    /// Per-function unique window in seconds (admin `window`, `--unique-window`).
    pub window: HashMap<Bytes, u32>,
}

impl Results {
    pub(crate) fn new(
        max_bytes: usize,
        retain: &[(String, u32)],
        window: &[(String, u32)],
    ) -> Results {
        let map = |v: &[(String, u32)]| {
            v.iter()
                .filter(|(_, s)| *s > 0)
                .map(|(f, s)| (Bytes::copy_from_slice(f.as_bytes()), *s))
                .collect()
        };
        Results {
            kept: IntMap::default(),
            expiry: BTreeSet::new(),
            windows: HashMap::new(),
            bytes: 0,
            max_bytes,
            dropped: 0,
            retain: map(retain),
            window: map(window),
        }
    }

    /// Entries kept now.
    pub(crate) fn len(&self) -> usize {
        self.kept.len()
    }

    /// Bytes kept now (approximate).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn contains(&self, h: u64) -> bool {
        self.kept.contains_key(&h)
    }

    /// Sets (seconds > 0) or clears a per-function setting.
    pub(crate) fn set(map: &mut HashMap<Bytes, u32>, function: &[u8], seconds: u32) {
        if seconds == 0 {
            map.remove(function);
        } else {
            map.insert(Bytes::copy_from_slice(function), seconds);
        }
    }

    /// A per-function setting as sorted `(function, seconds)` rows.
    pub(crate) fn listing(map: &HashMap<Bytes, u32>) -> Vec<(Bytes, u32)> {
        let mut v: Vec<_> = map.iter().map(|(f, s)| (f.clone(), *s)).collect();
        v.sort();
        v
    }

    /// Removes expired entries; returns their handles (to delete the stored copies).
    fn expire(&mut self, now: i64) -> Vec<u64> {
        let mut gone = Vec::new();
        while let Some(&(at, h)) = self.expiry.first() {
            if at > now {
                break;
            }
            self.remove(h);
            gone.push(h);
        }
        gone
    }

    fn remove(&mut self, h: u64) -> Option<Kept> {
        let k = self.kept.remove(&h)?;
        self.expiry.remove(&(k.expires, h));
        self.bytes = self.bytes.saturating_sub(k.bytes());
        if k.window_until > 0 {
            let key = (k.function.clone(), k.key.clone());
            if self.windows.get(&key) == Some(&h) {
                self.windows.remove(&key);
            }
        }
        Some(k)
    }

    /// Keeps `k` under handle number `h`; returns the handles dropped to
    /// stay under the size limit (possibly `h` itself, if it alone is too big).
    pub(crate) fn insert(&mut self, h: u64, k: Kept) -> Vec<u64> {
        self.remove(h);
        self.bytes += k.bytes();
        self.expiry.insert((k.expires, h));
        if k.window_until > 0 {
            self.windows.insert((k.function.clone(), k.key.clone()), h);
        }
        self.kept.insert(h, k);
        let mut dropped = Vec::new();
        while self.bytes > self.max_bytes {
            let Some(&(_, old)) = self.expiry.first() else {
                break;
            };
            self.remove(old);
            self.dropped += 1;
            dropped.push(old);
        }
        dropped
    }

    /// The entry of handle number `h`, if not expired.
    pub(crate) fn get(&self, h: u64, now: i64) -> Option<&Kept> {
        self.kept.get(&h).filter(|k| k.expires > now)
    }

    /// The completed job holding the window of (function, key) now.
    pub(crate) fn window_hit(&self, function: &[u8], key: &[u8], now: i64) -> Option<u64> {
        let h = *self.windows.get(&(
            Bytes::copy_from_slice(function),
            Bytes::copy_from_slice(key),
        ))?;
        self.kept
            .get(&h)
            .filter(|k| k.window_until > now && k.expires > now)
            .map(|_| h)
    }

    /// Makes entry `h` last at least until `until`.
    fn extend(&mut self, h: u64, until: i64) -> Option<&Kept> {
        let k = self.kept.get_mut(&h)?;
        if k.expires < until {
            self.expiry.remove(&(k.expires, h));
            k.expires = until;
            self.expiry.insert((until, h));
        }
        Some(k)
    }
}

/// What GET_RESULT reports for a handle.
fn state_of(job: Option<&Job>) -> Option<&'static str> {
    job.map(|j| if j.running() { "running" } else { "queued" })
}

impl State {
    /// SUBMIT_RETAIN: the next background submission on `cid` keeps its
    /// result for `seconds` (0: the function's setting).
    pub(super) fn submit_retain(&mut self, cid: ConnId, seconds: u32) {
        if let Some(p) = self.peers.get_mut(&cid) {
            p.retain_next = Some(seconds);
        }
    }

    /// The retention a new submission on `cid` asked for (consumed).
    pub(super) fn take_retain(&mut self, cid: ConnId) -> u32 {
        self.peers
            .get_mut(&cid)
            .and_then(|p| p.retain_next.take())
            .unwrap_or(0)
    }

    /// GET_RESULT: answers RESULT_RES with the job's state and data.
    pub(super) fn get_result(&mut self, cid: ConnId, handle: &[u8]) {
        let now = unix_now();
        self.expire_results(now);
        let n = parse_handle(&self.prefix, handle);
        let live = state_of(n.and_then(|n| self.jobs.get(&n)).map(|b| &**b));
        let (state, data) = match (live, n.and_then(|n| self.results.get(n, now))) {
            (Some(s), _) => (s, Bytes::new()),
            (None, Some(k)) => (
                k.state.name(),
                if k.state == Ended::Failed {
                    Bytes::new()
                } else {
                    k.data.clone()
                },
            ),
            (None, None) => ("unknown", Bytes::new()),
        };
        self.reply(cid, |b| {
            put_pkt(b, PacketType::ResultRes, &[handle, state.as_bytes(), &data])
        });
    }

    /// A submission inside a unique window: answers it from the kept result
    /// (JOB_CREATED with the original handle; a foreground one also gets
    /// WORK_COMPLETE). Returns false if no window holds the key.
    pub(super) fn answer_from_window(
        &mut self,
        cid: ConnId,
        function: &[u8],
        key: &[u8],
        background: bool,
        retain: u32,
    ) -> bool {
        if self.results.window.is_empty() {
            return false;
        }
        let now = unix_now();
        self.expire_results(now);
        let Some(h) = self.results.window_hit(function, key, now) else {
            return false;
        };
        let until = now + i64::from(retain);
        let Some(k) = self.results.extend(h, until).cloned() else {
            return false;
        };
        if retain > 0 {
            self.store_result(h, &k);
        }
        let hb = self.handle(h);
        self.reply(cid, |b| {
            put_pkt(b, PacketType::JobCreated, &[&hb]);
            if !background {
                put_pkt(b, PacketType::WorkComplete, &[&hb, &k.data]);
            }
        });
        true
    }

    /// Job `h` ended with `outcome` (`data`: the result, or an exception's
    /// message): kept if it asked for retention or holds a unique window.
    pub(super) fn keep_result(&mut self, h: u64, job: &Job, outcome: Outcome, data: &[u8]) {
        if self.results.retain.is_empty() && self.results.window.is_empty() && job.retain == 0 {
            return;
        }
        let state = match outcome {
            Outcome::Complete => Ended::Complete,
            Outcome::Exception => Ended::Exception,
            Outcome::Fail | Outcome::Timeout | Outcome::RetriesExhausted | Outcome::Cancelled => {
                Ended::Failed
            }
            Outcome::Abandoned | Outcome::LeaseLost => return,
        };
        let function = self.funcs[job.func].name.clone();
        let retain = if job.retain > 0 {
            job.retain
        } else if job.background {
            self.results.retain.get(&function).copied().unwrap_or(0)
        } else {
            0
        };
        let window = match (state, job.key()) {
            (Ended::Complete, Some(_)) => self.results.window.get(&function).copied().unwrap_or(0),
            _ => 0,
        };
        if retain == 0 && window == 0 {
            return;
        }
        let now = unix_now();
        self.expire_results(now);
        let window_until = if window > 0 {
            now + i64::from(window)
        } else {
            0
        };
        let kept = Kept {
            key: if window > 0 {
                Bytes::copy_from_slice(job.key().unwrap_or_default())
            } else {
                Bytes::new()
            },
            function,
            state,
            data: Bytes::copy_from_slice(data),
            expires: (now + i64::from(retain)).max(window_until),
            window_until,
        };
        self.store_result(h, &kept);
        let dropped = self.results.insert(h, kept);
        self.delete_results(&dropped);
    }

    /// Admin `retain` / `window` (`windows`): sets a function's seconds
    /// (`OK`) or lists the settings (`FUNCTION\tSECONDS` lines, then `.`).
    pub(crate) fn admin_retain(
        &mut self,
        windows: bool,
        set: Option<(String, u32)>,
        b: &mut bytes::BytesMut,
    ) {
        use bytes::BufMut;
        let map = if windows {
            &mut self.results.window
        } else {
            &mut self.results.retain
        };
        match set {
            Some((function, seconds)) => {
                Results::set(map, function.as_bytes(), seconds);
                b.put_slice(b"OK\r\n");
            }
            None => {
                for (f, s) in Results::listing(map) {
                    b.put_slice(&f);
                    b.put_u8(b'\t');
                    b.put_slice(polygear::protocol::Decimal::from(s).as_bytes());
                    b.put_u8(b'\n');
                }
                b.put_slice(b".\n");
            }
        }
    }

    /// Drops expired entries (and their stored copies).
    pub(crate) fn expire_results(&mut self, now: i64) {
        if self.results.len() == 0 {
            return;
        }
        let gone = self.results.expire(now);
        self.delete_results(&gone);
    }

    fn store_result(&self, h: u64, k: &Kept) {
        if let Some(p) = self.persist.as_ref() {
            let _ = p.tx.send(Op::PutResult(StoredResult {
                handle: h,
                function: k.function.clone(),
                key: k.key.clone(),
                state: k.state.code(),
                data: k.data.clone(),
                expires: k.expires,
                window_until: k.window_until,
            }));
        }
    }

    fn delete_results(&self, handles: &[u64]) {
        if let Some(p) = self.persist.as_ref() {
            for &h in handles {
                let _ = p.tx.send(Op::DeleteResult(h));
            }
        }
    }

    /// Re-creates the kept results read from the store at start (expired
    /// ones are skipped and deleted); later handles are numbered after them.
    pub(crate) fn restore_results(&mut self, rows: Vec<StoredResult>) -> usize {
        let now = unix_now();
        let mut n = 0;
        let mut gone = Vec::new();
        for r in rows {
            self.next_handle = self.next_handle.max(r.handle + 1);
            let Some(state) = Ended::from_code(r.state).filter(|_| r.expires > now) else {
                gone.push(r.handle);
                continue;
            };
            let kept = Kept {
                function: r.function,
                key: r.key,
                state,
                data: r.data,
                expires: r.expires,
                window_until: r.window_until,
            };
            gone.extend(self.results.insert(r.handle, kept));
            n += 1;
        }
        self.delete_results(&gone);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(data: &str, expires: i64, window_until: i64) -> Kept {
        Kept {
            function: Bytes::from_static(b"f"),
            key: Bytes::from_static(b"k"),
            state: Ended::Complete,
            data: Bytes::copy_from_slice(data.as_bytes()),
            expires,
            window_until,
        }
    }

    #[test]
    fn expiry_and_windows() {
        let mut r = Results::new(1 << 20, &[], &[]);
        assert!(r.insert(1, kept("a", 100, 50)).is_empty());
        assert!(r.insert(2, kept("b", 200, 0)).is_empty());
        assert_eq!(r.window_hit(b"f", b"k", 10), Some(1));
        assert_eq!(r.window_hit(b"f", b"k", 50), None, "window over");
        assert_eq!(r.get(1, 60).map(|k| &k.data[..]), Some(&b"a"[..]));
        assert_eq!(r.expire(100), vec![1]);
        assert!(r.get(1, 60).is_none());
        assert!(r.window_hit(b"f", b"k", 10).is_none());
        assert_eq!(r.len(), 1);
        assert_eq!(r.expire(300), vec![2]);
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn size_limit_drops_the_soonest_to_expire() {
        let mut r = Results::new(300, &[], &[]);
        r.insert(1, kept(&"x".repeat(60), 300, 0));
        r.insert(2, kept(&"y".repeat(60), 100, 0));
        assert_eq!(r.insert(3, kept(&"z".repeat(60), 200, 0)), vec![2]);
        assert_eq!(r.dropped, 1);
        assert!(r.contains(1) && r.contains(3) && !r.contains(2));
    }

    #[test]
    fn settings() {
        let mut r = Results::new(1, &[("a".into(), 5), ("b".into(), 0)], &[]);
        assert_eq!(Results::listing(&r.retain), vec![(Bytes::from("a"), 5)]);
        Results::set(&mut r.retain, b"c", 7);
        Results::set(&mut r.retain, b"a", 0);
        assert_eq!(Results::listing(&r.retain), vec![(Bytes::from("c"), 7)]);
    }
}
