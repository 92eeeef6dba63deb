//! `polygear admin …`: gearadmin's commands, printed like gearadmin does.

use std::time::Duration;

use polygear::protocol::admin::{escape_field, parse_dead_jobs};
use polygear::{Admin, DeadJob, Error, ServerAddr, TlsOptions};

use crate::fail::{describe, CliError};
use crate::out::{write, Stream};

/// One admin command, checked and ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCommand {
    /// The text line sent to the server (without line ending).
    pub line: String,
    /// Whether the reply is a listing ending with a `.` line.
    pub listing: bool,
    /// `dead list`: printed as a table with the escapes decoded.
    pub dead_table: bool,
}

/// The admin sub-commands, for `--help`.
pub const USAGE: &str = "\
Admin mode:   polygear admin [-h HOST] [-p PORT] [-t MS] [-S] COMMAND [ARGS]
  -h/-p as above but they win over GEARMAN_SERVER; a list of servers runs
  the command on each in turn. -t: deadline per server (default 10000 ms).

Admin commands (gearadmin's --option names are accepted too):
  status                      functions: total jobs, running jobs, workers
  priority-status             waiting jobs per priority (high normal low)
  workers                     connections: fd, ip, client id, functions
  version                     server version
  verbose                     server log level
  getpid                      server process id
  show-jobs                   every job: handle, retries, ignore, queued
  show-unique-jobs            the unique key of every job
  cancel-job HANDLE           remove a job from the queue
  create-function FUNC        create an (empty) function
  drop-function FUNC          drop a function without workers or running jobs
  maxqueue FUNC [N | H N L]   queue limit (none: unlimited)
  shutdown [graceful]         stop the server (if it allows it)
  retain [FUNC SECS]          polygeard: keep FUNC's background results SECS
                              seconds (0: off); alone: list FUNC<TAB>SECS
  window [FUNC SECS]          polygeard: keep a completed unique of FUNC
                              reserved with its result SECS seconds (0: off)
polygeard only (retries and the dead set of failed background jobs):
  retry                       every function's policy: FUNC ATTEMPTS BACKOFF_MS MAX_MS
  retry FUNC ATTEMPTS BACKOFF_MS [MAX_MS]
                              retry FUNC's failed background jobs: ATTEMPTS runs
                              in all, BACKOFF_MS doubled per failure up to MAX_MS
                              (default 3600000), plus up to 25% jitter; 0 removes it
  dead list [FUNC]            jobs whose attempts ran out, as a table
  dead retry function FUNC | job HANDLE | all
                              requeue them as fresh jobs; prints how many
  dead delete function FUNC | job HANDLE | all
                              forget them; prints how many
polygeard only:
  pause [FUNC]                stop handing out FUNC's jobs (they keep queueing);
                              without FUNC: list the paused functions
  resume FUNC                 hand out FUNC's jobs again
  drain [ID]                  the worker connection(s) with fd or client id ID
                              finish their jobs and get no new ones (prints how
                              many); without ID: list draining connections
  schedule add NAME 'CRON' FUNCTION [DATA]
                              periodic job: at each occurrence of CRON (UTC; 5
                              fields, 6 with seconds first, or @hourly etc.) a
                              background job for FUNCTION with unique NAME@TIME
  schedule list               periodic jobs: name, function, cron, last and
                              next firing (unix time, 0: none), data
  schedule delete NAME        remove a periodic job
Listings are printed raw, including the final '.' line; single values
without the 'OK '. A refused command prints one line and exits 1.
";

/// Parses `COMMAND [ARGS]` into the line to send.
pub fn command(words: &[String]) -> Result<AdminCommand, CliError> {
    let Some((name, args)) = words.split_first() else {
        return Err(CliError::Usage(
            "admin: no command given (try 'polygear admin status')".into(),
        ));
    };
    if name.trim_start_matches("--") == "schedule" {
        return schedule_command(args);
    }
    for a in args {
        if a.is_empty() || a.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(CliError::Usage(format!("admin: bad argument {a:?}")));
        }
    }
    let name = name.trim_start_matches("--");
    let want = |n: usize, what: &str| {
        if args.len() == n {
            Ok(())
        } else {
            Err(CliError::Usage(format!("admin {name} takes {what}")))
        }
    };
    let (line, listing) = match name {
        "status" => (want(0, "no argument").map(|_| "status".to_string())?, true),
        "priority-status" | "prioritystatus" => (
            want(0, "no argument").map(|_| "prioritystatus".into())?,
            true,
        ),
        "workers" => (want(0, "no argument").map(|_| "workers".into())?, true),
        "version" | "server-version" => (want(0, "no argument").map(|_| "version".into())?, false),
        "verbose" | "server-verbose" => (want(0, "no argument").map(|_| "verbose".into())?, false),
        "getpid" => (want(0, "no argument").map(|_| "getpid".into())?, false),
        "show-jobs" => (want(0, "no argument").map(|_| "show jobs".into())?, true),
        "show-unique-jobs" => (
            want(0, "no argument").map(|_| "show unique jobs".into())?,
            true,
        ),
        "cancel-job" => (
            want(1, "a job handle").map(|_| format!("cancel job {}", args[0]))?,
            false,
        ),
        "create-function" => (
            want(1, "a function name").map(|_| format!("create function {}", args[0]))?,
            false,
        ),
        "drop-function" => (
            want(1, "a function name").map(|_| format!("drop function {}", args[0]))?,
            false,
        ),
        "maxqueue" => {
            if !matches!(args.len(), 1 | 2 | 4) {
                return Err(CliError::Usage(
                    "admin maxqueue takes FUNC, FUNC N, or FUNC HIGH NORMAL LOW".into(),
                ));
            }
            for n in &args[1..] {
                if n.parse::<i64>().is_err() {
                    return Err(CliError::Usage(format!(
                        "admin maxqueue: {n:?} is not a number"
                    )));
                }
            }
            (format!("maxqueue {}", args.join(" ")), false)
        }
        "retain" | "window" => match args {
            [] => (name.to_string(), true),
            [f, s] if s.parse::<u32>().is_ok() => (format!("{name} {f} {s}"), false),
            _ => {
                return Err(CliError::Usage(format!(
                    "admin {name} takes nothing (list) or FUNC SECONDS"
                )))
            }
        },
        "pause" => match args {
            [] => ("pause".into(), true),
            [f] => (format!("pause {f}"), false),
            _ => {
                return Err(CliError::Usage(
                    "admin pause takes at most a function name".into(),
                ))
            }
        },
        "resume" => (
            want(1, "a function name").map(|_| format!("resume {}", args[0]))?,
            false,
        ),
        "drain" | "drain-worker" => match args {
            [] => ("drain".into(), true),
            [id] => (format!("drain worker {id}"), false),
            _ => {
                return Err(CliError::Usage(
                    "admin drain takes at most a worker id".into(),
                ))
            }
        },
        "shutdown" => match args {
            [] => ("shutdown".into(), false),
            [g] if g == "graceful" => ("shutdown graceful".into(), false),
            _ => {
                return Err(CliError::Usage(
                    "admin shutdown takes nothing or 'graceful'".into(),
                ))
            }
        },
        "retry" => match args {
            [] => ("retry show".into(), true),
            [_, n @ ..] if (2..=3).contains(&n.len()) => {
                if let Some(bad) = n.iter().find(|n| n.parse::<u64>().is_err()) {
                    return Err(CliError::Usage(format!(
                        "admin retry: {bad:?} is not a number"
                    )));
                }
                (format!("retry {}", args.join(" ")), false)
            }
            _ => {
                return Err(CliError::Usage(
                    "admin retry takes nothing, or FUNC ATTEMPTS BACKOFF_MS [MAX_MS]".into(),
                ))
            }
        },
        "dead" => {
            let usage = || {
                CliError::Usage(
                    "admin dead takes list [FUNC], or retry|delete function FUNC|job HANDLE|all"
                        .into(),
                )
            };
            let words: Vec<&str> = args.iter().map(String::as_str).collect();
            match words[..] {
                ["list"] | ["list", _] => {
                    return Ok(AdminCommand {
                        line: format!("dead {}", args.join(" ")),
                        listing: true,
                        dead_table: true,
                    })
                }
                ["retry" | "delete", "all"] | ["retry" | "delete", "function" | "job", _] => {
                    (format!("dead {}", args.join(" ")), false)
                }
                _ => return Err(usage()),
            }
        }
        other => return Err(CliError::Usage(format!("admin: unknown command {other:?}"))),
    };
    Ok(AdminCommand {
        line,
        listing,
        dead_table: false,
    })
}

