//! Exact token counts of a text that arrives in deltas (a streamed completion).
//!
//! Summing the counts of the deltas overcounts (by ~40% on English): tokens span deltas. The
//! count is exact when the text is split as a whole and each piece is merged on its own, which
//! is what tiktoken does. A piece can still change while text is appended — a whitespace run
//! grows or gives its last space to the next word, `" don"` + `"'"` becomes `" don't"` — but only
//! the last two pieces can: every rule looks at most a few characters past a piece's end, and
//! those characters fall inside the next two pieces or the end of the text. So the counter keeps
//! the last two pieces pending and counts every piece before them once, for good.
//!
//! The pending text is re-split only when it has doubled (or grown by [`RESCAN_BYTES`]) since the
//! last split, so a long piece that keeps growing (a run of spaces, a base64 blob) costs linear
//! time in total, not quadratic.

use super::pretokenize::Text;
use super::vocab::Scratch;
use super::Encoding;

/// Pending text grows at least this much between two splits.
pub const RESCAN_BYTES: usize = 256;

/// Counts the tokens of a streamed text exactly, without keeping or re-counting all of it.
pub struct StreamTokenCounter {
    encoding: Encoding,
    /// The text from the start of the first pending piece (a piece boundary of the whole text).
    pending: String,
    /// Tokens of the pieces before `pending`.
    settled: u64,
    /// `pending` is split again when it reaches this length.
    split_at: usize,
    scratch: Scratch,
}

impl std::fmt::Debug for StreamTokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTokenCounter")
            .field("encoding", &self.encoding)
            .field("settled", &self.settled)
            .field("pending_bytes", &self.pending.len())
            .finish()
    }
}

impl StreamTokenCounter {
    /// A counter for a text in `encoding`.
    pub fn new(encoding: Encoding) -> Self {
        StreamTokenCounter {
            encoding,
            pending: String::new(),
            settled: 0,
            split_at: RESCAN_BYTES,
            scratch: Scratch::default(),
        }
    }

    /// The encoding counted with.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Appends the next delta of the text.
    pub fn push(&mut self, delta: &str) {
        self.pending.push_str(delta);
        if self.pending.len() >= self.split_at {
            self.settle();
        }
    }

    /// Counts every piece of the pending text but the last two, and drops them. [`push`] does
    /// this whenever the pending text has grown enough; calling it more often changes nothing
    /// but the work done.
    ///
    /// [`push`]: StreamTokenCounter::push
    pub fn settle(&mut self) {
        let enc = self.encoding;
        if enc.open().is_some() {
            // The open families' pipelines (added tokens, DeepSeek's three splits, Gemma's
            // whole-stretch merge) have no "last two pieces" bound: their text stays pending and
            // is counted whole (exact; each count costs the text so far).
            return;
        }
        let vocab = enc.vocab();
        let text = Text::new(&self.pending);
        // Starts of the last two pieces found; a piece is final once two more follow it.
        let mut older: Option<usize> = None;
        let mut newer: Option<usize> = None;
        let mut pos = 0;
        while pos < self.pending.len() {
            let end = enc.piece_end(text, pos);
            if let (Some(start), Some(next)) = (older, newer) {
                let piece = &self.pending.as_bytes()[start..next];
                self.settled += vocab.count_piece(piece, &mut self.scratch) as u64;
            }
            older = newer;
            newer = Some(pos);
            pos = end;
        }
        let keep_from = older.or(newer).unwrap_or(self.pending.len());
        self.pending.drain(..keep_from);
        self.split_at = (self.pending.len() * 2).max(self.pending.len() + RESCAN_BYTES);
    }

    /// The exact token count of everything pushed so far. Costs a count of the pending text only.
    pub fn total(&self) -> u64 {
        self.settled + self.encoding.count(&self.pending)
    }

    /// The exact token count of everything pushed so far followed by `extra`, without pushing
    /// it. Costs a count of the pending text and `extra`.
    pub fn total_with(&self, extra: &str) -> u64 {
        let mut text = String::with_capacity(self.pending.len() + extra.len());
        text.push_str(&self.pending);
        text.push_str(extra);
        self.settled + self.encoding.count(&text)
    }

    /// Bytes held back for the pieces that may still change (bounded by the last two pieces
    /// and the re-split interval).
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_count_like_the_whole_text() {
        let text = "Hello world! I don't know... \n\n   DON'T   stop 12345 你好世界 🎉\r\n\tend  ";
        for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
            let whole = enc.count(text);
            for step in 1..8 {
                let mut counter = StreamTokenCounter::new(enc);
                let chars: Vec<char> = text.chars().collect();
                for chunk in chars.chunks(step) {
                    counter.push(&chunk.iter().collect::<String>());
                    counter.settle(); // settle at every delta, the strictest case
                }
                assert_eq!(counter.total(), whole, "{enc:?} step {step}");
                let (head, tail) = text.split_at(text.len() / 2);
                let mut half = StreamTokenCounter::new(enc);
                half.push(head);
                assert_eq!(half.total_with(tail), whole, "{enc:?} total_with");
            }
        }
    }

    #[test]
    fn a_growing_run_stays_linear() {
        let mut counter = StreamTokenCounter::new(Encoding::O200kBase);
        for _ in 0..20_000 {
            counter.push("  ");
        }
        counter.push("x");
        assert_eq!(
            counter.total(),
            Encoding::O200kBase.count(&(" ".repeat(40_000) + "x"))
        );
    }
}
