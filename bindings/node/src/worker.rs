//! `NativeWorker` and `NativeJob`: JS handlers run on the JS thread through a
//! thread-safe function; the core worker does the networking. Connection
//! events reach JS through another one (see [`crate::worker_events`]).

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use polygear::{Bytes, Job, Worker, WorkerOptions};
use tokio::sync::{watch, Notify};

use crate::error::{arg_err, invalid, to_napi};
use crate::util::{lock, millis, parse_servers, timeout_millis};
use crate::worker_events::{forward_events, EventSink};

/// Worker construction options (times in milliseconds).
#[napi(object)]
pub struct WorkerArgs {
    /// `host[:port]` entries.
    pub servers: Vec<String>,
    /// Jobs processed at the same time.
    pub concurrency: Option<u32>,
    /// SET_CLIENT_ID value.
    pub client_id: Option<String>,
    /// Deadline for establishing a TCP connection.
    pub connect_timeout: Option<f64>,
    /// TLS towards the servers.
    pub tls: Option<crate::util::TlsArgs>,
}

/// The JS dispatcher, called (fire-and-forget, weak: it does not keep Node
/// alive) with each job; index.js always ends the job it is given.
type Dispatch = ThreadsafeFunction<NativeJob, (), NativeJob, Status, false, true>;

/// The core `Job` handed to JS, until JS ends it (or the worker gives up
/// on JS and fails it).
struct JobSlot {
    id: u64,
    job: Mutex<Option<Job>>,
    live: Arc<LiveJobs>,
}

/// The jobs JS holds: `work` waits for them after a stop; a shutdown that
/// handed them back abandons them. Ending a job needs no hand-off to the
/// runtime thread.
#[derive(Default)]
struct LiveJobs {
    next_id: std::sync::atomic::AtomicU64,
    slots: Mutex<std::collections::HashMap<u64, Arc<JobSlot>>>,
    /// Notified when the last live job ended.
    idle: Notify,
}

impl LiveJobs {
    fn hand_out(self: &Arc<Self>, job: Job) -> Arc<JobSlot> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let slot = Arc::new(JobSlot {
            id,
            job: Mutex::new(Some(job)),
            live: self.clone(),
        });
        lock(&self.slots).insert(id, slot.clone());
        slot
    }

    fn ended(&self, id: u64) {
        let mut slots = lock(&self.slots);
        slots.remove(&id);
        if slots.is_empty() {
            drop(slots);
            self.idle.notify_waiters();
        }
    }

    fn is_empty(&self) -> bool {
        lock(&self.slots).is_empty()
    }

    /// Ends every job JS still holds without a word to the server (which
    /// was handed them back): their later results are ignored.
    fn abandon_all(&self) {
        let slots: Vec<_> = lock(&self.slots).drain().map(|(_, s)| s).collect();
        for slot in slots {
            let job = lock(&slot.job).take();
            if let Some(job) = job {
                job.abandon();
            }
        }
        self.idle.notify_waiters();
    }
}

/// A job handed to JS.
#[napi]
pub struct NativeJob {
    handle: String,
    function: String,
    unique: String,
    data: Bytes,
    slot: Arc<JobSlot>,
    /// The CAN_DO_TIMEOUT in force when the job was assigned.
    timeout: Option<std::time::Duration>,
}

#[napi]
impl NativeJob {
    /// The job handle.
    #[napi(getter)]
    pub fn handle(&self) -> String {
        self.handle.clone()
    }

    /// The function name.
    #[napi(getter)]
    pub fn function(&self) -> String {
        self.function.clone()
    }

    /// The unique key ('' if none).
    #[napi(getter)]
    pub fn unique(&self) -> String {
        self.unique.clone()
    }

    /// The workload.
    #[napi(getter)]
    pub fn data(&self) -> Buffer {
        Buffer::from(self.data.to_vec())
    }

    /// The function's timeout (ms) when the job was assigned; null if none.
    #[napi(getter)]
    pub fn timeout(&self) -> Option<f64> {
        self.timeout.map(|d| d.as_secs_f64() * 1000.0)
    }

