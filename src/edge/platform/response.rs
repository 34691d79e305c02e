//! Building Workers responses: JSON and byte bodies, and the error body of a [`GatewayError`]
//! (its shape is `core`'s). No routing, no Tollgate domain.

use serde::Serialize;
use worker::{Headers, Response, ResponseBuilder};

use crate::core::error::{ErrorKind, GatewayError};

/// Converts a worker error into a gateway error (500) with its message.
pub fn internal(context: &str, err: impl std::fmt::Display) -> GatewayError {
    GatewayError::internal(format!("{context}: {err}"))
}

pub fn json<T: Serialize>(status: u16, value: &T) -> Result<Response, GatewayError> {
    let body = serde_json::to_vec(value).map_err(|e| internal("encode response", e))?;
    bytes_response(status, "application/json", body)
}

pub fn bytes_response(
    status: u16,
    content_type: &str,
    body: Vec<u8>,
) -> Result<Response, GatewayError> {
    let headers = Headers::new();
    headers
        .set("content-type", content_type)
        .map_err(|e| internal("set header", e))?;
    Ok(ResponseBuilder::new()
        .with_status(status)
        .with_headers(headers)
        .fixed(body))
}

pub fn error_response(err: &GatewayError) -> worker::Result<Response> {
    error_response_in(err, crate::core::inbound::openai::error_body(err))
}

/// The error response of `err` with `body` (its error body in the client's API), the status
/// and retry header as [`error_response`].
pub fn error_response_in(err: &GatewayError, body: String) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    if err.kind == ErrorKind::InsufficientQuota
        || err.status() == 401
        || crate::core::idempotency::is_final_refusal(err.code())
    {
        // The OpenAI SDKs retry 429 and 5xx unless told not to; a refusal is final.
        headers.set("x-should-retry", "false")?;
    }
    // A gateway rate limit (the key's or tenant's own): retry-after and the x-ratelimit-* values.
    for (name, value) in crate::core::wallet::refusal_headers(err) {
        headers.set(name, &value)?;
    }
    Ok(ResponseBuilder::new()
        .with_status(err.status())
        .with_headers(headers)
        .fixed(body.into_bytes()))
}

/// What a client may see of `err`. Server-side failures (kind `Internal`, or `Unavailable`
/// without the `configuration_error` code) carry storage errors, SQL constraint names, secret
/// names and internal URLs: their message becomes a generic one with the request id (the
/// caller logs the full detail). Everything else is the client's own business and kept.
pub fn public_error(err: &GatewayError, request_id: &str) -> GatewayError {
    let generic = match err.kind {
        ErrorKind::Internal => Some(
            "The gateway had an internal error while processing your request. If it persists, \
             contact the operator and quote the request id",
        ),
        ErrorKind::Unavailable if err.code() != crate::edge::platform::env::CONFIG_ERROR_CODE => {
            Some(
                "The gateway's storage is temporarily unavailable. Retry shortly; if it persists, \
             contact the operator and quote the request id",
            )
        }
        _ => None,
    };
    match generic {
        Some(text) => GatewayError {
            message: format!("{text} {request_id}."),
            ..err.clone()
        },
        None => err.clone(),
    }
}
