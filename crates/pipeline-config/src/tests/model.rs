//! `[model]`: the task, providers and their own keys, model fields.

use super::*;

#[test]
fn task_is_derived_from_the_endpoint() {
    let c = ok(MIN, &["model.endpoint=http://h/v1/embeddings"]);
    assert_eq!(c.model.task, Task::Embeddings);
    assert_eq!(c.model.request_path, "/v1/embeddings");
    let c = ok(
        MIN,
        &["model.endpoint=https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21", "model.provider=azure-openai"],
    );
    assert_eq!(c.model.task, Task::Chat);
    assert_eq!(
        c.model.request_path,
        "/openai/deployments/d/chat/completions"
    );
    assert_err(
        MIN,
        &["model.endpoint=http://h/v1/completions"],
        "model.endpoint: cannot derive the task from the path \"/v1/completions\" (expected it to end in /chat/completions or /embeddings); set model.task",
    );
    let e = err(MIN, &["model.endpoint=http://h"]);
    assert!(e.to_string().contains("\"/\""), "{e}");
}

#[test]
fn explicit_task() {
    let c = ok(
        MIN,
        &[
            "model.provider=generic",
            "model.endpoint=http://h/ml/api/predict",
            "model.task=embeddings",
        ],
    );
    assert_eq!(c.model.provider, Provider::Generic);
    assert_eq!(c.model.task, Task::Embeddings);
    assert_eq!(c.model.request_path, "/ml/api/predict");
    assert_err(
        MIN,
        &["model.task=embeddings"],
        "model.task: \"embeddings\" does not match the path of model.endpoint (/v1/chat/completions)",
    );
    assert_err(
        MIN,
        &["model.task=completion"],
        "model.task: expected one of \"chat\", \"embeddings\", got \"completion\"",
    );
    assert_eq!(ok(MIN, &["model.task=CHAT"]).model.task, Task::Chat);
}

#[test]
fn anthropic_defaults() {
    let c = ok(
        MIN,
        &[
            "model.provider=anthropic",
            "model.endpoint=https://api.anthropic.com/v1/messages",
        ],
    );
    assert_eq!(c.model.provider, Provider::Anthropic);
    assert_eq!(c.model.task, Task::Chat);
    assert_eq!(c.model.max_tokens, Some(1024));
    assert_eq!(c.model.anthropic_version, "2023-06-01");
    assert_eq!(c.model.api_version, None);
    let c = ok(
        MIN,
        &[
            "model.provider=anthropic",
            "model.endpoint=https://api.anthropic.com/v1/messages",
            "model.max-tokens=64",
            "model.anthropic-version=2024-01-01",
        ],
    );
    assert_eq!(c.model.max_tokens, Some(64));
    assert_eq!(c.model.anthropic_version, "2024-01-01");
    assert_err(
        MIN,
        &[
            "model.provider=anthropic",
            "model.endpoint=https://api.anthropic.com/v1/messages",
            "model.task=embeddings",
        ],
        "model.task: the anthropic provider supports only \"chat\"",
    );
    // /messages means chat only for anthropic
    assert_err_key(
        MIN,
        &["model.endpoint=https://h/v1/messages"],
        "model.endpoint",
    );
}

#[test]
fn azure_api_version() {
    let azure = ["model.provider=Azure-OpenAI"];
    let c = ok(MIN, &azure);
    assert_eq!(c.model.provider, Provider::AzureOpenAi);
    assert_eq!(c.model.api_version.as_deref(), Some("2024-10-21"));
    let c = ok(MIN, &[azure[0], "model.api-version=2025-01-01-preview"]);
    assert_eq!(c.model.api_version.as_deref(), Some("2025-01-01-preview"));
    let c = ok(MIN, &[azure[0], "model.api-version="]);
    assert_eq!(c.model.api_version, None);
}

#[test]
fn provider_specific_keys_only_apply_to_their_provider() {
    assert_err(
        MIN,
        &["model.api-version=2024-10-21"],
        "model.api-version only applies when model.provider = \"azure-openai\"",
    );
    assert_err(
        MIN,
        &["model.anthropic-version=2023-06-01"],
        "model.anthropic-version only applies when model.provider = \"anthropic\"",
    );
    assert_err(
        MIN,
        &["model.provider=mistral"],
        "model.provider: expected one of \"openai\", \"azure-openai\", \"anthropic\", \"generic\", got \"mistral\"",
    );
}

#[test]
fn model_field_rules() {
    assert_err(
        MIN,
        &["model.output=text"],
        "model.output: must differ from model.input",
    );
    assert_err_key(MIN, &["model.output=ml_predict"], "model.output");
    assert_err(
        MIN,
        &["model.temperature=2.5"],
        "model.temperature: must be between 0 and 2, got 2.5",
    );
    assert_err(
        MIN,
        &["model.temperature=hot"],
        "model.temperature: expected a number, got \"hot\"",
    );
    assert_eq!(
        ok(MIN, &["model.temperature=2"]).model.temperature,
        Some(2.0)
    );
    assert_eq!(
        ok(MIN, &["model.temperature=0"]).model.temperature,
        Some(0.0)
    );
    assert_err(
        MIN,
        &["model.max-tokens=0"],
        "model.max-tokens: expected a positive integer, got 0",
    );
    assert_eq!(
        ok(MIN, &["model.max-tokens=256"]).model.max_tokens,
        Some(256)
    );
    assert_eq!(ok(MIN, &["model.system-prompt="]).model.system_prompt, None);
    assert_err(MIN, &["model.model="], "model.model: must not be empty");
}
