//! The memcached queue (`-q libmemcached`) against a real Debian memcached
//! (one per test binary; tests keep apart by key prefix): jobs survive a
//! `kill -9` and a restart of polygeard (not of memcached), gearmand interop
//! both ways, function names with `-`, memcached lost while clients submit.

mod common;

use common::{durable, keyed, polygeard, strs};
use polygear::protocol::Priority;
use polygear_test_support::memcached;

/// polygeard's (and gearmand's) flags for memcached on `port` with key
/// prefix `prefix`.
fn args(port: u16, prefix: &str) -> Vec<String> {
    vec![
        "-q".into(),
        "libmemcached".into(),
        "--libmemcached-servers".into(),
        format!("127.0.0.1:{port}"),
        "--libmemcached-prefix".into(),
        prefix.into(),
    ]
}

#[test]
fn kill9_loses_no_acknowledged_job_and_runs_each_once() {
    let a = args(memcached::shared().port, "k9_");
    durable::kill9_loses_no_acknowledged_job(&strs(&a));
}

#[test]
fn restart_keeps_queued_jobs_and_priorities() {
    let a = args(memcached::shared().port, "restart_");
    durable::restart_keeps_queued_jobs_and_priorities(&strs(&a));
}

#[test]
fn function_names_with_dashes_come_back_with_uuid_or_no_unique() {
    // The key alone names function and unique: a function with `-` comes
    // back with a libgearman UUID unique, or with none.
    let a = args(memcached::shared().port, "dash_");
    let jobs: Vec<keyed::Job> = vec![
        (
            "resize-image",
            keyed::uuid(1),
            "one".into(),
            Priority::Normal,
        ),
        ("x-y-z", String::new(), "two".into(), Priority::Low),
        ("x-y-z", keyed::uuid(2), "high".into(), Priority::High),
    ];
    let mut d = polygeard(&strs(&a));
    keyed::submit_all(d.port, &jobs);
    d.restart();
    let seen = keyed::drain_all(d.port, &["resize-image", "x-y-z"]);
    let mut got: Vec<(&str, &str, &str)> = seen
        .iter()
        .map(|(f, u, x)| (&f[..], &u[..], &x[..]))
        .collect();
    assert_eq!(got[0].2, "high");
    got.sort_by_key(|&(_, _, data)| data);
    let (u1, u2) = (keyed::uuid(1), keyed::uuid(2));
    assert_eq!(got[0], ("x-y-z", u2.as_str(), "high"));
    assert_eq!(got[1], ("resize-image", u1.as_str(), "one"));
    // Submitted without a unique: polygeard made one (in a UUID's form).
    assert_eq!((got[2].0, got[2].2), ("x-y-z", "two"));
    assert_eq!(got[2].1.len(), 36, "{}", got[2].1);
}

#[test]
fn jobs_queued_by_gearmand_run_once_on_polygeard() {
    let port = memcached::shared().port;
    let mut jobs = keyed::jobs(&["g2p"], 40, true);
    jobs.extend((0..10).map(|i| {
        let u = keyed::uuid(1000 + i);
        ("g2p-dash", u, format!("dash {i}"), Priority::Low)
    }));
    keyed::gearmand_jobs_run_on_polygeard(
        &strs(&keyed::for_gearmand(args(port, "g2p_"))),
        &strs(&args(port, "g2p_")),
        &jobs,
    );
}

#[test]
fn jobs_queued_by_polygeard_run_once_on_gearmand() {
    // gearmand's replay (`stats cachedump`) misses items under memcached's
    // default segmented LRU (polygeard's, `lru_crawler metadump`, does not).
    let server = memcached::start_single_lru();
    let port = server.port;
    keyed::polygeard_jobs_run_on_gearmand(
        &strs(&args(port, "p2g_")),
        &strs(&keyed::for_gearmand(args(port, "p2g_"))),
        &keyed::jobs(&["p2g"], 40, false),
    );
}

#[test]
fn two_servers_share_the_keys_as_libmemcached_does() {
    // gearmand finds each job (it reads a key from the server libmemcached's
    // hash names) and deletes it there; nothing is left for polygeard.
    let (s1, s2) = (memcached::start_single_lru(), memcached::start_single_lru());
    let servers = format!("127.0.0.1:{},127.0.0.1:{}", s1.port, s2.port);
    let a = |extra: &[&str]| -> Vec<String> {
        extra
            .iter()
            .chain(&["-q", "libmemcached", "--libmemcached-prefix", "two_"])
            .map(|s| s.to_string())
            .chain(["--libmemcached-servers".to_string(), servers.clone()])
            .collect()
    };
    keyed::polygeard_jobs_run_on_gearmand(
        &strs(&a(&[])),
        &strs(&a(&["-t", "1"])),
        &keyed::jobs(&["two"], 60, false),
    );
}

#[test]
fn memcached_lost_while_clients_submit() {
    // memcached keeps nothing across its restart: only the jobs submitted
    // after it came back are there.
    let mut server = memcached::start();
    let a = args(server.port, "lost_");
    let server = std::cell::RefCell::new(&mut server);
    keyed::queue_server_lost_and_back(
        &strs(&a),
        &mut || server.borrow_mut().stop(),
        &mut || server.borrow_mut().restart(),
        false,
    );
}

#[test]
fn scheduled_jobs_are_refused_and_the_connection_stays_usable() {
    let a = args(memcached::shared().port, "epoch_");
    let d = polygeard(&strs(&a));
    let mut c = common::Raw::connect(d.port);
    c.send(&polygear::protocol::Packet::SubmitJobEpoch {
        function: "later".into(),
        unique: "e-1".into(),
        when: 4_000_000_000,
        data: "x".into(),
    });
    match c.recv() {
        polygear::protocol::Packet::Error { code, .. } => assert_eq!(&code[..], b"QUEUE_ERROR"),
        p => panic!("expected ERROR, got {p:?}"),
    }
    keyed::submit_all(
        d.port,
        &[("later", "n-1".into(), "now".into(), Priority::Normal)],
    );
    c.send(&common::submit("later", "n-2", "now too", true));
    common::created(c.recv());
}

#[test]
fn memcached_down_at_start_is_one_line_and_a_failure() {
    let port = polygear_test_support::free_port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_polygeard"))
        .args(["-L", "127.0.0.1", "-p", "0"])
        .args(args(port, "x_"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("memcached at 127.0.0.1:"), "{err}");
}
