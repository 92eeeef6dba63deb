//! A connection's byte stream: plain TCP, or TLS (rustls) over TCP.
//!
//! Everything above reads through a [`ReadHalf`] (an [`AsyncRead`], driven
//! by the connection's task through [`FrameReader`](crate::frame::FrameReader))
//! and writes through a [`WriteHalf`] the way the [`Outbox`](crate::outbox)
//! does: a non-blocking [`WriteHalf::write_buf`] from whatever thread produced
//! the bytes, and [`WriteHalf::writable`] for the task that flushes a full
//! socket. Plain TCP keeps tokio's own halves (no extra cost). TLS shares one
//! rustls session between both halves behind a mutex held only for
//! non-blocking calls: the reader decrypts records as they arrive, a writer
//! encrypts its bytes and sends the records the socket takes, leaving the
//! rest inside the session for the next write or the task's flush (a write
//! reports "not done" until the session has nothing left to send).
//!
//! The handshake happens before: [`Stream::tls`] takes a session that
//! finished it (tokio-rustls' connector or acceptor, see
//! [`TlsConnector`](crate::tls::TlsConnector)).

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Plaintext handed to the TLS session per step: its records are sent
/// before more is encrypted, so a full socket holds back at most this much
/// ciphertext inside the session.
const TLS_CHUNK: usize = 64 << 10;

/// A connected stream, plain or TLS, before it is split.
#[derive(Debug)]
pub struct Stream {
    tcp: TcpStream,
    tls: Option<rustls::Connection>,
}

impl Stream {
    /// Plain TCP.
    pub fn plain(tcp: TcpStream) -> Stream {
        Stream { tcp, tls: None }
    }

    /// TLS over `tcp` with a session whose handshake is complete.
    pub fn tls(tcp: TcpStream, session: impl Into<rustls::Connection>) -> Stream {
        Stream {
            tcp,
            tls: Some(session.into()),
        }
    }

    /// True if the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TCP socket under the stream (for socket options and addresses).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The read and write halves.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self.tls {
            None => {
                let (rd, wr) = self.tcp.into_split();
                (ReadHalf(Read_::Plain(rd)), WriteHalf(Write_::Plain(wr)))
            }
            Some(mut session) => {
                // The handshake may have decrypted the peer's first
                // requests already: count them.
                let (plaintext, closed) = match session.process_new_packets() {
                    Ok(state) => (state.plaintext_bytes_to_read(), state.peer_has_closed()),
                    Err(_) => (0, true),
                };
                let (rd, wr) = self.tcp.into_split();
                let shared = Arc::new(TlsShared {
                    wr,
                    session: Mutex::new(Session {
                        conn: session,
                        plaintext,
                        closed,
                    }),
                });
                let reader = TlsReader {
                    rd,
                    shared: shared.clone(),
                    cipher: Vec::new(),
                    fed: 0,
                    end: 0,
                };
                (
                    ReadHalf(Read_::Tls(Box::new(reader))),
                    WriteHalf(Write_::Tls(shared)),
                )
            }
        }
    }
}

/// The read side of a [`Stream`].
#[derive(Debug)]
pub struct ReadHalf(Read_);

#[derive(Debug)]
enum Read_ {
    Plain(OwnedReadHalf),
    Tls(Box<TlsReader>),
}

/// The read side of a TLS stream: the socket's read half, and the
/// ciphertext read from it that rustls has not taken yet.
#[derive(Debug)]
struct TlsReader {
    rd: OwnedReadHalf,
    shared: Arc<TlsShared>,
    /// Allocated by the first read, [`CIPHER_READ`] bytes.
    cipher: Vec<u8>,
    /// `cipher[fed..end]` is read and not yet given to rustls.
    fed: usize,
    end: usize,
}

/// The write side of a [`Stream`]: non-blocking writes from any thread.
#[derive(Debug)]
pub struct WriteHalf(Write_);

#[derive(Debug)]
enum Write_ {
    Plain(OwnedWriteHalf),
    Tls(Arc<TlsShared>),
}

/// One TLS session shared by both halves (the socket's write half is here
/// because the reader may owe the peer a record too).
struct TlsShared {
    wr: OwnedWriteHalf,
    session: Mutex<Session>,
}

/// The rustls connection and what the reader knows of it.
struct Session {
    conn: rustls::Connection,
    /// Decrypted bytes waiting to be read (so a read initialises only
    /// that much of the caller's buffer).
    plaintext: usize,
    /// The peer closed (close_notify or end of the TCP stream).
    closed: bool,
}

impl std::fmt::Debug for TlsShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsShared").field("wr", &self.wr).finish()
    }
}

/// `std::io::Write` over a socket's non-blocking write, for rustls.
struct Sock<'a>(&'a OwnedWriteHalf);

impl Write for Sock<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TLS failure as an I/O error, with what an alert from the server
/// means for the user.
fn tls_error(e: rustls::Error) -> io::Error {
    use rustls::AlertDescription as A;
    let hint = match &e {
        rustls::Error::AlertReceived(A::CertificateRequired) => {
            " (the server requires a client certificate: mutual TLS)"
        }
        rustls::Error::AlertReceived(
            A::UnknownCA
            | A::BadCertificate
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::AccessDenied,
        ) => " (the server refused this client certificate)",
        _ => "",
    };
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}{hint}"))
}

