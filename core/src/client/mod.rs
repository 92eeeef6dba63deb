//! Async Gearman client: foreground and background jobs, status, echo.
//!
//! API CONTRACT (bindings and the CLI rely on these names and signatures).
//!
//! This file is the public face: the options, the event and status types,
//! [`RunningJob`] and the [`Client`] methods. The machinery lives in private
//! submodules, one concept each:
//!
//! - `pool.rs`: the server pool (`Pool`, shared by all clones of a
//!   `Client`): one `Server` per configured address with its connection and
//!   reconnect backoff, routing by unique or round-robin, the memory of which
//!   server created a background handle, and request/reply helpers.
//! - `conn.rs`: one connection (`Conn`) to one server: the reply FIFO
//!   (`Pending`, `Expect`, `Waiter`), the jobs attached on it, and the
//!   reader and writer tasks.
//! - `job.rs`: the per-job hand-off (`JobSlot`) between a connection's
//!   reader and the caller, and the clean-up of an abandoned submission.
//! - `submit.rs`: argument checks, generated uniques and SUBMIT encoding
//!   (pure functions, checked before any I/O).
//! - `retain.rs`: retained results (polygeard's extension): `JobResult`,
//!   `Client::result` / `result_state`, and the check that a server speaks
//!   the extension before a packet of it is sent.
//!
//! Names: a `Server` is a configured server, a `Conn` one connection to it,
//! a `JobSlot` (a "slot") one foreground job's state.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::protocol::{Decimal, Magic, Packet, PacketType, Priority};
use crate::servers::ServerAddr;
use crate::tls::{TlsConnector, TlsOptions};
use crate::util::{later, lock};

mod cancel;
mod conn;
mod job;
mod pool;
mod retain;
mod submit;

pub use retain::JobResult;

use conn::{Conn, Expect, Pending, Waiter};
use job::{JobSlot, Submission, SubmitGuard};
use pool::{status_from, unexpected_reply, Pool};
use submit::{
    check_handle, check_submit, check_timeout, check_unique, encode_submit, generate_unique,
};

/// Client configuration.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Job servers; jobs with a unique key are routed by its stable hash.
    pub servers: Vec<ServerAddr>,
    /// Deadline for establishing a TCP connection (default 5 s).
    pub connect_timeout: Duration,
    /// Deadline from sending a SUBMIT to receiving JOB_CREATED, and for
    /// status/echo replies (default 30 s).
    pub submit_timeout: Duration,
    /// Default deadline for a whole foreground job; `None` waits forever.
    pub job_timeout: Option<Duration>,
    /// Sent with SET_CLIENT_ID after connecting, if set.
    pub client_id: Option<String>,
    /// Send `OPTION_REQ exceptions` so WORK_EXCEPTION messages arrive (default true).
    pub exceptions: bool,
    /// Largest packet accepted from a server (default 64 MiB).
    pub max_packet: usize,
    /// First delay before reconnecting to a failed server (doubles up to `max_backoff`).
    pub min_backoff: Duration,
    /// Longest delay between reconnection attempts.
    pub max_backoff: Duration,
    /// Speak TLS to the servers (all of them); `None`: plain TCP.
    pub tls: Option<TlsOptions>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            servers: vec![ServerAddr::new("127.0.0.1", crate::servers::DEFAULT_PORT)],
            connect_timeout: Duration::from_secs(5),
            submit_timeout: Duration::from_secs(30),
            job_timeout: None,
            client_id: None,
            exceptions: true,
            max_packet: crate::protocol::DEFAULT_MAX_PACKET,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// Per-submission options.
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    /// Unique key (≤ 63 bytes); jobs with the same function and key coalesce.
    /// `None` sends an empty unique for foreground jobs and a generated one
    /// for background jobs (so persistent queues keep them apart).
    pub unique: Option<Bytes>,
    /// Job priority.
    pub priority: Priority,
    /// Whole-job deadline for this submission (overrides `job_timeout`).
    pub timeout: Option<Duration>,
    /// Background only: run at this Unix time (SUBMIT_JOB_EPOCH, normal priority).
    pub epoch: Option<i64>,
    /// Background only, polygeard only: keep the job's result on the server
    /// for this long after it ends (whole seconds, rounded up), for
    /// [`Client::result`]. The job goes only to a server that speaks the
    /// extension; if none does, the submission fails with
    /// [`Error::Unsupported`] before anything is sent.
    pub retain: Option<Duration>,
}

