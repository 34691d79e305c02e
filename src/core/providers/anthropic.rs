//! Anthropic's Messages API, `POST /v1/messages`.
//!
//! Follows the Messages API reference (<https://docs.anthropic.com/en/api/messages>) and its
//! streaming guide (<https://docs.anthropic.com/en/docs/build-with-claude/streaming>):
//!
//! * system and developer messages become the top-level `system` blocks; other messages become
//!   `user`/`assistant` turns of content blocks, consecutive turns of one role merged (the API
//!   wants them alternating);
//! * `max_tokens` is required: the request's cap, else the model's `max_output_tokens`;
//! * images: base64 data URLs become `{"type":"image","source":{"type":"base64",…}}`, other URLs
//!   `{"source":{"type":"url",…}}`;
//! * tools: `tools[].function` → `{name, description, input_schema}`; an assistant's
//!   `tool_calls` → `tool_use` blocks; `tool` messages → `tool_result` blocks in a user turn;
//!   `tool_choice` and `parallel_tool_calls` map to `tool_choice` (`auto`/`any`/`tool`/`none`,
//!   `disable_parallel_tool_use`);
//! * headers `x-api-key` and `anthropic-version` (config `anthropic_version`, default
//!   [`API_VERSION`]; config `anthropic_beta` adds `anthropic-beta`);
//! * usage: `input_tokens` excludes cache reads and writes, so OpenAI's `prompt_tokens` is
//!   `input_tokens + cache_creation_input_tokens + cache_read_input_tokens`, with the reads as
//!   `cached_tokens` and the writes as `Usage::cache_writes` (by lifetime from
//!   `cache_creation.ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens`; writes without a
//!   split are 5-minute writes), billed at the cache-write prices;
//! * stream events `message_start`, `content_block_start/delta/stop` (`text_delta`,
//!   `input_json_delta`, `thinking_delta`), `message_delta` (cumulative usage, `stop_reason`),
//!   `message_stop`, `ping` (sent on as an SSE comment) and `error`.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::mapping::{
    self, arguments_value, error_for_status, image_of, parts, stop_sequences, unsupported,
    ChunkFactory, GeneratedCall, Image,
};
use super::{
    join_url, Adapter, ResponseContext, Route, StreamDecoder, StreamItem, UpstreamRequest,
};
use crate::core::error::GatewayError;
use crate::core::openai::{
    CacheWrites, ChatCompletionRequest, ChatCompletionResponse, Role, Usage,
};
use crate::core::sse::{SseEvent, SseParser};

/// The public API's base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com/v1";
/// The `anthropic-version` header sent when the provider config names none.
pub const API_VERSION: &str = "2023-06-01";
/// `max_tokens` when neither the request nor the model sets a cap.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

const NAME: &str = "Anthropic";

pub struct AnthropicAdapter;

fn image_block(image: Image<'_>) -> Value {
    match image {
        Image::Inline { mime, data } => json!({"type": "image",
            "source": {"type": "base64", "media_type": mime, "data": data}}),
        Image::Url(url) => json!({"type": "image", "source": {"type": "url", "url": url}}),
    }
}

/// Content blocks of a user or assistant message's content.
fn content_blocks(
    message: &crate::core::openai::ChatMessage,
    param: &str,
) -> Result<Vec<Value>, GatewayError> {
    let mut blocks = Vec::new();
    for part in parts(message) {
        match part.kind.as_str() {
            "text" => {
                let text = part.text.unwrap_or_default();
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
            }
            "image_url" => match image_of(&part) {
                Some(image) => blocks.push(image_block(image)),
                None => {
                    return Err(GatewayError::invalid_param(
                        param,
                        "Invalid image_url part.",
                    ))
                }
            },
            "refusal" => {}
            other => {
                return Err(unsupported(
                    param,
                    NAME,
                    &format!("content parts of type `{other}`"),
                ))
            }
        }
    }
    Ok(blocks)
}

