//! One error type for the whole gateway. Every failure a client can see is a [`GatewayError`]:
//! it knows its HTTP status, its error `type` and `code`, where it came from, and whether another
//! provider may be tried. The type is format-neutral: each inbound codec renders it in its API's
//! shape (`core::inbound::openai::error_body` for OpenAI's `{"error":{…}}`,
//! `core::inbound::anthropic` for Anthropic's); rendering has no side effects.

use serde::Serialize;

/// Where a failure came from. Billing uses it: upstream failures before the first byte are not
/// charged; client (downstream) failures are the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorSource {
    /// The client's request was refused (bad input, bad key, no credit).
    Downstream,
    /// The provider failed or could not be reached.
    Upstream,
    /// Tollgate itself (storage, configuration).
    Internal,
}

/// What went wrong, with the HTTP status each kind maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 400: malformed JSON, missing or invalid fields.
    InvalidRequest,
    /// 401: missing, malformed, unknown or revoked API key or admin token.
    InvalidApiKey,
    /// 402: the tenant's balance does not cover the request's worst-case cost.
    InsufficientQuota,
    /// 402: a key's or the tenant's spending budget (its limits) would be exceeded.
    BudgetExceeded,
    /// 429: the key's or the tenant's own requests- or tokens-per-minute limit is used up
    /// (not the provider's: see [`ErrorKind::UpstreamRateLimited`]). `retry_after_ms`: when the
    /// window has room again; `limit`: the limit per minute; `tokens`: TPM (else RPM).
    RateLimitExceeded {
        retry_after_ms: u64,
        limit: u64,
        tokens: bool,
    },
    /// 403: the key may not use this model.
    ModelNotAllowed,
    /// 404: no such model.
    ModelNotFound,
    /// 404: no such route or resource.
    NotFound,
    /// 405: the route exists but not for this method.
    MethodNotAllowed,
    /// 409: the resource already exists or the change conflicts with its state.
    Conflict,
    /// 413: the request body is larger than the configured limit.
    PayloadTooLarge,
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 429: the provider rate-limited the request.
    UpstreamRateLimited,
    /// 400 (provider's own status kept when it is a 4xx): the provider rejected the request.
    UpstreamRejected(u16),
    /// 502: the provider failed, answered garbage or could not be reached.
    UpstreamFailed,
    /// 504: the provider said it timed out (an answered 408), or a stream went quiet.
    UpstreamTimeout,
    /// 504: the request was sent and no complete answer came in time. The provider may have done
    /// (and billed) the work: never retried elsewhere, not held against the route's breaker, and
    /// charged by the rule of the README's table of endings.
    UpstreamUnanswered,
    /// 502: the provider answered 2xx but the gateway cannot use the answer (too large, broken
    /// off, unparseable). The provider billed it: not retried elsewhere, charged like
    /// [`ErrorKind::UpstreamUnanswered`].
    UpstreamUnusable,
    /// 500: Tollgate's own fault (storage, configuration).
    Internal,
    /// 503: a dependency of Tollgate (D1, KV) is unavailable.
    Unavailable,
}

/// An error with everything needed to answer the client and to decide on retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    pub kind: ErrorKind,
    pub message: String,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// Overrides the default `code` of the kind (e.g. an upstream's own code).
    pub code: Option<String>,
}

