//! In-memory state: files, batches/jobs, per-request retry counts, and the
//! synchronous endpoints' rate window.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::batch::{Batch, Env};
use super::faults::Faults;
use super::files::FileTable;
use crate::config::MockConfig;
use crate::stats::StatsRecorder;
use crate::util::IdGen;

#[derive(Default)]
pub(crate) struct Store {
    pub files: FileTable,
    /// OpenAI batches and generic jobs, by id.
    pub batches: HashMap<String, Batch>,
    pub batch_order: Vec<String>,
    pub job_order: Vec<String>,
    /// Anthropic message batches, creation order (deleted ones removed).
    pub message_batch_order: Vec<String>,
    pub seq: u64,
    /// Times each (pipeline, custom_id) hash was executed (per-request faults).
    pub seen: HashMap<u64, u32>,
    /// Prompt tokens of the batches that passed validation, while they run.
    pub enqueued: super::batch::Enqueued,
}

/// Everything a handler needs.
pub(crate) struct AppState {
    pub cfg: MockConfig,
    pub addr: SocketAddr,
    pub store: Mutex<Store>,
    pub stats: StatsRecorder,
    pub faults: Faults,
    pub ids: IdGen,
    /// Start times of the sync requests of the last minute (`--rpm`).
    rpm_window: Mutex<VecDeque<Instant>>,
}

pub(crate) type Shared = Arc<AppState>;

impl AppState {
    pub(crate) fn new(cfg: MockConfig, addr: SocketAddr) -> Self {
        AppState {
            faults: Faults::new(cfg.faults.clone(), cfg.seed),
            ids: IdGen::new(rand::random()),
            cfg,
            addr,
            store: Mutex::new(Store::default()),
            stats: StatsRecorder::default(),
            rpm_window: Mutex::new(VecDeque::new()),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().expect("store lock")
    }

    /// Runs `f` on the batch `id` after bringing it up to date.
    pub(crate) fn with_batch<R>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Batch, &mut Env<'_>) -> R,
    ) -> Option<R> {
        let now = Instant::now();
        let mut guard = self.lock();
        let store = &mut *guard;
        self.advance_earlier(store, now);
        let batch = store.batches.get_mut(id)?;
        let mut env = self.env(&mut store.files, &mut store.seen, &mut store.enqueued);
        batch.advance(now, &mut env);
        Some(f(batch, &mut env))
    }

    /// Brings the batches `ids` up to date at `now` and maps each, under
    /// the caller's lock (ids no longer known are skipped).
    pub(crate) fn advance_each<R>(
        &self,
        store: &mut Store,
        ids: &[String],
        now: Instant,
        mut f: impl FnMut(&Batch, &MockConfig) -> R,
    ) -> Vec<R> {
        self.advance_earlier(store, now);
        let mut env = self.env(&mut store.files, &mut store.seen, &mut store.enqueued);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(b) = store.batches.get_mut(id) else {
                continue;
            };
            b.advance(now, &mut env);
            out.push(f(b, env.cfg));
        }
        out
    }

    /// With an enqueued-token limit, a batch's validation depends on the
    /// batches created before it: bring every OpenAI batch up to date, in
    /// creation order, so each one sees the others as they were then.
    fn advance_earlier(&self, store: &mut Store, now: Instant) {
        if self.cfg.max_enqueued_tokens.is_none() {
            return;
        }
        let mut env = self.env(&mut store.files, &mut store.seen, &mut store.enqueued);
        for id in &store.batch_order {
            if let Some(b) = store.batches.get_mut(id) {
                b.advance(now, &mut env);
            }
        }
    }

    fn env<'a>(
        &'a self,
        files: &'a mut FileTable,
        seen: &'a mut HashMap<u64, u32>,
        enqueued: &'a mut super::batch::Enqueued,
    ) -> Env<'a> {
        Env {
            files,
            seen,
            enqueued,
            faults: &self.faults,
            stats: &self.stats,
            ids: &self.ids,
            cfg: &self.cfg,
        }
    }

    /// Admits one synchronous request into the sliding window of `--rpm`
    /// (`--rpm-window`, one minute by default), or tells how long until a
    /// slot frees up.
    pub(crate) fn admit_sync(&self) -> Result<(), Duration> {
        let Some(rpm) = self.cfg.rpm else {
            return Ok(());
        };
        let now = Instant::now();
        let span = self.cfg.rpm_window;
        let mut window = self.rpm_window.lock().expect("rpm lock");
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= span)
        {
            window.pop_front();
        }
        if window.len() >= rpm as usize {
            let oldest = *window.front().expect("window is full");
            self.stats.fault("rpm_limit");
            return Err(span.saturating_sub(now.duration_since(oldest)));
        }
        window.push_back(now);
        Ok(())
    }
}
