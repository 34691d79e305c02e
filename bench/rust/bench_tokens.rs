//! Benchmark: Tollgate's token counter against tiktoken-rs, side by side, natively and in wasm
//! under Node. Run it with `bash scripts/bench-tokens.sh` (release builds); it asserts nothing
//! about time. Natively it is an ignored test; in wasm a wasm-bindgen test that only
//! `scripts/bench-tokens.sh` runs (`scripts/test.sh` runs `--test wasm` only).
//!
//! Prints markdown table rows: cold ready time (first count in the process, tables or encoder
//! built), and throughput in tokens per second on ~2,000-token prompts and a ~1 MB text (the
//! corpus repeated), and on a natural Chinese text that does not repeat when the script found
//! one. Both counters run in alternating rounds, so that a busy moment of the machine hits both;
//! the figures are the medians of the rounds, the ratio the median of the per-round ratios.

use tiktoken_rs::CoreBPE;
use tollgate::core::tokens::{Encoding, StreamTokenCounter};

const ENGLISH: &str = include_str!("../../tests/corpus/english.txt");
const CODE: &str = include_str!("../../tests/corpus/code.txt");
const CHINESE: &str = include_str!("../../tests/corpus/chinese.txt");

#[path = "support/clock.rs"]
mod clock;

use clock::{now_ms, print, read_env_file};

/// `TOLLGATE_BENCH_OPEN_ONLY` names a readable file (any, e.g. `/dev/null`): only the open
/// families' rows (`scripts/bench-tokens.sh --open`).
fn open_only() -> bool {
    read_env_file("TOLLGATE_BENCH_OPEN_ONLY").is_some()
}

