//! Periodic jobs against the real polygeard: schedules added by the admin
//! `schedule` commands and by `--schedule`, fired as ordinary background
//! jobs with unique `NAME@<occurrence>`, and once per period across a
//! `kill -9` and restart on the SQLite queue.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{can_do, polygeard, Raw};
use polygear::protocol::Packet;
use polygear::{Admin, Error};

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The occurrence times of the `name@T` uniques in `show unique jobs`.
fn fired(a: &mut Raw, name: &str) -> Vec<i64> {
    let prefix = format!("{name}@");
    a.admin("show unique jobs")
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|t| t.parse().unwrap())
        .collect()
}

/// Polls until `pred` holds for the firings of `name` (10 s at most).
fn wait_fired(a: &mut Raw, name: &str, pred: impl Fn(&[i64]) -> bool) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let f = fired(a, name);
        if pred(&f) {
            return f;
        }
        assert!(Instant::now() < deadline, "firings of {name}: {f:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_admin_schedule_fires_background_jobs_each_second() {
    let s = polygeard(&["-q", "builtin"]);
    let mut a = Raw::connect(s.port);
    assert_eq!(
        a.admin("schedule add tick beat * * * * * * -- hello world"),
        "OK\r\n"
    );
    let mut w = Raw::connect(s.port);
    w.send(&can_do("beat"));
    let mut seen = Vec::new();
    while seen.len() < 2 {
        w.send(&Packet::GrabJobUniq);
        match w.recv() {
            Packet::JobAssignUniq {
                handle,
                unique,
                data,
                ..
            } => {
                assert_eq!(&data[..], b"hello world");
                let u = String::from_utf8(unique.to_vec()).unwrap();
                let t: i64 = u
                    .strip_prefix("tick@")
                    .expect("unique NAME@T")
                    .parse()
                    .unwrap();
                assert!((t - unix_now()).abs() <= 2, "{u}");
                seen.push(t);
                w.send(&Packet::WorkComplete {
                    handle,
                    data: "".into(),
                });
            }
            Packet::NoJob => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(seen[1] > seen[0], "{seen:?}");
    let list = a.admin("schedule list");
    let row: Vec<&str> = list.lines().next().unwrap().split('\t').collect();
    assert_eq!(row[..3], ["tick", "beat", "* * * * * *"], "{list:?}");
    assert!(row[3].parse::<i64>().unwrap() >= seen[1], "{list:?}");
    assert!(row[4].parse::<i64>().unwrap() > row[3].parse::<i64>().unwrap());
    assert_eq!(row[5], "hello world");

    assert_eq!(a.admin("schedule delete tick"), "OK\r\n");
    assert_eq!(a.admin("schedule list"), ".\n");
    assert_eq!(a.admin("schedule delete tick"), "ERR UNKNOWN_SCHEDULE\r\n");
    // No more firings: what was queued is all there is.
    std::thread::sleep(Duration::from_millis(300));
    let left = fired(&mut a, "tick").len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(fired(&mut a, "tick").len(), left);

    let bad = a.admin("schedule add bad f 61 * * * *");
    assert!(bad.starts_with("ERR INVALID_SCHEDULE "), "{bad:?}");
    let bad = a.admin("schedule add bad@x f * * * * *");
    assert!(bad.starts_with("ERR INVALID_SCHEDULE "), "{bad:?}");
}

#[tokio::test]
async fn the_admin_client_manages_schedules() {
    let s = polygeard(&["-q", "builtin"]);
    let mut admin = Admin::connect(&s.addr(), Duration::from_secs(5))
        .await
        .unwrap();
    admin
        .schedule_add("nightly", "0 3 * * *", "report", "full  run")
        .await
        .unwrap();
    admin
        .schedule_add("hourly", "@hourly", "sweep", "")
        .await
        .unwrap();
    let list = admin.schedules().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].name, "hourly");
    assert_eq!(list[0].data, "");
    assert_eq!(list[1].name, "nightly");
    assert_eq!(list[1].function, "report");
    assert_eq!(list[1].cron, "0 3 * * *");
    assert_eq!(list[1].data, "full run");
    assert_eq!(list[1].last_fired, None);
    let next = list[1].next.expect("a next occurrence");
    assert!(next > unix_now() && next % 86400 == 3 * 3600, "{next}");
    match admin.schedule_add("x", "not cron", "f", "").await {
        Err(Error::Server { code, .. }) => assert_eq!(code, "INVALID_SCHEDULE"),
        other => panic!("expected INVALID_SCHEDULE, got {other:?}"),
    }
    admin.schedule_delete("nightly").await.unwrap();
    match admin.schedule_delete("nightly").await {
        Err(Error::Server { code, .. }) => assert_eq!(code, "UNKNOWN_SCHEDULE"),
        other => panic!("expected UNKNOWN_SCHEDULE, got {other:?}"),
    }
    assert_eq!(admin.schedules().await.unwrap().len(), 1);
}

#[test]
fn a_configured_schedule_fires_once_per_period_across_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.sqlite3");
    let db = db.to_str().unwrap();
    let mut s = polygeard(&[
        "-q",
        "libsqlite3",
        "--libsqlite3-db",
        db,
        "--schedule",
        "tick=* * * * * *=beat=payload",
    ]);
    let mut a = Raw::connect(s.port);
    let before = wait_fired(&mut a, "tick", |f| f.len() >= 2);
    drop(a);
    s.kill();
    let last = *before.iter().max().unwrap();
    // Down for a few periods.
    std::thread::sleep(Duration::from_millis(3200));
    let restarted = unix_now();
    s.restart();
    let mut a = Raw::connect(s.port);
    let after = wait_fired(&mut a, "tick", |f| f.iter().any(|&t| t > restarted));
    let unique: HashSet<i64> = after.iter().copied().collect();
    assert_eq!(unique.len(), after.len(), "a period fired twice: {after:?}");
    for t in &before {
        assert!(unique.contains(t), "job {t} was lost: {after:?}");
    }
    // The periods missed while down fire once, at start (as the occurrence
    // after the last one fired); the ones in between do not.
    let missed: Vec<i64> = after
        .iter()
        .copied()
        .filter(|&t| t > last && t <= restarted)
        .collect();
    assert_eq!(
        missed.len(),
        1,
        "last {last}, restarted {restarted}: {after:?}"
    );
    assert!(missed[0] <= last + 2, "{missed:?} after {last}");
    // The stored schedule remembers its last firing.
    let list = a.admin("schedule list");
    let row: Vec<&str> = list.lines().next().unwrap().split('\t').collect();
    assert_eq!(row[0], "tick", "{list:?}");
    assert!(row[3].parse::<i64>().unwrap() > restarted - 1, "{list:?}");
}

#[test]
fn a_bad_schedule_flag_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_polygeard"))
        .args(["-q", "builtin", "-p", "0", "--schedule", "x=61 * * * *=f"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cron expression"), "{err}");
}
