//! The write side of one connection, shared by the client, the worker and
//! the server.
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
//! Both halves of that hand-over are here, for the client's connections and
//! the worker's sessions alike: [`settle`] finishes a push on the caller's
//! thread and wakes the task when the socket is full; the task flushes with
//! [`Outbox::flush_step`], either in a loop of its own ([`flush_until_empty`],
//! the client's writer task and a closing worker session) or, where it must
//! keep reading meanwhile (the worker's session loop), by awaiting
//! [`writable`] in its `select!`. The callers only keep what differs: which
//! lock guards the outbox and what a failed write does to the connection.
//!
//! The server (polygear-server's `outbox.rs`) keeps one per connection too,
//! with its own parts on top: a durability gate, an output limit, and
//! replies produced under its state lock, which it [`Outbox::append`]s
//! there and writes once the lock is released ([`Outbox::take`], then
//! [`settle`]), one batch for everything queued meanwhile. Its connection
//! task is always driven, so it leaves bytes appended while a writer is
//! active ([`Outbox::writer_active`]) to that writer. This module is public
//! for the server; the client and the worker are the API.
//!
//! Writing from the caller matters for latency (a reply leaves as soon as it
//! exists) and for runtimes driven by their callers (a current-thread tokio
//! runtime that only runs while some thread waits on it): a job's result or
//! status is sent even while no thread drives the connection's task.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::Notify;

use crate::transport::WriteHalf;
use crate::util::release_if_larger;

/// Unsent bytes above which a sender waits (backpressure): a client's
/// submit awaits, a job's synchronous send blocks, until at most
/// [`BACKLOG_LOW`] are left. Without it, a peer that stops reading would
/// let the buffer grow without bound.
pub const BACKLOG_HIGH: usize = 8 << 20;
/// See [`BACKLOG_HIGH`].
pub const BACKLOG_LOW: usize = 4 << 20;

/// Write buffers whose allocation is above this are released once empty.
const KEEP_CAPACITY: usize = 1 << 20;
const INITIAL_CAPACITY: usize = 8 * 1024;

/// What a [`Outbox::push`] or [`Outbox::written`] leaves to do.
#[derive(Debug)]
pub enum Pushed {
    /// Nothing: the bytes are written, or the active writer (another
    /// thread or the connection task) writes them.
    Done,
    /// The caller is the writer now: release the lock, [`Batch::write`],
    /// then report back with [`Outbox::written`].
    Write(Batch),
    /// The socket is full: wake the connection task to flush.
    WakeTask,
}

/// What the connection task does next, from [`Outbox::flush_step`].
#[derive(Debug)]
pub enum Flush {
    /// Nothing: the buffer is empty (direct writes resume) or no flush is due.
    Idle,
    /// A caller is writing a batch: it hands back (waking the task) if the
    /// socket fills, so the task has nothing to do now.
    CallerWriting,
    /// The socket is full: await writability on this write half (without
    /// the lock), then step again.
    Blocked(Arc<WriteHalf>),
}

impl Flush {
    /// The write half to await, if the socket is full.
    pub fn blocked(self) -> Option<Arc<WriteHalf>> {
        match self {
            Flush::Blocked(wr) => Some(wr),
            Flush::Idle | Flush::CallerWriting => None,
        }
    }
}

/// Bytes taken out of an [`Outbox`] to be written without its lock held.
#[derive(Debug)]
pub struct Batch {
    bytes: BytesMut,
    wr: Arc<WriteHalf>,
    /// Everything went out (with TLS an empty batch may still have
    /// encrypted records waiting inside the session).
    sent: bool,
}

impl Batch {
    /// Writes what the socket takes now; unwritten bytes stay in the batch.
    pub fn write(&mut self) -> io::Result<()> {
        self.sent = self.wr.write_buf(&mut self.bytes)?;
        Ok(())
    }
}

