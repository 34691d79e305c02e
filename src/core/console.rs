//! The browser console's security decisions, pure and natively tested: session cookies, CSRF
//! tokens, the origin check, Stripe's webhook signature and the Checkout Session request.
//!
//! **Sessions.** Signing in exchanges a credential for a short-lived cookie. The cookie's value is
//! the session's claims sealed with AES-256-GCM under a key derived from the console secret; the
//! associated data names the scope (tenant or operator), so a tenant cookie never opens as an
//! operator's and vice versa. A tenant session carries the API key it was opened with, sealed: the
//! browser holds only ciphertext in an `HttpOnly` cookie (no script can read it, no browser
//! storage holds the key), and every console call is re-authenticated by the worker exactly as an
//! API call with that key would be — a revoked key or a disabled tenant ends its sessions at once,
//! and tenant isolation is the API's own. An operator session carries no credential at all: the
//! worker acts with its own `ADMIN_TOKEN`. Cookies are `HttpOnly; Secure; SameSite=Strict; Path=/`
//! and expire with the claims (`exp_ms`, checked here, not only by the browser).
//!
//! **CSRF.** Each session has a random token, returned by sign-in and by `GET …/session` (the page
//! keeps it in memory). A state-changing request must send it back in `X-CSRF-Token` (compared in
//! constant time) **and** carry an `Origin` equal to the worker's own origin. Sign-in itself, which
//! has no session yet, needs the origin check.
//!
//! **Stripe.** `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=…]` where `v1` is HMAC-SHA256 of
//! `"<t>.<raw body>"` keyed with the endpoint's signing secret (`whsec_…`). A signature is accepted
//! when one `v1` matches and `t` is within the tolerance of now (both directions).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::core::keys::constant_time_eq;

type HmacSha256 = Hmac<Sha256>;

const NONCE_LEN: usize = 12;
const COOKIE_PREFIX: &str = "v1.";

/// Who a console session belongs to. Each scope has its own cookie and its own sealing context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A tenant's user center, opened with one of its API keys.
    Tenant,
    /// The operator console, opened with the admin token.
    Operator,
}

impl Scope {
    /// The cookie that carries this scope's session.
    pub fn cookie_name(self) -> &'static str {
        match self {
            Scope::Tenant => "tg_console",
            Scope::Operator => "tg_operator",
        }
    }

    fn aad(self) -> &'static [u8] {
        match self {
            Scope::Tenant => b"tollgate-console-session\ntenant",
            Scope::Operator => b"tollgate-console-session\noperator",
        }
    }
}

/// What a session cookie holds, sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The tenant API key (tenant scope only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The session's CSRF token (hex).
    pub csrf: String,
    /// When the session ends (UTC ms).
    pub exp_ms: u64,
}

/// Why a session cookie was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// Not a cookie this worker wrote (wrong form, wrong secret, other scope, tampered with).
    Invalid,
    /// It was valid, but its time is over.
    Expired,
}

/// The AES-256 key of the console's cookies, derived from the console secret.
fn cipher(secret: &[u8]) -> Aes256Gcm {
    let mut hasher = Sha256::new();
    hasher.update(b"tollgate console cookie key v1\n");
    hasher.update(secret);
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&hasher.finalize()))
}

/// Seals `claims` into a cookie value for `scope`. `nonce` must be fresh random bytes.
pub fn seal_session(
    secret: &[u8],
    scope: Scope,
    claims: &Claims,
    nonce: [u8; NONCE_LEN],
) -> String {
    // Serialising a struct of strings and integers cannot fail.
    let plain = serde_json::to_vec(claims).unwrap_or_default();
    // Encryption with a valid key and nonce cannot fail for inputs below 64 GiB.
    let sealed = cipher(secret)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: scope.aad(),
            },
        )
        .unwrap_or_default();
    let mut out = String::with_capacity(COOKIE_PREFIX.len() + 2 * (NONCE_LEN + sealed.len()));
    out.push_str(COOKIE_PREFIX);
    out.push_str(&to_hex(&nonce));
    out.push_str(&to_hex(&sealed));
    out
}

