//! Hugging Face embeddings: a Text Embeddings Inference server (an Inference Endpoint or your
//! own) or the Inference Providers router.
//!
//! * A base URL ending in `/v1` (the router, `https://router.huggingface.co/v1`, or TEI's own
//!   OpenAI-compatible route) gets OpenAI's `/embeddings` body, the model named as for chat
//!   (`org/model`, `:provider` appended from the provider config).
//! * Any other base URL is a TEI server: `POST {base}/embed` with `{"inputs": [...],
//!   "dimensions"?}` (TEI's API: <https://huggingface.github.io/text-embeddings-inference/>), whose
//!   answer is one array of floats per input and no usage (billed on the gateway's count).

use serde_json::{json, Value};

use super::super::huggingface::model_name;
use super::super::openai::base_headers;
use super::super::{join_url, Route, UpstreamRequest};
use super::openai::{embeddings_body, floats};
use super::unusable;
use crate::core::error::GatewayError;
use crate::core::inbound::embeddings::{Embeddings, EmbeddingsRequest};

/// Whether the base URL speaks OpenAI's embeddings route (ends in `/v1`).
pub fn is_openai_route(base_url: &str) -> bool {
    base_url.trim_end_matches('/').ends_with("/v1")
}

pub fn build_embeddings(
    route: &Route,
    req: &EmbeddingsRequest,
) -> Result<UpstreamRequest, GatewayError> {
    let mut headers = base_headers(route, false);
    if let Some(key) = &route.api_key {
        headers.push(("authorization".to_string(), format!("Bearer {key}")));
    }
    let (url, body) = if is_openai_route(&route.base_url) {
        (
            join_url(&route.base_url, "embeddings"),
            embeddings_body(route, req, &model_name(route))?,
        )
    } else {
        if let Some(name) = req.extra.keys().next() {
            return Err(GatewayError::invalid_param(
                name,
                format!("Text Embeddings Inference does not take '{name}'."),
            )
            .with_code("unsupported_for_provider"));
        }
        let mut body = json!({"inputs": req.texts("Text Embeddings Inference")?});
        if let Some(d) = req.dimensions {
            body["dimensions"] = d.into();
        }
        (join_url(&route.base_url, "embed"), body)
    };
    Ok(UpstreamRequest {
        url,
        headers,
        body: serde_json::to_vec(&body)
            .map_err(|e| GatewayError::internal(format!("cannot encode upstream request: {e}")))?,
    })
}

/// TEI's `/embed` answer: `[[f32, …], …]`.
pub fn parse_tei(body: &[u8]) -> Result<Embeddings, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(unusable)?;
    let vectors = value
        .as_array()
        .ok_or_else(|| unusable("not a list of embeddings"))?
        .iter()
        .map(floats)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| unusable("an embedding that is not a list of numbers"))?;
    Ok(Embeddings {
        vectors,
        prompt_tokens: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::route;
    use super::super::{parse_embeddings, ProviderKind};
    use super::*;
    use crate::core::inbound::embeddings::decode_request;
    use crate::core::inbound::testing::fixture;
    use crate::core::providers::huggingface::ROUTER_BASE_URL;

    #[test]
    fn tei_and_router() {
        let req = decode_request(br#"{"model":"pub","input":["a","b"]}"#).unwrap();
        let tei = route(
            ProviderKind::HuggingFace,
            "https://x.endpoints.huggingface.cloud/",
            Value::Null,
        );
        let up = build_embeddings(&tei, &req).unwrap();
        assert_eq!(up.url, "https://x.endpoints.huggingface.cloud/embed");
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(body, json!({"inputs":["a","b"]}));
        let router = route(
            ProviderKind::HuggingFace,
            ROUTER_BASE_URL,
            json!({"provider": "nebius"}),
        );
        let up = build_embeddings(&router, &req).unwrap();
        assert_eq!(up.url, "https://router.huggingface.co/v1/embeddings");
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(body["model"], "up-model:nebius");
        let tei_body = fixture(include_bytes!(
            "../../../../tests/fixtures/media/tei_embed_response.json"
        ));
        let e = parse_embeddings(
            ProviderKind::HuggingFace,
            &tei.base_url,
            tei_body.as_bytes(),
            2,
        )
        .unwrap();
        assert_eq!(e.vectors[1][0], 0.04496114);
        let openai_body = fixture(include_bytes!(
            "../../../../tests/fixtures/media/openai_embeddings_float.json"
        ));
        assert_eq!(
            parse_embeddings(
                ProviderKind::HuggingFace,
                ROUTER_BASE_URL,
                openai_body.as_bytes(),
                1
            )
            .unwrap()
            .prompt_tokens,
            Some(8)
        );
        let tokens = decode_request(br#"{"model":"pub","input":[[1]]}"#).unwrap();
        assert!(build_embeddings(&tei, &tokens).is_err());
    }
}
