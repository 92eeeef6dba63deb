//! The request dispatcher: which packet goes where. Each request type is
//! routed to the part that owns it ([`super::submit`], [`super::schedule`],
//! [`super::lifecycle`]); only requests that are answered on the spot and
//! change no job (ECHO, SET_CLIENT_ID, OPTION_REQ, GET_STATUS*) are handled
//! here. Kept apart so the protocol surface can be read in one place.

use bytes::{Bytes, BytesMut};
use polygear::protocol::{Decimal, Packet, PacketType, Priority, OPTION_FAIL_REASONS};

use super::{ConnId, State};
use crate::wire::{parse_handle, put_pkt, until_nul};

/// Longest client id kept (gearmand truncates to 127 bytes).
const MAX_CLIENT_ID: usize = 127;

impl State {
    /// Handles one request packet from connection `cid`.
    pub(crate) fn handle_packet(&mut self, cid: ConnId, p: Packet) {
        if self.grabs_waiting > 0 && !self.answers_nothing(cid, &p) {
            // Replies keep the requests' order: a waiting GRAB is answered first.
            self.end_grab_wait(cid, None);
        }
        match p {
            Packet::EchoReq { data } => {
                self.reply(cid, |b| put_pkt(b, PacketType::EchoRes, &[&data]));
            }
            Packet::SubmitJob {
                function,
                unique,
                data,
                priority,
                background,
            } => self.submit(cid, &function, unique, data, priority, background, None, 0),
            Packet::SubmitReduceJob {
                function,
                unique,
                reducer,
                data,
                background,
                ..
            } => self.submit(
                cid,
                &function,
                unique,
                data,
                Priority::Normal,
                background,
                Some(&reducer),
                0,
            ),
            Packet::SubmitJobEpoch {
                function,
                unique,
                when,
                data,
            } => self.submit(
                cid,
                &function,
                unique,
                data,
                Priority::Normal,
                true,
                None,
                when,
            ),
            Packet::GrabJob => self.grab(cid, PacketType::JobAssign),
            Packet::GrabJobUniq => self.grab(cid, PacketType::JobAssignUniq),
            Packet::GrabJobAll => self.grab(cid, PacketType::JobAssignAll),
            Packet::PreSleep => self.pre_sleep(cid),
            Packet::CanDo { function } => self.can_do(cid, &function, 0),
            Packet::CanDoTimeout { function, timeout } => {
                let t = if timeout == 0 { 0 } else { timeout.max(1000) };
                self.can_do(cid, &function, t)
            }
            Packet::CantDo { function } => self.cant_do(cid, Some(&function)),
            Packet::ResetAbilities => self.cant_do(cid, None),
            Packet::SetClientId { id } => self.set_client_id(cid, &id),
            Packet::OptionReq { name } => self.option_req(cid, &name),
            // Like gearmand, which reads them with `%.*s`: cut at a NUL, which
            // would make the echoed first field of STATUS_RES ambiguous.
            Packet::GetStatus { handle } => self.get_status(cid, until_nul(&handle)),
            Packet::GetStatusUnique { unique } => self.get_status_unique(cid, until_nul(&unique)),
            Packet::WorkStatus {
                handle,
                numerator,
                denominator,
            } => self.work_status(cid, &handle, &numerator, &denominator),
            Packet::WorkData { handle, data } => {
                self.work_data(cid, PacketType::WorkData, &handle, &data)
            }
            Packet::WorkWarning { handle, data } => {
                self.work_data(cid, PacketType::WorkWarning, &handle, &data)
            }
            Packet::WorkComplete { handle, data } => self.work_complete(cid, &handle, &data),
            Packet::WorkFail { handle } => self.work_fail(cid, &handle),
            Packet::WorkException { handle, data } => self.work_exception(cid, &handle, &data),
            Packet::SubmitRetain { seconds } => self.submit_retain(cid, seconds),
            Packet::GetResult { handle } => self.get_result(cid, until_nul(&handle)),
            _ => {
                self.reply_error(cid, "INVALID_COMMAND", "Command not expected");
            }
        }
    }

