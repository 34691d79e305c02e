//! Dispatch: the call sent over the model's routes in order (circuit breakers consulted and
//! updated), to the provider or to the local echo model, up to the provider's answer.

use worker::Env;

use super::relay::Source;
use super::routes;
use super::ticket::Pending;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::openai::ChatCompletionRequest;
use crate::core::providers::{
    serve_local, LocalReply, LocalRequest, Route, UpstreamCall, UpstreamRequest,
};
use crate::core::routing::{counts_for_breaker, may_fall_back, plain_timeout_ms};
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::env::Settings;
use crate::edge::platform::fetch as upstream;

/// Plain answers larger than this are refused (`upstream_unusable`, charged): never buffered past
/// it, never cut silently. 8 MiB is far above any ordinary completion.
const MAX_UPSTREAM_BODY: usize = 8 * 1024 * 1024;

/// What the provider answered, before it is relayed.
pub(crate) enum Reply {
    Plain(Vec<u8>),
    Stream(Source),
}

/// Sends the call: one route (or the echo model) is called directly ([`send`]), several are
/// tried in order ([`call_routes`]). `pending` names the route that served it.
pub(crate) async fn dispatch(
    pending: &mut Pending,
    chat: &ChatCompletionRequest,
    attempts: &[(Route, UpstreamCall)],
    settings: &Settings,
) -> Result<Reply, GatewayError> {
    let Some((_, first)) = attempts.first() else {
        return Err(GatewayError::internal("the model has no provider route"));
    };
    if attempts.len() == 1 {
        send(pending, chat, first, settings).await
    } else {
        let env = pending.env.clone();
        call_routes(pending, &env, chat, attempts, settings).await
    }
}

/// Sends one call on the ticket's route: over HTTP, or served inside the gateway (the echo model).
pub(crate) async fn send(
    pending: &Pending,
    chat: &ChatCompletionRequest,
    call: &UpstreamCall,
    settings: &Settings,
) -> Result<Reply, GatewayError> {
    match call {
        UpstreamCall::Http(up) => call_upstream(pending, chat, up, settings).await,
        UpstreamCall::Local(local) => local_reply(pending, local, settings),
    }
}

/// Answers a model served inside the gateway (the echo model): no fetch, same relay.
fn local_reply(
    pending: &Pending,
    local: &LocalRequest,
    settings: &Settings,
) -> Result<Reply, GatewayError> {
    let id = format!("chatcmpl-{}", pending.request_id);
    Ok(match serve_local(local, &id, pending.started_at / 1000)? {
        LocalReply::Json(body) => Reply::Plain(body),
        LocalReply::Events(events) => Reply::Stream(Source::Local {
            events,
            delay_ms: settings.echo_chunk_delay_ms,
            started: false,
        }),
    })
}

/// Tries the routes in order: a retryable failure (unreachable, redirected, answered 5xx/429)
/// moves on to the next route; a request the provider may have served (no answer in time after
/// sending, an unusable 2xx) never does. Each route's circuit breaker is consulted and updated
/// with retryable failures other than 429s (`counts_for_breaker`), so one tenant's long requests
/// or bursts cannot open a route for everyone
/// (an open breaker is skipped unless no route has been tried yet and it is the last).
async fn call_routes(
    pending: &mut Pending,
    env: &Env,
    chat: &ChatCompletionRequest,
    attempts: &[(Route, UpstreamCall)],
    settings: &Settings,
) -> Result<Reply, GatewayError> {
    let cfg = routes::breaker_config(env);
    let mut last_error = None;
    for (i, (route, up)) in attempts.iter().enumerate() {
        let is_last = i + 1 == attempts.len();
        let state = routes::breaker(env, route).await;
        // When every route's breaker is open, the last one is still tried.
        let must_try = is_last && last_error.is_none();
        if !must_try && !routes::admits(&state, now_ms(), &cfg) {
            pending
                .routes_tried
                .push(format!("{} (circuit open)", routes::route_name(route)));
            continue;
        }
        pending.provider = route.provider.clone();
        pending.kind = route.kind;
        pending.upstream_model = route.upstream_model.clone();
        pending.timeouts = route.timeouts();
        match send(pending, chat, up, settings).await {
            Ok(reply) => {
                let mut after = state;
                after.on_success();
                routes::record(env, route, state, after).await;
                return Ok(reply);
            }
            Err(err) => {
                if counts_for_breaker(&err) {
                    let mut after = state;
                    after.on_failure(now_ms(), &cfg);
                    routes::record(env, route, state, after).await;
                }
                if is_last || !may_fall_back(&err, false) {
                    return Err(err);
                }
                pending.routes_tried.push(routes::route_name(route));
                last_error = Some(err);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| {
        GatewayError::new(
            ErrorKind::UpstreamFailed,
            "Every provider route of this model is failing (circuit open); try again shortly.",
        )
    }))
}

pub(crate) async fn call_upstream(
    pending: &Pending,
    chat: &ChatCompletionRequest,
    up: &UpstreamRequest,
    settings: &Settings,
) -> Result<Reply, GatewayError> {
    let started = now_ms();
    let deadline = pending.deadline();
    let first_byte_ms = pending
        .timeouts
        .first_byte_ms
        .unwrap_or(settings.upstream_timeout_ms);
    // A stream's headers come when the provider starts; a plain answer's only when it is done, so
    // a plain request has one timeout for headers and body together.
    let headers_ms = if chat.is_stream() {
        pending
            .timeouts
            .connect_ms
            .unwrap_or(settings.upstream_connect_timeout_ms)
            .min(deadline.saturating_sub(started))
    } else {
        plain_timeout_ms(
            pending.timeouts.first_byte_ms,
            settings.upstream_timeout_ms,
            started,
            deadline,
        )
    };
    let (mut resp, abort) = upstream::send(up, headers_ms).await?;
    let status = resp.status_code();
    if (300..400).contains(&status) {
        abort.abort();
        return Err(GatewayError::upstream_redirect(status));
    }
    if !(200..300).contains(&status) {
        let body = upstream::read_error_body(&mut resp).await;
        abort.abort();
        return Err(pending.kind.adapter().map_error(status, &body));
    }
    if chat.is_stream() {
        let body = resp.stream().map_err(|e| {
            GatewayError::new(
                ErrorKind::UpstreamFailed,
                format!("The provider's stream has no body: {e}"),
            )
        })?;
        return Ok(Reply::Stream(Source::Upstream {
            body,
            abort: Some(abort),
            first_byte_timeout_ms: first_byte_ms,
            idle_timeout_ms: settings.upstream_timeout_ms,
            received: false,
            alarm: Default::default(),
        }));
    }
    let left_ms = headers_ms.saturating_sub(now_ms().saturating_sub(started));
    let body = upstream::read_answer(&mut resp, MAX_UPSTREAM_BODY, left_ms).await;
    if body.is_err() {
        abort.abort();
    }
    Ok(Reply::Plain(body?))
}
