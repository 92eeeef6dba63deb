//! `Polygear::Native::Admin`: the admin text protocol, one connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use magnus::{function, method, prelude::*, Error, IntoValue, RArray, RModule, Ruby};
use tokio::sync::Mutex;

use crate::{gvl, map_err, opt_timeout, secs};

/// One admin call on the connection of `$rb_self`: `|a| a.method(args)`
/// (through [`NativeAdmin::call`], which hands the connection back).
macro_rules! admin_call {
    ($ruby:expr, $rb_self:expr, |$a:ident| $call:expr) => {
        NativeAdmin::call($ruby, $rb_self, move |mut admin| async move {
            let r = {
                let $a = &mut admin;
                $call.await
            };
            (admin, r)
        })
    };
}

/// A Ruby Array with one entry per listing row.
fn rows<T, R: IntoValue>(
    ruby: &Ruby,
    items: Vec<T>,
    row: impl Fn(T) -> R,
) -> Result<RArray, Error> {
    let out = ruby.ary_new_capa(items.len());
    for item in items {
        out.push(row(item))?;
    }
    Ok(out)
}

/// Native admin connection; `Polygear::Admin` builds structs from its arrays.
#[magnus::wrap(class = "Polygear::Native::Admin", free_immediately, size)]
struct NativeAdmin {
    inner: Arc<Mutex<Option<polygear::Admin>>>,
}

impl NativeAdmin {
    fn connect(
        ruby: &Ruby,
        server: String,
        timeout: Option<f64>,
        tls: crate::TlsArg,
    ) -> Result<Self, Error> {
        let addr: polygear::ServerAddr = server.parse().map_err(|e| map_err(ruby, e))?;
        let timeout = opt_timeout(ruby, "timeout", timeout)?.unwrap_or(Duration::from_secs(5));
        let tls = crate::tls_options(ruby, tls)?;
        let admin = gvl::wait(ruby, async move {
            polygear::Admin::connect_with(&addr, timeout, tls.as_ref()).await
        })?
        .map_err(|e| map_err(ruby, e))?;
        Ok(NativeAdmin {
            inner: Arc::new(Mutex::new(Some(admin))),
        })
    }

