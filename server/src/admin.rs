//! The admin text protocol (gearmand's exact reply formats).

use bytes::{BufMut, BytesMut};
use polygear::protocol::admin::{AdminCommand, AdminError};
use polygear::protocol::Decimal;

use crate::state::{ConnId, State};
use crate::wire::{parse_handle, until_nul, HandleBuf};

/// Server version reported by `version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

impl State {
    /// Handles one admin line from connection `cid`.
    pub(crate) fn handle_text(&mut self, cid: ConnId, line: &[u8]) {
        let mut b = BytesMut::new();
        match AdminCommand::parse(line) {
            Err(e) => b.put_slice(e.to_line().as_bytes()),
            Ok(cmd) => self.admin_command(cmd, line, &mut b),
        }
        if let Some(c) = self.peers.get(&cid) {
            c.out.write(|o| o.extend_from_slice(&b));
        }
    }
}

impl State {
    fn admin_command(&mut self, cmd: AdminCommand, line: &[u8], b: &mut BytesMut) {
        match cmd {
            AdminCommand::Status => {
                for f in self.funcs.iter().filter(|f| f.alive) {
                    put_name(b, &f.name);
                    for v in [f.total, f.running, f.workers.len() as u64] {
                        b.put_u8(b'\t');
                        b.put_slice(Decimal::from(v).as_bytes());
                    }
                    b.put_u8(b'\n');
                }
                b.put_slice(b".\n");
            }
            AdminCommand::PriorityStatus => {
                for f in self.funcs.iter().filter(|f| f.alive) {
                    put_name(b, &f.name);
                    for v in [
                        f.waiting[0],
                        f.waiting[1],
                        f.waiting[2],
                        f.workers.len() as u64,
                    ] {
                        b.put_u8(b'\t');
                        b.put_slice(Decimal::from(v).as_bytes());
                    }
                    b.put_u8(b'\n');
                }
                b.put_slice(b".\n");
            }
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
                    for a in c.abilities.iter().rev() {
                        b.put_u8(b' ');
                        put_name(b, &self.funcs[a.func as usize].name);
                    }
                    b.put_u8(b'\n');
                }
                b.put_slice(b".\n");
            }
            AdminCommand::Version => {
                b.put_slice(b"OK ");
                b.put_slice(VERSION.as_bytes());
                b.put_u8(b'\n');
            }
            AdminCommand::Verbose => {
                b.put_slice(b"OK ");
                b.put_slice(self.cfg.verbose.to_ascii_uppercase().as_bytes());
                b.put_u8(b'\n');
            }
            AdminCommand::Getpid => {
                b.put_slice(b"OK ");
                b.put_slice(Decimal::from(std::process::id()).as_bytes());
                b.put_u8(b'\n');
            }
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
                    self.funcs[f as usize].maxqueue = limits;
                }
                b.put_slice(b"OK\r\n");
            }
            AdminCommand::CreateFunction(name) => {
                self.func_id(name.as_bytes());
                b.put_slice(b"OK\r\n");
            }
            AdminCommand::DropFunction(name) => {
                let found = self
                    .funcs
                    .iter()
                    .position(|f| f.alive && f.name.eq_ignore_ascii_case(name.as_bytes()));
                match found {
                    None => b.put_slice(AdminError::function_not_found().to_line().as_bytes()),
                    Some(i) => {
                        let f = &self.funcs[i];
                        if !f.workers.is_empty() || f.total > 0 {
                            b.put_slice(AdminError::function_in_use().to_line().as_bytes());
                        } else {
                            self.drop_function(i as u32);
                            b.put_slice(b"OK\r\n");
                        }
                    }
                }
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
fn put_name(b: &mut BytesMut, name: &[u8]) {
    b.put_slice(until_nul(name));
}
