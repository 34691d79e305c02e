//! Alert rules as the crossing check reads them: each rule with its tenant's current figures.
//! (The rule admin routes and deliveries still run their own SQL in `edge::alerts`.)

use serde::Deserialize;
use worker::D1Database;

use crate::core::alerts::Observation;
use crate::core::error::GatewayError;
use crate::edge::platform::d1::{self as db, Arg};

/// Rules checked per scheduled run (one page).
pub const CRON_BATCH: u32 = 500;

/// A rule with its tenant's current figures.
#[derive(Deserialize)]
pub struct Observed {
    pub id: String,
    pub tenant_id: String,
    pub kind: String,
    pub threshold: u64,
    pub fired: Option<String>,
    pub fire_count: u64,
    pub balance: u64,
    pub month_tokens: u64,
    pub month_cost: u64,
}

/// The query of one tenant's rules with their current figures, to run in a settlement batch.
pub fn observe_statement(
    db: &D1Database,
    tenant_id: &str,
    now: u64,
) -> Result<worker::D1PreparedStatement, GatewayError> {
    observe(db, Some(tenant_id), None, now)
}

/// The rules (of `tenant_id`, or every tenant's) with their tenants' figures at `now`, in id
/// order, from the first id after `after`: one page of [`CRON_BATCH`].
pub fn observe(
    db: &D1Database,
    tenant_id: Option<&str>,
    after: Option<&str>,
    now: u64,
) -> Result<worker::D1PreparedStatement, GatewayError> {
    let month = Observation::month_of(now);
    let mut args: Vec<Arg<'_>> = vec![month.as_str().into()];
    let mut conds = Vec::new();
    if let Some(t) = tenant_id {
        args.push(t.into());
        conds.push(format!("r.tenant_id = ?{}", args.len()));
    }
    if let Some(a) = after {
        args.push(a.into());
        conds.push(format!("r.id > ?{}", args.len()));
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    db::statement(
        db,
        &format!(
            "SELECT r.id, r.tenant_id, r.kind, r.threshold, r.fired, r.fire_count,
               t.balance + (SELECT COALESCE(SUM(v.amount), 0) FROM reservations v
                            WHERE v.tenant_id = r.tenant_id) AS balance,
               COALESCE(m.prompt_tokens + m.completion_tokens, 0) AS month_tokens,
               COALESCE(m.cost, 0) AS month_cost
             FROM alert_rules r JOIN tenants t ON t.id = r.tenant_id
             LEFT JOIN usage_monthly m ON m.tenant_id = r.tenant_id AND m.month = ?1
             {filter} ORDER BY r.id LIMIT {CRON_BATCH}"
        ),
        &args,
    )
}
