//! OpenAI and every OpenAI-compatible server (LocalAI, vLLM, Groq, DeepSeek, Mistral, …).
//!
//! Follows the OpenAI API reference for `POST /v1/chat/completions`
//! (<https://platform.openai.com/docs/api-reference/chat>): the request passes through with
//! `model` replaced by the route's upstream model; streams are asked for usage
//! (`stream_options.include_usage`) so billing can use the provider's own count; stream chunks are
//! forwarded with their original bytes unless their usage needs normalising.
//!
//! Known OpenAI-compatible services are recognised by the host of the base URL ([`PRESETS`]) and
//! get their documented differences applied: DeepSeek, Mistral, DashScope and OpenRouter take
//! `max_tokens` (not `max_completion_tokens`); Mistral rejects `stream_options` (it reports usage
//! in the last chunk anyway); DeepSeek reports cache hits as `prompt_cache_hit_tokens`; Groq has
//! reported stream usage under `x_groq.usage`. Each is mapped to OpenAI's shape.
//!
//! **What is forwarded.** The body is rebuilt from the parsed request, never the client's bytes:
//! the typed fields, the standard Chat Completions options of [`FORWARDED_PARAMS`], and the
//! fields the operator lists in the provider config's `allowed_params`. The billable options of
//! [`super::mapping::BILLABLE_PARAMS`] are refused (400) unless allowed; any other field is dropped.
//! **The output cap is always sent** ([`Route::output_cap`]: the client's, else the model's
//! `max_output_tokens`, which is what the reservation covers), in the field the server honours
//! ([`CapField`]): `max_completion_tokens` for OpenAI and Groq, `max_tokens` for the presets that
//! document only it, and both (same value) for an unknown compatible server, which may honour
//! either. The provider config's `output_cap_field` overrides the choice.
//!
//! **Abuse attribution.** OpenAI asks platforms that serve many end users to send a stable,
//! privacy-preserving `safety_identifier` per user, so that abuse is attributed to that user
//! rather than to the whole API organisation. Tollgate's users are its tenants: every request to
//! OpenAI itself (`api.openai.com`) or to Azure OpenAI carries [`safety_identifier`] of the
//! calling tenant, a hash that names no tenant to the provider. The client's own
//! `safety_identifier` is never forwarded (a tenant could name another tenant, or nobody). Other
//! OpenAI-compatible servers get none by default (some reject unknown fields); the provider
//! config's `safety_identifier` (`true`/`false`) turns it on or off per provider
//! ([`sends_safety_identifier`]).
//!
//! **Model names.** Responses and stream chunks name the public model (the [`ResponseContext`]
//! model), never the upstream model or deployment: plain bodies and chunks keep their bytes
//! except for that one value ([`with_model`]).

use serde_json::{Map, Value};

use super::mapping::{check_billable, error_for_status};
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
    /// The field the service reads the output cap from.
    pub cap_field: CapField,
}

/// Where an OpenAI-compatible server reads the output cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapField {
    /// `max_completion_tokens` (OpenAI's field; its reasoning models refuse `max_tokens`).
    MaxCompletionTokens,
    /// `max_tokens`, the older field most compatible servers know.
    MaxTokens,
    /// Both, with the same value: for servers that may honour either.
    Both,
}

impl CapField {
    /// The provider config's `output_cap_field` value: `max_completion_tokens`, `max_tokens`
    /// or `both`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "max_completion_tokens" => Some(CapField::MaxCompletionTokens),
            "max_tokens" => Some(CapField::MaxTokens),
            "both" => Some(CapField::Both),
            _ => None,
        }
    }

    /// The route's cap field: its config's `output_cap_field` when valid, else `default`.
    pub fn of_route(route: &Route, default: CapField) -> CapField {
        route
            .config_str("output_cap_field")
            .and_then(CapField::parse)
            .unwrap_or(default)
    }
}

