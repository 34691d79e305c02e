//! `GET /v1/models` and `GET /v1/models/{model}`: the models a key may use.

use serde_json::json;
use worker::{Env, Request, Response};

use crate::core::error::{ErrorKind, GatewayError};
use crate::edge::api::http;
use crate::edge::platform::d1 as db;
use crate::edge::store;

/// What `owned_by` says of every model: which provider serves a model (and through which
/// account or deployment) is the operator's business, not the tenants'.
const OWNED_BY: &str = "tollgate";

fn model_object(row: &store::models::ModelListRow) -> serde_json::Value {
    json!({"id": row.name, "object": "model", "created": row.created_at / 1000, "owned_by": OWNED_BY,
           "kind": row.kind})
}

/// `GET /v1/models`: the models this key may use.
pub async fn list_models(req: &Request, env: &Env) -> Result<Response, GatewayError> {
    let caller = crate::edge::gateway::auth::live_caller(req, env).await?;
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
    let caller = crate::edge::gateway::auth::live_caller(req, env).await?;
    let row = store::models::get_name(&db::database(env)?, model).await?;
    match row.filter(|r| caller.may_use(&r.name)) {
        Some(r) => http::json(200, &model_object(&r)),
        None => Err(GatewayError::new(
            ErrorKind::ModelNotFound,
            format!("The model `{model}` does not exist."),
        )),
    }
}
