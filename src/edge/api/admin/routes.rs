//! `/admin/routes/{model}`: a model's extra provider routes (failover and weighted spread).
//! Which route a request takes, and each route's breaker, are decided in `gateway::routes`.

use serde::Deserialize;
use serde_json::Value;
use worker::D1Database;

use crate::core::error::{ErrorKind, GatewayError};
use crate::edge::store;

/// `PUT /admin/routes/{model}` body: the model's extra routes, replacing the previous ones.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesBody {
    pub routes: Vec<RouteSpec>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub provider: String,
    /// Defaults to the model's own `upstream_model`.
    pub upstream_model: Option<String>,
    /// Default 1 (after the model's own provider, which is priority 0).
    pub priority: Option<u32>,
    /// Default 1.
    pub weight: Option<u32>,
}

/// Replaces a model's extra routes.
pub async fn put_routes(
    database: &D1Database,
    model: &str,
    body: RoutesBody,
) -> Result<Value, GatewayError> {
    let Some(m) = store::models::load_model(database, model, "").await? else {
        return Err(GatewayError::new(
            ErrorKind::NotFound,
            format!("No model `{model}`."),
        ));
    };
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for (i, r) in body.routes.iter().enumerate() {
        if !store::models::provider_exists(database, &r.provider).await? {
            return Err(GatewayError::invalid_param(
                &format!("routes[{i}].provider"),
                format!("No provider `{}`.", r.provider),
            ));
        }
        let weight = r.weight.unwrap_or(1);
        if weight == 0 {
            return Err(GatewayError::invalid_param(
                &format!("routes[{i}].weight"),
                "`weight` must be at least 1.",
            ));
        }
        let upstream = r
            .upstream_model
            .clone()
            .unwrap_or_else(|| m.upstream_model.clone());
        let priority = r.priority.unwrap_or(1);
        rows.push(store::routes::RouteSetting {
            provider: r.provider.clone(),
            upstream_model: upstream.clone(),
            priority,
            weight,
        });
        out.push(
            serde_json::json!({"provider": r.provider, "upstream_model": upstream,
            "priority": priority, "weight": weight}),
        );
    }
    store::routes::replace_routes(database, model, &rows).await?;
    Ok(
        serde_json::json!({"model": model, "primary": {"provider": m.provider,
        "upstream_model": m.upstream_model, "priority": 0}, "routes": out}),
    )
}

/// A model's routes: its own provider and the extra ones.
pub async fn get_routes(database: &D1Database, model: &str) -> Result<Value, GatewayError> {
    let Some(m) = store::models::load_model(database, model, "").await? else {
        return Err(GatewayError::new(
            ErrorKind::NotFound,
            format!("No model `{model}`."),
        ));
    };
    let extras = store::routes::load_extra_routes(database, model).await?;
    let routes: Vec<Value> = extras
        .iter()
        .map(|r| {
            serde_json::json!({"provider": r.provider, "upstream_model": r.upstream_model,
            "priority": r.priority, "weight": r.weight})
        })
        .collect();
    Ok(
        serde_json::json!({"model": model, "primary": {"provider": m.provider,
        "upstream_model": m.upstream_model, "priority": 0}, "routes": routes}),
    )
}
