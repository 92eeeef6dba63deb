//! `polygear.Server`: the Rust job server running inside this process.

use std::sync::Mutex;

use polygear_server::{BackgroundServer, ServerConfig};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::util::{lock, py_bool};

/// An in-process polygear job server on a loopback port (0 = pick a free one).
#[pyclass(module = "polygear", frozen)]
pub struct Server {
    host: String,
    port: u16,
    running: Mutex<Option<BackgroundServer>>,
}

#[pymethods]
impl Server {
    #[new]
    // the default is not a literal: spell the signature out for introspection
    #[pyo3(signature = (port=0, host="127.0.0.1".to_string()), text_signature = "(port=0, host='127.0.0.1')")]
    fn new(port: u16, host: String) -> Self {
        Server {
            host,
            port,
            running: Mutex::new(None),
        }
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
            ..ServerConfig::default()
        };
        let server = py
            .detach(move || BackgroundServer::start(config))
            .map_err(|e| {
                PyRuntimeError::new_err(format!("could not start the polygear server: {e}"))
            })?;
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
