//! Async Gearman worker: registers functions, grabs jobs from every server,
//! runs up to `concurrency` of them at once, and stops gracefully.
//!
//! API CONTRACT (bindings and the CLI rely on these names and signatures).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use crate::servers::ServerAddr;
use crate::Result;

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
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            servers: vec![ServerAddr::new("127.0.0.1", crate::DEFAULT_PORT)],
            client_id: None,
            concurrency: 1,
            connect_timeout: Duration::from_secs(5),
            max_packet: crate::protocol::DEFAULT_MAX_PACKET,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            poll_interval: Duration::from_secs(10),
        }
    }
}

/// A job assigned to this worker. Exactly one of [`Job::complete`],
/// [`Job::fail`] or [`Job::exception`] ends it; dropping an unfinished job
/// sends WORK_FAIL so no client waits forever.
///
/// All methods are synchronous and non-blocking (packets are queued to the
/// connection's writer), so they can be called from any thread.
#[derive(Debug)]
pub struct Job {
    // private fields chosen by the implementation
}

impl Job {
    /// The job handle given by the server.
    pub fn handle(&self) -> &str {
        todo!()
    }
    /// The function name.
    pub fn function(&self) -> &str {
        todo!()
    }
    /// The unique key (empty if none).
    pub fn unique(&self) -> &str {
        todo!()
    }
    /// The reducer name from JOB_ASSIGN_ALL (empty if none).
    pub fn reducer(&self) -> &str {
        todo!()
    }
    /// The workload.
    pub fn data(&self) -> &Bytes {
        todo!()
    }
    /// WORK_DATA: send a chunk of partial output to waiting clients.
    pub fn send_data(&self, data: impl Into<Bytes>) -> Result<()> {
        let _ = data.into();
        todo!()
    }
    /// WORK_WARNING.
    pub fn send_warning(&self, data: impl Into<Bytes>) -> Result<()> {
        let _ = data.into();
        todo!()
    }
    /// WORK_STATUS: progress `numerator / denominator`.
    pub fn send_status(&self, numerator: u32, denominator: u32) -> Result<()> {
        let _ = (numerator, denominator);
        todo!()
    }
    /// WORK_COMPLETE with the result; ends the job.
    pub fn complete(self, result: impl Into<Bytes>) -> Result<()> {
        let _ = result.into();
        todo!()
    }
    /// WORK_FAIL; ends the job.
    pub fn fail(self) -> Result<()> {
        todo!()
    }
    /// WORK_EXCEPTION with a message; ends the job (clients without the
    /// exceptions option see WORK_FAIL).
    pub fn exception(self, message: impl Into<Bytes>) -> Result<()> {
        let _ = message.into();
        todo!()
    }
}

/// A cheap-to-clone handle to a worker connected to every configured server.
#[derive(Debug, Clone)]
pub struct Worker {
    // private fields chosen by the implementation
}

impl Worker {
    /// Creates a worker; connections are opened by the first `next_job`/`run`
    /// (which must run inside a tokio runtime). Fails only on invalid options.
    pub fn new(options: WorkerOptions) -> Result<Worker> {
        let _ = options;
        todo!()
    }

    /// Registers a function (CAN_DO, or CAN_DO_TIMEOUT when `timeout` is set);
    /// takes effect on every connection, now and after reconnects.
    pub fn register(&self, function: &str, timeout: Option<Duration>) -> Result<()> {
        let _ = (function, timeout);
        todo!()
    }

    /// Unregisters a function (CANT_DO).
    pub fn unregister(&self, function: &str) -> Result<()> {
        let _ = function;
        todo!()
    }

    /// Unregisters every function (RESET_ABILITIES).
    pub fn reset(&self) -> Result<()> {
        todo!()
    }

    /// The next job to process. Waits (without busy-polling) until a job is
    /// assigned and fewer than `concurrency` jobs are unfinished; `None` once
    /// the worker is stopped and no grabbed job is left.
    pub async fn next_job(&self) -> Option<Job> {
        todo!()
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
        let _ = handler;
        todo!()
    }

    /// Graceful stop: grab no new jobs; jobs already running may finish.
    pub fn stop(&self) {
        todo!()
    }

    /// True once [`Worker::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        todo!()
    }

    /// Waits until every unfinished job has ended, then closes the connections.
    pub async fn shutdown(&self) {
        todo!()
    }
}
