//! `NativeClient`: submissions, job events, status.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use polygear::{Bytes, Client, ClientOptions, JobEvent, RunningJob, SubmitOptions};
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
    }
    Ok(opts)
}

fn watch_of(cancel: Option<&Canceller>) -> CancelWatch {
    cancel
        .map(Canceller::watch)
        .unwrap_or_else(CancelWatch::never)
}

/// Runs `fut` unless `cancel` fires first.
async fn cancellable<T>(
    mut cancel: CancelWatch,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        r = fut => r,
        _ = cancel.cancelled() => Err(aborted()),
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
            |client, data, opts, _| async move {
                let r = client
                    .submit(&function, data, opts)
                    .await
                    .map_err(to_napi)?;
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
                let job = client
                    .submit_job(&function, data, opts)
                    .await
                    .map_err(to_napi)?;
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
            |client, data, opts, _| async move {
                client
                    .submit_background(&function, data, opts)
                    .await
                    .map_err(to_napi)
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
