//! Provider adapters: one module per upstream API, all behind [`Adapter`].
//!
//! An adapter is pure: it builds the upstream HTTP request from an OpenAI request, and maps the
//! upstream's plain response, stream bytes and error bodies back to OpenAI shapes. The edge shell
//! does the I/O. Adding a provider is one new module plus one [`ProviderKind`] variant.

pub mod anthropic;
pub mod azure;
pub mod echo;
pub mod gemini;
pub mod huggingface;
pub mod mapping;
pub mod media;
pub mod native;
pub mod ollama;
pub mod openai;
pub mod registry;

use serde_json::Value;

use crate::core::error::GatewayError;
use crate::core::openai::{ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse};

/// The adapters Tollgate has. Stored as `providers.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI and any OpenAI-compatible server (LocalAI, vLLM, Groq, DeepSeek, …).
    OpenAi,
    /// Azure OpenAI: deployment URLs, `api-key` header, `api_version` from the provider config.
    Azure,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google's Gemini API (`generateContent`).
    Gemini,
    /// Ollama's native `/api/chat` (NDJSON streams).
    Ollama,
    /// Hugging Face: TGI / Inference Endpoints and the Inference Providers router.
    HuggingFace,
    /// The built-in demo model `tollgate-echo`: answers inside the gateway, no network.
    Echo,
}

impl ProviderKind {
    /// The kind an operator names: a kind's name or alias ([`registry::KINDS`]), or an
    /// OpenAI-compatible preset (`deepseek`, `groq`, …), which is kind `openai`; see
    /// [`openai::preset_by_name`] for their default base URLs.
    pub fn parse(kind: &str) -> Option<Self> {
        match registry::by_name(kind) {
            Some(e) => Some(e.kind),
            None => openai::preset_by_name(kind).map(|_| ProviderKind::OpenAi),
        }
    }

    /// The name stored in `providers.kind`.
    pub fn as_str(self) -> &'static str {
        registry::entry(self).name
    }

    /// Every kind an operator may configure, for error messages.
    pub fn names() -> Vec<&'static str> {
        registry::KINDS.iter().map(|e| e.name).collect()
    }

    /// The adapter of this kind.
    pub fn adapter(self) -> &'static dyn Adapter {
        registry::entry(self).adapter
    }

    /// Whether requests of this kind are served inside the gateway ([`UpstreamCall::Local`]):
    /// no destination to check, no fallback routes.
    pub fn is_local(self) -> bool {
        registry::entry(self).transport == registry::Transport::Local
    }

    /// The base URL used when the operator gives none: the provider's public endpoint, or the
    /// preset's for an OpenAI-compatible preset name.
    pub fn default_base_url(kind: &str) -> Option<&'static str> {
        match registry::by_name(kind) {
            Some(e) if e.no_default_for.contains(&kind) => None,
            Some(e) => e.default_base_url,
            None => openai::preset_by_name(kind).map(|p| p.base_url),
        }
    }
}

/// Where and how to reach one upstream model.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub provider: String,
    pub kind: ProviderKind,
    /// e.g. `https://api.openai.com/v1` (no trailing slash needed).
    pub base_url: String,
    /// The upstream key, read from the Worker secret the provider names.
    pub api_key: Option<String>,
    pub upstream_model: String,
    /// The model's `max_output_tokens`: the output cap per choice the reservation covers when
    /// the client sets none, and therefore the cap every adapter sends then ([`Route::output_cap`]).
    pub max_output_tokens: Option<u64>,
    /// The provider's adapter-specific JSON (`providers.config`), `Null` when unset.
    pub config: Value,
}

/// Per-route timeouts from the provider config (`connect_timeout_ms`, `first_byte_timeout_ms`);
/// `None` falls back to the gateway-wide `UPSTREAM_CONNECT_TIMEOUT_MS` / `UPSTREAM_TIMEOUT_MS`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteTimeouts {
    /// Until the provider's response headers.
    pub connect_ms: Option<u64>,
    /// From the headers until the first stream chunk (streams), or until the whole body (plain).
    pub first_byte_ms: Option<u64>,
}

