//! The `[pricing]` table: entries `pricing."<model>".<field>` → prices,
//! with errors that name the key.

use std::collections::BTreeMap;

use crate::{Price, Source};

/// The discount of a Batch API when an entry gives neither
/// `batch-discount` nor batch prices: OpenAI and Anthropic bill half.
pub const DEFAULT_BATCH_DISCOUNT: f64 = 0.5;

const FIELDS: &str = "input, output, batch-input, batch-output or batch-discount";

/// A value of the table, before it is checked.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Number(f64),
    /// Not a number; the text is how the value is shown in the error.
    Other(String),
}

/// A `[pricing]` entry that is wrong. `key` is the full dotted key with the
/// model quoted: `pricing."gpt-4o-mini".input`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct PricingError {
    pub key: String,
    pub message: String,
}

fn err(model: &str, field: Option<&str>, message: impl Into<String>) -> PricingError {
    let key = match field {
        Some(f) => format!("pricing.{model:?}.{f}"),
        None => format!("pricing.{model:?}"),
    };
    PricingError {
        key,
        message: message.into(),
    }
}

#[derive(Default)]
struct Fields {
    input: Option<f64>,
    output: Option<f64>,
    batch_input: Option<f64>,
    batch_output: Option<f64>,
    batch_discount: Option<f64>,
}

/// `"gpt-4.1".input` or `gpt-4.1.input` → (`gpt-4.1`, `input`): field names
/// hold no dots, model names may.
fn split(key: &str) -> Option<(&str, &str)> {
    if let Some(quoted) = key.strip_prefix('"') {
        let (model, rest) = quoted.split_once('"')?;
        return Some((model, rest.strip_prefix('.')?));
    }
    key.rsplit_once('.')
}

fn number(
    model: &str,
    field: &str,
    value: RawValue,
    max: Option<f64>,
) -> Result<f64, PricingError> {
    let expected = match max {
        Some(max) => format!("expected a number from 0 to {max}"),
        None => "expected a number of USD per 1M tokens, at least 0".to_string(),
    };
    match value {
        RawValue::Number(n) if n.is_finite() && n >= 0.0 && max.is_none_or(|m| n <= m) => Ok(n),
        RawValue::Number(n) => Err(err(model, Some(field), format!("{expected}, got {n}"))),
        RawValue::Other(shown) => Err(err(model, Some(field), format!("{expected}, got {shown}"))),
    }
}

pub(crate) fn parse<'a>(
    entries: impl IntoIterator<Item = (&'a str, RawValue)>,
) -> Result<BTreeMap<String, Price>, PricingError> {
    let mut models: BTreeMap<String, Fields> = BTreeMap::new();
    for (key, value) in entries {
        let Some((model, field)) = split(key) else {
            let model = key.trim_matches('"');
            return Err(err(
                model,
                None,
                format!("expected a table [pricing.{model:?}] with input and output (USD per 1M tokens)"),
            ));
        };
        if model.is_empty() {
            return Err(err(model, Some(field), "the model name is empty"));
        }
        let f = models.entry(model.to_string()).or_default();
        let slot = match field {
            "input" => &mut f.input,
            "output" => &mut f.output,
            "batch-input" => &mut f.batch_input,
            "batch-output" => &mut f.batch_output,
            "batch-discount" => {
                f.batch_discount = Some(number(model, field, value, Some(1.0))?);
                continue;
            }
            _ => {
                return Err(err(
                    model,
                    Some(field),
                    format!("unknown field (expected {FIELDS})"),
                ))
            }
        };
        *slot = Some(number(model, field, value, None)?);
    }
    models
        .into_iter()
        .map(|(model, f)| {
            let price = price(&model, f)?;
            Ok((model, price))
        })
        .collect()
}

fn price(model: &str, f: Fields) -> Result<Price, PricingError> {
    let missing = |field| {
        err(
            model,
            Some(field),
            format!("missing: an entry [pricing.{model:?}] needs input and output"),
        )
    };
    let input = f.input.ok_or_else(|| missing("input"))?;
    let output = f.output.ok_or_else(|| missing("output"))?;
    let (batch_input, batch_output) = match (f.batch_input, f.batch_output, f.batch_discount) {
        (None, None, discount) => {
            let keep = 1.0 - discount.unwrap_or(DEFAULT_BATCH_DISCOUNT);
            (input * keep, output * keep)
        }
        (Some(_), Some(_), Some(_)) | (Some(_), None, Some(_)) | (None, Some(_), Some(_)) => {
            return Err(err(
                model,
                Some("batch-discount"),
                "give either batch-discount or batch-input and batch-output, not both",
            ))
        }
        (Some(bi), Some(bo), None) => (bi, bo),
        (Some(_), None, None) => {
            return Err(err(
                model,
                Some("batch-output"),
                "missing: batch-input is given, so batch-output is needed too",
            ))
        }
        (None, Some(_), None) => {
            return Err(err(
                model,
                Some("batch-input"),
                "missing: batch-output is given, so batch-input is needed too",
            ))
        }
    };
    Ok(Price {
        input,
        output,
        batch_input,
        batch_output,
        source: Source::Config,
    })
}
