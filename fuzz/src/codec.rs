//! `codec_request` / `codec_response`: arbitrary bytes as a connection's
//! stream, cut into frames three ways that must agree:
//!
//! 1. through `polygear::frame::FrameReader` (the reader every client,
//!    worker and the server use), reading the stream in random chunks;
//! 2. through `PacketCodec::decode_raw_frame` + `Packet::decode` (the
//!    server's path) on a buffer fed the same chunks, checking after every
//!    call that buffering stays bounded by the configured limits and that
//!    every frame is exactly the bytes it was cut from;
//! 3. through `PacketCodec::decode_frame` on the whole stream at once.
//!
//! Input: byte 0 picks the limits, byte 1 seeds the chunk sizes, the rest
//! is the stream. `codec_request` uses the server's codec (`\0REQ` packets
//! and admin text lines), `codec_response` a client's (`\0RES` packets, no
//! text); both accept either magic, as the codec does.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use polygear::frame::FrameReader;
use polygear::protocol::{
    Frame, Magic, Packet, PacketCodec, PacketType, ProtocolError, RawFrame, DEFAULT_MAX_PACKET,
    HEADER_LEN,
};
use tokio::io::{AsyncRead, ReadBuf};

use crate::split_fields;

/// How far ahead of the received bytes the codec may reserve (its
/// `RESERVE_STEP`).
const RESERVE_STEP: usize = 1 << 20;

/// The frames of a stream and how it ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    /// The error that ended the stream, if any.
    error: Option<ProtocolError>,
}

/// Runs the three decoders on `data` (see the module doc).
pub fn check(data: &[u8], server: bool) {
    let [cfg, seed, stream @ ..] = data else {
        return;
    };
    let max_packet = [0, 1, 12, 100, 4096, DEFAULT_MAX_PACKET][*cfg as usize % 6];
    let max_line = [0, 1, 8, 64, 4096][(*cfg as usize / 6) % 5];
    let codec = || {
        if server {
            PacketCodec::server(max_packet, max_line)
        } else {
            PacketCodec::new(max_packet)
        }
    };
    let chunks = chunks(stream, *seed);

    let (whole, leftover) = decode_whole(codec(), stream);
    let chunked = decode_chunked(codec(), &chunks, stream);
    assert_eq!(
        chunked.0, whole,
        "chunked decoding differs from decoding the whole stream"
    );
    if whole.error.is_none() {
        // (After an error, what was buffered depends on the chunks.)
        assert_eq!(chunked.1, leftover, "bytes left over differ");
    }
    let read = read_frames(codec(), &chunks);
    assert_eq!(
        read, whole,
        "FrameReader differs from decoding the whole stream"
    );
}

/// Cuts `stream` into chunks whose sizes come from `seed`.
fn chunks(stream: &[u8], seed: u8) -> Vec<&[u8]> {
    let max = [1usize, 2, 5, 16, 64, 1024, 1 << 16][seed as usize % 7];
    let mut rng = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let n = (1 + rng as usize % max).min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

/// Decodes the whole stream from one buffer; also returns the bytes left
/// over (an incomplete frame at the end).
fn decode_whole(mut codec: PacketCodec, stream: &[u8]) -> (Outcome, usize) {
    let mut buf = BytesMut::from(stream);
    let mut frames = Vec::new();
    loop {
        match codec.decode_frame(&mut buf) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => {
                return (
                    Outcome {
                        frames,
                        error: None,
                    },
                    buf.len(),
                )
            }
            Err(error) => {
                let error = Some(error);
                return (Outcome { frames, error }, buf.len());
            }
        }
    }
}

