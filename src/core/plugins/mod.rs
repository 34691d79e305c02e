//! Plugins: tools an operator registers and tenants enable, run by the gateway outside itself.
//!
//! This module is the pure part: the manifest format and its validation ([`Manifest::parse`]),
//! the OpenAI tool names and definitions a plugin is offered as, the request field `plugins`,
//! slash commands ([`command`]), what a plugin's answer becomes ([`reply`]) and sealed settings
//! ([`sealed`]). The edge (`src/edge/plugins/`) does the I/O.

pub mod command;
pub mod live;
pub mod reply;
pub mod sealed;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::core::error::GatewayError;
use crate::core::jsonschema::{self, SchemaError};
use crate::core::openai::{FunctionDef, Tool};

/// Separates the plugin and API in a tool name: `weather__get_forecast`.
pub const TOOL_SEPARATOR: &str = "__";
/// Default and largest time a plugin may take, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
pub const MAX_TIMEOUT_MS: u64 = 30_000;
/// Default and largest plugin answer, in bytes.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024;
pub const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;
/// Largest request body sent to a plugin (its arguments and settings), in bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Most APIs in one manifest.
pub const MAX_APIS: usize = 32;

/// How a plugin is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// An HTTPS URL (plain `http://127.0.0.1`/`localhost` only when the dev setting allows it).
    Url(String),
    /// A Worker service binding (`[[services]]` in wrangler.toml) by its binding name.
    Service(String),
}

/// One callable API of a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Api {
    pub name: String,
    pub description: String,
    /// A JSON Schema (the [`jsonschema`] subset) of type `object`.
    pub parameters: Value,
}

/// A validated plugin manifest, stored as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub identifier: String,
    pub title: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub endpoint: Endpoint,
    /// Hosts the gateway may send this plugin's requests to (URL endpoints only).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    pub timeout_ms: u64,
    pub max_response_bytes: u64,
    /// JSON Schema of the per-tenant settings (e.g. the plugin's own API key), if it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Value>,
    pub apis: Vec<Api>,
}

/// Where plugins may live; operators loosen it only for local development.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// `http://127.0.0.1`, `http://[::1]` and `http://localhost` allowed (var `PLUGINS_ALLOW_LOCAL_HTTP`).
    pub allow_local_http: bool,
}

/// A manifest refused: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub field: String,
    pub message: String,
}

impl ManifestError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ManifestError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<SchemaError> for ManifestError {
    fn from(e: SchemaError) -> Self {
        ManifestError::new(e.path, e.message)
    }
}

impl From<ManifestError> for GatewayError {
    fn from(e: ManifestError) -> Self {
        GatewayError::invalid_param(
            &format!("manifest.{}", e.field),
            format!("Invalid plugin manifest: `{}` {}.", e.field, e.message),
        )
    }
}

/// Whether `id` is a valid plugin identifier: 1–32 of `[a-z0-9-]`, starting with a letter.
/// No underscores, so a tool name splits unambiguously at its first `__`.
pub fn valid_identifier(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn valid_api_name(name: &str) -> bool {
    (1..=30).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Why a URL may not be used for a plugin, if it may not.
pub fn check_url(
    url: &str,
    allowed_hosts: &[String],
    policy: EndpointPolicy,
) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("is not a valid URL ({e})"))?;
    let host = parsed.host_str().ok_or("has no host")?.to_ascii_lowercase();
    let local = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]");
    match parsed.scheme() {
        "https" => {}
        "http" if local && policy.allow_local_http => {}
        "http" if local => {
            return Err(
                "uses plain http, allowed only for 127.0.0.1/localhost when the gateway's \
                 PLUGINS_ALLOW_LOCAL_HTTP setting is on"
                    .to_string(),
            )
        }
        other => return Err(format!("must use https, not `{other}`")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials".to_string());
    }
    if parsed.fragment().is_some() {
        return Err("must not have a fragment".to_string());
    }
    if !allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
        return Err(format!(
            "points at `{host}`, which is not in the plugin's allowed_hosts"
        ));
    }
    if !policy.allow_local_http {
        // IP literals, localhost, .internal and other private names (`core::outbound`).
        crate::core::outbound::check_destination(url, false)?;
    }
    Ok(())
}

