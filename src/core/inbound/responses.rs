//! OpenAI's Responses API (`POST /v1/responses`) as an inbound codec over chat completions.
//!
//! Follows the API reference "Create a model response" and "Streaming events"
//! (<https://platform.openai.com/docs/api-reference/responses>,
//! <https://platform.openai.com/docs/api-reference/responses-streaming>); the fixtures under
//! `tests/fixtures/responses/` name the page each follows.
//!
//! **Request → chat.**
//! * `input` as a string is one user message. As items: messages (`role` user, assistant,
//!   system, developer; `content` a string or parts `input_text`/`output_text` → text,
//!   `input_image` with an `image_url` → `image_url` part, `input_file` with `file_data` → chat
//!   `file` part, `refusal` → the assistant's `refusal`); `function_call` → a `tool_calls` entry
//!   of an assistant message (consecutive calls share one message); `function_call_output` →
//!   a `tool` message (images and files in an output follow as one user message, as chat tool
//!   messages carry text only); `reasoning` items are dropped (chat has no reasoning input);
//!   `custom_tool_call` and `custom_tool_call_output` like function calls and outputs.
//! * `instructions` → a leading system message; `tools` of type `function` → chat function
//!   tools (`strict` kept); `custom` tools → a function of one string parameter `input` (a
//!   grammar `format` is added to the description), whose calls come back as
//!   `custom_tool_call` items; OpenAI's hosted tools (`web_search`, `file_search`, …) are
//!   dropped: a translated model cannot call them, and clients such as Codex CLI send them
//!   unasked; `tool_choice` `auto`/`none`/`required`/`{type:function|custom,name}`;
//!   `max_output_tokens` → `max_completion_tokens`; `reasoning.effort` → `reasoning_effort`;
//!   `text.format` `json_schema`/`json_object` → `response_format`; `text.verbosity` →
//!   `verbosity`; `temperature`, `top_p`, `parallel_tool_calls`, `user` carry over; a stream
//!   asks for usage.
//! * Accepted and dropped: `store` (Tollgate stores no response: every response says
//!   `store: false`), `metadata` (echoed, not sent upstream), `include`, `truncation`,
//!   `stream_options`, `reasoning.summary`, Codex CLI's `client_metadata`, and OpenAI's
//!   routing hints `prompt_cache_key`, `safety_identifier`, `service_tier` (translation serves
//!   providers that are not OpenAI, and strict OpenAI-compatible servers reject fields they do
//!   not know).
//! * A 400 that names the field: `previous_response_id`, `conversation` and `item_reference`
//!   items (they need stored responses), `background: true`, `prompt`, `max_tool_calls`,
//!   `top_logprobs`, a `tool_choice` of a hosted tool, file ids and URLs, unknown fields and
//!   item types.
//!
//! **Chat → response.** Choice 0 becomes the `output` items in this order: a `reasoning` item
//! (`reasoning_content` → `content: [{type: reasoning_text}]`), a `message` item (`output_text`,
//! `refusal` parts), `function_call` (or `custom_tool_call`) items. `finish_reason` `length` →
//! status `incomplete` with `incomplete_details.reason: max_output_tokens`, `content_filter` →
//! `incomplete` (`content_filter`), else `completed`. Usage: `input_tokens` (with
//! `input_tokens_details.cached_tokens`), `output_tokens` (with
//! `output_tokens_details.reasoning_tokens`), `total_tokens`.
//!
//! **Stream.** `response.created`, `response.in_progress`, then per output item
//! `response.output_item.added`, its content events and `response.output_item.done`:
//! messages `response.content_part.added`, `response.output_text.delta`…,
//! `response.output_text.done`, `response.content_part.done` (refusals likewise with
//! `response.refusal.delta/done`); function calls `response.function_call_arguments.delta`…,
//! `response.function_call_arguments.done`; custom tool calls
//! `response.custom_tool_call_input.delta` (the whole input, once it is known: chat streams it
//! wrapped in JSON) and `response.custom_tool_call_input.done`; reasoning a `reasoning_text`
//! content part (`response.content_part.added/done`) around `response.reasoning_text.delta`…,
//! `response.reasoning_text.done`.
//! The stream ends with `response.completed`, `response.incomplete` (finish reason `length` or
//! `content_filter`, or [`StreamEnd::Truncated`]) or `response.failed`
//! ([`StreamEnd::Failed`]), each carrying the whole response. Every event has a
//! `sequence_number` from 0. Items are emitted one after another, as OpenAI does: an item is
//! done when the next begins. Chat streams send tool calls one after another too; should an
//! upstream interleave them, argument text arriving for a call already done is kept in the
//! final response's `output` but has no delta event. A call is known by its chat `index`, and a
//! delta naming a new call `id` at a used index starts a new call (some OpenAI-compatible
//! servers give every call index 0).
//!
//! Ids: the response is `resp_<id>`, its items `rs_/msg_/fc_/ctc_<id>_<output index>`, where
//! `<id>` is the gateway's request id ([`ResponseMeta::id`]).

use serde_json::{json, Map, Value};

use super::{reasoning_of, unknown_key, Event, StreamEnd};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatMessage, ContentPart,
    FunctionCall, FunctionDef, MessageContent, Role, StreamOptions, Tool, ToolCall, Usage,
};

/// A decoded `POST /v1/responses` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesRequest {
    /// The request as chat completions, for any provider.
    pub chat: ChatCompletionRequest,
    /// The request parameters the response object echoes.
    pub params: ResponseParams,
}

/// Request parameters a response object repeats back to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseParams {
    pub model: String,
    pub stream: bool,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<u64>,
    pub parallel_tool_calls: bool,
    /// `{"effort": …, "summary": …}` as sent, or null.
    pub reasoning: Value,
    pub temperature: Value,
    pub top_p: Value,
    /// `{"format": {...}}` as sent, `{"format":{"type":"text"}}` by default.
    pub text: Value,
    /// As sent, `"auto"` by default.
    pub tool_choice: Value,
    pub tools: Vec<Value>,
    /// The names of the request's `custom` tools: their calls are `custom_tool_call` items.
    pub custom_tools: Vec<String>,
    /// As sent, `{}` by default.
    pub metadata: Value,
    pub user: Value,
}

/// What the gateway knows of a response that the chat response does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseMeta {
    /// The gateway's request id: the response is `resp_<id>`.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The model the client sees.
    pub model: String,
}

/// Top-level fields, each either translated, echoed or dropped (see the module header).
const KNOWN_FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "max_output_tokens",
    "reasoning",
    "text",
    "stream",
    "store",
    "metadata",
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "service_tier",
    "include",
    "truncation",
    "stream_options",
    "client_metadata",
    "previous_response_id",
    "background",
];

/// Fields a chat provider cannot serve, with the reason the 400 gives.
const UNSUPPORTED_FIELDS: &[(&str, &str)] = &[
    (
        "previous_response_id",
        "Tollgate does not store responses: send the whole conversation in `input` (and `store: false`).",
    ),
    (
        "conversation",
        "Tollgate does not store conversations: send the whole conversation in `input`.",
    ),
    ("prompt", "Stored prompt templates are not supported."),
    ("max_tool_calls", "`max_tool_calls` is not supported."),
    ("top_logprobs", "`top_logprobs` is not supported."),
];

fn bad(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_param(param, message)
}

