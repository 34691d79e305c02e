//! Google's Gemini API: `models/{model}:generateContent` and
//! `models/{model}:streamGenerateContent?alt=sse`.
//!
//! Follows the Gemini API reference (<https://ai.google.dev/api/generate-content>) and its
//! function-calling guide (<https://ai.google.dev/gemini-api/docs/function-calling>):
//!
//! * roles `user` and `model`; system and developer messages become `systemInstruction`;
//!   consecutive turns of one role are merged;
//! * images: data URLs become `inlineData`, other URLs `fileData` (media type from the file
//!   extension);
//! * tools → one `functionDeclarations` tool (schemas without the JSON-Schema keywords the API
//!   rejects: `$schema`, `additionalProperties`); an assistant's `tool_calls` → `functionCall`
//!   parts; `tool` messages → `functionResponse` parts named after the call they answer;
//!   `tool_choice` → `toolConfig.functionCallingConfig` (`AUTO`/`ANY`/`NONE`,
//!   `allowedFunctionNames`);
//! * sampling → `generationConfig` (`maxOutputTokens`, `stopSequences`, `candidateCount` = `n`,
//!   `responseMimeType`/`responseSchema` for `response_format`);
//! * the key goes in `x-goog-api-key`;
//! * usage from `usageMetadata`: `promptTokenCount` (+ `toolUsePromptTokenCount`) includes
//!   `cachedContentTokenCount`; `candidatesTokenCount` excludes `thoughtsTokenCount`, so OpenAI's
//!   `completion_tokens` is their sum, with the thoughts as `reasoning_tokens`;
//! * `finishReason`: `STOP` → `stop` (`tool_calls` when the candidate called functions),
//!   `MAX_TOKENS` → `length`, safety-type reasons → `content_filter`;
//! * a stream is a series of `GenerateContentResponse` events without an end marker: it is
//!   complete when the connection closes after a candidate finished.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::mapping::{
    self, arguments_value, error_for_status, image_of, parts, stop_sequences, tool_names_by_id,
    tool_result_name, unsupported, ChunkFactory, Image,
};
use super::{
    join_url, Adapter, ResponseContext, Route, StreamDecoder, StreamItem, UpstreamRequest,
};
use crate::core::error::GatewayError;
use crate::core::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, Choice, FunctionCall,
    ResponseMessage, Role, ToolCall, Usage,
};
use crate::core::sse::{SseEvent, SseParser};

/// The public API's base URL.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";

const NAME: &str = "Gemini";

pub struct GeminiAdapter;

fn mime_from_extension(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    match path.rsplit('.').next().unwrap_or("") {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => "image/jpeg",
    }
}

/// Removes the JSON-Schema keywords Gemini's schema subset rejects, at every depth.
pub fn clean_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "$schema" | "additionalProperties" | "strict")
                })
                .map(|(k, v)| (k.clone(), clean_schema(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(clean_schema).collect()),
        other => other.clone(),
    }
}

