//! A generic short-lived cache inside one isolate (`store` uses it for the configuration rows
//! every request reads: API keys, models with the tenant's multiplier, routes, plugins).
//!
//! Each cache is a thread-local `Ttl<T>` declared by the module that owns the data; [`clear_all`]
//! empties every one of them at once (after an admin write) through a generation number, so this
//! module knows none of them. Lifetime of an entry: `CONFIG_CACHE_TTL_MS` (10 s by default; 0
//! turns the caches off), set per request by [`configure`].
//!
//! An isolate runs its requests on one thread (interleaved only at awaits, and no borrow here
//! spans an await), so the caches are thread-locals.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::thread::LocalKey;

use super::clock::now_ms;

/// Entries per cache; a full cache first drops its expired entries, then everything.
const MAX_ENTRIES: usize = 4096;

/// One cache: values by key, each with the time it expires, valid for one generation.
pub struct Ttl<T> {
    entries: RefCell<HashMap<String, (u64, Rc<T>)>>,
    generation: Cell<u64>,
}

impl<T> Default for Ttl<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Ttl<T> {
    pub fn new() -> Self {
        Ttl {
            entries: RefCell::new(HashMap::new()),
            generation: Cell::new(0),
        }
    }

    /// Empties the cache if [`clear_all`] ran since it was last used.
    fn sync(&self, generation: u64) {
        if self.generation.get() != generation {
            self.entries.borrow_mut().clear();
            self.generation.set(generation);
        }
    }

    fn get(&self, key: &str, now: u64, generation: u64) -> Option<Rc<T>> {
        self.sync(generation);
        let entries = self.entries.borrow();
        let (expires, value) = entries.get(key)?;
        (*expires > now).then(|| value.clone())
    }

    fn put(&self, key: String, value: Rc<T>, now: u64, ttl_ms: u64, generation: u64) {
        self.sync(generation);
        let mut entries = self.entries.borrow_mut();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (expires, _)| *expires > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (now.saturating_add(ttl_ms), value));
    }
}

thread_local! {
    static TTL_MS: Cell<u64> = const { Cell::new(super::env::DEFAULT_CONFIG_CACHE_TTL_MS) };
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// Sets the entry lifetime (`Settings::config_cache_ttl_ms`; once per request; cheap).
pub fn configure(ttl_ms: u64) {
    TTL_MS.with(|t| t.set(ttl_ms));
}

/// The cached value of `key`, if any and not expired.
pub fn get<T: 'static>(cache: &'static LocalKey<Ttl<T>>, key: &str) -> Option<Rc<T>> {
    if TTL_MS.with(Cell::get) == 0 {
        return None;
    }
    let now = now_ms();
    let generation = GENERATION.with(Cell::get);
    cache.with(|c| c.get(key, now, generation))
}

/// Caches `value` under `key` (unless caching is off) and returns it shared.
pub fn put<T: 'static>(cache: &'static LocalKey<Ttl<T>>, key: String, value: T) -> Rc<T> {
    let value = Rc::new(value);
    let ttl = TTL_MS.with(Cell::get);
    if ttl > 0 {
        let now = now_ms();
        let generation = GENERATION.with(Cell::get);
        cache.with(|c| c.put(key, value.clone(), now, ttl, generation));
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

/// Drops every entry of every cache of this isolate (after an admin write).
pub fn clear_all() {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_a_full_cache_makes_room() {
        let cache: Ttl<u32> = Ttl::new();
        cache.put("a".into(), Rc::new(1), 1_000, 10, 0);
        assert_eq!(cache.get("a", 1_009, 0).as_deref(), Some(&1));
        assert_eq!(cache.get("a", 1_010, 0), None);
        for i in 0..MAX_ENTRIES {
            cache.put(format!("k{i}"), Rc::new(2), 2_000, 10, 0);
        }
        // Full of live entries: the next insert clears the cache and keeps only itself.
        cache.put("new".into(), Rc::new(3), 2_001, 10, 0);
        assert_eq!(cache.entries.borrow().len(), 1);
        assert_eq!(cache.get("new", 2_002, 0).as_deref(), Some(&3));
    }

    #[test]
    fn a_new_generation_empties_the_cache() {
        let cache: Ttl<u32> = Ttl::new();
        cache.put("a".into(), Rc::new(1), 1_000, 10, 0);
        assert_eq!(cache.get("a", 1_001, 0).as_deref(), Some(&1));
        // After clear_all (generation 1), the entry is gone, and stays gone.
        assert_eq!(cache.get("a", 1_001, 1), None);
        assert_eq!(cache.get("a", 1_001, 0), None);
        cache.put("b".into(), Rc::new(2), 1_000, 10, 1);
        assert_eq!(cache.get("b", 1_001, 1).as_deref(), Some(&2));
    }
}
