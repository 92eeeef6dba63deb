//! Argument checks, generated unique keys and SUBMIT encoding.
//!
//! Everything here is pure (no I/O, no shared state): it runs before a
//! request is queued, so an invalid call fails without touching a server,
//! and it is tested on its own. Kept apart from `mod.rs` (the API) and
//! `conn.rs` (the wire) because both only call into it.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;

use crate::error::{Error, Result};
use crate::protocol::{encode_packet, Magic, PacketType, ProtocolError};

/// Longest unique key accepted (gearmand stores 63 bytes plus a NUL).
const MAX_UNIQUE: usize = 63;
/// Longest job handle gearmand accepts in GET_STATUS.
const MAX_HANDLE: usize = 63;

pub(super) fn check_unique(unique: &[u8]) -> Result<()> {
    if unique.len() > MAX_UNIQUE {
        return Err(Error::InvalidArgument(format!(
            "unique key is {} bytes, at most {MAX_UNIQUE} allowed",
            unique.len()
        )));
    }
    if unique.contains(&0) {
        return Err(Error::InvalidArgument(
            "unique key contains a NUL byte".into(),
        ));
    }
    Ok(())
}

pub(super) fn check_submit(
    function: &str,
    unique: &[u8],
    data_len: usize,
    extra: usize,
) -> Result<()> {
    if function.is_empty() {
        return Err(Error::InvalidArgument("empty function name".into()));
    }
    if function.as_bytes().contains(&0) {
        return Err(Error::InvalidArgument(
            "function name contains a NUL byte".into(),
        ));
    }
    check_unique(unique)?;
    let size = function.len() + unique.len() + 2 + extra + data_len;
    if size > u32::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "job of {size} bytes exceeds the 4 GiB packet limit"
        )));
    }
    Ok(())
}

/// A job timeout (`what` names it in the error): `None` (none) or more than zero.
pub(super) fn check_timeout(what: &str, timeout: Option<Duration>) -> Result<()> {
    if timeout == Some(Duration::ZERO) {
        return Err(Error::InvalidArgument(format!(
            "{what} must be greater than zero"
        )));
    }
    Ok(())
}

/// A job handle as GET_STATUS accepts it.
pub(super) fn check_handle(handle: &str) -> Result<()> {
    if handle.len() > MAX_HANDLE || handle.as_bytes().contains(&0) {
        return Err(Error::InvalidArgument(format!(
            "job handle must be at most {MAX_HANDLE} bytes without NUL"
        )));
    }
    Ok(())
}

/// Writes a SUBMIT_* packet (SUBMIT_JOB_EPOCH with `epoch`) straight into
/// the connection's write buffer, without copying the fields into a
/// [`Packet`](crate::protocol::Packet) first. Cannot fail for arguments
/// [`check_submit`] accepted.
pub(super) fn encode_submit(
    buf: &mut BytesMut,
    kind: PacketType,
    function: &[u8],
    unique: &[u8],
    epoch: Option<&[u8]>,
    data: &[u8],
) -> Result<(), ProtocolError> {
    match epoch {
        Some(e) => encode_packet(buf, Magic::Req, kind, &[function, unique, e, data]),
        None => encode_packet(buf, Magic::Req, kind, &[function, unique, data]),
    }
}

/// A random RFC 4122 version-4 style UUID in its 36-character text form.
pub(super) fn generate_unique() -> [u8; 36] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // RandomState is keyed with per-process random secrets.
    let state = std::collections::hash_map::RandomState::new();
    let mut h = state.build_hasher();
    h.write_u64(count);
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    let a = h.finish();
    let mut h = state.build_hasher();
    h.write_u64(a);
    h.write_u64(count.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15);
    let b = h.finish();
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&a.to_be_bytes());
    raw[8..].copy_from_slice(&b.to_be_bytes());
    raw[6] = (raw[6] & 0x0f) | 0x40;
    raw[8] = (raw[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 36];
    let mut o = 0;
    for (i, byte) in raw.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            o += 1;
        }
        out[o] = HEX[(byte >> 4) as usize];
        out[o + 1] = HEX[(byte & 0xf) as usize];
        o += 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Packet, Priority};
    use bytes::Bytes;

    #[test]
    fn generated_unique_looks_like_a_uuid() {
        let a = generate_unique();
        let b = generate_unique();
        assert_ne!(a, b);
        let s = std::str::from_utf8(&a).unwrap();
        assert_eq!(s.len(), 36);
        let parts: Vec<_> = s.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12]);
        assert_eq!(&s[14..15], "4");
        assert!(s.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }

    #[test]
    fn submit_encoding_matches_the_packet_codec() {
        let mut buf = BytesMut::new();
        encode_submit(
            &mut buf,
            PacketType::SubmitJobHigh,
            b"f",
            b"u",
            None,
            b"d\0x",
        )
        .unwrap();
        let expected = Packet::SubmitJob {
            function: Bytes::from_static(b"f"),
            unique: Bytes::from_static(b"u"),
            data: Bytes::from_static(b"d\0x"),
            priority: Priority::High,
            background: false,
        }
        .to_bytes(Magic::Req)
        .unwrap();
        assert_eq!(&buf[..], &expected[..]);
        let mut buf = BytesMut::new();
        encode_submit(
            &mut buf,
            PacketType::SubmitJobEpoch,
            b"f",
            b"u",
            Some(b"123"),
            b"d",
        )
        .unwrap();
        let expected = Packet::SubmitJobEpoch {
            function: Bytes::from_static(b"f"),
            unique: Bytes::from_static(b"u"),
            when: 123,
            data: Bytes::from_static(b"d"),
        }
        .to_bytes(Magic::Req)
        .unwrap();
        assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn accepted_arguments_always_encode() {
        // What check_submit lets through, encode_submit can write.
        assert!(check_submit("f", b"u", 1, 0).is_ok());
        let mut buf = BytesMut::new();
        assert!(encode_submit(&mut buf, PacketType::SubmitJob, b"f", b"u", None, b"\0").is_ok());
    }

    #[test]
    fn invalid_arguments_are_rejected() {
        assert!(check_submit("f\0", b"", 0, 0).is_err());
        assert!(matches!(
            check_submit("", b"", 0, 0),
            Err(Error::InvalidArgument(m)) if m == "empty function name"
        ));
        assert!(matches!(
            check_timeout("timeout", Some(Duration::ZERO)),
            Err(Error::InvalidArgument(m)) if m == "timeout must be greater than zero"
        ));
        assert!(check_timeout("timeout", Some(Duration::from_nanos(1))).is_ok());
        assert!(check_timeout("timeout", None).is_ok());
        assert!(check_unique(&[b'a'; 63]).is_ok());
        assert!(matches!(
            check_unique(&[b'a'; 64]),
            Err(Error::InvalidArgument(_))
        ));
    }
}
