//! Glue between the configuration, the provider clients and the core's
//! vocabulary (failures and remote batch states).

use std::time::Duration;

use anyhow::bail;
use batch_api::generic::GenericClient;
use batch_api::openai::OpenAiClient;
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
            bail!("model.provider = \"anthropic\" is not supported yet by this build")
        }
    };
    Ok((format, task))
}

pub fn template(model: &ModelConfig, format: WireFormat, task: Task) -> RequestTemplate {
    RequestTemplate::new(
        format,
        task,
        &model.request_path,
        &model.model,
        model.system_prompt.as_deref(),
        model.temperature,
        model.max_tokens,
    )
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
    let api: Box<dyn BatchApi> = match model.provider {
        Provider::OpenAi => Box::new(OpenAiClient::new(
            endpoint,
            key,
            &model.request_path,
            timeouts,
        )?),
        Provider::AzureOpenAi => Box::new(
            OpenAiClient::new(endpoint, key, &model.request_path, timeouts)?
                .with_name("azure-openai"),
        ),
        Provider::Generic => Box::new(GenericClient::new(endpoint, None, key, timeouts)?),
        Provider::Anthropic => unreachable!("refused by wire_of"),
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
