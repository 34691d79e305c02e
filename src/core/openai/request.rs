//! `POST /v1/chat/completions` request body.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::response::ToolCall;
use crate::core::error::GatewayError;

/// A chat completion request as clients send it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Every other field, passed through unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatMessage {
    /// A message with plain text content.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: Some(MessageContent::Text(text.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            extra: Map::new(),
        }
    }

    /// The text of the message: the string content, or its text parts joined.
    pub fn text_content(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(MessageContent::Text(t)) => t.clone(),
            Some(MessageContent::Parts(parts)) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

/// `content` is either a string or an array of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One content part: `{"type":"text","text":…}`, `{"type":"image_url","image_url":{…}}`, ….
/// Kept open so part types Tollgate does not know still pass through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDef>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Largest `n` accepted; each choice is reserved for in full.
pub const MAX_CHOICES: u32 = 16;

impl ChatCompletionRequest {
    /// Parses and validates a request body; errors are 400s that name the field at fault.
    pub fn from_json(body: &[u8]) -> Result<Self, GatewayError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            GatewayError::invalid_request(format!("The request body is not valid JSON: {e}"))
        })?;
        let Value::Object(map) = &value else {
            return Err(GatewayError::invalid_request(
                "The request body must be a JSON object.",
            ));
        };
        match map.get("model") {
            Some(Value::String(m)) if !m.trim().is_empty() => {}
            Some(_) => {
                return Err(GatewayError::invalid_param(
                    "model",
                    "`model` must be a non-empty string.",
                ))
            }
            None => {
                return Err(GatewayError::invalid_param(
                    "model",
                    "Missing required parameter: `model`.",
                ))
            }
        }
        match map.get("messages") {
            Some(Value::Array(a)) if !a.is_empty() => {}
            Some(Value::Array(_)) => {
                return Err(GatewayError::invalid_param(
                    "messages",
                    "`messages` must contain at least one message.",
                ))
            }
            Some(_) => {
                return Err(GatewayError::invalid_param(
                    "messages",
                    "`messages` must be an array.",
                ))
            }
            None => {
                return Err(GatewayError::invalid_param(
                    "messages",
                    "Missing required parameter: `messages`.",
                ))
            }
        }
        let req: ChatCompletionRequest = serde_json::from_value(value).map_err(|e| {
            GatewayError::invalid_request(format!("Invalid chat completion request: {e}"))
        })?;
        req.validate()?;
        Ok(req)
    }

    fn validate(&self) -> Result<(), GatewayError> {
        if let Some(n) = self.n {
            if n == 0 || n > MAX_CHOICES {
                return Err(GatewayError::invalid_param(
                    "n",
                    format!("`n` must be between 1 and {MAX_CHOICES}."),
                ));
            }
        }
        for (field, value) in [
            ("max_tokens", self.max_tokens),
            ("max_completion_tokens", self.max_completion_tokens),
        ] {
            if value == Some(0) {
                return Err(GatewayError::invalid_param(
                    field,
                    format!("`{field}` must be at least 1."),
                ));
            }
        }
        if let Some(tools) = &self.tools {
            for (i, tool) in tools.iter().enumerate() {
                if tool.kind == "function" && tool.function.is_none() {
                    return Err(GatewayError::invalid_param(
                        &format!("tools[{i}].function"),
                        "A function tool needs a `function` object.",
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the client asked for the final usage chunk of a stream.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The output cap per choice the client set, if any. When it sets both `max_tokens` and
    /// `max_completion_tokens`, the smaller one: that is what the reservation covers, and the
    /// only cap the adapters forward (a provider that honours the other field could otherwise
    /// generate past what was reserved).
    pub fn requested_max_output(&self) -> Option<u64> {
        match (self.max_completion_tokens, self.max_tokens) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn choices(&self) -> u64 {
        u64::from(self.n.unwrap_or(1).max(1))
    }

    /// The text of the last user message, for the echo model.
    pub fn last_user_text(&self) -> Option<String> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(ChatMessage::text_content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_unknown_fields_and_omits_unset_ones() {
        let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi","x_custom":1}],
            "temperature":0.2,"response_format":{"type":"json_object"},"seed":7}"#;
        let req = ChatCompletionRequest::from_json(body).unwrap();
        assert_eq!(req.extra["temperature"], 0.2);
        assert_eq!(req.messages[0].extra["x_custom"], 1);
        let out = serde_json::to_value(&req).unwrap();
        assert_eq!(out["response_format"]["type"], "json_object");
        assert_eq!(out["seed"], 7);
        let obj = out.as_object().unwrap();
        for unset in ["stream", "stream_options", "max_tokens", "n", "tools"] {
            assert!(!obj.contains_key(unset), "{unset} must be omitted");
        }
        let msg = out["messages"][0].as_object().unwrap();
        assert!(!msg.contains_key("name") && !msg.contains_key("tool_calls"));
    }

    #[test]
    fn content_parts_round_trip() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":[
            {"type":"text","text":"look "},{"type":"image_url","image_url":{"url":"data:x"}},
            {"type":"text","text":"here"}]}]}"#;
        let req = ChatCompletionRequest::from_json(body).unwrap();
        assert_eq!(req.messages[0].text_content(), "look here");
        let out = serde_json::to_value(&req).unwrap();
        assert_eq!(
            out["messages"][0]["content"][1]["image_url"]["url"],
            "data:x"
        );
    }

    #[test]
    fn rejects_bad_requests_with_the_field_named() {
        let cases: [(&[u8], &str); 7] = [
            (b"{", "not valid JSON"),
            (b"[]", "JSON object"),
            (
                br#"{"messages":[{"role":"user","content":"x"}]}"#,
                "`model`",
            ),
            (br#"{"model":"m"}"#, "`messages`"),
            (br#"{"model":"m","messages":[]}"#, "at least one"),
            (
                br#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#,
                "wizard",
            ),
            (
                br#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":0}"#,
                "`n`",
            ),
        ];
        for (body, needle) in cases {
            let err = ChatCompletionRequest::from_json(body).unwrap_err();
            assert_eq!(err.status(), 400);
            assert!(
                err.message.contains(needle),
                "{} lacks {needle}",
                err.message
            );
        }
    }

    #[test]
    fn stream_usage_and_caps() {
        let req = ChatCompletionRequest::from_json(
            br#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}],
            "stream":true,"stream_options":{"include_usage":true},"max_tokens":10,"max_completion_tokens":20,"n":2}"#,
        )
        .unwrap();
        assert!(req.is_stream() && req.wants_stream_usage());
        assert_eq!(req.requested_max_output(), Some(10));
        assert_eq!(req.choices(), 2);
        assert_eq!(req.last_user_text().as_deref(), Some("a"));
    }

    #[test]
    fn the_smaller_of_two_caps_is_the_cap() {
        let cap = |fields: &str| {
            let body =
                format!(r#"{{"model":"m","messages":[{{"role":"user","content":"a"}}]{fields}}}"#);
            ChatCompletionRequest::from_json(body.as_bytes())
                .unwrap()
                .requested_max_output()
        };
        assert_eq!(
            cap(r#","max_completion_tokens":1,"max_tokens":8000"#),
            Some(1)
        );
        assert_eq!(
            cap(r#","max_completion_tokens":8000,"max_tokens":3"#),
            Some(3)
        );
        assert_eq!(cap(r#","max_tokens":5"#), Some(5));
        assert_eq!(cap(r#","max_completion_tokens":6"#), Some(6));
        assert_eq!(cap(""), None);
    }
}
