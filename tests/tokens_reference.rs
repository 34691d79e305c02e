//! Tollgate's token counts against the reference, tiktoken-rs, for o200k_base and cl100k_base:
//! corpora of several scripts, code, emoji, whitespace and newline runs, numbers, contractions,
//! every Unicode class boundary in several contexts, and seeded random fuzz. Natively.
#![cfg(not(target_arch = "wasm32"))]

use regex_syntax::hir::{Class, HirKind};
use tiktoken_rs::CoreBPE;
use tollgate::core::tokens::{Encoding, StreamTokenCounter};

const CORPUS: &[(&str, &str)] = &[
    ("english", include_str!("corpus/english.txt")),
    ("code", include_str!("corpus/code.txt")),
    ("chinese", include_str!("corpus/chinese.txt")),
    ("mixed", include_str!("corpus/mixed.txt")),
];

fn reference(enc: Encoding) -> &'static CoreBPE {
    match enc {
        Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
        Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        other => panic!("no tiktoken-rs reference for {other:?}"),
    }
}

const BOTH: [Encoding; 2] = [Encoding::O200kBase, Encoding::Cl100kBase];

/// Asserts equal counts, and on a mismatch names the smallest failing line of `text`.
fn check(enc: Encoding, text: &str, what: &str) {
    let expected = reference(enc).encode_ordinary(text).len() as u64;
    let got = enc.count(text);
    if got != expected {
        let line = text
            .split_inclusive('\n')
            .find(|l| enc.count(l) != reference(enc).encode_ordinary(l).len() as u64);
        panic!(
            "{enc:?} {what}: {got} tokens, tiktoken-rs {expected}; first differing line: {line:?}"
        );
    }
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn corpora_count_like_tiktoken() {
    for enc in BOTH {
        for (name, text) in CORPUS {
            check(enc, text, name);
            for line in text.lines() {
                check(enc, line, name);
            }
        }
        let all: String = CORPUS.iter().map(|(_, t)| *t).collect();
        check(enc, &all.repeat(3), "all corpora");
    }
}

#[test]
fn edge_cases_count_like_tiktoken() {
    let cases = [
        "",
        " ",
        "  ",
        "\n",
        "\r\n",
        "\r",
        " \n",
        "\n ",
        "a ",
        "a  ",
        " a",
        "  a",
        "a\n\n  b",
        "\t\tx",
        "x\t\t",
        "'s",
        "'",
        "''",
        "'S'T'RE",
        "x'",
        "x'r",
        "x're",
        "X'RE",
        "don'",
        " DON'T",
        "ǅ'll",
        "e\u{301}'s",
        "\u{301}",
        "\u{301}a",
        "!\u{301}a",
        " \u{301}A",
        "A\u{301}",
        "1",
        "1234567",
        " 1",
        "a1b2c3",
        "...",
        " ...",
        " ...\n\n",
        "a/b//c\n/",
        "x/\r\n/",
        "<|endoftext|>",
        "🎉",
        " 🎉",
        "👨‍👩‍👧‍👦",
        "\u{a0}\u{a0}a",
        "\u{3000}\n",
        "\u{85}x",
        "\u{2028}\u{2029}",
    ];
    for enc in BOTH {
        for case in cases {
            check(enc, case, "edge case");
        }
        // Long runs: whitespace, newlines, punctuation, one long word (the heap merge).
        for (unit, n) in [
            (" ", 5000),
            ("\n", 3000),
            ("\r\n", 1000),
            (" \n", 999),
            ("=", 4000),
        ] {
            check(enc, &unit.repeat(n), "long run");
            check(
                enc,
                &format!("x{}y", unit.repeat(n)),
                "long run between words",
            );
        }
        check(enc, &"ab".repeat(3000), "long word");
        check(enc, &"中文".repeat(2000), "long CJK run");
        check(enc, &"0123456789".repeat(500), "long number");
    }
}

/// Every code point where one of the pre-tokenizer's classes starts or ends, with its
/// neighbours, in contexts that exercise each rule.
#[test]
fn every_class_boundary_counts_like_tiktoken() {
    let mut boundaries = std::collections::BTreeSet::new();
    for pattern in [
        r"\p{L}",
        r"\p{N}",
        r"\s",
        r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]",
        r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]",
    ] {
        let hir = regex_syntax::Parser::new().parse(pattern).unwrap();
        let HirKind::Class(Class::Unicode(class)) = hir.kind() else {
            panic!("{pattern}")
        };
        for r in class.ranges() {
            boundaries.insert(u32::from(r.start()));
            boundaries.insert(u32::from(r.end()) + 1);
        }
    }
    let chars: Vec<char> = boundaries
        .iter()
        .flat_map(|&b| [b.wrapping_sub(1), b])
        .filter_map(char::from_u32)
        .collect();
    let contexts = [
        "{}", " {}", "a{}", "A{}b", "{}{}x", "'{}", "x'{}", "{}'s", "1{}", "{} {}", "!{}", "{}\n",
        " {}a",
    ];
    for enc in BOTH {
        // Batches keep the reference calls few; a failing batch is narrowed down by `check`.
        for batch in chars.chunks(64) {
            let mut text = String::new();
            for &c in batch {
                for ctx in contexts {
                    text.push_str(&ctx.replace("{}", &c.to_string()));
                }
                text.push('\n');
            }
            check(enc, &text, "class boundaries");
        }
    }
}

