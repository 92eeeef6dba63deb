//! Raw protocol peers for tests that check exact packets: a binary-protocol
//! connection ([`Raw`], usable as a client or a worker) and a text admin
//! command helper ([`admin_lines`]). They use only `polygear::protocol`, not
//! polygear's Client/Worker, so they can drive those from the other side.
//! Every wait is bounded by the `limit` given at connect time and panics
//! (failing the test) when it runs out.

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use polygear::protocol::{Frame, Magic, Packet, PacketCodec, Priority};
use polygear::ServerAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::ServerKind;

/// Largest packet a [`Raw`] connection decodes (tests send 16 MiB payloads).
const MAX_PACKET: usize = 128 << 20;

/// `s` as [`Bytes`].
pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// `d` with its bytes in reverse order.
pub fn reversed(d: &Bytes) -> Bytes {
    d.iter().rev().copied().collect::<Vec<u8>>().into()
}

/// Runs `body` once per selected server kind (at least one must be
/// selected), each run bounded by `limit`; panics naming `name` on timeout.
pub async fn each_server<F, Fut>(name: &str, limit: Duration, body: F)
where
    F: Fn(ServerKind) -> Fut,
    Fut: Future<Output = ()>,
{
    let kinds = ServerKind::selected();
    assert!(
        !kinds.is_empty(),
        "no job server selected (POLYGEAR_TEST_SERVERS)"
    );
    for kind in kinds {
        if timeout(limit, body(kind)).await.is_err() {
            panic!("{name} timed out against {}", kind.name());
        }
    }
}

/// A job as a raw worker receives it (JOB_ASSIGN_UNIQ).
#[derive(Debug)]
pub struct Assigned {
    /// Job handle.
    pub handle: Bytes,
    /// Unique id given by the client.
    pub unique: Bytes,
    /// Job payload.
    pub data: Bytes,
}

/// A raw binary-protocol connection (client or worker side).
pub struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    codec: PacketCodec,
    limit: Duration,
}

impl Raw {
    /// Connects to `addr` (TCP_NODELAY); `limit` bounds the connect and
    /// every later [`Raw::recv`].
    pub async fn connect(addr: &ServerAddr, limit: Duration) -> Raw {
        let stream = addr.connect(limit).await.expect("connect");
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        Raw {
            stream,
            buf: BytesMut::new(),
            codec: PacketCodec::new(MAX_PACKET),
            limit,
        }
    }

    /// A worker connection that sent CAN_DO `function`.
    pub async fn worker(addr: &ServerAddr, function: &str, limit: Duration) -> Raw {
        let mut w = Raw::connect(addr, limit).await;
        w.send(Packet::CanDo {
            function: b(function),
        })
        .await;
        w
    }

    /// Sends one request packet.
    pub async fn send(&mut self, p: Packet) {
        let wire = p.to_bytes(Magic::Req).unwrap();
        self.stream.write_all(&wire).await.expect("send");
    }

    /// Receives the next response packet; panics on anything else, on EOF,
    /// or when none comes within the limit.
    pub async fn recv(&mut self) -> Packet {
        let fut = async {
            loop {
                if let Some(f) = self.codec.decode_frame(&mut self.buf).expect("decode") {
                    match f {
                        Frame::Packet(Magic::Res, p) => return p,
                        other => panic!("unexpected frame {other:?}"),
                    }
                }
                let n = self.stream.read_buf(&mut self.buf).await.expect("read");
                assert!(n > 0, "server closed the connection");
            }
        };
        timeout(self.limit, fut)
            .await
            .expect("no packet from server")
    }

    /// Round-trips an ECHO so every packet sent before has been processed;
    /// the echo must be the very next reply.
    pub async fn sync(&mut self) {
        self.send(Packet::EchoReq { data: b("sync") }).await;
        match self.recv().await {
            Packet::EchoRes { data } => assert_eq!(&data[..], b"sync"),
            other => panic!("expected ECHO_RES, got {other:?}"),
        }
    }

