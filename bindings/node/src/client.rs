//! `NativeClient`: submissions, job events, status.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use polygear::{Bytes, Client, ClientOptions, JobEvent, JobResult, RunningJob, SubmitOptions};
use tokio::sync::Mutex;

use crate::error::{aborted, arg_err, to_napi};
use crate::util::{eager, parse_servers, timeout_millis, CancelWatch, Canceller, InFlight};

/// Client construction options (times in milliseconds).
#[napi(object)]
pub struct ClientArgs {
    /// `host[:port]` entries.
    pub servers: Vec<String>,
    /// Default deadline for a whole foreground job.
    pub timeout: Option<f64>,
    /// Deadline for establishing a TCP connection.
    pub connect_timeout: Option<f64>,
    /// Deadline for JOB_CREATED and status/echo replies.
    pub submit_timeout: Option<f64>,
    /// SET_CLIENT_ID value.
    pub client_id: Option<String>,
    /// TLS towards the servers.
    pub tls: Option<crate::util::TlsArgs>,
}

/// Per-submission options (times in milliseconds).
#[napi(object)]
pub struct SubmitArgs {
    /// Unique key.
    pub unique: Option<String>,
    /// 0 = high, 1 = normal, 2 = low.
    pub priority: Option<u32>,
    /// Whole-job deadline.
    pub timeout: Option<f64>,
    /// Background only: run at this Unix time (seconds).
    pub epoch: Option<i64>,
    /// Background only: keep the result this long (ms, rounded up to whole
    /// seconds by the core) for `result()`; polygeard only.
    pub retain: Option<f64>,
}

/// Result of GET_STATUS / GET_STATUS_UNIQUE.
#[napi(object)]
pub struct JsJobStatus {
    /// The handle (or unique) asked about.
    pub handle: String,
    /// The server knows the job.
    pub known: bool,
    /// A worker is running it.
    pub running: bool,
    /// Progress numerator.
    pub numerator: u32,
    /// Progress denominator.
    pub denominator: u32,
    /// Waiting clients (status by unique only).
    pub client_count: Option<u32>,
}

impl From<polygear::JobStatus> for JsJobStatus {
    fn from(s: polygear::JobStatus) -> Self {
        JsJobStatus {
            handle: s.handle,
            known: s.known,
            running: s.running,
            numerator: s.numerator,
            denominator: s.denominator,
            client_count: s.client_count,
        }
    }
}

/// A retained job's state (`Client.resultState`).
#[napi(object)]
pub struct JsResultState {
    /// `complete`, `queued`, `running`, `failed`, `exception` or `unknown`.
    pub state: String,
    /// The result (`complete`) or the worker's message (`exception`).
    pub data: Option<Buffer>,
}

/// One event of a running foreground job.
#[napi(object)]
pub struct JsJobEvent {
    /// `data`, `warning`, `status`, `complete`, `fail` or `exception`.
    pub kind: String,
    /// Payload of data / warning / complete / exception.
    pub data: Option<Buffer>,
    /// Status numerator.
    pub numerator: Option<u32>,
    /// Status denominator.
    pub denominator: Option<u32>,
    /// `fail`: why, when the server failed the job itself and said so.
    pub reason: Option<String>,
}

impl From<JobEvent> for JsJobEvent {
    fn from(ev: JobEvent) -> Self {
        let (kind, data, num) = match ev {
            JobEvent::Data(d) => ("data", Some(d), None),
            JobEvent::Warning(d) => ("warning", Some(d), None),
            JobEvent::Status {
                numerator,
                denominator,
            } => ("status", None, Some((numerator, denominator))),
            JobEvent::Complete(d) => ("complete", Some(d), None),
            JobEvent::Failed => ("fail", None, None),
            JobEvent::Exception(d) => ("exception", Some(d), None),
        };
        JsJobEvent {
            kind: kind.to_string(),
            data: data.map(|d| Buffer::from(d.to_vec())),
            numerator: num.map(|n| n.0),
            denominator: num.map(|n| n.1),
            reason: None,
        }
    }
}