/// Something a running foreground job reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// WORK_DATA: a chunk of partial output.
    Data(Bytes),
    /// WORK_WARNING.
    Warning(Bytes),
    /// WORK_STATUS: progress `numerator / denominator`.
    Status {
        /// Work done.
        numerator: u32,
        /// Work total.
        denominator: u32,
    },
    /// WORK_COMPLETE with the result (final).
    Complete(Bytes),
    /// WORK_FAIL (final).
    Failed,
    /// WORK_EXCEPTION with the worker's message (final).
    Exception(Bytes),
}

impl JobEvent {
    /// True for COMPLETE, FAIL and EXCEPTION.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JobEvent::Complete(_) | JobEvent::Failed | JobEvent::Exception(_)
        )
    }
}

/// Result of GET_STATUS / GET_STATUS_UNIQUE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    /// The handle (or, for a status by unique, the unique) asked about.
    pub handle: String,
    /// The server knows the job (queued or running).
    pub known: bool,
    /// A worker is running it.
    pub running: bool,
    /// Last WORK_STATUS numerator.
    pub numerator: u32,
    /// Last WORK_STATUS denominator.
    pub denominator: u32,
    /// Clients waiting on the job (only from a status by unique).
    pub client_count: Option<u32>,
}

/// A submitted foreground job whose events can be read as they arrive.
#[derive(Debug)]
pub struct RunningJob {
    handle: String,
    key: Bytes,
    function: String,
    slot: Arc<JobSlot>,
    conn: Arc<Conn>,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
    done: bool,
    // Keeps the client (and so its connections) alive while the job runs.
    _client: Arc<Pool>,
}

impl RunningJob {
    /// The server-assigned job handle.
    pub fn handle(&self) -> &str {
        &self.handle
    }

    /// Why the server failed the job, once [`JobEvent::Failed`] came and the
    /// server said (polygeard, e.g. "the worker exceeded its 1 s timeout").
    pub fn fail_reason(&self) -> Option<String> {
        lock(&self.slot.st).fail_reason.clone()
    }

