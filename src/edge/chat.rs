//! `POST /v1/chat/completions`: authenticate, validate, count, reserve, call, relay, settle.

use crate::edge::store;
use std::time::Duration;

use worker::{Context, D1Database, Delay, Env, Headers, Request, Response, ResponseBuilder};

use super::guard::StreamGuard;
use super::relay::{self, Limits, Source, StreamEnd};
use super::{auth, http, routes};
use crate::core::billing::guard::OutputGuard;
use crate::core::billing::{reservation_micros_scaled, Price};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::meter::{self, bill, bill_reserved, BillInput, RequestStatus, StreamMeter};
use crate::core::openai::{ChatCompletionRequest, Usage};
use crate::core::providers::{
    echo, ProviderKind, ResponseContext, Route, RouteTimeouts, UpstreamRequest,
};
use crate::core::routing::{counts_for_breaker, may_fall_back, plain_timeout_ms, request_deadline};
use crate::core::tokens::{
    encoding_for_model, prompt_tokens_for_reservation, Encoding, MediaRules,
};
use crate::core::{ids, session};
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::d1 as db;
use crate::edge::platform::env::{settings, Settings};
use crate::edge::platform::fetch as upstream;
use crate::edge::store::idempotency::{self, Claim, ClaimedKey};

/// Plain answers larger than this are refused (`upstream_unusable`, charged): never buffered past
/// it, never cut silently. 8 MiB is far above any ordinary completion.
const MAX_UPSTREAM_BODY: usize = 8 * 1024 * 1024;

/// Everything the settlement of one request needs, owned so it can outlive the response.
pub(crate) struct Pending {
    pub(crate) db: D1Database,
    pub(crate) env: Env,
    pub(crate) request_id: String,
    pub(crate) tenant_id: String,
    pub(crate) key_id: String,
    pub(crate) session_id: String,
    pub(crate) model: String,
    pub(crate) provider: String,
    pub(crate) kind: ProviderKind,
    pub(crate) upstream_model: String,
    /// Routes that failed (retryably) before the serving one, `provider/upstream_model`.
    pub(crate) routes_tried: Vec<String>,
    /// The serving route's own timeouts.
    pub(crate) timeouts: RouteTimeouts,
    pub(crate) stream: bool,
    pub(crate) price: Price,
    pub(crate) price_version: Option<u64>,
    pub(crate) multiplier_bps: u64,
    pub(crate) reserved: u64,
    /// Output tokens the reservation covers, and whether the client capped them itself.
    pub(crate) covered_output: u64,
    pub(crate) client_capped: bool,
    pub(crate) choices: u64,
    pub(crate) idempotency: Option<ClaimedKey>,
    pub(crate) local_prompt_tokens: u64,
    pub(crate) encoding: Option<Encoding>,
    pub(crate) started_at: u64,
    /// Lifetime of the session's copy in KV; 0: not copied (a session Tollgate named for a
    /// single request, which the client did not ask to keep: D1 has it).
    pub(crate) session_ttl_seconds: u64,
}

/// How a request ended, in the terms of its usage row.
pub(crate) struct End {
    pub(crate) status: RequestStatus,
    pub(crate) http_status: u16,
    pub(crate) error_code: Option<String>,
    pub(crate) completion_text: String,
    pub(crate) upstream_usage: Option<Usage>,
    pub(crate) delivered_output: bool,
    pub(crate) ttfb_ms: Option<u64>,
    pub(crate) ended_at: u64,
    /// Micro-units added to the reservation while streaming.
    pub(crate) extended: u64,
    /// The provider may have served more than the gateway saw and gave no usage: the whole
    /// reservation is charged ([`bill_reserved`]).
    pub(crate) usage_unknown: bool,
}

impl End {
    /// A request whose client was gone before anything reached it.
    pub(crate) fn abandoned() -> Self {
        End::without_output(RequestStatus::ClientAbort, 200, None)
    }

    /// A request that failed before any output reached the client. Free, unless the provider
    /// may have done the work (a timeout after sending, an unusable 2xx): then the reservation
    /// is charged.
    pub(crate) fn failed(err: &GatewayError) -> Self {
        let status = match err.kind {
            ErrorKind::UpstreamUnanswered => RequestStatus::UpstreamTimeout,
            ErrorKind::UpstreamUnusable => RequestStatus::UpstreamUnusable,
            _ => RequestStatus::UpstreamError,
        };
        End {
            usage_unknown: err.provider_may_have_billed(),
            ..End::without_output(status, err.status(), Some(err.code().to_string()))
        }
    }

