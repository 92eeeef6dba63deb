//! Attacks found by probing polygeard (issue 18), each as "a bystander's
//! ECHO keeps answering within a second while it runs" or as a bound on
//! memory, never as a micro-timing: duplicate CAN_DO floods, never-reading
//! `status` pipeliners, a worker with 100,000 functions pipelining GRABs,
//! `drop function` with many functions known, streams of distinct function
//! names, over-long names and too many functions on one connection.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{can_do, polygeard, Raw, TestServer};
use polygear::protocol::{Magic, Packet, PacketType};

/// The attacks run one at a time: each measures a bystander's latency, which
/// another attack on the same two cores would distort.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// An ECHO on an already-open connection every 50 ms, on its own thread;
/// [`Bystander::answered_within_a_second`] stops it and checks the slowest answer.
struct Bystander {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Duration>,
}

impl Bystander {
    fn start(port: u16) -> Bystander {
        let stop = Arc::new(AtomicBool::new(false));
        let mut raw = Raw::connect(port);
        raw.s
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            while !flag.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                raw.send(&Packet::EchoReq {
                    data: "ping".into(),
                });
                assert_eq!(raw.recv_raw().0, PacketType::EchoRes as u32);
                worst = worst.max(t0.elapsed());
                std::thread::sleep(Duration::from_millis(50));
            }
            worst
        });
        Bystander { stop, thread }
    }

    /// Stops it; panics unless every ECHO was answered within a second.
    fn answered_within_a_second(self) {
        self.stop.store(true, Ordering::Relaxed);
        let worst = self.thread.join().expect("bystander thread");
        assert!(worst < Duration::from_secs(1), "bystander waited {worst:?}");
    }
}

fn encode(packets: impl IntoIterator<Item = Packet>) -> BytesMut {
    let mut b = BytesMut::new();
    for p in packets {
        p.encode(Magic::Req, &mut b).unwrap();
    }
    b
}

/// Waits until everything sent on `raw` was applied (an ECHO round trip).
fn applied(raw: &mut Raw) {
    raw.s
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    raw.send(&Packet::EchoReq {
        data: "sync".into(),
    });
    assert_eq!(raw.recv_raw().0, PacketType::EchoRes as u32);
}

/// An admin listing (`status`, `metrics`) on a new connection, read in
/// large chunks (a `status` of 10,000 functions is megabytes).
fn listing(port: u16, cmd: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while !(out == b".\n" || out.ends_with(b"\n.\n")) {
        let n = s.read(&mut buf).expect("admin reply");
        assert!(n > 0, "connection closed during {cmd}");
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(out).unwrap()
}

/// The value of one line of the admin `metrics` listing.
fn metric(port: u16, name: &str) -> u64 {
    let text = listing(port, "metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in {text:?}"))
}

