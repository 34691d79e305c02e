//! Client-facing codecs: the APIs clients speak, each translated to and from the canonical chat
//! types of [`crate::core::openai`].
//!
//! * [`openai`]: chat completions (`POST /v1/chat/completions`), whose wire types are the
//!   canonical ones: the codec is its error body, plain encoding and SSE encoder.
//! * [`responses`]: OpenAI's Responses API (`POST /v1/responses`), for Codex CLI, the Agents SDK
//!   and `client.responses.create`.
//! * [`anthropic`]: Anthropic's Messages API (`POST /v1/messages`, `/v1/messages/count_tokens`),
//!   for Claude Code and the Anthropic SDKs.
//!
//! Each codec has the same four parts, all pure (no I/O, no clock, no randomness: ids and times
//! come in as arguments, so every output is reproducible in a test):
//!
//! 1. **request decoding**: the API's body → a [`ChatCompletionRequest`] plus the few request
//!    parameters the API echoes in its responses. Fields that cannot be translated are a 400 that
//!    names the field; fields whose only effect is an optimisation or a hint (prompt-cache marks,
//!    client diagnostics) are accepted and dropped, and each module lists them;
//! 2. **response encoding**: a [`ChatCompletionResponse`] → the API's response object;
//! 3. **stream encoding**: a sans-I/O state machine fed with the chat chunks of one stream (in
//!    order, as the gateway's stream decoders produce them) and told how the stream ended
//!    ([`StreamEnd`]); it returns the API's own event sequence as [`Event`]s, which
//!    [`Event::to_sse`] writes as `event:`/`data:` frames. The meter observes the chat chunks and
//!    writes no bytes; the encoder writes the bytes and decides nothing about money;
//! 4. **error bodies** in the API's own shape, from a [`GatewayError`].
//!
//! Where the two APIs carry reasoning ("thinking") text, the chat side uses `reasoning_content`
//! (the field the gateway's adapters put it in; `reasoning` is read too, as OpenRouter and vLLM
//! send it).

pub mod anthropic;
pub mod audio;
pub mod client;
pub mod embeddings;
pub mod images;
pub mod openai;
pub mod responses;

use serde_json::{Map, Value};

use crate::core::error::GatewayError;
#[cfg(doc)]
use crate::core::openai::{ChatCompletionRequest, ChatCompletionResponse};

/// One server-sent event of an inbound API's stream: its `event:` name and its JSON `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: &'static str,
    pub data: Value,
}

impl Event {
    pub fn new(name: &'static str, data: Value) -> Self {
        Event { name, data }
    }

    /// The SSE frame: `event: <name>\ndata: <json>\n\n` (JSON never contains a raw newline).
    pub fn to_sse(&self) -> Vec<u8> {
        format!("event: {}\ndata: {}\n\n", self.name, self.data).into_bytes()
    }
}

/// The SSE frames of several events, concatenated.
pub fn to_sse(events: &[Event]) -> Vec<u8> {
    events.iter().flat_map(Event::to_sse).collect()
}

/// How a stream ended, as the gateway saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEnd {
    /// The upstream finished the stream normally (its finish reason was in the chunks).
    Completed,
    /// The gateway cut the stream: the output reached what the reservation could pay for.
    Truncated,
    /// The upstream failed or broke off after the stream had begun.
    Failed(GatewayError),
}

/// The reasoning text of a delta's or message's extra fields (`reasoning_content`, else
/// `reasoning`), when it is a non-empty string.
pub(crate) fn reasoning_of(extra: &Map<String, Value>) -> Option<&str> {
    ["reasoning_content", "reasoning"]
        .iter()
        .find_map(|k| extra.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
}

/// The first key of `object` that is not in `known`.
pub(crate) fn unknown_key<'a>(object: &'a Map<String, Value>, known: &[&str]) -> Option<&'a str> {
    object
        .keys()
        .map(String::as_str)
        .find(|k| !known.contains(k))
}

/// The `data:` URL of base64 data.
pub(crate) fn data_url(media_type: &str, data: &str) -> String {
    format!("data:{media_type};base64,{data}")
}

#[cfg(test)]
pub(crate) mod testing {
    //! Fixture helpers of the codecs' tests.

    use super::Event;
    use crate::core::openai::ChatCompletionChunk;
    use crate::core::sse::SseParser;
    use serde_json::Value;

    /// The fixture's text without its leading `#! docs: …` line(s).
    pub fn fixture(bytes: &'static [u8]) -> &'static str {
        let mut text = std::str::from_utf8(bytes).expect("fixtures are UTF-8");
        while let Some(rest) = text.strip_prefix("#!") {
            text = rest.split_once('\n').map_or("", |(_, r)| r);
        }
        text
    }

    /// One chat chunk per non-empty line.
    pub fn chunks(bytes: &'static [u8]) -> Vec<ChatCompletionChunk> {
        fixture(bytes)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("fixture chunk"))
            .collect()
    }