/// The `generateContent` body for a request.
pub fn request_body(route: &Route, req: &ChatCompletionRequest) -> Result<Value, GatewayError> {
    mapping::check_billable(route, req)?;
    let names = tool_names_by_id(&req.messages);
    let mut system = Vec::new();
    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let param = format!("messages[{i}].content");
        let (role, mut list) = match m.role {
            Role::System | Role::Developer => {
                let text = m.text_content();
                if !text.is_empty() {
                    system.push(json!({"text": text}));
                }
                continue;
            }
            Role::User => ("user", Vec::new()),
            Role::Assistant => ("model", Vec::new()),
            Role::Tool | Role::Function => {
                let name = tool_result_name(m, &names, &format!("messages[{i}].tool_call_id"))?;
                let text = m.text_content();
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    Ok(v) => json!({ "output": v }),
                    Err(_) => json!({ "output": text }),
                };
                (
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                )
            }
        };
        if matches!(m.role, Role::User | Role::Assistant) {
            for part in parts(m) {
                match part.kind.as_str() {
                    "text" => {
                        let text = part.text.unwrap_or_default();
                        if !text.is_empty() {
                            list.push(json!({ "text": text }));
                        }
                    }
                    "image_url" => match image_of(&part) {
                        Some(Image::Inline { mime, data }) => {
                            list.push(json!({"inlineData": {"mimeType": mime, "data": data}}))
                        }
                        Some(Image::Url(url)) => list.push(json!({"fileData":
                            {"mimeType": mime_from_extension(url), "fileUri": url}})),
                        None => {
                            return Err(GatewayError::invalid_param(
                                &param,
                                "Invalid image_url part.",
                            ))
                        }
                    },
                    "refusal" => {}
                    other => {
                        return Err(unsupported(
                            &param,
                            NAME,
                            &format!("content parts of type `{other}`"),
                        ))
                    }
                }
            }
            for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                let args = arguments_value(
                    &call.function.arguments,
                    &format!("messages[{i}].tool_calls[{j}].function.arguments"),
                )?;
                list.push(json!({"functionCall": {"name": call.function.name, "args": args}}));
            }
        }
        if list.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(list),
            _ => contents.push((role, list)),
        }
    }

    let mut body = Map::new();
    body.insert(
        "contents".into(),
        Value::Array(
            contents
                .into_iter()
                .map(|(role, parts)| json!({"role": role, "parts": parts}))
                .collect(),
        ),
    );
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    if let Some(tools) = &req.tools {
        let mut decls = Vec::new();
        for (i, tool) in tools.iter().enumerate() {
            let Some(f) = tool.function.as_ref().filter(|_| tool.kind == "function") else {
                return Err(unsupported(
                    &format!("tools[{i}]"),
                    NAME,
                    &format!("tools of type `{}`", tool.kind),
                ));
            };
            let mut d = json!({ "name": f.name });
            if let Some(desc) = &f.description {
                d["description"] = desc.clone().into();
            }
            if let Some(p) = &f.parameters {
                d["parameters"] = clean_schema(p);
            }
            decls.push(d);
        }
        body.insert("tools".into(), json!([{ "functionDeclarations": decls }]));
    }
    let calling = match req.extra.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({"mode": "AUTO"})),
            "required" => Some(json!({"mode": "ANY"})),
            "none" => Some(json!({"mode": "NONE"})),
            other => {
                return Err(GatewayError::invalid_param(
                    "tool_choice",
                    format!("Unknown tool_choice `{other}`."),
                ))
            }
        },
        Some(v) => match v["function"]["name"].as_str() {
            Some(name) => Some(json!({"mode": "ANY", "allowedFunctionNames": [name]})),
            None => {
                return Err(GatewayError::invalid_param(
                    "tool_choice",
                    "tool_choice must be a string or name a function.",
                ))
            }
        },
    };
    if let Some(c) = calling {
        body.insert("toolConfig".into(), json!({ "functionCallingConfig": c }));
    }
    let mut config = Map::new();
    mapping::copy_params(
        req,
        &[
            ("temperature", "temperature"),
            ("top_p", "topP"),
            ("seed", "seed"),
            ("presence_penalty", "presencePenalty"),
            ("frequency_penalty", "frequencyPenalty"),
        ],
        &mut config,
    );
    if let Some(cap) = route.output_cap(req) {
        config.insert("maxOutputTokens".into(), cap.into());
    }
    if let Some(stop) = stop_sequences(req) {
        config.insert("stopSequences".into(), Value::Array(stop));
    }
    if req.choices() > 1 {
        config.insert("candidateCount".into(), req.choices().into());
    }
    match req.extra.get("response_format") {
        Some(f) if f["type"] == "json_object" => {
            config.insert("responseMimeType".into(), "application/json".into());
        }
        Some(f) if f["type"] == "json_schema" => {
            config.insert("responseMimeType".into(), "application/json".into());
            if f["json_schema"]["schema"].is_object() {
                config.insert(
                    "responseSchema".into(),
                    clean_schema(&f["json_schema"]["schema"]),
                );
            }
        }
        _ => {}
    }
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    if let Some(safety) = route.config.get("safety_settings") {
        body.insert("safetySettings".into(), safety.clone());
    }
    mapping::copy_allowed(route, req, &mut body);
    Ok(Value::Object(body))
}

