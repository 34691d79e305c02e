//! `POST /v1/images/generations` (JSON) and `/v1/images/edits` (multipart): decode
//! (`core::inbound::images`), the metered media call (`edge::gateway::media`), the provider's body
//! to the client; billed per image from the model's table or on the reported tokens. With
//! `stream: true` the provider's `image_generation.*` / `image_edit.*` events stream through,
//! billed from the completed events.

use std::cell::RefCell;
use std::rc::Rc;

use worker::{Context, Env, Request, Response};

use crate::core::error::GatewayError;
use crate::core::inbound::images::{decode_edit, decode_generation, ImageOp, ImageRequest};
use crate::core::providers::media::streams::ImageStream;
use crate::core::providers::media::{self, bill, MediaApi};
use crate::edge::api::http::{BodyKind, Claimed, Incoming};
use crate::edge::gateway::media::{self as metered, Answer};

pub async fn images(
    req: Request,
    env: &Env,
    ctx: &Context,
    request_id: &str,
    op: ImageOp,
) -> Result<Response, GatewayError> {
    let body = match op {
        ImageOp::Generate => BodyKind::Json,
        ImageOp::Edit => BodyKind::Form,
    };
    let incoming = Incoming::open(req, env, request_id, body).await?;
    let parts = incoming.parts()?;
    let request: ImageRequest<'_> = match op {
        ImageOp::Generate => decode_generation(&incoming.body)?,
        ImageOp::Edit => decode_edit(&parts)?,
    };
    let api = match op {
        ImageOp::Generate => MediaApi::ImageGenerations,
        ImageOp::Edit => MediaApi::ImageEdits,
    };
    let mp = metered::prepare(
        incoming.call()?,
        &request.model,
        api,
        |admitted, units| {
            let max_out = admitted.model.max_output_tokens;
            request.reservation_usage(units, admitted.encoding, max_out)
        },
        |route| media::build_image(route, &request, request_id),
    )
    .await?;
    let units = mp.ticket.units.clone();
    let reserved = mp.ticket.reserved;
    let claimed = match incoming.claim(&mp.prepared, request.stream).await? {
        Claimed::Fresh(key) => key,
        Claimed::Replayed(answer) => return Ok(answer),
    };
    let (pending, answer) = match metered::call(mp, request.stream, claimed, ctx).await {
        Ok(Answer::Plain(pending, answer, _)) => (pending, answer),
        Ok(Answer::Stream(pending, source)) => {
            // The provider's partial and completed events relayed unchanged; the completed
            // events bill the request (none completed: the reservation).
            let unit_price = request.unit_price(&units);
            let seen = Rc::new(RefCell::new(ImageStream::new()));
            let watcher = Rc::clone(&seen);
            let watch = Box::new(move |bytes: &[u8]| watcher.borrow_mut().push(bytes));
            let bill = Box::new(move || {
                let mut s = seen.borrow_mut();
                s.finish();
                bill::image_stream(unit_price, s.result(), &reserved)
            });
            let ct = "text/event-stream; charset=utf-8";
            return metered::stream_through(pending, source, ct, ctx, watch, bill).await;
        }
        Err(done) => return done,
    };
    let parsed = match media::openai::parse_images(&answer) {
        Ok(parsed) => parsed,
        Err(err) => return metered::failed(pending, err, ctx).await,
    };
    let billed = bill::images(&request, &units, &parsed, &reserved);
    metered::answer_plain(pending, billed, "application/json", answer, ctx).await
}
