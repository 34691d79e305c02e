//! `POST /v1/messages/count_tokens`: the prompt tokens of a Messages request, counted locally the
//! way the gateway counts a request for its reservation (docs/agents.md says how exact that is
//! per model), without calling the model or touching the balance.

use worker::{Env, Request, Response};

use crate::core::error::GatewayError;
use crate::core::inbound::anthropic;
use crate::edge::api::http;
use crate::edge::gateway::{self, auth, context::Call};
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::env::settings;

pub async fn count_tokens(
    req: Request,
    env: &Env,
    request_id: &str,
) -> Result<Response, GatewayError> {
    super::answer(run(req, env, request_id).await, request_id)
}

async fn run(mut req: Request, env: &Env, request_id: &str) -> Result<Response, GatewayError> {
    let started_at = now_ms();
    let caller = auth::authenticate(&req, env).await?;
    let body = http::read_body(&mut req, settings(env).max_body_bytes).await?;
    let mut chat = anthropic::decode_count_tokens(&body)?.to_chat()?;
    let call = Call::new(env, request_id, caller, req.headers(), started_at)?;
    // Admitted and counted like a request, nothing reserved or sent.
    let prepared = gateway::prepare(call, &mut chat, &body).await?;
    http::json(
        200,
        &anthropic::count_tokens_body(prepared.count.local_prompt_tokens),
    )
}
