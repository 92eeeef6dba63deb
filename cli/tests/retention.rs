//! `polygear --retain` / `--result` and `polygear admin retain|window`
//! end to end against polygeard (and gearmand, which must refuse cleanly).

mod common;

use std::time::{Duration, Instant};

use common::*;

fn handle_of(out: &Out) -> String {
    let t = out.text();
    t.trim()
        .strip_prefix("Task created: ")
        .unwrap_or_else(|| panic!("no handle in {t:?} / {}", out.stderr))
        .to_string()
}

#[test]
fn retained_result_fetched_with_result_option() {
    let s = TestServer::start(ServerKind::Polygeard);
    let out = run(
        polygear(Some(&s)).args(["-v", "-b", "--retain", "60", "-f", "rev", "hello"]),
        b"",
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let h = handle_of(&out);
    // Queued: no result yet, the state on stderr, exit 1.
    let o = run(polygear(Some(&s)).args(["--result", &h]), b"");
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains(&format!("{h}: queued")), "{}", o.stderr);
    let _w = start_worker(&s, "rev", &["--", "rev"]);
    let limit = Instant::now() + Duration::from_secs(10);
    loop {
        let o = run(polygear(Some(&s)).args(["--result", &h]), b"");
        if o.code == Some(0) {
            assert_eq!(o.text().trim(), "olleh");
            break;
        }
        assert!(Instant::now() < limit, "no result: {}", o.stderr);
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = run(polygear(Some(&s)).args(["--result", "H:nowhere:1"]), b"");
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("unknown"), "{}", o.stderr);
    // Usage errors.
    let o = run(
        polygear(Some(&s)).args(["--retain", "10", "-f", "rev", "x"]),
        b"",
    );
    assert_eq!(o.code, Some(2), "--retain without -b");
    let o = run(
        polygear(Some(&s)).args(["-b", "--retain", "0", "-f", "rev"]),
        b"",
    );
    assert_eq!(o.code, Some(2));
}

#[test]
fn admin_retain_and_window() {
    let s = TestServer::start(ServerKind::Polygeard);
    for cmd in ["retain", "window"] {
        let o = admin(&s, &[cmd, "resize", "60"]);
        assert_eq!(
            (o.code, o.text().as_str()),
            (Some(0), "OK\n"),
            "{}",
            o.stderr
        );
        admin(&s, &[cmd, "thumb", "5"]);
        let o = admin(&s, &[cmd]);
        assert_eq!(o.text(), "resize\t60\nthumb\t5\n.\n");
        admin(&s, &[cmd, "thumb", "0"]);
        assert_eq!(admin(&s, &[cmd]).text(), "resize\t60\n.\n");
        let o = admin(&s, &[cmd, "resize"]);
        assert_eq!(o.code, Some(2));
    }
}

#[test]
fn gearmand_refuses_retention_without_breaking() {
    if !ServerKind::Gearmand.available() {
        eprintln!("gearmand not installed; skipping");
        return;
    }
    let s = TestServer::start(ServerKind::Gearmand);
    let o = run(
        polygear(Some(&s)).args(["-b", "--retain", "60", "-f", "rev", "x"]),
        b"",
    );
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    assert!(
        o.stderr.contains("does not support retained results"),
        "{}",
        o.stderr
    );
    let o = run(polygear(Some(&s)).args(["--result", "H:x:1"]), b"");
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    // An admin command gearmand does not know is refused in one line.
    let o = admin(&s, &["retain"]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
}
