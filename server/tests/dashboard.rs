//! The dashboard and `/metrics` over polygeard's real HTTP listener: the
//! router hands `/`, `/dashboard/…` and `/api/…` to the dashboard, and the
//! token rules hold end to end (the counters themselves are checked by the
//! library's `stats_tests`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use polygear_server::{BackgroundServer, ServerConfig};

/// One HTTP/1.1 request on its own connection: (status, head, body).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head[9..12].parse().unwrap();
    let mut body = raw[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

fn server(token: Option<&str>) -> (BackgroundServer, SocketAddr) {
    let server = BackgroundServer::start(ServerConfig {
        http_port: Some(0),
        admin_token: token.map(str::to_string),
        ..ServerConfig::default()
    })
    .unwrap();
    let http = server.http_addr().unwrap();
    (server, http)
}

#[test]
fn page_script_style_and_metrics_are_served() {
    let (_server, http) = server(None);
    let (status, head, body) = request(http, "GET", "/", &[], b"");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    assert!(String::from_utf8_lossy(&body).contains("<script src=\"/dashboard/app.js\">"));
    let (status, _, body) = request(http, "GET", "/dashboard/app.js", &[], b"");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("/api/status"));
    let (status, _, _) = request(http, "GET", "/dashboard/app.css", &[], b"");
    assert_eq!(status, 200);
    let (status, _, _) = request(http, "GET", "/dashboard/nothing", &[], b"");
    assert_eq!(status, 404);
    let (status, _, body) = request(http, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    for name in [
        "# TYPE polygear_jobs_submitted counter",
        "# TYPE polygear_jobs counter",
        "# TYPE polygear_jobs_queued gauge",
        "# TYPE polygear_jobs_running gauge",
        "# TYPE polygear_workers gauge",
        "# TYPE polygear_job_queue_wait_seconds histogram",
        "# TYPE polygear_job_run_seconds histogram",
        "polygear_connections 0",
        "polygear_connections_accepted_total 0",
        "polygear_queue_commit_seconds_count 0",
        "polygear_queue_commit_batch_size_bucket{le=\"+Inf\"} 0",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn actions_over_http_need_the_token() {
    let (server, http) = server(Some("t0k"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = polygear::Client::new(polygear::ClientOptions {
        servers: vec![polygear::ServerAddr::new("127.0.0.1", server.port())],
        ..Default::default()
    })
    .unwrap();
    let handle = rt
        .block_on(client.submit_background("f", "x", Default::default()))
        .unwrap();
    let body = format!("{{\"handle\":\"{handle}\"}}");
    let json = ["Content-Type: application/json"];
    let (status, _, reply) = request(http, "POST", "/api/cancel", &json, body.as_bytes());
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&reply));
    let (status, _, _) = request(
        http,
        "POST",
        "/api/cancel",
        &["Authorization: Bearer nope"],
        body.as_bytes(),
    );
    assert_eq!(status, 403);
    let (status, _, reply) = request(http, "GET", "/api/jobs?function=f", &[], b"");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&reply).contains(&handle));
    let (status, _, reply) = request(
        http,
        "POST",
        "/api/cancel",
        &["Authorization: Bearer t0k"],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    let (_, _, reply) = request(http, "GET", "/api/status", &[], b"");
    let status: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(status["functions"][0]["queued"]["normal"], 0);
    assert_eq!(status["jobs"], 0);
    let (status, _, _) = request(
        http,
        "POST",
        "/api/drop",
        &["Authorization: Bearer t0k"],
        b"{\"function\":\"f\"}",
    );
    assert_eq!(status, 200);
    // A body beyond the limit is refused before it is parsed.
    let big = vec![b' '; 100 * 1024];
    let (status, _, _) = request(
        http,
        "POST",
        "/api/cancel",
        &["Authorization: Bearer t0k"],
        &big,
    );
    assert_eq!(status, 413);
    rt.block_on(client.close());
}

/// The binary takes the token from `--admin-token` or, without it, from
/// `POLYGEARD_ADMIN_TOKEN`.
#[test]
fn polygeard_reads_the_token_from_the_flag_or_the_environment() {
    for (flag, env) in [
        (Some("from-flag"), Some("from-env")),
        (None, Some("from-env")),
    ] {
        let (port, http_port) = (
            polygear_test_support::free_port(),
            polygear_test_support::free_port(),
        );
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_polygeard"));
        cmd.args([
            "-q",
            "builtin",
            "-L",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--http-port",
            &http_port.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        if let Some(t) = flag {
            cmd.args(["--admin-token", t]);
        }
        if let Some(t) = env {
            cmd.env("POLYGEARD_ADMIN_TOKEN", t);
        }
        let mut child = cmd.spawn().unwrap();
        let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(http).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "polygeard did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let want = flag.or(env).unwrap();
        let body = br#"{"function":"none"}"#;
        for (token, status) in [(want, 404), ("from-env-not", 403)] {
            let auth = format!("Authorization: Bearer {token}");
            let (got, _, reply) = request(http, "POST", "/api/drop", &[&auth], body);
            assert_eq!(
                got,
                status,
                "{flag:?} {token}: {}",
                String::from_utf8_lossy(&reply)
            );
        }
        if flag.is_some() {
            let (got, _, _) = request(
                http,
                "POST",
                "/api/drop",
                &["Authorization: Bearer from-env"],
                body,
            );
            assert_eq!(got, 403, "the flag wins over the environment");
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
