//! A forwarded request's row, written once: [`Tap`] passes the reply's chunks
//! unchanged and writes the row when the body ends, fails or is dropped (the client
//! left, or the proxy cut it at shutdown); [`Pending`] writes it for a request whose
//! upstream had not answered when it was dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Bytes;
use futures_util::Stream;

use super::inspect::Inspected;
use super::log::ProxyRow;
use super::scan::Scanner;
use super::{Shared, lock};

/// A request forwarded and not yet answered: written on drop (the client left while
/// the upstream had not answered, or the proxy cut it at shutdown).
pub(super) struct Pending {
    pub(super) shared: Arc<Shared>,
    pub(super) row: Option<(ProxyRow, Inspected)>,
    pub(super) arrived: Instant,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some((mut row, inspected)) = self.row.take() else {
            return;
        };
        row.outcome = if self.shared.cutting.load(Ordering::SeqCst) {
            "cut_at_shutdown".into()
        } else {
            "client_gone".into()
        };
        if !row.note.is_empty() {
            row.note.push(';');
        }
        row.note.push_str("no_answer_yet");
        row.e2e_ms = Some(self.arrived.elapsed().as_secs_f64() * 1000.0);
        lock(&self.shared.recorder).finish(row, &inspected, Instant::now());
    }
}

/// The reply body on its way to the client: every chunk passes unchanged, and the
/// row is written once when the body ends, fails, or is dropped (client gone).
pub(super) struct Tap {
    /// The Content-Length, when the reply has one: the server stops polling once it
    /// has that many bytes, so the row is written when they have passed.
    pub(super) length: Option<u64>,
    pub(super) inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    pub(super) shared: Arc<Shared>,
    pub(super) row: Option<ProxyRow>,
    pub(super) inspected: Inspected,
    pub(super) arrived: Instant,
    pub(super) scanner: Scanner,
    pub(super) ok_status: bool,
    /// A 3xx: passed back to the client as it came.
    pub(super) redirect: bool,
    pub(super) failed: Option<&'static str>,
    /// When the reply's last line passed, ms after arrival.
    pub(super) done_ms: Option<f64>,
}

impl Tap {
    pub(super) fn close(&mut self, outcome: &'static str) {
        let Some(mut row) = self.row.take() else {
            return;
        };
        self.scanner.finish();
        let elapsed = self.arrived.elapsed().as_secs_f64() * 1000.0;
        row.outcome = match (outcome, self.ok_status, self.scanner.error_line) {
            // A client may leave a redirect's body unread: it has what it needs.
            ("ok" | "done" | "client_gone", false, _) if self.redirect => "redirected".into(),
            ("ok" | "done", true, true) => "stream_error".into(),
            ("ok" | "done", false, _) => "http_error".into(),
            ("done", true, false) => "ok".into(),
            (o, _, _) => o.into(),
        };
        if row.outcome == "ok" {
            row.e2e_ms = Some(
                self.done_ms
                    .filter(|_| outcome == "done")
                    .unwrap_or(elapsed),
            );
            if row.ttft_ms.is_none() && self.scanner.first_token {
                row.ttft_ms = Some(elapsed);
            }
        }
        if self.scanner.over_limit {
            if !row.note.is_empty() {
                row.note.push(';');
            }
            row.note.push_str("reply_line_over_limit");
        }
        row.load_duration_ms = self.scanner.load_duration_ms;
        row.prompt_tokens = self.scanner.prompt_tokens;
        row.output_tokens = self.scanner.output_tokens;
        lock(&self.shared.recorder).finish(row, &self.inspected, Instant::now());
    }
}

impl Stream for Tap {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                let first = self.scanner.push(&bytes);
                let elapsed = self.arrived.elapsed().as_secs_f64() * 1000.0;
                if self.scanner.done && self.done_ms.is_none() {
                    self.done_ms = Some(elapsed);
                }
                let mut complete = false;
                let length = self.length;
                if let Some(row) = self.row.as_mut() {
                    row.bytes += bytes.len() as u64;
                    if first {
                        row.ttft_ms = Some(elapsed);
                    }
                    complete = length.is_some_and(|n| row.bytes >= n);
                }
                if complete {
                    self.close("ok");
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.failed = Some("upstream_error");
                self.close("upstream_error");
                Poll::Ready(Some(Err(std::io::Error::other(e))))
            }
            Poll::Ready(None) => {
                let outcome = self.failed.unwrap_or("ok");
                self.close(outcome);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // Dropped before the end: the client left (dropping `inner` cancels upstream),
        // unless the reply's last line had passed: a client may stop reading there,
        // before the end of the body, with the whole answer in hand.
        let outcome = if self.scanner.done {
            "done"
        } else if self.shared.cutting.load(Ordering::SeqCst) {
            "cut_at_shutdown"
        } else {
            "client_gone"
        };
        self.close(outcome);
    }
}
