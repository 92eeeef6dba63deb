//! Waiting for tokio work with the GVL released, interruptibly.

use std::ffi::c_void;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use magnus::{Error, Ruby};
use tokio::sync::Notify;

struct Call<F, R> {
    f: Option<F>,
    r: Option<std::thread::Result<R>>,
}

unsafe extern "C" fn trampoline<F: FnOnce() -> R, R>(data: *mut c_void) -> *mut c_void {
    // SAFETY: `data` is the `Call` owned by `without_gvl`'s frame, alive for the whole call.
    let call = unsafe { &mut *(data as *mut Call<F, R>) };
    if let Some(f) = call.f.take() {
        call.r = Some(catch_unwind(AssertUnwindSafe(f)));
    }
    std::ptr::null_mut()
}

/// Unblocking function: Ruby calls it (possibly from another thread) to
/// interrupt a thread waiting without the GVL.
unsafe extern "C" fn ubf(data: *mut c_void) {
    // SAFETY: `data` points into the `Arc<Notify>` kept alive by `without_gvl`'s caller.
    let notify = unsafe { &*(data as *const Notify) };
    notify.notify_one();
}

/// Runs `f` without the GVL. `None` if Ruby had an interrupt pending and
/// did not run `f` at all; `Some(Err(_))` if `f` panicked.
fn without_gvl<F: FnOnce() -> R, R>(f: F, cancel: &Arc<Notify>) -> Option<std::thread::Result<R>> {
    let mut call: Call<F, R> = Call {
        f: Some(f),
        r: None,
    };
    // SAFETY: the trampoline only touches `call`; the ubf only touches the Notify,
    // which outlives the call. rb_thread_call_without_gvl2 (unlike the non-2
    // variant) never longjmps, so Rust frames are not skipped.
    unsafe {
        rb_sys::rb_thread_call_without_gvl2(
            Some(trampoline::<F, R>),
            &mut call as *mut Call<F, R> as *mut c_void,
            Some(ubf),
            Arc::as_ptr(cancel) as *mut c_void,
        );
    }
    call.r
}

/// Drives `fut` to completion on the calling Ruby thread (inside the
/// runtime's context) with the GVL released.
///
/// When Ruby interrupts the wait (Thread#raise/kill, Timeout, a signal),
/// pending interrupts are processed with the GVL held: if they raise, the
/// future is dropped (cancelling the operation) and the exception
/// propagates; otherwise (e.g. a signal handler that just ran) the wait
/// resumes with the same future, so the operation is not lost.
pub(crate) fn wait<T, Fut>(ruby: &Ruby, fut: Fut) -> Result<T, Error>
where
    Fut: Future<Output = T>,
{
    let rt = crate::runtime(ruby)?;
    let mut fut = std::pin::pin!(fut);
    loop {
        let cancel = Arc::new(Notify::new());
        let wake = cancel.clone();
        let f = fut.as_mut();
        let outcome = without_gvl(
            move || {
                rt.block_on(async move {
                    tokio::select! {
                        biased;
                        r = f => Some(r),
                        _ = wake.notified() => None,
                    }
                })
            },
            &cancel,
        );
        match outcome {
            Some(Ok(Some(v))) => return Ok(v),
            Some(Err(_)) => {
                return Err(Error::new(ruby.exception_runtime_error(), "panic in polygear native code"));
            }
            // Interrupted (or not started because an interrupt was pending).
            Some(Ok(None)) | None => ruby.thread_check_ints()?,
        }
    }
}
