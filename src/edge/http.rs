//! Response helpers and bounded body reading.

use futures::StreamExt;
use serde::Serialize;
use worker::{Headers, Request, Response, ResponseBuilder};

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
        ErrorKind::Unavailable if err.code() != super::auth::CONFIG_ERROR_CODE => Some(
            "The gateway's storage is temporarily unavailable. Retry shortly; if it persists, \
             contact the operator and quote the request id",
        ),
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

/// [`error_response`] of [`public_error`]: the answer to a request that failed.
pub fn public_error_response(err: &GatewayError, request_id: &str) -> worker::Result<Response> {
    error_response(&public_error(err, request_id))
}

pub fn error_response(err: &GatewayError) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    if err.kind == ErrorKind::InsufficientQuota
        || err.status() == 401
        || crate::core::idempotency::is_final_refusal(err.code())
    {
        // The OpenAI SDKs retry 429 and 5xx unless told not to; a refusal is final.
        headers.set("x-should-retry", "false")?;
    }
    Ok(ResponseBuilder::new()
        .with_status(err.status())
        .with_headers(headers)
        .fixed(crate::core::inbound::openai::error_body(err).into_bytes()))
}

/// Adds the request id and CORS headers every response carries.
pub fn with_common_headers(mut resp: Response, request_id: &str) -> worker::Result<Response> {
    let h = resp.headers_mut();
    if !h.has("x-request-id")? {
        h.set("x-request-id", request_id)?;
    }
    h.set("access-control-allow-origin", "*")?;
    h.set(
        "access-control-expose-headers",
        "x-request-id, x-session-id, x-tollgate-cost",
    )?;
    Ok(resp)
}

pub fn preflight() -> Result<Response, GatewayError> {
    let headers = Headers::new();
    for (k, v) in [
        ("access-control-allow-methods", "GET, POST, PUT, DELETE, OPTIONS"),
        (
            "access-control-allow-headers",
            "authorization, content-type, x-session-id, idempotency-key, openai-organization, openai-project, x-stainless-os, x-stainless-lang, x-stainless-package-version, x-stainless-runtime, x-stainless-runtime-version, x-stainless-arch, x-stainless-retry-count, x-stainless-timeout",
        ),
        ("access-control-max-age", "86400"),
    ] {
        headers.set(k, v).map_err(|e| internal("set header", e))?;
    }
    Ok(ResponseBuilder::new()
        .with_status(204)
        .with_headers(headers)
        .empty())
}

/// Reads the request body, refusing with 413 as soon as it grows past `limit` bytes.
pub async fn read_body(req: &mut Request, limit: usize) -> Result<Vec<u8>, GatewayError> {
    let too_large = || {
        GatewayError::new(
            ErrorKind::PayloadTooLarge,
            format!("The request body is larger than the limit of {limit} bytes."),
        )
    };
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|len| len.trim().parse::<u64>().ok());
    if let Some(len) = declared {
        if len > limit as u64 {
            return Err(too_large());
        }
        // A declared length is the body's length (HTTP framing): one read, no stream reader.
        return req.bytes().await.map_err(|e| {
            GatewayError::invalid_request(format!("Could not read the request body: {e}"))
        });
    }
    let mut stream = match req.stream() {
        Ok(s) => s,
        Err(_) => return Ok(Vec::new()), // no body
    };
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            GatewayError::invalid_request(format!("Could not read the request body: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_reach_clients_generic_with_the_request_id() {
        let d1 = GatewayError::new(
            ErrorKind::Unavailable,
            "Database error: D1_ERROR: UNIQUE constraint failed: usage.request_id",
        );
        let shown = public_error(&d1, "req_01abc");
        assert!(!shown.message.contains("UNIQUE"), "{}", shown.message);
        assert!(shown.message.contains("req_01abc"));
        assert_eq!((shown.status(), shown.code()), (503, "service_unavailable"));

        let internal =
            GatewayError::internal("secret PROVIDER_X of provider `acme` at https://10.0.0.1");
        let shown = public_error(&internal, "req_01abc");
        assert!(!shown.message.contains("PROVIDER_X") && !shown.message.contains("10.0.0.1"));
        assert_eq!((shown.status(), shown.code()), (500, "internal_error"));

        // Configuration errors name what the operator must fix; client errors are kept.
        let config = super::super::auth::config_error("The KEY_PEPPER secret is not set.");
        assert_eq!(public_error(&config, "req_1"), config);
        let client = GatewayError::invalid_param("model", "`model` is required.");
        assert_eq!(public_error(&client, "req_1"), client);
    }
}
