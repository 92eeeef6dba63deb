//! The native side of `polygear.Worker` / `polygear.AsyncWorker`: job
//! delivery to Python threads or asyncio tasks, and the `Job` object.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use polygear::WorkerOptions;
use polygear_bindings::args;
use polygear_bindings::runtime::HANDOFF_DELAY;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::sync::Mutex as AsyncMutex;

use crate::events;
use crate::json;
use crate::run::{none, Awaitable, Blocking, Runner};
use crate::util::{self, lock, opt_payload, payload, to_pyerr};

/// A job assigned to this worker.
#[pyclass(module = "polygear", frozen)]
pub struct Job {
    handle: String,
    function: String,
    unique: String,
    data: Py<PyBytes>,
    /// The job until it ends; an async mutex so that `cancelled()` (which
    /// asks the server) can hold it across its round trip.
    inner: Arc<AsyncMutex<Option<polygear::Job>>>,
}

/// Locks a job's slot from a thread that runs no async code (the caller
/// has released the GIL: a `cancelled()` that holds the slot may need it
/// to finish its wait).
fn lock_job(
    slot: &AsyncMutex<Option<polygear::Job>>,
) -> tokio::sync::MutexGuard<'_, Option<polygear::Job>> {
    match slot.try_lock() {
        Ok(guard) => guard,
        Err(_) => slot.blocking_lock(),
    }
}

impl Job {
    fn new(py: Python<'_>, job: polygear::Job) -> Job {
        Job {
            handle: job.handle().to_string(),
            function: job.function().to_string(),
            unique: job.unique().to_string(),
            data: PyBytes::new(py, job.data()).unbind(),
            inner: Arc::new(AsyncMutex::new(Some(job))),
        }
    }

    fn finished(&self) -> PyErr {
        to_pyerr(polygear::Error::Closed(format!(
            "job {} already finished",
            self.handle
        )))
    }

    /// Runs `f` on the job with the GIL released: a send may block for
    /// backpressure, and other threads (one of which may be reading this
    /// worker's connection) must run meanwhile.
    fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&polygear::Job) -> polygear::Result<R> + Send,
    ) -> PyResult<R> {
        let inner = &self.inner;
        match py.detach(|| lock_job(inner).as_ref().map(f)) {
            Some(r) => r.map_err(to_pyerr),
            None => Err(self.finished()),
        }
    }

    fn take(&self, py: Python<'_>) -> PyResult<polygear::Job> {
        let inner = &self.inner;
        py.detach(|| lock_job(inner).take())
            .ok_or_else(|| self.finished())
    }

    /// Whether the server cancelled the job, asked with runner `R`.
    fn cancelled_with<R: Runner>(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let inner = self.inner.clone();
        let handle = self.handle.clone();
        R::run(
            py,
            async move {
                match inner.lock().await.as_ref() {
                    Some(job) => job.cancelled().await.map_err(to_pyerr),
                    None => Err(to_pyerr(polygear::Error::Closed(format!(
                        "job {handle} already finished"
                    )))),
                }
            },
            |py, b| {
                Ok(pyo3::types::PyBool::new(py, b)
                    .to_owned()
                    .into_any()
                    .unbind())
            },
        )
    }
}

