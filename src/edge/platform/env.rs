//! Every setting of `[vars]` in wrangler.toml, parsed in one place into [`Settings`] with named
//! defaults, and secrets by name.
//!
//! An isolate's `[vars]` never change while it lives, so [`settings`] parses them once per isolate
//! and shares the result. Secrets are not settings: [`secret`] and [`named_secret`] read them when
//! needed and never from plain vars.

use std::cell::OnceCell;
use std::rc::Rc;

use worker::Env;

use crate::core::error::{ErrorKind, GatewayError};
use crate::core::outbound::{check_secret_name, SecretUse};
use crate::core::routing::{
    BreakerConfig, DEFAULT_CLIENT_ABORT_DRAIN_MS, DEFAULT_STALE_RESERVATION_SECONDS,
};

/// `MAX_BODY_BYTES`: the largest request body accepted.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;
/// `SESSION_TTL_SECONDS`: how long session state stays cached in KV.
pub const DEFAULT_SESSION_TTL_SECONDS: u64 = 86_400;
/// The shortest session TTL (KV's minimum expiration).
pub const MIN_SESSION_TTL_SECONDS: u64 = 60;
/// `CONFIG_CACHE_TTL_MS`: how long an isolate reuses configuration rows (0: no caching).
pub const DEFAULT_CONFIG_CACHE_TTL_MS: u64 = 10_000;
/// `ECHO_CHUNK_DELAY_MS`: the delay between the echo model's chunks.
pub const DEFAULT_ECHO_CHUNK_DELAY_MS: u64 = 20;
/// `UPSTREAM_CONNECT_TIMEOUT_MS`: until an upstream's response headers.
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS: u64 = 30_000;
/// `UPSTREAM_TIMEOUT_MS`: until an upstream's whole plain body.
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 600_000;
/// `AUTO_LONG_PROMPT_TOKENS`: a prompt this long sends `tollgate-auto` to the strong model.
pub const DEFAULT_AUTO_LONG_PROMPT_TOKENS: u64 = 8_000;
/// `PLUGIN_MAX_ROUNDS`: most model rounds per plugin request, and its ceiling.
pub const DEFAULT_PLUGIN_MAX_ROUNDS: u64 = 4;
pub const MAX_PLUGIN_ROUNDS: u64 = 10;
/// `CONSOLE_SESSION_SECONDS`: how long a console sign-in lasts, bounded to
/// [`MIN_CONSOLE_SESSION_SECONDS`]..=[`MAX_CONSOLE_SESSION_SECONDS`].
pub const DEFAULT_CONSOLE_SESSION_SECONDS: u64 = 3_600;
pub const MIN_CONSOLE_SESSION_SECONDS: u64 = 60;
pub const MAX_CONSOLE_SESSION_SECONDS: u64 = 86_400;
/// `STRIPE_API_BASE`: where Checkout sessions are created.
pub const DEFAULT_STRIPE_API_BASE: &str = "https://api.stripe.com";
/// `STRIPE_CURRENCY`: the currency of card top-ups (stored lower-case).
pub const DEFAULT_STRIPE_CURRENCY: &str = "usd";
/// `STRIPE_WEBHOOK_TOLERANCE_SECONDS`: the largest age of a signed Stripe event.
pub const DEFAULT_STRIPE_WEBHOOK_TOLERANCE_SECONDS: u64 = 300;

