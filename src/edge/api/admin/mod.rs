//! The operator's API under `/admin/*`, authorised by the `ADMIN_TOKEN` secret.

pub mod alerts;
pub mod billing;
pub mod plan_requests;
pub mod plugins;
pub mod wallet;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use worker::{D1Database, Env, Method, Request, Response};

use crate::core::billing::units::UnitPrices;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::keys;
use crate::core::outbound::{check_destination, check_secret_name, SecretUse};
use crate::core::providers::media::{parse_model_kind, MODEL_KINDS};
use crate::core::providers::ProviderKind;
use crate::core::tokens::Encoding;
use crate::edge::api::http;
use crate::edge::gateway::auth;
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::d1 as db;
use crate::edge::platform::env as config;
use crate::edge::store;
use crate::edge::store::keys::KeyRow;
use billing as ledger;

/// Admin bodies are small.
const MAX_ADMIN_BODY: usize = 64 * 1024;

pub async fn route(
    mut req: Request,
    env: &Env,
    method: &Method,
    rest: &[&str],
) -> Result<Response, GatewayError> {
    if let Err(refusal) = auth::admit_admin(&req, env).await {
        return refused(&refusal);
    }
    let database = db::database(env)?;
    let db = &database;
    match (method, rest) {
        (Method::Post, ["tenants"]) => create_tenant(db, body(&mut req).await?).await,
        (Method::Get, ["tenants"]) => list_tenants(db).await,
        (Method::Get, ["tenants", id]) => get_tenant(db, id).await,
        (Method::Patch, ["tenants", id]) => update_tenant(db, env, id, body(&mut req).await?).await,
        (Method::Post, ["tenants", id, "keys"]) => {
            create_key(db, env, id, body(&mut req).await?).await
        }
        (Method::Get, ["tenants", id, "keys"]) => list_keys(db, id).await,
        (Method::Post, ["tenants", id, "credit"]) => {
            add_credit(db, env, id, body(&mut req).await?).await
        }
        (Method::Get, ["tenants", id, "ledger"]) => ledger(db, id).await,
        (Method::Delete, ["keys", id]) => revoke_key(db, env, id).await,
        (Method::Get, ["providers"]) => list_providers(db).await,
        (Method::Put, ["providers", name]) => {
            put_provider(db, env, name, body(&mut req).await?).await
        }
        (Method::Delete, ["providers", name]) => delete_provider(db, name).await,
        (Method::Get, ["models"]) => list_models(db).await,
        (Method::Get, ["models", name @ .., "prices"]) if !name.is_empty() => {
            ledger::list_prices(db, &name.join("/")).await
        }
        (_, ["plan-requests", rest @ ..]) => plan_requests::route(&req, db, method, rest).await,
        (Method::Get, ["plans"]) => ledger::list_plans(db).await,
        (Method::Put, ["plans", id]) => ledger::put_plan(db, id, &raw(&mut req).await?).await,
        (Method::Delete, ["plans", id]) => ledger::delete_plan(db, id).await,
        (Method::Put, ["tenants", id, "plan"]) => {
            ledger::assign_plan(db, id, &raw(&mut req).await?).await
        }
        (Method::Put, ["tenants", id, "pricing"]) => {
            ledger::set_pricing(db, id, &raw(&mut req).await?).await
        }
        (Method::Get, ["tenants", id, "billing"]) if wallet::wallets_on(env) => {
            ledger::get_tenant_billing_wallet(db, env, id).await
        }
        (Method::Get, ["tenants", id, "billing"]) => ledger::get_tenant_billing(db, id).await,
        (Method::Post, ["redemption-codes"]) => {
            ledger::create_codes(db, env, &raw(&mut req).await?).await
        }
        (Method::Get, ["redemption-codes"]) => ledger::list_codes(db, &req).await,
        (Method::Put, ["models", name @ ..]) if !name.is_empty() => {
            put_model(db, &name.join("/"), body(&mut req).await?).await
        }
        (Method::Delete, ["models", name @ ..]) if !name.is_empty() => {
            delete_model(db, &name.join("/")).await
        }
        (Method::Put, ["routes", model @ ..]) if !model.is_empty() => http::json(
            200,
            &crate::edge::gateway::routes::put_routes(db, &model.join("/"), body(&mut req).await?)
                .await?,
        ),
        (Method::Get, ["routes", model @ ..]) if !model.is_empty() => http::json(
            200,
            &crate::edge::gateway::routes::get_routes(db, &model.join("/")).await?,
        ),
        (Method::Get, ["usage"]) => crate::edge::api::tollgate::usage::admin_usage(db, &req).await,
        (Method::Post, ["tenants", id, "alerts"]) => {
            alerts::create_rule(db, env, id, body(&mut req).await?).await
        }
        (Method::Get, ["tenants", id, "alerts"]) => alerts::list_rules(db, id).await,
        (Method::Get, ["alerts", id]) => alerts::get_rule(db, id).await,
        (Method::Delete, ["alerts", id]) => alerts::delete_rule(db, id).await,
        (Method::Get, ["alerts", id, "deliveries"]) => alerts::list_deliveries(db, id).await,
        (Method::Get, ["requests", id]) => get_request(db, id).await,
        (Method::Post, ["cron"]) => {
            let run: CronRun = body(&mut req).await?;
            crate::edge::cron::run_now(env, run.time).await
        }
        _ if crate::edge::api::admin::plugins::owns(rest) => {
            crate::edge::api::admin::plugins::route(req, env, db, method, rest).await
        }
        _ => Err(GatewayError::new(
            ErrorKind::NotFound,
            format!("Unknown admin route: {method:?} /admin/{}", rest.join("/")),
        )),
    }
}

