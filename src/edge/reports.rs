//! Usage reports (`GET /v1/usage`, `GET /admin/usage`, `GET /v1/sessions/{id}/requests`), the
//! tenant's balance (`GET /v1/balance`) and the daily rollups that keep reports fast.
//!
//! The decisions (query parsing, which days come from rollups, grouping, CSV) are in
//! `core::reports`, `core::calendar` and `core::csv`; this module runs the SQL. A grouped report
//! reads `usage_daily` for whole days before the rollup watermark and raw `usage` rows for the
//! rest; both give the same integer sums, so a report does not change when a day is rolled up.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use worker::{D1Database, Env, Request, Response};

use super::{http, tenant};
use crate::core::calendar::{Bucket, DAY_MS, MAX_TIME_MS};
use crate::core::csv;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::reports::{
    plan, Aggregator, Format, PartialRow, ReportQuery, Scope, ADMIN_REQUEST_COLUMNS,
    TENANT_REQUEST_COLUMNS,
};
use crate::core::session::validate_session_id;
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::d1::{self as db, Arg};

/// The `cron_state` row of the rollup watermark.
pub const ROLLUP_MARK: &str = "usage_daily_through";

/// A grouped report may have at most this many rows (narrow the range or the grouping above it).
const MAX_GROUPS: usize = 100_000;

fn query_pairs(req: &Request) -> Result<Vec<(String, String)>, GatewayError> {
    let url = req
        .url()
        .map_err(|e| GatewayError::invalid_request(format!("Invalid URL: {e}")))?;
    Ok(url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

fn accept(req: &Request) -> Option<String> {
    req.headers().get("accept").ok().flatten()
}

/// `GET /v1/usage`: the caller's tenant's usage.
pub async fn tenant_usage(req: &Request, env: &Env) -> Result<Response, GatewayError> {
    let caller = tenant::live_caller(req, env).await?;
    let q = ReportQuery::parse(
        &query_pairs(req)?,
        accept(req).as_deref(),
        &Scope::Tenant(caller.tenant_id),
    )?;
    report(&db::database(env)?, &q, TENANT_REQUEST_COLUMNS).await
}

/// `GET /admin/usage`: any tenant's usage (the admin token is checked by the caller).
pub async fn admin_usage(db: &D1Database, req: &Request) -> Result<Response, GatewayError> {
    let q = ReportQuery::parse(&query_pairs(req)?, accept(req).as_deref(), &Scope::Admin)?;
    report(db, &q, ADMIN_REQUEST_COLUMNS).await
}

/// `GET /v1/sessions/{id}/requests`: one session's requests with their usage, newest first
/// (same parameters as `/v1/usage`, the session fixed).
pub async fn session_requests(
    req: &Request,
    env: &Env,
    session_id: &str,
) -> Result<Response, GatewayError> {
    let caller = tenant::live_caller(req, env).await?;
    let session_id = validate_session_id(session_id)?;
    let mut pairs = query_pairs(req)?;
    if pairs
        .iter()
        .any(|(k, _)| k == "session_id" || k == "session")
    {
        return Err(GatewayError::invalid_param(
            "session_id",
            "The session is given by the path.",
        ));
    }
    pairs.push(("session_id".into(), session_id.into()));
    let q = ReportQuery::parse(
        &pairs,
        accept(req).as_deref(),
        &Scope::Tenant(caller.tenant_id),
    )?;
    report(&db::database(env)?, &q, TENANT_REQUEST_COLUMNS).await
}

/// Equality filters of a query, as SQL conditions and their arguments.
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
    }
    add("model", &q.model);
    (conds, args)
}

async fn report(
    db: &D1Database,
    q: &ReportQuery,
    columns: &[&str],
) -> Result<Response, GatewayError> {
    match &q.group {
        None => list_requests(db, q, columns).await,
        Some(_) => grouped(db, q).await,
    }
}

/// The ungrouped report: usage rows, newest first, a page at a time.
async fn list_requests(
    db: &D1Database,
    q: &ReportQuery,
    columns: &[&str],
) -> Result<Response, GatewayError> {
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
    for row in &mut rows {
        // Stored as 0/1; reported as a boolean.
        if let Some(stream) = row.get_mut("stream") {
            *stream = json!(stream.as_i64().unwrap_or(0) != 0);
        }
    }
    let next_cursor = if has_more {
        rows.last()
            .and_then(|r| r.get("request_id"))
            .and_then(Value::as_str)
            .map(str::to_string)
    } else {
        None
    };
    match q.format {
        Format::Json => http::json(
            200,
            &json!({"object": "list", "data": rows, "has_more": has_more,
                    "next_cursor": next_cursor}),
        ),
        Format::Csv => {
            let mut resp = csv_response(csv::table(columns, &rows))?;
            if let Some(cursor) = next_cursor {
                let _ = resp.headers_mut().set("x-next-cursor", &cursor);
            }
            Ok(resp)
        }
    }
}

fn csv_response(text: String) -> Result<Response, GatewayError> {
    let mut resp = http::bytes_response(200, "text/csv; charset=utf-8", text.into_bytes())?;
    let _ = resp
        .headers_mut()
        .set("content-disposition", "attachment; filename=\"usage.csv\"");
    Ok(resp)
}

