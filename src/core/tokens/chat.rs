//! The prompt tokens of a chat request: the text of each message plus OpenAI's framing, and the
//! tool (function) definitions the way OpenAI renders them into the prompt.
//!
//! The formulas are those of OpenAI's cookbook "How to count tokens with tiktoken"
//! (`num_tokens_from_messages`, `num_tokens_for_tools`), which it checks against the API's
//! `usage.prompt_tokens`:
//!
//! - each message: `tokens_per_message` + the tokens of its role, content and name, plus
//!   `tokens_per_name` when it has a name; every reply is primed with 3 more tokens;
//! - each function: `func_init` + tokens of `"{name}:{description}"` (one trailing `.` dropped);
//!   when it has properties, `prop_init` once, and per property `prop_key` + tokens of
//!   `"{key}:{type}:{description}"`, plus for an `enum`: `enum_init` + per item `enum_item` + its
//!   tokens; and `func_end` once after all functions.
//!
//! Beyond the cookbook (estimates, as OpenAI publishes no formula): an assistant message's tool
//! calls count their function name and arguments plus [`TOKENS_PER_TOOL_CALL`], a tool message
//! its `tool_call_id`; tools other than functions count their JSON text.
//!
//! # What the reservation counts beyond text
//!
//! The reservation is made before the call and caps the charge, so everything the provider will
//! bill must be priced in it, conservatively. [`prompt_tokens_for_reservation`] adds to the text
//! count:
//!
//! * **Images** ([`ImageRule`], chosen per model family by [`MediaRules::for_model`]). The gateway
//!   never fetches or decodes images, so it never knows their size and always assumes the largest
//!   an image can cost: OpenAI tile models `low` = base, `high`/`auto` = base + 8 tiles (an image
//!   scaled to fit 2048 px and then to 768 px on its short side covers at most 2 × 4 tiles of
//!   512 px); OpenAI patch models 1536 patches × the model's multiplier whatever the detail;
//!   Anthropic and Gemini a fixed per-image maximum; other families (open models behind
//!   OpenAI-compatible servers, Ollama, Hugging Face) [`DEFAULT_IMAGE_TOKENS`].
//! * **Audio** (`input_audio`): its longest possible duration from its size (a WAV header's byte
//!   rate, else 8 kbit/s, MP3's lowest bit rate) × [`AUDIO_TOKENS_PER_SECOND`].
//! * **Files** (`file` with inline `file_data`): one token per byte of the decoded file (a bound
//!   for any text, even compressed ~4× in a PDF stream), plus for a PDF one worst-case image per
//!   page object found (providers add an image of every page). A `file_id` refers to a file the
//!   gateway cannot see: refused (400), as is any part type not listed here.
//!
//! For models without a local tokenizer the text is estimated with [`estimate_text_tokens`]:
//! one token per 3 ASCII bytes and, per other character, one per UTF-8 byte after its first (CJK
//! characters count 2), which is above what the BPE tokenizers of Claude, Gemini and Llama
//! produce. Billing still uses the provider's reported usage; these counts only decide what is
//! held before the call.

use serde_json::Value;

use super::Encoding;
use crate::core::error::GatewayError;
use crate::core::openai::{ChatCompletionRequest, ContentPart, MessageContent};
use crate::core::providers::ProviderKind;

/// How one model family frames a chat prompt, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatFraming {
    /// Added for every message (`<|start|>{role}<|message|>…<|end|>`).
    pub tokens_per_message: i64,
    /// Added for a message with a `name` (negative for gpt-3.5-turbo-0301: the name replaces
    /// the role).
    pub tokens_per_name: i64,
    /// Added once: every reply is primed with `<|start|>assistant<|message|>`.
    pub reply_priming: i64,
    /// Added per function definition.
    pub func_init: i64,
    /// Added once per function that has properties.
    pub prop_init: i64,
    /// Added per property.
    pub prop_key: i64,
    /// Added per property with an `enum`.
    pub enum_init: i64,
    /// Added per `enum` item.
    pub enum_item: i64,
    /// Added once after all function definitions.
    pub func_end: i64,
}

/// The framing of current OpenAI chat models on `o200k_base` (gpt-4o, gpt-4o-mini and later).
const O200K_FRAMING: ChatFraming = ChatFraming {
    tokens_per_message: 3,
    tokens_per_name: 1,
    reply_priming: 3,
    func_init: 7,
    prop_init: 3,
    prop_key: 3,
    enum_init: -3,
    enum_item: 3,
    func_end: 12,
};

/// The framing of gpt-4 and gpt-3.5-turbo on `cl100k_base`.
const CL100K_FRAMING: ChatFraming = ChatFraming {
    func_init: 10,
    ..O200K_FRAMING
};

/// Model-name prefixes whose framing differs from their encoding's default.
/// Keep in sync with OpenAI's cookbook "How to count tokens with tiktoken"
/// (examples/How_to_count_tokens_with_tiktoken.ipynb: num_tokens_from_messages,
/// num_tokens_for_tools; gpt-3.5-turbo-0301 from its earlier revisions).
const MODEL_FRAMING: &[(&str, ChatFraming)] = &[(
    "gpt-3.5-turbo-0301",
    ChatFraming {
        tokens_per_message: 4,
        tokens_per_name: -1,
        ..CL100K_FRAMING
    },
)];

/// Tokens added per tool call of an assistant message (an estimate, see the module docs).
pub const TOKENS_PER_TOOL_CALL: i64 = 3;

