//! Per-tenant plugin settings sealed with AES-256-GCM (the pure-Rust `aes-gcm` crate).
//!
//! The key is derived from the `PLUGIN_SETTINGS_KEY` secret with HKDF-SHA256 (RFC 5869, the
//! `hkdf` crate; info `tollgate/plugin-settings/v1`); each value gets a fresh random 96-bit nonce;
//! the associated data binds the ciphertext to its tenant and plugin, so a sealed value copied to
//! another row does not open.
//!
//! Stored form: `v2:<key id>:` + hex(nonce ‖ ciphertext ‖ tag). The key id (8 hex digits, also
//! derived with HKDF from the secret, under its own info) tells which secret sealed a value, so a
//! value sealed under an earlier secret is recognised as such instead of being tried.
//!
//! Migration: values of the first format, `v1:` + hex(…) under the key SHA-256(secret), still
//! open; [`needs_reseal`] says which ones to seal again. New values are always `v2`.
//!
//! The hex decoder works byte by byte and never slices text, so a tampered row (non-ASCII, odd
//! length, `+`/`-` signs) is [`SealError::Malformed`], never a panic.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

/// The first format: key = SHA-256(secret), no key id. Opened, never written.
const PREFIX_V1: &str = "v1:";
/// The current format: HKDF key and key id.
const PREFIX_V2: &str = "v2:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// HKDF `info` of the encryption key.
const KEY_INFO: &[u8] = b"tollgate/plugin-settings/v1";
/// HKDF `info` of the key id (a separate output, so the id says nothing about the key).
const KEY_ID_INFO: &[u8] = b"tollgate/plugin-settings/key-id/v1";
/// Bytes of the key id (hex: twice as many digits).
const KEY_ID_LEN: usize = 4;

/// Why a sealed value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// Not in a known `v1:<hex>` / `v2:<key id>:<hex>` form, or too short.
    Malformed,
    /// Wrong key, wrong tenant/plugin, or tampered with.
    Rejected,
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealError::Malformed => write!(f, "the sealed settings are malformed"),
            SealError::Rejected => write!(
                f,
                "the sealed settings do not open with this key (was PLUGIN_SETTINGS_KEY changed?)"
            ),
        }
    }
}

/// The key and key id derived from the master secret.
struct Derived {
    key: [u8; 32],
    key_id: [u8; KEY_ID_LEN],
}

fn derive(master: &[u8]) -> Derived {
    let hk = Hkdf::<Sha256>::new(None, master);
    let mut key = [0u8; 32];
    let mut key_id = [0u8; KEY_ID_LEN];
    // Both lengths are far below HKDF-SHA256's limit of 255 × 32 bytes: expand cannot fail.
    let _ = hk.expand(KEY_INFO, &mut key);
    let _ = hk.expand(KEY_ID_INFO, &mut key_id);
    Derived { key, key_id }
}

fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))
}

/// The cipher of `v1` values: SHA-256 of the secret.
fn legacy_cipher(master: &[u8]) -> Aes256Gcm {
    let digest = Sha256::digest(master);
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&digest))
}

fn aad(tenant_id: &str, plugin_id: &str) -> Vec<u8> {
    format!("tollgate-plugin-settings\n{tenant_id}\n{plugin_id}").into_bytes()
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// Lower- or upper-case hex to bytes, one byte pair at a time; `None` on anything else.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some((nibble(*hi)? << 4) | nibble(*lo)?),
            _ => None,
        })
        .collect()
}

/// Seals `plain` for one tenant's enablement of one plugin. `nonce` must be fresh random bytes.
pub fn seal(
    master: &[u8],
    tenant_id: &str,
    plugin_id: &str,
    nonce: [u8; NONCE_LEN],
    plain: &[u8],
) -> String {
    let derived = derive(master);
    let aad = aad(tenant_id, plugin_id);
    // Encryption with a valid key and nonce cannot fail for inputs below 64 GiB.
    let sealed = cipher(&derived.key)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
        .unwrap_or_default();
    let mut out = String::with_capacity(
        PREFIX_V2.len() + 2 * KEY_ID_LEN + 1 + 2 * (NONCE_LEN + sealed.len()),
    );
    out.push_str(PREFIX_V2);
    push_hex(&mut out, &derived.key_id);
    out.push(':');
    push_hex(&mut out, &nonce);
    push_hex(&mut out, &sealed);
    out
}

/// Opens a value made by [`seal`] (or by the `v1` format before it) for the same tenant and
/// plugin.
pub fn open(
    master: &[u8],
    tenant_id: &str,
    plugin_id: &str,
    sealed: &str,
) -> Result<Vec<u8>, SealError> {
    let (cipher, hex) = if let Some(rest) = sealed.strip_prefix(PREFIX_V2) {
        let (key_id, hex) = rest.split_once(':').ok_or(SealError::Malformed)?;
        let key_id = decode_hex(key_id)
            .filter(|id| id.len() == KEY_ID_LEN)
            .ok_or(SealError::Malformed)?;
        let derived = derive(master);
        if key_id != derived.key_id {
            return Err(SealError::Rejected);
        }
        (cipher(&derived.key), hex)
    } else if let Some(hex) = sealed.strip_prefix(PREFIX_V1) {
        (legacy_cipher(master), hex)
    } else {
        return Err(SealError::Malformed);
    };
    let bytes = decode_hex(hex).ok_or(SealError::Malformed)?;
    if bytes.len() < NONCE_LEN + TAG_LEN {
        return Err(SealError::Malformed);
    }
    let (nonce, body) = bytes.split_at(NONCE_LEN);
    let aad = aad(tenant_id, plugin_id);
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: body,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Rejected)
}

