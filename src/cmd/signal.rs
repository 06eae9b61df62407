//! Ctrl-C and SIGTERM, and the progress observer a run reports to.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::run::ProgressEvent;

/// What a run is watched by: the cancel token Ctrl-C fires, the progress channel, and
/// the task that draws it (done when the channel closes).
pub(super) struct Watch {
    pub cancel: CancellationToken,
    pub events: mpsc::UnboundedSender<ProgressEvent>,
    pub progress: tokio::task::JoinHandle<()>,
}

/// Ctrl-C → the cancel token; progress events → stderr (none when `quiet`).
pub(super) fn watch(quiet: bool) -> Watch {
    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if interrupt().await {
            eprintln!("\ninterrupted: stopping sends, waiting for requests in flight…");
            on_ctrl_c.cancel();
        }
    });
    let (events, rx) = mpsc::unbounded_channel();
    // Quiet: nobody listens, so an event costs a failed send, not a task's wake-up.
    let progress = if quiet {
        drop(rx);
        tokio::spawn(async {})
    } else {
        tokio::spawn(super::progress::show(rx, false))
    };
    Watch {
        cancel,
        events,
        progress,
    }
}

/// Ctrl-C, or SIGTERM on Unix (what CI runners and `kill` send): true when one came.
pub(super) async fn interrupt() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                r = tokio::signal::ctrl_c() => r.is_ok(),
                _ = term.recv() => true,
            },
            Err(_) => tokio::signal::ctrl_c().await.is_ok(),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.is_ok()
    }
}
