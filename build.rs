//! Generates the static tables of Tollgate's tokenizer (`src/core/tokens`), so that nothing is
//! parsed or built when the worker starts:
//!
//! - one pool of token bytes: o200k_base's tokens in rank order, then the cl100k_base tokens that
//!   o200k_base lacks (85% of cl100k_base is shared), with a bitmap of where tokens start;
//! - per encoding, an open-addressing hash from a token's bytes to its place in the pool (and,
//!   for cl100k_base, its rank; o200k_base's pool offsets order like its ranks), direct tables
//!   of the two-byte tokens and of the three-byte UTF-8 characters, and a Bloom filter of its
//!   non-ASCII tokens (misses are most lookups in a merge, and the filter answers most of them
//!   in one memory access). Binary files that the crate `include_bytes!`. The vocabularies are
//!   read out of tiktoken-rs (the reference the tests compare with), rank by rank.
//! - the Unicode classes of the pre-tokenizer regexes (`\p{L}`, `\p{N}`, `\s`, the case classes of
//!   o200k, and the case-insensitive letters of the contractions), from `regex-syntax`, the same
//!   tables the reference's regex engine uses, as a two-level lookup table.

#[path = "src/core/tokens/table_hash.rs"]
#[allow(dead_code)] // the lookup helpers are for the runtime
mod table_hash;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use regex_syntax::hir::{Class, Hir, HirKind};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/core/tokens/table_hash.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    let o200k = tokens_of(
        "o200k_base",
        &tiktoken_rs::o200k_base().expect("tiktoken-rs builds o200k_base"),
        199_998,
    );
    let cl100k = tokens_of(
        "cl100k_base",
        &tiktoken_rs::cl100k_base().expect("tiktoken-rs builds cl100k_base"),
        100_256,
    );

    // The pool: o200k_base in rank order (so its offsets order like its ranks), then the rest.
    let mut pool: Vec<u8> = Vec::new();
    let mut at: HashMap<&[u8], u32> = HashMap::new();
    let mut o200k_offsets = Vec::with_capacity(o200k.len());
    for token in o200k.iter().chain(&cl100k) {
        let offset = *at.entry(token).or_insert_with(|| {
            let offset = u32::try_from(pool.len()).expect("pool under 4 GiB");
            pool.extend_from_slice(token);
            offset
        });
        if o200k_offsets.len() < o200k.len() {
            o200k_offsets.push(offset);
        }
    }
    assert!(
        pool.len() < table_hash::OFFSET_MASK as usize,
        "pool offsets must fit the slot"
    );
    let mut starts = vec![0u8; pool.len() / 8 + 1 + 8];
    for &offset in at.values().chain(&[pool.len() as u32]) {
        starts[offset as usize / 8] |= 1 << (offset % 8);
    }
    fs::write(out.join("tokens.bytes"), &pool).expect("write token bytes");
    fs::write(out.join("tokens.starts"), &starts).expect("write token starts");

    let o200k_entries: Vec<(u32, u32)> = o200k_offsets.iter().map(|&o| (o, o)).collect();
    let o200k_slot_of = write_lookup(&out, "o200k_base", &o200k, &o200k_entries, 3, 0);
    for (table, index_of) in DIRECT_TABLES {
        write_direct(&out, "o200k_base", table, &o200k, index_of, |rank| {
            o200k_offsets[rank]
        });
    }
    write_filter(&out, "o200k_base", &o200k, 13);

    // cl100k_base: the tokens it shares with o200k_base are found through o200k_base's slots,
    // with a rank per slot (3 bytes: the rank, or all ones when the token is not in cl100k_base); the
    // others have a small table of their own, with the rank in the slot.
    let o200k_slot_at: HashMap<u32, usize> = o200k_offsets
        .iter()
        .zip(&o200k_slot_of)
        .map(|(&offset, &slot)| (offset, slot))
        .collect();
    let mut shared_ranks = table_hash::NO_ID.to_le_bytes()[..3].repeat(capacity(o200k.len()));
    let (mut own, mut own_entries) = (Vec::new(), Vec::new());
    for (rank, token) in (0u32..).zip(&cl100k) {
        let offset = at[token.as_slice()];
        match o200k_slot_at.get(&offset) {
            Some(&slot) => {
                shared_ranks[slot * 3..slot * 3 + 3].copy_from_slice(&rank.to_le_bytes()[..3])
            }
            None => {
                own.push(token.clone());
                own_entries.push((offset, rank));
            }
        }
    }
    fs::write(out.join("cl100k_base.shared"), shared_ranks).expect("write shared ranks");
    write_lookup(&out, "cl100k_base", &own, &own_entries, 5, 17);
    for (table, index_of) in DIRECT_TABLES {
        write_direct(&out, "cl100k_base", table, &cl100k, index_of, |rank| {
            rank as u32
        });
    }
    write_filter(&out, "cl100k_base", &cl100k, 10);

    write_classes(&out);
}

