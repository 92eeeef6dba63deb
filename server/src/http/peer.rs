//! An HTTP request as a peer of the server's state.
//!
//! A job submitted over HTTP goes through the same `State::handle_packet` as
//! one from a TCP client: the request registers a peer whose outbox has no
//! socket ([`Outbox::local`]), sends it packets in-process, and decodes the
//! replies the state writes there with polygear's codec, woken by the
//! outbox when bytes arrive. Everything on the way is the TCP path's: the
//! durability gate holds a durable job's JOB_CREATED until it is stored,
//! the output limit and the memory budget apply. Dropping the peer (the
//! request finished, timed out, or its client went away and hyper dropped
//! the handler) removes it from the state like a closed connection.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use polygear::protocol::{Frame, Packet, PacketCodec, ProtocolError};
use tokio::time::Instant;

use crate::outbox::Outbox;
use crate::state::{ConnId, State};
use crate::Shared;

/// Why a [`LocalPeer`] gets no more replies.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    /// The deadline passed first.
    #[error("timed out")]
    TimedOut,
    /// The server is stopping.
    #[error("the server is stopping")]
    Stopped,
    /// The server dropped the peer: too much output waiting, or memory
    /// short (the connection limits of `--max-output`, `--max-buffered`).
    #[error("dropped by the server (output over --max-output or memory over --max-buffered)")]
    Dropped,
    /// The state wrote something the codec refused (a bug).
    #[error("undecodable reply: {0}")]
    Protocol(#[from] ProtocolError),
}

/// A request's peer in the state; removed when dropped.
pub(crate) struct LocalPeer {
    shared: Arc<Shared>,
    cid: ConnId,
    out: Arc<Outbox>,
    codec: PacketCodec,
    buf: BytesMut,
}

impl LocalPeer {
    /// Registers a peer and runs `f` with it under the same state lock (the
    /// peer is removed again if `f` fails). The peer has the `exceptions`
    /// and `polygear-fail-reasons` options on and the client id `http` (admin `workers` lists it so).
    pub(crate) fn start<E>(
        shared: &Arc<Shared>,
        ip: String,
        f: impl FnOnce(&mut State, ConnId) -> Result<(), E>,
    ) -> Result<LocalPeer, E> {
        let out = Arc::new(Outbox::local(shared.cfg.max_output, &shared.budget));
        let cid = shared.with_state(|st| {
            let cid = st.add_peer(out.clone(), -1, ip);
            if let Some(p) = st.peers.get_mut(&cid) {
                p.exceptions = true;
                p.fail_reasons = true;
                p.client_id = Bytes::from_static(b"http");
            }
            match f(st, cid) {
                Ok(()) => Ok(cid),
                Err(e) => {
                    st.remove_peer(cid);
                    Err(e)
                }
            }
        });
        let cid = match cid {
            Ok(cid) => cid,
            Err(e) => {
                out.close();
                return Err(e);
            }
        };
        Ok(LocalPeer {
            shared: shared.clone(),
            cid,
            out,
            // The state only writes packets it could encode.
            codec: PacketCodec::new(u32::MAX as usize),
            buf: BytesMut::new(),
        })
    }

    /// The next reply to this peer, waiting until `deadline` at most.
    pub(crate) async fn next(&mut self, deadline: Option<Instant>) -> Result<Packet, PeerError> {
        loop {
            if let Some(Frame::Packet(_, p)) = self.codec.decode_frame(&mut self.buf)? {
                return Ok(p);
            }
            if self.out.is_killed() {
                return Err(PeerError::Dropped);
            }
            let taken = self.out.take_local();
            if !taken.is_empty() {
                if self.buf.is_empty() {
                    self.buf = taken;
                } else {
                    self.buf.extend_from_slice(&taken);
                }
                continue;
            }
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // A write notified before this wait left a permit: no wake-up is lost.
                _ = self.out.ready.notified() => {}
                _ = sleep => return Err(PeerError::TimedOut),
                _ = self.shared.stop.cancelled() => return Err(PeerError::Stopped),
            }
        }
    }
}

impl Drop for LocalPeer {
    fn drop(&mut self) {
        let cid = self.cid;
        self.shared.with_state(|st| st.remove_peer(cid));
        self.out.close();
    }
}
