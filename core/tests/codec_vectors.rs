//! Wire codec: the byte vectors of protocol.md §9 (captured from gearmand
//! 1.1.20), a round trip of all 42 packet types, error cases, and decoding a
//! stream split at every byte offset (§7 item 4).

use bytes::{Bytes, BytesMut};
use polygear::protocol::{
    CodecError, Frame, Magic, Packet, PacketCodec, PacketType, Priority, ProtocolError,
    DEFAULT_MAX_PACKET,
};
use tokio_util::codec::{Decoder, Encoder};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).expect("hex byte"))
        .collect()
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn decode_one(bytes: &[u8]) -> Result<Option<Frame>, ProtocolError> {
    let mut buf = BytesMut::from(bytes);
    let mut codec = PacketCodec::default();
    let r = codec.decode_frame(&mut buf);
    if let Ok(Some(_)) = r {
        assert!(buf.is_empty(), "decoder left {} bytes", buf.len());
    }
    r
}

/// Encoding `packet` with `magic` gives exactly `wire`, and decoding `wire`
/// gives back `(magic, packet)`.
fn vector(magic: Magic, packet: Packet, wire: &str) {
    let wire = hex(wire);
    let mut out = BytesMut::new();
    packet.encode(magic, &mut out).unwrap();
    assert_eq!(&out[..], &wire[..], "encode {packet:?}");
    assert_eq!(packet.payload_len() + 12, wire.len());
    assert_eq!(
        decode_one(&wire).unwrap(),
        Some(Frame::Packet(magic, packet.clone())),
        "decode {packet:?}"
    );
}

fn submit(function: &'static str, unique: &'static str, data: &'static str, bg: bool) -> Packet {
    Packet::SubmitJob {
        function: b(function),
        unique: b(unique),
        data: b(data),
        priority: Priority::Normal,
        background: bg,
    }
}

fn status_res(handle: &'static str, known: bool, running: bool, n: u32, d: u32) -> Packet {
    Packet::StatusRes {
        handle: b(handle),
        known,
        running,
        numerator: n,
        denominator: d,
    }
}

fn error(code: &'static str, text: &'static str) -> Packet {
    Packet::Error {
        code: b(code),
        text: b(text),
    }
}

#[test]
fn vectors_9_1_echo() {
    use Magic::*;
    vector(
        Req,
        Packet::EchoReq {
            data: Bytes::from_static(b"hello\0world"),
        },
        "00 52 45 51 00 00 00 10 00 00 00 0b 68 65 6c 6c 6f 00 77 6f 72 6c 64",
    );
    vector(
        Res,
        Packet::EchoRes {
            data: Bytes::from_static(b"hello\0world"),
        },
        "00 52 45 53 00 00 00 11 00 00 00 0b 68 65 6c 6c 6f 00 77 6f 72 6c 64",
    );
    vector(
        Req,
        Packet::EchoReq { data: Bytes::new() },
        "00 52 45 51 00 00 00 10 00 00 00 00",
    );
    vector(
        Res,
        Packet::EchoRes { data: Bytes::new() },
        "00 52 45 53 00 00 00 11 00 00 00 00",
    );
}