/// Feeds `chunks` one by one, decoding with the server's two-step path and
/// checking each result against the bytes it came from.
fn decode_chunked(mut codec: PacketCodec, chunks: &[&[u8]], stream: &[u8]) -> (Outcome, usize) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    // Bytes of `stream` fed to `buf`, and consumed from it as frames.
    let (mut fed, mut consumed) = (0, 0);
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            let before = buf.len();
            let cap_before = buf.capacity();
            let r = codec.decode_raw_frame(&mut buf);
            let used = before - buf.len();
            let original = &stream[consumed..consumed + used];
            consumed += used;
            match r {
                Ok(Some(RawFrame::Packet(magic, kind, payload))) => {
                    assert_eq!(
                        &payload[..],
                        &original[HEADER_LEN..],
                        "payload is not the bytes read"
                    );
                    check_header(magic, kind, original);
                    match Packet::decode(kind, payload) {
                        Ok(p) => {
                            check_reencode(magic, &p, original);
                            frames.push(Frame::Packet(magic, p));
                        }
                        Err(e) => {
                            check_error(&e, &codec);
                            return (
                                Outcome {
                                    frames,
                                    error: Some(e),
                                },
                                buf.len(),
                            );
                        }
                    }
                }
                Ok(Some(RawFrame::Text(line))) => {
                    check_line(&line, original, &codec);
                    frames.push(Frame::Text(line));
                }
                Ok(None) => {
                    assert_eq!(used, 0, "Ok(None) consumed {used} bytes");
                    check_bounded(&buf, cap_before, fed, &codec);
                    break;
                }
                Err(e) => {
                    check_error(&e, &codec);
                    return (
                        Outcome {
                            frames,
                            error: Some(e),
                        },
                        buf.len(),
                    );
                }
            }
        }
    }
    (
        Outcome {
            frames,
            error: None,
        },
        buf.len(),
    )
}

/// After `Ok(None)`: what is buffered is less than one frame within the
/// limits, and the decoder reserved at most one step (and never more than a
/// packet of the maximum size) ahead of what was received.
fn check_bounded(buf: &BytesMut, cap_before: usize, fed: usize, codec: &PacketCodec) {
    let text = codec.accepts_text() && buf.first().is_some_and(|&b| b != 0);
    if text {
        assert!(
            buf.len() <= codec.max_line() + 1,
            "{} bytes of a text line buffered, limit {}",
            buf.len(),
            codec.max_line()
        );
    } else {
        assert!(
            buf.len() < HEADER_LEN + codec.max_packet(),
            "{} bytes of a packet buffered, limit {}",
            buf.len(),
            codec.max_packet()
        );
    }
    let ahead = (HEADER_LEN + codec.max_packet()).min(RESERVE_STEP);
    let bound = cap_before.max(2 * (fed + ahead) + 4096);
    assert!(
        buf.capacity() <= bound,
        "buffer capacity {} after {fed} bytes received (max packet {})",
        buf.capacity(),
        codec.max_packet()
    );
}

fn check_header(magic: Magic, kind: PacketType, original: &[u8]) {
    assert_eq!(&original[..4], &magic.bytes()[..]);
    let code = u32::from_be_bytes([original[4], original[5], original[6], original[7]]);
    assert_eq!(code, kind as u32);
    let size = u32::from_be_bytes([original[8], original[9], original[10], original[11]]);
    assert_eq!(size as usize, original.len() - HEADER_LEN);
}

/// An error is the one the stream and the limits call for.
fn check_error(e: &ProtocolError, codec: &PacketCodec) {
    match e {
        ProtocolError::BadMagic(m) => assert!(Magic::from_bytes(m).is_none(), "{e}"),
        ProtocolError::UnknownType(t) => assert!(PacketType::from_code(*t).is_none(), "{e}"),
        ProtocolError::PayloadTooLarge { size, limit } => {
            assert_eq!(*limit, codec.max_packet() as u64, "{e}");
            assert!(size > limit, "{e}");
        }
        ProtocolError::LineTooLong { limit } => {
            assert!(codec.accepts_text(), "a client codec read a text line");
            assert_eq!(*limit, codec.max_line());
        }
        ProtocolError::MissingArguments { .. } | ProtocolError::BadNumber { .. } => {}
        other => panic!("unexpected decoding error {other:?}"),
    }
}

/// A text line is the bytes read without their `\n` or `\r\n`.
fn check_line(line: &[u8], original: &[u8], codec: &PacketCodec) {
    assert!(codec.accepts_text(), "a client codec returned a text line");
    assert_ne!(original.first(), Some(&0), "a line starting with a NUL");
    assert_eq!(original.last(), Some(&b'\n'));
    let body = &original[..original.len() - 1];
    assert!(!body.contains(&b'\n'), "a line with a newline inside");
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    assert_eq!(line, body);
    assert!(line.len() <= codec.max_line(), "a line over the limit");
}

