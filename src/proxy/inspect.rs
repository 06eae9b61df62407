//! What a passing request asks of the model, read from its body without changing it:
//! the endpoint kind, the model, the keep_alive as sent and where it was placed (top
//! level, inside `options`, on `/v1` where it is dropped: KA1, H9), the `num_ctx` and
//! the other load options (L5), whether it is a control call (an empty prompt that
//! only loads or unloads the model: M7, E6), and the pains worth a warning.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::traffic::Kind;

/// Load options that make a resident model reload when they change (L5).
pub const LOAD_OPTIONS: [&str; 6] = [
    "num_ctx",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "use_mmap",
    "num_thread",
];

/// Where a request put its keep_alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// None sent.
    Absent,
    /// Top level, where Ollama reads it.
    Top,
    /// Inside `options`, ignored (KA1).
    Options,
    /// On an OpenAI-compatible `/v1` endpoint, dropped (H9).
    V1Dropped,
}

impl Placement {
    /// The log column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Absent => "absent",
            Placement::Top => "top",
            Placement::Options => "options",
            Placement::V1Dropped => "v1_dropped",
        }
    }
}

/// A pain seen in a request or its outcome, warned about once per proxy run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pain {
    /// keep_alive inside `options` (ignored).
    KeepAliveInOptions,
    /// The string `"-1"` (a 400).
    StringMinusOne,
    /// keep_alive on `/v1` (dropped).
    KeepAliveOnV1,
    /// A reload caused by a load option change.
    OptionReload,
    /// A model evicted by another before its keep_alive ran out.
    Evicted,
    /// Ollama could not be reached (the client got a 502).
    UpstreamDown,
    /// `/api/ps` answered more than the proxy reads.
    PsTooLarge,
    /// A request came back to this proxy: the upstream forwards to it.
    Loop,
}

impl Pain {
    /// The id used in logs and metrics.
    pub fn key(self) -> &'static str {
        match self {
            Pain::KeepAliveInOptions => "keep_alive_in_options",
            Pain::StringMinusOne => "keep_alive_string_minus_one",
            Pain::KeepAliveOnV1 => "keep_alive_on_v1",
            Pain::OptionReload => "option_change_reload",
            Pain::Evicted => "evicted_by_another_model",
            Pain::UpstreamDown => "upstream_unreachable",
            Pain::PsTooLarge => "ps_reply_over_limit",
            Pain::Loop => "forwarding_loop",
        }
    }

    /// The warning printed the first time.
    pub fn warning(self) -> &'static str {
        match self {
            Pain::KeepAliveInOptions => {
                "a client put keep_alive inside \"options\", where Ollama ignores it (KA1): move it to the top level of the body"
            }
            Pain::StringMinusOne => {
                "a client sent keep_alive as the string \"-1\", which Ollama rejects with 400 (KA4): send the number -1"
            }
            Pain::KeepAliveOnV1 => {
                "a client sent keep_alive to an OpenAI-compatible /v1 endpoint, which drops it (H9): set OLLAMA_KEEP_ALIVE on the server"
            }
            Pain::OptionReload => {
                "a model reloaded because a client asked for another num_ctx or load option (L5, L6): send one num_ctx from every client"
            }
            Pain::Evicted => {
                "a model was loaded again before its keep_alive ran out after another model was loaded (E3-E5): memory or OLLAMA_MAX_LOADED_MODELS is the limit, not keep_alive"
            }
            Pain::UpstreamDown => {
                "Ollama could not be reached: clients get 502 {\"error\": …} until it answers (each is logged)"
            }
            Pain::PsTooLarge => {
                "Ollama's /api/ps reply is over the proxy's 4 MiB limit: the resident-model gauges and vram.csv are unavailable while it is"
            }
            Pain::Loop => {
                "a request came back to this proxy (its X-Kabench-Proxy-Hops header holds this proxy's id): the upstream forwards to the proxy; clients get 508 until --upstream names the Ollama itself"
            }
        }
    }
}

/// What the proxy read from one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspected {
    /// `generate`, `chat`, `embed`, `embeddings`, `v1_chat`, `v1_completions`,
    /// `v1_embeddings`, or `other`.
    pub endpoint: &'static str,
    /// The model named, if any.
    pub model: Option<String>,
    /// keep_alive as sent (JSON text), empty when absent.
    pub keep_alive: String,
    /// The keep_alive the server applies, written as Ollama takes it (`5m`, `300`,
    /// `-1`): a valid top-level one on a native endpoint, else `None`.
    pub applied: Option<String>,
    /// Where it was.
    pub placement: Placement,
    /// `num_ctx` asked, if any.
    pub num_ctx: Option<i64>,
    /// Every load option sent (`num_ctx` included), as JSON.
    pub load_options: Map<String, Value>,
    /// The body is not JSON (or not an object) on an endpoint that takes JSON.
    pub malformed: bool,
    /// Pains this request shows by itself.
    pub pains: Vec<Pain>,
    /// A native endpoint whose keep_alive the server reads.
    pub native: bool,
    /// What it asks: an answer, or (an empty prompt on a native endpoint) a load or an
    /// unload.
    pub kind: Kind,
}

