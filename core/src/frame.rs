//! The read side of a connection: one read buffer with one growth policy,
//! turned into [`Frame`]s by the codec (or into text lines for the admin
//! client).
//!
//! The client's reader task (`client/conn.rs`), the worker's session loop
//! (`worker/grab.rs`), the [`Admin`](crate::Admin) client and the server's
//! connection task (polygear-server's `conn.rs`) each read a socket into a
//! buffer and cut it into packets or lines; [`FrameReader`] is that, written
//! once, in the spirit of mini-redis' `Connection`: the buffer, how it grows
//! and shrinks, and the packet-size limit (checked by the [`PacketCodec`]
//! from the 12-byte header, before any of a huge body is buffered) live
//! here, while what a packet *means* stays with the caller.
//!
//! Reading ([`FrameReader::fill`]) and decoding ([`FrameReader::next_frame`])
//! are separate steps, because the callers interleave them differently: the
//! client decodes everything one read brought under one lock acquisition,
//! the worker reads inside a `select!` with other events (so `fill` is
//! cancel-safe), the server decodes up to a batch of requests per
//! acquisition of its state lock. It is generic over [`AsyncRead`] and hands
//! out frames with their magic; a server reads `\0REQ` packets and admin
//! text lines with [`PacketCodec::server`], and with
//! [`FrameReader::next_raw_frame`] can answer a packet it does not accept
//! from its header alone, without splitting the payload into fields.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::protocol::{Frame, Packet, PacketCodec, ProtocolError, RawFrame};
use crate::util::release_if_larger;

/// Capacity of a new read buffer, and the smallest growth step.
const INITIAL_CAPACITY: usize = 16 << 10;
/// A read needs at least this much free space; with less the buffer grows.
const MIN_SPARE: usize = 4 << 10;
/// The largest growth step. (The body of a large packet is reserved by the
/// codec, at most 1 MiB ahead of the bytes received.)
const MAX_STEP: usize = 4 << 20;
/// An emptied buffer whose allocation is larger than this is replaced by a
/// new small one.
const KEEP_CAPACITY: usize = 1 << 20;

/// One line read by [`FrameReader::read_line`].
#[derive(Debug)]
pub(crate) enum Line {
    /// The line, including its `\n`.
    Complete(BytesMut),
    /// More than the limit arrived without a `\n`.
    TooLong,
    /// The peer closed the connection before a complete line.
    Eof,
}

/// A read half, its buffer and the codec that cuts it into frames.
#[derive(Debug)]
pub struct FrameReader<R> {
    rd: R,
    buf: BytesMut,
    codec: PacketCodec,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads from `rd`, decoding with `codec` (its limits apply).
    pub fn new(rd: R, codec: PacketCodec) -> FrameReader<R> {
        FrameReader {
            rd,
            buf: BytesMut::with_capacity(INITIAL_CAPACITY),
            codec,
        }
    }

