//! polygear-server: the job server library behind `polygeard`.
//!
//! A gearmand-compatible Gearman job server that can run inside another
//! program (tests, language bindings) on an ephemeral port:
//!
//! ```no_run
//! use polygear_server::{BackgroundServer, ServerConfig};
//! let server = BackgroundServer::start(ServerConfig::default()).unwrap();
//! println!("listening on {}", server.local_addr());
//! server.stop();
//! ```
#![warn(missing_docs)]

mod admin;
mod budget;
mod conn;
#[cfg(feature = "http")]
mod http;
mod index;
mod outbox;
mod queue;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod sim;
mod state;
// What the HTTP front end reads (snapshots, histograms, actions) is unused without it.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
mod stats;
#[cfg(all(test, feature = "http"))]
mod stats_tests;
#[cfg_attr(not(feature = "http"), allow(dead_code))] // the HTTP port's acceptor
mod tls;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::TcpSocket;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use admin::VERSION;
pub use polygear::RetryPolicy;
pub use state::parse_retry_flag;
pub use state::periodic::{ScheduleError, ScheduleSpec};
pub use tls::TlsConfig;

/// Where background jobs are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum QueueConfig {
    /// In memory only (gearmand's `builtin`): lost when the server stops.
    #[default]
    Memory,
    /// Durable SQLite database: every background job is fsync'd before it
    /// is acknowledged and reloaded on start.
    Sqlite {
        /// Database file (created if missing).
        path: PathBuf,
    },
    /// PostgreSQL table in gearmand's layout (`-q postgres`).
    Postgres {
        /// libpq connection string (`host=... port=... user=... dbname=...`).
        conninfo: String,
        /// Table name (gearmand's default: `queue`).
        table: String,
        /// Sharing the table with other servers (`None`: this server alone).
        lease: Option<Lease>,
    },
    /// MySQL/MariaDB table in gearmand's layout (`-q mysql`).
    Mysql {
        /// Server host name or address.
        host: String,
        /// TCP port.
        port: u16,
        /// User name.
        user: String,
        /// Password (empty: none).
        password: String,
        /// Database.
        db: String,
        /// Table name (gearmand's default: `gearman_queue`).
        table: String,
        /// Sharing the table with other servers (`None`: this server alone).
        lease: Option<Lease>,
    },
    /// Redis, one hash per job in gearmand's key layout (`-q redis`).
    Redis {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
        /// `AUTH` password (empty: none).
        password: String,
        /// Key prefix (gearmand's default: `_gear_`).
        prefix: String,
    },
    /// memcached (`-q libmemcached`): not durable across a memcached restart.
    Memcached {
        /// Comma-separated `host[:port]` list.
        servers: String,
        /// Key prefix (gearmand's default: `gear_`).
        prefix: String,
    },
}

impl QueueConfig {
    /// The lease of a queue shared with other servers, if any.
    pub fn lease(&self) -> Option<&Lease> {
        match self {
            QueueConfig::Postgres { lease, .. } | QueueConfig::Mysql { lease, .. } => {
                lease.as_ref()
            }
            _ => None,
        }
    }
}

/// How servers sharing one SQL queue table take over each other's jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// This server's name in the table (unique among the sharing servers).
    pub server_id: String,
    /// How long a server's claim on its jobs lasts without renewal; a dead
    /// server's jobs are taken over after it.
    pub duration: Duration,
}

impl Lease {
    /// Until when a lease renewed by a request sent at `sent` may be relied
    /// on here: the database counts the lease from when it got the request,
    /// later than `sent`; a tenth is kept back against clock drift.
    pub(crate) fn held_from(&self, sent: std::time::Instant) -> std::time::Instant {
        sent + self.duration - self.duration / 10
    }
}

/// Longest [`ServerConfig::grab_wait`] accepted.
pub const MAX_GRAB_WAIT: Duration = Duration::from_secs(1);

