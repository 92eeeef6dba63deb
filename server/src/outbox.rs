//! Per-connection output queue: polygear's [`Outbox`](CoreOutbox) (the
//! non-blocking write with the connection's lock released, the hand-over to
//! the connection's writer task when the socket is full, buffer sizing and
//! release) with the parts only the server needs on top:
//!
//! - Replies are produced under the state lock, but written after it is
//!   released: [`Outbox::write`] only appends and registers the outbox in a
//!   thread-local "dirty" list; [`flush_dirty`] (called by
//!   [`Shared::with_state`](crate::Shared::with_state)) then takes
//!   everything appended meanwhile, by any thread, as one batch and writes
//!   it. So a reply normally costs one `send` (shared with the replies
//!   queued with it), no task wake-up, and no system call under a lock.
//!   While a writer is active (a batch out, or the writer task flushing a
//!   full socket), appended bytes are left to it.
//! - Bytes written after a *durability gate* (a background submission whose
//!   JOB_CREATED must wait for the fsync) are held back until the
//!   persistence thread releases the gate, so replies keep their order.
//! - A connection with more than the output limit queued is killed.
//! - Its unsent output (and, set by the connection task, its unparsed
//!   input) is accounted in the server-wide [`Budget`](crate::budget::Budget).
//! - [`Outbox::drained`] tells a connection that stopped reading because
//!   too much of its output was queued when it went down; [`Outbox::close`]
//!   flushes what is queued before the connection goes away.
//! - A [`Outbox::local`] outbox has no socket: an in-process peer (an HTTP
//!   request, `crate::http`) takes what the state wrote with
//!   [`Outbox::take_local`] when [`Outbox::ready`] wakes it. Gates, the
//!   output limit and the budget work as for a socket.

use std::cell::{Cell, RefCell};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use parking_lot::Mutex;
use polygear::outbox::{flush_until_empty, settle, Outbox as CoreOutbox, Pushed};
use polygear::transport::WriteHalf;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::budget::{Account, Budget};

/// Output buffers whose allocation is larger than this are freed once
/// drained (a server has many connections, mostly idle).
const KEEP_CAPACITY: usize = 256 << 10;

thread_local! {
    static DIRTY: RefCell<Vec<Arc<Outbox>>> = const { RefCell::new(Vec::new()) };
    /// This thread is a runtime worker with [`crate::tune_runtime`]'s hooks:
    /// it flushes when it runs out of tasks, so [`end_of_batch`] may leave
    /// the flush to then.
    static DEFERS: Cell<bool> = const { Cell::new(false) };
    /// Batches ended since this thread last flushed.
    static UNFLUSHED: Cell<u32> = const { Cell::new(0) };
}

/// Batches a runtime thread may end without writing their replies; past
/// it the thread writes even though it has more tasks to run, so a busy
/// thread delays no reply by more than this many other batches.
const DEFERRED_BATCHES: u32 = 16;

/// Writes what was appended to every outbox this thread wrote to since the
/// last call.
pub(crate) fn flush_dirty() {
    UNFLUSHED.with(|u| u.set(0));
    loop {
        let batch = DIRTY.with(|d| std::mem::take(&mut *d.borrow_mut()));
        if batch.is_empty() {
            return;
        }
        for o in batch {
            o.flush();
        }
    }
}

/// A batch of requests was applied: writes what it sent to other
/// connections now, or — on a runtime thread that flushes before it parks —
/// leaves it to join what the other batches this thread applies before it
/// sleeps send them, so a client whose jobs several workers finished gets
/// one write per wake-up instead of one per worker. (The connection task
/// writes its own replies at once: its peer is waiting for them.)
pub(crate) fn end_of_batch() {
    if DEFERS.with(Cell::get) {
        let n = UNFLUSHED.with(|u| {
            let n = u.get() + 1;
            u.set(n);
            n
        });
        if n < DEFERRED_BATCHES {
            return;
        }
    }
    flush_dirty();
}

