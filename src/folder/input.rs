//! Reading a run folder's files as input that may have been crafted: only regular files
//! are opened (a FIFO or a device where `requests.csv` should be would block or never
//! end), every line is bounded ([`LineBounded`]), and every name read from a file is
//! checked by [`file_name`] before it becomes a file name, so no name can point outside
//! the folder. Errors are bad input (exit 2) and name the file and the limit it broke.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

use anyhow::Result;

use crate::units::ParseError;
use crate::units::limits::{LineBounded, MAX_LINE_BYTES, excerpt};

/// The longest name (a cell id, a stream name) that becomes a file or folder name, in
/// bytes: well under every file system's limit on one path component (255).
pub const MAX_NAME_BYTES: usize = 128;

/// `name` as one path component inside a run folder, or why it cannot be one: empty,
/// `.` or `..`, over [`MAX_NAME_BYTES`], or holding `/`, `\`, `:` or a control
/// character. `what` names the field in the message (e.g. `requests.csv line 3, cell`).
/// The one check every place a name read from input becomes a file name goes through.
pub fn file_name<'a>(name: &'a str, what: &str) -> Result<&'a str, ParseError> {
    let why = if name.is_empty() {
        Some("it is empty".to_string())
    } else if name == "." || name == ".." {
        Some("it names a folder itself".to_string())
    } else if name.len() > MAX_NAME_BYTES {
        Some(format!(
            "it is {} bytes, over the limit of {MAX_NAME_BYTES}",
            name.len()
        ))
    } else {
        name.chars()
            .find(|c| matches!(c, '/' | '\\' | ':') || c.is_control() || is_separator_like(*c))
            .map(|c| format!("it holds {}", c.escape_default()))
    };
    match why {
        None => Ok(name),
        Some(why) => Err(ParseError::new(format!(
            "{what}: \"{}\" cannot be a file name ({why}); a name must be 1 to {MAX_NAME_BYTES} bytes, not `.` or `..`, without `/`, `\\`, `:` or control characters",
            excerpt(name)
        ))),
    }
}

fn is_separator_like(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}' | '\u{feff}')
}

/// Opens `path` for reading when it is a regular file (a link to one included); a
/// FIFO, socket, device or folder is refused before it is opened, so a read never
/// blocks on it.
pub fn open_regular(path: &Path) -> Result<File> {
    let meta = fs::metadata(path)
        .map_err(|e| anyhow::anyhow!(e).context(format!("reading {}", path.display())))?;
    if !meta.is_file() {
        return Err(ParseError::new(format!(
            "{} is not a regular file (a FIFO, socket, device or folder); kabench reads only regular files there: replace it with the file a run wrote",
            path.display()
        ))
        .into());
    }
    File::open(path).map_err(|e| anyhow::anyhow!(e).context(format!("reading {}", path.display())))
}

/// The largest whole text file read at once (`run.json`, `scenario.toml`): 64 MiB.
pub const MAX_TEXT_BYTES: u64 = 64 << 20;

/// The text of a regular file, refused (bad input) when it is over [`MAX_TEXT_BYTES`],
/// a line runs over [`MAX_LINE_BYTES`] or it is not UTF-8: `run.json`, `scenario.toml`.
pub fn read_text(path: &Path) -> Result<String> {
    let mut reader = LineBounded::new(open_regular(path)?.take(MAX_TEXT_BYTES + 1));
    let mut text = String::new();
    reader
        .read_to_string(&mut text)
        .map_err(|e| bad_read(path, e))?;
    if text.len() as u64 > MAX_TEXT_BYTES {
        return Err(ParseError::new(format!(
            "{} is over {MAX_TEXT_BYTES} bytes, the limit on a run folder's text file",
            path.display()
        ))
        .into());
    }
    Ok(text)
}

/// A read error of an input file: bad input (exit 2) when the content broke a limit or
/// is not text (`InvalidData`), the system's error otherwise.
pub fn bad_read(path: &Path, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::InvalidData {
        ParseError::new(format!(
            "{}: {e} (lines are limited to {MAX_LINE_BYTES} bytes)",
            path.display()
        ))
        .into()
    } else {
        anyhow::anyhow!(e).context(format!("reading {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_become_file_names() {
        for ok in ["c01-ka_0", "chat", "tiny 1b", "c0"] {
            assert_eq!(file_name(ok, "cell").unwrap(), ok);
        }
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        for bad in [
            "", ".", "..", "/etc", "../../x", "a/b", "a\\b", "c:", "a\0b", "a\nb", &long,
        ] {
            let err = file_name(bad, "requests.csv line 2, cell").unwrap_err();
            assert!(
                err.message.starts_with("requests.csv line 2, cell: "),
                "{}",
                err.message
            );
        }
        let err = file_name(&"y".repeat(10_000), "stream").unwrap_err();
        assert!(err.message.len() < 400, "{}", err.message);
        assert!(
            err.message.contains("over the limit of 128"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_line_over_the_limit_is_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        std::fs::write(&path, "x".repeat(MAX_LINE_BYTES + 10)).unwrap();
        let err = read_text(&path).unwrap_err();
        assert!(err.downcast_ref::<ParseError>().is_some(), "{err:#}");
        assert!(format!("{err:#}").contains("run.json"), "{err:#}");
        let err = open_regular(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
    }
}
