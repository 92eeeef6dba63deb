//! Conversions between Python values and core values, and the mapping of
//! `polygear::Error` onto Python exceptions (through the shared table in
//! [`polygear_bindings::errors`]).

use bytes::Bytes;
use std::path::PathBuf;

use polygear::{Error, Priority, ServerAddr, TlsOptions};
use polygear_bindings::args::{self, ArgError};
use polygear_bindings::errors::{self, TimeUnit};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyInt, PyMemoryView, PyModule, PyString};

pub(crate) use polygear_bindings::lock;

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

/// `"high"`, `"normal"` or `"low"` (any case).
pub(crate) fn priority(obj: &Bound<'_, PyAny>) -> PyResult<Priority> {
    let s = obj.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "priority must be 'high', 'normal' or 'low', not {}",
            type_name(obj)
        ))
    })?;
    args::priority(&s.to_cow()?).map_err(arg_err)
}

/// Like [`priority`], with a missing argument or None meaning normal.
pub(crate) fn opt_priority(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Priority> {
    match obj {
        Some(o) if !o.is_none() => priority(o),
        _ => Ok(Priority::Normal),
    }
}

/// Python's spelling of a bool, for `__repr__`.
pub(crate) fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// An int argument in `0..=max` (a `TypeError` if it is not an `int`, a
/// `ValueError` naming the range and the value otherwise, never an
/// `OverflowError`).
pub(crate) fn uint<T>(obj: &Bound<'_, PyAny>, what: &str, max: T) -> PyResult<T>
where
    T: Copy + Into<u64> + TryFrom<u64>,
{
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int, not {}",
            type_name(obj)
        )));
    }
    let max_u64: u64 = max.into();
    obj.extract::<u64>()
        .ok()
        .filter(|n| *n <= max_u64)
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| {
            let shown = obj.repr().map(|r| r.to_string()).unwrap_or_default();
            PyValueError::new_err(format!("{what} must be 0..{max_u64}, not {shown}"))
        })
}

/// A timeout in seconds (int or float, greater than 0), or None.
pub(crate) fn timeout(
    obj: Option<&Bound<'_, PyAny>>,
    what: &str,
) -> PyResult<Option<std::time::Duration>> {
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
    args::timeout_seconds(what, o.extract()?)
        .map(Some)
        .map_err(arg_err)
}

/// A duration in seconds (int or float, 0 or more): retry backoffs,
/// retention periods, unique windows (where 0 turns the setting off).
pub(crate) fn seconds(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<std::time::Duration> {
    if obj.is_instance_of::<PyBool>()
        || !(obj.is_instance_of::<PyInt>() || obj.is_instance_of::<pyo3::types::PyFloat>())
    {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a number of seconds, not {}",
            type_name(obj)
        )));
    }
    args::seconds(what, obj.extract()?).map_err(arg_err)
}

/// Servers as `"host:port"` strings: one string (comma-separated list allowed)
/// or an iterable of strings. `None` means `127.0.0.1:4730`.
pub(crate) fn servers(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<ServerAddr>> {
    let list = match obj {
        None => return Ok(args::default_servers()),
        Some(o) if o.is_none() => return Ok(args::default_servers()),
        Some(o) if o.is_instance_of::<PyString>() => vec![text(o, "servers")?],
        Some(o) => {
            let iter = o.try_iter().map_err(|_| {
                PyTypeError::new_err(format!(
                    "servers must be a str or a list of 'host:port' str, not {}",
                    type_name(o)
                ))
            })?;
            let mut list = Vec::new();
            for item in iter {
                let item = item?;
                let s = item.cast::<PyString>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "servers must contain 'host:port' str, not {}",
                        type_name(&item)
                    ))
                })?;
                list.push(s.to_cow()?.into_owned());
            }
            list
        }
    };
    args::servers(list).map_err(arg_err)
}

