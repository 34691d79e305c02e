//! Azure OpenAI: the OpenAI wire format behind deployment-based URLs.
//!
//! Follows "Azure OpenAI in Azure AI Foundry Models REST API reference"
//! (<https://learn.microsoft.com/azure/ai-foundry/openai/reference>):
//! `POST {base}/openai/deployments/{deployment}/chat/completions?api-version={version}` with the
//! key in the `api-key` header. The base URL is the resource endpoint
//! (`https://{resource}.openai.azure.com`); the deployment is the model's `upstream_model` unless
//! the provider config names one (`{"deployment": …}`); the API version comes from the provider
//! config (`{"api_version": …}`, default [`DEFAULT_API_VERSION`]). `"api_version": "v1"` selects
//! the version-less v1 API (`{base}/openai/v1/chat/completions`, model in the body).
//!
//! Bodies, streams and errors are OpenAI's (content-filter refusals are 400s with code
//! `content_filter`, kept as such and never retried elsewhere). The output cap is sent as
//! `max_completion_tokens` (required by reasoning deployments) on API versions from
//! `2024-09-01` on and on `v1`, as `max_tokens` on older versions, which refuse the newer field;
//! the provider config's `output_cap_field` overrides. `data_sources` ("On Your Data") is refused
//! unless allowed (see `openai`).

use super::openai::{
    base_headers, map_openai_error, openai_body, parse_openai_response, CapField, Dialect,
    OpenAiStreamDecoder,
};
use super::{join_url, Adapter, ResponseContext, Route, StreamDecoder, UpstreamRequest};
use crate::core::error::GatewayError;
use crate::core::openai::{ChatCompletionRequest, ChatCompletionResponse};

/// The GA API version used when the provider config sets none.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

pub struct AzureAdapter;

/// Percent-encodes a URL path segment or query value (RFC 3986 unreserved characters kept).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The field of the output cap for an API version (see the module doc).
pub fn cap_field_for_version(version: &str) -> CapField {
    if version == "v1" || version >= "2024-09-01" {
        CapField::MaxCompletionTokens
    } else {
        CapField::MaxTokens
    }
}

/// The chat-completions URL of a route.
/// The route's API version: the provider config's `api_version`, else [`DEFAULT_API_VERSION`].
pub fn api_version(route: &Route) -> &str {
    route
        .config_str("api_version")
        .unwrap_or(DEFAULT_API_VERSION)
}

pub fn azure_url(route: &Route) -> String {
    let version = api_version(route);
    let base = route.base_url.trim_end_matches('/');
    let base = base.strip_suffix("/openai").unwrap_or(base);
    if version == "v1" {
        return join_url(base, "openai/v1/chat/completions");
    }
    let deployment = route
        .config_str("deployment")
        .unwrap_or(&route.upstream_model);
    format!(
        "{}?api-version={}",
        join_url(
            base,
            &format!(
                "openai/deployments/{}/chat/completions",
                percent_encode(deployment)
            )
        ),
        percent_encode(version)
    )
}

impl Adapter for AzureAdapter {
    fn build_request(
        &self,
        route: &Route,
        req: &ChatCompletionRequest,
    ) -> Result<UpstreamRequest, GatewayError> {
        let mut headers = base_headers(route, req.is_stream());
        if let Some(key) = &route.api_key {
            headers.push(("api-key".to_string(), key.clone()));
        }
        Ok(UpstreamRequest {
            url: azure_url(route),
            headers,
            body: openai_body(
                route,
                req,
                Dialect {
                    stream_options: true,
                    cap_field: CapField::of_route(route, cap_field_for_version(api_version(route))),
                },
            )?,
        })
    }

    fn parse_response(
        &self,
        body: &[u8],
        ctx: &ResponseContext,
    ) -> Result<ChatCompletionResponse, GatewayError> {
        parse_openai_response(body, ctx)
    }

    fn forwards_plain_body(&self) -> bool {
        true
    }

    fn stream_decoder(&self, ctx: &ResponseContext) -> Box<dyn StreamDecoder> {
        Box::new(OpenAiStreamDecoder::default().for_model(&ctx.model))
    }

