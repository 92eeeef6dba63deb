//! Shared helpers for the polygeard integration tests: raw protocol
//! connections and server processes on free loopback ports.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use polygear::protocol::{Magic, Packet, PacketType};

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A job server child process, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    program: String,
    args: Vec<String>,
}

impl Daemon {
    /// Starts `polygeard` on a free port with extra arguments.
    pub fn polygeard(extra: &[&str]) -> Daemon {
        Daemon::spawn(env!("CARGO_BIN_EXE_polygeard"), free_port(), extra, true)
    }

    /// Starts `polygeard` on a given port.
    pub fn polygeard_on(port: u16, extra: &[&str]) -> Daemon {
        Daemon::spawn(env!("CARGO_BIN_EXE_polygeard"), port, extra, true)
    }

    /// Starts the C gearmand if installed.
    pub fn gearmand(extra: &[&str]) -> Option<Daemon> {
        let bin = "/usr/sbin/gearmand";
        if !std::path::Path::new(bin).exists() {
            return None;
        }
        Some(Daemon::spawn(bin, free_port(), extra, false))
    }

    fn spawn(program: &str, port: u16, extra: &[&str], ours: bool) -> Daemon {
        let mut port = port;
        for attempt in 0.. {
            let mut args: Vec<String> = vec![
                "-L".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ];
            if ours {
                args.extend(["-l".into(), "none".into()]);
            } else {
                args.extend([
                    "--log-file".into(),
                    "none".into(),
                    "-P".into(),
                    format!("/tmp/gearmand-test-{port}.pid"),
                ]);
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            let mut d = Daemon {
                child: Command::new(program)
                    .args(&args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("spawn server"),
                port,
                program: program.into(),
                args,
            };
            if d.wait_ready() {
                return d;
            }
            // Another process took the port between free_port() and bind: retry.
            assert!(attempt < 5, "could not start {program} on a free port");
            d.kill9();
            port = free_port();
        }
        unreachable!()
    }

    /// Waits until *this* child answers on the port (checked with the admin
    /// `getpid`, so another server or a self-connect is not mistaken for it).
    /// `false` if the port belongs to someone else.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                eprintln!("server exited during startup: {st}");
                return false;
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                if s.local_addr().ok() != s.peer_addr().ok() {
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let _ = s.write_all(b"getpid\n");
                    let mut line = Vec::new();
                    let mut b = [0u8; 1];
                    while s.read(&mut b).map(|n| n == 1).unwrap_or(false) && b[0] != b'\n' {
                        line.push(b[0]);
                    }
                    let want = format!("OK {}", self.child.id());
                    if String::from_utf8_lossy(&line).trim_end() == want {
                        return true;
                    }
                    return false;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server did not start listening on {}", self.port);
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the same command again (same port and arguments).
    pub fn restart(&mut self) {
        self.kill9();
        self.child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("respawn server");
        assert!(
            self.wait_ready(),
            "restarted server is not serving port {}",
            self.port
        );
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A raw protocol connection with 5 s timeouts.
pub struct Raw {
    pub s: TcpStream,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
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
