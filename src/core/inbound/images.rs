//! OpenAI's `POST /v1/images/generations` (JSON) and `POST /v1/images/edits` (multipart) as an
//! inbound codec: decode and validate, and the reservation estimate.
//!
//! Follows the API reference "Create image" and "Create image edit"
//! (<https://platform.openai.com/docs/api-reference/images>) and the image generation guide
//! (<https://platform.openai.com/docs/guides/image-generation>), whose "Cost and latency" table
//! gives gpt-image-1's output tokens per image ([`output_tokens_per_image`]).
//!
//! * `prompt` (required, at most [`MAX_PROMPT_CHARS`] characters), `n` (1–10, default 1),
//!   `size` (`WIDTHxHEIGHT` or `auto`), `quality` (a lower-case word: `standard`, `hd`, `low`,
//!   `medium`, `high`, `auto`), `response_format` (`url` or `b64_json`), `style` (`vivid`,
//!   `natural`), `background`, `output_format` (`png`, `jpeg`, `webp`), `output_compression`
//!   (0–100), `moderation`, `input_fidelity`, `user`: checked for type and passed on; the provider
//!   decides which model takes which.
//! * `stream: true` with `partial_images` (0–[`MAX_PARTIAL_IMAGES`]): the provider's SSE events
//!   (`image_generation.partial_image` / `.completed`, `image_edit.*` for edits) are relayed
//!   unchanged and billed from the completed events (`providers::media::streams`); the
//!   reservation covers `n` images as for a plain request. `partial_images` without `stream` is
//!   passed on (the provider ignores or refuses it).
//! * Edits: one or more `image` files (`image` or `image[]`), an optional `mask` file, and the
//!   same fields as form text.
//! * **Reservation.** A model with an image price table reserves `n` × the dearest entry the
//!   request's size and quality can match (a request no entry matches is a 400: nothing is served
//!   unpriced). A model billed on tokens reserves the prompt (counted locally), every input image
//!   at [`INPUT_IMAGE_TOKENS`], and `n` × the output tokens of its size and quality (the model's
//!   `max_output_tokens` when the table does not know them).

use serde_json::{Map, Value};

use crate::core::billing::units::{is_image_size, MediaUsage, Unit, UnitPrices};
use crate::core::billing::TokenUsage;
use crate::core::error::GatewayError;
use crate::core::multipart::Part;
use crate::core::tokens::{estimate_text_tokens, Encoding};

/// The longest prompt accepted (gpt-image-1's limit; other models have lower ones, which their
/// provider enforces).
pub const MAX_PROMPT_CHARS: usize = 32_000;

/// The most images one request may ask for.
pub const MAX_IMAGES: u64 = 10;

/// The most partial images a streamed request may ask for (OpenAI's limit).
pub const MAX_PARTIAL_IMAGES: u64 = 3;

/// Input image tokens reserved per uploaded image on a token-priced model (the provider's usage
/// settles the exact count).
pub const INPUT_IMAGE_TOKENS: u64 = 4_160;

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageOp {
    Generate,
    Edit,
}

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePart<'a> {
    pub filename: String,
    pub content_type: String,
    pub data: &'a [u8],
}

impl<'a> FilePart<'a> {
    pub fn from_part(part: &Part<'a>, default_type: &str) -> Self {
        FilePart {
            filename: part.filename.clone().unwrap_or_else(|| part.name.clone()),
            content_type: part
                .content_type
                .clone()
                .unwrap_or_else(|| default_type.to_string()),
            data: part.data,
        }
    }
}

/// A decoded image request.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRequest<'a> {
    pub op: ImageOp,
    pub model: String,
    pub prompt: String,
    pub n: u64,
    pub size: Option<String>,
    pub quality: Option<String>,
    /// `stream: true`: the answer is the provider's SSE events (also in `params`, passed on).
    pub stream: bool,
    /// Every other accepted field, checked, in OpenAI's JSON types (numbers as numbers).
    pub params: Map<String, Value>,
    /// Edits: the images to edit, in order.
    pub images: Vec<FilePart<'a>>,
    /// Edits: the mask.
    pub mask: Option<FilePart<'a>>,
}

