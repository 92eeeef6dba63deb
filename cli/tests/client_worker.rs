//! `polygear` client and worker modes end to end, against real job servers
//! and the C `gearman` tool.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn help_and_usage_errors() {
    for flag in ["--help", "-H"] {
        let o = run(polygear(None).arg(flag), b"");
        assert_eq!(o.code, Some(0), "{flag}");
        let t = o.text();
        for part in [
            "Client mode:",
            "Worker mode:",
            "-f FUNC",
            "polygear admin",
            "Exit status:",
        ] {
            assert!(t.contains(part), "{flag} help lacks {part:?}");
        }
    }
    let o = run(polygear(None).arg("hello"), b"");
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr.starts_with("polygear: no function given"),
        "{}",
        o.stderr
    );
    let o = run(polygear(None).args(["-f", "x", "-Z"]), b"");
    assert_eq!(o.code, Some(2));
    assert!(o.stderr.contains("unknown option '-Z'"), "{}", o.stderr);
}

#[test]
fn client_against_c_worker() {
    for kind in kinds() {
        let s = TestServer::start(kind);
        let _w = start_c_worker(&s, "rev", &["--", "rev"]);
        // All of stdin is one workload.
        let o = run(polygear(Some(&s)).args(["-f", "rev"]), b"hello\n");
        assert_eq!(
            (o.code, o.text().as_str()),
            (Some(0), "olleh\n"),
            "{}",
            o.stderr
        );
        // Each data word is one job, without a newline; -v prints the handles.
        let o = run(
            polygear(Some(&s)).args(["-v", "-f", "rev", "abc", "xy"]),
            b"",
        );
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        let t = o.text();
        let parts: Vec<&str> = t.split("Task created: ").collect();
        assert_eq!(parts.len(), 3, "{t:?}");
        for (part, want) in parts[1..].iter().zip(["cba", "yx"]) {
            let (handle, result) = part.split_once('\n').expect("handle line");
            assert!(handle.starts_with("H:"), "{t:?}");
            assert_eq!(result, want, "{t:?}");
        }
    }
}

#[test]
fn c_client_against_our_worker() {
    for kind in kinds() {
        let s = TestServer::start(kind);
        let _w = start_worker(&s, "rev", &["--", "rev"]);
        let o = run(gearman(&s).args(["-f", "rev"]), b"hello\n");
        assert_eq!(
            (o.code, o.text().as_str()),
            (Some(0), "olleh\n"),
            "{}",
            o.stderr
        );
        // The OSCON examples: a command with its own option, no `--` needed.
        let _wc = start_worker(&s, "wc", &["wc", "-l"]);
        let o = run(gearman(&s).args(["-f", "wc"]), b"a\nb\nc\n");
        assert_eq!(o.text().trim(), "3");
        let o = run(polygear(Some(&s)).args(["-f", "wc"]), b"a\nb\nc\nd\n");
        assert_eq!((o.code, o.text().trim()), (Some(0), "4"));
    }
}

#[test]
fn worker_pipes_four_mib_through_cat() {
    for kind in kinds() {
        let s = TestServer::start(kind);
        let _w = start_worker(&s, "cat", &["--", "cat"]);
        let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let o = run(polygear(Some(&s)).args(["-f", "cat"]), &payload);
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        assert!(o.stdout == payload, "got {} bytes back", o.stdout.len());
    }
}

