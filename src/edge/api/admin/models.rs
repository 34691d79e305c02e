//! `/admin/models`: the models tenants call, their provider and prices.

use serde::Deserialize;
use serde_json::{json, Value};
use worker::{D1Database, Response};

use super::{check_name, not_found, to_i64};
use crate::core::billing::tiers::TierFields;
use crate::core::billing::units::UnitPrices;
use crate::core::error::GatewayError;
use crate::core::providers::media::{parse_model_kind, MODEL_KINDS};
use crate::core::tokens::Encoding;
use crate::edge::api::http;
use crate::edge::platform::clock::now_ms;
use crate::edge::store;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelBody {
    provider: String,
    upstream_model: Option<String>,
    input_price: i64,
    output_price: i64,
    cached_input_price: Option<i64>,
    reasoning_price: Option<i64>,
    max_output_tokens: Option<i64>,
    encoding: Option<String>,
    /// `chat` (default), `embedding`, `image`, `tts` or `stt` (docs/media.md).
    kind: Option<String>,
    /// Media prices (docs/media.md), versioned with the token prices.
    image_input_price: Option<Value>,
    audio_input_price: Option<Value>,
    image_prices: Option<Value>,
    character_price: Option<Value>,
    minute_price: Option<Value>,
    /// Cache-write prices and the long-context tier (docs/money.md, "Cache writes and long
    /// context"), versioned with the token prices.
    cache_write_5m_price: Option<i64>,
    cache_write_1h_price: Option<i64>,
    long_context_threshold: Option<i64>,
    long_input_price: Option<i64>,
    long_cached_input_price: Option<i64>,
    long_output_price: Option<i64>,
    long_reasoning_price: Option<i64>,
    long_cache_write_5m_price: Option<i64>,
    long_cache_write_1h_price: Option<i64>,
}

impl ModelBody {
    /// The cache-write and long-context prices, checked (400 naming the field).
    fn tiers(&self) -> Result<TierFields, GatewayError> {
        let price = |field: &str, v: Option<i64>, min: i64| {
            v.map(|v| to_i64(field, v, min).map(i64::unsigned_abs))
                .transpose()
        };
        let tiers = TierFields {
            cache_write_5m_price: price("cache_write_5m_price", self.cache_write_5m_price, 0)?,
            cache_write_1h_price: price("cache_write_1h_price", self.cache_write_1h_price, 0)?,
            long_context_threshold: price(
                "long_context_threshold",
                self.long_context_threshold,
                1,
            )?,
            long_input_price: price("long_input_price", self.long_input_price, 0)?,
            long_cached_input_price: price(
                "long_cached_input_price",
                self.long_cached_input_price,
                0,
            )?,
            long_output_price: price("long_output_price", self.long_output_price, 0)?,
            long_reasoning_price: price("long_reasoning_price", self.long_reasoning_price, 0)?,
            long_cache_write_5m_price: price(
                "long_cache_write_5m_price",
                self.long_cache_write_5m_price,
                0,
            )?,
            long_cache_write_1h_price: price(
                "long_cache_write_1h_price",
                self.long_cache_write_1h_price,
                0,
            )?,
        };
        tiers
            .check()
            .map_err(|e| GatewayError::invalid_param(e.field, e.message))?;
        Ok(tiers)
    }

    /// The model's kind and unit prices, checked (400 naming the field).
    fn media(&self) -> Result<(&'static str, UnitPrices), GatewayError> {
        let kind = match &self.kind {
            None => "chat",
            Some(k) => parse_model_kind(k).ok_or_else(|| {
                GatewayError::invalid_param(
                    "kind",
                    format!(
                        "Unknown model kind `{k}`; known: {}.",
                        MODEL_KINDS.join(", ")
                    ),
                )
            })?,
        };
        let mut fields = serde_json::Map::new();
        for (name, v) in [
            ("image_input_price", &self.image_input_price),
            ("audio_input_price", &self.audio_input_price),
            ("image_prices", &self.image_prices),
            ("character_price", &self.character_price),
            ("minute_price", &self.minute_price),
        ] {
            if let Some(v) = v {
                fields.insert(name.to_string(), v.clone());
            }
        }
        let units = UnitPrices::from_admin(&fields)
            .map_err(|e| GatewayError::invalid_param("price", e.0))?;
        Ok((kind, units))
    }
}

