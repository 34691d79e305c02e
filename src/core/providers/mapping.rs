//! Pieces shared by the adapters: building OpenAI chunks and responses, reading OpenAI content
//! parts, the request-field policy (billable options refused unless allowed, operator-allowed
//! fields copied), and turning upstream HTTP failures into [`GatewayError`]s whose text is fit for
//! a tenant ([`error_for_status`], [`sanitize`]).

use serde_json::{Map, Value};

use super::{ResponseContext, Route};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::openai::{chunk::FunctionCallDelta, CompletionTokensDetails, PromptTokensDetails};
use crate::core::openai::{
    ChatCompletionChunk, ChatCompletionResponse, ChatMessage, Choice, ChunkChoice, ContentPart,
    Delta, FunctionCall, MessageContent, ResponseMessage, ToolCall, ToolCallDelta, Usage,
};

/// OpenAI `finish_reason` values.
pub const STOP: &str = "stop";
/// The output cap was reached.
pub const LENGTH: &str = "length";
/// The model called tools.
pub const TOOL_CALLS: &str = "tool_calls";
/// The provider's safety system stopped or refused the output.
pub const CONTENT_FILTER: &str = "content_filter";

/// A usage object with the detail fields set only when the provider reported them.
pub fn usage(prompt: u64, cached: Option<u64>, completion: u64, reasoning: Option<u64>) -> Usage {
    let mut u = Usage::new(prompt, completion);
    u.prompt_tokens_details = cached.map(|cached_tokens| PromptTokensDetails { cached_tokens });
    u.completion_tokens_details =
        reasoning.map(|reasoning_tokens| CompletionTokensDetails { reasoning_tokens });
    u
}

/// One generated tool call, in the provider-neutral form the native adapters collect.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedCall {
    pub id: String,
    pub name: String,
    /// JSON text of the arguments.
    pub arguments: String,
}

/// Builds a one-choice plain response; it names the public model (`ctx.model`).
pub fn response(
    ctx: &ResponseContext,
    id: Option<String>,
    text: Option<String>,
    calls: Vec<GeneratedCall>,
    finish_reason: &str,
    usage: Option<Usage>,
) -> ChatCompletionResponse {
    let tool_calls = (!calls.is_empty()).then(|| {
        calls
            .into_iter()
            .map(|c| ToolCall {
                id: c.id,
                kind: "function".to_string(),
                function: FunctionCall {
                    name: c.name,
                    arguments: c.arguments,
                },
            })
            .collect()
    });
    ChatCompletionResponse {
        id: id.unwrap_or_else(|| ctx.id.clone()),
        object: "chat.completion".to_string(),
        created: ctx.created,
        model: ctx.model.clone(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".to_string(),
                content: text,
                tool_calls,
                refusal: None,
                extra: Map::new(),
            },
            finish_reason: Some(finish_reason.to_string()),
            extra: [("logprobs".to_string(), Value::Null)]
                .into_iter()
                .collect(),
        }],
        usage,
        extra: Map::new(),
    }
}

