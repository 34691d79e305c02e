//! Who is calling: tenant API keys (digest checked, cached in KV) and the admin token.
//!
//! The isolate's cache (`edge::cache`, seconds) and KV (minutes) hold only what a key's digest
//! check needs; revocation deletes the KV entry and clears the isolate's cache, and every billed
//! request re-checks `revoked_at` inside its D1 reservation statement (routes that reserve
//! nothing check D1 directly: `tenant::live_caller`), so a revoked key stops working at once even
//! where a stale copy survives.

use serde::{Deserialize, Serialize};
use worker::{Env, Request};

use super::db;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::keys;
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::env as config;
use crate::edge::platform::ttl_cache::{self as cache, Ttl};

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

fn unauthorized(message: &str) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidApiKey, message)
}

/// A configuration error naming what the operator must fix (503, code `configuration_error`:
/// shown as is, unlike other server errors).
pub fn config_error(message: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::Unavailable, message).with_code(CONFIG_ERROR_CODE)
}

/// The `code` of [`config_error`].
pub const CONFIG_ERROR_CODE: &str = "configuration_error";

thread_local! {
    /// Key id → what the digest check needs.
    static KEYS: Ttl<CachedKey> = Ttl::new();
    /// Key ids with no usable key (unknown, revoked, tenant disabled): refused without D1.
    static DEAD_KEYS: Ttl<()> = Ttl::new();
}

