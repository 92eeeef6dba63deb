//! The write side of one connection, shared by the client and the worker.
//!
//! Packets are appended to one buffer and written straight to the socket by
//! the thread that produced them (a non-blocking `try_write`, no task hop).
//! Only when the socket is full does the connection's task take over: it
//! waits for writability and flushes until the buffer is empty, and until
//! then later packets are appended behind the unwritten bytes, so the order
//! on the wire is always the order of [`Outbox::push`] calls.
//!
//! Writing from the caller matters for latency (a reply leaves as soon as it
//! exists) and for runtimes driven by their callers (a current-thread tokio
//! runtime that only runs while some thread waits on it): a job's result or
//! status is sent even while no thread drives the connection's task.

use std::io;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::net::tcp::OwnedWriteHalf;

/// Write buffers above this capacity are released once empty.
const KEEP_CAPACITY: usize = 1 << 20;
const INITIAL_CAPACITY: usize = 8 * 1024;

/// What a [`Outbox::push`] left to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Everything queued is on the socket.
    Written,
    /// Bytes remain and the connection task must flush them: wake it.
    WakeTask,
    /// Bytes remain and the connection task is already flushing.
    Queued,
}

/// Buffered, direct-write side of a socket. Callers keep it behind the
/// connection's mutex; writes never block.
#[derive(Debug)]
pub(crate) struct Outbox {
    buf: BytesMut,
    /// Taken (and so released) when the connection is closed.
    wr: Option<Arc<OwnedWriteHalf>>,
    /// The socket was full: the connection task owns flushing until `buf` is empty.
    flushing: bool,
}

impl Outbox {
    /// An outbox whose first bytes (a handshake) the connection task sends.
    pub(crate) fn new(wr: OwnedWriteHalf, handshake: BytesMut) -> Outbox {
        let flushing = !handshake.is_empty();
        let mut buf = handshake;
        if buf.capacity() < INITIAL_CAPACITY {
            buf.reserve(INITIAL_CAPACITY - buf.len());
        }
        Outbox {
            buf,
            wr: Some(Arc::new(wr)),
            flushing,
        }
    }

    /// Appends bytes with `write` (after any unwritten ones) and writes what
    /// the socket takes now.
    pub(crate) fn push(&mut self, write: impl FnOnce(&mut BytesMut)) -> io::Result<Pushed> {
        if self.wr.is_none() {
            return Err(io::ErrorKind::NotConnected.into());
        }
        write(&mut self.buf);
        // Also while the task is flushing: on a runtime nobody drives, the
        // task may not run for a while, and every push moves the backlog on.
        let was_flushing = self.flushing;
        if self.try_flush()? {
            self.flushing = false;
            Ok(Pushed::Written)
        } else if was_flushing {
            Ok(Pushed::Queued)
        } else {
            self.flushing = true;
            Ok(Pushed::WakeTask)
        }
    }

    /// True while the connection task owns flushing.
    pub(crate) fn flushing(&self) -> bool {
        self.flushing
    }

    /// For the connection task: writes what the socket takes. Returns
    /// `Ok(None)` once the buffer is empty (direct writes resume), or the
    /// write half to await writability on.
    pub(crate) fn flush_step(&mut self) -> io::Result<Option<Arc<OwnedWriteHalf>>> {
        if self.try_flush()? {
            self.flushing = false;
            Ok(None)
        } else {
            self.flushing = true;
            Ok(self.wr.clone())
        }
    }

    /// True if the peer closed the connection (a non-blocking peek finds
    /// end-of-file or an error). For an idle connection whose reader may not
    /// have run: on a runtime only driven while a caller waits, a server
    /// restart is otherwise noticed only after the next request was sent.
    pub(crate) fn peer_closed(&self) -> bool {
        let Some(wr) = &self.wr else {
            return true;
        };
        let socket = socket2::SockRef::from(wr.as_ref().as_ref());
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket.peek(&mut byte) {
            Ok(n) => n == 0,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ),
        }
    }

    /// Drops queued bytes and the socket's write half; later pushes fail.
    pub(crate) fn close(&mut self) {
        self.buf = BytesMut::new();
        self.wr = None;
        self.flushing = false;
    }

    /// Writes as much as the socket takes without blocking; `Ok(true)` once
    /// everything is written.
    fn try_flush(&mut self) -> io::Result<bool> {
        let Some(wr) = &self.wr else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        while !self.buf.is_empty() {
            match wr.try_write(&self.buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.buf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = BytesMut::with_capacity(INITIAL_CAPACITY);
        } else {
            self.buf.clear();
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn writes_directly_keeps_order_when_full_and_refuses_after_close() {
        let (a, mut b) = pair().await;
        let (_rd, wr) = a.into_split();
        let mut out = Outbox::new(wr, BytesMut::from(&b"hello "[..]));
        assert!(out.flushing(), "the handshake is the task's to send");
        // A push writes the backlog too (the task may not run for a while).
        assert_eq!(
            out.push(|b| b.extend_from_slice(b"world")).unwrap(),
            Pushed::Written
        );
        assert!(!out.flushing());
        assert!(out.flush_step().unwrap().is_none());
        assert_eq!(
            out.push(|b| b.extend_from_slice(b"!")).unwrap(),
            Pushed::Written
        );

        // Fill the socket: the first push that does not fit hands over to the task.
        let chunk = vec![7u8; 1 << 20];
        let mut pushed = 0usize;
        let result = loop {
            let r = out.push(|b| b.extend_from_slice(&chunk)).unwrap();
            pushed += chunk.len();
            if r != Pushed::Written {
                break r;
            }
        };
        assert_eq!(result, Pushed::WakeTask);
        assert_eq!(
            out.push(|b| b.extend_from_slice(b"END")).unwrap(),
            Pushed::Queued
        );

        let want = 12 + pushed + 3;
        let reader = tokio::spawn(async move {
            let mut got = Vec::with_capacity(want);
            while got.len() < want {
                let mut tmp = vec![0u8; 1 << 16];
                let n = b.read(&mut tmp).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&tmp[..n]);
            }
            got
        });
        while let Some(wr) = out.flush_step().unwrap() {
            wr.writable().await.unwrap();
        }
        let got = reader.await.unwrap();
        assert_eq!(&got[..12], b"hello world!");
        assert!(got[12..want - 3].iter().all(|&c| c == 7));
        assert_eq!(&got[want - 3..], b"END");

        out.close();
        assert_eq!(
            out.push(|b| b.extend_from_slice(b"x")).unwrap_err().kind(),
            io::ErrorKind::NotConnected
        );
    }
}
