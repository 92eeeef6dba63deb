//! `polygear.Client`, `polygear.AsyncClient` and the job/status/event types.

use std::sync::Arc;

use bytes::Bytes;
use polygear::{ClientOptions, JobEvent as CoreEvent, SubmitOptions};
use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use tokio::sync::Mutex as AsyncMutex;

use crate::util::{self, driven, payload, py_bool, rt, to_bytes, to_pyerr, wait};

/// Progress of a job as reported by GET_STATUS.
#[pyclass(module = "polygear", frozen, get_all)]
pub struct JobStatus {
    handle: String,
    known: bool,
    running: bool,
    numerator: u32,
    denominator: u32,
    client_count: Option<u32>,
}

#[pymethods]
impl JobStatus {
    fn __repr__(&self) -> String {
        format!(
            "JobStatus(handle={:?}, known={}, running={}, numerator={}, denominator={})",
            self.handle,
            py_bool(self.known),
            py_bool(self.running),
            self.numerator,
            self.denominator
        )
    }
}

impl From<polygear::JobStatus> for JobStatus {
    fn from(s: polygear::JobStatus) -> Self {
        JobStatus {
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
#[pyclass(module = "polygear", frozen, get_all)]
pub struct JobEvent {
    kind: &'static str,
    data: Py<PyBytes>,
    numerator: u32,
    denominator: u32,
}

#[pymethods]
impl JobEvent {
    /// True for the last event of a job (complete, failed, exception).
    #[getter]
    fn is_final(&self) -> bool {
        matches!(self.kind, "complete" | "failed" | "exception")
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        match self.kind {
            "status" => format!(
                "JobEvent(kind='status', numerator={}, denominator={})",
                self.numerator, self.denominator
            ),
            "failed" => "JobEvent(kind='failed')".to_string(),
            k => format!(
                "JobEvent(kind={k:?}, data={})",
                self.data
                    .bind(py)
                    .repr()
                    .map(|r| r.to_string())
                    .unwrap_or_default()
            ),
        }
    }
}

fn event(py: Python<'_>, ev: &CoreEvent) -> JobEvent {
    let (kind, data, n, d): (&'static str, &[u8], u32, u32) = match ev {
        CoreEvent::Data(b) => ("data", b, 0, 0),
        CoreEvent::Warning(b) => ("warning", b, 0, 0),
        CoreEvent::Status {
            numerator,
            denominator,
        } => ("status", b"", *numerator, *denominator),
        CoreEvent::Complete(b) => ("complete", b, 0, 0),
        CoreEvent::Failed => ("failed", b"", 0, 0),
        CoreEvent::Exception(b) => ("exception", b, 0, 0),
    };
    JobEvent {
        kind,
        data: to_bytes(py, data),
        numerator: n,
        denominator: d,
    }
}

/// State of a running job shared by its sync and async views.
struct JobInner {
    job: polygear::RunningJob,
    /// The final event once it was read.
    last: Option<CoreEvent>,
}

impl JobInner {
    async fn next(&mut self) -> polygear::Result<Option<CoreEvent>> {
        if self.last.is_some() {
            return Ok(None);
        }
        match self.job.next_event().await {
            None => Ok(None),
            Some(Err(e)) => Err(e),
            Some(Ok(ev)) => {
                if ev.is_final() {
                    self.last = Some(ev.clone());
                }
                Ok(Some(ev))
            }
        }
    }

    async fn result(&mut self) -> polygear::Result<Bytes> {
        while self.last.is_none() {
            if self.next().await?.is_none() {
                break;
            }
        }
        let handle = self.job.handle().to_string();
        match self.last.clone() {
            Some(CoreEvent::Complete(b)) => Ok(b),
            Some(CoreEvent::Exception(m)) => Err(polygear::Error::JobException {
                handle,
                message: String::from_utf8_lossy(&m).into_owned(),
            }),
            // WORK_FAIL, or the event stream ended without a final event
            _ => Err(polygear::Error::JobFailed { handle }),
        }
    }
}

/// A submitted foreground job: iterate it for its events (WORK_DATA,
/// WORK_WARNING, WORK_STATUS, then the final one) or call `result()`.
#[pyclass(module = "polygear", frozen)]
pub struct RunningJob {
    handle: String,
    inner: Arc<AsyncMutex<JobInner>>,
}

#[pymethods]
impl RunningJob {
    /// The server-assigned job handle.
    #[getter]
    fn handle(&self) -> &str {
        &self.handle
    }

    /// The next event, or None after the final one.
    fn next_event(&self, py: Python<'_>) -> PyResult<Option<JobEvent>> {
        let inner = self.inner.clone();
        let ev = wait(py, async move { inner.lock().await.next().await })?.map_err(to_pyerr)?;
        Ok(ev.map(|e| event(py, &e)))
    }

    /// Waits for the end of the job: the result, or JobFailed / JobException.
    fn result(&self, py: Python<'_>) -> PyResult<Py<PyBytes>> {
        let inner = self.inner.clone();
        let b = wait(py, async move { inner.lock().await.result().await })?.map_err(to_pyerr)?;
        Ok(to_bytes(py, &b))
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<JobEvent> {
        self.next_event(py)?
            .ok_or_else(|| PyStopIteration::new_err(()))
    }

    fn __repr__(&self) -> String {
        format!("RunningJob(handle={:?})", self.handle)
    }
}

/// The asyncio view of a running job: `async for event in job`, `await job.result()`.
#[pyclass(module = "polygear", frozen)]
pub struct AsyncRunningJob {
    handle: String,
    inner: Arc<AsyncMutex<JobInner>>,
}

#[pymethods]
impl AsyncRunningJob {
    /// The server-assigned job handle.
    #[getter]
    fn handle(&self) -> &str {
        &self.handle
    }

    /// Awaitable: the next event, or None after the final one.
    fn next_event<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let ev = inner.lock().await.next().await.map_err(to_pyerr)?;
            Ok(ev.map(|e| Python::attach(|py| event(py, &e))))
        })
    }

    /// Awaitable: the result, or JobFailed / JobException.
    fn result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let b = inner.lock().await.result().await.map_err(to_pyerr)?;
            Ok(Python::attach(|py| to_bytes(py, &b)))
        })
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let ev = inner.lock().await.next().await.map_err(to_pyerr)?;
            match ev {
                Some(e) => Ok(Python::attach(|py| event(py, &e))),
                None => Err(PyStopAsyncIteration::new_err(())),
            }
        })
    }

    fn __repr__(&self) -> String {
        format!("AsyncRunningJob(handle={:?})", self.handle)
    }
}