#[test]
fn failing_command_fails_the_job() {
    for kind in kinds() {
        let s = TestServer::start(kind);
        let _f = start_worker(&s, "false", &["--", "false"]);
        let o = run(polygear(Some(&s)).args(["-f", "false"]), b"input");
        assert_eq!(
            (o.code, o.text().as_str(), o.stderr.as_str()),
            (Some(1), "", "Job failed\n")
        );
        // The C client sees the same.
        let o = run(gearman(&s).args(["-f", "false"]), b"input");
        assert_eq!(o.code, Some(1));
        assert!(o.stderr.contains("Job failed"), "{}", o.stderr);
        // Output of a failing command arrives as WORK_DATA before the failure.
        let _p = start_worker(&s, "partial", &["--", "sh", "-c", "cat; echo done; exit 3"]);
        let o = run(polygear(Some(&s)).args(["-f", "partial"]), b"got:");
        assert_eq!(
            (o.code, o.text().as_str(), o.stderr.as_str()),
            (Some(1), "got:done\n", "Job failed\n")
        );
        // A command that does not exist fails each job; the worker keeps going.
        let mut missing = start_worker(&s, "missing", &["--", "/nonexistent/polygear-test-cmd"]);
        for _ in 0..2 {
            let o = run(polygear(Some(&s)).args(["-f", "missing", "x"]), b"");
            assert_eq!((o.code, o.stderr.as_str()), (Some(1), "Job failed\n"));
        }
        assert!(missing.running());
    }
}

#[test]
fn worker_line_mode_streams_each_line() {
    for kind in kinds() {
        let s = TestServer::start(kind);
        let _n = start_worker(&s, "lines", &["-n", "--", "cat"]);
        let _nn = start_worker(&s, "strip", &["-N", "--", "cat"]);
        // -P prefixes every chunk, so the chunking is visible: one WORK_DATA
        // per line, then the empty WORK_COMPLETE.
        let o = run(polygear(Some(&s)).args(["-P", "-f", "lines"]), b"l1\nl2\n");
        assert_eq!(
            (o.code, o.text().as_str()),
            (Some(0), "lines: l1\nlines: l2\nlines: "),
            "{}",
            o.stderr
        );
        let o = run(polygear(Some(&s)).args(["-P", "-f", "strip"]), b"l1\nl2\n");
        assert_eq!(
            (o.code, o.text().as_str()),
            (Some(0), "strip: l1strip: l2strip: "),
            "{}",
            o.stderr
        );
        // The C client prints the chunks raw.
        let o = run(gearman(&s).args(["-f", "lines"]), b"a\nb\nc");
        assert_eq!((o.code, o.text().as_str()), (Some(0), "a\nb\nc"));
    }
}

#[test]
fn client_line_mode_one_job_per_line() {
    for kind in kinds() {
        let s = TestServer::start(kind);
        let _w = start_worker(&s, "br", &["--", "sed", "s/^/[/;s/$/]/"]);
        let o = run(
            polygear(Some(&s)).args(["-n", "-f", "br"]),
            b"ab\ncd\n\nlast",
        );
        assert_eq!(
            (o.code, o.text().as_str()),
            (Some(0), "[ab]\n[cd]\n[]\n[last]"),
            "{}",
            o.stderr
        );
        let o = run(polygear(Some(&s)).args(["-N", "-f", "br"]), b"ab\ncd\n");
        assert_eq!(
            (o.code, o.text().as_str()),
            (Some(0), "[ab][cd]"),
            "{}",
            o.stderr
        );
        // -c limits the number of workloads.
        let o = run(
            polygear(Some(&s)).args(["-N", "-c", "2", "-f", "br"]),
            b"1\n2\n3\n4\n",
        );
        assert_eq!(
            (o.code, o.text().as_str()),
            (Some(0), "[1][2]"),
            "{}",
            o.stderr
        );
        let o = run(
            polygear(Some(&s)).args(["-c", "1", "-f", "br", "x", "y"]),
            b"",
        );
        assert_eq!(
            (o.code, o.text().as_str()),
            (Some(0), "[x]"),
            "{}",
            o.stderr
        );
    }
}

#[test]
fn several_functions_and_prefix() {
    for kind in kinds() {
        let s = TestServer::start(kind);
        let _a = start_worker(&s, "up", &["--", "tr", "a-z", "A-Z"]);
        let _b = start_c_worker(&s, "rev", &["--", "rev"]);
        let o = run(
            polygear(Some(&s)).args(["-P", "-f", "up", "-f", "rev", "abc"]),
            b"",
        );
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        let t = o.text();
        assert!(t == "up: ABCrev: cba" || t == "rev: cbaup: ABC", "{t:?}");
    }
}