/// The endpoint kind of `path`.
pub fn endpoint(path: &str) -> &'static str {
    match path {
        "/api/generate" => "generate",
        "/api/chat" => "chat",
        "/api/embed" => "embed",
        "/api/embeddings" => "embeddings",
        "/v1/chat/completions" => "v1_chat",
        "/v1/completions" => "v1_completions",
        "/v1/embeddings" => "v1_embeddings",
        _ => "other",
    }
}

/// Reads `body` sent to `path`.
pub fn inspect(path: &str, body: &[u8]) -> Inspected {
    let endpoint = endpoint(path);
    let native = matches!(endpoint, "generate" | "chat" | "embed" | "embeddings");
    let v1 = endpoint.starts_with("v1_");
    let mut out = Inspected {
        endpoint,
        model: None,
        keep_alive: String::new(),
        applied: None,
        placement: Placement::Absent,
        num_ctx: None,
        load_options: Map::new(),
        malformed: false,
        pains: Vec::new(),
        native,
        kind: Kind::Serve,
    };
    if endpoint == "other" {
        return out;
    }
    // The top level's values stay unparsed slices of the body: a 100 MB image is
    // looked at, not copied.
    let Ok(raw) = serde_json::from_slice::<Raw<'_>>(body) else {
        out.malformed = true;
        return out;
    };
    let obj = small_fields(&raw);
    out.model = obj.get("model").and_then(Value::as_str).map(str::to_string);
    let options = obj.get("options").and_then(Value::as_object);
    let top = obj.get("keep_alive").filter(|v| !v.is_null());
    let inside = options
        .and_then(|o| o.get("keep_alive"))
        .filter(|v| !v.is_null());
    if let Some(k) = top {
        out.keep_alive = k.to_string();
        out.placement = if v1 {
            Placement::V1Dropped
        } else {
            Placement::Top
        };
    } else if let Some(k) = inside {
        out.keep_alive = k.to_string();
        out.placement = if v1 {
            Placement::V1Dropped
        } else {
            Placement::Options
        };
    }
    match out.placement {
        Placement::Options => out.pains.push(Pain::KeepAliveInOptions),
        Placement::V1Dropped => out.pains.push(Pain::KeepAliveOnV1),
        _ => {}
    }
    if native && top.is_some_and(|k| k.as_str().is_some_and(|s| s.trim() == "-1")) {
        out.pains.push(Pain::StringMinusOne);
    }
    if native
        && let Some(k) = top
        && let Ok(Some(ka)) = crate::units::KeepAlive::from_json(k)
    {
        out.applied = Some(ka.written().to_string());
    }
    if let Some(o) = options {
        for key in LOAD_OPTIONS {
            if let Some(v) = o.get(key) {
                out.load_options.insert(key.to_string(), v.clone());
            }
        }
    }
    out.kind = control_kind(endpoint, &raw, out.applied.as_deref());
    if !v1 {
        out.num_ctx = out.load_options.get("num_ctx").and_then(Value::as_i64);
    } else {
        // Dropped on /v1 (H9): the request asks for the default.
        out.load_options.clear();
    }
    out
}

/// A native request with nothing to answer, as Ollama reads it: `generate` without a
/// prompt or images, `chat` without messages (an unload with keep_alive 0, else a
/// load: E6, M7), `embed` without input (a load, whatever its keep_alive).
fn control_kind(endpoint: &str, obj: &Raw<'_>, applied: Option<&str>) -> Kind {
    let none = |key: &str| obj.get(key).is_none_or(|v| empty(v));
    let empty = match endpoint {
        "generate" => none("prompt") && none("images"),
        "chat" => none("messages"),
        "embed" => {
            return if none("input") {
                Kind::Load
            } else {
                Kind::Serve
            };
        }
        _ => false,
    };
    let zero = applied
        .and_then(|k| crate::units::KeepAlive::parse(k).ok())
        .is_some_and(|k| k.is_zero());
    match (empty, zero) {
        (false, _) => Kind::Serve,
        (true, true) => Kind::Unload,
        (true, false) => Kind::Load,
    }
}

/// A JSON object's members, their values unparsed slices of the text (the last of a
/// repeated key wins, as in Ollama).
type Raw<'a> = BTreeMap<String, &'a RawValue>;

/// The members [`inspect`] reads, parsed: `model`, `keep_alive`, `options`.
fn small_fields(raw: &Raw<'_>) -> Map<String, Value> {
    let mut out = Map::new();
    for key in ["model", "keep_alive", "options"] {
        if let Some(v) = raw.get(key)
            && let Ok(v) = serde_json::from_str::<Value>(v.get())
        {
            out.insert(key.into(), v);
        }
    }
    out
}

/// `null`, `""` or `[]` (what Ollama reads as absent).
fn empty(v: &RawValue) -> bool {
    let t = v.get().trim();
    if t == "null" || t == "\"\"" {
        return true;
    }
    t.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .is_some_and(|inner| inner.trim().is_empty())
}

