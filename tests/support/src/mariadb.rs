//! A throwaway MariaDB server for tests (Debian's `mariadbd` and
//! `mariadb-install-db`): a fresh data directory under the temp dir, a free
//! loopback port, the unprivileged user `nobody`, durable settings, and a user
//! [`MariaDb::USER`] / [`MariaDb::PASSWORD`] with every privilege.
//!
//! [`shared`] starts one per test process; [`MariaDb::start`] a private one
//! (stopped on drop), which a test may crash and start again. A small shell
//! guard owns mariadbd: it reads commands from a pipe from the test process,
//! so when that process ends (even on a panic or a kill) the guard stops
//! mariadbd and deletes the directory.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::{free_port, which};

/// A running MariaDB server.
pub struct MariaDb {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Data directory (deleted when the server stops).
    pub dir: PathBuf,
    /// The guard and its stdin: closing it stops the server.
    guard: Mutex<Option<(Child, ChildStdin)>>,
}

static SHARED: OnceLock<MariaDb> = OnceLock::new();

/// The MariaDB server of this test process, started on first use; `None`
/// if MariaDB is not installed.
pub fn shared() -> Option<&'static MariaDb> {
    if !MariaDb::available() {
        return None;
    }
    Some(SHARED.get_or_init(MariaDb::start))
}

impl MariaDb {
    /// User name with all privileges.
    pub const USER: &'static str = "polygear";
    /// Its password.
    pub const PASSWORD: &'static str = "polygear-secret";

    /// Whether `mariadbd` and `mariadb-install-db` are installed.
    pub fn available() -> bool {
        which("mariadbd").is_some() && which("mariadb-install-db").is_some()
    }

    /// Starts a new server and waits until it accepts the test user.
    pub fn start() -> MariaDb {
        let dir = std::env::temp_dir().join(format!(
            "polygear-mariadb-{}-{}",
            std::process::id(),
            free_port()
        ));
        // A temp dir of its own: servers (and mariadb-install-db runs) in
        // parallel clash over temporary table names in /tmp.
        for sub in ["data", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).expect("create mariadb dir");
        }
        let init = dir.join("init.sql");
        std::fs::write(
            &init,
            format!(
                "CREATE USER IF NOT EXISTS '{u}'@'%' IDENTIFIED BY '{p}';\n\
                 GRANT ALL PRIVILEGES ON *.* TO '{u}'@'%';\n",
                u = Self::USER,
                p = Self::PASSWORD
            ),
        )
        .expect("write init.sql");
        chown_nobody(&dir);
        if let Err(e) = install(&dir) {
            let _ = std::fs::remove_dir_all(&dir);
            panic!("{e}");
        }
        let port = free_port();
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg(GUARD)
            .arg("mariadb-guard")
            .arg(which("mariadbd").unwrap())
            .arg(&dir)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mariadbd guard");
        let stdin = guard.stdin.take().expect("guard stdin");
        let db = MariaDb {
            port,
            dir,
            guard: Mutex::new(Some((guard, stdin))),
        };
        db.wait_ready();
        db
    }

    /// Waits until the test user can log in (up to 30 s).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.sql("SELECT 1").is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        panic!("mariadbd did not start on port {}:\n{log}", self.port);
    }

    /// Runs SQL with the `mariadb` client as the test user; its output.
    pub fn sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(which("mariadb").ok_or("no mariadb client")?)
            .args(["--no-defaults", "-h", "127.0.0.1", "-N", "-B"])
            .arg(format!("-P{}", self.port))
            .arg(format!("-u{}", Self::USER))
            .arg(format!("-p{}", Self::PASSWORD))
            .arg("-e")
            .arg(sql)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Creates (or empties) database `name`.
    pub fn fresh_database(&self, name: &str) {
        self.sql(&format!(
            "DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}`"
        ))
        .expect("create database");
    }

    /// Kills mariadbd (SIGKILL: a crash; committed data must survive it).
    pub fn crash(&self) {
        self.tell("crash");
    }

    /// Starts mariadbd again after [`MariaDb::crash`] and waits until it
    /// accepts the test user.
    pub fn up(&self) {
        self.tell("up");
        self.wait_ready();
    }

    fn tell(&self, cmd: &str) {
        let mut guard = self.guard.lock().unwrap();
        let (_, stdin) = guard.as_mut().expect("mariadbd guard running");
        stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .expect("tell mariadbd guard");
        stdin.flush().unwrap();
    }

    /// Stops the server and deletes its directory (also done when the test
    /// process ends).
    pub fn stop(&self) {
        if let Some((mut guard, mut stdin)) = self.guard.lock().unwrap().take() {
            let _ = stdin.write_all(b"stop\n");
            drop(stdin);
            let _ = guard.wait();
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs mariadbd in the background and obeys its stdin: `crash` kills it
/// (SIGKILL), `up` starts it again; at the end of input it stops mariadbd
/// and deletes the directory. `$1` mariadbd, `$2` directory, `$3` port.
const GUARD: &str = r#"
bin=$1 dir=$2 port=$3
up() {
    "$bin" --no-defaults --user=nobody --datadir="$dir/data" --socket="$dir/mysqld.sock" \
        --pid-file="$dir/mysqld.pid" --log-error="$dir/error.log" --init-file="$dir/init.sql" \
        --tmpdir="$dir/tmp" \
        --bind-address=127.0.0.1 --port="$port" --skip-name-resolve --skip-log-bin \
        --innodb-flush-log-at-trx-commit=1 --innodb-doublewrite=1 \
        --innodb-buffer-pool-size=64M --innodb-log-file-size=32M \
        --max-connections=500 --skip-performance-schema </dev/null >/dev/null 2>&1 &
    pid=$!
}
up
while read -r cmd; do
    case "$cmd" in
        crash) kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null ;;
        up) up ;;
        *) break ;;
    esac
done
kill -TERM "$pid" 2>/dev/null
i=0
while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 200 ]; do sleep 0.05; i=$((i+1)); done
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$dir"
"#;

/// Makes `dir` (and what is in it) belong to `nobody` when running as root.
fn chown_nobody(dir: &Path) {
    let _ = Command::new("chown")
        .args(["-R", "nobody"])
        .arg(dir)
        .status();
}

/// Creates the system tables in `dir/data`.
fn install(dir: &Path) -> Result<(), String> {
    let out = Command::new(which("mariadb-install-db").expect("mariadb-install-db"))
        .arg("--no-defaults")
        .arg("--user=nobody")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg(format!("--tmpdir={}", dir.join("tmp").display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
        .output()
        .map_err(|e| format!("cannot run mariadb-install-db: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "mariadb-install-db failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}
