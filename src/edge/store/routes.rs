//! A model's extra provider routes (D1, cached in the isolate) and each route's circuit breaker
//! state (KV, keyed by the route's name `provider/upstream_model`).

use serde::Deserialize;
use worker::{D1Database, Env};

use crate::core::error::GatewayError;
use crate::core::routing::BreakerState;
use crate::edge::platform::d1 as db;
use crate::edge::platform::kv;
use crate::edge::platform::ttl_cache::{self, Ttl};

thread_local! {
    /// Model name → its extra routes ([`load_extra_routes`]).
    static ROUTES: Ttl<Vec<RouteRow>> = Ttl::new();
}

/// An extra route row, joined with its provider.
#[derive(Debug, Clone, Deserialize)]
pub struct RouteRow {
    pub provider: String,
    pub upstream_model: String,
    pub priority: u32,
    pub weight: u32,
    pub kind: String,
    pub base_url: String,
    pub api_key_secret: Option<String>,
    pub config: Option<String>,
}

/// The extra routes of a model.
pub async fn load_extra_routes(
    database: &D1Database,
    model: &str,
) -> Result<Vec<RouteRow>, GatewayError> {
    db::all(
        database,
        "SELECT r.provider, r.upstream_model, r.priority, r.weight, p.kind, p.base_url,
                p.api_key_secret, p.config
         FROM model_routes r JOIN providers p ON p.name = r.provider WHERE r.model = ?1",
        &[model.into()],
    )
    .await
}

/// [`load_extra_routes`] through the isolate's cache: what a chat request reads.
pub async fn cached_extra_routes(
    database: &D1Database,
    model: &str,
) -> Result<Vec<RouteRow>, GatewayError> {
    let cached = ttl_cache::get_or_load(&ROUTES, model.to_string(), || async {
        load_extra_routes(database, model).await.map(Some)
    })
    .await?;
    Ok(cached
        .map(|routes| routes.as_ref().clone())
        .unwrap_or_default())
}

fn breaker_key(route_name: &str) -> String {
    format!("breaker:{route_name}")
}

/// The breaker state of the route named `route_name` (closed when unknown or KV is
/// unavailable).
pub async fn breaker(env: &Env, route_name: &str) -> BreakerState {
    match kv::namespace(env) {
        Ok(kv) => kv
            .get(&breaker_key(route_name))
            .json::<BreakerState>()
            .await
            .ok()
            .flatten()
            .unwrap_or_default(),
        Err(_) => BreakerState::default(),
    }
}

/// Stores the breaker state of the route named `route_name` (the closed state is deleted).
pub async fn record_breaker(env: &Env, route_name: &str, after: BreakerState) {
    if let Ok(kv) = kv::namespace(env) {
        let key = breaker_key(route_name);
        if after == BreakerState::default() {
            let _ = kv.delete(&key).await;
        } else if let Ok(put) = kv.put(&key, after) {
            // KV's minimum TTL is 60 s; a state this old says nothing about the route any more.
            let _ = put.expiration_ttl(86_400).execute().await;
        }
    }
}

/// One extra route of a model, as the admin API sets it.
pub struct RouteSetting {
    pub provider: String,
    pub upstream_model: String,
    pub priority: u32,
    pub weight: u32,
}

/// Replaces the model's extra routes with `routes`, in one batch.
pub async fn replace_routes(
    database: &D1Database,
    model: &str,
    routes: &[RouteSetting],
) -> Result<(), GatewayError> {
    let mut statements = vec![db::statement(
        database,
        "DELETE FROM model_routes WHERE model = ?1",
        &[model.into()],
    )?];
    for r in routes {
        statements.push(db::statement(
            database,
            "INSERT OR REPLACE INTO model_routes (model, provider, upstream_model, priority, weight)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            &[
                model.into(),
                r.provider.as_str().into(),
                r.upstream_model.as_str().into(),
                i64::from(r.priority).into(),
                i64::from(r.weight).into(),
            ],
        )?);
    }
    db::batch(database, statements).await?;
    Ok(())
}