fn invalid(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_param(param, message)
}

/// Fields passed on as strings, each with the values accepted (`None`: any lower-case word).
const STRING_PARAMS: &[(&str, Option<&[&str]>)] = &[
    ("response_format", Some(&["url", "b64_json"])),
    ("style", Some(&["vivid", "natural"])),
    ("background", Some(&["transparent", "opaque", "auto"])),
    ("output_format", Some(&["png", "jpeg", "webp"])),
    ("moderation", Some(&["low", "auto"])),
    ("input_fidelity", Some(&["high", "low"])),
];

/// Decodes a `/v1/images/generations` JSON body.
pub fn decode_generation(body: &[u8]) -> Result<ImageRequest<'static>, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("The request body is not valid JSON: {e}"))
    })?;
    let Value::Object(map) = value else {
        return Err(GatewayError::invalid_request(
            "The request body must be a JSON object.",
        ));
    };
    let mut fields = Vec::with_capacity(map.len());
    for (k, v) in map {
        fields.push((k, v));
    }
    build(ImageOp::Generate, fields, Vec::new(), None)
}

/// Decodes a `/v1/images/edits` form: text fields are read as OpenAI's JSON types.
pub fn decode_edit<'a>(parts: &[Part<'a>]) -> Result<ImageRequest<'a>, GatewayError> {
    let mut fields = Vec::new();
    let mut images = Vec::new();
    let mut mask = None;
    for part in parts {
        match part.name.as_str() {
            "image" | "image[]" => {
                if !part.is_file() {
                    return Err(invalid("image", "'image' must be a file upload."));
                }
                if part.data.is_empty() {
                    return Err(invalid("image", "An uploaded image is empty."));
                }
                images.push(FilePart::from_part(part, "image/png"));
            }
            "mask" => {
                if mask.is_some() || !part.is_file() {
                    return Err(invalid("mask", "'mask' must be one file upload."));
                }
                mask = Some(FilePart::from_part(part, "image/png"));
            }
            name => {
                if part.is_file() {
                    return Err(invalid(name, format!("'{name}' must be a text field.")));
                }
                let text = part.text()?;
                let value = match name {
                    "n" | "output_compression" | "partial_images" => text
                        .trim()
                        .parse::<u64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::String(text.to_string())),
                    "stream" => match text.trim() {
                        "true" => Value::Bool(true),
                        "false" => Value::Bool(false),
                        _ => Value::String(text.to_string()),
                    },
                    _ => Value::String(text.to_string()),
                };
                fields.push((name.to_string(), value));
            }
        }
    }
    if images.is_empty() {
        return Err(invalid("image", "Missing required parameter: 'image'."));
    }
    build(ImageOp::Edit, fields, images, mask)
}