/// The Messages API body for a request.
pub fn request_body(route: &Route, req: &ChatCompletionRequest) -> Result<Value, GatewayError> {
    mapping::check_billable(route, req)?;
    if req.choices() > 1 {
        return Err(unsupported("n", NAME, "more than one choice (`n`)"));
    }
    if let Some(f) = req.extra.get("response_format") {
        if f["type"] != "text" {
            return Err(unsupported("response_format", NAME, "`response_format`"));
        }
    }
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let param = format!("messages[{i}].content");
        let (role, blocks) = match m.role {
            Role::System | Role::Developer => {
                let text = m.text_content();
                if !text.is_empty() {
                    system.push(json!({"type": "text", "text": text}));
                }
                continue;
            }
            Role::User => ("user", content_blocks(m, &param)?),
            Role::Assistant => {
                let mut blocks = content_blocks(m, &param)?;
                for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                    let input = arguments_value(
                        &call.function.arguments,
                        &format!("messages[{i}].tool_calls[{j}].function.arguments"),
                    )?;
                    blocks.push(json!({"type": "tool_use", "id": call.id,
                        "name": call.function.name, "input": input}));
                }
                ("assistant", blocks)
            }
            Role::Tool | Role::Function => {
                let id = m.tool_call_id.clone().ok_or_else(|| {
                    GatewayError::invalid_param(
                        &format!("messages[{i}].tool_call_id"),
                        "A tool message needs `tool_call_id`.",
                    )
                })?;
                let content = content_blocks(m, &param)?;
                let mut block = json!({"type": "tool_result", "tool_use_id": id});
                if !content.is_empty() {
                    block["content"] = Value::Array(content);
                }
                ("user", vec![block])
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();

    let mut body = Map::new();
    body.insert("model".into(), route.upstream_model.clone().into());
    body.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    let max_tokens = route.output_cap(req).unwrap_or(DEFAULT_MAX_TOKENS);
    body.insert("max_tokens".into(), max_tokens.into());
    if req.is_stream() {
        body.insert("stream".into(), true.into());
    }
    for name in ["temperature", "top_p"] {
        if let Some(v) = req.extra.get(name).filter(|v| !v.is_null()) {
            body.insert(name.into(), v.clone());
        }
    }
    if let Some(stop) = stop_sequences(req) {
        body.insert("stop_sequences".into(), Value::Array(stop));
    }
    if let Some(user) = req.extra.get("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    if let Some(tools) = &req.tools {
        let mut list = Vec::new();
        for (i, tool) in tools.iter().enumerate() {
            let Some(f) = tool.function.as_ref().filter(|_| tool.kind == "function") else {
                return Err(unsupported(
                    &format!("tools[{i}]"),
                    NAME,
                    &format!("tools of type `{}`", tool.kind),
                ));
            };
            let mut t = json!({"name": f.name,
                "input_schema": f.parameters.clone().unwrap_or_else(|| json!({"type": "object", "properties": {}}))});
            if let Some(d) = &f.description {
                t["description"] = d.clone().into();
            }
            list.push(t);
        }
        body.insert("tools".into(), Value::Array(list));
    }
    let mut choice = match req.extra.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({"type": "auto"})),
            "required" => Some(json!({"type": "any"})),
            "none" => Some(json!({"type": "none"})),
            other => {
                return Err(GatewayError::invalid_param(
                    "tool_choice",
                    format!("Unknown tool_choice `{other}`."),
                ))
            }
        },
        Some(v) => match v["function"]["name"].as_str() {
            Some(name) => Some(json!({"type": "tool", "name": name})),
            None => {
                return Err(GatewayError::invalid_param(
                    "tool_choice",
                    "tool_choice must be a string or name a function.",
                ))
            }
        },
    };
    if req.extra.get("parallel_tool_calls") == Some(&Value::Bool(false)) && req.tools.is_some() {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = true.into();
        }
    }
    if let Some(c) = choice {
        body.insert("tool_choice".into(), c);
    }
    mapping::copy_allowed(route, req, &mut body);
    Ok(Value::Object(body))
}

/// OpenAI's finish reason for a `stop_reason`.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => mapping::LENGTH,
        Some("tool_use") => mapping::TOOL_CALLS,
        Some("refusal") => mapping::CONTENT_FILTER,
        _ => mapping::STOP,
    }
}

