//! Rust side of the cross-language test matrix (see tests/matrix/README.md).
//!
//! `polygear-matrix worker <server> <gate-dir> <lang>` serves the `<lang>.*` functions;
//! `polygear-matrix client <server> <gate-dir> <lang> main <w1,w2,..>` runs every check
//! against each worker namespace; `... coal <unique:worker,..>` submits the coalescing jobs.
//! Results are printed as tab-separated lines the driver (tests/matrix/run.py) aggregates.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use polygear::{
    Bytes, Client, ClientOptions, Error, JobEvent, ServerAddr, SubmitOptions, Worker, WorkerOptions,
};

/// Text of the unicode check (the worker reverses it by code points).
const TEXT: &str = "héllo wörld — 日本語 🎉 ∑ Ω";
/// How long a gated function waits for its release file.
const GATE_WAIT: Duration = Duration::from_secs(30);
/// Deadline of one foreground job.
const JOB_TIMEOUT: Duration = Duration::from_secs(60);

type Res<T> = std::result::Result<T, String>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("polygear-matrix: tokio runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = match args.get(1).map(String::as_str) {
        Some("worker") if args.len() == 5 => rt.block_on(worker(&args[2], &args[3], &args[4])),
        Some("client") if args.len() == 7 => {
            rt.block_on(client(&args[2], &args[3], &args[4], &args[5], &args[6]))
        }
        _ => Err("usage: polygear-matrix worker <server> <gate> <lang> | client <server> <gate> <lang> main|coal <list>".into()),
    };
    if let Err(e) = code {
        eprintln!("polygear-matrix: {e}");
        std::process::exit(2);
    }
}

fn servers(server: &str) -> Res<Vec<ServerAddr>> {
    ServerAddr::parse_list(server).map_err(|e| e.to_string())
}

/// Waits until `path` exists (polling), up to [`GATE_WAIT`].
async fn wait_file(path: &Path) -> bool {
    let deadline = Instant::now() + GATE_WAIT;
    while Instant::now() < deadline {
        if tokio::fs::metadata(path).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

// ------------------------------------------------------------------ worker

async fn worker(server: &str, gate: &str, lang: &str) -> Res<()> {
    let w = Worker::new(WorkerOptions {
        servers: servers(server)?,
        concurrency: 6,
        client_id: Some(format!("matrix-{lang}")),
        ..WorkerOptions::default()
    })
    .map_err(|e| e.to_string())?;
    for f in ["echo", "text", "stream", "raise", "bg", "json", "slow"] {
        w.register(&format!("{lang}.{f}"), None)
            .map_err(|e| e.to_string())?;
    }
    let gate = Arc::new(PathBuf::from(gate));
    let lang = Arc::new(lang.to_string());
    let counter = Arc::new(AtomicU64::new(0));
    let w = Arc::new(w);
    let stopper = w.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stopper.stop();
        }
    });
    #[cfg(unix)]
    {
        let stopper = w.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            if let Ok(mut s) = signal(SignalKind::terminate()) {
                s.recv().await;
                stopper.stop();
            }
        });
    }
    w.run(move |job| {
        let gate = gate.clone();
        let lang = lang.clone();
        let counter = counter.clone();
        async move {
            let name = job.function().rsplit('.').next().unwrap_or("").to_string();
            let data = job.data().clone();
            let outcome = match name.as_str() {
                "echo" => job.complete(data),
                // The Rust core moves bytes: the value the client encoded is
                // embedded as is, so the answer is JSON without a JSON crate.
                "json" => match std::str::from_utf8(&data) {
                    Ok(text) => {
                        let map = text.trim_start().starts_with('{');
                        job.complete(format!(
                            "{{\"worker\":\"{lang}\",\"echo\":{text},\"map\":{map}}}"
                        ))
                    }
                    Err(e) => job.exception(format!("not UTF-8: {e}")),
                },
                "text" => match std::str::from_utf8(&data) {
                    Ok(s) => job.complete(s.chars().rev().collect::<String>()),
                    Err(e) => job.exception(format!("not UTF-8: {e}")),
                },
                "stream" => {
                    let n: u32 = std::str::from_utf8(&data)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0);
                    let mut r = Ok(());
                    for i in 0..n {
                        r = job
                            .send_data(format!("chunk-{i}"))
                            .and_then(|_| job.send_status(i + 1, n));
                        if r.is_err() {
                            break;
                        }
                    }
                    r.and_then(|_| job.complete("done"))
                }
                // A Rust "exception": the error's text goes out as WORK_EXCEPTION.
                "raise" => {
                    let err: Box<dyn std::error::Error + Send + Sync> =
                        String::from_utf8_lossy(&data).into_owned().into();
                    job.exception(err.to_string())
                }
                "bg" => {
                    let token = String::from_utf8_lossy(&data).into_owned();
                    let sent = job.send_status(1, 2);
                    if sent.is_ok() && is_token(&token) && wait_file(&gate.join(&token)).await {
                        job.complete("bg-done")
                    } else {
                        job.fail()
                    }
                }
                "slow" => {
                    if wait_file(&gate.join("release")).await {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let nanos = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_nanos())
                            .unwrap_or(0);
                        let mut out = data.to_vec();
                        out.extend_from_slice(
                            format!("|{lang}-{}-{n}-{nanos}", std::process::id()).as_bytes(),
                        );
                        job.complete(out)
                    } else {
                        job.fail()
                    }
                }
                _ => job.fail(),
            };
            if let Err(e) = outcome {
                eprintln!("matrix rust worker: {e}");
            }
        }
    })
    .await
    .map_err(|e| e.to_string())
}

