//! `Polygear::Native::Worker` and `Polygear::Job`.

use std::sync::Arc;

use bytes::Bytes;
use magnus::{function, method, prelude::*, Error, RModule, RString, Ruby, Symbol};
use polygear::{WorkerEvent, WorkerOptions};
use polygear_bindings::runtime::HANDOFF_DELAY;
use tokio::sync::{broadcast, Mutex, OwnedMutexGuard};

use crate::client::bytes_of;
use crate::{arg_err, gvl, map_err, opt_timeout, parse_servers, secs};

/// Native worker; `Polygear::Worker` runs the Ruby threads around it.
#[magnus::wrap(class = "Polygear::Native::Worker", free_immediately, size)]
struct NativeWorker {
    inner: polygear::Worker,
    /// Connection events, subscribed before the worker starts; a Ruby
    /// thread reads them with `next_event` (Ruby code never runs on tokio's
    /// side, so the events cannot be pushed to the Logger from there).
    events: Arc<tokio::sync::Mutex<broadcast::Receiver<WorkerEvent>>>,
}

impl NativeWorker {
    fn new(
        ruby: &Ruby,
        servers: Vec<String>,
        concurrency: usize,
        client_id: Option<String>,
        tls: crate::TlsArg,
        connect_timeout: Option<f64>,
    ) -> Result<Self, Error> {
        let mut opts = WorkerOptions {
            servers: parse_servers(ruby, servers)?,
            tls: crate::tls_options(ruby, tls)?,
            concurrency: polygear_bindings::args::concurrency(concurrency)
                .map_err(|e| arg_err(ruby, e))?,
            client_id,
            handoff_delay: Some(HANDOFF_DELAY),
            ..WorkerOptions::default()
        };
        if let Some(t) = opt_timeout(ruby, "connect_timeout", connect_timeout)? {
            opts.connect_timeout = t;
        }
        let _guard = crate::runtime(ruby)?.enter();
        let inner = polygear::Worker::new(opts).map_err(|e| map_err(ruby, e))?;
        let events = Arc::new(tokio::sync::Mutex::new(inner.events()));
        Ok(NativeWorker { inner, events })
    }

    /// Fail-fast start (GVL released): returns once one server is connected
    /// with the functions registered; raises `ConnectionError` once every
    /// server failed its first attempt.
    fn connect(ruby: &Ruby, rb_self: &Self) -> Result<(), Error> {
        let worker = rb_self.inner.clone();
        gvl::wait(ruby, async move { worker.connect().await })?.map_err(|e| map_err(ruby, e))
    }

