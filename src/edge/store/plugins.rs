//! D1 statements of the plugin feature (tables in schema/0006_plugins.sql). Kept beside the
//! feature rather than in `db.rs`; they use the same helpers.

use serde::{Deserialize, Serialize};
use worker::D1Database;

use crate::core::error::GatewayError;
use crate::core::plugins::Manifest;
use crate::edge::platform::d1::{self as db, Arg};
use crate::edge::platform::ttl_cache::{self, Ttl};

thread_local! {
    /// Tenant id → the plugins it has enabled ([`enabled_for_tenant`]).
    static PLUGINS: Ttl<Vec<Enabled>> = Ttl::new();
}

/// A registered plugin as stored.
#[derive(Debug, Clone, Deserialize)]
pub struct PluginRow {
    pub id: String,
    pub manifest: String,
    pub price_per_call: u64,
    pub created_at: u64,
    pub updated_at: u64,
}

impl PluginRow {
    /// The stored manifest (validated when it was registered).
    pub fn manifest(&self) -> Result<Manifest, GatewayError> {
        serde_json::from_str(&self.manifest).map_err(|e| {
            GatewayError::internal(format!(
                "stored manifest of plugin `{}` is unreadable: {e}",
                self.id
            ))
        })
    }
}

/// A plugin a tenant has enabled, with its sealed settings.
#[derive(Debug, Clone)]
pub struct Enabled {
    pub manifest: Manifest,
    pub price_per_call: u64,
    pub is_default: bool,
    pub sealed_settings: Option<String>,
}

impl Enabled {
    pub fn id(&self) -> &str {
        &self.manifest.identifier
    }
}

pub async fn get_plugin(db: &D1Database, id: &str) -> Result<Option<PluginRow>, GatewayError> {
    db::first(
        db,
        "SELECT id, manifest, price_per_call, created_at, updated_at FROM plugins WHERE id = ?1",
        &[id.into()],
    )
    .await
}

pub async fn list_plugins(db: &D1Database) -> Result<Vec<PluginRow>, GatewayError> {
    db::all(
        db,
        "SELECT id, manifest, price_per_call, created_at, updated_at FROM plugins ORDER BY id",
        &[],
    )
    .await
}

/// Registers or replaces a plugin; returns whether it was new.
pub async fn put_plugin(
    db: &D1Database,
    id: &str,
    manifest_json: &str,
    price_per_call: u64,
    now: u64,
) -> Result<bool, GatewayError> {
    let existed = get_plugin(db, id).await?.is_some();
    db::run(
        db,
        "INSERT INTO plugins (id, manifest, price_per_call, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (id) DO UPDATE SET manifest = excluded.manifest,
           price_per_call = excluded.price_per_call, updated_at = excluded.updated_at",
        &[
            id.into(),
            manifest_json.into(),
            price_per_call.into(),
            now.into(),
        ],
    )
    .await?;
    Ok(!existed)
}

/// Removes a plugin and every tenant's enablement of it; returns whether it existed.
pub async fn delete_plugin(db: &D1Database, id: &str) -> Result<bool, GatewayError> {
    let results = db::batch(
        db,
        vec![
            db::statement(
                db,
                "DELETE FROM tenant_plugins WHERE plugin_id = ?1",
                &[id.into()],
            )?,
            db::statement(
                db,
                "DELETE FROM plugins WHERE id = ?1 RETURNING id",
                &[id.into()],
            )?,
        ],
    )
    .await?;
    Ok(results
        .get(1)
        .and_then(|r| r.results::<serde_json::Value>().ok())
        .is_some_and(|rows| !rows.is_empty()))
}

#[derive(Deserialize)]
struct EnabledRow {
    manifest: String,
    price_per_call: u64,
    is_default: i64,
    settings: Option<String>,
    plugin_id: String,
}

