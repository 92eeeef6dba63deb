//! `Polygear::Native::Server`: the Rust job server running in-process.

use std::sync::Mutex;

use magnus::{function, method, prelude::*, Error, RModule, Ruby};
use polygear_server::{BackgroundServer, ServerConfig};

/// An in-process job server on 127.0.0.1 (port 0 picks a free one).
#[magnus::wrap(class = "Polygear::Native::Server", free_immediately, size)]
struct NativeServer {
    port: u16,
    inner: Mutex<Option<BackgroundServer>>,
}

impl NativeServer {
    fn start(ruby: &Ruby, port: u16) -> Result<Self, Error> {
        let _guard = crate::runtime(ruby)?.enter();
        let config = ServerConfig { port, ..Default::default() };
        let server = BackgroundServer::start(config).map_err(|e| {
            Error::new(
                ruby.get_inner(crate::ERRORS.get().map(|c| c.connection).ok_or_else(|| {
                    Error::new(ruby.exception_runtime_error(), "polygear not initialized")
                })?),
                format!("cannot start the server: {e}"),
            )
        })?;
        Ok(NativeServer { port: server.port(), inner: Mutex::new(Some(server)) })
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn is_running(&self) -> bool {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Stops the server (idempotent); connected clients see the connection close.
    fn stop(ruby: &Ruby, rb_self: &Self) -> Result<(), Error> {
        let server = rb_self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(server) = server {
            let _guard = crate::runtime(ruby)?.enter();
            server.stop();
        }
        Ok(())
    }
}

pub(crate) fn define(ruby: &Ruby, native: RModule) -> Result<(), Error> {
    let c = native.define_class("Server", ruby.class_object())?;
    c.define_singleton_method("start", function!(NativeServer::start, 1))?;
    c.define_method("port", method!(NativeServer::port, 0))?;
    c.define_method("running?", method!(NativeServer::is_running, 0))?;
    c.define_method("stop", method!(NativeServer::stop, 0))?;
    Ok(())
}
