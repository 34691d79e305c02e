//! Plan upgrade requests: the tenant asks for a plan in the user center, the operator approves
//! (the plan is assigned exactly once, `store::plan_requests::approve`) or declines.
//!
//! * `GET /console/api/plan-requests` (tenant session): the tenant's requests, newest first.
//! * `POST /console/api/plan-requests {plan_id, note?}` (tenant session + CSRF): 201, or 409
//!   `plan_request_pending` while one is pending.
//! * `POST /console/api/plan-requests/{id}/cancel` (tenant session + CSRF).
//! * `GET /admin/plan-requests[?status=pending]`, `POST /admin/plan-requests/{id}/approve`,
//!   `POST /admin/plan-requests/{id}/decline` (admin token; the operator console reaches them
//!   through `/console/api/admin/…`).

use serde_json::json;
use worker::{D1Database, Request, Response};

use super::session::tenant_of;
use crate::core::console::{check_plan_request, PlanRequestBody};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::ids;
use crate::edge::api::http;
use crate::edge::platform::clock::now_ms;
use crate::edge::store as stores;
use crate::edge::store::plan_requests::{self as store, Insert};

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

/// `GET /console/api/plan-requests`: the tenant's requests, newest first.
pub async fn list(req: Request, env: &worker::Env) -> Result<Response, GatewayError> {
    let (_, caller, db) = tenant_of(&req, env, false).await?;
    let tenant_id = caller.tenant_id.as_str();

    let rows = store::of_tenant(&db, tenant_id).await?;
    http::json(200, &json!({"object": "list", "data": rows}))
}

/// `POST /console/api/plan-requests {plan_id, note?}`: 201, or 409 while one is pending.
pub async fn create(mut req: Request, env: &worker::Env) -> Result<Response, GatewayError> {
    let (_, caller, db) = tenant_of(&req, env, true).await?;
    let tenant_id = caller.tenant_id.as_str();

    let body = http::read_body(&mut req, 4096).await?;
    let parsed: PlanRequestBody = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::invalid_request(format!("Invalid JSON body: {e}")))?;
    let current = current_plan(&db, tenant_id).await?;
    let checked = check_plan_request(parsed, current.as_deref())
        .map_err(|(field, why)| GatewayError::invalid_param(field, why))?;
    let now = now_ms();
    let id = ids::prefixed_id("preq", now);
    match store::insert(
        &db,
        &id,
        tenant_id,
        &checked.plan_id,
        checked.note.as_deref(),
        now,
    )
    .await?
    {
        Insert::Created => {
            let row = store::get(&db, &id).await?.ok_or_else(|| no_request(&id))?;
            http::json(201, &row)
        }
        Insert::AlreadyPending => Err(GatewayError::new(
            ErrorKind::Conflict,
            "You already have a pending plan request: cancel it first, or wait for the operator.",
        )
        .with_code("plan_request_pending")),
        Insert::NoPlan => Err(GatewayError::invalid_param(
            "plan_id",
            format!("No plan `{}`.", checked.plan_id),
        )),
    }
}

/// `POST /console/api/plan-requests/{id}/cancel`.
pub async fn cancel(req: Request, env: &worker::Env, id: &str) -> Result<Response, GatewayError> {
    let (_, caller, db) = tenant_of(&req, env, true).await?;
    let tenant_id = caller.tenant_id.as_str();

    if store::close(&db, id, "cancelled", Some(tenant_id), now_ms()).await? {
        return http::json(200, &store::get(&db, id).await?);
    }
    match store::get(&db, id).await? {
        Some(r) if r.tenant_id == tenant_id => Err(not_pending(id)),
        _ => Err(no_request(id)),
    }
}

async fn current_plan(db: &D1Database, tenant_id: &str) -> Result<Option<String>, GatewayError> {
    let billing = stores::billing::tenant_billing(db, tenant_id).await?;
    Ok(billing.and_then(|b| {
        b.get("plan_id")
            .and_then(|p| p.as_str().map(str::to_string))
    }))
}
