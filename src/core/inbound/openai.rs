//! The OpenAI chat-completions codec (`POST /v1/chat/completions`): what the client receives, in
//! OpenAI's wire format. The request side needs no translation (the canonical chat types of
//! [`crate::core::openai`] are this API's own), so the codec is the three encodings:
//!
//! * **error bodies**: `{"error":{"message","type","param","code"}}` from a [`GatewayError`]
//!   ([`error_body`]); the error type itself is format-neutral, each inbound codec renders it;
//! * **plain answers**: the provider's own bytes when it speaks OpenAI (with the public model name
//!   put back), else the OpenAI encoding of the parsed answer ([`encode_plain`]);
//! * **streams**: [`StreamEncoder`] writes each stream item as a `data: …\n\n` frame, drops the
//!   usage Tollgate asked the provider for but the client did not (`stream_options.include_usage`),
//!   ends with `data: [DONE]`, and writes the chunks the gateway adds itself (the `length` finish
//!   of a reservation cut, the usage chunk of local counts, the error event of a broken stream).
//!
//! The encoder decides nothing about money: every item goes through the
//! [`StreamMeter`](crate::core::meter::StreamMeter) first, which counts it and says whether the
//! stream is still open for the client; the meter writes no bytes.
//!
//! Speed: a chunk whose provider bytes can go out unchanged is copied, not re-serialized (the
//! common case of an OpenAI-compatible provider); only chunks that change (usage stripped, a
//! native provider's chunk, a chunk without `choices`) are encoded again.

use serde::Serialize;

use crate::core::error::GatewayError;
use crate::core::meter::{StreamHeader, StreamMeter};
use crate::core::openai::{ChatCompletionChunk, ChatCompletionResponse, ChunkChoice, Delta, Usage};
use crate::core::providers::StreamItem;
use crate::core::sse::{encode_data, SseParser, DONE};

/// The OpenAI error body of `err`: `{"error":{"message","type","param","code"}}`.
pub fn error_body(err: &GatewayError) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        error: Inner<'a>,
    }
    #[derive(Serialize)]
    struct Inner<'a> {
        message: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        param: Option<&'a str>,
        code: &'a str,
    }
    let body = Body {
        error: Inner {
            message: &err.message,
            kind: err.error_type(),
            param: err.param.as_deref(),
            code: err.code(),
        },
    };
    serde_json::to_string(&body).unwrap_or_else(|_| {
        r#"{"error":{"message":"internal error","type":"server_error","param":null,"code":"internal_error"}}"#
            .to_string()
    })
}

/// The SSE error event of `err` (`data: {"error":…}\n\n`), how a stream that already began
/// reports a failure.
pub fn error_event(err: &GatewayError) -> Vec<u8> {
    encode_data(&error_body(err))
}

/// The bytes of a plain answer: `body`, the provider's own, when `forwards_body` (an OpenAI-shaped
/// provider; its `model` becomes `public_model`), else the OpenAI encoding of `parsed`. The same
/// bytes are what an idempotent replay returns.
pub fn encode_plain(
    body: Vec<u8>,
    parsed: &ChatCompletionResponse,
    forwards_body: bool,
    public_model: &str,
) -> Result<Vec<u8>, GatewayError> {
    if forwards_body {
        return Ok(crate::core::providers::openai::public_body(
            body,
            public_model,
        ));
    }
    serde_json::to_vec(parsed)
        .map_err(|e| GatewayError::internal(format!("cannot encode the response: {e}")))
}

/// Writes one chat stream in OpenAI's SSE format, driving a [`StreamMeter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamEncoder {
    wants_usage: bool,
}

impl StreamEncoder {
    /// `wants_usage`: the client asked for the final usage chunk itself
    /// (`stream_options.include_usage`).
    pub fn new(wants_usage: bool) -> Self {
        StreamEncoder { wants_usage }
    }

    /// Whether the client asked for the usage chunk.
    pub fn wants_usage(&self) -> bool {
        self.wants_usage
    }

    /// Meters one decoded item and appends what the client should receive to `out`. Once the
    /// stream has ended for the client (`[DONE]` or an error event sent), later items are
    /// neither sent nor metered: the upstream may send more in the same read.
    pub fn forward(&self, meter: &mut StreamMeter, item: StreamItem, out: &mut Vec<u8>) {
        if meter.observe(&item) {
            self.encode(item, out);
        }
    }

