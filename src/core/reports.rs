//! Usage reports: what a report asks for ([`ReportQuery`]), where its numbers come from
//! ([`plan`]: daily rollups for closed days, raw usage rows for the rest), and how partial sums
//! become rows and totals ([`Aggregator`]).
//!
//! Every number is an integer sum of integer columns, so a report is exact whichever source it
//! reads, and its totals are the sums of its rows: both are computed from the same partial sums.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::core::calendar::{self, Bucket, DAY_MS, MAX_TIME_MS};
use crate::core::error::GatewayError;
use crate::core::meter::RequestStatus;

/// Who is asking: a tenant sees only its own usage; the operator sees every tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Tenant(String),
    Admin,
}

/// A grouping dimension other than time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    Tenant,
    Key,
    Session,
    Model,
    /// The client API (`chat`, `responses`, `messages`): raw rows only, like sessions.
    Api,
}

impl Dimension {
    /// The usage column this dimension groups by.
    pub fn column(self) -> &'static str {
        match self {
            Dimension::Tenant => "tenant_id",
            Dimension::Key => "key_id",
            Dimension::Session => "session_id",
            Dimension::Model => "model",
            Dimension::Api => "api",
        }
    }
}

/// What a grouped report groups by: any of tenant (admin only), key, session, model, plus at
/// most one time bucket (day, week, month).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupBy {
    /// In a fixed order (tenant, key, session, model), without repeats.
    pub dims: Vec<Dimension>,
    pub bucket: Option<Bucket>,
}

impl GroupBy {
    /// Parses `group_by=model,day` (comma-separated, any order).
    pub fn parse(value: &str, scope: &Scope) -> Result<GroupBy, GatewayError> {
        let mut group = GroupBy::default();
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let dim = match part {
                "tenant" | "tenant_id" if *scope == Scope::Admin => Dimension::Tenant,
                "key" | "key_id" => Dimension::Key,
                "session" | "session_id" => Dimension::Session,
                "model" => Dimension::Model,
                "api" => Dimension::Api,
                "day" | "week" | "month" => {
                    let bucket = match part {
                        "day" => Bucket::Day,
                        "week" => Bucket::Week,
                        _ => Bucket::Month,
                    };
                    if group.bucket.is_some_and(|b| b != bucket) {
                        return Err(GatewayError::invalid_param(
                            "group_by",
                            "`group_by` takes at most one of day, week, month.",
                        ));
                    }
                    group.bucket = Some(bucket);
                    continue;
                }
                other => {
                    let allowed = if *scope == Scope::Admin {
                        "tenant, key, session, model, api, day, week, month"
                    } else {
                        "key, session, model, api, day, week, month"
                    };
                    return Err(GatewayError::invalid_param(
                        "group_by",
                        format!("Unknown `group_by` value `{other}`; allowed: {allowed}."),
                    ));
                }
            };
            if !group.dims.contains(&dim) {
                group.dims.push(dim);
            }
        }
        if group.dims.is_empty() && group.bucket.is_none() {
            return Err(GatewayError::invalid_param(
                "group_by",
                "`group_by` is empty; leave it out to list requests.",
            ));
        }
        group.dims.sort();
        Ok(group)
    }

    /// Whether daily rollups can answer this grouping (they are not kept per session or api).
    pub fn rollup_compatible(&self) -> bool {
        !self.dims.contains(&Dimension::Session) && !self.dims.contains(&Dimension::Api)
    }

    /// The CSV/JSON columns of a grouped report, in order.
    pub fn columns(&self) -> Vec<&'static str> {
        let mut cols = vec![];
        if self.bucket.is_some() {
            cols.extend(["period", "period_start"]);
        }
        cols.extend(self.dims.iter().map(|d| d.column()));
        cols.extend(TOTAL_COLUMNS);
        cols
    }
}

/// The sums every grouped row and the totals carry.
pub const TOTAL_COLUMNS: [&str; 5] = [
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
];

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

/// Most rows a request listing returns per page, and the default.
pub const MAX_PAGE: u32 = 1000;
pub const DEFAULT_PAGE: u32 = 100;

