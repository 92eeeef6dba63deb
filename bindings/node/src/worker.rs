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
    job: Mutex<Held>,
    live: Arc<LiveJobs>,
}

/// Where a handed-out job is. `Job::cancelled` borrows the job across a
/// round trip to the server, so `cancelled()` takes it out of the slot for
/// that time; what JS does with the job meanwhile (all of it non-blocking
/// writes) is kept in order and done when the job is back.
enum Held {
    /// In the slot.
    Here(Box<Job>),
    /// Out for a `cancelled()` probe, with the calls made meanwhile.
    Probing(Vec<Op>),
    /// Ended (or never to be touched again).
    Gone,
}

/// A call on a job, deferred while the job is out for a probe.
enum Op {
    Data(Bytes),
    Warning(Bytes),
    Status(u32, u32),
    Complete(Bytes),
    Fail,
    Exception(String),
    Abandon,
}

impl Op {
    fn ends(&self) -> bool {
        matches!(
            self,
            Op::Complete(_) | Op::Fail | Op::Exception(_) | Op::Abandon
        )
    }

    /// Does a non-ending call.
    fn send(self, job: &Job) -> polygear::Result<()> {
        match self {
            Op::Data(d) => job.send_data(d),
            Op::Warning(d) => job.send_warning(d),
            Op::Status(n, d) => job.send_status(n, d),
            _ => Ok(()),
        }
    }

    /// Does an ending call.
    fn end(self, job: Job) -> polygear::Result<()> {
        match self {
            Op::Complete(r) => job.complete(r),
            Op::Fail => job.fail(),
            Op::Exception(m) => job.exception(m),
            Op::Abandon => {
                job.abandon();
                Ok(())
            }
            other => other.send(&job),
        }
    }
}

impl JobSlot {
    /// Takes the job for good (`None` if it ended or is out for a probe).
    fn take(&self) -> Option<Job> {
        let mut held = lock(&self.job);
        match std::mem::replace(&mut *held, Held::Gone) {
            Held::Here(job) => Some(*job),
            other => {
                *held = other;
                None
            }
        }
    }

    /// Does `op` now, or after the running probe; `Err` if the job has ended.
    fn apply(&self, op: Op) -> Result<()> {
        let mut held = lock(&self.job);
        match &mut *held {
            Held::Gone => Err(invalid("the job has already finished")),
            Held::Probing(ops) if ops.iter().any(Op::ends) => {
                Err(invalid("the job has already finished"))
            }
            Held::Probing(ops) => {
                ops.push(op);
                Ok(())
            }
            Held::Here(job) if !op.ends() => op.send(job).map_err(to_napi),
            Held::Here(_) => {
                let Held::Here(job) = std::mem::replace(&mut *held, Held::Gone) else {
                    unreachable!()
                };
                drop(held);
                let sent = op.end(*job).map_err(to_napi);
                self.live.ended(self.id);
                sent
            }
        }
    }

    /// Whether JS ended the job (or asked to).
    fn finished(&self) -> bool {
        match &*lock(&self.job) {
            Held::Here(_) => false,
            Held::Probing(ops) => ops.iter().any(Op::ends),
            Held::Gone => true,
        }
    }

    /// Takes the job out for a probe.
    fn lend(&self) -> Result<Job> {
        let mut held = lock(&self.job);
        match std::mem::replace(&mut *held, Held::Probing(Vec::new())) {
            Held::Here(job) => Ok(*job),
            other => {
                let probing = matches!(other, Held::Probing(_));
                *held = other;
                Err(invalid(if probing {
                    "a cancelled() check of this job is already running"
                } else {
                    "the job has already finished"
                }))
            }
        }
    }

    /// Puts the job back after a probe and does what was asked meanwhile.
    fn give_back(&self, job: Job) {
        let mut held = lock(&self.job);
        let ops = match std::mem::replace(&mut *held, Held::Gone) {
            Held::Probing(ops) => ops,
            _ => Vec::new(),
        };
        let mut job = Some(job);
        for op in ops {
            if op.ends() {
                if let Some(j) = job.take() {
                    let _ = op.end(j);
                }
            } else if let Some(j) = &job {
                let _ = op.send(j);
            }
        }
        match job {
            Some(j) => *held = Held::Here(Box::new(j)),
            None => {
                drop(held);
                self.live.ended(self.id);
            }
        }
    }
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
            job: Mutex::new(Held::Here(Box::new(job))),
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
            let mut held = lock(&slot.job);
            match std::mem::replace(&mut *held, Held::Gone) {
                Held::Here(job) => job.abandon(),
                // Abandoned when the probe gives it back.
                Held::Probing(mut ops) => {
                    ops.push(Op::Abandon);
                    *held = Held::Probing(ops);
                }
                Held::Gone => {}
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
        self.slot.finished()
    }

    /// WORK_DATA.
    #[napi]
    pub fn send_data(&self, data: Buffer) -> Result<()> {
        self.slot.apply(Op::Data(Bytes::from(data.to_vec())))
    }

    /// WORK_WARNING.
    #[napi]
    pub fn send_warning(&self, data: Buffer) -> Result<()> {
        self.slot.apply(Op::Warning(Bytes::from(data.to_vec())))
    }

    /// WORK_STATUS.
    #[napi]
    pub fn send_status(&self, numerator: u32, denominator: u32) -> Result<()> {
        self.slot.apply(Op::Status(numerator, denominator))
    }

    /// WORK_COMPLETE; ends the job.
    #[napi]
    pub fn complete(&self, result: Buffer) -> Result<()> {
        self.slot.apply(Op::Complete(Bytes::from(result.to_vec())))
    }

    /// WORK_FAIL; ends the job.
    #[napi]
    pub fn fail(&self) -> Result<()> {
        self.slot.apply(Op::Fail)
    }

    /// WORK_EXCEPTION with a message; ends the job.
    #[napi]
    pub fn exception(&self, message: String) -> Result<()> {
        self.slot.apply(Op::Exception(message))
    }

    /// Ends the job here without telling the server (its timeout passed:
    /// the server has given up on it); frees its slot.
    #[napi]
    pub fn abandon(&self) -> Result<()> {
        self.slot.apply(Op::Abandon)
    }

    /// Asks the job's server whether it still has the job (GET_STATUS over
    /// the worker's kept probe connection): true once it was cancelled or
    /// the server gave up on it. One round trip: poll every 0.1–1 s, not in
    /// a tight loop. One check at a time per job (index.js shares it).
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn cancelled(&self, env: Env) -> Result<AsyncBlock<bool>> {
        let job = self.slot.lend()?;
        let slot = self.slot.clone();
        AsyncBlockBuilder::new(async move {
            let r = job.cancelled().await;
            slot.give_back(job);
            r.map_err(to_napi)
        })
        .build(&env)
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
                    if let Some(job) = slot.take() {
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