fn build<'a>(
    op: ImageOp,
    fields: Vec<(String, Value)>,
    images: Vec<FilePart<'a>>,
    mask: Option<FilePart<'a>>,
) -> Result<ImageRequest<'a>, GatewayError> {
    let mut model = None;
    let mut prompt = None;
    let mut n = 1;
    let mut size = None;
    let mut quality = None;
    let mut stream = false;
    let mut params = Map::new();
    for (name, value) in fields {
        if value.is_null() {
            continue;
        }
        let text = |what: &str| -> Result<String, GatewayError> {
            value
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| invalid(&name, format!("'{name}' must be {what}.")))
        };
        match name.as_str() {
            "model" => model = Some(text("a string")?).filter(|m| !m.is_empty()),
            "prompt" => {
                let p = text("a string")?;
                if p.trim().is_empty() {
                    return Err(invalid("prompt", "'prompt' must not be empty."));
                }
                if p.chars().count() > MAX_PROMPT_CHARS {
                    return Err(invalid(
                        "prompt",
                        format!("'prompt' is longer than {MAX_PROMPT_CHARS} characters."),
                    ));
                }
                prompt = Some(p);
            }
            "n" => {
                n = value
                    .as_u64()
                    .filter(|n| (1..=MAX_IMAGES).contains(n))
                    .ok_or_else(|| {
                        invalid(
                            "n",
                            format!("'n' must be an integer from 1 to {MAX_IMAGES}."),
                        )
                    })?
            }
            "size" => {
                let s = text("a string")?;
                if !is_image_size(&s) {
                    return Err(invalid("size", "'size' must be WIDTHxHEIGHT or 'auto'."));
                }
                size = Some(s);
            }
            "quality" => {
                let q = text("a string")?;
                if q.is_empty() || q.len() > 32 || !q.bytes().all(|b| b.is_ascii_lowercase()) {
                    return Err(invalid(
                        "quality",
                        "'quality' must be standard, hd, low, medium, high or auto.",
                    ));
                }
                quality = Some(q);
            }
            "stream" => {
                stream = value
                    .as_bool()
                    .ok_or_else(|| invalid("stream", "'stream' must be true or false."))?;
                if stream {
                    params.insert(name, Value::Bool(true));
                }
            }
            "partial_images" => {
                let p = value
                    .as_u64()
                    .filter(|p| *p <= MAX_PARTIAL_IMAGES)
                    .ok_or_else(|| {
                        invalid(
                            "partial_images",
                            format!(
                                "'partial_images' must be an integer from 0 to {MAX_PARTIAL_IMAGES}."
                            ),
                        )
                    })?;
                params.insert(name, p.into());
            }
            "output_compression" => {
                let c = value.as_u64().filter(|c| *c <= 100).ok_or_else(|| {
                    invalid(
                        "output_compression",
                        "'output_compression' must be an integer from 0 to 100.",
                    )
                })?;
                params.insert(name, c.into());
            }
            "user" => {
                params.insert(name.clone(), Value::String(text("a string")?));
            }
            other => match STRING_PARAMS.iter().find(|(k, _)| *k == other) {
                Some((_, allowed)) => {
                    let v = text("a string")?;
                    if let Some(allowed) = allowed {
                        if !allowed.contains(&v.as_str()) {
                            return Err(invalid(
                                &name,
                                format!("'{name}' must be one of: {}.", allowed.join(", ")),
                            ));
                        }
                    }
                    params.insert(name, Value::String(v));
                }
                None => {
                    return Err(invalid(
                        &name,
                        format!("Unrecognized request argument supplied: {name}"),
                    )
                    .with_code("unknown_parameter"))
                }
            },
        }
    }
    Ok(ImageRequest {
        op,
        model: model.ok_or_else(|| invalid("model", "Missing required parameter: 'model'."))?,
        prompt: prompt.ok_or_else(|| invalid("prompt", "Missing required parameter: 'prompt'."))?,
        n,
        size,
        quality,
        stream,
        params,
        images,
        mask,
    })
}

/// gpt-image-1's output tokens per image, by quality and size (the guide's table); `None` for a
/// size or quality it does not list. `auto` (or none) takes the dearest the other field allows.
pub fn output_tokens_per_image(size: Option<&str>, quality: Option<&str>) -> Option<u64> {
    const TABLE: &[(&str, [(&str, u64); 3])] = &[
        (
            "low",
            [("1024x1024", 272), ("1024x1536", 408), ("1536x1024", 400)],
        ),
        (
            "medium",
            [
                ("1024x1024", 1056),
                ("1024x1536", 1584),
                ("1536x1024", 1568),
            ],
        ),
        (
            "high",
            [
                ("1024x1024", 4160),
                ("1024x1536", 6240),
                ("1536x1024", 6208),
            ],
        ),
    ];
    let any = |v: Option<&str>| v.is_none_or(|v| v == "auto");
    TABLE
        .iter()
        .filter(|(q, _)| any(quality) || quality == Some(*q))
        .flat_map(|(_, sizes)| sizes.iter())
        .filter(|(s, _)| any(size) || size == Some(*s))
        .map(|&(_, t)| t)
        .max()
}

