//! polygear::Admin against real job servers (gearmand 1.1.x; polygeard once
//! built): every admin call, with jobs and workers created by raw protocol
//! packets over TCP.
//!
//! Run: `POLYGEAR_TEST_SERVERS=gearmand cargo test -p polygear-interop --test admin`

use std::time::Duration;

use bytes::Bytes;
use polygear::protocol::{Packet, Priority};
use polygear::{Admin, Error};
use polygear_interop::raw::Raw;
use polygear_interop::{ServerKind, TestServer};

const T: Duration = Duration::from_secs(10);

/// Submits a `payload` job that must be accepted; returns its handle as text.
async fn submit_ok(
    c: &mut Raw,
    function: &str,
    unique: &str,
    priority: Priority,
    background: bool,
) -> String {
    let handle = c
        .submit_with(function, unique, "payload", priority, background)
        .await;
    String::from_utf8(handle.to_vec()).unwrap()
}

fn servers() -> Vec<TestServer> {
    let kinds = ServerKind::selected();
    assert!(
        !kinds.is_empty(),
        "no job server selected/available (POLYGEAR_TEST_SERVERS)"
    );
    kinds.into_iter().map(TestServer::start).collect()
}

async fn admin(server: &TestServer) -> Admin {
    Admin::connect(&server.addr(), T)
        .await
        .expect("admin connect")
}

fn assert_server_error(r: Result<(), Error>, code: &str, text: &str) {
    match r {
        Err(Error::Server { code: c, text: t }) => {
            assert_eq!((c.as_str(), t.as_str()), (code, text));
        }
        other => panic!("expected Error::Server {code} {text:?}, got {other:?}"),
    }
}

