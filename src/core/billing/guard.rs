//! Never let output run unpaid: the stream-side check of generated tokens against what the
//! reservation covers.
//!
//! The reservation covers `covered_tokens` output tokens (the request's `max_tokens` times `n`, or
//! the model's `max_output_tokens` when the client set none). Before a chunk that adds text is
//! forwarded, [`OutputGuard::check`] decides:
//!
//! * **Continue** while the output stays within the covered tokens.
//! * **Extend** when it would go past them and the client set no `max_tokens`: the edge grows the
//!   reservation by [`OutputGuard::block_tokens`] more output tokens (one conditional D1
//!   statement) and forwards the chunk when that succeeds.
//! * **Cut** when the client capped the output itself (the provider ignored the cap), or when the
//!   extension is refused: the stream ends cleanly with `finish_reason: "length"`, the usage chunk
//!   if the client asked for usage, and `[DONE]`; the usage row says `truncated`.
//!
//! # Counting cost
//!
//! Every token of a byte-level BPE is at least one byte, so `tokens(text) <= tokens(prefix) +
//! bytes(rest)`. The guard keeps the exact count of a prefix and only counts when that cheap upper
//! bound crosses the covered tokens. Far from the limit a chunk costs nothing; near it, the
//! delivered text goes through a [`StreamTokenCounter`], so each chunk costs the count of the last
//! pieces and the chunk itself (not of the text so far), until an extension moves the limit a
//! block away again.

use crate::core::tokens::{Encoding, StreamTokenCounter};

/// Output tokens added per extension when the client set no `max_tokens`.
pub const DEFAULT_BLOCK_TOKENS: u64 = 1024;

/// Tokens in generated text: the model's own tokenizer, or 1 token per byte (an upper bound for
/// any byte-level BPE) when the model has none.
///
/// How [`OutputGuard`] counts output without a counter of its own (the model has no tokenizer).
pub fn count_output(encoding: Option<Encoding>, text: &str) -> u64 {
    match encoding {
        Some(enc) => enc.count(text),
        None => text.len() as u64,
    }
}

/// What to do with the next piece of output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputDecision {
    /// Forward it.
    Continue,
    /// Grow the reservation by this many output tokens first; cut if that is refused.
    Extend { tokens: u64 },
    /// Stop the stream before this piece: `finish_reason: "length"`.
    Cut,
}

/// Tracks a stream's output against the tokens its reservation covers.
#[derive(Debug)]
pub struct OutputGuard {
    encoding: Option<Encoding>,
    /// The delivered output, counted incrementally once the guard starts counting (near the
    /// limit), so each check costs the last pieces and the new chunk, not the whole text.
    counter: Option<StreamTokenCounter>,
    /// Bytes of the delivered output pushed into `counter`.
    fed: usize,
    covered_tokens: u64,
    client_capped: bool,
    block_tokens: u64,
    /// Exact token count of the first `exact_len` bytes of the output.
    exact_tokens: u64,
    exact_len: usize,
}

impl OutputGuard {
    /// `covered_tokens`: output tokens the reservation pays for; `client_capped`: the client set
    /// `max_tokens`/`max_completion_tokens` (then the guard cuts instead of extending).
    pub fn new(encoding: Option<Encoding>, covered_tokens: u64, client_capped: bool) -> Self {
        OutputGuard {
            encoding,
            counter: None,
            fed: 0,
            covered_tokens,
            client_capped,
            block_tokens: DEFAULT_BLOCK_TOKENS.max(covered_tokens / 2),
            exact_tokens: 0,
            exact_len: 0,
        }
    }

    /// Output tokens the reservation covers now.
    pub fn covered_tokens(&self) -> u64 {
        self.covered_tokens
    }

    /// How many tokens an extension adds.
    pub fn block_tokens(&self) -> u64 {
        self.block_tokens
    }

    /// Decides about `added`, which would follow `delivered` (all output forwarded so far).
    pub fn check(&mut self, delivered: &str, added: &str) -> OutputDecision {
        let upper = self
            .exact_tokens
            .saturating_add((delivered.len() + added.len() - self.exact_len) as u64);
        if upper <= self.covered_tokens {
            return OutputDecision::Continue;
        }
        let (delivered_tokens, tokens) = match self.encoding {
            Some(enc) => {
                let counter = self
                    .counter
                    .get_or_insert_with(|| StreamTokenCounter::new(enc));
                // `delivered` only grows: push what the counter has not seen.
                counter.push(delivered.get(self.fed..).unwrap_or_default());
                self.fed = delivered.len();
                (counter.total(), counter.total_with(added))
            }
            None => (
                count_output(None, delivered),
                count_output(None, delivered) + count_output(None, added),
            ),
        };
        if tokens <= self.covered_tokens {
            // Only `delivered` is certain to be forwarded; remember its count for the bound.
            self.exact_tokens = delivered_tokens;
            self.exact_len = delivered.len();
            return OutputDecision::Continue;
        }
        if self.client_capped {
            return OutputDecision::Cut;
        }
        let missing = tokens - self.covered_tokens;
        let blocks = missing.div_ceil(self.block_tokens).max(1);
        OutputDecision::Extend {
            tokens: blocks.saturating_mul(self.block_tokens),
        }
    }