/// A parsed report request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    /// Inclusive, UTC ms.
    pub start: u64,
    /// Exclusive, UTC ms.
    pub end: u64,
    /// Forced to the caller's tenant for [`Scope::Tenant`].
    pub tenant_id: Option<String>,
    pub key_id: Option<String>,
    pub session_id: Option<String>,
    pub model: Option<String>,
    /// Only requests of this client API (`chat`, `responses`, `messages`).
    pub api: Option<String>,
    /// Only requests that ended this way (`ok`, `client_abort`, … as in `usage.status`).
    pub status: Option<String>,
    /// `None`: list requests (paginated).
    pub group: Option<GroupBy>,
    pub format: Format,
    pub limit: u32,
    /// List requests with ids strictly below this one (the previous page's `next_cursor`).
    pub cursor: Option<String>,
}

fn filter_value(param: &str, v: &str) -> Result<String, GatewayError> {
    if v.is_empty() || v.len() > 200 {
        return Err(GatewayError::invalid_param(
            param,
            format!("`{param}` must be 1 to 200 characters."),
        ));
    }
    Ok(v.to_string())
}

/// The values of `usage.status` (how a request ended), for the `status` filter.
pub const STATUSES: [RequestStatus; 6] = [
    RequestStatus::Ok,
    RequestStatus::ClientAbort,
    RequestStatus::UpstreamError,
    RequestStatus::Truncated,
    RequestStatus::UpstreamTimeout,
    RequestStatus::UpstreamUnusable,
];

fn status_value(v: &str) -> Result<String, GatewayError> {
    STATUSES
        .iter()
        .find(|s| s.as_str() == v)
        .map(|s| s.as_str().to_string())
        .ok_or_else(|| {
            let names: Vec<&str> = STATUSES.iter().map(|s| s.as_str()).collect();
            GatewayError::invalid_param(
                "status",
                format!("`status` must be one of {}.", names.join(", ")),
            )
        })
}

/// Whether `v` can be a list cursor: a request id as Tollgate writes them, `req_<ulid>` with an
/// optional `.r<n>` (a plugin tool loop's later rounds) or `.c<n>` suffix: dot-separated words of
/// `[A-Za-z0-9_]`, at most 80 bytes. Bound as a parameter, never spliced into SQL.
fn valid_cursor(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 80
        && v.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

impl ReportQuery {
    /// Parses query-string pairs. `accept` is the request's `Accept` header (CSV when it asks
    /// for `text/csv`; `format=csv|json` wins over it).
    pub fn parse(
        pairs: &[(String, String)],
        accept: Option<&str>,
        scope: &Scope,
    ) -> Result<ReportQuery, GatewayError> {
        let mut q = ReportQuery {
            start: 0,
            end: MAX_TIME_MS + 1,
            tenant_id: match scope {
                Scope::Tenant(t) => Some(t.clone()),
                Scope::Admin => None,
            },
            key_id: None,
            session_id: None,
            model: None,
            api: None,
            status: None,
            group: None,
            format: if accept.is_some_and(|a| a.to_ascii_lowercase().contains("text/csv")) {
                Format::Csv
            } else {
                Format::Json
            },
            limit: DEFAULT_PAGE,
            cursor: None,
        };
        for (k, v) in pairs {
            match k.as_str() {
                "start" | "from" => q.start = calendar::parse_time(k, v)?,
                "end" | "to" => q.end = calendar::parse_time(k, v)?,
                "tenant_id" | "tenant" if *scope == Scope::Admin => {
                    q.tenant_id = Some(filter_value(k, v)?)
                }
                "key_id" | "key" => q.key_id = Some(filter_value(k, v)?),
                "session_id" | "session" => q.session_id = Some(filter_value(k, v)?),
                "model" => q.model = Some(filter_value(k, v)?),
                "api" => q.api = Some(filter_value(k, v)?),
                "status" => q.status = Some(status_value(v)?),
                "group_by" => q.group = Some(GroupBy::parse(v, scope)?),
                "format" => {
                    q.format = match v.as_str() {
                        "csv" => Format::Csv,
                        "json" => Format::Json,
                        _ => {
                            return Err(GatewayError::invalid_param(
                                "format",
                                "`format` must be json or csv.",
                            ))
                        }
                    }
                }
                "limit" => {
                    q.limit = v
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| {
                            GatewayError::invalid_param(
                                "limit",
                                format!("`limit` must be an integer from 1 to {MAX_PAGE}."),
                            )
                        })?
                }
                "cursor" | "after" => {
                    if !valid_cursor(v) {
                        return Err(GatewayError::invalid_param(
                            "cursor",
                            "`cursor` must be the `next_cursor` of a previous page.",
                        ));
                    }
                    q.cursor = Some(v.clone());
                }
                other => {
                    return Err(GatewayError::invalid_param(
                        other,
                        format!("Unknown query parameter `{other}`."),
                    ))
                }
            }
        }
        if q.start >= q.end {
            return Err(GatewayError::invalid_param(
                "end",
                "`end` must be after `start` (the range is start inclusive, end exclusive).",
            ));
        }
        Ok(q)
    }

    /// Whether daily rollups may answer this query: grouped, not by session or api, no session,
    /// api or status filter (the rollups sum every status together).
    pub fn rollup_compatible(&self) -> bool {
        self.session_id.is_none()
            && self.api.is_none()
            && self.status.is_none()
            && self.group.as_ref().is_some_and(GroupBy::rollup_compatible)
    }
}

