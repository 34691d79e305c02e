//! Hugging Face: Text Generation Inference (TGI) servers and Inference Endpoints, and the
//! Inference Providers router.
//!
//! Both speak OpenAI's Messages API (TGI: "Messages API",
//! <https://huggingface.co/docs/text-generation-inference/messages_api>; router: "Chat
//! Completion", <https://huggingface.co/docs/inference-providers/tasks/chat-completion>) with an
//! `hf_…` token as a bearer key. What differs from plain `openai`, and is handled here:
//!
//! * **URL.** An Inference Endpoint's base URL is the bare endpoint
//!   (`https://…endpoints.huggingface.cloud`); the API lives under `/v1`. A base URL that already
//!   ends in `/v1` (the router, `https://router.huggingface.co/v1`) is used as is.
//! * **Model naming.** TGI serves one model and ignores `model` (`tgi` is conventional). The
//!   router takes `org/model`, optionally suffixed `:provider` (or `:fastest`, `:cheapest`); the
//!   provider config `{"provider": "together"}` appends that suffix to models that have none.
//! * **Errors.** TGI answers `{"error": "<message>", "error_type": "validation" | "overloaded" |
//!   "generation" | "incomplete_generation"}` — a string, not OpenAI's object — both as an HTTP
//!   body and inside a stream; a loading model on serverless inference is a 503
//!   `{"error": …, "estimated_time": …}`. `error_type` decides retryability.
//! * **Chunks.** Some TGI versions send a stream delta's `tool_calls` as one object instead of
//!   an array, and tool-call `arguments` as a JSON object instead of a string; finish reasons
//!   are TGI's own (`eos_token`, `stop_sequence`). All are normalised to OpenAI's shape.

use serde_json::Value;

use super::mapping::{body_text, error_for_status, provider_failure};
use super::openai::{
    base_headers, map_openai_error, normalize_usage, openai_body, CapField, Dialect,
    OpenAiStreamDecoder,
};
use super::{join_url, Adapter, ResponseContext, Route, StreamDecoder, UpstreamRequest};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::openai::{ChatCompletionRequest, ChatCompletionResponse};

/// The Inference Providers router.
pub const ROUTER_BASE_URL: &str = "https://router.huggingface.co/v1";

pub struct HuggingFaceAdapter;

/// The chat-completions URL for a base URL.
pub fn chat_url(base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    if base.ends_with("/v1") {
        join_url(base, "chat/completions")
    } else {
        join_url(base, "v1/chat/completions")
    }
}

/// The model name sent upstream: `:provider` appended when the config names one and the model
/// has no suffix yet.
pub fn model_name(route: &Route) -> String {
    match route.config_str("provider") {
        Some(p) if !p.is_empty() && !route.upstream_model.contains(':') => {
            format!("{}:{p}", route.upstream_model)
        }
        _ => route.upstream_model.clone(),
    }
}

impl Adapter for HuggingFaceAdapter {
    fn build_request(
        &self,
        route: &Route,
        req: &ChatCompletionRequest,
    ) -> Result<UpstreamRequest, GatewayError> {
        let mut routed = route.clone();
        routed.upstream_model = model_name(route);
        let mut headers = base_headers(route, req.is_stream());
        if let Some(key) = &route.api_key {
            headers.push(("authorization".to_string(), format!("Bearer {key}")));
        }
        Ok(UpstreamRequest {
            url: chat_url(&route.base_url),
            headers,
            body: openai_body(
                &routed,
                req,
                Dialect {
                    stream_options: true,
                    cap_field: CapField::of_route(route, CapField::MaxTokens),
                },
            )?,
        })
    }

    fn parse_response(
        &self,
        body: &[u8],
        ctx: &ResponseContext,
    ) -> Result<ChatCompletionResponse, GatewayError> {
        let invalid = |e: serde_json::Error| {
            GatewayError::new(
                ErrorKind::UpstreamFailed,
                format!("The provider returned an invalid chat completion: {e}"),
            )
        };
        let mut value: Value = serde_json::from_slice(body).map_err(invalid)?;
        normalize_tgi(&mut value);
        let mut resp: ChatCompletionResponse = serde_json::from_value(value).map_err(invalid)?;
        resp.model = ctx.model.clone();
        Ok(resp)
    }

