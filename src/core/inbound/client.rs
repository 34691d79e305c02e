//! The seam between the format-neutral gateway and the API a client called: [`ClientApi`] names
//! it (the usage row's `api`), [`ClientFormat`] carries what its encoders need, and
//! [`ClientEncoder`] writes one chat stream in that API's events. The gateway meters every item
//! through the [`StreamMeter`] first (the meter writes no bytes); the encoder writes the bytes and
//! decides nothing about money. [`ClientEncoder::OpenAi`] is the chat completions encoder
//! unchanged, so a chat stream's bytes do not depend on this module.

use super::anthropic::{self, AnthropicStream, MessageMeta};
use super::openai::{self, StreamEncoder};
use super::responses::{self, ResponseMeta, ResponseParams, ResponsesStream};
use super::{to_sse, Event, StreamEnd};
use crate::core::error::GatewayError;
use crate::core::meter::StreamMeter;
use crate::core::openai::{ChatCompletionResponse, Usage};
use crate::core::providers::StreamItem;

/// The client API of a metered call, as the usage row's `api` column names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientApi {
    Chat,
    Responses,
    Messages,
}

impl ClientApi {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientApi::Chat => "chat",
            ClientApi::Responses => "responses",
            ClientApi::Messages => "messages",
        }
    }
}

/// What the answer's encoding needs to know of the request, chosen by the API handler.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFormat {
    /// Chat completions; `wants_usage`: `stream_options.include_usage`.
    OpenAi { wants_usage: bool },
    Responses {
        meta: ResponseMeta,
        params: Box<ResponseParams>,
    },
    Messages {
        meta: MessageMeta,
        /// The local count of the prompt, for `message_start` (the provider's usage comes last).
        input_tokens: u64,
    },
}

impl ClientFormat {
    pub fn api(&self) -> ClientApi {
        match self {
            ClientFormat::OpenAi { .. } => ClientApi::Chat,
            ClientFormat::Responses { .. } => ClientApi::Responses,
            ClientFormat::Messages { .. } => ClientApi::Messages,
        }
    }

    /// The error body of `err` in this API's shape (sent with `err.status()`).
    pub fn error_body(&self, err: &GatewayError, request_id: &str) -> String {
        match self {
            ClientFormat::Messages { .. } => anthropic::error_body(err, Some(request_id)),
            ClientFormat::Responses { .. } => responses::error_body(err),
            ClientFormat::OpenAi { .. } => openai::error_body(err),
        }
    }

    /// The bytes of a plain answer (what an idempotent replay returns too). The chat format
    /// forwards an OpenAI-shaped provider's own body (see [`openai::encode_plain`]).
    pub fn encode_plain(
        &self,
        body: Vec<u8>,
        parsed: &ChatCompletionResponse,
        forwards_body: bool,
        public_model: &str,
    ) -> Result<Vec<u8>, GatewayError> {
        let value = match self {
            ClientFormat::OpenAi { .. } => {
                return openai::encode_plain(body, parsed, forwards_body, public_model)
            }
            ClientFormat::Responses { meta, params } => {
                responses::encode_response(parsed, meta, params)
            }
            ClientFormat::Messages { meta, .. } => anthropic::encode_message(parsed, meta),
        };
        serde_json::to_vec(&value)
            .map_err(|e| GatewayError::internal(format!("cannot encode the response: {e}")))
    }

    /// The stream encoder of this format.
    pub fn encoder(&self) -> ClientEncoder {
        match self {
            ClientFormat::OpenAi { wants_usage } => {
                ClientEncoder::OpenAi(StreamEncoder::new(*wants_usage))
            }
            ClientFormat::Responses { meta, params } => ClientEncoder::Events(
                Box::new(EventStream::Responses(ResponsesStream::new(
                    meta.clone(),
                    (**params).clone(),
                ))),
                None,
            ),
            ClientFormat::Messages { meta, input_tokens } => ClientEncoder::Events(
                Box::new(EventStream::Messages(AnthropicStream::new(
                    meta.clone(),
                    *input_tokens,
                ))),
                None,
            ),
        }
    }
}

/// An event-based API's stream state machine (boxed where it is held, so the variants' sizes
/// need not match).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum EventStream {
    Responses(ResponsesStream),
    Messages(AnthropicStream),
}

impl EventStream {
    fn start(&mut self) -> Vec<Event> {
        match self {
            EventStream::Responses(s) => s.start(),
            EventStream::Messages(s) => s.start(),
        }
    }

