//! Durability scenarios shared by every durable queue backend's tests
//! (server/tests/crash.rs for SQLite, queue_*.rs for the others): each takes
//! the polygeard arguments that select the queue.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use polygear::protocol::{Magic, Packet};

use super::{polygeard, Raw};

/// Submits background jobs in pipelined batches until the connection dies
/// or `limit` jobs were acknowledged; returns the acknowledged uniques.
pub fn submit_until_dead(port: u16, limit: usize) -> Vec<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut acked = Vec::new();
    let mut next = 0usize;
    'outer: while acked.len() < limit {
        let mut batch = BytesMut::new();
        let mut sent = Vec::new();
        for _ in 0..50 {
            let u = format!("job-{next}");
            next += 1;
            Packet::SubmitJob {
                function: "durable".into(),
                unique: u.clone().into(),
                data: format!("payload {u}").into(),
                priority: polygear::protocol::Priority::Normal,
                background: true,
            }
            .encode(Magic::Req, &mut batch)
            .unwrap();
            sent.push(u);
        }
        if s.write_all(&batch).is_err() {
            break;
        }
        for u in sent {
            let mut h = [0u8; 12];
            if s.read_exact(&mut h).is_err() {
                break 'outer;
            }
            let n = u32::from_be_bytes(h[8..12].try_into().unwrap()) as usize;
            let mut p = vec![0u8; n];
            if s.read_exact(&mut p).is_err() {
                break 'outer;
            }
            assert_eq!(
                u32::from_be_bytes(h[4..8].try_into().unwrap()),
                8,
                "JOB_CREATED"
            );
            acked.push(u);
        }
    }
    acked
}

/// Grabs and completes every job of `functions` on one worker connection
/// until NO_JOB, handing each job's function, unique and data to `seen`.
pub fn drain_with(port: u16, functions: &[&str], mut seen: impl FnMut(&[u8], &[u8], &[u8])) {
    let mut w = Raw::connect(port);
    for f in functions {
        w.send(&super::can_do(f));
    }
    loop {
        w.send(&Packet::GrabJobUniq);
        match w.recv() {
            Packet::JobAssignUniq {
                handle,
                function,
                unique,
                data,
            } => {
                seen(&function, &unique, &data);
                w.send(&Packet::WorkComplete {
                    handle,
                    data: "".into(),
                });
            }
            Packet::NoJob => return,
            p => panic!("{p:?}"),
        }
    }
}

/// Grabs and completes every `durable` job (each must carry `payload
/// <unique>`); returns the uniques seen.
pub fn drain(port: u16) -> Vec<String> {
    let mut seen = Vec::new();
    drain_with(port, &["durable"], |_, unique, data| {
        let u = String::from_utf8(unique.to_vec()).unwrap();
        assert_eq!(data, format!("payload {u}").as_bytes());
        seen.push(u);
    });
    seen
}

/// SIGKILL while a client pipelines background submissions: after a restart
/// on the same queue (`args`) every acknowledged job is there and runs once,
/// and completed jobs do not come back after a clean stop.
pub fn kill9_loses_no_acknowledged_job(args: &[&str]) {
    let mut d = polygeard(args);
    let port = d.port;
    // Submit from a thread; kill -9 the server while it is busy.
    let submitter = std::thread::spawn(move || submit_until_dead(port, 1_000_000));
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(600));
    d.kill();
    let acked = submitter.join().unwrap();
    assert!(
        !acked.is_empty(),
        "some jobs were acknowledged before the kill"
    );
    eprintln!(
        "{} jobs acknowledged in {:?} before kill -9",
        acked.len(),
        start.elapsed()
    );

    d.restart();
    let seen = drain(d.port);
    let seen_set: HashSet<&String> = seen.iter().collect();
    assert_eq!(seen_set.len(), seen.len(), "no job ran twice");
    let missing: Vec<&String> = acked
        .iter()
        .filter(|u| !seen_set.contains(u))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "acknowledged jobs lost: {missing:?}");

    // Completed jobs are deleted: after a clean stop and restart nothing is left.
    let mut a = Raw::connect(d.port);
    a.admin("status");
    drop(a);
    d.signal("-TERM"); // a clean stop: it exits once the pending deletes are committed
    assert!(d.wait_exit(Duration::from_secs(10)).success());
    d.restart();
    let again = drain(d.port);
    assert!(
        again.is_empty(),
        "completed jobs came back: {} of them",
        again.len()
    );
}

/// Queued background jobs and their priorities survive a restart on the same
/// queue (`args`); foreground jobs are never stored.
pub fn restart_keeps_queued_jobs_and_priorities(args: &[&str]) {
    let mut d = polygeard(args);
    let mut c = Raw::connect(d.port);
    for (u, p) in [
        ("a", polygear::protocol::Priority::Low),
        ("b", polygear::protocol::Priority::High),
    ] {
        c.send(&Packet::SubmitJob {
            function: "durable".into(),
            unique: u.into(),
            data: format!("payload {u}").into(),
            priority: p,
            background: true,
        });
        super::created(c.recv());
    }
    // Foreground jobs are never stored.
    c.send(&super::submit("durable", "fg", "payload fg", false));
    super::created(c.recv());
    drop(c);
    d.restart();
    let mut a = Raw::connect(d.port);
    assert_eq!(a.admin("prioritystatus"), "durable\t1\t0\t1\t0\n.\n");
    assert_eq!(drain(d.port), ["b", "a"]);
}

/// Grabs "durable" jobs from `port` until `total` (shared by the workers)
/// reaches `want` or `limit` passes; returns the uniques this worker got.
pub fn collect(port: u16, want: usize, total: &AtomicUsize, limit: Instant) -> Vec<String> {
    let mut w = Raw::connect(port);
    w.send(&super::can_do("durable"));
    let mut got = Vec::new();
    while total.load(Ordering::SeqCst) < want && Instant::now() < limit {
        w.send(&Packet::GrabJobUniq);
        match w.recv() {
            Packet::JobAssignUniq { handle, unique, .. } => {
                got.push(String::from_utf8(unique.to_vec()).unwrap());
                total.fetch_add(1, Ordering::SeqCst);
                w.send(&Packet::WorkComplete {
                    handle,
                    data: "".into(),
                });
            }
            Packet::NoJob => std::thread::sleep(Duration::from_millis(50)),
            p => panic!("{p:?}"),
        }
    }
    got
}