    /// The next connection event, waiting at most `timeout` seconds (GVL
    /// released; 0: only one already there), as `[kind, message, attempt]`
    /// (`kind`: `:connected`, `:reconnected`, `:connect_failed`,
    /// `:disconnected` or `:other`; `attempt`: the consecutive failed
    /// attempts of a `:connect_failed`, else 0), or nil if none came. Events
    /// a slow reader missed are skipped.
    fn next_event(
        ruby: &Ruby,
        rb_self: &Self,
        timeout: f64,
    ) -> Result<Option<(Symbol, String, u32)>, Error> {
        let wait = secs(ruby, "timeout", timeout)?;
        let events = rb_self.events.clone();
        let ev = gvl::wait(ruby, async move {
            let mut rx = events.lock().await;
            let next = async {
                loop {
                    match rx.recv().await {
                        Ok(ev) => return Some(ev),
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            };
            tokio::time::timeout(wait, next).await.ok().flatten()
        })?;
        Ok(ev.map(|ev| {
            let (kind, attempt) = match &ev {
                WorkerEvent::Connected {
                    reconnect: false, ..
                } => ("connected", 0),
                WorkerEvent::Connected { .. } => ("reconnected", 0),
                WorkerEvent::ConnectFailed { attempt, .. } => ("connect_failed", *attempt),
                WorkerEvent::Disconnected { .. } => ("disconnected", 0),
                _ => ("other", 0),
            };
            (ruby.to_symbol(kind), ev.to_string(), attempt)
        }))
    }

    fn register(
        ruby: &Ruby,
        rb_self: &Self,
        function: String,
        timeout: Option<f64>,
    ) -> Result<(), Error> {
        let timeout = opt_timeout(ruby, "timeout", timeout)?;
        let _guard = crate::runtime(ruby)?.enter();
        rb_self
            .inner
            .register(&function, timeout)
            .map_err(|e| map_err(ruby, e))
    }

    fn unregister(ruby: &Ruby, rb_self: &Self, function: String) -> Result<(), Error> {
        let _guard = crate::runtime(ruby)?.enter();
        rb_self
            .inner
            .unregister(&function)
            .map_err(|e| map_err(ruby, e))
    }

    /// The next job (GVL released while waiting); nil once stopped.
    fn next_job(ruby: &Ruby, rb_self: &Self) -> Result<Option<RbJob>, Error> {
        let worker = rb_self.inner.clone();
        let job = gvl::wait(ruby, async move { worker.next_job().await })?;
        Ok(job.map(RbJob::new))
    }

    /// A job assigned already, or nil: no waiting and no GVL release.
    fn try_next_job(&self) -> Option<RbJob> {
        self.inner.try_next_job().map(RbJob::new)
    }

    fn stop(ruby: &Ruby, rb_self: &Self) -> Result<(), Error> {
        let _guard = crate::runtime(ruby)?.enter();
        rb_self.inner.stop();
        Ok(())
    }

    fn is_stopped(&self) -> bool {
        self.inner.is_stopped()
    }

    /// Waits (GVL released) for unfinished jobs, then closes connections.
    fn shutdown(ruby: &Ruby, rb_self: &Self) -> Result<(), Error> {
        let worker = rb_self.inner.clone();
        gvl::wait(ruby, async move { worker.shutdown().await })
    }

    /// Like `shutdown`, but waits at most `timeout` seconds (0 allowed) for unfinished
    /// jobs, then closes the connections, which hands those jobs back to the
    /// server (it requeues them). Returns how many were handed back.
    fn shutdown_timeout(ruby: &Ruby, rb_self: &Self, timeout: f64) -> Result<usize, Error> {
        let timeout = secs(ruby, "timeout", timeout)?;
        let worker = rb_self.inner.clone();
        gvl::wait(ruby, async move { worker.shutdown_timeout(timeout).await })
    }
}

/// A job handed to a `Polygear::Worker#register` block.
#[magnus::wrap(class = "Polygear::Job", free_immediately, size)]
struct RbJob {
    handle: String,
    function: String,
    unique: String,
    data: Bytes,
    /// The unfinished job. A tokio mutex because `cancelled?` holds it
    /// while it asks the server; every other call takes it without waiting
    /// (or, during such a probe, waits for it with the GVL released).
    inner: Arc<Mutex<Option<polygear::Job>>>,
}

impl RbJob {
    fn new(job: polygear::Job) -> Self {
        RbJob {
            handle: job.handle().to_string(),
            function: job.function().to_string(),
            unique: job.unique().to_string(),
            data: job.data().clone(),
            inner: Arc::new(Mutex::new(Some(job))),
        }
    }

    fn handle(&self) -> String {
        self.handle.clone()
    }

    fn function(&self) -> String {
        self.function.clone()
    }

    fn unique(&self) -> String {
        self.unique.clone()
    }

    fn data(ruby: &Ruby, rb_self: &Self) -> RString {
        ruby.str_from_slice(&rb_self.data)
    }

    fn closed(ruby: &Ruby) -> Error {
        map_err(
            ruby,
            polygear::Error::Closed("the job has already finished".into()),
        )
    }

    /// The job's lock: at once, or (while `cancelled?` runs on another
    /// thread) waited for with the GVL released.
    fn lock(ruby: &Ruby, rb_self: &Self) -> Result<OwnedMutexGuard<Option<polygear::Job>>, Error> {
        match rb_self.inner.clone().try_lock_owned() {
            Ok(guard) => Ok(guard),
            Err(_) => gvl::wait(ruby, rb_self.inner.clone().lock_owned()),
        }
    }

    /// Runs `f` on the unfinished job; ClosedError once it has ended.
    fn with_job<T>(
        ruby: &Ruby,
        rb_self: &Self,
        f: impl FnOnce(&polygear::Job) -> polygear::Result<T>,
    ) -> Result<T, Error> {
        let guard = Self::lock(ruby, rb_self)?;
        let job = guard.as_ref().ok_or_else(|| Self::closed(ruby))?;
        let _rt = crate::runtime(ruby)?.enter();
        f(job).map_err(|e| map_err(ruby, e))
    }

    /// Takes the job out to end it; ClosedError if it already ended.
    fn finish(
        ruby: &Ruby,
        rb_self: &Self,
        f: impl FnOnce(polygear::Job) -> polygear::Result<()>,
    ) -> Result<(), Error> {
        let job = Self::lock(ruby, rb_self)?.take();
        let job = job.ok_or_else(|| Self::closed(ruby))?;
        let _rt = crate::runtime(ruby)?.enter();
        // A non-blocking write: keeping the GVL is cheaper than handing it
        // to another thread and taking it back.
        f(job).map_err(|e| map_err(ruby, e))
    }

    fn send_data(ruby: &Ruby, rb_self: &Self, data: RString) -> Result<(), Error> {
        let data = bytes_of(data);
        Self::with_job(ruby, rb_self, |j| j.send_data(data))
    }

    fn send_warning(ruby: &Ruby, rb_self: &Self, data: RString) -> Result<(), Error> {
        let data = bytes_of(data);
        Self::with_job(ruby, rb_self, |j| j.send_warning(data))
    }

    fn send_status(
        ruby: &Ruby,
        rb_self: &Self,
        numerator: u32,
        denominator: u32,
    ) -> Result<(), Error> {
        Self::with_job(ruby, rb_self, |j| j.send_status(numerator, denominator))
    }

    fn complete(ruby: &Ruby, rb_self: &Self, result: RString) -> Result<(), Error> {
        let result = bytes_of(result);
        Self::finish(ruby, rb_self, |j| j.complete(result))
    }

    fn fail(ruby: &Ruby, rb_self: &Self) -> Result<(), Error> {
        Self::finish(ruby, rb_self, |j| j.fail())
    }

    fn exception(ruby: &Ruby, rb_self: &Self, message: RString) -> Result<(), Error> {
        let message = bytes_of(message);
        Self::finish(ruby, rb_self, |j| j.exception(message))
    }

    fn is_finished(ruby: &Ruby, rb_self: &Self) -> Result<bool, Error> {
        Ok(Self::lock(ruby, rb_self)?.is_none())
    }

    /// Whether the job was cancelled (or the server gave up on it): asks
    /// the server (GET_STATUS, GVL released). ClosedError once it ended.
    fn is_cancelled(ruby: &Ruby, rb_self: &Self) -> Result<bool, Error> {
        let inner = rb_self.inner.clone();
        let r = gvl::wait(ruby, async move {
            let guard = inner.lock_owned().await;
            match guard.as_ref() {
                Some(job) => Some(job.cancelled().await),
                None => None,
            }
        })?;
        match r {
            Some(r) => r.map_err(|e| map_err(ruby, e)),
            None => Err(Self::closed(ruby)),
        }
    }
}

pub(crate) fn define(ruby: &Ruby, polygear: RModule, native: RModule) -> Result<(), Error> {
    let w = native.define_class("Worker", ruby.class_object())?;
    w.define_singleton_method("new", function!(NativeWorker::new, 5))?;
    w.define_method("register", method!(NativeWorker::register, 2))?;
    w.define_method("unregister", method!(NativeWorker::unregister, 1))?;
    w.define_method("next_job", method!(NativeWorker::next_job, 0))?;
    w.define_method("try_next_job", method!(NativeWorker::try_next_job, 0))?;
    w.define_method("stop", method!(NativeWorker::stop, 0))?;
    w.define_method("stopped?", method!(NativeWorker::is_stopped, 0))?;
    w.define_method("shutdown", method!(NativeWorker::shutdown, 0))?;
    w.define_method(
        "shutdown_timeout",
        method!(NativeWorker::shutdown_timeout, 1),
    )?;
    w.define_method("connect", method!(NativeWorker::connect, 0))?;
    w.define_method("next_event", method!(NativeWorker::next_event, 1))?;

    let j = polygear.define_class("Job", ruby.class_object())?;
    j.undef_default_alloc_func();
    j.define_method("handle", method!(RbJob::handle, 0))?;
    j.define_method("function", method!(RbJob::function, 0))?;
    j.define_method("unique", method!(RbJob::unique, 0))?;
    j.define_method("data", method!(RbJob::data, 0))?;
    j.define_method("send_data", method!(RbJob::send_data, 1))?;
    j.define_method("send_warning", method!(RbJob::send_warning, 1))?;
    j.define_method("send_status", method!(RbJob::send_status, 2))?;
    j.define_method("finished?", method!(RbJob::is_finished, 0))?;
    j.define_method("cancelled?", method!(RbJob::is_cancelled, 0))?;
    // Ending a job is the worker's business (the block's return value or
    // exception decides); these stay private to Polygear::Worker.
    j.define_private_method("_complete", method!(RbJob::complete, 1))?;
    j.define_private_method("_fail", method!(RbJob::fail, 0))?;
    j.define_private_method("_exception", method!(RbJob::exception, 1))?;
    Ok(())
}
