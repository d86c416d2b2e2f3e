//! What tokens cost: per-model prices in USD per 1M tokens, for per-record
//! (synchronous) calls and for Batch API calls, and the cost of a usage.
//!
//! Prices come from the built-in table ([`BUILTIN`], taken on
//! [`BUILTIN_AS_OF`]) and the pipeline's `[pricing]` table, whose entries
//! replace built-in ones of the same model. A model without a price has no
//! cost: every function returns `None` (written as JSON `null`), never a
//! guess. Model names match exactly: a dated snapshot (`gpt-4o-2024-05-13`)
//! may be priced differently from its alias, so it needs its own entry.

mod table;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use table::{PricingError, RawValue};

/// The date the built-in prices were taken from the providers' list prices.
/// Check them: providers change prices, and a `[pricing]` entry wins.
pub const BUILTIN_AS_OF: &str = "2026-12-02";

/// Built-in list prices, USD per 1M tokens: (model, input, output, batch
/// input, batch output). OpenAI's and Anthropic's Batch APIs bill half.
pub const BUILTIN: &[(&str, f64, f64, f64, f64)] = &[
    ("gpt-4o-mini", 0.15, 0.60, 0.075, 0.30),
    ("gpt-4o", 2.50, 10.00, 1.25, 5.00),
    ("text-embedding-3-small", 0.02, 0.0, 0.01, 0.0),
    ("text-embedding-3-large", 0.13, 0.0, 0.065, 0.0),
    ("claude-haiku-4-5", 1.00, 5.00, 0.50, 2.50),
];

/// Tokens of one request, as the provider's answer reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
        }
    }
}

/// Where a price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Source {
    /// The built-in table, taken on this date.
    BuiltIn { as_of: &'static str },
    /// The pipeline's `[pricing]` table.
    Config,
}

/// One model's prices, USD per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub batch_input: f64,
    pub batch_output: f64,
    pub source: Source,
}

impl Price {
    /// USD for `prompt` input and `completion` output tokens.
    pub fn usd(&self, prompt: u64, completion: u64, batch: bool) -> f64 {
        let (input, output) = if batch {
            (self.batch_input, self.batch_output)
        } else {
            (self.input, self.output)
        };
        (prompt as f64 * input + completion as f64 * output) / 1_000_000.0
    }
}

/// The price table of a pipeline: built-in prices with the `[pricing]`
/// table on top.
#[derive(Debug, Clone, PartialEq)]
pub struct Pricing {
    models: BTreeMap<String, Price>,
}

impl Default for Pricing {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Pricing {
    /// The built-in prices only.
    pub fn builtin() -> Self {
        let models = BUILTIN
            .iter()
            .map(|&(model, input, output, batch_input, batch_output)| {
                let price = Price {
                    input,
                    output,
                    batch_input,
                    batch_output,
                    source: Source::BuiltIn {
                        as_of: BUILTIN_AS_OF,
                    },
                };
                (model.to_string(), price)
            })
            .collect();
        Pricing { models }
    }

    /// The built-in prices with `[pricing]` entries on top. Each entry is a
    /// key below `pricing.` (`gpt-4o-mini.input`, `"gpt-4.1".output`) and
    /// its value; errors name the full key (`pricing."gpt-4o-mini".input`).
    pub fn with_entries<'a>(
        entries: impl IntoIterator<Item = (&'a str, RawValue)>,
    ) -> Result<Self, PricingError> {
        let mut pricing = Self::builtin();
        for (model, price) in table::parse(entries)? {
            pricing.models.insert(model, price);
        }
        Ok(pricing)
    }

    /// Set one model's price (tests, embedders).
    pub fn insert(&mut self, model: impl Into<String>, price: Price) {
        self.models.insert(model.into(), price);
    }

    /// The model's prices; `None` when it has none.
    pub fn price(&self, model: &str) -> Option<&Price> {
        self.models.get(model)
    }

    /// Every priced model, by name.
    pub fn models(&self) -> impl Iterator<Item = (&str, &Price)> {
        self.models.iter().map(|(m, p)| (m.as_str(), p))
    }

    /// What `usage` cost: at the batch price when `batch`, else at the
    /// per-record price. `None` for a model without a price.
    pub fn cost_usd(&self, model: &str, usage: Usage, batch: bool) -> Option<f64> {
        self.price(model)
            .map(|p| p.usd(usage.prompt_tokens, usage.completion_tokens, batch))
    }

    /// The most a request can cost: its prompt tokens plus at most
    /// `max_completion_tokens` of output. `None` without a price.
    pub fn estimate_usd(
        &self,
        model: &str,
        prompt_tokens: u64,
        max_completion_tokens: u64,
        batch: bool,
    ) -> Option<f64> {
        self.price(model)
            .map(|p| p.usd(prompt_tokens, max_completion_tokens, batch))
    }

    /// What batch mode saved on `usage`: its per-record cost minus its batch
    /// cost. `None` without a price.
    pub fn saved_usd(&self, model: &str, usage: Usage) -> Option<f64> {
        let p = self.price(model)?;
        let (prompt, completion) = (usage.prompt_tokens, usage.completion_tokens);
        Some(p.usd(prompt, completion, false) - p.usd(prompt, completion, true))
    }
}
