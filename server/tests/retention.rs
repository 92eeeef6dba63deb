//! Retained results of background jobs (`SubmitOptions::retain`,
//! `Client::result`, admin `retain`) and unique windows (admin `window`)
//! against a polygeard process: fetched by handle from any connection,
//! expiry, failures, kill -9 of the SQLite queue in the middle of a
//! retention period, and gearmand (which must see no extension packet).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{can_do, client, created, polygeard, runtime, submit, Raw, TestServer};
use polygear::protocol::Packet;
use polygear::{Admin, Client, ClientOptions, Error, JobResult, SubmitOptions};

fn retain(secs: u64) -> SubmitOptions {
    SubmitOptions {
        retain: Some(Duration::from_secs(secs)),
        ..Default::default()
    }
}

/// Options with this unique key.
fn unique(key: &'static str) -> SubmitOptions {
    SubmitOptions {
        unique: Some(Bytes::from_static(key.as_bytes())),
        ..Default::default()
    }
}

/// A raw worker of `function` takes the next job: (handle, data).
fn grab(w: &mut Raw) -> Option<(String, Vec<u8>)> {
    w.send(&Packet::GrabJob);
    match w.recv() {
        Packet::JobAssign { handle, data, .. } => {
            Some((String::from_utf8_lossy(&handle).into_owned(), data.to_vec()))
        }
        Packet::NoJob => None,
        other => panic!("worker got {other:?}"),
    }
}

