//! What a finished media request is billed at, and whether the provider's figures or the
//! gateway's own stand behind it (`usage_source`): the settlement rules of each endpoint, pure,
//! for the edge to apply after the answer.
//!
//! | endpoint | billed on the provider's figures (`upstream`) | else (`local`) |
//! |---|---|---|
//! | embeddings | `usage.prompt_tokens` (OpenAI, Azure, router), `prompt_eval_count` (Ollama) | the local count: exact with the model's encoding, else the estimate (Gemini, TEI report none) |
//! | images | per image: the images returned × the table price; on tokens: the reported usage | the reservation (a token-priced answer without usage) |
//! | images, streamed | the completed events: images × the table price, or their summed usage | before any completed image: the reservation |
//! | speech | — (the endpoint reports nothing) | the characters of the input (exact), or on tokens the reservation |
//! | speech, `stream_format: "sse"` | on tokens: the `speech.audio.done` usage | the characters (exact), or on tokens the reservation |
//! | transcription | usage seconds / the verbose `duration`, or the reported tokens | per minute: the WAV's exact duration, else the reservation's estimate; on tokens: the reservation's audio estimate + the transcript's local count |

use crate::core::billing::units::{seconds_from_ms, MediaUsage, Unit, UnitPrices};
use crate::core::billing::TokenUsage;
use crate::core::inbound::audio::{Duration, SpeechRequest, TranscriptUsage, TranscriptionRequest};
use crate::core::inbound::embeddings::{Embeddings, EmbeddingsRequest};
use crate::core::inbound::images::{ImageRequest, ImagesResult};
use crate::core::tokens::{estimate_text_tokens, Encoding};

use super::streams::SpeechTokens;

/// Whose figures a bill rests on (`usage.usage_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Upstream,
    Local,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Upstream => "upstream",
            Source::Local => "local",
        }
    }
}

/// A settled media request's usage and its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Billed {
    pub usage: MediaUsage,
    pub source: Source,
}

fn tokens(prompt: u64, completion: u64) -> TokenUsage {
    TokenUsage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        ..TokenUsage::default()
    }
}

pub fn embeddings(
    req: &EmbeddingsRequest,
    encoding: Option<Encoding>,
    answer: &Embeddings,
) -> Billed {
    match answer.prompt_tokens {
        Some(p) => Billed {
            usage: MediaUsage::tokens(tokens(p, 0)),
            source: Source::Upstream,
        },
        None => Billed {
            usage: MediaUsage::tokens(tokens(req.prompt_tokens(encoding).tokens, 0)),
            source: Source::Local,
        },
    }
}

pub fn images(
    req: &ImageRequest<'_>,
    units: &UnitPrices,
    answer: &ImagesResult,
    reserved: &MediaUsage,
) -> Billed {
    match answer.billed(req.unit_price(units)) {
        Some(usage) => Billed {
            usage,
            source: Source::Upstream,
        },
        None => Billed {
            usage: *reserved,
            source: Source::Local,
        },
    }
}

/// A streamed image answer: `seen` is what its completed events said
/// ([`super::streams::ImageStream::result`]), `unit_price` the request's
/// ([`ImageRequest::unit_price`]); none completed is billed the reservation.
pub fn image_stream(
    unit_price: Option<u64>,
    seen: Option<ImagesResult>,
    reserved: &MediaUsage,
) -> Billed {
    match seen.and_then(|answer| answer.billed(unit_price)) {
        Some(usage) => Billed {
            usage,
            source: Source::Upstream,
        },
        None => Billed {
            usage: *reserved,
            source: Source::Local,
        },
    }
}

/// Speech streamed as events: a token-priced model is billed on the done event's usage when it
/// came; a character-priced one on its characters, as a plain request.
pub fn speech_stream(
    req: &SpeechRequest,
    units: &UnitPrices,
    encoding: Option<Encoding>,
    max_output_tokens: u64,
    reported: Option<SpeechTokens>,
) -> Billed {
    match (units.characters, reported) {
        (None, Some(u)) => Billed {
            usage: MediaUsage::tokens(tokens(u.input_tokens, u.output_tokens)),
            source: Source::Upstream,
        },
        _ => speech(req, units, encoding, max_output_tokens),
    }
}

pub fn speech(
    req: &SpeechRequest,
    units: &UnitPrices,
    encoding: Option<Encoding>,
    max_output_tokens: u64,
) -> Billed {
    Billed {
        usage: req.usage(units, encoding, max_output_tokens),
        source: Source::Local,
    }
}

