//! `NativeAdmin`: gearmand's text admin protocol as typed calls.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use polygear::protocol::admin::{FunctionStatus, JobInfo, PriorityStatus, WorkerInfo};
use polygear::{Admin, DeadJob, DrainingWorker, RetryPolicy, ScheduleInfo, ServerAddr};
use tokio::sync::Mutex;

use crate::error::{invalid, to_napi};
use crate::util::{millis, timeout_millis};

/// A `status` line.
#[napi(object)]
pub struct JsFunctionStatus {
    /// Function name.
    pub function: String,
    /// Waiting + running jobs.
    pub total: f64,
    /// Running jobs.
    pub running: f64,
    /// Registered workers.
    pub workers: f64,
}

/// A `prioritystatus` line.
#[napi(object)]
pub struct JsPriorityStatus {
    /// Function name.
    pub function: String,
    /// Waiting high-priority jobs.
    pub high: f64,
    /// Waiting normal-priority jobs.
    pub normal: f64,
    /// Waiting low-priority jobs.
    pub low: f64,
    /// Registered workers.
    pub workers: f64,
}

/// A `workers` line.
#[napi(object)]
pub struct JsWorkerInfo {
    /// Server-side connection number.
    pub fd: f64,
    /// Peer address.
    pub ip: String,
    /// Client id or `-`.
    pub client_id: String,
    /// Registered functions.
    pub functions: Vec<String>,
}

/// A `show jobs` line.
#[napi(object)]
pub struct JsJobInfo {
    /// Job handle.
    pub handle: String,
    /// Lost-assignment counter.
    pub retries: u32,
    /// Abandoned or cancelled.
    pub ignore: bool,
    /// Background job.
    pub queued: bool,
}

impl From<FunctionStatus> for JsFunctionStatus {
    fn from(s: FunctionStatus) -> Self {
        JsFunctionStatus {
            function: s.function,
            total: s.total as f64,
            running: s.running as f64,
            workers: s.workers as f64,
        }
    }
}

impl From<PriorityStatus> for JsPriorityStatus {
    fn from(s: PriorityStatus) -> Self {
        JsPriorityStatus {
            function: s.function,
            high: s.high as f64,
            normal: s.normal as f64,
            low: s.low as f64,
            workers: s.workers as f64,
        }
    }
}

impl From<WorkerInfo> for JsWorkerInfo {
    fn from(w: WorkerInfo) -> Self {
        JsWorkerInfo {
            fd: w.fd as f64,
            ip: w.ip,
            client_id: w.client_id,
            functions: w.functions,
        }
    }
}

impl From<JobInfo> for JsJobInfo {
    fn from(j: JobInfo) -> Self {
        JsJobInfo {
            handle: j.handle,
            retries: j.retries,
            ignore: j.ignore,
            queued: j.queued,
        }
    }
}

/// A function's retry policy (times in milliseconds).
#[napi(object)]
pub struct JsRetryPolicy {
    /// Function name.
    pub function: String,
    /// Runs in all, the first included.
    pub max_attempts: u32,
    /// Delay after the first failure (doubled after each further one), ms.
    pub backoff: f64,
    /// Cap of the delay, ms.
    pub max_delay: f64,
}

/// A job in the dead set (times in Unix seconds; index.js makes Dates).
#[napi(object)]
pub struct JsDeadJob {
    /// Its handle.
    pub handle: String,
    /// Its function.
    pub function: String,
    /// Its unique key.
    pub unique: Buffer,
    /// Its workload.
    pub data: Buffer,
    /// Runs made.
    pub attempts: u32,
    /// The last failure's text.
    pub error: String,
    /// Submitted at (Unix seconds).
    pub submitted: f64,
    /// Moved to the dead set at (Unix seconds).
    pub failed_at: f64,
}

/// A function with a duration setting (retention, unique window), in ms.
#[napi(object)]
pub struct JsFunctionDuration {
    /// Function name.
    pub function: String,
    /// The duration, ms.
    pub duration: f64,
}

/// A worker connection being drained.
#[napi(object)]
pub struct JsDrainingWorker {
    /// Its fd (first column of `workers`).
    pub fd: f64,
    /// Its client id (`-` if none).
    pub client_id: String,
}

/// A periodic job (times in Unix seconds; index.js makes Dates).
#[napi(object)]
pub struct JsSchedule {
    /// Its name.
    pub name: String,
    /// The function its jobs go to.
    pub function: String,
    /// Its cron expression (UTC).
    pub cron: String,
    /// The last occurrence fired, if any.
    pub last_fired: Option<f64>,
    /// The next occurrence, if any.
    pub next: Option<f64>,
    /// The jobs' payload.
    pub data: String,
}

