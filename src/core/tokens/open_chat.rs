//! The prompt of a chat request as the open families' servers see it: the family's chat
//! template rendered to text (special tokens as their text, each counted as one token by the
//! family's added tokens), then counted. This is what vLLM reports as `usage.prompt_tokens` and
//! Ollama as `prompt_eval_count` for the same messages with the same template.
//!
//! Each renderer follows, statement by statement, the `chat_template` of the tokenizer_config.json
//! that the family's vocabulary comes from (keep in sync with it; `src/core/tokens/LICENSES.md`
//! names the files), with the generation prompt on:
//! - Llama 3: `<|begin_of_text|>`, per message `<|start_header_id|>{role}<|end_header_id|>\n\n`,
//!   the trimmed content, `<|eot_id|>`; no default system prompt; tools are not rendered (the
//!   Llama 3 template has none; Llama 3.1+ templates add a dated system header, not counted);
//! - Qwen 3: ChatML (`<|im_start|>{role}\n…<|im_end|>\n`), the `# Tools` system block with each
//!   tool as JSON, tool calls as `<tool_call>` JSON, tool results grouped into one user turn,
//!   `<think>` blocks of earlier turns dropped and the last turn's kept;
//! - DeepSeek V3: `<｜begin▁of▁sentence｜>`, the system prompts joined, `<｜User｜>…`,
//!   `<｜Assistant｜>…<｜end▁of▁sentence｜>`, tool calls and outputs in its markers;
//! - Gemma 3: `<bos>`, the system prompt prefixed to the first user turn,
//!   `<start_of_turn>{user|model}\n` + trimmed content + `<end_of_turn>\n`;
//! - Tekken: mistral-common's instruct format: `<s>`, `[INST]…[/INST]` per user turn (the system
//!   prompt before the last user message, then two newlines), assistant content + `</s>`; its
//!   control tokens are one token each.
//!
//! A message's text is its string content or its text parts joined; image and audio parts are
//! not counted (the provider's usage bills them). A `developer` message is rendered as `system`.

use serde_json::Value;

use super::Encoding;
use crate::core::openai::{ChatCompletionRequest, ChatMessage, Role, Tool};

/// The prompt tokens of `req` as the family's chat template renders it (generation prompt on);
/// `None` for OpenAI's encodings, which [`super::chat`] frames.
pub fn count_chat_prompt(enc: Encoding, req: &ChatCompletionRequest) -> Option<u64> {
    let rendered = match enc {
        Encoding::O200kBase | Encoding::Cl100kBase => return None,
        Encoding::Llama3 => llama3(req),
        Encoding::Qwen3 => qwen3(req),
        Encoding::DeepseekV3 => deepseek_v3(req),
        Encoding::Gemma3 => gemma3(req),
        Encoding::Tekken => return Some(tekken(req)),
    };
    Some(enc.count(&rendered))
}

/// The role a template sees.
fn role(m: &ChatMessage) -> &'static str {
    match m.role {
        Role::Developer => "system",
        other => other.as_str(),
    }
}

/// Python's `str.strip()` (Jinja's `trim`): Unicode whitespace and the separators U+001C–U+001F.
fn py_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

fn llama3(req: &ChatCompletionRequest) -> String {
    let mut out = String::new();
    for (i, m) in req.messages.iter().enumerate() {
        if i == 0 {
            out.push_str("<|begin_of_text|>");
        }
        out.push_str("<|start_header_id|>");
        out.push_str(role(m));
        out.push_str("<|end_header_id|>\n\n");
        out.push_str(py_trim(&m.text_content()));
        out.push_str("<|eot_id|>");
    }
    out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
    out
}