/// Opens a cookie value of `scope` and checks that it has not expired at `now_ms`.
pub fn open_session(
    secret: &[u8],
    scope: Scope,
    value: &str,
    now_ms: u64,
) -> Result<Claims, SessionError> {
    let hex = value
        .strip_prefix(COOKIE_PREFIX)
        .ok_or(SessionError::Invalid)?;
    let bytes = from_hex(hex).ok_or(SessionError::Invalid)?;
    if bytes.len() <= NONCE_LEN {
        return Err(SessionError::Invalid);
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    let plain = cipher(secret)
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: scope.aad(),
            },
        )
        .map_err(|_| SessionError::Invalid)?;
    let claims: Claims = serde_json::from_slice(&plain).map_err(|_| SessionError::Invalid)?;
    if (scope == Scope::Tenant) != claims.key.is_some() {
        return Err(SessionError::Invalid);
    }
    if now_ms >= claims.exp_ms {
        return Err(SessionError::Expired);
    }
    Ok(claims)
}

/// The `Set-Cookie` value that stores a session for `max_age_s` seconds.
pub fn session_cookie(scope: Scope, value: &str, max_age_s: u64) -> String {
    format!(
        "{}={value}; Path=/; Max-Age={max_age_s}; HttpOnly; Secure; SameSite=Strict",
        scope.cookie_name()
    )
}

/// The `Set-Cookie` value that deletes a scope's session cookie.
pub fn clear_cookie(scope: Scope) -> String {
    format!(
        "{}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict",
        scope.cookie_name()
    )
}

/// The value of cookie `name` in a `Cookie` request header (the first one, as browsers send the
/// most specific first).
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// Whether the CSRF token presented with a request is the session's.
pub fn csrf_matches(session_token: &str, presented: Option<&str>) -> bool {
    match presented {
        Some(p) if !session_token.is_empty() => {
            constant_time_eq(session_token.as_bytes(), p.trim().as_bytes())
        }
        _ => false,
    }
}

/// Whether a state-changing request comes from the console's own pages: its `Origin` header must
/// be present and equal the origin of the URL the worker was called at (`scheme://host[:port]`).
pub fn same_origin(origin_header: Option<&str>, request_url: &str) -> bool {
    let Some(origin) = origin_header.map(str::trim) else {
        return false;
    };
    match url::Url::parse(request_url) {
        Ok(u) => {
            let own = u.origin().ascii_serialization();
            own != "null" && own.eq_ignore_ascii_case(origin)
        }
        Err(_) => false,
    }
}

/// A new random token (hex) from 16 random bytes.
pub fn token_hex(random: [u8; 16]) -> String {
    to_hex(&random)
}

// ---- Stripe -----------------------------------------------------------------------------------

/// Why a Stripe webhook signature was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// No `t=` or no `v1=` in the header, or `t` is not a number.
    Malformed,
    /// `t` is further from now than the tolerance.
    OutsideTolerance,
    /// No `v1` matches the payload.
    Mismatch,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignatureError::Malformed => "malformed Stripe-Signature header",
            SignatureError::OutsideTolerance => "Stripe-Signature timestamp outside the tolerance",
            SignatureError::Mismatch => "no Stripe-Signature v1 signature matches the payload",
        })
    }
}

/// Lowercase hex HMAC-SHA256 of `"<t>.<payload>"` keyed with `secret`: Stripe's `v1` signature.
pub fn stripe_v1_signature(secret: &[u8], timestamp_s: u64, payload: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    to_hex(&mac.finalize().into_bytes())
}