/// Parses and validates a `POST /v1/responses` body; errors are OpenAI-shaped 400s naming the
/// field at fault ([`super::openai::error_body`]).
pub fn decode_request(body: &[u8]) -> Result<ResponsesRequest, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("The request body is not valid JSON: {e}"))
    })?;
    let Value::Object(map) = value else {
        return Err(GatewayError::invalid_request(
            "The request body must be a JSON object.",
        ));
    };
    // A null is the same as an absent field.
    let map: Map<String, Value> = map.into_iter().filter(|(_, v)| !v.is_null()).collect();
    for (field, why) in UNSUPPORTED_FIELDS {
        if map.contains_key(*field) {
            return Err(bad(field, *why));
        }
    }
    if let Some((field, why)) = crate::core::plugins::chat_only_field(&map) {
        return Err(bad(field, why));
    }
    if let Some(k) = unknown_key(&map, KNOWN_FIELDS) {
        return Err(bad(k, format!("Unrecognized request argument: `{k}`.")));
    }
    if map.get("background") == Some(&Value::Bool(true)) {
        return Err(bad("background", "Background responses are not supported."));
    }
    let model = match map.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        Some(_) => return Err(bad("model", "`model` must be a non-empty string.")),
        None => return Err(bad("model", "Missing required parameter: `model`.")),
    };
    let stream = bool_field(&map, "stream")?.unwrap_or(false);
    let instructions = match map.get("instructions") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad("instructions", "`instructions` must be a string.")),
    };

    let mut messages = Vec::new();
    if let Some(text) = instructions.as_ref().filter(|s| !s.is_empty()) {
        messages.push(ChatMessage::text(Role::System, text.clone()));
    }
    match map.get("input") {
        None => return Err(bad("input", "Missing required parameter: `input`.")),
        Some(Value::String(s)) => messages.push(ChatMessage::text(Role::User, s.clone())),
        Some(Value::Array(items)) if !items.is_empty() => input_items(items, &mut messages)?,
        Some(Value::Array(_)) => {
            return Err(bad("input", "`input` must contain at least one item."))
        }
        Some(_) => {
            return Err(bad(
                "input",
                "`input` must be a string or an array of items.",
            ))
        }
    }

    let mut extra = Map::new();
    let tools = match map.get("tools") {
        None => Vec::new(),
        Some(Value::Array(list)) => list.clone(),
        Some(_) => return Err(bad("tools", "`tools` must be an array.")),
    };
    let mut chat_tools = Vec::new();
    let mut custom_tools = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        if let Some((tool, custom)) = chat_tool(t, i)? {
            if custom {
                custom_tools.extend(tool.function.as_ref().map(|f| f.name.clone()));
            }
            chat_tools.push(tool);
        }
    }
    let tool_choice = map
        .get("tool_choice")
        .cloned()
        .unwrap_or_else(|| json!("auto"));
    if map.contains_key("tool_choice") {
        extra.insert("tool_choice".into(), chat_tool_choice(&tool_choice)?);
    }
    let parallel_tool_calls = bool_field(&map, "parallel_tool_calls")?;
    if let Some(p) = parallel_tool_calls {
        extra.insert("parallel_tool_calls".into(), p.into());
    }
    let max_output_tokens = match map.get("max_output_tokens") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Some(n),
            _ => {
                return Err(bad(
                    "max_output_tokens",
                    "`max_output_tokens` must be a positive integer.",
                ))
            }
        },
    };
    let reasoning = map.get("reasoning").cloned().unwrap_or(Value::Null);
    match &reasoning {
        Value::Null => {}
        Value::Object(r) => match r.get("effort") {
            None | Some(Value::Null) => {}
            Some(Value::String(e)) => {
                extra.insert("reasoning_effort".into(), e.clone().into());
            }
            Some(_) => {
                return Err(bad(
                    "reasoning.effort",
                    "`reasoning.effort` must be a string.",
                ))
            }
        },
        _ => return Err(bad("reasoning", "`reasoning` must be an object.")),
    }
    let text = map
        .get("text")
        .cloned()
        .unwrap_or_else(|| json!({"format": {"type": "text"}}));
    text_config(&text, &mut extra)?;
    for name in ["temperature", "top_p", "user"] {
        if let Some(v) = map.get(name) {
            extra.insert(name.into(), v.clone());
        }
    }
    let metadata = match map.get("metadata") {
        None => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(bad("metadata", "`metadata` must be an object.")),
    };
    bool_field(&map, "store")?;

    let chat = ChatCompletionRequest {
        model: model.clone(),
        messages,
        stream: stream.then_some(true),
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            extra: Map::new(),
        }),
        max_tokens: None,
        max_completion_tokens: max_output_tokens,
        n: None,
        tools: (!chat_tools.is_empty()).then_some(chat_tools),
        extra,
    };
    let params = ResponseParams {
        model,
        stream,
        instructions,
        max_output_tokens,
        parallel_tool_calls: parallel_tool_calls.unwrap_or(true),
        reasoning,
        temperature: map.get("temperature").cloned().unwrap_or(Value::Null),
        top_p: map.get("top_p").cloned().unwrap_or(Value::Null),
        text,
        tool_choice,
        tools,
        custom_tools,
        metadata,
        user: map.get("user").cloned().unwrap_or(Value::Null),
    };
    Ok(ResponsesRequest { chat, params })
}

fn bool_field(map: &Map<String, Value>, name: &str) -> Result<Option<bool>, GatewayError> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(name, format!("`{name}` must be a boolean."))),
    }
}

fn str_of<'a>(
    item: &'a Map<String, Value>,
    key: &str,
    param: &str,
) -> Result<&'a str, GatewayError> {
    item.get(key).and_then(Value::as_str).ok_or_else(|| {
        bad(
            &format!("{param}.{key}"),
            format!("`{key}` must be a string."),
        )
    })
}

/// Appends the chat messages of the `input` items.
fn input_items(items: &[Value], out: &mut Vec<ChatMessage>) -> Result<(), GatewayError> {
    // Images and files of tool outputs, sent as one user message after the tool messages.
    let mut pending: Vec<ContentPart> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let param = format!("input[{i}]");
        let Value::Object(item) = item else {
            return Err(bad(&param, "Each input item must be an object."));
        };
        let kind = match item.get("type") {
            None => "message",
            Some(Value::String(t)) => t.as_str(),
            Some(_) => return Err(bad(&format!("{param}.type"), "`type` must be a string.")),
        };
        let is_output = kind == "function_call_output" || kind == "custom_tool_call_output";
        if !is_output && !pending.is_empty() {
            out.push(user_parts(std::mem::take(&mut pending)));
        }
        match kind {
            "message" => out.push(input_message(item, &param)?),
            "function_call" | "custom_tool_call" => {
                let arguments = if kind == "custom_tool_call" {
                    // A custom tool is a function of one string parameter, `input`, for chat.
                    json!({ "input": str_of(item, "input", &param)? }).to_string()
                } else {
                    match item.get("arguments") {
                        None => String::new(),
                        Some(Value::String(a)) => a.clone(),
                        Some(_) => {
                            return Err(bad(
                                &format!("{param}.arguments"),
                                "`arguments` must be a string of JSON.",
                            ))
                        }
                    }
                };
                let call = ToolCall {
                    id: str_of(item, "call_id", &param)?.to_string(),
                    kind: "function".into(),
                    function: FunctionCall {
                        name: str_of(item, "name", &param)?.to_string(),
                        arguments,
                    },
                };
                match out.last_mut() {
                    Some(last) if last.role == Role::Assistant => {
                        last.tool_calls.get_or_insert_with(Vec::new).push(call)
                    }
                    _ => {
                        let mut m = ChatMessage::text(Role::Assistant, "");
                        m.content = None;
                        m.tool_calls = Some(vec![call]);
                        out.push(m);
                    }
                }
            }
            "function_call_output" | "custom_tool_call_output" => {
                let call_id = str_of(item, "call_id", &param)?.to_string();
                let text = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => {
                        let mut text = String::new();
                        for (j, part) in parts.iter().enumerate() {
                            let p = content_part(part, &format!("{param}.output[{j}]"))?;
                            if p.kind == "text" {
                                text.push_str(p.text.as_deref().unwrap_or_default());
                            } else {
                                pending.push(p);
                            }
                        }
                        text
                    }
                    _ => {
                        return Err(bad(
                            &format!("{param}.output"),
                            "`output` must be a string or an array of content parts.",
                        ))
                    }
                };
                let mut m = ChatMessage::text(Role::Tool, text);
                m.tool_call_id = Some(call_id);
                out.push(m);
            }
            // Reasoning of earlier turns: chat has no field that takes it back.
            "reasoning" => {}
            "item_reference" => {
                return Err(bad(
                    &param,
                    "Tollgate does not store responses: `item_reference` items are not supported.",
                ))
            }
            other => {
                return Err(bad(
                    &format!("{param}.type"),
                    format!("Input items of type `{other}` are not supported."),
                ))
            }
        }
    }
    if !pending.is_empty() {
        out.push(user_parts(pending));
    }
    Ok(())
}

