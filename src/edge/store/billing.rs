//! Billing configuration and credits: price versions, plans and their assignment, tenant
//! multipliers, the billing state of a tenant, redemption codes.

use serde::Deserialize;
use serde_json::Value;
use worker::D1Database;

use crate::core::billing::tiers::TierFields;
use crate::core::error::GatewayError;
use crate::edge::platform::d1 as db;

/// The token prices of one version, micro-units per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceSet {
    pub input: u64,
    pub cached_input: Option<u64>,
    pub output: u64,
    pub reasoning: Option<u64>,
    /// Cache-write prices and the long-context tier (schema/0013), versioned with the others.
    pub tiers: TierFields,
}

/// After `PUT /admin/models/{model}` wrote the model: makes `prices` its current price version,
/// creating a new version only if they differ from the current one (history is never
/// rewritten). One batch: insert-if-different, then point the model at the newest version.
/// Returns the current version id.
pub async fn record_price_version(
    db: &D1Database,
    model: &str,
    prices: PriceSet,
    now: u64,
) -> Result<u64, GatewayError> {
    let t = &prices.tiers;
    let insert = db::statement(
        db,
        "INSERT INTO price_versions (model, input_price, cached_input_price, output_price,
           reasoning_price, created_at, cache_write_5m_price, cache_write_1h_price,
           long_context_threshold, long_input_price, long_cached_input_price, long_output_price,
           long_reasoning_price, long_cache_write_5m_price, long_cache_write_1h_price)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15
         WHERE NOT EXISTS (
           SELECT 1 FROM models m JOIN price_versions v ON v.id = m.price_version
           WHERE m.name = ?1 AND v.model = ?1 AND v.input_price = ?2
             AND v.cached_input_price IS ?3 AND v.output_price = ?4 AND v.reasoning_price IS ?5
             AND v.cache_write_5m_price IS ?7 AND v.cache_write_1h_price IS ?8
             AND v.long_context_threshold IS ?9 AND v.long_input_price IS ?10
             AND v.long_cached_input_price IS ?11 AND v.long_output_price IS ?12
             AND v.long_reasoning_price IS ?13 AND v.long_cache_write_5m_price IS ?14
             AND v.long_cache_write_1h_price IS ?15)",
        &[
            model.into(),
            prices.input.into(),
            prices.cached_input.into(),
            prices.output.into(),
            prices.reasoning.into(),
            now.into(),
            t.cache_write_5m_price.into(),
            t.cache_write_1h_price.into(),
            t.long_context_threshold.into(),
            t.long_input_price.into(),
            t.long_cached_input_price.into(),
            t.long_output_price.into(),
            t.long_reasoning_price.into(),
            t.long_cache_write_5m_price.into(),
            t.long_cache_write_1h_price.into(),
        ],
    )?;
    let point = db::statement(
        db,
        "UPDATE models SET price_version = (SELECT MAX(id) FROM price_versions WHERE model = ?1)
         WHERE name = ?1 RETURNING price_version",
        &[model.into()],
    )?;
    let results = db::batch(db, vec![insert, point]).await?;
    results
        .get(1)
        .and_then(|r| r.results::<Value>().ok())
        .and_then(|rows| rows.first().and_then(|r| r["price_version"].as_u64()))
        .ok_or_else(|| GatewayError::internal(format!("model `{model}` has no price version")))
}

/// The model's current price version (`{"price_version": …}`), if the model exists.
pub async fn current_price_version(
    db: &D1Database,
    model: &str,
) -> Result<Option<Value>, GatewayError> {
    db::first(
        db,
        "SELECT price_version FROM models WHERE name = ?1",
        &[model.into()],
    )
    .await
}