    fn map_error(&self, status: u16, body: &[u8]) -> GatewayError {
        map_openai_error(status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::providers::mapping::testing::{ctx, decode_every_way, fixture, request};
    use crate::core::providers::ProviderKind;
    use serde_json::{json, Value};

    fn route(config: Value) -> Route {
        Route {
            provider: "azure".into(),
            kind: ProviderKind::Azure,
            base_url: "https://my-resource.openai.azure.com/".into(),
            api_key: Some("azure-key".into()),
            upstream_model: "gpt-4o-prod".into(),
            max_output_tokens: Some(4096),
            config,
        }
    }

    #[test]
    fn deployment_url_api_key_header_and_version() {
        let req = request(fixture(include_bytes!(
            "../../../tests/fixtures/azure/request.json"
        )));
        let up = AzureAdapter
            .build_request(&route(json!({"api_version": "2024-06-01"})), &req)
            .unwrap();
        assert_eq!(
            up.url,
            "https://my-resource.openai.azure.com/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-06-01"
        );
        assert!(up.headers.contains(&("api-key".into(), "azure-key".into())));
        assert!(!up.headers.iter().any(|(k, _)| k == "authorization"));
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["messages"][0]["role"], "system");

        let up = AzureAdapter
            .build_request(&route(Value::Null), &req)
            .unwrap();
        assert!(up.url.ends_with("?api-version=2024-10-21"), "{}", up.url);
        let up = AzureAdapter
            .build_request(&route(json!({"api_version": "v1"})), &req)
            .unwrap();
        assert_eq!(
            up.url,
            "https://my-resource.openai.azure.com/openai/v1/chat/completions"
        );
        let up = AzureAdapter
            .build_request(&route(json!({"deployment": "my dep"})), &req)
            .unwrap();
        assert!(up.url.contains("/deployments/my%20dep/"), "{}", up.url);
    }

    #[test]
    fn cap_field_follows_the_api_version() {
        let req = request(
            br#"{"model":"m","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}"#,
        );
        let sent = |config: Value| -> (Option<u64>, Option<u64>) {
            let up = AzureAdapter.build_request(&route(config), &req).unwrap();
            let b: Value = serde_json::from_slice(&up.body).unwrap();
            (
                b["max_completion_tokens"].as_u64(),
                b["max_tokens"].as_u64(),
            )
        };
        assert_eq!(sent(Value::Null), (Some(50), None));
        assert_eq!(sent(json!({"api_version": "v1"})), (Some(50), None));
        assert_eq!(
            sent(json!({"api_version": "2024-09-01-preview"})),
            (Some(50), None)
        );
        assert_eq!(sent(json!({"api_version": "2024-06-01"})), (None, Some(50)));
        assert_eq!(
            sent(json!({"api_version": "2024-08-01-preview"})),
            (None, Some(50))
        );
        assert_eq!(
            sent(json!({"api_version": "2024-06-01", "output_cap_field": "both"})),
            (Some(50), Some(50))
        );
        // No client cap: the model's (4096 on this route).
        let req = request(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        let up = AzureAdapter
            .build_request(&route(Value::Null), &req)
            .unwrap();
        let b: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(b["max_completion_tokens"], 4096);
    }

    #[test]
    fn plain_response_with_filter_results() {
        let body = fixture(include_bytes!(
            "../../../tests/fixtures/azure/response.json"
        ));
        let r = AzureAdapter.parse_response(body, &ctx()).unwrap();
        assert_eq!(
            r.choices[0].message.content.as_deref(),
            Some("Hello! How can I help?")
        );
        let u = r.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens()),
            (18, 7, 0)
        );
        assert!(AzureAdapter.forwards_plain_body());
    }

    #[test]
    fn stream_with_prompt_filter_chunk() {
        let transcript = fixture(include_bytes!("../../../tests/fixtures/azure/stream.sse"));
        let d = decode_every_way(&|| AzureAdapter.stream_decoder(&ctx()), transcript);
        assert_eq!(d.text, "Hello ünïcødé!");
        assert_eq!(d.finish.as_deref(), Some("stop"));
        assert_eq!(d.usage.unwrap().completion_tokens, 4);
        assert!(d.done && d.errors.is_empty());
    }

    #[test]
    fn content_filter_is_a_kept_non_retryable_400() {
        let body = fixture(include_bytes!(
            "../../../tests/fixtures/azure/error_content_filter.json"
        ));
        let e = AzureAdapter.map_error(400, body);
        assert_eq!(e.status(), 400);
        assert_eq!(e.code(), "content_filter");
        assert!(!e.retryable());
        assert!(e.message.contains("content management policy"));
        let e = AzureAdapter.map_error(429, br#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded call rate limit of your current OpenAI S0 pricing tier."}}"#);
        assert!(e.retryable() && e.status() == 429 && !e.message.contains("S0"));
    }
}
