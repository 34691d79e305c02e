//! A bounded `multipart/form-data` parser and writer (RFC 7578 on RFC 2046's multipart syntax),
//! for the uploads of `/v1/audio/transcriptions`, `/v1/audio/translations` and
//! `/v1/images/edits`, and for the bodies the gateway sends those endpoints upstream.
//!
//! **Parsing** ([`parse`]) works on the whole body, already read within the request size limit,
//! and borrows every part's data from it (a 25 MB audio file is never copied). Rules:
//! * the boundary comes from the `Content-Type` parameter ([`boundary_of`]): 1–70 characters of
//!   RFC 2046's `bchars`, not ending in a space, quoted or not;
//! * a delimiter is `CRLF--boundary` (or `--boundary` at the very start); a preamble before the
//!   first delimiter and an epilogue after the close delimiter `--boundary--` are ignored; spaces
//!   and tabs after a delimiter are transport padding; a bare LF is accepted wherever CRLF is
//!   (curl and the SDKs send CRLF; some hand-written clients do not);
//! * each part needs `Content-Disposition: form-data; name="…"`, optionally `filename="…"`
//!   (quoted-string with `\` escapes, or a token) or `filename*=UTF-8''…` (percent-decoded);
//!   `Content-Type` is kept; other headers are ignored;
//! * limits ([`Limits`]): number of parts, bytes of one part's headers, bytes of a non-file
//!   field, bytes of a file; a body without its close delimiter is refused.
//!
//! Every refusal is a 400 `invalid_request` naming what was wrong (a 413 for a file over its
//! limit); nothing here can panic on any input (fuzzed in `tests/fuzz_media.rs`).
//!
//! **Writing** ([`Writer`]) builds a body with a boundary that occurs in none of its parts.

use crate::core::error::{ErrorKind, GatewayError};

/// The bounds a parse enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Parts in one body.
    pub max_parts: usize,
    /// Bytes of one part's header block.
    pub max_header_bytes: usize,
    /// Bytes of one field without a filename.
    pub max_field_bytes: usize,
    /// Bytes of one file.
    pub max_file_bytes: usize,
}

/// OpenAI's limit for an audio upload: 25 MB.
pub const MAX_AUDIO_FILE_BYTES: usize = 25 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_parts: 64,
            max_header_bytes: 8 * 1024,
            max_field_bytes: 64 * 1024,
            max_file_bytes: MAX_AUDIO_FILE_BYTES,
        }
    }
}

/// One part of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The form field's name.
    pub name: String,
    /// The file name, for a file part.
    pub filename: Option<String>,
    /// The part's `Content-Type`, when it has one.
    pub content_type: Option<String>,
    pub data: &'a [u8],
}

impl Part<'_> {
    /// The data as UTF-8 text, or a 400 naming the field.
    pub fn text(&self) -> Result<&str, GatewayError> {
        std::str::from_utf8(self.data).map_err(|_| {
            GatewayError::invalid_param(&self.name, format!("'{}' is not UTF-8 text.", self.name))
        })
    }

    pub fn is_file(&self) -> bool {
        self.filename.is_some()
    }
}

fn bad(message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_request(message).with_code("invalid_multipart")
}

/// Whether `b` is one of RFC 2046's `bchars`.
fn is_bchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'\''
                | b'('
                | b')'
                | b'+'
                | b'_'
                | b','
                | b'-'
                | b'.'
                | b'/'
                | b':'
                | b'='
                | b'?'
                | b' '
        )
}

/// Whether `boundary` is a valid RFC 2046 boundary.
pub fn valid_boundary(boundary: &str) -> bool {
    (1..=70).contains(&boundary.len()) && boundary.bytes().all(is_bchar) && !boundary.ends_with(' ')
}

/// The boundary of a `multipart/form-data` content type, or a 415/400 saying what is wrong.
pub fn boundary_of(content_type: &str) -> Result<String, GatewayError> {
    let mut params = content_type.split(';');
    let media = params.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("multipart/form-data") {
        return Err(GatewayError::new(
            ErrorKind::UnsupportedMediaType,
            "This endpoint takes a multipart/form-data body.",
        ));
    }
    for param in params {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("boundary") {
            continue;
        }
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(rest) => rest
                .strip_suffix('"')
                .ok_or_else(|| bad("The multipart boundary's quotes are not closed."))?,
            None => value,
        };
        if !valid_boundary(value) {
            return Err(bad(
                "The multipart boundary must be 1 to 70 characters of RFC 2046 (letters, digits, '()+_,-./:=? and inner spaces).",
            ));
        }
        return Ok(value.to_string());
    }
    Err(bad("The multipart/form-data content type has no boundary."))
}

