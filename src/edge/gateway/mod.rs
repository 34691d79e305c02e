//! Layer 2 of the edge: the metered call, whatever API it came in by. A request's
//! [`context::Call`] is admitted to a model ([`admit`]), counted and routed ([`prepare`]), its key
//! claimed ([`claim`]); then [`run`] issues its ticket (the reservation, [`ticket::issue`]),
//! dispatches it over the routes ([`dispatch`]), relays the answer ([`relay`]) and settles it
//! ([`settle`]). The plugin tool loop (`edge::plugins`) is built on top of these functions; this
//! layer never imports it. Uses `store` and `platform` below it, never `plugins` or `api`.

pub mod admit;
pub mod alerts;
pub mod auth;
pub mod context;
pub mod dispatch;
pub mod guard;
pub mod media;
pub mod media_ticket;
pub mod native;
pub mod relay;
pub mod reserve;
pub mod routes;
pub mod settle;
pub mod ticket;
pub mod wallet;

use worker::{Context, D1Database, Response};

use crate::core::error::GatewayError;
use crate::core::inbound::client::ClientFormat;
use crate::core::openai::ChatCompletionRequest;
use crate::core::providers::{Route, UpstreamCall};
use crate::edge::platform::d1 as db;
use crate::edge::store::idempotency::{self, Claim, ClaimedKey};
use admit::Admitted;
use context::Call;
use dispatch::Reply;
use reserve::Count;
use ticket::Order;

/// A request admitted, counted and routed; nothing reserved yet.
pub(crate) struct Prepared {
    pub call: Call,
    pub db: D1Database,
    pub admitted: Admitted,
    pub count: Count,
    /// The route tried first.
    pub route: Route,
    /// The routes to try, in order, each with its upstream request.
    pub attempts: Vec<(Route, UpstreamCall)>,
}

/// Admits `chat` for the call, counts it (400 for a part that cannot be priced) and builds its
/// upstream requests (the first error when no route can take it).
pub(crate) async fn prepare(
    call: Call,
    chat: &mut ChatCompletionRequest,
    body: &[u8],
) -> Result<Prepared, GatewayError> {
    let db = db::database(&call.env)?;
    // The tenant's own safety identifier replaces any the client sent (docs/providers.md).
    crate::core::providers::openai::attribute_to_tenant(chat, &call.caller.tenant_id);
    let admitted = admit::admit(&call, &db, chat, body).await?;
    let count = reserve::count(&admitted, chat)?;
    let (model, kind) = (&admitted.model, admitted.kind);
    let attempts =
        routes::prepare_routes(&call.env, &db, model, kind, chat, &call.request_id).await?;
    let route = match attempts.first() {
        Some((route, _)) => route.clone(),
        None => return Err(GatewayError::internal("the model has no provider route")),
    };
    Ok(Prepared {
        call,
        db,
        admitted,
        count,
        route,
        attempts,
    })
}

impl Prepared {
    /// Builds the upstream requests again from `chat` (after the plugins layer removed its
    /// fields from it).
    pub(crate) fn rebuild(&mut self, chat: &ChatCompletionRequest) -> Result<(), GatewayError> {
        for (route, up) in self.attempts.iter_mut() {
            *up = route.kind.adapter().build_call(route, chat)?;
        }
        Ok(())
    }
}

/// Claims the request's `Idempotency-Key` (when it has one). A replay is answered only while
/// the key and its tenant are live.
pub(crate) async fn claim(
    p: &Prepared,
    key: Option<String>,
    body: &[u8],
    stream: bool,
) -> Result<Claim, GatewayError> {
    let call = &p.call;
    let (tenant, id) = (&call.caller.tenant_id, &call.request_id);
    let claim = idempotency::claim(&p.db, key, tenant, id, body, stream, call.started_at).await?;
    if matches!(claim, Claim::Replay { .. }) {
        auth::ensure_live(&p.db, &call.caller).await?;
    }
    Ok(claim)
}

/// Releases the claimed key of a request that failed before anything was charged, and returns
/// the failure.
pub(crate) async fn release(
    p: &Prepared,
    key: Option<ClaimedKey>,
    err: GatewayError,
) -> GatewayError {
    if let Some(key) = &key {
        let _ = idempotency::release(&p.db, key).await;
    }
    err
}

/// The ticket of a prepared call (its reservation, `ticket::issue`); a refusal releases what
/// the preparation claimed and is the client's answer.
pub(crate) async fn ticket_of(
    p: &Prepared,
    chat: &ChatCompletionRequest,
    key: &Option<ClaimedKey>,
) -> Result<ticket::Pending, GatewayError> {
    let call = &p.call;
    let order = Order {
        env: &call.env,
        id: &call.request_id,
        caller: &call.caller,
        session_id: &call.session_id,
        session_ttl_seconds: call.settings.session_ttl_seconds,
        admitted: &p.admitted,
        route: &p.route,
        chat,
        count: p.count,
        started_at: call.started_at,
        idempotency: key.clone(),
    };
    match ticket::issue(order).await {
        Ok(pending) => Ok(pending),
        Err(err) => Err(release(p, key.clone(), err).await),
    }
}

/// The metered call: ticket (reservation), dispatch, answer, settlement.
pub(crate) async fn run(
    p: Prepared,
    chat: &ChatCompletionRequest,
    key: Option<ClaimedKey>,
    ctx: &Context,
) -> Result<Response, GatewayError> {
    run_as(p, chat, key, ctx, None).await
}

/// [`run`], answering in the client's API `format` (`None`: chat completions).
pub(crate) async fn run_as(
    p: Prepared,
    chat: &ChatCompletionRequest,
    key: Option<ClaimedKey>,
    ctx: &Context,
    format: Option<ClientFormat>,
) -> Result<Response, GatewayError> {
    let mut pending = ticket_of(&p, chat, &key).await?;
    let call = &p.call;
    if let Some(format) = format {
        pending.format = format;
    }
    let format = pending.format.clone();
    let reply = dispatch::dispatch(&mut pending, chat, &p.attempts, &call.settings).await;
    let response = match reply {
        Ok(Reply::Plain(body)) => settle::finish_plain(pending, body, ctx).await,
        Ok(Reply::Stream(source)) => settle::stream_response(pending, source, ctx),
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
