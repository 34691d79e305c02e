//! OpenAI and every OpenAI-compatible server (LocalAI, vLLM, Groq, DeepSeek, Mistral, …).
//!
//! Follows the OpenAI API reference for `POST /v1/chat/completions`: the request passes through
//! with `model` replaced by the route's upstream model; streams are asked for usage
//! (`stream_options.include_usage`) so billing can use the provider's own count; stream chunks are
//! forwarded with their original bytes.

use serde::Deserialize;
use serde_json::Value;

use super::{join_url, Adapter, Route, StreamDecoder, StreamItem, UpstreamRequest};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, StreamOptions,
};
use crate::core::sse::{SseParser, DONE};

pub struct OpenAiAdapter;

impl Adapter for OpenAiAdapter {
    fn build_request(
        &self,
        route: &Route,
        req: &ChatCompletionRequest,
    ) -> Result<UpstreamRequest, GatewayError> {
        let mut upstream = req.clone();
        upstream.model = route.upstream_model.clone();
        if upstream.is_stream() {
            let opts = upstream
                .stream_options
                .get_or_insert_with(|| StreamOptions {
                    include_usage: None,
                    extra: Default::default(),
                });
            opts.include_usage = Some(true);
        }
        let body = serde_json::to_vec(&upstream)
            .map_err(|e| GatewayError::internal(format!("cannot encode upstream request: {e}")))?;
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if upstream.is_stream() {
            headers.push(("accept".to_string(), "text/event-stream".to_string()));
        }
        if let Some(key) = &route.api_key {
            headers.push(("authorization".to_string(), format!("Bearer {key}")));
        }
        Ok(UpstreamRequest {
            url: join_url(&route.base_url, "chat/completions"),
            headers,
            body,
        })
    }

    fn parse_response(&self, body: &[u8]) -> Result<ChatCompletionResponse, GatewayError> {
        serde_json::from_slice(body).map_err(|e| {
            GatewayError::new(
                ErrorKind::UpstreamFailed,
                format!("The provider returned an invalid chat completion: {e}"),
            )
        })
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(OpenAiStreamDecoder::default())
    }

    fn map_error(&self, status: u16, body: &[u8]) -> GatewayError {
        map_openai_error(status, body)
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    param: Option<String>,
}

/// Maps an upstream error status and OpenAI-shaped (or any) body to a gateway error that keeps
/// the provider's message. 4xx request errors stay 4xx and are never retried elsewhere;
/// credential, availability and rate-limit failures are the gateway's problem (502/504/429) and
/// may be retried on another route.
pub fn map_openai_error(status: u16, body: &[u8]) -> GatewayError {
    let parsed: Option<ErrorBody> = serde_json::from_slice::<ErrorEnvelope>(body)
        .ok()
        .map(|e| e.error);
    let detail = match &parsed {
        Some(ErrorBody {
            message: Some(m), ..
        }) => m.clone(),
        _ => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.chars().take(500).collect();
            if text.trim().is_empty() {
                "no error details".to_string()
            } else {
                text.trim().to_string()
            }
        }
    };
    let code = parsed.as_ref().and_then(|e| match &e.code {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    });
    let (kind, message) = match status {
        401 | 403 => (
            ErrorKind::UpstreamFailed,
            format!("The provider refused the gateway's credentials (HTTP {status}): {detail}"),
        ),
        404 => (
            ErrorKind::UpstreamFailed,
            format!("The provider does not know this model or route (HTTP 404): {detail}"),
        ),
        408 => (
            ErrorKind::UpstreamTimeout,
            format!("The provider timed out (HTTP 408): {detail}"),
        ),
        429 => (
            ErrorKind::UpstreamRateLimited,
            format!("The provider is rate limiting requests (HTTP 429): {detail}"),
        ),
        400..=499 => (ErrorKind::UpstreamRejected(status), detail),
        _ => (
            ErrorKind::UpstreamFailed,
            format!("The provider failed (HTTP {status}): {detail}"),
        ),
    };
    let mut err = GatewayError::new(kind, message);
    if let ErrorKind::UpstreamRejected(_) = kind {
        err.code = code;
        err.param = parsed.and_then(|e| e.param);
    }
    err
}

/// Decodes an OpenAI SSE stream, keeping each event's bytes for pass-through.
#[derive(Default)]
pub struct OpenAiStreamDecoder {
    sse: SseParser,
}

impl OpenAiStreamDecoder {
    fn decode(event: crate::core::sse::SseEvent) -> StreamItem {
        let Some(data) = event.data else {
            return StreamItem::KeepAlive(event.raw);
        };
        let data = data.trim();
        if data == DONE {
            return StreamItem::Done;
        }
        if data.is_empty() {
            return StreamItem::KeepAlive(event.raw);
        }
        let value: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                return StreamItem::Error(GatewayError::new(
                    ErrorKind::UpstreamFailed,
                    format!("The provider sent a malformed stream event: {e}"),
                ))
            }
        };
        if let Some(err) = value.get("error") {
            let body = serde_json::json!({ "error": err }).to_string();
            return StreamItem::Error(map_openai_error(500, body.as_bytes()));
        }
        match serde_json::from_value::<ChatCompletionChunk>(value) {
            Ok(chunk) => StreamItem::Chunk {
                chunk,
                raw: Some(event.raw),
            },
            Err(e) => StreamItem::Error(GatewayError::new(
                ErrorKind::UpstreamFailed,
                format!("The provider sent an invalid stream chunk: {e}"),
            )),
        }
    }
}

