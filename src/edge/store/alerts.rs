//! Alert rules as the crossing check reads them: each rule with its tenant's current figures.
//! Rules, their webhook deliveries (with leases for attempts), and each rule with its tenant's
//! figures for the crossing check. The decisions are in `core::alerts`; `edge::alerts` sends.

use serde::{Deserialize, Serialize};
use worker::D1Database;

use crate::core::alerts::Observation;
use crate::core::error::GatewayError;
use crate::edge::platform::d1::{self as db, Arg};
use crate::edge::platform::ttl_cache::{self, Ttl};

thread_local! {
    /// Each tenant's rules as `(kind, threshold, fired)`, for the crossing check after a wallet
    /// settlement (empty for a tenant without rules: no D1 read until the entry expires).
    static THRESHOLDS: Ttl<Vec<(String, u64, Option<String>)>> = Ttl::new();
}

/// A tenant's rules as `(kind, threshold, fired)`, through the isolate cache (`fired` may be
/// stale by the cache's lifetime: firing itself is a compare-and-set on fresh rows).
pub async fn thresholds(
    db: &D1Database,
    tenant_id: &str,
) -> Result<std::rc::Rc<Vec<(String, u64, Option<String>)>>, GatewayError> {
    #[derive(Deserialize)]
    struct Row {
        kind: String,
        threshold: u64,
        fired: Option<String>,
    }
    let loaded = ttl_cache::get_or_load(&THRESHOLDS, tenant_id.to_string(), || async {
        let rows: Vec<Row> = db::all(
            db,
            "SELECT kind, threshold, fired FROM alert_rules WHERE tenant_id = ?1",
            &[tenant_id.into()],
        )
        .await?;
        Ok::<_, GatewayError>(Some(
            rows.into_iter()
                .map(|r| (r.kind, r.threshold, r.fired))
                .collect(),
        ))
    })
    .await?;
    Ok(loaded.unwrap_or_default())
}

/// One tenant's rules with their D1 figures (the balance as its wallet last reported it).
pub async fn observed_of(
    db: &D1Database,
    tenant_id: &str,
    now: u64,
) -> Result<Vec<Observed>, GatewayError> {
    observe_statement(db, tenant_id, now)?
        .all()
        .await
        .map_err(db::d1_error)?
        .results()
        .map_err(db::d1_error)
}

/// Records the balance a wallet reported at `at` (only forward in time), for the scheduled
/// check (schema/0016).
pub async fn record_wallet_balance(
    db: &D1Database,
    tenant_id: &str,
    balance: u64,
    at: u64,
) -> Result<(), GatewayError> {
    db::run(
        db,
        WALLET_BALANCE_SQL,
        &[tenant_id.into(), balance.into(), at.into()],
    )
    .await?;
    Ok(())
}

/// The statement of [`record_wallet_balance`] (`?1` tenant, `?2` balance, `?3` time).
pub const WALLET_BALANCE_SQL: &str = "UPDATE wallet_claims SET balance = ?2, balance_at = ?3
  WHERE tenant_id = ?1 AND (balance_at IS NULL OR balance_at <= ?3)";

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
               CASE WHEN c.balance IS NOT NULL THEN c.balance
                    ELSE t.balance + (SELECT COALESCE(SUM(v.amount), 0) FROM reservations v
                            WHERE v.tenant_id = r.tenant_id) END AS balance,
               COALESCE(m.prompt_tokens + m.completion_tokens, 0) AS month_tokens,
               COALESCE(m.cost, 0) AS month_cost
             FROM alert_rules r JOIN tenants t ON t.id = r.tenant_id
             LEFT JOIN usage_monthly m ON m.tenant_id = r.tenant_id AND m.month = ?1
             LEFT JOIN wallet_claims c ON c.tenant_id = r.tenant_id
             {filter} ORDER BY r.id LIMIT {CRON_BATCH}"
        ),
        &args,
    )
}

/// A rule as stored.
#[derive(Serialize, Deserialize)]
pub struct RuleRow {
    pub id: String,
    pub tenant_id: String,
    pub kind: String,
    pub threshold: u64,
    pub webhook_url: String,
    pub secret_name: String,
    pub fired: Option<String>,
    pub fire_count: u64,
    pub created_at: u64,
    pub updated_at: u64,
    /// `operator` (created through the admin API) or `tenant` (by the tenant, user center).
    pub owner: String,
    /// `webhook`, or `notice` (an in-app notice in the user center, no webhook).
    pub channel: String,
}

pub const RULE_COLUMNS: &str = "id, tenant_id, kind, threshold, webhook_url, secret_name, fired, \
                            fire_count, created_at, updated_at, owner, channel";

pub async fn get_rule(db: &D1Database, id: &str) -> Result<Option<RuleRow>, GatewayError> {
    db::first(
        db,
        &format!("SELECT {RULE_COLUMNS} FROM alert_rules WHERE id = ?1"),
        &[id.into()],
    )
    .await
}