/// Makes OpenAI chunks for one stream, with a fixed id, creation time and model.
#[derive(Debug, Clone)]
pub struct ChunkFactory {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl ChunkFactory {
    pub fn new(ctx: &ResponseContext) -> Self {
        ChunkFactory {
            id: ctx.id.clone(),
            created: ctx.created,
            model: ctx.model.clone(),
        }
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<&str>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".to_string(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish_reason.map(str::to_string),
                extra: Map::new(),
            }],
            usage: None,
            extra: Map::new(),
        }
    }

    /// The first chunk: `{"role":"assistant","content":""}`.
    pub fn role(&self) -> ChatCompletionChunk {
        self.chunk(
            Delta {
                role: Some("assistant".to_string()),
                content: Some(String::new()),
                ..Delta::default()
            },
            None,
        )
    }

    /// A piece of text.
    pub fn text(&self, text: &str) -> ChatCompletionChunk {
        self.chunk(
            Delta {
                content: Some(text.to_string()),
                ..Delta::default()
            },
            None,
        )
    }

    /// A piece of reasoning ("thinking") text, as `reasoning_content` (DeepSeek's field, which
    /// OpenAI SDKs ignore and many clients display).
    pub fn reasoning(&self, text: &str) -> ChatCompletionChunk {
        let mut delta = Delta::default();
        delta
            .extra
            .insert("reasoning_content".to_string(), Value::String(text.into()));
        self.chunk(delta, None)
    }

    /// The start of tool call `index`, with its id, name and optionally its first arguments.
    pub fn tool_call_start(
        &self,
        index: u32,
        id: &str,
        name: &str,
        arguments: &str,
    ) -> ChatCompletionChunk {
        self.tool_delta(ToolCallDelta {
            index,
            id: Some(id.to_string()),
            kind: Some("function".to_string()),
            function: Some(FunctionCallDelta {
                name: Some(name.to_string()),
                arguments: Some(arguments.to_string()),
            }),
        })
    }

    /// More argument text of tool call `index`.
    pub fn tool_arguments(&self, index: u32, arguments: &str) -> ChatCompletionChunk {
        self.tool_delta(ToolCallDelta {
            index,
            id: None,
            kind: None,
            function: Some(FunctionCallDelta {
                name: None,
                arguments: Some(arguments.to_string()),
            }),
        })
    }

    fn tool_delta(&self, call: ToolCallDelta) -> ChatCompletionChunk {
        self.chunk(
            Delta {
                tool_calls: Some(vec![call]),
                ..Delta::default()
            },
            None,
        )
    }

    /// The chunk that carries the finish reason (empty delta).
    pub fn finish(&self, finish_reason: &str) -> ChatCompletionChunk {
        self.chunk(Delta::default(), Some(finish_reason))
    }

    /// The usage-only chunk that ends a stream (empty `choices`).
    pub fn usage(&self, usage: Usage) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".to_string(),
            created: self.created,
            model: self.model.clone(),
            choices: Vec::new(),
            usage: Some(usage),
            extra: Map::new(),
        }
    }
}

/// An image in a content part, as native APIs need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image<'a> {
    /// A `data:<mime>;base64,<data>` URL.
    Inline { mime: &'a str, data: &'a str },
    /// Any other URL.
    Url(&'a str),
}

/// The image of an `image_url` content part.
pub fn image_of(part: &ContentPart) -> Option<Image<'_>> {
    if part.kind != "image_url" {
        return None;
    }
    let url = match part.extra.get("image_url")? {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o.get("url")?.as_str()?,
        _ => return None,
    };
    Some(match parse_data_url(url) {
        Some((mime, data)) => Image::Inline { mime, data },
        None => Image::Url(url),
    })
}

/// Splits a base64 data URL into media type and data.
pub fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    let mime = if mime.is_empty() {
        "application/octet-stream"
    } else {
        mime
    };
    Some((mime, data))
}

/// The content parts of a message (a string content is one text part).
pub fn parts(message: &ChatMessage) -> Vec<ContentPart> {
    match &message.content {
        None => Vec::new(),
        Some(MessageContent::Text(t)) => vec![ContentPart {
            kind: "text".to_string(),
            text: Some(t.clone()),
            extra: Map::new(),
        }],
        Some(MessageContent::Parts(p)) => p.clone(),
    }
}

/// The function name of every tool call in the conversation, by call id: native APIs that
/// answer tool results by function name (Gemini, Ollama) need it for `tool` messages.
pub fn tool_names_by_id(messages: &[ChatMessage]) -> std::collections::HashMap<String, String> {
    messages
        .iter()
        .flat_map(|m| m.tool_calls.iter().flatten())
        .map(|c| (c.id.clone(), c.function.name.clone()))
        .collect()
}

/// The function name a `tool` message answers (by its `tool_call_id`, else its `name`).
pub fn tool_result_name(
    message: &ChatMessage,
    names: &std::collections::HashMap<String, String>,
    param: &str,
) -> Result<String, GatewayError> {
    message
        .tool_call_id
        .as_ref()
        .and_then(|id| names.get(id).cloned())
        .or_else(|| message.name.clone())
        .ok_or_else(|| {
            GatewayError::invalid_param(
                param,
                "A tool message must answer a tool call of an earlier assistant message \
                 (`tool_call_id`).",
            )
        })
}

