//! The OpenAI objects the fake model's answers are written in, shared by the
//! batch result lines and the synchronous endpoints.

use serde::Serialize;

/// A `chat.completion` object.
#[derive(Serialize)]
pub(crate) struct ChatCompletion<'a> {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub model: &'a str,
    pub choices: [Choice<'a>; 1],
    pub usage: CompletionUsage,
    pub service_tier: &'static str,
    pub system_fingerprint: &'static str,
}

#[derive(Serialize)]
pub(crate) struct Choice<'a> {
    pub index: u32,
    pub message: Message<'a>,
    pub logprobs: Option<()>,
    pub finish_reason: &'static str,
}

#[derive(Serialize)]
pub(crate) struct Message<'a> {
    pub role: &'static str,
    pub content: &'a str,
    pub refusal: Option<()>,
    pub annotations: [(); 0],
}

#[derive(Serialize)]
pub(crate) struct CompletionUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    pub prompt_tokens_details: PromptDetails,
    pub completion_tokens_details: CompletionDetails,
}

#[derive(Serialize)]
pub(crate) struct PromptDetails {
    pub cached_tokens: u32,
    pub audio_tokens: u32,
}

#[derive(Serialize)]
pub(crate) struct CompletionDetails {
    pub reasoning_tokens: u32,
    pub audio_tokens: u32,
    pub accepted_prediction_tokens: u32,
    pub rejected_prediction_tokens: u32,
}

impl<'a> ChatCompletion<'a> {
    pub(crate) fn new(
        id: String,
        created: i64,
        model: &'a str,
        reply: &'a str,
        prompt: u32,
        completion: u32,
    ) -> Self {
        ChatCompletion {
            id,
            object: "chat.completion",
            created,
            model,
            choices: [Choice {
                index: 0,
                message: Message {
                    role: "assistant",
                    content: reply,
                    refusal: None,
                    annotations: [],
                },
                logprobs: None,
                finish_reason: "stop",
            }],
            usage: CompletionUsage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt + completion,
                prompt_tokens_details: PromptDetails {
                    cached_tokens: 0,
                    audio_tokens: 0,
                },
                completion_tokens_details: CompletionDetails {
                    reasoning_tokens: 0,
                    audio_tokens: 0,
                    accepted_prediction_tokens: 0,
                    rejected_prediction_tokens: 0,
                },
            },
            service_tier: "default",
            system_fingerprint: "fp_mock",
        }
    }
}

/// An embeddings `list` object.
#[derive(Serialize)]
pub(crate) struct EmbeddingList<'a, E: Serialize> {
    pub object: &'static str,
    pub data: Vec<EmbeddingItem<E>>,
    pub model: &'a str,
    pub usage: EmbeddingUsage,
}

#[derive(Serialize)]
pub(crate) struct EmbeddingItem<E: Serialize> {
    pub object: &'static str,
    pub index: usize,
    pub embedding: E,
}

#[derive(Serialize)]
pub(crate) struct EmbeddingUsage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
}

impl<'a, E: Serialize> EmbeddingList<'a, E> {
    pub(crate) fn new(model: &'a str, vectors: impl IntoIterator<Item = E>, tokens: u32) -> Self {
        EmbeddingList {
            object: "list",
            data: vectors
                .into_iter()
                .enumerate()
                .map(|(index, embedding)| EmbeddingItem {
                    object: "embedding",
                    index,
                    embedding,
                })
                .collect(),
            model,
            usage: EmbeddingUsage {
                prompt_tokens: tokens,
                total_tokens: tokens,
            },
        }
    }
}