/// Stores a new rule for an existing tenant; `false` when there is no such tenant.
pub async fn insert_rule(db: &D1Database, r: &RuleRow) -> Result<bool, GatewayError> {
    let changed = db::run(
        db,
        "INSERT INTO alert_rules (id, tenant_id, kind, threshold, webhook_url, secret_name,
           fired, fire_count, created_at, updated_at, owner, channel)
         SELECT ?1, id, ?3, ?4, ?5, ?6, NULL, 0, ?7, ?7, ?8, ?9 FROM tenants WHERE id = ?2",
        &[
            r.id.as_str().into(),
            r.tenant_id.as_str().into(),
            r.kind.as_str().into(),
            r.threshold.into(),
            r.webhook_url.as_str().into(),
            r.secret_name.as_str().into(),
            r.created_at.into(),
            r.owner.as_str().into(),
            r.channel.as_str().into(),
        ],
    )
    .await?;
    Ok(changed > 0)
}

pub async fn list_rules(db: &D1Database, tenant_id: &str) -> Result<Vec<RuleRow>, GatewayError> {
    db::all(
        db,
        &format!("SELECT {RULE_COLUMNS} FROM alert_rules WHERE tenant_id = ?1 ORDER BY id"),
        &[tenant_id.into()],
    )
    .await
}

/// Deletes the rule and cancels its pending deliveries (the history is kept), in one batch;
/// `false` when there was no such rule.
pub async fn delete_rule(db: &D1Database, id: &str) -> Result<bool, GatewayError> {
    let results = db::batch(
        db,
        vec![
            db::statement(db, "DELETE FROM alert_rules WHERE id = ?1", &[id.into()])?,
            db::statement(
                db,
                "UPDATE alert_deliveries SET status = 'cancelled', next_attempt_at = NULL
                 WHERE rule_id = ?1 AND status = 'pending'",
                &[id.into()],
            )?,
        ],
    )
    .await?;
    let deleted = results
        .first()
        .and_then(|r| r.meta().ok().flatten())
        .and_then(|m| m.changes)
        .unwrap_or(0);
    Ok(deleted > 0)
}

/// One webhook delivery as stored.
#[derive(Serialize, Deserialize)]
pub struct DeliveryRow {
    pub id: String,
    pub rule_id: String,
    pub tenant_id: String,
    pub webhook_url: String,
    pub secret_name: String,
    pub payload: String,
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: Option<u64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: u64,
    pub delivered_at: Option<u64>,
}

pub const DELIVERY_COLUMNS: &str =
    "id, rule_id, tenant_id, webhook_url, secret_name, payload, status, \
     attempts, next_attempt_at, last_status, last_error, created_at, delivered_at";

/// The rule's deliveries, newest first (at most 1000).
pub async fn list_deliveries(
    db: &D1Database,
    rule_id: &str,
) -> Result<Vec<DeliveryRow>, GatewayError> {
    db::all(
        db,
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE rule_id = ?1
             ORDER BY created_at DESC, id DESC LIMIT 1000"
        ),
        &[rule_id.into()],
    )
    .await
}

/// One page of every tenant's rules with their figures, after the rule id `after`.
pub async fn observed_page(
    db: &D1Database,
    after: Option<&str>,
    now: u64,
) -> Result<Vec<Observed>, GatewayError> {
    observe(db, None, after, now)?
        .all()
        .await
        .map_err(db::d1_error)?
        .results()
        .map_err(db::d1_error)
}

/// Re-arms a fired rule (unless another check changed it since it was read).
pub async fn rearm(
    db: &D1Database,
    id: &str,
    fire_count: u64,
    now: u64,
) -> Result<(), GatewayError> {
    db::run(
        db,
        "UPDATE alert_rules SET fired = NULL, updated_at = ?3
         WHERE id = ?1 AND fire_count = ?2 AND fired IS NOT NULL",
        &[id.into(), fire_count.into(), now.into()],
    )
    .await?;
    Ok(())
}

/// A crossing to record: the rule as read, the episode it fires for, the delivery to queue.
pub struct Fire<'a> {
    pub rule_id: &'a str,
    /// The rule's `fire_count` and `fired` as read (the compare-and-set).
    pub fire_count: u64,
    pub fired: Option<&'a str>,
    pub episode: &'a str,
    /// `<rule id>-<new fire_count>`: the delivery's id.
    pub event_id: &'a str,
    pub payload: &'a str,
    /// The first attempt's lease.
    pub lease_until: u64,
}