#[test]
fn vectors_9_2_submit_and_status() {
    use Magic::*;
    vector(
        Req,
        submit("reverse", "u1", "test", true),
        "00 52 45 51 00 00 00 12 00 00 00 0f 72 65 76 65 72 73 65 00 75 31 00 74 65 73 74",
    );
    vector(
        Res,
        Packet::JobCreated {
            handle: b("H:vm:1"),
        },
        "00 52 45 53 00 00 00 08 00 00 00 06 48 3a 76 6d 3a 31",
    );
    vector(
        Req,
        Packet::GetStatus {
            handle: b("H:vm:1"),
        },
        "00 52 45 51 00 00 00 0f 00 00 00 06 48 3a 76 6d 3a 31",
    );
    vector(
        Res,
        status_res("H:vm:1", true, false, 0, 0),
        "00 52 45 53 00 00 00 14 00 00 00 0e 48 3a 76 6d 3a 31 00 31 00 30 00 30 00 30",
    );
    vector(
        Req,
        Packet::GetStatus {
            handle: b("H:vm:999"),
        },
        "00 52 45 51 00 00 00 0f 00 00 00 08 48 3a 76 6d 3a 39 39 39",
    );
    vector(
        Res,
        status_res("H:vm:999", false, false, 0, 0),
        "00 52 45 53 00 00 00 14 00 00 00 10 48 3a 76 6d 3a 39 39 39 00 30 00 30 00 30 00 30",
    );
    vector(
        Res,
        status_res("H:vm:4", true, true, 1, 4),
        "00 52 45 53 00 00 00 14 00 00 00 0e 48 3a 76 6d 3a 34 00 31 00 31 00 31 00 34",
    );
    vector(
        Req,
        Packet::GetStatusUnique { unique: b("u1") },
        "00 52 45 51 00 00 00 29 00 00 00 02 75 31",
    );
    vector(
        Res,
        Packet::StatusResUnique {
            unique: b("u1"),
            known: true,
            running: false,
            numerator: 0,
            denominator: 0,
            client_count: 0,
        },
        "00 52 45 53 00 00 00 2a 00 00 00 0c 75 31 00 31 00 30 00 30 00 30 00 30",
    );
    vector(
        Req,
        Packet::GetStatusUnique { unique: b("nope") },
        "00 52 45 51 00 00 00 29 00 00 00 04 6e 6f 70 65",
    );
    vector(
        Res,
        Packet::StatusResUnique {
            unique: b("nope"),
            known: false,
            running: false,
            numerator: 0,
            denominator: 0,
            client_count: 0,
        },
        "00 52 45 53 00 00 00 2a 00 00 00 0e 6e 6f 70 65 00 30 00 30 00 30 00 30 00 30",
    );
    // Payload "same\0" "1\0" "0\0" "0\0" "0\0" "2".
    let p = Packet::StatusResUnique {
        unique: b("same"),
        known: true,
        running: false,
        numerator: 0,
        denominator: 0,
        client_count: 2,
    };
    let mut out = BytesMut::new();
    p.encode(Res, &mut out).unwrap();
    assert_eq!(&out[12..], b"same\x001\x000\x000\x000\x002");
}

#[test]
fn vectors_9_3_invalid_input() {
    use Magic::*;
    for (wire, code) in [
        ("00 52 45 51 00 00 00 00 00 00 00 00", 0),
        ("00 52 45 51 00 00 00 2b 00 00 00 00", 43),
        ("00 52 45 51 00 00 00 63 00 00 00 00", 99),
    ] {
        assert_eq!(
            decode_one(&hex(wire)),
            Err(ProtocolError::UnknownType(code))
        );
    }
    assert_eq!(
        decode_one(&hex("00 58 59 5a 00 00 00 10 00 00 00 04 70 69 6e 67")),
        Err(ProtocolError::BadMagic(*b"\0XYZ"))
    );
    vector(Req, Packet::Unused, "00 52 45 51 00 00 00 05 00 00 00 00");
    vector(Req, Packet::Noop, "00 52 45 51 00 00 00 06 00 00 00 00");
    vector(
        Res,
        error("INVALID_COMMAND", "Command not expected"),
        "00 52 45 53 00 00 00 13 00 00 00 24 49 4e 56 41 4c 49 44 5f 43 4f 4d 4d 41 4e 44 00
         43 6f 6d 6d 61 6e 64 20 6e 6f 74 20 65 78 70 65 63 74 65 64",
    );
    // RES magic used as a request: the codec reports the magic it saw.
    vector(
        Res,
        Packet::EchoReq { data: b("ping") },
        "00 52 45 53 00 00 00 10 00 00 00 04 70 69 6e 67",
    );
    vector(
        Res,
        error("INVALID_MAGIC", "Request magic expected"),
        "00 52 45 53 00 00 00 13 00 00 00 24 49 4e 56 41 4c 49 44 5f 4d 41 47 49 43 00
         52 65 71 75 65 73 74 20 6d 61 67 69 63 20 65 78 70 65 63 74 65 64",
    );
    vector(
        Res,
        error("QUEUE_ERROR", "Job queue is full"),
        "00 52 45 53 00 00 00 13 00 00 00 1d 51 55 45 55 45 5f 45 52 52 4f 52 00
         4a 6f 62 20 71 75 65 75 65 20 69 73 20 66 75 6c 6c",
    );
    // Sizes of the other ERROR packets quoted in §9.3.
    for (code, text, size) in [
        ("ARGUMENT_TOO_LARGE", "Unique value too large", 0x29),
        (
            "UNKNOWN_OPTION",
            "Server does not recognize given option",
            0x35,
        ),
        ("JOB_NOT_FOUND", "Job given in work result not found", 0x30),
        ("JOB_NOT_FOUND", "Job does not exist on server", 0x2a),
        (
            "JOB_NOT_FOUND",
            "An exception was received for a job that does not exist",
            0x45,
        ),
    ] {
        let p = error(code, text);
        let wire = p.to_bytes(Res).unwrap();
        assert_eq!(p.payload_len(), size, "{code} {text}");
        assert_eq!(&wire[8..12], &(size as u32).to_be_bytes());
        assert_eq!(decode_one(&wire).unwrap(), Some(Frame::Packet(Res, p)));
    }
}