impl From<(String, RetryPolicy)> for JsRetryPolicy {
    fn from((function, p): (String, RetryPolicy)) -> Self {
        JsRetryPolicy {
            function,
            max_attempts: p.max_attempts,
            backoff: p.backoff.as_secs_f64() * 1e3,
            max_delay: p.max_delay.as_secs_f64() * 1e3,
        }
    }
}

impl From<DeadJob> for JsDeadJob {
    fn from(j: DeadJob) -> Self {
        JsDeadJob {
            handle: j.handle,
            function: j.function,
            unique: Buffer::from(j.unique.to_vec()),
            data: Buffer::from(j.data.to_vec()),
            attempts: j.attempts,
            error: j.error,
            submitted: j.submitted as f64,
            failed_at: j.failed_at as f64,
        }
    }
}

impl From<(String, Duration)> for JsFunctionDuration {
    fn from((function, d): (String, Duration)) -> Self {
        JsFunctionDuration {
            function,
            duration: d.as_secs_f64() * 1e3,
        }
    }
}

impl From<DrainingWorker> for JsDrainingWorker {
    fn from(w: DrainingWorker) -> Self {
        JsDrainingWorker {
            fd: w.fd as f64,
            client_id: w.client_id,
        }
    }
}

impl From<ScheduleInfo> for JsSchedule {
    fn from(s: ScheduleInfo) -> Self {
        JsSchedule {
            name: s.name,
            function: s.function,
            cron: s.cron,
            last_fired: s.last_fired.map(|t| t as f64),
            next: s.next.map(|t| t as f64),
            data: s.data,
        }
    }
}

/// One admin connection to one server, opened on first use (wrapped by `Admin` in index.js).
#[napi]
pub struct NativeAdmin {
    addr: ServerAddr,
    timeout: Duration,
    tls: Option<polygear::TlsOptions>,
    conn: Arc<Mutex<Option<Admin>>>,
}

impl NativeAdmin {
    /// Runs `op` on the (lazily connected) admin connection, serialised.
    fn call<T, F, Fut>(&self, env: &Env, op: F) -> Result<AsyncBlock<T>>
    where
        T: ToNapiValue + Send + 'static,
        F: FnOnce(Admin) -> Fut + Send + 'static,
        Fut: Future<Output = (Admin, polygear::Result<T>)> + Send,
    {
        let conn = self.conn.clone();
        let (addr, timeout, tls) = (self.addr.clone(), self.timeout, self.tls.clone());
        AsyncBlockBuilder::new(async move {
            let mut guard = conn.lock().await;
            let admin = match guard.take() {
                Some(a) => a,
                None => Admin::connect_with(&addr, timeout, tls.as_ref())
                    .await
                    .map_err(to_napi)?,
            };
            let (admin, r) = op(admin).await;
            let broken = matches!(&r, Err(e) if matches!(e.kind(), polygear::ErrorKind::Connection | polygear::ErrorKind::Timeout));
            if !broken {
                *guard = Some(admin); // otherwise reconnect next time
            }
            r.map_err(to_napi)
        })
        .build(env)
    }
}

/// A listing converted to its JavaScript records.
fn js_list<A, B: From<A>>(items: Vec<A>) -> Vec<B> {
    items.into_iter().map(Into::into).collect()
}

macro_rules! admin_call {
    ($self:ident, $env:ident, |$a:ident| $body:expr) => {
        $self.call(&$env, move |mut admin: Admin| async move {
            let r: polygear::Result<_> = async {
                let $a = &mut admin;
                $body
            }
            .await;
            (admin, r)
        })
    };
}

#[napi]
impl NativeAdmin {
    /// `server` is `host[:port]`; `timeout` (ms) bounds every call; `tls`
    /// is checked (its files loaded) here, though the connection opens on
    /// first use.
    #[napi(constructor)]
    pub fn new(
        server: String,
        timeout: Option<f64>,
        tls: Option<crate::util::TlsArgs>,
    ) -> Result<Self> {
        let addr: ServerAddr = server
            .parse()
            .map_err(|e: polygear::Error| invalid(e.to_string()))?;
        let timeout = match timeout {
            Some(t) => timeout_millis("options.timeout", t)?,
            None => Duration::from_secs(5),
        };
        let tls = crate::util::tls_options(tls)?;
        if let Some(t) = &tls {
            polygear::TlsConnector::new(t).map_err(to_napi)?;
        }
        Ok(NativeAdmin {
            addr,
            timeout,
            tls,
            conn: Arc::new(Mutex::new(None)),
        })
    }

    /// `status`.
    #[napi(ts_return_type = "Promise<Array<JsFunctionStatus>>")]
    pub fn status(&self, env: Env) -> Result<AsyncBlock<Vec<JsFunctionStatus>>> {
        admin_call!(self, env, |a| a.status().await.map(js_list))
    }

