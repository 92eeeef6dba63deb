//! polygear::Worker against real job servers (the C gearmand for now).
//!
//! Counterparts: the C `gearman` CLI client and raw-socket clients built on
//! `polygear::protocol`, plus admin text commands for server-side checks.
//! Run: `POLYGEAR_TEST_SERVERS=gearmand cargo test -p polygear-interop --test worker`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use polygear::protocol::Packet;
use polygear::{Job, ServerAddr, Worker, WorkerOptions};
use polygear_interop::raw::{admin_lines, result_of, Raw};
use polygear_interop::{ServerKind, TestServer};
use tokio::time::timeout;

/// Upper bound for one whole test.
const TEST_LIMIT: Duration = Duration::from_secs(60);
/// Upper bound for one expected event.
const STEP: Duration = Duration::from_secs(15);

fn kinds() -> Vec<ServerKind> {
    // Every installed/built server (gearmand and polygeard), or those POLYGEAR_TEST_SERVERS names.
    let k = ServerKind::selected();
    if k.is_empty() {
        eprintln!("no job server selected/installed; skipping");
    }
    k
}

fn opts(servers: Vec<ServerAddr>) -> WorkerOptions {
    WorkerOptions {
        servers,
        client_id: Some("pg-test-worker".into()),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        poll_interval: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..WorkerOptions::default()
    }
}

/// Output of one `gearman` CLI run.
struct CliOut {
    stdout: Vec<u8>,
    stderr: String,
    code: i32,
}