/// Every price version of the model, newest first.
pub async fn price_versions(db: &D1Database, model: &str) -> Result<Vec<Value>, GatewayError> {
    db::all(
        db,
        "SELECT id AS version, model, input_price, cached_input_price, output_price,
           reasoning_price, cache_write_5m_price, cache_write_1h_price, long_context_threshold,
           long_input_price, long_cached_input_price, long_output_price, long_reasoning_price,
           long_cache_write_5m_price, long_cache_write_1h_price, created_at
         FROM price_versions WHERE model = ?1 ORDER BY id DESC",
        &[model.into()],
    )
    .await
}

pub async fn put_plan(
    db: &D1Database,
    id: &str,
    name: &str,
    allowance: u64,
    now: u64,
) -> Result<(), GatewayError> {
    db::run(
        db,
        "INSERT INTO plans (id, name, allowance, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, allowance = excluded.allowance,
           updated_at = excluded.updated_at",
        &[id.into(), name.into(), allowance.into(), now.into()],
    )
    .await?;
    Ok(())
}

const PLAN_SELECT: &str = "SELECT id, name, allowance, created_at, updated_at,
           (SELECT COUNT(*) FROM tenants t WHERE t.plan_id = plans.id) AS tenants
         FROM plans";

/// A plan with the number of tenants on it.
pub async fn plan(db: &D1Database, id: &str) -> Result<Option<Value>, GatewayError> {
    db::first(db, &format!("{PLAN_SELECT} WHERE id = ?1"), &[id.into()]).await
}

pub async fn plans(db: &D1Database) -> Result<Vec<Value>, GatewayError> {
    db::all(db, &format!("{PLAN_SELECT} ORDER BY id"), &[]).await
}

/// Deletes the plan if no tenant is on it; whether it did.
pub async fn delete_unused_plan(db: &D1Database, id: &str) -> Result<bool, GatewayError> {
    let deleted: Option<Value> = db::first(
        db,
        "DELETE FROM plans WHERE id = ?1
           AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.plan_id = ?1) RETURNING id",
        &[id.into()],
    )
    .await?;
    Ok(deleted.is_some())
}

pub async fn plan_exists(db: &D1Database, id: &str) -> Result<bool, GatewayError> {
    let row: Option<Value> =
        db::first(db, "SELECT id FROM plans WHERE id = ?1", &[id.into()]).await?;
    Ok(row.is_some())
}

/// Puts the tenant on `plan` for the period starting `period` (its allowance less what requests
/// in flight hold of this period's allowance), or takes it off any plan (`None`). `false` when
/// the tenant or the plan does not exist.
pub async fn assign_plan(
    db: &D1Database,
    tenant_id: &str,
    plan: Option<&str>,
    period: u64,
) -> Result<bool, GatewayError> {
    let changed: Option<Value> = match plan {
        Some(plan) => {
            db::first(
                db,
                "UPDATE tenants SET plan_id = p.id,
                   allowance_remaining = MAX(p.allowance - (SELECT COALESCE(SUM(r.allowance_amount), 0)
                     FROM reservations r WHERE r.tenant_id = ?1 AND r.allowance_period = ?3), 0),
                   allowance_period = ?3
                 FROM (SELECT id, allowance FROM plans WHERE id = ?2) AS p
                 WHERE tenants.id = ?1 RETURNING tenants.id",
                &[tenant_id.into(), plan.into(), period.into()],
            )
            .await?
        }
        None => db::first(
            db,
            "UPDATE tenants SET plan_id = NULL, allowance_remaining = 0, allowance_period = NULL
                 WHERE id = ?1 RETURNING id",
            &[tenant_id.into()],
        )
        .await?,
    };
    Ok(changed.is_some())
}

/// Sets the tenant's price multiplier; `false` when there is no such tenant.
pub async fn set_multiplier(
    db: &D1Database,
    tenant_id: &str,
    bps: u64,
) -> Result<bool, GatewayError> {
    let changed: Option<Value> = db::first(
        db,
        "UPDATE tenants SET price_multiplier_bps = ?2 WHERE id = ?1 RETURNING id",
        &[tenant_id.into(), bps.into()],
    )
    .await?;
    Ok(changed.is_some())
}

