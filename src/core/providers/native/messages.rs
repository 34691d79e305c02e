//! Anthropic's Messages API, passed through to `anthropic` providers.
//!
//! Follows the Messages API reference (<https://docs.anthropic.com/en/api/messages>), streaming
//! (<https://docs.anthropic.com/en/docs/build-with-claude/streaming>), extended thinking
//! (<https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking>), prompt caching
//! (<https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching>: `cache_creation` splits
//! the cache writes into `ephemeral_5m_input_tokens` and `ephemeral_1h_input_tokens`) and the
//! errors page (<https://docs.anthropic.com/en/api/errors>).
//!
//! **The request** ([`build_request`]) is [`MessagesRequest::to_native`]: the client's body with
//! `model` replaced by the route's upstream model and nothing else changed (thinking blocks and
//! their signatures, `cache_control`, beta fields), except
//! * `max_tokens`, the output cap: the client's (the API requires it), else the model's
//!   `max_output_tokens`, so the provider is never asked for more than the reservation covers;
//! * the options that change what Anthropic charges, refused with a 400 naming the field (code
//!   `unsupported_parameter`) unless the provider config's `allowed_params` lists them
//!   ([`BILLABLE`]): `service_tier` other than `standard_only` (priority tier), `container` and
//!   `mcp_servers`; and server tools (`tools` entries whose `type` is not `custom`:
//!   `web_search_…`, `web_fetch_…`, `code_execution_…`, billed per use), allowed by their
//!   `type` or its name before the date (`web_search`).
//!
//! Headers: `x-api-key` (the provider's key), `anthropic-version` (the client's, else the
//! provider config's `anthropic_version`, else 2023-06-01), `anthropic-beta` (the client's betas
//! and the config's `anthropic_beta`, joined with commas; betas change features, and what they
//! make the provider bill — 1-hour cache writes, long context — is billed from usage).
//!
//! **The answer**, observed, never rewritten: usage from `message_start` (`input_tokens`, which
//! excludes cache reads and writes, `cache_read_input_tokens`, `cache_creation_input_tokens` and
//! its `cache_creation` split; writes without a split are 5-minute writes, Anthropic's default
//! lifetime) updated by each `message_delta`'s cumulative `usage`; `message_stop` is the normal
//! end and `error` a failure (its `type` gives the status, as the errors page documents); output
//! for local counts from `text_delta`, `thinking_delta` and `input_json_delta`, tool names and
//! any text a `content_block_start` carries. Plain answers are message objects.

use serde_json::{json, Value};

use super::{count, Ending, NativeRequest, NativeUsage, Observed};
use crate::core::error::GatewayError;
use crate::core::inbound::anthropic::{error_type, MessagesRequest};
use crate::core::providers::anthropic::{map_anthropic_error, API_VERSION};
use crate::core::providers::{join_url, Route, UpstreamRequest};

/// Top-level options refused unless the operator allows them (see the module docs).
pub const BILLABLE: &[&str] = &["service_tier", "container", "mcp_servers"];

/// The client's Anthropic headers the gateway forwards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHeaders {
    pub anthropic_version: Option<String>,
    pub anthropic_beta: Option<String>,
}

fn refused(name: &str, what: &str) -> GatewayError {
    GatewayError::invalid_param(
        name,
        format!("{what} is not available on this model: it changes what the provider charges, and this gateway has not enabled it."),
    )
    .with_code("unsupported_parameter")
}

/// The Anthropic type of a server tool without its version date (`web_search_20250305` →
/// `web_search`).
fn undated(kind: &str) -> &str {
    match kind.rsplit_once('_') {
        Some((name, date)) if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => kind,
    }
}

