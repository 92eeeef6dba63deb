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
//!
//! Files: `rows` (each listing row: its type, gearmand's line for it, the
//! parser), `reply` (reading a whole reply, client side), `command`
//! (commands and ERR replies, server side).

use crate::protocol::ProtocolError;

mod command;
mod reply;
mod retry;
mod rows;

pub use command::{tokenize, AdminCommand, AdminError, DeadTarget};
pub use reply::*;
pub use retry::*;
pub use rows::*;

/// Reply of action commands (`cancel job`, `maxqueue`, `create function`, …): `OK\r\n`.
pub const OK_LINE: &str = "OK\r\n";
/// Terminator of listing replies: a line holding only a dot.
pub const LIST_END: &str = ".\n";

/// Reply of single-value commands (`version`, `verbose`, `getpid`): `OK <value>\n`.
pub fn ok_value_line(value: &str) -> String {
    format!("OK {value}\n")
}

// Helpers the three parts share.

/// The part of `b` before its first NUL (how C's `%.*s` prints it).
fn c_str(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(p) => &b[..p],
        None => b,
    }
}

fn bad(what: &str, line: &str) -> ProtocolError {
    ProtocolError::BadAdminReply(format!("{what}: {line:?}"))
}

fn trim_eol(line: &str) -> &str {
    let l = line.strip_suffix('\n').unwrap_or(line);
    l.strip_suffix('\r').unwrap_or(l)
}
