//! Scenario 2: worker processes (`chaos-worker`, a polygear Worker) SIGKILLed at
//! random in a loop, mid-job, and replaced, while clients submit foreground and
//! background jobs to polygeard with `--job-retries 3`. Every job must complete exactly
//! once, or — after its third lost assignment — be failed: a foreground client gets
//! WORK_FAIL (`Error::JobFailed`), a background job is dropped (polygeard logs
//! "dropped job due to max retry count: HANDLE", the only trace a background job's
//! failure leaves, as nobody waits on it).
//!
//! The workers log `S`tart, `P`re-complete and `C`omplete per job in one O_APPEND log
//! (see src/bin/chaos-worker.rs); from it, the clients' results and the server's
//! drops, the test checks: no job completed twice or started again after completing
//! (or after its result reached a client), no job assigned more than 3 times, every
//! failure is a retry-limit drop, and no background job vanished (not completed, not
//! dropped, and not killed after `P`, when the result may have left).
//!
//! Short: ~10 s of kills over 1,200 jobs; long: 12,000 jobs.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polygear::{Client, ClientOptions, Error, SubmitOptions};
use polygear_chaos::{
    figure, pick, queued, runtime, version_of, wait_for, workspace_bin, Daemon, Rng, Violations,
};

const SCENARIO: &str = "kill-workers";
const FUNCTION: &str = "chaos-fragile";
const RETRIES: u32 = 3;
const WORKERS: usize = 4;
const SLOW_MS: u64 = 1500;

/// What a foreground client got.
#[derive(Debug)]
enum FgOutcome {
    Done(String),
    Failed(String),
    Other(String),
}

struct Workers {
    children: Vec<Child>,
    spawn: Box<dyn Fn() -> Child + Send>,
    killed: HashSet<u32>,
    unexpected_exits: Vec<String>,
}

