//! Per-connection output queue.
//!
//! Producers append encoded packets under a short lock and register the
//! outbox in a thread-local "dirty" list; the task that produced them
//! flushes every dirty outbox with a non-blocking write right after it
//! releases the state lock ([`flush_dirty`], called by
//! [`Shared::with_state`](crate::Shared::with_state)), so a reply normally
//! costs one `send` and no task wake-up. Whatever the socket does not take at
//! once is left to the connection's writer task, which waits for writability.
//!
//! Bytes written after a *durability gate* (a background submission whose
//! JOB_CREATED must wait for the fsync) are held back until the persistence
//! thread releases the gate, so replies keep their order.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Output buffers larger than this are freed once drained.
const KEEP_CAPACITY: usize = 256 << 10;

thread_local! {
    static DIRTY: RefCell<Vec<Arc<Outbox>>> = const { RefCell::new(Vec::new()) };
}

/// Flushes every outbox written to by this thread since the last call.
pub(crate) fn flush_dirty() {
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

pub(crate) struct Outbox {
    inner: Mutex<Inner>,
    sock: OwnedWriteHalf,
    wake: Notify,
    pub(crate) drained: Notify,
    pub(crate) kill: CancellationToken,
    killed: AtomicBool,
    limit: usize,
}

struct Inner {
    buf: BytesMut,
    /// Bytes waiting for a durability gate: (ticket that releases them, bytes).
    held: Option<(u64, BytesMut)>,
    closed: bool,
    /// In some thread's dirty list (or being flushed by the writer).
    dirty: bool,
    /// The socket refused bytes; the writer task owns flushing until it drains.
    blocked: bool,
}

impl Outbox {
    /// An outbox over `sock` that kills its connection when more than
    /// `limit` bytes are queued.
    pub(crate) fn new(sock: OwnedWriteHalf, limit: usize) -> Outbox {
        Outbox {
            inner: Mutex::new(Inner {
                buf: BytesMut::new(),
                held: None,
                closed: false,
                dirty: false,
                blocked: false,
            }),
            sock,
            wake: Notify::new(),
            drained: Notify::new(),
            kill: CancellationToken::new(),
            killed: AtomicBool::new(false),
            limit,
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
        let mark = if let Some((_, held)) = inner.held.as_mut() {
            f(held);
            false
        } else {
            f(&mut inner.buf);
            !inner.dirty && !inner.blocked
        };
        let pending = inner.buf.len() + inner.held.as_ref().map_or(0, |h| h.1.len());
        if pending > self.limit {
            drop(g);
            tracing::warn!(
                "connection output exceeded {} bytes; closing it",
                self.limit
            );
            self.kill();
            return;
        }
        if mark {
            g.dirty = true;
            drop(g);
            DIRTY.with(|d| d.borrow_mut().push(self.clone()));
        }
    }

    /// Writes as much as the socket takes now; hands the rest to the writer task.
    pub(crate) fn flush(&self) {
        let mut g = self.inner.lock();
        g.dirty = false;
        if g.blocked || self.is_killed() {
            return;
        }
        self.write_some(&mut g);
    }

    /// Non-blocking write of the buffer; `true` if it is now empty.
    fn write_some(&self, g: &mut Inner) -> bool {
        while !g.buf.is_empty() {
            match self.sock.try_write(&g.buf) {
                Ok(n) => g.buf.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    g.blocked = true;
                    self.wake.notify_one();
                    return false;
                }
                Err(_) => {
                    g.buf.clear();
                    self.killed.store(true, Ordering::Release);
                    g.closed = true;
                    self.kill.cancel();
                    return true;
                }
            }
        }
        if g.buf.capacity() > KEEP_CAPACITY {
            g.buf = BytesMut::new();
        }
        if g.closed && g.held.is_none() {
            self.wake.notify_one();
        }
        true
    }

    /// Holds back `head` and everything written after it until `release(ticket)`.
    pub(crate) fn gate(&self, ticket: u64, head: impl FnOnce(&mut BytesMut)) {
        let mut g = self.inner.lock();
        if g.closed {
            return;
        }
        match g.held.as_mut() {
            Some((t, held)) => {
                *t = ticket;
                head(held);
            }
            None => {
                let mut held = BytesMut::with_capacity(64);
                head(&mut held);
                g.held = Some((ticket, held));
            }
        }
    }

    /// Releases held bytes whose gate ticket is `<= ticket` (tickets are
    /// committed in order). Called from the persistence thread: the writer
    /// task does the socket write.
    pub(crate) fn release(&self, ticket: u64) {
        let mut g = self.inner.lock();
        let ready = matches!(g.held, Some((t, _)) if t <= ticket);
        if ready {
            if let Some((_, held)) = g.held.take() {
                g.buf.extend_from_slice(&held);
            }
            g.blocked = true;
            drop(g);
            self.wake.notify_one();
        }
    }

    /// Bytes queued but not yet written.
    pub(crate) fn pending(&self) -> usize {
        let g = self.inner.lock();
        g.buf.len() + g.held.as_ref().map_or(0, |h| h.1.len())
    }

    /// Stop accepting output; the writer flushes what is queued, then exits.
    pub(crate) fn close(&self) {
        self.inner.lock().closed = true;
        self.wake.notify_one();
    }

    /// Drop the connection now without flushing.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.inner.lock().closed = true;
        self.kill.cancel();
        self.wake.notify_one();
    }

    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Writer task: finishes writes the socket could not take at once, and
    /// exits when the outbox is closed and drained (or killed).
    pub(crate) async fn run_writer(&self) {
        enum Next {
            Exit,
            WaitWritable,
            WaitWake,
            Again,
        }
        loop {
            let next = {
                let mut g = self.inner.lock();
                if self.is_killed() {
                    Next::Exit
                } else if g.blocked || !g.buf.is_empty() {
                    g.blocked = false;
                    if self.write_some(&mut g) {
                        self.drained.notify_one();
                        Next::Again
                    } else {
                        Next::WaitWritable
                    }
                } else if g.closed && g.held.is_none() {
                    Next::Exit
                } else {
                    Next::WaitWake
                }
            };
            match next {
                Next::Exit => break,
                Next::Again => {}
                Next::WaitWritable => {
                    tokio::select! {
                        r = self.sock.writable() => if r.is_err() { self.kill(); break; },
                        _ = self.kill.cancelled() => break,
                    }
                    self.inner.lock().blocked = true;
                }
                Next::WaitWake => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = self.kill.cancelled() => break,
                    }
                }
            }
        }
    }
}