pub async fn put(db: &D1Database, name: &str, m: ModelBody) -> Result<Response, GatewayError> {
    check_name("model", name)?;
    let input = to_i64("input_price", m.input_price, 0)?;
    let output = to_i64("output_price", m.output_price, 0)?;
    let cached_input = m
        .cached_input_price
        .map(|v| to_i64("cached_input_price", v, 0))
        .transpose()?;
    let reasoning = m
        .reasoning_price
        .map(|v| to_i64("reasoning_price", v, 0))
        .transpose()?;
    let max_out = to_i64("max_output_tokens", m.max_output_tokens.unwrap_or(4096), 1)?;
    if let Some(enc) = &m.encoding {
        if Encoding::from_name(enc).is_none() {
            return Err(GatewayError::invalid_param(
                "encoding",
                format!(
                    "`encoding` must be one of {}.",
                    crate::core::tokens::encoding_names()
                ),
            ));
        }
    }
    let (model_kind, units) = m.media()?;
    let tiers = m.tiers()?;
    let upstream_model = m.upstream_model.clone().unwrap_or_else(|| name.to_string());
    check_name("upstream_model", &upstream_model)?;
    if !store::models::provider_exists(db, &m.provider).await? {
        return Err(GatewayError::invalid_param(
            "provider",
            format!(
                "No provider `{}`; create it with PUT /admin/providers/{{name}} first.",
                m.provider
            ),
        ));
    }
    let now = now_ms();
    store::models::put_model(
        db,
        &store::models::NewModel {
            name,
            provider: &m.provider,
            upstream_model: &upstream_model,
            input_price: input,
            output_price: output,
            max_output_tokens: max_out,
            encoding: m.encoding.as_deref(),
        },
        now,
    )
    .await?;
    let price_version = store::billing::record_price_version(
        db,
        name,
        store::billing::PriceSet {
            input: input.unsigned_abs(),
            cached_input: cached_input.map(i64::unsigned_abs),
            output: output.unsigned_abs(),
            reasoning: reasoning.map(i64::unsigned_abs),
            tiers,
        },
        now,
    )
    .await?;
    let price_version =
        store::models::record_media_prices(db, name, model_kind, &units, price_version, now)
            .await?;
    let mut answer = json!({"name": name, "provider": m.provider, "upstream_model": upstream_model,
                "kind": model_kind, "image_input_price": units.image_input,
                "audio_input_price": units.audio_input,
                "image_prices": units.image_table_json().and_then(|t| serde_json::from_str::<Value>(&t).ok()),
                "character_price": units.characters, "minute_price": units.minute,
                "input_price": input, "cached_input_price": cached_input,
                "output_price": output, "reasoning_price": reasoning,
                "price_version": price_version, "max_output_tokens": max_out,
                "encoding": m.encoding});
    if let (Value::Object(answer), Ok(Value::Object(tiers))) =
        (&mut answer, serde_json::to_value(tiers))
    {
        answer.extend(tiers);
    }
    http::json(200, &answer)
}

pub async fn list(db: &D1Database) -> Result<Response, GatewayError> {
    let rows = store::models::list_models(db).await?;
    http::json(200, &json!({"object": "list", "data": rows}))
}

pub async fn delete(db: &D1Database, name: &str) -> Result<Response, GatewayError> {
    if !store::models::delete_model(db, name).await? {
        return Err(not_found("model", name));
    }
    http::json(200, &json!({"name": name, "deleted": true}))
}
