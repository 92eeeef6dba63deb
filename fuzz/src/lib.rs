//! What the fuzz targets in `fuzz_targets/` check; each target is a one-line
//! call into a module here.
//!
//! * [`codec`]: a byte stream through the frame reader and the codec.
//! * [`roundtrip`]: typed packets through the encoder and back.
//! * [`admin`]: the admin text protocol, both sides.
//! * [`server`]: the server's state under several simulated connections.

pub mod admin;
pub mod codec;
pub mod roundtrip;
pub mod server;

/// A header and `fields` joined by NULs, written by hand (not by polygear's
/// encoder, which refuses a NUL inside a field: here it is a way to send a
/// payload that splits differently).
pub fn raw_packet(magic: &[u8; 4], code: u32, fields: &[&[u8]]) -> Vec<u8> {
    let len: usize = fields.iter().map(|f| f.len()).sum::<usize>() + fields.len().saturating_sub(1);
    let mut v = Vec::with_capacity(12 + len);
    v.extend_from_slice(magic);
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(&(len as u32).to_be_bytes());
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            v.push(0);
        }
        v.extend_from_slice(f);
    }
    v
}

/// Splits `payload` into at most `n` fields at NULs, the last keeping the
/// rest (written independently of the decoder, to check it).
pub fn split_fields(payload: &[u8], n: usize) -> Vec<&[u8]> {
    if n == 0 {
        return Vec::new();
    }
    payload.splitn(n, |&b| b == 0).collect()
}
