//! JSON payloads (`submit_json`, `Job.json`): the encoding itself is
//! `polygear/_json.py`, shared with the Python side of the workers.

use bytes::Bytes;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyModule};

use crate::util;

static JSON: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    Ok(JSON
        .get_or_try_init(py, || py.import("polygear._json").map(Bound::unbind))?
        .bind(py))
}

/// `value` as UTF-8 JSON (`TypeError` naming `what` if JSON cannot hold it).
pub(crate) fn encode(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Bytes> {
    let b = module(value.py())?.call_method1("encode", (value, what))?;
    util::payload(&b, what)
}

/// The value of a UTF-8 JSON payload; `ValueError` if it is not JSON.
pub(crate) fn decode(py: Python<'_>, data: &[u8]) -> PyResult<Py<PyAny>> {
    Ok(module(py)?
        .call_method1("decode", (PyBytes::new(py, data),))?
        .unbind())
}

/// How a job's result reaches Python: as bytes, or decoded from JSON.
#[derive(Clone)]
pub(crate) enum Output {
    /// `bytes`.
    Bytes,
    /// The decoded JSON value of a result of function `.0`; a result that is
    /// not JSON raises `polygear.ProtocolError` (its cause the decoding error).
    Json(String),
}

impl Output {
    /// The Python value of result `data`.
    pub(crate) fn convert(&self, py: Python<'_>, data: &[u8]) -> PyResult<Py<PyAny>> {
        match self {
            Output::Bytes => Ok(util::to_bytes(py, data).into_any()),
            Output::Json(function) => decode(py, data).map_err(|e| {
                if !e.is_instance_of::<PyValueError>(py) {
                    return e;
                }
                let err = util::error(
                    "ProtocolError",
                    "EPROTOCOL",
                    format!(
                        "the result of function '{function}' is not JSON ({}): {}",
                        preview(data),
                        e.value(py)
                    ),
                );
                err.set_cause(py, Some(e));
                err
            }),
        }
    }
}

/// The start of a payload for a message: its first bytes, lossily decoded.
fn preview(data: &[u8]) -> String {
    const MAX: usize = 40;
    let text = String::from_utf8_lossy(&data[..data.len().min(MAX)]).into_owned();
    if data.is_empty() {
        "an empty result".to_string()
    } else if data.len() > MAX {
        format!("{text:?}...")
    } else {
        format!("{text:?}")
    }
}
