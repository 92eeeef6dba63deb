//! The same sequence of operations against gearmand and polygeard must
//! give the same admin output, line by line (handles use the same prefix;
//! socket numbers, version and pid are normalised; listings whose order is
//! gearmand's hash order are sorted).

mod common;

use common::{can_do, created, polygeard, submit, Raw, TestServer};
use polygear::protocol::{Packet, Priority};

fn b(s: &str) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(s.as_bytes())
}

fn sync(c: &mut Raw) {
    c.send(&Packet::EchoReq { data: b("sync") });
    assert!(matches!(c.recv(), Packet::EchoRes { .. }));
}

/// Runs one admin command and returns its normalised reply lines.
fn admin(a: &mut Raw, cmd: &str) -> Vec<String> {
    let reply = a.admin(cmd);
    let mut lines: Vec<String> = reply
        .split_inclusive('\n')
        .map(|l| {
            if cmd == "workers" && l != ".\n" {
                // "FD IP ID : FUNCS" -> drop the socket number.
                l.split_once(' ')
                    .map(|x| format!("FD {}", x.1))
                    .unwrap_or_else(|| l.to_string())
            } else if cmd == "version" || cmd == "getpid" {
                assert!(
                    l.starts_with("OK ") && l.ends_with('\n') && !l.ends_with("\r\n"),
                    "{l:?}"
                );
                "OK <value>\n".to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    if [
        "status",
        "prioritystatus",
        "workers",
        "show jobs",
        "show unique jobs",
    ]
    .contains(&cmd.to_lowercase().as_str())
    {
        let end = lines.pop();
        lines.sort();
        lines.extend(end);
    }
    lines.insert(0, format!("> {cmd}\n"));
    lines
}

fn scenario(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    let mut a = Raw::connect(port);
    for cmd in [
        "status",
        "prioritystatus",
        "show jobs",
        "show unique jobs",
        "version",
        "getpid",
        "verbose",
    ] {
        out.extend(admin(&mut a, cmd));
    }
    // `\r\n`: gearmand 1.1 cuts the last character of a bare-`\n` create line.
    out.extend(admin(&mut a, "create function xyz\r"));
    let mut c = Raw::connect(port);
    c.send(&submit("reverse", "u1", "test", true));
    let h1 = created(c.recv());
    c.send(&submit("reverse", "u1", "other", true));
    assert_eq!(created(c.recv()), h1);
    for _ in 0..2 {
        c.send(&submit("reverse", "", "x", true));
        created(c.recv());
    }
    for (u, p) in [
        ("p1", Priority::High),
        ("p2", Priority::Normal),
        ("p3", Priority::Low),
        ("p4", Priority::High),
    ] {
        c.send(&Packet::SubmitJob {
            function: b("prio"),
            unique: b(u),
            data: b("d"),
            priority: p,
            background: true,
        });
        created(c.recv());
    }
    let mut fg1 = Raw::connect(port);
    fg1.send(&submit("rev", "same", "abc", false));
    let hs = created(fg1.recv());
    let mut fg2 = Raw::connect(port);
    fg2.send(&submit("rev", "same", "DIFFERENT", false));
    assert_eq!(created(fg2.recv()), hs);
    let mut w = Raw::connect(port);
    w.send(&Packet::SetClientId { id: b("worker-A") });
    w.send(&can_do("rev"));
    w.send(&can_do("rev"));
    w.send(&Packet::CanDoTimeout {
        function: b("revt"),
        timeout: 5000,
    });
    sync(&mut w);
    for cmd in [
        "status",
        "prioritystatus",
        "workers",
        "show jobs",
        "show unique jobs",
    ] {
        out.extend(admin(&mut a, cmd));
    }
    w.send(&Packet::GrabJobUniq);
    match w.recv() {
        Packet::JobAssignUniq { handle, unique, .. } => {
            assert_eq!(&handle[..], hs.as_bytes());
            assert_eq!(&unique[..], b"same");
        }
        p => panic!("{p:?}"),
    }
    out.extend(admin(&mut a, "status"));
    out.extend(admin(&mut a, "show jobs"));
    w.send(&Packet::WorkComplete {
        handle: hs.clone().into(),
        data: b("cba"),
    });
    assert!(matches!(fg1.recv(), Packet::WorkComplete { .. }));
    assert!(matches!(fg2.recv(), Packet::WorkComplete { .. }));
    // Queue limits.
    out.extend(admin(&mut a, "maxqueue reverse 3"));
    c.send(&submit("reverse", "", "x", true));
    match c.recv() {
        Packet::Error { code, text } => out.push(format!(
            "submit over limit: {} {}\n",
            String::from_utf8_lossy(&code),
            String::from_utf8_lossy(&text)
        )),
        p => out.push(format!("submit over limit: {p:?}\n")),
    }
    out.extend(admin(&mut a, "maxqueue reverse"));
    // Cancel a waiting background job.
    out.extend(admin(&mut a, &format!("cancel job {h1}")));
    out.extend(admin(&mut a, "show jobs"));
    // Error replies.
    for cmd in [
        "bogus",
        "show",
        "show foo",
        "cancel job NOPE:1",
        "cancel foo bar",
        "maxqueue",
        "create",
        "drop",
        "drop function nosuch",
        "drop function rev",
        "drop function xyz",
        "shutdown",
        "shutdown graceful",
        "STATUS",
        "version extra args",
    ] {
        let mut lines = admin(&mut a, cmd);
        if cmd.starts_with("version") {
            lines = vec![lines[0].clone(), "OK <value>\n".into()];
        }
        out.extend(lines);
    }
    // The worker and two clients leave; their lines and registrations disappear
    // (wait until the server has seen all three connections close).
    let connections = |a: &mut Raw| a.admin("workers").lines().filter(|l| *l != ".").count();
    let before = connections(&mut a);
    drop(w);
    drop(fg1);
    drop(fg2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while connections(&mut a) > before - 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    out.extend(admin(&mut a, "workers"));
    out.extend(admin(&mut a, "status"));
    out
}

#[test]
fn admin_output_matches_gearmand() {
    let Some(g) =
        TestServer::gearmand(&["--job-handle-prefix", "T", "--verbose", "INFO", "-t", "1"])
    else {
        eprintln!("gearmand not installed; skipping");
        return;
    };
    let p = polygeard(&[
        "-q",
        "builtin",
        "--job-handle-prefix",
        "T",
        "--verbose",
        "INFO",
    ]);
    let expected = scenario(g.port);
    let got = scenario(p.port);
    for (i, (e, g)) in expected.iter().zip(got.iter()).enumerate() {
        assert_eq!(
            g,
            e,
            "line {i} differs; gearmand transcript:\n{}\npolygeard transcript:\n{}",
            expected.concat(),
            got.concat()
        );
    }
    assert_eq!(
        got.len(),
        expected.len(),
        "transcript lengths differ:\n{}\n---\n{}",
        expected.concat(),
        got.concat()
    );
}