/// Types whose numeric fields are parsed (leniently) and re-encoded in
/// canonical decimal: those fields may differ from the bytes read, e.g.
/// `" 7x"` → 7 → `"7"`. Their indexes, per type.
fn numeric_fields(kind: PacketType) -> &'static [usize] {
    match kind {
        PacketType::StatusRes => &[1, 2, 3, 4],
        PacketType::StatusResUnique => &[1, 2, 3, 4, 5],
        PacketType::CanDoTimeout => &[1],
        PacketType::SubmitJobEpoch => &[2],
        PacketType::SubmitRetain => &[0],
        _ => &[],
    }
}

/// A decoded packet encodes back to the bytes it was read from, apart from
/// these legitimate normalisations:
/// - a type without fields ignores its payload (it re-encodes empty);
/// - WORK_FAIL, GET_STATUS, GET_RESULT and OPTION_REQ drop one trailing NUL of their
///   one field (peers terminate handles and names with one);
/// - numeric fields ([`numeric_fields`]) re-encode canonically; the
///   canonical form then decodes to the same packet.
fn check_reencode(magic: Magic, p: &Packet, original: &[u8]) {
    let kind = p.packet_type();
    let enc = p
        .to_bytes(magic)
        .unwrap_or_else(|e| panic!("decoded packet {p:?} does not encode: {e}"));
    assert_eq!(
        &enc[..8],
        &original[..8],
        "magic/type differ after re-encoding {p:?}"
    );
    assert_eq!(enc.len(), HEADER_LEN + p.payload_len());
    let (argc, data) = kind.layout();
    let n = if data { argc + 1 } else { argc };
    let (got, want) = (&enc[HEADER_LEN..], &original[HEADER_LEN..]);
    if n == 0 {
        assert!(got.is_empty(), "{kind:?} re-encoded with a payload");
        return;
    }
    let (gf, wf) = (split_fields(got, n), split_fields(want, n));
    assert_eq!(
        wf.len(),
        n,
        "{kind:?} decoded from a payload without its separators"
    );
    assert_eq!(gf.len(), n, "{kind:?} re-encoded without its separators");
    let strips_nul = matches!(
        kind,
        PacketType::WorkFail
            | PacketType::GetStatus
            | PacketType::GetResult
            | PacketType::OptionReq
    );
    for i in 0..n {
        if numeric_fields(kind).contains(&i) {
            continue;
        }
        if strips_nul && wf[i].last() == Some(&0) {
            assert_eq!(gf[i], &wf[i][..wf[i].len() - 1], "{kind:?} field {i}");
        } else {
            assert_eq!(gf[i], wf[i], "{kind:?} field {i} re-encoded differently");
        }
    }
    if !numeric_fields(kind).is_empty() {
        let again = Packet::decode(kind, bytes::Bytes::copy_from_slice(got));
        assert_eq!(
            again.as_ref(),
            Ok(p),
            "canonical {kind:?} decodes differently"
        );
    }
}

/// A reader that hands out the chunks one per read.
struct Chunks<'a> {
    chunks: Vec<&'a [u8]>,
    next: usize,
}

impl AsyncRead for Chunks<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let i = self.next;
        if let Some(c) = self.chunks.get(i).copied() {
            let n = c.len().min(buf.remaining());
            buf.put_slice(&c[..n]);
            if n < c.len() {
                self.chunks[i] = &c[n..];
            } else {
                self.next += 1;
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The frames `FrameReader` cuts from the chunks, reading until the end.
fn read_frames(codec: PacketCodec, chunks: &[&[u8]]) -> Outcome {
    let rd = Chunks {
        chunks: chunks.to_vec(),
        next: 0,
    };
    let mut reader = FrameReader::new(rd, codec);
    let mut frames = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        loop {
            match reader.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(error) => {
                    let error = Some(error);
                    return Outcome { frames, error };
                }
            }
        }
        let mut fill = std::pin::pin!(reader.fill());
        match fill.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(0)) => {
                return Outcome {
                    frames,
                    error: None,
                }
            }
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => panic!("in-memory read failed: {e}"),
            Poll::Pending => panic!("in-memory read pending"),
        }
    }
}
