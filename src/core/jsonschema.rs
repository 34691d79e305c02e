//! A small JSON-Schema validator: the subset plugin manifests may use for their parameters and
//! settings, checked when a manifest is registered ([`check_schema`]) and applied to every
//! argument object a model produces ([`validate`]).
//!
//! Supported keywords (anything else is refused at registration, so nothing is silently ignored):
//!
//! | keyword | applies to | meaning |
//! |---|---|---|
//! | `type` | any | `object`, `array`, `string`, `number`, `integer`, `boolean`, `null`, or an array of them |
//! | `description`, `title`, `default`, `examples`, `format` | any | annotations, not checked |
//! | `enum` | any | the value equals one of the listed values |
//! | `const` | any | the value equals it |
//! | `properties` | object | schemas of named properties |
//! | `required` | object | names that must be present (each must be declared in `properties`) |
//! | `additionalProperties` | object | `false` refuses undeclared properties; a schema validates them |
//! | `minProperties`, `maxProperties` | object | bounds on the number of properties |
//! | `items` | array | the schema of every element |
//! | `minItems`, `maxItems` | array | bounds on the length |
//! | `minLength`, `maxLength` | string | bounds in Unicode scalar values |
//! | `pattern` | string | a regular expression (`regex-lite` syntax: no look-around, no `\p{..}` classes; `\w`, `\d`, `\s` are ASCII), searched, not anchored |
//! | `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` | number | numeric bounds |
//!
//! An `integer` is a number with no fractional part (`3.0` counts). Bounds are compared as f64.

use std::collections::HashMap;

use regex_lite::Regex;
use serde_json::{Map, Value};

/// Longest `pattern` accepted, and the compiled size limit, so a manifest cannot make the
/// validator slow.
const MAX_PATTERN_LEN: usize = 512;
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Deepest nesting of schemas (and of validated values).
const MAX_DEPTH: usize = 16;

const TYPES: &[&str] = &[
    "object", "array", "string", "number", "integer", "boolean", "null",
];
const ANNOTATIONS: &[&str] = &["description", "title", "default", "examples", "format"];

/// Why a schema or a value was refused: where (a dotted path) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn err(path: &str, message: impl Into<String>) -> SchemaError {
    SchemaError {
        path: path.to_string(),
        message: message.into(),
    }
}

fn child(path: &str, key: &str) -> String {
    if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !key.is_empty()
    {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_string()))
    }
}

fn compile_pattern(path: &str, pattern: &str) -> Result<Regex, SchemaError> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(err(
            path,
            format!("`pattern` is longer than {MAX_PATTERN_LEN} characters"),
        ));
    }
    regex_lite::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            err(
                path,
                format!("`pattern` is not a valid regular expression: {e}"),
            )
        })
}

fn non_negative_int(path: &str, key: &str, v: &Value) -> Result<u64, SchemaError> {
    v.as_u64()
        .ok_or_else(|| err(&child(path, key), "must be a non-negative integer"))
}

/// Checks that `schema` uses only the supported subset, correctly. `path` names it in errors
/// (e.g. `apis[0].parameters`).
pub fn check_schema(schema: &Value, path: &str) -> Result<(), SchemaError> {
    check_at(schema, path, 0)
}

