//! Anthropic's Messages API (Claude Code, the Anthropic SDKs): `POST /v1/messages` and
//! `POST /v1/messages/count_tokens`. The key comes as `x-api-key` or Bearer; every error,
//! including the router's, is answered in Anthropic's shape (`{"type":"error",…}`).

pub mod count_tokens;
pub mod messages;

use worker::Response;

use crate::core::error::GatewayError;
use crate::core::inbound::anthropic;
use crate::edge::platform::response::{error_response_in, internal, public_error};

/// The Anthropic-shaped error response of `err` (what a client may see of it).
pub fn error_response(err: &GatewayError, request_id: &str) -> Result<Response, GatewayError> {
    let err = public_error(err, request_id);
    let body = anthropic::error_body(&err, Some(request_id));
    error_response_in(&err, body).map_err(|e| internal("error response", e))
}

/// `answer`, with an error turned into its Anthropic-shaped response.
pub fn answer(
    answer: Result<Response, GatewayError>,
    request_id: &str,
) -> Result<Response, GatewayError> {
    match answer {
        Ok(resp) => Ok(resp),
        Err(err) => {
            if err.status() >= 500 {
                worker::console_error!("{request_id} /v1/messages: {err}");
            }
            error_response(&err, request_id)
        }
    }
}