fn submit_options(args: Option<SubmitArgs>) -> Result<SubmitOptions> {
    let mut opts = SubmitOptions::default();
    if let Some(a) = args {
        opts.unique = a.unique.map(Bytes::from);
        if let Some(p) = a.priority {
            opts.priority = polygear_bindings::args::priority_index(p).map_err(arg_err)?;
        }
        if let Some(t) = a.timeout {
            opts.timeout = Some(timeout_millis("options.timeout", t)?);
        }
        opts.epoch = a.epoch;
        if let Some(r) = a.retain {
            opts.retain = Some(crate::util::millis("options.retain", r)?);
        }
    }
    Ok(opts)
}

fn watch_of(cancel: Option<&Canceller>) -> CancelWatch {
    cancel
        .map(Canceller::watch)
        .unwrap_or_else(CancelWatch::never)
}

/// Runs `fut` unless `cancel` fires first (an outcome already there wins).
async fn cancellable<T>(
    mut cancel: CancelWatch,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        biased;
        r = fut => r,
        _ = cancel.cancelled() => Err(aborted()),
    }
}

/// Awaits a task spawned for an abortable submission.
async fn joined<T>(task: tokio::task::JoinHandle<polygear::Result<T>>) -> Result<T> {
    match task.await {
        Ok(r) => r.map_err(to_napi),
        Err(e) => Err(Error::from_reason(format!(
            "internal error: submission task ended: {e}"
        ))),
    }
}

/// A foreground job whose abort (`watch`) also cancels it on the server.
///
/// The submission runs in its own task, so an abort that rejects the
/// promise before JOB_CREATED does not drop it: once the handle arrives the
/// task sees the abort and cancels the job ([`Client::cancel`]); an abort
/// while the job runs cancels it at once.
async fn submit_abortable(
    client: Client,
    function: String,
    data: Bytes,
    opts: SubmitOptions,
    mut watch: CancelWatch,
) -> Result<Bytes> {
    let outcome = joined(tokio::spawn(async move {
        let job = client.submit_job(&function, data, opts).await?;
        let handle = job.handle().to_string();
        tokio::select! {
            biased;
            _ = watch.cancelled() => {
                let _ = client.cancel(&handle).await;
                Ok(None)
            }
            r = job.result() => r.map(Some),
        }
    }))
    .await?;
    outcome.ok_or_else(aborted)
}

/// Cancels the job `handle` on the server if `watch` fired (a submission
/// aborted before its handle was known).
async fn cancel_if_aborted(client: &Client, watch: &CancelWatch, handle: &str) {
    if watch.fired() {
        let _ = client.cancel(handle).await;
    }
}

/// A pipelined, multi-server Gearman client (wrapped by `Client` in index.js).
#[napi]
pub struct NativeClient {
    inner: Client,
    inflight: InFlight,
}

impl NativeClient {
    /// Starts one submission made by `run` (given the client, payload,
    /// options and the cancel watch): counted in flight until it ends, its
    /// request written from the JS thread when it is alone ([`eager`]),
    /// ended with an abort error when `cancel` fires.
    fn start<T, F, Fut>(
        &self,
        env: &Env,
        data: Buffer,
        opts: Option<SubmitArgs>,
        cancel: Option<&Canceller>,
        run: F,
    ) -> Result<AsyncBlock<T>>
    where
        T: ToNapiValue + TypeName + Send + 'static,
        F: FnOnce(Client, Bytes, SubmitOptions, CancelWatch) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let opts = submit_options(opts)?;
        let (alone, counted) = self.inflight.enter();
        let watch = watch_of(cancel);
        let fut = run(
            self.inner.clone(),
            Bytes::from(data.to_vec()),
            opts,
            watch.clone(),
        );
        AsyncBlockBuilder::new(eager(
            alone,
            cancellable(watch, async move {
                let _counted = counted;
                fut.await
            }),
        ))
        .build(env)
    }

    /// GET_STATUS of a handle, or GET_STATUS_UNIQUE of a unique key.
    fn status_of(
        &self,
        env: &Env,
        key: String,
        by_unique: bool,
    ) -> Result<AsyncBlock<JsJobStatus>> {
        let client = self.inner.clone();
        AsyncBlockBuilder::new(async move {
            let r = if by_unique {
                client.status_unique(&key).await
            } else {
                client.status(&key).await
            };
            r.map(Into::into).map_err(to_napi)
        })
        .build(env)
    }
}