/// Standard Chat Completions options (OpenAI API reference) forwarded as the client sent them,
/// besides the typed fields (`model`, `messages`, `stream`, `stream_options`, `n`, `tools` and the
/// output cap). None of them changes the price of a token or where data is kept.
pub const FORWARDED_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "seed",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "user",
    "prompt_cache_key",
    "reasoning_effort",
    "verbosity",
    "functions",
    "function_call",
];

/// The request field for abuse attribution (module documentation, "Abuse attribution").
pub const SAFETY_IDENTIFIER: &str = "safety_identifier";

/// The domain of the attribution hash: a new scheme gets a new tag, never the same hash.
const SAFETY_IDENTIFIER_TAG: &[u8] = b"tollgate/safety-identifier/v1";

/// The `safety_identifier` of a tenant: `tg_` and the first 32 hex digits (128 bits) of
/// SHA-256(`tollgate/safety-identifier/v1` ‖ 0x00 ‖ tenant id). Stable for the tenant, the
/// same across providers and gateways of one deployment, and it reveals neither the tenant's id
/// nor its name (the ids are not enumerable from the outside).
pub fn safety_identifier(tenant_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(SAFETY_IDENTIFIER_TAG);
    hasher.update([0u8]);
    hasher.update(tenant_id.as_bytes());
    let digest = hasher.finalize();
    let mut out = String::with_capacity(3 + 32);
    out.push_str("tg_");
    for byte in digest.iter().take(16) {
        out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// Replaces whatever `safety_identifier` the client sent with the calling tenant's: called once
/// for every request, before any adapter sees it. Which routes actually send it is
/// [`sends_safety_identifier`]'s decision.
pub fn attribute_to_tenant(req: &mut ChatCompletionRequest, tenant_id: &str) {
    req.extra.insert(
        SAFETY_IDENTIFIER.to_string(),
        Value::String(safety_identifier(tenant_id)),
    );
}

/// Whether requests on `route` carry the tenant's `safety_identifier`: the provider config's
/// `safety_identifier` when it is a boolean, else yes for OpenAI itself (the `openai` preset's
/// host) and Azure OpenAI, and no for any other server (an OpenAI-compatible server may refuse a
/// field it does not know).
pub fn sends_safety_identifier(route: &Route) -> bool {
    if let Some(on) = route.config.get(SAFETY_IDENTIFIER).and_then(Value::as_bool) {
        return on;
    }
    route.kind == super::ProviderKind::Azure
        || preset_for_url(&route.base_url).is_some_and(|p| p.name == "openai")
}

/// How an OpenAI-compatible body is shaped for one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// Whether the server accepts `stream_options`.
    pub stream_options: bool,
    pub cap_field: CapField,
}

/// Known OpenAI-compatible services (keep in sync with each provider's API reference; the README
/// lists them).
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "openai",
        base_url: "https://api.openai.com/v1",
        hosts: &["api.openai.com"],
        stream_options: true,
        cap_field: CapField::MaxCompletionTokens,
    },
    Preset {
        name: "deepseek",
        base_url: "https://api.deepseek.com/v1",
        hosts: &["api.deepseek.com"],
        stream_options: true,
        cap_field: CapField::MaxTokens,
    },
    Preset {
        name: "mistral",
        base_url: "https://api.mistral.ai/v1",
        hosts: &["api.mistral.ai"],
        stream_options: false,
        cap_field: CapField::MaxTokens,
    },
    Preset {
        name: "groq",
        base_url: "https://api.groq.com/openai/v1",
        hosts: &["api.groq.com"],
        stream_options: true,
        cap_field: CapField::MaxCompletionTokens,
    },
    Preset {
        name: "openrouter",
        base_url: "https://openrouter.ai/api/v1",
        hosts: &["openrouter.ai"],
        stream_options: true,
        cap_field: CapField::MaxTokens,
    },
    Preset {
        name: "dashscope",
        base_url: "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        hosts: &["dashscope-intl.aliyuncs.com", "dashscope.aliyuncs.com"],
        stream_options: true,
        cap_field: CapField::MaxTokens,
    },
];

