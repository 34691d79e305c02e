//! Tenant-facing read routes: `/v1/models`, `/v1/sessions/{id}` (usage reports: `reports.rs`).

use serde_json::json;
use worker::{Env, Request, Response};

use super::{auth, http};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::session::validate_session_id;
use crate::edge::platform::d1 as db;
use crate::edge::store;

/// What `owned_by` says of every model: which provider serves a model (and through which
/// account or deployment) is the operator's business, not the tenants'.
const OWNED_BY: &str = "tollgate";

fn model_object(row: &store::models::ModelListRow) -> serde_json::Value {
    json!({"id": row.name, "object": "model", "created": row.created_at / 1000, "owned_by": OWNED_BY})
}

/// Authenticates and checks the key is still live in D1 (revocation and a tenant's
/// disablement are immediate).
pub async fn live_caller(req: &Request, env: &Env) -> Result<auth::Caller, GatewayError> {
    let caller = auth::authenticate(req, env).await?;
    ensure_live(&db::database(env)?, &caller).await?;
    Ok(caller)
}

/// Refuses (401) a caller whose key is revoked or gone, or whose tenant is disabled, as D1
/// says now (caches may lag by seconds).
pub async fn ensure_live(
    database: &worker::D1Database,
    caller: &auth::Caller,
) -> Result<(), GatewayError> {
    let refused = |message: &str| Err(GatewayError::new(ErrorKind::InvalidApiKey, message));
    match store::keys::key_state(database, &caller.key_id).await? {
        Some(k) if k.revoked_at.is_some() => {
            refused("Incorrect API key provided: this key has been revoked.")
        }
        Some(k) if k.disabled_at.is_some() => refused("This API key's tenant is disabled."),
        Some(_) => Ok(()),
        None => refused("Incorrect API key provided: unknown or revoked key."),
    }
}

/// `GET /v1/models`: the models this key may use.
pub async fn list_models(req: &Request, env: &Env) -> Result<Response, GatewayError> {
    let caller = live_caller(req, env).await?;
    let rows = store::models::list_names(&db::database(env)?).await?;
    let data: Vec<_> = rows
        .iter()
        .filter(|r| caller.may_use(&r.name))
        .map(model_object)
        .collect();
    http::json(200, &json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{model}`.
pub async fn get_model(req: &Request, env: &Env, model: &str) -> Result<Response, GatewayError> {
    let caller = live_caller(req, env).await?;
    let row = store::models::get_name(&db::database(env)?, model).await?;
    match row.filter(|r| caller.may_use(&r.name)) {
        Some(r) => http::json(200, &model_object(&r)),
        None => Err(GatewayError::new(
            ErrorKind::ModelNotFound,
            format!("The model `{model}` does not exist."),
        )),
    }
}

/// `GET /v1/sessions/{id}`: the session's totals, from KV when cached, else D1.
pub async fn get_session(req: &Request, env: &Env, id: &str) -> Result<Response, GatewayError> {
    let caller = live_caller(req, env).await?;
    let id = validate_session_id(id)?;
    let row = store::sessions::get(env, &caller.tenant_id, id).await?;
    match row {
        Some(session) => http::json(200, &session),
        None => Err(GatewayError::new(
            ErrorKind::NotFound,
            format!("No session `{id}` for this tenant."),
        )),
    }
}
