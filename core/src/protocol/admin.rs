//! The admin text protocol (protocol.md §4): typed replies, their exact
//! gearmand line formats, and the parser for commands as a server receives
//! them.
//!
//! * Client side: [`parse_reply`] for single-line replies (`OK`, `OK x`,
//!   `ERR …`), [`parse_status`], [`parse_priority_status`], [`parse_workers`],
//!   [`parse_jobs`] and [`parse_unique_jobs`] for listings, and
//!   `parse_line` on each row type.
//! * Server side: [`AdminCommand::parse`] tokenizes a line exactly like
//!   gearmand 1.1.x and returns either a command or the [`AdminError`] whose
//!   [`AdminError::to_line`] is gearmand's reply; the `to_line` / `write_*`
//!   formatters and [`OK_LINE`], [`LIST_END`], [`ok_value_line`] produce
//!   byte-identical replies.
//!
//! Names are printed the way gearmand's `%.*s` prints them: a name that
//! contains a NUL byte is cut at the NUL.

use std::fmt;

use bytes::BufMut;

use super::packet::{atoi, Decimal};
use super::ProtocolError;
use crate::error::{Error, Result};

/// Reply of action commands (`cancel job`, `maxqueue`, `create function`, …): `OK\r\n`.
pub const OK_LINE: &str = "OK\r\n";
/// Terminator of listing replies: a line holding only a dot.
pub const LIST_END: &str = ".\n";

/// Reply of single-value commands (`version`, `verbose`, `getpid`): `OK <value>\n`.
pub fn ok_value_line(value: &str) -> String {
    format!("OK {value}\n")
}

/// A `status` line: `FUNC\tTOTAL\tRUNNING\tWORKERS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionStatus {
    /// Function name.
    pub function: String,
    /// Waiting + running jobs.
    pub total: u64,
    /// Running jobs.
    pub running: u64,
    /// Registered workers (CAN_DO registrations).
    pub workers: u64,
}

/// A `prioritystatus` line: `FUNC\tHIGH\tNORMAL\tLOW\tWORKERS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorityStatus {
    /// Function name.
    pub function: String,
    /// Waiting high-priority jobs.
    pub high: u64,
    /// Waiting normal-priority jobs.
    pub normal: u64,
    /// Waiting low-priority jobs.
    pub low: u64,
    /// Registered workers.
    pub workers: u64,
}

/// A `workers` line: `FD IP CLIENT-ID : FUNC…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Server-side connection number.
    pub fd: i64,
    /// Peer address.
    pub ip: String,
    /// SET_CLIENT_ID value or `-`.
    pub client_id: String,
    /// Registered functions, as listed.
    pub functions: Vec<String>,
}

/// A `show jobs` line: `HANDLE\tRETRIES\tIGNORE\tQUEUED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// Job handle.
    pub handle: String,
    /// Lost-assignment counter.
    pub retries: u32,
    /// Abandoned or cancelled.
    pub ignore: bool,
    /// Background job (persistable).
    pub queued: bool,
}

// ---------------------------------------------------------------------------
// Byte-level formatters (what a server writes)
// ---------------------------------------------------------------------------

/// The part of `b` before its first NUL (how C's `%.*s` prints it).
fn c_str(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(p) => &b[..p],
        None => b,
    }
}

fn put_num(out: &mut impl BufMut, n: impl Into<Decimal>) {
    out.put_slice(n.into().as_bytes());
}

/// Appends a `status` line `FUNC\tTOTAL\tRUNNING\tWORKERS\n`.
pub fn write_status_line(
    out: &mut impl BufMut,
    function: &[u8],
    total: u64,
    running: u64,
    workers: u64,
) {
    out.put_slice(c_str(function));
    for n in [total, running, workers] {
        out.put_u8(b'\t');
        put_num(out, n);
    }
    out.put_u8(b'\n');
}

