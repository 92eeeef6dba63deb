//! `polygear -S` / `polygear admin --ssl` end to end against a `polygeard`
//! started with `--ssl` (and `--ssl-verify-client`): jobs and admin commands
//! over TLS, the files from libgearman's variables or the `--ssl-*` flags,
//! and the refusals a user meets (no client certificate, another CA, an
//! expired server certificate, a plain client on the TLS port, a missing
//! file), each as one clear line and a non-zero exit code.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use polygear_interop::certs::{Ca, Pem};
use polygear_interop::polygear_bin;

/// The certificates of one test, in a folder removed on drop.
struct Pki {
    dir: PathBuf,
    ca: Ca,
    server: Pem,
    expired: Pem,
    client: Pem,
    stranger: Pem,
    other_ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("polygear-cli-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Ca::new(&dir, "ca");
        let other_ca = Ca::new(&dir, "other-ca");
        Pki {
            server: ca.server("server"),
            expired: ca.expired_server("expired"),
            client: ca.client("client"),
            stranger: other_ca.client("stranger"),
            ca,
            other_ca,
            dir,
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `polygeard --ssl` on a free port; killed on drop.
struct TlsServer {
    port: u16,
    child: Child,
}

impl TlsServer {
    /// `server` is its certificate; with `clients_of` it requires client
    /// certificates signed by that CA (`--ssl-verify-client`).
    fn start(server: &Pem, clients_of: Option<&Pem>) -> TlsServer {
        let bin = polygear_bin("polygeard")
            .expect("polygeard is built (cargo build --bins -p polygear-server)");
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(&bin);
            cmd.args(["-L", "127.0.0.1", "-p", &port.to_string(), "-q", "builtin"])
                .arg("--ssl")
                .arg("--ssl-certificate")
                .arg(&server.cert)
                .arg("--ssl-key")
                .arg(&server.key)
                .env_remove("GEARMAND_CA_CERTIFICATE")
                .env_remove("GEARMAND_SERVER_PEM")
                .env_remove("GEARMAND_SERVER_KEY")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            if let Some(ca) = clients_of {
                cmd.arg("--ssl-ca-file")
                    .arg(&ca.cert)
                    .arg("--ssl-verify-client");
            }
            let mut child = cmd.spawn().expect("spawn polygeard");
            let deadline = Instant::now() + Duration::from_secs(15);
            let mut up = false;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken: try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    up = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if up {
                return TlsServer { port, child };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("polygeard --ssl did not start");
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `polygear -h 127.0.0.1 -p PORT` without any TLS variable from our own environment.
fn pg(s: &TlsServer) -> Command {
    let mut c = polygear(None);
    c.env_remove("GEARMAND_CA_CERTIFICATE")
        .env_remove("GEARMAN_CLIENT_PEM")
        .env_remove("GEARMAN_CLIENT_KEY")
        .args(["-h", "127.0.0.1", "-p", &s.port.to_string()]);
    c
}

/// `polygear admin -h 127.0.0.1 -p PORT` without TLS variables.
fn pg_admin(s: &TlsServer) -> Command {
    let mut c = polygear(None);
    c.env_remove("GEARMAND_CA_CERTIFICATE")
        .env_remove("GEARMAN_CLIENT_PEM")
        .env_remove("GEARMAN_CLIENT_KEY")
        .args(["admin", "-h", "127.0.0.1", "-p", &s.port.to_string()]);
    c
}

fn ca_flag(ca: &Pem) -> Vec<String> {
    vec!["--ssl-ca-file".into(), path(&ca.cert)]
}

fn client_flags(p: &Pem) -> Vec<String> {
    vec![
        "--ssl-certificate".into(),
        path(&p.cert),
        "--ssl-key".into(),
        path(&p.key),
    ]
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Waits (through `polygear admin` over TLS with `tls` flags) until
/// `function` has a worker.
fn wait_tls_worker(s: &TlsServer, tls: &[String], function: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = run(pg_admin(s).args(tls).arg("status"), b"");
        if o.text()
            .lines()
            .any(|l| l.starts_with(&format!("{function}\t")) && !l.ends_with("\t0"))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no worker for {function}: {:?} {}",
            o.text(),
            o.stderr
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn jobs_and_admin_run_over_tls_with_flags() {
    let p = Pki::new();
    let s = TlsServer::start(&p.server, None);
    let tls = ca_flag(&p.ca.pem);
    let _w = Proc::start(
        pg(&s).arg("-w").args(&tls).args(["-f", "rev", "--", "rev"]),
        b"",
    );
    wait_tls_worker(&s, &tls, "rev");
    let o = run(pg(&s).args(&tls).args(["-f", "rev"]), b"hello\n");
    assert_eq!(
        (o.code, o.text().as_str()),
        (Some(0), "olleh\n"),
        "{}",
        o.stderr
    );
    // --opt=VALUE and an explicit server name work too.
    let o = run(
        pg(&s)
            .arg(format!("--ssl-ca-file={}", path(&p.ca.pem.cert)))
            .args(["--ssl-server-name", "localhost", "-f", "rev", "abc"]),
        b"",
    );
    assert_eq!(
        (o.code, o.text().as_str()),
        (Some(0), "cba"),
        "{}",
        o.stderr
    );
    let v = run(pg_admin(&s).args(&tls).arg("getpid"), b"");
    assert_eq!(v.code, Some(0), "{}", v.stderr);
    assert_eq!(v.text().trim(), s.child.id().to_string());
}

#[test]
fn dash_s_reads_libgearmans_variables() {
    let p = Pki::new();
    let s = TlsServer::start(&p.server, Some(&p.ca.pem));
    let env = |c: &mut Command| {
        c.env("GEARMAND_CA_CERTIFICATE", &p.ca.pem.cert)
            .env("GEARMAN_CLIENT_PEM", &p.client.cert)
            .env("GEARMAN_CLIENT_KEY", &p.client.key);
    };
    let mut w = pg(&s);
    env(&mut w);
    let _w = Proc::start(
        w.args(["-w", "-S", "-f", "up", "--", "tr", "a-z", "A-Z"]),
        b"",
    );
    let mut a = pg_admin(&s);
    env(&mut a);
    let mut all = ca_flag(&p.ca.pem);
    all.extend(client_flags(&p.client));
    wait_tls_worker(&s, &all, "up");
    let mut c = pg(&s);
    env(&mut c);
    let o = run(c.args(["-S", "-f", "up", "mixed"]), b"");
    assert_eq!(
        (o.code, o.text().as_str()),
        (Some(0), "MIXED"),
        "{}",
        o.stderr
    );
    // gearadmin's spelling.
    let o = run(a.args(["--ssl", "--server-version"]), b"");
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(!o.text().trim().is_empty());
    // A flag overrides its variable: another CA's client certificate is refused.
    let mut c = pg(&s);
    env(&mut c);
    let o = run(
        c.args(["-S", "-t", "5000", "-f", "up"])
            .args(client_flags(&p.stranger))
            .arg("x"),
        b"",
    );
    assert_eq!(o.code, Some(3), "{o:?}");
}

#[test]
fn mutual_tls_needs_a_client_certificate_from_the_ca() {
    let p = Pki::new();
    let s = TlsServer::start(&p.server, Some(&p.ca.pem));
    let ca = ca_flag(&p.ca.pem);
    let mut good = ca.clone();
    good.extend(client_flags(&p.client));
    let o = run(pg_admin(&s).args(&good).arg("status"), b"");
    assert_eq!(
        (o.code, o.text().as_str()),
        (Some(0), ".\n"),
        "{}",
        o.stderr
    );

    for (what, flags) in [
        ("no client certificate", ca.clone()),
        ("another CA's client certificate", {
            let mut f = ca.clone();
            f.extend(client_flags(&p.stranger));
            f
        }),
    ] {
        let o = run(
            pg_admin(&s).args(&flags).args(["-t", "5000", "status"]),
            b"",
        );
        assert_eq!(o.code, Some(3), "{what}: {o:?}");
        assert!(
            o.stderr.contains("certificate"),
            "{what}: the reason names the certificate: {}",
            o.stderr
        );
        assert_eq!(
            o.stderr.trim_end().lines().count(),
            1,
            "{what}: {}",
            o.stderr
        );
        let o = run(
            pg(&s).args(&flags).args(["-t", "5000", "-f", "f", "x"]),
            b"",
        );
        assert_eq!(o.code, Some(3), "{what}: client {o:?}");
        let w = Proc::start(
            pg(&s)
                .arg("-w")
                .args(&flags)
                .args(["-t", "5000", "-f", "f"]),
            b"",
        )
        .finish();
        assert_eq!(w.code, Some(3), "{what}: worker {w:?}");
    }
}

#[test]
fn a_server_certificate_we_cannot_trust_is_refused() {
    let p = Pki::new();
    // Signed by a CA we do not trust.
    let s = TlsServer::start(&p.server, None);
    let other = ca_flag(&p.other_ca.pem);
    let o = run(pg_admin(&s).args(&other).arg("status"), b"");
    assert_eq!(o.code, Some(3), "{o:?}");
    assert!(
        o.stderr.contains("TLS handshake failed") && o.stderr.contains("UnknownIssuer"),
        "{}",
        o.stderr
    );
    let o = run(
        pg(&s).args(&other).args(["-t", "5000", "-f", "f", "x"]),
        b"",
    );
    assert_eq!(o.code, Some(3), "{o:?}");
    assert!(o.stderr.contains("UnknownIssuer"), "{}", o.stderr);
    // The worker fails at start instead of retrying forever.
    let w = Proc::start(pg(&s).args(&other).args(["-w", "-f", "f"]), b"").finish();
    assert_eq!(w.code, Some(3), "{w:?}");
    assert!(w.stderr.contains("UnknownIssuer"), "{}", w.stderr);
    // The wrong name.
    let o = run(
        pg_admin(&s).args(ca_flag(&p.ca.pem)).args([
            "--ssl-server-name",
            "gearman.example",
            "status",
        ]),
        b"",
    );
    assert_eq!(o.code, Some(3), "{o:?}");
    assert!(o.stderr.contains("not valid for name"), "{}", o.stderr);

    // Expired.
    let s = TlsServer::start(&p.expired, None);
    let o = run(pg_admin(&s).args(ca_flag(&p.ca.pem)).arg("status"), b"");
    assert_eq!(o.code, Some(3), "{o:?}");
    assert!(o.stderr.contains("certificate expired"), "{}", o.stderr);
}

#[test]
fn a_plain_client_on_the_tls_port_fails_quickly() {
    let p = Pki::new();
    let s = TlsServer::start(&p.server, None);
    let o = run(pg(&s).args(["-t", "5000", "-f", "f", "x"]), b"");
    assert!(matches!(o.code, Some(3) | Some(4)), "{o:?}");
    assert!(o.elapsed < Duration::from_secs(10), "{o:?}");
    assert_eq!(o.stderr.trim_end().lines().count(), 1, "{}", o.stderr);
    let o = run(pg_admin(&s).args(["-t", "5000", "status"]), b"");
    assert!(matches!(o.code, Some(1) | Some(3) | Some(4)), "{o:?}");
    assert!(o.elapsed < Duration::from_secs(10), "{o:?}");
    // A worker says so at start instead of reconnecting in silence.
    let w = Proc::start(pg(&s).args(["-w", "-f", "f"]), b"").finish();
    assert_eq!(w.code, Some(3), "{w:?}");
    assert!(w.stderr.contains("TLS"), "{}", w.stderr);
    assert!(w.elapsed < Duration::from_secs(10), "{w:?}");
}

#[test]
fn a_missing_file_is_a_usage_error_naming_it() {
    let p = Pki::new();
    let s = TlsServer::start(&p.server, None);
    let missing = p.dir.join("nope.pem");
    let flag = format!("--ssl-ca-file={}", path(&missing));
    for mut c in [
        {
            let mut c = pg(&s);
            c.args([flag.as_str(), "-f", "f", "x"]);
            c
        },
        {
            let mut c = pg(&s);
            c.args([flag.as_str(), "-w", "-f", "f"]);
            c
        },
        {
            let mut c = pg_admin(&s);
            c.args([flag.as_str(), "status"]);
            c
        },
    ] {
        let o = run(&mut c, b"");
        assert_eq!(o.code, Some(2), "{o:?}");
        assert!(o.stderr.contains(&path(&missing)), "{}", o.stderr);
    }
    // Certificate without key.
    let o = run(
        pg(&s).args(["--ssl-certificate", &path(&p.client.cert), "-f", "f", "x"]),
        b"",
    );
    assert_eq!(o.code, Some(2), "{o:?}");
    // --ssl-ca-file without its value.
    let o = run(pg(&s).args(["-f", "f", "--ssl-ca-file"]), b"");
    assert_eq!(o.code, Some(2), "{o:?}");
}