/// Buffered, direct-write side of a socket. Callers keep it behind the
/// connection's mutex; writes never block.
#[derive(Debug)]
pub struct Outbox {
    buf: BytesMut,
    /// An emptied batch buffer, reused for the next batch.
    spare: BytesMut,
    /// Taken (and so released) when the connection is closed.
    wr: Option<Arc<WriteHalf>>,
    /// The socket was full: the connection task owns flushing until `buf` is empty.
    flushing: bool,
    /// A caller holds a [`Batch`]: it alone writes until it reports back.
    writing: bool,
    /// Bytes in that batch when it was taken (see [`Outbox::pending`]).
    in_flight: usize,
    /// Capacity of a new buffer (0: allocated by the first push).
    initial: usize,
    /// An emptied buffer with a larger allocation is released.
    keep: usize,
}

impl Outbox {
    /// An outbox whose first bytes (a handshake) the connection task sends.
    pub fn new(wr: impl Into<WriteHalf>, handshake: BytesMut) -> Outbox {
        let flushing = !handshake.is_empty();
        let mut out = Outbox::with_buffers(wr, INITIAL_CAPACITY, KEEP_CAPACITY);
        out.buf = handshake;
        if out.buf.capacity() < INITIAL_CAPACITY {
            out.buf.reserve(INITIAL_CAPACITY - out.buf.len());
        }
        out.flushing = flushing;
        out
    }

    /// An empty outbox whose buffers start at `initial` bytes (0: nothing
    /// is allocated before the first push, for a server's many idle
    /// connections) and are released once emptied if their allocation grew
    /// beyond `keep` bytes.
    pub fn with_buffers(wr: impl Into<WriteHalf>, initial: usize, keep: usize) -> Outbox {
        Outbox {
            buf: BytesMut::with_capacity(initial),
            spare: BytesMut::new(),
            wr: Some(Arc::new(wr.into())),
            flushing: false,
            writing: false,
            in_flight: 0,
            initial,
            keep,
        }
    }

    /// An outbox without a socket, closed from the start (pushes fail with
    /// `NotConnected`): for polygear-server's in-memory simulation (its
    /// `fuzzing` feature), whose connections hold their output instead.
    #[doc(hidden)]
    pub fn detached() -> Outbox {
        Outbox {
            buf: BytesMut::new(),
            spare: BytesMut::new(),
            wr: None,
            flushing: false,
            writing: false,
            in_flight: 0,
            initial: 0,
            keep: KEEP_CAPACITY,
        }
    }

    /// Bytes pushed and not yet written, including a batch being written
    /// (as it was taken: what a writer wrote of it since is not known here).
    pub fn pending(&self) -> usize {
        self.buf.len() + self.in_flight
    }

    /// Appends bytes with `write` (after any unwritten ones). Unless another
    /// writer is active, the caller becomes the writer ([`Pushed::Write`]),
    /// also while the task is flushing: on a runtime nobody drives the task
    /// may not run for a while, and every push moves the backlog on.
    pub fn push(&mut self, write: impl FnOnce(&mut BytesMut)) -> io::Result<Pushed> {
        self.append(write)?;
        Ok(self.take())
    }

    /// The first half of [`Outbox::push`]: appends bytes with `write` and
    /// leaves them buffered, for a caller that appends under a lock of its
    /// own and calls [`Outbox::take`] once that lock is released (so one
    /// write carries everything appended until then).
    pub fn append(&mut self, write: impl FnOnce(&mut BytesMut)) -> io::Result<()> {
        if self.wr.is_none() {
            return Err(io::ErrorKind::NotConnected.into());
        }
        write(&mut self.buf);
        Ok(())
    }

    /// The second half of [`Outbox::push`]: unless another writer is active
    /// (a caller's batch; [`Pushed::Done`] then, it picks the bytes up), the
    /// caller becomes the writer of everything buffered.
    pub fn take(&mut self) -> Pushed {
        if self.writing {
            return Pushed::Done;
        }
        self.take_batch()
    }

    /// True while a caller's batch is out or the connection task owns
    /// flushing: bytes appended now are written by that writer, with no
    /// [`Outbox::take`] (for a task that is always driven, as a server's).
    pub fn writer_active(&self) -> bool {
        self.writing || self.flushing
    }

