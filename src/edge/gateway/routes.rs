//! Provider routes of a model (its own provider first, then `model_routes`), their try order,
//! and each route's circuit breaker, kept in KV. Decisions live in `core::routing`.

use serde_json::Value;
use worker::Env;

use crate::core::error::{ErrorKind, GatewayError};
use crate::core::meter::estimate_tokens;
use crate::core::openai::ChatCompletionRequest;
use crate::core::outbound::{check_destination, SecretUse};
use crate::core::providers::{ProviderKind, Route, UpstreamCall};
use crate::core::routing::{
    auto_tier, try_order, Admission, BreakerConfig, BreakerState, RouteOption, Tier,
};
use crate::edge::platform::env::{self as config, settings};
use crate::edge::store;
use crate::edge::store::routes::RouteRow;

/// The cost-aware virtual model.
pub const AUTO_MODEL: &str = "tollgate/auto";

/// The model a request is served by: itself, or for [`AUTO_MODEL`] the cheap or the strong model
/// (`AUTO_CHEAP_MODEL`, `AUTO_STRONG_MODEL`) by the rule of `core::routing::auto_tier`, with
/// `AUTO_LONG_PROMPT_TOKENS` (default 8000, estimated at 4 bytes a token) as the long-context
/// threshold. The hint field `tollgate_tier` is removed from the request so that it never
/// reaches a provider.
pub fn resolve_auto(
    env: &Env,
    chat: &mut ChatCompletionRequest,
    body: &[u8],
) -> Result<String, GatewayError> {
    let hint = chat.extra.remove("tollgate_tier");
    if chat.model != AUTO_MODEL {
        return Ok(chat.model.clone());
    }
    if let Some(hint) = hint {
        chat.extra.insert("tollgate_tier".to_string(), hint);
    }
    let settings = settings(env);
    let long = settings.auto_long_prompt_tokens;
    let (tier, _reason) = auto_tier(chat, estimate_tokens(&String::from_utf8_lossy(body)), long);
    chat.extra.remove("tollgate_tier");
    let (var, model) = match tier {
        Tier::Cheap => ("AUTO_CHEAP_MODEL", &settings.auto_cheap_model),
        Tier::Strong => ("AUTO_STRONG_MODEL", &settings.auto_strong_model),
    };
    model.clone().ok_or_else(|| {
        GatewayError::new(
            ErrorKind::ModelNotFound,
            format!(
                "The model `{AUTO_MODEL}` is not configured on this gateway (`{var}` is not set)."
            ),
        )
        .with_code("model_not_found")
    })
}

/// A route ready to try, or why it cannot be (a missing secret fails only that route).
pub type Candidate = Result<Route, GatewayError>;

/// Builds a route from provider settings, reading its key from the named secret.
///
/// A secret name the policy refuses (`core::outbound`: prefix `PROVIDER_` or the
/// `PROVIDER_SECRETS` list, never the gateway's own secrets), a secret that is not set, or a
/// `base_url` on a private host without `ALLOW_PRIVATE_UPSTREAMS` fail only this route. The
/// detail goes to the log; the tenant learns only that the provider is not configured.
pub fn make_route(env: &Env, row: &RouteRow, max_output_tokens: u64) -> Candidate {
    let provider = row.provider.as_str();
    let kind = row.kind.as_str();
    let not_configured = |detail: String| {
        worker::console_error!("provider `{provider}` is not usable: {detail}");
        GatewayError::new(
            ErrorKind::UpstreamFailed,
            "This model's provider is not configured correctly on this gateway; the operator \
             has been told (see the gateway's logs).",
        )
        .with_code("provider_not_configured")
    };
    let kind = ProviderKind::parse(kind)
        .ok_or_else(|| not_configured(format!("unknown kind `{kind}`")))?;
    if !kind.is_local() {
        check_destination(&row.base_url, settings(env).allow_private_upstreams)
            .map_err(|why| not_configured(format!("base_url {why}")))?;
    }
    let api_key = match row.api_key_secret.as_deref() {
        Some(name) => match config::named_secret(env, name, SecretUse::Provider) {
            Ok(Some(key)) => Some(key),
            Ok(None) => return Err(not_configured(format!("its secret `{name}` is not set"))),
            Err(why) => return Err(not_configured(format!("api_key_secret `{name}` {why}"))),
        },
        None => None,
    };
    Ok(Route {
        provider: provider.to_string(),
        kind,
        base_url: row.base_url.clone(),
        api_key,
        upstream_model: row.upstream_model.clone(),
        max_output_tokens: Some(max_output_tokens),
        config: row
            .config
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or(Value::Null),
    })
}

