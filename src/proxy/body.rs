//! A request body read once, into one buffer, under three bounds: its size
//! ([`BodyLimits::max_body`], a 413 beyond), a read timeout between its chunks (a
//! client that stops sending is cut), and a budget of body bytes held by all requests
//! at once (a request whose body does not fit waits for others to be forwarded, or
//! gets a 503 when none is within the read timeout).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Bytes, HttpBody};
use bytes::BytesMut;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bounds on request bodies.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// The most bytes one body may hold.
    pub max_body: usize,
    /// The most body bytes buffered by all requests at once (at least `max_body`).
    pub budget_bytes: usize,
    /// The longest wait for the next chunk of a body, and for room in the budget.
    pub read_timeout: Duration,
}

/// Why a body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// Over [`BodyLimits::max_body`].
    TooLarge(usize),
    /// No chunk came within the read timeout.
    Timeout(Duration),
    /// The budget had no room within the read timeout.
    Busy(Duration),
    /// The client's connection failed.
    Read(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge(n) => {
                write!(f, "the request body is over the proxy's limit of {n} bytes")
            }
            BodyError::Timeout(t) => write!(
                f,
                "the client sent no part of the request body for {} s (--read-timeout)",
                t.as_secs_f64()
            ),
            BodyError::Busy(t) => write!(
                f,
                "the proxy holds its limit of buffered request bodies (--max-buffered) and none was forwarded within {} s: retry later",
                t.as_secs_f64()
            ),
            BodyError::Read(e) => write!(f, "reading the request body: {e}"),
        }
    }
}

/// The body budget, counted in KiB.
pub(super) struct Budget {
    sem: Arc<Semaphore>,
}

fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

impl Budget {
    pub(super) fn new(limits: &BodyLimits) -> Budget {
        let total = kib(limits.budget_bytes.max(limits.max_body)) as usize;
        Budget {
            sem: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
        }
    }

    async fn take(&self, bytes: usize, wait: Duration) -> Result<OwnedSemaphorePermit, BodyError> {
        match tokio::time::timeout(wait, self.sem.clone().acquire_many_owned(kib(bytes))).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(BodyError::Busy(wait)),
        }
    }
}

/// Reads `body` whole, holding its size in `budget` until the returned permits drop.
pub(super) async fn read<B>(
    mut body: B,
    budget: &Budget,
    limits: &BodyLimits,
) -> Result<(Bytes, Vec<OwnedSemaphorePermit>), BodyError>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let hint = body.size_hint();
    if hint.lower() as usize > limits.max_body {
        return Err(BodyError::TooLarge(limits.max_body));
    }
    if body.is_end_stream() || hint.exact() == Some(0) {
        return Ok((Bytes::new(), Vec::new()));
    }
    let mut permits = Vec::new();
    // A declared length is taken from the budget at once; a chunked body grows into it.
    let mut held = match hint.exact() {
        Some(n) => n as usize,
        None => limits.max_body.min(64 * 1024),
    };
    permits.push(budget.take(held, limits.read_timeout).await?);
    let mut buf = BytesMut::with_capacity(held);
    loop {
        let frame = match tokio::time::timeout(limits.read_timeout, body.frame()).await {
            Err(_) => return Err(BodyError::Timeout(limits.read_timeout)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BodyError::Read(e.to_string())),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > limits.max_body {
            return Err(BodyError::TooLarge(limits.max_body));
        }
        if buf.len() + data.len() > held {
            let more = (buf.len() + data.len())
                .max(held.saturating_mul(2))
                .min(limits.max_body);
            permits.push(budget.take(more - held, limits.read_timeout).await?);
            held = more;
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), permits))
}
