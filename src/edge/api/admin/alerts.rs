//! `/admin/tenants/{id}/alerts` and `/admin/alerts/{id}`: alert rules and their deliveries
//! (the checks and webhooks themselves: `gateway::alerts`).

use serde::Deserialize;
use serde_json::json;
use worker::{D1Database, Env, Response};

use crate::core::alerts::{check_secret_name, check_threshold, check_webhook_url, AlertKind};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::ids::prefixed_id;
use crate::core::outbound::SecretUse;
use crate::edge::api::http;
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::env as config;
use crate::edge::store;
use crate::edge::store::alerts::RuleRow;

/// Body of `POST /admin/tenants/{id}/alerts`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    kind: String,
    threshold: i64,
    webhook_url: String,
    /// The NAME of the Worker secret holding the signing secret.
    signing_secret: String,
}

fn rule_json(r: &RuleRow) -> serde_json::Value {
    json!({"id": r.id, "object": "alert_rule", "tenant_id": r.tenant_id, "kind": r.kind,
           "threshold": r.threshold, "webhook_url": r.webhook_url,
           "signing_secret": r.secret_name, "state": if r.fired.is_some() { "fired" } else { "armed" },
           "fired_for": r.fired, "fire_count": r.fire_count, "owner": r.owner, "channel": r.channel,
           "created_at": r.created_at, "updated_at": r.updated_at})
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("No alert rule `{id}`."))
}

async fn load_rule(db: &D1Database, id: &str) -> Result<RuleRow, GatewayError> {
    store::alerts::get_rule(db, id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// `POST /admin/tenants/{id}/alerts`.
pub async fn create_rule(
    db: &D1Database,
    env: &Env,
    tenant_id: &str,
    new: NewRule,
) -> Result<Response, GatewayError> {
    let kind = AlertKind::parse(&new.kind).ok_or_else(|| {
        GatewayError::invalid_param(
            "kind",
            format!(
                "Unknown alert kind `{}`; known: {}.",
                new.kind,
                AlertKind::ALL.join(", ")
            ),
        )
    })?;
    let threshold = check_threshold(new.threshold)?;
    check_webhook_url(
        &new.webhook_url,
        config::settings(env).allow_private_upstreams,
    )?;
    check_secret_name(
        &new.signing_secret,
        config::settings(env).secret_allowlist(SecretUse::Webhook),
    )?;
    if config::secret(env, &new.signing_secret).is_none() {
        return Err(GatewayError::invalid_param(
            "signing_secret",
            format!(
                "The Worker secret `{}` is not set; create it first (wrangler secret put {}).",
                new.signing_secret, new.signing_secret
            ),
        ));
    }
    let now = now_ms();
    let id = prefixed_id("alr", now);
    let created = store::alerts::insert_rule(
        db,
        &RuleRow {
            id: id.clone(),
            tenant_id: tenant_id.to_string(),
            kind: kind.as_str().to_string(),
            threshold,
            webhook_url: new.webhook_url.clone(),
            secret_name: new.signing_secret.clone(),
            fired: None,
            fire_count: 0,
            created_at: now,
            updated_at: now,
            owner: "operator".to_string(),
            channel: "webhook".to_string(),
        },
    )
    .await?;
    if !created {
        return Err(GatewayError::new(
            ErrorKind::NotFound,
            format!("No tenant `{tenant_id}`."),
        ));
    }
    http::json(201, &rule_json(&load_rule(db, &id).await?))
}

/// `GET /admin/tenants/{id}/alerts`.
pub async fn list_rules(db: &D1Database, tenant_id: &str) -> Result<Response, GatewayError> {
    let rows = store::alerts::list_rules(db, tenant_id).await?;
    let data: Vec<_> = rows.iter().map(rule_json).collect();
    http::json(200, &json!({"object": "list", "data": data}))
}

/// `GET /admin/alerts/{id}`.
pub async fn get_rule(db: &D1Database, id: &str) -> Result<Response, GatewayError> {
    http::json(200, &rule_json(&load_rule(db, id).await?))
}

/// `DELETE /admin/alerts/{id}`: deletes the rule; its pending deliveries are cancelled, the
/// delivery history is kept.
pub async fn delete_rule(db: &D1Database, id: &str) -> Result<Response, GatewayError> {
    let deleted = store::alerts::delete_rule(db, id).await?;
    if !deleted {
        return Err(not_found(id));
    }
    http::json(
        200,
        &json!({"id": id, "object": "alert_rule", "deleted": true}),
    )
}

/// `GET /admin/alerts/{id}/deliveries`: the rule's webhook deliveries, newest first.
pub async fn list_deliveries(db: &D1Database, rule_id: &str) -> Result<Response, GatewayError> {
    let rows = store::alerts::list_deliveries(db, rule_id).await?;
    let data: Vec<_> = rows
        .iter()
        .map(|d| {
            json!({"id": d.id, "object": "alert_delivery", "rule_id": d.rule_id,
                   "tenant_id": d.tenant_id, "webhook_url": d.webhook_url, "status": d.status,
                   "attempts": d.attempts, "next_attempt_at": d.next_attempt_at,
                   "last_status": d.last_status, "last_error": d.last_error,
                   "created_at": d.created_at, "delivered_at": d.delivered_at,
                   "payload": serde_json::from_str::<serde_json::Value>(&d.payload).ok()})
        })
        .collect();
    http::json(200, &json!({"object": "list", "data": data}))
}
