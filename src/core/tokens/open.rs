//! The open model families: Llama 3, Qwen 3 (and 2.5), DeepSeek V3 / R1, Gemma 3 and Mistral's
//! Tekken, counted exactly like their reference tokenizers (Hugging Face `tokenizers` on the
//! family's `tokenizer.json`; for Tekken, tiktoken on `tekken.json` as mistral-common runs it).
//!
//! The pipeline of a Hugging Face tokenizer, in order:
//! 1. added tokens (`added_tokens` of tokenizer.json: `<|im_start|>`, `<think>`, Gemma's runs of
//!    newlines…) are found in the raw text, leftmost-longest, and count one token each; the text
//!    between them goes on;
//! 2. the normalizer: NFC for Qwen, `' '` → `'▁'` for Gemma, nothing for the others;
//! 3. the pre-tokenizer splits it into pieces ([`super::pretokenize`]; Gemma has none: after its
//!    normalizer there is no space left to split on, the whole stretch is one word);
//! 4. the byte-pair merge of each piece, from its bytes (byte-level families) or its characters
//!    (Gemma, whose unknown characters fall back to one token per UTF-8 byte).
//!
//! The merge: Hugging Face's BPE merges a *pair* of adjacent symbols when that pair is in the
//! `merges` list, lowest index first (leftmost on ties). The index is the merge's rank, not the
//! token id, and the pair matters, not only the merged text: `"ab"+"c"` may be a merge while
//! `"a"+"bc"` is not. The tables (`build.rs`) keep, per token, the merges that make it as (rank,
//! byte length of the left part): a pair at `s..m..e` of a piece is found by looking the bytes
//! `s..e` up (a token id) and then the merge of that token whose left part is `m - s` bytes long.
//! Llama 3 sets `ignore_merges`: a piece that is a token is that one token. Tekken is tiktoken:
//! the pair merges when its text is a token, and the rank is that token's id.
//!
//! Performance choices as in [`super::vocab`]: the tables are static (nothing is built at
//! start-up), the merge is a scan over a small vector for short pieces and a heap for long ones.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::OnceLock;

use super::pretokenize::{deepseek_v3_pieces, Text};
use super::table_hash::hash_bytes;

/// How a family merges.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Hugging Face BPE: a pair merges when it is in `merges`, rank = its index there.
    /// `ignore_merges`: a piece that is a token is not merged (Llama 3).
    Hf { ignore_merges: bool },
    /// tiktoken: a pair merges when its text is a token, rank = that token's id.
    Tiktoken,
}

/// How the text is split before the merge.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Split {
    /// Llama 3's regex with at most this many digits per number (Qwen: 1).
    Llama3(usize),
    /// DeepSeek V3's three splits.
    DeepseekV3,
    /// The whole stretch is one word; spaces become `▁` first (Gemma 3).
    Sentencepiece,
    /// Tekken's regex.
    Tekken,
}

/// One open family's tables (see `build.rs`, `write_open_family`) and rules.
pub(crate) struct Family {
    /// Token bytes in id order, and one length per id.
    pool: &'static [u8],
    lens: &'static [u8],
    /// The id each merge makes, in rank order: zigzag deltas in three byte planes.
    merge_ids: &'static [u8],
    /// The byte length of each merge's left part.
    merge_left: &'static [u8],
    added: &'static [u8],
    added_slots: &'static [u8],
    added_lens: &'static [u8],
    rule: Rule,
    split: Split,
    /// NFC before the split (Qwen).
    nfc: bool,
    /// The family's index in the word cache.
    index: usize,
    /// The lookup tables, built from the above on first use ([`Tables::build`]).
    tables: OnceLock<Tables>,
}

macro_rules! family {
    ($name:literal, $index:expr, $rule:expr, $split:expr, $nfc:expr) => {
        Family {
            pool: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".open.pool")),
            lens: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".open.lens")),
            merge_ids: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".open.merge_ids")),
            merge_left: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".open.merge_left")),
            added: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".open.added")),
            added_slots: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".open.added_slots")),
            added_lens: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".open.added_lens")),
            rule: $rule,
            split: $split,
            nfc: $nfc,
            index: $index,
            tables: OnceLock::new(),
        }
    };
}

