//! Scenario: two polygeard sharing one PostgreSQL queue table, and a network
//! partition instead of a kill. Server A runs in its own network namespace (joined to
//! the test's by a veth pair, addresses from the documentation ranges only); server B
//! and PostgreSQL run in the test's namespace. Skipped, with the reason, where network
//! namespaces are not permitted.
//!
//! Background jobs are queued on A, then A's link goes down: A is cut off from the
//! database (and from the test), but a worker connected from inside A's namespace
//! still reaches it. Expected:
//! - B claims every one of A's jobs once A's lease has expired, and B's worker runs
//!   each exactly once, within lease + a third of it + slack;
//! - A is fenced: its own worker gets no job (A forgot the jobs whose lease it lost, so
//!   none runs twice), background submissions to A are refused with ERROR while
//!   foreground jobs on A still run;
//! - after the heal A renews its lease, finds none of the old rows still its own (B
//!   has them), and accepts and runs new background jobs again.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use polygear::protocol::Packet;
use polygear_chaos::netns::{connect_in, NetLab};
use polygear_chaos::{figure, ms, skip, Daemon, Violations};
use polygear_test_support::blocking::{can_do, created, submit, Raw};
use polygear_test_support::postgres::Postgres;

const SCENARIO: &str = "queue_partition";
const FUNCTION: &str = "partitioned";
const LEASE: Duration = Duration::from_secs(2);
const JOBS: usize = 200;

/// Grabs on `w` until `want` jobs arrived or `limit` passed; completes each and
/// counts runs by unique.
fn run_jobs(w: &mut Raw, runs: &mut HashMap<String, u32>, want: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut got = 0;
    while got < want && Instant::now() < deadline {
        w.send(&Packet::GrabJobUniq);
        match w.recv() {
            Packet::JobAssignUniq { handle, unique, .. } => {
                *runs
                    .entry(String::from_utf8_lossy(&unique).into_owned())
                    .or_default() += 1;
                got += 1;
                w.send(&Packet::WorkComplete {
                    handle,
                    data: "".into(),
                });
            }
            Packet::NoJob => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("worker got {other:?}"),
        }
    }
}

/// Whether a GRAB on `w` finds no job.
fn no_job(w: &mut Raw) -> Result<(), String> {
    w.send(&Packet::GrabJobUniq);
    match w.recv() {
        Packet::NoJob => Ok(()),
        Packet::JobAssignUniq { unique, .. } => Err(format!(
            "the fenced server handed out job {}",
            String::from_utf8_lossy(&unique)
        )),
        other => Err(format!("unexpected {other:?}")),
    }
}