fn string_field<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    field: &str,
    max: usize,
    required: bool,
) -> Result<Option<&'a str>, ManifestError> {
    match map.get(key) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(ManifestError::new(field, "is required")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(ManifestError::new(field, "must not be empty"))
        }
        Some(Value::String(s)) if s.chars().count() > max => Err(ManifestError::new(
            field,
            format!("is longer than {max} characters"),
        )),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ManifestError::new(field, "must be a string")),
    }
}

fn bounded_u64(
    map: &Map<String, Value>,
    key: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ManifestError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ManifestError::new(
                key,
                format!("must be an integer from {min} to {max}"),
            )),
        },
    }
}

const MANIFEST_KEYS: &[&str] = &[
    "identifier",
    "title",
    "description",
    "version",
    "endpoint",
    "allowed_hosts",
    "timeout_ms",
    "max_response_bytes",
    "settings",
    "apis",
];

impl Manifest {
    /// Validates a manifest as an operator submits it; the error names the field and the reason.
    pub fn parse(value: &Value, policy: EndpointPolicy) -> Result<Manifest, ManifestError> {
        let Value::Object(map) = value else {
            return Err(ManifestError::new("(root)", "must be a JSON object"));
        };
        if let Some(unknown) = map.keys().find(|k| !MANIFEST_KEYS.contains(&k.as_str())) {
            return Err(ManifestError::new(
                unknown.as_str(),
                format!(
                    "is not a manifest field (known: {})",
                    MANIFEST_KEYS.join(", ")
                ),
            ));
        }
        let identifier = string_field(map, "identifier", "identifier", 32, true)?
            .unwrap_or_default()
            .to_string();
        if !valid_identifier(&identifier) {
            return Err(ManifestError::new(
                "identifier",
                "must be 1 to 32 of lowercase letters, digits and `-`, starting with a letter",
            ));
        }
        let title = string_field(map, "title", "title", 100, true)?
            .unwrap_or_default()
            .to_string();
        let description = string_field(map, "description", "description", 1000, true)?
            .unwrap_or_default()
            .to_string();
        let version = string_field(map, "version", "version", 40, false)?.map(str::to_string);

        let allowed_hosts = match map.get("allowed_hosts") {
            None | Some(Value::Null) => None,
            Some(Value::Array(hosts)) => {
                let mut out = Vec::new();
                for (i, h) in hosts.iter().enumerate() {
                    match h.as_str() {
                        Some(h)
                            if !h.is_empty()
                                && h.len() <= 253
                                && h.chars().all(|c| {
                                    c.is_ascii_alphanumeric()
                                        || matches!(c, '.' | '-' | '[' | ']' | ':')
                                }) =>
                        {
                            out.push(h.to_ascii_lowercase())
                        }
                        _ => {
                            return Err(ManifestError::new(
                                format!("allowed_hosts[{i}]"),
                                "must be a host name (no scheme, port or path)",
                            ))
                        }
                    }
                }
                Some(out)
            }
            Some(_) => {
                return Err(ManifestError::new(
                    "allowed_hosts",
                    "must be an array of host names",
                ))
            }
        };

        let (endpoint, allowed_hosts) = match map.get("endpoint") {
            Some(Value::Object(e)) => match (e.get("url"), e.get("service")) {
                (Some(Value::String(url)), None) => {
                    let hosts = match allowed_hosts {
                        Some(h) => h,
                        None => vec![url::Url::parse(url)
                            .ok()
                            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                            .unwrap_or_default()],
                    };
                    check_url(url, &hosts, policy)
                        .map_err(|m| ManifestError::new("endpoint.url", m))?;
                    (Endpoint::Url(url.clone()), hosts)
                }
                (None, Some(Value::String(name))) => {
                    let ok = !name.is_empty()
                        && name.len() <= 64
                        && name.starts_with(|c: char| c.is_ascii_alphabetic())
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !ok {
                        return Err(ManifestError::new(
                            "endpoint.service",
                            "must be a Worker binding name (letters, digits, `_`)",
                        ));
                    }
                    (
                        Endpoint::Service(name.clone()),
                        allowed_hosts.unwrap_or_default(),
                    )
                }
                _ => {
                    return Err(ManifestError::new(
                        "endpoint",
                        "must be {\"url\": \"https://…\"} or {\"service\": \"BINDING\"}",
                    ))
                }
            },
            None => return Err(ManifestError::new("endpoint", "is required")),
            Some(_) => {
                return Err(ManifestError::new(
                    "endpoint",
                    "must be {\"url\": \"https://…\"} or {\"service\": \"BINDING\"}",
                ))
            }
        };

        let timeout_ms = bounded_u64(map, "timeout_ms", DEFAULT_TIMEOUT_MS, 100, MAX_TIMEOUT_MS)?;
        let max_response_bytes = bounded_u64(
            map,
            "max_response_bytes",
            DEFAULT_MAX_RESPONSE_BYTES,
            1,
            MAX_RESPONSE_BYTES,
        )?;

        let settings = match map.get("settings") {
            None | Some(Value::Null) => None,
            Some(schema) => {
                jsonschema::check_schema(schema, "settings")?;
                if schema.get("type").and_then(Value::as_str) != Some("object") {
                    return Err(ManifestError::new("settings.type", "must be \"object\""));
                }
                Some(schema.clone())
            }
        };

        let Some(Value::Array(raw_apis)) = map.get("apis") else {
            return Err(ManifestError::new(
                "apis",
                "is required: an array of one or more APIs",
            ));
        };
        if raw_apis.is_empty() || raw_apis.len() > MAX_APIS {
            return Err(ManifestError::new(
                "apis",
                format!("must hold 1 to {MAX_APIS} APIs"),
            ));
        }
        let mut apis: Vec<Api> = Vec::with_capacity(raw_apis.len());
        for (i, raw) in raw_apis.iter().enumerate() {
            let at = format!("apis[{i}]");
            let Value::Object(a) = raw else {
                return Err(ManifestError::new(at, "must be an object"));
            };
            if let Some(unknown) = a
                .keys()
                .find(|k| !["name", "description", "parameters"].contains(&k.as_str()))
            {
                return Err(ManifestError::new(
                    format!("{at}.{unknown}"),
                    "is not an API field (known: name, description, parameters)",
                ));
            }
            let name = string_field(a, "name", &format!("{at}.name"), 30, true)?
                .unwrap_or_default()
                .to_string();
            if !valid_api_name(&name) {
                return Err(ManifestError::new(
                    format!("{at}.name"),
                    "must be 1 to 30 of letters, digits, `_` and `-`, starting with a letter",
                ));
            }
            if apis.iter().any(|x| x.name == name) {
                return Err(ManifestError::new(
                    format!("{at}.name"),
                    format!("`{name}` is declared twice"),
                ));
            }
            let description =
                string_field(a, "description", &format!("{at}.description"), 1000, true)?
                    .unwrap_or_default()
                    .to_string();
            let parameters = a.get("parameters").cloned().ok_or_else(|| {
                ManifestError::new(format!("{at}.parameters"), "is required (a JSON Schema)")
            })?;
            jsonschema::check_schema(&parameters, &format!("{at}.parameters"))?;
            if parameters.get("type").and_then(Value::as_str) != Some("object") {
                return Err(ManifestError::new(
                    format!("{at}.parameters.type"),
                    "must be \"object\" (tool arguments are a JSON object)",
                ));
            }
            apis.push(Api {
                name,
                description,
                parameters,
            });
        }

        Ok(Manifest {
            identifier,
            title,
            description,
            version,
            endpoint,
            allowed_hosts,
            timeout_ms,
            max_response_bytes,
            settings,
            apis,
        })
    }

