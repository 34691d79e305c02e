//! OpenAI and OpenAI-compatible servers, and Azure OpenAI, for every media endpoint.
//!
//! Follows OpenAI's API reference (embeddings, images, audio:
//! <https://platform.openai.com/docs/api-reference>) and Azure OpenAI's REST reference
//! (<https://learn.microsoft.com/azure/ai-foundry/openai/reference>): the same bodies at
//! `{base}/openai/deployments/{deployment}/{path}?api-version={version}` with an `api-key`
//! header, or `{base}/openai/v1/{path}` when the provider config says `"api_version": "v1"`
//! (as for chat, see `providers::azure`).
//!
//! * Embeddings: the client's body with the upstream model; fields beyond OpenAI's
//!   (`input_type`, `truncate`, …) only when the provider config's `allowed_params` lists them,
//!   else a 400. The answer's vectors may be floats or base64 (as asked); `usage.prompt_tokens`
//!   is the billed count.
//! * Images: JSON for generations, multipart for edits (`image` once, `image[]` for several,
//!   `mask`); the answer passes through to the client; `data` counts the images and gpt-image's
//!   `usage` (`input_tokens`, `input_tokens_details.image_tokens`, `output_tokens`) the tokens.
//! * Speech: JSON; the audio answer streams through.
//! * Transcription and translation: multipart with the file's bytes unchanged.

use serde_json::{Map, Value};

use super::super::azure::{api_version, percent_encode};
use super::super::openai::base_headers;
use super::super::{join_url, ProviderKind, Route, UpstreamRequest};
use super::{unusable, MediaApi};
use crate::core::error::GatewayError;
use crate::core::inbound::audio::{SpeechRequest, TranscriptFormat, TranscriptionRequest};
use crate::core::inbound::embeddings::{vector_from_base64, Embeddings, EmbeddingsRequest};
use crate::core::inbound::images::{ImageOp, ImageRequest, ImageTokens, ImagesResult};
use crate::core::multipart::Writer;

/// The URL of `api` on the route: OpenAI-style, or Azure's deployment / v1 URL.
pub fn media_url(route: &Route, api: MediaApi) -> String {
    if route.kind != ProviderKind::Azure {
        return join_url(&route.base_url, api.path());
    }
    let version = api_version(route);
    let base = route.base_url.trim_end_matches('/');
    let base = base.strip_suffix("/openai").unwrap_or(base);
    if version == "v1" {
        return join_url(base, &format!("openai/v1/{}", api.path()));
    }
    let deployment = route
        .config_str("deployment")
        .unwrap_or(&route.upstream_model);
    format!(
        "{}?api-version={}",
        join_url(
            base,
            &format!(
                "openai/deployments/{}/{}",
                percent_encode(deployment),
                api.path()
            )
        ),
        percent_encode(version)
    )
}

/// The route's key header (`api-key` on Azure, a bearer token elsewhere) and its config headers.
fn headers(route: &Route, content_type: Option<&str>) -> Vec<(String, String)> {
    let mut headers = base_headers(route, false);
    if let Some(ct) = content_type {
        headers.retain(|(k, _)| k != "content-type");
        headers.insert(0, ("content-type".to_string(), ct.to_string()));
    }
    if let Some(key) = &route.api_key {
        if route.kind == ProviderKind::Azure {
            headers.push(("api-key".to_string(), key.clone()));
        } else {
            headers.push(("authorization".to_string(), format!("Bearer {key}")));
        }
    }
    headers
}

fn encode(value: &Value) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(value)
        .map_err(|e| GatewayError::internal(format!("cannot encode upstream request: {e}")))
}