/// `schedule add NAME 'CRON' FUNCTION [DATA]`, `schedule list`,
/// `schedule delete NAME` (the cron expression and the data may contain
/// spaces; the server's syntax puts the function before the cron fields).
fn schedule_command(args: &[String]) -> Result<AdminCommand, CliError> {
    let usage = || {
        CliError::Usage(
            "admin schedule takes: add NAME 'CRON' FUNCTION [DATA] | list | delete NAME".into(),
        )
    };
    let word = |a: &String| {
        if a.is_empty() || a.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Err(CliError::Usage(format!(
                "admin schedule: bad argument {a:?}"
            )))
        } else {
            Ok(a.clone())
        }
    };
    let text = |a: &String, what: &str| {
        if a.chars().any(char::is_control) || a.split_whitespace().any(|w| w == "--") {
            Err(CliError::Usage(format!("admin schedule: bad {what} {a:?}")))
        } else {
            Ok(a.split_whitespace().collect::<Vec<_>>().join(" "))
        }
    };
    let (line, listing) = match args {
        [sub] if sub == "list" => ("schedule list".to_string(), true),
        [sub, name] if sub == "delete" => (format!("schedule delete {}", word(name)?), false),
        [sub, name, cron, function, rest @ ..] if sub == "add" && rest.len() <= 1 => {
            let cron = text(cron, "cron expression")?;
            if cron.is_empty() {
                return Err(usage());
            }
            let mut line = format!("schedule add {} {} {cron}", word(name)?, word(function)?);
            if let Some(data) = rest.first() {
                if data.chars().any(char::is_control) {
                    return Err(CliError::Usage(format!(
                        "admin schedule: bad data {data:?}"
                    )));
                }
                let data = data.split_whitespace().collect::<Vec<_>>().join(" ");
                if !data.is_empty() {
                    line.push_str(" -- ");
                    line.push_str(&data);
                }
            }
            (line, false)
        }
        _ => return Err(usage()),
    };
    Ok(AdminCommand {
        line,
        listing,
        dead_table: false,
    })
}

