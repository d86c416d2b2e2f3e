//! Provider calls, run on the async runtime; each answer comes back to the
//! pipeline loop as a message. Counting happens here so that every call is
//! seen once.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use batch_api::{ApiError, BatchApi, BatchMeta};
use batch_core::{Batch, Budget, Event};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::health::Health;
use super::watch::Watch;
use crate::provider::{failure, remote};

pub enum Msg {
    Core(Event),
    Downloaded {
        batch: Batch,
        budget: Budget,
        retry_id: u64,
        retry_number: String,
        /// The result files' bytes (a file gone at the provider is left out).
        results: Results,
    },
}

/// Batches whose results may be in memory at once, downloading or waiting
/// for their join (process-wide). Joins run one at a time, so two let one
/// batch download while another is joined, at twice the memory of the one
/// file the join read at a time when downloads went to disk.
static IN_MEMORY: Semaphore = Semaphore::const_new(2);

/// A batch's downloaded result files; the memory is accounted for until
/// this is dropped.
pub struct Results {
    files: Vec<Vec<u8>>,
    _permit: SemaphorePermit<'static>,
}

impl std::ops::Deref for Results {
    type Target = [Vec<u8>];
    fn deref(&self) -> &[Vec<u8>] {
        &self.files
    }
}

#[derive(Default, Debug)]
pub struct CallCounts {
    pub upload: AtomicU64,
    pub create: AtomicU64,
    pub find: AtomicU64,
    pub poll: AtomicU64,
    pub list: AtomicU64,
    pub download: AtomicU64,
    pub cancel: AtomicU64,
    pub delete: AtomicU64,
    pub errors: AtomicU64,
}