    /// The bytes of one item, without metering it.
    fn encode(&self, item: StreamItem, out: &mut Vec<u8>) {
        match item {
            StreamItem::KeepAlive(raw) => out.extend_from_slice(&raw),
            StreamItem::Done => out.extend_from_slice(&encode_data(DONE)),
            StreamItem::Error(err) => out.extend_from_slice(&error_event(&err)),
            StreamItem::Chunk { mut chunk, raw } => {
                if let Some(usage) = chunk.usage.take() {
                    if !self.wants_usage {
                        if chunk.choices.is_empty() {
                            return; // the usage chunk only Tollgate asked for
                        }
                        // usage riding on a content chunk: send the chunk without it
                        write_chunk(&chunk, out);
                        return;
                    }
                    chunk.usage = Some(usage);
                }
                // Clients index `choices`: a chunk whose raw bytes lack the array (`data: {}`) is
                // sent re-encoded, with it.
                match raw.filter(|raw| !chunk.choices.is_empty() || has_choices(raw)) {
                    Some(raw) => out.extend_from_slice(&raw),
                    None => write_chunk(&chunk, out),
                }
            }
        }
    }

    /// The upstream connection ended (or broke): if the stream was still open, the client gets
    /// the error event the meter settles on ([`StreamMeter::close`]).
    pub fn upstream_closed(
        &self,
        meter: &mut StreamMeter,
        out: &mut Vec<u8>,
        broken: Option<GatewayError>,
    ) {
        if let Some(err) = meter.close(broken) {
            out.extend_from_slice(&error_event(err));
        }
    }

    /// Ends the stream cleanly before the provider did, because its output reached what the
    /// reservation covers: one chunk with `finish_reason: "length"` for each of the `choices`
    /// (1 to 128), the usage chunk (`usage`, counted locally) if the client asked for it, and
    /// `[DONE]`.
    pub fn cut(&self, meter: &mut StreamMeter, choices: u64, usage: Usage, out: &mut Vec<u8>) {
        let Some(header) = meter.cut() else {
            return;
        };
        let finish: Vec<ChunkChoice> = (0..choices.clamp(1, 128))
            .map(|index| ChunkChoice {
                index: u32::try_from(index).unwrap_or(0),
                delta: Delta::default(),
                finish_reason: Some("length".to_string()),
                extra: Default::default(),
            })
            .collect();
        write_chunk(&added_chunk(&header, finish, None), out);
        if self.wants_usage {
            write_chunk(&added_chunk(&header, Vec::new(), Some(usage)), out);
        }
        out.extend_from_slice(&encode_data(DONE));
    }

    /// Whether the client asked for the usage chunk, the provider has sent none and the stream is
    /// still open: then [`StreamEncoder::local_usage`] must come before `[DONE]`.
    pub fn owes_usage(&self, meter: &StreamMeter) -> bool {
        self.wants_usage && meter.usage_pending()
    }

    /// The usage chunk the provider did not send (`usage`: local counts), for a client that asked
    /// for one: `choices: []` and the stream's id, model and created.
    pub fn local_usage(&self, meter: &StreamMeter, usage: Usage, out: &mut Vec<u8>) {
        if self.owes_usage(meter) {
            let header = meter.header().cloned().unwrap_or_default();
            write_chunk(&added_chunk(&header, Vec::new(), Some(usage)), out);
        }
    }
}

/// A chunk the gateway adds to a stream, with the stream's id, model and created.
fn added_chunk(
    header: &StreamHeader,
    choices: Vec<ChunkChoice>,
    usage: Option<Usage>,
) -> ChatCompletionChunk {
    ChatCompletionChunk {
        id: header.id.clone(),
        object: "chat.completion.chunk".to_string(),
        created: header.created,
        model: header.model.clone(),
        choices,
        usage,
        extra: Default::default(),
    }
}

fn write_chunk(chunk: &ChatCompletionChunk, out: &mut Vec<u8>) {
    if let Ok(json) = serde_json::to_string(chunk) {
        out.extend_from_slice(&encode_data(&json));
    }
}