impl ChatFraming {
    /// The framing of `model` (provider prefixes such as `openai/` ignored) counted with `enc`.
    pub fn for_model(model: &str, enc: Encoding) -> Self {
        let name = model.rsplit('/').next().unwrap_or(model);
        MODEL_FRAMING
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix))
            .map(|&(_, framing)| framing)
            .unwrap_or(match enc {
                Encoding::Cl100kBase => CL100K_FRAMING,
                // The open families frame with their chat template (`open_chat`), not this.
                _ => O200K_FRAMING,
            })
    }
}

/// Prompt tokens of a chat request: messages, their framing and the tool definitions, with the
/// framing of the request's model family.
pub fn count_chat_prompt(enc: Encoding, req: &ChatCompletionRequest) -> u64 {
    if let Some(count) = super::open_chat::count_chat_prompt(enc, req) {
        return count;
    }
    count_chat_prompt_with(ChatFraming::for_model(&req.model, enc), enc, req)
}

/// [`count_chat_prompt`] with an explicit framing.
pub fn count_chat_prompt_with(
    framing: ChatFraming,
    enc: Encoding,
    req: &ChatCompletionRequest,
) -> u64 {
    count_prompt(framing, &|text: &str| enc.count(text), req)
}

/// The prompt of a chat request for a model without a local tokenizer: the same framing, with
/// each text estimated by [`estimate_text_tokens`], plus every other request field's JSON (a
/// `response_format` schema is prompt too). Conservative, for the reservation.
pub fn estimate_chat_prompt(req: &ChatCompletionRequest) -> u64 {
    let text = count_prompt(O200K_FRAMING, &estimate_text_tokens, req);
    let extra = if req.extra.is_empty() {
        0
    } else {
        serde_json::to_string(&req.extra).map_or(0, |json| estimate_text_tokens(&json))
    };
    text.saturating_add(extra)
}

/// A conservative token estimate without a tokenizer: one token per 3 ASCII bytes (rounded up)
/// plus, for each other character, one token per UTF-8 byte after its first (accented letters,
/// Cyrillic, Greek: 1; CJK: 2; emoji: 3). English runs about 4 bytes per token in the BPE
/// tokenizers in use (Claude's a little denser); natural Chinese costs 0.6–1.2 tokens per
/// character in `o200k_base`/`cl100k_base` and rare characters up to 3, where the old rule of 4
/// bytes per token counted a Chinese character as ¾ of a token.
pub fn estimate_text_tokens(text: &str) -> u64 {
    let mut ascii = 0u64;
    let mut other = 0u64;
    for c in text.chars() {
        match c.len_utf8() {
            1 => ascii += 1,
            n => other += (n - 1) as u64,
        }
    }
    ascii.div_ceil(3).saturating_add(other)
}

fn count_prompt(
    framing: ChatFraming,
    counter: &dyn Fn(&str) -> u64,
    req: &ChatCompletionRequest,
) -> u64 {
    let count = |text: &str| i64::try_from(counter(text)).unwrap_or(i64::MAX);
    let mut total = framing.reply_priming;
    for m in &req.messages {
        total += framing.tokens_per_message + count(m.role.as_str());
        match &m.content {
            None => {}
            Some(MessageContent::Text(t)) => total += count(t),
            Some(MessageContent::Parts(parts)) => {
                for part in parts {
                    if let Some(text) = &part.text {
                        total = total.saturating_add(count(text));
                    }
                    if let Some(Value::String(refusal)) = part.extra.get("refusal") {
                        total = total.saturating_add(count(refusal));
                    }
                }
            }
        }
        if let Some(name) = &m.name {
            total += count(name) + framing.tokens_per_name;
        }
        for call in m.tool_calls.iter().flatten() {
            total +=
                TOKENS_PER_TOOL_CALL + count(&call.function.name) + count(&call.function.arguments);
        }
        if let Some(id) = &m.tool_call_id {
            total += count(id);
        }
    }

    let mut functions = 0usize;
    for tool in req.tools.iter().flatten() {
        match &tool.function {
            Some(f) if tool.kind == "function" => {
                functions += 1;
                total += count_function(
                    framing,
                    &count,
                    &f.name,
                    f.description.as_deref(),
                    f.parameters.as_ref(),
                );
            }
            _ => total += serde_json::to_string(tool).map_or(0, |json| count(&json)),
        }
    }
    // The legacy `functions` parameter is rendered like function tools.
    if let Some(Value::Array(legacy)) = req.extra.get("functions") {
        for f in legacy {
            if let Some(name) = f.get("name").and_then(Value::as_str) {
                functions += 1;
                total += count_function(
                    framing,
                    &count,
                    name,
                    f.get("description").and_then(Value::as_str),
                    f.get("parameters"),
                );
            }
        }
    }
    if functions > 0 {
        total += framing.func_end;
    }
    u64::try_from(total.max(0)).unwrap_or(0)
}

/// One function definition, without `func_end`.
fn count_function(
    framing: ChatFraming,
    count: &dyn Fn(&str) -> i64,
    name: &str,
    description: Option<&str>,
    parameters: Option<&Value>,
) -> i64 {
    let description = description.unwrap_or("");
    let mut total = framing.func_init
        + count(&format!(
            "{name}:{}",
            description.strip_suffix('.').unwrap_or(description)
        ));
    let properties = parameters
        .and_then(|p| p.get("properties"))
        .and_then(Value::as_object);
    if let Some(properties) = properties.filter(|p| !p.is_empty()) {
        total += framing.prop_init;
        for (key, property) in properties {
            total += framing.prop_key;
            if let Some(items) = property.get("enum").and_then(Value::as_array) {
                total += framing.enum_init;
                for item in items {
                    total += framing.enum_item + count(&scalar_text(item));
                }
            }
            let kind = property.get("type").map(scalar_text).unwrap_or_default();
            let desc = property
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            let desc = desc.strip_suffix('.').unwrap_or(desc);
            total += count(&format!("{key}:{kind}:{desc}"));
        }
    }
    total
}