#[test]
fn partitioned_server_is_fenced_and_its_jobs_run_once_elsewhere() {
    let lab = match NetLab::new(1) {
        Ok(lab) => lab,
        Err(e) => return skip(SCENARIO, e),
    };
    let site = lab.sites[0].clone();
    if !Postgres::available() {
        return skip(SCENARIO, "PostgreSQL's server binaries are not installed");
    }
    let pg = Postgres::start_listening(&[site.host_ip.as_str()]);
    let dir = tempfile::tempdir().unwrap();
    let table = "partition_queue";
    let lease = LEASE.as_secs().to_string();
    let conninfo_a = pg.conninfo_at(&site.host_ip, "postgres");
    let conninfo_b = pg.conninfo_at("127.0.0.1", "postgres");
    let shared = |conninfo: &str, id: &str| -> Vec<String> {
        [
            "-q",
            "postgres",
            "--libpq-conninfo",
            conninfo,
            "--libpq-table",
            table,
            "--queue-lease",
            &lease,
            "--server-id",
            id,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args_a = shared(&conninfo_a, "a");
    let args_b = shared(&conninfo_b, "b");
    let args_a: Vec<&str> = args_a.iter().map(String::as_str).collect();
    let args_b: Vec<&str> = args_b.iter().map(String::as_str).collect();
    let mut a = Daemon::new(
        "polygeard A",
        site.exec_prefix(),
        &site.ns_ip,
        4730,
        &args_a,
        "INFO",
        &dir.path().join("a.log"),
    );
    a.start();
    let b = Daemon::loopback("polygeard B", &args_b, "INFO", &dir.path().join("b.log"));
    let a_addr: SocketAddr = format!("{}:{}", site.ns_ip, a.port).parse().unwrap();
    let inside_a = || Raw::from_stream(connect_in(&site.ns, a_addr).expect("connect inside A"));
    let v = Violations::new();

    // Jobs queued on A.
    let mut c = Raw::from_stream(TcpStream::connect(a_addr).unwrap());
    for i in 0..JOBS {
        c.send(&submit(FUNCTION, &format!("job-{i}"), "x", true));
        created(c.recv());
    }
    drop(c);
    // A worker of A's own, connected from inside A's namespace: it keeps reaching A.
    let mut wa = inside_a();
    wa.send(&can_do(FUNCTION));
    let mut client_a = inside_a();

    lab.partition(0);
    let cut = Instant::now();
    let mut runs: HashMap<String, u32> = HashMap::new();
    let mut wb = Raw::connect(b.port);
    wb.send(&can_do(FUNCTION));
    run_jobs(
        &mut wb,
        &mut runs,
        JOBS,
        LEASE * 3 + Duration::from_secs(15),
    );
    let took = cut.elapsed();
    v.check(runs.len() == JOBS, || {
        format!(
            "B ran {} of A's {JOBS} jobs after the partition",
            runs.len()
        )
    });
    v.check(took <= LEASE + LEASE / 3 + Duration::from_secs(5), || {
        format!("takeover took {}", ms(took))
    });

    // A is fenced: no stored job for its worker, background submissions refused,
    // foreground jobs still served.
    if let Err(e) = no_job(&mut wa) {
        v.add(e);
    }
    client_a.send(&submit(FUNCTION, "bg-while-cut", "x", true));
    match client_a.recv() {
        Packet::Error { code, .. } => v.check(&code[..] == b"QUEUE_ERROR", || {
            format!("a background submit to the fenced server got ERROR {code:?}")
        }),
        other => v.add(format!(
            "a background submit to the fenced server got {other:?}, not ERROR"
        )),
    }
    client_a.send(&submit(FUNCTION, "fg-while-cut", "x", false));
    created(client_a.recv());
    wa.send(&Packet::GrabJobUniq);
    match wa.recv() {
        Packet::JobAssignUniq { handle, unique, .. } if &unique[..] == b"fg-while-cut" => {
            wa.send(&Packet::WorkComplete {
                handle,
                data: "done".into(),
            });
            match client_a.recv() {
                Packet::WorkComplete { data, .. } => v.check(&data[..] == b"done", || {
                    "the foreground result was garbled".into()
                }),
                other => v.add(format!("the foreground client got {other:?}")),
            }
        }
        other => v.add(format!(
            "the foreground job on the fenced server was not handed out: {other:?}"
        )),
    }

    // Heal: A renews its lease and takes background jobs again; none of the old
    // ones comes back.
    lab.heal(0);
    let healed = Instant::now();
    let mut accepted = false;
    while !accepted && healed.elapsed() < Duration::from_secs(30) {
        client_a.send(&submit(FUNCTION, "bg-after-heal", "after", true));
        match client_a.recv() {
            Packet::JobCreated { .. } => accepted = true,
            Packet::Error { .. } => std::thread::sleep(Duration::from_millis(250)),
            other => panic!("background submit after the heal got {other:?}"),
        }
    }
    v.check(accepted, || {
        "A did not accept background jobs within 30 s of the heal".into()
    });
    let mut after: HashMap<String, u32> = HashMap::new();
    run_jobs(&mut wa, &mut after, 2, Duration::from_secs(3));
    v.check(after.keys().all(|u| u == "bg-after-heal"), || {
        format!("after the heal A handed out {after:?}")
    });
    v.check(after.get("bg-after-heal") == Some(&1), || {
        "the job submitted after the heal did not run on A".into()
    });
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n > 1).take(5).collect();
    v.check(twice.is_empty(), || format!("jobs run twice: {twice:?}"));
    figure(
        SCENARIO,
        format!(
            "{} jobs of the partitioned server run once each on the survivor, {} after the cut (lease {}); fenced: {}",
            runs.len(),
            ms(took),
            ms(LEASE),
            if v.is_empty() { "yes" } else { "NO" }
        ),
    );
    drop(b);
    a.kill();
    v.finish(SCENARIO);
}