/// Where a report's numbers come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Whole UTC days `[from, to)` read from the daily rollups.
    pub rollup_days: Option<(u64, u64)>,
    /// Millisecond ranges `[from, to)` read from raw usage rows.
    pub raw: Vec<(u64, u64)>,
}

/// Splits `[start, end)` into whole days that are rolled up (every day before
/// `rolled_through_day`) and raw ranges for the partial days at the edges and the days not
/// rolled up yet. Without `rollups_allowed`, everything is raw.
pub fn plan(start: u64, end: u64, rolled_through_day: u64, rollups_allowed: bool) -> Plan {
    if start >= end {
        return Plan::default();
    }
    let first_full = start.div_ceil(DAY_MS);
    let end_full = (end / DAY_MS).min(rolled_through_day);
    if !rollups_allowed || first_full >= end_full {
        return Plan {
            rollup_days: None,
            raw: vec![(start, end)],
        };
    }
    let mut raw = vec![];
    if start < first_full * DAY_MS {
        raw.push((start, first_full * DAY_MS));
    }
    if end_full * DAY_MS < end {
        raw.push((end_full * DAY_MS, end));
    }
    Plan {
        rollup_days: Some((first_full, end_full)),
        raw,
    }
}

/// Partial sums as one SQL query returns them: the grouped columns present, `day` when a time
/// bucket is asked for.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct PartialRow {
    pub tenant_id: Option<String>,
    pub key_id: Option<String>,
    pub session_id: Option<String>,
    pub model: Option<String>,
    #[serde(default)]
    pub api: Option<String>,
    pub day: Option<u64>,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: u64,
}

/// Integer sums of a group (or of a whole report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: u64,
}

impl Sums {
    fn add(&mut self, other: &Sums) {
        self.requests += other.requests;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cost += other.cost;
    }

    fn write(&self, obj: &mut Map<String, Value>) {
        obj.insert("requests".into(), json!(self.requests));
        obj.insert("prompt_tokens".into(), json!(self.prompt_tokens));
        obj.insert("completion_tokens".into(), json!(self.completion_tokens));
        obj.insert(
            "total_tokens".into(),
            json!(self.prompt_tokens + self.completion_tokens),
        );
        obj.insert("cost".into(), json!(self.cost));
    }

    /// As a JSON object.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        self.write(&mut obj);
        Value::Object(obj)
    }
}

/// Merges partial sums from any number of queries into grouped rows.
#[derive(Debug)]
pub struct Aggregator {
    group: GroupBy,
    /// Key: (first day of the bucket, grouped values in `group.dims` order).
    groups: BTreeMap<(Option<u64>, Vec<Option<String>>), Sums>,
}

/// A finished grouped report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub rows: Vec<Value>,
    pub totals: Sums,
}

impl Aggregator {
    pub fn new(group: GroupBy) -> Self {
        Aggregator {
            group,
            groups: BTreeMap::new(),
        }
    }

