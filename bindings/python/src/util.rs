//! Shared helpers: the one tokio runtime, GIL-free waiting, argument
//! conversion and the mapping of `polygear::Error` onto Python exceptions.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use polygear::{Error, Priority, ServerAddr};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyModule, PyString};

/// How often a blocked call wakes up to let Python handle signals (Ctrl-C).
const TICK: Duration = Duration::from_millis(100);

/// The multi-thread runtime of the asyncio API (pyo3-async-runtimes').
pub(crate) fn rt() -> &'static tokio::runtime::Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

/// The runtime of the blocking API: a current-thread runtime driven by the
/// Python threads that wait on it (see [`wait`]). The thread that waits for
/// a reply reads it from the socket itself, instead of a runtime thread
/// reading it and waking the waiter: one thread hand-off less per packet,
/// which is most of a one-job-at-a-time round trip. Its connections only
/// move while some thread waits, which a blocking API always does; what a
/// job sends meanwhile is written directly by the sending thread.
pub(crate) fn driven() -> PyResult<&'static tokio::runtime::Runtime> {
    static DRIVEN: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    DRIVEN
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
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
    let rt = driven()?;
    let mut fut = std::pin::pin!(fut);
    loop {
        let r = py.detach(|| rt.block_on(async { tokio::time::timeout(TICK, fut.as_mut()).await }));
        match r {
            Ok(v) => return Ok(v),
            Err(_) => py.check_signals()?,
        }
    }
}

/// Locks `m`, going on with the data of a poisoned lock (a panicking
/// thread cannot leave these values half-updated).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A short name of an object's type, for error messages.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".to_string())
}

/// Converts a payload (`bytes`, `bytearray`, `memoryview` or `str`) into
/// [`Bytes`]. `bytes` are shared without copying; `str` is UTF-8 encoded.
pub(crate) fn payload(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Bytes> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Bytes::from_owner(PyBackedBytes::from(b.clone())));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Bytes::from_owner(PyBackedBytes::from(s.encode_utf8()?)));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Bytes::from_owner(PyBackedBytes::from(b.clone())));
    }
    if obj.is_instance_of::<PyMemoryView>() {
        let b = obj.py().get_type::<PyBytes>().call1((obj,))?;
        return Ok(Bytes::from_owner(PyBackedBytes::from(
            b.cast_into::<PyBytes>()?,
        )));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be bytes, bytearray, memoryview or str, not {}",
        type_name(obj)
    )))
}

/// Like [`payload`], with `None` meaning empty.
pub(crate) fn opt_payload(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Bytes> {
    match obj {
        None => Ok(Bytes::new()),
        Some(o) if o.is_none() => Ok(Bytes::new()),
        Some(o) => payload(o, what),
    }
}

/// A `str` argument with a clear TypeError.
pub(crate) fn text(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    match obj.cast::<PyString>() {
        Ok(s) => Ok(s.to_cow()?.into_owned()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{what} must be str, not {}",
            type_name(obj)
        ))),
    }
}

/// An optional unique key (`str` or `bytes`).
pub(crate) fn unique(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Bytes>> {
    match obj {
        None => Ok(None),
        Some(o) if o.is_none() => Ok(None),
        Some(o) if o.is_instance_of::<PyString>() || o.is_instance_of::<PyBytes>() => {
            Ok(Some(payload(o, "unique")?))
        }
        Some(o) => Err(PyTypeError::new_err(format!(
            "unique must be str, bytes or None, not {}",
            type_name(o)
        ))),
    }
}

/// `"high"`, `"normal"` or `"low"`.
pub(crate) fn priority(obj: &Bound<'_, PyAny>) -> PyResult<Priority> {
    let s = obj.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "priority must be 'high', 'normal' or 'low', not {}",
            type_name(obj)
        ))
    })?;
    match s.to_cow()?.to_ascii_lowercase().as_str() {
        "high" => Ok(Priority::High),
        "normal" => Ok(Priority::Normal),
        "low" => Ok(Priority::Low),
        other => Err(PyValueError::new_err(format!(
            "priority must be 'high', 'normal' or 'low', not {other:?}"
        ))),
    }
}