#[test]
fn worker_without_command_prints_workloads_and_count_exits() {
    for kind in kinds() {
        let s = TestServer::start(kind);
        let w = start_worker(&s, "show", &["-c", "2"]);
        for data in ["one", "two"] {
            let o = run(polygear(Some(&s)).args(["-f", "show", data]), b"");
            assert_eq!((o.code, o.text().as_str()), (Some(0), ""), "{}", o.stderr);
        }
        let o = w.finish();
        assert_eq!(
            (o.code, o.text().as_str()),
            (Some(0), "onetwo"),
            "{}",
            o.stderr
        );
        // Our client against the C worker without a command: same behaviour.
        let c = start_c_worker(&s, "cshow", &["-c", "1"]);
        let o = run(
            polygear(Some(&s)).args(["-s", "-f", "cshow"]),
            b"ignored stdin",
        );
        assert_eq!((o.code, o.text().as_str()), (Some(0), ""), "{}", o.stderr);
        assert_eq!(c.finish().code, Some(0));
    }
}

#[test]
fn background_jobs_priorities_and_admin_status() {
    for kind in kinds() {
        let s = TestServer::start(kind);
        // Queue low, normal, high with no worker running.
        for (flag, data) in [("-L", "low "), ("-b", "normal "), ("-I", "high ")] {
            let o = run(
                polygear(Some(&s)).args(["-b", flag, "-f", "prio", data]),
                b"",
            );
            assert_eq!(
                (o.code, o.text().as_str(), o.stderr.as_str()),
                (Some(0), "", "")
            );
        }
        let o = run(
            polygear(Some(&s)).args(["-b", "-v", "-f", "prio", "-s"]),
            b"",
        );
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        let handle = o
            .text()
            .strip_prefix("Task created: ")
            .expect("-v prints the handle")
            .trim()
            .to_string();
        assert!(handle.starts_with("H:"), "{handle}");
        let st = admin(&s, &["status"]);
        assert_eq!(st.code, Some(0), "{}", st.stderr);
        assert!(
            st.text().contains("prio\t4\t0\t0\n") && st.text().ends_with(".\n"),
            "{}",
            st.text()
        );
        let ps = admin(&s, &["priority-status"]);
        assert!(ps.text().contains("prio\t1\t2\t1\t0\n"), "{}", ps.text());
        let jobs = admin(&s, &["show-jobs"]);
        assert!(
            jobs.text().contains(&format!("{handle}\t0\t0\t1\n")),
            "{}",
            jobs.text()
        );
        // Cancel the empty job; the worker then gets the rest in priority order.
        let c = admin(&s, &["cancel-job", &handle]);
        assert_eq!(
            (c.code, c.text().as_str()),
            (Some(0), "OK\n"),
            "{}",
            c.stderr
        );
        // (It may finish before a status poll could see it registered.)
        let w = Proc::start(
            polygear(Some(&s)).args(["-w", "-c", "3", "-f", "prio"]),
            b"",
        );
        let o = w.finish();
        assert_eq!(
            (o.code, o.text().as_str()),
            (Some(0), "high normal low "),
            "{}",
            o.stderr
        );
    }
}

#[test]
fn unique_key_coalesces_foreground_jobs() {
    for kind in kinds() {
        let s = TestServer::start(kind);
        let a = Proc::start(
            polygear(Some(&s)).args(["-u", "same", "-f", "co", "first"]),
            b"",
        );
        wait_jobs(&s, "co", 1);
        let b = Proc::start(
            polygear(Some(&s)).args(["-u", "same", "-f", "co", "second"]),
            b"",
        );
        // Both clients wait on the one job: still one job in the server.
        wait_clients(&s, "same", 2);
        assert_eq!(admin(&s, &["show-unique-jobs"]).text(), "same\n.\n");
        wait_jobs(&s, "co", 1);
        let w = Proc::start(
            polygear(Some(&s)).args(["-w", "-c", "1", "-f", "co", "--", "cat"]),
            b"",
        );
        let (a, b) = (a.finish(), b.finish());
        assert_eq!(
            (a.code, a.text().as_str()),
            (Some(0), "first"),
            "{}",
            a.stderr
        );
        assert_eq!(
            (b.code, b.text().as_str()),
            (Some(0), "first"),
            "{}",
            b.stderr
        );
        assert_eq!(w.finish().code, Some(0));
    }
}