    fn stream_decoder(&self, ctx: &ResponseContext) -> Box<dyn StreamDecoder> {
        Box::new(OpenAiStreamDecoder::with_hooks(map_hf_error, normalize_tgi).for_model(&ctx.model))
    }

    fn map_error(&self, status: u16, body: &[u8]) -> GatewayError {
        map_hf_error(status, body)
    }
}

/// TGI's chunk and response quirks → OpenAI's shape (plus the usage normalisation of
/// [`normalize_usage`]). Returns whether anything changed.
pub fn normalize_tgi(value: &mut Value) -> bool {
    let mut changed = normalize_usage(value);
    let Some(Value::Array(choices)) = value.get_mut("choices") else {
        return changed;
    };
    for choice in choices {
        // TGI's own finish reasons.
        if let Some(reason) = choice.get_mut("finish_reason") {
            if matches!(reason.as_str(), Some("eos_token") | Some("stop_sequence")) {
                *reason = Value::String("stop".to_string());
                changed = true;
            }
        }
        for holder in ["delta", "message"] {
            let Some(msg) = choice.get_mut(holder) else {
                continue;
            };
            let Some(calls) = msg.get_mut("tool_calls") else {
                continue;
            };
            if calls.is_object() {
                *calls = Value::Array(vec![calls.take()]);
                changed = true;
            }
            let Value::Array(list) = calls else {
                continue;
            };
            for (i, call) in list.iter_mut().enumerate() {
                if holder == "delta" && call.get("index").is_none() {
                    if let Value::Object(o) = call {
                        o.insert("index".to_string(), Value::from(i));
                        changed = true;
                    }
                }
                if let Some(f) = call.get_mut("function") {
                    if let Some(args) = f.get_mut("arguments") {
                        if args.is_object() || args.is_array() {
                            *args = Value::String(args.to_string());
                            changed = true;
                        }
                    }
                }
            }
        }
    }
    changed
}

