//! The pure core compiled to wasm32 and run under Node with wasm-bindgen-test: the counts and
//! money arithmetic the worker relies on must be the same as natively.
#![cfg(target_arch = "wasm32")]

use tollgate::core::billing::{cost_micros, Price, TokenUsage};
use tollgate::core::openai::ChatCompletionRequest;
use tollgate::core::tokens::{count_chat_prompt, Encoding};
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
fn token_counts_in_wasm() {
    assert_eq!(Encoding::Cl100kBase.count("hello world"), 2);
    assert_eq!(Encoding::O200kBase.count("hello world"), 2);
    assert_eq!(Encoding::Cl100kBase.count("tiktoken is great!"), 6);
    let mixed = "Exact metering: 你好, мир! 🎉 fn main() { println!(\"hi\"); }\n\n\n    ";
    for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
        let (pieces, used) = enc.token_pieces(mixed, u64::MAX);
        assert_eq!(pieces.concat(), mixed);
        assert_eq!(used, enc.count(mixed));
    }
}

#[wasm_bindgen_test]
fn chat_prompt_in_wasm() {
    let req = ChatCompletionRequest::from_json(
        br#"{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},
            {"role":"user","name":"bob","content":"hello world"}]}"#,
    )
    .unwrap();
    // 2 × 3 framing + "system" 1 + "Be brief." 3 + "user" 1 + "hello world" 2 + name 1+1 + 3 priming
    assert_eq!(count_chat_prompt(Encoding::O200kBase, &req), 18);
}

#[wasm_bindgen_test]
fn cost_in_wasm() {
    let price = Price {
        input: 2_500_000,
        cached_input: Some(1_250_000),
        output: 10_000_000,
        reasoning: None,
    };
    let usage = TokenUsage {
        prompt_tokens: 1_000,
        cached_prompt_tokens: 200,
        completion_tokens: 333,
        reasoning_tokens: 0,
    };
    // 800×2.5 + 200×1.25 + 333×10 = 2000 + 250 + 3330 = 5580 micro-units
    assert_eq!(cost_micros(&usage, &price), 5_580);
}