/// Verifies a `Stripe-Signature` header for `payload` at `now_s` with a tolerance of
/// `tolerance_s` seconds either way.
pub fn verify_stripe_signature(
    secret: &[u8],
    header: &str,
    payload: &[u8],
    now_s: u64,
    tolerance_s: u64,
) -> Result<(), SignatureError> {
    let mut timestamp: Option<u64> = None;
    let mut candidates: Vec<&str> = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        match k {
            "t" => timestamp = Some(v.parse().map_err(|_| SignatureError::Malformed)?),
            "v1" => candidates.push(v),
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now_s.abs_diff(t) > tolerance_s {
        return Err(SignatureError::OutsideTolerance);
    }
    let expected = stripe_v1_signature(secret, t, payload);
    let mut matched = false;
    for candidate in candidates {
        // No early exit: every candidate is compared.
        matched |= constant_time_eq(
            expected.as_bytes(),
            candidate.to_ascii_lowercase().as_bytes(),
        );
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Micro-units of credit per minor unit (cent) of the Stripe currency: 1.00 = 100 cents =
/// 1,000,000 micro-units.
pub const MICRO_PER_CENT: u64 = 10_000;
/// Smallest and largest top-up through Checkout, in cents.
pub const MIN_TOP_UP_CENTS: u64 = 100;
pub const MAX_TOP_UP_CENTS: u64 = 1_000_000;

/// What the worker sends to `POST /v1/checkout/sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest<'a> {
    pub tenant_id: &'a str,
    pub amount_cents: u64,
    pub currency: &'a str,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
}

/// Checks a requested top-up amount (cents).
pub fn check_top_up(amount_cents: u64) -> Result<u64, String> {
    if (MIN_TOP_UP_CENTS..=MAX_TOP_UP_CENTS).contains(&amount_cents) {
        Ok(amount_cents)
    } else {
        Err(format!(
            "`amount_cents` must be between {MIN_TOP_UP_CENTS} and {MAX_TOP_UP_CENTS}."
        ))
    }
}

/// The form body (`application/x-www-form-urlencoded`) of a one-off Checkout Session that tops up
/// `tenant_id` by `amount_cents`.
pub fn checkout_form(req: &CheckoutRequest<'_>) -> String {
    let amount = req.amount_cents.to_string();
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("mode", "payment")
        .append_pair("success_url", req.success_url)
        .append_pair("cancel_url", req.cancel_url)
        .append_pair("client_reference_id", req.tenant_id)
        .append_pair("metadata[tenant_id]", req.tenant_id)
        .append_pair("line_items[0][quantity]", "1")
        .append_pair("line_items[0][price_data][currency]", req.currency)
        .append_pair("line_items[0][price_data][unit_amount]", &amount)
        .append_pair(
            "line_items[0][price_data][product_data][name]",
            "Tollgate credit",
        )
        .finish()
}

/// A paid Checkout Session that credits a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutCredit {
    pub event_id: String,
    pub session_id: String,
    pub tenant_id: String,
    /// Micro-units to credit.
    pub amount: u64,
    /// What Stripe reported as paid, in minor units (cents) of `currency`.
    pub amount_paid: u64,
    pub currency: String,
}

/// What a verified webhook event means for the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAction {
    /// Credit a tenant (once per Checkout Session).
    Credit(CheckoutCredit),
    /// Acknowledge and do nothing (another event type, or a session not paid yet).
    Ignore(&'static str),
}

/// Reads a verified Stripe event. `checkout.session.completed` with `payment_status: "paid"` and
/// `checkout.session.async_payment_succeeded` credit `amount_total` cents (in `currency`, which
/// must be the configured one) to the tenant in `client_reference_id`; anything else is ignored.
pub fn webhook_action(payload: &[u8], currency: &str) -> Result<WebhookAction, String> {
    #[derive(Deserialize)]
    struct Event {
        id: String,
        #[serde(rename = "type")]
        kind: String,
        data: Data,
    }
    #[derive(Deserialize)]
    struct Data {
        object: serde_json::Value,
    }
    let event: Event =
        serde_json::from_slice(payload).map_err(|e| format!("not a Stripe event: {e}"))?;
    match event.kind.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {}
        _ => return Ok(WebhookAction::Ignore("event type not handled")),
    }
    let object = &event.data.object;
    if object["payment_status"].as_str() != Some("paid") {
        return Ok(WebhookAction::Ignore("session not paid yet"));
    }
    let session_id = object["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("checkout session without id")?;
    let tenant_id = object["client_reference_id"]
        .as_str()
        .or_else(|| object["metadata"]["tenant_id"].as_str())
        .filter(|s| !s.is_empty())
        .ok_or("checkout session without client_reference_id")?;
    if !object["currency"]
        .as_str()
        .is_some_and(|c| c.eq_ignore_ascii_case(currency))
    {
        return Err(format!("checkout session not in {currency}"));
    }
    let cents = object["amount_total"]
        .as_u64()
        .ok_or("checkout session without amount_total")?;
    let amount = cents
        .checked_mul(MICRO_PER_CENT)
        .filter(|a| *a > 0 && i64::try_from(*a).is_ok())
        .ok_or("amount_total out of range")?;
    Ok(WebhookAction::Credit(CheckoutCredit {
        event_id: event.id,
        session_id: session_id.to_string(),
        tenant_id: tenant_id.to_string(),
        amount,
        amount_paid: cents,
        currency: currency.to_ascii_lowercase(),
    }))
}

// ---- plugins for front ends ------------------------------------------------------------------------

/// How a front end shows an enabled plugin (`GET /v1/plugins`): identifier, title, description and
/// each API with its parameter schema, its `/command` form and an example.
pub fn plugin_listing(
    manifest: &crate::core::plugins::Manifest,
    is_default: bool,
    price_per_call: u64,
) -> serde_json::Value {
    let apis: Vec<serde_json::Value> = manifest
        .apis
        .iter()
        .enumerate()
        .map(|(i, api)| {
            let command = if i == 0 {
                format!("/{}", manifest.identifier)
            } else {
                format!("/{}.{}", manifest.identifier, api.name)
            };
            let example = command_example(&command, &api.parameters);
            serde_json::json!({
                "name": api.name,
                "tool": format!("{}__{}", manifest.identifier, api.name),
                "description": api.description,
                "parameters": api.parameters,
                "command": command,
                "command_example": example,
            })
        })
        .collect();
    serde_json::json!({
        "identifier": manifest.identifier,
        "title": manifest.title,
        "description": manifest.description,
        "version": manifest.version,
        "default": is_default,
        "price_per_call": price_per_call,
        "apis": apis,
    })
}

/// `/<command> key=<type> …` for the required parameters (all of them when none is required).
fn command_example(command: &str, schema: &serde_json::Value) -> String {
    let props = schema["properties"].as_object();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let names: Vec<&str> = match props {
        Some(p) if required.is_empty() => p.keys().map(String::as_str).collect(),
        Some(_) => required,
        None => Vec::new(),
    };
    let mut out = command.to_string();
    for name in names {
        let kind = props
            .and_then(|p| p.get(name))
            .and_then(|p| p["type"].as_str())
            .unwrap_or("value");
        out.push_str(&format!(" {name}=<{kind}>"));
    }
    out
}

// ---- pages --------------------------------------------------------------------------------------

/// The Content-Security-Policy of every console page: scripts, styles, images and connections
/// from the worker's own origin only; no inline code, no framing, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Security headers set on every console response (pages, assets and the console's JSON).
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=()",
    ),
];