/// Grabs until a job comes (within 10 s).
fn grab_wait(w: &mut Raw) -> (String, Vec<u8>) {
    let limit = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(j) = grab(w) {
            return j;
        }
        assert!(Instant::now() < limit, "no job to grab");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn worker(port: u16, function: &str) -> Raw {
    let mut w = Raw::connect(port);
    w.send(&can_do(function));
    w
}

fn complete(w: &mut Raw, handle: &str, data: &str) {
    w.send(&Packet::WorkComplete {
        handle: Bytes::copy_from_slice(handle.as_bytes()),
        data: Bytes::copy_from_slice(data.as_bytes()),
    });
}

/// Polls `result(handle)` until it is `Some` (the worker's packet is
/// applied asynchronously).
fn result_soon(rt: &tokio::runtime::Runtime, c: &Client, handle: &str) -> Bytes {
    let limit = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = rt.block_on(c.result(handle)).expect("result") {
            return r;
        }
        assert!(Instant::now() < limit, "no result for {handle}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn retained_result_is_fetched_by_handle_from_any_connection_until_it_expires() {
    let rt = runtime();
    let d = polygeard(&["-q", "builtin"]);
    let c = client(d.port);
    let h = rt
        .block_on(c.submit_background("ret", "in", retain(2)))
        .unwrap();
    assert_eq!(rt.block_on(c.result_state(&h)).unwrap(), JobResult::Queued);
    assert_eq!(rt.block_on(c.result(&h)).unwrap(), None);
    let mut w = worker(d.port, "ret");
    let (got, data) = grab_wait(&mut w);
    assert_eq!((got.as_str(), &data[..]), (h.as_str(), &b"in"[..]));
    assert_eq!(rt.block_on(c.result_state(&h)).unwrap(), JobResult::Running);
    assert_eq!(rt.block_on(c.result(&h)).unwrap(), None);
    complete(&mut w, &h, "out");
    assert_eq!(result_soon(&rt, &c, &h), "out");
    // Another connection (another client) sees it too.
    let other = client(d.port);
    assert_eq!(
        rt.block_on(other.result_state(&h)).unwrap(),
        JobResult::Complete(Bytes::from_static(b"out"))
    );
    // A handle nobody knows, and a job without retention: None.
    assert_eq!(rt.block_on(c.result("H:nowhere:1")).unwrap(), None);
    let plain = rt
        .block_on(c.submit_background("ret", "p", SubmitOptions::default()))
        .unwrap();
    let (ph, _) = grab_wait(&mut w);
    assert_eq!(ph, plain);
    complete(&mut w, &ph, "gone");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        rt.block_on(c.result_state(&plain)).unwrap(),
        JobResult::Unknown
    );
    // Expiry: after the retention (2 s, counted in whole seconds) it is gone.
    std::thread::sleep(Duration::from_millis(3100));
    assert_eq!(rt.block_on(c.result(&h)).unwrap(), None);
    let mut a = Raw::connect(d.port);
    assert!(
        a.admin("metrics").contains("results_kept 0\n"),
        "expired result still kept"
    );
}

#[test]
fn function_retention_failures_and_exceptions() {
    let rt = runtime();
    let d = polygeard(&["-q", "builtin", "--retain", "byflag=60"]);
    let c = client(d.port);
    let mut admin = rt
        .block_on(Admin::connect(&d.addr(), Duration::from_secs(5)))
        .unwrap();
    rt.block_on(admin.set_retention("byadmin", Duration::from_secs(30)))
        .unwrap();
    assert_eq!(
        rt.block_on(admin.retention()).unwrap(),
        vec![
            ("byadmin".to_string(), Duration::from_secs(30)),
            ("byflag".to_string(), Duration::from_secs(60)),
        ]
    );
    let mut w = Raw::connect(d.port);
    w.send(&can_do("byflag"));
    w.send(&can_do("byadmin"));
    let mut run = |function: &str, end: &dyn Fn(&mut Raw, &str)| -> String {
        let h = rt
            .block_on(c.submit_background(function, "x", SubmitOptions::default()))
            .unwrap();
        let (got, _) = grab_wait(&mut w);
        assert_eq!(got, h);
        end(&mut w, &h);
        h
    };
    let done = run("byflag", &|w, h| complete(w, h, "flagged"));
    let failed = run("byadmin", &|w, h| {
        w.send(&Packet::WorkFail {
            handle: Bytes::copy_from_slice(h.as_bytes()),
        })
    });
    let raised = run("byadmin", &|w, h| {
        w.send(&Packet::WorkException {
            handle: Bytes::copy_from_slice(h.as_bytes()),
            data: Bytes::from_static(b"it broke"),
        })
    });
    assert_eq!(result_soon(&rt, &c, &done), "flagged");
    let limit = Instant::now() + Duration::from_secs(10);
    while rt.block_on(c.result_state(&raised)).unwrap() != JobResult::Exception("it broke".into()) {
        assert!(Instant::now() < limit);
        std::thread::sleep(Duration::from_millis(20));
    }
    match rt.block_on(c.result(&failed)) {
        Err(Error::JobFailed { handle, .. }) => assert_eq!(handle, failed),
        other => panic!("{other:?}"),
    }
    match rt.block_on(c.result(&raised)) {
        Err(Error::JobException { handle, message }) => {
            assert_eq!(
                (handle.as_str(), message.as_str()),
                (raised.as_str(), "it broke")
            )
        }
        other => panic!("{other:?}"),
    }
    // Turned off: the next job is not retained.
    rt.block_on(admin.set_retention("byadmin", Duration::ZERO))
        .unwrap();
    assert_eq!(rt.block_on(admin.retention()).unwrap().len(), 1);
    let off = run("byadmin", &|w, h| complete(w, h, "not kept"));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        rt.block_on(c.result_state(&off)).unwrap(),
        JobResult::Unknown
    );
}