fn running(job: polygear::RunningJob) -> (String, Arc<AsyncMutex<JobInner>>) {
    let handle = job.handle().to_string();
    (
        handle,
        Arc::new(AsyncMutex::new(JobInner { job, last: None })),
    )
}

/// Optional per-event callbacks of `submit`.
struct Callbacks {
    on_data: Option<Py<PyAny>>,
    on_warning: Option<Py<PyAny>>,
    on_status: Option<Py<PyAny>>,
}

impl Callbacks {
    fn new(
        on_data: Option<&Bound<'_, PyAny>>,
        on_warning: Option<&Bound<'_, PyAny>>,
        on_status: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Callbacks>> {
        let check = |name: &str, cb: Option<&Bound<'_, PyAny>>| -> PyResult<Option<Py<PyAny>>> {
            match cb {
                None => Ok(None),
                Some(c) if c.is_none() => Ok(None),
                Some(c) if c.is_callable() => Ok(Some(c.clone().unbind())),
                Some(c) => Err(PyTypeError::new_err(format!(
                    "{name} must be callable or None, not {}",
                    util::type_name(c)
                ))),
            }
        };
        let cbs = Callbacks {
            on_data: check("on_data", on_data)?,
            on_warning: check("on_warning", on_warning)?,
            on_status: check("on_status", on_status)?,
        };
        let any = cbs.on_data.is_some() || cbs.on_warning.is_some() || cbs.on_status.is_some();
        Ok(any.then_some(cbs))
    }