/// Random strings from an alphabet of every kind of character the rules distinguish, plus
/// random scalars from the whole Unicode range.
#[test]
fn fuzzed_strings_count_like_tiktoken() {
    const ALPHABET: &[&str] = &[
        " ", " ", " ", "\n", "\r", "\t", "\u{a0}", "\u{3000}", "a", "e", "s", "t", "l", "r", "v",
        "d", "m", "S", "T", "L", "E", "A", "ǅ", "ʰ", "中", "ア", "\u{301}", "1", "7", "٣", "½",
        "'", "'", ".", ",", "!", "/", "-", "_", "\"", "🎉", "\u{200d}", "👍", "🏽", "ſ", "K", "é",
    ];
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    for enc in BOTH {
        for _ in 0..3000 {
            let len = 1 + rng.below(24);
            let mut text = String::new();
            for _ in 0..len {
                if rng.below(10) == 0 {
                    let c = loop {
                        if let Some(c) = char::from_u32((rng.next() % 0x11_0000) as u32) {
                            break c;
                        }
                    };
                    text.push(c);
                } else {
                    text.push_str(ALPHABET[rng.below(ALPHABET.len())]);
                }
            }
            check(enc, &text, "fuzz");
        }
    }
}

/// Runs of multi-byte letters (the pieces the byte-pair merge spends most time on, and the keys
/// that go through the three-byte character table and the miss filter): common and rare CJK
/// ideographs, kana, Hangul, any three-byte character, Cyrillic and Greek, with now and then a
/// space, punctuation or an emoji, long enough for both merge strategies.
#[test]
fn fuzzed_letter_runs_count_like_tiktoken() {
    const COMMON: &[&str] = &[
        "的", "一", "是", "不", "了", "人", "我", "在", "有", "他", "这", "中", "大", "来", "上",
        "国", "个", "到", "说", "们", "为", "子", "和", "你", "地", "出", "道", "也", "时", "年",
        "，", "。", "、", "の", "に", "は", "を", "た", "が", "ー", "한", "국", "어", "이", "다",
        "д", "а", "н", "ы", "е", "α", "λ", "ό", " ", "\n", "🎉", "1",
    ];
    let ranges: &[(u32, u32)] = &[
        (0x4E00, 0x9FFF), // CJK unified ideographs
        (0x3040, 0x30FF), // kana
        (0xAC00, 0xD7A3), // Hangul syllables
        (0x0800, 0xFFFF), // any three-byte character
        (0x0400, 0x04FF), // Cyrillic
        (0x3400, 0x4DBF), // CJK extension A (rare)
    ];
    let mut rng = Rng(0xC7C7_2026_0B0B_0003);
    for enc in BOTH {
        for _ in 0..3000 {
            let len = 1 + rng.below(64);
            let (lo, hi) = ranges[rng.below(ranges.len())];
            let mut text = String::new();
            for _ in 0..len {
                if rng.below(3) == 0 {
                    let cp = lo + (rng.next() % u64::from(hi - lo + 1)) as u32;
                    if let Some(c) = char::from_u32(cp) {
                        text.push(c);
                    }
                } else {
                    text.push_str(COMMON[rng.below(COMMON.len())]);
                }
            }
            check(enc, &text, "letter runs");
        }
    }
}