    /// An end before any output reached the client, now.
    fn without_output(status: RequestStatus, http_status: u16, error_code: Option<String>) -> Self {
        End {
            status,
            http_status,
            error_code,
            completion_text: String::new(),
            upstream_usage: None,
            delivered_output: false,
            ttfb_ms: None,
            ended_at: now_ms(),
            extended: 0,
            usage_unknown: false,
        }
    }
}

impl From<StreamEnd> for End {
    fn from(e: StreamEnd) -> Self {
        End {
            status: e.status,
            http_status: 200,
            error_code: e
                .error
                .as_ref()
                .map(|err| err.code().to_string())
                .or_else(|| e.code.map(str::to_string)),
            completion_text: e.completion_text,
            upstream_usage: e.upstream_usage,
            delivered_output: e.delivered_output,
            ttfb_ms: e.ttfb_ms,
            ended_at: e.ended_at,
            extended: e.extended,
            usage_unknown: e.usage_unknown,
        }
    }
}

impl Pending {
    /// The output guard of this request's stream: what its reservation covers, and how to grow it.
    pub(crate) fn stream_guard(&self) -> StreamGuard {
        StreamGuard {
            env: self.env.clone(),
            request_id: self.request_id.clone(),
            guard: OutputGuard::new(self.encoding, self.covered_output, self.client_capped),
            encoding: self.encoding,
            price: self.price,
            multiplier_bps: self.multiplier_bps,
            prompt_tokens: self.local_prompt_tokens,
            choices: self.choices,
            extended: 0,
        }
    }

    /// Ids and names for adapters that build OpenAI responses from native ones.
    pub(crate) fn response_context(&self) -> ResponseContext {
        ResponseContext {
            id: format!("chatcmpl-{}", self.request_id),
            created: self.started_at / 1000,
            model: self.model.clone(),
        }
    }

    pub(crate) fn bill(&self, end: &End) -> meter::Bill {
        let input = BillInput {
            status: end.status,
            delivered_output: end.delivered_output,
            local_prompt_tokens: self.local_prompt_tokens,
            completion_text: &end.completion_text,
            encoding: self.encoding,
            upstream_usage: end.upstream_usage.as_ref(),
            price: &self.price,
            multiplier_bps: self.multiplier_bps,
            reserved: self.reserved.saturating_add(end.extended),
        };
        if end.usage_unknown {
            bill_reserved(&input, self.covered_output)
        } else {
            bill(&input)
        }
    }

    /// The wall-clock deadline of this request's upstream calls (below the stale-reservation
    /// sweep, `STALE_RESERVATION_SECONDS`).
    pub(crate) fn deadline(&self) -> u64 {
        let stale = settings(&self.env).stale_reservation_seconds;
        request_deadline(self.started_at, stale)
    }

    /// The clocks of this request's stream relay.
    pub(crate) fn relay_limits(&self) -> Limits {
        Limits {
            started_at: self.started_at,
            deadline: self.deadline(),
            drain_ms: settings(&self.env).client_abort_drain_ms,
        }
    }

