//! The pre-tokenizers of `cl100k_base` and `o200k_base`: hand-written matchers with exactly the
//! semantics of tiktoken's split regexes (leftmost-first alternation, greedy and possessive
//! quantifiers, backtracking, `\s+(?!\S)` lookahead, `$` = end of text), as run by tiktoken-rs
//! with fancy-regex. The Unicode classes come from `regex-syntax`'s tables via `build.rs`.
//!
//! Why not a regex: in wasm, compiling the general regex costs ~40 ms and running it is ~75% of
//! the counting time. Each alternative below is a few table lookups per character.
//!
//! cl100k_base (keep in sync with tiktoken-rs `tiktoken_ext/openai_public.rs`):
//! ```text
//! '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s
//! ```
//! o200k_base:
//! ```text
//! [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//! |[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//! |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
//! ```
//! Every character matches some alternative and none matches the empty string, so the pieces
//! tile the text: each piece starts where the previous one ended.

mod generated {
    include!(concat!(env!("OUT_DIR"), "/classes.rs"));
}

use generated::{contraction_letter, BLOCK_SHIFT};

static CLASS_INDEX: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/classes.index"));
static CLASS_BLOCKS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/classes.blocks"));

/// `\p{L}`.
const LETTER: u8 = 1;
/// `\p{N}`.
const NUMBER: u8 = 2;
/// `\s` (Unicode White_Space).
const SPACE: u8 = 4;
/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`.
const UPPERISH: u8 = 8;
/// `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`.
const LOWERISH: u8 = 16;
/// `\p{P}`.
const PUNCT: u8 = 32;
/// `\p{S}`.
const SYMBOL: u8 = 64;
/// `\p{M}`.
const MARK: u8 = 128;

/// The class bits of a character.
#[inline]
fn class_of(c: u32) -> u8 {
    let block = CLASS_INDEX[(c >> BLOCK_SHIFT) as usize] as usize;
    CLASS_BLOCKS[(block << BLOCK_SHIFT) | (c as usize & ((1 << BLOCK_SHIFT) - 1))]
}

/// A character of the text: code point, UTF-8 length, class bits.
#[derive(Clone, Copy)]
struct Ch {
    c: u32,
    len: usize,
    class: u8,
}

impl Ch {
    #[inline]
    fn is(self, bits: u8) -> bool {
        self.class & bits != 0
    }
    #[inline]
    fn is_newline(self) -> bool {
        self.c == u32::from(b'\r') || self.c == u32::from(b'\n')
    }
    /// `[^\r\n\p{L}\p{N}]`: the optional character before a word.
    #[inline]
    fn is_word_prefix(self) -> bool {
        !self.is(LETTER | NUMBER) && !self.is_newline()
    }
    /// `[^\s\p{L}\p{N}]`: punctuation and symbols.
    #[inline]
    fn is_other(self) -> bool {
        !self.is(LETTER | NUMBER | SPACE)
    }
}

/// The text being split, with character access by byte position.
#[derive(Clone, Copy)]
pub(crate) struct Text<'a> {
    bytes: &'a [u8],
}

impl<'a> Text<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Text {
            bytes: text.as_bytes(),
        }
    }

    #[inline]
    fn len(self) -> usize {
        self.bytes.len()
    }

    /// The character starting at byte `i` (which must be a character boundary), if any.
    #[inline]
    fn at(self, i: usize) -> Option<Ch> {
        let b0 = *self.bytes.get(i)?;
        if b0 < 0x80 {
            return Some(Ch {
                c: u32::from(b0),
                len: 1,
                class: CLASS_BLOCKS[b0 as usize],
            });
        }
        let cont = |k: usize| u32::from(self.bytes.get(i + k).copied().unwrap_or(0x80) & 0x3F);
        let (c, len) = if b0 < 0xE0 {
            ((u32::from(b0 & 0x1F) << 6) | cont(1), 2)
        } else if b0 < 0xF0 {
            ((u32::from(b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2), 3)
        } else {
            (
                (u32::from(b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3),
                4,
            )
        };
        Some(Ch {
            c,
            len,
            class: class_of(c),
        })
    }

    /// The start of the character that ends at byte `i`.
    #[inline]
    fn prev_start(self, i: usize) -> usize {
        let mut j = i - 1;
        while j > 0 && self.bytes[j] & 0xC0 == 0x80 {
            j -= 1;
        }
        j
    }

    /// The end of the longest run of characters with any of `bits`, from `i`.
    #[inline]
    fn run(self, mut i: usize, bits: u8) -> usize {
        while let Some(ch) = self.at(i) {
            if !ch.is(bits) {
                break;
            }
            i += ch.len;
        }
        i
    }

    /// The end of the longest run of `\r`, `\n` (and `/` when `slash`), from `i`.
    #[inline]
    fn newline_run(self, mut i: usize, slash: bool) -> usize {
        while let Some(&b) = self.bytes.get(i) {
            if b == b'\r' || b == b'\n' || (slash && b == b'/') {
                i += 1;
            } else {
                break;
            }
        }
        i
    }

    /// The end of at most three `\p{N}` from `i` (`\p{N}{1,3}`); `i` when there is none.
    #[inline]
    fn digits(self, i: usize) -> usize {
        self.digits_up_to(i, 3)
    }

    /// The end of at most `max` `\p{N}` from `i`; `i` when there is none.
    #[inline]
    fn digits_up_to(self, mut i: usize, max: usize) -> usize {
        for _ in 0..max {
            match self.at(i) {
                Some(ch) if ch.is(NUMBER) => i += ch.len,
                _ => break,
            }
        }
        i
    }

    /// The end of ` ?[^\s\p{L}\p{N}]+` followed by the newline run, or `None`.
    #[inline]
    fn punctuation(self, pos: usize, first: Ch, slash: bool) -> Option<usize> {
        let start = if first.c == u32::from(b' ') {
            match self.at(pos + 1) {
                Some(next) if next.is_other() => pos + 1,
                _ => return None,
            }
        } else if first.is_other() {
            pos
        } else {
            return None;
        };
        let mut end = start;
        while let Some(ch) = self.at(end) {
            if !ch.is_other() {
                break;
            }
            end += ch.len;
        }
        Some(self.newline_run(end, slash))
    }

    /// The end of the whitespace run at `pos`, and the end of its last newline if any.
    #[inline]
    fn space_run(self, pos: usize, first: Ch) -> (usize, Option<usize>) {
        let mut end = pos + first.len;
        let mut newline_end = if first.is_newline() { Some(end) } else { None };
        while let Some(ch) = self.at(end) {
            if !ch.is(SPACE) {
                break;
            }
            end += ch.len;
            if ch.is_newline() {
                newline_end = Some(end);
            }
        }
        (end, newline_end)
    }

    /// `\s+(?!\S)` then `\s`/`\s+` for a run `pos..end` that is not followed by a newline rule
    /// match: all of it at the end of the text, else all but its last character, else the one
    /// character.
    #[inline]
    fn space_tail(self, pos: usize, end: usize) -> usize {
        if end == self.len() {
            return end;
        }
        let last = self.prev_start(end);
        if last > pos {
            last
        } else {
            end
        }
    }

    /// The end of a contraction `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at `i`, or `i`.
    #[inline]
    fn o200k_contraction(self, i: usize) -> usize {
        if self.bytes.get(i) != Some(&b'\'') {
            return i;
        }
        let Some(c1) = self.at(i + 1) else { return i };
        let Some(l1) = char::from_u32(c1.c).map(contraction_letter) else {
            return i;
        };
        let after = i + 1 + c1.len;
        match l1 {
            b's' | b't' | b'm' | b'd' => after,
            b'r' | b'v' | b'l' => {
                let want = if l1 == b'l' { b'l' } else { b'e' };
                match self.at(after) {
                    Some(c2) if char::from_u32(c2.c).map(contraction_letter) == Some(want) => {
                        after + c2.len
                    }
                    _ => i,
                }
            }
            _ => i,
        }
    }

    /// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+` and the contraction, from `p`,
    /// with the backtracking of the greedy star: the upper run gives characters back until a
    /// lower-class character follows.
    #[inline]
    fn o200k_lower_word(self, p: usize, contractions: bool) -> Option<usize> {
        let upper_end = self.run(p, UPPERISH);
        let mut q = upper_end;
        loop {
            if let Some(ch) = self.at(q) {
                if ch.is(LOWERISH) {
                    let end = self.run(q, LOWERISH);
                    return Some(if contractions {
                        self.o200k_contraction(end)
                    } else {
                        end
                    });
                }
            }
            if q == p {
                return None;
            }
            q = self.prev_start(q);
        }
    }

    /// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*` and the contraction, from `p`.
    #[inline]
    fn o200k_upper_word(self, p: usize, contractions: bool) -> Option<usize> {
        let upper_end = self.run(p, UPPERISH);
        if upper_end == p {
            return None;
        }
        let end = self.run(upper_end, LOWERISH);
        Some(if contractions {
            self.o200k_contraction(end)
        } else {
            end
        })
    }

    /// The end of the o200k_base piece that starts at `pos` (< text length).
    pub(crate) fn o200k(self, pos: usize) -> usize {
        self.o200k_like(pos, true, 3)
    }

    /// The end of the Tekken piece that starts at `pos`: o200k_base's pattern without the
    /// contractions and with single digits (tekken.json `config.pattern`).
    pub(crate) fn tekken(self, pos: usize) -> usize {
        self.o200k_like(pos, false, 1)
    }

    /// o200k_base's rules, with or without the contractions and with `max_digits` per number.
    #[inline]
    fn o200k_like(self, pos: usize, contractions: bool, max_digits: usize) -> usize {
        let Some(first) = self.at(pos) else {
            return pos;
        };
        let prefix = first.is_word_prefix();
        if first.is(UPPERISH | LOWERISH) || prefix {
            let after = pos + first.len;
            if prefix {
                if let Some(end) = self.o200k_lower_word(after, contractions) {
                    return end;
                }
            }
            if let Some(end) = self.o200k_lower_word(pos, contractions) {
                return end;
            }
            if prefix {
                if let Some(end) = self.o200k_upper_word(after, contractions) {
                    return end;
                }
            }
            if let Some(end) = self.o200k_upper_word(pos, contractions) {
                return end;
            }
        }
        if first.is(NUMBER) {
            return self.digits_up_to(pos, max_digits);
        }
        if let Some(end) = self.punctuation(pos, first, true) {
            return end;
        }
        // `\s*[\r\n]+`, `\s+(?!\S)`, `\s+`.
        let (end, newline_end) = self.space_run(pos, first);
        match newline_end {
            Some(nl) => nl,
            None => self.space_tail(pos, end),
        }
    }

    /// The end of the piece that starts at `pos` (< text length) under Llama 3's split regex
    /// (Qwen 2/3 have the same with `\p{N}` instead of `\p{N}{1,3}`: `max_digits` 1):
    /// ```text
    /// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    /// ```
    /// cl100k_base's rules up to the punctuation, o200k_base's for whitespace.
    pub(crate) fn llama3(self, pos: usize, max_digits: usize) -> usize {
        self.cl100k_like(pos, max_digits, false)
    }

    /// cl100k_base's rules with `max_digits` per number; `space_to_end_first`: a whitespace run
    /// that reaches the end of the text is one piece before the newline rule applies (cl100k_base's
    /// `\s++$` comes before `\s*[\r\n]`; Llama 3 has no such alternative).
    #[inline]
    fn cl100k_like(self, pos: usize, max_digits: usize, space_to_end_first: bool) -> usize {
        let Some(first) = self.at(pos) else {
            return pos;
        };
        // '(?i:[sdmt]|ll|ve|re)
        if let Some(end) = self.cl100k_contraction(pos, first) {
            return end;
        }
        // [^\r\n\p{L}\p{N}]?+\p{L}++ (possessive: a consumed prefix is never given back)
        if first.is(LETTER) {
            return self.run(pos, LETTER);
        }
        if first.is_word_prefix() {
            let after = pos + first.len;
            if let Some(next) = self.at(after) {
                if next.is(LETTER) {
                    return self.run(after, LETTER);
                }
            }
        }
        if first.is(NUMBER) {
            return self.digits_up_to(pos, max_digits);
        }
        if let Some(end) = self.punctuation(pos, first, false) {
            return end;
        }
        let (end, newline_end) = self.space_run(pos, first);
        if space_to_end_first && end == self.len() {
            return end;
        }
        match newline_end {
            Some(nl) => nl,
            None => self.space_tail(pos, end),
        }
    }

    /// The end of a match of DeepSeek V3's third split regex at `pos`, if one starts there:
    /// ```text
    /// [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
    /// | ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    /// ```
    fn deepseek_match(self, pos: usize) -> Option<usize> {
        let first = self.at(pos)?;
        if first.c < 0x80 && (first.c as u8).is_ascii_punctuation() {
            let mut end = pos + 1;
            while self.bytes.get(end).is_some_and(|b| b.is_ascii_alphabetic()) {
                end += 1;
            }
            if end > pos + 1 {
                return Some(end);
            }
        }
        if !first.is(LETTER | PUNCT | SYMBOL) && !first.is_newline() {
            let end = self.run(pos + first.len, LETTER | MARK);
            if end > pos + first.len {
                return Some(end);
            }
        }
        if first.is(LETTER | MARK) {
            return Some(self.run(pos, LETTER | MARK));
        }
        let start = if first.c == u32::from(b' ') {
            pos + 1
        } else {
            pos
        };
        let end = self.run(start, PUNCT | SYMBOL);
        if end > start {
            return Some(self.newline_run(end, false));
        }
        if first.is(SPACE) {
            let (end, newline_end) = self.space_run(pos, first);
            return Some(match newline_end {
                Some(nl) => nl,
                None => self.space_tail(pos, end),
            });
        }
        None
    }

    /// `'(?i:[sdmt]|ll|ve|re)` at `pos` (whose character is `first`): the end of the match.
    #[inline]
    fn cl100k_contraction(self, pos: usize, first: Ch) -> Option<usize> {
        if first.c != u32::from(b'\'') {
            return None;
        }
        let c1 = self.at(pos + 1)?;
        let l1 = char::from_u32(c1.c).map_or(0, contraction_letter);
        let after = pos + 1 + c1.len;
        match l1 {
            b's' | b'd' | b'm' | b't' => Some(after),
            b'l' | b'v' | b'r' => {
                let want = if l1 == b'l' { b'l' } else { b'e' };
                let c2 = self.at(after)?;
                (char::from_u32(c2.c).map_or(0, contraction_letter) == want)
                    .then_some(after + c2.len)
            }
            _ => None,
        }
    }

    /// The end of the cl100k_base piece that starts at `pos` (< text length).
    pub(crate) fn cl100k(self, pos: usize) -> usize {
        // `\s++$`, `\s*[\r\n]`, `\s+(?!\S)`, `\s` for whitespace.
        self.cl100k_like(pos, 3, true)
    }
}

