//! Prices, plans and top-ups: the admin and tenant routes of the ledger, and their SQL.
//!
//! * `GET /admin/models/{model}/prices` — a model's price versions (newest first).
//! * `PUT /admin/plans/{id}`, `GET /admin/plans`, `DELETE /admin/plans/{id}` — plans.
//! * `PUT /admin/tenants/{id}/plan` — assign (or clear) a tenant's plan.
//! * `PUT /admin/tenants/{id}/pricing` — a tenant's price multiplier.
//! * `POST /admin/redemption-codes`, `GET /admin/redemption-codes?batch_id=` — codes.
//! * `POST /v1/redeem` — a tenant redeems a code with its key.
//!
//! Money moves only through the triggers of `schema/0003_ledger.sql`.

use serde::Deserialize;
use serde_json::json;
use worker::{D1Database, Env, Request, Response};

use crate::core::billing::allowance::{month_start_ms, next_month_start_ms};
use crate::core::billing::codes::{code_digest, generate_code, normalize_code, MAX_BATCH};
use crate::core::billing::MAX_MULTIPLIER_BPS;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::ids::prefixed_id;
use crate::edge::api::http;
use crate::edge::gateway::auth;
use crate::edge::platform::clock::now_ms;
use crate::edge::store::{self, billing};

/// Money and prices stay below 2^53 so they survive JavaScript numbers exactly.
const MAX_SAFE: u64 = (1 << 53) - 1;

fn check_amount(field: &str, v: u64, min: u64) -> Result<u64, GatewayError> {
    if v < min || v > MAX_SAFE {
        return Err(GatewayError::invalid_param(
            field,
            format!("`{field}` must be an integer from {min} to {MAX_SAFE}."),
        ));
    }
    Ok(v)
}

fn not_found(what: &str, id: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("No {what} `{id}`."))
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, GatewayError> {
    let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { bytes };
    serde_json::from_slice(bytes)
        .map_err(|e| GatewayError::invalid_request(format!("Invalid JSON body: {e}")))
}

// ---- prices -----------------------------------------------------------------------------------

/// `GET /admin/models/{model}/prices`.
pub async fn list_prices(db: &D1Database, model: &str) -> Result<Response, GatewayError> {
    let current = billing::current_price_version(db, model).await?;
    let rows = billing::price_versions(db, model).await?;
    if current.is_none() && rows.is_empty() {
        return Err(not_found("model", model));
    }
    let current = current.and_then(|c| c["price_version"].as_u64());
    http::json(
        200,
        &json!({"object": "list", "model": model, "current_version": current, "data": rows}),
    )
}

// ---- plans and tenant pricing ---------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanBody {
    name: String,
    allowance: u64,
}

fn check_id(field: &str, id: &str) -> Result<(), GatewayError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(GatewayError::invalid_param(
            field,
            format!("`{field}` must be 1 to 64 of [A-Za-z0-9_.-]."),
        ))
    }
}

/// `PUT /admin/plans/{id}`: creates or updates a plan. A new allowance applies from the next
/// period of each tenant (the current period keeps what is left).
pub async fn put_plan(db: &D1Database, id: &str, body: &[u8]) -> Result<Response, GatewayError> {
    check_id("id", id)?;
    let plan: PlanBody = parse(body)?;
    if plan.name.trim().is_empty() || plan.name.len() > 200 {
        return Err(GatewayError::invalid_param(
            "name",
            "`name` must be 1 to 200 characters.",
        ));
    }
    let allowance = check_amount("allowance", plan.allowance, 0)?;
    let now = now_ms();
    billing::put_plan(db, id, plan.name.trim(), allowance, now).await?;
    plan_response(db, id).await
}

async fn plan_response(db: &D1Database, id: &str) -> Result<Response, GatewayError> {
    let row = billing::plan(db, id).await?;
    http::json(200, &row.ok_or_else(|| not_found("plan", id))?)
}

/// `GET /admin/plans`.
pub async fn list_plans(db: &D1Database) -> Result<Response, GatewayError> {
    let rows = billing::plans(db).await?;
    http::json(200, &json!({"object": "list", "data": rows}))
}