    /// Bytes the read buffer holds allocated (for memory accounting).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The underlying stream (e.g. to write a request on it).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.rd
    }

    /// Decodes the next frame from the bytes already read: `Ok(None)` if
    /// more are needed. An error (bad magic, oversized packet, …) leaves the
    /// stream unusable.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        self.codec.decode_frame(&mut self.buf)
    }

    /// [`FrameReader::next_frame`] with the payload not yet split into
    /// fields (see [`PacketCodec::decode_raw_frame`]).
    pub fn next_raw_frame(&mut self) -> Result<Option<RawFrame>, ProtocolError> {
        self.codec.decode_raw_frame(&mut self.buf)
    }

    /// [`FrameReader::next_frame`] for a client or worker: the next packet,
    /// whatever its magic (admin text lines, only decoded in server mode,
    /// are skipped).
    pub fn next_packet(&mut self) -> Result<Option<Packet>, ProtocolError> {
        loop {
            match self.next_frame()? {
                Some(Frame::Packet(_, p)) => return Ok(Some(p)),
                Some(Frame::Text(_)) => {}
                None => return Ok(None),
            }
        }
    }

    /// Reads what the socket has into the buffer, making room first (the
    /// one growth policy): `Ok(0)` at end of stream. Cancel-safe: dropped
    /// before it completes, it has read nothing.
    pub async fn fill(&mut self) -> io::Result<usize> {
        self.make_room();
        self.rd.read_buf(&mut self.buf).await
    }

    /// The growth policy: an emptied oversized buffer is replaced by a small
    /// one; a buffer with less than [`MIN_SPARE`] free grows by half its
    /// content, at least [`INITIAL_CAPACITY`] and at most [`MAX_STEP`]
    /// (geometric for large packets, in step with the bytes received).
    fn make_room(&mut self) {
        if self.buf.is_empty() {
            release_if_larger(&mut self.buf, KEEP_CAPACITY, INITIAL_CAPACITY);
        }
        if self.buf.capacity() - self.buf.len() < MIN_SPARE {
            let step = (self.buf.len() / 2).clamp(INITIAL_CAPACITY, MAX_STEP);
            self.buf.reserve(step);
        }
    }

    /// Reads one `\n`-terminated text line (an admin reply), reading more
    /// as needed; [`Line::TooLong`] once more than `max` bytes arrived
    /// without a `\n`.
    pub(crate) async fn read_line(&mut self, max: usize) -> io::Result<Line> {
        let mut scanned = 0;
        loop {
            if let Some(p) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                return Ok(Line::Complete(self.buf.split_to(scanned + p + 1)));
            }
            scanned = self.buf.len();
            if scanned > max {
                return Ok(Line::TooLong);
            }
            if self.fill().await? == 0 {
                return Ok(Line::Eof);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Magic, DEFAULT_MAX_PACKET};
    use bytes::Bytes;
    use tokio::io::AsyncWriteExt;

    fn echo(len: usize) -> Packet {
        Packet::EchoRes {
            data: Bytes::from(vec![b'e'; len]),
        }
    }

    #[tokio::test]
    async fn packets_of_any_size_across_reads() {
        let (mut tx, rx) = tokio::io::duplex(8 << 10);
        let sizes = [0usize, 1, 5000, 70_000, 3 << 20, 12];
        let writer = tokio::spawn(async move {
            for len in sizes {
                let wire = echo(len).to_bytes(Magic::Res).unwrap();
                tx.write_all(&wire).await.unwrap();
            }
        });
        let mut r = FrameReader::new(rx, PacketCodec::new(DEFAULT_MAX_PACKET));
        let mut got = Vec::new();
        while got.len() < sizes.len() {
            while let Some(p) = r.next_packet().unwrap() {
                got.push(p);
            }
            if got.len() < sizes.len() {
                assert!(r.fill().await.unwrap() > 0);
            }
        }
        writer.await.unwrap();
        assert_eq!(got, sizes.map(echo));
        assert_eq!(r.fill().await.unwrap(), 0, "end of stream");
        // The buffer of the large packet was given back.
        assert!(r.buf.is_empty());
        r.make_room();
        assert!(r.buf.capacity() <= KEEP_CAPACITY);
    }

    #[tokio::test]
    async fn the_allocation_of_a_large_packet_is_given_back() {
        for size in [(1 << 20) + 100_000, 2 << 20, 3 << 20, 5 << 20, 9 << 20] {
            let mut wire = echo(size).to_bytes(Magic::Res).unwrap().to_vec();
            wire.extend_from_slice(&echo(1).to_bytes(Magic::Res).unwrap());
            let mut r = FrameReader::new(&wire[..], PacketCodec::new(DEFAULT_MAX_PACKET));
            let mut got = Vec::new();
            while got.len() < 2 {
                while let Some(p) = r.next_packet().unwrap() {
                    got.push(p);
                }
                if got.len() < 2 {
                    assert!(r.fill().await.unwrap() > 0);
                }
            }
            drop(got);
            assert!(r.buf.is_empty());
            r.make_room();
            // `capacity()` counts only the space after the consumed bytes;
            // the next `reserve` could take the whole allocation back.
            assert!(
                !r.buf.try_reclaim(KEEP_CAPACITY + 1),
                "allocation kept after a packet of {size} bytes"
            );
        }
    }

    #[tokio::test]
    async fn a_large_declared_size_is_not_reserved_up_front() {
        let mut wire = b"\0RES\0\0\0\x11".to_vec();
        wire.extend_from_slice(&(60u32 << 20).to_be_bytes());
        wire.extend_from_slice(&[b'x'; 100]);
        let mut r = FrameReader::new(&wire[..], PacketCodec::new(DEFAULT_MAX_PACKET));
        assert!(r.fill().await.unwrap() > 0);
        assert_eq!(r.next_packet(), Ok(None));
        assert!(r.buf.capacity() <= 2 << 20, "{}", r.buf.capacity());
    }

    #[tokio::test]
    async fn oversized_packet_fails_from_its_header() {
        let wire = echo(2000).to_bytes(Magic::Res).unwrap();
        let mut r = FrameReader::new(&wire[..20], PacketCodec::new(1000));
        assert!(r.fill().await.unwrap() > 0);
        assert_eq!(
            r.next_packet(),
            Err(ProtocolError::PayloadTooLarge {
                size: 2000,
                limit: 1000
            })
        );
    }

    #[tokio::test]
    async fn raw_frames_keep_the_payload_whole() {
        // A SUBMIT_JOB without its separators, then an admin line.
        let wire = b"\0REQ\0\0\0\x07\0\0\0\x03abcstatus\r\n";
        let mut r = FrameReader::new(&wire[..], PacketCodec::server(1000, 100));
        assert!(r.fill().await.unwrap() > 0);
        assert_eq!(
            r.next_raw_frame(),
            Ok(Some(RawFrame::Packet(
                Magic::Req,
                crate::protocol::PacketType::SubmitJob,
                Bytes::from_static(b"abc")
            )))
        );
        assert_eq!(
            r.next_raw_frame(),
            Ok(Some(RawFrame::Text(Bytes::from_static(b"status"))))
        );
        assert_eq!(r.next_raw_frame(), Ok(None));
        // Decoded, the same packet is an error.
        let mut r = FrameReader::new(&wire[..], PacketCodec::server(1000, 100));
        assert!(r.fill().await.unwrap() > 0);
        assert!(matches!(
            r.next_frame(),
            Err(ProtocolError::MissingArguments { .. })
        ));
    }

    #[tokio::test]
    async fn lines_limit_and_eof() {
        let data = b"OK 1\r\nsecond\npartial";
        let mut r = FrameReader::new(&data[..], PacketCodec::default());
        let line = |l: Line| match l {
            Line::Complete(b) => b,
            other => panic!("{other:?}"),
        };
        assert_eq!(&line(r.read_line(100).await.unwrap())[..], b"OK 1\r\n");
        assert_eq!(&line(r.read_line(100).await.unwrap())[..], b"second\n");
        assert!(matches!(r.read_line(100).await.unwrap(), Line::Eof));
        let long = vec![b'x'; 300];
        let mut r = FrameReader::new(&long[..], PacketCodec::default());
        assert!(matches!(r.read_line(100).await.unwrap(), Line::TooLong));
    }
}
