//! In-memory state: files, batches/jobs, per-request retry counts.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

use crate::config::MockConfig;
use crate::faults::Faults;
use crate::lifecycle::{Batch, Env};
use crate::stats::StatsRecorder;
use crate::util::{unix_now, IdGen};

/// Files expire 30 days after creation unless told otherwise.
pub(crate) const FILE_TTL_SECS: i64 = 30 * 24 * 3600;

/// The File object, with every field the SDK knows.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct FileObject {
    pub id: String,
    pub object: &'static str,
    pub bytes: u64,
    pub created_at: i64,
    pub filename: String,
    pub purpose: String,
    pub status: &'static str,
    pub expires_at: Option<i64>,
    pub status_details: Option<String>,
}

pub(crate) struct FileEntry {
    pub obj: FileObject,
    pub bytes: Bytes,
}

#[derive(Default)]
pub(crate) struct FileTable {
    pub map: HashMap<String, FileEntry>,
    /// Creation order (deleted ids removed).
    pub order: Vec<String>,
    seq: u64,
}

impl FileTable {
    pub(crate) fn add(
        &mut self,
        ids: &IdGen,
        filename: String,
        purpose: &str,
        bytes: Bytes,
        ttl_secs: Option<i64>,
    ) -> FileObject {
        self.seq += 1;
        let id = ids.base62("file-", self.seq);
        let created_at = unix_now();
        let obj = FileObject {
            id: id.clone(),
            object: "file",
            bytes: bytes.len() as u64,
            created_at,
            filename,
            purpose: purpose.to_owned(),
            status: "processed",
            expires_at: Some(created_at + ttl_secs.unwrap_or(FILE_TTL_SECS)),
            status_details: None,
        };
        self.map.insert(
            id.clone(),
            FileEntry {
                obj: obj.clone(),
                bytes,
            },
        );
        self.order.push(id);
        obj
    }

    pub(crate) fn remove(&mut self, id: &str) -> bool {
        if self.map.remove(id).is_none() {
            return false;
        }
        self.order.retain(|x| x != id);
        true
    }
}

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
    pub rpm_window: Mutex<VecDeque<Instant>>,
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
        let batch = store.batches.get_mut(id)?;
        let mut env = self.env(&mut store.files, &mut store.seen);
        batch.advance(now, &mut env);
        Some(f(batch, &mut env))
    }

    pub(crate) fn env<'a>(
        &'a self,
        files: &'a mut FileTable,
        seen: &'a mut HashMap<u64, u32>,
    ) -> Env<'a> {
        Env {
            files,
            seen,
            faults: &self.faults,
            stats: &self.stats,
            ids: &self.ids,
            cfg: &self.cfg,
        }
    }
}
