//! The HTTP front end (`-r http`) of a real in-process server on ephemeral
//! ports: jobs submitted with Debian's `curl` (and raw TCP where timing or
//! malformed input matters), run by polygear workers.

mod common;

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Raw;
use polygear::{Job, ServerAddr, Worker, WorkerOptions};
use polygear_server::{BackgroundServer, QueueConfig, ServerConfig};
use tokio::sync::Notify;

/// A server with HTTP on, its handle prefix fixed, and a runtime for workers.
struct Fixture {
    server: Option<BackgroundServer>,
    rt: tokio::runtime::Runtime,
    http: SocketAddr,
}

fn start(f: impl FnOnce(&mut ServerConfig)) -> Fixture {
    let mut cfg = ServerConfig {
        http_port: Some(0),
        job_handle_prefix: Some("H:t".into()),
        ..ServerConfig::default()
    };
    f(&mut cfg);
    let server = BackgroundServer::start(cfg).expect("start server");
    let http = server.http_addr().expect("HTTP address");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    Fixture {
        server: Some(server),
        rt,
        http,
    }
}

impl Fixture {
    fn port(&self) -> u16 {
        self.server.as_ref().expect("running").port()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Starts a worker for `function` and waits until the server lists it.
    fn worker<F, Fut>(&self, function: &str, handler: F) -> Worker
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let w = Worker::new(WorkerOptions {
            servers: vec![ServerAddr::new("127.0.0.1", self.port())],
            ..WorkerOptions::default()
        })
        .expect("worker");
        w.register(function, None).expect("register");
        let run = w.clone();
        self.rt.spawn(async move {
            let _ = run.run(handler).await;
        });
        self.wait_status(function, |_, _, workers| workers > 0);
        w
    }