    /// Number of groups so far.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether no partial sum has been added.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Adds one partial row into its group.
    pub fn add(&mut self, row: &PartialRow) {
        let bucket_day = self.group.bucket.map(|b| b.start_day(row.day.unwrap_or(0)));
        let values = self
            .group
            .dims
            .iter()
            .map(|d| match d {
                Dimension::Tenant => row.tenant_id.clone(),
                Dimension::Key => row.key_id.clone(),
                Dimension::Session => row.session_id.clone(),
                Dimension::Model => row.model.clone(),
                Dimension::Api => row.api.clone(),
            })
            .collect();
        self.groups
            .entry((bucket_day, values))
            .or_default()
            .add(&Sums {
                requests: row.requests,
                prompt_tokens: row.prompt_tokens,
                completion_tokens: row.completion_tokens,
                cost: row.cost,
            });
    }

    /// Rows sorted by period, then by the grouped values; totals are the sums of the rows.
    pub fn finish(self) -> Report {
        let mut totals = Sums::default();
        let mut rows = Vec::with_capacity(self.groups.len());
        for ((day, values), sums) in self.groups {
            totals.add(&sums);
            let mut obj = Map::new();
            if let (Some(bucket), Some(day)) = (self.group.bucket, day) {
                obj.insert("period".into(), json!(bucket.label(day)));
                obj.insert("period_start".into(), json!(day * DAY_MS));
            }
            for (dim, value) in self.group.dims.iter().zip(values) {
                obj.insert(dim.column().into(), json!(value));
            }
            sums.write(&mut obj);
            rows.push(Value::Object(obj));
        }
        Report { rows, totals }
    }
}

/// Columns of a request listing for a tenant.
pub const TENANT_REQUEST_COLUMNS: &[&str] = &[
    "request_id",
    "created_at",
    "key_id",
    "session_id",
    "model",
    "api",
    "unit",
    "quantity",
    "unit_price",
    "stream",
    "status",
    "http_status",
    "error_code",
    "prompt_tokens",
    "completion_tokens",
    "usage_source",
    "input_price",
    "output_price",
    "cost",
    "latency_ms",
    "ttfb_ms",
];

