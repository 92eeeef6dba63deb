//! Scenario 1: polygeard SIGKILLed at random moments while pipelining clients submit
//! durable background jobs (SQLite queue), restarted on the same database each time.
//! Clients retry a failed submission with the same unique (the server coalesces it
//! onto the stored job if the first attempt was stored but not acknowledged). Then
//! workers drain the queue: every acknowledged job (JOB_CREATED received) runs, and
//! none runs twice. Finally a clean stop and start must bring no completed job back.
//!
//! Short: 5 kills during 10,000 jobs; long (`CHAOS_LONG=1`): 20 kills during 100,000.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polygear::{Client, ClientOptions, SubmitOptions, Worker, WorkerOptions};
use polygear_chaos::{
    figure, ms, pick, quantile, queued, runtime, version_of, wait_for, workspace_bin, Daemon, Rng,
    Violations,
};

const SCENARIO: &str = "kill-server";
const FUNCTION: &str = "chaos-durable";
const CLIENTS: usize = 4;
const TASKS_PER_CLIENT: usize = 32;

fn payload(i: usize) -> String {
    format!("payload-j{i}")
}

/// What the submitting clients share.
struct Submitted {
    next: AtomicUsize,
    acked: Vec<AtomicBool>,
    acked_count: AtomicUsize,
    first_try: AtomicUsize,
    retried: AtomicUsize,
    errors: Mutex<HashMap<String, usize>>,
}

/// One kill: acknowledged jobs at that moment, time until the server answered again,
/// jobs it reloaded from the database.
struct Kill {
    acked: usize,
    back_after: Duration,
    restored: Option<u64>,
}

