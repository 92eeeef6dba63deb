//! `NativeAdmin`: gearmand's text admin protocol as typed calls.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use polygear::protocol::admin::{FunctionStatus, JobInfo, PriorityStatus, WorkerInfo};
use polygear::{Admin, ServerAddr};
use tokio::sync::Mutex;

use crate::error::{invalid, to_napi};
use crate::util::timeout_millis;

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