impl ImageRequest<'_> {
    /// The worst-case usage to reserve (see the module docs); a 400 when the model has an image
    /// table and no entry prices this request.
    pub fn reservation_usage(
        &self,
        units: &UnitPrices,
        encoding: Option<Encoding>,
        max_output_tokens: u64,
    ) -> Result<MediaUsage, GatewayError> {
        if !units.images.is_empty() {
            let price = units
                .worst_image_price(self.size.as_deref(), self.quality.as_deref())
                .ok_or_else(|| {
                    invalid(
                        "size",
                        format!(
                            "This model has no price for size {} and quality {}.",
                            self.size.as_deref().unwrap_or("(default)"),
                            self.quality.as_deref().unwrap_or("(default)")
                        ),
                    )
                    .with_code("unsupported_value")
                })?;
            return Ok(MediaUsage::metered(Unit::Images, self.n, price));
        }
        let text = match encoding {
            Some(enc) => enc.count(&self.prompt),
            None => estimate_text_tokens(&self.prompt),
        };
        let image_in = INPUT_IMAGE_TOKENS
            .saturating_mul(self.images.len() as u64 + u64::from(self.mask.is_some()));
        let per_image = output_tokens_per_image(self.size.as_deref(), self.quality.as_deref())
            .unwrap_or(max_output_tokens);
        Ok(MediaUsage {
            tokens: TokenUsage {
                prompt_tokens: text.saturating_add(image_in),
                completion_tokens: per_image.saturating_mul(self.n),
                ..TokenUsage::default()
            },
            image_input_tokens: image_in,
            ..MediaUsage::default()
        })
    }

    /// The price of one image as billed: the table's entry for the request's size and quality
    /// (`None` on a token-priced model).
    pub fn unit_price(&self, units: &UnitPrices) -> Option<u64> {
        if units.images.is_empty() {
            return None;
        }
        units
            .image_price(self.size.as_deref(), self.quality.as_deref())
            .or_else(|| units.worst_image_price(self.size.as_deref(), self.quality.as_deref()))
    }
}

/// Token usage an image answer reports (gpt-image models).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImageTokens {
    pub input_tokens: u64,
    /// The part of `input_tokens` that is image input.
    pub image_input_tokens: u64,
    pub output_tokens: u64,
}

/// What an image answer holds, for settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImagesResult {
    /// Images returned.
    pub images: u64,
    pub usage: Option<ImageTokens>,
}

impl ImagesResult {
    /// The usage to bill: per image at `unit_price` when the model has one, else the reported
    /// tokens; `None` when the model is token-priced and the provider reported none (then the
    /// reservation is charged, as for any answer without usage).
    pub fn billed(&self, unit_price: Option<u64>) -> Option<MediaUsage> {
        match (unit_price, self.usage) {
            (Some(price), _) => Some(MediaUsage::metered(Unit::Images, self.images, price)),
            (None, Some(u)) => Some(MediaUsage {
                tokens: TokenUsage {
                    prompt_tokens: u.input_tokens,
                    completion_tokens: u.output_tokens,
                    ..TokenUsage::default()
                },
                image_input_tokens: u.image_input_tokens,
                ..MediaUsage::default()
            }),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::multipart::{self, Limits, Writer};

    fn dalle_prices() -> UnitPrices {
        UnitPrices {
            images: UnitPrices::parse_image_table(
                r#"[{"size":"1024x1024","quality":"standard","price":40000},
                    {"size":"1024x1024","quality":"hd","price":80000},
                    {"size":"1792x1024","quality":"standard","price":80000},
                    {"size":"1792x1024","quality":"hd","price":120000}]"#,
            )
            .unwrap(),
            ..UnitPrices::default()
        }
    }

    #[test]
    fn generation_fields() {
        let r = decode_generation(
            br#"{"model":"dall-e-3","prompt":"A cute baby sea otter","n":2,"size":"1024x1024","quality":"hd","response_format":"b64_json","style":"natural","user":"u"}"#,
        )
        .unwrap();
        assert_eq!(
            (r.n, r.size.as_deref(), r.quality.as_deref()),
            (2, Some("1024x1024"), Some("hd"))
        );
        assert_eq!(r.params["response_format"], "b64_json");
        let u = r.reservation_usage(&dalle_prices(), None, 0).unwrap();
        assert_eq!(u, MediaUsage::metered(Unit::Images, 2, 80_000));
        assert_eq!(r.unit_price(&dalle_prices()), Some(80_000));
        // Without size and quality: the dearest entry.
        let r = decode_generation(br#"{"model":"m","prompt":"p"}"#).unwrap();
        assert_eq!(
            r.reservation_usage(&dalle_prices(), None, 0).unwrap(),
            MediaUsage::metered(Unit::Images, 1, 120_000)
        );
        // A size the table does not price: refused, never served for free.
        let r = decode_generation(
            br#"{"model":"m","prompt":"p","size":"256x256","quality":"standard"}"#,
        )
        .unwrap();
        let e = r.reservation_usage(&dalle_prices(), None, 0).unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "unsupported_value"));
    }

