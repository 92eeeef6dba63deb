//! `Polygear::Native::Client` and `Polygear::Native::RunningJob`.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use magnus::error::ErrorType;
use magnus::{function, method, prelude::*, Error, RArray, RModule, RString, Ruby, Symbol, Value};
use polygear::{ClientOptions, JobEvent, Priority, SubmitOptions};
use polygear_bindings::batch::Batch;

use crate::{arg_err, gvl, map_err, opt_timeout, parse_servers, secs};

/// Copies a Ruby String's bytes (binary-safe). Must run with the GVL.
pub(crate) fn bytes_of(s: RString) -> Bytes {
    // SAFETY: the slice is copied immediately, before any Ruby code can run.
    Bytes::copy_from_slice(unsafe { s.as_slice() })
}

/// `:high` / `:normal` / `:low` (Symbol or String).
fn priority(ruby: &Ruby, v: Value) -> Result<Priority, Error> {
    let name = if let Some(sym) = Symbol::from_value(v) {
        sym.name()?.into_owned()
    } else if let Some(s) = RString::from_value(v) {
        s.to_string()?
    } else {
        return Err(Error::new(
            ruby.exception_type_error(),
            format!(
                "priority must be :high, :normal or :low, not {}",
                v.class().inspect()
            ),
        ));
    };
    polygear_bindings::args::priority(&name).map_err(|e| arg_err(ruby, e))
}

fn submit_options(
    ruby: &Ruby,
    unique: Option<RString>,
    prio: Value,
    timeout: Option<f64>,
    epoch: Option<i64>,
) -> Result<SubmitOptions, Error> {
    Ok(SubmitOptions {
        unique: unique.map(bytes_of),
        priority: priority(ruby, prio)?,
        timeout: opt_timeout(ruby, "timeout", timeout)?,
        epoch,
        retain: None,
    })
}

fn status_array(ruby: &Ruby, st: polygear::JobStatus) -> RArray {
    let a = ruby.ary_new_capa(6);
    let _ = a.push(st.handle);
    let _ = a.push(st.known);
    let _ = a.push(st.running);
    let _ = a.push(st.numerator);
    let _ = a.push(st.denominator);
    let _ = a.push(st.client_count);
    a
}

/// Native client; see `Polygear::Client` for the Ruby API.
#[magnus::wrap(class = "Polygear::Native::Client", free_immediately, size)]
struct NativeClient {
    inner: polygear::Client,
}

impl NativeClient {
    /// Runs `op` on the client with the GVL released; raises its error.
    fn call<T, F, Fut>(&self, ruby: &Ruby, op: F) -> Result<T, Error>
    where
        F: FnOnce(polygear::Client) -> Fut,
        Fut: Future<Output = polygear::Result<T>>,
    {
        gvl::wait(ruby, op(self.inner.clone()))?.map_err(|e| map_err(ruby, e))
    }

    fn new(
        ruby: &Ruby,
        servers: Vec<String>,
        job_timeout: Option<f64>,
        connect_timeout: Option<f64>,
        client_id: Option<String>,
        exceptions: bool,
        tls: crate::TlsArg,
    ) -> Result<Self, Error> {
        let mut opts = ClientOptions {
            servers: parse_servers(ruby, servers)?,
            tls: crate::tls_options(ruby, tls)?,
            job_timeout: opt_timeout(ruby, "timeout", job_timeout)?,
            client_id,
            exceptions,
            ..ClientOptions::default()
        };
        if let Some(t) = opt_timeout(ruby, "connect_timeout", connect_timeout)? {
            opts.connect_timeout = t;
        }
        let _guard = crate::runtime(ruby)?.enter();
        let inner = polygear::Client::new(opts).map_err(|e| map_err(ruby, e))?;
        Ok(NativeClient { inner })
    }

    fn submit(
        ruby: &Ruby,
        rb_self: &Self,
        function: String,
        data: RString,
        unique: Option<RString>,
        prio: Value,
        timeout: Option<f64>,
    ) -> Result<RString, Error> {
        let data = bytes_of(data);
        let opts = submit_options(ruby, unique, prio, timeout, None)?;
        let b = rb_self.call(
            ruby,
            |c| async move { c.submit(&function, data, opts).await },
        )?;
        Ok(ruby.str_from_slice(&b))
    }