    /// Runs one admin call with the GVL released (calls are serialized).
    fn call<T, F, Fut>(ruby: &Ruby, rb_self: &Self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(polygear::Admin) -> Fut + Send + 'static,
        Fut: Future<Output = (polygear::Admin, polygear::Result<T>)> + Send,
    {
        let inner = rb_self.inner.clone();
        let r = gvl::wait(ruby, async move {
            let mut guard = inner.lock().await;
            let Some(admin) = guard.take() else {
                return Err(polygear::Error::Closed("admin connection closed".into()));
            };
            let (admin, r) = f(admin).await;
            *guard = Some(admin);
            r
        })?;
        r.map_err(|e| map_err(ruby, e))
    }

    fn status(ruby: &Ruby, rb_self: &Self) -> Result<RArray, Error> {
        let items = admin_call!(ruby, rb_self, |a| a.status())?;
        rows(ruby, items, |s| (s.function, s.total, s.running, s.workers))
    }

    fn priority_status(ruby: &Ruby, rb_self: &Self) -> Result<RArray, Error> {
        let items = admin_call!(ruby, rb_self, |a| a.priority_status())?;
        rows(ruby, items, |s| {
            (s.function, s.high, s.normal, s.low, s.workers)
        })
    }

    fn workers(ruby: &Ruby, rb_self: &Self) -> Result<RArray, Error> {
        let items = admin_call!(ruby, rb_self, |a| a.workers())?;
        rows(ruby, items, |w| (w.fd, w.ip, w.client_id, w.functions))
    }

    fn show_jobs(ruby: &Ruby, rb_self: &Self) -> Result<RArray, Error> {
        let items = admin_call!(ruby, rb_self, |a| a.show_jobs())?;
        rows(ruby, items, |j| (j.handle, j.retries, j.ignore, j.queued))
    }

    fn show_unique_jobs(ruby: &Ruby, rb_self: &Self) -> Result<Vec<String>, Error> {
        admin_call!(ruby, rb_self, |a| a.show_unique_jobs())
    }

    fn version(ruby: &Ruby, rb_self: &Self) -> Result<String, Error> {
        admin_call!(ruby, rb_self, |a| a.version())
    }

    fn getpid(ruby: &Ruby, rb_self: &Self) -> Result<u32, Error> {
        admin_call!(ruby, rb_self, |a| a.getpid())
    }

    fn verbose(ruby: &Ruby, rb_self: &Self) -> Result<String, Error> {
        admin_call!(ruby, rb_self, |a| a.verbose())
    }

    fn cancel_job(ruby: &Ruby, rb_self: &Self, handle: String) -> Result<(), Error> {
        admin_call!(ruby, rb_self, |a| a.cancel_job(&handle))
    }

    fn maxqueue(
        ruby: &Ruby,
        rb_self: &Self,
        function: String,
        limits: Option<Vec<u32>>,
    ) -> Result<(), Error> {
        let limits = match limits {
            None => None,
            Some(v) if v.len() == 1 => Some([v[0]; 3]),
            Some(v) if v.len() == 3 => Some([v[0], v[1], v[2]]),
            Some(_) => {
                return Err(Error::new(
                    ruby.exception_arg_error(),
                    "maxqueue limits: one number, or [high, normal, low]",
                ))
            }
        };
        admin_call!(ruby, rb_self, |a| a.maxqueue(&function, limits))
    }

    fn create_function(ruby: &Ruby, rb_self: &Self, function: String) -> Result<(), Error> {
        admin_call!(ruby, rb_self, |a| a.create_function(&function))
    }

    fn drop_function(ruby: &Ruby, rb_self: &Self, function: String) -> Result<(), Error> {
        admin_call!(ruby, rb_self, |a| a.drop_function(&function))
    }

    fn shutdown(ruby: &Ruby, rb_self: &Self, graceful: bool) -> Result<(), Error> {
        admin_call!(ruby, rb_self, |a| a.shutdown(graceful))
    }

    fn raw(ruby: &Ruby, rb_self: &Self, command: String) -> Result<String, Error> {
        admin_call!(ruby, rb_self, |a| a.raw(&command))
    }

    // --- polygeard extensions: retries and the dead set ------------------

    /// `retry FUNC ATTEMPTS BACKOFF MAX` (seconds; `max_delay` nil: 1 hour).
    fn set_retry_policy(
        ruby: &Ruby,
        rb_self: &Self,
        function: String,
        max_attempts: u32,
        backoff: f64,
        max_delay: Option<f64>,
    ) -> Result<(), Error> {
        let mut policy = polygear::RetryPolicy::new(max_attempts, secs(ruby, "backoff", backoff)?);
        if let Some(m) = max_delay {
            policy.max_delay = secs(ruby, "max_delay", m)?;
        }
        admin_call!(ruby, rb_self, |a| a.set_retry_policy(&function, policy))
    }

    /// `[function, max_attempts, backoff, max_delay]` rows (seconds as Float).
    fn retry_policies(ruby: &Ruby, rb_self: &Self) -> Result<RArray, Error> {
        let items = admin_call!(ruby, rb_self, |a| a.retry_policies())?;
        rows(ruby, items, |(f, p)| {
            (
                f,
                p.max_attempts,
                p.backoff.as_secs_f64(),
                p.max_delay.as_secs_f64(),
            )
        })
    }

    /// `[handle, function, unique, data, attempts, error, submitted,
    /// failed_at]` rows (unique/data binary Strings, times Unix seconds).
    fn dead_jobs(ruby: &Ruby, rb_self: &Self, function: Option<String>) -> Result<RArray, Error> {
        let items = admin_call!(ruby, rb_self, |a| a.dead_jobs(function.as_deref()))?;
        let out = ruby.ary_new_capa(items.len());
        for d in items {
            let row = ruby.ary_new_capa(8);
            row.push(d.handle)?;
            row.push(d.function)?;
            row.push(ruby.str_from_slice(&d.unique))?;
            row.push(ruby.str_from_slice(&d.data))?;
            row.push(d.attempts)?;
            row.push(d.error)?;
            row.push(d.submitted)?;
            row.push(d.failed_at)?;
            out.push(row)?;
        }
        Ok(out)
    }

    fn retry_dead(ruby: &Ruby, rb_self: &Self, function: String) -> Result<u64, Error> {
        admin_call!(ruby, rb_self, |a| a.retry_dead(&function))
    }

    fn retry_dead_job(ruby: &Ruby, rb_self: &Self, handle: String) -> Result<bool, Error> {
        admin_call!(ruby, rb_self, |a| a.retry_dead_job(&handle))
    }

    fn retry_all_dead(ruby: &Ruby, rb_self: &Self) -> Result<u64, Error> {
        admin_call!(ruby, rb_self, |a| a.retry_all_dead())
    }

    fn delete_dead(ruby: &Ruby, rb_self: &Self, function: String) -> Result<u64, Error> {
        admin_call!(ruby, rb_self, |a| a.delete_dead(&function))
    }

    fn delete_dead_job(ruby: &Ruby, rb_self: &Self, handle: String) -> Result<bool, Error> {
        admin_call!(ruby, rb_self, |a| a.delete_dead_job(&handle))
    }

    fn delete_all_dead(ruby: &Ruby, rb_self: &Self) -> Result<u64, Error> {
        admin_call!(ruby, rb_self, |a| a.delete_all_dead())
    }

    // --- retained results and unique windows ------------------------------

    fn set_retention(
        ruby: &Ruby,
        rb_self: &Self,
        function: String,
        seconds: f64,
    ) -> Result<(), Error> {
        let d = secs(ruby, "retention", seconds)?;
        admin_call!(ruby, rb_self, |a| a.set_retention(&function, d))
    }

    fn retention(ruby: &Ruby, rb_self: &Self) -> Result<RArray, Error> {
        let items = admin_call!(ruby, rb_self, |a| a.retention())?;
        rows(ruby, items, |(f, d)| (f, d.as_secs_f64()))
    }

    fn set_unique_window(
        ruby: &Ruby,
        rb_self: &Self,
        function: String,
        seconds: f64,
    ) -> Result<(), Error> {
        let d = secs(ruby, "unique window", seconds)?;
        admin_call!(ruby, rb_self, |a| a.set_unique_window(&function, d))
    }

    fn unique_windows(ruby: &Ruby, rb_self: &Self) -> Result<RArray, Error> {
        let items = admin_call!(ruby, rb_self, |a| a.unique_windows())?;
        rows(ruby, items, |(f, d)| (f, d.as_secs_f64()))
    }

    // --- pause, drain, schedules -------------------------------------------

    fn pause(ruby: &Ruby, rb_self: &Self, function: String) -> Result<(), Error> {
        admin_call!(ruby, rb_self, |a| a.pause(&function))
    }

    fn resume(ruby: &Ruby, rb_self: &Self, function: String) -> Result<(), Error> {
        admin_call!(ruby, rb_self, |a| a.resume(&function))
    }

    fn paused(ruby: &Ruby, rb_self: &Self) -> Result<Vec<String>, Error> {
        admin_call!(ruby, rb_self, |a| a.paused())
    }

    fn drain_worker(ruby: &Ruby, rb_self: &Self, id: String) -> Result<u64, Error> {
        admin_call!(ruby, rb_self, |a| a.drain_worker(&id))
    }

    /// `[fd, client_id]` rows.
    fn draining(ruby: &Ruby, rb_self: &Self) -> Result<RArray, Error> {
        let items = admin_call!(ruby, rb_self, |a| a.draining())?;
        rows(ruby, items, |w| (w.fd, w.client_id))
    }

    fn schedule_add(
        ruby: &Ruby,
        rb_self: &Self,
        name: String,
        cron: String,
        function: String,
        data: String,
    ) -> Result<(), Error> {
        admin_call!(ruby, rb_self, |a| a
            .schedule_add(&name, &cron, &function, &data))
    }

    /// `[name, function, cron, last_fired, next, data]` rows (times Unix
    /// seconds or nil).
    fn schedules(ruby: &Ruby, rb_self: &Self) -> Result<RArray, Error> {
        let items = admin_call!(ruby, rb_self, |a| a.schedules())?;
        rows(ruby, items, |s| {
            (s.name, s.function, s.cron, s.last_fired, s.next, s.data)
        })
    }

    fn schedule_delete(ruby: &Ruby, rb_self: &Self, name: String) -> Result<(), Error> {
        admin_call!(ruby, rb_self, |a| a.schedule_delete(&name))
    }

    /// Drops the connection; later calls raise ClosedError.
    fn close(ruby: &Ruby, rb_self: &Self) -> Result<(), Error> {
        let inner = rb_self.inner.clone();
        gvl::wait(ruby, async move {
            inner.lock().await.take();
        })
    }
}

pub(crate) fn define(ruby: &Ruby, native: RModule) -> Result<(), Error> {
    let c = native.define_class("Admin", ruby.class_object())?;
    c.define_singleton_method("connect", function!(NativeAdmin::connect, 3))?;
    c.define_method("status", method!(NativeAdmin::status, 0))?;
    c.define_method("priority_status", method!(NativeAdmin::priority_status, 0))?;
    c.define_method("workers", method!(NativeAdmin::workers, 0))?;
    c.define_method("show_jobs", method!(NativeAdmin::show_jobs, 0))?;
    c.define_method(
        "show_unique_jobs",
        method!(NativeAdmin::show_unique_jobs, 0),
    )?;
    c.define_method("version", method!(NativeAdmin::version, 0))?;
    c.define_method("getpid", method!(NativeAdmin::getpid, 0))?;
    c.define_method("verbose", method!(NativeAdmin::verbose, 0))?;
    c.define_method("cancel_job", method!(NativeAdmin::cancel_job, 1))?;
    c.define_method("maxqueue", method!(NativeAdmin::maxqueue, 2))?;
    c.define_method("create_function", method!(NativeAdmin::create_function, 1))?;
    c.define_method("drop_function", method!(NativeAdmin::drop_function, 1))?;
    c.define_method("shutdown", method!(NativeAdmin::shutdown, 1))?;
    c.define_method("raw", method!(NativeAdmin::raw, 1))?;
    c.define_method(
        "set_retry_policy",
        method!(NativeAdmin::set_retry_policy, 4),
    )?;
    c.define_method("retry_policies", method!(NativeAdmin::retry_policies, 0))?;
    c.define_method("dead_jobs", method!(NativeAdmin::dead_jobs, 1))?;
    c.define_method("retry_dead", method!(NativeAdmin::retry_dead, 1))?;
    c.define_method("retry_dead_job", method!(NativeAdmin::retry_dead_job, 1))?;
    c.define_method("retry_all_dead", method!(NativeAdmin::retry_all_dead, 0))?;
    c.define_method("delete_dead", method!(NativeAdmin::delete_dead, 1))?;
    c.define_method("delete_dead_job", method!(NativeAdmin::delete_dead_job, 1))?;
    c.define_method("delete_all_dead", method!(NativeAdmin::delete_all_dead, 0))?;
    c.define_method("set_retention", method!(NativeAdmin::set_retention, 2))?;
    c.define_method("retention", method!(NativeAdmin::retention, 0))?;
    c.define_method(
        "set_unique_window",
        method!(NativeAdmin::set_unique_window, 2),
    )?;
    c.define_method("unique_windows", method!(NativeAdmin::unique_windows, 0))?;
    c.define_method("pause", method!(NativeAdmin::pause, 1))?;
    c.define_method("resume", method!(NativeAdmin::resume, 1))?;
    c.define_method("paused", method!(NativeAdmin::paused, 0))?;
    c.define_method("drain_worker", method!(NativeAdmin::drain_worker, 1))?;
    c.define_method("draining", method!(NativeAdmin::draining, 0))?;
    c.define_method("schedule_add", method!(NativeAdmin::schedule_add, 4))?;
    c.define_method("schedules", method!(NativeAdmin::schedules, 0))?;
    c.define_method("schedule_delete", method!(NativeAdmin::schedule_delete, 1))?;
    c.define_method("close", method!(NativeAdmin::close, 0))?;
    Ok(())
}
