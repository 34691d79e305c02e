//! Streamed chat completion chunks (`object: "chat.completion.chunk"`).
//!
//! A stream that was asked for usage (`stream_options.include_usage`) ends with one extra chunk
//! whose `choices` is empty and whose `usage` is set.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::response::Usage;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    #[serde(default)]
    pub id: String,
    #[serde(default = "chunk_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// OpenAI sends `"usage": null` on every chunk but the last when usage was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn chunk_object() -> String {
    "chat.completion.chunk".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Delta,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    #[serde(default)]
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// Appends the generated text a delta or message carries in fields outside OpenAI's core set:
///
/// * `reasoning_content` (DeepSeek, and what Tollgate's adapters emit for Anthropic thinking,
///   Gemini thought parts and Ollama `thinking`);
/// * `reasoning` (OpenRouter, vLLM, Ollama's `/v1`), unless it repeats `reasoning_content`
///   (servers in transition send both with the same text);
/// * `audio.transcript` (audio output: the transcript of what was spoken).
///
/// Reasoning is output the provider bills: it counts for the stream guard, for "delivered
/// output" and for the local completion count like content does.
pub(crate) fn append_extra_output(extra: &Map<String, Value>, out: &mut String) {
    let reasoning_content = extra.get("reasoning_content").and_then(Value::as_str);
    if let Some(r) = reasoning_content {
        out.push_str(r);
    }
    if let Some(r) = extra.get("reasoning").and_then(Value::as_str) {
        if reasoning_content != Some(r) {
            out.push_str(r);
        }
    }
    if let Some(t) = extra
        .get("audio")
        .and_then(|a| a.get("transcript"))
        .and_then(Value::as_str)
    {
        out.push_str(t);
    }
}

impl ChatCompletionChunk {
    /// Appends the text this chunk generated: content, refusal, tool names and arguments, and
    /// reasoning and audio transcripts ([`append_extra_output`]).
    pub fn append_generated_text(&self, out: &mut String) {
        for choice in &self.choices {
            let d = &choice.delta;
            append_extra_output(&d.extra, out);
            if let Some(c) = &d.content {
                out.push_str(c);
            }
            if let Some(r) = &d.refusal {
                out.push_str(r);
            }
            for call in d.tool_calls.iter().flatten() {
                if let Some(f) = &call.function {
                    if let Some(n) = &f.name {
                        out.push_str(n);
                    }
                    if let Some(a) = &f.arguments {
                        out.push_str(a);
                    }
                }
            }
        }
    }

    /// The usage-only chunk that ends a stream asked for usage.
    pub fn is_usage_only(&self) -> bool {
        self.choices.is_empty() && self.usage.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_chunks() {
        let first = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",
          "system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":""},
          "logprobs":null,"finish_reason":null}],"usage":null}"#;
        let c: ChatCompletionChunk = serde_json::from_str(first).unwrap();
        assert!(c.usage.is_none() && !c.is_usage_only());
        let last = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",
          "choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
        let c: ChatCompletionChunk = serde_json::from_str(last).unwrap();
        assert!(c.is_usage_only());
        assert_eq!(c.usage.unwrap().completion_tokens, 7);
    }

    fn generated(json: &str) -> String {
        let c: ChatCompletionChunk = serde_json::from_str(json).unwrap();
        let mut s = String::new();
        c.append_generated_text(&mut s);
        s
    }

    #[test]
    fn reasoning_and_transcripts_are_generated_text() {
        // DeepSeek / Tollgate's adapters (Anthropic, Gemini, Ollama thinking).
        assert_eq!(
            generated(r#"{"choices":[{"index":0,"delta":{"reasoning_content":"Let me think"}}]}"#),
            "Let me think"
        );
        // OpenRouter / vLLM / Ollama /v1.
        assert_eq!(
            generated(r#"{"choices":[{"index":0,"delta":{"reasoning":"hmm","content":"ok"}}]}"#),
            "hmmok"
        );
        // Both fields with the same text count once; different texts both count.
        assert_eq!(
            generated(
                r#"{"choices":[{"index":0,"delta":{"reasoning_content":"ab","reasoning":"ab"}}]}"#
            ),
            "ab"
        );
        assert_eq!(
            generated(
                r#"{"choices":[{"index":0,"delta":{"reasoning_content":"ab","reasoning":"cd"}}]}"#
            ),
            "abcd"
        );
        // Audio output: the transcript.
        assert_eq!(
            generated(
                r#"{"choices":[{"index":0,"delta":{"audio":{"id":"a1","data":"UklGR","transcript":"Hello"}}}]}"#
            ),
            "Hello"
        );
        // Nulls and other shapes add nothing.
        assert_eq!(
            generated(
                r#"{"choices":[{"index":0,"delta":{"reasoning_content":null,"reasoning":{"x":1},"audio":null}}]}"#
            ),
            ""
        );
    }

    #[test]
    fn adapter_reasoning_chunks_are_generated_text() {
        // What mapping.rs emits for Anthropic thinking_delta, Gemini thought parts, Ollama thinking.
        let ctx = crate::core::providers::mapping::testing::ctx();
        let chunks = crate::core::providers::mapping::ChunkFactory::new(&ctx);
        let mut s = String::new();
        chunks.reasoning("step 1").append_generated_text(&mut s);
        assert_eq!(s, "step 1");
    }

    #[test]
    fn collects_text_and_tool_arguments() {
        let c: ChatCompletionChunk = serde_json::from_str(
            r#"{"choices":[{"index":0,"delta":{"content":"Hi"}},{"index":1,"delta":{"tool_calls":[
            {"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\""}}]}}]}"#,
        )
        .unwrap();
        let mut s = String::new();
        c.append_generated_text(&mut s);
        assert_eq!(s, "Hif{\"a\"");
    }
}
