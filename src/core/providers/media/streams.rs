//! Watchers of streamed media answers: the provider's server-sent events are relayed to the
//! client unchanged, and these read them on the way for the bill (pure; the edge feeds them the
//! relayed bytes, split anywhere).
//!
//! * Images (`stream: true`), following OpenAI's "Image generation streaming events" and "Image
//!   edit streaming events" (<https://platform.openai.com/docs/api-reference/images-streaming>):
//!   `image_generation.partial_image` (or `image_edit.partial_image`) with `b64_json` and
//!   `partial_image_index`, then one `image_generation.completed` (`image_edit.completed`) per
//!   image with `b64_json` and, for gpt-image models, `usage` (`input_tokens`,
//!   `input_tokens_details.image_tokens`, `output_tokens`). [`ImageStream`] counts the completed
//!   images and sums their usage.
//! * Speech (`stream_format: "sse"`), following "Speech streaming events"
//!   (<https://platform.openai.com/docs/api-reference/audio/speech-audio-delta-event>):
//!   `speech.audio.delta` with base64 `audio`, then `speech.audio.done` with `usage`
//!   (`input_tokens`, `output_tokens`, `total_tokens`). [`SpeechStream`] keeps that usage.
//!
//! Both are one [`Watcher`] (the event reading, error noting included) over a kind's
//! [`MediaEvents`] (what it keeps of the events: [`ImageEvents`], [`SpeechEvents`]).
//!
//! An `error` event, or a framing error, is noted once (the relay does not stop for it: the
//! client sees what the provider sent). When the gateway cuts an event stream (the provider went
//! silent or broke off), it ends it with [`error_event`] so that an SDK raises a clear error
//! instead of taking the cut for the end.

use serde_json::Value;

use crate::core::error::GatewayError;
use crate::core::inbound::images::{ImageTokens, ImagesResult};
use crate::core::inbound::openai::error_body;
use crate::core::sse::{SseEvent, SseParser};

/// The event that ends a media event stream the gateway cut: `event: error` with OpenAI's error
/// object and `"type": "error"` (the OpenAI SDKs raise it as an `APIError`).
pub fn error_event(err: &GatewayError) -> Vec<u8> {
    let mut body = serde_json::from_str::<Value>(&error_body(err))
        .unwrap_or_else(|_| serde_json::json!({"error": {"message": err.message}}));
    if let Some(map) = body.as_object_mut() {
        map.insert("type".into(), Value::from("error"));
    }
    format!("event: error\ndata: {body}\n\n").into_bytes()
}

/// What a watcher keeps of one kind of media event stream: told each event's type and `data:`
/// JSON in order. [`Watcher`] does the reading; `error` events and framing errors never reach
/// it.
pub trait MediaEvents: Default {
    /// One event: its type (the JSON's `type`, else the `event:` line) and its data.
    fn on(&mut self, kind: &str, data: &Value);
}

/// Watches a media event stream: reads the `data:` JSON of each complete event, whatever the
/// split of the bytes, and tells the kind's state `S` (reachable through `Deref`).
#[derive(Debug, Default)]
pub struct Watcher<S> {
    sse: SseParser,
    /// A framing error or an `error` event was seen.
    failed: bool,
    state: S,
}

/// Watches a streamed image answer (generation or edit).
pub type ImageStream = Watcher<ImageEvents>;

/// Watches a speech answer streamed as events (`stream_format: "sse"`).
pub type SpeechStream = Watcher<SpeechEvents>;

impl<S: MediaEvents> Watcher<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds relayed bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        match self.sse.push(bytes) {
            Ok(events) => events.into_iter().for_each(|e| self.event(e)),
            Err(_) => self.failed = true,
        }
    }

    /// The provider closed the stream.
    pub fn finish(&mut self) {
        match self.sse.finish() {
            Ok(Some(e)) => self.event(e),
            Ok(None) => {}
            Err(_) => self.failed = true,
        }
    }

    /// An `error` event or a framing error was seen.
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn event(&mut self, event: SseEvent) {
        let Some(data) = event.data else { return };
        let Ok(value) = serde_json::from_str::<Value>(data.trim()) else {
            self.failed = true;
            return;
        };
        // The type is in the JSON (`type`), and usually also in the `event:` line.
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or("");
        if kind == "error" || value.get("error").is_some_and(|e| !e.is_null()) {
            self.failed = true;
            return;
        }
        self.state.on(kind, &value);
    }
}

impl<S> std::ops::Deref for Watcher<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.state
    }
}

/// What an image stream delivered.
#[derive(Debug, Default)]
pub struct ImageEvents {
    /// Partial images seen.
    pub partials: u64,
    /// Completed images seen.
    pub completed: u64,
    /// The completed events' token usage, summed (`None` when none reported any).
    pub usage: Option<ImageTokens>,
}

impl MediaEvents for ImageEvents {
    fn on(&mut self, kind: &str, v: &Value) {
        match kind {
            "image_generation.partial_image" | "image_edit.partial_image" => self.partials += 1,
            "image_generation.completed" | "image_edit.completed" => {
                self.completed += 1;
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
                    let input = n("/input_tokens");
                    let sum = self.usage.get_or_insert_with(ImageTokens::default);
                    sum.input_tokens = sum.input_tokens.saturating_add(input);
                    sum.image_input_tokens = sum
                        .image_input_tokens
                        .saturating_add(n("/input_tokens_details/image_tokens").min(input));
                    sum.output_tokens = sum.output_tokens.saturating_add(n("/output_tokens"));
                }
            }
            _ => {}
        }
    }
}

