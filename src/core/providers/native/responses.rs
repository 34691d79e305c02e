//! OpenAI's Responses API, passed through to `openai` and `azure` providers.
//!
//! Follows "Create a model response", the response object and "Streaming events"
//! (<https://platform.openai.com/docs/api-reference/responses>,
//! <https://platform.openai.com/docs/api-reference/responses-streaming>), and Azure OpenAI's v1
//! API (<https://learn.microsoft.com/azure/ai-foundry/openai/api-version-lifecycle>: the
//! version-less `{resource}/openai/v1/responses`, `api-key` header, the deployment as `model`).
//!
//! **The request** ([`build_request`]) is the client's JSON object with
//! * `model` → the route's upstream model (Azure: the provider config's `deployment`, else the
//!   upstream model);
//! * `max_output_tokens` → the output cap the reservation covers: the client's, else the model's
//!   `max_output_tokens` (always sent, as for chat);
//! * `store: false` unless the client asks otherwise and the operator allows `store`: OpenAI
//!   keeps responses by default, and a stored response lives in the operator's account, where
//!   another tenant could read it back by id;
//! * the options that change what the provider charges or whose data a request reads refused
//!   with a 400 naming the field (code `unsupported_parameter`) unless the provider config's
//!   `allowed_params` lists them ([`BILLABLE`]): `service_tier` (other than `auto`/`default`),
//!   `store: true`, non-empty `metadata` (kept with stored responses), `background: true` (runs
//!   after the request ends: nothing left to meter), `previous_response_id`, `conversation` and
//!   `prompt` (read what is stored in the operator's account);
//! * OpenAI's hosted tools (`web_search`, `file_search`, `code_interpreter`, `image_generation`,
//!   `computer_use_preview`, `mcp`, …: billed per call, which the gateway does not price) removed
//!   from `tools` unless `allowed_params` names the tool's `type`, as the translation to chat
//!   does (clients such as Codex CLI send some unasked); a `tool_choice` naming a removed tool is
//!   a 400;
//! * the other fields of the API reference forwarded as sent ([`FORWARDED`]); unknown fields
//!   dropped unless allowed (strict servers reject fields they do not know, as for chat).
//!
//! **The answer.** Stream events are observed, never rewritten: usage from the terminal
//! response's `usage` (`input_tokens` with `input_tokens_details.cached_tokens`, `output_tokens`
//! with `output_tokens_details.reasoning_tokens`); `response.completed` and
//! `response.incomplete` are normal endings, `response.failed` and `error` failures; output for
//! local counts from `response.output_text.delta`, `response.refusal.delta`,
//! `response.reasoning_text.delta`, `response.reasoning_summary_text.delta`,
//! `response.function_call_arguments.delta`, `response.custom_tool_call_input.delta` and the
//! names of calls (`response.output_item.added`). Plain answers are response objects, observed
//! from their `output` items and `usage`.

use serde_json::{json, Map, Value};

use super::{body_object, count, Ending, NativeRequest, NativeUsage, Observed};
use crate::core::error::GatewayError;
use crate::core::providers::openai::{
    base_headers, map_openai_error, safety_identifier, sends_safety_identifier, SAFETY_IDENTIFIER,
};
use crate::core::providers::{join_url, ProviderKind, Route, UpstreamRequest};

/// Fields of the API reference forwarded as the client sent them (besides `model`,
/// `max_output_tokens` and `store`, which the gateway sets, and `tools`, filtered).
pub const FORWARDED: &[&str] = &[
    "input",
    "instructions",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning",
    "text",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "top_logprobs",
    "max_tool_calls",
    "include",
    "truncation",
    "user",
    "safety_identifier",
    "prompt_cache_key",
];

/// Options refused unless the operator allows them (see the module docs).
pub const BILLABLE: &[&str] = &[
    "service_tier",
    "store",
    "metadata",
    "background",
    "previous_response_id",
    "conversation",
    "prompt",
];

/// Tool types that are the client's own functions; every other type is a hosted tool, except a
/// `namespace` (a named group of tools, as Codex CLI sends its sub-agent tools) whose tools all are.
const CLIENT_TOOLS: &[&str] = &["function", "custom"];

