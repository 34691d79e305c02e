//! The Workers shell: HTTP routing, D1, KV, upstream fetches, secrets. The only code that awaits
//! I/O; every decision it makes is delegated to `crate::core`.

pub mod admin;
pub mod alerts;
pub mod auth;
pub mod chat;
pub mod console;
pub mod cron;
pub mod guard;
pub mod http;
pub mod ledger;
pub mod platform;
pub mod plugins;
pub mod relay;
pub mod reports;
pub mod routes;
pub mod store;
pub mod tenant;
pub mod tokens;
pub mod wallet_admin;

use worker::{Context, Env, Method, Request, Response};

use crate::core::error::{ErrorKind, GatewayError};
use http::{public_error_response, with_common_headers};
use platform::clock::now_ms;
use platform::{env as settings, ttl_cache};

/// Answers one request. Every failure becomes an OpenAI-shaped error response.
pub async fn handle(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let request_id = crate::core::ids::prefixed_id("req", now_ms());
    let method = req.method();
    let path = req.path();
    ttl_cache::configure(settings::settings(&env).config_cache_ttl_ms);
    let result = route(req, &env, &ctx, &method, &path, &request_id).await;
    let response = match result {
        Ok(resp) => resp,
        Err(err) => {
            if err.status() >= 500 {
                worker::console_error!("{request_id} {method:?} {path}: {err}");
            }
            public_error_response(&err, &request_id)?
        }
    };
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
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if *method == Method::Options {
        return http::preflight();
    }
    if console::owns(&segments) {
        return console::route(req, env, method, &segments).await;
    }
    match segments.as_slice() {
        ["healthz"] | [""] => http::json(
            200,
            &serde_json::json!({"status": "ok", "service": "tollgate"}),
        ),
        ["v1", "chat", "completions"] => {
            require(method, Method::Post)?;
            chat::chat_completions(req, env, ctx, request_id).await
        }
        ["v1", "models"] => {
            require(method, Method::Get)?;
            tenant::list_models(&req, env).await
        }
        ["v1", "models", model @ ..] if !model.is_empty() => {
            require(method, Method::Get)?;
            tenant::get_model(&req, env, &model.join("/")).await
        }
        ["v1", "redeem"] => {
            require(method, Method::Post)?;
            ledger::redeem(req, env).await
        }
        ["v1", "usage"] => {
            require(method, Method::Get)?;
            reports::tenant_usage(&req, env).await
        }
        ["v1", "balance"] => {
            require(method, Method::Get)?;
            reports::balance(&req, env).await
        }
        ["v1", "sessions", id, "requests"] => {
            require(method, Method::Get)?;
            reports::session_requests(&req, env, id).await
        }
        ["v1", "tokens", "count"] => {
            require(method, Method::Post)?;
            tokens::count_tokens(req, env).await
        }
        ["v1", "sessions", id] => {
            require(method, Method::Get)?;
            tenant::get_session(&req, env, id).await
        }
        ["admin", rest @ ..] if wallet_admin::owns(rest) => {
            wallet_admin::route(req, env, method, rest).await
        }
        ["admin", rest @ ..] => {
            let write = *method != Method::Get && auth::authorize_admin(&req, env).is_ok();
            let answer = admin::route(req, env, method, rest).await;
            if write {
                // Configuration may have changed: this isolate sees it at once (`platform::ttl_cache`).
                ttl_cache::clear_all();
            }
            answer
        }
        _ => Err(GatewayError::new(
            ErrorKind::NotFound,
            format!("Unknown route: {path}"),
        )),
    }
}

/// Refuses a request whose method the route does not serve.
pub fn require(method: &Method, expected: Method) -> Result<(), GatewayError> {
    if *method == expected {
        Ok(())
    } else {
        Err(GatewayError::new(
            ErrorKind::MethodNotAllowed,
            format!("This route accepts {expected:?} only."),
        ))
    }
}