    /// Writes the usage row and returns the reservation, retrying on D1 errors (the batch is
    /// idempotent, so a retry after an unseen success changes nothing), then refreshes the
    /// session cache. When every attempt failed, the row is kept in KV (`pending-settle:<request
    /// id>`, see `edge::cron`) for the scheduled handler to write, and logged with its bill.
    pub(crate) async fn settle(self, end: End) {
        let bill = self.bill(&end);
        let routes_tried = (!self.routes_tried.is_empty())
            .then(|| serde_json::to_string(&self.routes_tried).ok())
            .flatten();
        let mut row = store::ledger::UsageRow {
            request_id: self.request_id.clone(),
            tenant_id: self.tenant_id.clone(),
            key_id: self.key_id.clone(),
            session_id: Some(self.session_id.clone()),
            model: self.model.clone(),
            provider: self.provider.clone(),
            upstream_model: self.upstream_model.clone(),
            stream: self.stream,
            prompt_tokens: 0,
            cached_prompt_tokens: 0,
            completion_tokens: 0,
            reasoning_tokens: 0,
            upstream_prompt_tokens: None,
            upstream_completion_tokens: None,
            local_prompt_tokens: 0,
            local_completion_tokens: 0,
            usage_source: String::new(),
            cost: 0,
            price_version: self.price_version,
            multiplier_bps: self.multiplier_bps,
            idempotency_key: self.idempotency.as_ref().map(|k| k.key.clone()),
            reserved: self.reserved.saturating_add(end.extended),
            status: end.status.as_str().to_string(),
            http_status: end.http_status,
            error_code: end.error_code.clone(),
            latency_ms: end.ended_at.saturating_sub(self.started_at),
            ttfb_ms: end.ttfb_ms,
            created_at: self.started_at,
            routes_tried,
        };
        row.set_bill(&bill);
        let cache_session = self.session_ttl_seconds > 0;
        let fault = crate::edge::platform::env::settings(&self.env).fault("settle_d1");
        const ATTEMPTS: u32 = 5;
        let mut delay_ms = 50;
        for attempt in 1..=ATTEMPTS {
            let now = now_ms();
            let result = if fault {
                Err(db::d1_error("injected fault settle_d1 (TOLLGATE_FAULTS)"))
            } else {
                store::ledger::settle(&self.db, &row, cache_session, now).await
            };
            match result {
                Ok(settled) => {
                    self.settle_idempotency(&end, &bill).await;
                    if let Some(session) = settled.session {
                        store::sessions::cache_session(
                            &self.env,
                            &session,
                            self.session_ttl_seconds,
                        )
                        .await;
                    }
                    super::alerts::after_settlement(
                        &self.env,
                        &self.db,
                        &self.tenant_id,
                        settled.alert_rules,
                        now,
                    )
                    .await;
                    return;
                }
                Err(e) => {
                    worker::console_error!(
                        "settlement of {} failed (attempt {attempt}): {e}",
                        self.request_id
                    );
                    if attempt < ATTEMPTS {
                        Delay::from(Duration::from_millis(delay_ms)).await;
                        delay_ms *= 4;
                    }
                }
            }
        }
        store::pending::keep_pending_settlement(&self.env, &row).await;
    }
}

impl Pending {
    /// After settlement: a key whose request was charged nothing is released (a retry runs
    /// again); a stream's key is marked done. A plain success was marked done, with its
    /// response, before the response was sent.
    async fn settle_idempotency(&self, end: &End, bill: &meter::Bill) {
        let Some(key) = &self.idempotency else {
            return;
        };
        let result = if bill.cost == 0 && end.status == RequestStatus::UpstreamError {
            idempotency::release(&self.db, key).await
        } else if self.stream {
            idempotency::complete(&self.db, key, end.http_status, None).await
        } else {
            Ok(())
        };
        if let Err(e) = result {
            worker::console_error!("idempotency key of {}: {e}", self.request_id);
        }
    }
}