/// A JSON value as it appears in the rendered definition: strings bare, anything else as JSON.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---- Non-text parts (see the module documentation) ----

/// How a model family prices one image, from the provider's published rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageRule {
    /// OpenAI's tiles: `low` costs `base`; `high` and `auto` cost `base` + `tile` per 512-px tile
    /// of the scaled image, at most [`MAX_TILES`] tiles.
    Tiles { base: u64, tile: u64 },
    /// OpenAI's 32-px patches, at most [`MAX_PATCHES`], times a multiplier in thousandths,
    /// whatever the detail.
    Patches { multiplier_milli: u64 },
    /// The same maximum for every image.
    Fixed(u64),
}

/// Most 512-px tiles an image covers once scaled to fit 2048 × 2048 and to 768 px on its short
/// side: 768 × 2048 → 2 × 4.
pub const MAX_TILES: u64 = 8;
/// Most 32-px patches of an image for OpenAI's patch models (larger images are scaled down).
pub const MAX_PATCHES: u64 = 1536;
/// Anthropic: an image of the largest size that is not scaled down (about 1.15 megapixels)
/// costs about 1,600 tokens (width × height / 750).
pub const ANTHROPIC_IMAGE_TOKENS: u64 = 1_600;
/// Gemini: 258 tokens per 768-px tile (2.x) or up to 1,120 per image at high media resolution
/// (3.x); twice the latter as the per-image maximum.
pub const GEMINI_IMAGE_TOKENS: u64 = 2_240;
/// Families without a published rule (open vision models behind OpenAI-compatible servers,
/// Ollama, Hugging Face): Qwen2-VL's default maximum of visual tokens per image.
pub const DEFAULT_IMAGE_TOKENS: u64 = 16_384;
/// Audio prompt tokens per second of audio: Gemini's published rate (32), above OpenAI's
/// (10 per second in the Realtime API).
pub const AUDIO_TOKENS_PER_SECOND: u64 = 32;
/// The lowest byte rate assumed for audio whose own header does not say: 8 kbit/s, MP3's lowest
/// bit rate. A lower rate means a longer duration, so this bounds the duration from above.
pub const MIN_AUDIO_BYTES_PER_SECOND: u64 = 1_000;
/// The highest byte rate a WAV header is believed: 96 kHz, 32-bit, stereo. A tampered header
/// cannot shrink the duration below size / this rate.
pub const MAX_WAV_BYTES_PER_SECOND: u64 = 768_000;

/// OpenAI model-name prefixes and how they price images, longest prefixes first.
/// Keep in sync with OpenAI's guide "Images and vision", section "Calculating costs". Where the
/// guide and measured bills disagree (gpt-4.1: tiles or patches), the larger rule is used.
const OPENAI_IMAGE_RULES: &[(&str, ImageRule)] = &[
    (
        "gpt-4.1-mini",
        ImageRule::Patches {
            multiplier_milli: 1_620,
        },
    ),
    (
        "gpt-4.1-nano",
        ImageRule::Patches {
            multiplier_milli: 2_460,
        },
    ),
    (
        "gpt-4.1",
        ImageRule::Patches {
            multiplier_milli: 1_000,
        },
    ),
    (
        "gpt-5-mini",
        ImageRule::Patches {
            multiplier_milli: 1_620,
        },
    ),
    (
        "gpt-5-nano",
        ImageRule::Patches {
            multiplier_milli: 2_460,
        },
    ),
    (
        "o4-mini",
        ImageRule::Patches {
            multiplier_milli: 1_720,
        },
    ),
    (
        "gpt-4o-mini",
        ImageRule::Tiles {
            base: 2_833,
            tile: 5_667,
        },
    ),
    (
        "gpt-4o",
        ImageRule::Tiles {
            base: 85,
            tile: 170,
        },
    ),
    (
        "chatgpt-4o",
        ImageRule::Tiles {
            base: 85,
            tile: 170,
        },
    ),
    (
        "gpt-4.5",
        ImageRule::Tiles {
            base: 85,
            tile: 170,
        },
    ),
    (
        "gpt-4-turbo",
        ImageRule::Tiles {
            base: 85,
            tile: 170,
        },
    ),
    (
        "gpt-4-vision",
        ImageRule::Tiles {
            base: 85,
            tile: 170,
        },
    ),
    (
        "gpt-5",
        ImageRule::Tiles {
            base: 70,
            tile: 140,
        },
    ),
    (
        "o1",
        ImageRule::Tiles {
            base: 75,
            tile: 150,
        },
    ),
    (
        "o3",
        ImageRule::Tiles {
            base: 75,
            tile: 150,
        },
    ),
    (
        "computer-use",
        ImageRule::Tiles {
            base: 65,
            tile: 129,
        },
    ),
];