    /// The callback for an intermediate event and its arguments.
    fn pick<'py>(
        &self,
        py: Python<'py>,
        ev: &CoreEvent,
    ) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, pyo3::types::PyTuple>)>> {
        use pyo3::types::PyTuple;
        let (cb, args) = match ev {
            CoreEvent::Data(b) => (&self.on_data, PyTuple::new(py, [PyBytes::new(py, b)])?),
            CoreEvent::Warning(b) => (&self.on_warning, PyTuple::new(py, [PyBytes::new(py, b)])?),
            CoreEvent::Status {
                numerator,
                denominator,
            } => (
                &self.on_status,
                PyTuple::new(py, [*numerator, *denominator])?,
            ),
            _ => return Ok(None),
        };
        Ok(cb.as_ref().map(|c| (c.bind(py).clone(), args)))
    }
}

/// Arguments of one submission, converted while holding the GIL.
struct Submission {
    function: String,
    data: Bytes,
    opts: SubmitOptions,
}

impl Submission {
    /// A foreground job (`priority` None means normal).
    fn foreground(
        func: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        unique: Option<&Bound<'_, PyAny>>,
        priority: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Submission> {
        Ok(Submission {
            function: util::text(func, "func")?,
            data: payload(data, "data")?,
            opts: SubmitOptions {
                unique: util::unique(unique)?,
                priority: util::opt_priority(priority)?,
                timeout: util::seconds(timeout, "timeout")?,
                epoch: None,
            },
        })
    }

    /// A background job (`priority` None means normal).
    fn background(
        func: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        unique: Option<&Bound<'_, PyAny>>,
        priority: Option<&Bound<'_, PyAny>>,
        epoch: Option<i64>,
    ) -> PyResult<Submission> {
        Ok(Submission {
            function: util::text(func, "func")?,
            data: payload(data, "data")?,
            opts: SubmitOptions {
                unique: util::unique(unique)?,
                priority: util::opt_priority(priority)?,
                timeout: None,
                epoch,
            },
        })
    }

    /// Runs the job to its result.
    async fn result(self, c: polygear::Client) -> polygear::Result<Bytes> {
        c.submit(&self.function, self.data, self.opts).await
    }

    /// Submits the job and returns it running.
    async fn job(self, c: polygear::Client) -> polygear::Result<polygear::RunningJob> {
        c.submit_job(&self.function, self.data, self.opts).await
    }

    /// Queues the job in the background and returns its handle.
    async fn queue(self, c: polygear::Client) -> polygear::Result<String> {
        c.submit_background(&self.function, self.data, self.opts)
            .await
    }
}

fn options(
    servers: Option<&Bound<'_, PyAny>>,
    timeout: Option<&Bound<'_, PyAny>>,
    connect_timeout: Option<&Bound<'_, PyAny>>,
    client_id: Option<String>,
    exceptions: bool,
) -> PyResult<polygear::Client> {
    let mut o = ClientOptions {
        servers: util::servers(servers)?,
        job_timeout: util::seconds(timeout, "timeout")?,
        client_id,
        exceptions,
        ..ClientOptions::default()
    };
    if let Some(ct) = util::seconds(connect_timeout, "connect_timeout")? {
        o.connect_timeout = ct;
    }
    polygear::Client::new(o).map_err(to_pyerr)
}

/// Aborts spawned tasks when dropped (e.g. on Ctrl-C during `submit_many`).
struct AbortOnDrop(Vec<tokio::task::JoinHandle<polygear::Result<Bytes>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

fn batch(
    rt: &tokio::runtime::Runtime,
    client: &polygear::Client,
    function: &str,
    items: Vec<Bytes>,
    opts: &SubmitOptions,
) -> AbortOnDrop {
    let _guard = rt.enter();
    AbortOnDrop(
        items
            .into_iter()
            .map(|data| {
                let (c, f, o) = (client.clone(), function.to_string(), opts.clone());
                tokio::spawn(async move { c.submit(&f, data, o).await })
            })
            .collect(),
    )
}

async fn gather(mut tasks: AbortOnDrop) -> Vec<polygear::Result<Bytes>> {
    let mut out = Vec::with_capacity(tasks.0.len());
    for h in tasks.0.iter_mut() {
        out.push(match h.await {
            Ok(r) => r,
            Err(e) => Err(polygear::Error::Closed(format!("job task ended: {e}"))),
        });
    }
    out
}

fn collect(
    py: Python<'_>,
    results: Vec<polygear::Result<Bytes>>,
    return_exceptions: bool,
) -> PyResult<Py<PyList>> {
    let list = PyList::empty(py);
    for r in results {
        match r {
            Ok(b) => list.append(PyBytes::new(py, &b))?,
            Err(e) if return_exceptions => list.append(to_pyerr(e).into_value(py))?,
            Err(e) => return Err(to_pyerr(e)),
        }
    }
    Ok(list.unbind())
}

fn items(iterable: &Bound<'_, PyAny>) -> PyResult<Vec<Bytes>> {
    let iter = iterable.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "submit_many needs an iterable of payloads, not {}",
            util::type_name(iterable)
        ))
    })?;
    iter.map(|item| payload(&item?, "each item")).collect()
}

