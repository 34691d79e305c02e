//! The native passthrough of `POST /v1/responses` and `POST /v1/messages`
//! (`core::providers::native`): on a route whose provider speaks the client's API, the client's
//! body goes to the provider (model, output cap and auth set by the core's request builders) and
//! the provider's bytes come back **unchanged**, observed by a `NativeStream` for metering.
//!
//! Everything else is the chat pipeline's: the ticket (reservation) from [`ticket::issue`],
//! fallback over the routes with their circuit breakers before the first byte (a route that does
//! not serve the API natively is sent the translated chat request and answered by the chat relay,
//! [`settle`]), the first-byte and idle timeouts of [`Source`], the client end and its deadline and
//! drain ([`ClientEnd`]), the output guard ([`StreamGuard::admit_text`]), `Idempotency-Key`, and
//! one settlement ([`Pending::settle`]) with the same rules for every ending.
//!
//! **Byte faithfulness.** The relay forwards the provider's bytes event by event: bytes are held
//! until the event they belong to is whole (the observer's `complete_bytes`), then sent as they
//! came. Holding back a partial event is what lets the gateway end a stream itself — output past
//! what the reservation covers (`NativeStream::cut`: the API's own "stopped at the output cap"
//! ending), a provider that broke off or sent an unreadable event (`NativeStream::close`: the API's
//! error event) — without the client ever seeing half an event before the gateway's. To check
//! every event against the guard, a read is fed to the observer line by line (an event ends at a
//! line end), so at most one event completes per piece.
//!
//! **Usage.** The provider's usage when the answer completed; on any other ending its prompt
//! counts (cache reads and writes included) with the output at least what was delivered, counted
//! locally (Anthropic reports `output_tokens: 1` in `message_start` long before the end); none
//! reported: local counts, as for chat.

use worker::{Context, Response, ResponseBuilder};

use super::dispatch::{self, Reply};
use super::guard::StreamGuard;
use super::relay::{ClientEnd, Source};
use super::routes;
use super::settle;
use super::ticket::{End, Pending};
use super::Prepared;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::inbound::client::ClientFormat;
use crate::core::meter::{estimate_tokens, RequestStatus, LENGTH};
use crate::core::openai::ChatCompletionRequest;
use crate::core::providers::native::{
    messages, observe_plain, serves_natively, Ending, NativeApi, NativeRequest, NativeStream,
    NativeUsage, Observed,
};
use crate::core::providers::{Route, UpstreamCall, UpstreamRequest};
use crate::core::routing::{counts_for_breaker, may_fall_back};
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::env::Settings;
use crate::edge::platform::fetch as upstream;
use crate::edge::platform::response::{bytes_response, internal};
use crate::edge::store::idempotency::{self, ClaimedKey};

/// The native upstream request of each of `p`'s routes, in order: `Some` on a route that serves
/// `api` natively (built by `build`), `None` where the request is translated to chat. A request
/// the first route refuses (a billable option not enabled, a malformed body) is the client's
/// error; a later route that refuses it is left out of the fallbacks.
pub(crate) fn plan(
    p: &mut Prepared,
    api: NativeApi,
    build: impl Fn(&Route) -> Result<NativeRequest, GatewayError>,
) -> Result<Vec<Option<UpstreamRequest>>, GatewayError> {
    let mut natives = Vec::with_capacity(p.attempts.len());
    let mut kept = Vec::with_capacity(p.attempts.len());
    for (i, (route, call)) in std::mem::take(&mut p.attempts).into_iter().enumerate() {
        let native = if serves_natively(&route, api) {
            match build(&route) {
                Ok(req) => Some(req.upstream),
                Err(err) if i == 0 => return Err(err),
                Err(_) => continue,
            }
        } else {
            None
        };
        natives.push(native);
        kept.push((route, call));
    }
    p.attempts = kept;
    Ok(natives)
}

