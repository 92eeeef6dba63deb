//! Per-connection output queue: producers append encoded packets under a
//! short lock, one writer task drains everything queued so far with a single
//! `write_all`. Bytes written after a *durability gate* (a background
//! submission whose JOB_CREATED must wait for the fsync) are held back until
//! the persistence thread releases the gate, so replies keep their order.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Spare write buffers larger than this are freed instead of being reused.
const KEEP_SPARE: usize = 256 << 10;

pub(crate) struct Outbox {
    inner: Mutex<Inner>,
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
}

impl Outbox {
    /// An outbox that kills its connection when more than `limit` bytes are queued.
    pub(crate) fn new(limit: usize) -> Outbox {
        Outbox {
            inner: Mutex::new(Inner {
                buf: BytesMut::new(),
                held: None,
                closed: false,
            }),
            wake: Notify::new(),
            drained: Notify::new(),
            kill: CancellationToken::new(),
            killed: AtomicBool::new(false),
            limit,
        }
    }

    /// Appends bytes produced by `f` (after any pending gate).
    pub(crate) fn write(&self, f: impl FnOnce(&mut BytesMut)) {
        let mut g = self.inner.lock();
        if g.closed {
            return;
        }
        let inner = &mut *g;
        let wake = if let Some((_, held)) = inner.held.as_mut() {
            f(held);
            false
        } else {
            let was_empty = inner.buf.is_empty();
            f(&mut inner.buf);
            was_empty
        };
        let pending = inner.buf.len() + inner.held.as_ref().map_or(0, |h| h.1.len());
        if pending > self.limit {
            inner.closed = true;
            drop(g);
            tracing::warn!("connection output exceeded {} bytes; closing it", self.limit);
            self.kill();
            return;
        }
        drop(g);
        if wake {
            self.wake.notify_one();
        }
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

    /// Releases held bytes whose gate ticket is `<= ticket` (tickets are committed in order).
    pub(crate) fn release(&self, ticket: u64) {
        let mut g = self.inner.lock();
        let ready = matches!(g.held, Some((t, _)) if t <= ticket);
        if ready {
            if let Some((_, held)) = g.held.take() {
                g.buf.extend_from_slice(&held);
            }
            drop(g);
            self.wake.notify_one();
        }
    }

    /// Bytes queued but not yet written.
    pub(crate) fn pending(&self) -> usize {
        let g = self.inner.lock();
        g.buf.len() + g.held.as_ref().map_or(0, |h| h.1.len())
    }

    /// Stop accepting output; the writer flushes what is queued and shuts the socket.
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

    /// Writer task: drains the outbox into the socket until closed or killed.
    pub(crate) async fn run_writer(&self, mut wr: OwnedWriteHalf) {
        let mut spare = BytesMut::new();
        loop {
            let chunk = {
                let mut g = self.inner.lock();
                if self.is_killed() {
                    break;
                }
                if g.buf.is_empty() {
                    if g.closed && g.held.is_none() {
                        break;
                    }
                    None
                } else {
                    Some(std::mem::replace(&mut g.buf, std::mem::take(&mut spare)))
                }
            };
            match chunk {
                None => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = self.kill.cancelled() => break,
                    }
                }
                Some(mut c) => {
                    tokio::select! {
                        r = wr.write_all(&c) => if r.is_err() {
                            self.kill();
                            break;
                        },
                        _ = self.kill.cancelled() => break,
                    }
                    c.clear();
                    if c.capacity() <= KEEP_SPARE {
                        spare = c;
                    }
                    self.drained.notify_one();
                }
            }
        }
        if !self.is_killed() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), wr.shutdown()).await;
        }
    }
}
