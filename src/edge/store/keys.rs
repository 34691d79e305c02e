//! API keys: their state in D1, the copies the key check reads (isolate cache and KV), and the
//! KV counters of failed admin logins.

use std::rc::Rc;

use serde::{Deserialize, Serialize};
use worker::{D1Database, Env};

use crate::core::error::GatewayError;
use crate::core::keys::ADMIN_FAILURE_WINDOW_MS;
use crate::edge::platform::d1::{self as db, first};
use crate::edge::platform::kv;
use crate::edge::platform::ttl_cache::{self as cache, Ttl};

/// The state of a key and its tenant, to explain a refused reservation.
#[derive(Debug, Deserialize)]
pub struct KeyState {
    pub revoked_at: Option<u64>,
    pub disabled_at: Option<u64>,
    pub balance: u64,
    /// Plan allowance left this period.
    pub allowance_remaining: u64,
    /// Owed from charges that balance and allowance could not cover (schema/0007).
    pub debt: u64,
}

pub async fn key_state(db: &D1Database, key_id: &str) -> Result<Option<KeyState>, GatewayError> {
    first(
        db,
        "SELECT k.revoked_at, t.disabled_at, t.balance, t.allowance_remaining, t.debt
         FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.id = ?1",
        &[key_id.into()],
    )
    .await
}

/// Whether a key exists and is not revoked (for routes that reserve nothing).
pub async fn key_active(db: &D1Database, key_id: &str) -> Result<bool, GatewayError> {
    Ok(key_state(db, key_id)
        .await?
        .is_some_and(|k| k.revoked_at.is_none() && k.disabled_at.is_none()))
}

/// What the digest check of a key needs, as cached.
#[derive(Serialize, Deserialize)]
pub struct CachedKey {
    pub tenant_id: String,
    pub digest: String,
    pub models: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct StoredKey {
    tenant_id: String,
    digest: String,
    models: Option<String>,
    revoked_at: Option<u64>,
    disabled_at: Option<u64>,
}

/// Lifetime of a key's KV copy.
const KEY_CACHE_TTL_SECONDS: u64 = 300;
/// Lifetime of the KV marker of a key id D1 does not know (KV's shortest TTL).
const UNKNOWN_KEY_TTL_SECONDS: u64 = 60;
/// Lifetime of the KV marker of a revoked key or a disabled tenant's key: longer than a copy
/// lives, so no stale copy outlives its marker.
const DEAD_KEY_TTL_SECONDS: u64 = 2 * KEY_CACHE_TTL_SECONDS;

pub fn key_cache_name(key_id: &str) -> String {
    format!("key:{key_id}")
}

/// The KV marker saying "no usable key with this id" (unknown, revoked, or its tenant
/// disabled). Loaders check it after writing a copy, so a load racing a revocation cannot
/// leave a stale copy behind (see [`load_key`]).
pub fn dead_key_name(key_id: &str) -> String {
    format!("nokey:{key_id}")
}

thread_local! {
    /// Key id → what the digest check needs.
    static KEYS: Ttl<CachedKey> = Ttl::new();
    /// Key ids with no usable key (unknown, revoked, tenant disabled): refused without D1.
    static DEAD_KEYS: Ttl<()> = Ttl::new();
}

/// The usable key with this id (from the isolate's caches, KV or D1), or `None` when there is
/// none (unknown, revoked, tenant disabled; remembered as such in the isolate).
pub async fn usable_key(env: &Env, key_id: &str) -> Result<Option<Rc<CachedKey>>, GatewayError> {
    if cache::get(&DEAD_KEYS, key_id).is_some() {
        return Ok(None);
    }
    if let Some(hit) = cache::get(&KEYS, key_id) {
        return Ok(Some(hit));
    }
    match load_key(env, key_id).await? {
        Some(record) => Ok(Some(cache::put(&KEYS, key_id.to_string(), record))),
        None => {
            cache::put(&DEAD_KEYS, key_id.to_string(), ());
            Ok(None)
        }
    }
}

/// A key's record from KV, else from D1 (then copied to KV); `None` when there is no usable key
/// with this id.
///
/// Against a revocation racing this load (D1 read here, then the revocation's marker and
/// delete, then our copy written): revocations write the marker before deleting the copy, and
/// a load writes its copy before reading the marker. Whichever comes last removes the copy.
async fn load_key(env: &Env, key_id: &str) -> Result<Option<CachedKey>, GatewayError> {
    let kv = kv::namespace(env).ok();
    if let Some(kv) = &kv {
        if let Ok(Some(copy)) = kv.get(&key_cache_name(key_id)).json::<CachedKey>().await {
            return Ok(Some(copy));
        }
        if let Ok(Some(_)) = kv.get(&dead_key_name(key_id)).text().await {
            return Ok(None);
        }
    }
    let database = db::database(env)?;
    let row: Option<StoredKey> = db::first(
        &database,
        "SELECT k.tenant_id, k.digest, k.models, k.revoked_at, t.disabled_at
         FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.id = ?1",
        &[key_id.into()],
    )
    .await?;
    let row = match row {
        Some(r) if r.revoked_at.is_none() && r.disabled_at.is_none() => r,
        other => {
            let ttl = if other.is_some() {
                DEAD_KEY_TTL_SECONDS
            } else {
                UNKNOWN_KEY_TTL_SECONDS
            };
            if let Some(kv) = &kv {
                mark_dead(kv, key_id, ttl).await;
            }
            return Ok(None);
        }
    };
    let record = CachedKey {
        tenant_id: row.tenant_id,
        models: parse_models(key_id, row.models.as_deref()),
        digest: row.digest,
    };
    if let Some(kv) = &kv {
        if let Ok(put) = kv.put(&key_cache_name(key_id), &record) {
            let _ = put.expiration_ttl(KEY_CACHE_TTL_SECONDS).execute().await;
        }
        if let Ok(Some(_)) = kv.get(&dead_key_name(key_id)).text().await {
            let _ = kv.delete(&key_cache_name(key_id)).await;
            return Ok(None);
        }
    }
    Ok(Some(record))
}

/// A key's model list as stored (JSON array, NULL = every model). Unreadable JSON allows no
/// model at all (fail closed) and is logged: a broken row must not lift a restriction.
fn parse_models(key_id: &str, stored: Option<&str>) -> Option<Vec<String>> {
    let json = stored?;
    match serde_json::from_str::<Vec<String>>(json) {
        Ok(models) => Some(models),
        Err(e) => {
            worker::console_error!(
                "api_keys.models of key {key_id} is not a JSON array of names ({e}); the key may use no model"
            );
            Some(Vec::new())
        }
    }
}

async fn mark_dead(kv: &worker::kv::KvStore, key_id: &str, ttl_seconds: u64) {
    if let Ok(put) = kv.put(&dead_key_name(key_id), "1") {
        let _ = put.expiration_ttl(ttl_seconds).execute().await;
    }
}

/// After a revocation or a tenant's disablement: the marker first, then the copy goes (the
/// order [`load_key`] relies on).
pub async fn forget_keys(env: &Env, key_ids: &[String]) {
    let Ok(kv) = kv::namespace(env) else {
        return;
    };
    for id in key_ids {
        mark_dead(&kv, id, DEAD_KEY_TTL_SECONDS).await;
        let _ = kv.delete(&key_cache_name(id)).await;
    }
}

/// After a key is created or a tenant re-enabled: no marker may hide the keys.
pub async fn revive_keys(env: &Env, key_ids: &[String]) {
    let Ok(kv) = kv::namespace(env) else {
        return;
    };
    for id in key_ids {
        let _ = kv.delete(&dead_key_name(id)).await;
    }
}

fn admin_failure_name(ip: &str, window: u64) -> String {
    format!("adminfail:{ip}:{window}")
}

/// Failed admin attempts from `ip` in `window`, as counted in KV (0 when unknown).
pub async fn admin_failures(env: &Env, ip: &str, window: u64) -> u64 {
    let Ok(kv) = kv::namespace(env) else { return 0 };
    match kv.get(&admin_failure_name(ip, window)).text().await {
        // Written as a string; older KV bindings JSON-quote it.
        Ok(Some(text)) => text.trim().trim_matches('"').parse::<u64>().unwrap_or(0),
        _ => 0,
    }
}

/// Stores the count of failed admin attempts from `ip` in `window`.
pub async fn record_admin_failures(env: &Env, ip: &str, window: u64, count: u64) {
    let Ok(kv) = kv::namespace(env) else { return };
    if let Ok(put) = kv.put(&admin_failure_name(ip, window), count.to_string()) {
        let _ = put
            .expiration_ttl(2 * ADMIN_FAILURE_WINDOW_MS / 1000)
            .execute()
            .await;
    }
}

/// A key as the admin API lists it (never its digest).
#[derive(Serialize, Deserialize)]
pub struct KeyRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// JSON array of model names, NULL = every model.
    pub models: Option<String>,
    pub created_at: u64,
    pub revoked_at: Option<u64>,
}

