//! Concurrency: clients, workers and disconnects at once; every foreground
//! job gets its result and the counters return to zero.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{can_do, Raw};
use polygear::protocol::{Packet, Priority};
use polygear_server::{BackgroundServer, ServerConfig};

fn worker_loop(port: u16, stop: Arc<AtomicBool>, done: Arc<AtomicU64>, die_after: Option<u64>) {
    let mut w = Raw::connect(port);
    w.s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    w.send(&can_do("st"));
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        w.send(&Packet::GrabJobUniq);
        let mut p = recv_or_none(&mut w);
        while p == Some(Packet::Noop) {
            p = recv_or_none(&mut w);
        }
        match p {
            Some(Packet::JobAssignUniq { handle, data, .. }) => {
                n += 1;
                if die_after == Some(n) {
                    return; // drop the connection while holding the job
                }
                w.send(&Packet::WorkStatus {
                    handle: handle.clone(),
                    numerator: "1".into(),
                    denominator: "2".into(),
                });
                w.send(&Packet::WorkComplete { handle, data });
                done.fetch_add(1, Ordering::Relaxed);
            }
            Some(Packet::NoJob) => {
                w.send(&Packet::PreSleep);
                let _ = recv_or_none(&mut w);
            }
            Some(other) => panic!("worker got {other:?}"),
            None => {}
        }
    }
}

fn recv_or_none(w: &mut Raw) -> Option<Packet> {
    let mut h = [0u8; 1];
    match w.s.peek(&mut h) {
        Ok(0) => None,
        Ok(_) => Some(w.recv()),
        Err(_) => None,
    }
}

#[test]
fn concurrent_clients_workers_and_disconnects() {
    run(ServerConfig::default());
}

#[test]
fn concurrent_load_with_durable_queue() {
    let dir = tempfile::tempdir().unwrap();
    run(ServerConfig {
        queue: polygear_server::QueueConfig::Sqlite {
            path: dir.path().join("q.sqlite3"),
        },
        ..ServerConfig::default()
    });
}

fn run(cfg: ServerConfig) {
    let s = BackgroundServer::start(cfg).unwrap();
    let port = s.port();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for i in 0..4 {
        let (stop, done) = (stop.clone(), done.clone());
        // Two workers vanish while holding a job.
        let die = if i < 2 { Some(5 + i as u64 * 7) } else { None };
        workers.push(std::thread::spawn(move || {
            worker_loop(port, stop, done, die)
        }));
    }
    let mut clients = Vec::new();
    for c in 0..4 {
        clients.push(std::thread::spawn(move || {
            let mut conn = Raw::connect(port);
            let total = 150;
            let (mut sent, mut completed, mut created, mut bg) = (0, 0, 0, 0);
            while completed < total {
                while sent < total && sent - completed < 8 {
                    // Some submissions share keys so they coalesce.
                    let unique = if sent % 5 == 0 {
                        format!("shared-{}", sent / 10)
                    } else {
                        String::new()
                    };
                    let prio = [Priority::High, Priority::Normal, Priority::Low][sent % 3];
                    conn.send(&Packet::SubmitJob {
                        function: "st".into(),
                        unique: unique.into(),
                        data: format!("c{c}-{sent}").into(),
                        priority: prio,
                        background: false,
                    });
                    if sent % 4 == 0 {
                        conn.send(&common::submit("st", "", "bg", true));
                        bg += 1;
                    }
                    sent += 1;
                }
                match conn.recv() {
                    Packet::JobCreated { .. } => created += 1,
                    Packet::WorkStatus { .. } => {}
                    Packet::WorkComplete { .. } => completed += 1,
                    p => panic!("client got {p:?}"),
                }
            }
            while created < total + bg {
                match conn.recv() {
                    Packet::JobCreated { .. } => created += 1,
                    p => panic!("client got {p:?}"),
                }
            }
            assert_eq!(created, total + bg);
        }));
    }
    for c in clients {
        c.join().unwrap();
    }
    // Replacement workers drain what is left (the dead ones' jobs were requeued).
    let extra: Vec<_> = (0..2)
        .map(|_| {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || worker_loop(port, stop, done, None))
        })
        .collect();
    let mut a = Raw::connect(port);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = a.admin("status");
        if st.starts_with("st\t0\t0\t") {
            break;
        }
        assert!(Instant::now() < deadline, "jobs left: {st}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(a.admin("show jobs"), ".\n");
    stop.store(true, Ordering::Relaxed);
    for w in workers.into_iter().chain(extra) {
        w.join().unwrap();
    }
    assert!(done.load(Ordering::Relaxed) > 0);
    // Worker connections close asynchronously.
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.admin("prioritystatus") != "st\t0\t0\t0\t0\n.\n" {
        assert!(Instant::now() < deadline, "{}", a.admin("prioritystatus"));
        std::thread::sleep(Duration::from_millis(20));
    }
}