    /// The API named `name`.
    pub fn api(&self, name: &str) -> Option<&Api> {
        self.apis.iter().find(|a| a.name == name)
    }

    /// The OpenAI tools this plugin is offered to a model as, one per API.
    pub fn tools(&self) -> Vec<Tool> {
        self.apis
            .iter()
            .map(|api| Tool {
                kind: "function".to_string(),
                function: Some(FunctionDef {
                    name: tool_name(&self.identifier, &api.name),
                    description: Some(format!("{} — {}", self.title, api.description)),
                    parameters: Some(api.parameters.clone()),
                    extra: Map::new(),
                }),
                extra: Map::new(),
            })
            .collect()
    }
}

/// The tool name of a plugin API.
pub fn tool_name(plugin: &str, api: &str) -> String {
    format!("{plugin}{TOOL_SEPARATOR}{api}")
}

/// Splits a tool name into plugin and API, if it has the plugin form.
pub fn split_tool_name(name: &str) -> Option<(&str, &str)> {
    let (plugin, api) = name.split_once(TOOL_SEPARATOR)?;
    (valid_identifier(plugin) && valid_api_name(api)).then_some((plugin, api))
}

/// Which plugins a chat request asks for, through its `plugins` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// No `plugins` field: the tenant's default plugins.
    Defaults,
    /// These plugins (possibly none).
    Named(Vec<String>),
}