pub async fn chat_completions(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let started_at = now_ms();
    let settings = Settings::clone(&settings(env));
    let caller = auth::authenticate(&req, env).await?;
    let body = http::read_body(&mut req, settings.max_body_bytes).await?;
    let mut chat = ChatCompletionRequest::from_json(&body)?;
    crate::core::providers::openai::attribute_to_tenant(&mut chat, &caller.tenant_id);
    let (session_id, session_named) = match req.headers().get("x-session-id").ok().flatten() {
        Some(id) => (session::validate_session_id(&id)?.to_string(), true),
        None => (ids::prefixed_id("sess", started_at), false),
    };
    // KV keeps a copy of the sessions clients name; one Tollgate named for this request alone
    // lives in D1 only (0: not copied), in every round of a plugin tool loop too.
    let settings = Settings {
        session_ttl_seconds: if session_named {
            settings.session_ttl_seconds
        } else {
            0
        },
        ..settings
    };

    let database = db::database(env)?;
    let model_name = routes::resolve_auto(env, &mut chat, &body)?;
    let model = store::models::cached_model(&database, &model_name, &caller.tenant_id)
        .await?
        .ok_or_else(|| {
            GatewayError::new(
                ErrorKind::ModelNotFound,
                format!("The model `{model_name}` does not exist."),
            )
            .with_code("model_not_found")
        })?;
    if !caller.may_use(&model.name) {
        return Err(GatewayError::new(
            ErrorKind::ModelNotAllowed,
            format!("This API key may not use the model `{}`.", model.name),
        ));
    }
    let kind = ProviderKind::parse(&model.kind).ok_or_else(|| {
        GatewayError::internal(format!(
            "provider `{}` has unknown kind `{}`",
            model.provider, model.kind
        ))
    })?;
    let encoding = model
        .encoding
        .as_deref()
        .and_then(Encoding::from_name)
        .or_else(|| encoding_for_model(&model.upstream_model))
        .or_else(|| encoding_for_model(&model.name));
    // Text, images, audio and files, priced conservatively; 400 for a part that cannot be.
    let media = MediaRules::for_model(kind, &[&model.upstream_model, &model.name]);
    let local_prompt_tokens = prompt_tokens_for_reservation(encoding, media, &chat)?;
    let price = Price {
        input: model.input_price,
        cached_input: model.cached_input_price,
        output: model.output_price,
        reasoning: model.reasoning_price,
    };
    let max_output = chat
        .requested_max_output()
        .unwrap_or(model.max_output_tokens)
        .saturating_mul(chat.choices());
    let reserved = reservation_micros_scaled(
        local_prompt_tokens,
        max_output,
        &price,
        model.multiplier_bps,
    );

    let attempts = routes::prepare_routes(env, &database, &model, kind, &chat, request_id).await?;
    let first_route = attempts[0].0.clone();
    // ---- idempotency and plugins. The key is claimed before plugins see the request, so a
    // retried plugin request (tool loop or command) is answered from its record, never run and
    // charged twice; a replay is refused once the key or its tenant is no longer live.
    let claimed = match idempotency::claim(
        &database,
        req.headers().get("idempotency-key").ok().flatten(),
        &caller.tenant_id,
        request_id,
        &body,
        chat.is_stream(),
        started_at,
    )
    .await?
    {
        Claim::Replay {
            http_status,
            body,
            request_id,
        } => {
            super::tenant::ensure_live(&database, &caller).await?;
            let mut resp =
                http::bytes_response(http_status, "application/json", body.into_bytes())?;
            let headers = resp.headers_mut();
            let _ = headers.set("idempotent-replayed", "true");
            let _ = headers.set("x-request-id", &request_id);
            return Ok(resp);
        }
        Claim::Fresh(key) => Some(key),
        Claim::None => None,
    };
    // Slash commands and requests that enable plugins are served by the tool loop
    // (src/edge/plugins), which settles the claimed key itself; the plugin fields are removed
    // from every request.
    let had_plugins_field = crate::core::plugins::PLUGIN_FIELDS
        .iter()
        .any(|f| chat.extra.contains_key(*f));
    let turn = super::plugins::Turn {
        env,
        ctx,
        db: &database,
        request_id,
        caller: &caller,
        session_id: &session_id,
        model: &model,
        kind,
        route: &first_route,
        encoding,
        price,
        settings: &settings,
        idempotency: claimed.as_ref(),
    };
    let intercepted = super::plugins::intercept(&turn, &mut chat).await;
    let mut attempts = attempts;
    let rebuilt = match intercepted {
        Ok(Some(response)) => return Ok(response),
        Ok(None) if had_plugins_field => {
            // The upstream requests were built with the plugin fields the tool loop removed.
            attempts.iter_mut().try_for_each(|(route, up)| {
                *up = route.kind.adapter().build_request(route, &chat)?;
                Ok::<(), GatewayError>(())
            })
        }
        Ok(None) => Ok(()),
        Err(err) => Err(err),
    };
    if let Err(err) = rebuilt {
        if let Some(key) = &claimed {
            let _ = idempotency::release(&database, key).await;
        }
        return Err(err);
    }
    // ---- end idempotency and plugins

    let reserve =
        store::ledger::reserve(&database, request_id, &caller.key_id, reserved, started_at).await;
    if !matches!(reserve, Ok(true)) {
        if let Some(key) = &claimed {
            let _ = idempotency::release(&database, key).await;
        }
        reserve?;
        return Err(refusal(
            &database,
            &caller.key_id,
            reserved,
            local_prompt_tokens,
            max_output,
        )
        .await);
    }

    let mut pending = Pending {
        db: database,
        env: env.clone(),
        request_id: request_id.to_string(),
        tenant_id: caller.tenant_id,
        key_id: caller.key_id,
        session_id: session_id.clone(),
        model: model.name.clone(),
        provider: first_route.provider.clone(),
        kind: first_route.kind,
        upstream_model: first_route.upstream_model.clone(),
        routes_tried: Vec::new(),
        timeouts: first_route.timeouts(),
        stream: chat.is_stream(),
        price,
        price_version: model.price_version,
        multiplier_bps: model.multiplier_bps,
        reserved,
        covered_output: max_output,
        client_capped: chat.requested_max_output().is_some(),
        choices: chat.choices(),
        idempotency: claimed,
        local_prompt_tokens,
        encoding,
        started_at,
        session_ttl_seconds: settings.session_ttl_seconds,
    };

    let reply = if pending.kind == ProviderKind::Echo {
        echo_reply(&pending, &attempts[0].1, &settings)
    } else if attempts.len() == 1 {
        call_upstream(&pending, &chat, &attempts[0].1, &settings).await
    } else {
        call_routes(&mut pending, env, &chat, &attempts, &settings).await
    };
    let response = match reply {
        Ok(Reply::Plain(body)) => finish_plain(pending, body, ctx).await,
        Ok(Reply::Stream(source)) => stream_response(pending, source, &chat, ctx),
        Err(err) => Err(fail(pending, err, ctx).await),
    };
    let response = match response {
        Err(charged) if charged.provider_may_have_billed() => charged_failure(&charged),
        other => other,
    };
    let mut response = response?;
    let headers = response.headers_mut();
    let _ = headers.set("x-session-id", &session_id);
    let _ = headers.set("x-request-id", request_id);
    Ok(response)
}

