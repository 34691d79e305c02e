//! Seeded fuzzing of the media path of the pure core (issue 15): `multipart/form-data` bodies
//! through `core::multipart` (forms written by `Writer`, then mutated, truncated and split), the
//! media codecs (`core::inbound::{embeddings, images, audio}`) on mutated request bodies and
//! forms, the provider answer parsers (`core::providers::media`) on mutated fixtures, the
//! transcription stream watcher split at random bytes, and WAV headers.
//!
//! Deterministic like `tests/fuzz_core.rs`: SplitMix64 from a seed printed at the start;
//! `TOLLGATE_FUZZ_SEED=<n>` replays another seed and `TOLLGATE_FUZZ_SCALE=<k>` multiplies the
//! cases. What must hold for every input:
//! - nothing panics;
//! - every error is a 4xx or 5xx `GatewayError` whose body is OpenAI-shaped; a refused request
//!   body or form is a 400, 413 or 415;
//! - a form written by `Writer` parses back to exactly its fields, whatever bytes they hold;
//! - the reservation of every decoded request covers the cost of the usage it is billed at when
//!   that usage is within the reservation's bounds;
//! - a transcription stream gives the same text and usage however its bytes are split.

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::{json, Value};
use tollgate::core::billing::units::{
    cost_micros_scaled, reservation_micros_scaled, MediaUsage, UnitPrices,
};
use tollgate::core::billing::Price;
use tollgate::core::error::GatewayError;
use tollgate::core::inbound::audio::{self, TranscriptFormat};
use tollgate::core::inbound::{embeddings, images};
use tollgate::core::multipart::{self, Limits, Writer};
use tollgate::core::providers::media::streams::{ImageStream, SpeechStream};
use tollgate::core::providers::media::{self, openai::TranscriptStream};
use tollgate::core::providers::ProviderKind;
use tollgate::core::tokens::Encoding;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        const PIECES: &[&[u8]] = &[
            b"\r\n",
            b"\n",
            b"--",
            b"--tollgate-",
            b"--b",
            b"\"",
            b"\\",
            b";",
            b"=",
            b"\x00",
            b"\xff",
            b"Content-Disposition: form-data; name=",
            b"filename*=UTF-8''%e2",
            b" ",
        ];
        let len = self.below(max + 1);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            if self.chance(30) {
                out.extend_from_slice(PIECES[self.below(PIECES.len())]);
            } else {
                out.push(self.next() as u8);
            }
        }
        out
    }
    fn text(&mut self, max: usize) -> String {
        const CHARS: &[&str] = &[
            "a", "Z", "0", " ", "\"", "\\", "\r\n", "é", "你", "🦀", "-", ";", "=",
        ];
        (0..self.below(max + 1))
            .map(|_| CHARS[self.below(CHARS.len())])
            .collect()
    }
}

fn seed() -> u64 {
    std::env::var("TOLLGATE_FUZZ_SEED")
        .ok()
        .and_then(|s| {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            }
        })
        .unwrap_or(0x3ED1_A5EE_D015_2026)
}

fn scale() -> usize {
    std::env::var("TOLLGATE_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1usize)
        .max(1)
}

/// Checks an error's status and body shape; returns a finding when wrong.
fn check_error(e: &GatewayError, request: bool) -> Option<String> {
    let status = e.status();
    if !(400..600).contains(&status) {
        return Some(format!("status {status}"));
    }
    if request && !matches!(status, 400 | 413 | 415) {
        return Some(format!("a refused request answered {status}"));
    }
    let body: Value = serde_json::from_str(&tollgate::core::inbound::openai::error_body(e)).ok()?;
    let err = &body["error"];
    if !err["message"].is_string() || !err["type"].is_string() || !err["code"].is_string() {
        return Some(format!("error body not OpenAI-shaped: {body}"));
    }
    None
}

fn mutate(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            b.extend(rng.bytes(8));
            continue;
        }
        let at = rng.below(b.len());
        match rng.below(5) {
            0 => b[at] = rng.next() as u8,
            1 => {
                let end = (at + rng.below(16)).min(b.len());
                b.drain(at..end);
            }
            2 => {
                let ins = rng.bytes(12);
                b.splice(at..at, ins);
            }
            3 => b.truncate(at),
            _ => {
                let dup = b[at..(at + rng.below(32)).min(b.len())].to_vec();
                b.splice(at..at, dup);
            }
        }
    }
    b
}

