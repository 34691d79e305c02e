//! Response helpers, bounded body reading, and [`Incoming`]: the one prologue of the metered
//! API handlers.

use futures::StreamExt;
use worker::{Env, Headers, Method, Request, Response, ResponseBuilder};

use crate::core::cors;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::multipart::{self, Limits, Part, MAX_AUDIO_FILE_BYTES};
use crate::edge::gateway::{self, auth, auth::Caller, context::Call, Prepared};
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::env::settings;
pub use crate::edge::platform::response::{
    bytes_response, error_response, internal, json, public_error,
};
use crate::edge::store::idempotency::{Claim, ClaimedKey};

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

/// The largest multipart body read: OpenAI's 25 MiB file limit and 1 MiB for the other fields
/// and the part headers. A larger body is refused with 413 before it is parsed.
pub const MAX_MULTIPART_BODY: usize = MAX_AUDIO_FILE_BYTES + (1 << 20);

/// Reads a `multipart/form-data` body and its boundary (400 `invalid_multipart` without one, 413
/// over [`MAX_MULTIPART_BODY`]).
async fn read_form(req: &mut Request) -> Result<(Vec<u8>, String), GatewayError> {
    let content_type = req
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .unwrap_or_default();
    let boundary = multipart::boundary_of(&content_type)?;
    let body = read_body(req, MAX_MULTIPART_BODY).await?;
    Ok((body, boundary))
}

/// How a metered request's body comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// JSON, up to the `MAX_BODY_BYTES` setting.
    Json,
    /// A `multipart/form-data` upload, up to [`MAX_MULTIPART_BODY`].
    Form,
}

/// The one prologue of the metered API handlers (chat completions, responses, messages and
/// their token count, embeddings, images, audio), in this order:
/// 1. [`Incoming::open`]: the start time, the caller authenticated, the body read;
/// 2. the handler decodes [`Incoming::body`] (or the [`Incoming::parts`] of a form) in its API's
///    terms;
/// 3. [`Incoming::call`]: the call's context (the `x-session-id` validated);
/// 4. the handler prepares the call (`gateway::prepare`, `gateway::media::prepare`);
/// 5. [`Incoming::claim`]: the `Idempotency-Key` claimed, or the stored answer replayed.
///
/// A request wrong in several ways is refused for the first of them in that order. Errors are
/// plain `GatewayError`s: the handler's API gives them their shape (Anthropic's on
/// `/v1/messages*`).
pub(crate) struct Incoming<'a> {
    env: &'a Env,
    request_id: &'a str,
    req: Request,
    caller: Caller,
    started_at: u64,
    boundary: Option<String>,
    /// The request body as read.
    pub body: Vec<u8>,
}

/// What claiming the `Idempotency-Key` decided.
pub(crate) enum Claimed {
    /// Go on, with the claimed key (`None`: the request has no `Idempotency-Key`).
    Fresh(Option<ClaimedKey>),
    /// The key's request was answered before: its stored answer, replayed.
    Replayed(Response),
}

impl<'a> Incoming<'a> {
    /// Notes the start time, authenticates the caller (401) and reads the body as `kind` says
    /// (413 over the limit; a form without a boundary: 400).
    pub(crate) async fn open(
        mut req: Request,
        env: &'a Env,
        request_id: &'a str,
        kind: BodyKind,
    ) -> Result<Self, GatewayError> {
        let started_at = now_ms();
        let caller = auth::authenticate(&req, env).await?;
        let (body, boundary) = match kind {
            BodyKind::Json => (
                read_body(&mut req, settings(env).max_body_bytes).await?,
                None,
            ),
            BodyKind::Form => {
                let (body, boundary) = read_form(&mut req).await?;
                (body, Some(boundary))
            }
        };
        Ok(Incoming {
            env,
            request_id,
            req,
            caller,
            started_at,
            boundary,
            body,
        })
    }

    /// When the request arrived (UTC ms).
    pub(crate) fn started_at(&self) -> u64 {
        self.started_at
    }

    /// The value of the request header `name`.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.req.headers().get(name).ok().flatten()
    }

    /// The parts of a form body (400 `invalid_multipart` when it does not parse); none for a JSON
    /// body.
    pub(crate) fn parts(&self) -> Result<Vec<Part<'_>>, GatewayError> {
        match &self.boundary {
            Some(boundary) => multipart::parse(&self.body, boundary, &Limits::default()),
            None => Ok(Vec::new()),
        }
    }

    /// The call's context: the caller, the session (`x-session-id`, validated) and the settings.
    pub(crate) fn call(&self) -> Result<Call, GatewayError> {
        let (env, id, caller) = (self.env, self.request_id, self.caller.clone());
        Call::new(env, id, caller, self.req.headers(), self.started_at)
    }

    /// Claims the request's `Idempotency-Key` for the prepared call (`stream`: the client asked
    /// for a stream), or answers it from the key's record.
    pub(crate) async fn claim(
        &self,
        prepared: &Prepared,
        stream: bool,
    ) -> Result<Claimed, GatewayError> {
        let key = self.header("idempotency-key");
        Ok(
            match gateway::claim(prepared, key, &self.body, stream).await? {
                Claim::Replay {
                    http_status,
                    body,
                    request_id,
                } => Claimed::Replayed(replay(http_status, body, &request_id)?),
                Claim::Fresh(key) => Claimed::Fresh(Some(key)),
                Claim::None => Claimed::Fresh(None),
            },
        )
    }
}

/// The stored answer of an idempotent request, replayed (`idempotent-replayed: true`, with the
/// original request's id).
fn replay(http_status: u16, body: String, request_id: &str) -> Result<Response, GatewayError> {
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