    fn push(&mut self, chunk: &crate::core::openai::ChatCompletionChunk) -> Vec<Event> {
        match self {
            EventStream::Responses(s) => s.push(chunk),
            EventStream::Messages(s) => s.push(chunk),
        }
    }

    fn finish(&mut self, end: StreamEnd, usage: Option<&Usage>) -> Vec<Event> {
        match self {
            EventStream::Responses(s) => s.finish(end, usage),
            EventStream::Messages(s) => s.finish(end, usage),
        }
    }
}

/// Writes one metered chat stream in the client's API. The methods are those the relay calls on
/// the chat encoder; for the event APIs (Responses, Messages) the usage always goes in the final
/// event, so it is "owed" whenever the provider sent none: the local count is kept until then.
#[derive(Debug, Clone)]
pub enum ClientEncoder {
    OpenAi(StreamEncoder),
    /// The stream and the local usage count given for its end.
    Events(Box<EventStream>, Option<Usage>),
}

impl ClientEncoder {
    /// Meters one decoded item and appends what the client should receive to `out`.
    pub fn forward(&mut self, meter: &mut StreamMeter, item: StreamItem, out: &mut Vec<u8>) {
        let (stream, local) = match self {
            ClientEncoder::OpenAi(e) => return e.forward(meter, item, out),
            ClientEncoder::Events(stream, local) => (stream, local),
        };
        if !meter.observe(&item) {
            return;
        }
        let events = match item {
            // Comments and pings of the provider: the event APIs have their own keep-alives.
            StreamItem::KeepAlive(_) => stream.start(),
            StreamItem::Chunk { chunk, .. } => {
                let mut events = stream.start();
                events.extend(stream.push(&chunk));
                events
            }
            StreamItem::Done => {
                let usage = meter.upstream_usage().cloned().or_else(|| local.clone());
                stream.finish(StreamEnd::Completed, usage.as_ref())
            }
            StreamItem::Error(err) => stream.finish(StreamEnd::Failed(err), None),
        };
        out.extend_from_slice(&to_sse(&events));
    }

    /// The upstream connection ended (or broke): a stream still open ends failed.
    pub fn upstream_closed(
        &mut self,
        meter: &mut StreamMeter,
        out: &mut Vec<u8>,
        broken: Option<GatewayError>,
    ) {
        match self {
            ClientEncoder::OpenAi(e) => e.upstream_closed(meter, out, broken),
            ClientEncoder::Events(stream, local) => {
                if let Some(err) = meter.close(broken).cloned() {
                    let usage = meter.upstream_usage().cloned().or_else(|| local.clone());
                    let events = stream.finish(StreamEnd::Failed(err), usage.as_ref());
                    out.extend_from_slice(&to_sse(&events));
                }
            }
        }
    }

    /// Ends the stream cleanly because its output reached what the reservation covers.
    pub fn cut(&mut self, meter: &mut StreamMeter, choices: u64, usage: Usage, out: &mut Vec<u8>) {
        match self {
            ClientEncoder::OpenAi(e) => e.cut(meter, choices, usage, out),
            ClientEncoder::Events(stream, _) => {
                if meter.cut().is_some() {
                    let events = stream.finish(StreamEnd::Truncated, Some(&usage));
                    out.extend_from_slice(&to_sse(&events));
                }
            }
        }
    }

    /// Whether the stream still needs the local usage count ([`ClientEncoder::local_usage`])
    /// before the provider's end.
    pub fn owes_usage(&self, meter: &StreamMeter) -> bool {
        match self {
            ClientEncoder::OpenAi(e) => e.owes_usage(meter),
            ClientEncoder::Events(..) => meter.usage_pending(),
        }
    }