/// Anthropic's usage counters; later stream events overwrite the fields they carry.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct Counts {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    /// `cache_creation: {ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}`, the writes by
    /// lifetime; read leniently (a malformed split never loses the other counts).
    #[serde(default, deserialize_with = "write_split")]
    cache_creation: Option<WriteSplit>,
}

/// The cache writes by lifetime, as reported.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct WriteSplit {
    five_minutes: Option<u64>,
    one_hour: Option<u64>,
}

fn write_split<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<WriteSplit>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(v.is_object().then(|| WriteSplit {
        five_minutes: v["ephemeral_5m_input_tokens"].as_u64(),
        one_hour: v["ephemeral_1h_input_tokens"].as_u64(),
    }))
}

impl Counts {
    fn update(&mut self, newer: &Counts) {
        let pick = |new: Option<u64>, old: Option<u64>| new.or(old);
        self.input_tokens = pick(newer.input_tokens, self.input_tokens);
        self.output_tokens = pick(newer.output_tokens, self.output_tokens);
        self.cache_creation_input_tokens = pick(
            newer.cache_creation_input_tokens,
            self.cache_creation_input_tokens,
        );
        self.cache_read_input_tokens =
            pick(newer.cache_read_input_tokens, self.cache_read_input_tokens);
        self.cache_creation = newer.cache_creation.or(self.cache_creation);
    }

    /// The cache writes: the 1-hour part as reported (at most the total), the rest 5-minute
    /// writes, Anthropic's default lifetime, also when the split is missing or disagrees. The
    /// total is the larger of `cache_creation_input_tokens` and the split's sum.
    fn cache_writes(&self) -> CacheWrites {
        let split = self.cache_creation.unwrap_or_default();
        let total = self.cache_creation_input_tokens.unwrap_or(0).max(
            split
                .five_minutes
                .unwrap_or(0)
                .saturating_add(split.one_hour.unwrap_or(0)),
        );
        let one_hour = split.one_hour.unwrap_or(0).min(total);
        CacheWrites {
            five_minutes: total - one_hour,
            one_hour,
        }
    }

    fn usage(&self) -> Option<Usage> {
        let input = self.input_tokens?;
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let writes = self.cache_writes();
        let prompt = input.saturating_add(writes.total()).saturating_add(read);
        let mut usage = mapping::usage(
            prompt,
            self.cache_read_input_tokens,
            self.output_tokens.unwrap_or(0),
            None,
        );
        usage.cache_writes = writes;
        Some(usage)
    }
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Counts,
}

/// Maps `{"type":"error","error":{"type","message"}}` with the HTTP status. Anthropic answers
/// an exhausted account with 400 `invalid_request_error` "Your credit balance is too low…": that
/// is the operator's billing (as a 402), not the tenant's request.
pub fn map_anthropic_error(status: u16, body: &[u8]) -> GatewayError {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let err = value.as_ref().and_then(|v| v.get("error"));
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| mapping::body_text(body));
    let kind = err.and_then(|e| e.get("type")).and_then(Value::as_str);
    let status = if message.contains("credit balance") {
        402
    } else {
        status
    };
    error_for_status(status, &message, kind.map(str::to_string), None)
}

/// The HTTP status Anthropic documents for an error type (for errors inside a stream).
fn status_of_error_type(kind: Option<&str>) -> u16 {
    match kind {
        Some("invalid_request_error") => 400,
        Some("authentication_error") => 401,
        Some("permission_error") => 403,
        Some("not_found_error") => 404,
        Some("request_too_large") => 413,
        Some("rate_limit_error") => 429,
        Some("overloaded_error") => 529,
        _ => 500,
    }
}