    /// True once the job was completed, failed, raised or abandoned.
    #[napi(getter)]
    pub fn finished(&self) -> bool {
        lock(&self.slot.job).is_none()
    }

    fn with_job(&self, f: impl FnOnce(&Job) -> polygear::Result<()>) -> Result<()> {
        match lock(&self.slot.job).as_ref() {
            Some(job) => f(job).map_err(to_napi),
            None => Err(invalid("the job has already finished")),
        }
    }

    fn finish(&self, f: impl FnOnce(Job) -> polygear::Result<()>) -> Result<()> {
        let job = lock(&self.slot.job).take();
        match job {
            Some(job) => {
                let sent = f(job).map_err(to_napi);
                self.slot.live.ended(self.slot.id);
                sent
            }
            None => Err(invalid("the job has already finished")),
        }
    }

    /// WORK_DATA.
    #[napi]
    pub fn send_data(&self, data: Buffer) -> Result<()> {
        let data = Bytes::from(data.to_vec());
        self.with_job(|j| j.send_data(data))
    }

    /// WORK_WARNING.
    #[napi]
    pub fn send_warning(&self, data: Buffer) -> Result<()> {
        let data = Bytes::from(data.to_vec());
        self.with_job(|j| j.send_warning(data))
    }

    /// WORK_STATUS.
    #[napi]
    pub fn send_status(&self, numerator: u32, denominator: u32) -> Result<()> {
        self.with_job(|j| j.send_status(numerator, denominator))
    }

    /// WORK_COMPLETE; ends the job.
    #[napi]
    pub fn complete(&self, result: Buffer) -> Result<()> {
        let result = Bytes::from(result.to_vec());
        self.finish(|j| j.complete(result))
    }

    /// WORK_FAIL; ends the job.
    #[napi]
    pub fn fail(&self) -> Result<()> {
        self.finish(Job::fail)
    }

    /// WORK_EXCEPTION with a message; ends the job.
    #[napi]
    pub fn exception(&self, message: String) -> Result<()> {
        self.finish(|j| j.exception(message))
    }

    /// Ends the job here without telling the server (its timeout passed:
    /// the server has given up on it); frees its slot.
    #[napi]
    pub fn abandon(&self) -> Result<()> {
        self.finish(|j| {
            j.abandon();
            Ok(())
        })
    }
}

/// A Gearman worker (wrapped by `Worker` in index.js).
#[napi]
pub struct NativeWorker {
    inner: Worker,
    /// The jobs JS holds.
    live: Arc<LiveJobs>,
    /// Fired once the worker is shut down: ends the event forwarding.
    closed: watch::Sender<bool>,
}

#[napi]
impl NativeWorker {
    /// Creates the worker; connections open when `work` starts.
    #[napi(constructor)]
    pub fn new(args: WorkerArgs) -> Result<Self> {
        let mut o = WorkerOptions {
            servers: parse_servers(&args.servers)?,
            tls: crate::util::tls_options(args.tls)?,
            ..WorkerOptions::default()
        };
        if let Some(c) = args.concurrency {
            o.concurrency = polygear_bindings::args::concurrency(c as usize).map_err(arg_err)?;
        }
        if let Some(t) = args.connect_timeout {
            o.connect_timeout = timeout_millis("options.connectTimeout", t)?;
        }
        o.client_id = args.client_id;
        let inner = napi::bindgen_prelude::within_runtime_if_available(|| Worker::new(o))
            .map_err(to_napi)?;
        Ok(NativeWorker {
            inner,
            live: Arc::new(LiveJobs::default()),
            closed: watch::channel(false).0,
        })
    }

    /// Calls `callback` with each connection event until the worker is shut
    /// down; call it before `work`/`connect` to see the first attempts.
    /// Does not keep Node alive.
    #[napi(ts_args_type = "callback: (event: NativeWorkerEvent) => void")]
    pub fn on_event(&self, callback: EventSink) {
        let events = self.inner.events();
        let closed = self.closed.subscribe();
        napi::bindgen_prelude::spawn(forward_events(events, closed, callback));
    }

