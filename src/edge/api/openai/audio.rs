//! `POST /v1/audio/speech`: decode (`core::inbound::audio`), the metered media call
//! (`edge::gateway::media`); the provider's audio streams through to the client as it arrives,
//! with the content type of the requested `response_format`.

use worker::{Context, Env, Request, Response};

use crate::core::error::GatewayError;
use crate::core::inbound::audio::decode_speech;
use crate::core::providers::media::{self, bill, MediaApi};
use crate::edge::api::http;
use crate::edge::gateway::media::{self as metered, Answer};
use crate::edge::gateway::{self, auth, context::Call};
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::env::settings;
use crate::edge::store::idempotency::Claim;

pub async fn speech(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let started_at = now_ms();
    let max_body = settings(env).max_body_bytes;
    let caller = auth::authenticate(&req, env).await?;
    let body = http::read_body(&mut req, max_body).await?;
    let request = decode_speech(&body)?;
    let call = Call::new(env, request_id, caller, req.headers(), started_at)?;
    let mp = metered::prepare(
        call,
        &request.model,
        MediaApi::Speech,
        |admitted, units| {
            let max_out = admitted.model.max_output_tokens;
            Ok(request.usage(units, admitted.encoding, max_out))
        },
        |route| media::build_speech(route, &request),
    )
    .await?;
    let billed = {
        let a = &mp.prepared.admitted;
        bill::speech(
            &request,
            &mp.ticket.units,
            a.encoding,
            a.model.max_output_tokens,
        )
    };
    let key = req.headers().get("idempotency-key").ok().flatten();
    let claimed = match gateway::claim(&mp.prepared, key, &body, true).await? {
        Claim::Replay {
            http_status,
            body,
            request_id,
        } => return http::replay(http_status, body, &request_id),
        Claim::Fresh(key) => Some(key),
        Claim::None => None,
    };
    let content_type = request.response_format.content_type();
    match metered::call(mp, true, claimed, ctx).await {
        Ok(Answer::Stream(pending, source)) => {
            metered::stream_through(pending, source, billed, content_type, ctx)
        }
        Ok(Answer::Plain(pending, audio, _)) => {
            metered::answer_plain(pending, billed, content_type, audio, ctx).await
        }
        Err(done) => done,
    }
}
