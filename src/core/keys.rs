//! Tenant API keys: generating, parsing, and checking them against stored digests.
//!
//! A key reads `tg-<key_id>-<secret>`:
//!
//! * `key_id` is a [`new_id`] ULID (26 lowercase Crockford base32 characters). It is not
//!   secret; it names the key's row, so a lookup needs no scan.
//! * `secret` is [`random_token`]`(40)`: 40 characters of `[A-Za-z0-9]`, about 238 bits.
//!
//! The gateway stores only [`key_digest`] of a key: lowercase hex HMAC-SHA256 keyed with a
//! server-side pepper, over the full key string. A leaked table without the pepper reveals
//! nothing usable, and a high-entropy secret needs no slow password hash.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::ids::{is_valid_id, new_id, random_token, RandomError, ID_LEN};

/// Every key starts with this.
pub const KEY_PREFIX: &str = "tg-";

/// Length of the secret part of a key.
pub const SECRET_LEN: usize = 40;

/// Length of a whole key: prefix, key id, dash, secret.
pub const KEY_LEN: usize = KEY_PREFIX.len() + ID_LEN + 1 + SECRET_LEN;

/// Length of a [`key_digest`]: 32 bytes in hex.
pub const DIGEST_HEX_LEN: usize = 64;

/// A freshly generated key. Show `key` to the tenant once; store `key_id` and the digest.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    /// The public identifier inside the key.
    pub key_id: String,
    /// The full key, `tg-<key_id>-<secret>`. Secret.
    pub key: String,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("key_id", &self.key_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Generates a new key whose id carries the time `now_ms`.
///
/// # Errors
///
/// [`RandomError`] if the platform random generator fails: a key is never made from weak
/// randomness.
pub fn generate_api_key(now_ms: u64) -> Result<GeneratedKey, RandomError> {
    let secret = random_token(SECRET_LEN)?;
    let key_id = new_id(now_ms);
    let mut key = String::with_capacity(KEY_LEN);
    key.push_str(KEY_PREFIX);
    key.push_str(&key_id);
    key.push('-');
    key.push_str(&secret);
    Ok(GeneratedKey { key_id, key })
}

/// The two parts of a well-formed key, borrowed from it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    /// The key id: a valid ULID.
    pub key_id: &'a str,
    /// The secret: [`SECRET_LEN`] characters of `[A-Za-z0-9]`.
    pub secret: &'a str,
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Splits a key into id and secret, or `None` unless it is exactly `tg-`, a valid key id,
/// `-`, and a secret of [`SECRET_LEN`] ASCII letters and digits. Nothing is trimmed or
/// case-folded.
pub fn parse_api_key(s: &str) -> Option<ParsedKey<'_>> {
    if s.len() != KEY_LEN {
        return None;
    }
    let rest = s.strip_prefix(KEY_PREFIX)?;
    // `get` rather than indexing: a non-ASCII string of the right length must not panic.
    let key_id = rest.get(..ID_LEN)?;
    let secret = rest.get(ID_LEN..)?.strip_prefix('-')?;
    let well_formed = is_valid_id(key_id)
        && secret.len() == SECRET_LEN
        && secret.bytes().all(|b| b.is_ascii_alphanumeric());
    well_formed.then_some(ParsedKey { key_id, secret })
}

/// The token of an `Authorization: Bearer <token>` header value, or `None` if the scheme is
/// not `Bearer` (any case) or the token is empty or contains whitespace. Surrounding
/// whitespace is trimmed.
pub fn bearer_token(authorization_header: &str) -> Option<&str> {
    let value = authorization_header.trim();
    let (scheme, token) = value.split_once(|c: char| c.is_ascii_whitespace())?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    if token.is_empty() || token.contains(|c: char| c.is_whitespace()) {
        return None;
    }
    Some(token)
}

/// Lowercase hex HMAC-SHA256 of the full key string, keyed with `pepper`.
///
/// Returns an empty string, which [`key_matches`] never accepts, in the one case HMAC
/// cannot be set up; `hmac` accepts keys of every length, so that does not happen.
pub fn key_digest(pepper: &[u8], key: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(pepper) else {
        return String::new();
    };
    mac.update(key.as_bytes());
    to_hex(&mac.finalize().into_bytes())
}

/// Compares two byte strings in time that depends only on their lengths, never on where they
/// differ (`subtle::ConstantTimeEq`). Lengths are not hidden: compare fixed-length digests
/// (as [`admin_token_matches`] does) when the length is secret too.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// The shortest admin token the gateway accepts, in bytes: a shorter one is a configuration
/// error (the admin API answers 503 and does not compare).
pub const MIN_ADMIN_TOKEN_BYTES: usize = 32;

/// Why a configured admin token is unusable, if it is.
pub fn admin_token_problem(configured: &str) -> Option<String> {
    (configured.len() < MIN_ADMIN_TOKEN_BYTES).then(|| {
        format!(
            "The ADMIN_TOKEN secret is too short ({} bytes; at least {MIN_ADMIN_TOKEN_BYTES} \
             are required): the admin API is disabled until it is replaced with a long random \
             token (e.g. `openssl rand -hex 32`).",
            configured.len()
        )
    })
}

