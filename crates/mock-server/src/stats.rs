//! Counters that integration tests read (`GET /mock/stats`, `MockServer::stats`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::util::h64;

/// How many duplicate keys are listed (the counts are always complete).
const MAX_LISTED: usize = 20;

/// A snapshot of what the mock saw and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Calls per `"METHOD /route/{param}"` (faulted ones included).
    pub calls_by_route: BTreeMap<String, u64>,
    /// Calls per response class: `"2xx"`, `"4xx"`, `"5xx"`, `"dropped"`.
    pub calls_by_status: BTreeMap<String, u64>,
    pub files_uploaded: u64,
    /// OpenAI batches created (POST /v1/batches that acted).
    pub batches_created: u64,
    /// Generic-protocol jobs created (POST /ml/api/batch_predict that acted).
    pub jobs_created: u64,
    /// Anthropic message batches created (POST /v1/messages/batches that acted).
    #[serde(default)]
    pub message_batches_created: u64,
    /// Creates per `"{metadata.batch_number}#{metadata.attempt}"` (batches and
    /// jobs); Anthropic batches carry no metadata and count per
    /// `"anthropic:{tag}"`, the batch tag mlpredict prefixes to every
    /// custom_id (`{tag}_{lane}-{position}`), one per batch_number and attempt.
    pub creates_by_batch_number: BTreeMap<String, u64>,
    /// Keys of `creates_by_batch_number` created more than once: paying twice.
    pub duplicate_creates: Vec<String>,
    /// Requests answered successfully (batch output lines, generic outputs, sync answers).
    pub requests_answered: u64,
    /// Successful answers to a (pipeline, custom_id) that had already been
    /// answered. Anthropic answers count under the public custom_id (the
    /// batch tag stripped) and pipeline `""`.
    pub duplicate_answers: u64,
    /// The first few duplicated keys, as `"{pipeline}/{custom_id}"`.
    pub duplicate_answer_keys: Vec<String>,
    /// Successful synchronous chat/embeddings answers (part of requests_answered).
    pub sync_answered: u64,
    /// Faults injected per kind: rate_limit, server_error, lost_response_500,
    /// lost_response_drop, token_limit, expire, request_4xx, request_5xx, rpm_limit.
    pub faults_injected: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Inner {
    stats: Stats,
    // 64-bit hashes keep memory flat for millions of answers
    answered: HashSet<u64>,
    duplicate_creates: HashSet<String>,
}

#[derive(Default)]
pub(crate) struct StatsRecorder {
    inner: Mutex<Inner>,
}

impl StatsRecorder {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().expect("stats lock"))
    }

    pub(crate) fn snapshot(&self) -> Stats {
        self.with(|i| i.stats.clone())
    }

    pub(crate) fn call(&self, route: &str) {
        self.with(|i| *i.stats.calls_by_route.entry(route.to_owned()).or_default() += 1);
    }

    pub(crate) fn status(&self, class: &str) {
        self.with(|i| *i.stats.calls_by_status.entry(class.to_owned()).or_default() += 1);
    }

    pub(crate) fn fault(&self, kind: &str) {
        self.with(|i| *i.stats.faults_injected.entry(kind.to_owned()).or_default() += 1);
    }

    pub(crate) fn file_uploaded(&self) {
        self.with(|i| i.stats.files_uploaded += 1);
    }

    /// Records an Anthropic message batch create; `tag` is the batch tag
    /// shared by all its custom_ids, if they share one.
    pub(crate) fn created_message_batch(&self, tag: Option<&str>) {
        self.with(|i| {
            i.stats.message_batches_created += 1;
            if let Some(tag) = tag {
                Self::count_create(i, format!("anthropic:{tag}"));
            }
        });
    }

    fn count_create(i: &mut Inner, key: String) {
        let n = i
            .stats
            .creates_by_batch_number
            .entry(key.clone())
            .or_default();
        *n += 1;
        if *n == 2 && i.duplicate_creates.insert(key.clone()) {
            i.stats.duplicate_creates.push(key);
        }
    }

    /// Records a create; `job` = generic protocol.
    pub(crate) fn created(
        &self,
        job: bool,
        metadata: Option<&serde_json::Map<String, serde_json::Value>>,
    ) {
        let key = metadata.and_then(|m| {
            let text = |k: &str| {
                m.get(k).map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            };
            text("batch_number").map(|n| format!("{n}#{}", text("attempt").unwrap_or_default()))
        });
        self.with(|i| {
            if job {
                i.stats.jobs_created += 1;
            } else {
                i.stats.batches_created += 1;
            }
            if let Some(key) = key {
                Self::count_create(i, key);
            }
        });
    }

    /// Records successful answers for (pipeline, custom_id) pairs.
    pub(crate) fn answered<'a>(
        &self,
        pipeline: &str,
        custom_ids: impl IntoIterator<Item = &'a str>,
    ) {
        self.with(|i| {
            for id in custom_ids {
                i.stats.requests_answered += 1;
                if !i
                    .answered
                    .insert(h64(&[pipeline.as_bytes(), id.as_bytes()]))
                {
                    i.stats.duplicate_answers += 1;
                    if i.stats.duplicate_answer_keys.len() < MAX_LISTED {
                        i.stats
                            .duplicate_answer_keys
                            .push(format!("{pipeline}/{id}"));
                    }
                }
            }
        });
    }

    /// A synchronous answer; `custom_id` from `X-Client-Request-Id` if sent.
    pub(crate) fn sync_answered(&self, pipeline: &str, custom_id: Option<&str>) {
        match custom_id {
            Some(id) => self.answered(pipeline, [id]),
            None => self.with(|i| i.stats.requests_answered += 1),
        }
        self.with(|i| i.stats.sync_answered += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_duplicate_answers_per_pipeline() {
        let s = StatsRecorder::default();
        s.answered("p1", ["a", "b"]);
        s.answered("p2", ["a"]);
        s.answered("p1", ["b"]);
        let st = s.snapshot();
        assert_eq!(st.requests_answered, 4);
        assert_eq!(st.duplicate_answers, 1);
        assert_eq!(st.duplicate_answer_keys, vec!["p1/b".to_string()]);
    }

    #[test]
    fn detects_duplicate_creates_once() {
        let s = StatsRecorder::default();
        let m: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"batch_number":"p-0-0-9","attempt":"1"}"#).unwrap();
        for _ in 0..3 {
            s.created(false, Some(&m));
        }
        s.created(true, None);
        let st = s.snapshot();
        assert_eq!(st.batches_created, 3);
        assert_eq!(st.jobs_created, 1);
        assert_eq!(st.duplicate_creates, vec!["p-0-0-9#1".to_string()]);
        assert_eq!(st.creates_by_batch_number["p-0-0-9#1"], 3);
    }
}
