//! Which models the target lists in `/api/ps`, read from the host's one `/api/ps`
//! poller ([`crate::telemetry::ps_feed`], shared with the telemetry) instead of a
//! `/api/ps` request beside every request: a cell's watcher subscribes at
//! [`POLL_EVERY`] (at [`POLL_EVERY_LONG`] when every stream keeps its model at least a
//! minute), so the poller asks at least that often, and each request reads the latest
//! answer just before it is sent. Between polls, a request that was answered (its first
//! token, or a whole reply) is evidence that its model was loaded then and stays so for
//! the keep_alive it sent, so a model loaded after the last poll is not read as missing
//! (which would count a warm request cold). The cold rule keeps both of its facts: a
//! model unloaded within the last poll interval can still be read as resident, and then
//! the server's `load_duration` (≥ the threshold for any real load) decides; the answers
//! only ever turn "missing" into "resident", never the other way. A successful poll
//! older than the watcher's interval plus [`STALE_AFTER`] (a slow or failing `/api/ps`)
//! is no answer (`None`), never a guess. Each poll is bounded: by the watcher's
//! interval plus [`STALE_AFTER`], or by the telemetry's longer wait when it reads the
//! same poller (an answer then comes late, and reads as stale); the subscription ends
//! with the cell. On an adaptive feed (a run's, unless `[telemetry] ps_adaptive = false`) the poller asks
//! at the watcher's interval only around the loads and unloads it expects, told of
//! each send by the run, and slowly between them: the listing read before a send is
//! then as current as a fast one (a change comes only when expected), and a poll is
//! stale only past the slow interval plus [`STALE_AFTER`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ollama::name::same_model;
use crate::telemetry::ps_feed::{self, PsFeed, PsSubscription};

/// How often the watcher asks `/api/ps` when a model of the cell may expire during it
/// (a keep_alive under [`LONG_KEEP_ALIVE`], or the server's default): a model unloaded
/// just before a send is then seen within this, even when its reload is faster than
/// the cold threshold (the simulator's millisecond-scale hosts).
pub const POLL_EVERY: Duration = Duration::from_millis(20);
/// How often it asks when every stream keeps its model at least [`LONG_KEEP_ALIVE`]
/// (or forever): a model can then leave only after a long idle gap, or by an eviction
/// the reload's `load_duration` shows (a real load takes longer than the cold
/// threshold). Each poll is an HTTP round trip costing about as much client CPU as a
/// request: at 20 ms it doubled kabench's CPU at 50 requests/s, at 100 ms it still
/// added a fifth.
pub const POLL_EVERY_LONG: Duration = Duration::from_millis(500);
/// A keep_alive at least this long counts as long (see [`POLL_EVERY_LONG`]).
pub const LONG_KEEP_ALIVE: Duration = Duration::from_secs(60);

/// The polling interval for a cell whose streams send these keep_alives.
pub fn poll_interval<'a>(
    keep_alives: impl IntoIterator<Item = Option<&'a crate::units::KeepAlive>>,
) -> Duration {
    let long = |k: Option<&crate::units::KeepAlive>| {
        k.is_some_and(|k| k.is_forever() || k.duration().is_some_and(|d| d >= LONG_KEEP_ALIVE))
    };
    if keep_alives.into_iter().all(long) {
        POLL_EVERY_LONG
    } else {
        POLL_EVERY
    }
}
/// A successful poll older than the polling interval plus this is no answer; a poll
/// gets the poller's interval plus this to answer.
pub const STALE_AFTER: Duration = ps_feed::POLL_GRACE;

/// When the model answered this request (its first token, or the whole reply of a
/// request that succeeded): proof that the model was loaded at that moment.
pub fn answered_at(ex: &crate::ollama::Exchange) -> Option<Instant> {
    ex.first_token_at
        .or_else(|| ex.is_ok().then_some(ex.first_byte_at).flatten())
}

/// A model answered at `.1`, held until `.2` (`None`: forever).
type Answered = (String, Instant, Option<Instant>);

/// A handle on the watcher; its subscription to the host's `/api/ps` poller ends when
/// the last handle is dropped.
#[derive(Clone)]
pub struct Residency {
    feed: Arc<PsSubscription>,
    /// Per model (as the requests name it): when a request of it was last answered,
    /// and until when that keeps it loaded (`None`: forever).
    answered: Arc<Mutex<Vec<Answered>>>,
    /// Age beyond which the latest successful poll is no answer.
    stale_after: Duration,
}

impl Residency {
    /// Reads `feed`'s answers, which come at least every `every` while the watcher
    /// lives (on an adaptive feed, at that interval around the changes it expects and
    /// at least every [`crate::telemetry::ps_schedule::SLOW`] otherwise; an answer is
    /// then stale only past that); the poller starts if it is not running; needs a
    /// Tokio runtime only to wait in [`Residency::ready`].
    pub fn watch(feed: &PsFeed, every: Duration) -> Residency {
        Residency {
            feed: Arc::new(feed.subscribe(every)),
            answered: Arc::default(),
            stale_after: feed.longest_gap(every) + STALE_AFTER,
        }
    }

