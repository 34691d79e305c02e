//! Plan upgrade requests (`plan_requests`, schema/0014): a tenant asks for a plan, the operator
//! approves (the plan is assigned exactly once) or declines.

use serde::{Deserialize, Serialize};
use worker::D1Database;

use crate::core::error::GatewayError;
use crate::edge::platform::d1 as db;

/// One request as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanRequest {
    pub id: String,
    pub tenant_id: String,
    pub plan_id: String,
    pub from_plan_id: Option<String>,
    pub note: Option<String>,
    pub status: String,
    pub created_at: u64,
    pub decided_at: Option<u64>,
}

const COLUMNS: &str = "id, tenant_id, plan_id, from_plan_id, note, status, created_at, decided_at";

/// How inserting a request went.
pub enum Insert {
    Created,
    /// The tenant already has a pending request.
    AlreadyPending,
    /// No such plan.
    NoPlan,
}

/// Stores a pending request of `tenant_id` for an existing plan (the tenant's current plan is
/// recorded beside it).
pub async fn insert(
    db: &D1Database,
    id: &str,
    tenant_id: &str,
    plan_id: &str,
    note: Option<&str>,
    now: u64,
) -> Result<Insert, GatewayError> {
    if pending_of(db, tenant_id).await?.is_some() {
        return Ok(Insert::AlreadyPending);
    }
    // `OR IGNORE`: a concurrent request that got in first wins the one-pending index.
    let changed = db::run(
        db,
        "INSERT OR IGNORE INTO plan_requests (id, tenant_id, plan_id, from_plan_id, note, status, created_at)
         SELECT ?1, t.id, p.id, t.plan_id, ?4, 'pending', ?5
         FROM tenants t, plans p WHERE t.id = ?2 AND p.id = ?3",
        &[
            id.into(),
            tenant_id.into(),
            plan_id.into(),
            note.into(),
            now.into(),
        ],
    )
    .await?;
    if changed > 0 {
        return Ok(Insert::Created);
    }
    Ok(if pending_of(db, tenant_id).await?.is_some() {
        Insert::AlreadyPending
    } else {
        Insert::NoPlan
    })
}

pub async fn pending_of(
    db: &D1Database,
    tenant_id: &str,
) -> Result<Option<PlanRequest>, GatewayError> {
    db::first(
        db,
        &format!("SELECT {COLUMNS} FROM plan_requests WHERE tenant_id = ?1 AND status = 'pending'"),
        &[tenant_id.into()],
    )
    .await
}

pub async fn get(db: &D1Database, id: &str) -> Result<Option<PlanRequest>, GatewayError> {
    db::first(
        db,
        &format!("SELECT {COLUMNS} FROM plan_requests WHERE id = ?1"),
        &[id.into()],
    )
    .await
}

/// A tenant's requests, newest first (at most 100).
pub async fn of_tenant(db: &D1Database, tenant_id: &str) -> Result<Vec<PlanRequest>, GatewayError> {
    db::all(
        db,
        &format!(
            "SELECT {COLUMNS} FROM plan_requests WHERE tenant_id = ?1 ORDER BY created_at DESC, id DESC LIMIT 100"
        ),
        &[tenant_id.into()],
    )
    .await
}

/// Requests with `status` (all when `None`), oldest first (at most 500), with the tenant's name.
pub async fn list(
    db: &D1Database,
    status: Option<&str>,
) -> Result<Vec<serde_json::Value>, GatewayError> {
    db::all(
        db,
        "SELECT q.id, q.tenant_id, t.name AS tenant_name, q.plan_id, q.from_plan_id, q.note, q.status,
           q.created_at, q.decided_at
         FROM plan_requests q JOIN tenants t ON t.id = q.tenant_id
         WHERE ?1 IS NULL OR q.status = ?1 ORDER BY q.created_at, q.id LIMIT 500",
        &[status.into()],
    )
    .await
}

/// Approves a pending request and assigns its plan to the tenant (for the allowance period
/// starting `period`, as `billing::assign_plan` does), in one batch: the first statement stamps
/// the request with `decision_id` only while it is pending and its plan exists; the second
/// assigns the plan only where it finds that stamp. Whether this call approved it.
pub async fn approve(
    db: &D1Database,
    id: &str,
    decision_id: &str,
    now: u64,
    period: u64,
) -> Result<bool, GatewayError> {
    let results = db::batch(
        db,
        vec![
            db::statement(
                db,
                "UPDATE plan_requests SET status = 'approved', decision_id = ?2, decided_at = ?3
                 WHERE id = ?1 AND status = 'pending'
                   AND EXISTS (SELECT 1 FROM plans p WHERE p.id = plan_requests.plan_id)",
                &[id.into(), decision_id.into(), now.into()],
            )?,
            db::statement(
                db,
                "UPDATE tenants SET plan_id = p.id,
                   allowance_remaining = MAX(p.allowance - (SELECT COALESCE(SUM(r.allowance_amount), 0)
                     FROM reservations r WHERE r.tenant_id = tenants.id AND r.allowance_period = ?3), 0),
                   allowance_period = ?3
                 FROM (SELECT pl.id, pl.allowance, q.tenant_id FROM plan_requests q
                       JOIN plans pl ON pl.id = q.plan_id
                       WHERE q.id = ?1 AND q.decision_id = ?2) AS p
                 WHERE tenants.id = p.tenant_id",
                &[id.into(), decision_id.into(), period.into()],
            )?,
        ],
    )
    .await?;
    let approved = results
        .first()
        .and_then(|r| r.meta().ok().flatten())
        .and_then(|m| m.changes)
        .unwrap_or(0);
    Ok(approved > 0)
}

/// Declines (by the operator) or cancels (by the tenant) a pending request; whether it was
/// pending. `tenant_id` limits the change to that tenant's requests.
pub async fn close(
    db: &D1Database,
    id: &str,
    status: &str,
    tenant_id: Option<&str>,
    now: u64,
) -> Result<bool, GatewayError> {
    let changed = db::run(
        db,
        "UPDATE plan_requests SET status = ?2, decided_at = ?3
         WHERE id = ?1 AND status = 'pending' AND (?4 IS NULL OR tenant_id = ?4)",
        &[id.into(), status.into(), now.into(), tenant_id.into()],
    )
    .await?;
    Ok(changed > 0)
}