#[test]
fn vectors_9_4_worker_flow() {
    use Magic::*;
    vector(
        Req,
        Packet::SetClientId { id: b("worker-A") },
        "00 52 45 51 00 00 00 16 00 00 00 08 77 6f 72 6b 65 72 2d 41",
    );
    vector(
        Req,
        Packet::CanDo { function: b("rev") },
        "00 52 45 51 00 00 00 01 00 00 00 03 72 65 76",
    );
    vector(
        Req,
        Packet::CanDoTimeout {
            function: b("revt"),
            timeout: 5000,
        },
        "00 52 45 51 00 00 00 17 00 00 00 09 72 65 76 74 00 35 30 30 30",
    );
    vector(Req, Packet::GrabJob, "00 52 45 51 00 00 00 09 00 00 00 00");
    vector(Res, Packet::NoJob, "00 52 45 53 00 00 00 0a 00 00 00 00");
    vector(Req, Packet::PreSleep, "00 52 45 51 00 00 00 04 00 00 00 00");
    vector(
        Req,
        submit("rev", "same", "abc", false),
        "00 52 45 51 00 00 00 07 00 00 00 0c 72 65 76 00 73 61 6d 65 00 61 62 63",
    );
    vector(
        Res,
        Packet::JobCreated {
            handle: b("H:vm:4"),
        },
        "00 52 45 53 00 00 00 08 00 00 00 06 48 3a 76 6d 3a 34",
    );
    vector(Res, Packet::Noop, "00 52 45 53 00 00 00 06 00 00 00 00");
    vector(
        Req,
        Packet::GrabJobUniq,
        "00 52 45 51 00 00 00 1e 00 00 00 00",
    );
    vector(
        Res,
        Packet::JobAssignUniq {
            handle: b("H:vm:4"),
            function: b("rev"),
            unique: b("same"),
            data: b("abc"),
        },
        "00 52 45 53 00 00 00 1f 00 00 00 13 48 3a 76 6d 3a 34 00 72 65 76 00 73 61 6d 65 00 61 62 63",
    );
    let ws = Packet::WorkStatus {
        handle: b("H:vm:4"),
        numerator: b("1"),
        denominator: b("4"),
    };
    vector(
        Req,
        ws.clone(),
        "00 52 45 51 00 00 00 0c 00 00 00 0a 48 3a 76 6d 3a 34 00 31 00 34",
    );
    vector(
        Res,
        ws,
        "00 52 45 53 00 00 00 0c 00 00 00 0a 48 3a 76 6d 3a 34 00 31 00 34",
    );
    let wc = Packet::WorkComplete {
        handle: b("H:vm:4"),
        data: b("cba"),
    };
    vector(
        Req,
        wc.clone(),
        "00 52 45 51 00 00 00 0d 00 00 00 0a 48 3a 76 6d 3a 34 00 63 62 61",
    );
    vector(
        Res,
        wc,
        "00 52 45 53 00 00 00 0d 00 00 00 0a 48 3a 76 6d 3a 34 00 63 62 61",
    );
}

