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