// ---- hex ----------------------------------------------------------------------------------------

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let hi = char::from(*pair.first()?).to_digit(16)?;
            let lo = char::from(*pair.get(1)?).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

/// A tenant's plan upgrade request as the user center sends it (`POST
/// /console/api/plan-requests`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequestBody {
    pub plan_id: String,
    #[serde(default)]
    pub note: Option<String>,
}

/// The longest note a tenant may attach to a plan request, in characters.
pub const MAX_PLAN_NOTE_CHARS: usize = 500;

/// Checks a plan request: `plan_id` names a plan in the shape plan ids have (1–64 of
/// `A-Za-z0-9_.-`) and is not the tenant's `current` plan; the note, trimmed, has at most
/// [`MAX_PLAN_NOTE_CHARS`] characters and no control characters except newlines (an empty note is
/// none). The error names the field and says why.
pub fn check_plan_request(
    body: PlanRequestBody,
    current: Option<&str>,
) -> Result<PlanRequestBody, (&'static str, String)> {
    let plan_id = body.plan_id.trim().to_string();
    let valid = !plan_id.is_empty()
        && plan_id.len() <= 64
        && plan_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid {
        return Err(("plan_id", "`plan_id` must name a plan.".to_string()));
    }
    if current == Some(plan_id.as_str()) {
        return Err(("plan_id", format!("You are already on plan `{plan_id}`.")));
    }
    let note = body
        .note
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if let Some(n) = &note {
        if n.chars().count() > MAX_PLAN_NOTE_CHARS {
            return Err((
                "note",
                format!("`note` must be at most {MAX_PLAN_NOTE_CHARS} characters."),
            ));
        }
        if n.chars().any(|c| c.is_control() && c != '\n') {
            return Err(("note", "`note` must be plain text.".to_string()));
        }
    }
    Ok(PlanRequestBody { plan_id, note })
}

