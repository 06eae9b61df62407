//! Why a request to Ollama failed: `ClientError` (its `kind()` is the `error_kind`
//! column of `requests.csv`), how a reqwest failure or a non-2xx reply becomes one, and
//! the text of Ollama's `{"error": …}` bodies. Knows nothing of scenarios or files.

use crate::ollama::api;

/// Why a request failed; `kind()` gives the stable name recorded per request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// No connection could be made (refused, unreachable, DNS).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The request did not finish within its timeout.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A non-2xx status with Ollama's error text.
    #[error("HTTP {status}: {message}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// Ollama's `{"error":…}` text, or the plain body.
        message: String,
    },
    /// An `{"error":…}` line inside a 200 stream (M9).
    #[error("error in stream: {0}")]
    StreamError(String),
    /// The connection closed before the `done:true` line.
    #[error("stream ended early: {0}")]
    BrokenStream(String),
    /// A body or line that is not the JSON expected.
    #[error("bad JSON: {0}")]
    BadJson(String),
    /// An `OLLAMA_HOST` value that cannot be turned into a URL.
    #[error("bad host: {0}")]
    BadHost(String),
    /// Stopped by kabench (Ctrl-C, or a run that had to stop) before it ended.
    #[error("cancelled: {0}")]
    Cancelled(String),
}

/// The closed set of `ClientError` cases, for CSV columns and counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// See `ClientError::Connect`.
    Connect,
    /// See `ClientError::Timeout`.
    Timeout,
    /// See `ClientError::Http`.
    Http,
    /// See `ClientError::StreamError`.
    StreamError,
    /// See `ClientError::BrokenStream`.
    BrokenStream,
    /// See `ClientError::BadJson`.
    BadJson,
    /// See `ClientError::BadHost`.
    BadHost,
    /// See `ClientError::Cancelled`.
    Cancelled,
}

impl ErrorKind {
    /// Stable snake_case name (`connect`, `timeout`, `http`, `stream_error`,
    /// `broken_stream`, `bad_json`, `bad_host`).
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Http => "http",
            ErrorKind::StreamError => "stream_error",
            ErrorKind::BrokenStream => "broken_stream",
            ErrorKind::BadJson => "bad_json",
            ErrorKind::BadHost => "bad_host",
            ErrorKind::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ClientError {
    /// Which case this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Connect(_) => ErrorKind::Connect,
            ClientError::Timeout(_) => ErrorKind::Timeout,
            ClientError::Http { .. } => ErrorKind::Http,
            ClientError::StreamError(_) => ErrorKind::StreamError,
            ClientError::BrokenStream(_) => ErrorKind::BrokenStream,
            ClientError::BadJson(_) => ErrorKind::BadJson,
            ClientError::BadHost(_) => ErrorKind::BadHost,
            ClientError::Cancelled(_) => ErrorKind::Cancelled,
        }
    }

    /// The HTTP status, for `Http` errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Maps a transport error of reqwest onto our cases (`during_body`: the headers
/// had arrived, so a failure now means the stream broke).
/// Classifies a reqwest failure: timeout, broken stream (once the body started), bad
/// JSON, or connect.
pub fn from_reqwest(err: reqwest::Error, during_body: bool) -> ClientError {
    let text = error_chain(&err);
    if err.is_timeout() {
        ClientError::Timeout(text)
    } else if err.is_connect() {
        ClientError::Connect(text)
    } else if err.is_decode() && !during_body {
        ClientError::BadJson(text)
    } else if during_body || err.is_body() || err.is_request() {
        // Connected and sent, then the connection went away before a complete reply.
        ClientError::BrokenStream(text)
    } else {
        ClientError::Connect(text)
    }
}

pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The `Location` header of a response, when it has one.
pub(crate) fn location(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(http::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The error of a non-2xx reply: Ollama's text, or for a redirect (never followed)
/// where it points and what to do.
pub fn status_error(status: u16, location: Option<String>, body: &[u8]) -> ClientError {
    let message = if (300..400).contains(&status) {
        match location {
            Some(to) => format!(
                "redirect to {to}: kabench does not follow redirects (a redirected POST arrives as a GET); point the target at the address Ollama answers on"
            ),
            None => "a redirect without a Location header: kabench does not follow redirects; point the target at the address Ollama answers on".to_string(),
        }
    } else {
        error_message(body)
    };
    ClientError::Http { status, message }
}

/// The text of an error body: Ollama's `{"error":…}` or the plain body.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(e) = serde_json::from_slice::<api::ErrorBody>(body) {
        return e.error;
    }
    String::from_utf8_lossy(body).trim().to_string()
}

pub(crate) fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut s: String = text.chars().take(120).collect();
    if text.chars().count() > 120 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_have_stable_names() {
        let all = [
            (ClientError::Connect(String::new()), "connect"),
            (ClientError::Timeout(String::new()), "timeout"),
            (
                ClientError::Http {
                    status: 503,
                    message: String::new(),
                },
                "http",
            ),
            (ClientError::StreamError(String::new()), "stream_error"),
            (ClientError::BrokenStream(String::new()), "broken_stream"),
            (ClientError::BadJson(String::new()), "bad_json"),
            (ClientError::BadHost(String::new()), "bad_host"),
        ];
        for (e, name) in all {
            assert_eq!(e.kind().as_str(), name);
        }
    }

    #[test]
    fn error_message_reads_json_or_plain_text() {
        assert_eq!(
            error_message(br#"{"error":"model is required"}"#),
            "model is required"
        );
        assert_eq!(error_message(b"404 page not found"), "404 page not found");
    }
}
