//! Async Gearman worker: registers functions, grabs jobs from every server,
//! runs up to `concurrency` of them at once, and stops gracefully.
//!
//! API CONTRACT (bindings and the CLI rely on these names and signatures).
//!
//! Design: one task per server owns that server's connection (reconnecting
//! with exponential backoff) and runs the GRAB → NO_JOB → PRE_SLEEP → NOOP
//! loop of the protocol. A GRAB is only sent while holding a permit of a
//! semaphore sized `concurrency`; the permit moves into the [`Job`] and is
//! released when the job ends (or is dropped). Outgoing packets are written
//! by the thread that makes them (non-blocking, see `outbox`); only a full
//! socket hands them to the server task, so [`Job`] methods do not wait
//! for the task and a result leaves at once, even on a runtime nobody is
//! driving. (`send_*` block only for backpressure: more than 96 MiB unread
//! by the server, written out by the blocked sender itself.)
//!
//! # Layout
//!
//! This file is the public face: [`WorkerOptions`], [`Worker`] (its API
//! validates options, registers functions, hands out jobs and shuts down)
//! and the re-export of [`Job`]. The internals, one concept per file:
//!
//! - `job.rs`: [`Job`], an assigned job and its methods (the other public
//!   type, used from any thread).
//! - `session.rs`: `Session`, one server connection's outgoing side (the
//!   outbox jobs write to, GRABs handed over by ending jobs, the
//!   `CloseReason`), plus the request encoding.
//! - `grab.rs`: `Grabber`, the grab/sleep state machine over one session,
//!   and the server task that runs it connection after connection.
//! - `events.rs`: [`WorkerEvent`], what the server tasks report about
//!   their connections, and each server's link status for
//!   [`Worker::connect`].
//! - `queue.rs`: `WorkerState`, what the handles and tasks share; the job
//!   `Queue`, its hand-out to `next_job` callers (`Running`, `Wake`), the
//!   `Registry` of functions and live sessions, and the hand-off watchdog.
//!
//! Names: a *session* is one TCP connection to one server (a reconnect
//! makes a new one); the *server task* owns a server's sessions one after
//! another; a *slot* is a permit of the `concurrency` semaphore; a caller
//! is whoever waits in `next_job`. [`Worker`] handles share one
//! `CloseOnDrop`, which closes the connections when the last handle goes.

use crate::tls::{TlsConnector, TlsOptions};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::protocol::{Decimal, PacketType, HEADER_LEN};
use crate::servers::ServerAddr;
use crate::util::lock;

mod events;
mod grab;
mod job;
mod probe;
mod queue;
mod session;

pub use events::WorkerEvent;
pub use job::Job;
use queue::{Queue, Registry, Running, Tasks, WorkerState};

/// Worker configuration.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Job servers; the worker connects to all of them at once.
    pub servers: Vec<ServerAddr>,
    /// Sent with SET_CLIENT_ID after every (re)connect, if set.
    pub client_id: Option<String>,
    /// Jobs processed at the same time (across all servers). Default 1.
    pub concurrency: usize,
    /// Deadline for establishing a TCP connection (default 5 s).
    pub connect_timeout: Duration,
    /// Largest packet accepted from a server (default 64 MiB).
    pub max_packet: usize,
    /// First delay before reconnecting (doubles up to `max_backoff`).
    pub min_backoff: Duration,
    /// Longest delay between reconnection attempts.
    pub max_backoff: Duration,
    /// While sleeping, grab again after this long even without a NOOP
    /// (covers lost NOOPs and epoch jobs on gearmand 1.1). Default 10 s.
    pub poll_interval: Duration,
    /// `None` (default): a job that arrives is handed to an idle
    /// [`Worker::next_job`] caller at once. `Some(d)`: while another handed-out
    /// job is still running, the new job waits up to `d` for that job's
    /// caller to come back for it ([`Worker::try_next_job`]) before an idle
    /// caller is woken. For callers on threads that share one interpreter
    /// lock (Ruby, Python), where every hand-off to another thread costs a
    /// context switch: a busy thread then runs queued jobs back to back.
    /// `Some(Duration::ZERO)` is the same as `None`.
    pub handoff_delay: Option<Duration>,
    /// Speak TLS to the servers (all of them); `None`: plain TCP.
    pub tls: Option<TlsOptions>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            servers: vec![ServerAddr::new("127.0.0.1", crate::servers::DEFAULT_PORT)],
            client_id: None,
            concurrency: 1,
            connect_timeout: Duration::from_secs(5),
            max_packet: crate::protocol::DEFAULT_MAX_PACKET,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            poll_interval: Duration::from_secs(10),
            handoff_delay: None,
            tls: None,
        }
    }
}

