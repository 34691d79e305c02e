//! Unique, time-sortable identifiers and random tokens.
//!
//! IDs are ULIDs (<https://github.com/ulid/spec>) written in lowercase Crockford base32:
//! 26 characters encoding a 48-bit millisecond timestamp followed by 80 random bits. Because
//! the timestamp comes first and the alphabet is in ASCII order, IDs sort by creation time as
//! plain strings. Two IDs made in the same millisecond are ordered at random.
//!
//! Randomness comes from the platform CSPRNG through `getrandom` (`crypto.getRandomValues` on
//! Workers). Functions that make secrets ([`random_bytes`], [`random_token`]) return an error
//! when it fails; [`new_id`] never fails, see its fallback.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Length of an ID from [`new_id`].
pub const ID_LEN: usize = 26;

/// The largest timestamp a ULID can hold: 2^48 - 1 milliseconds (the year 10889).
pub const MAX_ID_TIME_MS: u64 = (1 << 48) - 1;

/// Lowercase Crockford base32, in ASCII order so encoded IDs sort like the numbers they hold.
const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// The characters of [`random_token`].
const TOKEN_ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The platform random number generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomError;

impl fmt::Display for RandomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the platform random number generator failed")
    }
}

impl std::error::Error for RandomError {}

/// Fills `buf` with cryptographically secure random bytes.
///
/// # Errors
///
/// [`RandomError`] if the platform generator fails (on Workers: if `crypto.getRandomValues`
/// is unavailable). `buf` is then left in an unspecified state and must not be used.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::getrandom(buf).map_err(|_| RandomError)
}

/// A new ULID for time `now_ms` (milliseconds since the Unix epoch), 26 lowercase Crockford
/// base32 characters.
///
/// A time beyond [`MAX_ID_TIME_MS`] is clamped to it. If the platform generator fails, the
/// 80 random bits come instead from a counter mixed with the time: the ID is then still
/// unique within this process, but predictable. IDs are identifiers, not secrets; use
/// [`random_token`] for secrets.
pub fn new_id(now_ms: u64) -> String {
    let mut random = [0u8; 10];
    if random_bytes(&mut random).is_err() {
        random = fallback_random(now_ms);
    }
    encode_ulid(now_ms, &random)
}

/// A new ID with a type prefix, `"<prefix>_<new_id>"`, e.g. `"req_01j9…"`.
pub fn prefixed_id(prefix: &str, now_ms: u64) -> String {
    let mut id = String::with_capacity(prefix.len() + 1 + ID_LEN);
    id.push_str(prefix);
    id.push('_');
    id.push_str(&new_id(now_ms));
    id
}

/// Whether `s` has the shape of a [`new_id`] ID: 26 lowercase Crockford base32 characters,
/// the first at most `7` (a ULID holds 128 bits, two fewer than 26 characters could).
pub fn is_valid_id(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == ID_LEN
        && matches!(bytes.first(), Some(b'0'..=b'7'))
        && bytes.iter().all(|b| CROCKFORD.contains(b))
}

/// The creation time (milliseconds since the Unix epoch) stored in a valid ID, or `None` if
/// `s` is not one.
pub fn id_time_ms(s: &str) -> Option<u64> {
    if !is_valid_id(s) {
        return None;
    }
    // The first 10 characters hold 50 bits: 2 zero bits, then the 48-bit time.
    s.bytes().take(10).try_fold(0u64, |acc, b| {
        let digit = CROCKFORD.iter().position(|&c| c == b)?;
        Some(acc << 5 | digit as u64)
    })
}

