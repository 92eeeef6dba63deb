//! `Polygear::Native::Admin`: the admin text protocol, one connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use magnus::{function, method, prelude::*, Error, RArray, RModule, Ruby};
use tokio::sync::Mutex;

use crate::{gvl, map_err, opt_secs};

/// Native admin connection; `Polygear::Admin` builds structs from its arrays.
#[magnus::wrap(class = "Polygear::Native::Admin", free_immediately, size)]
struct NativeAdmin {
    inner: Arc<Mutex<Option<polygear::Admin>>>,
}

impl NativeAdmin {
    fn connect(ruby: &Ruby, server: String, timeout: Option<f64>) -> Result<Self, Error> {
        let addr: polygear::ServerAddr = server.parse().map_err(|e| map_err(ruby, e))?;
        let timeout = opt_secs(ruby, timeout)?.unwrap_or(Duration::from_secs(5));
        let admin = gvl::wait(ruby, async move {
            polygear::Admin::connect(&addr, timeout).await
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
        let rows = Self::call(ruby, rb_self, |mut a| async move {
            let r = a.status().await;
            (a, r)
        })?;
        let out = ruby.ary_new_capa(rows.len());
        for s in rows {
            out.push((s.function, s.total, s.running, s.workers))?;
        }
        Ok(out)
    }

    fn priority_status(ruby: &Ruby, rb_self: &Self) -> Result<RArray, Error> {
        let rows = Self::call(ruby, rb_self, |mut a| async move {
            let r = a.priority_status().await;
            (a, r)
        })?;
        let out = ruby.ary_new_capa(rows.len());
        for s in rows {
            out.push((s.function, s.high, s.normal, s.low, s.workers))?;
        }
        Ok(out)
    }

    fn workers(ruby: &Ruby, rb_self: &Self) -> Result<RArray, Error> {
        let rows = Self::call(ruby, rb_self, |mut a| async move {
            let r = a.workers().await;
            (a, r)
        })?;
        let out = ruby.ary_new_capa(rows.len());
        for w in rows {
            out.push((w.fd, w.ip, w.client_id, w.functions))?;
        }
        Ok(out)
    }

    fn show_jobs(ruby: &Ruby, rb_self: &Self) -> Result<RArray, Error> {
        let rows = Self::call(ruby, rb_self, |mut a| async move {
            let r = a.show_jobs().await;
            (a, r)
        })?;
        let out = ruby.ary_new_capa(rows.len());
        for j in rows {
            out.push((j.handle, j.retries, j.ignore, j.queued))?;
        }
        Ok(out)
    }

    fn show_unique_jobs(ruby: &Ruby, rb_self: &Self) -> Result<Vec<String>, Error> {
        Self::call(ruby, rb_self, |mut a| async move {
            let r = a.show_unique_jobs().await;
            (a, r)
        })
    }

    fn version(ruby: &Ruby, rb_self: &Self) -> Result<String, Error> {
        Self::call(ruby, rb_self, |mut a| async move {
            let r = a.version().await;
            (a, r)
        })
    }

    fn getpid(ruby: &Ruby, rb_self: &Self) -> Result<u32, Error> {
        Self::call(ruby, rb_self, |mut a| async move {
            let r = a.getpid().await;
            (a, r)
        })
    }

    fn verbose(ruby: &Ruby, rb_self: &Self) -> Result<String, Error> {
        Self::call(ruby, rb_self, |mut a| async move {
            let r = a.verbose().await;
            (a, r)
        })
    }

    fn cancel_job(ruby: &Ruby, rb_self: &Self, handle: String) -> Result<(), Error> {
        Self::call(ruby, rb_self, |mut a| async move {
            let r = a.cancel_job(&handle).await;
            (a, r)
        })
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
        Self::call(ruby, rb_self, move |mut a| async move {
            let r = a.maxqueue(&function, limits).await;
            (a, r)
        })
    }

    fn create_function(ruby: &Ruby, rb_self: &Self, function: String) -> Result<(), Error> {
        Self::call(ruby, rb_self, |mut a| async move {
            let r = a.create_function(&function).await;
            (a, r)
        })
    }

    fn drop_function(ruby: &Ruby, rb_self: &Self, function: String) -> Result<(), Error> {
        Self::call(ruby, rb_self, |mut a| async move {
            let r = a.drop_function(&function).await;
            (a, r)
        })
    }

    fn shutdown(ruby: &Ruby, rb_self: &Self, graceful: bool) -> Result<(), Error> {
        Self::call(ruby, rb_self, move |mut a| async move {
            let r = a.shutdown(graceful).await;
            (a, r)
        })
    }

    fn raw(ruby: &Ruby, rb_self: &Self, command: String) -> Result<String, Error> {
        Self::call(ruby, rb_self, |mut a| async move {
            let r = a.raw(&command).await;
            (a, r)
        })
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
    c.define_singleton_method("connect", function!(NativeAdmin::connect, 2))?;
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
