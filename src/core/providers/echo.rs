//! `tollgate-echo`, the built-in demo model: a fresh install answers with no provider key.
//!
//! It behaves like an OpenAI server that replies `Echo: <last user message>` (or a greeting when
//! there is none), one real `o200k_base` token per stream chunk, honouring `max_tokens` (then
//! `finish_reason` is `length`) and `n`, and reporting exact usage. Its adapter builds an
//! [`UpstreamCall::Local`], which the gateway serves with [`super::serve_local`] instead of a
//! fetch; everything else (parsing, metering, billing) is the OpenAI path.
//!
//! Bounded: `n` is at most [`ECHO_MAX_CHOICES`] and the output cap at most [`ECHO_MAX_TOKENS`]
//! (400 above, when the request is built, before anything is reserved), and a stream's events
//! are made one at a time as the relay pulls them ([`EchoEvents`]), so memory stays that of one
//! event whatever the reply's length.

use serde_json::json;

use super::openai::{map_openai_error, OpenAiAdapter, OpenAiStreamDecoder};
use super::{
    Adapter, LocalReply, LocalRequest, ProviderKind, ResponseContext, Route, StreamDecoder,
    UpstreamCall, UpstreamRequest,
};
use crate::core::error::GatewayError;
use crate::core::openai::{ChatCompletionRequest, ChatCompletionResponse, Usage};
use crate::core::sse::encode_data;
use crate::core::tokens::{count_chat_prompt, Encoding};

pub struct EchoAdapter;

/// The tokenizer the echo model speaks.
pub const ECHO_ENCODING: Encoding = Encoding::O200kBase;
/// Longest reply, in tokens: the cap when the request sets none, and the largest cap accepted.
pub const ECHO_MAX_TOKENS: u64 = 4096;
/// Largest `n` the echo model accepts.
pub const ECHO_MAX_CHOICES: u64 = 4;

/// Refuses requests beyond the echo model's bounds (400 naming the field).
pub fn check_bounds(req: &ChatCompletionRequest) -> Result<(), GatewayError> {
    if req.choices() > ECHO_MAX_CHOICES {
        return Err(GatewayError::invalid_param(
            "n",
            format!("The echo model answers with at most {ECHO_MAX_CHOICES} choices (`n`)."),
        ));
    }
    for (field, value) in [
        ("max_completion_tokens", req.max_completion_tokens),
        ("max_tokens", req.max_tokens),
    ] {
        if value.is_some_and(|v| v > ECHO_MAX_TOKENS) {
            return Err(GatewayError::invalid_param(
                field,
                format!("The echo model writes at most {ECHO_MAX_TOKENS} tokens (`{field}`)."),
            ));
        }
    }
    Ok(())
}

impl Adapter for EchoAdapter {
    fn build_request(
        &self,
        route: &Route,
        req: &ChatCompletionRequest,
    ) -> Result<UpstreamRequest, GatewayError> {
        check_bounds(req)?;
        OpenAiAdapter.build_request(route, req)
    }

    /// Served in the gateway ([`serve`]): the body an OpenAI server would receive, no fetch.
    fn build_call(
        &self,
        route: &Route,
        req: &ChatCompletionRequest,
    ) -> Result<UpstreamCall, GatewayError> {
        let up = self.build_request(route, req)?;
        Ok(UpstreamCall::Local(LocalRequest {
            kind: ProviderKind::Echo,
            body: up.body,
        }))
    }

    fn parse_response(
        &self,
        body: &[u8],
        ctx: &ResponseContext,
    ) -> Result<ChatCompletionResponse, GatewayError> {
        OpenAiAdapter.parse_response(body, ctx)
    }

    fn forwards_plain_body(&self) -> bool {
        true
    }

    fn stream_decoder(&self, _ctx: &ResponseContext) -> Box<dyn StreamDecoder> {
        Box::new(OpenAiStreamDecoder::default())
    }

    fn map_error(&self, status: u16, body: &[u8]) -> GatewayError {
        map_openai_error(status, body)
    }
}