impl ImageRule {
    /// Tokens of one image with `detail` (`low`, `high`, `auto` or none), its size unknown.
    pub fn tokens(self, detail: Option<&str>) -> u64 {
        match self {
            ImageRule::Tiles { base, .. } if detail == Some("low") => base,
            ImageRule::Tiles { base, tile } => base.saturating_add(tile.saturating_mul(MAX_TILES)),
            ImageRule::Patches { multiplier_milli } => {
                MAX_PATCHES.saturating_mul(multiplier_milli).div_ceil(1000)
            }
            ImageRule::Fixed(tokens) => tokens,
        }
    }

    /// The most any image can cost.
    pub fn worst(self) -> u64 {
        self.tokens(Some("high"))
    }
}

/// How one model prices the non-text parts of a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaRules {
    pub image: ImageRule,
    pub audio_tokens_per_second: u64,
}

impl MediaRules {
    /// The rules of a model served by a provider of `kind`, known by any of `names` (its
    /// upstream name and its public name; provider prefixes such as `openai/` are ignored).
    /// A name recognised as an OpenAI, Claude or Gemini model decides; otherwise the provider
    /// kind does.
    pub fn for_model(kind: ProviderKind, names: &[&str]) -> Self {
        let by_name = names.iter().find_map(|name| {
            let name = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
            if name.starts_with("claude") {
                return Some(ImageRule::Fixed(ANTHROPIC_IMAGE_TOKENS));
            }
            if name.starts_with("gemini") {
                return Some(ImageRule::Fixed(GEMINI_IMAGE_TOKENS));
            }
            OPENAI_IMAGE_RULES
                .iter()
                .find(|(prefix, _)| name.starts_with(prefix))
                .map(|&(_, rule)| rule)
        });
        let image = by_name.unwrap_or(match kind {
            ProviderKind::Anthropic => ImageRule::Fixed(ANTHROPIC_IMAGE_TOKENS),
            ProviderKind::Gemini => ImageRule::Fixed(GEMINI_IMAGE_TOKENS),
            // The echo model behaves like gpt-4o.
            ProviderKind::Echo => ImageRule::Tiles {
                base: 85,
                tile: 170,
            },
            ProviderKind::OpenAi
            | ProviderKind::Azure
            | ProviderKind::Ollama
            | ProviderKind::HuggingFace => ImageRule::Fixed(DEFAULT_IMAGE_TOKENS),
        });
        MediaRules {
            image,
            audio_tokens_per_second: AUDIO_TOKENS_PER_SECOND,
        }
    }
}

/// The prompt tokens a reservation must cover: the text ([`count_chat_prompt`] with the model's
/// tokenizer, else [`estimate_chat_prompt`]) plus the non-text parts ([`count_media`]).
///
/// # Errors
///
/// A 400 naming the part (`messages[i].content[j]…`) that cannot be priced.
pub fn prompt_tokens_for_reservation(
    encoding: Option<Encoding>,
    media: MediaRules,
    req: &ChatCompletionRequest,
) -> Result<u64, GatewayError> {
    let text = match encoding {
        Some(enc) => count_chat_prompt(enc, req),
        None => estimate_chat_prompt(req),
    };
    Ok(text.saturating_add(count_media(media, req)?))
}

/// Tokens of every non-text content part of the request's messages (see the module docs).
///
/// # Errors
///
/// A 400 naming the first part that cannot be priced: an unknown part type, a `file` given only
/// by `file_id`, an `input_audio` without data.
pub fn count_media(media: MediaRules, req: &ChatCompletionRequest) -> Result<u64, GatewayError> {
    let mut total = 0u64;
    for (i, m) in req.messages.iter().enumerate() {
        let Some(MessageContent::Parts(parts)) = &m.content else {
            continue;
        };
        for (j, part) in parts.iter().enumerate() {
            let at = format!("messages[{i}].content[{j}]");
            total = total.saturating_add(part_tokens(media, part, &at)?);
        }
    }
    Ok(total)
}

fn part_tokens(media: MediaRules, part: &ContentPart, at: &str) -> Result<u64, GatewayError> {
    let field = |name: &str| part.extra.get(name);
    match part.kind.as_str() {
        "text" | "refusal" => Ok(0),
        "image_url" => {
            let detail = field("image_url")
                .and_then(|i| i.get("detail"))
                .and_then(Value::as_str);
            Ok(media.image.tokens(detail))
        }
        "input_audio" => {
            let audio = field("input_audio");
            let data = audio
                .and_then(|a| a.get("data"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    GatewayError::invalid_param(
                        &format!("{at}.input_audio.data"),
                        "An `input_audio` part needs its base64 `data`.",
                    )
                })?;
            let format = audio
                .and_then(|a| a.get("format"))
                .and_then(Value::as_str)
                .unwrap_or("");
            Ok(audio_tokens(media.audio_tokens_per_second, format, data))
        }
        "file" => {
            let file = field("file");
            match file
                .and_then(|f| f.get("file_data"))
                .and_then(Value::as_str)
            {
                Some(data) => Ok(file_tokens(media.image.worst(), data)),
                None => Err(GatewayError::invalid_param(
                    &format!("{at}.file"),
                    "This gateway prices files before the call and cannot see a file given by \
                     `file_id`: send its content as `file_data` instead.",
                )),
            }
        }
        other => Err(GatewayError::invalid_param(
            &format!("{at}.type"),
            format!(
                "Content parts of type `{other}` cannot be priced by this gateway; use `text`, \
                 `image_url`, `input_audio` or `file`."
            ),
        )),
    }
}

