//! The benchmark suite of issue 5: the real `mlpredict` binary and its mock
//! server as separate processes, measured from outside.
//!
//! - (a) operator overhead: records/s and CPU µs/record through the file
//!   pipeline against `mock-server --instant`, by batch size and record size;
//! - (b) peak RSS with 100k / 1M / 5M records in flight;
//! - (c) API calls per 1,000 records by batch size and in-flight count;
//! - (d) batch vs synchronous mode on the same input under an RPM limit;
//! - (e) Kafka mode end to end (transactions, 1 and 2 instances of one
//!   consumer group) against the project's broker, every record counted.
//!
//! `run` returns a [`Report`]; `report::render` turns it into the Markdown
//! written to docs/BENCHMARKS.md. `--smoke` runs every scenario at a tiny
//! size in seconds (CI runs it through the crate's test; it never asserts
//! timings).

pub mod gen;
pub mod kafka;
pub mod procs;
pub mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use procs::{Measured, Mock, Running};

pub struct Options {
    /// The `mlpredict` binary (release build for real figures).
    pub bin: PathBuf,
    /// Scratch directory (inputs, outputs, logs); large in the full run.
    pub work: PathBuf,
    pub smoke: bool,
    /// Scenarios to run: any of `a`, `b`, `c`, `d`, `e`.
    pub only: String,
    /// Profile one (a) run with `perf record` (if perf is installed).
    pub perf: bool,
    /// The Kafka broker of (e) (`MLPREDICT_KAFKA_BOOTSTRAP`; scripts/bench.sh
    /// starts scripts/kafka/broker.sh). Without it (e) fails, or is skipped
    /// with a message at smoke sizes.
    pub kafka_bootstrap: Option<String>,
    /// The broker's pid file (scripts/kafka/broker.sh's `<data>/broker.pid`),
    /// if known: (e) reports the broker's CPU during each run.
    pub kafka_broker_pid_file: Option<PathBuf>,
}

/// (a) runs every cell this often and keeps the fastest run.
pub const OVERHEAD_REPEATS: usize = 2;

/// Synchronous rows of (a): requests in flight.
pub const SYNC_CONCURRENCY: u64 = 64;

/// The price table used for (d): gpt-4o-mini list prices, USD per 1M tokens.
pub const PRICE_INPUT_PER_M: f64 = 0.15;
pub const PRICE_OUTPUT_PER_M: f64 = 0.60;
/// The Batch API's discount.
pub const BATCH_DISCOUNT: f64 = 0.5;

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

impl Throughput {
    pub fn new(records: u64, wall: Duration, user: Duration, sys: Duration) -> Throughput {
        let (n, wall) = (records as f64, wall.as_secs_f64());
        let cpu = (user + sys).as_secs_f64();
        Throughput {
            wall_s: wall,
            records_per_s: n / wall,
            cpu_s: cpu,
            cpu_us_per_record: cpu * 1e6 / n,
            sys_share: sys.as_secs_f64() / cpu.max(1e-9),
            records_per_cpu_s: n / cpu.max(1e-9),
        }
    }
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

struct Ctx<'a> {
    o: &'a Options,
    inputs: PathBuf,
    logs: PathBuf,
    report: Report,
}

pub fn run(o: &Options) -> anyhow::Result<Report> {
    let started = Instant::now();
    if !o.bin.exists() {
        bail!(
            "{} does not exist: build it first (cargo build --release -p mlpredict)",
            o.bin.display()
        );
    }
    let inputs = o.work.join("inputs");
    let logs = o.work.join("logs");
    std::fs::create_dir_all(&inputs)?;
    std::fs::create_dir_all(&logs)?;
    let mut cx = Ctx {
        o,
        inputs,
        logs,
        report: Report {
            smoke: o.smoke,
            machine: machine(&o.bin),
            ..Report::default()
        },
    };
    if o.only.contains('a') {
        overhead(&mut cx)?;
        if o.perf {
            cx.report.profile = profile(&mut cx)?;
        }
    }
    if o.only.contains('b') {
        memory(&mut cx)?;
    }
    if o.only.contains('c') {
        economy(&mut cx)?;
    }
    if o.only.contains('d') {
        modes(&mut cx)?;
    }
    if o.only.contains('e') {
        match o.kafka_bootstrap.clone() {
            Some(bootstrap) => kafka_e2e(&mut cx, &bootstrap)?,
            None if o.smoke => {
                let why = "no Kafka broker: MLPREDICT_KAFKA_BOOTSTRAP is not set \
                           (scripts/bench.sh and scripts/test.sh start one)";
                eprintln!("!! SKIPPING scenario (e), Kafka mode: {why}");
                cx.report.kafka_skipped = Some(why.into());
            }
            None => bail!(
                "scenario (e) needs a Kafka broker: set MLPREDICT_KAFKA_BOOTSTRAP \
                 (scripts/bench.sh starts scripts/kafka/broker.sh when e is selected)"
            ),
        }
    }
    cx.report.total_wall_s = started.elapsed().as_secs_f64();
    Ok(cx.report)
}

