//! The counters, histograms and dashboard actions of [`crate::stats`],
//! checked against a real server driven by the core `polygear` client and
//! worker (metrics scraped through [`crate::http::metrics::render`], API
//! answered by [`crate::http::dashboard::handle`], no socket for HTTP).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use polygear::protocol::Priority;
use polygear::{Client, ClientOptions, JobEvent, ServerAddr, SubmitOptions, Worker, WorkerOptions};

use crate::http::dashboard::{handle, ApiRequest};
use crate::http::{metrics, ConnInfo};
use crate::stats::ActionError;
use crate::{QueueConfig, RunningServer, Server, ServerConfig};

/// A scrape: `name{labels}` → value.
fn scrape(server: &RunningServer) -> HashMap<String, f64> {
    let text = metrics::render(&server.shared);
    let mut m = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (k, v) = line.rsplit_once(' ').expect("sample line");
        m.insert(k.to_string(), v.parse().expect("sample value"));
    }
    m
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

fn client(server: &RunningServer) -> Client {
    let addr = server.local_addr();
    Client::new(ClientOptions {
        servers: vec![ServerAddr::new(addr.ip().to_string(), addr.port())],
        ..Default::default()
    })
    .unwrap()
}

fn worker(server: &RunningServer) -> Worker {
    let addr = server.local_addr();
    Worker::new(WorkerOptions {
        servers: vec![ServerAddr::new(addr.ip().to_string(), addr.port())],
        client_id: Some("stats-test-worker".into()),
        ..Default::default()
    })
    .unwrap()
}

