//! `POST /v1/responses`: OpenAI's Responses API (Codex CLI, the Agents SDK,
//! `client.responses.create`). On a route that serves it natively (`openai` on OpenAI itself or
//! with `responses_api`, `azure`: `core::providers::native::serves_natively`) the client's body is
//! passed through and the provider's bytes relayed unchanged (`gateway::native`); on any other
//! route it is decoded to chat completions by `core::inbound::responses`, run through the same
//! metered call as chat and answered as a `response` object or the Responses event stream.
//! Errors are OpenAI-shaped, as on every OpenAI route.

use worker::{Context, Env, Request, Response};

use crate::core::error::GatewayError;
use crate::core::inbound::client::ClientFormat;
use crate::core::inbound::responses::{self, ResponseMeta};
use crate::core::providers::native::{self, NativeApi};
use crate::edge::api::http;
use crate::edge::gateway::{self, auth, context::Call};
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::env::settings;
use crate::edge::store::idempotency::Claim;

pub async fn create_response(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let started_at = now_ms();
    let max_body = settings(env).max_body_bytes;
    let caller = auth::authenticate(&req, env).await?;
    let body = http::read_body(&mut req, max_body).await?;
    let decoded = responses::decode_request(&body)?;
    let mut chat = decoded.chat;
    let call = Call::new(env, request_id, caller, req.headers(), started_at)?;
    let mut prepared = gateway::prepare(call, &mut chat, &body).await?;
    let tenant = prepared.call.caller.tenant_id.clone();
    let natives = gateway::native::plan(&mut prepared, NativeApi::Responses, |route| {
        let mut native = native::responses::build_request(route, &body)?;
        native::responses::attribute_to_tenant(&mut native, route, &tenant)?;
        Ok(native)
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
    let format = ClientFormat::Responses {
        meta: ResponseMeta {
            id: request_id.to_string(),
            created_at: started_at / 1000,
            model: prepared.admitted.model.name.clone(),
        },
        params: Box::new(decoded.params),
    };
    gateway::native::run(prepared, &chat, natives, claimed, ctx, format).await
}
