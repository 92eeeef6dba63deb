//! `Worker::shutdown_timeout` (jobs still running are handed back and the
//! server requeues them for another worker) and `Job::timeout` /
//! `Job::abandon` (a job the server timed out frees its slot), against
//! real job servers: polygeard and the C gearmand, whichever are
//! built/installed (see `POLYGEAR_TEST_SERVERS`).

use std::time::Duration;

use polygear::{
    Client, ClientOptions, ErrorKind, ServerAddr, SubmitOptions, Worker, WorkerOptions,
};
use polygear_test_support::raw::each_server;
use polygear_test_support::{ServerKind, TestServer};
use tokio::time::timeout;

/// Upper bound for one whole test (per server kind).
const TEST_LIMIT: Duration = Duration::from_secs(60);
/// Upper bound for one expected step.
const STEP: Duration = Duration::from_secs(15);

fn worker(addr: ServerAddr) -> Worker {
    Worker::new(WorkerOptions {
        servers: vec![addr],
        min_backoff: Duration::from_millis(50),
        poll_interval: Duration::from_secs(1),
        ..WorkerOptions::default()
    })
    .unwrap()
}

fn client(addr: ServerAddr) -> Client {
    Client::new(ClientOptions {
        servers: vec![addr],
        ..ClientOptions::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_hands_running_jobs_back_to_the_server() {
    each_server(
        "shutdown_timeout_hands_back",
        TEST_LIMIT,
        |kind| async move {
            let server = TestServer::start(kind);
            let client = client(server.addr());
            let submit = tokio::spawn({
                let client = client.clone();
                async move {
                    client
                        .submit("handback", "payload", SubmitOptions::default())
                        .await
                }
            });
            let first = worker(server.addr());
            first.register("handback", None).unwrap();
            let job = timeout(STEP, first.next_job()).await.unwrap().unwrap();
            assert_eq!(&job.data()[..], b"payload");
            let handle = job.handle().to_string();

            let handed_back = timeout(STEP, first.shutdown_timeout(Duration::from_millis(200)))
                .await
                .unwrap();
            assert_eq!(handed_back, 1);
            // The late result goes nowhere, without an error.
            job.send_status(1, 2).unwrap();
            job.complete("late from the first worker").unwrap();

            let second = worker(server.addr());
            second.register("handback", None).unwrap();
            let again = timeout(STEP, second.next_job()).await.unwrap().unwrap();
            assert_eq!(again.handle(), handle);
            assert_eq!(&again.data()[..], b"payload");
            again.complete("from the second worker").unwrap();
            let out = timeout(STEP, submit).await.unwrap().unwrap().unwrap();
            assert_eq!(&out[..], b"from the second worker");
            timeout(STEP, second.shutdown()).await.unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_waits_for_jobs_that_end_in_time() {
    each_server("shutdown_timeout_in_time", TEST_LIMIT, |kind| async move {
        let server = TestServer::start(kind);
        let client = client(server.addr());
        let submit = tokio::spawn({
            let client = client.clone();
            async move {
                client
                    .submit("in_time", "x", SubmitOptions::default())
                    .await
            }
        });
        let w = worker(server.addr());
        w.register("in_time", None).unwrap();
        let job = timeout(STEP, w.next_job()).await.unwrap().unwrap();
        let ender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            job.complete("finished").unwrap();
        });
        let handed_back = timeout(STEP, w.shutdown_timeout(Duration::from_secs(10)))
            .await
            .unwrap();
        assert_eq!(handed_back, 0);
        ender.await.unwrap();
        let out = timeout(STEP, submit).await.unwrap().unwrap().unwrap();
        assert_eq!(&out[..], b"finished");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoning_a_timed_out_job_frees_its_slot() {
    each_server("abandon_frees_the_slot", TEST_LIMIT, |kind| async move {
        let server = TestServer::start(kind);
        let client = client(server.addr());
        // One slot: the worker gets no other job until the first one ends.
        let w = worker(server.addr());
        w.register("slow", Some(Duration::from_secs(1))).unwrap();
        w.register("quick", None).unwrap();
        let slow = tokio::spawn({
            let client = client.clone();
            async move { client.submit("slow", "s", SubmitOptions::default()).await }
        });
        let job = timeout(STEP, w.next_job()).await.unwrap().unwrap();
        assert_eq!(job.function(), "slow");
        assert_eq!(job.timeout(), Some(Duration::from_secs(1)));
        // Past the timeout: polygeard failed the job to its client, gearmand
        // requeued it (protocol.md §3.9).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        job.abandon();

        let runner = tokio::spawn({
            let w = w.clone();
            async move {
                w.run(|job| async move {
                    let name = job.function().to_string();
                    job.complete(name).unwrap();
                })
                .await
            }
        });
        let quick = timeout(STEP, client.submit("quick", "q", SubmitOptions::default()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&quick[..], b"quick");
        let slow = timeout(STEP, slow).await.unwrap().unwrap();
        match kind {
            ServerKind::Polygeard => {
                assert_eq!(slow.unwrap_err().kind(), ErrorKind::JobFailed);
            }
            // Requeued, then run again by the same worker, in time.
            ServerKind::Gearmand => assert_eq!(&slow.unwrap()[..], b"slow"),
        }
        // Nothing is left running: shutdown does not wait for the abandoned job.
        timeout(STEP, w.shutdown()).await.unwrap();
        runner.await.unwrap().unwrap();
    })
    .await;
}
