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
    write_open_families(&out);
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
    (r"\p{P}", 32),                          // PUNCT (deepseek_v3)
    (r"\p{S}", 64),                          // SYMBOL (deepseek_v3)
    (r"\p{M}", 128),                         // MARK (deepseek_v3)
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

/// The open model families (`src/core/tokens/open.rs`): where `build.rs` reads each vocabulary
/// (under `.tools/vocab`, or `$TOLLGATE_VOCAB_DIR`, filled by `scripts/setup.sh`; sources and
/// licences in `src/core/tokens/LICENSES.md`) and how its tokens are spelled there.
const OPEN_FAMILIES: &[(&str, &str, Spelling)] = &[
    ("llama3", "llama3/tokenizer.json", Spelling::ByteLevel),
    ("qwen3", "qwen3/tokenizer.json", Spelling::ByteLevel),
    (
        "deepseek_v3",
        "deepseek_v3/tokenizer.json",
        Spelling::ByteLevel,
    ),
    ("gemma3", "gemma3/tokenizer.json", Spelling::Utf8),
    ("tekken", "tekken/tekken.json", Spelling::Tekken),
];

/// How a vocabulary file spells its tokens.
#[derive(Clone, Copy, PartialEq)]
enum Spelling {
    /// Hugging Face byte-level BPE: each byte is a printable character (GPT-2's table).
    ByteLevel,
    /// Hugging Face BPE over characters (SentencePiece style, `▁` for a space).
    Utf8,
    /// Mistral's tekken.json: tiktoken ranks, base64 bytes.
    Tekken,
}

/// Writes the tables of every open family: see [`write_open_family`].
fn write_open_families(out: &Path) {
    println!("cargo:rerun-if-env-changed=TOLLGATE_VOCAB_DIR");
    let dir = std::env::var_os("TOLLGATE_VOCAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
                .join(".tools/vocab")
        });
    for &(name, file, spelling) in OPEN_FAMILIES {
        let path = dir.join(file);
        println!("cargo:rerun-if-changed={}", path.display());
        let text = fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "\n\nTollgate's build needs the vocabulary of {name} at {}: {e}.\n\
                 Run `bash scripts/setup.sh` (it fetches the open models' tokenizer files into \
                 .tools/vocab), or set TOLLGATE_VOCAB_DIR to a directory laid out the same way.\n\n",
                path.display()
            )
        });
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let family = if spelling == Spelling::Tekken {
            read_tekken(&json)
        } else {
            read_hf_bpe(name, &json, spelling)
        };
        write_open_family(out, name, &family);
        let char3 = match spelling {
            Spelling::ByteLevel => char3_flags(&family, &family.merges),
            // tiktoken's rule: a pair merges when its bytes are a token, whose id is the rank.
            Spelling::Tekken => char3_flags(&family, &tiktoken_merges(&family)),
            Spelling::Utf8 => Vec::new(), // characters are already symbols (Gemma)
        };
        fs::write(out.join(format!("{name}.open.char3")), char3).expect("write an open table");
    }
}

/// tiktoken's merges as (id made, left length): every split of a token into two tokens.
fn tiktoken_merges(family: &OpenFamily) -> Vec<(u32, u32)> {
    let mut id_of: HashMap<&[u8], u32> = HashMap::new();
    for (id, token) in family.tokens.iter().enumerate() {
        id_of.entry(token.as_slice()).or_insert(id as u32);
    }
    let mut merges = Vec::new();
    for (id, token) in family.tokens.iter().enumerate() {
        for left in 1..token.len() {
            if id_of.contains_key(&token[..left]) && id_of.contains_key(&token[left..]) {
                merges.push((id as u32, left as u32));
            }
        }
    }
    merges
}

/// `char3` flags: the character's bytes merge to one token (and no merge uses that token before
/// the character is complete); then one bit per class of the byte before it and one per class of
/// the byte after it ([`byte_class`]) when no merge can cross that edge before it is complete.
const CHAR3_WHOLE: u8 = 1;
const CHAR3_LEFT: u8 = 1 << 1;
const CHAR3_RIGHT: u8 = 1 << 4;

/// 0: a UTF-8 continuation byte, 1: a lead byte, 2: ASCII.
fn byte_class(b: u8) -> usize {
    match b {
        0x80..=0xBF => 0,
        0xC0..=0xFF => 1,
        _ => 2,
    }
}

