//! The ticket of one metered call ([`Pending`]): everything its settlement needs, owned so it
//! can outlive the response. [`issue`] is the one place that builds it (the reservation taken
//! first, or the refusal explained). The API handler's request and every round of a plugin tool
//! loop get theirs here, counted by [`reserve::count`].

use worker::{D1Database, Env};

use super::admit::Admitted;
use super::auth::Caller;
use super::guard::StreamGuard;
use super::relay::{Limits, StreamEnd};
use super::reserve::{self, Count};
use crate::core::billing::guard::OutputGuard;
use crate::core::billing::tiers::PriceSheet;
use crate::core::billing::Price;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::inbound::client::ClientFormat;
use crate::core::meter::{self, bill, bill_reserved, tiered_usage, BillInput, RequestStatus};
use crate::core::openai::{ChatCompletionRequest, Usage};
use crate::core::providers::{ProviderKind, ResponseContext, Route, RouteTimeouts};
use crate::core::routing::request_deadline;
use crate::core::tokens::Encoding;
use crate::core::wallet::rate::RateHeaders;
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::d1 as db;
use crate::edge::platform::env::settings;
use crate::edge::store::idempotency::ClaimedKey;

/// What a ticket is issued for.
pub(crate) struct Order<'a> {
    pub env: &'a Env,
    /// The request id (a plugin round's own id for later rounds).
    pub id: &'a str,
    pub caller: &'a Caller,
    pub session_id: &'a str,
    /// See [`super::context::Call::settings`].
    pub session_ttl_seconds: u64,
    pub admitted: &'a Admitted,
    /// The route tried first.
    pub route: &'a Route,
    pub chat: &'a ChatCompletionRequest,
    pub count: Count,
    pub started_at: u64,
    pub idempotency: Option<ClaimedKey>,
}

/// Reserves `order.count.reserved` on the caller's key and returns the call's ticket; a
/// reservation refused is explained ([`reserve::refusal`]).
pub(crate) async fn issue(order: Order<'_>) -> Result<Pending, GatewayError> {
    let database = db::database(order.env)?;
    let count = order.count;
    let wallet = settings(order.env).wallets;
    let admission = if wallet {
        super::wallet::reserve(order.env, order.id, order.caller, &count).await?
    } else {
        reserve::reserve(
            &database,
            order.id,
            &order.caller.key_id,
            &count,
            order.started_at,
        )
        .await?;
        super::wallet::Admission {
            headers: RateHeaders::default(),
            announce: None,
            lease_hit: None,
        }
    };
    let model = &order.admitted.model;
    let route = order.route;
    Ok(Pending {
        db: database,
        env: order.env.clone(),
        request_id: order.id.to_string(),
        tenant_id: order.caller.tenant_id.clone(),
        key_id: order.caller.key_id.clone(),
        session_id: order.session_id.to_string(),
        model: model.name.clone(),
        provider: route.provider.clone(),
        kind: route.kind,
        upstream_model: route.upstream_model.clone(),
        routes_tried: Vec::new(),
        timeouts: route.timeouts(),
        stream: order.chat.is_stream(),
        price: order.admitted.price,
        sheet: order.admitted.sheet,
        price_version: model.price_version,
        multiplier_bps: model.multiplier_bps,
        reserved: count.reserved,
        covered_output: count.max_output,
        client_capped: order.chat.requested_max_output().is_some(),
        choices: order.chat.choices(),
        idempotency: order.idempotency,
        format: ClientFormat::OpenAi {
            wants_usage: order.chat.wants_stream_usage(),
        },
        local_prompt_tokens: count.local_prompt_tokens,
        encoding: order.admitted.encoding,
        started_at: order.started_at,
        session_ttl_seconds: order.session_ttl_seconds,
        media: None,
        wallet,
        rate_headers: admission.headers,
        announce: admission.announce,
        lease_hit: admission.lease_hit,
    })
}

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
    /// Every price of the version (`core::billing::tiers`): what a chat, Responses or Messages
    /// request is billed on.
    pub(crate) sheet: PriceSheet,
    pub(crate) price_version: Option<u64>,
    pub(crate) multiplier_bps: u64,
    pub(crate) reserved: u64,
    /// Output tokens the reservation covers, and whether the client capped them itself.
    pub(crate) covered_output: u64,
    pub(crate) client_capped: bool,
    pub(crate) choices: u64,
    pub(crate) idempotency: Option<ClaimedKey>,
    /// The client's API: how the answer is encoded, and the usage row's `api`. Chat unless the
    /// API handler says otherwise ([`super::run_as`]).
    pub(crate) format: ClientFormat,
    pub(crate) local_prompt_tokens: u64,
    pub(crate) encoding: Option<Encoding>,
    pub(crate) started_at: u64,
    /// Lifetime of the session's copy in KV; 0: not copied (a session Tollgate named for a
    /// single request, which the client did not ask to keep: D1 has it).
    pub(crate) session_ttl_seconds: u64,
    /// A media request's units and bill (`gateway::media`); `None` for chat.
    pub(crate) media: Option<Box<super::media_ticket::MediaTicket>>,
    /// Reserved in the tenant's wallet (`WALLETS`): settled there too ([`super::wallet`]).
    pub(crate) wallet: bool,
    /// The caller's rate limits after its reservation (x-ratelimit-* on its response; empty
    /// without limits).
    pub(crate) rate_headers: RateHeaders,
    /// Admitted on the isolate's lease: the take sent to the wallet before the upstream call,
    /// awaited before the settlement ([`super::wallet::Announce`]).
    pub(crate) announce: Option<super::wallet::Announce>,
    /// With `WALLET_LEASES`: whether it was admitted on a lease.
    pub(crate) lease_hit: Option<bool>,
}