/// `DELETE /admin/plans/{id}`: refused with 409 while tenants are on it.
pub async fn delete_plan(db: &D1Database, id: &str) -> Result<Response, GatewayError> {
    if billing::delete_unused_plan(db, id).await? {
        return http::json(200, &json!({"id": id, "deleted": true}));
    }
    Err(match billing::plan_exists(db, id).await? {
        false => not_found("plan", id),
        true => GatewayError::new(
            ErrorKind::Conflict,
            format!("Plan `{id}` is assigned to tenants; move them to another plan first."),
        ),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignPlan {
    plan_id: Option<String>,
}

/// `PUT /admin/tenants/{id}/plan` `{plan_id}`: assigns a plan (its full allowance is available
/// at once, for the current month, less what requests in flight already hold of this month's
/// allowance: their holds return to it when they settle, so re-assigning a plan never pays
/// twice) or, with `null`, removes it (the allowance left is dropped).
pub async fn assign_plan(
    db: &D1Database,
    tenant_id: &str,
    body: &[u8],
) -> Result<Response, GatewayError> {
    apply_plan(db, tenant_id, body).await?;
    tenant_billing(db, tenant_id).await
}

/// The D1 part of `PUT /admin/tenants/{id}/plan` (also with `WALLETS`: D1 keeps the tenant's
/// plan for reports and the console): the plan assigned, `None` when removed.
pub(crate) async fn apply_plan(
    db: &D1Database,
    tenant_id: &str,
    body: &[u8],
) -> Result<Option<String>, GatewayError> {
    let assign: AssignPlan = parse(body)?;
    let now = now_ms();
    let changed = billing::assign_plan(
        db,
        tenant_id,
        assign.plan_id.as_deref(),
        month_start_ms(now),
    )
    .await?;
    if !changed {
        let tenant = store::tenants::exists(db, tenant_id).await?;
        return Err(match (tenant, &assign.plan_id) {
            (false, _) => not_found("tenant", tenant_id),
            (true, Some(plan)) => GatewayError::invalid_param(
                "plan_id",
                format!("No plan `{plan}`; create it with PUT /admin/plans/{{id}} first."),
            ),
            (true, None) => not_found("tenant", tenant_id),
        });
    }
    Ok(assign.plan_id)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pricing {
    price_multiplier_bps: u64,
}

/// `PUT /admin/tenants/{id}/pricing` `{price_multiplier_bps}`: applies to requests that start
/// after it.
pub async fn set_pricing(
    db: &D1Database,
    tenant_id: &str,
    body: &[u8],
) -> Result<Response, GatewayError> {
    let pricing: Pricing = parse(body)?;
    if pricing.price_multiplier_bps == 0 || pricing.price_multiplier_bps > MAX_MULTIPLIER_BPS {
        return Err(GatewayError::invalid_param(
            "price_multiplier_bps",
            format!("`price_multiplier_bps` must be from 1 to {MAX_MULTIPLIER_BPS} (10000 = list price)."),
        ));
    }
    if !billing::set_multiplier(db, tenant_id, pricing.price_multiplier_bps).await? {
        return Err(not_found("tenant", tenant_id));
    }
    tenant_billing(db, tenant_id).await
}

/// A tenant's billing state: balance, debt, reservations, plan and allowance, multiplier.
async fn tenant_billing(db: &D1Database, tenant_id: &str) -> Result<Response, GatewayError> {
    let row = billing::tenant_billing(db, tenant_id).await?;
    let mut row = row.ok_or_else(|| not_found("tenant", tenant_id))?;
    if let Some(period) = row["allowance_period"].as_u64() {
        row["allowance_resets_at"] = json!(next_month_start_ms(period));
    }
    http::json(200, &row)
}

/// `GET /admin/tenants/{id}/billing`.
pub async fn get_tenant_billing(
    db: &D1Database,
    tenant_id: &str,
) -> Result<Response, GatewayError> {
    tenant_billing(db, tenant_id).await
}

/// `GET /admin/tenants/{id}/billing` with `WALLETS` on: the money fields from the tenant's wallet.
pub async fn get_tenant_billing_wallet(
    db: &D1Database,
    env: &Env,
    tenant_id: &str,
) -> Result<Response, GatewayError> {
    let row = billing::tenant_billing(db, tenant_id).await?;
    let mut row = row.ok_or_else(|| not_found("tenant", tenant_id))?;
    super::wallet::overlay_balance(env, tenant_id, &mut row).await?;
    http::json(200, &row)
}

// ---- redemption codes ------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCodes {
    count: u64,
    amount: u64,
    expires_at: Option<u64>,
}

/// `POST /admin/redemption-codes` `{count, amount, expires_at?}` → 201 with the codes, which are
/// shown only in this response (only their digests are stored).
pub async fn create_codes(
    db: &D1Database,
    env: &Env,
    body: &[u8],
) -> Result<Response, GatewayError> {
    let new: NewCodes = parse(body)?;
    if new.count == 0 || new.count > MAX_BATCH {
        return Err(GatewayError::invalid_param(
            "count",
            format!("`count` must be from 1 to {MAX_BATCH}."),
        ));
    }
    let amount = check_amount("amount", new.amount, 1)?;
    let now = now_ms();
    if let Some(expires) = new.expires_at {
        if expires <= now {
            return Err(GatewayError::invalid_param(
                "expires_at",
                "`expires_at` (UTC ms) must be in the future.",
            ));
        }
    }
    let pepper = auth::pepper(env)?;
    let batch_id = prefixed_id("rcb", now);
    let mut codes = Vec::new();
    let mut digests = Vec::new();
    for _ in 0..new.count {
        let code = generate_code()
            .map_err(|_| GatewayError::internal("no randomness available to generate a code"))?;
        let normalized = normalize_code(&code)
            .ok_or_else(|| GatewayError::internal("generated an invalid code"))?;
        digests.push(code_digest(&pepper, &normalized));
        codes.push(code);
    }
    billing::insert_codes(db, &batch_id, amount, new.expires_at, now, &digests).await?;
    http::json(
        201,
        &json!({"object": "redemption_code_batch", "batch_id": batch_id, "amount": amount,
                "expires_at": new.expires_at, "created_at": now, "codes": codes}),
    )
}

#[derive(Deserialize, Default)]
struct CodeQuery {
    batch_id: Option<String>,
}

/// `GET /admin/redemption-codes?batch_id=`: codes (as digest prefixes) and their state.
pub async fn list_codes(db: &D1Database, req: &Request) -> Result<Response, GatewayError> {
    let q: CodeQuery = req
        .query()
        .map_err(|e| GatewayError::invalid_request(format!("Invalid query string: {e}")))?;
    let rows = billing::list_codes(db, q.batch_id.as_deref()).await?;
    http::json(200, &json!({"object": "list", "data": rows}))
}