/// Longest function name accepted (gearmand's limit is 512 bytes).
const MAX_FUNCTION_LEN: usize = 512;
/// Longest client id gearmand stores.
const MAX_CLIENT_ID_LEN: usize = 127;

/// A function name gearmand accepts: not empty, at most
/// [`MAX_FUNCTION_LEN`] bytes, no NUL.
fn check_function(function: &str) -> Result<()> {
    if function.is_empty() {
        return Err(Error::InvalidArgument("empty function name".into()));
    }
    if function.len() > MAX_FUNCTION_LEN {
        return Err(Error::InvalidArgument(format!(
            "function name longer than {MAX_FUNCTION_LEN} bytes"
        )));
    }
    if function.contains('\0') {
        return Err(Error::InvalidArgument(
            "function name contains a NUL byte".into(),
        ));
    }
    Ok(())
}

/// CAN_DO_TIMEOUT milliseconds: rounded up, at least 1, saturating at u32::MAX.
fn timeout_ms(d: Duration) -> u32 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    ms.clamp(1, u32::MAX as u128) as u32
}

/// Owned by the `Worker` handles only: when the last one goes, connections close.
#[derive(Debug)]
struct CloseOnDrop {
    state: Arc<WorkerState>,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.state.close();
    }
}

/// A cheap-to-clone handle to a worker connected to every configured server.
///
/// Dropping the last handle closes the connections; the server then requeues
/// any job this worker still held.
#[derive(Debug, Clone)]
pub struct Worker {
    inner: Arc<CloseOnDrop>,
}

