//! Operator control against the real polygeard: `pause`/`resume` of a
//! function, `drain worker` of a connection (polygear admin extensions),
//! and cancellation by the submitter (`Client::cancel`, `Job::cancelled`),
//! over raw protocol peers and the core `Admin`, `Client` and `Worker`.

mod common;

use std::time::Duration;

use common::{can_do, created, polygeard, submit, Raw};
use polygear::protocol::Packet;
use polygear::{
    Admin, Client, ClientOptions, DrainingWorker, Error, JobEvent, SubmitOptions, Worker,
    WorkerOptions,
};

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

fn client(s: &common::TestServer) -> Client {
    Client::new(ClientOptions {
        servers: vec![s.addr()],
        ..ClientOptions::default()
    })
    .unwrap()
}

#[tokio::test]
async fn the_submitter_cancels_a_queued_job() {
    let s = polygeard(&["-q", "builtin"]);
    let c = client(&s);
    let job = c
        .submit_job("nobody", "x", SubmitOptions::default())
        .await
        .unwrap();
    let h = job.handle().to_string();
    assert!(c.status(&h).await.unwrap().known);
    assert!(c.cancel(&h).await.unwrap(), "it was queued");
    match job.result().await {
        Err(Error::JobCancelled { handle, reason }) => {
            assert_eq!(handle, h);
            assert!(reason.starts_with("cancelled"), "{reason}");
        }
        other => panic!("expected JobCancelled, got {other:?}"),
    }
    assert!(!c.status(&h).await.unwrap().known);
    assert!(!c.cancel(&h).await.unwrap(), "gone now");
    // A background job: removed from the queue, no worker ever sees it.
    let bg = c
        .submit_background("nobody", "y", SubmitOptions::default())
        .await
        .unwrap();
    assert!(c.cancel(&bg).await.unwrap());
    let mut a = Raw::connect(s.port);
    let mut w = Raw::connect(s.port);
    w.send(&can_do("nobody"));
    w.send(&Packet::GrabJobUniq);
    assert_eq!(w.recv(), Packet::NoJob);
    assert_eq!(a.admin("status"), "nobody\t0\t0\t1\n.\n");
}

