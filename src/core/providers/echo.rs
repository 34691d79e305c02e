//! `tollgate-echo`, the built-in demo model: a fresh install answers with no provider key.
//!
//! It behaves like an OpenAI server that replies `Echo: <last user message>` (or a greeting when
//! there is none), one real `o200k_base` token per stream chunk, honouring `max_tokens` (then
//! `finish_reason` is `length`) and `n`, and reporting exact usage. The edge shell serves it
//! instead of making a fetch; everything else (parsing, metering, billing) is the OpenAI path.

use serde_json::json;

use super::openai::{map_openai_error, OpenAiAdapter, OpenAiStreamDecoder};
use super::{Adapter, ResponseContext, Route, StreamDecoder, UpstreamRequest};
use crate::core::error::GatewayError;
use crate::core::openai::{ChatCompletionRequest, ChatCompletionResponse, Usage};
use crate::core::sse::encode_data;
use crate::core::tokens::{count_chat_prompt, Encoding};

pub struct EchoAdapter;

/// The tokenizer the echo model speaks.
pub const ECHO_ENCODING: Encoding = Encoding::O200kBase;
/// Longest reply, in tokens, when the request sets no cap.
pub const ECHO_MAX_TOKENS: u64 = 4096;

impl Adapter for EchoAdapter {
    fn build_request(
        &self,
        route: &Route,
        req: &ChatCompletionRequest,
    ) -> Result<UpstreamRequest, GatewayError> {
        OpenAiAdapter.build_request(route, req)
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

/// What the echo "server" answers.
#[derive(Debug, Clone, PartialEq)]
pub enum EchoReply {
    /// A plain JSON response body.
    Json(Vec<u8>),
    /// SSE events, each to be sent as its own chunk.
    Events(Vec<Vec<u8>>),
}

/// The reply text for a request.
pub fn reply_text(req: &ChatCompletionRequest) -> String {
    match req.last_user_text() {
        Some(t) if !t.trim().is_empty() => format!("Echo: {}", t.trim()),
        _ => "Hello from Tollgate! Send a user message and I will echo it.".to_string(),
    }
}

/// Answers an upstream request body the way an OpenAI server would.
pub fn serve(body: &[u8], id: &str, created: u64) -> Result<EchoReply, GatewayError> {
    let req = ChatCompletionRequest::from_json(body)?;
    let text = reply_text(&req);
    let cap = req.requested_max_output().unwrap_or(ECHO_MAX_TOKENS);
    let (pieces, used) = ECHO_ENCODING.token_pieces(&text, cap);
    let finish = if used < ECHO_ENCODING.count(&text) {
        "length"
    } else {
        "stop"
    };
    let n = req.choices();
    let usage = Usage::new(count_chat_prompt(ECHO_ENCODING, &req), used * n);
    let model = req.model.clone();

    if !req.is_stream() {
        let content: String = pieces.concat();
        let choices: Vec<_> = (0..n)
            .map(|i| {
                json!({"index": i, "message": {"role": "assistant", "content": content},
                       "logprobs": null, "finish_reason": finish})
            })
            .collect();
        let body = json!({"id": id, "object": "chat.completion", "created": created,
                          "model": model, "choices": choices, "usage": usage});
        return Ok(EchoReply::Json(body.to_string().into_bytes()));
    }

    let chunk = |choices: serde_json::Value| {
        encode_data(
            &json!({"id": id, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": choices})
            .to_string(),
        )
    };
    let mut events = Vec::with_capacity(pieces.len() * n as usize + 4);
    events.push(chunk(
        (0..n)
            .map(|i| json!({"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}))
            .collect(),
    ));
    for piece in &pieces {
        for i in 0..n {
            events.push(chunk(
                json!([{"index": i, "delta": {"content": piece}, "finish_reason": null}]),
            ));
        }
    }
    events.push(chunk(
        (0..n)
            .map(|i| json!({"index": i, "delta": {}, "finish_reason": finish}))
            .collect(),
    ));
    if req.wants_stream_usage() {
        events.push(encode_data(
            &json!({"id": id, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [], "usage": usage})
            .to_string(),
        ));
    }
    events.push(encode_data("[DONE]"));
    Ok(EchoReply::Events(events))
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
        let EchoReply::Json(json) = serve(&body, "chatcmpl-x", 7).unwrap() else {
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
        let EchoReply::Events(events) = serve(&body, "chatcmpl-x", 7).unwrap() else {
            panic!()
        };
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
}
