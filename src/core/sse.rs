//! Incremental Server-Sent-Events parser and encoder for proxying upstream LLM streams.
//!
//! The parser follows the WHATWG "event stream" interpretation rules
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>):
//!
//! * a line ends with LF, CRLF or a lone CR, and a CRLF split across two pushes is still one
//!   line ending;
//! * a line starting with `:` is a comment;
//! * `field: value` sets a field, with one optional space after the colon stripped; a line
//!   without a colon is a field with an empty value;
//! * several `data` lines join with `"\n"`; `event` and `id` keep their last value; `retry`
//!   and unknown fields are ignored; an `id` containing U+0000 is ignored;
//! * a UTF-8 byte-order mark at the very start of the stream is skipped;
//! * a blank line ends the block of lines and dispatches it.
//!
//! Where a proxy needs more than the spec gives a browser, this parser departs from it:
//!
//! * **Every block yields an event**, even one holding only comments or nothing but the blank
//!   line, so keep-alive comments can be forwarded. Such events have `event`, `data` and `id`
//!   all `None`.
//! * **`raw` is exact.** Each event carries the bytes of its block, terminating blank line
//!   included, so concatenating the `raw` of every event returned by [`SseParser::push`] and
//!   [`SseParser::finish`] reproduces the input byte for byte, however it was split.
//! * **The end of the stream is not silent.** [`SseParser::finish`] returns a last block that
//!   was not ended by a blank line instead of discarding it.
//! * **Memory is bounded.** A block larger than the parser's limit is an error
//!   ([`SseError::EventTooLarge`]) rather than an ever-growing buffer.
//!
//! Performance: bytes are scanned once, as they arrive, for CR or LF; a line is decoded only
//! when complete, so a multi-byte UTF-8 character split between pushes is never seen in
//! halves. Only the block in progress is buffered (it must be, to give `raw`), and it is
//! appended to, never rescanned, so a long stream of one-byte pushes costs linear time.
//!
//! One latency trade-off: a blank line ended by a CR that is the *last* byte of a push could be
//! the first half of a CRLF. Its event is held until the next byte arrives (or `finish`), so
//! that `raw` does not depend on where the stream was split. Only that one event is delayed,
//! and only when the split falls exactly between the CR and the LF (or the stream uses bare CR
//! line endings, which no known provider does).

use std::fmt;

/// The payload that OpenAI-compatible streams send as their last `data:` line.
pub const DONE: &str = "[DONE]";

/// The default limit on the size of one event, in bytes, used by [`SseParser::new`].
///
/// Chat-completion chunks are a few hundred bytes; the limit leaves room for providers that
/// stream large payloads (images, long tool arguments) in one event.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched block of an event stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The value of the last `event:` field of the block, if any (as sent; the spec treats
    /// `None` and `Some("")` as `"message"`).
    pub event: Option<String>,
    /// The `data:` lines of the block joined with `"\n"`, or `None` if the block had none.
    pub data: Option<String>,
    /// The value of the last valid `id:` field of the block, if any. Unlike a browser, the
    /// parser does not carry the id over to later events.
    pub id: Option<String>,
    /// The exact bytes of the block, including its terminating blank line (absent only for a
    /// block returned by [`SseParser::finish`]).
    pub raw: Vec<u8>,
}

impl SseEvent {
    /// Whether this event is the `data: [DONE]` end-of-stream marker.
    pub fn is_done(&self) -> bool {
        self.data.as_deref() == Some(DONE)
    }

    /// Whether the block held no `event`, `data` or `id` field: only comments, unknown
    /// fields or blank space. A proxy forwards its `raw` bytes and otherwise ignores it.
    pub fn is_empty(&self) -> bool {
        self.event.is_none() && self.data.is_none() && self.id.is_none()
    }
}

/// Why the parser gave up on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseError {
    /// A block grew beyond the parser's limit (`limit` bytes, blank line included) before
    /// it was complete. The stream cannot be parsed further; the caller should abort it.
    EventTooLarge {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::EventTooLarge { limit } => {
                write!(f, "server-sent event larger than {limit} bytes")
            }
        }
    }
}

