//! The browser console: the user center (`/console/`), the operator console
//! (`/console/operator/`), their JSON (`/console/api/…`), `GET /v1/plugins` and the Stripe
//! webhook (`/stripe/webhook`).
//!
//! The pages are static assets (built from `ui/` by `scripts/build-ui.sh`, bound as `ASSETS`);
//! the worker serves them itself so that every page carries the security headers of
//! `core::console`. The console's JSON does not reimplement the API: a signed-in call is turned into
//! the same call of the tenant API (with the session's key) or of the admin API (with the worker's
//! `ADMIN_TOKEN`), so isolation, validation and errors are the API's own. Cookies, CSRF and the
//! Stripe signature are decided in `core::console`. Which path reaches which handler is listed
//! in `api/router.rs` (the one path table).

pub mod alerts;
pub mod session;
pub mod stripe;
pub mod upgrades;

use serde_json::{json, Value};
use worker::{Env, Headers, Method, Request, RequestInit, Response, ResponseBuilder};

use crate::core::console::{self as rules, Scope, SECURITY_HEADERS};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::routing::{Admission, BreakerState};
use crate::edge::api::admin::billing as ledger;
use crate::edge::api::http;
use crate::edge::api::openai::models as tenant;
use crate::edge::api::tollgate::usage as reports;
use session::Session;

/// `/console/api/*`: the answer with the console's security headers, an error included.
pub fn secured(answer: Result<Response, GatewayError>) -> Result<Response, GatewayError> {
    match answer {
        Ok(r) => secure(r),
        Err(e) => secure(http::error_response(&e).map_err(|e| http::internal("error", e))?),
    }
}

/// `GET /console/api/usage`: the tenant's usage report (CSV as a download).
pub async fn usage(req: Request, env: &Env) -> Result<Response, GatewayError> {
    let s = Session::require(&req, env, Scope::Tenant, false).await?;
    let as_api = s.as_tenant_request(&req, "/v1/usage", Method::Get, None)?;
    let resp = reports::tenant_usage(&as_api, env).await?;
    attachment_when_csv(resp, "tollgate-usage.csv")
}

/// `GET /console/api/me`.
pub async fn me_of_session(req: Request, env: &Env) -> Result<Response, GatewayError> {
    let s = Session::require(&req, env, Scope::Tenant, false).await?;
    me(&req, env, &s).await
}

/// `GET /console/api/sessions/{id}/requests`.
pub async fn session_requests(req: Request, env: &Env, id: &str) -> Result<Response, GatewayError> {
    let s = Session::require(&req, env, Scope::Tenant, false).await?;
    let path = format!("/v1/sessions/{id}/requests");
    let as_api = s.as_tenant_request(&req, &path, Method::Get, None)?;
    reports::session_requests(&as_api, env, id).await
}

/// `GET /console/api/models`.
pub async fn models(req: Request, env: &Env) -> Result<Response, GatewayError> {
    let s = Session::require(&req, env, Scope::Tenant, false).await?;
    let as_api = s.as_tenant_request(&req, "/v1/models", Method::Get, None)?;
    tenant::list_models(&as_api, env).await
}

/// `GET /console/api/plugins`.
pub async fn plugins_of_session(req: Request, env: &Env) -> Result<Response, GatewayError> {
    let s = Session::require(&req, env, Scope::Tenant, false).await?;
    let as_api = s.as_tenant_request(&req, "/v1/plugins", Method::Get, None)?;
    plugins(&as_api, env).await
}

/// `POST /console/api/redeem`.
pub async fn redeem(mut req: Request, env: &Env) -> Result<Response, GatewayError> {
    let s = Session::require(&req, env, Scope::Tenant, true).await?;
    let body = http::read_body(&mut req, 4096).await?;
    let as_api = s.as_tenant_request(&req, "/v1/redeem", Method::Post, Some(&body))?;
    crate::edge::api::tollgate::redeem::redeem(as_api, env).await
}

/// `GET /console/api/plans`.
pub async fn plans_of_session(req: Request, env: &Env) -> Result<Response, GatewayError> {
    Session::require(&req, env, Scope::Tenant, false).await?;
    plans(env).await
}

/// `POST /console/api/checkout`.
pub async fn checkout(req: Request, env: &Env) -> Result<Response, GatewayError> {
    let s = Session::require(&req, env, Scope::Tenant, true).await?;
    stripe::create_checkout(req, env, &s).await
}

/// `GET /console/api/routes/{model}` (operator).
pub async fn routes(req: Request, env: &Env, model: &str) -> Result<Response, GatewayError> {
    Session::require(&req, env, Scope::Operator, false).await?;
    routes_with_breakers(env, model).await
}