#[pymethods]
impl Job {
    /// The workload.
    #[getter]
    fn data(&self, py: Python<'_>) -> Py<PyBytes> {
        self.data.clone_ref(py)
    }
    /// The workload decoded from UTF-8 JSON (ValueError if it is not JSON).
    fn json(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        json::decode(py, self.data.as_bytes(py))
    }
    /// The job handle given by the server.
    #[getter]
    fn handle(&self) -> &str {
        &self.handle
    }
    /// The function name.
    #[getter]
    fn function(&self) -> &str {
        &self.function
    }
    /// python-gearman's name of `function`.
    #[getter]
    fn task(&self) -> &str {
        &self.function
    }
    /// The unique key ('' if none).
    #[getter]
    fn unique(&self) -> &str {
        &self.unique
    }
    /// True once the job was completed, failed or raised.
    #[getter]
    fn done(&self, py: Python<'_>) -> bool {
        let inner = &self.inner;
        py.detach(|| lock_job(inner).is_none())
    }
    /// Whether the job was cancelled (`Client.cancel`, admin `cancel job`):
    /// asks the server over a connection the worker keeps (blocking, GIL
    /// released), so call it every 0.1 to 1 s, not in a tight loop. True once
    /// the server no longer has the job: stop and end it (its result is
    /// dropped). gearmand cancels only queued jobs: there it stays False.
    /// AsyncWorker functions await `cancelled_async()` instead.
    fn cancelled(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.cancelled_with::<Blocking>(py)
    }
    /// Awaitable form of cancelled(), for AsyncWorker functions.
    fn cancelled_async(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.cancelled_with::<Awaitable>(py)
    }
    /// WORK_DATA: sends a chunk of partial output.
    fn send_data(&self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let d = payload(data, "data")?;
        self.with(data.py(), |j| j.send_data(d))
    }
    /// WORK_WARNING.
    fn send_warning(&self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let d = payload(data, "data")?;
        self.with(data.py(), |j| j.send_warning(d))
    }
    /// WORK_STATUS: progress numerator / denominator.
    fn send_status(
        &self,
        numerator: &Bound<'_, PyAny>,
        denominator: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let n = util::uint(numerator, "numerator", u32::MAX)?;
        let d = util::uint(denominator, "denominator", u32::MAX)?;
        self.with(numerator.py(), |j| j.send_status(n, d))
    }
    /// WORK_COMPLETE with the result (bytes, bytearray, memoryview, str or None).
    #[pyo3(signature = (result=None))]
    fn complete(&self, py: Python<'_>, result: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let r = opt_payload(result, "the function's result")?;
        self.take(py)?.complete(r).map_err(to_pyerr)
    }
    /// WORK_FAIL.
    fn fail(&self, py: Python<'_>) -> PyResult<()> {
        self.take(py)?.fail().map_err(to_pyerr)
    }
    /// WORK_EXCEPTION with a message (clients without the option see WORK_FAIL).
    fn exception(&self, message: &Bound<'_, PyAny>) -> PyResult<()> {
        let m = payload(message, "message")?;
        self.take(message.py())?.exception(m).map_err(to_pyerr)
    }

    fn __repr__(&self) -> String {
        format!(
            "Job(function={:?}, handle={:?}, unique={:?})",
            self.function, self.handle, self.unique
        )
    }
}

/// The Rust worker; Python threads / asyncio tasks pull jobs from it.
#[pyclass(module = "polygear._polygear", frozen)]
pub struct NativeWorker {
    worker: polygear::Worker,
    /// When unfinished jobs are handed back: set by `stop(timeout)`.
    hand_back_at: Mutex<Option<Instant>>,
    /// Its connection events, for `next_event`.
    events: events::Events,
}

#[pymethods]
impl NativeWorker {
    /// `handoff`: for blocking threads that take their next job with
    /// `try_next_job` before ending the current one (see
    /// `WorkerOptions::handoff_delay`); off for asyncio tasks.
    #[new]
    #[pyo3(signature = (servers=None, concurrency=1, client_id=None, handoff=false, tls=None))]
    fn new(
        servers: Option<&Bound<'_, PyAny>>,
        concurrency: usize,
        client_id: Option<String>,
        handoff: bool,
        tls: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let opts = WorkerOptions {
            servers: util::servers(servers)?,
            tls: util::tls(tls)?,
            concurrency: args::concurrency(concurrency).map_err(util::arg_err)?,
            client_id,
            handoff_delay: handoff.then_some(HANDOFF_DELAY),
            ..WorkerOptions::default()
        };
        let worker = polygear::Worker::new(opts).map_err(to_pyerr)?;
        Ok(NativeWorker {
            events: Arc::new(AsyncMutex::new(worker.events())),
            worker,
            hand_back_at: Mutex::new(None),
        })
    }

    /// CAN_DO (or CAN_DO_TIMEOUT).
    #[pyo3(signature = (name, timeout=None))]
    fn register(
        &self,
        name: &Bound<'_, PyAny>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let name = util::text(name, "name")?;
        let timeout = util::timeout(timeout, "timeout")?;
        self.worker.register(&name, timeout).map_err(to_pyerr)
    }

