//! What a plugin's answer becomes: a tool message for the model, or a failure the model can
//! recover from; and the chat completion (plain or SSE) the client gets in the end.

use serde_json::{json, Map, Value};

use crate::core::openai::chunk::FunctionCallDelta;
use crate::core::openai::{
    ChatCompletionChunk, ChatCompletionResponse, Choice, ChunkChoice, Delta, ResponseMessage,
    ToolCallDelta, Usage,
};
use crate::core::sse::encode_data;

/// Why a plugin call produced no result. Each becomes a tool error message, never an HTTP error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// The model named a plugin or API that is not enabled or does not exist.
    UnknownTool(String),
    /// The arguments are not JSON or break the API's schema.
    InvalidArguments(String),
    /// The request to the plugin would exceed the request size limit.
    RequestTooLarge(usize),
    /// The per-call price could not be reserved.
    InsufficientCredit,
    /// The plugin did not answer in time.
    Timeout(u64),
    /// The plugin's answer exceeded the response size limit.
    ResponseTooLarge(u64),
    /// The plugin answered with something that is not a result (bad JSON, not UTF-8).
    Malformed(String),
    /// The plugin answered with a redirect; plugins may not redirect.
    Redirect(u16),
    /// The plugin answered with an error status.
    Status(u16),
    /// The plugin's address is not allowed or it could not be reached.
    Unreachable(String),
}

impl CallFailure {
    /// The short code stored in `plugin_calls.status` and shown to the model.
    pub fn code(&self) -> &'static str {
        match self {
            CallFailure::UnknownTool(_) => "unknown_tool",
            CallFailure::InvalidArguments(_) => "invalid_arguments",
            CallFailure::RequestTooLarge(_) => "request_too_large",
            CallFailure::InsufficientCredit => "insufficient_quota",
            CallFailure::Timeout(_) => "timeout",
            CallFailure::ResponseTooLarge(_) => "response_too_large",
            CallFailure::Malformed(_) => "malformed_response",
            CallFailure::Redirect(_) => "redirect_refused",
            CallFailure::Status(_) => "plugin_error",
            CallFailure::Unreachable(_) => "unreachable",
        }
    }

    pub fn message(&self) -> String {
        match self {
            CallFailure::UnknownTool(name) => format!("No enabled plugin tool is named `{name}`."),
            CallFailure::InvalidArguments(m) => format!("The arguments are invalid: {m}"),
            CallFailure::RequestTooLarge(limit) => {
                format!("The arguments are larger than the limit of {limit} bytes.")
            }
            CallFailure::InsufficientCredit => {
                "The balance does not cover the price of this plugin call.".to_string()
            }
            CallFailure::Timeout(ms) => format!("The plugin did not answer within {ms} ms."),
            CallFailure::ResponseTooLarge(limit) => {
                format!("The plugin's answer is larger than the limit of {limit} bytes.")
            }
            CallFailure::Malformed(m) => format!("The plugin's answer is malformed: {m}"),
            CallFailure::Redirect(s) => {
                format!("The plugin answered with a redirect (HTTP {s}); redirects are refused.")
            }
            CallFailure::Status(s) => format!("The plugin failed (HTTP {s})."),
            CallFailure::Unreachable(m) => format!("The plugin could not be reached: {m}"),
        }
    }

    /// The content of the tool message that tells the model about the failure.
    pub fn tool_content(&self) -> String {
        json!({"error": {"code": self.code(), "message": self.message()}}).to_string()
    }
}

/// Turns a plugin's 2xx answer into the text given to the model (or the user, in command mode).
///
/// - `application/json` (or `+json`): must parse; an object with a string `content` gives that
///   string, any other JSON value is passed on as compact JSON text.
/// - any other type (`text/markdown`, `text/plain`, …): the body, which must be UTF-8.
pub fn plugin_text(content_type: &str, body: &[u8]) -> Result<String, CallFailure> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || mime.ends_with("+json") {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| CallFailure::Malformed(format!("invalid JSON ({e})")))?;
        return Ok(match value {
            Value::Object(ref o) => match o.get("content") {
                Some(Value::String(s)) => s.clone(),
                _ => value.to_string(),
            },
            other => other.to_string(),
        });
    }
    String::from_utf8(body.to_vec())
        .map_err(|_| CallFailure::Malformed("the body is not UTF-8 text".to_string()))
}

/// The assistant answer of a slash command.
pub fn command_completion(
    id: &str,
    model: &str,
    created: u64,
    text: &str,
) -> ChatCompletionResponse {
    ChatCompletionResponse {
        id: id.to_string(),
        object: "chat.completion".to_string(),
        created,
        model: model.to_string(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".to_string(),
                content: Some(text.to_string()),
                tool_calls: None,
                refusal: None,
                extra: Map::new(),
            },
            finish_reason: Some("stop".to_string()),
            extra: Map::new(),
        }],
        usage: Some(Usage::new(0, 0)),
        extra: Map::new(),
    }
}

/// Sums the usage of several rounds (absent usage counts as zero).
pub fn total_usage<'a>(rounds: impl IntoIterator<Item = &'a Usage>) -> Usage {
    let (p, c) = rounds.into_iter().fold((0, 0), |(p, c), u| {
        (p + u.prompt_tokens, c + u.completion_tokens)
    });
    Usage::new(p, c)
}