    /// The usage of local counts for a stream whose provider sent none.
    pub fn local_usage(&mut self, meter: &StreamMeter, usage: Usage, out: &mut Vec<u8>) {
        match self {
            ClientEncoder::OpenAi(e) => e.local_usage(meter, usage, out),
            ClientEncoder::Events(_, local) => {
                if meter.usage_pending() {
                    *local = Some(usage);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::inbound::testing::sse_events;
    use crate::core::openai::ChatCompletionChunk;
    use crate::core::sse::encode_data;

    fn chunk(json: &str) -> StreamItem {
        let chunk: ChatCompletionChunk = serde_json::from_str(json).unwrap();
        StreamItem::Chunk {
            chunk,
            raw: Some(encode_data(json)),
        }
    }

    const CONTENT: &str = r#"{"id":"c","model":"m","created":1,"choices":[{"index":0,"delta":{"content":"Hi there"}}]}"#;
    const FINISH: &str = r#"{"id":"c","model":"m","created":1,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
    const USAGE: &str = r#"{"id":"c","model":"m","created":1,"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;

    fn messages() -> ClientFormat {
        ClientFormat::Messages {
            meta: MessageMeta {
                id: "r1".into(),
                model: "claude-x".into(),
            },
            input_tokens: 5,
        }
    }

    fn run(format: &ClientFormat, items: Vec<StreamItem>) -> (Vec<u8>, StreamMeter) {
        let mut meter = StreamMeter::new();
        let mut enc = format.encoder();
        let mut out = Vec::new();
        for item in items {
            enc.forward(&mut meter, item, &mut out);
        }
        (out, meter)
    }

    #[test]
    fn openai_format_writes_what_the_chat_encoder_writes() {
        let items = || {
            vec![
                chunk(CONTENT),
                chunk(FINISH),
                chunk(USAGE),
                StreamItem::Done,
            ]
        };
        let (out, _) = run(&ClientFormat::OpenAi { wants_usage: false }, items());
        let mut meter = StreamMeter::new();
        let mut expected = Vec::new();
        let enc = StreamEncoder::new(false);
        for item in items() {
            enc.forward(&mut meter, item, &mut expected);
        }
        assert_eq!(out, expected);
    }

    #[test]
    fn messages_stream_carries_the_provider_usage_in_message_delta() {
        let (out, meter) = run(
            &messages(),
            vec![
                chunk(CONTENT),
                chunk(FINISH),
                chunk(USAGE),
                StreamItem::Done,
            ],
        );
        assert!(meter.completed());
        let events = sse_events(&out);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"message_start"));
        assert_eq!(names.last(), Some(&"message_stop"));
        let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(delta.1["usage"]["output_tokens"], 2);
        assert_eq!(delta.1["delta"]["stop_reason"], "end_turn");
        let text: String = events
            .iter()
            .filter_map(|(_, d)| d["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, "Hi there");
    }

    #[test]
    fn local_usage_is_kept_for_the_final_event_when_the_provider_sent_none() {
        let mut meter = StreamMeter::new();
        let mut enc = messages().encoder();
        let mut out = Vec::new();
        enc.forward(&mut meter, chunk(CONTENT), &mut out);
        enc.forward(&mut meter, chunk(FINISH), &mut out);
        assert!(enc.owes_usage(&meter));
        enc.local_usage(&meter, Usage::new(5, 9), &mut out);
        enc.forward(&mut meter, StreamItem::Done, &mut out);
        let events = sse_events(&out);
        let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(delta.1["usage"]["output_tokens"], 9);
    }

    #[test]
    fn responses_stream_cut_ends_incomplete_and_a_break_ends_failed() {
        let format = ClientFormat::Responses {
            meta: ResponseMeta {
                id: "r1".into(),
                created_at: 1,
                model: "gpt-x".into(),
            },
            params: Box::new(
                responses::decode_request(br#"{"model":"gpt-x","input":"hi","stream":true}"#)
                    .unwrap()
                    .params,
            ),
        };
        let mut meter = StreamMeter::new();
        let mut enc = format.encoder();
        let mut out = Vec::new();
        enc.forward(&mut meter, chunk(CONTENT), &mut out);
        enc.cut(&mut meter, 1, Usage::new(5, 3), &mut out);
        let events = sse_events(&out);
        let (name, last) = events.last().unwrap();
        assert_eq!(name, "response.incomplete");
        assert_eq!(last["response"]["usage"]["output_tokens"], 3);
        assert!(meter.truncated());

        let mut meter = StreamMeter::new();
        let mut enc = format.encoder();
        let mut out = Vec::new();
        enc.forward(&mut meter, chunk(CONTENT), &mut out);
        let broke = GatewayError::new(crate::core::error::ErrorKind::UpstreamFailed, "broke");
        enc.upstream_closed(&mut meter, &mut out, Some(broke));
        let events = sse_events(&out);
        assert_eq!(events.last().unwrap().0, "response.failed");
    }

    #[test]
    fn error_bodies_follow_the_api() {
        let err = GatewayError::new(crate::core::error::ErrorKind::InvalidApiKey, "bad key");
        let body: serde_json::Value =
            serde_json::from_str(&messages().error_body(&err, "req_1")).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "authentication_error");
        assert_eq!(body["request_id"], "req_1");
        let body: serde_json::Value = serde_json::from_str(
            &ClientFormat::OpenAi { wants_usage: false }.error_body(&err, "req_1"),
        )
        .unwrap();
        assert_eq!(body["error"]["message"], "bad key");
    }
}
