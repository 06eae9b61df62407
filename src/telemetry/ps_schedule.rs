//! When an adaptive `/api/ps` poller (a run's, unless its scenario sets
//! `[telemetry] ps_adaptive = false`) asks next. `/api/ps` changes only when a model loads or
//! unloads, and kabench can tell when that may happen: a request sent for a model the
//! latest listing lacks (a load is coming), a request that ended with a short
//! keep_alive, and each listed model's `expires_at`. The poller asks at its fast
//! interval from [`EXPIRY_LEAD`] before each such moment until the listing shows the
//! change, and every [`SLOW`] otherwise. Knows nothing of HTTP or of who reads the
//! answers.

use std::time::{Duration, Instant, SystemTime};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ollama::api::PsResponse;
use crate::ollama::name::key;

/// The interval of an adaptive poller while it expects no change: a change nobody
/// expected (another client's load) shows in `/api/ps` rows at most this late, the
/// interval a run's residency watcher already polls at when every keep_alive is long.
pub const SLOW: Duration = Duration::from_millis(500);
/// How long before a model's expected unload an adaptive poller starts asking fast.
pub const EXPIRY_LEAD: Duration = Duration::from_millis(100);
/// The longest fast polling for a load that never shows (a model the server cannot
/// load, a load and unload between two polls).
pub const LOAD_WATCH_CAP: Duration = Duration::from_secs(120);
/// A request that ends with a keep_alive shorter than this has its unload expected
/// (`end + keep_alive`); a longer one is seen by the slow polls in time: the next slow
/// poll comes at most [`SLOW`] after the last, which was asked before the request was
/// sent, so before its keep_alive runs out, and reads the new `expires_at`.
pub const SHORT_KEEP_ALIVE: Duration = Duration::from_secs(2);

/// A load expected since a request of a model the latest listing lacked.
#[derive(Debug)]
struct Load {
    key: String,
    /// The name the request sent.
    name: String,
    since: Instant,
    /// Such requests not ended yet.
    in_flight: u32,
    /// When the last of them ended.
    last_end: Option<Instant>,
}

/// The changes an adaptive poller expects.
#[derive(Debug, Default)]
pub struct Expectations {
    loads: Vec<Load>,
    /// (model key, when its keep_alive runs out after its last request).
    leaves: Vec<(String, Instant)>,
    /// The earliest `expires_at` of the latest listing, as an instant.
    expiry: Option<Instant>,
}

impl Expectations {
    /// A request of `model` is being sent while the latest listing lacks it: a load is
    /// expected until a listing asked since lists it.
    pub fn load(&mut self, model: &str, now: Instant) {
        let k = key(model);
        match self.loads.iter_mut().find(|l| l.key == k) {
            Some(l) => l.in_flight += 1,
            None => self.loads.push(Load {
                key: k,
                name: model.to_string(),
                since: now,
                in_flight: 1,
                last_end: None,
            }),
        }
    }

    /// A request of `model` ended at `now`; `loading`: it was sent as a load
    /// ([`Expectations::load`]); `short`: the keep_alive it sent, when under
    /// [`SHORT_KEEP_ALIVE`] (the model is then expected to leave at `now` + it).
    pub fn ended(&mut self, model: &str, loading: bool, short: Option<Duration>, now: Instant) {
        let k = key(model);
        if loading && let Some(l) = self.loads.iter_mut().find(|l| l.key == k) {
            l.in_flight = l.in_flight.saturating_sub(1);
            l.last_end = Some(now);
        }
        if let Some(d) = short {
            let at = now + d;
            match self.leaves.iter_mut().find(|(m, _)| *m == k) {
                Some(leave) => leave.1 = leave.1.max(at),
                None => self.leaves.push((k, at)),
            }
        }
    }

    /// Reads a listing asked at `asked`: a load it shows (or that can no longer come:
    /// its requests ended before the poll) and an unload it could show are no longer
    /// expected; the earliest `expires_at` it lists is noted.
    pub fn observe(&mut self, asked: Instant, ps: &PsResponse, lists: impl Fn(&str) -> bool) {
        let now = Instant::now();
        self.loads.retain(|l| {
            let shown = asked >= l.since && lists(&l.name);
            let over = l.in_flight == 0 && l.last_end.is_some_and(|e| asked >= e);
            !shown && !over && now < l.since + LOAD_WATCH_CAP
        });
        // A listing asked after the keep_alive ran out shows the unload, or still lists
        // the model with its `expires_at` (past or renewed), which then rules.
        self.leaves.retain(|(_, at)| asked < *at);
        self.expiry = earliest_expiry(ps, now, SystemTime::now());
    }

    /// From when the poller should ask at its fast interval (at or before `now`: now);
    /// `None` when no change is expected.
    pub fn fast_from(&self, now: Instant) -> Option<Instant> {
        let loads = self
            .loads
            .iter()
            .filter(|l| now < l.since + LOAD_WATCH_CAP)
            .map(|l| l.since);
        let leaves = self.leaves.iter().map(|(_, at)| lead(*at));
        loads.chain(leaves).chain(self.expiry.map(lead)).min()
    }