/// Orders `primary` (priority 0) and the extra routes for one request.
pub fn ordered(
    primary: Candidate,
    extras: Vec<(RouteOption, Candidate)>,
    seed: u64,
) -> Vec<Candidate> {
    let mut options = vec![RouteOption {
        priority: 0,
        weight: 1,
    }];
    let mut candidates = vec![Some(primary)];
    for (opt, c) in extras {
        options.push(opt);
        candidates.push(Some(c));
    }
    try_order(&options, seed)
        .into_iter()
        .filter_map(|i| candidates[i].take())
        .collect()
}

/// The routes to try, in order, each with its upstream request built. Routes that cannot be
/// built (a missing secret, a request the provider cannot represent) are left out; when none is
/// left, the first such error is the answer (before anything is reserved).
pub async fn prepare_routes(
    env: &Env,
    database: &worker::D1Database,
    model: &store::models::ModelRow,
    kind: ProviderKind,
    chat: &ChatCompletionRequest,
    request_id: &str,
) -> Result<Vec<(Route, UpstreamCall)>, GatewayError> {
    prepare_routes_with(env, database, model, kind, request_id, |route| {
        route.kind.adapter().build_call(route, chat)
    })
    .await
}

/// [`prepare_routes`] with the upstream request of each route built by `build` (the media
/// endpoints build theirs with `core::providers::media`).
pub async fn prepare_routes_with(
    env: &Env,
    database: &worker::D1Database,
    model: &store::models::ModelRow,
    kind: ProviderKind,
    request_id: &str,
    build: impl Fn(&Route) -> Result<UpstreamCall, GatewayError>,
) -> Result<Vec<(Route, UpstreamCall)>, GatewayError> {
    let primary_row = RouteRow {
        provider: model.provider.clone(),
        upstream_model: model.upstream_model.clone(),
        priority: 0,
        weight: 1,
        kind: kind.as_str().to_string(),
        base_url: model.base_url.clone(),
        api_key_secret: model.api_key_secret.clone(),
        config: model.config.clone(),
    };
    let primary = make_route(env, &primary_row, model.max_output_tokens);
    let extras = if kind.is_local() {
        Vec::new()
    } else {
        store::routes::cached_extra_routes(database, &model.name).await?
    };
    let extras = extras
        .iter()
        .map(|r| {
            let option = RouteOption {
                priority: r.priority,
                weight: r.weight,
            };
            (option, make_route(env, r, model.max_output_tokens))
        })
        .collect();
    let mut attempts = Vec::new();
    let mut first_error = None;
    for candidate in ordered(primary, extras, seed(request_id)) {
        let built = candidate.and_then(|route| {
            let up = build(&route)?;
            Ok((route, up))
        });
        match built {
            Ok(attempt) => attempts.push(attempt),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if attempts.is_empty() {
        return Err(first_error
            .unwrap_or_else(|| GatewayError::internal("the model has no provider route")));
    }
    Ok(attempts)
}

/// `provider/upstream_model`, how routes are named in usage rows and breaker keys.
pub fn route_name(route: &Route) -> String {
    format!("{}/{}", route.provider, route.upstream_model)
}

/// A request's seed for the weighted order (FNV-1a of its id).
pub fn seed(request_id: &str) -> u64 {
    request_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether to try the route now.
pub fn admits(state: &BreakerState, now: u64, cfg: &BreakerConfig) -> bool {
    state.admission(now, cfg) != Admission::Open
}

/// The breaker settings (`ROUTE_FAILURE_THRESHOLD`, `ROUTE_COOLDOWN_MS`).
pub fn breaker_config(env: &Env) -> BreakerConfig {
    settings(env).breaker
}

/// The route's breaker state (closed when unknown or KV is unavailable).
pub async fn breaker(env: &Env, route: &Route) -> BreakerState {
    store::routes::breaker(env, &route_name(route)).await
}

/// Stores a breaker state after an attempt; a healthy route costs no write.
pub async fn record(env: &Env, route: &Route, before: BreakerState, after: BreakerState) {
    if before == after {
        return;
    }
    store::routes::record_breaker(env, &route_name(route), after).await;
}
