//! `GET /metrics`: the Prometheus/OpenMetrics text exposition, encoded by
//! `prometheus-client` from one [`Snapshot`] copied under the state lock
//! (queue lengths, running jobs and workers are read there, not kept twice).

use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::stats::{Histogram, Latency, Outcome, Snapshot, PRIORITIES};

/// The content type of [`render`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric of the server, in the OpenMetrics text format (which
/// Prometheus scrapes).
pub(crate) fn render(shared: &crate::Shared) -> String {
    let (snapshot, retries) = {
        let st = shared.state.lock();
        let r = &st.retries;
        let counts = [r.dead_len() as u64, r.dropped, r.retried, r.requeued];
        (st.snapshot(0, 0, false), counts)
    };
    let (commit_seconds, commit_batch) = shared.commits.get();
    let scrape = Scrape {
        snapshot,
        accepted: shared.accepted.load(Ordering::Relaxed),
        commit_seconds,
        commit_batch,
        retries,
    };
    encode(scrape)
}

fn encode(scrape: Scrape) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    // Writing to a String cannot fail; a collector error would only cut the text.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!("encoding /metrics failed: {e}");
    }
    out
}

#[derive(Debug)]
struct Scrape {
    snapshot: Snapshot,
    accepted: u64,
    commit_seconds: Latency,
    commit_batch: Histogram<12>,
    /// Dead set size, records dropped, runs retried, dead jobs requeued.
    retries: [u64; 4],
}

/// A label value in the text format: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Nanoseconds per second.
const NS: f64 = 1e9;

fn histogram<const N: usize>(
    enc: &mut prometheus_client::encoding::MetricEncoder,
    h: &Histogram<N>,
    divisor: f64,
) -> Result<(), std::fmt::Error> {
    enc.encode_histogram::<NoLabelSet>(
        h.sum() as f64 / divisor,
        h.count(),
        &h.buckets(divisor),
        None,
    )
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let funcs: Vec<(String, &crate::stats::FuncSnapshot)> = self
            .snapshot
            .functions
            .iter()
            .map(|f| (escape(&f.name), f))
            .collect();

        let mut m = encoder.encode_descriptor(
            "polygear_jobs_submitted",
            "Jobs submitted (and restored from the durable queue), by function and priority.",
            None,
            MetricType::Counter,
        )?;
        for (name, f) in &funcs {
            for (p, label) in PRIORITIES.iter().enumerate() {
                let labels = [("function", name.as_str()), ("priority", label)];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&f.stats.submitted[p], None)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "polygear_jobs",
            "Jobs ended, by function and outcome.",
            None,
            MetricType::Counter,
        )?;
        for (name, f) in &funcs {
            for (i, o) in Outcome::ALL.iter().enumerate() {
                let labels = [("function", name.as_str()), ("outcome", o.label())];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&f.stats.outcomes[i], None)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "polygear_jobs_queued",
            "Jobs waiting for a worker, by function and priority.",
            None,
            MetricType::Gauge,
        )?;
        for (name, f) in &funcs {
            for (p, label) in PRIORITIES.iter().enumerate() {
                let labels = [("function", name.as_str()), ("priority", label)];
                m.encode_family(&labels)?.encode_gauge(&f.queued[p])?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "polygear_jobs_running",
            "Jobs held by a worker, by function.",
            None,
            MetricType::Gauge,
        )?;
        for (name, f) in &funcs {
            m.encode_family(&[("function", name.as_str())])?
                .encode_gauge(&f.running)?;
        }

        let mut m = encoder.encode_descriptor(
            "polygear_workers",
            "Connections registered for a function (CAN_DO), by function.",
            None,
            MetricType::Gauge,
        )?;
        for (name, f) in &funcs {
            m.encode_family(&[("function", name.as_str())])?
                .encode_gauge(&f.workers)?;
        }

        let mut m = encoder.encode_descriptor(
            "polygear_job_queue_wait_seconds",
            "Time from submission (or epoch time, or requeue) until a worker got the job.",
            None,
            MetricType::Histogram,
        )?;
        for (name, f) in &funcs {
            histogram(
                &mut m.encode_family(&[("function", name.as_str())])?,
                &f.stats.queue_wait,
                NS,
            )?;
        }

        let mut m = encoder.encode_descriptor(
            "polygear_job_run_seconds",
            "Time from a worker getting the job until it ended.",
            None,
            MetricType::Histogram,
        )?;
        for (name, f) in &funcs {
            histogram(
                &mut m.encode_family(&[("function", name.as_str())])?,
                &f.stats.run,
                NS,
            )?;
        }

        encoder
            .encode_descriptor(
                "polygear_connections",
                "Open Gearman connections (clients, workers, admin).",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&self.snapshot.connections)?;
        encoder
            .encode_descriptor(
                "polygear_connections_accepted",
                "Gearman connections accepted since the server started.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&self.accepted, None)?;
        encoder
            .encode_descriptor(
                "polygear_jobs_in_memory",
                "Jobs the server holds (queued, running, waiting for their epoch time).",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&self.snapshot.jobs)?;
        histogram(
            &mut encoder.encode_descriptor(
                "polygear_queue_commit_seconds",
                "Duration of one group commit of the durable queue.",
                None,
                MetricType::Histogram,
            )?,
            &self.commit_seconds,
            NS,
        )?;
        histogram(
            &mut encoder.encode_descriptor(
                "polygear_queue_commit_batch_size",
                "Inserts and deletes committed together in one group commit.",
                None,
                MetricType::Histogram,
            )?,
            &self.commit_batch,
            1.0,
        )?;
        let [dead, dropped, retried, requeued] = self.retries;
        encoder
            .encode_descriptor(
                "polygear_dead_jobs",
                "Jobs in the dead set (background jobs whose retry attempts ran out).",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&dead)?;
        for (name, help, v) in [
            (
                "polygear_dead_dropped",
                "Dead-set records dropped for --dead-max or --dead-max-age.",
                dropped,
            ),
            (
                "polygear_jobs_retried",
                "Failed runs of background jobs sent back to wait out a retry backoff.",
                retried,
            ),
            (
                "polygear_dead_requeued",
                "Dead jobs requeued by the admin `dead retry` command.",
                requeued,
            ),
        ] {
            encoder
                .encode_descriptor(name, help, None, MetricType::Counter)?
                .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
        }
        Ok(())
    }
}
