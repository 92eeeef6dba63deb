//! Periodic jobs: named schedules (a cron expression, evaluated in UTC, for
//! a function and a payload) from the configuration (`--schedule`) or the
//! admin `schedule add`. Each firing submits an ordinary background job with
//! the unique `NAME@<occurrence unix time>`, so a duplicate firing of one
//! occurrence coalesces with the job if it is still queued.
//!
//! Once per period across restarts: the last occurrence fired is stored
//! (SQLite) before the job is, and on start the next occurrence after it
//! is due: periods missed while the server was down fire once, at start.
//! Without a store that keeps schedules, a restart forgets admin-added
//! schedules and the last firing (configured schedules then fire from their
//! next occurrence on).
//!
//! The firing task ([`run`]) sleeps until the earliest next occurrence or a
//! change of the schedules.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use croner::Cron;
use tokio::sync::Notify;

use super::submit::submission_key;
use super::{unix_now, State};
use crate::queue::{Op, ScheduleOp, StoredSchedule};
use crate::Shared;

/// Longest schedule name: `NAME@` and a 10-digit time fit a 63-byte unique.
pub const MAX_SCHEDULE_NAME: usize = 48;

/// A schedule as configured: `--schedule 'NAME=CRON=FUNCTION[=DATA]'` or
/// admin `schedule add NAME FUNCTION CRON… [-- DATA…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// Letters, digits and `._:-`, at most [`MAX_SCHEDULE_NAME`] bytes.
    pub name: String,
    /// A cron expression: 5 fields (minute granularity), 6 (seconds
    /// first) or 7 (and years), or an alias such as `@hourly`.
    pub cron: String,
    /// The function the jobs are submitted to.
    pub function: String,
    /// The jobs' payload.
    pub data: Bytes,
}

/// Why a schedule is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The name is empty, too long or has other characters.
    #[error("schedule name {0:?} must be 1 to 48 letters, digits or ._:-")]
    BadName(String),
    /// The function name is empty or too long, or has spaces or NUL.
    #[error("function name {0:?} must be 1 to 512 bytes without spaces or NUL")]
    BadFunction(String),
    /// The cron expression does not parse.
    #[error("cron expression {cron:?}: {reason}")]
    BadCron {
        /// The expression.
        cron: String,
        /// The parser's complaint.
        reason: String,
    },
    /// `--schedule` is not `NAME=CRON=FUNCTION[=DATA]`.
    #[error("--schedule {0:?} is not NAME=CRON=FUNCTION[=DATA]")]
    BadFlag(String),
}

impl ScheduleSpec {
    /// Parses `NAME=CRON=FUNCTION[=DATA]` (the data may contain `=`).
    pub fn parse_flag(flag: &str) -> Result<ScheduleSpec, ScheduleError> {
        let mut parts = flag.splitn(4, '=');
        let (Some(name), Some(cron), Some(function)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ScheduleError::BadFlag(flag.into()));
        };
        let spec = ScheduleSpec {
            name: name.into(),
            cron: cron.trim().into(),
            function: function.into(),
            data: Bytes::from(parts.next().unwrap_or("").to_owned()),
        };
        spec.check()?;
        Ok(spec)
    }

    /// Checks the name and function and parses the cron expression.
    pub fn check(&self) -> Result<(), ScheduleError> {
        self.parsed().map(|_| ())
    }

    fn parsed(&self) -> Result<Cron, ScheduleError> {
        let n = &self.name;
        if n.is_empty()
            || n.len() > MAX_SCHEDULE_NAME
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        {
            return Err(ScheduleError::BadName(n.clone()));
        }
        let f = &self.function;
        if f.is_empty()
            || f.len() > super::schedule::MAX_FUNCTION_NAME
            || f.contains([' ', '\0', '\t', '\r', '\n'])
        {
            return Err(ScheduleError::BadFunction(f.clone()));
        }
        Cron::from_str(&self.cron).map_err(|e| ScheduleError::BadCron {
            cron: self.cron.clone(),
            reason: e.to_string(),
        })
    }
}

/// One schedule in force.
struct Entry {
    spec: ScheduleSpec,
    cron: Cron,
    /// Unix time of the last occurrence fired; 0 = never.
    last: i64,
    /// Unix time of the next occurrence; `None`: never again.
    next: Option<i64>,
}

impl Entry {
    fn new(spec: ScheduleSpec, cron: Cron, last: i64, now: i64) -> Entry {
        // After a restart the occurrence following the last one fired is
        // due (at once, if periods were missed); a new schedule starts now.
        let from = if last > 0 { last } else { now };
        let next = next_after(&cron, from);
        Entry {
            spec,
            cron,
            last,
            next,
        }
    }

