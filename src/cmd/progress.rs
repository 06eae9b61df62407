//! Progress on stderr: one bar per cell (indicatif), notes as lines. An observer of
//! the runner's events; it owns no results and prints nothing on stdout.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc;

use crate::run::ProgressEvent;

/// Draws events until the channel closes.
pub async fn show(mut events: mpsc::UnboundedReceiver<ProgressEvent>, quiet: bool) {
    let mut bar: Option<ProgressBar> = None;
    let (mut done, mut errors, mut cold) = (0u64, 0u64, 0u64);
    while let Some(event) = events.recv().await {
        if quiet {
            continue;
        }
        match event {
            ProgressEvent::CellStarted {
                index,
                of,
                id,
                requests,
            } => {
                (done, errors, cold) = (0, 0, 0);
                // Closed-loop users decide how many requests go out: no length then.
                let length = (requests > 0).then_some(requests);
                let b = ProgressBar::with_draw_target(length, ProgressDrawTarget::stderr());
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b.set_prefix(format!("cell {}/{} {}", index + 1, of, id));
                bar = Some(b);
            }
            ProgressEvent::RequestDone { error, cold: c } => {
                done += 1;
                errors += error as u64;
                cold += c as u64;
                if let Some(b) = &bar {
                    b.inc(1);
                    // The message changes only with a cold or failed request.
                    if error || c || done == 1 {
                        b.set_message(format!("cold {cold} errors {errors}"));
                    }
                }
            }
            ProgressEvent::CellFinished { id } => {
                if let Some(b) = bar.take() {
                    b.finish();
                    if b.is_hidden() {
                        eprintln!("cell {id}: {done} requests, {cold} cold, {errors} errors");
                    }
                }
            }
            // A hidden bar (stderr is not a terminal) drops its println: write plainly.
            ProgressEvent::Note(text) => match &bar {
                Some(b) if !b.is_hidden() => b.println(text),
                _ => eprintln!("{text}"),
            },
        }
    }
    if let Some(b) = bar.take() {
        b.abandon();
    }
}
