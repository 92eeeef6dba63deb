//! Scenario 3: network faults between clients/workers and two polygeard servers, A
//! and B, each in a network namespace joined to the test by a veth pair (addresses
//! from 192.0.2.0/24 and 198.51.100.0/24 only). Skipped, with the reason, where
//! network namespaces are not permitted.
//!
//! Phase 1, partition: A's link goes down (packets on open connections vanish, new
//! connections are unreachable) and comes back. Phase 2, a bad network: everything
//! goes through a user-space fault proxy (this kernel has no netem) adding latency and
//! loss (stalls), then A's proxy is cut (connections reset, port closed) and restored.
//!
//! Clients (given both servers; jobs routed by unique) submit background and
//! foreground jobs throughout; workers are connected to both. Expected:
//! - every call returns or errors within its timeout (nothing hangs past it);
//! - clients fail over: calls whose unique prefers the faulty server succeed on the
//!   other one during the fault;
//! - workers serve the faulty server again after the heal/restore;
//! - no acknowledged background job is lost, none runs twice (except a job whose
//!   worker connection was reset while it ran, which the server must run again).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polygear::servers::route;
use polygear::{Client, ClientOptions, ServerAddr, SubmitOptions, Worker, WorkerOptions};
use polygear_chaos::netns::NetLab;
use polygear_chaos::proxy::FaultProxy;
use polygear_chaos::{
    figure, ms, pick, quantile, queued, runtime, skip, version_of, wait_for, workspace_bin, Daemon,
    Rng, Violations,
};

const SCENARIO: &str = "network";
const FUNCTION: &str = "chaos-net";
const NAMES: [&str; 2] = ["A", "B"];
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(2);
const JOB_TIMEOUT: Duration = Duration::from_secs(3);
/// Scheduling slack allowed on top of a call's own deadlines.
const SLACK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fg,
    Bg,
}

/// One client call and how it ended.
#[derive(Debug, Clone)]
struct Call {
    kind: Kind,
    unique: String,
    /// The server its unique routes to first.
    prefers: usize,
    start: Instant,
    end: Instant,
    /// The server that created (background) or ran (foreground) the job.
    served_by: Option<usize>,
    error: Option<String>,
}

/// Everything one phase's load produced.
#[derive(Default)]
struct Load {
    calls: Mutex<Vec<Call>>,
    /// unique -> (server, start time) of every run by a worker.
    runs: Mutex<HashMap<String, Vec<(usize, Instant)>>>,
    stop: AtomicBool,
    seq: AtomicU64,
}

fn server_of(handle: &str) -> Option<usize> {
    NAMES
        .iter()
        .position(|n| handle.split(':').next() == Some(*n))
}

/// The most a call may take: connecting to each server, then its reply deadline.
fn bound(kind: Kind) -> Duration {
    let reply = match kind {
        Kind::Bg => SUBMIT_TIMEOUT,
        Kind::Fg => JOB_TIMEOUT.max(SUBMIT_TIMEOUT),
    };
    CONNECT_TIMEOUT * 2 + reply + SLACK
}

fn client(servers: &[ServerAddr]) -> Client {
    Client::new(ClientOptions {
        servers: servers.to_vec(),
        connect_timeout: CONNECT_TIMEOUT,
        submit_timeout: SUBMIT_TIMEOUT,
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        ..Default::default()
    })
    .unwrap()
}

/// Workers on both servers, recording every run.
fn start_workers(servers: &[ServerAddr], load: &Arc<Load>) -> Workers {
    (0..2)
        .map(|_| {
            let w = Worker::new(WorkerOptions {
                servers: servers.to_vec(),
                concurrency: 4,
                connect_timeout: CONNECT_TIMEOUT,
                min_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(500),
                ..Default::default()
            })
            .unwrap();
            w.register(FUNCTION, None).unwrap();
            let load = load.clone();
            let handle = tokio::spawn({
                let w = w.clone();
                async move {
                    w.run(move |job| {
                        let load = load.clone();
                        async move {
                            let server = server_of(job.handle()).unwrap_or(9);
                            load.runs
                                .lock()
                                .unwrap()
                                .entry(job.unique().to_string())
                                .or_default()
                                .push((server, Instant::now()));
                            tokio::time::sleep(Duration::from_millis(3)).await;
                            let handle = job.handle().to_string();
                            let _ = job.complete(handle);
                        }
                    })
                    .await
                }
            });
            (w, handle)
        })
        .collect()
}