/// The command line of a process, NUL-separated arguments.
fn cmdline(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

#[tokio::test]
async fn fresh_server_single_values_and_empty_listings() {
    for server in servers() {
        let mut a = admin(&server).await;
        let version = a.version().await.unwrap();
        assert!(
            version.starts_with(|c: char| c.is_ascii_digit()),
            "{version:?}"
        );

        let level = a.verbose().await.unwrap();
        assert!(
            ["FATAL", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"]
                .contains(&level.as_str()),
            "{level:?}"
        );

        // getpid is the pid of the process listening on our port.
        let pid = a.getpid().await.unwrap();
        let args = cmdline(pid);
        let port = server.port.to_string();
        assert!(
            args.windows(2).any(|w| w[0] == "-p" && w[1] == port),
            "pid {pid} runs {args:?}, not the server on port {port}"
        );
        if server.kind == ServerKind::Gearmand {
            let pidfile = std::env::temp_dir().join(format!("gearmand-test-{}.pid", server.port));
            let from_file = std::fs::read_to_string(pidfile).unwrap();
            assert_eq!(from_file.trim().parse::<u32>().unwrap(), pid);
        }

        assert_eq!(a.status().await.unwrap(), vec![]);
        assert_eq!(a.priority_status().await.unwrap(), vec![]);
        assert_eq!(a.show_jobs().await.unwrap(), vec![]);
        assert_eq!(a.show_unique_jobs().await.unwrap(), Vec::<String>::new());
        // The admin connection itself is listed, with the default id.
        let workers = a.workers().await.unwrap();
        assert_eq!(workers.len(), 1, "{workers:?}");
        assert_eq!(workers[0].ip, "127.0.0.1");
        assert_eq!(workers[0].client_id, "-");
        assert!(workers[0].functions.is_empty());
        assert!(workers[0].fd >= 0);
        // Pipelined order is kept across many calls on one connection.
        for _ in 0..20 {
            assert_eq!(a.version().await.unwrap(), version);
            assert_eq!(a.status().await.unwrap(), vec![]);
        }
    }
}

#[tokio::test]
async fn status_priority_status_and_job_listings_after_background_submits() {
    for server in servers() {
        let mut c = Raw::connect(&server.addr(), T).await;
        let h1 = submit_ok(&mut c, "reverse", "u1", Priority::Normal, true).await;
        // Same function and unique: coalesced onto the same job.
        let again = submit_ok(&mut c, "reverse", "u1", Priority::Normal, true).await;
        assert_eq!(again, h1);
        let h2 = submit_ok(&mut c, "reverse", "u2", Priority::High, true).await;
        let h3 = submit_ok(&mut c, "reverse", "u3", Priority::Low, true).await;
        let h4 = submit_ok(&mut c, "other", "", Priority::Low, true).await;

        let mut a = admin(&server).await;
        let mut status = a.status().await.unwrap();
        status.sort_by(|x, y| x.function.cmp(&y.function));
        assert_eq!(status.len(), 2, "{status:?}");
        assert_eq!(
            (
                status[1].function.as_str(),
                status[1].total,
                status[1].running,
                status[1].workers
            ),
            ("reverse", 3, 0, 0)
        );
        assert_eq!((status[0].function.as_str(), status[0].total), ("other", 1));

        let prio = a.priority_status().await.unwrap();
        let rev = prio.iter().find(|p| p.function == "reverse").unwrap();
        assert_eq!((rev.high, rev.normal, rev.low, rev.workers), (1, 1, 1, 0));
        let other = prio.iter().find(|p| p.function == "other").unwrap();
        assert_eq!((other.high, other.normal, other.low), (0, 0, 1));

        let mut jobs = a.show_jobs().await.unwrap();
        jobs.sort_by(|x, y| x.handle.cmp(&y.handle));
        let mut handles = vec![h1, h2, h3, h4];
        handles.sort();
        assert_eq!(
            jobs.iter().map(|j| j.handle.clone()).collect::<Vec<_>>(),
            handles
        );
        for j in &jobs {
            assert_eq!((j.retries, j.ignore, j.queued), (0, false, true), "{j:?}");
        }

        let mut uniques = a.show_unique_jobs().await.unwrap();
        uniques.sort();
        assert_eq!(uniques, ["", "u1", "u2", "u3"]);
    }
}

#[tokio::test]
async fn workers_listing_and_running_counts() {
    for server in servers() {
        let mut w = Raw::connect(&server.addr(), T).await;
        w.send(Packet::SetClientId {
            id: Bytes::from_static(b"worker-A"),
        })
        .await;
        w.send(Packet::CanDo {
            function: Bytes::from_static(b"rev"),
        })
        .await;
        w.send(Packet::CanDoTimeout {
            function: Bytes::from_static(b"revt"),
            timeout: 5000,
        })
        .await;
        w.sync().await;

        let mut a = admin(&server).await;
        let workers = a.workers().await.unwrap();
        assert_eq!(workers.len(), 2, "{workers:?}");
        let wa = workers
            .iter()
            .find(|x| x.client_id == "worker-A")
            .expect("worker-A listed");
        // Newest registration first, as gearmand lists them.
        assert_eq!(wa.functions, ["revt", "rev"]);
        assert_eq!(wa.ip, "127.0.0.1");
        let me = workers.iter().find(|x| x.client_id == "-").unwrap();
        assert!(me.functions.is_empty());
        assert_ne!(me.fd, wa.fd);

        // A foreground job, grabbed by the worker: running 1.
        let mut c = Raw::connect(&server.addr(), T).await;
        let handle = submit_ok(&mut c, "rev", "k", Priority::Normal, false).await;
        let mut status = a.status().await.unwrap();
        status.sort_by(|x, y| x.function.cmp(&y.function));
        let rev = status.iter().find(|s| s.function == "rev").unwrap();
        assert_eq!((rev.total, rev.running, rev.workers), (1, 0, 1));
        let revt = status.iter().find(|s| s.function == "revt").unwrap();
        assert_eq!((revt.total, revt.running, revt.workers), (0, 0, 1));

        w.send(Packet::GrabJobUniq).await;
        match w.recv().await {
            Packet::JobAssignUniq {
                handle: h, unique, ..
            } => {
                assert_eq!(&h[..], handle.as_bytes());
                assert_eq!(&unique[..], b"k");
            }
            other => panic!("expected JOB_ASSIGN_UNIQ, got {other:?}"),
        }
        let status = a.status().await.unwrap();
        let rev = status.iter().find(|s| s.function == "rev").unwrap();
        assert_eq!((rev.total, rev.running, rev.workers), (1, 1, 1));
        let jobs = a.show_jobs().await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].handle, handle);
        assert!(!jobs[0].queued, "foreground jobs are not queued");
        let prio = a.priority_status().await.unwrap();
        let rev = prio.iter().find(|p| p.function == "rev").unwrap();
        assert_eq!((rev.high, rev.normal, rev.low, rev.workers), (0, 0, 0, 1));
        // A running job keeps the function from being dropped.
        assert_server_error(
            a.drop_function("rev").await,
            "",
            "there are still connected workers or executing clients",
        );
    }
}