/// A random string of `len` characters from `[A-Za-z0-9]`, each drawn uniformly.
///
/// Each character takes one random byte; bytes of 248 or more are rejected and redrawn, so
/// that `byte % 62` has no bias (248 = 4 × 62).
///
/// # Errors
///
/// [`RandomError`] if the platform generator fails. There is deliberately no fallback:
/// tokens are secrets.
pub fn random_token(len: usize) -> Result<String, RandomError> {
    const ACCEPT_BELOW: u8 = 248;
    let mut token = String::with_capacity(len);
    // Rejection discards 8/256 of bytes; drawing ~1/16 more covers it almost always.
    // Long tokens are drawn in rounds of at most 1 KiB.
    let mut buf = vec![0u8; len.saturating_add(len / 16).saturating_add(8).min(1024)];
    while token.len() < len {
        random_bytes(&mut buf)?;
        for &b in &buf {
            if token.len() == len {
                break;
            }
            if b < ACCEPT_BELOW {
                token.push(char::from(TOKEN_ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    Ok(token)
}

/// Encodes a 48-bit time and 80 random bits as a 26-character ULID.
fn encode_ulid(now_ms: u64, random: &[u8; 10]) -> String {
    let time = now_ms.min(MAX_ID_TIME_MS);
    let mut value = u128::from(time) << 80;
    for (i, &b) in random.iter().enumerate() {
        value |= u128::from(b) << (8 * (9 - i));
    }
    (0..ID_LEN)
        .map(|i| {
            let shift = 5 * (ID_LEN - 1 - i);
            char::from(CROCKFORD[((value >> shift) & 0x1f) as usize])
        })
        .collect()
}

/// Stand-in for random bits when the platform generator fails: a process-wide counter and the
/// time, mixed with SplitMix64. Unique within the process, not unpredictable.
fn fallback_random(now_ms: u64) -> [u8; 10] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let high = splitmix64(now_ms ^ count.rotate_left(32));
    // The low 64 bits are a bijection of the counter, so no two calls in a process collide.
    let low = splitmix64(count);
    let mut out = [0u8; 10];
    out[..2].copy_from_slice(&high.to_be_bytes()[..2]);
    out[2..].copy_from_slice(&low.to_be_bytes());
    out
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const NOW: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    #[test]
    fn id_length_and_alphabet() {
        for _ in 0..1000 {
            let id = new_id(NOW);
            assert_eq!(id.len(), ID_LEN);
            assert!(id.bytes().all(|b| CROCKFORD.contains(&b)), "{id}");
            assert!(is_valid_id(&id), "{id}");
        }
    }

    #[test]
    fn ids_sort_by_time() {
        let mut previous = new_id(0);
        for t in [1, 2, 31, 32, 1000, NOW - 1, NOW, NOW + 1, MAX_ID_TIME_MS] {
            let id = new_id(t);
            assert!(id > previous, "{id} <= {previous}");
            previous = id;
        }
        let mut t = 1u64;
        while t < MAX_ID_TIME_MS {
            assert!(new_id(t) > new_id(t - 1), "at {t}");
            t = t * 3 + 1;
        }
    }

    #[test]
    fn ids_are_unique() {
        let ids: HashSet<String> = (0..10_000).map(|_| new_id(NOW)).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn known_encoding() {
        assert_eq!(encode_ulid(0, &[0; 10]), "00000000000000000000000000");
        assert_eq!(
            encode_ulid(MAX_ID_TIME_MS, &[0xff; 10]),
            "7zzzzzzzzzzzzzzzzzzzzzzzzz"
        );
        // The example from the ULID spec, lowercased: time 1469922850259.
        let id = encode_ulid(1_469_922_850_259, &[0; 10]);
        assert_eq!(&id[..10], "01arz3ndek");
        assert_eq!(
            encode_ulid(0, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 1]).as_bytes()[25],
            b'1'
        );
    }

    #[test]
    fn time_is_clamped_not_wrapped() {
        let id = new_id(u64::MAX);
        assert!(is_valid_id(&id));
        assert_eq!(id_time_ms(&id), Some(MAX_ID_TIME_MS));
        assert!(id > new_id(MAX_ID_TIME_MS - 1));
    }

    #[test]
    fn time_round_trips() {
        for t in [0, 1, NOW, MAX_ID_TIME_MS] {
            assert_eq!(id_time_ms(&new_id(t)), Some(t));
        }
        assert_eq!(id_time_ms("not an id"), None);
    }

    #[test]
    fn validity() {
        assert!(is_valid_id("01arz3ndektsv4rrffq69g5fav"));
        assert!(is_valid_id("7zzzzzzzzzzzzzzzzzzzzzzzzz"));
        assert!(!is_valid_id("8zzzzzzzzzzzzzzzzzzzzzzzzz")); // more than 128 bits
        assert!(!is_valid_id("01ARZ3NDEKTSV4RRFFQ69G5FAV")); // uppercase
        assert!(!is_valid_id("01arz3ndektsv4rrffq69g5fa")); // 25 chars
        assert!(!is_valid_id("01arz3ndektsv4rrffq69g5favv")); // 27 chars
        assert!(!is_valid_id("01arz3ndektsv4rrffq69g5fai")); // i is not Crockford
        assert!(!is_valid_id("01arz3ndektsv4rrffq69g5fal"));
        assert!(!is_valid_id("01arz3ndektsv4rrffq69g5fao"));
        assert!(!is_valid_id("01arz3ndektsv4rrffq69g5fau"));
        assert!(!is_valid_id("01arz3ndektsv4rrffq69g5fé")); // 26 bytes, non-ASCII
        assert!(!is_valid_id(""));
    }

    #[test]
    fn prefixed() {
        let id = prefixed_id("req", NOW);
        assert_eq!(id.len(), 4 + ID_LEN);
        assert!(id.starts_with("req_"));
        assert!(is_valid_id(&id[4..]));
        assert_eq!(prefixed_id("", NOW).len(), 1 + ID_LEN);
    }

    #[test]
    fn fallback_is_unique_and_valid() {
        let ids: HashSet<String> = (0..10_000)
            .map(|_| encode_ulid(NOW, &fallback_random(NOW)))
            .collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| is_valid_id(id)));
    }

    #[test]
    fn random_bytes_fill() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        random_bytes(&mut a).unwrap();
        random_bytes(&mut b).unwrap();
        assert_ne!(a, b);
        random_bytes(&mut []).unwrap();
    }

    #[test]
    fn token_length_and_alphabet() {
        for len in [0, 1, 15, 16, 17, 40, 1000, 5000] {
            let token = random_token(len).unwrap();
            assert_eq!(token.len(), len);
            assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()), "{token}");
        }
    }

    #[test]
    fn tokens_are_unique() {
        let tokens: HashSet<String> = (0..10_000).map(|_| random_token(20).unwrap()).collect();
        assert_eq!(tokens.len(), 10_000);
    }

    #[test]
    fn token_characters_are_roughly_uniform() {
        // 62,000 draws: each character expected 1000 times, standard deviation ~31.
        let token = random_token(62_000).unwrap();
        let mut counts = [0u32; 128];
        for b in token.bytes() {
            counts[usize::from(b)] += 1;
        }
        for &c in TOKEN_ALPHABET {
            let n = counts[usize::from(c)];
            assert!(
                (800..=1200).contains(&n),
                "{} seen {n} times",
                char::from(c)
            );
        }
    }
}