/// The runtime's park hook: this thread has run out of tasks.
pub(crate) fn before_park() {
    DEFERS.with(|d| d.set(true));
    flush_dirty();
}

pub(crate) struct Outbox {
    inner: Mutex<Inner>,
    /// Wakes the writer task: the socket is full, or the outbox was closed.
    wake: Notify,
    pub(crate) drained: Notify,
    pub(crate) kill: CancellationToken,
    killed: AtomicBool,
    limit: usize,
    /// Unsent output, in the server's budget.
    output: Account,
    /// The connection's read buffer, in the server's budget.
    pub(crate) input: Account,
    /// A [`Outbox::local`] outbox has output to take (or was killed).
    pub(crate) ready: Notify,
}

struct Inner {
    out: CoreOutbox,
    /// Bytes waiting for a durability gate.
    held: Option<Held>,
    closed: bool,
    /// In some thread's dirty list.
    dirty: bool,
    /// A [`Outbox::local`] outbox's output, until [`Outbox::take_local`].
    local: Option<BytesMut>,
}

impl Inner {
    /// Bytes queued but not yet written (or taken).
    fn pending(&self) -> usize {
        self.out.pending()
            + self.held.as_ref().map_or(0, Held::len)
            + self.local.as_ref().map_or(0, BytesMut::len)
    }
}

/// Output held back until the durable queue commits.
struct Held {
    /// The latest gate's ticket: releasing it releases everything.
    ticket: u64,
    bytes: BytesMut,
    /// Each gate's ticket and the range of its head (the JOB_CREATED) in
    /// `bytes`, so a failed commit can replace it.
    gates: Vec<(u64, std::ops::Range<usize>)>,
}

impl Held {
    fn len(&self) -> usize {
        self.bytes.len()
    }
}

impl Outbox {
    /// An outbox over `sock` that kills its connection when more than
    /// `limit` bytes are queued.
    pub(crate) fn new(sock: WriteHalf, limit: usize, budget: &Arc<Budget>) -> Outbox {
        Outbox::over(
            CoreOutbox::with_buffers(sock, 0, KEEP_CAPACITY),
            None,
            limit,
            budget,
        )
    }