/// Appends a `prioritystatus` line `FUNC\tHIGH\tNORMAL\tLOW\tWORKERS\n`.
pub fn write_priority_status_line(
    out: &mut impl BufMut,
    function: &[u8],
    high: u64,
    normal: u64,
    low: u64,
    workers: u64,
) {
    out.put_slice(c_str(function));
    for n in [high, normal, low, workers] {
        out.put_u8(b'\t');
        put_num(out, n);
    }
    out.put_u8(b'\n');
}

/// Appends a `workers` line `FD IP CLIENT-ID :[ FUNC]…\n`, e.g.
/// `39 127.0.0.1 - :\n` or `38 127.0.0.1 worker-A : revt rev rev\n`.
/// `functions` in the order to print (gearmand: newest registration first).
pub fn write_worker_line<'a>(
    out: &mut impl BufMut,
    fd: i64,
    ip: &[u8],
    client_id: &[u8],
    functions: impl IntoIterator<Item = &'a [u8]>,
) {
    put_num(out, fd);
    out.put_u8(b' ');
    out.put_slice(c_str(ip));
    out.put_u8(b' ');
    out.put_slice(c_str(client_id));
    out.put_slice(b" :");
    for f in functions {
        out.put_u8(b' ');
        out.put_slice(c_str(f));
    }
    out.put_u8(b'\n');
}

/// Appends a `show jobs` line `HANDLE\tRETRIES\tIGNORE\tQUEUED\n`.
pub fn write_job_line(
    out: &mut impl BufMut,
    handle: &[u8],
    retries: u32,
    ignore: bool,
    queued: bool,
) {
    out.put_slice(c_str(handle));
    out.put_u8(b'\t');
    put_num(out, retries);
    out.put_slice(if ignore { b"\t1" } else { b"\t0" });
    out.put_slice(if queued { b"\t1\n" } else { b"\t0\n" });
}

/// Appends a `show unique jobs` line `UNIQUE\n` (an empty unique gives an empty line).
pub fn write_unique_line(out: &mut impl BufMut, unique: &[u8]) {
    out.put_slice(c_str(unique));
    out.put_u8(b'\n');
}

fn to_string_with(f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut v = Vec::new();
    f(&mut v);
    // Inputs are `&str`, cut at a NUL on a char boundary: always valid UTF-8.
    String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

// ---------------------------------------------------------------------------
// Row types: format and parse
// ---------------------------------------------------------------------------

fn bad(what: &str, line: &str) -> ProtocolError {
    ProtocolError::BadAdminReply(format!("{what}: {line:?}"))
}

fn num<T: std::str::FromStr>(field: &str, what: &str, line: &str) -> Result<T, ProtocolError> {
    field
        .trim_end_matches('\r')
        .parse()
        .map_err(|_| bad(what, line))
}

fn flag01(field: &str, what: &str, line: &str) -> Result<bool, ProtocolError> {
    Ok(num::<u64>(field, what, line)? != 0)
}

/// Splits `line` into a leading name (which may itself contain tabs) and
/// exactly `N` tab-separated fields at its end.
fn split_tail<'a, const N: usize>(
    line: &'a str,
    what: &str,
) -> Result<(&'a str, [&'a str; N]), ProtocolError> {
    let mut fields = [""; N];
    let mut rest = line;
    for i in (0..N).rev() {
        let (head, tail) = rest.rsplit_once('\t').ok_or_else(|| bad(what, line))?;
        fields[i] = tail;
        rest = head;
    }
    Ok((rest, fields))
}

impl FunctionStatus {
    /// gearmand's line, `FUNC\tTOTAL\tRUNNING\tWORKERS\n`.
    pub fn to_line(&self) -> String {
        to_string_with(|v| {
            write_status_line(
                v,
                self.function.as_bytes(),
                self.total,
                self.running,
                self.workers,
            )
        })
    }

    /// Parses one `status` line (with or without its `\n`).
    pub fn parse_line(line: &str) -> Result<FunctionStatus, ProtocolError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        const W: &str = "bad status line";
        let (function, [t, r, w]) = split_tail::<3>(line, W)?;
        Ok(FunctionStatus {
            function: function.to_string(),
            total: num(t, W, line)?,
            running: num(r, W, line)?,
            workers: num(w, W, line)?,
        })
    }
}

