//! The simulated world around the real driver: one or two instances of
//! the pipeline (driver + batch operator + MemLedger) sharing a MemBroker,
//! the simulated provider, virtual time; crashes at any step and right
//! after a commit, lane moves with a zombie that still tries to commit,
//! aborted commits. After the run: exactly-once, checked on the real
//! output lines.

pub mod api;
pub mod budget;
pub mod exec;
pub mod sync_api;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::Duration;

use batch_api::wire::{RequestTemplate, Task, WireFormat};
use batch_core::{CoreConfig, LaneId, Position};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use runtime::batch::calls::{CallCounts, Caller, Msg};
use runtime::batch::health::Health;
use runtime::batch::local::LocalDir;
use runtime::batch::spool::Spool;
use runtime::batch::{BatchOperator, BatchSettings};
use runtime::ledger::mem::{MemBroker, MemLedger, CRASH};
use runtime::sync::{SyncCaller, SyncOperator, SyncSettings};
use runtime::{Driver, Options};

use api::SimApi;
use batch_core::sim::Faults;
use exec::{Exec, SimEnv};
use sync_api::SimSync;

/// Which operator the pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Batch,
    Sync,
}

#[allow(clippy::large_enum_variant)]
enum Instance {
    Batch(Driver<MemLedger, BatchOperator, SimEnv<Msg>>),
    Sync(Driver<MemLedger, SyncOperator, SimEnv<batch_api::sync::Done>>),
}

