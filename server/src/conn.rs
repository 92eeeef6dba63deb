//! One task per connection: read, decode, apply under the state lock; a
//! sibling writer task drains the connection's [`Outbox`].

use std::os::fd::AsRawFd;
use std::sync::Arc;

use polygear::frame::FrameReader;
use polygear::protocol::{Magic, Packet, PacketCodec, PacketType, ProtocolError, RawFrame};
use polygear::transport::{ReadHalf, Stream};

use crate::admin::Listing;
use crate::outbox::{flush_dirty, Outbox};
use crate::wire::put_error;
use crate::Shared;

/// What the connection task does after a batch of requests.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close,
}

/// Frames applied per lock acquisition.
const BATCH: usize = 512;

/// One decoded input (also driven by `sim.rs`, the in-memory server).
#[allow(clippy::large_enum_variant)] // short-lived, never stored
pub(crate) enum In {
    Packet(Packet),
    Text(bytes::Bytes),
    /// A valid packet with `\0RES` magic.
    ResMagic,
    /// A valid type the server does not accept as a request.
    NotExpected,
    Fatal(ProtocolError),
}

/// Whether a server accepts `t` as a request.
fn is_request(t: PacketType) -> bool {
    use PacketType as T;
    matches!(
        t,
        T::CanDo
            | T::CantDo
            | T::ResetAbilities
            | T::PreSleep
            | T::SubmitJob
            | T::SubmitJobBg
            | T::SubmitJobHigh
            | T::SubmitJobHighBg
            | T::SubmitJobLow
            | T::SubmitJobLowBg
            | T::GrabJob
            | T::GrabJobUniq
            | T::GrabJobAll
            | T::WorkStatus
            | T::WorkComplete
            | T::WorkFail
            | T::WorkException
            | T::WorkData
            | T::WorkWarning
            | T::GetStatus
            | T::GetStatusUnique
            | T::EchoReq
            | T::SetClientId
            | T::CanDoTimeout
            | T::OptionReq
            | T::SubmitJobEpoch
            | T::SubmitReduceJob
            | T::SubmitReduceJobBackground
            | T::SubmitRetain
            | T::GetResult
    )
}

impl In {
    /// Classifies what the codec cut from the bytes read (`None`: more are
    /// needed). A packet with `\0RES` magic or of a type the server does not
    /// accept is answered from its header, like gearmand: its payload is not
    /// decoded.
    pub(crate) fn from_frame(frame: Result<Option<RawFrame>, ProtocolError>) -> Option<In> {
        Some(match frame {
            Ok(None) => return None,
            Ok(Some(RawFrame::Packet(Magic::Res, ..))) => In::ResMagic,
            // polygear's extension packet is no request: unknown, as before it existed.
            Ok(Some(RawFrame::Packet(_, PacketType::WorkFailReason, _))) => In::Fatal(
                ProtocolError::UnknownType(PacketType::WorkFailReason as u32),
            ),
            Ok(Some(RawFrame::Packet(_, kind, _))) if !is_request(kind) => In::NotExpected,
            Ok(Some(RawFrame::Packet(_, kind, payload))) => match Packet::decode(kind, payload) {
                Ok(p) => In::Packet(p),
                Err(e) => In::Fatal(e),
            },
            Ok(Some(RawFrame::Text(line))) => In::Text(line),
            Err(e) => In::Fatal(e),
        })
    }

    /// Answers an input that is not a request, like gearmand (a protocol
    /// error closes the connection, some without a reply); requests
    /// (packets, admin lines) are the caller's and give [`Flow::Continue`].
    pub(crate) fn answer_invalid(&self, out: &Arc<Outbox>) -> Flow {
        match self {
            In::Packet(_) | In::Text(_) => Flow::Continue,
            In::ResMagic => {
                out.write(|b| put_error(b, "INVALID_MAGIC", "Request magic expected"));
                Flow::Continue
            }
            In::NotExpected => {
                out.write(|b| put_error(b, "INVALID_COMMAND", "Command not expected"));
                Flow::Continue
            }
            In::Fatal(e) => {
                match e {
                    ProtocolError::BadMagic(_)
                    | ProtocolError::UnknownType(_)
                    | ProtocolError::LineTooLong { .. } => {}
                    ProtocolError::PayloadTooLarge { .. } => {
                        out.write(|b| put_error(b, "ARGUMENT_TOO_LARGE", &e.to_string()))
                    }
                    _ => out.write(|b| put_error(b, "INVALID_PACKET", &e.to_string())),
                }
                Flow::Close
            }
        }
    }
}

/// The next input from the bytes read, or `None` if more are needed.
fn next_input(reader: &mut FrameReader<ReadHalf>) -> Option<In> {
    In::from_frame(reader.next_raw_frame())
}

