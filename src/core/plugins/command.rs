//! Slash commands: a user message `/<plugin>[.<api>] <text>` calls a plugin directly.
//!
//! Parsing rule:
//! - The command is the first word after `/`: a plugin identifier, optionally `.api`; without
//!   an API the plugin's first API is used.
//! - If every word of the rest is `key=value` (values may be double-quoted: `city="New York"`)
//!   and every key is a declared parameter, those are the arguments; values are converted to the
//!   parameter's declared type (`integer`, `number`, `boolean`; anything else stays a string).
//! - Otherwise the whole rest (trimmed) is the value of the first string parameter listed in
//!   `required`, or if none is, of the first string parameter in `properties`.
//! - The arguments are then validated against the API's schema like a model's would be.

use serde_json::{Map, Value};

use super::{valid_api_name, valid_identifier, Api};

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub plugin: String,
    pub api: Option<String>,
    pub rest: String,
}

/// Recognises a command at the start of a message.
pub fn split_command(text: &str) -> Option<Command> {
    let body = text.trim_start().strip_prefix('/')?;
    let end = body.find(char::is_whitespace).unwrap_or(body.len());
    let (word, rest) = body.split_at(end);
    let (plugin, api) = match word.split_once('.') {
        Some((p, a)) => (p, Some(a)),
        None => (word, None),
    };
    if !valid_identifier(plugin) || api.is_some_and(|a| !valid_api_name(a)) {
        return None;
    }
    Some(Command {
        plugin: plugin.to_string(),
        api: api.map(str::to_string),
        rest: rest.trim().to_string(),
    })
}

/// Splits on whitespace, keeping double-quoted stretches (with `\"` and `\\` escapes) together.
fn words(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => cur.push(chars.next()?),
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return None;
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

fn declared_type<'a>(props: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    props.get(key)?.get("type")?.as_str()
}

fn convert(kind: Option<&str>, raw: &str) -> Value {
    match kind {
        Some("integer") => raw
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(raw.to_string())),
        Some("number") => raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(raw.to_string())),
        Some("boolean") => match raw {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(raw.to_string()),
        },
        _ => Value::String(raw.to_string()),
    }
}

/// The arguments a command's text gives `api` (not yet validated).
pub fn command_arguments(api: &Api, rest: &str) -> Value {
    let empty = Map::new();
    let props = api
        .parameters
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if rest.is_empty() {
        return Value::Object(Map::new());
    }
    if let Some(ws) = words(rest) {
        let pairs: Option<Vec<(String, String)>> = ws
            .iter()
            .map(|w| {
                let (k, v) = w.split_once('=')?;
                props
                    .contains_key(k)
                    .then(|| (k.to_string(), v.to_string()))
            })
            .collect();
        if let Some(pairs) = pairs.filter(|p| !p.is_empty()) {
            let mut args = Map::new();
            for (k, v) in pairs {
                let value = convert(declared_type(props, &k), &v);
                args.insert(k, value);
            }
            return Value::Object(args);
        }
    }
    let is_string = |k: &str| declared_type(props, k) == Some("string");
    let target = api
        .parameters
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|k| is_string(k))
        .or_else(|| props.keys().map(String::as_str).find(|k| is_string(k)));
    let mut args = Map::new();
    if let Some(key) = target {
        args.insert(key.to_string(), Value::String(rest.to_string()));
    }
    Value::Object(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn api() -> Api {
        Api {
            name: "get_forecast".into(),
            description: "d".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer"},
                    "metric": {"type": "boolean"},
                    "note": {"type": "string"}
                },
                "required": ["city"]
            }),
        }
    }

    #[test]
    fn splits_commands() {
        assert_eq!(
            split_command("/weather 北京"),
            Some(Command {
                plugin: "weather".into(),
                api: None,
                rest: "北京".into()
            })
        );
        assert_eq!(
            split_command("  /weather.get_forecast  city=Paris \n")
                .unwrap()
                .api
                .as_deref(),
            Some("get_forecast")
        );
        assert_eq!(split_command("/weather").unwrap().rest, "");
        assert_eq!(split_command("weather 北京"), None);
        assert_eq!(split_command("/Weather x"), None);
        assert_eq!(split_command("/../etc x"), None);
        assert_eq!(split_command("/"), None);
    }

    #[test]
    fn free_text_goes_to_the_first_required_string() {
        assert_eq!(command_arguments(&api(), "北京"), json!({"city": "北京"}));
        assert_eq!(
            command_arguments(&api(), "New York tomorrow"),
            json!({"city": "New York tomorrow"})
        );
        // `=` inside free text, or an undeclared key, keeps it free text.
        assert_eq!(command_arguments(&api(), "a=b"), json!({"city": "a=b"}));
        assert_eq!(command_arguments(&api(), ""), json!({}));
    }

    #[test]
    fn key_value_pairs_are_typed() {
        assert_eq!(
            command_arguments(&api(), "city=\"New York\" days=3 metric=true"),
            json!({"city": "New York", "days": 3, "metric": true})
        );
        assert_eq!(
            command_arguments(&api(), "city=Paris days=soon"),
            json!({"city": "Paris", "days": "soon"})
        );
        assert_eq!(
            command_arguments(&api(), r#"city="say \"hi\"""#),
            json!({"city": "say \"hi\""})
        );
        // An unterminated quote is free text.
        assert_eq!(
            command_arguments(&api(), "city=\"Paris"),
            json!({"city": "city=\"Paris"})
        );
    }
}