/// The answer to a refused admin request (429 with `Retry-After` when throttled).
fn refused(refusal: &auth::AdminRefusal) -> Result<Response, GatewayError> {
    let mut resp =
        http::error_response(&refusal.error).map_err(|e| http::internal("error response", e))?;
    if let Some(seconds) = refusal.retry_after {
        let _ = resp.headers_mut().set("retry-after", &seconds.to_string());
    }
    Ok(resp)
}

async fn raw(req: &mut Request) -> Result<Vec<u8>, GatewayError> {
    http::read_body(req, MAX_ADMIN_BODY).await
}

async fn body<T: DeserializeOwned>(req: &mut Request) -> Result<T, GatewayError> {
    let bytes = http::read_body(req, MAX_ADMIN_BODY).await?;
    let bytes = if bytes.is_empty() {
        b"{}".to_vec()
    } else {
        bytes
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::invalid_request(format!("Invalid JSON body: {e}")))
}

fn not_found(what: &str, id: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("No {what} `{id}`."))
}

fn check_name(field: &str, value: &str) -> Result<(), GatewayError> {
    if value.trim().is_empty() || value.len() > 200 {
        return Err(GatewayError::invalid_param(
            field,
            format!("`{field}` must be 1 to 200 characters."),
        ));
    }
    Ok(())
}

fn to_i64(field: &str, v: i64, min: i64) -> Result<i64, GatewayError> {
    // Money and prices stay below 2^53 so they survive JavaScript numbers exactly.
    const MAX_SAFE: i64 = (1 << 53) - 1;
    if v < min || v > MAX_SAFE {
        return Err(GatewayError::invalid_param(
            field,
            format!("`{field}` must be an integer from {min} to {MAX_SAFE}."),
        ));
    }
    Ok(v)
}

// ---- tenants ----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    name: String,
    #[serde(default)]
    credit: i64,
}

async fn create_tenant(db: &D1Database, new: NewTenant) -> Result<Response, GatewayError> {
    check_name("name", &new.name)?;
    let credit = to_i64("credit", new.credit, 0)?;
    let id = store::tenants::create(db, new.name.trim(), credit, now_ms()).await?;
    tenant_response(db, &id, 201).await
}

async fn tenant_response(db: &D1Database, id: &str, status: u16) -> Result<Response, GatewayError> {
    let row = store::tenants::get(db, id)
        .await?
        .ok_or_else(|| not_found("tenant", id))?;
    http::json(status, &row)
}

async fn list_tenants(db: &D1Database) -> Result<Response, GatewayError> {
    let rows = store::tenants::list(db).await?;
    http::json(200, &json!({"object": "list", "data": rows}))
}

