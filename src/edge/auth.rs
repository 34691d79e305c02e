//! Who is calling: tenant API keys (digest checked, cached in KV) and the admin token.
//!
//! The isolate's cache (`edge::cache`, seconds) and KV (minutes) hold only what a key's digest
//! check needs; revocation deletes the KV entry and clears the isolate's cache, and every billed
//! request re-checks `revoked_at` inside its D1 reservation statement (routes that reserve
//! nothing check D1 directly: `tenant::live_caller`), so a revoked key stops working at once even
//! where a stale copy survives.

use serde::{Deserialize, Serialize};
use worker::{Env, Request};

use super::{cache, config, db};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::keys;

/// An authenticated tenant key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    pub tenant_id: String,
    /// Models this key may use; `None` = all.
    pub models: Option<Vec<String>>,
}

impl Caller {
    pub fn may_use(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|m| m == model))
    }
}

/// What the digest check of a key needs, as cached.
#[derive(Serialize, Deserialize)]
pub struct CachedKey {
    tenant_id: String,
    digest: String,
    models: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct KeyRow {
    tenant_id: String,
    digest: String,
    models: Option<String>,
    revoked_at: Option<u64>,
}

const KEY_CACHE_TTL_SECONDS: u64 = 300;

pub fn key_cache_name(key_id: &str) -> String {
    format!("key:{key_id}")
}

fn unauthorized(message: &str) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidApiKey, message)
}

/// The pepper that key digests are keyed with.
pub fn pepper(env: &Env) -> Result<Vec<u8>, GatewayError> {
    config::secret(env, "KEY_PEPPER")
        .map(String::into_bytes)
        .ok_or_else(|| GatewayError::internal("The KEY_PEPPER secret is not set."))
}

fn presented_token(req: &Request) -> Option<String> {
    let headers = req.headers();
    if let Ok(Some(auth)) = headers.get("authorization") {
        return keys::bearer_token(&auth).map(str::to_string);
    }
    // Azure-style clients send the key in `api-key`.
    headers.get("api-key").ok().flatten()
}

/// Authenticates a tenant API key (`Authorization: Bearer tg-…`).
pub async fn authenticate(req: &Request, env: &Env) -> Result<Caller, GatewayError> {
    let token = presented_token(req).ok_or_else(|| {
        unauthorized("You didn't provide an API key. Send it as `Authorization: Bearer tg-…`.")
    })?;
    let parsed = keys::parse_api_key(&token)
        .ok_or_else(|| unauthorized("Incorrect API key provided: not a Tollgate key."))?;
    let key_id = parsed.key_id.to_string();
    let pepper = pepper(env)?;

    let record = match cache::get(&cache::KEYS, &key_id) {
        Some(hit) => hit,
        None => cache::put(&cache::KEYS, key_id.clone(), load_key(env, &key_id).await?),
    };
    if !keys::key_matches(&pepper, &token, &record.digest) {
        return Err(unauthorized("Incorrect API key provided."));
    }
    Ok(Caller {
        key_id,
        tenant_id: record.tenant_id.clone(),
        models: record.models.clone(),
    })
}

/// A key's record from KV, else from D1 (then cached in KV).
async fn load_key(env: &Env, key_id: &str) -> Result<CachedKey, GatewayError> {
    let kv = env.kv("KV").ok();
    let mut cached: Option<CachedKey> = None;
    if let Some(kv) = &kv {
        cached = kv
            .get(&key_cache_name(key_id))
            .json::<CachedKey>()
            .await
            .ok()
            .flatten();
    }
    let record = match cached {
        Some(c) => c,
        None => {
            let database = db::database(env)?;
            let row: Option<KeyRow> = db::first(
                &database,
                "SELECT tenant_id, digest, models, revoked_at FROM api_keys WHERE id = ?1",
                &[key_id.into()],
            )
            .await?;
            let row = row.filter(|r| r.revoked_at.is_none()).ok_or_else(|| {
                unauthorized("Incorrect API key provided: unknown or revoked key.")
            })?;
            let models = match row.models {
                Some(json) => serde_json::from_str::<Vec<String>>(&json).ok(),
                None => None,
            };
            let record = CachedKey {
                tenant_id: row.tenant_id,
                digest: row.digest,
                models,
            };
            if let Some(kv) = &kv {
                if let Ok(put) = kv.put(&key_cache_name(key_id), &record) {
                    let _ = put.expiration_ttl(KEY_CACHE_TTL_SECONDS).execute().await;
                }
            }
            record
        }
    };
    Ok(record)
}

/// Authorises an admin request (`Authorization: Bearer <ADMIN_TOKEN>`).
pub fn authorize_admin(req: &Request, env: &Env) -> Result<(), GatewayError> {
    let expected = config::secret(env, "ADMIN_TOKEN").ok_or_else(|| {
        unauthorized("The admin API is disabled: set the ADMIN_TOKEN secret to enable it.")
    })?;
    let presented = req
        .headers()
        .get("authorization")
        .ok()
        .flatten()
        .and_then(|h| keys::bearer_token(&h).map(str::to_string))
        .ok_or_else(|| unauthorized("Admin routes need `Authorization: Bearer <ADMIN_TOKEN>`."))?;
    if keys::constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(unauthorized("Incorrect admin token."))
    }
}
