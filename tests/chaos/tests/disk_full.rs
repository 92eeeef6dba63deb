//! Scenario 4: the disk under the SQLite queue fills up (a small tmpfs, mounted in a
//! mount namespace of its own; skipped, with the reason, where that is not permitted).
//!
//! The contract (issue #18):
//! - while the disk is full, a background submission gets an ERROR packet, not
//!   JOB_CREATED, and the connection stays usable (ECHO still answered, the next
//!   submission answered too); foreground jobs (never stored) keep working;
//! - nothing acknowledged before is lost;
//! - once space is back, background submissions succeed again, and every acknowledged
//!   job runs exactly once — also after a kill -9 and restart on the same database.
//!
//! (Before that contract was implemented polygeard dropped the client's connection
//! when the write failed; this test then fails on the first point only.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polygear::protocol::Priority;
use polygear::{Client, ClientOptions, Error, Packet, SubmitOptions, Worker, WorkerOptions};
use polygear_chaos::mountns::Tmpfs;
use polygear_chaos::{
    figure, queued, runtime, skip, version_of, wait_for, workspace_bin, Daemon, Peer, Violations,
};

const SCENARIO: &str = "disk-full";
const FUNCTION: &str = "chaos-stored";
const FG_FUNCTION: &str = "chaos-fg";
const TMPFS_SIZE: &str = "6m";
const BATCH: usize = 300;

#[test]
fn a_full_disk_refuses_background_jobs_with_an_error_and_recovers() {
    let rt = runtime(2);
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(150), scenario())
            .await
            .unwrap_or_else(|_| panic!("{SCENARIO}: did not finish in time"))
    });
}

fn bg(function: &str, unique: &str, data: Vec<u8>) -> Packet {
    Packet::SubmitJob {
        function: function.to_string().into(),
        unique: unique.to_string().into(),
        data: data.into(),
        priority: Priority::Normal,
        background: true,
    }
}

async fn submit_batch(client: &Client, prefix: &str, acked: &mut Vec<String>) -> Vec<String> {
    let mut errors = Vec::new();
    for i in 0..BATCH {
        let unique = format!("{prefix}{i}");
        let opts = SubmitOptions {
            unique: Some(unique.clone().into()),
            ..Default::default()
        };
        match client
            .submit_background(FUNCTION, vec![b'x'; 1024], opts)
            .await
        {
            Ok(_) => acked.push(unique),
            Err(e) => errors.push(format!("{unique}: {e}")),
        }
    }
    errors
}

