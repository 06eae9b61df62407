//! The incremental NDJSON decoder (a line may be split across pieces; a line over
//! its limit fails instead of buffering without end) and the whole-body parsers for
//! tests, benches and non-streamed replies.

use serde::de::DeserializeOwned;

use crate::ollama::api;
use crate::ollama::error::{ClientError, preview};
use crate::units::limits::MAX_LINE_BYTES;

/// Incremental NDJSON decoder: feed it body chunks as they arrive (a line may be split
/// across chunks), take complete objects out; `finish` reads a last line without `\n`.
/// A line longer than its limit ([`MAX_LINE_BYTES`] unless set) fails with
/// [`ClientError::BadJson`] naming the limit, as soon as that many bytes came without
/// a newline: a server streaming without end cannot make it buffer without end.
#[derive(Debug)]
pub struct NdjsonDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for `\n` (all of the partial line): each byte
    /// is searched once, so a long line arriving in small pieces stays linear.
    scanned: usize,
    /// The longest line accepted, bytes.
    limit: usize,
}

impl Default for NdjsonDecoder {
    fn default() -> Self {
        Self::with_limit(MAX_LINE_BYTES)
    }
}

/// The error of a line over `limit` bytes.
fn line_too_long(limit: usize) -> ClientError {
    ClientError::BadJson(format!(
        "stream line longer than {limit} bytes (the line limit) without a newline; the server's reply is not NDJSON kabench can read"
    ))
}

impl NdjsonDecoder {
    /// An empty decoder, lines bounded at [`MAX_LINE_BYTES`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty decoder, lines bounded at `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        NdjsonDecoder {
            buf: Vec::new(),
            scanned: 0,
            limit,
        }
    }

    /// Appends `bytes` and returns every complete line decoded as `T` (blank lines skipped).
    pub fn push<T: DeserializeOwned>(&mut self, bytes: &[u8]) -> Result<Vec<T>, ClientError> {
        let mut out = Vec::new();
        self.push_each(bytes, |v| {
            out.push(v);
            Ok(())
        })?;
        Ok(out)
    }

    /// Appends `bytes` and hands every complete line, decoded as `T`, to `each` in order
    /// (blank lines skipped), without collecting them. When nothing is pending from an
    /// earlier piece (the usual case: a server writes whole lines), lines are decoded
    /// in place and only a partial last line is kept.
    pub fn push_each<T: DeserializeOwned>(
        &mut self,
        bytes: &[u8],
        mut each: impl FnMut(T) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        if self.buf.is_empty() {
            let mut start = 0;
            while let Some(pos) = bytes[start..].iter().position(|&b| b == b'\n') {
                let line = &bytes[start..start + pos];
                start += pos + 1;
                if line.len() > self.limit {
                    return Err(line_too_long(self.limit));
                }
                if let Some(v) = decode_line(line)? {
                    each(v)?;
                }
            }
            if bytes.len() - start > self.limit {
                return Err(line_too_long(self.limit));
            }
            self.buf.extend_from_slice(&bytes[start..]);
            self.scanned = self.buf.len();
            return Ok(());
        }
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(pos) = self.buf[from..].iter().position(|&b| b == b'\n') {
            let end = from + pos;
            let line = &self.buf[start..end];
            start = end + 1;
            from = start;
            if line.len() > self.limit {
                return Err(self.fail());
            }
            if let Some(v) = decode_line(line)? {
                each(v)?;
            }
        }
        if self.buf.len() - start > self.limit {
            return Err(self.fail());
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        Ok(())
    }

    /// Drops what is buffered (the line over the limit) and gives the error.
    fn fail(&mut self) -> ClientError {
        self.buf = Vec::new();
        self.scanned = 0;
        line_too_long(self.limit)
    }

    /// Decodes what is left after the last `\n`, if anything.
    pub fn finish<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ClientError> {
        let rest = std::mem::take(&mut self.buf);
        self.scanned = 0;
        decode_line(&rest)
    }
}

fn decode_line<T: DeserializeOwned>(line: &[u8]) -> Result<Option<T>, ClientError> {
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    serde_json::from_slice(line)
        .map(Some)
        .map_err(|e| ClientError::BadJson(format!("{e}: {}", preview(line))))
}

