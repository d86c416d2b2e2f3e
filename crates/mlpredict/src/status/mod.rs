//! What a pipeline is doing, as one [`Status`] model: read from its state
//! database (file sources) or its state topic (Kafka sources), plus what
//! only a running process knows ([`live`]). `mlpredict status` prints it
//! ([`text`]), the status page renders it ([`page`], served by [`serve`]),
//! `/status.json` is its JSON. Reading state needs no API key, and a Kafka
//! pipeline's group is not joined.

mod budget;
pub mod live;
pub mod page;
pub mod serve;
pub mod text;

use std::collections::BTreeMap;

use anyhow::bail;
use std::path::Path;

use batch_core::{Batch, LaneId, Millis, Phase};
use pipeline_config::{PipelineConfig, SourceConfig};
use runtime::batch::health::Report;
use serde::Serialize;
use state_store::Store;

use crate::runtime::{kafka_settings, now_ms, state_dir};

/// Emitted batches listed besides the open ones.
pub const EMITTED_SHOWN: usize = 20;

/// A pipeline's status at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub pipeline: String,
    /// `file` or `kafka`.
    pub source: &'static str,
    /// Where the state was read: a database path, or a topic and its cluster.
    pub state: String,
    pub at_ms: Millis,
    pub lanes: Vec<LaneStatus>,
    /// File sinks: bytes committed per output.
    pub sinks: Vec<SinkStatus>,
    /// Newest first: every batch the state still holds.
    pub batches: Vec<BatchRow>,
    /// Batches not yet emitted, by phase.
    pub open_by_phase: BTreeMap<&'static str, u64>,
    pub retries: Retries,
    /// Batches that gave up as a whole, by failure code.
    pub failures_by_code: BTreeMap<String, u64>,
    /// What runs on this machine last reported of the provider
    /// (`provider.json`: one for a file pipeline, one per instance
    /// directory for a Kafka one).
    pub provider_reports: Vec<ProviderReport>,
    /// From the running process only (`None` for `mlpredict status`).
    pub provider: Option<live::ProviderHealth>,
    pub money: Money,
}

#[derive(Debug, Clone, Serialize)]
pub struct LaneStatus {
    pub lane: LaneId,
    /// Every record before it is in a durable batch or a dead letter.
    pub watermark: u64,
    /// `byte` (file offset) or `offset` (Kafka offset).
    pub unit: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderReport {
    /// The Kafka instance directory it came from; `None` for a file pipeline.
    pub instance: Option<String>,
    #[serde(flatten)]
    pub report: Report,
}

#[derive(Debug, Clone, Serialize)]
pub struct SinkStatus {
    pub name: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchRow {
    pub id: u64,
    pub number: String,
    pub lane: LaneId,
    pub phase: &'static str,
    pub records: u32,
    pub generation: u32,
    pub attempt: u32,
    /// Since the batch was cut.
    pub age_ms: Millis,
    pub remote_id: Option<String>,
    /// The provider's last state, or why the batch failed.
    pub state: Option<String>,
    pub failure_code: Option<String>,
    /// The provider's `request_counts` at its last poll by this process.
    pub progress: Option<live::Progress>,
}

/// Retries the state shows: retry batches (records sent again in a new
/// batch) and submission attempts after the first (a batch sent again).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Retries {
    pub retry_batches: u64,
    pub retried_records: u64,
    pub resubmissions: u64,
}

/// Spend, savings and budget; `None` where this build does not know them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Money {
    pub spent_usd: Option<f64>,
    pub saved_usd: Option<f64>,
    pub budget_usd: Option<f64>,
    pub budget_state: Option<String>,
}

/// The pipeline's status from its state (no live figures).
pub fn read(cfg: &PipelineConfig) -> anyhow::Result<Status> {
    match &cfg.source {
        SourceConfig::File { .. } => read_file(cfg),
        SourceConfig::Kafka(_) => read_kafka(cfg),
    }
}

