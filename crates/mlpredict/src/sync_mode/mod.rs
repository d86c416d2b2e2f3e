//! Batch mode off (`ml.batch.enabled = false`), wired from the
//! configuration: today's ML_PREDICT. Every record is sent on its own to
//! `model.endpoint`, at most `ml.predict.max-concurrent-operations` at
//! once, and emitted in input order (`ORDERED`, per lane) or as answers
//! arrive (`ALLOW_UNORDERED`), with the same output contract and dead
//! letters as batch mode.
//!
//! The synchronous operator (`runtime::sync`, around `sync-core`) runs on
//! the one driver, over the file ledger (output appended and fsynced, then
//! one SQLite transaction) or the Kafka ledger (one transaction holds the
//! output and dead-letter records, the lanes' state and the offsets).
//! What was emitted is committed with each lane's watermark and, for
//! ALLOW_UNORDERED, the records emitted beyond it, in a group commit every
//! 200 ms; a restart resumes at the watermark and skips those.

use std::path::Path;
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::Duration;

use batch_api::sync::{Auth, Client, Settings};
use batch_api::wire::{Task, WireFormat};
use pipeline_config::{OutputMode, PipelineConfig, Provider, SourceConfig};
use runtime::batch::health::Health;
use runtime::sync::{SyncCaller, SyncOperator, SyncSettings};
use sync_core::Limits;
use tokio::runtime::Handle;

use crate::provider;
use crate::runtime::{drive, file_ledger, kafka_ledger, state_dir, Options, Summary};

/// Records handed to the operator per turn of the loop at most.
const READ_BURST: usize = 1024;

pub fn run(
    cfg: &PipelineConfig,
    rt: Handle,
    opts: Options,
    until_idle: bool,
    instance_id: Option<&str>,
) -> anyhow::Result<Summary> {
    let kafka = matches!(cfg.source, SourceConfig::Kafka(_));
    let (format, task) = provider::wire_of(&cfg.model)?;
    let ordered = cfg.sync.output_mode == OutputMode::Ordered;
    let settings = SyncSettings {
        pipeline: cfg.name.clone(),
        ordered,
        // A consumer fetches ahead of the windows; a file is read on demand.
        limits: Limits::new(max_concurrent(cfg), ordered, kafka),
        template: provider::template(&cfg.model, format, task),
        input_field: cfg.model.input.clone(),
        output_field: cfg.model.output.clone(),
    };
    let (tx, rx) = channel();
    let caller = |dir: &Path| -> anyhow::Result<SyncOperator> {
        let health = Arc::new(Health::real().reporting_to(dir));
        let client = client(cfg, format, task, health)?;
        let caller = SyncCaller::new(client, Arc::new(rt.clone()), tx);
        Ok(SyncOperator::new(settings, caller))
    };
    let driver_opts = runtime::Options {
        read_burst: READ_BURST,
        idle_wait: Duration::from_millis(if kafka { 20 } else { 50 }),
        // Answers must not wait behind a consumer's poll.
        read_wait: Duration::ZERO,
        cancel_inflight: false,
        progress: opts.progress,
    };
    if kafka {
        // The instance is held for the whole run.
        let (ledger, instance) = kafka_ledger(cfg, &rt, until_idle, instance_id)?;
        let op = caller(&instance.dir)?;
        drive(cfg, ledger, op, rx, opts, driver_opts)
    } else {
        let op = caller(&state_dir(cfg))?;
        drive(cfg, file_ledger(cfg)?, op, rx, opts, driver_opts)
    }
}

pub fn print_summary(s: &Summary) {
    println!(
        "\n{} records read in {:.1?} (synchronous mode)\n  emitted: {} ok, {} errors\n  dead letters: {}\n  API calls: {} ({} failed, {} retries)\n  tokens: {}\n  output: {}\n  dead letters: {}",
        s.records_read,
        s.wall,
        s.ok,
        s.errors,
        s.dead_letters,
        s.api_calls,
        s.api_errors,
        s.retries,
        s.tokens,
        s.output,
        s.dlq,
    );
    if s.skipped > 0 {
        println!("  skipped: {} (emitted before a restart)", s.skipped);
    }
    if s.interrupted {
        println!("  interrupted: run the same command again to resume");
    }
}

fn max_concurrent(cfg: &PipelineConfig) -> usize {
    cfg.sync.max_concurrent_operations.max(1) as usize
}

fn client(
    cfg: &PipelineConfig,
    format: WireFormat,
    task: Task,
    health: Arc<Health>,
) -> anyhow::Result<Arc<Client>> {
    Ok(Arc::new(Client::new(&Settings {
        endpoint: &cfg.model.endpoint,
        api_key: cfg.model.api_key.as_ref().map(|k| k.expose()),
        auth: match cfg.model.provider {
            Provider::AzureOpenAi => Auth::Azure {
                api_version: cfg.model.api_version.as_deref(),
            },
            Provider::Anthropic => Auth::Anthropic {
                version: &cfg.model.anthropic_version,
            },
            Provider::OpenAi | Provider::Generic => Auth::Bearer,
        },
        pipeline: &cfg.name,
        output_field: &cfg.model.output,
        task,
        format,
        timeout: cfg.sync.timeout,
        request_timeout: cfg.sync.request_timeout,
        max_retries: cfg.sync.max_retries,
        max_concurrent: max_concurrent(cfg),
        observer: Some(health),
    })?))
}