/// OpenAI's finish reason for a `finishReason`.
pub fn finish_reason(reason: &str, called_functions: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => mapping::LENGTH,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            mapping::CONTENT_FILTER
        }
        _ if called_functions => mapping::TOOL_CALLS,
        _ => mapping::STOP,
    }
}

/// OpenAI usage from `usageMetadata`.
pub fn usage_of(meta: &Value) -> Option<Usage> {
    let n = |k: &str| meta.get(k).and_then(Value::as_u64);
    let prompt = n("promptTokenCount")?.saturating_add(n("toolUsePromptTokenCount").unwrap_or(0));
    let thoughts = n("thoughtsTokenCount");
    let completion = n("candidatesTokenCount")
        .unwrap_or(0)
        .saturating_add(thoughts.unwrap_or(0));
    Some(mapping::usage(
        prompt,
        n("cachedContentTokenCount"),
        completion,
        thoughts,
    ))
}

/// Maps `{"error":{"code","message","status"}}` (also inside a one-element array). Gemini
/// answers a bad or expired key with 400 `INVALID_ARGUMENT` and reason `API_KEY_INVALID`: that is
/// the gateway's credential failure (as a 401), not the tenant's request.
pub fn map_gemini_error(status: u16, body: &[u8]) -> GatewayError {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let err = value.as_ref().and_then(|v| match v {
        Value::Array(a) => a.first().and_then(|e| e.get("error")),
        other => other.get("error"),
    });
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| mapping::body_text(body));
    let code = err.and_then(|e| e.get("status")).and_then(Value::as_str);
    let key_refused = err
        .and_then(|e| e.get("details"))
        .and_then(Value::as_array)
        .is_some_and(|details| {
            details
                .iter()
                .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        });
    let status = if key_refused { 401 } else { status };
    error_for_status(status, &message, code.map(str::to_string), None)
}

fn call_id(ctx_id: &str, part: &Value, candidate: u64, index: u32) -> String {
    match part["functionCall"]["id"].as_str() {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => format!(
            "call_{}_{candidate}_{index}",
            ctx_id.trim_start_matches("chatcmpl-")
        ),
    }
}

impl Adapter for GeminiAdapter {
    fn build_request(
        &self,
        route: &Route,
        req: &ChatCompletionRequest,
    ) -> Result<UpstreamRequest, GatewayError> {
        let body = request_body(route, req)?;
        let model = route
            .upstream_model
            .strip_prefix("models/")
            .unwrap_or(&route.upstream_model);
        let path = if req.is_stream() {
            format!("models/{model}:streamGenerateContent?alt=sse")
        } else {
            format!("models/{model}:generateContent")
        };
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if req.is_stream() {
            headers.push(("accept".to_string(), "text/event-stream".to_string()));
        }
        if let Some(key) = &route.api_key {
            headers.push(("x-goog-api-key".to_string(), key.clone()));
        }
        Ok(UpstreamRequest {
            url: join_url(&route.base_url, &path),
            headers,
            body: body.to_string().into_bytes(),
        })
    }

