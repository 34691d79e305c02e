//! Usage reports' reads: usage rows a page at a time, partial sums from the daily rollups and raw
//! rows, the rollup watermark and the rollups themselves, and a tenant's balance with this
//! month's totals. The query planning and merging are in `core::reports`.

use serde::Deserialize;
use serde_json::Value;
use worker::D1Database;

use crate::core::calendar::{DAY_MS, MAX_TIME_MS};
use crate::core::error::GatewayError;
use crate::core::reports::{GroupBy, PartialRow, Plan, ReportQuery};
use crate::edge::platform::d1::{self as db, Arg};

/// The `cron_state` row of the rollup watermark.
pub const ROLLUP_MARK: &str = "usage_daily_through";

/// A grouped report may have at most this many rows (narrow the range or the grouping above it).
pub const MAX_GROUPS: usize = 100_000;

/// Equality filters of a query, as SQL conditions and their arguments. `session_column`: the
/// table is `usage` (the rollups keep no session, api or status; `rollup_compatible` keeps such
/// queries off them).
fn filters<'a>(q: &'a ReportQuery, session_column: bool) -> (Vec<String>, Vec<Arg<'a>>) {
    let mut conds = vec![];
    let mut args = vec![];
    let mut add = |column: &str, value: &'a Option<String>| {
        if let Some(v) = value {
            args.push(Arg::Str(v));
            conds.push(format!("{column} = ?{}", args.len()));
        }
    };
    add("tenant_id", &q.tenant_id);
    add("key_id", &q.key_id);
    if session_column {
        add("session_id", &q.session_id);
        add("api", &q.api);
        add("status", &q.status);
    }
    add("model", &q.model);
    (conds, args)
}

/// One page of usage rows (`columns`), newest first, and whether more follow.
pub async fn usage_page(
    db: &D1Database,
    q: &ReportQuery,
    columns: &[&str],
) -> Result<(Vec<Value>, bool), GatewayError> {
    let (mut conds, mut args) = filters(q, true);
    args.push(Arg::Int(q.start as i64));
    conds.push(format!("created_at >= ?{}", args.len()));
    args.push(Arg::Int(q.end.min(MAX_TIME_MS + 1) as i64));
    conds.push(format!("created_at < ?{}", args.len()));
    if let Some(cursor) = &q.cursor {
        args.push(Arg::Str(cursor));
        conds.push(format!("request_id < ?{}", args.len()));
    }
    args.push(Arg::Int(i64::from(q.limit) + 1));
    let sql = format!(
        "SELECT {} FROM usage WHERE {} ORDER BY request_id DESC LIMIT ?{}",
        columns.join(", "),
        conds.join(" AND "),
        args.len()
    );
    let mut rows: Vec<Value> = db::all(db, &sql, &args).await?;
    let has_more = rows.len() > q.limit as usize;
    rows.truncate(q.limit as usize);
    Ok((rows, has_more))
}

/// The first day not yet in `usage_daily` (0 before the first rollup).
pub async fn rolled_through(db: &D1Database) -> Result<Option<u64>, GatewayError> {
    #[derive(Deserialize)]
    struct Mark {
        value: u64,
    }
    let mark: Option<Mark> = db::first(
        db,
        "SELECT value FROM cron_state WHERE name = ?1",
        &[ROLLUP_MARK.into()],
    )
    .await?;
    Ok(mark.map(|m| m.value))
}

/// The partial sums of a grouped report: one list per piece of `pieces` (rollup days, raw
/// ranges), read in one batch.
pub async fn grouped_partials(
    db: &D1Database,
    q: &ReportQuery,
    group: &GroupBy,
    pieces: &Plan,
) -> Result<Vec<Vec<PartialRow>>, GatewayError> {
    let mut select: Vec<String> = group.dims.iter().map(|d| d.column().to_string()).collect();
    let mut statements = vec![];

    if let Some((from_day, to_day)) = pieces.rollup_days {
        let mut cols = select.clone();
        if group.bucket.is_some() {
            cols.push("day".into());
        }
        let (mut conds, mut args) = filters(q, false);
        args.push(Arg::Int(from_day as i64));
        conds.push(format!("day >= ?{}", args.len()));
        args.push(Arg::Int(to_day as i64));
        conds.push(format!("day < ?{}", args.len()));
        let sql = format!(
            "SELECT {cols}{sep} SUM(requests) AS requests, SUM(prompt_tokens) AS prompt_tokens,
               SUM(completion_tokens) AS completion_tokens, SUM(cost) AS cost
             FROM usage_daily WHERE {where_} GROUP BY {cols} LIMIT {limit}",
            cols = cols.join(", "),
            sep = if cols.is_empty() { "" } else { "," },
            where_ = conds.join(" AND "),
            limit = MAX_GROUPS + 1,
        );
        statements.push(db::statement(db, &sql, &args)?);
    }
    if group.bucket.is_some() {
        select.push(format!("created_at / {DAY_MS} AS day"));
    }
    for (from, to) in &pieces.raw {
        let (mut conds, mut args) = filters(q, true);
        args.push(Arg::Int(*from as i64));
        conds.push(format!("created_at >= ?{}", args.len()));
        args.push(Arg::Int((*to).min(MAX_TIME_MS + 1) as i64));
        conds.push(format!("created_at < ?{}", args.len()));
        let group_cols: Vec<&str> = select
            .iter()
            .map(|c| c.rsplit(' ').next().unwrap_or(c))
            .collect();
        let sql = format!(
            "SELECT {cols}{sep} COUNT(*) AS requests, SUM(prompt_tokens) AS prompt_tokens,
               SUM(completion_tokens) AS completion_tokens, SUM(cost) AS cost
             FROM usage WHERE {where_} GROUP BY {group} LIMIT {limit}",
            cols = select.join(", "),
            sep = if select.is_empty() { "" } else { "," },
            where_ = conds.join(" AND "),
            group = group_cols.join(", "),
            limit = MAX_GROUPS + 1,
        );
        statements.push(db::statement(db, &sql, &args)?);
    }

    let mut out = Vec::new();
    for result in db::batch(db, statements).await? {
        out.push(result.results().map_err(db::d1_error)?);
    }
    Ok(out)
}

