//! The server side of the admin protocol: commands as gearmand 1.1.x parses
//! them ([`AdminCommand::parse`], [`tokenize`]) and the `ERR` replies it sends
//! for a bad one ([`AdminError`]), byte for byte.

use std::fmt;

use crate::protocol::number::{atoi, Decimal};
use crate::protocol::ProtocolError;

use super::retry::RetryPolicy;
use super::{bad, c_str, trim_eol};

// ---------------------------------------------------------------------------
// ERR replies
// ---------------------------------------------------------------------------

/// An `ERR` reply of the admin protocol.
///
/// gearmand writes `ERR CODE text+with+plus\r\n` (`text` may be absent, as
/// in `ERR UNKNOWN_JOB\r\n`), except for `drop function`, which writes free
/// text (`ERR function not found\r\n`); such replies have an empty `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    /// The upper-case code, e.g. `UNKNOWN_COMMAND`; empty for free-text errors.
    pub code: String,
    /// The text with `+` turned back into spaces (free text kept verbatim).
    pub text: String,
}

fn is_code(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

impl AdminError {
    /// An error with a code and a (space-separated) text.
    pub fn new(code: impl Into<String>, text: impl Into<String>) -> AdminError {
        AdminError {
            code: code.into(),
            text: text.into(),
        }
    }

    /// `ERR UNKNOWN_COMMAND Unknown+server+command<word>` (no separator, as gearmand).
    pub fn unknown_command(word: &str) -> AdminError {
        AdminError::new("UNKNOWN_COMMAND", format!("Unknown server command{word}"))
    }

    /// `ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+<word>`.
    pub fn invalid_arguments(word: &str) -> AdminError {
        AdminError::new(
            "INVALID_ARGUMENTS",
            format!("An incomplete set of arguments was sent to this command {word}"),
        )
    }

    /// `ERR UNKNOWN_SHOW_ARGUMENTS`.
    pub fn unknown_show_arguments() -> AdminError {
        AdminError::new("UNKNOWN_SHOW_ARGUMENTS", "")
    }

    /// `ERR UNKNOWN_JOB` (cancel of a handle the server does not know).
    pub fn unknown_job() -> AdminError {
        AdminError::new("UNKNOWN_JOB", "")
    }

    /// `ERR UNKNOWN_WORKER No+worker+connection+matches+ID` (polygeard's
    /// `drain worker` of an id no connection has).
    pub fn unknown_worker(id: &str) -> AdminError {
        AdminError::new(
            "UNKNOWN_WORKER",
            format!("No worker connection matches {id}"),
        )
    }

    /// `ERR UNKNOWN_SCHEDULE` (polygeard's `schedule delete` of an unknown name).
    pub fn unknown_schedule() -> AdminError {
        AdminError::new("UNKNOWN_SCHEDULE", "")
    }

    /// `ERR INVALID_SCHEDULE <why>` (polygeard's `schedule add` refused).
    pub fn invalid_schedule(why: &str) -> AdminError {
        AdminError::new("INVALID_SCHEDULE", why)
    }

    /// `ERR UNKNOWN_ERROR` (e.g. `cancel foo bar`).
    pub fn unknown_error() -> AdminError {
        AdminError::new("UNKNOWN_ERROR", "")
    }

    /// `ERR function not found` (drop of an unknown function).
    pub fn function_not_found() -> AdminError {
        AdminError::new("", "function not found")
    }

    /// `ERR there are still connected workers or executing clients` (drop refused).
    pub fn function_in_use() -> AdminError {
        AdminError::new("", "there are still connected workers or executing clients")
    }

    /// What follows `ERR ` on the wire, e.g. `UNKNOWN_COMMAND Unknown+server+commandbogus`
    /// (gearadmin prints this after `Error: `).
    pub fn body(&self) -> String {
        match (self.code.is_empty(), self.text.is_empty()) {
            (true, _) => self.text.clone(),
            (false, true) => self.code.clone(),
            (false, false) => format!("{} {}", self.code, self.text.replace(' ', "+")),
        }
    }

    /// The full reply line as gearmand writes it, e.g. `ERR UNKNOWN_JOB\r\n`.
    pub fn to_line(&self) -> String {
        format!("ERR {}\r\n", self.body())
    }

    /// Parses an `ERR …` line (with or without `\r\n`).
    pub fn parse_line(line: &str) -> Result<AdminError, ProtocolError> {
        let l = trim_eol(line);
        let body = if l == "ERR" {
            ""
        } else {
            l.strip_prefix("ERR ")
                .ok_or_else(|| bad("not an ERR line", line))?
        };
        let (first, rest) = body.split_once(' ').unwrap_or((body, ""));
        if is_code(first) {
            Ok(AdminError::new(first, rest.replace('+', " ")))
        } else {
            Ok(AdminError::new("", body))
        }
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code.is_empty(), self.text.is_empty()) {
            (true, _) => f.write_str(&self.text),
            (false, true) => f.write_str(&self.code),
            (false, false) => write!(f, "{}: {}", self.code, self.text),
        }
    }
}