/// Every plain setting, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub max_body_bytes: usize,
    /// At least [`MIN_SESSION_TTL_SECONDS`]; a request may set it to 0 for a session it named
    /// itself (not copied to KV).
    pub session_ttl_seconds: u64,
    pub config_cache_ttl_ms: u64,
    pub echo_chunk_delay_ms: u64,
    pub upstream_connect_timeout_ms: u64,
    pub upstream_timeout_ms: u64,
    /// `STALE_RESERVATION_SECONDS` as set (the sweep applies its own minimum).
    pub stale_reservation_seconds: u64,
    /// `CLIENT_ABORT_DRAIN_MS`: how long a stream is drained after its client left.
    pub client_abort_drain_ms: u64,
    /// `ROUTE_FAILURE_THRESHOLD`, `ROUTE_COOLDOWN_MS`.
    pub breaker: BreakerConfig,
    pub auto_long_prompt_tokens: u64,
    /// `AUTO_CHEAP_MODEL`, `AUTO_STRONG_MODEL`.
    pub auto_cheap_model: Option<String>,
    pub auto_strong_model: Option<String>,
    /// Clamped to 1..=[`MAX_PLUGIN_ROUNDS`].
    pub plugin_max_rounds: u64,
    /// `PLUGINS_ALLOW_LOCAL_HTTP` (dev only).
    pub plugins_allow_local_http: bool,
    /// `ALLOW_PRIVATE_UPSTREAMS` (dev only): providers and webhooks on private hosts and http.
    pub allow_private_upstreams: bool,
    /// `PROVIDER_SECRETS`, `WEBHOOK_SECRETS`: extra allowed secret names.
    pub provider_secrets: Option<String>,
    pub webhook_secrets: Option<String>,
    /// `TOLLGATE_FAULTS`, honoured only when `TOLLGATE_TEST_DEPLOYMENT` is `true`.
    pub faults: Vec<String>,
    /// `CONSOLE_SESSION_SECONDS`, bounded.
    pub console_session_seconds: u64,
    /// `CONSOLE_TENANT_KEYS`: tenants may create and revoke their keys in the user center.
    pub console_tenant_keys: bool,
    /// `STRIPE_API_BASE` (without a trailing `/`), `STRIPE_CURRENCY` (lower-case),
    /// `STRIPE_WEBHOOK_TOLERANCE_SECONDS`.
    pub stripe_api_base: String,
    pub stripe_currency: String,
    pub stripe_webhook_tolerance_seconds: u64,
    /// `WALLETS` (default on; `false` turns it off): requests reserve and settle through the
    /// tenant's wallet (Durable Object) instead of D1; each tenant moves into its wallet on its
    /// first money command (docs/money.md).
    pub wallets: bool,
    /// `WALLET_LEASES` (default off; `true` turns it on, with `WALLETS`): per-isolate credit
    /// leases, so that most requests of a busy key without limits do not wait for the wallet
    /// (docs/money.md "Credit leases").
    pub wallet_leases: bool,
    /// `TOLLGATE_TEST_DEPLOYMENT` is `true`: test-only reports (faults, the D1 statement count).
    pub test_deployment: bool,
}

