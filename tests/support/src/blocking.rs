//! A raw binary-protocol peer on a plain std socket (blocking, 5 s read timeouts),
//! plus packet builders: for tests that write exact bytes and read exact replies
//! without an async runtime. [`crate::raw`] is the tokio flavour.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use polygear::protocol::{Magic, Packet, PacketType};

/// A raw protocol connection with 5 s timeouts.
pub struct Raw {
    pub s: TcpStream,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        Raw::from_stream(TcpStream::connect(("127.0.0.1", port)).expect("connect"))
    }

    /// Wraps a connected socket (set to 5 s read timeouts, no Nagle).
    pub fn from_stream(s: TcpStream) -> Raw {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_nodelay(true).unwrap();
        Raw { s }
    }

    pub fn send(&mut self, p: &Packet) {
        let mut b = BytesMut::new();
        p.encode(Magic::Req, &mut b).unwrap();
        self.s.write_all(&b).unwrap();
    }

    pub fn send_raw(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }

    /// Next packet as (type code, payload bytes).
    pub fn recv_raw(&mut self) -> (u32, Vec<u8>) {
        let mut h = [0u8; 12];
        self.s.read_exact(&mut h).expect("read header");
        assert_eq!(&h[..4], b"\0RES", "response magic");
        let t = u32::from_be_bytes(h[4..8].try_into().unwrap());
        let n = u32::from_be_bytes(h[8..12].try_into().unwrap()) as usize;
        let mut p = vec![0u8; n];
        self.s.read_exact(&mut p).expect("read payload");
        (t, p)
    }

    /// Next packet, whole, as bytes on the wire.
    pub fn recv_wire(&mut self) -> Vec<u8> {
        let (t, p) = self.recv_raw();
        let mut v = b"\0RES".to_vec();
        v.extend_from_slice(&t.to_be_bytes());
        v.extend_from_slice(&(p.len() as u32).to_be_bytes());
        v.extend_from_slice(&p);
        v
    }

    pub fn recv(&mut self) -> Packet {
        let (t, p) = self.recv_raw();
        Packet::decode(PacketType::from_code(t).expect("known type"), p.into()).expect("decode")
    }

    /// Asserts nothing arrives within `ms` milliseconds.
    pub fn expect_silence(&mut self, ms: u64) {
        self.s
            .set_read_timeout(Some(Duration::from_millis(ms)))
            .unwrap();
        let mut b = [0u8; 1];
        match self.s.read(&mut b) {
            Ok(0) => panic!("connection closed unexpectedly"),
            Ok(_) => panic!("unexpected data: {:02x}", b[0]),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{e}"
            ),
        }
        self.s
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
    }

    /// Asserts the server closes the connection without sending anything more.
    pub fn expect_closed(&mut self) {
        let mut b = [0u8; 64];
        match self.s.read(&mut b) {
            Ok(0) => {}
            Ok(n) => panic!("expected close, got {:02x?}", &b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected close, got {e}"),
        }
    }

    /// Sends an admin command and reads its reply (a listing up to `.`, else one line).
    pub fn admin(&mut self, cmd: &str) -> String {
        self.send_raw(format!("{cmd}\n").as_bytes());
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        loop {
            self.s.read_exact(&mut b).expect("admin reply");
            out.push(b[0]);
            if b[0] == b'\n' {
                let s = String::from_utf8_lossy(&out);
                let last_line = s.trim_end_matches('\n').rsplit('\n').next().unwrap_or("");
                if s.starts_with("OK") || s.starts_with("ERR") || last_line == "." {
                    return s.into_owned();
                }
            }
        }
    }
}

/// Builds a packet's bytes from hex text like "00 52 45 51 ...".
pub fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

pub fn submit(function: &str, unique: &str, data: &str, bg: bool) -> Packet {
    Packet::SubmitJob {
        function: function.to_string().into(),
        unique: unique.to_string().into(),
        data: data.to_string().into(),
        priority: polygear::protocol::Priority::Normal,
        background: bg,
    }
}

pub fn can_do(f: &str) -> Packet {
    Packet::CanDo {
        function: f.to_string().into(),
    }
}

/// Handle from a JOB_CREATED packet.
pub fn created(p: Packet) -> String {
    match p {
        Packet::JobCreated { handle } => String::from_utf8(handle.to_vec()).unwrap(),
        other => panic!("expected JOB_CREATED, got {other:?}"),
    }
}