#[test]
fn timeout_exits_non_zero_quickly() {
    for kind in kinds() {
        let s = TestServer::start(kind);
        let o = run(
            polygear(Some(&s)).args(["-t", "300", "-s", "-f", "nobody"]),
            b"",
        );
        assert_eq!(o.code, Some(4), "{}", o.stderr);
        assert!(o.elapsed < Duration::from_secs(10), "{:?}", o.elapsed);
        assert_eq!(o.stderr.lines().count(), 1, "{:?}", o.stderr);
        assert!(
            o.stderr.starts_with("polygear: timed out after 300 ms"),
            "{:?}",
            o.stderr
        );
        // A worker with -t gives up when no job comes.
        let o = run(
            polygear(Some(&s)).args(["-w", "-t", "300", "-f", "idle"]),
            b"",
        );
        assert_eq!(o.code, Some(4), "{}", o.stderr);
        assert!(o.stderr.contains("timed out"), "{}", o.stderr);
    }
}

#[test]
fn dead_server_gives_one_line_and_non_zero() {
    let port = free_port();
    let expect = format!("polygear: could not connect to 127.0.0.1:{port}: Connection refused\n");
    let base = ["-h", "127.0.0.1", "-p"];
    for extra in [
        &["-f", "x", "-s"][..],
        &["-b", "-f", "x", "data"],
        &["-w", "-f", "x"],
    ] {
        let o = run(
            polygear(None).args(base).arg(port.to_string()).args(extra),
            b"",
        );
        assert_eq!(
            (o.code, o.stderr.as_str()),
            (Some(3), expect.as_str()),
            "{extra:?}"
        );
    }
    let o = run(
        polygear(None).args([
            "admin",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "status",
        ]),
        b"",
    );
    assert_eq!((o.code, o.stderr.as_str()), (Some(3), expect.as_str()));
}

#[test]
fn several_servers_and_gearman_server_env() {
    let kind = kinds()[0];
    let s1 = TestServer::start(kind);
    let s2 = TestServer::start(kind);
    let list = format!("{},{}", s1.addr_string(), s2.addr_string());
    // The worker serves both servers (from GEARMAN_SERVER; -h/-p are then ignored).
    let mut wc = polygear(None);
    wc.env("GEARMAN_SERVER", &list).args([
        "-h",
        "ignored.invalid",
        "-w",
        "-f",
        "up",
        "--",
        "tr",
        "a-z",
        "A-Z",
    ]);
    let _w = Proc::start(&mut wc, b"");
    wait_workers(&s1, "up", 1);
    wait_workers(&s2, "up", 1);
    // Unique keys spread the jobs over both servers; all of them complete.
    for key in ["a", "b", "c", "d", "e", "f"] {
        let o = run(
            polygear(None).args(["-h", &list, "-u", key, "-f", "up", key]),
            b"",
        );
        assert_eq!(
            (o.code, o.text()),
            (Some(0), key.to_uppercase()),
            "{}",
            o.stderr
        );
    }
    // With one server down the client fails over to the other.
    drop(s1);
    let o = run(
        polygear(None)
            .env("GEARMAN_SERVER", &list)
            .args(["-f", "up", "zz"]),
        b"",
    );
    assert_eq!((o.code, o.text().as_str()), (Some(0), "ZZ"), "{}", o.stderr);
}

