//! The write side of one connection, shared by the client and the worker.
//!
//! Packets are appended to one buffer and written straight to the socket by
//! the thread that produced them (a non-blocking `try_write`, no task hop).
//! The write itself runs with the connection's lock released: the pushing
//! thread takes the buffered bytes as a [`Batch`] (it is then the only
//! writer), writes them, and with [`Outbox::written`] hands back what the
//! socket did not take and picks up what others appended meanwhile. Other
//! threads only append while a writer is active, so they never wait for a
//! system call, and the order on the wire is always the order of
//! [`Outbox::push`] calls. Only when the socket is full does the
//! connection's task take over: it waits for writability and flushes until
//! the buffer is empty.
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

/// What a [`Outbox::push`] or [`Outbox::written`] leaves to do.
#[derive(Debug)]
pub(crate) enum Pushed {
    /// Nothing: the bytes are written, or the active writer (another
    /// thread or the connection task) writes them.
    Done,
    /// The caller is the writer now: release the lock, [`Batch::write`],
    /// then report back with [`Outbox::written`].
    Write(Batch),
    /// The socket is full: wake the connection task to flush.
    WakeTask,
}

/// Bytes taken out of an [`Outbox`] to be written without its lock held.
#[derive(Debug)]
pub(crate) struct Batch {
    bytes: BytesMut,
    wr: Arc<OwnedWriteHalf>,
}

impl Batch {
    /// Writes what the socket takes now; unwritten bytes stay in the batch.
    pub(crate) fn write(&mut self) -> io::Result<()> {
        write_nonblocking(&self.wr, &mut self.bytes).map(|_| ())
    }
}

/// Writes from the front of `buf` what the socket takes without blocking;
/// `Ok(true)` once `buf` is empty.
fn write_nonblocking(wr: &OwnedWriteHalf, buf: &mut BytesMut) -> io::Result<bool> {
    while !buf.is_empty() {
        match wr.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Buffered, direct-write side of a socket. Callers keep it behind the
/// connection's mutex; writes never block.
#[derive(Debug)]
pub(crate) struct Outbox {
    buf: BytesMut,
    /// An emptied batch buffer, reused for the next batch.
    spare: BytesMut,
    /// Taken (and so released) when the connection is closed.
    wr: Option<Arc<OwnedWriteHalf>>,
    /// The socket was full: the connection task owns flushing until `buf` is empty.
    flushing: bool,
    /// A caller holds a [`Batch`]: it alone writes until it reports back.
    writing: bool,
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
            spare: BytesMut::new(),
            wr: Some(Arc::new(wr)),
            flushing,
            writing: false,
        }
    }

    /// Appends bytes with `write` (after any unwritten ones). Unless another
    /// writer is active, the caller becomes the writer ([`Pushed::Write`]),
    /// also while the task is flushing: on a runtime nobody drives the task
    /// may not run for a while, and every push moves the backlog on.
    pub(crate) fn push(&mut self, write: impl FnOnce(&mut BytesMut)) -> io::Result<Pushed> {
        if self.wr.is_none() {
            return Err(io::ErrorKind::NotConnected.into());
        }
        write(&mut self.buf);
        if self.writing {
            return Ok(Pushed::Done);
        }
        Ok(self.take_batch())
    }

    /// For the writer, with the lock held again after [`Batch::write`]
    /// returned `result`: gives back what the socket did not take, and
    /// returns the next batch if more bytes were appended meanwhile.
    pub(crate) fn written(
        &mut self,
        mut batch: Batch,
        result: io::Result<()>,
    ) -> io::Result<Pushed> {
        self.writing = false;
        if self.wr.is_none() {
            return Err(io::ErrorKind::NotConnected.into());
        }
        result?;
        if !batch.bytes.is_empty() {
            // The socket is full: the rest goes back in front, for the task.
            batch.bytes.extend_from_slice(&self.buf);
            self.buf = batch.bytes;
            self.flushing = true;
            return Ok(Pushed::WakeTask);
        }
        self.flushing = false;
        if batch.bytes.capacity() <= KEEP_CAPACITY {
            batch.bytes.clear();
            self.spare = batch.bytes;
        }
        Ok(self.take_batch())
    }

    /// Makes the caller the writer of everything buffered (if anything is).
    fn take_batch(&mut self) -> Pushed {
        let Some(wr) = &self.wr else {
            return Pushed::Done;
        };
        if self.buf.is_empty() {
            return Pushed::Done;
        }
        self.writing = true;
        let mut next = std::mem::take(&mut self.spare);
        if next.capacity() < INITIAL_CAPACITY {
            next.reserve(INITIAL_CAPACITY);
        }
        Pushed::Write(Batch {
            bytes: std::mem::replace(&mut self.buf, next),
            wr: wr.clone(),
        })
    }

    /// True while the connection task owns flushing.
    pub(crate) fn flushing(&self) -> bool {
        self.flushing
    }

    /// True while a caller writes a [`Batch`].
    pub(crate) fn writing(&self) -> bool {
        self.writing
    }

    /// For the connection task: writes what the socket takes. Returns
    /// `Ok(None)` once the buffer is empty (direct writes resume) or while a
    /// caller writes (it hands back with [`Pushed::WakeTask`] if the socket
    /// fills), else the write half to await writability on.
    pub(crate) fn flush_step(&mut self) -> io::Result<Option<Arc<OwnedWriteHalf>>> {
        if self.writing {
            return Ok(None);
        }
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
        self.spare = BytesMut::new();
        self.wr = None;
        self.flushing = false;
    }

    /// Writes as much as the socket takes without blocking; `Ok(true)` once
    /// everything is written.
    fn try_flush(&mut self) -> io::Result<bool> {
        let Some(wr) = &self.wr else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        if !write_nonblocking(wr, &mut self.buf)? {
            return Ok(false);
        }
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = BytesMut::with_capacity(INITIAL_CAPACITY);
        } else {
            self.buf.clear();
        }
        Ok(true)
    }
}