    /// Whether `p` writes nothing back to its sender: a worker's update on
    /// a job it holds (which may come while its GRAB for the next job
    /// waits), or a further GRAB in the same form (it waits with them).
    fn answers_nothing(&self, cid: ConnId, p: &Packet) -> bool {
        let handle = match p {
            Packet::WorkStatus { handle, .. }
            | Packet::WorkData { handle, .. }
            | Packet::WorkWarning { handle, .. }
            | Packet::WorkComplete { handle, .. }
            | Packet::WorkFail { handle }
            | Packet::WorkException { handle, .. } => handle,
            Packet::GrabJob => return self.joins_grab_wait(cid, PacketType::JobAssign),
            Packet::GrabJobUniq => return self.joins_grab_wait(cid, PacketType::JobAssignUniq),
            Packet::GrabJobAll => return self.joins_grab_wait(cid, PacketType::JobAssignAll),
            _ => return false,
        };
        handle.len() < 64 && self.held_job(cid, handle).is_some()
    }

    fn set_client_id(&mut self, cid: ConnId, id: &[u8]) {
        if let Some(c) = self.peers.get_mut(&cid) {
            let n = id.len().min(MAX_CLIENT_ID);
            // Copied: a slice would pin the whole read buffer.
            c.client_id = Bytes::copy_from_slice(&id[..n]);
        }
    }

    fn option_req(&mut self, cid: ConnId, name: &[u8]) {
        let exceptions = name.eq_ignore_ascii_case(b"exceptions");
        let reasons = name.eq_ignore_ascii_case(OPTION_FAIL_REASONS.as_bytes());
        if exceptions || reasons {
            if let Some(c) = self.peers.get_mut(&cid) {
                c.exceptions |= exceptions;
                c.fail_reasons |= reasons;
            }
            self.reply(cid, |b| put_pkt(b, PacketType::OptionRes, &[name]));
        } else {
            self.reply_error(
                cid,
                "UNKNOWN_OPTION",
                "Server does not recognize given option",
            );
        }
    }

    fn get_status(&self, cid: ConnId, handle: &[u8]) {
        // A cancelled job (still held by its worker, or not yet reaped from
        // its queue) is unknown: that is how its worker learns of the cancel.
        let job = parse_handle(&self.prefix, handle)
            .and_then(|n| self.jobs.get(&n))
            .filter(|j| !j.cancelled);
        let (known, running, num, den) = match job {
            Some(j) => (true, j.running(), j.num, j.den),
            None => (false, false, 0, 0),
        };
        self.reply(cid, |b| {
            put_status(
                b,
                PacketType::StatusRes,
                handle,
                known,
                running,
                num,
                den,
                None,
            )
        });
    }

    fn get_status_unique(&self, cid: ConnId, unique: &[u8]) {
        let jobs = &self.jobs;
        let job = (0..self.funcs.slots())
            .filter(|&fid| self.funcs[fid].alive && self.funcs[fid].total > 0)
            .find_map(|fid| {
                self.uniques.get(fid, unique, |h| {
                    jobs.get(&h)
                        .is_some_and(|j| j.func == fid && j.key() == Some(unique))
                })
            })
            .and_then(|h| self.jobs.get(&h));
        let (known, running, num, den, clients) = match job {
            Some(j) => (true, j.running(), j.num, j.den, j.clients.len() as u64),
            None => (false, false, 0, 0, 0),
        };
        self.reply(cid, |b| {
            put_status(
                b,
                PacketType::StatusResUnique,
                unique,
                known,
                running,
                num,
                den,
                Some(clients),
            )
        });
    }
}

/// Encodes STATUS_RES (`clients` = None) or STATUS_RES_UNIQUE.
#[allow(clippy::too_many_arguments)]
fn put_status(
    b: &mut BytesMut,
    kind: PacketType,
    first: &[u8],
    known: bool,
    running: bool,
    num: u32,
    den: u32,
    clients: Option<u64>,
) {
    let (n, d) = (Decimal::from(num), Decimal::from(den));
    let k: &[u8] = if known { b"1" } else { b"0" };
    let r: &[u8] = if running { b"1" } else { b"0" };
    match clients.map(Decimal::from) {
        Some(c) => put_pkt(
            b,
            kind,
            &[first, k, r, n.as_bytes(), d.as_bytes(), c.as_bytes()],
        ),
        None => put_pkt(b, kind, &[first, k, r, n.as_bytes(), d.as_bytes()]),
    }
}