/// Decodes a whole body of JSON objects: NDJSON, one object, or concatenated
/// (pretty-printed) objects. For tests, benches and non-streamed replies.
pub fn parse_json_stream<T: DeserializeOwned>(bytes: &[u8]) -> Result<Vec<T>, ClientError> {
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<T>()
        .map(|r| r.map_err(|e| ClientError::BadJson(format!("{e}: {}", preview(bytes)))))
        .collect()
}

/// Decodes a whole generate/chat body into chunks (see `parse_json_stream`).
pub fn parse_ndjson_body(bytes: &[u8]) -> Result<Vec<api::StreamChunk>, ClientError> {
    parse_json_stream(bytes)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::ollama::ErrorKind;

    #[test]
    fn decoder_handles_split_lines_and_a_last_line_without_newline() {
        let body = b"{\"response\":\"a\",\"done\":false}\n{\"response\":\"b\",\"done\":false}\n\n{\"response\":\"\",\"done\":true,\"eval_count\":2}";
        for split in 0..body.len() {
            let mut d = NdjsonDecoder::new();
            let mut got: Vec<api::StreamChunk> = d.push(&body[..split]).unwrap();
            got.extend(d.push::<api::StreamChunk>(&body[split..]).unwrap());
            got.extend(d.finish::<api::StreamChunk>().unwrap());
            assert_eq!(got.len(), 3, "split at {split}");
            assert_eq!(got[1].response.as_deref(), Some("b"));
            assert!(got[2].done);
            assert_eq!(got[2].metrics.eval_count, Some(2));
        }
    }

    #[test]
    fn decoder_is_linear_on_a_long_line_arriving_byte_by_byte() {
        // 200 000 one-byte pieces of one line: searching the whole buffer on each push
        // is 2·10¹⁰ byte checks (minutes); searching only new bytes is instant.
        let text = "x".repeat(200_000);
        let line = format!("{{\"response\":\"{text}\",\"done\":false}}\n");
        let mut d = NdjsonDecoder::new();
        let started = Instant::now();
        let mut got: Vec<api::StreamChunk> = Vec::new();
        for b in line.as_bytes().chunks(1) {
            got.extend(d.push::<api::StreamChunk>(b).unwrap());
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].response.as_deref().map(str::len), Some(200_000));
        // And the lines after it still split where they should.
        let more: Vec<api::StreamChunk> = d
            .push(b"{\"response\":\"a\",\"done\":false}\n{\"done\":true}\n")
            .unwrap();
        assert_eq!(more.len(), 2);
    }

    #[test]
    fn decoder_refuses_a_line_over_its_limit_whole_or_in_pieces() {
        // In one piece, without a newline.
        let mut d = NdjsonDecoder::with_limit(16);
        let err = d.push::<api::StreamChunk>(&[b'x'; 17]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadJson);
        assert!(err.to_string().contains("longer than 16 bytes"), "{err}");
        // In small pieces: fails once the limit is passed, buffering no more than it.
        let mut d = NdjsonDecoder::with_limit(16);
        let mut failed = None;
        for n in 0..100 {
            if let Err(e) = d.push::<api::StreamChunk>(b"xxxx") {
                failed = Some(n);
                assert!(e.to_string().contains("line limit"), "{e}");
                break;
            }
        }
        assert_eq!(failed, Some(4));
        // A whole line over the limit, newline included, in one piece or after a partial one.
        let long = format!("{{\"response\":\"{}\"}}\n", "y".repeat(20));
        assert!(
            NdjsonDecoder::with_limit(16)
                .push::<api::StreamChunk>(long.as_bytes())
                .is_err()
        );
        let mut d = NdjsonDecoder::with_limit(16);
        d.push::<api::StreamChunk>(&long.as_bytes()[..4]).unwrap();
        assert!(d.push::<api::StreamChunk>(&long.as_bytes()[4..]).is_err());
        // Lines at the limit pass.
        let ok = b"{\"done\":true}\n";
        let got: Vec<api::StreamChunk> = NdjsonDecoder::with_limit(13).push(ok).unwrap();
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn decoder_reports_bad_lines() {
        let mut d = NdjsonDecoder::new();
        let err = d.push::<api::StreamChunk>(b"{\"done\":tru\n").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadJson);
    }
}