/// Whether a stored value is in an older format and should be sealed again (with [`seal`]) the
/// next time it is written.
pub fn needs_reseal(sealed: &str) -> bool {
    !sealed.starts_with(PREFIX_V2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let sealed = seal(
            b"master",
            "ten_a",
            "weather",
            [7; 12],
            b"{\"api_key\":\"k\"}",
        );
        assert!(sealed.starts_with("v2:"));
        assert!(!needs_reseal(&sealed));
        assert!(!sealed.contains("api_key"));
        assert_eq!(
            open(b"master", "ten_a", "weather", &sealed).unwrap(),
            b"{\"api_key\":\"k\"}"
        );
        assert_eq!(
            open(b"other", "ten_a", "weather", &sealed),
            Err(SealError::Rejected)
        );
        assert_eq!(
            open(b"master", "ten_b", "weather", &sealed),
            Err(SealError::Rejected)
        );
        assert_eq!(
            open(b"master", "ten_a", "news", &sealed),
            Err(SealError::Rejected)
        );
        let mut tampered = sealed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        assert_eq!(
            open(b"master", "ten_a", "weather", &tampered),
            Err(SealError::Rejected)
        );
        for bad in ["v1:zz", "v2:zz", "v2:0011:00", "v3:00", "", "v2:"] {
            assert_eq!(
                open(b"master", "ten_a", "weather", bad),
                Err(SealError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_key_is_hkdf_of_the_secret_not_its_hash() {
        // The v2 ciphertext opens under HKDF-SHA256(secret, info) and not under SHA-256(secret).
        let sealed = seal(b"master", "t", "p", [3; 12], b"x");
        let (_, hex) = sealed.rsplit_once(':').unwrap();
        let bytes = decode_hex(hex).unwrap();
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let payload = || Payload {
            msg: body,
            aad: b"tollgate-plugin-settings\nt\np",
        };
        let hk = Hkdf::<Sha256>::new(None, b"master");
        let mut key = [0u8; 32];
        hk.expand(b"tollgate/plugin-settings/v1", &mut key).unwrap();
        assert_eq!(
            cipher(&key)
                .decrypt(Nonce::from_slice(nonce), payload())
                .unwrap(),
            b"x"
        );
        assert!(legacy_cipher(b"master")
            .decrypt(Nonce::from_slice(nonce), payload())
            .is_err());
    }

    /// A value in the first format, as the previous release wrote it: `v1:` + hex under the key
    /// SHA-256(secret).
    fn legacy_seal(
        master: &[u8],
        tenant: &str,
        plugin: &str,
        nonce: [u8; 12],
        plain: &[u8],
    ) -> String {
        let sealed = legacy_cipher(master)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad(tenant, plugin),
                },
            )
            .unwrap();
        let mut out = "v1:".to_string();
        push_hex(&mut out, &nonce);
        push_hex(&mut out, &sealed);
        out
    }

    #[test]
    fn values_of_the_first_format_still_open() {
        let old = legacy_seal(b"master", "ten_a", "weather", [9; 12], b"{\"k\":1}");
        assert!(needs_reseal(&old));
        assert_eq!(
            open(b"master", "ten_a", "weather", &old).unwrap(),
            b"{\"k\":1}"
        );
        assert_eq!(
            open(b"master", "ten_b", "weather", &old),
            Err(SealError::Rejected)
        );
        assert_eq!(
            open(b"other", "ten_a", "weather", &old),
            Err(SealError::Rejected)
        );
        // Sealed again, it is v2 and opens to the same settings.
        let plain = open(b"master", "ten_a", "weather", &old).unwrap();
        let new = seal(b"master", "ten_a", "weather", [1; 12], &plain);
        assert!(!needs_reseal(&new));
        assert_eq!(open(b"master", "ten_a", "weather", &new).unwrap(), plain);
    }

    #[test]
    fn tampered_rows_are_errors_not_panics() {
        let sealed = seal(b"m", "t", "p", [5; 12], b"settings");
        let (head, hex) = sealed.rsplit_once(':').unwrap();
        // A multi-byte character where a hex pair should be: the old decoder sliced inside it.
        let mut chars: Vec<char> = hex.chars().collect();
        chars[1] = 'é';
        let non_ascii: String = chars.iter().collect();
        for bad in [
            format!("{head}:{non_ascii}"),
            format!("{head}:{}", &hex[1..]),
            format!("{head}:+f{}", &hex[2..]),
            format!("{head}:-f{}", &hex[2..]),
            format!("{head}:日本{}", &hex[6..]),
            format!("v1:é{}", &hex[..hex.len() - 1]),
            format!("v1:{}", "€".repeat(40)),
            "v2:ééé:00".to_string(),
        ] {
            assert_eq!(
                open(b"m", "t", "p", &bad),
                Err(SealError::Malformed),
                "{bad}"
            );
        }
        // Upper-case hex is still hex.
        assert_eq!(
            open(b"m", "t", "p", &format!("{head}:{}", hex.to_uppercase())).unwrap(),
            b"settings"
        );
    }

    #[test]
    fn key_ids_tell_secrets_apart() {
        let a = seal(b"secret-a", "t", "p", [1; 12], b"x");
        let b = seal(b"secret-b", "t", "p", [1; 12], b"x");
        let id = |s: &str| s.split(':').nth(1).unwrap().to_string();
        assert_eq!(id(&a).len(), 2 * KEY_ID_LEN);
        assert_ne!(id(&a), id(&b));
        assert_eq!(id(&a), id(&seal(b"secret-a", "u", "q", [2; 12], b"y")));
    }

    #[test]
    fn fresh_nonces_give_different_ciphertexts() {
        let a = seal(b"m", "t", "p", [1; 12], b"same");
        let b = seal(b"m", "t", "p", [2; 12], b"same");
        assert_ne!(a, b);
    }
}
