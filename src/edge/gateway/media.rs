//! The metered call of a media request (embeddings, images, speech, transcription): the same
//! steps as a chat request — admit (the model's kind must match the endpoint), reserve the
//! codec's estimate through [`ticket::issue`], dispatch over the model's routes with their
//! breakers — with the upstream requests built by `core::providers::media` and the bill made by
//! `core::providers::media::bill` in the model's units (docs/media.md).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{select, Either};
use futures::StreamExt;
use serde_json::Map;
use worker::{Context, D1Database, Delay, Response, ResponseBuilder};

use super::admit::{self, Admitted};
use super::context::Call;
use super::dispatch::{self, Reply};
use super::media_ticket::MediaTicket;
use super::relay::Source;
use super::reserve::Count;
use super::settle;
use super::ticket::{self, End, Order, Pending};
use super::{release, routes, Prepared};
use crate::core::billing::units::UnitPrices;
use crate::core::billing::units::{reservation_micros_scaled, MediaUsage};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::meter::RequestStatus;
use crate::core::openai::ChatCompletionRequest;
use crate::core::providers::media::bill::Billed;
use crate::core::providers::media::streams::error_event;
use crate::core::providers::media::MediaApi;
use crate::core::providers::{Route, UpstreamCall, UpstreamRequest};
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::d1 as db;
use crate::edge::platform::response::internal;
use crate::edge::store;
use crate::edge::store::idempotency::ClaimedKey;

/// A media request admitted, reserved-at and routed: the chat pipeline's [`Prepared`] and the
/// media ticket to attach.
pub(crate) struct MediaPrepared {
    pub prepared: Prepared,
    pub ticket: MediaTicket,
}

/// Admits `model_name` for `api`: 404 unknown, 403 not allowed for the key, 400 when the model's
/// kind is not the endpoint's.
pub(crate) async fn admit_media(
    call: &Call,
    database: &D1Database,
    model_name: &str,
    api: MediaApi,
) -> Result<(Admitted, UnitPrices), GatewayError> {
    let model = store::models::cached_model(database, model_name, &call.caller.tenant_id)
        .await?
        .ok_or_else(|| {
            GatewayError::new(
                ErrorKind::ModelNotFound,
                format!("The model `{model_name}` does not exist."),
            )
            .with_code("model_not_found")
        })?;
    if !call.caller.may_use(&model.name) {
        return Err(GatewayError::new(
            ErrorKind::ModelNotAllowed,
            format!("This API key may not use the model `{}`.", model.name),
        ));
    }
    check_kind(&model.model_kind, api)?;
    let units = model.unit_prices()?;
    Ok((admit::admitted(model)?, units))
}

/// 400 `model_kind_mismatch` unless a model of `kind` is served on `api`.
pub(crate) fn check_kind(kind: &str, api: MediaApi) -> Result<(), GatewayError> {
    if kind == api.model_kind() {
        return Ok(());
    }
    Err(GatewayError::invalid_param(
        "model",
        format!(
            "This model is a `{kind}` model; /v1/{} takes `{}` models.",
            api.path(),
            api.model_kind()
        ),
    )
    .with_code("model_kind_mismatch"))
}

/// Admits, prices the reservation (`reserve` gives the worst usage from the admitted model and
/// its unit prices) and builds each route's upstream request with `build`.
pub(crate) async fn prepare(
    call: Call,
    model_name: &str,
    api: MediaApi,
    reserve: impl FnOnce(&Admitted, &UnitPrices) -> Result<MediaUsage, GatewayError>,
    build: impl Fn(&Route) -> Result<UpstreamRequest, GatewayError>,
) -> Result<MediaPrepared, GatewayError> {
    let database = db::database(&call.env)?;
    let (admitted, units) = admit_media(&call, &database, model_name, api).await?;
    let worst = reserve(&admitted, &units)?;
    let model = &admitted.model;
    let reserved = reservation_micros_scaled(&worst, &admitted.price, &units, model.multiplier_bps);
    let count = Count {
        local_prompt_tokens: worst.tokens.prompt_tokens,
        max_output: worst.tokens.completion_tokens,
        reserved,
    };
    let attempts = routes::prepare_routes_with(
        &call.env,
        &database,
        model,
        admitted.kind,
        &call.request_id,
        |route| build(route).map(UpstreamCall::Http),
    )
    .await?;
    let route = match attempts.first() {
        Some((route, _)) => route.clone(),
        None => return Err(GatewayError::internal("the model has no provider route")),
    };
    Ok(MediaPrepared {
        prepared: Prepared {
            call,
            db: database,
            admitted,
            count,
            route,
            attempts,
        },
        ticket: MediaTicket {
            api,
            units,
            reserved: worst,
            billed: None,
        },
    })
}

