//! One server connection's outgoing side: [`Session`].
//!
//! A `Session` is created per TCP connect (a reconnect makes a new one, so
//! jobs of a dead connection see theirs closed) and is shared between the
//! server task that reads the connection (`grab.rs`) and every [`Job`]
//! assigned over it, whose methods write their packets from the calling
//! thread through the session's [`Outbox`]. It also carries the hand-over
//! of GRABs: a job that ends while the server task waits for a free slot
//! sends the GRAB with its last packet (see [`Session::send_final`]).
//!
//! Separate from the grab/sleep state machine because this is the part
//! jobs touch from any thread (lock-protected, never blocking), while the
//! state machine is owned by one task. `CloseReason` says why a session
//! refuses further packets; requests are encoded here (`encode_req`, over
//! the protocol's one encoder) because only the session writes packets.
//!
//! [`Job`]: super::Job

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::transport::WriteHalf;
use bytes::BytesMut;
use tokio::sync::{Notify, OwnedSemaphorePermit};

use crate::error::{Error, Result};
use crate::outbox::{flush_until_empty, settle, wait_drained, Flush, Outbox};
use crate::protocol::{encode_packet, Magic, PacketType, ProtocolError};
use crate::util::lock;

/// Appends one `\0REQ` packet made of `fields` to `dst` (with the one
/// encoder, [`encode_packet`]). A payload too large for a packet is the
/// caller's mistake: [`Error::InvalidArgument`].
fn encode_req(dst: &mut BytesMut, ty: PacketType, fields: &[&[u8]]) -> Result<()> {
    encode_packet(dst, Magic::Req, ty, fields).map_err(|e| match e {
        ProtocolError::PayloadTooLarge { size, .. } => Error::InvalidArgument(format!(
            "{} payload of {size} bytes does not fit in a packet",
            ty.name()
        )),
        e => e.into(),
    })
}

/// Unsent bytes of a worker connection above which a job's `send_*`
/// waits (until [`STREAM_BACKLOG_LOW`]). Above the largest packet (64 MiB):
/// the final packets of jobs running side by side (which never wait) may
/// fill the socket without any job streaming, and a job that then sends a
/// status must not wait for them; with several jobs' large results queued,
/// the server may itself have stopped reading until this worker reads the
/// next large JOB_ASSIGN, which another of its threads may be about to do.
pub(crate) const STREAM_BACKLOG_HIGH: usize = 96 << 20;
/// See [`STREAM_BACKLOG_HIGH`].
pub(crate) const STREAM_BACKLOG_LOW: usize = 64 << 20;

/// How long a job's send may wait for a server that does not read.
pub(crate) const SEND_BACKLOG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Clone)]
pub(super) enum CloseReason {
    /// The connection failed (the reason); queued packets are dropped.
    Lost(String),
    /// The worker shuts down; queued packets may still be flushed.
    Shutdown,
    /// The worker gave up waiting for its jobs and hands them back to the
    /// server (which requeues them when the connection closes): queued
    /// packets may still be flushed, later ones are dropped without an error.
    HandedBack,
}

/// A session's outgoing side, under one lock: the outbox and the GRAB
/// hand-over between ending jobs and the server task.
#[derive(Debug)]
struct Out {
    outbox: Outbox,
    closed: Option<CloseReason>,
    /// The server task wants to GRAB (GRAB_JOB_ALL if `true`) but every
    /// slot is taken: the job that ends next sends the GRAB right behind its
    /// final packet, in the same write, and hands its slot over in `sent`.
    grab_wanted: Option<bool>,
    /// GRABs written (by the task or an ending job) and their slots, in
    /// wire order, not yet moved to the task's list of GRABs in flight.
    sent: Vec<(OwnedSemaphorePermit, bool)>,
}

/// The write side of one TCP connection (one per connect; a reconnect makes a
/// new one, so jobs of a dead connection see it closed).
#[derive(Debug)]
pub(super) struct Session {
    pub(super) addr: Arc<str>,
    out: Mutex<Out>,
    /// Wakes the server task when the socket was full and it must flush.
    pub(super) wake: Notify,
    /// A function was registered: grab again even if asleep (the server
    /// sends no NOOP for jobs queued before the CAN_DO).
    pub(super) regrab: AtomicBool,
    /// The worker's stop flag: an ending job sends no GRAB once it is set.
    stopped: Arc<AtomicBool>,
    /// How many of the worker's connections want a slot to GRAB (one counter for all sessions).
    wanting: Arc<AtomicUsize>,
    /// Status queries to this server (shared by its sessions).
    pub(super) probe: Arc<super::probe::Probe>,
}

impl Session {
    pub(super) fn new(
        addr: Arc<str>,
        wr: WriteHalf,
        stopped: Arc<AtomicBool>,
        wanting: Arc<AtomicUsize>,
        probe: Arc<super::probe::Probe>,
    ) -> Session {
        Session {
            addr,
            out: Mutex::new(Out {
                outbox: Outbox::new(wr, BytesMut::new()),
                closed: None,
                grab_wanted: None,
                sent: Vec::new(),
            }),
            wake: Notify::new(),
            regrab: AtomicBool::new(false),
            stopped,
            wanting,
            probe,
        }
    }

