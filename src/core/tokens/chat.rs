//! The prompt tokens of a chat request: the text of each message plus OpenAI's framing, and the
//! tool (function) definitions the way OpenAI renders them into the prompt.
//!
//! The formulas are those of OpenAI's cookbook "How to count tokens with tiktoken"
//! (`num_tokens_from_messages`, `num_tokens_for_tools`), which it checks against the API's
//! `usage.prompt_tokens`:
//!
//! - each message: `tokens_per_message` + the tokens of its role, content and name, plus
//!   `tokens_per_name` when it has a name; every reply is primed with 3 more tokens;
//! - each function: `func_init` + tokens of `"{name}:{description}"` (one trailing `.` dropped);
//!   when it has properties, `prop_init` once, and per property `prop_key` + tokens of
//!   `"{key}:{type}:{description}"`, plus for an `enum`: `enum_init` + per item `enum_item` + its
//!   tokens; and `func_end` once after all functions.
//!
//! Beyond the cookbook (estimates, as OpenAI publishes no formula): an assistant message's tool
//! calls count their function name and arguments plus [`TOKENS_PER_TOOL_CALL`], a tool message
//! its `tool_call_id`; tools other than functions count their JSON text. Image and audio parts
//! are not counted locally (the provider's usage bills them).

use serde_json::Value;

use super::Encoding;
use crate::core::openai::{ChatCompletionRequest, MessageContent};

/// How one model family frames a chat prompt, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatFraming {
    /// Added for every message (`<|start|>{role}<|message|>…<|end|>`).
    pub tokens_per_message: i64,
    /// Added for a message with a `name` (negative for gpt-3.5-turbo-0301: the name replaces
    /// the role).
    pub tokens_per_name: i64,
    /// Added once: every reply is primed with `<|start|>assistant<|message|>`.
    pub reply_priming: i64,
    /// Added per function definition.
    pub func_init: i64,
    /// Added once per function that has properties.
    pub prop_init: i64,
    /// Added per property.
    pub prop_key: i64,
    /// Added per property with an `enum`.
    pub enum_init: i64,
    /// Added per `enum` item.
    pub enum_item: i64,
    /// Added once after all function definitions.
    pub func_end: i64,
}

/// The framing of current OpenAI chat models on `o200k_base` (gpt-4o, gpt-4o-mini and later).
const O200K_FRAMING: ChatFraming = ChatFraming {
    tokens_per_message: 3,
    tokens_per_name: 1,
    reply_priming: 3,
    func_init: 7,
    prop_init: 3,
    prop_key: 3,
    enum_init: -3,
    enum_item: 3,
    func_end: 12,
};

/// The framing of gpt-4 and gpt-3.5-turbo on `cl100k_base`.
const CL100K_FRAMING: ChatFraming = ChatFraming {
    func_init: 10,
    ..O200K_FRAMING
};

/// Model-name prefixes whose framing differs from their encoding's default.
/// Keep in sync with OpenAI's cookbook "How to count tokens with tiktoken"
/// (examples/How_to_count_tokens_with_tiktoken.ipynb: num_tokens_from_messages,
/// num_tokens_for_tools; gpt-3.5-turbo-0301 from its earlier revisions).
const MODEL_FRAMING: &[(&str, ChatFraming)] = &[(
    "gpt-3.5-turbo-0301",
    ChatFraming {
        tokens_per_message: 4,
        tokens_per_name: -1,
        ..CL100K_FRAMING
    },
)];

/// Tokens added per tool call of an assistant message (an estimate, see the module docs).
pub const TOKENS_PER_TOOL_CALL: i64 = 3;

impl ChatFraming {
    /// The framing of `model` (provider prefixes such as `openai/` ignored) counted with `enc`.
    pub fn for_model(model: &str, enc: Encoding) -> Self {
        let name = model.rsplit('/').next().unwrap_or(model);
        MODEL_FRAMING
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix))
            .map(|&(_, framing)| framing)
            .unwrap_or(match enc {
                Encoding::Cl100kBase => CL100K_FRAMING,
                // The open families frame with their chat template (`open_chat`), not this.
                _ => O200K_FRAMING,
            })
    }
}

/// Prompt tokens of a chat request: messages, their framing and the tool definitions, with the
/// framing of the request's model family.
pub fn count_chat_prompt(enc: Encoding, req: &ChatCompletionRequest) -> u64 {
    if let Some(count) = super::open_chat::count_chat_prompt(enc, req) {
        return count;
    }
    count_chat_prompt_with(ChatFraming::for_model(&req.model, enc), enc, req)
}

