//! Limits on what kabench reads from files and servers, and the one checked way a
//! number read from input becomes a duration or a count. Every reader bounds the
//! length of a line; every count read from input is checked before anything is
//! allocated; every float that becomes a `Duration` goes through [`duration_from_secs`];
//! every name or field echoed to a terminal, a page or an error goes through
//! [`printable`] or [`excerpt`].

use std::borrow::Cow;
use std::io::{self, Read};
use std::time::Duration;

use super::ParseError;

/// The longest line any reader accepts (1 MiB): a CSV row, an NDJSON object, a log line.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The longest duration read from input (100 years): far beyond any real gap or
/// latency, well inside what `Duration` and the clocks can hold.
pub const MAX_INPUT_SECS: f64 = 100.0 * 365.25 * 86_400.0;

/// How many characters of an input field an error message echoes.
pub const EXCERPT_CHARS: usize = 80;

/// A number of seconds for a message: plain, or in exponent form when huge or tiny.
fn shown(secs: f64) -> String {
    if secs != 0.0 && !(1e-3..1e12).contains(&secs.abs()) {
        format!("{secs:e}")
    } else {
        format!("{secs}")
    }
}

/// Converts seconds read from input into a `Duration`, refusing NaN, negative,
/// infinite and absurd values (over [`MAX_INPUT_SECS`]) with a message naming `what`.
pub fn duration_from_secs(secs: f64, what: &str) -> Result<Duration, ParseError> {
    if !secs.is_finite() {
        return Err(ParseError::new(format!(
            "{what}: {} is not a finite number of seconds",
            shown(secs)
        )));
    }
    if secs < 0.0 {
        return Err(ParseError::new(format!(
            "{what}: {} s is negative",
            shown(secs)
        )));
    }
    if secs > MAX_INPUT_SECS {
        return Err(ParseError::new(format!(
            "{what}: {} s is over the limit of {MAX_INPUT_SECS} s (100 years)",
            shown(secs)
        )));
    }
    Duration::try_from_secs_f64(secs)
        .map_err(|e| ParseError::new(format!("{what}: {secs} s is not a duration ({e})")))
}

/// [`duration_from_secs`] for milliseconds.
pub fn duration_from_millis(ms: f64, what: &str) -> Result<Duration, ParseError> {
    duration_from_secs(ms / 1000.0, what)
}

/// Checks a count read from input (shards, payload bytes, requests, rows) against
/// `limit` before anything is allocated for it.
pub fn check_count(count: u64, limit: u64, what: &str) -> Result<u64, ParseError> {
    if count > limit {
        return Err(ParseError::new(format!(
            "{what}: {count} is over the limit of {limit}"
        )));
    }
    Ok(count)
}

/// `text` with every control character (ESC, NUL, newlines, U+2028…) escaped, so a
/// name read from a server or a file cannot move the terminal's cursor, end a line of
/// a generated file or hide in a page. Borrowed when there is nothing to escape.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// At most [`EXCERPT_CHARS`] characters of `text`, made [`printable`], with "…(N bytes)"
/// when cut: what an error message echoes of a field, however long the field.
pub fn excerpt(text: &str) -> String {
    let mut cut = text.len();
    for (n, (at, _)) in text.char_indices().enumerate() {
        if n == EXCERPT_CHARS {
            cut = at;
            break;
        }
    }
    let head = printable(&text[..cut]).into_owned();
    if cut < text.len() {
        format!("{head}…({} bytes)", text.len())
    } else {
        head
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}' | '\u{feff}')
}

/// A reader that fails, instead of buffering without end, once a line runs longer
/// than its limit without a newline. Wrap a file or socket in it before a
/// `BufReader`, a CSV reader or a line decoder.
#[derive(Debug)]
pub struct LineBounded<R> {
    inner: R,
    limit: usize,
    run: usize,
    over: bool,
}

impl<R> LineBounded<R> {
    /// Bounds lines at [`MAX_LINE_BYTES`].
    pub fn new(inner: R) -> Self {
        Self::with_limit(inner, MAX_LINE_BYTES)
    }

    /// Bounds lines at `limit` bytes.
    pub fn with_limit(inner: R, limit: usize) -> Self {
        LineBounded {
            inner,
            limit,
            run: 0,
            over: false,
        }
    }
}

impl<R: Read> Read for LineBounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.over {
            return Err(line_too_long(self.limit));
        }
        let n = self.inner.read(buf)?;
        for (at, &b) in buf[..n].iter().enumerate() {
            if b == b'\n' {
                self.run = 0;
            } else {
                self.run += 1;
                if self.run > self.limit {
                    // Hand over the whole lines before this one; fail on the next read.
                    self.over = true;
                    return if at == 0 {
                        Err(line_too_long(self.limit))
                    } else {
                        Ok(at)
                    };
                }
            }
        }
        Ok(n)
    }
}

/// The error a bounded reader gives for a line over `limit` bytes.
pub fn line_too_long(limit: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("a line is longer than {limit} bytes (the limit on one line of input)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    #[test]
    fn durations_from_input_are_checked() {
        assert_eq!(
            duration_from_secs(1.5, "x").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            duration_from_millis(250.0, "x").unwrap(),
            Duration::from_millis(250)
        );
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1e300, MAX_INPUT_SECS * 2.0] {
            let err = duration_from_secs(bad, "gap").unwrap_err();
            assert!(err.message.starts_with("gap: "), "{}", err.message);
        }
    }

    #[test]
    fn counts_over_the_limit_are_refused() {
        assert_eq!(check_count(3, 64, "shards").unwrap(), 3);
        let err = check_count(4_294_967_295, 64, "shards").unwrap_err();
        assert!(err.message.contains("limit of 64"), "{}", err.message);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(printable("llama3:8b"), Cow::Borrowed(_)));
        let shown = printable("a\u{1b}[2Jb\0c\u{2028}d");
        assert!(!shown.chars().any(needs_escape), "{shown}");
        assert!(shown.contains("\\u{1b}"), "{shown}");
    }

    #[test]
    fn excerpts_are_short() {
        let long = "x".repeat(300_000_000 / 1000);
        let shown = excerpt(&long);
        assert!(shown.chars().count() < EXCERPT_CHARS + 30, "{shown}");
        assert!(shown.ends_with("…(300000 bytes)"), "{shown}");
        assert_eq!(excerpt("short"), "short");
    }

    #[test]
    fn a_line_without_end_is_refused() {
        let input = format!("ok\n{}", "y".repeat(100));
        let mut lines = BufReader::new(LineBounded::with_limit(input.as_bytes(), 10)).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ok");
        let err = lines.next().unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("longer than 10 bytes"));
        let fine = "a\nbb\nccc\n".repeat(1000);
        let n = BufReader::new(LineBounded::with_limit(fine.as_bytes(), 3))
            .lines()
            .count();
        assert_eq!(n, 3000);
    }
}
