//! Provider adapters: one module per upstream API, all behind [`Adapter`].
//!
//! An adapter is pure: it builds the upstream HTTP request from an OpenAI request, and maps the
//! upstream's plain response, stream bytes and error bodies back to OpenAI shapes. The edge shell
//! does the I/O. Adding a provider is one new module plus one [`ProviderKind`] variant.

pub mod echo;
pub mod openai;

use crate::core::error::GatewayError;
use crate::core::openai::{ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse};

/// The adapters Tollgate has. Stored as `providers.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI and any OpenAI-compatible server (LocalAI, vLLM, Groq, DeepSeek, …).
    OpenAi,
    /// The built-in demo model `tollgate-echo`: answers inside the gateway, no network.
    Echo,
}

impl ProviderKind {
    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "openai" | "openai-compatible" => Some(ProviderKind::OpenAi),
            "echo" => Some(ProviderKind::Echo),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Echo => "echo",
        }
    }

    /// Every kind an operator may configure, for error messages.
    pub const ALL: &'static [&'static str] = &["openai", "echo"];

    /// The adapter of this kind.
    pub fn adapter(self) -> &'static dyn Adapter {
        match self {
            ProviderKind::OpenAi => &openai::OpenAiAdapter,
            ProviderKind::Echo => &echo::EchoAdapter,
        }
    }
}

/// Where and how to reach one upstream model.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub provider: String,
    pub kind: ProviderKind,
    /// e.g. `https://api.openai.com/v1` (no trailing slash needed).
    pub base_url: String,
    /// The upstream key, read from the Worker secret the provider names.
    pub api_key: Option<String>,
    pub upstream_model: String,
}

/// An HTTP request for the edge shell to send.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a stream decoder makes of upstream bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// A chunk; `raw` holds the upstream's own SSE bytes when they can be forwarded unchanged.
    Chunk {
        chunk: ChatCompletionChunk,
        raw: Option<Vec<u8>>,
    },
    /// A keep-alive or comment, forwarded unchanged.
    KeepAlive(Vec<u8>),
    /// The upstream ended the stream normally.
    Done,
    /// The upstream reported an error inside the stream.
    Error(GatewayError),
}

/// Turns upstream stream bytes into OpenAI chunks, incrementally.
pub trait StreamDecoder {
    /// Feeds the next bytes; returns every item they complete.
    fn push(&mut self, bytes: &[u8]) -> Vec<StreamItem>;
    /// The upstream closed the connection; returns what was pending.
    fn finish(&mut self) -> Vec<StreamItem>;
}

/// One provider's API.
pub trait Adapter: Sync {
    /// Builds the upstream request. `stream` requests a stream with usage reporting.
    fn build_request(
        &self,
        route: &Route,
        req: &ChatCompletionRequest,
    ) -> Result<UpstreamRequest, GatewayError>;

    /// Maps a successful plain response body.
    fn parse_response(&self, body: &[u8]) -> Result<ChatCompletionResponse, GatewayError>;

    /// A decoder for a successful streamed response.
    fn stream_decoder(&self) -> Box<dyn StreamDecoder>;

    /// Maps a non-2xx upstream response to an OpenAI-shaped error that keeps the provider's
    /// message.
    fn map_error(&self, status: u16, body: &[u8]) -> GatewayError;
}

/// Joins a base URL and a path with exactly one slash.
pub fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(k).unwrap().as_str(), *k);
        }
        assert_eq!(
            ProviderKind::parse("openai-compatible"),
            Some(ProviderKind::OpenAi)
        );
        assert_eq!(ProviderKind::parse("nope"), None);
    }

    #[test]
    fn joins_urls() {
        assert_eq!(
            join_url("http://h/v1/", "/chat/completions"),
            "http://h/v1/chat/completions"
        );
        assert_eq!(
            join_url("http://h/v1", "chat/completions"),
            "http://h/v1/chat/completions"
        );
    }
}
