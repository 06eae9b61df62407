//! Reads the lines of a reply as they pass through the proxy (NDJSON, or SSE `data:`
//! lines): the first token and the final metrics. Each byte is looked at once (a
//! newline-less reply is not rescanned on every chunk), and a line is kept only up to
//! [`SCAN_LINE_BYTES`]: a longer one passes unchanged but is not read.

use serde_json::Value;

/// The longest reply line the proxy reads (8 MiB: a large non-streamed embedding
/// reply). Longer lines still pass to the client byte for byte.
pub const SCAN_LINE_BYTES: usize = 8 << 20;

/// The state of one reply's scan.
#[derive(Default)]
pub(super) struct Scanner {
    buf: Vec<u8>,
    /// The current line ran over [`SCAN_LINE_BYTES`]: dropped until its newline.
    skipping: bool,
    /// A line was too long to read.
    pub over_limit: bool,
    pub first_token: bool,
    pub load_duration_ms: Option<f64>,
    pub prompt_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub error_line: bool,
    /// The reply's last line passed (`"done": true`, or `data: [DONE]` on `/v1`).
    pub done: bool,
}

impl Scanner {
    /// Feeds bytes; true when a line with text was seen for the first time.
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        let before = self.first_token;
        let mut rest = bytes;
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(pos) => {
                    let (head, tail) = rest.split_at(pos + 1);
                    rest = tail;
                    if self.skipping {
                        self.skipping = false;
                        continue;
                    }
                    if self.buf.is_empty() && head.len() <= SCAN_LINE_BYTES {
                        self.line(head);
                    } else if self.keep(head) {
                        let line = std::mem::take(&mut self.buf);
                        self.line(&line);
                        self.buf = line;
                        self.buf.clear();
                    } else {
                        self.skipping = false;
                    }
                }
                None => {
                    if !self.skipping {
                        let _ = self.keep(rest);
                    }
                    rest = &[];
                }
            }
        }
        // A long line without a newline (a non-streamed reply) is read at the end.
        !before && self.first_token
    }

    /// Appends to the line being read; false (and the line dropped) when it runs over
    /// the limit.
    fn keep(&mut self, bytes: &[u8]) -> bool {
        if self.buf.len() + bytes.len() > SCAN_LINE_BYTES {
            self.buf = Vec::new();
            self.skipping = true;
            self.over_limit = true;
            return false;
        }
        self.buf.extend_from_slice(bytes);
        true
    }

    /// The reply ended: reads the last line if it had no newline.
    pub fn finish(&mut self) {
        let rest = std::mem::take(&mut self.buf);
        if !self.skipping && !rest.is_empty() {
            self.line(&rest);
        }
    }

    fn line(&mut self, line: &[u8]) {
        let text = line.strip_prefix(b"data: ").unwrap_or(line);
        if text.trim_ascii() == b"[DONE]" {
            self.done = true;
        }
        let Ok(v) = serde_json::from_slice::<Value>(text) else {
            return;
        };
        let nonempty = |v: &Value| v.as_str().is_some_and(|s| !s.is_empty());
        if nonempty(&v["response"])
            || nonempty(&v["thinking"])
            || nonempty(&v["message"]["content"])
            || nonempty(&v["message"]["thinking"])
            || nonempty(&v["choices"][0]["delta"]["content"])
            || nonempty(&v["choices"][0]["message"]["content"])
            || v["embeddings"].is_array()
            || v["data"].is_array()
        {
            self.first_token = true;
        }
        if let Some(ns) = v["load_duration"].as_f64() {
            self.load_duration_ms = Some(ns / 1e6);
        }
        if let Some(n) = v["prompt_eval_count"]
            .as_u64()
            .or_else(|| v["usage"]["prompt_tokens"].as_u64())
        {
            self.prompt_tokens = Some(n);
        }
        if let Some(n) = v["eval_count"]
            .as_u64()
            .or_else(|| v["usage"]["completion_tokens"].as_u64())
        {
            self.output_tokens = Some(n);
        }
        if v.get("error").is_some() && v.get("done").is_none() {
            self.error_line = true;
        }
        if v["done"] == Value::Bool(true) {
            self.done = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_are_read_once_and_a_long_line_is_dropped() {
        let mut s = Scanner::default();
        assert!(!s.push(b"{\"response\":"));
        assert!(s.push(b"\"a\",\"done\":false}\n{\"done\":true,\"eval_count\":"));
        assert!(!s.done);
        s.push(b"3,\"load_duration\":2000000}\n");
        assert!(s.done);
        assert_eq!(s.output_tokens, Some(3));
        assert_eq!(s.load_duration_ms, Some(2.0));

        let mut s = Scanner::default();
        let big = vec![b'x'; 1 << 20];
        for _ in 0..9 {
            s.push(&big);
        }
        assert!(s.over_limit);
        assert!(s.buf.is_empty(), "nothing is kept of an over-long line");
        s.push(b"tail\n{\"done\":true}\n");
        assert!(s.done, "the next line is read again");
    }
}