/// The base64 payload of a data URL, or the text itself when it is not one.
fn base64_payload(data: &str) -> &str {
    match data.strip_prefix("data:") {
        Some(rest) => rest.split_once(',').map_or("", |(_, payload)| payload),
        None => data,
    }
}

fn base64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Bytes that base64 `payload` decodes to (standard or URL-safe alphabet; padding, whitespace
/// and stray characters ignored).
fn decoded_len(payload: &str) -> u64 {
    let digits = payload
        .bytes()
        .filter(|&b| base64_value(b).is_some())
        .count() as u64;
    digits * 3 / 4
}

/// Decodes base64 `payload` one digit at a time, handing each byte to `sink`, stopping after
/// `limit` bytes when given. Characters outside the alphabet are skipped.
fn decode_base64(payload: &str, limit: Option<usize>, mut sink: impl FnMut(u8)) {
    let mut acc = 0u32;
    let mut bits = 0u32;
    let mut emitted = 0usize;
    for v in payload.bytes().filter_map(base64_value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            sink(((acc >> bits) & 0xff) as u8);
            emitted += 1;
            if limit.is_some_and(|l| emitted >= l) {
                return;
            }
        }
    }
}

/// Audio tokens: the longest duration `data` can have × `per_second`.
fn audio_tokens(per_second: u64, format: &str, data: &str) -> u64 {
    let payload = base64_payload(data);
    let bytes = decoded_len(payload);
    let byte_rate = if format.eq_ignore_ascii_case("wav") {
        wav_byte_rate(payload)
    } else {
        None
    };
    let byte_rate = byte_rate
        .unwrap_or(MIN_AUDIO_BYTES_PER_SECOND)
        .clamp(MIN_AUDIO_BYTES_PER_SECOND, MAX_WAV_BYTES_PER_SECOND);
    let tokens = u128::from(bytes) * u128::from(per_second);
    u64::try_from(tokens.div_ceil(u128::from(byte_rate))).unwrap_or(u64::MAX)
}

/// The byte rate a WAV file's `fmt ` chunk declares (bytes 28..32 of a canonical header).
fn wav_byte_rate(payload: &str) -> Option<u64> {
    let mut header = Vec::with_capacity(32);
    decode_base64(payload, Some(32), |b| header.push(b));
    if header.get(0..4)? != b"RIFF" || header.get(8..16)? != b"WAVEfmt " {
        return None;
    }
    let rate = header.get(28..32)?;
    let rate = u32::from_le_bytes([*rate.first()?, *rate.get(1)?, *rate.get(2)?, *rate.get(3)?]);
    Some(u64::from(rate))
}

/// File tokens: one per decoded byte, plus `page_tokens` per page object of a PDF.
fn file_tokens(page_tokens: u64, data: &str) -> u64 {
    let payload = base64_payload(data);
    let bytes = decoded_len(payload);
    let mut head = Vec::with_capacity(5);
    decode_base64(payload, Some(5), |b| head.push(b));
    let pages = if head == b"%PDF-" {
        count_pdf_pages(payload)
    } else {
        0
    };
    bytes.saturating_add(pages.saturating_mul(page_tokens))
}

