//! `polygear.Admin`: gearmand's admin text protocol as typed calls.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDateTime, PyDict, PyInt, PyString, PyTzInfo};
use tokio::sync::Mutex as AsyncMutex;

use crate::run::wait;
use crate::util::{self, arg_err, to_pyerr};

/// A `status` line.
#[pyclass(module = "polygear", frozen, get_all)]
pub struct FunctionStatus {
    function: String,
    total: u64,
    running: u64,
    workers: u64,
}

#[pymethods]
impl FunctionStatus {
    fn __repr__(&self) -> String {
        format!(
            "FunctionStatus(function={:?}, total={}, running={}, workers={})",
            self.function, self.total, self.running, self.workers
        )
    }
}

/// A `prioritystatus` line.
#[pyclass(module = "polygear", frozen, get_all)]
pub struct PriorityStatus {
    function: String,
    high: u64,
    normal: u64,
    low: u64,
    workers: u64,
}

#[pymethods]
impl PriorityStatus {
    fn __repr__(&self) -> String {
        format!(
            "PriorityStatus(function={:?}, high={}, normal={}, low={}, workers={})",
            self.function, self.high, self.normal, self.low, self.workers
        )
    }
}

/// A `workers` line.
#[pyclass(module = "polygear", frozen, get_all)]
pub struct WorkerInfo {
    fd: i64,
    ip: String,
    client_id: String,
    functions: Vec<String>,
}

#[pymethods]
impl WorkerInfo {
    fn __repr__(&self) -> String {
        format!(
            "WorkerInfo(fd={}, ip={:?}, client_id={:?}, functions={:?})",
            self.fd, self.ip, self.client_id, self.functions
        )
    }
}

/// A `show jobs` line.
#[pyclass(module = "polygear", frozen, get_all)]
pub struct JobInfo {
    handle: String,
    retries: u32,
    ignore: bool,
    queued: bool,
}

#[pymethods]
impl JobInfo {
    fn __repr__(&self) -> String {
        format!(
            "JobInfo(handle={:?}, retries={}, ignore={}, queued={})",
            self.handle,
            self.retries,
            py_bool(self.ignore),
            py_bool(self.queued)
        )
    }
}

/// A retry policy (`Admin.retry_policies()`): a failed job of `function`
/// runs again after `backoff` seconds (doubled after each further failure,
/// capped at `max_delay`) until `max_attempts` runs (the first included)
/// failed; then it goes to the dead set.
#[pyclass(module = "polygear", frozen, get_all)]
pub struct RetryPolicy {
    function: String,
    max_attempts: u32,
    backoff: f64,
    max_delay: f64,
}

#[pymethods]
impl RetryPolicy {
    fn __repr__(&self) -> String {
        format!(
            "RetryPolicy(function={:?}, max_attempts={}, backoff={:?}, max_delay={:?})",
            self.function, self.max_attempts, self.backoff, self.max_delay
        )
    }
}

/// A job in the dead set (`Admin.dead_jobs()`): it failed `attempts` times,
/// the last time with `error`; `submitted` and `failed_at` are timezone-aware
/// `datetime`s in UTC.
#[pyclass(module = "polygear", frozen)]
pub struct DeadJob {
    #[pyo3(get)]
    handle: String,
    #[pyo3(get)]
    function: String,
    #[pyo3(get)]
    unique: Py<PyBytes>,
    #[pyo3(get)]
    data: Py<PyBytes>,
    #[pyo3(get)]
    attempts: u32,
    #[pyo3(get)]
    error: String,
    /// Unix seconds.
    submitted: i64,
    /// Unix seconds.
    failed_at: i64,
}

#[pymethods]
impl DeadJob {
    /// When the job was submitted (UTC).
    #[getter]
    fn submitted<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDateTime>> {
        utc_datetime(py, self.submitted)
    }

    /// When its last attempt failed (UTC).
    #[getter]
    fn failed_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDateTime>> {
        utc_datetime(py, self.failed_at)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "DeadJob(handle={:?}, function={:?}, attempts={}, error={:?}, failed_at={})",
            self.handle,
            self.function,
            self.attempts,
            self.error,
            utc_datetime(py, self.failed_at)?.repr()?
        ))
    }
}

/// A worker connection being drained (`Admin.draining()`).
#[pyclass(module = "polygear", frozen, get_all)]
pub struct DrainingWorker {
    fd: u64,
    client_id: String,
}