fn user_parts(parts: Vec<ContentPart>) -> ChatMessage {
    let mut m = ChatMessage::text(Role::User, "");
    m.content = Some(MessageContent::Parts(parts));
    m
}

fn part(kind: &str, text: Option<String>, extra: Map<String, Value>) -> ContentPart {
    ContentPart {
        kind: kind.into(),
        text,
        extra,
    }
}

/// One content part of an input message or a function call output, as a chat part.
fn content_part(value: &Value, param: &str) -> Result<ContentPart, GatewayError> {
    let Value::Object(p) = value else {
        return Err(bad(param, "Each content part must be an object."));
    };
    let kind = p.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "input_text" | "output_text" | "text" => Ok(part(
            "text",
            Some(str_of(p, "text", param)?.to_string()),
            Map::new(),
        )),
        "input_image" => {
            let Some(url) = p.get("image_url").and_then(Value::as_str) else {
                return Err(bad(
                    &format!("{param}.image_url"),
                    "Images must be given by `image_url` (a URL or a data URL); file ids are not supported.",
                ));
            };
            let mut image = Map::new();
            image.insert("url".into(), url.into());
            if let Some(d) = p.get("detail").filter(|d| !d.is_null()) {
                image.insert("detail".into(), d.clone());
            }
            let mut extra = Map::new();
            extra.insert("image_url".into(), Value::Object(image));
            Ok(part("image_url", None, extra))
        }
        "input_file" => {
            let Some(data) = p.get("file_data").and_then(Value::as_str) else {
                return Err(bad(
                    &format!("{param}.file_data"),
                    "Files must be given inline as `file_data`; file ids and URLs are not supported.",
                ));
            };
            let mut file = Map::new();
            file.insert("file_data".into(), data.into());
            if let Some(name) = p.get("filename").and_then(Value::as_str) {
                file.insert("filename".into(), name.into());
            }
            let mut extra = Map::new();
            extra.insert("file".into(), Value::Object(file));
            Ok(part("file", None, extra))
        }
        "refusal" => Ok(part(
            "refusal",
            Some(str_of(p, "refusal", param)?.to_string()),
            Map::new(),
        )),
        other => Err(bad(
            &format!("{param}.type"),
            format!("Content parts of type `{other}` are not supported."),
        )),
    }
}

fn input_message(item: &Map<String, Value>, param: &str) -> Result<ChatMessage, GatewayError> {
    let role = match item.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("system") => Role::System,
        Some("developer") => Role::Developer,
        _ => {
            return Err(bad(
                &format!("{param}.role"),
                "`role` must be one of user, assistant, system, developer.",
            ))
        }
    };
    let mut message = ChatMessage::text(role, "");
    match item.get("content") {
        Some(Value::String(s)) => message.content = Some(MessageContent::Text(s.clone())),
        Some(Value::Array(parts)) => {
            let mut chat_parts = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                let p = content_part(p, &format!("{param}.content[{j}]"))?;
                if role != Role::User && p.kind != "text" && p.kind != "refusal" {
                    return Err(bad(
                        &format!("{param}.content[{j}]"),
                        format!("A {} message may only hold text.", role.as_str()),
                    ));
                }
                if p.kind == "refusal" {
                    let text = p.text.unwrap_or_default();
                    message.extra.insert("refusal".into(), text.into());
                } else {
                    chat_parts.push(p);
                }
            }
            message.content = if role == Role::User {
                Some(MessageContent::Parts(chat_parts))
            } else {
                // Assistant and system text as a plain string: every chat server takes it.
                let text: String = chat_parts.into_iter().filter_map(|p| p.text).collect();
                (!text.is_empty() || message.extra.is_empty()).then_some(MessageContent::Text(text))
            };
        }
        _ => {
            return Err(bad(
                &format!("{param}.content"),
                "`content` must be a string or an array of content parts.",
            ))
        }
    }
    Ok(message)
}

/// A tool as a chat function tool, and whether it is a `custom` tool; `None` for OpenAI's
/// hosted tools (web search, file search, …), which a translated model cannot call.
fn chat_tool(tool: &Value, i: usize) -> Result<Option<(Tool, bool)>, GatewayError> {
    let param = format!("tools[{i}]");
    let Value::Object(t) = tool else {
        return Err(bad(&param, "Each tool must be an object."));
    };
    let custom = match t.get("type").and_then(Value::as_str) {
        Some("function") => false,
        Some("custom") => true,
        Some(_) => return Ok(None),
        None => return Err(bad(&format!("{param}.type"), "A tool needs a `type`.")),
    };
    let name = str_of(t, "name", &param)?.to_string();
    let mut description = t
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut extra = Map::new();
    let parameters = if custom {
        if let Some(f) = t.get("format").filter(|f| f["type"] == "grammar") {
            let syntax = f["syntax"].as_str().unwrap_or("lark");
            let definition = f["definition"].as_str().unwrap_or_default();
            let d = description.get_or_insert_with(String::new);
            if !d.is_empty() {
                d.push_str("\n\n");
            }
            d.push_str(&format!(
                "The input must follow this {syntax} grammar:\n{definition}"
            ));
        }
        Some(json!({"type": "object",
            "properties": {"input": {"type": "string", "description": "The tool's input."}},
            "required": ["input"], "additionalProperties": false}))
    } else {
        if let Some(s) = t.get("strict").filter(|v| !v.is_null()) {
            extra.insert("strict".into(), s.clone());
        }
        t.get("parameters").filter(|v| !v.is_null()).cloned()
    };
    let tool = Tool {
        kind: "function".into(),
        function: Some(FunctionDef {
            name,
            description,
            parameters,
            extra,
        }),
        extra: Map::new(),
    };
    Ok(Some((tool, custom)))
}

fn chat_tool_choice(choice: &Value) -> Result<Value, GatewayError> {
    match choice {
        Value::String(s) if ["auto", "none", "required"].contains(&s.as_str()) => Ok(choice.clone()),
        Value::Object(o)
            if matches!(
                o.get("type").and_then(Value::as_str),
                Some("function") | Some("custom")
            ) =>
        {
            match o.get("name").and_then(Value::as_str) {
                Some(name) => Ok(json!({"type": "function", "function": {"name": name}})),
                None => Err(bad("tool_choice.name", "`tool_choice` must name the function.")),
            }
        }
        _ => Err(bad(
            "tool_choice",
            "`tool_choice` must be `auto`, `none`, `required` or `{\"type\":\"function\",\"name\":…}`.",
        )),
    }
}

/// `text.format` → `response_format`, `text.verbosity` → `verbosity`.
fn text_config(text: &Value, extra: &mut Map<String, Value>) -> Result<(), GatewayError> {
    let Value::Object(t) = text else {
        return Err(bad("text", "`text` must be an object."));
    };
    if let Some(v) = t.get("verbosity").filter(|v| !v.is_null()) {
        extra.insert("verbosity".into(), v.clone());
    }
    let Some(format) = t.get("format").filter(|v| !v.is_null()) else {
        return Ok(());
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => {}
        Some("json_object") => {
            extra.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some("json_schema") => {
            let (Some(name), Some(schema)) = (
                format.get("name").and_then(Value::as_str),
                format.get("schema").filter(|s| s.is_object()),
            ) else {
                return Err(bad(
                    "text.format",
                    "A `json_schema` format needs a `name` and a `schema` object.",
                ));
            };
            let mut js = json!({"name": name, "schema": schema});
            for key in ["description", "strict"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    js[key] = v.clone();
                }
            }
            extra.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": js}),
            );
        }
        _ => {
            return Err(bad(
                "text.format.type",
                "`text.format.type` must be `text`, `json_object` or `json_schema`.",
            ))
        }
    }
    Ok(())
}