pub(crate) static LLAMA3: Family = family!(
    "llama3",
    0,
    Rule::Hf {
        ignore_merges: true
    },
    Split::Llama3(3),
    false
);
pub(crate) static QWEN3: Family = family!(
    "qwen3",
    1,
    Rule::Hf {
        ignore_merges: false
    },
    Split::Llama3(1),
    true
);
pub(crate) static DEEPSEEK_V3: Family = family!(
    "deepseek_v3",
    2,
    Rule::Hf {
        ignore_merges: false
    },
    Split::DeepseekV3,
    false
);
pub(crate) static GEMMA3: Family = family!(
    "gemma3",
    3,
    Rule::Hf {
        ignore_merges: false
    },
    Split::Sentencepiece,
    false
);
pub(crate) static TEKKEN: Family = family!("tekken", 4, Rule::Tiktoken, Split::Tekken, false);

/// Words up to this many bytes have their merge cached ([`WORD_CACHE`]).
const CACHED_WORD: usize = 23;
/// Entries of a family's word cache (a power of two).
const CACHE_ENTRIES: usize = 4096;

/// A cached merge: the word and its token ends.
#[derive(Clone, Copy)]
struct CacheEntry {
    len: u8,
    key: [u8; CACHED_WORD],
    n: u8,
    ends: [u8; CACHED_WORD],
}

impl CacheEntry {
    const EMPTY: CacheEntry = CacheEntry {
        len: u8::MAX,
        key: [0; CACHED_WORD],
        n: 0,
        ends: [0; CACHED_WORD],
    };
}

thread_local! {
    /// Per family (its index), a direct-mapped cache of the merges of short words, as Hugging
    /// Face's BPE keeps one: a word's tokens depend on its bytes only, and common words recur.
    /// Bounded (4,096 entries of 48 bytes per family); a collision overwrites.
    static WORD_CACHE: RefCell<Vec<Vec<CacheEntry>>> = const { RefCell::new(Vec::new()) };
}

/// Not a merge: orders after every rank.
const NONE: u32 = u32::MAX;

/// Pieces at least this long are merged with the heap.
const LONG_PIECE: usize = 16;