    /// CANT_DO.
    fn unregister(&self, name: &Bound<'_, PyAny>) -> PyResult<()> {
        let name = util::text(name, "name")?;
        self.worker.unregister(&name).map_err(to_pyerr)
    }

    /// Blocks (GIL released) for the next job; None once stopped and drained.
    fn next_job(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        // `Worker::next_job` is cancel-safe: an interrupted wait loses no job.
        self.next::<Blocking>(py)
    }

    /// A job assigned already, or None: never waits.
    fn try_next_job(&self, py: Python<'_>) -> Option<Job> {
        self.worker.try_next_job().map(|j| Job::new(py, j))
    }

    /// Awaitable of the next job; None once stopped and drained.
    fn next_job_async(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.next::<Awaitable>(py)
    }

    /// The next connection event as a `(level, message)` record for the
    /// `polygear` logger, waiting (GIL released) at most `timeout` seconds;
    /// None if none came.
    /// (Only blocking: AsyncWorker reads them from a thread too, see
    /// `_logging_events_async`.)
    fn next_event(&self, py: Python<'_>, timeout: f64) -> PyResult<Py<PyAny>> {
        let wait = args::seconds("timeout", timeout).map_err(util::arg_err)?;
        let events = self.events.clone();
        Blocking::run(
            py,
            async move { Ok(events::next(events, wait).await) },
            |py, record| Ok(record.into_pyobject(py)?.into_any().unbind()),
        )
    }

    /// Fail-fast start (GIL released): returns once a server is connected
    /// with the functions registered; raises once every server failed.
    fn connect(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.connect_with::<Blocking>(py)
    }

    /// Awaitable form of connect().
    fn connect_async(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.connect_with::<Awaitable>(py)
    }

    /// Graceful stop: grab no new jobs; with `timeout` (seconds), shutdown()
    /// hands the jobs still running then back to the server.
    #[pyo3(signature = (timeout=None))]
    fn stop(&self, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        if let Some(t) = util::timeout(timeout, "timeout")? {
            let at = Instant::now() + t;
            let mut slot = lock(&self.hand_back_at);
            // a later stop() can only bring the hand-back forward
            *slot = Some(slot.map_or(at, |prev| prev.min(at)));
        }
        self.worker.stop();
        Ok(())
    }

    /// True once stop() was called.
    #[getter]
    fn stopped(&self) -> bool {
        self.worker.is_stopped()
    }

    /// Seconds until the stop timeout passes (0.0 once it did), None without one.
    #[getter]
    fn stop_remaining(&self) -> Option<f64> {
        lock(&self.hand_back_at)
            .map(|at| at.saturating_duration_since(Instant::now()).as_secs_f64())
    }

    /// Waits (GIL released) until unfinished jobs ended, or until the stop
    /// timeout passed (the jobs still running are handed back to the
    /// server), then closes the connections; returns how many were handed back.
    fn shutdown(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.shutdown_with::<Blocking>(py)
    }

    /// Awaitable form of shutdown().
    fn shutdown_async(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.shutdown_with::<Awaitable>(py)
    }
}

impl NativeWorker {
    /// The next job (a `Job`), or None once stopped and drained.
    fn next<R: Runner>(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let w = self.worker.clone();
        R::run(
            py,
            async move { Ok(w.next_job().await) },
            |py, job| match job {
                Some(j) => Ok(Py::new(py, Job::new(py, j))?.into_any()),
                None => Ok(py.None()),
            },
        )
    }

    /// Connects (fail-fast) and registers the functions.
    fn connect_with<R: Runner>(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let w = self.worker.clone();
        R::run(py, async move { w.connect().await.map_err(to_pyerr) }, none)
    }

    /// Stops, waits until unfinished jobs ended or the stop timeout passed
    /// (then hands them back), closes the connections; the number handed back.
    fn shutdown_with<R: Runner>(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.worker.stop();
        let w = self.worker.clone();
        let at = *lock(&self.hand_back_at);
        R::run(
            py,
            async move {
                Ok(match at {
                    Some(at) => {
                        w.shutdown_timeout(at.saturating_duration_since(Instant::now()))
                            .await
                    }
                    None => {
                        w.shutdown().await;
                        0
                    }
                })
            },
            |py, n: usize| Ok(n.into_pyobject(py)?.into_any().unbind()),
        )
    }
}