/// A tenant's billing state: balance, debt, reservations, plan and allowance, multiplier.
pub async fn tenant_billing(
    db: &D1Database,
    tenant_id: &str,
) -> Result<Option<Value>, GatewayError> {
    db::first(
        db,
        "SELECT t.id, t.name, t.balance, t.debt, t.price_multiplier_bps, t.plan_id,
           p.allowance AS plan_allowance, t.allowance_remaining, t.allowance_period,
           (SELECT COALESCE(SUM(r.amount), 0) FROM reservations r WHERE r.tenant_id = t.id) AS reserved,
           (SELECT COALESCE(SUM(r.allowance_amount), 0) FROM reservations r WHERE r.tenant_id = t.id)
             AS allowance_reserved
         FROM tenants t LEFT JOIN plans p ON p.id = t.plan_id WHERE t.id = ?1",
        &[tenant_id.into()],
    )
    .await
}

/// Stores a batch of redemption codes by digest, all or none.
pub async fn insert_codes(
    db: &D1Database,
    batch_id: &str,
    amount: u64,
    expires_at: Option<u64>,
    now: u64,
    digests: &[String],
) -> Result<(), GatewayError> {
    // D1 binds at most 100 parameters per statement: 4 shared ones and up to 96 digests each.
    // All statements run in one batch, one transaction: every code exists, or none does.
    let mut statements = Vec::new();
    for group in digests.chunks(96) {
        let values: Vec<String> = (0..group.len())
            .map(|i| format!("(?{}, ?1, ?2, ?3, ?4)", i + 5))
            .collect();
        let mut args = vec![
            batch_id.into(),
            amount.into(),
            expires_at.into(),
            now.into(),
        ];
        args.extend(group.iter().map(db::Arg::from));
        statements.push(db::statement(
            db,
            &format!(
                "INSERT INTO redemption_codes (digest, batch_id, amount, expires_at, created_at)
                 VALUES {}",
                values.join(", ")
            ),
            &args,
        )?);
    }
    db::batch(db, statements).await?;
    Ok(())
}

/// Codes (as digest prefixes) and their state, of one batch or all.
pub async fn list_codes(
    db: &D1Database,
    batch_id: Option<&str>,
) -> Result<Vec<Value>, GatewayError> {
    db::all(
        db,
        "SELECT substr(digest, 1, 12) AS digest_prefix, batch_id, amount, expires_at, created_at,
           redeemed_at, redeemed_by, ledger_id FROM redemption_codes
         WHERE (?1 IS NULL OR batch_id = ?1) ORDER BY batch_id DESC, digest LIMIT 1000",
        &[batch_id.into()],
    )
    .await
}

/// Claims an unused, unexpired code for the tenant in one conditional UPDATE (its trigger writes
/// the credit_ledger row `ledger_id`, whose trigger moves the balance). `{"amount": …}` when it
/// did.
pub async fn claim_code(
    db: &D1Database,
    digest: &str,
    now: u64,
    tenant_id: &str,
    ledger_id: &str,
) -> Result<Option<Value>, GatewayError> {
    db::first(
        db,
        "UPDATE redemption_codes SET redeemed_at = ?2, redeemed_by = ?3, ledger_id = ?4
         WHERE digest = ?1 AND redeemed_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)
           AND EXISTS (SELECT 1 FROM tenants WHERE id = ?3)
         RETURNING amount",
        &[
            digest.into(),
            now.into(),
            tenant_id.into(),
            ledger_id.into(),
        ],
    )
    .await
}

/// Why a code could not be claimed.
#[derive(Deserialize)]
pub struct CodeState {
    pub redeemed_at: Option<u64>,
    pub expires_at: Option<u64>,
}

pub async fn code_state(db: &D1Database, digest: &str) -> Result<Option<CodeState>, GatewayError> {
    db::first(
        db,
        "SELECT redeemed_at, expires_at FROM redemption_codes WHERE digest = ?1",
        &[digest.into()],
    )
    .await
}