    #[allow(clippy::too_many_arguments)]
    fn submit_background(
        ruby: &Ruby,
        rb_self: &Self,
        function: String,
        data: RString,
        unique: Option<RString>,
        prio: Value,
        epoch: Option<i64>,
        retain: Option<f64>,
    ) -> Result<String, Error> {
        let data = bytes_of(data);
        let mut opts = submit_options(ruby, unique, prio, None, epoch)?;
        opts.retain = retain.map(|r| secs(ruby, "retain", r)).transpose()?;
        rb_self.call(ruby, |c| async move {
            c.submit_background(&function, data, opts).await
        })
    }

    fn submit_job(
        ruby: &Ruby,
        rb_self: &Self,
        function: String,
        data: RString,
        unique: Option<RString>,
        prio: Value,
        timeout: Option<f64>,
    ) -> Result<NativeRunningJob, Error> {
        let data = bytes_of(data);
        let opts = submit_options(ruby, unique, prio, timeout, None)?;
        let job = rb_self.call(ruby, |c| async move {
            c.submit_job(&function, data, opts).await
        })?;
        Ok(NativeRunningJob {
            handle: job.handle().to_string(),
            inner: Arc::new(tokio::sync::Mutex::new(Some(job))),
        })
    }

    /// Submits every payload of `items` at once (pipelined on the
    /// connections) and waits for all: an Array in the same order holding
    /// each result String or, for a job that failed, its exception object.
    fn submit_many(
        ruby: &Ruby,
        rb_self: &Self,
        function: String,
        items: RArray,
        prio: Value,
        timeout: Option<f64>,
    ) -> Result<RArray, Error> {
        let opts = submit_options(ruby, None, prio, timeout, None)?;
        let mut datas = Vec::with_capacity(items.len());
        for item in items.into_iter() {
            let s = RString::from_value(item).ok_or_else(|| {
                Error::new(
                    ruby.exception_type_error(),
                    format!("each item must be a String, not {}", item.class().inspect()),
                )
            })?;
            datas.push(bytes_of(s));
        }
        let client = rb_self.inner.clone();
        // One task per job on this (caller-driven) runtime, so every request
        // is written before the first reply is awaited.
        let handle = crate::runtime(ruby)?.handle();
        let batch = Batch::start(handle, &client, &function, datas, &opts);
        let results = gvl::wait(ruby, batch.results())?;
        let out = ruby.ary_new_capa(results.len());
        for r in results {
            match r {
                Ok(b) => out.push(ruby.str_from_slice(&b))?,
                Err(e) => out.push(exception_of(map_err(ruby, e))?)?,
            }
        }
        Ok(out)
    }

    fn status(ruby: &Ruby, rb_self: &Self, handle: String) -> Result<RArray, Error> {
        let st = rb_self.call(ruby, |c| async move { c.status(&handle).await })?;
        Ok(status_array(ruby, st))
    }

    fn status_unique(ruby: &Ruby, rb_self: &Self, unique: String) -> Result<RArray, Error> {
        let st = rb_self.call(ruby, |c| async move { c.status_unique(&unique).await })?;
        Ok(status_array(ruby, st))
    }

    /// The retained result of a background job: its String once completed
    /// (and kept), nil while queued/running/unknown; a failed job raises.
    fn result(ruby: &Ruby, rb_self: &Self, handle: String) -> Result<Option<RString>, Error> {
        let r = rb_self.call(ruby, |c| async move { c.result(&handle).await })?;
        Ok(r.map(|b| ruby.str_from_slice(&b)))
    }

    /// `[state, payload]`: state one of `:complete`, `:queued`, `:running`,
    /// `:failed`, `:exception`, `:unknown`; payload the result (complete)
    /// or the worker's message (exception), else nil.
    fn result_state(
        ruby: &Ruby,
        rb_self: &Self,
        handle: String,
    ) -> Result<(Symbol, Option<RString>), Error> {
        let st = rb_self.call(ruby, |c| async move { c.result_state(&handle).await })?;
        let payload = match &st {
            polygear::JobResult::Complete(b) | polygear::JobResult::Exception(b) => {
                Some(ruby.str_from_slice(b))
            }
            _ => None,
        };
        Ok((ruby.to_symbol(st.name()), payload))
    }

    /// Cancels a job: true if the server had it queued or running.
    fn cancel(ruby: &Ruby, rb_self: &Self, handle: String) -> Result<bool, Error> {
        rb_self.call(ruby, |c| async move { c.cancel(&handle).await })
    }

    fn echo(ruby: &Ruby, rb_self: &Self, data: RString) -> Result<RString, Error> {
        let data = bytes_of(data);
        let b = rb_self.call(ruby, |c| async move { c.echo(data).await })?;
        Ok(ruby.str_from_slice(&b))
    }

