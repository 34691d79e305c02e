//! Chat framing of the open families (stub).

use super::Encoding;
use crate::core::openai::ChatCompletionRequest;

/// The prompt tokens of `req` as the family's chat template renders it; `None` for OpenAI's
/// encodings.
pub fn count_chat_prompt(enc: Encoding, req: &ChatCompletionRequest) -> Option<u64> {
    let _ = (enc, req);
    None
}
