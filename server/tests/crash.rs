//! Durability of the SQLite queue: background jobs acknowledged before a
//! `kill -9` are all there after a restart on the same database, and each
//! runs exactly once (the scenarios are shared with the other backends:
//! common/durable.rs).

mod common;

use common::durable;

#[test]
fn kill9_loses_no_acknowledged_job_and_runs_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queue.sqlite3");
    durable::kill9_loses_no_acknowledged_job(&[
        "-q",
        "libsqlite3",
        "--libsqlite3-db",
        db.to_str().unwrap(),
    ]);
}

#[test]
fn restart_keeps_queued_jobs_and_priorities() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.sqlite3");
    durable::restart_keeps_queued_jobs_and_priorities(&["--libsqlite3-db", db.to_str().unwrap()]);
}