impl Adapter for AnthropicAdapter {
    fn build_request(
        &self,
        route: &Route,
        req: &ChatCompletionRequest,
    ) -> Result<UpstreamRequest, GatewayError> {
        let body = request_body(route, req)?;
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            (
                "anthropic-version".to_string(),
                route
                    .config_str("anthropic_version")
                    .unwrap_or(API_VERSION)
                    .to_string(),
            ),
        ];
        if let Some(beta) = route.config_str("anthropic_beta") {
            headers.push(("anthropic-beta".to_string(), beta.to_string()));
        }
        if req.is_stream() {
            headers.push(("accept".to_string(), "text/event-stream".to_string()));
        }
        if let Some(key) = &route.api_key {
            headers.push(("x-api-key".to_string(), key.clone()));
        }
        Ok(UpstreamRequest {
            url: join_url(&route.base_url, "messages"),
            headers,
            body: body.to_string().into_bytes(),
        })
    }

    fn parse_response(
        &self,
        body: &[u8],
        ctx: &ResponseContext,
    ) -> Result<ChatCompletionResponse, GatewayError> {
        let msg: Message = serde_json::from_slice(body).map_err(mapping::invalid_response)?;
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut calls = Vec::new();
        for block in &msg.content {
            match block["type"].as_str() {
                Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
                Some("thinking") => {
                    reasoning.push_str(block["thinking"].as_str().unwrap_or_default())
                }
                Some("tool_use") => calls.push(GeneratedCall {
                    id: block["id"].as_str().unwrap_or_default().to_string(),
                    name: block["name"].as_str().unwrap_or_default().to_string(),
                    arguments: block
                        .get("input")
                        .map_or_else(|| "{}".to_string(), Value::to_string),
                }),
                _ => {}
            }
        }
        let has_text = !text.is_empty() || calls.is_empty();
        let mut resp = mapping::response(
            ctx,
            msg.id.clone(),
            has_text.then_some(text),
            calls,
            finish_reason(msg.stop_reason.as_deref()),
            msg.usage.usage(),
        );
        if !reasoning.is_empty() {
            resp.choices[0]
                .message
                .extra
                .insert("reasoning_content".into(), reasoning.into());
        }
        Ok(resp)
    }

    fn stream_decoder(&self, ctx: &ResponseContext) -> Box<dyn StreamDecoder> {
        Box::new(AnthropicStreamDecoder {
            sse: SseParser::new(),
            chunks: ChunkFactory::new(ctx),
            counts: Counts::default(),
            tool_index: HashMap::new(),
            stop_reason: None,
            ended: false,
        })
    }

    fn map_error(&self, status: u16, body: &[u8]) -> GatewayError {
        map_anthropic_error(status, body)
    }
}

/// Turns Anthropic's stream events into OpenAI chunks.
pub struct AnthropicStreamDecoder {
    sse: SseParser,
    chunks: ChunkFactory,
    counts: Counts,
    /// Content block index → OpenAI tool-call index.
    tool_index: HashMap<u64, u32>,
    stop_reason: Option<String>,
    ended: bool,
}

