//! Reading admin replies (client side): single-line replies (`OK`, `OK x`,
//! `ERR code text`) and listings up to their terminating `.` line, parsed into
//! the row types of [`super::rows`].

use crate::protocol::ProtocolError;

use super::{bad, trim_eol};

use super::command::AdminError;
use super::rows::{FunctionStatus, JobInfo, PriorityStatus, WorkerInfo};

// ---------------------------------------------------------------------------
// Reply parsing (client side)
// ---------------------------------------------------------------------------

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
        // The whole line: `parse_line` removes the line ending itself (once).
        Ok(AdminReply::Err(AdminError::parse_line(line)?))
    } else {
        Err(bad("unexpected admin reply", line))
    }
}

/// Whether a reply line is an `ERR` line as gearmand writes them (`ERR …\r\n`).
/// Listing rows end in a bare `\n`, which tells them apart from errors.
pub fn is_error_line(line: &str) -> bool {
    line.ends_with("\r\n") && (line.starts_with("ERR ") || line == "ERR\r\n")
}

/// Why a listing reply has no rows to give: the server answered `ERR` instead
/// (e.g. an older server without `prioritystatus`), or the reply is malformed.
/// `polygear::Error` converts from it (`Server` and `Protocol`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    /// An `ERR` reply in place of the listing.
    #[error("server error {}: {}", .0.code, .0.text)]
    Server(#[from] AdminError),
    /// A malformed reply or row.
    #[error(transparent)]
    Malformed(#[from] ProtocolError),
}

/// What the listing parsers return.
pub type ListingResult<T> = Result<Vec<T>, ListingError>;

/// Splits a listing reply (rows, then the `.` line) into its rows. An `ERR`
/// reply in place of the listing is [`ListingError::Server`].
pub fn listing_rows(reply: &str) -> ListingResult<&str> {
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

fn parse_rows<T>(reply: &str, f: impl Fn(&str) -> Result<T, ProtocolError>) -> ListingResult<T> {
    listing_rows(reply)?
        .into_iter()
        .map(|r| f(r).map_err(Into::into))
        .collect()
}

/// Parses a whole `status` reply (rows and the `.` line).
pub fn parse_status(reply: &str) -> ListingResult<FunctionStatus> {
    parse_rows(reply, FunctionStatus::parse_line)
}

/// Parses a whole `prioritystatus` reply.
pub fn parse_priority_status(reply: &str) -> ListingResult<PriorityStatus> {
    parse_rows(reply, PriorityStatus::parse_line)
}

/// Parses a whole `workers` reply.
pub fn parse_workers(reply: &str) -> ListingResult<WorkerInfo> {
    parse_rows(reply, WorkerInfo::parse_line)
}

/// Parses a whole `show jobs` reply.
pub fn parse_jobs(reply: &str) -> ListingResult<JobInfo> {
    parse_rows(reply, JobInfo::parse_line)
}

/// Parses a whole `show unique jobs` reply: one unique per row (empty rows
/// are jobs with an empty unique).
pub fn parse_unique_jobs(reply: &str) -> ListingResult<String> {
    parse_rows(reply, |r| Ok(r.to_string()))
}

/// Parses a `retain` or `window` listing (polygeard): `FUNCTION\tSECONDS` rows.
pub fn parse_function_seconds(reply: &str) -> ListingResult<(String, std::time::Duration)> {
    parse_rows(reply, |r| {
        let r = trim_eol(r);
        let (f, s) = r.rsplit_once('\t').ok_or_else(|| {
            ProtocolError::BadAdminReply(format!("expected FUNCTION\\tSECONDS: {r:?}"))
        })?;
        let secs = s
            .parse::<u64>()
            .map_err(|_| ProtocolError::BadAdminReply(format!("bad seconds in {r:?}")))?;
        Ok((f.to_string(), std::time::Duration::from_secs(secs)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_err_reply_loses_only_its_line_ending() {
        // The error text of `foo\r` sent as a command (found by the
        // admin_command fuzz target): parse_reply used to strip a second `\r`.
        let line = "ERR UNKNOWN_COMMAND Unknown+server+commandfoo\r\r\n";
        let want = AdminError::new("UNKNOWN_COMMAND", "Unknown server commandfoo\r");
        assert_eq!(AdminError::parse_line(line), Ok(want.clone()));
        assert_eq!(parse_reply(line), Ok(AdminReply::Err(want)));
        assert_eq!(
            parse_reply("ERR\r\n"),
            Ok(AdminReply::Err(AdminError::new("", "")))
        );
    }
}