    fn close(ruby: &Ruby, rb_self: &Self) -> Result<(), Error> {
        let client = rb_self.inner.clone();
        gvl::wait(ruby, async move { client.close().await })
    }
}

/// The exception object an error would raise.
fn exception_of(err: Error) -> Result<Value, Error> {
    match err.error_type() {
        ErrorType::Error(class, msg) => class.new_instance((msg.as_ref(),)).map(|e| e.as_value()),
        ErrorType::Exception(e) => Ok(e.as_value()),
        ErrorType::Jump(_) => Err(err),
    }
}

/// A submitted foreground job whose events are read one by one.
#[magnus::wrap(class = "Polygear::Native::RunningJob", free_immediately, size)]
struct NativeRunningJob {
    handle: String,
    inner: Arc<tokio::sync::Mutex<Option<polygear::RunningJob>>>,
}

impl NativeRunningJob {
    fn handle(&self) -> String {
        self.handle.clone()
    }

    /// `[:data, str]`, `[:warning, str]`, `[:status, n, d]`, `[:complete, str]`,
    /// or nil after the final event; WORK_FAIL / WORK_EXCEPTION raise
    /// `JobFailed` (with the server's reason, if it gave one) / `JobException`.
    fn next_event(ruby: &Ruby, rb_self: &Self) -> Result<Option<RArray>, Error> {
        let inner = rb_self.inner.clone();
        let handle = rb_self.handle.clone();
        let mut reason = None;
        let ev = gvl::wait(ruby, async {
            let mut guard = inner.lock().await;
            let job = guard.as_mut()?;
            let ev = job.next_event().await;
            if matches!(ev, Some(Ok(JobEvent::Failed))) {
                reason = job.fail_reason();
            }
            if !matches!(ev, Some(Ok(ref e)) if !e.is_final()) {
                *guard = None;
            }
            ev
        })?;
        let ev = match ev {
            None => return Ok(None),
            Some(Err(e)) => return Err(map_err(ruby, e)),
            Some(Ok(ev)) => ev,
        };
        let a = ruby.ary_new_capa(3);
        let (kind, payload) = match ev {
            JobEvent::Data(b) => ("data", b),
            JobEvent::Warning(b) => ("warning", b),
            JobEvent::Complete(b) => ("complete", b),
            JobEvent::Status {
                numerator,
                denominator,
            } => {
                a.push(ruby.to_symbol("status"))?;
                a.push(numerator)?;
                a.push(denominator)?;
                return Ok(Some(a));
            }
            JobEvent::Failed => {
                return Err(map_err(ruby, polygear::Error::job_failed(handle, reason)));
            }
            JobEvent::Exception(m) => {
                return Err(map_err(
                    ruby,
                    polygear::Error::JobException {
                        handle,
                        message: String::from_utf8_lossy(&m).into_owned(),
                    },
                ))
            }
        };
        a.push(ruby.to_symbol(kind))?;
        a.push(ruby.str_from_slice(&payload))?;
        Ok(Some(a))
    }
}

pub(crate) fn define(ruby: &Ruby, _polygear: RModule, native: RModule) -> Result<(), Error> {
    let c = native.define_class("Client", ruby.class_object())?;
    c.define_singleton_method("new", function!(NativeClient::new, 6))?;
    c.define_method("submit", method!(NativeClient::submit, 5))?;
    c.define_method(
        "submit_background",
        method!(NativeClient::submit_background, 6),
    )?;
    c.define_method("submit_job", method!(NativeClient::submit_job, 5))?;
    c.define_method("submit_many", method!(NativeClient::submit_many, 4))?;
    c.define_method("status", method!(NativeClient::status, 1))?;
    c.define_method("status_unique", method!(NativeClient::status_unique, 1))?;
    c.define_method("result", method!(NativeClient::result, 1))?;
    c.define_method("result_state", method!(NativeClient::result_state, 1))?;
    c.define_method("cancel", method!(NativeClient::cancel, 1))?;
    c.define_method("echo", method!(NativeClient::echo, 1))?;
    c.define_method("close", method!(NativeClient::close, 0))?;

    let j = native.define_class("RunningJob", ruby.class_object())?;
    j.define_method("handle", method!(NativeRunningJob::handle, 0))?;
    j.define_method("next_event", method!(NativeRunningJob::next_event, 0))?;
    Ok(())
}