/// The ordinary tokens of `bpe` in rank order (ranks `0..expected` with no gaps).
fn tokens_of(name: &str, bpe: &tiktoken_rs::CoreBPE, expected: u32) -> Vec<Vec<u8>> {
    let mut tokens = Vec::with_capacity(expected as usize);
    let mut rank: u32 = 0;
    while let Ok(token) = bpe.decode_bytes(&[rank]) {
        if rank == expected {
            break; // a special token follows the vocabulary without a gap
        }
        assert!(
            !token.is_empty() && token.len() <= table_hash::MAX_TOKEN_LEN,
            "{name}: token {rank} has {} bytes",
            token.len()
        );
        tokens.push(token);
        rank += 1;
    }
    assert_eq!(rank, expected, "{name}: unexpected vocabulary size");
    tokens
}

/// Slots of a hash table of `tokens` entries: a load factor of about 0.76 (linear probing).
fn capacity(tokens: usize) -> usize {
    (tokens * 5 / 4).next_power_of_two()
}

/// Writes `<name>.slots` (`slot_bytes` per hash slot, a power of two, little-endian: pool offset
/// in the low [`table_hash::OFFSET_BITS`] bits, then `rank_bits` of rank, then
/// the entry's distance from its home slot, capped at the largest value the rest can hold;
/// all ones = empty). A token's id is its rank, or its pool offset when `rank_bits` is 0.
/// `entries[i]` is the (pool offset, id) of `tokens[i]`. Returns the slot index of each token.
fn write_lookup(
    out: &Path,
    name: &str,
    tokens: &[Vec<u8>],
    entries: &[(u32, u32)],
    slot_bytes: usize,
    rank_bits: u32,
) -> Vec<usize> {
    let disp_bits = slot_bytes as u32 * 8 - table_hash::OFFSET_BITS - rank_bits;
    assert!(tokens.len() < 1 << rank_bits.max(table_hash::OFFSET_BITS));
    let mask = capacity(tokens.len()) - 1;
    // Robin Hood insertion: along any probe sequence, displacements never drop by more than
    // one, so a lookup stops at the first entry nearer its home than the key would be.
    // `held[i]` is (token index, displacement) of slot i.
    let mut held: Vec<Option<(usize, usize)>> = vec![None; mask + 1];
    for (t, token) in tokens.iter().enumerate() {
        let mut i = table_hash::hash_bytes(token) as usize & mask;
        let mut carry = (t, 0usize);
        loop {
            match held[i] {
                None => {
                    held[i] = Some(carry);
                    break;
                }
                Some(there) if there.1 < carry.1 => {
                    held[i] = Some(carry);
                    carry = there;
                }
                Some(_) => {}
            }
            i = (i + 1) & mask;
            carry.1 += 1;
        }
    }
    let max_disp = (1u64 << disp_bits) - 1;
    let mut slot_of = vec![0; tokens.len()];
    let mut slots = vec![u64::MAX; mask + 1];
    for (i, entry) in held.iter().enumerate() {
        if let Some((t, disp)) = *entry {
            let (offset, id) = entries[t];
            slot_of[t] = i;
            let rank_part = if rank_bits == 0 { 0 } else { u64::from(id) };
            slots[i] = u64::from(offset)
                | rank_part << table_hash::OFFSET_BITS
                | (disp as u64).min(max_disp) << (table_hash::OFFSET_BITS + rank_bits);
        }
    }
    let slot_table: Vec<u8> = slots
        .iter()
        .flat_map(|s| s.to_le_bytes()[..slot_bytes].to_vec())
        .collect();

    fs::write(out.join(format!("{name}.slots")), slot_table).expect("write slots");
    slot_of
}

/// Writes `<name>.<table>`: a direct table of 65,536 entries of 3 bytes, the id (`id_of(rank)`)
/// of the token whose bytes `index_of` maps to that entry, or all ones. Skips the hash for the
/// commonest lookups: `pairs` (two-byte strings, where every merge starts) and `chars`
/// (three-byte UTF-8 characters, [`table_hash::char3_index`]: a whole CJK character).
fn write_direct(
    out: &Path,
    name: &str,
    table: &str,
    tokens: &[Vec<u8>],
    index_of: impl Fn(&[u8]) -> Option<usize>,
    id_of: impl Fn(usize) -> u32,
) {
    let mut entries = table_hash::NO_ID.to_le_bytes()[..3].repeat(65_536);
    for (rank, token) in tokens.iter().enumerate() {
        if let Some(i) = index_of(token) {
            entries[i * 3..i * 3 + 3].copy_from_slice(&id_of(rank).to_le_bytes()[..3]);
        }
    }
    fs::write(out.join(format!("{name}.{table}")), entries).expect("write a direct table");
}

/// The index of a two-byte string in the `pairs` table.
fn pair_index(token: &[u8]) -> Option<usize> {
    match *token {
        [a, b] => Some(usize::from(a) << 8 | usize::from(b)),
        _ => None,
    }
}