/// `reported` is the answer's usage (plain answer or the stream's done event), `text` the
/// transcript received (for a local count), `reserved` the reservation's usage.
pub fn transcription(
    req: &TranscriptionRequest<'_>,
    units: &UnitPrices,
    reported: Option<TranscriptUsage>,
    text: &str,
    encoding: Option<Encoding>,
    reserved: &MediaUsage,
) -> Billed {
    transcription_of(req.duration(), units, reported, text, encoding, reserved)
}

/// [`transcription`] with the upload's duration given (a stream is billed after the request's
/// body is gone).
pub fn transcription_of(
    duration: Duration,
    units: &UnitPrices,
    reported: Option<TranscriptUsage>,
    text: &str,
    encoding: Option<Encoding>,
    reserved: &MediaUsage,
) -> Billed {
    if let Some(usage) = reported.and_then(|r| r.billed(units.minute)) {
        return Billed {
            usage,
            source: Source::Upstream,
        };
    }
    let usage = match units.minute {
        Some(price) => {
            let d = duration;
            if d.exact {
                MediaUsage::metered(Unit::Seconds, seconds_from_ms(d.ms), price)
            } else {
                *reserved
            }
        }
        None => {
            let out = encoding.map_or_else(|| estimate_text_tokens(text), |e| e.count(text));
            MediaUsage {
                tokens: tokens(reserved.tokens.prompt_tokens, out),
                ..*reserved
            }
        }
    };
    Billed {
        usage,
        source: Source::Local,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::billing::units::cost_micros;
    use crate::core::billing::Price;
    use crate::core::inbound::audio::{decode_speech, decode_transcription};
    use crate::core::inbound::embeddings::decode_request;
    use crate::core::inbound::images::{decode_generation, ImageTokens};
    use crate::core::multipart::{self, Limits, Writer};

    #[test]
    fn embeddings_bill_the_reported_tokens_else_the_local_count() {
        let req =
            decode_request(br#"{"model":"m","input":"The food was delicious and the waiter..."}"#)
                .unwrap();
        let price = Price {
            input: 20_000, // text-embedding-3-small, $0.02 / 1M
            ..Price::default()
        };
        let reported = Embeddings {
            vectors: vec![vec![0.0]],
            prompt_tokens: Some(8),
        };
        let b = embeddings(&req, None, &reported);
        assert_eq!(
            (b.usage.tokens.prompt_tokens, b.source),
            (8, Source::Upstream)
        );
        assert_eq!(cost_micros(&b.usage, &price, &UnitPrices::default()), 1); // 0.16 micro, rounded up
        let silent = Embeddings {
            prompt_tokens: None,
            ..reported
        };
        let b = embeddings(&req, Some(Encoding::Cl100kBase), &silent);
        assert_eq!((b.usage.tokens.prompt_tokens, b.source), (8, Source::Local));
    }

    #[test]
    fn images_bill_per_image_or_on_tokens() {
        let units = UnitPrices {
            images: UnitPrices::parse_image_table(
                r#"[{"size":"1024x1024","quality":"standard","price":40000}]"#,
            )
            .unwrap(),
            ..UnitPrices::default()
        };
        let req = decode_generation(
            br#"{"model":"m","prompt":"p","n":3,"size":"1024x1024","quality":"standard"}"#,
        )
        .unwrap();
        let reserved = req.reservation_usage(&units, None, 0).unwrap();
        // The provider returned 2 of 3 images: 2 are billed.
        let b = images(
            &req,
            &units,
            &ImagesResult {
                images: 2,
                usage: None,
            },
            &reserved,
        );
        assert_eq!(cost_micros(&b.usage, &Price::default(), &units), 80_000);
        let tokens_only = UnitPrices::default();
        let reserved = req.reservation_usage(&tokens_only, None, 5000).unwrap();
        let answer = ImagesResult {
            images: 1,
            usage: Some(ImageTokens {
                input_tokens: 50,
                image_input_tokens: 40,
                output_tokens: 4160,
            }),
        };
        let b = images(&req, &tokens_only, &answer, &reserved);
        assert_eq!(
            (b.usage.tokens.completion_tokens, b.source),
            (4160, Source::Upstream)
        );
        let b = images(
            &req,
            &tokens_only,
            &ImagesResult {
                images: 1,
                usage: None,
            },
            &reserved,
        );
        assert_eq!((b.usage, b.source), (reserved, Source::Local));
    }

    #[test]
    fn streamed_images_bill_the_completed_events_else_the_reservation() {
        let units = UnitPrices {
            images: UnitPrices::parse_image_table(
                r#"[{"size":"1024x1024","quality":"low","price":11000}]"#,
            )
            .unwrap(),
            ..UnitPrices::default()
        };
        let req = decode_generation(
            br#"{"model":"m","prompt":"p","n":2,"size":"1024x1024","quality":"low","stream":true,"partial_images":1}"#,
        )
        .unwrap();
        let reserved = req.reservation_usage(&units, None, 0).unwrap();
        let one = ImagesResult {
            images: 1,
            usage: None,
        };
        let b = image_stream(req.unit_price(&units), Some(one), &reserved);
        assert_eq!(b.source, Source::Upstream);
        assert_eq!(cost_micros(&b.usage, &Price::default(), &units), 11_000);
        // Cut before any completed image: the reservation (both images).
        let b = image_stream(req.unit_price(&units), None, &reserved);
        assert_eq!((b.usage, b.source), (reserved, Source::Local));
        assert_eq!(cost_micros(&b.usage, &Price::default(), &units), 22_000);
    }

    #[test]
    fn streamed_speech_bills_the_done_usage_on_a_token_model() {
        let req = decode_speech(
            br#"{"model":"gpt-4o-mini-tts","input":"Hello!","voice":"alloy","stream_format":"sse"}"#,
        )
        .unwrap();
        let reported = Some(SpeechTokens {
            input_tokens: 14,
            output_tokens: 101,
        });
        let b = speech_stream(&req, &UnitPrices::default(), None, 2000, reported);
        assert_eq!(b.source, Source::Upstream);
        assert_eq!(
            (
                b.usage.tokens.prompt_tokens,
                b.usage.tokens.completion_tokens
            ),
            (14, 101)
        );
        // Without a done event: the reservation (input + max_output_tokens).
        let b = speech_stream(&req, &UnitPrices::default(), None, 2000, None);
        assert_eq!(
            (b.usage.tokens.completion_tokens, b.source),
            (2000, Source::Local)
        );
        // A character-priced model: its characters, whatever the events say.
        let chars = UnitPrices {
            characters: Some(15_000_000),
            ..UnitPrices::default()
        };
        let b = speech_stream(&req, &chars, None, 2000, reported);
        assert_eq!(cost_micros(&b.usage, &Price::default(), &chars), 90);
    }

    #[test]
    fn speech_bills_characters() {
        let req = decode_speech(br#"{"model":"tts-1","input":"Hello!","voice":"alloy"}"#).unwrap();
        let units = UnitPrices {
            characters: Some(15_000_000),
            ..UnitPrices::default()
        };
        let b = speech(&req, &units, None, 0);
        assert_eq!(cost_micros(&b.usage, &Price::default(), &units), 90); // 6 × $15/1M
    }

    #[test]
    fn transcriptions_bill_reported_seconds_or_the_wav_length() {
        // 2.5 s of 16 kHz 16-bit mono.
        let mut wav =
            b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data"
                .to_vec();
        wav.extend_from_slice(&80_000u32.to_le_bytes());
        wav.resize(wav.len() + 80_000, 0);
        let mut w = Writer::new();
        w.text("model", "whisper-1")
            .file("file", "a.wav", "audio/wav", &wav);
        let (ct, body) = w.finish("s");
        let parts = multipart::parse(
            &body,
            &multipart::boundary_of(&ct).unwrap(),
            &Limits::default(),
        )
        .unwrap();
        let req = decode_transcription(&parts, false).unwrap();
        let units = UnitPrices {
            minute: Some(6_000), // whisper-1, $0.006 / minute
            ..UnitPrices::default()
        };
        let reserved = req.reservation_usage(&units, 0);
        assert_eq!(reserved.metered.unwrap().quantity, 3);
        let b = transcription(
            &req,
            &units,
            Some(TranscriptUsage::Seconds(9)),
            "",
            None,
            &reserved,
        );
        assert_eq!(
            (cost_micros(&b.usage, &Price::default(), &units), b.source),
            (900, Source::Upstream)
        );
        let b = transcription(&req, &units, None, "", None, &reserved);
        assert_eq!(
            (cost_micros(&b.usage, &Price::default(), &units), b.source),
            (300, Source::Local)
        );
        // Token-priced: reported tokens, else the audio estimate and the transcript's count.
        let t = UnitPrices::default();
        let reserved = req.reservation_usage(&t, 1000);
        let reported = TranscriptUsage::Tokens {
            input_tokens: 14,
            audio_input_tokens: 14,
            output_tokens: 45,
        };
        let b = transcription(&req, &t, Some(reported), "", None, &reserved);
        assert_eq!(b.usage.tokens.completion_tokens, 45);
        let b = transcription(
            &req,
            &t,
            None,
            "hello world",
            Some(Encoding::O200kBase),
            &reserved,
        );
        assert_eq!(
            (
                b.usage.tokens.completion_tokens,
                b.usage.audio_input_tokens,
                b.source
            ),
            (2, 30, Source::Local)
        );
        // A report in the other basis is not used.
        let b = transcription(&req, &units, Some(reported), "", None, &reserved);
        assert_eq!(b.source, Source::Local);
    }
}
