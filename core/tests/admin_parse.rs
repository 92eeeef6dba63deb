//! Admin text protocol: command parsing as a server sees it, reply formatting
//! and reply parsing, with the exact strings of protocol.md §4 and §9.7.

use polygear::protocol::admin::*;
use polygear::Error;

fn cmd(line: &str) -> Result<AdminCommand, AdminError> {
    AdminCommand::parse(line.as_bytes())
}

fn err_line(line: &str) -> String {
    cmd(line).expect_err(line).to_line()
}

#[test]
fn simple_commands_case_insensitive_and_extra_tokens() {
    assert_eq!(cmd("status"), Ok(AdminCommand::Status));
    assert_eq!(cmd("STATUS"), Ok(AdminCommand::Status));
    assert_eq!(cmd("Version"), Ok(AdminCommand::Version));
    assert_eq!(cmd("version   extra  args"), Ok(AdminCommand::Version));
    assert_eq!(cmd("prioritystatus"), Ok(AdminCommand::PriorityStatus));
    assert_eq!(cmd("workers"), Ok(AdminCommand::Workers));
    assert_eq!(cmd("verbose"), Ok(AdminCommand::Verbose));
    assert_eq!(cmd("getpid"), Ok(AdminCommand::Getpid));
    assert_eq!(cmd("show jobs"), Ok(AdminCommand::ShowJobs));
    assert_eq!(cmd("SHOW   Jobs"), Ok(AdminCommand::ShowJobs));
    assert_eq!(cmd("show unique jobs"), Ok(AdminCommand::ShowUniqueJobs));
    assert_eq!(cmd("show UNIQUE JOBS"), Ok(AdminCommand::ShowUniqueJobs));
    // Line endings are accepted and removed.
    assert_eq!(cmd("status\r\n"), Ok(AdminCommand::Status));
    assert_eq!(cmd("status\n"), Ok(AdminCommand::Status));
}

#[test]
fn tokenizer_matches_gearmand() {
    let t = |s: &str| -> Vec<String> {
        tokenize(s.as_bytes())
            .into_iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
    };
    assert_eq!(t("a b"), ["a", "b"]);
    assert_eq!(t("a    b"), ["a", "b"]);
    assert_eq!(t(" a"), ["", "a"]);
    assert_eq!(t("   "), ["", ""]);
    assert_eq!(t(""), [""]);
    assert_eq!(t("a\tb c"), ["a\tb", "c"]);
    assert_eq!(t("a "), ["a", ""]);
}

#[test]
fn arguments() {
    assert_eq!(
        cmd("cancel job H:vm:1"),
        Ok(AdminCommand::CancelJob("H:vm:1".into()))
    );
    assert_eq!(
        cmd("CANCEL JOB H:vm:1"),
        Ok(AdminCommand::CancelJob("H:vm:1".into()))
    );
    assert_eq!(
        cmd("create function abc"),
        Ok(AdminCommand::CreateFunction("abc".into()))
    );
    // The codec strips "\r"; we never cut the last character (gearmand's bug).
    assert_eq!(
        cmd("create function abc\n"),
        Ok(AdminCommand::CreateFunction("abc".into()))
    );
    assert_eq!(
        cmd("drop Function Rev"),
        Ok(AdminCommand::DropFunction("Rev".into()))
    );
    assert_eq!(
        cmd("shutdown"),
        Ok(AdminCommand::Shutdown { graceful: false })
    );
    assert_eq!(
        cmd("shutdown graceful"),
        Ok(AdminCommand::Shutdown { graceful: true })
    );
}

#[test]
fn maxqueue_forms_and_quirk() {
    let mq = |line: &str| match cmd(line) {
        Ok(AdminCommand::MaxQueue { function, limits }) => (function, limits),
        other => panic!("{line}: {other:?}"),
    };
    assert_eq!(mq("maxqueue foo"), ("foo".into(), [0, 0, 0]));
    assert_eq!(mq("maxqueue foo 10"), ("foo".into(), [10, 10, 10]));
    assert_eq!(mq("maxqueue foo -5"), ("foo".into(), [0, 0, 0]));
    assert_eq!(mq("maxqueue mq 0 1 5"), ("mq".into(), [0, 1, 5]));
    // Quirk: two numbers set HIGH and NORMAL; LOW stays unlimited.
    assert_eq!(mq("maxqueue foo 3 4"), ("foo".into(), [3, 4, 0]));
    assert_eq!(mq("MAXQUEUE foo 1 2 3 99"), ("foo".into(), [1, 2, 3]));
    assert_eq!(mq("maxqueue foo x"), ("foo".into(), [0, 0, 0]));
}