/// Starts one job per payload of `iterable` (`submit_many`).
fn many(
    rt: &tokio::runtime::Runtime,
    client: &polygear::Client,
    func: &Bound<'_, PyAny>,
    iterable: &Bound<'_, PyAny>,
    priority: Option<&Bound<'_, PyAny>>,
    timeout: Option<&Bound<'_, PyAny>>,
) -> PyResult<AbortOnDrop> {
    let function = util::text(func, "func")?;
    let data = items(iterable)?;
    let opts = SubmitOptions {
        priority: util::opt_priority(priority)?,
        timeout: util::seconds(timeout, "timeout")?,
        ..SubmitOptions::default()
    };
    Ok(batch(rt, client, &function, data, &opts))
}

/// A blocking Gearman client (thread-safe; the GIL is released while waiting).
#[pyclass(module = "polygear", frozen)]
pub struct Client {
    inner: polygear::Client,
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (servers=None, timeout=None, *, connect_timeout=None, client_id=None, exceptions=true))]
    fn new(
        servers: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
        connect_timeout: Option<&Bound<'_, PyAny>>,
        client_id: Option<String>,
        exceptions: bool,
    ) -> PyResult<Self> {
        Ok(Client {
            inner: options(servers, timeout, connect_timeout, client_id, exceptions)?,
        })
    }

    /// Runs a foreground job and returns its result; the optional callbacks
    /// receive its WORK_DATA, WORK_WARNING and WORK_STATUS events.
    #[pyo3(signature = (func, data, *, unique=None, priority=None, timeout=None, on_data=None, on_warning=None, on_status=None))]
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        py: Python<'_>,
        func: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        unique: Option<&Bound<'_, PyAny>>,
        priority: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
        on_data: Option<&Bound<'_, PyAny>>,
        on_warning: Option<&Bound<'_, PyAny>>,
        on_status: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyBytes>> {
        let s = Submission::foreground(func, data, unique, priority, timeout)?;
        let c = self.inner.clone();
        let Some(cbs) = Callbacks::new(on_data, on_warning, on_status)? else {
            let r = wait(py, s.result(c))?.map_err(to_pyerr)?;
            return Ok(to_bytes(py, &r));
        };
        let job = wait(py, s.job(c))?.map_err(to_pyerr)?;
        let (_, inner) = running(job);
        loop {
            let i = inner.clone();
            let ev = wait(py, async move { i.lock().await.next().await })?.map_err(to_pyerr)?;
            match ev {
                Some(e) if !e.is_final() => {
                    if let Some((cb, args)) = cbs.pick(py, &e)? {
                        cb.call1(args)?;
                    }
                }
                _ => break,
            }
        }
        let r = wait(py, async move { inner.lock().await.result().await })?.map_err(to_pyerr)?;
        Ok(to_bytes(py, &r))
    }

    /// Submits a foreground job and returns a RunningJob to read its events.
    #[pyo3(signature = (func, data, *, unique=None, priority=None, timeout=None))]
    fn submit_job(
        &self,
        py: Python<'_>,
        func: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        unique: Option<&Bound<'_, PyAny>>,
        priority: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<RunningJob> {
        let s = Submission::foreground(func, data, unique, priority, timeout)?;
        let c = self.inner.clone();
        let job = wait(py, s.job(c))?.map_err(to_pyerr)?;
        let (handle, inner) = running(job);
        Ok(RunningJob { handle, inner })
    }

    /// Queues a background job and returns its handle.
    #[pyo3(signature = (func, data, *, unique=None, priority=None, epoch=None))]
    fn submit_background(
        &self,
        py: Python<'_>,
        func: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        unique: Option<&Bound<'_, PyAny>>,
        priority: Option<&Bound<'_, PyAny>>,
        epoch: Option<i64>,
    ) -> PyResult<String> {
        let s = Submission::background(func, data, unique, priority, epoch)?;
        let c = self.inner.clone();
        wait(py, s.queue(c))?.map_err(to_pyerr)
    }

    /// Submits every payload at once (pipelined) and returns the results in order.
    #[pyo3(signature = (func, iterable, *, priority=None, timeout=None, return_exceptions=false))]
    fn submit_many(
        &self,
        py: Python<'_>,
        func: &Bound<'_, PyAny>,
        iterable: &Bound<'_, PyAny>,
        priority: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
        return_exceptions: bool,
    ) -> PyResult<Py<PyList>> {
        let tasks = many(driven()?, &self.inner, func, iterable, priority, timeout)?;
        let results = wait(py, gather(tasks))?;
        collect(py, results, return_exceptions)
    }

    /// GET_STATUS of a job handle.
    fn status(&self, py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<JobStatus> {
        let handle = util::text(handle, "handle")?;
        let c = self.inner.clone();
        Ok(wait(py, async move { c.status(&handle).await })?
            .map_err(to_pyerr)?
            .into())
    }

    /// GET_STATUS_UNIQUE of a unique key.
    fn status_unique(&self, py: Python<'_>, unique: &Bound<'_, PyAny>) -> PyResult<JobStatus> {
        let unique = util::text(unique, "unique")?;
        let c = self.inner.clone();
        Ok(wait(py, async move { c.status_unique(&unique).await })?
            .map_err(to_pyerr)?
            .into())
    }

    /// ECHO round trip.
    fn echo(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Py<PyBytes>> {
        let data = payload(data, "data")?;
        let c = self.inner.clone();
        let r = wait(py, async move { c.echo(data).await })?.map_err(to_pyerr)?;
        Ok(to_bytes(py, &r))
    }

    /// Closes all connections.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let c = self.inner.clone();
        wait(py, async move { c.close().await })
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

/// An asyncio Gearman client: every method returns an awaitable.
#[pyclass(module = "polygear", frozen)]
pub struct AsyncClient {
    inner: polygear::Client,
}

#[pymethods]
impl AsyncClient {
    #[new]
    #[pyo3(signature = (servers=None, timeout=None, *, connect_timeout=None, client_id=None, exceptions=true))]
    fn new(
        servers: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
        connect_timeout: Option<&Bound<'_, PyAny>>,
        client_id: Option<String>,
        exceptions: bool,
    ) -> PyResult<Self> {
        Ok(AsyncClient {
            inner: options(servers, timeout, connect_timeout, client_id, exceptions)?,
        })
    }

    /// Runs a foreground job; awaitable of its result. The optional callbacks
    /// run on the event loop for its WORK_DATA, WORK_WARNING and WORK_STATUS events.
    #[pyo3(signature = (func, data, *, unique=None, priority=None, timeout=None, on_data=None, on_warning=None, on_status=None))]
    #[allow(clippy::too_many_arguments)]
    fn submit<'py>(
        &self,
        py: Python<'py>,
        func: &Bound<'py, PyAny>,
        data: &Bound<'py, PyAny>,
        unique: Option<&Bound<'py, PyAny>>,
        priority: Option<&Bound<'py, PyAny>>,
        timeout: Option<&Bound<'py, PyAny>>,
        on_data: Option<&Bound<'py, PyAny>>,
        on_warning: Option<&Bound<'py, PyAny>>,
        on_status: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let s = Submission::foreground(func, data, unique, priority, timeout)?;
        let c = self.inner.clone();
        let Some(cbs) = Callbacks::new(on_data, on_warning, on_status)? else {
            return pyo3_async_runtimes::tokio::future_into_py(py, async move {
                let r = s.result(c).await.map_err(to_pyerr)?;
                Ok(Python::attach(|py| to_bytes(py, &r)))
            });
        };
        // callbacks run on the event loop's thread, in order, before the result
        let event_loop = pyo3_async_runtimes::tokio::get_current_locals(py)?
            .event_loop(py)
            .unbind();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let job = s.job(c).await.map_err(to_pyerr)?;
            let (_, inner) = running(job);
            let mut guard = inner.lock().await;
            while let Some(e) = guard.next().await.map_err(to_pyerr)? {
                if e.is_final() {
                    break;
                }
                Python::attach(|py| -> PyResult<()> {
                    if let Some((cb, args)) = cbs.pick(py, &e)? {
                        let mut call = vec![cb];
                        call.extend(args.iter());
                        event_loop.bind(py).call_method1(
                            "call_soon_threadsafe",
                            pyo3::types::PyTuple::new(py, call)?,
                        )?;
                    }
                    Ok(())
                })?;
            }
            let r = guard.result().await.map_err(to_pyerr)?;
            Ok(Python::attach(|py| to_bytes(py, &r)))
        })
    }

    /// Submits a foreground job; awaitable of an AsyncRunningJob.
    #[pyo3(signature = (func, data, *, unique=None, priority=None, timeout=None))]
    fn submit_job<'py>(
        &self,
        py: Python<'py>,
        func: &Bound<'py, PyAny>,
        data: &Bound<'py, PyAny>,
        unique: Option<&Bound<'py, PyAny>>,
        priority: Option<&Bound<'py, PyAny>>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let s = Submission::foreground(func, data, unique, priority, timeout)?;
        let c = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let job = s.job(c).await.map_err(to_pyerr)?;
            let (handle, inner) = running(job);
            Ok(AsyncRunningJob { handle, inner })
        })
    }

    /// Queues a background job; awaitable of its handle.
    #[pyo3(signature = (func, data, *, unique=None, priority=None, epoch=None))]
    fn submit_background<'py>(
        &self,
        py: Python<'py>,
        func: &Bound<'py, PyAny>,
        data: &Bound<'py, PyAny>,
        unique: Option<&Bound<'py, PyAny>>,
        priority: Option<&Bound<'py, PyAny>>,
        epoch: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let s = Submission::background(func, data, unique, priority, epoch)?;
        let c = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(
            py,
            async move { s.queue(c).await.map_err(to_pyerr) },
        )
    }

    /// Submits every payload at once; awaitable of the results in order.
    #[pyo3(signature = (func, iterable, *, priority=None, timeout=None, return_exceptions=false))]
    fn submit_many<'py>(
        &self,
        py: Python<'py>,
        func: &Bound<'py, PyAny>,
        iterable: &Bound<'py, PyAny>,
        priority: Option<&Bound<'py, PyAny>>,
        timeout: Option<&Bound<'py, PyAny>>,
        return_exceptions: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let tasks = many(rt(), &self.inner, func, iterable, priority, timeout)?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let results = gather(tasks).await;
            Python::attach(|py| collect(py, results, return_exceptions))
        })
    }

    /// GET_STATUS of a job handle; awaitable of a JobStatus.
    fn status<'py>(
        &self,
        py: Python<'py>,
        handle: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let handle = util::text(handle, "handle")?;
        let c = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            Ok(JobStatus::from(c.status(&handle).await.map_err(to_pyerr)?))
        })
    }

    /// GET_STATUS_UNIQUE of a unique key; awaitable of a JobStatus.
    fn status_unique<'py>(
        &self,
        py: Python<'py>,
        unique: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let unique = util::text(unique, "unique")?;
        let c = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            Ok(JobStatus::from(
                c.status_unique(&unique).await.map_err(to_pyerr)?,
            ))
        })
    }

    /// ECHO round trip; awaitable of the echoed bytes.
    fn echo<'py>(&self, py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let data = payload(data, "data")?;
        let c = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let r = c.echo(data).await.map_err(to_pyerr)?;
            Ok(Python::attach(|py| to_bytes(py, &r)))
        })
    }

    /// Closes all connections (awaitable).
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            c.close().await;
            Ok(())
        })
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let me = slf.clone().unbind();
        pyo3_async_runtimes::tokio::future_into_py(slf.py(), async move { Ok(me) })
    }

    #[pyo3(signature = (*_args))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _args: &Bound<'py, pyo3::types::PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            c.close().await;
            Ok(false)
        })
    }
}