impl PriorityStatus {
    /// gearmand's line, `FUNC\tHIGH\tNORMAL\tLOW\tWORKERS\n`.
    pub fn to_line(&self) -> String {
        to_string_with(|v| {
            write_priority_status_line(
                v,
                self.function.as_bytes(),
                self.high,
                self.normal,
                self.low,
                self.workers,
            )
        })
    }

    /// Parses one `prioritystatus` line (with or without its `\n`).
    pub fn parse_line(line: &str) -> Result<PriorityStatus, ProtocolError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        const W: &str = "bad prioritystatus line";
        let (function, [h, n, l, w]) = split_tail::<4>(line, W)?;
        Ok(PriorityStatus {
            function: function.to_string(),
            high: num(h, W, line)?,
            normal: num(n, W, line)?,
            low: num(l, W, line)?,
            workers: num(w, W, line)?,
        })
    }
}

impl WorkerInfo {
    /// gearmand's line, `FD IP CLIENT-ID :[ FUNC]…\n` (e.g. `39 127.0.0.1 - :\n`).
    pub fn to_line(&self) -> String {
        to_string_with(|v| {
            write_worker_line(
                v,
                self.fd,
                self.ip.as_bytes(),
                self.client_id.as_bytes(),
                self.functions.iter().map(|f| f.as_bytes()),
            )
        })
    }

    /// Parses one `workers` line (with or without its `\n`). The client id
    /// ends at the first ` :` that is followed by a space or the end of line.
    pub fn parse_line(line: &str) -> Result<WorkerInfo, ProtocolError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        const W: &str = "bad workers line";
        let (fd, rest) = line.split_once(' ').ok_or_else(|| bad(W, line))?;
        let fd: i64 = num(fd, W, line)?;
        let (ip, rest) = rest.split_once(' ').ok_or_else(|| bad(W, line))?;
        // rest = "CLIENT-ID :" + (" FUNC")*
        let mut sep = None;
        let mut from = 0;
        while let Some(p) = rest[from..].find(" :") {
            let at = from + p;
            let after = &rest[at + 2..];
            if after.is_empty() || after.starts_with(' ') {
                sep = Some(at);
                break;
            }
            from = at + 1;
        }
        let at = sep.ok_or_else(|| bad(W, line))?;
        let client_id = &rest[..at];
        let tail = &rest[at + 2..];
        let functions = if tail.is_empty() {
            Vec::new()
        } else {
            tail[1..].split(' ').map(str::to_string).collect()
        };
        Ok(WorkerInfo {
            fd,
            ip: ip.to_string(),
            client_id: client_id.to_string(),
            functions,
        })
    }
}

impl JobInfo {
    /// gearmand's line, `HANDLE\tRETRIES\tIGNORE\tQUEUED\n`.
    pub fn to_line(&self) -> String {
        to_string_with(|v| {
            write_job_line(
                v,
                self.handle.as_bytes(),
                self.retries,
                self.ignore,
                self.queued,
            )
        })
    }

    /// Parses one `show jobs` line (with or without its `\n`).
    pub fn parse_line(line: &str) -> Result<JobInfo, ProtocolError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        const W: &str = "bad show jobs line";
        let (handle, [r, i, q]) = split_tail::<3>(line, W)?;
        Ok(JobInfo {
            handle: handle.to_string(),
            retries: num(r, W, line)?,
            ignore: flag01(i, W, line)?,
            queued: flag01(q, W, line)?,
        })
    }
}

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

impl From<AdminError> for Error {
    fn from(e: AdminError) -> Error {
        Error::Server {
            code: e.code,
            text: e.text,
        }
    }
}

// ---------------------------------------------------------------------------
// Reply parsing (client side)
// ---------------------------------------------------------------------------

