//! The open families' chat framing against Ollama's own templates: for each family that
//! Ollama's repository has a template for, the prompt Ollama renders (its `template_test.go`
//! output, `tests/fixtures/ollama_templates/`) counted with the family's tokenizer, plus the BOS
//! token that llama.cpp adds when the family's GGUF sets `add_bos_token`, is what Ollama reports
//! as `prompt_eval_count`; Tollgate's count of the same messages (`count_chat_prompt`) must equal
//! it. Differences that remain by design are in docs/tokens.md ("Ollama's templates").

use tollgate::core::openai::ChatCompletionRequest;
use tollgate::core::tokens::{count_chat_prompt, Encoding};

/// The three conversations of Ollama's `template/template_test.go`.
fn conversation(case: &str) -> Vec<(&'static str, &'static str)> {
    let system = ("system", "You are a helpful assistant.");
    let user = ("user", "Hello, how are you?");
    let assistant = ("assistant", "I'm doing great. How can I help you today?");
    let again = ("user", "I'd like to show off how chat templating works!");
    match case {
        "user" => vec![user],
        "user-assistant-user" => vec![user, assistant, again],
        "system-user-assistant-user" => vec![system, user, assistant, again],
        other => panic!("no conversation {other}"),
    }
}

fn request(messages: &[(&str, &str)]) -> ChatCompletionRequest {
    let messages: Vec<_> = messages
        .iter()
        .map(|(role, content)| serde_json::json!({"role": role, "content": content}))
        .collect();
    serde_json::from_value(serde_json::json!({"model": "any", "messages": messages}))
        .expect("a chat request")
}

fn fixture(template: &str, case: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/ollama_templates/{template}/{case}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn chat_prompts_count_like_ollamas_templates() {
    // (Ollama template, family, BOS text llama.cpp adds for the family's GGUF)
    let families = [
        ("llama3-instruct", Encoding::Llama3, "<|begin_of_text|>"),
        ("gemma3-instruct", Encoding::Gemma3, "<bos>"),
        ("chatml", Encoding::Qwen3, ""),
    ];
    let mut checked = 0;
    for (template, enc, bos) in families {
        for case in ["user", "user-assistant-user", "system-user-assistant-user"] {
            let rendered = fixture(template, case);
            let ollama = enc.count(&format!("{bos}{rendered}"));
            let ours = count_chat_prompt(enc, &request(&conversation(case)));
            assert_eq!(ours, ollama, "{template} / {case}: {rendered:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 9);
}

/// The fixtures are what the templates render: a guard that they were not edited by hand (each
/// case's messages appear in order, framed by the template's markers).
#[test]
fn fixtures_hold_the_conversations() {
    for (template, marker) in [
        ("llama3-instruct", "<|start_header_id|>"),
        ("gemma3-instruct", "<start_of_turn>"),
        ("chatml", "<|im_start|>"),
    ] {
        let text = fixture(template, "template.gotmpl");
        assert!(text.contains(marker), "{template}");
        for case in ["user", "user-assistant-user", "system-user-assistant-user"] {
            let rendered = fixture(template, case);
            let mut at = 0;
            for (_, content) in conversation(case) {
                let found = rendered[at..].find(content).map(|i| at + i);
                at = found.unwrap_or_else(|| panic!("{template}/{case}: {content}")) + 1;
            }
        }
    }
}