    /// SUBMIT_JOB; returns the server's reply (JOB_CREATED or ERROR).
    pub async fn submit_reply(
        &mut self,
        function: &str,
        unique: &str,
        data: impl Into<Bytes>,
        priority: Priority,
        background: bool,
    ) -> Packet {
        self.send(Packet::SubmitJob {
            function: b(function),
            unique: b(unique),
            data: data.into(),
            priority,
            background,
        })
        .await;
        self.recv().await
    }

    /// SUBMIT_JOB that must be accepted; returns the job handle.
    pub async fn submit_with(
        &mut self,
        function: &str,
        unique: &str,
        data: impl Into<Bytes>,
        priority: Priority,
        background: bool,
    ) -> Bytes {
        match self
            .submit_reply(function, unique, data, priority, background)
            .await
        {
            Packet::JobCreated { handle } => handle,
            other => panic!("expected JOB_CREATED, got {other:?}"),
        }
    }

    /// [`Raw::submit_with`] at normal priority.
    pub async fn submit(
        &mut self,
        function: &str,
        unique: &str,
        data: impl Into<Bytes>,
        background: bool,
    ) -> Bytes {
        self.submit_with(function, unique, data, Priority::Normal, background)
            .await
    }

    /// Receives packets until the final one for a job; returns them all.
    pub async fn until_final(&mut self) -> Vec<Packet> {
        let mut v = Vec::new();
        loop {
            let p = self.recv().await;
            let last = matches!(
                p,
                Packet::WorkComplete { .. }
                    | Packet::WorkFail { .. }
                    | Packet::WorkException { .. }
            );
            v.push(p);
            if last {
                return v;
            }
        }
    }

    /// GRAB_JOB_UNIQ until a job comes (PRE_SLEEP / NOOP in between).
    pub async fn grab(&mut self) -> Assigned {
        loop {
            self.send(Packet::GrabJobUniq).await;
            loop {
                match self.recv().await {
                    Packet::JobAssignUniq {
                        handle,
                        unique,
                        data,
                        ..
                    } => {
                        return Assigned {
                            handle,
                            unique,
                            data,
                        }
                    }
                    Packet::NoJob => {
                        self.send(Packet::PreSleep).await;
                        // Wait for the NOOP (or re-grab after a while as a safety net).
                        let _ = timeout(Duration::from_secs(2), self.wait_noop()).await;
                        break;
                    }
                    Packet::Noop => {}
                    other => panic!("raw worker got {other:?}"),
                }
            }
        }
    }

    async fn wait_noop(&mut self) {
        while !matches!(self.recv().await, Packet::Noop) {}
    }

    /// One GRAB_JOB_UNIQ that must come back NO_JOB.
    pub async fn expect_no_job(&mut self) {
        self.send(Packet::GrabJobUniq).await;
        loop {
            match self.recv().await {
                Packet::NoJob => return,
                Packet::Noop => {}
                other => panic!("expected NO_JOB, got {other:?}"),
            }
        }
    }

    /// WORK_COMPLETE for `handle` with `data`.
    pub async fn complete(&mut self, handle: &Bytes, data: Bytes) {
        self.send(Packet::WorkComplete {
            handle: handle.clone(),
            data,
        })
        .await;
    }
}

/// The WORK_COMPLETE payload among `packets`, if any.
pub fn result_of(packets: &[Packet]) -> Option<Bytes> {
    packets.iter().find_map(|p| match p {
        Packet::WorkComplete { data, .. } => Some(data.clone()),
        _ => None,
    })
}

/// Sends an admin text command and reads the reply: up to the line `.`
/// (listings, `multi`; the `.` is left out) or its first line. Panics if the
/// server closes first or the reply takes longer than `limit`.
pub async fn admin_lines(
    addr: &ServerAddr,
    cmd: &str,
    multi: bool,
    limit: Duration,
) -> Vec<String> {
    let stream = addr.connect(limit).await.expect("admin connect");
    let (rd, mut wr) = stream.into_split();
    wr.write_all(format!("{cmd}\n").as_bytes())
        .await
        .expect("send admin command");
    let mut lines = BufReader::new(rd).lines();
    let mut out = Vec::new();
    timeout(limit, async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("read admin reply")
                .expect("admin connection closed");
            if multi && line == "." {
                break;
            }
            out.push(line);
            if !multi {
                break;
            }
        }
    })
    .await
    .expect("admin reply timed out");
    out
}
