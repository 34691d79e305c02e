//! Redemption codes: prepaid credit a tenant redeems with its own key.
//!
//! A code looks like `TG-7K3M-Q9XD-2HBN-WF4C`: 16 Crockford base-32 characters (80 random bits)
//! in groups of four. Only its digest is stored, HMAC-SHA256 keyed with the key pepper over the
//! normalised code with a `redeem:` prefix (so a code digest can never equal a key digest).
//! Normalising forgives what people get wrong when typing a code: case, dashes and spaces, and the
//! letters O, I and L for the digits 0, 1 and 1.

use crate::core::ids::{random_bytes, RandomError};
use crate::core::keys::key_digest;

/// Crockford's base-32 alphabet (no I, L, O, U).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Characters of a code, without prefix and dashes.
pub const CODE_CHARS: usize = 16;

/// The largest batch an operator can generate at once.
pub const MAX_BATCH: u64 = 1000;

/// A fresh random code, formatted for display.
pub fn generate_code() -> Result<String, RandomError> {
    let mut bytes = [0u8; 10];
    random_bytes(&mut bytes)?;
    let mut value = bytes.iter().fold(0u128, |v, &b| (v << 8) | u128::from(b));
    let mut chars = [0u8; CODE_CHARS];
    for c in chars.iter_mut().rev() {
        *c = ALPHABET[(value & 31) as usize];
        value >>= 5;
    }
    let mut out = String::from("TG");
    for group in chars.chunks(4) {
        out.push('-');
        out.extend(group.iter().map(|&b| char::from(b)));
    }
    Ok(out)
}

/// The canonical form of a typed code (16 alphabet characters), or `None` if it cannot be one.
pub fn normalize_code(input: &str) -> Option<String> {
    let mut s: String = input
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if s.len() == CODE_CHARS + 2 && s.starts_with("TG") {
        s.drain(..2);
    }
    let canonical: String = s
        .chars()
        .map(|c| match c {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect();
    let valid = canonical.len() == CODE_CHARS && canonical.bytes().all(|b| ALPHABET.contains(&b));
    valid.then_some(canonical)
}

/// The stored digest of a normalised code.
pub fn code_digest(pepper: &[u8], normalized: &str) -> String {
    key_digest(pepper, &format!("redeem:{normalized}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_have_the_documented_shape() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            let code = generate_code().unwrap();
            assert_eq!(code.len(), 2 + 4 * 5);
            assert!(code.starts_with("TG-"));
            let n = normalize_code(&code).unwrap();
            assert_eq!(n, code[2..].replace('-', ""));
            assert!(seen.insert(n), "duplicate code");
        }
    }

    #[test]
    fn normalisation_forgives_typing() {
        let canonical = "7K3M0Q9XD2HBN1FC";
        for typed in [
            "TG-7K3M-0Q9X-D2HB-N1FC",
            "tg-7k3m-oq9x-d2hb-nifc",
            "7K3M 0Q9X D2HB NLFC",
            "7k3m0q9xd2hbn1fc",
        ] {
            assert_eq!(normalize_code(typed).as_deref(), Some(canonical), "{typed}");
        }
        for bad in [
            "",
            "TG-",
            "7K3M-0Q9X-D2HB",
            "7K3M-0Q9X-D2HB-N1FCX",
            "7K3M-0Q9X-D2HB-N1F!",
            "UUUU-UUUU-UUUU-UUUU",
        ] {
            assert_eq!(normalize_code(bad), None, "{bad}");
        }
    }

    #[test]
    fn digests_depend_on_pepper_and_differ_from_key_digests() {
        let a = code_digest(b"pepper", "7K3M0Q9XD2HBN1FC");
        assert_eq!(a.len(), 64);
        assert_eq!(a, code_digest(b"pepper", "7K3M0Q9XD2HBN1FC"));
        assert_ne!(a, code_digest(b"other", "7K3M0Q9XD2HBN1FC"));
        assert_ne!(a, key_digest(b"pepper", "7K3M0Q9XD2HBN1FC"));
    }
}
