//! `GET /v1/sessions/{id}`: one session of the caller's tenant (its requests: `usage.rs`).

use worker::{Env, Request, Response};

use crate::core::error::{ErrorKind, GatewayError};
use crate::core::session::validate_session_path;
use crate::edge::api::http;
use crate::edge::store;

/// `GET /v1/sessions/{id}`: the session's totals, from KV when cached, else D1.
pub async fn get_session(req: &Request, env: &Env, id: &str) -> Result<Response, GatewayError> {
    let caller = crate::edge::gateway::auth::live_caller(req, env).await?;
    let id = validate_session_path(id)?;
    let row = store::sessions::get(env, &caller.tenant_id, id).await?;
    match row {
        Some(session) => http::json(200, &session),
        None => Err(GatewayError::new(
            ErrorKind::NotFound,
            format!("No session `{id}` for this tenant."),
        )),
    }
}
