//! `polygear.Server`: the Rust job server running inside this process.

use std::path::PathBuf;
use std::sync::Mutex;

use polygear_server::{
    BackgroundServer, RetryPolicy, ScheduleSpec, ServerConfig, ServerError, TlsConfig,
};
use std::io::ErrorKind;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyTuple};

use crate::util::{self, lock, py_bool};

/// An in-process polygear job server on a loopback port (0 = pick a free one).
/// polygear extensions at start: `retry={function: max_attempts |
/// (max_attempts, backoff[, max_delay])}` (seconds; backoff default 1),
/// `retain={function: seconds}`, `unique_window={function: seconds}`,
/// `schedules=[(name, cron, function[, data])]`.
#[pyclass(module = "polygear", frozen)]
pub struct Server {
    host: String,
    port: u16,
    tls: Option<TlsConfig>,
    /// The polygear extensions configured at start (`--retry`, `--retain`,
    /// `--unique-window`, `--schedule`).
    extensions: Extensions,
    running: Mutex<Option<BackgroundServer>>,
}

/// `Server(retry=, retain=, unique_window=, schedules=)`.
#[derive(Default, Clone)]
struct Extensions {
    retry_policies: Vec<(String, RetryPolicy)>,
    retain: Vec<(String, u32)>,
    unique_windows: Vec<(String, u32)>,
    schedules: Vec<ScheduleSpec>,
}

/// The `(function, value)` items of a `{function: value}` dict argument.
fn items<'py>(
    obj: Option<&Bound<'py, PyAny>>,
    what: &str,
) -> PyResult<Vec<(String, Bound<'py, PyAny>)>> {
    let Some(o) = obj.filter(|o| !o.is_none()) else {
        return Ok(Vec::new());
    };
    let d = o.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!(
            "Server {what} must be a dict {{function: ...}}, not {}",
            util::type_name(o)
        ))
    })?;
    d.iter()
        .map(|(k, v)| Ok((util::text(&k, &format!("Server {what} key"))?, v)))
        .collect()
}

/// A `retry=` value: `max_attempts` (backoff 1 s) or
/// `(max_attempts, backoff[, max_delay])` in seconds.
fn retry_policy(v: &Bound<'_, PyAny>) -> PyResult<RetryPolicy> {
    let attempts = |a: &Bound<'_, PyAny>| util::uint(a, "Server retry max_attempts", u32::MAX);
    if v.is_instance_of::<PyInt>() {
        return Ok(RetryPolicy::new(
            attempts(v)?,
            std::time::Duration::from_secs(1),
        ));
    }
    let parts: Vec<Bound<'_, PyAny>> = match v.cast::<PyTuple>() {
        Ok(t) => t.iter().collect(),
        Err(_) => Vec::new(),
    };
    let mut policy = match parts.as_slice() {
        [a, b] | [a, b, _] => RetryPolicy::new(attempts(a)?, util::seconds(b, "Server retry backoff")?),
        _ => {
            return Err(PyTypeError::new_err(format!(
                "Server retry values must be max_attempts or (max_attempts, backoff[, max_delay]), not {}",
                util::type_name(v)
            )))
        }
    };
    if let [_, _, m] = parts.as_slice() {
        policy.max_delay = util::seconds(m, "Server retry max_delay")?;
    }
    Ok(policy)
}

/// A `schedules=` item: `(name, cron, function[, data])`.
fn schedule(v: &Bound<'_, PyAny>) -> PyResult<ScheduleSpec> {
    let parts: Vec<Bound<'_, PyAny>> = match v.cast::<PyTuple>() {
        Ok(t) => t.iter().collect(),
        Err(_) => Vec::new(),
    };
    let (name, cron, function, data) = match parts.as_slice() {
        [n, c, f] => (n, c, f, None),
        [n, c, f, d] => (n, c, f, Some(d)),
        _ => {
            return Err(PyTypeError::new_err(format!(
                "Server schedules must hold (name, cron, function[, data]) tuples, not {}",
                util::type_name(v)
            )))
        }
    };
    let spec = ScheduleSpec {
        name: util::text(name, "schedule name")?,
        cron: util::text(cron, "schedule cron")?,
        function: util::text(function, "schedule function")?,
        data: util::opt_payload(data, "schedule data")?,
    };
    spec.check()
        .map_err(|e| PyValueError::new_err(format!("Server schedule {}: {e}", spec.name)))?;
    Ok(spec)
}

