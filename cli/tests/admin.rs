//! `polygear admin …` end to end against real job servers.

mod common;

use common::*;

#[test]
fn single_values_print_without_ok() {
    for kind in kinds() {
        let s = TestServer::start(kind);
        let v = admin(&s, &["version"]);
        assert_eq!(v.code, Some(0), "{}", v.stderr);
        let want = raw_admin(&s, "version", false);
        let want = want
            .trim_end()
            .strip_prefix("OK ")
            .expect("server answers OK <version>");
        assert_eq!(v.text(), format!("{want}\n"));
        // gearadmin's option names work too.
        assert_eq!(admin(&s, &["--server-version"]).text(), v.text());

        let p = admin(&s, &["getpid"]);
        assert_eq!(p.code, Some(0));
        assert!(
            p.text().trim().parse::<u32>().is_ok_and(|pid| pid > 0),
            "{:?}",
            p.text()
        );

        let l = admin(&s, &["verbose"]);
        let level = l.text();
        assert!(
            ["FATAL", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"]
                .contains(&level.trim()),
            "{level:?}"
        );
    }
}

#[test]
fn listings_are_raw_with_final_dot() {
    for kind in kinds() {
        let s = TestServer::start(kind);
        assert_eq!(admin(&s, &["status"]).text(), ".\n");
        assert_eq!(admin(&s, &["show-jobs"]).text(), ".\n");
        assert_eq!(admin(&s, &["show-unique-jobs"]).text(), ".\n");
        assert_eq!(admin(&s, &["priority-status"]).text(), ".\n");
        let _w = start_worker(&s, "listed", &[]);
        let w = admin(&s, &["workers"]);
        assert_eq!(w.code, Some(0));
        let t = w.text();
        assert!(t.ends_with("\n.\n"), "{t:?}");
        assert!(t.lines().any(|l| l.ends_with(": listed")), "{t:?}");
        let st = admin(&s, &["status"]).text();
        assert_eq!(st, "listed\t0\t0\t1\n.\n");
    }
}

#[test]
fn functions_maxqueue_and_cancel() {
    for kind in kinds() {
        let s = TestServer::start(kind);
        let c = admin(&s, &["create-function", "mq"]);
        assert_eq!(
            (c.code, c.text().as_str()),
            (Some(0), "OK\n"),
            "{}",
            c.stderr
        );
        assert!(admin(&s, &["status"]).text().contains("mq\t0\t0\t0\n"));
        let m = admin(&s, &["maxqueue", "mq", "1"]);
        assert_eq!(
            (m.code, m.text().as_str()),
            (Some(0), "OK\n"),
            "{}",
            m.stderr
        );
        let o = run(polygear(Some(&s)).args(["-b", "-f", "mq", "one"]), b"");
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        // The queue is full: the server refuses, the client says so in one line.
        let o = run(polygear(Some(&s)).args(["-b", "-f", "mq", "two"]), b"");
        assert_eq!(o.code, Some(3));
        assert_eq!(o.stderr.lines().count(), 1, "{:?}", o.stderr);
        assert!(
            o.stderr.starts_with("polygear: ") && o.stderr.contains("QUEUE_ERROR"),
            "{:?}",
            o.stderr
        );
        let m = admin(&s, &["maxqueue", "mq", "0", "5", "0"]);
        assert_eq!(m.code, Some(0), "{}", m.stderr);
        let o = run(polygear(Some(&s)).args(["-b", "-f", "mq", "three"]), b"");
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        assert_eq!(admin(&s, &["maxqueue", "mq"]).text(), "OK\n");

        // Cancelling an unknown job is refused: exit 1, one line.
        let c = admin(&s, &["cancel-job", "H:nowhere:1"]);
        assert_eq!(c.code, Some(1));
        assert_eq!(
            c.stderr,
            format!("polygear: {} refused: UNKNOWN_JOB\n", s.addr_string())
        );

        let d = admin(&s, &["drop-function", "nosuch"]);
        assert_eq!(d.code, Some(1));
        assert_eq!(d.stderr.lines().count(), 1, "{:?}", d.stderr);
        assert!(d.stderr.contains("refused"), "{:?}", d.stderr);
        let c = admin(&s, &["create-function", "dropme"]);
        assert_eq!(c.code, Some(0));
        let d = admin(&s, &["drop-function", "dropme"]);
        assert_eq!(
            (d.code, d.text().as_str()),
            (Some(0), "OK\n"),
            "{}",
            d.stderr
        );
        assert!(!admin(&s, &["status"]).text().contains("dropme"));
    }
}

#[test]
fn usage_errors_and_shutdown() {
    let s = TestServer::start(kinds()[0]);
    for bad in [
        &["bogus"][..],
        &[],
        &["cancel-job"],
        &["maxqueue", "f", "x"],
        &["status", "-q"],
    ] {
        let o = admin(&s, bad);
        assert_eq!(o.code, Some(2), "{bad:?}: {}", o.stderr);
        assert!(o.stderr.starts_with("polygear: "), "{:?}", o.stderr);
    }
    let h = run(polygear(None).args(["admin", "--help"]), b"");
    assert_eq!(h.code, Some(0));
    assert!(h.text().contains("show-unique-jobs"));

    let mut s = s;
    let o = admin(&s, &["shutdown", "graceful"]);
    match s.kind {
        // gearmand 1.1.15+ has no shutdown command.
        ServerKind::Gearmand => {
            assert_eq!(o.code, Some(1));
            assert!(
                o.stderr.contains("refused: UNKNOWN_COMMAND"),
                "{:?}",
                o.stderr
            );
        }
        ServerKind::Polygeard => {
            assert_eq!(
                (o.code, o.text().as_str()),
                (Some(0), "OK\n"),
                "{}",
                o.stderr
            );
        }
    }
    s.kill();
}

/// `pause`/`resume`/`drain` (polygeard extensions), with the C `gearman`
/// tool as client and worker: a paused function's jobs wait, the C client
/// and worker see nothing unusual, and run once resumed.
#[test]
fn pause_resume_and_drain_with_the_c_tools() {
    if which("gearman").is_none() || !ServerKind::Polygeard.available() {
        eprintln!("gearman CLI or polygeard not available; skipping");
        return;
    }
    let s = TestServer::start(ServerKind::Polygeard);
    let p = admin(&s, &["pause", "rev"]);
    assert_eq!(
        (p.code, p.text().as_str()),
        (Some(0), "OK\n"),
        "{}",
        p.stderr
    );
    assert_eq!(admin(&s, &["pause"]).text(), "rev\n.\n");
    let _w = start_c_worker(&s, "rev", &["--", "rev"]);
    // The C client's job queues while the function is paused.
    let mut client = Proc::start(gearman(&s).args(["-f", "rev", "--", "hello"]), b"");
    wait_jobs(&s, "rev", 1);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(client.running(), "the job ran while paused");
    wait_status(&s, "rev", "a queued job", |t, r, _| t == 1 && r == 0);
    let r = admin(&s, &["resume", "rev"]);
    assert_eq!(
        (r.code, r.text().as_str()),
        (Some(0), "OK\n"),
        "{}",
        r.stderr
    );
    let out = client.finish_within(DEADLINE);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.text().trim(), "olleh");
    assert_eq!(admin(&s, &["pause"]).text(), ".\n");

    // Drain the C worker by its fd: the next job waits for another worker.
    let fd = raw_admin(&s, "workers", true)
        .lines()
        .find(|l| l.ends_with(": rev"))
        .and_then(|l| l.split(' ').next())
        .expect("the C worker is listed")
        .to_string();
    let d = admin(&s, &["drain", &fd]);
    assert_eq!(
        (d.code, d.text().as_str()),
        (Some(0), "1\n"),
        "{}",
        d.stderr
    );
    assert!(admin(&s, &["drain"]).text().starts_with(&format!("{fd} ")));
    let mut client = Proc::start(gearman(&s).args(["-f", "rev", "--", "abc"]), b"");
    wait_jobs(&s, "rev", 1);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(client.running(), "a drained worker got a job");
    let _w2 = start_worker(&s, "rev", &["--", "rev"]);
    let out = client.finish_within(DEADLINE);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.text().trim(), "cba");

    let u = admin(&s, &["drain", "nosuchworker"]);
    assert_eq!(u.code, Some(1));
    assert!(u.stderr.contains("UNKNOWN_WORKER"), "{}", u.stderr);
}

