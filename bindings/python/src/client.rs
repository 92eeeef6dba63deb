//! `polygear.Client`, `polygear.AsyncClient` and the job/status/event types.
//!
//! Each operation is written once: its method converts the arguments, builds
//! the core future and says how the output becomes a Python value; a
//! [`Runner`] runs it: [`Blocking`] for `Client` and `RunningJob` (waits with
//! the GIL released), [`Awaitable`] for `AsyncClient` and `AsyncRunningJob`
//! (returns an awaitable). Both classes of a pair are stamped from one method
//! list by `client_class!` / `running_job_class!`.

use std::sync::Arc;

use bytes::Bytes;
use polygear::{ClientOptions, JobEvent as CoreEvent, JobResult, SubmitOptions};
use polygear_bindings::batch::Batch;
use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyList, PyTuple};
use tokio::sync::Mutex as AsyncMutex;

use crate::json::{self, Output};
use crate::run::{none, wait, Awaitable, Blocking, Runner};
use crate::util::{self, payload, py_bool, to_bytes, to_pyerr};

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
            // WORK_FAIL (with the server's reason, if it gave one), or the
            // event stream ended without a final event
            // (JobCancelled if the server's reason says it was cancelled)
            _ => Err(polygear::Error::job_failed(handle, self.job.fail_reason())),
        }
    }
}

/// A running job shared with its Python object.
type SharedJob = Arc<AsyncMutex<JobInner>>;

/// The handle of a submitted job and its shared state.
fn shared(job: polygear::RunningJob) -> (String, SharedJob) {
    let handle = job.handle().to_string();
    (
        handle,
        Arc::new(AsyncMutex::new(JobInner { job, last: None })),
    )
}

/// The next event of a job as a Python `JobEvent`; at the end None, or the
/// exception `end` makes (the iterator protocols' Stop[Async]Iteration).
fn next_event<R: Runner>(
    py: Python<'_>,
    job: &SharedJob,
    end: Option<fn() -> PyErr>,
) -> PyResult<Py<PyAny>> {
    let job = job.clone();
    R::run(
        py,
        async move { job.lock().await.next().await.map_err(to_pyerr) },
        move |py, ev| match (ev, end) {
            (Some(ev), _) => Ok(Py::new(py, event(py, &ev))?.into_any()),
            (None, None) => Ok(py.None()),
            (None, Some(end)) => Err(end()),
        },
    )
}

/// The result of a job as `out` makes it, or JobFailed / JobException.
fn job_result<R: Runner>(py: Python<'_>, job: &SharedJob, out: Output) -> PyResult<Py<PyAny>> {
    let job = job.clone();
    R::run(
        py,
        async move { job.lock().await.result().await.map_err(to_pyerr) },
        move |py, b| out.convert(py, &b),
    )
}

/// Defines a running-job class for runner `$runner`: its `handle`,
/// `next_event`, `result` and `__repr__`, plus the iterator protocol in
/// `$iter`.
macro_rules! running_job_class {
    (
        $(#[$doc:meta])* $class:ident, $runner:ty, $awaitable:tt,
        { $($iter:tt)* }
    ) => {
        $(#[$doc])*
        #[pyclass(module = "polygear", frozen)]
        pub struct $class {
            handle: String,
            inner: SharedJob,
        }

        impl $class {
            fn new(job: polygear::RunningJob) -> Self {
                let (handle, inner) = shared(job);
                $class { handle, inner }
            }
        }

        #[pymethods]
        impl $class {
            /// The server-assigned job handle.
            #[getter]
            fn handle(&self) -> &str {
                &self.handle
            }

            #[doc = concat!($awaitable, "The next event, or None after the final one.")]
            fn next_event(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                next_event::<$runner>(py, &self.inner, None)
            }

            #[doc = concat!($awaitable, "The result of the job, or JobFailed / JobException.")]
            fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                job_result::<$runner>(py, &self.inner, Output::Bytes)
            }

            fn __repr__(&self) -> String {
                format!(concat!(stringify!($class), "(handle={:?})"), self.handle)
            }

            $($iter)*
        }
    };
}

running_job_class!(
    /// A submitted foreground job: iterate it for its events (WORK_DATA,
    /// WORK_WARNING, WORK_STATUS, then the final one) or call `result()`.
    RunningJob, Blocking, "",
    {
        fn __iter__(slf: Py<Self>) -> Py<Self> {
            slf
        }

        fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
            next_event::<Blocking>(py, &self.inner, Some(|| PyStopIteration::new_err(())))
        }
    }
);

