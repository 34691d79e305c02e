//! Where the gateway may send what: destination URLs of providers and webhooks, and which Worker
//! secrets an operator may name for them.
//!
//! Both rules exist because the admin API can point the gateway at a URL and name a secret to
//! send there. Without them, one admin call (`base_url` = a host the caller controls,
//! `api_key_secret` = `KEY_PEPPER`) would export the gateway's own secrets, and a typo could
//! aim a provider key at an internal service.
//!
//! * **Secret names** carry a prefix by use: `PROVIDER_…` for provider API keys,
//!   `WEBHOOK_…` for webhook signing secrets, or are listed explicitly by the operator in the
//!   plain var `PROVIDER_SECRETS` / `WEBHOOK_SECRETS` (comma-separated names: for existing
//!   deployments whose secrets are named e.g. `OPENAI_API_KEY`). The gateway's own secrets
//!   ([`RESERVED_SECRETS`]) can never be named, allowlist or not.
//! * **Destinations** must be `https` and name a public DNS host: IP literals (every form the
//!   WHATWG URL parser normalises, e.g. `127.1`, `[::1]`, `2130706433`), `localhost` and
//!   `*.localhost`, single-label names and the special-use suffixes `.internal`, `.local`,
//!   `.localdomain`, `.home.arpa`, `.lan`, `.intranet`, `.corp` are refused. The dev setting
//!   `ALLOW_PRIVATE_UPSTREAMS=true` (set by scripts/dev.sh and the e2e tests, never in
//!   production) lifts both rules for local mocks and Ollama. Name resolution is not checked:
//!   on Cloudflare private ranges are unreachable anyway; this refuses what is visibly private.

use url::{Host, Url};

/// The gateway's own secrets, which no provider or webhook may name.
pub const RESERVED_SECRETS: &[&str] = &["ADMIN_TOKEN", "KEY_PEPPER", "PLUGIN_SETTINGS_KEY"];

/// What a named secret is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretUse {
    /// A provider's API key (`api_key_secret`), sent to the provider's `base_url`.
    Provider,
    /// An alert webhook's signing secret (`signing_secret`).
    Webhook,
}

impl SecretUse {
    /// The prefix every secret of this use carries unless allowlisted.
    pub fn prefix(self) -> &'static str {
        match self {
            SecretUse::Provider => "PROVIDER_",
            SecretUse::Webhook => "WEBHOOK_",
        }
    }

    /// The plain var listing further allowed names.
    pub fn allowlist_var(self) -> &'static str {
        match self {
            SecretUse::Provider => "PROVIDER_SECRETS",
            SecretUse::Webhook => "WEBHOOK_SECRETS",
        }
    }
}

/// Why `name` may not be used as a secret of `use_`, if it may not. `allowlist` is the value of
/// [`SecretUse::allowlist_var`] (comma- or whitespace-separated names), if set.
pub fn check_secret_name(
    name: &str,
    use_: SecretUse,
    allowlist: Option<&str>,
) -> Result<(), String> {
    let well_formed = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !well_formed {
        return Err(
            "must be the NAME of a Worker secret (letters, digits, _), not the secret itself"
                .into(),
        );
    }
    if RESERVED_SECRETS
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(format!(
            "names `{name}`, one of the gateway's own secrets, which is never sent anywhere"
        ));
    }
    let prefix = use_.prefix();
    let prefixed = name.len() > prefix.len() && name.starts_with(prefix);
    let listed = allowlist.is_some_and(|list| {
        list.split(|c: char| c == ',' || c.is_whitespace())
            .any(|n| !n.is_empty() && n == name)
    });
    if prefixed || listed {
        Ok(())
    } else {
        Err(format!(
            "must start with `{prefix}` (e.g. `{prefix}{name}`) or be listed in the `{}` setting",
            use_.allowlist_var()
        ))
    }
}

const SPECIAL_SUFFIXES: &[&str] = &[
    "localhost",
    "internal",
    "local",
    "localdomain",
    "home.arpa",
    "lan",
    "intranet",
    "corp",
];