impl std::error::Error for SseError {}

/// The fields of the block in progress.
#[derive(Debug, Default)]
struct PendingFields {
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
}

impl PendingFields {
    /// Applies one complete line (without its line ending) to the block.
    fn apply_line(&mut self, line: &[u8]) {
        if line.first() == Some(&b':') {
            return; // comment
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                let value = String::from_utf8_lossy(value);
                match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(&value);
                    }
                    None => self.data = Some(value.into_owned()),
                }
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"id" if !value.contains(&0) => {
                self.id = Some(String::from_utf8_lossy(value).into_owned());
            }
            _ => {} // `retry`, an `id` with NUL, and unknown fields
        }
    }
}

/// An incremental event-stream parser: feed it bytes as they arrive, get complete events.
///
/// ```
/// use tollgate::core::sse::SseParser;
///
/// let mut parser = SseParser::new();
/// let mut events = parser.push(b"data: hel").unwrap();
/// assert!(events.is_empty());
/// events = parser.push(b"lo\n\ndata: [DONE]\n\n").unwrap();
/// assert_eq!(events[0].data.as_deref(), Some("hello"));
/// assert!(events[1].is_done());
/// assert_eq!(parser.finish().unwrap(), None);
/// ```
#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the block in progress, exactly as received.
    raw: Vec<u8>,
    /// Where the line in progress starts in `raw`.
    line_start: usize,
    fields: PendingFields,
    /// The last byte seen was a CR ending a line: an LF right after it belongs to that line.
    after_cr: bool,
    /// An event whose blank line ended with a CR at the end of a push; see the module docs.
    held: Option<SseEvent>,
    /// No line has been completed yet, so a BOM may still start the stream.
    at_stream_start: bool,
    max_event_bytes: usize,
    /// Set once a limit is exceeded; every later call reports it.
    failed: Option<SseError>,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser with the default event-size limit, [`DEFAULT_MAX_EVENT_BYTES`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A parser that rejects any block longer than `max_event_bytes` bytes, its terminating
    /// blank line included, with [`SseError::EventTooLarge`].
    pub fn with_max_event_bytes(max_event_bytes: usize) -> Self {
        SseParser {
            raw: Vec::new(),
            line_start: 0,
            fields: PendingFields::default(),
            after_cr: false,
            held: None,
            at_stream_start: true,
            max_event_bytes,
            failed: None,
        }
    }

    /// Feeds the next bytes of the stream (split anywhere) and returns every event they
    /// complete, in order.
    ///
    /// # Errors
    ///
    /// [`SseError::EventTooLarge`] once a block exceeds the limit. Events completed earlier
    /// in the same push are not lost: if there are any, this push returns them and the error
    /// is returned by the next call to `push` or [`finish`](Self::finish). After an error the
    /// parser stays failed and ignores further input.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let mut events = Vec::new();
        if let Err(err) = self.feed(bytes, &mut events) {
            self.fail(err);
            if events.is_empty() {
                return Err(err);
            }
        }
        Ok(events)
    }

    /// Ends the stream: returns the last block if it was not ended by a blank line (its
    /// incomplete last line counts as a line), or an event held back waiting for a possible
    /// LF. `None` if no bytes were pending. The parser is then ready for a new stream.
    ///
    /// # Errors
    ///
    /// The [`SseError`] that made the parser fail, if it did; it stays failed.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, SseError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let last = if let Some(held) = self.held.take() {
            Some(held)
        } else if self.raw.is_empty() {
            None
        } else {
            let mut line = &self.raw[self.line_start..];
            if self.at_stream_start {
                line = line.strip_prefix(BOM).unwrap_or(line);
            }
            if !line.is_empty() {
                self.fields.apply_line(line);
            }
            Some(self.take_event())
        };
        *self = Self::with_max_event_bytes(self.max_event_bytes);
        Ok(last)
    }

    fn feed(&mut self, bytes: &[u8], events: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut pos = 0;
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if bytes[0] == b'\n' {
                pos = 1;
                // The LF completes the CRLF that ended the previous line.
                match &mut self.held {
                    Some(held) => held.raw.push(b'\n'),
                    None => {
                        self.raw.push(b'\n');
                        self.line_start = self.raw.len();
                        self.check_size()?;
                    }
                }
            }
        }
        if !bytes.is_empty() {
            events.extend(self.held.take());
        }

        while pos < bytes.len() {
            let rest = &bytes[pos..];
            let Some(eol) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.raw.extend_from_slice(rest);
                return self.check_size();
            };
            let mut end = eol + 1;
            if rest[eol] == b'\r' {
                match rest.get(eol + 1) {
                    Some(b'\n') => end += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            let content_end = self.raw.len() + eol;
            self.raw.extend_from_slice(&rest[..end]);
            pos += end;
            self.check_size()?;

            let mut content_start = std::mem::replace(&mut self.line_start, self.raw.len());
            if std::mem::replace(&mut self.at_stream_start, false)
                && self.raw[content_start..content_end].starts_with(BOM)
            {
                content_start += BOM.len();
            }
            if content_start == content_end {
                let event = self.take_event();
                if self.after_cr {
                    self.held = Some(event);
                } else {
                    events.push(event);
                }
            } else {
                self.fields
                    .apply_line(&self.raw[content_start..content_end]);
            }
        }
        Ok(())
    }

    fn take_event(&mut self) -> SseEvent {
        let fields = std::mem::take(&mut self.fields);
        self.line_start = 0;
        SseEvent {
            event: fields.event,
            data: fields.data,
            id: fields.id,
            raw: std::mem::take(&mut self.raw),
        }
    }

    fn check_size(&self) -> Result<(), SseError> {
        if self.raw.len() > self.max_event_bytes {
            Err(SseError::EventTooLarge {
                limit: self.max_event_bytes,
            })
        } else {
            Ok(())
        }
    }

    fn fail(&mut self, err: SseError) {
        // Free the oversized buffer; nothing more will be parsed.
        *self = Self::with_max_event_bytes(self.max_event_bytes);
        self.failed = Some(err);
    }
}

