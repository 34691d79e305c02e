//! `POST /v1/chat/completions`: authenticate, validate, count, reserve, call, relay, settle.

use std::collections::VecDeque;
use std::time::Duration;

use worker::{Context, D1Database, Delay, Env, Headers, Request, Response, ResponseBuilder};

use super::config::{self, Settings};
use super::relay::{self, Source, StreamEnd};
use super::{auth, db, http, now_ms, upstream};
use crate::core::billing::{reservation_micros, Price};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::meter::{self, bill, BillInput, RequestStatus, StreamMeter};
use crate::core::openai::{ChatCompletionRequest, Usage};
use crate::core::providers::{echo, ProviderKind, Route, UpstreamRequest};
use crate::core::tokens::{count_chat_prompt, encoding_for_model, Encoding};
use crate::core::{ids, session};

/// Plain responses larger than this are refused as an upstream failure.
const MAX_UPSTREAM_BODY: usize = 32 * 1024 * 1024;

/// Everything the settlement of one request needs, owned so it can outlive the response.
struct Pending {
    db: D1Database,
    env: Env,
    request_id: String,
    tenant_id: String,
    key_id: String,
    session_id: String,
    model: String,
    provider: String,
    kind: ProviderKind,
    upstream_model: String,
    stream: bool,
    price: Price,
    reserved: u64,
    local_prompt_tokens: u64,
    encoding: Option<Encoding>,
    started_at: u64,
    session_ttl_seconds: u64,
}

/// How a request ended, in the terms of its usage row.
struct End {
    status: RequestStatus,
    http_status: u16,
    error_code: Option<String>,
    completion_text: String,
    upstream_usage: Option<Usage>,
    delivered_output: bool,
    ttfb_ms: Option<u64>,
    ended_at: u64,
}

impl End {
    fn failed(err: &GatewayError) -> Self {
        End {
            status: RequestStatus::UpstreamError,
            http_status: err.status(),
            error_code: Some(err.code().to_string()),
            completion_text: String::new(),
            upstream_usage: None,
            delivered_output: false,
            ttfb_ms: None,
            ended_at: now_ms(),
        }
    }
}

impl From<StreamEnd> for End {
    fn from(e: StreamEnd) -> Self {
        End {
            status: e.status,
            http_status: 200,
            error_code: e.error.as_ref().map(|err| err.code().to_string()),
            completion_text: e.completion_text,
            upstream_usage: e.upstream_usage,
            delivered_output: e.delivered_output,
            ttfb_ms: e.ttfb_ms,
            ended_at: e.ended_at,
        }
    }
}

impl Pending {
    fn bill(&self, end: &End) -> meter::Bill {
        bill(&BillInput {
            status: end.status,
            delivered_output: end.delivered_output,
            local_prompt_tokens: self.local_prompt_tokens,
            completion_text: &end.completion_text,
            encoding: self.encoding,
            upstream_usage: end.upstream_usage.as_ref(),
            price: &self.price,
            reserved: self.reserved,
        })
    }