/// Server settings. `Default` gives an in-memory server on 127.0.0.1 with
/// an ephemeral port.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind (`0.0.0.0` for all interfaces).
    pub listen: String,
    /// TCP port; 0 picks a free one.
    pub port: u16,
    /// Port of the HTTP front end on the same address (`-r http`,
    /// `--http-port`; 0 picks a free one); `None`: no HTTP.
    pub http_port: Option<u16>,
    /// listen() backlog.
    pub backlog: u32,
    /// Background job storage.
    pub queue: QueueConfig,
    /// Total assignments a job may lose to vanished workers before it
    /// fails (gearmand 1.1 semantics); 0 = unlimited.
    pub job_retries: u32,
    /// NOOPs sent per queued job to sleeping workers; 0 = all of them.
    pub worker_wakeup: usize,
    /// Accepted for gearmand compatibility: dispatch always rotates across a
    /// worker's functions (gearmand 2.0 behaviour).
    pub round_robin: bool,
    /// Handle prefix replacing `H:<hostname>` (handles become `PREFIX:N`).
    pub job_handle_prefix: Option<String>,
    /// Largest accepted packet payload in bytes.
    pub max_packet: usize,
    /// Longest accepted admin text line in bytes.
    pub max_line: usize,
    /// Unsent output above which a connection is dropped (slow reader).
    pub max_output: usize,
    /// Memory for all connections' unsent output and unparsed input
    /// together; above it the connections holding the most are dropped.
    pub max_buffered: usize,
    /// Functions one connection may register (0 = no limit).
    pub max_worker_functions: usize,
    /// Idle functions (no job, no worker) kept listed by `status`; the
    /// longest idle are forgotten beyond it (0 = keep all, like gearmand).
    pub max_idle_functions: usize,
    /// Enables the admin `shutdown [graceful]` command.
    pub allow_shutdown: bool,
    /// Every connection starts with the `exceptions` option on.
    pub exceptions: bool,
    /// SO_KEEPALIVE on accepted connections.
    pub keepalive: bool,
    /// Log level name reported by the admin `verbose` command.
    pub verbose: String,
    /// How long a worker's GRAB_JOB* that finds no job waits for one
    /// before NO_JOB (a job submitted meanwhile is assigned at once,
    /// saving the NOOP and the second GRAB); zero answers at once, like
    /// gearmand. Any other request from the worker ends the wait first.
    /// At most [`MAX_GRAB_WAIT`].
    pub grab_wait: Duration,
    /// On a CAN_DO_TIMEOUT expiry, requeue the job (gearmand, counted by
    /// `job_retries`) instead of failing it back to its clients (default).
    pub timeout_requeue: bool,
    /// TLS on every port (gearmand's `--ssl`); `None`: plain TCP.
    pub tls: Option<TlsConfig>,
    /// Token the dashboard's actions (cancel a job, drop a function) require
    /// as `Authorization: Bearer <token>`; `None`: actions only over mutual TLS.
    pub admin_token: Option<String>,
    /// Per-function retention of background results in seconds
    /// (`--retain FUNCTION=SECONDS`; polygear extension).
    pub retain: Vec<(String, u32)>,
    /// Per-function unique windows in seconds (`--unique-window FUNCTION=SECONDS`).
    pub unique_windows: Vec<(String, u32)>,
    /// Most bytes of retained results kept in memory (`--retain-max-bytes`);
    /// beyond it the entries closest to expiry are dropped.
    pub retain_max_bytes: usize,
    /// Retry policies of functions at start (`--retry`; the admin `retry`
    /// command changes them at run time).
    pub retry_policies: Vec<(String, RetryPolicy)>,
    /// Most records in the dead set; the oldest are dropped beyond it (0: no limit).
    pub dead_max: usize,
    /// Dead records older than this are dropped (zero: no limit).
    pub dead_max_age: Duration,
    /// Most bytes of payloads in the dead set; the oldest records are
    /// dropped beyond it (0: no limit).
    pub dead_max_bytes: usize,
    /// Periodic jobs from the configuration (`--schedule`); admin
    /// `schedule add` adds more at run time.
    pub schedules: Vec<ScheduleSpec>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1".into(),
            port: 0,
            http_port: None,
            backlog: 1024,
            queue: QueueConfig::Memory,
            job_retries: 0,
            worker_wakeup: 1,
            round_robin: false,
            job_handle_prefix: None,
            max_packet: polygear::protocol::DEFAULT_MAX_PACKET,
            max_line: polygear::protocol::DEFAULT_MAX_TEXT_LINE,
            max_output: 128 << 20,
            max_buffered: 1 << 30,
            max_worker_functions: 10_000,
            max_idle_functions: 10_000,
            allow_shutdown: false,
            exceptions: false,
            keepalive: false,
            verbose: "ERROR".into(),
            timeout_requeue: false,
            grab_wait: Duration::from_millis(1),
            tls: None,
            admin_token: None,
            retain: Vec::new(),
            unique_windows: Vec::new(),
            retain_max_bytes: 256 << 20,
            retry_policies: Vec::new(),
            dead_max: 10_000,
            dead_max_age: Duration::from_secs(7 * 86400),
            dead_max_bytes: 64 << 20,
            schedules: Vec::new(),
        }
    }
}

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding or socket setup failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The persistent queue could not be opened or read.
    #[error("persistent queue: {0}")]
    Queue(String),
    /// Invalid settings.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// State shared by all tasks of one server.