fn read_file(cfg: &PipelineConfig) -> anyhow::Result<Status> {
    let dir = state_dir(cfg);
    if !dir.join("state.db").exists() {
        bail!(
            "no state for pipeline `{}` under {} (ml.batch.local.dir): it never ran here",
            cfg.name,
            dir.display()
        );
    }
    let store = Store::open(&dir)?;
    let snap = store.load()?;
    let lanes = snap
        .lanes
        .iter()
        .map(|&(lane, w)| LaneStatus {
            lane,
            watermark: w,
            unit: "byte",
        })
        .collect();
    let sinks = snap
        .sinks
        .iter()
        .map(|(name, &bytes)| SinkStatus {
            name: name.clone(),
            bytes,
        })
        .collect();
    let state = format!("state {}", store.path().display());
    let batches = store.all_batches()?;
    let mut s = Status::new(&cfg.name, "file", state, lanes, sinks, &batches);
    s.provider_reports.extend(provider_report(&dir, None));
    s.money.budget_usd = cfg.batch.max_usd;
    let spent = store.meta(runtime::batch::SPEND)?;
    s.money.budget_state = budget::state(cfg, &snap.open_batches, spent.as_deref());
    Ok(s)
}

fn read_kafka(cfg: &PipelineConfig) -> anyhow::Result<Status> {
    let s = kafka_settings(cfg, "status")?;
    let reader = kafka_io::StateReader::connect(&s)?;
    let Some(partitions) = reader.partitions()? else {
        bail!(
            "no state for pipeline `{}` at {} (source.bootstrap.servers): its state topic {} does not exist, it never ran against this cluster",
            cfg.name,
            s.bootstrap,
            s.state_topic
        );
    };
    let mut lanes = Vec::new();
    let mut batches = Vec::new();
    for p in 0..partitions {
        let lane = reader.read_history(p)?;
        if let Some(l) = lane.lane {
            lanes.push(LaneStatus {
                lane: p as LaneId,
                watermark: l.watermark.max(0) as u64,
                unit: "offset",
            });
        }
        batches.extend(lane.batches.into_values());
    }
    // Newest first, as for a file pipeline; emitted batches are shown until
    // the topic's compaction removes them.
    batches.sort_by_key(|b| std::cmp::Reverse((b.planned_at, b.id)));
    let state = format!("state topic {} at {}", s.state_topic, s.bootstrap);
    let mut s = Status::new(&cfg.name, "kafka", state, lanes, Vec::new(), &batches);
    // What the instances on this machine saw of the provider.
    if let Ok(dirs) = std::fs::read_dir(state_dir(cfg)) {
        let mut dirs: Vec<_> = dirs.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            let name = dir.file_name().unwrap_or_default().to_string_lossy();
            s.provider_reports
                .extend(provider_report(dir, Some(name.into_owned())));
        }
    }
    Ok(s)
}

/// The provider's state as the run using `dir` last reported it.
fn provider_report(dir: &Path, instance: Option<String>) -> Option<ProviderReport> {
    Report::read(dir).map(|report| ProviderReport { instance, report })
}

impl Status {
    fn new(
        pipeline: &str,
        source: &'static str,
        state: String,
        lanes: Vec<LaneStatus>,
        sinks: Vec<SinkStatus>,
        batches: &[Batch],
    ) -> Self {
        let now = now_ms();
        let mut open_by_phase = BTreeMap::new();
        let mut retries = Retries::default();
        let mut failures_by_code = BTreeMap::new();
        for b in batches {
            if b.phase != Phase::Emitted {
                *open_by_phase.entry(b.phase.as_str()).or_default() += 1;
            }
            if b.generation > 0 {
                retries.retry_batches += 1;
                retries.retried_records += u64::from(b.records);
            }
            retries.resubmissions += u64::from(b.attempt);
            if let Some(f) = &b.failure {
                *failures_by_code.entry(f.code.clone()).or_default() += 1;
            }
        }
        Status {
            pipeline: pipeline.to_owned(),
            source,
            state,
            at_ms: now,
            lanes,
            sinks,
            batches: batches.iter().map(|b| BatchRow::new(b, now)).collect(),
            open_by_phase,
            retries,
            failures_by_code,
            provider_reports: Vec::new(),
            provider: None,
            money: Money::default(),
        }
    }

    pub fn open_batches(&self) -> usize {
        self.batches.iter().filter(|b| b.phase != "emitted").count()
    }