/// The note appended to the answer of a plain tool loop that stopped after its first round was
/// charged (the next round failed with `err`): the client gets the last answer, marked
/// incomplete, instead of an error that would invite a retry paying for the rounds again.
pub fn incomplete_note(err: &GatewayError) -> String {
    format!(
        "[Tollgate: this answer is incomplete. The plugin results were not passed back to the \
         model because its next round failed ({}); the rounds so far are charged.]",
        err.code()
    )
}

/// The request field that turns on slash-command mode (`"plugin_commands": true`).
pub const COMMANDS_FIELD: &str = "plugin_commands";

/// The request fields that belong to plugins and are never sent upstream.
pub const PLUGIN_FIELDS: &[&str] = &["plugins", COMMANDS_FIELD];

/// The plugin field of an agent API's request (`/v1/responses`, `/v1/messages`) and the 400's
/// message: plugins run on chat completions only (docs/plugins.md, "Which APIs"); the tool loop
/// and slash commands answer in chat's shape. `None` when the request names none.
pub fn chat_only_field(
    request: &serde_json::Map<String, serde_json::Value>,
) -> Option<(&str, String)> {
    let field = request
        .keys()
        .map(String::as_str)
        .find(|k| PLUGIN_FIELDS.contains(k))?;
    Some((
        field,
        format!(
            "`{field}`: plugins and plugin commands apply to POST /v1/chat/completions only; \
             call that API to use them."
        ),
    ))
}

/// Removes [`COMMANDS_FIELD`] from a request's pass-through fields and says whether the request
/// opted in to slash commands. Commands are opt-in per request: a last user message that
/// happens to start with `/name` (typed by an end user of the tenant's app) runs nothing unless
/// the tenant's own code asked for command mode.
pub fn take_commands_opt_in(extra: &mut Map<String, Value>) -> Result<bool, GatewayError> {
    match extra.remove(COMMANDS_FIELD) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(on)) => Ok(on),
        Some(_) => Err(GatewayError::invalid_param(
            COMMANDS_FIELD,
            "`plugin_commands` must be true or false.",
        )),
    }
}