    /// Writes the usage row and returns the reservation, retrying on D1 errors (the batch is
    /// idempotent, so a retry after an unseen success changes nothing), then refreshes the
    /// session cache.
    async fn settle(self, end: End) {
        let bill = self.bill(&end);
        let row = db::UsageRow {
            request_id: &self.request_id,
            tenant_id: &self.tenant_id,
            key_id: &self.key_id,
            session_id: Some(&self.session_id),
            model: &self.model,
            provider: &self.provider,
            upstream_model: &self.upstream_model,
            stream: self.stream,
            bill: &bill,
            input_price: self.price.input,
            output_price: self.price.output,
            reserved: self.reserved,
            status: end.status.as_str(),
            http_status: end.http_status,
            error_code: end.error_code.as_deref(),
            latency_ms: end.ended_at.saturating_sub(self.started_at),
            ttfb_ms: end.ttfb_ms,
            created_at: self.started_at,
        };
        let mut delay_ms = 50;
        for attempt in 1..=5 {
            match db::settle(&self.db, &row).await {
                Ok(session) => {
                    if let Some(session) = session {
                        super::tenant::cache_session(&self.env, &session, self.session_ttl_seconds)
                            .await;
                    }
                    super::alerts::after_settlement(&self.env, &self.db, &self.tenant_id).await;
                    return;
                }
                Err(e) => {
                    worker::console_error!(
                        "settlement of {} failed (attempt {attempt}): {e}",
                        self.request_id
                    );
                    Delay::from(Duration::from_millis(delay_ms)).await;
                    delay_ms *= 4;
                }
            }
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
    let settings = Settings::from_env(env);
    let caller = auth::authenticate(&req, env).await?;
    let body = http::read_body(&mut req, settings.max_body_bytes).await?;
    let chat = ChatCompletionRequest::from_json(&body)?;
    let session_id = match req.headers().get("x-session-id").ok().flatten() {
        Some(id) => session::validate_session_id(&id)?.to_string(),
        None => ids::prefixed_id("sess", started_at),
    };

    let database = db::database(env)?;
    let model = db::load_model(&database, &chat.model)
        .await?
        .ok_or_else(|| {
            GatewayError::new(
                ErrorKind::ModelNotFound,
                format!("The model `{}` does not exist.", chat.model),
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
    let local_prompt_tokens = match encoding {
        Some(enc) => count_chat_prompt(enc, &chat),
        None => meter::estimate_tokens(&String::from_utf8_lossy(&body)),
    };
    let price = Price {
        input: model.input_price,
        cached_input: None,
        output: model.output_price,
        reasoning: None,
    };
    let max_output = chat
        .requested_max_output()
        .unwrap_or(model.max_output_tokens)
        .saturating_mul(chat.choices());
    let reserved = reservation_micros(local_prompt_tokens, max_output, &price);

    let api_key = match &model.api_key_secret {
        Some(name) => Some(config::secret(env, name).ok_or_else(|| {
            GatewayError::new(
                ErrorKind::UpstreamFailed,
                format!(
                    "Provider `{}` is not configured: its secret `{name}` is not set.",
                    model.provider
                ),
            )
        })?),
        None => None,
    };
    let route = Route {
        provider: model.provider.clone(),
        kind,
        base_url: model.base_url.clone(),
        api_key,
        upstream_model: model.upstream_model.clone(),
    };
    let adapter = kind.adapter();
    let upstream_request = adapter.build_request(&route, &chat)?;

    if !db::reserve(&database, request_id, &caller.key_id, reserved, started_at).await? {
        return Err(refusal(
            &database,
            &caller.key_id,
            reserved,
            local_prompt_tokens,
            max_output,
        )
        .await);
    }

    let pending = Pending {
        db: database,
        env: env.clone(),
        request_id: request_id.to_string(),
        tenant_id: caller.tenant_id,
        key_id: caller.key_id,
        session_id: session_id.clone(),
        model: model.name.clone(),
        provider: model.provider.clone(),
        kind,
        upstream_model: model.upstream_model.clone(),
        stream: chat.is_stream(),
        price,
        reserved,
        local_prompt_tokens,
        encoding,
        started_at,
        session_ttl_seconds: settings.session_ttl_seconds,
    };

    let reply = if kind == ProviderKind::Echo {
        echo_reply(&pending, &upstream_request, &settings)
    } else {
        call_upstream(&pending, &chat, &upstream_request, &settings).await
    };
    let response = match reply {
        Ok(Reply::Plain(body)) => finish_plain(pending, body, ctx),
        Ok(Reply::Stream(source)) => stream_response(pending, source, &chat, ctx),
        Err(err) => {
            ctx.wait_until(pending.settle(End::failed(&err)));
            Err(err)
        }
    };
    let mut response = response?;
    let headers = response.headers_mut();
    let _ = headers.set("x-session-id", &session_id);
    let _ = headers.set("x-request-id", request_id);
    Ok(response)
}

/// What the provider answered, before it is relayed.
enum Reply {
    Plain(Vec<u8>),
    Stream(Source),
}

/// Explains why a reservation was refused.
async fn refusal(
    db: &D1Database,
    key_id: &str,
    needed: u64,
    prompt_tokens: u64,
    max_output: u64,
) -> GatewayError {
    match db::key_state(db, key_id).await {
        Ok(Some(state)) if state.revoked_at.is_some() => GatewayError::new(
            ErrorKind::InvalidApiKey,
            "Incorrect API key provided: this key has been revoked.",
        ),
        Ok(Some(state)) if state.disabled_at.is_some() => GatewayError::new(
            ErrorKind::InvalidApiKey,
            "This API key's tenant is disabled.",
        ),
        Ok(Some(state)) => GatewayError::new(
            ErrorKind::InsufficientQuota,
            format!(
                "You exceeded your current quota: this request may cost up to {needed} micro-units \
                 ({prompt_tokens} prompt tokens and up to {max_output} completion tokens) but the \
                 available balance is {}. Top up, or lower max_tokens.",
                state.balance
            ),
        ),
        Ok(None) => GatewayError::new(ErrorKind::InvalidApiKey, "Incorrect API key provided."),
        Err(e) => e,
    }
}

fn sse_headers() -> Headers {
    let headers = Headers::new();
    let _ = headers.set("content-type", "text/event-stream; charset=utf-8");
    let _ = headers.set("cache-control", "no-cache");
    let _ = headers.set("x-accel-buffering", "no");
    headers
}

/// Starts relaying `source` to the client; settlement runs when the stream ends.
fn stream_response(
    pending: Pending,
    source: Source,
    chat: &ChatCompletionRequest,
    ctx: &Context,
) -> Result<Response, GatewayError> {
    let meter = StreamMeter::new(chat.wants_stream_usage());
    let decoder = pending.kind.adapter().stream_decoder();
    let (stream, ended) = relay::relay(source, decoder, meter, pending.started_at);
    ctx.wait_until(async move {
        let end = match ended.await {
            Ok(end) => End::from(end),
            // The relay always reports; a dropped sender means the runtime dropped it unpolled.
            Err(_) => End {
                status: RequestStatus::ClientAbort,
                http_status: 200,
                error_code: None,
                completion_text: String::new(),
                upstream_usage: None,
                delivered_output: false,
                ttfb_ms: None,
                ended_at: now_ms(),
            },
        };
        pending.settle(end).await;
    });
    ResponseBuilder::new()
        .with_status(200)
        .with_headers(sse_headers())
        .from_stream(stream)
        .map_err(|e| http::internal("stream response", e))
}

fn echo_reply(
    pending: &Pending,
    up: &UpstreamRequest,
    settings: &Settings,
) -> Result<Reply, GatewayError> {
    let id = format!("chatcmpl-{}", pending.request_id);
    Ok(
        match echo::serve(&up.body, &id, pending.started_at / 1000)? {
            echo::EchoReply::Json(body) => Reply::Plain(body),
            echo::EchoReply::Events(events) => Reply::Stream(Source::Local {
                events: VecDeque::from(events),
                delay_ms: settings.echo_chunk_delay_ms,
                started: false,
            }),
        },
    )
}

async fn call_upstream(
    pending: &Pending,
    chat: &ChatCompletionRequest,
    up: &UpstreamRequest,
    settings: &Settings,
) -> Result<Reply, GatewayError> {
    let (mut resp, abort) = upstream::send(up, settings.upstream_connect_timeout_ms).await?;
    let status = resp.status_code();
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
            idle_timeout_ms: settings.upstream_timeout_ms,
        }));
    }
    let body =
        upstream::read_body(&mut resp, MAX_UPSTREAM_BODY, settings.upstream_timeout_ms).await?;
    Ok(Reply::Plain(body))
}

/// Answers a plain (non-stream) completion and settles it.
fn finish_plain(pending: Pending, body: Vec<u8>, ctx: &Context) -> Result<Response, GatewayError> {
    let parsed = match pending.kind.adapter().parse_response(&body) {
        Ok(parsed) => parsed,
        Err(err) => {
            ctx.wait_until(pending.settle(End::failed(&err)));
            return Err(err);
        }
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
    };
    let cost = pending.bill(&end).cost;
    ctx.wait_until(pending.settle(end));
    let mut resp = http::bytes_response(200, "application/json", body)?;
    let _ = resp.headers_mut().set("x-tollgate-cost", &cost.to_string());
    Ok(resp)
}
