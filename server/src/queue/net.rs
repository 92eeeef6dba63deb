//! What the network stores share: a connection with timeouts and the parse
//! of gearmand's key layout (Redis, memcached), and the reconnect gate
//! ([`Backoff`], every store).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::StoreError;

/// Longest wait for a TCP connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for one read or write on an open connection.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait before a reconnect; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between reconnects.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A buffered TCP connection with connect, read and write timeouts.
pub(crate) struct Conn {
    pub reader: BufReader<TcpStream>,
    pub out: Vec<u8>,
}

impl Conn {
    /// Connects to `host:port` (each resolved address in turn).
    pub(crate) fn open(host: &str, port: u16) -> io::Result<Conn> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in (host, port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    s.set_read_timeout(Some(IO_TIMEOUT))?;
                    s.set_write_timeout(Some(IO_TIMEOUT))?;
                    s.set_nodelay(true)?;
                    return Ok(Conn {
                        reader: BufReader::with_capacity(64 * 1024, s),
                        out: Vec::new(),
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Sends everything queued in `out`.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        let r = self.reader.get_mut().write_all(&self.out);
        self.out.clear();
        r
    }

    /// One line without its `\r\n` (at most `max` bytes).
    pub(crate) fn line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut buf = self.lf_line(max)?;
        if buf.pop() != Some(b'\r') {
            return Err(invalid("line not terminated by CRLF"));
        }
        Ok(buf)
    }

    /// One line without its `\n` or `\r\n` (memcached's `metadump` ends
    /// its lines with `\n` alone).
    pub(crate) fn any_line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut buf = self.lf_line(max)?;
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        Ok(buf)
    }

    /// One line up to its `\n` (excluded).
    fn lf_line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(max as u64 + 2)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if buf.pop() != Some(b'\n') {
            return Err(invalid("line too long"));
        }
        Ok(buf)
    }

    /// Exactly `n` bytes followed by `\r\n`.
    pub(crate) fn block(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; n + 2];
        self.reader.read_exact(&mut buf)?;
        if !buf.ends_with(b"\r\n") {
            return Err(invalid("data block not terminated by CRLF"));
        }
        buf.truncate(n);
        Ok(buf)
    }
}

/// An `InvalidData` I/O error (a reply that breaks the protocol).
pub(crate) fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// When the next connect may be tried: 100 ms after a failure, doubling up
/// to 5 s while the server stays unreachable.
pub(crate) struct Backoff {
    next_try: Option<Instant>,
    delays: polygear::backoff::Backoff,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff {
            next_try: None,
            delays: polygear::backoff::Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
        }
    }

    /// `Err` with how long is left while a connect must not be tried yet.
    pub(crate) fn check(&self) -> Result<(), Duration> {
        match self.next_try {
            Some(t) if Instant::now() < t => Err(t - Instant::now()),
            _ => Ok(()),
        }
    }

    /// A connect (or the connection) failed: wait before the next one.
    pub(crate) fn failed(&mut self) {
        self.next_try = Some(Instant::now() + self.delays.next_delay());
    }

    /// A connect succeeded.
    pub(crate) fn reset(&mut self) {
        self.next_try = None;
        self.delays.reset();
    }
}

/// One server's connection, opened on demand: after a failure the next
/// connect waits for the [`Backoff`].
pub(crate) struct Link {
    /// `redis at HOST:PORT` and the like, for messages.
    pub what: String,
    host: String,
    port: u16,
    conn: Option<Conn>,
    backoff: Backoff,
}

impl Link {
    pub(crate) fn new(kind: &str, host: &str, port: u16) -> Link {
        Link {
            what: format!("{kind} at {host}:{port}"),
            host: host.to_string(),
            port,
            conn: None,
            backoff: Backoff::new(),
        }
    }

