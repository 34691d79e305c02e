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
//! Performance choices: the compact tables are static and the lookup tables are built on the
//! family's first use ([`Tables`]); the merge works on token ids, with a pair table keyed by the
//! two ids (Hugging Face's `merges`), a memo of the pairs met and a direct table of the byte pairs
//! in front of it, so that no byte string is hashed during a merge; short words' merges are
//! cached; the merge is a scan over a small vector for short pieces and a heap for long ones;
//! Gemma's stretch is cut before runs of `▁` that no token crosses ([`Family::split_and_merge`]).
//! Chinese: in the byte-level families a three-byte character starts as one symbol, its token,
//! where `build.rs` proved that nothing can merge with its bytes before they are one token
//! ([`Tables::initial_bytes_and_chars`]): a third of the symbols and two merges fewer per
//! character; Gemma reads its characters' ids from a direct table by code point.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use super::pretokenize::{deepseek_v3_pieces, Text};
use super::table_hash::{free_slot, hash_bytes, probe, Probe};

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
    /// Byte-level families (Tekken too): per three-byte character (by code point), when the
    /// merge may take it as one symbol from the start (`build.rs`, `char3_flags`); empty for
    /// Gemma.
    char3: &'static [u8],
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
            char3: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".open.char3")),
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

#[inline]
fn u32_at(table: &[u8], i: usize) -> u32 {
    let b = &table[i * 4..i * 4 + 4];
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Words up to this many bytes have their merge cached ([`FamilyState::words`]).
const CACHED_WORD: usize = 23;
/// Entries of a family's word cache (a power of two).
const CACHE_ENTRIES: usize = 4096;
/// Entries of a family's pair memo (a power of two).
const MEMO_ENTRIES: usize = 1 << 15;

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

/// What an isolate remembers per family between counts (bounded): the merges of short words,
/// and the ranks of the symbol pairs it has looked up.
#[derive(Default)]
struct FamilyState {
    /// A direct-mapped cache of the merges of short words, as Hugging Face's BPE keeps one: a
    /// word's tokens depend on its bytes only, and common words recur. 4,096 entries of 48
    /// bytes; a collision overwrites.
    words: Vec<CacheEntry>,
    /// A direct-mapped memo of [`Tables::pair`] by the pair of ids (`pair_key << 24 | rank`, all
    /// ones when empty; 256 KiB): the pairs a text meets recur (Zipf), and a hit is one read of
    /// a table that stays in cache instead of a miss in the pair table (2–8 MB) or, for Tekken,
    /// hashing and comparing bytes.
    memo: Vec<u64>,
}

thread_local! {
    /// Per family (its index).
    static STATE: RefCell<Vec<FamilyState>> = const { RefCell::new(Vec::new()) };
}

/// Not a merge: orders after every rank.
const NONE: u32 = u32::MAX;
/// Bits of a token id in a pair key (`build.rs`-independent: checked in [`Tables::build`]).
const ID_BITS: u32 = 20;
/// The id of a symbol that never merges (Gemma's byte fallback); no token has it.
const NO_MERGE: u32 = (1 << ID_BITS) - 1;
/// A rank in the low 24 bits of a pair slot; all ones there is "no merge" (Tekken's memo).
const RANK_MASK: u64 = 0xFF_FFFF;

/// `char3` flags (`build.rs`): the character merges to one token before anything else touches
/// its bytes, given the class ([`byte_class`]) of the byte before it (`CHAR3_LEFT << class`) and
/// of the byte after it (`CHAR3_RIGHT << class`); no constraint at a word's edge.
const CHAR3_WHOLE: u32 = 1;
const CHAR3_LEFT: u32 = 1 << 1;
const CHAR3_RIGHT: u32 = 1 << 4;

/// 0: a UTF-8 continuation byte, 1: a lead byte, 2: ASCII (as `build.rs`).
#[inline]
fn byte_class(b: u8) -> u32 {
    match b {
        0x80..=0xBF => 0,
        0xC0..=0xFF => 1,
        _ => 2,
    }
}

/// Words of at least this many initial symbols are merged with the heap; shorter ones with the
/// scan, which costs less up to about this size (a Chinese clause, whose characters are mostly
/// symbols from the start: [`Tables::initial_bytes_and_chars`], stays below it).
const LONG_PIECE: usize = 24;

/// The key of the pair of symbols `a`, `b` (token ids).
#[inline]
fn pair_key(a: u32, b: u32) -> u64 {
    u64::from(a) << ID_BITS | u64::from(b)
}

/// A home slot for a pair key: the high bits of a multiplicative hash.
#[inline]
fn pair_home(key: u64, shift: u32) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
}

