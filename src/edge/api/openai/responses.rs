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
use crate::edge::api::http::{BodyKind, Claimed, Incoming};
use crate::edge::gateway;

pub async fn create_response(
    req: Request,
    env: &Env,
    ctx: &Context,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let incoming = Incoming::open(req, env, request_id, BodyKind::Json).await?;
    let body = &incoming.body;
    let decoded = responses::decode_request(body)?;
    let mut chat = decoded.chat;
    let mut prepared = gateway::prepare(incoming.call()?, &mut chat, body).await?;
    let tenant = prepared.call.caller.tenant_id.clone();
    let natives = gateway::native::plan(&mut prepared, NativeApi::Responses, |route| {
        let mut native = native::responses::build_request(route, body)?;
        native::responses::attribute_to_tenant(&mut native, route, &tenant)?;
        Ok(native)
    })?;
    let claimed = match incoming.claim(&prepared, chat.is_stream()).await? {
        Claimed::Fresh(key) => key,
        Claimed::Replayed(answer) => return Ok(answer),
    };
    let format = ClientFormat::Responses {
        meta: ResponseMeta {
            id: request_id.to_string(),
            created_at: incoming.started_at() / 1000,
            model: prepared.admitted.model.name.clone(),
        },
        params: Box::new(decoded.params),
    };
    gateway::native::run(prepared, &chat, natives, claimed, ctx, format).await
}
