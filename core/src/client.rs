//! Async Gearman client: foreground and background jobs, status, echo.
//!
//! API CONTRACT (bindings and the CLI rely on these names and signatures).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::outbox::{settle, Outbox};
use crate::protocol::{atoi, Frame, Magic, Packet, PacketCodec, PacketType, Priority, HEADER_LEN};
use crate::servers::{route, ServerAddr};
use crate::{Error, Result};

/// Longest unique key accepted (gearmand stores 63 bytes plus a NUL).
const MAX_UNIQUE: usize = 63;
/// Longest job handle gearmand accepts in GET_STATUS.
const MAX_HANDLE: usize = 63;
/// How many background handles remember which server created them.
const HANDLE_MEMORY: usize = 16_384;
/// Handles whose local waiters all left are still tracked (the server keeps
/// sending their WORK_* packets once per attachment) until their final
/// packet, unless a connection tracks more jobs than this.
const MAX_TRACKED_JOBS: usize = 65_536;
/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;

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
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            servers: vec![ServerAddr::new("127.0.0.1", crate::DEFAULT_PORT)],
            connect_timeout: Duration::from_secs(5),
            submit_timeout: Duration::from_secs(30),
            job_timeout: None,
            client_id: None,
            exceptions: true,
            max_packet: crate::protocol::DEFAULT_MAX_PACKET,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
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
    slot: Arc<JobSlot>,
    conn: Arc<Conn>,
    deadline: Option<Instant>,
    done: bool,
    // Keeps the client (and so its connections) alive while the job runs.
    _client: Arc<Inner>,
}

