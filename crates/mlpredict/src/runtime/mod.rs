//! Batch mode, wired from the configuration: the batch operator on the
//! one driver (`crates/runtime`), over the file ledger or the Kafka ledger.

pub mod instance;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use batch_core::CoreConfig;
use kafka_io::{KafkaIo, Settings};
use pipeline_config::{PipelineConfig, SinkConfig, SourceConfig};
use runtime::batch::calls::Caller;
use runtime::batch::health::Health;
use runtime::batch::local::LocalDir;
use runtime::batch::requests::{TokenPrice, Tokens};
use runtime::batch::spool::Spool;
use runtime::batch::tokens::{Estimator, ModelShape};
use runtime::batch::{BatchOperator, BatchSettings};
use runtime::ledger::file::FileLedger;
use runtime::ledger::kafka::KafkaLedger;
use runtime::ledger::Ledger;
use runtime::{Driver, Operator, RealEnv};
use tokio::runtime::Handle;

use crate::status::live::Live;

pub use runtime::{now_ms, Summary};

pub struct Options {
    pub cancel_inflight: bool,
    pub shutdown: Arc<AtomicBool>,
    pub progress: bool,
    /// What the status page shows of this process.
    pub live: Arc<Live>,
}

/// `list_polling`: the provider's listing reports full batch states (the
/// generic protocol's listing is our extension and may not).
pub fn core_config(
    cfg: &PipelineConfig,
    limits: batch_api::Limits,
    list_polling: bool,
) -> CoreConfig {
    let b = &cfg.batch;
    CoreConfig {
        prefix: cfg.batch_number_prefix().to_owned(),
        batch_size: b
            .size
            .min(limits.max_requests.min(u32::MAX as u64) as u32)
            .max(1),
        // Leave room under the provider's file limit for the last line.
        max_bytes: b
            .max_bytes
            .min(limits.max_bytes.saturating_sub(1 << 20))
            .max(1),
        max_wait_ms: b.max_wait.as_millis() as u64,
        max_inflight: b.max_inflight.max(1),
        poll_interval_ms: b.poll_interval.as_millis() as u64,
        poll_max_interval_ms: b.poll_max_interval.as_millis() as u64,
        job_timeout_ms: b.job_timeout.as_millis() as u64,
        max_retries: b.max_retries,
        retry_deadline_ms: b.retry_deadline.as_millis() as u64,
        backoff_base_ms: 500,
        backoff_cap_ms: 60_000,
        list_poll_min: if list_polling { 3 } else { 0 },
        max_enqueued_tokens: b.max_enqueued_tokens,
        // Nano-USD; the table's range keeps it finite and positive.
        budget: b.max_usd.map(|usd| (usd * 1e9).floor() as u64),
    }
}

/// The token estimator, when the enqueued-token limit or the budget needs
/// one, with the model's batch prices for the budget.
fn token_rule(
    cfg: &PipelineConfig,
    format: batch_api::wire::WireFormat,
    task: batch_api::wire::Task,
) -> anyhow::Result<Option<Tokens>> {
    let limit = cfg.batch.max_enqueued_tokens;
    if limit.is_none() && cfg.batch.max_usd.is_none() {
        return Ok(None);
    }
    let m = &cfg.model;
    let price = match cfg.batch.max_usd {
        None => None,
        Some(_) => {
            let Some(p) = cfg.pricing.price(&m.model) else {
                bail!(
                    "ml.budget.max-usd: model {:?} has no price; add pricing.\"{}\".input and .output (USD per 1M tokens)",
                    m.model,
                    m.model
                );
            };
            Some(TokenPrice::per_million(
                p.batch_input,
                p.batch_output,
                u64::from(m.max_tokens.unwrap_or(1024)),
            ))
        }
    };
    let max_tokens = m
        .max_tokens
        .or((format == batch_api::wire::WireFormat::Anthropic)
            .then_some(batch_api::wire::ANTHROPIC_DEFAULT_MAX_TOKENS));
    let estimator = Estimator::new(&ModelShape {
        format,
        task,
        model: &m.model,
        system_prompt: m.system_prompt.as_deref(),
        max_tokens,
    });
    tracing::info!(
        counter = estimator.name(),
        limit,
        budget_usd = cfg.batch.max_usd,
        "estimating request tokens"
    );
    Ok(Some(Tokens {
        estimator,
        limit,
        price,
    }))
}

/// Where a pipeline keeps its state and batch files.
pub fn state_dir(cfg: &PipelineConfig) -> PathBuf {
    cfg.batch.local_dir.join(&cfg.name)
}

/// The batch operator for this pipeline, its calls answering on `tx`.
fn operator(
    cfg: &PipelineConfig,
    rt: Handle,
    dir: PathBuf,
    keep_records: bool,
    live: &Live,
) -> anyhow::Result<(
    BatchOperator,
    std::sync::mpsc::Receiver<(u64, runtime::batch::calls::Msg)>,
)> {
    let setup = runtime::provider::connect(cfg)?;
    let limits = setup.api.limits();
    let list_polling = setup.api.listing_reports_status();
    let (tx, rx) = channel();
    let caller = Caller {
        api: Arc::from(setup.api),
        rt: Arc::new(rt),
        tx,
        counts: live.calls.clone(),
        pipeline: cfg.name.clone(),
        epoch: 0,
        background: Arc::default(),
        health: live.health(|| Health::real().reporting_to(&dir)),
        watch: live.watch.clone(),
    };
    let tokens = token_rule(cfg, setup.format, setup.task)?;
    let settings = BatchSettings {
        tokens,
        core: core_config(cfg, limits, list_polling),
        template: setup.template,
        format: setup.format,
        task: setup.task,
        input_field: cfg.model.input.clone(),
        output_field: cfg.model.output.clone(),
        cleanup_remote: cfg.batch.cleanup_remote,
        api_key: cfg
            .model
            .api_key
            .as_ref()
            .map(|k| batch_api::ApiKey::new(k.expose())),
    };
    Ok((
        BatchOperator::new(
            settings,
            caller,
            Spool::new(LocalDir::new(dir), keep_records),
        ),
        rx,
    ))
}