/// Whether a `tools` entry runs on the client (see [`CLIENT_TOOLS`]); nesting is bounded.
fn is_client_tool(tool: &Value, depth: u8) -> bool {
    match tool
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("function")
    {
        kind if CLIENT_TOOLS.contains(&kind) => true,
        "namespace" if depth < 4 => tool
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|tools| tools.iter().all(|t| is_client_tool(t, depth + 1))),
        _ => false,
    }
}

/// Whether a billable field's value asks for nothing beyond the default.
fn is_default(name: &str, value: &Value) -> bool {
    match (name, value) {
        (_, Value::Null) => true,
        ("store" | "background", Value::Bool(false)) => true,
        ("service_tier", Value::String(s)) => s == "auto" || s == "default",
        ("metadata", Value::Object(o)) => o.is_empty(),
        _ => false,
    }
}

fn refused(name: &str) -> GatewayError {
    GatewayError::invalid_param(
        name,
        format!(
            "`{name}` is not available on this model: it changes what the provider charges or \
             reads data kept in the provider account, and this gateway has not enabled it."
        ),
    )
    .with_code("unsupported_parameter")
}

/// The output cap a Responses body asks for (`max_output_tokens`), for the reservation.
pub fn requested_cap(body: &Map<String, Value>) -> Option<u64> {
    body.get("max_output_tokens").and_then(Value::as_u64)
}

/// The Responses URL of a route: `{base}/responses` for OpenAI, Azure's v1 API path
/// `{resource}/openai/v1/responses` whatever the route's `api_version` (the Responses API has
/// no dated-version path in GA).
pub fn url(route: &Route) -> String {
    match route.kind {
        ProviderKind::Azure => {
            let base = route.base_url.trim_end_matches('/');
            let base = base.strip_suffix("/openai/v1").unwrap_or(base);
            let base = base.strip_suffix("/openai").unwrap_or(base);
            join_url(base, "openai/v1/responses")
        }
        _ => join_url(&route.base_url, "responses"),
    }
}

/// The upstream request for a client's `POST /v1/responses` body (see the module docs).
pub fn build_request(route: &Route, body: &[u8]) -> Result<NativeRequest, GatewayError> {
    let client = body_object(body)?;
    if !client.get("model").is_some_and(Value::is_string) {
        return Err(GatewayError::invalid_param(
            "model",
            "`model` is required and must be a string.",
        ));
    }
    if !client.contains_key("input") && !client.contains_key("prompt") {
        return Err(GatewayError::invalid_param("input", "`input` is required."));
    }
    if let Some(v) = client.get("max_output_tokens") {
        if !v.is_null() && v.as_u64().is_none_or(|n| n == 0) {
            return Err(GatewayError::invalid_param(
                "max_output_tokens",
                "`max_output_tokens` must be a positive integer.",
            ));
        }
    }
    for &name in BILLABLE {
        if let Some(v) = client.get(name) {
            if !is_default(name, v) && !route.allows_param(name) {
                return Err(refused(name));
            }
        }
    }
    let stream = client
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let model = match route.kind {
        ProviderKind::Azure => route
            .config_str("deployment")
            .unwrap_or(&route.upstream_model),
        _ => &route.upstream_model,
    };
    let mut out = Map::new();
    out.insert("model".into(), model.into());
    for (name, value) in &client {
        let keep = FORWARDED.contains(&name.as_str())
            || (route.allows_param(name) && name != "model" && name != "max_output_tokens");
        if keep && !value.is_null() {
            out.insert(name.clone(), value.clone());
        }
    }
    if let Some(tools) = client.get("tools").and_then(Value::as_array) {
        let kept: Vec<Value> = tools
            .iter()
            .filter(|t| {
                let kind = t.get("type").and_then(Value::as_str).unwrap_or("function");
                is_client_tool(t, 0) || route.allows_param(kind)
            })
            .cloned()
            .collect();
        if let Some(kind) = out
            .get("tool_choice")
            .and_then(|c| c.get("type"))
            .and_then(Value::as_str)
        {
            let named_function = CLIENT_TOOLS.contains(&kind) || kind == "allowed_tools";
            let available = kept
                .iter()
                .any(|t| t.get("type").and_then(Value::as_str) == Some(kind));
            if !named_function && !available {
                return Err(GatewayError::invalid_param(
                    "tool_choice",
                    format!("The hosted tool `{kind}` is not available on this model."),
                ));
            }
        }
        if !kept.is_empty() {
            out.insert("tools".into(), Value::Array(kept));
        }
    }
    let cap = requested_cap(&client).or(route.max_output_tokens);
    if let Some(cap) = cap {
        out.insert("max_output_tokens".into(), cap.into());
    }
    if !route.allows_param("store") || !client.contains_key("store") {
        out.insert("store".into(), false.into());
    }
    let mut headers = base_headers(route, stream);
    if let Some(key) = &route.api_key {
        headers.push(match route.kind {
            ProviderKind::Azure => ("api-key".to_string(), key.clone()),
            _ => ("authorization".to_string(), format!("Bearer {key}")),
        });
    }
    let body = serde_json::to_vec(&Value::Object(out))
        .map_err(|e| GatewayError::internal(format!("cannot encode upstream request: {e}")))?;
    Ok(NativeRequest {
        upstream: UpstreamRequest {
            url: url(route),
            headers,
            body,
        },
        stream,
        output_cap: cap,
    })
}

