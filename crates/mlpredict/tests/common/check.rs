//! Exactly-once checks: of a file pipeline's output, of dead letters, and
//! of what the mock was asked.

use std::collections::BTreeMap;

use mock_server::MockServer;
use serde_json::Value;

use super::MODEL;

/// What the output records of a run carry besides their input fields.
pub struct Shape<'a> {
    /// Starts every failure message (e.g. `"Anthropic: "`), or empty.
    pub label: String,
    /// The model the mock's fake model answers as.
    pub model: &'a str,
    /// Batch mode: every record has a `batch_number` of the pipeline
    /// `reviews`, every ok one a `batch_id` with this prefix. `None`:
    /// synchronous mode, no batch fields but a `retries` count.
    pub batch_id_prefix: Option<&'a str>,
    /// `custom_id` has no `_` (the public id, never a tagged wire id).
    pub plain_custom_id: bool,
}

impl Shape<'static> {
    /// Batch mode against the OpenAI mock.
    pub fn batch() -> Self {
        Shape {
            label: String::new(),
            model: MODEL,
            batch_id_prefix: Some("batch_"),
            plain_custom_id: false,
        }
    }

    /// Synchronous mode against the OpenAI mock.
    pub fn sync() -> Self {
        Shape {
            label: String::new(),
            model: MODEL,
            batch_id_prefix: None,
            plain_custom_id: false,
        }
    }
}

/// Every input record exactly once, unchanged, in `shape`; ok ones carry the
/// fake model's answer. Returns (ok, error, ids in output order).
pub fn check_records(
    out: &[Value],
    texts: &BTreeMap<u64, String>,
    shape: &Shape,
) -> (usize, usize, Vec<u64>) {
    let l = &shape.label;
    let mut seen = BTreeMap::new();
    let (mut ok, mut err) = (0, 0);
    let mut order = Vec::new();
    for rec in out {
        let id = rec["id"].as_u64().expect("id");
        assert!(
            seen.insert(id, ()).is_none(),
            "{l}record {id} emitted twice"
        );
        order.push(id);
        let text = &texts[&id];
        assert_eq!(
            rec["text"].as_str(),
            Some(text.as_str()),
            "{l}record {id} changed"
        );
        assert_eq!(rec["meta"]["n"].as_u64(), Some(id));
        let m = &rec["ml_predict"];
        if shape.batch_id_prefix.is_some() {
            assert!(
                m["batch_number"]
                    .as_str()
                    .is_some_and(|b| b.starts_with("reviews-0-")),
                "{l}{rec}"
            );
        } else {
            assert!(
                m["batch_number"].is_null() && m["batch_id"].is_null(),
                "{l}{rec}"
            );
            assert!(m["retries"].is_u64(), "{l}{rec}");
        }
        assert!(
            m["custom_id"]
                .as_str()
                .is_some_and(|c| c.starts_with("0-") && !(shape.plain_custom_id && c.contains('_'))),
            "{l}{rec}"
        );
        match m["status"].as_str() {
            Some("ok") => {
                ok += 1;
                assert_eq!(
                    rec["prediction"].as_str(),
                    Some(mock_server::fake::chat_reply(shape.model, text).as_str()),
                    "{l}{rec}"
                );
                assert!(m["error"].is_null());
                if let Some(prefix) = shape.batch_id_prefix {
                    assert!(
                        m["batch_id"]
                            .as_str()
                            .is_some_and(|b| b.starts_with(prefix)),
                        "{l}{rec}"
                    );
                }
            }
            Some("error") => {
                err += 1;
                assert!(rec["prediction"].is_null());
                assert!(
                    m["error"]["code"].as_str().is_some_and(|c| !c.is_empty()),
                    "{l}{rec}"
                );
                assert!(m["error"]["message"].is_string(), "{l}{rec}");
            }
            other => panic!("{l}bad status {other:?} in {rec}"),
        }
    }
    let missing: Vec<_> = texts
        .keys()
        .filter(|k| !seen.contains_key(k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{l}records never emitted, e.g. {missing:?}"
    );
    (ok, err, order)
}

/// [`check_records`] of a batch-mode run against the OpenAI mock.
/// Returns (ok, error) counts.
pub fn check_output(out: &[Value], texts: &BTreeMap<u64, String>) -> (usize, usize) {
    let (ok, err, _) = check_records(out, texts, &Shape::batch());
    (ok, err)
}

/// A dead letter of an unusable input line says why.
pub fn assert_bad_input_reason(d: &Value) {
    let reason = d["error"].as_str().unwrap();
    assert!(
        reason == "input field `text` is not a string" || reason.starts_with("invalid json"),
        "{reason}"
    );
}

/// The mock never answered a request twice nor created a batch twice.
pub fn assert_no_double_pay(server: &MockServer) {
    assert_no_double_pay_as("", server);
}

/// [`assert_no_double_pay`], its failure messages starting with `label`.
pub fn assert_no_double_pay_as(label: &str, server: &MockServer) {
    let stats = server.stats();
    assert_eq!(
        stats.duplicate_answers, 0,
        "{label}answered twice: {:?}",
        stats.duplicate_answer_keys
    );
    assert!(
        stats.duplicate_creates.is_empty(),
        "{label}created twice: {:?}",
        stats.duplicate_creates
    );
}