#[test]
fn kill9_during_retention_loses_nothing_and_runs_nothing_twice() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.sqlite3");
    let mut d = polygeard(&["--libsqlite3-db", db.to_str().unwrap()]);
    let c = client(d.port);
    let done = rt
        .block_on(c.submit_background("k9", "first", retain(120)))
        .unwrap();
    let mut w = worker(d.port, "k9");
    let (h, _) = grab_wait(&mut w);
    assert_eq!(h, done);
    complete(&mut w, &h, "first done");
    assert_eq!(result_soon(&rt, &c, &done), "first done");
    let queued = rt
        .block_on(c.submit_background("k9", "second", retain(120)))
        .unwrap();
    // The result is committed by the queue thread right after the job ends.
    std::thread::sleep(Duration::from_millis(500));
    drop(w);
    d.restart();
    let c = client(d.port);
    assert_eq!(
        rt.block_on(c.result_state(&done)).unwrap(),
        JobResult::Complete(Bytes::from_static(b"first done")),
        "a retained result survives kill -9"
    );
    assert_eq!(
        rt.block_on(c.result_state(&queued)).unwrap(),
        JobResult::Queued,
        "the queued job keeps its handle"
    );
    let mut w = worker(d.port, "k9");
    let (h, data) = grab_wait(&mut w);
    assert_eq!((h.as_str(), &data[..]), (queued.as_str(), &b"second"[..]));
    complete(&mut w, &h, "second done");
    assert_eq!(result_soon(&rt, &c, &queued), "second done");
    // Each job ran once: nothing else is queued.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(grab(&mut w), None);
    // A new job after the restart gets a handle of its own.
    let fresh = rt
        .block_on(c.submit_background("k9", "third", SubmitOptions::default()))
        .unwrap();
    assert!(fresh != done && fresh != queued, "{fresh}");
    // Both results are still there after another restart.
    std::thread::sleep(Duration::from_millis(500));
    drop(w);
    d.restart();
    let c = client(d.port);
    assert_eq!(result_soon(&rt, &c, &done), "first done");
    assert_eq!(result_soon(&rt, &c, &queued), "second done");
}

#[test]
fn unique_window_coalesces_onto_the_finished_job() {
    let rt = runtime();
    let d = polygeard(&["-q", "builtin"]);
    let mut admin = rt
        .block_on(Admin::connect(&d.addr(), Duration::from_secs(5)))
        .unwrap();
    rt.block_on(admin.set_unique_window("win", Duration::from_secs(2)))
        .unwrap();
    assert_eq!(
        rt.block_on(admin.unique_windows()).unwrap(),
        vec![("win".to_string(), Duration::from_secs(2))]
    );
    let c = client(d.port);
    let keyed = unique("k1");
    let h = rt
        .block_on(c.submit_background("win", "a", keyed.clone()))
        .unwrap();
    let mut w = worker(d.port, "win");
    assert_eq!(grab_wait(&mut w).0, h);
    complete(&mut w, &h, "ran once");
    std::thread::sleep(Duration::from_millis(200));
    // In the window: the same handle, nothing runs, the result is at hand.
    let again = rt
        .block_on(c.submit_background("win", "b", keyed.clone()))
        .unwrap();
    assert_eq!(again, h);
    assert_eq!(
        rt.block_on(c.submit("win", "c", keyed.clone())).unwrap(),
        "ran once"
    );
    assert_eq!(rt.block_on(c.result(&h)).unwrap().unwrap(), "ran once");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(grab(&mut w), None, "nothing ran again");
    // The raw protocol: JOB_CREATED then WORK_COMPLETE for a foreground one.
    let mut raw = Raw::connect(d.port);
    raw.send(&submit("win", "k1", "d", false));
    assert_eq!(created(raw.recv()), h);
    assert_eq!(
        raw.recv(),
        Packet::WorkComplete {
            handle: Bytes::copy_from_slice(h.as_bytes()),
            data: Bytes::from_static(b"ran once"),
        }
    );
    // Another key, and another function, are not affected.
    let other = rt
        .block_on(c.submit_background("win", "z", unique("k2")))
        .unwrap();
    assert_ne!(other, h);
    let (g, _) = grab_wait(&mut w);
    assert_eq!(g, other);
    w.send(&Packet::WorkFail {
        handle: Bytes::copy_from_slice(g.as_bytes()),
    });
    // A failed job holds no window: k2 runs again at once.
    std::thread::sleep(Duration::from_millis(200));
    let k2 = rt
        .block_on(c.submit_background("win", "z", unique("k2")))
        .unwrap();
    assert_ne!(k2, other);
    let (g, _) = grab_wait(&mut w);
    assert_eq!(g, k2);
    complete(&mut w, &g, "k2");
    // After the window (2 s, whole seconds) k1 runs again.
    std::thread::sleep(Duration::from_millis(3100));
    let later = rt.block_on(c.submit_background("win", "b", keyed)).unwrap();
    assert_ne!(later, h);
    assert_eq!(grab_wait(&mut w).0, later);
}

