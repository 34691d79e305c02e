//! Anthropic's Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`) as an
//! inbound codec over chat completions.
//!
//! Follows the Messages API reference (<https://docs.anthropic.com/en/api/messages>), the
//! streaming guide (<https://docs.anthropic.com/en/docs/build-with-claude/streaming>), extended
//! thinking (<https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking>) and the
//! errors page (<https://docs.anthropic.com/en/api/errors>); the fixtures under
//! `tests/fixtures/messages/` name the page each follows.
//!
//! **The request, typed.** [`MessagesRequest`] models the body with every block type the
//! gateway translates: `text`, `image`, `document`, `tool_use`, `tool_result`, `thinking` (with
//! its `signature`) and `redacted_thinking` (its `data`). Every field Tollgate does not model
//! (`cache_control`, `citations`, new parameters) is kept in an `extra` map and block types it
//! does not know are kept whole ([`Block::Other`]), so serialising a decoded request gives the
//! client's request back, signatures untouched (only a modelled field sent as `null` is
//! omitted): what a native passthrough to an `anthropic` provider needs
//! ([`MessagesRequest::to_native`]).
//!
//! **Request → chat** ([`MessagesRequest::to_chat`], for every other provider kind).
//! * `system` (a string or text blocks) → one system message; text blocks of one message are
//!   joined with a blank line when a message holds only text, else they are text parts.
//! * user blocks: `text` → text; `image` (base64 → data URL, `url`) → `image_url`; `document`
//!   (base64 PDF → chat `file` part, plain-text and content sources → text); `tool_result` → a
//!   `tool` message before the turn's other content (text of its content; its images and
//!   documents follow in the user message, as chat tool messages carry text only; `is_error`
//!   has no chat equivalent and is dropped).
//! * assistant blocks: `text` → content, `tool_use` → `tool_calls` (input as JSON text);
//!   `thinking` and `redacted_thinking` are dropped (no chat provider can check a signature; a
//!   turn of nothing but thinking is left out).
//! * `tools` (custom tools) → function tools; `tool_choice` `auto`/`any`/`tool`/`none` →
//!   `auto`/`required`/`{function}`/`none`, `disable_parallel_tool_use` →
//!   `parallel_tool_calls: false`; `max_tokens` → `max_completion_tokens`; `stop_sequences` →
//!   `stop`; `temperature`, `top_p` carry over; `metadata.user_id` → `user`; structured output
//!   (`output_format`, `output_config.format`, JSON schema) → `response_format`; a stream asks
//!   for usage.
//! * Accepted and dropped: `cache_control` everywhere (chat providers cache on their own or not
//!   at all), `thinking` and `output_config.effort` (a chat model reasons as it is configured),
//!   `top_k`, `service_tier`, `betas`, `diagnostics`, `context_management`, tool hints
//!   (`eager_input_streaming`, `input_examples`, `defer_loading`, `allowed_callers`),
//!   `tool_reference` blocks in tool results.
//! * A 400 in Anthropic's error shape, naming the field: server tools (`web_search_…`, `bash_…`,
//!   …), `container`, `mcp_servers`, file ids, document URLs, unknown block types and unknown
//!   top-level fields.
//!
//! **Chat → message.** Content blocks: `thinking` (from `reasoning_content`, with an empty
//! signature: only Anthropic mints them), `text` (content, then a refusal), `tool_use` (input
//! parsed from the arguments; arguments that are not JSON are passed on as a string).
//! `stop_reason`: `length` → `max_tokens`, `tool_calls` → `tool_use`, `content_filter` →
//! `refusal`, else `end_turn` (`tool_use` when the message calls tools: some providers say
//! `stop`). `stop_sequence` is always null (chat does not say which sequence matched). Usage:
//! `input_tokens` is the prompt without cache reads (Anthropic counts them apart),
//! `cache_read_input_tokens` is chat's `cached_tokens`, `cache_creation_input_tokens` the cache
//! writes an `anthropic` route reported (with their `cache_creation` split by lifetime; 0 for
//! other chat providers, which report none), `output_tokens`.
//!
//! **Stream.** `message_start` (usage with the gateway's input count), `ping`, then per content
//! block `content_block_start`, `content_block_delta`s (`thinking_delta`, `signature_delta`
//! when an OpenRouter-style `reasoning_details` carries a signature, `text_delta`,
//! `input_json_delta`) and `content_block_stop`; then `message_delta` (`stop_reason` and the
//! final usage: input, cache and output counts) and `message_stop`. [`StreamEnd::Truncated`]
//! stops with `max_tokens`. A broken upstream ([`StreamEnd::Failed`]) ends the stream with one
//! `error` event and nothing after it, as Anthropic does. Blocks follow one another; argument
//! text an upstream sends for a tool call whose block is already closed (interleaved calls,
//! which no known provider sends) cannot be placed and is dropped. A call is known by its chat
//! `index`, and a delta naming a new call `id` at a used index starts a new `tool_use` block.
//!
//! **Errors.** `{"type":"error","error":{"type","message"},"request_id"}`; the HTTP status stays
//! Tollgate's ([`GatewayError::status`]); the type is Anthropic's for it: 400
//! `invalid_request_error`, 401 `authentication_error`, 402 `billing_error`, 403
//! `permission_error`, 404 `not_found_error`, 413 `request_too_large`, 429 `rate_limit_error`,
//! 500/502 `api_error`, 503 `overloaded_error`, 504 `timeout_error`.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};

use super::{data_url, reasoning_of, unknown_key, Event, StreamEnd};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatMessage, ContentPart,
    FunctionCall, FunctionDef, MessageContent, Role, StreamOptions, Tool, ToolCall, Usage,
};

/// A `POST /v1/messages` (or `count_tokens`) body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub messages: Vec<InputMessage>,
    /// Required by `POST /v1/messages`; absent from `count_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Value>,
    /// Every other field (`temperature`, `top_p`, `top_k`, betas, …), as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputMessage {
    pub role: MessageRole,
    pub content: Content,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A string, or content blocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

impl<'de> Deserialize<'de> for Content {
    /// By hand rather than `untagged`, so that an invalid block's own error reaches the client.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Content::Text(s)),
            v @ Value::Array(_) => serde_json::from_value(v)
                .map(Content::Blocks)
                .map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom(
                "content must be a string or an array of content blocks",
            )),
        }
    }
}

/// A content block: one Tollgate models, or any other, kept whole.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Block {
    Known(KnownBlock),
    Other(Value),
}

