//! `loadgen`: drives a Gearman server (polygeard or gearmand) with raw
//! protocol traffic, so both servers see byte-identical load.
//!
//! ```text
//! loadgen echo      --addr H:P [--conns 4] [--n 200000] [--window 1]
//! loadgen bg-submit --addr H:P [--conns 4] [--n 100000] [--window 64] [--size 16] [--func F] [--tag T]
//! loadgen drain     --addr H:P [--workers 2] [--n 100000] [--func F]
//! loadgen fg        --addr H:P [--clients 4] [--workers 4] [--window 1] [--n 50000] [--size 16]
//!                   [--style separate|batched]    (drain and fg)
//! loadgen pair      --addr H:P [--window 1] [--n 20000] [--size 16]
//! loadgen floor     --addr H:P [--n 20000] [--size 16]
//! loadgen http-bg   --addr H:HTTP_PORT [--conns 16] [--n 20000] [--size 16] [--keepalive]
//! loadgen http-fg   --addr H:HTTP_PORT --worker-addr H:P [--workers 1] [--conns 16] [--n 20000]
//!                   [--size 16] [--keepalive] [--style separate|batched]
//! ```
//! `http-bg` and `http-fg` POST each job to `/<func>` (`http-bg` with
//! `X-Gearman-Background: true`): `--conns` clients, one request at a time
//! each, HTTP/1.0 on a new connection per request (both servers alike), or
//! with `--keepalive` one HTTP/1.1 connection per client (see `http.rs`).
//! `http-fg` runs `--workers` raw workers on the Gearman port `--worker-addr`.
//! `pair` is the reference for the language bindings: one polygear `Client`
//! and one polygear `Worker` (concurrency = window), the raw Rust pair; with
//! `--window 1` each runs on its own thread, blocking on a current-thread
//! runtime (how a blocking program, and the Python and Ruby bindings, use it).
//! `floor` is the fastest one-job-at-a-time pair the server allows: a client
//! and a worker thread on blocking sockets, hand-written packets, nothing
//! but the happy path (no polygear code). It bounds what any library, in
//! any language, can reach against that server on this machine.
//! `--tls CA_FILE` runs every scenario but `floor` over TLS (rustls, the
//! server's certificate checked against CA_FILE and the host of `--addr`):
//! the raw scenarios wrap their sockets in a tokio-rustls stream under the
//! same framing, `pair` gives the file to polygear's `TlsOptions`.
//! `--tls-suite NAME` and `--tls-kx NAME` (raw scenarios only) offer the
//! server only that cipher suite (e.g. `TLS13_AES_128_GCM_SHA256`) or key
//! exchange group (e.g. `X25519`), to measure what a server-side
//! preference would change.
//! `--style` is how the generator's peers write: `separate` (the default)
//! writes every packet on its own — a worker's WORK_COMPLETE and its next
//! GRAB_JOB_UNIQ are two writes, a client tops up its window one SUBMIT_JOB
//! per write; `batched` writes one batch per wake-up — WORK_COMPLETE and the
//! next GRAB_JOB_UNIQ in one write (as a pipelining worker does, polygear's
//! own included), and a client reads every reply already received before it
//! writes all its new submissions at once. A server that is really faster
//! is faster under both.
//! Prints one line: `<scenario> n=<jobs> secs=<s> rate=<jobs/s>`.

mod http;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use polygear::protocol::{Frame, Magic, Packet, PacketCodec, PacketType, Priority};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;
use tokio_util::either::Either;

type Conn = Framed<Either<TcpStream, TlsStream<TcpStream>>, PacketCodec>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
struct Args {
    scenario: String,
    addr: String,
    conns: usize,
    workers: usize,
    n: u64,
    window: usize,
    size: usize,
    func: String,
    tag: String,
    timeout: Duration,
    style: Style,
    tls: Option<PathBuf>,
    tls_suite: Option<String>,
    tls_kx: Option<String>,
    keepalive: bool,
    worker_addr: Option<String>,
}

