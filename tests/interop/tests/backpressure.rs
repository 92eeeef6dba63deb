//! Backpressure in the core worker: a server that stops reading must not
//! make it buffer without bound. A job streaming WORK_DATA blocks once
//! ~96 MiB are unread and goes on when the server reads again. The
//! "server" is a raw socket that reads only when told to. (The client's
//! side: client_backpressure.rs, a process of its own, as it measures RSS.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use polygear::protocol::{Magic, Packet};
use polygear::{ServerAddr, Worker, WorkerOptions};
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

    // The job streams 300 x 1 MiB from a thread of its own, as user code does.
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let streamer = std::thread::spawn(move || {
        let chunk = bytes::Bytes::from(vec![7u8; MIB]);
        for _ in 0..300 {
            job.send_data(chunk.clone())?;
            counter.fetch_add(1, Ordering::SeqCst);
        }
        job.complete("done")
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = sent.load(Ordering::SeqCst);
    // 96 MiB of unsent output plus what the kernel buffers, not 300 MiB.
    assert!(
        before < 150,
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
    assert_eq!(sent.load(Ordering::SeqCst), 300);
    tokio::time::timeout(Duration::from_secs(10), worker.shutdown())
        .await
        .expect("shutdown");
    let total = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the worker closes its connection")
        .unwrap();
    assert!(total > 300 * MIB, "the server received {total} bytes");
}
