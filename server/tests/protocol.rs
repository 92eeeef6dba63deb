//! Binary protocol behaviour of the in-process server, checked byte for
//! byte against the gearmand vectors of protocol.md §9.

mod common;

use std::time::{Duration, Instant};

use common::{can_do, created, hex, submit, Raw};
use polygear::protocol::{Packet, PacketType, Priority};
use polygear_server::{BackgroundServer, ServerConfig};

fn server(f: impl FnOnce(&mut ServerConfig)) -> BackgroundServer {
    let mut cfg = ServerConfig {
        job_handle_prefix: Some("H:vm".into()),
        ..ServerConfig::default()
    };
    f(&mut cfg);
    BackgroundServer::start(cfg).expect("start server")
}

fn b(s: &str) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn echo_vectors() {
    let s = server(|_| {});
    let mut c = Raw::connect(s.port());
    c.send_raw(&hex(
        "00 52 45 51 00 00 00 10 00 00 00 0b 68 65 6c 6c 6f 00 77 6f 72 6c 64",
    ));
    assert_eq!(
        c.recv_wire(),
        hex("00 52 45 53 00 00 00 11 00 00 00 0b 68 65 6c 6c 6f 00 77 6f 72 6c 64")
    );
    c.send_raw(&hex("00 52 45 51 00 00 00 10 00 00 00 00"));
    assert_eq!(c.recv_wire(), hex("00 52 45 53 00 00 00 11 00 00 00 00"));
}

#[test]
fn background_submit_and_status_vectors() {
    let s = server(|_| {});
    let mut c = Raw::connect(s.port());
    c.send_raw(&hex(
        "00 52 45 51 00 00 00 12 00 00 00 0f 72 65 76 65 72 73 65 00 75 31 00 74 65 73 74",
    ));
    assert_eq!(
        c.recv_wire(),
        hex("00 52 45 53 00 00 00 08 00 00 00 06 48 3a 76 6d 3a 31")
    );
    c.send(&submit("reverse", "u1", "other", true));
    assert_eq!(created(c.recv()), "H:vm:1");
    c.send(&submit("reverse", "", "x", true));
    assert_eq!(created(c.recv()), "H:vm:2");
    c.send(&submit("reverse", "", "x", true));
    assert_eq!(created(c.recv()), "H:vm:3");
    c.send_raw(&hex(
        "00 52 45 51 00 00 00 0f 00 00 00 06 48 3a 76 6d 3a 31",
    ));
    assert_eq!(
        c.recv_wire(),
        hex("00 52 45 53 00 00 00 14 00 00 00 0e 48 3a 76 6d 3a 31 00 31 00 30 00 30 00 30")
    );
    c.send_raw(&hex(
        "00 52 45 51 00 00 00 0f 00 00 00 08 48 3a 76 6d 3a 39 39 39",
    ));
    assert_eq!(
        c.recv_wire(),
        hex("00 52 45 53 00 00 00 14 00 00 00 10 48 3a 76 6d 3a 39 39 39 00 30 00 30 00 30 00 30")
    );
    c.send_raw(&hex("00 52 45 51 00 00 00 29 00 00 00 02 75 31"));
    assert_eq!(
        c.recv_wire(),
        hex("00 52 45 53 00 00 00 2a 00 00 00 0c 75 31 00 31 00 30 00 30 00 30 00 30")
    );
    c.send_raw(&hex("00 52 45 51 00 00 00 29 00 00 00 04 6e 6f 70 65"));
    assert_eq!(
        c.recv_wire(),
        hex("00 52 45 53 00 00 00 2a 00 00 00 0e 6e 6f 70 65 00 30 00 30 00 30 00 30 00 30")
    );
    // A NUL ends the handle or unique key, as in gearmand (which reads them
    // with `%.*s`): the reply's first field stays unambiguous.
    c.send_raw(&hex(
        "00 52 45 51 00 00 00 0f 00 00 00 0b 48 3a 76 6d 3a 31 00 6a 75 6e 6b",
    ));
    assert_eq!(
        c.recv_wire(),
        hex("00 52 45 53 00 00 00 14 00 00 00 0e 48 3a 76 6d 3a 31 00 31 00 30 00 30 00 30")
    );
    c.send_raw(&hex("00 52 45 51 00 00 00 29 00 00 00 04 75 31 00 76"));
    assert_eq!(
        c.recv_wire(),
        hex("00 52 45 53 00 00 00 2a 00 00 00 0c 75 31 00 31 00 30 00 30 00 30 00 30")
    );
    // Running job status after WORK_STATUS 1/4.
    let mut w = Raw::connect(s.port());
    w.send(&can_do("reverse"));
    w.send(&Packet::GrabJob);
    match w.recv() {
        Packet::JobAssign { handle, data, .. } => {
            assert_eq!(&handle[..], b"H:vm:1");
            assert_eq!(&data[..], b"test", "first submission's data is kept");
        }
        p => panic!("{p:?}"),
    }
    w.send(&Packet::WorkStatus {
        handle: b("H:vm:1"),
        numerator: b("1"),
        denominator: b("4"),
    });
    w.send(&Packet::EchoReq { data: b("sync") });
    assert!(matches!(w.recv(), Packet::EchoRes { .. }));
    c.send(&Packet::GetStatus {
        handle: b("H:vm:1"),
    });
    assert_eq!(
        c.recv_wire(),
        hex("00 52 45 53 00 00 00 14 00 00 00 0e 48 3a 76 6d 3a 31 00 31 00 31 00 31 00 34")
    );
}

