//! The pure core compiled to wasm32 and run under Node with wasm-bindgen-test: the counts and
//! money arithmetic the worker relies on must be the same as natively.
#![cfg(target_arch = "wasm32")]

use tollgate::core::billing::{cost_micros, Price, TokenUsage};
use tollgate::core::openai::ChatCompletionRequest;
use tollgate::core::tokens::{count_chat_prompt, Encoding, StreamTokenCounter};
use wasm_bindgen_test::wasm_bindgen_test;

const CORPUS: &[&str] = &[
    include_str!("corpus/english.txt"),
    include_str!("corpus/code.txt"),
    include_str!("corpus/chinese.txt"),
    include_str!("corpus/mixed.txt"),
];

/// The same counts as tiktoken-rs, the reference, compiled to wasm too: corpora line by line and
/// whole, long runs, and a seeded fuzz.
#[wasm_bindgen_test]
fn counts_equal_tiktoken_rs_in_wasm() {
    for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
        let reference = match enc {
            Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
            other => panic!("no tiktoken-rs reference for {other:?}"),
        };
        let expect = |text: &str| reference.encode_ordinary(text).len() as u64;
        for text in CORPUS {
            assert_eq!(enc.count(text), expect(text), "{enc:?}");
            for line in text.split_inclusive('\n') {
                assert_eq!(enc.count(line), expect(line), "{enc:?} {line:?}");
            }
        }
        for long in [
            " ".repeat(3000),
            "\n \n".repeat(500),
            "ab".repeat(2000),
            "中文".repeat(1000),
        ] {
            assert_eq!(enc.count(&long), expect(&long), "{enc:?} long run");
        }
        let alphabet: Vec<char> = " \n\r\taAsStT'ǅʰ中\u{301}17٣.!/🎉\u{200d}ſé"
            .chars()
            .collect();
        let mut seed = 0x1234_5678_9ABC_DEF1u64;
        for _ in 0..500 {
            let mut text = String::new();
            for _ in 0..16 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            assert_eq!(enc.count(&text), expect(&text), "{enc:?} {text:?}");
        }
    }
}

#[wasm_bindgen_test]
fn stream_counter_in_wasm() {
    for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
        for text in CORPUS {
            let mut counter = StreamTokenCounter::new(enc);
            let chars: Vec<char> = text.chars().collect();
            for chunk in chars.chunks(3) {
                counter.push(&chunk.iter().collect::<String>());
            }
            assert_eq!(counter.total(), enc.count(text));
        }
    }
}

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

/// The open families in wasm: the corpora's counts by Hugging Face `tokenizers` 0.23.3 (Tekken:
/// tiktoken on tekken.json), as tests/python_reference_open.py writes them, and a chat prompt.
#[wasm_bindgen_test]
fn open_families_count_like_their_references_in_wasm() {
    // english, code, chinese, mixed (the order of CORPUS).
    let expected: [(Encoding, [u64; 4]); 5] = [
        (Encoding::Llama3, [489, 534, 487, 635]),
        (Encoding::Qwen3, [503, 544, 455, 636]),
        (Encoding::DeepseekV3, [500, 565, 414, 642]),
        (Encoding::Gemma3, [535, 644, 390, 652]),
        (Encoding::Tekken, [512, 578, 521, 794]),
    ];
    for (enc, counts) in expected {
        for (text, want) in CORPUS.iter().zip(counts) {
            assert_eq!(enc.count(text), want, "{enc:?}");
        }
        let mut counter = StreamTokenCounter::new(enc);
        let chars: Vec<char> = CORPUS[3].chars().collect();
        for chunk in chars.chunks(7) {
            counter.push(&chunk.iter().collect::<String>());
        }
        assert_eq!(counter.total(), counts[3], "{enc:?} streamed");
    }
    let req = ChatCompletionRequest::from_json(
        br#"{"model":"qwen3","messages":[{"role":"user","content":"Hello!"}]}"#,
    )
    .unwrap();
    // <|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n (the template, jinja2-rendered)
    assert_eq!(count_chat_prompt(Encoding::Qwen3, &req), 10);
}

/// The entry's conversion of the incoming request does not read its `cf` object (a getter that
/// throws stands for the runtime's costly one), and keeps the method, URL and headers.
#[wasm_bindgen_test]
fn the_incoming_request_is_converted_without_reading_cf() {
    use worker::js_sys::{Function, Object, Reflect};
    use worker::wasm_bindgen::JsValue;
    let init = worker::web_sys::RequestInit::new();
    init.set_method("POST");
    let headers = worker::web_sys::Headers::new().unwrap();
    headers.set("authorization", "Bearer k").unwrap();
    init.set_headers(&headers);
    let raw = worker::web_sys::Request::new_with_str_and_init(
        "https://gw.example/v1/chat/completions?x=1",
        &init,
    )
    .unwrap();
    let getter = Object::new();
    Reflect::set(
        &getter,
        &"get".into(),
        &Function::new_no_args("throw new Error('cf was read')"),
    )
    .unwrap();
    Reflect::set(&getter, &"configurable".into(), &JsValue::TRUE).unwrap();
    Reflect::define_property(&raw, &"cf".into(), &getter).unwrap();
    let req = tollgate::edge::platform::incoming::request(raw);
    assert!(req.cf().is_none());
    assert_eq!(req.method(), worker::Method::Post);
    assert_eq!(req.path(), "/v1/chat/completions");
    assert_eq!(
        req.headers().get("authorization").unwrap().as_deref(),
        Some("Bearer k")
    );
}