/// Finishes a [`Outbox::push`] after the caller released the lock: writes
/// a [`Pushed::Write`] batch, then what others appended meanwhile. `relock`
/// locks the connection again and `outbox` finds the outbox in it.
/// `Ok(true)` when the connection task must be woken (the socket is full);
/// an error is the socket's (the caller closes the connection).
pub(crate) fn settle<G: std::ops::DerefMut>(
    pushed: io::Result<Pushed>,
    relock: impl Fn() -> G,
    outbox: impl Fn(&mut G::Target) -> &mut Outbox,
) -> io::Result<bool> {
    let mut batch = match pushed? {
        Pushed::Done => return Ok(false),
        Pushed::WakeTask => return Ok(true),
        Pushed::Write(batch) => batch,
    };
    loop {
        let result = batch.write();
        let mut guard = relock();
        match outbox(&mut guard).written(batch, result)? {
            Pushed::Write(next) => batch = next,
            Pushed::Done => return Ok(false),
            Pushed::WakeTask => return Ok(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    /// Pushes like the client and worker do: write with the lock released.
    /// True if the task must be woken.
    fn push(out: &std::sync::Mutex<Outbox>, bytes: &[u8]) -> bool {
        let pushed = out.lock().unwrap().push(|b| b.extend_from_slice(bytes));
        settle(pushed, || out.lock().unwrap(), |o: &mut Outbox| o).unwrap()
    }

    #[tokio::test]
    async fn writes_directly_keeps_order_when_full_and_refuses_after_close() {
        let (a, mut b) = pair().await;
        let (_rd, wr) = a.into_split();
        let out = std::sync::Mutex::new(Outbox::new(wr, BytesMut::from(&b"hello "[..])));
        assert!(
            out.lock().unwrap().flushing(),
            "the handshake is the task's to send"
        );
        // A push writes the backlog too (the task may not run for a while).
        assert!(!push(&out, b"world"));
        assert!(!out.lock().unwrap().flushing());
        assert!(out.lock().unwrap().flush_step().unwrap().is_none());

        // While a batch is out, others only append; the writer picks their
        // bytes up when it reports back.
        let Pushed::Write(mut batch) = out.lock().unwrap().push(|b| b.put_u8(b'!')).unwrap() else {
            panic!("the first pusher writes");
        };
        assert!(matches!(
            out.lock().unwrap().push(|b| b.put_u8(b'?')).unwrap(),
            Pushed::Done
        ));
        assert!(
            out.lock().unwrap().flush_step().unwrap().is_none(),
            "the task waits for the writer"
        );
        let r = batch.write();
        let Pushed::Write(mut next) = out.lock().unwrap().written(batch, r).unwrap() else {
            panic!("the appended byte is the writer's to send");
        };
        let r = next.write();
        assert!(matches!(
            out.lock().unwrap().written(next, r).unwrap(),
            Pushed::Done
        ));

        // Fill the socket: the first push that does not fit hands over to the task.
        let chunk = vec![7u8; 1 << 20];
        let mut pushed = 0usize;
        loop {
            let wake = push(&out, &chunk);
            pushed += chunk.len();
            if wake {
                break;
            }
        }
        assert!(out.lock().unwrap().flushing());
        // A push while the task owns flushing still tries, and wakes it again.
        assert!(push(&out, b"END"));

        let want = 13 + pushed + 3;
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
        loop {
            let wr = out.lock().unwrap().flush_step().unwrap();
            let Some(wr) = wr else { break };
            wr.writable().await.unwrap();
        }
        let got = reader.await.unwrap();
        assert_eq!(&got[..13], b"hello world!?");
        assert!(got[13..want - 3].iter().all(|&c| c == 7));
        assert_eq!(&got[want - 3..], b"END");

        out.lock().unwrap().close();
        assert_eq!(
            out.lock()
                .unwrap()
                .push(|b| b.extend_from_slice(b"x"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotConnected
        );
    }
}