#[test]
fn error_replies_exact() {
    assert_eq!(
        err_line("bogus"),
        "ERR UNKNOWN_COMMAND Unknown+server+commandbogus\r\n"
    );
    assert_eq!(
        err_line(""),
        "ERR UNKNOWN_COMMAND Unknown+server+command\r\n"
    );
    assert_eq!(
        err_line("   "),
        "ERR UNKNOWN_COMMAND Unknown+server+command\r\n"
    );
    assert_eq!(
        err_line(" status"),
        "ERR UNKNOWN_COMMAND Unknown+server+command\r\n"
    );
    assert_eq!(
        err_line("show"),
        "ERR UNKNOWN_COMMAND Unknown+server+commandshow\r\n"
    );
    assert_eq!(err_line("show foo"), "ERR UNKNOWN_SHOW_ARGUMENTS\r\n");
    assert_eq!(
        err_line("show jobs extra"),
        "ERR UNKNOWN_SHOW_ARGUMENTS\r\n"
    );
    assert_eq!(
        err_line("cancel"),
        "ERR UNKNOWN_COMMAND Unknown+server+commandcancel\r\n"
    );
    assert_eq!(
        err_line("cancel job"),
        "ERR UNKNOWN_COMMAND Unknown+server+commandcancel\r\n"
    );
    assert_eq!(err_line("cancel foo bar"), "ERR UNKNOWN_ERROR\r\n");
    assert_eq!(
        err_line("maxqueue"),
        "ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+maxqueue\r\n"
    );
    assert_eq!(
        err_line("maxqueue\n"),
        "ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+maxqueue\r\n"
    );
    assert_eq!(
        err_line("create"),
        "ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+create\r\n"
    );
    assert_eq!(
        err_line("create function"),
        "ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+create\r\n"
    );
    assert_eq!(
        err_line("drop"),
        "ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+drop\r\n"
    );
    // The word is echoed as sent.
    assert_eq!(
        err_line("BoGuS"),
        "ERR UNKNOWN_COMMAND Unknown+server+commandBoGuS\r\n"
    );
    assert_eq!(
        AdminError::unknown_command("shutdown").to_line(),
        "ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n"
    );
    assert_eq!(AdminError::unknown_job().to_line(), "ERR UNKNOWN_JOB\r\n");
    assert_eq!(
        AdminError::function_not_found().to_line(),
        "ERR function not found\r\n"
    );
    assert_eq!(
        AdminError::function_in_use().to_line(),
        "ERR there are still connected workers or executing clients\r\n"
    );
}

#[test]
fn command_display_round_trips() {
    for c in [
        AdminCommand::Status,
        AdminCommand::PriorityStatus,
        AdminCommand::Workers,
        AdminCommand::Version,
        AdminCommand::Verbose,
        AdminCommand::Getpid,
        AdminCommand::ShowJobs,
        AdminCommand::ShowUniqueJobs,
        AdminCommand::CancelJob("H:x:1".into()),
        AdminCommand::MaxQueue {
            function: "f".into(),
            limits: [1, 2, 3],
        },
        AdminCommand::CreateFunction("f".into()),
        AdminCommand::DropFunction("f".into()),
        AdminCommand::Shutdown { graceful: false },
        AdminCommand::Shutdown { graceful: true },
    ] {
        assert_eq!(cmd(&c.to_string()), Ok(c.clone()), "{c}");
    }
    assert!(AdminCommand::ShowJobs.is_listing());
    assert!(!AdminCommand::Version.is_listing());
}