    #[test]
    fn token_priced_reservation_uses_the_guide_table() {
        let r = decode_generation(
            br#"{"model":"gpt-image-1","prompt":"a red fox","n":2,"size":"1024x1536","quality":"high"}"#,
        )
        .unwrap();
        let u = r
            .reservation_usage(&UnitPrices::default(), Some(Encoding::O200kBase), 99)
            .unwrap();
        assert_eq!(u.tokens.completion_tokens, 2 * 6240);
        assert_eq!(
            u.tokens.prompt_tokens,
            Encoding::O200kBase.count("a red fox")
        );
        assert_eq!(output_tokens_per_image(None, None), Some(6240));
        assert_eq!(
            output_tokens_per_image(Some("1024x1024"), Some("low")),
            Some(272)
        );
        assert_eq!(
            output_tokens_per_image(Some("auto"), Some("medium")),
            Some(1584)
        );
        assert_eq!(output_tokens_per_image(Some("512x512"), None), None);
        let r = decode_generation(br#"{"model":"x","prompt":"p","size":"512x512"}"#).unwrap();
        let u = r
            .reservation_usage(&UnitPrices::default(), None, 99)
            .unwrap();
        assert_eq!(u.tokens.completion_tokens, 99);
    }

    #[test]
    fn refusals() {
        for (body, param) in [
            (r#"{"prompt":"p"}"#, "model"),
            (r#"{"model":"m"}"#, "prompt"),
            (r#"{"model":"m","prompt":"  "}"#, "prompt"),
            (r#"{"model":"m","prompt":"p","n":0}"#, "n"),
            (r#"{"model":"m","prompt":"p","n":11}"#, "n"),
            (r#"{"model":"m","prompt":"p","n":"2"}"#, "n"),
            (r#"{"model":"m","prompt":"p","size":"big"}"#, "size"),
            (r#"{"model":"m","prompt":"p","quality":"HD"}"#, "quality"),
            (
                r#"{"model":"m","prompt":"p","response_format":"png"}"#,
                "response_format",
            ),
            (
                r#"{"model":"m","prompt":"p","output_compression":101}"#,
                "output_compression",
            ),
            (r#"{"model":"m","prompt":"p","stream":"yes"}"#, "stream"),
            (
                r#"{"model":"m","prompt":"p","partial_images":4}"#,
                "partial_images",
            ),
            (
                r#"{"model":"m","prompt":"p","partial_images":-1}"#,
                "partial_images",
            ),
            (r#"{"model":"m","prompt":"p","seed":1}"#, "seed"),
            (r#"{"model":"m","prompt":5}"#, "prompt"),
        ] {
            let e = decode_generation(body.as_bytes()).unwrap_err();
            assert_eq!(
                (e.status(), e.param.as_deref()),
                (400, Some(param)),
                "{body}"
            );
        }
        let long = format!(
            r#"{{"model":"m","prompt":"{}"}}"#,
            "a".repeat(MAX_PROMPT_CHARS + 1)
        );
        assert!(decode_generation(long.as_bytes()).is_err());
    }

    #[test]
    fn streamed_requests_pass_stream_and_partial_images_on() {
        let r = decode_generation(
            br#"{"model":"m","prompt":"p","stream":true,"partial_images":2,"n":2}"#,
        )
        .unwrap();
        assert!(r.stream);
        assert_eq!(r.params.get("stream"), Some(&Value::Bool(true)));
        assert_eq!(r.params.get("partial_images"), Some(&Value::from(2u64)));
        // Streamed or not, the reservation covers n images.
        let u = r
            .reservation_usage(&UnitPrices::default(), None, 99)
            .unwrap();
        assert_eq!(u.tokens.completion_tokens, 2 * 6240);
        let plain = decode_generation(br#"{"model":"m","prompt":"p","stream":false}"#).unwrap();
        assert!(!plain.stream);
        assert!(plain.params.get("stream").is_none());
    }

    #[test]
    fn edits_from_a_form() {
        let png = b"\x89PNG\r\n\x1a\n....".to_vec();
        let mut w = Writer::new();
        w.text("model", "gpt-image-1")
            .text("prompt", "add a hat")
            .text("n", "2")
            .text("size", "1024x1024")
            .file("image[]", "a.png", "image/png", &png)
            .file("image[]", "b.png", "image/png", &png)
            .file("mask", "m.png", "image/png", &png);
        let (ct, body) = w.finish("r");
        let parts = multipart::parse(
            &body,
            &multipart::boundary_of(&ct).unwrap(),
            &Limits::default(),
        )
        .unwrap();
        let r = decode_edit(&parts).unwrap();
        assert_eq!(r.op, ImageOp::Edit);
        assert_eq!((r.images.len(), r.n), (2, 2));
        assert_eq!(r.images[1].filename, "b.png");
        assert!(r.mask.is_some());
        let u = r
            .reservation_usage(&UnitPrices::default(), None, 0)
            .unwrap();
        assert_eq!(u.image_input_tokens, 3 * INPUT_IMAGE_TOKENS);
        // No image, an image sent as text, a bad number.
        let mut w = Writer::new();
        w.text("model", "m").text("prompt", "p");
        let (ct, body) = w.finish("r");
        let parts = multipart::parse(
            &body,
            &multipart::boundary_of(&ct).unwrap(),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(
            decode_edit(&parts).unwrap_err().param.as_deref(),
            Some("image")
        );
        let mut w = Writer::new();
        w.text("model", "m").text("prompt", "p").text("image", "x");
        let (ct, body) = w.finish("r");
        let parts = multipart::parse(
            &body,
            &multipart::boundary_of(&ct).unwrap(),
            &Limits::default(),
        )
        .unwrap();
        assert!(decode_edit(&parts).is_err());
        let mut w = Writer::new();
        w.text("model", "m")
            .text("prompt", "p")
            .text("n", "two")
            .file("image", "a.png", "image/png", &png);
        let (ct, body) = w.finish("r");
        let parts = multipart::parse(
            &body,
            &multipart::boundary_of(&ct).unwrap(),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(decode_edit(&parts).unwrap_err().param.as_deref(), Some("n"));
    }

    #[test]
    fn billed_usage() {
        let r = ImagesResult {
            images: 2,
            usage: Some(ImageTokens {
                input_tokens: 50,
                image_input_tokens: 40,
                output_tokens: 4160,
            }),
        };
        assert_eq!(
            r.billed(Some(40_000)),
            Some(MediaUsage::metered(Unit::Images, 2, 40_000))
        );
        let t = r.billed(None).unwrap();
        assert_eq!(
            (
                t.tokens.prompt_tokens,
                t.image_input_tokens,
                t.tokens.completion_tokens
            ),
            (50, 40, 4160)
        );
        assert_eq!(
            ImagesResult {
                images: 1,
                usage: None
            }
            .billed(None),
            None
        );
    }
}
