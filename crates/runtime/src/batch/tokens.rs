//! Token estimates of requests, for the enqueued-token limit
//! (`ml.batch.max.enqueued-tokens`) and the budget's cost estimate.
//!
//! OpenAI models are counted with their own tokenizer (`tiktoken-rs`, its
//! encodings compiled into the binary: nothing is fetched at run time),
//! plus the chat format's per-message tokens. Other models (Anthropic,
//! generic servers, Azure deployment names that do not name a model) get a
//! conservative estimate: one token per two bytes of UTF-8 text, which
//! overestimates English (about four bytes per token) and most other
//! scripts. Where the provider may count `max_tokens` toward its limit
//! (every provider but OpenAI and Azure), it is added.

use batch_api::wire::{Task, WireFormat};
use tiktoken_rs::CoreBPE;

/// Tokens of the chat format around each message, and the reply's
/// priming (OpenAI's published counting rule).
const PER_MESSAGE: u64 = 3;
const REPLY_PRIMING: u64 = 3;

enum Counter {
    Bpe(&'static CoreBPE),
    /// `ceil(bytes / 2)`.
    HalfBytes,
}

/// Estimates the tokens one request counts against the provider's limit.
pub struct Estimator {
    counter: Counter,
    /// Tokens of everything but the input: the system prompt, message
    /// framing, and `max_tokens` where the provider counts it.
    fixed: u64,
    /// What [`Estimator::name`] reports.
    name: &'static str,
}

/// What the estimate needs to know of the pipeline's model.
pub struct ModelShape<'a> {
    pub format: WireFormat,
    pub task: Task,
    /// `model.model`
    pub model: &'a str,
    pub system_prompt: Option<&'a str>,
    /// As sent (Anthropic's default included).
    pub max_tokens: Option<u32>,
}

impl Estimator {
    pub fn new(m: &ModelShape<'_>) -> Self {
        let openai = matches!(m.format, WireFormat::OpenAi);
        let bpe = openai
            .then(|| tiktoken_rs::bpe_for_model(m.model).ok())
            .flatten();
        let (counter, name) = match bpe {
            Some(bpe) => (Counter::Bpe(bpe), "tiktoken"),
            None => (Counter::HalfBytes, "bytes/2"),
        };
        let mut est = Self {
            counter,
            fixed: 0,
            name,
        };
        let mut fixed = 0;
        if m.task == Task::Chat {
            fixed += PER_MESSAGE + REPLY_PRIMING;
            if let Some(system) = m.system_prompt {
                fixed += PER_MESSAGE + est.count(system);
            }
        }
        if !openai {
            fixed += u64::from(m.max_tokens.unwrap_or(0));
        }
        est.fixed = fixed;
        est
    }

    /// `tiktoken` or `bytes/2`: how inputs are counted.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn count(&self, text: &str) -> u64 {
        match self.counter {
            Counter::Bpe(bpe) => bpe.encode_ordinary(text).len() as u64,
            Counter::HalfBytes => (text.len() as u64).div_ceil(2),
        }
    }

    /// The estimate for a request whose input is the JSON value `raw` (a
    /// string is counted as its text, anything else as its JSON).
    pub fn estimate(&self, raw: &str) -> u64 {
        let text = match serde_json::from_str::<std::borrow::Cow<'_, str>>(raw) {
            Ok(text) => text,
            Err(_) => std::borrow::Cow::Borrowed(raw),
        };
        self.fixed + self.count(&text)
    }

    /// A bound no estimate of `raw` exceeds, without counting: both
    /// counters give at most one token per byte.
    pub fn upper_bound(&self, raw: &str) -> u64 {
        self.fixed + raw.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(format: WireFormat, model: &str, max_tokens: Option<u32>) -> ModelShape<'_> {
        ModelShape {
            format,
            task: Task::Chat,
            model,
            system_prompt: Some("You are terse."),
            max_tokens,
        }
    }

    #[test]
    fn openai_models_are_counted_with_their_tokenizer() {
        let e = Estimator::new(&shape(WireFormat::OpenAi, "gpt-4o-mini", Some(500)));
        assert_eq!(e.name(), "tiktoken");
        // "You are terse." is 4 tokens in o200k_base; 3 + 3 framing, 3 for
        // the system message; max_tokens is not counted by OpenAI.
        let fixed = 3 + 3 + 3 + 4;
        assert_eq!(e.estimate(r#""hello world""#), fixed + 2);
        assert_eq!(e.estimate(r#""""#), fixed);
        // Escapes are counted as the text they stand for.
        assert_eq!(
            e.estimate(r#""hello\nworld""#),
            fixed + e.count("hello\nworld")
        );
        let long = format!("\"{}\"", "token ".repeat(1000));
        let n = e.estimate(&long);
        assert!((fixed + 1000..=fixed + 1001).contains(&n), "{n}");
        assert!(n <= e.upper_bound(&long));
    }

    #[test]
    fn others_get_a_conservative_estimate_with_max_tokens() {
        let e = Estimator::new(&shape(WireFormat::Anthropic, "claude-x", Some(100)));
        assert_eq!(e.name(), "bytes/2");
        // 14 bytes of system prompt: 7; framing 3 + 3 + 3; max_tokens 100.
        let fixed = 7 + 9 + 100;
        assert_eq!(e.estimate(r#""abcde""#), fixed + 3);
        // Unknown OpenAI-protocol names (Azure deployments) too, without
        // max_tokens.
        let e = Estimator::new(&shape(WireFormat::OpenAi, "my-deployment", Some(100)));
        assert_eq!(e.name(), "bytes/2");
        assert_eq!(e.estimate(r#""abcde""#), 7 + 9 + 3);
        let raw = r#""ééé""#;
        assert!(e.estimate(raw) <= e.upper_bound(raw));
    }

    #[test]
    fn embeddings_have_no_chat_framing() {
        let e = Estimator::new(&ModelShape {
            format: WireFormat::OpenAi,
            task: Task::Embeddings,
            model: "text-embedding-3-small",
            system_prompt: None,
            max_tokens: None,
        });
        assert_eq!(e.estimate(r#""hello world""#), 2);
    }
}