/// Foreground and background submitters until `load.stop`.
fn start_load(
    servers: &[ServerAddr],
    load: &Arc<Load>,
    phase: &'static str,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for kind in [Kind::Bg, Kind::Fg] {
        let c = client(servers);
        for _ in 0..3 {
            let (c, load) = (c.clone(), load.clone());
            tasks.push(tokio::spawn(async move {
                while !load.stop.load(Ordering::SeqCst) {
                    let n = load.seq.fetch_add(1, Ordering::SeqCst);
                    let unique = format!("{phase}-{n}");
                    let prefers = route(unique.as_bytes(), 2).next().unwrap();
                    let opts = SubmitOptions {
                        unique: Some(unique.clone().into()),
                        timeout: Some(JOB_TIMEOUT),
                        ..Default::default()
                    };
                    let start = Instant::now();
                    let r = match kind {
                        Kind::Bg => c
                            .submit_background(FUNCTION, "data", opts)
                            .await
                            .map(|h| server_of(&h)),
                        Kind::Fg => c
                            .submit(FUNCTION, "data", opts)
                            .await
                            .map(|h| server_of(&String::from_utf8_lossy(&h))),
                    };
                    let end = Instant::now();
                    let (served_by, error) = match r {
                        Ok(s) => (s, None),
                        Err(e) => (None, Some(format!("{:?}: {e}", e.kind()))),
                    };
                    load.calls.lock().unwrap().push(Call {
                        kind,
                        unique,
                        prefers,
                        start,
                        end,
                        served_by,
                        error,
                    });
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }));
        }
    }
    tasks
}

/// A fault window for the reports: which server, from when to when.
struct Fault {
    what: String,
    server: usize,
    from: Instant,
    to: Instant,
}

type Workers = Vec<(Worker, tokio::task::JoinHandle<polygear::Result<()>>)>;

/// One phase: its load, workers and faults.
struct Phase {
    name: &'static str,
    load: Arc<Load>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    workers: Workers,
    faults: Vec<Fault>,
    /// Connections were reset (a job running then is run again, legitimately).
    resets_rerun_jobs: bool,
}

