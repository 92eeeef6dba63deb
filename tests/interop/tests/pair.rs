//! Our Client and our Worker talking through a real job server.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use polygear::{
    Client, ClientOptions, Error, Job, JobEvent, ServerAddr, SubmitOptions, Worker, WorkerOptions,
};
use polygear_interop::raw::{b, each_server, reversed};
use polygear_interop::{ServerKind, TestServer};

const T: Duration = Duration::from_secs(40);
/// Environment variable that turns `worker_child_process` into a worker.
const CHILD_ENV: &str = "POLYGEAR_PAIR_CHILD_PORT";

fn client(addr: ServerAddr) -> Client {
    Client::new(ClientOptions {
        servers: vec![addr],
        submit_timeout: Duration::from_secs(10),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
        ..Default::default()
    })
    .unwrap()
}

fn worker(addr: ServerAddr, concurrency: usize) -> Worker {
    Worker::new(WorkerOptions {
        servers: vec![addr],
        concurrency,
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
        poll_interval: Duration::from_secs(1),
        ..Default::default()
    })
    .unwrap()
}

/// The events a client sees for the `events` function of [`handle`].
fn expected_events() -> Vec<JobEvent> {
    vec![
        JobEvent::Data(b("part1")),
        JobEvent::Warning(b("watch out")),
        JobEvent::Status {
            numerator: 1,
            denominator: 3,
        },
        JobEvent::Data(b("part2")),
        JobEvent::Complete(b("end")),
    ]
}

/// The handler used by most tests, dispatching on the function name.
async fn handle(job: Job) {
    match job.function() {
        "rev" => {
            let out = reversed(job.data());
            job.complete(out).unwrap();
        }
        "events" => {
            job.send_data("part1").unwrap();
            job.send_warning("watch out").unwrap();
            job.send_status(1, 3).unwrap();
            job.send_data("part2").unwrap();
            job.complete("end").unwrap();
        }
        "raise" => {
            let msg = format!("bad input {:?}", String::from_utf8_lossy(job.data()));
            job.exception(msg).unwrap();
        }
        "fail" => job.fail().unwrap(),
        "drop" => drop(job),
        other => panic!("unexpected function {other}"),
    }
}

/// Starts a worker serving every function of [`handle`] in the background.
fn start_worker(addr: ServerAddr, concurrency: usize) -> (Worker, tokio::task::JoinHandle<()>) {
    let w = worker(addr, concurrency);
    for f in ["rev", "events", "raise", "fail", "drop"] {
        w.register(f, None).unwrap();
    }
    let runner = w.clone();
    let task = tokio::spawn(async move { runner.run(handle).await.unwrap() });
    (w, task)
}

async fn stop_worker(w: Worker, task: tokio::task::JoinHandle<()>) {
    w.stop();
    w.shutdown().await;
    task.await.unwrap();
}

