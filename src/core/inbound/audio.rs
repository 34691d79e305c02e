//! OpenAI's audio endpoints as inbound codecs: `POST /v1/audio/speech` (JSON in, audio bytes
//! out) and `POST /v1/audio/transcriptions` / `POST /v1/audio/translations` (multipart in, text
//! out).
//!
//! Follows the API reference "Audio" (<https://platform.openai.com/docs/api-reference/audio>),
//! the text-to-speech guide (<https://platform.openai.com/docs/guides/text-to-speech>), the
//! speech-to-text guide (<https://platform.openai.com/docs/guides/speech-to-text>) and the
//! transcription streaming events
//! (<https://platform.openai.com/docs/api-reference/audio/transcript-text-delta-event>).
//!
//! **Speech.** `model`, `input` (1 to [`MAX_SPEECH_CHARS`] characters), `voice` (a name or
//! `{"id": …}`), `response_format` ([`AudioFormat`], default `mp3`: the content type the client
//! gets), `speed` (0.25–4), `instructions`, `stream_format` (`audio`: the audio body streams
//! through; `sse`: the provider's `speech.audio.delta` / `speech.audio.done` events are relayed,
//! and the done event's usage bills a token-priced model). Billed per character when the model has a character price
//! (`input.chars().count()`), else on tokens (the local count of the input and the model's
//! `max_output_tokens` of audio: the speech endpoint reports no usage).
//!
//! **Transcription / translation.** A form with `file` (required, at most
//! [`crate::core::multipart::MAX_AUDIO_FILE_BYTES`]), `model`, `language` (transcription only),
//! `prompt`, `response_format` ([`TranscriptFormat`]), `temperature` (0–1),
//! `timestamp_granularities[]`, `include[]`, `chunking_strategy`, `stream` (transcription
//! only). The reservation estimates the audio's length ([`audio_duration`]): exact for WAV (its
//! header's byte rate and data size), else the upload's size at [`MIN_BYTES_PER_SECOND`] (a
//! bitrate below any speech codec's in use, so an over-estimate).

use serde_json::{json, Map, Value};

use crate::core::billing::units::{seconds_from_ms, MediaUsage, Unit, UnitPrices};
use crate::core::billing::TokenUsage;
use crate::core::error::GatewayError;
use crate::core::inbound::images::FilePart;
use crate::core::multipart::Part;
use crate::core::tokens::{estimate_text_tokens, Encoding};

/// The longest speech input (OpenAI's limit).
pub const MAX_SPEECH_CHARS: usize = 4096;

/// The lowest bitrate assumed for an upload whose duration cannot be read: 16 kbit/s.
pub const MIN_BYTES_PER_SECOND: u64 = 2_000;

/// Audio input tokens per second reserved for a token-priced transcription model (the
/// provider's usage settles the exact count).
pub const AUDIO_TOKENS_PER_SECOND: u64 = 10;

fn invalid(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_param(param, message)
}

/// A speech `response_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    Mp3,
    Opus,
    Aac,
    Flac,
    Wav,
    Pcm,
}

impl AudioFormat {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "mp3" => AudioFormat::Mp3,
            "opus" => AudioFormat::Opus,
            "aac" => AudioFormat::Aac,
            "flac" => AudioFormat::Flac,
            "wav" => AudioFormat::Wav,
            "pcm" => AudioFormat::Pcm,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AudioFormat::Mp3 => "mp3",
            AudioFormat::Opus => "opus",
            AudioFormat::Aac => "aac",
            AudioFormat::Flac => "flac",
            AudioFormat::Wav => "wav",
            AudioFormat::Pcm => "pcm",
        }
    }

    /// The content type of the audio the client receives (`pcm` is raw 24 kHz 16-bit
    /// little-endian mono samples, without a header).
    pub fn content_type(self) -> &'static str {
        match self {
            AudioFormat::Mp3 => "audio/mpeg",
            AudioFormat::Opus => "audio/opus",
            AudioFormat::Aac => "audio/aac",
            AudioFormat::Flac => "audio/flac",
            AudioFormat::Wav => "audio/wav",
            AudioFormat::Pcm => "audio/pcm",
        }
    }
}