/// The Responses usage object of a chat usage.
pub fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens()},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens()},
        "total_tokens": u.prompt_tokens.saturating_add(u.completion_tokens),
    })
}

/// How a response ended.
#[derive(Debug, Clone, PartialEq)]
enum Status {
    Completed,
    /// `incomplete_details.reason`: `max_output_tokens` or `content_filter`.
    Incomplete(&'static str),
    Failed(GatewayError),
}

impl Status {
    fn of_finish(finish_reason: Option<&str>) -> Status {
        match finish_reason {
            Some("length") => Status::Incomplete("max_output_tokens"),
            Some("content_filter") => Status::Incomplete("content_filter"),
            _ => Status::Completed,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Incomplete(_) => "incomplete",
            Status::Failed(_) => "failed",
        }
    }

    /// The status of the output items of a response that ended so.
    fn item_status(&self) -> &'static str {
        match self {
            Status::Completed => "completed",
            _ => "incomplete",
        }
    }
}

/// The `error` of a failed response: `code` is one of the Responses API's codes.
pub fn response_error(err: &GatewayError) -> Value {
    let code = match err.kind {
        ErrorKind::UpstreamRateLimited => "rate_limit_exceeded",
        _ => "server_error",
    };
    json!({"code": code, "message": err.message})
}

/// The body of a Responses API error: OpenAI's shape, as every other endpoint.
pub fn error_body(err: &GatewayError) -> String {
    super::openai::error_body(err)
}

fn response_object(
    meta: &ResponseMeta,
    params: &ResponseParams,
    status: &Status,
    output: Vec<Value>,
    usage: Option<&Usage>,
) -> Value {
    let (error, incomplete) = match status {
        Status::Failed(e) => (response_error(e), Value::Null),
        Status::Incomplete(reason) => (Value::Null, json!({"reason": reason})),
        _ => (Value::Null, Value::Null),
    };
    json!({
        "id": format!("resp_{}", meta.id),
        "object": "response",
        "created_at": meta.created_at,
        "status": status.name(),
        "background": false,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": params.instructions,
        "max_output_tokens": params.max_output_tokens,
        "metadata": params.metadata,
        "model": meta.model,
        "output": output,
        "parallel_tool_calls": params.parallel_tool_calls,
        "previous_response_id": null,
        "reasoning": params.reasoning,
        "store": false,
        "temperature": params.temperature,
        "text": params.text,
        "tool_choice": params.tool_choice,
        "tools": params.tools,
        "top_p": params.top_p,
        "truncation": "disabled",
        "usage": usage.map(usage_json),
        "user": params.user,
    })
}

fn item_id(prefix: &str, meta: &ResponseMeta, index: usize) -> String {
    format!("{prefix}_{}_{index}", meta.id)
}

fn reasoning_part(text: &str) -> Value {
    json!({"type": "reasoning_text", "text": text})
}

/// A reasoning item; announced (`output_item.added`) without content: its text follows as a
/// `reasoning_text` content part.
fn reasoning_item(id: String, text: &str) -> Value {
    let mut item = json!({"id": id, "type": "reasoning", "summary": []});
    if !text.is_empty() {
        item["content"] = json!([reasoning_part(text)]);
    }
    item
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn refusal_part(text: &str) -> Value {
    json!({"type": "refusal", "refusal": text})
}

fn message_item(id: String, status: &str, content: Vec<Value>) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

fn call_item(id: String, status: &str, call_id: &str, name: &str, arguments: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "arguments": arguments,
        "call_id": call_id, "name": name})
}

fn custom_call_item(id: String, call_id: &str, name: &str, input: &str) -> Value {
    json!({"id": id, "type": "custom_tool_call", "call_id": call_id, "name": name, "input": input})
}

/// The input of a custom tool call: the `input` string of the arguments the chat model wrote
/// for the function standing in for the tool, else the arguments as they are.
fn custom_input(arguments: &str) -> String {
    serde_json::from_str::<Value>(arguments)
        .ok()
        .and_then(|v| v.get("input").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| arguments.to_string())
}

/// The output item of a tool call: a `custom_tool_call` when the request declared the tool as
/// `custom`, else a `function_call`.
fn tool_call_item(
    meta: &ResponseMeta,
    params: &ResponseParams,
    index: usize,
    status: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
) -> Value {
    if params.custom_tools.iter().any(|t| t == name) {
        custom_call_item(
            item_id("ctc", meta, index),
            call_id,
            name,
            &custom_input(arguments),
        )
    } else {
        call_item(item_id("fc", meta, index), status, call_id, name, arguments)
    }
}

/// A plain chat response as a Responses `response` object.
pub fn encode_response(
    resp: &ChatCompletionResponse,
    meta: &ResponseMeta,
    params: &ResponseParams,
) -> Value {
    let choice = resp.choices.first();
    let status = Status::of_finish(choice.and_then(|c| c.finish_reason.as_deref()));
    let item_status = status.item_status();
    let mut output = Vec::new();
    if let Some(c) = choice {
        let m = &c.message;
        if let Some(r) = reasoning_of(&m.extra) {
            output.push(reasoning_item(item_id("rs", meta, output.len()), r));
        }
        let mut content = Vec::new();
        if let Some(t) = m.content.as_deref().filter(|t| !t.is_empty()) {
            content.push(text_part(t));
        }
        if let Some(r) = m.refusal.as_deref().filter(|r| !r.is_empty()) {
            content.push(refusal_part(r));
        }
        if !content.is_empty() {
            output.push(message_item(
                item_id("msg", meta, output.len()),
                item_status,
                content,
            ));
        }
        for call in m.tool_calls.iter().flatten() {
            output.push(tool_call_item(
                meta,
                params,
                output.len(),
                item_status,
                &call.id,
                &call.function.name,
                &call.function.arguments,
            ));
        }
    }
    response_object(meta, params, &status, output, resp.usage.as_ref())
}

/// An output item of a stream in progress.
#[derive(Debug, Clone)]
struct Item {
    id: String,
    kind: ItemKind,
    /// Whether its `output_item.done` was sent.
    done: bool,
}

#[derive(Debug, Clone)]
enum ItemKind {
    Reasoning(String),
    /// Content parts, each an output text (`false`) or a refusal (`true`), with their text.
    Message(Vec<(bool, String)>),
    Call {
        chat_index: u32,
        call_id: String,
        name: String,
        arguments: String,
        /// A call of a `custom` tool: its input is announced whole when the call is done.
        custom: bool,
    },
}