    /// The reservation now covers `tokens` more output tokens.
    pub fn extended(&mut self, tokens: u64) {
        self.covered_tokens = self.covered_tokens.saturating_add(tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_far_from_the_limit_without_counting() {
        let mut g = OutputGuard::new(Some(Encoding::O200kBase), 100, false);
        // 50 bytes can never be more than 50 tokens.
        assert_eq!(g.check("", &"a".repeat(50)), OutputDecision::Continue);
        assert_eq!(g.exact_len, 0, "no recount needed");
    }

    #[test]
    fn recounts_near_the_limit_and_continues_when_exact_count_fits() {
        let mut g = OutputGuard::new(Some(Encoding::O200kBase), 10, false);
        let delivered = "hello world, this is"; // 5 tokens, 20 bytes
        assert_eq!(g.check(delivered, " fine"), OutputDecision::Continue);
        assert_eq!(g.exact_tokens, Encoding::O200kBase.count(delivered));
        assert_eq!(g.exact_len, delivered.len());
    }

    #[test]
    fn cuts_when_the_client_capped_output() {
        let mut g = OutputGuard::new(Some(Encoding::O200kBase), 3, true);
        assert_eq!(g.check("one two three", " four"), OutputDecision::Cut);
        // exactly at the limit is still fine
        let mut g = OutputGuard::new(Some(Encoding::O200kBase), 4, true);
        assert_eq!(g.check("one two three", " four"), OutputDecision::Continue);
    }

    #[test]
    fn extends_by_whole_blocks() {
        let mut g = OutputGuard::new(Some(Encoding::O200kBase), 3, false);
        assert_eq!(g.block_tokens(), DEFAULT_BLOCK_TOKENS);
        assert_eq!(
            g.check("one two three", " four"),
            OutputDecision::Extend {
                tokens: DEFAULT_BLOCK_TOKENS
            }
        );
        g.extended(DEFAULT_BLOCK_TOKENS);
        assert_eq!(g.covered_tokens(), 3 + DEFAULT_BLOCK_TOKENS);
        assert_eq!(g.check("one two three", " four"), OutputDecision::Continue);
        // A huge piece needs several blocks at once.
        let mut g = OutputGuard::new(None, 10, false);
        let big = "x".repeat(3000);
        assert_eq!(
            g.check("", &big),
            OutputDecision::Extend {
                tokens: 3 * DEFAULT_BLOCK_TOKENS
            }
        );
        // Large reservations extend by half of what they cover.
        assert_eq!(OutputGuard::new(None, 10_000, false).block_tokens(), 5_000);
    }

    #[test]
    fn cuts_exactly_where_the_whole_text_would_exceed_the_cap() {
        // Counting incrementally decides like counting the whole text at every chunk.
        let pieces = [
            "Hello", " wor", "ld", "!  ", " 你好", "世界", "\n\n", "   x", "don", "'t", " 🎉",
        ];
        for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
            for covered in [3u64, 8, 13, 30, 60] {
                let mut g = OutputGuard::new(Some(enc), covered, true);
                let mut delivered = String::new();
                for i in 0..400 {
                    let piece = pieces[i % pieces.len()];
                    let fits = enc.count(&format!("{delivered}{piece}")) <= covered;
                    let decision = g.check(&delivered, piece);
                    assert_eq!(
                        decision == OutputDecision::Continue,
                        fits,
                        "{enc:?} {covered} {i}"
                    );
                    if !fits {
                        break;
                    }
                    delivered.push_str(piece);
                }
            }
        }
    }

    #[test]
    fn never_lets_output_pass_the_covered_tokens() {
        // Feed words one by one with a cap: the forwarded text never counts more than covered.
        let enc = Encoding::O200kBase;
        for covered in [1u64, 2, 5, 17, 40] {
            let mut g = OutputGuard::new(Some(enc), covered, true);
            let mut delivered = String::new();
            for i in 0..200 {
                let piece = format!(" w{i}ord");
                match g.check(&delivered, &piece) {
                    OutputDecision::Continue => delivered.push_str(&piece),
                    OutputDecision::Cut => break,
                    OutputDecision::Extend { .. } => unreachable!("capped guards cut"),
                }
                assert!(enc.count(&delivered) <= covered);
            }
            assert!(enc.count(&delivered) <= covered);
            assert!(
                enc.count(&delivered) + 4 > covered,
                "stopped early at {covered}"
            );
        }
    }

    #[test]
    fn without_a_tokenizer_bytes_bound_tokens() {
        assert_eq!(count_output(None, "héllo"), 6);
        assert_eq!(count_output(Some(Encoding::O200kBase), "hello"), 1);
    }
}
