//! The end of a metered call: the answer it gets (plain, stream, or a charged failure) and its
//! settlement (the usage row written, the reservation returned, once).

use std::time::Duration;

use worker::{Context, Delay, Headers, Response, ResponseBuilder};

use super::relay;
use super::relay::Source;
use super::ticket::{End, Pending};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::inbound::client::ClientFormat;
use crate::core::meter::{self, RequestStatus, StreamMeter};
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::d1 as db;
use crate::edge::platform::response::{
    bytes_response, error_response, error_response_in, internal,
};
use crate::edge::store;
use crate::edge::store::idempotency;

impl Pending {
    /// Writes the usage row and returns the reservation, retrying on D1 errors (the batch is
    /// idempotent, so a retry after an unseen success changes nothing), then refreshes the
    /// session cache. When every attempt failed, the row is kept in KV (`pending-settle:<request
    /// id>`, see `edge::cron`) for the scheduled handler to write, and logged with its bill.
    ///
    /// A call admitted on a lease first waits for its take's answer (sent before its upstream
    /// call): the settlement then finds the hold the take made. If the wallet refused the take
    /// (its lease had expired or been cancelled, and the fallback reserve was refused), the call
    /// is settled as today's settle does without a reservation: its cost comes from the allowance
    /// and the balance, the rest is debt (docs/money.md "Credit leases").
    pub(crate) async fn settle(mut self, end: End) {
        if let Some(announce) = self.announce.take() {
            if let Err(refusal) = announce.landed().await {
                worker::console_warn!(
                    "lease take of {} refused after its upstream call ({}): settled without a reservation",
                    self.request_id,
                    refusal.code()
                );
            }
        }
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
            api: self.format.api().as_str().to_string(),
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
            media: None,
            cache_write_5m_tokens: 0,
            cache_write_1h_tokens: 0,
            long_context: false,
        };
        row.set_bill(&bill);
        row.media = self
            .media
            .as_ref()
            .map(|m| m.columns(end.status, end.usage_unknown));
        let cache_session = self.session_ttl_seconds > 0;
        let fault = crate::edge::platform::env::settings(&self.env).fault("settle_d1");
        let wallet_fault = crate::edge::platform::env::settings(&self.env).fault("settle_wallet");
        const ATTEMPTS: u32 = 5;
        let mut delay_ms = 50;
        for attempt in 1..=ATTEMPTS {
            let now = now_ms();
            if self.wallet {
                let settled = if wallet_fault {
                    Err("injected fault settle_wallet".to_string())
                } else {
                    super::wallet::settle_observed(&self.env, &row, self.session_ttl_seconds).await
                };
                match settled {
                    Ok(figures) => {
                        self.settle_idempotency(&end, &bill).await;
                        // The D1 path's side effects, from the wallet's numbers: the session's KV
                        // copy is refreshed by the wallet's export (it has the D1 totals then).
                        if let Some((before, after)) = figures {
                            super::alerts::after_wallet_settlement(
                                &self.db,
                                &self.env,
                                &self.tenant_id,
                                &before.observation(),
                                &after.observation(),
                                now,
                            )
                            .await;
                        }
                        return;
                    }
                    Err(e) => {
                        worker::console_error!(
                            "wallet settlement of {} failed (attempt {attempt}): {e}",
                            self.request_id
                        );
                        if attempt < ATTEMPTS {
                            Delay::from(Duration::from_millis(delay_ms)).await;
                            delay_ms *= 4;
                        }
                        continue;
                    }
                }
            }
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

/// Settles a request that failed before any output and returns its error. A failure the provider
/// may have billed is charged ([`End::failed`]); its idempotency key then keeps the error as the
/// request's answer, so that a retry with the key replays it instead of paying again.
///
/// A call admitted on a lease whose take the wallet refused gets the refusal as its answer
/// instead (nothing was sent to the client yet), and is settled as the failure it was.
pub(crate) async fn fail(mut pending: Pending, err: GatewayError, ctx: &Context) -> GatewayError {
    if let Some(announce) = pending.announce.take() {
        if let Err(refusal) = announce.landed().await {
            ctx.wait_until(pending.settle(End::failed(&err)));
            return refusal.to_error();
        }
    }
    if err.provider_may_have_billed() {
        if let Some(key) = &pending.idempotency {
            let body = pending.format.error_body(&err, &pending.request_id);
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

/// The answer to a failure that was charged: the error in the client's API, with
/// `x-should-retry: false` (an SDK's automatic retry would be charged again).
pub(crate) fn charged_failure(
    err: &GatewayError,
    format: &ClientFormat,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let mut resp = match format {
        ClientFormat::OpenAi { .. } => error_response(err),
        _ => error_response_in(err, format.error_body(err, request_id)),
    }
    .map_err(|e| internal("error response", e))?;
    let _ = resp.headers_mut().set("x-should-retry", "false");
    Ok(resp)
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
    ctx: &Context,
) -> Result<Response, GatewayError> {
    let meter = StreamMeter::new();
    let encoder = pending.format.encoder();
    let decoder = pending
        .kind
        .adapter()
        .stream_decoder(&pending.response_context());
    let guard = pending.stream_guard();
    let headers = sse_headers();
    for (name, value) in pending.rate_headers.pairs() {
        let _ = headers.set(name, &value);
    }
    if let Some((name, value)) = pending.lease_header() {
        let _ = headers.set(name, value);
    }
    let (stream, pump) = relay::relay(
        source,
        decoder,
        meter,
        encoder,
        Some(guard),
        pending.relay_limits(),
    );
    ctx.wait_until(async move {
        let end = End::from(pump.await);
        pending.settle(end).await;
    });
    ResponseBuilder::new()
        .with_status(200)
        .with_headers(headers)
        .from_stream(stream)
        .map_err(|e| internal("stream response", e))
}

/// Answers a plain (non-stream) completion and settles it.
pub(crate) async fn finish_plain(
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
    let end = End {
        status: RequestStatus::Ok,
        http_status: 200,
        error_code: None,
        completion_text: parsed.generated_text(),
        finish_reason: parsed.finish_reason(),
        upstream_usage: parsed.usage.clone(),
        delivered_output: true,
        ttfb_ms: Some(now_ms().saturating_sub(pending.started_at)),
        ended_at: now_ms(),
        extended: 0,
        usage_unknown: false,
    };
    let cost = pending.bill(&end).cost;
    // The bytes the client receives (also what an idempotent replay returns).
    let body =
        pending
            .format
            .encode_plain(body, &parsed, adapter.forwards_plain_body(), &pending.model);
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
