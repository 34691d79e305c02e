//! OpenAI and every OpenAI-compatible server (LocalAI, vLLM, Groq, DeepSeek, Mistral, …).
//!
//! Follows the OpenAI API reference for `POST /v1/chat/completions`
//! (<https://platform.openai.com/docs/api-reference/chat>): the request passes through with
//! `model` replaced by the route's upstream model; streams are asked for usage
//! (`stream_options.include_usage`) so billing can use the provider's own count; stream chunks are
//! forwarded with their original bytes unless their usage needs normalising.
//!
//! Known OpenAI-compatible services are recognised by the host of the base URL ([`PRESETS`]) and
//! get their documented differences applied: DeepSeek and Mistral take `max_tokens` (not
//! `max_completion_tokens`); Mistral rejects `stream_options` (it reports usage in the last chunk
//! anyway); DeepSeek reports cache hits as `prompt_cache_hit_tokens`; Groq has reported stream
//! usage under `x_groq.usage`. Each is mapped to OpenAI's shape.

use serde_json::{Map, Value};

use super::mapping::error_for_status;
use super::{
    join_url, Adapter, ResponseContext, Route, StreamDecoder, StreamItem, UpstreamRequest,
};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, StreamOptions,
};
use crate::core::sse::{SseParser, DONE};

pub struct OpenAiAdapter;

/// An OpenAI-compatible service with a known base URL and known differences from OpenAI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The kind name an operator may give instead of `openai`.
    pub name: &'static str,
    /// The documented base URL.
    pub base_url: &'static str,
    /// Hosts that identify the service.
    pub hosts: &'static [&'static str],
    /// Whether the service accepts `stream_options`.
    pub stream_options: bool,
    /// Whether the output cap must be sent as `max_tokens`.
    pub legacy_max_tokens: bool,
}

/// Known OpenAI-compatible services (keep in sync with each provider's API reference; the README
/// lists them).
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "deepseek",
        base_url: "https://api.deepseek.com/v1",
        hosts: &["api.deepseek.com"],
        stream_options: true,
        legacy_max_tokens: true,
    },
    Preset {
        name: "mistral",
        base_url: "https://api.mistral.ai/v1",
        hosts: &["api.mistral.ai"],
        stream_options: false,
        legacy_max_tokens: true,
    },
    Preset {
        name: "groq",
        base_url: "https://api.groq.com/openai/v1",
        hosts: &["api.groq.com"],
        stream_options: true,
        legacy_max_tokens: false,
    },
    Preset {
        name: "openrouter",
        base_url: "https://openrouter.ai/api/v1",
        hosts: &["openrouter.ai"],
        stream_options: true,
        legacy_max_tokens: false,
    },
    Preset {
        name: "dashscope",
        base_url: "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        hosts: &["dashscope-intl.aliyuncs.com", "dashscope.aliyuncs.com"],
        stream_options: true,
        legacy_max_tokens: true,
    },
];

/// The preset an operator names as a provider kind (`qwen` is DashScope).
pub fn preset_by_name(name: &str) -> Option<&'static Preset> {
    let name = if name == "qwen" { "dashscope" } else { name };
    PRESETS.iter().find(|p| p.name == name)
}

/// The host of a URL, lowercased, without port or credentials.
pub fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = if host.starts_with('[') {
        host.split(']')
            .next()
            .map_or("", |h| h.trim_start_matches('['))
    } else {
        host.split(':').next().unwrap_or("")
    };
    host.to_ascii_lowercase()
}

/// The preset whose host serves `base_url`, if any.
pub fn preset_for_url(base_url: &str) -> Option<&'static Preset> {
    let host = url_host(base_url);
    PRESETS.iter().find(|p| p.hosts.contains(&host.as_str()))
}

/// The OpenAI-shaped body for `route`: model replaced, stream usage requested, preset
/// differences applied.
pub fn openai_body(
    route: &Route,
    req: &ChatCompletionRequest,
    preset: Option<&Preset>,
) -> Result<Vec<u8>, GatewayError> {
    let mut upstream = req.clone();
    upstream.model = route.upstream_model.clone();
    let stream_options = preset.is_none_or(|p| p.stream_options);
    if upstream.is_stream() && stream_options {
        let opts = upstream
            .stream_options
            .get_or_insert_with(|| StreamOptions {
                include_usage: None,
                extra: Default::default(),
            });
        opts.include_usage = Some(true);
    }
    if !stream_options {
        upstream.stream_options = None;
    }
    if preset.is_some_and(|p| p.legacy_max_tokens) {
        if let Some(cap) = upstream.max_completion_tokens.take() {
            upstream.max_tokens = Some(cap);
        }
    }
    serde_json::to_vec(&upstream)
        .map_err(|e| GatewayError::internal(format!("cannot encode upstream request: {e}")))
}