#[tokio::test]
async fn cancel_job_known_and_unknown() {
    for server in servers() {
        let mut c = Raw::connect(&server.addr(), T).await;
        let handle = submit_ok(&mut c, "cj", "c1", Priority::Normal, true).await;
        let mut a = admin(&server).await;
        a.cancel_job(&handle).await.unwrap();
        // The cancelled job is either gone or marked ignored and not queued.
        for j in a.show_jobs().await.unwrap() {
            if j.handle == handle {
                assert!(j.ignore && !j.queued, "{j:?}");
            }
        }
        assert_server_error(a.cancel_job("H:nothing:1").await, "UNKNOWN_JOB", "");
        // Arguments that would change the command are refused locally.
        assert!(matches!(
            a.cancel_job("a b").await,
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            a.cancel_job("").await,
            Err(Error::InvalidArgument(_))
        ));
        // The connection is still in sync.
        assert!(!a.version().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn maxqueue_limits_then_queue_error() {
    for server in servers() {
        let mut a = admin(&server).await;
        let mut c = Raw::connect(&server.addr(), T).await;
        a.create_function("mq").await.unwrap();
        a.maxqueue("mq", Some([2, 2, 2])).await.unwrap();
        submit_ok(&mut c, "mq", "a", Priority::Normal, true).await;
        submit_ok(&mut c, "mq", "b", Priority::Normal, true).await;
        match c
            .submit_reply("mq", "c", "payload", Priority::Normal, true)
            .await
        {
            Packet::Error { code, text } => {
                assert_eq!(&code[..], b"QUEUE_ERROR");
                assert_eq!(&text[..], b"Job queue is full");
            }
            other => panic!("expected ERROR QUEUE_ERROR, got {other:?}"),
        }
        // Per priority: HIGH unlimited, NORMAL 1, LOW 5 (2 jobs exist).
        a.maxqueue("mq", Some([0, 1, 5])).await.unwrap();
        submit_ok(&mut c, "mq", "h", Priority::High, true).await;
        submit_ok(&mut c, "mq", "l", Priority::Low, true).await;
        assert!(matches!(
            c.submit_reply("mq", "n", "payload", Priority::Normal, true)
                .await,
            Packet::Error { .. }
        ));
        // Back to unlimited.
        a.maxqueue("mq", None).await.unwrap();
        submit_ok(&mut c, "mq", "n", Priority::Normal, true).await;
        let status = a.status().await.unwrap();
        let mq = status.iter().find(|s| s.function == "mq").unwrap();
        assert_eq!(mq.total, 5);
        // Limits a C int cannot hold are refused locally.
        assert!(matches!(
            a.maxqueue("mq", Some([u32::MAX, 0, 0])).await,
            Err(Error::InvalidArgument(_))
        ));
    }
}

#[tokio::test]
async fn create_and_drop_function() {
    for server in servers() {
        let mut a = admin(&server).await;
        a.create_function("cf").await.unwrap();
        let status = a.status().await.unwrap();
        let cf = status
            .iter()
            .find(|s| s.function == "cf")
            .expect("created function listed with its full name");
        assert_eq!((cf.total, cf.running, cf.workers), (0, 0, 0));
        a.drop_function("cf").await.unwrap();
        assert!(a.status().await.unwrap().iter().all(|s| s.function != "cf"));
        assert_server_error(a.drop_function("nosuch").await, "", "function not found");

        // Refused while a worker is registered.
        let mut w = Raw::connect(&server.addr(), T).await;
        w.send(Packet::CanDo {
            function: Bytes::from_static(b"busy"),
        })
        .await;
        w.sync().await;
        assert_server_error(
            a.drop_function("busy").await,
            "",
            "there are still connected workers or executing clients",
        );
        assert!(matches!(
            a.create_function("two words").await,
            Err(Error::InvalidArgument(_))
        ));
    }
}

#[tokio::test]
async fn shutdown_is_an_unknown_command_and_raw_replies() {
    for server in servers() {
        let mut a = admin(&server).await;
        assert_server_error(
            a.shutdown(false).await,
            "UNKNOWN_COMMAND",
            "Unknown server commandshutdown",
        );
        assert_server_error(
            a.shutdown(true).await,
            "UNKNOWN_COMMAND",
            "Unknown server commandshutdown",
        );
        // Still running.
        let version = a.version().await.unwrap();

        assert_eq!(a.raw("status").await.unwrap(), ".\n");
        assert_eq!(a.raw("STATUS").await.unwrap(), ".\n");
        assert_eq!(a.raw("version").await.unwrap(), format!("OK {version}\n"));
        assert_eq!(
            a.raw("version   extra  args").await.unwrap(),
            format!("OK {version}\n")
        );
        assert_eq!(
            a.raw("show foo").await.unwrap(),
            "ERR UNKNOWN_SHOW_ARGUMENTS\r\n"
        );
        assert_eq!(
            a.raw("bogus").await.unwrap(),
            "ERR UNKNOWN_COMMAND Unknown+server+commandbogus\r\n"
        );
        assert_eq!(
            a.raw("maxqueue").await.unwrap(),
            "ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+maxqueue\r\n"
        );
        assert_eq!(a.raw("maxqueue foo 10").await.unwrap(), "OK\r\n");
        assert_eq!(
            a.raw("cancel job H:nothing:1").await.unwrap(),
            "ERR UNKNOWN_JOB\r\n"
        );
        assert_eq!(
            a.raw("cancel foo bar").await.unwrap(),
            "ERR UNKNOWN_ERROR\r\n"
        );
        let workers = a.raw("workers").await.unwrap();
        assert!(workers.ends_with("\n.\n"), "{workers:?}");
        assert!(workers.contains(" 127.0.0.1 - :\n"), "{workers:?}");
        assert!(matches!(
            a.raw("status\nversion").await,
            Err(Error::InvalidArgument(_))
        ));
        // Typed calls still line up after all of that.
        assert_eq!(a.version().await.unwrap(), version);
    }
}

/// SIGSTOP/SIGCONT a process; the guard resumes it even if the test fails.
struct Stopped(u32);

impl Stopped {
    /// SIGSTOPs `pid` and waits until every thread of it is stopped (the
    /// signal is asynchronous: a thread on the other core may still answer).
    fn new(pid: u32) -> Stopped {
        signal("-STOP", pid);
        let stopped = Stopped(pid);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !all_threads_stopped(pid) {
            assert!(std::time::Instant::now() < deadline, "{pid} did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        stopped
    }
}

/// True when every task of `pid` is in state `T` (stopped) per /proc.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|st| {
                st.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('T'))
            })
            .unwrap_or(false)
    })
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

