//! The router: every protocol's routes under the shared layers, plus
//! `/mock/stats`.

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::engine::store::Shared;
use crate::http::error::{ApiError, Style};
use crate::http::layers::{auth, inject_faults, track};
use crate::openai::{self, batches, files};
use crate::{anthropic, generic, sync};

pub(crate) fn router(st: Shared) -> Router {
    let body_limit = usize::try_from(st.cfg.max_file_bytes)
        .unwrap_or(usize::MAX)
        .max(anthropic::MAX_BODY_BYTES)
        .saturating_add(1 << 20);
    // Azure OpenAI: the OpenAI objects under `/openai/...` (dated
    // `api-version` required) and `/openai/v1/...` (none needed).
    let mut azure = Router::new();
    for prefix in ["/openai", "/openai/v1"] {
        azure = azure
            .route(
                &format!("{prefix}/files"),
                post(files::upload).get(files::list),
            )
            .route(
                &format!("{prefix}/files/{{id}}"),
                get(files::retrieve).delete(files::delete),
            )
            .route(
                &format!("{prefix}/files/{{id}}/content"),
                get(files::content),
            )
            .route(
                &format!("{prefix}/batches"),
                post(batches::create).get(batches::list),
            )
            .route(&format!("{prefix}/batches/{{id}}"), get(batches::retrieve))
            .route(
                &format!("{prefix}/batches/{{id}}/cancel"),
                post(batches::cancel),
            );
    }
    // Synchronous calls: per deployment (classic) or with `model` (v1).
    let azure = azure
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(sync::chat),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(sync::embeddings),
        )
        .route("/openai/v1/chat/completions", post(sync::chat))
        .route("/openai/v1/embeddings", post(sync::embeddings))
        .layer(from_fn(openai::azure_api_version));
    let messages = Router::new()
        .route(
            "/v1/messages/batches",
            post(anthropic::create).get(anthropic::list),
        )
        .route(
            "/v1/messages/batches/{id}",
            get(anthropic::retrieve).delete(anthropic::delete),
        )
        .route("/v1/messages/batches/{id}/results", get(anthropic::results))
        .route("/v1/messages/batches/{id}/cancel", post(anthropic::cancel))
        .route("/v1/messages", post(anthropic::message))
        .layer(from_fn(anthropic::anthropic_version));
    let api = Router::new()
        .merge(azure)
        .merge(messages)
        .route("/v1/files", post(files::upload).get(files::list))
        .route("/v1/files/{id}", get(files::retrieve).delete(files::delete))
        .route("/v1/files/{id}/content", get(files::content))
        .route("/v1/batches", post(batches::create).get(batches::list))
        .route("/v1/batches/{id}", get(batches::retrieve))
        .route("/v1/batches/{id}/cancel", post(batches::cancel))
        .route("/v1/chat/completions", post(sync::chat))
        .route("/v1/embeddings", post(sync::embeddings))
        .route("/ml/api/batch_predict", post(generic::submit))
        .route("/ml/api/batch/status/{id}", get(generic::status))
        .route("/ml/api/batch/results/{id}", get(generic::results))
        .route("/ml/api/batch/jobs", get(generic::jobs))
        .layer(from_fn_with_state(st.clone(), inject_faults))
        .layer(from_fn_with_state(st.clone(), auth))
        .layer(from_fn_with_state(st.clone(), track))
        .layer(DefaultBodyLimit::max(body_limit));
    api.route("/mock/stats", get(stats))
        .fallback(not_found)
        .with_state(st)
}

async fn stats(State(st): State<Shared>) -> Response {
    Json(st.stats.snapshot()).into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "Invalid URL ({} {})",
        req.method(),
        req.uri().path()
    ))
    .style(Style::of_path(req.uri().path()))
}