// ---------------------------------------------------------------- helpers

/// A pipeline configuration as flat dotted keys, one per line.
#[derive(Default)]
struct Toml(String);

impl Toml {
    fn kv(&mut self, k: &str, v: String) {
        self.0.push_str(k);
        self.0.push_str(" = ");
        self.0.push_str(&v);
        self.0.push('\n');
    }

    fn path(&mut self, k: &str, p: &Path) {
        self.kv(k, s(&p.display().to_string()));
    }

    /// The model against the mock at `base`, batch mode on or off, local
    /// files under `dir`, then the scenario's own `keys`.
    fn model_and_keys(
        mut self,
        base: &str,
        dir: &Path,
        batch: bool,
        keys: &[(&str, String)],
    ) -> String {
        self.kv("model.endpoint", s(&format!("{base}/v1/chat/completions")));
        self.kv("model.api-key", s("sk-bench"));
        self.kv("model.model", s("gpt-4o-mini"));
        self.kv(
            "model.system-prompt",
            s("Rate the product review from 1 to 5 stars."),
        );
        self.kv("model.input", s("text"));
        self.kv("ml.batch.enabled", batch.to_string());
        self.path("ml.batch.local.dir", &dir.join("local"));
        if batch {
            self.kv("ml.batch.api.endpoint", s(&format!("{base}/v1")));
        }
        for (k, v) in keys {
            self.kv(k, v.clone());
        }
        self.0
    }
}

/// A file pipeline's configuration.
fn pipeline_toml(
    name: &str,
    input: &Path,
    dir: &Path,
    base: &str,
    batch: bool,
    keys: &[(&str, String)],
) -> String {
    let mut t = Toml::default();
    t.kv("pipeline.name", s(name));
    t.kv("source.type", s("file"));
    t.path("source.path", input);
    t.kv("sink.type", s("file"));
    t.path("sink.path", &dir.join("output.jsonl"));
    t.path("sink.dlq.path", &dir.join("dlq.jsonl"));
    t.model_and_keys(base, dir, batch, keys)
}

fn s(v: &str) -> String {
    serde_json::to_string(v).expect("string")
}

/// Remove a run's outputs and local files, keeping its pipeline.toml (the
/// report's command lines refer to it).
fn cleanup(dir: &Path) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name() == "pipeline.toml" {
            continue;
        }
        if e.file_type()?.is_dir() {
            std::fs::remove_dir_all(e.path())?;
        } else {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

fn fresh_dir(p: &Path) -> anyhow::Result<()> {
    if p.exists() {
        std::fs::remove_dir_all(p)?;
    }
    std::fs::create_dir_all(p)?;
    Ok(())
}

impl Ctx<'_> {
    fn write_config(&self, dir: &Path, toml: &str) -> anyhow::Result<PathBuf> {
        let p = dir.join("pipeline.toml");
        std::fs::write(&p, toml)?;
        Ok(p)
    }

    fn start_run(&self, config: &Path, name: &str) -> anyhow::Result<Running> {
        let mut cmd = Command::new(&self.o.bin);
        cmd.args(["run", "--config"]).arg(config);
        cmd.env("MLPREDICT_LOG", "warn");
        Running::start(cmd, &self.logs, name)
    }

    fn run_to_end(&mut self, config: &Path, name: &str) -> anyhow::Result<Measured> {
        let m = self.start_run(config, name)?.wait()?;
        if m.exit_code != 0 {
            bail!(
                "{name}: mlpredict exited with {}:\n{}",
                m.exit_code,
                m.stderr_tail
            );
        }
        Ok(m)
    }

    fn note_command(&mut self, cmd: String) {
        if !self.report.commands.contains(&cmd) {
            self.report.commands.push(cmd);
        }
    }

    fn mock(&mut self, args: &[&str], name: &str) -> anyhow::Result<Mock> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        self.note_command(format!(
            "{} mock-server --port 0 {}",
            self.o.bin.display(),
            args.join(" ")
        ));
        Mock::start(&self.o.bin, &args, &self.logs, name)
    }
}