impl std::error::Error for AdminError {}

// Commands (server side)
// ---------------------------------------------------------------------------

/// An admin command as a server receives it (gearmand 1.1.x syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    /// `status`.
    Status,
    /// `prioritystatus`.
    PriorityStatus,
    /// `workers`.
    Workers,
    /// `version`.
    Version,
    /// `verbose`.
    Verbose,
    /// `getpid`.
    Getpid,
    /// `show jobs`.
    ShowJobs,
    /// `show unique jobs`.
    ShowUniqueJobs,
    /// `cancel job HANDLE`.
    CancelJob(String),
    /// `maxqueue FUNC [N | H N | H N L]`.
    MaxQueue {
        /// Function name (matched exactly).
        function: String,
        /// Limits for HIGH, NORMAL, LOW; 0 = unlimited.
        limits: [u32; 3],
    },
    /// `create function FUNC`.
    CreateFunction(String),
    /// `drop function FUNC` (gearmand matches the name case-insensitively).
    DropFunction(String),
    /// `metrics` (polygeard only; gearmand answers `ERR UNKNOWN_COMMAND`):
    /// `NAME VALUE` lines, then `.`.
    Metrics,
    /// `pause FUNC` (polygeard only): the function's jobs queue, none is
    /// handed out. Answered `OK`.
    Pause(String),
    /// `pause` alone (polygeard only): the paused functions, one name a
    /// line, then `.`.
    Paused,
    /// `resume FUNC` (polygeard only): undoes `pause`. Answered `OK`.
    Resume(String),
    /// `drain worker ID` (polygeard only): the connections whose `workers`
    /// fd column or client id is `ID` get no new jobs. Answered `OK N` (the
    /// number of connections), or `ERR UNKNOWN_WORKER …` if none matched.
    DrainWorker(String),
    /// `drain` alone (polygeard only): the draining connections, one
    /// `FD CLIENT_ID` line each, then `.`.
    Draining,
    /// `schedule add NAME FUNCTION CRON… [-- DATA…]` (polygeard only): a
    /// periodic job. The cron expression is the tokens up to `--` (or the
    /// end), joined by single spaces; the data the tokens after `--`.
    /// Answered `OK`, or `ERR INVALID_SCHEDULE …`.
    ScheduleAdd {
        /// Schedule name.
        name: String,
        /// Function of the jobs.
        function: String,
        /// Cron expression (5, 6 or 7 fields, or an alias like `@hourly`).
        cron: String,
        /// Payload of the jobs (may be empty).
        data: String,
    },
    /// `schedule list` (polygeard only): `NAME\tFUNCTION\tCRON\tLAST\tNEXT\tDATA`
    /// lines (unix times, 0 = none), then `.`.
    ScheduleList,
    /// `schedule delete NAME` (polygeard only): `OK`, or `ERR UNKNOWN_SCHEDULE`.
    ScheduleDelete(String),
    /// `shutdown` / `shutdown graceful`. gearmand ≥ 1.1.15 no longer accepts
    /// them; a server imitating it answers `AdminError::unknown_command("shutdown")`
    /// (the word as sent is in the line).
    Shutdown {
        /// `shutdown graceful`.
        graceful: bool,
    },
    /// `retain` (list: `FUNCTION\tSECONDS` lines, then `.`) or `retain
    /// FUNCTION SECONDS` (`OK`; 0 = off): how long the results of a
    /// function's background jobs are kept (polygeard only).
    Retain(Option<(String, u32)>),
    /// `window` (list, as `retain`) or `window FUNCTION SECONDS` (`OK`; 0 =
    /// off): a function's unique window (polygeard only).
    UniqueWindow(Option<(String, u32)>),
    /// `retry FUNC MAX_ATTEMPTS BACKOFF_MS [MAX_DELAY_MS]` (polygear):
    /// sets (`max_attempts` 0: removes) the function's retry policy; `OK`.
    SetRetry {
        /// Function name.
        function: String,
        /// The policy (`max_delay` defaults to 1 hour).
        policy: RetryPolicy,
    },
    /// `retry` / `retry show` (polygear): the policies, one
    /// `FUNC\tMAX_ATTEMPTS\tBACKOFF_MS\tMAX_DELAY_MS` row each, then `.`.
    ShowRetry,
    /// `dead list [FUNC]` (polygear): the dead set's records, then `.`.
    DeadList(Option<String>),
    /// `dead retry (function F | job H | all)` (polygear): `OK N`.
    DeadRetry(DeadTarget),
    /// `dead delete (function F | job H | all)` (polygear): `OK N`.
    DeadDelete(DeadTarget),
}