async fn get_tenant(db: &D1Database, id: &str) -> Result<Response, GatewayError> {
    tenant_response(db, id, 200).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantPatch {
    name: Option<String>,
    disabled: Option<bool>,
}

async fn update_tenant(
    db: &D1Database,
    env: &Env,
    id: &str,
    patch: TenantPatch,
) -> Result<Response, GatewayError> {
    if let Some(name) = &patch.name {
        check_name("name", name)?;
        store::tenants::rename(db, id, name.trim()).await?;
    }
    if let Some(disabled) = patch.disabled {
        store::tenants::set_disabled(db, id, disabled, now_ms()).await?;
        wallet::tell_disabled(env, id, disabled).await?;
        // Every copy of the tenant's keys goes (KV; this isolate's caches are cleared after
        // any admin write), behind a marker that stops a concurrent load from writing a
        // stale copy back; re-enabling removes the markers.
        let ids = store::tenants::key_ids(db, id).await?;
        if disabled {
            store::keys::forget_keys(env, &ids).await;
        } else {
            store::keys::revive_keys(env, &ids).await;
        }
    }
    tenant_response(db, id, 200).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credit {
    amount: i64,
    reason: Option<String>,
}

async fn add_credit(
    db: &D1Database,
    env: &Env,
    id: &str,
    credit: Credit,
) -> Result<Response, GatewayError> {
    if credit.amount == 0 {
        return Err(GatewayError::invalid_param(
            "amount",
            "`amount` must not be 0.",
        ));
    }
    let amount = to_i64("amount", credit.amount.abs(), 1)? * credit.amount.signum();
    if wallet::wallets_on(env) {
        return wallet::adjust(env, db, id, amount, credit.reason.as_deref()).await;
    }
    let written =
        store::tenants::add_credit(db, id, amount, credit.reason.as_deref(), now_ms()).await?;
    if !written {
        let exists = store::tenants::exists(db, id).await?;
        return Err(match exists {
            false => not_found("tenant", id),
            true if amount < 0 => GatewayError::new(
                ErrorKind::Conflict,
                "The debit is larger than the tenant's available balance.",
            ),
            true => GatewayError::new(
                ErrorKind::Conflict,
                "The credit would take the balance above 9007199254740991 micro-units.",
            ),
        });
    }
    tenant_response(db, id, 200).await
}

async fn ledger(db: &D1Database, id: &str) -> Result<Response, GatewayError> {
    let rows = store::tenants::ledger(db, id).await?;
    http::json(200, &json!({"object": "list", "data": rows}))
}

// ---- keys -------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    models: Option<Vec<String>>,
}

fn key_json(row: &KeyRow) -> Value {
    let models: Option<Vec<String>> = row
        .models
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok());
    json!({"id": row.id, "object": "api_key", "tenant_id": row.tenant_id, "name": row.name,
           "models": models, "created_at": row.created_at, "revoked_at": row.revoked_at})
}

async fn create_key(
    db: &D1Database,
    env: &Env,
    tenant_id: &str,
    new: NewKey,
) -> Result<Response, GatewayError> {
    check_name("name", &new.name)?;
    if let Some(models) = &new.models {
        for m in models {
            check_name("models", m)?;
        }
    }
    let pepper = auth::pepper(env)?;
    let now = now_ms();
    let generated = keys::generate_api_key(now)
        .map_err(|_| GatewayError::internal("no randomness available to generate a key"))?;
    let digest = keys::key_digest(&pepper, &generated.key);
    let models_json = new
        .models
        .as_ref()
        .map(|m| serde_json::to_string(m).unwrap_or_else(|_| "[]".into()));
    let created = store::keys::insert(
        db,
        &store::keys::NewKey {
            id: &generated.key_id,
            tenant_id,
            name: new.name.trim(),
            digest: &digest,
            models: models_json.as_deref(),
            created_at: now,
        },
    )
    .await?;
    if !created {
        return Err(not_found("tenant", tenant_id));
    }
    // A marker left by a flood of random ids must not hide the new key.
    store::keys::revive_keys(env, std::slice::from_ref(&generated.key_id)).await;
    http::json(
        201,
        &json!({"id": generated.key_id, "object": "api_key", "key": generated.key,
                "tenant_id": tenant_id, "name": new.name.trim(), "models": new.models,
                "created_at": now}),
    )
}

async fn list_keys(db: &D1Database, tenant_id: &str) -> Result<Response, GatewayError> {
    let rows = store::keys::list(db, tenant_id).await?;
    let data: Vec<Value> = rows.iter().map(key_json).collect();
    http::json(200, &json!({"object": "list", "data": data}))
}

async fn revoke_key(db: &D1Database, env: &Env, id: &str) -> Result<Response, GatewayError> {
    store::keys::revoke(db, id, now_ms()).await?;
    store::keys::forget_keys(env, &[id.to_string()]).await;
    let row = store::keys::get(db, id).await?;
    let row = row.ok_or_else(|| not_found("API key", id))?;
    wallet::tell_revoked(env, &row.tenant_id, id).await?;
    http::json(200, &key_json(&row))
}

