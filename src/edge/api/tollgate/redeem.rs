//! `POST /v1/redeem`: a redemption code credits the caller's tenant once.

use serde::Deserialize;
use serde_json::json;
use worker::{Env, Request, Response};

use crate::core::billing::codes::{code_digest, normalize_code};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::ids::prefixed_id;
use crate::edge::api::admin::billing::parse;
use crate::edge::api::http;
use crate::edge::gateway::auth;
use crate::edge::gateway::wallet::wallet_error;
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::d1 as db;
use crate::edge::store::wallet::client::{WalletClient, WalletError};
use crate::edge::store::{self, billing};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Redeem {
    code: String,
}

/// `POST /v1/redeem` `{code}`: credits the caller's tenant once per code. One conditional UPDATE
/// claims the code; its trigger writes the credit_ledger row, whose trigger moves the balance.
/// With `WALLETS` on the credit goes to the tenant's wallet instead ([`redeem_in_wallet`]).
pub async fn redeem(mut req: Request, env: &Env) -> Result<Response, GatewayError> {
    let caller = auth::authenticate(&req, env).await?;
    let body = http::read_body(&mut req, 4096).await?;
    let redeem: Redeem = parse(&body)?;
    let invalid = || {
        GatewayError::invalid_param("code", "This redemption code is not valid.")
            .with_code("invalid_redemption_code")
    };
    let normalized = normalize_code(&redeem.code).ok_or_else(invalid)?;
    let digest = code_digest(&auth::pepper(env)?, &normalized);
    let database = db::database(env)?;
    let db = &database;
    if !store::keys::key_active(db, &caller.key_id).await? {
        return Err(GatewayError::new(
            ErrorKind::InvalidApiKey,
            "Incorrect API key provided: this key has been revoked.",
        ));
    }
    let now = now_ms();
    let ledger_id = prefixed_id("cred", now);
    if crate::edge::platform::env::settings(env).wallets {
        return redeem_in_wallet(env, db, &caller.tenant_id, &digest, &ledger_id, now).await;
    }
    let claimed = billing::claim_code(db, &digest, now, &caller.tenant_id, &ledger_id).await?;
    let Some(claimed) = claimed else {
        return Err(unusable(db, &digest, now).await?);
    };
    let balance = billing::tenant_balance(db, &caller.tenant_id).await?;
    http::json(
        200,
        &json!({"object": "redemption", "amount": claimed["amount"], "ledger_id": ledger_id,
                "balance": balance.map(|b| b["balance"].clone())}),
    )
}

/// With `WALLETS` on: the code's single use stays in D1 (the claim, `via_wallet = 1`, credits
/// nothing there), the credit goes to the tenant's wallet with idempotency key
/// `redeem:<digest>`, then the claim is marked credited. A redemption by the same tenant of a code
/// it claimed whose credit had not landed (a crash or an unreachable wallet in between) completes
/// that credit — the wallet's key makes sure it lands once —; anyone else gets 409
/// `redemption_code_used`. A credit the wallet refuses (the balance would pass 2⁵³ − 1) gives the
/// code back unused.
async fn redeem_in_wallet(
    env: &Env,
    db: &worker::D1Database,
    tenant_id: &str,
    digest: &str,
    ledger_id: &str,
    now: u64,
) -> Result<Response, GatewayError> {
    let claimed =
        match billing::claim_code_for_wallet(db, digest, now, tenant_id, ledger_id).await? {
            Some(c) => c,
            None => match billing::wallet_code(db, digest, tenant_id).await? {
                Some(c) if c.wallet_credited_at.is_none() => c,
                _ => return Err(unusable(db, digest, now).await?),
            },
        };
    let amount = i64::try_from(claimed.amount)
        .map_err(|_| GatewayError::internal("redemption code amount out of range"))?;
    let reason = format!("redemption code {}", claimed.batch_id);
    if crate::edge::platform::env::settings(env).fault("wallet_credit") {
        // Test-only (TOLLGATE_FAULTS): the worker dies between the claim and the credit.
        return Err(wallet_error(WalletError::Failed(
            "injected fault wallet_credit (TOLLGATE_FAULTS)".into(),
        )));
    }
    let entry = match WalletClient::new(env, tenant_id)
        .adjust(amount, &format!("redeem:{digest}"), Some(&reason))
        .await
    {
        Ok(entry) => entry,
        Err(WalletError::Refused(refusal)) => {
            billing::unclaim_wallet_code(db, digest, tenant_id).await?;
            return Err(refusal.to_error());
        }
        // The claim stays, its credit pending: redeeming the code again completes it.
        Err(e) => return Err(wallet_error(e)),
    };
    billing::mark_code_credited(db, digest, now).await?;
    http::json(
        200,
        &json!({"object": "redemption", "amount": claimed.amount,
                "ledger_id": claimed.ledger_id.as_deref().unwrap_or(ledger_id),
                "balance": entry.balance}),
    )
}

/// Why a code could not be claimed: used, expired or unknown.
async fn unusable(
    db: &worker::D1Database,
    digest: &str,
    now: u64,
) -> Result<GatewayError, GatewayError> {
    let invalid = || {
        GatewayError::invalid_param("code", "This redemption code is not valid.")
            .with_code("invalid_redemption_code")
    };
    let state = billing::code_state(db, digest).await?;
    Ok(match state {
        Some(s) if s.redeemed_at.is_some() => GatewayError::new(
            ErrorKind::Conflict,
            "This redemption code has already been used.",
        )
        .with_code("redemption_code_used"),
        Some(s) if s.expires_at.is_some_and(|e| e <= now) => {
            GatewayError::invalid_param("code", "This redemption code has expired.")
                .with_code("redemption_code_expired")
        }
        _ => invalid(),
    })
}