#[test]
fn a_handle_prefix_with_a_nul_is_refused() {
    let cfg = ServerConfig {
        job_handle_prefix: Some("H:\0".into()),
        ..ServerConfig::default()
    };
    assert!(matches!(
        BackgroundServer::start(cfg),
        Err(polygear_server::ServerError::Config(_))
    ));
}

#[test]
fn a_grab_that_finds_nothing_waits_for_the_next_job() {
    let s = server(|c| c.grab_wait = Duration::from_millis(1000));
    let (mut w, mut c) = (Raw::connect(s.port()), Raw::connect(s.port()));
    w.send(&can_do("rev"));
    w.send(&Packet::GrabJobUniq);
    w.expect_silence(100);
    // A job submitted while the GRAB waits is its answer: no NO_JOB, no NOOP.
    c.send(&submit("rev", "u1", "abc", false));
    assert_eq!(created(c.recv()), "H:vm:1");
    assert!(
        matches!(w.recv(), Packet::JobAssignUniq { ref unique, .. } if &unique[..] == b"u1"),
        "the waiting GRAB got the job"
    );
    // The result and the next GRAB in one write: the result goes out at once.
    w.send_raw(
        &[
            Packet::WorkComplete {
                handle: b("H:vm:1"),
                data: b("cba"),
            },
            Packet::GrabJob,
        ]
        .iter()
        .flat_map(|p| p.to_bytes(polygear::protocol::Magic::Req).unwrap())
        .collect::<Vec<u8>>(),
    );
    assert!(matches!(c.recv(), Packet::WorkComplete { .. }));
    // Another request ends the wait: NO_JOB first, then its reply.
    w.send(&Packet::EchoReq { data: b("e") });
    assert_eq!(w.recv(), Packet::NoJob);
    assert!(matches!(w.recv(), Packet::EchoRes { .. }));
    // Or the wait runs out.
    let t0 = Instant::now();
    w.send(&Packet::GrabJob);
    assert_eq!(w.recv(), Packet::NoJob);
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );

    // --grab-wait 0 answers at once, like gearmand; more than a second is refused.
    let s = server(|c| c.grab_wait = Duration::ZERO);
    let mut w = Raw::connect(s.port());
    w.send(&can_do("rev"));
    w.send(&Packet::GrabJob);
    assert_eq!(w.recv(), Packet::NoJob);
    let cfg = ServerConfig {
        grab_wait: Duration::from_millis(1001),
        ..ServerConfig::default()
    };
    assert!(matches!(
        BackgroundServer::start(cfg),
        Err(polygear_server::ServerError::Config(_))
    ));
}

