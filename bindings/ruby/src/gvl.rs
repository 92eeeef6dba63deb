//! Waiting for tokio work with the GVL released, interruptibly.
//!
//! Uses `rb_nogvl(…, RB_NOGVL_INTR_FAIL | RB_NOGVL_UBF_ASYNC_SAFE)`: the
//! unblocking function only stores to an atomic flag (async-signal-safe), so
//! Ruby can call it straight from a signal handler and does not start a
//! helper "unblock thread" for every call on the main thread (which costs
//! ~50 µs per call with `rb_thread_call_without_gvl2` on Ruby 3.1). The
//! waiting future notices the flag on a short tick. The slices and the loop
//! around them are [`polygear_bindings::runtime::wait`]'s; its module docs say
//! why the waiting threads drive the runtime themselves.

use std::ffi::c_void;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use magnus::{Error, Ruby};
use polygear_bindings::runtime::{self, Interrupt, Wake};

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
    // SAFETY: `data` points to the wait's Interrupt, alive during the call.
    let interrupt = unsafe { &*(data as *const Interrupt) };
    interrupt.set();
}

/// Runs `f` without the GVL. `Err(f)` if Ruby had an interrupt pending and
/// did not run `f` at all; `Ok(Err(_))` if `f` panicked.
fn without_gvl<F: FnOnce() -> R, R>(
    f: F,
    interrupted: &Interrupt,
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
            interrupted as *const Interrupt as *mut c_void,
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
    runtime::wait(
        crate::runtime(ruby)?,
        fut,
        INTERRUPT_TICK,
        Wake::OnInterrupt,
        |slice| {
            let interrupt = slice.interrupt();
            match without_gvl(move || slice.drive(), interrupt) {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(_)) => Err(Error::new(
                    ruby.exception_runtime_error(),
                    "panic in polygear native code",
                )),
                // Not started: an interrupt was pending.
                Err(_) => Ok(None),
            }
        },
        // Interrupted: let Ruby process it (raising ends the wait).
        || ruby.thread_check_ints(),
    )
}