/// The block types Tollgate translates. `extra` keeps what is not modelled (`cache_control`,
/// `citations`, `title`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KnownBlock {
    Text {
        text: String,
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
    Image {
        source: Value,
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
    Document {
        source: Value,
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Content>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
    /// Extended thinking; `signature` must go back to Anthropic unchanged.
    Thinking {
        thinking: String,
        signature: String,
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
    /// Thinking Anthropic encrypted; `data` must go back unchanged.
    RedactedThinking {
        data: String,
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
}

const KNOWN_BLOCKS: &[&str] = &[
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
];

impl<'de> Deserialize<'de> for Block {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        match value.get("type").and_then(Value::as_str) {
            Some(t) if KNOWN_BLOCKS.contains(&t) => serde_json::from_value(value)
                .map(Block::Known)
                .map_err(serde::de::Error::custom),
            _ => Ok(Block::Other(value)),
        }
    }
}

fn bad(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_param(param, message)
}

/// Parses a `POST /v1/messages` body (`max_tokens` required).
pub fn decode_request(body: &[u8]) -> Result<MessagesRequest, GatewayError> {
    decode(body, true)
}

/// Parses a `POST /v1/messages/count_tokens` body (no `max_tokens`).
pub fn decode_count_tokens(body: &[u8]) -> Result<MessagesRequest, GatewayError> {
    decode(body, false)
}

fn decode(body: &[u8], needs_max_tokens: bool) -> Result<MessagesRequest, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("The request body is not valid JSON: {e}"))
    })?;
    let Value::Object(map) = &value else {
        return Err(GatewayError::invalid_request(
            "The request body must be a JSON object.",
        ));
    };
    match map.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => {}
        _ => return Err(bad("model", "model: Field required (a non-empty string).")),
    }
    if let Some((field, why)) = crate::core::plugins::chat_only_field(map) {
        return Err(bad(field, why));
    }
    match map.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => {}
        Some(Value::Array(_)) => {
            return Err(bad(
                "messages",
                "messages: at least one message is required.",
            ))
        }
        _ => return Err(bad("messages", "messages: Field required (an array).")),
    }
    match map.get("max_tokens") {
        None | Some(Value::Null) if needs_max_tokens => {
            return Err(bad("max_tokens", "max_tokens: Field required."))
        }
        None | Some(Value::Null) => {}
        Some(v) if v.as_u64().is_some_and(|n| n >= 1) => {}
        Some(_) => return Err(bad("max_tokens", "max_tokens: must be a positive integer.")),
    }
    let req: MessagesRequest = serde_json::from_value(value)
        .map_err(|e| GatewayError::invalid_request(format!("Invalid request: {e}")))?;
    Ok(req)
}

/// Top-level fields [`MessagesRequest::to_chat`] translates or drops.
const TRANSLATED_FIELDS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "service_tier",
    "betas",
    "diagnostics",
    "context_management",
    "output_config",
    "output_format",
];

/// Tool fields that are hints with no chat equivalent.
const TOOL_FIELDS: &[&str] = &[
    "type",
    "name",
    "description",
    "input_schema",
    "cache_control",
    "eager_input_streaming",
    "input_examples",
    "defer_loading",
    "allowed_callers",
    "strict",
];

/// What chat messages are being built from.
struct Builder {
    messages: Vec<ChatMessage>,
}

fn text_message(role: Role, texts: Vec<String>, separator: &str) -> ChatMessage {
    ChatMessage::text(role, texts.join(separator))
}

fn parts_message(role: Role, parts: Vec<ContentPart>) -> ChatMessage {
    if parts.iter().all(|p| p.kind == "text") {
        let texts = parts.into_iter().filter_map(|p| p.text).collect();
        return text_message(role, texts, "\n\n");
    }
    let mut m = ChatMessage::text(role, "");
    m.content = Some(MessageContent::Parts(parts));
    m
}

fn text_part(text: &str) -> ContentPart {
    ContentPart {
        kind: "text".into(),
        text: Some(text.to_string()),
        extra: Map::new(),
    }
}

fn image_part(url: String) -> ContentPart {
    let mut extra = Map::new();
    extra.insert("image_url".into(), json!({ "url": url }));
    ContentPart {
        kind: "image_url".into(),
        text: None,
        extra,
    }
}

/// A user-side block (text, image, document) as chat parts.
fn user_block_parts(block: &KnownBlock, param: &str) -> Result<Vec<ContentPart>, GatewayError> {
    match block {
        KnownBlock::Text { text, .. } => Ok(vec![text_part(text)]),
        KnownBlock::Image { source, .. } => {
            let src = format!("{param}.source");
            match source.get("type").and_then(Value::as_str) {
                Some("base64") => {
                    let (Some(mime), Some(data)) = (
                        source.get("media_type").and_then(Value::as_str),
                        source.get("data").and_then(Value::as_str),
                    ) else {
                        return Err(bad(&src, "A base64 image needs `media_type` and `data`."));
                    };
                    Ok(vec![image_part(data_url(mime, data))])
                }
                Some("url") => match source.get("url").and_then(Value::as_str) {
                    Some(url) => Ok(vec![image_part(url.to_string())]),
                    None => Err(bad(&src, "A url image needs `url`.")),
                },
                _ => Err(bad(
                    &src,
                    "Only base64 and url image sources can be translated (not file ids).",
                )),
            }
        }
        KnownBlock::Document { source, extra } => {
            let src = format!("{param}.source");
            match source.get("type").and_then(Value::as_str) {
                Some("base64") => {
                    let (Some(mime), Some(data)) = (
                        source.get("media_type").and_then(Value::as_str),
                        source.get("data").and_then(Value::as_str),
                    ) else {
                        return Err(bad(&src, "A base64 document needs `media_type` and `data`."));
                    };
                    let filename = extra
                        .get("title")
                        .and_then(Value::as_str)
                        .unwrap_or("document.pdf");
                    let mut part_extra = Map::new();
                    part_extra.insert(
                        "file".into(),
                        json!({"filename": filename, "file_data": data_url(mime, data)}),
                    );
                    Ok(vec![ContentPart {
                        kind: "file".into(),
                        text: None,
                        extra: part_extra,
                    }])
                }
                Some("text") => match source.get("data").and_then(Value::as_str) {
                    Some(data) => Ok(vec![text_part(data)]),
                    None => Err(bad(&src, "A text document needs `data`.")),
                },
                Some("content") => match source.get("content") {
                    Some(Value::String(s)) => Ok(vec![text_part(s)]),
                    Some(Value::Array(blocks)) => {
                        let mut parts = Vec::new();
                        for (i, b) in blocks.iter().enumerate() {
                            let p = format!("{src}.content[{i}]");
                            let block: KnownBlock = serde_json::from_value(b.clone())
                                .map_err(|e| bad(&p, format!("Invalid block: {e}")))?;
                            parts.extend(user_block_parts(&block, &p)?);
                        }
                        Ok(parts)
                    }
                    _ => Err(bad(&src, "A content document needs `content`.")),
                },
                _ => Err(bad(
                    &src,
                    "Only base64, text and content document sources can be translated (not URLs or file ids).",
                )),
            }
        }
        _ => Err(bad(param, "This block cannot appear here.")),
    }
}

fn block_type(block: &Block) -> String {
    match block {
        Block::Known(k) => serde_json::to_value(k)
            .ok()
            .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default(),
        Block::Other(v) => v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("(none)")
            .to_string(),
    }
}