    /// For the writer, with the lock held again after [`Batch::write`]
    /// returned `result`: gives back what the socket did not take, and
    /// returns the next batch if more bytes were appended meanwhile.
    pub fn written(&mut self, mut batch: Batch, result: io::Result<()>) -> io::Result<Pushed> {
        self.writing = false;
        self.in_flight = 0;
        if self.wr.is_none() {
            return Err(io::ErrorKind::NotConnected.into());
        }
        result?;
        if !batch.sent {
            // The socket is full: the rest goes back in front, for the task.
            batch.bytes.extend_from_slice(&self.buf);
            self.buf = batch.bytes;
            self.flushing = true;
            return Ok(Pushed::WakeTask);
        }
        self.flushing = false;
        release_if_larger(&mut batch.bytes, self.keep, 0);
        self.spare = batch.bytes;
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
        self.in_flight = self.buf.len();
        let mut next = std::mem::take(&mut self.spare);
        if next.capacity() < self.initial {
            next.reserve(self.initial);
        }
        Pushed::Write(Batch {
            bytes: std::mem::replace(&mut self.buf, next),
            wr: wr.clone(),
            sent: false,
        })
    }

    /// True while the connection task owns flushing.
    #[cfg(test)]
    pub(crate) fn flushing(&self) -> bool {
        self.flushing
    }

    /// For the connection task, with the lock held: if the socket was full
    /// (a push handed over with [`Pushed::WakeTask`]), writes what it takes
    /// now. See [`Flush`] for what to do next.
    pub fn flush_step(&mut self) -> io::Result<Flush> {
        if self.writing {
            return Ok(Flush::CallerWriting);
        }
        if !self.flushing {
            return Ok(Flush::Idle);
        }
        if self.try_flush()? {
            self.flushing = false;
            return Ok(Flush::Idle);
        }
        match &self.wr {
            Some(wr) => Ok(Flush::Blocked(wr.clone())),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// True if the peer closed the connection (a non-blocking peek finds
    /// end-of-file or an error). For an idle connection whose reader may not
    /// have run: on a runtime only driven while a caller waits, a server
    /// restart is otherwise noticed only after the next request was sent.
    pub fn peer_closed(&self) -> bool {
        let Some(wr) = &self.wr else {
            return true;
        };
        // SAFETY: the descriptor stays open while `wr` is held.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(wr.raw_fd()) };
        let socket = socket2::SockRef::from(&fd);
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
    pub fn close(&mut self) {
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
        if !wr.write_buf(&mut self.buf)? {
            return Ok(false);
        }
        release_if_larger(&mut self.buf, self.keep, self.initial);
        Ok(true)
    }
}

/// Finishes a [`Outbox::push`] after the caller released the lock: writes
/// a [`Pushed::Write`] batch, then what others appended meanwhile, and
/// notifies `wake` (the connection task) if the socket is full. `relock`
/// locks the connection again and `outbox` finds the outbox in it. An error
/// is the socket's (the caller closes the connection).
pub fn settle<G: std::ops::DerefMut>(
    pushed: io::Result<Pushed>,
    relock: impl Fn() -> G,
    outbox: impl Fn(&mut G::Target) -> &mut Outbox,
    wake: &Notify,
) -> io::Result<()> {
    let mut batch = match pushed? {
        Pushed::Done => return Ok(()),
        Pushed::WakeTask => {
            wake.notify_one();
            return Ok(());
        }
        Pushed::Write(batch) => batch,
    };
    loop {
        let result = batch.write();
        let mut guard = relock();
        match outbox(&mut guard).written(batch, result)? {
            Pushed::Write(next) => batch = next,
            Pushed::Done => return Ok(()),
            Pushed::WakeTask => {
                drop(guard);
                wake.notify_one();
                return Ok(());
            }
        }
    }
}

/// The connection task's flush of a full socket: calls `step` (an
/// [`Outbox::flush_step`] under the caller's lock) until nothing is left,
/// awaiting writability in between without the lock. A batch a caller is
/// writing ends the flush (that caller hands back if the socket fills),
/// unless `wait_for_caller`: then it is waited for too, as a connection
/// about to close must send every byte first.
pub async fn flush_until_empty(
    mut step: impl FnMut() -> io::Result<Flush>,
    wait_for_caller: bool,
) -> io::Result<()> {
    loop {
        match step()? {
            Flush::Blocked(wr) => wr.writable().await?,
            // Never for long: the caller's writes do not block.
            Flush::CallerWriting if wait_for_caller => {
                tokio::time::sleep(Duration::from_millis(1)).await
            }
            Flush::CallerWriting | Flush::Idle => return Ok(()),
        }
    }
}

/// Blocks the calling thread until at most `low` bytes are
/// unsent, writing them itself (so it needs no runtime to be driven: the
/// blocking APIs' runtime only runs while some thread waits on it), or
/// until `deadline` (`ErrorKind::TimedOut`). For synchronous senders (a
/// job's packets) whose push left too much unsent.
pub fn wait_drained<G: std::ops::DerefMut>(
    relock: impl Fn() -> G,
    outbox: impl Fn(&mut G::Target) -> &mut Outbox,
    wake: &Notify,
    low: usize,
    deadline: std::time::Instant,
) -> io::Result<()> {
    loop {
        let mut guard = relock();
        let out = outbox(&mut guard);
        if out.pending() <= low {
            return Ok(());
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the peer did not read {} unsent bytes in time",
                    out.pending()
                ),
            ));
        }
        match out.flush_step()? {
            Flush::Blocked(wr) => {
                drop(guard);
                poll_writable(&wr, (deadline - now).min(Duration::from_millis(100)))?;
            }
            Flush::CallerWriting => {
                drop(guard);
                std::thread::sleep(Duration::from_millis(1));
            }
            Flush::Idle => {
                let pushed = out.take();
                drop(guard);
                settle(Ok(pushed), &relock, &outbox, wake)?;
            }
        }
    }
}