/// How many alert rules a tenant may keep in the user center.
pub const MAX_TENANT_ALERTS: usize = 10;

/// A tenant's alert rule as the user center sends it (`POST /console/api/alerts`): a balance
/// threshold in micro-units. Tenants get `balance_below` rules with in-app notices only: a
/// webhook's signing secret is a Worker secret, which only the operator can set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantAlertBody {
    pub threshold: u64,
}

/// Checks a tenant alert rule given the number of rules the tenant has: a threshold from 1
/// micro-unit to 2^53 − 1 (money stays exact in JavaScript), at most [`MAX_TENANT_ALERTS`] rules.
pub fn check_tenant_alert(
    body: &TenantAlertBody,
    existing: usize,
) -> Result<u64, (&'static str, String)> {
    if body.threshold == 0 || body.threshold >= 1 << 53 {
        return Err((
            "threshold",
            "`threshold` must be a positive amount in micro-units.".to_string(),
        ));
    }
    if existing >= MAX_TENANT_ALERTS {
        return Err((
            "threshold",
            format!("You have {MAX_TENANT_ALERTS} alerts already: delete one first."),
        ));
    }
    Ok(body.threshold)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"console secret for tests";

    fn claims(key: Option<&str>, exp_ms: u64) -> Claims {
        Claims {
            key: key.map(str::to_string),
            csrf: "c0ffee".into(),
            exp_ms,
        }
    }

    #[test]
    fn a_sealed_session_opens_with_its_scope_and_secret_until_it_expires() {
        let c = claims(Some("tg-key"), 2_000);
        let v = seal_session(SECRET, Scope::Tenant, &c, [7; 12]);
        assert!(v.starts_with("v1."));
        assert!(
            !v.contains("tg-key"),
            "the key must not be readable in the cookie"
        );
        assert_eq!(open_session(SECRET, Scope::Tenant, &v, 1_999), Ok(c));
        assert_eq!(
            open_session(SECRET, Scope::Tenant, &v, 2_000),
            Err(SessionError::Expired)
        );
        assert_eq!(
            open_session(b"other secret", Scope::Tenant, &v, 1_000),
            Err(SessionError::Invalid)
        );
    }

    #[test]
    fn a_tenant_cookie_is_not_an_operator_cookie_and_the_other_way_round() {
        let t = seal_session(SECRET, Scope::Tenant, &claims(Some("k"), 9_000), [1; 12]);
        let o = seal_session(SECRET, Scope::Operator, &claims(None, 9_000), [2; 12]);
        assert_eq!(
            open_session(SECRET, Scope::Operator, &t, 0),
            Err(SessionError::Invalid)
        );
        assert_eq!(
            open_session(SECRET, Scope::Tenant, &o, 0),
            Err(SessionError::Invalid)
        );
        assert!(open_session(SECRET, Scope::Operator, &o, 0).is_ok());
        // A tenant-scope cookie without a key (or an operator one with a key) is refused.
        let keyless = seal_session(SECRET, Scope::Tenant, &claims(None, 9_000), [3; 12]);
        assert_eq!(
            open_session(SECRET, Scope::Tenant, &keyless, 0),
            Err(SessionError::Invalid)
        );
    }

    #[test]
    fn a_tampered_or_malformed_cookie_is_refused() {
        let v = seal_session(SECRET, Scope::Tenant, &claims(Some("k"), 9_000), [9; 12]);
        // Flip one hex digit in each position of the ciphertext region.
        for i in [3, 10, 30, v.len() - 1] {
            let mut bytes = v.clone().into_bytes();
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert_eq!(
                open_session(SECRET, Scope::Tenant, &tampered, 0),
                Err(SessionError::Invalid),
                "position {i}"
            );
        }
        for bad in ["", "v1.", "v1.zz", "v1.abc", "v2.00", "v1.0011", "é"] {
            assert_eq!(
                open_session(SECRET, Scope::Tenant, bad, 0),
                Err(SessionError::Invalid),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cookies_are_http_only_secure_and_strict() {
        let c = session_cookie(Scope::Tenant, "v1.ab", 3600);
        assert_eq!(
            c,
            "tg_console=v1.ab; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Strict"
        );
        let gone = clear_cookie(Scope::Operator);
        assert!(gone.starts_with("tg_operator=;") && gone.contains("Max-Age=0"));
    }

    #[test]
    fn cookie_values_are_found_by_exact_name() {
        let h = "a=1; tg_console_x=2; tg_console=v1.ff ; tg_operator=v1.00";
        assert_eq!(cookie_value(h, "tg_console"), Some("v1.ff"));
        assert_eq!(cookie_value(h, "tg_operator"), Some("v1.00"));
        assert_eq!(cookie_value(h, "missing"), None);
        assert_eq!(cookie_value("", "a"), None);
    }

    #[test]
    fn csrf_needs_the_exact_session_token() {
        assert!(csrf_matches("abc123", Some("abc123")));
        assert!(!csrf_matches("abc123", Some("abc124")));
        assert!(!csrf_matches("abc123", Some("")));
        assert!(!csrf_matches("abc123", None));
        assert!(!csrf_matches("", Some("")));
    }

    #[test]
    fn the_origin_must_be_the_workers_own() {
        let url = "http://127.0.0.1:8787/console/api/login";
        assert!(same_origin(Some("http://127.0.0.1:8787"), url));
        assert!(!same_origin(Some("http://127.0.0.1:8788"), url));
        assert!(!same_origin(Some("https://127.0.0.1:8787"), url));
        assert!(!same_origin(Some("http://evil.example"), url));
        assert!(!same_origin(Some("null"), url));
        assert!(!same_origin(None, url));
        assert!(same_origin(
            Some("https://gw.example.com"),
            "https://gw.example.com/console/api/redeem?x=1"
        ));
    }

    #[test]
    fn stripe_signatures_verify_like_stripe_documents_them() {
        let payload = br#"{"id":"evt_1"}"#;
        let secret = b"whsec_test";
        let sig = stripe_v1_signature(secret, 1_700_000_000, payload);
        // Independent computation of HMAC-SHA256("1700000000.{payload}").
        let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).unwrap();
        mac.update(b"1700000000.{\"id\":\"evt_1\"}");
        assert_eq!(sig, to_hex(&mac.finalize().into_bytes()));
        let header = format!("t=1700000000,v1=deadbeef,v1={sig},v0=ignored");
        assert_eq!(
            verify_stripe_signature(secret, &header, payload, 1_700_000_100, 300),
            Ok(())
        );
        // Within the tolerance either way; outside it, refused even with a good signature.
        assert_eq!(
            verify_stripe_signature(secret, &header, payload, 1_699_999_700, 300),
            Ok(())
        );
        assert_eq!(
            verify_stripe_signature(secret, &header, payload, 1_700_000_301, 300),
            Err(SignatureError::OutsideTolerance)
        );
        // Another payload, another secret, or no v1 at all.
        assert_eq!(
            verify_stripe_signature(secret, &header, br#"{"id":"evt_2"}"#, 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_stripe_signature(b"whsec_other", &header, payload, 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        for bad in [
            "",
            "v1=abc",
            "t=1700000000",
            "t=soon,v1=abc",
            "t=1700000000,v0=abc",
        ] {
            assert_eq!(
                verify_stripe_signature(secret, bad, payload, 1_700_000_000, 300),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_checkout_form_tops_up_the_tenant() {
        let form = checkout_form(&CheckoutRequest {
            tenant_id: "ten_1",
            amount_cents: 2500,
            currency: "usd",
            success_url: "https://gw.example/console/?paid=1",
            cancel_url: "https://gw.example/console/",
        });
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(form.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("mode"), Some("payment"));
        assert_eq!(get("client_reference_id"), Some("ten_1"));
        assert_eq!(get("line_items[0][price_data][unit_amount]"), Some("2500"));
        assert_eq!(get("line_items[0][price_data][currency]"), Some("usd"));
        assert_eq!(
            get("success_url"),
            Some("https://gw.example/console/?paid=1")
        );
        assert_eq!(check_top_up(99), Err(check_top_up(0).unwrap_err()));
        assert_eq!(check_top_up(100), Ok(100));
        assert!(check_top_up(MAX_TOP_UP_CENTS + 1).is_err());
    }

    fn event(kind: &str, status: &str, currency: &str, amount: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": "evt_9", "type": kind,
            "data": {"object": {"id": "cs_1", "payment_status": status, "currency": currency,
                                 "amount_total": amount, "client_reference_id": "ten_1"}}
        }))
        .unwrap()
    }

    #[test]
    fn only_paid_checkout_sessions_credit_and_at_the_paid_amount() {
        let paid = event("checkout.session.completed", "paid", "usd", 2500.into());
        assert_eq!(
            webhook_action(&paid, "usd"),
            Ok(WebhookAction::Credit(CheckoutCredit {
                event_id: "evt_9".into(),
                session_id: "cs_1".into(),
                tenant_id: "ten_1".into(),
                amount: 25_000_000,
                amount_paid: 2500,
                currency: "usd".into(),
            }))
        );
        let unpaid = event("checkout.session.completed", "unpaid", "usd", 2500.into());
        assert!(matches!(
            webhook_action(&unpaid, "usd"),
            Ok(WebhookAction::Ignore(_))
        ));
        let other = event("payment_intent.succeeded", "paid", "usd", 2500.into());
        assert!(matches!(
            webhook_action(&other, "usd"),
            Ok(WebhookAction::Ignore(_))
        ));
        assert!(webhook_action(&paid, "eur").is_err());
        let negative = event("checkout.session.completed", "paid", "usd", (-5).into());
        assert!(webhook_action(&negative, "usd").is_err());
        let zero = event("checkout.session.completed", "paid", "usd", 0.into());
        assert!(webhook_action(&zero, "usd").is_err());
        assert!(webhook_action(b"not json", "usd").is_err());
    }

    #[test]
    fn plugins_are_listed_with_their_command_forms() {
        let manifest: crate::core::plugins::Manifest = serde_json::from_value(serde_json::json!({
            "identifier": "weather", "title": "Weather", "description": "Forecasts",
            "endpoint": {"url": "https://w.example/api"}, "timeout_ms": 1000,
            "max_response_bytes": 1000,
            "apis": [
                {"name": "get_forecast", "description": "A forecast",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                   "days": {"type": "integer"}}, "required": ["city"]}},
                {"name": "alerts", "description": "Alerts",
                 "parameters": {"type": "object", "properties": {"region": {"type": "string"}}}}
            ]
        }))
        .unwrap();
        let v = plugin_listing(&manifest, true, 500);
        assert_eq!(v["identifier"], "weather");
        assert_eq!(v["default"], true);
        assert_eq!(v["apis"][0]["command"], "/weather");
        assert_eq!(v["apis"][0]["tool"], "weather__get_forecast");
        assert_eq!(v["apis"][0]["command_example"], "/weather city=<string>");
        assert_eq!(v["apis"][1]["command"], "/weather.alerts");
        assert_eq!(
            v["apis"][1]["command_example"],
            "/weather.alerts region=<string>"
        );
        assert_eq!(v["apis"][0]["parameters"]["required"][0], "city");
        // No settings, endpoint or hosts: a front end needs none of them.
        assert!(v.get("endpoint").is_none() && v.get("allowed_hosts").is_none());
    }

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(from_hex(&to_hex(&bytes)), Some(bytes));
        assert_eq!(from_hex("ABcd"), Some(vec![0xab, 0xcd]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex("+1"), None);
    }

    #[test]
    fn plan_requests_are_checked() {
        let body = |plan: &str, note: Option<&str>| PlanRequestBody {
            plan_id: plan.to_string(),
            note: note.map(str::to_string),
        };
        let ok = check_plan_request(body(" pro ", Some("  please  ")), Some("basic")).unwrap();
        assert_eq!(ok, body("pro", Some("please")));
        assert_eq!(
            check_plan_request(body("pro", Some("   ")), None)
                .unwrap()
                .note,
            None
        );
        assert_eq!(
            check_plan_request(body("pro", None), Some("pro"))
                .unwrap_err()
                .0,
            "plan_id"
        );
        for bad in ["", "a b", "x/y", &"p".repeat(65)] {
            assert_eq!(
                check_plan_request(body(bad, None), None).unwrap_err().0,
                "plan_id"
            );
        }
        let long = "é".repeat(MAX_PLAN_NOTE_CHARS + 1);
        assert_eq!(
            check_plan_request(body("pro", Some(&long)), None)
                .unwrap_err()
                .0,
            "note"
        );
        let fits = "é".repeat(MAX_PLAN_NOTE_CHARS);
        assert!(check_plan_request(body("pro", Some(&fits)), None).is_ok());
        assert_eq!(
            check_plan_request(body("pro", Some("a\u{7}b")), None)
                .unwrap_err()
                .0,
            "note"
        );
        assert!(check_plan_request(body("pro", Some("line\nline")), None).is_ok());
        assert!(serde_json::from_str::<PlanRequestBody>(r#"{"plan_id":"p","x":1}"#).is_err());
    }

    #[test]
    fn tenant_alerts_are_checked() {
        let body = |threshold| TenantAlertBody { threshold };
        assert_eq!(check_tenant_alert(&body(5_000_000), 0), Ok(5_000_000));
        assert_eq!(check_tenant_alert(&body(1), MAX_TENANT_ALERTS - 1), Ok(1));
        assert!(check_tenant_alert(&body(0), 0).is_err());
        assert!(check_tenant_alert(&body(1 << 53), 0).is_err());
        assert!(check_tenant_alert(&body((1 << 53) - 1), 0).is_ok());
        assert!(check_tenant_alert(&body(5), MAX_TENANT_ALERTS).is_err());
        assert!(
            serde_json::from_str::<TenantAlertBody>(r#"{"threshold":1,"webhook_url":"x"}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<TenantAlertBody>(r#"{"threshold":-1}"#).is_err());
    }
}