/// The tenant's balance (`{"balance": …}`).
pub async fn tenant_balance(
    db: &D1Database,
    tenant_id: &str,
) -> Result<Option<Value>, GatewayError> {
    db::first(
        db,
        "SELECT balance FROM tenants WHERE id = ?1",
        &[tenant_id.into()],
    )
    .await
}

// ---- redemption codes credited by the tenant's wallet (`WALLETS`, schema/0015) ----------------

/// A code claimed for a wallet credit.
#[derive(Debug, Clone, Deserialize)]
pub struct WalletCode {
    pub amount: u64,
    pub batch_id: String,
    pub ledger_id: Option<String>,
    /// Set once the wallet took the credit; `None`: the credit is still to be made.
    pub wallet_credited_at: Option<u64>,
}

/// Claims an unused, unexpired code for the tenant like [`claim_code`], but without crediting D1
/// (`via_wallet = 1`: the caller credits the wallet, then [`mark_code_credited`]).
pub async fn claim_code_for_wallet(
    db: &D1Database,
    digest: &str,
    now: u64,
    tenant_id: &str,
    ledger_id: &str,
) -> Result<Option<WalletCode>, GatewayError> {
    db::first(
        db,
        "UPDATE redemption_codes SET redeemed_at = ?2, redeemed_by = ?3, ledger_id = ?4, via_wallet = 1
         WHERE digest = ?1 AND redeemed_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)
           AND EXISTS (SELECT 1 FROM tenants WHERE id = ?3)
         RETURNING amount, batch_id, ledger_id, wallet_credited_at",
        &[
            digest.into(),
            now.into(),
            tenant_id.into(),
            ledger_id.into(),
        ],
    )
    .await
}

/// The code as claimed by `tenant_id` for a wallet credit, if it was.
pub async fn wallet_code(
    db: &D1Database,
    digest: &str,
    tenant_id: &str,
) -> Result<Option<WalletCode>, GatewayError> {
    db::first(
        db,
        "SELECT amount, batch_id, ledger_id, wallet_credited_at FROM redemption_codes
         WHERE digest = ?1 AND redeemed_by = ?2 AND via_wallet = 1",
        &[digest.into(), tenant_id.into()],
    )
    .await
}

/// Records that the wallet took the code's credit.
pub async fn mark_code_credited(
    db: &D1Database,
    digest: &str,
    now: u64,
) -> Result<(), GatewayError> {
    db::run(
        db,
        "UPDATE redemption_codes SET wallet_credited_at = ?2
         WHERE digest = ?1 AND via_wallet = 1 AND wallet_credited_at IS NULL",
        &[digest.into(), now.into()],
    )
    .await?;
    Ok(())
}

/// Gives a claimed code back (the wallet refused its credit, so none was made): unused again.
pub async fn unclaim_wallet_code(
    db: &D1Database,
    digest: &str,
    tenant_id: &str,
) -> Result<(), GatewayError> {
    db::run(
        db,
        "UPDATE redemption_codes SET redeemed_at = NULL, redeemed_by = NULL, ledger_id = NULL,
           via_wallet = 0
         WHERE digest = ?1 AND redeemed_by = ?2 AND via_wallet = 1 AND wallet_credited_at IS NULL",
        &[digest.into(), tenant_id.into()],
    )
    .await?;
    Ok(())
}

/// Tenants on `plan_id` whose money a wallet holds (they need a plan's new allowance pushed).
pub async fn wallet_tenants_on_plan(
    db: &D1Database,
    plan_id: &str,
) -> Result<Vec<String>, GatewayError> {
    #[derive(Deserialize)]
    struct Row {
        id: String,
    }
    let rows: Vec<Row> = db::all(
        db,
        "SELECT t.id FROM tenants t JOIN wallet_claims c ON c.tenant_id = t.id
         WHERE t.plan_id = ?1 ORDER BY t.id",
        &[plan_id.into()],
    )
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}