/// A decoded `/v1/audio/speech` request.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechRequest {
    pub model: String,
    pub input: String,
    /// A voice name or `{"id": …}`, as sent.
    pub voice: Value,
    pub response_format: AudioFormat,
    /// `speed`, `instructions`, `stream_format` when sent, checked.
    pub params: Map<String, Value>,
}

/// Decodes a speech request.
pub fn decode_speech(body: &[u8]) -> Result<SpeechRequest, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("The request body is not valid JSON: {e}"))
    })?;
    let Value::Object(map) = value else {
        return Err(GatewayError::invalid_request(
            "The request body must be a JSON object.",
        ));
    };
    let mut model = None;
    let mut input = None;
    let mut voice = None;
    let mut format = AudioFormat::Mp3;
    let mut params = Map::new();
    for (name, value) in map {
        if value.is_null() {
            continue;
        }
        match name.as_str() {
            "model" => {
                model = value.as_str().filter(|m| !m.is_empty()).map(str::to_string);
                if model.is_none() {
                    return Err(invalid("model", "'model' must be a non-empty string."));
                }
            }
            "input" => {
                let s = value
                    .as_str()
                    .ok_or_else(|| invalid("input", "'input' must be a string."))?;
                let chars = s.chars().count();
                if chars == 0 || chars > MAX_SPEECH_CHARS {
                    return Err(invalid(
                        "input",
                        format!("'input' must be 1 to {MAX_SPEECH_CHARS} characters."),
                    ));
                }
                input = Some(s.to_string());
            }
            "voice" => {
                let ok = match &value {
                    Value::String(s) => !s.is_empty() && s.len() <= 128,
                    Value::Object(o) => o
                        .get("id")
                        .and_then(Value::as_str)
                        .is_some_and(|id| !id.is_empty()),
                    _ => false,
                };
                if !ok {
                    return Err(invalid(
                        "voice",
                        "'voice' must be a voice name or {\"id\": …}.",
                    ));
                }
                voice = Some(value);
            }
            "response_format" => {
                format = value.as_str().and_then(AudioFormat::parse).ok_or_else(|| {
                    invalid(
                        "response_format",
                        "'response_format' must be mp3, opus, aac, flac, wav or pcm.",
                    )
                })?;
            }
            "speed" => {
                let ok = value.as_f64().is_some_and(|s| (0.25..=4.0).contains(&s));
                if !ok {
                    return Err(invalid(
                        "speed",
                        "'speed' must be a number from 0.25 to 4.0.",
                    ));
                }
                params.insert(name, value);
            }
            "instructions" => {
                if !value.is_string() {
                    return Err(invalid("instructions", "'instructions' must be a string."));
                }
                params.insert(name, value);
            }
            "stream_format" => match value.as_str() {
                Some("audio" | "sse") => {
                    params.insert(name, value);
                }
                _ => {
                    return Err(invalid(
                        "stream_format",
                        "'stream_format' must be 'audio' or 'sse'.",
                    ))
                }
            },
            _ => {
                return Err(invalid(
                    &name,
                    format!("Unrecognized request argument supplied: {name}"),
                )
                .with_code("unknown_parameter"))
            }
        }
    }
    Ok(SpeechRequest {
        model: model.ok_or_else(|| invalid("model", "Missing required parameter: 'model'."))?,
        input: input.ok_or_else(|| invalid("input", "Missing required parameter: 'input'."))?,
        voice: voice.ok_or_else(|| invalid("voice", "Missing required parameter: 'voice'."))?,
        response_format: format,
        params,
    })
}

impl SpeechRequest {
    /// `stream_format: "sse"`: the answer is server-sent events, not audio bytes.
    pub fn sse(&self) -> bool {
        self.params.get("stream_format").and_then(Value::as_str) == Some("sse")
    }