/// `/console/api/admin/{rest}` (operator): the signed-in call as the same call of the admin
/// API, with the worker's `ADMIN_TOKEN` (the router then answers it from its admin table).
pub async fn as_admin(
    mut req: Request,
    env: &Env,
    method: &Method,
    admin_rest: &[&str],
) -> Result<Request, GatewayError> {
    let write = *method != Method::Get;
    let s = Session::require(&req, env, Scope::Operator, write).await?;
    let body = if write {
        Some(http::read_body(&mut req, 1 << 20).await?)
    } else {
        None
    };
    let path = format!("/admin/{}", admin_rest.join("/"));
    s.as_admin_request(env, &req, &path, method.clone(), body.as_deref())
}

/// `GET /console/api/[operator/]session`: the page's session (with its CSRF token), or
/// `{"signed_in": false}` — a page asking whether to show its sign-in form is not an error.
pub async fn session_state(
    req: &Request,
    env: &Env,
    scope: Scope,
) -> Result<Response, GatewayError> {
    match Session::require(req, env, scope, false).await {
        Ok(s) => {
            let mut body = s.describe();
            body["signed_in"] = json!(true);
            http::json(200, &body)
        }
        Err(e) if e.status() == 401 => {
            http::json(200, &json!({"signed_in": false, "reason": e.message}))
        }
        Err(e) => Err(e),
    }
}

/// `GET /console/api/me`: the balance report plus the plan and allowance of the caller's tenant.
async fn me(req: &Request, env: &Env, s: &Session) -> Result<Response, GatewayError> {
    let as_api = s.as_tenant_request(req, "/v1/balance", Method::Get, None)?;
    let balance =
        json_of(crate::edge::api::tollgate::balance::balance(&as_api, env).await?).await?;
    let tenant_id = balance["tenant_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let billing = json_of(
        ledger::get_tenant_billing(&super::platform::d1::database(env)?, &tenant_id).await?,
    )
    .await?;
    http::json(
        200,
        &json!({
            "tenant_id": tenant_id,
            "tenant_name": billing["name"],
            "key_id": s.key_id(),
            "balance": balance,
            "plan": {
                "id": billing["plan_id"],
                "allowance": billing["plan_allowance"],
                "allowance_remaining": billing["allowance_remaining"],
                "allowance_reserved": billing["allowance_reserved"],
                "allowance_resets_at": billing["allowance_resets_at"],
                "price_multiplier_bps": billing["price_multiplier_bps"],
            },
            "keys_managed_by_tenant": session::tenants_manage_keys(env),
            "stripe": stripe::public_config(env),
        }),
    )
}

/// `GET /console/api/routes/{model}` (operator): the model's routes (`GET /admin/routes/{model}`)
/// with each route's circuit breaker as the gateway sees it now: `closed`, `open` or `half_open`
/// (cooled down: the next request is a trial), with its consecutive failures.
async fn routes_with_breakers(env: &Env, model: &str) -> Result<Response, GatewayError> {
    let database = super::platform::d1::database(env)?;
    let mut view = crate::edge::api::admin::routes::get_routes(&database, model).await?;
    let cfg = crate::edge::gateway::routes::breaker_config(env);
    let now = crate::edge::platform::clock::now_ms();
    let kv = super::platform::kv::namespace(env).ok();
    let primary = breaker_json(kv.as_ref(), &view["primary"], now, &cfg).await;
    view["primary"]["breaker"] = primary;
    let count = view["routes"].as_array().map_or(0, Vec::len);
    for i in 0..count {
        let state = breaker_json(kv.as_ref(), &view["routes"][i], now, &cfg).await;
        view["routes"][i]["breaker"] = state;
    }
    http::json(200, &view)
}

/// One route's breaker, read from the key `edge::routes` keeps it under
/// (`breaker:<provider>/<upstream_model>`).
async fn breaker_json(
    kv: Option<&worker::kv::KvStore>,
    route: &Value,
    now: u64,
    cfg: &crate::core::routing::BreakerConfig,
) -> Value {
    let name = format!(
        "{}/{}",
        route["provider"].as_str().unwrap_or_default(),
        route["upstream_model"].as_str().unwrap_or_default()
    );
    let state: BreakerState = match kv {
        Some(kv) => kv
            .get(&format!("breaker:{name}"))
            .json::<BreakerState>()
            .await
            .ok()
            .flatten()
            .unwrap_or_default(),
        None => BreakerState::default(),
    };
    json!({
        "route": name,
        "state": match state.admission(now, cfg) {
            Admission::Closed => "closed",
            Admission::HalfOpen => "half_open",
            Admission::Open => "open",
        },
        "consecutive_failures": state.consecutive_failures,
        "opened_at": state.opened_at,
    })
}

