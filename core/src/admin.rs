//! Admin client: gearmand's text protocol (`status`, `workers`, …) as typed calls.
//!
//! API CONTRACT (bindings and the CLI rely on these names and signatures).
//!
//! One TCP connection per [`Admin`]. Every call is bounded by the timeout
//! given to [`Admin::connect`] and fails with [`Error::Timeout`] when it runs
//! out. Listing replies are read up to their terminating `.` line and other
//! replies as exactly one line (no timing heuristics). `ERR` replies become
//! [`Error::Server`] with the code and the text (`+` turned back into spaces).
//! After a timeout or an I/O failure the connection is dropped and the next
//! call reconnects, so a late reply can never be mistaken for the next one.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::frame::{FrameReader, Line};
use crate::protocol::admin::{
    is_error_line, listing_rows, parse_dead_jobs, parse_function_seconds, parse_jobs,
    parse_priority_status, parse_reply, parse_retry_policies, parse_status, parse_unique_jobs,
    parse_workers, AdminCommand, AdminReply, DeadJob, DeadTarget, FunctionStatus, JobInfo,
    PriorityStatus, RetryPolicy, WorkerInfo,
};
use crate::protocol::{PacketCodec, ProtocolError};
use crate::servers::ServerAddr;
use crate::tls::{TlsConnector, TlsOptions};
use crate::transport::{ReadHalf, Stream, WriteHalf};

/// Longest reply line accepted (a `workers` line lists every registration).
const MAX_REPLY_LINE: usize = 16 << 20;

/// A worker connection being drained (a row of [`Admin::draining`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainingWorker {
    /// Its fd, as in the first column of `workers`.
    pub fd: u64,
    /// Its client id (`-` if it set none).
    pub client_id: String,
}

/// A periodic job (a row of [`Admin::schedules`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleInfo {
    /// Its name.
    pub name: String,
    /// The function its jobs go to.
    pub function: String,
    /// Its cron expression.
    pub cron: String,
    /// Unix time of the last occurrence fired (`None`: never).
    pub last_fired: Option<i64>,
    /// Unix time of the next occurrence (`None`: none).
    pub next: Option<i64>,
    /// The jobs' payload (control characters shown as `?`).
    pub data: String,
}

/// One admin connection to one server.
#[derive(Debug)]
pub struct Admin {
    addr: ServerAddr,
    timeout: Duration,
    tls: Option<TlsConnector>,
    conn: Option<Conn>,
}

/// The socket, read through the crate's one [`FrameReader`] (text lines only).
#[derive(Debug)]
struct Conn {
    reader: FrameReader<ReadHalf>,
    writer: WriteHalf,
    /// The server answered a command on this connection already.
    answered: bool,
}

impl Conn {
    fn new(stream: Stream) -> Conn {
        let (rd, writer) = stream.into_split();
        Conn {
            reader: FrameReader::new(rd, PacketCodec::default()),
            writer,
            answered: false,
        }
    }

    /// Reads one line including its `\n`.
    async fn read_line(&mut self, addr: &ServerAddr) -> Result<String> {
        match self.reader.read_line(MAX_REPLY_LINE).await? {
            Line::Complete(line) => Ok(String::from_utf8_lossy(&line).into_owned()),
            Line::TooLong => Err(ProtocolError::BadAdminReply(format!(
                "reply line longer than {MAX_REPLY_LINE} bytes"
            ))
            .into()),
            Line::Eof => Err(Error::ConnectionLost {
                addr: addr.to_string(),
                reason: "server closed the admin connection".into(),
                kind: std::io::ErrorKind::UnexpectedEof,
            }),
        }
    }
}

fn bad_reply(what: &str, reply: &str) -> Error {
    ProtocolError::BadAdminReply(format!("{what}: {reply:?}")).into()
}

/// The reply of an action command: `OK`, or the server's `ERR`.
fn expect_ok(reply: &str) -> Result<()> {
    match parse_reply(reply)? {
        AdminReply::Ok => Ok(()),
        AdminReply::Err(e) => Err(e.into()),
        AdminReply::Value(_) => Err(bad_reply("expected OK", reply)),
    }
}

/// A duration as the whole seconds of `retain` / `window` (rounded up).
fn whole_seconds(d: Duration) -> Result<u32> {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(secs).map_err(|_| {
        Error::InvalidArgument(format!("{secs} s is too long (at most {} s)", u32::MAX))
    })
}