impl GatewayError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        GatewayError {
            kind,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorKind::InvalidRequest, message);
        e.param = Some(param.to_string());
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// The HTTP status of the response.
    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::InvalidApiKey => 401,
            ErrorKind::InsufficientQuota | ErrorKind::BudgetExceeded => 402,
            ErrorKind::RateLimitExceeded { .. } => 429,
            ErrorKind::ModelNotAllowed => 403,
            ErrorKind::ModelNotFound | ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::UpstreamRateLimited => 429,
            ErrorKind::UpstreamRejected(status) if (400..500).contains(&status) => status,
            ErrorKind::UpstreamRejected(_) => 400,
            ErrorKind::UpstreamFailed | ErrorKind::UpstreamUnusable => 502,
            ErrorKind::UpstreamTimeout | ErrorKind::UpstreamUnanswered => 504,
            ErrorKind::Internal => 500,
            ErrorKind::Unavailable => 503,
        }
    }

    /// The OpenAI error `type`.
    pub fn error_type(&self) -> &'static str {
        match self.kind {
            ErrorKind::InvalidRequest
            | ErrorKind::ModelNotFound
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::Conflict
            | ErrorKind::PayloadTooLarge
            | ErrorKind::UnsupportedMediaType
            | ErrorKind::UpstreamRejected(_) => "invalid_request_error",
            ErrorKind::InvalidApiKey => "authentication_error",
            ErrorKind::ModelNotAllowed => "permission_error",
            ErrorKind::InsufficientQuota | ErrorKind::BudgetExceeded => "insufficient_quota",
            // OpenAI names the exhausted quantity.
            ErrorKind::RateLimitExceeded { tokens: true, .. } => "tokens",
            ErrorKind::RateLimitExceeded { tokens: false, .. } => "requests",
            ErrorKind::UpstreamRateLimited => "rate_limit_error",
            ErrorKind::UpstreamFailed
            | ErrorKind::UpstreamTimeout
            | ErrorKind::UpstreamUnanswered
            | ErrorKind::UpstreamUnusable => "upstream_error",
            ErrorKind::Internal | ErrorKind::Unavailable => "server_error",
        }
    }

    /// The OpenAI error `code`.
    pub fn code(&self) -> &str {
        if let Some(code) = &self.code {
            return code;
        }
        match self.kind {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::InvalidApiKey => "invalid_api_key",
            ErrorKind::InsufficientQuota => "insufficient_quota",
            ErrorKind::BudgetExceeded => "budget_exceeded",
            ErrorKind::RateLimitExceeded { .. } => "rate_limit_exceeded",
            ErrorKind::ModelNotAllowed => "model_not_allowed",
            ErrorKind::ModelNotFound => "model_not_found",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::Conflict => "conflict",
            ErrorKind::PayloadTooLarge => "request_too_large",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::UpstreamRateLimited => "upstream_rate_limited",
            ErrorKind::UpstreamRejected(_) => "upstream_rejected",
            ErrorKind::UpstreamFailed => "upstream_error",
            ErrorKind::UpstreamTimeout | ErrorKind::UpstreamUnanswered => "upstream_timeout",
            ErrorKind::UpstreamUnusable => "upstream_unusable",
            ErrorKind::Internal => "internal_error",
            ErrorKind::Unavailable => "service_unavailable",
        }
    }

    /// Where the failure came from.
    pub fn source(&self) -> ErrorSource {
        match self.kind {
            ErrorKind::UpstreamRateLimited
            | ErrorKind::UpstreamRejected(_)
            | ErrorKind::UpstreamFailed
            | ErrorKind::UpstreamTimeout
            | ErrorKind::UpstreamUnanswered
            | ErrorKind::UpstreamUnusable => ErrorSource::Upstream,
            ErrorKind::Internal | ErrorKind::Unavailable => ErrorSource::Internal,
            _ => ErrorSource::Downstream,
        }
    }

    /// A provider that answered with a redirect, which the gateway never follows (a provider's
    /// key must travel only to its own `base_url`). The work was not done: retryable.
    pub fn upstream_redirect(status: u16) -> Self {
        Self::new(
            ErrorKind::UpstreamFailed,
            format!(
                "The provider answered with a redirect (HTTP {status}), which the gateway does not \
                 follow; check the provider's base_url."
            ),
        )
        .with_code("upstream_redirect")
    }

    /// Whether the provider may have done, and billed, the work although the gateway has no usable
    /// answer: such a failure is charged (see the README's table of endings), never retried on
    /// another route, and not held against the route's circuit breaker.
    pub fn provider_may_have_billed(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::UpstreamUnanswered | ErrorKind::UpstreamUnusable
        )
    }

    /// Whether the same request may be tried on another provider route: only when the provider
    /// answered with a failure that says nothing about the request itself (5xx, 429, an answered
    /// timeout) or could not be reached. A request that may have been served
    /// ([`GatewayError::provider_may_have_billed`]) is never sent twice.
    pub fn retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::UpstreamRateLimited | ErrorKind::UpstreamFailed | ErrorKind::UpstreamTimeout
        )
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code(), self.status(), self.message)
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_param_names_the_field() {
        let e = GatewayError::invalid_param("messages", "messages must be a non-empty array");
        assert_eq!(e.param.as_deref(), Some("messages"));
        assert_eq!(e.error_type(), "invalid_request_error");
        assert_eq!(e.code(), "invalid_request");
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn statuses_and_sources() {
        assert_eq!(
            GatewayError::new(ErrorKind::InsufficientQuota, "x").status(),
            402
        );
        assert_eq!(
            GatewayError::new(ErrorKind::UpstreamTimeout, "x").status(),
            504
        );
        assert_eq!(
            GatewayError::new(ErrorKind::UpstreamRejected(422), "x").status(),
            422
        );
        assert_eq!(
            GatewayError::new(ErrorKind::UpstreamRejected(503), "x").status(),
            400
        );
        assert_eq!(
            GatewayError::new(ErrorKind::UpstreamFailed, "x").source(),
            ErrorSource::Upstream
        );
        assert!(GatewayError::new(ErrorKind::UpstreamFailed, "x").retryable());
        assert!(!GatewayError::new(ErrorKind::UpstreamRejected(400), "x").retryable());
        assert!(!GatewayError::new(ErrorKind::InvalidRequest, "x").retryable());
    }

    #[test]
    fn a_request_the_provider_may_have_served_is_not_retried_and_is_charged() {
        let unanswered = GatewayError::new(ErrorKind::UpstreamUnanswered, "x");
        assert_eq!(unanswered.status(), 504);
        assert_eq!(unanswered.code(), "upstream_timeout");
        assert!(!unanswered.retryable() && unanswered.provider_may_have_billed());
        let unusable = GatewayError::new(ErrorKind::UpstreamUnusable, "x");
        assert_eq!(unusable.status(), 502);
        assert_eq!(unusable.code(), "upstream_unusable");
        assert_eq!(unusable.error_type(), "upstream_error");
        assert!(!unusable.retryable() && unusable.provider_may_have_billed());
        // An answered timeout (HTTP 408) and a redirect: the work was not done.
        let answered = GatewayError::new(ErrorKind::UpstreamTimeout, "x");
        assert!(answered.retryable() && !answered.provider_may_have_billed());
        let redirect = GatewayError::upstream_redirect(307);
        assert_eq!(redirect.status(), 502);
        assert_eq!(redirect.code(), "upstream_redirect");
        assert!(redirect.retryable() && !redirect.provider_may_have_billed());
    }

    #[test]
    fn code_override() {
        let e = GatewayError::new(ErrorKind::UpstreamRejected(400), "x")
            .with_code("context_length_exceeded");
        assert_eq!(e.code(), "context_length_exceeded");
        assert_eq!(e.error_type(), "invalid_request_error");
    }
}