#[tokio::test]
async fn cancel_of_an_unknown_handle_is_false() {
    let s = polygeard(&["-q", "builtin"]);
    let c = client(&s);
    assert!(!c.cancel("H:nowhere:42").await.unwrap());
    assert!(matches!(
        c.cancel("two words").await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(c.cancel("").await, Err(Error::InvalidArgument(_))));
}

#[tokio::test]
async fn a_running_job_sees_its_cancel_and_its_late_result_is_dropped() {
    let s = polygeard(&["-q", "builtin"]);
    let worker = Worker::new(WorkerOptions {
        servers: vec![s.addr()],
        ..WorkerOptions::default()
    })
    .unwrap();
    worker.register("slow", None).unwrap();
    let w = worker.clone();
    let work = tokio::spawn(async move {
        let job = w.next_job().await.expect("a job");
        job.send_data("started").unwrap();
        let mut polls = 0u32;
        while !job.cancelled().await.unwrap() {
            polls += 1;
            assert!(polls < 100, "the cancel was not seen within 10 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The server drops this result: nobody gets it.
        job.complete("late").unwrap();
        polls
    });
    let c = client(&s);
    let mut job = c
        .submit_job("slow", "x", SubmitOptions::default())
        .await
        .unwrap();
    let h = job.handle().to_string();
    assert_eq!(
        job.next_event().await.unwrap().unwrap(),
        JobEvent::Data(b("started"))
    );
    assert!(c.status(&h).await.unwrap().running);
    assert!(c.cancel(&h).await.unwrap(), "it was running");
    let started = std::time::Instant::now();
    match job.result().await {
        Err(Error::JobCancelled { handle, .. }) => assert_eq!(handle, h),
        other => panic!("expected JobCancelled, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2), "told at once");
    assert!(!c.status(&h).await.unwrap().known);
    work.await.unwrap();
    // The job is gone once the worker ended it; the worker keeps working.
    let mut a = Raw::connect(s.port);
    let mut gone = false;
    for _ in 0..50 {
        if a.admin("show jobs") == ".\n" {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "the cancelled job was not removed");
    worker.shutdown().await;
}

#[test]
fn a_late_result_of_a_cancelled_job_is_not_forwarded() {
    let s = polygeard(&["-q", "builtin"]);
    let mut a = Raw::connect(s.port);
    let mut w = Raw::connect(s.port);
    w.send(&can_do("f"));
    sync(&mut w);
    let mut c = Raw::connect(s.port);
    c.send(&Packet::OptionReq {
        name: b("polygear-fail-reasons"),
    });
    assert!(matches!(c.recv(), Packet::OptionRes { .. }));
    c.send(&submit("f", "", "x", false));
    let h = created(c.recv());
    w.send(&Packet::GrabJobUniq);
    assert_eq!(assigned(w.recv()), h);
    assert_eq!(a.admin(&format!("cancel job {h}")), "OK\r\n");
    assert!(matches!(c.recv(), Packet::WorkFailReason { .. }));
    assert_eq!(c.recv(), Packet::WorkFail { handle: b(&h) });
    // GET_STATUS: unknown while the worker still holds it.
    w.send(&Packet::GetStatus { handle: b(&h) });
    match w.recv() {
        Packet::StatusRes { known, .. } => assert!(!known),
        other => panic!("expected STATUS_RES, got {other:?}"),
    }
    w.send(&Packet::WorkData {
        handle: b(&h),
        data: b("more"),
    });
    w.send(&Packet::WorkComplete {
        handle: b(&h),
        data: b("late"),
    });
    // Accepted silently (no ERROR), forwarded to no one.
    sync(&mut w);
    c.expect_silence(300);
    assert_eq!(a.admin("show jobs"), ".\n");
}

#[tokio::test]
async fn cancel_asks_the_server_that_has_the_submitted_job() {
    // Two servers with the same handle prefix: the same handle names a
    // different job on each; cancel must reach the one this client used,
    // also when that is the second server (tried last without the memory).
    let (s1, s2) = (polygeard(&["-q", "builtin"]), polygeard(&["-q", "builtin"]));
    let c = Client::new(ClientOptions {
        servers: vec![s1.addr(), s2.addr()],
        ..ClientOptions::default()
    })
    .unwrap();
    let mut a2 = Raw::connect(s2.port);
    // The second server's handles run ahead, so the first can catch up below.
    for _ in 0..40 {
        a2.send(&submit("pad", "", "p", true));
        created(a2.recv());
    }
    let mut found = None;
    for i in 0..32 {
        let opts = SubmitOptions {
            unique: Some(b(&format!("k{i}"))),
            ..SubmitOptions::default()
        };
        let job = c.submit_job("mine", "x", opts).await.unwrap();
        if a2.admin("status").contains("mine\t1\t") {
            found = Some(job);
            break;
        }
    }
    let job = found.expect("a unique routed to the second server");
    let h = job.handle().to_string();
    // The first server gets a job with the same handle.
    let mut r = Raw::connect(s1.port);
    let mut theirs = None;
    for _ in 0..100 {
        r.send(&submit("theirs", "", "y", true));
        let got = created(r.recv());
        if got == h {
            theirs = Some(got);
            break;
        }
    }
    let theirs = theirs.expect("the first server reaches the same handle");
    assert!(c.cancel(&h).await.unwrap());
    let r = tokio::time::timeout(Duration::from_secs(5), job.result()).await;
    assert!(
        matches!(r, Ok(Err(Error::JobCancelled { .. }))),
        "the job was not cancelled: {r:?}"
    );
    let mut a1 = Raw::connect(s1.port);
    assert!(
        a1.admin("show jobs")
            .contains(&format!("{theirs}\t0\t0\t1\n")),
        "the other server's job was cancelled"
    );
}