impl RunningJob {
    /// The server-assigned job handle.
    pub fn handle(&self) -> &str {
        &self.handle
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
                        return Some(Err(Error::Timeout(format!(
                            "job {} did not finish in time",
                            self.handle
                        ))));
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
                JobEvent::Failed => {
                    return Err(Error::JobFailed {
                        handle: self.handle.clone(),
                    })
                }
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
    inner: Arc<Inner>,
}

impl Client {
    /// Creates a client; no I/O happens until the first call. Fails only
    /// on invalid options (e.g. no servers).
    pub fn new(options: ClientOptions) -> Result<Client> {
        if options.servers.is_empty() {
            return Err(Error::InvalidArgument("no job server configured".into()));
        }
        if let Some(id) = &options.client_id {
            if id.as_bytes().contains(&0) {
                return Err(Error::InvalidArgument(
                    "client id contains a NUL byte".into(),
                ));
            }
        }
        let slots = options
            .servers
            .iter()
            .map(|a| Slot {
                addr: a.clone(),
                name: a.to_string(),
                conn: Mutex::new(None),
                health: Mutex::new(Health::default()),
                connecting: tokio::sync::Mutex::new(()),
            })
            .collect();
        Ok(Client {
            inner: Arc::new(Inner {
                options,
                slots,
                rr: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                handles: Mutex::new(HandleMemory::default()),
            }),
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
                            JobEvent::Failed => Err(Error::JobFailed { handle: handle() }),
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
                            None => sub.created_timeout(function),
                            Some(k) => Error::Timeout(format!(
                                "job {} did not finish in time",
                                String::from_utf8_lossy(k)
                            )),
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
                return Err(e.unwrap_or_else(|| sub.created_timeout(function)));
            }
        };
        guard.done = true;
        drop(guard);
        Ok(RunningJob {
            handle: String::from_utf8_lossy(&key).into_owned(),
            key,
            slot: sub.slot,
            conn: sub.conn,
            deadline: sub.deadline,
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
        if opts.epoch.is_some() {
            return Err(Error::InvalidArgument(
                "epoch jobs are background jobs (use submit_background)".into(),
            ));
        }
        let start = Instant::now();
        let deadline = opts
            .timeout
            .or(inner.options.job_timeout)
            // A deadline beyond what Instant can hold means "no deadline".
            .and_then(|d| start.checked_add(d));
        let kind = PacketType::submit(opts.priority, false);
        let slot = Arc::new(JobSlot::default());
        if quiet_created {
            lock(&slot.st).quiet_created = true;
        }
        let (_, conn) = inner
            .send_routed(unique, |conn| {
                conn.enqueue(
                    |buf| encode_submit(buf, kind, function.as_bytes(), unique, None, &data),
                    Pending {
                        expect: Expect::Created,
                        waiter: Waiter::Job(slot.clone()),
                    },
                )
            })
            .await?;
        let submit_deadline = later(start, inner.options.submit_timeout);
        let created_deadline = match deadline {
            Some(d) if d < submit_deadline => d,
            _ => submit_deadline,
        };
        Ok(Submission {
            slot,
            conn,
            deadline,
            created_deadline,
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
            Some(when) => (PacketType::SubmitJobEpoch, Some(when.to_string())),
            None => (PacketType::submit(opts.priority, true), None),
        };
        let epoch_len = epoch.as_ref().map_or(0, |e| e.len() + 1);
        check_submit(function, unique, data.len(), epoch_len)?;
        let route_key: &[u8] = opts.unique.as_deref().unwrap_or(b"");
        let mut rx_slot = None;
        let (idx, conn) = inner
            .send_routed(route_key, |conn| {
                let (tx, rx) = oneshot::channel();
                conn.enqueue(
                    |buf| {
                        encode_submit(
                            buf,
                            kind,
                            function.as_bytes(),
                            unique,
                            epoch.as_deref().map(str::as_bytes),
                            &data,
                        )
                    },
                    Pending {
                        expect: Expect::Created,
                        waiter: Waiter::Reply(tx),
                    },
                )?;
                rx_slot = Some(rx);
                Ok(())
            })
            .await?;
        let rx = rx_slot.ok_or_else(|| Error::Closed("submission was not queued".into()))?;
        let reply = inner.wait_reply(&conn, rx, "SUBMIT_JOB_BG").await?;
        let handle = match reply {
            Packet::JobCreated { handle } => String::from_utf8_lossy(&handle).into_owned(),
            other => return Err(unexpected_reply(&conn, &other)),
        };
        if inner.slots.len() > 1 {
            lock(&inner.handles).remember(&handle, idx);
        }
        Ok(handle)
    }

    /// GET_STATUS of a handle this client (or another) created.
    pub async fn status(&self, handle: &str) -> Result<JobStatus> {
        let inner = &self.inner;
        if handle.len() > MAX_HANDLE || handle.as_bytes().contains(&0) {
            return Err(Error::InvalidArgument(format!(
                "job handle must be at most {MAX_HANDLE} bytes without NUL"
            )));
        }
        let packet = Packet::GetStatus {
            handle: Bytes::copy_from_slice(handle.as_bytes()),
        };
        let n = inner.slots.len();
        let known_server = if n == 1 {
            Some(0)
        } else {
            lock(&inner.handles).get(handle)
        };
        if let Some(i) = known_server {
            let reply = inner.request(i, &packet, Expect::Status).await?;
            return status_from(reply, &inner.slots[i].name);
        }
        let mut unknown = None;
        let mut last_err = None;
        for i in 0..n {
            match inner.request(i, &packet, Expect::Status).await {
                Ok(reply) => {
                    let st = status_from(reply, &inner.slots[i].name)?;
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
        for i in 0..inner.slots.len() {
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

/// A queued foreground SUBMIT.
struct Submission {
    slot: Arc<JobSlot>,
    conn: Arc<Conn>,
    /// Whole-job deadline.
    deadline: Option<Instant>,
    /// Deadline for JOB_CREATED.
    created_deadline: Instant,
}

impl Submission {
    fn created_timeout(&self, function: &str) -> Error {
        Error::Timeout(format!(
            "no JOB_CREATED from {} for function {function:?}",
            self.conn.addr
        ))
    }
}

/// Cleans up after `Client::submit` however it ends (including when its
/// future is dropped): no per-job state outlives the call.
struct SubmitGuard<'a> {
    sub: &'a Submission,
    key: Option<Bytes>,
    done: bool,
}

impl Drop for SubmitGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        match &self.key {
            Some(k) => self.sub.conn.detach(k, &self.sub.slot),
            None => self.sub.slot.abandon(&self.sub.conn),
        }
    }
}

// ---------------------------------------------------------------------------
// Client internals

struct Inner {
    options: ClientOptions,
    slots: Vec<Slot>,
    rr: AtomicUsize,
    closed: AtomicBool,
    handles: Mutex<HandleMemory>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.options.servers)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close("client dropped");
    }
}

/// One configured server: its live connection (if any) and reconnect backoff.
struct Slot {
    addr: ServerAddr,
    name: String,
    conn: Mutex<Option<Arc<Conn>>>,
    health: Mutex<Health>,
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Health {
    backoff: Duration,
    retry_at: Option<Instant>,
    last_error: String,
}

impl Slot {
    fn live(&self) -> Option<Arc<Conn>> {
        let c = {
            let g = lock(&self.conn);
            match &*g {
                Some(c) if c.alive.load(Ordering::Acquire) => c.clone(),
                _ => return None,
            }
        };
        if c.closed_while_undriven() {
            c.fail(Dead::Lost("closed by the server".into()));
            return None;
        }
        Some(c)
    }

    fn check_backoff(&self) -> Result<()> {
        let h = lock(&self.health);
        if let Some(at) = h.retry_at {
            let now = Instant::now();
            if at > now {
                return Err(Error::Connect {
                    addr: self.name.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        format!(
                            "{} (next attempt in {} ms)",
                            h.last_error,
                            (at - now).as_millis()
                        ),
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Bounded map of background handles to the index of the server that created them.
#[derive(Default)]
struct HandleMemory {
    map: HashMap<String, usize>,
    order: VecDeque<String>,
}

impl HandleMemory {
    fn remember(&mut self, handle: &str, idx: usize) {
        if self.map.insert(handle.to_owned(), idx).is_none() {
            self.order.push_back(handle.to_owned());
            while self.order.len() > HANDLE_MEMORY {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    fn get(&self, handle: &str) -> Option<usize> {
        self.map.get(handle).copied()
    }
}

impl Inner {
    fn close(&self, why: &str) {
        self.closed.store(true, Ordering::SeqCst);
        for slot in &self.slots {
            let conn = lock(&slot.conn).take();
            if let Some(c) = conn {
                c.fail(Dead::Closed(why.to_owned()));
            }
        }
    }

    fn closed_error() -> Error {
        Error::Closed("client closed".into())
    }

    /// Server indices to try for a key: hashed order for a unique, round-robin otherwise.
    fn order(&self, key: &[u8]) -> impl Iterator<Item = usize> {
        let n = self.slots.len();
        let start = if n <= 1 {
            0
        } else if key.is_empty() {
            self.rr.fetch_add(1, Ordering::Relaxed) % n
        } else {
            route(key, n).next().unwrap_or(0)
        };
        (0..n).map(move |i| (start + i) % n)
    }

    fn all_failed(&self, last: Option<Error>) -> Error {
        if self.closed.load(Ordering::SeqCst) {
            return Self::closed_error();
        }
        match last {
            Some(e) if self.slots.len() == 1 => e,
            Some(e) => Error::NoServer(e.to_string()),
            None => Error::NoServer("no server configured".into()),
        }
    }

    /// The live connection to server `i`, connecting if needed (respecting backoff).
    async fn conn(&self, i: usize) -> Result<Arc<Conn>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Self::closed_error());
        }
        let slot = &self.slots[i];
        if let Some(c) = slot.live() {
            return Ok(c);
        }
        slot.check_backoff()?;
        let _guard = slot.connecting.lock().await;
        if let Some(c) = slot.live() {
            return Ok(c);
        }
        slot.check_backoff()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::InvalidArgument(
                "polygear::Client must be used inside a tokio runtime".into(),
            ));
        }
        match slot.addr.connect(self.options.connect_timeout).await {
            Ok(stream) => {
                let conn = Conn::start(stream, slot.name.clone(), &self.options);
                let mut g = lock(&slot.conn);
                if self.closed.load(Ordering::SeqCst) {
                    drop(g);
                    conn.fail(Dead::Closed("client closed".into()));
                    return Err(Self::closed_error());
                }
                *g = Some(conn.clone());
                drop(g);
                let mut h = lock(&slot.health);
                h.backoff = Duration::ZERO;
                h.retry_at = None;
                tracing::debug!(server = %slot.name, "gearman client connected");
                Ok(conn)
            }
            Err(e) => {
                let mut h = lock(&slot.health);
                let min = self.options.min_backoff;
                let max = self.options.max_backoff.max(min);
                h.backoff = if h.backoff.is_zero() {
                    min
                } else {
                    h.backoff.saturating_mul(2).min(max)
                };
                h.retry_at = Some(later(Instant::now(), h.backoff));
                h.last_error = match &e {
                    Error::Connect { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                tracing::debug!(server = %slot.name, error = %e, "gearman client connect failed");
                Err(e)
            }
        }
    }

    /// Queues a request on the first reachable server in the key's order;
    /// `send` returns an error when the connection died meanwhile (then the next one is tried).
    async fn send_routed<F>(&self, key: &[u8], mut send: F) -> Result<(usize, Arc<Conn>)>
    where
        F: FnMut(&Conn) -> Result<()>,
    {
        let mut last_err = None;
        for i in self.order(key) {
            let conn = match self.conn(i).await {
                Ok(c) => c,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            match send(&conn) {
                Ok(()) => return Ok((i, conn)),
                Err(e) => last_err = Some(e),
            }
        }
        Err(self.all_failed(last_err))
    }

    async fn request(&self, i: usize, packet: &Packet, expect: Expect) -> Result<Packet> {
        let conn = self.conn(i).await?;
        self.request_on(&conn, packet, expect).await
    }

    async fn request_on(&self, conn: &Conn, packet: &Packet, expect: Expect) -> Result<Packet> {
        let (tx, rx) = oneshot::channel();
        let mut enc_err = None;
        conn.enqueue(
            |buf| {
                if let Err(e) = packet.encode(Magic::Req, buf) {
                    enc_err = Some(e);
                }
            },
            Pending {
                expect,
                waiter: Waiter::Reply(tx),
            },
        )?;
        if let Some(e) = enc_err {
            // Nothing was written (encode checks the size first); the pending
            // entry would desynchronise the FIFO, so drop the connection.
            conn.fail(Dead::Lost("unencodable request".into()));
            return Err(e.into());
        }
        self.wait_reply(conn, rx, packet.packet_type().name()).await
    }

    async fn wait_reply(
        &self,
        conn: &Conn,
        rx: oneshot::Receiver<Result<Packet>>,
        what: &str,
    ) -> Result<Packet> {
        match tokio::time::timeout(self.options.submit_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::ConnectionLost {
                addr: conn.addr.clone(),
                reason: "connection closed before the reply".into(),
            }),
            Err(_) => Err(Error::Timeout(format!(
                "no reply to {what} from {} within {:?}",
                conn.addr, self.options.submit_timeout
            ))),
        }
    }
}

fn unexpected_reply(conn: &Conn, p: &Packet) -> Error {
    Error::ConnectionLost {
        addr: conn.addr.clone(),
        reason: format!("unexpected reply {}", p.packet_type().name()),
    }
}

fn status_from(reply: Packet, addr: &str) -> Result<JobStatus> {
    match reply {
        Packet::StatusRes {
            handle,
            known,
            running,
            numerator,
            denominator,
        } => Ok(JobStatus {
            handle: String::from_utf8_lossy(&handle).into_owned(),
            known,
            running,
            numerator,
            denominator,
            client_count: None,
        }),
        Packet::StatusResUnique {
            unique,
            known,
            running,
            numerator,
            denominator,
            client_count,
        } => Ok(JobStatus {
            handle: String::from_utf8_lossy(&unique).into_owned(),
            known,
            running,
            numerator,
            denominator,
            client_count: Some(client_count),
        }),
        other => Err(Error::ConnectionLost {
            addr: addr.to_owned(),
            reason: format!("unexpected reply {}", other.packet_type().name()),
        }),
    }
}

fn check_unique(unique: &[u8]) -> Result<()> {
    if unique.len() > MAX_UNIQUE {
        return Err(Error::InvalidArgument(format!(
            "unique key is {} bytes, at most {MAX_UNIQUE} allowed",
            unique.len()
        )));
    }
    if unique.contains(&0) {
        return Err(Error::InvalidArgument(
            "unique key contains a NUL byte".into(),
        ));
    }
    Ok(())
}

fn check_submit(function: &str, unique: &[u8], data_len: usize, extra: usize) -> Result<()> {
    if function.as_bytes().contains(&0) {
        return Err(Error::InvalidArgument(
            "function name contains a NUL byte".into(),
        ));
    }
    check_unique(unique)?;
    let size = function.len() + unique.len() + 2 + extra + data_len;
    if size > u32::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "job of {size} bytes exceeds the 4 GiB packet limit"
        )));
    }
    Ok(())
}

/// Writes a SUBMIT_* packet straight into the connection's write buffer.
fn encode_submit(
    buf: &mut BytesMut,
    kind: PacketType,
    function: &[u8],
    unique: &[u8],
    epoch: Option<&[u8]>,
    data: &[u8],
) {
    let size =
        function.len() + 1 + unique.len() + 1 + epoch.map_or(0, |e| e.len() + 1) + data.len();
    buf.reserve(HEADER_LEN + size);
    buf.put_slice(&Magic::Req.bytes());
    buf.put_u32(kind as u32);
    buf.put_u32(size as u32);
    buf.put_slice(function);
    buf.put_u8(0);
    buf.put_slice(unique);
    buf.put_u8(0);
    if let Some(e) = epoch {
        buf.put_slice(e);
        buf.put_u8(0);
    }
    buf.put_slice(data);
}

/// A random RFC 4122 version-4 style UUID in its 36-character text form.
fn generate_unique() -> [u8; 36] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // RandomState is keyed with per-process random secrets.
    let state = std::collections::hash_map::RandomState::new();
    let mut h = state.build_hasher();
    h.write_u64(count);
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    let a = h.finish();
    let mut h = state.build_hasher();
    h.write_u64(a);
    h.write_u64(count.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15);
    let b = h.finish();
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&a.to_be_bytes());
    raw[8..].copy_from_slice(&b.to_be_bytes());
    raw[6] = (raw[6] & 0x0f) | 0x40;
    raw[8] = (raw[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 36];
    let mut o = 0;
    for (i, byte) in raw.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            o += 1;
        }
        out[o] = HEX[(byte >> 4) as usize];
        out[o + 1] = HEX[(byte & 0xf) as usize];
        o += 2;
    }
    out
}

/// `at + d`, saturating at a far-future instant instead of panicking on
/// huge durations (e.g. a timeout of `Duration::MAX`).
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or_else(|| at + Duration::from_secs(100 * 365 * 24 * 3600))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// Per-job state shared between the connection reader and a RunningJob

#[derive(Default)]
struct JobSlot {
    st: Mutex<JobSt>,
    notify: Notify,
}

#[derive(Default)]
struct JobSt {
    /// Reply to the SUBMIT: the handle, or the server's ERROR.
    created: Option<Result<Bytes>>,
    /// Events not yet read.
    events: VecDeque<JobEvent>,
    /// Terminal failure (connection lost, client closed).
    error: Option<Error>,
    /// The submitter gave up before JOB_CREATED (timeout or cancellation):
    /// a late JOB_CREATED must not register a waiter nobody reads.
    abandoned: bool,
    /// Do not wake the submitter for JOB_CREATED (it waits for the result anyway).
    quiet_created: bool,
}

impl fmt::Debug for JobSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.st);
        f.debug_struct("JobSlot")
            .field("queued_events", &st.events.len())
            .field("failed", &st.error.is_some())
            .finish()
    }
}

impl JobSlot {
    fn push(&self, ev: JobEvent) {
        lock(&self.st).events.push_back(ev);
        self.notify.notify_one();
    }