/// Like [`priority`], with a missing argument meaning normal.
pub(crate) fn opt_priority(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Priority> {
    obj.map_or(Ok(Priority::Normal), priority)
}

/// Python's spelling of a bool, for `__repr__`.
pub(crate) fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// Seconds (int or float, or None) as a duration.
pub(crate) fn seconds(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Duration>> {
    let Some(o) = obj else { return Ok(None) };
    if o.is_none() {
        return Ok(None);
    }
    if o.is_instance_of::<pyo3::types::PyBool>()
        || !(o.is_instance_of::<pyo3::types::PyInt>() || o.is_instance_of::<pyo3::types::PyFloat>())
    {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a number of seconds or None, not {}",
            type_name(o)
        )));
    }
    let secs: f64 = o.extract()?;
    Duration::try_from_secs_f64(secs).map(Some).map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a finite, non-negative number of seconds, not {secs}"
        ))
    })
}

/// Servers as `"host:port"` strings: one string (comma-separated list allowed)
/// or an iterable of strings. `None` means `127.0.0.1:4730`.
pub(crate) fn servers(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<ServerAddr>> {
    let mut out = Vec::new();
    match obj {
        None => return Ok(vec![ServerAddr::new("127.0.0.1", polygear::DEFAULT_PORT)]),
        Some(o) if o.is_none() => {
            return Ok(vec![ServerAddr::new("127.0.0.1", polygear::DEFAULT_PORT)])
        }
        Some(o) if o.is_instance_of::<PyString>() => {
            out.extend(ServerAddr::parse_list(&text(o, "servers")?).map_err(to_pyerr)?);
        }
        Some(o) => {
            let iter = o.try_iter().map_err(|_| {
                PyTypeError::new_err(format!(
                    "servers must be a str or a list of 'host:port' str, not {}",
                    type_name(o)
                ))
            })?;
            for item in iter {
                let item = item?;
                let s = item.cast::<PyString>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "servers must contain 'host:port' str, not {}",
                        type_name(&item)
                    ))
                })?;
                out.extend(ServerAddr::parse_list(&s.to_cow()?).map_err(to_pyerr)?);
            }
        }
    }
    if out.is_empty() {
        return Err(PyValueError::new_err(
            "servers must name at least one 'host:port'",
        ));
    }
    Ok(out)
}

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn error_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let m = ERRORS.get_or_try_init(py, || py.import("polygear._errors").map(|m| m.unbind()))?;
    m.bind(py).getattr(name)
}

/// Builds the Python exception for a core error (see `polygear/_errors.py`).
pub(crate) fn to_pyerr(e: Error) -> PyErr {
    Python::attach(|py| {
        let msg = e.to_string();
        let made = match &e {
            Error::JobException { handle, message } => error_class(py, "JobException")
                .and_then(|c| c.call1((msg, handle.clone(), message.clone()))),
            Error::JobFailed { handle } => {
                error_class(py, "JobFailed").and_then(|c| c.call1((msg, handle.clone())))
            }
            Error::Server { code, text } => error_class(py, "ServerError")
                .and_then(|c| c.call1((msg, code.clone(), text.clone()))),
            _ => {
                let name = match e.kind() {
                    polygear::ErrorKind::Connection => "GearmanConnectionError",
                    polygear::ErrorKind::Timeout => "GearmanTimeoutError",
                    polygear::ErrorKind::Protocol => "ProtocolError",
                    polygear::ErrorKind::InvalidArgument => "InvalidArgumentError",
                    polygear::ErrorKind::Closed => "ClosedError",
                    _ => "GearmanError",
                };
                error_class(py, name).and_then(|c| c.call1((msg,)))
            }
        };
        match made {
            Ok(inst) => PyErr::from_value(inst),
            Err(err) => err,
        }
    })
}

/// `bytes` from a core buffer.
pub(crate) fn to_bytes(py: Python<'_>, b: &[u8]) -> Py<PyBytes> {
    PyBytes::new(py, b).unbind()
}