/// Every plugin the tenant has enabled (from the isolate's cache when fresh, `edge::platform::ttl_cache`:
/// every chat request asks, most tenants have none).
pub async fn enabled_for_tenant(
    db: &D1Database,
    tenant_id: &str,
) -> Result<Vec<Enabled>, GatewayError> {
    let enabled = ttl_cache::get_or_load(&PLUGINS, tenant_id.to_string(), || async {
        load_enabled(db, tenant_id).await.map(Some)
    })
    .await?;
    Ok(enabled.map(|e| e.as_ref().clone()).unwrap_or_default())
}

async fn load_enabled(db: &D1Database, tenant_id: &str) -> Result<Vec<Enabled>, GatewayError> {
    let rows: Vec<EnabledRow> = db::all(
        db,
        "SELECT p.manifest, p.price_per_call, tp.is_default, tp.settings, tp.plugin_id
         FROM tenant_plugins tp JOIN plugins p ON p.id = tp.plugin_id
         WHERE tp.tenant_id = ?1 ORDER BY tp.plugin_id",
        &[tenant_id.into()],
    )
    .await?;
    rows.into_iter()
        .map(|r| {
            let manifest: Manifest = serde_json::from_str(&r.manifest).map_err(|e| {
                GatewayError::internal(format!(
                    "stored manifest of plugin `{}` is unreadable: {e}",
                    r.plugin_id
                ))
            })?;
            Ok(Enabled {
                manifest,
                price_per_call: r.price_per_call,
                is_default: r.is_default != 0,
                sealed_settings: r.settings,
            })
        })
        .collect()
}

/// A tenant's enablement, as the admin API shows it (never the settings themselves).
#[derive(Debug, Serialize, Deserialize)]
pub struct EnablementView {
    pub tenant_id: String,
    pub plugin_id: String,
    pub default: bool,
    pub has_settings: bool,
    pub created_at: u64,
    pub updated_at: u64,
}

const ENABLEMENT_SELECT: &str = "SELECT tenant_id, plugin_id, is_default != 0 AS \"default\",
    settings IS NOT NULL AS has_settings, created_at, updated_at FROM tenant_plugins";

#[derive(Deserialize)]
struct EnablementRaw {
    tenant_id: String,
    plugin_id: String,
    default: i64,
    has_settings: i64,
    created_at: u64,
    updated_at: u64,
}