#[napi]
impl NativeClient {
    /// Creates the client; no I/O happens until the first call.
    #[napi(constructor)]
    pub fn new(args: ClientArgs) -> Result<Self> {
        let mut o = ClientOptions {
            servers: parse_servers(&args.servers)?,
            tls: crate::util::tls_options(args.tls)?,
            ..ClientOptions::default()
        };
        if let Some(t) = args.timeout {
            o.job_timeout = Some(timeout_millis("options.timeout", t)?);
        }
        if let Some(t) = args.connect_timeout {
            o.connect_timeout = timeout_millis("options.connectTimeout", t)?;
        }
        if let Some(t) = args.submit_timeout {
            o.submit_timeout = timeout_millis("options.submitTimeout", t)?;
        }
        o.client_id = args.client_id;
        let inner = napi::bindgen_prelude::within_runtime_if_available(|| Client::new(o))
            .map_err(to_napi)?;
        Ok(NativeClient {
            inner,
            inflight: InFlight::default(),
        })
    }

    /// Foreground job; resolves with the result.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn submit(
        &self,
        env: Env,
        function: String,
        data: Buffer,
        opts: Option<SubmitArgs>,
        cancel: Option<&Canceller>,
    ) -> Result<AsyncBlock<Buffer>> {
        self.start(
            &env,
            data,
            opts,
            cancel,
            |client, data, opts, watch| async move {
                let r = if watch.armed() {
                    submit_abortable(client, function, data, opts, watch).await?
                } else {
                    client
                        .submit(&function, data, opts)
                        .await
                        .map_err(to_napi)?
                };
                Ok(Buffer::from(r.to_vec()))
            },
        )
    }

    /// Foreground job whose events can be read; resolves once the server created it.
    #[napi(ts_return_type = "Promise<NativeRunningJob>")]
    pub fn submit_job(
        &self,
        env: Env,
        function: String,
        data: Buffer,
        opts: Option<SubmitArgs>,
        cancel: Option<&Canceller>,
    ) -> Result<AsyncBlock<NativeRunningJob>> {
        self.start(
            &env,
            data,
            opts,
            cancel,
            |client, data, opts, job_watch| async move {
                let job = if job_watch.armed() {
                    let (client, watch) = (client.clone(), job_watch.clone());
                    joined(tokio::spawn(async move {
                        let job = client.submit_job(&function, data, opts).await?;
                        cancel_if_aborted(&client, &watch, job.handle()).await;
                        Ok(job)
                    }))
                    .await?
                } else {
                    client
                        .submit_job(&function, data, opts)
                        .await
                        .map_err(to_napi)?
                };
                Ok(NativeRunningJob {
                    handle: job.handle().to_string(),
                    job: Arc::new(Mutex::new(Some(job))),
                    cancel: job_watch,
                })
            },
        )
    }

    /// Background job; resolves with its handle.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn submit_background(
        &self,
        env: Env,
        function: String,
        data: Buffer,
        opts: Option<SubmitArgs>,
        cancel: Option<&Canceller>,
    ) -> Result<AsyncBlock<String>> {
        self.start(
            &env,
            data,
            opts,
            cancel,
            |client, data, opts, watch| async move {
                if !watch.armed() {
                    return client
                        .submit_background(&function, data, opts)
                        .await
                        .map_err(to_napi);
                }
                joined(tokio::spawn(async move {
                    let handle = client.submit_background(&function, data, opts).await?;
                    cancel_if_aborted(&client, &watch, &handle).await;
                    Ok(handle)
                }))
                .await
            },
        )
    }

    /// GET_STATUS of a job handle.
    #[napi(ts_return_type = "Promise<JsJobStatus>")]
    pub fn status(&self, env: Env, handle: String) -> Result<AsyncBlock<JsJobStatus>> {
        self.status_of(&env, handle, false)
    }

    /// GET_STATUS_UNIQUE of a unique key.
    #[napi(ts_return_type = "Promise<JsJobStatus>")]
    pub fn status_unique(&self, env: Env, unique: String) -> Result<AsyncBlock<JsJobStatus>> {
        self.status_of(&env, unique, true)
    }

    /// The retained result of background job `handle`: the data once it
    /// completed, `null` while queued, running, unknown or expired; rejects
    /// for a failed job (JobFailed / JobCancelled / JobException) and on a
    /// server that is not polygeard (ServerError).
    #[napi(ts_return_type = "Promise<Buffer | null>")]
    pub fn result(&self, env: Env, handle: String) -> Result<AsyncBlock<Option<Buffer>>> {
        let client = self.inner.clone();
        AsyncBlockBuilder::new(async move {
            let r = client.result(&handle).await.map_err(to_napi)?;
            Ok(r.map(|b| Buffer::from(b.to_vec())))
        })
        .build(&env)
    }

    /// The retained state of background job `handle`: `complete`,
    /// `queued`, `running`, `failed`, `exception` or `unknown`, with the data
    /// of `complete` / the message of `exception`.
    #[napi(ts_return_type = "Promise<JsResultState>")]
    pub fn result_state(&self, env: Env, handle: String) -> Result<AsyncBlock<JsResultState>> {
        let client = self.inner.clone();
        AsyncBlockBuilder::new(async move {
            let r = client.result_state(&handle).await.map_err(to_napi)?;
            let state = r.name().to_string();
            let data = match r {
                JobResult::Complete(d) | JobResult::Exception(d) => Some(Buffer::from(d.to_vec())),
                _ => None,
            };
            Ok(JsResultState { state, data })
        })
        .build(&env)
    }

    /// Cancels job `handle`: true if a server had it queued or running.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn cancel(&self, env: Env, handle: String) -> Result<AsyncBlock<bool>> {
        let client = self.inner.clone();
        AsyncBlockBuilder::new(async move { client.cancel(&handle).await.map_err(to_napi) })
            .build(&env)
    }

    /// ECHO round trip.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn echo(&self, env: Env, data: Buffer) -> Result<AsyncBlock<Buffer>> {
        let client = self.inner.clone();
        let data = Bytes::from(data.to_vec());
        AsyncBlockBuilder::new(async move {
            let r = client.echo(data).await.map_err(to_napi)?;
            Ok(Buffer::from(r.to_vec()))
        })
        .build(&env)
    }

    /// Closes every connection; in-flight jobs fail with a closed error.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> Result<AsyncBlock<()>> {
        let client = self.inner.clone();
        AsyncBlockBuilder::new(async move {
            client.close().await;
            Ok(())
        })
        .build(&env)
    }
}