running_job_class!(
    /// The asyncio view of a running job: `async for event in job`, `await job.result()`.
    AsyncRunningJob, Awaitable, "Awaitable: ",
    {
        fn __aiter__(slf: Py<Self>) -> Py<Self> {
            slf
        }

        fn __anext__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
            next_event::<Awaitable>(py, &self.inner, Some(|| PyStopAsyncIteration::new_err(())))
        }
    }
);

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
    /// A foreground job with payload `data` (`priority` None means normal).
    fn foreground(
        func: &Bound<'_, PyAny>,
        data: Bytes,
        unique: Option<&Bound<'_, PyAny>>,
        priority: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Submission> {
        Ok(Submission {
            function: util::text(func, "func")?,
            data,
            opts: SubmitOptions {
                unique: util::unique(unique)?,
                priority: util::opt_priority(priority)?,
                timeout: util::timeout(timeout, "timeout")?,
                epoch: None,
                retain: None,
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
        retain: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Submission> {
        Ok(Submission {
            function: util::text(func, "func")?,
            data: payload(data, "data")?,
            opts: SubmitOptions {
                unique: util::unique(unique)?,
                priority: util::opt_priority(priority)?,
                timeout: None,
                epoch,
                retain: util::timeout(retain, "retain")?,
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
    tls: Option<&Bound<'_, PyAny>>,
) -> PyResult<polygear::Client> {
    let mut o = ClientOptions {
        servers: util::servers(servers)?,
        job_timeout: util::timeout(timeout, "timeout")?,
        client_id,
        exceptions,
        tls: util::tls(tls)?,
        ..ClientOptions::default()
    };
    if let Some(ct) = util::timeout(connect_timeout, "connect_timeout")? {
        o.connect_timeout = ct;
    }
    polygear::Client::new(o).map_err(to_pyerr)
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

/// What differs between the clients beyond running a future: the class of
/// a submitted job, and how `submit`'s callbacks see its events.
trait ClientRunner: Runner {
    /// The submitted job as this API's running-job object.
    fn running_job(py: Python<'_>, job: polygear::RunningJob) -> PyResult<Py<PyAny>>;

    /// Runs the job `submit` starts to its result, calling the callbacks for
    /// its intermediate events.
    fn submit_with_callbacks<F>(
        py: Python<'_>,
        start: F,
        cbs: Callbacks,
        out: Output,
    ) -> PyResult<Py<PyAny>>
    where
        F: std::future::Future<Output = PyResult<polygear::RunningJob>> + Send + 'static;

    /// Runs submission `s` to its result as `out` makes it, calling `cbs`
    /// (if any) for its intermediate events.
    fn submit(
        py: Python<'_>,
        c: &polygear::Client,
        s: Submission,
        cbs: Option<Callbacks>,
        out: Output,
    ) -> PyResult<Py<PyAny>> {
        let c = c.clone();
        match cbs {
            None => Self::run(
                py,
                async move { s.result(c).await.map_err(to_pyerr) },
                move |py, b| out.convert(py, &b),
            ),
            Some(cbs) => Self::submit_with_callbacks(
                py,
                async move { s.job(c).await.map_err(to_pyerr) },
                cbs,
                out,
            ),
        }
    }
}

impl ClientRunner for Blocking {
    fn running_job(py: Python<'_>, job: polygear::RunningJob) -> PyResult<Py<PyAny>> {
        Ok(Py::new(py, RunningJob::new(job))?.into_any())
    }

    /// The callbacks run on the calling thread between waits (outside the
    /// runtime, so they may use blocking polygear calls themselves).
    fn submit_with_callbacks<F>(
        py: Python<'_>,
        start: F,
        cbs: Callbacks,
        out: Output,
    ) -> PyResult<Py<PyAny>>
    where
        F: std::future::Future<Output = PyResult<polygear::RunningJob>> + Send + 'static,
    {
        let (_, job) = shared(wait(py, start)??);
        loop {
            let j = job.clone();
            let ev = wait(py, async move { j.lock().await.next().await })?.map_err(to_pyerr)?;
            match ev {
                Some(e) if !e.is_final() => {
                    if let Some((cb, args)) = cbs.pick(py, &e)? {
                        cb.call1(args)?;
                    }
                }
                _ => break,
            }
        }
        job_result::<Blocking>(py, &job, out)
    }
}

impl ClientRunner for Awaitable {
    fn running_job(py: Python<'_>, job: polygear::RunningJob) -> PyResult<Py<PyAny>> {
        Ok(Py::new(py, AsyncRunningJob::new(job))?.into_any())
    }

    /// The callbacks run on the event loop's thread, in order, before the result.
    fn submit_with_callbacks<F>(
        py: Python<'_>,
        start: F,
        cbs: Callbacks,
        out: Output,
    ) -> PyResult<Py<PyAny>>
    where
        F: std::future::Future<Output = PyResult<polygear::RunningJob>> + Send + 'static,
    {
        let event_loop = pyo3_async_runtimes::tokio::get_current_locals(py)?
            .event_loop(py)
            .unbind();
        Awaitable::run(
            py,
            async move {
                let (_, job) = shared(start.await?);
                let mut guard = job.lock().await;
                while let Some(e) = guard.next().await.map_err(to_pyerr)? {
                    if e.is_final() {
                        break;
                    }
                    Python::attach(|py| -> PyResult<()> {
                        if let Some((cb, args)) = cbs.pick(py, &e)? {
                            let mut call = vec![cb];
                            call.extend(args.iter());
                            event_loop
                                .bind(py)
                                .call_method1("call_soon_threadsafe", PyTuple::new(py, call)?)?;
                        }
                        Ok(())
                    })?;
                }
                guard.result().await.map_err(to_pyerr)
            },
            move |py, b| out.convert(py, &b),
        )
    }
}

/// `submit_many`'s results in order: bytes, or with `return_exceptions` the
/// exception of a job that failed (else the first one is raised).
fn many_results(
    py: Python<'_>,
    results: Vec<polygear::Result<Bytes>>,
    return_exceptions: bool,
) -> PyResult<Py<PyAny>> {
    let list = PyList::empty(py);
    for r in results {
        match r {
            Ok(b) => list.append(PyBytes::new(py, &b))?,
            Err(e) if return_exceptions => list.append(to_pyerr(e).into_value(py))?,
            Err(e) => return Err(to_pyerr(e)),
        }
    }
    Ok(list.into_any().unbind())
}

/// `status` (by handle) or `status_unique` (by unique key).
fn status<R: Runner>(
    py: Python<'_>,
    client: &polygear::Client,
    key: &Bound<'_, PyAny>,
    by_unique: bool,
) -> PyResult<Py<PyAny>> {
    let key = util::text(key, if by_unique { "unique" } else { "handle" })?;
    let c = client.clone();
    R::run(
        py,
        async move {
            let r = if by_unique {
                c.status_unique(&key).await
            } else {
                c.status(&key).await
            };
            r.map_err(to_pyerr)
        },
        |py, st| Ok(Py::new(py, JobStatus::from(st))?.into_any()),
    )
}

/// `close` (None), or the end of a `with` block (False: exceptions propagate).
fn close<R: Runner>(
    py: Python<'_>,
    client: &polygear::Client,
    exiting: bool,
) -> PyResult<Py<PyAny>> {
    let c = client.clone();
    let fut = async move {
        c.close().await;
        Ok(())
    };
    if exiting {
        R::run(py, fut, |py, ()| {
            Ok(PyBool::new(py, false).to_owned().into_any().unbind())
        })
    } else {
        R::run(py, fut, none)
    }
}

/// Defines a client class for runner `$runner`: every method is written
/// once, here, and builds its core future the same way for both classes;
/// `$runner` waits for it or makes it an awaitable. `$returns` completes the
/// docstrings ("returns" / "returns an awaitable of"); `$enter`/`$exit` name
/// the context-manager methods (`__enter__` or `__aenter__`, ...).
macro_rules! client_class {
    (
        $(#[$doc:meta])* $class:ident, $runner:ty,
        returns = $returns:tt, enter = $enter:tt, exit = $exit:tt
    ) => {
        $(#[$doc])*
        #[pyclass(module = "polygear", frozen)]
        pub struct $class {
            inner: polygear::Client,
        }

        #[pymethods]
        impl $class {
            #[new]
            #[pyo3(signature = (servers=None, timeout=None, *, connect_timeout=None, client_id=None, exceptions=true, tls=None))]
            fn new(
                servers: Option<&Bound<'_, PyAny>>,
                timeout: Option<&Bound<'_, PyAny>>,
                connect_timeout: Option<&Bound<'_, PyAny>>,
                client_id: Option<String>,
                exceptions: bool,
                tls: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<Self> {
                Ok($class {
                    inner: options(servers, timeout, connect_timeout, client_id, exceptions, tls)?,
                })
            }

            #[doc = concat!(
                "Runs a foreground job and ", $returns, " its result; the optional callbacks\n",
                "receive its WORK_DATA, WORK_WARNING and WORK_STATUS events (AsyncClient:\n",
                "on the event loop)."
            )]
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
            ) -> PyResult<Py<PyAny>> {
                let s = Submission::foreground(func, payload(data, "data")?, unique, priority, timeout)?;
                let cbs = Callbacks::new(on_data, on_warning, on_status)?;
                <$runner>::submit(py, &self.inner, s, cbs, Output::Bytes)
            }

            #[doc = concat!(
                "Runs a foreground job with `obj` as its UTF-8 JSON payload and ", $returns, "\n",
                "its result decoded from JSON (ProtocolError if it is not JSON); the same\n",
                "options as submit()."
            )]
            #[pyo3(signature = (func, obj, *, unique=None, priority=None, timeout=None, on_data=None, on_warning=None, on_status=None))]
            #[allow(clippy::too_many_arguments)]
            fn submit_json(
                &self,
                py: Python<'_>,
                func: &Bound<'_, PyAny>,
                obj: &Bound<'_, PyAny>,
                unique: Option<&Bound<'_, PyAny>>,
                priority: Option<&Bound<'_, PyAny>>,
                timeout: Option<&Bound<'_, PyAny>>,
                on_data: Option<&Bound<'_, PyAny>>,
                on_warning: Option<&Bound<'_, PyAny>>,
                on_status: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<Py<PyAny>> {
                let s = Submission::foreground(func, json::encode(obj, "obj")?, unique, priority, timeout)?;
                let cbs = Callbacks::new(on_data, on_warning, on_status)?;
                let out = Output::Json(s.function.clone());
                <$runner>::submit(py, &self.inner, s, cbs, out)
            }

            #[doc = concat!("Submits a foreground job and ", $returns, " its running job, to read its events.")]
            #[pyo3(signature = (func, data, *, unique=None, priority=None, timeout=None))]
            fn submit_job(
                &self,
                py: Python<'_>,
                func: &Bound<'_, PyAny>,
                data: &Bound<'_, PyAny>,
                unique: Option<&Bound<'_, PyAny>>,
                priority: Option<&Bound<'_, PyAny>>,
                timeout: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<Py<PyAny>> {
                let s = Submission::foreground(func, payload(data, "data")?, unique, priority, timeout)?;
                let c = self.inner.clone();
                <$runner>::run(
                    py,
                    async move { s.job(c).await.map_err(to_pyerr) },
                    <$runner>::running_job,
                )
            }

            #[doc = concat!(
                "Queues a background job and ", $returns, " its handle; with `retain`\n",
                "(seconds, polygeard only) the server keeps its result that long for result()."
            )]
            #[pyo3(signature = (func, data, *, unique=None, priority=None, epoch=None, retain=None))]
            #[allow(clippy::too_many_arguments)]
            fn submit_background(
                &self,
                py: Python<'_>,
                func: &Bound<'_, PyAny>,
                data: &Bound<'_, PyAny>,
                unique: Option<&Bound<'_, PyAny>>,
                priority: Option<&Bound<'_, PyAny>>,
                epoch: Option<&Bound<'_, PyAny>>,
                retain: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<Py<PyAny>> {
                let epoch = match epoch.filter(|e| !e.is_none()) {
                    // i64::MAX fits in u64: the conversion cannot fail
                    Some(e) => Some(util::uint(e, "epoch", i64::MAX as u64)? as i64),
                    None => None,
                };
                let s = Submission::background(func, data, unique, priority, epoch, retain)?;
                let c = self.inner.clone();
                <$runner>::run(
                    py,
                    async move { s.queue(c).await.map_err(to_pyerr) },
                    |py, handle| Ok(handle.into_pyobject(py)?.into_any().unbind()),
                )
            }

            #[doc = concat!("Submits every payload at once (pipelined) and ", $returns, " the results in order.")]
            #[pyo3(signature = (func, iterable, *, priority=None, timeout=None, return_exceptions=false))]
            fn submit_many(
                &self,
                py: Python<'_>,
                func: &Bound<'_, PyAny>,
                iterable: &Bound<'_, PyAny>,
                priority: Option<&Bound<'_, PyAny>>,
                timeout: Option<&Bound<'_, PyAny>>,
                return_exceptions: bool,
            ) -> PyResult<Py<PyAny>> {
                let function = util::text(func, "func")?;
                let data = items(iterable)?;
                let opts = SubmitOptions {
                    priority: util::opt_priority(priority)?,
                    timeout: util::timeout(timeout, "timeout")?,
                    ..SubmitOptions::default()
                };
                let rt = <$runner>::runtime()?.handle();
                let batch = Batch::start(rt, &self.inner, &function, data, &opts);
                <$runner>::run(
                    py,
                    async move { Ok(batch.results().await) },
                    move |py, results| many_results(py, results, return_exceptions),
                )
            }

            #[doc = concat!("GET_STATUS of a job handle; ", $returns, " a JobStatus.")]
            fn status(&self, py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
                status::<$runner>(py, &self.inner, handle, false)
            }

            #[doc = concat!("GET_STATUS_UNIQUE of a unique key; ", $returns, " a JobStatus.")]
            fn status_unique(&self, py: Python<'_>, unique: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
                status::<$runner>(py, &self.inner, unique, true)
            }

            #[doc = concat!(
                "The retained result of background job `handle` (polygeard only): ", $returns, "\n",
                "bytes once it completed, None while it is queued or running or when the\n",
                "server does not know it (not retained, expired); JobFailed / JobException\n",
                "if it failed; ServerError from a server that is not polygeard."
            )]
            fn result(&self, py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
                let handle = util::text(handle, "handle")?;
                let c = self.inner.clone();
                <$runner>::run(
                    py,
                    async move { c.result(&handle).await.map_err(to_pyerr) },
                    |py, r| Ok(match r {
                        Some(b) => to_bytes(py, &b).into_any(),
                        None => py.None(),
                    }),
                )
            }

            #[doc = concat!(
                "The state of background job `handle` (polygeard only): ", $returns, " a\n",
                "(state, data) tuple, state one of \"complete\", \"queued\", \"running\",\n",
                "\"failed\", \"exception\", \"unknown\" (not retained, expired); data is the\n",
                "result (complete) or the exception message (exception) as bytes, else None.\n",
                "ServerError from a server that is not polygeard."
            )]
            fn result_state(&self, py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
                let handle = util::text(handle, "handle")?;
                let c = self.inner.clone();
                <$runner>::run(
                    py,
                    async move { c.result_state(&handle).await.map_err(to_pyerr) },
                    |py, r| {
                        let data = match &r {
                            JobResult::Complete(b) | JobResult::Exception(b) => to_bytes(py, b).into_any(),
                            _ => py.None(),
                        };
                        Ok((r.name(), data).into_pyobject(py)?.into_any().unbind())
                    },
                )
            }

            #[doc = concat!(
                "Cancels job `handle` and ", $returns, " True if the server had it queued or\n",
                "running (its waiting clients get JobCancelled; a running job's worker sees\n",
                "Job.cancelled()), False if no server knows it."
            )]
            fn cancel(&self, py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
                let handle = util::text(handle, "handle")?;
                let c = self.inner.clone();
                <$runner>::run(
                    py,
                    async move { c.cancel(&handle).await.map_err(to_pyerr) },
                    |py, b| Ok(PyBool::new(py, b).to_owned().into_any().unbind()),
                )
            }

            #[doc = concat!("ECHO round trip; ", $returns, " the echoed bytes.")]
            fn echo(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
                let data = payload(data, "data")?;
                let c = self.inner.clone();
                <$runner>::run(
                    py,
                    async move { c.echo(data).await.map_err(to_pyerr) },
                    |py, b| Ok(to_bytes(py, &b).into_any()),
                )
            }

            /// Closes all connections.
            fn close(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                close::<$runner>(py, &self.inner, false)
            }

            #[pyo3(name = $enter)]
            fn enter(slf: Bound<'_, Self>) -> PyResult<Py<PyAny>> {
                <$runner>::ready(slf.py(), slf.clone().into_any().unbind())
            }

            #[pyo3(name = $exit, signature = (*_args))]
            fn exit(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
                close::<$runner>(py, &self.inner, true)
            }
        }
    };
}

client_class!(
    /// A blocking Gearman client (thread-safe; the GIL is released while waiting).
    Client, Blocking, returns = "returns", enter = "__enter__", exit = "__exit__"
);

client_class!(
    /// An asyncio Gearman client: every method returns an awaitable.
    AsyncClient, Awaitable, returns = "returns an awaitable of", enter = "__aenter__", exit = "__aexit__"
);