fn count_lines(p: &Path) -> anyhow::Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(p)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            return Ok(n);
        }
        n += buf[..k].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

fn calls_by_route(stats: &serde_json::Value) -> BTreeMap<String, u64> {
    stats["calls_by_route"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

// ------------------------------------------------------- (a) overhead

fn overhead(cx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let grid: &[(usize, &[(u64, u64)])] = if cx.o.smoke {
        &[(200, &[(10, 300), (100, 600)]), (2000, &[(100, 300)])]
    } else {
        &[
            (
                200,
                &[
                    (10, 20_000),
                    (100, 100_000),
                    (1000, 1_000_000),
                    (10_000, 1_000_000),
                ],
            ),
            (
                2000,
                &[
                    (10, 10_000),
                    (100, 50_000),
                    (1000, 200_000),
                    (10_000, 200_000),
                ],
            ),
        ]
    };
    let sync_cells: &[(usize, u64)] = if cx.o.smoke {
        &[(200, 200)]
    } else {
        &[(200, 50_000), (2000, 20_000)]
    };
    let mut cells_all: Vec<(&str, usize, u64, u64)> = Vec::new();
    for &(size, cells) in grid {
        for &(bs, n) in cells {
            cells_all.push(("batch", size, bs, n));
        }
    }
    for &(size, n) in sync_cells {
        cells_all.push(("sync", size, SYNC_CONCURRENCY, n));
    }
    let repeats = if cx.o.smoke { 1 } else { OVERHEAD_REPEATS };
    for (mode, size, bs, n) in cells_all {
        let mut best: Option<OverheadRow> = None;
        for _ in 0..repeats {
            let input = gen::input(&cx.inputs, n, size)?;
            let name = if mode == "batch" {
                format!("a-{size}b-bs{bs}")
            } else {
                format!("a-{size}b-sync")
            };
            let mock = cx.mock(&["--instant"], &name)?;
            let dir = cx.o.work.join(&name);
            fresh_dir(&dir)?;
            let keys: Vec<(&str, String)> = if mode == "batch" {
                vec![
                    ("ml.batch.size", bs.to_string()),
                    ("ml.batch.poll.interval", s("1ms")),
                    ("ml.batch.max.inflight", "32".into()),
                    ("ml.batch.max.wait", s("1s")),
                ]
            } else {
                vec![("ml.predict.max-concurrent-operations", bs.to_string())]
            };
            let toml = pipeline_toml("bench", &input, &dir, &mock.base, mode == "batch", &keys);
            let config = cx.write_config(&dir, &toml)?;
            cx.note_command(format!(
                "{} run --config {}   # (a) {}",
                cx.o.bin.display(),
                config.display(),
                if mode == "batch" {
                    format!("ml.batch.size = {bs}, poll.interval = 1ms, max.inflight = 32")
                } else {
                    format!("batch mode off, max-concurrent-operations = {bs}")
                }
            ));
            let m = cx.run_to_end(&config, &name)?;
            let stats = mock.stats()?;
            let mock_cpu = mock.cpu();
            mock.stop();
            let emitted = count_lines(&dir.join("output.jsonl"))?;
            if emitted != n {
                bail!("{name}: {emitted} records emitted, {n} expected");
            }
            let api_calls = calls_by_route(&stats).values().sum();
            let t = Throughput::new(n, m.wall, m.user, m.sys);
            let row = OverheadRow {
                mode: mode.into(),
                record_bytes: size,
                batch_size: bs,
                records: n,
                t,
                mock_cpu_s: mock_cpu.as_secs_f64(),
                peak_rss_mb: mb(m.max_rss),
                api_calls,
            };
            eprintln!(
                "(a) {mode} {size} B, {bs}: {n} records in {:.2} s = {:.0}/s, {:.2} µs CPU/record",
                row.t.wall_s, row.t.records_per_s, row.t.cpu_us_per_record
            );
            cleanup(&dir)?;
            if best.as_ref().is_none_or(|b| row.t.wall_s < b.t.wall_s) {
                best = Some(row);
            }
        }
        cx.report.overhead.extend(best);
    }
    Ok(())
}

/// One (a) run under `perf record`; the top of `perf report`.
fn profile(cx: &mut Ctx<'_>) -> anyhow::Result<Option<String>> {
    if Command::new("perf").arg("--version").output().is_err() {
        eprintln!("perf is not installed: no profile (apt-get install linux-perf)");
        return Ok(None);
    }
    let (size, bs, n) = if cx.o.smoke {
        (200, 100, 600)
    } else {
        (200, 1000, 1_000_000)
    };
    let input = gen::input(&cx.inputs, n, size)?;
    let name = format!("profile-{size}b-bs{bs}");
    let mock = cx.mock(&["--instant"], &name)?;
    let dir = cx.o.work.join(&name);
    fresh_dir(&dir)?;
    let toml = pipeline_toml(
        "bench",
        &input,
        &dir,
        &mock.base,
        true,
        &[
            ("ml.batch.size", bs.to_string()),
            ("ml.batch.poll.interval", s("1ms")),
            ("ml.batch.max.inflight", "32".into()),
            ("ml.batch.max.wait", s("1s")),
        ],
    );
    let config = cx.write_config(&dir, &toml)?;
    let data = dir.join("perf.data");
    let mut cmd = Command::new("perf");
    cmd.args(["record", "-F", "999", "-o"])
        .arg(&data)
        .arg("--")
        .arg(&cx.o.bin)
        .args(["run", "--config"])
        .arg(&config)
        .env("MLPREDICT_LOG", "warn");
    cx.note_command(format!(
        "perf record -F 999 -o perf.data -- {} run --config {}   # profile of (a) {size} B, batch {bs}",
        cx.o.bin.display(),
        config.display()
    ));
    let m = Running::start(cmd, &cx.logs, &name)?.wait()?;
    mock.stop();
    if m.exit_code != 0 {
        eprintln!("perf record failed ({}): {}", m.exit_code, m.stderr_tail);
        return Ok(None);
    }
    let mut out = String::new();
    for (sort, limit) in [("dso", "1"), ("dso,sym", "0.7")] {
        let r = Command::new("perf")
            .args(["report", "--no-children", "--stdio", "--sort", sort])
            .args(["--percent-limit", limit, "-i"])
            .arg(&data)
            .output()?;
        let text = String::from_utf8_lossy(&r.stdout);
        out.push_str(&format!(
            "# perf report --sort {sort} (self time, ≥ {limit} %)\n"
        ));
        for line in text.lines() {
            let t = line.trim_start();
            if t.starts_with(|c: char| c.is_ascii_digit()) {
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        out.push('\n');
    }
    cleanup(&dir)?;
    Ok(Some(out))
}

// ------------------------------------------------------- (b) memory

fn memory(cx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let (sizes, bs): (&[u64], u64) = if cx.o.smoke {
        (&[2_000, 10_000], 500)
    } else {
        (&[100_000, 1_000_000, 5_000_000], 10_000)
    };
    for &n in sizes {
        let input = gen::input(&cx.inputs, n, 100)?;
        let name = format!("b-{n}");
        let mock = cx.mock(
            &[
                "--validating",
                "100ms",
                "--in-progress",
                "2h",
                "--finalizing",
                "100ms",
            ],
            &name,
        )?;
        let dir = cx.o.work.join(&name);
        fresh_dir(&dir)?;
        let expected = n.div_ceil(bs);
        let toml = pipeline_toml(
            "bench",
            &input,
            &dir,
            &mock.base,
            true,
            &[
                ("ml.batch.size", bs.to_string()),
                ("ml.batch.max.inflight", (expected + 8).to_string()),
                ("ml.batch.poll.interval", s("30m")),
                ("ml.batch.poll.max-interval", s("1h")),
                ("ml.batch.max.wait", s("1s")),
            ],
        );
        let config = cx.write_config(&dir, &toml)?;
        cx.note_command(format!(
            "{} run --config {}   # (b): {n} records, ml.batch.size = {bs}, max.inflight = {}, stopped by SIGTERM",
            cx.o.bin.display(),
            config.display(),
            expected + 8
        ));
        let run = cx.start_run(&config, &name)?;
        let pid = run.pid();
        let t0 = Instant::now();
        let deadline = Duration::from_secs(if cx.o.smoke { 60 } else { 600 });
        let mut created = 0;
        let mut reached = false;
        let mut rss_at_plateau = 0;
        while t0.elapsed() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            created = mock.stats()?["batches_created"].as_u64().unwrap_or(0);
            if created >= expected {
                // Let the last create's answer be processed.
                std::thread::sleep(Duration::from_millis(500));
                rss_at_plateau = procs::proc_status_bytes(pid, "VmRSS").unwrap_or(0);
                reached = true;
                break;
            }
        }
        let to_plateau = t0.elapsed();
        run.signal(libc::SIGTERM);
        let m = run.wait()?;
        let mock_rss = mock.rss();
        mock.stop();
        if m.exit_code != 0 {
            bail!(
                "{name}: exit {} after SIGTERM:\n{}",
                m.exit_code,
                m.stderr_tail
            );
        }
        let row = MemoryRow {
            records: n,
            batch_size: bs,
            batches_in_flight: created,
            records_in_flight: (created * bs).min(n),
            reached_plateau: reached,
            seconds_to_plateau: to_plateau.as_secs_f64(),
            rss_at_plateau_mb: mb(rss_at_plateau),
            peak_rss_mb: mb(m.max_rss),
            pipeline_cpu_s: m.cpu().as_secs_f64(),
            mock_peak_rss_mb: mb(mock_rss),
        };
        eprintln!(
            "(b) {n} records: {} in flight, peak RSS {:.1} MB",
            row.records_in_flight, row.peak_rss_mb
        );
        cx.report.memory.push(row);
        cleanup(&dir)?;
    }
    Ok(())
}

// ------------------------------------------------------- (c) API economy

fn economy(cx: &mut Ctx<'_>) -> anyhow::Result<()> {
    // (batch size, max.inflight, in_progress, waves of batches)
    type Cell = (u64, u64, &'static str, u64);
    let (edges, poll, grid): (&str, &str, Vec<Cell>) = if cx.o.smoke {
        (
            "50ms",
            "100ms",
            vec![(50, 2, "300ms", 2), (50, 4, "300ms", 2), (50, 2, "1s", 1)],
        )
    } else {
        let mut g = Vec::new();
        for bs in [100, 1000, 10_000] {
            for inflight in [4, 16, 64] {
                g.push((bs, inflight, "3s", 2));
            }
        }
        // Long batches: adaptive polling backs off.
        g.push((1000, 16, "30s", 1));
        ("200ms", "250ms", g)
    };
    let interval = parse_ms(poll);
    cx.report.economy_setup = Some(EconomySetup {
        lifetime: format!("validating {edges}, in_progress as in the table, finalizing {edges}"),
        poll_interval: poll.to_owned(),
    });
    for (bs, inflight, in_progress, waves) in grid {
        let lifetime = 2 * parse_ms(edges) + parse_ms(in_progress);
        let n = (bs * inflight * waves).min(if cx.o.smoke { 400 } else { 200_000 });
        let input = gen::input(&cx.inputs, n, 200)?;
        let name = format!("c-bs{bs}-if{inflight}-{in_progress}");
        let mock = cx.mock(
            &[
                "--validating",
                edges,
                "--in-progress",
                in_progress,
                "--finalizing",
                edges,
            ],
            &name,
        )?;
        let dir = cx.o.work.join(&name);
        fresh_dir(&dir)?;
        let toml = pipeline_toml(
            "bench",
            &input,
            &dir,
            &mock.base,
            true,
            &[
                ("ml.batch.size", bs.to_string()),
                ("ml.batch.max.inflight", inflight.to_string()),
                ("ml.batch.poll.interval", s(poll)),
                ("ml.batch.max.wait", s("1s")),
            ],
        );
        let config = cx.write_config(&dir, &toml)?;
        cx.note_command(format!(
            "{} run --config {}   # (c): ml.batch.size = {bs}, max.inflight = {inflight}, poll.interval = {poll}",
            cx.o.bin.display(),
            config.display()
        ));
        let m = cx.run_to_end(&config, &name)?;
        let stats = mock.stats()?;
        mock.stop();
        let calls = calls_by_route(&stats);
        let get = |k: &str| calls.get(k).copied().unwrap_or(0);
        let batches = stats["batches_created"].as_u64().unwrap_or(0);
        let total: u64 = calls.values().sum();
        let polls = get("GET /v1/batches/{id}");
        let lists = get("GET /v1/batches");
        let batch_intervals = batches as f64 * (lifetime as f64 / interval as f64);
        let row = EconomyRow {
            lifetime_ms: lifetime,
            batch_size: bs,
            max_inflight: inflight,
            records: n,
            batches,
            wall_s: m.wall.as_secs_f64(),
            total_calls: total,
            calls_per_1000: total as f64 * 1000.0 / n as f64,
            status_calls_per_batch: (polls + lists) as f64 / batches.max(1) as f64,
            status_calls_per_batch_interval: (polls + lists) as f64 / batch_intervals.max(1e-9),
            calls,
        };
        eprintln!(
            "(c) batch {bs}, in flight {inflight}: {total} calls for {n} records ({:.1} per 1000)",
            row.calls_per_1000
        );
        cx.report.economy.push(row);
        cleanup(&dir)?;
    }
    Ok(())
}

fn parse_ms(d: &str) -> u64 {
    if let Some(ms) = d.strip_suffix("ms") {
        ms.parse().unwrap_or(0)
    } else if let Some(s) = d.strip_suffix('s') {
        s.parse::<u64>().unwrap_or(0) * 1000
    } else {
        0
    }
}

// ------------------------------------------------------- (d) batch vs sync

fn modes(cx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let setup = if cx.o.smoke {
        ModeSetup {
            records: 60,
            sync_latency: "5ms".into(),
            rpm: 6000,
            concurrency: 8,
            batch_size: 50,
            batch_turnaround: "150ms".into(),
            poll_interval: "50ms".into(),
        }
    } else {
        ModeSetup {
            records: 1200,
            sync_latency: "300ms".into(),
            rpm: 600,
            concurrency: 16,
            batch_size: 1000,
            batch_turnaround: "6s".into(),
            poll_interval: "1s".into(),
        }
    };
    let input = gen::input(&cx.inputs, setup.records, 200)?;
    // The mock's batch life: 1/12 validating, 5/6 in progress, 1/12 finalizing.
    let turnaround = parse_ms(&setup.batch_turnaround);
    let (v, p) = (turnaround / 12, turnaround - turnaround / 6);
    let (v, p) = (format!("{v}ms"), format!("{p}ms"));
    let rpm = setup.rpm.to_string();
    let mock_args = [
        "--sync-latency",
        setup.sync_latency.as_str(),
        "--rpm",
        rpm.as_str(),
        "--validating",
        v.as_str(),
        "--in-progress",
        p.as_str(),
        "--finalizing",
        v.as_str(),
    ];
    for mode in ["batch", "sync"] {
        let name = format!("d-{mode}");
        let mock = cx.mock(&mock_args, &name)?;
        let dir = cx.o.work.join(&name);
        fresh_dir(&dir)?;
        let keys: Vec<(&str, String)> = if mode == "batch" {
            vec![
                ("ml.batch.size", setup.batch_size.to_string()),
                ("ml.batch.poll.interval", s(&setup.poll_interval)),
                ("ml.batch.max.wait", s("1s")),
            ]
        } else {
            vec![
                (
                    "ml.predict.max-concurrent-operations",
                    setup.concurrency.to_string(),
                ),
                ("ml.predict.max-retries", "10".into()),
            ]
        };
        let toml = pipeline_toml("bench", &input, &dir, &mock.base, mode == "batch", &keys);
        let config = cx.write_config(&dir, &toml)?;
        cx.note_command(format!(
            "{} run --config {}   # (d) {mode} mode",
            cx.o.bin.display(),
            config.display()
        ));
        let m = cx.run_to_end(&config, &name)?;
        let stats = mock.stats()?;
        mock.stop();
        let total_tokens = m.summary_number("tokens: ").unwrap_or(0);
        let (ok, completion) = completion_tokens(&dir.join("output.jsonl"))?;
        let prompt = total_tokens.saturating_sub(completion);
        let factor = if mode == "batch" { BATCH_DISCOUNT } else { 1.0 };
        let cost = factor
            * (prompt as f64 * PRICE_INPUT_PER_M + completion as f64 * PRICE_OUTPUT_PER_M)
            / 1e6;
        let wall = m.wall.as_secs_f64();
        let row = ModeRow {
            mode: mode.into(),
            records: setup.records,
            wall_s: wall,
            records_per_min: setup.records as f64 * 60.0 / wall,
            api_calls: calls_by_route(&stats).values().sum(),
            rate_limited: stats["faults_injected"]["rpm_limit"].as_u64().unwrap_or(0),
            ok,
            prompt_tokens: prompt,
            completion_tokens: completion,
            cost_usd: cost,
        };
        eprintln!(
            "(d) {mode}: {} records in {wall:.1} s = {:.0}/min, {} API calls",
            setup.records, row.records_per_min, row.api_calls
        );
        cx.report.modes.push(row);
        cleanup(&dir)?;
    }
    cx.report.modes_setup = Some(setup);
    Ok(())
}

/// (ok records, completion tokens) of an output file, counting tokens the
/// way the mock's fake model does (4 tokens per 3 words, at least 1).
fn completion_tokens(output: &Path) -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string(output)
        .with_context(|| format!("cannot read {}", output.display()))?;
    let (mut ok, mut tokens) = (0, 0);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        if let Some(p) = v["prediction"].as_str() {
            ok += 1;
            let words = p.split_whitespace().count() as u64;
            tokens += (words * 4).div_ceil(3).max(1);
        }
    }
    Ok((ok, tokens))
}

// ------------------------------------------------------- (e) Kafka mode

/// Input partitions of (e).
pub const KAFKA_PARTITIONS: i32 = 4;

/// A Kafka pipeline's configuration (batch mode; group and pipeline `name`).
fn kafka_toml(
    name: &str,
    bootstrap: &str,
    topics: (&str, &str),
    dir: &Path,
    base: &str,
    keys: &[(&str, String)],
) -> String {
    let (input, output) = topics;
    let mut t = Toml::default();
    t.kv("pipeline.name", s(name));
    t.kv("source.type", s("kafka"));
    t.kv("source.bootstrap.servers", s(bootstrap));
    t.kv("source.topic", s(input));
    t.kv("source.group.id", s(name));
    t.kv("sink.type", s("kafka"));
    t.kv("sink.topic", s(output));
    t.kv("sink.dlq.topic", s(&format!("{output}-dlq")));
    t.model_and_keys(base, dir, true, keys)
}

fn kafka_e2e(cx: &mut Ctx<'_>, bootstrap: &str) -> anyhow::Result<()> {
    // (instances, batch size, records)
    let cells: &[(usize, u64, u64)] = if cx.o.smoke {
        &[(1, 100, 1_000), (2, 100, 1_000)]
    } else {
        &[
            (1, 1000, 500_000),
            (2, 1000, 500_000),
            (1, 10_000, 500_000),
            (2, 10_000, 500_000),
        ]
    };
    let size = 200;
    let partitions = KAFKA_PARTITIONS;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    for &(instances, bs, n) in cells {
        let name = format!("e-bs{bs}-x{instances}");
        // Fresh topics and group per run: nothing left over from an earlier one.
        let tag = format!("bench-{name}-{nonce}");
        let (input, output) = (format!("{tag}-in"), format!("{tag}-out"));
        kafka::create_topic(bootstrap, &input, partitions)?;
        let t = Instant::now();
        kafka::produce(bootstrap, &input, partitions, n, size)?;
        let produce_s = t.elapsed().as_secs_f64();
        let mock = cx.mock(&["--instant"], &name)?;
        let keys: Vec<(&str, String)> = vec![
            ("ml.batch.size", bs.to_string()),
            ("ml.batch.poll.interval", s("1ms")),
            ("ml.batch.max.inflight", "32".into()),
            ("ml.batch.max.wait", s("1s")),
        ];
        let mut configs = Vec::new();
        for i in 0..instances {
            let dir = cx.o.work.join(format!("{name}-{i}"));
            fresh_dir(&dir)?;
            let toml = kafka_toml(&tag, bootstrap, (&input, &output), &dir, &mock.base, &keys);
            let config = cx.write_config(&dir, &toml)?;
            cx.note_command(format!(
                "{} run --until-idle --config {}   # (e) instance {} of {instances}, ml.batch.size = {bs}, {partitions} partitions",
                cx.o.bin.display(),
                config.display(),
                i + 1
            ));
            configs.push((dir, config));
        }
        let broker =
            cx.o.kafka_broker_pid_file
                .as_ref()
                .and_then(|f| std::fs::read_to_string(f).ok())
                .and_then(|p| p.trim().parse().ok())
                .filter(|&pid| procs::alive(pid));
        let broker_cpu_at_start = broker.map(procs::proc_cpu);
        let t0 = Instant::now();
        let mut running = Vec::new();
        for (i, (_, config)) in configs.iter().enumerate() {
            let mut cmd = Command::new(&cx.o.bin);
            cmd.args(["run", "--until-idle", "--config"]).arg(config);
            cmd.env("MLPREDICT_LOG", "warn");
            running.push(Some(Running::start(cmd, &cx.logs, &format!("{name}-{i}"))?));
        }
        let deadline = Duration::from_secs(if cx.o.smoke { 180 } else { 900 });
        let mut measured: Vec<Measured> = Vec::new();
        while measured.len() < instances {
            for slot in running.iter_mut() {
                let Some(r) = slot else { continue };
                if let Some(m) = r.try_wait()? {
                    *slot = None;
                    measured.push(m);
                }
            }
            if t0.elapsed() > deadline {
                let mut tails = String::new();
                for r in running.iter().flatten() {
                    tails.push_str(&format!("--- pid {}:\n{}\n", r.pid(), r.stderr_tail()));
                    r.signal(libc::SIGKILL);
                }
                for r in running.into_iter().flatten() {
                    let _ = r.wait();
                }
                mock.stop();
                bail!("{name}: instances still running after {deadline:?}:\n{tails}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let wall = t0.elapsed();
        let broker_gone = broker.is_some_and(|pid| !procs::alive(pid));
        if broker_gone {
            eprintln!(
                "!! (e) {name}: the broker process is gone: it was restarted during the run, the figures are disturbed"
            );
        }
        let broker_cpu = broker
            .zip(broker_cpu_at_start)
            .filter(|_| !broker_gone)
            .map(|(pid, at)| procs::proc_cpu(pid).saturating_sub(at).as_secs_f64());
        let stats = mock.stats()?;
        let mock_cpu = mock.cpu();
        mock.stop();
        for m in &measured {
            if m.exit_code != 0 {
                bail!(
                    "{name}: an instance exited with {}:\n{}",
                    m.exit_code,
                    m.stderr_tail
                );
            }
        }
        let t = Instant::now();
        let out = kafka::count_output(bootstrap, &output, n, true)?;
        let all = kafka::count_output(bootstrap, &output, n, false)?;
        let dlq = kafka::count_output(bootstrap, &format!("{output}-dlq"), 0, true)?;
        let verify_s = t.elapsed().as_secs_f64();
        eprintln!(
            "(e) {instances} instance(s), batch {bs}: output holds {} records, {} distinct custom_ids, {} distinct ids, {} ok, {} dead letters (read_committed)",
            out.messages, out.distinct_custom_ids, out.distinct_ids, out.ok, dlq.messages
        );
        if out.messages != n
            || out.distinct_custom_ids != n
            || out.distinct_ids != n
            || out.ok != n
            || dlq.messages != 0
        {
            bail!(
                "{name}: the output topic {output} does not hold every input record exactly once: \
                 {} records, {} distinct custom_ids, {} distinct ids, {} ok, {} dead letters for {n} input records \
                 (logs in {})",
                out.messages,
                out.distinct_custom_ids,
                out.distinct_ids,
                out.ok,
                dlq.messages,
                cx.logs.display()
            );
        }
        let user = measured.iter().map(|m| m.user).sum();
        let sys = measured.iter().map(|m| m.sys).sum();
        let row = KafkaRow {
            instances,
            partitions,
            record_bytes: size,
            batch_size: bs,
            records: n,
            t: Throughput::new(n, wall, user, sys),
            peak_rss_mb: mb(measured.iter().map(|m| m.max_rss).max().unwrap_or(0)),
            mock_cpu_s: mock_cpu.as_secs_f64(),
            broker_cpu_s: broker_cpu,
            broker_gone,
            api_calls: calls_by_route(&stats).values().sum(),
            batches_created: stats["batches_created"].as_u64().unwrap_or(0),
            output_records: out.messages,
            distinct_custom_ids: out.distinct_custom_ids,
            distinct_ids: out.distinct_ids,
            ok: out.ok,
            dlq_records: dlq.messages,
            output_markers: all.control_records,
            output_aborted: all.messages.saturating_sub(out.messages),
            output_mb: mb(out.bytes),
            produce_s,
            verify_s,
        };
        eprintln!(
            "(e) {instances} instance(s), batch {bs}: {n} records in {:.2} s = {:.0}/s, {:.2} µs CPU/record",
            row.t.wall_s, row.t.records_per_s, row.t.cpu_us_per_record
        );
        cx.report.kafka.push(row);
        let state = format!("mlpredict-{tag}-state");
        kafka::delete_topics(
            bootstrap,
            &[&input, &output, &format!("{output}-dlq"), &state],
        );
        for (dir, _) in &configs {
            cleanup(dir)?;
        }
    }
    Ok(())
}

// ------------------------------------------------------- machine

fn machine(bin: &Path) -> Machine {
    let sh = |prog: &str, args: &[&str]| {
        Command::new(prog)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into())
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown".into(), |s| s.trim().to_owned());
    let mem_kb: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let dirty = sh("git", &["status", "--porcelain"]);
    let commit = format!(
        "{}{}",
        sh("git", &["rev-parse", "--short", "HEAD"]),
        if dirty.is_empty() || dirty == "unknown" {
            ""
        } else {
            " + uncommitted changes"
        }
    );
    Machine {
        date: sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        cpu,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_gb: mem_kb / 1_048_576.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("unknown".into(), |s| s.trim().to_owned()),
        rustc: sh("rustc", &["-V"]),
        commit,
        load_at_start: std::fs::read_to_string("/proc/loadavg").map_or("unknown".into(), |s| {
            s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        }),
        binary: bin.display().to_string(),
    }
}