/// A submitted foreground job whose events are read one by one.
#[napi]
pub struct NativeRunningJob {
    handle: String,
    job: Arc<Mutex<Option<RunningJob>>>,
    cancel: CancelWatch,
}

#[napi]
impl NativeRunningJob {
    /// The server-assigned job handle.
    #[napi(getter)]
    pub fn handle(&self) -> String {
        self.handle.clone()
    }

    /// The next event, or `null` after the final one.
    #[napi(ts_return_type = "Promise<JsJobEvent | null>")]
    pub fn next_event(&self, env: Env) -> Result<AsyncBlock<Option<JsJobEvent>>> {
        let job = self.job.clone();
        let watch = self.cancel.clone();
        AsyncBlockBuilder::new(cancellable(watch, async move {
            let mut guard = job.lock().await;
            let Some(running) = guard.as_mut() else {
                return Ok(None);
            };
            match running.next_event().await {
                None => {
                    *guard = None;
                    Ok(None)
                }
                Some(Ok(ev)) => {
                    let (failed, is_final) = (matches!(ev, JobEvent::Failed), ev.is_final());
                    let mut out = JsJobEvent::from(ev);
                    if failed {
                        out.reason = running.fail_reason();
                    }
                    if is_final {
                        *guard = None;
                    }
                    Ok(Some(out))
                }
                Some(Err(e)) => {
                    *guard = None;
                    Err(to_napi(e))
                }
            }
        }))
        .build(&env)
    }
}