/// The metered call of a Responses or Messages request whose routes were [`plan`]ned: as
/// `gateway::run_as`, each route served natively or translated. Without any native route it is
/// `run_as` itself.
pub(crate) async fn run(
    p: Prepared,
    chat: &ChatCompletionRequest,
    natives: Vec<Option<UpstreamRequest>>,
    key: Option<ClaimedKey>,
    ctx: &Context,
    format: ClientFormat,
) -> Result<Response, GatewayError> {
    let api = match format {
        ClientFormat::Responses { .. } => NativeApi::Responses,
        ClientFormat::Messages { .. } => NativeApi::Messages,
        ClientFormat::OpenAi { .. } => return super::run_as(p, chat, key, ctx, None).await,
    };
    if natives.iter().all(Option::is_none) {
        return super::run_as(p, chat, key, ctx, Some(format)).await;
    }
    let mut pending = super::ticket_of(&p, chat, &key).await?;
    let call = &p.call;
    pending.format = format.clone();
    let reply = call_routes(&mut pending, chat, &p.attempts, &natives, &call.settings).await;
    let response = match reply {
        Ok((Reply::Plain(body), true)) => finish_plain(pending, api, body, ctx).await,
        Ok((Reply::Stream(source), true)) => stream_response(pending, api, source, ctx),
        Ok((Reply::Plain(body), false)) => settle::finish_plain(pending, body, ctx).await,
        Ok((Reply::Stream(source), false)) => settle::stream_response(pending, source, ctx),
        Err(err) => Err(settle::fail(pending, err, ctx).await),
    };
    let mut response = match response {
        Err(charged) if charged.provider_may_have_billed() => {
            settle::charged_failure(&charged, &format, &call.request_id)?
        }
        other => other?,
    };
    let headers = response.headers_mut();
    let _ = headers.set("x-session-id", &call.session_id);
    let _ = headers.set("x-request-id", &call.request_id);
    Ok(response)
}

/// Sends on one route: its native request, else the translated chat call. `true`: served
/// natively.
async fn send(
    pending: &Pending,
    chat: &ChatCompletionRequest,
    call: &UpstreamCall,
    native: Option<&UpstreamRequest>,
    settings: &Settings,
) -> Result<(Reply, bool), GatewayError> {
    match native {
        Some(up) => dispatch::call_upstream(pending, chat, up, settings)
            .await
            .map(|reply| (reply, true)),
        None => dispatch::send(pending, chat, call, settings)
            .await
            .map(|reply| (reply, false)),
    }
}