    /// An outbox without a socket, for [`crate::sim`]: everything written
    /// accumulates behind a durability gate that is never released, under
    /// the same output limit; [`Outbox::take_held`] takes it.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn detached(limit: usize, budget: &Arc<Budget>) -> Outbox {
        let held = Held {
            ticket: u64::MAX,
            bytes: BytesMut::new(),
            gates: Vec::new(),
        };
        Outbox::over(CoreOutbox::detached(), Some(held), limit, budget)
    }

    /// An outbox without a socket for an in-process peer: what is written
    /// (once past any durability gate) accumulates until
    /// [`Outbox::take_local`], and [`Outbox::ready`] is notified.
    pub(crate) fn local(limit: usize, budget: &Arc<Budget>) -> Outbox {
        let out = Outbox::over(CoreOutbox::detached(), None, limit, budget);
        out.inner.lock().local = Some(BytesMut::new());
        out
    }

    fn over(out: CoreOutbox, held: Option<Held>, limit: usize, budget: &Arc<Budget>) -> Outbox {
        Outbox {
            inner: Mutex::new(Inner {
                out,
                held,
                closed: false,
                dirty: false,
                local: None,
            }),
            wake: Notify::new(),
            drained: Notify::new(),
            kill: CancellationToken::new(),
            killed: AtomicBool::new(false),
            limit,
            output: Account::new(budget.clone()),
            input: Account::new(budget.clone()),
            ready: Notify::new(),
        }
    }

    /// What a [`Outbox::local`] outbox received since the last call.
    pub(crate) fn take_local(&self) -> BytesMut {
        let taken = match self.inner.lock().local.as_mut() {
            Some(buf) => std::mem::take(buf),
            None => BytesMut::new(),
        };
        self.recount();
        taken
    }

    /// What a [`Outbox::detached`] outbox accumulated since the last call.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn take_held(&self) -> BytesMut {
        match self.inner.lock().held.as_mut() {
            Some(held) => std::mem::take(&mut held.bytes),
            None => BytesMut::new(),
        }
    }

    /// Appends bytes produced by `f` (after any pending gate). The caller's
    /// thread must call [`flush_dirty`] soon (after releasing the state lock;
    /// `Shared::with_state` does).
    pub(crate) fn write(self: &Arc<Self>, f: impl FnOnce(&mut BytesMut)) {
        let mut g = self.inner.lock();
        if g.closed {
            return;
        }
        let inner = &mut *g;
        let mut ready = false;
        let mark = match (inner.held.as_mut(), inner.local.as_mut()) {
            (Some(held), _) => {
                f(&mut held.bytes);
                false
            }
            (None, Some(local)) => {
                f(local);
                ready = true;
                false
            }
            (None, None) => {
                if inner.out.append(f).is_err() {
                    // Not connected: only after a kill, which `closed` excludes.
                    drop(g);
                    self.kill();
                    return;
                }
                !inner.dirty && !inner.out.writer_active()
            }
        };
        let pending = inner.pending();
        if pending >= crate::budget::GRANULE || !self.output.is_zero() {
            self.output.set(pending);
        }
        if pending > self.limit {
            drop(g);
            tracing::warn!(
                "connection output exceeded {} bytes; closing it",
                self.limit
            );
            self.kill();
            return;
        }
        if ready {
            drop(g);
            self.ready.notify_one();
            return;
        }
        if mark {
            g.dirty = true;
            drop(g);
            DIRTY.with(|d| d.borrow_mut().push(self.clone()));
        }
    }

    /// Writes what was appended, unless a writer is already active.
    pub(crate) fn flush(&self) {
        let pushed = {
            let mut g = self.inner.lock();
            g.dirty = false;
            if self.is_killed() || g.out.writer_active() {
                return;
            }
            g.out.take()
        };
        if matches!(pushed, Pushed::Write(_)) {
            self.settle(Ok(pushed));
        }
    }

    /// Writes a batch with the locks released: what the socket takes now,
    /// leaving the rest to the writer task.
    fn settle(&self, pushed: io::Result<Pushed>) {
        let r = settle(
            pushed,
            || self.inner.lock(),
            |g: &mut Inner| &mut g.out,
            &self.wake,
        );
        if r.is_err() {
            self.kill();
        }
        self.recount();
        // A reader paused for back-pressure re-checks what is pending.
        self.drained.notify_one();
    }

    /// Holds back `head` and everything written after it until `release(ticket)`.
    pub(crate) fn gate(&self, ticket: u64, head: impl FnOnce(&mut BytesMut)) {
        let mut g = self.inner.lock();
        if g.closed {
            return;
        }
        let held = g.held.get_or_insert_with(|| Held {
            ticket,
            bytes: BytesMut::with_capacity(64),
            gates: Vec::new(),
        });
        held.ticket = ticket;
        let start = held.bytes.len();
        head(&mut held.bytes);
        held.gates.push((ticket, start..held.bytes.len()));
    }

    /// The commit behind gate `ticket` failed: its head is replaced by what
    /// `instead` writes (an ERROR), keeping the order of the replies.
    pub(crate) fn fail_gate(&self, ticket: u64, instead: impl FnOnce(&mut BytesMut)) {
        let mut g = self.inner.lock();
        let Some(held) = g.held.as_mut() else { return };
        let Ok(i) = held.gates.binary_search_by_key(&ticket, |(t, _)| *t) else {
            return;
        };
        let range = held.gates[i].1.clone();
        let mut replacement = BytesMut::new();
        instead(&mut replacement);
        let tail = held.bytes.split_off(range.end);
        held.bytes.truncate(range.start);
        held.bytes.extend_from_slice(&replacement);
        held.bytes.extend_from_slice(&tail);
        let shift = replacement.len() as isize - range.len() as isize;
        held.gates[i].1 = range.start..range.start + replacement.len();
        for (_, r) in &mut held.gates[i + 1..] {
            *r = (r.start as isize + shift) as usize..(r.end as isize + shift) as usize;
        }
    }

    /// Releases held bytes whose gate ticket is `<= ticket` (tickets are
    /// committed in order). Called from the persistence thread, which writes
    /// them like any producer (non-blocking; the writer task takes over if
    /// the socket is full).
    pub(crate) fn release(&self, ticket: u64) {
        let mut g = self.inner.lock();
        let Some(t) = g.held.as_ref().map(|h| h.ticket) else {
            return;
        };
        if t > ticket {
            return;
        }
        let Some(held) = g.held.take() else {
            return;
        };
        if let Some(local) = g.local.as_mut() {
            local.extend_from_slice(&held.bytes);
            drop(g);
            self.ready.notify_one();
            return;
        }
        let pushed = g.out.push(|b| b.extend_from_slice(&held.bytes));
        let closed = g.closed;
        drop(g);
        self.settle(pushed);
        if closed {
            // A closing writer task waits for the held bytes.
            self.wake.notify_one();
        }
    }

    /// Updates the budget after bytes were written (no lock unless the
    /// output was large enough to be accounted).
    fn recount(&self) {
        if !self.output.is_zero() {
            let p = self.pending();
            self.output.set(p);
        }
    }

    /// Buffer bytes of this connection in the server's budget (output and input).
    pub(crate) fn buffered(&self) -> usize {
        self.output.get() + self.input.get()
    }

    /// Unsent output as accounted in the budget (cheap; 0 below one granule).
    pub(crate) fn accounted_output(&self) -> usize {
        self.output.get()
    }

    /// Bytes queued but not yet written.
    pub(crate) fn pending(&self) -> usize {
        self.inner.lock().pending()
    }

    /// Stop accepting output; the writer flushes what is queued, then exits.
    pub(crate) fn close(&self) {
        self.inner.lock().closed = true;
        self.wake.notify_one();
    }

    /// Drop the connection now without flushing.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        {
            let mut g = self.inner.lock();
            g.closed = true;
            g.held = None;
            if g.local.is_some() {
                g.local = Some(BytesMut::new());
            }
            g.out.close();
        }
        self.output.set(0);
        self.kill.cancel();
        self.wake.notify_one();
        self.ready.notify_one();
    }

    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Writer task: finishes writes the socket could not take at once, and
    /// exits when the outbox is closed and drained (or killed).
    pub(crate) async fn run_writer(&self) {
        loop {
            let closing = self.inner.lock().closed;
            // Closing, a batch a producer is writing is waited for too.
            let flush = flush_until_empty(|| self.inner.lock().out.flush_step(), closing);
            tokio::select! {
                r = flush => if r.is_err() {
                    self.kill();
                    return;
                },
                _ = self.kill.cancelled() => return,
            }
            self.recount();
            self.drained.notify_one();
            if closing && self.inner.lock().held.is_none() {
                return;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = self.kill.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_outbox_holds_gated_output_until_released() {
        let budget = Arc::new(Budget::new(1 << 20));
        let out = Arc::new(Outbox::local(1 << 10, &budget));
        out.write(|b| b.extend_from_slice(b"a"));
        assert_eq!(&out.take_local()[..], b"a");
        out.gate(1, |b| b.extend_from_slice(b"created"));
        out.write(|b| b.extend_from_slice(b"+after"));
        assert!(
            out.take_local().is_empty(),
            "gated output was released early"
        );
        out.release(1);
        assert_eq!(&out.take_local()[..], b"created+after");
        out.write(|b| b.extend_from_slice(b"z"));
        assert_eq!(&out.take_local()[..], b"z");
        // Over the limit: killed, nothing left to take.
        out.write(|b| b.extend_from_slice(&[0; 2048]));
        assert!(out.is_killed());
        assert!(out.take_local().is_empty());
    }
}
