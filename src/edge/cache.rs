//! Short-lived caches, inside one isolate, of the configuration rows every request reads: API
//! keys (and key ids known to be unusable), models (with the tenant's multiplier), a model's
//! extra routes and a tenant's plugins.
//! With them warm, a chat completion makes a single D1 round trip before the upstream call: the
//! reservation.
//!
//! Why a cached row is safe: the reservation statement re-checks in D1, atomically with taking
//! the money, that the key is not revoked, the tenant not disabled and the balance sufficient
//! (`db::reserve`). So revocation and balances are never served from a cache. What a cached row
//! can delay is a configuration change (a price, a route, a key's model list, plugin
//! enablement): any admin write clears every cache of the isolate that served it at once, and
//! other isolates pick the change up when their entry expires (`CONFIG_CACHE_TTL_MS`, 10 s by
//! default; 0 turns the caches off).
//!
//! An isolate runs its requests on one thread (interleaved only at awaits, and no borrow here
//! spans an await), so the caches are thread-locals.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::thread::LocalKey;

/// Entries per cache; a full cache first drops its expired entries, then everything.
const MAX_ENTRIES: usize = 4096;

/// The default lifetime of an entry.
pub const DEFAULT_TTL_MS: u64 = 10_000;

/// One cache: values by key, each with the time it expires.
pub struct Ttl<T> {
    entries: RefCell<HashMap<String, (u64, Rc<T>)>>,
}

impl<T> Ttl<T> {
    fn new() -> Self {
        Ttl {
            entries: RefCell::new(HashMap::new()),
        }
    }

    fn get(&self, key: &str, now: u64) -> Option<Rc<T>> {
        let entries = self.entries.borrow();
        let (expires, value) = entries.get(key)?;
        (*expires > now).then(|| value.clone())
    }

    fn put(&self, key: String, value: Rc<T>, now: u64, ttl_ms: u64) {
        let mut entries = self.entries.borrow_mut();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (expires, _)| *expires > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (now.saturating_add(ttl_ms), value));
    }

    fn clear(&self) {
        self.entries.borrow_mut().clear();
    }
}

thread_local! {
    static TTL_MS: Cell<u64> = const { Cell::new(DEFAULT_TTL_MS) };
    /// Key id → what the digest check needs (`auth`).
    pub static KEYS: Ttl<super::auth::CachedKey> = Ttl::new();
    /// Key ids with no usable key (unknown, revoked, tenant disabled): refused without D1.
    pub static DEAD_KEYS: Ttl<()> = Ttl::new();
    /// Model name and tenant → the model row with the tenant's multiplier (`db::load_model`).
    pub static MODELS: Ttl<super::db::ModelRow> = Ttl::new();
    /// Model name → its extra routes (`routes::load_extra_routes`).
    pub static ROUTES: Ttl<Vec<super::routes::RouteRow>> = Ttl::new();
    /// Tenant id → the plugins it has enabled (`plugins::store::enabled_for_tenant`).
    pub static PLUGINS: Ttl<Vec<super::plugins::store::Enabled>> = Ttl::new();
}

/// Sets the entry lifetime from `CONFIG_CACHE_TTL_MS` (once per request; cheap).
pub fn configure(env: &worker::Env) {
    let ttl = env
        .var("CONFIG_CACHE_TTL_MS")
        .ok()
        .and_then(|v| v.to_string().trim().parse().ok())
        .unwrap_or(DEFAULT_TTL_MS);
    TTL_MS.with(|t| t.set(ttl));
}

/// The cached value of `key`, if any and not expired.
pub fn get<T: 'static>(cache: &'static LocalKey<Ttl<T>>, key: &str) -> Option<Rc<T>> {
    if TTL_MS.with(Cell::get) == 0 {
        return None;
    }
    let now = super::now_ms();
    cache.with(|c| c.get(key, now))
}

/// Caches `value` under `key` (unless caching is off) and returns it shared.
pub fn put<T: 'static>(cache: &'static LocalKey<Ttl<T>>, key: String, value: T) -> Rc<T> {
    let value = Rc::new(value);
    let ttl = TTL_MS.with(Cell::get);
    if ttl > 0 {
        let now = super::now_ms();
        cache.with(|c| c.put(key, value.clone(), now, ttl));
    }
    value
}

/// The cached value of `key`, or `load`'s (cached when it is `Some`).
pub async fn get_or_load<T: 'static, F, Fut, E>(
    cache: &'static LocalKey<Ttl<T>>,
    key: String,
    load: F,
) -> Result<Option<Rc<T>>, E>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, E>>,
{
    if let Some(hit) = get(cache, &key) {
        return Ok(Some(hit));
    }
    Ok(load().await?.map(|value| put(cache, key, value)))
}

/// Drops every entry of every cache (after an admin write).
pub fn clear_all() {
    KEYS.with(Ttl::clear);
    DEAD_KEYS.with(Ttl::clear);
    MODELS.with(Ttl::clear);
    ROUTES.with(Ttl::clear);
    PLUGINS.with(Ttl::clear);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_a_full_cache_makes_room() {
        let cache: Ttl<u32> = Ttl::new();
        cache.put("a".into(), Rc::new(1), 1_000, 10);
        assert_eq!(cache.get("a", 1_009).as_deref(), Some(&1));
        assert_eq!(cache.get("a", 1_010), None);
        for i in 0..MAX_ENTRIES {
            cache.put(format!("k{i}"), Rc::new(2), 2_000, 10);
        }
        // Full of live entries: the next insert clears the cache and keeps only itself.
        cache.put("new".into(), Rc::new(3), 2_001, 10);
        assert_eq!(cache.entries.borrow().len(), 1);
        assert_eq!(cache.get("new", 2_002).as_deref(), Some(&3));
        cache.clear();
        assert_eq!(cache.get("new", 2_002), None);
    }
}
