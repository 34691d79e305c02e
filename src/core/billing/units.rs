//! Prices with units: what a media request (embeddings, images, speech, transcription) costs.
//!
//! A model's [`Price`] stays what it was: micro-units per 1,000,000 tokens of each class. A
//! media model adds [`UnitPrices`]:
//!
//! | unit | price field | quoted per | example |
//! |---|---|---|---|
//! | image input tokens | `image_input` | 1,000,000 tokens (`None` = `input`) | gpt-image-1: $10 → `10_000_000` |
//! | audio input tokens | `audio_input` | 1,000,000 tokens (`None` = `input`) | gpt-4o-transcribe: $6 → `6_000_000` |
//! | [`Unit::Images`] | `images`: a size × quality table | one image | dall-e-3 1024x1024 standard: $0.04 → `40_000` |
//! | [`Unit::Characters`] | `characters` | 1,000,000 characters | tts-1: $15 → `15_000_000` |
//! | [`Unit::Seconds`] | `minute` | one minute of audio | whisper-1: $0.006 → `6_000` |
//!
//! # What a request is billed on
//!
//! A media request's usage ([`MediaUsage`]) is its tokens (as chat: prompt, cached, completion,
//! reasoning, with the image and audio parts of the prompt priced apart) plus at most one
//! [`Metered`] quantity in a non-token unit, with the unit price it was billed at (resolved from
//! the model's table when the request was admitted, and stored in the usage row, so a row explains
//! its own cost). Which of the two carries the charge is the model's price: a model with a unit
//! price for the endpoint (an image table, a character price, a minute price) is billed on that
//! unit, and the provider's token counts are recorded but not charged; a model without one is
//! billed on tokens ([`Basis`]).
//!
//! # Quantities
//!
//! * Images: the images the provider returned.
//! * Characters: Unicode scalar values of the speech input (`input.chars().count()`), what
//!   OpenAI bills text-to-speech on.
//! * Seconds: whole seconds of audio, **rounded up** from the provider's reported duration (a
//!   9.2 s file is 10 s); OpenAI reports whisper usage in whole seconds already.
//!
//! # Rounding
//!
//! Every part is summed exactly in 128-bit integers, in units of 1/60 pico-unit so that a
//! per-minute price times seconds stays an integer, then multiplied by the tenant multiplier and
//! divided **once, rounding up**:
//! `ceil((60 × Σ token·price + 60 × chars·price + 60·10⁶ × images·price + 10⁶ × seconds·price)
//! × bps / (60 × 10⁶ × 10⁴))`. A request is never charged less than it cost and less than one
//! micro-unit more; a result beyond `u64` saturates.
//!
//! The reservation ([`reservation_micros_scaled`]) is the cost of the request's worst case with
//! every prompt token at the dearest input-class price and every output token at the dearer of
//! `output` and `reasoning`: it covers the cost of any usage within those bounds.

use serde::{Deserialize, Serialize};

use super::{Price, TokenUsage, LIST_PRICE_BPS, TOKENS_PER_PRICE};

/// The characters a character price is quoted for.
pub const CHARACTERS_PER_PRICE: u64 = 1_000_000;

/// Seconds in the minute a seconds price is quoted for.
pub const SECONDS_PER_PRICE: u64 = 60;

/// A unit a usage row can be metered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Tokens,
    Images,
    Characters,
    Seconds,
}

impl Unit {
    /// The name stored in `usage.unit` and shown in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Tokens => "tokens",
            Unit::Images => "images",
            Unit::Characters => "characters",
            Unit::Seconds => "seconds",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tokens" => Some(Unit::Tokens),
            "images" => Some(Unit::Images),
            "characters" => Some(Unit::Characters),
            "seconds" => Some(Unit::Seconds),
            _ => None,
        }
    }

    /// What the unit's price is quoted per, for documents and admin answers.
    pub fn quoted_per(self) -> &'static str {
        match self {
            Unit::Tokens => "1M tokens",
            Unit::Images => "image",
            Unit::Characters => "1M characters",
            Unit::Seconds => "minute",
        }
    }
}

