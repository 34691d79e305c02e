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
use crate::edge::api::http::{BodyKind, Claimed, Incoming};
use crate::edge::gateway;

pub async fn create_message(
    req: Request,
    env: &Env,
    ctx: &Context,
    request_id: &str,
) -> Result<Response, GatewayError> {
    super::answer(run(req, env, ctx, request_id).await, request_id)
}

async fn run(
    req: Request,
    env: &Env,
    ctx: &Context,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let incoming = Incoming::open(req, env, request_id, BodyKind::Json).await?;
    let decoded = anthropic::decode_request(&incoming.body)?;
    let mut chat = decoded.to_chat()?;
    let mut prepared = gateway::prepare(incoming.call()?, &mut chat, &incoming.body).await?;
    let client = native::messages::client_headers(|name| incoming.header(name));
    let natives = gateway::native::plan(&mut prepared, NativeApi::Messages, |route| {
        native::messages::build_request(route, &decoded, &client)
    })?;
    let claimed = match incoming.claim(&prepared, chat.is_stream()).await? {
        Claimed::Fresh(key) => key,
        Claimed::Replayed(answer) => return Ok(answer),
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