/// The preset an operator names as a provider kind (`qwen` is DashScope).
pub fn preset_by_name(name: &str) -> Option<&'static Preset> {
    let name = if name == "qwen" { "dashscope" } else { name };
    PRESETS.iter().find(|p| p.name == name)
}

/// The host of a URL (WHATWG parsing, as the runtime's `fetch` does), lowercased, without port,
/// credentials or IPv6 brackets; empty when the URL does not parse or has no host.
pub fn url_host(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host().map(|h| match h {
                url::Host::Ipv6(ip) => ip.to_string(),
                other => other.to_string(),
            })
        })
        .unwrap_or_default()
}

/// The preset whose host serves `base_url`, if any.
pub fn preset_for_url(base_url: &str) -> Option<&'static Preset> {
    let host = url_host(base_url);
    PRESETS.iter().find(|p| p.hosts.contains(&host.as_str()))
}

/// The dialect of an `openai` route: its preset's, else `stream_options` and both cap fields
/// (an unknown compatible server may honour either field); `output_cap_field` overrides.
pub fn dialect_for(route: &Route) -> Dialect {
    let preset = preset_for_url(&route.base_url);
    Dialect {
        stream_options: preset.is_none_or(|p| p.stream_options),
        cap_field: CapField::of_route(route, preset.map_or(CapField::Both, |p| p.cap_field)),
    }
}

/// The OpenAI-shaped body for `route`: billable options refused unless allowed, only known or
/// allowed fields kept, model replaced, the output cap always set in the dialect's field(s),
/// stream usage requested.
pub fn openai_body(
    route: &Route,
    req: &ChatCompletionRequest,
    dialect: Dialect,
) -> Result<Vec<u8>, GatewayError> {
    check_billable(route, req)?;
    let mut upstream = req.clone();
    upstream.model = route.upstream_model.clone();
    upstream.extra.retain(|name, _| {
        name != SAFETY_IDENTIFIER
            && (FORWARDED_PARAMS.contains(&name.as_str()) || route.allows_param(name))
    });
    if sends_safety_identifier(route) {
        // The gateway's value (the tenant's, see `attribute_to_tenant`), only if it is one.
        if let Some(id) = req
            .extra
            .get(SAFETY_IDENTIFIER)
            .filter(|v| v.as_str().is_some_and(is_gateway_identifier))
        {
            upstream
                .extra
                .insert(SAFETY_IDENTIFIER.to_string(), id.clone());
        }
    }
    let cap = route.output_cap(req);
    upstream.max_tokens = None;
    upstream.max_completion_tokens = None;
    if let Some(cap) = cap {
        if dialect.cap_field != CapField::MaxTokens {
            upstream.max_completion_tokens = Some(cap);
        }
        if dialect.cap_field != CapField::MaxCompletionTokens {
            upstream.max_tokens = Some(cap);
        }
    }
    if upstream.is_stream() && dialect.stream_options {
        let opts = upstream
            .stream_options
            .get_or_insert_with(|| StreamOptions {
                include_usage: None,
                extra: Default::default(),
            });
        opts.include_usage = Some(true);
    }
    if !dialect.stream_options {
        upstream.stream_options = None;
    }
    serde_json::to_vec(&upstream)
        .map_err(|e| GatewayError::internal(format!("cannot encode upstream request: {e}")))
}

/// Whether `s` has the shape of [`safety_identifier`]'s output: a client value of any other shape
/// that reached an adapter without [`attribute_to_tenant`] is not forwarded.
fn is_gateway_identifier(s: &str) -> bool {
    s.len() == 35
        && s.starts_with("tg_")
        && s[3..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
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
        let body = openai_body(route, req, dialect_for(route))?;
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
        ctx: &ResponseContext,
    ) -> Result<ChatCompletionResponse, GatewayError> {
        parse_openai_response(body, ctx)
    }

    fn forwards_plain_body(&self) -> bool {
        true
    }

    fn stream_decoder(&self, ctx: &ResponseContext) -> Box<dyn StreamDecoder> {
        Box::new(OpenAiStreamDecoder::default().for_model(&ctx.model))
    }

    fn map_error(&self, status: u16, body: &[u8]) -> GatewayError {
        map_openai_error(status, body)
    }
}