/// Where a token goes in a direct table, if it does.
type DirectIndex = fn(&[u8]) -> Option<usize>;

/// The direct tables of each encoding (see [`write_direct`]).
const DIRECT_TABLES: [(&str, DirectIndex); 2] =
    [("pairs", pair_index), ("chars", table_hash::char3_index)];

/// Writes `<name>.filter`: a blocked Bloom filter of `1 << log2_words` little-endian 64-bit
/// words over the tokens in [`table_hash::in_filter_domain`], so that a lookup of a key in that
/// domain which the filter rejects is a miss without probing the slots. Sized for about eight
/// bits per token (o200k_base: 63,362 tokens in 64 KiB; cl100k_base: 3,701 in 8 KiB).
fn write_filter(out: &Path, name: &str, tokens: &[Vec<u8>], log2_words: u32) {
    let mut words = vec![0u64; 1 << log2_words];
    let mut members = 0usize;
    for token in tokens.iter().filter(|t| table_hash::in_filter_domain(t)) {
        let (word, bits) = table_hash::filter_probe(table_hash::hash_bytes(token), words.len() - 1);
        words[word] |= bits;
        members += 1;
    }
    assert!(
        members * 6 <= words.len() * 64,
        "{name}: {members} tokens overfill a filter of {} bits",
        words.len() * 64
    );
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    fs::write(out.join(format!("{name}.filter")), bytes).expect("write filter");
}

/// The classes of the pre-tokenizer, one bit each (keep in sync with `pretokenize.rs`).
const CLASSES: &[(&str, u8)] = &[
    (r"\p{L}", 1),                           // LETTER
    (r"\p{N}", 2),                           // NUMBER
    (r"\s", 4),                              // SPACE
    (r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]", 8), // UPPERISH (o200k)
    (r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]", 16),      // LOWERISH (o200k)
];

/// Characters per block of the two-level class table.
const BLOCK: usize = 128;

/// Writes `classes.index` (one u8 block number per 128 code points), `classes.blocks` (the
/// distinct blocks, one mask byte per code point) and `classes.rs` (constants and the
/// case-insensitive contraction letters).
fn write_classes(out: &Path) {
    let mut masks = vec![0u8; 0x11_0000];
    for &(pattern, bit) in CLASSES {
        for (start, end) in class_ranges(pattern) {
            for cp in start..=end {
                masks[cp as usize] |= bit;
            }
        }
    }
    let mut blocks: Vec<&[u8]> = Vec::new();
    let mut index: Vec<u8> = Vec::with_capacity(masks.len() / BLOCK);
    for block in masks.chunks(BLOCK) {
        let id = match blocks.iter().position(|b| *b == block) {
            Some(id) => id,
            None => {
                blocks.push(block);
                blocks.len() - 1
            }
        };
        index.push(u8::try_from(id).expect("at most 256 distinct blocks"));
    }
    fs::write(out.join("classes.index"), &index).expect("write class index");
    fs::write(out.join("classes.blocks"), blocks.concat()).expect("write class blocks");

    // Every character that `(?i:x)` matches, for the letters of the contractions.
    let mut folds = String::new();
    for letter in ['s', 't', 'r', 'v', 'e', 'm', 'l', 'd'] {
        for (start, end) in class_ranges(&format!("(?i:{letter})")) {
            for cp in start..=end {
                let c = char::from_u32(cp).expect("a scalar value");
                folds.push_str(&format!("        {c:?} => b'{letter}',\n"));
            }
        }
    }
    let source = format!(
        "/// Block size of the class table.\npub const BLOCK_SHIFT: u32 = {};\n\n\
         /// The ASCII letter of a contraction that `c` matches case-insensitively, or 0.\n\
         pub fn contraction_letter(c: char) -> u8 {{\n    match c {{\n{folds}        _ => 0,\n    }}\n}}\n",
        BLOCK.trailing_zeros()
    );
    fs::write(out.join("classes.rs"), source).expect("write classes.rs");
}

/// The code point ranges of a one-character pattern, as regex-syntax parses it.
fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::Parser::new()
        .parse(pattern)
        .unwrap_or_else(|e| panic!("{pattern}: {e}"));
    ranges_of(&hir).unwrap_or_else(|| panic!("{pattern} is not a single character class"))
}

fn ranges_of(hir: &Hir) -> Option<Vec<(u32, u32)>> {
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => Some(
            class
                .ranges()
                .iter()
                .map(|r| (u32::from(r.start()), u32::from(r.end())))
                .collect(),
        ),
        HirKind::Literal(lit) => {
            let s = std::str::from_utf8(&lit.0).ok()?;
            let mut chars = s.chars();
            let c = chars.next()?;
            chars.next().is_none().then(|| vec![(c as u32, c as u32)])
        }
        _ => None,
    }
}