async fn scenario() {
    let violations = Violations::new();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("queue");
    std::fs::create_dir(&mnt).unwrap();
    let tmpfs = match Tmpfs::new(&mnt, TMPFS_SIZE) {
        Ok(t) => t,
        Err(reason) => {
            skip(SCENARIO, format!("cannot mount a small tmpfs: {reason}"));
            return;
        }
    };
    let db = mnt.join("queue.sqlite3");
    let mut daemon = Daemon::new(
        "polygeard",
        tmpfs.exec_prefix(),
        "127.0.0.1",
        polygear_test_support::free_port(),
        &["-q", "libsqlite3", "--libsqlite3-db", db.to_str().unwrap()],
        "WARNING",
        &dir.path().join("polygeard.log"),
    );
    daemon.start();
    let addr = daemon.addr();
    figure(
        SCENARIO,
        format!(
            "{}; queue on a {TMPFS_SIZE} tmpfs ({} bytes free at start)",
            version_of(&workspace_bin("polygeard")),
            tmpfs.available()
        ),
    );
    let client = Client::new(ClientOptions {
        servers: vec![addr.clone()],
        submit_timeout: Duration::from_secs(10),
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        ..Default::default()
    })
    .unwrap();
    // A worker for foreground jobs only (none of the stored function runs yet).
    let fg_worker = Worker::new(WorkerOptions {
        servers: vec![addr.clone()],
        ..Default::default()
    })
    .unwrap();
    fg_worker.register(FG_FUNCTION, None).unwrap();
    let fg_running = tokio::spawn({
        let w = fg_worker.clone();
        async move {
            w.run(|job| async move {
                let out: Vec<u8> = job.data().iter().rev().copied().collect();
                let _ = job.complete(out);
            })
            .await
        }
    });

    // 1. Before: acknowledged jobs.
    let mut acked: Vec<String> = Vec::new();
    for e in submit_batch(&client, "before-", &mut acked).await {
        violations.add(format!("with space left: {e}"));
    }
    let before = acked.len();

    // 2. Fill the disk, then submit until the server notices.
    let filler = tmpfs.fill("filler");
    let mut peer = Peer::connect(&addr, Duration::from_secs(10)).await.unwrap();
    let mut refused: Vec<String> = Vec::new();
    let mut while_filling = 0;
    let mut first_error = None;
    let mut connection_dropped = false;
    let t_full = Instant::now();
    for i in 0..3000 {
        let unique = format!("full-{i}");
        match peer.ask(bg(FUNCTION, &unique, vec![b'f'; 16 << 10])).await {
            Ok(Packet::JobCreated { .. }) => {
                // The WAL still had room: stored, so it counts.
                acked.push(unique);
                while_filling += 1;
            }
            Ok(Packet::Error { code, text }) => {
                refused.push(unique);
                first_error = Some(format!(
                    "ERROR {} {:?}",
                    String::from_utf8_lossy(&code),
                    String::from_utf8_lossy(&text)
                ));
                break;
            }
            Ok(other) => {
                violations.add(format!("a background submission got {other:?}"));
                break;
            }
            Err(e) => {
                refused.push(unique);
                connection_dropped = true;
                violations.add(format!(
                    "disk full: a background submission got no ERROR reply: {e} (contract: ERROR, connection kept)"
                ));
                break;
            }
        }
    }
    let noticed_after = t_full.elapsed();
    violations.check(first_error.is_some() || connection_dropped, || {
        format!("the disk never filled up: {while_filling} jobs of 16 KiB were stored after {filler} bytes of filler")
    });

    // 3. While full: the connection stays usable and keeps refusing; so does the client.
    if !connection_dropped && first_error.is_some() {
        match peer
            .ask(Packet::EchoReq {
                data: "still there?".into(),
            })
            .await
        {
            Ok(Packet::EchoRes { data }) if &data[..] == b"still there?" => {}
            other => violations.add(format!(
                "after the ERROR the connection is not usable: ECHO got {other:?}"
            )),
        }
        match peer
            .ask(bg(FUNCTION, "full-again", vec![b'f'; 16 << 10]))
            .await
        {
            Ok(Packet::Error { .. }) => refused.push("full-again".into()),
            Ok(Packet::JobCreated { .. }) => acked.push("full-again".into()),
            other => violations.add(format!(
                "a second submission on the same connection got {other:?}"
            )),
        }
    }
    if connection_dropped {
        peer = Peer::connect(&addr, Duration::from_secs(10)).await.unwrap();
    }
    let client_full = client
        .submit_background(
            FUNCTION,
            vec![b'c'; 16 << 10],
            SubmitOptions {
                unique: Some("client-full".into()),
                ..Default::default()
            },
        )
        .await;
    match &client_full {
        Err(Error::Server { .. }) => refused.push("client-full".into()),
        Ok(_) => acked.push("client-full".into()),
        Err(e) => violations.add(format!(
            "disk full: Client::submit_background got {e} (contract: the server's ERROR, Error::Server)"
        )),
    }
    match client.echo("ping").await {
        Ok(d) if &d[..] == b"ping" => {}
        other => violations.add(format!("disk full: Client::echo got {other:?}")),
    }
    match tokio::time::timeout(
        Duration::from_secs(10),
        client.submit(FG_FUNCTION, "abc", SubmitOptions::default()),
    )
    .await
    {
        Ok(Ok(r)) if &r[..] == b"cba" => {}
        other => violations.add(format!(
            "disk full: a foreground job (never stored) got {other:?}"
        )),
    }

    // 4. Space comes back: submissions succeed again.
    tmpfs.free("filler");
    let mut after_ok = false;
    for attempt in 0..50 {
        match peer
            .ask(bg(FUNCTION, &format!("freed-{attempt}"), vec![b'g'; 1024]))
            .await
        {
            Ok(Packet::JobCreated { .. }) => {
                acked.push(format!("freed-{attempt}"));
                after_ok = true;
                break;
            }
            Ok(Packet::Error { .. }) => {
                refused.push(format!("freed-{attempt}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => {
                violations.add(format!("space is back: a submission got {other:?}"));
                peer = Peer::connect(&addr, Duration::from_secs(10)).await.unwrap();
            }
        }
    }
    violations.check(after_ok, || {
        "space is back but background submissions are still refused".into()
    });
    for e in submit_batch(&client, "after-", &mut acked).await {
        violations.add(format!("space is back: {e}"));
    }

    // 5. Crash and restart on the same database, then run everything.
    let back = daemon.restart();
    let runs: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let worker = Worker::new(WorkerOptions {
        servers: vec![addr.clone()],
        concurrency: 8,
        ..Default::default()
    })
    .unwrap();
    worker.register(FUNCTION, None).unwrap();
    let running = tokio::spawn({
        let (w, runs) = (worker.clone(), runs.clone());
        async move {
            w.run(move |job| {
                let runs = runs.clone();
                async move {
                    *runs
                        .lock()
                        .unwrap()
                        .entry(job.unique().to_string())
                        .or_default() += 1;
                    let _ = job.complete("");
                }
            })
            .await
        }
    });
    let drained = wait_for(Duration::from_secs(30), || {
        let addr = addr.clone();
        async move { matches!(queued(&addr, FUNCTION).await, Ok((0, 0))) }
    })
    .await;
    violations.check(drained, || "the queue did not drain".into());
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.shutdown().await;
    let _ = running.await;
    fg_worker.shutdown().await;
    let _ = fg_running.await;

    let runs = runs.lock().unwrap().clone();
    let lost: Vec<&String> = acked.iter().filter(|u| !runs.contains_key(*u)).collect();
    let twice: Vec<(&String, &u32)> = runs.iter().filter(|(_, n)| **n > 1).collect();
    let refused_ran = refused.iter().filter(|u| runs.contains_key(*u)).count();
    violations.check(lost.is_empty(), || {
        format!(
            "{} acknowledged jobs lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        )
    });
    violations.check(twice.is_empty(), || {
        format!("jobs ran more than once: {twice:?}")
    });

    figure(
        SCENARIO,
        format!(
            "filler {filler} bytes; acked {} ({before} before, {while_filling} while the WAL still had room, {} after); \
             refused {} ({}); server noticed after {:.0} ms; refused jobs that ran anyway {refused_ran}",
            acked.len(),
            acked.len() - before - while_filling,
            refused.len(),
            if connection_dropped {
                "connection dropped, no ERROR".to_string()
            } else {
                first_error.unwrap_or_else(|| "no error".into())
            },
            noticed_after.as_secs_f64() * 1000.0
        ),
    );
    figure(
        SCENARIO,
        format!(
            "after kill -9 + restart ({} ms): lost {}, duplicated {}",
            back.as_millis(),
            lost.len(),
            twice.len()
        ),
    );
    drop(daemon);
    drop(tmpfs);
    violations.finish(SCENARIO);
}
