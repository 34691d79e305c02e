//! `POST /v1/messages` (also with `?beta=true`, as Claude Code sends it). On an `anthropic` route
//! the request is passed through natively (`gateway::native`: model and output cap set, the
//! client's `anthropic-version` / `anthropic-beta` forwarded, the provider's bytes relayed
//! unchanged); on any other route it is decoded to chat completions by `core::inbound::anthropic`,
//! run through the same metered call as chat and answered as an Anthropic `message` or its event
//! stream.

use worker::{Context, Env, Request, Response};

use crate::core::error::GatewayError;
use crate::core::inbound::anthropic::{self, MessageMeta};
use crate::core::inbound::client::ClientFormat;
use crate::core::providers::native::{self, NativeApi};
use crate::edge::api::http;
use crate::edge::gateway::{self, auth, context::Call};
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::env::settings;
use crate::edge::store::idempotency::Claim;

pub async fn create_message(
    req: Request,
    env: &Env,
    ctx: &Context,
    request_id: &str,
) -> Result<Response, GatewayError> {
    super::answer(run(req, env, ctx, request_id).await, request_id)
}

async fn run(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let started_at = now_ms();
    let max_body = settings(env).max_body_bytes;
    let caller = auth::authenticate(&req, env).await?;
    let body = http::read_body(&mut req, max_body).await?;
    let decoded = anthropic::decode_request(&body)?;
    let mut chat = decoded.to_chat()?;
    let call = Call::new(env, request_id, caller, req.headers(), started_at)?;
    let mut prepared = gateway::prepare(call, &mut chat, &body).await?;
    let client = native::messages::client_headers(|name| req.headers().get(name).ok().flatten());
    let natives = gateway::native::plan(&mut prepared, NativeApi::Messages, |route| {
        native::messages::build_request(route, &decoded, &client)
    })?;
    let key = req.headers().get("idempotency-key").ok().flatten();
    let claimed = match gateway::claim(&prepared, key, &body, chat.is_stream()).await? {
        Claim::Replay {
            http_status,
            body,
            request_id,
        } => return http::replay(http_status, body, &request_id),
        Claim::Fresh(key) => Some(key),
        Claim::None => None,
    };
    let format = ClientFormat::Messages {
        meta: MessageMeta {
            id: request_id.to_string(),
            model: prepared.admitted.model.name.clone(),
        },
        input_tokens: prepared.count.local_prompt_tokens,
    };
    gateway::native::run(prepared, &chat, natives, claimed, ctx, format).await
}
