//! Small allocation-free encoders for the packets the server sends.

use bytes::{BufMut, BytesMut};
use polygear::protocol::PacketType;

/// Appends a `\0RES` packet whose payload is `fields` joined by NULs.
pub(crate) fn put_pkt(b: &mut BytesMut, kind: PacketType, fields: &[&[u8]]) {
    let len = if fields.is_empty() {
        0
    } else {
        fields.iter().map(|f| f.len()).sum::<usize>() + fields.len() - 1
    };
    b.reserve(12 + len);
    b.put_slice(b"\0RES");
    b.put_u32(kind as u32);
    b.put_u32(len as u32);
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            b.put_u8(0);
        }
        b.put_slice(f);
    }
}

/// Appends an `ERROR code\0text` packet.
pub(crate) fn put_error(b: &mut BytesMut, code: &str, text: &str) {
    put_pkt(b, PacketType::Error, &[code.as_bytes(), text.as_bytes()]);
}

/// A job handle formatted on the stack: `<prefix>:<n>`.
pub(crate) struct HandleBuf {
    buf: [u8; 64],
    len: usize,
}

impl HandleBuf {
    /// Formats `prefix:n`; `prefix` must be at most 42 bytes (checked at startup).
    pub(crate) fn new(prefix: &[u8], n: u64) -> HandleBuf {
        let mut buf = [0u8; 64];
        let p = prefix.len().min(42);
        buf[..p].copy_from_slice(&prefix[..p]);
        buf[p] = b':';
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let d = &digits[i..];
        buf[p + 1..p + 1 + d.len()].copy_from_slice(d);
        HandleBuf {
            buf,
            len: p + 1 + d.len(),
        }
    }
}

impl std::ops::Deref for HandleBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Parses a handle produced by [`HandleBuf::new`] with the same prefix.
pub(crate) fn parse_handle(prefix: &[u8], h: &[u8]) -> Option<u64> {
    let rest = h.strip_prefix(prefix)?.strip_prefix(b":")?;
    if rest.is_empty() || rest.len() > 19 || (rest[0] == b'0' && rest.len() > 1) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in rest {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u64;
    }
    Some(v)
}

/// The bytes before the first NUL, as gearmand's `%.*s` reads a name or handle.
pub(crate) fn until_nul(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

/// Appends the decimal form of `v`.
pub(crate) fn put_dec(b: &mut BytesMut, v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = v;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    b.put_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_roundtrip() {
        let h = HandleBuf::new(b"H:vm", 1234);
        assert_eq!(&*h, b"H:vm:1234");
        assert_eq!(parse_handle(b"H:vm", &h), Some(1234));
        assert_eq!(parse_handle(b"H:vm", b"H:vm:01"), None);
        assert_eq!(parse_handle(b"H:vm", b"H:xx:1"), None);
        assert_eq!(parse_handle(b"H:vm", b"H:vm:"), None);
    }
}
