//! `Worker::events` and `Worker::connect` against real job servers
//! (polygeard and the C gearmand, whichever are built/installed; see
//! `POLYGEAR_TEST_SERVERS`): what a worker reports when a server is
//! missing, goes away and comes back.

use std::time::Duration;

use polygear::{
    Client, ClientOptions, ServerAddr, SubmitOptions, Worker, WorkerEvent, WorkerOptions,
};
use polygear_test_support::raw::each_server;
use polygear_test_support::{free_port, TestServer};
use tokio::sync::broadcast::Receiver;
use tokio::time::timeout;

/// Upper bound for one whole test (per server kind).
const TEST_LIMIT: Duration = Duration::from_secs(60);
/// Upper bound for one expected event.
const STEP: Duration = Duration::from_secs(15);

fn opts(servers: Vec<ServerAddr>) -> WorkerOptions {
    WorkerOptions {
        servers,
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(2),
        poll_interval: Duration::from_secs(2),
        ..WorkerOptions::default()
    }
}

/// A loopback address nobody listens on.
fn dead_addr() -> ServerAddr {
    ServerAddr::new("127.0.0.1", free_port())
}

async fn next_event(events: &mut Receiver<WorkerEvent>) -> WorkerEvent {
    timeout(STEP, events.recv())
        .await
        .expect("no worker event")
        .expect("event channel closed or lagged")
}

/// Runs `w` with a handler that echoes each job's data, in the background.
fn serve_echo(w: &Worker) -> tokio::task::JoinHandle<polygear::Result<()>> {
    let w = w.clone();
    tokio::spawn(async move {
        w.run(|job| async move {
            let data = job.data().clone();
            job.complete(data).expect("complete");
        })
        .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fails_fast_when_no_server_answers() {
    let (a, b) = (dead_addr(), dead_addr());
    let w = Worker::new(opts(vec![a.clone(), b.clone()])).unwrap();
    w.register("nobody_serves", None).unwrap();
    let mut events = w.events();
    let err = timeout(STEP, w.connect()).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), polygear::ErrorKind::Connection);
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
    assert!(matches!(err, polygear::Error::NoServer(Some(_))), "{err}");
    // By then each server has reported its first failed attempt.
    let mut first = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if let WorkerEvent::ConnectFailed {
            server, attempt: 1, ..
        } = &ev
        {
            first.push(server.clone());
        }
        assert!(ev.is_problem(), "{ev}");
    }
    first.sort();
    let mut want = vec![a.to_string(), b.to_string()];
    want.sort();
    assert_eq!(first, want);
    // The worker keeps trying: later attempts are reported too.
    loop {
        if let WorkerEvent::ConnectFailed { attempt, .. } = next_event(&mut events).await {
            if attempt >= 2 {
                break;
            }
        }
    }
    timeout(STEP, w.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_succeeds_while_one_server_is_down() {
    each_server(
        "connect_succeeds_while_one_server_is_down",
        TEST_LIMIT,
        |kind| async move {
            let server = TestServer::start(kind);
            let dead = dead_addr();
            let w = Worker::new(opts(vec![dead.clone(), server.addr()])).unwrap();
            w.register("half_up", None).unwrap();
            let mut events = w.events();
            timeout(STEP, w.connect()).await.unwrap().unwrap();
            let (mut up, mut failed) = (false, false);
            while !(up && failed) {
                match next_event(&mut events).await {
                    WorkerEvent::Connected {
                        server: s,
                        reconnect,
                    } => {
                        assert_eq!(s, server.addr_string());
                        assert!(!reconnect);
                        up = true;
                    }
                    WorkerEvent::ConnectFailed {
                        server: s, error, ..
                    } => {
                        assert_eq!(s, dead.to_string());
                        assert!(!error.is_empty());
                        failed = true;
                    }
                    other => panic!("unexpected {other}"),
                }
            }
            let runner = serve_echo(&w);
            let client = Client::new(ClientOptions {
                servers: vec![server.addr()],
                ..ClientOptions::default()
            })
            .unwrap();
            let out = timeout(
                STEP,
                client.submit("half_up", "ping", SubmitOptions::default()),
            )
            .await
            .unwrap()
            .unwrap();
            assert_eq!(&out[..], b"ping");
            timeout(STEP, w.shutdown()).await.unwrap();
            runner.await.unwrap().unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_a_server_that_goes_away_and_comes_back() {
    each_server("events_follow_a_server", TEST_LIMIT, |kind| async move {
        let mut server = TestServer::start(kind);
        let w = Worker::new(opts(vec![server.addr()])).unwrap();
        w.register("comes_back", None).unwrap();
        let mut events = w.events();
        timeout(STEP, w.connect()).await.unwrap().unwrap();
        let ev = next_event(&mut events).await;
        assert_eq!(
            ev,
            WorkerEvent::Connected {
                server: server.addr_string(),
                reconnect: false
            }
        );
        assert_eq!(ev.to_string(), format!("worker connected to {}", server.addr_string()));
        let runner = serve_echo(&w);
        let client = Client::new(ClientOptions {
            servers: vec![server.addr()],
            min_backoff: Duration::from_millis(50),
            ..ClientOptions::default()
        })
        .unwrap();
        let submit = |data: &'static str| {
            let client = client.clone();
            async move {
                timeout(STEP, client.submit("comes_back", data, SubmitOptions::default()))
                    .await
                    .expect("job timed out")
            }
        };
        assert_eq!(&submit("one").await.unwrap()[..], b"one");

        tokio::task::block_in_place(|| server.restart());
        let ev = next_event(&mut events).await;
        assert!(
            matches!(&ev, WorkerEvent::Disconnected { server: s, .. } if *s == server.addr_string()),
            "{ev}"
        );
        assert!(ev.is_problem());
        // Failed attempts while the server restarts (maybe none), then back.
        let mut attempts = 0;
        loop {
            match next_event(&mut events).await {
                WorkerEvent::ConnectFailed { attempt, .. } => {
                    attempts += 1;
                    assert_eq!(attempt, attempts);
                }
                WorkerEvent::Connected { reconnect, .. } => {
                    assert!(reconnect);
                    break;
                }
                other => panic!("unexpected {other}"),
            }
        }
        // connect() answers at once for a connected worker.
        timeout(STEP, w.connect()).await.unwrap().unwrap();
        // The client may need a try to notice the restart.
        let mut out = submit("two").await;
        if out.is_err() {
            out = submit("two").await;
        }
        assert_eq!(&out.unwrap()[..], b"two");
        timeout(STEP, w.shutdown()).await.unwrap();
        runner.await.unwrap().unwrap();
    })
    .await;
}
