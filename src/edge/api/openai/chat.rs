//! `POST /v1/chat/completions`: decode, run the metered call (`edge::gateway`), answer. A request
//! that enables plugins or is a slash command is served by the tool loop (`edge::plugins`).

use worker::{Context, Env, Request, Response};

use crate::core::error::GatewayError;
use crate::core::openai::ChatCompletionRequest;
use crate::edge::api::http;
use crate::edge::gateway::{self, auth, context::Call};
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::env::settings;
use crate::edge::plugins;
use crate::edge::store::idempotency::Claim;

pub async fn chat_completions(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let started_at = now_ms();
    let max_body = settings(env).max_body_bytes;
    let caller = auth::authenticate(&req, env).await?;
    let body = http::read_body(&mut req, max_body).await?;
    let mut chat = ChatCompletionRequest::from_json(&body)?;
    let call = Call::new(env, request_id, caller, req.headers(), started_at)?;
    let mut prepared = gateway::prepare(call, &mut chat, &body).await?;
    // The key is claimed before plugins see the request: a retried plugin request (tool loop or
    // command) is answered from its record, never run and charged twice.
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
