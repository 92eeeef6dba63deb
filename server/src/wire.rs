//! The packets the server sends, through polygear's one encoder, and its job handles.

use bytes::BytesMut;
use polygear::protocol::{encode_packet, Decimal, Magic, PacketType};

/// Appends a `\0RES` packet whose payload is `fields` joined by NULs.
///
/// The encoder refuses a NUL in a field before the last, and a payload over
/// 4 GiB-1. The fields before the last are the server's own (handles,
/// numbers, error codes), arrived NUL-separated (function names, unique keys,
/// WORK_STATUS numerators) or were cut at their first NUL (GET_STATUS); a
/// payload that large needs a packet limit within bytes of its 4 GiB-1
/// maximum and a job of that size. So this cannot fail; if it did, the reply
/// is logged as an error instead of being sent with a size field that wrapped.
pub(crate) fn put_pkt(b: &mut BytesMut, kind: PacketType, fields: &[&[u8]]) {
    let r = encode_packet(b, Magic::Res, kind, fields);
    debug_assert!(r.is_ok(), "unencodable {} reply: {r:?}", kind.name());
    if let Err(e) = r {
        tracing::error!("{} reply not sent: {e}", kind.name());
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
        let n = Decimal::from(n);
        let d = n.as_bytes();
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