/// The embeddings body OpenAI takes, with `model` set to `model`; refuses extra fields the
/// provider config does not allow.
pub fn embeddings_body(
    route: &Route,
    req: &EmbeddingsRequest,
    model: &str,
) -> Result<Value, GatewayError> {
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    body.insert("input".into(), req.input.to_json());
    body.insert(
        "encoding_format".into(),
        req.encoding_format.as_str().into(),
    );
    if let Some(d) = req.dimensions {
        body.insert("dimensions".into(), d.into());
    }
    if let Some(u) = &req.user {
        body.insert("user".into(), u.clone().into());
    }
    for (name, value) in &req.extra {
        if !route.allows_param(name) {
            return Err(GatewayError::invalid_param(
                name,
                format!(
                    "Unrecognized request argument supplied: {name} (the operator can allow it with the provider's allowed_params)"
                ),
            )
            .with_code("unsupported_parameter"));
        }
        body.insert(name.clone(), value.clone());
    }
    Ok(Value::Object(body))
}

pub fn build_embeddings(
    route: &Route,
    req: &EmbeddingsRequest,
) -> Result<UpstreamRequest, GatewayError> {
    let body = embeddings_body(route, req, &route.upstream_model)?;
    Ok(UpstreamRequest {
        url: media_url(route, MediaApi::Embeddings),
        headers: headers(route, None),
        body: encode(&body)?,
    })
}

/// OpenAI's embeddings answer: vectors ordered by `index` (each index once), floats or base64.
pub fn parse_embeddings(body: &[u8]) -> Result<Embeddings, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(unusable)?;
    let data = value
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| unusable("no data array"))?;
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; data.len()];
    for (i, item) in data.iter().enumerate() {
        let index = match item.get("index") {
            None => i,
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n < data.len())
                .ok_or_else(|| unusable("an embedding index out of range"))?,
        };
        let vector = match item.get("embedding") {
            Some(Value::String(b64)) => vector_from_base64(b64)
                .ok_or_else(|| unusable("an embedding is not base64 floats"))?,
            Some(v) => {
                floats(v).ok_or_else(|| unusable("an embedding is not a list of numbers"))?
            }
            None => return Err(unusable("an item without embedding")),
        };
        let slot = slots
            .get_mut(index)
            .ok_or_else(|| unusable("an embedding index out of range"))?;
        if slot.replace(vector).is_some() {
            return Err(unusable("an embedding index repeated"));
        }
    }
    let vectors = slots
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| unusable("an embedding index missing"))?;
    Ok(Embeddings {
        vectors,
        prompt_tokens: value
            .pointer("/usage/prompt_tokens")
            .and_then(Value::as_u64),
    })
}

/// A JSON array of finite numbers as `f32`s (a number beyond `f32`'s range is refused).
pub fn floats(v: &Value) -> Option<Vec<f32>> {
    v.as_array()?
        .iter()
        .map(|n| {
            let f = n.as_f64()? as f32;
            f.is_finite().then_some(f)
        })
        .collect()
}

/// Builds an image generation (JSON) or edit (multipart) request.
pub fn build_image(
    route: &Route,
    req: &ImageRequest<'_>,
    seed: &str,
) -> Result<UpstreamRequest, GatewayError> {
    match req.op {
        ImageOp::Generate => {
            let mut body = Map::new();
            body.insert("model".into(), route.upstream_model.clone().into());
            body.insert("prompt".into(), req.prompt.clone().into());
            body.insert("n".into(), req.n.into());
            if let Some(s) = &req.size {
                body.insert("size".into(), s.clone().into());
            }
            if let Some(q) = &req.quality {
                body.insert("quality".into(), q.clone().into());
            }
            body.extend(req.params.clone());
            Ok(UpstreamRequest {
                url: media_url(route, MediaApi::ImageGenerations),
                headers: headers(route, None),
                body: encode(&Value::Object(body))?,
            })
        }
        ImageOp::Edit => {
            let mut w = Writer::new();
            w.text("model", &route.upstream_model)
                .text("prompt", &req.prompt)
                .text("n", &req.n.to_string());
            if let Some(s) = &req.size {
                w.text("size", s);
            }
            if let Some(q) = &req.quality {
                w.text("quality", q);
            }
            for (k, v) in &req.params {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                w.text(k, &text);
            }
            let name = if req.images.len() > 1 {
                "image[]"
            } else {
                "image"
            };
            for img in &req.images {
                w.file(name, &img.filename, &img.content_type, img.data);
            }
            if let Some(mask) = &req.mask {
                w.file("mask", &mask.filename, &mask.content_type, mask.data);
            }
            let (content_type, body) = w.finish(seed);
            Ok(UpstreamRequest {
                url: media_url(route, MediaApi::ImageEdits),
                headers: headers(route, Some(&content_type)),
                body,
            })
        }
    }
}

