//! Settings from `[vars]` in wrangler.toml, with defaults, and secrets by name.

use worker::Env;

use crate::core::outbound::{check_secret_name, SecretUse};

#[derive(Debug, Clone)]
pub struct Settings {
    pub max_body_bytes: usize,
    pub session_ttl_seconds: u64,
    pub echo_chunk_delay_ms: u64,
    pub upstream_connect_timeout_ms: u64,
    pub upstream_timeout_ms: u64,
}

fn var_u64(env: &Env, name: &str, default: u64) -> u64 {
    env.var(name)
        .ok()
        .and_then(|v| v.to_string().trim().parse().ok())
        .unwrap_or(default)
}

impl Settings {
    pub fn from_env(env: &Env) -> Self {
        Settings {
            max_body_bytes: var_u64(env, "MAX_BODY_BYTES", 1 << 20) as usize,
            session_ttl_seconds: var_u64(env, "SESSION_TTL_SECONDS", 86_400).max(60),
            echo_chunk_delay_ms: var_u64(env, "ECHO_CHUNK_DELAY_MS", 20),
            upstream_connect_timeout_ms: var_u64(env, "UPSTREAM_CONNECT_TIMEOUT_MS", 30_000),
            upstream_timeout_ms: var_u64(env, "UPSTREAM_TIMEOUT_MS", 600_000),
        }
    }
}

/// A secret by name, if set and non-empty. Only `env.secret`: a setting meant to be secret is
/// never looked up among plain vars by this code. (At run time the Workers platform hands
/// secrets and `[vars]` to a Worker the same way; what keeps secrets out of `[vars]` is the
/// operator: wrangler.toml lists none, and `wrangler secret put` / `.dev.vars` hold them.)
pub fn secret(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .ok()
        .filter(|s| !s.is_empty())
}

/// A plain setting by name, if set and non-empty.
pub fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.to_string())
        .ok()
        .filter(|s| !s.is_empty())
}

/// A boolean setting: `1`, `true` or `yes` turn it on.
pub fn flag(env: &Env, name: &str) -> bool {
    var(env, name).is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
}

/// The dev setting that lets providers and webhooks live on private hosts and plain http
/// (`core::outbound`). scripts/dev.sh and the e2e tests set it; production must not.
pub fn allow_private_upstreams(env: &Env) -> bool {
    flag(env, "ALLOW_PRIVATE_UPSTREAMS")
}

/// The secret `name` for `use_`, if its name is allowed for that use and it is set. `Err` says
/// why the name is refused (for logs and the operator, never for tenants).
pub fn named_secret(env: &Env, name: &str, use_: SecretUse) -> Result<Option<String>, String> {
    check_secret_name(name, use_, var(env, use_.allowlist_var()).as_deref())?;
    Ok(secret(env, name))
}
