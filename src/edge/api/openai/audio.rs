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
use crate::core::multipart::{self, Limits, MAX_AUDIO_FILE_BYTES};
use crate::core::providers::media::openai::TranscriptStream;
use crate::core::providers::media::streams::SpeechStream;
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
    let (encoding, max_out) = {
        let a = &mp.prepared.admitted;
        (a.encoding, a.model.max_output_tokens)
    };
    let units = mp.ticket.units.clone();
    let billed = bill::speech(&request, &units, encoding, max_out);
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

/// The largest multipart body read: OpenAI's 25 MiB file limit and 1 MiB for the other fields
/// and the part headers. A larger body is refused with 413 before it is parsed.
pub const MAX_MULTIPART_BODY: usize = MAX_AUDIO_FILE_BYTES + (1 << 20);

/// Reads and parses a `multipart/form-data` body (400 `invalid_multipart`, 413 over the limits).
pub(crate) async fn read_form(req: &mut Request) -> Result<(Vec<u8>, String), GatewayError> {
    let content_type = req
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .unwrap_or_default();
    let boundary = multipart::boundary_of(&content_type)?;
    let body = http::read_body(req, MAX_MULTIPART_BODY).await?;
    Ok((body, boundary))
}

/// `POST /v1/audio/transcriptions` and `/v1/audio/translations` (multipart).
pub async fn transcription(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    request_id: &str,
    translation: bool,
) -> Result<Response, GatewayError> {
    let started_at = now_ms();
    let caller = auth::authenticate(&req, env).await?;
    let (body, boundary) = read_form(&mut req).await?;
    let parts = multipart::parse(&body, &boundary, &Limits::default())?;
    let request = decode_transcription(&parts, translation)?;
    let call = Call::new(env, request_id, caller, req.headers(), started_at)?;
    let api = if translation {
        MediaApi::Translations
    } else {
        MediaApi::Transcriptions
    };
    // The format asked of the provider depends on the model's prices: known after admission.
    let upstream = std::cell::Cell::new(request.response_format);
    let mp = metered::prepare(
        call,
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
    let key = req.headers().get("idempotency-key").ok().flatten();
    let claimed = match gateway::claim(&mp.prepared, key, &body, request.stream).await? {
        Claim::Replay {
            http_status,
            body,
            request_id,
        } => return http::replay(http_status, body, &request_id),
        Claim::Fresh(key) => Some(key),
        Claim::None => None,
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
