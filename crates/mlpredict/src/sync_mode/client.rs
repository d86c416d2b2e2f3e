//! One synchronous request per record, with retries: 408, 429, 5xx,
//! timeouts and connection errors are retried with exponential backoff and
//! jitter, honouring `retry-after-ms` / `retry-after`; a 429 also holds back
//! every other request until its retry-after has passed (one shared gate),
//! so a rate-limited endpoint is not hammered by the whole window at once.
//! Other 4xx are answered at once with an error record; 401/403 stop the
//! pipeline (nothing would work until the key is fixed), like batch mode.
//!
//! The response is read with batch mode's borrowed result-line parser: the
//! body is wrapped as a batch result line (`{"custom_id","response":
//! {"status_code","body"}}`), so a prediction is exactly what batch mode
//! would emit for the same answer (`choices[0].message.content`,
//! `data[0].embedding`, refusals, error envelopes), copied as raw JSON.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use batch_api::http::parse_retry_after;
use batch_api::wire::{
    is_retriable_http_status, parse_result_line, Outcome, Task, WireFormat, UNEXPECTED_RESPONSE,
};
use bytes::Bytes;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use tokio::sync::watch;

use crate::record::write_record_open;

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
    pub timeout: Duration,
    pub max_retries: u32,
    pub max_concurrent: usize,
}