/// The server process's resident memory in MiB.
fn rss_mib(server: &TestServer) -> u64 {
    let pid = server.pid().expect("polygeard pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb / 1024
}

fn status_line(port: u16, function: &str) -> Option<String> {
    listing(port, "status")
        .lines()
        .find(|l| l.split('\t').next() == Some(function))
        .map(str::to_string)
}

#[test]
fn duplicate_can_do_flood_does_not_freeze_the_server() {
    let _serial = serial();
    let server = polygeard(&["-q", "builtin"]);
    let port = server.port;
    let by = Bystander::start(port);
    let mut attacker = Raw::connect(port);
    let flood = encode((0..300_000).map(|_| can_do("dupfn")));
    attacker.send_raw(&flood);
    // Registrations are counted like gearmand's (duplicates included) ...
    let t0 = Instant::now();
    loop {
        let line = status_line(port, "dupfn").unwrap_or_default();
        if line.ends_with("\t300000") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "status: {line}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // ... a job of that function costs what any job costs ...
    let mut client = Raw::connect(port);
    client.send(&common::submit("dupfn", "u1", "x", true));
    assert_eq!(client.recv_raw().0, PacketType::JobCreated as u32);
    // ... and the disconnect cleans up at once.
    drop(attacker);
    let t0 = Instant::now();
    while status_line(port, "dupfn").unwrap_or_default() != "dupfn\t1\t0\t0" {
        assert!(t0.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(20));
    }
    by.answered_within_a_second();
}

#[test]
fn never_reading_status_pipeliners_hold_bounded_memory() {
    let _serial = serial();
    let server = polygeard(&["-q", "builtin"]);
    let port = server.port;
    // 5,000 functions with 400-byte names: `status` is a 2 MB reply.
    let mut worker = Raw::connect(port);
    worker.send_raw(&encode((0..5_000).map(|i| can_do(&format!("{i:0>400}")))));
    applied(&mut worker);
    assert!(listing(port, "status").lines().count() > 5_000);
    let before = rss_mib(&server);
    let by = Bystander::start(port);
    let readers: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(&b"status\n".repeat(30)).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let grown = rss_mib(&server).saturating_sub(before);
    // Each stops being read once ~4 MiB of its replies wait (buffering
    // them all, as before, was 16 x 30 x 2 MB = 960 MB).
    assert!(grown < 300, "server grew by {grown} MiB");
    by.answered_within_a_second();
    drop(readers);
}

#[test]
fn over_the_server_wide_budget_the_biggest_holders_are_dropped() {
    let _serial = serial();
    let server = polygeard(&["-q", "builtin", "--max-buffered", "16777216"]);
    let port = server.port;
    let mut worker = Raw::connect(port);
    worker.send_raw(&encode((0..5_000).map(|i| can_do(&format!("{i:0>400}")))));
    applied(&mut worker);
    assert!(listing(port, "status").lines().count() > 5_000);
    let by = Bystander::start(port);
    let mut readers: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(&b"status\n".repeat(30)).unwrap();
            s
        })
        .collect();
    let t0 = Instant::now();
    while metric(port, "connections_dropped_over_budget") == 0 {
        assert!(t0.elapsed() < Duration::from_secs(20), "nobody dropped");
        std::thread::sleep(Duration::from_millis(100));
    }
    while metric(port, "buffered_bytes") > 16 << 20 {
        assert!(t0.elapsed() < Duration::from_secs(20), "still over budget");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A dropped reader finds its connection closed after what was sent.
    let closed = readers.iter_mut().any(|s| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut sink = vec![0u8; 1 << 20];
        loop {
            match s.read(&mut sink) {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    });
    assert!(closed);
    by.answered_within_a_second();
}

#[test]
fn a_grab_costs_the_same_with_100k_functions_registered() {
    let _serial = serial();
    let server = polygeard(&["-q", "builtin", "--max-worker-functions", "0"]);
    let port = server.port;
    let mut worker = Raw::connect(port);
    worker.send_raw(&encode((0..100_000).map(|i| can_do(&format!("f{i}")))));
    // A job for one of them, at the end of the worker's list.
    let mut client = Raw::connect(port);
    client.send(&common::submit("f99999", "u", "data", true));
    assert_eq!(client.recv_raw().0, PacketType::JobCreated as u32);
    let by = Bystander::start(port);
    let t0 = Instant::now();
    worker.send_raw(&encode((0..5_000).map(|_| Packet::GrabJobUniq)));
    worker
        .s
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let (t, _) = worker.recv_raw();
    assert_eq!(t, PacketType::JobAssignUniq as u32, "the one job first");
    for _ in 1..5_000 {
        assert_eq!(worker.recv_raw().0, PacketType::NoJob as u32);
    }
    let took = t0.elapsed();
    by.answered_within_a_second();
    assert!(took < Duration::from_secs(10), "5,000 GRABs took {took:?}");
}

#[test]
fn drop_function_is_cheap_with_100k_functions_known() {
    let _serial = serial();
    let server = polygeard(&["-q", "builtin", "--max-idle-functions", "0"]);
    let port = server.port;
    let mut admin = Raw::connect(port);
    admin.send_raw(
        (0..100_000)
            .map(|i| format!("create function f{i}\n"))
            .collect::<String>()
            .as_bytes(),
    );
    admin
        .s
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut ok = vec![0u8; 4 * 100_000];
    admin.s.read_exact(&mut ok).unwrap();
    assert!(ok.chunks(4).all(|c| c == b"OK\r\n"));
    let by = Bystander::start(port);
    // Case-insensitive, like gearmand.
    admin.send_raw(
        (0..2_000)
            .map(|i| format!("drop function F{i}\n"))
            .collect::<String>()
            .as_bytes(),
    );
    let mut ok = vec![0u8; 4 * 2_000];
    admin.s.read_exact(&mut ok).unwrap();
    assert!(ok.chunks(4).all(|c| c == b"OK\r\n"));
    by.answered_within_a_second();
    assert_eq!(metric(port, "functions"), 98_000);
    assert_eq!(
        Raw::connect(port).admin("drop function f1"),
        "ERR function not found\r\n"
    );
}

#[test]
fn a_stream_of_distinct_function_names_cannot_grow_memory_forever() {
    let _serial = serial();
    let server = polygeard(&["-q", "builtin", "--max-idle-functions", "1000"]);
    let port = server.port;
    // A function with a worker and one with a job are never forgotten.
    let mut keeper = Raw::connect(port);
    keeper.send(&can_do("kept-by-worker"));
    let mut client = Raw::connect(port);
    client.send(&common::submit("kept-by-job", "u", "x", true));
    assert_eq!(client.recv_raw().0, PacketType::JobCreated as u32);
    let by = Bystander::start(port);
    for round in 0..20 {
        let mut w = Raw::connect(port);
        w.send_raw(&encode(
            (0..10_000).map(|i| can_do(&format!("r{round}-{i}"))),
        ));
        w.send(&Packet::EchoReq { data: "x".into() });
        assert_eq!(w.recv_raw().0, PacketType::EchoRes as u32);
    }
    // The last connection's close is handled asynchronously.
    let t0 = Instant::now();
    while metric(port, "functions") > 1_002 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(metric(port, "functions_forgotten") >= 199_000);
    let status = listing(port, "status");
    assert!(status.contains("kept-by-worker\t0\t0\t1\n"), "{status}");
    assert!(status.contains("kept-by-job\t1\t0\t0\n"), "{status}");
    // The 1,000 kept are the most recently idle: the last connection's.
    let idle: Vec<&str> = status.lines().filter(|l| l.starts_with('r')).collect();
    assert_eq!(idle.len(), 1_000);
    assert!(idle
        .iter()
        .all(|l| l.starts_with("r19-") && l.ends_with("\t0\t0\t0")));
    by.answered_within_a_second();
}

#[test]
fn over_long_function_names_and_too_many_functions_are_refused() {
    let _serial = serial();
    let server = polygeard(&["-q", "builtin", "--max-worker-functions", "10"]);
    let port = server.port;
    let mut c = Raw::connect(port);
    let long = "f".repeat(1 << 20);
    c.send(&can_do(&long));
    let (t, p) = c.recv_raw();
    assert_eq!(t, PacketType::Error as u32);
    let text = String::from_utf8_lossy(&p);
    assert!(
        text.starts_with("ARGUMENT_TOO_LARGE\0") && text.contains("512 bytes"),
        "{text}"
    );
    c.send(&common::submit(&long, "u", "x", false));
    let (t, p) = c.recv_raw();
    assert_eq!(t, PacketType::Error as u32);
    assert!(String::from_utf8_lossy(&p).starts_with("ARGUMENT_TOO_LARGE\0"));
    // A 512-byte name is fine; the connection still works.
    c.send(&can_do(&"g".repeat(512)));
    for i in 0..9 {
        c.send(&can_do(&format!("f{i}")));
    }
    c.send(&can_do("one-too-many"));
    let (t, p) = c.recv_raw();
    assert_eq!(t, PacketType::Error as u32);
    let text = String::from_utf8_lossy(&p);
    assert!(
        text.starts_with("TOO_MANY_FUNCTIONS\0") && text.contains("10 functions"),
        "{text}"
    );
    // A duplicate of a registered function is not a new one.
    c.send(&can_do("f0"));
    c.send(&Packet::EchoReq { data: "ok".into() });
    assert_eq!(c.recv_raw(), (PacketType::EchoRes as u32, b"ok".to_vec()));
    assert_eq!(metric(port, "requests_refused"), 3);
    let status = listing(port, "status");
    assert!(!status.contains("one-too-many"), "{status}");
    assert!(status.contains("f0\t0\t0\t2\n"), "{status}");
}

#[test]
fn half_sent_big_packets_count_against_the_budget_too() {
    let _serial = serial();
    let server = polygeard(&["-q", "builtin", "--max-buffered", "16777216"]);
    let port = server.port;
    let by = Bystander::start(port);
    // Four peers each declare a 32 MiB SUBMIT_JOB and send 8 MiB of it.
    let mut header = b"\0REQ".to_vec();
    header.extend_from_slice(&(PacketType::SubmitJobBg as u32).to_be_bytes());
    header.extend_from_slice(&(32u32 << 20).to_be_bytes());
    let mut peers: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(&header).unwrap();
            s
        })
        .collect();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..8 {
        for s in &mut peers {
            let _ = s.write_all(&chunk); // a dropped peer's write fails
        }
    }
    let t0 = Instant::now();
    while metric(port, "connections_dropped_over_budget") == 0 {
        assert!(t0.elapsed() < Duration::from_secs(20), "nobody dropped");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Dropped connections give their buffers back as their tasks end.
    while metric(port, "buffered_bytes") > 16 << 20 {
        assert!(t0.elapsed() < Duration::from_secs(20), "still over budget");
        std::thread::sleep(Duration::from_millis(100));
    }
    by.answered_within_a_second();
}