/// Settles a request that failed before any output and returns its error. A failure the provider
/// may have billed is charged ([`End::failed`]); its idempotency key then keeps the error as the
/// request's answer, so that a retry with the key replays it instead of paying again.
async fn fail(pending: Pending, err: GatewayError, ctx: &Context) -> GatewayError {
    if err.provider_may_have_billed() {
        if let Some(key) = &pending.idempotency {
            let body = err.to_json();
            if let Err(e) =
                idempotency::complete(&pending.db, key, err.status(), Some(body.as_bytes())).await
            {
                worker::console_error!("idempotency key of {}: {e}", pending.request_id);
            }
        }
    }
    ctx.wait_until(pending.settle(End::failed(&err)));
    err
}

/// The answer to a failure that was charged: the OpenAI error, with `x-should-retry: false` (an
/// SDK's automatic retry would be charged again).
fn charged_failure(err: &GatewayError) -> Result<Response, GatewayError> {
    let mut resp = http::error_response(err).map_err(|e| http::internal("error response", e))?;
    let _ = resp.headers_mut().set("x-should-retry", "false");
    Ok(resp)
}

/// What the provider answered, before it is relayed.
pub(crate) enum Reply {
    Plain(Vec<u8>),
    Stream(Source),
}

/// Explains why a reservation was refused.
pub(crate) async fn refusal(
    db: &D1Database,
    key_id: &str,
    needed: u64,
    prompt_tokens: u64,
    max_output: u64,
) -> GatewayError {
    match store::keys::key_state(db, key_id).await {
        Ok(Some(state)) if state.revoked_at.is_some() => GatewayError::new(
            ErrorKind::InvalidApiKey,
            "Incorrect API key provided: this key has been revoked.",
        ),
        Ok(Some(state)) if state.disabled_at.is_some() => GatewayError::new(
            ErrorKind::InvalidApiKey,
            "This API key's tenant is disabled.",
        ),
        Ok(Some(state)) if state.debt > 0 => GatewayError::new(
            ErrorKind::InsufficientQuota,
            format!(
                "You exceeded your current quota: earlier requests cost {} micro-units more than \
                 your balance covered, and this debt must be paid before new requests. Add credit \
                 (it pays the debt first).",
                state.debt
            ),
        ),
        Ok(Some(state)) => GatewayError::new(
            ErrorKind::InsufficientQuota,
            format!(
                "You exceeded your current quota: this request may cost up to {needed} micro-units \
                 ({prompt_tokens} prompt tokens and up to {max_output} completion tokens) but the \
                 available balance is {}. Top up, or lower max_tokens.",
                state.balance.saturating_add(state.allowance_remaining)
            ),
        ),
        Ok(None) => GatewayError::new(ErrorKind::InvalidApiKey, "Incorrect API key provided."),
        Err(e) => e,
    }
}