    fn parse_response(
        &self,
        body: &[u8],
        ctx: &ResponseContext,
    ) -> Result<ChatCompletionResponse, GatewayError> {
        let v: Value = serde_json::from_slice(body).map_err(mapping::invalid_response)?;
        if v.get("error").is_some() {
            return Err(map_gemini_error(500, body));
        }
        let mut choices = Vec::new();
        for (pos, cand) in v["candidates"].as_array().into_iter().flatten().enumerate() {
            let index = cand["index"].as_u64().unwrap_or(pos as u64);
            let mut text = String::new();
            let mut reasoning = String::new();
            let mut calls = Vec::new();
            for part in cand["content"]["parts"].as_array().into_iter().flatten() {
                if let Some(t) = part["text"].as_str() {
                    if part["thought"] == true {
                        reasoning.push_str(t);
                    } else {
                        text.push_str(t);
                    }
                } else if part.get("functionCall").is_some() {
                    let f = &part["functionCall"];
                    calls.push(ToolCall {
                        id: call_id(&ctx.id, part, index, calls.len() as u32),
                        kind: "function".to_string(),
                        function: FunctionCall {
                            name: f["name"].as_str().unwrap_or_default().to_string(),
                            arguments: f.get("args").map_or_else(|| "{}".into(), Value::to_string),
                        },
                    });
                }
            }
            let reason = cand["finishReason"].as_str().unwrap_or("STOP");
            let finish = finish_reason(reason, !calls.is_empty());
            let mut extra = Map::new();
            if !reasoning.is_empty() {
                extra.insert("reasoning_content".into(), reasoning.into());
            }
            choices.push(Choice {
                index: index as u32,
                message: ResponseMessage {
                    role: "assistant".into(),
                    content: (!text.is_empty() || calls.is_empty()).then_some(text),
                    tool_calls: (!calls.is_empty()).then_some(calls),
                    refusal: None,
                    extra,
                },
                finish_reason: Some(finish.to_string()),
                extra: [("logprobs".to_string(), Value::Null)]
                    .into_iter()
                    .collect(),
            });
        }
        if choices.is_empty() {
            // The prompt itself was blocked (`promptFeedback.blockReason`).
            let mut resp =
                mapping::response(ctx, None, None, Vec::new(), mapping::CONTENT_FILTER, None);
            resp.choices[0].message.content = None;
            choices = resp.choices;
        }
        let id = v["responseId"].as_str().map(str::to_string);
        Ok(ChatCompletionResponse {
            id: id.unwrap_or_else(|| ctx.id.clone()),
            object: "chat.completion".into(),
            created: ctx.created,
            model: ctx.model.clone(),
            choices,
            usage: usage_of(&v["usageMetadata"]),
            extra: Map::new(),
        })
    }

    fn stream_decoder(&self, ctx: &ResponseContext) -> Box<dyn StreamDecoder> {
        Box::new(GeminiStreamDecoder {
            sse: SseParser::new(),
            chunks: ChunkFactory::new(ctx),
            candidates: BTreeMap::new(),
            usage: None,
            finished: false,
            ended: false,
        })
    }

    fn map_error(&self, status: u16, body: &[u8]) -> GatewayError {
        map_gemini_error(status, body)
    }
}

#[derive(Default)]
struct CandidateState {
    calls: u32,
    finished: bool,
}

/// Turns Gemini's SSE events into OpenAI chunks.
pub struct GeminiStreamDecoder {
    sse: SseParser,
    chunks: ChunkFactory,
    candidates: BTreeMap<u64, CandidateState>,
    usage: Option<Usage>,
    /// A candidate finished, or the prompt was blocked: the stream may end.
    finished: bool,
    ended: bool,
}

fn at_index(mut chunk: ChatCompletionChunk, index: u64) -> StreamItem {
    for c in &mut chunk.choices {
        c.index = index as u32;
    }
    StreamItem::Chunk { chunk, raw: None }
}

