//! Seeded fuzzing of the pure core along the chat endpoint's path (issue 11): request bodies through
//! `ChatCompletionRequest::from_json`, prompt counting, reservation arithmetic and every adapter's
//! `build_request`; upstream stream bytes of every provider kind, split at random byte boundaries
//! and mutated, through each adapter's `stream_decoder`, the `StreamMeter` and the output guard;
//! plain and error bodies through `parse_response` and `map_error`.
//!
//! Deterministic: one seeded generator (SplitMix64, below), a bounded number of cases. The seed is
//! printed; `TOLLGATE_FUZZ_SEED=<n>` replays or explores another seed and `TOLLGATE_FUZZ_SCALE=<k>`
//! multiplies the number of cases. Every call runs under `catch_unwind`; a failure names the seed,
//! the case and its input.
//!
//! What must hold for every input:
//! - nothing panics;
//! - every error is a `GatewayError` with a 4xx/5xx status whose body is OpenAI-shaped, and a
//!   refused request body is a 400;
//! - a request's reservation covers the cost of any usage within its bounds;
//! - a stream decodes to the same items however its bytes are split (valid and mutated streams),
//!   and the meter's text of a valid stream split anywhere equals the unsplit run's;
//! - every event the meter sends the client is `[DONE]`, an OpenAI-shaped error or a JSON object
//!   with a `choices` array, and nothing follows `[DONE]` or an error event.

use std::cell::{Cell, RefCell};
use std::panic::{self, catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use serde_json::{json, Map, Value};
use tollgate::core::billing::guard::{OutputDecision, OutputGuard};
use tollgate::core::billing::tiers::PriceSheet;
use tollgate::core::billing::{
    cost_micros_scaled, reservation_micros_scaled, Price, TokenUsage, MAX_MULTIPLIER_BPS,
};
use tollgate::core::error::GatewayError;
use tollgate::core::inbound::openai::{error_body, StreamEncoder};
use tollgate::core::meter::{bill, tiered_usage, BillInput, RequestStatus, StreamMeter};
use tollgate::core::openai::ChatCompletionRequest;
use tollgate::core::providers::echo;
use tollgate::core::providers::LocalReply as EchoReply;
use tollgate::core::providers::{ProviderKind, ResponseContext, Route, StreamItem};
use tollgate::core::routing::auto_tier;
use tollgate::core::sse::SseParser;
use tollgate::core::tokens::{count_chat_prompt, Encoding};

// ---- the generator -------------------------------------------------------------------------------

/// SplitMix64: tiny, fast, and good enough to drive a fuzzer reproducibly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `pct`%.
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// An independent generator for one case, so that each case replays on its own.
    fn fork(&mut self) -> Rng {
        Rng(self.next())
    }
}

const DEFAULT_SEED: u64 = 0x7011_6a7e_f022_2026;

fn seed() -> u64 {
    match std::env::var("TOLLGATE_FUZZ_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("TOLLGATE_FUZZ_SEED={s} is not a number"))
        }
        Err(_) => DEFAULT_SEED,
    }
}

fn scale() -> usize {
    std::env::var("TOLLGATE_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1usize)
        .max(1)
}

// ---- findings --------------------------------------------------------------------------------------

/// Collects failures instead of stopping at the first, so one run shows every kind of problem.
struct Findings {
    seed: u64,
    list: RefCell<Vec<String>>,
}

impl Findings {
    fn new(seed: u64) -> Self {
        Findings {
            seed,
            list: RefCell::new(Vec::new()),
        }
    }

    fn add(&self, what: String) {
        self.list.borrow_mut().push(what);
    }

    /// Runs `f`; a panic becomes a finding that names `case` and `input`.
    fn guard<T>(&self, case: &str, input: &dyn Fn() -> String, f: impl FnOnce() -> T) -> Option<T> {
        QUIET.with(|q| q.set(true));
        let result = catch_unwind(AssertUnwindSafe(f));
        QUIET.with(|q| q.set(false));
        match result {
            Ok(v) => Some(v),
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(non-string panic)".into());
                let at = WHERE.with(|w| w.borrow().clone());
                self.add(format!(
                    "PANIC in {case} at {at}: {msg}\n    input: {}",
                    input()
                ));
                None
            }
        }
    }

    /// An error a client could see: a 4xx/5xx with an OpenAI-shaped body.
    fn check_error(&self, case: &str, input: &dyn Fn() -> String, e: &GatewayError) {
        let status = e.status();
        if !(400..=599).contains(&status) {
            self.add(format!(
                "{case}: status {status} for {e}\n    input: {}",
                input()
            ));
        }
        if let Err(why) = openai_error_shape(&error_body(e)) {
            self.add(format!(
                "{case}: error body not OpenAI-shaped ({why}): {}\n    input: {}",
                error_body(e),
                input()
            ));
        }
    }

    fn finish(self, what: &str, cases: usize) {
        let list = self.list.into_inner();
        println!(
            "{what}: {cases} cases, seed {:#x} (TOLLGATE_FUZZ_SEED to replay), {} findings",
            self.seed,
            list.len()
        );
        if !list.is_empty() {
            let shown: Vec<&String> = list.iter().take(25).collect();
            panic!(
                "{what}: {} findings with seed {:#x} (first {}):\n{}",
                list.len(),
                self.seed,
                shown.len(),
                shown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

/// `{"error":{"message":string,"type":string,"param":string|null,"code":string|null}}`.
fn openai_error_shape(json: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let err = v
        .get("error")
        .and_then(Value::as_object)
        .ok_or("no `error` object")?;
    if !err.get("message").is_some_and(Value::is_string) {
        return Err("`message` is not a string".into());
    }
    if !err.get("type").is_some_and(Value::is_string) {
        return Err("`type` is not a string".into());
    }
    for field in ["param", "code"] {
        match err.get(field) {
            Some(Value::String(_)) | Some(Value::Null) => {}
            _ => return Err(format!("`{field}` is missing or not a string/null")),
        }
    }
    Ok(())
}

/// Input bytes for a failure message: the text, shortened, with invalid UTF-8 escaped.
fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text: String = text.chars().take(600).collect();
    let more = if bytes.len() > 600 {
        format!(" … ({} bytes)", bytes.len())
    } else {
        String::new()
    };
    format!("{text:?}{more}")
}

thread_local! {
    /// Set while [`Findings::guard`] runs a call: its panics are reported as findings instead.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// Where the last quiet panic happened.
    static WHERE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Keeps the panic hook from printing the panics `guard` catches (it prints every other one).
fn quiet_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                let at = info.location().map(|l| l.to_string()).unwrap_or_default();
                WHERE.with(|w| *w.borrow_mut() = at);
            } else {
                default(info);
            }
        }));
    });
}

// ---- request bodies ----------------------------------------------------------------------------------

const TEXTS: &[&str] = &[
    "",
    " ",
    "hello there",
    "Hello, gateway! How are you today?",
    "ünïcødé façade — naïve café",
    "北京明天的天气怎么样？请告诉我。",
    "こんにちは世界、テストです",
    "🦀🚀👩‍👩‍👧‍👦 emoji ZWJ 🇫🇷",
    "<|endoftext|><|im_start|>system<|im_end|>",
    "\u{0}\u{1}\u{7f}\t\r\n\u{2028}\u{feff}",
    "a\u{301}e\u{308}\u{200b}\u{202e}rtl",
    "    indented\n\n\n    code();\n",
    "'s 't 're 've 'm 'll 'd   \n\n  ",
    "1234567890 3.14159 -0 1e308",
    "{\"json\": [1, 2, {\"x\": null}]}",
];