/// Rejects names that would change the command's tokens.
pub(crate) fn check_word(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.contains([' ', '\n', '\r', '\0']) {
        return Err(Error::InvalidArgument(format!(
            "{what} {s:?} must be non-empty, without spaces, line breaks or NUL"
        )));
    }
    Ok(())
}

impl Admin {
    /// Connects; every later call fails with `Error::Timeout` after `timeout`.
    pub async fn connect(addr: &ServerAddr, timeout: Duration) -> Result<Admin> {
        Admin::connect_with(addr, timeout, None).await
    }

    /// [`Admin::connect`] over TLS when `tls` is given (a server started
    /// with `--ssl` speaks TLS on every connection, admin ones included).
    pub async fn connect_with(
        addr: &ServerAddr,
        timeout: Duration,
        tls: Option<&TlsOptions>,
    ) -> Result<Admin> {
        let tls = tls.map(TlsConnector::new).transpose()?;
        let stream = addr.open(timeout, tls.as_ref()).await?;
        Ok(Admin {
            addr: addr.clone(),
            timeout,
            tls,
            conn: Some(Conn::new(stream)),
        })
    }

    /// Sends `command` and reads the reply: up to the `.` line if `listing`
    /// (unless the server answers with an `ERR` line), else one line.
    async fn exchange(&mut self, command: &str, listing: bool) -> Result<String> {
        if self.conn.is_none() {
            let stream = self.addr.open(self.timeout, self.tls.as_ref()).await?;
            self.conn = Some(Conn::new(stream));
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(Error::Closed("admin connection".into()));
        };
        let mut msg = Vec::with_capacity(command.len() + 2);
        msg.extend_from_slice(command.as_bytes());
        msg.extend_from_slice(b"\r\n");
        conn.writer.write_all(&msg).await?;
        let first = conn.read_line(&self.addr).await?;
        if !conn.answered && first.starts_with("HTTP/") {
            // An HTTP server answering a text command with its status line.
            let b = first.as_bytes();
            return Err(ProtocolError::NotGearman {
                addr: self.addr.to_string(),
                first: [b[0], b[1], b[2], b[3]],
            }
            .into());
        }
        conn.answered = true;
        if !listing || is_error_line(&first) {
            return Ok(first);
        }
        let mut reply = first;
        let mut last_start = 0;
        loop {
            let last = &reply[last_start..];
            if last == ".\n" || last == ".\r\n" {
                return Ok(reply);
            }
            last_start = reply.len();
            let line = conn.read_line(&self.addr).await?;
            reply.push_str(&line);
        }
    }