/// Stops the load, drains, and checks the phase's invariants; reports its figures.
async fn finish_phase(phase: Phase, admin_addrs: &[ServerAddr], violations: &Violations) {
    let Phase {
        name: phase,
        load,
        tasks,
        workers,
        faults,
        resets_rerun_jobs,
    } = phase;
    load.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    let calls = load.calls.lock().unwrap().clone();
    let acked: Vec<&Call> = calls
        .iter()
        .filter(|c| c.kind == Kind::Bg && c.error.is_none())
        .collect();
    // Drain: every acknowledged job runs (after a partition, a stuck connection
    // resumes with TCP's next retransmission, which can take a while).
    let drained = wait_for(Duration::from_secs(90), || {
        let load = load.clone();
        let acked: Vec<String> = acked.iter().map(|c| c.unique.clone()).collect();
        let addrs = admin_addrs.to_vec();
        async move {
            let all_ran = {
                let runs = load.runs.lock().unwrap();
                acked.iter().all(|u| runs.contains_key(u))
            };
            if !all_ran {
                return false;
            }
            for a in &addrs {
                if !matches!(queued(a, FUNCTION).await, Ok((0, 0))) {
                    return false;
                }
            }
            true
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (w, h) in workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), w.shutdown()).await;
        h.abort();
    }
    violations.check(drained, || format!("{phase}: the queues did not drain"));

    // Nothing hangs past its timeout.
    let late: Vec<String> = calls
        .iter()
        .filter(|c| c.end - c.start > bound(c.kind))
        .map(|c| {
            format!(
                "{} {:?} took {:?} (bound {:?}): {:?}",
                c.unique,
                c.kind,
                c.end - c.start,
                bound(c.kind),
                c.error
            )
        })
        .collect();
    violations.check(late.is_empty(), || {
        format!(
            "{phase}: {} calls ran past their timeout, e.g. {:?}",
            late.len(),
            &late[..late.len().min(3)]
        )
    });
    // No acknowledged job lost, none run twice.
    let runs = load.runs.lock().unwrap().clone();
    let lost: Vec<&str> = acked
        .iter()
        .filter(|c| !runs.contains_key(&c.unique))
        .map(|c| c.unique.as_str())
        .collect();
    violations.check(lost.is_empty(), || {
        format!(
            "{phase}: {} acknowledged jobs lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        )
    });
    let mut rerun_by_reset = 0;
    for (u, r) in &runs {
        if r.len() < 2 {
            continue;
        }
        // A run cut off by a connection reset is run again by the server: allowed
        // when the first run began shortly before a cut of its server.
        let excused = resets_rerun_jobs
            && faults.iter().any(|f| {
                f.server == r[0].0
                    && r[0].1 <= f.from
                    && f.from.duration_since(r[0].1) < Duration::from_secs(2)
            });
        if excused && r.len() == 2 {
            rerun_by_reset += 1;
        } else {
            violations.add(format!("{phase}: {u} ran {} times", r.len()));
        }
    }

    // Figures per fault.
    for f in &faults {
        let name = NAMES[f.server];
        let other = 1 - f.server;
        let during: Vec<&Call> = calls
            .iter()
            .filter(|c| c.prefers == f.server && c.start >= f.from && c.start < f.to)
            .collect();
        let failover = during
            .iter()
            .filter(|c| c.served_by == Some(other))
            .map(|c| c.end.duration_since(f.from))
            .min();
        let errors = during.iter().filter(|c| c.error.is_some()).count();
        let mut kinds: HashMap<String, usize> = HashMap::new();
        for c in during.iter().filter_map(|c| c.error.as_ref()) {
            *kinds
                .entry(c.split(':').next().unwrap_or("").to_string())
                .or_default() += 1;
        }
        let back = calls
            .iter()
            .filter(|c| c.prefers == f.server && c.start >= f.to && c.served_by == Some(f.server))
            .map(|c| c.end.duration_since(f.to))
            .min();
        let worker_back = runs
            .values()
            .flatten()
            .filter(|(s, t)| *s == f.server && *t >= f.to)
            .map(|(_, t)| t.duration_since(f.to))
            .min();
        let span = f.to.duration_since(f.from);
        figure(
            SCENARIO,
            format!(
                "{phase}, {} of {name} for {:.1} s: {} calls preferring {name} ({errors} errors {kinds:?}); \
                 failover to {}: {}; after the fault: clients served by {name} again after {}, workers after {}",
                f.what,
                span.as_secs_f64(),
                during.len(),
                NAMES[other],
                failover.map_or("NEVER".to_string(), ms),
                back.map_or("never".to_string(), ms),
                worker_back.map_or("never".to_string(), ms),
            ),
        );
        violations.check(failover.is_some_and(|t| t < span), || {
            format!(
                "{phase}, {} of {name}: no call preferring {name} failed over to {} within the {:.1} s fault \
                 ({} such calls, {errors} errors {kinds:?})",
                f.what,
                NAMES[other],
                span.as_secs_f64(),
                during.len()
            )
        });
        violations.check(worker_back.is_some(), || {
            format!(
                "{phase}, {} of {name}: no worker ran a job of {name} after it healed",
                f.what
            )
        });
    }
    let fg: Vec<&Call> = calls.iter().filter(|c| c.kind == Kind::Fg).collect();
    let mut fg_ok: Vec<Duration> = fg
        .iter()
        .filter(|c| c.error.is_none())
        .map(|c| c.end - c.start)
        .collect();
    fg_ok.sort();
    let longest = calls
        .iter()
        .map(|c| c.end - c.start)
        .max()
        .unwrap_or_default();
    figure(
        SCENARIO,
        format!(
            "{phase}: {} calls ({} errors), longest {}; background acked {}, lost {}, run twice {} \
             (+{rerun_by_reset} re-run after a reset); foreground ok {} p50 {} p99 {}",
            calls.len(),
            calls.iter().filter(|c| c.error.is_some()).count(),
            ms(longest),
            acked.len(),
            lost.len(),
            runs.values().filter(|r| r.len() > 1).count() - rerun_by_reset,
            fg_ok.len(),
            ms(quantile(&fg_ok, 0.5)),
            ms(quantile(&fg_ok, 0.99)),
        ),
    );
}

/// The tests of this file one at a time (each builds its own namespaces and load).
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn partitions_and_a_bad_network_fail_over_and_lose_no_acknowledged_job() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = match NetLab::new(2) {
        Ok(lab) => lab,
        Err(reason) => {
            skip(
                SCENARIO,
                format!("network namespaces are not permitted here: {reason}"),
            );
            return;
        }
    };
    let rt = runtime(2);
    let limit = pick(Duration::from_secs(240), Duration::from_secs(900));
    rt.block_on(async {
        tokio::time::timeout(limit, scenario(&lab))
            .await
            .unwrap_or_else(|_| panic!("{SCENARIO}: did not finish within {limit:?}"))
    });
    drop(lab); // (also dropped, deleting the namespaces, when the scenario panics)
}

