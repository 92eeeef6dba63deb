//! Backpressure in the core client and worker: a server that stops reading
//! must not make them buffer without bound. A job streaming WORK_DATA
//! blocks once ~8 MiB are unread and goes on when the server reads again;
//! a client submitting faster than the server reads waits, and gives up
//! with a clear timeout. The "server" is a raw socket that reads only when
//! told to.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use polygear::protocol::{Magic, Packet};
use polygear::{Client, ClientOptions, Error, ServerAddr, SubmitOptions, Worker, WorkerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIB: usize = 1 << 20;

/// Reads 12-byte-header packets until one of type GRAB_JOB*.
async fn read_until_grab(s: &mut TcpStream) {
    loop {
        let mut h = [0u8; 12];
        s.read_exact(&mut h).await.unwrap();
        let t = u32::from_be_bytes(h[4..8].try_into().unwrap());
        let n = u32::from_be_bytes(h[8..12].try_into().unwrap()) as usize;
        let mut body = vec![0u8; n];
        s.read_exact(&mut body).await.unwrap();
        if [9, 30, 39].contains(&t) {
            return;
        }
    }
}

/// Reads and discards everything until end of stream; returns the byte count.
async fn drain(mut s: TcpStream) -> usize {
    let mut buf = vec![0u8; MIB];
    let mut total = 0;
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_streaming_to_a_server_that_stops_reading_blocks_then_resumes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let worker = Worker::new(WorkerOptions {
        servers: vec![ServerAddr::new("127.0.0.1", port)],
        ..WorkerOptions::default()
    })
    .unwrap();
    worker.register("stream", None).unwrap();
    // The worker connects when asked for a job: the server side runs meanwhile.
    let server = tokio::spawn(async move {
        let (mut server, _) = listener.accept().await.unwrap();
        read_until_grab(&mut server).await;
        let mut assign = BytesMut::new();
        Packet::JobAssignUniq {
            handle: "H:test:1".into(),
            function: "stream".into(),
            unique: "u".into(),
            data: "".into(),
        }
        .encode(Magic::Res, &mut assign)
        .unwrap();
        server.write_all(&assign).await.unwrap();
        server // and reads nothing more
    });
    let job = tokio::time::timeout(Duration::from_secs(10), worker.next_job())
        .await
        .unwrap()
        .expect("a job");

    // The job streams 100 x 1 MiB from a thread of its own, as user code does.
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let streamer = std::thread::spawn(move || {
        let chunk = bytes::Bytes::from(vec![7u8; MIB]);
        for _ in 0..100 {
            job.send_data(chunk.clone())?;
            counter.fetch_add(1, Ordering::SeqCst);
        }
        job.complete("done")
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = sent.load(Ordering::SeqCst);
    // 8 MiB of unsent output plus what the kernel buffers, not 100 MiB.
    assert!(
        before < 40,
        "{before} MiB were accepted with nobody reading"
    );
    assert!(!streamer.is_finished());

    let reader = tokio::spawn(drain(server.await.unwrap()));
    let joined = tokio::task::spawn_blocking(move || streamer.join().unwrap());
    let result = tokio::time::timeout(Duration::from_secs(30), joined)
        .await
        .expect("the job finishes once the server reads")
        .unwrap();
    result.expect("every chunk sent once the server reads");
    assert_eq!(sent.load(Ordering::SeqCst), 100);
    tokio::time::timeout(Duration::from_secs(10), worker.shutdown())
        .await
        .expect("shutdown");
    let total = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the worker closes its connection")
        .unwrap();
    assert!(total > 100 * MIB, "the server received {total} bytes");
}

/// This process's resident memory in MiB.
fn rss_mib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_submitting_to_a_server_that_does_not_read_buffers_a_bounded_amount() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = tokio::spawn(async move { listener.accept().await.unwrap().0 });
    let client = Client::new(ClientOptions {
        servers: vec![ServerAddr::new("127.0.0.1", port)],
        submit_timeout: Duration::from_secs(4),
        exceptions: false,
        ..ClientOptions::default()
    })
    .unwrap();
    let before = rss_mib();
    // 100 concurrent 1 MiB submissions (one shared buffer: only the
    // encoded requests cost memory).
    let data = bytes::Bytes::from(vec![1u8; MIB]);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (client, data) = (client.clone(), data.clone());
            tokio::spawn(async move {
                client
                    .submit_background("f", data, SubmitOptions::default())
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grown = rss_mib().saturating_sub(before);
    // 8 MiB unsent plus what the kernel buffers, not 100 MiB.
    assert!(grown < 50, "the client buffered {grown} MiB");
    let mut throttled = 0;
    for t in tasks {
        match t.await.unwrap() {
            Err(Error::Timeout(msg)) if msg.contains("did not read this client's requests") => {
                throttled += 1
            }
            // Queued before the throttle, or failed with the connection
            // the client then gave up.
            Err(Error::Timeout(_)) | Err(Error::ConnectionLost { .. }) => {}
            other => panic!("unexpected result {other:?}"),
        }
    }
    eprintln!("{throttled} submissions timed out waiting for the server to read");
    drop(accepted.await.unwrap());
}