/// Encodes `data` as one event: `"data: <line>\n"` for each of its lines, then a blank line.
///
/// LF, CRLF and lone CR in `data` all count as line breaks, so the result always frames
/// correctly; a parser reads the data back with its line breaks normalized to `"\n"`.
pub fn encode_data(data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    let mut rest = data;
    loop {
        let (line, next) = match rest.find(['\n', '\r']) {
            Some(i) => {
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                (&rest[..i], Some(&rest[i + skip..]))
            }
            None => (rest, None),
        };
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        match next {
            Some(next) => rest = next,
            None => break,
        }
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_event(data: &str, raw: &str) -> SseEvent {
        SseEvent {
            data: Some(data.to_string()),
            raw: raw.as_bytes().to_vec(),
            ..SseEvent::default()
        }
    }

    /// Parses `input` fed as the given pieces, ending with `finish`.
    fn parse_pieces(pieces: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for piece in pieces {
            events.extend(parser.push(piece).expect("within limit"));
        }
        events.extend(parser.finish().expect("within limit"));
        events
    }

    fn parse_all(input: &[u8]) -> Vec<SseEvent> {
        parse_pieces(&[input])
    }

    fn concat_raw(events: &[SseEvent]) -> Vec<u8> {
        events.iter().flat_map(|e| e.raw.iter().copied()).collect()
    }

    /// A transcript with every feature: three line-ending styles, comments, multi-line data,
    /// event and id fields, non-ASCII text, `[DONE]` and a trailing unterminated event.
    const TRANSCRIPT: &[u8] = "\u{FEFF}: keep-alive\n\n\
        event: message\r\nid: 1\r\ndata: {\"a\":\"你好\"}\r\n\r\n\
        data: line one\rdata: line two 🎉\r\r\
        data:no-space\ndata:  two spaces\nretry: 10\nunknown: x\n\n\
        \n\
        data: [DONE]\r\n\r\n\
        data: tail"
        .as_bytes();

    #[test]
    fn lf_event() {
        let events = parse_all(b"data: hello\n\n");
        assert_eq!(events, vec![data_event("hello", "data: hello\n\n")]);
    }

    #[test]
    fn crlf_event() {
        let events = parse_all(b"event: delta\r\ndata: hi\r\n\r\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event.as_deref(), Some("delta"));
        assert_eq!(events[0].data.as_deref(), Some("hi"));
        assert_eq!(events[0].raw, b"event: delta\r\ndata: hi\r\n\r\n");
    }

    #[test]
    fn cr_event() {
        let events = parse_all(b"data: a\rdata: b\r\rdata: c\r\r");
        let data: Vec<_> = events.iter().map(|e| e.data.as_deref()).collect();
        assert_eq!(data, vec![Some("a\nb"), Some("c")]);
        assert_eq!(events[0].raw, b"data: a\rdata: b\r\r");
    }

    #[test]
    fn mixed_line_endings() {
        let events = parse_all(b"data: a\r\ndata: b\rdata: c\n\r\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data.as_deref(), Some("a\nb\nc"));
    }

    #[test]
    fn crlf_split_between_pushes_is_one_line_ending() {
        let events = parse_pieces(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(
            events,
            vec![data_event("a\nb", "data: a\r\ndata: b\r\n\r\n")]
        );
    }

    #[test]
    fn cr_at_end_of_push_followed_by_other_byte() {
        let events = parse_pieces(&[b"data: a\r", b"data: b\r\r", b"data: c\r\r"]);
        let data: Vec<_> = events.iter().map(|e| e.data.clone()).collect();
        assert_eq!(data, vec![Some("a\nb".into()), Some("c".into())]);
        assert_eq!(concat_raw(&events), b"data: a\rdata: b\r\rdata: c\r\r");
    }

    #[test]
    fn held_event_is_released_by_next_push_or_finish() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"data: x\r\n\r").unwrap().is_empty());
        // An empty push does not decide anything.
        assert!(parser.push(b"").unwrap().is_empty());
        let events = parser.push(b"\n").unwrap();
        assert_eq!(events, vec![data_event("x", "data: x\r\n\r\n")]);

        assert!(parser.push(b"data: y\r\r").unwrap().is_empty());
        assert_eq!(
            parser.finish().unwrap(),
            Some(data_event("y", "data: y\r\r"))
        );
    }

    #[test]
    fn transcript_fields() {
        let events = parse_all(TRANSCRIPT);
        assert_eq!(events.len(), 7);

        assert!(events[0].is_empty());
        assert_eq!(events[0].raw, "\u{FEFF}: keep-alive\n\n".as_bytes());

        assert_eq!(events[1].event.as_deref(), Some("message"));
        assert_eq!(events[1].id.as_deref(), Some("1"));
        assert_eq!(events[1].data.as_deref(), Some("{\"a\":\"你好\"}"));
        assert_eq!(
            events[1].raw,
            "event: message\r\nid: 1\r\ndata: {\"a\":\"你好\"}\r\n\r\n".as_bytes()
        );

        assert_eq!(events[2].data.as_deref(), Some("line one\nline two 🎉"));
        assert_eq!(events[2].event, None);
        assert_eq!(events[2].id, None);

        assert_eq!(events[3].data.as_deref(), Some("no-space\n two spaces"));
        assert!(events[4].is_empty());
        assert_eq!(events[4].raw, b"\n");
        assert!(events[5].is_done());
        assert_eq!(events[5].raw, b"data: [DONE]\r\n\r\n");
        assert_eq!(events[6], data_event("tail", "data: tail"));
    }

    #[test]
    fn transcript_trailing_event_comes_from_finish() {
        let mut parser = SseParser::new();
        let events = parser.push(TRANSCRIPT).unwrap();
        assert_eq!(events.len(), 6);
        assert!(events[5].is_done());
        let tail = parser.finish().unwrap();
        assert_eq!(tail, Some(data_event("tail", "data: tail")));
        assert_eq!(parser.finish().unwrap(), None);
    }

    #[test]
    fn raw_bytes_reproduce_the_input() {
        assert_eq!(concat_raw(&parse_all(TRANSCRIPT)), TRANSCRIPT);
        let pieces: Vec<&[u8]> = TRANSCRIPT.chunks(3).collect();
        assert_eq!(concat_raw(&parse_pieces(&pieces)), TRANSCRIPT);
    }

    #[test]
    fn bom_alone_then_blank_line() {
        let events = parse_all("\u{FEFF}\ndata: a\n\n".as_bytes());
        assert_eq!(events.len(), 2);
        assert!(events[0].is_empty());
        assert_eq!(events[1].data.as_deref(), Some("a"));
    }

    #[test]
    fn bom_not_at_stream_start_after_blank_line() {
        let events = parse_all("\n\u{FEFF}data: a\n\n".as_bytes());
        assert!(events[1].is_empty());
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let expected = parse_all(TRANSCRIPT);
        assert_eq!(expected.len(), 7);
        for split in 0..=TRANSCRIPT.len() {
            let (a, b) = TRANSCRIPT.split_at(split);
            assert_eq!(parse_pieces(&[a, b]), expected, "split at {split}");
        }
    }

    #[test]
    fn every_pair_of_split_points_gives_the_same_events() {
        let expected = parse_all(TRANSCRIPT);
        for i in 0..=TRANSCRIPT.len() {
            for j in i..=TRANSCRIPT.len() {
                let pieces = [&TRANSCRIPT[..i], &TRANSCRIPT[i..j], &TRANSCRIPT[j..]];
                assert_eq!(parse_pieces(&pieces), expected, "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn byte_by_byte_gives_the_same_events() {
        let expected = parse_all(TRANSCRIPT);
        let pieces: Vec<&[u8]> = TRANSCRIPT.chunks(1).collect();
        assert_eq!(parse_pieces(&pieces), expected);
    }

    #[test]
    fn random_streams_split_randomly_agree_and_keep_raw() {
        // Streams built from the bytes that matter to the parser, plus a BOM and a
        // multi-byte character, cut at random points.
        const PIECES: &[&[u8]] = &[
            b"data",
            b"event",
            b"id",
            b":",
            b" ",
            b"x",
            b"\r",
            b"\n",
            b"\r\n",
            b"\xEF\xBB\xBF",
            "é".as_bytes(),
            b"\0",
        ];
        let mut state = 0x2545_F491_4F6D_CDDDu64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let mut stream = Vec::new();
            for _ in 0..next() % 40 {
                stream.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let expected = parse_all(&stream);
            assert_eq!(concat_raw(&expected), stream);
            let mut cuts: Vec<usize> = (0..next() % 6)
                .map(|_| (next() % (stream.len() as u64 + 1)) as usize)
                .collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut from = 0;
            for cut in cuts {
                pieces.push(&stream[from..cut]);
                from = cut;
            }
            pieces.push(&stream[from..]);
            assert_eq!(
                parse_pieces(&pieces),
                expected,
                "{stream:?} cut as {pieces:?}"
            );
        }
    }

    #[test]
    fn split_inside_utf8_characters() {
        let text = "data: 你好，世界 🎉👍🏽\n\n";
        let bytes = text.as_bytes();
        for split in 0..=bytes.len() {
            let (a, b) = bytes.split_at(split);
            let events = parse_pieces(&[a, b]);
            assert_eq!(events.len(), 1, "split at {split}");
            assert_eq!(events[0].data.as_deref(), Some("你好，世界 🎉👍🏽"));
        }
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let events = parse_all(b"data: a\xFFb\xE4\xBD\n\n");
        assert_eq!(events[0].data.as_deref(), Some("a\u{FFFD}b\u{FFFD}"));
        assert_eq!(events[0].raw, b"data: a\xFFb\xE4\xBD\n\n");
    }

    #[test]
    fn comments_only_block_dispatches_empty_event() {
        let events = parse_all(b": ping\n: pong\n\ndata: x\n\n");
        assert_eq!(events.len(), 2);
        assert!(events[0].is_empty());
        assert_eq!(events[0].data, None);
        assert_eq!(events[0].raw, b": ping\n: pong\n\n");
        assert_eq!(events[1].data.as_deref(), Some("x"));
    }

    #[test]
    fn comment_between_data_lines_is_ignored() {
        let events = parse_all(b"data: a\n:comment with data: inside\ndata: b\n\n");
        assert_eq!(events[0].data.as_deref(), Some("a\nb"));
    }

    #[test]
    fn done_marker() {
        let events = parse_all(b"data: {}\n\ndata: [DONE]\n\n");
        assert!(!events[0].is_done());
        assert!(events[1].is_done());
        assert!(!parse_all(b"data: [DONE] \n\n")[0].is_done());
    }

    #[test]
    fn field_value_rules() {
        let events = parse_all(b"data\n\ndata:\n\ndata: \n\ndata:  x\n\ndata: a: b\n\n");
        let data: Vec<_> = events.iter().map(|e| e.data.as_deref()).collect();
        assert_eq!(
            data,
            vec![Some(""), Some(""), Some(""), Some(" x"), Some("a: b")]
        );
    }

    #[test]
    fn empty_data_lines_join() {
        let events = parse_all(b"data\ndata\n\n");
        assert_eq!(events[0].data.as_deref(), Some("\n"));
    }

    #[test]
    fn field_names_are_case_sensitive_and_unknown_ignored() {
        let events = parse_all(b"Data: x\nDATA: y\nretry: 5\nfoo: bar\n\n");
        assert!(events[0].is_empty());
    }

    #[test]
    fn last_event_and_id_win_and_nul_id_is_ignored() {
        let events = parse_all(b"event: a\nevent: b\nid: 1\nid: 2\nid: 3\0\ndata: x\n\n");
        assert_eq!(events[0].event.as_deref(), Some("b"));
        assert_eq!(events[0].id.as_deref(), Some("2"));
    }

    #[test]
    fn id_does_not_carry_over() {
        let events = parse_all(b"id: 7\ndata: a\n\ndata: b\n\n");
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[1].id, None);
    }

    #[test]
    fn bom_only_at_stream_start() {
        let events = parse_all("\u{FEFF}data: a\n\n\u{FEFF}data: b\n\n".as_bytes());
        assert_eq!(events[0].data.as_deref(), Some("a"));
        // A BOM later on is part of the field name, so the field is unknown.
        assert!(events[1].is_empty());
    }

    #[test]
    fn bom_split_across_pushes() {
        let bytes = "\u{FEFF}data: a\n\n".as_bytes();
        let events = parse_pieces(&[&bytes[..1], &bytes[1..2], &bytes[2..]]);
        assert_eq!(events[0].data.as_deref(), Some("a"));
    }

    #[test]
    fn blank_lines_dispatch_empty_events() {
        let events = parse_all(b"\n\r\n\rdata: x\n\n");
        assert_eq!(events.len(), 4);
        assert!(events[..3].iter().all(SseEvent::is_empty));
        assert_eq!(concat_raw(&events), b"\n\r\n\rdata: x\n\n");
    }

    #[test]
    fn finish_without_pending_bytes() {
        let mut parser = SseParser::new();
        assert_eq!(parser.finish().unwrap(), None);
        parser.push(b"data: x\n\n").unwrap();
        assert_eq!(parser.finish().unwrap(), None);
    }

    #[test]
    fn finish_returns_trailing_comment_and_partial_lines() {
        let mut parser = SseParser::new();
        parser.push(b": bye").unwrap();
        let last = parser.finish().unwrap().expect("pending bytes");
        assert!(last.is_empty());
        assert_eq!(last.raw, b": bye");

        parser.push(b"event: e\ndata: 1\n").unwrap();
        let last = parser.finish().unwrap().expect("pending bytes");
        assert_eq!(last.event.as_deref(), Some("e"));
        assert_eq!(last.data.as_deref(), Some("1"));
    }

    #[test]
    fn finish_resets_for_a_new_stream() {
        let mut parser = SseParser::new();
        parser.push(b"data: a").unwrap();
        parser.finish().unwrap();
        let events = parser.push("\u{FEFF}data: b\n\n".as_bytes()).unwrap();
        assert_eq!(events[0].data.as_deref(), Some("b"));
    }

    #[test]
    fn many_tiny_pushes_are_linear() {
        // 200k one-byte pushes: quadratic behaviour would take minutes.
        let mut stream = Vec::new();
        for i in 0..10_000 {
            stream.extend_from_slice(format!("data: {i}\n\n").as_bytes());
        }
        let mut parser = SseParser::new();
        let mut count = 0;
        for byte in &stream {
            count += parser.push(std::slice::from_ref(byte)).unwrap().len();
        }
        assert_eq!(count, 10_000);

        // One long event fed byte by byte.
        let mut parser = SseParser::new();
        let long = vec![b'x'; 200_000];
        parser.push(b"data: ").unwrap();
        for byte in &long {
            assert!(parser.push(std::slice::from_ref(byte)).unwrap().is_empty());
        }
        let events = parser.push(b"\n\n").unwrap();
        assert_eq!(events[0].data.as_ref().map(String::len), Some(200_000));
    }

    #[test]
    fn event_too_large() {
        let mut parser = SseParser::with_max_event_bytes(16);
        // Exactly at the limit is fine.
        let events = parser.push(b"data: 01234567\n\n").unwrap();
        assert_eq!(events[0].raw.len(), 16);
        let err = parser.push(b"data: 0123456789ab").unwrap_err();
        assert_eq!(err, SseError::EventTooLarge { limit: 16 });
        // The parser stays failed.
        assert_eq!(parser.push(b"\n\n"), Err(err));
        assert_eq!(parser.finish(), Err(err));
        assert_eq!(err.to_string(), "server-sent event larger than 16 bytes");
    }

    #[test]
    fn event_too_large_across_pushes() {
        let mut parser = SseParser::with_max_event_bytes(10);
        parser.push(b"data: ").unwrap();
        parser.push(b"abc").unwrap();
        assert!(parser.push(b"de").is_err());
    }

    #[test]
    fn event_too_large_keeps_earlier_events_of_the_same_push() {
        let mut parser = SseParser::with_max_event_bytes(10);
        let events = parser.push(b"data: a\n\ndata: far too long\n\n").unwrap();
        assert_eq!(events, vec![data_event("a", "data: a\n\n")]);
        assert_eq!(parser.finish(), Err(SseError::EventTooLarge { limit: 10 }));
    }

    #[test]
    fn many_blank_lines_never_exceed_limit() {
        let mut parser = SseParser::with_max_event_bytes(2);
        let events = parser.push(&[b'\n'; 1000]).unwrap();
        assert_eq!(events.len(), 1000);
    }

    #[test]
    fn encode_single_line() {
        assert_eq!(encode_data("hello"), b"data: hello\n\n");
        assert_eq!(encode_data(DONE), b"data: [DONE]\n\n");
        assert_eq!(encode_data(""), b"data: \n\n");
    }

    #[test]
    fn encode_multi_line() {
        assert_eq!(encode_data("a\nb"), b"data: a\ndata: b\n\n");
        assert_eq!(encode_data("a\r\nb\rc"), b"data: a\ndata: b\ndata: c\n\n");
        assert_eq!(encode_data("a\n"), b"data: a\ndata: \n\n");
    }

    #[test]
    fn encode_round_trips() {
        let samples = [
            "",
            "x",
            "{\"choices\":[]}",
            "a\nb\n\nc",
            "\n",
            "\n\n",
            " leading space",
            ": not a comment",
            "你好\n🎉",
            DONE,
        ];
        for sample in samples {
            let events = parse_all(&encode_data(sample));
            assert_eq!(events.len(), 1, "{sample:?}");
            assert_eq!(events[0].data.as_deref(), Some(sample), "{sample:?}");
            assert_eq!(events[0].raw, encode_data(sample));
        }
        let events = parse_all(&encode_data("a\r\nb\rc"));
        assert_eq!(events[0].data.as_deref(), Some("a\nb\nc"));
    }
}