/// Which dead records a `dead retry` / `dead delete` applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadTarget {
    /// `function F`: every record of the function.
    Function(String),
    /// `job H`: the record(s) with this handle.
    Job(String),
    /// `all`: every record.
    All,
}

impl fmt::Display for DeadTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadTarget::Function(n) => write!(f, "function {n}"),
            DeadTarget::Job(h) => write!(f, "job {h}"),
            DeadTarget::All => f.write_str("all"),
        }
    }
}

/// A plain decimal number (no sign, no junk), `None` otherwise or if it
/// does not fit `T`.
fn decimal<T: std::str::FromStr>(token: &[u8]) -> Option<T> {
    std::str::from_utf8(token)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
}

/// A decimal number argument of a polygear command (no sign, no junk).
fn number<T: std::str::FromStr>(token: &[u8], word: &str) -> Result<T, AdminError> {
    decimal(token).ok_or_else(|| AdminError::invalid_arguments(word))
}

fn parse_retry(t: &[&[u8]]) -> Result<AdminCommand, AdminError> {
    let argc = t.len();
    if argc == 1 || (argc == 2 && word_is(t[1], "show")) {
        return Ok(AdminCommand::ShowRetry);
    }
    if !(4..=5).contains(&argc) || t[1].is_empty() {
        return Err(AdminError::invalid_arguments("retry"));
    }
    let max_delay = match t.get(4) {
        Some(m) => std::time::Duration::from_millis(number(m, "retry")?),
        None => super::retry::DEFAULT_MAX_DELAY,
    };
    Ok(AdminCommand::SetRetry {
        function: lossy(t[1]),
        policy: RetryPolicy {
            max_attempts: number(t[2], "retry")?,
            backoff: std::time::Duration::from_millis(number(t[3], "retry")?),
            max_delay,
        },
    })
}