impl Workers {
    /// Replaces workers that died by themselves (recording it).
    fn reap(&mut self) {
        for c in self.children.iter_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                self.unexpected_exits
                    .push(format!("worker {} exited by itself: {st}", c.id()));
                *c = (self.spawn)();
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in self.children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Checks every job shares, and their counts.
#[derive(Default)]
struct Tally {
    completed_twice: usize,
    ran_after_done: usize,
    over_limit: usize,
    retried: usize,
    max_starts: usize,
    interrupted_runs: usize,
}

impl Tally {
    fn check(&mut self, unique: &str, ev: &[(char, u32)], violations: &Violations) {
        let starts = ev.iter().filter(|e| e.0 == 'S').count();
        let completes = ev.iter().filter(|e| e.0 == 'C').count();
        self.max_starts = self.max_starts.max(starts);
        if starts > 1 {
            self.retried += 1;
        }
        // A run (S by a pid) that never got to P was interrupted by a kill.
        let mut open: Vec<u32> = Vec::new();
        for &(k, pid) in ev {
            match k {
                'S' => open.push(pid),
                'P' => open.retain(|&p| p != pid),
                _ => {}
            }
        }
        self.interrupted_runs += open.len();
        if completes > 1 {
            self.completed_twice += 1;
            violations.add(format!("{unique} completed {completes} times: {ev:?}"));
        }
        if let Some(first_c) = ev.iter().position(|e| e.0 == 'C') {
            if ev[first_c..].iter().any(|e| e.0 == 'S') {
                self.ran_after_done += 1;
                violations.add(format!("{unique} started again after completing: {ev:?}"));
            }
        }
        if starts > RETRIES as usize {
            self.over_limit += 1;
            violations.add(format!(
                "{unique} started {starts} times with --job-retries {RETRIES}: {ev:?}"
            ));
        }
    }
}

#[test]
fn sigkilled_workers_complete_each_job_once_or_fail_it_after_the_retry_limit() {
    let rt = runtime(2);
    let limit = pick(Duration::from_secs(150), Duration::from_secs(900));
    rt.block_on(async {
        tokio::time::timeout(limit, scenario())
            .await
            .unwrap_or_else(|_| panic!("{SCENARIO}: did not finish within {limit:?}"))
    });
}

async fn scenario() {
    let violations = Violations::new();
    let mut rng = Rng::for_scenario(SCENARIO);
    let (n_fg, n_bg) = pick((600, 600), (6000, 6000));
    let dir = tempfile::tempdir().unwrap();
    let server_log = dir.path().join("polygeard.log");
    let job_log = dir.path().join("jobs.log");
    let daemon = Daemon::loopback(
        "polygeard",
        &["-q", "builtin", "--job-retries", &RETRIES.to_string()],
        "WARNING",
        &server_log,
    );
    figure(
        SCENARIO,
        format!(
            "{}; --job-retries {RETRIES}; {WORKERS} worker processes x 2 slots; {n_fg} foreground + {n_bg} background jobs",
            version_of(&workspace_bin("polygeard"))
        ),
    );
    let addr = daemon.addr();

    let spawn = {
        let server = addr.to_string();
        let job_log = job_log.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_chaos-worker"))
                .args(["--server", &server, "--function", FUNCTION, "--log"])
                .arg(&job_log)
                .args(["--concurrency", "2"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn chaos-worker")
        }
    };
    let workers = Arc::new(Mutex::new(Workers {
        children: (0..WORKERS).map(|_| spawn()).collect(),
        spawn: Box::new(spawn),
        killed: HashSet::new(),
        unexpected_exits: Vec::new(),
    }));

    // The killer: every 150-400 ms one random worker is SIGKILLed and replaced.
    let stop_killing = Arc::new(AtomicBool::new(false));
    let killer = {
        let workers = workers.clone();
        let stop = stop_killing.clone();
        let mut rng = rng.fork();
        std::thread::spawn(move || {
            let mut kills = 0usize;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(rng.millis(150, 400));
                let mut w = workers.lock().unwrap();
                w.reap();
                let i = rng.below(WORKERS as u64) as usize;
                let pid = w.children[i].id();
                let _ = w.children[i].kill();
                let _ = w.children[i].wait();
                w.killed.insert(pid);
                kills += 1;
                w.children[i] = (w.spawn)();
            }
            kills
        })
    };

    // Job payloads: mostly short, a few slow ones that tend to hit the retry limit.
    let data: Vec<String> = (0..n_fg + n_bg)
        .map(|_| {
            if rng.chance(0.03) {
                format!("slow:{SLOW_MS}")
            } else {
                format!("fast:{}", rng.range(5, 60))
            }
        })
        .collect();
    let data = Arc::new(data);
    let client_opts = ClientOptions {
        servers: vec![addr.clone()],
        submit_timeout: Duration::from_secs(10),
        ..Default::default()
    };
    let fg_client = Client::new(client_opts.clone()).unwrap();
    let bg_client = Client::new(client_opts).unwrap();
    let fg_results: Arc<Mutex<HashMap<usize, FgOutcome>>> = Arc::default();
    let bg_handles: Arc<Mutex<HashMap<usize, String>>> = Arc::default();
    let next_fg = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, results, next, data) = (
            fg_client.clone(),
            fg_results.clone(),
            next_fg.clone(),
            data.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n_fg {
                    return;
                }
                let opts = SubmitOptions {
                    unique: Some(format!("f{i}").into()),
                    timeout: Some(Duration::from_secs(120)),
                    ..Default::default()
                };
                let r = client.submit(FUNCTION, data[i].clone(), opts).await;
                let outcome = match r {
                    Ok(pid) => FgOutcome::Done(String::from_utf8_lossy(&pid).into_owned()),
                    Err(Error::JobFailed { handle, .. }) => FgOutcome::Failed(handle),
                    Err(e) => FgOutcome::Other(e.to_string()),
                };
                results.lock().unwrap().insert(i, outcome);
            }
        }));
    }
    // Background jobs, one every 8 ms, so they arrive during the whole foreground run.
    let bg_errors: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let (client, handles, data, errors) = (
            bg_client.clone(),
            bg_handles.clone(),
            data.clone(),
            bg_errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..n_bg {
                let opts = SubmitOptions {
                    unique: Some(format!("b{i}").into()),
                    ..Default::default()
                };
                match client
                    .submit_background(FUNCTION, data[n_fg + i].clone(), opts)
                    .await
                {
                    Ok(h) => {
                        handles.lock().unwrap().insert(i, h);
                    }
                    Err(e) => errors
                        .lock()
                        .unwrap()
                        .push(format!("background submit b{i}: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(8)).await;
            }
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            violations.add(format!("a client task failed: {e}"));
        }
    }
    for e in bg_errors.lock().unwrap().iter() {
        violations.add(e.clone());
    }
    // Everything submitted and every foreground job answered: stop killing, let the
    // surviving workers finish the queue.
    stop_killing.store(true, Ordering::SeqCst);
    let kills = tokio::task::spawn_blocking(move || killer.join().unwrap())
        .await
        .unwrap();
    let load_time = t0.elapsed();
    let drained = wait_for(Duration::from_secs(90), || {
        let addr = addr.clone();
        async move { matches!(queued(&addr, FUNCTION).await, Ok((0, 0))) }
    })
    .await;
    violations.check(drained, || {
        "the queue did not drain after the kills stopped".into()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (killed, unexpected) = {
        let mut w = workers.lock().unwrap();
        w.reap();
        (w.killed.clone(), w.unexpected_exits.clone())
    };
    drop(workers); // kills the idle survivors
    for u in unexpected {
        violations.add(u);
    }

    // The evidence.
    let dropped: HashSet<String> = daemon
        .log_text()
        .lines()
        .filter_map(|l| l.split("dropped job due to max retry count: ").nth(1))
        .map(|h| h.trim().to_string())
        .collect();
    let mut events: HashMap<String, Vec<(char, u32)>> = HashMap::new();
    let log = std::fs::read_to_string(&job_log).unwrap_or_default();
    for l in log.lines() {
        let mut it = l.split_whitespace();
        let (Some(kind), Some(unique), Some(pid)) = (it.next(), it.next(), it.next()) else {
            violations.add(format!("bad job log line {l:?}"));
            continue;
        };
        let kind = kind.chars().next().unwrap_or('?');
        if kind == 'E' {
            violations.add(format!("a worker could not send a result: {l}"));
        }
        events
            .entry(unique.to_string())
            .or_default()
            .push((kind, pid.parse().unwrap_or(0)));
    }

    // Per job.
    let mut tally = Tally::default();
    let fg_results = std::mem::take(&mut *fg_results.lock().unwrap());
    let mut fg_done = 0;
    let mut fg_failed = 0;
    for i in 0..n_fg {
        let unique = format!("f{i}");
        let ev = events.remove(&unique).unwrap_or_default();
        tally.check(&unique, &ev, &violations);
        match fg_results.get(&i) {
            Some(FgOutcome::Done(pid)) => {
                fg_done += 1;
                let pid: u32 = pid.parse().unwrap_or(0);
                match ev.iter().position(|&e| e == ('P', pid)) {
                    None => violations.add(format!(
                        "{unique}: result from worker {pid}, which never finished it: {ev:?}"
                    )),
                    Some(p) => {
                        if ev[p..].iter().any(|e| e.0 == 'S') {
                            violations.add(format!(
                                "{unique} started again after its result reached the client: {ev:?}"
                            ));
                        }
                    }
                }
            }
            Some(FgOutcome::Failed(handle)) => {
                fg_failed += 1;
                if ev.iter().any(|e| e.0 == 'C') {
                    violations.add(format!(
                        "{unique} failed to its client but completed: {ev:?}"
                    ));
                }
                if !dropped.contains(handle) {
                    violations.add(format!(
                        "{unique} ({handle}) failed to its client without reaching the retry limit: {ev:?}"
                    ));
                }
            }
            Some(FgOutcome::Other(e)) => {
                violations.add(format!("{unique}: the client got {e}"));
            }
            None => violations.add(format!("{unique}: the client got no answer")),
        }
    }
    let bg_handles = std::mem::take(&mut *bg_handles.lock().unwrap());
    let mut bg_done = 0;
    let mut bg_dropped = 0;
    let mut bg_unconfirmed = 0;
    let mut lost = 0;
    for i in 0..n_bg {
        let unique = format!("b{i}");
        let ev = events.remove(&unique).unwrap_or_default();
        tally.check(&unique, &ev, &violations);
        let Some(handle) = bg_handles.get(&i) else {
            continue; // its submission failed: reported above
        };
        let completed = ev.iter().any(|e| e.0 == 'C');
        if dropped.contains(handle) {
            bg_dropped += 1;
            if completed {
                violations.add(format!("{unique} dropped after it completed: {ev:?}"));
            }
        } else if completed {
            bg_done += 1;
        } else if matches!(ev.last(), Some(&('P', pid)) if killed.contains(&pid)) {
            // Killed between P and C: its WORK_COMPLETE may have left (then the server
            // finished it); had it not, the server would have run it again.
            bg_unconfirmed += 1;
        } else {
            lost += 1;
            violations.add(format!(
                "{unique} ({handle}) lost: never completed nor dropped: {ev:?}"
            ));
        }
    }
    for (unique, ev) in events {
        violations.add(format!("a job nobody submitted ran: {unique} {ev:?}"));
    }
    violations.check(kills >= 10, || format!("only {kills} kills happened"));
    violations.check(fg_failed + bg_dropped > 0, || {
        "no job reached the retry limit: the scenario did not exercise it".into()
    });

    figure(
        SCENARIO,
        format!(
            "kills {kills} in {:.1} s ({} distinct workers); runs interrupted mid-job {}; \
             jobs retried {}, most starts of one job {}",
            load_time.as_secs_f64(),
            killed.len(),
            tally.interrupted_runs,
            tally.retried,
            tally.max_starts
        ),
    );
    figure(
        SCENARIO,
        format!(
            "foreground: {fg_done} completed, {fg_failed} failed after {RETRIES} lost assignments; \
             background: {bg_done} completed, {bg_dropped} dropped at the retry limit, \
             {bg_unconfirmed} killed after P (result sent, not logged)"
        ),
    );
    figure(
        SCENARIO,
        format!(
            "lost {lost}, completed twice {}, started after completing {}, \
             over the retry limit {}; server log: {} retry-limit drops",
            tally.completed_twice,
            tally.ran_after_done,
            tally.over_limit,
            dropped.len()
        ),
    );
    violations.finish(SCENARIO);
}