/// Waits (blocking the thread, at most `timeout`) until `wr` can take bytes.
fn poll_writable(wr: &WriteHalf, timeout: Duration) -> io::Result<()> {
    let mut fds = libc::pollfd {
        fd: wr.raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&mut fds, 1, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// For a task that flushes inside its own `select!`: completes once the
/// full socket takes bytes again; never if `blocked` is `None`.
pub async fn writable(blocked: &Option<Arc<WriteHalf>>) -> io::Result<()> {
    match blocked {
        Some(wr) => wr.writable().await,
        None => std::future::pending().await,
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
    /// True if the task was woken.
    fn push(out: &std::sync::Mutex<Outbox>, bytes: &[u8]) -> bool {
        let wake = Notify::new();
        let pushed = out.lock().unwrap().push(|b| b.extend_from_slice(bytes));
        settle(pushed, || out.lock().unwrap(), |o: &mut Outbox| o, &wake).unwrap();
        // A stored permit: notified() completes at once.
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable()
    }

    #[tokio::test]
    async fn appended_bytes_leave_in_one_batch() {
        let (a, mut b) = pair().await;
        let (_rd, wr) = a.into_split();
        let mut out = Outbox::with_buffers(wr, 0, 1 << 10);
        out.append(|b| b.put_slice(b"one ")).unwrap();
        out.append(|b| b.put_slice(b"two")).unwrap();
        assert_eq!(out.pending(), 7);
        assert!(!out.writer_active());
        let Pushed::Write(mut batch) = out.take() else {
            panic!("the caller writes");
        };
        assert!(out.writer_active());
        assert_eq!(out.pending(), 7, "the batch being written counts");
        assert!(matches!(out.take(), Pushed::Done));
        let r = batch.write();
        assert!(matches!(out.written(batch, r).unwrap(), Pushed::Done));
        assert_eq!(out.pending(), 0);
        let mut got = [0u8; 7];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one two");
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
        assert!(matches!(
            out.lock().unwrap().flush_step().unwrap(),
            Flush::Idle
        ));

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
            matches!(
                out.lock().unwrap().flush_step().unwrap(),
                Flush::CallerWriting
            ),
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
        flush_until_empty(|| out.lock().unwrap().flush_step(), false)
            .await
            .unwrap();
        assert!(!out.lock().unwrap().flushing());
        {
            // The megabytes that went through were given back.
            let mut o = out.lock().unwrap();
            assert!(!o.buf.try_reclaim(KEEP_CAPACITY + 1), "buffer kept");
            assert!(!o.spare.try_reclaim(KEEP_CAPACITY + 1), "spare kept");
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