/// Streaming: any split of a text into deltas counts exactly like the whole text.
#[test]
fn stream_counter_is_exact_for_any_split() {
    let mut rng = Rng(0xDE17A5);
    for enc in BOTH {
        for (name, text) in CORPUS {
            let expected = reference(enc).encode_ordinary(text).len() as u64;
            for _ in 0..20 {
                let mut counter = StreamTokenCounter::new(enc);
                let mut rest: &str = text;
                while !rest.is_empty() {
                    let mut cut = (1 + rng.below(12)).min(rest.len());
                    while !rest.is_char_boundary(cut) {
                        cut += 1;
                    }
                    counter.push(&rest[..cut]);
                    rest = &rest[cut..];
                }
                assert_eq!(counter.total(), expected, "{enc:?} {name}");
            }
        }
    }
}

/// The claim the stream counter rests on: appending text never changes any pre-tokenizer piece
/// but the last two. Checked exhaustively on every string of up to five characters over an
/// alphabet with one character of each kind, split at every point, one character at a time.
#[test]
fn only_the_last_two_pieces_change_when_text_is_appended() {
    const ALPHABET: &[char] = &[
        ' ', '\n', '\r', 'a', 'A', '\'', 's', 'l', 'e', '1', '.', '/', '\u{301}',
    ];
    for enc in BOTH {
        let mut stack: Vec<String> = vec![String::new()];
        while let Some(text) = stack.pop() {
            if text.chars().count() < 5 {
                for &c in ALPHABET {
                    let mut longer = text.clone();
                    longer.push(c);
                    stack.push(longer);
                }
            }
            // Counting through a stream that settles at every character must agree.
            let mut counter = StreamTokenCounter::new(enc);
            for c in text.chars() {
                counter.push(c.encode_utf8(&mut [0; 4]));
                counter.settle();
            }
            assert_eq!(counter.total(), enc.count(&text), "{enc:?} {text:?}");
        }
    }
}

#[test]
fn token_pieces_match_the_reference_tokens() {
    for enc in BOTH {
        for (_, text) in CORPUS {
            let (pieces, used) = enc.token_pieces(text, u64::MAX);
            assert_eq!(pieces.concat(), *text);
            let tokens = reference(enc).encode_ordinary(text);
            assert_eq!(used, tokens.len() as u64);
            // Each printable piece is whole reference tokens.
            let mut reference_pieces = Vec::new();
            let mut pending = Vec::new();
            for t in tokens {
                pending.extend(reference(enc).decode_bytes(&[t]).unwrap());
                if let Ok(s) = std::str::from_utf8(&pending) {
                    reference_pieces.push(s.to_string());
                    pending.clear();
                }
            }
            assert_eq!(pieces, reference_pieces);
        }
    }
}

/// Counts from OpenAI's Python tiktoken (`tests/python_reference.py`, run offline on
/// tiktoken-rs's asset files): an independent reference. Run with
/// `TOLLGATE_PY_COUNTS=<file> cargo test --test tokens_reference -- --ignored python`.
#[test]
#[ignore = "needs Python tiktoken: run tests/python_reference.py first"]
fn python_tiktoken_agrees() {
    let path = std::env::var("TOLLGATE_PY_COUNTS").expect("set TOLLGATE_PY_COUNTS");
    let lines = std::fs::read_to_string(path).expect("read the counts");
    let mut checked = 0;
    for line in lines.lines() {
        let row: serde_json::Value = serde_json::from_str(line).expect("a JSON row");
        let enc = Encoding::from_name(row["encoding"].as_str().unwrap()).unwrap();
        let text = row["text"].as_str().unwrap();
        assert_eq!(
            enc.count(text),
            row["count"].as_u64().unwrap(),
            "{enc:?} {text:?}"
        );
        checked += 1;
    }
    assert!(checked > 1000, "only {checked} rows");
    println!("python_tiktoken_agrees: {checked} counts equal");
}