/// The tenant's `safety_identifier` in a native request, as on chat
/// ([`crate::core::providers::openai::attribute_to_tenant`]): it replaces the client's where the
/// route sends one ([`sends_safety_identifier`]), and the client's is dropped where it does not (a
/// tenant never names who the provider holds responsible).
pub fn attribute_to_tenant(
    req: &mut NativeRequest,
    route: &Route,
    tenant_id: &str,
) -> Result<(), GatewayError> {
    let mut body: Value = serde_json::from_slice(&req.upstream.body)
        .map_err(|e| GatewayError::internal(format!("cannot re-read upstream request: {e}")))?;
    if let Value::Object(map) = &mut body {
        if sends_safety_identifier(route) {
            map.insert(
                SAFETY_IDENTIFIER.to_string(),
                safety_identifier(tenant_id).into(),
            );
        } else {
            map.remove(SAFETY_IDENTIFIER);
        }
    }
    req.upstream.body = serde_json::to_vec(&body)
        .map_err(|e| GatewayError::internal(format!("cannot encode upstream request: {e}")))?;
    Ok(())
}

/// Maps a non-2xx answer (OpenAI's error body; Azure's is the same).
pub fn map_error(status: u16, body: &[u8]) -> GatewayError {
    map_openai_error(status, body)
}

/// A response object's `usage`.
fn usage_of(usage: &Value) -> Option<NativeUsage> {
    if !usage.is_object() {
        return None;
    }
    Some(NativeUsage {
        prompt_tokens: count(usage, "input_tokens").unwrap_or(0),
        cached_tokens: usage
            .get("input_tokens_details")
            .and_then(|d| count(d, "cached_tokens"))
            .unwrap_or(0),
        completion_tokens: count(usage, "output_tokens").unwrap_or(0),
        reasoning_tokens: usage
            .get("output_tokens_details")
            .and_then(|d| count(d, "reasoning_tokens"))
            .unwrap_or(0),
        ..NativeUsage::default()
    })
}

/// The failure a `response.failed` response or an `error` event reports.
fn failure(error: Option<&Value>) -> GatewayError {
    let code = error
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("server_error");
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("The provider failed to generate a response.");
    let status = match code {
        "rate_limit_exceeded" => 429,
        "invalid_prompt" | "invalid_request_error" => 400,
        _ => 500,
    };
    map_openai_error(
        status,
        json!({"error": {"message": message, "type": code, "code": code}})
            .to_string()
            .as_bytes(),
    )
}

/// Stream state beyond [`Observed`]: what the gateway's own closing events need.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    /// The last `sequence_number` seen.
    sequence: Option<u64>,
    /// `response.created`'s response: id, created_at, model (for a `response.incomplete` the
    /// gateway writes).
    header: Option<(Value, Value, Value)>,
}

