//! `polygear.Admin`: gearmand's admin text protocol as typed calls.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyInt;
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
            self.handle, self.retries, self.ignore, self.queued
        )
    }
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
