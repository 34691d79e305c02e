//! A plugin call's price on the tenant's wallet (`WALLETS`, docs/plugins.md "Prices", docs/money.md
//! "Wallets"). The meaning of the D1 version is kept: the price is reserved under the call id
//! (`<request id>.c<n>`) before the plugin is called, refused like D1 refused it (revoked key,
//! disabled tenant, debt, allowance + balance short — and, in the wallet, a key's or the tenant's
//! budget); a successful call is charged its price from that hold, a failed one nothing (the hold
//! returns). The charge and the call's `plugin_calls` row are one wallet transaction, idempotent
//! by call id; the wallet exports the row to D1 (`from_wallet = 1`). A charge the wallet could not
//! take after its retries is kept in KV like a D1 call record and replayed into the wallet by the
//! scheduled handler.

use serde_json::{Map, Value};
use worker::Env;

use crate::edge::store::plugins::{CallRecord, CallRow};
use crate::edge::store::wallet::client::{WalletClient, WalletError};

/// Attempts of a charge before it is kept in KV.
const ATTEMPTS: u32 = 3;

/// Reserves `price` for call `id` of `key_id` in `tenant_id`'s wallet: whether it did (a refusal
/// or an unreachable wallet is the call's `InsufficientCredit` failure, as D1's refusal was).
pub(crate) async fn reserve(
    env: &Env,
    tenant_id: &str,
    key_id: &str,
    id: &str,
    price: u64,
) -> bool {
    match WalletClient::new(env, tenant_id)
        .reserve_call(id, key_id, price)
        .await
    {
        Ok(_) => true,
        Err(WalletError::Refused(_)) => false,
        Err(WalletError::Failed(e)) => {
            worker::console_error!("plugin call {id}: wallet unavailable for its price: {e}");
            false
        }
    }
}

/// Charges call `c` (its `cost`: the price, or 0 for a failed call) in the wallet with its row,
/// retried; kept in KV for the scheduled handler when every attempt fails (the price stays
/// held meanwhile, as in D1).
pub(crate) async fn record(env: &Env, c: &CallRecord<'_>) {
    let row = CallRow::from(c);
    for attempt in 1..=ATTEMPTS {
        match charge_row(env, &row).await {
            Ok(()) => return,
            Err(e) => {
                worker::console_error!("charging plugin call {} failed ({attempt}): {e}", row.id)
            }
        }
    }
    let json = serde_json::to_string(&row).unwrap_or_default();
    crate::edge::store::pending::keep_pending_call(env, &row.id, &json).await;
}

/// One charge of a call row in its tenant's wallet (idempotent by call id): also the scheduled
/// handler's replay.
pub(crate) async fn charge_row(env: &Env, row: &CallRow) -> Result<(), String> {
    WalletClient::new(env, &row.tenant_id)
        .charge_call(&row.id, &row.key_id, row.cost, call_columns(row))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The `plugin_calls` columns of a call row (the wallet fills in the charge columns).
fn call_columns(row: &CallRow) -> Map<String, Value> {
    match serde_json::to_value(row) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_row_becomes_the_plugin_calls_columns() {
        let row = CallRow {
            id: "req_1.c2".into(),
            request_id: "req_1".into(),
            tenant_id: "ten".into(),
            key_id: "key".into(),
            session_id: "s".into(),
            plugin_id: "notes".into(),
            api: "add".into(),
            mode: "tool".into(),
            status: "ok".into(),
            http_status: Some(200),
            latency_ms: 3,
            cost: 40,
            created_at: 9,
        };
        let map = call_columns(&row);
        for column in map.keys() {
            assert!(
                crate::edge::store::wallet::CALL_COLUMNS.contains(&column.as_str()),
                "{column} is not a plugin_calls column"
            );
        }
        assert_eq!(map["id"], "req_1.c2");
        assert_eq!(map["cost"], 40);
        assert_eq!(map["http_status"], 200);
    }
}
