//! OpenAI's `POST /v1/embeddings` as an inbound codec: decode and validate the request, count
//! its tokens for the reservation, and encode the answer.
//!
//! Follows the API reference "Create embeddings"
//! (<https://platform.openai.com/docs/api-reference/embeddings/create>) and the embeddings guide
//! (<https://platform.openai.com/docs/guides/embeddings>); the fixtures under
//! `tests/fixtures/media/` name the page each follows.
//!
//! * `input`: a string, an array of strings, an array of token ids, or an array of arrays of
//!   token ids; never empty, no empty string, at most [`MAX_INPUTS`] items, token ids are
//!   non-negative integers below 2³².
//! * `encoding_format`: `float` (default) or `base64`: the little-endian bytes of each `f32`,
//!   base64-encoded (standard alphabet, padded) — what OpenAI sends and its SDKs decode.
//! * `dimensions` (a positive integer), `user` (a string) are passed on; any other field is kept
//!   in [`EmbeddingsRequest::extra`] for the adapter to pass or refuse (`allowed_params`).
//! * **Prompt tokens.** Token arrays count their length, exactly. Text counts with the model's
//!   encoding when it has one — exact for OpenAI's embedding models (`cl100k_base`, the count the
//!   API reports: each input encoded without special tokens) — else with the conservative
//!   estimate of [`estimate_text_tokens`]. Embeddings have no output tokens.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::core::billing::units::MediaUsage;
use crate::core::billing::TokenUsage;
use crate::core::error::GatewayError;
use crate::core::tokens::{estimate_text_tokens, Encoding};

/// The most inputs one request may carry (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// What to embed.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbeddingInput {
    /// Texts; `single` when the client sent one string rather than an array.
    Texts { texts: Vec<String>, single: bool },
    /// Token id arrays; `single` when the client sent one flat array.
    Tokens { tokens: Vec<Vec<u32>>, single: bool },
}

impl EmbeddingInput {
    /// The number of inputs, i.e. of embeddings the answer must hold.
    pub fn len(&self) -> usize {
        match self {
            EmbeddingInput::Texts { texts, .. } => texts.len(),
            EmbeddingInput::Tokens { tokens, .. } => tokens.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The input as OpenAI's wire shape (a single input stays single).
    pub fn to_json(&self) -> Value {
        match self {
            EmbeddingInput::Texts {
                texts,
                single: true,
            } if texts.len() == 1 => Value::String(texts[0].clone()),
            EmbeddingInput::Texts { texts, .. } => {
                Value::Array(texts.iter().cloned().map(Value::String).collect())
            }
            EmbeddingInput::Tokens {
                tokens,
                single: true,
            } if tokens.len() == 1 => Value::Array(tokens[0].iter().map(|&t| t.into()).collect()),
            EmbeddingInput::Tokens { tokens, .. } => Value::Array(
                tokens
                    .iter()
                    .map(|t| Value::Array(t.iter().map(|&t| t.into()).collect()))
                    .collect(),
            ),
        }
    }
}

/// How the client wants the vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

impl EncodingFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            EncodingFormat::Float => "float",
            EncodingFormat::Base64 => "base64",
        }
    }
}

/// A decoded `/v1/embeddings` request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    pub encoding_format: EncodingFormat,
    pub dimensions: Option<u64>,
    pub user: Option<String>,
    /// Every other top-level field, for the adapter to pass on or refuse.
    pub extra: Map<String, Value>,
}

fn invalid(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_param(param, message)
}

/// Decodes and validates a request body (see the module docs).
pub fn decode_request(body: &[u8]) -> Result<EmbeddingsRequest, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("The request body is not valid JSON: {e}"))
    })?;
    let Value::Object(mut map) = value else {
        return Err(GatewayError::invalid_request(
            "The request body must be a JSON object.",
        ));
    };
    let model = match map.remove("model") {
        Some(Value::String(m)) if !m.is_empty() => m,
        Some(_) => return Err(invalid("model", "'model' must be a non-empty string.")),
        None => return Err(invalid("model", "Missing required parameter: 'model'.")),
    };
    let input = decode_input(
        map.remove("input")
            .ok_or_else(|| invalid("input", "Missing required parameter: 'input'."))?,
    )?;
    let encoding_format = match map.remove("encoding_format") {
        None | Some(Value::Null) => EncodingFormat::Float,
        Some(Value::String(s)) if s == "float" => EncodingFormat::Float,
        Some(Value::String(s)) if s == "base64" => EncodingFormat::Base64,
        Some(_) => {
            return Err(invalid(
                "encoding_format",
                "'encoding_format' must be 'float' or 'base64'.",
            ))
        }
    };
    let dimensions = match map.remove("dimensions") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(d) if d >= 1 => Some(d),
            _ => {
                return Err(invalid(
                    "dimensions",
                    "'dimensions' must be a positive integer.",
                ))
            }
        },
    };
    let user = match map.remove("user") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => Some(u),
        Some(_) => return Err(invalid("user", "'user' must be a string.")),
    };
    Ok(EmbeddingsRequest {
        model,
        input,
        encoding_format,
        dimensions,
        user,
        extra: map,
    })
}