impl ImageEvents {
    /// What the stream delivered, as a plain answer would have said it; `None` before any
    /// completed image (then the reservation is charged: the provider was generating).
    pub fn result(&self) -> Option<ImagesResult> {
        (self.completed > 0).then_some(ImagesResult {
            images: self.completed,
            usage: self.usage,
        })
    }
}

/// Token usage of a `speech.audio.done` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpeechTokens {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// What a speech event stream delivered.
#[derive(Debug, Default)]
pub struct SpeechEvents {
    /// `speech.audio.delta` events seen.
    pub audio_deltas: u64,
    /// The `speech.audio.done` event arrived.
    pub done: bool,
    /// Its usage.
    pub usage: Option<SpeechTokens>,
}

impl MediaEvents for SpeechEvents {
    fn on(&mut self, kind: &str, v: &Value) {
        match kind {
            "speech.audio.delta" => self.audio_deltas += 1,
            "speech.audio.done" => {
                self.done = true;
                self.usage = v.get("usage").filter(|u| u.is_object()).map(|u| {
                    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
                    SpeechTokens {
                        input_tokens: n("input_tokens"),
                        output_tokens: n("output_tokens"),
                    }
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::inbound::testing::fixture;

    #[test]
    fn image_stream_at_every_split() {
        let body = fixture(include_bytes!(
            "../../../../tests/fixtures/media/openai_images_stream.sse"
        ))
        .as_bytes();
        for split in 0..=body.len() {
            let mut s = ImageStream::new();
            s.push(&body[..split]);
            s.push(&body[split..]);
            s.finish();
            assert!(!s.failed(), "split {split}");
            assert_eq!((s.partials, s.completed), (2, 1), "split {split}");
            assert_eq!(
                s.result(),
                Some(ImagesResult {
                    images: 1,
                    usage: Some(ImageTokens {
                        input_tokens: 50,
                        image_input_tokens: 0,
                        output_tokens: 272,
                    })
                })
            );
        }
        // Cut after the partial images: nothing completed, no result (the reservation).
        let cut = body
            .windows(b"image_generation.completed".len())
            .position(|w| w == b"image_generation.completed")
            .unwrap();
        let mut s = ImageStream::new();
        s.push(&body[..cut]);
        s.finish();
        assert_eq!((s.partials, s.result()), (2, None));
    }

    #[test]
    fn image_edit_stream_sums_every_completed_image() {
        let ev = |v: Value| format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap());
        let done = |i: u64| {
            serde_json::json!({"type":"image_edit.completed","b64_json":"aW1n","usage":{
                "input_tokens": 100 + i, "input_tokens_details": {"image_tokens": 80, "text_tokens": 20 + i},
                "output_tokens": 1056, "total_tokens": 1156 + i}})
        };
        let body = [
            ev(serde_json::json!({"type":"image_edit.partial_image","b64_json":"cA==","partial_image_index":0})),
            ev(done(0)),
            ev(done(1)),
        ]
        .concat();
        let mut s = ImageStream::new();
        s.push(body.as_bytes());
        s.finish();
        assert_eq!(
            s.result(),
            Some(ImagesResult {
                images: 2,
                usage: Some(ImageTokens {
                    input_tokens: 201,
                    image_input_tokens: 160,
                    output_tokens: 2112,
                })
            })
        );
        // dall-e style completed events carry no usage: images only.
        let mut s = ImageStream::new();
        s.push(b"data: {\"type\":\"image_generation.completed\",\"b64_json\":\"x\"}\n\n");
        s.finish();
        assert_eq!(s.result().map(|r| (r.images, r.usage)), Some((1, None)));
        // An error event is noted.
        let mut s = ImageStream::new();
        s.push(b"data: {\"type\":\"error\",\"error\":{\"message\":\"moderation\"}}\n\n");
        assert!(s.failed() && s.result().is_none());
    }

    #[test]
    fn a_cut_stream_ends_with_an_error_event() {
        use crate::core::error::ErrorKind;
        let err = GatewayError::new(
            ErrorKind::UpstreamTimeout,
            "The provider sent nothing for 3000 ms.",
        );
        let bytes = error_event(&err);
        let mut sse = SseParser::new();
        let events = sse.push(&bytes).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event.as_deref(), Some("error"));
        let v: Value = serde_json::from_str(events[0].data.as_deref().unwrap()).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["code"], "upstream_timeout");
        assert_eq!(
            v["error"]["message"],
            "The provider sent nothing for 3000 ms."
        );
        // The watchers take it for an error, not for an image or a done event.
        let mut s = ImageStream::new();
        s.push(&bytes);
        assert!(s.failed() && s.result().is_none());
    }

    #[test]
    fn speech_stream_at_every_split() {
        let body = fixture(include_bytes!(
            "../../../../tests/fixtures/media/openai_speech_stream.sse"
        ))
        .as_bytes();
        for split in 0..=body.len() {
            let mut s = SpeechStream::new();
            s.push(&body[..split]);
            s.push(&body[split..]);
            s.finish();
            assert!(!s.failed(), "split {split}");
            assert_eq!((s.audio_deltas, s.done), (2, true));
            assert_eq!(
                s.usage,
                Some(SpeechTokens {
                    input_tokens: 14,
                    output_tokens: 101,
                })
            );
        }
        let mut s = SpeechStream::new();
        s.push(&body[..body.len() / 2]);
        s.finish();
        assert_eq!((s.done, s.usage), (false, None));
    }
}