fn check_at(schema: &Value, path: &str, depth: usize) -> Result<(), SchemaError> {
    if depth > MAX_DEPTH {
        return Err(err(
            path,
            format!("schemas nest deeper than {MAX_DEPTH} levels"),
        ));
    }
    let Value::Object(map) = schema else {
        return Err(err(path, "a schema must be a JSON object"));
    };
    for (key, value) in map {
        let here = child(path, key);
        match key.as_str() {
            k if ANNOTATIONS.contains(&k) => {}
            "type" => match value {
                Value::String(t) if TYPES.contains(&t.as_str()) => {}
                Value::Array(ts)
                    if !ts.is_empty()
                        && ts
                            .iter()
                            .all(|t| t.as_str().is_some_and(|t| TYPES.contains(&t))) => {}
                _ => {
                    return Err(err(
                        &here,
                        format!("must be one of {} (or an array of them)", TYPES.join(", ")),
                    ))
                }
            },
            "enum" => match value {
                Value::Array(vs) if !vs.is_empty() => {}
                _ => return Err(err(&here, "must be a non-empty array")),
            },
            "const" => {}
            "properties" => {
                let Value::Object(props) = value else {
                    return Err(err(&here, "must be an object of schemas"));
                };
                for (name, sub) in props {
                    check_at(sub, &child(&here, name), depth + 1)?;
                }
            }
            "required" => {
                let Value::Array(names) = value else {
                    return Err(err(&here, "must be an array of property names"));
                };
                let props = map.get("properties").and_then(Value::as_object);
                for (i, name) in names.iter().enumerate() {
                    let Some(name) = name.as_str() else {
                        return Err(err(&format!("{here}[{i}]"), "must be a string"));
                    };
                    if !props.is_some_and(|p| p.contains_key(name)) {
                        return Err(err(
                            &format!("{here}[{i}]"),
                            format!("`{name}` is required but not declared in `properties`"),
                        ));
                    }
                }
            }
            "additionalProperties" | "items" => match value {
                Value::Bool(_) if key == "additionalProperties" => {}
                _ => check_at(value, &here, depth + 1)?,
            },
            "minProperties" | "maxProperties" | "minItems" | "maxItems" | "minLength"
            | "maxLength" => {
                non_negative_int(path, key, value)?;
            }
            "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" => {
                if !value.is_number() {
                    return Err(err(&here, "must be a number"));
                }
            }
            "pattern" => {
                let Value::String(p) = value else {
                    return Err(err(&here, "must be a string"));
                };
                compile_pattern(&here, p)?;
            }
            other => {
                return Err(err(
                    &here,
                    format!(
                        "the keyword `{other}` is not supported (supported: type, enum, const, \
                         properties, required, additionalProperties, min/maxProperties, items, \
                         min/maxItems, min/maxLength, pattern, minimum, maximum, \
                         exclusiveMinimum, exclusiveMaximum and annotations)"
                    ),
                ))
            }
        }
    }
    for (lo, hi) in [
        ("minLength", "maxLength"),
        ("minItems", "maxItems"),
        ("minProperties", "maxProperties"),
    ] {
        if let (Some(l), Some(h)) = (
            map.get(lo).and_then(Value::as_u64),
            map.get(hi).and_then(Value::as_u64),
        ) {
            if l > h {
                return Err(err(
                    path,
                    format!("`{lo}` ({l}) is greater than `{hi}` ({h})"),
                ));
            }
        }
    }
    Ok(())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    match (t, v) {
        ("null", Value::Null)
        | ("boolean", Value::Bool(_))
        | ("string", Value::String(_))
        | ("array", Value::Array(_))
        | ("object", Value::Object(_))
        | ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

/// A short rendering of a value for error messages (never more than ~60 characters).
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}

/// Validates `value` against a schema that passed [`check_schema`]. `path` names the value in
/// errors (e.g. `arguments`). Returns the first violation found.
pub fn validate(schema: &Value, value: &Value, path: &str) -> Result<(), SchemaError> {
    Validation::default().at(schema, value, path, 0)
}

/// One validation: each `pattern` of the schema is compiled once, when first needed, and reused
/// for every string it applies to (an array of thousands of strings costs one compilation).
#[derive(Default)]
struct Validation<'s> {
    patterns: HashMap<&'s str, Regex>,
    /// Compilations so far (for the tests).
    compiled: usize,
}

impl<'s> Validation<'s> {
    fn pattern(&mut self, path: &str, pattern: &'s str) -> Result<&Regex, SchemaError> {
        if !self.patterns.contains_key(pattern) {
            let re = compile_pattern(path, pattern)?;
            self.compiled += 1;
            self.patterns.insert(pattern, re);
        }
        self.patterns
            .get(pattern)
            .ok_or_else(|| err(path, "`pattern` could not be compiled"))
    }

