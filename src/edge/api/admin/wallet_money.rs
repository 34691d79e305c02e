//! Plans with `WALLETS` on (docs/money.md "Wallets"): the admin routes that change a tenant's
//! allowance keep D1's record (plan ids for reports and the console) and tell the tenant's wallet,
//! which holds the allowance.
//!
//! | route | with `WALLETS` |
//! |---|---|
//! | `PUT /admin/tenants/{id}/plan` | D1 assignment, then the wallet's `set_plan` (grants the month's allowance less what open reservations of this month hold of it; `null` drops it) |
//! | `POST /admin/plan-requests/{id}/approve` | D1 approval (once), then the wallet's plan assignment once per request (`plan-request:<id>`); approving an approved request again completes an interrupted push and still answers 409 |
//! | `PUT /admin/plans/{id}` | D1 plan, then each wallet of a tenant on it gets the new allowance for its next period |
//! | `POST /admin/tenants/{id}/wallet/clock` | test deployments only: moves the wallet's clock (`{offset_ms}`) |

use serde::Deserialize;
use serde_json::json;
use worker::{D1Database, Env, Response};

use super::billing as billing_api;
use crate::core::billing::allowance::month_start_ms;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::ids;
use crate::edge::api::http;
use crate::edge::gateway::wallet::wallet_error;
use crate::edge::platform::clock::now_ms;
use crate::edge::store::wallet::client::WalletClient;
use crate::edge::store::{billing, plan_requests, tenants};

/// A plan's monthly allowance, if the plan exists.
async fn allowance_of(db: &D1Database, plan_id: &str) -> Result<Option<u64>, GatewayError> {
    Ok(billing::plan(db, plan_id)
        .await?
        .and_then(|p| p["allowance"].as_u64()))
}

/// `PUT /admin/tenants/{id}/plan` with `WALLETS` on. A failure after D1 (503: the wallet could
/// not be reached) is repaired by repeating the call.
pub async fn assign_plan(
    env: &Env,
    db: &D1Database,
    tenant_id: &str,
    body: &[u8],
) -> Result<Response, GatewayError> {
    let plan = billing_api::apply_plan(db, tenant_id, body).await?;
    let allowance = match plan.as_deref() {
        Some(p) => Some(
            allowance_of(db, p)
                .await?
                .ok_or_else(|| GatewayError::invalid_param("plan_id", "The plan was deleted."))?,
        ),
        None => None,
    };
    WalletClient::new(env, tenant_id)
        .set_plan(allowance)
        .await
        .map_err(wallet_error)?;
    billing_api::get_tenant_billing_wallet(db, env, tenant_id).await
}

/// `POST /admin/plan-requests/{id}/approve` with `WALLETS` on.
pub async fn approve(env: &Env, db: &D1Database, id: &str) -> Result<Response, GatewayError> {
    let now = now_ms();
    let decision = ids::prefixed_id("dec", now);
    let approved = plan_requests::approve(db, id, &decision, now, month_start_ms(now)).await?;
    let row = plan_requests::get(db, id)
        .await?
        .ok_or_else(|| no_request(id))?;
    if !approved && row.status == "pending" {
        return Err(GatewayError::invalid_param(
            "plan_id",
            format!(
                "Plan `{}` no longer exists: decline the request.",
                row.plan_id
            ),
        ));
    }
    if row.status != "approved" {
        return Err(not_pending(id));
    }
    // Approved now or before: the wallet takes the plan once per request (a repeat changes
    // nothing), so approving again completes a push that an unreachable wallet interrupted.
    if let Some(allowance) = allowance_of(db, &row.plan_id).await? {
        WalletClient::new(env, &row.tenant_id)
            .assign_plan(Some(allowance), &format!("plan-request:{id}"))
            .await
            .map_err(wallet_error)?;
    }
    if !approved {
        return Err(not_pending(id));
    }
    let mut tenant = serde_json::to_value(billing::tenant_billing(db, &row.tenant_id).await?)
        .map_err(|e| http::internal("tenant billing", e))?;
    super::wallet::overlay_balance(env, &row.tenant_id, &mut tenant).await?;
    http::json(200, &json!({"request": row, "tenant": tenant}))
}

/// `PUT /admin/plans/{id}` with `WALLETS` on: the wallets of the tenants on the plan get its
/// allowance for their next period. A wallet that could not be reached makes the answer a 503
/// naming it; repeating the call is harmless.
pub async fn put_plan(
    env: &Env,
    db: &D1Database,
    id: &str,
    body: &[u8],
) -> Result<Response, GatewayError> {
    let response = billing_api::put_plan(db, id, body).await?;
    let Some(allowance) = allowance_of(db, id).await? else {
        return Ok(response);
    };
    let mut failed = Vec::new();
    for tenant_id in billing::wallet_tenants_on_plan(db, id).await? {
        if let Err(e) = WalletClient::new(env, &tenant_id)
            .set_plan_allowance(allowance)
            .await
        {
            worker::console_error!("plan {id}: wallet of {tenant_id}: {e}");
            failed.push(tenant_id);
        }
    }
    if !failed.is_empty() {
        return Err(GatewayError::new(
            ErrorKind::Unavailable,
            format!(
                "Plan `{id}` saved, but the wallets of {} could not be told its new allowance; repeat the call.",
                failed.join(", ")
            ),
        ));
    }
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Clock {
    offset_ms: i64,
}

/// `POST /admin/tenants/{id}/wallet/clock` `{offset_ms}`: test deployments only (the router
/// answers 404 elsewhere).
pub async fn set_clock(
    env: &Env,
    db: &D1Database,
    id: &str,
    body: &[u8],
) -> Result<Response, GatewayError> {
    let clock: Clock = billing_api::parse(body)?;
    if !tenants::exists(db, id).await? {
        return Err(GatewayError::new(
            ErrorKind::NotFound,
            format!("No tenant `{id}`."),
        ));
    }
    WalletClient::new(env, id)
        .set_clock(clock.offset_ms)
        .await
        .map_err(wallet_error)?;
    http::json(200, &json!({"tenant_id": id, "offset_ms": clock.offset_ms}))
}

fn no_request(id: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("No plan request `{id}`."))
}

fn not_pending(id: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::Conflict,
        format!("Plan request `{id}` is not pending: it was decided already."),
    )
    .with_code("plan_request_decided")
}