/// The index of `needle` in `hay` from `from`, if any.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    let first = needle[0];
    let mut i = from;
    while i + needle.len() <= hay.len() {
        match hay[i..hay.len() - needle.len() + 1]
            .iter()
            .position(|&b| b == first)
        {
            Some(off) => {
                let at = i + off;
                if &hay[at..at + needle.len()] == needle {
                    return Some(at);
                }
                i = at + 1;
            }
            None => return None,
        }
    }
    None
}

/// The end of the line break at `at` (CRLF or LF), if there is one.
fn line_break(body: &[u8], at: usize) -> Option<usize> {
    match body.get(at..) {
        Some([b'\r', b'\n', ..]) => Some(at + 2),
        Some([b'\n', ..]) => Some(at + 1),
        _ => None,
    }
}

/// Parses a whole `multipart/form-data` body (see the module docs).
pub fn parse<'a>(
    body: &'a [u8],
    boundary: &str,
    limits: &Limits,
) -> Result<Vec<Part<'a>>, GatewayError> {
    if !valid_boundary(boundary) {
        return Err(bad("Invalid multipart boundary."));
    }
    let dash = format!("--{boundary}");
    let dash = dash.as_bytes();
    // The first delimiter: at the start, or after a line break ending the preamble.
    let mut pos = if body.starts_with(dash) {
        dash.len()
    } else {
        let mut from = 0;
        loop {
            let at = find(body, dash, from).ok_or_else(|| {
                bad("The body does not contain the multipart boundary of its content type.")
            })?;
            if at > 0 && body[at - 1] == b'\n' {
                break at + dash.len();
            }
            from = at + 1;
        }
    };
    let mut parts = Vec::new();
    loop {
        // After a delimiter: `--` closes, else padding and a line break open a part.
        if body.get(pos..pos + 2) == Some(b"--") {
            return Ok(parts);
        }
        while matches!(body.get(pos), Some(b' ' | b'\t')) {
            pos += 1;
        }
        pos = line_break(body, pos)
            .ok_or_else(|| bad("A multipart boundary is not followed by a line break."))?;
        if parts.len() == limits.max_parts {
            return Err(bad(format!(
                "The form has more than {} parts.",
                limits.max_parts
            )));
        }
        let (headers, data_start) = header_block(body, pos, limits.max_header_bytes)?;
        let part_head = parse_headers(headers)?;
        // The part ends at the next line break followed by the delimiter.
        let mut search = data_start;
        let (data_end, next) = loop {
            let at = find(body, dash, search)
                .ok_or_else(|| bad("The multipart body ends before its closing boundary."))?;
            let end = if at >= data_start + 2 && &body[at - 2..at] == b"\r\n" {
                Some(at - 2)
            } else if at > data_start && body[at - 1] == b'\n' {
                Some(at - 1)
            } else if at == data_start {
                // An empty part right after its headers' blank line (which took the line break).
                Some(at)
            } else {
                None
            };
            match end {
                Some(end) => break (end, at + dash.len()),
                None => search = at + 1,
            }
        };
        let data = &body[data_start..data_end];
        let (limit, what) = if part_head.filename.is_some() {
            (limits.max_file_bytes, "file")
        } else {
            (limits.max_field_bytes, "field")
        };
        if data.len() > limit {
            return Err(GatewayError::invalid_param(
                &part_head.name,
                format!(
                    "The {what} '{}' is larger than {limit} bytes.",
                    part_head.name
                ),
            )
            .with_code("request_too_large")
            .with_kind(ErrorKind::PayloadTooLarge));
        }
        parts.push(Part {
            name: part_head.name,
            filename: part_head.filename,
            content_type: part_head.content_type,
            data,
        });
        pos = next;
    }
}

trait WithKind {
    fn with_kind(self, kind: ErrorKind) -> Self;
}

impl WithKind for GatewayError {
    fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }
}