/// Whether `c` is in DeepSeek V3's CJK split class `[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]`.
#[inline]
fn is_deepseek_cjk(c: u32) -> bool {
    (0x4E00..=0x9FA5).contains(&c) || (0x3040..=0x30FF).contains(&c)
}

/// Calls `f` with each pre-tokenizer piece of `text` under DeepSeek V3's sequence of splits,
/// each applied to every piece of the one before ("Isolated": the matches and the text between
/// them are pieces): `\p{N}{1,3}`, then runs of [`is_deepseek_cjk`] characters, then
/// [`Text::deepseek_match`]'s regex, whose lookahead and end of text are the piece's end.
pub(crate) fn deepseek_v3_pieces(text: &str, mut f: impl FnMut(&str)) {
    let t = Text::new(text);
    let (mut pos, mut gap) = (0, 0);
    while let Some(ch) = t.at(pos) {
        if ch.is(NUMBER) {
            deepseek_cjk_split(&text[gap..pos], &mut f);
            let end = t.digits(pos);
            // The third regex matches nothing in a run of digits: the run stays one piece.
            f(&text[pos..end]);
            pos = end;
            gap = end;
        } else {
            pos += ch.len;
        }
    }
    deepseek_cjk_split(&text[gap..], &mut f);
}

/// The second split of [`deepseek_v3_pieces`], then the third on each part.
fn deepseek_cjk_split(text: &str, f: &mut impl FnMut(&str)) {
    let t = Text::new(text);
    let (mut pos, mut start) = (0, 0);
    while let Some(ch) = t.at(pos) {
        if is_deepseek_cjk(ch.c) {
            let mut end = pos + ch.len;
            while let Some(next) = t.at(end).filter(|n| is_deepseek_cjk(n.c)) {
                end += next.len;
            }
            deepseek_regex_split(&text[start..pos], f);
            deepseek_regex_split(&text[pos..end], f);
            pos = end;
            start = end;
        } else {
            pos += ch.len;
        }
    }
    deepseek_regex_split(&text[start..], f);
}

