//! A simulated Batch API behind the real `BatchApi` trait, so the real
//! call code (`Caller`: counting, failure mapping, list polling, the
//! download permit) runs in the simulation. Time-driven life cycle,
//! faults before and after acting, lost answers, quota and validation
//! failures, expiry with partial results, cancellation, per-request
//! failures, and the books that prove nothing was paid twice. It also
//! checks write-ahead: a batch is uploaded or created only once the ledger
//! holds what the call depends on.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use batch_api::{
    ApiError, BatchApi, BatchMeta, BatchPage, DownloadTo, Downloaded, ErrorClass, Limits,
    RemoteBatch, RemoteBatchError, RemoteStatus,
};
use batch_core::sim::{Fate, Faults};
use batch_core::{parse_custom_id, LaneId, Millis, Position};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use runtime::ledger::mem::MemBroker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    Permanent,
    Retriable,
    Missing,
}

#[derive(Debug)]
struct SimBatch {
    meta: BatchMeta,
    members: Vec<(LaneId, Position)>,
    created_at: Millis,
    done_at: Millis,
    fate: Fate,
    cancel_at: Option<Millis>,
    results: Option<Vec<((LaneId, Position), Answer)>>,
}

#[derive(Debug, Default, Clone)]
pub struct Books {
    pub creates: BTreeMap<(String, u32), u32>,
    pub answered: BTreeMap<(LaneId, Position), u32>,
    pub lost_creates: u64,
    pub adoptions: u64,
    pub quota: u64,
    pub invalid: u64,
    pub expired: u64,
    pub cancelled: u64,
    pub lists: u64,
    pub download_failures: u64,
    /// When each record was first uploaded (true time, whatever the
    /// pipeline remembers after crashes).
    pub first_upload: BTreeMap<(LaneId, Position), Millis>,
    /// Calls refused during the outage.
    pub outage_refusals: u64,
}

struct Inner {
    rng: StdRng,
    faults: Faults,
    /// `[start, end)`: every call is refused (429, 503 or no connection),
    /// and batches running at its start expire then.
    outage: Option<(Millis, Millis)>,
    next: u64,
    files: BTreeMap<String, Vec<(LaneId, Position)>>,
    batches: BTreeMap<String, SimBatch>,
    /// Batch ids in creation order.
    order: Vec<String>,
    books: Books,
}

#[derive(Clone)]
pub struct SimApi {
    inner: Arc<Mutex<Inner>>,
    clock: Arc<AtomicU64>,
    broker: MemBroker,
}

fn err(class: ErrorClass, code: &str) -> ApiError {
    let mut e = ApiError::new(class, format!("simulated {code}"));
    e.code = Some(code.to_owned());
    e.retry_after = Some(std::time::Duration::from_millis(50));
    e
}

/// The custom_ids of a request file.
fn members(path: &Path) -> Vec<(LaneId, Position)> {
    let text = std::fs::read_to_string(path).expect("a request file");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a request line is JSON");
            let id = v["custom_id"].as_str().expect("a custom_id");
            parse_custom_id(id).expect("a custom_id of ours")
        })
        .collect()
}

impl SimApi {
    pub fn new(seed: u64, faults: Faults, clock: Arc<AtomicU64>, broker: MemBroker) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                rng: StdRng::seed_from_u64(seed ^ 0x51AB_A7C4),
                faults,
                outage: None,
                next: 0,
                files: BTreeMap::new(),
                batches: BTreeMap::new(),
                order: Vec::new(),
                books: Books::default(),
            })),
            clock,
            broker,
        }
    }

    pub fn set_outage(&self, outage: Option<(Millis, Millis)>) {
        self.inner.lock().unwrap().outage = outage;
    }

    pub fn outage(&self) -> Option<(Millis, Millis)> {
        self.inner.lock().unwrap().outage
    }

    pub fn books(&self) -> Books {
        self.inner.lock().unwrap().books.clone()
    }

    fn now(&self) -> Millis {
        self.clock.load(Ordering::SeqCst)
    }

    /// Write-ahead: the ledger holds this batch, at this attempt.
    fn check_durable(&self, number: &str, attempt: Option<u32>, file_id: Option<&str>) {
        let d = self.broker.lock();
        let row = d
            .lanes
            .values()
            .flat_map(|l| l.batches.values())
            .find(|b| b.number == number);
        let Some(row) = row else {
            panic!("a call for batch {number} went out before the batch was committed");
        };
        if let Some(a) = attempt {
            assert_eq!(
                row.attempt, a,
                "create of {number} attempt {a} before the attempt was committed"
            );
        }
        if let Some(f) = file_id {
            assert_eq!(
                row.file_id.as_deref(),
                Some(f),
                "create of {number} before its file id was committed"
            );
        }
    }
}