impl Instance {
    fn step(&mut self) -> anyhow::Result<bool> {
        match self {
            Instance::Batch(d) => d.step(),
            Instance::Sync(d) => d.step(),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub seeds: u64,
    pub records: u64,
    pub crashes: u64,
    pub crashes_after_commit: u64,
    pub lost_creates: u64,
    pub adoptions: u64,
    pub quota_failures: u64,
    pub expired: u64,
    pub cancelled: u64,
    pub retried_records: u64,
    pub error_outputs: u64,
    pub lane_moves: u64,
    pub fenced_commits: u64,
    pub aborted_commits: u64,
    pub lists: u64,
    pub download_failures: u64,
    pub steps: u64,
    /// Seeds with a provider outage; calls it refused.
    pub outages: u64,
    pub outage_refusals: u64,
    /// Errors emitted once the retry deadline passed, and records that
    /// came through an outage ok.
    pub out_of_time: u64,
    pub outage_survivors: u64,
    /// Provider health: outage warnings logged and suppressed.
    pub health_warnings: u64,
    pub health_suppressed: u64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.seeds += 1;
        self.records += o.records;
        self.crashes += o.crashes;
        self.crashes_after_commit += o.crashes_after_commit;
        self.lost_creates += o.lost_creates;
        self.adoptions += o.adoptions;
        self.quota_failures += o.quota_failures;
        self.expired += o.expired;
        self.cancelled += o.cancelled;
        self.retried_records += o.retried_records;
        self.error_outputs += o.error_outputs;
        self.lane_moves += o.lane_moves;
        self.fenced_commits += o.fenced_commits;
        self.aborted_commits += o.aborted_commits;
        self.lists += o.lists;
        self.download_failures += o.download_failures;
        self.steps += o.steps;
        self.outages += o.outages;
        self.outage_refusals += o.outage_refusals;
        self.out_of_time += o.out_of_time;
        self.outage_survivors += o.outage_survivors;
        self.health_warnings += o.health_warnings;
        self.health_suppressed += o.health_suppressed;
    }
}

pub struct World {
    mode: Mode,
    sync: Arc<SimSync>,
    ordered: bool,
    max_concurrent: usize,
    seed: u64,
    rng: StdRng,
    clock: Arc<AtomicU64>,
    exec: Arc<Exec>,
    broker: MemBroker,
    api: SimApi,
    cfg: CoreConfig,
    dead: BTreeSet<(LaneId, Position)>,
    lane_len: BTreeMap<LaneId, u64>,
    instances: Vec<Option<Instance>>,
    finished: Vec<bool>,
    incarnation: u64,
    dir: tempfile::TempDir,
    crash_rate: f64,
    crashes_left: u32,
    move_rate: f64,
    keep_records: bool,
    read_burst: usize,
    totals: Totals,
    health: Arc<Health>,
    watch: budget::Watch,
}

/// A record's value: usable, or one of the ways a record is not.
fn record(rng: &mut StdRng, lane: LaneId, p: Position, dead: bool) -> Vec<u8> {
    if !dead {
        return format!(r#"{{"id":"{lane}-{p}","text":"review {p} of lane {lane}"}}"#).into_bytes();
    }
    match rng.random_range(0..3) {
        0 => b"not json at all".to_vec(),
        1 => format!(r#"{{"id":"{lane}-{p}"}}"#).into_bytes(),
        _ => format!(r#"{{"id":"{lane}-{p}","text":5}}"#).into_bytes(),
    }
}

impl World {
    pub fn new(seed: u64, mode: Mode) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let lanes = rng.random_range(1..=3u32);
        let dead_rate = [0.0, 0.02, 0.1][rng.random_range(0..3)];
        let mut lane_len = BTreeMap::new();
        let mut dead = BTreeSet::new();
        let mut values = BTreeMap::new();
        for lane in 0..lanes {
            let n = rng.random_range(0..200u64);
            lane_len.insert(lane, n);
            let mut v = Vec::with_capacity(n as usize);
            for p in 0..n {
                let is_dead = rng.random_bool(dead_rate);
                if is_dead {
                    dead.insert((lane, p));
                }
                v.push(record(&mut rng, lane, p, is_dead));
            }
            values.insert(lane, v);
        }
        let mut cfg = CoreConfig::for_tests("sim");
        cfg.list_poll_min = [0, 2, 3, 5][rng.random_range(0..4)];
        cfg.batch_size = rng.random_range(1..=40);
        cfg.max_bytes = rng.random_range(300..=8_000);
        cfg.max_inflight = rng.random_range(1..=6);
        cfg.max_wait_ms = rng.random_range(10..=2_000);
        cfg.max_retries = rng.random_range(0..=3);
        cfg.job_timeout_ms = rng.random_range(2_000..=60_000);
        let harsh = rng.random_bool(0.3);
        let faults = Faults::random(&mut rng, harsh);
        let broker = MemBroker::new(values);
        let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
        let api = SimApi::new(seed, faults, clock.clone(), broker.clone());
        if mode == Mode::Batch {
            // Own draws, so the other modes' worlds stay as they were.
            let mut o = StdRng::seed_from_u64(seed ^ 0x0B7A_6E5D);
            cfg.retry_deadline_ms = [20_000, 72 * 3_600_000][o.random_range(0..2)];
            // A fifth of the seeds lose the provider for up to six minutes.
            let outage = o.random_bool(0.2).then(|| {
                let start =
                    clock.load(std::sync::atomic::Ordering::SeqCst) + o.random_range(0..20_000);
                let len = if o.random_bool(0.7) {
                    o.random_range(5_000..60_000)
                } else {
                    o.random_range(180_000..360_000)
                };
                (start, start + len)
            });
            api.set_outage(outage);
        }
        let health = {
            let c = clock.clone();
            Arc::new(Health::new(Arc::new(move || {
                c.load(std::sync::atomic::Ordering::SeqCst)
            })))
        };
        let n_instances = rng.random_range(1..=2);
        let dir = tempfile::Builder::new()
            .prefix("mlpredict-sim-")
            .tempdir_in(shm())
            .expect("a temp dir");
        let mut world = Self {
            mode,
            sync: Arc::new(SimSync::new(seed, rng.random_range(0.0..0.1))),
            ordered: rng.random_bool(0.5),
            max_concurrent: rng.random_range(1..=16),
            seed,
            crash_rate: [0.0, 0.002, 0.01, 0.05][rng.random_range(0..4)],
            crashes_left: rng.random_range(0..=12),
            move_rate: [0.0, 0.0, 0.005, 0.02][rng.random_range(0..4)],
            keep_records: rng.random_bool(0.5),
            read_burst: [1, 7, 64, 4096][rng.random_range(0..4)],
            rng,
            clock,
            exec: Arc::new(Exec::default()),
            broker,
            api,
            cfg,
            dead,
            lane_len,
            instances: (0..n_instances).map(|_| None).collect(),
            finished: vec![false; n_instances],
            incarnation: 0,
            dir,
            totals: Totals::default(),
            health,
            watch: budget::Watch::default(),
        };
        for i in 0..n_instances {
            world.start(i);
        }
        world.reassign();
        world
    }

    fn start(&mut self, i: usize) {
        self.incarnation += 1;
        let ledger = MemLedger::new(self.broker.clone(), i as u32, true);
        let opts = Options {
            read_burst: self.read_burst,
            idle_wait: Duration::from_millis(200),
            read_wait: Duration::ZERO,
            cancel_inflight: false,
            progress: false,
        };
        let env_rng = StdRng::seed_from_u64(self.seed ^ self.incarnation.wrapping_mul(0x9E37_79B9));
        let template = RequestTemplate::new(
            WireFormat::OpenAi,
            Task::Chat,
            "/v1/chat/completions",
            "sim-model",
            None,
            None,
            None,
        );
        let instance = match self.mode {
            Mode::Batch => {
                let dir: PathBuf = self.dir.path().join(format!("i{i}-{}", self.incarnation));
                std::fs::create_dir_all(&dir).unwrap();
                let (tx, rx) = channel();
                let caller = Caller {
                    api: Arc::new(self.api.clone()),
                    rt: self.exec.clone(),
                    tx,
                    counts: Arc::new(CallCounts::default()),
                    pipeline: "sim".into(),
                    epoch: 0,
                    background: Arc::default(),
                    health: self.health.clone(),
                    watch: Arc::default(),
                };
                let settings = BatchSettings {
                    core: self.cfg.clone(),
                    template,
                    format: WireFormat::OpenAi,
                    task: Task::Chat,
                    input_field: "text".into(),
                    output_field: "prediction".into(),
                    cleanup_remote: self.rng.random_bool(0.5),
                    api_key: None,
                    tokens: None,
                };
                let op = BatchOperator::new(
                    settings,
                    caller,
                    Spool::new(LocalDir::new(dir), self.keep_records),
                );
                let env = SimEnv::new(rx, self.clock.clone(), self.exec.clone(), env_rng);
                Instance::Batch(Driver::new(ledger, op, env, opts))
            }
            Mode::Sync => {
                let (tx, rx) = channel();
                let caller = SyncCaller::new(self.sync.clone(), self.exec.clone(), tx);
                let settings = SyncSettings {
                    pipeline: "sim".into(),
                    ordered: self.ordered,
                    limits: sync_core::Limits::new(
                        self.max_concurrent,
                        self.ordered,
                        self.keep_records,
                    ),
                    template,
                    input_field: "text".into(),
                    output_field: "prediction".into(),
                };
                let op = SyncOperator::new(settings, caller);
                let env = SimEnv::new(rx, self.clock.clone(), self.exec.clone(), env_rng);
                Instance::Sync(Driver::new(ledger, op, env, opts))
            }
        };
        self.instances[i] = Some(instance);
    }

    /// The lanes go to the instances alive now.
    fn reassign(&mut self) {
        let mut alive: Vec<u32> = (0..self.instances.len())
            .filter(|&i| self.instances[i].is_some() && !self.finished[i])
            .map(|i| i as u32)
            .collect();
        if self.rng.random_bool(0.5) {
            alive.reverse();
        }
        self.broker.assign(&alive);
    }

    fn crash(&mut self, i: usize) {
        self.instances[i] = None;
        self.totals.crashes += 1;
        if self.instances.len() > 1 && self.rng.random_bool(0.5) {
            // The others take its lanes while it is down.
            self.reassign();
        }
    }

    pub fn run(&mut self) {
        let max_steps = 400_000;
        loop {
            self.totals.steps += 1;
            assert!(
                self.totals.steps < max_steps,
                "no end after {max_steps} steps"
            );
            for i in 0..self.instances.len() {
                if self.finished[i] {
                    continue;
                }
                if self.instances[i].is_none() {
                    self.start(i);
                    self.reassign();
                }
                let d = self.instances[i].as_mut().unwrap();
                match catch_unwind(AssertUnwindSafe(|| d.step())) {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => {
                        // A bounded instance whose lanes are done leaves
                        // the group; the others take its (ended) lanes.
                        self.finished[i] = true;
                        self.instances[i] = None;
                        self.reassign();
                    }
                    Ok(Err(e)) => panic!("instance {i} failed: {e:#}"),
                    Err(p) if p.downcast_ref::<&str>() == Some(&CRASH) => {
                        self.totals.crashes_after_commit += 1;
                        self.crash(i);
                    }
                    Err(p) => std::panic::resume_unwind(p),
                }
                if self.mode == Mode::Batch {
                    self.watch_budgets();
                }
            }
            if self.finished.iter().all(|&f| f) {
                break;
            }
            if self.crashes_left == 0 {
                continue;
            }
            if self.rng.random_bool(self.crash_rate) {
                self.crashes_left = self.crashes_left.saturating_sub(1);
                let i = self.rng.random_range(0..self.instances.len());
                if self.rng.random_bool(0.3) {
                    self.broker.lock().crash_after_commit = true;
                } else if self.instances[i].is_some() {
                    self.crash(i);
                }
            }
            if self.rng.random_bool(self.move_rate) {
                self.crashes_left = self.crashes_left.saturating_sub(1);
                // A rebalance: instances learn of it at their next turn;
                // until then their commits are refused (zombies).
                self.totals.lane_moves += 1;
                if self.rng.random_bool(0.5) {
                    self.reassign();
                } else {
                    self.broker.lock().move_before_commit = true;
                }
            }
            if self.rng.random_bool(self.crash_rate / 2.0) {
                self.crashes_left = self.crashes_left.saturating_sub(1);
                self.broker.lock().abort_next = true;
            }
        }
    }

    fn watch_budgets(&mut self) {
        let d = self.broker.lock();
        let books = self.api.books();
        let now = self.clock.load(std::sync::atomic::Ordering::SeqCst);
        self.watch.observe(
            &d.outputs,
            now,
            &books.first_upload,
            self.cfg.retry_deadline_ms,
            self.api.outage().map(|o| o.1),
        );
    }

    pub fn check(&mut self) {
        let d = self.broker.lock();
        let mut books = self.api.books();
        if self.mode == Mode::Sync {
            books.answered = self.sync.answered.lock().unwrap().clone();
        }
        let mut seen: BTreeMap<(LaneId, Position), u32> = BTreeMap::new();
        for (key, line) in &d.outputs {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_else(|e| {
                panic!(
                    "output line is not JSON ({e}): {}",
                    String::from_utf8_lossy(line)
                )
            });
            let m = &v["ml_predict"];
            let cid = m["custom_id"].as_str().expect("custom_id");
            let (lane, pos) = batch_core::parse_custom_id(cid).expect("our custom_id");
            assert!(
                !self.dead.contains(&(lane, pos)),
                "dead record {cid} emitted as output"
            );
            assert_eq!(
                v["id"].as_str(),
                Some(cid),
                "output joined with the wrong record"
            );
            assert_eq!(
                key.as_deref(),
                Some(format!("k{pos}").as_bytes()),
                "key of {cid}"
            );
            *seen.entry((lane, pos)).or_default() += 1;
            match m["status"].as_str() {
                Some("ok") => {
                    assert_eq!(
                        v["prediction"].as_str(),
                        Some(format!("answer {cid}").as_str())
                    );
                    assert!(
                        books.answered.contains_key(&(lane, pos)),
                        "{cid} ok but never answered"
                    );
                }
                Some("error") => self.totals.error_outputs += 1,
                other => panic!("status {other:?} of {cid}"),
            }
            self.totals.retried_records += m["retries"].as_u64().unwrap_or(0).min(1);
        }
        let mut dead_seen: BTreeMap<(LaneId, Position), u32> = BTreeMap::new();
        for (_, line) in &d.dead_letters {
            let v: serde_json::Value = serde_json::from_slice(line).expect("a dead letter is JSON");
            let lane = v["partition"].as_u64().expect("partition") as LaneId;
            let pos = v["offset"].as_u64().expect("offset");
            assert!(
                self.dead.contains(&(lane, pos)),
                "usable record {lane}-{pos} dead-lettered"
            );
            *dead_seen.entry((lane, pos)).or_default() += 1;
        }
        for (&lane, &n) in &self.lane_len {
            for p in 0..n {
                let (got, want) = if self.dead.contains(&(lane, p)) {
                    (
                        dead_seen.get(&(lane, p)).copied().unwrap_or(0),
                        "dead letter",
                    )
                } else {
                    (seen.get(&(lane, p)).copied().unwrap_or(0), "output")
                };
                assert_eq!(got, 1, "record {lane}-{p}: {got} times in the {want}s");
            }
            self.totals.records += n;
        }
        for ((number, attempt), n) in &books.creates {
            assert_eq!(*n, 1, "batch {number} attempt {attempt} created {n} times");
        }
        // Sync mode sends again what was in flight at a crash: answers
        // may repeat there, outputs may not.
        if self.mode == Mode::Batch {
            for ((lane, p), n) in &books.answered {
                assert_eq!(*n, 1, "record {lane}-{p} answered {n} times: paid twice");
            }
        }
        self.totals.lost_creates += books.lost_creates;
        self.totals.adoptions += books.adoptions;
        self.totals.quota_failures += books.quota;
        self.totals.expired += books.expired;
        self.totals.cancelled += books.cancelled;
        self.totals.lists += books.lists;
        self.totals.download_failures += books.download_failures;
        self.totals.outages += u64::from(self.api.outage().is_some());
        self.totals.outage_refusals += books.outage_refusals;
        self.totals.out_of_time += self.watch.out_of_time;
        self.totals.outage_survivors += self.watch.survivors;
        let health = self.health.counts();
        self.totals.health_warnings += health.warnings;
        self.totals.health_suppressed += health.suppressed;
        // Quiet: one warning per outage, then one per WARN_EVERY at most.
        let outage_ms = self.api.outage().map_or(0, |o| o.1 - o.0);
        let allowed = health.outages * (2 + outage_ms / runtime::batch::health::WARN_EVERY);
        assert!(
            health.warnings <= allowed,
            "{} outage warnings for {} outages of {outage_ms} ms",
            health.warnings,
            health.outages
        );
        self.totals.fenced_commits += d.fenced;
        self.totals.aborted_commits += d.aborts;
    }

    pub fn totals(&self) -> Totals {
        self.totals.clone()
    }
}

/// Batch files live in memory too, where there is a tmpfs.
fn shm() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}