/// Columns of a request listing for the operator: everything in the usage row.
pub const ADMIN_REQUEST_COLUMNS: &[&str] = &[
    "request_id",
    "created_at",
    "tenant_id",
    "key_id",
    "session_id",
    "model",
    "provider",
    "upstream_model",
    "api",
    "unit",
    "quantity",
    "unit_price",
    "image_input_tokens",
    "audio_input_tokens",
    "stream",
    "status",
    "http_status",
    "error_code",
    "prompt_tokens",
    "completion_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "long_context",
    "upstream_prompt_tokens",
    "upstream_completion_tokens",
    "local_prompt_tokens",
    "local_completion_tokens",
    "usage_source",
    "input_price",
    "output_price",
    "reserved",
    "cost",
    "uncharged",
    "allowance_cost",
    "beyond_reservation",
    "debt",
    "latency_ms",
    "ttfb_ms",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::calendar::{days_from_civil, Date};

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tenant() -> Scope {
        Scope::Tenant("ten_a".into())
    }

    #[test]
    fn parses_a_grouped_query() {
        let q = ReportQuery::parse(
            &pairs(&[
                ("start", "2026-11-01"),
                ("end", "1796083200000"),
                ("group_by", "day,model,key"),
                ("model", "gpt-4o"),
            ]),
            None,
            &tenant(),
        )
        .unwrap();
        assert_eq!(
            q.start,
            days_from_civil(Date {
                year: 2026,
                month: 11,
                day: 1
            }) * DAY_MS
        );
        assert_eq!(q.end, 1_796_083_200_000);
        assert_eq!(q.tenant_id.as_deref(), Some("ten_a"));
        let g = q.group.clone().unwrap();
        assert_eq!(g.dims, vec![Dimension::Key, Dimension::Model]);
        assert_eq!(g.bucket, Some(Bucket::Day));
        assert_eq!(
            g.columns(),
            vec![
                "period",
                "period_start",
                "key_id",
                "model",
                "requests",
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
                "cost"
            ]
        );
        assert_eq!(q.format, Format::Json);
        assert!(q.rollup_compatible());
    }

    #[test]
    fn format_from_accept_or_param() {
        let csv = ReportQuery::parse(&[], Some("text/csv"), &Scope::Admin).unwrap();
        assert_eq!(csv.format, Format::Csv);
        let json = ReportQuery::parse(
            &pairs(&[("format", "json")]),
            Some("text/csv"),
            &Scope::Admin,
        )
        .unwrap();
        assert_eq!(json.format, Format::Json);
        let csv = ReportQuery::parse(&pairs(&[("format", "csv")]), None, &Scope::Admin).unwrap();
        assert_eq!(csv.format, Format::Csv);
    }

    #[test]
    fn tenants_cannot_widen_their_scope() {
        // A tenant's tenant_id parameter is unknown, and grouping by tenant is refused.
        let err =
            ReportQuery::parse(&pairs(&[("tenant_id", "ten_b")]), None, &tenant()).unwrap_err();
        assert_eq!(err.status(), 400);
        let err =
            ReportQuery::parse(&pairs(&[("group_by", "tenant")]), None, &tenant()).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("group_by"));
        let admin = ReportQuery::parse(
            &pairs(&[("tenant_id", "ten_b"), ("group_by", "tenant")]),
            None,
            &Scope::Admin,
        )
        .unwrap();
        assert_eq!(admin.tenant_id.as_deref(), Some("ten_b"));
    }

    #[test]
    fn cursors_accept_every_request_id_tollgate_writes() {
        // A request, a plugin tool loop's later rounds (`.r1`) and plugin-call holds (`.c1`).
        for id in [
            "req_01kb0z7y3x2w1v0t9s8r7q6p5n",
            "req_01kb0z7y3x2w1v0t9s8r7q6p5n.r1",
            "req_01kb0z7y3x2w1v0t9s8r7q6p5n.r12",
            "req_01kb0z7y3x2w1v0t9s8r7q6p5n.c3",
        ] {
            let q = ReportQuery::parse(&pairs(&[("cursor", id)]), None, &Scope::Admin).unwrap();
            assert_eq!(q.cursor.as_deref(), Some(id));
        }
        for bad in [
            "",
            ".",
            "req_1..r1",
            "req_1.",
            ".r1",
            "req_1 r1",
            "req_1;--",
            "req_1.r1'",
        ] {
            assert!(!valid_cursor(bad), "{bad:?}");
        }
        assert!(!valid_cursor(&"a".repeat(81)));
    }

    #[test]
    fn rejects_bad_queries() {
        for q in [
            vec![("group_by", "day,week")],
            vec![("group_by", "colour")],
            vec![("group_by", "")],
            vec![("limit", "0")],
            vec![("limit", "1001")],
            vec![("cursor", "req_'--")],
            vec![("format", "xml")],
            vec![("start", "2026-11-02"), ("end", "2026-11-01")],
            vec![("start", "2026-11-01"), ("end", "2026-11-01")],
            vec![("bogus", "1")],
        ] {
            assert!(
                ReportQuery::parse(&pairs(&q), None, &Scope::Admin).is_err(),
                "{q:?}"
            );
        }
    }

    #[test]
    fn sessions_are_never_rolled_up() {
        let by_session =
            ReportQuery::parse(&pairs(&[("group_by", "session,day")]), None, &Scope::Admin)
                .unwrap();
        assert!(!by_session.rollup_compatible());
        let filtered = ReportQuery::parse(
            &pairs(&[("group_by", "day"), ("session_id", "s1")]),
            None,
            &Scope::Admin,
        )
        .unwrap();
        assert!(!filtered.rollup_compatible());
        let listing = ReportQuery::parse(&[], None, &Scope::Admin).unwrap();
        assert!(!listing.rollup_compatible());
    }

    #[test]
    fn plans_rollups_for_whole_closed_days_only() {
        let d = DAY_MS;
        // Rolled up through day 10 (days 0..10 closed). Range 2.5 days .. 12.25 days.
        let p = plan(2 * d + d / 2, 12 * d + d / 4, 10, true);
        assert_eq!(p.rollup_days, Some((3, 10)));
        assert_eq!(
            p.raw,
            vec![(2 * d + d / 2, 3 * d), (10 * d, 12 * d + d / 4)]
        );
        // Aligned range inside the rolled-up days: no raw reads at all.
        let p = plan(3 * d, 5 * d, 10, true);
        assert_eq!(p.rollup_days, Some((3, 5)));
        assert!(p.raw.is_empty());
        // Nothing rolled up in range, or rollups not allowed: everything raw.
        assert_eq!(plan(3 * d, 5 * d, 3, true).raw, vec![(3 * d, 5 * d)]);
        assert_eq!(plan(3 * d, 5 * d, 10, false).raw, vec![(3 * d, 5 * d)]);
        // Less than a day.
        assert_eq!(
            plan(3 * d + 1, 4 * d - 1, 10, true).raw,
            vec![(3 * d + 1, 4 * d - 1)]
        );
        // The pieces always tile the range exactly.
        for (start, end, through) in [(0, 50 * d, 20), (7, 9 * d + 3, 4), (d, 2 * d, 2), (5, 6, 0)]
        {
            let p = plan(start, end, through, true);
            let mut pieces: Vec<(u64, u64)> = p.raw.clone();
            if let Some((a, b)) = p.rollup_days {
                pieces.push((a * d, b * d));
                assert!(b <= through);
            }
            pieces.sort();
            assert_eq!(pieces.first().unwrap().0, start);
            assert_eq!(pieces.last().unwrap().1, end);
            for w in pieces.windows(2) {
                assert_eq!(w[0].1, w[1].0);
            }
        }
    }

    fn partial(key: &str, model: &str, day: u64, n: u64) -> PartialRow {
        PartialRow {
            key_id: Some(key.into()),
            model: Some(model.into()),
            day: Some(day),
            requests: n,
            prompt_tokens: 10 * n,
            completion_tokens: 3 * n,
            cost: 7 * n + 1,
            ..PartialRow::default()
        }
    }

    #[test]
    fn aggregates_across_sources_into_buckets() {
        let mon = days_from_civil(Date {
            year: 2026,
            month: 11,
            day: 23,
        });
        let group = GroupBy {
            dims: vec![Dimension::Model],
            bucket: Some(Bucket::Week),
        };
        let mut agg = Aggregator::new(group);
        // The same week from a rollup (Monday, Tuesday) and raw rows (Sunday), plus the next week.
        agg.add(&partial("k1", "m1", mon, 2));
        agg.add(&partial("k2", "m1", mon + 1, 3));
        agg.add(&partial("k1", "m1", mon + 6, 1));
        agg.add(&partial("k1", "m2", mon + 6, 4));
        agg.add(&partial("k1", "m1", mon + 7, 5));
        let report = agg.finish();
        assert_eq!(report.rows.len(), 3);
        assert_eq!(report.rows[0]["period"], "2026-W48");
        assert_eq!(report.rows[0]["period_start"], mon * DAY_MS);
        assert_eq!(report.rows[0]["model"], "m1");
        assert_eq!(report.rows[0]["requests"], 6);
        assert_eq!(report.rows[0]["cost"], 7 * 6 + 3);
        assert_eq!(report.rows[1]["model"], "m2");
        assert_eq!(report.rows[2]["period"], "2026-W49");
        // Totals are exactly the sums of the rows.
        let sum = |f: &str| {
            report
                .rows
                .iter()
                .map(|r| r[f].as_u64().unwrap())
                .sum::<u64>()
        };
        assert_eq!(report.totals.requests, sum("requests"));
        assert_eq!(report.totals.prompt_tokens, sum("prompt_tokens"));
        assert_eq!(report.totals.completion_tokens, sum("completion_tokens"));
        assert_eq!(report.totals.cost, sum("cost"));
        assert_eq!(report.totals.requests, 15);
        assert_eq!(report.totals.cost, 7 * 15 + 5);
        assert_eq!(
            report.rows[0]["total_tokens"].as_u64().unwrap(),
            report.rows[0]["prompt_tokens"].as_u64().unwrap()
                + report.rows[0]["completion_tokens"].as_u64().unwrap()
        );
    }

    #[test]
    fn grouping_is_independent_of_how_days_are_split() {
        // The same usage, summed per day (a rollup) or per row (raw), gives the same report.
        let group = GroupBy {
            dims: vec![Dimension::Key],
            bucket: Some(Bucket::Month),
        };
        let day = days_from_civil(Date {
            year: 2026,
            month: 10,
            day: 30,
        });
        let mut per_row = Aggregator::new(group.clone());
        let mut per_day = Aggregator::new(group);
        for offset in 0..5 {
            for _ in 0..3 {
                per_row.add(&partial("k", "m", day + offset, 1));
            }
            per_day.add(&PartialRow {
                cost: 3 * 8,
                ..partial("k", "m", day + offset, 3)
            });
        }
        let (a, b) = (per_row.finish(), per_day.finish());
        assert_eq!(a, b);
        assert_eq!(a.rows.len(), 2, "October and November");
        assert_eq!(a.rows[0]["period"], "2026-10");
        assert_eq!(a.rows[1]["period"], "2026-11");
    }

    #[test]
    fn ungrouped_time_only_and_nulls() {
        let mut agg = Aggregator::new(GroupBy {
            dims: vec![Dimension::Session],
            bucket: None,
        });
        agg.add(&PartialRow {
            session_id: None,
            requests: 1,
            ..PartialRow::default()
        });
        agg.add(&PartialRow {
            session_id: Some("s".into()),
            requests: 2,
            ..PartialRow::default()
        });
        let r = agg.finish();
        assert_eq!(r.rows[0]["session_id"], Value::Null);
        assert_eq!(r.rows[1]["session_id"], "s");
        assert!(r.rows[0].get("period").is_none());
    }

    #[test]
    fn status_filter_takes_the_recorded_statuses_and_keeps_off_rollups() {
        // Every way a request can end is a valid filter (the match fails to compile when a status
        // is added, so that STATUSES is extended with it).
        for s in STATUSES {
            match s {
                RequestStatus::Ok
                | RequestStatus::ClientAbort
                | RequestStatus::UpstreamError
                | RequestStatus::Truncated
                | RequestStatus::UpstreamTimeout
                | RequestStatus::UpstreamUnusable => {}
            }
            let q = ReportQuery::parse(&pairs(&[("status", s.as_str())]), None, &tenant()).unwrap();
            assert_eq!(q.status.as_deref(), Some(s.as_str()));
        }
        let q = ReportQuery::parse(
            &pairs(&[("group_by", "day,model"), ("status", "client_abort")]),
            None,
            &tenant(),
        )
        .unwrap();
        assert!(!q.rollup_compatible(), "rollups sum every status together");
        let q = ReportQuery::parse(&pairs(&[("group_by", "day,model")]), None, &tenant()).unwrap();
        assert!(q.rollup_compatible());
        for bad in ["", "OK", "aborted", "ok "] {
            let e = ReportQuery::parse(&pairs(&[("status", bad)]), None, &tenant()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("status"), "{bad:?}");
        }
    }

    #[test]
    fn reports_by_api_read_raw_rows() {
        let q = ReportQuery::parse(
            &pairs(&[("group_by", "api,model"), ("api", "messages")]),
            None,
            &tenant(),
        )
        .unwrap();
        let g = q.group.clone().unwrap();
        assert_eq!(g.dims, vec![Dimension::Model, Dimension::Api]);
        assert_eq!(g.columns()[..2], ["model", "api"]);
        assert!(!g.rollup_compatible(), "rollups keep no api");
        assert_eq!(q.api.as_deref(), Some("messages"));
        assert!(!q.rollup_compatible());
        // The api filter alone also keeps the query off the rollups.
        let q = ReportQuery::parse(
            &pairs(&[("group_by", "model"), ("api", "responses")]),
            None,
            &tenant(),
        )
        .unwrap();
        assert!(q.group.as_ref().unwrap().rollup_compatible());
        assert!(!q.rollup_compatible());
        let mut agg = Aggregator::new(GroupBy {
            dims: vec![Dimension::Api],
            bucket: None,
        });
        for (api, cost) in [("chat", 5), ("messages", 7), ("chat", 1)] {
            agg.add(&PartialRow {
                api: Some(api.into()),
                requests: 1,
                cost,
                ..PartialRow::default()
            });
        }
        let r = agg.finish();
        assert_eq!(r.rows[0]["api"], "chat");
        assert_eq!(r.rows[0]["cost"], 6);
        assert_eq!(r.rows[1]["api"], "messages");
        assert!(TENANT_REQUEST_COLUMNS.contains(&"api") && ADMIN_REQUEST_COLUMNS.contains(&"api"));
        // What a media row metered (docs/media.md) is listed for tenants and the operator.
        for c in ["unit", "quantity", "unit_price"] {
            assert!(TENANT_REQUEST_COLUMNS.contains(&c) && ADMIN_REQUEST_COLUMNS.contains(&c));
        }
    }
}
