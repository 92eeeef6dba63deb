//! Scenarios shared by the queue backends in gearmand's key layouts (Redis,
//! memcached): jobs queued by the C gearmand run on polygeard and the
//! reverse, and the queue's server lost and back while clients submit.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use polygear::protocol::{Packet, Priority};

use super::{can_do, created, durable, polygeard, Raw, TestServer};

/// A background job to submit: function, unique, data, priority.
pub type Job = (&'static str, String, String, Priority);

/// Submits `jobs` pipelined on one connection; asserts each JOB_CREATED.
pub fn submit_all(port: u16, jobs: &[Job]) {
    let mut c = Raw::connect(port);
    for (f, u, d, p) in jobs {
        c.send(&bg(f, u, d, *p));
    }
    for _ in jobs {
        created(c.recv());
    }
}

fn bg(function: &str, unique: &str, data: &str, priority: Priority) -> Packet {
    Packet::SubmitJob {
        function: function.to_string().into(),
        unique: unique.to_string().into(),
        data: data.to_string().into(),
        priority,
        background: true,
    }
}

/// gearmand's arguments for the queue of polygeard's `args` (same flags;
/// one I/O thread).
pub fn for_gearmand(mut args: Vec<String>) -> Vec<String> {
    args.splice(0..0, ["-t".to_string(), "1".to_string()]);
    args
}

/// Grabs and completes every job of `functions`; returns (function,
/// unique, data) in the order they were handed out.
pub fn drain_all(port: u16, functions: &[&str]) -> Vec<(String, String, String)> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut seen = Vec::new();
    durable::drain_with(port, functions, |f, u, d| {
        seen.push((text(f), text(u), text(d)))
    });
    seen
}

/// Asserts that `seen` holds each job of `jobs` exactly once (by its data,
/// with its function and, when it had one, its unique), the high-priority
/// one first.
fn assert_each_once(jobs: &[Job], seen: &[(String, String, String)]) {
    let by_data: HashMap<&str, &Job> = jobs.iter().map(|j| (j.2.as_str(), j)).collect();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (f, u, d) in seen {
        let job = by_data
            .get(d.as_str())
            .unwrap_or_else(|| panic!("unknown job {d:?}"));
        assert_eq!(f, job.0, "function of {d}");
        if !job.1.is_empty() {
            assert_eq!(u, &job.1, "unique of {d}");
        }
        *count.entry(d.as_str()).or_default() += 1;
    }
    assert!(count.values().all(|&n| n == 1), "a job ran twice");
    assert_eq!(count.len(), jobs.len(), "every job ran");
    assert_eq!(seen[0].2, "high", "the high-priority job first");
}

/// A unique in libgearman's form (a UUID), as its clients send for a
/// background job submitted without one.
pub fn uuid(i: usize) -> String {
    format!("0badcafe-0000-4000-8000-{i:012x}")
}

/// Jobs of `functions`, half with a unique containing `-`, half with a
/// UUID (`uuids`) or no unique, and one high-priority job submitted last.
pub fn jobs(functions: &[&'static str], n: usize, uuids: bool) -> Vec<Job> {
    let mut jobs: Vec<Job> = (0..n)
        .map(|i| {
            let f = functions[i % functions.len()];
            let u = match (i % 2, uuids) {
                (0, _) => format!("u-{i}"),
                (_, true) => uuid(i),
                (_, false) => String::new(),
            };
            (f, u, format!("data {i}"), Priority::Normal)
        })
        .collect();
    jobs.push((functions[0], "hi-1".into(), "high".into(), Priority::High));
    jobs
}

/// Stops polygeard cleanly and starts it again: nothing may be left.
fn assert_queue_empty(polygeard_args: &[&str], functions: &[&str]) {
    let d = polygeard(polygeard_args);
    assert_eq!(drain_all(d.port, functions), [], "completed jobs came back");
}

/// gearmand (`gearmand_args`) queues `jobs` and is SIGKILLed; polygeard on
/// the same queue runs each exactly once, then the queue is empty.
pub fn gearmand_jobs_run_on_polygeard(
    gearmand_args: &[&str],
    polygeard_args: &[&str],
    jobs: &[Job],
) {
    let functions = functions_of(jobs);
    let mut g = TestServer::gearmand(gearmand_args).expect("gearmand is installed");
    submit_all(g.port, jobs);
    g.kill();
    let mut d = polygeard(polygeard_args);
    assert_each_once(jobs, &drain_all(d.port, &functions));
    d.signal("-TERM");
    assert!(d.wait_exit(Duration::from_secs(10)).success());
    assert_queue_empty(polygeard_args, &functions);
}

/// polygeard queues `jobs` and is SIGKILLed; gearmand on the same queue
/// runs each exactly once and deletes them.
pub fn polygeard_jobs_run_on_gearmand(
    polygeard_args: &[&str],
    gearmand_args: &[&str],
    jobs: &[Job],
) {
    let functions = functions_of(jobs);
    let mut d = polygeard(polygeard_args);
    submit_all(d.port, jobs);
    d.kill();
    let mut g = TestServer::gearmand(gearmand_args).expect("gearmand is installed");
    assert_each_once(jobs, &drain_all(g.port, &functions));
    // gearmand deletes finished jobs as it goes (no group commit to wait for).
    g.signal("-TERM");
    g.wait_exit(Duration::from_secs(10));
    assert_queue_empty(polygeard_args, &functions);
}

fn functions_of(jobs: &[Job]) -> Vec<&'static str> {
    let mut f: Vec<&'static str> = jobs.iter().map(|j| j.0).collect();
    f.sort();
    f.dedup();
    f
}

