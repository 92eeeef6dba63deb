//! Running core futures for Python. The blocking API (`Client`, `Worker`,
//! `Admin`) waits on the caller-driven runtime with the GIL released: see
//! [`polygear_bindings::runtime`] for why its callers drive it. The asyncio API
//! (`AsyncClient`, `AsyncWorker`) hands the futures to pyo3-async-runtimes'
//! multi-thread runtime and returns awaitables.
//!
//! An operation offered by both APIs is written once, generic over a
//! [`Runner`]: it converts its arguments (with the GIL), builds the core future
//! and says how to convert the output; [`Blocking`] or [`Awaitable`] runs it.

use std::future::Future;
use std::time::Duration;

use polygear_bindings::runtime::{self, Wake};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use tokio::runtime::Runtime;

/// How often a blocked call wakes up to let Python handle signals (Ctrl-C).
const TICK: Duration = Duration::from_millis(100);

/// The multi-thread runtime of the asyncio API (pyo3-async-runtimes').
pub(crate) fn rt() -> &'static Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

/// The runtime of the blocking API, driven by the Python threads that wait
/// on it ([`polygear_bindings::runtime::driven`]).
pub(crate) fn driven() -> PyResult<&'static Runtime> {
    runtime::driven()
        .map_err(|e| PyRuntimeError::new_err(format!("could not start the I/O runtime: {e}")))
}

/// Runs `fut` to completion on the blocking API's runtime with the GIL
/// released, waking every [`TICK`] to check for signals; a pending
/// `KeyboardInterrupt` cancels (drops) `fut`.
pub(crate) fn wait<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    runtime::wait(
        driven()?,
        fut,
        TICK,
        Wake::EveryTick,
        |slice| Ok(py.detach(|| slice.drive())),
        || py.check_signals(),
    )
}

/// How a method hands the outcome of a core future to Python.
pub(crate) trait Runner: 'static {
    /// The runtime the operation's background tasks go to.
    fn runtime() -> PyResult<&'static Runtime>;

    /// Runs `fut` and converts its output with `conv` (holding the GIL).
    fn run<T, F, C>(py: Python<'_>, fut: F, conv: C) -> PyResult<Py<PyAny>>
    where
        F: Future<Output = PyResult<T>> + Send + 'static,
        T: Send + 'static,
        C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static;

    /// A value that is there already.
    fn ready(py: Python<'_>, value: Py<PyAny>) -> PyResult<Py<PyAny>>;
}

/// The blocking API: waits ([`wait`]) and returns the value.
pub(crate) struct Blocking;

impl Runner for Blocking {
    fn runtime() -> PyResult<&'static Runtime> {
        driven()
    }

    fn run<T, F, C>(py: Python<'_>, fut: F, conv: C) -> PyResult<Py<PyAny>>
    where
        F: Future<Output = PyResult<T>> + Send + 'static,
        T: Send + 'static,
        C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
    {
        let value = wait(py, fut)??;
        conv(py, value)
    }

    fn ready(_py: Python<'_>, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
        Ok(value)
    }
}

/// The asyncio API: returns an awaitable of the value.
pub(crate) struct Awaitable;

impl Runner for Awaitable {
    fn runtime() -> PyResult<&'static Runtime> {
        Ok(rt())
    }

    fn run<T, F, C>(py: Python<'_>, fut: F, conv: C) -> PyResult<Py<PyAny>>
    where
        F: Future<Output = PyResult<T>> + Send + 'static,
        T: Send + 'static,
        C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
    {
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let value = fut.await?;
            Python::attach(|py| conv(py, value))
        })
        .map(Bound::unbind)
    }

    fn ready(py: Python<'_>, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
        pyo3_async_runtimes::tokio::future_into_py(py, async move { Ok(value) }).map(Bound::unbind)
    }
}

/// Python's `None`, for operations that return nothing.
pub(crate) fn none(py: Python<'_>, (): ()) -> PyResult<Py<PyAny>> {
    Ok(py.None())
}