/// `schedule add|list|delete` (polygeard extension): the cron expression is
/// one argument with spaces; the C worker runs the periodic jobs.
#[test]
fn schedules_from_the_cli_fire_jobs_for_a_c_worker() {
    if which("gearman").is_none() || !ServerKind::Polygeard.available() {
        eprintln!("gearman CLI or polygeard not available; skipping");
        return;
    }
    let s = TestServer::start(ServerKind::Polygeard);
    let add = admin(
        &s,
        &["schedule", "add", "tick", "* * * * * *", "cnt", "a b"],
    );
    assert_eq!(
        (add.code, add.text().as_str()),
        (Some(0), "OK\n"),
        "{}",
        add.stderr
    );
    let list = admin(&s, &["schedule", "list"]).text();
    assert!(list.starts_with("tick\tcnt\t* * * * * *\t"), "{list:?}");
    assert!(list.ends_with("\ta b\n.\n"), "{list:?}");
    // The periodic jobs queue up for the function until a worker comes.
    wait_status(&s, "cnt", "a fired job", |t, _, _| t >= 1);
    let _w = start_c_worker(&s, "cnt", &["--", "cat"]);
    wait_status(&s, "cnt", "the fired jobs to run", |t, _, _| t == 0);
    let del = admin(&s, &["schedule", "delete", "tick"]);
    assert_eq!((del.code, del.text().as_str()), (Some(0), "OK\n"));
    let again = admin(&s, &["schedule", "delete", "tick"]);
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.contains("UNKNOWN_SCHEDULE"),
        "{}",
        again.stderr
    );
    let bad = admin(&s, &["schedule", "add", "x", "99 * * * *", "f"]);
    assert_eq!(bad.code, Some(1));
    assert!(bad.stderr.contains("INVALID_SCHEDULE"), "{}", bad.stderr);
}
