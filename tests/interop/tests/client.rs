//! polygear::Client against real job servers (gearmand; polygeard when
//! selected), with the C `gearman -w` worker and raw-socket workers speaking
//! the real protocol.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use polygear::protocol::Packet;
use polygear::{Client, ClientOptions, Error, JobEvent, Priority, ServerAddr, SubmitOptions};
use polygear_interop::raw::{admin_lines, b, each_server, reversed, Raw};
use polygear_interop::{free_port, which, TestServer};
use tokio::task::JoinSet;

const T: Duration = Duration::from_secs(30);

fn client(servers: Vec<ServerAddr>) -> Client {
    Client::new(ClientOptions {
        servers,
        connect_timeout: Duration::from_secs(2),
        submit_timeout: Duration::from_secs(10),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        ..Default::default()
    })
    .unwrap()
}

fn opts(unique: Option<&str>, priority: Priority) -> SubmitOptions {
    SubmitOptions {
        unique: unique.map(|u| Bytes::copy_from_slice(u.as_bytes())),
        priority,
        ..Default::default()
    }
}

/// Serves `n` jobs on `function`, completing each with `f(data)`.
fn spawn_raw_worker(
    addr: ServerAddr,
    function: &'static str,
    n: usize,
    f: fn(&Bytes) -> Bytes,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut w = Raw::worker(&addr, function, T).await;
        for _ in 0..n {
            let job = w.grab().await;
            let out = f(&job.data);
            w.complete(&job.handle, out).await;
        }
        // Make sure the last packet reached the server before closing.
        w.send(Packet::EchoReq { data: b("bye") }).await;
        while !matches!(w.recv().await, Packet::EchoRes { .. }) {}
    })
}

/// The C `gearman -w` worker running a command; killed on drop.
struct CliWorker(Child);

impl CliWorker {
    fn start(server: &TestServer, function: &str, cmd: &[&str]) -> CliWorker {
        let gearman = which("gearman").expect("the gearman CLI is installed");
        let child = Command::new(gearman)
            .args([
                "-w",
                "-h",
                "127.0.0.1",
                "-p",
                &server.port.to_string(),
                "-f",
                function,
                "--",
            ])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        CliWorker(child)
    }
}

impl Drop for CliWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn round_trip_with_gearman_cli_worker() {
    each_server("round_trip", T, |kind| async move {
        let server = TestServer::start(kind);
        let _w = CliWorker::start(&server, "rev", &["rev"]);
        let c = client(vec![server.addr()]);
        let out = c
            .submit("rev", "hello", SubmitOptions::default())
            .await
            .unwrap();
        assert_eq!(out, b("olleh"));
        // Again on the same connection, high and low priority.
        for p in [Priority::High, Priority::Low, Priority::Normal] {
            let out = c.submit("rev", "abc", opts(None, p)).await.unwrap();
            assert_eq!(out, b("cba"));
        }
        c.close().await;
    })
    .await;
}