/// The upstream request for a decoded `POST /v1/messages` (see the module docs).
pub fn build_request(
    route: &Route,
    req: &MessagesRequest,
    client: &ClientHeaders,
) -> Result<NativeRequest, GatewayError> {
    for &name in BILLABLE {
        let Some(v) = req.extra.get(name) else {
            continue;
        };
        let default = v.is_null() || (name == "service_tier" && v == "standard_only");
        if !default && !route.allows_param(name) {
            return Err(refused(name, &format!("`{name}`")));
        }
    }
    for tool in req.tools.iter().flatten() {
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or("custom");
        if kind != "custom" && !route.allows_param(kind) && !route.allows_param(undated(kind)) {
            return Err(refused("tools", &format!("The server tool `{kind}`")));
        }
    }
    let mut body = req.to_native(&route.upstream_model);
    let cap = req.max_tokens.or(route.max_output_tokens);
    if let (Some(cap), Value::Object(map)) = (cap, &mut body) {
        map.insert("max_tokens".into(), cap.into());
    }
    let stream = req.is_stream();
    let version = client
        .anthropic_version
        .as_deref()
        .or(route.config_str("anthropic_version"))
        .unwrap_or(API_VERSION);
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("anthropic-version".to_string(), version.to_string()),
    ];
    let betas: Vec<&str> = [
        client.anthropic_beta.as_deref(),
        route.config_str("anthropic_beta"),
    ]
    .into_iter()
    .flatten()
    .flat_map(|b| b.split(','))
    .map(str::trim)
    .filter(|b| !b.is_empty())
    .collect();
    let mut unique: Vec<&str> = Vec::new();
    for b in betas {
        if !unique.contains(&b) {
            unique.push(b);
        }
    }
    if !unique.is_empty() {
        headers.push(("anthropic-beta".to_string(), unique.join(",")));
    }
    if stream {
        headers.push(("accept".to_string(), "text/event-stream".to_string()));
    }
    if let Some(key) = &route.api_key {
        headers.push(("x-api-key".to_string(), key.clone()));
    }
    let body = serde_json::to_vec(&body)
        .map_err(|e| GatewayError::internal(format!("cannot encode upstream request: {e}")))?;
    Ok(NativeRequest {
        upstream: UpstreamRequest {
            url: join_url(&route.base_url, "messages"),
            headers,
            body,
        },
        stream,
        output_cap: cap,
    })
}

/// The members of a Messages request that `POST /v1/messages/count_tokens` accepts
/// (<https://docs.anthropic.com/en/api/messages-count-tokens>); it refuses the others
/// (`max_tokens`, `stream`, sampling options).
const COUNTED: &[&str] = &[
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "mcp_servers",
];

/// The provider's own `count_tokens` for a decoded count request: the body of
/// [`build_request`] (model replaced, the same refusals, the same headers) keeping only what the
/// counting endpoint accepts, sent to `{base}/messages/count_tokens`.
pub fn count_tokens_request(
    route: &Route,
    req: &MessagesRequest,
    client: &ClientHeaders,
) -> Result<UpstreamRequest, GatewayError> {
    let native = build_request(route, req, client)?;
    let mut body: Value = serde_json::from_slice(&native.upstream.body)
        .map_err(|e| GatewayError::internal(format!("cannot re-read upstream request: {e}")))?;
    if let Value::Object(map) = &mut body {
        map.retain(|name, _| COUNTED.contains(&name.as_str()));
    }
    let body = serde_json::to_vec(&body)
        .map_err(|e| GatewayError::internal(format!("cannot encode upstream request: {e}")))?;
    let headers = native
        .upstream
        .headers
        .into_iter()
        .filter(|(name, _)| name != "accept")
        .collect();
    Ok(UpstreamRequest {
        url: join_url(&route.base_url, "messages/count_tokens"),
        headers,
        body,
    })
}

/// The `input_tokens` of a `count_tokens` answer (`{"input_tokens": n}`), if it is one.
pub fn counted_tokens(body: &[u8]) -> Option<u64> {
    let v: Value = serde_json::from_slice(body).ok()?;
    count(&v, "input_tokens")
}

/// Maps a non-2xx answer (Anthropic's error body).
pub fn map_error(status: u16, body: &[u8]) -> GatewayError {
    map_anthropic_error(status, body)
}

