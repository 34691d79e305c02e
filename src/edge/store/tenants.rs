//! Tenants: their rows with balance and reservations, credits and debits (the ledger trigger
//! moves the balance), and a tenant's key ids.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use worker::D1Database;

use crate::core::error::GatewayError;
use crate::core::ids::prefixed_id;
use crate::edge::platform::d1 as db;

/// A tenant as the admin API shows it.
#[derive(Serialize, Deserialize)]
pub struct TenantRow {
    pub id: String,
    pub name: String,
    pub balance: i64,
    pub reserved: i64,
    pub created_at: u64,
    pub disabled_at: Option<u64>,
}

/// `balance`: D1's, or once a wallet took the tenant (D1's froze at the claim) the balance the
/// wallet last recorded in `wallet_claims` (at its last credit, debit or export, schema/0016:
/// spendable + what its open reservations hold); D1's frozen one until the wallet records one.
const TENANT_SELECT: &str = "SELECT t.id, t.name,
    CASE WHEN c.balance IS NOT NULL THEN c.balance ELSE t.balance END AS balance,
    t.created_at, t.disabled_at,
    (SELECT COALESCE(SUM(r.amount), 0) FROM reservations r WHERE r.tenant_id = t.id) AS reserved
    FROM tenants t LEFT JOIN wallet_claims c ON c.tenant_id = t.id";

/// Creates a tenant (id from `now`) with an optional initial credit, in one batch. Returns its id.
pub async fn create(
    db: &D1Database,
    name: &str,
    credit: i64,
    now: u64,
) -> Result<String, GatewayError> {
    let id = prefixed_id("ten", now);
    let mut statements = vec![db::statement(
        db,
        "INSERT INTO tenants (id, name, balance, created_at) VALUES (?1, ?2, 0, ?3)",
        &[id.as_str().into(), name.into(), now.into()],
    )?];
    if credit > 0 {
        statements.push(db::statement(
            db,
            "INSERT INTO credit_ledger (id, tenant_id, amount, reason, created_at)
             VALUES (?1, ?2, ?3, 'initial credit', ?4)",
            &[
                prefixed_id("cred", now).as_str().into(),
                id.as_str().into(),
                credit.into(),
                now.into(),
            ],
        )?);
    }
    db::batch(db, statements).await?;
    Ok(id)
}

pub async fn get(db: &D1Database, id: &str) -> Result<Option<TenantRow>, GatewayError> {
    db::first(
        db,
        &format!("{TENANT_SELECT} WHERE t.id = ?1"),
        &[id.into()],
    )
    .await
}

pub async fn list(db: &D1Database) -> Result<Vec<TenantRow>, GatewayError> {
    db::all(db, &format!("{TENANT_SELECT} ORDER BY t.id"), &[]).await
}

/// Whether the tenant exists.
pub async fn exists(db: &D1Database, id: &str) -> Result<bool, GatewayError> {
    let row: Option<Value> =
        db::first(db, "SELECT id FROM tenants WHERE id = ?1", &[id.into()]).await?;
    Ok(row.is_some())
}

pub async fn rename(db: &D1Database, id: &str, name: &str) -> Result<(), GatewayError> {
    db::run(
        db,
        "UPDATE tenants SET name = ?2 WHERE id = ?1",
        &[id.into(), name.into()],
    )
    .await?;
    Ok(())
}

/// Disables the tenant (keeping the first time it was) or enables it.
pub async fn set_disabled(
    db: &D1Database,
    id: &str,
    disabled: bool,
    now: u64,
) -> Result<(), GatewayError> {
    let sql = if disabled {
        "UPDATE tenants SET disabled_at = COALESCE(disabled_at, ?2) WHERE id = ?1"
    } else {
        "UPDATE tenants SET disabled_at = NULL WHERE id = ?1 AND ?2 IS NOT NULL"
    };
    db::run(db, sql, &[id.into(), now.into()]).await?;
    Ok(())
}

/// The ids of every key of the tenant.
pub async fn key_ids(db: &D1Database, id: &str) -> Result<Vec<String>, GatewayError> {
    #[derive(Deserialize)]
    struct KeyId {
        id: String,
    }
    let keys: Vec<KeyId> = db::all(
        db,
        "SELECT id FROM api_keys WHERE tenant_id = ?1",
        &[id.into()],
    )
    .await?;
    Ok(keys.into_iter().map(|k| k.id).collect())
}

/// Adds `amount` (negative: a debit) to the tenant's ledger, in one statement: the ledger row
/// exists only if the balance stays within 0..=2^53-1 (exact in D1's numbers), and its trigger
/// moves the balance (paying debt first, schema/0007). Returns whether it was written.
pub async fn add_credit(
    db: &D1Database,
    id: &str,
    amount: i64,
    reason: Option<&str>,
    now: u64,
) -> Result<bool, GatewayError> {
    let changed = db::run(
        db,
        "INSERT INTO credit_ledger (id, tenant_id, amount, reason, created_at)
         SELECT ?1, id, ?3, ?4, ?5 FROM tenants WHERE id = ?2 AND balance + ?3 >= 0
           AND balance + ?3 <= 9007199254740991",
        &[
            prefixed_id("cred", now).as_str().into(),
            id.into(),
            amount.into(),
            reason.into(),
            now.into(),
        ],
    )
    .await?;
    Ok(changed > 0)
}

/// The tenant's D1 ledger rows below `after` (`(created_at, id)`; from the newest when `None`),
/// newest first, at most `limit` (docs/money.md "Ledger").
pub async fn ledger(
    db: &D1Database,
    id: &str,
    after: Option<(u64, &str)>,
    limit: u32,
) -> Result<Vec<crate::core::wallet::ledger::D1Row>, GatewayError> {
    const COLUMNS: &str = "SELECT id, amount, debt_paid, reason, created_at FROM credit_ledger";
    match after {
        None => {
            db::all(
                db,
                &format!("{COLUMNS} WHERE tenant_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2"),
                &[id.into(), u64::from(limit).into()],
            )
            .await
        }
        Some((at, last)) => {
            db::all(
                db,
                &format!(
                    "{COLUMNS} WHERE tenant_id = ?1 AND (created_at < ?2 OR (created_at = ?2 AND id < ?3))
                     ORDER BY created_at DESC, id DESC LIMIT ?4"
                ),
                &[id.into(), at.into(), last.into(), u64::from(limit).into()],
            )
            .await
        }
    }
}