/// The header block starting at `pos` (without its blank line) and where the data starts.
fn header_block(body: &[u8], pos: usize, max: usize) -> Result<(&str, usize), GatewayError> {
    let mut line_start = pos;
    loop {
        if line_start - pos > max {
            return Err(bad(format!(
                "A multipart part's headers are longer than {max} bytes."
            )));
        }
        if let Some(end) = line_break(body, line_start) {
            // A blank line: the headers end here.
            let block = std::str::from_utf8(&body[pos..line_start])
                .map_err(|_| bad("A multipart part's headers are not UTF-8."))?;
            return Ok((block, end));
        }
        let nl = find(body, b"\n", line_start)
            .ok_or_else(|| bad("The multipart body ends inside a part's headers."))?;
        line_start = nl + 1;
    }
}

struct PartHead {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
}

fn parse_headers(block: &str) -> Result<PartHead, GatewayError> {
    let mut disposition = None;
    let mut content_type = None;
    for line in block.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("A multipart part has a header line without ':'."))?;
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-disposition") {
            if disposition.is_some() {
                return Err(bad("A multipart part has two Content-Disposition headers."));
            }
            disposition = Some(value.trim());
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim().to_string());
        }
    }
    let disposition =
        disposition.ok_or_else(|| bad("A multipart part has no Content-Disposition header."))?;
    let params = disposition_params(disposition)?;
    let mut name = None;
    let mut filename = None;
    let mut filename_star = None;
    for (key, value) in params {
        match key.to_ascii_lowercase().as_str() {
            "name" => name = Some(value),
            "filename" => filename = Some(value),
            "filename*" => filename_star = Some(ext_value(&value)?),
            _ => {}
        }
    }
    let name = name.ok_or_else(|| bad("A multipart part has no field name."))?;
    if name.is_empty() || name.len() > 256 {
        return Err(bad("A multipart field name must be 1 to 256 bytes."));
    }
    Ok(PartHead {
        name,
        filename: filename_star.or(filename),
        content_type,
    })
}

/// `form-data; name="a"; filename="b"` → the parameters, after checking the type.
fn disposition_params(value: &str) -> Result<Vec<(String, String)>, GatewayError> {
    let bytes = value.as_bytes();
    let kind_end = value.find(';').unwrap_or(value.len());
    if !value[..kind_end].trim().eq_ignore_ascii_case("form-data") {
        return Err(bad(
            "A multipart part's Content-Disposition is not form-data.",
        ));
    }
    let mut out = Vec::new();
    let mut i = kind_end;
    while i < bytes.len() {
        // At ';'.
        i += 1;
        while matches!(bytes.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let key_start = i;
        while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b';' {
            i += 1;
        }
        let key = value[key_start..i].trim().to_string();
        if bytes.get(i) != Some(&b'=') {
            // A parameter without a value: ignored.
            continue;
        }
        i += 1;
        while matches!(bytes.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        let mut val = Vec::new();
        if bytes.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err(bad("A Content-Disposition quoted string is not closed.")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < bytes.len() => {
                        val.push(bytes[i + 1]);
                        i += 2;
                    }
                    Some(&b) => {
                        val.push(b);
                        i += 1;
                    }
                }
            }
            while i < bytes.len() && bytes[i] != b';' {
                i += 1;
            }
        } else {
            let start = i;
            while i < bytes.len() && bytes[i] != b';' {
                i += 1;
            }
            val.extend_from_slice(value[start..i].trim().as_bytes());
        }
        let val = String::from_utf8(val)
            .map_err(|_| bad("A Content-Disposition parameter is not UTF-8."))?;
        out.push((key, val));
    }
    Ok(out)
}

/// RFC 8187 `UTF-8''percent%20encoded` (the only charset accepted).
fn ext_value(value: &str) -> Result<String, GatewayError> {
    let mut it = value.splitn(3, '\'');
    let charset = it.next().unwrap_or("");
    let _language = it.next();
    let encoded = it
        .next()
        .ok_or_else(|| bad("filename* must be UTF-8''<percent-encoded name>."))?;
    if !charset.eq_ignore_ascii_case("utf-8") {
        return Err(bad("filename* must use the UTF-8 charset."));
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad("filename* has a bad percent escape."))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad("filename* is not UTF-8."))
}

/// Builds a `multipart/form-data` body.
#[derive(Debug, Clone, Default)]
pub struct Writer<'a> {
    files: Vec<FileField<'a>>,
    owned: Vec<(String, String)>,
}

/// A file field of a [`Writer`].
#[derive(Debug, Clone)]
struct FileField<'a> {
    name: String,
    filename: String,
    content_type: String,
    data: &'a [u8],
}