async fn scenario(lab: &NetLab) {
    let violations = Violations::new();
    let mut rng = Rng::for_scenario(SCENARIO);
    let dir = tempfile::tempdir().unwrap();
    let mut daemons: Vec<Daemon> = lab
        .sites
        .iter()
        .enumerate()
        .map(|(i, site)| {
            let db = dir.path().join(format!("{}.sqlite3", NAMES[i]));
            let mut d = Daemon::new(
                &format!("polygeard {}", NAMES[i]),
                site.exec_prefix(),
                &site.ns_ip,
                4730,
                &[
                    "-q",
                    "libsqlite3",
                    "--libsqlite3-db",
                    db.to_str().unwrap(),
                    "--job-handle-prefix",
                    NAMES[i],
                ],
                "WARNING",
                &dir.path().join(format!("{}.log", NAMES[i])),
            );
            d.start();
            d
        })
        .collect();
    let direct: Vec<ServerAddr> = daemons.iter().map(|d| d.addr()).collect();
    figure(
        SCENARIO,
        format!(
            "{}; A at {} (namespace {}), B at {} (namespace {})",
            version_of(&workspace_bin("polygeard")),
            direct[0],
            lab.sites[0].ns,
            direct[1],
            lab.sites[1].ns
        ),
    );

    // Phase 1: partitions (link down) that heal.
    let cycles: Vec<(usize, Duration)> = pick(
        vec![(0, Duration::from_secs(8))],
        vec![
            (0, Duration::from_secs(15)),
            (1, Duration::from_secs(15)),
            (0, Duration::from_secs(20)),
        ],
    );
    let gap = pick(Duration::from_secs(4), Duration::from_secs(10));
    let load = Arc::new(Load::default());
    let workers = start_workers(&direct, &load);
    let tasks = start_load(&direct, &load, "part");
    let mut faults = Vec::new();
    tokio::time::sleep(gap).await;
    for (site, span) in cycles {
        let from = Instant::now();
        lab.partition(site);
        tokio::time::sleep(span).await;
        lab.heal(site);
        faults.push(Fault {
            what: "partition".into(),
            server: site,
            from,
            to: Instant::now(),
        });
        tokio::time::sleep(gap).await;
    }
    let phase = Phase {
        name: "phase 1 (partition)",
        load,
        tasks,
        workers,
        faults,
        resets_rerun_jobs: false,
    };
    finish_phase(phase, &direct, &violations).await;

    // Phase 2: latency and loss through the fault proxies, then a cut of A's.
    let proxies = [
        FaultProxy::start(
            format!("{}:4730", lab.sites[0].ns_ip).parse().unwrap(),
            rng.next_u64(),
        )
        .await,
        FaultProxy::start(
            format!("{}:4730", lab.sites[1].ns_ip).parse().unwrap(),
            rng.next_u64(),
        )
        .await,
    ];
    let (delay, loss, stall) = (Duration::from_millis(20), 0.03, Duration::from_millis(250));
    for p in &proxies {
        p.set_faults(delay, loss, stall);
    }
    let via: Vec<ServerAddr> = proxies
        .iter()
        .map(|p| ServerAddr::new("127.0.0.1", p.addr.port()))
        .collect();
    let load = Arc::new(Load::default());
    let workers = start_workers(&via, &load);
    let tasks = start_load(&via, &load, "proxy");
    tokio::time::sleep(pick(Duration::from_secs(6), Duration::from_secs(60))).await;
    let from = Instant::now();
    proxies[0].cut(true);
    tokio::time::sleep(pick(Duration::from_secs(3), Duration::from_secs(10))).await;
    proxies[0].restore();
    let faults = vec![Fault {
        what: "cut (reset, port closed)".into(),
        server: 0,
        from,
        to: Instant::now(),
    }];
    tokio::time::sleep(pick(Duration::from_secs(4), Duration::from_secs(20))).await;
    figure(
        SCENARIO,
        format!(
            "phase 2 proxy faults: +{} each way, {:.0}% of chunks stalled {} ({} stalls, {} connections)",
            ms(delay),
            loss * 100.0,
            ms(stall),
            proxies.iter().map(|p| p.stalls()).sum::<u64>(),
            proxies.iter().map(|p| p.accepted()).sum::<u64>()
        ),
    );
    let phase = Phase {
        name: "phase 2 (latency, loss, cut)",
        load,
        tasks,
        workers,
        faults,
        resets_rerun_jobs: true,
    };
    finish_phase(phase, &direct, &violations).await;

    for d in daemons.iter_mut() {
        violations.check(d.running(), || format!("{} died", d.name));
    }
    drop(daemons);
    violations.finish(SCENARIO);
}

