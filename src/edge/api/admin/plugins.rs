//! Admin routes of plugins (under `/admin`, listed in `api/router.rs`):
//!
//! - `PUT /admin/plugins/{id}` `{manifest, price_per_call?}` registers (201) or replaces (200)
//! - `GET /admin/plugins`, `GET /admin/plugins/{id}`, `DELETE /admin/plugins/{id}`
//! - `GET /admin/plugins/{id}/usage` per-tenant call counts
//! - `PUT /admin/tenants/{tid}/plugins/{id}` `{default?, settings?}` enables / updates
//! - `GET /admin/tenants/{tid}/plugins`, `DELETE /admin/tenants/{tid}/plugins/{id}`
//! - `GET /admin/requests/{request_id}/plugin-calls`

use serde::Deserialize;
use serde_json::{json, Value};
use worker::{D1Database, Env, Method, Request, Response};

use crate::core::error::{ErrorKind, GatewayError};
use crate::core::ids::random_bytes;
use crate::core::jsonschema;
use crate::core::plugins::{sealed, valid_identifier, Manifest};
use crate::edge::api::http;
use crate::edge::platform::clock::now_ms;
use crate::edge::plugins::{policy, settings_key};
use crate::edge::store;

const MAX_BODY: usize = 256 * 1024;
const MAX_SETTINGS_BYTES: usize = 16 * 1024;
/// Largest per-call price (JavaScript-safe integer).
const MAX_PRICE: u64 = (1 << 53) - 1;

/// Whether `rest` (the path after `/admin/`) is a plugin path: the router answers a method it
/// does not list there with 405.
pub fn owns(rest: &[&str]) -> bool {
    matches!(
        rest,
        ["plugins", ..] | ["tenants", _, "plugins", ..] | ["requests", _, "plugin-calls"]
    )
}

/// `GET /admin/plugins/{id}/usage`.
pub async fn usage(db: &D1Database, id: &str) -> Result<Response, GatewayError> {
    let rows = store::plugins::plugin_usage(db, id).await?;
    http::json(200, &json!({"object": "list", "data": rows}))
}

/// `GET /admin/tenants/{tid}/plugins`.
pub async fn list_enablements(db: &D1Database, tid: &str) -> Result<Response, GatewayError> {
    let rows = store::plugins::list_enablements(db, tid).await?;
    http::json(200, &json!({"object": "list", "data": rows}))
}

/// `DELETE /admin/tenants/{tid}/plugins/{id}`.
pub async fn disable(db: &D1Database, tid: &str, id: &str) -> Result<Response, GatewayError> {
    if store::plugins::delete_enablement(db, tid, id).await? {
        http::json(
            200,
            &json!({"tenant_id": tid, "plugin_id": id, "deleted": true}),
        )
    } else {
        Err(not_found(&format!(
            "enablement of plugin `{id}` for tenant `{tid}`"
        )))
    }
}

/// `GET /admin/requests/{rid}/plugin-calls`.
pub async fn calls_of_request(db: &D1Database, rid: &str) -> Result<Response, GatewayError> {
    let rows = store::plugins::calls_of_request(db, rid).await?;
    http::json(200, &json!({"object": "list", "data": rows}))
}

/// The answer to a method the router does not list on a plugin path.
pub fn method_not_allowed(method: &Method, rest: &[&str]) -> GatewayError {
    GatewayError::new(
        ErrorKind::MethodNotAllowed,
        format!("{method:?} is not served on /admin/{}", rest.join("/")),
    )
}

/// A plugin route's JSON body (an empty body reads as `{}`).
pub async fn body(req: &mut Request) -> Result<Value, GatewayError> {
    let bytes = http::read_body(req, MAX_BODY).await?;
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::invalid_request(format!("Invalid JSON body: {e}")))
}

fn not_found(what: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("No {what}."))
}

fn view(row: &store::plugins::PluginRow) -> Result<Value, GatewayError> {
    let manifest: Value = serde_json::from_str(&row.manifest)
        .map_err(|e| GatewayError::internal(format!("stored manifest unreadable: {e}")))?;
    Ok(json!({
        "id": row.id,
        "object": "plugin",
        "manifest": manifest,
        "price_per_call": row.price_per_call,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }))
}

pub async fn list(db: &D1Database) -> Result<Response, GatewayError> {
    let rows = store::plugins::list_plugins(db).await?;
    let data = rows.iter().map(view).collect::<Result<Vec<_>, _>>()?;
    http::json(200, &json!({"object": "list", "data": data}))
}

pub async fn get(db: &D1Database, id: &str) -> Result<Response, GatewayError> {
    let row = store::plugins::get_plugin(db, id)
        .await?
        .ok_or_else(|| not_found(&format!("plugin `{id}`")))?;
    http::json(200, &view(&row)?)
}