/// The HTTP status the errors page gives an error type (for `error` events inside a stream).
fn status_of(kind: Option<&str>) -> u16 {
    match kind {
        Some("invalid_request_error") => 400,
        Some("authentication_error") => 401,
        Some("billing_error") => 402,
        Some("permission_error") => 403,
        Some("not_found_error") => 404,
        Some("request_too_large") => 413,
        Some("rate_limit_error") => 429,
        Some("timeout_error") => 504,
        Some("overloaded_error") => 529,
        _ => 500,
    }
}

/// Anthropic's stream `error` event.
pub fn error_event(err: &GatewayError) -> Vec<u8> {
    let data = json!({"type": "error", "error": {"type": error_type(err), "message": err.message}});
    format!("event: error\ndata: {data}\n\n").into_bytes()
}

/// Applies the counts present in a `usage` object (message_start's, or a message_delta's
/// cumulative one) to `u`. `input_tokens` here excludes the cache, and `u.prompt_tokens`
/// includes it, so the parts are kept apart in `parts` and summed.
fn apply_usage(v: &Value, parts: &mut UsageParts) {
    if let Some(n) = count(v, "input_tokens") {
        parts.input = n;
    }
    if let Some(n) = count(v, "cache_read_input_tokens") {
        parts.cache_read = n;
    }
    if let Some(n) = count(v, "cache_creation_input_tokens") {
        parts.cache_creation = n;
    }
    if let Some(split) = v.get("cache_creation").filter(|s| s.is_object()) {
        parts.write_5m = count(split, "ephemeral_5m_input_tokens");
        parts.write_1h = count(split, "ephemeral_1h_input_tokens");
    }
    if let Some(n) = count(v, "output_tokens") {
        parts.output = n;
    }
}

/// Anthropic's usage counts as reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct UsageParts {
    input: u64,
    cache_read: u64,
    cache_creation: u64,
    write_5m: Option<u64>,
    write_1h: Option<u64>,
    output: u64,
}

impl UsageParts {
    fn native(&self) -> NativeUsage {
        // The 1-hour part as reported (at most the total); the rest of the writes are 5-minute
        // ones, Anthropic's default lifetime, also when the split is missing or disagrees.
        let creation = self.cache_creation.max(
            self.write_5m
                .unwrap_or(0)
                .saturating_add(self.write_1h.unwrap_or(0)),
        );
        let write_1h = self.write_1h.unwrap_or(0).min(creation);
        NativeUsage {
            prompt_tokens: self
                .input
                .saturating_add(self.cache_read)
                .saturating_add(creation),
            cached_tokens: self.cache_read,
            cache_write_5m: creation - write_1h,
            cache_write_1h: write_1h,
            completion_tokens: self.output,
            reasoning_tokens: 0,
        }
    }
}

/// Stream state beyond [`Observed`].
#[derive(Debug, Default)]
pub(super) struct StreamState {
    usage: Option<UsageParts>,
    /// The index of the content block open now (started, not stopped).
    open_block: Option<u64>,
}

