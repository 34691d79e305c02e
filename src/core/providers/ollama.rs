//! Ollama's native chat API, `POST /api/chat`, with NDJSON streaming.
//!
//! Follows the Ollama API reference (<https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion>):
//! messages with `images` (base64, no data-URL prefix) and `tool_calls` whose `arguments` are
//! JSON objects; tool results as `{"role":"tool","content","tool_name"}`; sampling parameters
//! under `options` (`num_predict` is the output cap); `format` for JSON output. A response (and
//! every stream line) is `{"model","created_at","message":{…},"done",…}`; the last one has
//! `done: true`, `done_reason` and the counts `prompt_eval_count` / `eval_count`.
//!
//! Ollama's OpenAI-compatible endpoint (`/v1/chat/completions`) needs no adapter: configure it
//! as kind `openai` with base URL `http://host:11434/v1`.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::mapping::{
    self, arguments_value, error_for_status, image_of, parts, stop_sequences, tool_names_by_id,
    tool_result_name, unsupported, ChunkFactory, GeneratedCall, Image,
};
use super::openai::map_openai_error;
use super::{
    join_url, Adapter, ResponseContext, Route, StreamDecoder, StreamItem, UpstreamRequest,
};
use crate::core::error::GatewayError;
use crate::core::ndjson::NdjsonSplitter;
use crate::core::openai::{ChatCompletionRequest, ChatCompletionResponse, Role, Usage};

/// Ollama's default local address.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:11434";

pub struct OllamaAdapter;

const NAME: &str = "Ollama";

fn message_json(req: &ChatCompletionRequest) -> Result<Vec<Value>, GatewayError> {
    let names = tool_names_by_id(&req.messages);
    let mut out = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let mut text = String::new();
        let mut images = Vec::new();
        for part in parts(m) {
            match part.kind.as_str() {
                "text" => text.push_str(part.text.as_deref().unwrap_or_default()),
                "image_url" => match image_of(&part) {
                    Some(Image::Inline { data, .. }) => images.push(Value::String(data.into())),
                    _ => {
                        return Err(unsupported(
                            &format!("{param}.content"),
                            NAME,
                            "image URLs (send images as base64 data URLs)",
                        ))
                    }
                },
                other => {
                    return Err(unsupported(
                        &format!("{param}.content"),
                        NAME,
                        &format!("content parts of type `{other}`"),
                    ))
                }
            }
        }
        let role = match m.role {
            Role::System | Role::Developer => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool | Role::Function => "tool",
        };
        let mut msg = Map::new();
        msg.insert("role".into(), role.into());
        msg.insert("content".into(), text.into());
        if !images.is_empty() {
            msg.insert("images".into(), Value::Array(images));
        }
        if let Some(calls) = &m.tool_calls {
            let mut list = Vec::new();
            for (j, c) in calls.iter().enumerate() {
                let args = arguments_value(
                    &c.function.arguments,
                    &format!("{param}.tool_calls[{j}].function.arguments"),
                )?;
                list.push(json!({"function": {"name": c.function.name, "arguments": args}}));
            }
            msg.insert("tool_calls".into(), Value::Array(list));
        }
        if role == "tool" {
            msg.insert(
                "tool_name".into(),
                tool_result_name(m, &names, &param)?.into(),
            );
        }
        out.push(Value::Object(msg));
    }
    Ok(out)
}

