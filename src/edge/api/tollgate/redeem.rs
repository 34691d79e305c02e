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
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::d1 as db;
use crate::edge::store::{self, billing};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Redeem {
    code: String,
}

/// `POST /v1/redeem` `{code}`: credits the caller's tenant once per code. One conditional UPDATE
/// claims the code; its trigger writes the credit_ledger row, whose trigger moves the balance.
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
    let claimed = billing::claim_code(db, &digest, now, &caller.tenant_id, &ledger_id).await?;
    let Some(claimed) = claimed else {
        let state = billing::code_state(db, &digest).await?;
        return Err(match state {
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
        });
    };
    let balance = billing::tenant_balance(db, &caller.tenant_id).await?;
    http::json(
        200,
        &json!({"object": "redemption", "amount": claimed["amount"], "ledger_id": ledger_id,
                "balance": balance.map(|b| b["balance"].clone())}),
    )
}