/// [`count_chat_prompt`] with an explicit framing.
pub fn count_chat_prompt_with(
    framing: ChatFraming,
    enc: Encoding,
    req: &ChatCompletionRequest,
) -> u64 {
    let count = |text: &str| enc.count(text) as i64;
    let mut total = framing.reply_priming;
    for m in &req.messages {
        total += framing.tokens_per_message + count(m.role.as_str());
        match &m.content {
            None => {}
            Some(MessageContent::Text(t)) => total += count(t),
            Some(MessageContent::Parts(parts)) => {
                for text in parts.iter().filter_map(|p| p.text.as_deref()) {
                    total += count(text);
                }
            }
        }
        if let Some(name) = &m.name {
            total += count(name) + framing.tokens_per_name;
        }
        for call in m.tool_calls.iter().flatten() {
            total +=
                TOKENS_PER_TOOL_CALL + count(&call.function.name) + count(&call.function.arguments);
        }
        if let Some(id) = &m.tool_call_id {
            total += count(id);
        }
    }

    let mut functions = 0usize;
    for tool in req.tools.iter().flatten() {
        match &tool.function {
            Some(f) if tool.kind == "function" => {
                functions += 1;
                total += count_function(
                    framing,
                    enc,
                    &f.name,
                    f.description.as_deref(),
                    f.parameters.as_ref(),
                );
            }
            _ => total += serde_json::to_string(tool).map_or(0, |json| count(&json)),
        }
    }
    // The legacy `functions` parameter is rendered like function tools.
    if let Some(Value::Array(legacy)) = req.extra.get("functions") {
        for f in legacy {
            if let Some(name) = f.get("name").and_then(Value::as_str) {
                functions += 1;
                total += count_function(
                    framing,
                    enc,
                    name,
                    f.get("description").and_then(Value::as_str),
                    f.get("parameters"),
                );
            }
        }
    }
    if functions > 0 {
        total += framing.func_end;
    }
    u64::try_from(total.max(0)).unwrap_or(0)
}

/// One function definition, without `func_end`.
fn count_function(
    framing: ChatFraming,
    enc: Encoding,
    name: &str,
    description: Option<&str>,
    parameters: Option<&Value>,
) -> i64 {
    let count = |text: &str| enc.count(text) as i64;
    let description = description.unwrap_or("");
    let mut total = framing.func_init
        + count(&format!(
            "{name}:{}",
            description.strip_suffix('.').unwrap_or(description)
        ));
    let properties = parameters
        .and_then(|p| p.get("properties"))
        .and_then(Value::as_object);
    if let Some(properties) = properties.filter(|p| !p.is_empty()) {
        total += framing.prop_init;
        for (key, property) in properties {
            total += framing.prop_key;
            if let Some(items) = property.get("enum").and_then(Value::as_array) {
                total += framing.enum_init;
                for item in items {
                    total += framing.enum_item + count(&scalar_text(item));
                }
            }
            let kind = property.get("type").map(scalar_text).unwrap_or_default();
            let desc = property
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            let desc = desc.strip_suffix('.').unwrap_or(desc);
            total += count(&format!("{key}:{kind}:{desc}"));
        }
    }
    total
}