/// `json` (a JSON object, or an SSE event whose data is one) with the string value of its
/// top-level `model` member replaced by `model`; every other byte is kept. `None` when there is
/// no such member (then the caller re-encodes).
///
/// A hand-written scan rather than parse-and-reserialize: forwarded bodies and stream events stay
/// byte-identical to the provider's (field order, number formatting, unknown fields), and the hot
/// path costs one pass over the bytes. The scan tracks strings (with escapes) and nesting depth,
/// so a `"model"` inside content or a nested object is never touched.
pub fn with_model(json: &[u8], model: &str) -> Option<Vec<u8>> {
    let (start, end) = top_level_model(json)?;
    let encoded = serde_json::to_string(model).ok()?;
    let mut out = Vec::with_capacity(json.len() + encoded.len());
    out.extend_from_slice(json.get(..start)?);
    out.extend_from_slice(encoded.as_bytes());
    out.extend_from_slice(json.get(end..)?);
    Some(out)
}

/// The byte span (quotes included) of the string value of the first JSON object's top-level
/// `model` member.
fn top_level_model(json: &[u8]) -> Option<(usize, usize)> {
    /// The index of the quote closing the string that opens at `start`.
    fn string_end(json: &[u8], start: usize) -> Option<usize> {
        let mut i = start + 1;
        while i < json.len() {
            match json[i] {
                b'\\' => i += 2,
                b'"' => return Some(i),
                _ => i += 1,
            }
        }
        None
    }
    let mut i = json.iter().position(|&b| b == b'{')? + 1;
    let mut depth = 1usize;
    let mut expect_key = true;
    let mut after_model_key = false;
    while i < json.len() {
        match json[i] {
            b'"' => {
                let end = string_end(json, i)?;
                if depth == 1 {
                    if expect_key {
                        after_model_key = &json[i + 1..end] == b"model";
                        expect_key = false;
                    } else if after_model_key {
                        return Some((i, end + 1));
                    }
                }
                i = end + 1;
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                after_model_key = false;
            }
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return None;
                }
            }
            b',' if depth == 1 => {
                expect_key = true;
                after_model_key = false;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// A forwarded plain body as the client gets it: the provider's bytes with `model` showing the
/// public model name (unchanged when it already does or names none).
pub fn public_body(body: Vec<u8>, model: &str) -> Vec<u8> {
    match top_level_model(&body) {
        Some((start, end))
            if serde_json::from_slice::<String>(&body[start..end]).is_ok_and(|m| m != model) =>
        {
            with_model(&body, model).unwrap_or(body)
        }
        _ => body,
    }
}

/// Parses an OpenAI chat completion, normalising provider-specific usage fields.
/// The response names the public model (`ctx.model`).
pub fn parse_openai_response(
    body: &[u8],
    ctx: &ResponseContext,
) -> Result<ChatCompletionResponse, GatewayError> {
    let invalid = |e: serde_json::Error| {
        GatewayError::new(
            ErrorKind::UpstreamFailed,
            format!("The provider returned an invalid chat completion: {e}"),
        )
    };
    let mut value: Value = serde_json::from_slice(body).map_err(invalid)?;
    normalize_usage(&mut value);
    let mut resp: ChatCompletionResponse = serde_json::from_value(value).map_err(invalid)?;
    resp.model = ctx.model.clone();
    Ok(resp)
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
    /// The public model name every chunk shows, when set ([`OpenAiStreamDecoder::for_model`]).
    model: Option<String>,
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
            model: None,
        }
    }

    /// Chunks name `model` (the public model) instead of the upstream's model or deployment;
    /// their bytes are otherwise forwarded unchanged.
    pub fn for_model(mut self, model: &str) -> Self {
        self.model = Some(model.to_string());
        self
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
        let mut raw = (!changed).then_some(event.raw);
        if let Some(public) = &self.model {
            let shown = value.get("model").and_then(Value::as_str);
            if shown.is_some_and(|m| m != public) {
                raw = raw.and_then(|bytes| with_model(&bytes, public));
                value["model"] = Value::String(public.clone());
            }
        }
        match serde_json::from_value::<ChatCompletionChunk>(value) {
            Ok(chunk) => StreamItem::Chunk { chunk, raw },
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

    /// Structured outputs are generated in the order of the schema's keys, and the AI SDK, LangChain
    /// and the SDKs' zod helpers write them in the order the developer declared them: the upstream
    /// body keeps every object's keys in the client's order (serde_json `preserve_order`), never
    /// sorted (`{"reasoning", "answer"}` would otherwise become `{"answer", "reasoning"}`).
    #[test]
    fn request_keeps_the_clients_key_order_in_schemas() {
        let req = ChatCompletionRequest::from_json(
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],
            "response_format":{"type":"json_schema","json_schema":{"name":"out","strict":true,
              "schema":{"type":"object","properties":{"zeta":{"type":"string"},"reasoning":{"type":"string"},
                "answer":{"type":"number"}},"required":["zeta","reasoning","answer"],"additionalProperties":false}}},
            "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object",
              "properties":{"city":{"type":"string"},"at":{"type":"string"}}}}}]}"#,
        )
        .unwrap();
        let up = OpenAiAdapter.build_request(&route(), &req).unwrap();
        let text = String::from_utf8(up.body).unwrap();
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {text}"))
        };
        assert!(at(r#""zeta""#) < at(r#""reasoning""#) && at(r#""reasoning""#) < at(r#""answer""#));
        assert!(at(r#""city""#) < at(r#""at""#));
        assert!(at(r#""type":"object","properties""#) < at(r#""required""#));
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
    fn request_errors_keep_the_provider_message() {
        let body = br#"{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        let e = map_openai_error(400, body);
        assert_eq!(e.status(), 400);
        assert_eq!(e.code(), "context_length_exceeded");
        assert_eq!(e.param.as_deref(), Some("messages"));
        assert!(!e.retryable());
        assert!(e.message.contains("maximum context length"));
    }

    #[test]
    fn provider_failures_keep_their_text_to_the_gateway() {
        let cases: [(u16, &[u8], u16); 6] = [
            (401, br#"{"error":{"message":"Incorrect API key provided: sk-proj-abcd****wxyz. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","code":"invalid_api_key"}}"#, 502),
            (403, br#"{"error":{"message":"Project proj_Abc123 does not have access to model gpt-x","code":"model_not_found"}}"#, 502),
            (402, br#"{"error":{"message":"Insufficient credits on org-XyZ987. Add more at https://openrouter.ai/settings/credits"}}"#, 502),
            (429, br#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-XyZ987 on tokens per min (TPM): Limit 30000, Used 29000","type":"tokens","code":"rate_limit_exceeded"}}"#, 429),
            (503, b"<html>bad gateway at internal-lb.corp.example:8443</html>", 502),
            (404, br#"{"error":{"message":"The model `gpt4o-prod-eastus` does not exist"}}"#, 502),
        ];
        for (status, body, client_status) in cases {
            let e = map_openai_error(status, body);
            assert_eq!(e.status(), client_status, "{status}");
            assert!(e.retryable(), "{status}");
            assert!(
                e.message.contains(&format!("HTTP {status}")),
                "{}",
                e.message
            );
            for leak in [
                "sk-",
                "org-",
                "proj_",
                "http",
                "Incorrect",
                "internal-lb",
                "TPM",
                "gpt4o-prod",
                "gpt-x",
            ] {
                assert!(
                    !e.message.contains(leak),
                    "{status} leaks {leak}: {}",
                    e.message
                );
            }
            assert!(e.code.is_none() && e.param.is_none(), "{status}");
        }
    }

    #[test]
    fn rejections_are_sanitized() {
        let e = map_openai_error(
            400,
            br#"{"error":{"message":"Invalid key sk-abc123 for org-1; see https://x.example/docs or (Bearer tok_9)","param":"x; drop","code":"bad code!"}}"#,
        );
        assert_eq!(e.status(), 400);
        assert_eq!(
            e.message,
            "Invalid key [redacted] for [redacted] see [url] or (Bearer [redacted]"
        );
        assert!(e.param.is_none() && e.code.is_none());
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
        assert!(
            matches!(&items[0], StreamItem::Error(e) if e.retryable() && !e.message.contains("overloaded"))
        );
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
        assert_eq!(url_host("http://127.1:8080/v1"), "127.0.0.1");
        assert_eq!(
            url_host("https://api.openai.com.evil.example/v1"),
            "api.openai.com.evil.example"
        );
        assert_eq!(
            url_host("https://evil.example\\@api.openai.com/v1"),
            "evil.example"
        );
        assert_eq!(url_host("builtin:"), "");
        assert_eq!(url_host("not a url"), "");
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
        for only_new in [
            "https://api.groq.com/openai/v1",
            "https://api.openai.com/v1",
        ] {
            let b = body(only_new);
            assert_eq!(b["max_completion_tokens"], 9);
            assert!(b.get("max_tokens").is_none(), "{only_new}");
        }
        let openrouter = body("https://openrouter.ai/api/v1");
        assert_eq!(openrouter["max_tokens"], 9);
        assert!(openrouter.get("max_completion_tokens").is_none());
        // An unknown compatible server may honour either field: both carry the cap.
        let unknown = body("http://10.0.0.5:8000/v1");
        assert_eq!(
            (
                unknown["max_tokens"].as_u64(),
                unknown["max_completion_tokens"].as_u64()
            ),
            (Some(9), Some(9))
        );
        // The operator may name the field.
        let mut r = preset_route("http://10.0.0.5:8000/v1");
        r.config = serde_json::json!({"output_cap_field": "max_tokens"});
        let b: Value =
            serde_json::from_slice(&OpenAiAdapter.build_request(&r, &req).unwrap().body).unwrap();
        assert_eq!(b["max_tokens"], 9);
        assert!(b.get("max_completion_tokens").is_none());
    }

    #[test]
    fn safety_identifier_is_the_documented_hash() {
        // Vectors from an independent implementation (Python's hashlib):
        // "tg_" + sha256(b"tollgate/safety-identifier/v1\x00" + tenant_id).hexdigest()[:32]
        assert_eq!(
            safety_identifier("ten_01JABC"),
            "tg_f516bc242033ba5104c55b7a6549dfa1"
        );
        assert_eq!(
            safety_identifier("acme"),
            "tg_3ba4c31524307b2276df5fba6dc401f7"
        );
        assert_eq!(safety_identifier(""), "tg_047f00316304be05099327409ab72956");
        assert_ne!(safety_identifier("acme"), safety_identifier("acme2"));
        assert!(is_gateway_identifier(&safety_identifier("x")));
        assert!(!is_gateway_identifier(
            "tg_F516BC242033BA5104C55B7A6549DFA1"
        ));
        assert!(!is_gateway_identifier("tg_f516bc242033ba5104c55b7a6549dfa"));
        assert!(!is_gateway_identifier("user-123"));
    }

    #[test]
    fn safety_identifier_goes_to_openai_and_azure_only_and_is_always_the_tenants() {
        let mut req = ChatCompletionRequest::from_json(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],
            "safety_identifier":"end-user-42"}"#,
        )
        .unwrap();
        let sent = |route: &Route, req: &ChatCompletionRequest| -> Value {
            let up = route.kind.adapter().build_request(route, req).unwrap();
            serde_json::from_slice(&up.body).unwrap()
        };
        let openai = preset_route("https://api.openai.com/v1");
        let mut azure = preset_route("https://res.openai.azure.com");
        azure.kind = ProviderKind::Azure;
        azure.config = serde_json::json!({"api_version": "2024-10-21"});
        let compat = preset_route("http://10.0.0.5:8000/v1");
        let deepseek = preset_route("https://api.deepseek.com/v1");

        // A client value that reached an adapter without the edge's `attribute_to_tenant` is not
        // forwarded unless it has the gateway's shape.
        for r in [&openai, &azure, &compat, &deepseek] {
            assert!(
                sent(r, &req).get(SAFETY_IDENTIFIER).is_none(),
                "{}",
                r.base_url
            );
        }
        // `attribute_to_tenant` replaces whatever the client sent, another tenant's value too.
        let mut other = req.clone();
        other.extra.insert(
            SAFETY_IDENTIFIER.into(),
            Value::from(safety_identifier("acme")),
        );
        attribute_to_tenant(&mut other, "ten_01JABC");
        attribute_to_tenant(&mut req, "ten_01JABC");
        assert_eq!(other, req);
        let ours = "tg_f516bc242033ba5104c55b7a6549dfa1";
        assert_eq!(sent(&openai, &req)[SAFETY_IDENTIFIER], ours);
        assert_eq!(sent(&azure, &req)[SAFETY_IDENTIFIER], ours);
        // Other compatible servers may reject unknown fields: none by default.
        assert!(sent(&compat, &req).get(SAFETY_IDENTIFIER).is_none());
        assert!(sent(&deepseek, &req).get(SAFETY_IDENTIFIER).is_none());

        // The provider config decides when it says so.
        let mut off = openai.clone();
        off.config = serde_json::json!({"safety_identifier": false});
        assert!(sent(&off, &req).get(SAFETY_IDENTIFIER).is_none());
        let mut on = compat.clone();
        on.config = serde_json::json!({"safety_identifier": true});
        assert_eq!(sent(&on, &req)[SAFETY_IDENTIFIER], ours);
        // Listing it in `allowed_params` does not let a client's value through.
        let mut allowed = compat.clone();
        allowed.config = serde_json::json!({"allowed_params": ["safety_identifier"]});
        assert!(sent(&allowed, &req).get(SAFETY_IDENTIFIER).is_none());
    }

    #[test]
    fn only_standard_and_allowed_fields_are_forwarded() {
        let req = ChatCompletionRequest::from_json(
            br#"{"model":"m","messages":[{"role":"user","content":"hi","name":"u1"}],
            "temperature":0.3,"top_p":0.9,"stop":["x"],"presence_penalty":0.1,"frequency_penalty":0.2,
            "logit_bias":{"1":2},"logprobs":true,"top_logprobs":2,"seed":7,"tool_choice":"auto",
            "parallel_tool_calls":false,"response_format":{"type":"json_object"},"user":"end-user",
            "reasoning_effort":"low","n":2,
            "top_k":40,"repetition_penalty":1.1,"enable_search":true,"x_anything":{"a":1}}"#,
        )
        .unwrap();
        let body = |config: Value| -> Value {
            let mut r = route();
            r.config = config;
            serde_json::from_slice(&OpenAiAdapter.build_request(&r, &req).unwrap().body).unwrap()
        };
        let sent = body(Value::Null);
        for kept in [
            "temperature",
            "top_p",
            "stop",
            "presence_penalty",
            "frequency_penalty",
            "logit_bias",
            "logprobs",
            "top_logprobs",
            "seed",
            "tool_choice",
            "parallel_tool_calls",
            "response_format",
            "user",
            "reasoning_effort",
            "n",
            "messages",
            "model",
        ] {
            assert!(sent.get(kept).is_some(), "{kept} must be forwarded");
        }
        assert_eq!(sent["messages"][0]["name"], "u1");
        for dropped in ["top_k", "repetition_penalty", "enable_search", "x_anything"] {
            assert!(sent.get(dropped).is_none(), "{dropped} must be dropped");
        }
        let sent = body(serde_json::json!({"allowed_params": ["top_k", "enable_search"]}));
        assert_eq!(sent["top_k"], 40);
        assert_eq!(sent["enable_search"], true);
        assert!(sent.get("x_anything").is_none());
    }

    #[test]
    fn with_model_replaces_only_the_top_level_value() {
        let cases: [(&str, &str); 5] = [
            (
                r#"{"id":"c","model":"gpt-4o-2024-08-06","choices":[]}"#,
                r#"{"id":"c","model":"gpt-4o","choices":[]}"#,
            ),
            (
                r#"{"choices":[{"message":{"model":"inner","content":""model":"x""}}], "model" : "up" ,"z":1}"#,
                r#"{"choices":[{"message":{"model":"inner","content":""model":"x""}}], "model" : "gpt-4o" ,"z":1}"#,
            ),
            (
                "data: {\"content\":\"a\\\\\",\"model\":\"up\"}\r\n\r\n",
                "data: {\"content\":\"a\\\\\",\"model\":\"gpt-4o\"}\r\n\r\n",
            ),
            (
                r#"{"usage":{"model":"n"},"model":"up"}"#,
                r#"{"usage":{"model":"n"},"model":"gpt-4o"}"#,
            ),
            (
                r#"{"model":"up","x":"ünï"}"#,
                r#"{"model":"gpt-4o","x":"ünï"}"#,
            ),
        ];
        for (input, expected) in cases {
            let out = with_model(input.as_bytes(), "gpt-4o").unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
        for none in [
            r#"{"id":"c"}"#,
            r#"{"x":{"model":"n"}}"#,
            r#"{"model":5}"#,
            "not json",
            r#"{"a":"b"#,
        ] {
            assert_eq!(with_model(none.as_bytes(), "m"), None, "{none}");
        }
        assert_eq!(
            with_model(br#"{"model":"up"}"#, "we\"ird").unwrap(),
            br#"{"model":"we\"ird"}"#.to_vec()
        );
        let body = br#"{"model":"gpt-4o","id":"c"}"#.to_vec();
        assert_eq!(public_body(body.clone(), "gpt-4o"), body);
        assert_eq!(
            public_body(
                br#"{"model":"gpt-4o-2024-08-06","id":"c"}"#.to_vec(),
                "gpt-4o"
            ),
            body
        );
    }

    #[test]
    fn with_model_never_panics_on_cut_or_mangled_input() {
        let sample = br#"data: {"id":"c","model":"up","choices":[{"delta":{"content":"a\"b\\"}}],"x":[1,{"model":"n"}]}"#;
        for cut in 0..=sample.len() {
            let _ = with_model(&sample[..cut], "public");
        }
        for i in 0..sample.len() {
            for b in [b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', 0xff] {
                let mut mangled = sample.to_vec();
                mangled[i] = b;
                if let Some(out) = with_model(&mangled, "public") {
                    assert!(out.windows(8).any(|w| w == br#""public""#));
                }
                let _ = public_body(mangled, "public");
            }
        }
    }

    #[test]
    fn chunks_and_responses_name_the_public_model() {
        let ctx = ResponseContext {
            id: "chatcmpl-x".into(),
            created: 1,
            model: "gpt-4o".into(),
        };
        let transcript = concat!(
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[]}\n\n",
        );
        let mut d = OpenAiAdapter.stream_decoder(&ctx);
        let items = d.push(transcript.as_bytes());
        assert_eq!(items.len(), 2);
        for item in &items {
            let StreamItem::Chunk { chunk, raw } = item else {
                panic!("chunk expected")
            };
            assert_eq!(chunk.model, "gpt-4o");
            let raw = String::from_utf8(raw.clone().expect("bytes kept")).unwrap();
            assert!(raw.contains(r#""model":"gpt-4o","#), "{raw}");
            assert!(!raw.contains("2024-08-06"));
            assert!(raw.contains("fp_1") || !raw.contains("system_fingerprint"));
        }
        let body = br#"{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#;
        assert_eq!(
            OpenAiAdapter.parse_response(body, &ctx).unwrap().model,
            "gpt-4o"
        );
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
        assert!(e.retryable() && !e.message.contains("'x'"), "{}", e.message);
    }
}
