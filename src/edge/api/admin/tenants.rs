//! `/admin/tenants`: create, list, read, rename and disable tenants.

use serde::Deserialize;
use serde_json::json;
use worker::{D1Database, Env, Response};

use super::{check_name, not_found, to_i64};
use crate::core::error::GatewayError;
use crate::edge::api::http;
use crate::edge::platform::clock::now_ms;
use crate::edge::store;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    name: String,
    #[serde(default)]
    credit: i64,
}

pub async fn create(db: &D1Database, new: NewTenant) -> Result<Response, GatewayError> {
    check_name("name", &new.name)?;
    let credit = to_i64("credit", new.credit, 0)?;
    let id = store::tenants::create(db, new.name.trim(), credit, now_ms()).await?;
    response(db, &id, 201).await
}

pub(super) async fn response(
    db: &D1Database,
    id: &str,
    status: u16,
) -> Result<Response, GatewayError> {
    let row = store::tenants::get(db, id)
        .await?
        .ok_or_else(|| not_found("tenant", id))?;
    http::json(status, &row)
}

pub async fn list(db: &D1Database) -> Result<Response, GatewayError> {
    let rows = store::tenants::list(db).await?;
    http::json(200, &json!({"object": "list", "data": rows}))
}

pub async fn get(db: &D1Database, id: &str) -> Result<Response, GatewayError> {
    response(db, id, 200).await
}

/// `GET /admin/tenants/{id}` with `WALLETS` on: the money fields from the tenant's wallet once it
/// took the tenant (D1's stopped at the claim).
pub async fn get_wallet(
    db: &D1Database,
    env: &worker::Env,
    id: &str,
) -> Result<Response, GatewayError> {
    let row = store::tenants::get(db, id)
        .await?
        .ok_or_else(|| not_found("tenant", id))?;
    let mut row = serde_json::to_value(&row)
        .map_err(|e| GatewayError::internal(format!("tenant row: {e}")))?;
    super::wallet::overlay_balance(env, id, &mut row).await?;
    http::json(200, &row)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    name: Option<String>,
    disabled: Option<bool>,
}

pub async fn update(
    db: &D1Database,
    env: &Env,
    id: &str,
    patch: TenantPatch,
) -> Result<Response, GatewayError> {
    if let Some(name) = &patch.name {
        check_name("name", name)?;
        store::tenants::rename(db, id, name.trim()).await?;
    }
    if let Some(disabled) = patch.disabled {
        store::tenants::set_disabled(db, id, disabled, now_ms()).await?;
        super::wallet::tell_disabled(env, id, disabled).await?;
        // Every copy of the tenant's keys goes (KV; this isolate's caches are cleared after
        // any admin write), behind a marker that stops a concurrent load from writing a
        // stale copy back; re-enabling removes the markers.
        let ids = store::tenants::key_ids(db, id).await?;
        if disabled {
            store::keys::forget_keys(env, &ids).await;
        } else {
            store::keys::revive_keys(env, &ids).await;
        }
    }
    response(db, id, 200).await
}