fn restored_lines(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.split("restored ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn sigkill_during_durable_submits_loses_and_repeats_no_acknowledged_job() {
    let jobs = pick(10_000, 100_000);
    let kills = pick(5, 20);
    let limit = pick(Duration::from_secs(200), Duration::from_secs(1500));
    let rt = runtime(2);
    rt.block_on(async {
        tokio::time::timeout(limit, scenario(jobs, kills))
            .await
            .unwrap_or_else(|_| panic!("{SCENARIO}: did not finish within {limit:?}"))
    });
}

async fn scenario(jobs: usize, kills: usize) {
    let violations = Arc::new(Violations::new());
    let mut rng = Rng::for_scenario(SCENARIO);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queue.sqlite3");
    let log = dir.path().join("polygeard.log");
    let daemon = Daemon::loopback(
        "polygeard",
        &["-q", "libsqlite3", "--libsqlite3-db", db.to_str().unwrap()],
        "INFO",
        &log,
    );
    figure(
        SCENARIO,
        format!(
            "{} ({}); {jobs} jobs, {kills} kills",
            version_of(&workspace_bin("polygeard")),
            db.display()
        ),
    );
    let addr = daemon.addr();
    let daemon = Arc::new(Mutex::new(daemon));
    let state = Arc::new(Submitted {
        next: AtomicUsize::new(0),
        acked: (0..jobs).map(|_| AtomicBool::new(false)).collect(),
        acked_count: AtomicUsize::new(0),
        first_try: AtomicUsize::new(0),
        retried: AtomicUsize::new(0),
        errors: Mutex::new(HashMap::new()),
    });

    // The killer: SIGKILL when the acknowledged count passes random thresholds.
    let mut thresholds: Vec<usize> = (0..kills)
        .map(|_| rng.range(jobs as u64 / 20, jobs as u64 * 19 / 20) as usize)
        .collect();
    thresholds.sort();
    let killer = {
        let daemon = daemon.clone();
        let state = state.clone();
        let mut rng = rng.fork();
        std::thread::spawn(move || {
            let mut done = Vec::new();
            for t in thresholds {
                let deadline = Instant::now() + Duration::from_secs(120);
                while state.acked_count.load(Ordering::SeqCst) < t {
                    assert!(
                        Instant::now() < deadline,
                        "no progress towards {t} acknowledged jobs"
                    );
                    std::thread::sleep(Duration::from_micros(500));
                }
                std::thread::sleep(rng.millis(0, 15));
                let mut d = daemon.lock().unwrap();
                let before = restored_lines(&d.log_text()).len();
                let acked = state.acked_count.load(Ordering::SeqCst);
                let back_after = d.restart();
                let lines = restored_lines(&d.log_text());
                let restored = if lines.len() > before {
                    lines.last().copied()
                } else {
                    Some(0)
                };
                done.push(Kill {
                    acked,
                    back_after,
                    restored,
                });
            }
            done
        })
    };

    // Pipelining clients: TASKS_PER_CLIENT submissions in flight on each connection.
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let client = Client::new(ClientOptions {
            servers: vec![addr.clone()],
            connect_timeout: Duration::from_secs(2),
            submit_timeout: Duration::from_secs(10),
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
            ..Default::default()
        })
        .unwrap();
        for _ in 0..TASKS_PER_CLIENT {
            let client = client.clone();
            let state = state.clone();
            let stuck = violations.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = state.next.fetch_add(1, Ordering::SeqCst);
                    if i >= state.acked.len() {
                        return;
                    }
                    let opts = SubmitOptions {
                        unique: Some(format!("j{i}").into()),
                        ..Default::default()
                    };
                    let mut attempt = 0u32;
                    loop {
                        attempt += 1;
                        match client
                            .submit_background(FUNCTION, payload(i), opts.clone())
                            .await
                        {
                            Ok(_) => {
                                state.acked[i].store(true, Ordering::SeqCst);
                                state.acked_count.fetch_add(1, Ordering::SeqCst);
                                if attempt == 1 {
                                    state.first_try.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    state.retried.fetch_add(1, Ordering::Relaxed);
                                }
                                break;
                            }
                            Err(e) => {
                                *state
                                    .errors
                                    .lock()
                                    .unwrap()
                                    .entry(format!("{:?}", e.kind()))
                                    .or_default() += 1;
                                if attempt >= 1000 {
                                    stuck.add(format!("job j{i} never acknowledged: {e}"));
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let submit_time = t0.elapsed();
    let kill_log = tokio::task::spawn_blocking(move || killer.join())
        .await
        .unwrap()
        .unwrap_or_else(|_| panic!("the killer thread failed"));
    let acked = state.acked_count.load(Ordering::SeqCst);

    // Drain: workers run everything; count the runs of every unique.
    let runs: Arc<Vec<AtomicU32>> = Arc::new((0..jobs).map(|_| AtomicU32::new(0)).collect());
    let strange = Arc::new(Mutex::new(Vec::<String>::new()));
    let t_drain = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let w = Worker::new(WorkerOptions {
            servers: vec![addr.clone()],
            concurrency: 16,
            ..Default::default()
        })
        .unwrap();
        w.register(FUNCTION, None).unwrap();
        let runs = runs.clone();
        let strange = strange.clone();
        let handle = tokio::spawn({
            let w = w.clone();
            async move {
                w.run(move |job| {
                    let runs = runs.clone();
                    let strange = strange.clone();
                    async move {
                        let i = job
                            .unique()
                            .strip_prefix('j')
                            .and_then(|n| n.parse::<usize>().ok())
                            .filter(|&i| i < runs.len());
                        match i {
                            Some(i) if job.data()[..] == *payload(i).as_bytes() => {
                                runs[i].fetch_add(1, Ordering::SeqCst);
                            }
                            _ => strange.lock().unwrap().push(format!(
                                "unique {:?} data {:?}",
                                job.unique(),
                                String::from_utf8_lossy(job.data())
                            )),
                        }
                        let _ = job.complete("");
                    }
                })
                .await
            }
        });
        workers.push((w, handle));
    }
    let drained = wait_for(
        pick(Duration::from_secs(120), Duration::from_secs(600)),
        || {
            let runs = runs.clone();
            let addr = addr.clone();
            async move {
                let distinct = runs.iter().filter(|r| r.load(Ordering::SeqCst) > 0).count();
                distinct >= acked && matches!(queued(&addr, FUNCTION).await, Ok((0, 0)))
            }
        },
    )
    .await;
    let drain_time = t_drain.elapsed();
    // Late duplicates would show up now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (w, handle) in workers {
        w.shutdown().await;
        let _ = handle.await;
    }
    violations.check(drained, || {
        "the queue did not drain (jobs left, or acknowledged jobs never ran)".into()
    });

    let mut lost = Vec::new();
    let mut twice = Vec::new();
    let mut unacked_ran = 0usize;
    for i in 0..jobs {
        let n = runs[i].load(Ordering::SeqCst);
        let was_acked = state.acked[i].load(Ordering::SeqCst);
        if was_acked && n == 0 {
            lost.push(format!("j{i}"));
        }
        if n > 1 {
            twice.push(format!("j{i} ({n} runs)"));
        }
        if !was_acked && n > 0 {
            unacked_ran += 1;
        }
    }
    for s in strange.lock().unwrap().iter().take(5) {
        violations.add(format!("a worker got a job nobody submitted: {s}"));
    }
    violations.check(lost.is_empty(), || {
        format!(
            "{} acknowledged jobs lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        )
    });
    violations.check(twice.is_empty(), || {
        format!(
            "{} jobs ran more than once, e.g. {:?}",
            twice.len(),
            &twice[..twice.len().min(5)]
        )
    });
    violations.check(kill_log.len() == kills, || {
        format!("{} kills instead of {kills}", kill_log.len())
    });
    // No worker ran yet: each restart must reload at least every job acknowledged
    // before its kill.
    for (n, k) in kill_log.iter().enumerate() {
        violations.check(k.restored.is_some_and(|r| r >= k.acked as u64), || {
            format!(
                "restart {} reloaded {:?} jobs, {} were acknowledged before the kill",
                n + 1,
                k.restored,
                k.acked
            )
        });
    }

    // A clean stop and start: completed jobs were deleted, nothing comes back.
    {
        let mut d = daemon.lock().unwrap();
        d.signal(libc::SIGTERM);
        let st = d.wait_exit(Duration::from_secs(20));
        violations.check(st.success(), || format!("SIGTERM exit status {st}"));
        d.start();
    }
    match queued(&addr, FUNCTION).await {
        Ok((0, _)) => {}
        Ok((n, _)) => violations.add(format!(
            "{n} completed jobs came back after a clean restart"
        )),
        Err(e) => violations.add(format!("admin status after the clean restart: {e}")),
    }

    let mut back: Vec<Duration> = kill_log.iter().map(|k| k.back_after).collect();
    back.sort();
    figure(
        SCENARIO,
        format!(
            "kills {}; jobs acked {acked}/{jobs} ({} first try, {} after a retry), lost {}, duplicated {}, \
             unacknowledged but ran {unacked_ran}",
            kill_log.len(),
            state.first_try.load(Ordering::Relaxed),
            state.retried.load(Ordering::Relaxed),
            lost.len(),
            twice.len()
        ),
    );
    figure(
        SCENARIO,
        format!(
            "kill -9 to answering again (restart + reload): min {}, median {}, max {}",
            ms(quantile(&back, 0.0)),
            ms(quantile(&back, 0.5)),
            ms(quantile(&back, 1.0))
        ),
    );
    figure(
        SCENARIO,
        format!(
            "per kill (acked at kill / jobs reloaded): {}",
            kill_log
                .iter()
                .map(|k| format!(
                    "{}/{}",
                    k.acked,
                    k.restored.map_or("?".into(), |r| r.to_string())
                ))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );
    figure(
        SCENARIO,
        format!(
            "submit phase {:.1} s ({:.0} acked jobs/s incl. restarts), drain {:.1} s; submit errors {:?}",
            submit_time.as_secs_f64(),
            acked as f64 / submit_time.as_secs_f64(),
            drain_time.as_secs_f64(),
            state.errors.lock().unwrap()
        ),
    );
    violations.finish(SCENARIO);
}