// ---- providers and models ---------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderBody {
    kind: String,
    /// Defaults to the kind's public endpoint (`ProviderKind::default_base_url`).
    base_url: Option<String>,
    api_key_secret: Option<String>,
    config: Option<Value>,
}

async fn put_provider(
    db: &D1Database,
    env: &Env,
    name: &str,
    p: ProviderBody,
) -> Result<Response, GatewayError> {
    check_name("name", name)?;
    let kind = ProviderKind::parse(&p.kind).ok_or_else(|| {
        GatewayError::invalid_param(
            "kind",
            format!(
                "Unknown provider kind `{}`; known: {}.",
                p.kind,
                ProviderKind::names().join(", ")
            ),
        )
    })?;
    let base_url = match p.base_url.clone() {
        Some(url) => url,
        None => ProviderKind::default_base_url(&p.kind)
            .ok_or_else(|| {
                GatewayError::invalid_param(
                    "base_url",
                    format!("Kind `{}` has no default `base_url`; give one.", p.kind),
                )
            })?
            .to_string(),
    };
    if p.config.as_ref().is_some_and(|c| !c.is_object()) {
        return Err(GatewayError::invalid_param(
            "config",
            "`config` must be a JSON object.",
        ));
    }
    if !kind.is_local() {
        check_destination(&base_url, config::settings(env).allow_private_upstreams)
            .map_err(|why| GatewayError::invalid_param("base_url", format!("`base_url` {why}.")))?;
    }
    if let Some(secret) = &p.api_key_secret {
        let settings = config::settings(env);
        check_secret_name(
            secret,
            SecretUse::Provider,
            settings.secret_allowlist(SecretUse::Provider),
        )
        .map_err(|why| {
            GatewayError::invalid_param("api_key_secret", format!("`api_key_secret` {why}."))
        })?;
    }
    let config = p.config.as_ref().map(Value::to_string);
    store::models::put_provider(
        db,
        &store::models::ProviderRow {
            name,
            kind: kind.as_str(),
            base_url: &base_url,
            api_key_secret: p.api_key_secret.as_deref(),
            config: config.as_deref(),
        },
        now_ms(),
    )
    .await?;
    http::json(
        200,
        &json!({"name": name, "kind": kind.as_str(), "base_url": base_url,
                "api_key_secret": p.api_key_secret, "config": p.config}),
    )
}

async fn list_providers(db: &D1Database) -> Result<Response, GatewayError> {
    let rows: Vec<Value> = store::models::list_providers(db)
        .await?
        .into_iter()
        .map(|mut row| {
            let config = row["config"]
                .as_str()
                .and_then(|c| serde_json::from_str::<Value>(c).ok())
                .unwrap_or(Value::Null);
            row["config"] = config;
            row
        })
        .collect();
    http::json(200, &json!({"object": "list", "data": rows}))
}