    /// The next event; `None` after the final one. Errors on timeout or lost connection.
    pub async fn next_event(&mut self) -> Option<Result<JobEvent>> {
        if self.done {
            return None;
        }
        loop {
            let notified = self.slot.notify.notified();
            {
                let mut st = lock(&self.slot.st);
                if let Some(ev) = st.events.pop_front() {
                    if ev.is_final() {
                        self.done = true;
                    }
                    return Some(Ok(ev));
                }
                if let Some(e) = st.error.take() {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            match self.deadline {
                None => notified.await,
                Some(d) => {
                    if tokio::time::timeout_at(d, notified).await.is_err() {
                        self.done = true;
                        self.conn.detach(&self.key, &self.slot);
                        let after = self.timeout.unwrap_or_default();
                        let e = self
                            ._client
                            .job_timeout(&self.conn, &self.key, &self.function, after)
                            .await;
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    /// Waits for the end of the job, skipping intermediate events:
    /// `Ok(result)` on COMPLETE, `Error::JobFailed` / `Error::JobException` otherwise.
    pub async fn result(mut self) -> Result<Bytes> {
        while let Some(ev) = self.next_event().await {
            match ev? {
                JobEvent::Complete(data) => return Ok(data),
                JobEvent::Failed => return Err(self.slot.failed(self.handle.clone())),
                JobEvent::Exception(msg) => {
                    return Err(Error::JobException {
                        handle: self.handle.clone(),
                        message: String::from_utf8_lossy(&msg).into_owned(),
                    })
                }
                _ => {}
            }
        }
        Err(Error::Closed(format!(
            "job {} already finished",
            self.handle
        )))
    }
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        if !self.done {
            self.conn.detach(&self.key, &self.slot);
        }
    }
}

/// A cheap-to-clone handle to a pipelined, multi-server Gearman client.
///
/// Connections are opened lazily on first use and re-opened with backoff.
#[derive(Debug, Clone)]
pub struct Client {
    // Named `inner`, not `pool`: the derived `Debug` output shows the name.
    inner: Arc<Pool>,
}

impl Client {
    /// Creates a client; no I/O happens until the first call. Fails only
    /// on invalid options (e.g. no servers).
    pub fn new(options: ClientOptions) -> Result<Client> {
        if options.servers.is_empty() {
            return Err(Error::InvalidArgument("no job server configured".into()));
        }
        check_timeout("job timeout", options.job_timeout)?;
        if let Some(id) = &options.client_id {
            if id.as_bytes().contains(&0) {
                return Err(Error::InvalidArgument(
                    "client id contains a NUL byte".into(),
                ));
            }
        }
        let tls = options.tls.as_ref().map(TlsConnector::new).transpose()?;
        Ok(Client {
            inner: Arc::new(Pool::new(options, tls)),
        })
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// Submits a foreground job and waits for its result.
    pub async fn submit(
        &self,
        function: &str,
        data: impl Into<Bytes>,
        opts: SubmitOptions,
    ) -> Result<Bytes> {
        // Same as `submit_job(..).await?.result()`, but the caller is woken
        // once (for the final event) instead of also for JOB_CREATED.
        let sub = self.start_job(function, data.into(), &opts, true).await?;
        let mut guard = SubmitGuard {
            sub: &sub,
            key: None,
            done: false,
        };
        loop {
            let notified = sub.slot.notify.notified();
            {
                let mut st = lock(&sub.slot.st);
                if guard.key.is_none() {
                    match st.created.take() {
                        Some(Ok(k)) => guard.key = Some(k),
                        Some(Err(e)) => {
                            guard.done = true;
                            return Err(e);
                        }
                        None => {}
                    }
                }
                if guard.key.is_some() {
                    while let Some(ev) = st.events.pop_front() {
                        let handle = || {
                            String::from_utf8_lossy(guard.key.as_deref().unwrap_or(b""))
                                .into_owned()
                        };
                        let r = match ev {
                            JobEvent::Complete(data) => Ok(data),
                            // (`st` is the slot's lock: read the reason here.)
                            JobEvent::Failed => {
                                Err(Error::job_failed(handle(), st.fail_reason.clone()))
                            }
                            JobEvent::Exception(msg) => Err(Error::JobException {
                                handle: handle(),
                                message: String::from_utf8_lossy(&msg).into_owned(),
                            }),
                            _ => continue,
                        };
                        guard.done = true;
                        return r;
                    }
                }
                if let Some(e) = st.error.take() {
                    guard.done = true;
                    return Err(e);
                }
            }
            let deadline = match &guard.key {
                None => Some(sub.created_deadline),
                Some(_) => sub.deadline,
            };
            match deadline {
                None => notified.await,
                Some(d) => {
                    if tokio::time::timeout_at(d, notified).await.is_err() {
                        // Re-check once: the reply may have raced the timer.
                        if guard.key.is_none() && lock(&sub.slot.st).created.is_some() {
                            continue;
                        }
                        return Err(match &guard.key {
                            None => sub.created_timeout(&self.inner, function),
                            Some(k) => {
                                let after = sub.timeout.unwrap_or_default();
                                self.inner.job_timeout(&sub.conn, k, function, after).await
                            }
                        });
                    }
                }
            }
        }
    }

    /// Submits a foreground job and returns once the server created it;
    /// read its events from the returned [`RunningJob`].
    pub async fn submit_job(
        &self,
        function: &str,
        data: impl Into<Bytes>,
        opts: SubmitOptions,
    ) -> Result<RunningJob> {
        let sub = self.start_job(function, data.into(), &opts, false).await?;
        // Abandons the submission if this future is dropped or times out.
        let mut guard = SubmitGuard {
            sub: &sub,
            key: None,
            done: false,
        };
        let key = match sub.slot.wait_created(sub.created_deadline).await {
            Ok(k) => k,
            Err(e) => {
                guard.done = e.is_some();
                return Err(e.unwrap_or_else(|| sub.created_timeout(&self.inner, function)));
            }
        };
        guard.done = true;
        drop(guard);
        if self.inner.servers.len() > 1 {
            // So that `cancel` (and `status`) ask the server that has it.
            lock(&self.inner.handles).remember(&String::from_utf8_lossy(&key), sub.server);
        }
        Ok(RunningJob {
            handle: String::from_utf8_lossy(&key).into_owned(),
            key,
            function: function.to_owned(),
            slot: sub.slot,
            conn: sub.conn,
            deadline: sub.deadline,
            timeout: sub.timeout,
            done: false,
            _client: self.inner.clone(),
        })
    }

    /// Validates and queues a foreground SUBMIT.
    async fn start_job(
        &self,
        function: &str,
        data: Bytes,
        opts: &SubmitOptions,
        quiet_created: bool,
    ) -> Result<Submission> {
        let inner = &self.inner;
        let unique: &[u8] = opts.unique.as_deref().unwrap_or(b"");
        check_submit(function, unique, data.len(), 0)?;
        check_timeout("timeout", opts.timeout)?;
        if opts.epoch.is_some() {
            return Err(Error::InvalidArgument(
                "epoch jobs are background jobs (use submit_background)".into(),
            ));
        }
        let start = Instant::now();
        let timeout = opts.timeout.or(inner.options.job_timeout);
        // A deadline beyond what Instant can hold means "no deadline".
        let deadline = timeout.and_then(|d| start.checked_add(d));
        let kind = PacketType::submit(opts.priority, false);
        let slot = Arc::new(JobSlot::default());
        if quiet_created {
            lock(&slot.st).quiet_created = true;
        }
        let (server, conn) = inner
            .send_routed(unique, |conn| {
                conn.enqueue(
                    |buf| encode_submit(buf, kind, function.as_bytes(), unique, None, &data),
                    || Pending {
                        expect: Expect::Created,
                        waiter: Waiter::Job(slot.clone()),
                    },
                )
            })
            .await?;
        let submit_deadline = later(start, inner.options.submit_timeout);
        let (created_deadline, created_by_submit_timeout) = match deadline {
            Some(d) if d < submit_deadline => (d, false),
            _ => (submit_deadline, true),
        };
        Ok(Submission {
            slot,
            conn,
            server,
            deadline,
            timeout,
            created_deadline,
            created_by_submit_timeout,
        })
    }

    /// Submits a background job (or an epoch job when `opts.epoch` is set) and returns its handle.
    pub async fn submit_background(
        &self,
        function: &str,
        data: impl Into<Bytes>,
        opts: SubmitOptions,
    ) -> Result<String> {
        let data = data.into();
        let inner = &self.inner;
        let generated;
        let unique: &[u8] = match &opts.unique {
            Some(u) => u,
            None => {
                generated = generate_unique();
                &generated
            }
        };
        let (kind, epoch) = match opts.epoch {
            Some(when) => (PacketType::SubmitJobEpoch, Some(Decimal::new(when))),
            None => (PacketType::submit(opts.priority, true), None),
        };
        let epoch_len = epoch.as_ref().map_or(0, |e| e.as_bytes().len() + 1);
        check_submit(function, unique, data.len(), epoch_len)?;
        check_timeout("timeout", opts.timeout)?;
        let retain = retain::retain_seconds(opts.retain)?;
        let route_key: &[u8] = opts.unique.as_deref().unwrap_or(b"");
        if retain.is_some() {
            inner.check_extensions(route_key).await?;
        }
        let mut reply_rx = None;
        let (idx, conn) = inner
            .send_routed(route_key, |conn| {
                if retain.is_some() && conn.extensions_now() != Some(true) {
                    return Err(retain::unsupported(conn));
                }
                let mut rx = None;
                let queued = conn.enqueue(
                    |buf| {
                        // Both packets in one append: nothing can come between them.
                        let start = buf.len();
                        if let Some(s) = retain {
                            Packet::SubmitRetain { seconds: s }.encode(Magic::Req, buf)?;
                        }
                        let r = encode_submit(
                            buf,
                            kind,
                            function.as_bytes(),
                            unique,
                            epoch.as_ref().map(Decimal::as_bytes),
                            &data,
                        );
                        if r.is_err() {
                            buf.truncate(start);
                        }
                        r
                    },
                    || {
                        let (tx, r) = oneshot::channel();
                        rx = Some(r);
                        Pending {
                            expect: Expect::Created,
                            waiter: Waiter::Reply(tx),
                        }
                    },
                )?;
                if queued {
                    reply_rx = rx;
                }
                Ok(queued)
            })
            .await?;
        let rx = reply_rx.ok_or_else(|| Error::Closed("submission was not queued".into()))?;
        let reply = inner.wait_reply(&conn, rx, "SUBMIT_JOB_BG").await?;
        let handle = match reply {
            Packet::JobCreated { handle } => String::from_utf8_lossy(&handle).into_owned(),
            other => return Err(unexpected_reply(&conn, &other)),
        };
        if inner.servers.len() > 1 {
            lock(&inner.handles).remember(&handle, idx);
        }
        Ok(handle)
    }

    /// GET_STATUS of a handle this client (or another) created.
    pub async fn status(&self, handle: &str) -> Result<JobStatus> {
        let inner = &self.inner;
        check_handle(handle)?;
        let packet = Packet::GetStatus {
            handle: Bytes::copy_from_slice(handle.as_bytes()),
        };
        let n = inner.servers.len();
        if let Some(i) = inner.server_of(handle) {
            let reply = inner.request(i, &packet, Expect::Status).await?;
            return status_from(reply, &inner.servers[i].name);
        }
        let mut unknown = None;
        let mut last_err = None;
        for i in 0..n {
            match inner.request(i, &packet, Expect::Status).await {
                Ok(reply) => {
                    let st = status_from(reply, &inner.servers[i].name)?;
                    if st.known {
                        return Ok(st);
                    }
                    unknown.get_or_insert(st);
                }
                Err(e) => last_err = Some(e),
            }
        }
        match unknown {
            Some(st) => Ok(st),
            None => Err(inner.all_failed(last_err)),
        }
    }

    /// GET_STATUS_UNIQUE, routed like a submission with that unique.
    pub async fn status_unique(&self, unique: &str) -> Result<JobStatus> {
        let inner = &self.inner;
        check_unique(unique.as_bytes())?;
        let packet = Packet::GetStatusUnique {
            unique: Bytes::copy_from_slice(unique.as_bytes()),
        };
        let mut last_err = None;
        for i in inner.order(unique.as_bytes()) {
            let conn = match inner.conn(i).await {
                Ok(c) => c,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            match inner.request_on(&conn, &packet, Expect::StatusUnique).await {
                Ok(reply) => return status_from(reply, &conn.addr),
                // Died under us: try the next server, like a submission would.
                Err(e @ Error::ConnectionLost { .. }) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(inner.all_failed(last_err))
    }

    /// ECHO round trip to the first reachable server.
    pub async fn echo(&self, data: impl Into<Bytes>) -> Result<Bytes> {
        let inner = &self.inner;
        let data = data.into();
        if data.len() > u32::MAX as usize {
            return Err(Error::InvalidArgument("echo payload too large".into()));
        }
        let packet = Packet::EchoReq { data };
        let mut last_err = None;
        for i in 0..inner.servers.len() {
            let conn = match inner.conn(i).await {
                Ok(c) => c,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            return match inner.request_on(&conn, &packet, Expect::Echo).await? {
                Packet::EchoRes { data } => Ok(data),
                other => Err(unexpected_reply(&conn, &other)),
            };
        }
        Err(inner.all_failed(last_err))
    }

    /// Closes all connections; in-flight jobs end with `Error::Closed`.
    pub async fn close(&self) {
        self.inner.close("client closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_needs_a_server() {
        assert!(Client::new(ClientOptions {
            servers: vec![],
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn handles_and_futures_are_send() {
        fn send_sync<T: Send + Sync + Clone + 'static>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let c = Client::new(ClientOptions::default()).unwrap();
        send_sync(&c);
        send(c.submit("f", "x", SubmitOptions::default()));
        send(c.submit_job("f", "x", SubmitOptions::default()));
        send(c.submit_background("f", "x", SubmitOptions::default()));
        send(c.status("h"));
        send(c.status_unique("u"));
        send(c.echo("x"));
        send(c.close());
        fn job_is_send(j: RunningJob) {
            send(j.result());
        }
        let _ = job_is_send;
    }

    #[test]
    fn client_new_needs_no_runtime() {
        let c = Client::new(ClientOptions::default()).unwrap();
        assert_eq!(c.options().servers.len(), 1);
    }

    /// Empty function names and zero timeouts are refused by every submit
    /// path before a connection is even opened.
    #[tokio::test]
    async fn empty_functions_and_zero_timeouts_are_refused_before_io() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let c = Client::new(ClientOptions {
            servers: vec![ServerAddr::new("127.0.0.1", port)],
            ..Default::default()
        })
        .unwrap();
        let zero = || SubmitOptions {
            timeout: Some(Duration::ZERO),
            ..Default::default()
        };
        let epoch = SubmitOptions {
            epoch: Some(4_000_000_000),
            ..Default::default()
        };
        let refusals = [
            c.submit("", "x", SubmitOptions::default()).await.err(),
            c.submit_job("", "x", SubmitOptions::default()).await.err(),
            c.submit_background("", "x", SubmitOptions::default())
                .await
                .err(),
            c.submit_background("", "x", epoch).await.err(),
            c.submit("f", "x", zero()).await.err(),
            c.submit_job("f", "x", zero()).await.err(),
            c.submit_background("f", "x", zero()).await.err(),
        ];
        let messages: Vec<String> = refusals
            .iter()
            .map(|e| match e {
                Some(Error::InvalidArgument(m)) => m.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(&messages[..4], ["empty function name"; 4]);
        assert_eq!(&messages[4..], ["timeout must be greater than zero"; 3]);
        let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(accepted.is_err(), "nothing may be sent");
        assert!(matches!(
            Client::new(ClientOptions {
                job_timeout: Some(Duration::ZERO),
                ..Default::default()
            }),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[tokio::test]
    async fn an_unknown_host_is_a_not_found_connection_error() {
        let c = Client::new(ClientOptions {
            servers: vec![ServerAddr::new("nosuch.invalid", 4730)],
            ..Default::default()
        })
        .unwrap();
        let e = c.echo("x").await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Connection);
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::NotFound));
        assert!(
            e.to_string()
                .contains("could not resolve host 'nosuch.invalid': "),
            "{e}"
        );
    }

    #[tokio::test]
    async fn invalid_submission_fails_before_io() {
        // Port 9 (discard) on localhost is not contacted: validation comes first.
        let c = Client::new(ClientOptions {
            servers: vec![ServerAddr::new("127.0.0.1", 9)],
            ..Default::default()
        })
        .unwrap();
        let e = c
            .submit_background(
                "f",
                "x",
                SubmitOptions {
                    unique: Some(Bytes::from(vec![b'u'; 64])),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));
        c.close().await;
        assert!(matches!(c.echo("x").await, Err(Error::Closed(_))));
    }
}
