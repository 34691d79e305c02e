//! `POST /v1/messages/count_tokens`: the prompt tokens of a Messages request, without calling the
//! model or touching the balance. On an `anthropic` route the provider's own `count_tokens`
//! answers (`gateway::native::count_tokens`); on any other route, or when the provider does not
//! answer a count, the gateway's local count, the way it counts a request for its reservation
//! (docs/agents.md says how exact that is per model).

use worker::{Env, Request, Response};

use crate::core::error::GatewayError;
use crate::core::inbound::anthropic;
use crate::core::providers::native::messages;
use crate::edge::api::http::{self, BodyKind, Incoming};
use crate::edge::gateway;

pub async fn count_tokens(
    req: Request,
    env: &Env,
    request_id: &str,
) -> Result<Response, GatewayError> {
    super::answer(run(req, env, request_id).await, request_id)
}

async fn run(req: Request, env: &Env, request_id: &str) -> Result<Response, GatewayError> {
    let incoming = Incoming::open(req, env, request_id, BodyKind::Json).await?;
    let decoded = anthropic::decode_count_tokens(&incoming.body)?;
    let mut chat = decoded.to_chat()?;
    // Admitted and counted like a request, nothing reserved.
    let prepared = gateway::prepare(incoming.call()?, &mut chat, &incoming.body).await?;
    let client = messages::client_headers(|name| incoming.header(name));
    let (tokens, source) = match gateway::native::count_tokens(&prepared, &decoded, &client).await {
        Some(tokens) => (tokens, "upstream"),
        None => (prepared.count.local_prompt_tokens, "local"),
    };
    let mut resp = http::json(200, &anthropic::count_tokens_body(tokens))?;
    let _ = resp.headers_mut().set("x-tollgate-count-source", source);
    Ok(resp)
}