/// The reply text for a request.
pub fn reply_text(req: &ChatCompletionRequest) -> String {
    match req.last_user_text() {
        Some(t) if !t.trim().is_empty() => format!("Echo: {}", t.trim()),
        _ => "Hello from Tollgate! Send a user message and I will echo it.".to_string(),
    }
}

/// Answers an upstream request body the way an OpenAI server would.
pub fn serve(body: &[u8], id: &str, created: u64) -> Result<LocalReply, GatewayError> {
    let req = ChatCompletionRequest::from_json(body)?;
    // The client's request was checked by `build_request`; a cap the gateway added upstream
    // (the reservation's cover) is clamped, never refused.
    let text = reply_text(&req);
    let cap = req
        .requested_max_output()
        .unwrap_or(ECHO_MAX_TOKENS)
        .min(ECHO_MAX_TOKENS);
    let (pieces, used) = ECHO_ENCODING.token_pieces(&text, cap);
    let finish = if used < ECHO_ENCODING.count(&text) {
        "length"
    } else {
        "stop"
    };
    let n = req.choices().min(ECHO_MAX_CHOICES);
    let usage = Usage::new(count_chat_prompt(ECHO_ENCODING, &req), used * n);

    if !req.is_stream() {
        let content: String = pieces.concat();
        let choices: Vec<_> = (0..n)
            .map(|i| {
                json!({"index": i, "message": {"role": "assistant", "content": content},
                       "logprobs": null, "finish_reason": finish})
            })
            .collect();
        let body = json!({"id": id, "object": "chat.completion", "created": created,
                          "model": req.model, "choices": choices, "usage": usage});
        return Ok(LocalReply::Json(body.to_string().into_bytes()));
    }

    Ok(LocalReply::Events(EchoEvents {
        id: id.to_string(),
        created,
        model: req.model.clone(),
        pieces,
        n,
        finish,
        usage: req.wants_stream_usage().then_some(usage),
        step: Step::Role,
    }))
}

/// Where an [`EchoEvents`] stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The role chunk of every choice.
    Role,
    /// Piece `piece` of choice `choice` (pieces go round the choices, as OpenAI interleaves).
    Piece {
        piece: usize,
        choice: u64,
    },
    /// The finish chunk of every choice.
    Finish,
    /// The usage chunk, if asked for.
    Usage,
    /// `[DONE]`.
    Done,
    Ended,
}

/// The SSE events of a streamed echo reply, made one at a time: the role chunk, one chunk per
/// token piece and choice, the finish chunk, the usage chunk (when asked for) and `[DONE]`.
#[derive(Debug)]
pub struct EchoEvents {
    id: String,
    created: u64,
    model: String,
    pieces: Vec<String>,
    n: u64,
    finish: &'static str,
    usage: Option<Usage>,
    step: Step,
}

impl EchoEvents {
    fn chunk(&self, choices: serde_json::Value) -> Vec<u8> {
        encode_data(
            &json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model, "choices": choices})
            .to_string(),
        )
    }
}