fn oversized(e: crate::core::sse::SseError) -> StreamItem {
    StreamItem::Error(GatewayError::new(
        ErrorKind::UpstreamFailed,
        format!("The provider sent an unusable stream: {e}"),
    ))
}

impl StreamDecoder for OpenAiStreamDecoder {
    fn push(&mut self, bytes: &[u8]) -> Vec<StreamItem> {
        match self.sse.push(bytes) {
            Ok(events) => events.into_iter().map(Self::decode).collect(),
            Err(e) => vec![oversized(e)],
        }
    }

    fn finish(&mut self) -> Vec<StreamItem> {
        match self.sse.finish() {
            Ok(event) => event.into_iter().map(Self::decode).collect(),
            Err(e) => vec![oversized(e)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::providers::ProviderKind;

    fn route() -> Route {
        Route {
            provider: "openai".into(),
            kind: ProviderKind::OpenAi,
            base_url: "http://127.0.0.1:9/v1/".into(),
            api_key: Some("sk-test".into()),
            upstream_model: "gpt-4o-2024-08-06".into(),
        }
    }

    #[test]
    fn request_replaces_model_and_asks_for_stream_usage() {
        let req = ChatCompletionRequest::from_json(
            br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}],"top_p":0.5,
            "stream_options":{"x":1}}"#,
        )
        .unwrap();
        let up = OpenAiAdapter.build_request(&route(), &req).unwrap();
        assert_eq!(up.url, "http://127.0.0.1:9/v1/chat/completions");
        assert!(up
            .headers
            .contains(&("authorization".into(), "Bearer sk-test".into())));
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(body["model"], "gpt-4o-2024-08-06");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["stream_options"]["x"], 1);
        assert_eq!(body["top_p"], 0.5);
    }

    #[test]
    fn plain_request_has_no_stream_options() {
        let req = ChatCompletionRequest::from_json(
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        let up = OpenAiAdapter.build_request(&route(), &req).unwrap();
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert!(body.get("stream_options").is_none());
        assert!(body.get("stream").is_none());
    }

    #[test]
    fn errors_keep_the_provider_message() {
        let body = br#"{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        let e = map_openai_error(400, body);
        assert_eq!(e.status(), 400);
        assert_eq!(e.code(), "context_length_exceeded");
        assert_eq!(e.param.as_deref(), Some("messages"));
        assert!(!e.retryable());
        assert!(e.message.contains("maximum context length"));

        let e = map_openai_error(503, b"<html>bad gateway</html>");
        assert_eq!(e.status(), 502);
        assert!(e.retryable());
        assert!(e.message.contains("bad gateway"));

        let e = map_openai_error(401, br#"{"error":{"message":"Incorrect API key"}}"#);
        assert_eq!(e.status(), 502);
        let e = map_openai_error(429, b"");
        assert_eq!(e.status(), 429);
        assert!(e.retryable());
    }

    #[test]
    fn decodes_stream_with_crlf_and_splits() {
        let transcript = concat!(
            ": keep-alive\r\n\r\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\r\n\r\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"你好\"},\"finish_reason\":null}]}\r\n\r\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\r\n\r\n",
            "data: [DONE]\r\n\r\n"
        )
        .as_bytes();
        for split in 0..transcript.len() {
            let mut d = OpenAiStreamDecoder::default();
            let mut items = d.push(&transcript[..split]);
            items.extend(d.push(&transcript[split..]));
            items.extend(d.finish());
            assert_eq!(items.len(), 5, "split at {split}");
            assert!(matches!(items[0], StreamItem::KeepAlive(_)));
            let mut text = String::new();
            for item in &items[1..3] {
                let StreamItem::Chunk { chunk, raw } = item else {
                    panic!("chunk expected")
                };
                assert!(raw.is_some());
                chunk.append_generated_text(&mut text);
            }
            assert_eq!(text, "你好");
            let StreamItem::Chunk { chunk, .. } = &items[3] else {
                panic!("usage expected")
            };
            assert!(chunk.is_usage_only());
            assert_eq!(items[4], StreamItem::Done);
        }
    }

    #[test]
    fn stream_errors_and_garbage() {
        let mut d = OpenAiStreamDecoder::default();
        let items =
            d.push(b"data: {\"error\":{\"message\":\"overloaded\"}}\n\ndata: {not json\n\n");
        assert!(matches!(&items[0], StreamItem::Error(e) if e.message.contains("overloaded")));
        assert!(matches!(&items[1], StreamItem::Error(e) if e.status() == 502));
    }
}
