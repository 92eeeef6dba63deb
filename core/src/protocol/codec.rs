//! Framing: turns a byte stream into [`Frame`]s and back, with bounded memory.

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::packet::{Magic, Packet, PacketType, HEADER_LEN};
use super::ProtocolError;

/// What the tokio-util [`Decoder`]/[`Encoder`] impls of [`PacketCodec`] fail with:
/// the stream's I/O error or a protocol violation. (`polygear::Error` converts from
/// it; the protocol layer itself knows nothing of the crate's error type.)
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Reading or writing the stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The peer broke the wire protocol (or a packet cannot be encoded).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// Default maximum payload of one packet: 64 MiB.
pub const DEFAULT_MAX_PACKET: usize = 64 << 20;
/// Default maximum length of one admin text line: 64 KiB.
pub const DEFAULT_MAX_TEXT_LINE: usize = 64 << 10;

/// One unit read from a connection.
#[allow(clippy::large_enum_variant)] // text lines are rare; boxing packets would cost an allocation each
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A binary packet and the magic it carried.
    Packet(Magic, Packet),
    /// An admin text line (servers only), without its `\n` / `\r\n`.
    Text(bytes::Bytes),
}

/// One unit read from a connection, its payload not yet split into fields
/// ([`PacketCodec::decode_raw_frame`]): for a reader that decides from the
/// header alone what to do with a packet (a server answers a packet it does
/// not accept as a request without decoding its payload, like gearmand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawFrame {
    /// A binary packet: its magic, type and payload (for [`Packet::decode`]).
    Packet(Magic, PacketType, bytes::Bytes),
    /// An admin text line (servers only), without its `\n` / `\r\n`.
    Text(bytes::Bytes),
}

/// tokio-util codec for Gearman connections.
///
/// Decoding never allocates more than the configured limits: the declared
/// size is checked before any payload is buffered. The codec keeps a little
/// per-stream state (how much of a pending text line was scanned), so use
/// one codec per connection.
#[derive(Debug, Clone)]
pub struct PacketCodec {
    max_packet: usize,
    max_line: usize,
    accept_text: bool,
    /// Bytes of a pending text line already searched for `\n`, so a line
    /// arriving byte by byte is scanned once, not quadratically.
    text_scanned: usize,
}

impl Default for PacketCodec {
    fn default() -> Self {
        PacketCodec::new(DEFAULT_MAX_PACKET)
    }
}

impl PacketCodec {
    /// A codec for binary packets only (clients and workers).
    pub fn new(max_packet: usize) -> Self {
        PacketCodec {
            max_packet,
            max_line: DEFAULT_MAX_TEXT_LINE,
            accept_text: false,
            text_scanned: 0,
        }
    }

    /// A codec that also accepts admin text lines (a server's side).
    pub fn server(max_packet: usize, max_line: usize) -> Self {
        PacketCodec {
            max_packet,
            max_line,
            accept_text: true,
            text_scanned: 0,
        }
    }

    /// The maximum payload size accepted.
    pub fn max_packet(&self) -> usize {
        self.max_packet
    }

    /// The maximum admin text line length accepted (server mode).
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Whether admin text lines are accepted (server mode).
    pub fn accepts_text(&self) -> bool {
        self.accept_text
    }

    /// Decodes one frame from the front of `src`, or `Ok(None)` if more bytes
    /// are needed.
    ///
    /// The header is validated (magic, type, declared size against the
    /// limit) as soon as its 12 bytes are present, before any payload is
    /// buffered. A packet whose payload lacks separators is consumed whole
    /// before the error is returned, so the stream stays in sync.
    pub fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        Ok(match self.decode_raw_frame(src)? {
            Some(RawFrame::Packet(magic, kind, payload)) => {
                Some(Frame::Packet(magic, Packet::decode(kind, payload)?))
            }
            Some(RawFrame::Text(line)) => Some(Frame::Text(line)),
            None => None,
        })
    }

    /// [`PacketCodec::decode_frame`] up to the payload: the header checks
    /// and limits are the same, the payload is not split into fields.
    pub fn decode_raw_frame(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<RawFrame>, ProtocolError> {
        let Some(&first) = src.first() else {
            return Ok(None);
        };
        if first != 0 && self.accept_text {
            return self.decode_text(src);
        }
        if src.len() < HEADER_LEN {
            // Reject bad magic as early as we can see it.
            if src.len() >= 4 && Magic::from_bytes(&src[..4]).is_none() {
                return Err(ProtocolError::BadMagic([src[0], src[1], src[2], src[3]]));
            }
            return Ok(None);
        }
        let word = |i: usize| [src[i], src[i + 1], src[i + 2], src[i + 3]];
        let magic_bytes = word(0);
        let magic = Magic::from_bytes(&magic_bytes).ok_or(ProtocolError::BadMagic(magic_bytes))?;
        let code = u32::from_be_bytes(word(4));
        let kind = PacketType::from_code(code).ok_or(ProtocolError::UnknownType(code))?;
        let size = u32::from_be_bytes(word(8)) as usize;
        if size > self.max_packet {
            return Err(ProtocolError::PayloadTooLarge {
                size: size as u64,
                limit: self.max_packet as u64,
            });
        }
        if src.len() < HEADER_LEN + size {
            // Grow towards the declared size, but never commit more than
            // RESERVE_STEP ahead of the bytes actually received.
            let missing = HEADER_LEN + size - src.len();
            src.reserve(missing.min(RESERVE_STEP));
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(size).freeze();
        Ok(Some(RawFrame::Packet(magic, kind, payload)))
    }

    fn decode_text(&mut self, src: &mut BytesMut) -> Result<Option<RawFrame>, ProtocolError> {
        let from = self.text_scanned.min(src.len());
        // Look no further than the limit (+1 for a `\r` before the `\n`).
        let window = src.len().min(self.max_line.saturating_add(2));
        match src[from.min(window)..window]
            .iter()
            .position(|&b| b == b'\n')
        {
            Some(p) => {
                let pos = from + p;
                self.text_scanned = 0;
                let mut line = src.split_to(pos + 1).freeze();
                line.truncate(pos);
                if line.last() == Some(&b'\r') {
                    line.truncate(pos - 1);
                }
                if line.len() > self.max_line {
                    return Err(ProtocolError::LineTooLong {
                        limit: self.max_line,
                    });
                }
                Ok(Some(RawFrame::Text(line)))
            }
            None if src.len() > self.max_line.saturating_add(1) => {
                self.text_scanned = 0;
                Err(ProtocolError::LineTooLong {
                    limit: self.max_line,
                })
            }
            None => {
                self.text_scanned = window;
                Ok(None)
            }
        }
    }
}

/// How far ahead of the received bytes the decoder reserves buffer space.
const RESERVE_STEP: usize = 1 << 20;

impl Decoder for PacketCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(self.decode_frame(src)?)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        match self.decode_frame(src)? {
            Some(f) => Ok(Some(f)),
            None if src.is_empty() => Ok(None),
            None => Err(ProtocolError::Truncated(src.len()).into()),
        }
    }
}

impl Encoder<(Magic, Packet)> for PacketCodec {
    type Error = CodecError;

    fn encode(
        &mut self,
        (magic, packet): (Magic, Packet),
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        Ok(packet.encode(magic, dst)?)
    }
}

impl Encoder<(Magic, &Packet)> for PacketCodec {
    type Error = CodecError;

    fn encode(
        &mut self,
        (magic, packet): (Magic, &Packet),
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        Ok(packet.encode(magic, dst)?)
    }
}