/// A byte-level family's three-byte characters that the merge may take as one symbol from the
/// start (`src/core/tokens/open.rs`, `Tables::initial_symbols`), one byte of flags per code
/// point (65,536). Hugging Face's BPE applies the lowest-ranked merge available first. A
/// character `c` whose bytes merge to one token `T` along ranks up to `last` ends as `T` before
/// anything else touches its bytes when every merge that could compete has a higher rank than
/// `last`: a merge whose result crosses `c`'s edge with only part of `c` (its result starts with
/// `c`'s last one or two bytes and goes on, or ends with its first one or two bytes after
/// something — per class of that neighbouring byte, which the text gives), and a merge that has
/// `T` as a part (otherwise taking `T` early could let it merge before a rival that the
/// byte-by-byte merge would have applied first). Then the merge from `T` gives the same tokens as
/// the merge from the bytes: `tests/tokens_open.rs` and `open.rs`'s tests compare both ways.
fn char3_flags(family: &OpenFamily, merges: &[(u32, u32)]) -> Vec<u8> {
    const NEVER: u32 = u32::MAX;
    let mut id_of: HashMap<&[u8], u32> = HashMap::new();
    for (id, token) in family.tokens.iter().enumerate() {
        if !token.is_empty() {
            id_of.entry(token.as_slice()).or_insert(id as u32);
        }
    }
    let is_cont = |b: u8| (0x80..0xC0).contains(&b);
    let mut pair_rank: HashMap<(u32, u32), u32> = HashMap::new();
    let mut as_part = vec![NEVER; family.tokens.len()];
    // Lowest rank of a crossing merge, by the part of a character at its edge and the class of
    // the byte beyond it.
    let mut cross_start: HashMap<(Vec<u8>, usize), u32> = HashMap::new();
    let mut cross_end: HashMap<(Vec<u8>, usize), u32> = HashMap::new();
    for (rank, &(id, left)) in merges.iter().enumerate() {
        // tiktoken's rule: the rank is the id of the token made.
        let rank = if family.merges.is_empty() {
            id
        } else {
            rank as u32
        };
        let z = &family.tokens[id as usize];
        let left = (left as usize).min(z.len());
        let (Some(&a), Some(&b)) = (id_of.get(&z[..left]), id_of.get(&z[left..])) else {
            continue; // not a merge of two tokens: never applies
        };
        pair_rank.entry((a, b)).or_insert(rank);
        for part in [a, b] {
            let r = &mut as_part[part as usize];
            *r = (*r).min(rank);
        }
        // Starts with continuation bytes (the end of a character) and goes on.
        let i = z.iter().take_while(|&&b| is_cont(b)).count();
        if i > 0 && i < z.len() {
            let r = cross_start
                .entry((z[..i].to_vec(), byte_class(z[i])))
                .or_insert(NEVER);
            *r = (*r).min(rank);
        }
        // Ends with a character's lead byte and fewer continuation bytes than it needs, after
        // something.
        let tail = z.iter().rev().take_while(|&&b| is_cont(b)).count();
        if tail < z.len() {
            let j = z.len() - 1 - tail;
            let need = match z[j] {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xFF => 4,
                _ => 1,
            };
            if j > 0 && z.len() - j < need {
                let r = cross_end
                    .entry((z[j..].to_vec(), byte_class(z[j - 1])))
                    .or_insert(NEVER);
                *r = (*r).min(rank);
            }
        }
    }
    let mut flags = vec![0u8; 1 << 16];
    for cp in 0x800u32..=0xFFFF {
        let Some(c) = char::from_u32(cp) else {
            continue; // surrogates
        };
        let mut buf = [0u8; 4];
        let bytes = c.encode_utf8(&mut buf).as_bytes();
        let Some(&whole) = id_of.get(bytes) else {
            continue;
        };
        let byte = |k: usize| id_of.get(&bytes[k..k + 1]).copied();
        let (Some(b0), Some(b1), Some(b2)) = (byte(0), byte(1), byte(2)) else {
            continue;
        };
        let rank = |a: u32, b: u32| pair_rank.get(&(a, b)).copied().unwrap_or(NEVER);
        let (first, second) = (rank(b0, b1), rank(b1, b2));
        // The character merged alone: the lower of its two byte pairs, then the rest.
        let last = if first < second {
            id_of
                .get(&bytes[..2])
                .map_or(NEVER, |&ab| first.max(rank(ab, b2)))
        } else if second != NEVER {
            id_of
                .get(&bytes[1..])
                .map_or(NEVER, |&bc| second.max(rank(b0, bc)))
        } else {
            NEVER
        };
        if last == NEVER || last >= as_part[whole as usize] {
            continue;
        }
        let mut f = CHAR3_WHOLE;
        for class in 0..3 {
            let before = |part: &[u8]| {
                cross_end
                    .get(&(part.to_vec(), class))
                    .copied()
                    .unwrap_or(NEVER)
            };
            if last < before(&bytes[..1]).min(before(&bytes[..2])) {
                f |= CHAR3_LEFT << class;
            }
            let after = |part: &[u8]| {
                cross_start
                    .get(&(part.to_vec(), class))
                    .copied()
                    .unwrap_or(NEVER)
            };
            if last < after(&bytes[2..]).min(after(&bytes[1..])) {
                f |= CHAR3_RIGHT << class;
            }
        }
        flags[cp as usize] = f;
    }
    flags
}