    /// [`Admin::exchange`] under the per-call timeout; drops the connection
    /// on timeout or failure.
    async fn call(&mut self, command: &str, listing: bool) -> Result<String> {
        if command.contains(['\n', '\r']) {
            return Err(Error::InvalidArgument(format!(
                "admin command {command:?} must be a single line"
            )));
        }
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(command, listing)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(Error::Timeout(format!(
                    "admin command {command:?} to {} took longer than {timeout:?}",
                    self.addr
                )))
            }
        }
    }

    /// A typed command, its text from [`AdminCommand`]'s formatter (the
    /// protocol module's, as the server parses it): the raw reply.
    async fn command(&mut self, command: AdminCommand) -> Result<String> {
        let listing = command.is_listing();
        self.call(&command.to_string(), listing).await
    }

    /// A command answered by `OK\r\n`.
    async fn action(&mut self, command: AdminCommand) -> Result<()> {
        let reply = self.command(command).await?;
        expect_ok(&reply)
    }

    /// A command answered by `OK <value>\n`.
    async fn value(&mut self, command: AdminCommand) -> Result<String> {
        let reply = self.command(command).await?;
        match parse_reply(&reply)? {
            AdminReply::Value(v) => Ok(v),
            AdminReply::Err(e) => Err(e.into()),
            AdminReply::Ok => Err(bad_reply("expected OK <value>", &reply)),
        }
    }

    /// `status`: per function, total/running jobs and registered workers.
    pub async fn status(&mut self) -> Result<Vec<FunctionStatus>> {
        parse_status(&self.command(AdminCommand::Status).await?).map_err(Into::into)
    }
    /// `prioritystatus`: waiting jobs per priority.
    pub async fn priority_status(&mut self) -> Result<Vec<PriorityStatus>> {
        parse_priority_status(&self.command(AdminCommand::PriorityStatus).await?)
            .map_err(Into::into)
    }
    /// `workers`: one entry per connection.
    pub async fn workers(&mut self) -> Result<Vec<WorkerInfo>> {
        parse_workers(&self.command(AdminCommand::Workers).await?).map_err(Into::into)
    }
    /// `version`.
    pub async fn version(&mut self) -> Result<String> {
        self.value(AdminCommand::Version).await
    }
    /// `getpid`.
    pub async fn getpid(&mut self) -> Result<u32> {
        let v = self.value(AdminCommand::Getpid).await?;
        v.trim()
            .parse()
            .map_err(|_| bad_reply("getpid is not a process id", &v))
    }
    /// `verbose`: the server's log level name.
    pub async fn verbose(&mut self) -> Result<String> {
        self.value(AdminCommand::Verbose).await
    }
    /// `show jobs`.
    pub async fn show_jobs(&mut self) -> Result<Vec<JobInfo>> {
        parse_jobs(&self.command(AdminCommand::ShowJobs).await?).map_err(Into::into)
    }
    /// `show unique jobs`.
    pub async fn show_unique_jobs(&mut self) -> Result<Vec<String>> {
        parse_unique_jobs(&self.command(AdminCommand::ShowUniqueJobs).await?).map_err(Into::into)
    }
    /// `cancel job HANDLE`; `Error::Server` with code `UNKNOWN_JOB` if absent.
    pub async fn cancel_job(&mut self, handle: &str) -> Result<()> {
        check_word("job handle", handle)?;
        self.action(AdminCommand::CancelJob(handle.into())).await
    }
    /// `maxqueue FUNC` (None: unlimited) or `maxqueue FUNC HIGH NORMAL LOW`.
    ///
    /// 0 means unlimited. gearmand reads the numbers as C `int`s, so limits
    /// above `i32::MAX` are refused with `Error::InvalidArgument`.
    pub async fn maxqueue(&mut self, function: &str, limits: Option<[u32; 3]>) -> Result<()> {
        check_word("function name", function)?;
        match limits {
            // No AdminCommand for this form (it parses as limits of 0).
            None => {
                let reply = self.call(&format!("maxqueue {function}"), false).await?;
                expect_ok(&reply)
            }
            Some(l) => {
                if l.iter().any(|&n| n > i32::MAX as u32) {
                    return Err(Error::InvalidArgument(format!(
                        "queue limits {l:?} must not exceed {}",
                        i32::MAX
                    )));
                }
                self.action(AdminCommand::MaxQueue {
                    function: function.into(),
                    limits: l,
                })
                .await
            }
        }
    }
    /// `create function FUNC`.
    pub async fn create_function(&mut self, function: &str) -> Result<()> {
        check_word("function name", function)?;
        self.action(AdminCommand::CreateFunction(function.into()))
            .await
    }
    /// `drop function FUNC`.
    pub async fn drop_function(&mut self, function: &str) -> Result<()> {
        check_word("function name", function)?;
        self.action(AdminCommand::DropFunction(function.into()))
            .await
    }
    /// `pause FUNC` (polygeard extension): the function's jobs keep queueing
    /// but none is handed out until [`Admin::resume`]. gearmand answers
    /// `Error::Server` with code `UNKNOWN_COMMAND`.
    pub async fn pause(&mut self, function: &str) -> Result<()> {
        check_word("function name", function)?;
        self.action(AdminCommand::Pause(function.into())).await
    }
    /// `resume FUNC` (polygeard extension): hands out the paused function's
    /// jobs again (a no-op for a function that is not paused).
    pub async fn resume(&mut self, function: &str) -> Result<()> {
        check_word("function name", function)?;
        self.action(AdminCommand::Resume(function.into())).await
    }
    /// `pause` (polygeard extension): the names of the paused functions, sorted.
    pub async fn paused(&mut self) -> Result<Vec<String>> {
        parse_unique_jobs(&self.command(AdminCommand::Paused).await?).map_err(Into::into)
    }
    /// `drain worker ID` (polygeard extension): the worker connections whose
    /// fd (the first column of [`Admin::workers`]) or client id is `id`
    /// finish the jobs they hold and get no new ones. Returns how many
    /// connections matched; none is `Error::Server` with code `UNKNOWN_WORKER`.
    pub async fn drain_worker(&mut self, id: &str) -> Result<u64> {
        check_word("worker id", id)?;
        let v = self.value(AdminCommand::DrainWorker(id.into())).await?;
        v.trim()
            .parse()
            .map_err(|_| bad_reply("drain worker did not answer a count", &v))
    }
    /// `drain` (polygeard extension): the draining worker connections.
    pub async fn draining(&mut self) -> Result<Vec<DrainingWorker>> {
        let reply = self.command(AdminCommand::Draining).await?;
        let rows = listing_rows(&reply)?;
        rows.into_iter()
            .map(|row| {
                let (fd, id) = row.split_once(' ').unwrap_or((row, ""));
                Ok(DrainingWorker {
                    fd: fd.parse().map_err(|_| bad_reply("bad drain line", row))?,
                    client_id: id.to_string(),
                })
            })
            .collect()
    }
    /// `schedule add NAME FUNCTION CRON [-- DATA]` (polygeard extension):
    /// adds (or replaces) the periodic job `name`: at each occurrence of
    /// `cron` (evaluated in UTC; 5 fields, 6 with seconds first, 7 with
    /// years, or an alias such as `@hourly`) the server submits a background
    /// job to `function` with payload `data` and unique `NAME@<unix time>`.
    /// A refused schedule is `Error::Server` with code `INVALID_SCHEDULE`.
    /// `data` may not contain line breaks or NUL, and runs of spaces in it
    /// become one space.
    pub async fn schedule_add(
        &mut self,
        name: &str,
        cron: &str,
        function: &str,
        data: &str,
    ) -> Result<()> {
        check_word("schedule name", name)?;
        check_word("function name", function)?;
        if cron.trim().is_empty() || cron.contains(['\n', '\r', '\0']) || cron.contains("--") {
            return Err(Error::InvalidArgument(format!(
                "cron expression {cron:?} must be non-empty, on one line, without '--'"
            )));
        }
        if data.contains(['\n', '\r', '\0']) {
            return Err(Error::InvalidArgument(
                "schedule data must not contain line breaks or NUL".into(),
            ));
        }
        self.action(AdminCommand::ScheduleAdd {
            name: name.into(),
            function: function.into(),
            cron: cron.split_whitespace().collect::<Vec<_>>().join(" "),
            data: data
                .split(' ')
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        })
        .await
    }
    /// `schedule list` (polygeard extension): the periodic jobs, by name.
    pub async fn schedules(&mut self) -> Result<Vec<ScheduleInfo>> {
        let reply = self.command(AdminCommand::ScheduleList).await?;
        listing_rows(&reply)?
            .into_iter()
            .map(|row| {
                let f: Vec<&str> = row.splitn(6, '\t').collect();
                let [name, function, cron, last, next, data] = f[..] else {
                    return Err(bad_reply("bad schedule line", row));
                };
                let time = |s: &str| -> Result<Option<i64>> {
                    let t: i64 = s.parse().map_err(|_| bad_reply("bad schedule time", row))?;
                    Ok((t > 0).then_some(t))
                };
                Ok(ScheduleInfo {
                    name: name.into(),
                    function: function.into(),
                    cron: cron.into(),
                    last_fired: time(last)?,
                    next: time(next)?,
                    data: data.into(),
                })
            })
            .collect()
    }
    /// `schedule delete NAME` (polygeard extension); an unknown name is
    /// `Error::Server` with code `UNKNOWN_SCHEDULE`.
    pub async fn schedule_delete(&mut self, name: &str) -> Result<()> {
        check_word("schedule name", name)?;
        self.action(AdminCommand::ScheduleDelete(name.into())).await
    }
    /// `shutdown` / `shutdown graceful` (only servers that allow it).
    pub async fn shutdown(&mut self, graceful: bool) -> Result<()> {
        self.action(AdminCommand::Shutdown { graceful }).await
    }
    /// `retain FUNCTION SECONDS` (polygeard only): keep the results of the
    /// function's background jobs this long after they end (whole seconds,
    /// rounded up; zero turns it off). Other servers answer
    /// `Error::Server` with code `UNKNOWN_COMMAND`.
    pub async fn set_retention(&mut self, function: &str, retain: Duration) -> Result<()> {
        check_word("function name", function)?;
        let s = whole_seconds(retain)?;
        self.action(AdminCommand::Retain(Some((function.into(), s))))
            .await
    }
    /// `retain` (polygeard only): the functions with a retention, by name.
    pub async fn retention(&mut self) -> Result<Vec<(String, Duration)>> {
        parse_function_seconds(&self.command(AdminCommand::Retain(None)).await?).map_err(Into::into)
    }
    /// `window FUNCTION SECONDS` (polygeard only): after a job of the
    /// function with a unique key completes, keep the key reserved with its
    /// result this long (zero turns it off).
    pub async fn set_unique_window(&mut self, function: &str, window: Duration) -> Result<()> {
        check_word("function name", function)?;
        let s = whole_seconds(window)?;
        self.action(AdminCommand::UniqueWindow(Some((function.into(), s))))
            .await
    }
    /// `window` (polygeard only): the functions with a unique window, by name.
    pub async fn unique_windows(&mut self) -> Result<Vec<(String, Duration)>> {
        parse_function_seconds(&self.command(AdminCommand::UniqueWindow(None)).await?)
            .map_err(Into::into)
    }
    /// `retry FUNC MAX_ATTEMPTS BACKOFF_MS MAX_DELAY_MS` (polygeard only):
    /// sets the function's retry policy for failed background jobs
    /// (`policy.max_attempts == 0` removes it). Durations are sent in whole
    /// milliseconds.
    pub async fn set_retry_policy(&mut self, function: &str, policy: RetryPolicy) -> Result<()> {
        check_word("function name", function)?;
        self.action(AdminCommand::SetRetry {
            function: function.into(),
            policy,
        })
        .await
    }
    /// `retry show` (polygeard only): every function's retry policy.
    pub async fn retry_policies(&mut self) -> Result<Vec<(String, RetryPolicy)>> {
        parse_retry_policies(&self.command(AdminCommand::ShowRetry).await?).map_err(Into::into)
    }
    /// `dead list [FUNC]` (polygeard only): the dead set, oldest first, all
    /// of it or one function's.
    pub async fn dead_jobs(&mut self, function: Option<&str>) -> Result<Vec<DeadJob>> {
        if let Some(f) = function {
            check_word("function name", f)?;
        }
        let reply = self
            .command(AdminCommand::DeadList(function.map(Into::into)))
            .await?;
        parse_dead_jobs(&reply).map_err(Into::into)
    }
    /// A `dead retry|delete …` command: the number in its `OK N` reply.
    async fn dead_count(&mut self, command: AdminCommand) -> Result<u64> {
        let v = self.value(command).await?;
        v.trim()
            .parse()
            .map_err(|_| bad_reply("expected OK <count>", &v))
    }
    /// `dead retry function FUNC`: requeues the function's dead jobs as fresh
    /// background jobs (attempts reset); how many.
    pub async fn retry_dead(&mut self, function: &str) -> Result<u64> {
        check_word("function name", function)?;
        self.dead_count(AdminCommand::DeadRetry(DeadTarget::Function(
            function.into(),
        )))
        .await
    }
    /// `dead retry job HANDLE`: whether a dead job had this handle (every
    /// record with it is requeued).
    pub async fn retry_dead_job(&mut self, handle: &str) -> Result<bool> {
        check_word("job handle", handle)?;
        let n = self
            .dead_count(AdminCommand::DeadRetry(DeadTarget::Job(handle.into())))
            .await?;
        Ok(n > 0)
    }
    /// `dead retry all`: requeues the whole dead set; how many.
    pub async fn retry_all_dead(&mut self) -> Result<u64> {
        self.dead_count(AdminCommand::DeadRetry(DeadTarget::All))
            .await
    }
    /// `dead delete function FUNC`: forgets the function's dead jobs; how many.
    pub async fn delete_dead(&mut self, function: &str) -> Result<u64> {
        check_word("function name", function)?;
        self.dead_count(AdminCommand::DeadDelete(DeadTarget::Function(
            function.into(),
        )))
        .await
    }
    /// `dead delete job HANDLE`: whether a dead job had this handle.
    pub async fn delete_dead_job(&mut self, handle: &str) -> Result<bool> {
        check_word("job handle", handle)?;
        let n = self
            .dead_count(AdminCommand::DeadDelete(DeadTarget::Job(handle.into())))
            .await?;
        Ok(n > 0)
    }
    /// `dead delete all`: empties the dead set; how many.
    pub async fn delete_all_dead(&mut self) -> Result<u64> {
        self.dead_count(AdminCommand::DeadDelete(DeadTarget::All))
            .await
    }
    /// Sends any command line and returns the raw reply (a listing up to and
    /// including the `.` line, otherwise the single line), byte for byte
    /// (non-UTF-8 bytes replaced). `ERR` replies are returned, not raised.
    pub async fn raw(&mut self, command: &str) -> Result<String> {
        let listing = AdminCommand::parse(command.as_bytes()).is_ok_and(|c| c.is_listing());
        self.call(command, listing).await
    }
}