fn unsupported_block(block: &Block, param: &str, role: &str) -> GatewayError {
    bad(
        param,
        format!(
            "Content blocks of type `{}` in {role} messages cannot be translated for this model.",
            block_type(block)
        ),
    )
}

impl Builder {
    fn user(&mut self, content: &Content, param: &str) -> Result<(), GatewayError> {
        let blocks = match content {
            Content::Text(t) => {
                self.messages.push(ChatMessage::text(Role::User, t.clone()));
                return Ok(());
            }
            Content::Blocks(b) => b,
        };
        let mut parts = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            let p = format!("{param}.content[{i}]");
            match block {
                Block::Known(KnownBlock::ToolResult {
                    tool_use_id,
                    content,
                    ..
                }) => {
                    let mut text = String::new();
                    match content {
                        None => {}
                        Some(Content::Text(t)) => text.push_str(t),
                        Some(Content::Blocks(inner)) => {
                            for (j, b) in inner.iter().enumerate() {
                                let q = format!("{p}.content[{j}]");
                                match b {
                                    Block::Known(KnownBlock::Text { text: t, .. }) => {
                                        if !text.is_empty() {
                                            text.push_str("\n\n");
                                        }
                                        text.push_str(t);
                                    }
                                    Block::Known(
                                        k
                                        @ (KnownBlock::Image { .. } | KnownBlock::Document { .. }),
                                    ) => parts.extend(user_block_parts(k, &q)?),
                                    Block::Other(v)
                                        if v.get("type").and_then(Value::as_str)
                                            == Some("tool_reference") => {}
                                    other => {
                                        return Err(unsupported_block(other, &q, "tool result"))
                                    }
                                }
                            }
                        }
                    }
                    let mut m = ChatMessage::text(Role::Tool, text);
                    m.tool_call_id = Some(tool_use_id.clone());
                    self.messages.push(m);
                }
                Block::Known(
                    k @ (KnownBlock::Text { .. }
                    | KnownBlock::Image { .. }
                    | KnownBlock::Document { .. }),
                ) => parts.extend(user_block_parts(k, &p)?),
                other => return Err(unsupported_block(other, &p, "user")),
            }
        }
        if !parts.is_empty() {
            self.messages.push(parts_message(Role::User, parts));
        }
        Ok(())
    }

    fn assistant(&mut self, content: &Content, param: &str) -> Result<(), GatewayError> {
        let blocks = match content {
            Content::Text(t) => {
                self.messages
                    .push(ChatMessage::text(Role::Assistant, t.clone()));
                return Ok(());
            }
            Content::Blocks(b) => b,
        };
        let mut text = String::new();
        let mut calls = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            match block {
                Block::Known(KnownBlock::Text { text: t, .. }) => text.push_str(t),
                Block::Known(KnownBlock::ToolUse {
                    id, name, input, ..
                }) => calls.push(ToolCall {
                    id: id.clone(),
                    kind: "function".into(),
                    function: FunctionCall {
                        name: name.clone(),
                        arguments: input.to_string(),
                    },
                }),
                // Only Anthropic can check a thinking signature: thinking stays behind.
                Block::Known(KnownBlock::Thinking { .. } | KnownBlock::RedactedThinking { .. }) => {
                }
                other => {
                    return Err(unsupported_block(
                        other,
                        &format!("{param}.content[{i}]"),
                        "assistant",
                    ))
                }
            }
        }
        if text.is_empty() && calls.is_empty() {
            // Nothing but thinking: an empty assistant turn is one chat servers reject.
            return Ok(());
        }
        let mut m = ChatMessage::text(Role::Assistant, text);
        if !calls.is_empty() {
            if m.text_content().is_empty() {
                m.content = None;
            }
            m.tool_calls = Some(calls);
        }
        self.messages.push(m);
        Ok(())
    }
}

fn system_message(system: &Content) -> Result<Option<ChatMessage>, GatewayError> {
    let text = match system {
        Content::Text(t) => t.clone(),
        Content::Blocks(blocks) => {
            let mut texts = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                match b {
                    Block::Known(KnownBlock::Text { text, .. }) => texts.push(text.clone()),
                    other => {
                        return Err(unsupported_block(other, &format!("system[{i}]"), "system"))
                    }
                }
            }
            texts.join("\n\n")
        }
    };
    Ok((!text.is_empty()).then(|| ChatMessage::text(Role::System, text)))
}

fn chat_tool(tool: &Value, i: usize) -> Result<Tool, GatewayError> {
    let param = format!("tools[{i}]");
    let Value::Object(t) = tool else {
        return Err(bad(&param, "Each tool must be an object."));
    };
    match t.get("type").and_then(Value::as_str) {
        None | Some("custom") => {}
        Some(other) => {
            return Err(bad(
                &format!("{param}.type"),
                format!(
                "Server tools (`{other}`) cannot be translated for this model: only custom tools."
            ),
            ))
        }
    }
    if let Some(k) = unknown_key(t, TOOL_FIELDS) {
        return Err(bad(
            &format!("{param}.{k}"),
            format!("Unknown tool field `{k}`."),
        ));
    }
    let Some(name) = t.get("name").and_then(Value::as_str) else {
        return Err(bad(&format!("{param}.name"), "A tool needs a `name`."));
    };
    let Some(schema) = t.get("input_schema").filter(|s| s.is_object()) else {
        return Err(bad(
            &format!("{param}.input_schema"),
            "A custom tool needs an `input_schema` object.",
        ));
    };
    let mut extra = Map::new();
    if let Some(s) = t.get("strict").filter(|s| s.is_boolean()) {
        extra.insert("strict".into(), s.clone());
    }
    Ok(Tool {
        kind: "function".into(),
        function: Some(FunctionDef {
            name: name.to_string(),
            description: t
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            parameters: Some(schema.clone()),
            extra,
        }),
        extra: Map::new(),
    })
}

/// `tool_choice` → chat's, and whether parallel calls are off.
fn chat_tool_choice(choice: &Value) -> Result<(Value, bool), GatewayError> {
    let parallel_off = choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true));
    let chat = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => match choice.get("name").and_then(Value::as_str) {
            Some(name) => json!({"type": "function", "function": {"name": name}}),
            None => {
                return Err(bad(
                    "tool_choice.name",
                    "tool_choice of type `tool` needs a `name`.",
                ))
            }
        },
        _ => {
            return Err(bad(
                "tool_choice.type",
                "tool_choice.type must be `auto`, `any`, `tool` or `none`.",
            ))
        }
    };
    Ok((chat, parallel_off))
}

/// `{"type":"json_schema","schema":…}` → chat's `response_format`.
fn response_format(format: &Value, param: &str) -> Result<Value, GatewayError> {
    match (
        format.get("type").and_then(Value::as_str),
        format.get("schema").filter(|s| s.is_object()),
    ) {
        (Some("json_schema"), Some(schema)) => Ok(json!({"type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": true}})),
        _ => Err(bad(
            param,
            "Only `{\"type\":\"json_schema\",\"schema\":{…}}` output formats can be translated.",
        )),
    }
}

