//! Waiting for tokio work with the GVL released, interruptibly.
//!
//! Uses `rb_nogvl(…, RB_NOGVL_INTR_FAIL | RB_NOGVL_UBF_ASYNC_SAFE)`: the
//! unblocking function only stores to an atomic flag (async-signal-safe), so
//! Ruby can call it straight from a signal handler and does not start a
//! helper "unblock thread" for every call on the main thread (which costs
//! ~50 µs per call with `rb_thread_call_without_gvl2` on Ruby 3.1). The
//! waiting future notices the flag on a short tick.

use std::ffi::c_void;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use magnus::{Error, Ruby};

/// How often a waiting thread checks whether Ruby asked it to stop.
const INTERRUPT_TICK: Duration = Duration::from_millis(20);

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

/// Unblocking function: Ruby calls it (from another thread or a signal
/// handler) to interrupt a thread waiting without the GVL. Only an atomic
/// store, hence async-signal-safe.
unsafe extern "C" fn ubf(data: *mut c_void) {
    // SAFETY: `data` points to the AtomicBool on `wait`'s frame, alive during the call.
    let flag = unsafe { &*(data as *const AtomicBool) };
    flag.store(true, Ordering::SeqCst);
}

/// Runs `f` without the GVL. `Err(f)` if Ruby had an interrupt pending and
/// did not run `f` at all; `Ok(Err(_))` if `f` panicked.
fn without_gvl<F: FnOnce() -> R, R>(
    f: F,
    interrupted: &AtomicBool,
) -> Result<std::thread::Result<R>, F> {
    let mut call: Call<F, R> = Call {
        f: Some(f),
        r: None,
    };
    let flags = (rb_sys::RB_NOGVL_INTR_FAIL | rb_sys::RB_NOGVL_UBF_ASYNC_SAFE) as i32;
    // SAFETY: the trampoline only touches `call`; the ubf only touches the flag,
    // which outlives the call. With RB_NOGVL_INTR_FAIL rb_nogvl never processes
    // interrupts itself, so it never longjmps over these Rust frames.
    unsafe {
        rb_sys::rb_nogvl(
            Some(trampoline::<F, R>),
            &mut call as *mut Call<F, R> as *mut c_void,
            Some(ubf),
            interrupted as *const AtomicBool as *mut c_void,
            flags,
        );
    }
    match (call.r, call.f) {
        (Some(r), _) => Ok(r),
        (None, Some(f)) => Err(f),
        // Unreachable: the trampoline either ran (and set `r`) or left `f`.
        (None, None) => Ok(Err(Box::new("polygear: rb_nogvl lost its call"))),
    }
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
    let interrupted = AtomicBool::new(false);
    loop {
        interrupted.store(false, Ordering::SeqCst);
        let mut f = fut.as_mut();
        let flag = &interrupted;
        let outcome = without_gvl(
            move || {
                rt.block_on(async move {
                    let start = tokio::time::Instant::now() + INTERRUPT_TICK;
                    let mut tick = tokio::time::interval_at(start, INTERRUPT_TICK);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            biased;
                            r = f.as_mut() => return Some(r),
                            _ = tick.tick() => {
                                if flag.load(Ordering::SeqCst) {
                                    return None;
                                }
                            }
                        }
                    }
                })
            },
            &interrupted,
        );
        match outcome {
            Ok(Ok(Some(v))) => return Ok(v),
            Ok(Err(_)) => {
                return Err(Error::new(
                    ruby.exception_runtime_error(),
                    "panic in polygear native code",
                ));
            }
            // Interrupted (or not started because an interrupt was pending).
            Ok(Ok(None)) | Err(_) => ruby.thread_check_ints()?,
        }
    }
}