/// The fields `names` of a settings object (a dataclass such as
/// `polygear.TLS`, or any object with those attributes) or of a dict with
/// those keys (an unknown key is a `TypeError`); `what` names the argument
/// in errors, `accepted` lists what it may be.
pub(crate) fn fields_of<'py, const N: usize>(
    o: &Bound<'py, PyAny>,
    names: [&str; N],
    what: &str,
    accepted: &str,
) -> PyResult<[Option<Bound<'py, PyAny>>; N]> {
    let mut fields: [Option<Bound<'py, PyAny>>; N] = std::array::from_fn(|_| None);
    if let Ok(d) = o.cast::<PyDict>() {
        for (k, v) in d.iter() {
            let key = k.cast::<PyString>().ok().map(|s| s.to_string());
            let at = key
                .as_deref()
                .and_then(|k| names.iter().position(|f| *f == k))
                .ok_or_else(|| {
                    PyTypeError::new_err(format!(
                        "unknown {what} key {}; the keys are {}",
                        k.repr().map(|r| r.to_string()).unwrap_or_default(),
                        names.join(", ")
                    ))
                })?;
            fields[at] = Some(v);
        }
    } else {
        for (slot, name) in fields.iter_mut().zip(names) {
            *slot = Some(o.getattr(name).map_err(|_| {
                PyTypeError::new_err(format!("{what} must be {accepted}, not {}", type_name(o)))
            })?);
        }
    }
    Ok(fields)
}

/// The `tls=` argument: `None`/`False` (plain TCP), `True` (libgearman's
/// environment variables, else the system's trust store), a `polygear.TLS`
/// (any object with its four attributes) or a dict with its field names.
pub(crate) fn tls(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<TlsOptions>> {
    let Some(o) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if let Ok(b) = o.cast::<PyBool>() {
        return Ok(b.is_true().then(args::tls_default));
    }
    let [ca, cert, key, name] = fields_of(
        o,
        args::TLS_FIELDS,
        "tls",
        "True, False, None, a polygear.TLS or a dict",
    )?;
    let path = |v: Option<Bound<'_, PyAny>>, what: &str| -> PyResult<Option<PathBuf>> {
        match v {
            Some(v) if !v.is_none() => {
                if !(v.is_instance_of::<PyString>() || v.hasattr("__fspath__")?) {
                    return Err(PyTypeError::new_err(format!(
                        "tls {what} must be a str or os.PathLike path, not {}",
                        type_name(&v)
                    )));
                }
                v.extract::<PathBuf>()
                    .map(Some)
                    .map_err(|_| PyTypeError::new_err(format!("tls {what} must be a str path")))
            }
            _ => Ok(None),
        }
    };
    let server_name = match name {
        Some(v) if !v.is_none() => Some(text(&v, "tls server_name")?),
        _ => None,
    };
    args::tls(
        path(ca, "ca_file")?,
        path(cert, "cert_file")?,
        path(key, "key_file")?,
        server_name,
    )
    .map(Some)
    .map_err(arg_err)
}

/// A refused argument as a Python exception: `ValueError`, or the core's error.
pub(crate) fn arg_err(e: ArgError) -> PyErr {
    match e {
        ArgError::Value(m) => PyValueError::new_err(m),
        ArgError::Core(e) => to_pyerr(e),
    }
}

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn error_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let m = ERRORS.get_or_try_init(py, || py.import("polygear._errors").map(|m| m.unbind()))?;
    m.bind(py).getattr(name)
}

/// Builds the Python exception for a core error: the class of its kind in the
/// shared table (see `polygear/_errors.py`), with the handle / server code
/// arguments of the job and server errors, and its stable `code`.
pub(crate) fn to_pyerr(e: Error) -> PyErr {
    let (class, code) = errors::classify(&e);
    let msg = errors::message(&e, TimeUnit::Seconds);
    // a cancelled job: JobCancelled, the subclass of JobFailed, code ECANCELED
    let (class, code) = if errors::is_cancelled(&e) {
        ("JobCancelled", errors::CANCELLED_CODE)
    } else {
        (class.python, code)
    };
    new_error(class, code, |c| match &e {
        Error::JobCancelled { handle, reason } => {
            c.call1((msg, handle.clone(), Some(reason.clone())))
        }
        Error::JobException { handle, message } => c.call1((msg, handle.clone(), message.clone())),
        Error::JobFailed { handle, reason } => c.call1((msg, handle.clone(), reason.clone())),
        Error::Server { code, text } => c.call1((msg, code.clone(), text.clone())),
        _ => c.call1((msg,)),
    })
}

/// An exception of class `class` of `polygear._errors` with message `msg`
/// and code `code` (e.g. `EADDRINUSE`), for failures that are no core error.
pub(crate) fn error(class: &str, code: &'static str, msg: String) -> PyErr {
    new_error(class, code, |c| c.call1((msg,)))
}

/// Makes the exception with `make` and sets its `code` (unless it has one);
/// a code that names an errno (`ECONNREFUSED`, `EADDRINUSE`, ...) also
/// becomes the `errno` of the connection errors (which are `OSError`s).
fn new_error(
    class: &str,
    code: &'static str,
    make: impl for<'py> FnOnce(&Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>>,
) -> PyErr {
    Python::attach(|py| {
        let made = error_class(py, class).and_then(|c| {
            let inst = make(&c)?;
            // ServerError's own `code` is the server's (e.g. QUEUE_ERROR)
            if !inst.getattr("code")?.is_truthy()? {
                inst.setattr("code", code)?;
            }
            if inst.is_instance_of::<pyo3::exceptions::PyOSError>() {
                if let Ok(n) = py.import("errno").and_then(|m| m.getattr(code)) {
                    inst.setattr("errno", n)?;
                }
            }
            Ok(inst)
        });
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
