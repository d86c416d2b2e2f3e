//! Glue between the configuration, the provider clients and the core's
//! vocabulary (failures and remote batch states).

use std::time::Duration;

use anyhow::bail;
use batch_api::anthropic::AnthropicClient;
use batch_api::generic::GenericClient;
use batch_api::openai::{azure_request_path, OpenAiClient};
use batch_api::wire::{RequestTemplate, Task, WireFormat};
use batch_api::{ApiError, BatchApi, ClientTimeouts, ErrorClass, RemoteBatch, RemoteStatus};
use batch_core::{BatchFailure, Failure, FailureKind, Remote, RemoteState};
use pipeline_config::{ModelConfig, PipelineConfig, Provider};

pub struct ProviderSetup {
    pub api: Box<dyn BatchApi>,
    pub template: RequestTemplate,
    pub format: WireFormat,
    pub task: Task,
}

pub fn wire_of(model: &ModelConfig) -> anyhow::Result<(WireFormat, Task)> {
    let task = match model.task {
        pipeline_config::Task::Chat => Task::Chat,
        pipeline_config::Task::Embeddings => Task::Embeddings,
    };
    let format = match model.provider {
        Provider::OpenAi | Provider::AzureOpenAi => WireFormat::OpenAi,
        Provider::Generic => WireFormat::Generic,
        Provider::Anthropic => {
            if task != Task::Chat {
                bail!("model.provider = \"anthropic\" supports only chat");
            }
            WireFormat::Anthropic
        }
    };
    Ok((format, task))
}

/// The batch endpoint put into request lines and `create`: the path of
/// `model.endpoint`, except for Azure, whose lines name the operation
/// without `/v1` or the deployment (`/chat/completions`, PROVIDERS.md §5).
pub fn request_path(model: &ModelConfig) -> String {
    match model.provider {
        Provider::AzureOpenAi => azure_request_path(&model.request_path),
        _ => model.request_path.clone(),
    }
}

pub fn template(model: &ModelConfig, format: WireFormat, task: Task) -> RequestTemplate {
    RequestTemplate::new(
        format,
        task,
        &request_path(model),
        &model.model,
        model.system_prompt.as_deref(),
        model.temperature,
        model.max_tokens,
    )
    .with_body_fields(&body_fields(model, format))
}

/// The sampling options (validated against the task and the provider by
/// the configuration), named as the provider's request body names them.
fn body_fields(model: &ModelConfig, format: WireFormat) -> Vec<(&'static str, serde_json::Value)> {
    let mut fields = Vec::new();
    if let Some(p) = model.top_p {
        fields.push(("top_p", p.into()));
    }
    if !model.stop.is_empty() {
        let name = match format {
            WireFormat::Anthropic => "stop_sequences",
            WireFormat::OpenAi | WireFormat::Generic => "stop",
        };
        fields.push((name, model.stop.clone().into()));
    }
    if let Some(s) = model.seed {
        fields.push(("seed", s.into()));
    }
    if let Some(d) = model.dimension {
        fields.push(("dimensions", d.into()));
    }
    fields
}

pub fn connect(cfg: &PipelineConfig) -> anyhow::Result<ProviderSetup> {
    let model = &cfg.model;
    let (format, task) = wire_of(model)?;
    let Some(endpoint) = cfg.batch.api_endpoint.as_deref() else {
        bail!("ml.batch.api.endpoint is required when ml.batch.enabled = true");
    };
    let key = model.api_key.as_ref().map(|k| k.expose().to_owned());
    let timeouts = ClientTimeouts {
        connect: Duration::from_secs(10),
        request: Duration::from_secs(300),
    };
    let path = request_path(model);
    let api: Box<dyn BatchApi> = match model.provider {
        Provider::OpenAi => Box::new(OpenAiClient::new(endpoint, key, &path, timeouts)?),
        // `api-key` header, `?api-version=` (not sent to the v1 API when
        // dated), Azure's limits.
        Provider::AzureOpenAi => Box::new(
            OpenAiClient::new(endpoint, key, &path, timeouts)?.azure(model.api_version.clone())?,
        ),
        Provider::Generic => Box::new(GenericClient::new(endpoint, None, key, timeouts)?),
        Provider::Anthropic => Box::new(AnthropicClient::new(
            endpoint,
            key,
            Some(&model.anthropic_version),
            timeouts,
        )?),
    };
    Ok(ProviderSetup {
        api,
        template: template(model, format, task),
        format,
        task,
    })
}

pub fn failure(e: &ApiError) -> Failure {
    let kind = match e.class {
        ErrorClass::Transient => FailureKind::Transient,
        ErrorClass::Ambiguous => FailureKind::Ambiguous,
        ErrorClass::NotFound => FailureKind::NotFound,
        ErrorClass::Permanent if matches!(e.status, Some(401 | 403)) => FailureKind::Auth,
        ErrorClass::Permanent => FailureKind::Permanent,
    };
    Failure {
        kind,
        retry_after_ms: e.retry_after.map(|d| d.as_millis() as u64),
        code: e.code.clone().unwrap_or_else(|| {
            e.status
                .map_or("request_failed".into(), |s| format!("http_{s}"))
        }),
        message: e.message.clone(),
    }
}

