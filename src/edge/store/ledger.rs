//! Reservations and settlement: the statements that move money.
//!
//! Money moves only through triggers (schema/0001_init.sql, 0003_ledger.sql): inserting a reservation takes credit,
//! deleting it returns it, inserting a usage row charges it, inserting a ledger row credits it.
//! Each step is therefore one statement or one batch, atomic in D1.

use serde::Deserialize;
use worker::{D1Database, D1PreparedStatement};

use super::sessions::{SessionRow, SESSION_COLUMNS};
use crate::core::billing::MAX_SAFE_INT;
use crate::core::error::GatewayError;
use crate::edge::platform::d1::{all, batch, first, statement, Arg};

/// Starts a new allowance period for every tenant on a plan whose period is older than the
/// calendar month of `now` (UTC): `allowance_remaining` becomes the plan's allowance. Idempotent,
/// one statement; requests also do it lazily for their own tenant inside the reservation batch,
/// so calling this from a cron trigger only makes balances shown in reports fresh. Returns the
/// number of tenants reset.
pub async fn reset_plan_periods(db: &D1Database, now: u64) -> Result<usize, GatewayError> {
    let period = crate::core::billing::allowance::month_start_ms(now);
    let reset: Vec<serde_json::Value> = all(
        db,
        &format!("{RESET_PERIOD_SQL} RETURNING id"),
        &[Arg::Null, period.into()],
    )
    .await?;
    Ok(reset.len())
}

/// Resets the allowance of tenants on a plan whose period is over; `?1` restricts it to the
/// tenant of that key (NULL: every tenant), `?2` is the current period's start.
const RESET_PERIOD_SQL: &str = "UPDATE tenants SET
       allowance_remaining = COALESCE((SELECT p.allowance FROM plans p WHERE p.id = tenants.plan_id), 0),
       allowance_period = ?2
     WHERE plan_id IS NOT NULL AND (allowance_period IS NULL OR allowance_period < ?2)
       AND (?1 IS NULL OR id = (SELECT k.tenant_id FROM api_keys k WHERE k.id = ?1))";

/// Reserves `amount` for request `request_id`, in one batch: first the lazy start of a new plan
/// period for the key's tenant, then one conditional statement that takes the amount from the
/// plan allowance first and the balance for the rest (triggers), and also checks the key is not
/// revoked, the tenant not disabled and without debt. Returns whether it did (an amount beyond
/// 2⁵³ − 1 never fits).
pub async fn reserve(
    db: &D1Database,
    request_id: &str,
    key_id: &str,
    amount: u64,
    now: u64,
) -> Result<bool, GatewayError> {
    if amount > MAX_SAFE_INT {
        return Ok(false);
    }
    let period = crate::core::billing::allowance::month_start_ms(now);
    let reset = statement(db, RESET_PERIOD_SQL, &[key_id.into(), period.into()])?;
    // `RETURNING` rather than the change count: D1 counts the trigger's balance update too.
    let take = statement(
        db,
        "INSERT INTO reservations (id, tenant_id, key_id, amount, allowance_amount, allowance_period,
           created_at)
         SELECT ?1, k.tenant_id, k.id, ?3 - MIN(?3, t.allowance_remaining),
           MIN(?3, t.allowance_remaining), t.allowance_period, ?4
         FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
         WHERE k.id = ?2 AND k.revoked_at IS NULL AND t.disabled_at IS NULL AND t.debt = 0
           AND t.balance + t.allowance_remaining >= ?3
         RETURNING id",
        &[request_id.into(), key_id.into(), amount.into(), now.into()],
    )?;
    let results = batch(db, vec![reset, take]).await?;
    let taken = results
        .get(1)
        .and_then(|r| r.results::<serde_json::Value>().ok())
        .is_some_and(|rows| !rows.is_empty());
    Ok(taken)
}