/// Reusable buffers of the merge.
#[derive(Default)]
pub(crate) struct OpenScratch {
    /// Symbol starts and the end (short merge), or the initial symbol starts (long merge).
    starts: Vec<usize>,
    /// The symbols' token ids (by index in the short merge, by start in the long one).
    ids: Vec<u32>,
    ranks: Vec<u32>,
    ends: Vec<usize>,
    prevs: Vec<usize>,
    heap: BinaryHeap<Reverse<u64>>,
    /// The normalized text of a stretch.
    text: String,
}

/// Hugging Face rule: the merges by [`pair_key`] (linear probing from [`pair_home`]), as
/// `key << 24 | rank`; all ones when empty.
struct PairTable {
    slots: Vec<u64>,
    shift: u32,
}

/// Pair lookups by bytes after which a family builds its pair table (Gemma 3: ~200 ms natively
/// on a loaded machine, more in wasm): an isolate that counts little never pays for it; one that
/// counts much pays once, in a request that has already counted a long text.
const PAIR_TABLE_AFTER: u32 = 1 << 17;

/// A family's lookup tables, built once per isolate on the family's first use, from the compact
/// static form (the worker's gzip holds ~0.6–1.6 MB per family instead of 1.6–4 MB of ready
/// tables): token offsets, an open-addressing hash of the tokens, and the merges by pair of ids.
///
/// Performance: the merge works on token ids, not bytes. Each symbol carries its id, so the rank
/// of merging two neighbours is one probe of an integer hash keyed by the two ids (Hugging
/// Face's own `merges` map), about half full so that a miss — most lookups — stops at once; no
/// byte string is hashed or compared. Tekken's merges are tiktoken's (a pair merges when its
/// bytes are a token), which has no pair table to build; there a bounded memo by pair of ids
/// answers the pairs met before, and the bytes are looked up otherwise.
struct Tables {
    pool: &'static [u8],
    /// `offsets[id]..offsets[id + 1]` is the token's bytes in the pool.
    offsets: Vec<u32>,
    /// Token ids by `hash_bytes` (linear probing), `u32::MAX` when empty.
    slots: Vec<u32>,
    mask: usize,
    /// Hugging Face rule: the id of the token that the merge of each rank makes.
    made: Vec<u32>,
    /// Hugging Face rule: the lowest rank of a merge that makes each token ([`NONE`] when none
    /// does), and the byte length of its left part (`merge_left`): a pair is looked up by its
    /// merged bytes (one hashed lookup) until the pair table is built.
    rank_of: Vec<u32>,
    merge_left: &'static [u8],
    /// The other merges that make a token already made by a lower rank (a different split of the
    /// same bytes), as `(id, left length, rank)`, sorted.
    more_ranks: Vec<(u32, u8, u32)>,
    /// Hugging Face rule: the pair table, built once this family has looked up
    /// [`PAIR_TABLE_AFTER`] pairs the slower way ([`Tables::pair_uncached`]).
    pairs: OnceLock<PairTable>,
    /// Pairs looked up by bytes so far (counts up to [`PAIR_TABLE_AFTER`]).
    byte_lookups: AtomicU32,
    /// The id of each one-byte token ([`NO_MERGE`] when there is none).
    byte_ids: [u32; 256],
    /// Byte-level families: per three-byte character (by code point), its token's id and its
    /// `char3` flags above [`ID_BITS`] (0: always merged from its bytes); empty for the others.
    char3: Vec<u32>,
    /// Gemma: the id of each character of the Basic Multilingual Plane that is a token, by code
    /// point (`u32::MAX` when it is not), so that the initial symbols need no hashing.
    char_ids: Vec<u32>,
    /// The rank of merging two one-byte symbols `a`, `b` at `a << 8 | b` ([`NONE`] when they do
    /// not merge): the first merges of every piece, read without hashing from 256 KiB that stay
    /// in cache.
    byte_pairs: Vec<u32>,
    rule: Rule,
    /// Gemma: the merge starts from characters (with byte fallback), not bytes.
    chars: bool,
    /// Gemma: the characters that some token has right before a `▁` (other than `▁`): the
    /// stretch is cut before each run of `▁` unless it follows one of these (see
    /// [`Family::stretch`]).
    glue_before_space: Vec<char>,
}

impl PairTable {
    /// The rank of the merge of the pair `key`, or [`NONE`].
    #[inline]
    fn rank(&self, key: u64) -> u32 {
        let Some(mask) = self.slots.len().checked_sub(1) else {
            return NONE;
        };
        probe(pair_home(key, self.shift), mask, |i, _| {
            match self.slots[i] {
                u64::MAX => Probe::Absent,
                slot if slot >> 24 == key => Probe::Found((slot & RANK_MASK) as u32),
                _ => Probe::Next,
            }
        })
        .unwrap_or(NONE)
    }
}