impl Settings {
    /// Parses every setting from `lookup` (a var's raw value by name); unset, empty or
    /// unparsable values take their default.
    pub fn parse(lookup: impl Fn(&str) -> Option<String>) -> Settings {
        let text = |name: &str| lookup(name).filter(|s| !s.is_empty());
        let number = |name: &str| -> Option<u64> { lookup(name)?.trim().parse().ok() };
        let u64_or = |name: &str, default: u64| number(name).unwrap_or(default);
        let flag =
            |name: &str| text(name).is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        let default_breaker = BreakerConfig::default();
        let test_deployment = lookup("TOLLGATE_TEST_DEPLOYMENT").as_deref() == Some("true");
        Settings {
            max_body_bytes: usize::try_from(u64_or("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
                .unwrap_or(usize::MAX),
            session_ttl_seconds: u64_or("SESSION_TTL_SECONDS", DEFAULT_SESSION_TTL_SECONDS)
                .max(MIN_SESSION_TTL_SECONDS),
            config_cache_ttl_ms: u64_or("CONFIG_CACHE_TTL_MS", DEFAULT_CONFIG_CACHE_TTL_MS),
            echo_chunk_delay_ms: u64_or("ECHO_CHUNK_DELAY_MS", DEFAULT_ECHO_CHUNK_DELAY_MS),
            upstream_connect_timeout_ms: u64_or(
                "UPSTREAM_CONNECT_TIMEOUT_MS",
                DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS,
            ),
            upstream_timeout_ms: u64_or("UPSTREAM_TIMEOUT_MS", DEFAULT_UPSTREAM_TIMEOUT_MS),
            stale_reservation_seconds: u64_or(
                "STALE_RESERVATION_SECONDS",
                DEFAULT_STALE_RESERVATION_SECONDS,
            ),
            client_abort_drain_ms: u64_or("CLIENT_ABORT_DRAIN_MS", DEFAULT_CLIENT_ABORT_DRAIN_MS),
            breaker: BreakerConfig {
                failure_threshold: number("ROUTE_FAILURE_THRESHOLD")
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(default_breaker.failure_threshold),
                cooldown_ms: u64_or("ROUTE_COOLDOWN_MS", default_breaker.cooldown_ms),
            },
            auto_long_prompt_tokens: u64_or(
                "AUTO_LONG_PROMPT_TOKENS",
                DEFAULT_AUTO_LONG_PROMPT_TOKENS,
            ),
            auto_cheap_model: text("AUTO_CHEAP_MODEL"),
            auto_strong_model: text("AUTO_STRONG_MODEL"),
            plugin_max_rounds: u64_or("PLUGIN_MAX_ROUNDS", DEFAULT_PLUGIN_MAX_ROUNDS)
                .clamp(1, MAX_PLUGIN_ROUNDS),
            plugins_allow_local_http: flag("PLUGINS_ALLOW_LOCAL_HTTP"),
            allow_private_upstreams: flag("ALLOW_PRIVATE_UPSTREAMS"),
            provider_secrets: text(SecretUse::Provider.allowlist_var()),
            webhook_secrets: text(SecretUse::Webhook.allowlist_var()),
            faults: match lookup("TOLLGATE_FAULTS") {
                Some(list) if test_deployment => list
                    .split(',')
                    .map(|f| f.trim().to_string())
                    .filter(|f| !f.is_empty())
                    .collect(),
                _ => Vec::new(),
            },
            console_session_seconds: u64_or(
                "CONSOLE_SESSION_SECONDS",
                DEFAULT_CONSOLE_SESSION_SECONDS,
            )
            .clamp(MIN_CONSOLE_SESSION_SECONDS, MAX_CONSOLE_SESSION_SECONDS),
            console_tenant_keys: flag("CONSOLE_TENANT_KEYS"),
            stripe_api_base: text("STRIPE_API_BASE")
                .map(|v| v.trim().trim_end_matches('/').to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| DEFAULT_STRIPE_API_BASE.to_string()),
            stripe_currency: text("STRIPE_CURRENCY")
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| DEFAULT_STRIPE_CURRENCY.to_string()),
            stripe_webhook_tolerance_seconds: u64_or(
                "STRIPE_WEBHOOK_TOLERANCE_SECONDS",
                DEFAULT_STRIPE_WEBHOOK_TOLERANCE_SECONDS,
            ),
            // On unless turned off (docs/configuration.md).
            wallets: !text("WALLETS")
                .is_some_and(|v| matches!(v.trim(), "0" | "false" | "no" | "off")),
            wallet_leases: flag("WALLET_LEASES"),
            test_deployment,
        }
    }

    /// The allowlist of extra secret names for `use_`.
    pub fn secret_allowlist(&self, use_: SecretUse) -> Option<&str> {
        match use_ {
            SecretUse::Provider => self.provider_secrets.as_deref(),
            SecretUse::Webhook => self.webhook_secrets.as_deref(),
        }
    }

    /// Whether the test-only fault `name` is switched on (`edge::cron` docs).
    pub fn fault(&self, name: &str) -> bool {
        self.faults.iter().any(|f| f == name)
    }
}

thread_local! {
    static SETTINGS: OnceCell<Rc<Settings>> = const { OnceCell::new() };
}

/// This isolate's settings, parsed on first use.
pub fn settings(env: &Env) -> Rc<Settings> {
    SETTINGS.with(|cell| {
        cell.get_or_init(|| {
            Rc::new(Settings::parse(|name| {
                env.var(name).ok().map(|v| v.to_string())
            }))
        })
        .clone()
    })
}

/// A secret by name, if set and non-empty. Only `env.secret`: a setting meant to be secret is
/// never looked up among plain vars by this code. (At run time the Workers platform hands
/// secrets and `[vars]` to a Worker the same way; what keeps secrets out of `[vars]` is the
/// operator: wrangler.toml lists none, and `wrangler secret put` / `.dev.vars` hold them.)
pub fn secret(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .ok()
        .filter(|s| !s.is_empty())
}

/// The secret `name` for `use_`, if its name is allowed for that use and it is set. `Err` says
/// why the name is refused (for logs and the operator, never for tenants).
pub fn named_secret(env: &Env, name: &str, use_: SecretUse) -> Result<Option<String>, String> {
    check_secret_name(name, use_, settings(env).secret_allowlist(use_))?;
    Ok(secret(env, name))
}

/// A configuration error naming what the operator must fix (503, code `configuration_error`:
/// shown as is, unlike other server errors).
pub fn config_error(message: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::Unavailable, message).with_code(CONFIG_ERROR_CODE)
}

