//! The core used the way the Python and Ruby bindings use it: blocking
//! threads driving a current-thread runtime (nobody drives it in between),
//! and a busy worker pipelining several GRABs. Against gearmand and polygeard.
//! Run: `cargo test -p polygear-interop --test driven`

use std::collections::HashSet;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use polygear::protocol::Packet;
use polygear::{Worker, WorkerOptions};
use polygear_interop::raw::Raw;
use polygear_interop::{ServerKind, TestServer};
use tokio::time::timeout;

const TEST_LIMIT: Duration = Duration::from_secs(60);
const STEP: Duration = Duration::from_secs(15);

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn worker(server: &TestServer, concurrency: usize, function: &str) -> Worker {
    let w = Worker::new(WorkerOptions {
        servers: vec![server.addr()],
        concurrency,
        poll_interval: Duration::from_secs(2),
        ..WorkerOptions::default()
    })
    .unwrap();
    w.register(function, None).unwrap();
    w
}

/// A job's WORK_STATUS leaves while its thread is busy and no thread drives
/// the runtime: Job methods write to the socket themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_packets_leave_while_nobody_drives_the_runtime() {
    for kind in ServerKind::selected() {
        let server = TestServer::start(kind);
        let w = worker(&server, 1, "driven_status");
        let (status_seen_tx, status_seen_rx) = mpsc::channel::<()>();
        let thread_worker = w.clone();
        let thread = std::thread::spawn(move || {
            let rt = current_thread();
            let job = rt.block_on(thread_worker.next_job()).expect("a job");
            job.send_status(1, 2).unwrap();
            // Blocks this (the only driving) thread until the client saw the status.
            status_seen_rx
                .recv_timeout(STEP)
                .expect("the status never reached the client");
            let data = job.data().clone();
            job.complete(data).unwrap();
            thread_worker.stop();
            rt.block_on(thread_worker.shutdown());
        });
        timeout(TEST_LIMIT, async {
            let mut c = Raw::connect(&server.addr(), STEP).await;
            let handle = c.submit("driven_status", "", "payload", false).await;
            match c.recv().await {
                Packet::WorkStatus {
                    handle: h,
                    numerator,
                    denominator,
                } => {
                    assert_eq!(h, handle);
                    assert_eq!((&numerator[..], &denominator[..]), (&b"1"[..], &b"2"[..]));
                }
                other => panic!("{}: expected WORK_STATUS, got {other:?}", kind.name()),
            }
            status_seen_tx.send(()).unwrap();
            match c.recv().await {
                Packet::WorkComplete { data, .. } => assert_eq!(&data[..], b"payload"),
                other => panic!("{}: expected WORK_COMPLETE, got {other:?}", kind.name()),
            }
        })
        .await
        .expect("test timed out");
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
    }
}

/// A worker with several slots drains a queue with several GRABs in
/// flight: every job runs exactly once, on blocking threads sharing one
/// current-thread runtime (as the bindings do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_worker_on_blocking_threads_runs_every_job_once() {
    const JOBS: usize = 300;
    const THREADS: usize = 6;
    for kind in ServerKind::selected() {
        let server = TestServer::start(kind);
        timeout(TEST_LIMIT, async {
            let mut c = Raw::connect(&server.addr(), STEP).await;
            for i in 0..JOBS {
                c.submit("driven_drain", &format!("u{i}"), format!("{i}"), true)
                    .await;
            }
        })
        .await
        .expect("submitting timed out");

        let w = worker(&server, THREADS, "driven_drain");
        let rt = std::sync::Arc::new(current_thread());
        let (done_tx, done_rx) = mpsc::channel::<Bytes>();
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (w, done, rt) = (w.clone(), done_tx.clone(), rt.clone());
                std::thread::spawn(move || {
                    while let Some(job) = rt.block_on(w.next_job()) {
                        done.send(job.data().clone()).unwrap();
                        job.complete(Bytes::new()).unwrap();
                    }
                })
            })
            .collect();
        drop(done_tx);
        let seen = tokio::task::spawn_blocking(move || {
            let mut seen = HashSet::new();
            while seen.len() < JOBS {
                let data = done_rx.recv_timeout(STEP).expect("jobs stopped coming");
                assert!(seen.insert(data.clone()), "job {data:?} ran twice");
            }
            seen
        })
        .await
        .unwrap();
        assert_eq!(seen.len(), JOBS, "{}", kind.name());
        w.stop();
        // Joined, shut down and dropped outside the test's own runtime.
        tokio::task::spawn_blocking(move || {
            for t in threads {
                t.join().unwrap();
            }
            rt.block_on(w.shutdown());
        })
        .await
        .unwrap();
    }
}