/// Copies the OpenAI parameters `pairs` names (`(openai, provider)`) that the request sets
/// (not null) into `into`, under the provider's names: sampling options for native APIs.
pub fn copy_params(
    req: &crate::core::openai::ChatCompletionRequest,
    pairs: &[(&str, &str)],
    into: &mut Map<String, Value>,
) {
    for &(from, to) in pairs {
        if let Some(v) = req.extra.get(from).filter(|v| !v.is_null()) {
            into.insert(to.into(), v.clone());
        }
    }
}

/// Request fields that change what the provider charges or where the tenant's data goes, which
/// the gateway does not price: priority or scale tiers (`service_tier`), audio output
/// (`modalities`, `audio`), web search fees (`web_search_options`), predicted outputs
/// (`prediction`, billed per rejected token), stored completions (`store`, `metadata`: tenant data
/// kept in the operator's account), Azure "On Your Data" (`data_sources`: the resource queries
/// search indexes with its own identity), and OpenRouter's routing (`models`, `route`, `provider`,
/// `transforms`: another, possibly dearer, model may answer). Every adapter refuses them with a
/// 400 unless the operator allows them on the route (`allowed_params`, [`Route::allows_param`]).
pub const BILLABLE_PARAMS: &[&str] = &[
    "service_tier",
    "modalities",
    "audio",
    "web_search_options",
    "prediction",
    "store",
    "metadata",
    "data_sources",
    "models",
    "route",
    "provider",
    "transforms",
];

/// Whether a billable field's value asks for nothing beyond the provider's default (then it is
/// accepted and not forwarded): null, `store: false`, `service_tier: "default"`, text-only
/// `modalities`, empty `metadata`.
fn is_default_value(name: &str, value: &Value) -> bool {
    match (name, value) {
        (_, Value::Null) => true,
        ("store", Value::Bool(false)) => true,
        ("service_tier", Value::String(s)) => s == "default",
        ("modalities", Value::Array(list)) => list.iter().all(|m| m == "text"),
        ("metadata", Value::Object(o)) => o.is_empty(),
        _ => false,
    }
}

/// Refuses a request that sets a [`BILLABLE_PARAMS`] field the route does not allow: a 400 with
/// `param` naming the field and code `unsupported_parameter`.
pub fn check_billable(
    route: &Route,
    req: &crate::core::openai::ChatCompletionRequest,
) -> Result<(), GatewayError> {
    for &name in BILLABLE_PARAMS {
        let Some(value) = req.extra.get(name) else {
            continue;
        };
        if is_default_value(name, value) || route.allows_param(name) {
            continue;
        }
        return Err(GatewayError::invalid_param(
            name,
            format!(
                "`{name}` is not available on this model: it changes what the provider charges or \
                 where the request's data is kept, and this gateway has not enabled it."
            ),
        )
        .with_code("unsupported_parameter"));
    }
    Ok(())
}

/// Copies the request fields the operator allows on the route (`allowed_params`) into a native
/// body, unchanged and under their own names, without overwriting what the adapter set.
pub fn copy_allowed(
    route: &Route,
    req: &crate::core::openai::ChatCompletionRequest,
    into: &mut Map<String, Value>,
) {
    for (name, value) in &req.extra {
        if route.allows_param(name) && !value.is_null() && !into.contains_key(name) {
            into.insert(name.clone(), value.clone());
        }
    }
}

/// The `stop` parameter as a list.
pub fn stop_sequences(req: &crate::core::openai::ChatCompletionRequest) -> Option<Vec<Value>> {
    match req.extra.get("stop")? {
        Value::String(s) => Some(vec![Value::String(s.clone())]),
        Value::Array(a) if !a.is_empty() => Some(a.clone()),
        _ => None,
    }
}

/// A 400 for a request feature the provider cannot serve.
pub fn unsupported(param: &str, provider: &str, what: &str) -> GatewayError {
    GatewayError::invalid_param(param, format!("{provider} does not support {what}."))
}

/// Parses tool-call arguments (JSON text) into the object native APIs want.
pub fn arguments_value(arguments: &str, param: &str) -> Result<Value, GatewayError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(arguments).map_err(|e| {
        GatewayError::invalid_param(
            param,
            format!("Tool call arguments must be JSON for this provider: {e}"),
        )
    })
}

/// The text of an error body that is not JSON, trimmed and cut to 500 characters.
pub fn body_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.trim().chars().take(500).collect();
    if text.is_empty() {
        "no error details".to_string()
    } else {
        text
    }
}

