//! Who is calling: tenant API keys (digest checked, cached in KV) and the admin token.
//!
//! The isolate's cache (`store::keys` on `platform::ttl_cache`, seconds) and KV (minutes) hold only what a key's digest
//! check needs; revocation deletes the KV entry and clears the isolate's cache, and every billed
//! request re-checks `revoked_at` inside its D1 reservation statement (routes that reserve
//! nothing check D1 directly: `tenant::live_caller`), so a revoked key stops working at once even
//! where a stale copy survives.

use worker::{Env, Request};

use crate::core::error::{ErrorKind, GatewayError};
use crate::core::keys;
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::d1 as db;
use crate::edge::platform::env as config;
pub use crate::edge::platform::env::{config_error, CONFIG_ERROR_CODE};
use crate::edge::store;

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

fn unauthorized(message: &str) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidApiKey, message)
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
    // Azure-style clients send the key in `api-key`, Anthropic's in `x-api-key`.
    headers
        .get("api-key")
        .ok()
        .flatten()
        .or_else(|| headers.get("x-api-key").ok().flatten())
}

/// Authenticates a tenant API key (`Authorization: Bearer tg-…`).
///
/// A key id that is unknown, revoked or of a disabled tenant is remembered as such in the
/// isolate (`store::keys`) and in KV ([`dead_key_name`]), so a flood of random
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

    let record = store::keys::usable_key(env, &key_id)
        .await?
        .ok_or_else(dead)?;
    if !keys::key_matches(&pepper, &token, &record.digest) {
        return Err(unauthorized("Incorrect API key provided."));
    }
    Ok(Caller {
        key_id,
        tenant_id: record.tenant_id.clone(),
        models: record.models.clone(),
    })
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
    let shared = store::keys::admin_failures(env, &ip, window).await;
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
    store::keys::record_admin_failures(env, &ip, window, count).await;
    Err(presented
        .err()
        .unwrap_or_else(|| unauthorized("Incorrect admin token."))
        .into())
}

/// Authenticates and checks the key is still live in D1 (revocation and a tenant's
/// disablement are immediate).
pub async fn live_caller(req: &Request, env: &Env) -> Result<Caller, GatewayError> {
    let caller = authenticate(req, env).await?;
    ensure_live(&db::database(env)?, &caller).await?;
    Ok(caller)
}

/// Refuses (401) a caller whose key is revoked or gone, or whose tenant is disabled, as D1
/// says now (caches may lag by seconds).
pub async fn ensure_live(
    database: &worker::D1Database,
    caller: &Caller,
) -> Result<(), GatewayError> {
    let refused = |message: &str| Err(GatewayError::new(ErrorKind::InvalidApiKey, message));
    match store::keys::key_state(database, &caller.key_id).await? {
        Some(k) if k.revoked_at.is_some() => {
            refused("Incorrect API key provided: this key has been revoked.")
        }
        Some(k) if k.disabled_at.is_some() => refused("This API key's tenant is disabled."),
        Some(_) => Ok(()),
        None => refused("Incorrect API key provided: unknown or revoked key."),
    }
}