fn reference(enc: Encoding) -> &'static CoreBPE {
    match enc {
        Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
        Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        other => panic!("no tiktoken-rs reference for {other:?}"),
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

/// Rounds of a side-by-side measurement.
const ROUNDS: usize = 9;

/// Tokens per second of `count` on `text`, run for at least `min_ms` (one call at least).
fn throughput(text: &str, min_ms: f64, count: &dyn Fn(&str) -> u64) -> (f64, u64) {
    let start = now_ms();
    let mut runs = 0u64;
    let mut tokens;
    let mut elapsed;
    loop {
        tokens = std::hint::black_box(count(std::hint::black_box(text)));
        runs += 1;
        elapsed = now_ms() - start;
        if elapsed >= min_ms {
            break;
        }
    }
    (tokens as f64 * runs as f64 / (elapsed / 1000.0), tokens)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Both counters on `text`, in [`ROUNDS`] alternating rounds of `min_ms / ROUNDS` each (after a
/// warm-up call), so that both see the same machine: the median throughput of each, the median
/// of the per-round ratios, and the count (which must be the same).
fn side_by_side(
    text: &str,
    min_ms: f64,
    ours: &dyn Fn(&str) -> u64,
    theirs: &dyn Fn(&str) -> u64,
) -> (f64, f64, f64, u64) {
    let (n, m) = (ours(text), theirs(text));
    assert_eq!(n, m, "counts differ");
    let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (x, _) = throughput(text, min_ms / ROUNDS as f64, ours);
        let (y, _) = throughput(text, min_ms / ROUNDS as f64, theirs);
        a.push(x);
        b.push(y);
        ratios.push(x / y);
    }
    (median(a), median(b), median(ratios), n)
}

/// One table row: both counters side by side on `input`.
fn row(platform: &str, desc: &str, input: &str, min_ms: f64, enc: Encoding) {
    let (ours, theirs, ratio, n) = side_by_side(input, min_ms, &|t| enc.count(t), &|t| {
        reference(enc).encode_ordinary(t).len() as u64
    });
    print(&format!(
        "| {platform} | {desc} ({n} tokens, {} KB) | {} | {:.2} M tok/s | {:.2} M tok/s | {ratio:.1}× |",
        input.len() / 1024,
        enc.name(),
        ours / 1e6,
        theirs / 1e6,
    ));
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
                let desc = format!("{name}, {size}");
                row(platform, &desc, &input, min_ms, enc);
            }
        }
        // Natural text that does not repeat (caches see what real text gives them), when
        // scripts/bench-tokens.sh found one (Rust by Example in Chinese, from the local rust-docs).
        if let Some(text) = read_env_file("TOLLGATE_BENCH_NATURAL_ZH") {
            let desc = "Chinese, natural text, not repeated (Rust by Example zh)";
            row(platform, desc, &text, 1_000.0, enc);
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
    let in_deltas = |_: &str| {
        let mut counter = StreamTokenCounter::new(enc);
        for d in &deltas {
            counter.push(d);
        }
        counter.total()
    };
    in_deltas(&input); // warm-up, as for the side-by-side rows
    let (stream, n) = throughput(&input, 300.0, &in_deltas);
    print(&format!(
        "| {platform} | StreamTokenCounter, English 2k tokens in 4-byte deltas ({n} tokens) | o200k_base | {:.2} M tok/s | — | — |",
        stream / 1e6
    ));
}

/// The open families (no Rust reference to race: their counts are checked against Hugging Face
/// `tokenizers` by tests/tokens_open.rs): cold (the first count in the process, which builds the
/// family's lookup tables) and throughput.
fn run_open(platform: &str) {
    print("| platform | measure | encoding | Tollgate | yardstick: tiktoken-rs o200k_base, same text | ratio |\n|---|---|---|---|---|---|");
    let open = [
        Encoding::Llama3,
        Encoding::Qwen3,
        Encoding::DeepseekV3,
        Encoding::Tekken,
        Encoding::Gemma3,
    ];
    for enc in open {
        let t0 = now_ms();
        let n = enc.count("hello world");
        let ms = now_ms() - t0;
        assert!(n > 0);
        print(&format!(
            "| {platform} | cold: tables built + first count | {} | {ms:.1} ms | — | — |",
            enc.name()
        ));
    }
    // `TOLLGATE_BENCH_NATURAL_ONLY` names a readable file (any): only the natural-text rows, for
    // a quick measurement of the Chinese target on a busy machine.
    let natural_only = read_env_file("TOLLGATE_BENCH_NATURAL_ONLY").is_some();
    for enc in open {
        let mut inputs: Vec<(String, String, f64)> = Vec::new();
        let corpora: &[(&str, &str)] = if natural_only {
            &[]
        } else {
            &[("English", ENGLISH), ("code", CODE), ("Chinese", CHINESE)]
        };
        for &(name, text) in corpora {
            for (size, tokens, min_ms) in [
                ("2k-token prompt", 2_000u64, 300.0),
                ("large text", 250_000, 600.0),
            ] {
                inputs.push((format!("{name}, {size}"), sized(text, tokens, enc), min_ms));
            }
        }
        if let Some(text) = read_env_file("TOLLGATE_BENCH_NATURAL_ZH") {
            let desc = "Chinese, natural text, not repeated (Rust by Example zh)";
            inputs.push((desc.to_string(), text, 1_000.0));
        }
        for (desc, input, min_ms) in inputs {
            // A yardstick that a busy machine slows alike: tiktoken-rs's o200k_base on the same
            // text, in alternating rounds; the ratio is what compares across runs.
            let yardstick =
                |t: &str| reference(Encoding::O200kBase).encode_ordinary(t).len() as u64;
            enc.count(&input); // warm-up
            yardstick(&input);
            let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let (x, _) = throughput(&input, min_ms / ROUNDS as f64, &|t| enc.count(t));
                let (y, _) = throughput(&input, min_ms / ROUNDS as f64, &yardstick);
                ours.push(x);
                theirs.push(y);
                ratios.push(x / y);
            }
            print(&format!(
                "| {platform} | {desc} ({} tokens, {} KB) | {} | {:.2} M tok/s | {:.2} M tok/s | {:.1}× |",
                enc.count(&input),
                input.len() / 1024,
                enc.name(),
                median(ours) / 1e6,
                median(theirs) / 1e6,
                median(ratios)
            ));
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
#[ignore = "benchmark: run by scripts/bench-tokens.sh"]
fn bench_native() {
    if !open_only() {
        run("native");
    }
    run_open("native");
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test::wasm_bindgen_test]
fn bench_wasm() {
    if !open_only() {
        run("wasm (Node)");
    }
    run_open("wasm (Node)");
}