#[test]
fn events_reach_the_client_output() {
    use polygear::{Worker, WorkerOptions};
    for kind in kinds() {
        let s = TestServer::start(kind);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let worker = Worker::new(WorkerOptions {
            servers: vec![s.addr()],
            ..WorkerOptions::default()
        })
        .unwrap();
        worker.register("events", None).unwrap();
        let w = worker.clone();
        let serving = rt.spawn(async move {
            while let Some(job) = w.next_job().await {
                let data = job.data().clone();
                job.send_data("chunk;").unwrap();
                job.send_warning("careful\n").unwrap();
                job.send_status(1, 4).unwrap();
                job.send_status(3, 0).unwrap();
                match &data[..] {
                    b"fail" => job.fail().unwrap(),
                    b"raise" => job.exception("it broke").unwrap(),
                    _ => job.complete("done").unwrap(),
                }
            }
        });
        wait_workers(&s, "events", 1);
        let o = run(polygear(Some(&s)).args(["-f", "events", "ok"]), b"");
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        assert_eq!(o.text(), "chunk;25% Complete\n0% Complete\ndone");
        assert_eq!(o.stderr, "careful\n");
        let o = run(polygear(Some(&s)).args(["-P", "-f", "events", "fail"]), b"");
        assert_eq!(o.code, Some(1));
        assert_eq!(
            o.text(),
            "events: chunk;events: 25% Complete\nevents: 0% Complete\n"
        );
        assert_eq!(o.stderr, "events: careful\nevents: Job failed\n");
        let o = run(polygear(Some(&s)).args(["-f", "events", "raise"]), b"");
        assert_eq!(o.code, Some(1));
        assert_eq!(o.stderr, "careful\nit broke\n");
        worker.stop();
        rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(10), worker.shutdown()).await;
        });
        serving.abort();
    }
}

/// Waits until `n` clients wait on the job with unique key `unique` (GET_STATUS_UNIQUE).
fn wait_clients(s: &TestServer, unique: &str, n: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = polygear::Client::new(polygear::ClientOptions {
        servers: vec![s.addr()],
        ..polygear::ClientOptions::default()
    })
    .unwrap();
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let st = client.status_unique(unique).await.unwrap();
            if st.client_count.unwrap_or(0) >= n {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "clients never attached: {st:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        client.close().await;
    });
}

/// polygeard's reason for a job it failed itself reaches the CLI's output.
#[test]
fn a_job_polygeard_failed_prints_its_reason() {
    use polygear::protocol::{Magic, Packet};
    use std::io::Read;
    use std::io::Write;
    let Some(kind) = kinds().into_iter().find(|k| k.name() == "polygeard") else {
        return;
    };
    let s = TestServer::start(kind);
    // A raw worker with a 1 s CAN_DO_TIMEOUT that never answers its job.
    let mut w = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let mut out = bytes::BytesMut::new();
    Packet::CanDoTimeout {
        function: "stuck".into(),
        timeout: 1000,
    }
    .encode(Magic::Req, &mut out)
    .unwrap();
    w.write_all(&out).unwrap();
    let mut cmd = polygear(Some(&s));
    cmd.args(["-f", "stuck", "x"]);
    let client = std::thread::spawn(move || cmd.output().unwrap());
    // Grab until the job is there (JOB_ASSIGN is type 11).
    let limit = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut grab = bytes::BytesMut::new();
        Packet::GrabJob.encode(Magic::Req, &mut grab).unwrap();
        w.write_all(&grab).unwrap();
        let mut head = [0u8; 12];
        w.read_exact(&mut head).unwrap();
        let size = u32::from_be_bytes(head[8..12].try_into().unwrap()) as usize;
        let mut body = vec![0u8; size];
        w.read_exact(&mut body).unwrap();
        if u32::from_be_bytes(head[4..8].try_into().unwrap()) == 11 {
            break;
        }
        assert!(std::time::Instant::now() < limit, "no job to grab");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = client.join().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err, "Job failed: the worker exceeded its 1 s timeout\n");
}