/// Maps an upstream HTTP failure to a gateway error.
///
/// What reaches the tenant is decided here, once for every adapter (review I1): only the
/// provider's rejection of the request itself (a 4xx other than 401/402/403/404/408/429) keeps its
/// status and message, [`sanitize`]d, with its `code` and `param` when they are plain
/// identifiers, and is never retried elsewhere. Every other failure is the gateway's problem and
/// gets a generic message that names only the provider's HTTP status: credentials (401/403),
/// the operator's provider billing (402), routing (404, whose text names upstream models or
/// deployments), timeouts (408 → 504), rate limits (429, whose text names the operator's
/// organisation and limits) and server errors (5xx); all of these may be retried on another
/// route. `detail` is the provider's own text, for the rejections only.
pub fn error_for_status(
    status: u16,
    detail: &str,
    code: Option<String>,
    param: Option<String>,
) -> GatewayError {
    let (kind, message) = match status {
        401 | 403 => (
            ErrorKind::UpstreamFailed,
            format!("The provider refused the gateway's credentials (HTTP {status})."),
        ),
        402 => (
            ErrorKind::UpstreamFailed,
            "The provider refused the gateway's account for billing reasons (HTTP 402)."
                .to_string(),
        ),
        404 => (
            ErrorKind::UpstreamFailed,
            "The provider does not know this model or route (HTTP 404).".to_string(),
        ),
        408 => (
            ErrorKind::UpstreamTimeout,
            "The provider timed out (HTTP 408).".to_string(),
        ),
        429 => (
            ErrorKind::UpstreamRateLimited,
            "The provider is rate limiting requests (HTTP 429); try again shortly.".to_string(),
        ),
        400..=499 => (ErrorKind::UpstreamRejected(status), sanitize(detail)),
        _ => (
            ErrorKind::UpstreamFailed,
            format!("The provider failed (HTTP {status})."),
        ),
    };
    let mut err = GatewayError::new(kind, message);
    if let ErrorKind::UpstreamRejected(_) = kind {
        err.code = code.filter(|c| is_identifier(c));
        err.param = param.filter(|p| is_identifier(p));
    }
    err
}

/// A provider failure that the adapter recognised (overload, a failed generation) but whose
/// text stays with the gateway: `what` is the gateway's own words.
pub fn provider_failure(kind: ErrorKind, what: &str) -> GatewayError {
    GatewayError::new(kind, format!("The provider {what}."))
}

/// Longest provider message passed on to a tenant, in characters.
const MAX_DETAIL_CHARS: usize = 500;

/// Whether `s` is a short field name or error code (`context_length_exceeded`,
/// `messages[0].content`), safe to pass on as `code` or `param`.
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']'))
}

/// Prefixes of provider credentials and account identifiers: OpenAI keys (`sk-`, `sk-proj-`),
/// organisations and projects (`org-`, `proj_`), Anthropic (`sk-ant-`), Hugging Face (`hf_`),
/// Google (`AIza`), Groq (`gsk_`), xAI (`xai-`).
const SECRET_PREFIXES: &[&str] = &[
    "sk-", "sk_", "org-", "proj_", "proj-", "hf_", "aiza", "gsk_", "xai-",
];

/// A provider message made fit for a tenant: every word holding a URL becomes `[url]`; every
/// word holding something that starts like a key or account id (at the start of the word or
/// after a non-alphanumeric character), and the word after `Bearer`, become `[redacted]`; the
/// text is cut to 500 characters.
pub fn sanitize(text: &str) -> String {
    /// Appends `word` or its replacement; returns whether the next word is a bearer token.
    fn redact(word: &str, after_bearer: bool, out: &mut String) -> bool {
        let lower = word.to_ascii_lowercase();
        let bytes = lower.as_bytes();
        let secret = (0..bytes.len()).any(|i| {
            (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
                && SECRET_PREFIXES
                    .iter()
                    .any(|p| bytes[i..].starts_with(p.as_bytes()))
        });
        if lower.contains("://") || lower.contains("www.") {
            out.push_str("[url]");
        } else if secret || after_bearer {
            out.push_str("[redacted]");
        } else {
            out.push_str(word);
        }
        lower.trim_matches(|c: char| !c.is_ascii_alphanumeric()) == "bearer"
    }
    let text: String = text.trim().chars().take(MAX_DETAIL_CHARS).collect();
    let mut out = String::with_capacity(text.len());
    let mut word_start = None;
    let mut after_bearer = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if let Some(start) = word_start.take() {
                after_bearer = redact(&text[start..i], after_bearer, &mut out);
            }
            out.push(c);
        } else if word_start.is_none() {
            word_start = Some(i);
        }
    }
    if let Some(start) = word_start {
        redact(&text[start..], after_bearer, &mut out);
    }
    if out.is_empty() {
        "The provider rejected the request.".to_string()
    } else {
        out
    }
}

