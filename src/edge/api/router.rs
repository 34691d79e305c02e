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
use crate::edge::platform::{env as settings, ttl_cache};

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
        ["admin", rest @ ..] if admin::wallet::owns(rest) => {
            admin::wallet::route(req, env, method, rest).await
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
