//! A tolerant, incremental newline-delimited JSON (NDJSON) line splitter for upstream streams
//! (Ollama's `/api/chat`).
//!
//! Lines end with LF or CRLF (a lone CR is kept as part of the line, as JSON text cannot contain
//! a raw CR outside strings anyway); blank lines are skipped; the last line may lack its line
//! ending and is returned by [`NdjsonSplitter::finish`]. Lines are returned as bytes and
//! decoded by the caller only once complete, so a UTF-8 character split between pushes is never
//! seen in halves. Memory is bounded: a line longer than the limit is an error.
//!
//! Performance: each push scans only the new bytes for LF; the unfinished line is the only
//! buffer.

use std::fmt;

/// The default limit on one line, in bytes.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// A line grew beyond the splitter's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong {
    pub limit: usize,
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NDJSON line longer than {} bytes", self.limit)
    }
}

impl std::error::Error for LineTooLong {}

/// Splits a byte stream into lines, incrementally.
#[derive(Debug)]
pub struct NdjsonSplitter {
    pending: Vec<u8>,
    max_line_bytes: usize,
    failed: bool,
}

impl Default for NdjsonSplitter {
    fn default() -> Self {
        Self::with_max_line_bytes(DEFAULT_MAX_LINE_BYTES)
    }
}

impl NdjsonSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_max_line_bytes(max_line_bytes: usize) -> Self {
        NdjsonSplitter {
            pending: Vec::new(),
            max_line_bytes,
            failed: false,
        }
    }

    /// Feeds bytes; returns every non-blank line they complete, without its line ending.
    ///
    /// # Errors
    ///
    /// [`LineTooLong`] once a line exceeds the limit. Lines completed earlier in the same push
    /// are not lost: if there are any, this push returns them and the error is returned by the
    /// next call to `push` or [`finish`](Self::finish) (as [`crate::core::sse::SseParser`]
    /// does). After an error the splitter stays failed and ignores further input.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, LineTooLong> {
        if self.failed {
            return Err(self.too_long());
        }
        let mut lines = Vec::new();
        if self.feed(bytes, &mut lines).is_err() {
            self.failed = true;
            self.pending = Vec::new();
            if lines.is_empty() {
                return Err(self.too_long());
            }
        }
        Ok(lines)
    }

    fn feed(&mut self, bytes: &[u8], lines: &mut Vec<Vec<u8>>) -> Result<(), LineTooLong> {
        let mut rest = bytes;
        while let Some(lf) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(lf);
            self.pending.extend_from_slice(head);
            rest = tail.get(1..).unwrap_or_default();
            let mut line = std::mem::take(&mut self.pending);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() > self.max_line_bytes {
                return Err(self.too_long());
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                lines.push(line);
            }
        }
        self.pending.extend_from_slice(rest);
        if self.pending.len() > self.max_line_bytes {
            return Err(self.too_long());
        }
        Ok(())
    }

    /// The stream ended: returns the last line if it had no line ending.
    pub fn finish(&mut self) -> Result<Option<Vec<u8>>, LineTooLong> {
        if self.failed {
            return Err(self.too_long());
        }
        let mut line = std::mem::take(&mut self.pending);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok((!line.iter().all(u8::is_ascii_whitespace)).then_some(line))
    }

    fn too_long(&self) -> LineTooLong {
        LineTooLong {
            limit: self.max_line_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut s = NdjsonSplitter::new();
        let mut out = Vec::new();
        let mut start = 0;
        for &c in cuts {
            out.extend(s.push(&input[start..c]).unwrap());
            start = c;
        }
        out.extend(s.push(&input[start..]).unwrap());
        out.extend(s.finish().unwrap());
        out
    }

    #[test]
    fn lines_survive_any_split() {
        let input = "{\"a\":\"é日本\"}\r\n\n  \n{\"b\":2}\n{\"c\":3}".as_bytes();
        let expected = vec![
            "{\"a\":\"é日本\"}".as_bytes().to_vec(),
            b"{\"b\":2}".to_vec(),
            b"{\"c\":3}".to_vec(),
        ];
        assert_eq!(split_all(input, &[]), expected);
        for i in 1..input.len() {
            assert_eq!(split_all(input, &[i]), expected, "split at {i}");
            for j in i + 1..input.len() {
                assert_eq!(split_all(input, &[i, j]), expected, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn bounded() {
        let mut s = NdjsonSplitter::with_max_line_bytes(8);
        assert_eq!(s.push(b"12345678\n").unwrap(), vec![b"12345678".to_vec()]);
        assert_eq!(s.push(b"123456789"), Err(LineTooLong { limit: 8 }));
        assert!(s.push(b"\n").is_err());
        assert!(s.finish().is_err());
    }

    #[test]
    fn lines_before_an_over_long_line_are_kept() {
        // Two good lines and an over-long one in the same push: the good lines come back now,
        // the error with the next call.
        let mut s = NdjsonSplitter::with_max_line_bytes(8);
        assert_eq!(
            s.push(b"{\"a\":1}\n{\"b\":2}\n123456789\n").unwrap(),
            vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]
        );
        assert_eq!(s.push(b"{}\n"), Err(LineTooLong { limit: 8 }));
        assert!(s.finish().is_err());
        // An unfinished over-long tail after a good line: same.
        let mut s = NdjsonSplitter::with_max_line_bytes(8);
        assert_eq!(s.push(b"{}\n123456789").unwrap(), vec![b"{}".to_vec()]);
        assert!(s.finish().is_err());
    }

    #[test]
    fn empty_stream() {
        let mut s = NdjsonSplitter::new();
        assert!(s.push(b"").unwrap().is_empty());
        assert_eq!(s.finish().unwrap(), None);
    }
}
