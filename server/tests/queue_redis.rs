//! The Redis queue (`-q redis`) against a real Debian redis-server (one per
//! test binary, `appendonly yes`, `appendfsync always`; tests keep apart by
//! key prefix): durability, gearmand interop both ways, function names with
//! `-`, and Redis lost while clients submit.

mod common;

use common::{durable, keyed, polygeard, strs};
use polygear::protocol::Priority;
use polygear_test_support::redis;

/// polygeard's flags for the shared Redis with key prefix `prefix`.
fn args(port: u16, prefix: &str) -> Vec<String> {
    ["-q", "redis", "--redis-server", "127.0.0.1", "--redis-port"]
        .iter()
        .map(|s| s.to_string())
        .chain([port.to_string(), "--redis-prefix".into(), prefix.into()])
        .collect()
}

#[test]
fn kill9_loses_no_acknowledged_job_and_runs_each_once() {
    let a = args(redis::shared().port, "k9");
    durable::kill9_loses_no_acknowledged_job(&strs(&a));
}

#[test]
fn restart_keeps_queued_jobs_and_priorities() {
    let a = args(redis::shared().port, "restart");
    durable::restart_keeps_queued_jobs_and_priorities(&strs(&a));
}

#[test]
fn function_names_with_dashes_come_back_intact() {
    let a = args(redis::shared().port, "dash");
    let jobs: Vec<keyed::Job> = vec![
        ("resize-image", "a-b".into(), "one".into(), Priority::Normal),
        (
            "resize-image",
            String::new(),
            "two".into(),
            Priority::Normal,
        ),
        ("x-y-z", "-".into(), "three".into(), Priority::Low),
        ("x-y-z", "high".into(), "high".into(), Priority::High),
    ];
    let mut d = polygeard(&strs(&a));
    keyed::submit_all(d.port, &jobs);
    d.restart();
    let seen = keyed::drain_all(d.port, &["resize-image", "x-y-z"]);
    let mut got: Vec<(&str, &str)> = seen.iter().map(|(f, _, x)| (&f[..], &x[..])).collect();
    assert_eq!(got[0], ("x-y-z", "high"));
    got.sort();
    assert_eq!(
        got,
        [
            ("resize-image", "one"),
            ("resize-image", "two"),
            ("x-y-z", "high"),
            ("x-y-z", "three")
        ]
    );
    assert!(seen.iter().any(|(_, u, _)| u == "a-b"));
}

#[test]
fn jobs_queued_by_gearmand_run_once_on_polygeard() {
    let port = redis::shared().port;
    // gearmand's keys name no function: with a UUID unique (libgearman's
    // clients send one for a job without) or none (the key ends in `-`) a
    // function with `-` comes back. (gearmand keeps one job per function
    // without a unique: the key is the same.)
    let mut jobs = keyed::jobs(&["g2p"], 40, true);
    jobs.extend((0..10).map(|i| {
        let u = keyed::uuid(1000 + i);
        ("g2p-dash", u, format!("dash {i}"), Priority::Low)
    }));
    jobs.push(("g2p-no-unique", String::new(), "none".into(), Priority::Low));
    keyed::gearmand_jobs_run_on_polygeard(
        &strs(&keyed::for_gearmand(args(port, "g2p"))),
        &strs(&args(port, "g2p")),
        &jobs,
    );
}

#[test]
fn jobs_queued_by_polygeard_run_once_on_gearmand() {
    let port = redis::shared().port;
    keyed::polygeard_jobs_run_on_gearmand(
        &strs(&args(port, "p2g")),
        &strs(&keyed::for_gearmand(args(port, "p2g"))),
        &keyed::jobs(&["p2g"], 40, false),
    );
}

#[test]
fn redis_lost_while_clients_submit() {
    let mut server = redis::start();
    let a = args(server.port, "lost");
    let server = std::cell::RefCell::new(&mut server);
    keyed::queue_server_lost_and_back(
        &strs(&a),
        &mut || server.borrow_mut().stop(),
        &mut || server.borrow_mut().restart(),
        true,
    );
}

#[test]
fn redis_kill9_with_appendfsync_always_loses_no_acknowledged_job() {
    let mut server = redis::start();
    let a = args(server.port, "rk9");
    let mut d = polygeard(&strs(&a));
    let port = d.port;
    let submitter = std::thread::spawn(move || keyed::submit_until_refused(port, "rk9"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    server.stop(); // SIGKILL
    let acked = submitter.join().unwrap();
    eprintln!("{} jobs acknowledged before Redis was killed", acked.len());
    assert!(!acked.is_empty());
    server.restart();
    d.restart();
    let seen: Vec<String> = keyed::drain_all(d.port, &["rk9"])
        .into_iter()
        .map(|(_, u, _)| u)
        .collect();
    let set: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(set.len(), seen.len(), "no job ran twice");
    let lost: Vec<&String> = acked.iter().filter(|u| !set.contains(u)).take(5).collect();
    assert!(lost.is_empty(), "acknowledged jobs lost: {lost:?}");
}

#[test]
fn scheduled_jobs_keep_their_time_across_a_restart() {
    let a = args(redis::shared().port, "epoch");
    let mut d = polygeard(&strs(&a));
    let mut c = common::Raw::connect(d.port);
    c.send(&polygear::protocol::Packet::SubmitJobEpoch {
        function: "later".into(),
        unique: "e-1".into(),
        when: 4_000_000_000,
        data: "x".into(),
    });
    common::created(c.recv());
    drop(c);
    d.restart();
    let mut admin = common::Raw::connect(d.port);
    assert_eq!(admin.admin("status"), "later\t1\t0\t0\n.\n");
    assert_eq!(keyed::drain_all(d.port, &["later"]), [], "not due yet");
}

#[test]
fn authenticates_with_the_password() {
    let server = redis::start_with_password();
    let mut a = args(server.port, "auth");
    a.extend(["--redis-password".to_string(), redis::PASSWORD.to_string()]);
    durable::restart_keeps_queued_jobs_and_priorities(&strs(&a));

    // A wrong password: one line and a failure at start.
    let port = server.port.to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_polygeard"))
        .args([
            "-L",
            "127.0.0.1",
            "-p",
            "0",
            "-q",
            "redis",
            "--redis-port",
            &port,
        ])
        .args(["--redis-server", "127.0.0.1", "--redis-password", "wrong"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("AUTH"), "{err}");
}

#[test]
fn redis_down_at_start_is_one_line_and_a_failure() {
    let port = polygear_test_support::free_port().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_polygeard"))
        .args(["-L", "127.0.0.1", "-p", "0", "-q", "redis"])
        .args(["--redis-server", "127.0.0.1", "--redis-port", &port])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("redis at 127.0.0.1:"), "{err}");
}