pub(crate) struct Shared {
    pub(crate) state: Mutex<state::State>,
    pub(crate) cfg: Arc<ServerConfig>,
    /// Stop everything now.
    pub(crate) stop: CancellationToken,
    /// Stop accepting; exit once no job is left.
    pub(crate) graceful: AtomicBool,
    pub(crate) graceful_notify: Notify,
    pub(crate) live_conns: AtomicUsize,
    conns_done: Notify,
    /// Memory for all connections' buffers.
    pub(crate) budget: Arc<budget::Budget>,
    /// `cfg.tls`, loaded, for the Gearman port.
    pub(crate) tls: Option<tls::Acceptor>,
    /// The same for the HTTP port (ALPN `http/1.1`).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) http_tls: Option<tls::Acceptor>,
    /// Connections accepted since start (`polygear_connections_accepted_total`).
    pub(crate) accepted: AtomicU64,
    /// The durable queue's commit times and batch sizes.
    pub(crate) commits: stats::CommitStats,
}

impl Shared {
    /// Runs `f` under the state lock, then (with the lock released) flushes
    /// the output it queued: every state change that may reply goes through
    /// here, so no caller can forget the flush (see [`outbox`]).
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut state::State) -> R) -> R {
        let r = f(&mut self.state.lock());
        outbox::end_of_batch();
        r
    }

    pub(crate) fn conn_closed(&self) {
        if self.live_conns.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.conns_done.notify_waiters();
        }
    }

    pub(crate) fn request_shutdown(&self, graceful: bool) {
        if graceful {
            self.graceful.store(true, Ordering::Release);
            self.graceful_notify.notify_waiters();
        } else {
            self.stop.cancel();
        }
    }
}

/// Installs the server's hooks on a runtime: a worker thread writes the
/// replies of all the connections it served when it runs out of tasks
/// (one write per connection per wake-up, however many peers' requests
/// answered it) instead of after every connection's batch. A server in a
/// runtime built without them works the same, with more writes.
pub fn tune_runtime(builder: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    builder
        .on_thread_park(outbox::before_park)
        .on_thread_stop(outbox::flush_dirty)
}

/// Entry point: `Server::bind(config)` starts a server in the current tokio runtime.
pub struct Server;

/// A started server. Dropping it does not stop it; call [`RunningServer::shutdown`].
pub struct RunningServer {
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    accept: Option<tokio::task::JoinHandle<()>>,
    http_accept: Option<tokio::task::JoinHandle<()>>,
    timers: Option<tokio::task::JoinHandle<()>>,
    persist_thread: Option<std::thread::JoinHandle<()>>,
}