impl CallCounts {
    pub fn total(&self) -> u64 {
        [
            &self.upload,
            &self.create,
            &self.find,
            &self.poll,
            &self.download,
            &self.cancel,
            &self.delete,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

/// Runs a call's future: on tokio in a pipeline, on a deterministic
/// executor in the simulation.
pub trait Spawn: Send + Sync {
    fn spawn(&self, task: Pin<Box<dyn Future<Output = ()> + Send + 'static>>);
}

impl Spawn for tokio::runtime::Handle {
    fn spawn(&self, task: Pin<Box<dyn Future<Output = ()> + Send + 'static>>) {
        drop(tokio::runtime::Handle::spawn(self, task));
    }
}

#[derive(Clone)]
pub struct Caller {
    pub api: Arc<dyn BatchApi>,
    pub rt: Arc<dyn Spawn>,
    pub tx: Sender<(u64, Msg)>,
    pub counts: Arc<CallCounts>,
    pub pipeline: String,
    /// Answers carry the epoch they were asked in; a shell that rebuilt its
    /// core (Kafka rebalance) drops answers of older epochs.
    pub epoch: u64,
    /// Best-effort calls nobody waits for (remote deletes) still running.
    pub background: Arc<std::sync::atomic::AtomicUsize>,
    /// Whether the provider answers (`provider_up`, quiet warnings).
    pub health: Arc<Health>,
    /// Request progress and errors by code, for the status page.
    pub watch: Arc<Watch>,
}

impl Caller {
    /// Count one call's outcome, in the metrics and the provider's health.
    fn note<T>(&self, call: &'static str, r: &Result<T, ApiError>) {
        metrics::counter!("api_calls_total", "call" => call).increment(1);
        if let Err(e) = r {
            self.watch.note_error(call, e);
            self.counts.errors.fetch_add(1, Ordering::Relaxed);
            let class = format!("{:?}", e.class).to_lowercase();
            metrics::counter!("api_errors_total", "call" => call, "class" => class).increment(1);
        }
        self.health.note(call, r);
    }

    /// Give best-effort calls still running a moment to finish before exit.
    pub fn drain(&self, at_most: std::time::Duration) {
        let deadline = std::time::Instant::now() + at_most;
        while self.background.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    pub fn meta(&self, batch: &Batch) -> BatchMeta {
        BatchMeta {
            pipeline: self.pipeline.clone(),
            batch_number: batch.number.clone(),
            attempt: batch.attempt,
        }
    }

    fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = Msg> + Send + 'static,
    {
        let tx = self.tx.clone();
        let epoch = self.epoch;
        self.rt.spawn(Box::pin(async move {
            let _ = tx.send((epoch, fut.await));
        }));
    }

    pub fn upload(&self, id: u64, path: PathBuf, file_name: String) {
        let c = self.clone();
        c.counts.upload.fetch_add(1, Ordering::Relaxed);
        self.spawn(async move {
            let r = c.api.upload(&path, &file_name).await;
            c.note("upload", &r);
            Msg::Core(Event::Uploaded {
                id,
                result: r.map_err(|e| failure(&e)),
            })
        });
    }

    pub fn create(&self, batch: Batch, path: PathBuf) {
        let c = self.clone();
        c.counts.create.fetch_add(1, Ordering::Relaxed);
        self.spawn(async move {
            let meta = c.meta(&batch);
            let r = c.api.create(batch.file_id.as_deref(), &path, &meta).await;
            c.note("create", &r);
            if let Ok(b) = &r {
                c.watch.note_batch(b);
                crate::failpoint::hit("after-create");
                metrics::counter!("batch_jobs_submitted_total").increment(1);
            }
            Msg::Core(Event::Created {
                id: batch.id,
                result: r.map(remote).map_err(|e| failure(&e)),
            })
        });
    }

    pub fn find(&self, batch: Batch, not_before_ms: u64) {
        let c = self.clone();
        c.counts.find.fetch_add(1, Ordering::Relaxed);
        self.spawn(async move {
            let meta = c.meta(&batch);
            let r = c.api.find(&meta, (not_before_ms / 1000) as i64).await;
            c.note("find", &r);
            if let Ok(Some(found)) = &r {
                tracing::info!(batch = %batch.number, attempt = batch.attempt, remote = %found.id, "adopting a batch created before a crash");
                metrics::counter!("batch_jobs_adopted_total").increment(1);
            }
            Msg::Core(Event::Found { id: batch.id, result: r.map(|o| o.map(remote)).map_err(|e| failure(&e)) })
        });
    }

    pub fn poll(&self, id: u64, remote_id: String) {
        let c = self.clone();
        c.counts.poll.fetch_add(1, Ordering::Relaxed);
        self.spawn(async move {
            let r = c.api.get(&remote_id).await;
            c.note("poll", &r);
            if let Ok(b) = &r {
                c.watch.note_batch(b);
            }
            Msg::Core(Event::Polled {
                id,
                result: r.map(remote).map_err(|e| failure(&e)),
            })
        });
    }

    /// Poll many batches with newest-first listings: one call reports up to
    /// 100 of them. Batches not found within a few pages are polled singly.
    pub fn poll_many(&self, batches: Vec<(u64, String)>) {
        let c = self.clone();
        let (tx, epoch) = (self.tx.clone(), self.epoch);
        self.rt.spawn(Box::pin(async move {
            let mut wanted: std::collections::HashMap<String, u64> = batches
                .into_iter()
                .map(|(id, remote)| (remote, id))
                .collect();
            let max_pages = wanted.len() / 100 + 3;
            let mut after: Option<String> = None;
            for _ in 0..max_pages {
                c.counts.list.fetch_add(1, Ordering::Relaxed);
                let r = c.api.list(after.as_deref(), 100).await;
                c.note("list", &r);
                let Ok(page) = r else { break };
                for b in page.batches {
                    if let Some(id) = wanted.remove(&b.id) {
                        c.watch.note_batch(&b);
                        let _ = tx.send((
                            epoch,
                            Msg::Core(Event::Polled {
                                id,
                                result: Ok(remote(b)),
                            }),
                        ));
                    }
                }
                match page.next_after {
                    Some(next) if !wanted.is_empty() => after = Some(next),
                    _ => break,
                }
            }
            for (remote_id, id) in wanted {
                c.poll(id, remote_id);
            }
        }));
    }

    pub fn cancel(&self, id: u64, remote_id: String) {
        let c = self.clone();
        c.counts.cancel.fetch_add(1, Ordering::Relaxed);
        self.spawn(async move {
            let r = c.api.cancel(&remote_id).await;
            c.note("cancel", &r);
            Msg::Core(Event::CancelRequested {
                id,
                result: r.map(drop).map_err(|e| failure(&e)),
            })
        });
    }

    /// Download a finished batch's result files into memory, then hand it
    /// back for the join. Nothing goes to disk: after a crash the provider
    /// still has them. A file that is gone (404) counts as empty: its
    /// requests are then missing and retried.
    pub fn download(
        &self,
        batch: Batch,
        budget: Budget,
        retry_id: u64,
        retry_number: String,
        files: Vec<String>,
    ) {
        let c = self.clone();
        self.spawn(async move {
            let permit = IN_MEMORY.acquire().await.expect("never closed");
            let mut results = Vec::with_capacity(files.len());
            for file in files {
                c.counts.download.fetch_add(1, Ordering::Relaxed);
                let r = c.api.fetch(&file).await;
                c.note("download", &r);
                match r {
                    Ok(bytes) => results.push(bytes),
                    Err(e) if e.class == batch_api::ErrorClass::NotFound => {
                        tracing::warn!(batch = %batch.number, file, "result file is gone at the provider; its requests will be retried");
                    }
                    Err(e) => return Msg::Core(Event::EmitFailed { id: batch.id, failure: failure(&e) }),
                }
            }
            let results = Results { files: results, _permit: permit };
            Msg::Downloaded { batch, budget, retry_id, retry_number, results }
        });
    }

    /// Cancel a provider batch and wait for the answer (at shutdown).
    pub fn cancel_now(&self, remote_id: &str) -> Result<(), ApiError> {
        let api = self.api.clone();
        let remote_id = remote_id.to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        self.rt.spawn(Box::pin(async move {
            let _ = tx.send(api.cancel(&remote_id).await.map(drop));
        }));
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| Err(ApiError::permanent("no answer to the cancel in 60 s")))
    }

    /// Delete provider files of an emitted batch (best effort).
    pub fn delete_files(&self, files: Vec<String>) {
        if files.is_empty() {
            return;
        }
        let c = self.clone();
        c.background.fetch_add(1, Ordering::SeqCst);
        self.rt.spawn(Box::pin(async move {
            for f in files {
                c.counts.delete.fetch_add(1, Ordering::Relaxed);
                let r = c.api.delete_file(&f).await;
                c.note("delete", &r);
            }
            c.background.fetch_sub(1, Ordering::SeqCst);
        }));
    }
}
