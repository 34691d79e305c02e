//! Models with their provider, price version and the asking tenant's multiplier, cached in the
//! isolate: the row every chat request reads.

use serde::Deserialize;
use serde_json::Value;
use worker::D1Database;

use crate::core::billing::tiers::{CacheWritePrices, LongContext, PriceSheet, Tier};
use crate::core::billing::units::UnitPrices;
use crate::core::billing::Price;
use crate::core::error::GatewayError;
use crate::edge::platform::d1::{self, first};
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
    // Cache-write and long-context prices of the version (schema/0013); NULL when not set.
    #[serde(default)]
    pub cache_write_5m_price: Option<u64>,
    #[serde(default)]
    pub cache_write_1h_price: Option<u64>,
    #[serde(default)]
    pub long_context_threshold: Option<u64>,
    #[serde(default)]
    pub long_input_price: Option<u64>,
    #[serde(default)]
    pub long_cached_input_price: Option<u64>,
    #[serde(default)]
    pub long_output_price: Option<u64>,
    #[serde(default)]
    pub long_reasoning_price: Option<u64>,
    #[serde(default)]
    pub long_cache_write_5m_price: Option<u64>,
    #[serde(default)]
    pub long_cache_write_1h_price: Option<u64>,
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
    /// Media prices of the price version (schema 0012), see [`ModelRow::unit_prices`].
    #[serde(default)]
    pub image_input_price: Option<u64>,
    #[serde(default)]
    pub audio_input_price: Option<u64>,
    /// The image price table as stored (JSON), NULL when images are billed on tokens.
    #[serde(default)]
    pub image_prices: Option<String>,
    #[serde(default)]
    pub character_price: Option<u64>,
    #[serde(default)]
    pub minute_price: Option<u64>,
    /// `models.kind`: chat, embedding, image, tts or stt.
    #[serde(default = "chat_kind")]
    pub model_kind: String,
}

fn chat_kind() -> String {
    "chat".to_string()
}

impl ModelRow {
    /// The model's prices in units other than text tokens. A stored image table that no longer
    /// parses (it is checked when written) is an internal error, never a free image.
    pub fn unit_prices(&self) -> Result<UnitPrices, GatewayError> {
        let images = match &self.image_prices {
            Some(json) => UnitPrices::parse_image_table(json).map_err(|e| {
                GatewayError::internal(format!("model {}: stored {}", self.name, e.0))
            })?,
            None => Vec::new(),
        };
        Ok(UnitPrices {
            image_input: self.image_input_price,
            audio_input: self.audio_input_price,
            images,
            characters: self.character_price,
            minute: self.minute_price,
        })
    }
}

impl ModelRow {
    /// Every price of the row's version as the tier arithmetic takes it. A long-context tier
    /// needs its threshold and its input and output prices; without them there is none.
    pub fn price_sheet(&self) -> PriceSheet {
        let t = self;
        let long_context = match (
            t.long_context_threshold,
            t.long_input_price,
            t.long_output_price,
        ) {
            (Some(above), Some(input), Some(output)) => Some(LongContext {
                above_prompt_tokens: above,
                tier: Tier {
                    price: Price {
                        input,
                        cached_input: t.long_cached_input_price,
                        output,
                        reasoning: t.long_reasoning_price,
                    },
                    cache_write: CacheWritePrices {
                        five_minutes: t.long_cache_write_5m_price,
                        one_hour: t.long_cache_write_1h_price,
                    },
                },
            }),
            _ => None,
        };
        PriceSheet {
            base: Tier {
                price: Price {
                    input: self.input_price,
                    cached_input: self.cached_input_price,
                    output: self.output_price,
                    reasoning: self.reasoning_price,
                },
                cache_write: CacheWritePrices {
                    five_minutes: t.cache_write_5m_price,
                    one_hour: t.cache_write_1h_price,
                },
            },
            long_context,
        }
    }
}

