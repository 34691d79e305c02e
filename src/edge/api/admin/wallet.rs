//! Admin routes of the tenant wallets (docs/api.md, docs/money.md "Wallets"):
//!
//! | route | does |
//! |---|---|
//! | `GET /admin/keys/{id}/limits`, `GET /admin/tenants/{id}/limits` | limits and current usage |
//! | `PUT` the same paths | `{"rpm"?, "tpm"?, "budget"?, "budget_period"?}`: absent keeps, `null` clears |
//! | `GET /admin/tenants/{id}/wallet` | the wallet's state (without taking the tenant's money) |
//! | `POST /admin/tenants/{id}/wallet/migrate` | takes the tenant's money from D1 now (once) |
//! | `POST /admin/tenants/{id}/wallet/export` | writes the wallet's pending usage rows to D1 now |

use serde_json::Value;
use worker::{D1Database, Env, Method, Request, Response};

use crate::core::error::{ErrorKind, GatewayError};
use crate::core::wallet::limits::LimitsPatch;
use crate::edge::api::http;
use crate::edge::store::wallet::client::{WalletClient, WalletError};
use crate::edge::store::{keys, tenants};

/// Admin bodies are small.
const MAX_BODY: usize = 64 * 1024;

/// `GET`/`PUT /admin/keys/{id}/limits`: the key's limits and current usage (a PUT patches them).
pub async fn key_limits(
    req: &mut Request,
    env: &Env,
    database: &D1Database,
    method: &Method,
    id: &str,
) -> Result<Response, GatewayError> {
    let key = keys::get(database, id)
        .await?
        .ok_or_else(|| not_found("API key", id))?;
    let wallet = WalletClient::new(env, &key.tenant_id);
    let view = if *method == Method::Put {
        wallet.set_limits(Some(id), patch(req).await?).await
    } else {
        wallet.limits(Some(id)).await
    }
    .map_err(wallet_error)?;
    http::json(
        200,
        &serde_json::json!({"key_id": id, "tenant_id": key.tenant_id, "limits": view.limits, "usage": view.usage}),
    )
}

/// `GET`/`PUT /admin/tenants/{id}/limits`: the tenant's limits and current usage.
pub async fn tenant_limits(
    req: &mut Request,
    env: &Env,
    database: &D1Database,
    method: &Method,
    id: &str,
) -> Result<Response, GatewayError> {
    require_tenant(database, id).await?;
    let wallet = WalletClient::new(env, id);
    let view = if *method == Method::Put {
        wallet.set_limits(None, patch(req).await?).await
    } else {
        wallet.limits(None).await
    }
    .map_err(wallet_error)?;
    http::json(
        200,
        &serde_json::json!({"tenant_id": id, "limits": view.limits, "usage": view.usage}),
    )
}

/// The wallet operations of `…/wallet`, `…/wallet/migrate` and `…/wallet/export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `GET /admin/tenants/{id}/wallet`: the wallet's state (without taking the tenant's money).
    Inspect,
    /// `POST /admin/tenants/{id}/wallet/migrate`: takes the tenant's money from D1 now (once).
    Migrate,
    /// `POST /admin/tenants/{id}/wallet/export`: writes the wallet's pending usage rows to D1 now.
    Export,
}

/// Runs `operation` on the tenant's wallet (404 for an unknown tenant) and answers its result.
pub async fn operate(
    env: &Env,
    database: &D1Database,
    id: &str,
    operation: Operation,
) -> Result<Response, GatewayError> {
    require_tenant(database, id).await?;
    let wallet = WalletClient::new(env, id);
    match operation {
        Operation::Inspect => http::json(200, &wallet.inspect().await.map_err(wallet_error)?),
        Operation::Migrate => http::json(200, &wallet.migrate().await.map_err(wallet_error)?),
        Operation::Export => http::json(200, &wallet.export().await.map_err(wallet_error)?),
    }
}

/// The body of a `PUT …/limits`, checked field by field; passed on as JSON.
async fn patch(req: &mut Request) -> Result<Value, GatewayError> {
    let bytes = http::read_body(req, MAX_BODY).await?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::invalid_request(format!("Invalid JSON body: {e}")))?;
    if !value.is_object() {
        return Err(GatewayError::invalid_request(
            "The body must be a JSON object.",
        ));
    }
    let parsed: LimitsPatch = serde_json::from_value(value.clone()).map_err(|e| {
        GatewayError::invalid_request(format!(
            "Invalid limits: {e} (rpm, tpm, budget: non-negative integers or null; budget_period: day, week, month, total or null)"
        ))
    })?;
    parsed
        .validate()
        .map_err(|(param, message)| GatewayError::invalid_param(param, message))?;
    Ok(value)
}

