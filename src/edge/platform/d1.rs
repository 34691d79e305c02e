//! D1 binding helpers: the database handle, bindable arguments (refusing integers a JavaScript
//! number cannot hold exactly) and the statement runners. No SQL lives here (`store` has it).

use serde::de::DeserializeOwned;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

use crate::core::billing::is_js_safe;
use crate::core::error::{ErrorKind, GatewayError};

/// The name of the D1 binding (wrangler.toml).
pub const BINDING: &str = "DB";

/// D1 statements this isolate has prepared (every statement goes through [`statement`]). A test
/// deployment (`TOLLGATE_TEST_DEPLOYMENT`) reports the difference over one request in its
/// `x-tollgate-d1-statements` header: the hot path's count, exact when requests run one at a time.
static STATEMENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// See [`STATEMENTS`].
pub fn statements_prepared() -> u64 {
    STATEMENTS.load(std::sync::atomic::Ordering::Relaxed)
}

pub fn database(env: &Env) -> Result<D1Database, GatewayError> {
    env.d1(BINDING)
        .map_err(|e| GatewayError::internal(format!("D1 binding DB is missing: {e}")))
}

/// A bindable value.
pub enum Arg<'a> {
    Str(&'a str),
    Int(i64),
    Null,
}

impl From<&Arg<'_>> for JsValue {
    fn from(a: &Arg<'_>) -> JsValue {
        match a {
            Arg::Str(s) => JsValue::from_str(s),
            Arg::Int(i) => JsValue::from_f64(*i as f64),
            Arg::Null => JsValue::NULL,
        }
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Str(s)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(s: &'a String) -> Self {
        Arg::Str(s)
    }
}

impl From<i64> for Arg<'_> {
    fn from(i: i64) -> Self {
        Arg::Int(i)
    }
}

impl From<u64> for Arg<'_> {
    fn from(i: u64) -> Self {
        Arg::Int(i64::try_from(i).unwrap_or(i64::MAX))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(s: Option<&'a str>) -> Self {
        s.map_or(Arg::Null, Arg::Str)
    }
}

impl From<Option<u64>> for Arg<'_> {
    fn from(i: Option<u64>) -> Self {
        i.map_or(Arg::Null, Arg::from)
    }
}

/// Refuses integers that a JavaScript number cannot hold exactly.
pub fn check_args(args: &[Arg<'_>]) -> Result<(), GatewayError> {
    for (i, a) in args.iter().enumerate() {
        if let Arg::Int(v) = a {
            if !is_js_safe(*v) {
                return Err(GatewayError::internal(format!(
                    "parameter ?{} = {v} is beyond 2^53 - 1 and cannot be stored exactly",
                    i + 1
                )));
            }
        }
    }
    Ok(())
}

pub fn d1_error(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::new(ErrorKind::Unavailable, format!("Database error: {e}"))
}

/// Prepares `sql` with `args`. An integer beyond 2⁵³ − 1 is refused (an internal error): D1 binds
/// numbers as JavaScript doubles, which would round it silently (a `u64` too large for `i64`
/// becomes `i64::MAX` in [`Arg::from`], so it is refused here too).
pub fn statement(
    db: &D1Database,
    sql: &str,
    args: &[Arg<'_>],
) -> Result<D1PreparedStatement, GatewayError> {
    check_args(args)?;
    STATEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let values: Vec<JsValue> = args.iter().map(JsValue::from).collect();
    db.prepare(sql).bind(&values).map_err(d1_error)
}

pub async fn first<T: DeserializeOwned>(
    db: &D1Database,
    sql: &str,
    args: &[Arg<'_>],
) -> Result<Option<T>, GatewayError> {
    statement(db, sql, args)?
        .first::<T>(None)
        .await
        .map_err(d1_error)
}

pub async fn all<T: DeserializeOwned>(
    db: &D1Database,
    sql: &str,
    args: &[Arg<'_>],
) -> Result<Vec<T>, GatewayError> {
    statement(db, sql, args)?
        .all()
        .await
        .map_err(d1_error)?
        .results::<T>()
        .map_err(d1_error)
}

/// Runs a write; returns the number of rows it changed, as D1 counts them (rows changed by
/// triggers included).
pub async fn run(db: &D1Database, sql: &str, args: &[Arg<'_>]) -> Result<usize, GatewayError> {
    let result = statement(db, sql, args)?.run().await.map_err(d1_error)?;
    Ok(result
        .meta()
        .map_err(d1_error)?
        .and_then(|m| m.changes)
        .unwrap_or(0))
}

/// Runs statements as one transaction; returns the rows changed by each.
pub async fn batch(
    db: &D1Database,
    statements: Vec<D1PreparedStatement>,
) -> Result<Vec<worker::D1Result>, GatewayError> {
    db.batch(statements).await.map_err(d1_error)
}
