//! One task per connection: read, decode, apply under the state lock; a
//! sibling writer task drains the connection's [`Outbox`].

use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use polygear::protocol::{
    Frame, Magic, Packet, PacketCodec, PacketType, ProtocolError, HEADER_LEN,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::outbox::Outbox;
use crate::wire::put_error;
use crate::Shared;

/// What the connection task does after a batch of requests.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// Frames applied per lock acquisition.
const BATCH: usize = 512;
/// Pause reading while this much of our own output is unsent.
const HIGH_WATER: usize = 4 << 20;

#[allow(clippy::large_enum_variant)] // short-lived, never stored
enum In {
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
    )
}

fn next_input(buf: &mut BytesMut, codec: &mut PacketCodec) -> Option<In> {
    if buf.len() >= HEADER_LEN && buf[0] == 0 {
        let magic = Magic::from_bytes(&buf[..4]);
        let code = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let size = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
        if let (Some(magic), Some(kind)) = (magic, PacketType::from_code(code)) {
            if size <= codec.max_packet() && buf.len() < HEADER_LEN + size {
                // Incomplete: let the buffer grow with the bytes that actually
                // arrive instead of reserving the declared size up front.
                return None;
            }
            let skip = magic == Magic::Res || !is_request(kind);
            if skip && size <= codec.max_packet() && buf.len() >= HEADER_LEN + size {
                buf.advance(HEADER_LEN + size);
                return Some(if magic == Magic::Res {
                    In::ResMagic
                } else {
                    In::NotExpected
                });
            }
        }
    }
    match codec.decode_frame(buf) {
        Ok(Some(Frame::Packet(_, p))) => Some(In::Packet(p)),
        Ok(Some(Frame::Text(t))) => Some(In::Text(t)),
        Ok(None) => None,
        Err(e) => Some(In::Fatal(e)),
    }
}

/// Serves one accepted connection until it closes or the server stops.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream) {
    let peer_ip = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "-".into());
    let fd = stream.as_raw_fd() as i64;
    let _ = stream.set_nodelay(true);
    if shared.cfg.keepalive {
        let _ = socket2::SockRef::from(&stream).set_keepalive(true);
    }
    let (mut rd, wr) = stream.into_split();
    let out = Arc::new(Outbox::new(wr, shared.cfg.max_output));
    let cid = shared.state.lock().add_peer(out.clone(), fd, peer_ip);
    let writer = {
        let out = out.clone();
        tokio::spawn(async move { out.run_writer().await })
    };
    let mut codec = PacketCodec::server(shared.cfg.max_packet, shared.cfg.max_line);
    let mut buf = BytesMut::with_capacity(8 << 10);
    let stop = shared.stop.clone();
    'conn: loop {
        // Decode and apply everything buffered, in bounded batches.
        loop {
            let (flow, more) = apply(&shared, cid, &out, &mut buf, &mut codec);
            if flow == Flow::Close {
                break 'conn;
            }
            if !more {
                break;
            }
        }
        // Backpressure: a peer that does not read its replies stops being read.
        while out.pending() > HIGH_WATER {
            tokio::select! {
                _ = out.drained.notified() => {}
                _ = out.kill.cancelled() => break 'conn,
                _ = stop.cancelled() => break 'conn,
            }
        }
        if buf.is_empty() && buf.capacity() > (1 << 20) {
            // Give back the space of a large packet once it is consumed.
            buf = BytesMut::with_capacity(8 << 10);
        }
        if buf.capacity() - buf.len() < 4096 {
            // Grows geometrically for large packets, in step with the data received.
            let want = (buf.len() / 2).clamp(16 << 10, 4 << 20);
            buf.reserve(want);
        }
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
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

/// Decodes and applies up to [`BATCH`] requests under one lock; returns the
/// flow and whether more complete requests may be buffered.
fn apply(
    shared: &Shared,
    cid: u64,
    out: &Arc<Outbox>,
    buf: &mut BytesMut,
    codec: &mut PacketCodec,
) -> (Flow, bool) {
    let Some(first) = next_input(buf, codec) else {
        return (Flow::Continue, false);
    };
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
                    st.handle_text(cid, &line);
                    Flow::Continue
                }
                In::ResMagic => {
                    out.write(|b| put_error(b, "INVALID_MAGIC", "Request magic expected"));
                    Flow::Continue
                }
                In::NotExpected => {
                    out.write(|b| put_error(b, "INVALID_COMMAND", "Command not expected"));
                    Flow::Continue
                }
                In::Fatal(e) => {
                    tracing::debug!("connection {cid}: protocol error: {e}");
                    match &e {
                        // Like gearmand: close without a reply.
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
            };
            if flow == Flow::Close || n == BATCH {
                break;
            }
            next = next_input(buf, codec);
        }
        let shutdown = st.shutdown_requested.take();
        let trim = std::mem::take(&mut st.trim_requested);
        (flow, n == BATCH, shutdown, trim)
    });
    if trim {
        // SAFETY: malloc_trim only releases free heap memory back to the OS.
        unsafe {
            libc::malloc_trim(0);
        }
    }
    if let Some(graceful) = shutdown {
        shared.request_shutdown(graceful);
    }
    (flow, more)
}