impl Worker {
    /// Creates a worker; connections are opened by the first `next_job`/`run`
    /// (which must run inside a tokio runtime). Fails only on invalid options.
    pub fn new(options: WorkerOptions) -> Result<Worker> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.to_string()));
        if options.servers.is_empty() {
            return bad("no job server configured");
        }
        if options.concurrency == 0 {
            return bad("concurrency must be at least 1");
        }
        if options.concurrency > Semaphore::MAX_PERMITS || options.concurrency > u32::MAX as usize {
            return bad("concurrency is too large");
        }
        if options.poll_interval.is_zero() {
            return bad("poll_interval must be greater than zero");
        }
        if options.min_backoff.is_zero() {
            return bad("min_backoff must be greater than zero");
        }
        if options.max_packet < HEADER_LEN {
            return bad("max_packet is too small");
        }
        let client_id = match &options.client_id {
            None => None,
            Some(id) if id.contains('\0') || id.len() > MAX_CLIENT_ID_LEN => {
                return bad("client_id must be at most 127 bytes without NUL");
            }
            Some(id) => Some(Bytes::from(id.clone())),
        };
        let mut options = options;
        options.max_backoff = options.max_backoff.max(options.min_backoff);
        if options.handoff_delay == Some(Duration::ZERO) {
            options.handoff_delay = None;
        }
        let tls = options.tls.as_ref().map(TlsConnector::new).transpose()?;
        let n = options.servers.len();
        let state = WorkerState {
            addrs: options
                .servers
                .iter()
                .map(|a| Arc::from(a.to_string()))
                .collect(),
            client_id,
            slots: Arc::new(Semaphore::new(options.concurrency)),
            stopped: Arc::new(AtomicBool::new(false)),
            wanting: Arc::new(AtomicUsize::new(0)),
            draining: AtomicBool::new(false),
            running: Arc::new(Running::default()),
            closing: watch::channel(false).0,
            registry: Mutex::new(Registry {
                functions: Vec::new(),
                sessions: vec![None; n],
            }),
            queue: Mutex::new(Queue::default()),
            job_ready: Notify::new(),
            deferred: Notify::new(),
            tasks: Mutex::new(Tasks::default()),
            reports: events::Reports::new(n),
            probes: options
                .servers
                .iter()
                .map(|a| Arc::new(probe::Probe::new(a, &options)))
                .collect(),
            opts: options,
            tls,
        };
        Ok(Worker {
            inner: Arc::new(CloseOnDrop {
                state: Arc::new(state),
            }),
        })
    }

    fn state(&self) -> &Arc<WorkerState> {
        &self.inner.state
    }

    /// Registers a function (CAN_DO, or CAN_DO_TIMEOUT when `timeout` is set);
    /// takes effect on every connection, now and after reconnects.
    ///
    /// Registering an already registered function with the same timeout does
    /// nothing; with a different timeout it re-registers (CANT_DO first, which
    /// makes the server requeue jobs of that function this worker holds).
    pub fn register(&self, function: &str, timeout: Option<Duration>) -> Result<()> {
        check_function(function)?;
        let ms = timeout.map(timeout_ms);
        let name = Bytes::copy_from_slice(function.as_bytes());
        let mut reg = lock(&self.state().registry);
        let pos = reg.functions.iter().position(|(f, _)| *f == name);
        if let Some(i) = pos {
            if reg.functions[i].1 == ms {
                return Ok(());
            }
            reg.functions.remove(i);
            WorkerState::broadcast(&reg, PacketType::CantDo, &[&name]);
        }
        match ms {
            None => WorkerState::broadcast(&reg, PacketType::CanDo, &[&name]),
            Some(ms) => WorkerState::broadcast(
                &reg,
                PacketType::CanDoTimeout,
                &[&name, Decimal::from(ms).as_bytes()],
            ),
        }
        reg.functions.push((name, ms));
        for s in reg.sessions.iter().flatten() {
            s.regrab.store(true, Ordering::Release);
            s.wake.notify_one();
        }
        Ok(())
    }

    /// Unregisters a function (CANT_DO).
    pub fn unregister(&self, function: &str) -> Result<()> {
        check_function(function)?;
        let mut reg = lock(&self.state().registry);
        let Some(i) = reg
            .functions
            .iter()
            .position(|(f, _)| &f[..] == function.as_bytes())
        else {
            return Ok(());
        };
        reg.functions.remove(i);
        WorkerState::broadcast(&reg, PacketType::CantDo, &[function.as_bytes()]);
        drop(reg);
        self.state()
            .discard_buffered(|j| &j.function[..] == function.as_bytes());
        Ok(())
    }

    /// Unregisters every function (RESET_ABILITIES).
    pub fn reset(&self) -> Result<()> {
        let mut reg = lock(&self.state().registry);
        reg.functions.clear();
        WorkerState::broadcast(&reg, PacketType::ResetAbilities, &[]);
        drop(reg);
        self.state().discard_buffered(|_| true);
        Ok(())
    }

    /// The next job if one is assigned already, without waiting: `None` if
    /// none is, or once [`Worker::shutdown`] began. Never connects; use
    /// [`Worker::next_job`] for that. A caller that takes its next job with
    /// this before ending the current one keeps the job on its thread (see
    /// [`WorkerOptions::handoff_delay`]).
    pub fn try_next_job(&self) -> Option<Job> {
        let state = self.state();
        if state.draining.load(Ordering::Acquire) {
            return None;
        }
        let (job, wake) = state.hand_out(&mut lock(&state.queue))?;
        state.wake(wake);
        Some(job)
    }

    /// The next job to process. Waits (without busy-polling) until a job is
    /// assigned and fewer than `concurrency` jobs are unfinished; `None` once
    /// the worker is stopped and no grabbed job is left.
    pub async fn next_job(&self) -> Option<Job> {
        let state = self.state();
        if !state.ensure_started()
            && (lock(&state.queue).jobs.is_empty() || state.draining.load(Ordering::Acquire))
        {
            return None;
        }
        loop {
            let notified = state.job_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut q = lock(&state.queue);
                if state.draining.load(Ordering::Acquire) {
                    return None;
                }
                if let Some((job, wake)) = state.hand_out(&mut q) {
                    drop(q);
                    state.wake(wake);
                    return Some(job);
                }
                if state.is_stopped() && q.grabs == 0 {
                    drop(q);
                    // A GRAB an ending job sent just before the stop may not be
                    // tracked yet: its reply (a job to hand out) is still due.
                    if !state.untracked_grabs() {
                        return None;
                    }
                }
            }
            notified.await;
        }
    }

    /// Runs `handler` for every job, up to `concurrency` at once, until
    /// [`Worker::stop`]; then waits for running handlers to finish. The
    /// handler ends each job itself (complete/fail/exception); a job it drops
    /// unfinished is failed.
    pub async fn run<F, Fut>(&self, handler: F) -> Result<()>
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Closed("Worker::run needs a tokio runtime".into()));
        }
        let handler = Arc::new(handler);
        let limit = self.state().opts.concurrency;
        let mut set: JoinSet<()> = JoinSet::new();
        let report = |r: std::result::Result<(), tokio::task::JoinError>| {
            if let Err(e) = r {
                tracing::error!(error = %e, "job handler panicked (its job was failed)");
            }
        };
        loop {
            while let Some(r) = set.try_join_next() {
                report(r);
            }
            if set.len() >= limit {
                if let Some(r) = set.join_next().await {
                    report(r);
                }
                continue;
            }
            tokio::select! {
                job = self.next_job() => match job {
                    Some(job) => {
                        let h = handler.clone();
                        set.spawn(async move { h(job).await });
                    }
                    None => break,
                },
                Some(r) = set.join_next(), if !set.is_empty() => report(r),
            }
        }
        while let Some(r) = set.join_next().await {
            report(r);
        }
        Ok(())
    }

    /// Graceful stop: grab no new jobs; jobs already running may finish.
    pub fn stop(&self) {
        self.state().stop();
    }

    /// True once [`Worker::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.state().is_stopped()
    }

    /// Graceful shutdown: stops taking jobs, waits until every job handed
    /// out by `next_job`/`run` has ended, then closes the connections.
    ///
    /// Jobs grabbed but not yet handed out are not run: they are left to the
    /// server, which requeues them when the connection closes. A GRAB still
    /// unanswered is not waited for either, so this finishes as soon as the
    /// running jobs end (plus at most a few seconds to flush their results).
    /// After it returns, `next_job` returns `None`.
    pub async fn shutdown(&self) {
        self.drain();
        self.state().idle().await;
        self.close_and_join().await;
    }

    /// [`Worker::shutdown`] that waits at most `timeout` for the running
    /// jobs. Jobs still running then are handed back: the connections
    /// close, and the server requeues those jobs for another worker (their
    /// clients keep waiting). Whatever those jobs send later
    /// ([`Job::complete`] included) is dropped and returns `Ok`. Returns how
    /// many jobs were handed back (0 if all ended in time); they count as
    /// running until they end (a later [`Worker::shutdown`] waits for them).
    ///
    /// A server that failed a job on its own (its CAN_DO_TIMEOUT passed)
    /// does not requeue it.
    pub async fn shutdown_timeout(&self, timeout: Duration) -> usize {
        self.drain();
        let state = self.state();
        let handed_back = match tokio::time::timeout(timeout, state.idle()).await {
            Ok(()) => 0,
            Err(_) => {
                let n = state.hand_back();
                if n > 0 {
                    tracing::warn!(
                        jobs = n,
                        ?timeout,
                        "jobs still running at the shutdown timeout; handed back to the server"
                    );
                }
                n
            }
        };
        self.close_and_join().await;
        handed_back
    }

    /// First step of a shutdown: stop, hand out no more jobs, drop the
    /// grabbed ones (the server requeues them).
    fn drain(&self) {
        let state = self.state();
        state.stop();
        state.draining.store(true, Ordering::Release);
        state.job_ready.notify_waiters();
        state.discard_buffered(|_| true);
    }

    /// Last step of a shutdown: closes the connections (after flushing) and
    /// waits for the server tasks to end.
    async fn close_and_join(&self) {
        let state = self.state();
        state.close();
        let handles = std::mem::take(&mut lock(&state.tasks).handles);
        for h in handles {
            let _ = h.await;
        }
        // Assigned while closing; the server has requeued them.
        state.discard_buffered(|_| true);
    }

    /// Subscribes to connection events (connected, a connect failed, a
    /// connection lost) from now on: subscribe before the worker starts
    /// (`connect`, `next_job` or `run`) to see the first attempts. A
    /// receiver that falls more than 256 events behind skips the oldest
    /// ([`RecvError::Lagged`](tokio::sync::broadcast::error::RecvError)).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<WorkerEvent> {
        self.state().reports.subscribe()
    }

    /// Fail-fast start: opens the connections (as the first `next_job`
    /// would) and waits until one server is connected with the registered
    /// functions sent (`Ok`), or until every configured server has failed
    /// its latest attempt: `Err(Error::NoServer(Some(last)))`, `last` being
    /// the latest failure as an [`Error::Connect`] with its
    /// [`io_kind`](Error::io_kind) (e.g. `ConnectionRefused`). Each attempt
    /// ends within `connect_timeout`.
    ///
    /// Either way the worker keeps reconnecting in the background; a caller
    /// that gives up calls [`Worker::shutdown`]. `Err(Error::Closed)` once
    /// the worker was stopped, or outside a tokio runtime.
    pub async fn connect(&self) -> Result<()> {
        let state = self.state();
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Closed(
                "Worker::connect needs a tokio runtime".into(),
            ));
        }
        if state.is_stopped() || !state.ensure_started() {
            return Err(Error::Closed("the worker was stopped".into()));
        }
        state.reports.reachable(state.closing.subscribe()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_timeouts_to_milliseconds() {
        assert_eq!(timeout_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(timeout_ms(Duration::from_micros(1)), 1);
        assert_eq!(timeout_ms(Duration::ZERO), 1);
        assert_eq!(timeout_ms(Duration::from_secs(u64::MAX)), u32::MAX);
    }

    #[test]
    fn new_validates_options_without_a_runtime() {
        let ok = Worker::new(WorkerOptions::default()).unwrap();
        assert!(!ok.is_stopped());
        let bad = |o: WorkerOptions| Worker::new(o).unwrap_err().kind();
        let d = WorkerOptions::default;
        use crate::error::ErrorKind::InvalidArgument as I;
        assert_eq!(
            bad(WorkerOptions {
                servers: vec![],
                ..d()
            }),
            I
        );
        assert_eq!(
            bad(WorkerOptions {
                concurrency: 0,
                ..d()
            }),
            I
        );
        assert_eq!(
            bad(WorkerOptions {
                poll_interval: Duration::ZERO,
                ..d()
            }),
            I
        );
        assert_eq!(
            bad(WorkerOptions {
                min_backoff: Duration::ZERO,
                ..d()
            }),
            I
        );
        assert_eq!(
            bad(WorkerOptions {
                client_id: Some("a\0b".into()),
                ..d()
            }),
            I
        );
    }

    #[test]
    fn registrations_are_deduplicated() {
        let w = Worker::new(WorkerOptions::default()).unwrap();
        w.register("f", None).unwrap();
        w.register("f", None).unwrap();
        w.register("g", Some(Duration::from_secs(2))).unwrap();
        w.register("g", Some(Duration::from_secs(3))).unwrap();
        let names = |w: &Worker| {
            lock(&w.state().registry)
                .functions
                .iter()
                .map(|(f, t)| (String::from_utf8(f.to_vec()).unwrap(), *t))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&w),
            vec![("f".into(), None), ("g".into(), Some(3000))]
        );
        w.unregister("f").unwrap();
        w.unregister("nope").unwrap();
        assert_eq!(names(&w), vec![("g".into(), Some(3000))]);
        w.reset().unwrap();
        assert!(names(&w).is_empty());
        assert!(w.register("", None).is_err());
        assert!(w.register(&"x".repeat(MAX_FUNCTION_LEN + 1), None).is_err());
    }

    /// A fake job server with one worker connection: reads what the worker
    /// sends, answers what the test says.
    struct FakeServer {
        stream: tokio::net::TcpStream,
        buf: bytes::BytesMut,
        codec: crate::protocol::PacketCodec,
    }

    impl FakeServer {
        /// Listens on a free port; the worker options to reach it.
        async fn listen() -> (tokio::net::TcpListener, WorkerOptions) {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            let opts = WorkerOptions {
                servers: vec![ServerAddr::new("127.0.0.1", port)],
                ..WorkerOptions::default()
            };
            (l, opts)
        }

        async fn accept(l: &tokio::net::TcpListener) -> FakeServer {
            let (stream, _) = l.accept().await.unwrap();
            FakeServer {
                stream,
                buf: bytes::BytesMut::new(),
                codec: crate::protocol::PacketCodec::default(),
            }
        }

        /// The worker's next packet (within 5 s).
        async fn recv(&mut self) -> crate::protocol::Packet {
            use tokio::io::AsyncReadExt;
            use tokio_util::codec::Decoder;
            let read = async {
                loop {
                    if let Some(frame) = self.codec.decode(&mut self.buf).unwrap() {
                        match frame {
                            crate::protocol::Frame::Packet(_, p) => return p,
                            crate::protocol::Frame::Text(t) => panic!("text line {t:?}"),
                        }
                    }
                    assert_ne!(self.stream.read_buf(&mut self.buf).await.unwrap(), 0);
                }
            };
            tokio::time::timeout(Duration::from_secs(5), read)
                .await
                .expect("the worker sent nothing")
        }

        async fn send(&mut self, p: crate::protocol::Packet) {
            use tokio::io::AsyncWriteExt;
            let b = p.to_bytes(crate::protocol::Magic::Res).unwrap();
            self.stream.write_all(&b).await.unwrap();
        }

        /// Assigns job `handle` of `function` with empty data.
        async fn assign(&mut self, handle: &'static str, function: &'static str) {
            self.send(crate::protocol::Packet::JobAssign {
                handle: handle.into(),
                function: function.into(),
                data: Bytes::new(),
            })
            .await;
        }

        /// Starts `w` (registered for `function` only, without a timeout),
        /// checks its CAN_DO and first GRAB, and assigns it job `H:1`.
        async fn first_job(
            l: &tokio::net::TcpListener,
            w: &Worker,
            function: &'static str,
        ) -> (FakeServer, Job) {
            use crate::protocol::Packet;
            let next = tokio::spawn({
                let w = w.clone();
                async move { w.next_job().await }
            });
            let mut srv = FakeServer::accept(l).await;
            assert_eq!(
                srv.recv().await,
                Packet::CanDo {
                    function: function.into()
                }
            );
            assert_eq!(srv.recv().await, Packet::GrabJobAll);
            srv.assign("H:1", function).await;
            (srv, next.await.unwrap().unwrap())
        }
    }

    #[tokio::test]
    async fn an_abandoned_job_frees_its_slot_and_sends_nothing() {
        use crate::protocol::Packet;
        let (l, opts) = FakeServer::listen().await;
        let w = Worker::new(opts).unwrap();
        w.register("f", Some(Duration::from_millis(1500))).unwrap();
        let mut events = w.events();
        let connect = tokio::spawn({
            let w = w.clone();
            async move { w.connect().await }
        });
        let mut srv = FakeServer::accept(&l).await;
        assert_eq!(
            srv.recv().await,
            Packet::CanDoTimeout {
                function: "f".into(),
                timeout: 1500
            }
        );
        connect.await.unwrap().unwrap();
        let ev = events.recv().await.unwrap();
        assert!(
            matches!(
                &ev,
                WorkerEvent::Connected {
                    reconnect: false,
                    ..
                }
            ),
            "{ev}"
        );
        assert_eq!(srv.recv().await, Packet::GrabJobAll);
        srv.send(Packet::JobAssign {
            handle: "H:1".into(),
            function: "f".into(),
            data: Bytes::from_static(b"x"),
        })
        .await;
        let job = w.next_job().await.unwrap();
        assert_eq!(job.timeout(), Some(Duration::from_millis(1500)));
        // One slot, taken: the next GRAB waits for it. Abandoning frees it
        // and sends no WORK_FAIL: the next packet is that GRAB.
        job.abandon();
        assert_eq!(srv.recv().await, Packet::GrabJobAll);
        srv.assign("H:2", "f").await;
        let job = w.next_job().await.unwrap();
        assert_eq!(job.handle(), "H:2");
        job.complete("done").unwrap();
        assert_eq!(
            srv.recv().await,
            Packet::WorkComplete {
                handle: "H:2".into(),
                data: Bytes::from_static(b"done")
            }
        );
        // Nothing left running: shutdown does not wait.
        tokio::time::timeout(Duration::from_secs(5), w.shutdown())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn jobs_of_functions_without_a_timeout_have_none() {
        let (l, opts) = FakeServer::listen().await;
        let w = Worker::new(opts).unwrap();
        w.register("g", None).unwrap();
        let (_srv, job) = FakeServer::first_job(&l, &w, "g").await;
        assert_eq!(job.timeout(), None);
        job.complete("").unwrap();
        w.shutdown().await;
    }

    #[tokio::test]
    async fn a_handed_back_job_sends_nothing_more() {
        use crate::protocol::Packet;
        let (l, opts) = FakeServer::listen().await;
        let w = Worker::new(WorkerOptions {
            concurrency: 2,
            ..opts
        })
        .unwrap();
        w.register("f", None).unwrap();
        let (mut srv, job) = FakeServer::first_job(&l, &w, "f").await;
        // The GRAB the free slot sends meanwhile.
        assert_eq!(srv.recv().await, Packet::GrabJobAll);
        job.send_status(1, 2).unwrap();
        let handed_back = w.shutdown_timeout(Duration::from_millis(50)).await;
        assert_eq!(handed_back, 1);
        // Dropped without an error, and without a write.
        job.send_data("late").unwrap();
        job.complete("late").unwrap();
        assert_eq!(
            srv.recv().await,
            Packet::WorkStatus {
                handle: "H:1".into(),
                numerator: "1".into(),
                denominator: "2".into()
            }
        );
        // Then the connection closes: that is the hand-back.
        use tokio::io::AsyncReadExt;
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), srv.stream.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((n, rest.len(), srv.buf.len()), (0, 0, 0));
    }

    #[tokio::test]
    async fn shutdown_timeout_hands_back_nothing_when_jobs_end_in_time() {
        use crate::protocol::Packet;
        let (l, opts) = FakeServer::listen().await;
        let w = Worker::new(opts).unwrap();
        w.register("f", None).unwrap();
        let (mut srv, job) = FakeServer::first_job(&l, &w, "f").await;
        let ender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            job.complete("ok")
        });
        assert_eq!(w.shutdown_timeout(Duration::from_secs(10)).await, 0);
        ender.await.unwrap().unwrap();
        assert_eq!(
            srv.recv().await,
            Packet::WorkComplete {
                handle: "H:1".into(),
                data: Bytes::from_static(b"ok")
            }
        );
    }

    #[tokio::test]
    async fn connect_fails_fast_and_events_tell_why() {
        // A port nobody listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let w = Worker::new(WorkerOptions {
            servers: vec![ServerAddr::new("127.0.0.1", port)],
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(40),
            ..WorkerOptions::default()
        })
        .unwrap();
        let mut events = w.events();
        let err = tokio::time::timeout(Duration::from_secs(5), w.connect())
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(&err, Error::NoServer(Some(_))), "{err}");
        let server = format!("127.0.0.1:{port}");
        for (attempt, delay) in [(1, 20), (2, 40), (3, 40)] {
            let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .unwrap()
                .unwrap();
            assert!(ev.is_problem());
            match ev {
                WorkerEvent::ConnectFailed {
                    server: s,
                    attempt: a,
                    retry_in,
                    ..
                } => {
                    assert_eq!((s.as_str(), a), (server.as_str(), attempt));
                    assert_eq!(retry_in, Duration::from_millis(delay));
                }
                other => panic!("unexpected {other}"),
            }
        }
        // Still failing: connect says so again at once.
        assert!(w.connect().await.is_err());
        w.shutdown().await;
        assert_eq!(
            w.connect().await.unwrap_err().kind(),
            crate::ErrorKind::Closed
        );
    }

    #[tokio::test]
    async fn connect_on_a_stopped_worker_is_closed() {
        let w = Worker::new(WorkerOptions::default()).unwrap();
        w.stop();
        assert_eq!(
            w.connect().await.unwrap_err().kind(),
            crate::ErrorKind::Closed
        );
    }

    #[tokio::test]
    async fn stopped_before_start_returns_none_and_shutdown_is_immediate() {
        let w = Worker::new(WorkerOptions::default()).unwrap();
        w.stop();
        assert!(w.next_job().await.is_none());
        tokio::time::timeout(Duration::from_secs(5), w.shutdown())
            .await
            .unwrap();
        assert!(w.run(|_job| async {}).await.is_ok());
    }
}
