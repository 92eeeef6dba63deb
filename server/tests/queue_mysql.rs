//! The MySQL/MariaDB queue (`-q mysql`) against a real MariaDB (started once
//! for this test binary by tests/support's `mariadb`; each test has its own
//! database): durability across `kill -9`, gearmand's table layout both
//! ways, duplicate keys, bad settings, a database lost while clients submit,
//! and servers sharing one table taking over a dead one's jobs.
#![cfg(feature = "mysql")]

mod common;

use std::collections::HashSet;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use common::{durable, strs};
use polygear::protocol::{Magic, Packet, Priority};
use polygear_test_support::mariadb::{self, MariaDb};

/// The shared MariaDB with a fresh database `db`.
fn maria(db: &str) -> &'static MariaDb {
    let m = mariadb::shared()
        .expect("MariaDB is not installed (Debian: apt-get install mariadb-server)");
    m.fresh_database(db);
    m
}

/// polygeard flags for the MySQL queue on `port`, database `db`, table
/// `table`, plus `extra`.
fn queue_args(port: u16, db: &str, table: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "-q",
        "mysql",
        "--mysql-host",
        "127.0.0.1",
        "--mysql-port",
        &port.to_string(),
        "--mysql-user",
        MariaDb::USER,
        "--mysql-password",
        MariaDb::PASSWORD,
        "--mysql-db",
        db,
        "--mysql-table",
        table,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Queues `n` normal-priority background jobs `<prefix>-<i>` on `c`,
/// pipelined; asserts each JOB_CREATED; their uniques.
fn queue_jobs(c: &mut Raw, prefix: &str, n: usize) -> Vec<String> {
    let uniques: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let packets: Vec<Packet> = uniques
        .iter()
        .map(|u| bg(u.as_bytes(), Priority::Normal))
        .collect();
    for r in pipeline(c, &packets) {
        created(r);
    }
    uniques
}

/// Runs SQL in database `db`; the tab-separated output.
fn sql(m: &MariaDb, db: &str, q: &str) -> String {
    m.sql(&format!("USE `{db}`; {q}"))
        .unwrap_or_else(|e| panic!("{q}: {e}"))
}

/// Background submission of `unique` (data `payload UNIQUE`) to "durable".
fn bg(unique: &[u8], prio: Priority) -> Packet {
    let mut data = b"payload ".to_vec();
    data.extend_from_slice(unique);
    Packet::SubmitJob {
        function: "durable".into(),
        unique: unique.to_vec().into(),
        data: data.into(),
        priority: prio,
        background: true,
    }
}

/// Sends all `packets` in one write and reads one reply each.
fn pipeline(c: &mut Raw, packets: &[Packet]) -> Vec<Packet> {
    let mut b = BytesMut::new();
    for p in packets {
        p.encode(Magic::Req, &mut b).unwrap();
    }
    c.send_raw(&b);
    packets.iter().map(|_| c.recv()).collect()
}

fn is_queue_error(p: &Packet) -> bool {
    matches!(p, Packet::Error { code, .. } if &code[..] == b"QUEUE_ERROR")
}

/// Polls `cond` until it holds (up to 10 s).
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls until `q` returns `want` (up to 10 s).
fn wait_sql(m: &MariaDb, db: &str, q: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = sql(m, db, q);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{q}: {got:?}, want {want:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kill9_loses_no_acknowledged_job_and_runs_each_once() {
    let m = maria("kill9");
    let args = queue_args(m.port, "kill9", "gearman_queue", &[]);
    durable::kill9_loses_no_acknowledged_job(&strs(&args));
}

#[test]
fn restart_keeps_queued_jobs_and_priorities() {
    let m = maria("restart");
    let args = queue_args(m.port, "restart", "gearman_queue", &[]);
    durable::restart_keeps_queued_jobs_and_priorities(&strs(&args));
}

/// A table made with gearmand's schema (VARCHAR keys) and rows as gearmand
/// writes them: polygeard runs each job once, by priority, and the rows it
/// writes have gearmand's columns and priority values.
#[test]
fn gearmand_table_and_rows_are_interchangeable() {
    let m = maria("gearmand_layout");
    let db = "gearmand_layout";
    sql(
        m,
        db,
        "CREATE TABLE gearman_queue(unique_key VARCHAR(64), function_name VARCHAR(255), \
         priority INT, data LONGBLOB, when_to_run INT, unique key (unique_key, function_name)); \
         INSERT INTO gearman_queue (unique_key, function_name, priority, data, when_to_run) VALUES \
         ('g-low', 'durable', 2, 'payload g-low', 0), \
         ('g-high', 'durable', 0, 'payload g-high', 0), \
         ('g-normal', 'durable', 1, 'payload g-normal', 0)",
    );
    let d = polygeard(&strs(&queue_args(m.port, db, "gearman_queue", &[])));
    assert_eq!(durable::drain(d.port), ["g-high", "g-normal", "g-low"]);
    wait_sql(m, db, "SELECT COUNT(*) FROM gearman_queue", "0\n");

    let mut c = Raw::connect(d.port);
    for (u, p) in [("p-low", Priority::Low), ("p-high", Priority::High)] {
        created(pipeline(&mut c, &[bg(u.as_bytes(), p)]).remove(0));
    }
    c.send(&submit("durable", "fg", "payload fg", false));
    created(c.recv());
    assert_eq!(
        sql(
            m,
            db,
            "SELECT unique_key, function_name, priority, data, when_to_run \
             FROM gearman_queue ORDER BY unique_key"
        ),
        "p-high\tdurable\t0\tpayload p-high\t0\np-low\tdurable\t2\tpayload p-low\t0\n",
        "rows as gearmand writes them; foreground jobs are not stored"
    );
    // The VARCHAR columns compare by collation (case-insensitive): a unique
    // differing only in case cannot get a row of its own and is refused.
    let replies = pipeline(
        &mut c,
        &[bg(b"Case", Priority::Normal), bg(b"case", Priority::Normal)],
    );
    created(replies[0].clone());
    assert!(is_queue_error(&replies[1]), "{:?}", replies[1]);
    // Not UTF-8: refused by the VARCHAR table, the connection stays usable.
    let replies = pipeline(&mut c, &[bg(b"\xff\xfe", Priority::Normal)]);
    assert!(is_queue_error(&replies[0]), "{:?}", replies[0]);
    assert_eq!(durable::drain(d.port), ["p-high", "fg", "Case", "p-low"]);
    wait_sql(m, db, "SELECT COUNT(*) FROM gearman_queue", "0\n");
}

/// A row left behind under a job's key is replaced (gearmand fails there);
/// with a shared table this server's and no server's rows are replaced,
/// another live server's row is kept and only that one submission is
/// refused. Keys are stored byte for byte.
#[test]
fn duplicate_keys_replace_own_rows_and_refuse_others() {
    let m = maria("dups");
    let db = "dups";
    let solo = ["--queue-lease", "0"];
    let d = polygeard(&strs(&queue_args(m.port, db, "gearman_queue", &solo)));
    sql(
        m,
        db,
        "INSERT INTO gearman_queue (unique_key, function_name, priority, data, when_to_run) \
         VALUES ('left', 'durable', 1, 'stale', 0)",
    );
    let mut c = Raw::connect(d.port);
    let replies = pipeline(
        &mut c,
        &[
            bg(b"left", Priority::Normal),
            bg(b"\xff\xfe-bin", Priority::High),
        ],
    );
    for r in replies {
        created(r);
    }
    assert_eq!(
        sql(
            m,
            db,
            "SELECT HEX(unique_key), priority, HEX(data) FROM gearman_queue ORDER BY unique_key"
        ),
        format!(
            "6C656674\t1\t{}\nFFFE2D62696E\t0\t{}\n",
            hexs(b"payload left"),
            hexs(b"payload \xff\xfe-bin")
        )
    );
    drop(d);

    // Shared: a live server "other" holds 'taken'.
    let db = "dups_shared";
    m.fresh_database(db);
    let lease = ["--queue-lease", "30", "--server-id", "a"];
    let d = polygeard(&strs(&queue_args(m.port, db, "gearman_queue", &lease)));
    sql(
        m,
        db,
        "INSERT INTO gearman_queue_polygear_leases VALUES ('other', NOW(3) + INTERVAL 1 HOUR); \
         INSERT INTO gearman_queue (unique_key, function_name, priority, data, when_to_run, polygear_owner) \
         VALUES ('taken', 'durable', 1, 'theirs', 0, 'other'), ('mine', 'durable', 1, 'stale', 0, 'a'), \
         ('orphan', 'durable', 1, 'stale', 0, NULL)",
    );
    let mut c = Raw::connect(d.port);
    let replies = pipeline(
        &mut c,
        &[
            bg(b"free1", Priority::Normal),
            bg(b"taken", Priority::Normal),
            bg(b"mine", Priority::Normal),
            bg(b"orphan", Priority::Normal),
            bg(b"free2", Priority::Normal),
        ],
    );
    created(replies[0].clone());
    match &replies[1] {
        Packet::Error { code, text } => {
            assert_eq!(&code[..], b"QUEUE_ERROR");
            let text = String::from_utf8_lossy(text);
            assert!(text.contains("other"), "{text}");
        }
        p => panic!("expected a refusal, got {p:?}"),
    }
    for r in &replies[2..] {
        created(r.clone());
    }
    assert_eq!(
        sql(
            m,
            db,
            "SELECT unique_key, data, polygear_owner FROM gearman_queue ORDER BY unique_key"
        ),
        "free1\tpayload free1\ta\nfree2\tpayload free2\ta\nmine\tpayload mine\ta\n\
         orphan\tpayload orphan\ta\ntaken\ttheirs\tother\n"
    );
    let mut ran = durable::drain(d.port);
    ran.sort();
    assert_eq!(ran, ["free1", "free2", "mine", "orphan"]);
    wait_sql(m, db, "SELECT unique_key FROM gearman_queue", "taken\n");
}

/// A job the table cannot hold (here a 4-byte character in a utf8mb3
/// VARCHAR key) fails its batch; the batch is stored again job by job and
/// only that job is refused.
#[test]
fn a_job_the_table_cannot_hold_is_refused_alone() {
    let db = "charset";
    let m = maria(db);
    sql(
        m,
        db,
        "CREATE TABLE gearman_queue(unique_key VARCHAR(64), function_name VARCHAR(255), \
         priority INT, data LONGBLOB, when_to_run INT, unique key (unique_key, function_name)) \
         DEFAULT CHARSET=utf8mb3",
    );
    let d = polygeard(&strs(&queue_args(m.port, db, "gearman_queue", &[])));
    let mut c = Raw::connect(d.port);
    let replies = pipeline(
        &mut c,
        &[
            bg(b"ok-1", Priority::Normal),
            bg("smile-\u{1F600}".as_bytes(), Priority::Normal),
            bg(b"ok-2", Priority::Normal),
        ],
    );
    created(replies[0].clone());
    match &replies[1] {
        Packet::Error { code, text } => {
            assert_eq!(&code[..], b"QUEUE_ERROR");
            assert!(String::from_utf8_lossy(text).contains("1366"), "{text:?}");
        }
        p => panic!("expected a refusal, got {p:?}"),
    }
    created(replies[2].clone());
    assert_eq!(
        sql(
            m,
            db,
            "SELECT unique_key FROM gearman_queue ORDER BY unique_key"
        ),
        "ok-1\nok-2\n"
    );
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Runs polygeard expecting it to fail at start; its stderr.
fn fails_to_start(args: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_polygeard"))
        .args(["-L", "127.0.0.1", "-p", &free_port().to_string()])
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "polygeard started: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn bad_settings_fail_at_start_with_clear_errors() {
    let m = maria("bad");
    let db = "bad";
    let down = fails_to_start(&queue_args(free_port(), db, "q", &[]));
    assert!(down.contains("Connection refused"), "{down}");
    let mut wrong = queue_args(m.port, db, "q", &[]);
    let pw = wrong.iter().position(|a| a == MariaDb::PASSWORD).unwrap();
    wrong[pw] = "wrong".into();
    let denied = fails_to_start(&wrong);
    assert!(denied.contains("Access denied"), "{denied}");
    let nodb = fails_to_start(&queue_args(m.port, "no_such_db", "q", &[]));
    assert!(nodb.contains("Unknown database 'no_such_db'"), "{nodb}");
    sql(
        m,
        db,
        "CREATE TABLE cols (unique_key VARCHAR(64), function_name VARCHAR(255), prio INT, \
         data LONGBLOB, when_to_run VARCHAR(10), UNIQUE KEY (unique_key, function_name)); \
         CREATE TABLE nokey (unique_key VARCHAR(64), function_name VARCHAR(255), priority INT, \
         data LONGBLOB, when_to_run INT)",
    );
    let cols = fails_to_start(&queue_args(m.port, db, "cols", &[]));
    assert!(
        cols.contains("missing column priority") && cols.contains("column when_to_run is varchar"),
        "{cols}"
    );
    let nokey = fails_to_start(&queue_args(m.port, db, "nokey", &[]));
    assert!(
        nokey.contains("UNIQUE KEY (unique_key, function_name)"),
        "{nokey}"
    );
}

/// A TCP relay to MariaDB that can be cut (connections reset, new ones
/// closed at once) and restored: the database "goes away" for polygeard only.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(backend: u16) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (up2, conns2) = (up.clone(), conns.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                if !up2.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(b) = TcpStream::connect(("127.0.0.1", backend)) else {
                    continue;
                };
                let mut list = conns2.lock().unwrap();
                list.push(s.try_clone().unwrap());
                list.push(b.try_clone().unwrap());
                for (mut from, mut to) in [(s.try_clone().unwrap(), b.try_clone().unwrap()), (b, s)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, up, conns }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Outcomes of background submissions: acknowledged and refused uniques.
#[derive(Default)]
struct Outcomes {
    acked: Vec<String>,
    refused: Vec<String>,
}

/// Pipelines background submissions of 20 until `stop`.
fn submit_until(port: u16, stop: Arc<AtomicBool>, out: Arc<Mutex<Outcomes>>) {
    let mut c = Raw::connect(port);
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let uniques: Vec<String> = (0..20).map(|i| format!("s-{}", n + i)).collect();
        n += 20;
        let packets: Vec<Packet> = uniques
            .iter()
            .map(|u| bg(u.as_bytes(), Priority::Normal))
            .collect();
        let replies = pipeline(&mut c, &packets);
        let mut o = out.lock().unwrap();
        for (u, r) in uniques.into_iter().zip(replies) {
            match r {
                Packet::JobCreated { .. } => o.acked.push(u),
                ref e if is_queue_error(e) => o.refused.push(u),
                p => panic!("{p:?}"),
            }
        }
        drop(o);
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A foreground job runs while the database is away.
fn foreground_job_works(port: u16) {
    let mut w = Raw::connect(port);
    w.send(&can_do("fg"));
    let mut c = Raw::connect(port);
    c.send(&submit("fg", "", "hello", false));
    let handle = created(c.recv());
    w.send(&Packet::GrabJob);
    match w.recv() {
        Packet::JobAssign { handle: h, .. } => {
            assert_eq!(&h[..], handle.as_bytes());
            w.send(&Packet::WorkComplete {
                handle: h,
                data: "done".into(),
            });
        }
        p => panic!("{p:?}"),
    }
    match c.recv() {
        Packet::WorkComplete { data, .. } => assert_eq!(&data[..], b"done"),
        p => panic!("{p:?}"),
    }
}

/// The database goes away while a client pipelines background jobs (its
/// connections killed, then unreachable): submissions get ERROR, never
/// JOB_CREATED for a job not stored; foreground jobs work; once the database
/// is back submissions succeed again, and after a `kill -9` and restart every
/// acknowledged job is there.
#[test]
fn database_lost_while_running() {
    let m = maria("lost");
    let db = "lost";
    let relay = Relay::start(m.port);
    let mut d = polygeard(&strs(&queue_args(relay.port, db, "gearman_queue", &[])));
    let port = d.port;
    let o = submit_through(port, |counts| {
        std::thread::sleep(Duration::from_millis(300));
        // Its connection killed: polygeard reconnects at once.
        for id in sql(
            m,
            db,
            "SELECT ID FROM information_schema.PROCESSLIST \
             WHERE DB = 'lost' AND ID <> CONNECTION_ID()",
        )
        .lines()
        {
            let _ = m.sql(&format!("KILL CONNECTION {id}"));
        }
        let before = counts().0;
        wait_for("submissions go on after KILL", || counts().0 > before + 100);
        assert_eq!(counts().1, 0, "KILL refused jobs");

        // Unreachable.
        relay.cut();
        std::thread::sleep(Duration::from_millis(200));
        let refused = counts().1;
        wait_for("submissions are refused while the database is away", || {
            counts().1 > refused + 100
        });
        foreground_job_works(port);
        relay.restore();
    });
    restart_and_check(&mut d, &o);
}

/// Submits from a thread until `outage` (run meanwhile) returns and then
/// 100 more jobs are acknowledged; the outcomes.
fn submit_through(port: u16, outage: impl FnOnce(&dyn Fn() -> (usize, usize))) -> Outcomes {
    let stop = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Mutex::new(Outcomes::default()));
    let submitter = {
        let (stop, out) = (stop.clone(), out.clone());
        std::thread::spawn(move || submit_until(port, stop, out))
    };
    let counts = || {
        let o = out.lock().unwrap();
        (o.acked.len(), o.refused.len())
    };
    outage(&counts);
    let back = counts().0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while counts().0 < back + 100 {
        assert!(Instant::now() < deadline, "submissions succeed again");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    submitter.join().unwrap();
    let o = std::mem::take(&mut *out.lock().unwrap());
    eprintln!(
        "{} acknowledged, {} refused",
        o.acked.len(),
        o.refused.len()
    );
    o
}

/// `kill -9` and restart `d`: every acknowledged job runs once, and nothing
/// else but jobs that were refused (a refused job is normally not stored;
/// one whose COMMIT went through just as the connection broke may be).
fn restart_and_check(d: &mut TestServer, o: &Outcomes) {
    d.kill();
    d.restart();
    let seen = durable::drain(d.port);
    let seen_set: HashSet<&String> = seen.iter().collect();
    assert_eq!(seen_set.len(), seen.len(), "no job ran twice");
    let lost: Vec<&String> = o.acked.iter().filter(|u| !seen_set.contains(u)).collect();
    assert!(lost.is_empty(), "acknowledged jobs lost: {lost:?}");
    let acked: HashSet<&String> = o.acked.iter().collect();
    let refused: HashSet<&String> = o.refused.iter().collect();
    for u in &seen {
        assert!(acked.contains(u) || refused.contains(u), "unknown job {u}");
    }
}

/// mariadbd crashes (SIGKILL) while a client pipelines background jobs and
/// comes back: submissions are refused meanwhile, then succeed, and every
/// job acknowledged before or after the crash is there.
#[test]
fn database_crash_and_restart() {
    let m = MariaDb::start();
    let db = "crash";
    m.fresh_database(db);
    let mut d = polygeard(&strs(&queue_args(m.port, db, "gearman_queue", &[])));
    let o = submit_through(d.port, |counts| {
        std::thread::sleep(Duration::from_millis(300));
        m.crash();
        std::thread::sleep(Duration::from_millis(200));
        let refused = counts().1;
        wait_for("submissions are refused while mariadbd is down", || {
            counts().1 > refused + 100
        });
        m.up();
    });
    restart_and_check(&mut d, &o);
}

/// Servers `ids` share one table with a 2 s lease; jobs queued on the first
/// one reach workers connected only to the others after it is killed, each
/// exactly once.
fn takeover(db: &str, ids: &[&str], jobs: usize) {
    takeover_after(
        db,
        ids,
        jobs,
        "2",
        TestServer::kill,
        Duration::from_secs(2 + 6),
    );
}

/// The first server queues `jobs` and is stopped by `stop`; the others'
/// workers must have each of them exactly once `within` that.
fn takeover_after(
    db: &str,
    ids: &[&str],
    jobs: usize,
    lease: &str,
    stop: impl FnOnce(&mut TestServer),
    within: Duration,
) {
    let m = maria(db);
    let mut servers: Vec<TestServer> = ids
        .iter()
        .map(|id| {
            let lease = ["--queue-lease", lease, "--server-id", id];
            polygeard(&strs(&queue_args(m.port, db, "gearman_queue", &lease)))
        })
        .collect();
    let uniques = queue_jobs(&mut Raw::connect(servers[0].port), "t", jobs);
    stop(&mut servers[0]);
    let killed = Instant::now();
    let limit = killed + within;
    let total = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = servers[1..]
        .iter()
        .map(|s| {
            let (port, total) = (s.port, total.clone());
            std::thread::spawn(move || durable::collect(port, jobs, &total, limit))
        })
        .collect();
    let got: Vec<Vec<String>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    eprintln!(
        "{jobs} jobs taken over in {:?}: {:?} per survivor",
        killed.elapsed(),
        got.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let all: Vec<&String> = got.iter().flatten().collect();
    let set: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(set.len(), all.len(), "a job ran twice");
    let missing: Vec<&String> = uniques.iter().filter(|u| !set.contains(u)).collect();
    assert!(missing.is_empty(), "not taken over in time: {missing:?}");
    wait_sql(m, db, "SELECT COUNT(*) FROM gearman_queue", "0\n");
}

#[test]
fn takeover_by_one_survivor() {
    takeover("takeover2", &["a", "b"], 40);
}

#[test]
fn takeover_by_two_survivors_each_job_once() {
    takeover("takeover3", &["a", "b", "c"], 60);
}

/// A clean stop (SIGTERM) ends the lease: with a 6 s lease (claims every
/// 2 s) the survivor has every job well before the lease would run out.
#[test]
fn a_clean_stop_hands_the_queued_jobs_over_at_once() {
    let stop = |a: &mut TestServer| {
        a.signal("-TERM");
        assert!(a.wait_exit(Duration::from_secs(10)).success());
    };
    takeover_after(
        "handover",
        &["a", "b"],
        40,
        "6",
        stop,
        Duration::from_millis(3500),
    );
}

/// Grabs one "durable" job from `w` and completes it; its unique, or
/// `None` on NO_JOB.
fn grab_one(w: &mut Raw) -> Option<String> {
    w.send(&Packet::GrabJobUniq);
    match w.recv() {
        Packet::JobAssignUniq { handle, unique, .. } => {
            w.send(&Packet::WorkComplete {
                handle,
                data: "".into(),
            });
            Some(String::from_utf8(unique.to_vec()).unwrap())
        }
        Packet::NoJob => None,
        p => panic!("{p:?}"),
    }
}

/// A server cut off from the database past its lease stops handing out its
/// stored jobs and refuses background submissions; a survivor takes the jobs
/// over; once the database is back the cut-off server renews its lease,
/// re-reads what is still its own (nothing) and stores jobs again.
#[test]
fn partitioned_server_is_fenced_and_its_jobs_taken_over() {
    let db = "partition";
    let m = maria(db);
    let relay = Relay::start(m.port);
    let lease = |id: &'static str| ["--queue-lease", "2", "--server-id", id];
    let a = polygeard(&strs(&queue_args(
        relay.port,
        db,
        "gearman_queue",
        &lease("a"),
    )));
    let b = polygeard(&strs(&queue_args(m.port, db, "gearman_queue", &lease("b"))));
    let mut c = Raw::connect(a.port);
    let uniques = queue_jobs(&mut c, "p", 30);
    relay.cut();
    let cut = Instant::now();
    // Its last renewal was at most lease/3 before the cut; it fences itself
    // 90% of the lease after that renewal.
    std::thread::sleep(Duration::from_millis(3000));
    let mut wa = Raw::connect(a.port);
    wa.send(&can_do("durable"));
    assert_eq!(grab_one(&mut wa), None, "a fenced server hands out nothing");
    let refused = pipeline(&mut c, &[bg(b"while-cut", Priority::Normal)]);
    assert!(is_queue_error(&refused[0]), "{:?}", refused[0]);

    let total = AtomicUsize::new(0);
    let mut got = durable::collect(b.port, 30, &total, cut + Duration::from_secs(8));
    eprintln!("taken over {:?} after the cut", cut.elapsed());
    got.sort();
    let mut want = uniques.clone();
    want.sort();
    assert_eq!(got, want, "the survivor ran each job once");

    relay.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        n += 1;
        let u = format!("after-{n}");
        if let Packet::JobCreated { .. } =
            pipeline(&mut c, &[bg(u.as_bytes(), Priority::Normal)])[0]
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lease is renewed once the database is back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(grab_one(&mut wa), Some(format!("after-{n}")));
    assert_eq!(
        grab_one(&mut wa),
        None,
        "none of the taken-over jobs came back"
    );
    wait_sql(m, db, "SELECT COUNT(*) FROM gearman_queue", "0\n");
}

/// Two servers sharing one table fire the same per-second schedule: each
/// occurrence (`tick@<time>`) runs once, on the server that claimed it first
/// in `<table>_polygear_firings`.
#[test]
fn a_schedule_shared_by_two_servers_fires_each_occurrence_once() {
    let db = "sched2";
    let m = maria(db);
    let servers: Vec<TestServer> = ["a", "b"]
        .iter()
        .map(|id| {
            let extra = [
                "--queue-lease",
                "5",
                "--server-id",
                id,
                "--schedule",
                "tick=* * * * * *=durable",
            ];
            polygeard(&strs(&queue_args(m.port, db, "gearman_queue", &extra)))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_millis(4500);
    let total = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = servers
        .iter()
        .map(|s| {
            let (port, total) = (s.port, total.clone());
            std::thread::spawn(move || durable::collect(port, usize::MAX, &total, deadline))
        })
        .collect();
    let seen: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let set: HashSet<&String> = seen.iter().collect();
    assert_eq!(set.len(), seen.len(), "an occurrence ran twice: {seen:?}");
    assert!(seen.len() >= 3, "the schedule fired: {seen:?}");
    assert!(seen.iter().all(|u| u.starts_with("tick@")), "{seen:?}");
}