/// One vocabulary as the runtime needs it.
struct OpenFamily {
    /// Token bytes by id (empty for a token that no text spells, such as a special token).
    tokens: Vec<Vec<u8>>,
    /// Merges as (result id, byte length of the left part), in priority order (the rank).
    merges: Vec<(u32, u32)>,
    /// Added tokens: texts matched before the model, each one token.
    added: Vec<Vec<u8>>,
}

/// GPT-2's byte-level alphabet: the byte of each printable stand-in character.
fn byte_level_decoder() -> HashMap<char, u8> {
    let mut printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars = printable.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    printable
        .iter()
        .zip(&chars)
        .map(|(&b, &c)| (char::from_u32(c).expect("a char"), b as u8))
        .collect()
}

fn read_hf_bpe(name: &str, json: &serde_json::Value, spelling: Spelling) -> OpenFamily {
    let model = &json["model"];
    assert_eq!(model["type"], "BPE", "{name}: a BPE model");
    let vocab = model["vocab"].as_object().expect("model.vocab");
    let decoder = byte_level_decoder();
    let spell = |s: &str| -> Option<Vec<u8>> {
        match spelling {
            Spelling::ByteLevel => s.chars().map(|c| decoder.get(&c).copied()).collect(),
            _ => Some(s.as_bytes().to_vec()),
        }
    };
    let mut tokens = vec![Vec::new(); vocab.len()];
    let mut id_of: HashMap<&str, u32> = HashMap::new();
    for (text, id) in vocab {
        let id = u32::try_from(id.as_u64().expect("an id")).expect("a u32 id");
        id_of.insert(text, id);
        // Text that the byte-level alphabet cannot spell is a special token's: no text maps to it.
        if let Some(bytes) = spell(text) {
            tokens[id as usize] = bytes;
        }
    }
    let merges = model["merges"]
        .as_array()
        .expect("model.merges")
        .iter()
        .map(|m| {
            let (left, right) = match m {
                serde_json::Value::String(s) => s.split_once(' ').expect("`left right`"),
                serde_json::Value::Array(pair) => (
                    pair[0].as_str().expect("a string"),
                    pair[1].as_str().expect("a string"),
                ),
                other => panic!("{name}: a merge {other}"),
            };
            let result = format!("{left}{right}");
            let id = id_of[result.as_str()];
            let left_len = spell(left).expect("a spelled merge").len() as u32;
            (id, left_len)
        })
        .collect();
    let added = json["added_tokens"]
        .as_array()
        .expect("added_tokens")
        .iter()
        .map(|t| {
            for flag in ["lstrip", "rstrip", "single_word"] {
                assert_eq!(
                    t[flag], false,
                    "{name}: added token flag {flag} is not handled"
                );
            }
            t["content"].as_str().expect("content").as_bytes().to_vec()
        })
        .collect();
    OpenFamily {
        tokens,
        merges,
        added,
    }
}