/// JSON content type, SSE accept for streams, and the provider config's extra `headers`
/// (e.g. OpenRouter's `HTTP-Referer` and `X-Title`).
pub fn base_headers(route: &Route, stream: bool) -> Vec<(String, String)> {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if stream {
        headers.push(("accept".to_string(), "text/event-stream".to_string()));
    }
    if let Some(Value::Object(extra)) = route.config.get("headers") {
        for (name, value) in extra {
            if let Some(value) = value.as_str() {
                headers.push((name.to_ascii_lowercase(), value.to_string()));
            }
        }
    }
    headers
}

impl Adapter for OpenAiAdapter {
    fn build_request(
        &self,
        route: &Route,
        req: &ChatCompletionRequest,
    ) -> Result<UpstreamRequest, GatewayError> {
        let body = openai_body(route, req, preset_for_url(&route.base_url))?;
        let mut headers = base_headers(route, req.is_stream());
        if let Some(key) = &route.api_key {
            headers.push(("authorization".to_string(), format!("Bearer {key}")));
        }
        Ok(UpstreamRequest {
            url: join_url(&route.base_url, "chat/completions"),
            headers,
            body,
        })
    }

    fn parse_response(
        &self,
        body: &[u8],
        _ctx: &ResponseContext,
    ) -> Result<ChatCompletionResponse, GatewayError> {
        parse_openai_response(body)
    }

    fn forwards_plain_body(&self) -> bool {
        true
    }

    fn stream_decoder(&self, _ctx: &ResponseContext) -> Box<dyn StreamDecoder> {
        Box::new(OpenAiStreamDecoder::default())
    }

    fn map_error(&self, status: u16, body: &[u8]) -> GatewayError {
        map_openai_error(status, body)
    }
}

/// Parses an OpenAI chat completion, normalising provider-specific usage fields.
pub fn parse_openai_response(body: &[u8]) -> Result<ChatCompletionResponse, GatewayError> {
    let invalid = |e: serde_json::Error| {
        GatewayError::new(
            ErrorKind::UpstreamFailed,
            format!("The provider returned an invalid chat completion: {e}"),
        )
    };
    let mut value: Value = serde_json::from_slice(body).map_err(invalid)?;
    normalize_usage(&mut value);
    serde_json::from_value(value).map_err(invalid)
}

/// Rewrites provider-specific usage fields into OpenAI's; returns whether anything changed.
/// DeepSeek: `prompt_cache_hit_tokens` → `prompt_tokens_details.cached_tokens`. Groq:
/// `x_groq.usage` → `usage`.
pub fn normalize_usage(value: &mut Value) -> bool {
    let Value::Object(obj) = value else {
        return false;
    };
    let mut changed = false;
    let has_usage = obj.get("usage").is_some_and(Value::is_object);
    if !has_usage {
        if let Some(u) = obj
            .get("x_groq")
            .and_then(|x| x.get("usage"))
            .filter(|u| u.is_object())
            .cloned()
        {
            obj.insert("usage".to_string(), u);
            changed = true;
        }
    }
    if let Some(Value::Object(usage)) = obj.get_mut("usage") {
        let has_details = usage
            .get("prompt_tokens_details")
            .is_some_and(Value::is_object);
        if let (false, Some(hit)) = (
            has_details,
            usage.get("prompt_cache_hit_tokens").and_then(Value::as_u64),
        ) {
            let mut details = Map::new();
            details.insert("cached_tokens".to_string(), Value::from(hit));
            usage.insert("prompt_tokens_details".to_string(), Value::Object(details));
            changed = true;
        }
    }
    changed
}

