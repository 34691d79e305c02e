//! The arrows of the edge (docs/architecture.md): `api` → `gateway` → `store` → `platform`,
//! every layer may use `crate::core`, and `core` never uses `edge`.
//!
//! Reads `src/edge/**` and `src/core/**` as text (comments, strings and `#[cfg(test)]` modules
//! left out) and collects every path into the edge: `crate::edge::…`, `super::…` (resolved
//! against the file's module) and grouped `use` lists. It fails on
//! - an arrow that points up: a module of a layer using one of a higher layer (`plugins` sits
//!   between `gateway` and `api`; `console` and `cron` count as `api`);
//! - a layered module using a module outside the layers;
//! - an import circle between edge modules;
//! - a file of `src/edge` outside the layers (only the root `edge/mod.rs`, which declares them);
//! - any `core` file naming `edge`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. `plugins` is built on top of `gateway` (the tool loop reuses its
/// reserve / dispatch / settle) and is never imported by it.
const LAYERS: [&str; 5] = ["platform", "store", "gateway", "plugins", "api"];

/// Modules beside a layer: `console` is API-level (its own pages and routes); `cron` is the
/// scheduled entry, at the top too (the admin API may run it now).
const BESIDE: [(&str, &str); 2] = [("console", "api"), ("cron", "api")];

fn layer_of(module: &[String]) -> Option<usize> {
    let first = module.first()?;
    let name = BESIDE
        .iter()
        .find(|(m, _)| m == first)
        .map_or(first.as_str(), |(_, layer)| *layer);
    LAYERS.iter().position(|l| *l == name)
}

/// The module path (below `edge`) of a file, relative to `src/edge`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// `source` without comments, string and char literals, and from the first `#[cfg(test)]` on.
fn code_only(source: &str) -> String {
    lex(source).0
}

/// The string literals of `source` (before the first `#[cfg(test)]`).
fn string_literals(source: &str) -> Vec<String> {
    lex(source).1
}

/// `source` (up to the first `#[cfg(test)]`) split into code without comments and literals, and
/// the contents of its string literals.
fn lex(source: &str) -> (String, Vec<String>) {
    let mut strings = Vec::new();
    let source = match source.find("#[cfg(test)]") {
        Some(at) => &source[..at],
        None => source,
    };
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&chars, i) {
            // Raw string r"…" / r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            let start = (i + 2 + hashes).min(j);
            let end = j.saturating_sub(1 + hashes).max(start);
            strings.push(chars[start..end].iter().collect());
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            let start = i;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            strings.push(chars[start..i.min(chars.len())].iter().collect());
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\''), else a lifetime.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    (out, strings)
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Every path that starts at `start` in `code` (`start` included), with grouped `use` lists
/// (`a::{b, c::d}`) expanded, as segments after `start`.
fn paths_after(code: &str, start: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find(start) {
        let begin = from + at;
        from = begin + start.len();
        let before = code[..begin].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        expand(&code[from..], Vec::new(), &mut found);
    }
    found
}

/// Reads `a::b::{c, d::e}` at the start of `rest` into paths prefixed with `prefix`.
fn expand(rest: &str, prefix: Vec<String>, found: &mut Vec<Vec<String>>) {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut item = String::new();
        for c in group.chars() {
            match c {
                '{' => {
                    depth += 1;
                    item.push(c);
                }
                '}' if depth == 0 => break,
                '}' => {
                    depth -= 1;
                    item.push(c);
                }
                ',' if depth == 0 => {
                    expand(&item, prefix.clone(), found);
                    item.clear();
                }
                _ => item.push(c),
            }
        }
        if !item.trim().is_empty() {
            expand(&item, prefix, found);
        }
        return;
    }
    let ident: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '*')
        .collect();
    if ident.is_empty() {
        if !prefix.is_empty() {
            found.push(prefix);
        }
        return;
    }
    let mut path = prefix;
    if ident != "self" {
        path.push(ident.clone());
    }
    let after = rest[ident.len()..].trim_start();
    match after.strip_prefix("::") {
        Some(more) => expand(more, path, found),
        None => found.push(path),
    }
}

/// A source file of the edge: its module path and code.
struct Unit {
    module: Vec<String>,
    code: String,
}

/// The known module a path names: its longest prefix that is a module (the edge root when none).
fn target_module(path: &[String], modules: &BTreeSet<Vec<String>>) -> Vec<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
        .unwrap_or_default()
}

