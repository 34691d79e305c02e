//! The one path table of the HTTP API: every route of the Worker, by method and path, to its
//! handler. Errors become OpenAI-shaped bodies with the request id (`http.rs`).

use worker::{Context, Env, Method, Request, Response};

use super::http::{self, public_error_response, with_common_headers};
use super::{admin, anthropic, openai, tollgate};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::inbound::images::ImageOp;
use crate::edge::console;
use crate::edge::gateway::auth;
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::{d1, env as settings, ttl_cache};

/// Answers one request. Every failure becomes an OpenAI-shaped error response.
pub async fn serve(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let request_id = crate::core::ids::prefixed_id("req", now_ms());
    let method = req.method();
    let path = req.path();
    ttl_cache::configure(settings::settings(&env).config_cache_ttl_ms);
    let d1_before = crate::edge::platform::d1::statements_prepared();
    let result = route(req, &env, &ctx, &method, &path, &request_id).await;
    let d1_statements = crate::edge::platform::d1::statements_prepared().wrapping_sub(d1_before);
    let response = match result {
        Ok(resp) => resp,
        Err(err) => {
            if err.status() >= 500 {
                worker::console_error!("{request_id} {method:?} {path}: {err}");
            }
            public_error_response(&err, &request_id)?
        }
    };
    let mut response = response;
    if settings::settings(&env).test_deployment {
        // Test deployments only: D1 statements prepared while answering (docs/scale.md).
        let _ = response
            .headers_mut()
            .set("x-tollgate-d1-statements", &d1_statements.to_string());
    }
    with_common_headers(response, &request_id)
}

async fn route(
    req: Request,
    env: &Env,
    ctx: &Context,
    method: &Method,
    path: &str,
    request_id: &str,
) -> Result<Response, GatewayError> {
    // Empty segments (`//v1//chat/completions`, a trailing slash) are dropped.
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.is_empty() {
        segments.push("");
    }
    if !crate::core::cors::method_served(&req.inner().method()) {
        let refused = GatewayError::new(
            ErrorKind::MethodNotAllowed,
            format!("The method {} is not served.", req.inner().method()),
        );
        return if crate::core::inbound::anthropic::owns_path(segments.as_slice()) {
            anthropic::answer(Err(refused), request_id)
        } else {
            Err(refused)
        };
    }
    if *method == Method::Options {
        return http::preflight(&req);
    }
    match segments.as_slice() {
        ["healthz"] | [""] => http::json(
            200,
            &serde_json::json!({"status": "ok", "service": "tollgate"}),
        ),
        ["v1", "chat", "completions"] => {
            http::require(method, Method::Post)?;
            openai::chat::chat_completions(req, env, ctx, request_id).await
        }
        ["v1", "responses"] => {
            http::require(method, Method::Post)?;
            openai::responses::create_response(req, env, ctx, request_id).await
        }
        ["v1", "messages"] => match http::require(method, Method::Post) {
            Ok(()) => anthropic::messages::create_message(req, env, ctx, request_id).await,
            Err(e) => anthropic::answer(Err(e), request_id),
        },
        ["v1", "messages", "count_tokens"] => match http::require(method, Method::Post) {
            Ok(()) => anthropic::count_tokens::count_tokens(req, env, request_id).await,
            Err(e) => anthropic::answer(Err(e), request_id),
        },
        ["v1", "embeddings"] => {
            http::require(method, Method::Post)?;
            openai::embeddings::embeddings(req, env, ctx, request_id).await
        }
        ["v1", "audio", "speech"] => {
            http::require(method, Method::Post)?;
            openai::audio::speech(req, env, ctx, request_id).await
        }
        ["v1", "audio", kind @ ("transcriptions" | "translations")] => {
            http::require(method, Method::Post)?;
            let translation = *kind == "translations";
            openai::audio::transcription(req, env, ctx, request_id, translation).await
        }
        ["v1", "images", op @ ("generations" | "edits")] => {
            http::require(method, Method::Post)?;
            let op = if *op == "edits" {
                ImageOp::Edit
            } else {
                ImageOp::Generate
            };
            openai::images::images(req, env, ctx, request_id, op).await
        }
        ["v1", "models"] => {
            http::require(method, Method::Get)?;
            openai::models::list_models_for(&req, env, request_id).await
        }
        ["v1", "models", model @ ..] if !model.is_empty() => {
            http::require(method, Method::Get)?;
            openai::models::get_model(&req, env, &model.join("/"), request_id).await
        }
        ["v1", "redeem"] => {
            http::require(method, Method::Post)?;
            tollgate::redeem::redeem(req, env).await
        }
        ["v1", "usage"] => {
            http::require(method, Method::Get)?;
            tollgate::usage::tenant_usage(&req, env).await
        }
        ["v1", "balance"] => {
            http::require(method, Method::Get)?;
            tollgate::balance::balance(&req, env).await
        }
        ["v1", "sessions", id, "requests"] => {
            http::require(method, Method::Get)?;
            tollgate::usage::session_requests(&req, env, id).await
        }
        ["v1", "tokens", "count"] => {
            http::require(method, Method::Post)?;
            openai::tokens::count_tokens(req, env).await
        }
        ["v1", "sessions", id] => {
            http::require(method, Method::Get)?;
            tollgate::sessions::get_session(&req, env, id).await
        }
        ["v1", "plugins"] => {
            http::require(method, Method::Get)?;
            console::plugins(&req, env).await
        }
        // ---- the console: its JSON (table below), its pages, the Stripe webhook ----
        ["console", "api", rest @ ..] => {
            console::secured(console_api(req, env, method, rest).await)
        }
        // The pages live at `/console/` and `/console/operator/` (relative to their directory).
        ["console"] | ["console", "operator"] if !path.ends_with('/') => {
            console::redirect(&format!("{path}/"))
        }
        ["console", ..] => console::assets(req, env).await,
        ["stripe", "webhook"] => {
            http::require(method, Method::Post)?;
            console::stripe::webhook(req, env).await
        }
        // ---- the admin API (table below) ----
        ["admin", rest @ ..] => {
            let write = *method != Method::Get && auth::authorize_admin(&req, env).is_ok();
            let answer = admin_api(req, env, method, rest).await;
            if write {
                // Configuration may have changed: this isolate sees it at once (`platform::ttl_cache`).
                ttl_cache::clear_all();
            }
            answer
        }
        _ => {
            let unknown = GatewayError::new(ErrorKind::NotFound, format!("Unknown route: {path}"));
            if crate::core::inbound::anthropic::owns_path(segments.as_slice()) {
                anthropic::answer(Err(unknown), request_id)
            } else {
                Err(unknown)
            }
        }
    }
}