/// This machine's host name (`localhost` if unknown).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl Server {
    /// Binds the listening socket, loads the persistent queue and starts
    /// accepting connections. Must be called inside a tokio runtime.
    pub async fn bind(config: ServerConfig) -> Result<RunningServer, ServerError> {
        let prefix = match &config.job_handle_prefix {
            Some(p) => p.clone(),
            None => format!("H:{}", hostname()),
        };
        let prefix = if prefix.len() > 42 {
            if config.job_handle_prefix.is_some() {
                return Err(ServerError::Config(
                    "--job-handle-prefix must be at most 42 bytes (handles are limited to 63)"
                        .into(),
                ));
            }
            prefix[..42].to_string()
        } else {
            prefix
        };
        if prefix.contains('\0') {
            // Handles are the first field of JOB_ASSIGN and WORK_*: a NUL would split them.
            return Err(ServerError::Config(
                "the job handle prefix must not contain a NUL byte".into(),
            ));
        }
        if config.grab_wait > MAX_GRAB_WAIT {
            // Waiting GRABs are listed until their deadline: keep that short.
            return Err(ServerError::Config(format!(
                "the GRAB wait must be at most {} ms",
                MAX_GRAB_WAIT.as_millis()
            )));
        }
        for s in &config.schedules {
            s.check()
                .map_err(|e| ServerError::Config(format!("schedule {}: {e}", s.name)))?;
        }
        if config.max_packet == 0 || config.max_packet > u32::MAX as usize {
            return Err(ServerError::Config(
                "max packet size must be between 1 and 4 GiB-1".into(),
            ));
        }
        let (tls, http_tls) = match &config.tls {
            Some(t) => (
                Some(tls::Acceptor::new(t, &[])?),
                Some(tls::Acceptor::new(t, &[b"http/1.1", b"http/1.0"])?),
            ),
            None => (None, None),
        };
        let listener = listen(&config.listen, config.port, config.backlog).await?;
        let local = listener.local_addr()?;
        if config.http_port.is_some() && !cfg!(feature = "http") {
            return Err(ServerError::Config(
                "this build has no HTTP front end (polygear-server's feature `http`)".into(),
            ));
        }
        let http_listener = match config.http_port {
            Some(port) => Some(listen(&config.listen, port, config.backlog).await?),
            None => None,
        };
        let http_addr = match &http_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };

        let cfg = Arc::new(config);
        // A shared store renews this server's lease while loading: it holds
        // from before the load started.
        let load_started = std::time::Instant::now();
        let queue_cfg = cfg.queue.clone();
        let loaded = tokio::task::spawn_blocking(move || queue::open(&queue_cfg))
            .await
            .map_err(|e| ServerError::Queue(e.to_string()))??;
        let state = state::State::new(cfg.clone(), Bytes::from(prefix));
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            stop: CancellationToken::new(),
            graceful: AtomicBool::new(false),
            graceful_notify: Notify::new(),
            live_conns: AtomicUsize::new(0),
            conns_done: Notify::new(),
            budget: state.budget.clone(),
            tls,
            http_tls,
            accepted: AtomicU64::new(0),
            commits: stats::CommitStats::default(),
            state: Mutex::new(state),
        });
        let mut persist_thread = None;
        let mut stored_schedules = Vec::new();
        if let Some(queue::Opened {
            store,
            rows,
            recovered,
            results,
            schedules,
            handle_floor,
        }) = loaded
        {
            stored_schedules = schedules;
            let (tx, rx) = std::sync::mpsc::channel();
            let next_id = rows.iter().map(|r| r.id).max().unwrap_or(0) + 1;
            let keyed = store.keyed();
            let n = shared.with_state(|st| {
                st.persist = Some(queue::Persister {
                    tx,
                    next_id,
                    keyed,
                    generated: 0,
                    generation: queue::generation(),
                });
                if let Some(lease) = cfg.queue.lease() {
                    st.lease_renewed(lease.held_from(load_started));
                }
                st.start_handles_at(handle_floor);
                let kept = st.restore_results(results);
                if kept > 0 {
                    tracing::info!("restored {kept} retained results");
                }
                let n = st.restore(rows);
                st.restore_retries(recovered);
                st.reserve_handles();
                n
            });
            if n > 0 {
                tracing::info!("restored {n} background jobs from the persistent queue");
            }
            persist_thread = Some(queue::start(store, rx, Arc::downgrade(&shared)));
        }
        tracing::info!("listening on {local}");
        if let Some(a) = http_addr {
            tracing::info!("HTTP on {a}");
        }
        shared.with_state(|st| st.init_schedules(stored_schedules));
        tokio::spawn(crate::state::periodic::run(shared.clone()));
        let timers = tokio::spawn(crate::state::timers::run(shared.clone()));
        tokio::spawn(budget::run_reaper(shared.clone()));
        tokio::spawn(run_sampler(shared.clone()));
        let accept = tokio::spawn(accept_loop(shared.clone(), listener));
        let http_accept = http_listener.map(|l| spawn_http(shared.clone(), l));
        Ok(RunningServer {
            addr: local,
            http_addr,
            shared,
            accept: Some(accept),
            http_accept,
            timers: Some(timers),
            persist_thread,
        })
    }
}