/// Whether a presented admin token equals the configured one. Both are hashed (HMAC-SHA256
/// under a fixed domain key) and the 32-byte digests compared in constant time, so neither
/// the position of a difference nor the configured token's length shows in the timing.
pub fn admin_token_matches(presented: &str, configured: &str) -> bool {
    let digest = |token: &str| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(b"tollgate/admin-token/v1") else {
            return [0u8; 32];
        };
        mac.update(token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    };
    let (a, b) = (digest(presented), digest(configured));
    // An empty configured token never matches (the digests of "" would).
    !configured.is_empty() && bool::from(a.ct_eq(&b))
}

/// Failed admin attempts allowed per client address and window before it is refused.
pub const ADMIN_FAILURES_PER_WINDOW: u64 = 10;
/// Length of an admin-failure window, in ms.
pub const ADMIN_FAILURE_WINDOW_MS: u64 = 60_000;

/// The window (its start, in ms) that `now_ms` falls in.
pub fn admin_failure_window(now_ms: u64) -> u64 {
    now_ms - now_ms % ADMIN_FAILURE_WINDOW_MS
}

/// With `failures` failed attempts already seen in the window of `now_ms`: `None` to let the
/// attempt through, or the seconds until the window ends (`Retry-After`) to refuse it before
/// any comparison.
pub fn admin_throttle(now_ms: u64, failures: u64) -> Option<u64> {
    if failures < ADMIN_FAILURES_PER_WINDOW {
        return None;
    }
    let ends = admin_failure_window(now_ms) + ADMIN_FAILURE_WINDOW_MS;
    Some((ends - now_ms).div_ceil(1000).max(1))
}

