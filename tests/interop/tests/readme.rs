//! The Rust code of the repository's README.md, compiled and run: build.rs
//! turns every ```rust block into an `async fn`, and this test runs each one
//! in its own tokio runtime with a deadline and requires it to return Ok.
//! (tests/docs/run_readmes.py does the same for the Python, Node, Ruby and
//! shell blocks of the READMEs.)

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

type BlockResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// One README block: where it is and how to start it.
struct ReadmeBlock {
    line: usize,
    run: fn() -> Pin<Box<dyn Future<Output = BlockResult>>>,
}

include!(concat!(env!("OUT_DIR"), "/readme_blocks.rs"));

/// Deadline of one block.
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn readme_rust_blocks_run() {
    assert!(
        !README_BLOCKS.is_empty(),
        "README.md has no rust block (or build.rs did not find them)"
    );
    let mut failures = Vec::new();
    for block in README_BLOCKS {
        let started = Instant::now();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let outcome =
            runtime.block_on(async { tokio::time::timeout(DEADLINE, (block.run)()).await });
        // Tasks the block left behind must not keep the test alive.
        runtime.shutdown_timeout(Duration::from_secs(5));
        match outcome {
            Ok(Ok(())) => eprintln!(
                "ok   README.md:{} rust ({:.1} s)",
                block.line,
                started.elapsed().as_secs_f64()
            ),
            Ok(Err(e)) => failures.push(format!("README.md:{}: returned Err: {e}", block.line)),
            Err(_) => failures.push(format!(
                "README.md:{}: still running after {DEADLINE:?}",
                block.line
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "README rust blocks failed:\n{}",
        failures.join("\n")
    );
}