/// Run `op` over `ledger` until the end, or a stop; output lines become
/// the sink's rows (`sink.columns`, `pipeline.on-error`) when configured.
pub(crate) fn drive<L: Ledger, O: Operator>(
    cfg: &PipelineConfig,
    ledger: L,
    op: O,
    rx: std::sync::mpsc::Receiver<(u64, O::Answer)>,
    opts: Options,
    driver_opts: runtime::Options,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let env = RealEnv {
        answers: rx,
        shutdown: opts.shutdown,
    };
    let kafka = matches!(cfg.source, SourceConfig::Kafka(_));
    let rows = runtime::sink_rows::SinkRows::new(&cfg.output, kafka);
    let mut driver = Driver::new(ledger, op, env, driver_opts).with_sink_rows(rows);
    let mut summary = driver.run()?;
    summary.wall = started.elapsed();
    Ok(summary)
}

/// The file ledger of a pipeline with a file source and file sinks.
pub(crate) fn file_ledger(cfg: &PipelineConfig) -> anyhow::Result<FileLedger> {
    let SourceConfig::File { path: input } = &cfg.source else {
        bail!("this build reads file sources only")
    };
    let SinkConfig::File {
        path: out_path,
        dlq_path,
    } = &cfg.sink
    else {
        bail!("this build writes file sinks only")
    };
    FileLedger::open(input, out_path, dlq_path, &state_dir(cfg))
}

/// The Kafka ledger of a pipeline, as one instance of its group: the
/// returned [`instance::Instance`] (`instance_id`: `--instance-id`, else
/// the lowest free slot on this machine), held for as long as it lives.
pub(crate) fn kafka_ledger(
    cfg: &PipelineConfig,
    rt: &Handle,
    until_idle: bool,
    instance_id: Option<&str>,
) -> anyhow::Result<(KafkaLedger, instance::Instance)> {
    let instance = instance::Instance::claim(&state_dir(cfg), instance_id)?;
    let settings = settings(cfg, &instance.id)?;
    let targets = (
        settings.output_topic.clone(),
        settings.dlq_topic.clone().unwrap_or_default(),
    );
    let io = KafkaIo::connect(settings, rt)?;
    Ok((KafkaLedger::new(io, until_idle, targets), instance))
}

pub fn run_batch(cfg: &PipelineConfig, rt: Handle, opts: Options) -> anyhow::Result<Summary> {
    let ledger = file_ledger(cfg)?;
    let (op, rx) = operator(cfg, rt, state_dir(cfg), false, &opts.live)?;
    let driver_opts = runtime::Options {
        read_burst: 4096,
        idle_wait: Duration::from_millis(200),
        read_wait: Duration::ZERO,
        cancel_inflight: opts.cancel_inflight,
        progress: opts.progress,
    };
    drive(cfg, ledger, op, rx, opts, driver_opts)
}

pub fn run_kafka(
    cfg: &PipelineConfig,
    rt: Handle,
    opts: Options,
    until_idle: bool,
    instance_id: Option<&str>,
) -> anyhow::Result<Summary> {
    let (ledger, inst) = kafka_ledger(cfg, &rt, until_idle, instance_id)?;
    // Each instance has its own local directory: lanes move between
    // instances, and a batch file is rebuilt from Kafka when missing.
    let result = (|| {
        let (op, rx) = operator(cfg, rt, inst.dir.clone(), true, &opts.live)?;
        let driver_opts = runtime::Options {
            read_burst: 2048,
            idle_wait: Duration::from_millis(20),
            read_wait: Duration::from_millis(20),
            cancel_inflight: false,
            progress: opts.progress,
        };
        drive(cfg, ledger, op, rx, opts, driver_opts)
    })();
    if let Err(e) = inst.clear() {
        tracing::warn!(error = %format!("{e:#}"), "cannot empty the instance directory");
    }
    result
}

/// How to reach Kafka for this pipeline; `instance` names the
/// transactional id and the static group member, the same at every
/// restart of this instance (zombies are fenced by the group generation,
/// and a restart fences at once what its predecessor left open).
pub(crate) fn settings(cfg: &PipelineConfig, instance: &str) -> anyhow::Result<Settings> {
    let SourceConfig::Kafka(src) = &cfg.source else {
        bail!("not a kafka source")
    };
    let SinkConfig::Kafka(sink) = &cfg.sink else {
        bail!("source.type = \"kafka\" needs sink.type = \"kafka\"")
    };
    Ok(Settings {
        bootstrap: src.bootstrap_servers.clone(),
        input_topic: src.topic.clone(),
        group_id: src.group_id.clone(),
        output_topic: sink.topic.clone(),
        dlq_topic: Some(
            sink.dlq_topic
                .clone()
                .unwrap_or_else(|| format!("{}-dlq", sink.topic)),
        ),
        state_topic: format!("mlpredict-{}-state", cfg.name),
        consumer_props: src.properties.clone(),
        producer_props: sink.properties.clone(),
        transactional_id: format!("mlpredict-{}-{instance}", cfg.name),
        group_instance_id: Some(format!("mlpredict-{}-{instance}", cfg.name)),
        timeout: Duration::from_secs(30),
    })
}

pub(crate) use settings as kafka_settings;
