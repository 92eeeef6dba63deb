//! `admin_command`: arbitrary text through both sides of the admin protocol.
//!
//! * Server side: each line (cut at `\n` like the codec does, a `\r` before
//!   it dropped) through `tokenize` and `AdminCommand::parse`. A command's
//!   canonical text (`Display`) parses back to the same command; an error's
//!   `ERR` line is an error line that the client parses back to the same
//!   code and text (gearmand writes spaces as `+`, so a `+` in the text
//!   comes back as a space).
//! * Client side: the text (as UTF-8, lossily) through `parse_reply` and
//!   every listing parser, and each line through every row parser; a parsed
//!   row's gearmand line parses back to the same row. That holds for rows
//!   whose text fields have no NUL (gearmand's `%.*s` cuts names at one),
//!   `\r` or `\n` (line endings, stripped when parsing).

use polygear::protocol::admin::{
    is_error_line, listing_rows, ok_value_line, parse_jobs, parse_priority_status, parse_reply,
    parse_status, parse_unique_jobs, parse_workers, tokenize, AdminCommand, AdminError, AdminReply,
    FunctionStatus, JobInfo, PriorityStatus, WorkerInfo,
};

/// Runs both sides on `data` (see the module doc).
pub fn check(data: &[u8]) {
    // A line as given, with whatever line ending it has.
    let _ = AdminCommand::parse(data);
    for segment in data.split(|&b| b == b'\n') {
        check_command(segment.strip_suffix(b"\r").unwrap_or(segment));
    }
    check_replies(&String::from_utf8_lossy(data));
}

fn check_command(line: &[u8]) {
    let tokens = tokenize(line);
    assert!(!tokens.is_empty(), "no token");
    assert!(
        tokens.iter().all(|t| !t.contains(&b' ')),
        "a token with a space"
    );
    let nospace: Vec<u8> = line.iter().copied().filter(|&b| b != b' ').collect();
    assert_eq!(tokens.concat(), nospace, "tokens are not the line's words");

    match AdminCommand::parse(line) {
        Ok(cmd) => {
            let canonical = cmd.to_string();
            // `maxqueue F …` with an empty F (the line `maxqueue ` or
            // `maxqueue  `) prints as `maxqueue  0 0 0`, whose runs of
            // spaces collapse: it cannot round-trip.
            let empty_name =
                matches!(&cmd, AdminCommand::MaxQueue { function, .. } if function.is_empty());
            if !empty_name {
                assert_eq!(
                    AdminCommand::parse(canonical.as_bytes()).as_ref(),
                    Ok(&cmd),
                    "{canonical:?} does not parse back"
                );
            }
            let listing = matches!(
                cmd,
                AdminCommand::Status
                    | AdminCommand::PriorityStatus
                    | AdminCommand::Workers
                    | AdminCommand::ShowJobs
                    | AdminCommand::ShowUniqueJobs
                    | AdminCommand::Metrics
                    | AdminCommand::ShowRetry
                    | AdminCommand::DeadList(_)
                    | AdminCommand::Paused
                    | AdminCommand::Draining
                    | AdminCommand::ScheduleList
            );
            assert_eq!(cmd.is_listing(), listing);
        }
        Err(e) => {
            let l = e.to_line();
            assert!(l.starts_with("ERR ") && l.ends_with("\r\n"), "{l:?}");
            assert!(is_error_line(&l), "{l:?} is not an error line");
            let back = AdminError::parse_line(&l).unwrap_or_else(|x| panic!("{l:?}: {x}"));
            let want = if e.code.is_empty() {
                e.clone()
            } else {
                AdminError::new(e.code.clone(), e.text.replace('+', " "))
            };
            assert_eq!(back, want, "{l:?} parses back differently");
            assert_eq!(parse_reply(&l), Ok(AdminReply::Err(back)));
        }
    }
}

/// No NUL, `\r` or `\n` in a field.
fn clean(s: &str) -> bool {
    !s.contains(['\0', '\r', '\n'])
}

fn check_replies(text: &str) {
    let _ = is_error_line(text);
    let _ = parse_reply(text);
    let _ = parse_status(text);
    let _ = parse_priority_status(text);
    let _ = parse_workers(text);
    let _ = parse_jobs(text);
    let _ = parse_unique_jobs(text);
    if let Ok(rows) = listing_rows(text) {
        let mut again = String::new();
        for r in &rows {
            assert!(!r.contains('\n'), "a row with a newline");
            again.push_str(r);
            again.push('\n');
        }
        again.push_str(".\n");
        assert_eq!(
            listing_rows(&again).as_ref(),
            Ok(&rows),
            "rows do not round-trip"
        );
    }
    for line in text.split('\n') {
        if let Ok(AdminReply::Value(v)) = parse_reply(line) {
            if clean(&v) {
                let l = ok_value_line(&v);
                assert_eq!(parse_reply(&l), Ok(AdminReply::Value(v)));
            }
        }
        if let Ok(r) = FunctionStatus::parse_line(line) {
            if clean(&r.function) {
                assert_eq!(FunctionStatus::parse_line(&r.to_line()), Ok(r));
            }
        }
        if let Ok(r) = PriorityStatus::parse_line(line) {
            if clean(&r.function) {
                assert_eq!(PriorityStatus::parse_line(&r.to_line()), Ok(r));
            }
        }
        if let Ok(r) = JobInfo::parse_line(line) {
            if clean(&r.handle) {
                assert_eq!(JobInfo::parse_line(&r.to_line()), Ok(r));
            }
        }
        if let Ok(r) = WorkerInfo::parse_line(line) {
            if clean(&r.ip) && clean(&r.client_id) && r.functions.iter().all(|f| clean(f)) {
                assert_eq!(WorkerInfo::parse_line(&r.to_line()), Ok(r));
            }
        }
    }
}