    /// The open connection, connecting first if there is none (and the
    /// backoff allows it); `setup` runs on a new connection (e.g. AUTH).
    pub(crate) fn conn(
        &mut self,
        setup: impl FnOnce(&mut Conn) -> Result<(), StoreError>,
    ) -> Result<&mut Conn, StoreError> {
        if self.conn.is_none() {
            if let Err(left) = self.backoff.check() {
                return Err(unavailable(
                    &self.what,
                    format!("unreachable; next connect in {left:?}"),
                ));
            }
            let opened = Conn::open(&self.host, self.port)
                .map_err(|e| unavailable(&self.what, e))
                .and_then(|mut c| setup(&mut c).map(|()| c));
            match opened {
                Ok(c) => {
                    self.backoff.reset();
                    self.conn = Some(c);
                }
                Err(e) => {
                    self.backoff.failed();
                    return Err(e);
                }
            }
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Sends what `write` queues and reads the answer with `read`; an I/O
    /// error drops the connection (reopened on a later call after the
    /// backoff) and is [`StoreError::Unavailable`].
    pub(crate) fn exchange<T>(
        &mut self,
        setup: impl FnOnce(&mut Conn) -> Result<(), StoreError>,
        write: impl FnOnce(&mut Vec<u8>),
        read: impl FnOnce(&mut Conn) -> io::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = self.conn(setup)?;
        write(&mut conn.out);
        match conn.flush().and_then(|()| read(conn)) {
            Ok(r) => Ok(r),
            Err(e) => {
                self.drop_conn();
                Err(unavailable(&self.what, e))
            }
        }
    }

    /// Forgets the connection (it is out of step or broken).
    pub(crate) fn drop_conn(&mut self) {
        self.conn = None;
        self.backoff.failed();
    }
}

/// A store error for a failed connection to `what`.
pub(crate) fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {e}"))
}

/// Splits `<function>-<unique>` as gearmand writes it in a key (without the
/// prefix), for keys that do not name both explicitly.
///
/// The split is ambiguous when the function name contains `-`; gearmand
/// itself splits at the first `-` (its issue #159), which breaks such
/// functions. The rule here: if the key ends in `-` and a UUID in its
/// textual form (8-4-4-4-12 hex digits, what libgearman generates for a
/// background job submitted without a unique), the UUID is the unique and
/// everything before it the function; if it ends in `-`, the unique is empty
/// (gearmand's key for a job submitted without a unique by a client other
/// than libgearman) and everything before it the function; otherwise the
/// split is at the first `-` as in gearmand (right for any unique when the
/// function has no `-`).
pub(crate) fn split_function_unique(rest: &[u8]) -> Option<(&[u8], &[u8])> {
    if let Some(f) = rest.strip_suffix(b"-") {
        return Some((f, b""));
    }
    if rest.len() > 37 {
        let (f, u) = rest.split_at(rest.len() - 36);
        if f.ends_with(b"-") && is_uuid(u) {
            return Some((&f[..f.len() - 1], u));
        }
    }
    let dash = rest.iter().position(|&b| b == b'-')?;
    Some((&rest[..dash], &rest[dash + 1..]))
}

/// Whether `s` is a UUID in its textual 8-4-4-4-12 hex form.
fn is_uuid(s: &[u8]) -> bool {
    s.len() == 36
        && s.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_uuid_uniques_after_dashed_functions() {
        let u = b"22c3984a-f210-11f1-81d9-02fc00000001";
        let key = [b"resize-image-".as_slice(), u].concat();
        assert_eq!(
            split_function_unique(&key),
            Some((b"resize-image".as_slice(), u.as_slice()))
        );
        let key = [b"f-".as_slice(), u].concat();
        assert_eq!(
            split_function_unique(&key),
            Some((b"f".as_slice(), u.as_slice()))
        );
    }

    #[test]
    fn splits_other_uniques_at_the_first_dash() {
        assert_eq!(
            split_function_unique(b"f-job-1"),
            Some((b"f".as_slice(), b"job-1".as_slice()))
        );
        assert_eq!(split_function_unique(b"nodash"), None);
    }

    #[test]
    fn a_trailing_dash_is_an_empty_unique() {
        assert_eq!(
            split_function_unique(b"f-"),
            Some((b"f".as_slice(), b"".as_slice()))
        );
        assert_eq!(
            split_function_unique(b"my-func-"),
            Some((b"my-func".as_slice(), b"".as_slice()))
        );
    }

    #[test]
    fn no_connect_while_backing_off_and_at_once_after_a_success() {
        let mut b = Backoff::new();
        assert!(b.check().is_ok());
        b.failed();
        let first = b.check().unwrap_err();
        assert!(first <= BACKOFF_MIN);
        for _ in 0..10 {
            b.failed();
        }
        let long = b.check().unwrap_err();
        assert!(long > BACKOFF_MAX / 2 && long <= BACKOFF_MAX);
        b.reset();
        assert!(b.check().is_ok());
    }
}