thread_local! {
    /// Model name and tenant → the model row with the tenant's multiplier ([`load_model`]).
    static MODELS: Ttl<ModelRow> = Ttl::new();
}

/// [`load_model`] through the isolate's cache (`platform::ttl_cache`): the row a chat request reads.
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
                v.cache_write_5m_price, v.cache_write_1h_price, v.long_context_threshold,
                v.long_input_price, v.long_cached_input_price, v.long_output_price,
                v.long_reasoning_price, v.long_cache_write_5m_price, v.long_cache_write_1h_price,
                m.price_version, m.max_output_tokens, m.encoding, m.created_at, p.kind, p.base_url,
                p.api_key_secret, p.config,
                v.image_input_price, v.audio_input_price, v.image_prices, v.character_price,
                v.minute_price, m.kind AS model_kind,
                COALESCE((SELECT t.price_multiplier_bps FROM tenants t WHERE t.id = ?2), 10000)
                  AS multiplier_bps
         FROM models m JOIN providers p ON p.name = m.provider
         LEFT JOIN price_versions v ON v.id = m.price_version
         WHERE m.name = ?1",
        &[name.into(), tenant_id.into()],
    )
    .await
}

/// A provider to store.
pub struct ProviderRow<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub base_url: &'a str,
    pub api_key_secret: Option<&'a str>,
    /// The adapter-specific JSON object, as text.
    pub config: Option<&'a str>,
}