    /// The `(event, data)` pairs of an SSE text.
    pub fn sse_events(text: &[u8]) -> Vec<(String, Value)> {
        let mut parser = SseParser::new();
        let mut events = parser.push(text).expect("valid SSE");
        events.extend(parser.finish().expect("valid SSE"));
        events
            .into_iter()
            .filter(|e| !e.is_empty())
            .map(|e| {
                let data = e.data.expect("every event has data");
                (
                    e.event.unwrap_or_default(),
                    serde_json::from_str(&data).expect("JSON data"),
                )
            })
            .collect()
    }

    /// Asserts that `events`, written as SSE and read back, are the fixture's events, one by one.
    pub fn assert_events(events: &[Event], expected: &'static [u8]) {
        let got = sse_events(&super::to_sse(events));
        let want = sse_events(fixture(expected).as_bytes());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "event {i} differs");
        }
        assert_eq!(got.len(), want.len(), "number of events");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::openai::ChatCompletionChunk;
    use serde_json::json;

    #[test]
    fn frames_events_as_sse() {
        let e = Event::new("ping", json!({"text": "a\nb"}));
        assert_eq!(
            e.to_sse(),
            b"event: ping\ndata: {\"text\":\"a\\nb\"}\n\n".to_vec()
        );
        assert_eq!(to_sse(&[e.clone(), e.clone()]).len(), 2 * e.to_sse().len());
    }

    /// Every node of `value` replaced, one at a time, by each value of another type.
    fn mutations(value: &Value) -> Vec<Value> {
        let wrong = [
            Value::Null,
            json!(0),
            json!(-1),
            json!(1.5),
            json!("x"),
            json!(true),
            json!([]),
            json!({}),
            json!([{}]),
        ];
        let mut out: Vec<Value> = wrong.to_vec();
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    for m in mutations(v) {
                        let mut copy = map.clone();
                        copy.insert(k.clone(), m);
                        out.push(Value::Object(copy));
                    }
                    let mut copy = map.clone();
                    copy.remove(k);
                    out.push(Value::Object(copy));
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    for m in mutations(v) {
                        let mut copy = items.clone();
                        copy[i] = m;
                        out.push(Value::Array(copy));
                    }
                }
            }
            _ => {}
        }
        out
    }

    #[test]
    fn no_request_body_makes_a_decoder_panic() {
        let responses: Value = serde_json::from_str(testing::fixture(include_bytes!(
            "../../../tests/fixtures/responses/request_items.json"
        )))
        .unwrap();
        let meta = responses::ResponseMeta {
            id: "1".into(),
            created_at: 0,
            model: "m".into(),
        };
        let mut decoded = 0;
        for body in mutations(&responses) {
            if let Ok(r) = responses::decode_request(body.to_string().as_bytes()) {
                decoded += 1;
                let mut s = responses::ResponsesStream::new(meta.clone(), r.params);
                s.finish(StreamEnd::Completed, None);
            }
        }
        assert!(decoded > 100, "only {decoded} mutations decoded");

        let messages: Value = serde_json::from_str(testing::fixture(include_bytes!(
            "../../../tests/fixtures/messages/request_claude_code.json"
        )))
        .unwrap();
        let (mut decoded, mut translated) = (0, 0);
        for body in mutations(&messages) {
            if let Ok(r) = anthropic::decode_request(body.to_string().as_bytes()) {
                decoded += 1;
                assert_eq!(serde_json::to_value(&r).unwrap()["model"], body["model"]);
                translated += usize::from(r.to_chat().is_ok());
            }
        }
        assert!(
            decoded > 100 && translated > 50,
            "{decoded} decoded, {translated} translated"
        );
    }

    /// A chat chunk stream from a seed: reasoning, text, refusals and tool calls in any order
    /// (tool calls at reused indexes, with and without ids), finish reasons and usage.
    fn random_chunks(seed: u64) -> Vec<ChatCompletionChunk> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let len = next(12);
        (0..len)
            .map(|_| {
                let delta = match next(7) {
                    0 => json!({"reasoning_content": "r"}),
                    1 => json!({"content": "t"}),
                    2 => json!({"refusal": "no"}),
                    3 => json!({"tool_calls": [{"index": next(2), "id": format!("c{}", next(3)),
                        "function": {"name": "f", "arguments": "{"}}]}),
                    4 => {
                        json!({"tool_calls": [{"index": next(2), "function": {"arguments": "}"}}]})
                    }
                    5 => json!({"content": "", "reasoning_details": [{"signature": "sig"}]}),
                    _ => json!({}),
                };
                let finish = ["stop", "length", "tool_calls", "content_filter"];
                let mut chunk = json!({"choices": [{"index": 0, "delta": delta}]});
                if next(5) == 0 {
                    chunk["choices"][0]["finish_reason"] = finish[next(4) as usize].into();
                }
                if next(6) == 0 {
                    chunk["usage"] = json!({"prompt_tokens": 5, "completion_tokens": 2});
                }
                serde_json::from_value(chunk).expect("a chunk")
            })
            .collect()
    }

    fn ends(seed: u64) -> StreamEnd {
        match seed % 3 {
            0 => StreamEnd::Completed,
            1 => StreamEnd::Truncated,
            _ => StreamEnd::Failed(GatewayError::internal("x")),
        }
    }

    /// Every item is added once, in output order, gets events only while open, is done once;
    /// sequence numbers have no gaps; the stream starts and ends as the reference says.
    #[test]
    fn responses_streams_keep_their_invariants_for_any_chunk_order() {
        for seed in 0..400 {
            let params = responses::decode_request(
                br#"{"model":"m","input":"x","tools":[{"type":"custom","name":"f"}]}"#,
            )
            .expect("valid")
            .params;
            let meta = responses::ResponseMeta {
                id: "1".into(),
                created_at: 0,
                model: "m".into(),
            };
            let mut s = responses::ResponsesStream::new(
                meta,
                if seed % 2 == 0 {
                    params
                } else {
                    responses::ResponseParams {
                        custom_tools: Vec::new(),
                        ..params
                    }
                },
            );
            let mut events = s.start();
            for c in random_chunks(seed) {
                events.extend(s.push(&c));
            }
            events.extend(s.finish(ends(seed), None));
            assert_eq!(events[0].name, "response.created", "seed {seed}");
            assert_eq!(events[1].name, "response.in_progress", "seed {seed}");
            let last = events.last().expect("events");
            assert!(
                matches!(
                    last.name,
                    "response.completed" | "response.incomplete" | "response.failed"
                ),
                "seed {seed}"
            );
            let (mut added, mut done) = (0u64, Vec::new());
            for (i, e) in events.iter().enumerate() {
                assert_eq!(e.data["sequence_number"], i as u64, "seed {seed}");
                let index = e.data["output_index"].as_u64();
                match e.name {
                    "response.output_item.added" => {
                        assert_eq!(index, Some(added), "seed {seed}");
                        assert!(done.iter().all(|&d| d), "seed {seed}: two items open");
                        added += 1;
                        done.push(false);
                    }
                    "response.output_item.done" => {
                        let i = index.expect("index") as usize;
                        assert!(!done[i], "seed {seed}: item {i} done twice");
                        done[i] = true;
                    }
                    _ => {
                        if let Some(i) = index {
                            assert!(!done[i as usize], "seed {seed}: {} after done", e.name);
                        }
                    }
                }
            }
            assert!(done.iter().all(|&d| d), "seed {seed}: an item never done");
            let output = last.data["response"]["output"].as_array().expect("output");
            assert_eq!(output.len() as u64, added, "seed {seed}");
        }
    }

    /// Blocks start at consecutive indexes, one open at a time; deltas go to the open block;
    /// the stream ends with message_delta and message_stop, or with one error event.
    #[test]
    fn anthropic_streams_keep_their_invariants_for_any_chunk_order() {
        for seed in 0..400 {
            let meta = anthropic::MessageMeta {
                id: "1".into(),
                model: "m".into(),
            };
            let mut s = anthropic::AnthropicStream::new(meta, 3);
            let mut events = s.start();
            for c in random_chunks(seed) {
                events.extend(s.push(&c));
            }
            let end = ends(seed);
            let failed = matches!(end, StreamEnd::Failed(_));
            events.extend(s.finish(end, None));
            assert_eq!(events[0].name, "message_start", "seed {seed}");
            let tail: Vec<_> = events.iter().rev().take(2).map(|e| e.name).collect();
            if failed {
                assert_eq!(tail[0], "error", "seed {seed}");
                assert_ne!(tail[1], "error", "seed {seed}");
            } else {
                assert_eq!(tail, ["message_stop", "message_delta"], "seed {seed}");
            }
            let (mut blocks, mut open) = (0u64, None);
            for e in &events {
                let index = e.data["index"].as_u64();
                match e.name {
                    "content_block_start" => {
                        assert_eq!((open, index), (None, Some(blocks)), "seed {seed}");
                        open = index;
                        blocks += 1;
                    }
                    "content_block_delta" => assert_eq!(index, open, "seed {seed}"),
                    "content_block_stop" => {
                        assert_eq!(index, open, "seed {seed}");
                        open = None;
                    }
                    "message_delta" => assert_eq!(open, None, "seed {seed}"),
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn helpers() {
        let mut m = Map::new();
        assert_eq!(reasoning_of(&m), None);
        m.insert("reasoning".into(), "r".into());
        assert_eq!(reasoning_of(&m), Some("r"));
        m.insert("reasoning_content".into(), "rc".into());
        assert_eq!(reasoning_of(&m), Some("rc"));
        assert_eq!(unknown_key(&m, &["reasoning"]), Some("reasoning_content"));
        assert_eq!(unknown_key(&m, &["reasoning", "reasoning_content"]), None);
        assert_eq!(data_url("image/png", "AAA="), "data:image/png;base64,AAA=");
    }
}