/// The third split of [`deepseek_v3_pieces`]: each match, and each stretch that no match covers.
fn deepseek_regex_split(text: &str, f: &mut impl FnMut(&str)) {
    let t = Text::new(text);
    let (mut pos, mut gap) = (0, 0);
    while let Some(ch) = t.at(pos) {
        match t.deepseek_match(pos) {
            Some(end) => {
                if gap < pos {
                    f(&text[gap..pos]);
                }
                f(&text[pos..end]);
                pos = end;
                gap = end;
            }
            None => pos += ch.len,
        }
    }
    if gap < text.len() {
        f(&text[gap..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str, o200k: bool) -> Vec<&str> {
        let t = Text::new(text);
        let mut pieces = Vec::new();
        let mut pos = 0;
        while pos < text.len() {
            let end = if o200k { t.o200k(pos) } else { t.cl100k(pos) };
            assert!(end > pos, "no progress at {pos} in {text:?}");
            pieces.push(&text[pos..end]);
            pos = end;
        }
        pieces
    }

    #[test]
    fn classes_come_from_the_unicode_tables() {
        assert_eq!(class_of('a' as u32), LETTER | LOWERISH);
        assert_eq!(class_of('A' as u32), LETTER | UPPERISH);
        assert_eq!(class_of('中' as u32), LETTER | UPPERISH | LOWERISH); // Lo
        assert_eq!(class_of('\u{301}' as u32), UPPERISH | LOWERISH | MARK); // Mn
        assert_eq!(class_of('7' as u32), NUMBER);
        assert_eq!(class_of('Ⅻ' as u32) & NUMBER, NUMBER); // Nl
        assert_eq!(class_of('\u{3000}' as u32), SPACE);
        assert_eq!(class_of('\u{85}' as u32), SPACE);
        assert_eq!(class_of('!' as u32), PUNCT);
        assert_eq!(class_of('+' as u32), SYMBOL);
        assert_eq!(class_of('・' as u32), PUNCT);
        assert_eq!(contraction_letter('ſ'), b's');
        assert_eq!(contraction_letter('S'), b's');
        assert_eq!(contraction_letter('x'), 0);
    }

    #[test]
    fn known_splits() {
        assert_eq!(
            split("Hello world's  end\n\n  x", false),
            ["Hello", " world", "'s", " ", " end", "\n\n", " ", " x"]
        );
        assert_eq!(
            split("Hello world's  end\n\n  x", true),
            ["Hello", " world's", " ", " end", "\n\n", " ", " x"]
        );
        assert_eq!(split(" don't", true), [" don't"]);
        assert_eq!(split(" DON'T", true), [" DON'T"]);
        assert_eq!(split("12345 678", false), ["123", "45", " ", "678"]);
        assert_eq!(split("a  ", true), ["a", "  "]);
        assert_eq!(split("x/**/\ny", true), ["x", "/**/\n", "y"]);
    }
}
