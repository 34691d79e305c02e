//! Response helpers and bounded body reading.

use futures::StreamExt;
use worker::{Headers, Method, Request, Response, ResponseBuilder};

use crate::core::cors;
use crate::core::error::{ErrorKind, GatewayError};
pub use crate::edge::platform::response::{
    bytes_response, error_response, internal, json, public_error,
};

/// [`error_response`] of [`public_error`]: the answer to a request that failed.
pub fn public_error_response(err: &GatewayError, request_id: &str) -> worker::Result<Response> {
    error_response(&public_error(err, request_id))
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

/// The answer to a browser's preflight (`OPTIONS`): the methods and the requested headers
/// allowed for any origin (`core::cors`).
pub fn preflight(req: &Request) -> Result<Response, GatewayError> {
    let requested = req
        .headers()
        .get("access-control-request-headers")
        .ok()
        .flatten();
    let headers = Headers::new();
    for (k, v) in [
        (
            "access-control-allow-methods",
            cors::ALLOW_METHODS.to_string(),
        ),
        (
            "access-control-allow-headers",
            cors::allow_headers(requested.as_deref()),
        ),
        ("access-control-max-age", "86400".to_string()),
        ("vary", "access-control-request-headers".to_string()),
    ] {
        headers.set(k, &v).map_err(|e| internal("set header", e))?;
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

/// The stored answer of an idempotent request, replayed (`idempotent-replayed: true`, with the
/// original request's id).
pub fn replay(http_status: u16, body: String, request_id: &str) -> Result<Response, GatewayError> {
    let mut resp = bytes_response(http_status, "application/json", body.into_bytes())?;
    let headers = resp.headers_mut();
    let _ = headers.set("idempotent-replayed", "true");
    let _ = headers.set("x-request-id", request_id);
    Ok(resp)
}

/// Refuses a request whose method the route does not serve.
pub fn require(method: &Method, expected: Method) -> Result<(), GatewayError> {
    if *method == expected {
        Ok(())
    } else {
        Err(GatewayError::new(
            ErrorKind::MethodNotAllowed,
            format!("This route accepts {expected:?} only."),
        ))
    }
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
        let config = crate::edge::gateway::auth::config_error("The KEY_PEPPER secret is not set.");
        assert_eq!(public_error(&config, "req_1"), config);
        let client = GatewayError::invalid_param("model", "`model` is required.");
        assert_eq!(public_error(&client, "req_1"), client);
    }
}
