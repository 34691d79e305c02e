//! Token counting with the model family's own tokenizer.
//!
//! OpenAI encodings are counted with tiktoken-rs (`o200k_base`, `cl100k_base`). Chat prompts add
//! OpenAI's per-message framing: 3 tokens per message, 1 more for a `name`, and 3 that prime the
//! assistant's reply (the rule of OpenAI's cookbook "How to count tokens with tiktoken"). Tool
//! definitions are counted as their JSON text plus a small framing allowance: an estimate, used
//! for reservations only; billing prefers the provider's reported usage.

use tiktoken_rs::CoreBPE;

use crate::core::openai::{ChatCompletionRequest, MessageContent};

/// A tokenizer Tollgate can count with locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    O200kBase,
    Cl100kBase,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::O200kBase => "o200k_base",
            Encoding::Cl100kBase => "cl100k_base",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "o200k_base" => Some(Encoding::O200kBase),
            "cl100k_base" => Some(Encoding::Cl100kBase),
            _ => None,
        }
    }

    fn bpe(self) -> &'static CoreBPE {
        match self {
            Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        }
    }

    /// Tokens in `text`, with special-token text counted as ordinary text (as OpenAI does for
    /// user content).
    pub fn count(self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        self.bpe().encode_ordinary(text).len() as u64
    }
}

impl Encoding {
    /// Splits `text` into at most `max_tokens` tokens and returns them as printable pieces (a
    /// token that ends inside a UTF-8 character is joined with the next), with the number of
    /// tokens used. For streaming a known text token by token.
    pub fn token_pieces(self, text: &str, max_tokens: u64) -> (Vec<String>, u64) {
        let bpe = self.bpe();
        let tokens = bpe.encode_ordinary(text);
        let take = tokens
            .len()
            .min(usize::try_from(max_tokens).unwrap_or(usize::MAX));
        let mut pieces = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        for token in &tokens[..take] {
            if let Ok(bytes) = bpe.decode_bytes(std::slice::from_ref(token)) {
                pending.extend_from_slice(&bytes);
            }
            if let Ok(piece) = std::str::from_utf8(&pending) {
                pieces.push(piece.to_string());
                pending.clear();
            }
        }
        if !pending.is_empty() {
            pieces.push(String::from_utf8_lossy(&pending).into_owned());
        }
        (pieces, take as u64)
    }
}

/// Model-name prefixes and their encodings.
/// Keep in sync with tiktoken's `tiktoken/model.py` (MODEL_PREFIX_TO_ENCODING, MODEL_TO_ENCODING).
const PREFIX_TO_ENCODING: &[(&str, Encoding)] = &[
    ("gpt-5", Encoding::O200kBase),
    ("gpt-4.5", Encoding::O200kBase),
    ("gpt-4.1", Encoding::O200kBase),
    ("gpt-4o", Encoding::O200kBase),
    ("chatgpt-4o", Encoding::O200kBase),
    ("o1", Encoding::O200kBase),
    ("o3", Encoding::O200kBase),
    ("o4", Encoding::O200kBase),
    ("gpt-oss", Encoding::O200kBase),
    ("gpt-4", Encoding::Cl100kBase),
    ("gpt-3.5", Encoding::Cl100kBase),
    ("gpt-35", Encoding::Cl100kBase),
    ("text-embedding-ada-002", Encoding::Cl100kBase),
    ("text-embedding-3", Encoding::Cl100kBase),
];

/// The encoding of an OpenAI model name, or `None` for families without a local tokenizer.
/// Accepts provider-qualified names such as `openai/gpt-4o`.
pub fn encoding_for_model(model: &str) -> Option<Encoding> {
    let name = model.rsplit('/').next().unwrap_or(model);
    PREFIX_TO_ENCODING
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|&(_, enc)| enc)
}

const TOKENS_PER_MESSAGE: u64 = 3;
const TOKENS_PER_NAME: u64 = 1;
const REPLY_PRIMING: u64 = 3;
const TOKENS_PER_TOOL: u64 = 8;
const TOKENS_PER_TOOL_CALL: u64 = 3;

