//! `GET /v1/models` in the shape each client family expects.
//!
//! OpenAI clients (the SDKs, Codex CLI, LobeChat…) read
//! `{"object":"list","data":[{"id","object":"model","created","owned_by","kind"}]}`
//! (<https://platform.openai.com/docs/api-reference/models/list>). Anthropic clients (Claude Code,
//! the Anthropic SDKs' `models.list()`) call the same path and read Anthropic's List Models shape
//! (<https://docs.anthropic.com/en/api/models-list>):
//! `{"data":[{"type":"model","id","display_name","created_at"}],"has_more","first_id","last_id"}`,
//! `created_at` an RFC 3339 time, paged by `limit` (1–1000, default 20), `after_id` and
//! `before_id`; one model is `GET /v1/models/{id}` with the object alone.
//!
//! **Which family** ([`ClientFamily::detect`]): a request with an `anthropic-version` header is
//! an Anthropic client (its SDKs always send one); so is one that authenticates with `x-api-key`
//! and no `Authorization` header. Everything else gets OpenAI's shape.
//!
//! Every model says `owned_by: "tollgate"` (which provider serves it is the operator's
//! business), and its `display_name` is the operator's, else its id. The order is the caller's
//! (the gateway lists models by name); pages follow it.

use serde_json::{json, Value};

use crate::core::calendar::format_time;
use crate::core::error::GatewayError;

/// What `owned_by` says of every model.
pub const OWNED_BY: &str = "tollgate";

/// Anthropic's default page size.
pub const DEFAULT_LIMIT: usize = 20;
/// Anthropic's largest page.
pub const MAX_LIMIT: usize = 1000;

/// One model a caller may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedModel {
    pub id: String,
    /// When the model was added, UTC ms.
    pub created_ms: u64,
    /// The operator's display name, if any.
    pub display_name: Option<String>,
    /// `chat`, `embedding`, `image`, `tts` or `stt` (docs/media.md); OpenAI's shape lists it.
    pub kind: String,
}

/// Which API's shape a client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFamily {
    OpenAi,
    Anthropic,
}

impl ClientFamily {
    /// The family of a request, from a header lookup (see the module docs).
    pub fn detect(header: impl Fn(&str) -> Option<String>) -> Self {
        let present = |name: &str| header(name).is_some_and(|v| !v.trim().is_empty());
        if present("anthropic-version") || (present("x-api-key") && !present("authorization")) {
            ClientFamily::Anthropic
        } else {
            ClientFamily::OpenAi
        }
    }
}

/// Anthropic's paging parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub limit: usize,
    pub after_id: Option<String>,
    pub before_id: Option<String>,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            limit: DEFAULT_LIMIT,
            after_id: None,
            before_id: None,
        }
    }
}

/// Parses the query string of an Anthropic list request (`limit`, `after_id`, `before_id`;
/// other parameters are ignored). A bad `limit`, or both ids, is a 400 naming the parameter.
pub fn parse_page(query: &str) -> Result<Page, GatewayError> {
    let mut page = Page::default();
    for (name, value) in url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes()) {
        match name.as_ref() {
            "limit" => {
                page.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        GatewayError::invalid_param(
                            "limit",
                            format!("limit: must be an integer from 1 to {MAX_LIMIT}."),
                        )
                    })?;
            }
            "after_id" if !value.is_empty() => page.after_id = Some(value.into_owned()),
            "before_id" if !value.is_empty() => page.before_id = Some(value.into_owned()),
            _ => {}
        }
    }
    if page.after_id.is_some() && page.before_id.is_some() {
        return Err(GatewayError::invalid_param(
            "before_id",
            "Only one of after_id and before_id may be given.",
        ));
    }
    Ok(page)
}

/// One model in the family's shape.
pub fn model_object(family: ClientFamily, m: &ListedModel) -> Value {
    match family {
        ClientFamily::OpenAi => {
            json!({"id": m.id, "object": "model", "created": m.created_ms / 1000, "owned_by": OWNED_BY,
                   "kind": m.kind})
        }
        ClientFamily::Anthropic => json!({
            "type": "model",
            "id": m.id,
            "display_name": m.display_name.as_deref().unwrap_or(&m.id),
            "created_at": format_time(m.created_ms),
        }),
    }
}