#[test]
fn vectors_9_5_exceptions_reduce_epoch() {
    use Magic::*;
    vector(
        Req,
        Packet::OptionReq {
            name: b("exceptions"),
        },
        "00 52 45 51 00 00 00 1a 00 00 00 0a 65 78 63 65 70 74 69 6f 6e 73",
    );
    vector(
        Res,
        Packet::OptionRes {
            name: b("exceptions"),
        },
        "00 52 45 53 00 00 00 1b 00 00 00 0a 65 78 63 65 70 74 69 6f 6e 73",
    );
    let we = Packet::WorkException {
        handle: b("H:vm:5"),
        data: b("boom"),
    };
    vector(
        Req,
        we.clone(),
        "00 52 45 51 00 00 00 19 00 00 00 0b 48 3a 76 6d 3a 35 00 62 6f 6f 6d",
    );
    vector(
        Res,
        we,
        "00 52 45 53 00 00 00 19 00 00 00 0b 48 3a 76 6d 3a 35 00 62 6f 6f 6d",
    );
    // Converted exception: WORK_FAIL with a trailing NUL; decoding strips it.
    assert_eq!(
        decode_one(&hex(
            "00 52 45 53 00 00 00 0e 00 00 00 07 48 3a 76 6d 3a 35 00"
        ))
        .unwrap(),
        Some(Frame::Packet(
            Res,
            Packet::WorkFail {
                handle: b("H:vm:5")
            }
        ))
    );
    let wf = Packet::WorkFail {
        handle: b("H:vm:6"),
    };
    vector(
        Req,
        wf.clone(),
        "00 52 45 51 00 00 00 0e 00 00 00 06 48 3a 76 6d 3a 36",
    );
    vector(
        Res,
        wf,
        "00 52 45 53 00 00 00 0e 00 00 00 06 48 3a 76 6d 3a 36",
    );
    // WORK_COMPLETE with an empty result keeps the separator.
    vector(
        Res,
        Packet::WorkComplete {
            handle: b("H:vm:7"),
            data: Bytes::new(),
        },
        "00 52 45 53 00 00 00 0d 00 00 00 07 48 3a 76 6d 3a 37 00",
    );
    vector(
        Req,
        Packet::SubmitReduceJob {
            function: b("exc"),
            unique: b("r1"),
            reducer: b("myreducer"),
            aggregator: Bytes::new(),
            data: b("payload"),
            background: false,
        },
        "00 52 45 51 00 00 00 25 00 00 00 19 65 78 63 00 72 31 00 6d 79 72 65 64 75 63 65 72 00 00
         70 61 79 6c 6f 61 64",
    );
    vector(
        Res,
        Packet::JobAssignAll {
            handle: b("H:vm:8"),
            function: b("exc"),
            unique: b("r1"),
            reducer: b("myreducer"),
            data: b("payload"),
        },
        "00 52 45 53 00 00 00 28 00 00 00 1f 48 3a 76 6d 3a 38 00 65 78 63 00 72 31 00 6d 79 72 65
         64 75 63 65 72 00 70 61 79 6c 6f 61 64",
    );
    vector(
        Req,
        Packet::SubmitJobSched {
            function: b("exc"),
            unique: b("s1"),
            minute: b("0"),
            hour: b("0"),
            day_of_month: b("1"),
            month: b("1"),
            day_of_week: b("0"),
            data: b("data"),
        },
        "00 52 45 51 00 00 00 23 00 00 00 15 65 78 63 00 73 31 00 30 00 30 00 31 00 31 00 30 00 64 61 74 61",
    );
    vector(
        Req,
        Packet::SubmitJobEpoch {
            function: b("exc"),
            unique: b("ep1"),
            when: 1795478579,
            data: b("epochdata"),
        },
        "00 52 45 51 00 00 00 24 00 00 00 1c 65 78 63 00 65 70 31 00 31 37 39 35 34 37 38 35 37 39 00
         65 70 6f 63 68 64 61 74 61",
    );
}