fn trim_eol(line: &str) -> &str {
    let l = line.strip_suffix('\n').unwrap_or(line);
    l.strip_suffix('\r').unwrap_or(l)
}

/// A single-line admin reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminReply {
    /// `OK\r\n` (action commands).
    Ok,
    /// `OK <value>\n` (`version`, `verbose`, `getpid`).
    Value(String),
    /// `ERR …`.
    Err(AdminError),
}

/// Parses a single-line reply: `OK`, `OK <value>` or `ERR …` (line ending optional).
pub fn parse_reply(line: &str) -> Result<AdminReply, ProtocolError> {
    let l = trim_eol(line);
    if l == "OK" {
        Ok(AdminReply::Ok)
    } else if let Some(v) = l.strip_prefix("OK ") {
        Ok(AdminReply::Value(v.to_string()))
    } else if l == "ERR" || l.starts_with("ERR ") {
        Ok(AdminReply::Err(AdminError::parse_line(l)?))
    } else {
        Err(bad("unexpected admin reply", line))
    }
}

/// Whether a reply line is an `ERR` line as gearmand writes them (`ERR …\r\n`).
/// Listing rows end in a bare `\n`, which tells them apart from errors.
pub fn is_error_line(line: &str) -> bool {
    line.ends_with("\r\n") && (line.starts_with("ERR ") || line == "ERR\r\n")
}

/// Splits a listing reply (rows, then the `.` line) into its rows. An `ERR`
/// reply in place of the listing becomes [`Error::Server`].
pub fn listing_rows(reply: &str) -> Result<Vec<&str>> {
    if is_error_line(reply) || trim_eol(reply) == "ERR" {
        return Err(AdminError::parse_line(reply)?.into());
    }
    let mut rows = Vec::new();
    let mut rest = reply;
    while let Some(p) = rest.find('\n') {
        let row = &rest[..p];
        rest = &rest[p + 1..];
        if row == "." || row == ".\r" {
            return Ok(rows);
        }
        rows.push(row);
    }
    Err(
        ProtocolError::BadAdminReply(format!("listing without terminating '.' line: {reply:?}"))
            .into(),
    )
}

fn parse_rows<T>(reply: &str, f: impl Fn(&str) -> Result<T, ProtocolError>) -> Result<Vec<T>> {
    listing_rows(reply)?
        .into_iter()
        .map(|r| f(r).map_err(Into::into))
        .collect()
}

/// Parses a whole `status` reply (rows and the `.` line).
pub fn parse_status(reply: &str) -> Result<Vec<FunctionStatus>> {
    parse_rows(reply, FunctionStatus::parse_line)
}

/// Parses a whole `prioritystatus` reply.
pub fn parse_priority_status(reply: &str) -> Result<Vec<PriorityStatus>> {
    parse_rows(reply, PriorityStatus::parse_line)
}

/// Parses a whole `workers` reply.
pub fn parse_workers(reply: &str) -> Result<Vec<WorkerInfo>> {
    parse_rows(reply, WorkerInfo::parse_line)
}

/// Parses a whole `show jobs` reply.
pub fn parse_jobs(reply: &str) -> Result<Vec<JobInfo>> {
    parse_rows(reply, JobInfo::parse_line)
}

/// Parses a whole `show unique jobs` reply: one unique per row (empty rows
/// are jobs with an empty unique).
pub fn parse_unique_jobs(reply: &str) -> Result<Vec<String>> {
    parse_rows(reply, |r| Ok(r.to_string()))
}

// ---------------------------------------------------------------------------
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
    /// `shutdown` / `shutdown graceful`. gearmand ≥ 1.1.15 no longer accepts
    /// them; a server imitating it answers `AdminError::unknown_command("shutdown")`
    /// (the word as sent is in the line).
    Shutdown {
        /// `shutdown graceful`.
        graceful: bool,
    },
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
            AdminCommand::Shutdown { graceful: false } => f.write_str("shutdown"),
            AdminCommand::Shutdown { graceful: true } => f.write_str("shutdown graceful"),
        }
    }
}