impl GeminiStreamDecoder {
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
        if let Some(code) = v.get("error").map(|e| e["code"].as_u64().unwrap_or(500)) {
            self.ended = true;
            let status = u16::try_from(code).unwrap_or(500);
            out.push(StreamItem::Error(map_gemini_error(status, data.as_bytes())));
            return;
        }
        if let Some(id) = v["responseId"].as_str() {
            self.chunks.id = id.to_string();
        }
        if let Some(u) = usage_of(&v["usageMetadata"]) {
            self.usage = Some(u);
        }
        let ctx_id = self.chunks.id.clone();
        let candidates = v["candidates"].as_array().cloned().unwrap_or_default();
        for (pos, cand) in candidates.iter().enumerate() {
            let index = cand["index"].as_u64().unwrap_or(pos as u64);
            let state = self.candidates.entry(index).or_insert_with(|| {
                out.push(at_index(self.chunks.role(), index));
                CandidateState::default()
            });
            for part in cand["content"]["parts"].as_array().into_iter().flatten() {
                if let Some(t) = part["text"].as_str().filter(|t| !t.is_empty()) {
                    let c = if part["thought"] == true {
                        self.chunks.reasoning(t)
                    } else {
                        self.chunks.text(t)
                    };
                    out.push(at_index(c, index));
                } else if part.get("functionCall").is_some() {
                    let f = &part["functionCall"];
                    let n = state.calls;
                    state.calls += 1;
                    let args = f.get("args").map_or_else(|| "{}".into(), Value::to_string);
                    out.push(at_index(
                        self.chunks.tool_call_start(
                            n,
                            &call_id(&ctx_id, part, index, n),
                            f["name"].as_str().unwrap_or_default(),
                            &args,
                        ),
                        index,
                    ));
                }
            }
            if let Some(reason) = cand["finishReason"].as_str() {
                if !state.finished {
                    state.finished = true;
                    self.finished = true;
                    out.push(at_index(
                        self.chunks.finish(finish_reason(reason, state.calls > 0)),
                        index,
                    ));
                }
            }
        }
        if candidates.is_empty() && v["promptFeedback"]["blockReason"].is_string() {
            self.finished = true;
            self.candidates.entry(0).or_default().finished = true;
            out.push(at_index(self.chunks.role(), 0));
            out.push(at_index(self.chunks.finish(mapping::CONTENT_FILTER), 0));
        }
    }
}