/// One packet of each of the 42 types, with NULs in every opaque last field.
fn all_packets() -> Vec<Packet> {
    let bin = Bytes::from_static(b"d\0a\0t\0a");
    let mut v = vec![
        Packet::CanDo { function: b("f") },
        Packet::CantDo { function: b("f") },
        Packet::ResetAbilities,
        Packet::PreSleep,
        Packet::Unused,
        Packet::Noop,
    ];
    for priority in Priority::ALL {
        for background in [false, true] {
            v.push(Packet::SubmitJob {
                function: b("fn"),
                unique: b("u"),
                data: bin.clone(),
                priority,
                background,
            });
        }
    }
    v.extend([
        Packet::JobCreated { handle: b("H:x:1") },
        Packet::GrabJob,
        Packet::NoJob,
        Packet::JobAssign {
            handle: b("H:x:1"),
            function: b("fn"),
            data: bin.clone(),
        },
        Packet::WorkStatus {
            handle: b("H:x:1"),
            numerator: b("3"),
            denominator: b("10"),
        },
        Packet::WorkComplete {
            handle: b("H:x:1"),
            data: bin.clone(),
        },
        Packet::WorkFail { handle: b("H:x:1") },
        Packet::GetStatus { handle: b("H:x:1") },
        Packet::EchoReq { data: bin.clone() },
        Packet::EchoRes { data: bin.clone() },
        error("QUEUE_ERROR", "Job queue is full"),
        status_res("H:x:1", true, true, 3, 10),
        Packet::SetClientId { id: b("my id") },
        Packet::CanDoTimeout {
            function: b("f"),
            timeout: u32::MAX,
        },
        Packet::AllYours,
        Packet::WorkException {
            handle: b("H:x:1"),
            data: bin.clone(),
        },
        Packet::OptionReq {
            name: b("exceptions"),
        },
        Packet::OptionRes {
            name: b("exceptions"),
        },
        Packet::WorkData {
            handle: b("H:x:1"),
            data: bin.clone(),
        },
        Packet::WorkWarning {
            handle: b("H:x:1"),
            data: bin.clone(),
        },
        Packet::GrabJobUniq,
        Packet::JobAssignUniq {
            handle: b("H:x:1"),
            function: b("fn"),
            unique: b("u"),
            data: bin.clone(),
        },
        Packet::SubmitJobSched {
            function: b("fn"),
            unique: b("u"),
            minute: b("1"),
            hour: b("2"),
            day_of_month: b("3"),
            month: b("4"),
            day_of_week: b("5"),
            data: bin.clone(),
        },
        Packet::SubmitJobEpoch {
            function: b("fn"),
            unique: b("u"),
            when: -12,
            data: bin.clone(),
        },
    ]);
    for background in [false, true] {
        v.push(Packet::SubmitReduceJob {
            function: b("fn"),
            unique: b("u"),
            reducer: b("r"),
            aggregator: Bytes::new(),
            data: bin.clone(),
            background,
        });
    }
    v.extend([
        Packet::GrabJobAll,
        Packet::JobAssignAll {
            handle: b("H:x:1"),
            function: b("fn"),
            unique: b("u"),
            reducer: b("r"),
            data: bin.clone(),
        },
        Packet::GetStatusUnique { unique: b("u") },
        Packet::StatusResUnique {
            unique: b("u"),
            known: true,
            running: false,
            numerator: 0,
            denominator: u32::MAX,
            client_count: 7,
        },
    ]);
    v
}

#[test]
fn round_trip_all_42_types() {
    let packets = all_packets();
    let mut codes: Vec<u32> = packets.iter().map(|p| p.packet_type() as u32).collect();
    codes.sort_unstable();
    assert_eq!(codes, (1..=42).collect::<Vec<u32>>());
    for p in packets {
        let kind = p.packet_type();
        assert_eq!(PacketType::from_code(kind as u32), Some(kind));
        for magic in [Magic::Req, Magic::Res] {
            let wire = p.to_bytes(magic).unwrap();
            assert_eq!(&wire[..4], &magic.bytes());
            assert_eq!(&wire[4..8], &(kind as u32).to_be_bytes());
            assert_eq!(&wire[8..12], &(p.payload_len() as u32).to_be_bytes());
            // The separators in the payload are exactly the layout's.
            let payload = &wire[12..];
            let fields = p.fields();
            assert_eq!(fields.len(), {
                let (argc, data) = kind.layout();
                if data {
                    argc + 1
                } else {
                    argc
                }
            });
            assert_eq!(fields.len().saturating_sub(1), kind.separators());
            assert_eq!(payload, fields.join(&0u8).as_slice());
            assert_eq!(
                decode_one(&wire).unwrap(),
                Some(Frame::Packet(magic, p.clone())),
                "{}",
                kind.name()
            );
        }
        // The Encoder impls produce the same bytes.
        let mut codec = PacketCodec::default();
        let mut a = BytesMut::new();
        codec.encode((Magic::Req, &p), &mut a).unwrap();
        let mut c = BytesMut::new();
        codec.encode((Magic::Req, p.clone()), &mut c).unwrap();
        assert_eq!(a, c);
        assert_eq!(a.freeze(), p.to_bytes(Magic::Req).unwrap());
    }
}

#[test]
fn encode_rejects_nul_in_separated_fields() {
    let p = Packet::SubmitJob {
        function: Bytes::from_static(b"f\0n"),
        unique: b("u"),
        data: b("x"),
        priority: Priority::High,
        background: false,
    };
    let mut out = BytesMut::new();
    assert!(matches!(
        p.encode(Magic::Req, &mut out),
        Err(ProtocolError::NulInArgument { index: 0, .. })
    ));
    assert!(out.is_empty());
    // A single-field packet may carry a NUL (gearmand's `CAN_DO "tn\0"`).
    let p = Packet::CanDo {
        function: Bytes::from_static(b"tn\0"),
    };
    assert_eq!(
        &p.to_bytes(Magic::Req).unwrap()[..],
        b"\0REQ\0\0\0\x01\0\0\0\x03tn\0"
    );
}

