//! How the client bounds its calls: the control-call timeout, [`bounded`] (a timeout
//! and a stop), the body limit ([`MAX_BODY_BYTES`]) with a reply read within it, and a
//! control reply decoded (its JSON, or the error its status means).

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::ollama::error::{ClientError, from_reqwest, preview, status_error};

/// Limit for the small control calls (ps, tags, show, version) so a hung server cannot
/// block a run forever; generate/chat/embed take the caller's timeout instead.
pub(crate) const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest whole body read at once (a control reply, an error body, an
/// `/api/embed` reply): 64 MiB, room for thousands of models or embeddings, bounded
/// against a server that never stops.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// A reqwest reply's body, at most [`MAX_BODY_BYTES`].
pub(crate) async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    while let Some(piece) = resp.chunk().await.map_err(|e| from_reqwest(e, true))? {
        if body.len() + piece.len() > MAX_BODY_BYTES {
            return Err(body_too_long());
        }
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

/// A control call's reply: its JSON, or the error a non-2xx status means.
pub(crate) fn decode_reply<T: DeserializeOwned>(
    status: u16,
    location: Option<String>,
    body: &[u8],
) -> Result<T, ClientError> {
    if !(200..300).contains(&status) {
        return Err(status_error(status, location, body));
    }
    serde_json::from_slice(body)
        .map_err(|e| ClientError::BadJson(format!("{e}: {}", preview(body))))
}

/// A body over [`MAX_BODY_BYTES`].
pub(crate) fn body_too_long() -> ClientError {
    ClientError::BadJson(format!(
        "reply body longer than {MAX_BODY_BYTES} bytes (the body limit)"
    ))
}

/// `call` bounded by the control-call limit.
pub(crate) async fn within_control_timeout<T>(
    call: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(CONTROL_TIMEOUT, call).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout(format!(
            "no reply within {CONTROL_TIMEOUT:?}"
        ))),
    }
}

/// Runs `call` bounded by `timeout` (a `Timeout` naming `what`) and ended at once by
/// `stop` (a `Cancelled` naming `what`).
pub(crate) async fn bounded<T>(
    what: &str,
    timeout: Duration,
    stop: &tokio_util::sync::CancellationToken,
    call: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::select! {
        r = tokio::time::timeout(timeout, call) => r.unwrap_or_else(|_| {
            Err(ClientError::Timeout(format!("{what}: no reply within {timeout:?}")))
        }),
        _ = stop.cancelled() => Err(ClientError::Cancelled(what.to_string())),
    }
}