fn parse_dead(t: &[&[u8]]) -> Result<AdminCommand, AdminError> {
    let invalid = || AdminError::invalid_arguments("dead");
    let sub = t.get(1).ok_or_else(invalid)?;
    if word_is(sub, "list") {
        return match t.len() {
            2 => Ok(AdminCommand::DeadList(None)),
            3 => Ok(AdminCommand::DeadList(
                Some(lossy(t[2])).filter(|f| !f.is_empty()),
            )),
            _ => Err(invalid()),
        };
    }
    let target = match &t[2..] {
        [all] if word_is(all, "all") => DeadTarget::All,
        [kind, name] if word_is(kind, "function") && !name.is_empty() => {
            DeadTarget::Function(lossy(name))
        }
        [kind, handle] if word_is(kind, "job") && !handle.is_empty() => {
            DeadTarget::Job(lossy(handle))
        }
        _ => return Err(invalid()),
    };
    if word_is(sub, "retry") {
        Ok(AdminCommand::DeadRetry(target))
    } else if word_is(sub, "delete") {
        Ok(AdminCommand::DeadDelete(target))
    } else {
        Err(invalid())
    }
}

/// `FUNCTION SECONDS` of `retain` / `window`: `None` for a bare command;
/// SECONDS must be a decimal number.
fn function_seconds(t: &[&[u8]], w: &[u8]) -> Result<Option<(String, u32)>, AdminError> {
    match t {
        [_] => Ok(None),
        [_, f, s] if !f.is_empty() => {
            let secs = decimal(c_str(s))
                .ok_or_else(|| AdminError::new("INVALID_ARGUMENTS", "SECONDS must be a number"))?;
            Ok(Some((lossy(f), secs)))
        }
        _ => Err(AdminError::invalid_arguments(&lossy(w))),
    }
}

/// Splits an admin line into tokens like gearmand: on single spaces, with
/// runs of spaces collapsed after a token; a leading space yields an empty
/// first token and a trailing space an empty last token. Always ≥ 1 token.
pub fn tokenize(line: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        match rest.iter().position(|&b| b == b' ') {
            Some(p) => {
                out.push(&rest[..p]);
                let mut q = p + 1;
                while rest.get(q) == Some(&b' ') {
                    q += 1;
                }
                rest = &rest[q..];
            }
            None => {
                out.push(rest);
                return out;
            }
        }
    }
}

fn word_is(token: &[u8], word: &str) -> bool {
    // strcasecmp compares C strings: stop at a NUL.
    c_str(token).eq_ignore_ascii_case(word.as_bytes())
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(c_str(b)).into_owned()
}