/// A text for a message: from the pool, random code points, or a long repetition.
fn text(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => {
            let n = rng.below(40);
            (0..n)
                .map(|_| {
                    let c = match rng.below(4) {
                        0 => rng.below(0x80) as u32,
                        1 => 0x80 + rng.below(0x780) as u32,
                        2 => 0x800 + rng.below(0xF000) as u32,
                        _ => 0x10000 + rng.below(0xFFFFF) as u32,
                    };
                    char::from_u32(c).unwrap_or('\u{fffd}')
                })
                .collect()
        }
        1 => rng.pick(TEXTS).repeat(1 + rng.below(60)),
        _ => rng.pick(TEXTS).to_string(),
    }
}

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "16",
    "17",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "1.5",
    "-0.0",
    "1e20",
    "1e308",
    "5e-324",
];

fn number(rng: &mut Rng) -> Value {
    let literal: &&str = rng.pick(NUMBERS);
    serde_json::from_str(literal).unwrap_or(Value::Null)
}

/// A random JSON value of any type, nested at most `depth` deep.
fn any_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(50)),
        2 => number(rng),
        3 => Value::String(text(rng)),
        4 => Value::String(rng.pick(FIELD_NAMES).to_string()),
        5 => Value::Array(
            (0..rng.below(4))
                .map(|_| any_value(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(4) {
                m.insert(rng.pick(FIELD_NAMES).to_string(), any_value(rng, depth - 1));
            }
            Value::Object(m)
        }
    }
}

/// Field names the request types, adapters and plugins look at, and some they do not.
const FIELD_NAMES: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "name",
    "type",
    "text",
    "tool_calls",
    "tool_call_id",
    "function",
    "arguments",
    "parameters",
    "properties",
    "enum",
    "description",
    "required",
    "items",
    "stream",
    "stream_options",
    "include_usage",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "plugins",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "user",
    "response_format",
    "logit_bias",
    "image_url",
    "url",
    "detail",
    "input_audio",
    "data",
    "format",
    "file",
    "file_id",
    "refusal",
    "cache_control",
    "reasoning_effort",
    "x_unknown_field",
    "",
    "__proto__",
];

const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// A content part of every type OpenAI documents, and a few it does not.
fn content_part(rng: &mut Rng) -> Value {
    match rng.below(9) {
        0 | 1 => json!({"type": "text", "text": text(rng)}),
        2 => {
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}})
        }
        3 => json!({"type": "image_url", "image_url": "https://example.com/x.png"}),
        4 => json!({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}),
        5 => json!({"type": "file", "file": {"file_id": "file-abc", "filename": "a.pdf"}}),
        6 => json!({"type": "refusal", "refusal": text(rng)}),
        7 => json!({"type": rng.pick(FIELD_NAMES), "text": any_value(rng, 1)}),
        _ => json!({"text": text(rng)}),
    }
}

fn tool_call(rng: &mut Rng, i: usize) -> Value {
    let arguments = match rng.below(4) {
        0 => Value::String("{\"location\":\"Paris\"}".into()),
        1 => Value::String(text(rng)),
        2 => json!({"location": "Paris"}),
        _ => any_value(rng, 2),
    };
    json!({"id": format!("call_{i}"), "type": "function",
           "function": {"name": rng.pick(&["get_weather", "f", "", "weather__get_forecast"]), "arguments": arguments}})
}

fn message(rng: &mut Rng, i: usize) -> Value {
    let role = *rng.pick(ROLES);
    let mut m = Map::new();
    m.insert("role".into(), role.into());
    let content = match rng.below(6) {
        0 => Value::Null,
        1 | 2 => Value::Array((0..rng.below(5)).map(|_| content_part(rng)).collect()),
        _ => Value::String(text(rng)),
    };
    if !(content.is_null() && rng.chance(50)) {
        m.insert("content".into(), content);
    }
    if rng.chance(15) {
        m.insert("name".into(), Value::String(text(rng)));
    }
    if role == "assistant" && rng.chance(40) {
        let calls = (0..1 + rng.below(3)).map(|j| tool_call(rng, j)).collect();
        m.insert("tool_calls".into(), Value::Array(calls));
    }
    if role == "tool" || rng.chance(5) {
        m.insert("tool_call_id".into(), format!("call_{}", i % 3).into());
    }
    if rng.chance(10) {
        m.insert(rng.pick(FIELD_NAMES).to_string(), any_value(rng, 2));
    }
    Value::Object(m)
}

/// A JSON Schema for tool parameters, sometimes odd (wrong types, enums of mixed types, deep).
fn schema(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(8) {
        0 => any_value(rng, 2),
        1 => json!({"type": "object", "properties": any_value(rng, 2)}),
        2 => json!({"type": "string", "enum": [any_value(rng, 0), any_value(rng, 0), "x"]}),
        _ => {
            let mut props = Map::new();
            for _ in 0..rng.below(5) {
                let prop = if depth > 0 && rng.chance(30) {
                    schema(rng, depth - 1)
                } else {
                    match rng.below(4) {
                        0 => json!({"type": "string", "description": text(rng)}),
                        1 => json!({"type": "integer", "enum": [1, 2, 3]}),
                        2 => json!({"type": ["string", "null"], "enum": [any_value(rng, 1), null]}),
                        _ => json!({"type": "array", "items": {"type": "number"}}),
                    }
                };
                props.insert(rng.pick(FIELD_NAMES).to_string(), prop);
            }
            json!({"type": "object", "properties": props, "required": [rng.pick(FIELD_NAMES)]})
        }
    }
}

fn tool(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => json!({"type": "web_search", "search_context_size": "low"}),
        1 => json!({"type": "function"}),
        2 => json!({"type": "function", "function": {"name": text(rng)}}),
        _ => {
            let name = *rng.pick(&["get_weather", "f", "weather__get_forecast", "x-y_z"]);
            let description = if rng.chance(70) {
                Value::String(text(rng))
            } else {
                any_value(rng, 1)
            };
            let parameters = schema(rng, 3);
            json!({"type": "function", "function": {
                "name": name, "description": description, "parameters": parameters}})
        }
    }
}

/// A valid-looking request: the base every mutation starts from.
fn request_value(rng: &mut Rng) -> Value {
    let mut m = Map::new();
    m.insert(
        "model".into(),
        (*rng.pick(&[
            "tollgate-echo",
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-3.5-turbo-0301",
            "openai/gpt-4.1",
            "claude-sonnet-4-5",
            "tollgate/auto",
            "m",
        ]))
        .into(),
    );
    let most = if rng.chance(10) { 40 } else { 4 };
    let n = 1 + rng.below(most);
    m.insert(
        "messages".into(),
        Value::Array((0..n).map(|i| message(rng, i)).collect()),
    );
    if rng.chance(50) {
        m.insert("stream".into(), Value::Bool(rng.chance(60)));
    }
    if rng.chance(30) {
        m.insert(
            "stream_options".into(),
            json!({"include_usage": rng.chance(50)}),
        );
    }
    for field in ["max_tokens", "max_completion_tokens"] {
        if rng.chance(30) {
            let v = if rng.chance(50) {
                json!(1 + rng.below(4000))
            } else {
                number(rng)
            };
            m.insert(field.into(), v);
        }
    }
    if rng.chance(20) {
        let v = if rng.chance(50) {
            json!(1 + rng.below(16))
        } else {
            number(rng)
        };
        m.insert("n".into(), v);
    }
    if rng.chance(35) {
        let tools = (0..rng.below(5)).map(|_| tool(rng)).collect();
        m.insert("tools".into(), Value::Array(tools));
    }
    if rng.chance(15) {
        let choice = match rng.below(4) {
            0 => json!("auto"),
            1 => json!("none"),
            2 => json!("required"),
            _ => json!({"type": "function", "function": {"name": "get_weather"}}),
        };
        m.insert("tool_choice".into(), choice);
    }
    if rng.chance(10) {
        m.insert(
            "functions".into(),
            json!([{"name": "legacy", "description": text(rng), "parameters": schema(rng, 2)}]),
        );
    }
    if rng.chance(10) {
        m.insert("plugins".into(), json!(["weather"]));
    }
    for field in [
        "temperature",
        "top_p",
        "stop",
        "seed",
        "user",
        "response_format",
    ] {
        if rng.chance(8) {
            m.insert(field.into(), any_value(rng, 1));
        }
    }
    Value::Object(m)
}