async fn require_tenant(database: &D1Database, id: &str) -> Result<(), GatewayError> {
    if tenants::exists(database, id).await? {
        Ok(())
    } else {
        Err(not_found("tenant", id))
    }
}

fn not_found(what: &str, id: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("No {what} `{id}`."))
}

pub(super) fn wallet_error(e: WalletError) -> GatewayError {
    match e {
        WalletError::Refused(r) => {
            let kind = match r.status() {
                401 => ErrorKind::InvalidApiKey,
                402 => ErrorKind::InsufficientQuota,
                409 => ErrorKind::Conflict,
                _ => ErrorKind::UpstreamRateLimited,
            };
            GatewayError::new(kind, r.message()).with_code(r.code())
        }
        WalletError::Failed(m) => GatewayError::new(
            ErrorKind::Unavailable,
            format!("The tenant's wallet is unavailable: {m}"),
        ),
    }
}

// ---- money of the tenants whose wallet holds it (`WALLETS`) ---------------------------------------

/// Whether money moves and balances go through the wallets (`WALLETS`).
pub fn wallets_on(env: &Env) -> bool {
    crate::edge::platform::env::settings(env).wallets
}

/// `POST /admin/tenants/{id}/credit` with `WALLETS` on: the credit (pays debt first) or debit goes
/// to the tenant's wallet, which takes the tenant's money from D1 first if it has not yet. The
/// answer is the tenant's row with the wallet's balance and debt.
pub async fn adjust(
    env: &Env,
    database: &worker::D1Database,
    id: &str,
    amount: i64,
    reason: Option<&str>,
) -> Result<Response, GatewayError> {
    let mut row = serde_json::to_value(
        tenants::get(database, id)
            .await?
            .ok_or_else(|| not_found("tenant", id))?,
    )
    .map_err(|e| http::internal("tenant row", e))?;
    let key = crate::core::ids::prefixed_id("adj", crate::edge::platform::clock::now_ms());
    let entry = WalletClient::new(env, id)
        .adjust(amount, &key, reason)
        .await
        .map_err(wallet_error)?;
    overlay_balance(env, id, &mut row).await?;
    // The wallet's own ledger records this credit (D1's `credit_ledger` does not): the operator
    // sees what it paid of the debt and the balance right after it.
    if let (Ok(entry), Some(obj)) = (serde_json::to_value(entry), row.as_object_mut()) {
        obj.insert("ledger_entry".into(), entry);
    }
    http::json(200, &row)
}

/// Replaces the money fields of `row` (balance, debt, reservations, allowance) with the wallet's,
/// once the wallet holds the tenant's money (before, D1's are exact).
pub async fn overlay_balance(env: &Env, id: &str, row: &mut Value) -> Result<(), GatewayError> {
    let view = WalletClient::new(env, id)
        .inspect()
        .await
        .map_err(wallet_error)?;
    if let (Some(balance), Some(obj)) = (view.balance, row.as_object_mut()) {
        if let Ok(Value::Object(fields)) = serde_json::to_value(balance) {
            for (k, v) in fields {
                obj.insert(k, v);
            }
        }
    }
    Ok(())
}

/// With `WALLETS` on, the wallet refuses a revoked key's reservations itself (the isolates' key
/// caches may lag by `CONFIG_CACHE_TTL_MS`). A failure is the admin's 503: D1 has the revocation,
/// repeating the call tells the wallet.
pub async fn tell_revoked(env: &Env, tenant_id: &str, key_id: &str) -> Result<(), GatewayError> {
    if !wallets_on(env) {
        return Ok(());
    }
    WalletClient::new(env, tenant_id)
        .set_key_revoked(key_id, true)
        .await
        .map_err(wallet_error)
}

/// With `WALLETS` on, the wallet knows its tenant is disabled (or enabled again).
pub async fn tell_disabled(env: &Env, tenant_id: &str, disabled: bool) -> Result<(), GatewayError> {
    if !wallets_on(env) {
        return Ok(());
    }
    WalletClient::new(env, tenant_id)
        .set_disabled(disabled)
        .await
        .map_err(wallet_error)
}