/// Turns the chat chunks of one stream into the Responses API's event sequence.
///
/// Call [`ResponsesStream::start`] when the stream begins (optional: [`push`](Self::push) and
/// [`finish`](Self::finish) start it when needed), [`push`](Self::push) for each chunk, and
/// [`finish`](Self::finish) once; later calls return nothing.
#[derive(Debug, Clone)]
pub struct ResponsesStream {
    meta: ResponseMeta,
    params: ResponseParams,
    sequence: u64,
    started: bool,
    finished: bool,
    items: Vec<Item>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl ResponsesStream {
    pub fn new(meta: ResponseMeta, params: ResponseParams) -> Self {
        ResponsesStream {
            meta,
            params,
            sequence: 0,
            started: false,
            finished: false,
            items: Vec::new(),
            finish_reason: None,
            usage: None,
        }
    }

    fn event(&mut self, out: &mut Vec<Event>, name: &'static str, mut data: Value) {
        data["type"] = name.into();
        data["sequence_number"] = self.sequence.into();
        self.sequence += 1;
        out.push(Event::new(name, data));
    }

    fn in_progress(&self) -> Value {
        let mut r = response_object(
            &self.meta,
            &self.params,
            &Status::Completed,
            Vec::new(),
            None,
        );
        r["status"] = "in_progress".into();
        r
    }

    /// `response.created` and `response.in_progress`, once.
    pub fn start(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        if !self.started && !self.finished {
            self.started = true;
            let r = self.in_progress();
            self.event(&mut out, "response.created", json!({"response": r}));
            let r = self.in_progress();
            self.event(&mut out, "response.in_progress", json!({"response": r}));
        }
        out
    }

    /// The events of one chat chunk (choice 0; a Responses request has one choice).
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
            self.reasoning(r, &mut out);
        }
        if let Some(t) = d.content.as_deref().filter(|t| !t.is_empty()) {
            self.text(false, t, &mut out);
        }
        if let Some(t) = d.refusal.as_deref().filter(|t| !t.is_empty()) {
            self.text(true, t, &mut out);
        }
        for call in d.tool_calls.iter().flatten() {
            let f = call.function.as_ref();
            let name = f.and_then(|f| f.name.as_deref());
            let args = f.and_then(|f| f.arguments.as_deref()).unwrap_or_default();
            self.call(call.index, call.id.as_deref(), name, args, &mut out);
        }
        if let Some(r) = &choice.finish_reason {
            self.finish_reason = Some(r.clone());
        }
        out
    }

    /// The index of the open item (the last one, unless it is done).
    fn open(&self) -> Option<usize> {
        self.items
            .len()
            .checked_sub(1)
            .filter(|&i| !self.items[i].done)
    }

    fn add_item(&mut self, prefix: &str, kind: ItemKind, out: &mut Vec<Event>) -> usize {
        self.close_open("completed", out);
        let index = self.items.len();
        let id = item_id(prefix, &self.meta, index);
        self.items.push(Item {
            id,
            kind,
            done: false,
        });
        let item = self.item_json(index, "in_progress");
        self.event(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        );
        index
    }

    fn item_json(&self, index: usize, status: &str) -> Value {
        let item = &self.items[index];
        match &item.kind {
            ItemKind::Reasoning(text) => reasoning_item(item.id.clone(), text),
            ItemKind::Message(parts) => {
                let content = parts
                    .iter()
                    .map(|(refusal, t)| {
                        if *refusal {
                            refusal_part(t)
                        } else {
                            text_part(t)
                        }
                    })
                    .collect();
                message_item(item.id.clone(), status, content)
            }
            ItemKind::Call {
                call_id,
                name,
                arguments,
                custom: true,
                ..
            } => custom_call_item(item.id.clone(), call_id, name, &custom_input(arguments)),
            ItemKind::Call {
                call_id,
                name,
                arguments,
                ..
            } => call_item(item.id.clone(), status, call_id, name, arguments),
        }
    }

    fn reasoning(&mut self, text: &str, out: &mut Vec<Event>) {
        let index = match self.open() {
            Some(i) if matches!(self.items[i].kind, ItemKind::Reasoning(_)) => i,
            _ => {
                let i = self.add_item("rs", ItemKind::Reasoning(String::new()), out);
                // The SDKs add the text's content part on this event, before any delta.
                let id = self.items[i].id.clone();
                self.event(
                    out,
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": i, "content_index": 0,
                        "part": reasoning_part("")}),
                );
                i
            }
        };
        if let ItemKind::Reasoning(t) = &mut self.items[index].kind {
            t.push_str(text);
        }
        let id = self.items[index].id.clone();
        self.event(
            out,
            "response.reasoning_text.delta",
            json!({"item_id": id, "output_index": index, "content_index": 0, "delta": text}),
        );
    }

    fn text(&mut self, refusal: bool, text: &str, out: &mut Vec<Event>) {
        let index = match self.open() {
            Some(i) if matches!(self.items[i].kind, ItemKind::Message(_)) => i,
            _ => self.add_item("msg", ItemKind::Message(Vec::new()), out),
        };
        let id = self.items[index].id.clone();
        let ItemKind::Message(parts) = &self.items[index].kind else {
            return;
        };
        let same_part = parts.last().is_some_and(|(r, _)| *r == refusal);
        if !same_part {
            if !parts.is_empty() {
                self.close_part(index, out);
            }
            if let ItemKind::Message(parts) = &mut self.items[index].kind {
                parts.push((refusal, String::new()));
            }
            let content_index = self.part_count(index) - 1;
            let part = if refusal {
                refusal_part("")
            } else {
                text_part("")
            };
            self.event(
                out,
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": content_index,
                    "part": part}),
            );
        }
        let content_index = self.part_count(index) - 1;
        if let ItemKind::Message(parts) = &mut self.items[index].kind {
            if let Some((_, t)) = parts.last_mut() {
                t.push_str(text);
            }
        }
        if refusal {
            self.event(
                out,
                "response.refusal.delta",
                json!({"item_id": id, "output_index": index, "content_index": content_index,
                    "delta": text}),
            );
        } else {
            self.event(
                out,
                "response.output_text.delta",
                json!({"item_id": id, "output_index": index, "content_index": content_index,
                    "delta": text, "logprobs": []}),
            );
        }
    }

    fn part_count(&self, index: usize) -> usize {
        match &self.items[index].kind {
            ItemKind::Message(parts) => parts.len(),
            _ => 0,
        }
    }

    /// `response.output_text.done` (or `refusal.done`) and `response.content_part.done` of the
    /// message's last part.
    fn close_part(&mut self, index: usize, out: &mut Vec<Event>) {
        let id = self.items[index].id.clone();
        let ItemKind::Message(parts) = &self.items[index].kind else {
            return;
        };
        let Some((refusal, text)) = parts.last().cloned() else {
            return;
        };
        let content_index = parts.len() - 1;
        if refusal {
            self.event(
                out,
                "response.refusal.done",
                json!({"item_id": id, "output_index": index, "content_index": content_index,
                    "refusal": text}),
            );
        } else {
            self.event(
                out,
                "response.output_text.done",
                json!({"item_id": id, "output_index": index, "content_index": content_index,
                    "text": text, "logprobs": []}),
            );
        }
        let part = if refusal {
            refusal_part(&text)
        } else {
            text_part(&text)
        };
        self.event(
            out,
            "response.content_part.done",
            json!({"item_id": id, "output_index": index, "content_index": content_index,
                "part": part}),
        );
    }

    fn call(
        &mut self,
        chat_index: u32,
        id: Option<&str>,
        name: Option<&str>,
        arguments: &str,
        out: &mut Vec<Event>,
    ) {
        // The call this delta continues: the last one of its chat index, unless the delta names
        // another call id (some OpenAI-compatible servers give every call index 0).
        let existing = self.items.iter().rposition(|it| match &it.kind {
            ItemKind::Call {
                chat_index: c,
                call_id,
                ..
            } => *c == chat_index && id.is_none_or(|id| id == call_id),
            _ => false,
        });
        let index = match existing {
            Some(i) => i,
            None => {
                let call_id = id
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("call_{}_{}", self.meta.id, chat_index));
                let name = name.unwrap_or_default().to_string();
                let custom = self.params.custom_tools.contains(&name);
                self.add_item(
                    if custom { "ctc" } else { "fc" },
                    ItemKind::Call {
                        chat_index,
                        call_id,
                        name,
                        arguments: String::new(),
                        custom,
                    },
                    out,
                )
            }
        };
        if arguments.is_empty() {
            return;
        }
        let mut custom = false;
        if let ItemKind::Call {
            arguments: a,
            custom: c,
            ..
        } = &mut self.items[index].kind
        {
            a.push_str(arguments);
            custom = *c;
        }
        // A custom tool's input is JSON-wrapped until the call is done: no deltas before.
        if !self.items[index].done && !custom {
            let id = self.items[index].id.clone();
            self.event(
                out,
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": index, "delta": arguments}),
            );
        }
    }

    /// Ends the open item, if any: its closing content events and `response.output_item.done`.
    fn close_open(&mut self, status: &str, out: &mut Vec<Event>) {
        let Some(index) = self.open() else {
            return;
        };
        let id = self.items[index].id.clone();
        match self.items[index].kind.clone() {
            ItemKind::Reasoning(text) => {
                self.event(
                    out,
                    "response.reasoning_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                        "text": text}),
                );
                self.event(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                        "part": reasoning_part(&text)}),
                );
            }
            ItemKind::Message(_) => self.close_part(index, out),
            ItemKind::Call {
                arguments,
                custom: true,
                ..
            } => {
                let input = custom_input(&arguments);
                if !input.is_empty() {
                    self.event(
                        out,
                        "response.custom_tool_call_input.delta",
                        json!({"item_id": id, "output_index": index, "delta": input}),
                    );
                }
                self.event(
                    out,
                    "response.custom_tool_call_input.done",
                    json!({"item_id": id, "output_index": index, "input": input}),
                );
            }
            ItemKind::Call { arguments, .. } => self.event(
                out,
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": index, "arguments": arguments}),
            ),
        }
        self.items[index].done = true;
        let item = self.item_json(index, status);
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }

    /// The last events: the open item's end and `response.completed`, `response.incomplete` or
    /// `response.failed` with the whole response. `usage` (the gateway's final count) wins over
    /// the usage the chunks carried; without either the response's `usage` is null.
    pub fn finish(&mut self, end: StreamEnd, usage: Option<&Usage>) -> Vec<Event> {
        if self.finished {
            return Vec::new();
        }
        let mut out = self.start();
        self.finished = true;
        let status = match end {
            StreamEnd::Completed => Status::of_finish(self.finish_reason.as_deref()),
            StreamEnd::Truncated => Status::Incomplete("max_output_tokens"),
            StreamEnd::Failed(e) => Status::Failed(e),
        };
        let item_status = status.item_status();
        self.close_open(item_status, &mut out);
        let output = (0..self.items.len())
            .map(|i| self.item_json(i, item_status))
            .collect();
        let usage = usage.cloned().or_else(|| self.usage.clone());
        let response = response_object(&self.meta, &self.params, &status, output, usage.as_ref());
        let name = match status {
            Status::Completed => "response.completed",
            Status::Incomplete(_) => "response.incomplete",
            Status::Failed(_) => "response.failed",
        };
        self.event(&mut out, name, json!({"response": response}));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::inbound::testing::{assert_events, chunks, fixture};

    fn meta() -> ResponseMeta {
        ResponseMeta {
            id: "01jtest".into(),
            created_at: 1_741_476_777,
            model: "gpt-4o-mini".into(),
        }
    }

    fn decode(body: &str) -> ResponsesRequest {
        decode_request(body.as_bytes()).unwrap()
    }

    fn decode_err(body: &str) -> GatewayError {
        decode_request(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn string_input_and_defaults() {
        let r = decode(r#"{"model":"gpt-4o-mini","input":"Hello"}"#);
        let chat = serde_json::to_value(&r.chat).unwrap();
        assert_eq!(
            chat,
            json!({"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]})
        );
        assert!(!r.params.stream && r.params.parallel_tool_calls);
        assert_eq!(r.params.tool_choice, "auto");
        assert_eq!(r.params.text, json!({"format": {"type": "text"}}));
    }

    #[test]
    fn request_items_tools_and_options_translate_to_chat() {
        let r = decode(fixture(include_bytes!(
            "../../../tests/fixtures/responses/request_items.json"
        )));
        let chat = serde_json::to_value(&r.chat).unwrap();
        let expected: Value = serde_json::from_str(fixture(include_bytes!(
            "../../../tests/fixtures/responses/request_items.chat.json"
        )))
        .unwrap();
        assert_eq!(chat, expected);
        assert!(r.params.stream);
        assert_eq!(r.params.max_output_tokens, Some(500));
        assert_eq!(r.params.instructions.as_deref(), Some("You are terse."));
        assert_eq!(r.params.metadata, json!({"run": "7"}));
        // The chat request is one the chat endpoint itself accepts.
        let again = ChatCompletionRequest::from_json(&serde_json::to_vec(&r.chat).unwrap());
        assert_eq!(again.unwrap(), r.chat);
    }

    #[test]
    fn tool_output_images_follow_as_a_user_message() {
        let r = decode(
            r#"{"model":"m","input":[
            {"type":"function_call","call_id":"c1","name":"shot","arguments":"{}"},
            {"type":"function_call_output","call_id":"c1","output":[
              {"type":"input_text","text":"see image"},
              {"type":"input_image","image_url":"data:image/png;base64,AAAA"}]},
            {"role":"user","content":"what is it?"}]}"#,
        );
        let m = serde_json::to_value(&r.chat.messages).unwrap();
        assert_eq!(m[0]["tool_calls"][0]["id"], "c1");
        assert!(m[0].get("content").is_none());
        assert_eq!(
            m[1],
            json!({"role":"tool","content":"see image","tool_call_id":"c1"})
        );
        assert_eq!(
            m[2],
            json!({"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]})
        );
        assert_eq!(m[3], json!({"role":"user","content":"what is it?"}));
    }

    #[test]
    fn custom_tools_become_functions_of_one_string_and_hosted_tools_are_dropped() {
        let r = decode(
            r#"{"model":"m","tools":[
              {"type":"web_search"},
              {"type":"custom","name":"apply_patch","description":"Edit files.",
               "format":{"type":"grammar","syntax":"lark","definition":"start: \"*** Begin Patch\""}},
              {"type":"function","name":"shell","parameters":{"type":"object"}}],
            "tool_choice":{"type":"custom","name":"apply_patch"},
            "input":[{"role":"user","content":"fix it"},
              {"type":"custom_tool_call","call_id":"c1","name":"apply_patch","input":"*** Begin Patch"},
              {"type":"custom_tool_call_output","call_id":"c1","output":"Done!"}]}"#,
        );
        assert_eq!(r.params.custom_tools, ["apply_patch"]);
        assert_eq!(r.params.tools.len(), 3, "the response echoes every tool");
        let tools = serde_json::to_value(r.chat.tools.as_ref().unwrap()).unwrap();
        assert_eq!(tools.as_array().unwrap().len(), 2);
        assert_eq!(
            tools[0],
            json!({"type":"function","function":{"name":"apply_patch",
                "description":"Edit files.\n\nThe input must follow this lark grammar:\nstart: \"*** Begin Patch\"",
                "parameters":{"type":"object","properties":{"input":{"type":"string","description":"The tool's input."}},
                    "required":["input"],"additionalProperties":false}}})
        );
        assert_eq!(
            r.chat.extra["tool_choice"],
            json!({"type":"function","function":{"name":"apply_patch"}})
        );
        let m = serde_json::to_value(&r.chat.messages).unwrap();
        assert_eq!(
            m[1]["tool_calls"][0]["function"],
            json!({"name":"apply_patch","arguments":"{\"input\":\"*** Begin Patch\"}"})
        );
        assert_eq!(
            m[2],
            json!({"role":"tool","tool_call_id":"c1","content":"Done!"})
        );
        let e = decode_err(r#"{"model":"m","input":"x","tool_choice":{"type":"web_search"}}"#);
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
    }

    #[test]
    fn custom_tool_calls_come_back_as_custom_tool_call_items() {
        let params =
            decode(r#"{"model":"m","input":"x","tools":[{"type":"custom","name":"apply_patch"}]}"#)
                .params;
        let mut resp = chat_response(include_bytes!(
            "../../../tests/fixtures/responses/chat_response_tools.json"
        ));
        let call = &mut resp.choices[0].message.tool_calls.as_mut().unwrap()[0];
        call.function.name = "apply_patch".into();
        call.function.arguments = r#"{"input":"*** Begin Patch\n"}"#.into();
        let got = encode_response(&resp, &meta(), &params);
        assert_eq!(
            got["output"][1],
            json!({"id":"ctc_01jtest_1","type":"custom_tool_call","call_id":"call_12345xyz",
                "name":"apply_patch","input":"*** Begin Patch\n"})
        );

        // Streamed: the input is announced whole when the call is done.
        let mut s = ResponsesStream::new(meta(), params);
        let chunk = |tc: Value| -> ChatCompletionChunk {
            serde_json::from_value(json!({"choices":[{"index":0,"delta":{"tool_calls":[tc]}}]}))
                .unwrap()
        };
        let mut events = s.push(&chunk(json!({"index":0,"id":"c9","type":"function",
            "function":{"name":"apply_patch","arguments":"{\"input\":\"*** Begin"}})));
        events.extend(s.push(&chunk(
            json!({"index":0,"function":{"arguments":" Patch\"}"}}),
        )));
        events.extend(s.finish(StreamEnd::Completed, None));
        let names: Vec<_> = events.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.custom_tool_call_input.delta",
                "response.custom_tool_call_input.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert_eq!(
            events[2].data["item"],
            json!({"id":"ctc_01jtest_0","type":"custom_tool_call","call_id":"c9","name":"apply_patch","input":""})
        );
        assert_eq!(events[3].data["delta"], "*** Begin Patch");
        assert_eq!(events[4].data["input"], "*** Begin Patch");
        assert_eq!(events[5].data["item"]["input"], "*** Begin Patch");
        assert_eq!(
            events[6].data["response"]["output"][0]["input"],
            "*** Begin Patch"
        );
    }

    #[test]
    fn json_schema_format_and_reasoning_effort() {
        let r = decode(
            r#"{"model":"m","input":"x","reasoning":{"effort":"low","summary":"auto"},
            "text":{"format":{"type":"json_schema","name":"pt","strict":true,
            "schema":{"type":"object","properties":{"x":{"type":"number"}}}}}}"#,
        );
        assert_eq!(r.chat.extra["reasoning_effort"], "low");
        assert_eq!(
            r.chat.extra["response_format"],
            json!({"type":"json_schema","json_schema":{"name":"pt","strict":true,
                "schema":{"type":"object","properties":{"x":{"type":"number"}}}}})
        );
        let r = decode(r#"{"model":"m","input":"x","text":{"format":{"type":"json_object"}}}"#);
        assert_eq!(
            r.chat.extra["response_format"],
            json!({"type":"json_object"})
        );
    }

    #[test]
    fn accepted_fields_that_are_dropped() {
        let r = decode(
            r#"{"model":"m","input":"x","store":true,"include":["reasoning.encrypted_content"],
            "truncation":"auto","metadata":{"a":"b"},"stream_options":{"include_obfuscation":false},
            "prompt_cache_key":"k","safety_identifier":"s","service_tier":"auto",
            "client_metadata":{"x":"y"},
            "previous_response_id":null,"background":false}"#,
        );
        for k in [
            "store",
            "include",
            "truncation",
            "metadata",
            "stream_options",
            "prompt_cache_key",
            "safety_identifier",
            "service_tier",
            "client_metadata",
        ] {
            assert!(
                !r.chat.extra.contains_key(k),
                "{k} must not reach the provider"
            );
        }
    }

    #[test]
    fn plugin_fields_are_refused_with_where_plugins_run() {
        for field in crate::core::plugins::PLUGIN_FIELDS {
            let body = format!(r#"{{"model":"m","input":"x","{field}":["weather"]}}"#);
            let e = decode_request(body.as_bytes()).unwrap_err();
            assert_eq!((e.status(), e.param.as_deref()), (400, Some(*field)));
            assert!(e.message.contains("/v1/chat/completions"), "{}", e.message);
        }
    }

    #[test]
    fn rejects_what_cannot_be_translated_naming_the_field() {
        let cases = [
            (r#"{"input":"x"}"#, "model"),
            (r#"{"model":"m"}"#, "input"),
            (r#"{"model":"m","input":[]}"#, "input"),
            (r#"{"model":"m","input":7}"#, "input"),
            (
                r#"{"model":"m","input":"x","previous_response_id":"resp_1"}"#,
                "previous_response_id",
            ),
            (
                r#"{"model":"m","input":"x","conversation":"conv_1"}"#,
                "conversation",
            ),
            (
                r#"{"model":"m","input":"x","background":true}"#,
                "background",
            ),
            (r#"{"model":"m","input":"x","frobnicate":1}"#, "frobnicate"),
            (
                r#"{"model":"m","input":"x","tools":[{"name":"f"}]}"#,
                "tools[0].type",
            ),
            (
                r#"{"model":"m","input":"x","tools":[{"type":"function"}]}"#,
                "tools[0].name",
            ),
            (
                r#"{"model":"m","input":"x","tool_choice":{"type":"web_search"}}"#,
                "tool_choice",
            ),
            (
                r#"{"model":"m","input":"x","max_output_tokens":0}"#,
                "max_output_tokens",
            ),
            (
                r#"{"model":"m","input":"x","text":{"format":{"type":"json_schema"}}}"#,
                "text.format",
            ),
            (
                r#"{"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}"#,
                "input[0]",
            ),
            (
                r#"{"model":"m","input":[{"type":"web_search_call","id":"ws"}]}"#,
                "input[0].type",
            ),
            (
                r#"{"model":"m","input":[{"role":"wizard","content":"x"}]}"#,
                "input[0].role",
            ),
            (
                r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_image","file_id":"f"}]}]}"#,
                "input[0].content[0].image_url",
            ),
            (
                r#"{"model":"m","input":[{"role":"system","content":[{"type":"input_image","image_url":"u"}]}]}"#,
                "input[0].content[0]",
            ),
            (
                r#"{"model":"m","input":[{"type":"function_call","name":"f","arguments":"{}"}]}"#,
                "input[0].call_id",
            ),
        ];
        for (body, param) in cases {
            let e = decode_err(body);
            assert_eq!(e.status(), 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
            let v: Value = serde_json::from_str(&error_body(&e)).unwrap();
            assert_eq!(v["error"]["type"], "invalid_request_error");
            assert_eq!(v["error"]["param"], param);
        }
        let e = decode_err("{");
        assert!(e.message.contains("not valid JSON"));
    }

    fn chat_response(body: &'static [u8]) -> ChatCompletionResponse {
        serde_json::from_str(fixture(body)).unwrap()
    }

    fn params() -> ResponseParams {
        decode(r#"{"model":"gpt-4o-mini","input":"hi"}"#).params
    }

    #[test]
    fn plain_response_with_text_and_tool_calls() {
        let resp = chat_response(include_bytes!(
            "../../../tests/fixtures/responses/chat_response_tools.json"
        ));
        let got = encode_response(&resp, &meta(), &params());
        let want: Value = serde_json::from_str(fixture(include_bytes!(
            "../../../tests/fixtures/responses/response_tools.json"
        )))
        .unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn function_calls_round_trip_through_a_translated_turn() {
        let resp = chat_response(include_bytes!(
            "../../../tests/fixtures/responses/chat_response_tools.json"
        ));
        let response = encode_response(&resp, &meta(), &params());
        // The client sends the output items back with the call's output (store: false style).
        let mut input = vec![json!({"role": "user", "content": "Weather in Paris?"})];
        input.extend(response["output"].as_array().unwrap().iter().cloned());
        input.push(
            json!({"type": "function_call_output", "call_id": "call_12345xyz",
            "output": "{\"temperature\": 15}"}),
        );
        let body = json!({"model": "m", "input": input});
        let chat = decode(&body.to_string()).chat;
        let original = &resp.choices[0].message;
        let assistant = &chat.messages[1];
        assert_eq!(assistant.role, Role::Assistant);
        assert_eq!(assistant.text_content(), original.content.clone().unwrap());
        assert_eq!(assistant.tool_calls, original.tool_calls);
        assert_eq!(chat.messages[2].role, Role::Tool);
        assert_eq!(
            chat.messages[2].tool_call_id.as_deref(),
            Some("call_12345xyz")
        );
        assert_eq!(chat.messages.len(), 3);
    }

    #[test]
    fn plain_response_status_follows_finish_reason() {
        let mut resp = chat_response(include_bytes!(
            "../../../tests/fixtures/responses/chat_response_tools.json"
        ));
        resp.choices[0].finish_reason = Some("length".into());
        let got = encode_response(&resp, &meta(), &params());
        assert_eq!(got["status"], "incomplete");
        assert_eq!(got["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(got["output"][0]["status"], "incomplete");
        resp.choices[0].finish_reason = Some("content_filter".into());
        let got = encode_response(&resp, &meta(), &params());
        assert_eq!(got["incomplete_details"]["reason"], "content_filter");
        resp.choices[0]
            .message
            .extra
            .insert("reasoning_content".into(), "hmm".into());
        resp.choices[0].message.content = None;
        resp.choices[0].message.refusal = Some("no".into());
        resp.choices[0].message.tool_calls = None;
        let got = encode_response(&resp, &meta(), &params());
        assert_eq!(got["output"][0]["type"], "reasoning");
        assert_eq!(got["output"][0]["content"][0]["text"], "hmm");
        assert_eq!(got["output"][1]["id"], "msg_01jtest_1");
        assert_eq!(
            got["output"][1]["content"],
            json!([{"type":"refusal","refusal":"no"}])
        );
    }

    fn run(
        stream: &mut ResponsesStream,
        chunks: &[ChatCompletionChunk],
        end: StreamEnd,
    ) -> Vec<Event> {
        let mut events = stream.start();
        for c in chunks {
            events.extend(stream.push(c));
        }
        events.extend(stream.finish(end, None));
        events
    }

    #[test]
    fn stream_text_matches_the_documented_sequence() {
        let input = chunks(include_bytes!(
            "../../../tests/fixtures/responses/stream_text.chunks.jsonl"
        ));
        let mut s = ResponsesStream::new(meta(), params());
        let events = run(&mut s, &input, StreamEnd::Completed);
        assert_events(
            &events,
            include_bytes!("../../../tests/fixtures/responses/stream_text.sse"),
        );
        // Nothing after the end.
        assert!(s.push(&input[0]).is_empty());
        assert!(s.finish(StreamEnd::Completed, None).is_empty());
    }

    #[test]
    fn stream_reasoning_text_and_tool_calls_match_the_fixture() {
        let input = chunks(include_bytes!(
            "../../../tests/fixtures/responses/stream_tools.chunks.jsonl"
        ));
        let mut s = ResponsesStream::new(meta(), params());
        let events = run(&mut s, &input, StreamEnd::Completed);
        assert_events(
            &events,
            include_bytes!("../../../tests/fixtures/responses/stream_tools.sse"),
        );
    }

    #[test]
    fn sequence_numbers_count_from_zero_without_gaps() {
        let input = chunks(include_bytes!(
            "../../../tests/fixtures/responses/stream_tools.chunks.jsonl"
        ));
        let mut s = ResponsesStream::new(meta(), params());
        let events = run(&mut s, &input, StreamEnd::Completed);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.data["sequence_number"], i as u64);
            assert_eq!(e.data["type"], e.name);
        }
    }

    #[test]
    fn broken_upstream_fails_the_response() {
        let input = chunks(include_bytes!(
            "../../../tests/fixtures/responses/stream_text.chunks.jsonl"
        ));
        let mut s = ResponsesStream::new(meta(), params());
        let mut events = s.start();
        events.extend(s.push(&input[0]));
        events.extend(s.push(&input[1]));
        let err = GatewayError::new(ErrorKind::UpstreamFailed, "The provider closed the stream.");
        events.extend(s.finish(StreamEnd::Failed(err), None));
        let names: Vec<_> = events.iter().map(|e| e.name).collect();
        assert_eq!(
            names[names.len() - 5..],
            [
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.failed"
            ]
        );
        let last = &events.last().unwrap().data["response"];
        assert_eq!(last["status"], "failed");
        assert_eq!(last["error"]["code"], "server_error");
        assert_eq!(last["output"][0]["status"], "incomplete");
        assert_eq!(last["usage"], Value::Null);

        let mut s = ResponsesStream::new(meta(), params());
        let rate = GatewayError::new(ErrorKind::UpstreamRateLimited, "slow down");
        let events = s.finish(StreamEnd::Failed(rate), None);
        let names: Vec<_> = events.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.failed"
            ]
        );
        assert_eq!(
            events[2].data["response"]["error"]["code"],
            "rate_limit_exceeded"
        );
    }

    #[test]
    fn truncation_and_length_end_incomplete_with_the_gateways_usage() {
        let input = chunks(include_bytes!(
            "../../../tests/fixtures/responses/stream_text.chunks.jsonl"
        ));
        let mut s = ResponsesStream::new(meta(), params());
        let mut events = s.push(&input[0]);
        events.extend(s.push(&input[1]));
        let counted = Usage::new(12, 3);
        events.extend(s.finish(StreamEnd::Truncated, Some(&counted)));
        let last = events.last().unwrap();
        assert_eq!(last.name, "response.incomplete");
        assert_eq!(
            last.data["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(last.data["response"]["usage"]["input_tokens"], 12);
        assert_eq!(last.data["response"]["usage"]["total_tokens"], 15);

        let mut length = input.clone();
        for c in &mut length {
            for ch in &mut c.choices {
                if ch.finish_reason.is_some() {
                    ch.finish_reason = Some("length".into());
                }
            }
        }
        let mut s = ResponsesStream::new(meta(), params());
        let events = run(&mut s, &length, StreamEnd::Completed);
        assert_eq!(events.last().unwrap().name, "response.incomplete");
    }

    #[test]
    fn calls_sharing_an_index_but_not_an_id_are_two_calls() {
        let mut s = ResponsesStream::new(meta(), params());
        let call = |id: &str, name: &str| -> ChatCompletionChunk {
            serde_json::from_value(json!({"choices":[{"index":0,"delta":{"tool_calls":[
                {"index":0,"id":id,"type":"function","function":{"name":name,"arguments":"{}"}}]}}]}))
            .unwrap()
        };
        let mut events = s.push(&call("a", "f"));
        events.extend(s.push(&call("a", "f")));
        events.extend(s.push(&call("b", "g")));
        events.extend(s.finish(StreamEnd::Completed, None));
        let output = &events.last().unwrap().data["response"]["output"];
        assert_eq!(output.as_array().unwrap().len(), 2);
        assert_eq!(
            (&output[0]["call_id"], &output[0]["arguments"]),
            (&json!("a"), &json!("{}{}"))
        );
        assert_eq!(
            (&output[1]["call_id"], &output[1]["name"]),
            (&json!("b"), &json!("g"))
        );
    }

    #[test]
    fn interleaved_tool_arguments_reach_the_final_output() {
        let mut s = ResponsesStream::new(meta(), params());
        let chunk = |v: Value| -> ChatCompletionChunk { serde_json::from_value(v).unwrap() };
        let call = |i: u32, id: Option<&str>, args: &str| {
            let mut tc = json!({"index": i, "function": {"arguments": args}});
            if let Some(id) = id {
                tc["id"] = id.into();
                tc["function"]["name"] = format!("f{i}").into();
            }
            chunk(json!({"choices":[{"index":0,"delta":{"tool_calls":[tc]}}]}))
        };
        let mut events = s.push(&call(0, Some("a"), "{\"x\":"));
        events.extend(s.push(&call(1, Some("b"), "{}")));
        events.extend(s.push(&call(0, None, "1}")));
        events.extend(s.finish(StreamEnd::Completed, None));
        let output = &events.last().unwrap().data["response"]["output"];
        assert_eq!(output[0]["arguments"], "{\"x\":1}");
        assert_eq!(output[1]["arguments"], "{}");
        assert_eq!(output[1]["call_id"], "b");
    }
}