impl Route {
    /// The route's own timeouts: positive integers in the provider config, else `None`.
    pub fn timeouts(&self) -> RouteTimeouts {
        let ms = |name: &str| {
            self.config
                .get(name)
                .and_then(serde_json::Value::as_u64)
                .filter(|&v| v > 0)
        };
        RouteTimeouts {
            connect_ms: ms("connect_timeout_ms"),
            first_byte_ms: ms("first_byte_timeout_ms"),
        }
    }

    /// A string setting of the provider config.
    pub fn config_str(&self, name: &str) -> Option<&str> {
        self.config.get(name).and_then(Value::as_str)
    }

    /// The output cap per choice to send upstream: the client's (the smaller of `max_tokens` and
    /// `max_completion_tokens` when it sets both), else the model's `max_output_tokens`. This is
    /// exactly the cover of the reservation (edge/chat.rs), so a provider can never be asked for
    /// more output than was reserved. `None` only for a route built without a model cap.
    pub fn output_cap(&self, req: &ChatCompletionRequest) -> Option<u64> {
        req.requested_max_output().or(self.max_output_tokens)
    }

    /// Whether the operator lets request field `name` through on this route: the provider
    /// config's `allowed_params` list (e.g. `{"allowed_params": ["service_tier", "top_k"]}`).
    pub fn allows_param(&self, name: &str) -> bool {
        self.config
            .get("allowed_params")
            .and_then(Value::as_array)
            .is_some_and(|list| list.iter().any(|v| v.as_str() == Some(name)))
    }
}

/// What the gateway knows about a response that native APIs do not send in OpenAI's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseContext {
    /// The completion id clients see (`chatcmpl-…`) when the provider gives none.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The public model name (the model the client asked for): every response and chunk shows
    /// it, never the upstream model or deployment.
    pub model: String,
}

/// An HTTP request for the edge shell to send.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// How one route's request reaches its model: a fetch, or a model served inside the gateway.
/// The pipeline dispatches on this, never on the kind.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamCall {
    Http(UpstreamRequest),
    Local(LocalRequest),
}

/// A request for a model the gateway serves itself ([`serve_local`]): the OpenAI request body
/// the adapter built, as an OpenAI server would receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalRequest {
    pub kind: ProviderKind,
    pub body: Vec<u8>,
}

/// What a local model answers: a plain body, or SSE events made one at a time as they are
/// pulled (memory stays that of one event).
#[derive(Debug)]
pub enum LocalReply {
    Json(Vec<u8>),
    Events(LocalEvents),
}

/// The events of a local model's stream.
pub type LocalEvents = echo::EchoEvents;

/// Answers a [`LocalRequest`] the way an OpenAI server would; `id` and `created` (Unix seconds)
/// are the completion's.
pub fn serve_local(req: &LocalRequest, id: &str, created: u64) -> Result<LocalReply, GatewayError> {
    match req.kind {
        ProviderKind::Echo => echo::serve(&req.body, id, created),
        other => Err(GatewayError::internal(format!(
            "provider kind `{}` is not served locally",
            other.as_str()
        ))),
    }
}

/// What a stream decoder makes of upstream bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// A chunk; `raw` holds the upstream's own SSE bytes when they can be forwarded unchanged.
    Chunk {
        chunk: ChatCompletionChunk,
        raw: Option<Vec<u8>>,
    },
    /// A keep-alive or comment, forwarded unchanged.
    KeepAlive(Vec<u8>),
    /// The upstream ended the stream normally.
    Done,
    /// The upstream reported an error inside the stream.
    Error(GatewayError),
}

/// Turns upstream stream bytes into OpenAI chunks, incrementally.
pub trait StreamDecoder {
    /// Feeds the next bytes; returns every item they complete.
    fn push(&mut self, bytes: &[u8]) -> Vec<StreamItem>;
    /// The upstream closed the connection; returns what was pending.
    fn finish(&mut self) -> Vec<StreamItem>;
}

/// One provider's API.
pub trait Adapter: Sync {
    /// Builds the upstream request. `stream` requests a stream with usage reporting.
    fn build_request(
        &self,
        route: &Route,
        req: &ChatCompletionRequest,
    ) -> Result<UpstreamRequest, GatewayError>;

