//! Durability: background jobs acknowledged before a `kill -9` are all
//! there after a restart on the same database, and each runs exactly once.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{polygeard, Raw};
use polygear::protocol::{Magic, Packet};

/// Submits background jobs in pipelined batches until the connection dies
/// or `limit` jobs were acknowledged; returns the acknowledged uniques.
fn submit_until_dead(port: u16, limit: usize) -> Vec<String> {
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

/// Grabs and completes every job; returns the uniques seen.
fn drain(port: u16) -> Vec<String> {
    let mut w = Raw::connect(port);
    w.send(&common::can_do("durable"));
    let mut seen = Vec::new();
    loop {
        w.send(&Packet::GrabJobUniq);
        match w.recv() {
            Packet::JobAssignUniq {
                handle,
                unique,
                data,
                ..
            } => {
                let u = String::from_utf8(unique.to_vec()).unwrap();
                assert_eq!(&data[..], format!("payload {u}").as_bytes());
                seen.push(u);
                w.send(&Packet::WorkComplete {
                    handle,
                    data: "".into(),
                });
            }
            Packet::NoJob => return seen,
            p => panic!("{p:?}"),
        }
    }
}

#[test]
fn kill9_loses_no_acknowledged_job_and_runs_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queue.sqlite3");
    let db = db.to_str().unwrap();
    let mut d = polygeard(&["-q", "libsqlite3", "--libsqlite3-db", db]);
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

#[test]
fn restart_keeps_queued_jobs_and_priorities() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.sqlite3");
    let db = db.to_str().unwrap();
    let mut d = polygeard(&["--libsqlite3-db", db]);
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
        common::created(c.recv());
    }
    // Foreground jobs are never stored.
    c.send(&common::submit("durable", "fg", "payload fg", false));
    common::created(c.recv());
    drop(c);
    d.restart();
    let mut a = Raw::connect(d.port);
    assert_eq!(a.admin("prioritystatus"), "durable\t1\t0\t1\t0\n.\n");
    assert_eq!(drain(d.port), ["b", "a"]);
}