#[test]
fn bad_magic_and_types() {
    // Bad magic is reported as soon as 4 bytes are there.
    assert_eq!(
        decode_one(b"\0XYZ"),
        Err(ProtocolError::BadMagic(*b"\0XYZ"))
    );
    assert_eq!(decode_one(b"\0RE"), Ok(None));
    // Text in client mode is a bad magic, never a text line.
    assert_eq!(
        decode_one(b"status\n"),
        Err(ProtocolError::BadMagic(*b"stat"))
    );
    for code in [0u32, 43, 99, u32::MAX] {
        let mut wire = b"\0REQ".to_vec();
        wire.extend(code.to_be_bytes());
        wire.extend(0u32.to_be_bytes());
        assert_eq!(decode_one(&wire), Err(ProtocolError::UnknownType(code)));
    }
}

#[test]
fn declared_size_above_limit_errors_before_buffering() {
    let mut codec = PacketCodec::new(1024);
    assert_eq!(codec.max_packet(), 1024);
    // Only the header is present: the error comes right away.
    let mut buf = BytesMut::with_capacity(12);
    buf.extend_from_slice(&hex("00 52 45 51 00 00 00 10 00 00 04 01"));
    assert_eq!(
        codec.decode_frame(&mut buf),
        Err(ProtocolError::PayloadTooLarge {
            size: 1025,
            limit: 1024
        })
    );
    assert!(buf.capacity() < 1024, "payload space was reserved");
    // Exactly at the limit is fine.
    let p = Packet::EchoReq {
        data: Bytes::from(vec![7u8; 1024]),
    };
    let mut buf = BytesMut::from(&p.to_bytes(Magic::Req).unwrap()[..]);
    assert_eq!(
        codec.decode_frame(&mut buf),
        Ok(Some(Frame::Packet(Magic::Req, p)))
    );
    // 4 GiB - 1 with the default limit.
    let mut buf = BytesMut::from(&hex("00 52 45 51 00 00 00 10 ff ff ff ff")[..]);
    let mut codec = PacketCodec::default();
    assert!(matches!(
        codec.decode_frame(&mut buf),
        Err(ProtocolError::PayloadTooLarge {
            size: 0xffff_ffff,
            ..
        })
    ));
    // A large declared size under the limit does not reserve it all up front.
    let size = (DEFAULT_MAX_PACKET - 1) as u32;
    let mut buf = BytesMut::from(&b"\0REQ\0\0\0\x10"[..]);
    buf.extend_from_slice(&size.to_be_bytes());
    assert_eq!(codec.decode_frame(&mut buf), Ok(None));
    assert!(buf.capacity() <= 4 << 20, "reserved {}", buf.capacity());
}

#[test]
fn truncated_frame_at_eof() {
    let wire = submit("rev", "same", "abc", false)
        .to_bytes(Magic::Req)
        .unwrap();
    for cut in [1, 5, 11, 12, 13, wire.len() - 1] {
        let mut codec = PacketCodec::default();
        let mut buf = BytesMut::from(&wire[..cut]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None, "cut {cut}");
        match codec.decode_eof(&mut buf) {
            Err(CodecError::Protocol(ProtocolError::Truncated(n))) => assert_eq!(n, cut),
            other => panic!("cut {cut}: {other:?}"),
        }
    }
    // A complete packet then EOF: the packet, then a clean end.
    let mut codec = PacketCodec::default();
    let mut buf = BytesMut::from(&wire[..]);
    assert!(matches!(
        codec.decode_eof(&mut buf),
        Ok(Some(Frame::Packet(..)))
    ));
    assert!(matches!(codec.decode_eof(&mut buf), Ok(None)));
    // A partial text line at EOF in server mode.
    let mut codec = PacketCodec::server(DEFAULT_MAX_PACKET, 100);
    let mut buf = BytesMut::from(&b"stat"[..]);
    assert!(matches!(
        codec.decode_eof(&mut buf),
        Err(CodecError::Protocol(ProtocolError::Truncated(4)))
    ));
}