    /// The content type of the answer: the events', or the audio format's.
    pub fn content_type(&self) -> &'static str {
        if self.sse() {
            "text/event-stream; charset=utf-8"
        } else {
            self.response_format.content_type()
        }
    }

    /// Characters of the input (the quantity of a character-priced model).
    pub fn characters(&self) -> u64 {
        self.input.chars().count() as u64
    }

    /// What the request is billed (and reserved) at: exactly its characters on a
    /// character-priced model, else the local token count of the input and `max_output_tokens`.
    pub fn usage(
        &self,
        units: &UnitPrices,
        encoding: Option<Encoding>,
        max_output_tokens: u64,
    ) -> MediaUsage {
        match units.characters {
            Some(price) => MediaUsage::metered(Unit::Characters, self.characters(), price),
            None => MediaUsage::tokens(TokenUsage {
                prompt_tokens: encoding.map_or_else(
                    || estimate_text_tokens(&self.input),
                    |e| e.count(&self.input),
                ),
                completion_tokens: max_output_tokens,
                ..TokenUsage::default()
            }),
        }
    }

    /// The upstream JSON body (OpenAI's shape) with `model` replaced.
    pub fn to_json(&self, upstream_model: &str) -> Value {
        let mut body = Map::new();
        body.insert("model".into(), upstream_model.into());
        body.insert("input".into(), self.input.clone().into());
        body.insert("voice".into(), self.voice.clone());
        body.insert(
            "response_format".into(),
            self.response_format.as_str().into(),
        );
        body.extend(self.params.clone());
        Value::Object(body)
    }
}

/// A transcription `response_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranscriptFormat {
    Json,
    Text,
    Srt,
    Vtt,
    VerboseJson,
}

impl TranscriptFormat {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "json" => TranscriptFormat::Json,
            "text" => TranscriptFormat::Text,
            "srt" => TranscriptFormat::Srt,
            "vtt" => TranscriptFormat::Vtt,
            "verbose_json" => TranscriptFormat::VerboseJson,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TranscriptFormat::Json => "json",
            TranscriptFormat::Text => "text",
            TranscriptFormat::Srt => "srt",
            TranscriptFormat::Vtt => "vtt",
            TranscriptFormat::VerboseJson => "verbose_json",
        }
    }

    /// The content type of the answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            TranscriptFormat::Json | TranscriptFormat::VerboseJson => "application/json",
            TranscriptFormat::Text => "text/plain; charset=utf-8",
            TranscriptFormat::Srt => "application/x-subrip",
            TranscriptFormat::Vtt => "text/vtt; charset=utf-8",
        }
    }
}

/// A decoded transcription or translation request; the file is borrowed from the body.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptionRequest<'a> {
    /// `/v1/audio/translations` (into English) rather than transcriptions.
    pub translation: bool,
    pub model: String,
    pub file: FilePart<'a>,
    pub response_format: TranscriptFormat,
    pub stream: bool,
    /// Other text fields in order (`language`, `prompt`, `temperature`,
    /// `timestamp_granularities[]`, `include[]`, `chunking_strategy`), checked.
    pub fields: Vec<(String, String)>,
}

/// Decodes a transcription (`translation = false`) or translation form.
pub fn decode_transcription<'a>(
    parts: &[Part<'a>],
    translation: bool,
) -> Result<TranscriptionRequest<'a>, GatewayError> {
    let mut model = None;
    let mut file = None;
    let mut format = TranscriptFormat::Json;
    let mut stream = false;
    let mut fields = Vec::new();
    for part in parts {
        let name = part.name.as_str();
        if name == "file" {
            if file.is_some() || !part.is_file() {
                return Err(invalid("file", "'file' must be one file upload."));
            }
            if part.data.is_empty() {
                return Err(invalid("file", "The uploaded file is empty."));
            }
            file = Some(FilePart::from_part(part, "application/octet-stream"));
            continue;
        }
        if part.is_file() {
            return Err(invalid(name, format!("'{name}' must be a text field.")));
        }
        let text = part.text()?.trim();
        match name {
            "model" if !text.is_empty() => model = Some(text.to_string()),
            "model" => return Err(invalid("model", "'model' must not be empty.")),
            "response_format" => {
                format = TranscriptFormat::parse(text).ok_or_else(|| {
                    invalid(
                        "response_format",
                        "'response_format' must be json, text, srt, verbose_json or vtt.",
                    )
                })?
            }
            "stream" if !translation => {
                stream = match text {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid("stream", "'stream' must be true or false.")),
                }
            }
            "temperature" => {
                if !text.parse::<f64>().is_ok_and(|t| (0.0..=1.0).contains(&t)) {
                    return Err(invalid(
                        "temperature",
                        "'temperature' must be a number from 0 to 1.",
                    ));
                }
                fields.push((name.to_string(), text.to_string()));
            }
            "timestamp_granularities[]" | "timestamp_granularities" => {
                if !matches!(text, "word" | "segment") {
                    return Err(invalid(
                        "timestamp_granularities",
                        "'timestamp_granularities[]' must be word or segment.",
                    ));
                }
                fields.push(("timestamp_granularities[]".to_string(), text.to_string()));
            }
            "language" if !translation => {
                if text.is_empty() || text.len() > 16 {
                    return Err(invalid("language", "'language' must be an ISO-639-1 code."));
                }
                fields.push((name.to_string(), text.to_string()));
            }
            "prompt" | "include[]" | "chunking_strategy" => {
                fields.push((name.to_string(), part.text()?.to_string()))
            }
            other => {
                return Err(invalid(
                    other,
                    format!("Unrecognized request argument supplied: {other}"),
                )
                .with_code("unknown_parameter"))
            }
        }
    }
    Ok(TranscriptionRequest {
        translation,
        model: model.ok_or_else(|| invalid("model", "Missing required parameter: 'model'."))?,
        file: file.ok_or_else(|| invalid("file", "Missing required parameter: 'file'."))?,
        response_format: format,
        stream,
        fields,
    })
}

