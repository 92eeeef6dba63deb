//! The runtime of the blocking APIs, driven by its callers, and the wait loop
//! that drives it.
//!
//! # A runtime driven by its callers
//!
//! Python's `polygear.Client`/`Worker`/`Admin` and every Ruby call block the
//! calling thread until the answer is there. Their I/O runs on one tokio
//! runtime per process ([`driven`]): a *current-thread* runtime with no
//! thread of its own, driven by the threads that wait on it. The thread that
//! waits for a reply reads it from the socket itself, instead of a runtime
//! thread reading it and waking the waiter: one thread hand-off less per
//! packet, which is most of a one-job-at-a-time round trip. When several
//! threads wait at once, one of them drives the runtime for all; the others
//! sleep until their future is done or the driver leaves and one takes over.
//!
//! Its connections only move while some thread waits, which a blocking API
//! always does when it needs an answer; what a job sends meanwhile (WORK_DATA,
//! WORK_COMPLETE, the next GRAB) is written directly by the sending thread
//! (the core writes from the caller), so nothing waits for the runtime to be
//! driven. A background task (e.g. the jobs of `submit_many`) advances while
//! its submitter waits for the batch.
//!
//! A waiting thread must stay interruptible: Python delivers Ctrl-C and other
//! signals only between bytecodes, Ruby `Thread#raise`, `Thread#kill`,
//! `Timeout` and signals only while it holds the GVL. So [`wait`] drives the
//! future in slices of at most a tick (a few tens of milliseconds) and gives
//! the binding a chance between slices to let the interpreter act: if that
//! raises, the future is dropped (cancelling the operation) and the exception
//! propagates; otherwise the wait goes on with the same future, and the
//! operation is not lost. The binding runs each slice with its interpreter
//! lock released (`Python::detach`, `rb_nogvl`), so other threads keep running.
//!
//! Its epoll instance would be shared with a forked child: create clients and
//! workers after `fork`, not before.
//!
//! Node.js is different: its JS thread must never block, so its addon runs
//! everything on napi-rs' multi-thread runtime and resolves promises; the
//! asyncio API of the Python package does the same on pyo3-async-runtimes'
//! runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::runtime::Runtime;

/// How long a job that arrives while a worker function runs waits for that
/// function's thread to come back for it before an idle thread is woken
/// (`WorkerOptions::handoff_delay` of the blocking workers): running a queued
/// job on the thread that holds the interpreter lock saves two thread
/// switches.
pub const HANDOFF_DELAY: Duration = Duration::from_micros(500);

/// The process's caller-driven runtime (see the [module docs](self)),
/// created on first use; `Err` holds why it could not be created.
pub fn driven() -> Result<&'static Runtime, &'static str> {
    static DRIVEN: OnceLock<Result<Runtime, String>> = OnceLock::new();
    DRIVEN
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(String::as_str)
}

/// When a slice of [`wait`] ends without the future having finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// After every tick (Python: only the waiting thread itself can look
    /// for pending signals).
    EveryTick,
    /// At the first tick after [`Interrupt::set`] (Ruby: the interpreter
    /// calls an unblocking function that sets it).
    OnInterrupt,
}

/// A flag that asks the running slice of a [`wait`] to end at its next tick.
#[derive(Debug, Default)]
pub struct Interrupt(AtomicBool);

impl Interrupt {
    /// Asks the slice to end. Only an atomic store: safe to call from
    /// another thread or a signal handler.
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once [`Interrupt::set`] was called in this slice.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn clear(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// One slice of a [`wait`]: [`Slice::drive`] runs the future on the runtime
/// until it finishes or the slice ends. `Send` when the future is, so a
/// binding can move it into the closure that runs without its interpreter
/// lock.
pub struct Slice<'a, F: Future + ?Sized> {
    rt: &'a Runtime,
    fut: Pin<&'a mut F>,
    interrupt: &'a Interrupt,
    tick: Duration,
    wake: Wake,
}

impl<'a, F: Future + ?Sized> Slice<'a, F> {
    /// The flag that ends this slice early ([`Wake::OnInterrupt`]).
    pub fn interrupt(&self) -> &'a Interrupt {
        self.interrupt
    }

    /// Drives the future on the calling thread (inside the runtime's
    /// context): its output, or `None` if the slice ended first.
    pub fn drive(self) -> Option<F::Output> {
        let Slice {
            rt,
            mut fut,
            interrupt,
            tick,
            wake,
        } = self;
        rt.block_on(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    r = fut.as_mut() => return Some(r),
                    _ = ticks.tick() => {
                        if wake == Wake::EveryTick || interrupt.is_set() {
                            return None;
                        }
                    }
                }
            }
        })
    }
}

