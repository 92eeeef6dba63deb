//! The Gearman wire protocol: binary packets (the header's types in
//! `header`, typed packets and their encoding in [`packet`], decoding in
//! `decode`, numbers in text fields in `number`), framing of a byte stream
//! into packets and admin text lines ([`codec`]), and the admin text
//! protocol ([`admin`]). Depends on nothing else in the crate: its errors
//! ([`ProtocolError`], [`CodecError`], [`ListingError`]) convert into `polygear::Error`
//! in `error.rs`, not here.

pub mod admin;
pub mod codec;
mod decode;
mod header;
mod number;
pub mod packet;

pub use admin::{AdminCommand, AdminError, AdminReply, ListingError};
pub use codec::{
    CodecError, Frame, PacketCodec, RawFrame, DEFAULT_MAX_PACKET, DEFAULT_MAX_TEXT_LINE,
};
pub use packet::{
    atoi, encode_packet, Decimal, Magic, Packet, PacketType, Priority, HEADER_LEN,
    OPTION_FAIL_REASONS,
};

/// A violation of the wire protocol by the peer (or an unencodable packet).
#[allow(missing_docs)] // field names are self-explanatory
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The first four bytes were neither `\0REQ` nor `\0RES`.
    #[error("bad magic {0:02x?} (expected \\0REQ or \\0RES)")]
    BadMagic([u8; 4]),
    /// The first bytes a peer sent were not Gearman (e.g. an HTTP server's
    /// `HTTP/1.1 …`): [`ProtocolError::BadMagic`] with the peer's address.
    #[error("the server at {addr} answered {}, not Gearman", shown_bytes(.first))]
    NotGearman { addr: String, first: [u8; 4] },
    /// The packet type code is 0 or unknown.
    #[error("unknown packet type {0}")]
    UnknownType(u32),
    /// The declared payload exceeds the configured limit; nothing was allocated.
    #[error("packet payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge { size: u64, limit: u64 },
    /// An admin text line grew beyond the configured limit without a newline.
    #[error("admin text line longer than {limit} bytes")]
    LineTooLong { limit: usize },
    /// The payload lacks the NUL separators its packet type requires.
    #[error("{packet} needs {expected} NUL separators, found {found}")]
    MissingArguments {
        packet: &'static str,
        expected: usize,
        found: usize,
    },
    /// A field other than the last contains a NUL byte, so the packet cannot
    /// be encoded unambiguously.
    #[error("{packet} argument {index} contains a NUL byte")]
    NulInArgument { packet: &'static str, index: usize },
    /// A numeric field was not a number.
    #[error("field {field} is not a valid number")]
    BadNumber { field: &'static str },
    /// The stream ended in the middle of a packet.
    #[error("connection closed in the middle of a packet ({0} bytes buffered)")]
    Truncated(usize),
    /// A packet arrived that makes no sense at this point of the conversation.
    #[error("unexpected {0} packet")]
    Unexpected(&'static str),
    /// A text reply from the admin protocol could not be parsed.
    #[error("malformed admin reply: {0}")]
    BadAdminReply(String),
}

impl ProtocolError {
    /// Names the peer in a [`ProtocolError::BadMagic`] seen in its first
    /// reply (it is then not a Gearman server); other errors are returned as they are.
    pub fn from_peer(self, addr: &str) -> ProtocolError {
        match self {
            ProtocolError::BadMagic(first) => ProtocolError::NotGearman {
                addr: addr.to_owned(),
                first,
            },
            other => other,
        }
    }
}

/// `'HTTP'` for printable ASCII, else the bytes in hex (`0x16030100`).
fn shown_bytes(b: &[u8; 4]) -> String {
    if b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        format!("'{}'", String::from_utf8_lossy(b))
    } else {
        let hex: String = b.iter().map(|c| format!("{c:02x}")).collect();
        format!("0x{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::ProtocolError;

    #[test]
    fn a_peer_that_is_not_gearman_is_named() {
        let e = ProtocolError::BadMagic(*b"HTTP").from_peer("127.0.0.1:8080");
        assert_eq!(
            e.to_string(),
            "the server at 127.0.0.1:8080 answered 'HTTP', not Gearman"
        );
        let tls = ProtocolError::BadMagic([0x16, 3, 1, 0]).from_peer("h:1");
        assert_eq!(
            tls.to_string(),
            "the server at h:1 answered 0x16030100, not Gearman"
        );
        let other = ProtocolError::UnknownType(7).from_peer("h:1");
        assert_eq!(other, ProtocolError::UnknownType(7));
    }
}