/// The admin API (`/admin/{rest}`), after the `ADMIN_TOKEN` check; the console's operator pages
/// call it too (`/console/api/admin/{rest}`, with the worker's token). One line per route; the
/// handlers live in `api/admin/<resource>.rs`.
pub async fn admin_api(
    mut req: Request,
    env: &Env,
    method: &Method,
    rest: &[&str],
) -> Result<Response, GatewayError> {
    use admin::{
        alerts, billing, body, keys, ledger, models, plan_requests, plugins, providers, raw,
        routes, tenants, wallet, wallet_money,
    };
    if let Err(refusal) = auth::admit_admin(&req, env).await {
        return admin::refused(&refusal);
    }
    let database = d1::database(env)?;
    let db = &database;
    match (method, rest) {
        // ---- tenants (api/admin/tenants.rs), their credit and ledger (ledger.rs) ----
        (Method::Post, ["tenants"]) => tenants::create(db, body(&mut req).await?).await,
        (Method::Get, ["tenants"]) => tenants::list(db).await,
        (Method::Get, ["tenants", id]) if admin::wallet::wallets_on(env) => {
            tenants::get_wallet(db, env, id).await
        }
        (Method::Get, ["tenants", id]) => tenants::get(db, id).await,
        (Method::Patch, ["tenants", id]) => {
            tenants::update(db, env, id, body(&mut req).await?).await
        }
        (Method::Post, ["tenants", id, "credit"]) => {
            ledger::add_credit(db, env, id, body(&mut req).await?).await
        }
        (Method::Get, ["tenants", id, "ledger"]) => ledger::list(&req, env, db, id).await,
        (Method::Get, ["requests", id]) => ledger::request(db, id).await,
        (Method::Get, ["usage"]) => tollgate::usage::admin_usage(db, &req).await,
        // ---- API keys (keys.rs) ----
        (Method::Post, ["tenants", id, "keys"]) => {
            keys::create(db, env, id, body(&mut req).await?).await
        }
        (Method::Get, ["tenants", id, "keys"]) => keys::list(db, id).await,
        (Method::Delete, ["keys", id]) => keys::revoke(db, env, id).await,
        // ---- providers (providers.rs), models (models.rs) and their routes (routes.rs) ----
        (Method::Get, ["providers"]) => providers::list(db).await,
        (Method::Put, ["providers", name]) => {
            providers::put(db, env, name, body(&mut req).await?).await
        }
        (Method::Delete, ["providers", name]) => providers::delete(db, name).await,
        (Method::Get, ["models"]) => models::list(db).await,
        (Method::Get, ["models", name @ .., "prices"]) if !name.is_empty() => {
            billing::list_prices(db, &name.join("/")).await
        }
        (Method::Put, ["models", name @ ..]) if !name.is_empty() => {
            models::put(db, &name.join("/"), body(&mut req).await?).await
        }
        (Method::Delete, ["models", name @ ..]) if !name.is_empty() => {
            models::delete(db, &name.join("/")).await
        }
        (Method::Put, ["routes", model @ ..]) if !model.is_empty() => {
            let routes = routes::put_routes(db, &model.join("/"), body(&mut req).await?).await?;
            http::json(200, &routes)
        }
        (Method::Get, ["routes", model @ ..]) if !model.is_empty() => {
            http::json(200, &routes::get_routes(db, &model.join("/")).await?)
        }
        // ---- plans, pricing and redemption codes (billing.rs), plan requests ----
        (Method::Get, ["plans"]) => billing::list_plans(db).await,
        (Method::Put, ["plans", id]) if admin::wallet::wallets_on(env) => {
            wallet_money::put_plan(env, db, id, &raw(&mut req).await?).await
        }
        (Method::Put, ["plans", id]) => billing::put_plan(db, id, &raw(&mut req).await?).await,
        (Method::Delete, ["plans", id]) => billing::delete_plan(db, id).await,
        (Method::Put, ["tenants", id, "plan"]) if admin::wallet::wallets_on(env) => {
            wallet_money::assign_plan(env, db, id, &raw(&mut req).await?).await
        }
        (Method::Put, ["tenants", id, "plan"]) => {
            billing::assign_plan(db, id, &raw(&mut req).await?).await
        }
        (Method::Put, ["tenants", id, "pricing"]) => {
            billing::set_pricing(db, id, &raw(&mut req).await?).await
        }
        (Method::Get, ["tenants", id, "billing"]) if admin::wallet::wallets_on(env) => {
            billing::get_tenant_billing_wallet(db, env, id).await
        }
        (Method::Get, ["tenants", id, "billing"]) => billing::get_tenant_billing(db, id).await,
        (Method::Post, ["redemption-codes"]) => {
            billing::create_codes(db, env, &raw(&mut req).await?).await
        }
        (Method::Get, ["redemption-codes"]) => billing::list_codes(db, &req).await,
        (Method::Get, ["plan-requests"]) => plan_requests::list(&req, db).await,
        (Method::Post, ["plan-requests", id, "approve"]) if admin::wallet::wallets_on(env) => {
            wallet_money::approve(env, db, id).await
        }
        (Method::Post, ["plan-requests", id, "approve"]) => plan_requests::approve(db, id).await,
        (Method::Post, ["plan-requests", id, "decline"]) => plan_requests::decline(db, id).await,
        // ---- limits and wallets (wallet.rs) ----
        (Method::Get | Method::Put, ["keys", id, "limits"]) => {
            wallet::key_limits(&mut req, env, db, method, id).await
        }
        (Method::Get | Method::Put, ["tenants", id, "limits"]) => {
            wallet::tenant_limits(&mut req, env, db, method, id).await
        }
        (Method::Get, ["tenants", id, "wallet"]) => {
            wallet::operate(env, db, id, wallet::Operation::Inspect).await
        }
        (Method::Post, ["tenants", id, "wallet", "migrate"]) => {
            wallet::operate(env, db, id, wallet::Operation::Migrate).await
        }
        (Method::Post, ["tenants", id, "wallet", "export"]) => {
            wallet::operate(env, db, id, wallet::Operation::Export).await
        }
        (Method::Post, ["tenants", id, "wallet", "clock"])
            if settings::settings(env).test_deployment =>
        {
            wallet_money::set_clock(env, db, id, &raw(&mut req).await?).await
        }
        (
            _,
            ["keys", _, "limits"]
            | ["tenants", _, "limits"]
            | ["tenants", _, "wallet"]
            | ["tenants", _, "wallet", "migrate" | "export"],
        ) => Err(GatewayError::new(
            ErrorKind::MethodNotAllowed,
            "This route does not accept this method.",
        )),
        // ---- alerts (alerts.rs) ----
        (Method::Post, ["tenants", id, "alerts"]) => {
            alerts::create_rule(db, env, id, body(&mut req).await?).await
        }
        (Method::Get, ["tenants", id, "alerts"]) => alerts::list_rules(db, id).await,
        (Method::Get, ["alerts", id]) => alerts::get_rule(db, id).await,
        (Method::Delete, ["alerts", id]) => alerts::delete_rule(db, id).await,
        (Method::Get, ["alerts", id, "deliveries"]) => alerts::list_deliveries(db, id).await,
        // ---- plugins (plugins.rs) ----
        (Method::Get, ["plugins"]) => plugins::list(db).await,
        (Method::Put, ["plugins", id]) => {
            plugins::put(db, env, id, plugins::body(&mut req).await?).await
        }
        (Method::Get, ["plugins", id]) => plugins::get(db, id).await,
        (Method::Delete, ["plugins", id]) => plugins::delete(db, id).await,
        (Method::Get, ["plugins", id, "usage"]) => plugins::usage(db, id).await,
        (Method::Get, ["tenants", tid, "plugins"]) => plugins::list_enablements(db, tid).await,
        (Method::Put, ["tenants", tid, "plugins", id]) => {
            plugins::enable(db, env, tid, id, plugins::body(&mut req).await?).await
        }
        (Method::Delete, ["tenants", tid, "plugins", id]) => plugins::disable(db, tid, id).await,
        (Method::Get, ["requests", rid, "plugin-calls"]) => {
            plugins::calls_of_request(db, rid).await
        }
        (_, rest) if plugins::owns(rest) => Err(plugins::method_not_allowed(method, rest)),
        // ---- operations ----
        (Method::Post, ["cron"]) => admin::run_cron(req, env).await,
        _ => Err(GatewayError::new(
            ErrorKind::NotFound,
            format!("Unknown admin route: {method:?} /admin/{}", rest.join("/")),
        )),
    }
}

