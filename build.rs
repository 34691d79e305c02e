//! Generates the static tables of Tollgate's tokenizer (`src/core/tokens`), so that nothing is
//! parsed or built when the worker starts:
//!
//! - per encoding (`o200k_base`, `cl100k_base`): every token's bytes in rank order, a bitmap of
//!   where tokens start in them, and an open-addressing hash from bytes to the token's offset
//!   (which orders like its rank), written as binary files that the crate `include_bytes!`. The
//!   vocabularies are read out of tiktoken-rs (the reference the tests compare with), rank by rank.
//! - the Unicode classes of the pre-tokenizer regexes (`\p{L}`, `\p{N}`, `\s`, the case classes of
//!   o200k, and the case-insensitive letters of the contractions), from `regex-syntax`, the same
//!   tables the reference's regex engine uses, as a two-level lookup table.

#[path = "src/core/tokens/table_hash.rs"]
mod table_hash;

use std::fs;
use std::path::{Path, PathBuf};

use regex_syntax::hir::{Class, Hir, HirKind};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/core/tokens/table_hash.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    let cl100k = tiktoken_rs::cl100k_base().expect("tiktoken-rs builds cl100k_base");
    write_vocabulary(&out, "cl100k_base", &cl100k, 100_256);
    drop(cl100k);
    let o200k = tiktoken_rs::o200k_base().expect("tiktoken-rs builds o200k_base");
    write_vocabulary(&out, "o200k_base", &o200k, 199_998);
    drop(o200k);

    write_classes(&out);
}

/// Writes `<name>.bytes` (the tokens in rank order), `<name>.starts` (bit `i` set when a token
/// starts at byte `i`, plus the end; 8 bytes of padding for word reads) and `<name>.slots`
/// ([`table_hash::SLOT_BYTES`] per hash slot, a power of two) and `<name>.pairs` (the same
/// `offset + 1` or 0 for each of the 65,536 two-byte strings). Ordinary tokens have ranks
/// `0..expected` with no gaps.
fn write_vocabulary(out: &Path, name: &str, bpe: &tiktoken_rs::CoreBPE, expected: u32) {
    let mut bytes: Vec<u8> = Vec::with_capacity(expected as usize * 8);
    let mut offsets: Vec<u32> = Vec::with_capacity(expected as usize + 1);
    offsets.push(0);
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
        bytes.extend_from_slice(&token);
        offsets.push(u32::try_from(bytes.len()).expect("vocabulary under 4 GiB"));
        rank += 1;
    }
    assert_eq!(rank, expected, "{name}: unexpected vocabulary size");
    assert!(
        bytes.len() < table_hash::OFFSET_MASK as usize,
        "{name}: offsets must fit the slot"
    );

    let mut starts = vec![0u8; bytes.len() / 8 + 1 + 8];
    for &offset in &offsets {
        starts[offset as usize / 8] |= 1 << (offset % 8);
    }

    // Load factor about 0.76: linear probing; the fingerprint skips most foreign slots.
    let capacity = (expected as usize * 5 / 4).next_power_of_two();
    let mask = capacity - 1;
    let mut slots = vec![0u32; capacity];
    for r in 0..expected as usize {
        let key = &bytes[offsets[r] as usize..offsets[r + 1] as usize];
        let hash = table_hash::hash_bytes(key);
        let mut i = hash as usize & mask;
        while slots[i] != 0 {
            i = (i + 1) & mask;
        }
        slots[i] = table_hash::fingerprint(hash) | (offsets[r] + 1);
    }
    // Two-byte tokens, indexed directly by their bytes: every merge starts with these lookups.
    let mut pairs = vec![0u8; 65_536 * table_hash::SLOT_BYTES];
    for r in 0..expected as usize {
        let (start, end) = (offsets[r] as usize, offsets[r + 1] as usize);
        if end - start == 2 {
            let i = (usize::from(bytes[start]) << 8 | usize::from(bytes[start + 1]))
                * table_hash::SLOT_BYTES;
            pairs[i..i + table_hash::SLOT_BYTES]
                .copy_from_slice(&(offsets[r] + 1).to_le_bytes()[..table_hash::SLOT_BYTES]);
        }
    }
    let slot_bytes: Vec<u8> = slots
        .iter()
        .flat_map(|s| s.to_le_bytes()[..table_hash::SLOT_BYTES].to_vec())
        .collect();

    fs::write(out.join(format!("{name}.bytes")), &bytes).expect("write token bytes");
    fs::write(out.join(format!("{name}.starts")), &starts).expect("write token starts");
    fs::write(out.join(format!("{name}.slots")), slot_bytes).expect("write slots");
    fs::write(out.join(format!("{name}.pairs")), pairs).expect("write pairs");
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