impl AdminCommand {
    /// Parses one admin line (without its `\n`; a trailing `\r\n` or `\n` is
    /// also accepted and removed). On failure the [`AdminError`] is exactly
    /// what gearmand 1.1.20 answers (`err.to_line()`).
    pub fn parse(line: &[u8]) -> Result<AdminCommand, AdminError> {
        let line = match line.strip_suffix(b"\n") {
            Some(l) => l.strip_suffix(b"\r").unwrap_or(l),
            None => line,
        };
        let t = tokenize(line);
        let w = t[0];
        let argc = t.len();
        let is = |word: &str| word_is(w, word);
        if is("workers") {
            Ok(AdminCommand::Workers)
        } else if is("status") {
            Ok(AdminCommand::Status)
        } else if is("prioritystatus") {
            Ok(AdminCommand::PriorityStatus)
        } else if argc >= 3 && is("cancel") {
            if argc == 3 && word_is(t[1], "job") {
                Ok(AdminCommand::CancelJob(lossy(t[2])))
            } else {
                Err(AdminError::unknown_error())
            }
        } else if argc >= 2 && is("show") {
            if argc == 3 && word_is(t[1], "unique") && word_is(t[2], "jobs") {
                Ok(AdminCommand::ShowUniqueJobs)
            } else if argc == 2 && word_is(t[1], "jobs") {
                Ok(AdminCommand::ShowJobs)
            } else {
                Err(AdminError::unknown_show_arguments())
            }
        } else if is("create") {
            if argc == 3 && word_is(t[1], "function") {
                Ok(AdminCommand::CreateFunction(lossy(t[2])))
            } else {
                Err(AdminError::invalid_arguments(&lossy(w)))
            }
        } else if is("drop") {
            if argc == 3 && word_is(t[1], "function") {
                Ok(AdminCommand::DropFunction(lossy(t[2])))
            } else {
                Err(AdminError::invalid_arguments(&lossy(w)))
            }
        } else if is("maxqueue") {
            if argc == 1 {
                return Err(AdminError::invalid_arguments(&lossy(w)));
            }
            let mut limits = [0u32; 3];
            for (p, limit) in limits.iter_mut().enumerate() {
                if let Some(arg) = t.get(p + 2) {
                    *limit = atoi(c_str(arg)).clamp(0, u32::MAX as i64) as u32;
                }
            }
            // gearmand: with at most one number it applies to every priority;
            // `maxqueue F A B` sets HIGH=A, NORMAL=B and leaves LOW unlimited.
            if argc <= 3 {
                limits = [limits[0]; 3];
            }
            Ok(AdminCommand::MaxQueue {
                function: lossy(t[1]),
                limits,
            })
        } else if is("getpid") {
            Ok(AdminCommand::Getpid)
        } else if is("shutdown") {
            if argc == 1 {
                Ok(AdminCommand::Shutdown { graceful: false })
            } else if argc == 2 && word_is(t[1], "graceful") {
                Ok(AdminCommand::Shutdown { graceful: true })
            } else {
                Err(AdminError::invalid_arguments(&lossy(w)))
            }
        } else if is("verbose") {
            Ok(AdminCommand::Verbose)
        } else if is("version") {
            Ok(AdminCommand::Version)
        } else if is("metrics") {
            Ok(AdminCommand::Metrics)
        } else if is("retain") {
            function_seconds(&t, w).map(AdminCommand::Retain)
        } else if is("window") {
            function_seconds(&t, w).map(AdminCommand::UniqueWindow)
        } else if is("retry") {
            parse_retry(&t)
        } else if is("dead") {
            parse_dead(&t)
        } else if is("pause") {
            match argc {
                1 => Ok(AdminCommand::Paused),
                2 if !c_str(t[1]).is_empty() => Ok(AdminCommand::Pause(lossy(t[1]))),
                _ => Err(AdminError::invalid_arguments(&lossy(w))),
            }
        } else if is("resume") {
            match argc {
                2 if !c_str(t[1]).is_empty() => Ok(AdminCommand::Resume(lossy(t[1]))),
                _ => Err(AdminError::invalid_arguments(&lossy(w))),
            }
        } else if is("schedule") {
            // Tokens as C strings (cut at a NUL), empty ones dropped.
            let words: Vec<&[u8]> = t[1..]
                .iter()
                .map(|w| c_str(w))
                .filter(|w| !w.is_empty())
                .collect();
            match words.as_slice() {
                [sub] if word_is(sub, "list") => Ok(AdminCommand::ScheduleList),
                [sub, name] if word_is(sub, "delete") => {
                    Ok(AdminCommand::ScheduleDelete(lossy(name)))
                }
                [sub, name, function, rest @ ..] if word_is(sub, "add") => {
                    let sep = rest.iter().position(|w| *w == b"--");
                    let (cron, data) = match sep {
                        Some(p) => (&rest[..p], &rest[p + 1..]),
                        None => (rest, &[][..]),
                    };
                    if cron.is_empty() {
                        return Err(AdminError::invalid_arguments(&lossy(w)));
                    }
                    let join =
                        |ws: &[&[u8]]| ws.iter().map(|w| lossy(w)).collect::<Vec<_>>().join(" ");
                    Ok(AdminCommand::ScheduleAdd {
                        name: lossy(name),
                        function: lossy(function),
                        cron: join(cron),
                        data: join(data),
                    })
                }
                _ => Err(AdminError::invalid_arguments(&lossy(w))),
            }
        } else if is("drain") {
            match argc {
                1 => Ok(AdminCommand::Draining),
                3 if word_is(t[1], "worker") && !c_str(t[2]).is_empty() => {
                    Ok(AdminCommand::DrainWorker(lossy(t[2])))
                }
                _ => Err(AdminError::invalid_arguments(&lossy(w))),
            }
        } else {
            Err(AdminError::unknown_command(&lossy(w)))
        }
    }