/// The `/api/chat` body for a request.
pub fn request_body(route: &Route, req: &ChatCompletionRequest) -> Result<Value, GatewayError> {
    mapping::check_billable(route, req)?;
    if req.choices() > 1 {
        return Err(unsupported("n", NAME, "more than one choice (`n`)"));
    }
    let mut body = Map::new();
    body.insert("model".into(), route.upstream_model.clone().into());
    body.insert("messages".into(), Value::Array(message_json(req)?));
    body.insert("stream".into(), req.is_stream().into());
    if let Some(tools) = &req.tools {
        body.insert(
            "tools".into(),
            serde_json::to_value(tools).unwrap_or_default(),
        );
    }
    let mut options = Map::new();
    mapping::copy_params(
        req,
        &[
            ("temperature", "temperature"),
            ("top_p", "top_p"),
            ("seed", "seed"),
            ("presence_penalty", "presence_penalty"),
            ("frequency_penalty", "frequency_penalty"),
        ],
        &mut options,
    );
    if let Some(cap) = route.output_cap(req) {
        options.insert("num_predict".into(), cap.into());
    }
    if let Some(stop) = stop_sequences(req) {
        options.insert("stop".into(), Value::Array(stop));
    }
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }
    match req.extra.get("response_format") {
        Some(f) if f["type"] == "json_object" => {
            body.insert("format".into(), "json".into());
        }
        Some(f) if f["type"] == "json_schema" => {
            let schema = f["json_schema"]["schema"].clone();
            body.insert(
                "format".into(),
                if schema.is_object() {
                    schema
                } else {
                    "json".into()
                },
            );
        }
        _ => {}
    }
    if let Some(keep_alive) = route.config.get("keep_alive") {
        body.insert("keep_alive".into(), keep_alive.clone());
    }
    mapping::copy_allowed(route, req, &mut body);
    Ok(Value::Object(body))
}

#[derive(Debug, Deserialize, Default)]
struct OllamaMessage {
    #[serde(default)]
    content: String,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    tool_calls: Vec<OllamaToolCall>,
}

#[derive(Debug, Deserialize)]
struct OllamaToolCall {
    #[serde(default)]
    id: Option<String>,
    function: OllamaFunction,
}

#[derive(Debug, Deserialize)]
struct OllamaFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Debug, Deserialize)]
struct OllamaChat {
    #[serde(default)]
    message: OllamaMessage,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    error: Option<Value>,
}

impl OllamaChat {
    /// Usage when Ollama reported both counts (it omits `prompt_eval_count` on some cache hits;
    /// then the gateway's own counts are billed).
    fn usage(&self) -> Option<Usage> {
        Some(Usage::new(self.prompt_eval_count?, self.eval_count?))
    }

    fn finish_reason(&self, called_tools: bool) -> &'static str {
        match self.done_reason.as_deref() {
            Some("length") => mapping::LENGTH,
            _ if called_tools => mapping::TOOL_CALLS,
            _ => mapping::STOP,
        }
    }
}

fn call_id(ctx: &ResponseContext, call: &OllamaToolCall, index: usize) -> String {
    match &call.id {
        Some(id) if !id.is_empty() => id.clone(),
        _ => format!("call_{}_{index}", ctx.id.trim_start_matches("chatcmpl-")),
    }
}

fn arguments_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "{}".to_string(),
        other => other.to_string(),
    }
}

impl Adapter for OllamaAdapter {
    fn build_request(
        &self,
        route: &Route,
        req: &ChatCompletionRequest,
    ) -> Result<UpstreamRequest, GatewayError> {
        let body = request_body(route, req)?;
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if let Some(key) = &route.api_key {
            // Ollama itself has no keys; a key is for a proxy in front of it (or ollama.com).
            headers.push(("authorization".to_string(), format!("Bearer {key}")));
        }
        Ok(UpstreamRequest {
            url: join_url(&route.base_url, "api/chat"),
            headers,
            body: body.to_string().into_bytes(),
        })
    }

    fn parse_response(
        &self,
        body: &[u8],
        ctx: &ResponseContext,
    ) -> Result<ChatCompletionResponse, GatewayError> {
        let chat: OllamaChat = serde_json::from_slice(body).map_err(mapping::invalid_response)?;
        if let Some(err) = &chat.error {
            return Err(map_ollama_error(
                500,
                json!({"error": err}).to_string().as_bytes(),
            ));
        }
        let calls: Vec<GeneratedCall> = chat
            .message
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, c)| GeneratedCall {
                id: call_id(ctx, c, i),
                name: c.function.name.clone(),
                arguments: arguments_text(&c.function.arguments),
            })
            .collect();
        let finish = chat.finish_reason(!calls.is_empty());
        let mut resp = mapping::response(
            ctx,
            None,
            Some(chat.message.content.clone()),
            calls,
            finish,
            chat.usage(),
        );
        if let Some(thinking) = chat.message.thinking.filter(|t| !t.is_empty()) {
            resp.choices[0]
                .message
                .extra
                .insert("reasoning_content".into(), thinking.into());
        }
        Ok(resp)
    }

    fn stream_decoder(&self, ctx: &ResponseContext) -> Box<dyn StreamDecoder> {
        Box::new(OllamaStreamDecoder {
            lines: NdjsonSplitter::new(),
            chunks: ChunkFactory::new(ctx),
            ctx: ctx.clone(),
            started: false,
            calls: 0,
            ended: false,
        })
    }

    fn map_error(&self, status: u16, body: &[u8]) -> GatewayError {
        map_ollama_error(status, body)
    }
}

