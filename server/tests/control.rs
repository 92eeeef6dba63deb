//! Operator control against the real polygeard: `pause`/`resume` of a
//! function, `drain worker` of a connection (polygear admin extensions),
//! over raw protocol peers and the core `Admin` client.

mod common;

use std::time::Duration;

use common::{can_do, created, polygeard, submit, Raw};
use polygear::protocol::Packet;
use polygear::{Admin, DrainingWorker, Error};

fn b(s: &str) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(s.as_bytes())
}

fn sync(c: &mut Raw) {
    c.send(&Packet::EchoReq { data: b("sync") });
    assert!(matches!(c.recv(), Packet::EchoRes { .. }));
}

fn set_id(c: &mut Raw, id: &str) {
    c.send(&Packet::SetClientId { id: b(id) });
}

/// The handle of a JOB_ASSIGN_UNIQ.
fn assigned(p: Packet) -> String {
    match p {
        Packet::JobAssignUniq { handle, .. } => String::from_utf8(handle.to_vec()).unwrap(),
        other => panic!("expected JOB_ASSIGN_UNIQ, got {other:?}"),
    }
}

#[test]
fn a_paused_function_queues_its_jobs_until_resumed() {
    let s = polygeard(&["-q", "builtin"]);
    let mut a = Raw::connect(s.port);
    assert_eq!(a.admin("pause f"), "OK\r\n");
    assert_eq!(a.admin("pause"), "f\n.\n");

    let mut w = Raw::connect(s.port);
    w.send(&can_do("f"));
    w.send(&can_do("g"));
    w.send(&Packet::PreSleep);
    sync(&mut w);

    let mut c = Raw::connect(s.port);
    c.send(&submit("f", "u1", "one", true));
    let h = created(c.recv());
    // Sleeping worker: not woken for a paused function.
    w.expect_silence(300);
    w.send(&Packet::GrabJobUniq);
    assert_eq!(w.recv(), Packet::NoJob);
    // `status` stays gearadmin's format: the job is queued, none running.
    assert_eq!(a.admin("status"), "f\t1\t0\t1\ng\t0\t0\t1\n.\n");

    // Other functions of the same worker are handed out normally.
    c.send(&submit("g", "u2", "two", true));
    let hg = created(c.recv());
    w.send(&Packet::GrabJobUniq);
    assert_eq!(assigned(w.recv()), hg);
    w.send(&Packet::WorkComplete {
        handle: b(&hg),
        data: b(""),
    });

    w.send(&Packet::PreSleep);
    sync(&mut w);
    assert_eq!(a.admin("resume f"), "OK\r\n");
    assert_eq!(a.admin("pause"), ".\n");
    assert_eq!(w.recv(), Packet::Noop, "resume wakes a sleeping worker");
    w.send(&Packet::GrabJobUniq);
    assert_eq!(assigned(w.recv()), h);
    // Resuming a function that is not paused is harmless.
    assert_eq!(a.admin("resume f"), "OK\r\n");
    assert!(a.admin("pause").starts_with('.'));
    assert!(a.admin("resume").starts_with("ERR INVALID_ARGUMENTS"));
}

#[test]
fn resume_serves_a_grab_that_waits_for_a_job() {
    let s = polygeard(&["-q", "builtin", "--grab-wait", "1000"]);
    let mut a = Raw::connect(s.port);
    let mut w = Raw::connect(s.port);
    w.send(&can_do("f"));
    sync(&mut w);
    assert_eq!(a.admin("pause f"), "OK\r\n");
    let mut c = Raw::connect(s.port);
    c.send(&submit("f", "", "x", false));
    let h = created(c.recv());
    w.send(&Packet::GrabJobUniq);
    w.expect_silence(200);
    assert_eq!(a.admin("resume f"), "OK\r\n");
    assert_eq!(assigned(w.recv()), h);
    w.send(&Packet::WorkComplete {
        handle: b(&h),
        data: b("done"),
    });
    assert_eq!(
        c.recv(),
        Packet::WorkComplete {
            handle: b(&h),
            data: b("done")
        }
    );
}

#[test]
fn a_drained_worker_finishes_its_job_and_gets_no_new_one() {
    let s = polygeard(&["-q", "builtin"]);
    let mut a = Raw::connect(s.port);
    let mut w1 = Raw::connect(s.port);
    set_id(&mut w1, "w1");
    w1.send(&can_do("f"));
    sync(&mut w1);
    let mut c = Raw::connect(s.port);
    c.send(&submit("f", "", "first", false));
    let h1 = created(c.recv());
    w1.send(&Packet::GrabJobUniq);
    assert_eq!(assigned(w1.recv()), h1);

    assert_eq!(a.admin("drain worker w1"), "OK 1\r\n");
    let listing = a.admin("drain");
    assert!(listing.ends_with(" w1\n.\n"), "{listing:?}");
    assert!(a
        .admin("drain worker nosuch")
        .starts_with("ERR UNKNOWN_WORKER No+worker+connection+matches+nosuch"));

    let mut w2 = Raw::connect(s.port);
    w2.send(&can_do("f"));
    w2.send(&Packet::PreSleep);
    sync(&mut w2);
    w1.send(&Packet::PreSleep);
    sync(&mut w1);

    c.send(&submit("f", "", "second", false));
    let h2 = created(c.recv());
    assert_eq!(w2.recv(), Packet::Noop);
    // The drained worker is not woken, and its GRAB finds nothing.
    w1.expect_silence(300);
    w1.send(&Packet::GrabJobUniq);
    assert_eq!(w1.recv(), Packet::NoJob);
    w2.send(&Packet::GrabJobUniq);
    assert_eq!(assigned(w2.recv()), h2);

    // Its running job completes normally.
    w1.send(&Packet::WorkComplete {
        handle: b(&h1),
        data: b("r1"),
    });
    assert_eq!(
        c.recv(),
        Packet::WorkComplete {
            handle: b(&h1),
            data: b("r1")
        }
    );
}

#[tokio::test]
async fn the_admin_client_pauses_resumes_and_drains() {
    let s = polygeard(&["-q", "builtin"]);
    let mut admin = Admin::connect(&s.addr(), Duration::from_secs(5))
        .await
        .unwrap();
    admin.pause("alpha").await.unwrap();
    admin.pause("beta").await.unwrap();
    assert_eq!(admin.paused().await.unwrap(), vec!["alpha", "beta"]);
    admin.resume("alpha").await.unwrap();
    assert_eq!(admin.paused().await.unwrap(), vec!["beta"]);

    let mut w = Raw::connect(s.port);
    set_id(&mut w, "worker-a");
    w.send(&can_do("beta"));
    sync(&mut w);
    let fd = admin
        .workers()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.client_id == "worker-a")
        .expect("the worker is listed")
        .fd;
    assert_eq!(admin.drain_worker(&fd.to_string()).await.unwrap(), 1);
    assert_eq!(
        admin.draining().await.unwrap(),
        vec![DrainingWorker {
            fd: fd as u64,
            client_id: "worker-a".into()
        }]
    );
    match admin.drain_worker("nobody").await {
        Err(Error::Server { code, .. }) => assert_eq!(code, "UNKNOWN_WORKER"),
        other => panic!("expected UNKNOWN_WORKER, got {other:?}"),
    }
    assert!(matches!(
        admin.pause("two words").await,
        Err(Error::InvalidArgument(_))
    ));
}