#[test]
fn gearmand_gets_no_extension_packet() {
    let Some(g) = TestServer::gearmand(&[]) else {
        eprintln!("gearmand not installed; skipping");
        return;
    };
    let rt = runtime();
    let c = client(g.port);
    match rt.block_on(c.submit_background("f", "x", retain(10))) {
        Err(e @ Error::Unsupported { .. }) => {
            assert_eq!(e.kind(), polygear::ErrorKind::Server);
            assert!(e.to_string().contains("retained results"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    match rt.block_on(c.result("H:x:1")) {
        Err(Error::Unsupported { .. }) => {}
        other => panic!("{other:?}"),
    }
    // The connection was not broken: plain calls keep working on it.
    let h = rt
        .block_on(c.submit_background("f", "x", SubmitOptions::default()))
        .unwrap();
    assert!(rt.block_on(c.status(&h)).unwrap().known);
    assert_eq!(rt.block_on(c.echo("still here")).unwrap(), "still here");
}

#[test]
fn with_gearmand_and_polygeard_retained_jobs_go_to_polygeard() {
    let Some(g) = TestServer::gearmand(&[]) else {
        eprintln!("gearmand not installed; skipping");
        return;
    };
    let p = polygeard(&["-q", "builtin"]);
    let rt = runtime();
    let c = Client::new(ClientOptions {
        servers: vec![g.addr(), p.addr()],
        ..Default::default()
    })
    .unwrap();
    let mut w = worker(p.port, "mixed");
    for i in 0..4 {
        let h = rt
            .block_on(c.submit_background("mixed", format!("{i}"), retain(30)))
            .unwrap();
        let (got, _) = grab_wait(&mut w);
        assert_eq!(got, h, "retained job {i} went to polygeard");
        complete(&mut w, &h, "ok");
        assert_eq!(result_soon(&rt, &c, &h), "ok");
    }
    // Plain submissions still use both servers.
    for i in 0..4 {
        rt.block_on(c.submit_background("mixed_plain", format!("{i}"), SubmitOptions::default()))
            .unwrap();
    }
    let mut a = Raw::connect(g.port);
    assert!(
        a.admin("status").contains("mixed_plain\t"),
        "round robin reached gearmand"
    );
}

/// The number at the end of a handle (`H:host:N`).
fn handle_number(h: &str) -> u64 {
    h.rsplit(':').next().unwrap().parse().unwrap()
}

/// Handles are never given out twice across a kill -9 (SQLite keeps a
/// handle floor a block ahead): a finished job that left nothing stored
/// (no retention, no dead record) still has a handle no later job gets, so
/// `result`, `cancel` or `Job::cancelled` of an old handle name no new job.
#[test]
fn handles_are_not_reused_after_a_kill9() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.sqlite3");
    let mut d = polygeard(&["--libsqlite3-db", db.to_str().unwrap()]);
    let c = client(d.port);
    let mut last = String::new();
    let mut w = worker(d.port, "hk");
    for i in 0..3 {
        last = rt
            .block_on(c.submit_background("hk", format!("j{i}"), SubmitOptions::default()))
            .unwrap();
        let (h, _) = grab_wait(&mut w);
        complete(&mut w, &h, "done");
    }
    // Nothing is stored any more (the deletes are committed in ms).
    std::thread::sleep(Duration::from_millis(300));
    drop(w);
    d.restart();
    let c = client(d.port);
    let fresh = rt
        .block_on(c.submit_background("hk", "after", SubmitOptions::default()))
        .unwrap();
    assert!(
        handle_number(&fresh) > handle_number(&last),
        "{fresh} after {last}: a handle came back"
    );
    assert_eq!(
        rt.block_on(c.result_state(&last)).unwrap(),
        JobResult::Unknown
    );
}