fn token_id(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|t| u32::try_from(t).ok())
}

fn token_array(items: &[Value], param: &str) -> Result<Vec<u32>, GatewayError> {
    if items.is_empty() {
        return Err(invalid(
            param,
            format!("'{param}' must not be an empty array."),
        ));
    }
    items
        .iter()
        .map(|v| {
            token_id(v).ok_or_else(|| {
                invalid(
                    param,
                    format!("'{param}' token ids must be integers from 0 to 4294967295."),
                )
            })
        })
        .collect()
}

fn decode_input(value: Value) -> Result<EmbeddingInput, GatewayError> {
    const SHAPES: &str = "'input' must be a string, an array of strings, an array of token ids or an array of token id arrays.";
    match value {
        Value::String(s) => {
            if s.is_empty() {
                return Err(invalid("input", "'input' must not be an empty string."));
            }
            Ok(EmbeddingInput::Texts {
                texts: vec![s],
                single: true,
            })
        }
        Value::Array(items) => {
            if items.is_empty() {
                return Err(invalid("input", "'input' must not be an empty array."));
            }
            if items.len() > MAX_INPUTS {
                return Err(invalid(
                    "input",
                    format!("'input' may hold at most {MAX_INPUTS} items."),
                ));
            }
            match &items[0] {
                Value::String(_) => {
                    let mut texts = Vec::with_capacity(items.len());
                    for (i, item) in items.into_iter().enumerate() {
                        match item {
                            Value::String(s) if !s.is_empty() => texts.push(s),
                            Value::String(_) => {
                                return Err(invalid(
                                    &format!("input[{i}]"),
                                    format!("'input[{i}]' must not be an empty string."),
                                ))
                            }
                            _ => return Err(invalid(&format!("input[{i}]"), SHAPES)),
                        }
                    }
                    Ok(EmbeddingInput::Texts {
                        texts,
                        single: false,
                    })
                }
                Value::Number(_) => Ok(EmbeddingInput::Tokens {
                    tokens: vec![token_array(&items, "input")?],
                    single: true,
                }),
                Value::Array(_) => {
                    let mut tokens = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        let param = format!("input[{i}]");
                        match item {
                            Value::Array(t) => tokens.push(token_array(t, &param)?),
                            _ => return Err(invalid(&param, SHAPES)),
                        }
                    }
                    Ok(EmbeddingInput::Tokens {
                        tokens,
                        single: false,
                    })
                }
                _ => Err(invalid("input", SHAPES)),
            }
        }
        _ => Err(invalid("input", SHAPES)),
    }
}

/// A prompt count: the tokens and whether they are exact (else a conservative estimate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptCount {
    pub tokens: u64,
    pub exact: bool,
}

impl EmbeddingsRequest {
    /// The prompt tokens of the request (see the module docs).
    pub fn prompt_tokens(&self, encoding: Option<Encoding>) -> PromptCount {
        match &self.input {
            EmbeddingInput::Tokens { tokens, .. } => PromptCount {
                tokens: tokens.iter().map(|t| t.len() as u64).sum(),
                exact: true,
            },
            EmbeddingInput::Texts { texts, .. } => match encoding {
                Some(enc) => PromptCount {
                    tokens: texts.iter().map(|t| enc.count(t)).sum(),
                    exact: true,
                },
                None => PromptCount {
                    tokens: texts.iter().map(|t| estimate_text_tokens(t)).sum(),
                    exact: false,
                },
            },
        }
    }

    /// The usage the reservation covers: the prompt, no output.
    pub fn reservation_usage(&self, encoding: Option<Encoding>) -> MediaUsage {
        MediaUsage::tokens(TokenUsage {
            prompt_tokens: self.prompt_tokens(encoding).tokens,
            ..TokenUsage::default()
        })
    }

    /// The texts to embed, for providers that take no token ids; a 400 for token input.
    pub fn texts(&self, provider: &str) -> Result<&[String], GatewayError> {
        match &self.input {
            EmbeddingInput::Texts { texts, .. } => Ok(texts),
            EmbeddingInput::Tokens { .. } => Err(invalid(
                "input",
                format!("{provider} embeds text only: send 'input' as strings, not token ids."),
            )
            .with_code("unsupported_for_provider")),
        }
    }
}

