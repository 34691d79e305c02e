//! The hot path on the tenant's wallet (`WALLETS`, docs/money.md "Wallets"): a chat request (and
//! each plugin round) reserves in its tenant's Durable Object before the upstream call and settles
//! there from `waitUntil`; the wallet keeps the usage row in its outbox (same transaction as the
//! charge) and exports it to D1. No D1 statement on the way. The tenant moves into its wallet on
//! its first money command (the wallet's claim, schema/0011).

use worker::{Env, Response};

use super::auth::Caller;
use super::reserve::Count;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::wallet::extend::ExtendRequest;
use crate::core::wallet::figures::Figures;
use crate::core::wallet::rate::RateHeaders;
use crate::core::wallet::ReserveRequest;
use crate::edge::store::ledger::UsageRow;
use crate::edge::store::wallet::client::{WalletClient, WalletError};

/// Reserves `count` for the call `id` in the caller's wallet → the caller's rate-limit header
/// values. A refusal becomes the client's error (401, 402 `insufficient_quota` or
/// `budget_exceeded`, 429 `rate_limit_exceeded` with retry-after); a wallet that cannot be
/// reached is a 503 (nothing was reserved or decided).
pub(crate) async fn reserve(
    env: &Env,
    id: &str,
    caller: &Caller,
    count: &Count,
) -> Result<RateHeaders, GatewayError> {
    let request = ReserveRequest {
        id: id.to_string(),
        key_id: caller.key_id.clone(),
        amount: count.reserved,
        tokens: count.local_prompt_tokens.saturating_add(count.max_output),
    };
    match WalletClient::new(env, &caller.tenant_id)
        .reserve(request)
        .await
    {
        Ok(reserved) => Ok(reserved.headers),
        Err(e) => Err(wallet_error(e)),
    }
}

/// A wallet's answer as the client's error.
pub(crate) fn wallet_error(e: WalletError) -> GatewayError {
    match e {
        WalletError::Refused(refusal) => refusal.to_error(),
        WalletError::Failed(message) => {
            worker::console_error!("wallet: {message}");
            GatewayError::new(
                ErrorKind::Unavailable,
                "The account's wallet is temporarily unavailable. Retry shortly.",
            )
        }
    }
}

/// Settles `row` in the tenant's wallet: the charge and the usage row in one wallet transaction
/// (idempotent by request id: a retry after an unseen success changes nothing).
pub(crate) async fn settle(env: &Env, row: &UsageRow) -> Result<(), String> {
    settle_observed(env, row, 0).await.map(|_| ())
}

/// [`settle`], with the alert figures before and after the charge (`None` when the wallet had
/// settled this request before) and the session copy's lifetime for the export.
pub(crate) async fn settle_observed(
    env: &Env,
    row: &UsageRow,
    session_ttl_seconds: u64,
) -> Result<Option<(Figures, Figures)>, String> {
    let map = crate::edge::store::wallet::outbox_row(row, session_ttl_seconds)?;
    let tokens = row.prompt_tokens.saturating_add(row.completion_tokens);
    WalletClient::new(env, &row.tenant_id)
        .settle_observed(&row.request_id, &row.key_id, row.cost, tokens, map)
        .await
        .map(|o| o.figures)
        .map_err(|e| e.to_string())
}

/// Grows the wallet reservation of request `id` by `amount` (its `number`-th extension, so a
/// retried call takes nothing twice) → whether the stream may go on. A refusal (no credit, a
/// budget, a revoked key) or a reservation no longer open is `Ok(false)`: the stream stops at its
/// cover, as on D1.
pub(crate) async fn extend(
    env: &Env,
    tenant_id: &str,
    id: &str,
    number: u32,
    amount: u64,
) -> Result<bool, String> {
    let request = ExtendRequest {
        id: id.to_string(),
        number,
        amount,
    };
    match WalletClient::new(env, tenant_id).extend(request).await {
        Ok(extension) => Ok(extension.granted()),
        Err(WalletError::Refused(_)) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// Puts the caller's x-ratelimit-* headers on `resp` (none without rate limits).
pub(crate) fn put_rate_headers(resp: &mut Response, headers: &RateHeaders) {
    for (name, value) in headers.pairs() {
        let _ = resp.headers_mut().set(name, &value);
    }
}