/// The list in the family's shape. `page` applies to Anthropic's shape only (OpenAI's list has
/// no paging). An `after_id` / `before_id` that names no listed model gives an empty page.
pub fn list_body(family: ClientFamily, models: &[ListedModel], page: &Page) -> Value {
    match family {
        ClientFamily::OpenAi => {
            let data: Vec<Value> = models.iter().map(|m| model_object(family, m)).collect();
            json!({"object": "list", "data": data})
        }
        ClientFamily::Anthropic => {
            let position = |id: &str| models.iter().position(|m| m.id == id);
            let limit = page.limit.clamp(1, MAX_LIMIT);
            let (start, end) = match (&page.after_id, &page.before_id) {
                (Some(after), _) => match position(after) {
                    Some(i) => (i + 1, (i + 1).saturating_add(limit).min(models.len())),
                    None => (0, 0),
                },
                (None, Some(before)) => match position(before) {
                    Some(i) => (i.saturating_sub(limit), i),
                    None => (0, 0),
                },
                (None, None) => (0, limit.min(models.len())),
            };
            let window = models.get(start..end).unwrap_or(&[]);
            let has_more = if page.before_id.is_some() {
                start > 0
            } else {
                end < models.len() && !window.is_empty()
            };
            let data: Vec<Value> = window.iter().map(|m| model_object(family, m)).collect();
            json!({
                "data": data,
                "has_more": has_more,
                "first_id": window.first().map(|m| m.id.as_str()),
                "last_id": window.last().map(|m| m.id.as_str()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::ErrorKind;

    fn models(n: usize) -> Vec<ListedModel> {
        (0..n)
            .map(|i| ListedModel {
                id: format!("m{i:02}"),
                created_ms: 1_764_547_200_123 + i as u64 * 1000,
                display_name: (i == 0).then(|| "Model Zero".to_string()),
                kind: if i == 1 { "embedding" } else { "chat" }.to_string(),
            })
            .collect()
    }

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn family_from_headers() {
        let f = |pairs: &[(&str, &str)]| ClientFamily::detect(headers(pairs));
        assert_eq!(f(&[("authorization", "Bearer tg")]), ClientFamily::OpenAi);
        assert_eq!(f(&[]), ClientFamily::OpenAi);
        assert_eq!(
            f(&[
                ("anthropic-version", "2023-06-01"),
                ("authorization", "Bearer tg")
            ]),
            ClientFamily::Anthropic
        );
        assert_eq!(f(&[("x-api-key", "tg")]), ClientFamily::Anthropic);
        assert_eq!(
            f(&[("x-api-key", "tg"), ("authorization", "Bearer tg")]),
            ClientFamily::OpenAi
        );
        assert_eq!(f(&[("anthropic-version", " ")]), ClientFamily::OpenAi);
    }

    #[test]
    fn openai_shape() {
        let body = list_body(ClientFamily::OpenAi, &models(2), &Page::default());
        assert_eq!(
            body,
            json!({"object": "list", "data": [
                {"id": "m00", "object": "model", "created": 1_764_547_200u64, "owned_by": "tollgate", "kind": "chat"},
                {"id": "m01", "object": "model", "created": 1_764_547_201u64, "owned_by": "tollgate", "kind": "embedding"}]})
        );
    }

    #[test]
    fn anthropic_shape() {
        let body = list_body(ClientFamily::Anthropic, &models(2), &Page::default());
        assert_eq!(
            body,
            json!({"data": [
                {"type": "model", "id": "m00", "display_name": "Model Zero", "created_at": "2025-12-01T00:00:00.123Z"},
                {"type": "model", "id": "m01", "display_name": "m01", "created_at": "2025-12-01T00:00:01.123Z"}],
                "has_more": false, "first_id": "m00", "last_id": "m01"})
        );
        let empty = list_body(ClientFamily::Anthropic, &[], &Page::default());
        assert_eq!(
            empty,
            json!({"data": [], "has_more": false, "first_id": null, "last_id": null})
        );
    }

    fn ids(body: &Value) -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn anthropic_pages_walk_the_whole_list_both_ways() {
        let all = models(45);
        let mut seen = Vec::new();
        let mut page = parse_page("limit=20").unwrap();
        loop {
            let body = list_body(ClientFamily::Anthropic, &all, &page);
            seen.extend(ids(&body));
            if body["has_more"] != true {
                break;
            }
            page.after_id = body["last_id"].as_str().map(str::to_string);
        }
        assert_eq!(
            seen,
            ids(&list_body(ClientFamily::OpenAi, &all, &Page::default()))
        );
        // Backwards from the end.
        let body = list_body(
            ClientFamily::Anthropic,
            &all,
            &parse_page("before_id=m44&limit=10").unwrap(),
        );
        assert_eq!(body["first_id"], "m34");
        assert_eq!(body["last_id"], "m43");
        assert_eq!(body["has_more"], true);
        let body = list_body(
            ClientFamily::Anthropic,
            &all,
            &parse_page("?before_id=m05").unwrap(),
        );
        assert_eq!(ids(&body).len(), 5);
        assert_eq!(body["has_more"], false);
        let unknown = list_body(
            ClientFamily::Anthropic,
            &all,
            &parse_page("after_id=nope").unwrap(),
        );
        assert_eq!(unknown["data"], json!([]));
        assert_eq!(unknown["has_more"], false);
    }

    #[test]
    fn page_parameters() {
        assert_eq!(parse_page("").unwrap(), Page::default());
        let p = parse_page("limit=1000&after_id=org%2Fmodel%3Av1&beta=true").unwrap();
        assert_eq!(
            (p.limit, p.after_id.as_deref()),
            (1000, Some("org/model:v1"))
        );
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=ten",
            "after_id=a&before_id=b",
        ] {
            let err = parse_page(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidRequest, "{bad}");
            assert_eq!(err.status(), 400);
        }
    }
}
