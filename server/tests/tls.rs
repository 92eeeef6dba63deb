//! TLS on the Gearman port: polygear's client, worker and admin against a
//! polygeard started with TLS (and with mutual TLS), the refusals a user
//! meets (unknown CA, expired certificate, no client certificate, a client
//! certificate from another CA, plain text on a TLS port), and `openssl
//! s_client` speaking the binary and the admin protocol through it.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use polygear::{
    Admin, Client, ClientOptions, Error, ServerAddr, SubmitOptions, TlsOptions, Worker,
    WorkerOptions,
};
use polygear_server::{BackgroundServer, ServerConfig, TlsConfig};
use polygear_test_support::certs::{Ca, Pem};

struct Pki {
    _dir: tempfile::TempDir,
    ca: Ca,
    other_ca: Ca,
    server: Pem,
    expired: Pem,
    client: Pem,
    stranger: Pem,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let other_ca = Ca::new(dir.path(), "other-ca");
    Pki {
        server: ca.server("server"),
        expired: ca.expired_server("expired"),
        client: ca.client("client"),
        stranger: other_ca.client("stranger"),
        ca,
        other_ca,
        _dir: dir,
    }
}

fn tls_server(server: &Pem, ca: Option<&Pem>, verify_clients: bool) -> BackgroundServer {
    BackgroundServer::start(ServerConfig {
        tls: Some(TlsConfig {
            cert_file: server.cert.clone(),
            key_file: server.key.clone(),
            ca_file: ca.map(|c| c.cert.clone()),
            verify_clients,
        }),
        ..ServerConfig::default()
    })
    .expect("start TLS server")
}

fn trust(ca: &Pem, client: Option<&Pem>) -> TlsOptions {
    TlsOptions {
        ca_file: Some(ca.cert.clone()),
        cert_file: client.map(|c| c.cert.clone()),
        key_file: client.map(|c| c.key.clone()),
        server_name: None,
    }
}

fn addr(s: &BackgroundServer) -> ServerAddr {
    ServerAddr::new("127.0.0.1", s.port())
}

fn client(s: &BackgroundServer, tls: Option<TlsOptions>) -> Client {
    Client::new(ClientOptions {
        servers: vec![addr(s)],
        connect_timeout: Duration::from_secs(5),
        submit_timeout: Duration::from_secs(5),
        job_timeout: Some(Duration::from_secs(20)),
        tls,
        ..ClientOptions::default()
    })
    .unwrap()
}