/// Serves one accepted connection, after its TLS handshake if TLS is on.
async fn open_and_serve(shared: Arc<Shared>, tcp: tokio::net::TcpStream) {
    let stream = match &shared.tls {
        None => polygear::transport::Stream::plain(tcp),
        Some(tls) => {
            let accepted = tokio::select! {
                a = tls.accept(tcp) => a,
                _ = shared.stop.cancelled() => None,
            };
            match accepted {
                Some((stream, _verified)) => stream,
                None => {
                    shared.conn_closed();
                    return;
                }
            }
        }
    };
    conn::serve(shared, stream).await
}

/// Closes a sample of the dashboard's charts every [`stats::SAMPLE_EVERY`].
async fn run_sampler(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(stats::SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => shared.state.lock().take_sample(),
            _ = shared.stop.cancelled() => return,
        }
    }
}

/// Starts the HTTP port's accept loop.
#[cfg(feature = "http")]
fn spawn_http(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(http::accept_loop(shared, listener))
}

/// Without the `http` feature no HTTP port is opened (`bind` refuses one).
#[cfg(not(feature = "http"))]
fn spawn_http(
    _shared: Arc<Shared>,
    _listener: tokio::net::TcpListener,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {})
}

/// A listening socket on `host:port`.
async fn listen(
    host: &str,
    port: u16,
    backlog: u32,
) -> Result<tokio::net::TcpListener, ServerError> {
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| ServerError::Config(format!("cannot resolve {host}")))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket.listen(backlog)?)
}

async fn accept_loop(shared: Arc<Shared>, listener: tokio::net::TcpListener) {
    loop {
        if shared.graceful.load(Ordering::Acquire) {
            break;
        }
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    shared.live_conns.fetch_add(1, Ordering::AcqRel);
                    shared.accepted.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(open_and_serve(shared.clone(), stream));
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shared.stop.cancelled() => return,
            _ = shared.graceful_notify.notified() => {}
        }
    }
    drop(listener);
    // Graceful: keep serving existing connections until no job is left.
    tracing::info!("graceful shutdown: waiting for the queue to empty");
    loop {
        if shared.state.lock().jobs.is_empty() {
            shared.stop.cancel();
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = shared.stop.cancelled() => return,
        }
    }
}

impl RunningServer {
    /// The bound address (with the real port when 0 was requested).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The HTTP front end's address, if [`ServerConfig::http_port`] is set.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Stops accepting connections and exits once no job is left (SIGUSR1).
    pub fn begin_graceful_shutdown(&self) {
        self.shared.request_shutdown(true);
    }

    /// Resolves when the server stops by itself (admin `shutdown`, or a
    /// graceful shutdown that completed).
    pub async fn stopped(&self) {
        self.shared.stop.cancelled().await
    }

    /// Stops now: closes every connection, then commits and closes the
    /// persistent queue. In-memory jobs are lost; durable ones stay stored.
    pub async fn shutdown(mut self) {
        self.shared.stop.cancel();
        if let Some(a) = self.accept.take() {
            let _ = a.await;
        }
        if let Some(a) = self.http_accept.take() {
            let _ = a.await;
        }
        if let Some(t) = self.timers.take() {
            let _ = t.await;
        }
        // Wait (bounded) for connection tasks to finish.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.shared.live_conns.load(Ordering::Acquire) > 0 {
            let wait = self.shared.conns_done.notified();
            if self.shared.live_conns.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, wait).await.is_err() {
                break;
            }
        }
        let persister = self.shared.state.lock().persist.take();
        drop(persister);
        if let Some(t) = self.persist_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        tracing::info!("server stopped");
    }
}

/// A server running on its own thread with its own tokio runtime; for tests
/// and language bindings. Dropping it stops it.
pub struct BackgroundServer {
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    stop_tx: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundServer {
    /// Starts a server and returns once it is accepting connections.
    pub fn start(config: ServerConfig) -> Result<BackgroundServer, ServerError> {
        let runtime = tune_runtime(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("polygeard")
                .enable_all(),
        )
        .build()?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("polygeard-main".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let server = match Server::bind(config).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok((server.local_addr(), server.http_addr())));
                    tokio::select! {
                        _ = stop_rx => {}
                        _ = server.stopped() => {}
                    }
                    server.shutdown().await;
                });
            })?;
        match ready_rx.recv() {
            Ok(Ok((addr, http_addr))) => Ok(BackgroundServer {
                addr,
                http_addr,
                stop_tx: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(ServerError::Config(
                    "server thread exited during startup".into(),
                ))
            }
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The HTTP front end's address, if [`ServerConfig::http_port`] is set.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops the server and waits for its thread to finish.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