/// Sends `cmd` to every server in turn and prints the replies.
pub async fn run(
    servers: &[ServerAddr],
    timeout: Duration,
    tls: Option<&TlsOptions>,
    cmd: &AdminCommand,
) -> Result<(), CliError> {
    for server in servers {
        let mut admin = match Admin::connect_with(server, timeout, tls).await {
            Ok(a) => a,
            Err(e) => {
                let msg = describe(&e);
                return Err(CliError::from(e).with_context(server, &msg));
            }
        };
        match admin.raw(&cmd.line).await {
            Ok(reply) if cmd.dead_table && !reply.starts_with("ERR") => {
                let rows = parse_dead_jobs(&reply).map_err(|e| {
                    CliError::Runtime(format!("{server}: bad dead list reply: {e}"))
                })?;
                write(Stream::Out, None, dead_table(&rows).as_bytes());
            }
            Ok(reply) => print_reply(server, &reply, cmd.listing)?,
            Err(Error::Server { code, text }) => return Err(refused(server, &code, &text)),
            Err(e) => {
                let msg = describe(&e);
                return Err(CliError::from(e).with_context(server, &msg));
            }
        }
    }
    Ok(())
}

impl CliError {
    /// Keeps the error class, rewording the message to name the server.
    fn with_context(self, server: &ServerAddr, msg: &str) -> CliError {
        let m = if msg.contains(&server.to_string()) {
            msg.to_string()
        } else {
            format!("{server}: {msg}")
        };
        match self {
            CliError::Timeout(_) => CliError::Timeout(m),
            CliError::Usage(_) => CliError::Usage(m),
            CliError::Failed(_) => CliError::Failed(Some(m)),
            CliError::Runtime(_) => CliError::Runtime(m),
        }
    }
}