impl From<EnablementRaw> for EnablementView {
    fn from(r: EnablementRaw) -> Self {
        EnablementView {
            tenant_id: r.tenant_id,
            plugin_id: r.plugin_id,
            default: r.default != 0,
            has_settings: r.has_settings != 0,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

pub async fn list_enablements(
    db: &D1Database,
    tenant_id: &str,
) -> Result<Vec<EnablementView>, GatewayError> {
    let rows: Vec<EnablementRaw> = db::all(
        db,
        &format!("{ENABLEMENT_SELECT} WHERE tenant_id = ?1 ORDER BY plugin_id"),
        &[tenant_id.into()],
    )
    .await?;
    Ok(rows.into_iter().map(EnablementView::from).collect())
}

pub async fn get_enablement(
    db: &D1Database,
    tenant_id: &str,
    plugin_id: &str,
) -> Result<Option<EnablementView>, GatewayError> {
    let row: Option<EnablementRaw> = db::first(
        db,
        &format!("{ENABLEMENT_SELECT} WHERE tenant_id = ?1 AND plugin_id = ?2"),
        &[tenant_id.into(), plugin_id.into()],
    )
    .await?;
    Ok(row.map(EnablementView::from))
}

/// What an enablement update changes.
pub enum SettingsChange {
    Keep,
    Clear,
    Set(String),
}

/// Enables a plugin for a tenant, or updates the enablement.
pub async fn put_enablement(
    db: &D1Database,
    tenant_id: &str,
    plugin_id: &str,
    is_default: Option<bool>,
    settings: SettingsChange,
    now: u64,
) -> Result<(), GatewayError> {
    let (set_settings, value): (i64, Arg<'_>) = match &settings {
        SettingsChange::Keep => (0, Arg::Null),
        SettingsChange::Clear => (1, Arg::Null),
        SettingsChange::Set(s) => (1, Arg::Str(s)),
    };
    let default_arg: Arg<'_> = match is_default {
        Some(d) => Arg::Int(i64::from(d)),
        None => Arg::Null,
    };
    db::run(
        db,
        "INSERT INTO tenant_plugins (tenant_id, plugin_id, is_default, settings, created_at, updated_at)
         VALUES (?1, ?2, COALESCE(?3, 0), ?5, ?6, ?6)
         ON CONFLICT (tenant_id, plugin_id) DO UPDATE SET
           is_default = COALESCE(?3, is_default),
           settings = CASE WHEN ?4 = 1 THEN ?5 ELSE settings END,
           updated_at = ?6",
        &[
            tenant_id.into(),
            plugin_id.into(),
            default_arg,
            set_settings.into(),
            value,
            now.into(),
        ],
    )
    .await?;
    Ok(())
}

/// The sealed settings of an enablement, if any.
pub async fn sealed_settings(
    db: &D1Database,
    tenant_id: &str,
    plugin_id: &str,
) -> Result<Option<String>, GatewayError> {
    #[derive(Deserialize)]
    struct Row {
        settings: Option<String>,
    }
    let row: Option<Row> = db::first(
        db,
        "SELECT settings FROM tenant_plugins WHERE tenant_id = ?1 AND plugin_id = ?2",
        &[tenant_id.into(), plugin_id.into()],
    )
    .await?;
    Ok(row.and_then(|r| r.settings))
}

pub async fn delete_enablement(
    db: &D1Database,
    tenant_id: &str,
    plugin_id: &str,
) -> Result<bool, GatewayError> {
    let gone: Option<serde_json::Value> = db::first(
        db,
        "DELETE FROM tenant_plugins WHERE tenant_id = ?1 AND plugin_id = ?2 RETURNING plugin_id",
        &[tenant_id.into(), plugin_id.into()],
    )
    .await?;
    Ok(gone.is_some())
}

/// One plugin invocation, as recorded.
pub struct CallRecord<'a> {
    pub id: &'a str,
    pub request_id: &'a str,
    pub tenant_id: &'a str,
    pub key_id: &'a str,
    pub session_id: &'a str,
    pub plugin_id: &'a str,
    pub api: &'a str,
    pub mode: &'a str,
    pub status: &'a str,
    pub http_status: Option<u16>,
    pub latency_ms: u64,
    pub cost: u64,
    pub created_at: u64,
}

/// Records a call in one batch: inserts the row, whose trigger (schema/0007) charges `cost` from
/// the call's price reservation (allowance part, then balance part), then the allowance, the
/// balance and debt, and returns what the reservation held beyond it; then deletes the
/// reservation (only needed when the row already existed). Safe to repeat.
pub async fn record_call(db: &D1Database, c: &CallRecord<'_>) -> Result<(), GatewayError> {
    db::batch(
        db,
        vec![
            db::statement(
                db,
                "INSERT OR IGNORE INTO plugin_calls (id, request_id, tenant_id, key_id, session_id,
                   plugin_id, api, mode, status, http_status, latency_ms, cost, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                &[
                    c.id.into(),
                    c.request_id.into(),
                    c.tenant_id.into(),
                    c.key_id.into(),
                    c.session_id.into(),
                    c.plugin_id.into(),
                    c.api.into(),
                    c.mode.into(),
                    c.status.into(),
                    c.http_status.map(u64::from).into(),
                    c.latency_ms.into(),
                    c.cost.into(),
                    c.created_at.into(),
                ],
            )?,
            db::statement(db, "DELETE FROM reservations WHERE id = ?1", &[c.id.into()])?,
        ],
    )
    .await?;
    Ok(())
}

/// [`record_call`], retried like a settlement (the batch is idempotent); when every attempt
/// fails, the record is kept in KV for the scheduled handler to write (`edge::cron`), so no
/// call row, and no charge, is lost. The price stays reserved meanwhile.
pub async fn record_call_durably(env: &worker::Env, db: &D1Database, c: &CallRecord<'_>) {
    const ATTEMPTS: u32 = 3;
    let fault = crate::edge::platform::env::settings(env).fault("record_call_d1");
    for attempt in 1..=ATTEMPTS {
        let result = if fault {
            Err(db::d1_error(
                "injected fault record_call_d1 (TOLLGATE_FAULTS)",
            ))
        } else {
            record_call(db, c).await
        };
        match result {
            Ok(()) => return,
            Err(e) => {
                worker::console_error!("recording plugin call {} failed ({attempt}): {e}", c.id)
            }
        }
    }
    let row = CallRow::from(c);
    let json = serde_json::to_string(&row).unwrap_or_default();
    super::pending::keep_pending_call(env, &row.id, &json).await;
}

/// A [`CallRecord`] that owns its strings: what is kept in KV for replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRow {
    pub id: String,
    pub request_id: String,
    pub tenant_id: String,
    pub key_id: String,
    pub session_id: String,
    pub plugin_id: String,
    pub api: String,
    pub mode: String,
    pub status: String,
    pub http_status: Option<u16>,
    pub latency_ms: u64,
    pub cost: u64,
    pub created_at: u64,
}