/// Runs `fut` to completion on `rt` in slices (see the [module docs](self)).
///
/// `slice` runs one [`Slice`] — typically `slice.drive()` with the
/// interpreter lock released — and returns its result, or `Ok(None)` if it
/// did not run it (e.g. an interrupt was already pending). After each slice
/// that did not finish the future, `between` runs (with the lock held); an
/// error from either ends the wait and drops `fut`.
pub fn wait<F, E>(
    rt: &Runtime,
    fut: F,
    tick: Duration,
    wake: Wake,
    mut slice: impl FnMut(Slice<'_, F>) -> Result<Option<F::Output>, E>,
    mut between: impl FnMut() -> Result<(), E>,
) -> Result<F::Output, E>
where
    F: Future,
{
    let mut fut = std::pin::pin!(fut);
    let interrupt = Interrupt::default();
    loop {
        interrupt.clear();
        let s = Slice {
            rt,
            fut: fut.as_mut(),
            interrupt: &interrupt,
            tick,
            wake,
        };
        if let Some(v) = slice(s)? {
            return Ok(v);
        }
        between()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const TICK: Duration = Duration::from_millis(5);

    fn rt() -> &'static Runtime {
        driven().expect("runtime")
    }

    #[test]
    fn a_ready_future_takes_one_slice() {
        let slices = Cell::new(0);
        let r: Result<u8, ()> = wait(
            rt(),
            async { 7 },
            TICK,
            Wake::EveryTick,
            |s| {
                slices.set(slices.get() + 1);
                Ok(s.drive())
            },
            || panic!("no second slice"),
        );
        assert_eq!(r, Ok(7));
        assert_eq!(slices.get(), 1);
    }

    #[test]
    fn every_tick_returns_between_ticks_until_done() {
        let between = Cell::new(0);
        let r: Result<&str, ()> = wait(
            rt(),
            async {
                tokio::time::sleep(TICK * 6).await;
                "done"
            },
            TICK,
            Wake::EveryTick,
            |s| Ok(s.drive()),
            || {
                between.set(between.get() + 1);
                Ok(())
            },
        );
        assert_eq!(r, Ok("done"));
        assert!(between.get() >= 2, "{} checks", between.get());
    }

    #[test]
    fn between_can_cancel_the_wait() {
        let dropped = std::sync::Arc::new(AtomicBool::new(false));
        struct OnDrop(std::sync::Arc<AtomicBool>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let guard = OnDrop(dropped.clone());
        let r: Result<(), &str> = wait(
            rt(),
            async move {
                let _guard = guard;
                std::future::pending::<()>().await
            },
            TICK,
            Wake::EveryTick,
            |s| Ok(s.drive()),
            || Err("interrupted"),
        );
        assert_eq!(r, Err("interrupted"));
        assert!(dropped.load(Ordering::SeqCst), "the future was dropped");
    }

    #[test]
    fn on_interrupt_slices_end_only_when_interrupted() {
        // The slice runs on another thread, like Ruby's rb_nogvl; an
        // "unblocking function" on this thread sets the flag.
        let checks = Cell::new(0);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let r: Result<u32, ()> = wait(
            rt(),
            async {
                tokio::time::sleep(TICK * 40).await;
                1
            },
            TICK,
            Wake::OnInterrupt,
            |s| {
                let flag = s.interrupt();
                std::thread::scope(|scope| {
                    let driver = scope.spawn(move || s.drive());
                    if checks.get() == 0 {
                        std::thread::sleep(TICK * 4);
                        flag.set();
                    }
                    Ok(driver.join().unwrap())
                })
            },
            || {
                checks.set(checks.get() + 1);
                let _ = tx.send(());
                Ok(())
            },
        );
        assert_eq!(r, Ok(1));
        assert_eq!(checks.get(), 1, "one interrupt, one check");
        assert!(rx.try_recv().is_ok());
    }

    #[test]
    fn a_slice_that_did_not_run_is_retried() {
        let tries = Cell::new(0);
        let r: Result<u8, ()> = wait(
            rt(),
            async { 3 },
            TICK,
            Wake::OnInterrupt,
            |s| {
                tries.set(tries.get() + 1);
                if tries.get() == 1 {
                    return Ok(None); // e.g. an interrupt was pending: not run
                }
                Ok(s.drive())
            },
            || Ok(()),
        );
        assert_eq!(r, Ok(3));
        assert_eq!(tries.get(), 2);
    }
}