/// The chat request the shared ticket and dispatch read (`stream`, no output cap, one choice).
fn shell(model: &str, stream: bool) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: model.to_string(),
        messages: Vec::new(),
        stream: Some(stream),
        stream_options: None,
        max_tokens: None,
        max_completion_tokens: None,
        n: None,
        tools: None,
        extra: Map::new(),
    }
}

/// What a media call got from its provider, with its ticket to settle.
pub(crate) enum Answer {
    /// A plain body (JSON or text) and the serving route's base URL.
    Plain(Pending, Vec<u8>, String),
    /// A response body to stream through (speech audio, transcription events).
    Stream(Pending, Source),
}

/// Issues the ticket (the reservation) and dispatches; a failure is settled and returned (as the
/// answer to send when it was charged).
pub(crate) async fn call(
    mp: MediaPrepared,
    stream: bool,
    key: Option<ClaimedKey>,
    ctx: &Context,
) -> Result<Answer, Result<Response, GatewayError>> {
    let MediaPrepared {
        prepared: p,
        ticket,
    } = mp;
    let chat = shell(&p.admitted.model.name, stream);
    let c = &p.call;
    let order = Order {
        env: &c.env,
        id: &c.request_id,
        caller: &c.caller,
        session_id: &c.session_id,
        session_ttl_seconds: c.settings.session_ttl_seconds,
        admitted: &p.admitted,
        route: &p.route,
        chat: &chat,
        count: p.count,
        started_at: c.started_at,
        idempotency: key.clone(),
    };
    let mut pending = match ticket::issue(order).await {
        Ok(pending) => pending,
        Err(err) => return Err(Err(release(&p, key, err).await)),
    };
    pending.media = Some(Box::new(ticket));
    match dispatch::dispatch(&mut pending, &chat, &p.attempts, &c.settings).await {
        Ok(Reply::Plain(body)) => {
            let base_url = p
                .attempts
                .iter()
                .find(|(r, _)| {
                    r.provider == pending.provider && r.upstream_model == pending.upstream_model
                })
                .map(|(r, _)| r.base_url.clone())
                .unwrap_or_default();
            Ok(Answer::Plain(pending, body, base_url))
        }
        Ok(Reply::Stream(source)) => Ok(Answer::Stream(pending, source)),
        Err(err) => Err(failed(pending, err, ctx).await),
    }
}

/// Settles a failure and gives its answer (a charged one with `x-should-retry: false`).
pub(crate) async fn failed(
    pending: Pending,
    err: GatewayError,
    ctx: &Context,
) -> Result<Response, GatewayError> {
    let (format, request_id) = (pending.format.clone(), pending.request_id.clone());
    let err = settle::fail(pending, err, ctx).await;
    if err.provider_may_have_billed() {
        settle::charged_failure(&err, &format, &request_id)
    } else {
        Err(err)
    }
}

/// Answers a plain media request with `body` (`content_type`) billed at `billed`: the
/// idempotency record is completed before the response leaves, settlement runs after.
pub(crate) async fn answer_plain(
    mut pending: Pending,
    billed: Billed,
    content_type: &str,
    body: Vec<u8>,
    ctx: &Context,
) -> Result<Response, GatewayError> {
    if let Some(t) = pending.media.as_mut() {
        t.billed = Some(billed);
    }
    let now = now_ms();
    let end = ok_end(&pending, now);
    let cost = pending.bill(&end).cost;
    if let Some(key) = &pending.idempotency {
        if let Err(e) = store::idempotency::complete(&pending.db, key, 200, Some(&body)).await {
            worker::console_error!("idempotency key of {}: {e}", pending.request_id);
        }
    }
    let headers = ids(&pending);
    ctx.wait_until(pending.settle(end));
    let mut resp = crate::edge::platform::response::bytes_response(200, content_type, body)?;
    let h = resp.headers_mut();
    let _ = h.set("x-tollgate-cost", &cost.to_string());
    for (k, v) in headers {
        let _ = h.set(k, &v);
    }
    Ok(resp)
}