impl TlsShared {
    fn lock(&self) -> MutexGuard<'_, Session> {
        // A panic while the lock was held left no partial state that
        // matters more than the connection itself: keep going.
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the session's pending records; `Ok(false)` if the socket is full.
    fn send_records(&self, session: &mut rustls::Connection) -> io::Result<bool> {
        while session.wants_write() {
            match session.write_tls(&mut Sock(&self.wr)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn write_buf(&self, buf: &mut BytesMut) -> io::Result<bool> {
        let mut guard = self.lock();
        let session = &mut guard.conn;
        loop {
            if !self.send_records(session)? {
                return Ok(false);
            }
            if buf.is_empty() {
                return Ok(true);
            }
            let n = session.writer().write(&buf[..buf.len().min(TLS_CHUNK)])?;
            if n == 0 && !session.wants_write() {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf.advance(n);
        }
    }
}

/// Ciphertext read from the socket per system call (at most).
const CIPHER_READ: usize = 32 << 10;

impl TlsReader {
    /// Hands out decrypted bytes; when none are left, gives rustls the
    /// ciphertext already read, and only when that is used up reads the
    /// socket (one `recv` per wake-up: tokio's read clears the readiness
    /// after a short read).
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            {
                let tls = &self.shared;
                let mut guard = tls.lock();
                let s = &mut *guard;
                if s.plaintext > 0 && buf.remaining() > 0 {
                    let n = s.plaintext.min(buf.remaining());
                    let got = s.conn.reader().read(buf.initialize_unfilled_to(n))?;
                    s.plaintext -= got;
                    buf.advance(got);
                    return Poll::Ready(Ok(()));
                }
                if s.closed || buf.remaining() == 0 {
                    // End of stream (the peer closed without close_notify
                    // too: the framing above notices a cut packet).
                    return Poll::Ready(Ok(()));
                }
                if self.fed < self.end {
                    let mut rest = &self.cipher[self.fed..self.end];
                    self.fed += s.conn.read_tls(&mut rest)?;
                    match s.conn.process_new_packets() {
                        Ok(state) => {
                            s.plaintext = state.plaintext_bytes_to_read();
                            s.closed = state.peer_has_closed();
                        }
                        Err(e) => {
                            // Tell the peer why (the alert), best effort.
                            let _ = tls.send_records(&mut s.conn);
                            return Poll::Ready(Err(tls_error(e)));
                        }
                    }
                    // Records the session owes the peer (a key update, an
                    // alert): what the socket does not take goes with the
                    // next write.
                    if s.conn.wants_write() {
                        tls.send_records(&mut s.conn)?;
                    }
                    continue;
                }
            }
            // Everything read was fed: read the socket (no lock held).
            if self.cipher.is_empty() {
                self.cipher = vec![0; CIPHER_READ];
            }
            let mut rb = ReadBuf::new(&mut self.cipher);
            match Pin::new(&mut self.rd).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    self.fed = 0;
                    self.end = n;
                    if n == 0 {
                        self.shared.lock().closed = true;
                    }
                }
            }
        }
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Read_::Plain(rd) => Pin::new(rd).poll_read(cx, buf),
            Read_::Tls(tls) => tls.poll_read(cx, buf),
        }
    }
}

impl WriteHalf {
    /// Writes from the front of `buf` what the socket takes without
    /// blocking; `Ok(true)` once everything is sent (`buf` is empty and, with
    /// TLS, no encrypted record is left inside the session), `Ok(false)` if
    /// the socket is full: await [`WriteHalf::writable`] and call again
    /// (with `buf` empty, that sends what the session holds).
    pub fn write_buf(&self, buf: &mut BytesMut) -> io::Result<bool> {
        match &self.0 {
            Write_::Plain(wr) => {
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
            Write_::Tls(tls) => tls.write_buf(buf),
        }
    }

    /// Writes all of `bytes`, awaiting the socket when it is full.
    pub async fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let mut buf = BytesMut::from(bytes);
        while !self.write_buf(&mut buf)? {
            self.writable().await?;
        }
        Ok(())
    }

    /// Completes once the socket may take bytes again.
    pub async fn writable(&self) -> io::Result<()> {
        match &self.0 {
            Write_::Plain(wr) => wr.writable().await,
            Write_::Tls(tls) => tls.wr.writable().await,
        }
    }

    /// The TCP socket's descriptor (for `poll`, `peek` and socket options).
    pub fn raw_fd(&self) -> RawFd {
        match &self.0 {
            Write_::Plain(wr) => wr.as_ref().as_raw_fd(),
            Write_::Tls(tls) => tls.wr.as_ref().as_raw_fd(),
        }
    }

    /// True if the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.0, Write_::Tls(_))
    }
}

impl From<OwnedWriteHalf> for WriteHalf {
    fn from(wr: OwnedWriteHalf) -> WriteHalf {
        WriteHalf(Write_::Plain(wr))
    }
}