#[test]
fn missing_separators_never_swallow_the_next_packet() {
    // SUBMIT_JOB with size 3 payload "abc" (no NULs), then an ECHO_REQ.
    let mut wire = hex("00 52 45 51 00 00 00 07 00 00 00 03 61 62 63");
    let echo = Packet::EchoReq { data: b("ping") };
    wire.extend_from_slice(&echo.to_bytes(Magic::Req).unwrap());
    let mut codec = PacketCodec::default();
    let mut buf = BytesMut::from(&wire[..]);
    assert_eq!(
        codec.decode_frame(&mut buf),
        Err(ProtocolError::MissingArguments {
            packet: "SUBMIT_JOB",
            expected: 2,
            found: 0
        })
    );
    // The bad packet was consumed whole; the next one is intact.
    assert_eq!(
        codec.decode_frame(&mut buf),
        Ok(Some(Frame::Packet(Magic::Req, echo)))
    );
    assert!(buf.is_empty());

    // One separator of two.
    assert!(matches!(
        decode_one(&hex("00 52 45 51 00 00 00 07 00 00 00 04 61 00 62 63")),
        Err(ProtocolError::MissingArguments { found: 1, .. })
    ));
    // Other layouts: WORK_STATUS needs 2, JOB_ASSIGN_ALL needs 4, ERROR needs 1.
    for (code, payload, needed) in [
        (12u32, &b"H:1\x001"[..], 2usize),
        (40, b"h\0f\0u\0r", 4),
        (19, b"CODE", 1),
        (13, b"H:1", 1),
    ] {
        let mut wire = b"\0RES".to_vec();
        wire.extend(code.to_be_bytes());
        wire.extend((payload.len() as u32).to_be_bytes());
        wire.extend_from_slice(payload);
        match decode_one(&wire) {
            Err(ProtocolError::MissingArguments { expected, .. }) => assert_eq!(expected, needed),
            other => panic!("type {code}: {other:?}"),
        }
    }
}

#[test]
fn can_do_timeout_number_length() {
    let wire = |num: &str| {
        let payload = format!("f\0{num}");
        let mut w = b"\0REQ\0\0\0\x17".to_vec();
        w.extend((payload.len() as u32).to_be_bytes());
        w.extend_from_slice(payload.as_bytes());
        w
    };
    assert_eq!(
        decode_one(&wire("00000000000000005000")).unwrap(),
        Some(Frame::Packet(
            Magic::Req,
            Packet::CanDoTimeout {
                function: b("f"),
                timeout: 5000
            }
        ))
    );
    assert_eq!(
        decode_one(&wire("000000000000000005000")),
        Err(ProtocolError::BadNumber { field: "timeout" })
    );
}

#[test]
fn text_lines_in_server_mode() {
    let mut codec = PacketCodec::server(DEFAULT_MAX_PACKET, 16);
    assert!(codec.accepts_text());
    assert_eq!(codec.max_line(), 16);
    let echo = Packet::EchoReq { data: b("x") };
    let mut buf = BytesMut::new();
    buf.extend_from_slice(b"status\n");
    buf.extend_from_slice(b"show jobs\r\n");
    buf.extend_from_slice(&echo.to_bytes(Magic::Req).unwrap());
    buf.extend_from_slice(b"\n");
    buf.extend_from_slice(b"a\rb\n");
    let mut frames = Vec::new();
    while let Some(f) = codec.decode_frame(&mut buf).unwrap() {
        frames.push(f);
    }
    assert_eq!(
        frames,
        vec![
            Frame::Text(b("status")),
            Frame::Text(b("show jobs")),
            Frame::Packet(Magic::Req, echo),
            Frame::Text(Bytes::new()),
            Frame::Text(b("a\rb")),
        ]
    );
    // Exactly at the limit, with and without \r.
    for line in [&b"0123456789abcdef\n"[..], b"0123456789abcdef\r\n"] {
        let mut buf = BytesMut::from(line);
        assert_eq!(
            codec.decode_frame(&mut buf),
            Ok(Some(Frame::Text(b("0123456789abcdef"))))
        );
    }
}

#[test]
fn text_line_over_the_limit() {
    // With a newline present.
    let mut codec = PacketCodec::server(DEFAULT_MAX_PACKET, 16);
    let mut buf = BytesMut::from(&b"0123456789abcdefg\n"[..]);
    assert_eq!(
        codec.decode_frame(&mut buf),
        Err(ProtocolError::LineTooLong { limit: 16 })
    );
    // Without a newline: an error once the limit is passed, not before.
    let mut codec = PacketCodec::server(DEFAULT_MAX_PACKET, 16);
    let mut buf = BytesMut::new();
    let mut result = Ok(None);
    for (i, &c) in b"0123456789abcdefghij".iter().enumerate() {
        buf.extend_from_slice(&[c]);
        result = codec.decode_frame(&mut buf);
        if result.is_err() {
            assert!(i >= 16, "error after only {} bytes", i + 1);
            break;
        }
        assert_eq!(result, Ok(None));
    }
    assert_eq!(result, Err(ProtocolError::LineTooLong { limit: 16 }));
}