/// A stream event the adapter could not understand.
pub fn malformed(what: impl std::fmt::Display) -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamFailed,
        format!("The provider sent a malformed stream event: {what}"),
    )
}

/// The units a framing parser (SSE, NDJSON) completed; a framing error instead becomes one error
/// item, reported once per stream (`ended` records it).
pub fn framed<T, E: std::fmt::Display>(
    parsed: Result<Vec<T>, E>,
    ended: &mut bool,
    out: &mut Vec<super::StreamItem>,
) -> Vec<T> {
    match parsed {
        Ok(units) => units,
        Err(e) => {
            if !*ended {
                *ended = true;
                out.push(super::StreamItem::Error(malformed(e)));
            }
            Vec::new()
        }
    }
}

/// A plain response the adapter could not understand.
pub fn invalid_response(what: impl std::fmt::Display) -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamFailed,
        format!("The provider returned an invalid response: {what}"),
    )
}

/// The stream ended before the provider said it was complete.
pub fn truncated_stream() -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamFailed,
        "The provider closed the stream before it was complete.",
    )
}

#[cfg(test)]
pub(crate) mod testing {
    //! Fixture helpers shared by the adapters' tests.

    use super::super::{ResponseContext, StreamDecoder, StreamItem};
    use crate::core::openai::{ChatCompletionRequest, Usage};