impl MessagesRequest {
    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// The body for a native `anthropic` provider: the client's request with `model` replaced
    /// by the route's upstream model, everything else (thinking signatures, `cache_control`,
    /// betas' fields) as the client sent it.
    pub fn to_native(&self, upstream_model: &str) -> Value {
        let mut body = serde_json::to_value(self).unwrap_or(Value::Null);
        body["model"] = upstream_model.into();
        body
    }

    /// The request as chat completions, for providers that are not Anthropic. Errors are 400s
    /// naming the field (render them with [`error_body`]).
    pub fn to_chat(&self) -> Result<ChatCompletionRequest, GatewayError> {
        for field in ["container", "mcp_servers"] {
            if self.extra.contains_key(field) {
                return Err(bad(
                    field,
                    format!("`{field}` cannot be translated for this model."),
                ));
            }
        }
        if let Some(k) = unknown_key(&self.extra, TRANSLATED_FIELDS) {
            return Err(bad(k, format!("{k}: Extra inputs are not permitted.")));
        }
        let mut b = Builder {
            messages: Vec::new(),
        };
        if let Some(system) = &self.system {
            b.messages.extend(system_message(system)?);
        }
        for (i, m) in self.messages.iter().enumerate() {
            let param = format!("messages[{i}]");
            match m.role {
                MessageRole::User => b.user(&m.content, &param)?,
                MessageRole::Assistant => b.assistant(&m.content, &param)?,
            }
        }

        let mut extra = Map::new();
        for name in ["temperature", "top_p"] {
            if let Some(v) = self.extra.get(name).filter(|v| !v.is_null()) {
                extra.insert(name.into(), v.clone());
            }
        }
        if let Some(stop) = self.stop_sequences.as_ref().filter(|s| !s.is_empty()) {
            extra.insert("stop".into(), json!(stop));
        }
        if let Some(user) = self
            .metadata
            .as_ref()
            .and_then(|m| m.get("user_id"))
            .and_then(Value::as_str)
        {
            extra.insert("user".into(), user.into());
        }
        let tools = match &self.tools {
            Some(list) if !list.is_empty() => Some(
                list.iter()
                    .enumerate()
                    .map(|(i, t)| chat_tool(t, i))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => None,
        };
        if let Some(choice) = &self.tool_choice {
            let (chat, parallel_off) = chat_tool_choice(choice)?;
            extra.insert("tool_choice".into(), chat);
            if parallel_off && tools.is_some() {
                extra.insert("parallel_tool_calls".into(), false.into());
            }
        }
        if let Some(f) = self.extra.get("output_format").filter(|v| !v.is_null()) {
            extra.insert(
                "response_format".into(),
                response_format(f, "output_format")?,
            );
        }
        if let Some(f) = self
            .extra
            .get("output_config")
            .and_then(|c| c.get("format"))
            .filter(|v| !v.is_null())
        {
            extra.insert(
                "response_format".into(),
                response_format(f, "output_config.format")?,
            );
        }
        let stream = self.is_stream();
        Ok(ChatCompletionRequest {
            model: self.model.clone(),
            messages: b.messages,
            stream: stream.then_some(true),
            stream_options: stream.then(|| StreamOptions {
                include_usage: Some(true),
                extra: Map::new(),
            }),
            max_tokens: None,
            max_completion_tokens: self.max_tokens,
            n: None,
            tools,
            extra,
        })
    }
}

/// The body of `POST /v1/messages/count_tokens`.
pub fn count_tokens_body(input_tokens: u64) -> Value {
    json!({ "input_tokens": input_tokens })
}

/// Anthropic's error `type` for a gateway error.
pub fn error_type(err: &GatewayError) -> &'static str {
    match err.kind {
        ErrorKind::InvalidApiKey => "authentication_error",
        ErrorKind::InsufficientQuota => "billing_error",
        ErrorKind::ModelNotAllowed => "permission_error",
        ErrorKind::ModelNotFound | ErrorKind::NotFound => "not_found_error",
        ErrorKind::PayloadTooLarge => "request_too_large",
        ErrorKind::UpstreamRateLimited => "rate_limit_error",
        ErrorKind::UpstreamTimeout => "timeout_error",
        ErrorKind::Unavailable => "overloaded_error",
        ErrorKind::UpstreamFailed | ErrorKind::Internal => "api_error",
        ErrorKind::UpstreamRejected(403) => "permission_error",
        ErrorKind::UpstreamRejected(404) => "not_found_error",
        ErrorKind::UpstreamRejected(413) => "request_too_large",
        _ => "invalid_request_error",
    }
}

fn error_json(err: &GatewayError) -> Value {
    json!({"type": "error", "error": {"type": error_type(err), "message": err.message}})
}

/// Whether an error at path `segments` (the path split at `/`, empty segments dropped) is
/// answered in Anthropic's shape: everything under `/v1/messages`, the routes Anthropic's SDKs
/// call (`/v1/messages/batches`, a mistyped `/V1/Messages` too), so that an SDK reads the error.
pub fn owns_path(segments: &[&str]) -> bool {
    matches!(segments, [v1, messages, ..]
        if v1.eq_ignore_ascii_case("v1") && messages.eq_ignore_ascii_case("messages"))
}

/// `{"type":"error","error":{"type","message"},"request_id"}` (the request id when the gateway
/// has one), sent with [`GatewayError::status`].
pub fn error_body(err: &GatewayError, request_id: Option<&str>) -> String {
    let mut body = error_json(err);
    if let Some(id) = request_id {
        body["request_id"] = id.into();
    }
    body.to_string()
}

/// What the gateway knows of a message that the chat response does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// The gateway's request id: the message is `msg_<id>`.
    pub id: String,
    /// The model the client sees.
    pub model: String,
}

/// Anthropic's `stop_reason` for a chat finish reason.
pub fn stop_reason(finish_reason: Option<&str>, calls_tools: bool) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ if calls_tools => "tool_use",
        _ => "end_turn",
    }
}

/// Anthropic's usage object of a chat usage (see the module header).
pub fn usage_json(u: &Usage) -> Value {
    let read = u.cached_tokens().min(u.prompt_tokens);
    let one_hour = u.cache_writes.one_hour.min(u.prompt_tokens - read);
    let five_minutes = u
        .cache_writes
        .five_minutes
        .min(u.prompt_tokens - read - one_hour);
    let mut usage = json!({
        "input_tokens": u.prompt_tokens - read - one_hour - five_minutes,
        "cache_creation_input_tokens": five_minutes + one_hour,
        "cache_read_input_tokens": read,
        "output_tokens": u.completion_tokens,
    });
    if five_minutes + one_hour > 0 {
        usage["cache_creation"] = json!({"ephemeral_5m_input_tokens": five_minutes,
            "ephemeral_1h_input_tokens": one_hour});
    }
    usage
}

/// Tool-call arguments as a `tool_use` input: the JSON they hold, else the text itself.
fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_string()))
}