/// Ollama errors are `{"error": "<message>"}`.
pub fn map_ollama_error(status: u16, body: &[u8]) -> GatewayError {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    match value
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str)
    {
        Some(message) => error_for_status(status, message, None, None),
        None => map_openai_error(status, body),
    }
}

/// Turns Ollama's NDJSON lines into OpenAI chunks.
pub struct OllamaStreamDecoder {
    lines: NdjsonSplitter,
    chunks: ChunkFactory,
    ctx: ResponseContext,
    started: bool,
    calls: u32,
    ended: bool,
}

impl OllamaStreamDecoder {
    fn line(&mut self, line: &[u8], out: &mut Vec<StreamItem>) {
        if self.ended {
            return;
        }
        let chat: OllamaChat = match serde_json::from_slice(line) {
            Ok(c) => c,
            Err(e) => {
                self.ended = true;
                out.push(StreamItem::Error(mapping::malformed(e)));
                return;
            }
        };
        if let Some(err) = &chat.error {
            self.ended = true;
            let body = json!({ "error": err }).to_string();
            out.push(StreamItem::Error(map_ollama_error(500, body.as_bytes())));
            return;
        }
        let chunk = |c| StreamItem::Chunk {
            chunk: c,
            raw: None,
        };
        if !self.started {
            self.started = true;
            out.push(chunk(self.chunks.role()));
        }
        if let Some(thinking) = chat.message.thinking.as_deref().filter(|t| !t.is_empty()) {
            out.push(chunk(self.chunks.reasoning(thinking)));
        }
        if !chat.message.content.is_empty() {
            out.push(chunk(self.chunks.text(&chat.message.content)));
        }
        for call in &chat.message.tool_calls {
            let index = self.calls;
            self.calls += 1;
            out.push(chunk(self.chunks.tool_call_start(
                index,
                &call_id(&self.ctx, call, index as usize),
                &call.function.name,
                &arguments_text(&call.function.arguments),
            )));
        }
        if chat.done {
            self.ended = true;
            out.push(chunk(
                self.chunks.finish(chat.finish_reason(self.calls > 0)),
            ));
            if let Some(usage) = chat.usage() {
                out.push(chunk(self.chunks.usage(usage)));
            }
            out.push(StreamItem::Done);
        }
    }
}

impl StreamDecoder for OllamaStreamDecoder {
    fn push(&mut self, bytes: &[u8]) -> Vec<StreamItem> {
        let mut out = Vec::new();
        for line in mapping::framed(self.lines.push(bytes), &mut self.ended, &mut out) {
            self.line(&line, &mut out);
        }
        out
    }