/// Prompt tokens of a chat request, framing included.
pub fn count_chat_prompt(enc: Encoding, req: &ChatCompletionRequest) -> u64 {
    let mut total = REPLY_PRIMING;
    for m in &req.messages {
        total += TOKENS_PER_MESSAGE + enc.count(m.role.as_str());
        match &m.content {
            None => {}
            Some(MessageContent::Text(t)) => total += enc.count(t),
            Some(MessageContent::Parts(parts)) => {
                for p in parts {
                    if let Some(t) = &p.text {
                        total += enc.count(t);
                    }
                }
            }
        }
        if let Some(name) = &m.name {
            total += enc.count(name) + TOKENS_PER_NAME;
        }
        for call in m.tool_calls.iter().flatten() {
            total += TOKENS_PER_TOOL_CALL
                + enc.count(&call.function.name)
                + enc.count(&call.function.arguments);
        }
        if let Some(id) = &m.tool_call_id {
            total += enc.count(id);
        }
    }
    for tool in req.tools.iter().flatten() {
        if let Some(f) = &tool.function {
            total += TOKENS_PER_TOOL + enc.count(&f.name);
            if let Some(d) = &f.description {
                total += enc.count(d);
            }
            if let Some(p) = &f.parameters {
                total += enc.count(&p.to_string());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_table() {
        assert_eq!(encoding_for_model("gpt-4o-mini"), Some(Encoding::O200kBase));
        assert_eq!(
            encoding_for_model("gpt-4.1-nano"),
            Some(Encoding::O200kBase)
        );
        assert_eq!(encoding_for_model("gpt-5"), Some(Encoding::O200kBase));
        assert_eq!(encoding_for_model("o3-mini"), Some(Encoding::O200kBase));
        assert_eq!(
            encoding_for_model("openai/gpt-4o"),
            Some(Encoding::O200kBase)
        );
        assert_eq!(
            encoding_for_model("gpt-4-turbo"),
            Some(Encoding::Cl100kBase)
        );
        assert_eq!(encoding_for_model("gpt-4"), Some(Encoding::Cl100kBase));
        assert_eq!(
            encoding_for_model("gpt-3.5-turbo"),
            Some(Encoding::Cl100kBase)
        );
        assert_eq!(encoding_for_model("llama3"), None);
        assert_eq!(
            Encoding::from_name("cl100k_base"),
            Some(Encoding::Cl100kBase)
        );
    }

    // Reference values from OpenAI's tiktoken (Python) for the same strings.
    #[test]
    fn known_counts() {
        let o200k = Encoding::O200kBase;
        let cl100k = Encoding::Cl100kBase;
        assert_eq!(cl100k.count("hello world"), 2);
        assert_eq!(o200k.count("hello world"), 2);
        assert_eq!(cl100k.count("tiktoken is great!"), 6);
        assert_eq!(cl100k.count(""), 0);
        // Special-token text is ordinary text.
        assert!(cl100k.count("<|endoftext|>") > 1);
    }

    #[test]
    fn token_pieces_rejoin_to_the_text() {
        let text = "Echo: 你好, world! 🎉 tokens";
        let (pieces, used) = Encoding::O200kBase.token_pieces(text, u64::MAX);
        assert_eq!(pieces.concat(), text);
        assert_eq!(used, Encoding::O200kBase.count(text));
        let (short, used) = Encoding::O200kBase.token_pieces(text, 3);
        assert_eq!(used, 3);
        assert!(text.starts_with(&short.concat()));
    }

    #[test]
    fn chat_framing_follows_the_cookbook() {
        let req = ChatCompletionRequest::from_json(
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello world"}]}"#,
        )
        .unwrap();
        // 3 (message) + 1 ("user") + 2 ("hello world") + 3 (priming)
        assert_eq!(count_chat_prompt(Encoding::O200kBase, &req), 9);
        let named = ChatCompletionRequest::from_json(
            br#"{"model":"gpt-4o","messages":[{"role":"user","name":"bob","content":"hello world"}]}"#,
        )
        .unwrap();
        assert_eq!(count_chat_prompt(Encoding::O200kBase, &named), 9 + 1 + 1);
    }
}
