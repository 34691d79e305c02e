//! `GET /v1/balance`.

use serde_json::json;
use worker::{Env, Request, Response};

use crate::core::error::{ErrorKind, GatewayError};
use crate::edge::api::http;
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::d1 as db;
use crate::edge::store;

/// `GET /v1/balance`: the tenant's balance, credit held by requests in flight, and this month.
pub async fn balance(req: &Request, env: &Env) -> Result<Response, GatewayError> {
    let caller = crate::edge::gateway::auth::live_caller(req, env).await?;
    let month = crate::core::alerts::Observation::month_of(now_ms());
    let row = store::reports::balance(&db::database(env)?, &caller.tenant_id, &month).await?;
    let mut row = row.ok_or_else(|| GatewayError::new(ErrorKind::NotFound, "No such tenant."))?;
    if crate::edge::platform::env::settings(env).wallets {
        // The wallet holds the money once it took the tenant: exact at any moment.
        let view = crate::edge::store::wallet::client::WalletClient::new(env, &caller.tenant_id)
            .inspect()
            .await
            .map_err(crate::edge::gateway::wallet::wallet_error)?;
        if let Some(b) = view.balance {
            row.balance = b.balance;
            row.debt = b.debt;
            row.reserved = b.reserved;
        }
    }
    let display = |micros: u64| format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
    http::json(
        200,
        &json!({
            "object": "balance",
            "tenant_id": caller.tenant_id,
            "balance": row.balance,
            "debt": row.debt,
            "reserved": row.reserved,
            "total": row.balance + row.reserved,
            "balance_display": display(row.balance),
            "currency": {
                "unit": "micro",
                "micro_units_per_unit": 1_000_000,
                "explanation": "Amounts are integers in micro-units of the operator's currency: \
                    1,000,000 micro-units = 1.00. `balance` is spendable now; `reserved` is held \
                    for requests in flight and returns to the balance, less their cost, when they \
                    finish; `total` = balance + reserved. `debt` is what earlier requests cost \
                    beyond what could be taken; while it is above 0 new requests are refused, and \
                    credit pays it first.",
            },
            "month": {
                "period": month,
                "requests": row.month_requests,
                "prompt_tokens": row.month_prompt_tokens,
                "completion_tokens": row.month_completion_tokens,
                "total_tokens": row.month_prompt_tokens + row.month_completion_tokens,
                "cost": row.month_cost,
            },
        }),
    )
}
