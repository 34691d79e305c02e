//! CORS for browser clients of the tenant API: what a preflight (`OPTIONS`) allows.
//!
//! The tenant API authenticates with a header (`Authorization` or `x-api-key`), never with
//! cookies, and answers `access-control-allow-origin: *` without credentials, so any page may
//! call it with the headers its SDK sends. The official SDKs add headers over time
//! (`x-stainless-*`, `anthropic-beta`, `anthropic-dangerous-direct-browser-access`, …): a fixed
//! list would make a browser refuse a new one before the request is even sent. So a preflight
//! allows the headers the browser asks for (`access-control-request-headers`), once they are
//! checked to be a plain comma-separated list of header names; otherwise the known list.
//! The console's own calls are same-origin and need no preflight.

/// The headers a preflight allows when the browser names none (or names them unreadably): what
/// the OpenAI and Anthropic SDKs send.
pub const DEFAULT_ALLOW_HEADERS: &str = "authorization, content-type, x-api-key, api-key, \
anthropic-version, anthropic-beta, anthropic-dangerous-direct-browser-access, x-session-id, \
idempotency-key, openai-organization, openai-project, openai-beta, x-stainless-os, \
x-stainless-lang, x-stainless-package-version, x-stainless-runtime, \
x-stainless-runtime-version, x-stainless-arch, x-stainless-retry-count, x-stainless-timeout";

/// The methods a preflight allows.
pub const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";

/// Whether the Worker serves requests of method `raw` (as the client spelt it) on any route:
/// [`ALLOW_METHODS`] and `HEAD`. Any other (`PROPFIND`, `CONNECT`, `TRACE`, a typo) is a 405
/// before routing: the Workers runtime's `Method` turns an unknown method into `GET`, which
/// would otherwise answer it as a read.
pub fn method_served(raw: &str) -> bool {
    raw == "HEAD" || ALLOW_METHODS.split(", ").any(|m| m == raw)
}

/// Longest `access-control-request-headers` value reflected.
const MAX_REQUESTED: usize = 4096;

/// `access-control-allow-headers` for a preflight whose `access-control-request-headers` is
/// `requested`: the requested names, lowercased, when they are a list of valid header names
/// (RFC 9110 tokens), else [`DEFAULT_ALLOW_HEADERS`].
pub fn allow_headers(requested: Option<&str>) -> String {
    let Some(requested) = requested.map(str::trim).filter(|r| !r.is_empty()) else {
        return DEFAULT_ALLOW_HEADERS.to_string();
    };
    if requested.len() > MAX_REQUESTED {
        return DEFAULT_ALLOW_HEADERS.to_string();
    }
    let names: Vec<String> = requested
        .split(',')
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    if names
        .iter()
        .any(|n| n.is_empty() || !n.bytes().all(is_tchar))
    {
        return DEFAULT_ALLOW_HEADERS.to_string();
    }
    names.join(", ")
}

/// A `tchar` of RFC 9110 (a header name's characters).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_list_covers_both_sdks() {
        let list: Vec<&str> = DEFAULT_ALLOW_HEADERS.split(", ").collect();
        for h in [
            "authorization",
            "content-type",
            "x-api-key",
            "anthropic-version",
            "anthropic-beta",
            "anthropic-dangerous-direct-browser-access",
            "x-stainless-retry-count",
            "idempotency-key",
            "x-session-id",
        ] {
            assert!(list.contains(&h), "{h} missing");
        }
    }

    #[test]
    fn only_the_apis_methods_are_served() {
        for m in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"] {
            assert!(method_served(m), "{m}");
        }
        for m in ["PROPFIND", "CONNECT", "TRACE", "REPORT", "get", "", "G ET"] {
            assert!(!method_served(m), "{m}");
        }
    }

    #[test]
    fn requested_names_are_allowed_lowercased() {
        assert_eq!(
            allow_headers(Some(
                "Authorization, X-Api-Key,anthropic-version , x-stainless-new"
            )),
            "authorization, x-api-key, anthropic-version, x-stainless-new"
        );
    }

    #[test]
    fn nothing_or_garbage_requested_gives_the_default_list() {
        for r in [
            None,
            Some(""),
            Some("  "),
            Some("a,,b"),
            Some("x-ok, bad header"),
            Some("x-ok\r\nset-cookie: a=1"),
            Some("caf\u{e9}"),
        ] {
            assert_eq!(allow_headers(r), DEFAULT_ALLOW_HEADERS, "{r:?}");
        }
        let long = "x-a,".repeat(2000) + "x-b";
        assert_eq!(allow_headers(Some(&long)), DEFAULT_ALLOW_HEADERS);
    }
}
