//! One type per listing row (`status`, `priority status`, `workers`, `show
//! jobs`, `show unique jobs`): the struct, the exact line gearmand writes for
//! it (what a server sends) and the parser for that line (what a client
//! reads). Both directions of a row's format live together so they cannot
//! drift apart.

use bytes::BufMut;

use crate::protocol::number::Decimal;
use crate::protocol::ProtocolError;

use super::{bad, c_str};

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