/// Decodes `wire` fed in the given chunks; panics on any error.
fn decode_chunks<'a>(
    mut codec: PacketCodec,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Frame> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for c in chunks {
        buf.extend_from_slice(c);
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            out.push(f);
        }
    }
    assert!(codec.decode_eof(&mut buf).unwrap().is_none());
    assert!(buf.is_empty());
    out
}

fn stream(server: bool) -> (Vec<u8>, Vec<Frame>) {
    let mut wire = Vec::new();
    let mut frames = Vec::new();
    for (i, p) in all_packets().into_iter().enumerate() {
        let magic = if i % 3 == 0 { Magic::Res } else { Magic::Req };
        wire.extend_from_slice(&p.to_bytes(magic).unwrap());
        frames.push(Frame::Packet(magic, p));
        if server && i % 5 == 0 {
            let line = format!("status {i}");
            wire.extend_from_slice(line.as_bytes());
            wire.extend_from_slice(if i % 2 == 0 { b"\r\n" } else { b"\n" });
            frames.push(Frame::Text(Bytes::from(line)));
        }
    }
    (wire, frames)
}

#[test]
fn split_at_every_offset() {
    for server in [false, true] {
        let codec = || {
            if server {
                PacketCodec::server(DEFAULT_MAX_PACKET, 1024)
            } else {
                PacketCodec::default()
            }
        };
        let (wire, expected) = stream(server);
        assert_eq!(decode_chunks(codec(), [&wire[..]]), expected);
        for cut in 0..=wire.len() {
            let (a, b) = wire.split_at(cut);
            assert_eq!(decode_chunks(codec(), [a, b]), expected, "cut at {cut}");
        }
        assert_eq!(
            decode_chunks(codec(), wire.chunks(1)),
            expected,
            "byte by byte"
        );
    }
}

#[test]
fn large_payloads_across_chunk_boundaries() {
    // Payload sizes around 64 KiB (GearmaNode #55) and a few others.
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for size in [65_480usize, 65_510, 65_535, 65_536, 65_537, 200_000, 0, 1] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let p = Packet::WorkData {
            handle: b("H:x:9"),
            data: Bytes::from(data),
        };
        wire.extend_from_slice(&p.to_bytes(Magic::Res).unwrap());
        expected.push(Frame::Packet(Magic::Res, p));
    }
    for chunk in [1usize, 7, 4096, 8192, 65_536, 65_535, 100_003] {
        assert_eq!(
            decode_chunks(PacketCodec::default(), wire.chunks(chunk)),
            expected,
            "chunk {chunk}"
        );
    }
}

/// polygear's retained-result extensions (1002..=1004): exact bytes both ways.
#[test]
fn retained_result_extension_vectors() {
    // SUBMIT_RETAIN "60"
    vector(
        Magic::Req,
        Packet::SubmitRetain { seconds: 60 },
        "00 52 45 51 00 00 03 ea 00 00 00 02 36 30",
    );
    // GET_RESULT "H:x:1"
    vector(
        Magic::Req,
        Packet::GetResult { handle: b("H:x:1") },
        "00 52 45 51 00 00 03 eb 00 00 00 05 48 3a 78 3a 31",
    );
    // RESULT_RES "H:x:1\0complete\0ok\0!" (the data may hold NULs)
    vector(
        Magic::Res,
        Packet::ResultRes {
            handle: b("H:x:1"),
            state: b("complete"),
            data: b("ok\0!"),
        },
        "00 52 45 53 00 00 03 ec 00 00 00 13 48 3a 78 3a 31 00 63 6f 6d 70 6c 65 74 65 00 6f 6b 00 21",
    );
    assert_eq!(PacketType::from_code(1002), Some(PacketType::SubmitRetain));
    assert_eq!(PacketType::ResultRes.name(), "RESULT_RES");
    // A number too long for SUBMIT_RETAIN is refused, not wrapped.
    let mut wire = hex("00 52 45 51 00 00 03 ea 00 00 00 15");
    wire.extend_from_slice(b"12 34 56 78 90 12 34 56 78 90 1");
    assert!(matches!(
        decode_one(&wire),
        Err(ProtocolError::BadNumber { field: "seconds" })
    ));
}
