//! `POST /v1/chat/completions`: decode, run the metered call (`edge::gateway`), answer. A request
//! that enables plugins or is a slash command is served by the tool loop (`edge::plugins`).

use worker::{Context, Env, Request, Response};

use crate::core::error::GatewayError;
use crate::core::openai::ChatCompletionRequest;
use crate::edge::api::http::{BodyKind, Claimed, Incoming};
use crate::edge::gateway;
use crate::edge::plugins;

pub async fn chat_completions(
    req: Request,
    env: &Env,
    ctx: &Context,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let incoming = Incoming::open(req, env, request_id, BodyKind::Json).await?;
    let mut chat = ChatCompletionRequest::from_json(&incoming.body)?;
    let mut prepared = gateway::prepare(incoming.call()?, &mut chat, &incoming.body).await?;
    // The key is claimed before plugins see the request: a retried plugin request (tool loop or
    // command) is answered from its record, never run and charged twice.
    let claimed = match incoming.claim(&prepared, chat.is_stream()).await? {
        Claimed::Fresh(key) => key,
        Claimed::Replayed(answer) => return Ok(answer),
    };
    let had_plugins_field = plugins::named_in(&chat);
    let intercepted = match plugins::intercept(&prepared, ctx, claimed.as_ref(), &mut chat).await {
        // The upstream requests were built with the plugin fields the tool loop removed.
        Ok(None) if had_plugins_field => prepared.rebuild(&chat).map(|()| None),
        other => other,
    };
    match intercepted {
        Ok(Some(response)) => Ok(response),
        Ok(None) => gateway::run(prepared, &chat, claimed, ctx).await,
        Err(err) => Err(gateway::release(&prepared, claimed, err).await),
    }
}
