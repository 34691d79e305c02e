//! The one table of provider kinds: for each, the names an operator may use, the default base
//! URL, the adapter, how the key travels, where the output cap goes and how the request reaches
//! the model. Every question "which … for this kind" is a lookup here, never a `match` of its
//! own: adding a kind is its adapter module plus one [`ProviderKind`] variant and one row.
//!
//! `auth` and `output_cap` describe what the adapters do (they build the headers and bodies);
//! the tests below build a request with every row's adapter and fail when a row and its adapter
//! disagree.

use super::{anthropic, azure, echo, gemini, huggingface, ollama, openai, Adapter, ProviderKind};

/// How a provider's key travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `authorization: Bearer <key>`.
    Bearer,
    /// The key alone in this header (`api-key`, `x-api-key`, `x-goog-api-key`).
    Header(&'static str),
    /// No key: the model answers inside the gateway.
    None,
}

/// Which request field carries the output cap (the reservation's cover, `Route::output_cap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputCap {
    /// OpenAI's `max_completion_tokens` or `max_tokens`, by the server's dialect or the provider
    /// config's `output_cap_field` ([`openai::CapField`]).
    OpenAiDialect,
    /// This field, a JSON path with dots (`generationConfig.maxOutputTokens`).
    Field(&'static str),
}

/// How a built request reaches the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// An HTTPS fetch to the route's `base_url` (checked against private hosts).
    Http,
    /// Served inside the gateway ([`super::serve_local`]): no network, no destination to check,
    /// no fallback routes.
    Local,
}

/// One provider kind.
pub struct KindEntry {
    pub kind: ProviderKind,
    /// The name stored in `providers.kind` and shown by the admin API.
    pub name: &'static str,
    /// Other names an operator may give for this kind.
    pub aliases: &'static [&'static str],
    /// The base URL used when the operator gives none.
    pub default_base_url: Option<&'static str>,
    /// Names of this kind that mean a server of the operator's own, so that no default base URL
    /// applies (`openai-compatible`, `tgi`).
    pub no_default_for: &'static [&'static str],
    pub adapter: &'static dyn Adapter,
    pub auth: AuthStyle,
    pub output_cap: OutputCap,
    pub transport: Transport,
}

/// Every kind Tollgate has, in the order error messages list them.
pub static KINDS: &[KindEntry] = &[
    KindEntry {
        kind: ProviderKind::OpenAi,
        name: "openai",
        aliases: &["openai-compatible"],
        default_base_url: Some("https://api.openai.com/v1"),
        no_default_for: &["openai-compatible"],
        adapter: &openai::OpenAiAdapter,
        auth: AuthStyle::Bearer,
        output_cap: OutputCap::OpenAiDialect,
        transport: Transport::Http,
    },
    KindEntry {
        kind: ProviderKind::Azure,
        name: "azure",
        aliases: &["azure-openai"],
        default_base_url: None,
        no_default_for: &[],
        adapter: &azure::AzureAdapter,
        auth: AuthStyle::Header("api-key"),
        output_cap: OutputCap::OpenAiDialect,
        transport: Transport::Http,
    },
    KindEntry {
        kind: ProviderKind::Anthropic,
        name: "anthropic",
        aliases: &[],
        default_base_url: Some(anthropic::DEFAULT_BASE_URL),
        no_default_for: &[],
        adapter: &anthropic::AnthropicAdapter,
        auth: AuthStyle::Header("x-api-key"),
        output_cap: OutputCap::Field("max_tokens"),
        transport: Transport::Http,
    },
    KindEntry {
        kind: ProviderKind::Gemini,
        name: "gemini",
        aliases: &["google"],
        default_base_url: Some(gemini::DEFAULT_BASE_URL),
        no_default_for: &[],
        adapter: &gemini::GeminiAdapter,
        auth: AuthStyle::Header("x-goog-api-key"),
        output_cap: OutputCap::Field("generationConfig.maxOutputTokens"),
        transport: Transport::Http,
    },
    KindEntry {
        kind: ProviderKind::Ollama,
        name: "ollama",
        aliases: &[],
        default_base_url: Some(ollama::DEFAULT_BASE_URL),
        no_default_for: &[],
        adapter: &ollama::OllamaAdapter,
        auth: AuthStyle::Bearer,
        output_cap: OutputCap::Field("options.num_predict"),
        transport: Transport::Http,
    },
    KindEntry {
        kind: ProviderKind::HuggingFace,
        name: "huggingface",
        aliases: &["hf", "tgi"],
        default_base_url: Some(huggingface::ROUTER_BASE_URL),
        no_default_for: &["tgi"],
        adapter: &huggingface::HuggingFaceAdapter,
        auth: AuthStyle::Bearer,
        output_cap: OutputCap::OpenAiDialect,
        transport: Transport::Http,
    },
    KindEntry {
        kind: ProviderKind::Echo,
        name: "echo",
        aliases: &[],
        default_base_url: Some("builtin:"),
        no_default_for: &[],
        adapter: &echo::EchoAdapter,
        auth: AuthStyle::None,
        output_cap: OutputCap::OpenAiDialect,
        transport: Transport::Local,
    },
];

/// The row of `kind`. Every variant has one (a test checks it); the first row is the fallback
/// that cannot be reached.
pub fn entry(kind: ProviderKind) -> &'static KindEntry {
    KINDS.iter().find(|e| e.kind == kind).unwrap_or(&KINDS[0])
}