    /// Fail-fast start: resolves once a server is connected with the
    /// functions registered; rejects once every server failed its attempt
    /// (the worker keeps retrying until it is shut down).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn connect(&self, env: Env) -> Result<AsyncBlock<()>> {
        let worker = self.inner.clone();
        AsyncBlockBuilder::new(async move { worker.connect().await.map_err(to_napi) }).build(&env)
    }

    /// CAN_DO (or CAN_DO_TIMEOUT with `timeout` ms).
    #[napi]
    pub fn register(&self, function: String, timeout: Option<f64>) -> Result<()> {
        let timeout = timeout
            .map(|t| timeout_millis("options.timeout", t))
            .transpose()?;
        napi::bindgen_prelude::within_runtime_if_available(|| {
            self.inner.register(&function, timeout)
        })
        .map_err(to_napi)
    }

    /// CANT_DO.
    #[napi]
    pub fn unregister(&self, function: String) -> Result<()> {
        napi::bindgen_prelude::within_runtime_if_available(|| self.inner.unregister(&function))
            .map_err(to_napi)
    }

    /// Runs `dispatch` for every job until `stop`; resolves after the running
    /// handlers finished.
    #[napi(
        ts_args_type = "dispatch: (job: NativeJob) => void",
        ts_return_type = "Promise<void>"
    )]
    pub fn work(&self, env: Env, dispatch: Dispatch) -> Result<AsyncBlock<()>> {
        let worker = self.inner.clone();
        let live = self.live.clone();
        AsyncBlockBuilder::new(async move {
            // Each job goes to JS as it comes; JS ends it from its own thread
            // (the core writes the result and the next GRAB right there).
            while let Some(job) = worker.next_job().await {
                let timeout = job.timeout();
                let (handle, function, unique, data) = (
                    job.handle().to_string(),
                    job.function().to_string(),
                    job.unique().to_string(),
                    job.data().clone(),
                );
                let slot = live.hand_out(job);
                let native = NativeJob {
                    handle,
                    function,
                    unique,
                    data,
                    slot: slot.clone(),
                    timeout,
                };
                if dispatch.call(native, ThreadsafeFunctionCallMode::NonBlocking) != Status::Ok {
                    // JS cannot run it (the environment is going away): fail it.
                    let job = lock(&slot.job).take();
                    if let Some(job) = job {
                        let _ = job.fail();
                    }
                    live.ended(slot.id);
                }
            }
            // Stopped: wait for the jobs JS still runs (a shutdown that
            // hands them back abandons them).
            loop {
                let idle = live.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if live.is_empty() {
                    break;
                }
                idle.await;
            }
            Ok(())
        })
        .build(&env)
    }

    /// Graceful stop: grab no new jobs; running jobs may finish.
    #[napi]
    pub fn stop(&self) {
        self.inner.stop();
    }

    /// True once `stop` was called.
    #[napi(getter)]
    pub fn stopped(&self) -> bool {
        self.inner.is_stopped()
    }

    /// Waits for unfinished jobs, then closes the connections.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn shutdown(&self, env: Env) -> Result<AsyncBlock<()>> {
        let worker = self.inner.clone();
        let closed = self.closed.clone();
        AsyncBlockBuilder::new(async move {
            worker.shutdown().await;
            closed.send_replace(true);
            Ok(())
        })
        .build(&env)
    }

    /// `shutdown` waiting at most `timeout` ms for the running jobs: those
    /// still running then are handed back to the server (which requeues
    /// them) and end here; resolves with how many were handed back.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn shutdown_timeout(&self, env: Env, timeout: f64) -> Result<AsyncBlock<u32>> {
        let timeout = millis("timeout", timeout)?;
        let worker = self.inner.clone();
        let live = self.live.clone();
        let closed = self.closed.clone();
        AsyncBlockBuilder::new(async move {
            let handed_back = worker.shutdown_timeout(timeout).await;
            live.abandon_all();
            closed.send_replace(true);
            Ok(u32::try_from(handed_back).unwrap_or(u32::MAX))
        })
        .build(&env)
    }
}