/// A plain chat response as an Anthropic `message`.
pub fn encode_message(resp: &ChatCompletionResponse, meta: &MessageMeta) -> Value {
    let mut content = Vec::new();
    let mut calls_tools = false;
    let choice = resp.choices.first();
    if let Some(c) = choice {
        let m = &c.message;
        if let Some(r) = reasoning_of(&m.extra) {
            content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
        }
        for t in [m.content.as_deref(), m.refusal.as_deref()]
            .into_iter()
            .flatten()
            .filter(|t| !t.is_empty())
        {
            content.push(json!({"type": "text", "text": t}));
        }
        for call in m.tool_calls.iter().flatten() {
            calls_tools = true;
            content.push(
                json!({"type": "tool_use", "id": call.id, "name": call.function.name,
                "input": tool_input(&call.function.arguments)}),
            );
        }
    }
    let finish = choice.and_then(|c| c.finish_reason.as_deref());
    json!({
        "id": format!("msg_{}", meta.id),
        "type": "message",
        "role": "assistant",
        "model": meta.model,
        "content": content,
        "stop_reason": stop_reason(finish, calls_tools),
        "stop_sequence": null,
        "usage": usage_json(&resp.usage.clone().unwrap_or_default()),
    })
}

/// The event `ping`.
pub fn ping() -> Event {
    Event::new("ping", json!({"type": "ping"}))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Thinking,
    Text,
    /// The n-th tool call of the stream (see `calls`).
    ToolUse(usize),
}

