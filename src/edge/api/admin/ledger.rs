//! A tenant's credit and ledger (`/admin/tenants/{id}/credit`, `/admin/tenants/{id}/ledger`)
//! and one request's usage row (`/admin/requests/{id}`).

use serde::Deserialize;
use serde_json::json;
use worker::{D1Database, Env, Request, Response};

use super::{not_found, to_i64};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::wallet::ledger::{self, LedgerQuery};
use crate::edge::api::http;
use crate::edge::platform::clock::now_ms;
use crate::edge::store;
use crate::edge::store::wallet::client::WalletClient;

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

/// `GET /admin/tenants/{id}/ledger[?limit=&cursor=]`: the tenant's ledger, newest first — with
/// `WALLETS`, the wallet's entries, then D1's history from before the tenant moved into its
/// wallet (`core::wallet::ledger`: the seam, the cursor, the entry shape).
pub async fn list(
    req: &Request,
    env: &Env,
    db: &D1Database,
    id: &str,
) -> Result<Response, GatewayError> {
    let pairs: Vec<(String, String)> = req
        .url()
        .map_err(|e| GatewayError::invalid_request(format!("Invalid URL: {e}")))?
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let q = LedgerQuery::parse(&pairs).map_err(|(p, m)| GatewayError::invalid_param(&p, m))?;
    if !store::tenants::exists(db, id).await? {
        return Err(not_found("tenant", id));
    }
    let wallet = if q.asks_wallet() && super::wallet::wallets_on(env) {
        WalletClient::new(env, id)
            .ledger(q.wallet_before(), q.limit + 1)
            .await
            .map_err(super::wallet::wallet_error)?
            .entries
    } else {
        Vec::new()
    };
    let wanted = q.d1_wanted(wallet.len());
    let d1 = if wanted > 0 {
        store::tenants::ledger(db, id, q.d1_after(), wanted).await?
    } else {
        Vec::new()
    };
    let page = ledger::assemble(&q, wallet, d1);
    let data: Vec<_> = page.data.iter().map(|e| e.to_json(id)).collect();
    http::json(
        200,
        &json!({"object": "list", "data": data, "has_more": page.has_more,
                "next_cursor": page.next_cursor}),
    )
}

/// `GET /admin/requests/{id}`: one request's usage row.
pub async fn request(db: &D1Database, id: &str) -> Result<Response, GatewayError> {
    match store::ledger::usage_row(db, id).await? {
        Some(r) => http::json(200, &r),
        None => Err(not_found("request", id)),
    }
}