    /// Waits until the admin `status` line of `function` (total, running,
    /// workers) satisfies `ok`.
    fn wait_status(&self, function: &str, ok: impl Fn(u64, u64, u64) -> bool) {
        let mut admin = Raw::connect(self.port());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = admin.admin("status");
            let counts = status.lines().find_map(|l| {
                let mut cols = l.split('\t');
                (cols.next() == Some(function)).then(|| {
                    let n: Vec<u64> = cols.filter_map(|c| c.parse().ok()).collect();
                    (n.first().copied(), n.get(1).copied(), n.get(2).copied())
                })
            });
            if let Some((Some(t), Some(r), Some(w))) = counts {
                if ok(t, r, w) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "status never matched:\n{status}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The peers the admin `workers` command lists as HTTP requests.
    fn http_peers(&self) -> usize {
        let mut admin = Raw::connect(self.port());
        admin
            .admin("workers")
            .lines()
            .filter(|l| l.split(' ').nth(2) == Some("http"))
            .count()
    }

    /// Waits until no HTTP request is a peer of the server any more.
    fn wait_no_http_peers(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.http_peers() > 0 {
            assert!(Instant::now() < deadline, "an HTTP peer was never removed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A normal job still runs (after abuse).
    fn still_serves(&self) {
        let out = curl(&["--data-binary", "abc", &self.url("/rev")]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(out.stdout, b"cba");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }
}

async fn reverse(job: Job) {
    let mut d = job.data().to_vec();
    d.reverse();
    let _ = job.complete(d);
}

/// Runs curl (silent, errors shown, 30 s limit) with `args`.
fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .expect("run curl")
}

/// curl `-i`: the status code, the headers (lowercased names) and the body.
fn curl_i(args: &[&str]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut a = vec!["-i"];
    a.extend_from_slice(args);
    let out = curl(&a);
    assert_eq!(out.status.code(), Some(0), "curl failed: {out:?}");
    parse_response(&out.stdout)
}

fn parse_response(raw: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, raw[end + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Sends `request` on a new connection and reads until the server closes
/// it or `timeout` passes.
fn raw_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s.write_all(request).expect("send");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads from `s` until `out` contains `needle` (panics after 10 s).
fn read_until(s: &mut TcpStream, out: &mut Vec<u8>, needle: &[u8]) {
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    while !out.windows(needle.len()).any(|w| w == needle) {
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "closed before {:?}: {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(out)
            ),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "{e} before {:?}: {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(out)
            ),
        }
    }
}

#[test]
fn foreground_job_returns_the_result() {
    let fx = start(|_| {});
    let _w = fx.worker("rev", reverse);
    let (status, headers, body) = curl_i(&["--data-binary", "hello", &fx.url("/rev")]);
    assert_eq!(status, 200);
    assert_eq!(body, b"olleh");
    assert_eq!(header(&headers, "x-gearman-command"), Some("WORK_COMPLETE"));
    assert_eq!(header(&headers, "x-gearman-job-handle"), Some("H:t:1"));
    // PUT is the same; GET submits an empty workload.
    let out = curl(&["-X", "PUT", "--data-binary", "abc", &fx.url("/rev")]);
    assert_eq!(out.stdout, b"cba");
    let (status, _, body) = curl_i(&[&fx.url("/rev")]);
    assert_eq!((status, body.len()), (200, 0));
    // Leading slashes are stripped, the path is percent-decoded.
    let _w2 = fx.worker("a b/c", reverse);
    let out = curl(&["--data-binary", "xy", &fx.url("//a%20b/c")]);
    assert_eq!(out.stdout, b"yx");
    // HTTP/1.0 works too.
    let (status, _, body) = curl_i(&["-0", "--data-binary", "10", &fx.url("/rev")]);
    assert_eq!((status, &body[..]), (200, &b"01"[..]));
    fx.wait_no_http_peers();
}

#[test]
fn background_job_is_answered_with_its_handle_and_runs() {
    let fx = start(|_| {});
    let (status, headers, body) = curl_i(&[
        "-H",
        "X-Gearman-Background: true",
        "--data-binary",
        "later",
        &fx.url("/bg"),
    ]);
    assert_eq!(status, 200);
    assert_eq!(body, b"H:t:1");
    assert_eq!(header(&headers, "x-gearman-job-handle"), Some("H:t:1"));
    assert_eq!(header(&headers, "x-gearman-command"), Some("JOB_CREATED"));
    // Its status while it waits, then after a worker ran it.
    let (status, _, body) = curl_i(&[&fx.url("/status/H:t:1")]);
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8_lossy(&body).trim(),
        r#"{"handle": "H:t:1", "known": true, "running": false, "numerator": 0, "denominator": 0}"#
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let _w = fx.worker("bg", move |job: Job| {
        s.lock().unwrap().push(job.data().to_vec());
        async move {
            let _ = job.complete("");
        }
    });
    fx.wait_status("bg", |total, _, _| total == 0);
    assert_eq!(*seen.lock().unwrap(), vec![b"later".to_vec()]);
    let (_, _, body) = curl_i(&[&fx.url("/status/H%3At%3A1")]);
    assert!(
        String::from_utf8_lossy(&body).contains(r#""known": false"#),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[test]
fn status_reports_a_running_job_and_its_progress() {
    let fx = start(|_| {});
    let release = Arc::new(Notify::new());
    let r = release.clone();
    let _w = fx.worker("progress", move |job: Job| {
        let r = r.clone();
        async move {
            let _ = job.send_status(3, 7);
            r.notified().await;
            let _ = job.complete("");
        }
    });
    let (_, _, body) = curl_i(&[
        "-H",
        "X-Gearman-Background: true",
        "-d",
        "x",
        &fx.url("/progress"),
    ]);
    let handle = String::from_utf8(body).unwrap();
    fx.wait_status("progress", |_, running, _| running == 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, body) = curl_i(&[&fx.url(&format!("/status/{handle}"))]);
        let body = String::from_utf8_lossy(&body).into_owned();
        if body.contains(r#""numerator": 3, "denominator": 7"#) {
            assert!(body.contains(r#""known": true, "running": true"#), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(20));
    }
    release.notify_one();
}

#[test]
fn unique_requests_coalesce_onto_one_job() {
    let fx = start(|_| {});
    let runs = Arc::new(AtomicUsize::new(0));
    let n = runs.clone();
    let release = Arc::new(Notify::new());
    let r = release.clone();
    let _w = fx.worker("slow", move |job: Job| {
        let run = n.fetch_add(1, Ordering::SeqCst) + 1;
        let r = r.clone();
        async move {
            r.notified().await;
            let _ = job.complete(format!("run {run}"));
        }
    });
    let url = fx.url("/slow");
    let spawn = |body: &str| {
        Command::new("curl")
            .args([
                "-sS",
                "-i",
                "--max-time",
                "30",
                "-H",
                "X-Gearman-Unique: same",
            ])
            .args(["--data-binary", body, &url])
            .output()
    };
    // Released once both requests wait for the one job (GET_STATUS_UNIQUE
    // counts its clients).
    let clients = || {
        let mut c = Raw::connect(fx.port());
        c.send(&polygear::Packet::GetStatusUnique {
            unique: polygear::Bytes::from_static(b"same"),
        });
        match c.recv() {
            polygear::Packet::StatusResUnique { client_count, .. } => client_count,
            other => panic!("{other:?}"),
        }
    };
    let wait_clients = |n: u32| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while clients() != n {
            assert!(Instant::now() < deadline, "never {n} clients");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let first = std::thread::scope(|s| {
        let a = s.spawn(|| spawn("one"));
        wait_clients(1);
        let b = s.spawn(|| spawn("two"));
        wait_clients(2);
        release.notify_one();
        [a.join().unwrap(), b.join().unwrap()]
    });
    let [a, b] = first.map(|o| parse_response(&o.expect("curl").stdout));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(a.2, b"run 1");
    assert_eq!(b.2, b"run 1");
    assert_eq!(
        header(&a.1, "x-gearman-job-handle"),
        header(&b.1, "x-gearman-job-handle")
    );
}

#[test]
fn priorities_order_queued_background_jobs() {
    let fx = start(|_| {});
    for (prio, data) in [
        ("low", "l1"),
        ("normal", "n1"),
        ("high", "h1"),
        ("low", "l2"),
        ("HIGH", "h2"),
        ("", "n2"),
    ] {
        let mut args = vec!["-H", "X-Gearman-Background: true", "--data-binary", data];
        let h = format!("X-Gearman-Priority: {prio}");
        if !prio.is_empty() {
            args.extend(["-H", &h]);
        }
        let url = fx.url("/ordered");
        args.push(&url);
        let (status, _, _) = curl_i(&args);
        assert_eq!(status, 200);
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let _w = fx.worker("ordered", move |job: Job| {
        s.lock()
            .unwrap()
            .push(String::from_utf8_lossy(job.data()).into_owned());
        async move {
            let _ = job.complete("");
        }
    });
    fx.wait_status("ordered", |total, _, _| total == 0);
    assert_eq!(
        *seen.lock().unwrap(),
        ["h1", "h2", "n1", "n2", "l1", "l2"].map(String::from)
    );
    let (status, _, body) = curl_i(&["-H", "X-Gearman-Priority: urgent", &fx.url("/ordered")]);
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn work_data_is_streamed_before_the_job_completes() {
    let fx = start(|_| {});
    let release = Arc::new(Notify::new());
    let r = release.clone();
    let _w = fx.worker("stream", move |job: Job| {
        let r = r.clone();
        async move {
            let _ = job.send_data("part1;");
            let _ = job.send_warning("ignored");
            let _ = job.send_data("part2;");
            r.notified().await;
            let _ = job.complete("end");
        }
    });
    let mut s = TcpStream::connect(fx.http).unwrap();
    s.write_all(b"POST /stream HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx")
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, b"part2;");
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{text}"
    );
    assert!(!text.contains("end"), "{text}");
    release.notify_one();
    read_until(&mut s, &mut got, b"0\r\n\r\n");
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.contains("3\r\nend\r\n0\r\n\r\n"), "{text}");
    // The connection stays usable (keep-alive).
    release.notify_one();
    s.write_all(b"POST /stream HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\ny")
        .unwrap();
    let mut again = Vec::new();
    read_until(&mut s, &mut again, b"0\r\n\r\n");
    // A client that accepts trailers learns how it ended.
    release.notify_one();
    s.write_all(b"POST /stream HTTP/1.1\r\nHost: t\r\nTE: trailers\r\nContent-Length: 1\r\n\r\ny")
        .unwrap();
    let mut trailed = Vec::new();
    read_until(
        &mut s,
        &mut trailed,
        b"end\r\n0\r\nx-gearman-command: WORK_COMPLETE\r\n\r\n",
    );
    // curl -N sees the same body; HTTP/1.0 gets it in one piece.
    release.notify_one();
    let out = curl(&["-N", "-d", "x", &fx.url("/stream")]);
    assert_eq!(out.stdout, b"part1;part2;end");
    release.notify_one();
    let (status, headers, body) = curl_i(&["-0", "-d", "x", &fx.url("/stream")]);
    assert_eq!((status, &body[..]), (200, &b"part1;part2;end"[..]));
    assert_eq!(header(&headers, "x-gearman-command"), Some("WORK_COMPLETE"));
    fx.wait_no_http_peers();
}

#[test]
fn a_failure_after_streamed_data_aborts_the_response() {
    let fx = start(|_| {});
    let _w = fx.worker("half", |job: Job| async move {
        let _ = job.send_data("some");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = job.fail();
    });
    let out = curl(&["-d", "x", &fx.url("/half")]);
    // curl: "transfer closed with outstanding read data remaining" (18).
    assert_eq!(out.status.code(), Some(18), "{out:?}");
    assert_eq!(out.stdout, b"some");
    fx.still_serves_with_worker();
}

impl Fixture {
    fn still_serves_with_worker(&self) {
        let w = self.worker("rev", reverse);
        self.still_serves();
        drop(w);
    }
}

#[test]
fn work_fail_and_exception_are_500_with_a_message() {
    let fx = start(|_| {});
    let _f = fx.worker("fail", |job: Job| async move {
        let _ = job.fail();
    });
    let _e = fx.worker("boom", |job: Job| async move {
        let _ = job.exception("kaput \"badly\"");
    });
    let (status, headers, body) = curl_i(&["-d", "x", &fx.url("/fail")]);
    assert_eq!(status, 500);
    assert_eq!(header(&headers, "x-gearman-command"), Some("WORK_FAIL"));
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let h = header(&headers, "x-gearman-job-handle")
        .unwrap()
        .to_string();
    assert_eq!(
        String::from_utf8_lossy(&body).trim(),
        format!(r#"{{"error": "the job failed", "handle": "{h}"}}"#)
    );
    let (status, headers, body) = curl_i(&["-d", "x", &fx.url("/boom")]);
    assert_eq!(status, 500);
    assert_eq!(
        header(&headers, "x-gearman-command"),
        Some("WORK_EXCEPTION")
    );
    let h = header(&headers, "x-gearman-job-handle")
        .unwrap()
        .to_string();
    assert_eq!(
        String::from_utf8_lossy(&body).trim(),
        format!(r#"{{"error": "kaput \"badly\"", "handle": "{h}"}}"#)
    );
    fx.wait_no_http_peers();
}

#[test]
fn no_worker_is_503_and_a_timeout_504() {
    let fx = start(|_| {});
    let (status, headers, body) = curl_i(&["-d", "x", &fx.url("/nobody")]);
    assert_eq!(status, 503);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert!(body.starts_with(b"{\"error\": \"no worker"), "{body:?}");
    // With a timeout the job is queued and waited for.
    let started = Instant::now();
    let (status, headers, body) = curl_i(&[
        "-H",
        "X-Gearman-Timeout: 300",
        "-d",
        "x",
        &fx.url("/nobody"),
    ]);
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
    assert!(started.elapsed() >= Duration::from_millis(300));
    let h = header(&headers, "x-gearman-job-handle")
        .unwrap()
        .to_string();
    assert_eq!(
        String::from_utf8_lossy(&body).trim(),
        format!(r#"{{"error": "the job did not finish within 300 ms", "handle": "{h}"}}"#)
    );
    // A worker slower than the timeout: 504 as well; one in time: 200.
    let _w = fx.worker("sleepy", |job: Job| async move {
        let ms: u64 = String::from_utf8_lossy(job.data()).parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let _ = job.complete("woke");
    });
    let (status, _, _) = curl_i(&[
        "-H",
        "X-Gearman-Timeout: 200",
        "-d",
        "2000",
        &fx.url("/sleepy"),
    ]);
    assert_eq!(status, 504);
    let (status, _, body) = curl_i(&[
        "-H",
        "X-Gearman-Timeout: 5000",
        "-d",
        "10",
        &fx.url("/sleepy"),
    ]);
    assert_eq!((status, &body[..]), (200, &b"woke"[..]));
    let (status, _, _) = curl_i(&["-H", "X-Gearman-Timeout: soon", &fx.url("/sleepy")]);
    assert_eq!(status, 400);
    fx.wait_no_http_peers();
}

#[test]
fn sixteen_mib_round_trip() {
    let fx = start(|_| {});
    let _w = fx.worker("echo", |job: Job| async move {
        let d = job.data().clone();
        let _ = job.complete(d);
    });
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let output = dir.path().join("out");
    let data: Vec<u8> = (0..16 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    std::fs::write(&input, &data).unwrap();
    let at = format!("@{}", input.display());
    let out = curl(&[
        "--data-binary",
        &at,
        "-o",
        output.to_str().unwrap(),
        "-w",
        "%{http_code}",
        &fx.url("/echo"),
    ]);
    assert_eq!(out.stdout, b"200", "{out:?}");
    assert!(
        std::fs::read(&output).unwrap() == data,
        "the result differs"
    );
}

#[test]
fn malformed_and_refused_requests_leave_the_server_serving() {
    let fx = start(|c| c.max_packet = 1024);
    let _w = fx.worker("rev", reverse);
    let quick = Duration::from_secs(5);
    // Unknown method.
    let (status, headers, _) = curl_i(&["-X", "DELETE", &fx.url("/rev")]);
    assert_eq!(status, 405);
    assert_eq!(header(&headers, "allow"), Some("GET, POST, PUT"));
    // HTTP/1.0 POST without Content-Length.
    let r = raw_exchange(fx.http, b"POST /rev HTTP/1.0\r\n\r\nabc", quick);
    assert!(
        r.starts_with(b"HTTP/1.0 411"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    // A body over max_packet, declared or chunked.
    let big = "x".repeat(2000);
    let (status, _, _) = curl_i(&["--data-binary", &big, &fx.url("/rev")]);
    assert_eq!(status, 413);
    let (status, _, _) = curl_i(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &big,
        &fx.url("/rev"),
    ]);
    assert_eq!(status, 413);
    // No function, a NUL in it; a unique over 64 bytes (the server's ERROR).
    let (status, _, _) = curl_i(&["-d", "x", &fx.url("/")]);
    assert_eq!(status, 400);
    let (status, _, _) = curl_i(&["-d", "x", &fx.url("/r%00ev")]);
    assert_eq!(status, 400);
    let long_unique = format!("X-Gearman-Unique: {}", "u".repeat(65));
    let (status, _, body) = curl_i(&["-H", &long_unique, "-d", "x", &fx.url("/rev")]);
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    // Garbage; a bad header line; an invalid Content-Length.
    let r = raw_exchange(fx.http, b"GARBAGE\r\n\r\n", quick);
    assert!(
        r.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    let r = raw_exchange(fx.http, b"POST /rev HTTP/1.1\r\nbad header\r\n\r\n", quick);
    assert!(
        r.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    let r = raw_exchange(
        fx.http,
        b"POST /rev HTTP/1.1\r\nContent-Length: nine\r\n\r\n",
        quick,
    );
    assert!(
        r.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    // Connections closed mid-headers and mid-body.
    let mut s = TcpStream::connect(fx.http).unwrap();
    s.write_all(b"POST /rev HT").unwrap();
    drop(s);
    let mut s = TcpStream::connect(fx.http).unwrap();
    s.write_all(b"POST /rev HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly ten..")
        .unwrap();
    drop(s);
    fx.still_serves();
    fx.wait_no_http_peers();
}

#[test]
fn a_client_that_goes_away_leaves_no_peer_behind() {
    let fx = start(|_| {});
    let release = Arc::new(Notify::new());
    let r = release.clone();
    let _w = fx.worker("hold", move |job: Job| {
        let r = r.clone();
        async move {
            let _ = job.send_data("first");
            r.notified().await;
            let _ = job.complete("done");
        }
    });
    // Gone while waiting for the result (HTTP/1.0: not streamed).
    let mut s = TcpStream::connect(fx.http).unwrap();
    s.write_all(b"POST /hold HTTP/1.0\r\nContent-Length: 1\r\n\r\nx")
        .unwrap();
    fx.wait_status("hold", |_, running, _| running == 1);
    assert_eq!(fx.http_peers(), 1);
    drop(s);
    fx.wait_no_http_peers();
    release.notify_one();
    fx.wait_status("hold", |total, _, _| total == 0);
    // Gone in the middle of a streamed result.
    let mut s = TcpStream::connect(fx.http).unwrap();
    s.write_all(b"POST /hold HTTP/1.1\r\nContent-Length: 1\r\n\r\nx")
        .unwrap();
    read_until(&mut s, &mut Vec::new(), b"first");
    assert_eq!(fx.http_peers(), 1);
    drop(s);
    fx.wait_no_http_peers();
    release.notify_one();
    fx.wait_status("hold", |total, _, _| total == 0);
    let _r = fx.worker("rev", reverse);
    fx.still_serves();
}

#[test]
fn keep_alive_reuses_one_connection() {
    let fx = start(|_| {});
    let _w = fx.worker("rev", reverse);
    let out = curl(&[
        "-v",
        "-d",
        "ab",
        &fx.url("/rev"),
        &fx.url("/rev"),
        &fx.url("/rev"),
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("Re-using existing connection").count(),
        2,
        "{log}"
    );
    assert_eq!(out.stdout, b"bababa");
    // HTTP/1.0 with Keep-Alive too.
    let out = curl(&[
        "-v",
        "-0",
        "-H",
        "Connection: keep-alive",
        "-d",
        "ab",
        &fx.url("/rev"),
        &fx.url("/rev"),
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("Re-using existing connection"), "{log}");
    assert_eq!(out.stdout, b"baba");
}

#[test]
fn router_serves_metrics_and_dashboard_paths() {
    let fx = start(|_| {});
    let (status, headers, _) = curl_i(&[&fx.url("/metrics")]);
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(header(&headers, "server").is_some_and(|s| s.starts_with("polygeard/")));
    // POST /metrics is a job for the function `metrics`.
    let (status, _, _) = curl_i(&["-d", "x", &fx.url("/metrics")]);
    assert_eq!(status, 503);
}

#[test]
fn durable_background_job_is_stored_before_200() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.sqlite3");
    let cfg = |c: &mut ServerConfig| {
        c.queue = QueueConfig::Sqlite { path: db.clone() };
    };
    let fx = start(cfg);
    let (status, _, handle) = curl_i(&[
        "-H",
        "X-Gearman-Background: true",
        "-d",
        "kept",
        &fx.url("/durable"),
    ]);
    assert_eq!((status, &handle[..]), (200, &b"H:t:1"[..]));
    drop(fx);
    // A new server on the same file runs it.
    let fx = start(cfg);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let _w = fx.worker("durable", move |job: Job| {
        s.lock().unwrap().push(job.data().to_vec());
        async move {
            let _ = job.complete("");
        }
    });
    fx.wait_status("durable", |total, _, _| total == 0);
    assert_eq!(*seen.lock().unwrap(), vec![b"kept".to_vec()]);
}

#[test]
fn stopping_the_server_closes_http_connections() {
    let mut fx = start(|_| {});
    let idle = TcpStream::connect(fx.http).unwrap();
    let mut waiting = TcpStream::connect(fx.http).unwrap();
    waiting
        .write_all(b"POST /none HTTP/1.1\r\nX-Gearman-Timeout: 60000\r\nContent-Length: 1\r\n\r\nx")
        .unwrap();
    fx.wait_status("none", |total, _, _| total == 1);
    let started = Instant::now();
    fx.server.take().unwrap().stop();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        TcpStream::connect(fx.http).is_err(),
        "the HTTP port still accepts"
    );
    drop(idle);
}

#[test]
fn polygeard_flags_and_graceful_stop() {
    let bin = env!("CARGO_BIN_EXE_polygeard");
    let out = Command::new(bin)
        .args(["-q", "builtin", "-p", "0", "-r", "gopher"])
        .output()
        .expect("run polygeard");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown protocol \"gopher\""),
        "{out:?}"
    );
    let help = Command::new(bin).arg("--help").output().expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--protocol") && help.contains("--http-port"),
        "{help}"
    );

    let http_port = common::free_port();
    let hp = http_port.to_string();
    let mut server = common::polygeard(&["-q", "builtin", "-r", "http", "--http-port", &hp]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let release = Arc::new(Notify::new());
    let r = release.clone();
    let w = Worker::new(WorkerOptions {
        servers: vec![server.addr()],
        ..WorkerOptions::default()
    })
    .unwrap();
    w.register("hold", None).unwrap();
    let run = w.clone();
    rt.spawn(async move {
        let _ = run
            .run(move |job: Job| {
                let r = r.clone();
                async move {
                    r.notified().await;
                    let _ = job.complete("done");
                }
            })
            .await;
    });
    let url = format!("http://127.0.0.1:{http_port}/hold");
    let mut admin = Raw::connect(server.addr().port);
    let waiting = std::thread::spawn({
        let url = url.clone();
        move || {
            // Retried until the worker is registered (503 before).
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let out = curl(&["-i", "-d", "x", &url]);
                let (status, _, body) = parse_response(&out.stdout);
                if status != 503 || Instant::now() > deadline {
                    return (status, body);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !admin.admin("status").contains("hold\t1\t1\t1") {
        assert!(Instant::now() < deadline, "the job never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Graceful: the HTTP port stops accepting, the waiting request is answered.
    server.signal("-USR1");
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", http_port)).is_ok() {
        assert!(Instant::now() < deadline, "the HTTP port still accepts");
        std::thread::sleep(Duration::from_millis(10));
    }
    release.notify_one();
    let (status, body) = waiting.join().unwrap();
    assert_eq!((status, &body[..]), (200, &b"done"[..]));
    assert!(server.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn a_body_over_the_memory_budget_is_refused() {
    let fx = start(|c| c.max_buffered = 512 << 10);
    let _w = fx.worker("rev", reverse);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::write(&input, vec![b'x'; 1 << 20]).unwrap();
    let at = format!("@{}", input.display());
    let (status, _, body) = curl_i(&["--data-binary", &at, &fx.url("/rev")]);
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("--max-buffered"));
    fx.still_serves();
}

/// Reads one response with a `Content-Length` from a keep-alive connection.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, Vec<u8>) {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let (status, headers, _) = parse_response(&buf[..end + 4]);
            let len: usize = header(&headers, "content-length")
                .and_then(|v| v.parse().ok())
                .expect("content-length");
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                return (status, body);
            }
        }
        let n = s.read(&mut chunk).expect("read response");
        assert!(n > 0, "closed mid-response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn many_clients_with_keep_alive_and_pipelining() {
    let fx = start(|_| {});
    let _a = fx.worker("rev", reverse);
    let _b = fx.worker("rev", reverse);
    std::thread::scope(|scope| {
        for t in 0..16 {
            let addr = fx.http;
            scope.spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut buf = Vec::new();
                for i in 0..25 {
                    // Two requests per write: the second waits for the first.
                    let (x, y) = (format!("{t}-{i}-x"), format!("{t}-{i}-y"));
                    let mut req = Vec::new();
                    for body in [&x, &y] {
                        req.extend_from_slice(
                            format!(
                                "POST /rev HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        );
                    }
                    s.write_all(&req).unwrap();
                    for body in [&x, &y] {
                        let (status, got) = read_response(&mut s, &mut buf);
                        let want: Vec<u8> = body.bytes().rev().collect();
                        assert_eq!((status, got), (200, want));
                    }
                }
            });
        }
    });
    fx.wait_no_http_peers();
}

#[test]
fn a_job_the_server_failed_says_why() {
    let fx = start(|_| {});
    let port = fx.port();
    // A raw worker with a 1 s CAN_DO_TIMEOUT that never answers its job.
    let worker = std::thread::spawn(move || {
        let mut w = Raw::connect(port);
        w.send(&polygear::Packet::CanDoTimeout {
            function: "stuck".into(),
            timeout: 1000,
        });
        let limit = Instant::now() + Duration::from_secs(20);
        while Instant::now() < limit {
            w.send(&polygear::Packet::GrabJob);
            match w.recv() {
                polygear::Packet::JobAssign { .. } => return Some(w),
                polygear::Packet::NoJob => std::thread::sleep(Duration::from_millis(20)),
                other => panic!("worker got {other:?}"),
            }
        }
        None
    });
    fx.wait_status("stuck", |_, _, workers| workers > 0);
    let (status, headers, body) = curl_i(&["-d", "x", &fx.url("/stuck")]);
    assert!(worker.join().unwrap().is_some(), "the worker got no job");
    assert_eq!(status, 500);
    assert_eq!(header(&headers, "x-gearman-command"), Some("WORK_FAIL"));
    let h = header(&headers, "x-gearman-job-handle")
        .unwrap()
        .to_string();
    assert_eq!(
        String::from_utf8_lossy(&body).trim(),
        format!(
            r#"{{"error": "the job failed: the worker exceeded its 1 s timeout", "handle": "{h}"}}"#
        )
    );
}