/// Grows the reservation of a request in flight by `amount`, in one conditional statement:
/// allowance first (if the reservation's period is still current), then balance; refused when
/// the two together cannot cover it, or when the key has been revoked or its tenant disabled
/// since (the stream then stops at its cover). Returns whether it did.
pub async fn extend_reservation(
    db: &D1Database,
    request_id: &str,
    amount: u64,
) -> Result<bool, GatewayError> {
    let allowance_part = "(SELECT CASE WHEN t.allowance_period IS reservations.allowance_period
           THEN MIN(?2, t.allowance_remaining) ELSE 0 END
         FROM tenants t WHERE t.id = reservations.tenant_id)";
    let extended: Option<serde_json::Value> = first(
        db,
        &format!(
            "UPDATE reservations SET
               allowance_amount = allowance_amount + {allowance_part},
               amount = amount + ?2 - {allowance_part}
             WHERE id = ?1 AND (SELECT t.balance + CASE WHEN t.allowance_period IS
                 reservations.allowance_period THEN t.allowance_remaining ELSE 0 END
               FROM tenants t WHERE t.id = reservations.tenant_id AND t.disabled_at IS NULL
                 AND t.debt = 0) >= ?2
               AND EXISTS (SELECT 1 FROM api_keys k
                 WHERE k.id = reservations.key_id AND k.revoked_at IS NULL)
             RETURNING id"
        ),
        &[request_id.into(), amount.into()],
    )
    .await?;
    Ok(extended.is_some())
}

/// One usage row, as written by [`settle`]. Owned and serializable: a settlement that cannot be
/// written is kept as JSON (KV `pending-settle:<request id>`) and replayed by the scheduled handler.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct UsageRow {
    pub request_id: String,
    pub tenant_id: String,
    pub key_id: String,
    pub session_id: Option<String>,
    pub model: String,
    pub provider: String,
    pub upstream_model: String,
    pub stream: bool,
    pub prompt_tokens: u64,
    pub cached_prompt_tokens: u64,
    pub completion_tokens: u64,
    pub reasoning_tokens: u64,
    pub upstream_prompt_tokens: Option<u64>,
    pub upstream_completion_tokens: Option<u64>,
    pub local_prompt_tokens: u64,
    pub local_completion_tokens: u64,
    /// `upstream` or `local`.
    pub usage_source: String,
    /// The full charge (schema/0007: reservation, allowance, balance, then debt).
    pub cost: u64,
    /// The `price_versions` row the cost was computed with.
    pub price_version: Option<u64>,
    pub multiplier_bps: u64,
    pub idempotency_key: Option<String>,
    pub reserved: u64,
    pub status: String,
    pub http_status: u16,
    pub error_code: Option<String>,
    pub latency_ms: u64,
    pub ttfb_ms: Option<u64>,
    pub created_at: u64,
    /// JSON array of the routes that failed before the serving one.
    pub routes_tried: Option<String>,
    /// The client API (`usage.api`, schema/0012): chat | responses | messages. A row kept in KV
    /// before the column was written replays as `chat`.
    #[serde(default = "chat_api")]
    pub api: String,
    /// The media columns (schema 0012); `None` for a chat row (their defaults).
    #[serde(default)]
    pub media: Option<UsageMedia>,
    /// Cache writes billed, parts of `prompt_tokens` (schema/0013; `core::billing::tiers`).
    #[serde(default)]
    pub cache_write_5m_tokens: u64,
    #[serde(default)]
    pub cache_write_1h_tokens: u64,
    /// The long-context tier priced the request (schema/0013).
    #[serde(default)]
    pub long_context: bool,
}

fn chat_api() -> String {
    "chat".to_string()
}

/// What a media request's usage row records beyond tokens (schema 0012, docs/media.md).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct UsageMedia {
    pub api: String,
    pub unit: String,
    pub quantity: u64,
    pub unit_price: Option<u64>,
    pub image_input_tokens: u64,
    pub audio_input_tokens: u64,
}

/// The statement that writes a media row's own columns, run in the settlement batch after the
/// insert (an update of the row just inserted; a repeat writes the same values).
fn media_columns(
    db: &D1Database,
    request_id: &str,
    m: &UsageMedia,
) -> Result<D1PreparedStatement, GatewayError> {
    statement(
        db,
        "UPDATE usage SET api = ?2, unit = ?3, quantity = ?4, unit_price = ?5,
           image_input_tokens = ?6, audio_input_tokens = ?7
         WHERE request_id = ?1",
        &[
            request_id.into(),
            m.api.as_str().into(),
            m.unit.as_str().into(),
            m.quantity.into(),
            m.unit_price.into(),
            m.image_input_tokens.into(),
            m.audio_input_tokens.into(),
        ],
    )
}

