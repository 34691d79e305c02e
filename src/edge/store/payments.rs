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