/// `GET /console/api/plans`: the plans a tenant can ask for (id, name, allowance).
async fn plans(env: &Env) -> Result<Response, GatewayError> {
    let all = json_of(ledger::list_plans(&super::platform::d1::database(env)?).await?).await?;
    let data: Vec<Value> = all["data"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|p| json!({"id": p["id"], "name": p["name"], "allowance": p["allowance"]}))
                .collect()
        })
        .unwrap_or_default();
    http::json(200, &json!({"object": "list", "data": data}))
}

/// `GET /v1/plugins` (tenant key): the plugins enabled for the caller's tenant, as a chat front end
/// offers them (identifier, title, description, each API with its parameters and command form).
pub async fn plugins(req: &Request, env: &Env) -> Result<Response, GatewayError> {
    let caller = crate::edge::gateway::auth::live_caller(req, env).await?;
    let db = super::platform::d1::database(env)?;
    let enabled = super::store::plugins::enabled_for_tenant(&db, &caller.tenant_id).await?;
    let data: Vec<Value> = enabled
        .iter()
        .map(|e| rules::plugin_listing(&e.manifest, e.is_default, e.price_per_call))
        .collect();
    http::json(200, &json!({"object": "list", "data": data}))
}

/// The JSON body of a response the API functions built.
async fn json_of(mut resp: Response) -> Result<Value, GatewayError> {
    resp.json::<Value>()
        .await
        .map_err(|e| http::internal("read response", e))
}

/// CSV answers become downloads.
pub fn attachment_when_csv(mut resp: Response, name: &str) -> Result<Response, GatewayError> {
    let is_csv = resp
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .is_some_and(|t| t.starts_with("text/csv"));
    if is_csv {
        resp.headers_mut()
            .set(
                "content-disposition",
                &format!("attachment; filename=\"{name}\""),
            )
            .map_err(|e| http::internal("set header", e))?;
    }
    Ok(resp)
}

pub fn redirect(location: &str) -> Result<Response, GatewayError> {
    let headers = Headers::new();
    headers
        .set("location", location)
        .map_err(|e| http::internal("set header", e))?;
    secure(
        ResponseBuilder::new()
            .with_status(308)
            .with_headers(headers)
            .empty(),
    )
}

/// Adds the console's security headers (and keeps responses out of shared caches).
fn secure(mut resp: Response) -> Result<Response, GatewayError> {
    let h = resp.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        h.set(name, value)
            .map_err(|e| http::internal("set header", e))?;
    }
    Ok(resp)
}

/// A page or asset of the console, from the `ASSETS` binding, re-issued with the security headers
/// (a fetched response's headers are immutable).
pub async fn assets(req: Request, env: &Env) -> Result<Response, GatewayError> {
    let fetcher = env.assets("ASSETS").map_err(|_| {
        GatewayError::new(
            ErrorKind::NotFound,
            "The console is not deployed: build it with scripts/build-ui.sh and bind `[assets]` as ASSETS.",
        )
    })?;
    let url = req.url().map_err(|e| http::internal("url", e))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get);
    let forwarded = Headers::new();
    for name in ["if-none-match", "accept", "accept-encoding"] {
        if let Ok(Some(v)) = req.headers().get(name) {
            let _ = forwarded.set(name, &v);
        }
    }
    init.with_headers(forwarded);
    let asset_req = Request::new_with_init(url.as_str(), &init)
        .map_err(|e| http::internal("asset request", e))?;
    let mut fetched = fetcher
        .fetch_request(asset_req)
        .await
        .map_err(|e| http::internal("assets", e))?;
    let status = fetched.status_code();
    if status == 404 {
        // Like every other error of the Worker, in OpenAI's shape (not the binding's empty body).
        return Err(GatewayError::new(
            ErrorKind::NotFound,
            format!("No console page or asset at {}.", url.path()),
        ));
    }
    let headers = Headers::new();
    for name in ["content-type", "etag", "location"] {
        if let Ok(Some(v)) = fetched.headers().get(name) {
            let _ = headers.set(name, &v);
        }
    }
    // HTML is revalidated on every visit; the hashed bundle names change with their content.
    let _ = headers.set("cache-control", "no-cache");
    let body = if status == 304 || status == 204 {
        Vec::new()
    } else {
        fetched
            .bytes()
            .await
            .map_err(|e| http::internal("asset body", e))?
    };
    secure(
        ResponseBuilder::new()
            .with_status(status)
            .with_headers(headers)
            .fixed(body),
    )
}
