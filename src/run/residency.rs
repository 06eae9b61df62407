//! Which models the target lists in `/api/ps`, from one watcher per cell instead of a
//! `/api/ps` request beside every request: a background task polls every
//! [`POLL_EVERY`] and keeps the latest answer, and each request reads it just before
//! it is sent. The cold rule keeps both of its facts: a model loaded or unloaded within
//! the last poll interval can be read as it was one interval ago, and then the server's
//! `load_duration` (≥ the threshold for any real load) still decides; a poll older
//! than [`STALE_AFTER`] (a slow or failing `/api/ps`) is no answer (`None`), never a
//! guess. Polling is bounded by its own timeout and stops with the cell.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::{CancellationToken, DropGuard};

use crate::ollama::OllamaClient;
use crate::ollama::name::same_model;

/// How often the watcher asks `/api/ps`.
pub const POLL_EVERY: Duration = Duration::from_millis(20);
/// A snapshot older than this is no answer.
pub const STALE_AFTER: Duration = Duration::from_millis(500);

/// The latest `/api/ps` answer: when it was asked, and the names it listed.
struct Snapshot {
    asked: Instant,
    models: Vec<String>,
}

/// A handle on the watcher; the polling task stops when the last handle is dropped
/// or the cell's token fires.
#[derive(Clone)]
pub struct Residency {
    latest: Arc<Mutex<Option<Snapshot>>>,
    _stop: Arc<DropGuard>,
}

impl Residency {
    /// Starts polling `client`'s `/api/ps` (needs a Tokio runtime).
    pub fn watch(client: &OllamaClient, cancel: &CancellationToken) -> Residency {
        let latest: Arc<Mutex<Option<Snapshot>>> = Arc::default();
        let stop = cancel.child_token();
        let (slot, token, client) = (latest.clone(), stop.clone(), client.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = token.cancelled() => return,
                }
                let asked = Instant::now();
                let answer = tokio::select! {
                    r = client.ps_until(STALE_AFTER, &token) => r,
                    _ = token.cancelled() => return,
                };
                if let Ok(ps) = answer {
                    let models = ps
                        .models
                        .into_iter()
                        .flat_map(|m| [m.name, m.model])
                        .filter(|n| !n.is_empty())
                        .collect();
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(Snapshot { asked, models });
                }
            }
        });
        Residency {
            latest,
            _stop: Arc::new(stop.drop_guard()),
        }
    }

    /// Whether the latest poll listed `model` (names compared as Ollama normalizes
    /// them); `None` when no poll answered within [`STALE_AFTER`].
    pub fn resident(&self, model: &str) -> Option<bool> {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let snap = latest.as_ref()?;
        (snap.asked.elapsed() <= STALE_AFTER)
            .then(|| snap.models.iter().any(|m| same_model(m, model)))
    }

    /// Waits (at most `within`) for a first answer, so the first request of a cell
    /// meets a known state.
    pub async fn ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self
                .latest
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
