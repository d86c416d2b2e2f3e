//! One synchronous request per record, with retries: 408, 429, 5xx,
//! timeouts and connection errors (the provider's capacity, not the
//! request's fault) are retried with exponential backoff and jitter,
//! honouring `retry-after-ms` / `retry-after`; a 429 also holds back every
//! other request until its retry-after has passed (one shared gate), so a
//! rate-limited endpoint is not hammered by the whole window at once.
//!
//! The budget is Flink's: `timeout` runs from the first call to the final
//! answer, retries included, and `max_retries` (Flink's `retry-num`) caps
//! the retries within it. A 429 is the provider's capacity, not the
//! request's fault: waiting it out never consumes `max_retries`, only the
//! `timeout`. When a budget runs out, the last failure is emitted with a
//! message saying how long and how often it was tried.
//! Other 4xx are answered at once with an error record; 401/403 stop the
//! pipeline (nothing would work until the key is fixed), like batch mode.
//!
//! The response is read with batch mode's borrowed result-line parser
//! (`answer`), so a prediction is exactly what batch mode would emit for
//! the same answer.
//!
//! Auth headers, key redaction, `retry-after` and Azure's `api-version` rule
//! are the batch clients' own ([`crate::http`], [`crate::openai`]): a
//! provider's error text never shows the key, not even the fragment it
//! echoes (`wro***-456`).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rand::Rng;
use reqwest::Method;
use tokio::sync::watch;

use crate::http::{parse_retry_after, AuthStyle, Http};
use crate::openai::azure_api_version;
use crate::wire::{is_retriable_http_status, Outcome, Task, WireFormat};
use crate::{ApiError, ClientTimeouts, ErrorClass};

mod answer;

pub use answer::write_record_open;

/// Longest `retry-after` honoured as given.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// How the provider wants the key and the version.
pub enum Auth<'a> {
    /// `Authorization: Bearer KEY` (OpenAI and compatible servers, generic).
    Bearer,
    /// Azure OpenAI: `api-key: KEY` and `?api-version=` (not sent to the
    /// `/openai/v1/` API when it is a dated version, like batch mode).
    Azure { api_version: Option<&'a str> },
    /// Anthropic: `x-api-key: KEY` and `anthropic-version`.
    Anthropic { version: &'a str },
}

pub struct Settings<'a> {
    pub endpoint: &'a str,
    pub api_key: Option<&'a str>,
    pub auth: Auth<'a>,
    pub pipeline: &'a str,
    pub output_field: &'a str,
    pub task: Task,
    pub format: WireFormat,
    /// From the first call to the final answer, retries included.
    pub timeout: Duration,
    /// Longest single call.
    pub request_timeout: Duration,
    pub max_retries: u32,
    pub max_concurrent: usize,
    /// Told the outcome of every call: whether the provider answers.
    pub observer: Option<Arc<dyn CallObserver>>,
}

