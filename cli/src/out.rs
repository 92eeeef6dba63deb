//! Raw output to stdout/stderr: each chunk (with its optional prefix) is
//! written in one locked write, so concurrent jobs never interleave mid-chunk.

use std::io::{self, Write};

/// Which stream to write to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Out,
    /// Standard error.
    Err,
}

/// Writes `prefix` (if any) then `data`, raw, and flushes. If stdout is
/// closed (`polygear … | head -1`) the process ends quietly with 141, as
/// a C tool killed by SIGPIPE would.
pub fn write(stream: Stream, prefix: Option<&str>, data: &[u8]) {
    let mut buf;
    let bytes = match prefix {
        Some(p) => {
            buf = Vec::with_capacity(p.len() + 2 + data.len());
            buf.extend_from_slice(p.as_bytes());
            buf.extend_from_slice(b": ");
            buf.extend_from_slice(data);
            &buf[..]
        }
        None => data,
    };
    let res = match stream {
        Stream::Out => {
            let mut o = io::stdout().lock();
            o.write_all(bytes).and_then(|_| o.flush())
        }
        Stream::Err => {
            let mut e = io::stderr().lock();
            e.write_all(bytes).and_then(|_| e.flush())
        }
    };
    if let Err(e) = res {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
    }
}
