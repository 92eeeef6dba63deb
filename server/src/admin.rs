//! The admin text protocol (gearmand's exact reply formats).

use bytes::{BufMut, Bytes, BytesMut};
use polygear::protocol::admin::{AdminCommand, AdminError};
use polygear::protocol::Decimal;

use crate::state::{ConnId, State};
use crate::stats::ActionError;
use crate::wire::{parse_handle, until_nul, HandleBuf};

/// Server version reported by `version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A `status` or `prioritystatus` reply whose rows were copied under the
/// state lock, formatted once it is released: with many functions the
/// text is megabytes, and other connections must not wait for it.
pub(crate) struct Listing {
    rows: Vec<(Bytes, [u64; 4])>,
    columns: usize,
    /// Rows already rendered.
    done: usize,
}

impl Listing {
    /// Rows rendered per [`Listing::render`] call.
    pub(crate) const CHUNK: usize = 1024;

    /// Writes the next [`Listing::CHUNK`] rows of the reply (gearmand's
    /// format: tab-separated), and the final `.` line after the last;
    /// returns whether rows are left. In chunks, so the connection task can
    /// let others run in between (a big listing takes a while to format).
    pub(crate) fn render(&mut self, b: &mut BytesMut) -> bool {
        let n = self.rows.len().saturating_sub(self.done).min(Self::CHUNK);
        for (name, values) in &self.rows[self.done..self.done + n] {
            put_name(b, name);
            for v in &values[..self.columns] {
                b.put_u8(b'\t');
                b.put_slice(Decimal::from(*v).as_bytes());
            }
            b.put_u8(b'\n');
        }
        self.done += n;
        if self.done == self.rows.len() {
            b.put_slice(b".\n");
            return false;
        }
        true
    }
}

impl State {
    /// Handles one admin line from connection `cid`; a [`Listing`] returned
    /// is the reply, for the caller to render and send after the lock.
    pub(crate) fn handle_text(&mut self, cid: ConnId, line: &[u8]) -> Option<Listing> {
        // Replies keep the requests' order: a waiting GRAB is answered first.
        self.end_grab_wait(cid, None);
        let mut b = BytesMut::new();
        match AdminCommand::parse(line) {
            Err(e) => b.put_slice(e.to_line().as_bytes()),
            Ok(AdminCommand::Status) => {
                let rows = self.funcs.iter().map(|f| {
                    let v = [f.total, f.running, f.registrations, 0];
                    (f.name.clone(), v)
                });
                return Some(Listing {
                    rows: rows.collect(),
                    columns: 3,
                    done: 0,
                });
            }
            Ok(AdminCommand::PriorityStatus) => {
                let rows = self.funcs.iter().map(|f| {
                    let [h, n, l] = f.waiting;
                    (f.name.clone(), [h, n, l, f.registrations])
                });
                return Some(Listing {
                    rows: rows.collect(),
                    columns: 4,
                    done: 0,
                });
            }
            Ok(
                cmd @ (AdminCommand::SetRetry { .. }
                | AdminCommand::ShowRetry
                | AdminCommand::DeadList(_)
                | AdminCommand::DeadRetry(_)
                | AdminCommand::DeadDelete(_)),
            ) => self.retry_admin(cmd, &mut b),
            Ok(cmd) => self.admin_command(cmd, line, &mut b),
        }
        if let Some(c) = self.peers.get(&cid) {
            c.out.write(|o| o.extend_from_slice(&b));
        }
        None
    }
}