#[test]
fn row_formatters_exact() {
    let s = FunctionStatus {
        function: "rq".into(),
        total: 1,
        running: 1,
        workers: 1,
    };
    assert_eq!(s.to_line(), "rq\t1\t1\t1\n");
    let p = PriorityStatus {
        function: "prio".into(),
        high: 2,
        normal: 2,
        low: 2,
        workers: 0,
    };
    assert_eq!(p.to_line(), "prio\t2\t2\t2\t0\n");
    let w = WorkerInfo {
        fd: 39,
        ip: "127.0.0.1".into(),
        client_id: "-".into(),
        functions: vec![],
    };
    assert_eq!(w.to_line(), "39 127.0.0.1 - :\n");
    let w = WorkerInfo {
        fd: 38,
        ip: "127.0.0.1".into(),
        client_id: "worker-A".into(),
        functions: vec!["revt".into(), "rev".into(), "rev".into()],
    };
    assert_eq!(w.to_line(), "38 127.0.0.1 worker-A : revt rev rev\n");
    let j = JobInfo {
        handle: "H:vm:13".into(),
        retries: 1,
        ignore: false,
        queued: false,
    };
    assert_eq!(j.to_line(), "H:vm:13\t1\t0\t0\n");
    let j = JobInfo {
        handle: "H:vm:14".into(),
        retries: 0,
        ignore: true,
        queued: false,
    };
    assert_eq!(j.to_line(), "H:vm:14\t0\t1\t0\n");

    // Byte-level writers (what the server uses), NUL cuts like C's %s.
    let mut out = Vec::new();
    write_status_line(&mut out, b"tn\0", 0, 0, 1);
    write_priority_status_line(&mut out, b"prio", 2, 2, 2, 0);
    write_worker_line(
        &mut out,
        38,
        b"127.0.0.1",
        b"worker-A",
        [&b"revt"[..], b"rev", b"rev"],
    );
    write_job_line(&mut out, b"H:vm:1", 0, false, true);
    write_unique_line(&mut out, b"");
    write_unique_line(&mut out, b"u1");
    out.extend_from_slice(LIST_END.as_bytes());
    assert_eq!(
        out,
        b"tn\t0\t0\t1\nprio\t2\t2\t2\t0\n38 127.0.0.1 worker-A : revt rev rev\nH:vm:1\t0\t0\t1\n\nu1\n.\n"
    );
    assert_eq!(OK_LINE, "OK\r\n");
    assert_eq!(ok_value_line("1.1.20+ds"), "OK 1.1.20+ds\n");
}

#[test]
fn listing_parsers_on_vectors() {
    let status =
        parse_status("xyz\t0\t0\t0\nrevt\t0\t0\t1\nreverse\t3\t0\t0\nrev\t1\t0\t2\n.\n").unwrap();
    assert_eq!(status.len(), 4);
    assert_eq!(
        status[2],
        FunctionStatus {
            function: "reverse".into(),
            total: 3,
            running: 0,
            workers: 0
        }
    );
    assert_eq!(status[3].workers, 2);
    let text: String = status.iter().map(FunctionStatus::to_line).collect();
    assert_eq!(
        text,
        "xyz\t0\t0\t0\nrevt\t0\t0\t1\nreverse\t3\t0\t0\nrev\t1\t0\t2\n"
    );
    assert_eq!(parse_status(".\n").unwrap(), vec![]);

    let prio = parse_priority_status("prio\t2\t2\t2\t0\n.\n").unwrap();
    assert_eq!(
        prio,
        vec![PriorityStatus {
            function: "prio".into(),
            high: 2,
            normal: 2,
            low: 2,
            workers: 0
        }]
    );

    let workers =
        parse_workers("38 127.0.0.1 worker-A : revt rev rev\n39 127.0.0.1 - :\n.\n").unwrap();
    assert_eq!(workers.len(), 2);
    assert_eq!(workers[0].fd, 38);
    assert_eq!(workers[0].client_id, "worker-A");
    assert_eq!(workers[0].functions, ["revt", "rev", "rev"]);
    assert_eq!(workers[1].client_id, "-");
    assert!(workers[1].functions.is_empty());
    // A client id with spaces (SET_CLIENT_ID allows them).
    let w = WorkerInfo::parse_line("40 ::1 my id : f\n").unwrap();
    assert_eq!((w.ip.as_str(), w.client_id.as_str()), ("::1", "my id"));
    assert_eq!(w.functions, ["f"]);

    let jobs =
        parse_jobs("H:vm:1\t0\t0\t1\nH:vm:2\t0\t0\t1\nH:vm:4\t0\t0\t0\nH:vm:3\t0\t0\t1\n.\n")
            .unwrap();
    assert_eq!(jobs.len(), 4);
    assert_eq!(
        jobs[2],
        JobInfo {
            handle: "H:vm:4".into(),
            retries: 0,
            ignore: false,
            queued: false
        }
    );
    assert!(jobs[0].queued);

    let uniques = parse_unique_jobs("\n\nu1\nsame\n.\n").unwrap();
    assert_eq!(uniques, ["", "", "u1", "same"]);
}

