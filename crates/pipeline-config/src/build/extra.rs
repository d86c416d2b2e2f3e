//! The model's sampling options (`model.top-p`, `stop`, `seed`,
//! `dimension`) and the output rows (`sink.columns`, `pipeline.on-error`):
//! each is checked against the task and the provider it is sent to.

use super::Ctx;
use crate::columns;
use crate::value::Typed;
use crate::{ConfigError, OnError, OutputConfig, Provider, Task};

/// What [`sampling`] reads.
pub(super) struct Sampling {
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    pub seed: Option<i64>,
    pub dimension: Option<u32>,
}

/// OpenAI's limit on stop sequences.
const OPENAI_MAX_STOP: usize = 4;

pub(super) fn sampling(
    ctx: &Ctx<'_>,
    provider: Provider,
    task: Task,
) -> Result<Sampling, ConfigError> {
    let chat_only = ["model.top-p", "model.stop", "model.seed"];
    for key in chat_only {
        if task == Task::Embeddings && ctx.is_set(key) {
            return Err(ConfigError::invalid(
                key,
                "applies to chat models, not embeddings",
            ));
        }
    }
    if task == Task::Chat && ctx.is_set("model.dimension") {
        return Err(ConfigError::invalid(
            "model.dimension",
            "applies to embedding models, not chat",
        ));
    }
    if provider == Provider::Anthropic && ctx.is_set("model.seed") {
        return Err(ConfigError::invalid(
            "model.seed",
            "the anthropic provider has no seed parameter; remove it",
        ));
    }
    let stop: Vec<String> = match ctx.str_opt("model.stop")? {
        None => Vec::new(),
        // Flink's CSV list: split on commas, nothing trimmed.
        Some(s) => s.split(',').map(str::to_string).collect(),
    };
    if stop.iter().any(String::is_empty) {
        return Err(ConfigError::invalid(
            "model.stop",
            "holds an empty stop sequence (two commas, or one at an end)",
        ));
    }
    if matches!(provider, Provider::OpenAi | Provider::AzureOpenAi) && stop.len() > OPENAI_MAX_STOP
    {
        return Err(ConfigError::invalid(
            "model.stop",
            format!(
                "the {} provider takes at most {OPENAI_MAX_STOP} stop sequences, got {}",
                provider.as_str(),
                stop.len()
            ),
        ));
    }
    Ok(Sampling {
        top_p: match ctx.get("model.top-p")? {
            Some(Typed::Float(f)) => Some(f),
            None => None,
            other => unreachable!("model.top-p: {other:?}"),
        },
        stop,
        seed: ctx.int_opt("model.seed")?,
        dimension: ctx.u32_opt("model.dimension")?,
    })
}

pub(super) fn output(ctx: &Ctx<'_>, model_output: &str) -> Result<OutputConfig, ConfigError> {
    let columns = match ctx.str_opt("sink.columns")? {
        None => None,
        Some(text) => {
            let cols = columns::parse(&text)
                .map_err(|message| ConfigError::invalid("sink.columns", message))?;
            if let Some(c) = cols.iter().find(|c| c.from == model_output) {
                let fits = matches!(
                    &c.ty,
                    crate::ColumnType::String | crate::ColumnType::Array(_)
                );
                if !fits {
                    return Err(ConfigError::invalid(
                        "sink.columns",
                        format!(
                            "column `{}` takes the model's output `{model_output}`: its type must be STRING (chat) or ARRAY<FLOAT> (embeddings), not {}",
                            c.name, c.ty
                        ),
                    ));
                }
            }
            Some(cols)
        }
    };
    let on_error = match ctx.str("pipeline.on-error")?.as_str() {
        "failover" => OnError::Failover,
        _ => OnError::Emit,
    };
    Ok(OutputConfig { columns, on_error })
}
