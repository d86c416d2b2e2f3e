//! The report's rows: what each scenario measured, serialized to
//! results.json and rendered by [`crate::report`].

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Serialize, Default)]
pub struct Machine {
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    pub memory_gb: f64,
    pub kernel: String,
    pub rustc: String,
    pub commit: String,
    pub load_at_start: String,
    pub binary: String,
}

/// Wall and CPU figures of a run over `records` records.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub wall_s: f64,
    pub records_per_s: f64,
    pub cpu_s: f64,
    pub cpu_us_per_record: f64,
    /// Share of the CPU time spent in the kernel.
    pub sys_share: f64,
    /// Records per second of pipeline CPU (one core's worth).
    pub records_per_cpu_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverheadRow {
    /// `batch`, or `sync` (batch mode off, `max-concurrent-operations` in `batch_size`).
    pub mode: String,
    pub record_bytes: usize,
    pub batch_size: u64,
    pub records: u64,
    #[serde(flatten)]
    pub t: Throughput,
    pub mock_cpu_s: f64,
    pub peak_rss_mb: f64,
    pub api_calls: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryRow {
    pub records: u64,
    pub batch_size: u64,
    pub batches_in_flight: u64,
    pub records_in_flight: u64,
    pub reached_plateau: bool,
    pub seconds_to_plateau: f64,
    pub rss_at_plateau_mb: f64,
    pub peak_rss_mb: f64,
    pub pipeline_cpu_s: f64,
    pub mock_peak_rss_mb: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EconomyRow {
    /// A batch's life at the mock (validating + in_progress + finalizing).
    pub lifetime_ms: u64,
    pub batch_size: u64,
    pub max_inflight: u64,
    pub records: u64,
    pub batches: u64,
    pub wall_s: f64,
    pub calls: BTreeMap<String, u64>,
    pub total_calls: u64,
    pub calls_per_1000: f64,
    pub status_calls_per_batch: f64,
    /// (status polls + list calls) / (batches × poll intervals in a batch's life).
    pub status_calls_per_batch_interval: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModeRow {
    pub mode: String,
    pub records: u64,
    pub wall_s: f64,
    pub records_per_min: f64,
    pub api_calls: u64,
    pub rate_limited: u64,
    pub ok: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModeSetup {
    pub records: u64,
    pub sync_latency: String,
    pub rpm: u64,
    pub concurrency: u64,
    pub batch_size: u64,
    pub batch_turnaround: String,
    pub poll_interval: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EconomySetup {
    pub lifetime: String,
    pub poll_interval: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct KafkaRow {
    pub instances: usize,
    pub partitions: i32,
    pub record_bytes: usize,
    pub batch_size: u64,
    pub records: u64,
    /// Wall time from starting the instances to the last one's exit; CPU
    /// summed over the instances (user + system, wait4 rusage).
    #[serde(flatten)]
    pub t: Throughput,
    /// Largest peak RSS of one instance.
    pub peak_rss_mb: f64,
    pub mock_cpu_s: f64,
    /// The whole broker process's CPU during the run (None: pid unknown).
    pub broker_cpu_s: Option<f64>,
    /// The broker process was gone at the end of the run (restarted by
    /// someone else): the figures are disturbed.
    pub broker_gone: bool,
    pub api_calls: u64,
    pub batches_created: u64,
    /// Output topic under read_committed: messages, distinct custom_ids,
    /// distinct input ids, ok predictions.
    pub output_records: u64,
    pub distinct_custom_ids: u64,
    pub distinct_ids: u64,
    pub ok: u64,
    pub dlq_records: u64,
    /// Transaction markers in the output topic: one per transaction per
    /// output partition it wrote to (committed or aborted).
    pub output_markers: u64,
    /// Records of aborted transactions in the output topic (written, then
    /// invisible to read_committed: work redone, e.g. after a rebalance).
    pub output_aborted: u64,
    pub output_mb: f64,
    /// Producing the input (not part of the wall time).
    pub produce_s: f64,
    /// Reading and checking the output (not part of the wall time).
    pub verify_s: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub smoke: bool,
    pub machine: Machine,
    pub overhead: Vec<OverheadRow>,
    pub memory: Vec<MemoryRow>,
    pub economy_setup: Option<EconomySetup>,
    pub economy: Vec<EconomyRow>,
    pub modes_setup: Option<ModeSetup>,
    pub modes: Vec<ModeRow>,
    pub kafka: Vec<KafkaRow>,
    /// Why (e) did not run, if it was asked for and did not.
    pub kafka_skipped: Option<String>,
    /// `perf report` of one (a) run: by shared object, then by symbol.
    pub profile: Option<String>,
    /// Representative command lines, for the reader to repeat a run.
    pub commands: Vec<String>,
    pub total_wall_s: f64,
}