/// Maps an upstream error status and OpenAI-shaped (or any) body to a gateway error that keeps
/// the provider's message. 4xx request errors stay 4xx and are never retried elsewhere;
/// credential, availability and rate-limit failures are the gateway's problem (502/504/429) and
/// may be retried on another route.
///
/// Reads `{"error":{"message","code","param"}}` (OpenAI), a top-level `{"message",…}` (Mistral's
/// `{"object":"error",…}`), a `message` that is itself JSON (validation details), and a plain
/// string `error` (TGI, Ollama); any other body is kept as text.
pub fn map_openai_error(status: u16, body: &[u8]) -> GatewayError {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let obj = value.as_ref().and_then(|v| match v.get("error") {
        Some(e @ Value::Object(_)) => Some(e),
        Some(Value::String(_)) => Some(v),
        _ if v.get("message").is_some() => Some(v),
        _ => None,
    });
    let text_of = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    let detail = obj
        .and_then(|o| {
            o.get("message")
                .and_then(text_of)
                .or_else(|| o.get("error").and_then(text_of))
        })
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| super::mapping::body_text(body));
    let code = obj.and_then(|o| match o.get("code") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    });
    let param = obj
        .and_then(|o| o.get("param"))
        .and_then(|p| p.as_str().map(str::to_string));
    error_for_status(status, &detail, code, param)
}

/// Decodes an OpenAI SSE stream, keeping each event's bytes for pass-through.
pub struct OpenAiStreamDecoder {
    sse: SseParser,
    /// Maps an error object sent inside the stream (`{"error": …}`), with status 500.
    map_error: fn(u16, &[u8]) -> GatewayError,
    /// Rewrites a chunk into OpenAI's shape; returns whether it changed anything.
    normalize: fn(&mut Value) -> bool,
}

impl Default for OpenAiStreamDecoder {
    fn default() -> Self {
        Self::with_hooks(map_openai_error, normalize_usage)
    }
}

impl OpenAiStreamDecoder {
    /// A decoder for servers whose error objects or chunks differ from OpenAI's: in-stream
    /// errors are read by `map_error`, every chunk passes through `normalize`.
    pub fn with_hooks(
        map_error: fn(u16, &[u8]) -> GatewayError,
        normalize: fn(&mut Value) -> bool,
    ) -> Self {
        OpenAiStreamDecoder {
            sse: SseParser::new(),
            map_error,
            normalize,
        }
    }

    fn decode(&self, event: crate::core::sse::SseEvent) -> StreamItem {
        let Some(data) = event.data else {
            return StreamItem::KeepAlive(event.raw);
        };
        let data = data.trim();
        if data == DONE {
            return StreamItem::Done;
        }
        if data.is_empty() {
            return StreamItem::KeepAlive(event.raw);
        }
        let mut value: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                return StreamItem::Error(GatewayError::new(
                    ErrorKind::UpstreamFailed,
                    format!("The provider sent a malformed stream event: {e}"),
                ))
            }
        };
        if value.get("error").is_some_and(|e| !e.is_null()) {
            return StreamItem::Error((self.map_error)(500, data.as_bytes()));
        }
        let changed = (self.normalize)(&mut value);
        match serde_json::from_value::<ChatCompletionChunk>(value) {
            Ok(chunk) => StreamItem::Chunk {
                chunk,
                raw: (!changed).then_some(event.raw),
            },
            Err(e) => StreamItem::Error(GatewayError::new(
                ErrorKind::UpstreamFailed,
                format!("The provider sent an invalid stream chunk: {e}"),
            )),
        }
    }
}

fn oversized(e: crate::core::sse::SseError) -> StreamItem {
    StreamItem::Error(GatewayError::new(
        ErrorKind::UpstreamFailed,
        format!("The provider sent an unusable stream: {e}"),
    ))
}

impl StreamDecoder for OpenAiStreamDecoder {
    fn push(&mut self, bytes: &[u8]) -> Vec<StreamItem> {
        match self.sse.push(bytes) {
            Ok(events) => events.into_iter().map(|e| self.decode(e)).collect(),
            Err(e) => vec![oversized(e)],
        }
    }

    fn finish(&mut self) -> Vec<StreamItem> {
        match self.sse.finish() {
            Ok(event) => event
                .into_iter()
                .map(|mut e| {
                    end_block(&mut e.raw);
                    self.decode(e)
                })
                .collect(),
            Err(e) => vec![oversized(e)],
        }
    }
}