impl Iterator for EchoEvents {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let n = self.n;
        let (event, next) = match self.step {
            Step::Role => (
                self.chunk(
                    (0..n)
                        .map(|i| json!({"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}))
                        .collect(),
                ),
                if self.pieces.is_empty() {
                    Step::Finish
                } else {
                    Step::Piece { piece: 0, choice: 0 }
                },
            ),
            Step::Piece { piece, choice } => {
                let text = self.pieces.get(piece).map_or("", String::as_str);
                let event = self.chunk(
                    json!([{"index": choice, "delta": {"content": text}, "finish_reason": null}]),
                );
                let next = if choice + 1 < n {
                    Step::Piece {
                        piece,
                        choice: choice + 1,
                    }
                } else if piece + 1 < self.pieces.len() {
                    Step::Piece {
                        piece: piece + 1,
                        choice: 0,
                    }
                } else {
                    Step::Finish
                };
                (event, next)
            }
            Step::Finish => (
                self.chunk(
                    (0..n)
                        .map(|i| json!({"index": i, "delta": {}, "finish_reason": self.finish}))
                        .collect(),
                ),
                if self.usage.is_some() {
                    Step::Usage
                } else {
                    Step::Done
                },
            ),
            Step::Usage => (
                encode_data(
                    &json!({"id": self.id, "object": "chat.completion.chunk",
                            "created": self.created, "model": self.model, "choices": [],
                            "usage": self.usage})
                    .to_string(),
                ),
                Step::Done,
            ),
            Step::Done => (encode_data("[DONE]"), Step::Ended),
            Step::Ended => return None,
        };
        self.step = next;
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::providers::{ProviderKind, StreamItem};

    fn upstream_body(json: &str) -> Vec<u8> {
        let req = ChatCompletionRequest::from_json(json.as_bytes()).unwrap();
        let route = Route {
            provider: "builtin".into(),
            kind: ProviderKind::Echo,
            base_url: "builtin:".into(),
            api_key: None,
            upstream_model: "tollgate-echo".into(),
            max_output_tokens: None,
            config: serde_json::Value::Null,
        };
        EchoAdapter.build_request(&route, &req).unwrap().body
    }

    #[test]
    fn plain_reply_with_exact_usage() {
        let body = upstream_body(
            r#"{"model":"tollgate-echo","messages":[{"role":"user","content":"hello world"}]}"#,
        );
        let LocalReply::Json(json) = serve(&body, "chatcmpl-x", 7).unwrap() else {
            panic!()
        };
        let resp = EchoAdapter
            .parse_response(&json, &crate::core::providers::mapping::testing::ctx())
            .unwrap();
        assert_eq!(
            resp.choices[0].message.content.as_deref(),
            Some("Echo: hello world")
        );
        let usage = resp.usage.unwrap();
        assert_eq!(usage.prompt_tokens, 9);
        assert_eq!(
            usage.completion_tokens,
            ECHO_ENCODING.count("Echo: hello world")
        );
        assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn stream_is_token_by_token_and_decodes() {
        let body = upstream_body(
            r#"{"model":"tollgate-echo","stream":true,"max_tokens":3,"messages":[{"role":"user","content":"one two three four five"}]}"#,
        );
        let LocalReply::Events(events) = serve(&body, "chatcmpl-x", 7).unwrap() else {
            panic!()
        };
        let events: Vec<Vec<u8>> = events.collect();
        let mut dec = EchoAdapter.stream_decoder(&crate::core::providers::mapping::testing::ctx());
        let mut text = String::new();
        let mut usage = None;
        let mut finish = None;
        let mut done = false;
        for e in &events {
            for item in dec.push(e) {
                match item {
                    StreamItem::Chunk { chunk, .. } => {
                        chunk.append_generated_text(&mut text);
                        if let Some(u) = chunk.usage {
                            usage = Some(u);
                        }
                        if let Some(f) = chunk.choices.first().and_then(|c| c.finish_reason.clone())
                        {
                            finish = Some(f);
                        }
                    }
                    StreamItem::Done => done = true,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert!(done);
        assert_eq!(text, "Echo: one");
        assert_eq!(events.len(), 1 + 3 + 1 + 1 + 1);
        assert_eq!(finish.as_deref(), Some("length"));
        assert_eq!(usage.unwrap().completion_tokens, 3);
    }

    fn decode_all(events: Vec<Vec<u8>>) -> Vec<crate::core::openai::ChatCompletionChunk> {
        let mut dec = EchoAdapter.stream_decoder(&crate::core::providers::mapping::testing::ctx());
        let mut chunks = Vec::new();
        for e in &events {
            for item in dec.push(e) {
                if let StreamItem::Chunk { chunk, .. } = item {
                    chunks.push(chunk);
                }
            }
        }
        chunks
    }

    #[test]
    fn choices_interleave_and_usage_comes_last() {
        let body = upstream_body(
            r#"{"model":"tollgate-echo","stream":true,"n":2,"stream_options":{"include_usage":true},
               "messages":[{"role":"user","content":"a b c"}]}"#,
        );
        let LocalReply::Events(events) = serve(&body, "chatcmpl-x", 7).unwrap() else {
            panic!()
        };
        let events: Vec<Vec<u8>> = events.collect();
        let pieces = ECHO_ENCODING.count("Echo: a b c") as usize;
        // role, pieces × n, finish, usage, [DONE]
        assert_eq!(events.len(), 1 + pieces * 2 + 1 + 1 + 1);
        assert_eq!(events.last().unwrap(), &encode_data("[DONE]"));
        let chunks = decode_all(events);
        let mut texts = [String::new(), String::new()];
        for (k, c) in chunks.iter().enumerate().skip(1).take(pieces * 2) {
            assert_eq!(c.choices.len(), 1);
            let choice = &c.choices[0];
            assert_eq!(choice.index as usize, (k - 1) % 2, "choices take turns");
            texts[choice.index as usize].push_str(choice.delta.content.as_deref().unwrap());
        }
        assert_eq!(texts, ["Echo: a b c", "Echo: a b c"]);
        let usage = chunks.last().unwrap().usage.clone().unwrap();
        assert_eq!(usage.completion_tokens, 2 * pieces as u64);
    }

    #[test]
    fn bounds_are_refused_before_the_call() {
        let route = Route {
            provider: "builtin".into(),
            kind: ProviderKind::Echo,
            base_url: "builtin:".into(),
            api_key: None,
            upstream_model: "tollgate-echo".into(),
            max_output_tokens: None,
            config: serde_json::Value::Null,
        };
        let build = |json: &str| {
            EchoAdapter.build_request(
                &route,
                &ChatCompletionRequest::from_json(json.as_bytes()).unwrap(),
            )
        };
        let msg = r#""messages":[{"role":"user","content":"hi"}]"#;
        let err = build(&format!(r#"{{"model":"tollgate-echo","n":5,{msg}}}"#)).unwrap_err();
        assert_eq!((err.status(), err.param.as_deref()), (400, Some("n")));
        let err = build(&format!(
            r#"{{"model":"tollgate-echo","max_tokens":4097,{msg}}}"#
        ))
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("max_tokens"));
        let err = build(&format!(
            r#"{{"model":"tollgate-echo","max_completion_tokens":500000,{msg}}}"#
        ))
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("max_completion_tokens"));
        assert!(build(&format!(
            r#"{{"model":"tollgate-echo","n":4,"max_tokens":4096,{msg}}}"#
        ))
        .is_ok());
        // serve() clamps a body that did not come through the check (a cap the gateway added).
        let big =
            format!(r#"{{"model":"tollgate-echo","n":16,"max_completion_tokens":500000,{msg}}}"#);
        let LocalReply::Json(json) = serve(big.as_bytes(), "x", 1).unwrap() else {
            panic!()
        };
        let resp: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(resp["choices"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn long_replies_stop_at_the_cap_and_are_made_lazily() {
        // The review's request, within bounds: a long message, the largest cap, four choices.
        let long = " a".repeat(20_000);
        let body = upstream_body(&format!(
            r#"{{"model":"tollgate-echo","stream":true,"n":4,"max_tokens":4096,"messages":[{{"role":"user","content":"{long}"}}]}}"#
        ));
        let LocalReply::Events(mut events) = serve(&body, "chatcmpl-x", 7).unwrap() else {
            panic!()
        };
        // Nothing is made before it is pulled: the generator holds the pieces, not the events.
        assert_eq!(events.step, Step::Role);
        assert_eq!(events.pieces.len(), 4096);
        let first = events.next().unwrap();
        assert!(String::from_utf8(first)
            .unwrap()
            .contains(r#""role":"assistant""#));
        let rest = events.by_ref().count();
        // pieces × n, finish, usage (the upstream request asks for it), [DONE]
        assert_eq!(rest, 4096 * 4 + 1 + 1 + 1);
        assert!(events.next().is_none());
    }
}