/// The one-line error for an `ERR CODE text` reply (`+` in the text means a space).
fn refused(server: &ServerAddr, code: &str, text: &str) -> CliError {
    let text = text.replace('+', " ");
    let msg = if text.is_empty() {
        code.to_string()
    } else {
        format!("{code} {text}")
    };
    CliError::Failed(Some(format!("{server} refused: {msg}")))
}

/// Bytes for a terminal: the text if it is UTF-8 without control
/// characters, else the escaped form of `dead list`; cut at `max` characters.
fn shown(bytes: &[u8], max: usize) -> String {
    let s = match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
        _ => escape_field(bytes),
    };
    if s.chars().count() > max {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The `dead list` table: one aligned row per record, oldest first.
fn dead_table(rows: &[DeadJob]) -> String {
    if rows.is_empty() {
        return "0 dead job(s)\n".into();
    }
    let header = [
        "HANDLE",
        "FUNCTION",
        "ATTEMPTS",
        "FAILED (UTC)",
        "UNIQUE",
        "ERROR",
        "DATA",
    ];
    let mut table: Vec<[String; 7]> = vec![header.map(String::from)];
    for r in rows {
        table.push([
            r.handle.clone(),
            shown(r.function.as_bytes(), 40),
            r.attempts.to_string(),
            utc(r.failed_at),
            shown(&r.unique, 40),
            shown(r.error.as_bytes(), 60),
            shown(&r.data, 40),
        ]);
    }
    let mut width = [0usize; 7];
    for row in &table {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!("{} dead job(s)\n", rows.len()));
    out
}

/// Prints a reply like gearadmin: listings raw, `OK x` as `x`, `OK` as `OK`.
fn print_reply(server: &ServerAddr, reply: &str, listing: bool) -> Result<(), CliError> {
    let first = reply.lines().next().unwrap_or("").trim_end_matches('\r');
    if let Some(err) = first.strip_prefix("ERR") {
        if err.is_empty() || err.starts_with(' ') {
            let err = err.trim_start();
            let (code, text) = err.split_once(' ').unwrap_or((err, ""));
            return Err(refused(server, code, text));
        }
    }
    if listing {
        let mut text = reply.replace("\r\n", "\n");
        if !text.ends_with('\n') {
            text.push('\n');
        }
        write(Stream::Out, None, text.as_bytes());
    } else {
        let value = if first == "OK" {
            "OK"
        } else {
            first.strip_prefix("OK ").unwrap_or(first)
        };
        write(Stream::Out, None, format!("{value}\n").as_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(words: &[&str]) -> Result<AdminCommand, CliError> {
        command(&words.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn builds_command_lines() {
        assert_eq!(
            c(&["status"]).unwrap(),
            AdminCommand {
                line: "status".into(),
                listing: true,
                dead_table: false,
            }
        );
        assert_eq!(c(&["retry"]).unwrap().line, "retry show");
        assert_eq!(
            c(&["retry", "f", "3", "100"]).unwrap().line,
            "retry f 3 100"
        );
        assert_eq!(
            c(&["retry", "f", "3", "100", "900"]).unwrap().line,
            "retry f 3 100 900"
        );
        let list = c(&["dead", "list", "f"]).unwrap();
        assert!(list.listing && list.dead_table && list.line == "dead list f");
        assert_eq!(
            c(&["dead", "retry", "job", "H:x:1"]).unwrap().line,
            "dead retry job H:x:1"
        );
        assert_eq!(
            c(&["dead", "delete", "all"]).unwrap().line,
            "dead delete all"
        );
        assert_eq!(c(&["--show-unique-jobs"]).unwrap().line, "show unique jobs");
        assert_eq!(c(&["priority-status"]).unwrap().line, "prioritystatus");
        assert_eq!(
            c(&["cancel-job", "H:x:1"]).unwrap().line,
            "cancel job H:x:1"
        );
        assert_eq!(
            c(&["maxqueue", "f", "1", "2", "3"]).unwrap().line,
            "maxqueue f 1 2 3"
        );
        assert_eq!(
            c(&["shutdown", "graceful"]).unwrap().line,
            "shutdown graceful"
        );
        assert!(!c(&["version"]).unwrap().listing);
        assert_eq!(
            c(&["retain"]).unwrap(),
            AdminCommand {
                line: "retain".into(),
                listing: true,
                dead_table: false
            }
        );
        assert_eq!(c(&["retain", "f", "60"]).unwrap().line, "retain f 60");
        assert_eq!(c(&["window", "f", "0"]).unwrap().line, "window f 0");
        assert!(!c(&["window", "f", "5"]).unwrap().listing);
        assert_eq!(c(&["pause", "f"]).unwrap().line, "pause f");
        assert!(!c(&["pause", "f"]).unwrap().listing);
        assert_eq!(
            c(&["pause"]).unwrap(),
            AdminCommand {
                line: "pause".into(),
                listing: true,
                dead_table: false
            }
        );
        assert_eq!(c(&["resume", "f"]).unwrap().line, "resume f");
        assert_eq!(c(&["drain", "12"]).unwrap().line, "drain worker 12");
        assert!(c(&["drain"]).unwrap().listing);
        assert_eq!(
            c(&[
                "schedule",
                "add",
                "tick",
                "*/5 * * * * *",
                "beat",
                "some  data"
            ])
            .unwrap()
            .line,
            "schedule add tick beat */5 * * * * * -- some data"
        );
        assert_eq!(
            c(&["schedule", "add", "n", "@hourly", "f"]).unwrap().line,
            "schedule add n f @hourly"
        );
        assert!(c(&["schedule", "list"]).unwrap().listing);
        assert_eq!(
            c(&["schedule", "delete", "n"]).unwrap().line,
            "schedule delete n"
        );
        for bad in [
            &[][..],
            &["bogus"],
            &["status", "x"],
            &["cancel-job"],
            &["maxqueue", "f", "1", "2"],
            &["maxqueue", "f", "x"],
            &["maxqueue", "f", "1", "2", "3", "4"],
            &["create-function", "a b"],
            &["shutdown", "now"],
            &["retain", "f"],
            &["window", "f", "-1"],
            &["retain", "f", "1", "2"],
            &["retry", "f"],
            &["retry", "f", "x", "1"],
            &["retry", "f", "1", "2", "3", "4"],
            &["dead"],
            &["dead", "list", "a", "b"],
            &["dead", "retry"],
            &["dead", "retry", "function"],
            &["dead", "purge", "all"],
            &["pause", "a", "b"],
            &["resume"],
            &["drain", "1", "2"],
            &["schedule"],
            &["schedule", "add", "n", "* * * * *"],
            &["schedule", "add", "n f", "* * * * *", "g"],
            &["schedule", "add", "n", "", "g"],
            &["schedule", "add", "n", "* -- *", "g"],
            &["schedule", "delete"],
            &["schedule", "list", "x"],
        ] {
            assert!(matches!(c(bad), Err(CliError::Usage(_))), "{bad:?}");
        }
    }

    #[test]
    fn dead_tables_decode_what_is_readable() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_709_251_199), "2024-02-29 23:59:59");
        assert_eq!(shown(b"plain text", 40), "plain text");
        assert_eq!(shown(b"a\tb\xff", 40), "a\\tb\\xff");
        assert_eq!(shown(b"abcdef", 4), "abc…");
        let t = dead_table(&[DeadJob {
            handle: "H:x:1".into(),
            function: "f".into(),
            unique: "u".into(),
            data: "d".into(),
            attempts: 3,
            error: "boom".into(),
            submitted: 0,
            failed_at: 60,
        }]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("HANDLE  FUNCTION  ATTEMPTS"), "{t}");
        assert_eq!(
            lines[1],
            "H:x:1   f         3         1970-01-01 00:01:00  u       boom   d"
        );
        assert_eq!(lines[2], "1 dead job(s)");
    }

    #[test]
    fn err_replies_become_one_line() {
        let s = ServerAddr::new("h", 1);
        assert_eq!(
            print_reply(
                &s,
                "ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n",
                false
            ),
            Err(CliError::Failed(Some(
                "h:1 refused: UNKNOWN_COMMAND Unknown server commandshutdown".into()
            )))
        );
        assert_eq!(
            refused(&s, "UNKNOWN_JOB", ""),
            CliError::Failed(Some("h:1 refused: UNKNOWN_JOB".into()))
        );
    }
}