/// A finished completion as an SSE stream, the way OpenAI streams one: a role chunk, the content,
/// tool calls (if any), a finish chunk per choice, the usage chunk when asked, then `[DONE]`.
pub fn completion_to_sse(resp: &ChatCompletionResponse, include_usage: bool) -> Vec<u8> {
    let chunk = |choices: Vec<ChunkChoice>, usage: Option<Usage>| ChatCompletionChunk {
        id: resp.id.clone(),
        object: "chat.completion.chunk".to_string(),
        created: resp.created,
        model: resp.model.clone(),
        choices,
        usage,
        extra: Map::new(),
    };
    let choice = |index: u32, delta: Delta, finish: Option<String>| ChunkChoice {
        index,
        delta,
        finish_reason: finish,
        extra: Map::new(),
    };
    let mut events: Vec<ChatCompletionChunk> = Vec::new();
    for c in &resp.choices {
        events.push(chunk(
            vec![choice(
                c.index,
                Delta {
                    role: Some("assistant".to_string()),
                    content: Some(String::new()),
                    ..Delta::default()
                },
                None,
            )],
            None,
        ));
        if let Some(text) = c.message.content.as_ref().filter(|t| !t.is_empty()) {
            events.push(chunk(
                vec![choice(
                    c.index,
                    Delta {
                        content: Some(text.clone()),
                        ..Delta::default()
                    },
                    None,
                )],
                None,
            ));
        }
        if let Some(calls) = c.message.tool_calls.as_ref().filter(|c| !c.is_empty()) {
            let deltas = calls
                .iter()
                .enumerate()
                .map(|(i, call)| ToolCallDelta {
                    index: i as u32,
                    id: Some(call.id.clone()),
                    kind: Some(call.kind.clone()),
                    function: Some(FunctionCallDelta {
                        name: Some(call.function.name.clone()),
                        arguments: Some(call.function.arguments.clone()),
                    }),
                })
                .collect();
            events.push(chunk(
                vec![choice(
                    c.index,
                    Delta {
                        tool_calls: Some(deltas),
                        ..Delta::default()
                    },
                    None,
                )],
                None,
            ));
        }
        events.push(chunk(
            vec![choice(
                c.index,
                Delta::default(),
                Some(
                    c.finish_reason
                        .clone()
                        .unwrap_or_else(|| "stop".to_string()),
                ),
            )],
            None,
        ));
    }
    if include_usage {
        events.push(chunk(
            Vec::new(),
            Some(resp.usage.clone().unwrap_or_default()),
        ));
    }
    let mut out = Vec::new();
    for e in &events {
        if let Ok(data) = serde_json::to_string(e) {
            out.extend_from_slice(&encode_data(&data));
        }
    }
    out.extend_from_slice(&encode_data("[DONE]"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sse::SseParser;

    #[test]
    fn plugin_answers() {
        assert_eq!(
            plugin_text("text/markdown; charset=utf-8", "**晴** 25°C".as_bytes()).unwrap(),
            "**晴** 25°C"
        );
        assert_eq!(
            plugin_text("application/json", br##"{"content":"# Sunny"}"##).unwrap(),
            "# Sunny"
        );
        assert_eq!(
            plugin_text("application/json", br#"{"temp":25}"#).unwrap(),
            r#"{"temp":25}"#
        );
        assert_eq!(
            plugin_text("application/json", b"{not json")
                .unwrap_err()
                .code(),
            "malformed_response"
        );
        assert_eq!(
            plugin_text("text/plain", &[0xff, 0xfe]).unwrap_err().code(),
            "malformed_response"
        );
    }

    #[test]
    fn failures_are_json_tool_messages() {
        let v: Value = serde_json::from_str(&CallFailure::Timeout(10_000).tool_content()).unwrap();
        assert_eq!(v["error"]["code"], "timeout");
        assert!(v["error"]["message"].as_str().unwrap().contains("10000 ms"));
    }

    #[test]
    fn completion_streams_as_openai_chunks() {
        let mut resp = command_completion("chatcmpl-1", "m", 7, "**Sunny**");
        resp.usage = Some(Usage::new(3, 4));
        let sse = completion_to_sse(&resp, true);
        let events = SseParser::new().push(&sse).unwrap();
        assert_eq!(events.len(), 5);
        assert!(events.last().unwrap().is_done());
        let chunks: Vec<ChatCompletionChunk> = events[..4]
            .iter()
            .map(|e| serde_json::from_str(e.data.as_deref().unwrap()).unwrap())
            .collect();
        assert_eq!(
            chunks[0].choices[0].delta.role.as_deref(),
            Some("assistant")
        );
        assert_eq!(
            chunks[1].choices[0].delta.content.as_deref(),
            Some("**Sunny**")
        );
        assert_eq!(chunks[2].choices[0].finish_reason.as_deref(), Some("stop"));
        assert_eq!(chunks[3].usage.as_ref().unwrap().completion_tokens, 4);
        assert!(chunks[3].choices.is_empty());
        let without = SseParser::new()
            .push(&completion_to_sse(&resp, false))
            .unwrap();
        assert_eq!(without.len(), 4);
    }

    #[test]
    fn sums_usage() {
        let u = total_usage([&Usage::new(1, 2), &Usage::new(10, 20)]);
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (11, 22, 33)
        );
    }
}