/// What a provider answered, in the gateway's terms.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Embeddings {
    /// One vector per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// The prompt tokens the provider reported, if it did.
    pub prompt_tokens: Option<u64>,
}

#[derive(Serialize)]
struct Datum<'a> {
    object: &'static str,
    index: usize,
    embedding: Vector<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector<'a> {
    Float(&'a [f32]),
    Base64(String),
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct ListOut<'a> {
    object: &'static str,
    data: Vec<Datum<'a>>,
    model: &'a str,
    usage: UsageOut,
}

/// The OpenAI response body: `{"object":"list","data":[{"object":"embedding","index",
/// "embedding"}],"model","usage":{"prompt_tokens","total_tokens"}}`, vectors as JSON numbers
/// (each `f32` printed shortest) or base64; `model` is the public model name and the usage the
/// billed prompt tokens.
pub fn encode_response(
    model: &str,
    embeddings: &Embeddings,
    format: EncodingFormat,
    prompt_tokens: u64,
) -> Vec<u8> {
    let data = embeddings
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| Datum {
            object: "embedding",
            index,
            embedding: match format {
                EncodingFormat::Float => Vector::Float(v),
                EncodingFormat::Base64 => Vector::Base64(vector_to_base64(v)),
            },
        })
        .collect();
    let out = ListOut {
        object: "list",
        data,
        model,
        usage: UsageOut {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    };
    // Serialising plain structs of numbers and strings cannot fail; NaN has no JSON form and is
    // refused when the provider's answer is parsed.
    serde_json::to_vec(&out).unwrap_or_default()
}

/// The base64 of a vector's little-endian `f32` bytes (OpenAI's `encoding_format: base64`).
pub fn vector_to_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
    base64_encode(&bytes)
}