impl StreamDecoder for GeminiStreamDecoder {
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
        if self.ended {
            return out;
        }
        self.ended = true;
        if self.finished {
            if let Some(usage) = self.usage.take() {
                out.push(StreamItem::Chunk {
                    chunk: self.chunks.usage(usage),
                    raw: None,
                });
            }
            out.push(StreamItem::Done);
        } else {
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
            provider: "gemini".into(),
            kind: ProviderKind::Gemini,
            base_url: DEFAULT_BASE_URL.into(),
            api_key: Some("AIza-test".into()),
            upstream_model: "gemini-2.5-flash".into(),
            max_output_tokens: Some(8192),
            config: Value::Null,
        }
    }

    #[test]
    fn request_maps_roles_system_images_and_functions() {
        let req = request(fixture(include_bytes!(
            "../../../tests/fixtures/gemini/request_tools.json"
        )));
        let up = GeminiAdapter.build_request(&route(), &req).unwrap();
        assert_eq!(
            up.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert!(up
            .headers
            .contains(&("x-goog-api-key".into(), "AIza-test".into())));
        assert!(!up.headers.iter().any(|(k, _)| k == "authorization"));
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        let expected: Value = serde_json::from_slice(fixture(include_bytes!(
            "../../../tests/fixtures/gemini/request_tools.native.json"
        )))
        .unwrap();
        assert_eq!(body, expected);

        let plain = request(br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":2,
            "response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","additionalProperties":false}}}}"#);
        let mut r = route();
        r.upstream_model = "models/gemini-2.0-flash".into();
        let up = GeminiAdapter.build_request(&r, &plain).unwrap();
        assert!(
            up.url.ends_with("/models/gemini-2.0-flash:generateContent"),
            "{}",
            up.url
        );
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(body["generationConfig"]["candidateCount"], 2);
        assert_eq!(
            body["generationConfig"]["responseMimeType"],
            "application/json"
        );
        assert_eq!(
            body["generationConfig"]["responseSchema"],
            json!({"type": "object"})
        );
    }

    #[test]
    fn tool_results_need_a_known_call() {
        let req = request(br#"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"tool","tool_call_id":"nope","content":"1"}]}"#);
        let e = GeminiAdapter.build_request(&route(), &req).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[1].tool_call_id"));
    }

    #[test]
    fn plain_response_with_function_call_and_usage() {
        let body = fixture(include_bytes!(
            "../../../tests/fixtures/gemini/response_tools.json"
        ));
        let r = GeminiAdapter.parse_response(body, &ctx()).unwrap();
        assert_eq!(r.model, ctx().model, "the public model, not `modelVersion`");
        assert_eq!(r.id, "abc123resp");
        let c = &r.choices[0];
        assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(c.message.content, None);
        assert_eq!(
            c.message.extra["reasoning_content"],
            "The user wants lights."
        );
        let call = &c.message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.function.name, "set_light_values");
        let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
        assert_eq!(args, json!({"brightness": 25, "color_temp": "warm"}));
        let u = r.usage.unwrap();
        // prompt 120 (of which 64 cached); completion = 18 candidates + 40 thoughts
        assert_eq!((u.prompt_tokens, u.cached_tokens()), (120, 64));
        assert_eq!(
            (u.completion_tokens, u.reasoning_tokens(), u.total_tokens),
            (58, 40, 178)
        );
    }

    #[test]
    fn blocked_prompt_is_a_content_filter_finish() {
        let body = br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8}}"#;
        let r = GeminiAdapter.parse_response(body, &ctx()).unwrap();
        assert_eq!(
            r.choices[0].finish_reason.as_deref(),
            Some("content_filter")
        );
        assert_eq!(r.usage.unwrap().prompt_tokens, 8);
    }

    #[test]
    fn stream_text_transcript_every_split() {
        let transcript = fixture(include_bytes!(
            "../../../tests/fixtures/gemini/stream_text.sse"
        ));
        let d = decode_every_way(&|| GeminiAdapter.stream_decoder(&ctx()), transcript);
        assert_eq!(d.text, "The opposite of hot is cold — ünïcødé 日本語.");
        assert_eq!(d.finish.as_deref(), Some("stop"));
        let u = d.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (6, 12));
        assert!(d.done && d.errors.is_empty());
    }

    #[test]
    fn stream_function_call() {
        let transcript = fixture(include_bytes!(
            "../../../tests/fixtures/gemini/stream_tools.sse"
        ));
        let d = decode_every_way(&|| GeminiAdapter.stream_decoder(&ctx()), transcript);
        assert_eq!(d.calls.len(), 1);
        assert_eq!(d.calls[0].0, "call_req_test_0_0");
        assert_eq!(d.calls[0].1, "get_weather");
        assert_eq!(d.calls[0].2, r#"{"location":"Paris"}"#);
        assert_eq!(d.finish.as_deref(), Some("tool_calls"));
        assert_eq!(d.usage.unwrap().reasoning_tokens(), 30);
    }

    #[test]
    fn stream_that_never_finishes_is_an_error() {
        let mut dec = GeminiAdapter.stream_decoder(&ctx());
        let mut items = dec.push(b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}],\"role\":\"model\"},\"index\":0}]}\r\n\r\n");
        items.extend(dec.finish());
        let d = summarise(items);
        assert_eq!((d.text.as_str(), d.errors.len(), d.done), ("Hi", 1, false));
    }

    #[test]
    fn errors_keep_status_and_message() {
        let body = fixture(include_bytes!(
            "../../../tests/fixtures/gemini/error_invalid.json"
        ));
        let e = GeminiAdapter.map_error(400, body);
        assert_eq!((e.status(), e.code()), (400, "INVALID_ARGUMENT"));
        assert!(!e.retryable());
        assert!(e.message.contains("Invalid JSON payload"));
        let e = GeminiAdapter.map_error(429, br#"[{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}]"#);
        assert!(e.retryable() && e.status() == 429 && !e.message.contains("exhausted"));
        let e = GeminiAdapter.map_error(400, br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#);
        assert!(e.retryable() && e.status() == 502 && !e.message.contains("API key not valid"));
        let e = GeminiAdapter.map_error(503, br#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#);
        assert!(e.retryable() && e.status() == 502);
        let mut dec = GeminiAdapter.stream_decoder(&ctx());
        let d = summarise(dec.push(b"data: {\"error\":{\"code\":500,\"message\":\"An internal error has occurred.\",\"status\":\"INTERNAL\"}}\n\n"));
        assert!(d.errors[0].retryable() && d.errors[0].message.contains("HTTP 500"));
    }
}
