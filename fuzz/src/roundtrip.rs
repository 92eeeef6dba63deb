//! `packet_roundtrip`: a packet described by `arbitrary` is encoded, then
//! decoded by a client's and a server's codec; it must come back equal (or
//! be refused by the encoder for a NUL inside a NUL-separated field, leaving
//! the buffer as it was).

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use polygear::protocol::{
    Frame, Magic, Packet, PacketCodec, PacketType, Priority, ProtocolError, DEFAULT_MAX_PACKET,
    HEADER_LEN,
};

use crate::split_fields;

/// Any packet: its type code (1..=42 after reduction), the byte fields in
/// wire order (as many as the type has), and its numbers and flags.
#[derive(Arbitrary, Debug)]
pub struct PacketDesc {
    response: bool,
    code: u8,
    fields: [Vec<u8>; 8],
    numbers: [u32; 4],
    when: i64,
    flags: [bool; 2],
}

impl PacketDesc {
    fn magic(&self) -> Magic {
        if self.response {
            Magic::Res
        } else {
            Magic::Req
        }
    }

    /// The typed packet this describes.
    pub fn packet(&self) -> Packet {
        let kind = PacketType::from_code(1 + self.code as u32 % 42).expect("1..=42");
        let f = |i: usize| Bytes::copy_from_slice(&self.fields[i]);
        let [n0, n1, n2, n3] = self.numbers;
        let [known, running] = self.flags;
        use PacketType as T;
        let submit = |priority, background| Packet::SubmitJob {
            function: f(0),
            unique: f(1),
            data: f(2),
            priority,
            background,
        };
        match kind {
            T::CanDo => Packet::CanDo { function: f(0) },
            T::CantDo => Packet::CantDo { function: f(0) },
            T::ResetAbilities => Packet::ResetAbilities,
            T::PreSleep => Packet::PreSleep,
            T::Unused => Packet::Unused,
            T::Noop => Packet::Noop,
            T::SubmitJob => submit(Priority::Normal, false),
            T::SubmitJobBg => submit(Priority::Normal, true),
            T::SubmitJobHigh => submit(Priority::High, false),
            T::SubmitJobHighBg => submit(Priority::High, true),
            T::SubmitJobLow => submit(Priority::Low, false),
            T::SubmitJobLowBg => submit(Priority::Low, true),
            T::JobCreated => Packet::JobCreated { handle: f(0) },
            T::GrabJob => Packet::GrabJob,
            T::NoJob => Packet::NoJob,
            T::JobAssign => Packet::JobAssign {
                handle: f(0),
                function: f(1),
                data: f(2),
            },
            T::WorkStatus => Packet::WorkStatus {
                handle: f(0),
                numerator: f(1),
                denominator: f(2),
            },
            T::WorkComplete => Packet::WorkComplete {
                handle: f(0),
                data: f(1),
            },
            T::WorkFail => Packet::WorkFail { handle: f(0) },
            T::WorkFailReason => Packet::WorkFailReason {
                handle: f(0),
                reason: f(1),
            },
            T::SubmitRetain => Packet::SubmitRetain { seconds: n0 },
            T::GetResult => Packet::GetResult { handle: f(0) },
            T::ResultRes => Packet::ResultRes {
                handle: f(0),
                state: f(1),
                data: f(2),
            },
            T::GetStatus => Packet::GetStatus { handle: f(0) },
            T::EchoReq => Packet::EchoReq { data: f(0) },
            T::EchoRes => Packet::EchoRes { data: f(0) },
            T::Error => Packet::Error {
                code: f(0),
                text: f(1),
            },
            T::StatusRes => Packet::StatusRes {
                handle: f(0),
                known,
                running,
                numerator: n0,
                denominator: n1,
            },
            T::SetClientId => Packet::SetClientId { id: f(0) },
            T::CanDoTimeout => Packet::CanDoTimeout {
                function: f(0),
                timeout: n0,
            },
            T::AllYours => Packet::AllYours,
            T::WorkException => Packet::WorkException {
                handle: f(0),
                data: f(1),
            },
            T::OptionReq => Packet::OptionReq { name: f(0) },
            T::OptionRes => Packet::OptionRes { name: f(0) },
            T::WorkData => Packet::WorkData {
                handle: f(0),
                data: f(1),
            },
            T::WorkWarning => Packet::WorkWarning {
                handle: f(0),
                data: f(1),
            },
            T::GrabJobUniq => Packet::GrabJobUniq,
            T::JobAssignUniq => Packet::JobAssignUniq {
                handle: f(0),
                function: f(1),
                unique: f(2),
                data: f(3),
            },
            T::SubmitJobSched => Packet::SubmitJobSched {
                function: f(0),
                unique: f(1),
                minute: f(2),
                hour: f(3),
                day_of_month: f(4),
                month: f(5),
                day_of_week: f(6),
                data: f(7),
            },
            T::SubmitJobEpoch => Packet::SubmitJobEpoch {
                function: f(0),
                unique: f(1),
                when: self.when,
                data: f(2),
            },
            T::SubmitReduceJob | T::SubmitReduceJobBackground => Packet::SubmitReduceJob {
                function: f(0),
                unique: f(1),
                reducer: f(2),
                aggregator: f(3),
                data: f(4),
                background: kind == T::SubmitReduceJobBackground,
            },
            T::GrabJobAll => Packet::GrabJobAll,
            T::JobAssignAll => Packet::JobAssignAll {
                handle: f(0),
                function: f(1),
                unique: f(2),
                reducer: f(3),
                data: f(4),
            },
            T::GetStatusUnique => Packet::GetStatusUnique { unique: f(0) },
            T::StatusResUnique => Packet::StatusResUnique {
                unique: f(0),
                known,
                running,
                numerator: n0,
                denominator: n1,
                client_count: n2.wrapping_add(n3),
            },
        }
    }
}