/// The vector of base64 little-endian `f32` bytes; `None` when it is not base64 of a whole
/// number of finite floats.
pub fn vector_from_base64(s: &str) -> Option<Vec<f32>> {
    let bytes = base64_decode(s)?;
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    v.iter().all(|f| f.is_finite()).then_some(v)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Strict standard base64 (padding optional, no whitespace); `None` on anything else.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    let trimmed = match s {
        [rest @ .., b'=', b'='] => rest,
        [rest @ .., b'='] => rest,
        _ => s,
    };
    if trimmed.len() % 4 == 1 || (trimmed.len() != s.len() && !s.len().is_multiple_of(4)) {
        return None;
    }
    let value = |c: u8| -> Option<u32> { ALPHABET.iter().position(|&a| a == c).map(|p| p as u32) };
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    for chunk in trimmed.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::inbound::testing::fixture;

    #[test]
    fn every_input_shape() {
        let r = decode_request(br#"{"model":"e","input":"hello"}"#).unwrap();
        assert_eq!(
            r.input,
            EmbeddingInput::Texts {
                texts: vec!["hello".into()],
                single: true
            }
        );
        assert_eq!(r.encoding_format, EncodingFormat::Float);
        let r = decode_request(br#"{"model":"e","input":["a","b"],"encoding_format":"base64","dimensions":256,"user":"u1"}"#).unwrap();
        assert_eq!(r.input.len(), 2);
        assert_eq!(r.encoding_format, EncodingFormat::Base64);
        assert_eq!((r.dimensions, r.user.as_deref()), (Some(256), Some("u1")));
        let r = decode_request(br#"{"model":"e","input":[1,2,3]}"#).unwrap();
        assert_eq!(
            r.prompt_tokens(None),
            PromptCount {
                tokens: 3,
                exact: true
            }
        );
        assert_eq!(r.input.to_json(), serde_json::json!([1, 2, 3]));
        let r = decode_request(br#"{"model":"e","input":[[1,2],[3]],"x":1}"#).unwrap();
        assert_eq!(r.prompt_tokens(Some(Encoding::Cl100kBase)).tokens, 3);
        assert_eq!(r.input.to_json(), serde_json::json!([[1, 2], [3]]));
        assert_eq!(r.extra.get("x"), Some(&serde_json::json!(1)));
        assert!(r.texts("Gemini").is_err());
    }

    #[test]
    fn refusals_name_the_field() {
        let many = format!(
            r#"{{"model":"e","input":[{}]}}"#,
            vec!["\"a\""; MAX_INPUTS + 1].join(",")
        );
        for (body, param) in [
            (r#"{"input":"a"}"#, "model"),
            (r#"{"model":"","input":"a"}"#, "model"),
            (r#"{"model":"e"}"#, "input"),
            (r#"{"model":"e","input":""}"#, "input"),
            (r#"{"model":"e","input":[]}"#, "input"),
            (r#"{"model":"e","input":["a",""]}"#, "input[1]"),
            (r#"{"model":"e","input":["a",1]}"#, "input[1]"),
            (r#"{"model":"e","input":[1,-1]}"#, "input"),
            (r#"{"model":"e","input":[1,4294967296]}"#, "input"),
            (r#"{"model":"e","input":[1.5]}"#, "input"),
            (r#"{"model":"e","input":[[1],[]]}"#, "input[1]"),
            (r#"{"model":"e","input":[[1],2]}"#, "input[1]"),
            (r#"{"model":"e","input":{}}"#, "input"),
            (r#"{"model":"e","input":[null]}"#, "input"),
            (
                r#"{"model":"e","input":"a","encoding_format":"int8"}"#,
                "encoding_format",
            ),
            (r#"{"model":"e","input":"a","dimensions":0}"#, "dimensions"),
            (
                r#"{"model":"e","input":"a","dimensions":"8"}"#,
                "dimensions",
            ),
            (r#"{"model":"e","input":"a","user":5}"#, "user"),
            (&many, "input"),
        ] {
            let e = decode_request(body.as_bytes()).unwrap_err();
            assert_eq!(e.status(), 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
            let json: Value =
                serde_json::from_str(&crate::core::inbound::openai::error_body(&e)).unwrap();
            assert_eq!(json["error"]["type"], "invalid_request_error");
        }
        assert!(decode_request(b"[1]").is_err());
        assert!(decode_request(b"{").is_err());
    }

    #[test]
    fn text_is_counted_exactly_with_the_encoding_else_estimated() {
        let r = decode_request(
            br#"{"model":"text-embedding-3-small","input":["The food was delicious and the waiter...","hello world"]}"#,
        )
        .unwrap();
        let exact = r.prompt_tokens(Some(Encoding::Cl100kBase));
        let want = Encoding::Cl100kBase.count("The food was delicious and the waiter...")
            + Encoding::Cl100kBase.count("hello world");
        assert_eq!(
            exact,
            PromptCount {
                tokens: want,
                exact: true
            }
        );
        // OpenAI's reference example reports 8 prompt tokens for this sentence (fixture).
        assert_eq!(
            Encoding::Cl100kBase.count("The food was delicious and the waiter..."),
            8
        );
        let est = r.prompt_tokens(None);
        assert!(!est.exact && est.tokens >= want);
        assert_eq!(r.reservation_usage(None).tokens.prompt_tokens, est.tokens);
    }

    #[test]
    fn base64_is_little_endian_f32_as_openai_sends() {
        // 1.0f32 = 00 00 80 3f; -2.5 = 00 00 20 c0.
        assert_eq!(vector_to_base64(&[1.0, -2.5]), "AACAPwAAIMA=");
        assert_eq!(vector_from_base64("AACAPwAAIMA="), Some(vec![1.0, -2.5]));
        // The reference body of the fixture decodes to the floats of the float answer.
        let b64: Value = serde_json::from_str(fixture(include_bytes!(
            "../../../tests/fixtures/media/openai_embeddings_base64.json"
        )))
        .unwrap();
        let floats: Value = serde_json::from_str(fixture(include_bytes!(
            "../../../tests/fixtures/media/openai_embeddings_float.json"
        )))
        .unwrap();
        let decoded = vector_from_base64(b64["data"][0]["embedding"].as_str().unwrap()).unwrap();
        let want: Vec<f32> = floats["data"][0]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(decoded, want);
        for bad in ["AACAPw=", "AAC", "A===", "AACA PwAA", "AACAPwAAIM", "////"] {
            assert_eq!(vector_from_base64(bad), None, "{bad}");
        }
        for n in 0..40usize {
            let bytes: Vec<u8> = (0..n as u8).map(|b| b.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&base64_encode(&bytes)), Some(bytes));
        }
    }

    #[test]
    fn encodes_the_openai_response() {
        let e = Embeddings {
            vectors: vec![vec![0.0023064255, -0.009327292], vec![1.0, -2.5]],
            prompt_tokens: Some(99),
        };
        let body = encode_response("my-embed", &e, EncodingFormat::Float, 8);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "my-embed");
        assert_eq!(
            v["usage"],
            serde_json::json!({"prompt_tokens": 8, "total_tokens": 8})
        );
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][0]["object"], "embedding");
        // f32 printed shortest: the same digits OpenAI sent.
        assert!(std::str::from_utf8(&body)
            .unwrap()
            .contains("[0.0023064255,-0.009327292]"));
        let body = encode_response("m", &e, EncodingFormat::Base64, 8);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["data"][1]["embedding"], "AACAPwAAIMA=");
    }
}
