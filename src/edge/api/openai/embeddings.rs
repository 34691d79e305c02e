//! `POST /v1/embeddings`: decode (`core::inbound::embeddings`), the metered media call
//! (`edge::gateway::media`), the OpenAI list in the client's `encoding_format`.

use worker::{Context, Env, Request, Response};

use crate::core::error::GatewayError;
use crate::core::inbound::embeddings::{decode_request, encode_response};
use crate::core::providers::media::{self, bill, MediaApi};
use crate::edge::api::http::{BodyKind, Claimed, Incoming};
use crate::edge::gateway::media::{self as metered, Answer};

pub async fn embeddings(
    req: Request,
    env: &Env,
    ctx: &Context,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let incoming = Incoming::open(req, env, request_id, BodyKind::Json).await?;
    let request = decode_request(&incoming.body)?;
    let mp = metered::prepare(
        incoming.call()?,
        &request.model,
        MediaApi::Embeddings,
        |admitted, _| Ok(request.reservation_usage(admitted.encoding)),
        |route| media::build_embeddings(route, &request),
    )
    .await?;
    let encoding = mp.prepared.admitted.encoding;
    let claimed = match incoming.claim(&mp.prepared, false).await? {
        Claimed::Fresh(key) => key,
        Claimed::Replayed(answer) => return Ok(answer),
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