/// Turns the chat chunks of one stream into Anthropic's event sequence.
///
/// [`start`](Self::start) is optional ([`push`](Self::push) and a normal
/// [`finish`](Self::finish) start the message when needed); call [`finish`](Self::finish)
/// once; later calls return nothing.
#[derive(Debug, Clone)]
pub struct AnthropicStream {
    meta: MessageMeta,
    input_tokens: u64,
    started: bool,
    finished: bool,
    /// The blocks so far; the last is open unless `closed`.
    blocks: Vec<BlockKind>,
    /// The tool calls so far: chat index and `tool_use` id.
    calls: Vec<(u32, String)>,
    closed: bool,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl AnthropicStream {
    /// `input_tokens` is what `message_start` reports: the gateway's own count of the prompt
    /// (the final count follows in `message_delta`).
    pub fn new(meta: MessageMeta, input_tokens: u64) -> Self {
        AnthropicStream {
            meta,
            input_tokens,
            started: false,
            finished: false,
            blocks: Vec::new(),
            calls: Vec::new(),
            closed: true,
            finish_reason: None,
            usage: None,
        }
    }

    /// `message_start` and a `ping`, once.
    pub fn start(&mut self) -> Vec<Event> {
        if self.started || self.finished {
            return Vec::new();
        }
        self.started = true;
        let message = json!({
            "id": format!("msg_{}", self.meta.id),
            "type": "message",
            "role": "assistant",
            "model": self.meta.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": self.input_tokens, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0, "output_tokens": 0},
        });
        vec![
            Event::new(
                "message_start",
                json!({"type": "message_start", "message": message}),
            ),
            ping(),
        ]
    }

    fn open(&self) -> Option<BlockKind> {
        if self.closed {
            None
        } else {
            self.blocks.last().copied()
        }
    }

    fn close(&mut self, out: &mut Vec<Event>) {
        if !self.closed {
            self.closed = true;
            let index = self.blocks.len().saturating_sub(1);
            out.push(Event::new(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    /// Opens a block of `kind` unless it is the open one; returns its index.
    fn ensure(&mut self, kind: BlockKind, block: Value, out: &mut Vec<Event>) -> usize {
        if self.open() != Some(kind) {
            self.close(out);
            self.blocks.push(kind);
            self.closed = false;
            out.push(Event::new(
                "content_block_start",
                json!({"type": "content_block_start", "index": self.blocks.len() - 1,
                    "content_block": block}),
            ));
        }
        self.blocks.len() - 1
    }

    fn delta(out: &mut Vec<Event>, index: usize, delta: Value) {
        out.push(Event::new(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
    }

    /// The events of one chat chunk (choice 0).
    pub fn push(&mut self, chunk: &ChatCompletionChunk) -> Vec<Event> {
        if self.finished {
            return Vec::new();
        }
        let mut out = self.start();
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.clone());
        }
        let Some(choice) = chunk.choices.iter().find(|c| c.index == 0) else {
            return out;
        };
        let d = &choice.delta;
        if let Some(r) = reasoning_of(&d.extra) {
            let i = self.ensure(
                BlockKind::Thinking,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                &mut out,
            );
            Self::delta(
                &mut out,
                i,
                json!({"type": "thinking_delta", "thinking": r}),
            );
        }
        for signature in signatures(&d.extra) {
            if self.open() == Some(BlockKind::Thinking) {
                let i = self.blocks.len() - 1;
                Self::delta(
                    &mut out,
                    i,
                    json!({"type": "signature_delta", "signature": signature}),
                );
            }
        }
        for t in [d.content.as_deref(), d.refusal.as_deref()]
            .into_iter()
            .flatten()
            .filter(|t| !t.is_empty())
        {
            let i = self.ensure(
                BlockKind::Text,
                json!({"type": "text", "text": ""}),
                &mut out,
            );
            Self::delta(&mut out, i, json!({"type": "text_delta", "text": t}));
        }
        for call in d.tool_calls.iter().flatten() {
            let f = call.function.as_ref();
            // The call this delta continues: the last one of its chat index, unless the delta
            // names another call id (some OpenAI-compatible servers give every call index 0).
            let known = self.calls.iter().rposition(|(index, id)| {
                *index == call.index && call.id.as_ref().is_none_or(|new| new == id)
            });
            let kind = match known {
                Some(n) => BlockKind::ToolUse(n),
                None => {
                    let id = call
                        .id
                        .clone()
                        .unwrap_or_else(|| format!("toolu_{}_{}", self.meta.id, call.index));
                    let name = f.and_then(|f| f.name.clone()).unwrap_or_default();
                    self.calls.push((call.index, id.clone()));
                    let kind = BlockKind::ToolUse(self.calls.len() - 1);
                    self.ensure(
                        kind,
                        json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                        &mut out,
                    );
                    kind
                }
            };
            let args = f.and_then(|f| f.arguments.as_deref()).unwrap_or_default();
            if !args.is_empty() && self.open() == Some(kind) {
                let i = self.blocks.len() - 1;
                Self::delta(
                    &mut out,
                    i,
                    json!({"type": "input_json_delta", "partial_json": args}),
                );
            }
        }
        if let Some(r) = &choice.finish_reason {
            self.finish_reason = Some(r.clone());
        }
        out
    }

    /// The last events: `message_delta` and `message_stop`, or one `error` event for
    /// [`StreamEnd::Failed`]. `usage` (the gateway's final count) wins over the usage the
    /// chunks carried.
    pub fn finish(&mut self, end: StreamEnd, usage: Option<&Usage>) -> Vec<Event> {
        if self.finished {
            return Vec::new();
        }
        if let StreamEnd::Failed(err) = &end {
            self.finished = true;
            return vec![Event::new("error", error_json(err))];
        }
        let mut out = self.start();
        self.finished = true;
        self.close(&mut out);
        let calls_tools = self
            .blocks
            .iter()
            .any(|b| matches!(b, BlockKind::ToolUse(_)));
        let reason = match end {
            StreamEnd::Truncated => "max_tokens",
            _ => stop_reason(self.finish_reason.as_deref(), calls_tools),
        };
        let usage = usage
            .cloned()
            .or_else(|| self.usage.clone())
            .unwrap_or_else(|| Usage::new(self.input_tokens, 0));
        out.push(Event::new(
            "message_delta",
            json!({"type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": null},
                "usage": usage_json(&usage)}),
        ));
        out.push(Event::new("message_stop", json!({"type": "message_stop"})));
        out
    }
}

/// Signatures in an OpenRouter-style `reasoning_details` list of a delta.
fn signatures(extra: &Map<String, Value>) -> Vec<&str> {
    extra
        .get("reasoning_details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("signature").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_under_v1_messages_are_anthropic_shaped() {
        for yes in [
            &["v1", "messages"][..],
            &["v1", "messages", "count_tokens"],
            &["v1", "messages", "batches"],
            &["V1", "MESSAGES"],
        ] {
            assert!(owns_path(yes), "{yes:?}");
        }
        for no in [
            &[][..],
            &["v1"],
            &["v1", "chat", "completions"],
            &["v2", "messages"],
            &["messages"],
            &["v1", "messagesx"],
        ] {
            assert!(!owns_path(no), "{no:?}");
        }
    }
    use crate::core::inbound::testing::{assert_events, chunks, fixture};

    fn meta() -> MessageMeta {
        MessageMeta {
            id: "01jtest".into(),
            model: "claude-sonnet-4-5".into(),
        }
    }

    fn decode_ok(body: &str) -> MessagesRequest {
        decode_request(body.as_bytes()).unwrap()
    }

    #[test]
    fn decoded_request_serialises_back_unchanged_signatures_included() {
        let text = fixture(include_bytes!(
            "../../../tests/fixtures/messages/request_claude_code.json"
        ));
        let req = decode_ok(text);
        let original: Value = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_value(&req).unwrap(), original);
        // The thinking block is modelled, with its signature.
        let Content::Blocks(blocks) = &req.messages[1].content else {
            panic!("assistant blocks expected");
        };
        assert!(matches!(
            &blocks[0],
            Block::Known(KnownBlock::Thinking { signature, .. }) if signature.starts_with("EqQBCgIYAh")
        ));
        assert!(matches!(
            &blocks[1],
            Block::Known(KnownBlock::RedactedThinking { .. })
        ));
    }

    #[test]
    fn native_body_keeps_unknown_blocks_and_fields_and_swaps_the_model() {
        let body = json!({"model": "claude-x", "max_tokens": 9, "betas": ["b1"],
            "messages": [{"role": "user", "content": "q"},
              {"role": "assistant", "content": [
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}},
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                {"type": "text", "text": "found", "citations": [{"type": "web_search_result_location", "url": "u"}]}]}]});
        let req = decode_ok(&body.to_string());
        let mut expected = body.clone();
        expected["model"] = "claude-sonnet-4-5-20250929".into();
        assert_eq!(req.to_native("claude-sonnet-4-5-20250929"), expected);
        // Translation refuses the server tool blocks it cannot express.
        let e = req.to_chat().unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[1].content[0]"));
        assert!(e.message.contains("server_tool_use"), "{}", e.message);
    }

    #[test]
    fn tool_use_round_trips_through_a_translated_turn() {
        // Turn 1: the client's request goes to a chat provider, which calls a tool.
        let first = decode_ok(
            r#"{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"Weather in SF?"}],
            "tools":[{"name":"get_weather","input_schema":{"type":"object"}}]}"#,
        );
        assert_eq!(first.to_chat().unwrap().tools.unwrap()[0].kind, "function");
        let resp: ChatCompletionResponse = serde_json::from_str(fixture(include_bytes!(
            "../../../tests/fixtures/messages/chat_response_tools.json"
        )))
        .unwrap();
        let message = encode_message(&resp, &meta());
        // Turn 2: the client sends the assistant message back with the tool's result.
        let second = json!({"model": "m", "max_tokens": 100, "messages": [
            {"role": "user", "content": "Weather in SF?"},
            {"role": "assistant", "content": message["content"]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_w1",
                "content": [{"type": "text", "text": "15 degrees"}]}]}]});
        let chat = decode_ok(&second.to_string()).to_chat().unwrap();
        let original = &resp.choices[0].message;
        let assistant = &chat.messages[1];
        assert_eq!(assistant.role, Role::Assistant);
        assert_eq!(assistant.text_content(), original.content.clone().unwrap());
        let (sent, back) = (
            &original.tool_calls.as_ref().unwrap()[0],
            &assistant.tool_calls.as_ref().unwrap()[0],
        );
        assert_eq!(
            (&back.id, &back.function.name),
            (&sent.id, &sent.function.name)
        );
        let args = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert_eq!(
            args(&back.function.arguments),
            args(&sent.function.arguments)
        );
        assert_eq!(chat.messages[2].tool_call_id.as_deref(), Some("call_w1"));
        assert_eq!(chat.messages[2].text_content(), "15 degrees");
        assert_eq!(chat.messages.len(), 3);
    }

    #[test]
    fn an_assistant_turn_of_only_thinking_is_left_out() {
        let chat = decode_ok(
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a"},
            {"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"}]},
            {"role":"user","content":"b"}]}"#,
        )
        .to_chat()
        .unwrap();
        let roles: Vec<_> = chat.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::User]);
    }

    #[test]
    fn claude_code_request_translates_to_chat() {
        let req = decode_ok(fixture(include_bytes!(
            "../../../tests/fixtures/messages/request_claude_code.json"
        )));
        let chat = serde_json::to_value(req.to_chat().unwrap()).unwrap();
        let expected: Value = serde_json::from_str(fixture(include_bytes!(
            "../../../tests/fixtures/messages/request_claude_code.chat.json"
        )))
        .unwrap();
        assert_eq!(chat, expected);
        let again = ChatCompletionRequest::from_json(&serde_json::to_vec(&chat).unwrap());
        assert!(again.is_ok());
    }

    #[test]
    fn images_documents_and_tool_result_media() {
        let req = decode_ok(
            r#"{"model":"m","max_tokens":10,"messages":[
              {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"read","input":{"p":"a.png"}}]},
              {"role":"user","content":[
                {"type":"tool_result","tool_use_id":"t1","is_error":false,"content":[
                  {"type":"text","text":"read it"},
                  {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBO"}},
                  {"type":"tool_reference","tool_name":"x"}]},
                {"type":"document","title":"spec.pdf","source":{"type":"base64","media_type":"application/pdf","data":"JVBE"}},
                {"type":"document","source":{"type":"text","media_type":"text/plain","data":"plain doc"}},
                {"type":"image","source":{"type":"url","url":"https://example.com/a.jpg"}},
                {"type":"text","text":"compare"}]}]}"#,
        );
        let m = serde_json::to_value(req.to_chat().unwrap().messages).unwrap();
        assert_eq!(
            m[0]["tool_calls"][0]["function"]["arguments"],
            "{\"p\":\"a.png\"}"
        );
        assert_eq!(
            m[1],
            json!({"role":"tool","tool_call_id":"t1","content":"read it"})
        );
        assert_eq!(
            m[2]["content"],
            json!([
                {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO"}},
                {"type":"file","file":{"filename":"spec.pdf","file_data":"data:application/pdf;base64,JVBE"}},
                {"type":"text","text":"plain doc"},
                {"type":"image_url","image_url":{"url":"https://example.com/a.jpg"}},
                {"type":"text","text":"compare"}
            ])
        );
    }

    #[test]
    fn tool_choice_and_structured_output() {
        let base = r#""model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],
            "tools":[{"name":"f","input_schema":{"type":"object"}}]"#;
        let chat = |extra: &str| decode_ok(&format!("{{{base}{extra}}}")).to_chat().unwrap();
        let c = chat(r#","tool_choice":{"type":"any","disable_parallel_tool_use":true}"#);
        assert_eq!(c.extra["tool_choice"], "required");
        assert_eq!(c.extra["parallel_tool_calls"], false);
        let c = chat(r#","tool_choice":{"type":"tool","name":"f"}"#);
        assert_eq!(
            c.extra["tool_choice"],
            json!({"type":"function","function":{"name":"f"}})
        );
        assert!(!c.extra.contains_key("parallel_tool_calls"));
        assert_eq!(
            chat(r#","tool_choice":{"type":"none"}"#).extra["tool_choice"],
            "none"
        );
        let c = chat(
            r#","output_config":{"effort":"low","format":{"type":"json_schema","schema":{"type":"object"}}}"#,
        );
        assert_eq!(
            c.extra["response_format"],
            json!({"type":"json_schema","json_schema":{"name":"output","schema":{"type":"object"},"strict":true}})
        );
        assert!(!c.extra.contains_key("output_config"));
    }

    #[test]
    fn plugin_fields_are_refused_with_where_plugins_run() {
        for field in crate::core::plugins::PLUGIN_FIELDS {
            let body = format!(
                r#"{{"model":"m","max_tokens":5,"messages":[{{"role":"user","content":"x"}}],"{field}":true}}"#
            );
            for e in [
                decode_request(body.as_bytes()).unwrap_err(),
                decode_count_tokens(body.as_bytes()).unwrap_err(),
            ] {
                assert_eq!((e.status(), e.param.as_deref()), (400, Some(*field)));
                assert!(e.message.contains("/v1/chat/completions"), "{}", e.message);
            }
        }
    }

    #[test]
    fn rejects_with_the_field_named_in_anthropics_shape() {
        let decode_cases = [
            (
                r#"{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
                "model",
            ),
            (r#"{"model":"m","max_tokens":1}"#, "messages"),
            (r#"{"model":"m","max_tokens":1,"messages":[]}"#, "messages"),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#,
                "max_tokens",
            ),
        ];
        for (body, param) in decode_cases {
            let e = decode_request(body.as_bytes()).unwrap_err();
            assert_eq!(
                (e.status(), e.param.as_deref()),
                (400, Some(param)),
                "{body}"
            );
            let v: Value = serde_json::from_str(&error_body(&e, None)).unwrap();
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], "invalid_request_error");
            assert!(v["error"]["message"].as_str().unwrap().contains(param));
        }
        let e = decode_request(
            br#"{"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("system"), "{}", e.message);
        let e = decode_request(br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"thinking","thinking":"x"}]}]}"#)
            .unwrap_err();
        assert!(e.message.contains("signature"), "{}", e.message);

        let msgs = r#""model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}]"#;
        let translate_cases = [
            (format!("{{{msgs},\"frobnicate\":1}}"), "frobnicate"),
            (format!("{{{msgs},\"container\":\"c\"}}"), "container"),
            (format!("{{{msgs},\"mcp_servers\":[]}}"), "mcp_servers"),
            (format!("{{{msgs},\"tools\":[{{\"type\":\"web_search_20250305\",\"name\":\"web_search\"}}]}}"), "tools[0].type"),
            (format!("{{{msgs},\"tools\":[{{\"name\":\"f\"}}]}}"), "tools[0].input_schema"),
            (format!("{{{msgs},\"tools\":[{{\"name\":\"f\",\"input_schema\":{{}},\"wat\":1}}]}}"), "tools[0].wat"),
            (format!("{{{msgs},\"tool_choice\":{{\"type\":\"tool\"}}}}"), "tool_choice.name"),
            (format!("{{{msgs},\"output_format\":{{\"type\":\"xml\"}}}}"), "output_format"),
            (
                r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"search_result","source":"s"}]}]}"#.to_string(),
                "messages[0].content[0]",
            ),
            (
                r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}"#.to_string(),
                "messages[0].content[0].source",
            ),
            (
                r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"url","url":"https://x/a.pdf"}}]}]}"#.to_string(),
                "messages[0].content[0].source",
            ),
            (
                r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_use","id":"a","name":"b","input":{}}]}]}"#.to_string(),
                "messages[0].content[0]",
            ),
            (
                r#"{"model":"m","max_tokens":1,"system":[{"type":"image","source":{}}],"messages":[{"role":"user","content":"x"}]}"#.to_string(),
                "system[0]",
            ),
        ];
        for (body, param) in translate_cases {
            let e = decode_ok(&body).to_chat().unwrap_err();
            assert_eq!(
                (e.status(), e.param.as_deref()),
                (400, Some(param)),
                "{body}: {}",
                e.message
            );
            let v: Value = serde_json::from_str(&error_body(&e, None)).unwrap();
            assert_eq!(v["error"]["type"], "invalid_request_error");
        }
    }

    #[test]
    fn count_tokens_needs_no_max_tokens() {
        let r = decode_count_tokens(br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#)
            .unwrap();
        assert_eq!(r.max_tokens, None);
        assert_eq!(count_tokens_body(14), json!({"input_tokens": 14}));
    }

    #[test]
    fn error_types_and_statuses() {
        let cases = [
            (ErrorKind::InvalidRequest, 400, "invalid_request_error"),
            (ErrorKind::InvalidApiKey, 401, "authentication_error"),
            (ErrorKind::InsufficientQuota, 402, "billing_error"),
            (ErrorKind::ModelNotAllowed, 403, "permission_error"),
            (ErrorKind::ModelNotFound, 404, "not_found_error"),
            (ErrorKind::NotFound, 404, "not_found_error"),
            (ErrorKind::PayloadTooLarge, 413, "request_too_large"),
            (ErrorKind::UpstreamRateLimited, 429, "rate_limit_error"),
            (
                ErrorKind::UpstreamRejected(422),
                422,
                "invalid_request_error",
            ),
            (ErrorKind::UpstreamRejected(413), 413, "request_too_large"),
            (ErrorKind::Internal, 500, "api_error"),
            (ErrorKind::UpstreamFailed, 502, "api_error"),
            (ErrorKind::Unavailable, 503, "overloaded_error"),
            (ErrorKind::UpstreamTimeout, 504, "timeout_error"),
        ];
        for (kind, status, kind_name) in cases {
            let e = GatewayError::new(kind, "boom \"x\"");
            assert_eq!(e.status(), status);
            let v: Value = serde_json::from_str(&error_body(&e, None)).unwrap();
            assert_eq!(
                v,
                json!({"type":"error","error":{"type":kind_name,"message":"boom \"x\""}})
            );
        }
    }

    #[test]
    fn plain_message_with_thinking_text_and_tool_use() {
        let resp: ChatCompletionResponse = serde_json::from_str(fixture(include_bytes!(
            "../../../tests/fixtures/messages/chat_response_tools.json"
        )))
        .unwrap();
        let got = encode_message(&resp, &meta());
        let want: Value = serde_json::from_str(fixture(include_bytes!(
            "../../../tests/fixtures/messages/message_tools.json"
        )))
        .unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn error_body_follows_the_documented_shape() {
        let e = GatewayError::new(
            ErrorKind::NotFound,
            "The requested resource could not be found.",
        );
        let got: Value =
            serde_json::from_str(&error_body(&e, Some("req_011CSHoEeqs5C35K2UUqR7Fy"))).unwrap();
        let want: Value = serde_json::from_str(fixture(include_bytes!(
            "../../../tests/fixtures/messages/error_not_found.json"
        )))
        .unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn stop_reasons() {
        assert_eq!(stop_reason(Some("stop"), false), "end_turn");
        assert_eq!(stop_reason(Some("stop"), true), "tool_use");
        assert_eq!(stop_reason(Some("tool_calls"), true), "tool_use");
        assert_eq!(stop_reason(Some("length"), true), "max_tokens");
        assert_eq!(stop_reason(Some("content_filter"), false), "refusal");
        assert_eq!(stop_reason(None, false), "end_turn");
    }

    fn run(chunks: &[ChatCompletionChunk], end: StreamEnd) -> Vec<Event> {
        let mut s = AnthropicStream::new(meta(), 25);
        let mut events = s.start();
        for c in chunks {
            events.extend(s.push(c));
        }
        events.extend(s.finish(end, None));
        assert!(s.finish(StreamEnd::Completed, None).is_empty());
        events
    }

    #[test]
    fn stream_text_matches_the_documented_sequence() {
        let input = chunks(include_bytes!(
            "../../../tests/fixtures/responses/stream_text.chunks.jsonl"
        ));
        assert_events(
            &run(&input, StreamEnd::Completed),
            include_bytes!("../../../tests/fixtures/messages/stream_text.sse"),
        );
    }

    #[test]
    fn stream_thinking_text_and_tool_use_match_the_fixture() {
        let input = chunks(include_bytes!(
            "../../../tests/fixtures/messages/stream_tools.chunks.jsonl"
        ));
        assert_events(
            &run(&input, StreamEnd::Completed),
            include_bytes!("../../../tests/fixtures/messages/stream_tools.sse"),
        );
    }

    #[test]
    fn broken_upstream_ends_with_one_error_event() {
        let input = chunks(include_bytes!(
            "../../../tests/fixtures/responses/stream_text.chunks.jsonl"
        ));
        let err = GatewayError::new(ErrorKind::UpstreamFailed, "The provider closed the stream.");
        let events = run(&input[..2], StreamEnd::Failed(err));
        let names: Vec<_> = events.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "error"
            ]
        );
        assert_eq!(
            events[4].data,
            json!({"type":"error","error":{"type":"api_error","message":"The provider closed the stream."}})
        );
    }

    #[test]
    fn calls_sharing_an_index_but_not_an_id_are_two_blocks() {
        let call = |id: &str| -> ChatCompletionChunk {
            serde_json::from_value(json!({"choices":[{"index":0,"delta":{"tool_calls":[
                {"index":0,"id":id,"type":"function","function":{"name":"f","arguments":"{}"}}]}}]}))
            .unwrap()
        };
        let events = run(&[call("a"), call("a"), call("b")], StreamEnd::Completed);
        let starts: Vec<_> = events
            .iter()
            .filter(|e| e.name == "content_block_start")
            .map(|e| e.data["content_block"]["id"].clone())
            .collect();
        assert_eq!(starts, [json!("a"), json!("b")]);
        let deltas = events
            .iter()
            .filter(|e| e.name == "content_block_delta")
            .count();
        assert_eq!(deltas, 3);
    }

    #[test]
    fn truncated_stream_stops_at_max_tokens_with_the_gateways_usage() {
        let input = chunks(include_bytes!(
            "../../../tests/fixtures/responses/stream_text.chunks.jsonl"
        ));
        let mut s = AnthropicStream::new(meta(), 25);
        let mut events = Vec::new();
        for c in &input[..2] {
            events.extend(s.push(c));
        }
        let counted = Usage::new(30, 2);
        events.extend(s.finish(StreamEnd::Truncated, Some(&counted)));
        let names: Vec<_> = events.iter().map(|e| e.name).collect();
        assert_eq!(
            names[names.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"]
        );
        let delta = &events[events.len() - 2].data;
        assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
        assert_eq!(delta["usage"]["input_tokens"], 30);
        assert_eq!(delta["usage"]["output_tokens"], 2);
    }

    #[test]
    fn usage_splits_cache_reads_from_input() {
        let mut u = Usage::new(100, 7);
        u.prompt_tokens_details =
            Some(crate::core::openai::PromptTokensDetails { cached_tokens: 60 });
        assert_eq!(
            usage_json(&u),
            json!({"input_tokens":40,"cache_creation_input_tokens":0,"cache_read_input_tokens":60,"output_tokens":7})
        );
        u.prompt_tokens_details =
            Some(crate::core::openai::PromptTokensDetails { cached_tokens: 200 });
        assert_eq!(usage_json(&u)["input_tokens"], 0);
        // Cache writes an Anthropic route reported, apart from the input, as Anthropic says them.
        let mut u = Usage::new(400, 7);
        u.prompt_tokens_details =
            Some(crate::core::openai::PromptTokensDetails { cached_tokens: 60 });
        u.cache_writes = crate::core::openai::CacheWrites {
            five_minutes: 100,
            one_hour: 200,
        };
        assert_eq!(
            usage_json(&u),
            json!({"input_tokens":40,"cache_creation_input_tokens":300,"cache_read_input_tokens":60,
                "cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},
                "output_tokens":7})
        );
    }
}
