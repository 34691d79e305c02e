//! Settings from `[vars]` in wrangler.toml, with defaults.

use worker::Env;

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

/// A secret (or plain var) by name, if set and non-empty.
pub fn secret(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
        .filter(|s| !s.is_empty())
}