/// A header parameter value as a quoted string: `"` and `\` escaped, CR and LF dropped (they
/// cannot appear in a header).
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl<'a> Writer<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A text field.
    pub fn text(&mut self, name: &str, value: &str) -> &mut Self {
        self.owned.push((name.to_string(), value.to_string()));
        self
    }

    /// A file field, its data borrowed.
    pub fn file(
        &mut self,
        name: &str,
        filename: &str,
        content_type: &str,
        data: &'a [u8],
    ) -> &mut Self {
        self.files.push(FileField {
            name: name.to_string(),
            filename: filename.to_string(),
            content_type: content_type.to_string(),
            data,
        });
        self
    }

    /// The body and its content type. The boundary starts from `seed` (e.g. the request id) and
    /// is changed until no part contains it.
    pub fn finish(&self, seed: &str) -> (String, Vec<u8>) {
        let clean: String = seed
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(40)
            .collect();
        let mut boundary = format!("tollgate-{clean}");
        let mut n = 0u32;
        while self.contains(&boundary) {
            n += 1;
            boundary = format!("tollgate-{clean}-{n}");
        }
        let mut body = Vec::new();
        for (name, value) in &self.owned {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name={}\r\n\r\n",
                    quoted(name)
                )
                .as_bytes(),
            );
            body.extend_from_slice(value.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        for f in &self.files {
            let (name, filename, data) = (&f.name, &f.filename, f.data);
            let content_type = if f.content_type.is_empty() || f.content_type.contains(['\r', '\n'])
            {
                "application/octet-stream"
            } else {
                f.content_type.as_str()
            };
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name={}; filename={}\r\nContent-Type: {content_type}\r\n\r\n",
                    quoted(name),
                    quoted(filename)
                )
                .as_bytes(),
            );
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    }

    fn contains(&self, boundary: &str) -> bool {
        let b = boundary.as_bytes();
        self.owned
            .iter()
            .any(|(n, v)| find(v.as_bytes(), b, 0).is_some() || find(n.as_bytes(), b, 0).is_some())
            || self.files.iter().any(|f| {
                find(f.data, b, 0).is_some()
                    || find(f.name.as_bytes(), b, 0).is_some()
                    || find(f.filename.as_bytes(), b, 0).is_some()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CURL: &[u8] = b"--------------------------d74496d66958873e\r\n\
Content-Disposition: form-data; name=\"model\"\r\n\r\n\
whisper-1\r\n\
--------------------------d74496d66958873e\r\n\
Content-Disposition: form-data; name=\"file\"; filename=\"a b.wav\"\r\n\
Content-Type: audio/wav\r\n\r\n\
RIFF\r\n--not-the-boundary\r\n\r\n\
--------------------------d74496d66958873e--\r\n";

    #[test]
    fn parses_what_curl_sends() {
        let b =
            boundary_of("multipart/form-data; boundary=------------------------d74496d66958873e")
                .unwrap();
        let parts = parse(CURL, &b, &Limits::default()).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "model");
        assert_eq!(parts[0].text().unwrap(), "whisper-1");
        assert!(!parts[0].is_file());
        assert_eq!(parts[1].filename.as_deref(), Some("a b.wav"));
        assert_eq!(parts[1].content_type.as_deref(), Some("audio/wav"));
        // The data keeps its own line breaks and look-alike boundaries.
        assert_eq!(parts[1].data, b"RIFF\r\n--not-the-boundary\r\n");
    }

    #[test]
    fn boundaries() {
        assert_eq!(
            boundary_of("multipart/form-data; boundary=\"a b:c\"").unwrap(),
            "a b:c"
        );
        assert_eq!(
            boundary_of("Multipart/Form-Data;charset=utf-8;BOUNDARY=xyz").unwrap(),
            "xyz"
        );
        assert_eq!(boundary_of("application/json").unwrap_err().status(), 415);
        for bad in [
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=\"abc",
            "multipart/form-data; boundary=\"ends \"",
            "multipart/form-data; boundary=a@b",
        ] {
            assert!(boundary_of(bad).is_err(), "{bad}");
        }
        assert!(boundary_of(&format!("multipart/form-data; boundary={}", "a".repeat(71))).is_err());
        assert!(valid_boundary(&"a".repeat(70)));
    }

    #[test]
    fn preamble_epilogue_padding_and_bare_lf() {
        let body = b"preamble\r\n--xx  \t\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--xx\nContent-Disposition: form-data; name=\"b\"\n\n2\n--xx--epilogue";
        let parts = parse(body, "xx", &Limits::default()).unwrap();
        let got: Vec<_> = parts.iter().map(|p| (p.name.as_str(), p.data)).collect();
        assert_eq!(got, [("a", &b"1"[..]), ("b", &b"2"[..])]);
        // An empty form and an empty part.
        assert!(parse(b"--xx--", "xx", &Limits::default())
            .unwrap()
            .is_empty());
        let empty = parse(
            b"--xx\r\nContent-Disposition: form-data; name=e\r\n\r\n\r\n--xx--",
            "xx",
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(empty[0].data, b"");
    }

    #[test]
    fn filenames() {
        let body = "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\\\"q.mp3\"; filename*=UTF-8''%E2%82%AC.mp3\r\n\r\nx\r\n--b\r\nContent-Disposition: form-data; name=g; filename=\"say \\\"hi\\\".wav\"\r\n\r\ny\r\n--b--";
        let parts = parse(body.as_bytes(), "b", &Limits::default()).unwrap();
        assert_eq!(parts[0].filename.as_deref(), Some("€.mp3"));
        assert_eq!(parts[1].filename.as_deref(), Some("say \"hi\".wav"));
    }

    #[test]
    fn refusals_are_400s_naming_the_problem() {
        let limits = Limits {
            max_parts: 2,
            max_header_bytes: 64,
            max_field_bytes: 4,
            max_file_bytes: 8,
        };
        let field = |name: &str, data: &str| {
            format!("--b\r\nContent-Disposition: form-data; name={name}\r\n\r\n{data}\r\n")
        };
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "boundary"),
            ("--b\r\n".into(), "headers"),
            (field("a", "1"), "closing boundary"),
            (format!("{}{}{}--b--", field("a", "1"), field("b", "2"), field("c", "3")), "more than 2 parts"),
            (format!("{}--b--", field("a", "12345")), "larger than 4"),
            ("--b\r\nContent-Disposition: form-data; name=f; filename=x\r\n\r\n123456789\r\n--b--".into(), "larger than 8"),
            ("--b\r\nContent-Type: text/plain\r\n\r\n1\r\n--b--".into(), "Content-Disposition"),
            ("--b\r\nContent-Disposition: attachment; name=a\r\n\r\n1\r\n--b--".into(), "form-data"),
            ("--b\r\nContent-Disposition: form-data; filename=a\r\n\r\n1\r\n--b--".into(), "no field name"),
            ("--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\n1\r\n--b--".into(), "not closed"),
            (format!("--b\r\nContent-Disposition: form-data; name=a; x={}\r\n\r\n1\r\n--b--", "y".repeat(80)), "headers are longer"),
            ("--b\r\nbroken header\r\n\r\n1\r\n--b--".into(), "without ':'"),
            ("--bX\r\n".into(), "line break"),
        ];
        for (body, needle) in cases {
            let e = parse(body.as_bytes(), "b", &limits).unwrap_err();
            assert!(e.status() == 400 || e.status() == 413, "{body:?}");
            assert!(e.message.contains(needle), "{body:?}: {}", e.message);
        }
        let big = parse(
            b"--b\r\nContent-Disposition: form-data; name=f; filename=x\r\n\r\n123456789\r\n--b--",
            "b",
            &limits,
        )
        .unwrap_err();
        assert_eq!((big.status(), big.param.as_deref()), (413, Some("f")));
    }

    #[test]
    fn writer_round_trips_and_avoids_its_boundary() {
        let audio = b"--tollgate-req1\r\n\x00\xff".to_vec();
        let mut w = Writer::new();
        w.text("model", "whisper-1")
            .text("quo\"te", "line\r\nbreak")
            .file("file", "a\"b.wav", "audio/wav", &audio);
        let (ct, body) = w.finish("req1");
        let boundary = boundary_of(&ct).unwrap();
        assert_eq!(boundary, "tollgate-req1-1");
        let parts = parse(&body, &boundary, &Limits::default()).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].text().unwrap(), "whisper-1");
        assert_eq!(parts[1].name, "quo\"te");
        assert_eq!(parts[1].data, b"line\r\nbreak");
        assert_eq!(parts[2].filename.as_deref(), Some("a\"b.wav"));
        assert_eq!(parts[2].content_type.as_deref(), Some("audio/wav"));
        assert_eq!(parts[2].data, &audio[..]);
    }
}