impl From<&CallRecord<'_>> for CallRow {
    fn from(c: &CallRecord<'_>) -> Self {
        CallRow {
            id: c.id.to_string(),
            request_id: c.request_id.to_string(),
            tenant_id: c.tenant_id.to_string(),
            key_id: c.key_id.to_string(),
            session_id: c.session_id.to_string(),
            plugin_id: c.plugin_id.to_string(),
            api: c.api.to_string(),
            mode: c.mode.to_string(),
            status: c.status.to_string(),
            http_status: c.http_status,
            latency_ms: c.latency_ms,
            cost: c.cost,
            created_at: c.created_at,
        }
    }
}

impl CallRow {
    pub fn as_record(&self) -> CallRecord<'_> {
        CallRecord {
            id: &self.id,
            request_id: &self.request_id,
            tenant_id: &self.tenant_id,
            key_id: &self.key_id,
            session_id: &self.session_id,
            plugin_id: &self.plugin_id,
            api: &self.api,
            mode: &self.mode,
            status: &self.status,
            http_status: self.http_status,
            latency_ms: self.latency_ms,
            cost: self.cost,
            created_at: self.created_at,
        }
    }
}

/// Per-tenant call counts of one plugin.
pub async fn plugin_usage(
    db: &D1Database,
    plugin_id: &str,
) -> Result<Vec<serde_json::Value>, GatewayError> {
    db::all(
        db,
        "SELECT tenant_id, plugin_id, COUNT(*) AS calls,
           SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) AS ok,
           SUM(CASE WHEN status = 'ok' THEN 0 ELSE 1 END) AS failed,
           SUM(cost) AS cost, MAX(created_at) AS last_call_at
         FROM plugin_calls WHERE plugin_id = ?1 GROUP BY tenant_id ORDER BY tenant_id",
        &[plugin_id.into()],
    )
    .await
}

/// The calls of one request, oldest first.
pub async fn calls_of_request(
    db: &D1Database,
    request_id: &str,
) -> Result<Vec<serde_json::Value>, GatewayError> {
    db::all(
        db,
        "SELECT id, request_id, tenant_id, key_id, session_id, plugin_id, api, mode, status,
           http_status, latency_ms, cost, created_at
         FROM plugin_calls WHERE request_id = ?1 ORDER BY created_at, id",
        &[request_id.into()],
    )
    .await
}