impl State {
    fn admin_command(&mut self, cmd: AdminCommand, line: &[u8], b: &mut BytesMut) {
        match cmd {
            // Answered by `handle_text` (a `Listing`, or `retry_admin`).
            AdminCommand::Status
            | AdminCommand::PriorityStatus
            | AdminCommand::SetRetry { .. }
            | AdminCommand::ShowRetry
            | AdminCommand::DeadList(_)
            | AdminCommand::DeadRetry(_)
            | AdminCommand::DeadDelete(_) => {}
            AdminCommand::Workers => {
                let mut peers: Vec<_> = self.peers.values().collect();
                peers.sort_by_key(|c| c.fd);
                for c in peers {
                    b.put_slice(Decimal::from(c.fd.max(0) as u64).as_bytes());
                    b.put_u8(b' ');
                    b.put_slice(c.ip.as_bytes());
                    b.put_u8(b' ');
                    put_name(b, &c.client_id);
                    b.put_slice(b" :");
                    // Newest first, duplicates repeated (gearmand's list).
                    for (fid, a) in c.abilities.in_order().into_iter().rev() {
                        for _ in 0..a.count {
                            b.put_u8(b' ');
                            put_name(b, &self.funcs[fid].name);
                        }
                    }
                    b.put_u8(b'\n');
                }
                b.put_slice(b".\n");
            }
            AdminCommand::Version => put_ok_value(b, VERSION.as_bytes()),
            AdminCommand::Verbose => {
                put_ok_value(b, self.cfg.verbose.to_ascii_uppercase().as_bytes())
            }
            AdminCommand::Getpid => put_ok_value(b, Decimal::from(std::process::id()).as_bytes()),
            AdminCommand::ShowJobs => {
                let mut hs: Vec<_> = self.jobs.keys().copied().collect();
                hs.sort_unstable();
                for h in hs {
                    let j = &self.jobs[&h];
                    b.put_slice(&HandleBuf::new(&self.prefix, h));
                    b.put_u8(b'\t');
                    b.put_slice(Decimal::from(j.retries).as_bytes());
                    b.put_slice(if j.ignore { b"\t1" } else { b"\t0" });
                    b.put_slice(if j.background && !j.ignore {
                        b"\t1\n"
                    } else {
                        b"\t0\n"
                    });
                }
                b.put_slice(b".\n");
            }
            AdminCommand::ShowUniqueJobs => {
                let mut hs: Vec<_> = self.jobs.keys().copied().collect();
                hs.sort_unstable();
                for h in hs {
                    put_name(b, self.jobs[&h].unique());
                    b.put_u8(b'\n');
                }
                b.put_slice(b".\n");
            }
            AdminCommand::CancelJob(handle) => {
                let ok = parse_handle(&self.prefix, handle.as_bytes())
                    .is_some_and(|h| self.cancel_job(h));
                if ok {
                    b.put_slice(b"OK\r\n");
                } else {
                    b.put_slice(AdminError::unknown_job().to_line().as_bytes());
                }
            }
            AdminCommand::MaxQueue { function, limits } => {
                if let Some(f) = self.find_func(function.as_bytes()) {
                    self.funcs[f].maxqueue = limits;
                    self.funcs.touch(f);
                }
                b.put_slice(b"OK\r\n");
            }
            AdminCommand::CreateFunction(name) => {
                self.func_id(name.as_bytes());
                b.put_slice(b"OK\r\n");
            }
            AdminCommand::DropFunction(name) => match self.drop_function(name.as_bytes()) {
                Err(ActionError::NoSuchFunction) => {
                    b.put_slice(AdminError::function_not_found().to_line().as_bytes())
                }
                Err(_) => b.put_slice(AdminError::function_in_use().to_line().as_bytes()),
                Ok(()) => b.put_slice(b"OK\r\n"),
            },
            AdminCommand::Metrics => {
                let running: u64 = self.funcs.iter().map(|f| f.running).sum();
                let m = &self.metrics;
                let budget = &self.budget;
                for (name, v) in [
                    ("connections", self.peers.len() as u64),
                    ("jobs", self.jobs.len() as u64),
                    ("jobs_running", running),
                    ("functions", self.funcs.len() as u64),
                    ("functions_forgotten", m.functions_forgotten),
                    ("buffered_bytes", budget.used() as u64),
                    ("buffered_limit_bytes", budget.limit() as u64),
                    (
                        "connections_dropped_over_budget",
                        budget.dropped.load(std::sync::atomic::Ordering::Relaxed),
                    ),
                    ("requests_refused", m.refused),
                    ("queue_submissions_refused", m.queue_refused),
                    ("queue_jobs_claimed", m.jobs_claimed),
                    ("queue_fenced", self.fenced() as u64),
                    ("results_kept", self.results.len() as u64),
                    ("results_bytes", self.results.bytes() as u64),
                    ("results_dropped", self.results.dropped),
                    ("dead_jobs", self.retries.dead_len() as u64),
                    ("dead_dropped", self.retries.dropped),
                    ("jobs_retried", self.retries.retried),
                    ("dead_requeued", self.retries.requeued),
                ] {
                    b.put_slice(name.as_bytes());
                    b.put_u8(b' ');
                    b.put_slice(Decimal::from(v).as_bytes());
                    b.put_u8(b'\n');
                }
                b.put_slice(b".\n");
            }
            AdminCommand::Retain(set) => self.admin_retain(false, set, b),
            AdminCommand::UniqueWindow(set) => self.admin_retain(true, set, b),
            AdminCommand::Pause(name) => {
                self.pause(name.as_bytes());
                b.put_slice(b"OK\r\n");
            }
            AdminCommand::Resume(name) => {
                self.resume(name.as_bytes());
                b.put_slice(b"OK\r\n");
            }
            AdminCommand::Paused => {
                for name in self.paused_functions() {
                    put_name(b, &name);
                    b.put_u8(b'\n');
                }
                b.put_slice(b".\n");
            }
            AdminCommand::DrainWorker(id) => match self.drain_worker(id.as_bytes()) {
                0 => b.put_slice(AdminError::unknown_worker(&id).to_line().as_bytes()),
                n => {
                    b.put_slice(b"OK ");
                    b.put_slice(Decimal::from(n as u64).as_bytes());
                    b.put_slice(b"\r\n");
                }
            },
            AdminCommand::Draining => {
                for (fd, client_id) in self.draining_workers() {
                    b.put_slice(Decimal::from(fd as u64).as_bytes());
                    b.put_u8(b' ');
                    put_name(b, &client_id);
                    b.put_u8(b'\n');
                }
                b.put_slice(b".\n");
            }
            AdminCommand::ScheduleAdd {
                name,
                function,
                cron,
                data,
            } => {
                let spec = crate::ScheduleSpec {
                    name,
                    cron,
                    function,
                    data: Bytes::from(data),
                };
                match self.add_schedule(spec) {
                    Ok(()) => b.put_slice(b"OK\r\n"),
                    Err(e) => b.put_slice(
                        AdminError::invalid_schedule(&e.to_string())
                            .to_line()
                            .as_bytes(),
                    ),
                }
            }
            AdminCommand::ScheduleDelete(name) => {
                if self.delete_schedule(&name) {
                    b.put_slice(b"OK\r\n");
                } else {
                    b.put_slice(AdminError::unknown_schedule().to_line().as_bytes());
                }
            }
            AdminCommand::ScheduleList => {
                for r in self.schedule_rows() {
                    let data: String = String::from_utf8_lossy(&r.spec.data)
                        .chars()
                        .map(|c| if c.is_control() { '?' } else { c })
                        .collect();
                    let line = format!(
                        "{}\t{}\t{}\t{}\t{}\t{}\n",
                        r.spec.name, r.spec.function, r.spec.cron, r.last, r.next, data
                    );
                    b.put_slice(line.as_bytes());
                }
                b.put_slice(b".\n");
            }
            AdminCommand::Shutdown { graceful } => {
                if self.cfg.allow_shutdown {
                    self.shutdown_requested = Some(graceful);
                    b.put_slice(b"OK\r\n");
                } else {
                    let word = line.split(|&c| c == b' ').next().unwrap_or(b"");
                    let word = String::from_utf8_lossy(word);
                    b.put_slice(AdminError::unknown_command(&word).to_line().as_bytes());
                }
            }
        }
    }
}

/// Writes a name the way gearmand's `%.*s` does: cut at the first NUL.
/// `OK <value>\n`, gearmand's reply carrying one value (`version`, `getpid`).
pub(crate) fn put_ok_value(b: &mut BytesMut, value: &[u8]) {
    b.put_slice(b"OK ");
    b.put_slice(value);
    b.put_u8(b'\n');
}

fn put_name(b: &mut BytesMut, name: &[u8]) {
    b.put_slice(until_nul(name));
}