/// Page objects of a PDF: `/Type /Page` (with or without the space), not `/Pages`. Pages inside
/// compressed object streams are not seen; their bytes are still counted.
fn count_pdf_pages(payload: &str) -> u64 {
    const KEY: &[u8] = b"/Type";
    const PAGE: &[u8] = b"/Page";
    // A small window over the decoded bytes: enough for `/Type`, spaces, `/Page` and one more.
    let mut window: Vec<u8> = Vec::with_capacity(32);
    let mut pages = 0u64;
    let check = |window: &[u8]| -> bool {
        let Some(rest) = window.strip_prefix(KEY) else {
            return false;
        };
        let start = rest
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let rest = rest.get(start..).unwrap_or_default();
        match rest.strip_prefix(PAGE) {
            Some(after) => match after.first() {
                Some(next) => !next.is_ascii_alphanumeric(),
                None => false,
            },
            None => false,
        }
    };
    decode_base64(payload, None, |b| {
        if window.len() == 24 {
            if check(&window) {
                pages += 1;
            }
            window.remove(0);
        }
        window.push(b);
    });
    // The last bytes, whose positions never reached the front of the window.
    for start in 0..window.len() {
        if check(window.get(start..).unwrap_or_default()) {
            pages += 1;
        }
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> ChatCompletionRequest {
        ChatCompletionRequest::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn message_framing_follows_the_cookbook() {
        let req =
            request(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello world"}]}"#);
        // 3 (message) + 1 ("user") + 2 ("hello world") + 3 (priming)
        assert_eq!(count_chat_prompt(Encoding::O200kBase, &req), 9);
        let named = request(
            r#"{"model":"gpt-4o","messages":[{"role":"user","name":"bob","content":"hello world"}]}"#,
        );
        assert_eq!(count_chat_prompt(Encoding::O200kBase, &named), 9 + 1 + 1);
        // gpt-3.5-turbo-0301: 4 per message, the name replaces the role (-1).
        let old = request(
            r#"{"model":"gpt-3.5-turbo-0301","messages":[{"role":"user","name":"bob","content":"hello world"}]}"#,
        );
        assert_eq!(
            count_chat_prompt(Encoding::Cl100kBase, &old),
            4 + 1 + 2 + 1 - 1 + 3
        );
    }

    /// The cookbook's own examples, whose totals it verified against the OpenAI API.
    const COOKBOOK_MESSAGES: &str = r#"[
        {"role":"system","content":"You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
        {"role":"system","name":"example_user","content":"New synergies will help drive top-line growth."},
        {"role":"system","name":"example_assistant","content":"Things working well together will increase revenue."},
        {"role":"system","name":"example_user","content":"Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
        {"role":"system","name":"example_assistant","content":"Let's talk later when we're less busy about how to do better."},
        {"role":"user","content":"This late pivot means we don't have time to boil the ocean for the client deliverable."}]"#;

    #[test]
    fn cookbook_message_example_matches_the_api() {
        let body = |model: &str| format!(r#"{{"model":"{model}","messages":{COOKBOOK_MESSAGES}}}"#);
        assert_eq!(
            count_chat_prompt(Encoding::Cl100kBase, &request(&body("gpt-4"))),
            129
        );
        assert_eq!(
            count_chat_prompt(Encoding::Cl100kBase, &request(&body("gpt-3.5-turbo"))),
            129
        );
        assert_eq!(
            count_chat_prompt(Encoding::O200kBase, &request(&body("gpt-4o"))),
            124
        );
        assert_eq!(
            count_chat_prompt(Encoding::O200kBase, &request(&body("gpt-4o-mini"))),
            124
        );
    }

    const COOKBOOK_TOOLS: &str = r#"[{"type":"function","function":{
        "name":"get_current_weather","description":"Get the current weather in a given location",
        "parameters":{"type":"object","properties":{
            "location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"},
            "unit":{"type":"string","description":"The unit of temperature to return","enum":["celsius","fahrenheit"]}},
        "required":["location"]}}}]"#;

    #[test]
    fn cookbook_tools_example_matches_the_api() {
        let body = |model: &str| {
            format!(
                r#"{{"model":"{model}","tools":{COOKBOOK_TOOLS},"messages":[
                {{"role":"system","content":"You are a helpful assistant that can answer to questions about the weather."}},
                {{"role":"user","content":"What's the weather like in San Francisco?"}}]}}"#
            )
        };
        assert_eq!(
            count_chat_prompt(Encoding::Cl100kBase, &request(&body("gpt-4"))),
            105
        );
        assert_eq!(
            count_chat_prompt(Encoding::Cl100kBase, &request(&body("gpt-3.5-turbo"))),
            105
        );
        assert_eq!(
            count_chat_prompt(Encoding::O200kBase, &request(&body("gpt-4o"))),
            101
        );
        assert_eq!(
            count_chat_prompt(Encoding::O200kBase, &request(&body("gpt-4o-mini"))),
            101
        );
    }

    #[test]
    fn legacy_functions_count_like_tools() {
        let tools = request(&format!(
            r#"{{"model":"gpt-4o","tools":{COOKBOOK_TOOLS},"messages":[{{"role":"user","content":"hi"}}]}}"#
        ));
        let functions: Value = serde_json::from_str(COOKBOOK_TOOLS).unwrap();
        let legacy = request(&format!(
            r#"{{"model":"gpt-4o","functions":[{}],"messages":[{{"role":"user","content":"hi"}}]}}"#,
            functions[0]["function"]
        ));
        assert_eq!(
            count_chat_prompt(Encoding::O200kBase, &tools),
            count_chat_prompt(Encoding::O200kBase, &legacy)
        );
    }

    #[test]
    fn tool_calls_and_other_tools_are_counted() {
        let plain =
            request(r#"{"model":"gpt-4o","messages":[{"role":"assistant","content":null}]}"#);
        let with_call = request(
            r#"{"model":"gpt-4o","messages":[{"role":"assistant","content":null,"tool_calls":[
            {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}]}"#,
        );
        let enc = Encoding::O200kBase;
        assert_eq!(
            count_chat_prompt(enc, &with_call) - count_chat_prompt(enc, &plain),
            3 + enc.count("get_weather") + enc.count("{\"city\":\"Paris\"}")
        );
        let custom = request(
            r#"{"model":"gpt-4o","tools":[{"type":"web_search"}],"messages":[{"role":"assistant","content":null}]}"#,
        );
        assert_eq!(
            count_chat_prompt(enc, &custom) - count_chat_prompt(enc, &plain),
            enc.count(r#"{"type":"web_search"}"#)
        );
    }

    // ---- non-text parts ----

    fn b64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn with_parts(model: &str, parts: &str) -> ChatCompletionRequest {
        request(&format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":[{{"type":"text","text":"what is this?"}},{parts}]}}]}}"#
        ))
    }

    fn media(kind: ProviderKind, model: &str) -> MediaRules {
        MediaRules::for_model(kind, &[model])
    }

    const IMAGE_HIGH: &str =
        r#"{"type":"image_url","image_url":{"url":"https://x/a.png","detail":"high"}}"#;
    const IMAGE_LOW: &str =
        r#"{"type":"image_url","image_url":{"url":"https://x/a.png","detail":"low"}}"#;
    const IMAGE_AUTO: &str = r#"{"type":"image_url","image_url":{"url":"https://x/a.png"}}"#;

    #[test]
    fn images_are_priced_by_detail_and_family() {
        let gpt4o = media(ProviderKind::OpenAi, "gpt-4o");
        let count =
            |rules, model: &str, part: &str| count_media(rules, &with_parts(model, part)).unwrap();
        // Tiles: low = 85; high and auto = 85 + 8 × 170 (the most tiles a scaled image covers).
        assert_eq!(count(gpt4o, "gpt-4o", IMAGE_LOW), 85);
        assert_eq!(count(gpt4o, "gpt-4o", IMAGE_HIGH), 85 + 8 * 170);
        assert_eq!(count(gpt4o, "gpt-4o", IMAGE_AUTO), 1445);
        // gpt-4o-mini's multiplied tiles.
        let mini = media(ProviderKind::OpenAi, "gpt-4o-mini-2024-07-18");
        assert_eq!(count(mini, "gpt-4o-mini", IMAGE_LOW), 2833);
        assert_eq!(count(mini, "gpt-4o-mini", IMAGE_HIGH), 2833 + 8 * 5667);
        // Patches: 1536 × multiplier, whatever the detail.
        let nano = media(ProviderKind::Azure, "gpt-4.1-nano");
        assert_eq!(count(nano, "m", IMAGE_LOW), 3779); // 1536 × 2.46 = 3778.56
        assert_eq!(count(nano, "m", IMAGE_HIGH), 3779);
        // Two images cost twice one; text parts nothing here.
        let two = format!("{IMAGE_HIGH},{IMAGE_LOW}");
        assert_eq!(count(gpt4o, "gpt-4o", &two), 1445 + 85);
        // Other families: fixed maxima, by name before kind.
        assert_eq!(
            media(ProviderKind::Anthropic, "claude-sonnet-4-5").image,
            ImageRule::Fixed(ANTHROPIC_IMAGE_TOKENS)
        );
        assert_eq!(
            media(
                ProviderKind::OpenAi,
                "openrouter/anthropic/claude-3.5-sonnet"
            )
            .image,
            ImageRule::Fixed(ANTHROPIC_IMAGE_TOKENS)
        );
        assert_eq!(
            media(ProviderKind::Gemini, "gemini-2.5-flash").image,
            ImageRule::Fixed(GEMINI_IMAGE_TOKENS)
        );
        assert_eq!(
            media(ProviderKind::Ollama, "llava:13b").image,
            ImageRule::Fixed(DEFAULT_IMAGE_TOKENS)
        );
        assert_eq!(
            media(ProviderKind::Gemini, "my-deployment").image,
            ImageRule::Fixed(GEMINI_IMAGE_TOKENS)
        );
        // An Azure deployment with a made-up name is known by the model's public name.
        assert_eq!(
            MediaRules::for_model(ProviderKind::Azure, &["prod-vision", "gpt-4o"]).image,
            ImageRule::Tiles {
                base: 85,
                tile: 170
            }
        );
        assert_eq!(
            media(ProviderKind::OpenAi, "gpt-4.1-mini").image,
            ImageRule::Patches {
                multiplier_milli: 1620
            }
        );
        assert_eq!(
            media(ProviderKind::OpenAi, "o1-2024-12-17").image,
            ImageRule::Tiles {
                base: 75,
                tile: 150
            }
        );
    }

    #[test]
    fn the_reservation_counts_images_on_top_of_text() {
        let req = with_parts("gpt-4o", IMAGE_HIGH);
        let rules = media(ProviderKind::OpenAi, "gpt-4o");
        let text = count_chat_prompt(Encoding::O200kBase, &req);
        assert_eq!(
            prompt_tokens_for_reservation(Some(Encoding::O200kBase), rules, &req).unwrap(),
            text + 1445
        );
        // Forty tiny image URLs are no longer ~100 tokens.
        let forty = vec![IMAGE_HIGH; 40].join(",");
        let req = with_parts("gpt-4o", &forty);
        assert!(
            prompt_tokens_for_reservation(Some(Encoding::O200kBase), rules, &req).unwrap()
                >= 40 * 1445
        );
    }

    #[test]
    fn audio_is_priced_by_its_longest_duration() {
        let rules = media(ProviderKind::OpenAi, "gpt-4o-audio-preview");
        // 10,000 bytes of MP3: at most 10 s at 8 kbit/s → 320 tokens.
        let mp3 = b64(&[0x55; 10_000]);
        let part =
            format!(r#"{{"type":"input_audio","input_audio":{{"data":"{mp3}","format":"mp3"}}}}"#);
        assert_eq!(count_media(rules, &with_parts("m", &part)).unwrap(), 320);
        // A WAV header declaring 16 kHz 16-bit mono (32,000 bytes/s): 64,044 bytes ≈ 2 s → 65.
        let mut wav = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0".to_vec();
        wav.extend_from_slice(&32_000u32.to_le_bytes());
        wav.resize(64_044, 0);
        let part = format!(
            r#"{{"type":"input_audio","input_audio":{{"data":"{}","format":"wav"}}}}"#,
            b64(&wav)
        );
        assert_eq!(
            count_media(rules, &with_parts("m", &part)).unwrap(),
            (64_044u64 * 32).div_ceil(32_000)
        );
        // A header claiming an absurd rate is believed only up to 768,000 bytes/s.
        let mut fast = wav.clone();
        fast[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        let part = format!(
            r#"{{"type":"input_audio","input_audio":{{"data":"{}","format":"wav"}}}}"#,
            b64(&fast)
        );
        assert_eq!(
            count_media(rules, &with_parts("m", &part)).unwrap(),
            (64_044u64 * 32).div_ceil(768_000)
        );
        // A WAV without a header is priced like MP3.
        let part = format!(
            r#"{{"type":"input_audio","input_audio":{{"data":"{}","format":"wav"}}}}"#,
            b64(&[0u8; 3_000])
        );
        assert_eq!(count_media(rules, &with_parts("m", &part)).unwrap(), 96);
        // No data: refused, naming the field.
        let err = count_media(
            rules,
            &with_parts(
                "m",
                r#"{"type":"input_audio","input_audio":{"format":"mp3"}}"#,
            ),
        )
        .unwrap_err();
        assert_eq!(
            err.param.as_deref(),
            Some("messages[0].content[1].input_audio.data")
        );
    }

    #[test]
    fn files_are_priced_by_size_and_pdf_pages() {
        let rules = media(ProviderKind::OpenAi, "gpt-4o");
        let text_file = b64(&[b'a'; 3_000]);
        let part = format!(
            r#"{{"type":"file","file":{{"filename":"a.txt","file_data":"data:text/plain;base64,{text_file}"}}}}"#
        );
        assert_eq!(
            count_media(rules, &with_parts("gpt-4o", &part)).unwrap(),
            3_000
        );
        // A PDF with three page objects (one `/Pages` tree that is not a page).
        let pdf = b"%PDF-1.4\n1 0 obj <</Type /Pages /Count 3>> endobj\n\
                    2 0 obj <</Type /Page>> endobj\n3 0 obj <</Type/Page /Parent 1 0 R>> endobj\n\
                    4 0 obj <</Type  /Page\n>> endobj\ntrailer\n%%EOF\n";
        let part = format!(
            r#"{{"type":"file","file":{{"filename":"a.pdf","file_data":"data:application/pdf;base64,{}"}}}}"#,
            b64(pdf)
        );
        assert_eq!(
            count_media(rules, &with_parts("gpt-4o", &part)).unwrap(),
            pdf.len() as u64 + 3 * 1445
        );
        // A page object in the very last bytes is found too.
        let tail = b"%PDF-1.7\n<</Type/Page>>";
        let part = format!(
            r#"{{"type":"file","file":{{"file_data":"data:application/pdf;base64,{}"}}}}"#,
            b64(tail)
        );
        assert_eq!(
            count_media(rules, &with_parts("gpt-4o", &part)).unwrap(),
            tail.len() as u64 + 1445
        );
        // A file the gateway cannot see is refused.
        let err = count_media(
            rules,
            &with_parts("gpt-4o", r#"{"type":"file","file":{"file_id":"file-abc"}}"#),
        )
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[0].content[1].file"));
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn unknown_part_types_are_refused() {
        let rules = media(ProviderKind::OpenAi, "qwen2-vl");
        let err = count_media(
            rules,
            &with_parts(
                "m",
                r#"{"type":"video_url","video_url":{"url":"https://x/v.mp4"}}"#,
            ),
        )
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[0].content[1].type"));
        assert!(err.message.contains("video_url"));
        // Text and refusal parts are fine (their text is counted with the messages).
        let ok = request(
            r#"{"model":"m","messages":[{"role":"assistant","content":[{"type":"refusal","refusal":"no way"}]}]}"#,
        );
        assert_eq!(count_media(rules, &ok).unwrap(), 0);
        assert!(
            count_chat_prompt(Encoding::O200kBase, &ok)
                > count_chat_prompt(
                    Encoding::O200kBase,
                    &request(r#"{"model":"m","messages":[{"role":"assistant","content":[]}]}"#)
                )
        );
    }

    #[test]
    fn the_estimate_without_a_tokenizer_is_conservative_for_cjk() {
        // A Chinese character is two tokens, ASCII one per 3 bytes, é one, an emoji three.
        assert_eq!(estimate_text_tokens("你好世界"), 8);
        assert_eq!(estimate_text_tokens("hello world!"), 4);
        assert_eq!(estimate_text_tokens("héllo"), 2 + 1);
        assert_eq!(estimate_text_tokens("🎉"), 3);
        // Above what o200k and cl100k count for natural text of either kind.
        let zh = "人工智能正在改变我们的生活方式，机器学习和深度学习技术被广泛应用于各个领域。"
            .repeat(20);
        let en = "The quick brown fox jumps over the lazy dog, again and again. ".repeat(20);
        for text in [zh.as_str(), en.as_str()] {
            for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
                assert!(estimate_text_tokens(text) >= enc.count(text), "{enc:?}");
            }
        }
        // The old rule (4 bytes per token) counted 3 bytes of a CJK character as ¾ token.
        assert!(estimate_text_tokens(&zh) > (zh.len() as u64).div_ceil(4));
        // The chat estimate counts messages with the framing, and other fields' JSON.
        let req = request(&format!(
            r#"{{"model":"claude-x","messages":[{{"role":"user","content":"{zh}"}}],
               "response_format":{{"type":"json_schema","json_schema":{{"name":"a","schema":{{}}}}}}}}"#
        ));
        let bare = request(&format!(
            r#"{{"model":"claude-x","messages":[{{"role":"user","content":"{zh}"}}]}}"#
        ));
        assert!(estimate_chat_prompt(&req) > estimate_chat_prompt(&bare));
        assert!(estimate_chat_prompt(&bare) >= estimate_text_tokens(&zh) + 3 + 3);
        // Without a tokenizer the reservation uses the estimate, media on top.
        let rules = media(ProviderKind::Anthropic, "claude-x");
        let with_image = with_parts("claude-x", IMAGE_AUTO);
        assert_eq!(
            prompt_tokens_for_reservation(None, rules, &with_image).unwrap(),
            estimate_chat_prompt(&with_image) + ANTHROPIC_IMAGE_TOKENS
        );
    }
}