impl AnthropicStreamDecoder {
    fn event(&mut self, event: SseEvent, out: &mut Vec<StreamItem>) {
        if self.ended {
            return;
        }
        let Some(data) = event.data.as_deref().filter(|d| !d.trim().is_empty()) else {
            out.push(StreamItem::KeepAlive(b": keep-alive\n\n".to_vec()));
            return;
        };
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                self.ended = true;
                out.push(StreamItem::Error(mapping::malformed(e)));
                return;
            }
        };
        let chunk = |c| StreamItem::Chunk {
            chunk: c,
            raw: None,
        };
        let kind = v["type"].as_str().or(event.event.as_deref()).unwrap_or("");
        match kind {
            "message_start" => {
                let m = &v["message"];
                if let Some(id) = m["id"].as_str() {
                    self.chunks.id = id.to_string();
                }
                if let Ok(c) = serde_json::from_value::<Counts>(m["usage"].clone()) {
                    self.counts.update(&c);
                }
                out.push(chunk(self.chunks.role()));
            }
            "content_block_start" => {
                let block = &v["content_block"];
                match block["type"].as_str() {
                    Some("text") => {
                        if let Some(t) = block["text"].as_str().filter(|t| !t.is_empty()) {
                            out.push(chunk(self.chunks.text(t)));
                        }
                    }
                    Some("tool_use") => {
                        let index = self.tool_index.len() as u32;
                        self.tool_index
                            .insert(v["index"].as_u64().unwrap_or(0), index);
                        out.push(chunk(self.chunks.tool_call_start(
                            index,
                            block["id"].as_str().unwrap_or_default(),
                            block["name"].as_str().unwrap_or_default(),
                            "",
                        )));
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => {
                        if let Some(t) = d["text"].as_str().filter(|t| !t.is_empty()) {
                            out.push(chunk(self.chunks.text(t)));
                        }
                    }
                    Some("input_json_delta") => {
                        let index = v["index"].as_u64().and_then(|i| self.tool_index.get(&i));
                        if let (Some(&index), Some(json)) = (index, d["partial_json"].as_str()) {
                            if !json.is_empty() {
                                out.push(chunk(self.chunks.tool_arguments(index, json)));
                            }
                        }
                    }
                    Some("thinking_delta") => {
                        if let Some(t) = d["thinking"].as_str().filter(|t| !t.is_empty()) {
                            out.push(chunk(self.chunks.reasoning(t)));
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(r) = v["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(r.to_string());
                }
                if let Ok(c) = serde_json::from_value::<Counts>(v["usage"].clone()) {
                    self.counts.update(&c);
                }
            }
            "message_stop" => {
                self.ended = true;
                out.push(chunk(
                    self.chunks
                        .finish(finish_reason(self.stop_reason.as_deref())),
                ));
                if let Some(usage) = self.counts.usage() {
                    out.push(chunk(self.chunks.usage(usage)));
                }
                out.push(StreamItem::Done);
            }
            "ping" => out.push(StreamItem::KeepAlive(b": ping\n\n".to_vec())),
            "error" => {
                self.ended = true;
                let kind = v["error"]["type"].as_str();
                out.push(StreamItem::Error(map_anthropic_error(
                    status_of_error_type(kind),
                    data.as_bytes(),
                )));
            }
            // content_block_stop and event types added later carry nothing to forward.
            _ => {}
        }
    }
}

impl StreamDecoder for AnthropicStreamDecoder {
    fn push(&mut self, bytes: &[u8]) -> Vec<StreamItem> {
        let mut out = Vec::new();
        for e in mapping::framed(self.sse.push(bytes), &mut self.ended, &mut out) {
            self.event(e, &mut out);
        }
        out
    }

    fn finish(&mut self) -> Vec<StreamItem> {
        let mut out = Vec::new();
        if let Ok(Some(e)) = self.sse.finish() {
            self.event(e, &mut out);
        }
        if !self.ended {
            self.ended = true;
            out.push(StreamItem::Error(mapping::truncated_stream()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::providers::mapping::testing::{
        ctx, decode_every_way, fixture, request, summarise,
    };
    use crate::core::providers::ProviderKind;

    fn route() -> Route {
        Route {
            provider: "anthropic".into(),
            kind: ProviderKind::Anthropic,
            base_url: DEFAULT_BASE_URL.into(),
            api_key: Some("sk-ant-test".into()),
            upstream_model: "claude-sonnet-4-5".into(),
            max_output_tokens: Some(8192),
            config: Value::Null,
        }
    }

    #[test]
    fn request_maps_system_images_tools_and_results() {
        let req = request(fixture(include_bytes!(
            "../../../tests/fixtures/anthropic/request_tools.json"
        )));
        let up = AnthropicAdapter.build_request(&route(), &req).unwrap();
        assert_eq!(up.url, "https://api.anthropic.com/v1/messages");
        assert!(up
            .headers
            .contains(&("x-api-key".into(), "sk-ant-test".into())));
        assert!(up
            .headers
            .contains(&("anthropic-version".into(), "2023-06-01".into())));
        assert!(!up.headers.iter().any(|(k, _)| k == "authorization"));
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        let expected: Value = serde_json::from_slice(fixture(include_bytes!(
            "../../../tests/fixtures/anthropic/request_tools.native.json"
        )))
        .unwrap();
        assert_eq!(body, expected);
    }

    #[test]
    fn max_tokens_defaults_to_the_models_cap() {
        let req = request(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        let body = request_body(&route(), &req).unwrap();
        assert_eq!(body["max_tokens"], 8192);
        let mut r = route();
        r.max_output_tokens = None;
        assert_eq!(
            request_body(&r, &req).unwrap()["max_tokens"],
            DEFAULT_MAX_TOKENS
        );
        let req = request(br#"{"model":"m","max_completion_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#);
        assert_eq!(request_body(&route(), &req).unwrap()["max_tokens"], 5);
        let req = request(br#"{"model":"m","n":3,"messages":[{"role":"user","content":"hi"}]}"#);
        assert_eq!(
            request_body(&route(), &req).unwrap_err().param.as_deref(),
            Some("n")
        );
    }

    #[test]
    fn tool_choice_variants() {
        let base = r#""model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}]"#;
        let choice = |extra: &str| {
            let req = request(format!("{{{base}{extra}}}").as_bytes());
            request_body(&route(), &req).unwrap()["tool_choice"].clone()
        };
        assert_eq!(
            choice(r#","tool_choice":"required""#),
            json!({"type":"any"})
        );
        assert_eq!(choice(r#","tool_choice":"none""#), json!({"type":"none"}));
        assert_eq!(
            choice(r#","tool_choice":{"type":"function","function":{"name":"f"}}"#),
            json!({"type":"tool","name":"f"})
        );
        assert_eq!(
            choice(r#","parallel_tool_calls":false"#),
            json!({"type":"auto","disable_parallel_tool_use":true})
        );
        assert_eq!(choice(""), Value::Null);
    }

    #[test]
    fn plain_response_with_tool_use_and_cache_usage() {
        let body = fixture(include_bytes!(
            "../../../tests/fixtures/anthropic/response_tools.json"
        ));
        let r = AnthropicAdapter.parse_response(body, &ctx()).unwrap();
        assert_eq!(r.id, "msg_01Aq9w938a90dw8q");
        assert_eq!(r.model, ctx().model, "the public model, not the provider's");
        let c = &r.choices[0];
        assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(
            c.message.content.as_deref(),
            Some("I'll check the weather.")
        );
        let call = &c.message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.id, "toolu_01A09q90qw90lq917835lq9");
        assert_eq!(call.function.name, "get_weather");
        let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
        assert_eq!(args, json!({"location": "San Francisco, CA"}));
        let u = r.usage.unwrap();
        // 2095 uncached + 100 written + 1000 read
        assert_eq!(
            (u.prompt_tokens, u.cached_tokens(), u.completion_tokens),
            (3195, 1000, 90)
        );
        assert_eq!(u.total_tokens, 3285);
        // The writes, apart for their prices: no split given, so 5-minute writes.
        assert_eq!(
            u.cache_writes,
            CacheWrites {
                five_minutes: 100,
                one_hour: 0
            }
        );
    }

    #[test]
    fn cache_writes_by_lifetime_from_plain_and_stream_usage() {
        let usage = r#"{"input_tokens":10,"cache_creation_input_tokens":300,"cache_read_input_tokens":50,"cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},"output_tokens":5}"#;
        let body = format!(
            r#"{{"id":"m","type":"message","role":"assistant","content":[{{"type":"text","text":"ok"}}],"stop_reason":"end_turn","usage":{usage}}}"#
        );
        let u = AnthropicAdapter
            .parse_response(body.as_bytes(), &ctx())
            .unwrap()
            .usage
            .unwrap();
        let expected = CacheWrites {
            five_minutes: 100,
            one_hour: 200,
        };
        assert_eq!((u.prompt_tokens, u.cached_tokens()), (360, 50));
        assert_eq!(u.cache_writes, expected);
        // Never on the chat wire.
        let json = serde_json::to_string(&u).unwrap();
        assert!(!json.contains("cache_write"), "{json}");

        // In a stream the counts come in message_start; message_delta's cumulative usage keeps
        // them (fields it omits are not reset).
        let transcript = format!(
            "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"m\",\"content\":[],\"usage\":{usage}}}}}\n\n\
             event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n\
             event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"ok\"}}}}\n\n\
             event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
             event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{{\"output_tokens\":7}}}}\n\n\
             event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
        );
        let d = decode_every_way(
            &|| AnthropicAdapter.stream_decoder(&ctx()),
            transcript.as_bytes(),
        );
        let u = d.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (360, 7));
        assert_eq!(u.cache_writes, expected);

        // A split that disagrees with the total: the 1-hour part as reported, the rest 5-minute;
        // a malformed split loses nothing else.
        let c: Counts = serde_json::from_str(
            r#"{"input_tokens":1,"cache_creation_input_tokens":50,"cache_creation":{"ephemeral_1h_input_tokens":80}}"#,
        )
        .unwrap();
        assert_eq!(
            c.cache_writes(),
            CacheWrites {
                five_minutes: 0,
                one_hour: 80
            }
        );
        let c: Counts = serde_json::from_str(
            r#"{"input_tokens":1,"cache_creation_input_tokens":50,"cache_creation":"x"}"#,
        )
        .unwrap();
        assert_eq!(c.usage().unwrap().cache_writes.five_minutes, 50);
    }

    #[test]
    fn stream_text_transcript_every_split() {
        let transcript = fixture(include_bytes!(
            "../../../tests/fixtures/anthropic/stream_text.sse"
        ));
        let d = decode_every_way(&|| AnthropicAdapter.stream_decoder(&ctx()), transcript);
        assert_eq!(d.text, "Hello! ünïcødé 日本語 👋");
        assert_eq!(d.finish.as_deref(), Some("stop"));
        assert_eq!(d.keep_alives, 1);
        let u = d.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (25, 15));
        assert!(d.done && d.errors.is_empty());
    }

    #[test]
    fn stream_tool_use_transcript_every_split() {
        let transcript = fixture(include_bytes!(
            "../../../tests/fixtures/anthropic/stream_tools.sse"
        ));
        let d = decode_every_way(&|| AnthropicAdapter.stream_decoder(&ctx()), transcript);
        assert_eq!(
            d.text,
            "Okay, let's check the weather for San Francisco, CA:"
        );
        assert_eq!(d.calls.len(), 1);
        assert_eq!(d.calls[0].0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
        assert_eq!(d.calls[0].1, "get_weather");
        let args: Value = serde_json::from_str(&d.calls[0].2).unwrap();
        assert_eq!(
            args,
            json!({"location": "San Francisco, CA", "unit": "fahrenheit"})
        );
        assert_eq!(d.finish.as_deref(), Some("tool_calls"));
        let u = d.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens()),
            (472 + 20, 89, 20)
        );
    }

    #[test]
    fn stream_error_event_and_truncation() {
        let transcript = fixture(include_bytes!(
            "../../../tests/fixtures/anthropic/stream_error.sse"
        ));
        let d = decode_every_way(&|| AnthropicAdapter.stream_decoder(&ctx()), transcript);
        assert_eq!(d.text, "Hel");
        assert_eq!(d.errors.len(), 1);
        assert!(d.errors[0].retryable() && d.errors[0].status() == 502);
        assert!(
            !d.errors[0].message.contains("Overloaded"),
            "generic, not the provider's text"
        );
        assert!(!d.done);

        let mut dec = AnthropicAdapter.stream_decoder(&ctx());
        let mut items = dec.push(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":1}}}\n\n");
        items.extend(dec.finish());
        let d = summarise(items);
        assert_eq!((d.errors.len(), d.done), (1, false));
    }

    #[test]
    fn http_errors_keep_type_and_message() {
        let body = fixture(include_bytes!(
            "../../../tests/fixtures/anthropic/error_invalid.json"
        ));
        let e = AnthropicAdapter.map_error(400, body);
        assert_eq!((e.status(), e.code()), (400, "invalid_request_error"));
        assert!(!e.retryable() && e.message.contains("max_tokens"));
        let e = AnthropicAdapter.map_error(
            529,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert!(e.retryable() && e.status() == 502);
        assert_eq!(e.message, "The provider failed (HTTP 529).");
        let e = AnthropicAdapter.map_error(429, br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#);
        assert!(e.retryable() && e.status() == 429);
        assert!(!e.message.contains("per-minute"), "{}", e.message);
        let e = AnthropicAdapter.map_error(400, br#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}"#);
        assert!(e.retryable() && e.status() == 502 && !e.message.contains("credit balance"));
        let e = AnthropicAdapter.map_error(401, br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key sk-ant-api03-abc"}}"#);
        assert!(
            e.status() == 502 && !e.message.contains("sk-ant") && !e.message.contains("x-api-key")
        );
    }
}
