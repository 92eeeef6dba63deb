//! `submit_many`: one task per payload, so every request is written before
//! the first reply is awaited (pipelined on the connections), and the results
//! in the payloads' order.

use bytes::Bytes;
use polygear::{Client, SubmitOptions};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// The running jobs of one `submit_many`; dropping it (e.g. when the waiting
/// thread is interrupted) aborts the ones still running.
pub struct Batch(Vec<JoinHandle<polygear::Result<Bytes>>>);

impl Batch {
    /// Starts one foreground job of `function` per payload on `rt` (the
    /// caller-driven runtime or a multi-thread one).
    pub fn start(
        rt: &Handle,
        client: &Client,
        function: &str,
        items: Vec<Bytes>,
        opts: &SubmitOptions,
    ) -> Batch {
        Batch(
            items
                .into_iter()
                .map(|data| {
                    let (c, f, o) = (client.clone(), function.to_owned(), opts.clone());
                    rt.spawn(async move { c.submit(&f, data, o).await })
                })
                .collect(),
        )
    }

    /// Waits for every job: each one's result or error, in order.
    pub async fn results(mut self) -> Vec<polygear::Result<Bytes>> {
        let mut out = Vec::with_capacity(self.0.len());
        for task in self.0.iter_mut() {
            out.push(match task.await {
                Ok(r) => r,
                Err(e) => Err(polygear::Error::Closed(format!("job task ended: {e}"))),
            });
        }
        out
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