#[tokio::test]
async fn echo_and_client_id() {
    each_server("echo", T, |kind| async move {
        let server = TestServer::start(kind);
        let c = Client::new(ClientOptions {
            servers: vec![server.addr()],
            client_id: Some("polygear-test-client".into()),
            ..Default::default()
        })
        .unwrap();
        let data = Bytes::from_static(b"a\0b\0\0c");
        assert_eq!(c.echo(data.clone()).await.unwrap(), data);
        assert_eq!(c.echo(Bytes::new()).await.unwrap(), Bytes::new());
        let workers = admin_lines(&server.addr(), "workers", true, T).await;
        assert!(
            workers.iter().any(|l| l.contains("polygear-test-client")),
            "client id not listed: {workers:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn priorities_are_grabbed_in_order() {
    each_server("priorities", T, |kind| async move {
        let server = TestServer::start(kind);
        let c = client(vec![server.addr()]);
        // Background submissions, queued before any worker exists.
        let order = [
            ("low1", Priority::Low),
            ("norm1", Priority::Normal),
            ("high1", Priority::High),
            ("low2", Priority::Low),
            ("norm2", Priority::Normal),
            ("high2", Priority::High),
        ];
        for (name, p) in order {
            c.submit_background("prio_bg", name, opts(None, p))
                .await
                .unwrap();
        }
        // Foreground submissions, same order, all in flight at once.
        let mut jobs = Vec::new();
        for (name, p) in order {
            jobs.push(c.submit_job("prio_fg", name, opts(None, p)).await.unwrap());
        }
        let expected = ["high1", "high2", "norm1", "norm2", "low1", "low2"];
        let mut w = Raw::worker(&server.addr(), "prio_bg", T).await;
        let mut got = Vec::new();
        for _ in 0..6 {
            let j = w.grab().await;
            got.push(String::from_utf8(j.data.to_vec()).unwrap());
            w.complete(&j.handle, Bytes::new()).await;
        }
        assert_eq!(got, expected);

        let mut w = Raw::worker(&server.addr(), "prio_fg", T).await;
        let mut got = Vec::new();
        for _ in 0..6 {
            let j = w.grab().await;
            got.push(String::from_utf8(j.data.to_vec()).unwrap());
            w.complete(&j.handle, reversed(&j.data)).await;
        }
        assert_eq!(got, expected);
        for (job, (name, _)) in jobs.into_iter().zip(order) {
            assert_eq!(job.result().await.unwrap(), reversed(&b(name)));
        }
    })
    .await;
}

#[tokio::test]
async fn unique_submissions_coalesce() {
    each_server("coalesce", T, |kind| async move {
        let server = TestServer::start(kind);
        let c1 = client(vec![server.addr()]);
        let c2 = client(vec![server.addr()]);
        let mut a = c1
            .submit_job("co", "first", opts(Some("same-key"), Priority::Normal))
            .await
            .unwrap();
        let mut b_ = c1
            .submit_job("co", "second", opts(Some("same-key"), Priority::Normal))
            .await
            .unwrap();
        let mut other = c2
            .submit_job("co", "third", opts(Some("same-key"), Priority::Normal))
            .await
            .unwrap();
        assert_eq!(a.handle(), b_.handle());
        assert_eq!(a.handle(), other.handle());
        let st = c1.status_unique("same-key").await.unwrap();
        assert!(st.known && !st.running);
        assert_eq!(st.handle, "same-key");
        // c1 is attached twice (gearmand counts attachments, not connections).
        assert_eq!(st.client_count, Some(3), "{st:?}");

        let mut w = Raw::worker(&server.addr(), "co", T).await;
        let j = w.grab().await;
        assert_eq!(j.data, b("first"));
        assert_eq!(j.unique, b("same-key"));
        w.expect_no_job().await;
        w.send(Packet::WorkData {
            handle: j.handle.clone(),
            data: b("partial"),
        })
        .await;
        w.complete(&j.handle, b("result")).await;
        for job in [&mut a, &mut b_, &mut other] {
            assert_eq!(
                job.next_event().await.unwrap().unwrap(),
                JobEvent::Data(b("partial"))
            );
            assert_eq!(
                job.next_event().await.unwrap().unwrap(),
                JobEvent::Complete(b("result"))
            );
            assert!(job.next_event().await.is_none());
        }
        // The key is free again: a new job gets a new handle.
        let again = c1
            .submit_job("co", "fourth", opts(Some("same-key"), Priority::Normal))
            .await
            .unwrap();
        assert_ne!(again.handle(), a.handle());
    })
    .await;
}

#[tokio::test]
async fn background_status_and_status_unique() {
    each_server("background", T, |kind| async move {
        let server = TestServer::start(kind);
        let c = client(vec![server.addr()]);
        let h = c
            .submit_background("bg", "payload", opts(Some("bg-key"), Priority::Normal))
            .await
            .unwrap();
        let st = c.status(&h).await.unwrap();
        assert_eq!(st.handle, h);
        assert!(st.known && !st.running);
        assert_eq!((st.numerator, st.denominator), (0, 0));

        let mut w = Raw::worker(&server.addr(), "bg", T).await;
        let j = w.grab().await;
        assert_eq!(j.handle, b(&h));
        w.send(Packet::WorkStatus {
            handle: j.handle.clone(),
            numerator: b("3"),
            denominator: b("10"),
        })
        .await;
        // WORK_STATUS has no reply; wait until the server applied it.
        let mut st = c.status(&h).await.unwrap();
        for _ in 0..100 {
            if st.numerator == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            st = c.status(&h).await.unwrap();
        }
        assert!(st.known && st.running);
        assert_eq!((st.numerator, st.denominator), (3, 10));
        let su = c.status_unique("bg-key").await.unwrap();
        assert!(su.known && su.running);
        assert_eq!(
            (su.numerator, su.denominator, su.client_count),
            (3, 10, Some(0))
        );

        w.complete(&j.handle, Bytes::new()).await;
        w.send(Packet::EchoReq { data: Bytes::new() }).await;
        assert!(matches!(w.recv().await, Packet::EchoRes { .. }));
        let st = c.status(&h).await.unwrap();
        assert!(!st.known && !st.running);
        let su = c.status_unique("bg-key").await.unwrap();
        assert!(!su.known);

        // Without a unique, a 36-character UUID-style unique is generated.
        let h2 = c
            .submit_background("bg", "x", SubmitOptions::default())
            .await
            .unwrap();
        let j = w.grab().await;
        assert_eq!(j.handle, b(&h2));
        assert_eq!(j.unique.len(), 36, "{:?}", j.unique);
        assert_eq!(j.unique.iter().filter(|&&c| c == b'-').count(), 4);
        w.complete(&j.handle, Bytes::new()).await;

        // Epoch job in the past runs at once.
        let h3 = c
            .submit_background(
                "bg",
                "epoch",
                SubmitOptions {
                    epoch: Some(1_000_000),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let j = w.grab().await;
        assert_eq!((j.handle, j.data), (b(&h3), b("epoch")));
    })
    .await;
}

#[tokio::test]
async fn events_arrive_in_order() {
    each_server("events", T, |kind| async move {
        let server = TestServer::start(kind);
        let c = client(vec![server.addr()]);
        let mut job = c
            .submit_job("ev", "in", SubmitOptions::default())
            .await
            .unwrap();
        let mut w = Raw::worker(&server.addr(), "ev", T).await;
        let j = w.grab().await;
        let h = j.handle.clone();
        w.send(Packet::WorkData {
            handle: h.clone(),
            data: b("d1"),
        })
        .await;
        w.send(Packet::WorkWarning {
            handle: h.clone(),
            data: b("careful"),
        })
        .await;
        w.send(Packet::WorkStatus {
            handle: h.clone(),
            numerator: b("1"),
            denominator: b("2"),
        })
        .await;
        w.send(Packet::WorkData {
            handle: h.clone(),
            data: b("d\0 2"),
        })
        .await;
        w.complete(&h, b("done")).await;
        let mut got = Vec::new();
        while let Some(ev) = job.next_event().await {
            got.push(ev.unwrap());
        }
        assert_eq!(
            got,
            vec![
                JobEvent::Data(b("d1")),
                JobEvent::Warning(b("careful")),
                JobEvent::Status {
                    numerator: 1,
                    denominator: 2
                },
                JobEvent::Data(b("d\0 2")),
                JobEvent::Complete(b("done")),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn exception_and_failure() {
    each_server("exception", T, |kind| async move {
        let server = TestServer::start(kind);
        let c = client(vec![server.addr()]);
        let no_exc = Client::new(ClientOptions {
            servers: vec![server.addr()],
            exceptions: false,
            ..Default::default()
        })
        .unwrap();
        let job = c
            .submit_job("exc", "1", SubmitOptions::default())
            .await
            .unwrap();
        let job2 = no_exc
            .submit_job("exc", "2", SubmitOptions::default())
            .await
            .unwrap();
        let job3 = c
            .submit_job("exc", "3", SubmitOptions::default())
            .await
            .unwrap();
        let mut w = Raw::worker(&server.addr(), "exc", T).await;
        for _ in 0..3 {
            let j = w.grab().await;
            match &j.data[..] {
                b"1" | b"2" => {
                    w.send(Packet::WorkException {
                        handle: j.handle.clone(),
                        data: b("boom: it broke"),
                    })
                    .await
                }
                _ => {
                    w.send(Packet::WorkFail {
                        handle: j.handle.clone(),
                    })
                    .await
                }
            }
        }
        let h = job.handle().to_string();
        match job.result().await {
            Err(Error::JobException { handle, message }) => {
                assert_eq!(handle, h);
                assert_eq!(message, "boom: it broke");
            }
            other => panic!("expected JobException, got {other:?}"),
        }
        // Without the option gearmand converts the exception to WORK_FAIL (with a trailing NUL).
        let h2 = job2.handle().to_string();
        match job2.result().await {
            Err(Error::JobFailed { handle, .. }) => assert_eq!(handle, h2),
            other => panic!("expected JobFailed, got {other:?}"),
        }
        let h3 = job3.handle().to_string();
        match job3.result().await {
            Err(Error::JobFailed { handle, .. }) => assert_eq!(handle, h3),
            other => panic!("expected JobFailed, got {other:?}"),
        }
        // The CLI worker's failing command gives WORK_FAIL too.
        let _cli = CliWorker::start(&server, "false", &["false"]);
        let e = c
            .submit("false", "x", SubmitOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::JobFailed { .. }), "{e:?}");
    })
    .await;
}

#[tokio::test]
async fn binary_and_large_payloads() {
    each_server("payloads", T, |kind| async move {
        let server = TestServer::start(kind);
        let worker = spawn_raw_worker(server.addr(), "big", 3, reversed);
        let c = client(vec![server.addr()]);
        let nul = Bytes::from_static(b"\0a\0\0b\0");
        assert_eq!(
            c.submit("big", nul.clone(), SubmitOptions::default())
                .await
                .unwrap(),
            reversed(&nul)
        );
        assert_eq!(
            c.submit("big", Bytes::new(), SubmitOptions::default())
                .await
                .unwrap(),
            Bytes::new()
        );
        let big: Bytes = (0..16 << 20)
            .map(|i: u32| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into();
        let out = c
            .submit("big", big.clone(), SubmitOptions::default())
            .await
            .unwrap();
        assert_eq!(out.len(), big.len());
        assert!(out == reversed(&big));
        worker.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn pipelined_jobs_on_one_connection() {
    each_server("pipelining", T, |kind| async move {
        let server = TestServer::start(kind);
        let n = 200;
        let worker = spawn_raw_worker(server.addr(), "pipe", n, reversed);
        let c = client(vec![server.addr()]);
        let mut set = JoinSet::new();
        for i in 0..n {
            let c = c.clone();
            set.spawn(async move {
                let data = format!("job-{i}");
                let out = c
                    .submit("pipe", data.clone(), SubmitOptions::default())
                    .await
                    .unwrap();
                assert_eq!(out, reversed(&b(&data)));
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
        worker.await.unwrap();
        // Everything went over one connection.
        let workers = admin_lines(&server.addr(), "workers", true, T).await;
        let idle = workers
            .iter()
            .filter(|l| l.trim_end().ends_with(':'))
            .count();
        assert_eq!(
            idle, 2,
            "one client connection plus the admin one: {workers:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn dead_server_fails_fast() {
    let dead = ServerAddr::new("127.0.0.1", free_port());
    let c = client(vec![dead.clone()]);
    let t0 = std::time::Instant::now();
    let e = c
        .submit("f", "x", SubmitOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e:?}");
    assert_eq!(e.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
    // Next call within the backoff is refused without trying, with the same kind.
    let e = c
        .submit_background("f", "x", SubmitOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains("next attempt in"), "{e}");
    assert_eq!(e.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
    let two = client(vec![dead, ServerAddr::new("127.0.0.1", free_port())]);
    let e = two.echo("x").await.unwrap_err();
    assert!(
        matches!(&e, Error::NoServer(Some(last)) if matches!(**last, Error::Connect { .. })),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("no server available (could not connect to "),
        "{e}"
    );
    assert_eq!(e.kind(), polygear::ErrorKind::Connection);
    assert_eq!(e.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn failover_with_one_dead_server() {
    each_server("failover", T, |kind| async move {
        let server = TestServer::start(kind);
        let dead = ServerAddr::new("127.0.0.1", free_port());
        let n = 12;
        let worker = spawn_raw_worker(server.addr(), "fo", n, reversed);
        let c = client(vec![dead.clone(), server.addr(), dead]);
        for i in 0..n / 2 {
            let d = format!("k{i}");
            assert_eq!(
                c.submit("fo", d.clone(), SubmitOptions::default())
                    .await
                    .unwrap(),
                reversed(&b(&d))
            );
        }
        for i in 0..n / 2 {
            let d = format!("u{i}");
            let out = c
                .submit("fo", d.clone(), opts(Some(&d), Priority::Normal))
                .await
                .unwrap();
            assert_eq!(out, reversed(&b(&d)));
        }
        worker.await.unwrap();
        // A background handle is remembered; status asks the right server.
        let h = c
            .submit_background("fo_idle", "x", SubmitOptions::default())
            .await
            .unwrap();
        assert!(c.status(&h).await.unwrap().known);
        // Unknown handles: every reachable server is asked, the unknown answer returned.
        let st = c.status("H:nowhere:1").await.unwrap();
        assert!(!st.known);
    })
    .await;
}

#[tokio::test]
async fn job_timeout() {
    each_server("job_timeout", T, |kind| async move {
        let server = TestServer::start(kind);
        let c = client(vec![server.addr()]);
        let t0 = std::time::Instant::now();
        let e = c
            .submit(
                "nobody",
                "x",
                SubmitOptions {
                    timeout: Some(Duration::from_millis(300)),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        // Created, then nobody took it: the timeout says so.
        assert!(
            matches!(
                e,
                Error::JobTimeout {
                    started: Some(false),
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5));
        // Default job timeout from the options.
        let c2 = Client::new(ClientOptions {
            servers: vec![server.addr()],
            job_timeout: Some(Duration::from_millis(200)),
            ..Default::default()
        })
        .unwrap();
        let mut job = c2
            .submit_job("nobody", "y", SubmitOptions::default())
            .await
            .unwrap();
        assert!(matches!(
            job.next_event().await,
            Some(Err(Error::JobTimeout { .. }))
        ));
        assert!(job.next_event().await.is_none());
        // The connection is still usable.
        assert_eq!(c.echo("ok").await.unwrap(), b("ok"));
    })
    .await;
}

#[tokio::test]
async fn queue_full_is_a_server_error() {
    each_server("maxqueue", T, |kind| async move {
        let server = TestServer::start(kind);
        let c = client(vec![server.addr()]);
        // The function must exist before maxqueue applies to it.
        c.submit_background("mq", "1", SubmitOptions::default())
            .await
            .unwrap();
        let reply = admin_lines(&server.addr(), "maxqueue mq 1", false, T).await;
        assert_eq!(reply, vec!["OK"]);
        // Pipelined: the ERROR must fail exactly the submission it answers.
        let (r1, r2, r3) = tokio::join!(
            c.submit_background("mq", "2", SubmitOptions::default()),
            c.echo("between"),
            c.submit_job("mq", "3", SubmitOptions::default()),
        );
        match r1 {
            Err(Error::Server { code, text }) => {
                assert_eq!(code, "QUEUE_ERROR");
                assert!(text.contains("full"), "{text}");
            }
            other => panic!("expected QUEUE_ERROR, got {other:?}"),
        }
        assert_eq!(r2.unwrap(), b("between"));
        assert!(matches!(r3, Err(Error::Server { .. })), "{r3:?}");
        assert_eq!(c.echo("still fine").await.unwrap(), b("still fine"));
    })
    .await;
}

#[tokio::test]
async fn connection_loss_and_reconnect() {
    each_server("reconnect", T, |kind| async move {
        let mut server = TestServer::start(kind);
        let c = client(vec![server.addr()]);
        let job = c
            .submit_job("lost", "x", SubmitOptions::default())
            .await
            .unwrap();
        server.kill();
        let e = job.result().await.unwrap_err();
        assert!(matches!(e, Error::ConnectionLost { .. }), "{e:?}");
        server.restart();
        // Within a bounded number of tries (backoff ≤ 400 ms) the client is back.
        let mut ok = false;
        for _ in 0..50 {
            if c.echo("back").await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ok, "client did not reconnect");
    })
    .await;
}

#[tokio::test]
async fn close_ends_jobs_and_invalid_arguments() {
    each_server("close", T, |kind| async move {
        let server = TestServer::start(kind);
        let c = client(vec![server.addr()]);
        let long = "u".repeat(64);
        let e = c
            .submit("f", "x", opts(Some(&long), Priority::Normal))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        let e = c
            .submit_background("f\0g", "x", SubmitOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        // An empty function name is refused before anything is sent.
        let e = c
            .submit_background("", "x", SubmitOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m == "empty function name"),
            "{e:?}"
        );
        let job = c
            .submit_job("closing", "x", SubmitOptions::default())
            .await
            .unwrap();
        let c2 = c.clone();
        let waiter = tokio::spawn(async move { job.result().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        c2.close().await;
        let e = waiter.await.unwrap().unwrap_err();
        assert!(matches!(e, Error::Closed(_)), "{e:?}");
        assert!(matches!(c.echo("x").await, Err(Error::Closed(_))));
    })
    .await;
}

/// Connections from this process to `port` in state ESTABLISHED
/// (from /proc/net/tcp; our side has `port` as its remote port).
fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2].ends_with(&want) && f[3] == "01"
        })
        .count()
}

/// Regression: a request stuck behind a full socket (the server stopped
/// reading) must not keep the connection open after `close()`, and its
/// caller gets an error instead of waiting forever.
#[tokio::test]
async fn close_releases_a_connection_stuck_on_a_full_socket() {
    each_server("stuck_writer", T, |kind| async move {
        let server = TestServer::start(kind);
        let pid = server.pid().unwrap().to_string();
        let c = client(vec![server.addr()]);
        c.echo("up").await.unwrap();
        assert_eq!(established_to(server.port), 1);
        /// Freezes the server; thaws it when dropped (also on panic).
        struct Frozen(String);
        impl Drop for Frozen {
            fn drop(&mut self) {
                let _ = Command::new("kill").args(["-CONT", &self.0]).status();
            }
        }
        let stopped = Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(stopped, "kill -STOP failed");
        let _frozen = Frozen(pid);
        // 48 MiB cannot fit in the socket buffers of a frozen peer.
        let c2 = c.clone();
        let big = tokio::spawn(async move {
            c2.submit_background("big", vec![b'x'; 48 << 20], SubmitOptions::default())
                .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!big.is_finished());
        c.close().await;
        let r = tokio::time::timeout(Duration::from_secs(5), big)
            .await
            .expect("submit stuck after close")
            .unwrap();
        assert!(matches!(r, Err(Error::Closed(_))), "{r:?}");
        // Checked while the server is still frozen: nothing but our close
        // can take the connection out of ESTABLISHED.
        let mut closed = false;
        for _ in 0..100 {
            if established_to(server.port) == 0 {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(closed, "the socket stayed open after close()");
    })
    .await;
}