fn ok_end(pending: &Pending, now: u64) -> End {
    End {
        status: RequestStatus::Ok,
        http_status: 200,
        error_code: None,
        completion_text: String::new(),
        upstream_usage: None,
        delivered_output: true,
        ttfb_ms: Some(now.saturating_sub(pending.started_at)),
        ended_at: now,
        extended: 0,
        usage_unknown: false,
        // Media answers have no end-of-turn token to count.
        finish_reason: None,
    }
}

fn ids(pending: &Pending) -> [(&'static str, String); 2] {
    [
        ("x-request-id", pending.request_id.clone()),
        ("x-session-id", pending.session_id.clone()),
    ]
}

/// What sees each relayed chunk of a media stream.
pub(crate) type Watch = Box<dyn FnMut(&[u8])>;

/// How a relayed media stream ended, as its settlement sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamEnding {
    /// The provider's body was relayed to its end.
    Completed,
    /// The client left first.
    ClientLeft,
    /// The provider's body broke off.
    Broken,
    /// The provider went silent longer than the idle timeout: the body was cut.
    Stalled,
    /// The request's wall-clock deadline passed first (a client that stopped reading): settled
    /// then, the stream ended at its next read.
    Deadline,
}

impl StreamEnding {
    /// The row's status and `error_code`.
    pub(crate) fn status(self) -> (RequestStatus, Option<&'static str>) {
        match self {
            StreamEnding::Completed => (RequestStatus::Ok, None),
            StreamEnding::ClientLeft => (RequestStatus::ClientAbort, None),
            StreamEnding::Broken => (RequestStatus::UpstreamError, Some("upstream_error")),
            StreamEnding::Stalled => (RequestStatus::UpstreamTimeout, Some("upstream_timeout")),
            StreamEnding::Deadline => (RequestStatus::Truncated, Some("stream_deadline")),
        }
    }

    fn of(err: &GatewayError) -> Self {
        match err.kind {
            ErrorKind::UpstreamTimeout | ErrorKind::UpstreamUnanswered => StreamEnding::Stalled,
            _ => StreamEnding::Broken,
        }
    }
}