/// A blocking client on a current-thread runtime whose server restarted
/// while it sat idle (so its reader never ran): the next submit reconnects
/// instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_blocking_client_survives_a_server_restart() {
    use polygear::{Client, ClientOptions, SubmitOptions};
    for kind in ServerKind::selected() {
        let mut server = TestServer::start(kind);
        let w = worker(&server, 1, "driven_restart");
        let run = {
            let w = w.clone();
            tokio::spawn(async move {
                w.run(|job| async move {
                    let data = job.data().clone();
                    let _ = job.complete(data);
                })
                .await
            })
        };
        let client = Client::new(ClientOptions {
            servers: vec![server.addr()],
            job_timeout: Some(STEP),
            ..ClientOptions::default()
        })
        .unwrap();
        let rt = std::sync::Arc::new(current_thread());
        let submit =
            |client: Client, rt: std::sync::Arc<tokio::runtime::Runtime>, data: &'static str| {
                tokio::task::spawn_blocking(move || {
                    rt.block_on(client.submit(
                        "driven_restart",
                        Bytes::from(data),
                        SubmitOptions::default(),
                    ))
                })
            };
        let first = submit(client.clone(), rt.clone(), "before").await.unwrap();
        assert_eq!(&first.unwrap()[..], b"before", "{}", kind.name());

        server.restart();
        // The worker (on the test's runtime) reconnects on its own; wait until
        // the restarted server knows it, so the job below can run.
        let addr = server.addr();
        timeout(TEST_LIMIT, async {
            loop {
                let lines = polygear_interop::raw::admin_lines(&addr, "workers", true, STEP).await;
                if lines.iter().any(|l| l.contains("driven_restart")) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the worker never reconnected");

        let after = submit(client.clone(), rt.clone(), "after").await.unwrap();
        assert_eq!(
            &after.expect("the first submit after a restart must reconnect, not fail")[..],
            b"after",
            "{}",
            kind.name()
        );
        w.stop();
        w.shutdown().await;
        let _ = run.await;
        tokio::task::spawn_blocking(move || {
            rt.block_on(client.close());
            drop(rt);
        })
        .await
        .unwrap();
    }
}

/// With several servers and one slot, a busy server does not starve the
/// others: the slot of an ending job is only handed straight to its own
/// connection's GRAB when no other connection waits for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_take_turns_for_the_slots() {
    const EACH: usize = 20;
    for kind in ServerKind::selected() {
        let servers = [TestServer::start(kind), TestServer::start(kind)];
        timeout(TEST_LIMIT, async {
            for (s, name) in servers.iter().zip(["a", "b"]) {
                let mut c = Raw::connect(&s.addr(), STEP).await;
                for i in 0..EACH {
                    c.submit(
                        "driven_turns",
                        &format!("{name}{i}"),
                        format!("{name}{i}"),
                        true,
                    )
                    .await;
                }
            }
        })
        .await
        .expect("submitting timed out");

        let w = Worker::new(WorkerOptions {
            servers: servers.iter().map(|s| s.addr()).collect(),
            concurrency: 1,
            poll_interval: Duration::from_secs(2),
            ..WorkerOptions::default()
        })
        .unwrap();
        w.register("driven_turns", None).unwrap();
        let order = timeout(TEST_LIMIT, async {
            let mut order = Vec::new();
            while order.len() < 2 * EACH {
                let job = w.next_job().await.expect("a job");
                order.push(job.data()[0]);
                job.complete(Bytes::new()).unwrap();
            }
            order
        })
        .await
        .expect("jobs stopped coming");
        // Both servers are served from early on (not one queue, then the other).
        let first_half = &order[..EACH];
        assert!(
            first_half.contains(&b'a') && first_half.contains(&b'b'),
            "{}: one server starved the other: {}",
            kind.name(),
            String::from_utf8_lossy(&order)
        );
        w.stop();
        w.shutdown().await;
    }
}

/// `handoff_delay`: a job that arrives while another job runs waits for the
/// running job's caller (`try_next_job`) and reaches an idle `next_job`
/// caller only after the delay; with nothing running it goes out at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_delay_keeps_new_jobs_for_the_busy_caller() {
    const DELAY: Duration = Duration::from_millis(1500);
    const FUNC: &str = "driven_handoff";
    for kind in ServerKind::selected() {
        let server = TestServer::start(kind);
        let w = Worker::new(WorkerOptions {
            servers: vec![server.addr()],
            concurrency: 3,
            poll_interval: Duration::from_secs(2),
            handoff_delay: Some(DELAY),
            ..WorkerOptions::default()
        })
        .unwrap();
        w.register(FUNC, None).unwrap();
        timeout(TEST_LIMIT, async {
            let mut c = Raw::connect(&server.addr(), STEP).await;
            let idle = |w: &Worker| {
                let w = w.clone();
                tokio::spawn(async move {
                    let job = w.next_job().await.expect("a job");
                    (job, tokio::time::Instant::now())
                })
            };

            // Nothing runs: the job goes to the waiting caller at once.
            let waiting = idle(&w);
            let sent = tokio::time::Instant::now();
            c.submit(FUNC, "a", "a", true).await;
            let (a, got) = waiting.await.unwrap();
            assert_eq!(&a.data()[..], b"a");
            assert!(
                got - sent < DELAY / 2,
                "{}: job a was held back",
                kind.name()
            );

            // `a` runs: `b` waits for a's caller, who takes it with try_next_job.
            assert!(w.try_next_job().is_none());
            let waiting = idle(&w);
            // Let it wait first (a caller arriving later takes a queued job).
            tokio::time::sleep(Duration::from_millis(200)).await;
            c.submit(FUNC, "b", "b", true).await;
            let b = loop {
                if let Some(job) = w.try_next_job() {
                    break job;
                }
                assert!(
                    !waiting.is_finished(),
                    "{}: b woke the idle caller",
                    kind.name()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            assert_eq!(&b.data()[..], b"b");
            b.complete(Bytes::new()).unwrap();

            // Nobody comes back for `c`: the idle caller gets it after the delay.
            let sent = tokio::time::Instant::now();
            c.submit(FUNC, "c", "c", true).await;
            let (job_c, got) = waiting.await.unwrap();
            assert_eq!(&job_c.data()[..], b"c");
            let waited = got - sent;
            assert!(
                waited >= DELAY - Duration::from_millis(100) && waited < STEP,
                "{}: c reached the idle caller after {waited:?}",
                kind.name()
            );
            a.complete(Bytes::new()).unwrap();
            job_c.complete(Bytes::new()).unwrap();
        })
        .await
        .expect("test timed out");
        w.stop();
        w.shutdown().await;
    }
}