/// Python's `json.dumps(value, ensure_ascii=False)`: `", "` and `": "` separators, keys in the
/// order serde keeps them.
fn py_json(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push_str(": ");
                py_json(item, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn tool_json(tool: &Tool) -> String {
    let mut out = String::new();
    match serde_json::to_value(tool) {
        Ok(value) => py_json(&value, &mut out),
        Err(_) => out.push_str("{}"),
    }
    out
}

fn qwen3(req: &ChatCompletionRequest) -> String {
    let messages = &req.messages;
    let first_is_system = messages.first().is_some_and(|m| role(m) == "system");
    let mut out = String::new();
    match req.tools.as_deref().filter(|t| !t.is_empty()) {
        Some(tools) => {
            out.push_str("<|im_start|>system\n");
            if let Some(first) = messages.first().filter(|_| first_is_system) {
                out.push_str(&first.text_content());
                out.push_str("\n\n");
            }
            out.push_str(
                "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
                 You are provided with function signatures within <tools></tools> XML tags:\n<tools>",
            );
            for tool in tools {
                out.push('\n');
                out.push_str(&tool_json(tool));
            }
            out.push_str(
                "\n</tools>\n\nFor each function call, return a json object with function name and \
                 arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": \
                 <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n",
            );
        }
        None => {
            if let Some(first) = messages.first().filter(|_| first_is_system) {
                out.push_str("<|im_start|>system\n");
                out.push_str(&first.text_content());
                out.push_str("<|im_end|>\n");
            }
        }
    }
    // The last user message that is not a tool response.
    let last_query = messages
        .iter()
        .rposition(|m| {
            let text = m.text_content();
            role(m) == "user"
                && !(text.starts_with("<tool_response>") && text.ends_with("</tool_response>"))
        })
        .unwrap_or(messages.len().saturating_sub(1));
    for (i, m) in messages.iter().enumerate() {
        let text = m.text_content();
        match role(m) {
            "user" => chatml(&mut out, "user", &text),
            "system" if i > 0 => chatml(&mut out, "system", &text),
            "assistant" => {
                let explicit = m
                    .extra
                    .get("reasoning_content")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let (content, reasoning) = match (explicit, text.find("</think>")) {
                    (Some(r), _) => (text.as_str(), r),
                    (None, Some(_)) => {
                        let after = text.rsplit("</think>").next().unwrap_or("");
                        let before = text.split("</think>").next().unwrap_or("");
                        let before = before.trim_end_matches('\n');
                        let thought = before.rsplit("<think>").next().unwrap_or("");
                        (
                            after.trim_start_matches('\n'),
                            thought.trim_start_matches('\n').to_string(),
                        )
                    }
                    (None, None) => (text.as_str(), String::new()),
                };
                out.push_str("<|im_start|>assistant\n");
                let last = i + 1 == messages.len();
                if i > last_query && (last || !reasoning.is_empty()) {
                    out.push_str("<think>\n");
                    out.push_str(reasoning.trim_matches('\n'));
                    out.push_str("\n</think>\n\n");
                    out.push_str(content.trim_start_matches('\n'));
                } else {
                    out.push_str(content);
                }
                for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                    if j > 0 || !content.is_empty() {
                        out.push('\n');
                    }
                    out.push_str("<tool_call>\n{\"name\": \"");
                    out.push_str(&call.function.name);
                    out.push_str("\", \"arguments\": ");
                    out.push_str(&call.function.arguments);
                    out.push_str("}\n</tool_call>");
                }
                out.push_str("<|im_end|>\n");
            }
            "tool" => {
                let prev_is_tool = i > 0 && role(&messages[i - 1]) == "tool";
                let next_is_tool = messages.get(i + 1).is_some_and(|n| role(n) == "tool");
                if !prev_is_tool {
                    out.push_str("<|im_start|>user");
                }
                out.push_str("\n<tool_response>\n");
                out.push_str(&text);
                out.push_str("\n</tool_response>");
                if !next_is_tool {
                    out.push_str("<|im_end|>\n");
                }
            }
            _ => {}
        }
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

fn chatml(out: &mut String, role: &str, text: &str) {
    out.push_str("<|im_start|>");
    out.push_str(role);
    out.push('\n');
    out.push_str(text);
    out.push_str("<|im_end|>\n");
}

fn deepseek_v3(req: &ChatCompletionRequest) -> String {
    let systems: Vec<String> = req
        .messages
        .iter()
        .filter(|m| role(m) == "system")
        .map(ChatMessage::text_content)
        .collect();
    let mut out = String::from("<｜begin▁of▁sentence｜>");
    out.push_str(&systems.join("\n\n"));
    let (mut is_first, mut is_tool, mut is_output_first) = (false, false, true);
    for m in &req.messages {
        let text = m.text_content();
        match role(m) {
            "user" => {
                is_tool = false;
                out.push_str("<｜User｜>");
                out.push_str(&text);
            }
            "assistant" if m.content.is_none() => {
                is_tool = false;
                for call in m.tool_calls.iter().flatten() {
                    let body = format!(
                        "{}<｜tool▁sep｜>{}\n```json\n{}\n```<｜tool▁call▁end｜>",
                        call.kind, call.function.name, call.function.arguments
                    );
                    if !is_first {
                        out.push_str("<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>");
                        out.push_str(&body);
                        is_first = true;
                    } else {
                        out.push_str("\n<｜tool▁call▁begin｜>");
                        out.push_str(&body);
                        out.push_str("<｜tool▁calls▁end｜><｜end▁of▁sentence｜>");
                    }
                }
            }
            "assistant" => {
                out.push_str(if is_tool {
                    "<｜tool▁outputs▁end｜>"
                } else {
                    "<｜Assistant｜>"
                });
                is_tool = false;
                out.push_str(&text);
                out.push_str("<｜end▁of▁sentence｜>");
            }
            "tool" => {
                is_tool = true;
                if is_output_first {
                    out.push_str("<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>");
                    is_output_first = false;
                } else {
                    out.push_str("\n<｜tool▁output▁begin｜>");
                }
                out.push_str(&text);
                out.push_str("<｜tool▁output▁end｜>");
            }
            _ => {}
        }
    }
    out.push_str(if is_tool {
        "<｜tool▁outputs▁end｜>"
    } else {
        "<｜Assistant｜>"
    });
    out
}

/// The text of a Gemma turn: the string trimmed, or each text part trimmed.
fn gemma_text(m: &ChatMessage) -> String {
    match &m.content {
        Some(crate::core::openai::MessageContent::Parts(parts)) => parts
            .iter()
            .filter_map(|p| p.text.as_deref())
            .map(py_trim)
            .collect(),
        _ => py_trim(&m.text_content()).to_string(),
    }
}

fn gemma3(req: &ChatCompletionRequest) -> String {
    let mut out = String::from("<bos>");
    let (prefix, turns) = match req.messages.split_first() {
        Some((first, rest)) if role(first) == "system" => {
            let text = match &first.content {
                Some(crate::core::openai::MessageContent::Parts(parts)) => parts
                    .first()
                    .and_then(|p| p.text.clone())
                    .unwrap_or_default(),
                _ => first.text_content(),
            };
            (text + "\n\n", rest)
        }
        _ => (String::new(), &req.messages[..]),
    };
    for (i, m) in turns.iter().enumerate() {
        out.push_str("<start_of_turn>");
        out.push_str(match role(m) {
            "assistant" => "model",
            other => other,
        });
        out.push('\n');
        if i == 0 {
            out.push_str(&prefix);
        }
        out.push_str(&gemma_text(m));
        out.push_str("<end_of_turn>\n");
    }
    out.push_str("<start_of_turn>model\n");
    out
}

/// mistral-common's instruct request in the Tekken tokenizer: control tokens (`<s>`, `[INST]`,
/// `[/INST]`, `</s>`) count one each, the texts with the Tekken vocabulary (in which control
/// tokens' text is ordinary text).
fn tekken(req: &ChatCompletionRequest) -> u64 {
    let enc = Encoding::Tekken;
    let system: Vec<String> = req
        .messages
        .iter()
        .filter(|m| role(m) == "system")
        .map(ChatMessage::text_content)
        .collect();
    let last_user = req.messages.iter().rposition(|m| role(m) == "user");
    let mut total = 1; // <s>
    for (i, m) in req.messages.iter().enumerate() {
        let text = m.text_content();
        match role(m) {
            "user" => {
                total += 2; // [INST] [/INST]
                if Some(i) == last_user && !system.is_empty() {
                    total += enc.count(&format!("{}\n\n{}", system.join("\n\n"), text));
                } else {
                    total += enc.count(&text);
                }
            }
            "assistant" => total += enc.count(&text) + 1, // </s>
            _ => {}
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> ChatCompletionRequest {
        serde_json::from_str(json).expect("a request")
    }

    #[test]
    fn templates_render_like_their_jinja() {
        let req = request(
            r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},
            {"role":"user","content":"  Hi  "}]}"#,
        );
        assert_eq!(
            llama3(&req),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        assert_eq!(
            qwen3(&req),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n  Hi  <|im_end|>\n\
             <|im_start|>assistant\n"
        );
        assert_eq!(
            deepseek_v3(&req),
            "<｜begin▁of▁sentence｜>Be brief.<｜User｜>  Hi  <｜Assistant｜>"
        );
        assert_eq!(
            gemma3(&req),
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(
            tekken(&req),
            3 + Encoding::Tekken.count("Be brief.\n\n  Hi  ")
        );
        assert_eq!(count_chat_prompt(Encoding::O200kBase, &req), None);
    }

    #[test]
    fn qwen_keeps_only_the_last_turns_thinking() {
        let req = request(
            r#"{"model":"m","messages":[{"role":"user","content":"a"},
            {"role":"assistant","content":"<think>\nhmm\n</think>\n\nb"},
            {"role":"user","content":"c"}]}"#,
        );
        assert_eq!(
            qwen3(&req),
            "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n\
             <|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