/// Runs the C `gearman` client: `gearman -h 127.0.0.1 -p PORT -f FUNC DATA`.
async fn gearman_cli(port: u16, function: &str, data: &str) -> CliOut {
    let out = timeout(
        STEP,
        tokio::process::Command::new("gearman")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-f",
                function,
                data,
            ])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("gearman CLI timed out")
    .expect("run gearman CLI");
    CliOut {
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

/// Sends one admin command and reads the listing up to the `.` line.
async fn admin(port: u16, command: &str) -> Vec<String> {
    admin_lines(&ServerAddr::new("127.0.0.1", port), command, true, STEP).await
}

/// `(total, running, workers)` of `function` from admin `status`.
async fn status_of(port: u16, function: &str) -> Option<(u32, u32, u32)> {
    let lines = admin(port, "status").await;
    lines.iter().find_map(|l| {
        let f: Vec<&str> = l.split('\t').collect();
        (f.len() == 4 && f[0] == function).then(|| {
            (
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
    })
}

/// Polls admin `status` until `pred` holds for `function`.
async fn wait_status(port: u16, function: &str, pred: impl Fn((u32, u32, u32)) -> bool) {
    let r = timeout(STEP, async {
        loop {
            if let Some(s) = status_of(port, function).await {
                if pred(s) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "status of {function} never matched; last: {:?}",
        status_of(port, function).await
    );
}

/// The `workers` line of our worker (by client id).
async fn worker_line(port: u16, client_id: &str) -> Option<String> {
    let lines = admin(port, "workers").await;
    lines
        .into_iter()
        .find(|l| l.split(' ').nth(2) == Some(client_id))
}

/// Stops `worker`, then waits (each bounded by [`STEP`]) for its `run` task
/// to end without error and for its shutdown.
async fn stop_and_join(worker: &Worker, run: tokio::task::JoinHandle<polygear::Result<()>>) {
    worker.stop();
    timeout(STEP, run).await.unwrap().unwrap().unwrap();
    timeout(STEP, worker.shutdown()).await.unwrap();
}

/// A worker with 3 slots on `function` after three background jobs were
/// submitted (data `0`..`2`): returns it and the first job it handed out,
/// once the server shows all three running (two sit in the worker's buffer).
async fn worker_holding_three(server: &TestServer, function: &str) -> (Worker, Job) {
    let mut o = opts(vec![server.addr()]);
    o.concurrency = 3;
    let worker = Worker::new(o).unwrap();
    worker.register(function, None).unwrap();
    let mut client = Raw::connect(&server.addr(), STEP).await;
    for i in 0..3 {
        client
            .submit(function, &format!("{function}-{i}"), format!("{i}"), true)
            .await;
    }
    // The worker keeps grabbing until its 3 slots are full.
    let first = timeout(STEP, worker.next_job()).await.unwrap().unwrap();
    wait_status(server.port, function, |(t, r, _)| t == 3 && r == 3).await;
    (worker, first)
}

/// Spawns `worker.run` with a handler that echoes (or reverses for "rev").
fn spawn_echo(worker: &Worker) -> tokio::task::JoinHandle<polygear::Result<()>> {
    let w = worker.clone();
    tokio::spawn(async move {
        w.run(|job: Job| async move {
            let out: Bytes = if job.function().starts_with("rev") {
                job.data().iter().rev().copied().collect::<Vec<u8>>().into()
            } else {
                job.data().clone()
            };
            job.complete(out).unwrap();
        })
        .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_gearman_cli() {
    for kind in kinds() {
        timeout(TEST_LIMIT, async {
            let server = TestServer::start(kind);
            let worker = Worker::new(opts(vec![server.addr()])).unwrap();
            worker.register("rev", None).unwrap();
            worker.register("steps", None).unwrap();
            worker.register("failing", None).unwrap();
            let w = worker.clone();
            let run = tokio::spawn(async move {
                w.run(|job: Job| async move {
                    match job.function() {
                        "rev" => {
                            let r: Vec<u8> = job.data().iter().rev().copied().collect();
                            job.complete(r).unwrap();
                        }
                        "steps" => {
                            job.send_data("part1;").unwrap();
                            job.send_status(1, 2).unwrap();
                            job.send_status(2, 2).unwrap();
                            job.complete("done").unwrap();
                        }
                        // "failing": dropped unfinished → WORK_FAIL
                        _ => drop(job),
                    }
                })
                .await
            });

            let out = gearman_cli(server.port, "rev", "hello").await;
            assert_eq!(out.code, 0, "stderr: {}", out.stderr);
            assert_eq!(out.stdout, b"olleh");

            let out = gearman_cli(server.port, "steps", "x").await;
            assert_eq!(out.code, 0, "stderr: {}", out.stderr);
            // The CLI prints status lines through a different buffer, so only
            // check what arrived, not how the CLI interleaves it.
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains("50% Complete\n"), "{stdout:?}");
            assert!(stdout.contains("100% Complete\n"), "{stdout:?}");
            let rest = stdout
                .replace("50% Complete\n", "")
                .replace("100% Complete\n", "");
            assert_eq!(rest, "part1;done");

            let out = gearman_cli(server.port, "failing", "x").await;
            assert_eq!(out.code, 1);
            assert!(out.stderr.contains("Job failed"), "stderr: {}", out.stderr);

            // Sequential jobs keep working (no lost wake-ups).
            for i in 0..20 {
                let out = gearman_cli(server.port, "rev", &format!("ab{i}")).await;
                assert_eq!(
                    out.stdout,
                    format!("{}ba", i.to_string().chars().rev().collect::<String>()).as_bytes()
                );
            }

            stop_and_join(&worker, run).await;
        })
        .await
        .expect("test timed out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_packets_arrive_in_order_with_unique_and_exception() {
    for kind in kinds() {
        timeout(TEST_LIMIT, async {
            let server = TestServer::start(kind);
            let worker = Worker::new(opts(vec![server.addr()])).unwrap();
            worker.register("ordered", None).unwrap();

            let mut client = Raw::connect(&server.addr(), STEP).await;
            client
                .send(Packet::OptionReq {
                    name: Bytes::from_static(b"exceptions"),
                })
                .await;
            assert!(matches!(client.recv().await, Packet::OptionRes { .. }));

            let handle = client.submit("ordered", "uniq-1", "payload", false).await;
            let job = timeout(STEP, worker.next_job()).await.unwrap().unwrap();
            assert_eq!(job.handle().as_bytes(), &handle[..]);
            assert_eq!(job.function(), "ordered");
            assert_eq!(job.unique(), "uniq-1");
            assert_eq!(job.reducer(), "");
            assert_eq!(&job.data()[..], b"payload");
            job.send_data("d1").unwrap();
            job.send_warning("w1").unwrap();
            job.send_status(3, 7).unwrap();
            job.send_data("d2").unwrap();
            job.exception("boom").unwrap();

            let got = client.until_final().await;
            let h = handle.clone();
            assert_eq!(
                got,
                vec![
                    Packet::WorkData {
                        handle: h.clone(),
                        data: "d1".into()
                    },
                    Packet::WorkWarning {
                        handle: h.clone(),
                        data: "w1".into()
                    },
                    Packet::WorkStatus {
                        handle: h.clone(),
                        numerator: "3".into(),
                        denominator: "7".into()
                    },
                    Packet::WorkData {
                        handle: h.clone(),
                        data: "d2".into()
                    },
                    Packet::WorkException {
                        handle: h.clone(),
                        data: "boom".into()
                    },
                ]
            );

            // A reduce job comes with its reducer (JOB_ASSIGN_ALL).
            client
                .send(Packet::SubmitReduceJob {
                    function: "ordered".into(),
                    unique: "uniq-2".into(),
                    reducer: "myreducer".into(),
                    aggregator: Bytes::new(),
                    data: "r".into(),
                    background: false,
                })
                .await;
            assert!(matches!(client.recv().await, Packet::JobCreated { .. }));
            let job = timeout(STEP, worker.next_job()).await.unwrap().unwrap();
            assert_eq!(job.unique(), "uniq-2");
            assert_eq!(job.reducer(), "myreducer");
            job.complete("ok").unwrap();
            assert_eq!(result_of(&client.until_final().await).unwrap(), "ok");

            // Dropping a job unfinished fails it.
            let handle = client.submit("ordered", "", "x", false).await;
            drop(timeout(STEP, worker.next_job()).await.unwrap().unwrap());
            assert_eq!(
                client.until_final().await,
                vec![Packet::WorkFail { handle }]
            );

            worker.stop();
            assert!(worker.is_stopped());
            assert!(timeout(STEP, worker.next_job()).await.unwrap().is_none());
            timeout(STEP, worker.shutdown()).await.unwrap();
        })
        .await
        .expect("test timed out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_four_runs_four_jobs_at_once() {
    for kind in kinds() {
        timeout(TEST_LIMIT, async {
            let server = TestServer::start(kind);
            let mut o = opts(vec![server.addr()]);
            o.concurrency = 4;
            let worker = Worker::new(o).unwrap();
            worker.register("wide", None).unwrap();
            let barrier = Arc::new(tokio::sync::Barrier::new(4));
            let running = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let (b, r, p) = (barrier.clone(), running.clone(), peak.clone());
            let w = worker.clone();
            let run = tokio::spawn(async move {
                w.run(move |job: Job| {
                    let (b, r, p) = (b.clone(), r.clone(), p.clone());
                    async move {
                        let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                        p.fetch_max(now, Ordering::SeqCst);
                        // Only passes if 4 jobs run at the same time.
                        b.wait().await;
                        r.fetch_sub(1, Ordering::SeqCst);
                        let data = job.data().clone();
                        job.complete(data).unwrap();
                    }
                })
                .await
            });

            // 8 jobs from 8 client connections, all submitted up front.
            let mut clients = Vec::new();
            for i in 0..8 {
                let mut c = Raw::connect(&server.addr(), STEP).await;
                c.submit("wide", &format!("u{i}"), format!("j{i}"), false)
                    .await;
                clients.push(c);
            }
            for (i, c) in clients.iter_mut().enumerate() {
                let got = c.until_final().await;
                assert_eq!(result_of(&got).unwrap(), format!("j{i}"));
            }
            assert_eq!(peak.load(Ordering::SeqCst), 4, "never more than 4 at once");
            stop_and_join(&worker, run).await;
        })
        .await
        .expect("test timed out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_with_timeout_are_visible_and_not_duplicated() {
    for kind in kinds() {
        timeout(TEST_LIMIT, async {
            let server = TestServer::start(kind);
            let mut o = opts(vec![server.addr()]);
            o.client_id = Some("reg-worker".into());
            let worker = Worker::new(o).unwrap();
            worker.register("plain", None).unwrap();
            worker
                .register("timed", Some(Duration::from_millis(1500)))
                .unwrap();
            worker.register("plain", None).unwrap(); // no duplicate CAN_DO
            worker
                .register("timed", Some(Duration::from_millis(1500)))
                .unwrap();
            assert!(worker.register("", None).is_err());
            assert!(worker.register("a\0b", None).is_err());
            let run = spawn_echo(&worker);

            wait_status(server.port, "timed", |(_, _, w)| w == 1).await;
            wait_status(server.port, "plain", |(_, _, w)| w == 1).await;
            let line = worker_line(server.port, "reg-worker")
                .await
                .expect("worker listed");
            let funcs: Vec<&str> = line.split(" : ").nth(1).unwrap().split(' ').collect();
            let mut sorted = funcs.clone();
            sorted.sort();
            assert_eq!(sorted, vec!["plain", "timed"], "line: {line}");

            let out = gearman_cli(server.port, "timed", "abc").await;
            assert_eq!(out.stdout, b"abc");

            // Changing the timeout re-registers without leaving a duplicate.
            worker
                .register("timed", Some(Duration::from_secs(3)))
                .unwrap();
            worker.register("timed", None).unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(status_of(server.port, "timed").await.unwrap().2, 1);

            stop_and_join(&worker, run).await;
        })
        .await
        .expect("test timed out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn can_do_timeout_requeues_and_late_completion_is_tolerated() {
    for kind in kinds() {
        timeout(TEST_LIMIT, async {
            // polygeard fails an overrunning job back to its clients by default;
            // --timeout-requeue gives gearmand's requeue, which this test needs.
            let extra: &[&str] = match kind {
                ServerKind::Polygeard => &["--timeout-requeue"],
                ServerKind::Gearmand => &[],
            };
            let server = TestServer::start_with(kind, extra);
            // Worker A registers with a 1 s server-side timeout and overruns it.
            // (gearmand's timer is per connection and PRE_SLEEP cancels it, so
            // A runs one job at a time and does not grab/sleep meanwhile.)
            let a = Worker::new(opts(vec![server.addr()])).unwrap();
            a.register("slow", Some(Duration::from_millis(1000)))
                .unwrap();
            let calls = Arc::new(AtomicUsize::new(0));
            let c = calls.clone();
            let w = a.clone();
            let run_a = tokio::spawn(async move {
                w.run(move |job: Job| {
                    let n = c.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n == 0 {
                            // The job is requeued meanwhile; this late WORK_COMPLETE
                            // gets ERROR JOB_NOT_FOUND, which A must survive.
                            tokio::time::sleep(Duration::from_millis(2500)).await;
                            job.complete("late").unwrap();
                        } else {
                            job.complete("a-again").unwrap();
                        }
                    }
                })
                .await
            });
            let mut client = Raw::connect(&server.addr(), STEP).await;
            client.submit("slow", "", "x", false).await;
            wait_status(server.port, "slow", |(_, r, _)| r == 1).await;

            // Worker B gets the requeued job.
            let b = Worker::new(opts(vec![server.addr()])).unwrap();
            b.register("slow", None).unwrap();
            let run_b = spawn_echo(&b);
            let got = client.until_final().await;
            // Usually B runs it; on a loaded machine A may finish its late job
            // and grab the requeued one first. Either way it was requeued.
            let r = result_of(&got).unwrap();
            assert!(&r[..] == b"x" || &r[..] == b"a-again", "unexpected {r:?}");
            b.stop();
            timeout(STEP, run_b).await.unwrap().unwrap().unwrap();
            timeout(STEP, b.shutdown()).await.unwrap();

            // After its late completion A still works.
            timeout(STEP, async {
                while calls.load(Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(2700)).await;
            client.submit("slow", "", "y", false).await;
            assert_eq!(result_of(&client.until_final().await).unwrap(), "a-again");
            a.stop();
            timeout(STEP, run_a).await.unwrap().unwrap().unwrap();
            timeout(STEP, a.shutdown()).await.unwrap();
        })
        .await
        .expect("test timed out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregister_and_reset_stop_job_delivery() {
    for kind in kinds() {
        timeout(TEST_LIMIT, async {
            let server = TestServer::start(kind);
            let worker = Worker::new(opts(vec![server.addr()])).unwrap();
            worker.register("a", None).unwrap();
            worker.register("b", None).unwrap();
            let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
            let s = seen.clone();
            let w = worker.clone();
            let run = tokio::spawn(async move {
                w.run(move |job: Job| {
                    s.lock().unwrap().push(job.function().to_string());
                    async move { job.complete("ok").unwrap() }
                })
                .await
            });
            assert_eq!(gearman_cli(server.port, "a", "1").await.stdout, b"ok");

            worker.unregister("a").unwrap();
            wait_status(server.port, "a", |(_, _, w)| w == 0).await;
            let mut client = Raw::connect(&server.addr(), STEP).await;
            client.submit("a", "", "queued", true).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(status_of(server.port, "a").await, Some((1, 0, 0)));
            // "b" still works.
            assert_eq!(gearman_cli(server.port, "b", "1").await.stdout, b"ok");

            // Registering again picks the queued job up.
            worker.register("a", None).unwrap();
            wait_status(server.port, "a", |(t, _, w)| t == 0 && w == 1).await;

            worker.reset().unwrap();
            wait_status(server.port, "a", |(_, _, w)| w == 0).await;
            wait_status(server.port, "b", |(_, _, w)| w == 0).await;
            client.submit("b", "", "queued", true).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(status_of(server.port, "b").await, Some((1, 0, 0)));
            assert_eq!(*seen.lock().unwrap(), vec!["a", "b", "a"]);

            stop_and_join(&worker, run).await;
        })
        .await
        .expect("test timed out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_serves_two_servers() {
    for kind in kinds() {
        timeout(TEST_LIMIT, async {
            let s1 = TestServer::start(kind);
            let s2 = TestServer::start(kind);
            let worker = Worker::new(opts(vec![s1.addr(), s2.addr()])).unwrap();
            worker.register("rev2", None).unwrap();
            let run = spawn_echo(&worker);
            for round in 0..3 {
                let a = gearman_cli(s1.port, "rev2", &format!("one{round}")).await;
                let b = gearman_cli(s2.port, "rev2", &format!("two{round}")).await;
                assert_eq!(a.stdout, format!("{round}eno").as_bytes());
                assert_eq!(b.stdout, format!("{round}owt").as_bytes());
            }
            stop_and_join(&worker, run).await;
        })
        .await
        .expect("test timed out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_of_a_killed_worker_goes_to_another_worker() {
    for kind in kinds() {
        timeout(TEST_LIMIT, async {
            let server = TestServer::start(kind);
            let addr = server.addr();
            let (started_tx, started_rx) = tokio::sync::oneshot::channel::<String>();
            let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
            // Worker A lives in its own runtime on its own thread and never
            // finishes its job; dropping that runtime "kills" it.
            let a = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let worker = Worker::new(opts(vec![addr])).unwrap();
                worker.register("fragile", None).unwrap();
                let w = worker.clone();
                let job = rt.block_on(async move { w.next_job().await.unwrap() });
                started_tx.send(job.handle().to_string()).unwrap();
                kill_rx.recv_timeout(STEP).ok();
                // Runtime gone first: nothing (not even the drop's WORK_FAIL)
                // reaches the server; the connection just closes.
                drop(rt);
                drop(job);
                drop(worker);
            });
            let mut client = Raw::connect(&server.addr(), STEP).await;
            let handle = client.submit("fragile", "", "precious", false).await;
            let held = timeout(STEP, started_rx).await.unwrap().unwrap();
            assert_eq!(held.as_bytes(), &handle[..]);

            let b = Worker::new(opts(vec![server.addr()])).unwrap();
            b.register("fragile", None).unwrap();
            let run = spawn_echo(&b);
            kill_tx.send(()).unwrap();
            let got = client.until_final().await;
            assert_eq!(
                got,
                vec![Packet::WorkComplete {
                    handle,
                    data: "precious".into()
                }]
            );
            tokio::task::spawn_blocking(move || a.join().unwrap())
                .await
                .unwrap();
            b.stop();
            timeout(STEP, run).await.unwrap().unwrap().unwrap();
            timeout(STEP, b.shutdown()).await.unwrap();
        })
        .await
        .expect("test timed out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_survives_server_restart() {
    for kind in kinds() {
        timeout(TEST_LIMIT, async {
            let mut server = TestServer::start(kind);
            let other = TestServer::start(kind);
            let mut o = opts(vec![server.addr(), other.addr()]);
            o.client_id = Some("restart-worker".into());
            let worker = Worker::new(o).unwrap();
            worker.register("rs", None).unwrap();
            worker
                .register("rs_t", Some(Duration::from_secs(30)))
                .unwrap();
            let run = spawn_echo(&worker);
            assert_eq!(
                gearman_cli(server.port, "rs", "before").await.stdout,
                b"before"
            );

            let port = server.port;
            let server = tokio::task::spawn_blocking(move || {
                server.restart();
                server
            })
            .await
            .unwrap();
            assert_eq!(server.port, port);

            // The other server kept working meanwhile.
            assert_eq!(
                gearman_cli(other.port, "rs", "other").await.stdout,
                b"other"
            );
            // Re-registered (with client id and both functions) after reconnecting.
            timeout(STEP, async {
                loop {
                    if let Some(l) = worker_line(port, "restart-worker").await {
                        if l.contains(" rs") && l.contains(" rs_t") {
                            return l;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .expect("worker did not re-register after restart");
            assert_eq!(gearman_cli(port, "rs", "after").await.stdout, b"after");
            assert_eq!(gearman_cli(port, "rs_t", "timed").await.stdout, b"timed");

            stop_and_join(&worker, run).await;
        })
        .await
        .expect("test timed out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_finishes_running_jobs_and_takes_no_new_ones() {
    for kind in kinds() {
        timeout(TEST_LIMIT, async {
            let server = TestServer::start(kind);
            let mut o = opts(vec![server.addr()]);
            o.concurrency = 2;
            let worker = Worker::new(o).unwrap();
            worker.register("long", None).unwrap();
            let started = Arc::new(tokio::sync::Semaphore::new(0));
            let release = Arc::new(tokio::sync::Notify::new());
            let (st, rel) = (started.clone(), release.clone());
            let w = worker.clone();
            let run = tokio::spawn(async move {
                w.run(move |job: Job| {
                    let (st, rel) = (st.clone(), rel.clone());
                    async move {
                        let notified = rel.notified();
                        st.add_permits(1);
                        notified.await;
                        let data = job.data().clone();
                        job.complete(data).unwrap();
                    }
                })
                .await
            });
            let mut c1 = Raw::connect(&server.addr(), STEP).await;
            let mut c2 = Raw::connect(&server.addr(), STEP).await;
            c1.submit("long", "", "first", false).await;
            c2.submit("long", "", "second", false).await;
            let both = timeout(STEP, started.acquire_many(2))
                .await
                .unwrap()
                .unwrap();
            both.forget();

            worker.stop();
            let mut c3 = Raw::connect(&server.addr(), STEP).await;
            c3.submit("long", "", "third", true).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!run.is_finished(), "run() must wait for running handlers");
            release.notify_waiters();
            assert_eq!(result_of(&c1.until_final().await).unwrap(), "first");
            assert_eq!(result_of(&c2.until_final().await).unwrap(), "second");
            timeout(STEP, run).await.unwrap().unwrap().unwrap();
            timeout(STEP, worker.shutdown()).await.unwrap();
            // The third job was never taken: one queued, none running, and
            // (once the server has seen the worker's connection close) no worker.
            let (total, running, _) = status_of(server.port, "long").await.unwrap();
            assert_eq!((total, running), (1, 0));
            wait_status(server.port, "long", |s| s == (1, 0, 0)).await;
            assert!(worker.next_job().await.is_none());
        })
        .await
        .expect("test timed out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_still_hands_out_buffered_jobs() {
    for kind in kinds() {
        timeout(TEST_LIMIT, async {
            let server = TestServer::start(kind);
            let (worker, first) = worker_holding_three(&server, "buf").await;
            worker.stop();
            let second = timeout(STEP, worker.next_job()).await.unwrap().unwrap();
            let third = timeout(STEP, worker.next_job()).await.unwrap().unwrap();
            assert!(timeout(STEP, worker.next_job()).await.unwrap().is_none());
            for j in [first, second, third] {
                j.complete("").unwrap();
            }
            timeout(STEP, worker.shutdown()).await.unwrap();
            wait_status(server.port, "buf", |(t, _, _)| t == 0).await;
        })
        .await
        .expect("test timed out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_and_16_mib_payloads() {
    for kind in kinds() {
        timeout(TEST_LIMIT, async {
            let server = TestServer::start(kind);
            let worker = Worker::new(opts(vec![server.addr()])).unwrap();
            worker.register("echo", None).unwrap();
            let run = spawn_echo(&worker);
            let mut client = Raw::connect(&server.addr(), STEP).await;

            let nul = Bytes::from_static(b"\0a\0\0b\0");
            client.submit("echo", "", nul.clone(), false).await;
            assert_eq!(result_of(&client.until_final().await).unwrap(), nul);

            let big: Bytes = (0..16usize << 20)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<u8>>()
                .into();
            client.submit("echo", "", big.clone(), false).await;
            let got = result_of(&client.until_final().await).unwrap();
            assert_eq!(got.len(), big.len());
            assert!(got == big);

            stop_and_join(&worker, run).await;
        })
        .await
        .expect("test timed out");
    }
}

#[tokio::test]
async fn worker_handles_unreachable_servers_and_bad_options() {
    assert!(Worker::new(WorkerOptions {
        servers: vec![],
        ..WorkerOptions::default()
    })
    .is_err());
    assert!(Worker::new(WorkerOptions {
        concurrency: 0,
        ..WorkerOptions::default()
    })
    .is_err());
    // Nothing listens there: next_job keeps waiting (retrying) without failing,
    // and stop() ends it.
    let port = polygear_interop::free_port();
    let worker = Worker::new(opts(vec![ServerAddr::new("127.0.0.1", port)])).unwrap();
    worker.register("f", None).unwrap();
    let w = worker.clone();
    let waiting = tokio::spawn(async move { w.next_job().await.is_none() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    worker.stop();
    assert!(timeout(STEP, waiting).await.unwrap().unwrap());
    timeout(STEP, worker.shutdown()).await.unwrap();
}

/// Regression: `shutdown()` must not wait for jobs that were grabbed but
/// never handed out (nobody calls `next_job` any more); it waits only for the
/// running ones, and the server requeues the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_running_jobs_only() {
    for kind in kinds() {
        timeout(TEST_LIMIT, async {
            let server = TestServer::start(kind);
            let (worker, running) = worker_holding_three(&server, "sd").await;
            worker.stop();
            let w = worker.clone();
            let shutdown = tokio::spawn(async move { w.shutdown().await });
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(
                !shutdown.is_finished(),
                "shutdown must wait for the running job"
            );
            running.complete("done").unwrap();
            timeout(STEP, shutdown)
                .await
                .expect("shutdown hangs on buffered jobs")
                .unwrap();
            // The buffered jobs went back to the queue, untouched.
            wait_status(server.port, "sd", |(t, r, _)| t == 2 && r == 0).await;
            assert!(worker.next_job().await.is_none());
            // Another worker gets them.
            let other = Worker::new(opts(vec![server.addr()])).unwrap();
            other.register("sd", None).unwrap();
            for _ in 0..2 {
                let j = timeout(STEP, other.next_job()).await.unwrap().unwrap();
                j.complete("").unwrap();
            }
            wait_status(server.port, "sd", |(t, _, _)| t == 0).await;
            timeout(STEP, other.shutdown()).await.unwrap();
        })
        .await
        .expect("test timed out");
    }
}

/// Regression: a worker with concurrency N keeps N jobs in flight when jobs
/// arrive in bursts, and `stop()` + `shutdown()` with N jobs running ends
/// once they end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_keep_concurrency_full_and_stop_shutdown_is_bounded() {
    for kind in kinds() {
        timeout(TEST_LIMIT, async {
            let server = TestServer::start(kind);
            let mut o = opts(vec![server.addr()]);
            o.concurrency = 4;
            let worker = Worker::new(o).unwrap();
            worker.register("burst", None).unwrap();
            let active = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(AtomicUsize::new(0));
            let (a, p, d) = (active.clone(), peak.clone(), done.clone());
            let w = worker.clone();
            let run = tokio::spawn(async move {
                w.run(move |job: Job| {
                    let (a, p, d) = (a.clone(), p.clone(), d.clone());
                    async move {
                        let now = a.fetch_add(1, Ordering::SeqCst) + 1;
                        p.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        a.fetch_sub(1, Ordering::SeqCst);
                        job.complete("").unwrap();
                        d.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .await
            });
            let mut client = Raw::connect(&server.addr(), STEP).await;
            for burst in 0..3 {
                for i in 0..12 {
                    client
                        .submit("burst", &format!("b{burst}-{i}"), "x", true)
                        .await;
                }
                // Each burst of 12 needs 3 rounds of 4; wait for it to drain.
                timeout(STEP, async {
                    while done.load(Ordering::SeqCst) < 12 * (burst + 1) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
                .await
                .expect("burst not processed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(peak.load(Ordering::SeqCst), 4, "concurrency not used fully");
            // Now stop + shutdown while 4 jobs run.
            for i in 0..4 {
                client
                    .submit("burst", &format!("last-{i}"), "x", true)
                    .await;
            }
            timeout(STEP, async {
                while active.load(Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await
            .unwrap();
            worker.stop();
            timeout(STEP, worker.shutdown())
                .await
                .expect("stop + shutdown with running jobs hangs");
            timeout(STEP, run).await.unwrap().unwrap().unwrap();
            assert_eq!(active.load(Ordering::SeqCst), 0);
        })
        .await
        .expect("test timed out");
    }
}

/// Regression: registering a function while the worker sleeps (PRE_SLEEP
/// sent) must make it grab at once: the server sends no NOOP for jobs that
/// were queued before the CAN_DO, and the poll timer is far away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_while_asleep_grabs_queued_jobs() {
    for kind in kinds() {
        timeout(TEST_LIMIT, async {
            let server = TestServer::start(kind);
            let mut o = opts(vec![server.addr()]);
            o.poll_interval = Duration::from_secs(60);
            let worker = Worker::new(o).unwrap();
            worker.register("first", None).unwrap();
            let w = worker.clone();
            let next = tokio::spawn(async move { w.next_job().await });
            // Connected, nothing to do: the worker is asleep.
            wait_status(server.port, "first", |(_, _, workers)| workers == 1).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut client = Raw::connect(&server.addr(), STEP).await;
            client.submit("later", "", "queued", true).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            worker.register("later", None).unwrap();
            let job = timeout(Duration::from_secs(5), next)
                .await
                .expect("worker did not grab after registering")
                .unwrap()
                .unwrap();
            assert_eq!(job.function(), "later");
            assert_eq!(&job.data()[..], b"queued");
            job.complete("").unwrap();
            timeout(STEP, worker.shutdown()).await.unwrap();
        })
        .await
        .expect("test timed out");
    }
}
