//! Per-tenant plugin settings sealed with AES-256-GCM (the pure-Rust `aes-gcm` crate).
//!
//! The key is SHA-256 of the `PLUGIN_SETTINGS_KEY` secret; each value gets a fresh random 96-bit
//! nonce; the associated data binds the ciphertext to its tenant and plugin, so a sealed value
//! copied to another row does not open. Stored form: `v1:` + hex(nonce ‖ ciphertext ‖ tag).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use sha2::{Digest, Sha256};

const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

/// Why a sealed value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// Not in the `v1:<hex>` form, or too short.
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

fn cipher(master: &[u8]) -> Aes256Gcm {
    let digest = Sha256::digest(master);
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&digest))
}

fn aad(tenant_id: &str, plugin_id: &str) -> Vec<u8> {
    format!("tollgate-plugin-settings\n{tenant_id}\n{plugin_id}").into_bytes()
}

/// Seals `plain` for one tenant's enablement of one plugin. `nonce` must be fresh random bytes.
pub fn seal(
    master: &[u8],
    tenant_id: &str,
    plugin_id: &str,
    nonce: [u8; NONCE_LEN],
    plain: &[u8],
) -> String {
    let aad = aad(tenant_id, plugin_id);
    // Encryption with a valid key and nonce cannot fail for inputs below 64 GiB.
    let sealed = cipher(master)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
        .unwrap_or_default();
    let mut out = String::with_capacity(PREFIX.len() + 2 * (NONCE_LEN + sealed.len()));
    out.push_str(PREFIX);
    for b in nonce.iter().chain(&sealed) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Opens a value made by [`seal`] for the same tenant and plugin.
pub fn open(
    master: &[u8],
    tenant_id: &str,
    plugin_id: &str,
    sealed: &str,
) -> Result<Vec<u8>, SealError> {
    let hex = sealed.strip_prefix(PREFIX).ok_or(SealError::Malformed)?;
    if hex.len() % 2 != 0 || hex.len() < 2 * (NONCE_LEN + 16) {
        return Err(SealError::Malformed);
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| SealError::Malformed)?;
    let (nonce, body) = bytes.split_at(NONCE_LEN);
    let aad = aad(tenant_id, plugin_id);
    cipher(master)
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: body,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Rejected)
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
        assert!(sealed.starts_with("v1:"));
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
        assert_eq!(
            open(b"master", "ten_a", "weather", "v1:zz"),
            Err(SealError::Malformed)
        );
    }

    #[test]
    fn fresh_nonces_give_different_ciphertexts() {
        let a = seal(b"m", "t", "p", [1; 12], b"same");
        let b = seal(b"m", "t", "p", [2; 12], b"same");
        assert_ne!(a, b);
    }
}