#[test]
fn invalid_input_closes_or_errors_like_gearmand() {
    let s = server(|_| {});
    for bad in [
        "00 52 45 51 00 00 00 00 00 00 00 00",
        "00 52 45 51 00 00 00 2b 00 00 00 00",
        "00 52 45 51 00 00 00 63 00 00 00 00",
        "00 58 59 5a 00 00 00 10 00 00 00 04 70 69 6e 67",
    ] {
        let mut c = Raw::connect(s.port());
        c.send_raw(&hex(bad));
        c.expect_closed();
    }
    let invalid_command = hex(
        "00 52 45 53 00 00 00 13 00 00 00 24 49 4e 56 41 4c 49 44 5f 43 4f 4d 4d 41 4e 44 00 \
         43 6f 6d 6d 61 6e 64 20 6e 6f 74 20 65 78 70 65 63 74 65 64",
    );
    let mut c = Raw::connect(s.port());
    for t in [5u32, 6, 8, 10, 11, 24] {
        let mut p = hex("00 52 45 51");
        p.extend_from_slice(&t.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        c.send_raw(&p);
        assert_eq!(c.recv_wire(), invalid_command, "type {t}");
    }
    c.send_raw(&hex(
        "00 52 45 51 00 00 00 23 00 00 00 15 65 78 63 00 73 31 00 30 00 30 00 31 00 31 00 30 00 64 61 74 61",
    ));
    assert_eq!(c.recv_wire(), invalid_command, "SUBMIT_JOB_SCHED");
    c.send_raw(&hex("00 52 45 53 00 00 00 10 00 00 00 04 70 69 6e 67"));
    assert_eq!(
        c.recv_wire(),
        hex(
            "00 52 45 53 00 00 00 13 00 00 00 24 49 4e 56 41 4c 49 44 5f 4d 41 47 49 43 00 \
             52 65 71 75 65 73 74 20 6d 61 67 69 63 20 65 78 70 65 63 74 65 64"
        )
    );
    let long = "x".repeat(65);
    c.send(&submit("f", &long, "d", false));
    let (t, p) = c.recv_raw();
    assert_eq!((t, p.len()), (19, 0x29));
    assert_eq!(p, b"ARGUMENT_TOO_LARGE\0Unique value too large");
    c.send(&Packet::OptionReq { name: b("foo") });
    assert_eq!(
        c.recv_raw().1,
        b"UNKNOWN_OPTION\0Server does not recognize given option"
    );
    c.send(&Packet::WorkComplete {
        handle: b("H:vm:77"),
        data: b("x"),
    });
    assert_eq!(
        c.recv_raw().1,
        b"JOB_NOT_FOUND\0Job given in work result not found"
    );
    c.send(&Packet::WorkData {
        handle: b("H:vm:77"),
        data: b("x"),
    });
    assert_eq!(
        c.recv_raw().1,
        b"JOB_NOT_FOUND\0Job does not exist on server"
    );
    c.send(&Packet::WorkException {
        handle: b("H:vm:77"),
        data: b("x"),
    });
    assert_eq!(
        c.recv_raw().1,
        b"JOB_NOT_FOUND\0An exception was received for a job that does not exist"
    );
    // Still usable.
    c.send(&Packet::EchoReq { data: b("ok") });
    assert!(matches!(c.recv(), Packet::EchoRes { .. }));
}

#[test]
fn malformed_packet_gets_error_and_close_without_touching_others() {
    let s = server(|c| c.max_packet = 1 << 20);
    let mut other = Raw::connect(s.port());
    other.send(&submit("keep", "k1", "data", true));
    let h = created(other.recv());
    // SUBMIT_JOB with size 3 "abc" (no separators) followed by an ECHO_REQ.
    let mut c = Raw::connect(s.port());
    let mut bytes = hex("00 52 45 51 00 00 00 07 00 00 00 03 61 62 63");
    bytes.extend(hex("00 52 45 51 00 00 00 10 00 00 00 02 68 69"));
    c.send_raw(&bytes);
    let (t, p) = c.recv_raw();
    assert_eq!(t, 19);
    assert!(
        p.starts_with(b"INVALID_PACKET\0"),
        "{:?}",
        String::from_utf8_lossy(&p)
    );
    c.expect_closed();
    // Declared size above the limit: refused before anything is allocated.
    let mut c = Raw::connect(s.port());
    c.send_raw(&hex("00 52 45 51 00 00 00 10 7f ff ff ff"));
    let (t, p) = c.recv_raw();
    assert_eq!(t, 19);
    assert!(p.starts_with(b"ARGUMENT_TOO_LARGE\0"));
    c.expect_closed();
    // CAN_DO_TIMEOUT with an over-long number.
    let mut c = Raw::connect(s.port());
    c.send_raw(&hex("00 52 45 51 00 00 00 17 00 00 00 17 66 00 31 31 31 31 31 31 31 31 31 31 31 31 31 31 31 31 31 31 31 31 31"));
    assert_eq!(c.recv_raw().0, 19);
    c.expect_closed();
    // The other connection's job is intact.
    other.send(&Packet::GetStatus {
        handle: h.clone().into(),
    });
    match other.recv() {
        Packet::StatusRes { known, .. } => assert!(known),
        p => panic!("{p:?}"),
    }
}

#[test]
fn worker_flow_with_coalescing_vectors() {
    let s = server(|_| {});
    let mut w = Raw::connect(s.port());
    w.send_raw(&hex(
        "00 52 45 51 00 00 00 16 00 00 00 08 77 6f 72 6b 65 72 2d 41",
    ));
    w.send_raw(&hex("00 52 45 51 00 00 00 01 00 00 00 03 72 65 76"));
    w.send_raw(&hex(
        "00 52 45 51 00 00 00 17 00 00 00 09 72 65 76 74 00 35 30 30 30",
    ));
    w.send_raw(&hex("00 52 45 51 00 00 00 09 00 00 00 00"));
    assert_eq!(w.recv_wire(), hex("00 52 45 53 00 00 00 0a 00 00 00 00"));
    w.send_raw(&hex("00 52 45 51 00 00 00 04 00 00 00 00"));
    w.expect_silence(100);
    let mut c1 = Raw::connect(s.port());
    c1.send_raw(&hex(
        "00 52 45 51 00 00 00 07 00 00 00 0c 72 65 76 00 73 61 6d 65 00 61 62 63",
    ));
    assert_eq!(
        c1.recv_wire(),
        hex("00 52 45 53 00 00 00 08 00 00 00 06 48 3a 76 6d 3a 31")
    );
    assert_eq!(w.recv_wire(), hex("00 52 45 53 00 00 00 06 00 00 00 00"));
    let mut c2 = Raw::connect(s.port());
    c2.send(&submit("rev", "same", "DIFFERENT", false));
    assert_eq!(created(c2.recv()), "H:vm:1");
    w.expect_silence(100);
    // GET_STATUS_UNIQUE counts both waiting clients.
    c1.send(&Packet::GetStatusUnique { unique: b("same") });
    assert_eq!(c1.recv_raw().1, b"same\x001\x000\x000\x000\x002");
    w.send_raw(&hex("00 52 45 51 00 00 00 1e 00 00 00 00"));
    assert_eq!(
        w.recv_wire(),
        hex("00 52 45 53 00 00 00 1f 00 00 00 13 48 3a 76 6d 3a 31 00 72 65 76 00 73 61 6d 65 00 61 62 63")
    );
    let status = hex("00 52 45 51 00 00 00 0c 00 00 00 0a 48 3a 76 6d 3a 31 00 31 00 34");
    w.send_raw(&status);
    let fwd = hex("00 52 45 53 00 00 00 0c 00 00 00 0a 48 3a 76 6d 3a 31 00 31 00 34");
    assert_eq!(c1.recv_wire(), fwd);
    assert_eq!(c2.recv_wire(), fwd);
    w.send(&Packet::WorkData {
        handle: b("H:vm:1"),
        data: b("part1"),
    });
    w.send(&Packet::WorkWarning {
        handle: b("H:vm:1"),
        data: b("warn1"),
    });
    for c in [&mut c1, &mut c2] {
        assert_eq!(
            c.recv(),
            Packet::WorkData {
                handle: b("H:vm:1"),
                data: b("part1")
            }
        );
        assert_eq!(
            c.recv(),
            Packet::WorkWarning {
                handle: b("H:vm:1"),
                data: b("warn1")
            }
        );
    }
    w.send_raw(&hex(
        "00 52 45 51 00 00 00 0d 00 00 00 0a 48 3a 76 6d 3a 31 00 63 62 61",
    ));
    let done = hex("00 52 45 53 00 00 00 0d 00 00 00 0a 48 3a 76 6d 3a 31 00 63 62 61");
    assert_eq!(c1.recv_wire(), done);
    assert_eq!(c2.recv_wire(), done);
    // The key is free again: a new submission is a new job.
    c1.send(&submit("rev", "same", "abc", false));
    assert_eq!(created(c1.recv()), "H:vm:2");
    // Admin view of the worker connection.
    let mut a = Raw::connect(s.port());
    let workers = a.admin("workers");
    assert!(
        workers
            .lines()
            .any(|l| l.ends_with(" 127.0.0.1 worker-A : revt rev")),
        "{workers}"
    );
}

#[test]
fn exceptions_option_and_conversion() {
    let s = server(|_| {});
    let mut with = Raw::connect(s.port());
    with.send_raw(&hex(
        "00 52 45 51 00 00 00 1a 00 00 00 0a 65 78 63 65 70 74 69 6f 6e 73",
    ));
    assert_eq!(
        with.recv_wire(),
        hex("00 52 45 53 00 00 00 1b 00 00 00 0a 65 78 63 65 70 74 69 6f 6e 73")
    );
    let mut without = Raw::connect(s.port());
    with.send(&submit("exc", "k", "x", false));
    let h = created(with.recv());
    without.send(&submit("exc", "k", "x", false));
    assert_eq!(created(without.recv()), h);
    let mut w = Raw::connect(s.port());
    w.send(&can_do("exc"));
    w.send(&Packet::GrabJob);
    assert!(matches!(w.recv(), Packet::JobAssign { .. }));
    w.send(&Packet::WorkException {
        handle: h.clone().into(),
        data: b("boom"),
    });
    assert_eq!(
        with.recv(),
        Packet::WorkException {
            handle: h.clone().into(),
            data: b("boom")
        }
    );
    let (t, p) = without.recv_raw();
    assert_eq!(t, PacketType::WorkFail as u32);
    // Unlike gearmand (`handle\0`), no trailing NUL: libgearman clients hang on it.
    assert_eq!(
        p,
        h.clone().into_bytes(),
        "converted exception is a plain WORK_FAIL"
    );
    // WORK_FAIL and empty WORK_COMPLETE.
    with.send(&submit("exc", "", "y", false));
    let h2 = created(with.recv());
    w.send(&Packet::GrabJob);
    assert!(matches!(w.recv(), Packet::JobAssign { .. }));
    w.send(&Packet::WorkFail {
        handle: h2.clone().into(),
    });
    assert_eq!(with.recv_raw().1, h2.as_bytes());
    with.send(&submit("exc", "", "z", false));
    let h3 = created(with.recv());
    w.send(&Packet::GrabJob);
    assert!(matches!(w.recv(), Packet::JobAssign { .. }));
    w.send(&Packet::WorkComplete {
        handle: h3.clone().into(),
        data: b(""),
    });
    let mut expect = h3.into_bytes();
    expect.push(0);
    assert_eq!(with.recv_raw(), (PacketType::WorkComplete as u32, expect));
}

#[test]
fn reduce_jobs_and_grab_all() {
    let s = server(|_| {});
    let mut c = Raw::connect(s.port());
    c.send_raw(&hex(
        "00 52 45 51 00 00 00 25 00 00 00 19 65 78 63 00 72 31 00 6d 79 72 65 64 75 63 65 72 00 00 70 61 79 6c 6f 61 64",
    ));
    assert_eq!(created(c.recv()), "H:vm:1");
    c.send(&submit("exc", "ga", "zz", true));
    assert_eq!(created(c.recv()), "H:vm:2");
    let mut w = Raw::connect(s.port());
    w.send(&can_do("exc"));
    w.send(&Packet::GrabJobAll);
    assert_eq!(
        w.recv_wire(),
        hex("00 52 45 53 00 00 00 28 00 00 00 1f 48 3a 76 6d 3a 31 00 65 78 63 00 72 31 00 6d 79 72 65 64 75 63 65 72 00 70 61 79 6c 6f 61 64")
    );
    w.send(&Packet::GrabJobAll);
    assert_eq!(
        w.recv(),
        Packet::JobAssignUniq {
            handle: b("H:vm:2"),
            function: b("exc"),
            unique: b("ga"),
            data: b("zz")
        }
    );
}

#[test]
fn priorities_fifo_and_global_across_functions() {
    let s = server(|_| {});
    let mut c = Raw::connect(s.port());
    let sub = |f: &str, d: &str, p: Priority| Packet::SubmitJob {
        function: b(f),
        unique: b(""),
        data: b(d),
        priority: p,
        background: true,
    };
    for (d, p) in [
        ("low1", Priority::Low),
        ("norm1", Priority::Normal),
        ("high1", Priority::High),
        ("low2", Priority::Low),
        ("norm2", Priority::Normal),
        ("high2", Priority::High),
    ] {
        c.send(&sub("p", d, p));
        created(c.recv());
    }
    // Another function's HIGH job beats p's NORMAL/LOW ones.
    c.send(&sub("q", "qhigh", Priority::High));
    created(c.recv());
    c.send(&sub("q", "qlow", Priority::Low));
    created(c.recv());
    let mut a = Raw::connect(s.port());
    let ps = a.admin("prioritystatus");
    assert!(ps.contains("p\t2\t2\t2\t0\n"), "{ps}");
    let mut w = Raw::connect(s.port());
    w.send(&can_do("q"));
    w.send(&can_do("p"));
    let mut got = Vec::new();
    for _ in 0..8 {
        w.send(&Packet::GrabJob);
        match w.recv() {
            Packet::JobAssign { handle, data, .. } => {
                got.push(String::from_utf8(data.to_vec()).unwrap());
                w.send(&Packet::WorkComplete {
                    handle,
                    data: b(""),
                });
            }
            p => panic!("{p:?}"),
        }
    }
    let highs: Vec<_> = got[..3].to_vec();
    assert!(
        highs.contains(&"qhigh".to_string()) && highs.contains(&"high1".to_string()),
        "{got:?}"
    );
    let p_order: Vec<_> = got
        .iter()
        .filter(|d| !d.starts_with('q'))
        .cloned()
        .collect();
    assert_eq!(
        p_order,
        ["high1", "high2", "norm1", "norm2", "low1", "low2"]
    );
    let low_pos = got.iter().position(|d| d == "qlow").unwrap();
    assert!(low_pos >= 5, "{got:?}");
}

#[test]
fn lost_worker_requeues_at_head_and_wakes_sleeper() {
    let s = server(|_| {});
    let mut c = Raw::connect(s.port());
    let mut w1 = Raw::connect(s.port());
    w1.send(&can_do("r"));
    c.send(&submit("r", "", "first", false));
    let h = created(c.recv());
    c.send(&submit("r", "", "second", false));
    created(c.recv());
    w1.send(&Packet::GrabJob);
    assert!(matches!(w1.recv(), Packet::JobAssign { .. }));
    let mut w2 = Raw::connect(s.port());
    w2.send(&can_do("r"));
    w2.send(&Packet::GrabJob);
    assert!(matches!(w2.recv(), Packet::JobAssign { .. })); // takes "second"
    w2.send(&Packet::PreSleep);
    w2.expect_silence(100);
    drop(w1);
    assert_eq!(w2.recv(), Packet::Noop);
    let mut a = Raw::connect(s.port());
    let jobs = a.admin("show jobs");
    assert!(jobs.contains(&format!("{h}\t1\t0\t0\n")), "{jobs}");
    w2.send(&Packet::GrabJob);
    match w2.recv() {
        Packet::JobAssign { handle, data, .. } => {
            assert_eq!(&handle[..], h.as_bytes());
            assert_eq!(&data[..], b"first");
            w2.send(&Packet::WorkComplete {
                handle,
                data: b("done"),
            });
        }
        p => panic!("{p:?}"),
    }
    assert_eq!(
        c.recv(),
        Packet::WorkComplete {
            handle: h.into(),
            data: b("done")
        }
    );
}

#[test]
fn job_retries_limit_fails_job() {
    let s = server(|c| c.job_retries = 2);
    let mut c = Raw::connect(s.port());
    c.send(&submit("r", "", "x", false));
    let h = created(c.recv());
    for round in 0..2 {
        let mut w = Raw::connect(s.port());
        w.send(&can_do("r"));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // The previous worker's disconnect may not be processed yet.
            w.send(&Packet::GrabJob);
            match w.recv() {
                Packet::JobAssign { .. } => break,
                Packet::NoJob if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                p => panic!("round {round}: {p:?}"),
            }
        }
        drop(w);
    }
    assert_eq!(
        c.recv_raw(),
        (PacketType::WorkFail as u32, h.clone().into_bytes())
    );
    let mut a = Raw::connect(s.port());
    assert_eq!(a.admin("status"), "r\t0\t0\t0\n.\n");
}

