//! `polygear admin retry …` and `polygear admin dead …` against polygeard
//! (polygear extensions: gearmand refuses them).

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Runs `polygear admin ARGS` until its output contains `want` (at most 10 s).
fn admin_until(s: &TestServer, args: &[&str], want: &str) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let out = admin(s, args);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let text = out.text();
        if text.contains(want) {
            return text;
        }
        assert!(Instant::now() < end, "no {want:?} in {text:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn retry_policies_and_the_dead_set_from_the_command_line() {
    let s = TestServer::start_with(ServerKind::Polygeard, &["-l", "none"]);
    // Policies: set, listed raw, removed.
    assert_eq!(
        admin(&s, &["retry", "fails", "2", "50", "1000"]).text(),
        "OK\n"
    );
    assert_eq!(admin(&s, &["retry", "other", "5", "10"]).text(), "OK\n");
    assert_eq!(
        admin(&s, &["retry"]).text(),
        "fails\t2\t50\t1000\nother\t5\t10\t3600000\n.\n"
    );
    assert_eq!(admin(&s, &["retry", "other", "0", "0"]).text(), "OK\n");
    assert_eq!(admin(&s, &["retry"]).text(), "fails\t2\t50\t1000\n.\n");
    let bad = admin(&s, &["retry", "fails", "x", "1"]);
    assert_eq!(bad.code, Some(2), "a usage error: {}", bad.stderr);

    // A worker that always fails (exit 1: WORK_FAIL): the job dies after 2 runs.
    let _w = start_c_worker(&s, "fails", &["--", "false"]);
    let mut c = polygear(Some(&s));
    c.args(["-b", "-f", "fails", "-u", "tab\there", "payload"]);
    assert_eq!(run(&mut c, b"").code, Some(0));
    let table = admin_until(&s, &["dead", "list"], "1 dead job(s)");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("HANDLE"), "{table}");
    for cell in ["fails", "2", "WORK_FAIL", "tab\\there", "payload"] {
        assert!(
            lines[1].split("  ").any(|c| c.trim() == cell),
            "{cell} in {table}"
        );
    }
    assert_eq!(
        admin(&s, &["dead", "list", "nothing"]).text(),
        "0 dead job(s)\n"
    );

    // Requeued (it fails twice again and is back), then deleted.
    assert_eq!(
        admin(&s, &["dead", "retry", "function", "fails"]).text(),
        "1\n"
    );
    admin_until(&s, &["dead", "list"], "1 dead job(s)");
    let handle = lines[1].split_whitespace().next().unwrap().to_string();
    assert_eq!(
        admin(&s, &["dead", "delete", "job", "H:none:1"]).text(),
        "0\n"
    );
    let listed = admin(&s, &["dead", "list"]).text();
    let now = listed
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_ne!(now, handle, "the requeued job has a new handle");
    assert_eq!(admin(&s, &["dead", "delete", "job", &now]).text(), "1\n");
    assert_eq!(admin(&s, &["dead", "delete", "all"]).text(), "0\n");
    assert_eq!(admin(&s, &["dead", "list"]).text(), "0 dead job(s)\n");
    let usage = admin(&s, &["dead", "purge"]);
    assert_eq!(usage.code, Some(2), "{}", usage.stderr);
}

#[test]
fn gearmand_refuses_the_extensions() {
    let Some(g) = TestServer::gearmand(&[]) else {
        eprintln!("gearmand is not installed; skipping");
        return;
    };
    for args in [&["retry"][..], &["dead", "list"], &["dead", "retry", "all"]] {
        let out = admin(&g, args);
        assert_eq!(out.code, Some(1), "{args:?}: {}", out.text());
        assert!(out.stderr.contains("UNKNOWN_COMMAND"), "{}", out.stderr);
    }
}
