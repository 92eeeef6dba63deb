//! The C `gearman`/`gearadmin` tools and Perl's Gearman::Client /
//! Gearman::Worker against a polygeard process.

mod common;

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{perl, perl_gearman, polygeard, Kill};

fn have(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs a command with stdin, killing it after `secs`.
fn run(cmd: &mut Command, stdin: &[u8], secs: u64) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    wait_output(child, secs)
}

fn wait_output(mut child: Child, secs: u64) -> Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "command timed out; stdout {:?} stderr {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn gearadmin(port: u16, args: &[&str]) -> String {
    let out = run(
        Command::new("gearadmin")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args),
        b"",
        10,
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn gearman_cli_client_and_worker() {
    if !have("gearman") {
        eprintln!("gearman CLI not installed; skipping");
        return;
    }
    let d = polygeard(&["-q", "builtin"]);
    let port = d.port.to_string();
    let _worker = Kill(
        Command::new("gearman")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-w",
                "-f",
                "rev",
                "--",
                "rev",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for word in ["hello", "polygear"] {
        let out = run(
            Command::new("gearman").args(["-h", "127.0.0.1", "-p", &port, "-f", "rev"]),
            word.as_bytes(),
            10,
        );
        assert!(out.status.success());
        let want: String = word.chars().rev().collect();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
    }
    // Background submission with a unique shows up in the admin listings.
    let out = run(
        Command::new("gearman").args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-b",
            "-f",
            "nobody",
            "-u",
            "bguniq",
            "--",
            "data",
        ]),
        b"",
        10,
    );
    assert!(out.status.success());
    let status = gearadmin(d.port, &["--status"]);
    assert!(status.contains("nobody\t1\t0\t0\n"), "{status}");
    assert!(status.contains("rev\t0\t0\t1\n"), "{status}");
    assert!(gearadmin(d.port, &["--show-unique-jobs"]).contains("bguniq\n"));
    let jobs = gearadmin(d.port, &["--show-jobs"]);
    let handle = jobs
        .lines()
        .next()
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_string();
    assert!(jobs.contains("\t0\t0\t1\n"), "{jobs}");
    assert!(gearadmin(d.port, &["--workers"])
        .lines()
        .any(|l| l.ends_with(": rev")));
    assert!(gearadmin(d.port, &["--priority-status"]).contains("nobody\t0\t1\t0\t0\n"));
    assert_eq!(
        gearadmin(d.port, &["--server-version"]).trim(),
        polygear_server::VERSION
    );
    assert!(gearadmin(d.port, &["--getpid"])
        .trim()
        .parse::<u32>()
        .is_ok());
    assert_eq!(gearadmin(d.port, &["--cancel-job", &handle]).trim(), "OK");
    assert_eq!(gearadmin(d.port, &["--server-verbose"]).trim(), "ERROR");
    let status = gearadmin(d.port, &["--show-jobs"]);
    assert!(
        status.contains(&format!("{handle}\t0\t1\t0")),
        "cancelled job is flagged: {status}"
    );
    let out = gearadmin(d.port, &["--create-function", "made"]);
    assert!(!out.contains("Error"), "{out}");
    assert!(gearadmin(d.port, &["--status"]).contains("made\t0\t0\t0\n"));
    gearadmin(d.port, &["--drop-function", "made"]);
    assert!(!gearadmin(d.port, &["--status"]).contains("made\t"));
}