/// Serves one accepted connection until it closes or the server stops.
pub(crate) async fn serve(shared: Arc<Shared>, stream: Stream) {
    let tcp = stream.tcp();
    let peer_ip = tcp
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "-".into());
    let fd = tcp.as_raw_fd() as i64;
    let _ = tcp.set_nodelay(true);
    if shared.cfg.keepalive {
        let _ = socket2::SockRef::from(tcp).set_keepalive(true);
    }
    let (rd, wr) = stream.into_split();
    let out = Arc::new(Outbox::new(wr, shared.cfg.max_output, &shared.budget));
    let cid = shared.state.lock().add_peer(out.clone(), fd, peer_ip);
    let writer = {
        let out = out.clone();
        tokio::spawn(async move { out.run_writer().await })
    };
    let codec = PacketCodec::server(shared.cfg.max_packet, shared.cfg.max_line);
    let mut reader = FrameReader::new(rd, codec);
    let stop = shared.stop.clone();
    'conn: loop {
        // Decode and apply everything buffered, in bounded batches.
        loop {
            let (flow, more, listing) = apply(&shared, cid, &out, &mut reader);
            if let Some(listing) = listing {
                send_listing(&out, listing).await;
            }
            if flow == Flow::Close {
                break 'conn;
            }
            // Backpressure: a peer that does not read its replies stops being
            // read (sooner while the server is short of buffer memory).
            while out.pending() > shared.budget.high_water() {
                tokio::select! {
                    _ = out.drained.notified() => {}
                    _ = out.kill.cancelled() => break 'conn,
                    _ = stop.cancelled() => break 'conn,
                }
            }
            if !more {
                break;
            }
        }
        tokio::select! {
            r = reader.fill() => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => out.input.set(reader.buffer_capacity()),
            },
            _ = out.kill.cancelled() => break,
            _ = stop.cancelled() => break,
        }
    }
    shared.with_state(|st| st.remove_peer(cid));
    // Queued replies are still flushed (bounded by the shutdown timeout) so
    // that e.g. the admin `shutdown` gets its OK.
    out.close();
    let _ = writer.await;
    shared.conn_closed();
}

/// Renders an admin listing outside the state lock, a chunk at a time,
/// letting other connections' tasks run in between (with many functions a
/// `status` is megabytes: formatting it in one go would hold up everybody
/// queued behind this task).
async fn send_listing(out: &Arc<Outbox>, mut listing: Listing) {
    loop {
        let mut more = false;
        out.write(|b| more = listing.render(b));
        flush_dirty();
        if !more || out.is_killed() {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// Decodes and applies up to [`BATCH`] requests under one lock; returns the
/// flow, whether more complete requests may be buffered, and an admin
/// listing to send (it ends the batch; see [`send_listing`]).
fn apply(
    shared: &Shared,
    cid: u64,
    out: &Arc<Outbox>,
    reader: &mut FrameReader<ReadHalf>,
) -> (Flow, bool, Option<Listing>) {
    let Some(first) = next_input(reader) else {
        return (Flow::Continue, false, None);
    };
    let mut listing = None;
    let (flow, more, shutdown, trim) = shared.with_state(|st| {
        let mut flow = Flow::Continue;
        let mut next = Some(first);
        let mut n = 0;
        while let Some(i) = next.take() {
            n += 1;
            flow = match i {
                In::Packet(p) => {
                    st.handle_packet(cid, p);
                    Flow::Continue
                }
                In::Text(line) => {
                    // A listing can be megabytes: it is rendered after the
                    // lock is released, and ends the batch (so it is
                    // written before the next request's reply).
                    listing = st.handle_text(cid, &line);
                    Flow::Continue
                }
                other => {
                    if let In::Fatal(e) = &other {
                        tracing::debug!("connection {cid}: protocol error: {e}");
                    }
                    other.answer_invalid(out)
                }
            };
            // A peer whose replies pile up unread gets no more until they
            // drain (the caller waits): e.g. `status` pipelined by a
            // connection that never reads.
            let full = out.accounted_output() > shared.budget.high_water();
            if flow == Flow::Close || n == BATCH || full || listing.is_some() {
                n = BATCH;
                break;
            }
            next = next_input(reader);
        }
        st.forget_idle_functions();
        let shutdown = st.shutdown_requested.take();
        let trim = std::mem::take(&mut st.trim_requested);
        (flow, n == BATCH, shutdown, trim)
    });
    // This connection's own replies go out now (its peer waits for them);
    // what the batch sent to others may wait for the thread's other batches.
    out.flush();
    if trim {
        // SAFETY: malloc_trim only releases free heap memory back to the OS.
        unsafe {
            libc::malloc_trim(0);
        }
    }
    if let Some(graceful) = shutdown {
        shared.request_shutdown(graceful);
    }
    (flow, more, listing)
}
