//! A user-space TCP fault proxy (this machine's kernel has no `tc netem`): listens on
//! 127.0.0.1 and relays every connection to one upstream address, with
//!
//! - **latency**: each chunk read is delivered `delay` after it arrived, in order
//!   (a pure delay, not a bandwidth limit);
//! - **loss**: with probability `loss` a chunk is held back an extra `stall`, and
//!   everything behind it waits too — what a lost segment looks like above TCP (its
//!   retransmission after an RTO, head-of-line blocking); the bytes are never
//!   dropped, TCP would not drop them either;
//! - **cut**: every relayed connection is reset (RST) at once, and while the proxy
//!   refuses, its port is closed (connecting gets ECONNREFUSED, as from a server host
//!   whose process died); [`FaultProxy::restore`] listens on the same port again.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Rng;

/// Fault settings, changed while the proxy runs.
struct Ctl {
    delay_us: AtomicU64,
    /// Loss probability in parts per million.
    loss_ppm: AtomicU64,
    stall_us: AtomicU64,
    refusing: watch::Sender<bool>,
    /// Bumped by [`FaultProxy::cut`]; every relay watches it.
    cuts: watch::Sender<u64>,
    accepted: AtomicU64,
    stalls: AtomicU64,
}

/// A running fault proxy; stops with its runtime or when dropped.
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    ctl: Arc<Ctl>,
    task: tokio::task::JoinHandle<()>,
}

fn reset(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

impl FaultProxy {
    /// Starts relaying 127.0.0.1:(free port) to `upstream` (no faults yet).
    pub async fn start(upstream: SocketAddr, seed: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy address");
        let ctl = Arc::new(Ctl {
            delay_us: AtomicU64::new(0),
            loss_ppm: AtomicU64::new(0),
            stall_us: AtomicU64::new(0),
            refusing: watch::channel(false).0,
            cuts: watch::channel(0).0,
            accepted: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept_loop(
            listener,
            addr,
            upstream,
            ctl.clone(),
            Rng::new(seed),
        ));
        FaultProxy { addr, ctl, task }
    }

    /// Sets the one-way latency, the loss probability and the stall a loss costs.
    pub fn set_faults(&self, delay: Duration, loss: f64, stall: Duration) {
        self.ctl
            .delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
        self.ctl
            .loss_ppm
            .store((loss * 1e6) as u64, Ordering::Relaxed);
        self.ctl
            .stall_us
            .store(stall.as_micros() as u64, Ordering::Relaxed);
    }

    /// Resets every relayed connection; with `refuse`, new ones are reset on accept
    /// until [`FaultProxy::restore`].
    pub fn cut(&self, refuse: bool) {
        self.ctl.refusing.send_replace(refuse);
        self.ctl.cuts.send_modify(|n| *n += 1);
    }

    /// Accepts and relays connections again.
    pub fn restore(&self) {
        self.ctl.refusing.send_replace(false);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.ctl.accepted.load(Ordering::Relaxed)
    }

    /// Chunks held back by a simulated loss so far.
    pub fn stalls(&self) -> u64 {
        self.ctl.stalls.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cut(true);
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    ctl: Arc<Ctl>,
    mut rng: Rng,
) {
    let mut refusing = ctl.refusing.subscribe();
    let mut listener = Some(listener);
    loop {
        let Some(l) = listener.as_ref() else {
            // Closed while refusing: wait for the restore, then listen again.
            if *refusing.borrow_and_update() {
                if refusing.changed().await.is_err() {
                    return;
                }
                continue;
            }
            match TcpListener::bind(addr).await {
                Ok(l) => listener = Some(l),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
            continue;
        };
        let down = tokio::select! {
            r = l.accept() => match r {
                Ok((down, _)) => down,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            r = refusing.changed() => {
                if r.is_err() {
                    return;
                }
                if *refusing.borrow_and_update() {
                    listener = None;
                }
                continue;
            }
        };
        ctl.accepted.fetch_add(1, Ordering::Relaxed);
        let ctl = ctl.clone();
        let seeds = (rng.next_u64(), rng.next_u64());
        tokio::spawn(async move {
            let cuts = ctl.cuts.subscribe();
            let up =
                match tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(upstream))
                    .await
                {
                    Ok(Ok(s)) => s,
                    _ => {
                        reset(&down);
                        return;
                    }
                };
            let _ = up.set_nodelay(true);
            let _ = down.set_nodelay(true);
            let (down_rd, down_wr) = down.into_split();
            let (up_rd, up_wr) = up.into_split();
            let a = tokio::spawn(pump(
                down_rd,
                up_wr,
                ctl.clone(),
                Rng::new(seeds.0),
                cuts.clone(),
            ));
            let b = tokio::spawn(pump(up_rd, down_wr, ctl, Rng::new(seeds.1), cuts));
            let _ = tokio::join!(a, b);
        });
    }
}

/// Relays one direction until end of stream, an error or a cut (which resets).
async fn pump(
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    ctl: Arc<Ctl>,
    mut rng: Rng,
    mut cuts: watch::Receiver<u64>,
) {
    let mut queue: VecDeque<(Instant, bytes::Bytes)> = VecDeque::new();
    let mut buf = BytesMut::with_capacity(16 << 10);
    let mut last = Instant::now();
    let mut eof = false;
    loop {
        if eof && queue.is_empty() {
            let _ = wr.shutdown().await;
            return;
        }
        let due = queue.front().map(|(t, _)| *t);
        tokio::select! {
            biased;
            _ = cuts.changed() => {
                reset(rd.as_ref());
                return;
            }
            _ = async { tokio::time::sleep_until(due.unwrap_or_else(Instant::now)).await }, if due.is_some() => {
                if let Some((_, chunk)) = queue.pop_front() {
                    tokio::select! {
                        r = wr.write_all(&chunk) => if r.is_err() {
                            reset(rd.as_ref());
                            return;
                        },
                        _ = cuts.changed() => {
                            reset(rd.as_ref());
                            return;
                        }
                    }
                }
            }
            r = rd.read_buf(&mut buf), if !eof && queue.len() < 256 => match r {
                Ok(0) | Err(_) => eof = true,
                Ok(_) => {
                    let now = Instant::now();
                    let mut at = now + Duration::from_micros(ctl.delay_us.load(Ordering::Relaxed));
                    let ppm = ctl.loss_ppm.load(Ordering::Relaxed);
                    if ppm > 0 && rng.below(1_000_000) < ppm {
                        ctl.stalls.fetch_add(1, Ordering::Relaxed);
                        at += Duration::from_micros(ctl.stall_us.load(Ordering::Relaxed));
                    }
                    // In order: never before the chunk ahead of it.
                    at = at.max(last);
                    last = at;
                    queue.push_back((at, buf.split().freeze()));
                    if buf.capacity() < 4096 {
                        buf.reserve(16 << 10);
                    }
                }
            },
        }
    }
}