/// Whether the SSE block `raw` holds a JSON object with a `choices` array. Asked only of chunks
/// without choices (the usage chunk, a provider's notice), so the extra parse is rare.
fn has_choices(raw: &[u8]) -> bool {
    let mut parser = SseParser::new();
    let event = match parser.push(raw) {
        Ok(mut events) if !events.is_empty() => events.pop(),
        _ => parser.finish().ok().flatten(),
    };
    event
        .and_then(|e| e.data)
        .and_then(|data| serde_json::from_str::<serde_json::Value>(&data).ok())
        .is_some_and(|v| v.get("choices").is_some_and(serde_json::Value::is_array))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::ErrorKind;
    use crate::core::providers::{Adapter, ResponseContext};

    fn chunk(json: &str) -> StreamItem {
        let chunk: ChatCompletionChunk = serde_json::from_str(json).unwrap();
        StreamItem::Chunk {
            chunk,
            raw: Some(encode_data(json)),
        }
    }

    const CONTENT: &str = r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi there"}}]}"#;
    const USAGE: &str = r#"{"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;

    #[test]
    fn renders_the_openai_error_shape() {
        let e = GatewayError::invalid_param("messages", "messages must be a non-empty array");
        let v: serde_json::Value = serde_json::from_str(&error_body(&e)).unwrap();
        assert_eq!(v["error"]["message"], "messages must be a non-empty array");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "messages");
        assert_eq!(v["error"]["code"], "invalid_request");
        // A code override and characters that need escaping.
        let e = GatewayError::new(ErrorKind::UpstreamRejected(400), "bad \"quote\"\n")
            .with_code("context_length_exceeded");
        let body = error_body(&e);
        assert_eq!(
            body,
            r#"{"error":{"message":"bad \"quote\"\n","type":"invalid_request_error","param":null,"code":"context_length_exceeded"}}"#
        );
        assert_eq!(error_event(&e), encode_data(&body));
    }

    #[test]
    fn plain_answers_keep_the_providers_bytes_or_are_encoded() {
        let body = br#"{"id":"x","object":"chat.completion","created":1,"model":"up-model","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#;
        let parsed: ChatCompletionResponse = serde_json::from_slice(body).unwrap();
        // An OpenAI-shaped provider: its own bytes, with the public model name.
        let out = encode_plain(body.to_vec(), &parsed, true, "public").unwrap();
        let expected = String::from_utf8(body.to_vec())
            .unwrap()
            .replace("up-model", "public");
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        // A native provider: the OpenAI encoding of the parsed answer.
        let out = encode_plain(b"<native>".to_vec(), &parsed, false, "public").unwrap();
        assert_eq!(out, serde_json::to_vec(&parsed).unwrap());
    }

    #[test]
    fn strips_the_usage_chunk_the_client_did_not_ask_for() {
        let enc = StreamEncoder::new(false);
        let mut m = StreamMeter::new();
        let mut out = Vec::new();
        enc.forward(&mut m, chunk(CONTENT), &mut out);
        enc.forward(&mut m, chunk(USAGE), &mut out);
        enc.forward(&mut m, StreamItem::Done, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, format!("data: {CONTENT}\n\ndata: [DONE]\n\n"));
        // The meter saw the usage the client did not get.
        assert_eq!(m.upstream_usage().unwrap().completion_tokens, 2);
        assert_eq!(m.text(), "Hi there");
        assert!(m.completed() && m.delivered_output());
    }

    #[test]
    fn keeps_it_when_asked_and_strips_usage_from_content_chunks() {
        let mut out = Vec::new();
        StreamEncoder::new(true).forward(&mut StreamMeter::new(), chunk(USAGE), &mut out);
        assert_eq!(out, encode_data(USAGE));

        let mut m = StreamMeter::new();
        let mut out = Vec::new();
        StreamEncoder::new(false).forward(
            &mut m,
            chunk(r#"{"id":"c","choices":[{"index":0,"delta":{"content":"x"}}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#),
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("usage") && text.contains("\"x\""));
        assert_eq!(m.upstream_usage().map(|u| u.completion_tokens), Some(1));
    }

    #[test]
    fn a_chunk_without_choices_is_sent_with_them() {
        let mut out = Vec::new();
        StreamEncoder::new(false).forward(&mut StreamMeter::new(), chunk(r#"{}"#), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("data: {") && text.contains(r#""choices":[]"#),
            "{text}"
        );
    }

    #[test]
    fn nothing_is_written_after_the_end() {
        let enc = StreamEncoder::new(true);
        let mut m = StreamMeter::new();
        let mut out = Vec::new();
        enc.forward(&mut m, StreamItem::Done, &mut out);
        out.clear();
        enc.forward(&mut m, chunk(CONTENT), &mut out);
        enc.upstream_closed(&mut m, &mut out, None);
        enc.cut(&mut m, 1, Usage::new(1, 1), &mut out);
        enc.local_usage(&m, Usage::new(1, 1), &mut out);
        assert!(out.is_empty());
        assert_eq!(m.text(), "", "nothing after [DONE] is metered either");
    }

    #[test]
    fn a_stream_with_nothing_parseable_ends_with_an_unusable_error_event() {
        let enc = StreamEncoder::new(false);
        let mut m = StreamMeter::new();
        let mut out = Vec::new();
        enc.forward(
            &mut m,
            StreamItem::KeepAlive(b"<html>\n\n".to_vec()),
            &mut out,
        );
        enc.upstream_closed(&mut m, &mut out, None);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("<html>\n\ndata: {\"error\""), "{text}");
        assert!(text.contains("upstream_unusable"));
        assert_eq!(m.error().map(|e| e.kind), Some(ErrorKind::UpstreamUnusable));
    }

    #[test]
    fn broken_upstream_becomes_an_error_event() {
        let enc = StreamEncoder::new(false);
        let mut m = StreamMeter::new();
        let mut out = Vec::new();
        enc.forward(&mut m, chunk(CONTENT), &mut out);
        enc.upstream_closed(&mut m, &mut out, None);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("closed the stream"));
        assert!(!m.completed());
        assert!(m.error().is_some());
    }

    #[test]
    fn usage_chunk_from_local_counts_when_the_provider_sent_none() {
        let enc = StreamEncoder::new(true);
        let mut m = StreamMeter::new();
        let mut out = Vec::new();
        enc.forward(&mut m, chunk(CONTENT), &mut out);
        assert!(enc.owes_usage(&m));
        out.clear();
        enc.local_usage(&m, Usage::new(5, 2), &mut out);
        enc.forward(&mut m, StreamItem::Done, &mut out);
        let text = String::from_utf8(out).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 2, "{text}");
        assert!(events[0].contains(r#""choices":[]"#) && events[0].contains(r#""id":"c""#));
        assert!(events[0].contains(r#""completion_tokens":2"#));
        assert_eq!(events[1], "data: [DONE]");
        // Not owed when the provider sent usage, nor when the client did not ask.
        let mut m = StreamMeter::new();
        enc.forward(&mut m, chunk(USAGE), &mut Vec::new());
        assert!(!enc.owes_usage(&m));
        let enc = StreamEncoder::new(false);
        let m = StreamMeter::new();
        let mut out = Vec::new();
        enc.local_usage(&m, Usage::new(5, 2), &mut out);
        assert!(out.is_empty() && !enc.owes_usage(&m));
    }

    #[test]
    fn cut_ends_the_stream_cleanly() {
        let enc = StreamEncoder::new(true);
        let mut m = StreamMeter::new();
        let mut out = Vec::new();
        enc.forward(&mut m, chunk(CONTENT), &mut out);
        out.clear();
        enc.cut(&mut m, 1, Usage::new(5, 2), &mut out);
        let text = String::from_utf8(out).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 3, "{text}");
        assert!(
            events[0].contains(r#""finish_reason":"length""#) && events[0].contains(r#""id":"c""#)
        );
        assert!(
            events[1].contains(r#""completion_tokens":2"#) && events[1].contains(r#""choices":[]"#)
        );
        assert_eq!(events[2], "data: [DONE]");
        assert!(m.truncated() && m.completed());
        // Nothing more once cut; and no usage chunk for a client that did not ask.
        let mut more = Vec::new();
        enc.forward(&mut m, StreamItem::Done, &mut more);
        assert!(more.is_empty());
        let enc = StreamEncoder::new(false);
        let mut m = StreamMeter::new();
        let mut out = Vec::new();
        enc.cut(&mut m, 2, Usage::new(5, 2), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("usage") && text.matches("length").count() == 2);
    }

    /// An OpenAI stream as the API sends it with `stream_options.include_usage` (CRLF line ends,
    /// a keep-alive comment, role / content / finish chunks, the usage chunk with `choices: []`).
    const OPENAI_TRANSCRIPT: &[u8] = b": keep-alive\r\n\r\n\
data: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\r\n\r\n\
data: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello, \xc3\xa9t\xc3\xa9!\"},\"finish_reason\":null}],\"usage\":null}\r\n\r\n\
data: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\r\n\r\n\
data: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\r\n\r\n\
data: [DONE]\r\n\r\n";

    /// Runs `transcript`, split in two at `split`, through the OpenAI adapter's decoder, a meter
    /// and an encoder, then closes it.
    fn run(transcript: &[u8], wants_usage: bool, split: usize) -> (String, StreamMeter) {
        let ctx = ResponseContext {
            id: "chatcmpl-gw".into(),
            created: 1,
            model: "public-model".into(),
        };
        let mut decoder = crate::core::providers::openai::OpenAiAdapter.stream_decoder(&ctx);
        let enc = StreamEncoder::new(wants_usage);
        let mut meter = StreamMeter::new();
        let mut out = Vec::new();
        let (a, b) = transcript.split_at(split);
        for part in [a, b] {
            for item in decoder.push(part) {
                enc.forward(&mut meter, item, &mut out);
            }
        }
        for item in decoder.finish() {
            enc.forward(&mut meter, item, &mut out);
        }
        enc.upstream_closed(&mut meter, &mut out, None);
        (String::from_utf8(out).unwrap(), meter)
    }

    /// Recorded streams (an OpenAI one, and tests/fixtures/openai/groq_stream.sse whose usage
    /// rides on the finish chunk), split at every byte, metered and encoded: the client's bytes
    /// are pinned, for a client that asked for usage and one that did not. The pins were taken
    /// from the meter that wrote SSE itself, before the encoder was split from it; objects the
    /// gateway does not touch (`x_groq`) keep the provider's key order.
    #[test]
    fn pins_the_client_bytes_of_recorded_streams() {
        let groq = crate::core::providers::mapping::testing::fixture(include_bytes!(
            "../../../tests/fixtures/openai/groq_stream.sse"
        ));
        for (transcript, pins) in [(OPENAI_TRANSCRIPT, PINNED_OPENAI), (groq, PINNED_GROQ)] {
            let (with_usage, meter) = run(transcript, true, 0);
            assert_eq!(with_usage, pins[0]);
            assert!(meter.completed() && meter.upstream_usage().is_some());
            assert_eq!(run(transcript, false, 0).0, pins[1]);
            for split in 1..transcript.len() {
                assert_eq!(run(transcript, true, split).0, pins[0], "split at {split}");
                assert_eq!(run(transcript, false, split).0, pins[1], "split at {split}");
            }
        }
    }

    const PINNED_OPENAI: [&str; 2] = [
        ": keep-alive\r\n\r\ndata: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"public-model\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\r\n\r\ndata: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"public-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello, été!\"},\"finish_reason\":null}],\"usage\":null}\r\n\r\ndata: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"public-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\r\n\r\ndata: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"public-model\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\r\n\r\ndata: [DONE]\n\n",
        ": keep-alive\r\n\r\ndata: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"public-model\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\r\n\r\ndata: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"public-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello, été!\"},\"finish_reason\":null}],\"usage\":null}\r\n\r\ndata: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"public-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\r\n\r\ndata: [DONE]\n\n",
    ];
    const PINNED_GROQ: [&str; 2] = [
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"public-model\",\"system_fingerprint\":\"fp_a\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"x_groq\":{\"id\":\"req_01\"}}\n\ndata: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"public-model\",\"system_fingerprint\":\"fp_a\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Fast ünïcødé\"},\"logprobs\":null,\"finish_reason\":null}]}\n\ndata: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"public-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\",\"logprobs\":null}],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15},\"system_fingerprint\":\"fp_a\",\"x_groq\":{\"id\":\"req_01\",\"usage\":{\"queue_time\":0.02,\"prompt_tokens\":12,\"prompt_time\":0.001,\"completion_tokens\":3,\"completion_time\":0.002,\"total_tokens\":15,\"total_time\":0.003}}}\n\ndata: [DONE]\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"public-model\",\"system_fingerprint\":\"fp_a\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"x_groq\":{\"id\":\"req_01\"}}\n\ndata: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"public-model\",\"system_fingerprint\":\"fp_a\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Fast ünïcødé\"},\"logprobs\":null,\"finish_reason\":null}]}\n\ndata: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"public-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\",\"logprobs\":null}],\"system_fingerprint\":\"fp_a\",\"x_groq\":{\"id\":\"req_01\",\"usage\":{\"queue_time\":0.02,\"prompt_tokens\":12,\"prompt_time\":0.001,\"completion_tokens\":3,\"completion_time\":0.002,\"total_tokens\":15,\"total_time\":0.003}}}\n\ndata: [DONE]\n\n",
    ];
}