/// An audio duration: milliseconds and whether they were read from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration {
    pub ms: u64,
    pub exact: bool,
}

/// The duration of an uploaded audio file: exact for a PCM WAV file (its `fmt ` byte rate and
/// `data` size), else an over-estimate from its size at [`MIN_BYTES_PER_SECOND`].
pub fn audio_duration(data: &[u8]) -> Duration {
    if let Some(ms) = wav_duration_ms(data) {
        return Duration { ms, exact: true };
    }
    Duration {
        ms: (data.len() as u64)
            .saturating_mul(1000)
            .div_ceil(MIN_BYTES_PER_SECOND),
        exact: false,
    }
}

/// A RIFF/WAVE file's duration in ms (rounded up), from its chunks; `None` for anything else.
pub fn wav_duration_ms(data: &[u8]) -> Option<u64> {
    if data.get(0..4)? != b"RIFF" || data.get(8..12)? != b"WAVE" {
        return None;
    }
    let u32_at = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(data.get(i..i + 4)?.try_into().ok()?))
    };
    let mut pos = 12usize;
    let mut byte_rate = None;
    while pos + 8 <= data.len() {
        let id = data.get(pos..pos + 4)?;
        let size = u32_at(pos + 4)? as usize;
        let body = pos + 8;
        match id {
            b"fmt " => byte_rate = u32_at(body + 8).filter(|&r| r > 0),
            b"data" => {
                // A streamed WAV may say 0 or 0xFFFFFFFF: then the data runs to the end.
                let available = data.len() - body;
                let len = if size == 0 || size > available {
                    available
                } else {
                    size
                };
                let rate = u64::from(byte_rate?);
                return Some((len as u64).saturating_mul(1000).div_ceil(rate));
            }
            _ => {}
        }
        pos = body.checked_add(size)?.checked_add(size & 1)?;
    }
    None
}

impl TranscriptionRequest<'_> {
    /// The audio's estimated duration.
    pub fn duration(&self) -> Duration {
        audio_duration(self.file.data)
    }

    /// The worst-case usage to reserve: the estimated seconds on a minute-priced model, else
    /// audio input tokens at [`AUDIO_TOKENS_PER_SECOND`] plus the prompt's tokens and the model's
    /// `max_output_tokens`.
    pub fn reservation_usage(&self, units: &UnitPrices, max_output_tokens: u64) -> MediaUsage {
        let seconds = seconds_from_ms(self.duration().ms);
        match units.minute {
            Some(price) => MediaUsage::metered(Unit::Seconds, seconds, price),
            None => {
                let audio = seconds.saturating_mul(AUDIO_TOKENS_PER_SECOND);
                let prompt = self
                    .fields
                    .iter()
                    .filter(|(k, _)| k == "prompt")
                    .map(|(_, v)| estimate_text_tokens(v))
                    .sum::<u64>();
                MediaUsage {
                    tokens: TokenUsage {
                        prompt_tokens: audio.saturating_add(prompt),
                        completion_tokens: max_output_tokens,
                        ..TokenUsage::default()
                    },
                    audio_input_tokens: audio,
                    ..MediaUsage::default()
                }
            }
        }
    }

    /// The format to ask the provider for: `verbose_json` on a minute-priced model (its
    /// `duration` bills the request exactly; the client's format is rendered from it), `json` on
    /// a token-priced one when the client wants `text` (its `usage` bills it), else the client's.
    pub fn upstream_format(&self, units: &UnitPrices) -> TranscriptFormat {
        if self.stream {
            return self.response_format;
        }
        match (units.minute.is_some(), self.response_format) {
            (true, _) => TranscriptFormat::VerboseJson,
            (false, TranscriptFormat::Text) => TranscriptFormat::Json,
            (false, f) => f,
        }
    }
}