/// A tenant's balance, debt, reservations and this month's totals.
#[derive(Deserialize)]
pub struct BalanceRow {
    pub balance: u64,
    pub debt: u64,
    pub reserved: u64,
    pub month_requests: u64,
    pub month_prompt_tokens: u64,
    pub month_completion_tokens: u64,
    pub month_cost: u64,
}

pub async fn balance(
    db: &D1Database,
    tenant_id: &str,
    month: &str,
) -> Result<Option<BalanceRow>, GatewayError> {
    db::first(
        db,
        "SELECT t.balance, t.debt,
           (SELECT COALESCE(SUM(r.amount), 0) FROM reservations r WHERE r.tenant_id = t.id) AS reserved,
           COALESCE(m.requests, 0) AS month_requests,
           COALESCE(m.prompt_tokens, 0) AS month_prompt_tokens,
           COALESCE(m.completion_tokens, 0) AS month_completion_tokens,
           COALESCE(m.cost, 0) AS month_cost
         FROM tenants t LEFT JOIN usage_monthly m ON m.tenant_id = t.id AND m.month = ?2
         WHERE t.id = ?1",
        &[tenant_id.into(), month.into()],
    )
    .await
}

/// Rolls up closed days into `usage_daily`, oldest first, at most `max_days` per call. A day is
/// closed when it ended before `final_before` (no usage row with an earlier `created_at` can
/// still be written: see the stale-reservation sweep in `edge::cron`). Idempotent: each day is
/// rewritten whole, in one batch with the watermark. Returns the number of days rolled up.
pub async fn roll_up_closed_days(
    db: &D1Database,
    final_before: u64,
    max_days: u64,
) -> Result<u64, GatewayError> {
    #[derive(Deserialize)]
    struct First {
        first: Option<u64>,
    }
    let closed_end = final_before / DAY_MS;
    let through = match rolled_through(db).await? {
        Some(day) => day,
        None => {
            let first: Option<First> =
                db::first(db, "SELECT MIN(created_at) AS first FROM usage", &[]).await?;
            let start = first
                .and_then(|f| f.first)
                .map_or(closed_end, |ms| (ms / DAY_MS).min(closed_end));
            db::run(
                db,
                "INSERT OR IGNORE INTO cron_state (name, value) VALUES (?1, ?2)",
                &[ROLLUP_MARK.into(), start.into()],
            )
            .await?;
            rolled_through(db).await?.unwrap_or(start)
        }
    };
    let mut done = 0;
    for day in through..closed_end.min(through.saturating_add(max_days)) {
        let from = day * DAY_MS;
        let to = from + DAY_MS;
        db::batch(
            db,
            vec![
                db::statement(db, "DELETE FROM usage_daily WHERE day = ?1", &[day.into()])?,
                db::statement(
                    db,
                    "INSERT INTO usage_daily (tenant_id, key_id, model, day, requests,
                       prompt_tokens, completion_tokens, cost)
                     SELECT tenant_id, key_id, model, ?1, COUNT(*), SUM(prompt_tokens),
                       SUM(completion_tokens), SUM(cost)
                     FROM usage WHERE created_at >= ?2 AND created_at < ?3
                     GROUP BY tenant_id, key_id, model",
                    &[day.into(), from.into(), to.into()],
                )?,
                db::statement(
                    db,
                    "UPDATE cron_state SET value = MAX(value, ?2) WHERE name = ?1",
                    &[ROLLUP_MARK.into(), (day + 1).into()],
                )?,
            ],
        )
        .await?;
        done += 1;
    }
    Ok(done)
}
