//! Retries with backoff and the dead set (issue #19) against a real
//! polygeard: failed background jobs come back after their backoff, the
//! last failure lands in the dead set, which is listed, requeued and
//! deleted through the admin protocol and core's `Admin`; SQLite keeps both
//! across kill -9; foreground jobs are untouched.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{can_do, created, perl, perl_gearman, polygeard, submit, Kill, Raw};
use polygear::protocol::Packet;
use polygear::{Admin, DeadJob, RetryPolicy};

/// A job as a worker got it.
struct Got {
    handle: Bytes,
    unique: Bytes,
    data: Bytes,
}

/// One GRAB_JOB_UNIQ: the job, or `None` on NO_JOB.
fn grab(w: &mut Raw) -> Option<Got> {
    w.send(&Packet::GrabJobUniq);
    match w.recv() {
        Packet::JobAssignUniq {
            handle,
            unique,
            data,
            ..
        } => Some(Got {
            handle,
            unique,
            data,
        }),
        Packet::NoJob => None,
        p => panic!("expected a job or NO_JOB, got {p:?}"),
    }
}

/// Grabs until a job comes (polling every 20 ms), at most `limit`.
fn wait_job(w: &mut Raw, limit: Duration) -> Got {
    let end = Instant::now() + limit;
    loop {
        if let Some(g) = grab(w) {
            return g;
        }
        assert!(Instant::now() < end, "no job within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn worker(port: u16, function: &str) -> Raw {
    let mut w = Raw::connect(port);
    w.send(&can_do(function));
    w
}

fn submit_bg(port: u16, function: &str, unique: &str, data: &str) -> String {
    let mut c = Raw::connect(port);
    c.send(&submit(function, unique, data, true));
    created(c.recv())
}

fn metric(port: u16, name: &str) -> u64 {
    let text = Raw::connect(port).admin("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `f` on a fresh `Admin` connection to `port`.
fn admin<T>(port: u16, f: impl AsyncFnOnce(&mut Admin) -> polygear::Result<T>) -> T {
    rt().block_on(async {
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut a = Admin::connect(&addr, Duration::from_secs(5)).await.unwrap();
        f(&mut a).await.unwrap()
    })
}

fn dead(port: u16, function: Option<&str>) -> Vec<DeadJob> {
    let f = function.map(str::to_string);
    admin(port, async move |a| a.dead_jobs(f.as_deref()).await)
}

#[test]
fn a_failing_job_runs_again_after_its_backoff_and_then_completes() {
    let d = polygeard(&["-q", "builtin", "--retry", "flaky=3:300:5000"]);
    let mut w = worker(d.port, "flaky");
    submit_bg(d.port, "flaky", "u1", "payload");
    let mut runs = Vec::new();
    for attempt in 1..=3 {
        let g = wait_job(&mut w, Duration::from_secs(5));
        runs.push(Instant::now());
        assert_eq!((&g.unique[..], &g.data[..]), (&b"u1"[..], &b"payload"[..]));
        if attempt < 3 {
            w.send(&Packet::WorkFail { handle: g.handle });
            // In its backoff: in no queue.
            assert!(grab(&mut w).is_none(), "ran again before its backoff");
            let jobs = Raw::connect(d.port).admin("show jobs");
            assert_eq!(jobs.lines().count(), 2, "still one job: {jobs}");
        } else {
            w.send(&Packet::WorkComplete {
                handle: g.handle,
                data: "".into(),
            });
        }
    }
    // Backoff 300 ms, then 600 ms (each plus up to 25 % jitter).
    let gaps: Vec<Duration> = runs.windows(2).map(|p| p[1] - p[0]).collect();
    assert!(gaps[0] >= Duration::from_millis(300), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(600), "{gaps:?}");
    assert!(gaps[1] < Duration::from_millis(3000), "{gaps:?}");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(Raw::connect(d.port).admin("show jobs"), ".\n");
    assert!(dead(d.port, None).is_empty());
    assert_eq!(metric(d.port, "jobs_retried"), 2);
}

#[test]
fn exhausted_attempts_land_in_the_dead_set_with_the_exception_text() {
    let d = polygeard(&["-q", "builtin", "--retry", "boom=2:50"]);
    let mut w = worker(d.port, "boom");
    let handle = submit_bg(d.port, "boom", "u\t1", "da\x01ta");
    for i in 1..=2 {
        let g = wait_job(&mut w, Duration::from_secs(5));
        w.send(&Packet::WorkException {
            handle: g.handle,
            data: Bytes::from(format!("boom {i}\nline two")),
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(grab(&mut w).is_none(), "a dead job is not run again");
    let list = dead(d.port, Some("boom"));
    assert_eq!(list.len(), 1, "{list:?}");
    let r = &list[0];
    assert_eq!(r.handle, handle);
    assert_eq!(r.function, "boom");
    assert_eq!(&r.unique[..], b"u\t1");
    assert_eq!(&r.data[..], b"da\x01ta");
    assert_eq!(r.attempts, 2);
    assert_eq!(r.error, "boom 2\nline two");
    assert!(r.failed_at >= r.submitted && r.submitted > 1_600_000_000);
    assert!(dead(d.port, Some("other")).is_empty());
    // The raw row: tab-separated, escaped.
    let raw = Raw::connect(d.port).admin("dead list");
    assert!(
        raw.contains("\tu\\t1\tboom 2\\nline two\tda\\x01ta\n"),
        "{raw}"
    );

    // Requeued: a fresh job (attempts reset) that runs and completes.
    assert_eq!(admin(d.port, async |a| a.retry_dead("boom").await), 1);
    assert!(dead(d.port, None).is_empty());
    let g = wait_job(&mut w, Duration::from_secs(5));
    assert_eq!(&g.data[..], b"da\x01ta");
    w.send(&Packet::WorkFail { handle: g.handle });
    // Attempts were reset: this failure is the first of two again.
    std::thread::sleep(Duration::from_millis(20));
    assert!(dead(d.port, None).is_empty());
    let g = wait_job(&mut w, Duration::from_secs(5));
    w.send(&Packet::WorkFail { handle: g.handle });
    std::thread::sleep(Duration::from_millis(100));
    let list = dead(d.port, None);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].error, "WORK_FAIL");
    assert_eq!(metric(d.port, "dead_requeued"), 1);
    assert_eq!(metric(d.port, "dead_jobs"), 1);

    // Deleted by handle, then nothing left to delete.
    let h = list[0].handle.clone();
    assert!(admin(d.port, async move |a| a.delete_dead_job(&h).await));
    assert!(!admin(d.port, async |a| a
        .delete_dead_job("H:nope:1")
        .await));
    assert_eq!(admin(d.port, async |a| a.delete_all_dead().await), 0);
    assert_eq!(Raw::connect(d.port).admin("dead retry all"), "OK 0\n");
}

#[test]
fn a_worker_that_dies_mid_job_uses_an_attempt() {
    let d = polygeard(&["-q", "builtin", "--retry", "crashy=2:100"]);
    submit_bg(d.port, "crashy", "c1", "x");
    for _ in 0..2 {
        let mut w = worker(d.port, "crashy");
        wait_job(&mut w, Duration::from_secs(5));
        drop(w); // the connection closes while it holds the job
    }
    std::thread::sleep(Duration::from_millis(200));
    let list = dead(d.port, None);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].attempts, 2);
    assert_eq!(
        list[0].error,
        "the worker's connection closed while running it"
    );
    let mut w = worker(d.port, "crashy");
    assert!(grab(&mut w).is_none());
}

#[test]
fn a_foreground_job_is_not_retried() {
    let d = polygeard(&["-q", "builtin", "--retry", "fg=3:50"]);
    let mut w = worker(d.port, "fg");
    let mut c = Raw::connect(d.port);
    c.send(&submit("fg", "f1", "x", false));
    let handle = created(c.recv());
    let g = wait_job(&mut w, Duration::from_secs(5));
    w.send(&Packet::WorkFail { handle: g.handle });
    assert_eq!(
        c.recv(),
        Packet::WorkFail {
            handle: handle.into()
        }
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(grab(&mut w).is_none());
    let list = dead(d.port, None);
    assert!(list.is_empty(), "{list:?}");
    assert_eq!(metric(d.port, "jobs_retried"), 0);
}

#[test]
fn policies_are_set_listed_and_removed_at_run_time() {
    let d = polygeard(&["-q", "builtin", "--retry", "a=4"]);
    let listed = admin(d.port, async |a| {
        a.set_retry_policy(
            "b",
            RetryPolicy {
                max_attempts: 2,
                backoff: Duration::from_millis(75),
                max_delay: Duration::from_secs(9),
            },
        )
        .await?;
        a.retry_policies().await
    });
    assert_eq!(
        listed,
        vec![
            ("a".to_string(), RetryPolicy::new(4, Duration::from_secs(1))),
            (
                "b".to_string(),
                RetryPolicy {
                    max_attempts: 2,
                    backoff: Duration::from_millis(75),
                    max_delay: Duration::from_secs(9),
                }
            ),
        ]
    );
    let mut a = Raw::connect(d.port);
    assert_eq!(a.admin("retry a 0 0"), "OK\r\n");
    assert_eq!(a.admin("retry"), "b\t2\t75\t9000\n.\n");
    assert!(a.admin("retry b x 1").starts_with("ERR INVALID_ARGUMENTS"));
    assert!(a
        .admin("dead frobnicate all")
        .starts_with("ERR INVALID_ARGUMENTS"));
    // Without a policy a failed background job ends as in gearmand.
    let mut w = worker(d.port, "a");
    submit_bg(d.port, "a", "n1", "x");
    let g = wait_job(&mut w, Duration::from_secs(5));
    w.send(&Packet::WorkFail { handle: g.handle });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(a.admin("show jobs"), ".\n");
    assert!(dead(d.port, None).is_empty());
}

#[test]
fn the_dead_set_drops_its_oldest_beyond_its_limit() {
    let d = polygeard(&["-q", "builtin", "--retry", "once=1:10", "--dead-max", "2"]);
    let mut w = worker(d.port, "once");
    for i in 0..3 {
        submit_bg(d.port, "once", &format!("d{i}"), "x");
        let g = wait_job(&mut w, Duration::from_secs(5));
        w.send(&Packet::WorkFail { handle: g.handle });
        std::thread::sleep(Duration::from_millis(30));
    }
    let uniques: Vec<Bytes> = dead(d.port, None).into_iter().map(|r| r.unique).collect();
    assert_eq!(uniques, [Bytes::from("d1"), Bytes::from("d2")]);
    assert_eq!(metric(d.port, "dead_dropped"), 1);
    assert_eq!(metric(d.port, "dead_jobs"), 2);
}

/// `--dead-max-bytes` bounds the payloads kept: three 1000-byte jobs die
/// with room for two (data + unique + error "WORK_FAIL" per record).
#[test]
fn the_dead_set_drops_its_oldest_beyond_its_byte_limit() {
    let d = polygeard(&[
        "-q",
        "builtin",
        "--retry",
        "once=1:10",
        "--dead-max-bytes",
        "2100",
    ]);
    let mut w = worker(d.port, "once");
    let big = "x".repeat(1000);
    for i in 0..3 {
        submit_bg(d.port, "once", &format!("d{i}"), &big);
        let g = wait_job(&mut w, Duration::from_secs(5));
        w.send(&Packet::WorkFail { handle: g.handle });
        std::thread::sleep(Duration::from_millis(30));
    }
    let kept = dead(d.port, None);
    let uniques: Vec<Bytes> = kept.iter().map(|r| r.unique.clone()).collect();
    assert_eq!(uniques, [Bytes::from("d1"), Bytes::from("d2")]);
    assert!(kept.iter().all(|r| r.data.len() == 1000));
    assert_eq!(metric(d.port, "dead_dropped"), 1);
}

#[test]
fn kill9_during_a_backoff_keeps_the_job_its_attempts_and_the_dead_set() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.sqlite3");
    let args = [
        "-q",
        "libsqlite3",
        "--libsqlite3-db",
        db.to_str().unwrap(),
        "--retry",
        "slow=2:2000:2000",
    ];
    let mut d = polygeard(&args);
    submit_bg(d.port, "slow", "k1", "keep me");
    let mut w = worker(d.port, "slow");
    let g = wait_job(&mut w, Duration::from_secs(5));
    w.send(&Packet::WorkFail { handle: g.handle });
    let failed = Instant::now();
    // Let the queue thread commit the new run time, then crash mid-backoff.
    std::thread::sleep(Duration::from_millis(400));
    assert!(grab(&mut w).is_none());
    d.kill();
    d.restart();

    let mut w = worker(d.port, "slow");
    assert!(
        grab(&mut w).is_none(),
        "still in its backoff after the restart"
    );
    let g = wait_job(&mut w, Duration::from_secs(10));
    assert!(
        failed.elapsed() >= Duration::from_millis(2000),
        "ran {:?} after the failure",
        failed.elapsed()
    );
    assert_eq!(&g.data[..], b"keep me");
    // Its second failure is its last (the first was kept): dead, not retried.
    w.send(&Packet::WorkException {
        handle: g.handle,
        data: "second".into(),
    });
    std::thread::sleep(Duration::from_millis(400));
    let list = dead(d.port, None);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!((list[0].attempts, list[0].error.as_str()), (2, "second"));
    assert!(grab(&mut w).is_none(), "ran once after the restart");

    // The dead record survives another kill -9; the job stays gone.
    d.kill();
    d.restart();
    let after = dead(d.port, None);
    assert_eq!(after.len(), 1);
    assert_eq!(&after[0].unique[..], b"k1");
    assert_eq!(&after[0].data[..], b"keep me");
    let mut w = worker(d.port, "slow");
    assert!(grab(&mut w).is_none());

    // Requeued durably: after a crash the job is there, the record is not.
    assert_eq!(
        Raw::connect(d.port).admin("dead retry function slow"),
        "OK 1\n"
    );
    std::thread::sleep(Duration::from_millis(400));
    d.kill();
    d.restart();
    assert!(dead(d.port, None).is_empty());
    let mut w = worker(d.port, "slow");
    let g = wait_job(&mut w, Duration::from_secs(5));
    assert_eq!(&g.unique[..], b"k1");
    w.send(&Packet::WorkComplete {
        handle: g.handle,
        data: "".into(),
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(grab(&mut w).is_none());
}

fn have(prog: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Waits until `path` holds `want` (trimmed), at most 15 s.
fn wait_file(path: &std::path::Path, want: &str) {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let got = std::fs::read_to_string(path).unwrap_or_default();
        if got.trim() == want {
            return;
        }
        assert!(Instant::now() < end, "{path:?} holds {got:?}, not {want:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn gearmand_only_clients_and_workers_see_retries_as_plain_gearman() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let d = polygeard(&[
        "-q",
        "builtin",
        "--retry",
        "cflaky=3:200",
        "--retry",
        "pflaky=3:200",
        "--retry",
        "pdie=3:200",
    ]);
    let port = d.port.to_string();
    if have("gearman") {
        // The C worker fails its first run (exit 1: WORK_FAIL) and appends
        // the data to `out` on its second.
        let (cnt, out) = (dir.path().join("cnt"), dir.path().join("out"));
        let script = format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; [ $n -ge 2 ] || exit 1; cat >> {o}",
            c = cnt.display(),
            o = out.display()
        );
        let _worker = Kill(
            Command::new("gearman")
                .args(["-h", "127.0.0.1", "-p", &port, "-w", "-f", "cflaky", "--"])
                .args(["sh", "-c", &script])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let status = Command::new("gearman")
            .args(["-h", "127.0.0.1", "-p", &port, "-b", "-f", "cflaky"])
            .args(["-u", "cuniq", "--", "from-c"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .status;
        assert!(status.success());
        wait_file(&out, "from-c");
        wait_file(&cnt, "2");
    } else {
        eprintln!("gearman CLI not installed; skipping its part");
    }
    if !perl_gearman() {
        return;
    }
    let server = d.addr_string();
    let (pout, pdie) = (dir.path().join("pout"), dir.path().join("pdie"));
    // The handlers fail by returning undef (WORK_FAIL). (A `die` sends
    // WORK_EXCEPTION and then WORK_FAIL, whose JOB_NOT_FOUND error
    // Gearman::Worker then dies on: with gearmand too, retries or not.)
    let worker_src = format!(
        r#"use Gearman::Worker;
my $runs = 0;
my $w = Gearman::Worker->new(job_servers => ['{server}']);
$w->register_function(pflaky => sub {{
    $runs++; return undef if $runs < 2;
    open my $f, '>>', '{pout}'; print $f $_[0]->arg, " runs=$runs\n"; close $f; return "ok";
}});
$w->register_function(pdie => sub {{
    open my $f, '>>', '{pdie}'; print $f "ran\n"; close $f; return undef;
}});
$w->work while 1;"#,
        pout = pout.display(),
        pdie = pdie.display()
    );
    let _worker = perl(&worker_src);
    let client_src = format!(
        r#"use Gearman::Client;
my $c = Gearman::Client->new(job_servers => ['{server}']);
my $h = $c->dispatch_background(pflaky => "perl-bg");
print "bg=", ($h ? "yes" : "no"), "\n";
my $r = $c->do_task(pdie => "fg", {{ timeout => 8 }});
print "fg=", (defined $r ? "result" : "failed"), "\n";"#
    );
    let out = Command::new("perl")
        .args(["-e", &client_src])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bg=yes\n"), "{text}");
    // A foreground job fails at once, and only once.
    assert!(text.contains("fg=failed\n"), "{text}");
    wait_file(&pout, "perl-bg runs=2");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(std::fs::read_to_string(&pdie).unwrap(), "ran\n");
    assert!(dead(d.port, None).is_empty());
}

#[cfg(feature = "http")]
#[test]
fn metrics_count_the_dead_set_and_its_drops() {
    use std::io::{Read, Write};
    let http = common::free_port().to_string();
    let d = polygeard(&[
        "-q",
        "builtin",
        "--http-port",
        &http,
        "--retry",
        "m=1:10",
        "--dead-max",
        "1",
    ]);
    let mut w = worker(d.port, "m");
    for i in 0..2 {
        submit_bg(d.port, "m", &format!("m{i}"), "x");
        let g = wait_job(&mut w, Duration::from_secs(5));
        w.send(&Packet::WorkFail { handle: g.handle });
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", http.parse::<u16>().unwrap())).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    for line in [
        "polygear_dead_jobs 1\n",
        "polygear_dead_dropped_total 1\n",
        "polygear_jobs_retried_total 0\n",
    ] {
        assert!(text.contains(line), "no {line:?} in {text}");
    }
}

#[test]
fn dead_records_older_than_the_age_limit_are_dropped() {
    let d = polygeard(&[
        "-q",
        "builtin",
        "--retry",
        "old=1:10",
        "--dead-max-age",
        "1",
    ]);
    let mut w = worker(d.port, "old");
    submit_bg(d.port, "old", "o1", "x");
    let g = wait_job(&mut w, Duration::from_secs(5));
    w.send(&Packet::WorkFail { handle: g.handle });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(dead(d.port, None).len(), 1);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(dead(d.port, None).is_empty());
    assert_eq!(metric(d.port, "dead_dropped"), 1);
}

#[test]
fn a_run_over_its_can_do_timeout_uses_an_attempt() {
    let d = polygeard(&["-q", "builtin", "--retry", "slowpoke=2:50"]);
    let mut w = Raw::connect(d.port);
    w.send(&Packet::CanDoTimeout {
        function: "slowpoke".into(),
        timeout: 1,
    });
    submit_bg(d.port, "slowpoke", "t1", "x");
    // Two runs that never answer: each ends with the timeout.
    wait_job(&mut w, Duration::from_secs(5));
    wait_job(&mut w, Duration::from_secs(10));
    let end = Instant::now() + Duration::from_secs(10);
    let list = loop {
        let list = dead(d.port, None);
        if !list.is_empty() || Instant::now() > end {
            break list;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].attempts, 2);
    assert!(list[0].error.contains("timeout"), "{}", list[0].error);
    assert_eq!(metric(d.port, "jobs_retried"), 1);
}