/// Usage a transcription answer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranscriptUsage {
    /// `{"type": "tokens", …}`.
    Tokens {
        input_tokens: u64,
        audio_input_tokens: u64,
        output_tokens: u64,
    },
    /// `{"type": "duration", "seconds": …}` or a verbose answer's `duration`, whole seconds
    /// rounded up.
    Seconds(u64),
}

impl TranscriptUsage {
    /// Reads `usage` (or, failing that, a verbose answer's `duration`) from an answer object.
    pub fn of(answer: &Value) -> Option<Self> {
        let usage = answer.get("usage");
        match usage.and_then(|u| u.get("type")).and_then(Value::as_str) {
            Some("tokens") => {
                let u = usage?;
                let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
                return Some(TranscriptUsage::Tokens {
                    input_tokens: n(u.get("input_tokens")),
                    audio_input_tokens: n(u.pointer("/input_token_details/audio_tokens")),
                    output_tokens: n(u.get("output_tokens")),
                });
            }
            Some("duration") => {
                if let Some(s) = usage?.get("seconds").and_then(Value::as_f64) {
                    return crate::core::billing::units::seconds_from_f64(s)
                        .map(TranscriptUsage::Seconds);
                }
            }
            _ => {}
        }
        answer
            .get("duration")
            .and_then(Value::as_f64)
            .and_then(crate::core::billing::units::seconds_from_f64)
            .map(TranscriptUsage::Seconds)
    }

    /// The usage to bill on a model priced per minute (`minute`) or on tokens; `None` when the
    /// report does not fit the model's basis (then the reservation is charged).
    pub fn billed(&self, minute: Option<u64>) -> Option<MediaUsage> {
        match (*self, minute) {
            (TranscriptUsage::Seconds(s), Some(price)) => {
                Some(MediaUsage::metered(Unit::Seconds, s, price))
            }
            (
                TranscriptUsage::Tokens {
                    input_tokens,
                    audio_input_tokens,
                    output_tokens,
                },
                None,
            ) => Some(MediaUsage {
                tokens: TokenUsage {
                    prompt_tokens: input_tokens,
                    completion_tokens: output_tokens,
                    ..TokenUsage::default()
                },
                audio_input_tokens,
                ..MediaUsage::default()
            }),
            _ => None,
        }
    }
}