/// Every node of `v` by path, for structural mutation.
fn paths(v: &Value, prefix: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    out.push(prefix.clone());
    match v {
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                prefix.push(PathStep::Index(i));
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                prefix.push(PathStep::Key(k.clone()));
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone)]
enum PathStep {
    Index(usize),
    Key(String),
}

fn node_mut<'a>(v: &'a mut Value, path: &[PathStep]) -> Option<&'a mut Value> {
    let mut cur = v;
    for step in path {
        cur = match (step, cur) {
            (PathStep::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            (PathStep::Key(k), Value::Object(m)) => m.get_mut(k)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// One structural mutation of a JSON value: a node replaced, removed, duplicated or wrapped,
/// or an unknown field added.
fn mutate_value(rng: &mut Rng, v: &mut Value) {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    let path = rng.pick(&all).clone();
    match rng.below(6) {
        0 | 1 => {
            if let Some(node) = node_mut(v, &path) {
                *node = any_value(rng, 2);
            }
        }
        2 => {
            // remove the node from its parent
            if let Some((last, parent)) = path.split_last() {
                match (last, node_mut(v, parent)) {
                    (PathStep::Index(i), Some(Value::Array(a))) if *i < a.len() => {
                        a.remove(*i);
                    }
                    (PathStep::Key(k), Some(Value::Object(m))) => {
                        m.remove(k);
                    }
                    _ => {}
                }
            }
        }
        3 => {
            if let Some(node) = node_mut(v, &path) {
                match node {
                    Value::Array(a) if !a.is_empty() => {
                        let copy = a[rng.below(a.len())].clone();
                        for _ in 0..1 + rng.below(20) {
                            a.push(copy.clone());
                        }
                    }
                    Value::Object(m) => {
                        m.insert(rng.pick(FIELD_NAMES).to_string(), any_value(rng, 2));
                    }
                    other => *other = Value::Array(vec![other.clone()]),
                }
            }
        }
        4 => {
            if let Some(node) = node_mut(v, &path) {
                let mut wrapper = Map::new();
                wrapper.insert(rng.pick(FIELD_NAMES).to_string(), node.clone());
                *node = Value::Object(wrapper);
            }
        }
        _ => {
            if let Some(node) = node_mut(v, &path) {
                *node = number(rng);
            }
        }
    }
}

/// Byte-level mutations of a serialized body: truncation, flips, insertions (invalid UTF-8,
/// huge numbers, duplicate keys), deletions, deep nesting.
fn mutate_bytes(rng: &mut Rng, body: &mut Vec<u8>) {
    const INSERTS: &[&[u8]] = &[
        b"\xff",
        b"\xc3",
        b"\xe4\xb8",
        b"\xed\xa0\x80",
        b"\x00",
        b"\\ud800",
        b"\\u0000",
        b"1e999",
        b"-1e999",
        b"123456789012345678901234567890",
        b"\"model\":\"x\",",
        b"\"messages\":[],",
        b",",
        b"}",
        b"]",
        b"\"",
        b"\\",
        b"NaN",
        b"\xef\xbb\xbf",
    ];
    let len = body.len();
    match rng.below(7) {
        0 => body.truncate(rng.below(len + 1)),
        1 if len > 0 => {
            let i = rng.below(len);
            body[i] ^= 1 << rng.below(8);
        }
        2 => {
            let at = rng.below(len + 1);
            let ins = rng.pick(INSERTS);
            body.splice(at..at, ins.iter().copied());
        }
        3 if len > 0 => {
            let a = rng.below(len);
            let b = (a + rng.below(40)).min(len);
            body.drain(a..b);
        }
        4 => {
            // after the first `{`: a duplicate key
            let at = body.iter().position(|&b| b == b'{').map_or(0, |i| i + 1);
            const DUPLICATES: &[&[u8]] = &[
                b"\"model\":\"tollgate-echo\",",
                b"\"messages\":[{\"role\":\"user\",\"content\":\"dup\"}],",
                b"\"n\":0,",
                b"\"stream\":true,",
            ];
            let ins = rng.pick(DUPLICATES);
            body.splice(at..at, ins.iter().copied());
        }
        5 => {
            let depth = *rng.pick(&[50usize, 127, 128, 129, 1000, 20_000]);
            let open: &[u8] = if rng.chance(50) { b"[" } else { b"{\"a\":" };
            let mut deep: Vec<u8> = open.repeat(depth);
            deep.extend_from_slice(b"1");
            if open == b"[" {
                deep.extend(std::iter::repeat_n(b']', depth));
            } else {
                deep.extend(std::iter::repeat_n(b'}', depth));
            }
            let at = body
                .windows(11)
                .position(|w| w == b"\"messages\":")
                .map_or(body.len(), |i| i + 11);
            if at < body.len() && rng.chance(70) {
                body.splice(
                    at..at,
                    deep.iter().copied().chain(b",\"x\":".iter().copied()),
                );
            } else {
                *body = deep;
            }
        }
        _ => {
            let extra: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
            if rng.chance(50) {
                body.extend(extra);
            } else {
                body.splice(0..0, extra);
            }
        }
    }
}

fn request_body(rng: &mut Rng) -> Vec<u8> {
    let mut v = request_value(rng);
    let structural = rng.below(4);
    for _ in 0..structural {
        mutate_value(rng, &mut v);
    }
    let mut body = serde_json::to_vec(&v).expect("a Value serializes");
    if structural == 0 || rng.chance(35) {
        for _ in 0..1 + rng.below(3) {
            mutate_bytes(rng, &mut body);
        }
    }
    body
}

// ---- routes --------------------------------------------------------------------------------------

fn route(rng: &mut Rng, kind: ProviderKind) -> Route {
    let config = match rng.below(6) {
        0 => Value::Null,
        1 => {
            json!({"api_version": "2024-10-21", "deployment": "dep", "anthropic_version": "2023-06-01",
                    "anthropic_beta": "tools-2024", "provider": "together", "keep_alive": "5m",
                    "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
                    "headers": {"x-extra": "1"}})
        }
        2 => {
            json!({"api_version": 7, "deployment": null, "anthropic_version": [], "anthropic_beta": {},
                    "provider": 1, "keep_alive": {"a": 1}, "safety_settings": "none", "headers": [1, 2]})
        }
        3 => {
            json!({"headers": {"x-a": 1, "x-b": null, "x-c": "line\r\nInjected: yes", "": "empty"},
                    "deployment": "a/b?c#d", "api_version": "", "provider": "../../x"})
        }
        4 => any_value(rng, 3),
        _ => json!({}),
    };
    Route {
        provider: "p".into(),
        kind,
        base_url: (*rng.pick(&[
            "http://127.0.0.1:9/v1",
            "http://127.0.0.1:9/v1/",
            "https://api.example.com",
            "",
            "not a url",
            "http://h/ü/%zz?q=1#f",
        ]))
        .into(),
        api_key: if rng.chance(80) {
            Some((*rng.pick(&["sk-test", "", "key with\nnewline", "ключ"])).into())
        } else {
            None
        },
        upstream_model: (*rng.pick(&[
            "gpt-4o-mini",
            "claude-sonnet-4-5",
            "gemini-2.5-flash",
            "llama3.2",
            "",
            "a/b:c?d#e",
            "模型",
        ]))
        .into(),
        max_output_tokens: match rng.below(5) {
            0 => None,
            1 => Some(0),
            2 => Some(u64::MAX),
            _ => Some(1 + rng.below(100_000) as u64),
        },
        config,
    }
}

const KINDS: [ProviderKind; 7] = [
    ProviderKind::OpenAi,
    ProviderKind::Azure,
    ProviderKind::Anthropic,
    ProviderKind::Gemini,
    ProviderKind::Ollama,
    ProviderKind::HuggingFace,
    ProviderKind::Echo,
];

fn ctx() -> ResponseContext {
    ResponseContext {
        id: "chatcmpl-fuzz".into(),
        created: 1_700_000_000,
        model: "upstream-model".into(),
    }
}

// ---- requests: parse, count, reserve, build ----------------------------------------------------------

fn price(rng: &mut Rng) -> Price {
    let p = |rng: &mut Rng| match rng.below(5) {
        0 => 0,
        1 => u64::MAX,
        2 => rng.next(),
        _ => rng.below(100_000_000) as u64,
    };
    Price {
        input: p(rng),
        cached_input: rng.chance(50).then(|| p(rng)),
        output: p(rng),
        reasoning: rng.chance(50).then(|| p(rng)),
    }
}

fn multiplier(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => 10_000,
        1 => MAX_MULTIPLIER_BPS,
        _ => 1 + rng.below(MAX_MULTIPLIER_BPS as usize) as u64,
    }
}

/// The reservation of `req` (as the edge computes it) covers any usage within its bounds.
fn check_reservation(f: &Findings, rng: &mut Rng, req: &ChatCompletionRequest, prompt: u64) {
    let model_max = *rng.pick(&[1u64, 4096, 128_000, u64::MAX]);
    let max_output = req
        .requested_max_output()
        .unwrap_or(model_max)
        .saturating_mul(req.choices());
    let price = price(rng);
    let bps = multiplier(rng);
    let reserved = reservation_micros_scaled(prompt, max_output, &price, bps);
    for _ in 0..4 {
        let prompt_used = if prompt == 0 {
            0
        } else {
            rng.next() % (prompt + 1)
        };
        let completion = if max_output == 0 {
            0
        } else {
            rng.next() % max_output.saturating_add(1).max(1)
        };
        let usage = TokenUsage {
            prompt_tokens: prompt_used,
            cached_prompt_tokens: rng.next() % (prompt_used.saturating_add(1)).max(1),
            completion_tokens: completion,
            reasoning_tokens: rng.next() % completion.saturating_add(1).max(1),
        };
        let cost = cost_micros_scaled(&usage, &price, bps);
        if cost > reserved {
            f.add(format!(
                "reservation {reserved} < cost {cost} for {usage:?} at {price:?} × {bps} bps \
                 (prompt {prompt}, max output {max_output})"
            ));
        }
    }
}

fn fuzz_request(f: &Findings, rng: &mut Rng, case: usize) {
    let body = request_body(rng);
    let input = || format!("request case {case}: {}", show(&body));
    let Some(parsed) = f.guard("from_json", &input, || {
        ChatCompletionRequest::from_json(&body)
    }) else {
        return;
    };
    let req = match parsed {
        Ok(req) => req,
        Err(e) => {
            f.check_error("from_json", &input, &e);
            if e.status() != 400 {
                f.add(format!(
                    "from_json refused with {}, not 400: {e}\n    input: {}",
                    e.status(),
                    input()
                ));
            }
            return;
        }
    };
    let mut prompt = 0;
    for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
        if let Some(n) = f.guard("count_chat_prompt", &input, || count_chat_prompt(enc, &req)) {
            prompt = n;
        }
    }
    f.guard("reservation", &input, || {
        check_reservation(f, rng, &req, prompt)
    });
    f.guard("auto_tier", &input, || {
        auto_tier(&req, prompt, *rng.pick(&[0, 1, 8000, u64::MAX]))
    });
    for kind in KINDS {
        let route = route(rng, kind);
        let input = || format!("{} with {:?}", input(), route);
        let Some(built) = f.guard("build_request", &input, || {
            kind.adapter().build_request(&route, &req)
        }) else {
            continue;
        };
        match built {
            Err(e) => f.check_error("build_request", &input, &e),
            Ok(up) => {
                if serde_json::from_slice::<Value>(&up.body).is_err() {
                    f.add(format!(
                        "{kind:?} build_request body is not JSON: {}\n    input: {}",
                        show(&up.body),
                        input()
                    ));
                }
                if kind == ProviderKind::Echo {
                    fuzz_echo(f, &up.body, &input);
                }
            }
        }
    }
}

/// The echo model answers what `build_request` made; its stream decodes and meters cleanly.
fn fuzz_echo(f: &Findings, body: &[u8], input: &dyn Fn() -> String) {
    let Some(reply) = f.guard("echo::serve", input, || {
        echo::serve(body, "chatcmpl-echo", 1)
    }) else {
        return;
    };
    match reply {
        Err(e) => f.check_error("echo::serve", input, &e),
        Ok(EchoReply::Json(json)) => {
            let parsed = f.guard("echo parse_response", input, || {
                ProviderKind::Echo.adapter().parse_response(&json, &ctx())
            });
            if let Some(Err(e)) = parsed {
                f.add(format!(
                    "echo's own plain body does not parse: {e}\n    input: {}",
                    input()
                ));
            }
        }
        Ok(EchoReply::Events(events)) => {
            let events: Vec<Vec<u8>> = events.collect();
            let transcript: Vec<u8> = events.concat();
            let cuts: Vec<usize> = events
                .iter()
                .scan(0, |at, e| {
                    *at += e.len();
                    Some(*at)
                })
                .collect();
            if let Some(run) = f.guard("echo stream", input, || {
                run_stream(ProviderKind::Echo, &transcript, &cuts, false)
            }) {
                if !run.completed || !run.errors.is_empty() {
                    f.add(format!(
                        "echo's own stream did not complete cleanly: {:?}\n    input: {}",
                        run.errors,
                        input()
                    ));
                }
            }
        }
    }
}

#[test]
fn fuzz_request_bodies() {
    quiet_panics();
    let seed = seed();
    let f = Findings::new(seed);
    let mut rng = Rng(seed);
    let cases = 2500 * scale();
    for case in 0..cases {
        let mut case_rng = rng.fork();
        fuzz_request(&f, &mut case_rng, case);
    }
    f.finish("fuzz_request_bodies", cases);
}

// ---- header values -----------------------------------------------------------------------------

/// A header value as a client may send it: a plausible one mangled, or junk.
fn header_value(rng: &mut Rng, plausible: &str) -> String {
    match rng.below(6) {
        0 => plausible.to_string(),
        1 => {
            let mut cut = rng.below(plausible.len() + 1);
            while !plausible.is_char_boundary(cut) {
                cut -= 1;
            }
            plausible[..cut].to_string()
        }
        2 => format!("{plausible}{}", text(rng)),
        3 => text(rng),
        4 => rng
            .pick(&[" ", "\t", ",", "é", "\u{0}", "Bearer", "tg-", "\r\n"])
            .repeat(1 + rng.below(300)),
        _ => plausible.repeat(1 + rng.below(5)),
    }
}

/// `Authorization`, `X-Session-Id` and `Idempotency-Key` values through the core's parsers.
#[test]
fn fuzz_header_values() {
    quiet_panics();
    let seed = seed();
    let f = Findings::new(seed);
    let mut rng = Rng(seed ^ 0x4845_4144);
    let cases = 3000 * scale();
    let key = format!("tg-01JABCDEFGHJKMNPQRSTVWXYZ0-{}", "a".repeat(40));
    for case in 0..cases {
        let mut rng = rng.fork();
        let auth = header_value(&mut rng, &format!("Bearer {key}"));
        let input = || format!("case {case}: {auth:?}");
        f.guard("bearer_token/parse_api_key", &input, || {
            if let Some(token) = tollgate::core::keys::bearer_token(&auth) {
                let _ = tollgate::core::keys::parse_api_key(token);
            }
            let _ = tollgate::core::keys::parse_api_key(&auth);
        });
        let session = header_value(&mut rng, "sess-abc_1.2:3");
        let input = || format!("case {case}: session {session:?}");
        if let Some(Err(e)) = f.guard("validate_session_id", &input, || {
            tollgate::core::session::validate_session_id(&session).map(str::to_string)
        }) {
            f.check_error("validate_session_id", &input, &e);
        }
        let idem = header_value(&mut rng, "idem-key-42");
        let input = || format!("case {case}: idempotency key {idem:?}");
        if let Some(Err(e)) = f.guard("idempotency validate_key", &input, || {
            tollgate::core::idempotency::validate_key(idem.trim()).map(str::to_string)
        }) {
            f.check_error("idempotency validate_key", &input, &e);
        }
    }
    f.finish("fuzz_header_values", cases);
}

// ---- upstream streams ------------------------------------------------------------------------------

/// Stream transcripts of every provider kind: the golden fixtures, without their `#! docs:` line.
fn stream_fixtures() -> Vec<(ProviderKind, &'static str, &'static [u8])> {
    vec![
        (
            ProviderKind::OpenAi,
            "openai/groq_stream.sse",
            &include_bytes!("fixtures/openai/groq_stream.sse")[..],
        ),
        (
            ProviderKind::Azure,
            "azure/stream.sse",
            &include_bytes!("fixtures/azure/stream.sse")[..],
        ),
        (
            ProviderKind::HuggingFace,
            "huggingface/stream_tools.sse",
            &include_bytes!("fixtures/huggingface/stream_tools.sse")[..],
        ),
        (
            ProviderKind::Anthropic,
            "anthropic/stream_text.sse",
            &include_bytes!("fixtures/anthropic/stream_text.sse")[..],
        ),
        (
            ProviderKind::Anthropic,
            "anthropic/stream_tools.sse",
            &include_bytes!("fixtures/anthropic/stream_tools.sse")[..],
        ),
        (
            ProviderKind::Anthropic,
            "anthropic/stream_error.sse",
            &include_bytes!("fixtures/anthropic/stream_error.sse")[..],
        ),
        (
            ProviderKind::Gemini,
            "gemini/stream_text.sse",
            &include_bytes!("fixtures/gemini/stream_text.sse")[..],
        ),
        (
            ProviderKind::Gemini,
            "gemini/stream_tools.sse",
            &include_bytes!("fixtures/gemini/stream_tools.sse")[..],
        ),
        (
            ProviderKind::Ollama,
            "ollama/stream.ndjson",
            &include_bytes!("fixtures/ollama/stream.ndjson")[..],
        ),
    ]
    .into_iter()
    .map(|(kind, name, bytes)| (kind, name, strip_docs_line(bytes)))
    .collect()
}

fn strip_docs_line(bytes: &'static [u8]) -> &'static [u8] {
    if bytes.starts_with(b"#!") {
        let end = bytes.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
        &bytes[end..]
    } else {
        bytes
    }
}

/// What one run of a stream through decoder and meter produced.
#[derive(Debug, Clone, PartialEq)]
struct StreamRun {
    /// The decoder's items, in order (chunks compared as JSON).
    items: Vec<String>,
    meter_text: String,
    meter_out: Vec<u8>,
    completed: bool,
    usage: Option<String>,
    errors: Vec<GatewayError>,
}

/// Feeds `transcript` cut at `cuts` through the adapter's decoder and a meter, then ends it.
fn run_stream(
    kind: ProviderKind,
    transcript: &[u8],
    cuts: &[usize],
    wants_usage: bool,
) -> StreamRun {
    let mut dec = kind.adapter().stream_decoder(&ctx());
    let mut meter = StreamMeter::new();
    let encoder = StreamEncoder::new(wants_usage);
    let mut run = StreamRun {
        items: Vec::new(),
        meter_text: String::new(),
        meter_out: Vec::new(),
        completed: false,
        usage: None,
        errors: Vec::new(),
    };
    let take = |items: Vec<StreamItem>, run: &mut StreamRun, meter: &mut StreamMeter| {
        for item in items {
            run.items.push(match &item {
                StreamItem::Chunk { chunk, raw } => format!(
                    "chunk {} raw={}",
                    serde_json::to_string(chunk).unwrap_or_default(),
                    raw.as_ref().map_or(0, Vec::len)
                ),
                StreamItem::KeepAlive(raw) => format!("keepalive {}", raw.len()),
                StreamItem::Done => "done".into(),
                StreamItem::Error(e) => format!("error {}", error_body(e)),
            });
            if let StreamItem::Error(e) = &item {
                run.errors.push(e.clone());
            }
            encoder.forward(meter, item, &mut run.meter_out);
        }
    };
    let mut start = 0;
    for &cut in cuts {
        let cut = cut.clamp(start, transcript.len());
        let items = dec.push(&transcript[start..cut]);
        take(items, &mut run, &mut meter);
        start = cut;
    }
    let items = dec.push(&transcript[start..]);
    take(items, &mut run, &mut meter);
    let items = dec.finish();
    take(items, &mut run, &mut meter);
    encoder.upstream_closed(&mut meter, &mut run.meter_out, None);
    run.meter_text = meter.text().to_string();
    run.completed = meter.completed();
    run.usage = meter
        .upstream_usage()
        .map(|u| serde_json::to_string(u).unwrap_or_default());
    run
}

fn random_cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
    if len == 0 {
        return Vec::new();
    }
    let mut cuts: Vec<usize> = match rng.below(4) {
        // byte by byte
        0 => (1..len).collect(),
        _ => (0..1 + rng.below(24)).map(|_| rng.below(len + 1)).collect(),
    };
    cuts.sort_unstable();
    cuts
}

/// Every event the client gets is `[DONE]` or a JSON object; errors are OpenAI-shaped.
fn check_client_events(f: &Findings, out: &[u8], input: &dyn Fn() -> String) {
    let mut parser = SseParser::new();
    let mut events = match parser.push(out) {
        Ok(e) => e,
        Err(e) => {
            f.add(format!(
                "meter output does not parse as SSE: {e}\n    input: {}",
                input()
            ));
            return;
        }
    };
    if let Ok(Some(last)) = parser.finish() {
        events.push(last);
    }
    let mut ended: Option<String> = None;
    for event in events {
        let Some(data) = event.data else { continue };
        let data = data.trim();
        if data.is_empty() {
            continue;
        }
        if let Some(end) = &ended {
            f.add(format!(
                "client gets an event after {end}: {}\n    input: {}",
                show(data.as_bytes()),
                input()
            ));
            return;
        }
        if data == "[DONE]" {
            ended = Some("[DONE]".into());
            continue;
        }
        // An `error` that is null is not an error (the SDKs test it for truth).
        if serde_json::from_str::<Value>(data)
            .is_ok_and(|v| v.get("error").is_some_and(|e| !e.is_null()))
        {
            ended = Some("an error event".into());
        }
        match serde_json::from_str::<Value>(data) {
            Ok(Value::Object(m)) => {
                let is_error = m.get("error").is_some_and(|e| !e.is_null());
                if !is_error && !m.get("choices").is_some_and(Value::is_array) {
                    f.add(format!(
                        "client gets a chunk without a `choices` array: {}\n    input: {}",
                        show(data.as_bytes()),
                        input()
                    ));
                }
                if is_error {
                    if let Err(why) = openai_error_shape(data) {
                        f.add(format!(
                            "client gets a non-OpenAI error event ({why}): {}\n    input: {}",
                            show(data.as_bytes()),
                            input()
                        ));
                    }
                }
            }
            _ => f.add(format!(
                "client gets an event that is not a JSON object: {}\n    input: {}",
                show(data.as_bytes()),
                input()
            )),
        }
    }
}

/// The output guard over a stream's text, delta by delta: with every extension granted, the
/// reservation ends up covering the text; capped, it cuts without panicking.
fn check_guard(f: &Findings, rng: &mut Rng, text: &str, input: &dyn Fn() -> String) {
    let encoding = *rng.pick(&[Some(Encoding::O200kBase), Some(Encoding::Cl100kBase), None]);
    let covered = *rng.pick(&[0u64, 1, 2, 5, 50, 4096]);
    let capped = rng.chance(50);
    f.guard("output guard", input, || {
        let mut guard = OutputGuard::new(encoding, covered, capped);
        let mut delivered = String::new();
        let mut rest = text;
        while !rest.is_empty() {
            let mut take = (1 + rng.below(12)).min(rest.len());
            while !rest.is_char_boundary(take) {
                take += 1;
            }
            let (added, tail) = rest.split_at(take);
            match guard.check(&delivered, added) {
                OutputDecision::Continue => {}
                OutputDecision::Extend { tokens } => guard.extended(tokens),
                OutputDecision::Cut => return,
            }
            delivered.push_str(added);
            rest = tail;
        }
        let used = tollgate::core::billing::guard::count_output(encoding, &delivered);
        if !capped && used > guard.covered_tokens() {
            f.add(format!(
                "output guard let {used} tokens through while covering {}\n    input: {}",
                guard.covered_tokens(),
                input()
            ));
        }
    });
}

/// Splits a transcript into its events (SSE: blank-line separated; NDJSON: lines), keeping
/// the separators with each event.
fn events_of(kind: ProviderKind, transcript: &[u8]) -> Vec<Vec<u8>> {
    let sep: &[u8] = if kind == ProviderKind::Ollama {
        b"\n"
    } else {
        b"\n\n"
    };
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + sep.len() <= transcript.len() {
        if &transcript[i..i + sep.len()] == sep {
            out.push(transcript[start..i + sep.len()].to_vec());
            start = i + sep.len();
            i = start;
        } else {
            i += 1;
        }
    }
    if start < transcript.len() {
        out.push(transcript[start..].to_vec());
    }
    out
}

/// Mutates one event's JSON payload structurally (keeping its framing), or returns false.
fn mutate_event_json(rng: &mut Rng, event: &mut Vec<u8>) -> bool {
    let text = String::from_utf8_lossy(event).to_string();
    let (prefix, json_text, suffix) = match text.find("data:") {
        Some(at) => {
            let start = at + 5;
            let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
            (&text[..start], &text[start..end], &text[end..])
        }
        None => {
            let end = text.trim_end().len();
            ("", &text[..end], &text[end..])
        }
    };
    let Ok(mut v) = serde_json::from_str::<Value>(json_text.trim()) else {
        return false;
    };
    for _ in 0..1 + rng.below(3) {
        if rng.chance(30) {
            mutate_usage_numbers(rng, &mut v);
        } else {
            mutate_value(rng, &mut v);
        }
    }
    let json = serde_json::to_string(&v).unwrap_or_default();
    *event = format!("{prefix} {json}{suffix}").into_bytes();
    true
}

/// Sets every integer field whose name says it counts tokens to an extreme.
fn mutate_usage_numbers(rng: &mut Rng, v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if (k.contains("token") || k.contains("count") || k.ends_with("_tokens"))
                    && x.is_number()
                {
                    *x = match rng.below(4) {
                        0 => json!(u64::MAX),
                        1 => json!(-1),
                        2 => json!(1.5),
                        _ => json!(u64::MAX / 2 + 1),
                    };
                } else {
                    mutate_usage_numbers(rng, x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| mutate_usage_numbers(rng, x)),
        _ => {}
    }
}

/// A mutated transcript: events reordered, dropped, duplicated or altered, garbage and odd
/// framing inserted, bytes flipped, the whole cut short.
fn mutate_transcript(rng: &mut Rng, kind: ProviderKind, transcript: &[u8]) -> Vec<u8> {
    const INSERTS: &[&[u8]] = &[
        b": keep-alive\n\n",
        b"data: [DONE]\n\n",
        b"data: \n\n",
        b"data: {}\n\n",
        b"data: null\n\n",
        b"data: [1,2]\n\n",
        b"data: \"str\"\n\n",
        b"data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n",
        b"data: {\"error\":\"plain string\"}\n\n",
        b"data: {\"error\":{\"message\":42}}\n\n",
        b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        b"event: ping\n\n",
        b"retry: 10\nid: 7\n\n",
        b"data: {\"choices\":[{\"index\":4294967295,\"delta\":{\"content\":\"x\"}}]}\n\n",
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":99999999}]}}]}\n\n",
        b"{\"done\":true}\n",
        b"{\"message\":{\"content\":\"\xff\"}}\n",
        b"\xff\xfe\x00",
        b"\r",
        b"\r\n",
        b"\n",
        b"data: {\"a\":\n",
    ];
    let mut events = events_of(kind, transcript);
    for _ in 0..1 + rng.below(4) {
        let n = events.len();
        match rng.below(8) {
            0 | 1 if n > 0 => {
                let i = rng.below(n);
                mutate_event_json(rng, &mut events[i]);
            }
            2 if n > 0 => {
                events.remove(rng.below(n));
            }
            3 if n > 0 => {
                let e = events[rng.below(n)].clone();
                events.insert(rng.below(n + 1), e);
            }
            4 if n > 1 => {
                let (a, b) = (rng.below(n), rng.below(n));
                events.swap(a, b);
            }
            5 => {
                let ins = rng.pick(INSERTS).to_vec();
                events.insert(rng.below(n + 1), ins);
            }
            _ if n > 0 => {
                let i = rng.below(n);
                let e = &mut events[i];
                if !e.is_empty() {
                    let at = rng.below(e.len());
                    e[at] ^= 1 << rng.below(8);
                }
            }
            _ => {}
        }
    }
    let mut out = events.concat();
    if rng.chance(25) {
        out.truncate(rng.below(out.len() + 1));
    }
    if rng.chance(10) {
        // CRLF framing
        let mut crlf = Vec::with_capacity(out.len() * 2);
        for &b in &out {
            if b == b'\n' {
                crlf.push(b'\r');
            }
            crlf.push(b);
        }
        out = crlf;
    }
    out
}

#[test]
fn fuzz_upstream_streams() {
    quiet_panics();
    let seed = seed();
    let f = Findings::new(seed);
    let mut rng = Rng(seed ^ 0x5354_5245_414d);
    let fixtures = stream_fixtures();
    let mut cases = 0;

    // Valid streams: any split gives the unsplit run's items, meter text, output and usage.
    for (kind, name, transcript) in &fixtures {
        let input = || format!("{name} unsplit");
        let Some(reference) = f.guard("stream", &input, || {
            run_stream(*kind, transcript, &[], false)
        }) else {
            continue;
        };
        check_client_events(&f, &reference.meter_out, &input);
        for e in &reference.errors {
            f.check_error("stream error item", &input, e);
        }
        for _ in 0..60 * scale() {
            cases += 1;
            let mut rng = rng.fork();
            let cuts = random_cuts(&mut rng, transcript.len());
            let input = || format!("{name} cut at {cuts:?}");
            let Some(run) = f.guard("stream", &input, || {
                run_stream(*kind, transcript, &cuts, false)
            }) else {
                continue;
            };
            if run != reference {
                f.add(format!(
                    "{name}: a split run differs from the unsplit one\n    split: {:?}\n    whole: {:?}\n    input: {}",
                    run.meter_text,
                    reference.meter_text,
                    input()
                ));
            }
            check_guard(&f, &mut rng, &reference.meter_text, &input);
        }
    }

    // Mutated streams: no panic, OpenAI-shaped errors, and still independent of the split.
    for case in 0..1500 * scale() {
        cases += 1;
        let mut rng = rng.fork();
        let (kind, name, transcript) = rng.pick(&fixtures);
        let kind = *kind;
        let mutated = mutate_transcript(&mut rng, kind, transcript);
        let wants_usage = rng.chance(50);
        let cuts = random_cuts(&mut rng, mutated.len());
        let input = || format!("case {case}, {name} mutated: {}", show(&mutated));
        let whole = f.guard("mutated stream", &input, || {
            run_stream(kind, &mutated, &[], wants_usage)
        });
        let split = f.guard("mutated stream", &input, || {
            run_stream(kind, &mutated, &cuts, wants_usage)
        });
        let (Some(whole), Some(split)) = (whole, split) else {
            continue;
        };
        for e in &whole.errors {
            f.check_error("stream error item", &input, e);
        }
        check_client_events(&f, &whole.meter_out, &input);
        if whole != split {
            f.add(format!(
                "{name}: mutated stream decodes differently when split at {cuts:?}\n    whole: {:?}\n    split: {:?}\n    input: {}",
                whole.items,
                split.items,
                input()
            ));
        }
        // Whatever the provider reported is billable without overflow.
        f.guard("bill", &input, || {
            let usage = whole
                .usage
                .as_deref()
                .and_then(|u| serde_json::from_str(u).ok());
            let price = price(&mut rng);
            let status = if whole.completed {
                RequestStatus::Ok
            } else {
                RequestStatus::UpstreamError
            };
            let b = bill(&BillInput {
                status,
                delivered_output: !whole.meter_text.is_empty(),
                local_prompt_tokens: rng.next() % 100_000,
                completion_text: &whole.meter_text,
                finish_reason: None,
                encoding: Some(Encoding::O200kBase),
                upstream_usage: usage.as_ref().map(tiered_usage),
                sheet: &PriceSheet::flat(price),
                multiplier_bps: multiplier(&mut rng),
                reserved: rng.next(),
            });
            // Every figure of a bill fits what D1 stores exactly (JavaScript's safe integers).
            assert!(b.cost < (1 << 53) && b.completion_tokens < (1 << 53));
        });
    }
    f.finish("fuzz_upstream_streams", cases);
}

// ---- plain bodies and error bodies ---------------------------------------------------------------------

fn plain_fixtures() -> Vec<(ProviderKind, &'static str, &'static [u8])> {
    vec![
        (
            ProviderKind::OpenAi,
            "openai/deepseek_response.json",
            &include_bytes!("fixtures/openai/deepseek_response.json")[..],
        ),
        (
            ProviderKind::Azure,
            "azure/response.json",
            &include_bytes!("fixtures/azure/response.json")[..],
        ),
        (
            ProviderKind::Anthropic,
            "anthropic/response_tools.json",
            &include_bytes!("fixtures/anthropic/response_tools.json")[..],
        ),
        (
            ProviderKind::Gemini,
            "gemini/response_tools.json",
            &include_bytes!("fixtures/gemini/response_tools.json")[..],
        ),
        (
            ProviderKind::Ollama,
            "ollama/response_tools.json",
            &include_bytes!("fixtures/ollama/response_tools.json")[..],
        ),
        (
            ProviderKind::HuggingFace,
            "huggingface/response_tools.json",
            &include_bytes!("fixtures/huggingface/response_tools.json")[..],
        ),
    ]
    .into_iter()
    .map(|(kind, name, bytes)| (kind, name, strip_docs_line(bytes)))
    .collect()
}

fn error_fixtures() -> Vec<(ProviderKind, &'static str, &'static [u8])> {
    vec![
        (
            ProviderKind::OpenAi,
            "openai/mistral_error.json",
            &include_bytes!("fixtures/openai/mistral_error.json")[..],
        ),
        (
            ProviderKind::Azure,
            "azure/error_content_filter.json",
            &include_bytes!("fixtures/azure/error_content_filter.json")[..],
        ),
        (
            ProviderKind::Anthropic,
            "anthropic/error_invalid.json",
            &include_bytes!("fixtures/anthropic/error_invalid.json")[..],
        ),
        (
            ProviderKind::Gemini,
            "gemini/error_invalid.json",
            &include_bytes!("fixtures/gemini/error_invalid.json")[..],
        ),
        (
            ProviderKind::Ollama,
            "ollama/error_not_found.json",
            &include_bytes!("fixtures/ollama/error_not_found.json")[..],
        ),
        (
            ProviderKind::HuggingFace,
            "huggingface/error_validation.json",
            &include_bytes!("fixtures/huggingface/error_validation.json")[..],
        ),
    ]
    .into_iter()
    .map(|(kind, name, bytes)| (kind, name, strip_docs_line(bytes)))
    .collect()
}

/// A mutated JSON body: structurally (usage numbers included) and/or byte-wise.
fn mutate_body(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let mut out = match serde_json::from_slice::<Value>(body) {
        Ok(mut v) if rng.chance(75) => {
            for _ in 0..1 + rng.below(3) {
                if rng.chance(25) {
                    mutate_usage_numbers(rng, &mut v);
                } else {
                    mutate_value(rng, &mut v);
                }
            }
            serde_json::to_vec(&v).unwrap_or_default()
        }
        _ => body.to_vec(),
    };
    if rng.chance(30) {
        mutate_bytes(rng, &mut out);
    }
    out
}

#[test]
fn fuzz_plain_and_error_bodies() {
    quiet_panics();
    let seed = seed();
    let f = Findings::new(seed);
    let mut rng = Rng(seed ^ 0x50_4c41_494e);
    let plain = plain_fixtures();
    let errors = error_fixtures();
    let mut cases = 0;
    const STATUSES: &[u16] = &[
        0, 100, 200, 204, 301, 399, 400, 401, 402, 403, 404, 408, 409, 413, 422, 429, 499, 500,
        502, 503, 504, 529, 599, 600, 999, 65535,
    ];
    for case in 0..1500 * scale() {
        cases += 1;
        let mut rng = rng.fork();
        // Any kind may receive any provider's body (a misconfigured kind does exactly that).
        let kind = *rng.pick(&KINDS);
        let (_, name, seed_body) = if rng.chance(70) {
            *rng.pick(&plain)
        } else {
            *rng.pick(&errors)
        };
        let body = if rng.chance(10) {
            seed_body.to_vec()
        } else {
            mutate_body(&mut rng, seed_body)
        };
        let input = || {
            format!(
                "case {case}, {kind:?} given mutated {name}: {}",
                show(&body)
            )
        };
        let adapter = kind.adapter();
        if let Some(parsed) = f.guard("parse_response", &input, || {
            adapter.parse_response(&body, &ctx())
        }) {
            match parsed {
                Err(e) => f.check_error("parse_response", &input, &e),
                Ok(resp) => {
                    f.guard("response text", &input, || {
                        let _ = resp.generated_text();
                        serde_json::to_string(&resp).expect("a response serializes");
                        if let Some(u) = &resp.usage {
                            let _ = cost_micros_scaled(
                                &TokenUsage {
                                    prompt_tokens: u.prompt_tokens,
                                    cached_prompt_tokens: u.cached_tokens(),
                                    completion_tokens: u.completion_tokens,
                                    reasoning_tokens: u.reasoning_tokens(),
                                },
                                &price(&mut rng),
                                multiplier(&mut rng),
                            );
                        }
                    });
                }
            }
        }
        let status = *rng.pick(STATUSES);
        if let Some(e) = f.guard("map_error", &input, || adapter.map_error(status, &body)) {
            f.check_error(&format!("map_error({status})"), &input, &e);
        }
    }
    f.finish("fuzz_plain_and_error_bodies", cases);
}

// ---- regressions the fuzzer found --------------------------------------------------------------------

/// Token counts near `u64::MAX` from a provider used to overflow the usage sums (a panic natively,
/// a wrapped, wrong count in the release wasm). They saturate now.
#[test]
fn extreme_token_counts_saturate() {
    const MAX: u64 = u64::MAX;
    let big = "18446744073709551615";
    let half = "9223372036854775808";

    // Ollama, plain: prompt + completion.
    let body = format!(
        r#"{{"model":"llama3.2","created_at":"2024-07-22T20:33:28Z","message":{{"role":"assistant","content":"hi"}},
            "done":true,"done_reason":"stop","prompt_eval_count":{half},"eval_count":{big}}}"#
    );
    let resp = ProviderKind::Ollama
        .adapter()
        .parse_response(body.as_bytes(), &ctx())
        .expect("an Ollama body");
    assert_eq!(resp.usage.expect("usage").total_tokens, MAX);

    // Anthropic, stream: input + cache reads + cache writes.
    let events = format!(
        "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"m\",\"model\":\"c\",\"usage\":\
         {{\"input_tokens\":{half},\"cache_read_input_tokens\":{half},\"cache_creation_input_tokens\":7,\"output_tokens\":1}}}}}}\n\n\
         event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{{\"output_tokens\":{big}}}}}\n\n\
         event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
    );
    let run = run_stream(ProviderKind::Anthropic, events.as_bytes(), &[], true);
    let usage: serde_json::Value =
        serde_json::from_str(run.usage.as_deref().expect("usage")).expect("usage JSON");
    assert_eq!(usage["prompt_tokens"], MAX);
    assert_eq!(usage["total_tokens"], MAX);

    // Gemini, stream: candidates + thoughts, prompt + tool-use prompt.
    let events = format!(
        "data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"hi\"}}],\"role\":\"model\"}},\"finishReason\":\"STOP\",\"index\":0}}],\
         \"usageMetadata\":{{\"promptTokenCount\":{half},\"toolUsePromptTokenCount\":{half},\"candidatesTokenCount\":{big},\"thoughtsTokenCount\":30}}}}\n\n"
    );
    let run = run_stream(ProviderKind::Gemini, events.as_bytes(), &[], true);
    let usage: serde_json::Value =
        serde_json::from_str(run.usage.as_deref().expect("usage")).expect("usage JSON");
    assert_eq!(usage["prompt_tokens"], MAX);
    assert_eq!(usage["completion_tokens"], MAX);
}