/// The smallest form of phase 1's failover check, for a quick reproduction: a client
/// given A and B has a connection to A; A is partitioned; calls whose unique prefers A
/// must be served by B within one call's bound (reply deadline + a connect to each).
#[test]
fn a_client_fails_over_from_a_silently_partitioned_server() {
    const NAME: &str = "network-failover";
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = match NetLab::new(2) {
        Ok(lab) => lab,
        Err(reason) => {
            skip(
                NAME,
                format!("network namespaces are not permitted here: {reason}"),
            );
            return;
        }
    };
    let rt = runtime(2);
    rt.block_on(async {
        let violations = Violations::new();
        let dir = tempfile::tempdir().unwrap();
        let daemons: Vec<Daemon> = lab
            .sites
            .iter()
            .enumerate()
            .map(|(i, site)| {
                let mut d = Daemon::new(
                    &format!("polygeard {}", NAMES[i]),
                    site.exec_prefix(),
                    &site.ns_ip,
                    4730,
                    &["-q", "builtin", "--job-handle-prefix", NAMES[i]],
                    "WARNING",
                    &dir.path().join(format!("{}.log", NAMES[i])),
                );
                d.start();
                d
            })
            .collect();
        let addrs: Vec<ServerAddr> = daemons.iter().map(|d| d.addr()).collect();
        let c = client(&addrs);
        let prefers_a = |n: usize| {
            (n..)
                .map(|k| format!("u{k}"))
                .find(|u| route(u.as_bytes(), 2).next() == Some(0))
                .unwrap()
        };
        let submit = |unique: String| {
            let c = c.clone();
            async move {
                let opts = SubmitOptions {
                    unique: Some(unique.into()),
                    ..Default::default()
                };
                c.submit_background(FUNCTION, "data", opts).await
            }
        };
        // A connection to A exists.
        let first = submit(prefers_a(0)).await;
        violations.check(
            first.as_deref().is_ok_and(|h| server_of(h) == Some(0)),
            || format!("before the partition: {first:?}"),
        );
        lab.partition(0);
        let t0 = Instant::now();
        let mut outcomes = Vec::new();
        let mut failover = None;
        let mut n = 1_000_000;
        while t0.elapsed() < Duration::from_secs(12) {
            let unique = prefers_a(n);
            n = unique[1..].parse::<usize>().unwrap() + 1;
            let start = Instant::now();
            let r = submit(unique).await;
            let took = start.elapsed();
            violations.check(took <= bound(Kind::Bg), || {
                format!("a call took {took:?}, past its bound {:?}", bound(Kind::Bg))
            });
            match &r {
                Ok(h) if server_of(h) == Some(1) => {
                    failover = Some(t0.elapsed());
                    break;
                }
                Ok(h) => outcomes.push(format!("ok {h}")),
                Err(e) => outcomes.push(format!("{e} after {}", ms(took))),
            }
        }
        lab.heal(0);
        let shown = &outcomes[..outcomes.len().min(4)];
        figure(
            NAME,
            format!(
                "failover to B after {}; {} calls before it, the first: {shown:?}",
                failover.map_or("NEVER (12 s)".into(), ms),
                outcomes.len()
            ),
        );
        violations.check(failover.is_some_and(|t| t <= bound(Kind::Bg)), || {
            format!(
                "a client given A and B did not fail over from a silently partitioned A within {:?}: \
                 {} calls in {}, none served by B; the first: {shown:?}",
                bound(Kind::Bg),
                outcomes.len(),
                failover.map_or("12 s".into(), ms),
            )
        });
        drop(daemons);
        violations.finish(NAME);
    });
    drop(lab);
}