/// One entry of a model's image price table: micro-units per image of `size` and `quality`.
/// `"*"` in either field matches any value (and a request that names none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePrice {
    pub size: String,
    pub quality: String,
    pub price: u64,
}

/// The longest image price table accepted.
pub const MAX_IMAGE_PRICES: usize = 64;

/// A model's prices in units other than text tokens (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitPrices {
    /// Micro-units per 1M image input tokens; `None` = the model's `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_input: Option<u64>,
    /// Micro-units per 1M audio input tokens; `None` = the model's `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_input: Option<u64>,
    /// Micro-units per image, by size and quality; empty = images are billed on tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImagePrice>,
    /// Micro-units per 1M characters of speech input; `None` = speech is billed on tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub characters: Option<u64>,
    /// Micro-units per minute of audio; `None` = transcription is billed on tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minute: Option<u64>,
}

/// Why an image price table was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableError(pub String);

impl UnitPrices {
    /// Parses an image price table, as the admin API takes it and `price_versions.image_prices`
    /// stores it: `[{"size": "1024x1024", "quality": "standard", "price": 40000}, …]`. Sizes are
    /// `WxH` or `auto`, qualities one word, `*` matches any; no (size, quality) twice.
    pub fn parse_image_table(json: &str) -> Result<Vec<ImagePrice>, TableError> {
        let table: Vec<ImagePrice> = serde_json::from_str(json).map_err(|e| {
            TableError(format!(
                "image_prices must be a list of {{size, quality, price}}: {e}"
            ))
        })?;
        if table.len() > MAX_IMAGE_PRICES {
            return Err(TableError(format!(
                "image_prices has more than {MAX_IMAGE_PRICES} entries"
            )));
        }
        for (i, p) in table.iter().enumerate() {
            if p.size != "*" && !is_image_size(&p.size) {
                return Err(TableError(format!(
                    "image_prices[{i}].size must be WIDTHxHEIGHT, auto or *"
                )));
            }
            if p.quality.is_empty()
                || p.quality.len() > 32
                || !(p.quality == "*" || p.quality.bytes().all(|b| b.is_ascii_lowercase()))
            {
                return Err(TableError(format!(
                    "image_prices[{i}].quality must be a lower-case word or *"
                )));
            }
            if p.price > super::MAX_SAFE_INT {
                return Err(TableError(format!("image_prices[{i}].price is too large")));
            }
            if table[..i]
                .iter()
                .any(|q| q.size == p.size && q.quality == p.quality)
            {
                return Err(TableError(format!(
                    "image_prices[{i}] repeats size {} and quality {}",
                    p.size, p.quality
                )));
            }
        }
        Ok(table)
    }

    /// The price of one image of `size` and `quality` (each `None` when the request names none):
    /// the most specific entry that matches (exact size and quality, then exact size, then exact
    /// quality, then `*`/`*`). `None` when no entry matches.
    pub fn image_price(&self, size: Option<&str>, quality: Option<&str>) -> Option<u64> {
        let exact = |want: Option<&str>, have: &str| want.is_some_and(|w| w == have);
        let rank = |p: &ImagePrice| -> Option<u8> {
            let size_ok = exact(size, &p.size) || p.size == "*";
            let quality_ok = exact(quality, &p.quality) || p.quality == "*";
            if !(size_ok && quality_ok) {
                return None;
            }
            Some(u8::from(p.size != "*") * 2 + u8::from(p.quality != "*"))
        };
        self.images
            .iter()
            .filter_map(|p| rank(p).map(|r| (r, p.price)))
            .max_by_key(|&(r, _)| r)
            .map(|(_, price)| price)
    }