/// The row an operator's kind name means: a kind's name or alias. OpenAI-compatible presets
/// (`deepseek`, `groq`, …) are not rows: see [`openai::preset_by_name`].
pub fn by_name(name: &str) -> Option<&'static KindEntry> {
    KINDS
        .iter()
        .find(|e| e.name == name || e.aliases.contains(&name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::openai::ChatCompletionRequest;
    use crate::core::providers::{Route, UpstreamCall};

    const EVERY_KIND: [ProviderKind; 7] = [
        ProviderKind::OpenAi,
        ProviderKind::Azure,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
        ProviderKind::Ollama,
        ProviderKind::HuggingFace,
        ProviderKind::Echo,
    ];

    #[test]
    fn every_kind_has_exactly_one_row_and_names_are_unique() {
        for kind in EVERY_KIND {
            assert_eq!(KINDS.iter().filter(|e| e.kind == kind).count(), 1);
            assert_eq!(entry(kind).kind, kind);
        }
        assert_eq!(KINDS.len(), EVERY_KIND.len());
        let mut names: Vec<&str> = KINDS
            .iter()
            .flat_map(|e| std::iter::once(e.name).chain(e.aliases.iter().copied()))
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "a name means two kinds");
        for e in KINDS {
            assert!(e.no_default_for.iter().all(|n| e.aliases.contains(n)));
            // A preset is an OpenAI-compatible server: its name cannot mean another kind.
            let names = std::iter::once(&e.name).chain(e.aliases);
            for name in names.filter(|_| e.kind != ProviderKind::OpenAi) {
                assert!(openai::preset_by_name(name).is_none(), "{name}");
            }
        }
    }

    fn route(e: &KindEntry) -> Route {
        Route {
            provider: "p".into(),
            kind: e.kind,
            base_url: e
                .default_base_url
                .unwrap_or("https://r.openai.azure.com")
                .into(),
            api_key: Some("the-key".into()),
            upstream_model: "up".into(),
            max_output_tokens: Some(321),
            config: serde_json::Value::Null,
        }
    }

    /// The row's auth and output cap are what its adapter really sends; a local row's request
    /// is served in the gateway.
    #[test]
    fn each_row_matches_what_its_adapter_builds() {
        let req = ChatCompletionRequest::from_json(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        for e in KINDS {
            let r = route(e);
            let call = e.adapter.build_call(&r, &req).unwrap();
            let up = match (e.transport, call) {
                (Transport::Http, UpstreamCall::Http(up)) => up,
                (Transport::Local, UpstreamCall::Local(local)) => {
                    assert_eq!(e.auth, AuthStyle::None);
                    let body: serde_json::Value = serde_json::from_slice(&local.body).unwrap();
                    assert_eq!(body["max_completion_tokens"], 321, "{}", e.name);
                    continue;
                }
                (t, _) => panic!("{}: transport {t:?} and the adapter disagree", e.name),
            };
            let header = |name: &str| {
                up.headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
            };
            match e.auth {
                AuthStyle::Bearer => assert_eq!(header("authorization"), Some("Bearer the-key")),
                AuthStyle::Header(h) => {
                    assert_eq!(header(h), Some("the-key"), "{}", e.name);
                    assert_eq!(header("authorization"), None, "{}", e.name);
                }
                AuthStyle::None => panic!("{}: an HTTP kind without a key", e.name),
            }
            let body: serde_json::Value = serde_json::from_slice(&up.body).unwrap();
            match e.output_cap {
                OutputCap::OpenAiDialect => assert!(
                    body["max_completion_tokens"] == 321 || body["max_tokens"] == 321,
                    "{}: {body}",
                    e.name
                ),
                OutputCap::Field(path) => {
                    let v = path.split('.').fold(&body, |v, k| &v[k]);
                    assert_eq!(v, 321, "{}: {path} in {body}", e.name);
                }
            }
        }
    }

    /// The kind names and default base URLs an operator could rely on before the table.
    #[test]
    fn names_and_default_urls_are_unchanged() {
        let cases: &[(&str, Option<ProviderKind>, Option<&str>)] = &[
            (
                "openai",
                Some(ProviderKind::OpenAi),
                Some("https://api.openai.com/v1"),
            ),
            ("openai-compatible", Some(ProviderKind::OpenAi), None),
            ("azure", Some(ProviderKind::Azure), None),
            ("azure-openai", Some(ProviderKind::Azure), None),
            (
                "anthropic",
                Some(ProviderKind::Anthropic),
                Some(anthropic::DEFAULT_BASE_URL),
            ),
            (
                "gemini",
                Some(ProviderKind::Gemini),
                Some(gemini::DEFAULT_BASE_URL),
            ),
            (
                "google",
                Some(ProviderKind::Gemini),
                Some(gemini::DEFAULT_BASE_URL),
            ),
            (
                "ollama",
                Some(ProviderKind::Ollama),
                Some(ollama::DEFAULT_BASE_URL),
            ),
            (
                "huggingface",
                Some(ProviderKind::HuggingFace),
                Some(huggingface::ROUTER_BASE_URL),
            ),
            (
                "hf",
                Some(ProviderKind::HuggingFace),
                Some(huggingface::ROUTER_BASE_URL),
            ),
            ("tgi", Some(ProviderKind::HuggingFace), None),
            ("echo", Some(ProviderKind::Echo), Some("builtin:")),
            (
                "deepseek",
                Some(ProviderKind::OpenAi),
                Some("https://api.deepseek.com/v1"),
            ),
            ("nope", None, None),
            ("", None, None),
        ];
        for &(name, kind, url) in cases {
            assert_eq!(ProviderKind::parse(name), kind, "{name}");
            assert_eq!(ProviderKind::default_base_url(name), url, "{name}");
        }
        assert_eq!(
            ProviderKind::names(),
            [
                "openai",
                "azure",
                "anthropic",
                "gemini",
                "ollama",
                "huggingface",
                "echo"
            ]
        );
        assert!(ProviderKind::Echo.is_local() && !ProviderKind::OpenAi.is_local());
    }
}