/// Moves the rule to the episode (compare-and-set on its `fire_count`) and inserts its delivery,
/// atomically. Returns the delivery when this call inserted it (and so must send it, when its
/// status is `pending`; a `notice` rule's delivery is the in-app notice itself).
pub async fn record_fire(
    db: &D1Database,
    f: &Fire<'_>,
    now: u64,
) -> Result<Option<DeliveryRow>, GatewayError> {
    let count = f.fire_count + 1;
    let results = db::batch(
        db,
        vec![
            db::statement(
                db,
                "UPDATE alert_rules SET fired = ?2, fire_count = ?3, updated_at = ?4
                 WHERE id = ?1 AND fire_count = ?5 AND fired IS ?6",
                &[
                    f.rule_id.into(),
                    f.episode.into(),
                    count.into(),
                    now.into(),
                    f.fire_count.into(),
                    f.fired.into(),
                ],
            )?,
            db::statement(
                db,
                "INSERT OR IGNORE INTO alert_deliveries (id, rule_id, tenant_id, webhook_url,
                   secret_name, payload, status, attempts, next_attempt_at, created_at)
                 SELECT ?1, id, tenant_id, webhook_url, secret_name, ?2,
                   CASE channel WHEN 'notice' THEN 'notice' ELSE 'pending' END, 0,
                   CASE channel WHEN 'notice' THEN NULL ELSE ?3 END, ?4
                 FROM alert_rules WHERE id = ?5 AND fire_count = ?6 AND fired = ?7",
                &[
                    f.event_id.into(),
                    f.payload.into(),
                    f.lease_until.into(),
                    now.into(),
                    f.rule_id.into(),
                    count.into(),
                    f.episode.into(),
                ],
            )?,
            db::statement(
                db,
                &format!("SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE id = ?1"),
                &[f.event_id.into()],
            )?,
        ],
    )
    .await?;
    let inserted = results
        .get(1)
        .and_then(|r| r.meta().ok().flatten())
        .and_then(|m| m.changes)
        .unwrap_or(0)
        > 0;
    if !inserted {
        return Ok(None);
    }
    Ok(results
        .get(2)
        .and_then(|r| r.results::<DeliveryRow>().ok())
        .and_then(|mut rows| rows.pop()))
}

/// The outcome of one delivery attempt.
pub struct Attempt<'a> {
    pub id: &'a str,
    /// `delivered`, `pending` (to retry at `next_attempt_at`) or `failed`.
    pub status: &'a str,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<&'a str>,
    pub next_attempt_at: Option<u64>,
    pub delivered_at: Option<u64>,
}

/// Records an attempt on a delivery still pending.
pub async fn record_attempt(db: &D1Database, a: &Attempt<'_>) -> Result<(), GatewayError> {
    db::run(
        db,
        "UPDATE alert_deliveries SET status = ?2, attempts = ?3, last_status = ?4,
           last_error = ?5, next_attempt_at = ?6, delivered_at = ?7
         WHERE id = ?1 AND status = 'pending'",
        &[
            a.id.into(),
            a.status.into(),
            i64::from(a.attempts).into(),
            a.last_status.map(i64::from).map_or(Arg::Null, Arg::Int),
            a.last_error.into(),
            a.next_attempt_at.into(),
            a.delivered_at.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Pending deliveries due at `now`, soonest first (at most `limit`).
pub async fn due_deliveries(
    db: &D1Database,
    now: u64,
    limit: u32,
) -> Result<Vec<DeliveryRow>, GatewayError> {
    db::all(
        db,
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries
             WHERE status = 'pending' AND next_attempt_at <= ?1
             ORDER BY next_attempt_at LIMIT {limit}"
        ),
        &[now.into()],
    )
    .await
}

/// Takes the lease of a due delivery (until `until`) if no other sender took it since it was
/// read; whether this call did.
pub async fn lease_delivery(
    db: &D1Database,
    id: &str,
    next_attempt_at: Option<u64>,
    until: u64,
) -> Result<bool, GatewayError> {
    let claimed: Option<serde_json::Value> = db::first(
        db,
        "UPDATE alert_deliveries SET next_attempt_at = ?3
         WHERE id = ?1 AND status = 'pending' AND next_attempt_at = ?2 RETURNING id",
        &[id.into(), next_attempt_at.into(), until.into()],
    )
    .await?;
    Ok(claimed.is_some())
}

/// The rules a tenant manages itself (`owner = 'tenant'`), oldest first.
pub async fn tenant_rules(db: &D1Database, tenant_id: &str) -> Result<Vec<RuleRow>, GatewayError> {
    db::all(
        db,
        &format!(
            "SELECT {RULE_COLUMNS} FROM alert_rules WHERE tenant_id = ?1 AND owner = 'tenant' ORDER BY id"
        ),
        &[tenant_id.into()],
    )
    .await
}

/// A tenant's in-app notices (deliveries of its `notice` rules), newest first (at most 50).
pub async fn notices(db: &D1Database, tenant_id: &str) -> Result<Vec<DeliveryRow>, GatewayError> {
    db::all(
        db,
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE tenant_id = ?1 AND status = 'notice'
             ORDER BY created_at DESC, id DESC LIMIT 50"
        ),
        &[tenant_id.into()],
    )
    .await
}