impl StreamState {
    pub(super) fn event(&mut self, v: &Value, observed: &mut Observed) {
        let Some(kind) = v.get("type").and_then(Value::as_str) else {
            return;
        };
        observed.answered = true;
        match kind {
            "message_start" => {
                if let Some(u) = v.get("message").and_then(|m| m.get("usage")) {
                    let parts = self.usage.get_or_insert_with(UsageParts::default);
                    apply_usage(u, parts);
                }
            }
            "content_block_start" => {
                self.open_block = count(v, "index");
                let block = v.get("content_block").unwrap_or(&Value::Null);
                for key in ["name", "text", "thinking"] {
                    if let Some(s) = block.get(key).and_then(Value::as_str) {
                        observed.push_output(s);
                    }
                }
            }
            "content_block_delta" => {
                let d = v.get("delta").unwrap_or(&Value::Null);
                let text = match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => d.get("text"),
                    Some("thinking_delta") => d.get("thinking"),
                    Some("input_json_delta") => d.get("partial_json"),
                    _ => None, // signature_delta, citations_delta: not generated tokens
                };
                if let Some(s) = text.and_then(Value::as_str) {
                    observed.push_output(s);
                }
            }
            "content_block_stop" => self.open_block = None,
            "message_delta" => {
                if let Some(u) = v.get("usage") {
                    let parts = self.usage.get_or_insert_with(UsageParts::default);
                    apply_usage(u, parts);
                }
            }
            "message_stop" => observed.end(Ending::Completed),
            "error" => {
                let e = v.get("error");
                let status = status_of(e.and_then(|e| e.get("type")).and_then(Value::as_str));
                observed.end(Ending::Failed(map_anthropic_error(
                    status,
                    v.to_string().as_bytes(),
                )));
            }
            _ => {}
        }
        observed.usage = self.usage.map(|p| p.native());
    }

    /// `content_block_stop` for an open block, `message_delta` (`max_tokens`, the local usage)
    /// and `message_stop`.
    pub(super) fn cut(&mut self, usage: &NativeUsage) -> Vec<u8> {
        let mut out = Vec::new();
        let mut event = |name: &str, data: Value| {
            out.extend_from_slice(format!("event: {name}\ndata: {data}\n\n").as_bytes());
        };
        if let Some(index) = self.open_block.take() {
            event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            );
        }
        let input = usage
            .prompt_tokens
            .saturating_sub(usage.cached_tokens)
            .saturating_sub(usage.cache_write_5m)
            .saturating_sub(usage.cache_write_1h);
        event(
            "message_delta",
            json!({"type": "message_delta",
                "delta": {"stop_reason": "max_tokens", "stop_sequence": null},
                "usage": {"input_tokens": input,
                    "cache_creation_input_tokens": usage.cache_write_5m + usage.cache_write_1h,
                    "cache_read_input_tokens": usage.cached_tokens,
                    "output_tokens": usage.completion_tokens}}),
        );
        event("message_stop", json!({"type": "message_stop"}));
        out
    }
}

/// Observes a plain message object.
pub(super) fn observe_plain(v: &Value, observed: &mut Observed) -> Result<(), &'static str> {
    if v.get("type").and_then(Value::as_str) != Some("message") {
        return Err("it is not a message object");
    }
    for block in v
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let s = |k: &str| {
            block
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        match block.get("type").and_then(Value::as_str) {
            Some("text") => observed.push_output(&s("text")),
            Some("thinking") => observed.push_output(&s("thinking")),
            Some("tool_use") => {
                observed.push_output(&s("name"));
                let input = block.get("input").map(Value::to_string).unwrap_or_default();
                observed.push_output(&input);
            }
            _ => {}
        }
    }
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        let mut parts = UsageParts::default();
        apply_usage(u, &mut parts);
        observed.usage = Some(parts.native());
    }
    observed.end(Ending::Completed);
    Ok(())
}