    /// Notes that a request of `model` was answered at `at` (its first token, or its
    /// whole reply) and ended at `end` with `keep_alive`: the model was loaded then and
    /// stays so until `end` + keep_alive. A keep_alive of 0 or the server's default
    /// (unknown here) proves nothing past the request and is not noted.
    pub fn answered(
        &self,
        model: &str,
        at: Instant,
        end: Instant,
        keep_alive: Option<&crate::units::KeepAlive>,
    ) {
        let until = match keep_alive {
            Some(k) if k.is_forever() => None,
            Some(k) => match k.duration() {
                Some(d) if !d.is_zero() => Some(end + d),
                _ => return,
            },
            None => return,
        };
        let mut answered = self.answered.lock().unwrap_or_else(|p| p.into_inner());
        match answered.iter_mut().find(|(m, _, _)| m == model) {
            Some(entry) if entry.1 <= at => {
                entry.1 = at;
                entry.2 = until;
            }
            Some(_) => {}
            None => answered.push((model.to_string(), at, until)),
        }
    }

    /// Whether the latest successful poll listed `model` (names compared as Ollama
    /// normalizes them) or a request of it was answered after that poll was asked;
    /// `None` when no poll answered lately (within the interval and [`STALE_AFTER`]).
    pub fn resident(&self, model: &str) -> Option<bool> {
        let listing = self.feed.listing()?;
        if listing.asked.elapsed() > self.stale_after {
            return None;
        }
        if listing.lists(model) {
            return Some(true);
        }
        // Not listed when asked; answered since then means loaded since then, as long
        // as that answer's keep_alive still holds it.
        let (asked, now) = (listing.asked, Instant::now());
        let answered = self.answered.lock().unwrap_or_else(|p| p.into_inner());
        Some(answered.iter().any(|(m, at, until)| {
            *at > asked && until.is_none_or(|u| now < u) && same_model(m, model)
        }))
    }

    /// Waits (at most `within`) for a first successful answer asked since the watcher
    /// started, so the first request of a cell meets a known state.
    pub async fn ready(&self, within: Duration) {
        self.feed.fresh_listing(within).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ollama::api::{PsModel, PsResponse};
    use crate::telemetry::ps_feed::{PsLatest, PsListing};
    use crate::units::KeepAlive;

    /// A handle with a given last poll and no poller.
    fn polled(asked: Instant, models: &[&str]) -> Residency {
        let ps = PsResponse {
            models: models
                .iter()
                .map(|m| PsModel {
                    name: m.to_string(),
                    model: m.to_string(),
                    ..Default::default()
                })
                .collect(),
        };
        let listing = Arc::new(PsListing::new(asked, ps));
        Residency {
            feed: Arc::new(PsSubscription::fixed(PsLatest {
                answer: None,
                listing: Some(listing),
            })),
            answered: Arc::default(),
            stale_after: STALE_AFTER,
        }
    }

    #[test]
    fn an_answer_after_the_poll_reads_as_resident_and_one_before_it_does_not() {
        let asked = Instant::now();
        let forever = KeepAlive::forever();
        let r = polled(asked, &["other:latest"]);
        assert_eq!(r.resident("m"), Some(false), "not listed, no answer");
        let before = asked - Duration::from_millis(5);
        r.answered("m", before, before, Some(&forever));
        assert_eq!(r.resident("m"), Some(false), "answered before the poll");
        let after = asked + Duration::from_millis(5);
        r.answered("m:latest", after, after, Some(&forever));
        assert_eq!(r.resident("m"), Some(true), "loaded since the poll");
        assert_eq!(r.resident("other"), Some(true), "listed, tag normalized");
        assert_eq!(r.resident("third"), Some(false));
    }

    #[test]
    fn an_answer_proves_residency_only_while_its_keep_alive_holds() {
        let asked = Instant::now() - Duration::from_millis(50);
        let at = asked + Duration::from_millis(10);
        let r = polled(asked, &[]);
        // keep_alive 0 unloads at the end; the server default is unknown here.
        r.answered("zero", at, at, Some(&KeepAlive::from_seconds(0.0)));
        r.answered("default", at, at, None);
        // 20 ms after an end 40 ms ago: expired.
        r.answered("short", at, at, KeepAlive::parse("20ms").ok().as_ref());
        r.answered("long", at, at, KeepAlive::parse("1h").ok().as_ref());
        assert_eq!(r.resident("zero"), Some(false));
        assert_eq!(r.resident("default"), Some(false));
        assert_eq!(r.resident("short"), Some(false));
        assert_eq!(r.resident("long"), Some(true));
    }

    #[test]
    fn polling_is_slow_only_when_every_model_stays_long() {
        let forever = KeepAlive::forever();
        let hour = KeepAlive::parse("1h").unwrap();
        let short = KeepAlive::parse("5s").unwrap();
        assert_eq!(
            poll_interval([Some(&forever), Some(&hour)]),
            POLL_EVERY_LONG
        );
        assert_eq!(poll_interval([Some(&forever), Some(&short)]), POLL_EVERY);
        assert_eq!(poll_interval([Some(&forever), None]), POLL_EVERY);
    }

    #[test]
    fn a_stale_poll_is_no_answer_whatever_was_answered() {
        let asked = Instant::now() - STALE_AFTER - Duration::from_millis(50);
        let r = polled(asked, &["m"]);
        let now = Instant::now();
        r.answered("m", now, now, Some(&KeepAlive::forever()));
        assert_eq!(r.resident("m"), None);
    }
}
