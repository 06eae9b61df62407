//! Which models the target lists in `/api/ps`, from one watcher per cell instead of a
//! `/api/ps` request beside every request: a background task polls every
//! [`POLL_EVERY`] and keeps the latest answer, and each request reads it just before
//! it is sent. Between polls, a request that was answered (its first token, or a
//! whole reply) is evidence that its model was loaded at that moment, so a model
//! loaded after the last poll is not read as missing (which would count a warm
//! request cold). The cold rule keeps both of its facts: a model unloaded within the
//! last poll interval can still be read as resident, and then the server's
//! `load_duration` (≥ the threshold for any real load) decides; the answers only ever
//! turn "missing" into "resident", never the other way. A poll older than
//! [`STALE_AFTER`] (a slow or failing `/api/ps`) is no answer (`None`), never a guess.
//! Polling is bounded by its own timeout and stops with the cell.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::{CancellationToken, DropGuard};

use crate::ollama::OllamaClient;
use crate::ollama::name::same_model;

/// How often the watcher asks `/api/ps` (each poll is an HTTP round trip costing about
/// as much client CPU as a request: at 20 ms it doubled kabench's CPU at 50 requests/s).
pub const POLL_EVERY: Duration = Duration::from_millis(100);
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
    /// Per model (as the requests name it), when a request of it was last answered.
    answered: Arc<Mutex<Vec<(String, Instant)>>>,
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
            answered: Arc::default(),
            _stop: Arc::new(stop.drop_guard()),
        }
    }

    /// Notes that a request of `model` was answered at `at` (its first token, or its
    /// whole reply): the model was loaded then.
    pub fn answered(&self, model: &str, at: Instant) {
        let mut answered = self.answered.lock().unwrap_or_else(|p| p.into_inner());
        match answered.iter_mut().find(|(m, _)| m == model) {
            Some((_, last)) => *last = (*last).max(at),
            None => answered.push((model.to_string(), at)),
        }
    }

    /// Whether the latest poll listed `model` (names compared as Ollama normalizes
    /// them) or a request of it was answered after that poll was asked; `None` when no
    /// poll answered within [`STALE_AFTER`].
    pub fn resident(&self, model: &str) -> Option<bool> {
        let asked = {
            let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
            let snap = latest.as_ref()?;
            if snap.asked.elapsed() > STALE_AFTER {
                return None;
            }
            if snap.models.iter().any(|m| same_model(m, model)) {
                return Some(true);
            }
            snap.asked
        };
        // Not listed when asked; answered since then means loaded since then.
        let answered = self.answered.lock().unwrap_or_else(|p| p.into_inner());
        Some(
            answered
                .iter()
                .any(|(m, at)| *at > asked && same_model(m, model)),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle with a given last poll and no polling task.
    fn polled(asked: Instant, models: &[&str]) -> Residency {
        Residency {
            latest: Arc::new(Mutex::new(Some(Snapshot {
                asked,
                models: models.iter().map(|m| m.to_string()).collect(),
            }))),
            answered: Arc::default(),
            _stop: Arc::new(CancellationToken::new().drop_guard()),
        }
    }

    #[test]
    fn an_answer_after_the_poll_reads_as_resident_and_one_before_it_does_not() {
        let asked = Instant::now();
        let r = polled(asked, &["other:latest"]);
        assert_eq!(r.resident("m"), Some(false), "not listed, no answer");
        r.answered("m", asked - Duration::from_millis(5));
        assert_eq!(r.resident("m"), Some(false), "answered before the poll");
        r.answered("m:latest", asked + Duration::from_millis(5));
        assert_eq!(r.resident("m"), Some(true), "loaded since the poll");
        assert_eq!(r.resident("other"), Some(true), "listed, tag normalized");
        assert_eq!(r.resident("third"), Some(false));
    }

    #[test]
    fn a_stale_poll_is_no_answer_whatever_was_answered() {
        let asked = Instant::now() - STALE_AFTER - Duration::from_millis(50);
        let r = polled(asked, &["m"]);
        r.answered("m", Instant::now());
        assert_eq!(r.resident("m"), None);
    }
}
