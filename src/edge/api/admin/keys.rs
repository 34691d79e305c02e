//! API keys: `/admin/tenants/{id}/keys` and `/admin/keys/{id}`.

use serde::Deserialize;
use serde_json::{json, Value};
use worker::{D1Database, Env, Response};

use super::{check_name, not_found};
use crate::core::error::GatewayError;
use crate::core::keys;
use crate::edge::api::http;
use crate::edge::gateway::auth;
use crate::edge::platform::clock::now_ms;
use crate::edge::store;
use crate::edge::store::keys::KeyRow;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    name: String,
    models: Option<Vec<String>>,
}

fn key_json(row: &KeyRow) -> Value {
    let models: Option<Vec<String>> = row
        .models
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok());
    json!({"id": row.id, "object": "api_key", "tenant_id": row.tenant_id, "name": row.name,
           "models": models, "created_at": row.created_at, "revoked_at": row.revoked_at})
}

pub async fn create(
    db: &D1Database,
    env: &Env,
    tenant_id: &str,
    new: NewKey,
) -> Result<Response, GatewayError> {
    check_name("name", &new.name)?;
    if let Some(models) = &new.models {
        for m in models {
            check_name("models", m)?;
        }
    }
    let pepper = auth::pepper(env)?;
    let now = now_ms();
    let generated = keys::generate_api_key(now)
        .map_err(|_| GatewayError::internal("no randomness available to generate a key"))?;
    let digest = keys::key_digest(&pepper, &generated.key);
    let models_json = new
        .models
        .as_ref()
        .map(|m| serde_json::to_string(m).unwrap_or_else(|_| "[]".into()));
    let created = store::keys::insert(
        db,
        &store::keys::NewKey {
            id: &generated.key_id,
            tenant_id,
            name: new.name.trim(),
            digest: &digest,
            models: models_json.as_deref(),
            created_at: now,
        },
    )
    .await?;
    if !created {
        return Err(not_found("tenant", tenant_id));
    }
    // A marker left by a flood of random ids must not hide the new key.
    store::keys::revive_keys(env, std::slice::from_ref(&generated.key_id)).await;
    http::json(
        201,
        &json!({"id": generated.key_id, "object": "api_key", "key": generated.key,
                "tenant_id": tenant_id, "name": new.name.trim(), "models": new.models,
                "created_at": now}),
    )
}

pub async fn list(db: &D1Database, tenant_id: &str) -> Result<Response, GatewayError> {
    let rows = store::keys::list(db, tenant_id).await?;
    let data: Vec<Value> = rows.iter().map(key_json).collect();
    http::json(200, &json!({"object": "list", "data": data}))
}

pub async fn revoke(db: &D1Database, env: &Env, id: &str) -> Result<Response, GatewayError> {
    store::keys::revoke(db, id, now_ms()).await?;
    store::keys::forget_keys(env, &[id.to_string()]).await;
    let row = store::keys::get(db, id).await?;
    let row = row.ok_or_else(|| not_found("API key", id))?;
    super::wallet::tell_revoked(env, &row.tenant_id, id).await?;
    http::json(200, &key_json(&row))
}