impl Extensions {
    fn new(
        retry: Option<&Bound<'_, PyAny>>,
        retain: Option<&Bound<'_, PyAny>>,
        unique_window: Option<&Bound<'_, PyAny>>,
        schedules: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Extensions> {
        let secs = |what: &str, v: &Bound<'_, PyAny>| util::uint(v, what, u32::MAX);
        let mut ext = Extensions::default();
        for (f, v) in items(retry, "retry")? {
            ext.retry_policies.push((f, retry_policy(&v)?));
        }
        for (f, v) in items(retain, "retain")? {
            ext.retain.push((f, secs("Server retain seconds", &v)?));
        }
        for (f, v) in items(unique_window, "unique_window")? {
            ext.unique_windows
                .push((f, secs("Server unique_window seconds", &v)?));
        }
        if let Some(s) = schedules.filter(|s| !s.is_none()) {
            let iter = s.try_iter().map_err(|_| {
                PyTypeError::new_err(format!(
                    "Server schedules must be a list of (name, cron, function[, data]) tuples, not {}",
                    util::type_name(s)
                ))
            })?;
            for item in iter {
                ext.schedules.push(schedule(&item?)?);
            }
        }
        Ok(ext)
    }
}

/// The fields of the server's `tls=`, in `polygear.ServerTLS`'s order.
const SERVER_TLS_FIELDS: [&str; 4] = ["cert_file", "key_file", "ca_file", "verify_clients"];

/// The server's `tls=`: `None`, a `polygear.ServerTLS` (any object with its
/// attributes) or a dict with its field names.
fn server_tls(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<TlsConfig>> {
    let Some(o) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    let [cert, key, ca, verify] = crate::util::fields_of(
        o,
        SERVER_TLS_FIELDS,
        "Server tls",
        "None, a polygear.ServerTLS or a dict",
    )?;
    let path = |v: Option<Bound<'_, PyAny>>, what: &str| -> PyResult<Option<PathBuf>> {
        match v {
            Some(v) if !v.is_none() => v.extract::<PathBuf>().map(Some).map_err(|_| {
                PyTypeError::new_err(format!(
                    "Server tls {what} must be a str or os.PathLike path, not {}",
                    crate::util::type_name(&v)
                ))
            }),
            _ => Ok(None),
        }
    };
    let required = |p: Option<PathBuf>, what: &str| {
        p.ok_or_else(|| PyValueError::new_err(format!("Server tls needs {what}")))
    };
    let verify_clients = match verify {
        Some(v) if !v.is_none() => v
            .cast::<PyBool>()
            .map_err(|_| PyTypeError::new_err("Server tls verify_clients must be a bool"))?
            .is_true(),
        _ => false,
    };
    let ca_file = path(ca, "ca_file")?;
    if verify_clients && ca_file.is_none() {
        return Err(PyValueError::new_err(
            "Server tls verify_clients needs ca_file (the CA that signs client certificates)",
        ));
    }
    Ok(Some(TlsConfig {
        cert_file: required(path(cert, "cert_file")?, "cert_file")?,
        key_file: required(path(key, "key_file")?, "key_file")?,
        ca_file,
        verify_clients,
    }))
}

impl Server {
    /// A port in use is said when the server is made, not only by start():
    /// a listener is bound (std sets `SO_REUSEADDR`, as the server does, so
    /// a port in `TIME_WAIT` passes) and closed again. Other failures (a host
    /// that does not resolve, a port it may not use) are left to start().
    fn check_port(&self) -> PyResult<()> {
        if self.port == 0 {
            return Ok(());
        }
        match std::net::TcpListener::bind((self.host.as_str(), self.port)) {
            Err(e) if e.kind() == ErrorKind::AddrInUse => Err(self.start_error(e.into())),
            _ => Ok(()),
        }
    }

