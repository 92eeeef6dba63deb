//! `Polygear::Native::Admin`: the admin text protocol, one connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use magnus::{function, method, prelude::*, Error, IntoValue, RArray, RModule, Ruby};
use tokio::sync::Mutex;

use crate::{gvl, map_err, opt_timeout};

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
    c.define_method("close", method!(NativeAdmin::close, 0))?;
    Ok(())
}