#[test]
fn gearman_cli_exception_reported_as_failure() {
    if !have("gearman") {
        return;
    }
    let d = polygeard(&["-q", "builtin"]);
    let port = d.port.to_string();
    // A worker command that exits non-zero makes the CLI worker send WORK_FAIL.
    let _worker = Kill(
        Command::new("gearman")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-w",
                "-f",
                "boom",
                "--",
                "false",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = run(
        Command::new("gearman").args(["-h", "127.0.0.1", "-p", &port, "-f", "boom"]),
        b"x",
        10,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.to_lowercase().contains("fail"), "{text}");
}

#[test]
fn perl_client_and_worker() {
    if !perl_gearman() {
        return;
    }
    let d = polygeard(&["-q", "builtin"]);
    let server = d.addr_string();
    let worker_src = format!(
        r#"use Gearman::Worker;
my $w = Gearman::Worker->new(job_servers => ['{server}']);
$w->register_function(upper => sub {{ my $a = $_[0]->arg; return uc $a; }});
$w->register_function(status => sub {{ $_[0]->set_status(1, 2); return "s:" . $_[0]->arg; }});
$w->work while 1;"#
    );
    let _worker = perl(&worker_src);
    let client_src = format!(
        r#"use Gearman::Client; use Gearman::Task;
my $c = Gearman::Client->new(job_servers => ['{server}']);
my $r = $c->do_task(upper => "hello perl", {{ timeout => 8 }});
print "upper=", ($r ? $$r : "undef"), "\n";
my $s = $c->do_task(status => "x", {{ timeout => 8 }});
print "status=", ($s ? $$s : "undef"), "\n";
my $ts = $c->new_task_set;
my @res;
for my $i (1..5) {{ $ts->add_task(upper => "t$i", {{ on_complete => sub {{ push @res, ${{$_[0]}} }} }}); }}
$ts->wait(timeout => 8);
print "set=", join(",", sort @res), "\n";
my $h = $c->dispatch_background(upper => "bg");
print "bg=", ($h ? "yes" : "no"), "\n";"#
    );
    let out = run(Command::new("perl").args(["-e", &client_src]), b"", 30);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("upper=HELLO PERL\n"),
        "{text} / {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("status=s:x\n"), "{text}");
    assert!(text.contains("set=T1,T2,T3,T4,T5\n"), "{text}");
    assert!(text.contains("bg=yes\n"), "{text}");
}

/// With retention and unique windows on (polygear extensions), the C
/// `gearman` tool and Perl's Gearman::Client/Worker work as before; a
/// foreground resubmission of a finished unique inside the window is
/// answered with the kept result (JOB_CREATED + WORK_COMPLETE), which both
/// accept, and the worker does not run it again.
#[test]
fn gearman_cli_and_perl_with_retention_and_unique_windows_on() {
    let d = polygeard(&[
        "-q",
        "builtin",
        "--retain",
        "rev=60",
        "--unique-window",
        "rev=60",
        "--retain",
        "upper=60",
        "--unique-window",
        "upper=60",
    ]);
    let port = d.port.to_string();
    if have("gearman") {
        // The worker appends a counter file line per run: runs are counted.
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let script = format!("tee -a {} | rev", runs.display());
        let _worker = Kill(
            Command::new("gearman")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-w",
                    "-f",
                    "rev",
                    "--",
                    "sh",
                    "-c",
                    &script,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let call = |unique: &str, input: &str| {
            let out = run(
                Command::new("gearman").args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-f",
                    "rev",
                    "-u",
                    unique,
                ]),
                input.as_bytes(),
                10,
            );
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert_eq!(call("k1", "hello"), "olleh");
        assert_eq!(call("k1", "other"), "olleh", "the window's result");
        assert_eq!(call("k2", "polygear"), "raegylop");
        let ran = std::fs::read_to_string(&runs).unwrap_or_default();
        assert!(
            !ran.contains("other"),
            "ran again inside the window: {ran:?}"
        );
        // Background submissions and admin listings are unchanged.
        let out = run(
            Command::new("gearman").args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-b",
                "-f",
                "rev",
                "--",
                "bg",
            ]),
            b"",
            10,
        );
        assert!(out.status.success());
        assert!(gearadmin(d.port, &["--status"]).contains("rev\t"));
    }
    if !perl_gearman() {
        return;
    }
    let server = d.addr_string();
    let worker_src = format!(
        r#"use Gearman::Worker;
my $w = Gearman::Worker->new(job_servers => ['{server}']);
$w->register_function(upper => sub {{ return uc $_[0]->arg; }});
$w->work while 1;"#
    );
    let _worker = perl(&worker_src);
    let client_src = format!(
        r#"use Gearman::Client;
my $c = Gearman::Client->new(job_servers => ['{server}']);
my $a = $c->do_task(upper => "first", {{ uniq => "pk", timeout => 8 }});
my $b = $c->do_task(upper => "second", {{ uniq => "pk", timeout => 8 }});
my $p = $c->do_task(upper => "plain", {{ timeout => 8 }});
print "a=", ($a ? $$a : "undef"), " b=", ($b ? $$b : "undef"), " p=", ($p ? $$p : "undef"), "\n";
my $h = $c->dispatch_background(upper => "bg");
print "bg=", ($h ? "yes" : "no"), "\n";"#
    );
    let out = run(Command::new("perl").args(["-e", &client_src]), b"", 30);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("a=FIRST b=FIRST p=PLAIN\n"),
        "{text} / {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("bg=yes\n"), "{text}");
}

/// Perl's Gearman::Client and Gearman::Worker while their function is
/// paused (polygear admin extension) and after it is resumed: the job
/// waits, then completes as usual.
#[test]
fn perl_client_and_worker_across_pause_and_resume() {
    if !perl_gearman() {
        return;
    }
    let d = polygeard(&["-q", "builtin"]);
    let server = d.addr_string();
    let mut a = common::Raw::connect(d.port);
    assert_eq!(a.admin("pause upper"), "OK\r\n");
    let worker_src = format!(
        r#"use Gearman::Worker;
my $w = Gearman::Worker->new(job_servers => ['{server}']);
$w->register_function(upper => sub {{ return uc $_[0]->arg; }});
$w->work while 1;"#
    );
    let _worker = perl(&worker_src);
    let client_src = format!(
        r#"use Gearman::Client;
my $c = Gearman::Client->new(job_servers => ['{server}']);
my $r = $c->do_task(upper => "paused perl", {{ timeout => 20 }});
print "upper=", ($r ? $$r : "undef"), "\n";"#
    );
    let client = Command::new("perl")
        .args(["-e", &client_src])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Queued, a worker registered, nothing running: for a while.
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.admin("status") != "upper\t1\t0\t1\n.\n" {
        assert!(Instant::now() < deadline, "{}", a.admin("status"));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a.admin("status"), "upper\t1\t0\t1\n.\n");
    assert_eq!(a.admin("resume upper"), "OK\r\n");
    let out = wait_output(client, 30);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("upper=PAUSED PERL\n"),
        "{text} / {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