/// The client headers of an inbound request, from a header lookup (`anthropic-version`,
/// `anthropic-beta`).
pub fn client_headers(get: impl Fn(&str) -> Option<String>) -> ClientHeaders {
    ClientHeaders {
        anthropic_version: get("anthropic-version").filter(|v| !v.trim().is_empty()),
        anthropic_beta: get("anthropic-beta").filter(|v| !v.trim().is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::observe_every_way;
    use super::super::{observe_plain as plain, NativeApi, NativeStream};
    use super::*;
    use crate::core::error::ErrorKind;
    use crate::core::inbound::anthropic::{decode_count_tokens, decode_request};
    use crate::core::providers::mapping::testing::fixture;
    use crate::core::providers::ProviderKind;
    use crate::core::sse::SseParser;

    fn route(config: Value) -> Route {
        Route {
            provider: "claude".into(),
            kind: ProviderKind::Anthropic,
            base_url: "https://api.anthropic.com/v1".into(),
            api_key: Some("sk-ant".into()),
            upstream_model: "claude-up".into(),
            max_output_tokens: Some(8192),
            config,
        }
    }

    fn header<'a>(req: &'a NativeRequest, name: &str) -> Option<&'a str> {
        req.upstream
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn request_keeps_signatures_and_cache_control_and_sets_headers() {
        let body = br#"{"model":"claude-public","max_tokens":1024,"stream":true,
          "system":[{"type":"text","text":"be brief","cache_control":{"type":"ephemeral","ttl":"1h"}}],
          "thinking":{"type":"enabled","budget_tokens":512},
          "messages":[{"role":"user","content":"27*453?"},
            {"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"EqQBsig=="},
              {"type":"tool_use","id":"toolu_1","name":"calc","input":{"a":1}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"12231"}]}],
          "tools":[{"name":"calc","input_schema":{"type":"object"}}],"context_management":{"edits":[]}}"#;
        let req = decode_request(body).unwrap();
        let client = ClientHeaders {
            anthropic_version: Some("2023-06-01".into()),
            anthropic_beta: Some(
                "interleaved-thinking-2025-05-14, extended-cache-ttl-2025-04-11".into(),
            ),
        };
        let up = build_request(
            &route(json!({"anthropic_beta": "extended-cache-ttl-2025-04-11"})),
            &req,
            &client,
        )
        .unwrap();
        assert_eq!(up.upstream.url, "https://api.anthropic.com/v1/messages");
        assert!(up.stream);
        assert_eq!(up.output_cap, Some(1024));
        let sent: Value = serde_json::from_slice(&up.upstream.body).unwrap();
        let mut expected: Value = serde_json::from_slice(body).unwrap();
        expected["model"] = "claude-up".into();
        assert_eq!(sent, expected, "only the model changes");
        assert_eq!(header(&up, "x-api-key"), Some("sk-ant"));
        assert_eq!(header(&up, "anthropic-version"), Some("2023-06-01"));
        assert_eq!(
            header(&up, "anthropic-beta"),
            Some("interleaved-thinking-2025-05-14,extended-cache-ttl-2025-04-11")
        );
        assert_eq!(header(&up, "accept"), Some("text/event-stream"));
        // Without client headers: the config's version, else the default; no beta header.
        let plain_req = decode_request(
            br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        let up = build_request(&route(Value::Null), &plain_req, &ClientHeaders::default()).unwrap();
        assert_eq!(header(&up, "anthropic-version"), Some(API_VERSION));
        assert_eq!(header(&up, "anthropic-beta"), None);
        assert!(!up.stream);
        let up = build_request(
            &route(json!({"anthropic_version": "2099-01-01"})),
            &plain_req,
            &ClientHeaders::default(),
        )
        .unwrap();
        assert_eq!(header(&up, "anthropic-version"), Some("2099-01-01"));
    }

    #[test]
    fn billable_options_and_server_tools_are_refused_unless_allowed() {
        let base = r#""model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]"#;
        for (field, extra, allow) in [
            ("service_tier", r#""service_tier":"auto""#, "service_tier"),
            ("container", r#""container":"cntr_1""#, "container"),
            (
                "mcp_servers",
                r#""mcp_servers":[{"type":"url","url":"https://x","name":"x"}]"#,
                "mcp_servers",
            ),
            (
                "tools",
                r#""tools":[{"type":"web_search_20250305","name":"web_search","max_uses":5}]"#,
                "web_search",
            ),
            (
                "tools",
                r#""tools":[{"type":"code_execution_20250522","name":"code_execution"}]"#,
                "code_execution_20250522",
            ),
        ] {
            let body = format!("{{{base},{extra}}}");
            let req = decode_request(body.as_bytes()).unwrap();
            let err =
                build_request(&route(Value::Null), &req, &ClientHeaders::default()).unwrap_err();
            assert_eq!(err.status(), 400, "{extra}");
            assert_eq!(err.param.as_deref(), Some(field));
            assert_eq!(err.code(), "unsupported_parameter");
            build_request(
                &route(json!({"allowed_params": [allow]})),
                &req,
                &ClientHeaders::default(),
            )
            .unwrap_or_else(|e| panic!("{extra} allowed: {e:?}"));
        }
        let req =
            decode_request(format!(r#"{{{base},"service_tier":"standard_only"}}"#).as_bytes())
                .unwrap();
        assert!(build_request(&route(Value::Null), &req, &ClientHeaders::default()).is_ok());
    }

    #[test]
    fn thinking_stream_usage_with_the_cache_write_split_every_split() {
        let bytes = fixture(include_bytes!(
            "../../../../tests/fixtures/native/messages_stream_thinking.sse"
        ));
        let o = observe_every_way(NativeApi::Messages, bytes);
        assert!(o.answered && o.completed());
        assert_eq!(
            o.usage,
            Some(NativeUsage {
                prompt_tokens: 25 + 1500 + 3000,
                cached_tokens: 1500,
                cache_write_5m: 1000,
                cache_write_1h: 2000,
                completion_tokens: 96,
                reasoning_tokens: 0,
            })
        );
        assert_eq!(
            o.output,
            "The user wants 27 * 453. That is 12231.27 × 453 = 12,231. record{\"value\": 12231}"
        );
    }

    #[test]
    fn the_adapters_tool_stream_fixture_is_observed_too() {
        let bytes = fixture(include_bytes!(
            "../../../../tests/fixtures/anthropic/stream_tools.sse"
        ));
        let o = observe_every_way(NativeApi::Messages, bytes);
        assert!(o.completed());
        let u = o.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.cached_tokens, u.cache_write_5m),
            (492, 20, 0)
        );
        assert!(o
            .output
            .starts_with("Okay, let's check the weather for San Francisco, CA:get_weather{"));
    }

    #[test]
    fn a_stream_that_breaks_off_after_message_start_is_charged() {
        let start = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"m\",\"usage\":{\"input_tokens\":30,\"output_tokens\":1}}}\n\n";
        let mut s = NativeStream::new(NativeApi::Messages);
        s.push(start);
        s.close(Some(GatewayError::new(
            ErrorKind::UpstreamTimeout,
            "silent",
        )));
        let o = s.observed();
        assert!(o.answered && !o.delivered_output());
        assert_eq!(o.error().map(|e| e.kind), Some(ErrorKind::UpstreamTimeout));
        assert!(o.error_is_charged(), "started, then silent: prompt charged");
        // The provider's own error event after message_start stays free.
        let mut s = NativeStream::new(NativeApi::Messages);
        s.push(start);
        s.push(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
        s.close(None);
        assert!(s.observed().error().is_some());
        assert!(!s.observed().error_is_charged());
    }

    #[test]
    fn an_error_event_is_a_failure_with_anthropics_status() {
        let bytes = fixture(include_bytes!(
            "../../../../tests/fixtures/native/messages_stream_overloaded.sse"
        ));
        let o = observe_every_way(NativeApi::Messages, bytes);
        assert!(!o.completed() && o.delivered_output());
        let err = o.error().unwrap();
        assert_eq!(err.kind, ErrorKind::UpstreamFailed);
        assert_eq!(o.usage.map(|u| u.prompt_tokens), Some(12));
    }

    #[test]
    fn splits_disagreeing_with_the_total_never_lose_a_write() {
        let mut p = UsageParts::default();
        apply_usage(
            &json!({"input_tokens": 1, "cache_creation_input_tokens": 100}),
            &mut p,
        );
        assert_eq!(
            (p.native().cache_write_5m, p.native().cache_write_1h),
            (100, 0)
        );
        apply_usage(
            &json!({"cache_creation": {"ephemeral_1h_input_tokens": 500}}),
            &mut p,
        );
        // The split says more than the total: the split wins, all of it billed.
        assert_eq!(
            (p.native().cache_write_5m, p.native().cache_write_1h),
            (0, 500)
        );
        assert_eq!(p.native().prompt_tokens, 501);
    }

    #[test]
    fn cut_closes_the_open_block_and_stops_with_max_tokens() {
        let bytes = fixture(include_bytes!(
            "../../../../tests/fixtures/native/messages_stream_thinking.sse"
        ));
        let text = std::str::from_utf8(bytes).unwrap();
        let inside_text = text.find("27 × 453").unwrap();
        let mut s = NativeStream::new(NativeApi::Messages);
        s.push(&bytes[..inside_text]);
        let local = NativeUsage {
            prompt_tokens: 4525,
            cached_tokens: 1500,
            cache_write_5m: 1000,
            cache_write_1h: 2000,
            completion_tokens: 30,
            reasoning_tokens: 0,
        };
        let tail = s.cut(&local);
        let events = SseParser::new().push(&tail).unwrap();
        let names: Vec<_> = events.iter().map(|e| e.event.clone().unwrap()).collect();
        assert_eq!(
            names,
            ["content_block_stop", "message_delta", "message_stop"]
        );
        let stop: Value = serde_json::from_str(events[0].data.as_deref().unwrap()).unwrap();
        assert_eq!(stop["index"], 1);
        let delta: Value = serde_json::from_str(events[1].data.as_deref().unwrap()).unwrap();
        assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
        assert_eq!(delta["usage"]["input_tokens"], 25);
        assert_eq!(delta["usage"]["output_tokens"], 30);
        // Cut between blocks: nothing to close.
        let between = text
            .find("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1")
            .unwrap();
        let mut s = NativeStream::new(NativeApi::Messages);
        s.push(&bytes[..between]);
        let events = SseParser::new().push(&s.cut(&local)).unwrap();
        assert_eq!(events[0].event.as_deref(), Some("message_delta"));
    }

    #[test]
    fn broken_stream_ends_with_one_error_event() {
        let bytes = fixture(include_bytes!(
            "../../../../tests/fixtures/native/messages_stream_thinking.sse"
        ));
        let mut s = NativeStream::new(NativeApi::Messages);
        s.push(&bytes[..bytes.len() - 10]);
        let tail = s.close(None);
        let events = SseParser::new().push(&tail).unwrap();
        assert_eq!(events.len(), 1);
        let data: Value = serde_json::from_str(events[0].data.as_deref().unwrap()).unwrap();
        assert_eq!(data["type"], "error");
        assert_eq!(data["error"]["type"], "api_error");
        assert_eq!(s.observed().usage.map(|u| u.completion_tokens), Some(96));
    }

    #[test]
    fn plain_message_object() {
        let body = fixture(include_bytes!(
            "../../../../tests/fixtures/native/messages_plain.json"
        ));
        let o = plain(NativeApi::Messages, body).unwrap();
        assert!(o.completed());
        assert_eq!(o.output, "Short plan.Done.save{\"ok\":true}");
        assert_eq!(
            o.usage,
            Some(NativeUsage {
                prompt_tokens: 710,
                cached_tokens: 200,
                cache_write_5m: 0,
                cache_write_1h: 500,
                completion_tokens: 40,
                reasoning_tokens: 0,
            })
        );
    }

    #[test]
    fn count_tokens_request_keeps_what_the_endpoint_accepts() {
        let req = decode_count_tokens(
            br#"{"model":"public","system":"be brief","messages":[{"role":"user","content":"hi"}],
            "tools":[{"name":"f","input_schema":{"type":"object"}}],"thinking":{"type":"enabled","budget_tokens":1024}}"#,
        )
        .unwrap();
        let client = ClientHeaders {
            anthropic_version: Some("2023-06-01".into()),
            anthropic_beta: Some("token-counting-2024-11-01".into()),
        };
        let up = count_tokens_request(&route(Value::Null), &req, &client).unwrap();
        assert_eq!(up.url, "https://api.anthropic.com/v1/messages/count_tokens");
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        let mut keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["messages", "model", "system", "thinking", "tools"]);
        assert_eq!(body["model"], "claude-up");
        assert!(up.headers.contains(&("x-api-key".into(), "sk-ant".into())));
        assert!(up
            .headers
            .contains(&("anthropic-beta".into(), "token-counting-2024-11-01".into())));
        assert!(!up.headers.iter().any(|(n, _)| n == "accept"));
        assert_eq!(counted_tokens(br#"{"input_tokens": 40}"#), Some(40));
        assert_eq!(counted_tokens(br#"{"input_tokens": -1}"#), None);
        assert_eq!(counted_tokens(b"<html>"), None);
    }

    #[test]
    fn client_headers_skip_blanks() {
        let h = client_headers(|n| match n {
            "anthropic-version" => Some("2023-06-01".into()),
            "anthropic-beta" => Some("  ".into()),
            _ => None,
        });
        assert_eq!(h.anthropic_version.as_deref(), Some("2023-06-01"));
        assert_eq!(h.anthropic_beta, None);
    }
}
