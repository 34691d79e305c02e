//! Alert rules a tenant manages in the user center: `balance_below` rules with in-app notices,
//! kept in the operator's alert machinery (`alert_rules` with `owner = 'tenant'`, `channel =
//! 'notice'`; docs/alerts.md), so the same crossing check fires them once per crossing.
//!
//! * `GET /console/api/alerts`: the tenant's own rules and its latest notices.
//! * `POST /console/api/alerts {threshold}` (CSRF): 201 with the rule.
//! * `DELETE /console/api/alerts/{id}` (CSRF): only a rule the tenant created itself.

use serde_json::{json, Value};
use worker::{Env, Request, Response};

use super::session::tenant_of;
use crate::core::console::{check_tenant_alert, TenantAlertBody};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::ids;
use crate::edge::api::http;
use crate::edge::platform::clock::now_ms;
use crate::edge::store::alerts::{self as store, DeliveryRow, RuleRow};

fn rule_json(r: &RuleRow) -> Value {
    json!({"id": r.id, "object": "alert_rule", "kind": r.kind, "threshold": r.threshold,
           "channel": r.channel, "state": if r.fired.is_some() { "fired" } else { "armed" },
           "fire_count": r.fire_count, "created_at": r.created_at})
}

fn notice_json(d: &DeliveryRow) -> Value {
    let payload: Value = serde_json::from_str(&d.payload).unwrap_or(Value::Null);
    json!({"id": d.id, "rule_id": d.rule_id, "created_at": d.created_at,
           "message": payload["message"], "value": payload["value"],
           "threshold": payload["rule"]["threshold"]})
}

fn no_rule(id: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("No alert rule `{id}`."))
}

/// `GET /console/api/alerts`: the tenant's own rules and its in-app notices.
pub async fn list(req: Request, env: &Env) -> Result<Response, GatewayError> {
    let (_, caller, db) = tenant_of(&req, env, false).await?;
    let tenant_id = caller.tenant_id.as_str();

    let rules = store::tenant_rules(&db, tenant_id).await?;
    let notices = store::notices(&db, tenant_id).await?;
    http::json(
        200,
        &json!({"object": "list",
                        "data": rules.iter().map(rule_json).collect::<Vec<_>>(),
                        "notices": notices.iter().map(notice_json).collect::<Vec<_>>()}),
    )
}

/// `POST /console/api/alerts {threshold}`: a balance-below rule of the tenant (in-app notice).
pub async fn create(mut req: Request, env: &Env) -> Result<Response, GatewayError> {
    let (_, caller, db) = tenant_of(&req, env, true).await?;
    let tenant_id = caller.tenant_id.as_str();

    let body = http::read_body(&mut req, 1024).await?;
    let parsed: TenantAlertBody = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::invalid_request(format!("Invalid JSON body: {e}")))?;
    let existing = store::tenant_rules(&db, tenant_id).await?.len();
    let threshold = check_tenant_alert(&parsed, existing)
        .map_err(|(field, why)| GatewayError::invalid_param(field, why))?;
    let now = now_ms();
    let rule = RuleRow {
        id: ids::prefixed_id("alr", now),
        tenant_id: tenant_id.to_string(),
        kind: "balance_below".to_string(),
        threshold,
        webhook_url: String::new(),
        secret_name: String::new(),
        fired: None,
        fire_count: 0,
        created_at: now,
        updated_at: now,
        owner: "tenant".to_string(),
        channel: "notice".to_string(),
    };
    if !store::insert_rule(&db, &rule).await? {
        return Err(GatewayError::internal("the tenant of this session is gone"));
    }
    // A rule whose condition already holds fires at the next check, as the operator's do.
    http::json(201, &rule_json(&rule))
}

/// `DELETE /console/api/alerts/{id}`: one of the tenant's own rules.
pub async fn delete(req: Request, env: &Env, id: &str) -> Result<Response, GatewayError> {
    let (_, caller, db) = tenant_of(&req, env, true).await?;
    let tenant_id = caller.tenant_id.as_str();

    let own = store::get_rule(&db, id)
        .await?
        .is_some_and(|r| r.tenant_id == tenant_id && r.owner == "tenant");
    if !own || !store::delete_rule(&db, id).await? {
        return Err(no_rule(id));
    }
    http::json(
        200,
        &json!({"id": id, "object": "alert_rule", "deleted": true}),
    )
}