/// The first day not yet in `usage_daily` (0 before the first rollup).
async fn rolled_through(db: &D1Database) -> Result<Option<u64>, GatewayError> {
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

/// The grouped report: partial sums from rollups and raw rows, merged in the core.
async fn grouped(db: &D1Database, q: &ReportQuery) -> Result<Response, GatewayError> {
    let Some(group) = q.group.clone() else {
        return Err(GatewayError::internal("grouped report without grouping"));
    };
    let through = if q.rollup_compatible() {
        rolled_through(db).await?.unwrap_or(0)
    } else {
        0
    };
    let pieces = plan(q.start, q.end, through, q.rollup_compatible());
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

    let mut agg = Aggregator::new(group.clone());
    for result in db::batch(db, statements).await? {
        let partials: Vec<PartialRow> = result.results().map_err(db::d1_error)?;
        for p in &partials {
            agg.add(p);
        }
        if agg.len() > MAX_GROUPS {
            return Err(GatewayError::invalid_param(
                "group_by",
                format!(
                    "The report has more than {MAX_GROUPS} rows; narrow the time range or the grouping."
                ),
            ));
        }
    }
    let columns = group.columns();
    let report = agg.finish();
    match q.format {
        Format::Csv => csv_response(csv::table(&columns, &report.rows)),
        Format::Json => {
            let mut group_by: Vec<&str> = group
                .dims
                .iter()
                .map(|d| match d.column() {
                    "tenant_id" => "tenant",
                    "key_id" => "key",
                    "session_id" => "session",
                    other => other,
                })
                .collect();
            if let Some(b) = group.bucket {
                group_by.push(match b {
                    Bucket::Day => "day",
                    Bucket::Week => "week",
                    Bucket::Month => "month",
                });
            }
            let mut filters = Map::new();
            for (name, value) in [
                ("tenant_id", &q.tenant_id),
                ("key_id", &q.key_id),
                ("session_id", &q.session_id),
                ("model", &q.model),
            ] {
                if let Some(v) = value {
                    filters.insert(name.into(), json!(v));
                }
            }
            http::json(
                200,
                &json!({
                    "object": "usage_report",
                    "start": q.start,
                    "end": (q.end <= MAX_TIME_MS).then_some(q.end),
                    "group_by": group_by,
                    "filters": filters,
                    "columns": columns,
                    "rows": report.rows,
                    "totals": report.totals.to_json(),
                    "rollup_days": pieces.rollup_days.map_or(0, |(a, b)| b - a),
                }),
            )
        }
    }
}

/// `GET /v1/balance`: the tenant's balance, credit held by requests in flight, and this month.
pub async fn balance(req: &Request, env: &Env) -> Result<Response, GatewayError> {
    #[derive(Deserialize)]
    struct Row {
        balance: u64,
        debt: u64,
        reserved: u64,
        month_requests: u64,
        month_prompt_tokens: u64,
        month_completion_tokens: u64,
        month_cost: u64,
    }
    let caller = tenant::live_caller(req, env).await?;
    let month = crate::core::alerts::Observation::month_of(now_ms());
    let row: Option<Row> = db::first(
        &db::database(env)?,
        "SELECT t.balance, t.debt,
           (SELECT COALESCE(SUM(r.amount), 0) FROM reservations r WHERE r.tenant_id = t.id) AS reserved,
           COALESCE(m.requests, 0) AS month_requests,
           COALESCE(m.prompt_tokens, 0) AS month_prompt_tokens,
           COALESCE(m.completion_tokens, 0) AS month_completion_tokens,
           COALESCE(m.cost, 0) AS month_cost
         FROM tenants t LEFT JOIN usage_monthly m ON m.tenant_id = t.id AND m.month = ?2
         WHERE t.id = ?1",
        &[caller.tenant_id.as_str().into(), month.as_str().into()],
    )
    .await?;
    let row = row.ok_or_else(|| GatewayError::new(ErrorKind::NotFound, "No such tenant."))?;
    let display = |micros: u64| format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
    http::json(
        200,
        &json!({
            "object": "balance",
            "tenant_id": caller.tenant_id,
            "balance": row.balance,
            "debt": row.debt,
            "reserved": row.reserved,
            "total": row.balance + row.reserved,
            "balance_display": display(row.balance),
            "currency": {
                "unit": "micro",
                "micro_units_per_unit": 1_000_000,
                "explanation": "Amounts are integers in micro-units of the operator's currency: \
                    1,000,000 micro-units = 1.00. `balance` is spendable now; `reserved` is held \
                    for requests in flight and returns to the balance, less their cost, when they \
                    finish; `total` = balance + reserved. `debt` is what earlier requests cost \
                    beyond what could be taken; while it is above 0 new requests are refused, and \
                    credit pays it first.",
            },
            "month": {
                "period": month,
                "requests": row.month_requests,
                "prompt_tokens": row.month_prompt_tokens,
                "completion_tokens": row.month_completion_tokens,
                "total_tokens": row.month_prompt_tokens + row.month_completion_tokens,
                "cost": row.month_cost,
            },
        }),
    )
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