/// A JSON value as it appears in the rendered definition: strings bare, anything else as JSON.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> ChatCompletionRequest {
        ChatCompletionRequest::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn message_framing_follows_the_cookbook() {
        let req =
            request(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello world"}]}"#);
        // 3 (message) + 1 ("user") + 2 ("hello world") + 3 (priming)
        assert_eq!(count_chat_prompt(Encoding::O200kBase, &req), 9);
        let named = request(
            r#"{"model":"gpt-4o","messages":[{"role":"user","name":"bob","content":"hello world"}]}"#,
        );
        assert_eq!(count_chat_prompt(Encoding::O200kBase, &named), 9 + 1 + 1);
        // gpt-3.5-turbo-0301: 4 per message, the name replaces the role (-1).
        let old = request(
            r#"{"model":"gpt-3.5-turbo-0301","messages":[{"role":"user","name":"bob","content":"hello world"}]}"#,
        );
        assert_eq!(
            count_chat_prompt(Encoding::Cl100kBase, &old),
            4 + 1 + 2 + 1 - 1 + 3
        );
    }

    /// The cookbook's own examples, whose totals it verified against the OpenAI API.
    const COOKBOOK_MESSAGES: &str = r#"[
        {"role":"system","content":"You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
        {"role":"system","name":"example_user","content":"New synergies will help drive top-line growth."},
        {"role":"system","name":"example_assistant","content":"Things working well together will increase revenue."},
        {"role":"system","name":"example_user","content":"Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
        {"role":"system","name":"example_assistant","content":"Let's talk later when we're less busy about how to do better."},
        {"role":"user","content":"This late pivot means we don't have time to boil the ocean for the client deliverable."}]"#;

    #[test]
    fn cookbook_message_example_matches_the_api() {
        let body = |model: &str| format!(r#"{{"model":"{model}","messages":{COOKBOOK_MESSAGES}}}"#);
        assert_eq!(
            count_chat_prompt(Encoding::Cl100kBase, &request(&body("gpt-4"))),
            129
        );
        assert_eq!(
            count_chat_prompt(Encoding::Cl100kBase, &request(&body("gpt-3.5-turbo"))),
            129
        );
        assert_eq!(
            count_chat_prompt(Encoding::O200kBase, &request(&body("gpt-4o"))),
            124
        );
        assert_eq!(
            count_chat_prompt(Encoding::O200kBase, &request(&body("gpt-4o-mini"))),
            124
        );
    }

    const COOKBOOK_TOOLS: &str = r#"[{"type":"function","function":{
        "name":"get_current_weather","description":"Get the current weather in a given location",
        "parameters":{"type":"object","properties":{
            "location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"},
            "unit":{"type":"string","description":"The unit of temperature to return","enum":["celsius","fahrenheit"]}},
        "required":["location"]}}}]"#;

    #[test]
    fn cookbook_tools_example_matches_the_api() {
        let body = |model: &str| {
            format!(
                r#"{{"model":"{model}","tools":{COOKBOOK_TOOLS},"messages":[
                {{"role":"system","content":"You are a helpful assistant that can answer to questions about the weather."}},
                {{"role":"user","content":"What's the weather like in San Francisco?"}}]}}"#
            )
        };
        assert_eq!(
            count_chat_prompt(Encoding::Cl100kBase, &request(&body("gpt-4"))),
            105
        );
        assert_eq!(
            count_chat_prompt(Encoding::Cl100kBase, &request(&body("gpt-3.5-turbo"))),
            105
        );
        assert_eq!(
            count_chat_prompt(Encoding::O200kBase, &request(&body("gpt-4o"))),
            101
        );
        assert_eq!(
            count_chat_prompt(Encoding::O200kBase, &request(&body("gpt-4o-mini"))),
            101
        );
    }

    #[test]
    fn legacy_functions_count_like_tools() {
        let tools = request(&format!(
            r#"{{"model":"gpt-4o","tools":{COOKBOOK_TOOLS},"messages":[{{"role":"user","content":"hi"}}]}}"#
        ));
        let functions: Value = serde_json::from_str(COOKBOOK_TOOLS).unwrap();
        let legacy = request(&format!(
            r#"{{"model":"gpt-4o","functions":[{}],"messages":[{{"role":"user","content":"hi"}}]}}"#,
            functions[0]["function"]
        ));
        assert_eq!(
            count_chat_prompt(Encoding::O200kBase, &tools),
            count_chat_prompt(Encoding::O200kBase, &legacy)
        );
    }

    #[test]
    fn tool_calls_and_other_tools_are_counted() {
        let plain =
            request(r#"{"model":"gpt-4o","messages":[{"role":"assistant","content":null}]}"#);
        let with_call = request(
            r#"{"model":"gpt-4o","messages":[{"role":"assistant","content":null,"tool_calls":[
            {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}]}"#,
        );
        let enc = Encoding::O200kBase;
        assert_eq!(
            count_chat_prompt(enc, &with_call) - count_chat_prompt(enc, &plain),
            3 + enc.count("get_weather") + enc.count("{\"city\":\"Paris\"}")
        );
        let custom = request(
            r#"{"model":"gpt-4o","tools":[{"type":"web_search"}],"messages":[{"role":"assistant","content":null}]}"#,
        );
        assert_eq!(
            count_chat_prompt(enc, &custom) - count_chat_prompt(enc, &plain),
            enc.count(r#"{"type":"web_search"}"#)
        );
    }
}