/// The packet a receiver decodes from `p`'s encoding: the one-field types
/// whose decoder drops a trailing NUL lose it.
fn as_decoded(p: Packet) -> Packet {
    let strip = |b: Bytes| match b.last() {
        Some(0) => b.slice(..b.len() - 1),
        _ => b,
    };
    match p {
        Packet::WorkFail { handle } => Packet::WorkFail {
            handle: strip(handle),
        },
        Packet::GetStatus { handle } => Packet::GetStatus {
            handle: strip(handle),
        },
        Packet::OptionReq { name } => Packet::OptionReq { name: strip(name) },
        p => p,
    }
}

/// Encodes, decodes and compares (see the module doc).
pub fn check(desc: &PacketDesc) {
    let p = desc.packet();
    let magic = desc.magic();
    let kind = p.packet_type();
    let fields = p.fields();
    assert_eq!(
        kind.layout().0 + kind.layout().1 as usize,
        fields.len(),
        "{kind:?} fields"
    );
    let mut out = BytesMut::from(&b"keep"[..]);
    match p.encode(magic, &mut out) {
        Err(ProtocolError::NulInArgument { index, .. }) => {
            assert!(index + 1 < fields.len(), "NUL reported in the last field");
            assert!(fields[index].contains(&0), "no NUL in field {index}");
            assert!(
                fields[..index].iter().all(|f| !f.contains(&0)),
                "an earlier field has a NUL"
            );
            assert_eq!(&out[..], b"keep", "a refused packet wrote bytes");
            return;
        }
        Err(e) => panic!("{p:?} does not encode: {e}"),
        Ok(()) => {}
    }
    let wire = out.split_off(4).freeze();
    assert_eq!(wire.len(), HEADER_LEN + p.payload_len());
    assert_eq!(&wire[..4], &magic.bytes()[..]);
    assert_eq!(
        u32::from_be_bytes([wire[4], wire[5], wire[6], wire[7]]),
        kind as u32
    );
    assert_eq!(
        p.to_bytes(magic).as_ref(),
        Ok(&wire),
        "to_bytes differs from encode"
    );
    // The payload is the fields joined by NULs.
    let payload = &wire[HEADER_LEN..];
    if fields.is_empty() {
        assert!(payload.is_empty());
    } else {
        let split = split_fields(payload, fields.len());
        assert_eq!(split, fields.iter().map(|f| &f[..]).collect::<Vec<_>>());
    }

    let want = Frame::Packet(magic, as_decoded(p.clone()));
    for mut codec in [
        PacketCodec::new(DEFAULT_MAX_PACKET),
        PacketCodec::server(DEFAULT_MAX_PACKET, 100),
    ] {
        let mut buf = BytesMut::from(&wire[..]);
        let got = codec.decode_frame(&mut buf);
        assert_eq!(
            got.as_ref(),
            Ok(&Some(want.clone())),
            "{p:?} decoded differently"
        );
        assert!(
            buf.is_empty(),
            "{} bytes left after decoding {p:?}",
            buf.len()
        );
        // And once more, a byte short: incomplete, nothing consumed.
        let mut short = BytesMut::from(&wire[..wire.len() - 1]);
        let before = short.len();
        assert_eq!(
            codec.decode_frame(&mut short),
            Ok(None),
            "{p:?} less a byte"
        );
        assert_eq!(short.len(), before);
    }
    // Without a normalisation, the decoded packet encodes to the same bytes.
    if let Frame::Packet(_, q) = want {
        if q == p {
            assert_eq!(q.to_bytes(magic).as_ref(), Ok(&wire));
        }
    }
}
