//! What a polygear client is told when a job does not end well, against a
//! polygeard process and the C gearmand: a job nobody takes, a job that runs
//! past its deadline, the reasons polygeard gives for the failures it decides
//! itself (the `polygear-fail-reasons` extension, invisible to other
//! clients), and a peer that is not a Gearman server at all.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{client, polygeard, runtime, submit, Raw, TestServer};
use polygear::protocol::{Packet, PacketType};
use polygear::{Admin, Error, ErrorKind, ServerAddr, SubmitOptions};

fn within(ms: u64) -> SubmitOptions {
    SubmitOptions {
        timeout: Some(Duration::from_millis(ms)),
        ..Default::default()
    }
}

/// Both servers: this crate's polygeard and, if installed, gearmand.
fn servers() -> Vec<TestServer> {
    let mut v = vec![polygeard(&["-q", "builtin"])];
    v.extend(TestServer::gearmand(&[]));
    v
}

/// A raw worker for `function` (with a CAN_DO_TIMEOUT of `timeout_ms` if
/// given) that grabs one job and holds it without answering: the handle.
fn grab_one(port: u16, function: &str, timeout_ms: Option<u32>) -> (Raw, String) {
    let mut w = Raw::connect(port);
    let function = Bytes::copy_from_slice(function.as_bytes());
    w.send(&match timeout_ms {
        Some(timeout) => Packet::CanDoTimeout { function, timeout },
        None => Packet::CanDo { function },
    });
    let limit = Instant::now() + Duration::from_secs(10);
    loop {
        w.send(&Packet::GrabJob);
        match w.recv() {
            Packet::JobAssign { handle, .. } => {
                return (w, String::from_utf8_lossy(&handle).into_owned())
            }
            Packet::NoJob => {
                assert!(Instant::now() < limit, "no job to grab");
                std::thread::sleep(Duration::from_millis(20));
            }
            other => panic!("worker got {other:?}"),
        }
    }
}

#[test]
fn a_job_nobody_takes_times_out_saying_no_worker_took_it() {
    let rt = runtime();
    for server in servers() {
        let c = client(server.port);
        let e = rt
            .block_on(c.submit("nobody_serves_this", "x", within(300)))
            .unwrap_err();
        let name = server.kind.name();
        match &e {
            Error::JobTimeout {
                handle,
                function,
                after,
                started,
            } => {
                assert_eq!(function, "nobody_serves_this", "{name}");
                assert_eq!(*after, Duration::from_millis(300), "{name}");
                assert_eq!(*started, Some(false), "{name}");
                assert_eq!(
                    e.to_string(),
                    format!(
                        "no worker has taken job {handle} for function 'nobody_serves_this' \
                         in 300 ms; is a worker registered?"
                    ),
                    "{name}"
                );
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(e.kind(), ErrorKind::Timeout);
        // The same through a RunningJob.
        let e = rt
            .block_on(async {
                let mut job = c.submit_job("nobody_serves_this", "x", within(200)).await?;
                match job.next_event().await {
                    Some(r) => r.map(|_| ()),
                    None => Ok(()),
                }
            })
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::JobTimeout {
                    started: Some(false),
                    ..
                }
            ),
            "{name}: {e:?}"
        );
    }
}

#[test]
fn a_running_job_times_out_naming_its_deadline() {
    let rt = runtime();
    for server in servers() {
        let c = client(server.port);
        let running = rt.spawn(async move { c.submit("held", "x", within(1500)).await });
        let (_worker, handle) = grab_one(server.port, "held", None);
        let e = rt.block_on(running).unwrap().unwrap_err();
        let name = server.kind.name();
        assert!(
            matches!(
                &e,
                Error::JobTimeout {
                    started: Some(true),
                    ..
                }
            ),
            "{name}: {e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!("job {handle} did not finish within 1.5 s"),
            "{name}"
        );
    }
}