    /// Why the server did not start, as a `polygear` exception: bad settings
    /// are invalid arguments, a port in use or a host it cannot listen on
    /// are connection errors (with the errno's code), anything else a
    /// `GearmanError`.
    fn start_error(&self, e: ServerError) -> PyErr {
        let at = format!("port {} on {}", self.port, self.host);
        match e {
            // e.g. a TLS file that cannot be read
            ServerError::Config(msg) => util::to_pyerr(polygear::Error::InvalidArgument(format!(
                "could not start the polygear server: {msg}"
            ))),
            ServerError::Io(io) if io.kind() == ErrorKind::AddrInUse => util::error(
                "GearmanConnectionError",
                "EADDRINUSE",
                format!(
                    "could not start the polygear server: {at} is already in use; stop what \
                     listens there or pick another port (port=0 picks a free one)"
                ),
            ),
            ServerError::Io(io) => {
                let code = polygear_bindings::errors::io_code(io.kind());
                util::error(
                    "GearmanConnectionError",
                    code,
                    format!("could not start the polygear server on {at}: {io}"),
                )
            }
            e => util::error(
                "GearmanError",
                "ESERVER",
                format!("could not start the polygear server: {e}"),
            ),
        }
    }
}

#[pymethods]
impl Server {
    #[new]
    // the default is not a literal: spell the signature out for introspection
    #[pyo3(
        signature = (port=None, host="127.0.0.1".to_string(), *, tls=None, retry=None, retain=None, unique_window=None, schedules=None),
        text_signature = "(port=0, host='127.0.0.1', *, tls=None, retry=None, retain=None, unique_window=None, schedules=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        port: Option<&Bound<'_, PyAny>>,
        host: String,
        tls: Option<&Bound<'_, PyAny>>,
        retry: Option<&Bound<'_, PyAny>>,
        retain: Option<&Bound<'_, PyAny>>,
        unique_window: Option<&Bound<'_, PyAny>>,
        schedules: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let port = match port.filter(|p| !p.is_none()) {
            Some(p) => util::uint(p, "port", u16::MAX)?,
            None => 0,
        };
        let server = Server {
            host,
            port,
            tls: server_tls(tls)?,
            extensions: Extensions::new(retry, retain, unique_window, schedules)?,
            running: Mutex::new(None),
        };
        server.check_port()?;
        Ok(server)
    }

    /// Starts the server (no-op if it already runs).
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let mut guard = lock(&self.running);
        if guard.is_some() {
            return Ok(());
        }
        let config = ServerConfig {
            port: self.port,
            listen: self.host.clone(),
            tls: self.tls.clone(),
            retry_policies: self.extensions.retry_policies.clone(),
            retain: self.extensions.retain.clone(),
            unique_windows: self.extensions.unique_windows.clone(),
            schedules: self.extensions.schedules.clone(),
            ..ServerConfig::default()
        };
        let server = py
            .detach(move || BackgroundServer::start(config))
            .map_err(|e| self.start_error(e))?;
        *guard = Some(server);
        Ok(())
    }

    /// Stops the server (no-op if it is not running).
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let server = lock(&self.running).take();
        if let Some(s) = server {
            py.detach(move || s.stop());
        }
        Ok(())
    }

    /// The port it listens on (the chosen one once started).
    #[getter]
    fn port(&self) -> u16 {
        match lock(&self.running).as_ref() {
            Some(s) => s.port(),
            None => self.port,
        }
    }

    /// The host it listens on.
    #[getter]
    fn host(&self) -> &str {
        &self.host
    }

    /// `"host:port"`, ready to pass as `servers=`.
    #[getter]
    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port())
    }

    /// True while the server runs.
    #[getter]
    fn running(&self) -> bool {
        lock(&self.running).is_some()
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().start(slf.py())?;
        Ok(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "Server(address={:?}, running={})",
            self.address(),
            py_bool(self.running())
        )
    }
}