/// The pepper that key digests are keyed with.
pub fn pepper(env: &Env) -> Result<Vec<u8>, GatewayError> {
    config::secret(env, "KEY_PEPPER")
        .map(String::into_bytes)
        .ok_or_else(|| {
            config_error(
                "The gateway is not configured: the KEY_PEPPER secret is not set \
                 (wrangler secret put KEY_PEPPER; scripts/dev.sh writes one into .dev.vars).",
            )
        })
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
///
/// A key id that is unknown, revoked or of a disabled tenant is remembered as such in the
/// isolate ([`DEAD_KEYS`]) and in KV ([`dead_key_name`]), so a flood of random
/// well-formed keys costs no D1 query each.
pub async fn authenticate(req: &Request, env: &Env) -> Result<Caller, GatewayError> {
    let token = presented_token(req).ok_or_else(|| {
        unauthorized("You didn't provide an API key. Send it as `Authorization: Bearer tg-…`.")
    })?;
    let parsed = keys::parse_api_key(&token)
        .ok_or_else(|| unauthorized("Incorrect API key provided: not a Tollgate key."))?;
    let key_id = parsed.key_id.to_string();
    let pepper = pepper(env)?;
    let dead = || unauthorized("Incorrect API key provided: unknown or revoked key.");

    if cache::get(&DEAD_KEYS, &key_id).is_some() {
        return Err(dead());
    }
    let record = match cache::get(&KEYS, &key_id) {
        Some(hit) => hit,
        None => match load_key(env, &key_id).await? {
            Some(record) => cache::put(&KEYS, key_id.clone(), record),
            None => {
                cache::put(&DEAD_KEYS, key_id, ());
                return Err(dead());
            }
        },
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

/// A key's record from KV, else from D1 (then copied to KV); `None` when there is no usable key
/// with this id.
///
/// Against a revocation racing this load (D1 read here, then the revocation's marker and
/// delete, then our copy written): revocations write the marker before deleting the copy, and
/// a load writes its copy before reading the marker. Whichever comes last removes the copy.
async fn load_key(env: &Env, key_id: &str) -> Result<Option<CachedKey>, GatewayError> {
    let kv = crate::edge::platform::kv::namespace(env).ok();
    if let Some(kv) = &kv {
        if let Ok(Some(copy)) = kv.get(&key_cache_name(key_id)).json::<CachedKey>().await {
            return Ok(Some(copy));
        }
        if let Ok(Some(_)) = kv.get(&dead_key_name(key_id)).text().await {
            return Ok(None);
        }
    }
    let database = db::database(env)?;
    let row: Option<KeyRow> = db::first(
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
    let Ok(kv) = crate::edge::platform::kv::namespace(env) else {
        return;
    };
    for id in key_ids {
        mark_dead(&kv, id, DEAD_KEY_TTL_SECONDS).await;
        let _ = kv.delete(&key_cache_name(id)).await;
    }
}

/// After a key is created or a tenant re-enabled: no marker may hide the keys.
pub async fn revive_keys(env: &Env, key_ids: &[String]) {
    let Ok(kv) = crate::edge::platform::kv::namespace(env) else {
        return;
    };
    for id in key_ids {
        let _ = kv.delete(&dead_key_name(id)).await;
    }
}

/// The configured admin token, or why the admin API is unusable.
fn admin_token(env: &Env) -> Result<String, GatewayError> {
    let configured = config::secret(env, "ADMIN_TOKEN").ok_or_else(|| {
        unauthorized("The admin API is disabled: set the ADMIN_TOKEN secret to enable it.")
    })?;
    if let Some(problem) = keys::admin_token_problem(&configured) {
        return Err(config_error(problem));
    }
    Ok(configured)
}

fn presented_admin_token(req: &Request) -> Result<String, GatewayError> {
    req.headers()
        .get("authorization")
        .ok()
        .flatten()
        .and_then(|h| keys::bearer_token(&h).map(str::to_string))
        .ok_or_else(|| unauthorized("Admin routes need `Authorization: Bearer <ADMIN_TOKEN>`."))
}

/// Whether the request carries the admin token (no throttling, no side effects: for deciding
/// whether an admin write may have changed configuration).
pub fn authorize_admin(req: &Request, env: &Env) -> Result<(), GatewayError> {
    let configured = admin_token(env)?;
    if keys::admin_token_matches(&presented_admin_token(req)?, &configured) {
        Ok(())
    } else {
        Err(unauthorized("Incorrect admin token."))
    }
}

/// Why an admin request is refused.
pub struct AdminRefusal {
    pub error: GatewayError,
    /// Seconds to wait (`Retry-After`) when the client address is throttled.
    pub retry_after: Option<u64>,
}

impl From<GatewayError> for AdminRefusal {
    fn from(error: GatewayError) -> Self {
        AdminRefusal {
            error,
            retry_after: None,
        }
    }
}

thread_local! {
    /// Failed admin attempts per client address in this isolate: (window start, count).
    static ADMIN_FAILURES: std::cell::RefCell<std::collections::HashMap<String, (u64, u64)>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

fn admin_failure_name(ip: &str, window: u64) -> String {
    format!("adminfail:{ip}:{window}")
}

/// Authorises an admin request, throttling failures: after
/// [`keys::ADMIN_FAILURES_PER_WINDOW`] failed attempts from one address in a minute (counted in
/// the isolate and in KV), every attempt from it is refused with 429 until the minute ends,
/// before any comparison.
pub async fn admit_admin(req: &Request, env: &Env) -> Result<(), AdminRefusal> {
    let configured = admin_token(env)?;
    let ip = req
        .headers()
        .get("cf-connecting-ip")
        .ok()
        .flatten()
        .filter(|ip| !ip.is_empty() && ip.len() <= 64)
        .unwrap_or_else(|| "unknown".to_string());
    let now = now_ms();
    let window = keys::admin_failure_window(now);
    let local = ADMIN_FAILURES.with(|f| match f.borrow().get(&ip) {
        Some((w, n)) if *w == window => *n,
        _ => 0,
    });
    let kv = crate::edge::platform::kv::namespace(env).ok();
    let mut shared = 0;
    if let Some(kv) = &kv {
        if let Ok(Some(text)) = kv.get(&admin_failure_name(&ip, window)).text().await {
            // Written as a string; older KV bindings JSON-quote it.
            shared = text.trim().trim_matches('"').parse::<u64>().unwrap_or(0);
        }
    }
    let seen = local.max(shared);
    if let Some(retry_after) = keys::admin_throttle(now, seen) {
        return Err(AdminRefusal {
            error: GatewayError::new(
                ErrorKind::UpstreamRateLimited,
                format!(
                    "Too many failed admin attempts from this address; retry in {retry_after} s."
                ),
            )
            .with_code("admin_throttled"),
            retry_after: Some(retry_after),
        });
    }
    let presented = presented_admin_token(req);
    if presented
        .as_deref()
        .is_ok_and(|p| keys::admin_token_matches(p, &configured))
    {
        return Ok(());
    }
    let count = seen + 1;
    ADMIN_FAILURES.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() > 4096 {
            f.retain(|_, (w, _)| *w == window);
        }
        f.insert(ip.clone(), (window, count));
    });
    if let Some(kv) = &kv {
        if let Ok(put) = kv.put(&admin_failure_name(&ip, window), count.to_string()) {
            let _ = put
                .expiration_ttl(2 * keys::ADMIN_FAILURE_WINDOW_MS / 1000)
                .execute()
                .await;
        }
    }
    Err(presented
        .err()
        .unwrap_or_else(|| unauthorized("Incorrect admin token."))
        .into())
}