    /// The dearest price an image of this request can cost, for the reservation: the
    /// [`UnitPrices::image_price`] when the request names its size and quality (other than
    /// `auto`), else the dearest entry the unnamed fields can match.
    pub fn worst_image_price(&self, size: Option<&str>, quality: Option<&str>) -> Option<u64> {
        let size = size.filter(|v| *v != "auto");
        let quality = quality.filter(|v| *v != "auto");
        if size.is_some() && quality.is_some() {
            return self.image_price(size, quality);
        }
        self.images
            .iter()
            .filter(|p| size.is_none_or(|s| p.size == s || p.size == "*"))
            .filter(|p| quality.is_none_or(|q| p.quality == q || p.quality == "*"))
            .map(|p| p.price)
            .max()
    }

    /// The unit prices of an admin model body (`PUT /admin/models/{model}`): `image_input_price`,
    /// `audio_input_price`, `character_price`, `minute_price` (non-negative integers up to
    /// 2⁵³ − 1, or null) and `image_prices` (a table, see [`UnitPrices::parse_image_table`]).
    /// Absent fields are `None` / empty. The error names the field.
    pub fn from_admin(
        body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, TableError> {
        let int = |name: &str| -> Result<Option<u64>, TableError> {
            match body.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .filter(|&n| n <= super::MAX_SAFE_INT)
                    .map(Some)
                    .ok_or_else(|| {
                        TableError(format!(
                            "{name} must be a non-negative integer of micro-units (at most 2^53 - 1)"
                        ))
                    }),
            }
        };
        let images = match body.get("image_prices") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(v) => Self::parse_image_table(&v.to_string())?,
        };
        Ok(UnitPrices {
            image_input: int("image_input_price")?,
            audio_input: int("audio_input_price")?,
            images,
            characters: int("character_price")?,
            minute: int("minute_price")?,
        })
    }

    /// The image table as `price_versions.image_prices` stores it (NULL when empty).
    pub fn image_table_json(&self) -> Option<String> {
        (!self.images.is_empty()).then(|| serde_json::to_string(&self.images).unwrap_or_default())
    }

    fn image_input_price(&self, price: &Price) -> u64 {
        self.image_input.unwrap_or(price.input)
    }

    fn audio_input_price(&self, price: &Price) -> u64 {
        self.audio_input.unwrap_or(price.input)
    }
}

/// Whether `s` is `auto` or `WIDTHxHEIGHT` (1–5 digits each, no leading zero).
pub fn is_image_size(s: &str) -> bool {
    fn dim(d: &str) -> bool {
        (1..=5).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    }
    s == "auto" || s.split_once('x').is_some_and(|(w, h)| dim(w) && dim(h))
}

/// What a media request is billed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Tokens at the model's token prices.
    Tokens,
    /// A non-token unit at its price (the model has one for this endpoint).
    Unit(Unit),
}

/// A quantity in a non-token unit and the price it is billed at (micro-units per image, per
/// 1M characters or per minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metered {
    pub unit: Unit,
    pub quantity: u64,
    pub unit_price: u64,
}

/// What a media request used: its tokens and, when billed in another unit, that quantity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaUsage {
    /// All tokens billed; `prompt_tokens` includes the image and audio input tokens below.
    pub tokens: TokenUsage,
    /// The part of `tokens.prompt_tokens` that is image input (gpt-image edits).
    pub image_input_tokens: u64,
    /// The part of `tokens.prompt_tokens` that is audio input (token-priced transcription).
    pub audio_input_tokens: u64,
    /// The quantity in a non-token unit, when the request is billed in one.
    pub metered: Option<Metered>,
}

impl MediaUsage {
    /// Usage of tokens only.
    pub fn tokens(tokens: TokenUsage) -> Self {
        MediaUsage {
            tokens,
            ..MediaUsage::default()
        }
    }

    /// Usage of `quantity` of `unit` at `unit_price`, no tokens billed.
    pub fn metered(unit: Unit, quantity: u64, unit_price: u64) -> Self {
        MediaUsage {
            metered: Some(Metered {
                unit,
                quantity,
                unit_price,
            }),
            ..MediaUsage::default()
        }
    }

