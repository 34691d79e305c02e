//! Sessions: their totals (D1, settled with each request) and the copy in KV.

use serde::Deserialize;
use worker::{D1Database, Env};

use crate::core::error::GatewayError;
use crate::edge::platform::{d1, kv};

/// Session totals, as cached in KV.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct SessionRow {
    pub id: String,
    pub tenant_id: String,
    pub last_model: Option<String>,
    pub request_count: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: u64,
    pub created_at: u64,
    pub last_seen: u64,
}

pub const SESSION_COLUMNS: &str =
    "id, tenant_id, last_model, request_count, prompt_tokens, completion_tokens, cost, created_at, last_seen";

/// The KV key of a session's copy.
pub fn session_cache_name(tenant_id: &str, session_id: &str) -> String {
    format!("session:{tenant_id}:{session_id}")
}

/// Refreshes a session's KV copy (best effort: D1 stays the record).
pub async fn cache_session(env: &Env, session: &SessionRow, ttl_seconds: u64) {
    if let Ok(kv) = kv::namespace(env) {
        if let Ok(put) = kv.put(
            &session_cache_name(&session.tenant_id, &session.id),
            session,
        ) {
            let _ = put.expiration_ttl(ttl_seconds).execute().await;
        }
    }
}

/// A tenant's session: the KV copy when there is one, else D1's row.
pub async fn get(env: &Env, tenant_id: &str, id: &str) -> Result<Option<SessionRow>, GatewayError> {
    if let Ok(kv) = kv::namespace(env) {
        if let Ok(Some(session)) = kv
            .get(&session_cache_name(tenant_id, id))
            .json::<SessionRow>()
            .await
        {
            return Ok(Some(session));
        }
    }
    d1::first(
        &d1::database(env)?,
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant_id = ?1 AND id = ?2"),
        &[tenant_id.into(), id.into()],
    )
    .await
}

/// A tenant's session as D1 has it.
pub async fn read(
    db: &D1Database,
    tenant_id: &str,
    id: &str,
) -> Result<Option<SessionRow>, GatewayError> {
    d1::first(
        db,
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant_id = ?1 AND id = ?2"),
        &[tenant_id.into(), id.into()],
    )
    .await
}

/// Deletes at most `limit` sessions idle since before `cutoff` from D1, and their KV copies.
/// Returns how many went.
pub async fn expire(
    env: &Env,
    db: &D1Database,
    cutoff: u64,
    limit: u32,
) -> Result<usize, GatewayError> {
    #[derive(Deserialize)]
    struct Expired {
        tenant_id: String,
        id: String,
    }
    let expired: Vec<Expired> = d1::all(
        db,
        &format!(
            "DELETE FROM sessions WHERE last_seen < ?1 AND (tenant_id, id) IN
               (SELECT tenant_id, id FROM sessions WHERE last_seen < ?1 LIMIT {limit})
             RETURNING tenant_id, id"
        ),
        &[cutoff.into()],
    )
    .await?;
    if let Ok(kv) = kv::namespace(env) {
        for s in &expired {
            if let Err(e) = kv.delete(&session_cache_name(&s.tenant_id, &s.id)).await {
                worker::console_warn!("cron: KV delete of session {} failed: {e}", s.id);
            }
        }
    }
    Ok(expired.len())
}
