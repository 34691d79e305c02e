//! Writes D1 refused, kept in KV for the scheduled handler to replay (`edge::cron`): settlements
//! (`pending-settle:<request id>`) and plugin call records (`pending-call:<call id>`).

use worker::Env;

use super::ledger::UsageRow;
use crate::core::error::GatewayError;
use crate::edge::platform::kv;

/// KV prefixes of settlements kept for replay.
pub const PENDING_SETTLE_PREFIX: &str = "pending-settle:";
pub const PENDING_CALL_PREFIX: &str = "pending-call:";

/// Keeps a settlement that D1 refused, for the scheduled replay (`edge::cron`): logs the whole row (so the bill can
/// be rebuilt from the logs even if KV fails too) and stores it in KV.
pub async fn keep_pending_settlement(env: &Env, row: &UsageRow) {
    let json = serde_json::to_string(row).unwrap_or_default();
    worker::console_error!("settlement of {} kept for replay: {json}", row.request_id);
    keep(
        env,
        &format!("{PENDING_SETTLE_PREFIX}{}", row.request_id),
        &json,
    )
    .await;
}

/// [`keep_pending_settlement`] for a plugin call's record.
pub async fn keep_pending_call(env: &Env, id: &str, json: &str) {
    worker::console_error!("plugin call {id} kept for replay: {json}");
    keep(env, &format!("{PENDING_CALL_PREFIX}{id}"), json).await;
}

async fn keep(env: &Env, name: &str, json: &str) {
    let stored = match kv::namespace(env) {
        Ok(kv) => match kv.put(name, json) {
            Ok(put) => put.execute().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = stored {
        worker::console_error!("cannot keep {name} in KV ({e}); the log line above has it");
    }
}

/// Up to `limit` kept writes under `prefix`: (KV key, JSON).
pub async fn list(
    env: &Env,
    prefix: &str,
    limit: u64,
) -> Result<Vec<(String, String)>, GatewayError> {
    let kv = kv::namespace(env)
        .map_err(|e| GatewayError::internal(format!("KV binding KV is missing: {e}")))?;
    let listed = kv
        .list()
        .prefix(prefix.to_string())
        .limit(limit)
        .execute()
        .await
        .map_err(|e| GatewayError::internal(format!("KV list {prefix}: {e}")))?;
    let mut kept = Vec::new();
    for key in listed.keys {
        match kv.get(&key.name).text().await {
            Ok(Some(text)) => kept.push((key.name, text)),
            Ok(None) => continue,
            Err(e) => worker::console_error!("cron: KV get {}: {e}", key.name),
        }
    }
    Ok(kept)
}

/// Removes a kept write once D1 has it.
pub async fn forget(env: &Env, name: &str) {
    if let Ok(kv) = kv::namespace(env) {
        if let Err(e) = kv.delete(name).await {
            worker::console_error!("cron: KV delete {name}: {e}");
        }
    }
}
