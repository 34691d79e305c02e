//! CSV encoding (RFC 4180) of report tables.
//!
//! Records end with CRLF. A field is quoted when it contains a comma, a double quote, CR or LF, or
//! starts or ends with a space; a double quote inside a quoted field is doubled. `null` is an
//! empty field, numbers are written as JSON writes them (integers stay integers), booleans as
//! `true`/`false`.
//!
//! Formula injection (CWE-1236): spreadsheet programs run a cell that starts with `=`, `+`, `-`,
//! `@`, TAB or CR as a formula, and some report fields carry text a tenant or a provider chose
//! (session ids, provider error codes). Such a field is written with a leading `'`, which the
//! spreadsheet shows as text. Plain numbers (`-12`, `-0.5`) are left alone so that numeric
//! columns stay numeric. Values are never altered otherwise.

use serde_json::Value;

/// Whether a spreadsheet would read `field` as a formula.
fn is_formula(field: &str) -> bool {
    field.starts_with(['=', '+', '-', '@', '\t', '\r']) && !is_plain_number(field)
}

/// `-?digits(.digits)?`: a number, which a spreadsheet reads as a number and never runs.
fn is_plain_number(field: &str) -> bool {
    let digits = field.strip_prefix('-').unwrap_or(field);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// Appends one field to `out`, neutralised when it would run as a formula, quoted when needed.
pub fn push_field(out: &mut String, field: &str) {
    if is_formula(field) {
        let mut safe = String::with_capacity(field.len() + 1);
        safe.push('\'');
        safe.push_str(field);
        return push_quoted_if_needed(out, &safe);
    }
    push_quoted_if_needed(out, field);
}

fn push_quoted_if_needed(out: &mut String, field: &str) {
    let needs_quotes =
        field.contains([',', '"', '\r', '\n']) || field.starts_with(' ') || field.ends_with(' ');
    if needs_quotes {
        out.push('"');
        for ch in field.chars() {
            if ch == '"' {
                out.push('"');
            }
            out.push(ch);
        }
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// Appends one record (a row of fields) and its CRLF.
pub fn push_record<S: AsRef<str>>(out: &mut String, fields: &[S]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(out, f.as_ref());
    }
    out.push_str("\r\n");
}

/// The CSV text of a JSON value: strings as they are, `null` empty, other scalars as JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A table: a header row of `columns`, then one record per JSON object in `rows`, its fields
/// taken by column name (missing fields are empty).
pub fn table(columns: &[&str], rows: &[Value]) -> String {
    let mut out = String::new();
    push_record(&mut out, columns);
    for row in rows {
        let fields: Vec<String> = columns
            .iter()
            .map(|c| row.get(*c).map(value_text).unwrap_or_default())
            .collect();
        push_record(&mut out, &fields);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quotes_only_what_needs_it() {
        let mut out = String::new();
        push_record(
            &mut out,
            &[
                "plain",
                "a,b",
                "say \"hi\"",
                "two\nlines",
                "cr\r",
                " pad",
                "",
            ],
        );
        assert_eq!(
            out,
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\"cr\r\",\" pad\",\r\n"
        );
    }

    #[test]
    fn formula_cells_are_neutralised() {
        let mut out = String::new();
        push_record(
            &mut out,
            &[
                "=HYPERLINK(\"http://x\")",
                "+1",
                "-1+2",
                "@SUM(A1)",
                "\tx",
                "\rx",
                "-12",
                "-0.5",
                "a=b",
                "-",
            ],
        );
        assert_eq!(
            out,
            "\"'=HYPERLINK(\"\"http://x\"\")\",'+1,'-1+2,'@SUM(A1),'\tx,\"'\rx\",-12,-0.5,a=b,'-\r\n"
        );
        // In a table too, whatever the column.
        let csv = table(
            &["error_code"],
            &[json!({"error_code": "=cmd|' /C calc'!A0"})],
        );
        assert_eq!(csv, "error_code\r\n'=cmd|' /C calc'!A0\r\n");
    }

    #[test]
    fn table_with_header_nulls_and_numbers() {
        let rows = vec![
            json!({"model": "gpt-4o", "requests": 3, "cost": 9_007_199_254_740_991u64, "session_id": null}),
            json!({"model": "a \"quoted\", model", "requests": 0, "stream": true}),
        ];
        let csv = table(
            &["model", "requests", "cost", "session_id", "stream"],
            &rows,
        );
        assert_eq!(
            csv,
            "model,requests,cost,session_id,stream\r\n\
             gpt-4o,3,9007199254740991,,\r\n\
             \"a \"\"quoted\"\", model\",0,,,true\r\n"
        );
    }

    #[test]
    fn round_trips_through_a_reader() {
        // A minimal RFC 4180 reader: the encoder's output must parse back to the same fields.
        fn parse(text: &str) -> Vec<Vec<String>> {
            let mut records = vec![];
            let mut record = vec![];
            let mut field = String::new();
            let mut chars = text.chars().peekable();
            let mut quoted = false;
            while let Some(c) = chars.next() {
                match (quoted, c) {
                    (true, '"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    (true, '"') => quoted = false,
                    (true, c) => field.push(c),
                    (false, '"') => quoted = true,
                    (false, ',') => record.push(std::mem::take(&mut field)),
                    (false, '\r') if chars.peek() == Some(&'\n') => {
                        chars.next();
                        record.push(std::mem::take(&mut field));
                        records.push(std::mem::take(&mut record));
                    }
                    (false, c) => field.push(c),
                }
            }
            records
        }
        let nasty = [
            "",
            ",",
            "\"",
            "\"\"",
            "a\r\nb",
            " x ",
            "ünï,cødé",
            "-12",
            "\n",
        ];
        let mut out = String::new();
        push_record(&mut out, &nasty);
        push_record(&mut out, &["1", "2"]);
        let parsed = parse(&out);
        assert_eq!(
            parsed[0],
            nasty.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        );
        assert_eq!(parsed[1], vec!["1", "2"]);
    }
}