/// A key to store (its digest, never the key).
pub struct NewKey<'a> {
    pub id: &'a str,
    pub tenant_id: &'a str,
    pub name: &'a str,
    pub digest: &'a str,
    pub models: Option<&'a str>,
    pub created_at: u64,
}

/// Stores a key for an existing tenant; `false` when there is no such tenant.
pub async fn insert(db: &D1Database, key: &NewKey<'_>) -> Result<bool, GatewayError> {
    let changed = db::run(
        db,
        "INSERT INTO api_keys (id, tenant_id, name, digest, models, created_at)
         SELECT ?1, id, ?3, ?4, ?5, ?6 FROM tenants WHERE id = ?2",
        &[
            key.id.into(),
            key.tenant_id.into(),
            key.name.into(),
            key.digest.into(),
            key.models.into(),
            key.created_at.into(),
        ],
    )
    .await?;
    Ok(changed > 0)
}

pub async fn list(db: &D1Database, tenant_id: &str) -> Result<Vec<KeyRow>, GatewayError> {
    db::all(
        db,
        "SELECT id, tenant_id, name, models, created_at, revoked_at FROM api_keys
         WHERE tenant_id = ?1 ORDER BY id",
        &[tenant_id.into()],
    )
    .await
}

pub async fn get(db: &D1Database, id: &str) -> Result<Option<KeyRow>, GatewayError> {
    db::first(
        db,
        "SELECT id, tenant_id, name, models, created_at, revoked_at FROM api_keys WHERE id = ?1",
        &[id.into()],
    )
    .await
}

/// Revokes the key (keeping the first revocation time).
pub async fn revoke(db: &D1Database, id: &str, now: u64) -> Result<(), GatewayError> {
    db::run(
        db,
        "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        &[id.into(), now.into()],
    )
    .await?;
    Ok(())
}