    /// Records the reply to the SUBMIT; false if the submitter abandoned it.
    fn set_created(&self, r: Result<Bytes>) -> bool {
        let mut st = lock(&self.st);
        if st.abandoned {
            return false;
        }
        let quiet = st.quiet_created && r.is_ok();
        st.created = Some(r);
        drop(st);
        if !quiet {
            self.notify.notify_one();
        }
        true
    }

    /// Gives up on a submission whose JOB_CREATED has not been consumed;
    /// detaches it if the reply arrived meanwhile.
    fn abandon(self: &Arc<Self>, conn: &Conn) {
        let late = {
            let mut st = lock(&self.st);
            st.abandoned = true;
            st.created.take()
        };
        if let Some(Ok(key)) = late {
            conn.detach(&key, self);
        }
    }

    fn fail(&self, e: Error) {
        lock(&self.st).error.get_or_insert(e);
        self.notify.notify_one();
    }

    /// Waits for JOB_CREATED; `Err(None)` means the deadline passed.
    async fn wait_created(&self, deadline: Instant) -> Result<Bytes, Option<Error>> {
        loop {
            let notified = self.notify.notified();
            {
                let mut st = lock(&self.st);
                if let Some(r) = st.created.take() {
                    return r.map_err(Some);
                }
                if let Some(e) = st.error.take() {
                    return Err(Some(e));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(None);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// One connection to one server: a writer task draining a shared buffer and a
// reader task dispatching replies (FIFO) and WORK_* packets (by handle).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Created,
    Status,
    StatusUnique,
    Echo,
    Option,
}

enum Waiter {
    /// A foreground submission: registered under its handle on JOB_CREATED.
    Job(Arc<JobSlot>),
    /// Any other request: gets the reply packet.
    Reply(oneshot::Sender<Result<Packet>>),
    /// Fire and forget (OPTION_REQ after connect; an ERROR reply is tolerated).
    Nobody,
}

impl Waiter {
    fn fail(self, e: Error) {
        match self {
            Waiter::Job(slot) => slot.fail(e),
            Waiter::Reply(tx) => {
                let _ = tx.send(Err(e));
            }
            Waiter::Nobody => {}
        }
    }
}

struct Pending {
    expect: Expect,
    waiter: Waiter,
}

/// Local waiters of one handle on one connection.
struct Attached {
    waiters: Vec<Arc<JobSlot>>,
    /// Foreground attachments the server counts for this connection: it sends
    /// every WORK_* packet this many times in a row.
    attached: u32,
    /// Copies of the current packet still to skip.
    skip: u32,
}

enum Dead {
    Lost(String),
    Closed(String),
}

impl Dead {
    fn error(&self, addr: &str) -> Error {
        match self {
            Dead::Lost(reason) => Error::ConnectionLost {
                addr: addr.to_owned(),
                reason: reason.clone(),
            },
            Dead::Closed(why) => Error::Closed(why.clone()),
        }
    }
}

struct Shared {
    /// The socket's write side (direct writes; the writer task when full).
    out: Outbox,
    pending: VecDeque<Pending>,
    jobs: HashMap<Bytes, Attached>,
    dead: bool,
}

struct Conn {
    addr: String,
    alive: AtomicBool,
    shared: Mutex<Shared>,
    wake_writer: Notify,
    /// The reader and writer tasks, aborted when the connection dies (a
    /// writer waiting on a full socket must not keep it open).
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("addr", &self.addr)
            .field("alive", &self.alive.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Wraps a connected stream, queues the handshake and spawns the I/O tasks.
    fn start(stream: TcpStream, addr: String, options: &ClientOptions) -> Arc<Conn> {
        let (rd, wr) = stream.into_split();
        let mut wbuf = BytesMut::with_capacity(8 * 1024);
        let mut pending = VecDeque::new();
        if let Some(id) = &options.client_id {
            let _ = Packet::SetClientId {
                id: Bytes::copy_from_slice(id.as_bytes()),
            }
            .encode(Magic::Req, &mut wbuf);
        }
        if options.exceptions {
            let _ = Packet::OptionReq {
                name: Bytes::from_static(b"exceptions"),
            }
            .encode(Magic::Req, &mut wbuf);
            pending.push_back(Pending {
                expect: Expect::Option,
                waiter: Waiter::Nobody,
            });
        }
        let conn = Arc::new(Conn {
            addr,
            alive: AtomicBool::new(true),
            shared: Mutex::new(Shared {
                // The writer task sends the handshake.
                out: Outbox::new(wr, wbuf),
                pending,
                jobs: HashMap::new(),
                dead: false,
            }),
            wake_writer: Notify::new(),
            tasks: Mutex::new(Vec::with_capacity(2)),
        });
        let writer = tokio::spawn(write_loop(conn.clone()));
        let reader = tokio::spawn(read_loop(conn.clone(), rd, options.max_packet));
        {
            let mut tasks = lock(&conn.tasks);
            tasks.push(writer.abort_handle());
            tasks.push(reader.abort_handle());
        }
        if !conn.alive.load(Ordering::Acquire) {
            writer.abort();
            reader.abort();
        }
        conn.wake_writer.notify_one();
        conn
    }

    /// On a current-thread runtime (driven only while a caller waits) an
    /// idle connection's reader may not have seen the server go away: peek
    /// at the socket, so a restarted server costs a reconnect, not a failed
    /// request. Multi-thread runtimes notice at once and skip this.
    fn closed_while_undriven(&self) -> bool {
        let undriven = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        if !undriven {
            return false;
        }
        // A connection somebody is using right now is not idle: its reader
        // notices a close itself (and waiting for the lock would cost more).
        let sh = match self.shared.try_lock() {
            Ok(sh) => sh,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        sh.pending.is_empty() && sh.out.peer_closed()
    }

    /// Appends a request and its reply expectation atomically (so the FIFO order matches the wire).
    fn enqueue(&self, write: impl FnOnce(&mut BytesMut), pending: Pending) -> Result<()> {
        let mut sh = lock(&self.shared);
        if sh.dead {
            return Err(Error::ConnectionLost {
                addr: self.addr.clone(),
                reason: "connection closed".into(),
            });
        }
        sh.pending.push_back(pending);
        let pushed = sh.out.push(write);
        drop(sh);
        match settle(pushed, || lock(&self.shared), |sh: &mut Shared| &mut sh.out) {
            Ok(false) => {}
            Ok(true) => self.wake_writer.notify_one(),
            // The pending entry just queued is failed with the rest.
            Err(e) => self.fail(Dead::Lost(format!("write failed: {e}"))),
        }
        Ok(())
    }

    /// Stops delivering events of `key` to `slot` (job dropped or timed out).
    ///
    /// The entry itself stays until the job's final packet: the server still
    /// sends each packet once per attachment of this connection, and a later
    /// coalesced submission must skip those copies.
    fn detach(&self, key: &[u8], slot: &Arc<JobSlot>) {
        let mut sh = lock(&self.shared);
        let many = sh.jobs.len() > MAX_TRACKED_JOBS;
        if let Some(a) = sh.jobs.get_mut(key) {
            a.waiters.retain(|w| !Arc::ptr_eq(w, slot));
            if a.waiters.is_empty() && many {
                sh.jobs.remove(key);
            }
        }
    }

    /// Marks the connection dead and fails everything waiting on it (idempotent).
    fn fail(&self, dead: Dead) {
        let (pending, jobs) = {
            let mut sh = lock(&self.shared);
            if sh.dead {
                return;
            }
            sh.dead = true;
            self.alive.store(false, Ordering::Release);
            sh.out.close();
            (
                std::mem::take(&mut sh.pending),
                std::mem::take(&mut sh.jobs),
            )
        };
        if let Dead::Lost(reason) = &dead {
            tracing::debug!(server = %self.addr, %reason, "gearman client connection lost");
        }
        for p in pending {
            p.waiter.fail(dead.error(&self.addr));
        }
        for (_, a) in jobs {
            for w in a.waiters {
                w.fail(dead.error(&self.addr));
            }
        }
        self.wake_writer.notify_one();
        for h in std::mem::take(&mut *lock(&self.tasks)) {
            h.abort();
        }
    }

    fn pop(&self, sh: &mut Shared, expect: Expect, name: &str) -> Result<Pending, String> {
        match sh.pending.pop_front() {
            Some(p) if p.expect == expect => Ok(p),
            Some(p) => {
                let want = p.expect;
                sh.pending.push_front(p);
                Err(format!(
                    "got {name} while waiting for the reply to a {want:?} request"
                ))
            }
            None => Err(format!("unsolicited {name}")),
        }
    }

    fn reply(&self, sh: &mut Shared, expect: Expect, p: Packet) -> Result<(), String> {
        let pd = self.pop(sh, expect, p.packet_type().name())?;
        match pd.waiter {
            Waiter::Reply(tx) => {
                let _ = tx.send(Ok(p));
            }
            Waiter::Job(slot) => slot.fail(Error::ConnectionLost {
                addr: self.addr.clone(),
                reason: "reply out of order".into(),
            }),
            Waiter::Nobody => {}
        }
        Ok(())
    }

    /// Handles one packet from the server (called by the reader with the lock held).
    fn dispatch(&self, sh: &mut Shared, p: Packet) -> Result<(), String> {
        match p {
            Packet::JobCreated { handle } => {
                let pd = self.pop(sh, Expect::Created, "JOB_CREATED")?;
                match pd.waiter {
                    Waiter::Job(slot) => {
                        // Copy: the handle outlives the read buffer it was sliced from.
                        let key = Bytes::copy_from_slice(&handle);
                        // Decided under the slot's lock, so a submitter that
                        // gives up concurrently either sees the handle (and
                        // detaches) or is never registered.
                        let listening = slot.set_created(Ok(key.clone()));
                        let room = sh.jobs.len() < MAX_TRACKED_JOBS;
                        match sh.jobs.get_mut(&key[..]) {
                            Some(a) => {
                                a.attached += 1;
                                if listening {
                                    a.waiters.push(slot);
                                }
                            }
                            None if listening || room => {
                                sh.jobs.insert(
                                    key,
                                    Attached {
                                        waiters: if listening { vec![slot] } else { Vec::new() },
                                        attached: 1,
                                        skip: 0,
                                    },
                                );
                            }
                            None => {}
                        }
                    }
                    Waiter::Reply(tx) => {
                        let _ = tx.send(Ok(Packet::JobCreated { handle }));
                    }
                    Waiter::Nobody => {}
                }
            }
            Packet::Error { code, text } => match sh.pending.pop_front() {
                Some(pd) => {
                    let err = Error::server(&code, &text);
                    match pd.waiter {
                        Waiter::Job(slot) => {
                            slot.set_created(Err(err));
                        }
                        w => w.fail(err),
                    }
                }
                None => tracing::debug!(
                    server = %self.addr,
                    code = %String::from_utf8_lossy(&code),
                    text = %String::from_utf8_lossy(&text),
                    "unsolicited ERROR"
                ),
            },
            p @ Packet::StatusRes { .. } => self.reply(sh, Expect::Status, p)?,
            p @ Packet::StatusResUnique { .. } => self.reply(sh, Expect::StatusUnique, p)?,
            p @ Packet::EchoRes { .. } => self.reply(sh, Expect::Echo, p)?,
            p @ Packet::OptionRes { .. } => self.reply(sh, Expect::Option, p)?,
            Packet::WorkData { handle, data } => route_event(sh, &handle, JobEvent::Data(data)),
            Packet::WorkWarning { handle, data } => {
                route_event(sh, &handle, JobEvent::Warning(data))
            }
            Packet::WorkStatus {
                handle,
                numerator,
                denominator,
            } => route_event(
                sh,
                &handle,
                JobEvent::Status {
                    numerator: atoi(&numerator).clamp(0, u32::MAX as i64) as u32,
                    denominator: atoi(&denominator).clamp(0, u32::MAX as i64) as u32,
                },
            ),
            Packet::WorkComplete { handle, data } => {
                route_event(sh, &handle, JobEvent::Complete(data))
            }
            Packet::WorkFail { handle } => route_event(sh, &handle, JobEvent::Failed),
            Packet::WorkException { handle, data } => {
                route_event(sh, &handle, JobEvent::Exception(data))
            }
            Packet::Noop => {}
            other => {
                tracing::debug!(server = %self.addr, packet = other.packet_type().name(), "ignored packet");
            }
        }
        Ok(())
    }
}

/// Delivers a WORK_* event to every local waiter of `handle`; drops the
/// per-job state after the final event.
fn route_event(sh: &mut Shared, handle: &[u8], ev: JobEvent) {
    let Some(a) = sh.jobs.get_mut(handle) else {
        return;
    };
    if a.skip > 0 {
        // The same packet again, for another attachment of this connection.
        a.skip -= 1;
        return;
    }
    a.skip = a.attached.saturating_sub(1);
    if ev.is_final() {
        if let Some(a) = sh.jobs.remove(handle) {
            deliver(&a.waiters, ev);
        }
    } else {
        deliver(&a.waiters, ev);
    }
}

fn deliver(waiters: &[Arc<JobSlot>], ev: JobEvent) {
    if let Some((last, rest)) = waiters.split_last() {
        for w in rest {
            w.push(ev.clone());
        }
        last.push(ev);
    }
}

/// Marks the connection dead when an I/O task ends for any reason, including
/// being dropped by a runtime that shuts down, so no caller waits on a
/// connection nobody serves.
struct DeadOnDrop(Arc<Conn>);

impl Drop for DeadOnDrop {
    fn drop(&mut self) {
        self.0.fail(Dead::Lost("connection task stopped".into()));
    }
}

/// Flushes the write buffer whenever a direct write found the socket full.
async fn write_loop(conn: Arc<Conn>) {
    let _guard = DeadOnDrop(conn.clone());
    loop {
        conn.wake_writer.notified().await;
        loop {
            let wr = {
                let mut sh = lock(&conn.shared);
                if sh.dead {
                    return;
                }
                if !sh.out.flushing() {
                    break;
                }
                match sh.out.flush_step() {
                    Ok(None) => break,
                    Ok(Some(wr)) => wr,
                    Err(e) => {
                        drop(sh);
                        conn.fail(Dead::Lost(format!("write failed: {e}")));
                        return;
                    }
                }
            };
            if let Err(e) = wr.writable().await {
                conn.fail(Dead::Lost(format!("write failed: {e}")));
                return;
            }
        }
    }
}

async fn read_loop(conn: Arc<Conn>, mut rd: OwnedReadHalf, max_packet: usize) {
    let _guard = DeadOnDrop(conn.clone());
    let mut codec = PacketCodec::new(max_packet);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let reason = loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => break "closed by the server".to_string(),
            Ok(_) => {}
            Err(e) => break format!("read failed: {e}"),
        }
        let mut sh = lock(&conn.shared);
        if sh.dead {
            return;
        }
        loop {
            match codec.decode_frame(&mut buf) {
                Ok(Some(Frame::Packet(_, p))) => {
                    if let Err(reason) = conn.dispatch(&mut sh, p) {
                        drop(sh);
                        conn.fail(Dead::Lost(format!("protocol error: {reason}")));
                        return;
                    }
                }
                Ok(Some(Frame::Text(_))) => {}
                Ok(None) => break,
                Err(e) => {
                    drop(sh);
                    conn.fail(Dead::Lost(format!("protocol error: {e}")));
                    return;
                }
            }
        }
    };
    conn.fail(Dead::Lost(reason));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_unique_looks_like_a_uuid() {
        let a = generate_unique();
        let b = generate_unique();
        assert_ne!(a, b);
        let s = std::str::from_utf8(&a).unwrap();
        assert_eq!(s.len(), 36);
        let parts: Vec<_> = s.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12]);
        assert_eq!(&s[14..15], "4");
        assert!(s.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }

    #[test]
    fn submit_encoding_matches_the_packet_codec() {
        let mut buf = BytesMut::new();
        encode_submit(
            &mut buf,
            PacketType::SubmitJobHigh,
            b"f",
            b"u",
            None,
            b"d\0x",
        );
        let expected = Packet::SubmitJob {
            function: Bytes::from_static(b"f"),
            unique: Bytes::from_static(b"u"),
            data: Bytes::from_static(b"d\0x"),
            priority: Priority::High,
            background: false,
        }
        .to_bytes(Magic::Req)
        .unwrap();
        assert_eq!(&buf[..], &expected[..]);
        let mut buf = BytesMut::new();
        encode_submit(
            &mut buf,
            PacketType::SubmitJobEpoch,
            b"f",
            b"u",
            Some(b"123"),
            b"d",
        );
        let expected = Packet::SubmitJobEpoch {
            function: Bytes::from_static(b"f"),
            unique: Bytes::from_static(b"u"),
            when: 123,
            data: Bytes::from_static(b"d"),
        }
        .to_bytes(Magic::Req)
        .unwrap();
        assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn invalid_arguments_are_rejected() {
        assert!(check_submit("f\0", b"", 0, 0).is_err());
        assert!(check_submit("", b"", 0, 0).is_ok());
        assert!(check_unique(&[b'a'; 63]).is_ok());
        assert!(matches!(
            check_unique(&[b'a'; 64]),
            Err(Error::InvalidArgument(_))
        ));
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