impl Inner {
    /// During the outage: refused, before acting.
    fn down(&mut self, now: Millis) -> Result<(), ApiError> {
        match self.outage {
            Some((start, end)) if (start..end).contains(&now) => {
                self.books.outage_refusals += 1;
                Err(match self.rng.random_range(0..3) {
                    0 => err(ErrorClass::Transient, "rate_limit_exceeded"),
                    1 => err(ErrorClass::Transient, "service_unavailable"),
                    _ => err(ErrorClass::Transient, "connection_refused"),
                })
            }
            _ => Ok(()),
        }
    }

    fn roll(&mut self, fault: fn(&Faults) -> f64) -> bool {
        let p = fault(&self.faults);
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    fn view(&mut self, id: &str, now: Millis) -> RemoteBatch {
        let b = &self.batches[id];
        let failed = |code: &str, message: &str| {
            (
                RemoteStatus::Failed,
                vec![RemoteBatchError {
                    code: code.into(),
                    message: message.into(),
                    line: None,
                }],
            )
        };
        let (status, errors) = match (b.fate, b.cancel_at) {
            (Fate::Quota, _) if now >= b.created_at + 20 => {
                failed("token_limit_exceeded", "enqueued token limit reached")
            }
            (Fate::Invalid, _) if now >= b.created_at + 20 => {
                failed("invalid_json_line", "line 1 is not valid json")
            }
            (Fate::Quota | Fate::Invalid, _) => (RemoteStatus::Validating, vec![]),
            (_, Some(c)) if now >= c && c < b.done_at => (RemoteStatus::Cancelled, vec![]),
            (_, Some(_)) if now < b.done_at => (RemoteStatus::Cancelling, vec![]),
            (Fate::Expire, _) if now >= b.done_at => (RemoteStatus::Expired, vec![]),
            (Fate::Complete, _) if now >= b.done_at => (RemoteStatus::Completed, vec![]),
            _ => (RemoteStatus::InProgress, vec![]),
        };
        let settles = matches!(
            status,
            RemoteStatus::Completed | RemoteStatus::Expired | RemoteStatus::Cancelled
        );
        if settles && self.batches[id].results.is_none() {
            self.settle(id, status == RemoteStatus::Completed);
        }
        let b = &self.batches[id];
        let has = b.results.is_some();
        RemoteBatch {
            id: id.to_owned(),
            status,
            output_file: has.then(|| format!("{id}-out")),
            error_file: has.then(|| format!("{id}-err")),
            errors,
            counts: None,
            created_at: Some((b.created_at / 1000) as i64),
            meta: Some(b.meta.clone()),
            total_tokens: None,
        }
    }

    fn settle(&mut self, id: &str, completed: bool) {
        let (retriable, permanent) = (self.faults.req_retriable, self.faults.req_permanent);
        let members = self.batches[id].members.clone();
        let mut results = Vec::with_capacity(members.len());
        for m in members {
            let finished = completed || self.rng.random_bool(0.5);
            let answer = if !finished {
                if self.rng.random_bool(0.8) {
                    Answer::Retriable
                } else {
                    Answer::Missing
                }
            } else if self.rng.random_bool(retriable) {
                Answer::Retriable
            } else if self.rng.random_bool(permanent) {
                Answer::Permanent
            } else {
                Answer::Ok
            };
            if answer == Answer::Ok {
                *self.books.answered.entry(m).or_default() += 1;
            }
            results.push((m, answer));
        }
        // Results come back in any order.
        for i in (1..results.len()).rev() {
            let j = self.rng.random_range(0..=i);
            results.swap(i, j);
        }
        self.batches.get_mut(id).unwrap().results = Some(results);
    }

    fn render(&self, file: &str) -> Option<Vec<u8>> {
        let (id, which) = file.rsplit_once('-')?;
        let results = self.batches.get(id)?.results.as_ref()?;
        let mut out = Vec::new();
        for &((lane, pos), answer) in results {
            let cid = format!("{lane}-{pos}");
            let line = match (which, answer) {
                ("out", Answer::Ok) => serde_json::json!({
                    "id": format!("r-{cid}"), "custom_id": cid,
                    "response": {"status_code": 200, "body": {
                        "choices": [{"message": {"role": "assistant", "content": format!("answer {cid}")}}],
                        "usage": {"total_tokens": 3}}},
                    "error": null}),
                ("out", Answer::Permanent) => serde_json::json!({
                    "id": format!("r-{cid}"), "custom_id": cid,
                    "response": {"status_code": 400, "body": {"error": {"code": "invalid_request", "message": "simulated 400"}}},
                    "error": null}),
                ("err", Answer::Retriable) => serde_json::json!({
                    "id": format!("r-{cid}"), "custom_id": cid, "response": null,
                    "error": {"code": "batch_expired", "message": "simulated expiry"}}),
                _ => continue,
            };
            serde_json::to_writer(&mut out, &line).unwrap();
            out.push(b'\n');
        }
        Some(out)
    }
}

#[async_trait]
impl BatchApi for SimApi {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn limits(&self) -> Limits {
        Limits {
            max_requests: 50_000,
            max_bytes: 200 << 20,
        }
    }

