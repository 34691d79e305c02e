//! The open families' counts (Llama 3, Qwen 3, DeepSeek V3, Gemma 3, Tekken) against their
//! references: Hugging Face `tokenizers` on the family's tokenizer.json, tiktoken on tekken.json,
//! and the family's chat template rendered with jinja2 (`tests/python_reference_open.py`).
//! Natively.
#![cfg(not(target_arch = "wasm32"))]

use tollgate::core::openai::ChatCompletionRequest;
use tollgate::core::tokens::{count_chat_prompt, Encoding, StreamTokenCounter};

const OPEN: [Encoding; 5] = [
    Encoding::Llama3,
    Encoding::Qwen3,
    Encoding::DeepseekV3,
    Encoding::Tekken,
    Encoding::Gemma3,
];

/// Counts from the Python references. Run with
/// `TOLLGATE_PY_OPEN_COUNTS=<file> cargo test --test tokens_open -- --ignored python`.
#[test]
#[ignore = "needs Python tokenizers: run tests/python_reference_open.py first"]
fn python_references_agree() {
    let path = std::env::var("TOLLGATE_PY_OPEN_COUNTS").expect("set TOLLGATE_PY_OPEN_COUNTS");
    let lines = std::fs::read_to_string(path).expect("read the counts");
    let (mut checked, mut chats) = (0, 0);
    let mut failures = Vec::new();
    for line in lines.lines() {
        let row: serde_json::Value = serde_json::from_str(line).expect("a JSON row");
        let name = row["encoding"].as_str().expect("an encoding");
        let enc = Encoding::from_name(name).expect("a known encoding");
        let want = row["count"].as_u64().expect("a count");
        let (got, what) = if let Some(text) = row["text"].as_str() {
            (enc.count(text), format!("{text:?}"))
        } else {
            let mut chat = row["chat"].clone();
            chat["model"] = serde_json::Value::from("any");
            let req: ChatCompletionRequest = serde_json::from_value(chat).expect("a chat request");
            chats += 1;
            (
                count_chat_prompt(enc, &req),
                format!("chat {}", row["chat"]),
            )
        };
        if got != want {
            failures.push(format!("{name}: {got} tokens, reference {want}: {what}"));
        }
        checked += 1;
    }
    let shown: Vec<&str> = failures
        .iter()
        .take(25)
        .map(|s| &s[..s.len().min(400)])
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {checked} counts differ:\n{}",
        failures.len(),
        shown.join("\n")
    );
    assert!(
        checked > 10_000 && chats >= 20,
        "only {checked} rows, {chats} chats"
    );
    println!("python_references_agree: {checked} counts equal ({chats} chat prompts)");
}

/// Known counts of Hugging Face `tokenizers` 0.23.3 for these strings (tokenizer.json of each
/// family; Tekken: tiktoken on tekken.json), so that a broken table fails without Python too.
#[test]
fn known_counts() {
    let cases: &[(Encoding, &str, u64)] = &[
        (Encoding::Llama3, "Hello, world!", 4),
        (Encoding::Qwen3, "Hello, world!", 4),
        (Encoding::DeepseekV3, "Hello, world!", 4),
        (Encoding::Tekken, "Hello, world!", 4),
        (Encoding::Gemma3, "Hello, world!", 4),
        (Encoding::Qwen3, "12345", 5),
        (Encoding::Llama3, "12345", 2),
        (Encoding::Qwen3, "<|im_start|>user", 2),
        (Encoding::Llama3, "你好，世界", 4),
        (Encoding::Gemma3, "你好，世界", 3),
        (Encoding::DeepseekV3, "2024年1月", 5),
        (Encoding::Gemma3, "  two  spaces\n\n\n", 5),
    ];
    let mut wrong = Vec::new();
    for &(enc, text, want) in cases {
        let got = enc.count(text);
        if got != want {
            wrong.push(format!("{enc:?} {text:?}: {got}, want {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn streamed_text_counts_like_the_whole() {
    let text = "Hello world! I don't know... \n\n   DON'T   stop 12345 你好世界 🎉\r\n\tend  ";
    for enc in OPEN {
        let whole = enc.count(text);
        let mut counter = StreamTokenCounter::new(enc);
        for c in text.chars() {
            counter.push(&c.to_string());
            counter.settle();
        }
        assert_eq!(counter.total(), whole, "{enc:?}");
    }
}

#[test]
fn token_pieces_rejoin_to_the_text() {
    let text = "Echo: 你好, world! 🎉 tokens <|im_start|>";
    for enc in OPEN {
        let (pieces, used) = enc.token_pieces(text, u64::MAX);
        assert_eq!(pieces.concat(), text, "{enc:?}");
        assert_eq!(used, enc.count(text), "{enc:?}");
    }
}

/// Tekken's chat framing against mistral-common 1.13.1's `encode_chat_completion` on
/// tekken_240911.json (InstructTokenizerV3), recorded here: mistral-common is not in the test
/// command's venv (its dependencies are heavy).
#[test]
fn tekken_framing_matches_mistral_common() {
    let cases = [
        (r#"[{"role":"user","content":"Hello!"}]"#, 5),
        (
            r#"[{"role":"system","content":"Be brief."},{"role":"user","content":"  Hi  "}]"#,
            9,
        ),
        (
            r#"[{"role":"system","content":"Answer in Chinese."},
                {"role":"user","content":"你好，今天天气怎么样？"},
                {"role":"assistant","content":"今天天气很好。"},
                {"role":"user","content":"明天呢？\n"}]"#,
            26,
        ),
    ];
    for (messages, want) in cases {
        let req: ChatCompletionRequest = serde_json::from_str(&format!(
            r#"{{"model":"mistral-nemo","messages":{messages}}}"#
        ))
        .expect("a request");
        assert_eq!(
            count_chat_prompt(Encoding::Tekken, &req),
            want,
            "{messages}"
        );
    }
}
