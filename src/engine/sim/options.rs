//! A request's `options` read as Ollama v0.32.15 reads them (`api.Options.FromMap`,
//! H4): each known key checked against its Go type, unknown keys ignored, `null`
//! skipped. A JSON number fills an integer option truncated toward zero (`1.5` → 1,
//! a number past int64 → `i64::MIN`, as Go's conversion on amd64 gives), so
//! `num_ctx: 1.5` and `num_predict: 1.7` are answered 200; a value of the wrong type is
//! 500 `option "NAME" must be of type …` (`temperature: "hot"`).

use serde_json::{Map, Value};

use super::wire::SimError;
use crate::units::go_int64;

/// The Go type of one option field of `api.Options` (and its embedded `api.Runner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `int`: any JSON number, truncated.
    Int,
    /// `float32`: any JSON number.
    Float,
    /// `*bool`: a JSON boolean.
    Bool,
    /// `[]string`: an array of strings.
    Strings,
}

/// The options Ollama v0.32.15 knows, with their types; any other key is ignored (seen
/// on the real server: `tfs_z`, `mirostat`, `low_vram`, `penalize_newline` …).
const KNOWN: [(&str, Kind); 19] = [
    ("num_ctx", Kind::Int),
    ("num_batch", Kind::Int),
    ("num_gpu", Kind::Int),
    ("main_gpu", Kind::Int),
    ("use_mmap", Kind::Bool),
    ("num_thread", Kind::Int),
    ("num_keep", Kind::Int),
    ("seed", Kind::Int),
    ("num_predict", Kind::Int),
    ("top_k", Kind::Int),
    ("top_p", Kind::Float),
    ("min_p", Kind::Float),
    ("typical_p", Kind::Float),
    ("repeat_last_n", Kind::Int),
    ("temperature", Kind::Float),
    ("repeat_penalty", Kind::Float),
    ("presence_penalty", Kind::Float),
    ("frequency_penalty", Kind::Float),
    ("stop", Kind::Strings),
];

/// The smallest context Ollama gives a model: a `num_ctx` under it is raised to it
/// (seen on the real server: `num_ctx` 1.5, 0, -5 and 1e30 all give
/// `context_length` 4).
pub const MIN_NUM_CTX: i64 = 4;

/// What the simulator uses of a request's options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReqOptions {
    /// `num_ctx` as Ollama holds it (truncated, not yet clamped).
    pub num_ctx: Option<i64>,
    /// `num_predict` as Ollama holds it; zero or negative means no limit.
    pub num_predict: Option<i64>,
}

impl ReqOptions {
    /// `num_ctx` for the scheduler: raised to [`MIN_NUM_CTX`], capped at `u32::MAX`
    /// (the training context caps it further).
    pub fn context(&self) -> Option<u32> {
        self.num_ctx
            .map(|n| n.clamp(MIN_NUM_CTX, i64::from(u32::MAX)) as u32)
    }
}

/// Checks `options` as Ollama does and returns what the simulator uses. Keys are
/// checked in name order (Go's map order is random: with two bad options either
/// error may come back from the real server).
pub fn read(options: Option<&Map<String, Value>>) -> Result<ReqOptions, SimError> {
    let mut out = ReqOptions::default();
    let Some(options) = options else {
        return Ok(out);
    };
    let mut keys: Vec<&String> = options.keys().collect();
    keys.sort();
    for key in keys {
        let Some(&(_, kind)) = KNOWN.iter().find(|(k, _)| k == key) else {
            continue;
        };
        let value = &options[key];
        if value.is_null() {
            continue;
        }
        let wrong = |what: &str| SimError::internal(format!("option \"{key}\" must be of {what}"));
        match kind {
            Kind::Int => {
                let n = match value {
                    Value::Number(n) => n
                        .as_i64()
                        .unwrap_or_else(|| go_int64(n.as_f64().unwrap_or(f64::NAN))),
                    _ => return Err(wrong("type integer")),
                };
                match key.as_str() {
                    "num_ctx" => out.num_ctx = Some(n),
                    "num_predict" => out.num_predict = Some(n),
                    _ => {}
                }
            }
            Kind::Float if !value.is_number() => return Err(wrong("type float32")),
            Kind::Bool if !value.is_boolean() => return Err(wrong("type boolean")),
            Kind::Strings => match value {
                Value::Array(items) if items.iter().all(Value::is_string) => {}
                Value::Array(_) => return Err(wrong("an array of strings")),
                _ => return Err(wrong("type array")),
            },
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use serde_json::json;

    fn opts(v: Value) -> Result<ReqOptions, SimError> {
        read(v.as_object())
    }

    fn message(v: Value) -> String {
        let e = opts(v).unwrap_err();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        e.message
    }

    #[test]
    fn h4_numbers_fill_integer_options_truncated_as_go_does() {
        // The real server answered each of these 200.
        let o = opts(json!({"num_ctx": 1.5, "num_predict": 1.7})).unwrap();
        assert_eq!((o.num_ctx, o.num_predict), (Some(1), Some(1)));
        assert_eq!(
            o.context(),
            Some(4),
            "raised to the minimum, as context_length 4"
        );
        let o = opts(json!({"num_ctx": 4096.9, "seed": 1.5, "num_thread": 2.5})).unwrap();
        assert_eq!(o.context(), Some(4096));
        let o = opts(json!({"num_ctx": 1e30})).unwrap();
        assert_eq!((o.num_ctx, o.context()), (Some(i64::MIN), Some(4)));
        for n in [json!(0), json!(-5)] {
            assert_eq!(opts(json!({ "num_ctx": n })).unwrap().context(), Some(4));
        }
        let o = opts(json!({"num_ctx": null, "temperature": null, "stop": null})).unwrap();
        assert_eq!(o, ReqOptions::default());
        let o = opts(json!({"temperature": 1, "top_p": 0.5, "use_mmap": false, "stop": ["a"]}));
        assert!(o.is_ok());
    }

    #[test]
    fn h4_a_value_of_the_wrong_type_is_500_with_ollamas_text() {
        // Each message as the real server wrote it.
        assert_eq!(
            message(json!({"temperature": "hot"})),
            "option \"temperature\" must be of type float32"
        );
        assert_eq!(
            message(json!({"temperature": true})),
            "option \"temperature\" must be of type float32"
        );
        assert_eq!(
            message(json!({"num_ctx": "4096"})),
            "option \"num_ctx\" must be of type integer"
        );
        assert_eq!(
            message(json!({"top_k": "5"})),
            "option \"top_k\" must be of type integer"
        );
        assert_eq!(
            message(json!({"use_mmap": "yes"})),
            "option \"use_mmap\" must be of type boolean"
        );
        assert_eq!(
            message(json!({"stop": "x"})),
            "option \"stop\" must be of type array"
        );
        assert_eq!(
            message(json!({"stop": ["a", 1]})),
            "option \"stop\" must be of an array of strings"
        );
    }

    #[test]
    fn h4_unknown_options_are_ignored() {
        for key in ["tfs_z", "mirostat", "low_vram", "penalize_newline", "bogus"] {
            let mut m = Map::new();
            m.insert(key.into(), json!("x"));
            assert_eq!(read(Some(&m)).unwrap(), ReqOptions::default(), "{key}");
        }
    }
}