/// How the generator's clients and workers write (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// One packet per write.
    Separate,
    /// One write per batch of replies received.
    Batched,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let scenario = it
        .next()
        .ok_or("usage: loadgen SCENARIO --addr HOST:PORT [options]")?;
    let mut a = Args {
        scenario,
        addr: "127.0.0.1:4730".into(),
        conns: 4,
        workers: 4,
        n: 100_000,
        window: 1,
        size: 16,
        func: "bench".into(),
        tag: format!("{}", std::process::id()),
        timeout: Duration::from_secs(300),
        style: Style::Separate,
        tls: None,
        tls_suite: None,
        tls_kx: None,
        keepalive: false,
        worker_addr: None,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--addr" => a.addr = val()?,
            "--conns" | "--clients" => a.conns = num(val()?)? as usize,
            "--workers" => a.workers = num(val()?)? as usize,
            "--n" => a.n = num(val()?)?,
            "--window" => a.window = num(val()?)?.max(1) as usize,
            "--size" => a.size = num(val()?)? as usize,
            "--func" => a.func = val()?,
            "--tag" => a.tag = val()?,
            "--tls" => a.tls = Some(PathBuf::from(val()?)),
            "--tls-suite" => a.tls_suite = Some(val()?),
            "--tls-kx" => a.tls_kx = Some(val()?),
            "--keepalive" => a.keepalive = true,
            "--worker-addr" => a.worker_addr = Some(val()?),
            "--timeout" => a.timeout = Duration::from_secs(num(val()?)?),
            "--style" => {
                a.style = match val()?.as_str() {
                    "separate" => Style::Separate,
                    "batched" => Style::Batched,
                    other => return Err(format!("--style: separate or batched, not {other}")),
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

/// Where and how the raw scenarios connect: plain TCP, or TLS.
#[derive(Clone)]
struct Dialer {
    addr: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl Dialer {
    /// With `--tls`, TLS trusting the certificates in its file, the server's
    /// name being the host of `addr` (a name or an IP address), polygear's
    /// crypto provider narrowed to `--tls-suite` / `--tls-kx` if given.
    fn new(args: &Args) -> Result<Dialer, BoxError> {
        let addr = args.addr.as_str();
        let tls = match &args.tls {
            None => None,
            Some(path) => {
                let roots = polygear::tls::load_roots(path)?;
                let mut provider = (*polygear::tls::provider()).clone();
                if let Some(name) = &args.tls_suite {
                    provider
                        .cipher_suites
                        .retain(|s| format!("{:?}", s.suite()).eq_ignore_ascii_case(name));
                    if provider.cipher_suites.is_empty() {
                        return Err(format!("--tls-suite: no cipher suite {name}").into());
                    }
                }
                if let Some(name) = &args.tls_kx {
                    provider
                        .kx_groups
                        .retain(|g| format!("{:?}", g.name()).eq_ignore_ascii_case(name));
                    if provider.kx_groups.is_empty() {
                        return Err(format!("--tls-kx: no key exchange group {name}").into());
                    }
                }
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(host.to_string())?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
            }
        };
        Ok(Dialer {
            addr: addr.to_string(),
            tls,
        })
    }
}

async fn connect(dial: &Dialer) -> Result<Conn, BoxError> {
    let s = TcpStream::connect(&dial.addr).await?;
    s.set_nodelay(true)?;
    let s = match &dial.tls {
        None => Either::Left(s),
        Some((connector, name)) => Either::Right(connector.connect(name.clone(), s).await?),
    };
    Ok(Framed::new(s, PacketCodec::default()))
}

async fn recv(conn: &mut Conn) -> Result<Packet, BoxError> {
    packet(conn.next().await)
}

/// The next reply if it is already here (received, or readable at once).
fn recv_ready(conn: &mut Conn) -> Result<Option<Packet>, BoxError> {
    conn.next().now_or_never().map(packet).transpose()
}

/// What the connection gave: a reply packet, or why there is none.
fn packet(item: Option<Result<Frame, polygear::protocol::CodecError>>) -> Result<Packet, BoxError> {
    match item {
        Some(Ok(Frame::Packet(_, p))) => Ok(p),
        Some(Ok(Frame::Text(_))) => Err("unexpected text frame".into()),
        Some(Err(e)) => Err(e.into()),
        None => Err("server closed the connection".into()),
    }
}

/// Splits `n` into `parts` near-equal shares.
fn share(n: u64, parts: usize, i: usize) -> u64 {
    n / parts as u64 + u64::from((i as u64) < n % parts as u64)
}

/// ECHO round trips with `window` in flight per connection.
async fn echo_conn(dial: Dialer, n: u64, window: usize, size: usize) -> Result<(), BoxError> {
    let mut c = connect(&dial).await?;
    let data = Bytes::from(vec![b'e'; size]);
    let (mut sent, mut got) = (0u64, 0u64);
    while got < n {
        while sent < n && sent - got < window as u64 {
            c.feed((Magic::Req, Packet::EchoReq { data: data.clone() }))
                .await?;
            sent += 1;
        }
        SinkExt::<(Magic, Packet)>::flush(&mut c).await?;
        match recv(&mut c).await? {
            Packet::EchoRes { .. } => got += 1,
            other => return Err(format!("unexpected {other:?}").into()),
        }
    }
    Ok(())
}

/// Background submissions, each with a distinct unique.
async fn bg_conn(dial: Dialer, args: Args, conn_no: usize, n: u64) -> Result<(), BoxError> {
    let mut c = connect(&dial).await?;
    let data = Bytes::from(vec![b'x'; args.size]);
    let func = Bytes::from(args.func.clone());
    let (mut sent, mut got) = (0u64, 0u64);
    while got < n {
        while sent < n && sent - got < args.window as u64 {
            let unique = Bytes::from(format!("{}-{conn_no}-{sent}", args.tag));
            let p = Packet::SubmitJob {
                function: func.clone(),
                unique,
                data: data.clone(),
                priority: Priority::Normal,
                background: true,
            };
            c.feed((Magic::Req, p)).await?;
            sent += 1;
        }
        SinkExt::<(Magic, Packet)>::flush(&mut c).await?;
        match recv(&mut c).await? {
            Packet::JobCreated { .. } => got += 1,
            other => return Err(format!("unexpected {other:?}").into()),
        }
    }
    Ok(())
}

/// Foreground client: keeps `window` jobs in flight until `n` completed.
async fn fg_client(dial: Dialer, args: Args, n: u64) -> Result<(), BoxError> {
    let mut c = connect(&dial).await?;
    let data = Bytes::from(vec![b'x'; args.size]);
    let func = Bytes::from(args.func.clone());
    let (mut sent, mut done) = (0u64, 0u64);
    while done < n {
        while sent < n && sent - done < args.window as u64 {
            let p = Packet::SubmitJob {
                function: func.clone(),
                unique: Bytes::new(),
                data: data.clone(),
                priority: Priority::Normal,
                background: false,
            };
            c.feed((Magic::Req, p)).await?;
            if args.style == Style::Separate {
                SinkExt::<(Magic, Packet)>::flush(&mut c).await?;
            }
            sent += 1;
        }
        SinkExt::<(Magic, Packet)>::flush(&mut c).await?;
        let mut reply = Some(recv(&mut c).await?);
        while let Some(p) = reply.take() {
            match p {
                Packet::JobCreated { .. } => {}
                Packet::WorkComplete { .. } => done += 1,
                other => return Err(format!("unexpected {other:?}").into()),
            }
            if args.style == Style::Batched {
                // Every reply already here, before writing again.
                reply = recv_ready(&mut c)?;
            }
        }
    }
    Ok(())
}

/// Worker: GRAB_JOB_UNIQ → WORK_COMPLETE (echoing the data) until `stop`;
/// with [`Style::Batched`] the WORK_COMPLETE and the next GRAB_JOB_UNIQ go
/// out in one write.
/// The shared state of `args.workers` [`worker`] tasks: jobs they completed,
/// how many have registered, and the signal that stops them.
struct Workers {
    done: Arc<AtomicU64>,
    registered: Arc<AtomicU64>,
    stop: Arc<Notify>,
}

impl Workers {
    /// Spawns `args.workers` workers for `args.func` on `dial` into `set`.
    fn spawn(
        set: &mut tokio::task::JoinSet<Result<(), BoxError>>,
        dial: &Dialer,
        args: &Args,
    ) -> Workers {
        let pool = Workers {
            done: Arc::new(AtomicU64::new(0)),
            registered: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(Notify::new()),
        };
        for _ in 0..args.workers {
            set.spawn(worker(
                dial.clone(),
                args.func.clone(),
                args.style,
                pool.done.clone(),
                pool.stop.clone(),
                pool.registered.clone(),
            ));
        }
        pool
    }
}

async fn worker(
    dial: Dialer,
    func: String,
    style: Style,
    done: Arc<AtomicU64>,
    stop: Arc<Notify>,
    registered: Arc<AtomicU64>,
) -> Result<(), BoxError> {
    let mut c = connect(&dial).await?;
    c.feed((
        Magic::Req,
        Packet::CanDo {
            function: Bytes::from(func),
        },
    ))
    .await?;
    // The ECHO's answer says the CAN_DO was taken (a server answers in order).
    c.send((Magic::Req, Packet::EchoReq { data: Bytes::new() }))
        .await?;
    match recv(&mut c).await? {
        Packet::EchoRes { .. } => registered.fetch_add(1, Ordering::Relaxed),
        other => return Err(format!("worker got unexpected {other:?}").into()),
    };
    loop {
        // Batched: the WORK_COMPLETE fed below leaves with this GRAB_JOB_UNIQ.
        c.send((Magic::Req, Packet::GrabJobUniq)).await?;
        let reply = tokio::select! {
            r = recv(&mut c) => r?,
            _ = stop.notified() => return Ok(()),
        };
        match reply {
            Packet::JobAssignUniq { handle, data, .. } => {
                c.feed((Magic::Req, Packet::WorkComplete { handle, data }))
                    .await?;
                if style == Style::Separate {
                    SinkExt::<(Magic, Packet)>::flush(&mut c).await?;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Packet::NoJob => {
                c.send((Magic::Req, Packet::PreSleep)).await?;
                loop {
                    let p = tokio::select! {
                        r = recv(&mut c) => r?,
                        _ = stop.notified() => return Ok(()),
                    };
                    if p == Packet::Noop {
                        break;
                    }
                }
            }
            Packet::Noop => {}
            other => return Err(format!("worker got unexpected {other:?}").into()),
        }
    }
}

async fn run(args: Args) -> Result<(String, u64), BoxError> {
    let dial = Dialer::new(&args)?;
    let mut tasks = tokio::task::JoinSet::new();
    match args.scenario.as_str() {
        "echo" => {
            for i in 0..args.conns {
                let n = share(args.n, args.conns, i);
                tasks.spawn(echo_conn(dial.clone(), n, args.window, args.size));
            }
            join_all(tasks).await?;
        }
        "bg-submit" => {
            for i in 0..args.conns {
                let n = share(args.n, args.conns, i);
                tasks.spawn(bg_conn(dial.clone(), args.clone(), i, n));
            }
            join_all(tasks).await?;
        }
        "drain" => {
            let pool = Workers::spawn(&mut tasks, &dial, &args);
            while pool.done.load(Ordering::Relaxed) < args.n {
                tokio::time::sleep(Duration::from_millis(2)).await;
                if let Some(r) = tasks.try_join_next() {
                    r??;
                }
            }
            pool.stop.notify_waiters();
            tasks.abort_all();
        }
        "fg" => {
            let mut workers = tokio::task::JoinSet::new();
            let pool = Workers::spawn(&mut workers, &dial, &args);
            for i in 0..args.conns {
                let n = share(args.n, args.conns, i);
                tasks.spawn(fg_client(dial.clone(), args.clone(), n));
            }
            join_all(tasks).await?;
            pool.stop.notify_waiters();
            workers.abort_all();
        }
        "pair" => rust_pair(&args).await?,
        "http-bg" | "http-fg" => {
            let fg = args.scenario == "http-fg";
            let req = http::Request::new(&args.addr, &args.func, args.size, !fg, args.keepalive);
            let mut workers = tokio::task::JoinSet::new();
            let mut pool = None;
            if fg {
                let addr = args
                    .worker_addr
                    .clone()
                    .ok_or("http-fg needs --worker-addr (the Gearman port)")?;
                let dial = Dialer::new(&Args {
                    addr,
                    ..args.clone()
                })?;
                let started = Workers::spawn(&mut workers, &dial, &args);
                // Every worker registered before the first job: polygeard
                // answers 503 to a foreground job no worker can do.
                while started.registered.load(Ordering::Relaxed) < args.workers as u64 {
                    if let Some(r) = workers.try_join_next() {
                        r??;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                pool = Some(started);
            }
            for i in 0..args.conns {
                let n = share(args.n, args.conns, i);
                tasks.spawn(http::client(args.addr.clone(), req.clone(), n));
            }
            join_all(tasks).await?;
            if let Some(pool) = pool {
                pool.stop.notify_waiters();
            }
            workers.abort_all();
        }
        "floor" if args.tls.is_some() => return Err("floor has no TLS variant".into()),
        "floor" => {
            let args = args.clone();
            tokio::task::spawn_blocking(move || floor_pair(&args)).await??;
        }
        other => return Err(format!("unknown scenario {other}").into()),
    }
    Ok((args.scenario.clone(), args.n))
}

/// `--tls` as polygear's options (the server name: the host connected to).
fn tls_options(args: &Args) -> Option<polygear::TlsOptions> {
    args.tls.as_ref().map(|ca| polygear::TlsOptions {
        ca_file: Some(ca.clone()),
        ..Default::default()
    })
}

/// One polygear Client and one polygear Worker, `window` jobs in flight.
async fn rust_pair(args: &Args) -> Result<(), BoxError> {
    use polygear::{Client, ClientOptions, ServerAddr, SubmitOptions, Worker, WorkerOptions};
    if args.window == 1 {
        let args = args.clone();
        return tokio::task::spawn_blocking(move || serial_pair(&args)).await?;
    }
    let server: ServerAddr = args.addr.parse()?;
    let worker = Worker::new(WorkerOptions {
        servers: vec![server.clone()],
        concurrency: args.window,
        tls: tls_options(args),
        ..Default::default()
    })?;
    worker.register(&args.func, None)?;
    let w = worker.clone();
    let worker_task = tokio::spawn(async move {
        w.run(|job| async move {
            let data = job.data().clone();
            let _ = job.complete(data);
        })
        .await
    });
    let client = Client::new(ClientOptions {
        servers: vec![server],
        tls: tls_options(args),
        ..Default::default()
    })?;
    let data = Bytes::from(vec![b'x'; args.size]);
    let mut inflight = tokio::task::JoinSet::new();
    let mut sent = 0u64;
    while sent < args.n || !inflight.is_empty() {
        while sent < args.n && inflight.len() < args.window {
            let (c, d, f) = (client.clone(), data.clone(), args.func.clone());
            inflight.spawn(async move { c.submit(&f, d, SubmitOptions::default()).await });
            sent += 1;
        }
        if let Some(r) = inflight.join_next().await {
            r??;
        }
    }
    worker.stop();
    worker.shutdown().await;
    let _ = worker_task.await;
    client.close().await;
    Ok(())
}

/// One job at a time, written the way a blocking program uses polygear: the
/// client and the worker each on their own thread with a current-thread
/// runtime that the waiting call drives (as the Python and Ruby bindings do).
fn serial_pair(args: &Args) -> Result<(), BoxError> {
    use polygear::{Client, ClientOptions, ServerAddr, SubmitOptions, Worker, WorkerOptions};
    let server: ServerAddr = args.addr.parse()?;
    let driven = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let worker = Worker::new(WorkerOptions {
        servers: vec![server.clone()],
        tls: tls_options(args),
        ..Default::default()
    })?;
    worker.register(&args.func, None)?;
    let w = worker.clone();
    let wrt = driven()?;
    let worker_thread = std::thread::spawn(move || {
        while let Some(job) = wrt.block_on(w.next_job()) {
            let data = job.data().clone();
            let _ = job.complete(data);
        }
        wrt.block_on(w.shutdown());
    });
    let crt = driven()?;
    let client = Client::new(ClientOptions {
        servers: vec![server],
        tls: tls_options(args),
        ..Default::default()
    })?;
    let data = Bytes::from(vec![b'x'; args.size]);
    for _ in 0..args.n {
        crt.block_on(client.submit(&args.func, data.clone(), SubmitOptions::default()))?;
    }
    worker.stop();
    crt.block_on(client.close());
    worker_thread.join().map_err(|_| "worker thread panicked")?;
    Ok(())
}

/// See the module docs: the blocking, hand-written pair.
fn floor_pair(args: &Args) -> Result<(), BoxError> {
    use std::io::{BufReader, Read, Write};
    fn packet(ty: PacketType, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(12 + body.len());
        v.extend_from_slice(b"\0REQ");
        v.extend_from_slice(&(ty as u32).to_be_bytes());
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }
    fn read(r: &mut impl Read) -> std::io::Result<(u32, Vec<u8>)> {
        let mut h = [0u8; 12];
        r.read_exact(&mut h)?;
        let ty = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let mut body = vec![0u8; u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize];
        r.read_exact(&mut body)?;
        Ok((ty, body))
    }
    let connect = || -> std::io::Result<(std::net::TcpStream, BufReader<std::net::TcpStream>)> {
        let s = std::net::TcpStream::connect(&args.addr)?;
        s.set_nodelay(true)?;
        Ok((s.try_clone()?, BufReader::new(s)))
    };
    let (mut ww, mut wr) = connect()?;
    ww.write_all(&packet(PacketType::CanDo, args.func.as_bytes()))?;
    ww.write_all(&packet(PacketType::GrabJob, b""))?;
    let worker_socket = ww.try_clone()?;
    let worker = std::thread::spawn(move || -> std::io::Result<()> {
        loop {
            let (ty, body) = match read(&mut wr) {
                Ok(p) => p,
                Err(_) => return Ok(()), // shut down by the client side when done
            };
            if ty == PacketType::NoJob as u32 {
                ww.write_all(&packet(PacketType::PreSleep, b""))?;
            } else if ty == PacketType::Noop as u32 {
                ww.write_all(&packet(PacketType::GrabJob, b""))?;
            } else if ty == PacketType::JobAssign as u32 {
                let mut fields = body.splitn(3, |&c| c == 0);
                let handle = fields.next().unwrap_or_default();
                let data = fields.nth(1).unwrap_or_default();
                let mut reply = handle.to_vec();
                reply.push(0);
                reply.extend_from_slice(data);
                let mut out = packet(PacketType::WorkComplete, &reply);
                out.extend(packet(PacketType::GrabJob, b""));
                ww.write_all(&out)?;
            }
        }
    });
    let (mut cw, mut cr) = connect()?;
    let mut submit = args.func.as_bytes().to_vec();
    submit.extend_from_slice(b"\0\0");
    submit.extend(std::iter::repeat_n(b'x', args.size));
    let submit = packet(PacketType::SubmitJob, &submit);
    for _ in 0..args.n {
        cw.write_all(&submit)?;
        loop {
            let (ty, _) = read(&mut cr)?;
            if ty == PacketType::WorkComplete as u32 {
                break;
            }
        }
    }
    drop((cw, cr));
    // Shutting the worker's socket down ends its thread.
    let _ = worker_socket.shutdown(std::net::Shutdown::Both);
    // Its I/O errors now are the shutdown's (a late PRE_SLEEP on the closed
    // socket); one earlier would have stalled the client (loadgen --timeout).
    let _ = worker.join().map_err(|_| "worker thread panicked")?;
    Ok(())
}

async fn join_all(mut tasks: tokio::task::JoinSet<Result<(), BoxError>>) -> Result<(), BoxError> {
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

fn main() {
    if cfg!(debug_assertions) {
        eprintln!("loadgen: this is a debug build; benchmarks need `cargo build --release -p polygear-bench`");
        std::process::exit(2);
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let timeout = args.timeout;
    let t0 = Instant::now();
    let res = rt.block_on(async move { tokio::time::timeout(timeout, run(args)).await });
    let secs = t0.elapsed().as_secs_f64();
    match res {
        Ok(Ok((scenario, n))) => println!(
            "{scenario} n={n} secs={secs:.3} rate={:.0}",
            n as f64 / secs
        ),
        Ok(Err(e)) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
        Err(_) => {
            eprintln!("loadgen: timed out after {timeout:?}");
            std::process::exit(1);
        }
    }
}
