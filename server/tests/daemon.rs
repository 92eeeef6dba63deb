//! Process-level behaviour of the polygeard binary: pid file, signals,
//! graceful shutdown, command-line validation.

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{can_do, created, polygeard, submit, Raw};
use polygear::protocol::Packet;

#[test]
fn pid_file_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("polygeard.pid");
    let mut d = polygeard(&["-q", "builtin", "-P", pid.to_str().unwrap()]);
    let text = std::fs::read_to_string(&pid).unwrap();
    assert_eq!(text.trim(), d.pid().expect("running").to_string());
    d.signal("-TERM");
    assert!(d.wait_exit(Duration::from_secs(10)).success());
    assert!(!pid.exists(), "pid file removed on exit");
}

#[test]
fn sigusr1_is_graceful() {
    let mut d = polygeard(&["-q", "builtin"]);
    let mut c = Raw::connect(d.port);
    c.send(&submit("g", "", "x", false));
    let h = created(c.recv());
    d.signal("-USR1");
    // New connections are refused once the listener is closed...
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", d.port)).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGUSR1");
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...but existing ones keep working until the last job is done.
    c.send(&Packet::EchoReq {
        data: "still here".into(),
    });
    assert!(matches!(c.recv(), Packet::EchoRes { .. }));
    assert!(d.try_wait().is_none(), "exited with a job queued");
    // A worker connected before the signal would normally finish the job; here
    // the client's own connection registers and completes it.
    c.send(&can_do("g"));
    c.send(&Packet::GrabJob);
    assert!(matches!(c.recv(), Packet::JobAssign { .. }));
    c.send(&Packet::WorkComplete {
        handle: h.into(),
        data: "".into(),
    });
    assert!(d.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn bad_arguments_are_rejected() {
    for args in [
        &["-q", "nosuch"][..],
        &["--verbose", "LOUD"],
        &["--job-handle-prefix", &"x".repeat(60)],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_polygeard"))
            .args(["-L", "127.0.0.1", "-p", &common::free_port().to_string()])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_polygeard"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--port",
        "--job-retries",
        "--worker-wakeup",
        "--queue-type",
        "--libsqlite3-db",
        "--allow-shutdown",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
}