fn signal(sig: &str, pid: u32) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test]
async fn timeout_and_reconnect() {
    for mut server in servers() {
        let pid = admin(&server).await.getpid().await.unwrap();
        let timeout = Duration::from_secs(2);
        let mut a = Admin::connect(&server.addr(), timeout).await.unwrap();
        {
            let _stopped = Stopped::new(pid);
            let started = std::time::Instant::now();
            match a.status().await {
                Err(Error::Timeout(_)) => {}
                other => panic!("expected a timeout, got {other:?}"),
            }
            assert!(started.elapsed() < Duration::from_secs(5));
        }
        // The server runs again: the next call reconnects and works, and no
        // late reply from the timed-out call gets in the way.
        let mut ok = false;
        for _ in 0..20 {
            match a.version().await {
                Ok(v) => {
                    assert!(!v.is_empty());
                    ok = true;
                    break;
                }
                Err(Error::Timeout(_)) => continue,
                Err(e) => panic!("after SIGCONT: {e}"),
            }
        }
        assert!(ok, "no reply after SIGCONT");
        assert_eq!(a.status().await.unwrap(), vec![]);

        // A killed server: the call fails, and works again after a restart.
        let mut a = admin(&server).await;
        server.kill();
        assert!(a.version().await.is_err());
        server.restart();
        assert!(!a.version().await.unwrap().is_empty());
    }
}
