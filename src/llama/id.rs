//! Model ids kabench writes into a router preset or a llama-swap config and reads
//! back from their logs: a closed character set, so an id can never end a section
//! header, start a comment, break a YAML key or hide inside a log line's delimiters.

use crate::units::limits::excerpt;

/// The longest model id accepted (characters).
pub const MAX_ID_CHARS: usize = 128;

/// An id is 1 to [`MAX_ID_CHARS`] characters of `A-Z a-z 0-9 . _ - + : @`, not starting
/// with `.` or `-`. The router takes its ids from GGUF file names (`tiny-50m.gguf` is
/// `tiny-50m`) and llama-swap from its config keys; both also appear in their logs as
/// `name=ID` or `<ID>`, which these characters keep unambiguous.
pub fn check_model_id(id: &str) -> Result<&str, String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-+:@".contains(c);
    if id.is_empty() {
        return Err("model id is empty".to_string());
    }
    if id.chars().count() > MAX_ID_CHARS {
        return Err(format!(
            "model id '{}' is longer than {MAX_ID_CHARS} characters",
            excerpt(id)
        ));
    }
    if id.starts_with(['.', '-']) || !id.chars().all(ok_char) {
        return Err(format!(
            "model id '{}' may use only letters, digits and . _ - + : @ (not first . or -), \
             as a GGUF file name or llama-swap model key; rename the model",
            excerpt(id)
        ));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_usual_ids() {
        for id in ["tiny-50m", "qwen2.5:0.5b", "Llama-3_8B+q4@v2", "a"] {
            assert_eq!(check_model_id(id), Ok(id));
        }
    }

    #[test]
    fn refuses_what_would_break_a_file_or_a_log_line() {
        for id in [
            "",
            "a]b",
            "a b",
            "a\nb",
            "[x]",
            "a;b",
            "a#b",
            "a=b",
            "a>b",
            "<a",
            "-x",
            ".x",
            "a/b",
            "a\"b",
            "a$b",
            "é",
            "a\u{2028}b",
        ] {
            let err = check_model_id(id).unwrap_err();
            assert!(err.contains("model id"), "{id:?}: {err}");
        }
        let long = "x".repeat(MAX_ID_CHARS + 1);
        assert!(
            check_model_id(&long)
                .unwrap_err()
                .contains("longer than 128")
        );
        assert!(check_model_id(&long[1..]).is_ok());
    }

    #[test]
    fn an_error_echoes_a_printable_excerpt() {
        let err = check_model_id("bad\u{1b}[31mred").unwrap_err();
        assert!(!err.contains('\u{1b}'), "{err}");
    }
}
