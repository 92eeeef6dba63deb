//! Backpressure in the core client: submitting faster than a server reads
//! must not grow the client's buffer without bound; the submissions wait
//! (refused under the connection's lock while more than 8 MiB are unsent)
//! and fail with a clear timeout if the server never reads. The "server"
//! is a raw socket that never reads. A test binary of its own: it measures
//! this process's memory.

use std::time::Duration;

use polygear::{Client, ClientOptions, Error, ServerAddr, SubmitOptions};
use tokio::net::TcpListener;

const MIB: usize = 1 << 20;

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