/// Renders a verbose answer (`text`, `segments` with `start`, `end`, `text`) in the client's
/// format; `usage` (when known) is added to a `json` answer as OpenAI does. `None` when the
/// verbose answer lacks what the format needs.
pub fn render_transcript(
    verbose: &Value,
    format: TranscriptFormat,
    usage: Option<TranscriptUsage>,
) -> Option<Vec<u8>> {
    let text = verbose.get("text")?.as_str()?;
    let segments = || -> Option<Vec<(f64, f64, &str)>> {
        verbose
            .get("segments")?
            .as_array()?
            .iter()
            .map(|s| {
                Some((
                    s.get("start")?.as_f64()?,
                    s.get("end")?.as_f64()?,
                    s.get("text")?.as_str()?.trim(),
                ))
            })
            .collect()
    };
    Some(match format {
        TranscriptFormat::VerboseJson => serde_json::to_vec(verbose).ok()?,
        TranscriptFormat::Json => {
            let mut out = json!({ "text": text });
            match usage {
                Some(TranscriptUsage::Seconds(s)) => {
                    out["usage"] = json!({"type": "duration", "seconds": s});
                }
                Some(TranscriptUsage::Tokens {
                    input_tokens,
                    audio_input_tokens,
                    output_tokens,
                }) => {
                    out["usage"] = json!({
                        "type": "tokens",
                        "input_tokens": input_tokens,
                        "input_token_details": {
                            "text_tokens": input_tokens.saturating_sub(audio_input_tokens),
                            "audio_tokens": audio_input_tokens
                        },
                        "output_tokens": output_tokens,
                        "total_tokens": input_tokens.saturating_add(output_tokens)
                    });
                }
                None => {}
            }
            serde_json::to_vec(&out).ok()?
        }
        TranscriptFormat::Text => format!("{text}\n").into_bytes(),
        TranscriptFormat::Srt => {
            let mut out = String::new();
            for (i, (start, end, t)) in segments()?.into_iter().enumerate() {
                out.push_str(&format!(
                    "{}\n{} --> {}\n{t}\n\n",
                    i + 1,
                    timestamp(start, ','),
                    timestamp(end, ',')
                ));
            }
            out.into_bytes()
        }
        TranscriptFormat::Vtt => {
            let mut out = String::from("WEBVTT\n\n");
            for (start, end, t) in segments()? {
                out.push_str(&format!(
                    "{} --> {}\n{t}\n\n",
                    timestamp(start, '.'),
                    timestamp(end, '.')
                ));
            }
            out.into_bytes()
        }
    })
}

