//! Scenario 5: soak. A steady mixed load — paced foreground jobs from several clients
//! (latency measured) and durable background jobs, several workers — first on a quiet
//! server, then with 1,000 idle connections, slowloris peers (one header byte every
//! 2-4 s) and peers that send requests but never read the replies.
//!
//! Expected: polygeard's RSS (VmRSS of /proc/PID/status, sampled every 250 ms) stays
//! under a bound computed from what the server may hold (see [`rss_bound_kib`]) and
//! does not creep up during the noisy phase; foreground p99 latency with the noise
//! stays within 2x of the quiet run's; every foreground result is right and every
//! acknowledged background job runs.
//!
//! Short: 12 s quiet + 30 s noisy; long: 60 s quiet + 10 minutes noisy.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polygear::protocol::Magic;
use polygear::{Client, ClientOptions, Packet, SubmitOptions, Worker, WorkerOptions};
use polygear_chaos::{
    figure, ms, pick, quantile, queued, raise_nofile, rss_kib, runtime, version_of, wait_for,
    workspace_bin, Daemon, Latencies, Rng, Violations,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SCENARIO: &str = "soak";
const FG: &str = "soak-fg";
const BG: &str = "soak-bg";
const IDLE: usize = 1000;
const SLOWLORIS: usize = 50;
const NON_READERS: usize = 4;
/// Foreground submitters (one client each) and their pace.
const FG_TASKS: usize = 4;
const FG_PERIOD: Duration = Duration::from_millis(20);
/// Background submitters and their pace.
const BG_TASKS: usize = 2;
const BG_PERIOD: Duration = Duration::from_millis(20);
/// The server stops reading a peer with this much output unsent (server/src/conn.rs
/// HIGH_WATER); a non-reader costs at most that plus one read's worth of replies.
const SERVER_HIGH_WATER_KIB: u64 = 4 << 10;

/// What the noise may add to the quiet run's peak RSS. Per connection: its read buffer
/// (16 KiB, core's FrameReader starts there; untouched pages of an idle one cost
/// nothing), its reader and writer tasks and its peer state: under 32 KiB. Per
/// non-reader: the replies queued for it, at most HIGH_WATER (then the server stops
/// reading it) plus one read's worth, in a buffer that may have grown to twice that:
/// under 2 x HIGH_WATER. Plus 16 MiB for the allocator (per-thread arenas,
/// fragmentation). Whatever the run's length: nothing in it grows with time.
fn rss_bound_kib(quiet_peak: u64, connections: u64) -> u64 {
    quiet_peak + connections * 32 + NON_READERS as u64 * 2 * SERVER_HIGH_WATER_KIB + (16 << 10)
}

/// The steady load: results checked, foreground latencies recorded.
struct Load {
    fg_latency: Latencies,
    wrong: AtomicU64,
    errors: Mutex<Vec<String>>,
    bg_acked: AtomicU64,
    bg_ran: AtomicU64,
    stop: AtomicBool,
}

fn start_load(addr: &polygear::ServerAddr, load: &Arc<Load>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for t in 0..FG_TASKS {
        let client = Client::new(ClientOptions {
            servers: vec![addr.clone()],
            ..Default::default()
        })
        .unwrap();
        let load = load.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(FG_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            while !load.stop.load(Ordering::SeqCst) {
                tick.tick().await;
                n += 1;
                let data = format!("fg-{t}-{n}-abcdefghijklmnopqrstuvwxyz");
                let t0 = Instant::now();
                match client
                    .submit(FG, data.clone(), SubmitOptions::default())
                    .await
                {
                    Ok(r) => {
                        load.fg_latency.add(t0.elapsed());
                        let want: Vec<u8> = data.bytes().rev().collect();
                        if r[..] != want[..] {
                            load.wrong.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => load.errors.lock().unwrap().push(format!("foreground: {e}")),
                }
            }
        }));
    }
    for t in 0..BG_TASKS {
        let client = Client::new(ClientOptions {
            servers: vec![addr.clone()],
            ..Default::default()
        })
        .unwrap();
        let load = load.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(BG_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            while !load.stop.load(Ordering::SeqCst) {
                tick.tick().await;
                n += 1;
                let opts = SubmitOptions {
                    unique: Some(format!("bg-{t}-{n}-{:?}", Instant::now()).into()),
                    ..Default::default()
                };
                match client.submit_background(BG, vec![b'b'; 256], opts).await {
                    Ok(_) => {
                        load.bg_acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => load.errors.lock().unwrap().push(format!("background: {e}")),
                }
            }
        }));
    }
    tasks
}

