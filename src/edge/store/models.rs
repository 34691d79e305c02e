//! Models with their provider, price version and the asking tenant's multiplier, cached in the
//! isolate: the row every chat request reads.

use serde::Deserialize;
use worker::D1Database;

use crate::core::error::GatewayError;
use crate::edge::platform::d1::first;
use crate::edge::platform::ttl_cache::{self, Ttl};

/// A model, the provider that serves it, its current price version, and the multiplier of the
/// tenant asking.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelRow {
    pub name: String,
    pub provider: String,
    pub upstream_model: String,
    pub input_price: u64,
    pub cached_input_price: Option<u64>,
    pub output_price: u64,
    pub reasoning_price: Option<u64>,
    /// The `price_versions` row these prices come from (NULL only before migration 0003 ran).
    pub price_version: Option<u64>,
    pub max_output_tokens: u64,
    pub encoding: Option<String>,
    pub kind: String,
    pub base_url: String,
    pub api_key_secret: Option<String>,
    /// The provider's adapter-specific JSON.
    #[serde(default)]
    pub config: Option<String>,
    pub created_at: u64,
    /// The tenant's price multiplier in basis points (10,000 when unknown).
    pub multiplier_bps: u64,
}

thread_local! {
    /// Model name and tenant → the model row with the tenant's multiplier ([`load_model`]).
    static MODELS: Ttl<ModelRow> = Ttl::new();
}

/// [`load_model`] through the isolate's cache (`edge::cache`): the row a chat request reads.
pub async fn cached_model(
    db: &D1Database,
    name: &str,
    tenant_id: &str,
) -> Result<Option<std::rc::Rc<ModelRow>>, GatewayError> {
    ttl_cache::get_or_load(&MODELS, format!("{name}\u{0}{tenant_id}"), || {
        load_model(db, name, tenant_id)
    })
    .await
}

pub async fn load_model(
    db: &D1Database,
    name: &str,
    tenant_id: &str,
) -> Result<Option<ModelRow>, GatewayError> {
    first(
        db,
        "SELECT m.name, m.provider, m.upstream_model,
                COALESCE(v.input_price, m.input_price) AS input_price, v.cached_input_price,
                COALESCE(v.output_price, m.output_price) AS output_price, v.reasoning_price,
                m.price_version, m.max_output_tokens, m.encoding, m.created_at, p.kind, p.base_url,
                p.api_key_secret, p.config,
                COALESCE((SELECT t.price_multiplier_bps FROM tenants t WHERE t.id = ?2), 10000)
                  AS multiplier_bps
         FROM models m JOIN providers p ON p.name = m.provider
         LEFT JOIN price_versions v ON v.id = m.price_version
         WHERE m.name = ?1",
        &[name.into(), tenant_id.into()],
    )
    .await
}