/// How a request ended, in the terms of its usage row.
pub(crate) struct End {
    pub(crate) status: RequestStatus,
    pub(crate) http_status: u16,
    pub(crate) error_code: Option<String>,
    pub(crate) completion_text: String,
    /// The provider's `finish_reason` (`meter::fold_finish_reason` over the choices), if any.
    pub(crate) finish_reason: Option<String>,
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
            finish_reason: None,
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
            finish_reason: e.finish_reason,
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
    /// `x-tollgate-lease: hit|miss` on a test deployment with `WALLET_LEASES` (the e2e tests'
    /// evidence that a call did not wait for the wallet).
    pub(crate) fn lease_header(&self) -> Option<(&'static str, &'static str)> {
        if !settings(&self.env).test_deployment {
            return None;
        }
        self.lease_hit
            .map(|hit| ("x-tollgate-lease", if hit { "hit" } else { "miss" }))
    }

    /// The output guard of this request's stream: what its reservation covers, and how to grow it.
    pub(crate) fn stream_guard(&self) -> StreamGuard {
        StreamGuard {
            env: self.env.clone(),
            request_id: self.request_id.clone(),
            guard: OutputGuard::new(self.encoding, self.covered_output, self.client_capped),
            encoding: self.encoding,
            sheet: self.sheet,
            multiplier_bps: self.multiplier_bps,
            prompt_tokens: self.local_prompt_tokens,
            choices: self.choices,
            extended: 0,
            wallet: self.wallet.then(|| super::guard::WalletHold {
                tenant_id: self.tenant_id.clone(),
                extensions: 0,
            }),
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
        if let Some(media) = &self.media {
            let charge = super::media_ticket::Charge {
                price: &self.price,
                multiplier_bps: self.multiplier_bps,
                local_prompt_tokens: self.local_prompt_tokens,
                reserved: self.reserved.saturating_add(end.extended),
            };
            return media.bill(&charge, end.status, end.usage_unknown);
        }
        let input = BillInput {
            status: end.status,
            delivered_output: end.delivered_output,
            local_prompt_tokens: self.local_prompt_tokens,
            completion_text: &end.completion_text,
            finish_reason: end.finish_reason.as_deref(),
            encoding: self.encoding,
            upstream_usage: end.upstream_usage.as_ref().map(tiered_usage),
            sheet: &self.sheet,
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
}