pub(crate) fn sse_headers() -> Headers {
    let headers = Headers::new();
    let _ = headers.set("content-type", "text/event-stream; charset=utf-8");
    let _ = headers.set("cache-control", "no-cache");
    let _ = headers.set("x-accel-buffering", "no");
    headers
}

/// Starts relaying `source` to the client; settlement runs when the stream ends.
pub(crate) fn stream_response(
    pending: Pending,
    source: Source,
    chat: &ChatCompletionRequest,
    ctx: &Context,
) -> Result<Response, GatewayError> {
    let meter = StreamMeter::new(chat.wants_stream_usage());
    let decoder = pending
        .kind
        .adapter()
        .stream_decoder(&pending.response_context());
    let guard = pending.stream_guard();
    let (stream, pump) = relay::relay(source, decoder, meter, Some(guard), pending.relay_limits());
    ctx.wait_until(async move {
        let end = End::from(pump.await);
        pending.settle(end).await;
    });
    ResponseBuilder::new()
        .with_status(200)
        .with_headers(sse_headers())
        .from_stream(stream)
        .map_err(|e| http::internal("stream response", e))
}

pub(crate) fn echo_reply(
    pending: &Pending,
    up: &UpstreamRequest,
    settings: &Settings,
) -> Result<Reply, GatewayError> {
    let id = format!("chatcmpl-{}", pending.request_id);
    Ok(
        match echo::serve(&up.body, &id, pending.started_at / 1000)? {
            echo::EchoReply::Json(body) => Reply::Plain(body),
            echo::EchoReply::Events(events) => Reply::Stream(Source::Local {
                events,
                delay_ms: settings.echo_chunk_delay_ms,
                started: false,
            }),
        },
    )
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
    attempts: &[(Route, UpstreamRequest)],
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
        match call_upstream(pending, chat, up, settings).await {
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
        }));
    }
    let left_ms = headers_ms.saturating_sub(now_ms().saturating_sub(started));
    let body = upstream::read_answer(&mut resp, MAX_UPSTREAM_BODY, left_ms).await;
    if body.is_err() {
        abort.abort();
    }
    Ok(Reply::Plain(body?))
}

/// Answers a plain (non-stream) completion and settles it.
async fn finish_plain(
    pending: Pending,
    body: Vec<u8>,
    ctx: &Context,
) -> Result<Response, GatewayError> {
    let adapter = pending.kind.adapter();
    let parsed = match adapter.parse_response(&body, &pending.response_context()) {
        Ok(parsed) => parsed,
        Err(err) => {
            // A 2xx the gateway cannot read: the provider billed it.
            let err = GatewayError::new(
                ErrorKind::UpstreamUnusable,
                format!("The provider's answer could not be used: {}", err.message),
            );
            return Err(fail(pending, err, ctx).await);
        }
    };
    let body = match adapter.forwards_plain_body() {
        true => crate::core::providers::openai::public_body(body, &pending.model),
        false => body,
    };
    let end = End {
        status: RequestStatus::Ok,
        http_status: 200,
        error_code: None,
        completion_text: parsed.generated_text(),
        upstream_usage: parsed.usage.clone(),
        delivered_output: true,
        ttfb_ms: Some(now_ms().saturating_sub(pending.started_at)),
        ended_at: now_ms(),
        extended: 0,
        usage_unknown: false,
    };
    let cost = pending.bill(&end).cost;
    // The bytes the client receives: the provider's own for OpenAI-shaped providers, else the
    // OpenAI encoding of the native answer (which is also what an idempotent replay returns).
    let body = if adapter.forwards_plain_body() {
        Ok(body)
    } else {
        serde_json::to_vec(&parsed)
            .map_err(|e| GatewayError::internal(format!("cannot encode the response: {e}")))
    };
    let body = match body {
        Ok(body) => body,
        Err(err) => {
            ctx.wait_until(pending.settle(end));
            return Err(err);
        }
    };
    if let Some(key) = &pending.idempotency {
        // Before the response leaves: a retry that arrives after it must find it stored.
        if let Err(e) = idempotency::complete(&pending.db, key, 200, Some(&body)).await {
            worker::console_error!("idempotency key of {}: {e}", pending.request_id);
        }
    }
    ctx.wait_until(pending.settle(end));
    let mut resp = http::bytes_response(200, "application/json", body)?;
    let _ = resp.headers_mut().set("x-tollgate-cost", &cost.to_string());
    Ok(resp)
}