#[test]
fn listing_parser_errors() {
    // No terminator: truncated reply.
    assert!(matches!(
        parse_status("a\t1\t1\t1\n"),
        Err(ListingError::Malformed(_))
    ));
    // Garbage row.
    assert!(matches!(
        parse_status("a\tx\t1\t1\n.\n"),
        Err(ListingError::Malformed(_))
    ));
    assert!(matches!(
        parse_status("a b\n.\n"),
        Err(ListingError::Malformed(_))
    ));
    assert!(matches!(
        parse_workers("nofd 1.2.3.4 - :\n.\n"),
        Err(ListingError::Malformed(_))
    ));
    assert!(matches!(
        parse_workers("1 1.2.3.4 -\n.\n"),
        Err(ListingError::Malformed(_))
    ));
    // An ERR reply in place of a listing (older server without prioritystatus).
    match parse_priority_status("ERR UNKNOWN_COMMAND Unknown+server+commandprioritystatus\r\n") {
        Err(ListingError::Server(AdminError { code, text })) => {
            assert_eq!(code, "UNKNOWN_COMMAND");
            assert_eq!(text, "Unknown server commandprioritystatus");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn single_line_replies() {
    assert_eq!(parse_reply("OK\r\n"), Ok(AdminReply::Ok));
    assert_eq!(parse_reply("OK"), Ok(AdminReply::Ok));
    assert_eq!(
        parse_reply("OK 1.1.20+ds\n"),
        Ok(AdminReply::Value("1.1.20+ds".into()))
    );
    assert_eq!(
        parse_reply("OK INFO\n"),
        Ok(AdminReply::Value("INFO".into()))
    );
    assert_eq!(
        parse_reply("OK 5170\n"),
        Ok(AdminReply::Value("5170".into()))
    );
    assert_eq!(
        parse_reply("ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n"),
        Ok(AdminReply::Err(AdminError::new(
            "UNKNOWN_COMMAND",
            "Unknown server commandshutdown"
        )))
    );
    assert_eq!(
        parse_reply("ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+maxqueue\r\n"),
        Ok(AdminReply::Err(AdminError::new(
            "INVALID_ARGUMENTS",
            "An incomplete set of arguments was sent to this command maxqueue"
        )))
    );
    assert_eq!(
        parse_reply("ERR UNKNOWN_JOB\r\n"),
        Ok(AdminReply::Err(AdminError::new("UNKNOWN_JOB", "")))
    );
    assert_eq!(
        parse_reply("ERR UNKNOWN_SHOW_ARGUMENTS\r\n"),
        Ok(AdminReply::Err(AdminError::unknown_show_arguments()))
    );
    assert_eq!(
        parse_reply("ERR function not found\r\n"),
        Ok(AdminReply::Err(AdminError::function_not_found()))
    );
    assert!(parse_reply("hello\n").is_err());
    assert!(parse_reply("OKAY\n").is_err());

    // Every gearmand ERR line survives parse -> to_line byte for byte.
    for line in [
        "ERR UNKNOWN_COMMAND Unknown+server+commandbogus\r\n",
        "ERR UNKNOWN_COMMAND Unknown+server+command\r\n",
        "ERR UNKNOWN_SHOW_ARGUMENTS\r\n",
        "ERR UNKNOWN_ERROR\r\n",
        "ERR UNKNOWN_JOB\r\n",
        "ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+drop\r\n",
        "ERR function not found\r\n",
        "ERR there are still connected workers or executing clients\r\n",
    ] {
        let e = AdminError::parse_line(line).unwrap();
        assert_eq!(e.to_line(), line);
    }
    // Conversion into the crate error.
    let e: Error = AdminError::unknown_job().into();
    assert!(matches!(e, Error::Server { ref code, .. } if code == "UNKNOWN_JOB"));
    assert_eq!(
        AdminError::parse_line("ERR UNKNOWN_COMMAND Unknown+server+commandbogus")
            .unwrap()
            .body(),
        "UNKNOWN_COMMAND Unknown+server+commandbogus"
    );
}

/// polygeard's `retain` and `window` commands and their listings.
#[test]
fn retain_and_window_commands() {
    assert_eq!(cmd("retain"), Ok(AdminCommand::Retain(None)));
    assert_eq!(
        cmd("RETAIN resize 60"),
        Ok(AdminCommand::Retain(Some(("resize".into(), 60))))
    );
    assert_eq!(
        cmd("window resize 0\r\n"),
        Ok(AdminCommand::UniqueWindow(Some(("resize".into(), 0))))
    );
    assert_eq!(cmd("window"), Ok(AdminCommand::UniqueWindow(None)));
    assert!(AdminCommand::Retain(None).is_listing());
    assert!(!AdminCommand::Retain(Some(("f".into(), 1))).is_listing());
    assert_eq!(
        err_line("retain f"),
        "ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+retain\r\n"
    );
    assert_eq!(
        err_line("window f -1"),
        "ERR INVALID_ARGUMENTS SECONDS+must+be+a+number\r\n"
    );
    for c in [
        AdminCommand::Retain(Some(("f".into(), 5))),
        AdminCommand::UniqueWindow(None),
    ] {
        assert_eq!(cmd(&c.to_string()), Ok(c));
    }
    let rows = parse_function_seconds("a\t5\nb-c\t3600\n.\n").unwrap();
    assert_eq!(
        rows,
        vec![
            ("a".to_string(), std::time::Duration::from_secs(5)),
            ("b-c".to_string(), std::time::Duration::from_secs(3600)),
        ]
    );
    assert!(parse_function_seconds(".\n").unwrap().is_empty());
    assert!(parse_function_seconds("a\tx\n.\n").is_err());
}

#[test]
fn polygear_control_commands_parse_and_print_back() {
    let round_trip = |line: &str, want: AdminCommand| {
        let got = cmd(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(got, want, "{line:?}");
        assert_eq!(cmd(&got.to_string()), Ok(got.clone()), "{got}");
    };
    round_trip("pause f", AdminCommand::Pause("f".into()));
    round_trip("PAUSE", AdminCommand::Paused);
    round_trip("resume f", AdminCommand::Resume("f".into()));
    round_trip("drain worker 12", AdminCommand::DrainWorker("12".into()));
    round_trip("drain", AdminCommand::Draining);
    round_trip("schedule list", AdminCommand::ScheduleList);
    round_trip(
        "schedule delete n",
        AdminCommand::ScheduleDelete("n".into()),
    );
    round_trip(
        "schedule add nightly report 0  3 * * *",
        AdminCommand::ScheduleAdd {
            name: "nightly".into(),
            function: "report".into(),
            cron: "0 3 * * *".into(),
            data: String::new(),
        },
    );
    round_trip(
        "schedule add tick beat */2 * * * * * -- a -- b",
        AdminCommand::ScheduleAdd {
            name: "tick".into(),
            function: "beat".into(),
            cron: "*/2 * * * * *".into(),
            data: "a -- b".into(),
        },
    );
    // Whatever parses prints back to a line that parses the same (the
    // admin_command fuzz target's property), also with NULs and odd spacing.
    for line in [
        "pause a\0b",
        "schedule add n f * \0x *",
        "schedule add n f * -- \0y z",
        "schedule add n f * --\0 -- a",
        "schedule   add  n  f  @hourly  --  a  b ",
        "schedule delete n\0",
        "drain WORKER w\0z",
    ] {
        let c = cmd(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(cmd(&c.to_string()), Ok(c.clone()), "{line:?} -> {c}");
    }
    for listing in ["pause", "drain", "schedule list"] {
        assert!(cmd(listing).unwrap().is_listing(), "{listing}");
    }
    for bad in [
        "resume",
        "pause a b",
        "drain worker",
        "drain a b",
        "schedule",
        "schedule add n f",
        "schedule add n f -- data",
        "schedule delete",
        "schedule frob",
        "pause \0x",
        "drain worker \0",
    ] {
        assert!(
            err_line(bad).starts_with("ERR INVALID_ARGUMENTS "),
            "{bad}: {}",
            err_line(bad)
        );
    }
    assert_eq!(
        AdminError::unknown_worker("x").to_line(),
        "ERR UNKNOWN_WORKER No+worker+connection+matches+x\r\n"
    );
}
