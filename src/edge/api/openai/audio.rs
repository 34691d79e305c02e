//! `POST /v1/audio/speech`: decode (`core::inbound::audio`), the metered media call
//! (`edge::gateway::media`); the provider's audio streams through to the client as it arrives,
//! with the content type of the requested `response_format`, or its events with `stream_format:
//! "sse"`. `POST /v1/audio/transcriptions` and
//! `/translations`: a multipart upload (limits in `core::multipart`), the provider asked for the
//! format that bills it exactly and the client's format rendered; `stream=true` relays the
//! provider's events.

use std::cell::RefCell;
use std::rc::Rc;

use worker::{Context, Env, Request, Response};

use crate::core::error::GatewayError;
use crate::core::inbound::audio::{decode_speech, decode_transcription};
use crate::core::providers::media::openai::TranscriptStream;
use crate::core::providers::media::streams::SpeechStream;
use crate::core::providers::media::{self, bill, MediaApi};
use crate::edge::api::http::{BodyKind, Claimed, Incoming};
use crate::edge::gateway::media::{self as metered, Answer};

pub async fn speech(
    req: Request,
    env: &Env,
    ctx: &Context,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let incoming = Incoming::open(req, env, request_id, BodyKind::Json).await?;
    let request = decode_speech(&incoming.body)?;
    let mp = metered::prepare(
        incoming.call()?,
        &request.model,
        MediaApi::Speech,
        |admitted, units| {
            let max_out = admitted.model.max_output_tokens;
            Ok(request.usage(units, admitted.encoding, max_out))
        },
        |route| media::build_speech(route, &request),
    )
    .await?;
    let (encoding, max_out) = {
        let a = &mp.prepared.admitted;
        (a.encoding, a.model.max_output_tokens)
    };
    let units = mp.ticket.units.clone();
    let billed = bill::speech(&request, &units, encoding, max_out);
    let claimed = match incoming.claim(&mp.prepared, true).await? {
        Claimed::Fresh(key) => key,
        Claimed::Replayed(answer) => return Ok(answer),
    };
    let content_type = request.content_type();
    match metered::call(mp, true, claimed, ctx).await {
        Ok(Answer::Stream(pending, source)) if request.sse() => {
            // `speech.audio.delta` / `speech.audio.done` relayed unchanged; the done event's
            // usage bills a token-priced model.
            let seen = Rc::new(RefCell::new(SpeechStream::new()));
            let watcher = Rc::clone(&seen);
            let watch = Box::new(move |bytes: &[u8]| watcher.borrow_mut().push(bytes));
            let bill = Box::new(move || {
                let mut s = seen.borrow_mut();
                s.finish();
                bill::speech_stream(&request, &units, encoding, max_out, s.usage)
            });
            metered::stream_through(pending, source, content_type, ctx, watch, bill).await
        }
        Ok(Answer::Stream(pending, source)) => {
            let (watch, bill) = (Box::new(|_: &[u8]| {}), Box::new(move || billed));
            metered::stream_through(pending, source, content_type, ctx, watch, bill).await
        }
        Ok(Answer::Plain(pending, audio, _)) => {
            metered::answer_plain(pending, billed, content_type, audio, ctx).await
        }
        Err(done) => done,
    }
}

/// `POST /v1/audio/transcriptions` and `/v1/audio/translations` (multipart).
pub async fn transcription(
    req: Request,
    env: &Env,
    ctx: &Context,
    request_id: &str,
    translation: bool,
) -> Result<Response, GatewayError> {
    let incoming = Incoming::open(req, env, request_id, BodyKind::Form).await?;
    let parts = incoming.parts()?;
    let request = decode_transcription(&parts, translation)?;
    let api = if translation {
        MediaApi::Translations
    } else {
        MediaApi::Transcriptions
    };
    // The format asked of the provider depends on the model's prices: known after admission.
    let upstream = std::cell::Cell::new(request.response_format);
    let mp = metered::prepare(
        incoming.call()?,
        &request.model,
        api,
        |admitted, units| {
            upstream.set(request.upstream_format(units));
            Ok(request.reservation_usage(units, admitted.model.max_output_tokens))
        },
        |route| media::build_transcription(route, &request, upstream.get(), request_id),
    )
    .await?;
    let upstream = upstream.get();
    let encoding = mp.prepared.admitted.encoding;
    let units = mp.ticket.units.clone();
    let reserved = mp.ticket.reserved;
    let claimed = match incoming.claim(&mp.prepared, request.stream).await? {
        Claimed::Fresh(key) => key,
        Claimed::Replayed(answer) => return Ok(answer),
    };
    match metered::call(mp, request.stream, claimed, ctx).await {
        Ok(Answer::Plain(pending, answer, _)) => {
            let parsed = match media::openai::parse_transcription(&answer, &request, upstream) {
                Ok(parsed) => parsed,
                Err(err) => return metered::failed(pending, err, ctx).await,
            };
            let billed = bill::transcription(
                &request,
                &units,
                parsed.usage,
                &parsed.text,
                encoding,
                &reserved,
            );
            let ct = parsed.content_type;
            metered::answer_plain(pending, billed, ct, parsed.body, ctx).await
        }
        Ok(Answer::Stream(pending, source)) => {
            // The provider's `transcript.text.delta` / `.done` events are relayed unchanged and
            // watched for the usage of the done event.
            let seen = Rc::new(RefCell::new(TranscriptStream::new()));
            let watcher = Rc::clone(&seen);
            let watch = Box::new(move |bytes: &[u8]| {
                let _ = watcher.borrow_mut().push(bytes);
            });
            let duration = request.duration();
            let bill = Box::new(move || {
                let mut s = seen.borrow_mut();
                let _ = s.finish();
                bill::transcription_of(duration, &units, s.usage, &s.text, encoding, &reserved)
            });
            let ct = "text/event-stream; charset=utf-8";
            metered::stream_through(pending, source, ct, ctx, watch, bill).await
        }
        Err(done) => done,
    }
}