/// Sees every call's outcome (the pipeline's provider health: the
/// `provider_up` gauge and quiet warnings). A capacity or availability
/// failure (429, 408, 5xx, timeout, connection error) is an `Err` of class
/// `Transient`; any other answer, a refusal included, is `Ok`.
pub trait CallObserver: Send + Sync {
    fn note(&self, call: &'static str, r: &Result<(), ApiError>);
}

pub struct Client {
    http: Http,
    url: String,
    task: Task,
    format: WireFormat,
    timeout: Duration,
    request_timeout: Duration,
    max_retries: u32,
    pipeline: String,
    /// `,"prediction":`
    prediction_key: Vec<u8>,
    /// No request is sent before this instant (set by a 429's retry-after).
    gate: Mutex<Option<Instant>>,
    observer: Option<Arc<dyn CallObserver>>,
    pub calls: AtomicU64,
    pub failed_calls: AtomicU64,
}

pub struct Job {
    pub seq: u64,
    pub lane: u32,
    pub pos: u64,
    /// The record's key (Kafka), handed back with the answer.
    pub key: Option<Vec<u8>>,
    /// The record's line, for the output.
    pub record: Vec<u8>,
    pub body: Bytes,
}

pub enum Answer {
    /// The output line (with its newline).
    Emit {
        line: Vec<u8>,
        ok: bool,
        tokens: u64,
        retries: u32,
    },
    /// Not answered: the pipeline is stopping; the record is sent again on
    /// the next run.
    Dropped,
    /// The pipeline must stop.
    Fatal(String),
}

pub struct Done {
    pub seq: u64,
    pub lane: u32,
    pub key: Option<Vec<u8>>,
    pub answer: Answer,
}

enum Attempt {
    Response {
        status: u16,
        retry_after: Option<Duration>,
        body: Bytes,
    },
    Transport {
        timeout: bool,
        message: String,
    },
}

impl Client {
    /// Errors name the `model.*` setting at fault, never show the key.
    pub fn new(s: &Settings<'_>) -> Result<Self, ApiError> {
        let mut url = reqwest::Url::parse(s.endpoint).map_err(|e| {
            ApiError::permanent(format!("model.endpoint {} is not a url: {e}", s.endpoint))
        })?;
        let style = match s.auth {
            Auth::Azure { api_version } => {
                if let Some(v) = azure_api_version(&url, api_version) {
                    url.query_pairs_mut().append_pair("api-version", &v);
                }
                AuthStyle::Header("api-key")
            }
            Auth::Anthropic { .. } => AuthStyle::Header("x-api-key"),
            Auth::Bearer => AuthStyle::Bearer,
        };
        let request_timeout = s.request_timeout.min(s.timeout);
        let timeouts = ClientTimeouts {
            connect: request_timeout.min(Duration::from_secs(10)),
            request: request_timeout,
        };
        let max_concurrent = s.max_concurrent;
        let http = Http::with_client(s.api_key.map(str::to_owned), style, timeouts, |b| {
            b.pool_max_idle_per_host(max_concurrent).tcp_nodelay(true)
        })
        .map_err(|e| ApiError::permanent(format!("model.api-key: {e}")))?
        .with_header("content-type", "application/json")?;
        let http = match s.auth {
            Auth::Anthropic { version } => http
                .with_header("anthropic-version", version)
                .map_err(|e| ApiError::permanent(format!("model.anthropic-version: {e}")))?,
            _ => http,
        };
        let mut prediction_key = b",".to_vec();
        serde_json::to_writer(&mut prediction_key, s.output_field)
            .map_err(|e| ApiError::permanent(format!("model.output: {e}")))?;
        prediction_key.push(b':');
        Ok(Self {
            http,
            url: url.into(),
            task: s.task,
            format: s.format,
            timeout: s.timeout,
            request_timeout,
            max_retries: s.max_retries,
            pipeline: s.pipeline.to_owned(),
            prediction_key,
            gate: Mutex::new(None),
            observer: s.observer.clone(),
            calls: AtomicU64::new(0),
            failed_calls: AtomicU64::new(0),
        })
    }

