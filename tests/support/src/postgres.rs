//! A throwaway PostgreSQL server for the queue tests: Debian's binaries
//! (`/usr/lib/postgresql/<version>/bin`), run as `nobody` (PostgreSQL refuses
//! root) on a free loopback port, with its data and socket in a temporary
//! directory, password authentication and `fsync` on. [`Postgres::shared`]
//! starts one per test binary (each test uses a database of its own);
//! [`Postgres::start`] gives a private one that a test may stop and start.
//! A watchdog process stops the server and deletes the directory when the
//! test process ends, however it ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::free_port;

/// The superuser's name and password.
pub const USER: &str = "postgres";
pub const PASSWORD: &str = "polygear-test";

/// A PostgreSQL server process and its directory; stopped and deleted on
/// drop.
pub struct Postgres {
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    /// The addresses it listens on (comma-separated, 127.0.0.1 first).
    listen: String,
    bin: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    watchdog: Option<Child>,
}

/// The directory of Debian's PostgreSQL server binaries (the newest).
pub fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").is_file() && p.join("initdb").is_file())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop()
}

impl Postgres {
    /// Whether PostgreSQL's server binaries are installed.
    pub fn available() -> bool {
        bin_dir().is_some()
    }

    /// The server shared by every test of this test binary.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(Postgres::start)
    }

    /// Initializes a fresh cluster and starts it on 127.0.0.1.
    pub fn start() -> Postgres {
        Postgres::start_listening(&[])
    }

    /// Like [`Postgres::start`], also listening on `extra` addresses (of this
    /// machine) and accepting password logins from their /24s: for tests whose
    /// servers run in network namespaces.
    pub fn start_listening(extra: &[&str]) -> Postgres {
        let bin = bin_dir().expect("PostgreSQL server binaries in /usr/lib/postgresql/*/bin");
        let dir = make_dir();
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        chown_nobody(&pwfile);
        let out = as_nobody(&bin.join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", USER, "--auth=scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync", "--pwfile"])
            .arg(&pwfile)
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        let mut listen = vec!["127.0.0.1".to_string()];
        if !extra.is_empty() {
            let hba = dir.join("data").join("pg_hba.conf");
            let mut rules = std::fs::read_to_string(&hba).unwrap();
            for a in extra {
                let net = a
                    .rsplit_once('.')
                    .map_or(a.to_string(), |(n, _)| n.to_string());
                rules.push_str(&format!("host all all {net}.0/24 scram-sha-256\n"));
                listen.push(a.to_string());
            }
            std::fs::write(&hba, rules).unwrap();
        }
        let mut pg = Postgres {
            port: free_port(),
            listen: listen.join(","),
            bin,
            dir,
            child: None,
            watchdog: None,
        };
        pg.watchdog = Some(pg.spawn_watchdog());
        pg.start_server();
        pg
    }

    /// A libpq connection string for database `db`.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} password={PASSWORD} dbname={db}",
            self.port
        )
    }

    /// A libpq connection string for database `db` through address `host`.
    pub fn conninfo_at(&self, host: &str, db: &str) -> String {
        format!(
            "host={host} port={} user={USER} password={PASSWORD} dbname={db} connect_timeout=3",
            self.port
        )
    }

    /// Creates database `db` (dropping an old one of that name).
    pub fn create_database(&self, db: &str) {
        self.psql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
        self.psql("postgres", &format!("CREATE DATABASE {db}"));
    }

    /// Runs `sql` in database `db` with psql; returns the unaligned output
    /// (`|` between columns). Panics on an error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.try_psql(db, sql);
        assert!(out.status.success(), "psql {sql:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `sql` in database `db` with psql, whatever the outcome.
    pub fn try_psql(&self, db: &str, sql: &str) -> Output {
        Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-d",
                db,
                "-c",
                sql,
            ])
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .expect("run psql")
    }

    /// Stops the server (fast shutdown: connections are cut, committed
    /// data stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.start_server();
    }

    fn start_server(&mut self) {
        let log = std::fs::File::create(self.dir.join("log")).unwrap();
        let child = as_nobody(&self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string(), "-h", &self.listen, "-k"])
            .arg(&self.dir)
            .args(["-c", "fsync=on", "-c", "synchronous_commit=on"])
            .args(["-c", "max_connections=100", "-c", "shared_buffers=32MB"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
                panic!("postgres exited ({st}): {log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("postgres did not start on port {}", self.port);
    }

    /// A shell that waits for this process to end, then stops the server
    /// (whichever postmaster runs on the data directory) and deletes the
    /// directory: statics are never dropped, and a test may be killed.
    fn spawn_watchdog(&self) -> Child {
        let script = r#"while kill -0 "$0" 2>/dev/null; do sleep 0.2; done
pid=$(head -n 1 "$1/data/postmaster.pid" 2>/dev/null)
[ -n "$pid" ] && kill -INT "$pid" 2>/dev/null
for _ in $(seq 100); do [ -e "$1/data/postmaster.pid" ] || break; sleep 0.1; done
rm -rf "$1""#;
        Command::new("sh")
            .args(["-c", script, &std::process::id().to_string()])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the postgres watchdog")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh directory owned by `nobody`.
fn make_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "polygear-pg-{}-{nanos:x}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    chown_nobody(&dir);
    dir
}

fn chown_nobody(p: &Path) {
    if !is_root() {
        return;
    }
    let (uid, gid) = nobody();
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
}

/// `nobody`'s user and group ids.
fn nobody() -> (u32, u32) {
    let out = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    let uid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let out = Command::new("id").args(["-g", "nobody"]).output().unwrap();
    let gid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    (uid, gid)
}

/// `program` run as `nobody` when we are root (setpriv execs it: the child
/// is the program itself).
fn as_nobody(program: &Path) -> Command {
    let mut c = if is_root() {
        let (uid, gid) = nobody();
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .args(["--clear-groups", "--"])
            .arg(program);
        c
    } else {
        Command::new(program)
    };
    // A working directory that nobody can enter.
    c.current_dir("/");
    c
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