/// Removes the `plugins` field from a request's pass-through fields (it is never sent upstream)
/// and says what it selects.
pub fn take_selection(extra: &mut Map<String, Value>) -> Result<Selection, GatewayError> {
    let bad = || {
        GatewayError::invalid_param(
            "plugins",
            "`plugins` must be an array of plugin identifiers, e.g. [\"weather\"].",
        )
    };
    match extra.remove("plugins") {
        None | Some(Value::Null) => Ok(Selection::Defaults),
        Some(Value::Array(items)) => {
            let mut names: Vec<String> = Vec::new();
            for item in items {
                let Value::String(name) = item else {
                    return Err(bad());
                };
                if !valid_identifier(&name) {
                    return Err(bad());
                }
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            Ok(Selection::Named(names))
        }
        Some(_) => Err(bad()),
    }
}

/// The JSON body a plugin receives: its API, the validated arguments and its own settings.
/// Nothing else (no tenant, key, or request data) is sent.
pub fn call_body(api: &str, arguments: &Value, settings: Option<&Value>) -> Vec<u8> {
    let body = json!({
        "api": api,
        "arguments": arguments,
        "settings": settings.cloned().unwrap_or_else(|| json!({})),
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod opt_in_tests {
    use super::*;

    #[test]
    fn commands_are_opt_in_per_request() {
        let mut extra = Map::new();
        assert!(!take_commands_opt_in(&mut extra).unwrap());
        extra.insert(COMMANDS_FIELD.into(), json!(true));
        assert!(take_commands_opt_in(&mut extra).unwrap());
        assert!(!extra.contains_key(COMMANDS_FIELD), "never sent upstream");
        extra.insert(COMMANDS_FIELD.into(), json!(false));
        assert!(!take_commands_opt_in(&mut extra).unwrap());
        extra.insert(COMMANDS_FIELD.into(), json!("yes"));
        let err = take_commands_opt_in(&mut extra).unwrap_err();
        assert_eq!(err.param.as_deref(), Some(COMMANDS_FIELD));
    }

    #[test]
    fn https_plugins_on_private_hosts_need_the_dev_setting() {
        let hosts = |h: &str| vec![h.to_string()];
        let off = EndpointPolicy {
            allow_local_http: false,
        };
        let on = EndpointPolicy {
            allow_local_http: true,
        };
        assert!(check_url("https://127.0.0.1/x", &hosts("127.0.0.1"), off).is_err());
        assert!(check_url("https://10.1.2.3/x", &hosts("10.1.2.3"), off).is_err());
        assert!(check_url("https://svc.internal/x", &hosts("svc.internal"), off).is_err());
        assert!(check_url("https://127.0.0.1/x", &hosts("127.0.0.1"), on).is_ok());
        assert!(check_url("https://wx.example.com/x", &hosts("wx.example.com"), off).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn weather(url: &str) -> Value {
        json!({
            "identifier": "weather",
            "title": "Weather",
            "description": "Forecasts by city",
            "endpoint": {"url": url},
            "settings": {"type": "object", "properties": {"api_key": {"type": "string"}}},
            "apis": [{
                "name": "get_forecast",
                "description": "Forecast for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
                    "required": ["city"]
                }
            }]
        })
    }

    #[test]
    fn parses_a_complete_manifest() {
        let m = Manifest::parse(
            &weather("https://wx.example.com/tollgate"),
            EndpointPolicy::default(),
        )
        .unwrap();
        assert_eq!(m.allowed_hosts, vec!["wx.example.com"]);
        assert_eq!(m.timeout_ms, DEFAULT_TIMEOUT_MS);
        let tools = m.tools();
        let f = tools[0].function.as_ref().unwrap();
        assert_eq!(f.name, "weather__get_forecast");
        assert_eq!(f.parameters.as_ref().unwrap()["required"][0], "city");
        // Stored form round-trips.
        let stored: Manifest = serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
        assert_eq!(stored, m);
    }

    #[test]
    fn rejects_bad_manifests_naming_the_field() {
        let base = weather("https://wx.example.com/x");
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Edit, &str, &str)> = vec![
            (
                Box::new(|m| m["identifier"] = json!("Weather_1")),
                "identifier",
                "lowercase",
            ),
            (
                Box::new(|m| {
                    m.as_object_mut().unwrap().remove("title");
                }),
                "title",
                "required",
            ),
            (
                Box::new(|m| m["endpoint"] = json!({"url": "http://wx.example.com/x"})),
                "endpoint.url",
                "https",
            ),
            (
                Box::new(|m| m["endpoint"] = json!({"url": "http://127.0.0.1:9/x"})),
                "endpoint.url",
                "PLUGINS_ALLOW_LOCAL_HTTP",
            ),
            (
                Box::new(|m| m["endpoint"] = json!({"url": "https://u:p@wx.example.com/x"})),
                "endpoint.url",
                "credentials",
            ),
            (
                Box::new(|m| m["allowed_hosts"] = json!(["other.example.com"])),
                "endpoint.url",
                "allowed_hosts",
            ),
            (
                Box::new(|m| m["endpoint"] = json!("https://wx.example.com")),
                "endpoint",
                "must be",
            ),
            (
                Box::new(|m| m["timeout_ms"] = json!(60_000)),
                "timeout_ms",
                "100 to 30000",
            ),
            (Box::new(|m| m["apis"] = json!([])), "apis", "1 to"),
            (
                Box::new(|m| m["apis"][0]["name"] = json!("get forecast")),
                "apis[0].name",
                "letters",
            ),
            (
                Box::new(|m| m["apis"][0]["parameters"] = json!({"type": "string"})),
                "apis[0].parameters.type",
                "object",
            ),
            (
                Box::new(|m| {
                    m["apis"][0]["parameters"]["properties"]["city"]["type"] = json!("text")
                }),
                "apis[0].parameters.properties.city.type",
                "must be one of",
            ),
            (
                Box::new(|m| m["apis"][0]["parameters"]["required"] = json!(["town"])),
                "apis[0].parameters.required[0]",
                "not declared",
            ),
            (
                Box::new(|m| m["apis"][0]["path"] = json!("/x")),
                "apis[0].path",
                "not an API field",
            ),
            (
                Box::new(|m| m["colour"] = json!("red")),
                "colour",
                "not a manifest field",
            ),
            (
                Box::new(|m| m["settings"] = json!({"type": "string"})),
                "settings.type",
                "object",
            ),
        ];
        for (edit, field, needle) in cases {
            let mut m = base.clone();
            edit(&mut m);
            let e = Manifest::parse(&m, EndpointPolicy::default()).unwrap_err();
            assert_eq!(e.field, field, "{e:?}");
            assert!(e.message.contains(needle), "{e:?}");
            let g = GatewayError::from(e);
            assert_eq!(g.status(), 400);
            assert_eq!(
                g.param.as_deref(),
                Some(format!("manifest.{field}").as_str())
            );
        }
    }

    #[test]
    fn local_http_only_when_allowed_and_services() {
        let policy = EndpointPolicy {
            allow_local_http: true,
        };
        let m = Manifest::parse(&weather("http://127.0.0.1:8123/wx"), policy).unwrap();
        assert_eq!(m.endpoint, Endpoint::Url("http://127.0.0.1:8123/wx".into()));
        assert!(Manifest::parse(&weather("http://10.0.0.1/wx"), policy).is_err());
        let mut svc = weather("x");
        svc["endpoint"] = json!({"service": "WEATHER_PLUGIN"});
        let m = Manifest::parse(&svc, EndpointPolicy::default()).unwrap();
        assert_eq!(m.endpoint, Endpoint::Service("WEATHER_PLUGIN".into()));
    }

    #[test]
    fn tool_names_split_once() {
        assert_eq!(
            split_tool_name("weather__get_forecast"),
            Some(("weather", "get_forecast"))
        );
        assert_eq!(split_tool_name("my-tool"), None);
        assert_eq!(split_tool_name("Weather__x"), None);
        assert_eq!(split_tool_name("a__b__c"), Some(("a", "b__c")));
    }

    #[test]
    fn selection_field() {
        let mut extra = Map::new();
        assert_eq!(take_selection(&mut extra).unwrap(), Selection::Defaults);
        extra.insert("plugins".into(), json!(["weather", "weather", "news"]));
        assert_eq!(
            take_selection(&mut extra).unwrap(),
            Selection::Named(vec!["weather".into(), "news".into()])
        );
        assert!(!extra.contains_key("plugins"));
        for bad in [json!("weather"), json!([1]), json!(["../x"])] {
            extra.insert("plugins".into(), bad);
            assert_eq!(
                take_selection(&mut extra).unwrap_err().param.as_deref(),
                Some("plugins")
            );
        }
    }

    #[test]
    fn call_body_carries_only_api_arguments_settings() {
        let body: Value =
            serde_json::from_slice(&call_body("get_forecast", &json!({"city": "x"}), None))
                .unwrap();
        assert_eq!(
            body,
            json!({"api": "get_forecast", "arguments": {"city": "x"}, "settings": {}})
        );
    }
}
