//! Media adapters: embeddings, images, speech and transcription for the provider kinds that
//! offer them. Pure, like the chat adapters: build the upstream request, parse the answer and
//! its usage, map errors; the edge does the I/O.
//!
//! | endpoint | openai (and compatible) | azure | gemini | ollama | huggingface |
//! |---|---|---|---|---|---|
//! | embeddings | `/embeddings` | deployment `/embeddings` | `:batchEmbedContents` | `/api/embed` | TEI `/embed`, router `/v1/embeddings` |
//! | images (generations, edits) | `/images/…` | deployment `/images/…` | — | — | — |
//! | speech | `/audio/speech` | deployment `/audio/speech` | — | — | — |
//! | transcriptions, translations | `/audio/…` | deployment `/audio/…` | — | — | — |
//!
//! Any other pair is a 400 `unsupported_for_provider` ([`check_supported`]). A 2xx answer the
//! adapter cannot use is `upstream_unusable` (the provider billed it: charged the reservation).

pub mod bill;
pub mod gemini;
pub mod huggingface;
pub mod ollama;
pub mod openai;
pub mod streams;

use crate::core::error::{ErrorKind, GatewayError};
use crate::core::inbound::audio::{SpeechRequest, TranscriptionRequest};
use crate::core::inbound::embeddings::{Embeddings, EmbeddingsRequest};
use crate::core::inbound::images::ImageRequest;

use super::{ProviderKind, Route, UpstreamRequest};

/// A media endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaApi {
    Embeddings,
    ImageGenerations,
    ImageEdits,
    Speech,
    Transcriptions,
    Translations,
}

impl MediaApi {
    /// The `usage.api` value of a request to this endpoint.
    pub fn usage_api(self) -> &'static str {
        match self {
            MediaApi::Embeddings => "embeddings",
            MediaApi::ImageGenerations | MediaApi::ImageEdits => "images",
            MediaApi::Speech => "speech",
            MediaApi::Transcriptions | MediaApi::Translations => "transcriptions",
        }
    }

    /// The path under an OpenAI-style base URL.
    pub fn path(self) -> &'static str {
        match self {
            MediaApi::Embeddings => "embeddings",
            MediaApi::ImageGenerations => "images/generations",
            MediaApi::ImageEdits => "images/edits",
            MediaApi::Speech => "audio/speech",
            MediaApi::Transcriptions => "audio/transcriptions",
            MediaApi::Translations => "audio/translations",
        }
    }

    /// The `models.kind` a model needs to be served on this endpoint.
    pub fn model_kind(self) -> &'static str {
        match self {
            MediaApi::Embeddings => "embedding",
            MediaApi::ImageGenerations | MediaApi::ImageEdits => "image",
            MediaApi::Speech => "tts",
            MediaApi::Transcriptions | MediaApi::Translations => "stt",
        }
    }
}

/// The kinds a model can be (`models.kind`), as `/v1/models` lists them.
pub const MODEL_KINDS: [&str; 5] = ["chat", "embedding", "image", "tts", "stt"];

/// A model kind named by the admin API, checked.
pub fn parse_model_kind(kind: &str) -> Option<&'static str> {
    MODEL_KINDS.iter().copied().find(|k| *k == kind)
}

/// Whether a provider kind offers an endpoint (the table of the module docs).
pub fn supports(kind: ProviderKind, api: MediaApi) -> bool {
    match kind {
        ProviderKind::OpenAi | ProviderKind::Azure => true,
        ProviderKind::Gemini | ProviderKind::Ollama | ProviderKind::HuggingFace => {
            api == MediaApi::Embeddings
        }
        ProviderKind::Anthropic | ProviderKind::Echo => false,
    }
}

/// `Ok` when the route's provider offers the endpoint, else a 400 `unsupported_for_provider`.
pub fn check_supported(route: &Route, api: MediaApi) -> Result<(), GatewayError> {
    if supports(route.kind, api) {
        return Ok(());
    }
    Err(GatewayError::invalid_param(
        "model",
        format!(
            "This model's provider (kind {}) does not offer /v1/{}.",
            route.kind.as_str(),
            api.path()
        ),
    )
    .with_code("unsupported_for_provider"))
}

/// A 2xx answer the gateway cannot use.
pub fn unusable(what: impl std::fmt::Display) -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamUnusable,
        format!("The provider returned an unusable answer: {what}"),
    )
}

/// The upstream request of an embeddings call.
pub fn build_embeddings(
    route: &Route,
    req: &EmbeddingsRequest,
) -> Result<UpstreamRequest, GatewayError> {
    check_supported(route, MediaApi::Embeddings)?;
    match route.kind {
        ProviderKind::Gemini => gemini::build_embeddings(route, req),
        ProviderKind::Ollama => ollama::build_embeddings(route, req),
        ProviderKind::HuggingFace => huggingface::build_embeddings(route, req),
        _ => openai::build_embeddings(route, req),
    }
}