/// Why the gateway may not send secrets or data to `url`, if it may not. With `allow_private`
/// (the dev setting) any http(s) URL with a host passes.
pub fn check_destination(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|e| format!("is not a valid URL ({e})"))?;
    let scheme = parsed.scheme();
    if scheme != "https" && scheme != "http" {
        return Err(format!("must be an https:// URL, not `{scheme}:`"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials".into());
    }
    let host = parsed.host().ok_or("has no host")?;
    if allow_private {
        return Ok(());
    }
    if scheme != "https" {
        return Err("must use https (plain http is allowed only with ALLOW_PRIVATE_UPSTREAMS=true, for local development)".into());
    }
    let private = || {
        Err(format!(
            "points at a private or special host (`{host}`); only public DNS names are allowed \
             (ALLOW_PRIVATE_UPSTREAMS=true lifts this for local development)"
        ))
    };
    match host {
        Host::Ipv4(_) | Host::Ipv6(_) => private(),
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let special = SPECIAL_SUFFIXES
                .iter()
                .any(|s| name == *s || name.ends_with(&format!(".{s}")));
            if special || !name.contains('.') {
                private()
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_need_their_prefix_or_the_allowlist() {
        let p = SecretUse::Provider;
        assert!(check_secret_name("PROVIDER_OPENAI", p, None).is_ok());
        assert!(check_secret_name("OPENAI_API_KEY", p, None).is_err());
        assert!(check_secret_name("OPENAI_API_KEY", p, Some("OPENAI_API_KEY, OTHER")).is_ok());
        assert!(check_secret_name("OPENAI_API", p, Some("OPENAI_API_KEY")).is_err());
        assert!(check_secret_name("PROVIDER_", p, None).is_err());
        assert!(check_secret_name("WEBHOOK_X", p, None).is_err());
        assert!(check_secret_name("WEBHOOK_X", SecretUse::Webhook, None).is_ok());
        assert!(check_secret_name("PROVIDER_X", SecretUse::Webhook, None).is_err());
        assert!(check_secret_name("sk-live-abc", p, None).is_err());
        assert!(check_secret_name("", p, None).is_err());
    }

    #[test]
    fn the_gateways_own_secrets_are_never_allowed() {
        for name in RESERVED_SECRETS {
            for use_ in [SecretUse::Provider, SecretUse::Webhook] {
                let err = check_secret_name(name, use_, Some(name)).unwrap_err();
                assert!(err.contains("gateway's own"), "{name}: {err}");
            }
        }
        assert!(
            check_secret_name("admin_token", SecretUse::Provider, Some("admin_token")).is_err()
        );
    }

    #[test]
    fn destinations_must_be_public_https() {
        for ok in [
            "https://api.openai.com/v1",
            "https://example.com:8443/hook?x=1",
            "https://my-resource.openai.azure.com/openai",
        ] {
            assert_eq!(check_destination(ok, false), Ok(()), "{ok}");
        }
        for bad in [
            "http://api.openai.com/v1",
            "https://127.0.0.1/v1",
            "https://127.1/v1",
            "https://2130706433/v1",
            "https://0x7f000001/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://10.0.0.5/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://8.8.8.8/",
            "https://localhost/",
            "https://LOCALHOST./",
            "https://api.localhost/",
            "https://metadata.google.internal/",
            "https://printer.local/",
            "https://intranet/",
            "https://user:pw@example.com/",
            "ftp://example.com/",
            "not a url",
        ] {
            assert!(check_destination(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_dev_setting_allows_local_hosts() {
        assert_eq!(check_destination("http://127.0.0.1:8080/v1", true), Ok(()));
        assert_eq!(check_destination("http://localhost:11434", true), Ok(()));
        assert!(check_destination("ftp://127.0.0.1/", true).is_err());
        assert!(check_destination("http://u:p@127.0.0.1/", true).is_err());
    }
}