/// Replaces one JSON node with a value of another type.
fn mutate_json(rng: &mut Rng, v: &Value) -> Value {
    let wrong = [
        Value::Null,
        json!(0),
        json!(-1),
        json!(1.5),
        json!(1e300),
        json!("x"),
        json!(""),
        json!(true),
        json!([]),
        json!({}),
        json!([1, "a"]),
        json!([[]]),
        json!(4294967296u64),
    ];
    match v {
        Value::Object(m) if !m.is_empty() && rng.chance(80) => {
            let mut m = m.clone();
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[rng.below(keys.len())];
            if rng.chance(20) {
                m.remove(k);
            } else {
                let inner = mutate_json(rng, &m[k]);
                m.insert(k.clone(), inner);
            }
            Value::Object(m)
        }
        Value::Array(a) if !a.is_empty() && rng.chance(70) => {
            let mut a = a.clone();
            let i = rng.below(a.len());
            a[i] = mutate_json(rng, &a[i]);
            Value::Array(a)
        }
        _ => wrong[rng.below(wrong.len())].clone(),
    }
}

struct Findings(Vec<String>);

impl Findings {
    fn run(&mut self, case: &str, input: impl Fn() -> String, f: impl FnOnce() -> Option<String>) {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(None) => {}
            Ok(Some(problem)) => self
                .0
                .push(format!("{case}: {problem}\n    input: {}", input())),
            Err(_) => self
                .0
                .push(format!("PANIC in {case}\n    input: {}", input())),
        }
    }
}

fn price(rng: &mut Rng) -> (Price, UnitPrices) {
    let p = Price {
        input: rng.next() % 20_000_000,
        cached_input: None,
        output: rng.next() % 50_000_000,
        reasoning: None,
    };
    let units = UnitPrices {
        image_input: rng.chance(50).then(|| rng.next() % 20_000_000),
        audio_input: rng.chance(50).then(|| rng.next() % 20_000_000),
        images: if rng.chance(50) {
            UnitPrices::parse_image_table(
                r#"[{"size":"1024x1024","quality":"*","price":40000},{"size":"*","quality":"hd","price":120000}]"#,
            )
            .unwrap()
        } else {
            Vec::new()
        },
        characters: rng.chance(50).then(|| rng.next() % 30_000_000),
        minute: rng.chance(50).then(|| rng.next() % 10_000),
    };
    (p, units)
}

/// A billed usage within `worst`'s bounds must cost no more than the reservation of `worst`.
fn covers(worst: &MediaUsage, billed: &MediaUsage, p: &Price, u: &UnitPrices) -> Option<String> {
    let within = billed.tokens.prompt_tokens <= worst.tokens.prompt_tokens
        && billed.tokens.completion_tokens <= worst.tokens.completion_tokens
        && match (billed.metered, worst.metered) {
            (Some(b), Some(w)) => {
                b.unit == w.unit && b.quantity <= w.quantity && b.unit_price <= w.unit_price
            }
            (None, _) => true,
            _ => false,
        };
    if !within {
        return None;
    }
    let r = reservation_micros_scaled(worst, p, u, 12_345);
    let c = cost_micros_scaled(billed, p, u, 12_345);
    (c > r).then(|| format!("cost {c} above reservation {r}"))
}