/// Pipelines background jobs of `function` (uniques `j-N`, data the unique)
/// in batches of 50 until a batch has a refused one; returns the uniques
/// acknowledged with JOB_CREATED.
pub fn submit_until_refused(port: u16, function: &str) -> Vec<String> {
    let mut c = Raw::connect(port);
    let mut acked = Vec::new();
    let mut next = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let batch: Vec<String> = (next..next + 50).map(|i| format!("j-{i}")).collect();
        next += 50;
        for u in &batch {
            c.send(&bg(function, u, u, Priority::Normal));
        }
        let mut refused = false;
        for u in batch {
            match c.recv() {
                Packet::JobCreated { .. } => acked.push(u),
                Packet::Error { .. } => refused = true,
                p => panic!("{p:?}"),
            }
        }
        if refused {
            return acked;
        }
    }
    panic!("no submission was refused");
}

/// Submits one background job; its JOB_CREATED handle, or the ERROR text.
fn try_submit(c: &mut Raw, unique: &str) -> Result<String, String> {
    c.send(&bg(
        "lost",
        unique,
        &format!("payload {unique}"),
        Priority::Normal,
    ));
    match c.recv() {
        Packet::JobCreated { handle } => Ok(String::from_utf8_lossy(&handle).into_owned()),
        Packet::Error { code, text } => Err(format!(
            "{} {}",
            String::from_utf8_lossy(&code),
            String::from_utf8_lossy(&text)
        )),
        p => panic!("{p:?}"),
    }
}

/// The queue's server is stopped (`stop`) while a client submits: background
/// submissions get ERROR (never JOB_CREATED for a job not stored) and the
/// connection stays usable; foreground jobs still run. After `start` new
/// submissions succeed again; if `durable`, every acknowledged job is still
/// there (and none of the refused ones).
pub fn queue_server_lost_and_back(
    polygeard_args: &[&str],
    stop: &mut dyn FnMut(),
    start: &mut dyn FnMut(),
    durable: bool,
) {
    let d = polygeard(polygeard_args);
    let mut c = Raw::connect(d.port);
    let mut acked = Vec::new();
    for i in 0..20 {
        let u = format!("before-{i}");
        try_submit(&mut c, &u).expect("stored while the queue server runs");
        acked.push(u);
    }

    stop();
    for i in 0..20 {
        let err = try_submit(&mut c, &format!("down-{i}")).expect_err("refused while down");
        assert!(err.starts_with("QUEUE_ERROR"), "{err}");
    }
    // Foreground jobs need no queue.
    c.send(&super::submit("fg", "fg-1", "in memory", false));
    let handle = created(c.recv());
    let mut w = Raw::connect(d.port);
    w.send(&can_do("fg"));
    w.send(&Packet::GrabJobUniq);
    let Packet::JobAssignUniq { handle: h, .. } = w.recv() else {
        panic!("the foreground job is handed out");
    };
    assert_eq!(String::from_utf8_lossy(&h), handle);
    w.send(&Packet::WorkComplete {
        handle: h,
        data: "done".into(),
    });
    assert!(matches!(c.recv(), Packet::WorkComplete { .. }));

    start();
    // The store reconnects after its backoff (at most 5 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    loop {
        let u = format!("after-{i}");
        i += 1;
        match try_submit(&mut c, &u) {
            Ok(_) => {
                acked.push(u);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "still refused: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for j in 0..20 {
        let u = format!("later-{j}");
        try_submit(&mut c, &u).expect("stored after the queue server is back");
        acked.push(u);
    }
    drop(c);

    let mut d = d;
    d.restart();
    let mut seen: Vec<String> = drain_all(d.port, &["lost"])
        .into_iter()
        .map(|(_, u, _)| u)
        .collect();
    seen.sort();
    let mut want: Vec<String> = if durable {
        acked
    } else {
        acked
            .into_iter()
            .filter(|u| u.starts_with("later") || u.starts_with("after"))
            .collect()
    };
    want.sort();
    assert_eq!(seen, want);
}