#[pymethods]
impl DrainingWorker {
    fn __repr__(&self) -> String {
        format!(
            "DrainingWorker(fd={}, client_id={:?})",
            self.fd, self.client_id
        )
    }
}

/// A periodic job (`Admin.schedules()`); `last_fired` and `next` are
/// timezone-aware `datetime`s in UTC, or None.
#[pyclass(module = "polygear", frozen)]
pub struct ScheduleInfo {
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    function: String,
    #[pyo3(get)]
    cron: String,
    /// Unix seconds.
    last_fired: Option<i64>,
    /// Unix seconds.
    next: Option<i64>,
    #[pyo3(get)]
    data: String,
}

#[pymethods]
impl ScheduleInfo {
    /// When it last fired (UTC), or None if it has not yet.
    #[getter]
    fn last_fired<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDateTime>>> {
        self.last_fired.map(|t| utc_datetime(py, t)).transpose()
    }

    /// When it fires next (UTC), or None if never.
    #[getter]
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDateTime>>> {
        self.next.map(|t| utc_datetime(py, t)).transpose()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "ScheduleInfo(name={:?}, function={:?}, cron={:?}, last_fired={}, next={}, data={:?})",
            self.name,
            self.function,
            self.cron,
            self.last_fired(py)?.into_pyobject(py)?.repr()?,
            self.next(py)?.into_pyobject(py)?.repr()?,
            self.data
        ))
    }
}

/// Unix seconds `t` as a timezone-aware `datetime.datetime` in UTC.
fn utc_datetime(py: Python<'_>, t: i64) -> PyResult<Bound<'_, PyDateTime>> {
    // exact: server times are far below 2^53 seconds
    PyDateTime::from_timestamp(py, t as f64, Some(&PyTzInfo::utc(py)?.to_owned()))
}

/// `{function: seconds}` from the server's per-function durations.
fn durations(py: Python<'_>, v: Vec<(String, std::time::Duration)>) -> PyResult<Py<PyDict>> {
    let d = PyDict::new(py);
    for (f, t) in v {
        d.set_item(f, t.as_secs_f64())?;
    }
    Ok(d.unbind())
}

/// One admin connection to one server (blocking; the GIL is released while waiting).
#[pyclass(module = "polygear", frozen)]
pub struct Admin {
    inner: Arc<AsyncMutex<Option<polygear::Admin>>>,
}

impl Admin {
    fn call<'py, T, F>(&self, py: Python<'py>, f: F) -> PyResult<T>
    where
        T: Send,
        F: for<'a> FnOnce(
                &'a mut polygear::Admin,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = polygear::Result<T>> + Send + 'a>,
            > + Send,
    {
        let inner = self.inner.clone();
        wait(py, async move {
            let mut guard = inner.lock().await;
            match guard.as_mut() {
                Some(a) => f(a).await,
                None => Err(polygear::Error::Closed("admin connection closed".into())),
            }
        })?
        .map_err(to_pyerr)
    }
}

