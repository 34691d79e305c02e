//! OpenAI chat-completions wire types: the contract every client speaks and every adapter maps.
//!
//! Requests keep unknown fields in `extra` (`#[serde(flatten)]`) so new OpenAI parameters pass
//! through to OpenAI-compatible upstreams; optional fields are omitted when unset, because some
//! OpenAI-compatible servers reject nulls or fields they do not know.

pub mod chunk;
pub mod request;
pub mod response;

pub use chunk::{ChatCompletionChunk, ChunkChoice, Delta, ToolCallDelta};
pub use request::{
    ChatCompletionRequest, ChatMessage, ContentPart, FunctionDef, MessageContent, Role,
    StreamOptions, Tool,
};
pub use response::{
    CacheWrites, ChatCompletionResponse, Choice, CompletionTokensDetails, FunctionCall,
    PromptTokensDetails, ResponseMessage, ToolCall, Usage,
};
