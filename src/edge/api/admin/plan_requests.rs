//! `/admin/plan-requests`: the operator's side of plan upgrade requests (the tenant's side is
//! `console::upgrades`). Approval assigns the plan exactly once (`store::plan_requests::approve`).
//!
//! * `GET /admin/plan-requests[?status=pending|approved|declined|cancelled]`
//! * `POST /admin/plan-requests/{id}/approve`, `POST /admin/plan-requests/{id}/decline`

use serde_json::json;
use worker::{D1Database, Request, Response};

use crate::core::billing::allowance::month_start_ms;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::ids;
use crate::edge::api::http;
use crate::edge::platform::clock::now_ms;
use crate::edge::store as stores;
use crate::edge::store::plan_requests as store;

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

/// `GET /admin/plan-requests[?status=…]`.
pub async fn list(req: &Request, db: &D1Database) -> Result<Response, GatewayError> {
    let status = req.url().ok().and_then(|u| {
        u.query_pairs()
            .find(|(k, _)| k == "status")
            .map(|(_, v)| v.into_owned())
    });
    if let Some(s) = status.as_deref() {
        if !matches!(s, "pending" | "approved" | "declined" | "cancelled") {
            return Err(GatewayError::invalid_param(
                "status",
                "`status` must be pending, approved, declined or cancelled.",
            ));
        }
    }
    let rows = store::list(db, status.as_deref()).await?;
    http::json(200, &json!({"object": "list", "data": rows}))
}

/// `POST /admin/plan-requests/{id}/approve`.
pub async fn approve(db: &D1Database, id: &str) -> Result<Response, GatewayError> {
    let now = now_ms();
    let decision = ids::prefixed_id("dec", now);
    if store::approve(db, id, &decision, now, month_start_ms(now)).await? {
        let row = store::get(db, id).await?.ok_or_else(|| no_request(id))?;
        let billing = stores::billing::tenant_billing(db, &row.tenant_id).await?;
        return http::json(200, &json!({"request": row, "tenant": billing}));
    }
    match store::get(db, id).await? {
        None => Err(no_request(id)),
        Some(r) if r.status == "pending" => Err(GatewayError::invalid_param(
            "plan_id",
            format!(
                "Plan `{}` no longer exists: decline the request.",
                r.plan_id
            ),
        )),
        Some(_) => Err(not_pending(id)),
    }
}

/// `POST /admin/plan-requests/{id}/decline`.
pub async fn decline(db: &D1Database, id: &str) -> Result<Response, GatewayError> {
    if store::close(db, id, "declined", None, now_ms()).await? {
        return http::json(200, &store::get(db, id).await?);
    }
    match store::get(db, id).await? {
        None => Err(no_request(id)),
        Some(_) => Err(not_pending(id)),
    }
}
