//! The operator's API under `/admin/*`, authorised by the `ADMIN_TOKEN` secret: one file per
//! resource. Which path reaches which handler is listed in `api/router.rs` (the one path table);
//! this module holds what the handlers share (admission, bodies, validation).

pub mod alerts;
pub mod billing;
pub mod keys;
pub mod ledger;
pub mod models;
pub mod plan_requests;
pub mod plugins;
pub mod providers;
pub mod routes;
pub mod tenants;
pub mod wallet;
pub mod wallet_money;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use worker::{Env, Request, Response};

use crate::core::error::{ErrorKind, GatewayError};
use crate::edge::api::http;
use crate::edge::gateway::auth;

/// Admin bodies are small.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// The answer to a refused admin request (429 with `Retry-After` when throttled).
pub fn refused(refusal: &auth::AdminRefusal) -> Result<Response, GatewayError> {
    let mut resp =
        http::error_response(&refusal.error).map_err(|e| http::internal("error response", e))?;
    if let Some(seconds) = refusal.retry_after {
        let _ = resp.headers_mut().set("retry-after", &seconds.to_string());
    }
    Ok(resp)
}

/// An admin request's raw body (at most 64 KiB).
pub async fn raw(req: &mut Request) -> Result<Vec<u8>, GatewayError> {
    http::read_body(req, MAX_ADMIN_BODY).await
}

/// An admin request's JSON body (an empty body reads as `{}`).
pub async fn body<T: DeserializeOwned>(req: &mut Request) -> Result<T, GatewayError> {
    let bytes = http::read_body(req, MAX_ADMIN_BODY).await?;
    let bytes = if bytes.is_empty() {
        b"{}".to_vec()
    } else {
        bytes
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::invalid_request(format!("Invalid JSON body: {e}")))
}

fn not_found(what: &str, id: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("No {what} `{id}`."))
}

fn check_name(field: &str, value: &str) -> Result<(), GatewayError> {
    if value.trim().is_empty() || value.len() > 200 {
        return Err(GatewayError::invalid_param(
            field,
            format!("`{field}` must be 1 to 200 characters."),
        ));
    }
    Ok(())
}

fn to_i64(field: &str, v: i64, min: i64) -> Result<i64, GatewayError> {
    // Money and prices stay below 2^53 so they survive JavaScript numbers exactly.
    const MAX_SAFE: i64 = (1 << 53) - 1;
    if v < min || v > MAX_SAFE {
        return Err(GatewayError::invalid_param(
            field,
            format!("`{field}` must be an integer from {min} to {MAX_SAFE}."),
        ));
    }
    Ok(v)
}

/// Body of `POST /admin/cron`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CronRun {
    time: Option<u64>,
}

/// `POST /admin/cron`: runs the scheduled work now (at `time`, default now).
pub async fn run_cron(mut req: Request, env: &Env) -> Result<Response, GatewayError> {
    let run: CronRun = body(&mut req).await?;
    crate::edge::cron::run_now(env, run.time).await
}