/// Tokens name files in the gate directory: keep them to a safe alphabet.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

// ------------------------------------------------------------------ client

fn binary_payload() -> Vec<u8> {
    let mut v: Vec<u8> = (0..=255u8).collect();
    v.extend_from_slice(b"\x00\x00mid\x00");
    v.extend_from_slice(b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1");
    v.push(0);
    v
}

fn big_payload() -> Vec<u8> {
    (0..16 * 1024 * 1024).map(|i| (i % 251) as u8).collect()
}

fn report(client: &str, worker: &str, check: &str, r: Res<()>) {
    let (status, detail) = match r {
        Ok(()) => ("pass", String::new()),
        Err(e) => ("fail", e),
    };
    let detail: String = detail
        .chars()
        .map(|c| if c == '\t' || c == '\n' { ' ' } else { c })
        .take(300)
        .collect();
    println!("R\t{client}\t{worker}\t{check}\t{status}\t{detail}");
}

async fn client(server: &str, gate: &str, lang: &str, mode: &str, list: &str) -> Res<()> {
    let c = Client::new(ClientOptions {
        servers: servers(server)?,
        job_timeout: Some(JOB_TIMEOUT),
        client_id: Some(format!("matrix-client-{lang}")),
        ..ClientOptions::default()
    })
    .map_err(|e| e.to_string())?;
    let items: Vec<&str> = list.split(',').filter(|s| !s.is_empty()).collect();
    match mode {
        "main" => {
            for w in items {
                report(lang, w, "binary", echo_check(&c, w, binary_payload()).await);
                if w != "c" {
                    // `gearman -w` cannot take 16 MiB in reasonable time (see run.py).
                    report(lang, w, "big", echo_check(&c, w, big_payload()).await);
                }
                report(lang, w, "unicode", unicode_check(&c, w).await);
                report(lang, w, "stream", stream_check(&c, w).await);
                if w != "c" {
                    report(lang, w, "exception", exception_check(&c, lang, w).await);
                }
                report(
                    lang,
                    w,
                    "background",
                    background_check(&c, lang, w, gate).await,
                );
            }
        }
        "coal" => {
            let mut set = tokio::task::JoinSet::new();
            for item in items {
                let Some((unique, w)) = item.split_once(':') else {
                    return Err(format!("bad coalescing item {item:?}"));
                };
                let (unique, w, c) = (unique.to_string(), w.to_string(), c.clone());
                set.spawn(async move {
                    let opts = SubmitOptions {
                        unique: Some(Bytes::from(unique.clone())),
                        ..SubmitOptions::default()
                    };
                    let r = c.submit(&format!("{w}.slow"), "coal", opts).await;
                    (unique, r)
                });
            }
            while let Some(joined) = set.join_next().await {
                let (unique, r) = joined.map_err(|e| e.to_string())?;
                match r {
                    Ok(v) => println!("C\t{lang}\t{unique}\tok\t{}", hex(&v)),
                    Err(e) => println!(
                        "C\t{lang}\t{unique}\terr\t{}",
                        e.to_string().replace(['\t', '\n'], " ")
                    ),
                }
            }
        }
        _ => return Err(format!("unknown mode {mode:?}")),
    }
    c.close().await;
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn echo_check(c: &Client, w: &str, payload: Vec<u8>) -> Res<()> {
    let len = payload.len();
    let got = c
        .submit(
            &format!("{w}.echo"),
            payload.clone(),
            SubmitOptions::default(),
        )
        .await
        .map_err(|e| format!("submit: {e}"))?;
    if got.as_ref() == payload.as_slice() {
        Ok(())
    } else {
        let at = got.iter().zip(&payload).position(|(a, b)| a != b);
        Err(format!(
            "mismatch: sent {len} bytes, got {} (first difference at {at:?})",
            got.len()
        ))
    }
}

async fn unicode_check(c: &Client, w: &str) -> Res<()> {
    let got = c
        .submit(&format!("{w}.text"), TEXT, SubmitOptions::default())
        .await
        .map_err(|e| format!("submit: {e}"))?;
    let want: String = TEXT.chars().rev().collect();
    match std::str::from_utf8(&got) {
        Ok(s) if s == want => Ok(()),
        Ok(s) => Err(format!("got {s:?}, want {want:?}")),
        Err(e) => Err(format!("result not UTF-8: {e}")),
    }
}

async fn stream_check(c: &Client, w: &str) -> Res<()> {
    let n = 4u32;
    let mut job = c
        .submit_job(
            &format!("{w}.stream"),
            n.to_string(),
            SubmitOptions::default(),
        )
        .await
        .map_err(|e| format!("submit: {e}"))?;
    let mut events = Vec::new();
    while let Some(ev) = job.next_event().await {
        let ev = ev.map_err(|e| format!("event: {e}"))?;
        let last = ev.is_final();
        events.push(ev);
        if last {
            break;
        }
    }
    let mut want = Vec::new();
    for i in 0..n {
        if w == "c" {
            // `gearman -w -N` sends each output line as WORK_DATA holding all the output
            // so far (documented libgearman quirk) and cannot send WORK_STATUS.
            let so_far: Vec<String> = (0..=i).map(|j| format!("chunk-{j}")).collect();
            want.push(JobEvent::Data(Bytes::from(so_far.join("\n"))));
        } else {
            want.push(JobEvent::Data(Bytes::from(format!("chunk-{i}"))));
            want.push(JobEvent::Status {
                numerator: i + 1,
                denominator: n,
            });
        }
    }
    if w != "c" {
        want.push(JobEvent::Complete(Bytes::from_static(b"done")));
        if events == want {
            return Ok(());
        }
    } else if events.len() == want.len() + 1
        && events[..want.len()] == want[..]
        && matches!(events[want.len()], JobEvent::Complete(_))
    {
        return Ok(());
    }
    Err(format!("events {events:?}, want {want:?}"))
}

async fn exception_check(c: &Client, lang: &str, w: &str) -> Res<()> {
    let msg = format!("matrix boom {lang}->{w} ✗ ünï");
    match c
        .submit(&format!("{w}.raise"), msg.clone(), SubmitOptions::default())
        .await
    {
        Err(Error::JobException { message, .. }) if message.contains(&msg) => Ok(()),
        Err(Error::JobException { message, .. }) => {
            Err(format!("JobException message {message:?} lacks {msg:?}"))
        }
        Err(e) => Err(format!("wrong error: {e:?}")),
        Ok(v) => Err(format!("no error, result {v:?}")),
    }
}

async fn background_check(c: &Client, lang: &str, w: &str, gate: &str) -> Res<()> {
    let token = format!(
        "bg-{lang}-{w}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0)
    );
    let handle = c
        .submit_background(&format!("{w}.bg"), token.clone(), SubmitOptions::default())
        .await
        .map_err(|e| format!("submit_background: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = c
            .status(&handle)
            .await
            .map_err(|e| format!("status: {e}"))?;
        // The C worker cannot send WORK_STATUS: only "running" is checked for it.
        let reported = w == "c" || (st.numerator == 1 && st.denominator == 2);
        if st.known && st.running && reported {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("status never showed running 1/2: last {st:?}"));
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    std::fs::write(Path::new(gate).join(&token), b"").map_err(|e| format!("gate: {e}"))?;
    loop {
        let st = c
            .status(&handle)
            .await
            .map_err(|e| format!("status: {e}"))?;
        if !st.known {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("job never finished: last {st:?}"));
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}