    fn stored(&self) -> StoredSchedule {
        StoredSchedule {
            name: self.spec.name.clone(),
            cron: self.spec.cron.clone(),
            function: Bytes::from(self.spec.function.clone()),
            data: self.spec.data.clone(),
            last_fired: self.last,
        }
    }
}

/// The first occurrence of `cron` strictly after unix time `t`.
fn next_after(cron: &Cron, t: i64) -> Option<i64> {
    let at: DateTime<Utc> = DateTime::from_timestamp(t, 0)?;
    cron.find_next_occurrence(&at, false)
        .ok()
        .map(|d| d.timestamp())
}

/// A schedule as listed by admin `schedule list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScheduleRow {
    pub spec: ScheduleSpec,
    pub last: i64,
    pub next: i64,
}

/// The schedules in force, by name.
#[derive(Default)]
pub(crate) struct Schedules {
    map: BTreeMap<String, Entry>,
    /// Wakes the firing task after a change.
    pub changed: Arc<Notify>,
}

impl State {
    /// At start: the stored schedules, then the configured ones (which
    /// replace stored ones of the same name, keeping their last firing).
    pub(crate) fn init_schedules(&mut self, stored: Vec<StoredSchedule>) {
        let now = unix_now();
        let mut last_of = BTreeMap::new();
        for s in stored {
            last_of.insert(s.name.clone(), s.last_fired);
            let spec = ScheduleSpec {
                name: s.name,
                cron: s.cron,
                function: String::from_utf8_lossy(&s.function).into_owned(),
                data: s.data,
            };
            match spec.parsed() {
                Ok(cron) => {
                    let e = Entry::new(spec, cron, s.last_fired, now);
                    self.schedules.map.insert(e.spec.name.clone(), e);
                }
                Err(e) => tracing::warn!("ignoring a stored schedule: {e}"),
            }
        }
        for spec in self.cfg.schedules.clone() {
            // Checked by `Server::bind`.
            let Ok(cron) = spec.parsed() else { continue };
            let last = last_of.get(&spec.name).copied().unwrap_or(0);
            let e = Entry::new(spec, cron, last, now);
            self.store_schedule(ScheduleOp::Put(e.stored()));
            self.schedules.map.insert(e.spec.name.clone(), e);
        }
        self.schedules.changed.notify_one();
    }

    /// Admin `schedule add`: adds or replaces schedule `spec.name` (a
    /// replaced one keeps its last firing).
    pub(crate) fn add_schedule(&mut self, spec: ScheduleSpec) -> Result<(), ScheduleError> {
        let cron = spec.parsed()?;
        let last = self.schedules.map.get(&spec.name).map_or(0, |e| e.last);
        let e = Entry::new(spec, cron, last, unix_now());
        self.store_schedule(ScheduleOp::Put(e.stored()));
        self.schedules.map.insert(e.spec.name.clone(), e);
        self.schedules.changed.notify_one();
        Ok(())
    }

    /// Admin `schedule delete`: false if there is no such schedule.
    pub(crate) fn delete_schedule(&mut self, name: &str) -> bool {
        if self.schedules.map.remove(name).is_none() {
            return false;
        }
        self.store_schedule(ScheduleOp::Delete(name.into()));
        true
    }

    /// The schedules, by name, with their last and next firing (0: none).
    pub(crate) fn schedule_rows(&self) -> Vec<ScheduleRow> {
        self.schedules
            .map
            .values()
            .map(|e| ScheduleRow {
                spec: e.spec.clone(),
                last: e.last,
                next: e.next.unwrap_or(0),
            })
            .collect()
    }

    /// Fires every schedule whose occurrence came (at most once each: missed
    /// earlier occurrences are not repeated) and returns the unix time of
    /// the earliest next occurrence.
    pub(crate) fn fire_due_schedules(&mut self) -> Option<i64> {
        let now = unix_now();
        let due: Vec<String> = self
            .schedules
            .map
            .values()
            .filter(|e| e.next.is_some_and(|t| t <= now))
            .map(|e| e.spec.name.clone())
            .collect();
        for name in due {
            let Some(e) = self.schedules.map.get_mut(&name) else {
                continue;
            };
            let Some(at) = e.next else { continue };
            e.last = at;
            e.next = next_after(&e.cron, now);
            let (function, data) = (e.spec.function.clone(), e.spec.data.clone());
            self.store_schedule(ScheduleOp::Fired {
                name: name.clone(),
                at,
            });
            let unique = format!("{name}@{at}");
            self.submit_periodic(function.as_bytes(), unique.as_bytes(), &data, (name, at));
        }
        self.schedules.map.values().filter_map(|e| e.next).min()
    }