/// A worker echoing every `echo` job (reversed for `rev`), in the background.
fn worker(s: &BackgroundServer, tls: Option<TlsOptions>) -> Worker {
    let w = Worker::new(WorkerOptions {
        servers: vec![addr(s)],
        concurrency: 4,
        tls,
        ..WorkerOptions::default()
    })
    .unwrap();
    w.register("echo", None).unwrap();
    let run = w.clone();
    tokio::spawn(async move {
        run.run(|job| async move {
            let data = job.data().clone();
            let _ = job.send_data(data.slice(..data.len().min(3)));
            let _ = job.complete(data);
        })
        .await
    });
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_over_tls_in_both_directions() {
    let p = pki();
    let s = tls_server(&p.server, None, false);
    let w = worker(&s, Some(trust(&p.ca.pem, None)));
    let c = client(&s, Some(trust(&p.ca.pem, None)));
    assert_eq!(
        c.submit("echo", "over TLS", SubmitOptions::default())
            .await
            .unwrap(),
        "over TLS"
    );
    // Large payloads both ways (full sockets, records left inside the
    // session for the writer task) and many jobs in flight at once.
    let big: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
    let got = c
        .submit("echo", big.clone(), SubmitOptions::default())
        .await
        .unwrap();
    assert!(got == big, "8 MiB came back changed");
    let jobs: Vec<_> = (0..200)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                c.submit("echo", format!("job {i}"), SubmitOptions::default())
                    .await
            })
        })
        .collect();
    for (i, j) in jobs.into_iter().enumerate() {
        assert_eq!(j.await.unwrap().unwrap(), format!("job {i}"));
    }
    let mut admin = Admin::connect_with(
        &addr(&s),
        Duration::from_secs(5),
        Some(&trust(&p.ca.pem, None)),
    )
    .await
    .unwrap();
    let status = admin.status().await.unwrap();
    assert!(status
        .iter()
        .any(|f| f.function == "echo" && f.workers == 1));
    w.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_a_certificate_from_the_servers_ca() {
    let p = pki();
    let s = tls_server(&p.server, Some(&p.ca.pem), true);
    let w = worker(&s, Some(trust(&p.ca.pem, Some(&p.client))));
    let c = client(&s, Some(trust(&p.ca.pem, Some(&p.client))));
    assert_eq!(
        c.submit("echo", "mutual", SubmitOptions::default())
            .await
            .unwrap(),
        "mutual"
    );

    for (who, cert) in [
        ("no certificate", None),
        ("another CA's", Some(&p.stranger)),
    ] {
        let refused = client(&s, Some(trust(&p.ca.pem, cert)));
        let err = refused
            .submit("echo", "x", SubmitOptions::default())
            .await
            .expect_err(who);
        let text = err.to_string();
        assert!(
            text.contains("client certificate"),
            "{who}: the error names the client certificate: {text}"
        );
        assert_eq!(err.kind(), polygear::ErrorKind::Connection, "{who}: {text}");
    }
    w.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_the_client_cannot_trust_is_refused_clearly() {
    let p = pki();
    let s = tls_server(&p.server, None, false);
    let err = client(&s, Some(trust(&p.other_ca.pem, None)))
        .submit("echo", "x", SubmitOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("TLS handshake failed") && text.contains("UnknownIssuer"),
        "{text}"
    );

    let expired = tls_server(&p.expired, None, false);
    let err = client(&expired, Some(trust(&p.ca.pem, None)))
        .submit("echo", "x", SubmitOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("certificate expired"), "{text}");

    let wrong_name = client(
        &s,
        Some(TlsOptions {
            server_name: Some("gearman.example".into()),
            ..trust(&p.ca.pem, None)
        }),
    );
    let text = wrong_name
        .submit("echo", "x", SubmitOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(text.contains("not valid for name"), "{text}");

    let missing = Client::new(ClientOptions {
        tls: Some(TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        }),
        ..ClientOptions::default()
    })
    .unwrap_err();
    assert!(matches!(missing, Error::InvalidArgument(_)));
    assert!(missing.to_string().contains("/nonexistent/ca.pem"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_on_a_tls_port_is_told_tls_is_required() {
    let p = pki();
    let s = tls_server(&p.server, None, false);
    // A Gearman client without TLS gets an ERROR packet, then the close.
    let err = client(&s, None)
        .submit("echo", "x", SubmitOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("TLS"), "{text}");
    // An admin line gets an ERR line.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", s.port())).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.write_all(b"status\n").unwrap();
    let mut reply = String::new();
    raw.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("ERR TLS_REQUIRED "), "{reply:?}");
    // The server is fine afterwards.
    let c = client(&s, Some(trust(&p.ca.pem, None)));
    let w = worker(&s, Some(trust(&p.ca.pem, None)));
    assert_eq!(
        c.submit("echo", "still fine", SubmitOptions::default())
            .await
            .unwrap(),
        "still fine"
    );
    w.stop();
}

/// `openssl s_client` as the peer: writes `input` and reads until `enough`
/// says so, the peer closes, or 10 s pass.
fn s_client(
    port: u16,
    ca: &Pem,
    cert: Option<&Pem>,
    input: &[u8],
    enough: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-quiet", "-verify_return_error"])
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .arg("-CAfile")
        .arg(&ca.cert);
    if let Some(c) = cert {
        cmd.arg("-cert").arg(&c.cert).arg("-key").arg(&c.key);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl (Debian package openssl) runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while !enough(&got) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => got.extend_from_slice(&chunk),
            Err(_) => break,
        }
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    got
}

#[test]
fn openssl_s_client_speaks_the_binary_and_admin_protocols() {
    let p = pki();
    let s = tls_server(&p.server, Some(&p.ca.pem), true);
    // ECHO_REQ "hello", then the admin `version` line on the same connection.
    let mut input = b"\0REQ\0\0\0\x10\0\0\0\x05hello".to_vec();
    input.extend_from_slice(b"version\n");
    let both = |got: &[u8]| got.len() > 17 && got.ends_with(b"\n");
    let got = s_client(s.port(), &p.ca.pem, Some(&p.client), &input, both);
    assert!(
        got.starts_with(b"\0RES\0\0\0\x11\0\0\0\x05hello"),
        "ECHO_RES through TLS: {got:?}"
    );
    let text = String::from_utf8_lossy(&got[17..]);
    assert!(text.starts_with("OK "), "{text:?}");
    // Without a client certificate the mutual-TLS server answers nothing
    // and closes.
    let refused = s_client(s.port(), &p.ca.pem, None, &input, |_| false);
    assert!(refused.is_empty(), "{refused:?}");
}

fn https_server(p: &Pki, verify_clients: bool) -> BackgroundServer {
    BackgroundServer::start(ServerConfig {
        http_port: Some(0),
        tls: Some(TlsConfig {
            cert_file: p.server.cert.clone(),
            key_file: p.server.key.clone(),
            ca_file: Some(p.ca.pem.cert.clone()),
            verify_clients,
        }),
        ..ServerConfig::default()
    })
    .expect("start HTTPS server")
}

/// curl's status line code and body (`-s`, no `-f`), or its exit code.
fn curl(args: &[&str]) -> Result<(u16, String), i32> {
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl (Debian package curl) runs");
    if !out.status.success() {
        return Err(out.status.code().unwrap_or(-1));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    Ok((code.parse().unwrap(), body.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_port_speaks_tls_too() {
    let p = pki();
    let s = https_server(&p, false);
    let w = worker(&s, Some(trust(&p.ca.pem, None)));
    let port = s.http_addr().unwrap().port();
    let url = format!("https://localhost:{port}/echo");
    let ca = p.ca.pem.cert.to_str().unwrap().to_string();
    let (code, body) = tokio::task::spawn_blocking({
        let (url, ca) = (url.clone(), ca.clone());
        move || curl(&["--cacert", &ca, "--data-binary", "via HTTPS", &url])
    })
    .await
    .unwrap()
    .unwrap();
    // The worker's WORK_DATA ("via") streams ahead of its result.
    assert_eq!((code, body.as_str()), (200, "viavia HTTPS"));
    // curl refuses the server without the CA (exit 60: peer certificate).
    let untrusted = tokio::task::spawn_blocking({
        let url = url.clone();
        move || curl(&["--data-binary", "x", &url])
    })
    .await
    .unwrap();
    assert_eq!(untrusted, Err(60));
    // Plain HTTP on the TLS port: a 400 saying TLS is required.
    let plain = format!("http://127.0.0.1:{port}/echo");
    let (code, body) = tokio::task::spawn_blocking(move || curl(&["--data-binary", "x", &plain]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 400);
    assert!(body.contains("requires TLS"), "{body}");
    w.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_on_the_http_port_needs_a_client_certificate() {
    let p = pki();
    let s = https_server(&p, true);
    let w = worker(&s, Some(trust(&p.ca.pem, Some(&p.client))));
    let port = s.http_addr().unwrap().port();
    let url = format!("https://127.0.0.1:{port}/echo");
    let ca = p.ca.pem.cert.to_str().unwrap().to_string();
    let cert = p.client.cert.to_str().unwrap().to_string();
    let key = p.client.key.to_str().unwrap().to_string();
    let with = {
        let (url, ca) = (url.clone(), ca.clone());
        tokio::task::spawn_blocking(move || {
            curl(&[
                "--cacert",
                &ca,
                "--cert",
                &cert,
                "--key",
                &key,
                "--data-binary",
                "mutual",
                &url,
            ])
        })
    };
    assert_eq!(with.await.unwrap().unwrap(), (200, "mutmutual".to_string()));
    let without =
        tokio::task::spawn_blocking(move || curl(&["--cacert", &ca, "--data-binary", "x", &url]));
    // curl fails in the handshake or on the server's alert (35 or 56).
    let code = without.await.unwrap().unwrap_err();
    assert!(matches!(code, 35 | 56), "curl exit {code}");
    w.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_client_certificate_authorises_the_dashboards_actions() {
    let p = pki();
    // Mutual TLS and no --admin-token: the certificate is the credential.
    let s = https_server(&p, true);
    let c = client(&s, Some(trust(&p.ca.pem, Some(&p.client))));
    c.submit_background("queued", "x", SubmitOptions::default())
        .await
        .unwrap();
    let port = s.http_addr().unwrap().port();
    let (ca, cert, key) = (
        p.ca.pem.cert.to_str().unwrap().to_string(),
        p.client.cert.to_str().unwrap().to_string(),
        p.client.key.to_str().unwrap().to_string(),
    );
    let drop_url = format!("https://127.0.0.1:{port}/api/drop");
    let (code, body) = tokio::task::spawn_blocking(move || {
        curl(&[
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"{"function": "queued"}"#,
            &drop_url,
        ])
    })
    .await
    .unwrap()
    .unwrap();
    // Authorised: refused only because the function still has a job (409),
    // not for want of a token (403).
    assert_eq!(code, 409, "{body}");
}