pub async fn put(
    db: &D1Database,
    env: &Env,
    id: &str,
    body: Value,
) -> Result<Response, GatewayError> {
    if !valid_identifier(id) {
        return Err(GatewayError::invalid_param(
            "id",
            "A plugin id is 1 to 32 of lowercase letters, digits and `-`, starting with a letter.",
        ));
    }
    let Value::Object(fields) = &body else {
        return Err(GatewayError::invalid_request(
            "The body must be a JSON object.",
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["manifest", "price_per_call"].contains(&k.as_str()))
    {
        return Err(GatewayError::invalid_param(
            unknown,
            format!(
                "Unknown field `{unknown}` (expected `manifest` and optional `price_per_call`)."
            ),
        ));
    }
    let raw = fields.get("manifest").ok_or_else(|| {
        GatewayError::invalid_param("manifest", "Missing required field `manifest`.")
    })?;
    let manifest = Manifest::parse(raw, policy(env))?;
    if manifest.identifier != id {
        return Err(GatewayError::invalid_param(
            "manifest.identifier",
            format!(
                "Invalid plugin manifest: `identifier` is `{}` but the URL names `{id}`.",
                manifest.identifier
            ),
        ));
    }
    let price = match fields.get("price_per_call") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().filter(|p| *p <= MAX_PRICE).ok_or_else(|| {
            GatewayError::invalid_param(
                "price_per_call",
                format!("`price_per_call` must be an integer from 0 to {MAX_PRICE} (micro-units)."),
            )
        })?,
    };
    let stored = serde_json::to_string(&manifest)
        .map_err(|e| GatewayError::internal(format!("encode manifest: {e}")))?;
    let created = store::plugins::put_plugin(db, id, &stored, price, now_ms()).await?;
    let row = store::plugins::get_plugin(db, id)
        .await?
        .ok_or_else(|| not_found(&format!("plugin `{id}`")))?;
    http::json(if created { 201 } else { 200 }, &view(&row)?)
}

pub async fn delete(db: &D1Database, id: &str) -> Result<Response, GatewayError> {
    if store::plugins::delete_plugin(db, id).await? {
        http::json(200, &json!({"id": id, "object": "plugin", "deleted": true}))
    } else {
        Err(not_found(&format!("plugin `{id}`")))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnableBody {
    #[serde(default)]
    default: Option<bool>,
    /// Absent: keep; `null`: clear; an object: replace.
    #[serde(default, deserialize_with = "present")]
    settings: Option<Value>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(Value::Null)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

pub async fn enable(
    db: &D1Database,
    env: &Env,
    tenant_id: &str,
    plugin_id: &str,
    body: Value,
) -> Result<Response, GatewayError> {
    let body: EnableBody = serde_json::from_value(body)
        .map_err(|e| GatewayError::invalid_request(format!("Invalid body: {e}")))?;
    if !store::tenants::exists(db, tenant_id).await? {
        return Err(not_found(&format!("tenant `{tenant_id}`")));
    }
    let plugin = store::plugins::get_plugin(db, plugin_id)
        .await?
        .ok_or_else(|| not_found(&format!("plugin `{plugin_id}`")))?;
    let manifest = plugin.manifest()?;
    let change = match body.settings {
        None => store::plugins::SettingsChange::Keep,
        Some(Value::Null) => store::plugins::SettingsChange::Clear,
        Some(settings) => {
            let schema = manifest.settings.as_ref().ok_or_else(|| {
                GatewayError::invalid_param(
                    "settings",
                    format!("The plugin `{plugin_id}` declares no settings."),
                )
            })?;
            jsonschema::validate(schema, &settings, "settings").map_err(|e| {
                GatewayError::invalid_param(&e.path, format!("`{}` {}.", e.path, e.message))
            })?;
            let plain = serde_json::to_vec(&settings)
                .map_err(|e| GatewayError::internal(format!("encode settings: {e}")))?;
            if plain.len() > MAX_SETTINGS_BYTES {
                return Err(GatewayError::invalid_param(
                    "settings",
                    format!("`settings` is larger than {MAX_SETTINGS_BYTES} bytes."),
                ));
            }
            let key = settings_key(env)?;
            let mut nonce = [0u8; 12];
            random_bytes(&mut nonce)
                .map_err(|e| GatewayError::internal(format!("no randomness: {e:?}")))?;
            store::plugins::SettingsChange::Set(sealed::seal(
                &key, tenant_id, plugin_id, nonce, &plain,
            ))
        }
    };
    store::plugins::put_enablement(db, tenant_id, plugin_id, body.default, change, now_ms())
        .await?;
    let view = store::plugins::get_enablement(db, tenant_id, plugin_id)
        .await?
        .ok_or_else(|| GatewayError::internal("enablement vanished after writing it"))?;
    http::json(200, &view)
}