impl Tables {
    fn build(f: &Family) -> Tables {
        let n = f.lens.len();
        debug_assert!(
            n < NO_MERGE as usize,
            "token ids fit a pair key (build.rs checks it)"
        );
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
            let i = free_slot(hash_bytes(token) as usize, mask, |i| slots[i] == u32::MAX);
            slots[i] = id as u32;
        }

        let mut tables = Tables {
            pool: f.pool,
            offsets,
            slots,
            mask,
            made: Vec::new(),
            rank_of: Vec::new(),
            merge_left: &[],
            more_ranks: Vec::new(),
            pairs: OnceLock::new(),
            byte_lookups: AtomicU32::new(0),
            byte_ids: [NO_MERGE; 256],
            char3: Vec::new(),
            char_ids: Vec::new(),
            byte_pairs: Vec::new(),
            rule: f.rule,
            chars: f.split == Split::Sentencepiece,
            glue_before_space: Vec::new(),
        };
        for b in 0..=255u8 {
            tables.byte_ids[usize::from(b)] = tables.id(&[b]).unwrap_or(NO_MERGE);
        }

        // The merges in rank order (zigzag deltas of the ids they make, in three byte planes),
        // then by the pair of ids they merge: the left part's length gives both halves.
        let m = f.merge_left.len();
        let mut made = Vec::with_capacity(m);
        let mut previous = 0i64;
        for rank in 0..m {
            let zigzag = u64::from(f.merge_ids[rank])
                | u64::from(f.merge_ids[m + rank]) << 8
                | u64::from(f.merge_ids[2 * m + rank]) << 16;
            let delta = (zigzag >> 1) as i64 ^ -((zigzag & 1) as i64);
            previous += delta;
            made.push(previous as u32);
        }
        let mut rank_of = vec![NONE; n];
        let mut more_ranks = Vec::new();
        for (rank, &id) in made.iter().enumerate() {
            let left = f.merge_left.get(rank).copied().unwrap_or(0);
            match rank_of.get_mut(id as usize) {
                Some(r) if *r == NONE => *r = rank as u32,
                Some(_) => more_ranks.push((id, left, rank as u32)),
                None => {}
            }
        }
        more_ranks.sort_unstable();
        tables.rank_of = rank_of;
        tables.more_ranks = more_ranks;
        tables.merge_left = f.merge_left;
        tables.made = made;
        let byte_pairs = (0..=u16::MAX)
            .map(|ab| {
                let [a, b] = ab.to_be_bytes();
                let (x, y) = (
                    tables.byte_ids[usize::from(a)],
                    tables.byte_ids[usize::from(b)],
                );
                if x == NO_MERGE || y == NO_MERGE {
                    NONE
                } else {
                    tables.pair_by_bytes(&[a, b], 1)
                }
            })
            .collect();
        tables.byte_pairs = byte_pairs;
        if f.char3.len() == 1 << 16 {
            let mut char3 = vec![0u32; 1 << 16];
            for (cp, &flags) in f.char3.iter().enumerate() {
                let flags = u32::from(flags);
                if flags & CHAR3_WHOLE == 0 {
                    continue;
                }
                let Some(c) = char::from_u32(cp as u32) else {
                    continue;
                };
                let mut buf = [0u8; 4];
                if let Some(id) = tables.id(c.encode_utf8(&mut buf).as_bytes()) {
                    char3[cp] = id | flags << ID_BITS;
                }
            }
            tables.char3 = char3;
        }

