//! The hash of the static token tables and the layout of one hash slot. Shared by `build.rs`
//! (which fills the table) and the runtime lookup, so both agree by construction.

/// Hash of a byte string: eight bytes at a time, multiplicative (64-bit ops are native in wasm),
/// with the length mixed in so that zero padding cannot collide two keys.
#[inline]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

/// A slot holds `offset` in its low [`OFFSET_BITS`] bits, where `offset` is
/// where the token starts in the pool of token bytes; then, in a vocabulary whose pool offsets
/// do not order like its ranks, the rank; then the entry's distance from its home slot (Robin
/// Hood order), capped at the largest value those top bits hold. An empty slot is all ones.
///
/// "None" is all ones, never zero, in every table: a long run of zero bytes in a data segment
/// makes wasm-opt split the segment around it, and the segment headers cost more gzip than the
/// zeros would.
pub const OFFSET_BITS: u32 = 21;

/// Mask of the offset part of a slot (`build.rs` checks that offsets stay below it).
pub const OFFSET_MASK: u32 = (1 << OFFSET_BITS) - 1;

/// The longest token of any vocabulary (`build.rs` checks it); longer keys are never looked up.
pub const MAX_TOKEN_LEN: usize = 128;

/// All ones in three bytes: no id.
pub const NO_ID: u32 = 0xFF_FFFF;
