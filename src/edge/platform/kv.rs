//! The KV binding.

use worker::{Env, KvStore};

/// The name of the KV namespace binding (wrangler.toml).
pub const BINDING: &str = "KV";

/// The KV namespace, if bound.
pub fn namespace(env: &Env) -> worker::Result<KvStore> {
    env.kv(BINDING)
}
