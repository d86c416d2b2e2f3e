//! The Prometheus endpoint (`metrics.port`; off unless set).

use std::net::SocketAddr;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusBuilder;
use pipeline_config::MetricsConfig;

pub fn install(cfg: &MetricsConfig, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let Some(port) = cfg.port else { return Ok(()) };
    let addr = SocketAddr::new(cfg.bind, port);
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
        .set_buckets(&[
            10.0,
            100.0,
            1_000.0,
            10_000.0,
            60_000.0,
            600_000.0,
            3_600_000.0,
            86_400_000.0,
        ])
        .context("metrics buckets")?
        .install()
        .with_context(|| format!("cannot serve metrics on {addr} (metrics.port)"))?;
    describe();
    tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    Ok(())
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
        "batches handed to the provider and not yet emitted"
    );
    describe_counter!("api_calls_total", "provider API calls, by call");
    describe_counter!(
        "api_errors_total",
        "failed provider API calls, by call and class"
    );
    describe_counter!("tokens_total", "tokens used, as reported by the provider");
}