/// The statement that writes a row's cache writes and long-context flag (schema/0013), run in
/// the settlement batch after the insert.
fn tier_columns(db: &D1Database, row: &UsageRow) -> Result<D1PreparedStatement, GatewayError> {
    statement(
        db,
        "UPDATE usage SET cache_write_5m_tokens = ?2, cache_write_1h_tokens = ?3,
           long_context = ?4
         WHERE request_id = ?1",
        &[
            row.request_id.as_str().into(),
            row.cache_write_5m_tokens.into(),
            row.cache_write_1h_tokens.into(),
            i64::from(row.long_context).into(),
        ],
    )
}

impl UsageRow {
    /// The token and money columns of `bill`.
    pub fn set_bill(&mut self, b: &crate::core::meter::Bill) {
        self.prompt_tokens = b.prompt_tokens;
        self.cached_prompt_tokens = b.cached_prompt_tokens;
        self.completion_tokens = b.completion_tokens;
        self.reasoning_tokens = b.reasoning_tokens;
        self.upstream_prompt_tokens = b.upstream_prompt_tokens;
        self.upstream_completion_tokens = b.upstream_completion_tokens;
        self.local_prompt_tokens = b.local_prompt_tokens;
        self.local_completion_tokens = b.local_completion_tokens;
        self.usage_source = b.source.as_str().to_string();
        self.cost = b.cost;
        self.cache_write_5m_tokens = b.cache_write_5m_tokens;
        self.cache_write_1h_tokens = b.cache_write_1h_tokens;
        self.long_context = b.long_context;
    }

    /// Whether the row has cache writes or the long-context flag (the tier columns of
    /// schema/0013 beyond their defaults).
    fn has_tier_columns(&self) -> bool {
        self.cache_write_5m_tokens > 0 || self.cache_write_1h_tokens > 0 || self.long_context
    }
}

/// What a settlement batch read back.
pub struct Settled {
    /// The session's totals, when asked for.
    pub session: Option<SessionRow>,
    /// The tenant's alert rules with its figures after this charge.
    pub alert_rules: Vec<super::alerts::Observed>,
}

