//! Framing: turns a byte stream into [`Frame`]s and back, with bounded memory.

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::packet::{Magic, Packet, PacketType, HEADER_LEN};
use super::ProtocolError;

/// Default maximum payload of one packet: 64 MiB.
pub const DEFAULT_MAX_PACKET: usize = 64 << 20;
/// Default maximum length of one admin text line: 64 KiB.
pub const DEFAULT_MAX_TEXT_LINE: usize = 64 << 10;

/// One unit read from a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A binary packet and the magic it carried.
    Packet(Magic, Packet),
    /// An admin text line (servers only), without its `\n` / `\r\n`.
    Text(bytes::Bytes),
}

/// tokio-util codec for Gearman connections.
///
/// Decoding never allocates more than the configured limits: the declared
/// size is checked before any payload is buffered.
#[derive(Debug, Clone)]
pub struct PacketCodec {
    max_packet: usize,
    max_line: usize,
    accept_text: bool,
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
        }
    }

    /// A codec that also accepts admin text lines (a server's side).
    pub fn server(max_packet: usize, max_line: usize) -> Self {
        PacketCodec {
            max_packet,
            max_line,
            accept_text: true,
        }
    }

    /// The maximum payload size accepted.
    pub fn max_packet(&self) -> usize {
        self.max_packet
    }

    /// Decodes one frame from the front of `src`, or `Ok(None)` if more bytes
    /// are needed.
    pub fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        let Some(&first) = src.first() else {
            return Ok(None);
        };
        if first != 0 && self.accept_text {
            return self.decode_text(src);
        }
        if src.len() < HEADER_LEN {
            // Reject bad magic as early as we can see it.
            if src.len() >= 4 && Magic::from_bytes(&src[..4]).is_none() {
                return Err(ProtocolError::BadMagic(src[..4].try_into().unwrap()));
            }
            return Ok(None);
        }
        let magic_bytes: [u8; 4] = src[..4].try_into().unwrap();
        let magic = Magic::from_bytes(&magic_bytes).ok_or(ProtocolError::BadMagic(magic_bytes))?;
        let code = u32::from_be_bytes(src[4..8].try_into().unwrap());
        let kind = PacketType::from_code(code).ok_or(ProtocolError::UnknownType(code))?;
        let size = u32::from_be_bytes(src[8..12].try_into().unwrap()) as usize;
        if size > self.max_packet {
            return Err(ProtocolError::PayloadTooLarge {
                size: size as u64,
                limit: self.max_packet as u64,
            });
        }
        if src.len() < HEADER_LEN + size {
            src.reserve(HEADER_LEN + size - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(size).freeze();
        Ok(Some(Frame::Packet(magic, Packet::decode(kind, payload)?)))
    }

    fn decode_text(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        match src.iter().position(|&b| b == b'\n') {
            Some(pos) => {
                let mut line = src.split_to(pos + 1).freeze();
                line.truncate(pos);
                if line.last() == Some(&b'\r') {
                    line.truncate(pos - 1);
                }
                Ok(Some(Frame::Text(line)))
            }
            None if src.len() > self.max_line => Err(ProtocolError::LineTooLong {
                limit: self.max_line,
            }),
            None => Ok(None),
        }
    }
}

impl Decoder for PacketCodec {
    type Item = Frame;
    type Error = crate::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, crate::Error> {
        Ok(self.decode_frame(src)?)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, crate::Error> {
        match self.decode_frame(src)? {
            Some(f) => Ok(Some(f)),
            None if src.is_empty() => Ok(None),
            None => Err(ProtocolError::Truncated(src.len()).into()),
        }
    }
}

impl Encoder<(Magic, Packet)> for PacketCodec {
    type Error = crate::Error;

    fn encode(&mut self, (magic, packet): (Magic, Packet), dst: &mut BytesMut) -> Result<(), crate::Error> {
        Ok(packet.encode(magic, dst)?)
    }
}

impl Encoder<(Magic, &Packet)> for PacketCodec {
    type Error = crate::Error;

    fn encode(&mut self, (magic, packet): (Magic, &Packet), dst: &mut BytesMut) -> Result<(), crate::Error> {
        Ok(packet.encode(magic, dst)?)
    }
}