    /// Send one record's request until it is answered, its budget
    /// (`timeout`, `max_retries`) runs out, or the pipeline stops.
    pub async fn call(self: Arc<Self>, mut job: Job, mut stop: watch::Receiver<bool>) -> Done {
        let (seq, lane) = (job.seq, job.lane);
        let done = |key, answer| Done {
            seq,
            lane,
            key,
            answer,
        };
        // Lets the provider (and the mock's exactly-once counters) tell
        // retries of one record from different records.
        let request_id = format!("{}-{}-{}", self.pipeline, job.lane, job.pos);
        // Retries counted against `max_retries`, and waits after a 429
        // (which are not).
        let (mut retries, mut waits) = (0u32, 0u32);
        // The budget runs from the first call, as Flink's `timeout`.
        let mut deadline: Option<Instant> = None;
        // The failure retried last, emitted if the budget ends in a wait.
        let mut last: Option<Attempt> = None;
        loop {
            if !self.wait_gate(&mut stop, deadline).await || *stop.borrow() {
                return done(job.key.take(), Answer::Dropped);
            }
            let now = Instant::now();
            let deadline = *deadline.get_or_insert(now + self.timeout);
            let left = deadline.saturating_duration_since(now);
            let (attempt, in_time) = match last.take() {
                Some(failed) if left.is_zero() => (failed, false),
                _ => {
                    let timeout = left.min(self.request_timeout);
                    (
                        self.send(&request_id, job.body.clone(), timeout).await,
                        true,
                    )
                }
            };
            let retriable = match &attempt {
                Attempt::Response { status, .. } => is_retriable_http_status(*status),
                Attempt::Transport { .. } => true,
            };
            if let Attempt::Response {
                status: status @ (401 | 403),
                body,
                ..
            } = &attempt
            {
                let mut scratch = Vec::new();
                let (code, message) = match self.outcome(*status, body, &mut scratch) {
                    Outcome::Failed { code, message, .. } => {
                        (code.into_owned(), message.into_owned())
                    }
                    Outcome::Ok { .. } => (format!("http_{status}"), String::new()),
                };
                let (code, message) = (self.http.redact(&code), self.http.redact(&message));
                return done(job.key.take(), Answer::Fatal(format!(
                    "the provider refused our credentials (http {status}, {code}: {message}); check model.api-key"
                )));
            }
            if retriable && in_time {
                let delay = self.retry_delay(&attempt, retries + waits);
                // Worth waiting only if a call can still follow in time.
                let resume = Instant::now() + delay.max(self.gate_left());
                let rate_limited = matches!(attempt, Attempt::Response { status: 429, .. });
                if (rate_limited || retries < self.max_retries) && resume < deadline {
                    if rate_limited {
                        waits += 1;
                    } else {
                        retries += 1;
                    }
                    last = Some(attempt);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return done(job.key.take(), Answer::Dropped),
                    }
                    continue;
                }
            }
            let gave_up = retriable.then(|| self.gave_up(deadline, retries, waits));
            let (line, ok, tokens) = self.answer_line(&job, &attempt, retries + waits, gave_up);
            return done(
                job.key.take(),
                Answer::Emit {
                    line,
                    ok,
                    tokens,
                    retries: retries + waits,
                },
            );
        }
    }

    /// How long to wait before retrying a capacity failure; a 429 with a
    /// `retry-after` also holds back every other request.
    fn retry_delay(&self, attempt: &Attempt, retries: u32) -> Duration {
        match attempt {
            Attempt::Response {
                status,
                retry_after: Some(ra),
                ..
            } => {
                let ra = (*ra).min(MAX_RETRY_AFTER);
                if *status == 429 {
                    self.close_gate(ra);
                }
                ra + jitter(ra / 10 + Duration::from_millis(20))
            }
            _ => backoff(retries),
        }
    }

    /// Why a capacity failure is emitted: which budget ran out, after how
    /// long and how many calls.
    fn gave_up(&self, deadline: Instant, retries: u32, waits: u32) -> String {
        let started = deadline - self.timeout;
        let tried = round(started.elapsed());
        let calls = retries + waits + 1;
        let budget = if retries >= self.max_retries {
            format!("ml.predict.max-retries = {}", self.max_retries)
        } else {
            format!(
                "ml.predict.timeout = {}",
                humantime::format_duration(round(self.timeout))
            )
        };
        format!(
            "gave up after {} and {calls} call{} ({budget})",
            humantime::format_duration(tried),
            if calls == 1 { "" } else { "s" },
        )
    }

    /// The output line of a final attempt; `gave_up` prefixes the message
    /// of a failure whose budget ran out.
    fn answer_line(
        &self,
        job: &Job,
        attempt: &Attempt,
        retries: u32,
        gave_up: Option<String>,
    ) -> (Vec<u8>, bool, u64) {
        let mut scratch = Vec::new();
        let outcome = match attempt {
            Attempt::Response { status, body, .. } => self.outcome(*status, body, &mut scratch),
            Attempt::Transport { timeout, message } => Outcome::Failed {
                code: Cow::Borrowed(if *timeout {
                    "timeout"
                } else {
                    "connection_error"
                }),
                message: Cow::Borrowed(message),
                retriable: true,
            },
        };
        let outcome = match (outcome, gave_up) {
            (
                Outcome::Failed {
                    code,
                    message,
                    retriable,
                },
                Some(why),
            ) => Outcome::Failed {
                code,
                message: Cow::Owned(format!("{why}: {message}")),
                retriable,
            },
            (outcome, _) => outcome,
        };
        self.output_line(&job.record, job.lane, job.pos, retries, &outcome)
    }