/// What an image answer holds: the images in `data` and gpt-image's token usage.
pub fn parse_images(body: &[u8]) -> Result<ImagesResult, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(unusable)?;
    let data = value
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| unusable("no data array"))?;
    let usage = value.get("usage").filter(|u| u.is_object()).map(|u| {
        let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        let input = n("/input_tokens");
        ImageTokens {
            input_tokens: input,
            image_input_tokens: n("/input_tokens_details/image_tokens").min(input),
            output_tokens: n("/output_tokens"),
        }
    });
    Ok(ImagesResult {
        images: data.len() as u64,
        usage,
    })
}

pub fn build_speech(route: &Route, req: &SpeechRequest) -> Result<UpstreamRequest, GatewayError> {
    let mut headers = headers(route, None);
    headers.push((
        "accept".to_string(),
        req.response_format.content_type().to_string(),
    ));
    Ok(UpstreamRequest {
        url: media_url(route, MediaApi::Speech),
        headers,
        body: encode(&req.to_json(&route.upstream_model))?,
    })
}

pub fn build_transcription(
    route: &Route,
    req: &TranscriptionRequest<'_>,
    format: TranscriptFormat,
    seed: &str,
) -> Result<UpstreamRequest, GatewayError> {
    let mut w = Writer::new();
    w.text("model", &route.upstream_model)
        .text("response_format", format.as_str());
    if req.stream {
        w.text("stream", "true");
    }
    for (k, v) in &req.fields {
        w.text(k, v);
    }
    w.file(
        "file",
        &req.file.filename,
        &req.file.content_type,
        req.file.data,
    );
    let (content_type, body) = w.finish(seed);
    let mut headers = headers(route, Some(&content_type));
    if req.stream {
        headers.push(("accept".to_string(), "text/event-stream".to_string()));
    }
    let api = if req.translation {
        MediaApi::Translations
    } else {
        MediaApi::Transcriptions
    };
    Ok(UpstreamRequest {
        url: media_url(route, api),
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{header, route};
    use super::*;
    use crate::core::inbound::audio::{decode_speech, decode_transcription, TranscriptUsage};
    use crate::core::inbound::embeddings::decode_request;
    use crate::core::inbound::images::{decode_edit, decode_generation};
    use crate::core::inbound::testing::fixture;
    use crate::core::multipart::{self, Limits};
    use serde_json::json;

    fn openai() -> Route {
        route(ProviderKind::OpenAi, "http://127.0.0.1:9/v1/", Value::Null)
    }

    fn azure(config: Value) -> Route {
        route(ProviderKind::Azure, "https://res.openai.azure.com/", config)
    }

    #[test]
    fn urls_of_every_endpoint() {
        assert_eq!(
            media_url(&openai(), MediaApi::Embeddings),
            "http://127.0.0.1:9/v1/embeddings"
        );
        assert_eq!(
            media_url(&azure(json!({"deployment": "emb 3", "api_version": "2024-10-21"})), MediaApi::Transcriptions),
            "https://res.openai.azure.com/openai/deployments/emb%203/audio/transcriptions?api-version=2024-10-21"
        );
        assert_eq!(
            media_url(
                &azure(json!({"api_version": "v1"})),
                MediaApi::ImageGenerations
            ),
            "https://res.openai.azure.com/openai/v1/images/generations"
        );
        assert_eq!(
            media_url(&azure(Value::Null), MediaApi::Speech),
            "https://res.openai.azure.com/openai/deployments/up-model/audio/speech?api-version=2024-10-21"
        );
    }

    #[test]
    fn embeddings_request_and_answer() {
        let req = decode_request(br#"{"model":"pub","input":["a","b"],"encoding_format":"base64","dimensions":8,"user":"u"}"#).unwrap();
        let up = build_embeddings(&openai(), &req).unwrap();
        assert_eq!(header(&up, "authorization"), Some("Bearer key-1"));
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(
            body,
            json!({"model":"up-model","input":["a","b"],"encoding_format":"base64","dimensions":8,"user":"u"})
        );
        let az = build_embeddings(&azure(Value::Null), &req).unwrap();
        assert_eq!(header(&az, "api-key"), Some("key-1"));
        assert_eq!(header(&az, "authorization"), None);
        // Extra fields only when allowed.
        let req = decode_request(br#"{"model":"pub","input":"a","input_type":"query"}"#).unwrap();
        let e = build_embeddings(&openai(), &req).unwrap_err();
        assert_eq!((e.status(), e.param.as_deref()), (400, Some("input_type")));
        let allowed = route(
            ProviderKind::OpenAi,
            "http://x/v1",
            json!({"allowed_params": ["input_type"]}),
        );
        let body: Value =
            serde_json::from_slice(&build_embeddings(&allowed, &req).unwrap().body).unwrap();
        assert_eq!(body["input_type"], "query");

        let floats = parse_embeddings(
            fixture(include_bytes!(
                "../../../../tests/fixtures/media/openai_embeddings_float.json"
            ))
            .as_bytes(),
        )
        .unwrap();
        let b64 = parse_embeddings(
            fixture(include_bytes!(
                "../../../../tests/fixtures/media/openai_embeddings_base64.json"
            ))
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(floats, b64);
        assert_eq!(floats.prompt_tokens, Some(8));
        assert_eq!(floats.vectors[0].len(), 3);
        // Order by index; repeated, missing and bad items are unusable.
        let shuffled = br#"{"data":[{"index":1,"embedding":[2]},{"index":0,"embedding":[1]}]}"#;
        assert_eq!(
            parse_embeddings(shuffled).unwrap().vectors,
            vec![vec![1.0], vec![2.0]]
        );
        for bad in [
            &br#"{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[2]}]}"#[..],
            br#"{"data":[{"index":2,"embedding":[1]},{"index":0,"embedding":[2]}]}"#,
            br#"{"data":[{"index":0,"embedding":["x"]}]}"#,
            br#"{"data":[{"index":0,"embedding":[1e300]}]}"#,
            br#"{"data":[{"index":0,"embedding":"!!"}]}"#,
            br#"{"data":[{"index":0}]}"#,
            br#"{"object":"list"}"#,
            b"<html>",
        ] {
            let e = parse_embeddings(bad).unwrap_err();
            assert_eq!(
                e.code(),
                "upstream_unusable",
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn image_generation_and_edit_requests() {
        let req = decode_generation(br#"{"model":"pub","prompt":"otter","n":2,"size":"1024x1024","quality":"hd","response_format":"b64_json"}"#).unwrap();
        let up = build_image(&azure(json!({"deployment": "dalle3"})), &req, "r1").unwrap();
        assert!(up
            .url
            .contains("/openai/deployments/dalle3/images/generations?api-version="));
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(
            body,
            json!({"model":"up-model","prompt":"otter","n":2,"size":"1024x1024","quality":"hd","response_format":"b64_json"})
        );

        let png = b"\x89PNG....".to_vec();
        let mut w = Writer::new();
        w.text("model", "pub")
            .text("prompt", "hat")
            .text("output_compression", "50")
            .file("image", "a.png", "image/png", &png)
            .file("mask", "m.png", "image/png", &png);
        let (ct, body) = w.finish("c");
        let parts = multipart::parse(
            &body,
            &multipart::boundary_of(&ct).unwrap(),
            &Limits::default(),
        )
        .unwrap();
        let req = decode_edit(&parts).unwrap();
        let up = build_image(&openai(), &req, "req-9").unwrap();
        assert_eq!(up.url, "http://127.0.0.1:9/v1/images/edits");
        let ct = header(&up, "content-type").unwrap();
        let parts = multipart::parse(
            &up.body,
            &multipart::boundary_of(ct).unwrap(),
            &Limits::default(),
        )
        .unwrap();
        let got: Vec<_> = parts.iter().map(|p| (p.name.as_str(), p.data)).collect();
        assert_eq!(
            got,
            [
                ("model", &b"up-model"[..]),
                ("prompt", b"hat"),
                ("n", b"1"),
                ("output_compression", b"50"),
                ("image", &png[..]),
                ("mask", &png[..])
            ]
        );
    }

    #[test]
    fn image_answers() {
        let r = parse_images(
            fixture(include_bytes!(
                "../../../../tests/fixtures/media/openai_images_gpt_image.json"
            ))
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(r.images, 1);
        assert_eq!(
            r.usage,
            Some(ImageTokens {
                input_tokens: 50,
                image_input_tokens: 40,
                output_tokens: 50
            })
        );
        let r = parse_images(
            fixture(include_bytes!(
                "../../../../tests/fixtures/media/openai_images_dalle.json"
            ))
            .as_bytes(),
        )
        .unwrap();
        assert_eq!((r.images, r.usage), (1, None));
        assert_eq!(parse_images(b"{}").unwrap_err().code(), "upstream_unusable");
    }

    #[test]
    fn speech_and_transcription_requests() {
        let req = decode_speech(
            br#"{"model":"pub","input":"hi","voice":"alloy","response_format":"wav"}"#,
        )
        .unwrap();
        let up = build_speech(&openai(), &req).unwrap();
        assert_eq!(up.url, "http://127.0.0.1:9/v1/audio/speech");
        assert_eq!(header(&up, "accept"), Some("audio/wav"));
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(
            body,
            json!({"model":"up-model","input":"hi","voice":"alloy","response_format":"wav"})
        );

        let audio = b"RIFF....WAVE".to_vec();
        let mut w = Writer::new();
        w.text("model", "pub")
            .text("response_format", "srt")
            .text("prompt", "names: Tollgate")
            .file("file", "a.wav", "audio/wav", &audio);
        let (ct, body) = w.finish("c");
        let parts = multipart::parse(
            &body,
            &multipart::boundary_of(&ct).unwrap(),
            &Limits::default(),
        )
        .unwrap();
        let req = decode_transcription(&parts, true).unwrap();
        let up =
            build_transcription(&openai(), &req, TranscriptFormat::VerboseJson, "req-1").unwrap();
        assert_eq!(up.url, "http://127.0.0.1:9/v1/audio/translations");
        let ct = header(&up, "content-type").unwrap();
        let parts = multipart::parse(
            &up.body,
            &multipart::boundary_of(ct).unwrap(),
            &Limits::default(),
        )
        .unwrap();
        let got: Vec<_> = parts.iter().map(|p| (p.name.as_str(), p.data)).collect();
        assert_eq!(
            got,
            [
                ("model", &b"up-model"[..]),
                ("response_format", b"verbose_json"),
                ("prompt", b"names: Tollgate"),
                ("file", &audio[..])
            ]
        );
        assert_eq!(parts[3].filename.as_deref(), Some("a.wav"));
        // The verbose answer bills 9 s.
        let verbose: Value = serde_json::from_str(fixture(include_bytes!(
            "../../../../tests/fixtures/media/openai_transcription_verbose.json"
        )))
        .unwrap();
        assert_eq!(
            TranscriptUsage::of(&verbose),
            Some(TranscriptUsage::Seconds(9))
        );
    }
}

/// A transcription answer made ready for the client, with its usage.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptAnswer {
    /// The body in the client's `response_format`.
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// The usage the provider reported (or the verbose answer's duration).
    pub usage: Option<crate::core::inbound::audio::TranscriptUsage>,
    /// The transcript's text, for a local count when no usage came.
    pub text: String,
}

/// Reads a plain transcription answer asked in `upstream` format and renders it in the format
/// the client asked (`req.response_format`): passed through unchanged when the two agree.
pub fn parse_transcription(
    body: &[u8],
    req: &TranscriptionRequest<'_>,
    upstream: TranscriptFormat,
) -> Result<TranscriptAnswer, GatewayError> {
    use crate::core::inbound::audio::{render_transcript, TranscriptUsage};
    let client = req.response_format;
    match upstream {
        TranscriptFormat::Json | TranscriptFormat::VerboseJson => {
            let value: Value = serde_json::from_slice(body).map_err(unusable)?;
            let text = value
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| unusable("a transcription without text"))?
                .to_string();
            let usage = TranscriptUsage::of(&value);
            let body = if client == upstream {
                body.to_vec()
            } else {
                render_transcript(&value, client, usage).ok_or_else(|| {
                    unusable(format!(
                        "a {} answer that cannot be rendered as {}",
                        upstream.as_str(),
                        client.as_str()
                    ))
                })?
            };
            Ok(TranscriptAnswer {
                body,
                content_type: client.content_type(),
                usage,
                text,
            })
        }
        TranscriptFormat::Text | TranscriptFormat::Srt | TranscriptFormat::Vtt => {
            let text = std::str::from_utf8(body)
                .map_err(|_| unusable("a transcript that is not UTF-8"))?
                .to_string();
            Ok(TranscriptAnswer {
                body: body.to_vec(),
                content_type: upstream.content_type(),
                usage: None,
                text,
            })
        }
    }
}

/// Watches a streamed transcription (`transcript.text.delta` events, then
/// `transcript.text.done` with the usage) while its bytes are relayed unchanged.
#[derive(Debug, Default)]
pub struct TranscriptStream {
    sse: crate::core::sse::SseParser,
    /// The text of the deltas so far.
    pub text: String,
    /// The usage of the `done` event.
    pub usage: Option<crate::core::inbound::audio::TranscriptUsage>,
    /// The `done` event arrived.
    pub done: bool,
    failed: bool,
}

impl TranscriptStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds relayed bytes; returns the error the provider sent inside the stream, or a framing
    /// error, once.
    pub fn push(&mut self, bytes: &[u8]) -> Option<GatewayError> {
        let events = match self.sse.push(bytes) {
            Ok(events) => events,
            Err(e) => return self.fail(super::super::mapping::malformed(e)),
        };
        events.into_iter().find_map(|e| self.event(e))
    }

    /// The provider closed the stream: an error when it ended before `transcript.text.done`.
    pub fn finish(&mut self) -> Option<GatewayError> {
        match self.sse.finish() {
            Ok(Some(e)) => {
                if let Some(err) = self.event(e) {
                    return Some(err);
                }
            }
            Ok(None) => {}
            Err(e) => return self.fail(super::super::mapping::malformed(e)),
        }
        if self.done {
            None
        } else {
            self.fail(super::super::mapping::truncated_stream())
        }
    }

    fn fail(&mut self, e: GatewayError) -> Option<GatewayError> {
        if self.failed {
            return None;
        }
        self.failed = true;
        Some(e)
    }

    fn event(&mut self, event: crate::core::sse::SseEvent) -> Option<GatewayError> {
        let data = event.data?;
        let value: Value = match serde_json::from_str(data.trim()) {
            Ok(v) => v,
            Err(e) => return self.fail(super::super::mapping::malformed(e)),
        };
        if value.get("error").is_some_and(|e| !e.is_null()) {
            let err = super::super::openai::map_openai_error(500, data.as_bytes());
            return self.fail(err);
        }
        match value.get("type").and_then(Value::as_str) {
            Some("transcript.text.delta") => {
                if let Some(d) = value.get("delta").and_then(Value::as_str) {
                    self.text.push_str(d);
                }
            }
            Some("transcript.text.done") => {
                self.done = true;
                if let Some(t) = value.get("text").and_then(Value::as_str) {
                    self.text = t.to_string();
                }
                self.usage = crate::core::inbound::audio::TranscriptUsage::of(&value);
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod transcript_tests {
    use super::*;
    use crate::core::inbound::audio::{decode_transcription, TranscriptUsage};
    use crate::core::inbound::testing::fixture;
    use crate::core::multipart::{self, Limits};

    fn request(format: &str, body: &mut Vec<u8>) -> TranscriptionRequest<'static> {
        let mut w = Writer::new();
        w.text("model", "m").text("response_format", format).file(
            "file",
            "a.wav",
            "audio/wav",
            b"RIFF",
        );
        let (ct, b) = w.finish("x");
        *body = b;
        let leaked: &'static [u8] = Box::leak(body.clone().into_boxed_slice());
        let parts = multipart::parse(
            leaked,
            &multipart::boundary_of(&ct).unwrap(),
            &Limits::default(),
        )
        .unwrap();
        decode_transcription(&parts, false).unwrap()
    }

    #[test]
    fn renders_the_client_format_from_the_verbose_answer() {
        let verbose = fixture(include_bytes!(
            "../../../../tests/fixtures/media/openai_transcription_verbose.json"
        ));
        let mut b = Vec::new();
        let srt = request("srt", &mut b);
        let a =
            parse_transcription(verbose.as_bytes(), &srt, TranscriptFormat::VerboseJson).unwrap();
        assert_eq!(a.usage, Some(TranscriptUsage::Seconds(9)));
        assert_eq!(a.content_type, "application/x-subrip");
        assert!(a.body.starts_with(b"1\n00:00:00,000 --> 00:00:03,320\n"));
        let same = request("verbose_json", &mut b);
        let a =
            parse_transcription(verbose.as_bytes(), &same, TranscriptFormat::VerboseJson).unwrap();
        assert_eq!(a.body, verbose.as_bytes());
        let text = request("text", &mut b);
        let tokens = fixture(include_bytes!(
            "../../../../tests/fixtures/media/openai_transcription_tokens.json"
        ));
        let a = parse_transcription(tokens.as_bytes(), &text, TranscriptFormat::Json).unwrap();
        assert!(matches!(
            a.usage,
            Some(TranscriptUsage::Tokens {
                output_tokens: 45,
                ..
            })
        ));
        assert!(a.body.starts_with(b"Imagine the wildest idea") && a.body.ends_with(b"do that.\n"));
        assert_eq!(a.content_type, "text/plain; charset=utf-8");
        let a = parse_transcription(
            b"1\n00:00:00,000 --> 00:00:01,000\nhi\n\n",
            &srt,
            TranscriptFormat::Srt,
        )
        .unwrap();
        assert_eq!(a.usage, None);
        for bad in [&b"{}"[..], b"<html>", br#"{"text":"x"}"#] {
            let e = parse_transcription(bad, &srt, TranscriptFormat::VerboseJson).unwrap_err();
            assert_eq!(e.code(), "upstream_unusable");
        }
    }

    #[test]
    fn stream_usage_at_every_split() {
        let body = fixture(include_bytes!(
            "../../../../tests/fixtures/media/openai_transcription_stream.sse"
        ))
        .as_bytes();
        for split in 0..=body.len() {
            let mut s = TranscriptStream::new();
            assert!(s.push(&body[..split]).is_none());
            assert!(s.push(&body[split..]).is_none());
            assert!(s.finish().is_none(), "split {split}");
            assert_eq!(s.text, "I see skies of blue.");
            assert_eq!(
                s.usage,
                Some(TranscriptUsage::Tokens {
                    input_tokens: 14,
                    audio_input_tokens: 14,
                    output_tokens: 8
                })
            );
        }
        // Cut before done: one error, and the deltas' text for the local count.
        let cut = &body[..body.len() / 2];
        let mut s = TranscriptStream::new();
        s.push(cut);
        let e = s.finish().unwrap();
        assert_eq!(e.code(), "upstream_error");
        assert!(s.finish().is_none());
        let mut s = TranscriptStream::new();
        let e = s
            .push(b"data: {\"type\":\"error\",\"error\":{\"message\":\"bad audio\",\"code\":\"invalid_value\"}}\n\n")
            .unwrap();
        assert!(e.status() >= 500);
    }
}
