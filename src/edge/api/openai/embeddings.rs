//! `POST /v1/embeddings`: decode (`core::inbound::embeddings`), the metered media call
//! (`edge::gateway::media`), the OpenAI list in the client's `encoding_format`.

use worker::{Context, Env, Request, Response};

use crate::core::error::GatewayError;
use crate::core::inbound::embeddings::{decode_request, encode_response};
use crate::core::providers::media::{self, bill, MediaApi};
use crate::edge::api::http;
use crate::edge::gateway::media::{self as metered, Answer};
use crate::edge::gateway::{self, auth, context::Call};
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::env::settings;
use crate::edge::store::idempotency::Claim;

pub async fn embeddings(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let started_at = now_ms();
    let max_body = settings(env).max_body_bytes;
    let caller = auth::authenticate(&req, env).await?;
    let body = http::read_body(&mut req, max_body).await?;
    let request = decode_request(&body)?;
    let call = Call::new(env, request_id, caller, req.headers(), started_at)?;
    let mp = metered::prepare(
        call,
        &request.model,
        MediaApi::Embeddings,
        |admitted, _| Ok(request.reservation_usage(admitted.encoding)),
        |route| media::build_embeddings(route, &request),
    )
    .await?;
    let encoding = mp.prepared.admitted.encoding;
    let key = req.headers().get("idempotency-key").ok().flatten();
    let claimed = match gateway::claim(&mp.prepared, key, &body, false).await? {
        Claim::Replay {
            http_status,
            body,
            request_id,
        } => return http::replay(http_status, body, &request_id),
        Claim::Fresh(key) => Some(key),
        Claim::None => None,
    };
    let (pending, answer, base_url) = match metered::call(mp, false, claimed, ctx).await {
        Ok(Answer::Plain(pending, answer, base_url)) => (pending, answer, base_url),
        Ok(Answer::Stream(pending, _)) => {
            let err = GatewayError::internal("an embeddings answer streamed");
            return metered::failed(pending, err, ctx).await;
        }
        Err(done) => return done,
    };
    let parsed = media::parse_embeddings(pending.kind, &base_url, &answer, request.input.len());
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(err) => return metered::failed(pending, err, ctx).await,
    };
    let billed = bill::embeddings(&request, encoding, &parsed);
    let out = encode_response(
        &pending.model,
        &parsed,
        request.encoding_format,
        billed.usage.tokens.prompt_tokens,
    );
    metered::answer_plain(pending, billed, "application/json", out, ctx).await
}
