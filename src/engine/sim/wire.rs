//! Pure pieces of the simulator's HTTP face: Ollama's error responses (H1–H4), time
//! strings (`created_at` in UTC, `expires_at` in local time: P3), deterministic
//! token text and embedding vectors. No state, no scheduler.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use time::{OffsetDateTime, UtcOffset};

use crate::ollama::api;
use crate::rng::splitmix64;

/// An error answered the way Ollama answers it: a status and `{"error":"…"}` (H1).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct SimError {
    /// HTTP status.
    pub status: StatusCode,
    /// Ollama's error text.
    pub message: String,
}

impl SimError {
    /// An error with `status` and Ollama's `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        SimError {
            status,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 `model 'NAME' not found` (H3).
    pub fn model_not_found(name: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("model '{name}' not found"))
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for SimError {
    fn into_response(self) -> Response {
        let body = api::ErrorBody {
            error: self.message,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// The most bytes a request body may hold: Ollama reads bodies whole with no limit of
/// its own (a vision request carries base64 images of several MB); axum's default of
/// 2 MB would refuse them.
pub const MAX_BODY_BYTES: usize = 100 * 1024 * 1024;

/// A request body read whole; a body that cannot be read (past [`MAX_BODY_BYTES`], a
/// broken upload) is answered as Ollama answers errors, `{"error":…}` (H1).
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = SimError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, SimError> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| SimError::new(e.status(), e.body_text()))
    }
}

/// Decodes a JSON request body as Ollama does: empty → 400 `missing request body`,
/// malformed → 400 with the decoder's text.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, SimError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(SimError::bad_request("missing request body"));
    }
    serde_json::from_slice(body).map_err(|e| SimError::bad_request(e.to_string()))
}

/// RFC 3339 with fraction digits, trailing zeros trimmed (Go's `RFC3339Nano`), `Z`
/// for UTC, otherwise `±hh:mm` (P3).
pub fn rfc3339_trimmed(t: OffsetDateTime) -> String {
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos > 0 {
        let digits = format!("{nanos:09}");
        s.push('.');
        s.push_str(digits.trim_end_matches('0'));
    }
    let offset = t.offset();
    if offset.is_utc() {
        s.push('Z');
    } else {
        let total = offset.whole_seconds();
        let sign = if total < 0 { '-' } else { '+' };
        let abs = total.unsigned_abs();
        s.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, (abs % 3600) / 60));
    }
    s
}

/// `created_at` of a reply: now, UTC (M2).
pub fn created_at_now() -> String {
    rfc3339_trimmed(OffsetDateTime::now_utc())
}

/// The local UTC offset, or UTC when the platform cannot tell (the `time` crate refuses
/// to read it in some multi-threaded processes).
pub fn local_offset() -> UtcOffset {
    UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC)
}

/// Go's maximum duration (≈292 years): the `expires_at` horizon of a forever model (P4).
pub const FOREVER: Duration = Duration::from_nanos(i64::MAX as u64);

const WORDS: [&str; 24] = [
    "the",
    "model",
    "stays",
    "in",
    "memory",
    "while",
    "requests",
    "keep",
    "arriving",
    "and",
    "leaves",
    "when",
    "idle",
    "a",
    "cold",
    "start",
    "costs",
    "seconds",
    "warm",
    "ones",
    "cost",
    "milliseconds",
    "so",
    "tune",
];

/// Text of generated token `index` of a stream seeded by `seed`: one word, with a
/// leading space after the first token.
pub fn token_text(seed: u64, index: u32) -> String {
    let word = WORDS[(splitmix64(seed ^ u64::from(index)) % WORDS.len() as u64) as usize];
    if index == 0 {
        word.to_string()
    } else {
        format!(" {word}")
    }
}

/// A stable 64-bit hash of a text (FNV-1a), for seeding text and vectors.
pub fn text_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A deterministic unit-length embedding of `text` with `len` components.
pub fn embedding(text: &str, len: usize) -> Vec<f32> {
    let seed = text_hash(text);
    let mut v: Vec<f32> = (0..len as u64)
        .map(|i| {
            (splitmix64(seed ^ i.wrapping_mul(0x9e37)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// The inputs of an `/api/embed` body: a string or an array of strings (M8).
pub fn embed_inputs(input: Option<&Value>) -> Result<Vec<String>, SimError> {
    match input {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(SimError::bad_request("invalid input type")),
            })
            .collect(),
        Some(_) => Err(SimError::bad_request("invalid input type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(ymd: (i32, u8, u8), hms: (u8, u8, u8), nanos: u32, off: (i8, i8)) -> OffsetDateTime {
        let month = time::Month::try_from(ymd.1).unwrap();
        time::Date::from_calendar_date(ymd.0, month, ymd.2)
            .unwrap()
            .with_hms_nano(hms.0, hms.1, hms.2, nanos)
            .unwrap()
            .assume_offset(UtcOffset::from_hms(off.0, off.1, 0).unwrap())
    }

    #[test]
    fn p3_fraction_digits_are_trimmed_and_offsets_written() {
        assert_eq!(
            rfc3339_trimmed(dt((2025, 8, 1), (21, 27, 4), 617_928_300, (2, 0))),
            "2025-08-01T21:27:04.6179283+02:00"
        );
        assert_eq!(
            rfc3339_trimmed(dt((2025, 8, 20), (22, 9, 46), 162_460_313, (0, 0))),
            "2025-08-20T22:09:46.162460313Z"
        );
        assert_eq!(
            rfc3339_trimmed(dt((2026, 8, 20), (12, 5, 0), 500_000_000, (-7, 0))),
            "2026-08-20T12:05:00.5-07:00"
        );
        assert_eq!(
            rfc3339_trimmed(dt((2026, 1, 1), (0, 0, 0), 0, (5, 30))),
            "2026-01-01T00:00:00+05:30"
        );
        // Round-trips through the RFC 3339 parser.
        let s = rfc3339_trimmed(OffsetDateTime::now_utc());
        OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339).unwrap();
    }

    #[test]
    fn forever_is_about_292_years() {
        let years = FOREVER.as_secs_f64() / (365.25 * 86400.0);
        assert!((292.0..293.0).contains(&years), "{years}");
        let horizon = OffsetDateTime::now_utc() + FOREVER;
        assert!(horizon.year() > 2300);
    }

    #[test]
    fn h2_bodies() {
        assert_eq!(
            parse_body::<api::GenerateRequest>(b"").unwrap_err().message,
            "missing request body"
        );
        let bad = parse_body::<api::GenerateRequest>(b"{\"model\":").unwrap_err();
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding("hello", 768);
        assert_eq!(a.len(), 768);
        assert_eq!(a, embedding("hello", 768));
        assert_ne!(a, embedding("world", 768));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
        assert_eq!(embed_inputs(Some(&Value::from(""))).unwrap().len(), 0);
        assert_eq!(
            embed_inputs(Some(&serde_json::json!(["a", "b"]))).unwrap(),
            vec!["a", "b"]
        );
        assert!(embed_inputs(Some(&serde_json::json!(3))).is_err());
    }

    #[test]
    fn token_text_is_stable_words() {
        assert_eq!(token_text(7, 3), token_text(7, 3));
        assert!(!token_text(7, 0).starts_with(' '));
        assert!(token_text(7, 1).starts_with(' '));
        let text: String = (0..50).map(|i| token_text(9, i)).collect();
        assert_eq!(text.split(' ').count(), 50);
    }
}