pub async fn put_provider(
    db: &D1Database,
    p: &ProviderRow<'_>,
    now: u64,
) -> Result<(), GatewayError> {
    d1::run(
        db,
        "INSERT INTO providers (name, kind, base_url, api_key_secret, config, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, base_url = excluded.base_url,
           api_key_secret = excluded.api_key_secret, config = excluded.config,
           updated_at = excluded.updated_at",
        &[
            p.name.into(),
            p.kind.into(),
            p.base_url.into(),
            p.api_key_secret.into(),
            p.config.into(),
            now.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Every provider (`config` as stored text).
pub async fn list_providers(db: &D1Database) -> Result<Vec<Value>, GatewayError> {
    d1::all(
        db,
        "SELECT name, kind, base_url, api_key_secret, config, updated_at
         FROM providers ORDER BY name",
        &[],
    )
    .await
}

pub async fn provider_exists(db: &D1Database, name: &str) -> Result<bool, GatewayError> {
    let row: Option<Value> = d1::first(
        db,
        "SELECT name FROM providers WHERE name = ?1",
        &[name.into()],
    )
    .await?;
    Ok(row.is_some())
}

/// One model the provider serves (`{"name": …}`), if any.
pub async fn a_model_of_provider(
    db: &D1Database,
    name: &str,
) -> Result<Option<Value>, GatewayError> {
    d1::first(
        db,
        "SELECT name FROM models WHERE provider = ?1 LIMIT 1",
        &[name.into()],
    )
    .await
}

/// Deletes the provider; `false` when there was none.
pub async fn delete_provider(db: &D1Database, name: &str) -> Result<bool, GatewayError> {
    Ok(d1::run(db, "DELETE FROM providers WHERE name = ?1", &[name.into()]).await? > 0)
}

/// A model to store (its prices become a price version through `store::billing`).
pub struct NewModel<'a> {
    pub name: &'a str,
    pub provider: &'a str,
    pub upstream_model: &'a str,
    pub input_price: i64,
    pub output_price: i64,
    pub max_output_tokens: i64,
    pub encoding: Option<&'a str>,
}

pub async fn put_model(db: &D1Database, m: &NewModel<'_>, now: u64) -> Result<(), GatewayError> {
    d1::run(
        db,
        "INSERT INTO models (name, provider, upstream_model, input_price, output_price,
           max_output_tokens, encoding, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT (name) DO UPDATE SET provider = excluded.provider,
           upstream_model = excluded.upstream_model, input_price = excluded.input_price,
           output_price = excluded.output_price, max_output_tokens = excluded.max_output_tokens,
           encoding = excluded.encoding, updated_at = excluded.updated_at",
        &[
            m.name.into(),
            m.provider.into(),
            m.upstream_model.into(),
            m.input_price.into(),
            m.output_price.into(),
            m.max_output_tokens.into(),
            m.encoding.into(),
            now.into(),
        ],
    )
    .await?;
    Ok(())
}

/// After `PUT /admin/models/{model}` recorded its token prices as `price_version`: sets the
/// model's kind, and makes `units` part of its current price version — a new version (a copy of
/// the token, cache-write and long-context prices with these unit prices) when they differ from the current one's, so that
/// history is never rewritten. One batch. Returns the current version id.
pub async fn record_media_prices(
    db: &D1Database,
    model: &str,
    kind: &str,
    units: &UnitPrices,
    price_version: u64,
    now: u64,
) -> Result<u64, GatewayError> {
    let table = units.image_table_json();
    let insert = d1::statement(
        db,
        "INSERT INTO price_versions (model, input_price, cached_input_price, output_price,
           reasoning_price, created_at, image_input_price, audio_input_price, image_prices,
           character_price, minute_price, cache_write_5m_price, cache_write_1h_price,
           long_context_threshold, long_input_price, long_cached_input_price, long_output_price,
           long_reasoning_price, long_cache_write_5m_price, long_cache_write_1h_price)
         SELECT model, input_price, cached_input_price, output_price, reasoning_price, ?3, ?4,
           ?5, ?6, ?7, ?8, cache_write_5m_price, cache_write_1h_price, long_context_threshold,
           long_input_price, long_cached_input_price, long_output_price, long_reasoning_price,
           long_cache_write_5m_price, long_cache_write_1h_price
         FROM price_versions WHERE id = ?2 AND model = ?1
           AND NOT (image_input_price IS ?4 AND audio_input_price IS ?5 AND image_prices IS ?6
             AND character_price IS ?7 AND minute_price IS ?8)",
        &[
            model.into(),
            price_version.into(),
            now.into(),
            units.image_input.into(),
            units.audio_input.into(),
            table.as_deref().into(),
            units.characters.into(),
            units.minute.into(),
        ],
    )?;
    let point = d1::statement(
        db,
        "UPDATE models SET kind = ?2,
           price_version = (SELECT MAX(id) FROM price_versions WHERE model = ?1)
         WHERE name = ?1 RETURNING price_version",
        &[model.into(), kind.into()],
    )?;
    let results = d1::batch(db, vec![insert, point]).await?;
    results
        .get(1)
        .and_then(|r| r.results::<Value>().ok())
        .and_then(|rows| rows.first().and_then(|r| r["price_version"].as_u64()))
        .ok_or_else(|| GatewayError::internal(format!("model `{model}` has no price version")))
}

/// Every model, as the admin API lists them.
pub async fn list_models(db: &D1Database) -> Result<Vec<Value>, GatewayError> {
    d1::all(
        db,
        "SELECT m.name, m.provider, m.upstream_model, m.input_price, m.output_price,
           m.max_output_tokens, m.encoding, m.created_at, m.updated_at, m.price_version, m.kind,
           v.created_at AS price_since, v.cached_input_price, v.reasoning_price,
           v.cache_write_5m_price, v.cache_write_1h_price, v.long_context_threshold,
           v.long_input_price, v.long_cached_input_price, v.long_output_price,
           v.long_reasoning_price, v.long_cache_write_5m_price, v.long_cache_write_1h_price
         FROM models m LEFT JOIN price_versions v ON v.id = m.price_version ORDER BY m.name",
        &[],
    )
    .await
}

/// Deletes the model; `false` when there was none.
pub async fn delete_model(db: &D1Database, name: &str) -> Result<bool, GatewayError> {
    Ok(d1::run(db, "DELETE FROM models WHERE name = ?1", &[name.into()]).await? > 0)
}

/// A model's name and creation time, as `/v1/models` lists them.
#[derive(Debug, Deserialize)]
pub struct ModelListRow {
    pub name: String,
    pub created_at: u64,
    /// `models.kind` (schema 0012).
    #[serde(default = "chat_kind")]
    pub kind: String,
}

pub async fn list_names(db: &D1Database) -> Result<Vec<ModelListRow>, GatewayError> {
    d1::all(
        db,
        "SELECT name, created_at, kind FROM models ORDER BY name",
        &[],
    )
    .await
}

pub async fn get_name(db: &D1Database, model: &str) -> Result<Option<ModelListRow>, GatewayError> {
    d1::first(
        db,
        "SELECT name, created_at, kind FROM models WHERE name = ?1",
        &[model.into()],
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(extra: serde_json::Value) -> ModelRow {
        let mut v = serde_json::json!({
            "name": "whisper", "provider": "openai", "upstream_model": "whisper-1",
            "input_price": 0, "cached_input_price": null, "output_price": 0,
            "reasoning_price": null, "price_version": 2, "max_output_tokens": 4096,
            "encoding": null, "created_at": 0, "kind": "openai", "base_url": "http://x",
            "api_key_secret": null, "config": null, "multiplier_bps": 10000
        });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn unit_prices_of_the_row() {
        // A row read before migration 0012 (no media columns): a chat model, no unit prices.
        let old = row(serde_json::json!({}));
        assert_eq!(old.model_kind, "chat");
        assert_eq!(old.unit_prices().unwrap(), UnitPrices::default());
        let r = row(serde_json::json!({
            "model_kind": "stt", "minute_price": 6000, "character_price": null,
            "image_input_price": 10, "audio_input_price": 20,
            "image_prices": r#"[{"size":"*","quality":"*","price":40000}]"#
        }));
        let u = r.unit_prices().unwrap();
        assert_eq!(
            (u.minute, u.image_input, u.audio_input),
            (Some(6000), Some(10), Some(20))
        );
        assert_eq!(u.image_price(None, None), Some(40_000));
        // A stored table that no longer parses is an internal error, never a free image.
        let broken = row(serde_json::json!({"image_prices": "[{\"size\":1}]"}));
        assert_eq!(broken.unit_prices().unwrap_err().status(), 500);
    }

    fn sheet_row(extra: &str) -> ModelRow {
        serde_json::from_str(&format!(
            r#"{{"name":"m","provider":"p","upstream_model":"u","input_price":3000000,
            "cached_input_price":300000,"output_price":15000000,"reasoning_price":null,
            "price_version":1,"max_output_tokens":100,"encoding":null,"kind":"anthropic",
            "base_url":"b","api_key_secret":null,"created_at":0,"multiplier_bps":10000{extra}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn price_sheet_from_the_version_columns() {
        // A row of a database before 0013 (or a version without the new prices): flat.
        let flat = sheet_row("").price_sheet();
        assert_eq!(flat, PriceSheet::flat(flat.base.price));
        assert_eq!(flat.base.price.cached_input, Some(300_000));
        let sheet = sheet_row(
            r#","cache_write_5m_price":3750000,"cache_write_1h_price":6000000,
            "long_context_threshold":200000,"long_input_price":6000000,"long_output_price":22500000,
            "long_cache_write_1h_price":12000000"#,
        )
        .price_sheet();
        assert_eq!(sheet.base.write_5m_price(), 3_750_000);
        let long = sheet.long_context.unwrap();
        assert_eq!(long.above_prompt_tokens, 200_000);
        assert_eq!(long.tier.price.output, 22_500_000);
        assert_eq!(
            long.tier.write_5m_price(),
            6_000_000,
            "falls back to the long input price"
        );
        assert_eq!(long.tier.write_1h_price(), 12_000_000);
        // A threshold without its prices is no tier.
        let partial =
            sheet_row(r#","long_context_threshold":200000,"long_input_price":1"#).price_sheet();
        assert_eq!(partial.long_context, None);
    }
}