/// Maps TGI's and the router's error bodies: `{"error": "<text>", "error_type": …}`, and
/// OpenAI-shaped ones.
pub fn map_hf_error(status: u16, body: &[u8]) -> GatewayError {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let Some(message) = value
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str)
    else {
        return map_openai_error(status, body);
    };
    let message = if message.trim().is_empty() {
        body_text(body)
    } else {
        message.to_string()
    };
    let error_type = value
        .as_ref()
        .and_then(|v| v.get("error_type"))
        .and_then(Value::as_str);
    match error_type {
        Some("overloaded") => provider_failure(ErrorKind::UpstreamRateLimited, "is overloaded"),
        Some("validation") => {
            let status = if (400..500).contains(&status) {
                status
            } else {
                422
            };
            error_for_status(status, &message, Some("validation".to_string()), None)
        }
        Some("generation") | Some("incomplete_generation") => {
            provider_failure(ErrorKind::UpstreamFailed, "failed while generating")
        }
        _ => error_for_status(status, &message, None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::providers::mapping::testing::{ctx, decode_every_way, fixture, request};
    use crate::core::providers::ProviderKind;
    use serde_json::json;

    fn route(base: &str, model: &str, config: Value) -> Route {
        Route {
            provider: "hf".into(),
            kind: ProviderKind::HuggingFace,
            base_url: base.into(),
            api_key: Some("hf_token".into()),
            upstream_model: model.into(),
            max_output_tokens: None,
            config,
        }
    }

    #[test]
    fn urls_models_and_auth() {
        let req = request(fixture(include_bytes!(
            "../../../tests/fixtures/huggingface/request.json"
        )));
        let up = HuggingFaceAdapter
            .build_request(
                &route(
                    ROUTER_BASE_URL,
                    "meta-llama/Llama-3.1-8B-Instruct",
                    json!({"provider": "together"}),
                ),
                &req,
            )
            .unwrap();
        assert_eq!(up.url, "https://router.huggingface.co/v1/chat/completions");
        assert!(up
            .headers
            .contains(&("authorization".into(), "Bearer hf_token".into())));
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(body["model"], "meta-llama/Llama-3.1-8B-Instruct:together");
        assert_eq!(body["stream_options"]["include_usage"], true);

        let up = HuggingFaceAdapter
            .build_request(
                &route(
                    "https://abc.us-east-1.aws.endpoints.huggingface.cloud/",
                    "tgi",
                    Value::Null,
                ),
                &req,
            )
            .unwrap();
        assert_eq!(
            up.url,
            "https://abc.us-east-1.aws.endpoints.huggingface.cloud/v1/chat/completions"
        );
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(body["model"], "tgi");
        let r = route(ROUTER_BASE_URL, "org/m:fastest", json!({"provider": "x"}));
        assert_eq!(model_name(&r), "org/m:fastest");
    }

    #[test]
    fn tgi_response_with_object_arguments() {
        let body = fixture(include_bytes!(
            "../../../tests/fixtures/huggingface/response_tools.json"
        ));
        let r = HuggingFaceAdapter.parse_response(body, &ctx()).unwrap();
        let call = &r.choices[0].message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.function.name, "get_current_weather");
        let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
        assert_eq!(args["location"], "Brooklyn, NY");
        assert_eq!(r.usage.unwrap().prompt_tokens, 31);
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn tgi_stream_with_object_tool_calls_and_usage() {
        let transcript = fixture(include_bytes!(
            "../../../tests/fixtures/huggingface/stream_tools.sse"
        ));
        let d = decode_every_way(&|| HuggingFaceAdapter.stream_decoder(&ctx()), transcript);
        assert_eq!(d.calls.len(), 1);
        assert_eq!(d.calls[0].1, "get_current_weather");
        let args: Value = serde_json::from_str(&d.calls[0].2).unwrap();
        assert_eq!(
            args,
            json!({"location": "Brooklyn, NY", "format": "fahrenheit"})
        );
        assert_eq!(d.usage.unwrap().total_tokens, 51);
        assert_eq!(d.finish.as_deref(), Some("stop"));
        assert!(d.done && d.errors.is_empty());
    }

    #[test]
    fn tgi_errors_by_type() {
        let e = map_hf_error(
            422,
            fixture(include_bytes!(
                "../../../tests/fixtures/huggingface/error_validation.json"
            )),
        );
        assert_eq!(e.status(), 422);
        assert!(!e.retryable());
        assert!(e.message.contains("must have less than"));
        let e = map_hf_error(
            429,
            br#"{"error":"Model is overloaded","error_type":"overloaded"}"#,
        );
        assert_eq!(e.status(), 429);
        assert!(e.retryable());
        let e = map_hf_error(
            503,
            br#"{"error":"Model meta-llama/Llama-3.1-8B-Instruct is currently loading","estimated_time":20.0}"#,
        );
        assert_eq!(e.status(), 502);
        assert!(
            e.retryable() && !e.message.contains("Llama"),
            "{}",
            e.message
        );
        let e = map_hf_error(
            401,
            br#"{"error":{"message":"Invalid credentials in Authorization header: hf_abc"}}"#,
        );
        assert!(e.retryable() && !e.message.contains("hf_") && e.message.contains("HTTP 401"));

        let mut dec = HuggingFaceAdapter.stream_decoder(&ctx());
        let items = dec.push(b"data: {\"error\":\"Request failed during generation: CUDA out of memory\",\"error_type\":\"generation\"}\n\n");
        let d = crate::core::providers::mapping::testing::summarise(items);
        assert_eq!(d.errors.len(), 1);
        assert!(
            !d.errors[0].message.contains("CUDA"),
            "{}",
            d.errors[0].message
        );
        assert_eq!(d.errors[0].status(), 502);
    }
}
