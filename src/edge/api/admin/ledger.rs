//! A tenant's credit and ledger (`/admin/tenants/{id}/credit`, `/admin/tenants/{id}/ledger`)
//! and one request's usage row (`/admin/requests/{id}`).

use serde::Deserialize;
use serde_json::json;
use worker::{D1Database, Env, Response};

use super::{not_found, to_i64};
use crate::core::error::{ErrorKind, GatewayError};
use crate::edge::api::http;
use crate::edge::platform::clock::now_ms;
use crate::edge::store;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credit {
    amount: i64,
    reason: Option<String>,
}

pub async fn add_credit(
    db: &D1Database,
    env: &Env,
    id: &str,
    credit: Credit,
) -> Result<Response, GatewayError> {
    if credit.amount == 0 {
        return Err(GatewayError::invalid_param(
            "amount",
            "`amount` must not be 0.",
        ));
    }
    let amount = to_i64("amount", credit.amount.abs(), 1)? * credit.amount.signum();
    if super::wallet::wallets_on(env) {
        return super::wallet::adjust(env, db, id, amount, credit.reason.as_deref()).await;
    }
    let written =
        store::tenants::add_credit(db, id, amount, credit.reason.as_deref(), now_ms()).await?;
    if !written {
        let exists = store::tenants::exists(db, id).await?;
        return Err(match exists {
            false => not_found("tenant", id),
            true if amount < 0 => GatewayError::new(
                ErrorKind::Conflict,
                "The debit is larger than the tenant's available balance.",
            ),
            true => GatewayError::new(
                ErrorKind::Conflict,
                "The credit would take the balance above 9007199254740991 micro-units.",
            ),
        });
    }
    super::tenants::response(db, id, 200).await
}

pub async fn list(db: &D1Database, id: &str) -> Result<Response, GatewayError> {
    let rows = store::tenants::ledger(db, id).await?;
    http::json(200, &json!({"object": "list", "data": rows}))
}

/// `GET /admin/requests/{id}`: one request's usage row.
pub async fn request(db: &D1Database, id: &str) -> Result<Response, GatewayError> {
    match store::ledger::usage_row(db, id).await? {
        Some(r) => http::json(200, &r),
        None => Err(not_found("request", id)),
    }
}
