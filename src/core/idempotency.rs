//! `Idempotency-Key`: a retried request is never charged twice.
//!
//! Semantics (modelled on Stripe's and OpenAI's): a key is scoped to the tenant, kept for
//! [`TTL_MS`] (24 h), and bound to the exact request body it was first used with.
//!
//! * First use: the request runs; the key is recorded as *pending* before the reservation.
//! * Same key, same body, first request still running: **409** `idempotency_key_in_progress`
//!   (retryable: the OpenAI SDKs retry a 409, and by then the first request may be done).
//! * Same key, same body, first request completed with a plain response: the stored response is
//!   **replayed** (same status and body, header `Idempotent-Replayed: true`), nothing is charged.
//! * Same key, same body, first request was a completed stream: **409** `idempotency_key_used`
//!   (streams are not stored; the first stream was delivered and charged once; not retryable).
//! * Same key, different body: **409** `idempotency_key_reused` (not retryable).
//! * A first request that failed without being charged (refused reservation, provider error before
//!   any output) releases its key, so a retry runs normally.

use sha2::{Digest, Sha256};

use crate::core::error::{ErrorKind, GatewayError};

/// How long a key is remembered.
pub const TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// Longest accepted key (Stripe's limit).
pub const MAX_KEY_LEN: usize = 255;

/// Plain responses up to this size are kept for replay; larger ones answer retries with 409.
pub const MAX_STORED_RESPONSE: usize = 1024 * 1024;

/// Checks an `Idempotency-Key` header value: 1–255 visible ASCII characters.
pub fn validate_key(key: &str) -> Result<&str, GatewayError> {
    let valid =
        !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(key)
    } else {
        Err(GatewayError::invalid_param(
            "Idempotency-Key",
            format!(
                "The Idempotency-Key header must be 1 to {MAX_KEY_LEN} visible ASCII characters."
            ),
        ))
    }
}

/// Lowercase hex SHA-256 of the request body.
pub fn body_digest(body: &[u8]) -> String {
    Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A key's record, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub body_digest: String,
    pub request_id: String,
    pub done: bool,
    pub stream: bool,
    pub http_status: Option<u16>,
    pub response: Option<String>,
    pub created_at: u64,
}

/// What to answer a request whose key is already recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The record is older than [`TTL_MS`]: forget it and run the request.
    Expired,
    /// Send the stored response again.
    Replay { http_status: u16, body: String },
    /// Refuse with this error.
    Refuse(GatewayError),
}

/// Decides about a request with body digest `digest` whose key already has `record`.
pub fn decide(record: &KeyRecord, digest: &str, now_ms: u64) -> Seen {
    if now_ms.saturating_sub(record.created_at) >= TTL_MS {
        return Seen::Expired;
    }
    if record.body_digest != digest {
        return Seen::Refuse(
            GatewayError::new(
                ErrorKind::Conflict,
                "This Idempotency-Key was already used with a different request body. Use a new \
                 key for a new request.",
            )
            .with_code("idempotency_key_reused"),
        );
    }
    if !record.done {
        return Seen::Refuse(
            GatewayError::new(
                ErrorKind::Conflict,
                format!(
                    "A request with this Idempotency-Key ({}) is still in progress; retry later.",
                    record.request_id
                ),
            )
            .with_code("idempotency_key_in_progress"),
        );
    }
    match (&record.response, record.http_status) {
        (Some(body), Some(http_status)) if !record.stream => Seen::Replay {
            http_status,
            body: body.clone(),
        },
        _ => Seen::Refuse(
            GatewayError::new(
                ErrorKind::Conflict,
                format!(
                    "This Idempotency-Key was already used by request {}, which completed and was \
                     charged once; its response cannot be replayed (streams are not stored).",
                    record.request_id
                ),
            )
            .with_code("idempotency_key_used"),
        ),
    }
}

/// Whether a refusal with this error code is final (the SDKs must not retry it).
pub fn is_final_refusal(code: &str) -> bool {
    matches!(code, "idempotency_key_reused" | "idempotency_key_used")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(done: bool, stream: bool) -> KeyRecord {
        KeyRecord {
            body_digest: body_digest(b"{}"),
            request_id: "req_1".into(),
            done,
            stream,
            http_status: done.then_some(200),
            response: (done && !stream).then(|| "{\"id\":\"x\"}".to_string()),
            created_at: 1_000,
        }
    }

    #[test]
    fn keys_are_validated() {
        assert!(validate_key("stainless-node-retry-0b6f-42").is_ok());
        assert!(validate_key(&"k".repeat(255)).is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key(&"k".repeat(256)).is_err());
        assert!(validate_key("has space").is_err());
        assert!(validate_key("é").is_err());
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            body_digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn decisions() {
        let d = body_digest(b"{}");
        assert_eq!(
            decide(&record(true, false), &d, 2_000),
            Seen::Replay {
                http_status: 200,
                body: "{\"id\":\"x\"}".into()
            }
        );
        let code = |s: Seen| match s {
            Seen::Refuse(e) => e.code().to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(
            code(decide(&record(false, false), &d, 2_000)),
            "idempotency_key_in_progress"
        );
        assert_eq!(
            code(decide(&record(true, true), &d, 2_000)),
            "idempotency_key_used"
        );
        assert_eq!(
            code(decide(&record(true, false), "other", 2_000)),
            "idempotency_key_reused"
        );
        // the body check comes first, even while in progress
        assert_eq!(
            code(decide(&record(false, false), "other", 2_000)),
            "idempotency_key_reused"
        );
        assert_eq!(
            decide(&record(false, false), &d, 1_000 + TTL_MS),
            Seen::Expired
        );
        assert!(is_final_refusal("idempotency_key_used"));
        assert!(!is_final_refusal("idempotency_key_in_progress"));
    }
}