async fn delete_provider(db: &D1Database, name: &str) -> Result<Response, GatewayError> {
    if let Some(model) = store::models::a_model_of_provider(db, name).await? {
        return Err(GatewayError::new(
            ErrorKind::Conflict,
            format!(
                "Provider `{name}` still serves model {model}; delete or move its models first."
            ),
        ));
    }
    if !store::models::delete_provider(db, name).await? {
        return Err(not_found("provider", name));
    }
    http::json(200, &json!({"name": name, "deleted": true}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelBody {
    provider: String,
    upstream_model: Option<String>,
    input_price: i64,
    output_price: i64,
    cached_input_price: Option<i64>,
    reasoning_price: Option<i64>,
    max_output_tokens: Option<i64>,
    encoding: Option<String>,
    /// `chat` (default), `embedding`, `image`, `tts` or `stt` (docs/media.md).
    kind: Option<String>,
    /// Media prices (docs/media.md), versioned with the token prices.
    image_input_price: Option<Value>,
    audio_input_price: Option<Value>,
    image_prices: Option<Value>,
    character_price: Option<Value>,
    minute_price: Option<Value>,
}

impl ModelBody {
    /// The model's kind and unit prices, checked (400 naming the field).
    fn media(&self) -> Result<(&'static str, UnitPrices), GatewayError> {
        let kind = match &self.kind {
            None => "chat",
            Some(k) => parse_model_kind(k).ok_or_else(|| {
                GatewayError::invalid_param(
                    "kind",
                    format!(
                        "Unknown model kind `{k}`; known: {}.",
                        MODEL_KINDS.join(", ")
                    ),
                )
            })?,
        };
        let mut fields = serde_json::Map::new();
        for (name, v) in [
            ("image_input_price", &self.image_input_price),
            ("audio_input_price", &self.audio_input_price),
            ("image_prices", &self.image_prices),
            ("character_price", &self.character_price),
            ("minute_price", &self.minute_price),
        ] {
            if let Some(v) = v {
                fields.insert(name.to_string(), v.clone());
            }
        }
        let units = UnitPrices::from_admin(&fields)
            .map_err(|e| GatewayError::invalid_param("price", e.0))?;
        Ok((kind, units))
    }
}

async fn put_model(db: &D1Database, name: &str, m: ModelBody) -> Result<Response, GatewayError> {
    check_name("model", name)?;
    let input = to_i64("input_price", m.input_price, 0)?;
    let output = to_i64("output_price", m.output_price, 0)?;
    let cached_input = m
        .cached_input_price
        .map(|v| to_i64("cached_input_price", v, 0))
        .transpose()?;
    let reasoning = m
        .reasoning_price
        .map(|v| to_i64("reasoning_price", v, 0))
        .transpose()?;
    let max_out = to_i64("max_output_tokens", m.max_output_tokens.unwrap_or(4096), 1)?;
    if let Some(enc) = &m.encoding {
        if Encoding::from_name(enc).is_none() {
            return Err(GatewayError::invalid_param(
                "encoding",
                format!(
                    "`encoding` must be one of {}.",
                    crate::core::tokens::encoding_names()
                ),
            ));
        }
    }
    let (model_kind, units) = m.media()?;
    let upstream_model = m.upstream_model.clone().unwrap_or_else(|| name.to_string());
    check_name("upstream_model", &upstream_model)?;
    if !store::models::provider_exists(db, &m.provider).await? {
        return Err(GatewayError::invalid_param(
            "provider",
            format!(
                "No provider `{}`; create it with PUT /admin/providers/{{name}} first.",
                m.provider
            ),
        ));
    }
    let now = now_ms();
    store::models::put_model(
        db,
        &store::models::NewModel {
            name,
            provider: &m.provider,
            upstream_model: &upstream_model,
            input_price: input,
            output_price: output,
            max_output_tokens: max_out,
            encoding: m.encoding.as_deref(),
        },
        now,
    )
    .await?;
    let price_version = store::billing::record_price_version(
        db,
        name,
        store::billing::PriceSet {
            input: input.unsigned_abs(),
            cached_input: cached_input.map(i64::unsigned_abs),
            output: output.unsigned_abs(),
            reasoning: reasoning.map(i64::unsigned_abs),
        },
        now,
    )
    .await?;
    let price_version =
        store::models::record_media_prices(db, name, model_kind, &units, price_version, now)
            .await?;
    http::json(
        200,
        &json!({"name": name, "provider": m.provider, "upstream_model": upstream_model,
                "kind": model_kind, "image_input_price": units.image_input,
                "audio_input_price": units.audio_input,
                "image_prices": units.image_table_json().and_then(|t| serde_json::from_str::<Value>(&t).ok()),
                "character_price": units.characters, "minute_price": units.minute,
                "input_price": input, "cached_input_price": cached_input,
                "output_price": output, "reasoning_price": reasoning,
                "price_version": price_version, "max_output_tokens": max_out,
                "encoding": m.encoding}),
    )
}

async fn list_models(db: &D1Database) -> Result<Response, GatewayError> {
    let rows = store::models::list_models(db).await?;
    http::json(200, &json!({"object": "list", "data": rows}))
}

async fn delete_model(db: &D1Database, name: &str) -> Result<Response, GatewayError> {
    if !store::models::delete_model(db, name).await? {
        return Err(not_found("model", name));
    }
    http::json(200, &json!({"name": name, "deleted": true}))
}

// ---- usage ------------------------------------------------------------------------------

/// Body of `POST /admin/cron`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CronRun {
    time: Option<u64>,
}

async fn get_request(db: &D1Database, id: &str) -> Result<Response, GatewayError> {
    match store::ledger::usage_row(db, id).await? {
        Some(r) => http::json(200, &r),
        None => Err(not_found("request", id)),
    }
}