#[inline]
fn u32_at(table: &[u8], i: usize) -> u32 {
    let b = &table[i * 4..i * 4 + 4];
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Reusable buffers of the merge.
#[derive(Default)]
pub(crate) struct OpenScratch {
    /// Symbol starts and the end (short merge), or the initial symbol starts (long merge).
    starts: Vec<usize>,
    ranks: Vec<u32>,
    ends: Vec<usize>,
    prevs: Vec<usize>,
    heap: BinaryHeap<Reverse<u64>>,
    /// The normalized text of a stretch.
    text: String,
}

/// A family's lookup tables, built once per isolate on the family's first use, from the compact
/// static form (the worker's gzip holds ~0.6–1.6 MB per family instead of 1.6–4 MB of ready
/// tables): token offsets, an open-addressing hash of the tokens, and the merges by the token
/// they make.
struct Tables {
    pool: &'static [u8],
    /// `offsets[id]..offsets[id + 1]` is the token's bytes in the pool.
    offsets: Vec<u32>,
    /// Token ids by `hash_bytes` (linear probing), `u32::MAX` when empty.
    slots: Vec<u32>,
    mask: usize,
    /// `mentries[mstart[id]..mstart[id + 1]]`: the merges that make the token `id`, as rank in
    /// the low 24 bits and the byte length of the left part above.
    mstart: Vec<u32>,
    mentries: Vec<u32>,
    /// The rank of merging two one-byte symbols `a`, `b` at `a << 8 | b` ([`NONE`] when they do
    /// not merge): the first merge of every piece, read without hashing.
    byte_pairs: Vec<u32>,
    rule: Rule,
    /// Gemma: the merge starts from characters (with byte fallback), not bytes.
    chars: bool,
    /// The family's index in [`WORD_CACHE`].
    family: usize,
}

impl Tables {
    fn build(f: &Family) -> Tables {
        let n = f.lens.len();
        let mut offsets = Vec::with_capacity(n + 1);
        let mut at = 0u32;
        for &len in f.lens {
            offsets.push(at);
            at += u32::from(len);
        }
        offsets.push(at);

        let mask = (n * 3 / 2).next_power_of_two() - 1;
        let mut slots = vec![u32::MAX; mask + 1];
        for id in 0..n {
            let token = &f.pool[offsets[id] as usize..offsets[id + 1] as usize];
            if token.is_empty() {
                continue;
            }
            let mut i = hash_bytes(token) as usize & mask;
            while slots[i] != u32::MAX {
                i = (i + 1) & mask;
            }
            slots[i] = id as u32;
        }

        // The merges by the token they make (a counting sort of the rank-ordered ids).
        let m = f.merge_left.len();
        let mut made = Vec::with_capacity(m);
        let mut previous = 0i64;
        for rank in 0..m {
            let zigzag = u64::from(f.merge_ids[rank])
                | u64::from(f.merge_ids[m + rank]) << 8
                | u64::from(f.merge_ids[2 * m + rank]) << 16;
            let delta = (zigzag >> 1) as i64 ^ -((zigzag & 1) as i64);
            previous += delta;
            made.push(previous as usize);
        }
        let mut mstart = vec![0u32; n + 1];
        for &id in &made {
            mstart[id + 1] += 1;
        }
        for id in 0..n {
            mstart[id + 1] += mstart[id];
        }
        let mut fill: Vec<u32> = mstart[..n].to_vec();
        let mut mentries = vec![0u32; m];
        for (rank, &id) in made.iter().enumerate() {
            mentries[fill[id] as usize] = rank as u32 | u32::from(f.merge_left[rank]) << 24;
            fill[id] += 1;
        }
        let mut tables = Tables {
            pool: f.pool,
            offsets,
            slots,
            mask,
            mstart,
            mentries,
            byte_pairs: Vec::new(),
            rule: f.rule,
            chars: f.split == Split::Sentencepiece,
            family: f.index,
        };
        let byte_pairs: Vec<u32> = (0..=u16::MAX)
            .map(|ab| {
                let [a, b] = ab.to_be_bytes();
                tables.pair_rank_hashed(&[a, b], 0, 1, 2)
            })
            .collect();
        tables.byte_pairs = byte_pairs;
        tables
    }

    /// The id of the token whose bytes are `key`.
    #[inline]
    fn id(&self, key: &[u8]) -> Option<u32> {
        let mut i = hash_bytes(key) as usize & self.mask;
        loop {
            let id = self.slots[i];
            if id == u32::MAX {
                return None;
            }
            let (start, end) = (
                self.offsets[id as usize] as usize,
                self.offsets[id as usize + 1] as usize,
            );
            if &self.pool[start..end] == key {
                return Some(id);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The rank of merging the symbols `word[s..m]` and `word[m..e]`, or [`NONE`].
    #[inline]
    fn pair_rank(&self, word: &[u8], s: usize, m: usize, e: usize) -> u32 {
        if e - s == 2 && m - s == 1 {
            return self.byte_pairs[usize::from(word[s]) << 8 | usize::from(word[m])];
        }
        self.pair_rank_hashed(word, s, m, e)
    }

    /// [`Tables::pair_rank`] through the hash.
    #[inline]
    fn pair_rank_hashed(&self, word: &[u8], s: usize, m: usize, e: usize) -> u32 {
        let Some(id) = self.id(&word[s..e]) else {
            return NONE;
        };
        match self.rule {
            Rule::Tiktoken => id,
            Rule::Hf { .. } => {
                let (from, to) = (
                    self.mstart[id as usize] as usize,
                    self.mstart[id as usize + 1] as usize,
                );
                let left = (m - s) as u32;
                self.mentries[from..to]
                    .iter()
                    .find(|&&entry| entry >> 24 == left)
                    .map_or(NONE, |&entry| entry & 0xFF_FFFF)
            }
        }
    }

    /// Merges the word `text[s..e]` and calls `f` with each token's end (an offset in `text`).
    fn word(
        &self,
        text: &[u8],
        s: usize,
        e: usize,
        scratch: &mut OpenScratch,
        f: &mut impl FnMut(usize),
    ) {
        let word = &text[s..e];
        if word.len() <= 1 {
            if !word.is_empty() {
                f(e);
            }
            return;
        }
        let whole_is_token = match self.rule {
            Rule::Hf { ignore_merges } => ignore_merges,
            Rule::Tiktoken => true,
        };
        if whole_is_token && self.id(word).is_some() {
            f(e);
            return;
        }
        if word.len() <= CACHED_WORD {
            let home = hash_bytes(word) as usize & (CACHE_ENTRIES - 1);
            let hit = WORD_CACHE.with(|cache| {
                let cache = cache.borrow();
                let entry = cache.get(self.family)?.get(home)?;
                (usize::from(entry.len) == word.len() && entry.key[..word.len()] == *word)
                    .then_some(*entry)
            });
            if let Some(entry) = hit {
                for &end in &entry.ends[..usize::from(entry.n)] {
                    f(s + usize::from(end));
                }
                return;
            }
            let mut entry = CacheEntry {
                len: word.len() as u8,
                key: [0; CACHED_WORD],
                n: 0,
                ends: [0; CACHED_WORD],
            };
            entry.key[..word.len()].copy_from_slice(word);
            self.merge(word, scratch, &mut |end| {
                entry.ends[usize::from(entry.n)] = end as u8;
                entry.n += 1;
            });
            WORD_CACHE.with(|cache| {
                let mut cache = cache.borrow_mut();
                if cache.len() <= self.family {
                    cache.resize_with(self.family + 1, Vec::new);
                }
                let table = &mut cache[self.family];
                if table.is_empty() {
                    table.resize(CACHE_ENTRIES, CacheEntry::EMPTY);
                }
                table[home] = entry;
            });
            for &end in &entry.ends[..usize::from(entry.n)] {
                f(s + usize::from(end));
            }
            return;
        }
        self.merge(word, scratch, &mut |end| f(s + end));
    }

    /// The merge of `word` (two bytes or more): calls `f` with each token's end in it.
    fn merge(&self, word: &[u8], scratch: &mut OpenScratch, f: &mut impl FnMut(usize)) {
        self.initial_symbols(word, &mut scratch.starts);
        if word.len() >= LONG_PIECE {
            self.merge_long(word, scratch);
            let mut p = 0;
            while p < word.len() {
                p = scratch.ends[p];
                f(p);
            }
        } else {
            self.merge_short(word, scratch);
            for &end in &scratch.starts[1..] {
                f(end);
            }
        }
    }

    /// The starts of the symbols the merge begins with, and the word's end: every byte for the
    /// byte-level families; for Gemma every character that is a token, and every byte of one
    /// that is not (byte fallback: `<0xNN>` tokens, which no merge makes or uses).
    fn initial_symbols(&self, word: &[u8], starts: &mut Vec<usize>) {
        starts.clear();
        if !self.chars {
            starts.extend(0..=word.len());
            return;
        }
        let mut i = 0;
        while i < word.len() {
            let len = utf8_len(word[i]).min(word.len() - i);
            starts.push(i);
            if self.id(&word[i..i + len]).is_none() {
                starts.extend(i + 1..i + len);
            }
            i += len;
        }
        starts.push(word.len());
    }

    /// The merge over a vector of symbol starts (`scratch.starts`, ending with the word's end):
    /// quadratic, fastest for short words. The result is in `scratch.starts`.
    fn merge_short(&self, word: &[u8], scratch: &mut OpenScratch) {
        let (starts, ranks) = (&mut scratch.starts, &mut scratch.ranks);
        ranks.clear();
        // ranks[i]: merging symbol i with symbol i + 1.
        for i in 0..starts.len() - 1 {
            ranks.push(match starts.get(i + 2) {
                Some(&e) => self.pair_rank(word, starts[i], starts[i + 1], e),
                None => NONE,
            });
        }
        loop {
            let (mut best, mut i) = (NONE, 0);
            for (j, &rank) in ranks.iter().enumerate() {
                if rank < best {
                    best = rank;
                    i = j;
                }
            }
            if best == NONE {
                break;
            }
            starts.remove(i + 1);
            ranks.remove(i + 1);
            if i > 0 {
                ranks[i - 1] = self.pair_rank(word, starts[i - 1], starts[i], starts[i + 1]);
            }
            ranks[i] = match starts.get(i + 2) {
                Some(&e) => self.pair_rank(word, starts[i], starts[i + 1], e),
                None => NONE,
            };
        }
    }

    /// The same merge with a heap and a linked list of symbols indexed by start byte; the result
    /// is a chain in `scratch.ends` from 0.
    fn merge_long(&self, word: &[u8], scratch: &mut OpenScratch) {
        let n = word.len();
        let OpenScratch {
            starts,
            ranks,
            ends,
            prevs,
            heap,
            ..
        } = scratch;
        ends.clear();
        ends.resize(n + 1, n);
        prevs.clear();
        prevs.resize(n + 1, usize::MAX);
        ranks.clear();
        ranks.resize(n + 1, NONE);
        for w in starts.windows(2) {
            ends[w[0]] = w[1];
            if w[1] < n {
                prevs[w[1]] = w[0];
            }
        }
        let mut keys = std::mem::take(heap).into_vec();
        keys.clear();
        for w in starts.windows(3) {
            let r = self.pair_rank(word, w[0], w[1], w[2]);
            ranks[w[0]] = r;
            if r != NONE {
                keys.push(Reverse(u64::from(r) << 32 | w[0] as u64));
            }
        }
        *heap = BinaryHeap::from(keys);
        while let Some(Reverse(key)) = heap.pop() {
            let (rank, s) = ((key >> 32) as u32, key as u32 as usize);
            if ranks[s] != rank {
                continue; // stale: this symbol changed or was absorbed since
            }
            let right = ends[s];
            let right_end = ends[right];
            ends[s] = right_end;
            ranks[right] = NONE;
            if right_end < n {
                prevs[right_end] = s;
                let r = self.pair_rank(word, s, right_end, ends[right_end]);
                ranks[s] = r;
                if r != NONE {
                    heap.push(Reverse(u64::from(r) << 32 | s as u64));
                }
            } else {
                ranks[s] = NONE;
            }
            if s > 0 {
                let p = prevs[s];
                let r = self.pair_rank(word, p, s, right_end);
                ranks[p] = r;
                if r != NONE {
                    heap.push(Reverse(u64::from(r) << 32 | p as u64));
                }
            }
        }
    }
}

impl Family {
    /// The lookup tables, built on first use.
    fn tables(&self) -> &Tables {
        self.tables.get_or_init(|| Tables::build(self))
    }

    /// The tokens of `text`: added tokens, then the normalizer, the split and the merge.
    pub(crate) fn count(&self, text: &str, scratch: &mut OpenScratch) -> u64 {
        let mut total = 0u64;
        self.for_each_token_end(text, scratch, |_| total += 1);
        total
    }

    /// Calls `f` with the end of each token of `text` (a byte offset in `text`, in order). A
    /// token of normalized text that is not in `text` (NFC) ends at the end of its stretch.
    pub(crate) fn for_each_token_end(
        &self,
        text: &str,
        scratch: &mut OpenScratch,
        mut f: impl FnMut(usize),
    ) {
        let mut start = 0;
        let mut pos = 0;
        let bytes = text.as_bytes();
        while pos < bytes.len() {
            match self.added_at(bytes, pos) {
                Some(len) => {
                    self.stretch(text, start, pos, scratch, &mut f);
                    pos += len;
                    f(pos);
                    start = pos;
                }
                None => pos += 1,
            }
        }
        self.stretch(text, start, text.len(), scratch, &mut f);
    }

    /// The length of the longest added token at `bytes[pos..]`, if any.
    #[inline]
    fn added_at(&self, bytes: &[u8], pos: usize) -> Option<usize> {
        let first = usize::from(bytes[pos]);
        let b = &self.added_lens[first * 16..first * 16 + 16];
        let mut lens = u128::from_le_bytes(b.try_into().ok()?);
        while lens != 0 {
            let len = 128 - lens.leading_zeros() as usize;
            lens &= !(1u128 << (len - 1));
            if let Some(key) = bytes.get(pos..pos + len) {
                if self.is_added(key) {
                    return Some(len);
                }
            }
        }
        None
    }

    fn is_added(&self, key: &[u8]) -> bool {
        let mask = self.added_slots.len() / 4 - 1;
        let mut i = hash_bytes(key) as usize & mask;
        loop {
            let at = u32_at(self.added_slots, i);
            if at == u32::MAX {
                return false;
            }
            let at = at as usize;
            let len = usize::from(self.added[at]);
            if &self.added[at + 1..at + 1 + len] == key {
                return true;
            }
            i = (i + 1) & mask;
        }
    }

    /// The tokens of `text[start..end]`, a stretch without added tokens.
    fn stretch(
        &self,
        text: &str,
        start: usize,
        end: usize,
        scratch: &mut OpenScratch,
        f: &mut impl FnMut(usize),
    ) {
        if start >= end {
            return;
        }
        let tables = self.tables();
        let raw = &text[start..end];
        let mut normalized = std::mem::take(&mut scratch.text);
        normalized.clear();
        let (work, exact_offsets) = match self.split {
            Split::Sentencepiece => {
                for c in raw.chars() {
                    normalized.push(if c == ' ' { '▁' } else { c });
                }
                (normalized.as_str(), false)
            }
            _ if self.nfc && !is_nfc(raw) => {
                normalized.extend(unicode_normalization::UnicodeNormalization::nfc(raw));
                (normalized.as_str(), false)
            }
            _ => (raw, true),
        };
        // Token ends in `work`; mapped back to `text` when `work` is `raw` itself.
        let mut emit = |e: usize| f(if exact_offsets { start + e } else { end });
        let base = work.as_ptr() as usize;
        match self.split {
            Split::Llama3(digits) => {
                let t = Text::new(work);
                let mut pos = 0;
                while pos < work.len() {
                    let e = t.llama3(pos, digits);
                    tables.word(work.as_bytes(), pos, e, scratch, &mut emit);
                    pos = e;
                }
            }
            Split::Tekken => {
                let t = Text::new(work);
                let mut pos = 0;
                while pos < work.len() {
                    let e = t.tekken(pos);
                    tables.word(work.as_bytes(), pos, e, scratch, &mut emit);
                    pos = e;
                }
            }
            Split::DeepseekV3 => deepseek_v3_pieces(work, |piece| {
                let s = piece.as_ptr() as usize - base;
                tables.word(work.as_bytes(), s, s + piece.len(), scratch, &mut emit);
            }),
            Split::Sentencepiece => tables.word(work.as_bytes(), 0, work.len(), scratch, &mut emit),
        }
        scratch.text = normalized;
    }
}

/// The UTF-8 length of a character from its first byte.
#[inline]
fn utf8_len(b: u8) -> usize {
    match b {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// True when `text` is already in NFC (quick check; "maybe" counts as no).
#[inline]
fn is_nfc(text: &str) -> bool {
    text.is_ascii()
        || unicode_normalization::is_nfc_quick(text.chars())
            == unicode_normalization::IsNormalized::Yes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(f: &Family, text: &str) -> u64 {
        f.count(text, &mut OpenScratch::default())
    }

    #[test]
    fn every_byte_and_known_pieces_are_tokens() {
        for f in [&LLAMA3, &QWEN3, &DEEPSEEK_V3, &TEKKEN] {
            for b in 0..=255u8 {
                assert!(f.tables().id(&[b]).is_some(), "byte {b} is a token");
            }
            assert!(f.tables().id(b" the").is_some());
        }
        assert!(GEMMA3.tables().id("▁the".as_bytes()).is_some());
    }

    #[test]
    fn short_and_long_merges_agree() {
        let mut scratch = OpenScratch::default();
        for f in [&LLAMA3, &QWEN3, &DEEPSEEK_V3, &GEMMA3, &TEKKEN] {
            let f = f.tables();
            for word in [
                "x".repeat(40) + &"ab".repeat(30),
                "antidisestablishmentarianism".repeat(3),
                "▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁".to_string(),
                "中华人民共和国成立于一九四九年十月一日".to_string(),
            ] {
                let w = word.as_bytes();
                f.initial_symbols(w, &mut scratch.starts);
                f.merge_long(w, &mut scratch);
                let mut long = Vec::new();
                let mut p = 0;
                while p < w.len() {
                    p = scratch.ends[p];
                    long.push(p);
                }
                f.initial_symbols(w, &mut scratch.starts);
                f.merge_short(w, &mut scratch);
                assert_eq!(long, scratch.starts[1..].to_vec(), "{word}");
            }
        }
    }

    #[test]
    fn added_tokens_count_once() {
        assert_eq!(count(&QWEN3, "<|im_start|>"), 1);
        assert_eq!(count(&QWEN3, "<think>"), 1);
        assert_eq!(count(&LLAMA3, "<|begin_of_text|>"), 1);
        assert_eq!(count(&GEMMA3, "<start_of_turn>"), 1);
        assert_eq!(count(&TEKKEN, "<s>"), 3); // tiktoken: no added tokens in the text
        assert_eq!(count(&QWEN3, ""), 0);
    }
}