/// Whether `key` hashes to `stored_hex_digest` (as made by [`key_digest`] with the same
/// pepper), compared in constant time. A stored digest that is not 64 hex digits never
/// matches; uppercase hex is accepted.
pub fn key_matches(pepper: &[u8], key: &str, stored_hex_digest: &str) -> bool {
    if stored_hex_digest.len() != DIGEST_HEX_LEN
        || !stored_hex_digest.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return false;
    }
    let computed = key_digest(pepper, key);
    let stored = stored_hex_digest.to_ascii_lowercase();
    constant_time_eq(computed.as_bytes(), stored.as_bytes())
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_767_225_600_000;
    const PEPPER: &[u8] = b"test pepper";

    fn hmac_hex(key: &[u8], data: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(data);
        to_hex(&mac.finalize().into_bytes())
    }

    #[test]
    fn rfc4231_test_vectors() {
        // Test case 1.
        assert_eq!(
            key_digest(&[0x0b; 20], "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // Test case 2: a key shorter than the output.
        assert_eq!(
            key_digest(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 3: 50 bytes of 0xdd (not valid UTF-8, so through the raw helper).
        assert_eq!(
            hmac_hex(&[0xaa; 20], &[0xdd; 50]),
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"
        );
        // Test case 6: a key longer than the block size is hashed first.
        assert_eq!(
            key_digest(
                &[0xaa; 131],
                "Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn empty_pepper_still_digests() {
        let digest = key_digest(b"", "tg-x");
        assert_eq!(digest.len(), DIGEST_HEX_LEN);
        assert!(key_matches(b"", "tg-x", &digest));
    }

    #[test]
    fn generated_key_round_trips() {
        for _ in 0..200 {
            let generated = generate_api_key(NOW).unwrap();
            assert_eq!(generated.key.len(), KEY_LEN);
            let parsed = parse_api_key(&generated.key).expect("well-formed");
            assert_eq!(parsed.key_id, generated.key_id);
            assert_eq!(parsed.secret.len(), SECRET_LEN);
            assert_eq!(
                generated.key,
                format!("tg-{}-{}", parsed.key_id, parsed.secret)
            );
        }
    }

    #[test]
    fn generated_keys_differ() {
        let a = generate_api_key(NOW).unwrap();
        let b = generate_api_key(NOW).unwrap();
        assert_ne!(a.key, b.key);
        assert_ne!(a.key_id, b.key_id);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let generated = generate_api_key(NOW).unwrap();
        let parsed = parse_api_key(&generated.key).unwrap();
        let secret = parsed.secret;
        assert!(!format!("{generated:?}").contains(secret));
        assert!(!format!("{parsed:?}").contains(secret));
        assert!(format!("{parsed:?}").contains(parsed.key_id));
    }

    #[test]
    fn malformed_keys_are_rejected() {
        let good = format!("tg-01arz3ndektsv4rrffq69g5fav-{}", "a1B2".repeat(10));
        assert!(parse_api_key(&good).is_some());

        let with_id = |id: &str| format!("tg-{id}-{}", "x".repeat(SECRET_LEN));
        let bad = [
            String::new(),
            "tg-".into(),
            "tg--".into(),
            good.replacen("tg-", "TG-", 1),
            good.replacen("tg-", "sk-", 1),
            good.replacen("tg-", "tg_", 1),
            good[1..].to_string(),
            format!("x{good}"),
            format!("{good}x"),
            good[..good.len() - 1].to_string(), // short secret
            format!("{} ", &good[..good.len() - 1]), // space in secret
            format!("{}-", &good[..good.len() - 1]), // dash in secret
            format!("{}é", &good[..good.len() - 2]), // non-ASCII, same byte length
            format!(" {}", &good[1..]),         // leading space
            good.replacen("-a1B2", "_a1B2", 1), // wrong separator
            with_id("01ARZ3NDEKTSV4RRFFQ69G5FAV"), // uppercase id
            with_id("8zzzzzzzzzzzzzzzzzzzzzzzzz"), // id out of range
            with_id("01arz3ndektsv4rrffq69g5fai"), // not Crockford
            format!("tg-01arz3ndektsv4rrffq69g5fa--{}", "x".repeat(SECRET_LEN)), // extra dash
            format!(
                "tg-01arz-3ndektsv4rrffq69g5fa-{}",
                "x".repeat(SECRET_LEN - 1)
            ),
            format!("tg-é1arz3ndektsv4rrffq69g5fa-{}", "x".repeat(SECRET_LEN)),
        ];
        for key in &bad {
            assert_eq!(parse_api_key(key), None, "{key:?}");
        }
    }

    #[test]
    fn parse_never_panics_on_multibyte_boundaries() {
        // Put a multi-byte character across every index the parser slices at.
        let good = format!("tg-01arz3ndektsv4rrffq69g5fav-{}", "x".repeat(SECRET_LEN));
        for i in 0..good.len() - 1 {
            let key = format!("{}é{}", &good[..i], &good[i + 2..]);
            assert_eq!(key.len(), KEY_LEN);
            assert_eq!(parse_api_key(&key), None, "{key:?}");
        }
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("  Bearer   abc  "), Some("abc"));
        assert_eq!(bearer_token("Bearer\tabc"), Some("abc"));
        assert_eq!(bearer_token("Bearer tg-a-b"), Some("tg-a-b"));
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer    "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer a b"), None);
        assert_eq!(bearer_token("abc"), None);
        assert_eq!(bearer_token(""), None);
        assert_eq!(bearer_token("Bearér abc"), None);
    }

    #[test]
    fn digest_shape() {
        let digest = key_digest(PEPPER, "tg-anything");
        assert_eq!(digest.len(), DIGEST_HEX_LEN);
        assert!(digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(digest, key_digest(b"other pepper", "tg-anything"));
        assert_ne!(digest, key_digest(PEPPER, "tg-anythinG"));
    }

    #[test]
    fn keys_match_their_digest_only() {
        let generated = generate_api_key(NOW).unwrap();
        let other = generate_api_key(NOW).unwrap();
        let stored = key_digest(PEPPER, &generated.key);

        assert!(key_matches(PEPPER, &generated.key, &stored));
        assert!(key_matches(
            PEPPER,
            &generated.key,
            &stored.to_ascii_uppercase()
        ));
        assert!(!key_matches(PEPPER, &other.key, &stored));
        assert!(!key_matches(b"wrong pepper", &generated.key, &stored));
        assert!(!key_matches(PEPPER, &generated.key, ""));
        assert!(!key_matches(PEPPER, &generated.key, &stored[1..]));
        assert!(!key_matches(PEPPER, &generated.key, &format!("{stored}0")));
        let not_hex = format!("{}g", &stored[1..]);
        assert!(!key_matches(PEPPER, &generated.key, &not_hex));
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"xbc"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(!constant_time_eq(&[0x80], &[0x00]));
    }

    #[test]
    fn admin_tokens_are_compared_by_digest_and_must_be_long() {
        let token = "0123456789abcdef0123456789abcdef";
        assert!(admin_token_problem(token).is_none());
        let short = admin_token_problem(&token[1..]).expect("31 bytes is too short");
        assert!(short.contains("ADMIN_TOKEN") && short.contains("31 bytes"));
        assert!(admin_token_problem("").is_some());
        assert!(admin_token_matches(token, token));
        assert!(!admin_token_matches(&token[1..], token));
        assert!(!admin_token_matches(&format!("{token}0"), token));
        assert!(!admin_token_matches("", token));
        assert!(!admin_token_matches("", ""));
    }

    #[test]
    fn admin_failures_are_throttled_per_window() {
        let start = 1_767_225_600_000; // a window boundary
        assert_eq!(admin_failure_window(start + 59_999), start);
        assert_eq!(admin_failure_window(start + 60_000), start + 60_000);
        assert_eq!(admin_throttle(start, ADMIN_FAILURES_PER_WINDOW - 1), None);
        assert_eq!(admin_throttle(start, ADMIN_FAILURES_PER_WINDOW), Some(60));
        assert_eq!(admin_throttle(start + 59_500, 50), Some(1));
        assert_eq!(admin_throttle(start + 30_000, 10), Some(30));
    }
}