    /// Submits one firing's background job, unless a job with its unique is
    /// still there (or the queue refuses it: full, lease lost).
    fn submit_periodic(
        &mut self,
        function: &[u8],
        unique: &[u8],
        data: &[u8],
        occurrence: (String, i64),
    ) {
        let fid = self.func_id(function);
        if let Some(key) = submission_key(unique, data) {
            if self.lookup_unique(fid, key).is_some() {
                return;
            }
        }
        let prio = 1; // NORMAL
        let limit = self.funcs[fid].maxqueue[prio];
        if limit > 0 && self.funcs[fid].total >= limit as u64 {
            tracing::warn!(
                "periodic job {} not submitted: the queue of its function is full",
                String::from_utf8_lossy(unique)
            );
            return;
        }
        if self.persist.is_some() && self.lease_until.is_some() && !self.holds_lease() {
            tracing::warn!(
                "periodic job {} not submitted: this server lost its queue lease",
                String::from_utf8_lossy(unique)
            );
            return;
        }
        // On a shared store another server may fire the same occurrence:
        // the job waits (delayed) until this server claimed the occurrence
        // in the store and stored the job (`release_held`).
        let shared = self.lease_until.is_some();
        let hold_until = if shared { unix_now() + 86_400 } else { 0 };
        let h = self.create_job(fid, prio as u8, unique, data, None, hold_until, true, None);
        let Some(row) = self.stored_row(h) else {
            return;
        };
        let op = if shared {
            Op::InsertHeld {
                row,
                claim: occurrence,
            }
        } else {
            Op::Insert { row, ack: None }
        };
        if let Some(p) = self.persist.as_ref() {
            let _ = p.tx.send(op);
        }
    }

    /// Held periodic jobs whose inserts committed: queued now.
    pub(crate) fn release_held(&mut self, handles: &[u64]) {
        for &h in handles {
            self.epoch_due(h);
        }
    }

    /// Sends a schedule change to the queue thread (if there is a store).
    fn store_schedule(&self, op: ScheduleOp) {
        if let Some(p) = self.persist.as_ref() {
            let _ = p.tx.send(Op::Schedule(op));
        }
    }
}

/// The firing task: fires the due schedules, then sleeps until the next
/// occurrence or a change; ends when the server stops. Nothing fires while
/// a graceful shutdown drains the server.
pub(crate) async fn run(shared: Arc<Shared>) {
    let changed = shared.with_state(|st| st.schedules.changed.clone());
    loop {
        let next = if shared.graceful.load(std::sync::atomic::Ordering::Acquire) {
            None
        } else {
            shared.with_state(|st| st.fire_due_schedules())
        };
        let wait = match next {
            Some(t) => until(t),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = changed.notified() => {}
            _ = shared.stop.cancelled() => return,
        }
    }
}

/// How long until unix time `t` (a few ms late rather than early).
fn until(t: i64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(t.max(0) as u64).saturating_sub(now) + Duration::from_millis(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_bad_schedules_are_refused() {
        let s = ScheduleSpec::parse_flag("nightly=0 3 * * *=report=a=b").unwrap();
        assert_eq!(s.name, "nightly");
        assert_eq!(s.cron, "0 3 * * *");
        assert_eq!(s.function, "report");
        assert_eq!(&s.data[..], b"a=b");
        let s = ScheduleSpec::parse_flag("tick=* * * * * *=beat").unwrap();
        assert!(s.data.is_empty());
        assert!(matches!(
            ScheduleSpec::parse_flag("x=* * * * *"),
            Err(ScheduleError::BadFlag(_))
        ));
        assert!(matches!(
            ScheduleSpec::parse_flag("a b=* * * * *=f"),
            Err(ScheduleError::BadName(_))
        ));
        assert!(matches!(
            ScheduleSpec::parse_flag("ok=* * * * *=f g"),
            Err(ScheduleError::BadFunction(_))
        ));
        assert!(matches!(
            ScheduleSpec::parse_flag("ok=61 * * * *=f"),
            Err(ScheduleError::BadCron { .. })
        ));
        let long = "n".repeat(MAX_SCHEDULE_NAME + 1);
        assert!(ScheduleSpec::parse_flag(&format!("{long}=* * * * *=f")).is_err());
    }

    #[test]
    fn next_occurrences_are_strictly_later() {
        let every_minute = Cron::from_str("* * * * *").unwrap();
        assert_eq!(next_after(&every_minute, 60), Some(120));
        assert_eq!(next_after(&every_minute, 61), Some(120));
        let every_second = Cron::from_str("* * * * * *").unwrap();
        assert_eq!(next_after(&every_second, 1000), Some(1001));
        // After a restart the occurrence after the last fired one is due.
        let spec = ScheduleSpec {
            name: "n".into(),
            cron: "* * * * *".into(),
            function: "f".into(),
            data: Bytes::new(),
        };
        let e = Entry::new(spec.clone(), every_minute.clone(), 600, 10_000);
        assert_eq!(e.next, Some(660));
        let fresh = Entry::new(spec, every_minute, 0, 10_000);
        assert_eq!(fresh.next, Some(10_020));
    }
}
