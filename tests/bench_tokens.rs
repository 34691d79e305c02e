//! Benchmark: Tollgate's token counter against tiktoken-rs, side by side, natively and in wasm
//! under Node. Run it with `bash scripts/bench-tokens.sh` (release builds); it asserts nothing
//! about time. Natively it is an ignored test; in wasm a wasm-bindgen test that only
//! `scripts/bench-tokens.sh` runs (`scripts/test.sh` runs `--test wasm` only).
//!
//! Prints markdown table rows: cold ready time (first count in the process, tables or encoder
//! built), and throughput in tokens per second on ~2,000-token prompts and a ~1 MB text.

use tiktoken_rs::CoreBPE;
use tollgate::core::tokens::{Encoding, StreamTokenCounter};

const ENGLISH: &str = include_str!("corpus/english.txt");
const CODE: &str = include_str!("corpus/code.txt");
const CHINESE: &str = include_str!("corpus/chinese.txt");

#[path = "support/clock.rs"]
mod clock;

use clock::{now_ms, print};

fn reference(enc: Encoding) -> &'static CoreBPE {
    match enc {
        Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
        Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
    }
}

/// The text repeated until it has at least `tokens` tokens.
fn sized(text: &str, tokens: u64, enc: Encoding) -> String {
    let per = enc.count(text).max(1);
    let mut out = text.repeat(tokens.div_ceil(per) as usize);
    // Trim whole lines down to about the target.
    while enc.count(&out) > tokens + tokens / 50 {
        match out.trim_end_matches('\n').rfind('\n') {
            Some(cut) if cut > 0 => out.truncate(cut + 1),
            _ => break,
        }
    }
    out
}

/// Tokens per second of `count` on `text`, run for at least `min_ms`.
fn throughput(text: &str, min_ms: f64, count: &dyn Fn(&str) -> u64) -> (f64, u64) {
    let tokens = count(text); // warm-up, and the count to report
    let start = now_ms();
    let mut runs = 0u64;
    let mut elapsed;
    loop {
        std::hint::black_box(count(std::hint::black_box(text)));
        runs += 1;
        elapsed = now_ms() - start;
        if elapsed >= min_ms {
            break;
        }
    }
    (tokens as f64 * runs as f64 / (elapsed / 1000.0), tokens)
}

fn run(platform: &str) {
    print("| platform | measure | encoding | Tollgate | tiktoken-rs | ratio |\n|---|---|---|---|---|---|");
    // Cold: the first count in this process, for each encoding and each implementation.
    for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
        let t0 = now_ms();
        let ours = enc.count("hello world");
        let ours_ms = now_ms() - t0;
        let t1 = now_ms();
        let theirs = reference(enc).encode_ordinary("hello world").len() as u64;
        let theirs_ms = now_ms() - t1;
        assert_eq!(ours, theirs);
        print(&format!(
            "| {platform} | cold ready + first count | {} | {ours_ms:.3} ms | {theirs_ms:.1} ms | {:.0}× |",
            enc.name(),
            theirs_ms / ours_ms.max(0.001)
        ));
    }
    for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
        for (name, text) in [("English", ENGLISH), ("code", CODE), ("Chinese", CHINESE)] {
            for (size, tokens, min_ms) in [
                ("2k-token prompt", 2_000u64, 300.0),
                ("large text", 250_000, 600.0),
            ] {
                let input = sized(text, tokens, enc);
                let (ours, n) = throughput(&input, min_ms, &|t| enc.count(t));
                let (theirs, m) = throughput(&input, min_ms, &|t| {
                    reference(enc).encode_ordinary(t).len() as u64
                });
                assert_eq!(n, m, "{name}: counts differ");
                print(&format!(
                    "| {platform} | {name}, {size} ({n} tokens, {} KB) | {} | {:.2} M tok/s | {:.2} M tok/s | {:.1}× |",
                    input.len() / 1024,
                    enc.name(),
                    ours / 1e6,
                    theirs / 1e6,
                    ours / theirs
                ));
            }
        }
    }
    // The stream counter on the English prompt in 4-byte deltas vs counting the whole once.
    let enc = Encoding::O200kBase;
    let input = sized(ENGLISH, 2_000, enc);
    let deltas: Vec<&str> = {
        let mut v = Vec::new();
        let mut rest = input.as_str();
        while !rest.is_empty() {
            let mut cut = 4.min(rest.len());
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            v.push(&rest[..cut]);
            rest = &rest[cut..];
        }
        v
    };
    let (stream, n) = throughput(&input, 300.0, &|_| {
        let mut counter = StreamTokenCounter::new(enc);
        for d in &deltas {
            counter.push(d);
        }
        counter.total()
    });
    print(&format!(
        "| {platform} | StreamTokenCounter, English 2k tokens in 4-byte deltas ({n} tokens) | o200k_base | {:.2} M tok/s | — | — |",
        stream / 1e6
    ));
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
#[ignore = "benchmark: run by scripts/bench-tokens.sh"]
fn bench_native() {
    run("native");
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test::wasm_bindgen_test]
fn bench_wasm() {
    run("wasm (Node)");
}