#[pymethods]
impl Admin {
    #[new]
    #[pyo3(signature = (server=None, timeout=5.0, *, tls=None))]
    fn new(
        py: Python<'_>,
        server: Option<&Bound<'_, PyAny>>,
        timeout: f64,
        tls: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let tls = util::tls(tls)?;
        let mut addrs = util::servers(server)?;
        if addrs.len() != 1 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "Admin talks to exactly one server",
            ));
        }
        let addr = addrs.remove(0);
        let timeout =
            polygear_bindings::args::timeout_seconds("timeout", timeout).map_err(arg_err)?;
        let admin = wait(py, async move {
            polygear::Admin::connect_with(&addr, timeout, tls.as_ref()).await
        })?
        .map_err(to_pyerr)?;
        Ok(Admin {
            inner: Arc::new(AsyncMutex::new(Some(admin))),
        })
    }

    /// `status`: per function, total/running jobs and workers.
    fn status(&self, py: Python<'_>) -> PyResult<Vec<FunctionStatus>> {
        let v = self.call(py, |a| Box::pin(a.status()))?;
        Ok(v.into_iter()
            .map(|s| FunctionStatus {
                function: s.function,
                total: s.total,
                running: s.running,
                workers: s.workers,
            })
            .collect())
    }

    /// `prioritystatus`: waiting jobs per priority.
    fn priority_status(&self, py: Python<'_>) -> PyResult<Vec<PriorityStatus>> {
        let v = self.call(py, |a| Box::pin(a.priority_status()))?;
        Ok(v.into_iter()
            .map(|s| PriorityStatus {
                function: s.function,
                high: s.high,
                normal: s.normal,
                low: s.low,
                workers: s.workers,
            })
            .collect())
    }

    /// `workers`: one entry per connection.
    fn workers(&self, py: Python<'_>) -> PyResult<Vec<WorkerInfo>> {
        let v = self.call(py, |a| Box::pin(a.workers()))?;
        Ok(v.into_iter()
            .map(|w| WorkerInfo {
                fd: w.fd,
                ip: w.ip,
                client_id: w.client_id,
                functions: w.functions,
            })
            .collect())
    }

    /// `version`.
    fn version(&self, py: Python<'_>) -> PyResult<String> {
        self.call(py, |a| Box::pin(a.version()))
    }

    /// `getpid`.
    fn getpid(&self, py: Python<'_>) -> PyResult<u32> {
        self.call(py, |a| Box::pin(a.getpid()))
    }

    /// `verbose`.
    fn verbose(&self, py: Python<'_>) -> PyResult<String> {
        self.call(py, |a| Box::pin(a.verbose()))
    }

    /// `show jobs`.
    fn show_jobs(&self, py: Python<'_>) -> PyResult<Vec<JobInfo>> {
        let v = self.call(py, |a| Box::pin(a.show_jobs()))?;
        Ok(v.into_iter()
            .map(|j| JobInfo {
                handle: j.handle,
                retries: j.retries,
                ignore: j.ignore,
                queued: j.queued,
            })
            .collect())
    }

    /// `show unique jobs`.
    fn show_unique_jobs(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.call(py, |a| Box::pin(a.show_unique_jobs()))
    }

    /// `cancel job HANDLE`.
    fn cancel_job(&self, py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<()> {
        let handle = util::text(handle, "handle")?;
        self.call(py, move |a| {
            Box::pin(async move { a.cancel_job(&handle).await })
        })
    }

    /// `maxqueue FUNC [HIGH NORMAL LOW]`; one int applies to every priority.
    #[pyo3(signature = (function, limit=None))]
    fn maxqueue(
        &self,
        py: Python<'_>,
        function: &Bound<'_, PyAny>,
        limit: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let function = util::text(function, "function")?;
        let limits = match limit.filter(|l| !l.is_none()) {
            None => None,
            Some(l) if l.is_instance_of::<PyInt>() => Some([util::uint(l, "limit", u32::MAX)?; 3]),
            Some(l) => {
                match l.extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>, Bound<'_, PyAny>)>() {
                    Ok((h, n, lo)) => Some([
                        util::uint(&h, "high limit", u32::MAX)?,
                        util::uint(&n, "normal limit", u32::MAX)?,
                        util::uint(&lo, "low limit", u32::MAX)?,
                    ]),
                    Err(_) => {
                        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                        "limit must be an int, a (high, normal, low) tuple of ints or None, not {}",
                        util::type_name(l)
                    )))
                    }
                }
            }
        };
        self.call(py, move |a| {
            Box::pin(async move { a.maxqueue(&function, limits).await })
        })
    }

    /// `create function FUNC`.
    fn create_function(&self, py: Python<'_>, function: &Bound<'_, PyAny>) -> PyResult<()> {
        let function = util::text(function, "function")?;
        self.call(py, move |a| {
            Box::pin(async move { a.create_function(&function).await })
        })
    }

    /// `drop function FUNC`.
    fn drop_function(&self, py: Python<'_>, function: &Bound<'_, PyAny>) -> PyResult<()> {
        let function = util::text(function, "function")?;
        self.call(py, move |a| {
            Box::pin(async move { a.drop_function(&function).await })
        })
    }

    /// `shutdown` (or `shutdown graceful`).
    #[pyo3(signature = (graceful=false))]
    fn shutdown(&self, py: Python<'_>, graceful: bool) -> PyResult<()> {
        self.call(py, move |a| {
            Box::pin(async move { a.shutdown(graceful).await })
        })
    }

    /// Sets the retry policy of `function` (polygeard extension): up to
    /// `max_attempts` runs in all (0 removes the policy), the first retry
    /// after `backoff` seconds, doubled after each further failure up to
    /// `max_delay` seconds (None: 1 hour).
    #[pyo3(signature = (function, max_attempts, backoff, max_delay=None))]
    fn set_retry_policy(
        &self,
        py: Python<'_>,
        function: &Bound<'_, PyAny>,
        max_attempts: &Bound<'_, PyAny>,
        backoff: &Bound<'_, PyAny>,
        max_delay: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let function = util::text(function, "function")?;
        let attempts = util::uint(max_attempts, "max_attempts", u32::MAX)?;
        let mut policy = polygear::RetryPolicy::new(attempts, util::seconds(backoff, "backoff")?);
        if let Some(m) = max_delay.filter(|m| !m.is_none()) {
            policy.max_delay = util::seconds(m, "max_delay")?;
        }
        self.call(py, move |a| {
            Box::pin(async move { a.set_retry_policy(&function, policy).await })
        })
    }

    /// The retry policies, by function.
    fn retry_policies(&self, py: Python<'_>) -> PyResult<Vec<RetryPolicy>> {
        let v = self.call(py, |a| Box::pin(a.retry_policies()))?;
        Ok(v.into_iter()
            .map(|(function, p)| RetryPolicy {
                function,
                max_attempts: p.max_attempts,
                backoff: p.backoff.as_secs_f64(),
                max_delay: p.max_delay.as_secs_f64(),
            })
            .collect())
    }

    /// The dead set (of `function`, or all), oldest first.
    #[pyo3(signature = (function=None))]
    fn dead_jobs(
        &self,
        py: Python<'_>,
        function: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<DeadJob>> {
        let function = match function.filter(|f| !f.is_none()) {
            Some(f) => Some(util::text(f, "function")?),
            None => None,
        };
        let v = self.call(py, move |a| {
            Box::pin(async move { a.dead_jobs(function.as_deref()).await })
        })?;
        Ok(v.into_iter()
            .map(|d| DeadJob {
                handle: d.handle,
                function: d.function,
                unique: util::to_bytes(py, &d.unique),
                data: util::to_bytes(py, &d.data),
                attempts: d.attempts,
                error: d.error,
                submitted: d.submitted,
                failed_at: d.failed_at,
            })
            .collect())
    }

    /// Queues the dead jobs of `function` again; returns how many.
    fn retry_dead(&self, py: Python<'_>, function: &Bound<'_, PyAny>) -> PyResult<u64> {
        let function = util::text(function, "function")?;
        self.call(py, move |a| {
            Box::pin(async move { a.retry_dead(&function).await })
        })
    }

    /// Queues the dead job `handle` again; False if the dead set has none.
    fn retry_dead_job(&self, py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<bool> {
        let handle = util::text(handle, "handle")?;
        self.call(py, move |a| {
            Box::pin(async move { a.retry_dead_job(&handle).await })
        })
    }

    /// Queues every dead job again; returns how many.
    fn retry_all_dead(&self, py: Python<'_>) -> PyResult<u64> {
        self.call(py, |a| Box::pin(a.retry_all_dead()))
    }

    /// Deletes the dead jobs of `function`; returns how many.
    fn delete_dead(&self, py: Python<'_>, function: &Bound<'_, PyAny>) -> PyResult<u64> {
        let function = util::text(function, "function")?;
        self.call(py, move |a| {
            Box::pin(async move { a.delete_dead(&function).await })
        })
    }

    /// Deletes the dead job `handle`; False if the dead set has none.
    fn delete_dead_job(&self, py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<bool> {
        let handle = util::text(handle, "handle")?;
        self.call(py, move |a| {
            Box::pin(async move { a.delete_dead_job(&handle).await })
        })
    }

    /// Deletes every dead job; returns how many.
    fn delete_all_dead(&self, py: Python<'_>) -> PyResult<u64> {
        self.call(py, |a| Box::pin(a.delete_all_dead()))
    }

    /// Keeps the results of `function`'s background jobs for `seconds`
    /// (polygeard extension; 0 turns it off), for `Client.result()`.
    fn set_retention(
        &self,
        py: Python<'_>,
        function: &Bound<'_, PyAny>,
        seconds: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let function = util::text(function, "function")?;
        let d = util::seconds(seconds, "seconds")?;
        self.call(py, move |a| {
            Box::pin(async move { a.set_retention(&function, d).await })
        })
    }

    /// The retention periods: `{function: seconds}`.
    fn retention(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let v = self.call(py, |a| Box::pin(a.retention()))?;
        durations(py, v)
    }

    /// Makes a unique key of `function` stay taken for `seconds` after its
    /// job completed (polygeard extension; 0 turns it off): a submission with
    /// that key meanwhile gets the finished job.
    fn set_unique_window(
        &self,
        py: Python<'_>,
        function: &Bound<'_, PyAny>,
        seconds: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let function = util::text(function, "function")?;
        let d = util::seconds(seconds, "seconds")?;
        self.call(py, move |a| {
            Box::pin(async move { a.set_unique_window(&function, d).await })
        })
    }

    /// The unique windows: `{function: seconds}`.
    fn unique_windows(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let v = self.call(py, |a| Box::pin(a.unique_windows()))?;
        durations(py, v)
    }

    /// Hands out no jobs of `function` until resume() (polygeard extension;
    /// jobs are still queued).
    fn pause(&self, py: Python<'_>, function: &Bound<'_, PyAny>) -> PyResult<()> {
        let function = util::text(function, "function")?;
        self.call(py, move |a| {
            Box::pin(async move { a.pause(&function).await })
        })
    }

    /// Hands out the jobs of a paused `function` again.
    fn resume(&self, py: Python<'_>, function: &Bound<'_, PyAny>) -> PyResult<()> {
        let function = util::text(function, "function")?;
        self.call(py, move |a| {
            Box::pin(async move { a.resume(&function).await })
        })
    }

    /// The paused functions.
    fn paused(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.call(py, |a| Box::pin(a.paused()))
    }

    /// Drains the worker connections whose fd (`WorkerInfo.fd`, an int) or
    /// client id (a str) is `id` (polygeard extension): they finish their jobs
    /// and get no new ones. Returns how many matched; none is a ServerError
    /// with code UNKNOWN_WORKER.
    fn drain_worker(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<u64> {
        let id = if id.is_instance_of::<PyString>() {
            util::text(id, "id")?
        } else if id.is_instance_of::<PyInt>() {
            util::uint(id, "id", u64::MAX)?.to_string()
        } else {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "id must be a worker's fd (int) or client id (str), not {}",
                util::type_name(id)
            )));
        };
        self.call(py, move |a| {
            Box::pin(async move { a.drain_worker(&id).await })
        })
    }

    /// The worker connections being drained.
    fn draining(&self, py: Python<'_>) -> PyResult<Vec<DrainingWorker>> {
        let v = self.call(py, |a| Box::pin(a.draining()))?;
        Ok(v.into_iter()
            .map(|d| DrainingWorker {
                fd: d.fd,
                client_id: d.client_id,
            })
            .collect())
    }

    /// Adds (or replaces) the periodic job `name` (polygeard extension): at
    /// each occurrence of `cron` (UTC; 5 fields, 6 with seconds first, or
    /// `@hourly` ...) the server queues a background job of `function` with
    /// payload `data` (one line of text) and unique key `NAME@<unix time>`.
    #[pyo3(signature = (name, cron, function, data=None))]
    fn schedule_add(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        cron: &Bound<'_, PyAny>,
        function: &Bound<'_, PyAny>,
        data: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let name = util::text(name, "name")?;
        let cron = util::text(cron, "cron")?;
        let function = util::text(function, "function")?;
        let data = util::opt_payload(data, "data")?;
        let data = String::from_utf8(data.to_vec()).map_err(|_| {
            pyo3::exceptions::PyValueError::new_err("schedule data must be UTF-8 text")
        })?;
        self.call(py, move |a| {
            Box::pin(async move { a.schedule_add(&name, &cron, &function, &data).await })
        })
    }

    /// The periodic jobs, by name.
    fn schedules(&self, py: Python<'_>) -> PyResult<Vec<ScheduleInfo>> {
        let v = self.call(py, |a| Box::pin(a.schedules()))?;
        Ok(v.into_iter()
            .map(|s| ScheduleInfo {
                name: s.name,
                function: s.function,
                cron: s.cron,
                last_fired: s.last_fired,
                next: s.next,
                data: s.data,
            })
            .collect())
    }

    /// Deletes the periodic job `name` (ServerError UNKNOWN_SCHEDULE if none).
    fn schedule_delete(&self, py: Python<'_>, name: &Bound<'_, PyAny>) -> PyResult<()> {
        let name = util::text(name, "name")?;
        self.call(py, move |a| {
            Box::pin(async move { a.schedule_delete(&name).await })
        })
    }

    /// Sends any command line and returns the raw reply.
    fn raw(&self, py: Python<'_>, command: &Bound<'_, PyAny>) -> PyResult<String> {
        let command = util::text(command, "command")?;
        self.call(py, move |a| Box::pin(async move { a.raw(&command).await }))
    }

    /// Closes the connection.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let inner = self.inner.clone();
        wait(py, async move {
            inner.lock().await.take();
        })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}

/// `True` / `False`, as Python prints a bool in a repr.
fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}