    fn closed_error(&self, reason: &CloseReason) -> Error {
        match reason {
            CloseReason::Lost(r) => Error::ConnectionLost {
                addr: self.addr.to_string(),
                reason: r.clone(),
                kind: std::io::ErrorKind::ConnectionReset,
            },
            CloseReason::Shutdown => Error::Closed("worker shut down".into()),
            CloseReason::HandedBack => {
                Error::Closed("worker shut down; its jobs were handed back to the server".into())
            }
        }
    }

    /// Writes one packet now from the calling thread, or queues it behind
    /// bytes the server task is still flushing. Blocks only while the
    /// server leaves too much unread (see [`Session::backpressure`]): for a
    /// job's WORK_DATA, WORK_WARNING and WORK_STATUS, which it may send
    /// without end.
    pub(super) fn send(&self, ty: PacketType, fields: &[&[u8]]) -> Result<()> {
        let out = lock(&self.out);
        self.push(out, Some((ty, fields)), None)?;
        self.backpressure()
    }

    /// [`Session::send`] for a job's last packet: `slot` is the job's slot.
    /// If the server task waits for a slot to GRAB, the GRAB goes out
    /// right behind this packet, in the same write, and takes the slot
    /// over: no wake-up of the task, one read less for the server. Only
    /// when no other connection waits for a slot: those get it through the
    /// (first-come, first-served) semaphore, so servers take turns.
    pub(super) fn send_final(
        &self,
        ty: PacketType,
        fields: &[&[u8]],
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<()> {
        let mut out = lock(&self.out);
        let grab = match (slot, out.grab_wanted) {
            (Some(slot), Some(all))
                if !self.stopped.load(Ordering::Acquire)
                    && self.wanting.load(Ordering::Acquire) == 1 =>
            {
                self.set_wanted(&mut out, None);
                Some((slot, all))
            }
            _ => None,
        };
        // No wait here: a job's last packet is one per job (bounded by the
        // concurrency), and the server may itself wait for this worker to
        // read a large JOB_ASSIGN before it reads on (both sides waiting).
        self.push(out, Some((ty, fields)), grab)
    }

    /// Sends a GRAB holding `slot` (GRAB_JOB_ALL if `all`).
    pub(super) fn send_grab(&self, slot: OwnedSemaphorePermit, all: bool) -> Result<()> {
        let out = lock(&self.out);
        self.push(out, None, Some((slot, all)))
    }

    /// Writes `packet` and/or a GRAB (recorded in `out.sent`, in wire order).
    fn push(
        &self,
        mut out: MutexGuard<'_, Out>,
        packet: Option<(PacketType, &[&[u8]])>,
        grab: Option<(OwnedSemaphorePermit, bool)>,
    ) -> Result<()> {
        match &out.closed {
            None => {}
            // The job was handed back: another worker runs it; this result
            // (or GRAB) has nowhere to go.
            Some(CloseReason::HandedBack) => return Ok(()),
            Some(reason) => return Err(self.closed_error(reason)),
        }
        let mut encoded = Ok(());
        let pushed = out.outbox.push(|buf| {
            if let Some((ty, fields)) = packet {
                encoded = encode_req(buf, ty, fields);
            }
            if let (Ok(()), Some((_, all))) = (&encoded, &grab) {
                let ty = if *all {
                    PacketType::GrabJobAll
                } else {
                    PacketType::GrabJobUniq
                };
                encoded = encode_req(buf, ty, &[]);
            }
        });
        if let (Ok(()), Some(grab)) = (&encoded, grab) {
            out.sent.push(grab);
        }
        drop(out);
        let relock = || lock(&self.out);
        if let Err(e) = settle(pushed, relock, |out: &mut Out| &mut out.outbox, &self.wake) {
            return Err(self.write_failed(e));
        }
        encoded
    }

    /// If the server has not read more than [`STREAM_BACKLOG_HIGH`] bytes,
    /// waits (blocking, writing them itself) until it took some of them: a
    /// job streaming output to a server that stops reading must not grow
    /// memory without bound. Gives up after [`SEND_BACKLOG_TIMEOUT`].
    fn backpressure(&self) -> Result<()> {
        {
            let out = lock(&self.out);
            if out.outbox.pending() <= STREAM_BACKLOG_HIGH
                || matches!(out.closed, Some(CloseReason::HandedBack))
            {
                return Ok(());
            }
        }
        let deadline = std::time::Instant::now() + SEND_BACKLOG_TIMEOUT;
        let relock = || lock(&self.out);
        let low = STREAM_BACKLOG_LOW;
        match wait_drained(
            relock,
            |out: &mut Out| &mut out.outbox,
            &self.wake,
            low,
            deadline,
        ) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(Error::Timeout(format!(
                "server {} did not read the job's output for {SEND_BACKLOG_TIMEOUT:?}: {e}",
                self.addr
            ))),
            Err(e) => Err(self.write_failed(e)),
        }
    }