    /// A fixture file without its first line, which names the documentation it follows.
    pub fn fixture(bytes: &'static [u8]) -> &'static [u8] {
        assert!(
            bytes.starts_with(b"#! docs: "),
            "fixtures start with a `#! docs: <url>` line"
        );
        let end = bytes.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
        &bytes[end..]
    }

    pub fn request(json: &[u8]) -> ChatCompletionRequest {
        ChatCompletionRequest::from_json(json).expect("valid request fixture")
    }

    pub fn ctx() -> ResponseContext {
        ResponseContext {
            id: "chatcmpl-req_test".to_string(),
            created: 1_700_000_000,
            model: "public-model".to_string(),
        }
    }

    /// What a stream decoded to, summarised.
    #[derive(Debug, Default, Clone, PartialEq)]
    pub struct Decoded {
        pub text: String,
        pub reasoning: String,
        /// (id, name, arguments) per tool-call index.
        pub calls: Vec<(String, String, String)>,
        pub finish: Option<String>,
        pub usage: Option<Usage>,
        pub done: bool,
        pub errors: Vec<crate::core::error::GatewayError>,
        pub keep_alives: usize,
        pub chunks: usize,
    }

    /// Collects decoder items into a [`Decoded`].
    pub fn summarise(items: Vec<StreamItem>) -> Decoded {
        let mut d = Decoded::default();
        for item in items {
            match item {
                StreamItem::Chunk { chunk, .. } => {
                    d.chunks += 1;
                    assert!(!d.done, "chunk after the end");
                    let before = chunk.usage.clone();
                    // Round-trip through JSON as the client would see it.
                    let json = serde_json::to_string(&chunk).unwrap();
                    let chunk: crate::core::openai::ChatCompletionChunk =
                        serde_json::from_str(&json).unwrap();
                    if let Some(mut u) = chunk.usage.clone() {
                        // The cache writes never reach the client's JSON; the meter reads them
                        // from the chunk itself.
                        u.cache_writes = before.map(|b| b.cache_writes).unwrap_or_default();
                        d.usage = Some(u);
                    }
                    for c in &chunk.choices {
                        if let Some(t) = &c.delta.content {
                            d.text.push_str(t);
                        }
                        if let Some(r) = c.delta.extra.get("reasoning_content") {
                            d.reasoning.push_str(r.as_str().unwrap_or_default());
                        }
                        for call in c.delta.tool_calls.iter().flatten() {
                            let i = call.index as usize;
                            if d.calls.len() <= i {
                                d.calls.resize(i + 1, Default::default());
                            }
                            if let Some(id) = &call.id {
                                d.calls[i].0 = id.clone();
                            }
                            if let Some(f) = &call.function {
                                if let Some(n) = &f.name {
                                    d.calls[i].1.push_str(n);
                                }
                                if let Some(a) = &f.arguments {
                                    d.calls[i].2.push_str(a);
                                }
                            }
                        }
                        if let Some(f) = &c.finish_reason {
                            assert!(d.finish.is_none(), "one finish reason");
                            d.finish = Some(f.clone());
                        }
                    }
                }
                StreamItem::KeepAlive(_) => d.keep_alives += 1,
                StreamItem::Done => {
                    assert!(!d.done, "one end");
                    d.done = true;
                }
                StreamItem::Error(e) => d.errors.push(e),
            }
        }
        d
    }

    fn run(
        make: &dyn Fn() -> Box<dyn StreamDecoder>,
        transcript: &[u8],
        cuts: &[usize],
    ) -> Decoded {
        let mut dec = make();
        let mut items = Vec::new();
        let mut start = 0;
        for &cut in cuts {
            items.extend(dec.push(&transcript[start..cut]));
            start = cut;
        }
        items.extend(dec.push(&transcript[start..]));
        items.extend(dec.finish());
        summarise(items)
    }

    /// Decodes `transcript` whole, split at every byte (mid-line, mid-UTF-8), one byte at a
    /// time, and with its LF line ends turned into CRLF; every way must decode the same.
    pub fn decode_every_way(
        make: &dyn Fn() -> Box<dyn StreamDecoder>,
        transcript: &[u8],
    ) -> Decoded {
        let whole = run(make, transcript, &[]);
        for split in 1..transcript.len() {
            assert_eq!(run(make, transcript, &[split]), whole, "split at {split}");
        }
        let every: Vec<usize> = (1..transcript.len()).collect();
        assert_eq!(run(make, transcript, &every), whole, "byte by byte");
        let crlf: Vec<u8> = String::from_utf8_lossy(transcript)
            .replace('\n', "\r\n")
            .into_bytes();
        for split in 1..crlf.len() {
            assert_eq!(run(make, &crlf, &[split]), whole, "CRLF split at {split}");
        }
        whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_redacts_keys_ids_and_urls_and_never_panics() {
        assert_eq!(
            sanitize("  Invalid value for 'temperature': 3 is greater than 2.  "),
            "Invalid value for 'temperature': 3 is greater than 2."
        );
        assert_eq!(
            sanitize(
                "ключ=sk-proj-ab12 ünï «org-9x» AIzaSyXX http://10.0.0.1:8080/x www.corp.example"
            ),
            "[redacted] ünï [redacted] [redacted] [url] [url]"
        );
        assert_eq!(
            sanitize("task-based risk-free ask-me"),
            "task-based risk-free ask-me"
        );
        assert_eq!(
            sanitize("Authorization: Bearer abc.def"),
            "Authorization: Bearer [redacted]"
        );
        assert_eq!(sanitize(" \n "), "The provider rejected the request.");
        assert_eq!(sanitize(&"é".repeat(2000)).chars().count(), 500);
        let e = error_for_status(
            400,
            "bad sk-123",
            Some("x\"y".into()),
            Some("messages[0].content".into()),
        );
        assert_eq!(e.message, "bad [redacted]");
        assert_eq!(
            (e.code.as_deref(), e.param.as_deref()),
            (None, Some("messages[0].content"))
        );
    }

    #[test]
    fn copy_params_renames_what_the_request_sets() {
        let req = testing::request(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"top_p":null,"seed":7}"#,
        );
        let mut into = Map::new();
        copy_params(
            &req,
            &[
                ("temperature", "temp"),
                ("top_p", "topP"),
                ("seed", "seed"),
                ("stop", "s"),
            ],
            &mut into,
        );
        assert_eq!(
            Value::Object(into),
            serde_json::json!({"temp": 0.2, "seed": 7})
        );
    }
}