    fn at(
        &mut self,
        schema: &'s Value,
        value: &Value,
        path: &str,
        depth: usize,
    ) -> Result<(), SchemaError> {
        if depth > MAX_DEPTH {
            return Err(err(path, format!("nests deeper than {MAX_DEPTH} levels")));
        }
        let Value::Object(s) = schema else {
            return Ok(());
        };
        if let Some(t) = s.get("type") {
            let allowed: Vec<&str> = match t {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !allowed.is_empty() && !allowed.iter().any(|t| has_type(value, t)) {
                return Err(err(
                    path,
                    format!(
                        "must be of type {}, not {}",
                        allowed.join(" or "),
                        type_name(value)
                    ),
                ));
            }
        }
        if let Some(Value::Array(options)) = s.get("enum") {
            if !options.iter().any(|o| json_equal(o, value)) {
                let listed: Vec<String> = options.iter().map(show).collect();
                return Err(err(
                    path,
                    format!("{} is not one of {}", show(value), listed.join(", ")),
                ));
            }
        }
        if let Some(c) = s.get("const") {
            if !json_equal(c, value) {
                return Err(err(path, format!("must equal {}", show(c))));
            }
        }
        match value {
            Value::Object(obj) => self.object(s, obj, path, depth)?,
            Value::Array(items) => {
                bounds(s, "minItems", "maxItems", items.len(), "items", path)?;
                if let Some(item_schema) = s.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.at(item_schema, item, &format!("{path}[{i}]"), depth + 1)?;
                    }
                }
            }
            Value::String(text) => {
                bounds(
                    s,
                    "minLength",
                    "maxLength",
                    text.chars().count(),
                    "characters",
                    path,
                )?;
                if let Some(Value::String(p)) = s.get("pattern") {
                    if !self.pattern(path, p)?.is_match(text) {
                        return Err(err(path, format!("does not match the pattern {p:?}")));
                    }
                }
            }
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                let limit = |k: &str| s.get(k).and_then(Value::as_f64);
                if let Some(m) = limit("minimum") {
                    if x < m {
                        return Err(err(path, format!("{n} is less than the minimum {m}")));
                    }
                }
                if let Some(m) = limit("maximum") {
                    if x > m {
                        return Err(err(path, format!("{n} is greater than the maximum {m}")));
                    }
                }
                if let Some(m) = limit("exclusiveMinimum") {
                    if x <= m {
                        return Err(err(path, format!("{n} must be greater than {m}")));
                    }
                }
                if let Some(m) = limit("exclusiveMaximum") {
                    if x >= m {
                        return Err(err(path, format!("{n} must be less than {m}")));
                    }
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
        Ok(())
    }

    fn object(
        &mut self,
        s: &'s Map<String, Value>,
        obj: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<(), SchemaError> {
        bounds(
            s,
            "minProperties",
            "maxProperties",
            obj.len(),
            "properties",
            path,
        )?;
        if let Some(Value::Array(required)) = s.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(name) {
                    return Err(err(
                        &child(path, name),
                        "is required but missing".to_string(),
                    ));
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (name, v) in obj {
            let here = child(path, name);
            match props.and_then(|p| p.get(name)) {
                Some(sub) => self.at(sub, v, &here, depth + 1)?,
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return Err(err(&here, "is not a declared property"));
                    }
                    Some(extra @ Value::Object(_)) => self.at(extra, v, &here, depth + 1)?,
                    _ => {}
                },
            }
        }
        Ok(())
    }
}

fn bounds(
    s: &Map<String, Value>,
    lo: &str,
    hi: &str,
    n: usize,
    unit: &str,
    path: &str,
) -> Result<(), SchemaError> {
    let n = n as u64;
    if let Some(min) = s.get(lo).and_then(Value::as_u64) {
        if n < min {
            return Err(err(path, format!("has {n} {unit}, fewer than {lo} {min}")));
        }
    }
    if let Some(max) = s.get(hi).and_then(Value::as_u64) {
        if n > max {
            return Err(err(path, format!("has {n} {unit}, more than {hi} {max}")));
        }
    }
    Ok(())
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn forecast() -> Value {
        json!({
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 1, "maxLength": 40, "pattern": "^[^/\\\\\\r\\n]+$"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "unit": {"enum": ["c", "f"]},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}
            },
            "required": ["city"],
            "additionalProperties": false
        })
    }

    #[test]
    fn accepts_valid_arguments() {
        let s = forecast();
        check_schema(&s, "parameters").unwrap();
        for v in [
            json!({"city": "北京"}),
            json!({"city": "Paris", "days": 3, "unit": "c", "tags": ["a"]}),
            json!({"city": "Paris", "days": 7.0}),
        ] {
            validate(&s, &v, "arguments").unwrap();
        }
    }

    #[test]
    fn names_the_failing_field() {
        let s = forecast();
        let cases = [
            (json!({}), "arguments.city", "required"),
            (
                json!({"city": ""}),
                "arguments.city",
                "fewer than minLength 1",
            ),
            (
                json!({"city": 5}),
                "arguments.city",
                "type string, not integer",
            ),
            (
                json!({"city": "a", "days": 9}),
                "arguments.days",
                "greater than the maximum 7",
            ),
            (
                json!({"city": "a", "days": 1.5}),
                "arguments.days",
                "type integer",
            ),
            (
                json!({"city": "a", "unit": "k"}),
                "arguments.unit",
                "not one of",
            ),
            (
                json!({"city": "a", "x": 1}),
                "arguments.x",
                "not a declared property",
            ),
            (
                json!({"city": "a", "tags": ["a", 1]}),
                "arguments.tags[1]",
                "type string",
            ),
            (
                json!({"city": "a", "tags": ["a", "b", "c"]}),
                "arguments.tags",
                "more than maxItems",
            ),
            (
                json!({"city": "../../etc/passwd"}),
                "arguments.city",
                "pattern",
            ),
            (
                json!({"city": "x\r\nX-Injected: 1"}),
                "arguments.city",
                "pattern",
            ),
            (json!([1]), "arguments", "type object"),
        ];
        for (value, path, needle) in cases {
            let e = validate(&s, &value, "arguments").unwrap_err();
            assert_eq!(e.path, path, "{value}: {e}");
            assert!(e.message.contains(needle), "{value}: {e}");
        }
    }

    #[test]
    fn each_pattern_is_compiled_once_per_validation() {
        let schema = json!({"type": "object", "properties": {
            "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}},
            "city": {"type": "string", "pattern": "^[a-z]+$"},
            "code": {"type": "string", "pattern": "^[0-9]+$"}}});
        let tags: Vec<String> = (0..1000).map(|i| "x".repeat(i % 7 + 1)).collect();
        let value = json!({"tags": tags, "city": "oslo", "code": "42"});
        let mut v = Validation::default();
        v.at(&schema, &value, "a", 0).unwrap();
        // 1002 strings checked, two distinct patterns: two compilations.
        assert_eq!(v.compiled, 2);
        // And a mismatch late in a long array is still found.
        let mut bad = value.clone();
        bad["tags"][999] = json!("NO");
        let e = validate(&schema, &bad, "a").unwrap_err();
        assert_eq!(e.path, "a.tags[999]");
    }

    #[test]
    fn string_length_counts_characters() {
        let s = json!({"type": "string", "maxLength": 2});
        validate(&s, &json!("北京"), "v").unwrap();
        assert!(validate(&s, &json!("北京市"), "v").is_err());
    }

    #[test]
    fn refuses_unsupported_or_broken_schemas() {
        let cases = [
            (
                json!({"type": "object", "oneOf": []}),
                "p.oneOf",
                "not supported",
            ),
            (json!({"type": "strnig"}), "p.type", "must be one of"),
            (
                json!({"type": "object", "required": ["a"]}),
                "p.required[0]",
                "not declared",
            ),
            (
                json!({"properties": {"a": {"pattern": "("}}}),
                "p.properties.a.pattern",
                "regular expression",
            ),
            (
                json!({"properties": {"a": {"minLength": -1}}}),
                "p.properties.a.minLength",
                "non-negative",
            ),
            (json!({"minLength": 3, "maxLength": 2}), "p", "greater than"),
            (json!({"items": 3}), "p.items", "JSON object"),
            (json!("string"), "p", "JSON object"),
        ];
        for (schema, path, needle) in cases {
            let e = check_schema(&schema, "p").unwrap_err();
            assert_eq!(e.path, path, "{schema}: {e}");
            assert!(e.message.contains(needle), "{schema}: {e}");
        }
    }

    #[test]
    fn additional_properties_schema_and_exclusive_bounds() {
        let s = json!({"type": "object", "additionalProperties": {"type": "number", "exclusiveMinimum": 0}});
        check_schema(&s, "p").unwrap();
        validate(&s, &json!({"a": 1}), "v").unwrap();
        assert_eq!(validate(&s, &json!({"a": 0}), "v").unwrap_err().path, "v.a");
        let deep = (0..40).fold(json!(1), |acc, _| json!([acc]));
        assert!(validate(&json!({}), &deep, "v").is_ok());
        assert!(json_equal(&json!(1), &json!(1.0)));
    }
}
