//! Usage reports (`GET /v1/usage`, `GET /admin/usage`, `GET /v1/sessions/{id}/requests`), the
//! tenant's balance (`GET /v1/balance`) and the daily rollups that keep reports fast.
//!
//! The decisions (query parsing, which days come from rollups, grouping, CSV) are in
//! `core::reports`, `core::calendar` and `core::csv`; this module runs the SQL. A grouped report
//! reads `usage_daily` for whole days before the rollup watermark and raw `usage` rows for the
//! rest; both give the same integer sums, so a report does not change when a day is rolled up.

use serde_json::{json, Map, Value};
use worker::{D1Database, Env, Request, Response};

use crate::core::calendar::{Bucket, MAX_TIME_MS};
use crate::core::csv;
use crate::core::error::GatewayError;
use crate::core::reports::{
    plan, Aggregator, Format, ReportQuery, Scope, ADMIN_REQUEST_COLUMNS, TENANT_REQUEST_COLUMNS,
};
use crate::core::session::validate_session_path;
use crate::edge::api::http;
use crate::edge::platform::d1 as db;
use crate::edge::store;

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
    let caller = crate::edge::gateway::auth::live_caller(req, env).await?;
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
    let caller = crate::edge::gateway::auth::live_caller(req, env).await?;
    let session_id = validate_session_path(session_id)?;
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
    let (mut rows, has_more) = store::reports::usage_page(db, q, columns).await?;
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

/// The grouped report: partial sums from rollups and raw rows, merged in the core.
async fn grouped(db: &D1Database, q: &ReportQuery) -> Result<Response, GatewayError> {
    let Some(group) = q.group.clone() else {
        return Err(GatewayError::internal("grouped report without grouping"));
    };
    let through = if q.rollup_compatible() {
        store::reports::rolled_through(db).await?.unwrap_or(0)
    } else {
        0
    };
    let pieces = plan(q.start, q.end, through, q.rollup_compatible());
    let results = store::reports::grouped_partials(db, q, &group, &pieces).await?;
    let mut agg = Aggregator::new(group.clone());
    for partials in results {
        for p in &partials {
            agg.add(p);
        }
        if agg.len() > store::reports::MAX_GROUPS {
            return Err(GatewayError::invalid_param(
                "group_by",
                format!(
                    "The report has more than {} rows; narrow the time range or the grouping.",
                    store::reports::MAX_GROUPS
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
                ("api", &q.api),
                ("status", &q.status),
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
