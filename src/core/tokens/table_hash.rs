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
#[inline(always)]
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
    // A product's low bits depend only on its factors' low bits: fold the high half in and
    // multiply again, so that the low bits (the home slot) depend on every byte. Without it,
    // similar tokens clustered and a quarter of o200k_base's entries sat 7+ slots from home.
    h ^= h >> 32;
    h = h.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    h ^ (h >> 32)
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

/// The index of a three-byte UTF-8 character (lead byte `1110xxxx`, two continuation bytes) in
/// a table of all 65,536 such byte strings: its 16 payload bits. `None` for any other key.
/// Chinese, Japanese and Korean characters are three-byte characters, and looking a whole
/// character up is the commonest hit of a merge in those scripts.
#[inline]
pub fn char3_index(key: &[u8]) -> Option<usize> {
    match *key {
        [a, b, c] if a & 0xF0 == 0xE0 && b & 0xC0 == 0x80 && c & 0xC0 == 0x80 => {
            Some(usize::from(a & 0x0F) << 12 | usize::from(b & 0x3F) << 6 | usize::from(c & 0x3F))
        }
        _ => None,
    }
}

/// Whether a key of a merge belongs to the domain of the miss filter: three bytes or more, and
/// its first or last byte is not ASCII. These keys are most of a merge's lookups in text that is
/// not written in ASCII (Chinese: about two thirds of them misses), while only a third of
/// o200k_base's tokens (2% of cl100k_base's) are in the domain, so a small filter over them
/// answers most misses without a probe of the hash slots.
#[inline]
pub fn in_filter_domain(key: &[u8]) -> bool {
    key.len() >= 3 && (key[0] | key[key.len() - 1]) >= 0x80
}

/// The 64-bit word of a filter of `words_mask + 1` words, and the bits in it, for a key of hash
/// `hash`: a blocked Bloom filter with three bits per key in one word (one memory access per
/// test). Bits of the hash above those that choose a home slot.
#[inline]
pub fn filter_probe(hash: u64, words_mask: usize) -> (usize, u64) {
    let word = (hash >> 40) as usize & words_mask;
    let bits = 1u64 << (hash >> 22 & 63) | 1u64 << (hash >> 28 & 63) | 1u64 << (hash >> 34 & 63);
    (word, bits)
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

/// What a probe learns at one slot ([`probe`]).
pub enum Probe<T> {
    /// The key is here.
    Found(T),
    /// The key is in no slot (an empty slot, or in Robin Hood order one nearer its home).
    Absent,
    /// Not this slot: go on to the next.
    Next,
}

/// The probe loop of every open-addressing table of the tokenizer (linear probing): calls
/// `visit(slot index, distance from home)` from `home` on, wrapping at `mask`, until it answers
/// [`Probe::Found`] or [`Probe::Absent`]. Each table says what a slot means; the loop is here.
#[inline(always)]
pub fn probe<T>(
    home: usize,
    mask: usize,
    mut visit: impl FnMut(usize, usize) -> Probe<T>,
) -> Option<T> {
    let mut i = home & mask;
    let mut distance = 0;
    loop {
        match visit(i, distance) {
            Probe::Found(found) => return Some(found),
            Probe::Absent => return None,
            Probe::Next => {}
        }
        i = (i + 1) & mask;
        distance += 1;
    }
}

/// The index of the first free slot (`free(i)`) from `home` on: where linear probing inserts.
#[inline]
pub fn free_slot(home: usize, mask: usize, free: impl Fn(usize) -> bool) -> usize {
    probe(home, mask, |i, _| {
        if free(i) {
            Probe::Found(i)
        } else {
            Probe::Next
        }
    })
    .unwrap_or(home & mask)
}
