//! The PostgreSQL queue (`-q postgres`) against a real PostgreSQL (Debian's,
//! started once for this test binary as `nobody`, fsync on): durability
//! across kill -9, gearmand's layout both ways with the C gearmand, clear
//! errors for a bad setup, a database lost while clients submit, and the
//! takeover of a dead server's jobs by the servers sharing its table.

mod common;

use std::collections::HashSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{durable, polygeard, Raw, TestServer};
use polygear::protocol::Packet;
use polygear_test_support::postgres::Postgres;

/// A fresh database `db` on the shared server; its conninfo.
fn database(db: &str) -> String {
    let pg = Postgres::shared();
    pg.create_database(db);
    pg.conninfo(db)
}

/// polygeard's flags for the queue in `conninfo` (table `queue`) and `extra`.
fn pg_args<'a>(conninfo: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["-q", "postgres", "--libpq-conninfo", conninfo];
    a.extend_from_slice(extra);
    a
}

/// Rows of `table` in `db` (one line per row, `|` between columns).
fn rows(db: &str, sql: &str) -> Vec<String> {
    Postgres::shared()
        .psql(db, sql)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn kill9_loses_no_acknowledged_job_like_gearmand() {
    let ci = database("kill9");
    durable::kill9_loses_no_acknowledged_job(&pg_args(&ci, &["--queue-lease", "0"]));
}

#[test]
fn kill9_loses_no_acknowledged_job_with_a_lease() {
    let ci = database("kill9lease");
    durable::kill9_loses_no_acknowledged_job(&pg_args(
        &ci,
        &["--queue-lease", "5", "--server-id", "k"],
    ));
}

#[test]
fn restart_keeps_queued_jobs_and_priorities() {
    let ci = database("restart");
    durable::restart_keeps_queued_jobs_and_priorities(&pg_args(&ci, &["--server-id", "r"]));
}

/// Submits `n` background jobs (`job-0`...) and checks each is acknowledged.
fn fill(port: u16, n: usize) -> Vec<String> {
    let acked = durable::submit_until_dead(port, n);
    assert_eq!(acked.len(), n, "every submission acknowledged");
    acked
}

/// Asserts `seen` holds each of `want` exactly once.
fn exactly_once(want: &[String], seen: &[String]) {
    let set: HashSet<&String> = seen.iter().collect();
    assert_eq!(set.len(), seen.len(), "a job ran twice");
    let missing: Vec<&String> = want.iter().filter(|u| !set.contains(u)).take(5).collect();
    assert!(missing.is_empty(), "jobs lost: {missing:?}");
    assert_eq!(seen.len(), want.len(), "unexpected jobs: {seen:?}");
}

fn gearmand_on(conninfo: &str) -> Option<TestServer> {
    TestServer::gearmand(&["-q", "postgres", "--libpq-conninfo", conninfo])
}

#[test]
fn gearmand_fills_the_table_and_polygeard_runs_its_jobs() {
    let ci = database("g2p");
    let Some(mut g) = gearmand_on(&ci) else {
        eprintln!("gearmand is not installed: skipped");
        return;
    };
    let acked = fill(g.port, 300);
    g.kill();
    assert_eq!(rows("g2p", "SELECT count(*) FROM queue"), ["300"]);
    let p = polygeard(&pg_args(&ci, &["--queue-lease", "0"]));
    exactly_once(&acked, &durable::drain(p.port));
    wait_rows("g2p", 0);
}

#[test]
fn polygeard_fills_the_table_and_gearmand_runs_its_jobs() {
    let ci = database("p2g");
    let mut p = polygeard(&pg_args(&ci, &["--server-id", "p"]));
    let acked = fill(p.port, 300);
    p.kill();
    let Some(g) = gearmand_on(&ci) else {
        eprintln!("gearmand is not installed: skipped");
        return;
    };
    exactly_once(&acked, &durable::drain(g.port));
    wait_rows("p2g", 0);
}

/// Waits until the queue table of `db` holds `n` rows (deletes are
/// committed after the WORK_COMPLETE is answered).
fn wait_rows(db: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = rows(db, "SELECT count(*) FROM queue");
        if got == [n.to_string()] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "queue holds {got:?} rows, want {n}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs polygeard with `args` until it exits (at most `limit`); its exit
/// status and stderr.
fn run_to_exit(args: &[&str], limit: Duration) -> (std::process::ExitStatus, String) {
    let port = common::free_port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_polygeard"))
        .args(["-L", "127.0.0.1", "-p", &port])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("polygeard {args:?} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, err)
}

/// polygeard fails at start with one line on stderr that contains `want`.
fn fails_with(args: &[&str], want: &[&str]) {
    let start = Instant::now();
    let (status, err) = run_to_exit(args, Duration::from_secs(15));
    assert!(!status.success(), "polygeard {args:?} exited 0");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    for w in want {
        assert!(err.contains(w), "stderr {err:?} lacks {w:?}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn a_database_that_is_down_at_start_is_one_clear_line() {
    let port = common::free_port();
    let ci = format!("host=127.0.0.1 port={port} user=postgres dbname=x");
    fails_with(
        &pg_args(&ci, &[]),
        &["cannot connect to PostgreSQL at 127.0.0.1:", "refused"],
    );
}

#[test]
fn a_wrong_password_or_database_is_a_clear_error() {
    let pg = Postgres::shared();
    let ci = format!(
        "host=127.0.0.1 port={} user=postgres password=wrong dbname=postgres",
        pg.port
    );
    fails_with(&pg_args(&ci, &[]), &["password authentication failed"]);
    let ci = pg.conninfo("no_such_db");
    fails_with(
        &pg_args(&ci, &[]),
        &["database \"no_such_db\" does not exist"],
    );
}

#[test]
fn a_table_with_other_columns_is_a_clear_error() {
    let ci = database("badcols");
    let pg = Postgres::shared();
    pg.psql(
        "badcols",
        "CREATE TABLE queue (unique_key TEXT, function_name TEXT, priority TEXT)",
    );
    fails_with(
        &pg_args(&ci, &[]),
        &[
            "table queue does not have gearmand's layout",
            "column priority is text",
            "column data is missing",
            "column when_to_run is missing",
        ],
    );
    pg.psql("badcols", "CREATE TABLE nokey (unique_key VARCHAR(64), function_name VARCHAR(255), priority INTEGER, data BYTEA, when_to_run INTEGER)");
    fails_with(
        &pg_args(&ci, &["--libpq-table", "nokey"]),
        &["no UNIQUE (unique_key, function_name) constraint"],
    );
    fails_with(
        &pg_args(&ci, &["--libpq-table", "queue; DROP TABLE nokey"]),
        &["--libpq-table", "plain SQL name"],
    );
}

/// Submits one background job; true for JOB_CREATED, false for ERROR.
fn submit_bg(c: &mut Raw, unique: &str) -> bool {
    c.send(&common::submit(
        "durable",
        unique,
        &format!("payload {unique}"),
        true,
    ));
    match c.recv() {
        Packet::JobCreated { .. } => true,
        Packet::Error { .. } => false,
        p => panic!("unexpected {p:?}"),
    }
}

/// What a pipelining submitter saw: acknowledged uniques and refusals.
#[derive(Default)]
struct Submitted {
    acked: Vec<String>,
    refused: usize,
    /// `acked.len()` when PostgreSQL came back.
    acked_before_back: Option<usize>,
}

/// Pipelines background submissions (50 at a time) until `stop`, keeping
/// what was acknowledged; ERROR replies are counted, never retried.
fn submit_through(port: u16, stop: Arc<AtomicBool>, back: Arc<AtomicBool>) -> Submitted {
    let mut c = Raw::connect(port);
    let mut out = Submitted::default();
    let mut next = 0;
    while !stop.load(Ordering::SeqCst) {
        if back.load(Ordering::SeqCst) && out.acked_before_back.is_none() {
            out.acked_before_back = Some(out.acked.len());
        }
        let batch: Vec<String> = (0..50).map(|i| format!("job-{}", next + i)).collect();
        next += 50;
        for u in &batch {
            c.send(&common::submit("durable", u, &format!("payload {u}"), true));
        }
        for u in batch {
            match reply(&mut c) {
                Ok(()) => out.acked.push(u),
                Err(_) => out.refused += 1,
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    out
}

/// Completes one foreground job of `fg` on `port`.
fn foreground_works(port: u16) {
    let worker = std::thread::spawn(move || {
        let mut w = Raw::connect(port);
        w.send(&common::can_do("fg"));
        loop {
            w.send(&Packet::GrabJob);
            match w.recv() {
                Packet::JobAssign { handle, .. } => {
                    w.send(&Packet::WorkComplete {
                        handle,
                        data: "done".into(),
                    });
                    return;
                }
                Packet::NoJob => std::thread::sleep(Duration::from_millis(20)),
                p => panic!("{p:?}"),
            }
        }
    });
    let mut f = Raw::connect(port);
    f.send(&common::submit("fg", "", "x", false));
    common::created(f.recv());
    assert!(matches!(f.recv(), Packet::WorkComplete { data, .. } if &data[..] == b"done"));
    worker.join().unwrap();
}

#[test]
fn a_database_lost_while_running_refuses_background_jobs_and_recovers() {
    let mut pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE lost");
    let ci = pg.conninfo("lost");
    let p = polygeard(&pg_args(&ci, &["--queue-lease", "0"]));
    let (stop, back) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let submitter = std::thread::spawn({
        let (port, stop, back) = (p.port, stop.clone(), back.clone());
        move || submit_through(port, stop, back)
    });
    std::thread::sleep(Duration::from_millis(300));
    pg.stop();
    // Submissions go on against the dead database; foreground jobs work.
    std::thread::sleep(Duration::from_millis(500));
    foreground_works(p.port);
    pg.restart();
    back.store(true, Ordering::SeqCst);
    // Reconnecting waits out a backoff of at most 5 s.
    std::thread::sleep(Duration::from_secs(6));
    stop.store(true, Ordering::SeqCst);
    let sub = submitter.join().unwrap();
    let before = sub.acked_before_back.unwrap_or(0);
    eprintln!(
        "{} acknowledged ({before} before PostgreSQL came back), {} refused",
        sub.acked.len(),
        sub.refused
    );
    assert!(
        sub.refused > 0,
        "submissions were refused while PostgreSQL was down"
    );
    assert!(
        sub.acked.len() > before,
        "submissions succeed once PostgreSQL is back"
    );
    exactly_once(&sub.acked, &durable::drain(p.port));
}

/// `survivors` servers and A share one table with a 2 s lease; A queues
/// jobs and is killed; workers connected only to the survivors get each of
/// A's jobs exactly once within the lease and a few seconds.
fn takeover(db: &str, survivors: &[&str]) {
    takeover_after(db, survivors, "2", TestServer::kill, Duration::from_secs(8));
}

/// A stopped cleanly (SIGTERM) ends its lease: with a 6 s lease (claims
/// every 2 s) the survivor has every queued job well before the lease
/// would have run out.
#[test]
fn a_clean_stop_hands_the_queued_jobs_over_at_once() {
    let stop = |a: &mut TestServer| {
        a.signal("-TERM");
        assert!(a.wait_exit(Duration::from_secs(10)).success());
    };
    takeover_after("handover", &["b"], "6", stop, Duration::from_millis(3500));
}

fn takeover_after(
    db: &str,
    survivors: &[&str],
    lease: &str,
    stop: impl FnOnce(&mut TestServer),
    within: Duration,
) {
    let ci = database(db);
    let lease = ["--queue-lease", lease];
    let mut a = polygeard(&pg_args(&ci, &[&lease[..], &["--server-id", "a"]].concat()));
    let others: Vec<TestServer> = survivors
        .iter()
        .map(|id| polygeard(&pg_args(&ci, &[&lease[..], &["--server-id", id]].concat())))
        .collect();
    let acked = fill(a.port, 200);
    stop(&mut a);
    let killed = Instant::now();
    let deadline = killed + within;
    let total = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = others
        .iter()
        .map(|s| {
            let (port, total) = (s.port, total.clone());
            std::thread::spawn(move || durable::collect(port, 200, &total, deadline))
        })
        .collect();
    let per: Vec<Vec<String>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    eprintln!(
        "{db}: {:?} jobs per survivor, all within {:?} of the kill",
        per.iter().map(Vec::len).collect::<Vec<_>>(),
        killed.elapsed()
    );
    exactly_once(&acked, &per.concat());
    wait_rows(db, 0);
    // Nothing ran twice after the claims settled either.
    std::thread::sleep(Duration::from_millis(800));
    let late: usize = others.iter().map(|s| durable::drain(s.port).len()).sum();
    assert_eq!(late, 0, "jobs handed out again");
}

#[test]
fn a_survivor_takes_over_a_dead_servers_jobs() {
    takeover("take2", &["b"]);
}

#[test]
fn three_servers_share_a_dead_servers_jobs_exactly_once() {
    takeover("take3", &["b", "c"]);
}

/// The reply to one submission: `Ok(())` for JOB_CREATED, the error text
/// for ERROR.
fn reply(c: &mut Raw) -> Result<(), String> {
    match c.recv() {
        Packet::JobCreated { .. } => Ok(()),
        Packet::Error { text, .. } => Err(String::from_utf8_lossy(&text).into_owned()),
        p => panic!("unexpected {p:?}"),
    }
}

#[test]
fn a_job_the_table_cannot_hold_is_refused_alone() {
    let ci = database("refuse");
    // gearmand's layout with a shorter unique_key (the server itself takes
    // uniques of up to 64 bytes).
    Postgres::shared().psql(
        "refuse",
        "CREATE TABLE queue (unique_key VARCHAR(10), function_name VARCHAR(255), priority INTEGER, \
         data BYTEA, when_to_run INTEGER, UNIQUE (unique_key, function_name))",
    );
    let p = polygeard(&pg_args(&ci, &["--queue-lease", "0"]));
    // A row this server does not know of (another server's) holds "taken".
    Postgres::shared().psql(
        "refuse",
        "INSERT INTO queue (unique_key, function_name, priority, data, when_to_run) \
         VALUES ('taken', 'durable', 1, 'x', 0)",
    );
    let long = "é".repeat(11);
    let uniques: [&[u8]; 5] = [b"ok-1", b"taken", b"bad-\xff", long.as_bytes(), b"ok-2"];
    let mut c = Raw::connect(p.port);
    // Pipelined: one batch for the queue thread, as far as timing allows.
    for u in uniques {
        c.send(&Packet::SubmitJob {
            function: "durable".into(),
            unique: bytes::Bytes::copy_from_slice(u),
            data: "payload".into(),
            priority: polygear::protocol::Priority::Normal,
            background: true,
        });
    }
    let replies: Vec<Result<(), String>> = uniques.iter().map(|_| reply(&mut c)).collect();
    assert_eq!(replies[0], Ok(()));
    assert!(
        replies[1].as_ref().unwrap_err().contains("already queued"),
        "{replies:?}"
    );
    assert!(
        replies[2].as_ref().unwrap_err().contains("not valid UTF-8"),
        "{replies:?}"
    );
    assert!(
        replies[3].as_ref().unwrap_err().contains("(10 characters)"),
        "{replies:?}"
    );
    assert_eq!(replies[4], Ok(()));
    assert_eq!(
        rows("refuse", "SELECT unique_key FROM queue ORDER BY unique_key"),
        ["ok-1", "ok-2", "taken"]
    );
}

#[test]
fn a_lapsed_lease_re_reads_the_servers_own_jobs() {
    let ci = database("lapse");
    let p = polygeard(&pg_args(&ci, &["--queue-lease", "2", "--server-id", "l"]));
    let acked = fill(p.port, 50);
    // As if the server had not renewed in time (a partition).
    Postgres::shared().psql(
        "lapse",
        "UPDATE queue_polygear_leases SET lease_until = now() - interval '1 hour'",
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        rows(
            "lapse",
            "SELECT count(*) FROM queue_polygear_leases WHERE lease_until > now()"
        ),
        ["1"],
        "the lease was taken again"
    );
    exactly_once(&acked, &durable::drain(p.port));
    wait_rows("lapse", 0);
}

#[test]
fn a_row_of_this_server_it_does_not_know_is_overwritten_by_a_new_submission() {
    let ci = database("orphan");
    let p = polygeard(&pg_args(&ci, &["--queue-lease", "5", "--server-id", "o"]));
    // As left by an insert whose commit reply was lost with the connection.
    Postgres::shared().psql(
        "orphan",
        "INSERT INTO queue (unique_key, function_name, priority, data, when_to_run, polygear_owner) \
         VALUES ('orphan', 'durable', 1, 'old', 0, 'o')",
    );
    let mut c = Raw::connect(p.port);
    assert!(submit_bg(&mut c, "orphan"), "the submission is stored");
    assert_eq!(durable::drain(p.port), ["orphan"]);
    wait_rows("orphan", 0);
}

/// Two servers sharing one table fire the same per-second schedule: each
/// occurrence (`tick@<time>`) runs once, on one of them — the second
/// insert of the same unique is refused by the table, and a firing waits
/// for its insert before it is handed out.
#[test]
fn a_schedule_shared_by_two_servers_fires_each_occurrence_once() {
    let ci = database("sched2");
    let schedule = ["--schedule", "tick=* * * * * *=durable"];
    let servers: Vec<TestServer> = ["a", "b"]
        .iter()
        .map(|id| {
            polygeard(&pg_args(
                &ci,
                &[&schedule[..], &["--queue-lease", "5", "--server-id", id]].concat(),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_millis(4500);
    let total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = servers
        .iter()
        .map(|s| {
            let (port, total) = (s.port, total.clone());
            std::thread::spawn(move || durable::collect(port, usize::MAX, &total, deadline))
        })
        .collect();
    let per: Vec<Vec<String>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let seen = per.concat();
    eprintln!(
        "occurrences per server: {:?}",
        per.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let set: HashSet<&String> = seen.iter().collect();
    assert_eq!(set.len(), seen.len(), "an occurrence ran twice: {seen:?}");
    assert!(seen.len() >= 3, "the schedule fired: {seen:?}");
    assert!(seen.iter().all(|u| u.starts_with("tick@")), "{seen:?}");
}
