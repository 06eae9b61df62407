//! Where a key sits in a scenario's text: byte offsets to line:column, dotted key paths
//! (`stream[0].arrival.rate`) to spans and back, over the toml crate's spanned document
//! tree. Turns toml errors and our own findings into `ScenarioError`s. Knows nothing of
//! what the keys mean.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ScenarioError;

/// The scenario text with its spanned document tree, for locating keys.
pub(crate) struct Locator<'a> {
    text: &'a str,
    root: Spanned<DeTable<'a>>,
    path: &'a Path,
}

impl<'a> Locator<'a> {
    /// Parses `text` leniently: a syntax error leaves a partial tree, which is still
    /// good enough to name the keys before it.
    pub(crate) fn new(text: &'a str, path: &'a Path) -> Locator<'a> {
        let (root, _errors) = DeTable::parse_recoverable(text);
        Locator { text, root, path }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    /// The dotted path of the innermost key whose key or value covers `offset`.
    pub(crate) fn path_at(&self, offset: usize) -> Option<String> {
        let mut path = String::new();
        walk_table(self.root.get_ref(), offset, &mut path);
        (!path.is_empty()).then_some(path)
    }

    /// The span to point at for a dotted `key`: the value of the key when present,
    /// else the innermost table that exists on the way to it (a missing key is
    /// reported at the table that lacks it).
    pub(crate) fn span_of(&self, key: &str) -> Option<Range<usize>> {
        let mut best: Option<Range<usize>> = None;
        let mut table: Option<&DeTable<'a>> = Some(self.root.get_ref());
        for segment in key.split('.') {
            let (name, indices) = split_indices(segment);
            let Some(t) = table.take() else { break };
            let Some((k, v)) = t.get_key_value(name) else {
                break;
            };
            let mut current = v;
            best = Some(value_or_key_span(k, v));
            for index in indices {
                match current.get_ref() {
                    DeValue::Array(items) if index < items.len() => {
                        current = &items[index];
                        best = Some(current.span());
                    }
                    _ => return best,
                }
            }
            table = match current.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        best
    }

    /// An error at `key`, located by the document tree (line 1, column 1 when the
    /// key and every table on the way to it are absent).
    pub(crate) fn error_at(&self, key: &str, message: impl Into<String>) -> ScenarioError {
        let (line, column) = match self.span_of(key) {
            Some(span) => self.line_col(span.start),
            None => (1, 1),
        };
        ScenarioError {
            path: self.path.to_path_buf(),
            line: Some(line),
            column: Some(column),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    /// Converts a toml parse or deserialize error, naming the key its span falls in.
    pub(crate) fn toml_error(&self, error: &toml::de::Error) -> ScenarioError {
        let message = error.message().trim().to_string();
        let (line, column, key) = match error.span() {
            Some(span) => {
                let (line, column) = self.line_col(span.start);
                (
                    Some(line),
                    Some(column),
                    // A syntax error often sits just past its value (an unclosed
                    // string ends at the line's end): name the key before it then.
                    self.path_at(span.start)
                        .or_else(|| span.start.checked_sub(1).and_then(|o| self.path_at(o))),
                )
            }
            None => (None, None, None),
        };
        ScenarioError {
            path: self.path.to_path_buf(),
            line,
            column,
            key,
            message: with_hint(&message),
        }
    }
}

/// Adds what is allowed where the toml crate's message does not say it.
fn with_hint(message: &str) -> String {
    if !message.starts_with("invalid type") {
        return message.to_string();
    }
    let expected = message.rsplit("expected ").next().unwrap_or("");
    let hint = match expected {
        "i64" | "u64" | "u32" | "usize" => "write a whole number without quotes",
        "f64" => "write a number without quotes",
        "a boolean" => "write true or false",
        "a string" => "write the value in quotes",
        "a sequence" => "write a list, e.g. [\"a\", \"b\"]",
        "a string or a number" => "write e.g. \"30s\" or 30",
        _ => return message.to_string(),
    };
    format!("{message}; {hint}")
}

fn value_or_key_span(
    key: &Spanned<std::borrow::Cow<'_, str>>,
    value: &Spanned<DeValue<'_>>,
) -> Range<usize> {
    let v = value.span();
    // Tables opened by a `[header]` report the header; implicit ones may report an
    // empty span, in which case the key itself is the better place to point.
    if v.is_empty() { key.span() } else { v }
}

fn split_indices(segment: &str) -> (&str, Vec<usize>) {
    match segment.find('[') {
        None => (segment, Vec::new()),
        Some(open) => {
            let indices = segment[open..]
                .split(['[', ']'])
                .filter(|s| !s.is_empty())
                .filter_map(|s| s.parse().ok())
                .collect();
            (&segment[..open], indices)
        }
    }
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

fn walk_table(table: &DeTable<'_>, offset: usize, path: &mut String) -> bool {
    for (key, value) in table.iter() {
        let in_key = contains(&key.span(), offset);
        let in_value = contains(&value.span(), offset);
        let mut sub = String::new();
        let in_child = walk_value(value.get_ref(), offset, &mut sub);
        if in_key || in_value || in_child {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key.get_ref());
            path.push_str(&sub);
            return true;
        }
    }
    false
}

/// Appends `[i]` and `.key` parts for the innermost element containing `offset`.
fn walk_value(value: &DeValue<'_>, offset: usize, path: &mut String) -> bool {
    match value {
        DeValue::Table(t) => {
            let mut sub = String::new();
            if walk_table(t, offset, &mut sub) {
                path.push('.');
                path.push_str(&sub);
                return true;
            }
            false
        }
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let mut sub = String::new();
                let inside = walk_value(item.get_ref(), offset, &mut sub);
                if inside || contains(&item.span(), offset) {
                    path.push_str(&format!("[{i}]"));
                    path.push_str(&sub);
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}