#[test]
fn fuzz_media() {
    let seed = seed();
    let scale = scale();
    println!("fuzz_media seed {seed:#x} (TOLLGATE_FUZZ_SEED), scale {scale}");
    let mut root = Rng(seed);
    let mut findings = Findings(Vec::new());
    // How many generated inputs were accepted: the fuzz must exercise the success paths too.
    let decoded = std::cell::Cell::new(0usize);
    let transcriptions = std::cell::Cell::new(0usize);

    // ---- multipart: round trips, then hostile bytes --------------------------------------------
    for case in 0..1500 * scale {
        let mut rng = Rng(root.next());
        let fields: Vec<(String, String)> = (0..rng.below(4))
            .map(|_| (rng.text(6) + "f", rng.text(20)))
            .collect();
        let files: Vec<(String, String, Vec<u8>)> = (0..rng.below(3))
            .map(|_| (rng.text(6) + "g", rng.text(10), rng.bytes(200)))
            .collect();
        let mut w = Writer::new();
        for (k, v) in &fields {
            w.text(k, v);
        }
        for (k, f, d) in &files {
            w.file(k, f, "application/octet-stream", d);
        }
        let (ct, body) = w.finish(&format!("case{case}"));
        let show = || format!("{:?}", String::from_utf8_lossy(&body));
        findings.run("multipart round trip", show, || {
            let boundary = multipart::boundary_of(&ct).ok()?;
            let parts = match multipart::parse(&body, &boundary, &Limits::default()) {
                Ok(p) => p,
                Err(e) => return Some(format!("a written form refused: {}", e.message)),
            };
            let want_fields = fields
                .iter()
                .map(|(k, v)| (k.replace(['\r', '\n'], ""), v.as_bytes().to_vec(), None));
            let want_files = files.iter().map(|(k, f, d)| {
                (
                    k.replace(['\r', '\n'], ""),
                    d.clone(),
                    Some(f.replace(['\r', '\n'], "")),
                )
            });
            let want: Vec<_> = want_fields.chain(want_files).collect();
            let got: Vec<_> = parts
                .iter()
                .map(|p| (p.name.clone(), p.data.to_vec(), p.filename.clone()))
                .collect();
            (got != want).then(|| format!("parsed {got:?}, wrote {want:?}"))
        });
        let boundary = multipart::boundary_of(&ct).unwrap_or_default();
        for _ in 0..4 {
            let bad = mutate(&mut rng, &body);
            let limits = Limits {
                max_parts: 1 + rng.below(6),
                max_header_bytes: 16 + rng.below(200),
                max_field_bytes: rng.below(64),
                max_file_bytes: rng.below(300),
            };
            let b = if rng.chance(10) {
                "b".to_string()
            } else {
                boundary.clone()
            };
            let show = || format!("{b:?} {:?}", String::from_utf8_lossy(&bad));
            findings.run("multipart hostile", show, || {
                match multipart::parse(&bad, &b, &limits) {
                    Ok(parts) => {
                        let n = parts.len();
                        (n > limits.max_parts).then(|| format!("{n} parts over the limit"))
                    }
                    Err(e) => check_error(&e, true),
                }
            });
        }
        let ct_bad = String::from_utf8_lossy(&mutate(&mut rng, ct.as_bytes())).into_owned();
        findings.run(
            "content type",
            || ct_bad.clone(),
            || {
                multipart::boundary_of(&ct_bad)
                    .err()
                    .and_then(|e| check_error(&e, true))
            },
        );
    }

    // ---- JSON codecs ---------------------------------------------------------------------------
    let samples = [
        json!({"model":"text-embedding-3-small","input":["a b","c"],"encoding_format":"base64","dimensions":8,"user":"u"}),
        json!({"model":"e","input":[[1,2],[3]]}),
        json!({"model":"dall-e-3","prompt":"otter","n":2,"size":"1024x1024","quality":"hd","response_format":"url","style":"vivid","output_compression":5}),
        json!({"model":"tts-1","input":"Hello world","voice":"alloy","response_format":"opus","speed":1.25,"instructions":"calm"}),
    ];
    for _ in 0..3000 * scale {
        let mut rng = Rng(root.next());
        let which = rng.below(samples.len());
        let body = if rng.chance(10) {
            mutate(&mut rng, samples[which].to_string().as_bytes())
        } else {
            mutate_json(&mut rng, &samples[which])
                .to_string()
                .into_bytes()
        };
        let (p, units) = price(&mut rng);
        let show = || String::from_utf8_lossy(&body).into_owned();
        findings.run("json codecs", show, || match which {
            0 | 1 => match embeddings::decode_request(&body) {
                Ok(r) => {
                    decoded.set(decoded.get() + 1);
                    let worst = r.reservation_usage(Some(Encoding::Cl100kBase));
                    let billed = MediaUsage::tokens(tollgate::core::billing::TokenUsage {
                        prompt_tokens: r.prompt_tokens(Some(Encoding::Cl100kBase)).tokens,
                        ..Default::default()
                    });
                    covers(&worst, &billed, &p, &units)
                }
                Err(e) => check_error(&e, true),
            },
            2 => match images::decode_generation(&body) {
                Ok(r) => match r.reservation_usage(&units, None, 4096) {
                    Ok(worst) => {
                        let billed = images::ImagesResult {
                            images: r.n,
                            usage: None,
                        }
                        .billed(r.unit_price(&units));
                        billed.and_then(|b| covers(&worst, &b, &p, &units))
                    }
                    Err(e) => check_error(&e, true),
                },
                Err(e) => check_error(&e, true),
            },
            _ => match audio::decode_speech(&body) {
                Ok(r) => {
                    let u = r.usage(&units, None, 2000);
                    covers(&u, &u, &p, &units)
                }
                Err(e) => check_error(&e, true),
            },
        });
    }

    // ---- forms: transcriptions and image edits -------------------------------------------------
    let wav = {
        let mut v = b"RIFF\x24\x10\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data\0\x10\0\0".to_vec();
        v.resize(v.len() + 4096, 0);
        v
    };
    for case in 0..1500 * scale {
        let mut rng = Rng(root.next());
        let names = [
            "model",
            "file",
            "image",
            "image[]",
            "mask",
            "prompt",
            "response_format",
            "stream",
            "language",
            "temperature",
            "timestamp_granularities[]",
            "n",
            "size",
            "quality",
            "x",
        ];
        let values = [
            "whisper-1",
            "srt",
            "verbose_json",
            "true",
            "0.3",
            "word",
            "2",
            "1024x1024",
            "hd",
            "",
            "en",
            "nope",
        ];
        let mut w = Writer::new();
        let file = if rng.chance(50) {
            mutate(&mut rng, &wav)
        } else {
            wav.clone()
        };
        if rng.chance(60) {
            w.text("model", "whisper-1")
                .file("file", "f.wav", "audio/wav", &file);
        }
        for _ in 0..rng.below(7) {
            let n = names[rng.below(names.len())];
            if rng.chance(30) {
                w.file(n, "f.wav", "audio/wav", &file);
            } else {
                w.text(n, values[rng.below(values.len())]);
            }
        }
        let (ct, body) = w.finish(&format!("form{case}"));
        let (p, units) = price(&mut rng);
        let translation = rng.chance(30);
        let show = || String::from_utf8_lossy(&body).into_owned();
        findings.run("forms", show, || {
            let parts = multipart::parse(
                &body,
                &multipart::boundary_of(&ct).ok()?,
                &Limits::default(),
            )
            .ok()?;
            if let Err(e) = images::decode_edit(&parts) {
                if let Some(bad) = check_error(&e, true) {
                    return Some(bad);
                }
            }
            match audio::decode_transcription(&parts, translation) {
                Ok(r) => {
                    transcriptions.set(transcriptions.get() + 1);
                    let worst = r.reservation_usage(&units, 1000);
                    let _ = r.upstream_format(&units);
                    let secs = tollgate::core::billing::units::seconds_from_ms(r.duration().ms);
                    let billed = audio::TranscriptUsage::Seconds(secs).billed(units.minute);
                    billed.and_then(|b| covers(&worst, &b, &p, &units))
                }
                Err(e) => check_error(&e, true),
            }
        });
        let junk = mutate(&mut rng, &wav);
        findings.run(
            "wav",
            || format!("{junk:?}"),
            || {
                let d = audio::audio_duration(&junk);
                (d.exact && audio::wav_duration_ms(&junk) != Some(d.ms))
                    .then(|| "inconsistent".to_string())
            },
        );
    }

    // ---- provider answers ----------------------------------------------------------------------
    let answers: [(&str, &[u8]); 7] = [
        (
            "openai",
            include_bytes!("fixtures/media/openai_embeddings_float.json"),
        ),
        (
            "openai",
            include_bytes!("fixtures/media/openai_embeddings_base64.json"),
        ),
        (
            "gemini",
            include_bytes!("fixtures/media/gemini_batch_embed_response.json"),
        ),
        (
            "ollama",
            include_bytes!("fixtures/media/ollama_embed_response.json"),
        ),
        (
            "tei",
            include_bytes!("fixtures/media/tei_embed_response.json"),
        ),
        (
            "images",
            include_bytes!("fixtures/media/openai_images_gpt_image.json"),
        ),
        (
            "verbose",
            include_bytes!("fixtures/media/openai_transcription_verbose.json"),
        ),
    ];
    let strip = |b: &'static [u8]| -> &'static [u8] {
        let text = std::str::from_utf8(b).unwrap();
        text.split_once('\n').map_or(b, |(_, rest)| rest.as_bytes())
    };
    let mut form_body = Vec::new();
    let request = {
        let mut w = Writer::new();
        w.text("model", "m").text("response_format", "vtt").file(
            "file",
            "a.wav",
            "audio/wav",
            &wav,
        );
        let (ct, body) = w.finish("t");
        form_body.extend_from_slice(&body);
        let leaked: &'static [u8] = Box::leak(form_body.clone().into_boxed_slice());
        let parts = multipart::parse(
            leaked,
            &multipart::boundary_of(&ct).unwrap(),
            &Limits::default(),
        )
        .unwrap();
        audio::decode_transcription(&parts, false).unwrap()
    };
    for _ in 0..3000 * scale {
        let mut rng = Rng(root.next());
        let (kind, raw) = answers[rng.below(answers.len())];
        let raw = strip(raw);
        let body = if rng.chance(50) {
            match serde_json::from_slice::<Value>(raw) {
                Ok(v) => mutate_json(&mut rng, &v).to_string().into_bytes(),
                Err(_) => mutate(&mut rng, raw),
            }
        } else {
            mutate(&mut rng, raw)
        };
        let expected = 1 + rng.below(3);
        let show = || format!("{kind}: {}", String::from_utf8_lossy(&body));
        findings.run("provider answers", show, || {
            let result =
                match kind {
                    "openai" => media::parse_embeddings(ProviderKind::OpenAi, "", &body, expected)
                        .map(|_| ()),
                    "gemini" => media::parse_embeddings(ProviderKind::Gemini, "", &body, expected)
                        .map(|_| ()),
                    "ollama" => media::parse_embeddings(ProviderKind::Ollama, "", &body, expected)
                        .map(|_| ()),
                    "tei" => media::parse_embeddings(
                        ProviderKind::HuggingFace,
                        "http://tei",
                        &body,
                        expected,
                    )
                    .map(|_| ()),
                    "images" => media::openai::parse_images(&body).map(|_| ()),
                    _ => media::openai::parse_transcription(
                        &body,
                        &request,
                        TranscriptFormat::VerboseJson,
                    )
                    .map(|_| ()),
                };
            result.err().and_then(|e| check_error(&e, false))
        });
    }

    // ---- transcription streams ------------------------------------------------------------------
    let stream = strip(include_bytes!(
        "fixtures/media/openai_transcription_stream.sse"
    ));
    let mut whole = TranscriptStream::new();
    whole.push(stream);
    whole.finish();
    for _ in 0..2000 * scale {
        let mut rng = Rng(root.next());
        let body = if rng.chance(50) {
            mutate(&mut rng, stream)
        } else {
            stream.to_vec()
        };
        let cuts: Vec<usize> = {
            let mut c: Vec<usize> = (0..rng.below(6))
                .map(|_| rng.below(body.len() + 1))
                .collect();
            c.sort_unstable();
            c
        };
        let show = || format!("{cuts:?} {:?}", String::from_utf8_lossy(&body));
        let valid = body == stream;
        let (want_text, want_usage) = (whole.text.clone(), whole.usage);
        findings.run("transcript stream", show, || {
            let mut s = TranscriptStream::new();
            let mut errors = Vec::new();
            let mut at = 0;
            for &c in cuts.iter().chain(std::iter::once(&body.len())) {
                errors.extend(s.push(&body[at..c]));
                at = c;
            }
            errors.extend(s.finish());
            if errors.len() > 1 {
                return Some(format!("{} errors", errors.len()));
            }
            if let Some(bad) = errors.iter().find_map(|e| check_error(e, false)) {
                return Some(bad);
            }
            (valid && (s.text != want_text || s.usage != want_usage || !errors.is_empty()))
                .then(|| format!("split changed the result: {:?} {:?}", s.text, s.usage))
        });
    }

    // ---- image and speech event streams ----------------------------------------------------------
    // Split anywhere, the watchers see the same images, usage and done event; mutated, they never
    // panic and never count more completed images than the body has `completed` events.
    let images = strip(include_bytes!("fixtures/media/openai_images_stream.sse"));
    let speech = strip(include_bytes!("fixtures/media/openai_speech_stream.sse"));
    let mut whole_images = ImageStream::new();
    whole_images.push(images);
    whole_images.finish();
    let mut whole_speech = SpeechStream::new();
    whole_speech.push(speech);
    whole_speech.finish();
    for i in 0..2000 * scale {
        let mut rng = Rng(root.next());
        let original = if i % 2 == 0 { images } else { speech };
        let body = if rng.chance(50) {
            mutate(&mut rng, original)
        } else {
            original.to_vec()
        };
        let cuts: Vec<usize> = {
            let mut c: Vec<usize> = (0..rng.below(6))
                .map(|_| rng.below(body.len() + 1))
                .collect();
            c.sort_unstable();
            c
        };
        let show = || format!("{cuts:?} {:?}", String::from_utf8_lossy(&body));
        let valid = body == original;
        let feed = |push: &mut dyn FnMut(&[u8])| {
            let mut at = 0;
            for &c in cuts.iter().chain(std::iter::once(&body.len())) {
                push(&body[at..c]);
                at = c;
            }
        };
        if i % 2 == 0 {
            let want = whole_images.result();
            findings.run("image stream", show, || {
                let mut s = ImageStream::new();
                feed(&mut |b| s.push(b));
                s.finish();
                let events = body.windows(9).filter(|w| w == b"completed").count() as u64;
                if s.completed > events {
                    return Some(format!("{} completed of {events}", s.completed));
                }
                (valid && s.result() != want)
                    .then(|| format!("split changed the result: {:?}", s.result()))
            });
        } else {
            let want = (whole_speech.done, whole_speech.usage);
            findings.run("speech stream", show, || {
                let mut s = SpeechStream::new();
                feed(&mut |b| s.push(b));
                s.finish();
                (valid && (s.done, s.usage) != want)
                    .then(|| format!("split changed the result: {:?}", s.usage))
            });
        }
    }

    assert!(
        decoded.get() > 100 * scale && transcriptions.get() > 20 * scale,
        "too few inputs accepted: {} embeddings, {} transcriptions",
        decoded.get(),
        transcriptions.get()
    );
    assert!(
        findings.0.is_empty(),
        "{} findings (seed {seed:#x}):\n{}",
        findings.0.len(),
        findings
            .0
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
