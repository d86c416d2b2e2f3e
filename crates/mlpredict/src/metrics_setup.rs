//! The Prometheus endpoint (`metrics.port`; off unless set).

use std::net::SocketAddr;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use pipeline_config::PipelineConfig;

/// `batch_records_per_job`: requests per batch, up to the providers'
/// 50,000-request limit.
const RECORD_BUCKETS: &[f64] = &[
    1.0, 10.0, 50.0, 100.0, 500.0, 1_000.0, 5_000.0, 10_000.0, 25_000.0, 50_000.0,
];

/// `batch_job_latency_ms`: a batch takes seconds (a mock, a small batch) to
/// the providers' 24 h completion window.
const LATENCY_BUCKETS_MS: &[f64] = &[
    1_000.0,
    5_000.0,
    15_000.0,
    30_000.0,
    60_000.0,
    300_000.0,
    900_000.0,
    1_800_000.0,
    3_600_000.0,
    7_200_000.0,
    21_600_000.0,
    43_200_000.0,
    86_400_000.0,
];

/// The batch mode's provider calls (`api_calls_total{call}`).
const BATCH_CALLS: &[&str] = &[
    "upload", "create", "find", "list", "poll", "download", "cancel", "delete",
];
/// `api_errors_total{class}`: batch_api's error classes.
const ERROR_CLASSES: &[&str] = &["transient", "ambiguous", "permanent", "notfound"];

pub fn install(cfg: &PipelineConfig, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let Some(port) = cfg.metrics.port else {
        return Ok(());
    };
    let addr = SocketAddr::new(cfg.metrics.bind, port);
    // The exporter binds on its own and does not tell the port it got: for
    // port 0, ask the OS for a free one first, so the log can name it.
    let addr = if port == 0 {
        std::net::TcpListener::bind(addr)
            .and_then(|l| l.local_addr())
            .with_context(|| format!("cannot serve metrics on {addr} (metrics.port)"))?
    } else {
        addr
    };
    let _guard = rt.enter();
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full("batch_records_per_job".into()),
            RECORD_BUCKETS,
        )
        .context("metrics buckets")?
        .set_buckets_for_metric(
            Matcher::Full("batch_job_latency_ms".into()),
            LATENCY_BUCKETS_MS,
        )
        .context("metrics buckets")?
        .install()
        .with_context(|| format!("cannot serve metrics on {addr} (metrics.port)"))?;
    describe();
    register_zeros(cfg.batch.enabled);
    tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    Ok(())
}

/// Every counter is exported from the start at 0 (Prometheus convention):
/// a series that appears only with its first failure makes `rate()` and
/// alerts on it wrong.
fn register_zeros(batch_mode: bool) {
    use metrics::{counter, gauge};
    for name in [
        "records_in_total",
        "records_dead_lettered_total",
        "tokens_total",
    ] {
        counter!(name).increment(0);
    }
    for status in ["ok", "error"] {
        counter!("records_out_total", "status" => status).increment(0);
    }
    if batch_mode {
        for name in [
            "batch_jobs_submitted_total",
            "batch_jobs_completed_total",
            "batch_jobs_failed_total",
            "batch_jobs_adopted_total",
        ] {
            counter!(name).increment(0);
        }
        for &call in BATCH_CALLS {
            counter!("api_calls_total", "call" => call).increment(0);
            for &class in ERROR_CLASSES {
                counter!("api_errors_total", "call" => call, "class" => class).increment(0);
            }
        }
        gauge!("batches_in_flight").set(0.0);
        gauge!("provider_up").set(1.0);
    } else {
        counter!("api_calls_total", "call" => "predict").increment(0);
        counter!("api_errors_total", "call" => "predict").increment(0);
        gauge!("requests_in_flight").set(0.0);
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("batch_jobs_submitted_total", "provider batches created");
    describe_counter!(
        "batch_jobs_completed_total",
        "batches emitted after completing at the provider"
    );
    describe_counter!(
        "batch_jobs_failed_total",
        "batches emitted after failing, expiring or being cancelled"
    );
    describe_counter!(
        "batch_jobs_adopted_total",
        "batches found by batch_number after a crash instead of created again"
    );
    describe_histogram!(
        "batch_job_latency_ms",
        Unit::Milliseconds,
        "from create to emission"
    );
    describe_histogram!("batch_records_per_job", Unit::Count, "requests per batch");
    describe_counter!("records_in_total", "source lines read");
    describe_counter!("records_out_total", "records emitted, by status");
    describe_counter!(
        "records_dead_lettered_total",
        "records sent to the dead-letter output"
    );
    describe_gauge!(
        "batches_in_flight",
        "batches created at the provider and not yet emitted"
    );
    describe_gauge!(
        "provider_up",
        "1 while the provider answers, 0 from a failed call (429, 5xx, no connection) until one succeeds"
    );
    describe_counter!("api_calls_total", "provider API calls, by call");
    describe_counter!(
        "api_errors_total",
        "failed provider API calls, by call and class"
    );
    describe_counter!("tokens_total", "tokens used, as reported by the provider");
}
