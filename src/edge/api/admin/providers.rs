//! `/admin/providers`: upstream providers (kind, base URL, the name of their key's secret).

use serde::Deserialize;
use serde_json::{json, Value};
use worker::{D1Database, Env, Response};

use super::{check_name, not_found};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::outbound::{check_destination, check_secret_name, SecretUse};
use crate::core::providers::ProviderKind;
use crate::edge::api::http;
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::env as config;
use crate::edge::store;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderBody {
    kind: String,
    /// Defaults to the kind's public endpoint (`ProviderKind::default_base_url`).
    base_url: Option<String>,
    api_key_secret: Option<String>,
    config: Option<Value>,
}

pub async fn put(
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

pub async fn list(db: &D1Database) -> Result<Response, GatewayError> {
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

pub async fn delete(db: &D1Database, name: &str) -> Result<Response, GatewayError> {
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
