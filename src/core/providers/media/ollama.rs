//! Ollama embeddings: `POST {base}/api/embed` (Ollama API, "Generate Embeddings":
//! <https://github.com/ollama/ollama/blob/main/docs/api.md#generate-embeddings>).
//!
//! `{"model", "input": string | [string], "dimensions"?}`; text only (token-id input is a 400).
//! The answer's `embeddings` are one array per input and `prompt_eval_count` is the billed
//! prompt tokens.

use serde_json::{json, Value};

use super::super::openai::base_headers;
use super::super::{join_url, Route, UpstreamRequest};
use super::openai::floats;
use super::unusable;
use crate::core::error::GatewayError;
use crate::core::inbound::embeddings::{Embeddings, EmbeddingsRequest};

pub fn build_embeddings(
    route: &Route,
    req: &EmbeddingsRequest,
) -> Result<UpstreamRequest, GatewayError> {
    if let Some(name) = req.extra.keys().next() {
        return Err(GatewayError::invalid_param(
            name,
            format!("Ollama embeddings do not take '{name}'."),
        )
        .with_code("unsupported_for_provider"));
    }
    let mut body = json!({"model": route.upstream_model, "input": req.texts("Ollama")?});
    if let Some(d) = req.dimensions {
        body["dimensions"] = d.into();
    }
    let mut headers = base_headers(route, false);
    if let Some(key) = &route.api_key {
        headers.push(("authorization".to_string(), format!("Bearer {key}")));
    }
    Ok(UpstreamRequest {
        url: join_url(&route.base_url, "api/embed"),
        headers,
        body: serde_json::to_vec(&body)
            .map_err(|e| GatewayError::internal(format!("cannot encode upstream request: {e}")))?,
    })
}

pub fn parse_embeddings(body: &[u8]) -> Result<Embeddings, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(unusable)?;
    let vectors = value
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or_else(|| unusable("no embeddings array"))?
        .iter()
        .map(floats)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| unusable("an embedding that is not a list of numbers"))?;
    Ok(Embeddings {
        vectors,
        prompt_tokens: value.get("prompt_eval_count").and_then(Value::as_u64),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::route;
    use super::*;
    use crate::core::inbound::embeddings::decode_request;
    use crate::core::inbound::testing::fixture;
    use crate::core::providers::{ollama::DEFAULT_BASE_URL, ProviderKind};

    #[test]
    fn embed_request_and_answer() {
        let r = route(ProviderKind::Ollama, DEFAULT_BASE_URL, Value::Null);
        let req = decode_request(br#"{"model":"pub","input":["a","b"],"dimensions":3}"#).unwrap();
        let up = build_embeddings(&r, &req).unwrap();
        assert_eq!(up.url, "http://127.0.0.1:11434/api/embed");
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(
            body,
            json!({"model":"up-model","input":["a","b"],"dimensions":3})
        );
        let e = parse_embeddings(
            fixture(include_bytes!(
                "../../../../tests/fixtures/media/ollama_embed_response.json"
            ))
            .as_bytes(),
        )
        .unwrap();
        assert_eq!((e.vectors.len(), e.prompt_tokens), (2, Some(8)));
        assert!(parse_embeddings(br#"{"embedding":[1]}"#).is_err());
    }
}
