//! `POST /v1/tokens/count`: the prompt tokens a chat request would be counted (and reserved)
//! for, without calling the model or touching the balance.

use crate::edge::store;
use serde_json::json;
use worker::{Env, Request, Response};

use crate::core::error::{ErrorKind, GatewayError};
use crate::core::openai::ChatCompletionRequest;
use crate::core::tokens::{count_chat_prompt, resolve_encoding};
use crate::edge::api::http;
use crate::edge::platform::d1 as db;
use crate::edge::platform::env::settings;

/// `{model, messages, tools?}` → `{object, model, prompt_tokens, encoding}`. The body is read
/// like a chat completion request (other fields are accepted and ignored). 400 for models that
/// Tollgate has no local tokenizer for.
pub async fn count_tokens(mut req: Request, env: &Env) -> Result<Response, GatewayError> {
    let caller = crate::edge::gateway::auth::live_caller(&req, env).await?;
    let body = http::read_body(&mut req, settings(env).max_body_bytes).await?;
    let chat = ChatCompletionRequest::from_json(&body)?;
    let model = store::models::cached_model(&db::database(env)?, &chat.model, &caller.tenant_id)
        .await?
        .filter(|m| caller.may_use(&m.name))
        .ok_or_else(|| {
            GatewayError::new(
                ErrorKind::ModelNotFound,
                format!("The model `{}` does not exist.", chat.model),
            )
            .with_code("model_not_found")
        })?;
    let encoding = resolve_encoding(
        model.encoding.as_deref(),
        &model.upstream_model,
        &model.name,
    )
    .ok_or_else(|| {
        GatewayError::invalid_param(
            "model",
            format!(
                "Tollgate has no local tokenizer for the model `{}`: exact counts are available \
                 for the encodings {} only. An operator can set the model's `encoding` if it \
                 uses one of them.",
                model.name,
                crate::core::tokens::encoding_names()
            ),
        )
        .with_code("tokenizer_unavailable")
    })?;
    http::json(
        200,
        &json!({
            "object": "tokens.count",
            "model": model.name,
            "prompt_tokens": count_chat_prompt(encoding, &chat),
            "encoding": encoding.name(),
        }),
    )
}