    fn finish(&mut self) -> Vec<StreamItem> {
        let mut out = Vec::new();
        match self.lines.finish() {
            Ok(Some(line)) => self.line(&line, &mut out),
            Ok(None) => {}
            Err(e) if !self.ended => {
                self.ended = true;
                out.push(StreamItem::Error(mapping::malformed(e)));
            }
            Err(_) => {}
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
    use crate::core::providers::mapping::testing::{ctx, decode_every_way, fixture, request};
    use crate::core::providers::ProviderKind;

    fn route() -> Route {
        Route {
            provider: "ollama".into(),
            kind: ProviderKind::Ollama,
            base_url: "http://127.0.0.1:11434/".into(),
            api_key: None,
            upstream_model: "llama3.2".into(),
            max_output_tokens: Some(2048),
            config: Value::Null,
        }
    }

    #[test]
    fn request_maps_images_tools_and_options() {
        let req = request(fixture(include_bytes!(
            "../../../tests/fixtures/ollama/request_tools.json"
        )));
        let up = OllamaAdapter.build_request(&route(), &req).unwrap();
        assert_eq!(up.url, "http://127.0.0.1:11434/api/chat");
        assert!(!up.headers.iter().any(|(k, _)| k == "authorization"));
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        let expected: Value = serde_json::from_slice(fixture(include_bytes!(
            "../../../tests/fixtures/ollama/request_tools.native.json"
        )))
        .unwrap();
        assert_eq!(body, expected);
    }

    #[test]
    fn remote_images_and_n_are_refused() {
        let req = request(br#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#);
        let e = OllamaAdapter.build_request(&route(), &req).unwrap_err();
        assert_eq!(
            (e.status(), e.param.as_deref()),
            (400, Some("messages[0].content"))
        );
        let req = request(br#"{"model":"m","n":2,"messages":[{"role":"user","content":"x"}]}"#);
        assert_eq!(
            OllamaAdapter
                .build_request(&route(), &req)
                .unwrap_err()
                .param
                .as_deref(),
            Some("n")
        );
    }

    #[test]
    fn plain_response_with_tool_calls_and_usage() {
        let body = fixture(include_bytes!(
            "../../../tests/fixtures/ollama/response_tools.json"
        ));
        let r = OllamaAdapter.parse_response(body, &ctx()).unwrap();
        assert_eq!(r.model, ctx().model, "the public model, not Ollama's");
        assert_eq!(r.id, "chatcmpl-req_test");
        let c = &r.choices[0];
        assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
        let call = &c.message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.function.name, "get_current_weather");
        assert_eq!(call.id, "call_req_test_0");
        let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
        assert_eq!(args, json!({"format": "celsius", "location": "Paris, FR"}));
        let u = r.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (213, 28, 241)
        );
    }

    #[test]
    fn stream_transcript_every_split() {
        let transcript = fixture(include_bytes!(
            "../../../tests/fixtures/ollama/stream.ndjson"
        ));
        let d = decode_every_way(&|| OllamaAdapter.stream_decoder(&ctx()), transcript);
        assert_eq!(d.text, "The sky is blue — ünïcødé 日本.");
        assert_eq!(d.finish.as_deref(), Some("stop"));
        let u = d.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (26, 9));
        assert!(d.done && d.errors.is_empty());
    }

    #[test]
    fn stream_tool_call_and_length() {
        let transcript = concat!(
            "{\"model\":\"llama3.2\",\"created_at\":\"2024-07-22T20:33:28.123Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}]},\"done\":false}\n",
            "{\"model\":\"llama3.2\",\"created_at\":\"2024-07-22T20:33:28.2Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"length\",\"prompt_eval_count\":5,\"eval_count\":7}"
        );
        let d = decode_every_way(
            &|| OllamaAdapter.stream_decoder(&ctx()),
            transcript.as_bytes(),
        );
        assert_eq!(
            d.calls,
            vec![("call_req_test_0".into(), "f".into(), "{\"a\":1}".into())]
        );
        assert_eq!(d.finish.as_deref(), Some("length"));
        assert!(d.done);
    }

    #[test]
    fn errors_keep_the_message() {
        let body = fixture(include_bytes!(
            "../../../tests/fixtures/ollama/error_not_found.json"
        ));
        let e = OllamaAdapter.map_error(404, body);
        assert!(
            e.retryable() && !e.message.contains("llama"),
            "{}",
            e.message
        );
        let e = OllamaAdapter.map_error(400, br#"{"error":"invalid options"}"#);
        assert_eq!(e.status(), 400);
        assert_eq!(e.message, "invalid options");
        assert!(!e.retryable());
        let mut dec = OllamaAdapter.stream_decoder(&ctx());
        let mut items = dec.push(b"{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n{\"error\":\"an error was encountered while running the model\"}\n");
        items.extend(dec.finish());
        let d = crate::core::providers::mapping::testing::summarise(items);
        assert_eq!(d.text, "Hi");
        assert_eq!(d.errors.len(), 1);
        assert!(d.errors[0].retryable() && !d.errors[0].message.contains("running the model"));
        // A stream that stops without `done: true` is an error.
        let mut dec = OllamaAdapter.stream_decoder(&ctx());
        let mut items = dec.push(b"{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}");
        items.extend(dec.finish());
        let d = crate::core::providers::mapping::testing::summarise(items);
        assert_eq!((d.text.as_str(), d.errors.len(), d.done), ("Hi", 1, false));
    }
}