/// `dispatch::dispatch` over routes that may be native: one route is called directly; several
/// are tried in order with the same fallback and circuit-breaker rules as
/// `dispatch::call_routes` (a retryable failure before any byte moves on; the breaker counts
/// what `counts_for_breaker` says).
async fn call_routes(
    pending: &mut Pending,
    chat: &ChatCompletionRequest,
    attempts: &[(Route, UpstreamCall)],
    natives: &[Option<UpstreamRequest>],
    settings: &Settings,
) -> Result<(Reply, bool), GatewayError> {
    let native = |i: usize| natives.get(i).and_then(Option::as_ref);
    if let [(_, only)] = attempts {
        return send(pending, chat, only, native(0), settings).await;
    }
    let env = pending.env.clone();
    let cfg = routes::breaker_config(&env);
    let mut last_error = None;
    for (i, (route, up)) in attempts.iter().enumerate() {
        let is_last = i + 1 == attempts.len();
        let state = routes::breaker(&env, route).await;
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
        match send(pending, chat, up, native(i), settings).await {
            Ok(reply) => {
                let mut after = state;
                after.on_success();
                routes::record(&env, route, state, after).await;
                return Ok(reply);
            }
            Err(err) => {
                if counts_for_breaker(&err) {
                    let mut after = state;
                    after.on_failure(now_ms(), &cfg);
                    routes::record(&env, route, state, after).await;
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

/// How a native answer ended, beyond what the observer saw.
struct Seen<'a> {
    observed: &'a Observed,
    /// The output that reached the client, when less than the observer saw (a guard cut).
    delivered: Option<&'a str>,
    client_left: bool,
    /// The row's `error_code` when the end is not an error (`stream_deadline`, `drain_deadline`).
    code: Option<&'static str>,
    /// The provider may have produced more than was seen, and reported no usage.
    usage_unknown: bool,
    ttfb_ms: Option<u64>,
    extended: u64,
}

/// The settlement's [`End`] of a native answer: the chat relay's rules (`relay::Pump::finish`)
/// on what the observer saw, with the usage rule of the module docs.
fn end_of(pending: &Pending, seen: Seen<'_>) -> End {
    let o = seen.observed;
    let error = o.error().cloned();
    let delivered_output = o.delivered_output();
    let billed_unseen = !delivered_output
        && error
            .as_ref()
            .is_some_and(GatewayError::provider_may_have_billed);
    let status = if seen.client_left {
        RequestStatus::ClientAbort
    } else if billed_unseen {
        match error.as_ref().map(|e| e.kind) {
            Some(ErrorKind::UpstreamUnusable) => RequestStatus::UpstreamUnusable,
            _ => RequestStatus::UpstreamTimeout,
        }
    } else if error.is_some() {
        RequestStatus::UpstreamError
    } else if o.ending == Some(Ending::Truncated) {
        RequestStatus::Truncated
    } else {
        RequestStatus::Ok
    };
    let text = seen.delivered.unwrap_or(&o.output);
    // A drain that ended before the provider's final usage: its counts so far say nothing of
    // what it generated after, so the reservation is charged (`meter::bill_reserved`).
    let usage = if seen.usage_unknown {
        None
    } else if o.completed() || o.usage.is_none() {
        o.usage // (counting the output locally would change nothing)
    } else {
        let local = match pending.encoding {
            Some(enc) => enc.count(text),
            None => estimate_tokens(text),
        };
        o.billable_usage(local)
    };
    End {
        status,
        http_status: 200,
        error_code: error
            .as_ref()
            .map(|e| e.code().to_string())
            .or_else(|| seen.code.map(str::to_string)),
        completion_text: text.to_string(),
        finish_reason: (o.ending == Some(Ending::Incomplete)).then(|| LENGTH.to_string()),
        // `to_usage` keeps the cache writes apart: the bill prices them at the model's
        // cache-write prices (`core::meter::tiered_usage`).
        upstream_usage: usage.map(|u| u.to_usage()),
        // For the charge: started then broken off is not free (`Observed::error_is_charged`).
        delivered_output: o.error_is_charged(),
        ttfb_ms: seen.ttfb_ms,
        ended_at: now_ms(),
        extended: seen.extended,
        usage_unknown: seen.usage_unknown || billed_unseen,
    }
}

/// Answers a plain native answer with the provider's body unchanged, and settles it. A body that
/// is not the API's object is an unusable answer (charged the reservation, as for chat).
async fn finish_plain(
    pending: Pending,
    api: NativeApi,
    body: Vec<u8>,
    ctx: &Context,
) -> Result<Response, GatewayError> {
    let observed = match observe_plain(api, &body) {
        Ok(observed) => observed,
        Err(err) => return Err(settle::fail(pending, err, ctx).await),
    };
    let ttfb = now_ms().saturating_sub(pending.started_at);
    let end = end_of(
        &pending,
        Seen {
            observed: &observed,
            delivered: None,
            client_left: false,
            code: None,
            usage_unknown: false,
            ttfb_ms: Some(ttfb),
            extended: 0,
        },
    );
    let cost = pending.bill(&end).cost;
    if let Some(key) = &pending.idempotency {
        // Before the response leaves: a retry that arrives after it must find it stored.
        if let Err(e) = idempotency::complete(&pending.db, key, 200, Some(&body)).await {
            worker::console_error!("idempotency key of {}: {e}", pending.request_id);
        }
    }
    let rate_headers = pending.rate_headers;
    let lease_header = pending.lease_header();
    ctx.wait_until(pending.settle(end));
    let mut resp = bytes_response(200, "application/json", body)?;
    let _ = resp.headers_mut().set("x-tollgate-cost", &cost.to_string());
    super::wallet::put_rate_headers(&mut resp, &rate_headers);
    if let Some((name, value)) = lease_header {
        let _ = resp.headers_mut().set(name, value);
    }
    Ok(resp)
}

/// Starts relaying a native stream to the client; settlement runs when it ends.
fn stream_response(
    pending: Pending,
    api: NativeApi,
    source: Source,
    ctx: &Context,
) -> Result<Response, GatewayError> {
    let headers = settle::sse_headers();
    for (name, value) in pending.rate_headers.pairs() {
        let _ = headers.set(name, &value);
    }
    if let Some((name, value)) = pending.lease_header() {
        let _ = headers.set(name, value);
    }
    let limits = pending.relay_limits();
    let (client, body) = ClientEnd::channel(limits);
    let pump = Pump {
        source,
        observer: NativeStream::new(api),
        guard: pending.stream_guard(),
        client,
        held: Vec::new(),
        forwarded: 0,
        cut_at: None,
        started_at: limits.started_at,
        ttfb_ms: None,
    };
    ctx.wait_until(async move {
        let seen = pump.run().await;
        let end = seen.end(&pending);
        pending.settle(end).await;
    });
    ResponseBuilder::new()
        .with_status(200)
        .with_headers(headers)
        .from_stream(body)
        .map_err(|e| internal("stream response", e))
}

/// The relay of one native stream (see the module docs).
struct Pump {
    source: Source,
    observer: NativeStream,
    guard: StreamGuard,
    client: ClientEnd,
    /// The provider's bytes observed but not yet forwarded (the start of an event).
    held: Vec<u8>,
    /// Bytes of the provider's stream forwarded (or dropped for a client that left).
    forwarded: u64,
    /// Where the guard cut the output (its length in bytes), when it did.
    cut_at: Option<usize>,
    started_at: u64,
    ttfb_ms: Option<u64>,
}

/// What the pump hands to the settlement.
struct PumpEnd {
    observer: NativeStream,
    cut_at: Option<usize>,
    client_left: bool,
    code: Option<&'static str>,
    usage_unknown: bool,
    ttfb_ms: Option<u64>,
    extended: u64,
}

impl PumpEnd {
    fn end(&self, pending: &Pending) -> End {
        let observed = self.observer.observed();
        end_of(
            pending,
            Seen {
                observed,
                delivered: self.cut_at.and_then(|at| observed.output.get(..at)),
                client_left: self.client_left,
                code: self.code,
                usage_unknown: self.usage_unknown,
                ttfb_ms: self.ttfb_ms,
                extended: self.extended,
            },
        )
    }
}

/// What one read did to the stream.
enum Step {
    /// Keep reading.
    More,
    /// The stream is over (a terminal event, the gateway's own ending).
    Over,
    /// The deadline passed while waiting for the client to take the bytes.
    OutOfTime,
}

impl Pump {
    async fn run(mut self) -> PumpEnd {
        loop {
            let next = self.client.wait(Box::pin(self.source.next())).await;
            let Some(read) = next else {
                return self.out_of_time();
            };
            let step = match read {
                Ok(Some(bytes)) => self.take(&bytes).await,
                Ok(None) => self.close(None).await,
                Err(e) => self.close(Some(e)).await,
            };
            match step {
                Step::More => {}
                Step::Over => return self.finish(None, false),
                Step::OutOfTime => return self.out_of_time(),
            }
        }
    }

    /// Observes one read line by line, forwarding each event once it is whole and admitted.
    async fn take(&mut self, bytes: &[u8]) -> Step {
        let mut rest = bytes;
        while !rest.is_empty() {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            let (piece, after) = rest.split_at(end);
            rest = after;
            let before = self.observer.observed().output.len();
            self.held.extend_from_slice(piece);
            self.observer.push(piece);
            if self.observer.is_unreadable() {
                return self.close(None).await;
            }
            let whole = self
                .observer
                .complete_bytes()
                .saturating_sub(self.forwarded);
            if whole == 0 {
                continue;
            }
            if self.client.here() && !self.admitted(before).await {
                return self.cut(before).await;
            }
            let over = self.observer.observed().ending.is_some();
            // Once the provider's terminal event is in, the rest of the read is its own too.
            let n = if over {
                self.held.extend_from_slice(rest);
                self.held.len()
            } else {
                usize::try_from(whole)
                    .unwrap_or(usize::MAX)
                    .min(self.held.len())
            };
            let out: Vec<u8> = self.held.drain(..n).collect();
            self.forwarded = self.forwarded.saturating_add(n as u64);
            if !self.deliver(out).await {
                return Step::OutOfTime;
            }
            if over {
                return Step::Over;
            }
        }
        Step::More
    }

    /// Whether the output the last event added (after `before` bytes of output) is paid for.
    async fn admitted(&mut self, before: usize) -> bool {
        let output = &self.observer.observed().output;
        let (Some(delivered), Some(added)) = (output.get(..before), output.get(before..)) else {
            return true;
        };
        added.is_empty() || self.guard.admit_text(delivered, added).await
    }

    /// Ends the stream at what the reservation covers: the event that went past it is dropped
    /// and the API's own capped ending sent instead, with the local usage.
    async fn cut(&mut self, before: usize) -> Step {
        let delivered = self.observer.observed().output.get(..before).unwrap_or("");
        let usage = self.guard.usage(delivered);
        let tail = self.observer.cut(&NativeUsage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            ..NativeUsage::default()
        });
        self.cut_at = Some(before);
        self.held.clear();
        if !tail.is_empty() && !self.deliver(tail).await {
            return Step::OutOfTime;
        }
        Step::Over
    }

    /// The provider's stream ended (or broke, or became unreadable): what is held is sent as it
    /// came when the provider's own terminal event is in it, else replaced by the API's error
    /// event.
    async fn close(&mut self, broken: Option<GatewayError>) -> Step {
        let tail = self.observer.close(broken);
        let out = if tail.is_empty() {
            std::mem::take(&mut self.held)
        } else {
            self.held.clear();
            tail
        };
        if !out.is_empty() && !self.deliver(out).await {
            return Step::OutOfTime;
        }
        Step::Over
    }

    /// Sends `bytes` to the client. `false`: the deadline passed. A client that left is noted
    /// and the bytes dropped.
    async fn deliver(&mut self, bytes: Vec<u8>) -> bool {
        match self.client.deliver(bytes).await {
            Some(true) => {
                if self.ttfb_ms.is_none() {
                    self.ttfb_ms = Some(now_ms().saturating_sub(self.started_at));
                }
                true
            }
            Some(false) => true,
            None => false,
        }
    }

    /// The deadline (or, after the client left, the drain's) passed. A client still there gets
    /// the API's capped ending (what fits in the channel); a drain that did not reach the
    /// provider's usage leaves it unknown.
    fn out_of_time(mut self) -> PumpEnd {
        if self.client.left() {
            let unknown = !self.observer.observed().completed();
            return self.finish(Some("drain_deadline"), unknown);
        }
        let before = self.observer.observed().output.len();
        let usage = self.guard.usage(&self.observer.observed().output);
        let tail = self.observer.cut(&NativeUsage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            ..NativeUsage::default()
        });
        self.cut_at = Some(before);
        self.client.try_send(tail);
        self.finish(Some("stream_deadline"), false)
    }

    /// Ends the relay: stops the provider, closes the client's stream, says how it ended.
    fn finish(mut self, code: Option<&'static str>, usage_unknown: bool) -> PumpEnd {
        self.source.abort();
        self.client.close();
        PumpEnd {
            cut_at: self.cut_at,
            client_left: self.client.left(),
            code,
            usage_unknown,
            ttfb_ms: self.ttfb_ms,
            extended: self.guard.extended,
            observer: self.observer,
        }
    }
}

/// The provider's own count for `POST /v1/messages/count_tokens` on an `anthropic` route (the
/// first route of `p`); `None` when the route is not one, or the provider does not answer a count
/// in time: the caller then answers the local count.
pub(crate) async fn count_tokens(
    p: &Prepared,
    req: &crate::core::inbound::anthropic::MessagesRequest,
    client: &messages::ClientHeaders,
) -> Option<u64> {
    if !serves_natively(&p.route, NativeApi::Messages) {
        return None;
    }
    let up = messages::count_tokens_request(&p.route, req, client).ok()?;
    let timeout_ms = p
        .route
        .timeouts()
        .first_byte_ms
        .unwrap_or(p.call.settings.upstream_timeout_ms);
    let started = now_ms();
    let (mut resp, abort) = upstream::send(&up, timeout_ms).await.ok()?;
    if !(200..300).contains(&resp.status_code()) {
        abort.abort();
        return None;
    }
    let left_ms = timeout_ms.saturating_sub(now_ms().saturating_sub(started));
    let body = upstream::read_answer(&mut resp, 64 * 1024, left_ms).await;
    abort.abort();
    messages::counted_tokens(&body.ok()?)
}