pub fn remote(b: RemoteBatch) -> Remote {
    let state = match b.status {
        RemoteStatus::Validating
        | RemoteStatus::InProgress
        | RemoteStatus::Finalizing
        | RemoteStatus::Cancelling => None,
        RemoteStatus::Completed => Some(RemoteState::Completed),
        RemoteStatus::Failed => Some(RemoteState::Failed),
        RemoteStatus::Expired => Some(RemoteState::Expired),
        RemoteStatus::Cancelled => Some(RemoteState::Cancelled),
    };
    let error = b.errors.into_iter().next().map(|e| BatchFailure {
        code: e.code,
        message: e.message,
    });
    Remote {
        id: b.id,
        state,
        output_file: b.output_file,
        error_file: b.error_file,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[source]
type = "file"
path = "in.jsonl"
[sink]
type = "file"
path = "out.jsonl"
[model]
model = "m"
input = "text"
[ml.batch]
enabled = true
"#;

    fn cfg(defines: &[&str]) -> PipelineConfig {
        let d: Vec<String> = defines.iter().map(|s| s.to_string()).collect();
        pipeline_config::parse_str(BASE, &d).unwrap()
    }

    #[test]
    fn every_provider_connects_with_its_wire_format() {
        for (defines, format, name, path) in [
            (
                vec![
                    "model.endpoint=http://h/v1/chat/completions",
                    "ml.batch.api.endpoint=http://h/v1",
                ],
                WireFormat::OpenAi,
                "openai",
                "/v1/chat/completions",
            ),
            (
                vec![
                    "model.provider=azure-openai",
                    "model.endpoint=https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21",
                    "ml.batch.api.endpoint=https://r.openai.azure.com/openai",
                ],
                WireFormat::OpenAi,
                "azure-openai",
                "/chat/completions",
            ),
            (
                vec![
                    "model.provider=anthropic",
                    "model.endpoint=https://api.anthropic.com/v1/messages",
                    "ml.batch.api.endpoint=https://api.anthropic.com/v1",
                ],
                WireFormat::Anthropic,
                "anthropic",
                "/v1/messages",
            ),
            (
                vec![
                    "model.provider=generic",
                    "model.task=chat",
                    "model.endpoint=http://h/ml/api/predict",
                    "ml.batch.api.endpoint=http://h/ml/api/batch_predict",
                ],
                WireFormat::Generic,
                "generic",
                "/ml/api/predict",
            ),
        ] {
            let c = cfg(&defines);
            assert_eq!(request_path(&c.model), path);
            let setup = connect(&c).unwrap();
            assert_eq!(setup.format, format);
            assert_eq!(setup.template.format(), format);
            assert_eq!(setup.api.name(), name);
            let mut line = Vec::new();
            setup.template.write_line(&mut line, "0-1", br#""hi""#);
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            match format {
                WireFormat::OpenAi => assert_eq!(v["url"], path),
                WireFormat::Anthropic => assert_eq!(v["params"]["max_tokens"], 1024),
                WireFormat::Generic => assert_eq!(v["input"]["messages"][0]["content"], "hi"),
            }
        }
    }

    #[test]
    fn sampling_options_reach_the_body_under_each_provider_s_names() {
        let openai = cfg(&[
            "model.endpoint=http://h/v1/chat/completions",
            "ml.batch.api.endpoint=http://h/v1",
            "model.top-p=0.5",
            "model.stop=END,###",
            "model.seed=42",
        ]);
        let anthropic = cfg(&[
            "model.provider=anthropic",
            "model.endpoint=https://api.anthropic.com/v1/messages",
            "ml.batch.api.endpoint=https://api.anthropic.com/v1",
            "model.top-p=0.5",
            "model.stop=END,###",
        ]);
        let embeddings = cfg(&[
            "model.endpoint=http://h/v1/embeddings",
            "ml.batch.api.endpoint=http://h/v1",
            "model.dimension=256",
        ]);
        let body = |c: &PipelineConfig| {
            let (format, task) = wire_of(&c.model).unwrap();
            let mut out = Vec::new();
            template(&c.model, format, task).write_sync_body(&mut out, br#""hi""#);
            serde_json::from_slice::<serde_json::Value>(&out).unwrap()
        };
        let b = body(&openai);
        assert_eq!((&b["top_p"], &b["seed"]), (&0.5.into(), &42.into()));
        assert_eq!(b["stop"], serde_json::json!(["END", "###"]));
        let b = body(&anthropic);
        assert_eq!(b["stop_sequences"], serde_json::json!(["END", "###"]));
        assert!(b.get("stop").is_none());
        assert_eq!(body(&embeddings)["dimensions"], 256);
    }
}
