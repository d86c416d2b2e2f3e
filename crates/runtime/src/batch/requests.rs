//! A batch's request file, rebuilt from the source when it is missing (a
//! crash before it was sealed, a retry batch, or a lane taken over from
//! another instance).

use std::io::Write;
use std::path::PathBuf;

use anyhow::bail;
use batch_api::wire::RequestTemplate;
use batch_core::{write_custom_id, Batch};

use super::local::LocalDir;
use crate::ledger::BatchRecords;
use crate::record::{Fields, Unusable};

/// The one rule for whether a record becomes a request, and its request
/// line: at intake, when a request file is rebuilt, and in the join (a
/// record that is not a request went to the dead letters at its cut).
pub struct Requests<'a> {
    pub fields: Fields<'a>,
    pub template: &'a RequestTemplate,
    /// A request line longer than a batch may hold is refused at intake,
    /// never uploaded alone to be rejected (`ml.batch.max.bytes`, or the
    /// provider's file limit).
    pub max_bytes: u64,
    /// Token estimates, when a limit or a budget needs them.
    pub tokens: Option<&'a Tokens>,
}

/// The token estimator and the limit a single request must fit in.
pub struct Tokens {
    pub estimator: super::tokens::Estimator,
    /// `ml.batch.max.enqueued-tokens`: a request over it could never be
    /// sent, so it is refused at intake.
    pub limit: Option<u64>,
    /// Prices for the budget's estimates; `None` without a budget.
    pub price: Option<TokenPrice>,
}

/// Batch prices in nano-USD per token, and the output tokens a request is
/// assumed to produce.
#[derive(Debug, Clone, Copy)]
pub struct TokenPrice {
    pub input: f64,
    pub output: f64,
    pub max_output: u64,
}

impl TokenPrice {
    /// From USD per 1M tokens.
    pub fn per_million(input: f64, output: f64, max_output: u64) -> Self {
        Self {
            input: input * 1_000.0,
            output: output * 1_000.0,
            max_output,
        }
    }

    /// A request of `tokens` input tokens, rounded up.
    pub fn estimate(&self, tokens: u64) -> batch_core::NanoUsd {
        (tokens as f64 * self.input + self.max_output as f64 * self.output).ceil() as u64
    }

    /// What `tokens` tokens of an answered batch cost at most (every one
    /// at the output price), until per-record usage is priced.
    pub fn at_most(&self, tokens: u64) -> batch_core::NanoUsd {
        (tokens as f64 * self.output).ceil() as u64
    }
}

impl Requests<'_> {
    /// Write the request line of the record at `pos` of `lane` into `out`
    /// (cleared first), or say why the record cannot be one.
    pub fn line(
        &self,
        lane: batch_core::LaneId,
        pos: batch_core::Position,
        value: Option<&[u8]>,
        custom_id: &mut String,
        out: &mut Vec<u8>,
    ) -> Result<(), Unusable> {
        self.line_with(lane, pos, value, custom_id, out, false)
            .map(drop)
    }

    /// [`Requests::line`], and with `estimate` (at intake) the request's
    /// token estimate too (0 without an estimator): counted once, there.
    pub fn line_with(
        &self,
        lane: batch_core::LaneId,
        pos: batch_core::Position,
        value: Option<&[u8]>,
        custom_id: &mut String,
        out: &mut Vec<u8>,
        estimate: bool,
    ) -> Result<u64, Unusable> {
        let usable = self.fields.parse_value(value)?;
        let tokens = self.tokens.map_or(0, |t| {
            let input = usable.input.get();
            // Counting is only needed when the cheap bound does not settle
            // the limit, or for the estimate itself.
            let over = t.limit.is_some_and(|l| t.estimator.upper_bound(input) > l);
            if estimate || over {
                t.estimator.estimate(input)
            } else {
                0
            }
        });
        if let Some(limit) = self.tokens.and_then(|t| t.limit) {
            if tokens > limit {
                return Err(Unusable(format!(
                    "its request is about {tokens} tokens, more than ml.batch.max.enqueued-tokens ({limit}) lets one batch hold"
                )));
            }
        }
        write_custom_id(custom_id, lane, pos);
        out.clear();
        self.template
            .write_line(out, custom_id, usable.input.get().as_bytes());
        if out.len() as u64 > self.max_bytes {
            return Err(Unusable(format!(
                "its request is {} bytes, more than a batch may hold ({} bytes: ml.batch.max.bytes, or the provider's file limit)",
                out.len(),
                self.max_bytes
            )));
        }
        Ok(tokens)
    }
}

pub fn ensure_requests(
    local: &LocalDir,
    requests: &Requests<'_>,
    batch: &Batch,
    records: &mut dyn BatchRecords,
) -> anyhow::Result<PathBuf> {
    let path = local.requests(batch.id);
    if path.exists() {
        return Ok(path);
    }
    let tmp = path.with_extension("part");
    let mut w = LocalDir::create(&tmp)?;
    let mut custom_id = String::new();
    let mut written = 0u32;
    let mut out = Vec::new();
    let mut io_error = None;
    records.visit(batch, &mut |pos, _key, line| {
        if requests
            .line(batch.lane, pos, Some(line), &mut custom_id, &mut out)
            .is_ok()
        {
            if let Err(e) = w.write_all(&out) {
                io_error.get_or_insert(e);
            }
            written += 1;
        }
    })?;
    if let Some(e) = io_error {
        return Err(e.into());
    }
    if written != batch.records {
        bail!(
            "batch {} should hold {} records but the source now gives {written}: the source changed under the pipeline; \
             restore the input as it was, or start a new pipeline (another pipeline.name or ml.batch.local.dir)",
            batch.number,
            batch.records
        );
    }
    local.seal(w, &tmp, &path)?;
    Ok(path)
}