fn prio(p: Priority) -> SubmitOptions {
    SubmitOptions {
        priority: p,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_jobs_run_by_the_core_client_and_worker() {
    let server = Server::bind(ServerConfig::default()).await.unwrap();
    let before = scrape(&server);
    let c = client(&server);
    // Queued with no worker: two high, one low.
    for p in [Priority::High, Priority::High, Priority::Low] {
        c.submit_background("idle", "x", prio(p)).await.unwrap();
    }
    let w = worker(&server);
    w.register("work", None).unwrap();
    let w2 = w.clone();
    let run = tokio::spawn(async move {
        w2.run(|job| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let r = match &job.data()[..] {
                b"fail" => job.fail(),
                b"boom" => job.exception("boom!"),
                _ => job.complete("ok"),
            };
            r.unwrap();
        })
        .await
    });
    for data in ["a", "b", "c", "fail", "boom"] {
        let _ = c.submit("work", data, SubmitOptions::default()).await;
    }
    let after = scrape(&server);
    let d = |k: &str| get(&after, k) - get(&before, k);
    let work = |rest: &str| format!("polygear_jobs_total{{function=\"work\",outcome=\"{rest}\"}}");
    assert_eq!(
        d("polygear_jobs_submitted_total{function=\"work\",priority=\"normal\"}"),
        5.0
    );
    assert_eq!(
        d("polygear_jobs_submitted_total{function=\"idle\",priority=\"high\"}"),
        2.0
    );
    assert_eq!(d(&work("complete")), 3.0);
    assert_eq!(d(&work("fail")), 1.0);
    assert_eq!(d(&work("exception")), 1.0);
    assert_eq!(d(&work("cancelled")), 0.0);
    assert_eq!(
        get(
            &after,
            "polygear_jobs_queued{function=\"idle\",priority=\"high\"}"
        ),
        2.0
    );
    assert_eq!(
        get(
            &after,
            "polygear_jobs_queued{function=\"idle\",priority=\"low\"}"
        ),
        1.0
    );
    assert_eq!(get(&after, "polygear_jobs_running{function=\"work\"}"), 0.0);
    assert_eq!(get(&after, "polygear_workers{function=\"work\"}"), 1.0);
    assert_eq!(get(&after, "polygear_workers{function=\"idle\"}"), 0.0);
    assert_eq!(d("polygear_job_run_seconds_count{function=\"work\"}"), 5.0);
    assert_eq!(
        d("polygear_job_queue_wait_seconds_count{function=\"work\"}"),
        5.0
    );
    assert_eq!(
        get(
            &after,
            "polygear_job_run_seconds_bucket{le=\"+Inf\",function=\"work\"}"
        ),
        5.0
    );
    assert_eq!(
        get(
            &after,
            "polygear_job_run_seconds_bucket{le=\"0.01\",function=\"work\"}"
        ),
        0.0,
        "every job ran at least 20 ms"
    );
    assert!(get(&after, "polygear_job_run_seconds_sum{function=\"work\"}") >= 0.1);
    assert_eq!(d("polygear_connections_accepted_total"), 2.0);
    assert_eq!(get(&after, "polygear_connections"), 2.0);
    // No durable queue: no commit.
    assert_eq!(get(&after, "polygear_queue_commit_seconds_count"), 0.0);

    // The failures the dashboard lists, newest first.
    let snap = server.shared.state.lock().snapshot(0, 0, true);
    let outcomes: Vec<_> = snap
        .failures
        .iter()
        .map(|f| (f.outcome, f.message.as_str()))
        .collect();
    assert_eq!(outcomes, [("exception", "boom!"), ("fail", "")]);
    assert_eq!(snap.workers.len(), 1);
    assert_eq!(snap.workers[0].client_id, "stats-test-worker");
    assert_eq!(snap.workers[0].functions, ["work"]);

    // A sample closes the interval: its deltas are what happened since.
    server.shared.state.lock().take_sample();
    let s = server
        .shared
        .state
        .lock()
        .stats
        .samples
        .back()
        .cloned()
        .unwrap();
    assert_eq!((s.submitted, s.completed, s.failed, s.queued), (8, 3, 2, 3));
    assert!(s.run_ms >= 20.0);

    w.stop();
    w.shutdown().await;
    let _ = run.await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_value_is_escaped() {
    let server = Server::bind(ServerConfig::default()).await.unwrap();
    server.shared.with_state(|st| {
        st.func_id(b"a\"b\\c\nd");
    });
    let text = metrics::render(&server.shared);
    assert!(
        text.contains("polygear_workers{function=\"a\\\"b\\\\c\\nd\"} 0"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
    server.shutdown().await;
}

fn row_count(db: &std::path::Path) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("SELECT COUNT(*) FROM polygear_queue", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_removes_a_queued_job_and_its_row_and_refuses_a_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.sqlite3");
    let server = Server::bind(ServerConfig {
        queue: QueueConfig::Sqlite { path: db.clone() },
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client(&server);
    let bg = c
        .submit_background("f", "stored", SubmitOptions::default())
        .await
        .unwrap();
    let kept = c
        .submit_background("f", "kept", SubmitOptions::default())
        .await
        .unwrap();
    let mut fg = c
        .submit_job("f", "waiting", SubmitOptions::default())
        .await
        .unwrap();
    let commits = scrape(&server);
    assert!(get(&commits, "polygear_queue_commit_seconds_count") >= 1.0);
    assert!(get(&commits, "polygear_queue_commit_batch_size_sum") >= 2.0);

    let listed = server.shared.state.lock().queued_jobs(b"f", 100).unwrap();
    let handles: Vec<_> = listed.iter().map(|j| j.handle.as_str()).collect();
    assert_eq!(handles, [bg.as_str(), kept.as_str(), fg.handle()]);
    assert!(listed[0].durable && !listed[2].durable);

    server
        .shared
        .with_state(|st| st.cancel_queued(bg.as_bytes()))
        .unwrap();
    server
        .shared
        .with_state(|st| st.cancel_queued(fg.handle().as_bytes()))
        .unwrap();
    // The foreground client hears WORK_FAIL.
    let ev = tokio::time::timeout(Duration::from_secs(5), fg.next_event())
        .await
        .unwrap();
    assert!(matches!(ev, Some(Ok(JobEvent::Failed))), "{ev:?}");
    {
        let st = server.shared.state.lock();
        let fid = st.find_func(b"f").unwrap();
        assert_eq!(st.funcs[fid].waiting, [0, 1, 0]);
        assert_eq!(st.funcs[fid].total, 1);
        assert_eq!(st.funcs[fid].queues[1].len(), 1, "left the queue at once");
    }
    assert_eq!(
        server
            .shared
            .with_state(|st| st.cancel_queued(bg.as_bytes())),
        Err(ActionError::NoSuchJob)
    );
    assert_eq!(
        server.shared.with_state(|st| st.cancel_queued(b"nonsense")),
        Err(ActionError::NoSuchJob)
    );
    let m = scrape(&server);
    assert_eq!(
        get(
            &m,
            "polygear_jobs_total{function=\"f\",outcome=\"cancelled\"}"
        ),
        2.0
    );

    // The remaining job runs: a worker holds it, and it cannot be cancelled.
    let w = worker(&server);
    w.register("f", None).unwrap();
    let job = tokio::time::timeout(Duration::from_secs(5), w.next_job())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.handle(), kept);
    assert_eq!(
        server
            .shared
            .with_state(|st| st.cancel_queued(kept.as_bytes())),
        Err(ActionError::Running)
    );
    // The store's file is locked while the server runs: count its rows after.
    server.shutdown().await;
    drop(job);
    w.shutdown().await;
    assert_eq!(row_count(&db), 1, "only the running job's row is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_only_an_empty_function() {
    let server = Server::bind(ServerConfig::default()).await.unwrap();
    let c = client(&server);
    c.submit_background("busy", "x", SubmitOptions::default())
        .await
        .unwrap();
    server.shared.with_state(|st| {
        st.func_id(b"Empty");
        assert_eq!(st.drop_function(b"busy"), Err(ActionError::FunctionInUse));
        assert_eq!(st.drop_function(b"nope"), Err(ActionError::NoSuchFunction));
        assert_eq!(
            st.drop_function(b"empty"),
            Ok(()),
            "case ignored like gearmand"
        );
        assert!(st.find_func(b"Empty").is_none());
    });
    server.shutdown().await;
}

fn info(verified: bool) -> ConnInfo {
    ConnInfo {
        peer: "127.0.0.1:9".parse().unwrap(),
        client_cert_verified: verified,
    }
}

fn post(path: &str, body: &str, token: Option<&str>) -> ApiRequest {
    ApiRequest {
        method: Method::POST,
        path: path.into(),
        query: String::new(),
        authorization: token.map(|t| format!("Bearer {t}").into_bytes()),
        body: Bytes::from(body.to_string()),
    }
}

fn get_req(path: &str, query: &str) -> ApiRequest {
    ApiRequest {
        method: Method::GET,
        path: path.into(),
        query: query.into(),
        ..Default::default()
    }
}

fn json(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_the_token_or_a_verified_client_certificate() {
    let server = Server::bind(ServerConfig {
        admin_token: Some("s3cret".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client(&server);
    let h1 = c
        .submit_background("q", "1", prio(Priority::High))
        .await
        .unwrap();
    let h2 = c
        .submit_background("q", "2", prio(Priority::Low))
        .await
        .unwrap();
    let sh = &server.shared;
    let cancel = |h: &str| format!("{{\"handle\":\"{h}\"}}");

    let r = handle(sh, &post("/api/cancel", &cancel(&h1), None), &info(false));
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(json(&r.body)["error"].as_str().unwrap().contains("Bearer"));
    let r = handle(
        sh,
        &post("/api/cancel", &cancel(&h1), Some("wrong")),
        &info(false),
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(sh.state.lock().jobs.len(), 2, "nothing cancelled");

    // The status and the job list need no token.
    let r = handle(sh, &get_req("/api/status", ""), &info(false));
    assert_eq!(r.status, StatusCode::OK);
    let s = json(&r.body);
    assert_eq!(s["actions"]["token_configured"], true);
    let q = &s["functions"][0];
    assert_eq!(
        (
            q["name"].as_str(),
            q["queued"]["high"].as_u64(),
            q["queued"]["low"].as_u64()
        ),
        (Some("q"), Some(1), Some(1))
    );
    let r = handle(sh, &get_req("/api/jobs", "function=q"), &info(false));
    assert_eq!(r.status, StatusCode::OK);
    let jobs = json(&r.body);
    assert_eq!(jobs["jobs"][0]["handle"], h1.as_str());
    assert_eq!(jobs["jobs"][1]["priority"], "low");
    let r = handle(sh, &get_req("/api/jobs", "function=none"), &info(false));
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = handle(
        sh,
        &post("/api/cancel", &cancel(&h1), Some("s3cret")),
        &info(false),
    );
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = handle(
        sh,
        &post("/api/cancel", &cancel(&h1), Some("s3cret")),
        &info(false),
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = handle(
        sh,
        &post("/api/cancel", "not json", Some("s3cret")),
        &info(false),
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Mutual TLS stands in for the token.
    let r = handle(sh, &post("/api/cancel", &cancel(&h2), None), &info(true));
    assert_eq!(r.status, StatusCode::OK);
    let r = handle(
        sh,
        &post("/api/drop", "{\"function\":\"q\"}", None),
        &info(false),
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = handle(
        sh,
        &post("/api/drop", "{\"function\":\"q\"}", Some("s3cret")),
        &info(false),
    );
    assert_eq!(r.status, StatusCode::OK);
    let r = handle(
        sh,
        &post("/api/drop", "{\"function\":\"q\"}", Some("s3cret")),
        &info(false),
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = handle(sh, &get_req("/api/cancel", ""), &info(false));
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = handle(sh, &get_req("/", ""), &info(false));
    assert_eq!(r.status, StatusCode::OK);
    assert!(std::str::from_utf8(&r.body)
        .unwrap()
        .contains("/dashboard/app.js"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_actions_are_always_refused() {
    let server = Server::bind(ServerConfig::default()).await.unwrap();
    let c = client(&server);
    let h = c
        .submit_background("q", "1", SubmitOptions::default())
        .await
        .unwrap();
    let body = format!("{{\"handle\":\"{h}\"}}");
    for token in [None, Some(""), Some("anything")] {
        let r = handle(
            &server.shared,
            &post("/api/cancel", &body, token),
            &info(false),
        );
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(json(&r.body)["error"]
            .as_str()
            .unwrap()
            .contains("--admin-token"));
    }
    let s = json(&handle(&server.shared, &get_req("/api/status", ""), &info(false)).body);
    assert_eq!(s["actions"]["token_configured"], false);
    assert_eq!(server.shared.state.lock().jobs.len(), 1);
    server.shutdown().await;
}

#[test]
fn histogram_buckets_hold_their_own_observations() {
    let mut h = crate::stats::latency();
    for ms in [0, 1, 3, 700, 400_000] {
        h.observe_duration(Duration::from_millis(ms));
    }
    let b = h.buckets(1e9);
    assert_eq!(b[0], (0.001, 2));
    assert_eq!(b[2], (0.005, 1));
    assert_eq!(b[9], (1.0, 1));
    assert_eq!(b[13], (30.0, 0));
    assert_eq!(*b.last().unwrap(), (f64::MAX, 1));
    assert_eq!(h.count(), 5);
    assert_eq!(h.sum(), 400_704_000_000);
}
