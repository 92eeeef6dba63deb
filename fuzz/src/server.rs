//! `server_state`: a sequence of requests, admin commands, raw bytes,
//! disconnects and clock moves from several simulated connections, applied
//! to the server's real `State` through `polygear_server::sim::Sim` (the
//! same dispatch as a connection task). After every step the simulation's
//! invariants are checked (`Sim::check_invariants`: job table, queues,
//! counters, workers, clients, memory bounds); reading a connection checks
//! that its output is a well-formed reply stream.
//!
//! Requests are built from small vocabularies (four function names, four
//! unique keys, handles of existing jobs) so that they meet each other,
//! with raw bytes as an escape hatch for everything else.

use std::time::Duration;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use polygear_server::sim::{Sim, PREFIX};
use polygear_server::ServerConfig;

use crate::raw_packet;

/// Most steps run per input (each is checked).
const MAX_STEPS: usize = 200;

#[derive(Arbitrary, Debug)]
pub struct Input {
    config: Config,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
struct Config {
    job_retries: u8,
    worker_wakeup: u8,
    timeout_requeue: bool,
    exceptions: bool,
    allow_shutdown: bool,
    limits: u8,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Connect,
    Close(u8),
    Read(u8),
    /// Moves the clock by this many times 16 ms (timeouts, epoch jobs).
    Advance(u16),
    Request(u8, Request),
    Admin(u8, Admin),
    /// Any bytes on the stream (garbage, a packet's first half, …).
    Raw(u8, Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Name {
    Known(u8),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Unique {
    Empty,
    /// `-`: the data is the key.
    Dash,
    Known(u8),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Handle {
    /// One of the jobs this connection holds as a worker.
    Held(u8),
    /// Any job.
    Job(u8),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum When {
    Now,
    /// Seconds from now.
    In(u8),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Request {
    CanDo(Name),
    CanDoTimeout(Name, u16),
    CantDo(Name),
    ResetAbilities,
    PreSleep,
    /// GRAB_JOB, GRAB_JOB_UNIQ or GRAB_JOB_ALL.
    Grab(u8),
    Submit {
        function: Name,
        unique: Unique,
        data: Vec<u8>,
        /// One of the six SUBMIT_JOB* types.
        kind: u8,
    },
    SubmitReduce {
        function: Name,
        unique: Unique,
        reducer: Vec<u8>,
        data: Vec<u8>,
        background: bool,
    },
    SubmitEpoch {
        function: Name,
        unique: Unique,
        when: When,
        data: Vec<u8>,
    },
    WorkStatus(Handle, Vec<u8>, Vec<u8>),
    WorkData(Handle, Vec<u8>),
    WorkWarning(Handle, Vec<u8>),
    WorkComplete(Handle, Vec<u8>),
    WorkFail(Handle),
    WorkException(Handle, Vec<u8>),
    GetStatus(Handle),
    GetStatusUnique(Unique),
    Echo(Vec<u8>),
    SetClientId(Vec<u8>),
    OptionReq(bool),
    /// Any type code (with REQ or RES magic) and fields.
    Other(bool, u8, Vec<Vec<u8>>),
}

#[derive(Arbitrary, Debug)]
enum Admin {
    Status,
    PriorityStatus,
    Workers,
    ShowJobs,
    ShowUniqueJobs,
    Cancel(Handle),
    MaxQueue(Name, Vec<u8>),
    Create(Name),
    Drop(Name),
    Version,
    Shutdown,
    Raw(Vec<u8>),
}

const FUNCTIONS: [&[u8]; 4] = [b"f0", b"f1", b"reverse", b"F0"];
const UNIQUES: [&[u8]; 4] = [b"u0", b"u1", b"same", b"-x"];

fn name(n: &Name) -> Vec<u8> {
    match n {
        Name::Known(i) => FUNCTIONS[*i as usize % 4].to_vec(),
        Name::Raw(b) => b.clone(),
    }
}

fn unique(u: &Unique) -> Vec<u8> {
    match u {
        Unique::Empty => Vec::new(),
        Unique::Dash => b"-".to_vec(),
        Unique::Known(i) => UNIQUES[*i as usize % 4].to_vec(),
        Unique::Raw(b) => b.clone(),
    }
}

fn pick(list: Vec<Vec<u8>>, i: u8) -> Option<Vec<u8>> {
    (!list.is_empty()).then(|| list[i as usize % list.len()].clone())
}

fn handle(sim: &Sim, conn: usize, h: &Handle) -> Vec<u8> {
    let any = |i| pick(sim.handles(), i).unwrap_or_else(|| format!("{PREFIX}:1").into_bytes());
    match h {
        Handle::Held(i) => pick(sim.held(conn), *i).unwrap_or_else(|| any(*i)),
        Handle::Job(i) => any(*i),
        Handle::Raw(b) => b.clone(),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The bytes of `r` as connection `conn` sends it.
fn request(sim: &Sim, conn: usize, r: &Request) -> Vec<u8> {
    let req = |code: u32, fields: &[&[u8]]| raw_packet(b"\0REQ", code, fields);
    match r {
        Request::CanDo(n) => req(1, &[&name(n)]),
        Request::CanDoTimeout(n, ms) => req(23, &[&name(n), ms.to_string().as_bytes()]),
        Request::CantDo(n) => req(2, &[&name(n)]),
        Request::ResetAbilities => req(3, &[]),
        Request::PreSleep => req(4, &[]),
        Request::Grab(k) => req([9, 30, 39][*k as usize % 3], &[]),
        Request::Submit {
            function,
            unique: u,
            data,
            kind,
        } => {
            let code = [7, 18, 21, 32, 33, 34][*kind as usize % 6];
            req(code, &[&name(function), &unique(u), data])
        }
        Request::SubmitReduce {
            function,
            unique: u,
            reducer,
            data,
            background,
        } => {
            let code = if *background { 38 } else { 37 };
            req(code, &[&name(function), &unique(u), reducer, b"", data])
        }
        Request::SubmitEpoch {
            function,
            unique: u,
            when,
            data,
        } => {
            let when = match when {
                When::Now => unix_now().to_string().into_bytes(),
                When::In(s) => (unix_now() + *s as i64).to_string().into_bytes(),
                When::Raw(b) => b.clone(),
            };
            req(36, &[&name(function), &unique(u), &when, data])
        }
        Request::WorkStatus(h, n, d) => req(12, &[&handle(sim, conn, h), n, d]),
        Request::WorkData(h, d) => req(28, &[&handle(sim, conn, h), d]),
        Request::WorkWarning(h, d) => req(29, &[&handle(sim, conn, h), d]),
        Request::WorkComplete(h, d) => req(13, &[&handle(sim, conn, h), d]),
        Request::WorkFail(h) => req(14, &[&handle(sim, conn, h)]),
        Request::WorkException(h, d) => req(25, &[&handle(sim, conn, h), d]),
        Request::GetStatus(h) => req(15, &[&handle(sim, conn, h)]),
        Request::GetStatusUnique(u) => req(41, &[&unique(u)]),
        Request::Echo(d) => req(16, &[d]),
        Request::SetClientId(id) => req(22, &[id]),
        Request::OptionReq(exceptions) => {
            req(26, &[if *exceptions { b"exceptions" } else { b"bogus" }])
        }
        Request::Other(res, code, fields) => {
            let fields: Vec<&[u8]> = fields.iter().map(|f| &f[..]).collect();
            let magic = if *res { b"\0RES" } else { b"\0REQ" };
            raw_packet(magic, *code as u32 % 48, &fields)
        }
    }
}

/// The text of an admin command (without its line ending).
fn admin(sim: &Sim, conn: usize, a: &Admin) -> Vec<u8> {
    let words = |w: &[&[u8]]| w.join(&b' ');
    match a {
        Admin::Status => b"status".to_vec(),
        Admin::PriorityStatus => b"prioritystatus".to_vec(),
        Admin::Workers => b"workers".to_vec(),
        Admin::ShowJobs => b"show jobs".to_vec(),
        Admin::ShowUniqueJobs => b"show unique jobs".to_vec(),
        Admin::Cancel(h) => words(&[b"cancel", b"job", &handle(sim, conn, h)]),
        Admin::MaxQueue(n, args) => words(&[b"maxqueue", &name(n), args]),
        Admin::Create(n) => words(&[b"create", b"function", &name(n)]),
        Admin::Drop(n) => words(&[b"drop", b"function", &name(n)]),
        Admin::Version => b"version".to_vec(),
        Admin::Shutdown => b"shutdown".to_vec(),
        Admin::Raw(b) => b.clone(),
    }
}

/// Runs the steps (see the module doc).
pub fn run(input: &Input) {
    let c = &input.config;
    let (max_output, max_packet, max_line) = [
        (512, 64, 64),
        (8 << 10, 4 << 10, 1 << 10),
        (1 << 20, 1 << 20, 64 << 10),
    ][c.limits as usize % 3];
    let cfg = ServerConfig {
        job_retries: (c.job_retries % 4) as u32,
        worker_wakeup: (c.worker_wakeup % 3) as usize,
        timeout_requeue: c.timeout_requeue,
        exceptions: c.exceptions,
        allow_shutdown: c.allow_shutdown,
        max_output,
        max_packet,
        max_line,
        // GRABs that find nothing wait (polygeard's default) or not (gearmand).
        grab_wait: Duration::from_millis(u64::from(c.limits / 3 % 2)),
        ..ServerConfig::default()
    };
    let mut sim = Sim::new(cfg);
    sim.connect();
    sim.connect();
    sim.check_invariants();
    for step in input.steps.iter().take(MAX_STEPS) {
        let conn = |i: &u8| *i as usize % sim.connections();
        match step {
            Step::Connect => {
                sim.connect();
            }
            Step::Close(i) => sim.close(conn(i)),
            Step::Read(i) => {
                sim.read(conn(i));
            }
            Step::Advance(n) => sim.advance(Duration::from_millis(*n as u64 * 16)),
            Step::Request(i, r) => {
                let c = conn(i);
                let bytes = request(&sim, c, r);
                sim.send(c, &bytes);
            }
            Step::Admin(i, a) => {
                let c = conn(i);
                let mut line = admin(&sim, c, a);
                line.push(b'\n');
                sim.send(c, &line);
            }
            Step::Raw(i, bytes) => sim.send(conn(i), bytes),
        }
        sim.check_invariants();
    }
    for c in 0..sim.connections() {
        sim.read(c);
    }
    for c in 0..sim.connections() {
        sim.close(c);
        sim.check_invariants();
    }
}