/// Streams the provider's body to the client unchanged, as it arrives (speech audio, image and
/// speech events, transcription events), with the chat streams' clocks (`Source::next`): the
/// response waits for the provider's first chunk no longer than the route's first-byte timeout
/// (nothing by then: 504 `upstream_timeout`, charged the reservation — the provider may be
/// working —, `x-should-retry: false`); later, a provider silent longer than
/// `UPSTREAM_TIMEOUT_MS` has its body cut there, an event stream with a last `error` event (the
/// row says `upstream_timeout`, billed as `billed` says on what arrived). `watch` sees each
/// chunk; `billed` gives the bill when the stream ended or the client left, whatever happened to
/// it; settlement runs then.
pub(crate) async fn stream_through(
    pending: Pending,
    mut source: Source,
    content_type: &str,
    ctx: &Context,
    mut watch: Watch,
    billed: Box<dyn FnOnce() -> Billed>,
) -> Result<Response, GatewayError> {
    if !matches!(source, Source::Upstream { .. }) {
        return Err(GatewayError::internal("a media stream from a local model"));
    }
    let mut pending = pending;
    let started_at = pending.started_at;
    let headers = ids(&pending);
    // The first chunk before the answer: a provider that never starts gets a clear error.
    let first = match source.next().await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            source.abort();
            let err = crate::core::providers::media::unusable("an empty stream");
            return failed(pending, err, ctx).await;
        }
        Err(err) => {
            source.abort();
            return failed(pending, err, ctx).await;
        }
    };
    let ttfb = now_ms().saturating_sub(started_at);
    watch(&first);
    // How the relay ended, read when it ends (the client leaving drops the stream: unset).
    let ending: Rc<Cell<Option<StreamEnding>>> = Rc::default();
    let seen_ending = Rc::clone(&ending);
    // Settled at the deadline: the relay stops at its next read.
    let settled: Rc<Cell<bool>> = Rc::default();
    let seen_settled = Rc::clone(&settled);
    // An event stream the gateway cuts ends with an error event (an SDK raises it); audio just
    // ends where it stopped.
    let events = content_type.starts_with("text/event-stream");
    let rest = futures::stream::unfold(
        Some((source, watch, seen_ending, seen_settled)),
        move |state| async move {
            let (mut source, mut watch, ending, settled) = state?;
            if settled.get() {
                source.abort();
                return None;
            }
            match source.next().await {
                Ok(Some(bytes)) => {
                    watch(&bytes);
                    let next = Some((source, watch, ending, settled));
                    Some((Ok::<Vec<u8>, worker::Error>(bytes), next))
                }
                Ok(None) => {
                    ending.set(Some(StreamEnding::Completed));
                    None
                }
                Err(err) => {
                    source.abort();
                    ending.set(Some(StreamEnding::of(&err)));
                    events.then(|| (Ok(error_event(&err)), None))
                }
            }
        },
    );
    // Past the provider's last chunk (or its cut): the relay is over. When the client leaves
    // first, the stream is dropped with the sender and the receiver sees it cancelled.
    let (end_tx, end_rx) = oneshot::channel::<()>();
    let stream = futures::stream::once(async move { Ok(first) })
        .chain(rest)
        .chain(futures::stream::once(async move {
            let _ = end_tx.send(());
            Ok(Vec::new())
        }));
    // The request's wall-clock deadline (below the stale-reservation sweep), as for chat
    // streams: a client that stops reading leaves the relay unpolled, so the settlement does not
    // wait for it past then.
    let deadline_ms = pending.deadline().saturating_sub(now_ms());
    ctx.wait_until(async move {
        let timer = Delay::from(Duration::from_millis(deadline_ms));
        let over = match select(end_rx, timer).await {
            Either::Left((sent, _)) => Some(sent.is_ok()),
            Either::Right(_) => None,
        };
        settled.set(true);
        if let Some(t) = pending.media.as_mut() {
            t.billed = Some(billed());
        }
        let how = match (over, ending.get()) {
            (Some(true), Some(how)) => how,
            (Some(true), None) => StreamEnding::Completed,
            (Some(false), _) => StreamEnding::ClientLeft,
            (None, _) => StreamEnding::Deadline,
        };
        let mut end = ok_end(&pending, now_ms());
        end.ttfb_ms = Some(ttfb);
        let (status, code) = how.status();
        end.status = status;
        end.error_code = code.map(str::to_string);
        // Billed on what the provider reported or produced, whether or not the client took it
        // all: the provider did (and billed) the work once it started.
        pending.settle(end).await;
    });
    let mut resp = ResponseBuilder::new()
        .with_status(200)
        .with_header("content-type", content_type)
        .map_err(|e| internal("stream response", e))?
        .from_stream(stream)
        .map_err(|e| internal("stream response", e))?;
    let h = resp.headers_mut();
    for (k, v) in headers {
        let _ = h.set(k, &v);
    }
    if content_type.starts_with("text/event-stream") {
        let _ = h.set("cache-control", "no-cache");
        let _ = h.set("x-accel-buffering", "no");
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_is_served_only_on_its_kind_s_endpoints() {
        assert!(check_kind("embedding", MediaApi::Embeddings).is_ok());
        assert!(check_kind("stt", MediaApi::Translations).is_ok());
        let e = check_kind("chat", MediaApi::Embeddings).unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "model_kind_mismatch"));
        assert_eq!(e.param.as_deref(), Some("model"));
        assert!(check_kind("tts", MediaApi::ImageGenerations).is_err());
    }

    #[test]
    fn how_a_media_stream_ended_is_its_row_s_status() {
        let stalled = GatewayError::new(ErrorKind::UpstreamTimeout, "silent");
        assert_eq!(StreamEnding::of(&stalled), StreamEnding::Stalled);
        assert_eq!(
            StreamEnding::Stalled.status(),
            (RequestStatus::UpstreamTimeout, Some("upstream_timeout"))
        );
        let broken = GatewayError::new(ErrorKind::UpstreamFailed, "broke");
        assert_eq!(StreamEnding::of(&broken), StreamEnding::Broken);
        assert_eq!(
            StreamEnding::Broken.status().0,
            RequestStatus::UpstreamError
        );
        assert_eq!(
            StreamEnding::ClientLeft.status().0,
            RequestStatus::ClientAbort
        );
        assert_eq!(StreamEnding::Completed.status(), (RequestStatus::Ok, None));
        assert_eq!(
            StreamEnding::Deadline.status(),
            (RequestStatus::Truncated, Some("stream_deadline"))
        );
    }
}