    async fn upload(&self, path: &Path, file_name: &str) -> Result<Option<String>, ApiError> {
        let number = file_name
            .rsplit_once("-a")
            .map_or(file_name, |(n, _)| n)
            .to_owned();
        self.check_durable(&number, None, None);
        let now = self.now();
        let mut s = self.inner.lock().unwrap();
        let uploaded = members(path);
        for &m in &uploaded {
            s.books.first_upload.entry(m).or_insert(now);
        }
        s.down(now)?;
        if s.roll(|f| f.upload_fail) {
            return Err(err(ErrorClass::Transient, "rate_limit_exceeded"));
        }
        s.next += 1;
        let id = format!("file-{}", s.next);
        s.files.insert(id.clone(), uploaded);
        Ok(Some(id))
    }

    async fn create(
        &self,
        file_id: Option<&str>,
        path: &Path,
        meta: &BatchMeta,
    ) -> Result<RemoteBatch, ApiError> {
        self.check_durable(&meta.batch_number, Some(meta.attempt), file_id);
        let now = self.now();
        let mut s = self.inner.lock().unwrap();
        s.down(now)?;
        if s.roll(|f| f.create_429) {
            return Err(err(ErrorClass::Transient, "rate_limit_exceeded"));
        }
        if s.roll(|f| f.create_5xx) {
            return Err(err(ErrorClass::Ambiguous, "server_error"));
        }
        let members = match file_id {
            Some(f) => s
                .files
                .get(f)
                .cloned()
                .expect("create with an uploaded file"),
            None => members(path),
        };
        s.next += 1;
        let id = format!("batch_{}", s.next);
        let Inner { faults, rng, .. } = &mut *s;
        let (mut fate, mut run) = faults.fate(rng);
        if let Some((start, _)) = s.outage {
            if (now..now + run).contains(&start) && fate == Fate::Complete {
                fate = Fate::Expire;
                run = start - now;
            }
        }
        s.books.quota += u64::from(fate == Fate::Quota);
        s.books.invalid += u64::from(fate == Fate::Invalid);
        s.books.expired += u64::from(fate == Fate::Expire);
        *s.books
            .creates
            .entry((meta.batch_number.clone(), meta.attempt))
            .or_default() += 1;
        s.batches.insert(
            id.clone(),
            SimBatch {
                meta: meta.clone(),
                members,
                created_at: now,
                done_at: now + run,
                fate,
                cancel_at: None,
                results: None,
            },
        );
        s.order.push(id.clone());
        if s.roll(|f| f.create_lost) {
            s.books.lost_creates += 1;
            return Err(err(ErrorClass::Ambiguous, "connection_reset"));
        }
        Ok(s.view(&id, now))
    }