    /// The unit and quantity a usage row records: the metered unit, else the tokens
    /// (prompt + completion).
    pub fn row_quantity(&self) -> (Unit, u64) {
        match self.metered {
            Some(m) => (m.unit, m.quantity),
            None => (
                Unit::Tokens,
                self.tokens
                    .prompt_tokens
                    .saturating_add(self.tokens.completion_tokens),
            ),
        }
    }
}

/// Whole seconds of a duration in milliseconds, rounded up (the quantity of [`Unit::Seconds`]).
pub fn seconds_from_ms(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// Whole seconds of a duration a provider reports as a JSON number of seconds, rounded up;
/// `None` for a negative, non-finite or absurd (over 2³² s) value.
pub fn seconds_from_f64(seconds: f64) -> Option<u64> {
    if !seconds.is_finite() || !(0.0..=4_294_967_296.0).contains(&seconds) {
        return None;
    }
    // Exact for every value in range: milliseconds fit an f64 integer; round up the millis.
    let ms = (seconds * 1000.0).ceil() as u64;
    Some(seconds_from_ms(ms))
}

/// The common denominator: 1/60 of a pico-unit.
const PER_MINUTE_SCALE: u128 = SECONDS_PER_PRICE as u128;

/// What `usage` costs at these prices and multiplier, in micro-units, rounded up once.
pub fn cost_micros_scaled(
    usage: &MediaUsage,
    price: &Price,
    units: &UnitPrices,
    multiplier_bps: u64,
) -> u64 {
    let t = &usage.tokens;
    let prompt = t.prompt_tokens;
    let image = usage.image_input_tokens.min(prompt);
    let audio = usage.audio_input_tokens.min(prompt - image);
    let cached = t.cached_prompt_tokens.min(prompt - image - audio);
    let text = prompt - image - audio - cached;
    let reasoning = t.reasoning_tokens.min(t.completion_tokens);
    let plain_output = t.completion_tokens - reasoning;
    let token_picos = [
        mul(text, price.input),
        mul(cached, price.cached_input_price()),
        mul(image, units.image_input_price(price)),
        mul(audio, units.audio_input_price(price)),
        mul(plain_output, price.output),
        mul(reasoning, price.reasoning_price()),
    ]
    .into_iter()
    .fold(0u128, u128::saturating_add);
    finish(
        token_picos.saturating_mul(PER_MINUTE_SCALE),
        usage.metered.as_ref(),
        multiplier_bps,
    )
}

/// [`cost_micros_scaled`] at list price.
pub fn cost_micros(usage: &MediaUsage, price: &Price, units: &UnitPrices) -> u64 {
    cost_micros_scaled(usage, price, units, LIST_PRICE_BPS)
}

/// The reservation for a request whose usage is at most `worst`: every prompt token at the
/// dearest input-class price (text, cached, image, audio), every completion token at the dearer
/// of `output` and `reasoning`, plus the metered quantity at its price; rounded like the cost.
pub fn reservation_micros_scaled(
    worst: &MediaUsage,
    price: &Price,
    units: &UnitPrices,
    multiplier_bps: u64,
) -> u64 {
    let input = price
        .input
        .max(price.cached_input_price())
        .max(units.image_input_price(price))
        .max(units.audio_input_price(price));
    let output = price.output.max(price.reasoning_price());
    let token_picos = mul(worst.tokens.prompt_tokens, input)
        .saturating_add(mul(worst.tokens.completion_tokens, output));
    finish(
        token_picos.saturating_mul(PER_MINUTE_SCALE),
        worst.metered.as_ref(),
        multiplier_bps,
    )
}

fn mul(a: u64, b: u64) -> u128 {
    u128::from(a) * u128::from(b)
}

/// Adds the metered part to `scaled` (1/60 pico-units), applies the multiplier and rounds up once.
fn finish(scaled: u128, metered: Option<&Metered>, multiplier_bps: u64) -> u64 {
    let metered = metered.map_or(0u128, |m| {
        let q = u128::from(m.quantity);
        let p = u128::from(m.unit_price);
        match m.unit {
            // micro-units per 1M tokens or characters: picos, ×60.
            Unit::Tokens | Unit::Characters => (q * p).saturating_mul(PER_MINUTE_SCALE),
            // micro-units per image: ×10⁶ picos, ×60.
            Unit::Images => (q * p).saturating_mul(u128::from(TOKENS_PER_PRICE) * PER_MINUTE_SCALE),
            // micro-units per minute × seconds = 60 × micros: ×10⁶ to picos×60.
            Unit::Seconds => (q * p).saturating_mul(u128::from(TOKENS_PER_PRICE)),
        }
    });
    let total = scaled.saturating_add(metered);
    let divisor = PER_MINUTE_SCALE * u128::from(TOKENS_PER_PRICE) * u128::from(LIST_PRICE_BPS);
    let micros = match total.checked_mul(u128::from(multiplier_bps)) {
        Some(v) => v.div_ceil(divisor),
        None => total
            .div_ceil(PER_MINUTE_SCALE * u128::from(TOKENS_PER_PRICE))
            .saturating_mul(u128::from(multiplier_bps))
            .div_ceil(u128::from(LIST_PRICE_BPS)),
    };
    u64::try_from(micros).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::billing::{self, MAX_MULTIPLIER_BPS};

    fn tokens(p: u64, c: u64) -> TokenUsage {
        TokenUsage {
            prompt_tokens: p,
            completion_tokens: c,
            ..TokenUsage::default()
        }
    }

    fn table(json: &str) -> UnitPrices {
        UnitPrices {
            images: UnitPrices::parse_image_table(json).unwrap(),
            ..UnitPrices::default()
        }
    }

    #[test]
    fn list_prices_from_the_providers_pages() {
        let none = Price::default();
        let units = UnitPrices::default();
        // dall-e-3 standard 1024x1024 at $0.040: two images = $0.08.
        let u = MediaUsage::metered(Unit::Images, 2, 40_000);
        assert_eq!(cost_micros(&u, &none, &units), 80_000);
        // tts-1 at $15 / 1M characters: 1,234 characters = $0.01851.
        let u = MediaUsage::metered(Unit::Characters, 1234, 15_000_000);
        assert_eq!(cost_micros(&u, &none, &units), 18_510);
        // whisper-1 at $0.006 / minute: 9 s = $0.0009, 61 s = $0.0061.
        let u = MediaUsage::metered(Unit::Seconds, 9, 6_000);
        assert_eq!(cost_micros(&u, &none, &units), 900);
        let u = MediaUsage::metered(Unit::Seconds, 61, 6_000);
        assert_eq!(cost_micros(&u, &none, &units), 6_100);
        // text-embedding-3-small at $0.02 / 1M tokens: 1,000 tokens = 20 micros.
        let p = Price {
            input: 20_000,
            ..Price::default()
        };
        assert_eq!(
            cost_micros(&MediaUsage::tokens(tokens(1000, 0)), &p, &units),
            20
        );
    }

    #[test]
    fn token_classes_of_a_gpt_image_edit() {
        // gpt-image-1: text $5, image input $10, output $40 per 1M tokens.
        let p = Price {
            input: 5_000_000,
            output: 40_000_000,
            ..Price::default()
        };
        let units = UnitPrices {
            image_input: Some(10_000_000),
            ..UnitPrices::default()
        };
        let u = MediaUsage {
            tokens: tokens(50 + 200, 4160),
            image_input_tokens: 200,
            ..MediaUsage::default()
        };
        // 50 × 5 + 200 × 10 + 4160 × 40 = 250 + 2000 + 166400 micros.
        assert_eq!(cost_micros(&u, &p, &units), 168_650);
        // Image tokens beyond the prompt are clamped: never charged twice.
        let over = MediaUsage {
            image_input_tokens: 10_000,
            ..u
        };
        assert_eq!(cost_micros(&over, &p, &units), 250 * 10 + 4160 * 40);
        // Audio input (gpt-4o-transcribe: audio $6, text $2.5, output $10).
        let p = Price {
            input: 2_500_000,
            output: 10_000_000,
            ..Price::default()
        };
        let units = UnitPrices {
            audio_input: Some(6_000_000),
            ..UnitPrices::default()
        };
        let u = MediaUsage {
            tokens: tokens(14, 45),
            audio_input_tokens: 14,
            ..MediaUsage::default()
        };
        // 14 × 6 + 45 × 10 = 534 micros.
        assert_eq!(cost_micros(&u, &p, &units), 534);
    }

    #[test]
    fn rounds_once_across_units() {
        // 1 second at 1 micro per minute = 1/60 micro; 1 character at 1 micro per 1M = 10⁻⁶.
        let units = UnitPrices::default();
        let p = Price {
            input: 1,
            ..Price::default()
        };
        let sec = MediaUsage {
            tokens: tokens(1, 0),
            metered: Some(Metered {
                unit: Unit::Seconds,
                quantity: 1,
                unit_price: 1,
            }),
            ..MediaUsage::default()
        };
        assert_eq!(cost_micros(&sec, &p, &units), 1);
        // 59 seconds at 1/min = 59/60 micro, + 1 token at 1e-6: still one micro, rounded once.
        let u = MediaUsage {
            metered: Some(Metered {
                unit: Unit::Seconds,
                quantity: 59,
                unit_price: 1,
            }),
            ..sec
        };
        assert_eq!(cost_micros(&u, &p, &units), 1);
        // 60 seconds exactly one micro, plus the token: two.
        let u = MediaUsage {
            metered: Some(Metered {
                unit: Unit::Seconds,
                quantity: 60,
                unit_price: 1,
            }),
            ..sec
        };
        assert_eq!(cost_micros(&u, &p, &units), 2);
        // The multiplier applies before the single rounding: 30 s at 1/min ×1.5 = 0.75 → 1.
        let half = MediaUsage::metered(Unit::Seconds, 30, 1);
        assert_eq!(cost_micros_scaled(&half, &p, &units, 15_000), 1);
        let many = MediaUsage::metered(Unit::Seconds, 600, 1); // 10 micros × 1.25
        assert_eq!(cost_micros_scaled(&many, &p, &units, 12_500), 13);
    }

    #[test]
    fn token_usage_costs_as_chat_does() {
        let p = Price {
            input: 333_333,
            cached_input: Some(7),
            output: 1_234_567,
            reasoning: Some(999_999),
        };
        for n in 0..500u64 {
            let t = TokenUsage {
                prompt_tokens: n * 7,
                cached_prompt_tokens: n * 3,
                completion_tokens: n * 5,
                reasoning_tokens: n,
            };
            for bps in [1, 10_000, 12_345, MAX_MULTIPLIER_BPS] {
                assert_eq!(
                    cost_micros_scaled(&MediaUsage::tokens(t), &p, &UnitPrices::default(), bps),
                    billing::cost_micros_scaled(&t, &p, bps)
                );
            }
        }
    }

    #[test]
    fn image_price_table() {
        let t = table(
            r#"[{"size":"1024x1024","quality":"standard","price":40000},
                {"size":"1024x1024","quality":"hd","price":80000},
                {"size":"1792x1024","quality":"*","price":120000},
                {"size":"*","quality":"standard","price":50000}]"#,
        );
        assert_eq!(t.image_price(Some("1024x1024"), Some("hd")), Some(80_000));
        assert_eq!(t.image_price(Some("1792x1024"), Some("hd")), Some(120_000));
        // Exact size beats exact quality.
        assert_eq!(
            t.image_price(Some("1792x1024"), Some("standard")),
            Some(120_000)
        );
        assert_eq!(
            t.image_price(Some("512x512"), Some("standard")),
            Some(50_000)
        );
        assert_eq!(t.image_price(Some("512x512"), Some("hd")), None);
        assert_eq!(t.image_price(None, None), None);
        // The reservation takes the dearest entry the request could be billed at.
        assert_eq!(t.worst_image_price(None, None), Some(120_000));
        assert_eq!(t.worst_image_price(Some("1024x1024"), None), Some(80_000));
        assert_eq!(
            t.worst_image_price(Some("auto"), Some("standard")),
            Some(120_000)
        );
        assert_eq!(
            t.worst_image_price(Some("1024x1024"), Some("hd")),
            Some(80_000)
        );
        assert_eq!(UnitPrices::default().worst_image_price(None, None), None);
        // The worst price is never below what the request can be billed at.
        for size in [None, Some("1024x1024"), Some("1792x1024"), Some("512x512")] {
            for quality in [None, Some("standard"), Some("hd")] {
                if let Some(billed) = t.image_price(size, quality) {
                    assert!(t.worst_image_price(size, quality).unwrap() >= billed);
                }
            }
        }
    }

    #[test]
    fn image_tables_are_checked() {
        for bad in [
            "{}",
            r#"[{"size":"big","quality":"hd","price":1}]"#,
            r#"[{"size":"1024x1024","quality":"HD","price":1}]"#,
            r#"[{"size":"1024x1024","quality":"hd","price":-1}]"#,
            r#"[{"size":"1024x1024","quality":"hd","price":9007199254740992}]"#,
            r#"[{"size":"1024x1024","quality":"hd","price":1},{"size":"1024x1024","quality":"hd","price":2}]"#,
            r#"[{"size":"01x1","quality":"hd","price":1}]"#,
        ] {
            assert!(UnitPrices::parse_image_table(bad).is_err(), "{bad}");
        }
        assert!(UnitPrices::parse_image_table("[]").unwrap().is_empty());
        assert!(is_image_size("1536x1024") && is_image_size("auto"));
        assert!(!is_image_size("x1024") && !is_image_size("1024x") && !is_image_size(""));
    }

    #[test]
    fn admin_bodies() {
        let body = serde_json::json!({
            "input_price": 1, "image_input_price": 10_000_000, "character_price": 15_000_000,
            "minute_price": 6000, "audio_input_price": null,
            "image_prices": [{"size": "1024x1024", "quality": "hd", "price": 80000}]
        });
        let u = UnitPrices::from_admin(body.as_object().unwrap()).unwrap();
        assert_eq!(
            (u.image_input, u.audio_input, u.characters, u.minute),
            (Some(10_000_000), None, Some(15_000_000), Some(6000))
        );
        assert_eq!(u.image_price(Some("1024x1024"), Some("hd")), Some(80_000));
        let stored = u.image_table_json().unwrap();
        assert_eq!(UnitPrices::parse_image_table(&stored).unwrap(), u.images);
        assert_eq!(UnitPrices::default().image_table_json(), None);
        for bad in [
            serde_json::json!({"minute_price": -1}),
            serde_json::json!({"character_price": 1.5}),
            serde_json::json!({"character_price": "5"}),
            serde_json::json!({"image_input_price": 9007199254740992u64}),
            serde_json::json!({"image_prices": {"size": "1024x1024"}}),
        ] {
            let e = UnitPrices::from_admin(bad.as_object().unwrap()).unwrap_err();
            let field = bad.as_object().unwrap().keys().next().unwrap().clone();
            assert!(e.0.contains(&field), "{bad}: {}", e.0);
        }
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(seconds_from_ms(0), 0);
        assert_eq!(seconds_from_ms(1), 1);
        assert_eq!(seconds_from_ms(9_000), 9);
        assert_eq!(seconds_from_ms(9_001), 10);
        assert_eq!(seconds_from_f64(9.2), Some(10));
        assert_eq!(seconds_from_f64(9.0), Some(9));
        assert_eq!(seconds_from_f64(0.0), Some(0));
        assert_eq!(seconds_from_f64(-1.0), None);
        assert_eq!(seconds_from_f64(f64::NAN), None);
        assert_eq!(seconds_from_f64(1e300), None);
    }

    #[test]
    fn row_quantities() {
        let u = MediaUsage::metered(Unit::Images, 3, 40_000);
        assert_eq!(u.row_quantity(), (Unit::Images, 3));
        assert_eq!(
            MediaUsage::tokens(tokens(7, 5)).row_quantity(),
            (Unit::Tokens, 12)
        );
        for u in [Unit::Tokens, Unit::Images, Unit::Characters, Unit::Seconds] {
            assert_eq!(Unit::parse(u.as_str()), Some(u));
        }
    }

    use super::super::tests::Rng;

    #[test]
    fn reservation_covers_any_usage_within_bounds_and_rounding_is_exact() {
        let mut rng = Rng(0xD1CE_5EED);
        let units_of = [Unit::Tokens, Unit::Images, Unit::Characters, Unit::Seconds];
        for _ in 0..20_000 {
            let price = Price {
                input: rng.value(),
                cached_input: rng.option(),
                output: rng.value(),
                reasoning: rng.option(),
            };
            let units = UnitPrices {
                image_input: rng.option(),
                audio_input: rng.option(),
                ..UnitPrices::default()
            };
            let bps = 1 + rng.next() % MAX_MULTIPLIER_BPS;
            let unit = units_of[(rng.next() % 4) as usize];
            let unit_price = rng.value() % 1_000_000_000;
            let worst = MediaUsage {
                tokens: tokens(rng.value() % 10_000_000, rng.value() % 10_000_000),
                metered: Some(Metered {
                    unit,
                    quantity: rng.value() % 10_000_000,
                    unit_price,
                }),
                ..MediaUsage::default()
            };
            let reserved = reservation_micros_scaled(&worst, &price, &units, bps);
            let p = rng.next() % (worst.tokens.prompt_tokens + 1);
            let u = MediaUsage {
                tokens: TokenUsage {
                    prompt_tokens: p,
                    cached_prompt_tokens: rng.value(),
                    completion_tokens: rng.next() % (worst.tokens.completion_tokens + 1),
                    reasoning_tokens: rng.value(),
                },
                image_input_tokens: rng.next() % (p + 1),
                audio_input_tokens: rng.next() % (p + 1),
                metered: worst.metered.map(|m| Metered {
                    quantity: rng.next() % (m.quantity + 1),
                    ..m
                }),
            };
            let cost = cost_micros_scaled(&u, &price, &units, bps);
            assert!(reserved >= cost, "{price:?} {units:?} {u:?}");
            // The metered part alone, exactly: charged × 60·10¹⁰ − exact ∈ [0, 60·10¹⁰).
            let m = MediaUsage {
                metered: u.metered,
                ..MediaUsage::default()
            };
            let q = u128::from(m.metered.unwrap().quantity) * u128::from(unit_price);
            let exact60 = match unit {
                Unit::Tokens | Unit::Characters => q * 60,
                Unit::Images => q * 60_000_000,
                Unit::Seconds => q * 1_000_000,
            } * u128::from(bps);
            let charged = u128::from(cost_micros_scaled(&m, &price, &units, bps)) * 600_000_000_000;
            assert!(charged >= exact60 && charged - exact60 < 600_000_000_000);
        }
    }

    #[test]
    fn huge_values_saturate() {
        let p = Price {
            input: u64::MAX,
            cached_input: Some(u64::MAX),
            output: u64::MAX,
            reasoning: None,
        };
        let u = MediaUsage {
            tokens: tokens(u64::MAX, u64::MAX),
            metered: Some(Metered {
                unit: Unit::Images,
                quantity: u64::MAX,
                unit_price: u64::MAX,
            }),
            ..MediaUsage::default()
        };
        let units = UnitPrices::default();
        assert_eq!(
            cost_micros_scaled(&u, &p, &units, MAX_MULTIPLIER_BPS),
            u64::MAX
        );
        assert_eq!(
            reservation_micros_scaled(&u, &p, &units, MAX_MULTIPLIER_BPS),
            u64::MAX
        );
    }
}