    /// Whether a load or an unload is expected now or later.
    pub fn any(&self) -> bool {
        !self.loads.is_empty() || !self.leaves.is_empty() || self.expiry.is_some()
    }
}

/// [`EXPIRY_LEAD`] before `at` (or the earliest instant there is).
fn lead(at: Instant) -> Instant {
    at.checked_sub(EXPIRY_LEAD).unwrap_or(at)
}

/// The earliest `expires_at` of `ps` as an instant, read against the wall clock
/// `wall` at `now`; `None` when nothing listed has one that parses (Ollama writes a
/// date centuries ahead for a model kept forever, which reads as none either).
fn earliest_expiry(ps: &PsResponse, now: Instant, wall: SystemTime) -> Option<Instant> {
    let wall = OffsetDateTime::from(wall);
    ps.models
        .iter()
        .filter_map(|m| OffsetDateTime::parse(&m.expires_at, &Rfc3339).ok())
        .map(|t| t - wall)
        .filter(|left| *left < time::Duration::days(365))
        .min()
        .map(|left| {
            let abs = Duration::try_from(left.abs()).unwrap_or(Duration::ZERO);
            if left.is_negative() {
                now.checked_sub(abs).unwrap_or(now)
            } else {
                now + abs
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ollama::api::PsModel;

    fn listing(models: &[(&str, OffsetDateTime)]) -> PsResponse {
        PsResponse {
            models: models
                .iter()
                .map(|(m, t)| PsModel {
                    name: m.to_string(),
                    model: m.to_string(),
                    expires_at: t.format(&Rfc3339).unwrap(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn lists<'a>(ps: &'a PsResponse) -> impl Fn(&str) -> bool + 'a {
        move |n: &str| ps.models.iter().any(|m| key(&m.name) == key(n))
    }

    #[test]
    fn nothing_expected_polls_slowly_and_an_expiry_makes_it_fast_just_before() {
        let mut e = Expectations::default();
        let now = Instant::now();
        assert_eq!(e.fast_from(now), None);
        let wall = OffsetDateTime::now_utc();
        let ps = listing(&[("m", wall + time::Duration::seconds(10))]);
        e.observe(now, &ps, lists(&ps));
        let from = e.fast_from(now).unwrap();
        let ahead = from.duration_since(now);
        assert!(
            ahead > Duration::from_millis(9_700) && ahead < Duration::from_millis(10_000),
            "{ahead:?}"
        );
        // Kept forever: Ollama writes a date centuries ahead.
        let ps = listing(&[("m", wall + time::Duration::days(365 * 290))]);
        e.observe(now, &ps, lists(&ps));
        assert_eq!(e.fast_from(now), None);
        // Past its expiry and still listed (busy, or unloading): fast until it is gone.
        let ps = listing(&[("m", wall - time::Duration::seconds(3))]);
        e.observe(now, &ps, lists(&ps));
        assert!(e.fast_from(Instant::now()).unwrap() <= Instant::now());
    }

    #[test]
    fn a_load_is_expected_until_a_later_listing_shows_it_or_its_requests_end() {
        let mut e = Expectations::default();
        let sent = Instant::now();
        e.load("m", sent);
        assert!(e.fast_from(Instant::now()).unwrap() <= Instant::now());
        // A listing asked before the send says nothing of the load.
        let before = sent - Duration::from_millis(5);
        let shown = listing(&[("m:latest", OffsetDateTime::now_utc())]);
        e.observe(before, &shown, lists(&shown));
        assert_eq!(e.loads.len(), 1);
        e.observe(Instant::now(), &shown, lists(&shown));
        assert!(e.loads.is_empty(), "shown: no longer expected");

        // Loaded and unloaded between two polls: over once its request ended and a
        // later poll was asked.
        e.load("n", Instant::now());
        let empty = listing(&[]);
        e.observe(Instant::now(), &empty, lists(&empty));
        assert_eq!(e.loads.len(), 1, "still in flight");
        e.ended("n", true, None, Instant::now());
        e.observe(Instant::now(), &empty, lists(&empty));
        assert!(e.loads.is_empty());
        assert_eq!(e.fast_from(Instant::now()), None);
    }

    #[test]
    fn a_short_keep_alive_is_expected_to_run_out_after_the_request() {
        let mut e = Expectations::default();
        let end = Instant::now();
        e.ended("m", false, Some(Duration::from_millis(500)), end);
        let from = e.fast_from(end).unwrap();
        assert_eq!(from, end + Duration::from_millis(400));
        // A listing asked before that moment keeps the expectation, one after ends it.
        let ps = listing(&[]);
        e.observe(end + Duration::from_millis(100), &ps, lists(&ps));
        assert_eq!(e.leaves.len(), 1);
        e.observe(end + Duration::from_millis(600), &ps, lists(&ps));
        assert!(e.leaves.is_empty());
        assert!(!e.any());
    }
}