    async fn get(&self, batch_id: &str) -> Result<RemoteBatch, ApiError> {
        let now = self.now();
        let mut s = self.inner.lock().unwrap();
        s.down(now)?;
        if s.roll(|f| f.poll_fail) {
            return Err(err(ErrorClass::Ambiguous, "server_error"));
        }
        if !s.batches.contains_key(batch_id) {
            return Err(err(ErrorClass::NotFound, "not_found"));
        }
        Ok(s.view(batch_id, now))
    }

    async fn list(&self, after: Option<&str>, limit: u32) -> Result<BatchPage, ApiError> {
        let now = self.now();
        let mut s = self.inner.lock().unwrap();
        s.books.lists += 1;
        s.down(now)?;
        if s.roll(|f| f.poll_fail) {
            return Err(err(ErrorClass::Transient, "server_error"));
        }
        let newest_first: Vec<String> = s.order.iter().rev().cloned().collect();
        let start = match after {
            Some(a) => newest_first
                .iter()
                .position(|id| id == a)
                .map_or(0, |i| i + 1),
            None => 0,
        };
        let ids: Vec<String> = newest_first
            .iter()
            .skip(start)
            .take(limit as usize)
            .cloned()
            .collect();
        let more = start + ids.len() < newest_first.len();
        let batches: Vec<RemoteBatch> = ids.iter().map(|id| s.view(id, now)).collect();
        Ok(BatchPage {
            next_after: more.then(|| ids.last().cloned()).flatten(),
            batches,
        })
    }

    async fn download_to(&self, file: &str, to: DownloadTo<'_>) -> Result<Downloaded, ApiError> {
        assert!(
            matches!(to, DownloadTo::Memory),
            "the runtime joins in memory"
        );
        let now = self.now();
        let mut s = self.inner.lock().unwrap();
        s.down(now)?;
        if s.roll(|f| f.download_fail) {
            s.books.download_failures += 1;
            return Err(err(ErrorClass::Transient, "server_error"));
        }
        match s.render(file) {
            Some(bytes) => Ok(Downloaded::Memory(bytes)),
            None => Err(err(ErrorClass::NotFound, "file_not_found")),
        }
    }

    async fn cancel(&self, batch_id: &str) -> Result<RemoteBatch, ApiError> {
        let now = self.now();
        let mut s = self.inner.lock().unwrap();
        s.down(now)?;
        let b = s
            .batches
            .get_mut(batch_id)
            .expect("cancel of a known batch");
        if b.cancel_at.is_none() && now < b.done_at {
            b.cancel_at = Some(now + 50);
            s.books.cancelled += 1;
        }
        Ok(s.view(batch_id, now))
    }

    async fn delete_file(&self, _file_id: &str) -> Result<(), ApiError> {
        Ok(())
    }

    async fn find(
        &self,
        meta: &BatchMeta,
        not_before: i64,
    ) -> Result<Option<RemoteBatch>, ApiError> {
        let now = self.now();
        let mut s = self.inner.lock().unwrap();
        s.down(now)?;
        if s.roll(|f| f.find_fail) {
            return Err(err(ErrorClass::Transient, "server_error"));
        }
        let found = s
            .order
            .iter()
            .rev()
            .find(|id| {
                let b = &s.batches[*id];
                b.meta.batch_number == meta.batch_number
                    && b.meta.attempt == meta.attempt
                    && (b.created_at / 1000) as i64 >= not_before
            })
            .cloned();
        Ok(found.map(|id| {
            s.books.adoptions += 1;
            s.view(&id, now)
        }))
    }
}