    /// Closes the outbox after a failed write (unless it was closed
    /// already); the server task notices, ends the session and
    /// reconnects.
    fn write_failed(&self, e: std::io::Error) -> Error {
        let mut out = lock(&self.out);
        let reason = match &out.closed {
            Some(reason) => reason.clone(),
            None => {
                let reason = CloseReason::Lost(format!("write failed: {e}"));
                out.outbox.close();
                out.closed = Some(reason.clone());
                reason
            }
        };
        drop(out);
        self.wake.notify_one();
        self.closed_error(&reason)
    }

    /// For the server task: the GRABs written since the last call, in
    /// wire order.
    pub(super) fn take_sent(&self) -> Vec<(OwnedSemaphorePermit, bool)> {
        std::mem::take(&mut lock(&self.out).sent)
    }

    /// For the server task: whether (and which) GRAB an ending job
    /// should send for it.
    pub(super) fn want_grab(&self, want: Option<bool>) {
        let mut out = lock(&self.out);
        self.set_wanted(&mut out, want);
    }

    /// Sets `grab_wanted`, keeping the worker-wide count of wanting connections.
    fn set_wanted(&self, out: &mut Out, want: Option<bool>) {
        match (out.grab_wanted.is_some(), want.is_some()) {
            (false, true) => {
                self.wanting.fetch_add(1, Ordering::AcqRel);
            }
            (true, false) => {
                self.wanting.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
        out.grab_wanted = want;
    }

    /// GRABs written but not yet tracked by the server task.
    pub(super) fn has_untracked_grabs(&self) -> bool {
        !lock(&self.out).sent.is_empty()
    }

    /// Refuses further packets. On a shutdown what is queued may still be
    /// flushed ([`Session::finish`]); a lost connection drops it and
    /// releases the socket at once (running jobs may hold the session).
    pub(super) fn close(&self, reason: CloseReason) {
        let mut out = lock(&self.out);
        if matches!(reason, CloseReason::Lost(_)) {
            out.outbox.close();
        }
        if out.closed.is_none() {
            out.closed = Some(reason);
        }
        // No job hands a slot to this connection any more; GRABs it handed
        // over and the task did not track die with the connection.
        self.set_wanted(&mut out, None);
        let untracked = std::mem::take(&mut out.sent);
        drop(out);
        drop(untracked);
        self.wake.notify_one();
    }

    /// For the server task, before it waits: records whether (and
    /// which) GRAB an ending job should send for it, then flushes like
    /// [`Session::flush_step`] (one lock for both). The write half to await
    /// (see [`writable`](crate::outbox::writable)) if the socket is full.
    pub(super) fn before_wait(
        &self,
        want: Option<bool>,
    ) -> std::io::Result<Option<Arc<WriteHalf>>> {
        let mut out = lock(&self.out);
        self.set_wanted(&mut out, want);
        Self::flush_locked(&mut out).map(Flush::blocked)
    }

    /// For the server task: flushes what the socket takes, if it was full.
    fn flush_step(&self) -> std::io::Result<Flush> {
        Self::flush_locked(&mut lock(&self.out))
    }

    fn flush_locked(out: &mut Out) -> std::io::Result<Flush> {
        if let Some(CloseReason::Lost(reason)) = &out.closed {
            return Err(std::io::Error::other(reason.clone()));
        }
        out.outbox.flush_step()
    }

    /// Writes everything still queued, waiting for the socket as needed,
    /// and for a job's thread still writing (what it holds must leave
    /// before the close). The caller then releases the socket with
    /// [`Session::release`].
    pub(super) async fn finish(&self) -> std::io::Result<()> {
        flush_until_empty(|| self.flush_step(), true).await
    }

    /// After [`Session::finish`]: closes the outbox, dropping anything still
    /// queued and releasing the socket's write half.
    pub(super) fn release(&self) {
        lock(&self.out).outbox.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Packet;
    use bytes::Bytes;

    #[test]
    fn encodes_like_the_packet_codec() {
        let mut b = BytesMut::new();
        encode_req(&mut b, PacketType::WorkComplete, &[b"H:x:1", b"a\0b"]).unwrap();
        let p = Packet::WorkComplete {
            handle: "H:x:1".into(),
            data: Bytes::from_static(b"a\0b"),
        };
        assert_eq!(&b[..], &p.to_bytes(Magic::Req).unwrap()[..]);
        b.clear();
        encode_req(&mut b, PacketType::GrabJobAll, &[]).unwrap();
        assert_eq!(
            &b[..],
            &Packet::GrabJobAll.to_bytes(Magic::Req).unwrap()[..]
        );
    }
}