/// The console's JSON (`/console/api/{rest}`): each call is the same call of the tenant API (with
/// the session's key) or of the admin API (with the worker's token); handlers in `console/`.
async fn console_api(
    req: Request,
    env: &Env,
    method: &Method,
    rest: &[&str],
) -> Result<Response, GatewayError> {
    use crate::core::console::Scope;
    use console::{alerts, session, stripe, upgrades};
    match (method, rest) {
        // ---- tenant ----
        (Method::Post, ["login"]) => session::login(req, env).await,
        (Method::Post, ["logout"]) => session::logout(&req, Scope::Tenant),
        (Method::Get, ["session"]) => console::session_state(&req, env, Scope::Tenant).await,
        (Method::Get, ["me"]) => console::me_of_session(req, env).await,
        (Method::Get, ["usage"]) => console::usage(req, env).await,
        (Method::Get, ["sessions", id, "requests"]) => {
            console::session_requests(req, env, id).await
        }
        (Method::Get, ["models"]) => console::models(req, env).await,
        (Method::Get, ["plugins"]) => console::plugins_of_session(req, env).await,
        (Method::Post, ["redeem"]) => console::redeem(req, env).await,
        (Method::Get, ["plans"]) => console::plans_of_session(req, env).await,
        (Method::Get, ["checkout"]) => http::json(200, &stripe::public_config(env)),
        (Method::Post, ["checkout"]) => console::checkout(req, env).await,
        (Method::Get, ["keys"]) => session::list_keys(req, env).await,
        (Method::Post, ["keys"]) => session::create_key(req, env).await,
        (Method::Delete, ["keys", id]) => session::revoke_key(req, env, id).await,
        (Method::Get, ["plan-requests"]) => upgrades::list(req, env).await,
        (Method::Post, ["plan-requests"]) => upgrades::create(req, env).await,
        (Method::Post, ["plan-requests", id, "cancel"]) => upgrades::cancel(req, env, id).await,
        (Method::Get, ["alerts"]) => alerts::list(req, env).await,
        (Method::Post, ["alerts"]) => alerts::create(req, env).await,
        (Method::Delete, ["alerts", id]) => alerts::delete(req, env, id).await,
        // ---- operator ----
        (Method::Post, ["operator", "login"]) => session::operator_login(req, env).await,
        (Method::Post, ["operator", "logout"]) => session::logout(&req, Scope::Operator),
        (Method::Get, ["operator", "session"]) => {
            console::session_state(&req, env, Scope::Operator).await
        }
        (Method::Get, ["routes", model @ ..]) if !model.is_empty() => {
            console::routes(req, env, &model.join("/")).await
        }
        (_, ["admin", admin_rest @ ..]) if !admin_rest.is_empty() => {
            let as_admin = console::as_admin(req, env, method, admin_rest).await?;
            let answer = admin_api(as_admin, env, method, admin_rest).await;
            if *method != Method::Get {
                ttl_cache::clear_all();
            }
            console::attachment_when_csv(answer?, "tollgate-export.csv")
        }
        _ => Err(GatewayError::new(
            ErrorKind::NotFound,
            "Unknown console route.",
        )),
    }
}