impl StreamState {
    pub(super) fn event(&mut self, v: &Value, observed: &mut Observed) {
        let Some(kind) = v.get("type").and_then(Value::as_str) else {
            return;
        };
        observed.answered = true;
        if let Some(n) = count(v, "sequence_number") {
            self.sequence = Some(n);
        }
        let delta = || v.get("delta").and_then(Value::as_str).unwrap_or("");
        match kind {
            "response.created" | "response.in_progress" => {
                if let Some(r) = v.get("response").filter(|_| self.header.is_none()) {
                    self.header = Some((
                        r.get("id").cloned().unwrap_or(Value::Null),
                        r.get("created_at").cloned().unwrap_or(Value::Null),
                        r.get("model").cloned().unwrap_or(Value::Null),
                    ));
                }
            }
            "response.output_text.delta"
            | "response.refusal.delta"
            | "response.reasoning_text.delta"
            | "response.reasoning_summary_text.delta"
            | "response.function_call_arguments.delta"
            | "response.custom_tool_call_input.delta" => observed.push_output(delta()),
            "response.output_item.added" => {
                if let Some(name) = v
                    .get("item")
                    .filter(|i| {
                        matches!(
                            i.get("type").and_then(Value::as_str),
                            Some("function_call" | "custom_tool_call")
                        )
                    })
                    .and_then(|i| i.get("name"))
                    .and_then(Value::as_str)
                {
                    observed.push_output(name);
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                let response = v.get("response").unwrap_or(&Value::Null);
                if let Some(u) = response.get("usage").and_then(usage_of) {
                    observed.usage = Some(u);
                }
                observed.end(match kind {
                    "response.completed" => Ending::Completed,
                    "response.incomplete" => Ending::Incomplete,
                    _ => Ending::Failed(failure(response.get("error"))),
                });
            }
            "error" => observed.end(Ending::Failed(failure(Some(v)))),
            _ => {}
        }
    }

    fn next_sequence(&mut self) -> u64 {
        let n = self.sequence.map_or(0, |n| n.saturating_add(1));
        self.sequence = Some(n);
        n
    }

    /// OpenAI's stream `error` event: `{type, code, message, param, sequence_number}`.
    pub(super) fn error_event(&mut self, err: &GatewayError) -> Vec<u8> {
        let data = json!({"type": "error", "code": err.code(), "message": err.message,
            "param": err.param, "sequence_number": self.next_sequence()});
        format!("event: error\ndata: {data}\n\n").into_bytes()
    }

    /// `response.incomplete` (reason `max_output_tokens`) with the local usage.
    pub(super) fn cut(&mut self, usage: &NativeUsage) -> Vec<u8> {
        let (id, created_at, model) =
            self.header
                .clone()
                .unwrap_or((Value::Null, Value::Null, Value::Null));
        let data = json!({"type": "response.incomplete", "sequence_number": self.next_sequence(),
            "response": {"id": id, "object": "response", "created_at": created_at,
                "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
                "model": model, "output": [], "error": null,
                "usage": {"input_tokens": usage.prompt_tokens,
                    "input_tokens_details": {"cached_tokens": usage.cached_tokens},
                    "output_tokens": usage.completion_tokens,
                    "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
                    "total_tokens": usage.prompt_tokens.saturating_add(usage.completion_tokens)}}});
        format!("event: response.incomplete\ndata: {data}\n\n").into_bytes()
    }
}

/// Observes a plain response object.
pub(super) fn observe_plain(v: &Value, observed: &mut Observed) -> Result<(), &'static str> {
    if v.get("object").and_then(Value::as_str) != Some("response") {
        return Err("it is not a response object");
    }
    let items = v.get("output").and_then(Value::as_array);
    for item in items.into_iter().flatten() {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        match item.get("type").and_then(Value::as_str) {
            Some("message") | Some("reasoning") => {
                let parts = ["content", "summary"]
                    .into_iter()
                    .filter_map(|k| item.get(k).and_then(Value::as_array))
                    .flatten();
                for part in parts {
                    observed.push_output(&text(part.get("text").or(part.get("refusal"))));
                }
            }
            Some("function_call") => {
                observed.push_output(&text(item.get("name")));
                observed.push_output(&text(item.get("arguments")));
            }
            Some("custom_tool_call") => {
                observed.push_output(&text(item.get("name")));
                observed.push_output(&text(item.get("input")));
            }
            _ => {}
        }
    }
    observed.usage = v.get("usage").and_then(usage_of);
    observed.end(match v.get("status").and_then(Value::as_str) {
        Some("failed") => Ending::Failed(failure(v.get("error"))),
        Some("incomplete") => Ending::Incomplete,
        _ => Ending::Completed,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::observe_every_way;
    use super::super::{observe_plain as plain, NativeApi, NativeStream};
    use super::*;
    use crate::core::error::ErrorKind;
    use crate::core::providers::mapping::testing::fixture;
    use crate::core::sse::SseParser;

    fn route(kind: ProviderKind, base: &str, config: Value) -> Route {
        Route {
            provider: "p".into(),
            kind,
            base_url: base.into(),
            api_key: Some("sk-up".into()),
            upstream_model: "gpt-up".into(),
            max_output_tokens: Some(777),
            config,
        }
    }

    fn openai() -> Route {
        route(
            ProviderKind::OpenAi,
            "https://api.openai.com/v1",
            Value::Null,
        )
    }

    fn sent(req: &NativeRequest) -> Value {
        serde_json::from_slice(&req.upstream.body).unwrap()
    }

    #[test]
    fn openai_request_replaces_model_sets_cap_and_store() {
        let body = br#"{"model":"public","input":"hi","stream":true,"reasoning":{"effort":"low"},
            "include":["reasoning.encrypted_content"],"client_metadata":{"x":1},"prompt_cache_key":"k"}"#;
        let req = build_request(&openai(), body).unwrap();
        assert_eq!(req.upstream.url, "https://api.openai.com/v1/responses");
        assert!(req.stream);
        assert_eq!(req.output_cap, Some(777));
        let v = sent(&req);
        assert_eq!(v["model"], "gpt-up");
        assert_eq!(v["max_output_tokens"], 777);
        assert_eq!(v["store"], false);
        assert_eq!(v["reasoning"]["effort"], "low");
        assert_eq!(v["prompt_cache_key"], "k");
        assert!(
            v.get("client_metadata").is_none(),
            "unknown fields are dropped"
        );
        assert!(req
            .upstream
            .headers
            .contains(&("authorization".into(), "Bearer sk-up".into())));
        assert!(req
            .upstream
            .headers
            .contains(&("accept".into(), "text/event-stream".into())));
        // The client's cap wins over the model's, as for chat.
        let req = build_request(
            &openai(),
            br#"{"model":"m","input":"x","max_output_tokens":5}"#,
        )
        .unwrap();
        assert_eq!(
            (req.output_cap, sent(&req)["max_output_tokens"].as_u64()),
            (Some(5), Some(5))
        );
        assert!(!req.stream);
    }

    #[test]
    fn the_tenants_safety_identifier_replaces_the_clients() {
        let body = br#"{"model":"m","input":"x","safety_identifier":"someone-else"}"#;
        let mut req = build_request(&openai(), body).unwrap();
        attribute_to_tenant(&mut req, &openai(), "t1").unwrap();
        assert_eq!(sent(&req)["safety_identifier"], safety_identifier("t1"));
        let compat = route(
            ProviderKind::OpenAi,
            "http://127.0.0.1:9/v1",
            json!({"responses_api": true}),
        );
        let mut req = build_request(&compat, body).unwrap();
        attribute_to_tenant(&mut req, &compat, "t1").unwrap();
        assert!(sent(&req).get("safety_identifier").is_none());
        assert_eq!(sent(&req)["input"], "x");
    }

    #[test]
    fn azure_uses_the_v1_path_the_deployment_and_api_key() {
        for base in [
            "https://r.openai.azure.com",
            "https://r.openai.azure.com/",
            "https://r.openai.azure.com/openai",
            "https://r.openai.azure.com/openai/v1",
        ] {
            let r = route(
                ProviderKind::Azure,
                base,
                json!({"api_version": "2024-10-21", "deployment": "dep 1"}),
            );
            let req = build_request(&r, br#"{"model":"m","input":"x"}"#).unwrap();
            assert_eq!(
                req.upstream.url,
                "https://r.openai.azure.com/openai/v1/responses"
            );
            assert_eq!(sent(&req)["model"], "dep 1");
            assert!(req
                .upstream
                .headers
                .contains(&("api-key".into(), "sk-up".into())));
        }
    }

    #[test]
    fn billable_options_are_refused_unless_allowed() {
        for (field, value) in [
            ("service_tier", r#""priority""#),
            ("store", "true"),
            ("metadata", r#"{"a":"b"}"#),
            ("background", "true"),
            ("previous_response_id", r#""resp_other_tenant""#),
            ("conversation", r#""conv_1""#),
            ("prompt", r#"{"id":"pmpt_1"}"#),
        ] {
            let body = format!(r#"{{"model":"m","input":"x","{field}":{value}}}"#);
            let err = build_request(&openai(), body.as_bytes()).unwrap_err();
            assert_eq!(err.status(), 400, "{field}");
            assert_eq!(err.param.as_deref(), Some(field));
            assert_eq!(err.code(), "unsupported_parameter");
            let allowed = route(
                ProviderKind::OpenAi,
                "https://api.openai.com/v1",
                json!({"allowed_params": [field]}),
            );
            let v = sent(&build_request(&allowed, body.as_bytes()).unwrap());
            let expected: Value = serde_json::from_str(value).unwrap();
            assert_eq!(v[field], expected, "{field} allowed");
        }
        // Default values ask for nothing and pass.
        let body = br#"{"model":"m","input":"x","store":false,"service_tier":"auto","metadata":{},"background":false}"#;
        let v = sent(&build_request(&openai(), body).unwrap());
        assert_eq!(v["store"], false);
        assert!(v.get("service_tier").is_none() && v.get("metadata").is_none());
    }

    #[test]
    fn hosted_tools_are_removed_unless_allowed() {
        let body =
            br#"{"model":"m","input":"x","tools":[{"type":"function","name":"f","parameters":{}},
            {"type":"web_search"},{"type":"custom","name":"apply_patch"},
            {"type":"namespace","name":"multi_agent_v1","tools":[{"type":"function","name":"spawn"}]},
            {"type":"namespace","name":"sneaky","tools":[{"type":"code_interpreter"}]}]}"#;
        // (as Codex CLI sends them: functions, a namespace of functions, custom, web_search)
        let v = sent(&build_request(&openai(), body).unwrap());
        let types: Vec<&str> = v["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["function", "custom", "namespace"]);
        assert_eq!(v["tools"][2]["name"], "multi_agent_v1");
        let allowed = route(
            ProviderKind::OpenAi,
            "https://api.openai.com/v1",
            json!({"allowed_params": ["web_search"]}),
        );
        assert_eq!(
            sent(&build_request(&allowed, body).unwrap())["tools"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
        let forced = br#"{"model":"m","input":"x","tools":[{"type":"web_search"}],"tool_choice":{"type":"web_search"}}"#;
        let err = build_request(&openai(), forced).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("tool_choice"));
        let only_hosted = sent(
            &build_request(
                &openai(),
                br#"{"model":"m","input":"x","tools":[{"type":"file_search"}]}"#,
            )
            .unwrap(),
        );
        assert!(only_hosted.get("tools").is_none());
    }

    #[test]
    fn malformed_bodies_are_400s() {
        for body in [
            &b"[]"[..],
            b"not json",
            br#"{"input":"x"}"#,
            br#"{"model":"m"}"#,
            br#"{"model":"m","input":"x","max_output_tokens":0}"#,
            br#"{"model":"m","input":"x","max_output_tokens":"many"}"#,
        ] {
            let err = build_request(&openai(), body).unwrap_err();
            assert_eq!(err.status(), 400, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn stream_usage_output_and_ending_every_split() {
        let bytes = fixture(include_bytes!(
            "../../../../tests/fixtures/native/responses_stream_reasoning.sse"
        ));
        let o = observe_every_way(NativeApi::Responses, bytes);
        assert!(o.answered && o.completed() && o.delivered_output());
        assert_eq!(
            o.usage,
            Some(NativeUsage {
                prompt_tokens: 1200,
                cached_tokens: 1024,
                completion_tokens: 310,
                reasoning_tokens: 256,
                ..NativeUsage::default()
            })
        );
        assert_eq!(
            o.output,
            "Checking the weather.Looking it up — один момент 🌦get_weather{\"city\":\"Paris\"}"
        );
        // The observer leaves the bytes alone: the relay forwards exactly what it fed.
        let mut s = NativeStream::new(NativeApi::Responses);
        s.push(bytes);
        assert_eq!(s.complete_bytes(), bytes.len() as u64);
        assert!(
            s.close(None).is_empty(),
            "a completed stream needs no ending"
        );
    }

    #[test]
    fn the_gateways_own_text_stream_fixture_is_observed_too() {
        let bytes = fixture(include_bytes!(
            "../../../../tests/fixtures/responses/stream_text.sse"
        ));
        let o = observe_every_way(NativeApi::Responses, bytes);
        assert!(o.completed());
        assert_eq!(o.output, "Hi there 👋");
        assert!(o.usage.is_some());
    }

    #[test]
    fn failed_stream_is_a_failure_after_output() {
        let bytes = fixture(include_bytes!(
            "../../../../tests/fixtures/native/responses_stream_failed.sse"
        ));
        let o = observe_every_way(NativeApi::Responses, bytes);
        assert!(!o.completed());
        assert!(o.delivered_output());
        let err = o.error().unwrap();
        assert_eq!(err.status(), 502, "{err:?}");
        assert_eq!(o.usage, None);
    }

    #[test]
    fn broken_stream_gets_an_error_event_after_the_last_whole_event() {
        let bytes = fixture(include_bytes!(
            "../../../../tests/fixtures/native/responses_stream_reasoning.sse"
        ));
        let cut_at = bytes.len() - 40; // inside response.completed
        let mut s = NativeStream::new(NativeApi::Responses);
        s.push(&bytes[..cut_at]);
        let tail = s.close(None);
        assert!(s.complete_bytes() < cut_at as u64);
        let mut p = SseParser::new();
        let events = p.push(&tail).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event.as_deref(), Some("error"));
        let data: Value = serde_json::from_str(events[0].data.as_deref().unwrap()).unwrap();
        assert_eq!(
            data["sequence_number"], 12,
            "follows the provider's last (11)"
        );
        assert_eq!(data["code"], "upstream_error");
        assert!(s.observed().delivered_output() && s.observed().usage.is_none());
    }

    #[test]
    fn cut_ends_with_response_incomplete_and_local_usage() {
        let bytes = fixture(include_bytes!(
            "../../../../tests/fixtures/native/responses_stream_reasoning.sse"
        ));
        let mut s = NativeStream::new(NativeApi::Responses);
        s.push(&bytes[..bytes.len() / 2]);
        let local = NativeUsage {
            prompt_tokens: 9,
            completion_tokens: 4,
            ..NativeUsage::default()
        };
        let tail = s.cut(&local);
        let events = SseParser::new().push(&tail).unwrap();
        let data: Value = serde_json::from_str(events[0].data.as_deref().unwrap()).unwrap();
        assert_eq!(data["type"], "response.incomplete");
        assert_eq!(data["response"]["id"], "resp_68af0001");
        assert_eq!(
            data["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(data["response"]["usage"]["output_tokens"], 4);
        assert_eq!(s.observed().ending, Some(Ending::Truncated));
        assert!(s.close(None).is_empty());
    }

    #[test]
    fn plain_response_object() {
        let body = fixture(include_bytes!(
            "../../../../tests/fixtures/native/responses_plain.json"
        ));
        let o = plain(NativeApi::Responses, body).unwrap();
        assert!(o.completed());
        assert_eq!(o.output, "Plan.Hello, worldlookup{\"q\":1}");
        assert_eq!(
            o.usage
                .map(|u| (u.prompt_tokens, u.completion_tokens, u.reasoning_tokens)),
            Some((36, 87, 64))
        );
        let failed = br#"{"object":"response","status":"failed","error":{"code":"rate_limit_exceeded","message":"slow down"},"output":[]}"#;
        let o = plain(NativeApi::Responses, failed).unwrap();
        assert_eq!(
            o.error().map(|e| e.kind),
            Some(ErrorKind::UpstreamRateLimited)
        );
    }
}
