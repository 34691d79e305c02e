//! Stripe Checkout payments (schema/0010_console.sql): one row per Checkout Session and event id,
//! whose trigger writes the tenant's `credit_ledger` row.

use serde_json::Value;
use worker::D1Database;

use crate::core::console::CheckoutCredit;
use crate::core::error::GatewayError;
use crate::edge::platform::d1 as db;

/// Records a paid Checkout Session once: the number of rows D1 changed (the trigger's writes
/// included), 0 when this session or event was recorded before or the tenant does not exist.
pub async fn record_checkout(
    database: &D1Database,
    credit: &CheckoutCredit,
    ledger_id: &str,
    now: u64,
) -> Result<usize, GatewayError> {
    db::run(
        database,
        "INSERT INTO stripe_payments
           (session_id, event_id, tenant_id, amount, amount_paid, currency, ledger_id, created_at)
         SELECT ?1, ?2, id, ?4, ?5, ?6, ?7, ?8 FROM tenants WHERE id = ?3
         ON CONFLICT DO NOTHING",
        &[
            credit.session_id.as_str().into(),
            credit.event_id.as_str().into(),
            credit.tenant_id.as_str().into(),
            credit.amount.into(),
            credit.amount_paid.into(),
            credit.currency.as_str().into(),
            ledger_id.into(),
            now.into(),
        ],
    )
    .await
}

/// The ledger row of an earlier recording of this session or event, if any.
pub async fn recorded_checkout(
    database: &D1Database,
    credit: &CheckoutCredit,
) -> Result<Option<Value>, GatewayError> {
    db::first(
        database,
        "SELECT ledger_id FROM stripe_payments WHERE session_id = ?1 OR event_id = ?2",
        &[
            credit.session_id.as_str().into(),
            credit.event_id.as_str().into(),
        ],
    )
    .await
}

/// A Checkout Session's payment row as a wallet credit sees it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct WalletPayment {
    pub session_id: String,
    pub tenant_id: String,
    pub amount: u64,
    pub ledger_id: String,
    pub via_wallet: u64,
    /// Set once the wallet took the credit.
    pub wallet_credited_at: Option<u64>,
}

/// Records a paid Checkout Session once like [`record_checkout`], without crediting D1
/// (`via_wallet = 1`: the caller credits the wallet, then [`mark_payment_credited`]). Whether this
/// delivery inserted the row.
pub async fn record_checkout_for_wallet(
    database: &D1Database,
    credit: &CheckoutCredit,
    ledger_id: &str,
    now: u64,
) -> Result<bool, GatewayError> {
    let changes = db::run(
        database,
        "INSERT INTO stripe_payments
           (session_id, event_id, tenant_id, amount, amount_paid, currency, ledger_id, created_at,
            via_wallet)
         SELECT ?1, ?2, id, ?4, ?5, ?6, ?7, ?8, 1 FROM tenants WHERE id = ?3
         ON CONFLICT DO NOTHING",
        &[
            credit.session_id.as_str().into(),
            credit.event_id.as_str().into(),
            credit.tenant_id.as_str().into(),
            credit.amount.into(),
            credit.amount_paid.into(),
            credit.currency.as_str().into(),
            ledger_id.into(),
            now.into(),
        ],
    )
    .await?;
    Ok(changes > 0)
}

/// The payment row of this session (or event), if recorded.
pub async fn wallet_payment(
    database: &D1Database,
    credit: &CheckoutCredit,
) -> Result<Option<WalletPayment>, GatewayError> {
    db::first(
        database,
        "SELECT session_id, tenant_id, amount, ledger_id, via_wallet, wallet_credited_at
         FROM stripe_payments WHERE session_id = ?1 OR event_id = ?2",
        &[
            credit.session_id.as_str().into(),
            credit.event_id.as_str().into(),
        ],
    )
    .await
}

/// Records that the wallet took the session's credit.
pub async fn mark_payment_credited(
    database: &D1Database,
    session_id: &str,
    now: u64,
) -> Result<(), GatewayError> {
    db::run(
        database,
        "UPDATE stripe_payments SET wallet_credited_at = ?2
         WHERE session_id = ?1 AND via_wallet = 1 AND wallet_credited_at IS NULL",
        &[session_id.into(), now.into()],
    )
    .await?;
    Ok(())
}
