//! Async Gearman client: foreground and background jobs, status, echo.
//!
//! API CONTRACT (bindings and the CLI rely on these names and signatures).

use std::time::Duration;

use bytes::Bytes;

use crate::protocol::Priority;
use crate::servers::ServerAddr;
use crate::Result;

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
        matches!(self, JobEvent::Complete(_) | JobEvent::Failed | JobEvent::Exception(_))
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
    // private fields chosen by the implementation
}

impl RunningJob {
    /// The server-assigned job handle.
    pub fn handle(&self) -> &str {
        todo!()
    }

    /// The next event; `None` after the final one. Errors on timeout or lost connection.
    pub async fn next_event(&mut self) -> Option<Result<JobEvent>> {
        todo!()
    }

    /// Waits for the end of the job, skipping intermediate events:
    /// `Ok(result)` on COMPLETE, `Error::JobFailed` / `Error::JobException` otherwise.
    pub async fn result(self) -> Result<Bytes> {
        todo!()
    }
}

/// A cheap-to-clone handle to a pipelined, multi-server Gearman client.
///
/// Connections are opened lazily on first use and re-opened with backoff.
#[derive(Debug, Clone)]
pub struct Client {
    // private fields chosen by the implementation
}

impl Client {
    /// Creates a client; no I/O happens until the first call. Fails only
    /// on invalid options (e.g. no servers).
    pub fn new(options: ClientOptions) -> Result<Client> {
        let _ = options;
        todo!()
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        todo!()
    }

    /// Submits a foreground job and waits for its result.
    pub async fn submit(&self, function: &str, data: impl Into<Bytes>, opts: SubmitOptions) -> Result<Bytes> {
        self.submit_job(function, data, opts).await?.result().await
    }

    /// Submits a foreground job and returns once the server created it;
    /// read its events from the returned [`RunningJob`].
    pub async fn submit_job(&self, function: &str, data: impl Into<Bytes>, opts: SubmitOptions) -> Result<RunningJob> {
        let _ = (function, data.into(), opts);
        todo!()
    }

    /// Submits a background job (or an epoch job when `opts.epoch` is set) and returns its handle.
    pub async fn submit_background(&self, function: &str, data: impl Into<Bytes>, opts: SubmitOptions) -> Result<String> {
        let _ = (function, data.into(), opts);
        todo!()
    }

    /// GET_STATUS of a handle this client (or another) created.
    pub async fn status(&self, handle: &str) -> Result<JobStatus> {
        let _ = handle;
        todo!()
    }

    /// GET_STATUS_UNIQUE, routed like a submission with that unique.
    pub async fn status_unique(&self, unique: &str) -> Result<JobStatus> {
        let _ = unique;
        todo!()
    }

    /// ECHO round trip to the first reachable server.
    pub async fn echo(&self, data: impl Into<Bytes>) -> Result<Bytes> {
        let _ = data.into();
        todo!()
    }

    /// Closes all connections; in-flight jobs end with `Error::Closed`.
    pub async fn close(&self) {
        todo!()
    }
}