/// Settles a request in one batch: writes the usage row, whose trigger (schema/0007) charges the
/// cost from the request's reservation, then allowance, balance and debt, returns what the
/// reservation held beyond it, and updates the session and month totals; reads the tenant's alert
/// rules with its new figures, and the session back when `read_session`. Safe to repeat: a second
/// run finds an existing row (`INSERT OR IGNORE` fires nothing) and changes nothing. The final
/// `DELETE` only matters when the row already existed.
pub async fn settle(
    db: &D1Database,
    row: &UsageRow,
    read_session: bool,
    now: u64,
) -> Result<Settled, GatewayError> {
    let insert = statement(
        db,
        "INSERT OR IGNORE INTO usage (request_id, tenant_id, key_id, session_id, model, provider,
           upstream_model, stream, prompt_tokens, completion_tokens, upstream_prompt_tokens,
           upstream_completion_tokens, local_prompt_tokens, local_completion_tokens, usage_source,
           input_price, output_price, reserved, cost, uncharged, status, http_status, error_code,
           latency_ms, ttfb_ms, created_at, price_version, cached_prompt_tokens, reasoning_tokens,
           multiplier_bps, idempotency_key, routes_tried, api)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, 0, 0, ?18,
           ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?16, ?17, ?27, ?28, ?29, ?30, ?31)",
        &[
            row.request_id.as_str().into(),
            row.tenant_id.as_str().into(),
            row.key_id.as_str().into(),
            row.session_id.as_deref().into(),
            row.model.as_str().into(),
            row.provider.as_str().into(),
            row.upstream_model.as_str().into(),
            i64::from(row.stream).into(),
            row.prompt_tokens.into(),
            row.completion_tokens.into(),
            row.upstream_prompt_tokens.into(),
            row.upstream_completion_tokens.into(),
            row.local_prompt_tokens.into(),
            row.local_completion_tokens.into(),
            row.usage_source.as_str().into(),
            row.price_version.into(),
            row.cached_prompt_tokens.into(),
            row.reserved.into(),
            row.cost.into(),
            // `uncharged` (0001): no longer used, a charge beyond the reservation is taken or owed.
            Arg::Int(0),
            row.status.as_str().into(),
            i64::from(row.http_status).into(),
            row.error_code.as_deref().into(),
            row.latency_ms.into(),
            row.ttfb_ms.into(),
            row.created_at.into(),
            row.reasoning_tokens.into(),
            row.multiplier_bps.into(),
            row.idempotency_key.as_deref().into(),
            row.routes_tried.as_deref().into(),
            row.api.as_str().into(),
        ],
    )?;
    let release = statement(
        db,
        "DELETE FROM reservations WHERE id = ?1",
        &[row.request_id.as_str().into()],
    )?;
    let alerts = super::alerts::observe_statement(db, &row.tenant_id, now)?;
    let mut statements = vec![insert, release, alerts];
    if let (Some(session), true) = (row.session_id.as_deref(), read_session) {
        statements.push(statement(
            db,
            &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant_id = ?1 AND id = ?2"),
            &[row.tenant_id.as_str().into(), session.into()],
        )?);
    }
    if let Some(media) = &row.media {
        // Last, so the indices read below stay those of the chat batch.
        statements.push(media_columns(db, &row.request_id, media)?);
    }
    if row.has_tier_columns() {
        // Only when set (most rows keep the columns' defaults), after the insert like the media
        // columns; a repeat writes the same values.
        statements.push(tier_columns(db, row)?);
    }
    let results = batch(db, statements).await?;
    Ok(Settled {
        session: results
            .get(3)
            .and_then(|r| r.results::<SessionRow>().ok())
            .and_then(|mut rows| rows.pop()),
        alert_rules: results
            .get(2)
            .and_then(|r| r.results().ok())
            .unwrap_or_default(),
    })
}

/// How long expired reservations are kept in `reservation_expiries`.
const EXPIRY_RECORDS_MS: u64 = 30 * 86_400_000;

/// Returns the credit of reservations created before `cutoff`, records them in
/// `reservation_expiries` and releases the idempotency keys their requests held, in one batch.
/// Writes no usage row: a request that is still alive settles later as usual. Returns how many it
/// swept.
pub async fn sweep_stale_reservations(
    db: &D1Database,
    cutoff: u64,
    now: u64,
) -> Result<usize, GatewayError> {
    let results = batch(
        db,
        vec![
            statement(
                db,
                "INSERT OR IGNORE INTO reservation_expiries (id, tenant_id, key_id, amount,
                   allowance_amount, allowance_period, created_at, expired_at)
                 SELECT id, tenant_id, key_id, amount, allowance_amount, allowance_period,
                   created_at, ?2
                 FROM reservations WHERE created_at < ?1",
                &[cutoff.into(), now.into()],
            )?,
            statement(
                db,
                "DELETE FROM idempotency_keys WHERE state = 'pending' AND request_id IN
                   (SELECT id FROM reservations WHERE created_at < ?1)",
                &[cutoff.into()],
            )?,
            statement(
                db,
                "DELETE FROM reservations WHERE created_at < ?1 RETURNING id",
                &[cutoff.into()],
            )?,
            statement(
                db,
                "DELETE FROM reservation_expiries WHERE expired_at < ?1",
                &[now.saturating_sub(EXPIRY_RECORDS_MS).into()],
            )?,
        ],
    )
    .await?;
    #[derive(Deserialize)]
    struct Swept {
        #[allow(dead_code)]
        id: String,
    }
    Ok(results
        .get(2)
        .and_then(|r| r.results::<Swept>().ok())
        .map_or(0, |rows| rows.len()))
}

/// The usage row of a request, every column.
pub async fn usage_row(
    db: &D1Database,
    request_id: &str,
) -> Result<Option<serde_json::Value>, GatewayError> {
    first(
        db,
        "SELECT * FROM usage WHERE request_id = ?1",
        &[request_id.into()],
    )
    .await
}
