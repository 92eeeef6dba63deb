//! `NativeWorker` and `NativeJob`: JS handlers run on the JS thread through a
//! thread-safe function; the core worker does the networking.

use std::sync::{Arc, Mutex, MutexGuard};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunction;
use napi_derive::napi;
use polygear::{Bytes, Job, Worker, WorkerOptions};

use crate::error::{invalid, to_napi};
use crate::util::{millis, parse_servers};

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
}

/// The JS dispatcher: called with each job, returns a Promise that settles
/// once the job has been ended (index.js always resolves it).
type Dispatch = ThreadsafeFunction<NativeJob, Promise<()>, NativeJob, Status, false, true>;

/// A job handed to JS. The core `Job` is shared with the Rust side, which
/// fails it if JS never ended it.
#[napi]
pub struct NativeJob {
    handle: String,
    function: String,
    unique: String,
    data: Bytes,
    job: Arc<Mutex<Option<Job>>>,
}

fn lock(job: &Mutex<Option<Job>>) -> MutexGuard<'_, Option<Job>> {
    job.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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

    /// True once the job was completed, failed or raised.
    #[napi(getter)]
    pub fn finished(&self) -> bool {
        lock(&self.job).is_none()
    }

    fn with_job(&self, f: impl FnOnce(&Job) -> polygear::Result<()>) -> Result<()> {
        match lock(&self.job).as_ref() {
            Some(job) => f(job).map_err(to_napi),
            None => Err(invalid("the job has already finished")),
        }
    }

    fn finish(&self, f: impl FnOnce(Job) -> polygear::Result<()>) -> Result<()> {
        match lock(&self.job).take() {
            Some(job) => f(job).map_err(to_napi),
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
}

/// A Gearman worker (wrapped by `Worker` in index.js).
#[napi]
pub struct NativeWorker {
    inner: Worker,
}

#[napi]
impl NativeWorker {
    /// Creates the worker; connections open when `work` starts.
    #[napi(constructor)]
    pub fn new(args: WorkerArgs) -> Result<Self> {
        let mut o = WorkerOptions {
            servers: parse_servers(&args.servers)?,
            ..WorkerOptions::default()
        };
        if let Some(c) = args.concurrency {
            if c == 0 {
                return Err(invalid("concurrency must be ≥ 1"));
            }
            o.concurrency = c as usize;
        }
        if let Some(t) = args.connect_timeout {
            o.connect_timeout = millis("connectTimeout", t)?;
        }
        o.client_id = args.client_id;
        let inner = napi::bindgen_prelude::within_runtime_if_available(|| Worker::new(o)).map_err(to_napi)?;
        Ok(NativeWorker { inner })
    }

    /// CAN_DO (or CAN_DO_TIMEOUT with `timeout` ms).
    #[napi]
    pub fn register(&self, function: String, timeout: Option<f64>) -> Result<()> {
        let timeout = timeout.map(|t| millis("timeout", t)).transpose()?;
        napi::bindgen_prelude::within_runtime_if_available(|| self.inner.register(&function, timeout)).map_err(to_napi)
    }

    /// CANT_DO.
    #[napi]
    pub fn unregister(&self, function: String) -> Result<()> {
        napi::bindgen_prelude::within_runtime_if_available(|| self.inner.unregister(&function)).map_err(to_napi)
    }

    /// Runs `dispatch` for every job until `stop`; resolves after the running
    /// handlers finished.
    #[napi(ts_args_type = "dispatch: (job: NativeJob) => Promise<void>", ts_return_type = "Promise<void>")]
    pub fn work(&self, env: Env, dispatch: Dispatch) -> Result<AsyncBlock<()>> {
        let worker = self.inner.clone();
        let dispatch = Arc::new(dispatch);
        AsyncBlockBuilder::new(async move {
            worker
                .run(move |job: Job| {
                    let dispatch = dispatch.clone();
                    async move {
                        let shared = Arc::new(Mutex::new(None));
                        let native = NativeJob {
                            handle: job.handle().to_string(),
                            function: job.function().to_string(),
                            unique: job.unique().to_string(),
                            data: job.data().clone(),
                            job: shared.clone(),
                        };
                        *lock(&shared) = Some(job);
                        let outcome = match dispatch.call_async_catch(native).await {
                            Ok(promise) => promise.await.err(),
                            Err(e) => Some(e),
                        };
                        // index.js always ends the job; this covers a dispatcher that
                        // could not run (e.g. the JS environment is shutting down).
                        let leftover = lock(&shared).take();
                        if let Some(job) = leftover {
                            let _ = match outcome {
                                Some(e) => job.exception(e.reason.clone()),
                                None => job.fail(),
                            };
                        }
                    }
                })
                .await
                .map_err(to_napi)
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
        AsyncBlockBuilder::new(async move {
            worker.shutdown().await;
            Ok(())
        })
        .build(&env)
    }
}