    /// Whether the reply is a listing ending in a `.` line.
    pub fn is_listing(&self) -> bool {
        matches!(
            self,
            AdminCommand::Status
                | AdminCommand::PriorityStatus
                | AdminCommand::Workers
                | AdminCommand::ShowJobs
                | AdminCommand::ShowUniqueJobs
                | AdminCommand::Metrics
                | AdminCommand::Retain(None)
                | AdminCommand::UniqueWindow(None)
                | AdminCommand::ShowRetry
                | AdminCommand::DeadList(_)
                | AdminCommand::Paused
                | AdminCommand::Draining
                | AdminCommand::ScheduleList
        )
    }
}

impl fmt::Display for AdminCommand {
    /// The canonical command text, without line ending (`show jobs`,
    /// `maxqueue F 1 2 3`, …).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminCommand::Status => f.write_str("status"),
            AdminCommand::PriorityStatus => f.write_str("prioritystatus"),
            AdminCommand::Workers => f.write_str("workers"),
            AdminCommand::Version => f.write_str("version"),
            AdminCommand::Verbose => f.write_str("verbose"),
            AdminCommand::Getpid => f.write_str("getpid"),
            AdminCommand::ShowJobs => f.write_str("show jobs"),
            AdminCommand::ShowUniqueJobs => f.write_str("show unique jobs"),
            AdminCommand::CancelJob(h) => write!(f, "cancel job {h}"),
            AdminCommand::MaxQueue { function, limits } => {
                let [h, n, l] = limits.map(Decimal::from);
                write!(f, "maxqueue {function} {h} {n} {l}")
            }
            AdminCommand::CreateFunction(n) => write!(f, "create function {n}"),
            AdminCommand::DropFunction(n) => write!(f, "drop function {n}"),
            AdminCommand::Metrics => f.write_str("metrics"),
            AdminCommand::Pause(n) => write!(f, "pause {n}"),
            AdminCommand::Paused => f.write_str("pause"),
            AdminCommand::Resume(n) => write!(f, "resume {n}"),
            AdminCommand::DrainWorker(id) => write!(f, "drain worker {id}"),
            AdminCommand::Draining => f.write_str("drain"),
            AdminCommand::ScheduleAdd {
                name,
                function,
                cron,
                data,
            } => {
                write!(f, "schedule add {name} {function} {cron}")?;
                if !data.is_empty() {
                    write!(f, " -- {data}")?;
                }
                Ok(())
            }
            AdminCommand::ScheduleList => f.write_str("schedule list"),
            AdminCommand::ScheduleDelete(n) => write!(f, "schedule delete {n}"),
            AdminCommand::Shutdown { graceful: false } => f.write_str("shutdown"),
            AdminCommand::Shutdown { graceful: true } => f.write_str("shutdown graceful"),
            AdminCommand::Retain(None) => f.write_str("retain"),
            AdminCommand::Retain(Some((func, s))) => write!(f, "retain {func} {s}"),
            AdminCommand::UniqueWindow(None) => f.write_str("window"),
            AdminCommand::UniqueWindow(Some((func, s))) => write!(f, "window {func} {s}"),
            AdminCommand::SetRetry { function, policy } => write!(
                f,
                "retry {function} {} {} {}",
                policy.max_attempts,
                policy.backoff.as_millis(),
                policy.max_delay.as_millis()
            ),
            AdminCommand::ShowRetry => f.write_str("retry show"),
            AdminCommand::DeadList(None) => f.write_str("dead list"),
            AdminCommand::DeadList(Some(func)) => write!(f, "dead list {func}"),
            AdminCommand::DeadRetry(t) => write!(f, "dead retry {t}"),
            AdminCommand::DeadDelete(t) => write!(f, "dead delete {t}"),
        }
    }
}