/// The vectors (in input order) and reported usage of an embeddings answer; `expected` is the
/// number of inputs.
pub fn parse_embeddings(
    kind: ProviderKind,
    route_base_url: &str,
    body: &[u8],
    expected: usize,
) -> Result<Embeddings, GatewayError> {
    let e = match kind {
        ProviderKind::Gemini => gemini::parse_embeddings(body)?,
        ProviderKind::Ollama => ollama::parse_embeddings(body)?,
        ProviderKind::HuggingFace if !huggingface::is_openai_route(route_base_url) => {
            huggingface::parse_tei(body)?
        }
        _ => openai::parse_embeddings(body)?,
    };
    if e.vectors.len() != expected {
        return Err(unusable(format!(
            "{} embeddings for {expected} inputs",
            e.vectors.len()
        )));
    }
    Ok(e)
}

/// The upstream request of an image generation or edit; `seed` makes the multipart boundary.
pub fn build_image(
    route: &Route,
    req: &ImageRequest<'_>,
    seed: &str,
) -> Result<UpstreamRequest, GatewayError> {
    let api = match req.op {
        crate::core::inbound::images::ImageOp::Generate => MediaApi::ImageGenerations,
        crate::core::inbound::images::ImageOp::Edit => MediaApi::ImageEdits,
    };
    check_supported(route, api)?;
    openai::build_image(route, req, seed)
}

/// The upstream request of a speech call.
pub fn build_speech(route: &Route, req: &SpeechRequest) -> Result<UpstreamRequest, GatewayError> {
    check_supported(route, MediaApi::Speech)?;
    openai::build_speech(route, req)
}

/// The upstream request of a transcription or translation, asking for `format`.
pub fn build_transcription(
    route: &Route,
    req: &TranscriptionRequest<'_>,
    format: crate::core::inbound::audio::TranscriptFormat,
    seed: &str,
) -> Result<UpstreamRequest, GatewayError> {
    let api = if req.translation {
        MediaApi::Translations
    } else {
        MediaApi::Transcriptions
    };
    check_supported(route, api)?;
    openai::build_transcription(route, req, format, seed)
}

/// Maps a non-2xx answer of a media endpoint, as the kind's chat adapter does.
pub fn map_error(kind: ProviderKind, status: u16, body: &[u8]) -> GatewayError {
    kind.adapter().map_error(status, body)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::super::{ProviderKind, Route};
    use serde_json::Value;

    pub fn route(kind: ProviderKind, base_url: &str, config: Value) -> Route {
        Route {
            provider: "p".into(),
            kind,
            base_url: base_url.into(),
            api_key: Some("key-1".into()),
            upstream_model: "up-model".into(),
            max_output_tokens: Some(100),
            config,
        }
    }

    pub fn header<'a>(req: &'a super::UpstreamRequest, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::route;
    use super::*;
    use crate::core::inbound::embeddings::decode_request;
    use serde_json::Value;

    #[test]
    fn support_table() {
        let all = [
            MediaApi::Embeddings,
            MediaApi::ImageGenerations,
            MediaApi::ImageEdits,
            MediaApi::Speech,
            MediaApi::Transcriptions,
            MediaApi::Translations,
        ];
        for api in all {
            assert!(supports(ProviderKind::OpenAi, api));
            assert!(supports(ProviderKind::Azure, api));
            assert!(!supports(ProviderKind::Anthropic, api));
            assert!(!supports(ProviderKind::Echo, api));
            for k in [
                ProviderKind::Gemini,
                ProviderKind::Ollama,
                ProviderKind::HuggingFace,
            ] {
                assert_eq!(supports(k, api), api == MediaApi::Embeddings);
            }
        }
        let r = route(
            ProviderKind::Anthropic,
            "https://api.anthropic.com/v1",
            Value::Null,
        );
        let e = build_embeddings(
            &r,
            &decode_request(br#"{"model":"m","input":"x"}"#).unwrap(),
        )
        .unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "unsupported_for_provider"));
        let json: Value =
            serde_json::from_str(&crate::core::inbound::openai::error_body(&e)).unwrap();
        assert_eq!(json["error"]["code"], "unsupported_for_provider");
        assert_eq!(MediaApi::Translations.usage_api(), "transcriptions");
        assert_eq!(MediaApi::ImageEdits.model_kind(), "image");
        for api in all {
            assert_eq!(parse_model_kind(api.model_kind()), Some(api.model_kind()));
        }
        assert_eq!(parse_model_kind("chat"), Some("chat"));
        assert_eq!(parse_model_kind("video"), None);
    }

    #[test]
    fn a_count_mismatch_is_unusable() {
        let body = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[1.0]}],"model":"m","usage":{"prompt_tokens":1,"total_tokens":1}}"#;
        let e = parse_embeddings(ProviderKind::OpenAi, "", body, 2).unwrap_err();
        assert_eq!((e.status(), e.code()), (502, "upstream_unusable"));
        assert!(e.provider_may_have_billed());
        assert_eq!(
            parse_embeddings(ProviderKind::OpenAi, "", body, 1)
                .unwrap()
                .vectors,
            vec![vec![1.0]]
        );
    }
}