/// Mistral's tekken.json: the first `default_vocab_size - default_num_special_tokens` ranks are
/// the ordinary tokens (what mistral-common's `Tekkenizer` hands to tiktoken).
fn read_tekken(json: &serde_json::Value) -> OpenFamily {
    let config = &json["config"];
    let n = config["default_vocab_size"]
        .as_u64()
        .expect("default_vocab_size")
        - config["default_num_special_tokens"]
            .as_u64()
            .expect("default_num_special_tokens");
    let tokens: Vec<Vec<u8>> = json["vocab"]
        .as_array()
        .expect("vocab")
        .iter()
        .take(n as usize)
        .enumerate()
        .map(|(rank, t)| {
            assert_eq!(
                t["rank"].as_u64(),
                Some(rank as u64),
                "tekken: ranks in order"
            );
            base64_decode(t["token_bytes"].as_str().expect("token_bytes"))
        })
        .collect();
    OpenFamily {
        tokens,
        merges: Vec::new(),
        added: Vec::new(),
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("base64: {c}"),
        }
    };
    let digits: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c) << (18 - 6 * i);
        }
        out.extend_from_slice(&acc.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// Writes `<name>.open.*`, the compact form that the worker expands on first use
/// (`src/core/tokens/open.rs`, `Tables::build`), so that the worker's gzip stays small:
/// - `pool`: the token bytes in id order; `lens`: one u8 per id (0 for a token without bytes);
/// - `merge_ids`: the id each merge makes, in rank order, as the zigzag delta from the previous
///   merge's, in three byte planes (low bytes of every merge, then middle, then high: trained
///   vocabularies make id ≈ rank + 256, so the planes are nearly constant); `merge_left`: the
///   byte length of each merge's left part;
/// - `added`: the added tokens, each as a u8 length then its bytes; `added_slots`: an
///   open-addressing hash (linear probing, `table_hash::hash_bytes`, all ones when empty) of
///   their offsets in `added`; `added_lens`: per first byte, a u128 mask of their lengths.
fn write_open_family(out: &Path, name: &str, family: &OpenFamily) {
    let mut pool = Vec::new();
    let mut lens = Vec::with_capacity(family.tokens.len());
    for token in &family.tokens {
        lens.push(u8::try_from(token.len()).expect("a token under 256 bytes"));
        pool.extend_from_slice(token);
    }
    // The runtime's pair keys hold a token id in 20 bits, all ones meaning "never merges".
    assert!(
        family.tokens.len() < (1 << 20) - 1,
        "{name}: token ids fit 20 bits"
    );
    let m = family.merges.len();
    let mut planes = vec![0u8; 3 * m];
    let mut merge_left = Vec::with_capacity(m);
    let mut previous = 0i64;
    for (rank, &(id, left_len)) in family.merges.iter().enumerate() {
        assert!(
            rank < 1 << 24 && left_len < 256,
            "{name}: merge fits the tables"
        );
        let delta = i64::from(id) - previous;
        previous = i64::from(id);
        let zigzag = ((delta << 1) ^ (delta >> 63)) as u64;
        assert!(zigzag < 1 << 24, "{name}: merge delta fits three bytes");
        for k in 0..3 {
            planes[k * m + rank] = (zigzag >> (8 * k)) as u8;
        }
        merge_left.push(left_len as u8);
    }

    // Added tokens: entries `len, bytes`; a hash of entry offsets; per first byte, a mask of the
    // lengths of the added tokens that start with it (bit `len - 1`), for a leftmost-longest match.
    let mut added = Vec::new();
    let mut added_at = Vec::new();
    let mut first_lens = vec![0u128; 256];
    let mut unique: Vec<&Vec<u8>> = family.added.iter().collect();
    unique.sort();
    unique.dedup();
    for token in unique {
        assert!(
            !token.is_empty() && token.len() <= 128,
            "{name}: an added token of {} bytes",
            token.len()
        );
        added_at.push(added.len() as u32);
        added.push(token.len() as u8);
        added.extend_from_slice(token);
        first_lens[usize::from(token[0])] |= 1 << (token.len() - 1);
    }
    let added_mask = (added_at.len() * 2 + 1).next_power_of_two() - 1;
    let mut added_slots = vec![u32::MAX; added_mask + 1];
    for &at in &added_at {
        let len = usize::from(added[at as usize]);
        let token = &added[at as usize + 1..at as usize + 1 + len];
        let i = table_hash::free_slot(table_hash::hash_bytes(token) as usize, added_mask, |i| {
            added_slots[i] == u32::MAX
        });
        added_slots[i] = at;
    }
    let added_lens: Vec<u8> = first_lens.iter().flat_map(|m| m.to_le_bytes()).collect();
    let u32s = |v: Vec<u32>| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    for (ext, bytes) in [
        ("pool", pool),
        ("lens", lens),
        ("merge_ids", planes),
        ("merge_left", merge_left),
        ("added", added),
        ("added_slots", u32s(added_slots)),
        ("added_lens", added_lens),
    ] {
        fs::write(out.join(format!("{name}.open.{ext}")), bytes).expect("write an open table");
    }
}
