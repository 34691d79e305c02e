//! Gemini embeddings: `POST {base}/models/{model}:batchEmbedContents` (Gemini API reference,
//! "Embeddings": <https://ai.google.dev/api/embeddings>), the key in `x-goog-api-key`.
//!
//! One request per input, each `{"model": "models/{model}", "content": {"parts": [{"text"}]}}`
//! with `outputDimensionality` when the client sets `dimensions` and `taskType` when the provider
//! config names one (`{"task_type": "RETRIEVAL_DOCUMENT"}`). Text only: token-id input is a 400.
//! The answer (`{"embeddings": [{"values": […]}]}`) reports no usage: the request is billed on
//! the gateway's count (the model's encoding when configured, else the conservative estimate),
//! `usage_source = local`.

use serde_json::{json, Value};

use super::super::openai::base_headers;
use super::super::{join_url, Route, UpstreamRequest};
use super::openai::floats;
use super::unusable;
use crate::core::error::GatewayError;
use crate::core::inbound::embeddings::{Embeddings, EmbeddingsRequest};

/// The model path segment: `models/{model}` unless the upstream model already has a prefix.
fn model_path(model: &str) -> String {
    if model.starts_with("models/") || model.starts_with("tunedModels/") {
        model.to_string()
    } else {
        format!("models/{model}")
    }
}

pub fn build_embeddings(
    route: &Route,
    req: &EmbeddingsRequest,
) -> Result<UpstreamRequest, GatewayError> {
    if let Some(name) = req.extra.keys().next() {
        return Err(GatewayError::invalid_param(
            name,
            format!("Gemini embeddings do not take '{name}'."),
        )
        .with_code("unsupported_for_provider"));
    }
    let model = model_path(&route.upstream_model);
    let task_type = route.config_str("task_type");
    let requests: Vec<Value> = req
        .texts("Gemini")?
        .iter()
        .map(|text| {
            let mut r = json!({"model": model, "content": {"parts": [{"text": text}]}});
            if let Some(d) = req.dimensions {
                r["outputDimensionality"] = d.into();
            }
            if let Some(t) = task_type {
                r["taskType"] = t.into();
            }
            r
        })
        .collect();
    let mut headers = base_headers(route, false);
    if let Some(key) = &route.api_key {
        headers.push(("x-goog-api-key".to_string(), key.clone()));
    }
    Ok(UpstreamRequest {
        url: join_url(&route.base_url, &format!("{model}:batchEmbedContents")),
        headers,
        body: serde_json::to_vec(&json!({ "requests": requests }))
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
        .map(|e| e.get("values").and_then(floats))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| unusable("an embedding without numeric values"))?;
    Ok(Embeddings {
        vectors,
        prompt_tokens: value
            .pointer("/usageMetadata/promptTokenCount")
            .and_then(Value::as_u64),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{header, route};
    use super::*;
    use crate::core::inbound::embeddings::decode_request;
    use crate::core::inbound::testing::fixture;
    use crate::core::providers::{gemini::DEFAULT_BASE_URL, ProviderKind};

    #[test]
    fn batch_request_and_answer() {
        let r = route(
            ProviderKind::Gemini,
            DEFAULT_BASE_URL,
            json!({"task_type": "RETRIEVAL_DOCUMENT"}),
        );
        let req = decode_request(br#"{"model":"pub","input":["a","b"],"dimensions":768}"#).unwrap();
        let up = build_embeddings(&r, &req).unwrap();
        assert_eq!(
            up.url,
            "https://generativelanguage.googleapis.com/v1beta/models/up-model:batchEmbedContents"
        );
        assert_eq!(header(&up, "x-goog-api-key"), Some("key-1"));
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(
            body["requests"][1],
            json!({"model":"models/up-model","content":{"parts":[{"text":"b"}]},"outputDimensionality":768,"taskType":"RETRIEVAL_DOCUMENT"})
        );
        let tokens = decode_request(br#"{"model":"pub","input":[1,2]}"#).unwrap();
        assert_eq!(
            build_embeddings(&r, &tokens).unwrap_err().code(),
            "unsupported_for_provider"
        );
        let extra = decode_request(br#"{"model":"pub","input":"a","x":1}"#).unwrap();
        assert!(build_embeddings(&r, &extra).is_err());

        let e = parse_embeddings(
            fixture(include_bytes!(
                "../../../../tests/fixtures/media/gemini_batch_embed_response.json"
            ))
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(e.vectors.len(), 2);
        assert_eq!(e.vectors[0][0], 0.013168523);
        assert_eq!(e.prompt_tokens, None);
        assert!(parse_embeddings(br#"{"embeddings":[{}]}"#).is_err());
        assert_eq!(model_path("models/x"), "models/x");
    }
}