    /// How the request reaches the model: [`Adapter::build_request`] sent over HTTP, unless the
    /// adapter serves its model inside the gateway.
    fn build_call(
        &self,
        route: &Route,
        req: &ChatCompletionRequest,
    ) -> Result<UpstreamCall, GatewayError> {
        self.build_request(route, req).map(UpstreamCall::Http)
    }

    /// Maps a successful plain response body.
    fn parse_response(
        &self,
        body: &[u8],
        ctx: &ResponseContext,
    ) -> Result<ChatCompletionResponse, GatewayError>;

    /// Whether a successful plain body is already an OpenAI chat completion that may be sent to
    /// the client unchanged (otherwise the gateway sends the parsed response re-encoded).
    fn forwards_plain_body(&self) -> bool {
        false
    }

    /// A decoder for a successful streamed response.
    fn stream_decoder(&self, ctx: &ResponseContext) -> Box<dyn StreamDecoder>;

    /// Maps a non-2xx upstream response to an OpenAI-shaped error. Only the provider's own
    /// rejections of the request (4xx other than 401/402/403/404/408/429) keep its message,
    /// sanitized; every other failure gets a generic message ([`mapping::error_for_status`]).
    fn map_error(&self, status: u16, body: &[u8]) -> GatewayError;
}

/// Joins a base URL and a path with exactly one slash.
pub fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_timeouts_come_from_the_config() {
        let mut route = Route {
            provider: "p".into(),
            kind: ProviderKind::OpenAi,
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: None,
            upstream_model: "m".into(),
            max_output_tokens: None,
            config: serde_json::Value::Null,
        };
        assert_eq!(route.timeouts(), RouteTimeouts::default());
        route.config = serde_json::json!({"connect_timeout_ms": 1500, "first_byte_timeout_ms": 0});
        assert_eq!(
            route.timeouts(),
            RouteTimeouts {
                connect_ms: Some(1500),
                first_byte_ms: None
            }
        );
        route.config =
            serde_json::json!({"connect_timeout_ms": "soon", "first_byte_timeout_ms": 9000});
        assert_eq!(route.timeouts().connect_ms, None);
        assert_eq!(route.timeouts().first_byte_ms, Some(9000));
    }

    #[test]
    fn kinds_round_trip() {
        for k in ProviderKind::names() {
            assert_eq!(ProviderKind::parse(k).unwrap().as_str(), k);
        }
        assert_eq!(
            ProviderKind::parse("openai-compatible"),
            Some(ProviderKind::OpenAi)
        );
        assert_eq!(ProviderKind::parse("nope"), None);
    }

    fn adapter_route(kind: ProviderKind, base_url: &str, config: serde_json::Value) -> Route {
        Route {
            provider: "p".into(),
            kind,
            base_url: base_url.into(),
            api_key: Some("k".into()),
            upstream_model: "up-model".into(),
            max_output_tokens: Some(777),
            config,
        }
    }

    /// Every kind that calls a provider, with a base URL of each OpenAI dialect.
    fn every_adapter(config: serde_json::Value) -> Vec<Route> {
        [
            (ProviderKind::OpenAi, "http://127.0.0.1:9/v1"),
            (ProviderKind::OpenAi, "https://api.openai.com/v1"),
            (ProviderKind::OpenAi, "https://api.deepseek.com/v1"),
            (ProviderKind::OpenAi, "https://api.mistral.ai/v1"),
            (ProviderKind::OpenAi, "https://api.groq.com/openai/v1"),
            (ProviderKind::OpenAi, "https://openrouter.ai/api/v1"),
            (ProviderKind::Azure, "https://r.openai.azure.com"),
            (ProviderKind::HuggingFace, huggingface::ROUTER_BASE_URL),
            (ProviderKind::Anthropic, anthropic::DEFAULT_BASE_URL),
            (ProviderKind::Gemini, gemini::DEFAULT_BASE_URL),
            (ProviderKind::Ollama, ollama::DEFAULT_BASE_URL),
        ]
        .into_iter()
        .map(|(kind, base)| adapter_route(kind, base, config.clone()))
        .collect()
    }

    /// Every output cap an upstream body carries, in whichever field its API reads.
    fn caps_sent(body: &[u8]) -> Vec<u64> {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        [
            &v["max_tokens"],
            &v["max_completion_tokens"],
            &v["generationConfig"]["maxOutputTokens"],
            &v["options"]["num_predict"],
        ]
        .into_iter()
        .filter_map(serde_json::Value::as_u64)
        .collect()
    }

    fn chat(extra: &str) -> ChatCompletionRequest {
        ChatCompletionRequest::from_json(
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}]{extra}}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn every_adapter_sends_the_reserved_cap_when_the_client_sets_none() {
        for stream in ["", r#","stream":true"#] {
            let req = chat(stream);
            for route in every_adapter(serde_json::Value::Null) {
                let up = route.kind.adapter().build_request(&route, &req).unwrap();
                let caps = caps_sent(&up.body);
                assert!(!caps.is_empty(), "{} sends no cap", route.base_url);
                assert!(
                    caps.iter().all(|&c| c == 777),
                    "{}: {caps:?}",
                    route.base_url
                );
            }
        }
    }

    #[test]
    fn with_two_client_caps_only_the_smaller_is_sent() {
        for fields in [
            r#","max_completion_tokens":1,"max_tokens":8000"#,
            r#","max_completion_tokens":8000,"max_tokens":1"#,
        ] {
            let req = chat(fields);
            assert_eq!(req.requested_max_output(), Some(1));
            for route in every_adapter(serde_json::Value::Null) {
                let up = route.kind.adapter().build_request(&route, &req).unwrap();
                let caps = caps_sent(&up.body);
                assert!(!caps.is_empty(), "{}", route.base_url);
                assert!(caps.iter().all(|&c| c == 1), "{}: {caps:?}", route.base_url);
            }
        }
    }

    #[test]
    fn every_adapter_refuses_billable_options_unless_allowed() {
        for (field, value) in [
            ("service_tier", r#""priority""#),
            ("modalities", r#"["text","audio"]"#),
            ("audio", r#"{"voice":"alloy","format":"wav"}"#),
            ("web_search_options", "{}"),
            ("prediction", r#"{"type":"content","content":"x"}"#),
            ("store", "true"),
            ("metadata", r#"{"a":"b"}"#),
            ("data_sources", "[]"),
            ("models", r#"["a","b"]"#),
            ("route", r#""fallback""#),
            ("provider", r#"{"order":["x"]}"#),
            ("transforms", r#"["middle-out"]"#),
        ] {
            let req = chat(&format!(r#","{field}":{value}"#));
            for route in every_adapter(serde_json::Value::Null) {
                let err = route
                    .kind
                    .adapter()
                    .build_request(&route, &req)
                    .unwrap_err();
                assert_eq!(err.status(), 400, "{field} on {}", route.base_url);
                assert_eq!(err.param.as_deref(), Some(field));
                assert_eq!(err.code(), "unsupported_parameter");
                let body: serde_json::Value =
                    serde_json::from_str(&crate::core::inbound::openai::error_body(&err)).unwrap();
                assert_eq!(body["error"]["type"], "invalid_request_error");
            }
            let allowed = serde_json::json!({ "allowed_params": [field] });
            for route in every_adapter(allowed) {
                let up = route.kind.adapter().build_request(&route, &req).unwrap();
                let body: serde_json::Value = serde_json::from_slice(&up.body).unwrap();
                let sent: serde_json::Value = serde_json::from_str(value).unwrap();
                assert_eq!(body[field], sent, "{field} allowed on {}", route.base_url);
            }
        }
        // Values that ask for nothing beyond the default are accepted, and not sent.
        let req = chat(
            r#","store":false,"service_tier":"default","modalities":["text"],"metadata":{},"audio":null"#,
        );
        for route in every_adapter(serde_json::Value::Null) {
            let up = route.kind.adapter().build_request(&route, &req).unwrap();
            let body: serde_json::Value = serde_json::from_slice(&up.body).unwrap();
            for field in mapping::BILLABLE_PARAMS {
                assert!(
                    body.get(field).is_none(),
                    "{field} sent to {}",
                    route.base_url
                );
            }
        }
    }

    #[test]
    fn joins_urls() {
        assert_eq!(
            join_url("http://h/v1/", "/chat/completions"),
            "http://h/v1/chat/completions"
        );
        assert_eq!(
            join_url("http://h/v1", "chat/completions"),
            "http://h/v1/chat/completions"
        );
    }
}