        if tables.chars {
            tables.char_ids = (0..1u32 << 16)
                .map(|cp| {
                    let mut buf = [0u8; 4];
                    char::from_u32(cp)
                        .and_then(|c| tables.id(c.encode_utf8(&mut buf).as_bytes()))
                        .unwrap_or(u32::MAX)
                })
                .collect();
            let mut glue = Vec::new();
            for id in 0..n as u32 {
                let Ok(token) = std::str::from_utf8(tables.token(id)) else {
                    continue;
                };
                let mut previous: Option<char> = None;
                for c in token.chars() {
                    if c == '▁' {
                        if let Some(p) = previous.filter(|&p| p != '▁') {
                            if !glue.contains(&p) {
                                glue.push(p);
                            }
                        }
                    }
                    previous = Some(c);
                }
            }
            tables.glue_before_space = glue;
        }
        tables
    }

    /// The bytes of token `id`.
    #[inline]
    fn token(&self, id: u32) -> &[u8] {
        let id = id as usize;
        &self.pool[self.offsets[id] as usize..self.offsets[id + 1] as usize]
    }

    /// The byte length of token `id` (0 for an id that is none).
    #[inline]
    fn token_len(&self, id: u32) -> usize {
        let id = id as usize;
        match (self.offsets.get(id), self.offsets.get(id + 1)) {
            (Some(&a), Some(&b)) => (b - a) as usize,
            _ => 0,
        }
    }

    /// The id of the token whose bytes are `key`.
    #[inline]
    fn id(&self, key: &[u8]) -> Option<u32> {
        probe(hash_bytes(key) as usize, self.mask, |i, _| {
            match self.slots[i] {
                u32::MAX => Probe::Absent,
                id if self.token(id) == key => Probe::Found(id),
                _ => Probe::Next,
            }
        })
    }

    /// The rank of merging the symbols `a` = `word[s..m]` and `b` = `word[m..e]`, or [`NONE`]:
    /// two one-byte symbols from [`Tables::byte_pairs`], else from the memo, else from the pair
    /// table (Hugging Face) or the bytes (Tekken), remembered in the memo.
    #[inline]
    fn pair(&self, memo: &mut [u64], word: &[u8], s: usize, e: usize, a: u32, b: u32) -> u32 {
        if a == NO_MERGE || b == NO_MERGE {
            return NONE;
        }
        if e - s == 2 {
            if let Some(&rank) = self
                .byte_pairs
                .get(usize::from(word[s]) << 8 | usize::from(word[s + 1]))
            {
                return rank;
            }
        }
        let key = pair_key(a, b);
        let i = pair_home(key, 64 - MEMO_ENTRIES.trailing_zeros());
        if let Some(&slot) = memo.get(i) {
            if slot >> 24 == key {
                let rank = slot & RANK_MASK;
                return if rank == RANK_MASK { NONE } else { rank as u32 };
            }
        }
        let m = s + self.token_len(a);
        let rank = self.pair_uncached(key, &word[s..e], m - s);
        if let Some(slot) = memo.get_mut(i) {
            *slot = key << 24 | (u64::from(rank) & RANK_MASK);
        }
        rank
    }

    /// [`Tables::pair`] without the byte-pair table and the memo: the symbols' ids are `key`, the
    /// bytes of the two `merged`, the first `left` bytes of which are the left symbol's.
    fn pair_uncached(&self, key: u64, merged: &[u8], left: usize) -> u32 {
        if self.rule == Rule::Tiktoken {
            return self.id(merged).unwrap_or(NONE);
        }
        if let Some(table) = self.pairs.get() {
            return table.rank(key);
        }
        if self.byte_lookups.fetch_add(1, Ordering::Relaxed) >= PAIR_TABLE_AFTER {
            return self.pair_table().rank(key);
        }
        self.pair_by_bytes(merged, left)
    }

    /// Hugging Face rule, without the pair table: the merge of the symbols `merged[..left]` and
    /// `merged[left..]` is the merge that makes the token `merged` from a left part of `left`
    /// bytes, if any (the symbols are the tokens of their bytes). Tiktoken rule: the token.
    fn pair_by_bytes(&self, merged: &[u8], left: usize) -> u32 {
        let Some(id) = self.id(merged) else {
            return NONE;
        };
        if self.rule == Rule::Tiktoken {
            return id;
        }
        let rank = self.rank_of.get(id as usize).copied().unwrap_or(NONE);
        if rank == NONE {
            return NONE;
        }
        if self.merge_left.get(rank as usize).map(|&l| usize::from(l)) == Some(left) {
            return rank;
        }
        let Ok(left) = u8::try_from(left) else {
            return NONE;
        };
        let at = self
            .more_ranks
            .partition_point(|&(i, l, _)| (i, l) < (id, left));
        match self.more_ranks.get(at) {
            Some(&(i, l, rank)) if (i, l) == (id, left) => rank,
            _ => NONE,
        }
    }

    /// The pair table, built on first call: every merge keyed by the ids of its two parts.
    fn pair_table(&self) -> &PairTable {
        self.pairs.get_or_init(|| {
            let m = self.made.len();
            let bits = ((m * 3 / 2).next_power_of_two().trailing_zeros()).max(1);
            let pmask = (1usize << bits) - 1;
            let mut slots = vec![u64::MAX; pmask + 1];
            for (rank, &id) in self.made.iter().enumerate() {
                let token = self.token(id);
                let left = usize::from(self.merge_left[rank]).min(token.len());
                let (Some(a), Some(b)) = (self.id(&token[..left]), self.id(&token[left..])) else {
                    continue; // not a merge of two tokens: never applies
                };
                let key = pair_key(a, b);
                // A pair merges at its lowest rank: a later duplicate is not inserted.
                let i = free_slot(pair_home(key, 64 - bits), pmask, |i| {
                    slots[i] == u64::MAX || slots[i] >> 24 == key
                });
                if slots[i] == u64::MAX {
                    slots[i] = key << 24 | rank as u64;
                }
            }
            PairTable {
                slots,
                shift: 64 - bits,
            }
        })
    }

    /// The id of the token a merge of rank `rank` makes.
    #[inline]
    fn made_by(&self, rank: u32) -> u32 {
        match self.rule {
            Rule::Tiktoken => rank,
            Rule::Hf { .. } => self.made.get(rank as usize).copied().unwrap_or(NO_MERGE),
        }
    }

    /// Merges the word `text[s..e]` and calls `f` with each token's end (an offset in `text`).
    fn word(
        &self,
        text: &[u8],
        s: usize,
        e: usize,
        state: &mut FamilyState,
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
        if word.len() > CACHED_WORD {
            self.merge(word, &mut state.memo, scratch, &mut |end| f(s + end));
            return;
        }
        if state.words.is_empty() {
            state.words.resize(CACHE_ENTRIES, CacheEntry::EMPTY);
        }
        let home = hash_bytes(word) as usize & (CACHE_ENTRIES - 1);
        if let Some(entry) = state.words.get(home) {
            if usize::from(entry.len) == word.len() && entry.key[..word.len()] == *word {
                for &end in &entry.ends[..usize::from(entry.n)] {
                    f(s + usize::from(end));
                }
                return;
            }
        }
        let mut entry = CacheEntry {
            len: word.len() as u8,
            key: [0; CACHED_WORD],
            n: 0,
            ends: [0; CACHED_WORD],
        };
        entry.key[..word.len()].copy_from_slice(word);
        self.merge(word, &mut state.memo, scratch, &mut |end| {
            entry.ends[usize::from(entry.n)] = end as u8;
            entry.n += 1;
        });
        if let Some(slot) = state.words.get_mut(home) {
            *slot = entry;
        }
        for &end in &entry.ends[..usize::from(entry.n)] {
            f(s + usize::from(end));
        }
    }

    /// The merge of `word` (two bytes or more): calls `f` with each token's end in it.
    fn merge(
        &self,
        word: &[u8],
        memo: &mut [u64],
        scratch: &mut OpenScratch,
        f: &mut impl FnMut(usize),
    ) {
        self.initial_symbols(word, &mut scratch.starts, &mut scratch.ids);
        if scratch.ids.len() >= LONG_PIECE {
            self.merge_long(word, memo, scratch);
            let mut p = 0;
            while p < word.len() {
                p = scratch.ends[p];
                f(p);
            }
        } else {
            self.merge_short(word, memo, scratch);
            for &end in &scratch.starts[1..] {
                f(end);
            }
        }
    }

    /// The symbols the merge begins with — their starts, then the word's end, and their ids:
    /// every byte for the byte-level families; for Gemma every character that is a token, and
    /// every byte of one that is not (byte fallback: `<0xNN>` tokens, which no merge makes or
    /// uses: [`NO_MERGE`]).
    fn initial_symbols(&self, word: &[u8], starts: &mut Vec<usize>, ids: &mut Vec<u32>) {
        starts.clear();
        ids.clear();
        if !self.chars {
            if self.char3.is_empty() {
                starts.extend(0..=word.len());
                ids.extend(word.iter().map(|&b| self.byte_ids[usize::from(b)]));
            } else {
                self.initial_bytes_and_chars(word, starts, ids);
            }
            return;
        }
        let mut i = 0;
        while i < word.len() {
            let len = utf8_len(word[i]).min(word.len() - i);
            starts.push(i);
            let id = match bmp_code_point(&word[i..i + len]) {
                Some(cp) if !self.char_ids.is_empty() => {
                    self.char_ids.get(cp).copied().filter(|&id| id != u32::MAX)
                }
                _ => self.id(&word[i..i + len]),
            };
            match id {
                Some(id) => ids.push(id),
                None => {
                    starts.extend(i + 1..i + len);
                    ids.extend((0..len).map(|_| NO_MERGE));
                }
            }
            i += len;
        }
        starts.push(word.len());
    }

    /// Byte-level initial symbols, with each three-byte character that `char3` allows (in its
    /// neighbours' context) as one symbol, its token: the same tokens in the end, fewer merges.
    fn initial_bytes_and_chars(&self, word: &[u8], starts: &mut Vec<usize>, ids: &mut Vec<u32>) {
        let n = word.len();
        let mut i = 0;
        while i < n {
            let b = word[i];
            if (0xE0..0xF0).contains(&b) && i + 3 <= n {
                let (b1, b2) = (word[i + 1], word[i + 2]);
                if (b1 & 0xC0, b2 & 0xC0) == (0x80, 0x80) {
                    let cp = usize::from(b & 0x0F) << 12
                        | usize::from(b1 & 0x3F) << 6
                        | usize::from(b2 & 0x3F);
                    let entry = self.char3.get(cp).copied().unwrap_or(0) >> ID_BITS;
                    let left = i == 0 || entry & CHAR3_LEFT << byte_class(word[i - 1]) != 0;
                    let right = i + 3 == n || entry & CHAR3_RIGHT << byte_class(word[i + 3]) != 0;
                    if entry & CHAR3_WHOLE != 0 && left && right {
                        starts.push(i);
                        ids.push(self.char3[cp] & NO_MERGE);
                        i += 3;
                        continue;
                    }
                }
            }
            starts.push(i);
            ids.push(self.byte_ids[usize::from(b)]);
            i += 1;
        }
        starts.push(n);
    }

    /// The merge over vectors of symbols (`scratch.starts`, ending with the word's end, and
    /// `scratch.ids`): quadratic, fastest for short words. The result is in `scratch.starts`.
    fn merge_short(&self, word: &[u8], memo: &mut [u64], scratch: &mut OpenScratch) {
        let OpenScratch {
            starts, ids, ranks, ..
        } = scratch;
        ranks.clear();
        // ranks[i]: merging symbol i with symbol i + 1.
        for i in 0..ids.len() {
            ranks.push(match (starts.get(i + 2), ids.get(i + 1)) {
                (Some(&e), Some(&b)) => self.pair(memo, word, starts[i], e, ids[i], b),
                _ => NONE,
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
            ids[i] = self.made_by(best);
            starts.remove(i + 1);
            ids.remove(i + 1);
            ranks.remove(i + 1);
            if i > 0 {
                ranks[i - 1] =
                    self.pair(memo, word, starts[i - 1], starts[i + 1], ids[i - 1], ids[i]);
            }
            ranks[i] = match (starts.get(i + 2), ids.get(i + 1)) {
                (Some(&e), Some(&b)) => self.pair(memo, word, starts[i], e, ids[i], b),
                _ => NONE,
            };
        }
    }

    /// The same merge with a heap and a linked list of symbols indexed by start byte; the result
    /// is a chain in `scratch.ends` from 0.
    fn merge_long(&self, word: &[u8], memo: &mut [u64], scratch: &mut OpenScratch) {
        let n = word.len();
        let OpenScratch {
            starts,
            ids,
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
        // Ids by start byte, in place: the k-th symbol's id moves to its start (≥ k).
        ids.resize(n + 1, NO_MERGE);
        for k in (0..starts.len() - 1).rev() {
            let id = ids[k];
            ids[starts[k]] = id;
        }
        for w in starts.windows(2) {
            ends[w[0]] = w[1];
            if w[1] < n {
                prevs[w[1]] = w[0];
            }
        }
        let mut keys = std::mem::take(heap).into_vec();
        keys.clear();
        for w in starts.windows(3) {
            let r = self.pair(memo, word, w[0], w[2], ids[w[0]], ids[w[1]]);
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
            ids[s] = self.made_by(rank);
            ranks[right] = NONE;
            if right_end < n {
                prevs[right_end] = s;
                let r = self.pair(memo, word, s, ends[right_end], ids[s], ids[right_end]);
                ranks[s] = r;
                if r != NONE {
                    heap.push(Reverse(u64::from(r) << 32 | s as u64));
                }
            } else {
                ranks[s] = NONE;
            }
            if s > 0 {
                let p = prevs[s];
                let r = self.pair(memo, word, p, right_end, ids[p], ids[s]);
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
        probe(hash_bytes(key) as usize, mask, |i, _| {
            let at = u32_at(self.added_slots, i);
            if at == u32::MAX {
                return Probe::Absent;
            }
            let at = at as usize;
            let len = usize::from(self.added[at]);
            if &self.added[at + 1..at + 1 + len] == key {
                Probe::Found(())
            } else {
                Probe::Next
            }
        })
        .is_some()
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
        STATE.with(|cell| {
            // A callback that counts again (re-entrant) gets a fresh state rather than a panic.
            let mut shared = cell.try_borrow_mut().ok();
            let mut fresh = FamilyState::default();
            let state = match shared.as_deref_mut() {
                Some(states) => {
                    if states.len() <= self.index {
                        states.resize_with(self.index + 1, FamilyState::default);
                    }
                    &mut states[self.index]
                }
                None => &mut fresh,
            };
            if state.memo.is_empty() {
                state.memo = vec![u64::MAX; MEMO_ENTRIES];
            }
            self.split_and_merge(tables, work, state, scratch, &mut emit);
        });
        scratch.text = normalized;
    }

    /// The pre-tokenizer's pieces of `work` (normalized text without added tokens), each merged.
    fn split_and_merge(
        &self,
        tables: &Tables,
        work: &str,
        state: &mut FamilyState,
        scratch: &mut OpenScratch,
        emit: &mut impl FnMut(usize),
    ) {
        let bytes = work.as_bytes();
        let mut piece = |s: usize, e: usize| tables.word(bytes, s, e, state, scratch, emit);
        match self.split {
            Split::Llama3(digits) => {
                let t = Text::new(work);
                let mut pos = 0;
                while pos < work.len() {
                    let e = t.llama3(pos, digits);
                    piece(pos, e);
                    pos = e;
                }
            }
            Split::Tekken => {
                let t = Text::new(work);
                let mut pos = 0;
                while pos < work.len() {
                    let e = t.tekken(pos);
                    piece(pos, e);
                    pos = e;
                }
            }
            Split::DeepseekV3 => {
                let base = work.as_ptr() as usize;
                deepseek_v3_pieces(work, |p| {
                    let s = p.as_ptr() as usize - base;
                    piece(s, s + p.len());
                });
            }
            // Gemma has no pre-tokenizer: the stretch is one word. But no merge crosses into a
            // run of `▁` from a character before it, except after the few characters some token
            // has there (Gemma 3: `>`, for `>▁</`; `Tables::build` finds them in the
            // vocabulary), so the merge of the stretch is the merges of its parts cut before
            // each other run of `▁`: the same tokens, short words (cached), no long heap merge.
            Split::Sentencepiece => {
                let mut start = 0;
                let mut previous = '▁';
                for (i, c) in work.char_indices() {
                    if c == '▁'
                        && previous != '▁'
                        && i > start
                        && !tables.glue_before_space.contains(&previous)
                    {
                        piece(start, i);
                        start = i;
                    }
                    previous = c;
                }
                piece(start, work.len());
            }
        }
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

/// The code point of a whole one-, two- or three-byte UTF-8 character (`None` for anything
/// else, overlong forms and surrogates included).
#[inline]
fn bmp_code_point(c: &[u8]) -> Option<usize> {
    let cont = |b: u8| (b & 0xC0 == 0x80).then_some(usize::from(b & 0x3F));
    let cp = match *c {
        [a] if a < 0x80 => return Some(usize::from(a)),
        [a, b] if a & 0xE0 == 0xC0 => usize::from(a & 0x1F) << 6 | cont(b)?,
        [a, b, d] if a & 0xF0 == 0xE0 => usize::from(a & 0x0F) << 12 | cont(b)? << 6 | cont(d)?,
        _ => return None,
    };
    let min = if c.len() == 2 { 0x80 } else { 0x800 };
    (cp >= min && !(0xD800..0xE000).contains(&cp)).then_some(cp)
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
    fn pair_lookup_by_bytes_agrees_with_the_pair_table_on_every_merge() {
        for f in [&LLAMA3, &QWEN3, &DEEPSEEK_V3, &GEMMA3] {
            let t = f.tables();
            let table = t.pair_table();
            let mut checked = 0;
            for (rank, &id) in t.made.iter().enumerate() {
                let token = t.token(id);
                let left = usize::from(t.merge_left[rank]).min(token.len());
                let (Some(a), Some(b)) = (t.id(&token[..left]), t.id(&token[left..])) else {
                    continue;
                };
                let by_table = table.rank(pair_key(a, b));
                assert!(by_table <= rank as u32, "family {} rank {rank}", f.index);
                assert_eq!(
                    t.pair_by_bytes(token, left),
                    by_table,
                    "family {} rank {rank}",
                    f.index
                );
                checked += 1;
            }
            assert!(checked > 100_000, "family {}: {checked} merges", f.index);
            // Pairs that are not merges: a token and a byte that never merge into a token.
            assert_eq!(t.pair_by_bytes(b"\x00\x00\x00\x00zz", 1), NONE);
        }
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
                let mut memo = vec![u64::MAX; MEMO_ENTRIES];
                f.initial_symbols(w, &mut scratch.starts, &mut scratch.ids);
                f.merge_long(w, &mut memo, &mut scratch);
                let mut long = Vec::new();
                let mut p = 0;
                while p < w.len() {
                    p = scratch.ends[p];
                    long.push(p);
                }
                f.initial_symbols(w, &mut scratch.starts, &mut scratch.ids);
                f.merge_short(w, &mut memo, &mut scratch);
                assert_eq!(long, scratch.starts[1..].to_vec(), "{word}");
            }
        }
    }

    /// The token ends of the merge of `word`, from its bytes or (`whole_chars`) with the
    /// three-byte characters that `char3` allows taken whole.
    fn merged_ends(t: &Tables, word: &[u8], whole_chars: bool) -> Vec<usize> {
        let mut scratch = OpenScratch::default();
        let mut memo = vec![u64::MAX; MEMO_ENTRIES];
        if whole_chars {
            t.initial_symbols(word, &mut scratch.starts, &mut scratch.ids);
        } else {
            scratch.starts.extend(0..=word.len());
            scratch
                .ids
                .extend(word.iter().map(|&b| t.byte_ids[usize::from(b)]));
        }
        if word.len() >= LONG_PIECE {
            t.merge_long(word, &mut memo, &mut scratch);
            let mut ends = Vec::new();
            let mut p = 0;
            while p < word.len() {
                p = scratch.ends[p];
                ends.push(p);
            }
            ends
        } else {
            t.merge_short(word, &mut memo, &mut scratch);
            scratch.starts[1..].to_vec()
        }
    }

    #[test]
    fn three_byte_characters_taken_whole_merge_like_their_bytes() {
        let corpus = include_str!("../../../tests/corpus/chinese.txt");
        let common: Vec<char> = corpus.chars().filter(|c| c.len_utf8() == 3).collect();
        // Characters around the edges that a merge may cross: ASCII, Latin and Cyrillic (two
        // bytes), kana, CJK punctuation, emoji (four bytes).
        let others: Vec<char> = " a,.\n1éßжд、。「」ーカな🙂😀".chars().collect();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut words: Vec<String> = corpus.lines().map(str::to_string).collect();
        for _ in 0..4_000 {
            let len = 1 + next(24);
            let word: String = (0..len)
                .map(|_| match next(8) {
                    0 => others[next(others.len())],
                    1 => char::from_u32(0x800 + next(0xF800) as u32).unwrap_or('中'),
                    2 => char::from_u32(0x3040 + next(0x6FC0) as u32).unwrap_or('中'),
                    _ => common[next(common.len())],
                })
                .collect();
            words.push(word);
        }
        for f in [&LLAMA3, &QWEN3, &DEEPSEEK_V3, &TEKKEN] {
            let t = f.tables();
            let whole = t
                .char3
                .iter()
                .filter(|&&e| e >> ID_BITS & CHAR3_WHOLE != 0)
                .count();
            eprintln!("family {}: {whole} characters may be taken whole", f.index);
            assert!(whole > 2_000, "family {}: {whole} characters", f.index);
            let mut taken = 0usize;
            for word in &words {
                let w = word.as_bytes();
                let mut starts = Vec::new();
                t.initial_symbols(w, &mut starts, &mut Vec::new());
                taken += w.len() + 1 - starts.len();
                assert_eq!(
                    merged_ends(t, w, true),
                    merged_ends(t, w, false),
                    "family {}: {word:?}",
                    f.index
                );
            }
            // The fast path is taken (two bytes fewer per character taken whole).
            eprintln!("family {}: {taken} characters taken whole", f.index);
            assert!(taken > 20_000, "family {}: {taken}", f.index);
        }
        assert!(GEMMA3.tables().char3.is_empty());
    }

    #[test]
    fn gemma_cut_before_spaces_merges_like_the_whole_stretch() {
        let t = GEMMA3.tables();
        // Gemma 3 has one token with a `▁` after another character: `>▁</`.
        assert_eq!(t.glue_before_space, vec!['>']);
        let mut scratch = OpenScratch::default();
        for text in [
            "The quick brown fox jumps over the lazy dog, twice.",
            "x>  </y a> </q b>c  d",
            "  leading and trailing   ",
            "fn main() {\n    let x = 1;\n}",
            "中文 混合 English 和 emoji 🙂 ok",
        ] {
            let whole: String = text
                .chars()
                .map(|c| if c == ' ' { '▁' } else { c })
                .collect();
            let w = whole.as_bytes();
            let mut memo = vec![u64::MAX; MEMO_ENTRIES];
            let mut n = 0u64;
            t.merge(w, &mut memo, &mut scratch, &mut |_| n += 1);
            assert_eq!(count(&GEMMA3, text), n, "{text:?}");
        }
    }

    #[test]
    fn bmp_code_points_of_whole_characters_only() {
        for c in ['a', '\0', 'é', 'ж', '中', '▁', '\u{FFFD}', '\u{800}'] {
            let mut buf = [0u8; 4];
            let bytes = c.encode_utf8(&mut buf).as_bytes();
            assert_eq!(bmp_code_point(bytes), Some(c as usize), "{c:?}");
        }
        for bad in [
            &b"\xF0\x9F\x99\x82"[..], // four bytes (🙂)
            b"\xC0\x80",              // overlong
            b"\xE0\x80\x80",          // overlong
            b"\xED\xA0\x80",          // surrogate
            b"\xE4\xB8",              // cut
            b"\xE4\x41\x80",          // not a continuation
        ] {
            assert_eq!(bmp_code_point(bad), None, "{bad:?}");
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