async fn stop_load(load: &Arc<Load>, tasks: Vec<tokio::task::JoinHandle<()>>) {
    load.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    load.stop.store(false, Ordering::SeqCst);
}

/// RSS samples (time since the start, KiB) taken every 250 ms until stopped.
fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<(Duration, u64)>> {
    tokio::spawn(async move {
        let t0 = Instant::now();
        let mut out = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            if let Some(kib) = rss_kib(pid) {
                out.push((t0.elapsed(), kib));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        out
    })
}

fn mean(v: &[(Duration, u64)]) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.iter().map(|s| s.1).sum::<u64>() / v.len() as u64
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[test]
fn a_server_under_idle_slow_and_stuck_peers_keeps_its_memory_and_latency() {
    let rt = runtime(2);
    let limit = pick(Duration::from_secs(180), Duration::from_secs(1200));
    rt.block_on(async {
        tokio::time::timeout(limit, scenario())
            .await
            .unwrap_or_else(|_| panic!("{SCENARIO}: did not finish within {limit:?}"))
    });
}

async fn scenario() {
    let violations = Violations::new();
    let mut rng = Rng::for_scenario(SCENARIO);
    let quiet_for = pick(Duration::from_secs(12), Duration::from_secs(60));
    let noisy_for = pick(Duration::from_secs(30), Duration::from_secs(600));
    let want_fds = (IDLE + SLOWLORIS + NON_READERS + 200) as u64 * 2;
    let nofile = raise_nofile(want_fds);
    let idle = if nofile >= want_fds {
        IDLE
    } else {
        let n = (nofile as usize).saturating_sub(SLOWLORIS + NON_READERS + 200) / 2;
        figure(
            SCENARIO,
            format!(
                "RLIMIT_NOFILE is {nofile} (hard limit): {n} idle connections instead of {IDLE}"
            ),
        );
        n
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queue.sqlite3");
    let daemon = Daemon::loopback(
        "polygeard",
        &["--libsqlite3-db", db.to_str().unwrap()],
        "WARNING",
        &dir.path().join("polygeard.log"),
    );
    let addr = daemon.addr();
    let pid = daemon.pid().unwrap();
    figure(
        SCENARIO,
        format!(
            "{}; durable queue; {FG_TASKS} foreground clients every {}, {BG_TASKS} background every {}; \
             quiet {} s, noisy {} s",
            version_of(&workspace_bin("polygeard")),
            ms(FG_PERIOD),
            ms(BG_PERIOD),
            quiet_for.as_secs(),
            noisy_for.as_secs()
        ),
    );

    // Workers for both functions.
    let load = Arc::new(Load {
        fg_latency: Latencies::new(),
        wrong: AtomicU64::new(0),
        errors: Mutex::new(Vec::new()),
        bg_acked: AtomicU64::new(0),
        bg_ran: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let mut workers = Vec::new();
    for _ in 0..3 {
        let w = Worker::new(WorkerOptions {
            servers: vec![addr.clone()],
            concurrency: 4,
            ..Default::default()
        })
        .unwrap();
        w.register(FG, None).unwrap();
        w.register(BG, None).unwrap();
        let load = load.clone();
        let h = tokio::spawn({
            let w = w.clone();
            async move {
                w.run(move |job| {
                    let load = load.clone();
                    async move {
                        if job.function() == BG {
                            load.bg_ran.fetch_add(1, Ordering::Relaxed);
                        }
                        let out: Vec<u8> = job.data().iter().rev().copied().collect();
                        let _ = job.complete(out);
                    }
                })
                .await
            }
        });
        workers.push((w, h));
    }

    // Warm up, then the quiet run.
    let tasks = start_load(&addr, &load);
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.fg_latency.take_sorted();
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(pid, stop_sampling.clone());
    tokio::time::sleep(quiet_for).await;
    let quiet = load.fg_latency.take_sorted();
    stop_sampling.store(true, Ordering::SeqCst);
    let quiet_rss = sampler.await.unwrap();
    let quiet_peak = quiet_rss.iter().map(|s| s.1).max().unwrap_or(0);

    // The noise.
    let before_noise = rss_kib(pid).unwrap_or(0);
    let mut idle_conns = Vec::with_capacity(idle);
    for _ in 0..idle {
        match TcpStream::connect(("127.0.0.1", addr.port)).await {
            Ok(s) => idle_conns.push(s),
            Err(e) => {
                violations.add(format!("idle connection {} refused: {e}", idle_conns.len()));
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with_idle = rss_kib(pid).unwrap_or(0);
    let noise_stop = Arc::new(AtomicBool::new(false));
    let slow_bytes = Arc::new(AtomicU64::new(0));
    let slowloris = {
        let (stop, sent) = (noise_stop.clone(), slow_bytes.clone());
        let mut rng = rng.fork();
        let port = addr.port;
        tokio::spawn(async move {
            let packet = Packet::EchoReq {
                data: vec![b's'; 32].into(),
            }
            .to_bytes(Magic::Req)
            .unwrap();
            let mut peers = Vec::new();
            for _ in 0..SLOWLORIS {
                if let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await {
                    let next = Instant::now() + rng.millis(0, 3000);
                    peers.push((s, 0usize, next));
                }
            }
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let now = Instant::now();
                for (s, pos, next) in peers.iter_mut() {
                    if *next > now {
                        continue;
                    }
                    if s.write_all(&packet[*pos..*pos + 1]).await.is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    *pos = (*pos + 1) % packet.len();
                    *next = now + rng.millis(2000, 4000);
                }
            }
            peers.len()
        })
    };
    let stuck_bytes = Arc::new(AtomicU64::new(0));
    let mut non_readers = Vec::new();
    for _ in 0..NON_READERS {
        let sent = stuck_bytes.clone();
        let port = addr.port;
        non_readers.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
                return;
            };
            let packet = Packet::EchoReq {
                data: vec![b'n'; 4096].into(),
            }
            .to_bytes(Magic::Req)
            .unwrap();
            // Blocks for good once the server stopped reading us and the socket is full.
            while s.write_all(&packet).await.is_ok() {
                sent.fetch_add(packet.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with_noise = rss_kib(pid).unwrap_or(0);
    load.fg_latency.take_sorted(); // the noise's own start-up is not measured

    // The noisy run.
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(pid, stop_sampling.clone());
    tokio::time::sleep(noisy_for).await;
    let noisy = load.fg_latency.take_sorted();
    stop_sampling.store(true, Ordering::SeqCst);
    let noisy_rss = sampler.await.unwrap();
    stop_load(&load, tasks).await;

    // The idle peers are all still connected (a read would block, not see EOF).
    let mut closed = 0;
    for s in &idle_conns {
        let mut b = [0u8; 1];
        match s.try_read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => closed += 1,
        }
    }
    noise_stop.store(true, Ordering::SeqCst);
    let slow_peers = slowloris.await.unwrap_or(0);
    for n in &non_readers {
        n.abort();
    }
    let connections = (idle_conns.len() + slow_peers + NON_READERS) as u64;
    drop(idle_conns);

    // Every acknowledged background job runs.
    let drained = wait_for(Duration::from_secs(60), || {
        let addr = addr.clone();
        async move { matches!(queued(&addr, BG).await, Ok((0, 0))) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (w, h) in workers {
        w.shutdown().await;
        let _ = h.await;
    }
    let after_noise = rss_kib(pid).unwrap_or(0);

    // Verdicts.
    let errors = load.errors.lock().unwrap().clone();
    violations.check(errors.is_empty(), || {
        format!(
            "{} client errors, e.g. {:?}",
            errors.len(),
            &errors[..errors.len().min(3)]
        )
    });
    let wrong = load.wrong.load(Ordering::Relaxed);
    violations.check(wrong == 0, || format!("{wrong} wrong foreground results"));
    let (acked, ran) = (
        load.bg_acked.load(Ordering::Relaxed),
        load.bg_ran.load(Ordering::Relaxed),
    );
    violations.check(drained && ran >= acked, || {
        format!("background jobs: {acked} acknowledged, {ran} ran")
    });
    violations.check(closed == 0, || {
        format!("{closed} idle connections were closed by the server")
    });
    let (q99, n99) = (quantile(&quiet, 0.99), quantile(&noisy, 0.99));
    violations.check(n99 <= q99 * 2, || {
        format!(
            "foreground p99 with the noise {} > 2 x quiet p99 {}",
            ms(n99),
            ms(q99)
        )
    });
    let noisy_peak = noisy_rss.iter().map(|s| s.1).max().unwrap_or(0);
    let bound = rss_bound_kib(quiet_peak, connections);
    violations.check(noisy_peak <= bound, || {
        format!(
            "RSS peak {} above its bound {}",
            mib(noisy_peak),
            mib(bound)
        )
    });
    // No creep: the last quarter of the noisy run is not above the second quarter
    // (+10% + 4 MiB of noise).
    let n = noisy_rss.len();
    let (q2, q4) = (
        mean(&noisy_rss[n / 4..n / 2]),
        mean(&noisy_rss[n * 3 / 4..]),
    );
    violations.check(q4 <= q2 + q2 / 10 + 4096, || {
        format!(
            "RSS creeps up during the noisy run: {} in its second quarter, {} in its last",
            mib(q2),
            mib(q4)
        )
    });

    figure(
        SCENARIO,
        format!(
            "noise: {} idle connections, {slow_peers} slowloris peers ({} bytes sent), {NON_READERS} non-readers \
             ({} MiB of requests sent, never reading a reply)",
            connections as usize - slow_peers - NON_READERS,
            slow_bytes.load(Ordering::Relaxed),
            stuck_bytes.load(Ordering::Relaxed) >> 20
        ),
    );
    figure(
        SCENARIO,
        format!(
            "foreground latency quiet: n {} p50 {} p99 {} max {}; noisy: n {} p50 {} p99 {} max {}; p99 ratio {:.2} (limit 2)",
            quiet.len(),
            ms(quantile(&quiet, 0.5)),
            ms(q99),
            ms(quantile(&quiet, 1.0)),
            noisy.len(),
            ms(quantile(&noisy, 0.5)),
            ms(n99),
            ms(quantile(&noisy, 1.0)),
            n99.as_secs_f64() / q99.as_secs_f64().max(1e-9)
        ),
    );
    figure(
        SCENARIO,
        format!(
            "RSS: quiet peak {}; before the noise {}, with the idle connections {} (+{} KiB each), \
             with all the noise {} (+{} per non-reader); noisy peak {} \
             (bound {}), 2nd quarter mean {}, last quarter mean {}; after the noise closed {}",
            mib(quiet_peak),
            mib(before_noise),
            mib(with_idle),
            with_idle.saturating_sub(before_noise) / (idle as u64).max(1),
            mib(with_noise),
            mib(with_noise.saturating_sub(with_idle) / NON_READERS as u64),
            mib(noisy_peak),
            mib(bound),
            mib(q2),
            mib(q4),
            mib(after_noise)
        ),
    );
    figure(
        SCENARIO,
        format!("background: {acked} acknowledged, {ran} ran"),
    );
    drop(daemon);
    violations.finish(SCENARIO);
}