/// A stream whose last block lacks its blank line (`data:` or a whole chunk, then the connection
/// closes) used to have those bytes forwarded as they were, so the gateway's own error event ran
/// into them: the client got `data:data: {"error":…}`, which is not JSON.
#[test]
fn an_unterminated_last_block_does_not_corrupt_the_error_event() {
    let chunk = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#;
    for transcript in [
        "data:".to_string(),
        ": keep-alive".to_string(),
        format!("{chunk}\n\ndata:"),
        chunk.to_string(),
        format!("{chunk}\n"),
        format!("{chunk}\r\n"),
        format!("{chunk}\r"),
    ] {
        for kind in [
            ProviderKind::OpenAi,
            ProviderKind::Azure,
            ProviderKind::HuggingFace,
        ] {
            let run = run_stream(kind, transcript.as_bytes(), &[], false);
            let f = Findings::new(0);
            check_client_events(&f, &run.meter_out, &|| format!("{kind:?} {transcript:?}"));
            let problems = f.list.into_inner();
            assert!(problems.is_empty(), "{problems:?}");
            let out = String::from_utf8_lossy(&run.meter_out);
            assert!(
                out.contains(r#"data: {"error":{"message":"The provider closed the stream"#),
                "{kind:?} {transcript:?}: {out:?}"
            );
        }
    }
}

/// Events the upstream sends after `[DONE]` or after an error event, in the same read, used to
/// reach the client (which had stopped at the end) and to be metered as delivered output.
#[test]
fn nothing_follows_the_end_of_a_stream() {
    let chunk = |text: &str| {
        format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\
             \"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n"
        )
    };
    let error = "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n";
    for (transcript, ends_with) in [
        (
            format!("{}{error}{}data: [DONE]\n\n", chunk("Hi"), chunk(" more")),
            // The provider's message is replaced by a generic one (docs/providers.md).
            "\"error\"",
        ),
        (
            format!("{}data: [DONE]\n\n{}{error}", chunk("Hi"), chunk(" more")),
            "[DONE]",
        ),
        (
            format!("{}data: null\n\n{}", chunk("Hi"), chunk(" more")),
            "invalid stream chunk",
        ),
    ] {
        let run = run_stream(ProviderKind::OpenAi, transcript.as_bytes(), &[], false);
        assert_eq!(run.meter_text, "Hi", "{transcript:?}");
        let out = String::from_utf8_lossy(&run.meter_out);
        let last = out.trim_end().rsplit("\n\n").next().unwrap_or_default();
        assert!(last.contains(ends_with), "{transcript:?} → {out:?}");
        let f = Findings::new(0);
        check_client_events(&f, &run.meter_out, &|| transcript.clone());
        assert!(f.list.into_inner().is_empty());
    }
}

/// An upstream chunk without `choices` (`data: {}`, or one whose `choices` was dropped) used to
/// reach the client as its raw bytes, and SDK code that indexes `chunk.choices` broke on it.
#[test]
fn a_chunk_without_choices_reaches_the_client_with_them() {
    for (data, wants_usage) in [
        ("{}", false),
        (
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m"}"#,
            false,
        ),
        (
            r#"{"id":"c","usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
            true,
        ),
    ] {
        let transcript = format!("data: {data}\n\ndata: [DONE]\n\n");
        let run = run_stream(
            ProviderKind::OpenAi,
            transcript.as_bytes(),
            &[],
            wants_usage,
        );
        let f = Findings::new(0);
        check_client_events(&f, &run.meter_out, &|| transcript.clone());
        let problems = f.list.into_inner();
        assert!(problems.is_empty(), "{problems:?}");
        assert!(run.completed);
    }
}