    /// The batches to list, newest first: every open one and the last
    /// [`EMITTED_SHOWN`] emitted ones (all with `all`).
    pub fn shown_batches(&self, all: bool) -> impl Iterator<Item = &BatchRow> {
        let mut shown = 0;
        self.batches.iter().filter(move |b| {
            let show = all || b.phase != "emitted" || shown < EMITTED_SHOWN;
            shown += usize::from(show);
            show
        })
    }
}

impl BatchRow {
    fn new(b: &Batch, now: Millis) -> Self {
        let state = match (&b.failure, b.remote_state) {
            (Some(f), _) => Some(format!("{}: {}", f.code, f.message)),
            (None, Some(s)) => Some(s.as_str().to_owned()),
            (None, None) => None,
        };
        BatchRow {
            id: b.id,
            number: b.number.clone(),
            lane: b.lane,
            phase: b.phase.as_str(),
            records: b.records,
            generation: b.generation,
            attempt: b.attempt,
            age_ms: now.saturating_sub(b.planned_at),
            remote_id: b.remote_id.clone(),
            state,
            failure_code: b.failure.as_ref().map(|f| f.code.clone()),
            progress: None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use batch_core::{BatchFailure, RemoteState};

    use super::*;

    fn batch(id: u64, phase: Phase, generation: u32, attempt: u32) -> Batch {
        Batch {
            id,
            lane: 0,
            number: format!("p-0-{id}"),
            first: 0,
            end: 10,
            members: None,
            generation,
            attempt,
            records: 10,
            phase,
            planned_at: now_ms(),
            submitted_at: None,
            file_id: None,
            remote_id: Some(format!("batch_{id}")),
            remote_state: None,
            output_file: None,
            error_file: None,
            failure: None,
            first_submitted_at: None,
            fault_retries: 0,
            submissions: 1,
            tokens: 0,
            estimated_cost: 0,
        }
    }

    /// Newest first: a submitted batch, a finished retry batch, a failed
    /// one, then 25 emitted ones.
    pub(crate) fn sample() -> Status {
        let mut failed = batch(27, Phase::Emitted, 0, 2);
        failed.remote_state = Some(RemoteState::Failed);
        failed.failure = Some(BatchFailure {
            code: "token_limit_exceeded".into(),
            message: "over".into(),
        });
        let mut batches = vec![
            batch(29, Phase::Submitted, 0, 0),
            batch(28, Phase::Finished, 1, 1),
            failed,
        ];
        batches.extend((1..=25).rev().map(|id| batch(id, Phase::Emitted, 0, 0)));
        let lanes = vec![LaneStatus {
            lane: 0,
            watermark: 4096,
            unit: "byte",
        }];
        Status::new("p", "file", "state x".into(), lanes, Vec::new(), &batches)
    }

    #[test]
    fn counts_open_batches_retries_and_failures() {
        let s = sample();
        assert_eq!(s.open_batches(), 2);
        let phases: Vec<_> = s.open_by_phase.iter().map(|(p, n)| (*p, *n)).collect();
        assert_eq!(phases, [("finished", 1), ("submitted", 1)]);
        assert_eq!(
            (
                s.retries.retry_batches,
                s.retries.retried_records,
                s.retries.resubmissions
            ),
            (1, 10, 3)
        );
        assert_eq!(s.failures_by_code["token_limit_exceeded"], 1);
        assert_eq!(
            s.batches[2].state.as_deref(),
            Some("token_limit_exceeded: over")
        );
    }

    #[test]
    fn lists_open_batches_and_the_last_emitted_ones() {
        let s = sample();
        // 2 open + 18 emitted make 20 rows; all: every batch.
        let shown: Vec<u64> = s.shown_batches(false).map(|b| b.id).collect();
        assert_eq!(shown.len(), EMITTED_SHOWN, "{shown:?}");
        assert_eq!(&shown[..3], [29, 28, 27]);
        assert_eq!(s.shown_batches(true).count(), 28);
    }

    #[test]
    fn serves_as_json() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["batches"][0]["phase"], "submitted");
        assert_eq!(v["batches"][0]["progress"], serde_json::Value::Null);
        assert_eq!(v["money"]["spent_usd"], serde_json::Value::Null);
        assert_eq!(v["lanes"][0]["watermark"], 4096);
    }
}