#[test]
fn polygeard_says_the_worker_exceeded_its_timeout() {
    let rt = runtime();
    // gearmand requeues a job whose worker timed out (protocol.md §3.9):
    // its clients are told nothing, so only polygeard is asked here.
    let server = polygeard(&["-q", "builtin"]);
    let c = client(server.port);
    let running = rt.spawn(async move { c.submit("slow", "x", within(20_000)).await });
    let (_worker, handle) = grab_one(server.port, "slow", Some(1000));
    let e = rt.block_on(running).unwrap().unwrap_err();
    match &e {
        Error::JobFailed { reason, .. } => assert_eq!(
            reason.as_deref(),
            Some("the worker exceeded its 1 s timeout")
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.kind(), ErrorKind::JobFailed);
    assert_eq!(
        e.to_string(),
        format!("job {handle} failed: the worker exceeded its 1 s timeout")
    );
}

#[test]
fn polygeard_says_when_retries_ran_out_or_an_administrator_cancelled() {
    let rt = runtime();
    let server = polygeard(&["-q", "builtin", "--job-retries", "2"]);
    let c = client(server.port);
    let running = rt.spawn(async move { c.submit("fragile", "x", within(20_000)).await });
    for _ in 0..2 {
        // The worker dies holding the job.
        drop(grab_one(server.port, "fragile", None));
    }
    let e = rt.block_on(running).unwrap().unwrap_err();
    assert!(
        e.to_string()
            .ends_with(" failed: no worker could finish it in 2 attempts (--job-retries 2)"),
        "{e}"
    );

    let c = client(server.port);
    let job = rt
        .block_on(c.submit_job("queued_then_cancelled", "x", SubmitOptions::default()))
        .unwrap();
    let handle = job.handle().to_owned();
    let mut admin = Raw::connect(server.port);
    assert_eq!(
        admin.admin(&format!("cancel job {handle}")).trim_end(),
        "OK"
    );
    let e = rt.block_on(job.result()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("job {handle} failed: cancelled by an administrator")
    );
    assert!(matches!(e, polygear::Error::JobCancelled { .. }), "{e:?}");
}

/// A client that did not send `OPTION_REQ polygear-fail-reasons` (every
/// other library) sees exactly the WORK_FAIL it always saw; one that did
/// sees WORK_FAIL_REASON just before it.
#[test]
fn only_clients_that_opted_in_get_the_reason() {
    let server = polygeard(&["-q", "builtin"]);
    let mut plain = Raw::connect(server.port);
    plain.send(&submit("slow", "", "x", false));
    let Packet::JobCreated { handle } = plain.recv() else {
        panic!("no JOB_CREATED")
    };
    let mut opted = Raw::connect(server.port);
    opted.send(&Packet::OptionReq {
        name: Bytes::from_static(b"polygear-fail-reasons"),
    });
    assert_eq!(
        opted.recv(),
        Packet::OptionRes {
            name: Bytes::from_static(b"polygear-fail-reasons")
        }
    );
    // A second job (an empty unique never coalesces).
    opted.send(&submit("slow", "", "y", false));
    let Packet::JobCreated { handle: handle2 } = opted.recv() else {
        panic!("no JOB_CREATED")
    };
    let (_w1, _) = grab_one(server.port, "slow", Some(1000));
    let (_w2, _) = grab_one(server.port, "slow", Some(1000));
    assert_eq!(plain.recv(), Packet::WorkFail { handle });
    plain.expect_silence(300);
    assert_eq!(
        opted.recv(),
        Packet::WorkFailReason {
            handle: handle2.clone(),
            reason: Bytes::from_static(b"the worker exceeded its 1 s timeout"),
        }
    );
    assert_eq!(opted.recv(), Packet::WorkFail { handle: handle2 });
}

/// A worker cannot make up a reason: the extension packet is unknown to
/// the server as a request (the connection closes, as for any unknown type),
/// and never forwarded.
#[test]
fn a_reason_from_a_worker_is_not_forwarded() {
    let rt = runtime();
    let server = polygeard(&["-q", "builtin"]);
    let c = client(server.port);
    let running = rt.spawn(async move { c.submit("liar", "x", within(10_000)).await });
    let (mut w, handle) = grab_one(server.port, "liar", None);
    let mut forged = bytes::BytesMut::new();
    polygear::protocol::encode_packet(
        &mut forged,
        polygear::protocol::Magic::Req,
        PacketType::WorkFailReason,
        &[handle.as_bytes(), b"made up"],
    )
    .unwrap();
    w.send_raw(&forged);
    w.expect_closed();
    // The job went back to the queue; the next worker fails it plainly.
    let (mut w, handle) = grab_one(server.port, "liar", None);
    w.send(&Packet::WorkFail {
        handle: Bytes::from(handle),
    });
    let e = rt.block_on(running).unwrap().unwrap_err();
    assert!(matches!(&e, Error::JobFailed { reason: None, .. }), "{e:?}");
}

/// The C `gearman` tool (libgearman) against a worker that polygeard times
/// out: the job fails as it always did, no unknown packet reaches it.
#[test]
fn the_c_gearman_tool_sees_a_plain_failure() {
    let have = Command::new("sh")
        .args(["-c", "command -v gearman"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        eprintln!("skipped: no gearman tool");
        return;
    }
    let server = polygeard(&["-q", "builtin"]);
    let port = server.port.to_string();
    let mut tool = Command::new("timeout")
        .args([
            "20",
            "gearman",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-f",
            "slow",
            "x",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("gearman");
    let (_worker, _) = grab_one(server.port, "slow", Some(1000));
    let status = tool.wait().expect("wait");
    let mut err = String::new();
    std::io::Read::read_to_string(tool.stderr.as_mut().unwrap(), &mut err).unwrap();
    // 124 would be `timeout` killing a hung tool.
    assert_ne!(status.code(), Some(124), "the gearman tool hung: {err}");
    assert!(!status.success(), "{err}");
    assert!(err.contains("fail"), "{err}");
    assert!(!err.to_lowercase().contains("unknown"), "{err}");
}

/// An HTTP server where a Gearman server was expected: a protocol error
/// that says so, for a client and for the admin.
#[test]
fn an_http_server_is_not_gearman() {
    let rt = runtime();
    let http = common::free_port();
    let server = polygeard(&["-q", "builtin", "--http-port", &http.to_string()]);
    let c = client(http);
    let e = rt.block_on(c.submit("f", "x", within(5000))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("the server at 127.0.0.1:{http} answered 'HTTP', not Gearman")
    );
    let e = rt
        .block_on(async {
            let mut a =
                Admin::connect(&ServerAddr::new("127.0.0.1", http), Duration::from_secs(5)).await?;
            a.version().await
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("the server at 127.0.0.1:{http} answered 'HTTP', not Gearman")
    );
    drop(server);
}