pub struct Client {
    http: reqwest::Client,
    url: reqwest::Url,
    task: Task,
    format: WireFormat,
    timeout: Duration,
    max_retries: u32,
    pipeline: String,
    /// `,"prediction":`
    prediction_key: Vec<u8>,
    /// No request is sent before this instant (set by a 429's retry-after).
    gate: Mutex<Option<Instant>>,
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
    pub fn new(s: &Settings<'_>) -> anyhow::Result<Self> {
        let mut url = reqwest::Url::parse(s.endpoint)
            .with_context(|| format!("model.endpoint {} is not a URL", s.endpoint))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match s.auth {
            Auth::Azure {
                api_version: Some(version),
            } => {
                let v1 = url.path().contains("/openai/v1/");
                let dated = version.starts_with(|c: char| c.is_ascii_digit());
                let given = url.query_pairs().any(|(k, _)| k == "api-version");
                let skip = given || (v1 && dated);
                if !skip {
                    url.query_pairs_mut().append_pair("api-version", version);
                }
            }
            Auth::Anthropic { version } => {
                let v = HeaderValue::from_str(version)
                    .context("model.anthropic-version is not a valid HTTP header value")?;
                headers.insert(HeaderName::from_static("anthropic-version"), v);
            }
            Auth::Azure { api_version: None } | Auth::Bearer => {}
        }
        if let Some(key) = s.api_key {
            let (name, value) = match s.auth {
                Auth::Azure { .. } => (HeaderName::from_static("api-key"), key.to_owned()),
                Auth::Anthropic { .. } => (HeaderName::from_static("x-api-key"), key.to_owned()),
                Auth::Bearer => (AUTHORIZATION, format!("Bearer {key}")),
            };
            // The error must not show the key.
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| anyhow::anyhow!("model.api-key is not a valid HTTP header value"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(s.max_concurrent)
            .tcp_nodelay(true)
            .connect_timeout(s.timeout.min(Duration::from_secs(10)))
            .build()
            .context("cannot build the HTTP client")?;
        let mut prediction_key = b",".to_vec();
        serde_json::to_writer(&mut prediction_key, s.output_field)?;
        prediction_key.push(b':');
        Ok(Self {
            http,
            url,
            task: s.task,
            format: s.format,
            timeout: s.timeout,
            max_retries: s.max_retries,
            pipeline: s.pipeline.to_owned(),
            prediction_key,
            gate: Mutex::new(None),
            calls: AtomicU64::new(0),
            failed_calls: AtomicU64::new(0),
        })
    }

    /// Send one record's request until it is answered, retries exhausted,
    /// or the pipeline stops.
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
        let mut retries = 0u32;
        loop {
            if !self.wait_gate(&mut stop).await || *stop.borrow() {
                return done(job.key.take(), Answer::Dropped);
            }
            let attempt = self.send(&request_id, job.body.clone()).await;
            let retriable = match &attempt {
                Attempt::Response { status, .. } => is_retriable_http_status(*status),
                Attempt::Transport { .. } => true,
            };
            let failed = match &attempt {
                Attempt::Response { status, .. } => !(200..300).contains(status),
                Attempt::Transport { .. } => true,
            };
            if failed {
                self.failed_calls.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("api_errors_total", "call" => "predict").increment(1);
            }
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
                return done(job.key.take(), Answer::Fatal(format!(
                    "the provider refused our credentials (http {status}, {code}: {message}); check model.api-key"
                )));
            }
            if retriable && retries < self.max_retries {
                let delay = match &attempt {
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
                };
                retries += 1;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return done(job.key.take(), Answer::Dropped),
                }
                continue;
            }
            let (line, ok, tokens) = match &attempt {
                Attempt::Response { status, body, .. } => {
                    let mut scratch = Vec::new();
                    let outcome = self.outcome(*status, body, &mut scratch);
                    self.output_line(&job.record, lane, job.pos, retries, &outcome)
                }
                Attempt::Transport { timeout, message } => {
                    let outcome = Outcome::Failed {
                        code: Cow::Borrowed(if *timeout {
                            "timeout"
                        } else {
                            "connection_error"
                        }),
                        message: Cow::Borrowed(message),
                        retriable: true,
                    };
                    self.output_line(&job.record, lane, job.pos, retries, &outcome)
                }
            };
            return done(
                job.key.take(),
                Answer::Emit {
                    line,
                    ok,
                    tokens,
                    retries,
                },
            );
        }
    }

    async fn send(&self, request_id: &str, body: Bytes) -> Attempt {
        self.calls.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("api_calls_total", "call" => "predict").increment(1);
        let sent = self
            .http
            .post(self.url.clone())
            .header("x-client-request-id", request_id)
            .timeout(self.timeout)
            .body(body)
            .send()
            .await;
        let transport = |e: reqwest::Error| Attempt::Transport {
            timeout: e.is_timeout(),
            message: e.without_url().to_string(),
        };
        match sent {
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
        }
    }

    /// Wait until no 429 holds requests back; false if the pipeline stops.
    async fn wait_gate(&self, stop: &mut watch::Receiver<bool>) -> bool {
        loop {
            let until = *self.gate.lock().expect("gate lock");
            let now = Instant::now();
            match until {
                Some(t) if t > now => {
                    let wait = t - now + jitter(Duration::from_millis(50));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return false,
                    }
                }
                _ => return true,
            }
        }
    }

    fn close_gate(&self, for_: Duration) {
        let until = Instant::now() + for_;
        let mut gate = self.gate.lock().expect("gate lock");
        if gate.is_none_or(|g| g < until) {
            *gate = Some(until);
        }
    }

    /// Read a response the way batch mode reads a result line.
    fn outcome<'a>(&self, status: u16, body: &[u8], scratch: &'a mut Vec<u8>) -> Outcome<'a> {
        let trimmed = body.trim_ascii();
        scratch.clear();
        let wrapped = match self.format {
            WireFormat::OpenAi if !trimmed.is_empty() => {
                scratch.extend_from_slice(br#"{"custom_id":"s","response":{"status_code":"#);
                scratch.extend_from_slice(status.to_string().as_bytes());
                scratch.extend_from_slice(br#","body":"#);
                scratch.extend_from_slice(trimmed);
                scratch.extend_from_slice(b"}}");
                true
            }
            // A Messages API answer or error envelope, as the result of a
            // Message Batches line.
            WireFormat::Anthropic if !trimmed.is_empty() => {
                let ok = (200..300).contains(&status);
                scratch.extend_from_slice(br#"{"custom_id":"s","result":{"type":"#);
                scratch.extend_from_slice(if ok {
                    br#""succeeded","message":"#
                } else {
                    br#""errored","error":"#
                });
                scratch.extend_from_slice(trimmed);
                scratch.extend_from_slice(b"}}");
                true
            }
            // The FLIP's protocol answers `{"output": ...}` or `{"error": ...}`:
            // a result line without its custom_id.
            WireFormat::Generic if (200..300).contains(&status) && trimmed.starts_with(b"{") => {
                scratch.extend_from_slice(br#"{"custom_id":"s""#);
                let rest = trimmed[1..].trim_ascii_start();
                if !rest.starts_with(b"}") {
                    scratch.push(b',');
                }
                scratch.extend_from_slice(rest);
                true
            }
            _ => false,
        };
        if wrapped {
            let parsed = parse_result_line(self.format, self.task, scratch).ok();
            if let Some(line) = parsed {
                return line.outcome;
            }
        }
        // Not JSON (a proxy's HTML page, a bare text error).
        if (200..300).contains(&status) {
            return Outcome::Failed {
                code: Cow::Borrowed(UNEXPECTED_RESPONSE),
                message: Cow::Borrowed("the response body is not the expected json"),
                retriable: false,
            };
        }
        let text = String::from_utf8_lossy(trimmed);
        let text: String = text.chars().take(300).collect();
        Outcome::Failed {
            code: Cow::Owned(format!("http_{status}")),
            message: Cow::Owned(if text.is_empty() {
                format!("http status {status}")
            } else {
                text
            }),
            retriable: is_retriable_http_status(status),
        }
    }

    /// The output record: the input object unchanged, the prediction and
    /// `ml_predict`, in the same shape as batch mode's.
    fn output_line(
        &self,
        record: &[u8],
        lane: u32,
        pos: u64,
        retries: u32,
        outcome: &Outcome<'_>,
    ) -> (Vec<u8>, bool, u64) {
        let pred_len = match outcome {
            Outcome::Ok { prediction, .. } => prediction.get().len(),
            Outcome::Failed { .. } => 4,
        };
        let mut out = Vec::with_capacity(record.len() + pred_len + 200);
        let is_object = write_record_open(&mut out, record);
        debug_assert!(is_object, "usable records are objects");
        out.extend_from_slice(&self.prediction_key);
        let (ok, tokens) = match outcome {
            Outcome::Ok {
                prediction,
                total_tokens,
            } => {
                out.extend_from_slice(prediction.get().as_bytes());
                (true, total_tokens.unwrap_or(0))
            }
            Outcome::Failed { .. } => {
                out.extend_from_slice(b"null");
                (false, 0)
            }
        };
        out.extend_from_slice(br#","ml_predict":{"batch_number":null,"batch_id":null,"retries":"#);
        out.extend_from_slice(format!("{retries},\"custom_id\":\"{lane}-{pos}\"").as_bytes());
        match outcome {
            Outcome::Ok { .. } => out.extend_from_slice(br#","status":"ok","error":null}}"#),
            Outcome::Failed { code, message, .. } => {
                out.extend_from_slice(br#","status":"error","error":{"code":"#);
                let _ = serde_json::to_writer(&mut out, code.as_ref());
                out.extend_from_slice(br#","message":"#);
                let _ = serde_json::to_writer(&mut out, message.as_ref());
                out.extend_from_slice(b"}}}");
            }
        }
        out.push(b'\n');
        (out, ok, tokens)
    }
}

fn jitter(max: Duration) -> Duration {
    let ms = max.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// Exponential backoff with jitter: a point in `[exp/2, exp]`.
fn backoff(retry: u32) -> Duration {
    let exp = BACKOFF_BASE
        .saturating_mul(1u32 << retry.min(16))
        .min(BACKOFF_CAP);
    exp / 2 + jitter(exp / 2)
}

#[cfg(test)]
mod tests;