/// `HH:MM:SS<sep>mmm` of seconds (negative and non-finite values as 0).
fn timestamp(seconds: f64, sep: char) -> String {
    let ms = if seconds.is_finite() && seconds > 0.0 {
        (seconds * 1000.0).round().min(359_999_999.0) as u64
    } else {
        0
    };
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::inbound::testing::fixture;
    use crate::core::multipart::{self, Limits, Writer};

    /// A PCM WAV of `ms` milliseconds of silence (16 kHz, 16-bit mono).
    pub fn wav(ms: u32) -> Vec<u8> {
        let rate = 16_000u32;
        let data_len = rate * 2 * ms / 1000;
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data_len).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * 2).to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(b"LIST");
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(b"abc\0");
        v.extend_from_slice(b"data");
        v.extend_from_slice(&data_len.to_le_bytes());
        v.resize(v.len() + data_len as usize, 0);
        v
    }

    #[test]
    fn speech_requests() {
        let r = decode_speech(
            br#"{"model":"tts-1","input":"Today is a wonderful day to build something people love!","voice":"alloy","response_format":"opus","speed":1.5}"#,
        )
        .unwrap();
        assert_eq!(r.response_format.content_type(), "audio/opus");
        assert_eq!(r.characters(), 56);
        let units = UnitPrices {
            characters: Some(15_000_000),
            ..UnitPrices::default()
        };
        assert_eq!(
            r.usage(&units, None, 0),
            MediaUsage::metered(Unit::Characters, 56, 15_000_000)
        );
        let u = r.usage(&UnitPrices::default(), Some(Encoding::O200kBase), 2000);
        assert_eq!(u.tokens.completion_tokens, 2000);
        assert_eq!(r.to_json("up")["model"], "up");
        assert_eq!(r.to_json("up")["speed"], 1.5);
        // Characters, not bytes.
        let r = decode_speech(
            "{\"model\":\"m\",\"input\":\"héllo 你好\",\"voice\":{\"id\":\"v1\"}}".as_bytes(),
        )
        .unwrap();
        assert_eq!((r.characters(), r.response_format), (8, AudioFormat::Mp3));
        assert!(!r.sse());
        assert_eq!(r.content_type(), "audio/mpeg");
        // `stream_format: "sse"`: events, passed on to the provider.
        let r = decode_speech(
            br#"{"model":"m","input":"a","voice":"v","response_format":"wav","stream_format":"sse"}"#,
        )
        .unwrap();
        assert!(r.sse());
        assert_eq!(r.content_type(), "text/event-stream; charset=utf-8");
        assert_eq!(r.to_json("up")["stream_format"], "sse");
        for (body, param) in [
            (r#"{"input":"a","voice":"v"}"#, "model"),
            (r#"{"model":"m","voice":"v"}"#, "input"),
            (r#"{"model":"m","input":"","voice":"v"}"#, "input"),
            (r#"{"model":"m","input":"a"}"#, "voice"),
            (r#"{"model":"m","input":"a","voice":{}}"#, "voice"),
            (
                r#"{"model":"m","input":"a","voice":"v","response_format":"ogg"}"#,
                "response_format",
            ),
            (
                r#"{"model":"m","input":"a","voice":"v","speed":5}"#,
                "speed",
            ),
            (
                r#"{"model":"m","input":"a","voice":"v","stream_format":"json"}"#,
                "stream_format",
            ),
            (
                r#"{"model":"m","input":"a","voice":"v","volume":1}"#,
                "volume",
            ),
        ] {
            let e = decode_speech(body.as_bytes()).unwrap_err();
            assert_eq!(
                (e.status(), e.param.as_deref()),
                (400, Some(param)),
                "{body}"
            );
        }
        let long = format!(
            r#"{{"model":"m","input":"{}","voice":"v"}}"#,
            "a".repeat(MAX_SPEECH_CHARS + 1)
        );
        assert!(decode_speech(long.as_bytes()).is_err());
    }

    fn form(fields: &[(&str, &str)], file: Option<&[u8]>) -> (String, Vec<u8>) {
        let mut w = Writer::new();
        for (k, v) in fields {
            w.text(k, v);
        }
        if let Some(f) = file {
            w.file("file", "speech.wav", "audio/wav", f);
        }
        w.finish("t")
    }

    fn decode(
        fields: &[(&str, &str)],
        file: Option<&[u8]>,
        translation: bool,
    ) -> Result<TranscriptionRequest<'static>, GatewayError> {
        let (ct, body) = form(fields, file);
        let body: &'static [u8] = Box::leak(body.into_boxed_slice());
        let parts = multipart::parse(
            body,
            &multipart::boundary_of(&ct).unwrap(),
            &Limits::default(),
        )?;
        decode_transcription(&parts, translation)
    }

    #[test]
    fn transcription_forms() {
        let audio = wav(9_200);
        let r = decode(
            &[
                ("model", "whisper-1"),
                ("response_format", "srt"),
                ("language", "en"),
                ("timestamp_granularities[]", "word"),
                ("temperature", "0.2"),
            ],
            Some(&audio),
            false,
        )
        .unwrap();
        assert_eq!(r.response_format, TranscriptFormat::Srt);
        assert_eq!(
            r.duration(),
            Duration {
                ms: 9_200,
                exact: true
            }
        );
        let minute = UnitPrices {
            minute: Some(6_000),
            ..UnitPrices::default()
        };
        assert_eq!(
            r.reservation_usage(&minute, 0),
            MediaUsage::metered(Unit::Seconds, 10, 6_000)
        );
        assert_eq!(r.upstream_format(&minute), TranscriptFormat::VerboseJson);
        let tokens = r.reservation_usage(&UnitPrices::default(), 500);
        assert_eq!(
            (tokens.audio_input_tokens, tokens.tokens.completion_tokens),
            (100, 500)
        );
        let r = decode(
            &[
                ("model", "gpt-4o-transcribe"),
                ("response_format", "text"),
                ("stream", "true"),
            ],
            Some(b"ID3 mp3 bytes"),
            false,
        )
        .unwrap();
        assert!(r.stream);
        assert_eq!(
            r.upstream_format(&UnitPrices::default()),
            TranscriptFormat::Text
        );
        assert_eq!(
            r.duration(),
            Duration {
                ms: 7,
                exact: false
            }
        );
        for (fields, file, translation, param) in [
            (vec![("model", "m")], None, false, "file"),
            (vec![], Some(&audio[..]), false, "model"),
            (
                vec![("model", "m"), ("response_format", "xml")],
                Some(&audio[..]),
                false,
                "response_format",
            ),
            (
                vec![("model", "m"), ("stream", "yes")],
                Some(&audio[..]),
                false,
                "stream",
            ),
            (
                vec![("model", "m"), ("stream", "true")],
                Some(&audio[..]),
                true,
                "stream",
            ),
            (
                vec![("model", "m"), ("language", "en")],
                Some(&audio[..]),
                true,
                "language",
            ),
            (
                vec![("model", "m"), ("temperature", "2")],
                Some(&audio[..]),
                false,
                "temperature",
            ),
            (
                vec![("model", "m"), ("voice", "x")],
                Some(&audio[..]),
                false,
                "voice",
            ),
            (vec![("model", "m")], Some(&b""[..]), false, "file"),
        ] {
            let e = decode(&fields, file, translation).unwrap_err();
            assert_eq!(
                (e.status(), e.param.as_deref()),
                (400, Some(param)),
                "{fields:?}"
            );
        }
    }

    #[test]
    fn wav_headers() {
        assert_eq!(wav_duration_ms(&wav(1_000)), Some(1_000));
        assert_eq!(wav_duration_ms(&wav(0)), Some(0));
        let mut streamed = wav(500);
        let at = streamed.len() - 16_000 - 4;
        streamed[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(wav_duration_ms(&streamed), Some(500));
        assert_eq!(wav_duration_ms(b"RIFF\0\0\0\0WAVE"), None);
        assert_eq!(wav_duration_ms(b"RIFF"), None);
        let mut odd = wav(10);
        odd[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(wav_duration_ms(&odd), None);
        // No fmt chunk before data: no byte rate, no exact duration.
        let mut no_fmt = b"RIFF\0\0\0\0WAVEdata\x04\0\0\0abcd".to_vec();
        assert_eq!(wav_duration_ms(&no_fmt), None);
        no_fmt.truncate(3);
        assert_eq!(
            audio_duration(&no_fmt),
            Duration {
                ms: 2,
                exact: false
            }
        );
    }

    #[test]
    fn usage_and_rendering_from_the_reference_answers() {
        let tokens: Value = serde_json::from_str(fixture(include_bytes!(
            "../../../tests/fixtures/media/openai_transcription_tokens.json"
        )))
        .unwrap();
        let u = TranscriptUsage::of(&tokens).unwrap();
        assert_eq!(
            u,
            TranscriptUsage::Tokens {
                input_tokens: 14,
                audio_input_tokens: 14,
                output_tokens: 45
            }
        );
        assert_eq!(u.billed(Some(6000)), None);
        assert_eq!(u.billed(None).unwrap().audio_input_tokens, 14);
        let verbose: Value = serde_json::from_str(fixture(include_bytes!(
            "../../../tests/fixtures/media/openai_transcription_verbose.json"
        )))
        .unwrap();
        let u = TranscriptUsage::of(&verbose).unwrap();
        assert_eq!(u, TranscriptUsage::Seconds(9));
        assert_eq!(
            u.billed(Some(6000)),
            Some(MediaUsage::metered(Unit::Seconds, 9, 6000))
        );
        let srt =
            String::from_utf8(render_transcript(&verbose, TranscriptFormat::Srt, Some(u)).unwrap())
                .unwrap();
        assert_eq!(
            srt,
            "1\n00:00:00,000 --> 00:00:03,320\nThe beach was a popular spot on a hot summer day.\n\n2\n00:00:03,320 --> 00:00:08,470\nPeople were swimming in the ocean, building sandcastles, and playing beach volleyball.\n\n"
        );
        let vtt =
            String::from_utf8(render_transcript(&verbose, TranscriptFormat::Vtt, None).unwrap())
                .unwrap();
        assert!(vtt.starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:03.320\nThe beach"));
        let json: Value = serde_json::from_slice(
            &render_transcript(&verbose, TranscriptFormat::Json, Some(u)).unwrap(),
        )
        .unwrap();
        assert_eq!(json["usage"], json!({"type": "duration", "seconds": 9}));
        assert_eq!(
            render_transcript(&verbose, TranscriptFormat::Text, None).unwrap(),
            format!("{}\n", verbose["text"].as_str().unwrap()).into_bytes()
        );
        assert_eq!(
            render_transcript(&json!({"text": "x"}), TranscriptFormat::Srt, None),
            None
        );
        assert_eq!(
            TranscriptUsage::of(&json!({"usage": {"type": "duration", "seconds": 3.2}})),
            Some(TranscriptUsage::Seconds(4))
        );
        assert_eq!(TranscriptUsage::of(&json!({"text": "x"})), None);
        assert_eq!(timestamp(3725.5, ','), "01:02:05,500");
        assert_eq!(timestamp(-1.0, '.'), "00:00:00.000");
    }
}