    /// `prioritystatus`.
    #[napi(ts_return_type = "Promise<Array<JsPriorityStatus>>")]
    pub fn priority_status(&self, env: Env) -> Result<AsyncBlock<Vec<JsPriorityStatus>>> {
        admin_call!(self, env, |a| a.priority_status().await.map(js_list))
    }

    /// `workers`.
    #[napi(ts_return_type = "Promise<Array<JsWorkerInfo>>")]
    pub fn workers(&self, env: Env) -> Result<AsyncBlock<Vec<JsWorkerInfo>>> {
        admin_call!(self, env, |a| a.workers().await.map(js_list))
    }

    /// `version`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn version(&self, env: Env) -> Result<AsyncBlock<String>> {
        admin_call!(self, env, |a| a.version().await)
    }

    /// `getpid`.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn getpid(&self, env: Env) -> Result<AsyncBlock<u32>> {
        admin_call!(self, env, |a| a.getpid().await)
    }

    /// `verbose`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn verbose(&self, env: Env) -> Result<AsyncBlock<String>> {
        admin_call!(self, env, |a| a.verbose().await)
    }

    /// `show jobs`.
    #[napi(ts_return_type = "Promise<Array<JsJobInfo>>")]
    pub fn show_jobs(&self, env: Env) -> Result<AsyncBlock<Vec<JsJobInfo>>> {
        admin_call!(self, env, |a| a.show_jobs().await.map(js_list))
    }

    /// `show unique jobs`.
    #[napi(ts_return_type = "Promise<Array<string>>")]
    pub fn show_unique_jobs(&self, env: Env) -> Result<AsyncBlock<Vec<String>>> {
        admin_call!(self, env, |a| a.show_unique_jobs().await)
    }

    /// `cancel job HANDLE`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn cancel_job(&self, env: Env, handle: String) -> Result<AsyncBlock<()>> {
        admin_call!(self, env, |a| a.cancel_job(&handle).await)
    }

    /// `maxqueue FUNC [HIGH NORMAL LOW]`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn maxqueue(
        &self,
        env: Env,
        function: String,
        limits: Option<Vec<u32>>,
    ) -> Result<AsyncBlock<()>> {
        let limits = match limits {
            None => None,
            Some(v) if v.len() == 3 => Some([v[0], v[1], v[2]]),
            Some(_) => return Err(invalid("maxqueue limits must be [high, normal, low]")),
        };
        admin_call!(self, env, |a| a.maxqueue(&function, limits).await)
    }

    /// `create function FUNC`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn create_function(&self, env: Env, function: String) -> Result<AsyncBlock<()>> {
        admin_call!(self, env, |a| a.create_function(&function).await)
    }

    /// `drop function FUNC`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn drop_function(&self, env: Env, function: String) -> Result<AsyncBlock<()>> {
        admin_call!(self, env, |a| a.drop_function(&function).await)
    }

    /// `shutdown [graceful]`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn shutdown(&self, env: Env, graceful: bool) -> Result<AsyncBlock<()>> {
        admin_call!(self, env, |a| a.shutdown(graceful).await)
    }

    /// `retry FUNC ATTEMPTS BACKOFF MAX` (ms; `maxAttempts` 0 removes the
    /// policy, `maxDelay` defaults to the core's 1 h).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn set_retry_policy(
        &self,
        env: Env,
        function: String,
        max_attempts: u32,
        backoff: f64,
        max_delay: Option<f64>,
    ) -> Result<AsyncBlock<()>> {
        let mut policy = RetryPolicy::new(max_attempts, millis("backoff", backoff)?);
        if let Some(m) = max_delay {
            policy.max_delay = millis("maxDelay", m)?;
        }
        admin_call!(self, env, |a| a.set_retry_policy(&function, policy).await)
    }

    /// The retry policies in force.
    #[napi(ts_return_type = "Promise<Array<JsRetryPolicy>>")]
    pub fn retry_policies(&self, env: Env) -> Result<AsyncBlock<Vec<JsRetryPolicy>>> {
        admin_call!(self, env, |a| a.retry_policies().await.map(js_list))
    }

    /// The dead set (oldest first), of one function or all.
    #[napi(ts_return_type = "Promise<Array<JsDeadJob>>")]
    pub fn dead_jobs(
        &self,
        env: Env,
        function: Option<String>,
    ) -> Result<AsyncBlock<Vec<JsDeadJob>>> {
        admin_call!(self, env, |a| a
            .dead_jobs(function.as_deref())
            .await
            .map(js_list))
    }

    /// Requeues a function's dead jobs; how many.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn retry_dead(&self, env: Env, function: String) -> Result<AsyncBlock<f64>> {
        admin_call!(self, env, |a| a
            .retry_dead(&function)
            .await
            .map(|n| n as f64))
    }

    /// Requeues one dead job; whether it was there.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn retry_dead_job(&self, env: Env, handle: String) -> Result<AsyncBlock<bool>> {
        admin_call!(self, env, |a| a.retry_dead_job(&handle).await)
    }

    /// Requeues every dead job; how many.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn retry_all_dead(&self, env: Env) -> Result<AsyncBlock<f64>> {
        admin_call!(self, env, |a| a.retry_all_dead().await.map(|n| n as f64))
    }

    /// Drops a function's dead jobs; how many.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn delete_dead(&self, env: Env, function: String) -> Result<AsyncBlock<f64>> {
        admin_call!(self, env, |a| a
            .delete_dead(&function)
            .await
            .map(|n| n as f64))
    }

    /// Drops one dead job; whether it was there.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn delete_dead_job(&self, env: Env, handle: String) -> Result<AsyncBlock<bool>> {
        admin_call!(self, env, |a| a.delete_dead_job(&handle).await)
    }

    /// Drops every dead job; how many.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn delete_all_dead(&self, env: Env) -> Result<AsyncBlock<f64>> {
        admin_call!(self, env, |a| a.delete_all_dead().await.map(|n| n as f64))
    }

    /// `pause FUNC`: its jobs stay queued, none is handed out.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn pause(&self, env: Env, function: String) -> Result<AsyncBlock<()>> {
        admin_call!(self, env, |a| a.pause(&function).await)
    }

    /// `resume FUNC`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn resume(&self, env: Env, function: String) -> Result<AsyncBlock<()>> {
        admin_call!(self, env, |a| a.resume(&function).await)
    }

    /// The paused functions.
    #[napi(ts_return_type = "Promise<Array<string>>")]
    pub fn paused(&self, env: Env) -> Result<AsyncBlock<Vec<String>>> {
        admin_call!(self, env, |a| a.paused().await)
    }

    /// Drains a worker (fd or client id): it gets no new jobs; how many
    /// connections matched.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn drain_worker(&self, env: Env, id: String) -> Result<AsyncBlock<f64>> {
        admin_call!(self, env, |a| a.drain_worker(&id).await.map(|n| n as f64))
    }

    /// The worker connections being drained.
    #[napi(ts_return_type = "Promise<Array<JsDrainingWorker>>")]
    pub fn draining(&self, env: Env) -> Result<AsyncBlock<Vec<JsDrainingWorker>>> {
        admin_call!(self, env, |a| a.draining().await.map(js_list))
    }

    /// How long a function's background results are kept (ms; 0 turns it off).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn set_retention(&self, env: Env, function: String, ms: f64) -> Result<AsyncBlock<()>> {
        let d = millis("retain", ms)?;
        admin_call!(self, env, |a| a.set_retention(&function, d).await)
    }

    /// The retention settings.
    #[napi(ts_return_type = "Promise<Array<JsFunctionDuration>>")]
    pub fn retention(&self, env: Env) -> Result<AsyncBlock<Vec<JsFunctionDuration>>> {
        admin_call!(self, env, |a| a.retention().await.map(js_list))
    }

    /// A function's unique window (ms; 0 turns it off).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn set_unique_window(&self, env: Env, function: String, ms: f64) -> Result<AsyncBlock<()>> {
        let d = millis("window", ms)?;
        admin_call!(self, env, |a| a.set_unique_window(&function, d).await)
    }

    /// The unique windows.
    #[napi(ts_return_type = "Promise<Array<JsFunctionDuration>>")]
    pub fn unique_windows(&self, env: Env) -> Result<AsyncBlock<Vec<JsFunctionDuration>>> {
        admin_call!(self, env, |a| a.unique_windows().await.map(js_list))
    }

    /// Adds (or replaces) a periodic job.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn schedule_add(
        &self,
        env: Env,
        name: String,
        cron: String,
        function: String,
        data: String,
    ) -> Result<AsyncBlock<()>> {
        admin_call!(self, env, |a| a
            .schedule_add(&name, &cron, &function, &data)
            .await)
    }

    /// The periodic jobs.
    #[napi(ts_return_type = "Promise<Array<JsSchedule>>")]
    pub fn schedules(&self, env: Env) -> Result<AsyncBlock<Vec<JsSchedule>>> {
        admin_call!(self, env, |a| a.schedules().await.map(js_list))
    }

    /// Deletes a periodic job.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn schedule_delete(&self, env: Env, name: String) -> Result<AsyncBlock<()>> {
        admin_call!(self, env, |a| a.schedule_delete(&name).await)
    }

    /// Any command; the raw reply.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn raw(&self, env: Env, command: String) -> Result<AsyncBlock<String>> {
        admin_call!(self, env, |a| a.raw(&command).await)
    }

    /// Drops the connection (a later call reconnects).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> Result<AsyncBlock<()>> {
        let conn = self.conn.clone();
        AsyncBlockBuilder::new(async move {
            conn.lock().await.take();
            Ok(())
        })
        .build(&env)
    }
}