#[test]
fn can_do_timeout_fails_job_back_to_clients() {
    let s = server(|_| {});
    let mut c = Raw::connect(s.port());
    let mut w = Raw::connect(s.port());
    w.send(&Packet::CanDoTimeout {
        function: b("tt"),
        timeout: 10,
    }); // raised to 1000 ms
    c.send(&submit("tt", "", "x", false));
    let h = created(c.recv());
    let start = Instant::now();
    w.send(&Packet::GrabJob);
    assert!(matches!(w.recv(), Packet::JobAssign { .. }));
    assert_eq!(
        c.recv_raw(),
        (PacketType::WorkFail as u32, h.clone().into_bytes())
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    w.send(&Packet::WorkComplete {
        handle: h.into(),
        data: b("late"),
    });
    assert_eq!(
        w.recv_raw().1,
        b"JOB_NOT_FOUND\0Job given in work result not found"
    );
    // A job finished in time is not failed later.
    c.send(&submit("tt", "", "y", false));
    let h2 = created(c.recv());
    w.send(&Packet::GrabJob);
    assert!(matches!(w.recv(), Packet::JobAssign { .. }));
    w.send(&Packet::WorkComplete {
        handle: h2.clone().into(),
        data: b("ok"),
    });
    assert_eq!(
        c.recv(),
        Packet::WorkComplete {
            handle: h2.into(),
            data: b("ok")
        }
    );
    c.expect_silence(1300);
}

#[test]
fn cant_do_requeues_held_job() {
    let s = server(|_| {});
    let mut c = Raw::connect(s.port());
    let mut w = Raw::connect(s.port());
    w.send(&can_do("cd"));
    c.send(&submit("cd", "", "x", true));
    let h = created(c.recv());
    w.send(&Packet::GrabJob);
    assert!(matches!(w.recv(), Packet::JobAssign { .. }));
    w.send(&Packet::CantDo { function: b("cd") });
    w.send(&Packet::EchoReq { data: b("sync") });
    assert!(matches!(w.recv(), Packet::EchoRes { .. }));
    let mut a = Raw::connect(s.port());
    assert_eq!(a.admin("status"), "cd\t1\t0\t0\n.\n");
    w.send(&Packet::WorkComplete {
        handle: h.into(),
        data: b(""),
    });
    assert_eq!(
        w.recv_raw().1,
        b"JOB_NOT_FOUND\0Job given in work result not found"
    );
}

#[test]
fn client_disconnect_semantics() {
    let s = server(|_| {});
    let mut w = Raw::connect(s.port());
    w.send(&can_do("cl"));
    // Foreground job abandoned while waiting: reaped, never run.
    let mut c = Raw::connect(s.port());
    c.send(&submit("cl", "", "abandoned", false));
    let h = created(c.recv());
    drop(c);
    let mut a = Raw::connect(s.port());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let jobs = a.admin("show jobs");
        if jobs.contains(&format!("{h}\t0\t1\t0\n")) {
            break;
        }
        assert!(Instant::now() < deadline, "{jobs}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(a.admin("status"), "cl\t1\t0\t1\n.\n");
    // Background job that a foreground client coalesced onto survives the client.
    let mut bgc = Raw::connect(s.port());
    bgc.send(&submit("cl", "keep", "bgdata", true));
    let hb = created(bgc.recv());
    let mut fg = Raw::connect(s.port());
    fg.send(&submit("cl", "keep", "ignored", false));
    assert_eq!(created(fg.recv()), hb);
    drop(fg);
    std::thread::sleep(Duration::from_millis(100));
    w.send(&Packet::GrabJob);
    match w.recv() {
        Packet::JobAssign { handle, data, .. } => {
            assert_eq!(&handle[..], hb.as_bytes());
            assert_eq!(&data[..], b"bgdata");
        }
        p => panic!("{p:?}"),
    }
    // Running job whose client left still completes normally.
    let mut c2 = Raw::connect(s.port());
    c2.send(&submit("cl", "", "running", false));
    let h2 = created(c2.recv());
    w.send(&Packet::GrabJob);
    assert!(matches!(w.recv(), Packet::JobAssign { .. }));
    drop(c2);
    std::thread::sleep(Duration::from_millis(50));
    w.send(&Packet::WorkComplete {
        handle: h2.into(),
        data: b("x"),
    });
    w.send(&Packet::WorkComplete {
        handle: hb.into(),
        data: b("x"),
    });
    w.send(&Packet::EchoReq { data: b("") });
    assert!(
        matches!(w.recv(), Packet::EchoRes { .. }),
        "no error for a job whose client left"
    );
    assert_eq!(a.admin("status"), "cl\t0\t0\t1\n.\n");
}

#[test]
fn wakeup_limit_rotates_sleepers() {
    let s = server(|c| c.worker_wakeup = 1);
    let mut ws: Vec<Raw> = (0..3).map(|_| Raw::connect(s.port())).collect();
    for w in ws.iter_mut() {
        w.send(&can_do("wk"));
        w.send(&Packet::PreSleep);
    }
    let mut a = Raw::connect(s.port());
    a.admin("status"); // the registrations are processed
    std::thread::sleep(Duration::from_millis(50));
    let mut c = Raw::connect(s.port());
    for _ in 0..4 {
        c.send(&submit("wk", "", "x", true));
        created(c.recv());
    }
    for w in ws.iter_mut() {
        assert_eq!(w.recv(), Packet::Noop);
        w.expect_silence(100);
    }
}

#[test]
fn epoch_job_is_woken_by_timer() {
    let s = server(|_| {});
    let mut w = Raw::connect(s.port());
    w.send(&can_do("ep"));
    let when = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 2;
    let mut c = Raw::connect(s.port());
    c.send(&Packet::SubmitJobEpoch {
        function: b("ep"),
        unique: b("ep1"),
        when,
        data: b("epochdata"),
    });
    let h = created(c.recv());
    w.send(&Packet::GrabJob);
    assert_eq!(w.recv(), Packet::NoJob);
    w.send(&Packet::PreSleep);
    w.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(w.recv(), Packet::Noop);
    w.send(&Packet::GrabJob);
    assert_eq!(
        w.recv(),
        Packet::JobAssign {
            handle: h.into(),
            function: b("ep"),
            data: b("epochdata")
        }
    );
}

#[test]
fn earlier_deadline_is_not_held_up_by_a_later_one() {
    // One timer task serves every deadline: a CAN_DO_TIMEOUT armed after a
    // far-off epoch job must still fire on time.
    let s = server(|_| {});
    let mut c = Raw::connect(s.port());
    let when = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 600;
    c.send(&Packet::SubmitJobEpoch {
        function: b("later"),
        unique: b("l1"),
        when,
        data: b("x"),
    });
    created(c.recv());
    let mut w = Raw::connect(s.port());
    w.send(&Packet::CanDoTimeout {
        function: b("soon"),
        timeout: 1000,
    });
    c.send(&submit("soon", "", "x", false));
    let h = created(c.recv());
    let start = Instant::now();
    w.send(&Packet::GrabJob);
    assert!(matches!(w.recv(), Packet::JobAssign { .. }));
    c.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(c.recv_raw(), (PacketType::WorkFail as u32, h.into_bytes()));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
}

#[test]
fn maxqueue_rejects_new_jobs() {
    let s = server(|_| {});
    let mut a = Raw::connect(s.port());
    assert_eq!(a.admin("create function mq"), "OK\r\n");
    assert_eq!(a.admin("maxqueue mq 2"), "OK\r\n");
    let mut c = Raw::connect(s.port());
    for _ in 0..2 {
        c.send(&submit("mq", "", "x", true));
        created(c.recv());
    }
    c.send(&submit("mq", "", "x", true));
    assert_eq!(
        c.recv_wire(),
        hex(
            "00 52 45 53 00 00 00 13 00 00 00 1d 51 55 45 55 45 5f 45 52 52 4f 52 00 \
             4a 6f 62 20 71 75 65 75 65 20 69 73 20 66 75 6c 6c"
        )
    );
    assert_eq!(a.admin("maxqueue mq 0 1 5"), "OK\r\n");
    c.send(&Packet::SubmitJob {
        function: b("mq"),
        unique: b(""),
        data: b("h"),
        priority: Priority::High,
        background: true,
    });
    created(c.recv());
    c.send(&submit("mq", "", "n", true));
    assert_eq!(c.recv_raw().1, b"QUEUE_ERROR\0Job queue is full");
}

#[test]
fn admin_commands() {
    let s = server(|_| {});
    let mut a = Raw::connect(s.port());
    assert_eq!(a.admin("status"), ".\n");
    assert_eq!(
        a.admin("version"),
        format!("OK {}\n", polygear_server::VERSION)
    );
    assert_eq!(a.admin("getpid"), format!("OK {}\n", std::process::id()));
    assert_eq!(a.admin("verbose"), "OK ERROR\n");
    assert_eq!(a.admin("show jobs"), ".\n");
    assert_eq!(a.admin("show unique jobs"), ".\n");
    assert_eq!(
        a.admin("bogus"),
        "ERR UNKNOWN_COMMAND Unknown+server+commandbogus\r\n"
    );
    assert_eq!(a.admin("show foo"), "ERR UNKNOWN_SHOW_ARGUMENTS\r\n");
    assert_eq!(
        a.admin("shutdown"),
        "ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n"
    );
    assert_eq!(a.admin("cancel job H:nothing:1"), "ERR UNKNOWN_JOB\r\n");
    assert_eq!(
        a.admin("drop function nosuch"),
        "ERR function not found\r\n"
    );
    assert_eq!(
        a.admin("maxqueue"),
        "ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+maxqueue\r\n"
    );
    // cancel job: clients get WORK_FAIL; the waiting job is never run.
    let mut c = Raw::connect(s.port());
    c.send(&submit("cx", "", "x", false));
    let h = created(c.recv());
    assert_eq!(a.admin(&format!("cancel job {h}")), "OK\r\n");
    assert_eq!(
        c.recv_raw(),
        (PacketType::WorkFail as u32, h.clone().into_bytes())
    );
    let mut w = Raw::connect(s.port());
    w.send(&can_do("cx"));
    w.send(&Packet::GrabJob);
    assert_eq!(w.recv(), Packet::NoJob);
    w.send(&Packet::CantDo { function: b("cx") });
    w.send(&Packet::EchoReq { data: b("sync") });
    assert!(matches!(w.recv(), Packet::EchoRes { .. }));
    assert_eq!(a.admin("STATUS"), "cx\t0\t0\t0\n.\n");
    assert_eq!(a.admin("drop function CX"), "OK\r\n");
    assert_eq!(a.admin("status\nversion").lines().next(), Some("."));
}

#[test]
fn admin_shutdown_when_enabled() {
    let s = server(|c| c.allow_shutdown = true);
    let mut a = Raw::connect(s.port());
    assert_eq!(a.admin("shutdown"), "OK\r\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(s.local_addr()).is_ok() {
        assert!(Instant::now() < deadline, "server still accepting");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn slow_reader_is_bounded() {
    let s = server(|c| c.max_output = 2 << 20);
    let mut c = Raw::connect(s.port());
    let payload = vec![b'x'; 64 << 10];
    let mut echo = polygear::protocol::Packet::EchoReq {
        data: payload.into(),
    }
    .to_bytes(polygear::protocol::Magic::Req)
    .unwrap()
    .to_vec();
    let one = echo.clone();
    for _ in 0..7 {
        echo.extend_from_slice(&one);
    }
    c.s.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Write until the server stops reading (backpressure) or drops us.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        if std::io::Write::write_all(&mut c.s, &echo).is_err() {
            break;
        }
    }
    // Other connections are still served.
    let mut d = Raw::connect(s.port());
    d.send(&Packet::EchoReq { data: b("alive") });
    assert_eq!(d.recv(), Packet::EchoRes { data: b("alive") });
}

#[test]
fn replies_survive_peer_half_close() {
    let s = server(|_| {});
    let mut c = Raw::connect(s.port());
    c.send_raw(b"version\n");
    c.send(&Packet::EchoReq { data: b("hi") });
    c.s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut c.s, &mut all).unwrap();
    let mut want = format!("OK {}\n", polygear_server::VERSION).into_bytes();
    want.extend(hex("00 52 45 53 00 00 00 11 00 00 00 02 68 69"));
    assert_eq!(all, want);
}

#[test]
fn random_garbage_never_takes_the_server_down() {
    let s = server(|c| c.max_packet = 1 << 16);
    let mut seed: u64 = 0x1234_5678_9abc_def0;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..200 {
        let mut c = Raw::connect(s.port());
        let mut bytes = Vec::new();
        // Mostly well-formed headers with random types and payloads, some pure noise.
        for _ in 0..8 {
            if round % 4 == 0 {
                bytes.extend((0..32).map(|_| rnd() as u8));
            } else {
                let t = (rnd() % 45) as u32;
                let len = (rnd() % 40) as u32;
                bytes.extend_from_slice(b"\0REQ");
                bytes.extend_from_slice(&t.to_be_bytes());
                bytes.extend_from_slice(&len.to_be_bytes());
                bytes.extend((0..len).map(|_| {
                    if rnd() % 4 == 0 {
                        0
                    } else {
                        b'a' + (rnd() % 26) as u8
                    }
                }));
            }
        }
        let _ = std::io::Write::write_all(&mut c.s, &bytes);
    }
    let mut c = Raw::connect(s.port());
    c.send(&Packet::EchoReq { data: b("alive") });
    assert_eq!(c.recv(), Packet::EchoRes { data: b("alive") });
    let mut a = Raw::connect(s.port());
    assert!(a.admin("status").ends_with(".\n"));
}

#[test]
fn extreme_epoch_times() {
    let s = server(|_| {});
    let mut c = Raw::connect(s.port());
    for (u, when) in [("far", i64::MAX), ("past", -5), ("zero", 0)] {
        c.send(&Packet::SubmitJobEpoch {
            function: b("ex"),
            unique: b(u),
            when,
            data: b(u),
        });
        created(c.recv());
    }
    let mut w = Raw::connect(s.port());
    w.send(&can_do("ex"));
    let mut got = Vec::new();
    for _ in 0..3 {
        w.send(&Packet::GrabJobUniq);
        match w.recv() {
            Packet::JobAssignUniq { unique, .. } => {
                got.push(String::from_utf8(unique.to_vec()).unwrap())
            }
            Packet::NoJob => got.push("none".into()),
            p => panic!("{p:?}"),
        }
    }
    assert_eq!(got, ["past", "zero", "none"]);
    // An epoch time that is not a number is refused with an ERROR, not dropped silently.
    let mut payload = b"ex\0u\0".to_vec();
    payload.extend_from_slice(&[b'9'; 23]);
    payload.extend_from_slice(b"\0d");
    let mut pkt = hex("00 52 45 51 00 00 00 24");
    pkt.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    pkt.extend_from_slice(&payload);
    c.send_raw(&pkt);
    let (t, p) = c.recv_raw();
    assert_eq!(t, 19);
    assert!(
        p.starts_with(b"INVALID_PACKET\0"),
        "{}",
        String::from_utf8_lossy(&p)
    );
}

#[test]
fn can_do_timeout_can_requeue_like_gearmand() {
    let s = server(|c| c.timeout_requeue = true);
    let mut c = Raw::connect(s.port());
    let mut w = Raw::connect(s.port());
    w.send(&Packet::CanDoTimeout {
        function: b("tq"),
        timeout: 1000,
    });
    c.send(&submit("tq", "", "x", false));
    let h = created(c.recv());
    w.send(&Packet::GrabJob);
    assert!(matches!(w.recv(), Packet::JobAssign { .. }));
    // After the timeout the job waits again (retry counted) and nobody is told.
    let mut a = Raw::connect(s.port());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a.admin("show jobs").contains(&format!("{h}\t1\t0\t0\n")) {
        assert!(Instant::now() < deadline, "not requeued");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(a.admin("status"), "tq\t1\t0\t1\n.\n");
    w.send(&Packet::WorkComplete {
        handle: h.clone().into(),
        data: b("late"),
    });
    assert_eq!(
        w.recv_raw().1,
        b"JOB_NOT_FOUND\0Job given in work result not found"
    );
    w.send(&Packet::GrabJob);
    assert!(matches!(w.recv(), Packet::JobAssign { .. }));
    w.send(&Packet::WorkComplete {
        handle: h.clone().into(),
        data: b("ok"),
    });
    assert_eq!(
        c.recv(),
        Packet::WorkComplete {
            handle: h.into(),
            data: b("ok")
        }
    );
}
