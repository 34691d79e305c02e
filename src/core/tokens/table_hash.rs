//! The hash of the static token tables and the layout of one hash slot. Shared by `build.rs`
//! (which fills the table) and the runtime lookup, so both agree by construction.

/// The bytes of a string of 1 to 8 bytes as one word, without a variable-length copy: two
/// overlapping 4-byte reads from 4 bytes on, else the first, middle and last byte. Two strings
/// of the same length are equal exactly when their words are.
#[inline]
pub fn short_word(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    if n >= 4 {
        let lo = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let t = &bytes[n - 4..];
        let hi = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        u64::from(lo) | u64::from(hi) << 32
    } else if n > 0 {
        u64::from(bytes[0]) | u64::from(bytes[n / 2]) << 8 | u64::from(bytes[n - 1]) << 16
    } else {
        0
    }
}

#[inline]
fn word8(bytes: &[u8]) -> u64 {
    u64::from_le_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ])
}

/// Hash of a byte string: eight bytes at a time, multiplicative (64-bit ops are native in wasm),
/// the last 1–8 bytes read as one (possibly overlapping) word, with the length mixed in.
#[inline]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let n = bytes.len();
    let mut h = (n as u64).wrapping_mul(K);
    let last = if n > 8 {
        let mut i = 0;
        while i + 8 < n {
            h = (h.rotate_left(23) ^ word8(&bytes[i..])).wrapping_mul(K);
            i += 8;
        }
        word8(&bytes[n - 8..])
    } else {
        short_word(bytes)
    };
    h = (h.rotate_left(23) ^ last).wrapping_mul(K);
    h ^ (h >> 29)
}

/// Whether two strings of the same length are equal, without a call to `memcmp` for the short
/// ones (most lookups).
#[inline]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    debug_assert_eq!(a.len(), b.len());
    if a.len() <= 8 {
        short_word(a) == short_word(b)
    } else {
        a == b
    }
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
