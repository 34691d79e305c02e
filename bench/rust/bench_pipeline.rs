//! Benchmark: the CPU of Tollgate's own work per request — everything the pure core does for one
//! chat completion (parse the request, count the prompt, price the reservation, build the upstream
//! request, parse the reply or decode and meter the stream, bill) — natively and in wasm under
//! Node. What it leaves out is the runtime's share (JS glue, fetch, D1 and KV calls), which only
//! the gateway benchmark (`scripts/bench.sh`) can see. Run it with `bash scripts/bench-pipeline.sh`
//! (release builds); it asserts nothing about time.
//!
//! Prints markdown table rows: microseconds per request, median of several rounds.

use tollgate::core::billing::tiers::PriceSheet;
use tollgate::core::billing::{reservation_micros_scaled, Price};
use tollgate::core::inbound::openai::StreamEncoder;
use tollgate::core::meter::{bill, tiered_usage, BillInput, RequestStatus, StreamMeter};
use tollgate::core::openai::ChatCompletionRequest;
use tollgate::core::providers::{ProviderKind, ResponseContext, Route};
use tollgate::core::tokens::{count_chat_prompt, Encoding};

const PROMPT_2K: &str = include_str!("../fixtures/prompt-2k.txt");

#[path = "support/clock.rs"]
mod clock;

use clock::{now_ms, print};

const WORDS: [&str; 20] = [
    "The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", " while",
    " the", " gateway", " meters", " every", " token", " it", " relays", " to", " the", " client.",
];

fn price() -> Price {
    Price {
        input: 150_000,
        cached_input: None,
        output: 600_000,
        reasoning: None,
    }
}

fn route() -> Route {
    Route {
        provider: "mock".into(),
        kind: ProviderKind::OpenAi,
        base_url: "http://127.0.0.1:9/v1".into(),
        api_key: Some("sk-bench".into()),
        upstream_model: "gpt-4o-mini".into(),
        max_output_tokens: Some(1000),
        config: serde_json::Value::Null,
    }
}

fn request_body(prompt: &str, stream: bool) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o-mini",
        "stream": stream,
        "stream_options": if stream { serde_json::json!({"include_usage": true}) } else { serde_json::Value::Null },
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": prompt}],
    }))
    .expect("json")
}

/// The mock upstream's plain reply (bench/mock-upstream.mjs).
fn plain_reply() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": "chatcmpl-benchmock", "object": "chat.completion", "created": 1_700_000_000u64,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": WORDS.concat(), "refusal": null},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 20, "total_tokens": 40},
    }))
    .expect("json")
}

/// The mock upstream's stream: role, 20 content chunks, finish, usage, `[DONE]`, one read each.
fn stream_reads() -> Vec<Vec<u8>> {
    let event = |choices: serde_json::Value, usage: Option<serde_json::Value>| {
        let mut v = serde_json::json!({"id": "chatcmpl-benchmock", "object": "chat.completion.chunk",
            "created": 1_700_000_000u64, "model": "gpt-4o-mini-2024-07-18", "choices": choices});
        if let Some(u) = usage {
            v["usage"] = u;
        }
        format!("data: {v}\n\n").into_bytes()
    };
    let mut reads = vec![event(
        serde_json::json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
        None,
    )];
    for w in WORDS {
        reads.push(event(
            serde_json::json!([{"index": 0, "delta": {"content": w}, "finish_reason": null}]),
            None,
        ));
    }
    reads.push(event(
        serde_json::json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        None,
    ));
    reads.push(event(
        serde_json::json!([]),
        Some(serde_json::json!({"prompt_tokens": 20, "completion_tokens": 20, "total_tokens": 40})),
    ));
    reads.push(b"data: [DONE]\n\n".to_vec());
    reads
}

/// One request's pure work; returns its cost so nothing is optimised away.
fn one_request(body: &[u8], reads: Option<&[Vec<u8>]>, reply: &[u8]) -> u64 {
    let chat = ChatCompletionRequest::from_json(body).expect("request");
    let enc = Encoding::O200kBase;
    let prompt_tokens = count_chat_prompt(enc, &chat);
    let price = price();
    let reserved = reservation_micros_scaled(prompt_tokens, 1000, &price, 10_000);
    let route = route();
    let adapter = route.kind.adapter();
    let up = adapter
        .build_request(&route, &chat)
        .expect("upstream request");
    std::hint::black_box(&up);
    let ctx = ResponseContext {
        id: "chatcmpl-req".into(),
        created: 1_700_000_000,
        model: "gpt-4o-mini".into(),
    };
    let (text, usage) = match reads {
        None => {
            let parsed = adapter.parse_response(reply, &ctx).expect("reply");
            (parsed.generated_text(), parsed.usage.clone())
        }
        Some(reads) => {
            let mut decoder = adapter.stream_decoder(&ctx);
            let mut meter = StreamMeter::new();
            let encoder = StreamEncoder::new(chat.wants_stream_usage());
            let mut out = Vec::new();
            for read in reads {
                for item in decoder.push(read) {
                    encoder.forward(&mut meter, item, &mut out);
                }
                std::hint::black_box(&out);
                out.clear();
            }
            (meter.text().to_string(), meter.upstream_usage().cloned())
        }
    };
    bill(&BillInput {
        status: RequestStatus::Ok,
        delivered_output: true,
        local_prompt_tokens: prompt_tokens,
        completion_text: &text,
        finish_reason: None,
        encoding: Some(enc),
        upstream_usage: usage.as_ref().map(tiered_usage),
        sheet: &PriceSheet::flat(price),
        multiplier_bps: 10_000,
        reserved,
    })
    .cost
}

/// Median microseconds per request over rounds of at least `round_ms`.
fn per_request_us(f: &dyn Fn() -> u64) -> f64 {
    f(); // warm-up
    let mut rounds = Vec::new();
    for _ in 0..7 {
        let start = now_ms();
        let mut n = 0u64;
        while now_ms() - start < 100.0 {
            std::hint::black_box(f());
            n += 1;
        }
        rounds.push((now_ms() - start) * 1000.0 / n as f64);
    }
    rounds.sort_by(|a, b| a.total_cmp(b));
    rounds[rounds.len() / 2]
}

/// A request to time: its name, body, and the stream reads of its reply (`None`: plain).
type Case<'a> = (&'a str, Vec<u8>, Option<&'a [Vec<u8>]>);

fn run(platform: &str) {
    print("| platform | request | Tollgate's own CPU per request |\n|---|---|---|");
    let reply = plain_reply();
    let reads = stream_reads();
    let small = "Say hello to the benchmark in one short sentence.";
    let cases: [Case; 4] = [
        ("plain, small prompt", request_body(small, false), None),
        (
            "plain, 2,000-token prompt",
            request_body(PROMPT_2K, false),
            None,
        ),
        (
            "stream (23 events), small prompt",
            request_body(small, true),
            Some(&reads),
        ),
        (
            "stream (23 events), 2,000-token prompt",
            request_body(PROMPT_2K, true),
            Some(&reads),
        ),
    ];
    for (name, body, reads) in cases {
        let us = per_request_us(&|| one_request(&body, reads, &reply));
        print(&format!("| {platform} | {name} | {us:.1} µs |"));
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
#[ignore = "benchmark: bash scripts/bench-pipeline.sh"]
fn pipeline_native() {
    run("native");
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test]
    fn pipeline_wasm() {
        super::run("wasm (Node)");
    }
}
