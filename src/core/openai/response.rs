//! Non-streamed chat completion response and the usage object shared with streams.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionResponse {
    #[serde(default)]
    pub id: String,
    #[serde(default = "completion_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn completion_object() -> String {
    "chat.completion".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    pub message: ResponseMessage,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseMessage {
    #[serde(default = "assistant_role")]
    pub role: String,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn assistant_role() -> String {
    "assistant".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

/// Token usage as OpenAI reports it. Every field tolerates absence: providers differ.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    /// Prompt tokens written to the provider's cache (Anthropic's `cache_creation_input_tokens`),
    /// parts of `prompt_tokens` billed at their own prices (`core::billing::tiers`). Not a field
    /// of OpenAI's usage object: never read from or written to JSON (a chat client sees them as
    /// prompt tokens; the Messages encoder reports them as Anthropic does).
    #[serde(skip)]
    pub cache_writes: CacheWrites,
}

/// Prompt tokens written to a provider's cache, by lifetime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheWrites {
    /// Written for 5 minutes (Anthropic's default lifetime).
    pub five_minutes: u64,
    /// Written for 1 hour.
    pub one_hour: u64,
}

impl CacheWrites {
    pub fn total(&self) -> u64 {
        self.five_minutes.saturating_add(self.one_hour)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            // Saturating: the counts come from the provider and may be anything.
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            prompt_tokens_details: None,
            completion_tokens_details: None,
            cache_writes: CacheWrites::default(),
        }
    }

    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .as_ref()
            .map_or(0, |d| d.cached_tokens)
    }

    pub fn reasoning_tokens(&self) -> u64 {
        self.completion_tokens_details
            .as_ref()
            .map_or(0, |d| d.reasoning_tokens)
    }
}

impl ChatCompletionResponse {
    /// The response's finish reason, folded over its choices
    /// ([`crate::core::meter::fold_finish_reason`]): `"length"` only when every choice was cut
    /// at `max_tokens`.
    pub fn finish_reason(&self) -> Option<String> {
        let mut reason = None;
        for r in self
            .choices
            .iter()
            .filter_map(|c| c.finish_reason.as_deref())
        {
            crate::core::meter::fold_finish_reason(&mut reason, r);
        }
        reason
    }

    /// All generated text of every choice (content, refusals, tool-call names and arguments,
    /// reasoning and audio transcripts: see [`super::chunk::append_extra_output`]), which is what
    /// the local completion-token count measures.
    pub fn generated_text(&self) -> String {
        let mut out = String::new();
        for choice in &self.choices {
            super::chunk::append_extra_output(&choice.message.extra, &mut out);
            if let Some(c) = &choice.message.content {
                out.push_str(c);
            }
            if let Some(r) = &choice.message.refusal {
                out.push_str(r);
            }
            for call in choice.message.tool_calls.iter().flatten() {
                out.push_str(&call.function.name);
                out.push_str(&call.function.arguments);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openai_documented_response() {
        let body = r#"{"id":"chatcmpl-123","object":"chat.completion","created":1677652288,
          "model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb",
          "choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},
            "logprobs":null,"finish_reason":"stop"}],
          "usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,
            "prompt_tokens_details":{"cached_tokens":4},
            "completion_tokens_details":{"reasoning_tokens":2}}}"#;
        let r: ChatCompletionResponse = serde_json::from_str(body).unwrap();
        let u = r.usage.as_ref().unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (9, 12));
        assert_eq!((u.cached_tokens(), u.reasoning_tokens()), (4, 2));
        assert_eq!(r.generated_text(), "Hello there");
        assert_eq!(r.extra["system_fingerprint"], "fp_44709d6fcb");
    }

    #[test]
    fn reasoning_counts_as_generated_text() {
        let body = r#"{"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant",
          "reasoning_content":"Think. ","content":"Answer."}},
          {"index":1,"message":{"role":"assistant","reasoning":"More. ","content":"B",
          "audio":{"id":"a","data":"xx","transcript":" said"}}}]}"#;
        let r: ChatCompletionResponse = serde_json::from_str(body).unwrap();
        assert_eq!(r.generated_text(), "Think. Answer.More.  saidB");
    }

    #[test]
    fn tool_calls_count_as_generated_text() {
        let body = r#"{"choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant",
          "content":null,"tool_calls":[{"id":"call_1","type":"function",
          "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}}]}"#;
        let r: ChatCompletionResponse = serde_json::from_str(body).unwrap();
        assert_eq!(r.generated_text(), "get_weather{\"city\":\"Paris\"}");
        assert!(r.usage.is_none());
    }
}
