//! `ml.batch.mode` and the handoff of decoupled mode (the FLIP's Option 2):
//! which combinations make sense, and where the batches are handed off.

use std::path::{Path, PathBuf};

use crate::build::Ctx;
use crate::*;

const TOPIC: &str = "ml.batch.handoff.topic";
const PATH: &str = "ml.batch.handoff.path";

/// A handoff key of the other kind of pipeline, with the key to use
/// instead: run before the generic scope check, whose message would not
/// say what to do.
pub(crate) fn check_kind(ctx: &Ctx<'_>, kafka_source: bool) -> Result<(), ConfigError> {
    let (wrong, right, pipeline, hands_to) = if kafka_source {
        (PATH, TOPIC, "kafka", "a topic")
    } else {
        (TOPIC, PATH, "file", "a file")
    };
    if ctx.is_set(wrong) {
        return Err(ConfigError::invalid(
            wrong,
            format!("a {pipeline} pipeline (source.type = \"{pipeline}\") hands its batches off to {hands_to}: use {right}"),
        ));
    }
    Ok(())
}

/// The mode, and in decoupled mode where batches are handed off.
pub(crate) fn build(
    ctx: &Ctx<'_>,
    enabled: bool,
    name: &str,
    source: &SourceConfig,
    sink: &SinkConfig,
) -> Result<(BatchMode, Option<Handoff>), ConfigError> {
    let mode = match ctx.str("ml.batch.mode")?.as_str() {
        "decoupled" => BatchMode::Decoupled,
        _ => BatchMode::Inline,
    };
    if mode == BatchMode::Inline {
        for key in [TOPIC, PATH] {
            if ctx.is_set(key) {
                return Err(ConfigError::NotApplicable {
                    key: key.into(),
                    condition: "ml.batch.mode = \"decoupled\"".into(),
                });
            }
        }
        return Ok((mode, None));
    }
    if !enabled {
        return Err(ConfigError::invalid(
            "ml.batch.mode",
            "\"decoupled\" hands off provider batches, so it needs batch mode: set ml.batch.enabled = true",
        ));
    }
    let handoff = match (source, sink) {
        (SourceConfig::File { path: input }, SinkConfig::File { path, dlq_path }) => {
            Handoff::File(file(ctx, input, path, dlq_path)?)
        }
        (SourceConfig::Kafka(src), SinkConfig::Kafka(out)) => {
            Handoff::Topic(topic(ctx, name, src, out)?)
        }
        _ => {
            return Err(ConfigError::invalid(
                "ml.batch.mode",
                "\"decoupled\" needs a file source with a file sink, or a kafka source with a kafka sink",
            ))
        }
    };
    Ok((mode, Some(handoff)))
}

fn file(ctx: &Ctx<'_>, input: &Path, out: &Path, dlq: &Path) -> Result<PathBuf, ConfigError> {
    let path = match ctx.str_opt(PATH)? {
        Some(p) => PathBuf::from(p),
        None => crate::build::beside(out, "handoff"),
    };
    if path.is_dir() {
        return Err(ConfigError::invalid(
            PATH,
            format!("{} is a directory; give a file's path", path.display()),
        ));
    }
    for (other, key) in [
        (input, "source.path"),
        (out, "sink.path"),
        (dlq, "sink.dlq.path"),
    ] {
        if path == other {
            return Err(ConfigError::invalid(
                PATH,
                format!("must differ from {key}"),
            ));
        }
    }
    Ok(path)
}

/// Kafka's rule for topic names.
fn legal_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn topic(
    ctx: &Ctx<'_>,
    name: &str,
    src: &KafkaSource,
    out: &KafkaSink,
) -> Result<String, ConfigError> {
    let topic = ctx
        .str_opt(TOPIC)?
        .unwrap_or_else(|| format!("{name}-batches"));
    if !legal_topic(&topic) {
        return Err(ConfigError::invalid(
            TOPIC,
            format!("{topic:?} is not a Kafka topic name (1 to 249 characters of a-z, A-Z, 0-9, `.`, `_` and `-`)"),
        ));
    }
    let dlq = out
        .dlq_topic
        .clone()
        .unwrap_or_else(|| format!("{}-dlq", out.topic));
    let state = format!("mlpredict-{name}-state");
    for (other, what) in [
        (&src.topic, "source.topic"),
        (&out.topic, "sink.topic"),
        (&dlq, "sink.dlq.topic"),
        (&state, "the state topic"),
    ] {
        if topic == *other {
            return Err(ConfigError::invalid(
                TOPIC,
                format!("must differ from {what} ({other})"),
            ));
        }
    }
    Ok(topic)
}
