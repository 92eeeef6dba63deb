//! A server that accepts connections and requests but never answers (hung,
//! or cut off by the network after connecting) is given up after one
//! `submit_timeout`: the client closes that connection, backs off from the
//! server and sends what follows to the others.

use std::time::{Duration, Instant};

use polygear::{Client, ClientOptions, Error, ServerAddr, SubmitOptions};
use polygear_interop::{ServerKind, TestServer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_is_given_up_after_one_timeout() {
    let good = TestServer::start(ServerKind::Polygeard);
    // The hung server: reads everything, answers nothing.
    let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = hung.accept().await.unwrap();
            tokio::spawn(async move {
                let mut sink = [0u8; 4096];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    let client = Client::new(ClientOptions {
        servers: vec![
            ServerAddr::new("127.0.0.1", hung_port),
            ServerAddr::new("127.0.0.1", good.port),
        ],
        submit_timeout: Duration::from_secs(1),
        min_backoff: Duration::from_secs(30),
        max_backoff: Duration::from_secs(30),
        ..ClientOptions::default()
    })
    .unwrap();
    let mut timeouts = 0;
    for i in 0..8 {
        let t0 = Instant::now();
        match client
            .submit_background("f", format!("job {i}"), SubmitOptions::default())
            .await
        {
            Ok(_) => assert!(t0.elapsed() < Duration::from_millis(900), "job {i} waited"),
            Err(Error::Timeout(_)) => timeouts += 1,
            Err(e) => panic!("job {i}: {e}"),
        }
    }
    // Round-robin would send every other call to the hung server.
    assert_eq!(
        timeouts, 1,
        "only the first call waited for the hung server"
    );
}