    /// One call, counted; `timeout` is what is left of the budget (at most
    /// the request timeout).
    async fn send(&self, request_id: &str, body: Bytes, timeout: Duration) -> Attempt {
        self.calls.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("api_calls_total", "call" => "predict").increment(1);
        let sent = self
            .http
            .req(Method::POST, &self.url)
            .header("x-client-request-id", request_id)
            .timeout(timeout)
            .body(body)
            .send()
            .await;
        let transport = |e: reqwest::Error| Attempt::Transport {
            timeout: e.is_timeout(),
            message: e.without_url().to_string(),
        };
        let attempt = match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = parse_retry_after(resp.headers(), SystemTime::now());
                match resp.bytes().await {
                    Ok(body) => Attempt::Response {
                        status,
                        retry_after,
                        body,
                    },
                    Err(e) => transport(e),
                }
            }
            Err(e) => transport(e),
        };
        let failed = match &attempt {
            Attempt::Response { status, .. } => !(200..300).contains(status),
            Attempt::Transport { .. } => true,
        };
        if failed {
            self.failed_calls.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("api_errors_total", "call" => "predict").increment(1);
        }
        if let Some(observer) = &self.observer {
            observer.note("predict", &availability(&attempt));
        }
        attempt
    }

    /// Wait until no 429 holds requests back, or the record's budget ends;
    /// false if the pipeline stops.
    async fn wait_gate(&self, stop: &mut watch::Receiver<bool>, deadline: Option<Instant>) -> bool {
        loop {
            let until = *self.gate.lock().expect("gate lock");
            let now = Instant::now();
            if deadline.is_some_and(|d| d <= now) {
                return true;
            }
            match until {
                Some(t) if t > now => {
                    let mut wait = t - now + jitter(Duration::from_millis(50));
                    if let Some(d) = deadline {
                        wait = wait.min(d - now);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return false,
                    }
                }
                _ => return true,
            }
        }
    }

    /// How long the gate still holds requests back.
    fn gate_left(&self) -> Duration {
        let until = *self.gate.lock().expect("gate lock");
        until.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(Instant::now())
        })
    }

    fn close_gate(&self, for_: Duration) {
        let until = Instant::now() + for_;
        let mut gate = self.gate.lock().expect("gate lock");
        if gate.is_none_or(|g| g < until) {
            *gate = Some(until);
        }
    }
}

/// Whole seconds past a second, for messages.
fn round(d: Duration) -> Duration {
    if d >= Duration::from_secs(1) {
        Duration::from_secs(d.as_secs_f64().round() as u64)
    } else {
        Duration::from_millis(d.as_millis() as u64)
    }
}

fn jitter(max: Duration) -> Duration {
    let ms = max.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// Exponential backoff with jitter: a point in `[exp/2, exp]`.
/// Whether a call's outcome says the provider is available: a capacity
/// or availability failure is an error, any other answer is not.
fn availability(attempt: &Attempt) -> Result<(), ApiError> {
    match attempt {
        Attempt::Response { status, .. } if is_retriable_http_status(*status) => Err(
            ApiError::new(ErrorClass::Transient, format!("http {status}")),
        ),
        Attempt::Response { .. } => Ok(()),
        Attempt::Transport { message, .. } => {
            Err(ApiError::new(ErrorClass::Transient, message.clone()))
        }
    }
}

fn backoff(retry: u32) -> Duration {
    let exp = BACKOFF_BASE
        .saturating_mul(1u32 << retry.min(16))
        .min(BACKOFF_CAP);
    exp / 2 + jitter(exp / 2)
}

#[cfg(test)]
mod tests;
