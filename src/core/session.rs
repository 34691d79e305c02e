//! Client-supplied session ids (`X-Session-Id`).

use crate::core::error::GatewayError;

/// Longest accepted session id.
pub const MAX_SESSION_ID_LEN: usize = 128;

/// Accepts 1–128 characters of `[A-Za-z0-9._:-]`; anything else is a 400 naming the header.
pub fn validate_session_id(id: &str) -> Result<&str, GatewayError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_SESSION_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(id)
    } else {
        Err(GatewayError::invalid_param(
            "X-Session-Id",
            format!(
                "The X-Session-Id header must be 1 to {MAX_SESSION_ID_LEN} characters of letters, \
                 digits, '.', '_', ':' or '-'."
            ),
        ))
    }
}

/// A session id named in a path (`/v1/sessions/{id}`): the same rule, but the 400 names the
/// path's `session_id` rather than a header the client did not send.
pub fn validate_session_path(id: &str) -> Result<&str, GatewayError> {
    validate_session_id(id).map_err(|_| {
        GatewayError::invalid_param(
            "session_id",
            format!(
                "The session id in the path must be 1 to {MAX_SESSION_ID_LEN} characters of \
                 letters, digits, '.', '_', ':' or '-'."
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_id_in_a_path_names_the_path_not_the_header() {
        assert_eq!(validate_session_path("chat-42").unwrap(), "chat-42");
        let err = validate_session_path("a%2Fb").unwrap_err();
        assert_eq!(err.status(), 400);
        assert_eq!(err.param.as_deref(), Some("session_id"));
        assert!(!err.message.contains("X-Session-Id"), "{}", err.message);
    }

    #[test]
    fn accepts_and_rejects() {
        assert!(validate_session_id("chat-42_a.b:c").is_ok());
        assert!(validate_session_id(&"a".repeat(128)).is_ok());
        for bad in ["", "has space", "a/b", "ünï", "x\r\ny"] {
            assert_eq!(
                validate_session_id(bad).unwrap_err().status(),
                400,
                "{bad:?}"
            );
        }
        assert!(validate_session_id(&"a".repeat(129)).is_err());
    }
}