#[tokio::test]
async fn round_trip_and_concurrency() {
    each_server("round_trip", T, |kind| async move {
        let server = TestServer::start(kind);
        let (w, task) = start_worker(server.addr(), 4);
        let c = client(server.addr());
        assert_eq!(
            c.submit("rev", "hello", SubmitOptions::default())
                .await
                .unwrap(),
            b("olleh")
        );
        let mut set = tokio::task::JoinSet::new();
        for i in 0..100 {
            let c = c.clone();
            set.spawn(async move {
                let d = b(&format!("payload-{i}\0end"));
                assert_eq!(
                    c.submit("rev", d.clone(), SubmitOptions::default())
                        .await
                        .unwrap(),
                    reversed(&d)
                );
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
        stop_worker(w, task).await;
    })
    .await;
}

#[tokio::test]
async fn events_exceptions_and_failures() {
    each_server("events", T, |kind| async move {
        let server = TestServer::start(kind);
        let (w, task) = start_worker(server.addr(), 2);
        let c = client(server.addr());
        let mut job = c
            .submit_job("events", "x", SubmitOptions::default())
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(ev) = job.next_event().await {
            got.push(ev.unwrap());
        }
        assert_eq!(got, expected_events());
        match c.submit("raise", "42", SubmitOptions::default()).await {
            Err(Error::JobException { message, .. }) => assert_eq!(message, "bad input \"42\""),
            other => panic!("expected JobException, got {other:?}"),
        }
        for f in ["fail", "drop"] {
            let r = c.submit(f, "x", SubmitOptions::default()).await;
            assert!(matches!(r, Err(Error::JobFailed { .. })), "{f}: {r:?}");
        }
        stop_worker(w, task).await;
    })
    .await;
}

/// Not a test on its own: run by `killed_worker_job_goes_to_another_worker`
/// in a child process, it takes one job of `hold`, reports it, and never ends it.
#[tokio::test]
#[ignore = "helper process for killed_worker_job_goes_to_another_worker"]
async fn worker_child_process() {
    let Ok(port) = std::env::var(CHILD_ENV) else {
        return;
    };
    let w = worker(ServerAddr::new("127.0.0.1", port.parse().unwrap()), 1);
    w.register("hold", None).unwrap();
    let job = w.next_job().await.unwrap();
    println!("GOT {}", job.handle());
    // Hold the job until the parent kills this process.
    tokio::time::sleep(Duration::from_secs(60)).await;
    drop(job);
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn killed_worker_job_goes_to_another_worker() {
    each_server("killed_worker", T, |kind| async move {
        let server = TestServer::start(kind);
        let c = client(server.addr());
        let job = c
            .submit_job("hold", "precious", SubmitOptions::default())
            .await
            .unwrap();
        let handle = job.handle().to_string();

        let mut child = KillOnDrop(
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--ignored",
                    "--exact",
                    "worker_child_process",
                    "--nocapture",
                ])
                .env(CHILD_ENV, server.port.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            lines.find_map(|l| l.ok().filter(|l| l.starts_with("GOT ")))
        })
        .await
        .unwrap()
        .expect("child worker took the job");
        assert_eq!(line, format!("GOT {handle}"));
        let st = c.status(&handle).await.unwrap();
        assert!(st.known && st.running);
        drop(child); // SIGKILL mid-job

        // The server requeues the job; a second worker finishes it.
        let w = worker(server.addr(), 1);
        w.register("hold", None).unwrap();
        let runner = w.clone();
        let task = tokio::spawn(async move {
            runner
                .run(|job: Job| async move {
                    let out = reversed(job.data());
                    job.complete(out).unwrap();
                })
                .await
                .unwrap()
        });
        assert_eq!(job.result().await.unwrap(), b("suoicerp"));
        stop_worker(w, task).await;
    })
    .await;
}

#[tokio::test]
async fn server_restart_under_running_worker() {
    each_server("restart", T, |kind| async move {
        let mut server = TestServer::start(kind);
        let (w, task) = start_worker(server.addr(), 2);
        let c = client(server.addr());
        assert_eq!(
            c.submit("rev", "before", SubmitOptions::default())
                .await
                .unwrap(),
            b("erofeb")
        );
        let server = tokio::task::spawn_blocking(move || {
            server.restart();
            server
        })
        .await
        .unwrap();
        // The client reconnects on its next call; the job waits in the queue
        // until the worker has reconnected and registered again.
        let mut result = None;
        for _ in 0..50 {
            match c.submit("rev", "after", SubmitOptions::default()).await {
                Ok(r) => {
                    result = Some(r);
                    break;
                }
                Err(e) => {
                    assert_eq!(e.kind(), polygear::ErrorKind::Connection, "{e:?}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        assert_eq!(result, Some(b("retfa")));
        stop_worker(w, task).await;
        drop(server);
    })
    .await;
}

/// Regression: a submission that times out before its JOB_CREATED arrives
/// must not shift the FIFO matching of later replies on the same connection,
/// and its late events must not reach anyone.
#[tokio::test]
async fn late_job_created_does_not_shift_the_fifo() {
    each_server("late_created", T, |kind| async move {
        let server = TestServer::start(kind);
        let c = client(server.addr());
        // Connect first, so the timeouts below apply to JOB_CREATED only.
        c.echo("warm").await.unwrap();
        for i in 0..20 {
            // A deadline already past: gives up before JOB_CREATED can arrive.
            let e = c
                .submit(
                    "rev",
                    b(&format!("abandoned-{i}")),
                    SubmitOptions {
                        timeout: Some(Duration::from_nanos(1)),
                        ..Default::default()
                    },
                )
                .await
                .unwrap_err();
            // Before JOB_CREATED (Timeout) or, if it won the race, after (JobTimeout).
            assert_eq!(e.kind(), polygear::ErrorKind::Timeout, "{e:?}");
            // JOB_CREATED may win the race here; then the job is dropped.
            match c
                .submit_job(
                    "rev",
                    b(&format!("abandoned-job-{i}")),
                    SubmitOptions {
                        timeout: Some(Duration::from_nanos(1)),
                        ..Default::default()
                    },
                )
                .await
            {
                Ok(job) => drop(job),
                Err(e) => assert_eq!(e.kind(), polygear::ErrorKind::Timeout, "{e:?}"),
            }
        }
        let (w, task) = start_worker(server.addr(), 4);
        for i in 0..20 {
            let d = b(&format!("kept-{i}"));
            let got = c
                .submit("rev", d.clone(), SubmitOptions::default())
                .await
                .unwrap();
            assert_eq!(got, reversed(&d));
            let job = c
                .submit_job("events", "", SubmitOptions::default())
                .await
                .unwrap();
            assert_eq!(job.result().await.unwrap(), b("end"));
        }
        stop_worker(w, task).await;
    })
    .await;
}

/// Regression: foreground jobs in flight when the server dies end with
/// ConnectionLost (both `submit` and `submit_job`), and the client recovers.
#[tokio::test]
async fn server_death_fails_in_flight_jobs() {
    each_server("server_death", T, |kind| async move {
        let mut server = TestServer::start(kind);
        let c = client(server.addr());
        let mut set = tokio::task::JoinSet::new();
        for i in 0..8 {
            let c = c.clone();
            set.spawn(async move {
                c.submit(
                    "nobody-serves-this",
                    b(&format!("{i}")),
                    SubmitOptions::default(),
                )
                .await
            });
        }
        let job = c
            .submit_job("nobody-serves-this", "x", SubmitOptions::default())
            .await
            .unwrap();
        // Let the plain submissions be created too.
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.kill();
        let e = tokio::time::timeout(Duration::from_secs(10), job.result())
            .await
            .expect("submit_job result hangs after server death")
            .unwrap_err();
        assert!(matches!(e, Error::ConnectionLost { .. }), "{e:?}");
        while let Some(r) = tokio::time::timeout(Duration::from_secs(10), set.join_next())
            .await
            .expect("submit hangs after server death")
        {
            let e = r.unwrap().unwrap_err();
            assert!(matches!(e, Error::ConnectionLost { .. }), "{e:?}");
        }
        server.restart();
        let (w, task) = start_worker(server.addr(), 1);
        let mut ok = false;
        for _ in 0..50 {
            if let Ok(r) = c.submit("rev", "abc", SubmitOptions::default()).await {
                assert_eq!(r, b("cba"));
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ok, "client did not recover");
        stop_worker(w, task).await;
    })
    .await;
}

/// Regression: a Client and a Worker whose connection tasks ran on a runtime
/// that was shut down keep working from another runtime (bindings may call
/// from several runtimes).
#[test]
fn client_and_worker_survive_the_runtime_that_started_them() {
    for kind in ServerKind::selected() {
        let server = TestServer::start(kind);
        let c = client(server.addr());
        let w = worker(server.addr(), 2);
        w.register("rev", None).unwrap();
        {
            let first = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let (c, w) = (c.clone(), w.clone());
            first.block_on(async move {
                assert_eq!(c.echo("one").await.unwrap(), b("one"));
                // Starts the worker's connection tasks on this runtime.
                let none = tokio::time::timeout(Duration::from_millis(200), w.next_job()).await;
                assert!(none.is_err(), "no job was submitted yet");
            });
            first.shutdown_timeout(Duration::from_secs(5));
        }
        let second = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        second.block_on(async move {
            tokio::time::timeout(T, async {
                let runner = w.clone();
                let task = tokio::spawn(async move { runner.run(handle).await.unwrap() });
                // The first call may report the connection of the dead runtime as lost.
                let mut got = None;
                for _ in 0..50 {
                    match c.submit("rev", "two", SubmitOptions::default()).await {
                        Ok(r) => {
                            got = Some(r);
                            break;
                        }
                        Err(e) => {
                            assert!(matches!(e, Error::ConnectionLost { .. }), "{e:?}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                assert_eq!(got, Some(b("owt")));
                stop_worker(w, task).await;
            })
            .await
            .expect("timed out on the second runtime");
        });
    }
}

/// Regression: the server sends every WORK_* packet once per attachment of
/// a connection. After two coalesced submissions were dropped, a third one
/// on the same connection must still see each event exactly once.
#[tokio::test]
async fn coalesced_events_arrive_once_after_other_waiters_left() {
    each_server("coalesced_once", T, |kind| async move {
        let server = TestServer::start(kind);
        let c = client(server.addr());
        let keyed = || SubmitOptions {
            unique: Some(b("same-key")),
            ..Default::default()
        };
        let a = c.submit_job("events", "x", keyed()).await.unwrap();
        let b2 = c.submit_job("events", "x", keyed()).await.unwrap();
        assert_eq!(a.handle(), b2.handle());
        drop(a);
        drop(b2);
        // A submission that gives up before JOB_CREATED attaches too.
        let _ = c
            .submit(
                "events",
                "x",
                SubmitOptions {
                    timeout: Some(Duration::from_nanos(1)),
                    ..keyed()
                },
            )
            .await;
        let mut job = c.submit_job("events", "x", keyed()).await.unwrap();
        let (w, task) = start_worker(server.addr(), 1);
        let mut events = Vec::new();
        while let Some(ev) = job.next_event().await {
            events.push(ev.unwrap());
        }
        assert_eq!(events, expected_events());
        // Nothing left over for the next job on this connection.
        assert_eq!(
            c.submit("rev", "ab", SubmitOptions::default())
                .await
                .unwrap(),
            b("ba")
        );
        stop_worker(w, task).await;
    })
    .await;
}

/// Regression: huge durations in the options (e.g. `Duration::MAX` meaning
/// "no limit") must not panic on `Instant` overflow.
#[tokio::test]
async fn huge_durations_do_not_panic() {
    each_server("huge_durations", T, |kind| async move {
        let server = TestServer::start(kind);
        let w = Worker::new(WorkerOptions {
            servers: vec![server.addr()],
            poll_interval: Duration::MAX,
            max_backoff: Duration::MAX,
            ..Default::default()
        })
        .unwrap();
        w.register("rev", None).unwrap();
        let runner = w.clone();
        let task = tokio::spawn(async move { runner.run(handle).await.unwrap() });
        let c = Client::new(ClientOptions {
            servers: vec![server.addr()],
            submit_timeout: Duration::MAX,
            job_timeout: Some(Duration::MAX),
            max_backoff: Duration::MAX,
            ..Default::default()
        })
        .unwrap();
        // Let the worker go to sleep (PRE_SLEEP arms the poll timer) first.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for opts in [
            SubmitOptions::default(),
            SubmitOptions {
                timeout: Some(Duration::MAX),
                ..Default::default()
            },
        ] {
            assert_eq!(
                c.submit("rev", "abc", opts.clone()).await.unwrap(),
                b("cba")
            );
            let job = c.submit_job("rev", "xyz", opts).await.unwrap();
            assert_eq!(job.result().await.unwrap(), b("zyx"));
        }
        stop_worker(w, task).await;
        // A refused connection arms the (huge) backoff without panicking.
        let dead = Client::new(ClientOptions {
            servers: vec![ServerAddr::new("127.0.0.1", polygear_interop::free_port())],
            min_backoff: Duration::MAX,
            max_backoff: Duration::MAX,
            ..Default::default()
        })
        .unwrap();
        assert!(dead.echo("x").await.is_err());
        assert!(dead.echo("x").await.is_err());
    })
    .await;
}