/// `body` with its top-level keep_alive set to `keep_alive` (and none left inside
/// `options`), the other members copied as they were; `None` when the body is not a
/// JSON object.
pub fn rewrite_keep_alive(body: &[u8], keep_alive: &Value) -> Option<Vec<u8>> {
    let mut obj = serde_json::from_slice::<Raw<'_>>(body).ok()?;
    let ka = serde_json::value::to_raw_value(keep_alive).ok()?;
    obj.insert("keep_alive".into(), &ka);
    let options: Option<Box<RawValue>> = match obj.get("options") {
        Some(o) => match serde_json::from_str::<Raw<'_>>(o.get()) {
            Ok(mut inner) => {
                inner.remove("keep_alive");
                serde_json::value::to_raw_value(&inner).ok()
            }
            Err(_) => None,
        },
        None => None,
    };
    if let Some(o) = &options {
        obj.insert("options".into(), o);
    }
    let mut out = Vec::with_capacity(body.len() + 32);
    serde_json::to_writer(&mut out, &obj).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ka1_ka4_h9_placements_and_pains() {
        let i = inspect(
            "/api/generate",
            br#"{"model":"m","prompt":"x","options":{"keep_alive":"1h","num_ctx":2048,"temperature":0}}"#,
        );
        assert_eq!(i.placement, Placement::Options);
        assert_eq!(i.keep_alive, r#""1h""#);
        assert_eq!(i.pains, vec![Pain::KeepAliveInOptions]);
        assert_eq!(i.num_ctx, Some(2048));
        assert_eq!(
            i.load_options.len(),
            1,
            "sampling options are not load options"
        );
        let i = inspect("/api/chat", br#"{"model":"m","keep_alive":"-1"}"#);
        assert_eq!(i.placement, Placement::Top);
        assert_eq!(i.pains, vec![Pain::StringMinusOne]);
        let i = inspect("/api/chat", br#"{"model":"m","keep_alive":-1}"#);
        assert!(i.pains.is_empty());
        assert_eq!(i.keep_alive, "-1");
        let i = inspect(
            "/v1/chat/completions",
            br#"{"model":"m","keep_alive":"5m","options":{"num_ctx":9}}"#,
        );
        assert_eq!(i.placement, Placement::V1Dropped);
        assert_eq!(i.pains, vec![Pain::KeepAliveOnV1]);
        assert_eq!(i.num_ctx, None);
        let i = inspect("/api/generate", b"{not json");
        assert!(i.malformed);
        assert!(!inspect("/api/tags", b"").malformed);
    }

    #[test]
    fn an_empty_prompt_is_a_load_or_with_keep_alive_0_an_unload() {
        let kind = |path: &str, body: &str| inspect(path, body.as_bytes()).kind;
        assert_eq!(kind("/api/generate", r#"{"model":"m"}"#), Kind::Load);
        assert_eq!(
            kind(
                "/api/generate",
                r#"{"model":"m","prompt":"","keep_alive":0}"#
            ),
            Kind::Unload
        );
        assert_eq!(
            kind("/api/generate", r#"{"model":"m","keep_alive":"0s"}"#),
            Kind::Unload
        );
        assert_eq!(
            kind("/api/generate", r#"{"model":"m","keep_alive":"5m"}"#),
            Kind::Load
        );
        assert_eq!(
            kind(
                "/api/generate",
                r#"{"model":"m","prompt":"x","keep_alive":0}"#
            ),
            Kind::Serve
        );
        assert_eq!(
            kind("/api/generate", r#"{"model":"m","images":["aGk="]}"#),
            Kind::Serve
        );
        // keep_alive 0 inside options is ignored (KA1): a load.
        assert_eq!(
            kind(
                "/api/chat",
                r#"{"model":"m","messages":[],"options":{"keep_alive":0}}"#
            ),
            Kind::Load
        );
        assert_eq!(
            kind("/api/chat", r#"{"model":"m","keep_alive":0}"#),
            Kind::Unload
        );
        assert_eq!(
            kind(
                "/api/chat",
                r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#
            ),
            Kind::Serve
        );
        assert_eq!(
            kind("/api/embed", r#"{"model":"m","keep_alive":0}"#),
            Kind::Load
        );
        assert_eq!(
            kind("/api/embed", r#"{"model":"m","input":"x"}"#),
            Kind::Serve
        );
        // /v1 has no empty-prompt form.
        assert_eq!(
            kind("/v1/chat/completions", r#"{"model":"m","messages":[]}"#),
            Kind::Serve
        );
    }

    #[test]
    fn rewriting_sets_the_top_level_keep_alive_only() {
        let out = rewrite_keep_alive(
            br#"{"model":"m","options":{"keep_alive":"1h","num_ctx":1}}"#,
            &serde_json::json!("10m"),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["keep_alive"], "10m");
        assert!(v["options"].get("keep_alive").is_none());
        assert_eq!(v["options"]["num_ctx"], 1);
        assert!(rewrite_keep_alive(b"[1]", &Value::Null).is_none());
    }
}