/// Ends a block the upstream left without its blank line (the parser returns it at the end of
/// the stream as received): forwarded as it is, it would run into the next event the gateway
/// writes (the error event of a broken stream) and corrupt it for the client.
fn end_block(raw: &mut Vec<u8>) {
    let strip = |b: &[u8]| -> Option<usize> {
        [&b"\r\n"[..], b"\n", b"\r"]
            .iter()
            .find(|eol| b.ends_with(eol))
            .map(|eol| b.len() - eol.len())
    };
    let ended = strip(raw).is_some_and(|end| strip(&raw[..end]).is_some());
    if !ended {
        raw.extend_from_slice(if raw.ends_with(b"\n") { b"\n" } else { b"\n\n" });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::providers::ProviderKind;

    fn route() -> Route {
        Route {
            provider: "openai".into(),
            kind: ProviderKind::OpenAi,
            base_url: "http://127.0.0.1:9/v1/".into(),
            api_key: Some("sk-test".into()),
            upstream_model: "gpt-4o-2024-08-06".into(),
            max_output_tokens: None,
            config: Value::Null,
        }
    }

    #[test]
    fn request_replaces_model_and_asks_for_stream_usage() {
        let req = ChatCompletionRequest::from_json(
            br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}],"top_p":0.5,
            "stream_options":{"x":1}}"#,
        )
        .unwrap();
        let up = OpenAiAdapter.build_request(&route(), &req).unwrap();
        assert_eq!(up.url, "http://127.0.0.1:9/v1/chat/completions");
        assert!(up
            .headers
            .contains(&("authorization".into(), "Bearer sk-test".into())));
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(body["model"], "gpt-4o-2024-08-06");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["stream_options"]["x"], 1);
        assert_eq!(body["top_p"], 0.5);
    }

    #[test]
    fn plain_request_has_no_stream_options() {
        let req = ChatCompletionRequest::from_json(
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        let up = OpenAiAdapter.build_request(&route(), &req).unwrap();
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert!(body.get("stream_options").is_none());
        assert!(body.get("stream").is_none());
    }

    #[test]
    fn errors_keep_the_provider_message() {
        let body = br#"{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        let e = map_openai_error(400, body);
        assert_eq!(e.status(), 400);
        assert_eq!(e.code(), "context_length_exceeded");
        assert_eq!(e.param.as_deref(), Some("messages"));
        assert!(!e.retryable());
        assert!(e.message.contains("maximum context length"));

        let e = map_openai_error(503, b"<html>bad gateway</html>");
        assert_eq!(e.status(), 502);
        assert!(e.retryable());
        assert!(e.message.contains("bad gateway"));

        let e = map_openai_error(401, br#"{"error":{"message":"Incorrect API key"}}"#);
        assert_eq!(e.status(), 502);
        let e = map_openai_error(429, b"");
        assert_eq!(e.status(), 429);
        assert!(e.retryable());
    }

    #[test]
    fn decodes_stream_with_crlf_and_splits() {
        let transcript = concat!(
            ": keep-alive\r\n\r\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\r\n\r\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"你好\"},\"finish_reason\":null}]}\r\n\r\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\r\n\r\n",
            "data: [DONE]\r\n\r\n"
        )
        .as_bytes();
        for split in 0..transcript.len() {
            let mut d = OpenAiStreamDecoder::default();
            let mut items = d.push(&transcript[..split]);
            items.extend(d.push(&transcript[split..]));
            items.extend(d.finish());
            assert_eq!(items.len(), 5, "split at {split}");
            assert!(matches!(items[0], StreamItem::KeepAlive(_)));
            let mut text = String::new();
            for item in &items[1..3] {
                let StreamItem::Chunk { chunk, raw } = item else {
                    panic!("chunk expected")
                };
                assert!(raw.is_some());
                chunk.append_generated_text(&mut text);
            }
            assert_eq!(text, "你好");
            let StreamItem::Chunk { chunk, .. } = &items[3] else {
                panic!("usage expected")
            };
            assert!(chunk.is_usage_only());
            assert_eq!(items[4], StreamItem::Done);
        }
    }

    #[test]
    fn stream_errors_and_garbage() {
        let mut d = OpenAiStreamDecoder::default();
        let items =
            d.push(b"data: {\"error\":{\"message\":\"overloaded\"}}\n\ndata: {not json\n\n");
        assert!(matches!(&items[0], StreamItem::Error(e) if e.message.contains("overloaded")));
        assert!(matches!(&items[1], StreamItem::Error(e) if e.status() == 502));
    }

    fn preset_route(base: &str) -> Route {
        let mut r = route();
        r.base_url = base.into();
        r
    }

    #[test]
    fn presets_by_base_url() {
        assert_eq!(
            url_host("https://user@API.DeepSeek.com:443/v1"),
            "api.deepseek.com"
        );
        assert_eq!(url_host("http://[::1]:8080/v1"), "::1");
        assert_eq!(
            preset_for_url("https://api.mistral.ai/v1").unwrap().name,
            "mistral"
        );
        assert_eq!(preset_by_name("qwen").unwrap().name, "dashscope");
        assert!(preset_for_url("http://127.0.0.1:9/v1").is_none());
        for p in PRESETS {
            assert_eq!(preset_for_url(p.base_url), Some(p), "{}", p.name);
            assert_eq!(ProviderKind::parse(p.name), Some(ProviderKind::OpenAi));
            assert_eq!(ProviderKind::default_base_url(p.name), Some(p.base_url));
        }

        let req = ChatCompletionRequest::from_json(
            br#"{"model":"m","stream":true,"max_completion_tokens":9,"stream_options":{"include_usage":false},
            "messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        let body = |base: &str| -> Value {
            let up = OpenAiAdapter
                .build_request(&preset_route(base), &req)
                .unwrap();
            serde_json::from_slice(&up.body).unwrap()
        };
        let mistral = body("https://api.mistral.ai/v1");
        assert!(mistral.get("stream_options").is_none());
        assert_eq!(mistral["max_tokens"], 9);
        assert!(mistral.get("max_completion_tokens").is_none());
        let deepseek = body("https://api.deepseek.com/v1");
        assert_eq!(deepseek["stream_options"]["include_usage"], true);
        assert_eq!(deepseek["max_tokens"], 9);
        let groq = body("https://api.groq.com/openai/v1");
        assert_eq!(groq["max_completion_tokens"], 9);
        assert!(groq.get("max_tokens").is_none());
    }

    #[test]
    fn config_headers_are_sent() {
        let mut r = preset_route("https://openrouter.ai/api/v1");
        r.config = serde_json::json!({"headers": {"HTTP-Referer": "https://example.com", "X-Title": "Tollgate"}});
        let req = ChatCompletionRequest::from_json(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        let up = OpenAiAdapter.build_request(&r, &req).unwrap();
        assert_eq!(up.url, "https://openrouter.ai/api/v1/chat/completions");
        assert!(up
            .headers
            .contains(&("http-referer".into(), "https://example.com".into())));
        assert!(up.headers.contains(&("x-title".into(), "Tollgate".into())));
    }

    #[test]
    fn deepseek_cache_hits_become_cached_tokens() {
        use crate::core::providers::mapping::testing::{ctx, fixture};
        let body = fixture(include_bytes!(
            "../../../tests/fixtures/openai/deepseek_response.json"
        ));
        let r = OpenAiAdapter.parse_response(body, &ctx()).unwrap();
        let u = r.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.cached_tokens(), u.completion_tokens),
            (16, 12, 10)
        );
    }

    #[test]
    fn groq_usage_moves_to_usage() {
        use crate::core::providers::mapping::testing::{ctx, decode_every_way, fixture};
        let transcript = fixture(include_bytes!(
            "../../../tests/fixtures/openai/groq_stream.sse"
        ));
        let d = decode_every_way(&|| OpenAiAdapter.stream_decoder(&ctx()), transcript);
        assert_eq!(d.text, "Fast ünïcødé");
        let u = d.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (12, 3));
        assert_eq!(d.finish.as_deref(), Some("stop"));
        assert!(d.done);
    }

    #[test]
    fn mistral_structured_error_message_is_kept() {
        use crate::core::providers::mapping::testing::fixture;
        let e = map_openai_error(
            422,
            fixture(include_bytes!(
                "../../../tests/fixtures/openai/mistral_error.json"
            )),
        );
        assert_eq!(e.status(), 422);
        assert!(
            e.message.contains("Extra inputs are not permitted"),
            "{}",
            e.message
        );
        let e = map_openai_error(404, br#"{"error":"model 'x' not found"}"#);
        assert!(e.message.contains("model 'x' not found"));
    }
}