/// Every edge module each unit uses (itself left out).
fn uses(units: &[Unit]) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules: BTreeSet<Vec<String>> = units.iter().map(|u| u.module.clone()).collect();
    let mut graph = BTreeMap::new();
    for unit in units {
        let mut targets = BTreeSet::new();
        for path in paths_after(&unit.code, "crate::edge::") {
            targets.insert(target_module(&path, &modules));
        }
        for path in paths_after(&unit.code, "super::") {
            // `super` of `a/b.rs` (module a::b) is `a`; further `super`s climb on.
            let mut base = unit.module.clone();
            base.pop();
            let mut rest = path.as_slice();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            let mut full = base;
            full.extend(rest.iter().filter(|s| *s != "*").cloned());
            targets.insert(target_module(&full, &modules));
        }
        targets.remove(&unit.module);
        graph.insert(unit.module.clone(), targets);
    }
    graph
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "edge".to_string()
    } else {
        format!("edge::{}", module.join("::"))
    }
}

/// What breaks the layering in `units`, one line each.
fn violations(units: &[Unit]) -> Vec<String> {
    let graph = uses(units);
    let mut found = Vec::new();
    for (from, targets) in &graph {
        let Some(from_layer) = layer_of(from) else {
            continue;
        };
        for to in targets {
            match layer_of(to) {
                Some(to_layer) if to_layer > from_layer => found.push(format!(
                    "{} ({}) uses {} ({}): an arrow pointing up",
                    name(from),
                    LAYERS[from_layer],
                    name(to),
                    LAYERS[to_layer]
                )),
                Some(_) => {}
                None => found.push(format!(
                    "{} ({}) uses {}, which is in no layer",
                    name(from),
                    LAYERS[from_layer],
                    name(to)
                )),
            }
        }
    }
    // Circles among layered modules: a depth-first search for a back edge.
    let layered: Vec<&Vec<String>> = graph.keys().filter(|m| layer_of(m).is_some()).collect();
    let mut state: BTreeMap<&Vec<String>, u8> = BTreeMap::new(); // 1 open, 2 done
    fn visit<'a>(
        m: &'a Vec<String>,
        graph: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<&'a Vec<String>, u8>,
        stack: &mut Vec<&'a Vec<String>>,
        found: &mut Vec<String>,
    ) {
        state.insert(m, 1);
        stack.push(m);
        for next in graph.get(m).into_iter().flatten() {
            if layer_of(next).is_none() || !graph.contains_key(next) {
                continue;
            }
            match state.get(next) {
                Some(1) => {
                    let at = stack.iter().position(|s| *s == next).unwrap_or(0);
                    let mut circle: Vec<String> = stack[at..].iter().map(|s| name(s)).collect();
                    circle.push(name(next));
                    found.push(format!("import circle: {}", circle.join(" → ")));
                }
                Some(_) => {}
                None => visit(next, graph, state, stack, found),
            }
        }
        stack.pop();
        state.insert(m, 2);
    }
    for m in layered {
        if !state.contains_key(m) {
            visit(m, &graph, &mut state, &mut Vec::new(), &mut found);
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn units_of(dir: &Path) -> Vec<Unit> {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    files.sort();
    files
        .iter()
        .map(|f| Unit {
            module: module_of(f.strip_prefix(dir).expect("below the folder")),
            code: code_only(&std::fs::read_to_string(f).expect("readable source")),
        })
        .collect()
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn edge_arrows_point_down_and_layered_modules_form_no_circle() {
    let units = units_of(&src().join("edge"));
    assert!(
        units.iter().any(|u| layer_of(&u.module).is_some()),
        "no layered module found under src/edge"
    );
    let found = violations(&units);
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
}

#[test]
fn every_edge_file_is_in_a_layer() {
    let outside: Vec<String> = units_of(&src().join("edge"))
        .iter()
        .filter(|u| !u.module.is_empty() && layer_of(&u.module).is_none())
        .map(|u| name(&u.module))
        .collect();
    assert!(outside.is_empty(), "edge modules in no layer: {outside:?}");
}

#[test]
fn core_never_uses_edge() {
    let mut files = Vec::new();
    rust_files(&src().join("core"), &mut files);
    assert!(!files.is_empty());
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| {
            let code = code_only(&std::fs::read_to_string(f).expect("readable source"));
            code.contains("crate::edge") || code.contains("super::edge")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "core uses edge: {offenders:?}");
}

/// Whether a string literal is (part of) an SQL statement (keywords in capitals, as all of
/// Tollgate's SQL is written).
fn is_sql(literal: &str) -> bool {
    let words: Vec<&str> = literal
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .collect();
    let has = |w: &str| words.contains(&w);
    let pair = |a: &str, b: &str| words.windows(2).any(|p| p[0] == a && p[1] == b);
    (has("SELECT") && has("FROM"))
        || pair("INSERT", "INTO")
        || pair("INSERT", "OR")
        || pair("DELETE", "FROM")
        || (has("UPDATE") && has("SET"))
}

/// Files of `src/edge` (relative, `/`-separated) with what they must not hold.
fn offenders(
    dir: &Path,
    allowed: impl Fn(&str) -> bool,
    bad: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    files
        .iter()
        .filter_map(|f| {
            let rel = f
                .strip_prefix(dir)
                .ok()?
                .to_string_lossy()
                .replace('\\', "/");
            let source = std::fs::read_to_string(f).ok()?;
            (!allowed(&rel) && bad(&source)).then_some(rel)
        })
        .collect()
}

#[test]
fn sql_lives_only_in_the_store() {
    let found = offenders(
        &src().join("edge"),
        |rel| rel.starts_with("store/"),
        |source| string_literals(source).iter().any(|l| is_sql(l)),
    );
    assert!(found.is_empty(), "SQL outside src/edge/store: {found:?}");
}

#[test]
fn bindings_and_settings_are_read_only_in_the_platform() {
    let found = offenders(
        &src().join("edge"),
        |rel| rel.starts_with("platform/"),
        |source| {
            let code = code_only(source);
            [".var(", ".secret(", ".kv(", ".d1("]
                .iter()
                .any(|call| code.contains(&format!("env{call}")))
        },
    );
    assert!(
        found.is_empty(),
        "Env read outside src/edge/platform: {found:?}"
    );
}

/// Whether `code` matches a request path against a method: a route table's arm
/// (`(Method::Get, ["tenants", id]) =>` or `(Method::Get | Method::Put, [`).
fn has_route_arm(code: &str) -> bool {
    code.split("(Method::").skip(1).any(|after| {
        let head: String = after.chars().take(80).collect();
        head.split(", [").next().is_some_and(|method| {
            head.contains(", [")
                && method.split('|').all(|m| {
                    m.trim()
                        .trim_start_matches("Method::")
                        .chars()
                        .all(char::is_alphanumeric)
                })
        })
    })
}

/// The one path table (docs/architecture.md): paths are matched to handlers in `api/router.rs`
/// only; no other file dispatches among sub-paths of its own.
#[test]
fn paths_are_routed_only_by_the_router() {
    let found = offenders(
        &src().join("edge"),
        |rel| rel == "api/router.rs",
        |source| has_route_arm(&code_only(source)),
    );
    assert!(
        found.is_empty(),
        "route tables outside api/router.rs: {found:?}"
    );
    let router = std::fs::read_to_string(src().join("edge/api/router.rs")).unwrap();
    assert!(
        has_route_arm(&code_only(&router)),
        "the checker no longer sees the router's arms"
    );
}

#[test]
fn the_route_table_check_sees_arms_and_not_method_checks() {
    assert!(has_route_arm(
        r#"match (method, rest) { (Method::Get, ["a"]) => x, }"#
    ));
    assert!(has_route_arm(
        r#"(Method::Get | Method::Put, ["keys", id, "limits"]) => {"#
    ));
    assert!(!has_route_arm("http::require(method, Method::Post)?;"));
    assert!(!has_route_arm("let write = *method != Method::Get;"));
}

// ---- the checker itself, on made-up sources --------------------------------------------------

fn unit(path: &str, code: &str) -> Unit {
    Unit {
        module: module_of(Path::new(path)),
        code: code_only(code),
    }
}

#[test]
fn the_checker_sees_arrows_up_through_every_path_form() {
    let cases = [
        "use crate::edge::store::keys;",
        "use crate::edge::{http, store::keys::usable_key};",
        "fn f() { crate::edge::store::keys::usable_key(); }",
        "use super::super::store::keys;",
    ];
    for code in cases {
        let units = [
            unit("platform/kv.rs", code),
            unit("store/keys.rs", ""),
            unit("http.rs", ""),
        ];
        let found = violations(&units);
        assert!(
            found
                .iter()
                .any(|v| v.contains("edge::platform::kv (platform) uses edge::store::keys")),
            "{code}: {found:?}"
        );
    }
}

#[test]
fn the_checker_allows_arrows_down_and_ignores_comments_strings_and_tests() {
    let units = [
        unit(
            "store/keys.rs",
            "use crate::edge::platform::{d1, kv};\nuse super::ledger::Row;\n\
             // crate::edge::api::x\nconst S: &str = \"crate::edge::api::x\";\n\
             fn f<'a>(c: char) -> bool { c == '{' }\n\
             #[cfg(test)]\nmod tests { use crate::edge::api::x; }",
        ),
        unit("store/ledger.rs", "use crate::core::billing;"),
        unit("platform/mod.rs", "pub mod d1; pub mod kv;"),
        unit("platform/d1.rs", ""),
        unit("platform/kv.rs", ""),
        unit("api/x.rs", "use crate::edge::store::keys;"),
    ];
    assert_eq!(violations(&units), Vec::<String>::new());
}

#[test]
fn the_checker_flags_unlayered_targets_and_circles() {
    let units = [
        unit("store/a.rs", "use super::b;"),
        unit(
            "store/b.rs",
            "use crate::edge::store::a; use crate::edge::chat;",
        ),
        unit("chat.rs", ""),
    ];
    let found = violations(&units);
    assert!(
        found
            .iter()
            .any(|v| v.contains("edge::store::b (store) uses edge::chat, which is in no layer")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|v| v.starts_with("import circle")),
        "{found:?}"
    );
    // The edge root counts as outside the layers too.
    let found = violations(&[unit("platform/clock.rs", "use crate::edge::now_ms;")]);
    assert_eq!(found.len(), 1, "{found:?}");
}

#[test]
fn the_sql_check_knows_statements_from_prose() {
    let sources = [
        "let q = \"SELECT id FROM tenants WHERE id = ?1\";",
        "db::run(db, \"DELETE FROM models WHERE name = ?1\", &[]);",
        "let s = r#\"INSERT OR IGNORE INTO usage (a) VALUES (1)\"#;",
        "let u = \"UPDATE tenants SET name = ?2\";",
    ];
    for source in sources {
        assert!(
            string_literals(source).iter().any(|l| is_sql(l)),
            "{source}"
        );
    }
    let prose = "let m = \"Select a model from the list; update your key.\"; // SELECT x FROM y";
    assert!(!string_literals(prose).iter().any(|l| is_sql(l)));
}

#[test]
fn the_checker_keeps_plugins_above_the_gateway_and_console_and_cron_at_the_top() {
    let up = [
        // The gateway never imports the tool loop built on it.
        (
            "gateway/mod.rs",
            "use crate::edge::plugins::intercept;",
            "edge::plugins (plugins)",
        ),
        // Plugins never import the HTTP layer.
        (
            "plugins/mod.rs",
            "use crate::edge::api::http;",
            "edge::api::http (api)",
        ),
        // The console and cron are API-level: nothing below uses them.
        (
            "gateway/settle.rs",
            "use crate::edge::cron::run;",
            "edge::cron (api)",
        ),
        (
            "store/keys.rs",
            "use super::super::console::session;",
            "edge::console (api)",
        ),
    ];
    for (path, code, target) in up {
        let mut units = vec![unit(path, code)];
        for other in ["plugins/mod.rs", "api/http.rs", "cron.rs", "console/mod.rs"] {
            if other != path {
                units.push(unit(other, ""));
            }
        }
        let found = violations(&units);
        assert!(
            found
                .iter()
                .any(|v| v.contains(target) && v.ends_with("an arrow pointing up")),
            "{path}: {code}: {found:?}"
        );
    }
    // Down the layers, and sideways at the top, is fine.
    let units = [
        unit("api/openai/chat.rs", "use crate::edge::{gateway, plugins};"),
        unit("api/admin/mod.rs", "use crate::edge::cron::run_now;"),
        unit("console/mod.rs", "use crate::edge::api::http;"),
        unit("plugins/mod.rs", "use crate::edge::gateway::ticket;"),
        unit("gateway/ticket.rs", "use super::reserve::Count;"),
        unit("gateway/reserve.rs", "use crate::edge::store::ledger;"),
        unit("gateway/mod.rs", ""),
        unit("cron.rs", "use crate::edge::gateway::alerts;"),
        unit("gateway/alerts.rs", ""),
        unit("store/ledger.rs", ""),
        unit("api/http.rs", ""),
    ];
    assert_eq!(violations(&units), Vec::<String>::new());
    // A circle inside one layer (the ticket and the reservation using each other) is refused.
    let found = violations(&[
        unit("gateway/ticket.rs", "use super::reserve::Count;"),
        unit("gateway/reserve.rs", "use super::ticket::Pending;"),
    ]);
    assert!(
        found.iter().any(|v| v.starts_with("import circle")
            && v.contains("edge::gateway::ticket")
            && v.contains("edge::gateway::reserve")),
        "{found:?}"
    );
}