/// The `code` of [`config_error`].
pub const CONFIG_ERROR_CODE: &str = "configuration_error";

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Settings {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::parse(|name| vars.get(name).cloned())
    }

    #[test]
    fn unset_settings_take_their_named_defaults() {
        let s = parse(&[]);
        assert_eq!(s.max_body_bytes as u64, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(s.session_ttl_seconds, DEFAULT_SESSION_TTL_SECONDS);
        assert_eq!(s.config_cache_ttl_ms, DEFAULT_CONFIG_CACHE_TTL_MS);
        assert_eq!(s.echo_chunk_delay_ms, DEFAULT_ECHO_CHUNK_DELAY_MS);
        assert_eq!(
            s.upstream_connect_timeout_ms,
            DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS
        );
        assert_eq!(s.upstream_timeout_ms, DEFAULT_UPSTREAM_TIMEOUT_MS);
        assert_eq!(
            s.stale_reservation_seconds,
            DEFAULT_STALE_RESERVATION_SECONDS
        );
        assert_eq!(s.client_abort_drain_ms, DEFAULT_CLIENT_ABORT_DRAIN_MS);
        assert_eq!(s.breaker, BreakerConfig::default());
        assert_eq!(s.auto_long_prompt_tokens, DEFAULT_AUTO_LONG_PROMPT_TOKENS);
        assert_eq!(s.plugin_max_rounds, DEFAULT_PLUGIN_MAX_ROUNDS);
        assert!(!s.allow_private_upstreams && !s.plugins_allow_local_http);
        assert!(s.auto_cheap_model.is_none() && s.provider_secrets.is_none());
        assert!(s.faults.is_empty());
        assert_eq!(s.console_session_seconds, DEFAULT_CONSOLE_SESSION_SECONDS);
        assert!(!s.console_tenant_keys);
        assert_eq!(s.stripe_api_base, DEFAULT_STRIPE_API_BASE);
        assert_eq!(s.stripe_currency, DEFAULT_STRIPE_CURRENCY);
        assert_eq!(
            s.stripe_webhook_tolerance_seconds,
            DEFAULT_STRIPE_WEBHOOK_TOLERANCE_SECONDS
        );
        // Unparsable and empty values fall back too.
        assert_eq!(parse(&[("MAX_BODY_BYTES", "lots")]), s);
        assert_eq!(parse(&[("AUTO_CHEAP_MODEL", "")]), s);
    }

    #[test]
    fn set_values_are_parsed_trimmed_and_bounded() {
        let s = parse(&[
            ("MAX_BODY_BYTES", " 2048 "),
            ("SESSION_TTL_SECONDS", "5"),
            ("ROUTE_FAILURE_THRESHOLD", "7"),
            ("ROUTE_COOLDOWN_MS", "100"),
            ("PLUGIN_MAX_ROUNDS", "99"),
            ("ALLOW_PRIVATE_UPSTREAMS", "yes"),
            ("PLUGINS_ALLOW_LOCAL_HTTP", "false"),
            ("AUTO_STRONG_MODEL", "big"),
            ("WEBHOOK_SECRETS", "HOOK"),
        ]);
        assert_eq!(s.max_body_bytes, 2048);
        assert_eq!(s.session_ttl_seconds, MIN_SESSION_TTL_SECONDS);
        assert_eq!(s.breaker.failure_threshold, 7);
        assert_eq!(s.breaker.cooldown_ms, 100);
        assert_eq!(s.plugin_max_rounds, MAX_PLUGIN_ROUNDS);
        assert!(s.allow_private_upstreams);
        assert!(!s.plugins_allow_local_http);
        assert_eq!(s.auto_strong_model.as_deref(), Some("big"));
        assert_eq!(s.secret_allowlist(SecretUse::Webhook), Some("HOOK"));
        assert_eq!(s.secret_allowlist(SecretUse::Provider), None);
        assert_eq!(parse(&[("PLUGIN_MAX_ROUNDS", "0")]).plugin_max_rounds, 1);
    }

    #[test]
    fn console_and_stripe_settings_are_normalised_and_bounded() {
        let s = parse(&[
            ("CONSOLE_SESSION_SECONDS", "5"),
            ("STRIPE_API_BASE", " http://127.0.0.1:9/ "),
            ("STRIPE_CURRENCY", " EUR "),
            ("STRIPE_WEBHOOK_TOLERANCE_SECONDS", "30"),
            ("CONSOLE_TENANT_KEYS", "true"),
        ]);
        assert_eq!(s.console_session_seconds, MIN_CONSOLE_SESSION_SECONDS);
        assert_eq!(s.stripe_api_base, "http://127.0.0.1:9");
        assert_eq!(s.stripe_currency, "eur");
        assert_eq!(s.stripe_webhook_tolerance_seconds, 30);
        assert!(s.console_tenant_keys);
        let long = parse(&[("CONSOLE_SESSION_SECONDS", "999999")]);
        assert_eq!(long.console_session_seconds, MAX_CONSOLE_SESSION_SECONDS);
        assert_eq!(
            parse(&[("STRIPE_CURRENCY", "  ")]).stripe_currency,
            DEFAULT_STRIPE_CURRENCY
        );
    }

    #[test]
    fn wallet_leases_are_off_unless_turned_on() {
        assert!(!parse(&[]).wallet_leases);
        assert!(!parse(&[("WALLET_LEASES", "false")]).wallet_leases);
        assert!(parse(&[("WALLET_LEASES", "true")]).wallet_leases);
    }

    #[test]
    fn wallets_are_on_unless_turned_off() {
        assert!(parse(&[]).wallets);
        assert!(parse(&[("WALLETS", "")]).wallets);
        assert!(parse(&[("WALLETS", "true")]).wallets);
        for off in ["false", " false ", "0", "no", "off"] {
            assert!(!parse(&[("WALLETS", off)]).wallets, "{off}");
        }
    }

    #[test]
    fn faults_count_only_in_a_test_deployment() {
        let faults = [("TOLLGATE_FAULTS", "settle_d1, record_call_d1")];
        assert!(!parse(&faults).fault("settle_d1"));
        let on = parse(&[faults[0], ("TOLLGATE_TEST_DEPLOYMENT", "true")]);
        assert!(on.fault("settle_d1") && on.fault("record_call_d1") && !on.fault("other"));
    }
}
