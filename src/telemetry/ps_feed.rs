//! One `/api/ps` poller per target host, shared by everything that reads `/api/ps`
//! during a run: the telemetry's `ollama_ps` rows, the run's residency watcher and its
//! release wait read the same answers instead of each polling on its own.
//!
//! A consumer [subscribes](PsFeed::subscribe) with the interval it needs. While at least
//! one subscription lives, a poller asks `/api/ps` at the shortest interval any of them
//! needs (and at once when a subscription starts, so that its first answer was asked
//! after it began), and publishes each answer — when it was asked, when it came back,
//! the parsed listing or the error — on a [`tokio::sync::watch`] channel; it stops with
//! the last subscription. Each poll is bounded by the longest wait a subscription
//! accepts (by default its interval plus [`POLL_GRACE`]); after a poll that timed out
//! the next waits one interval, so a hung `/api/ps` is not asked in a tight loop. The
//! poller runs on a thread of its own with a single-threaded runtime: a poll, its HTTP
//! connection's task and the timer then wake one thread, not the shared runtime's
//! workers in turn, which keeps a fast poll cheap.
//!
//! A feed is fixed ([`PsFeed::new`]: the poller asks at the shortest subscribed interval,
//! always) or adaptive ([`PsFeed::adaptive`], a run's unless `[telemetry] ps_adaptive = false`):
//! the shortest interval is then its fast one, used only around the loads and unloads it
//! expects ([`super::ps_schedule`]), and it asks every [`ps_schedule::SLOW`] otherwise.
//! A run tells an adaptive feed of each request it sends ([`PsFeed::sending`]). Knows
//! nothing of rows.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::ollama::api::PsResponse;
use crate::ollama::name::key;
use crate::ollama::{ClientError, OllamaClient};
use crate::units::KeepAlive;

use super::ps_schedule::{self, Expectations};

/// A subscription waits for an answer its interval plus this, unless it says otherwise
/// ([`PsFeed::subscribe_patient`]); a poll slower than every subscription accepts is
/// published as an error (a timeout).
pub const POLL_GRACE: Duration = Duration::from_millis(500);

/// One successful `/api/ps` answer.
#[derive(Debug)]
pub struct PsListing {
    /// When the poll was sent.
    pub asked: Instant,
    /// The parsed reply.
    pub response: PsResponse,
    /// Every name it lists (`name` and `model`), as comparison keys
    /// ([`crate::ollama::name::key`]), sorted; made on the first [`PsListing::lists`]
    /// (a consumer that never asks, the telemetry, never pays for a long listing's).
    keys: OnceLock<Vec<String>>,
}

impl PsListing {
    /// The listing of `response`, asked at `asked`.
    pub fn new(asked: Instant, response: PsResponse) -> PsListing {
        PsListing {
            asked,
            response,
            keys: OnceLock::new(),
        }
    }

    /// Whether it lists `model` (names compared as Ollama normalizes them).
    pub fn lists(&self, model: &str) -> bool {
        let keys = self.keys.get_or_init(|| {
            let mut keys: Vec<String> = self
                .response
                .models
                .iter()
                .flat_map(|m| [&m.name, &m.model])
                .filter(|n| !n.is_empty())
                .map(|n| key(n))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            keys
        });
        keys.binary_search(&key(model)).is_ok()
    }

    /// Whether it lists the same models with the same sizes as `other`, in the same
    /// order (`expires_at` aside).
    pub fn same_sizes(&self, other: &PsListing) -> bool {
        let (a, b) = (&self.response.models, &other.response.models);
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.name == y.name && x.size == y.size && x.size_vram == y.size_vram)
    }
}

/// One poll's outcome.
#[derive(Debug)]
pub struct PsAnswer {
    /// When the poll was sent.
    pub asked: Instant,
    /// When its answer (or its error) came back.
    pub answered: Instant,
    /// The listing, or why there is none.
    pub result: Result<Arc<PsListing>, ClientError>,
}

/// What a feed has published so far.
#[derive(Debug, Clone, Default)]
pub struct PsLatest {
    /// The latest answer, successful or not.
    pub answer: Option<Arc<PsAnswer>>,
    /// The latest successful answer (it may be older than `answer`).
    pub listing: Option<Arc<PsListing>>,
}

/// The `/api/ps` feed of one host. Cheap to clone; every clone is the same feed.
#[derive(Clone)]
pub struct PsFeed {
    shared: Arc<Shared>,
}

struct Shared {
    base: String,
    /// Polls fast only around expected changes (see the module doc).
    adaptive: bool,
    latest: watch::Sender<PsLatest>,
    demand: Mutex<Demand>,
    /// Woken when a subscription starts or ends.
    wake: Notify,
}

/// The live subscriptions and the poller's state.
#[derive(Default)]
struct Demand {
    /// (subscription id, interval it needs, how long it waits for an answer).
    intervals: Vec<(u64, Duration, Duration)>,
    next_id: u64,
    /// A poller thread is running.
    running: bool,
    /// A subscription started since the last poll was sent: ask at once.
    ask_now: bool,
    /// The changes an adaptive poller expects.
    expect: Expectations,
}

impl Demand {
    fn every(&self) -> Option<Duration> {
        self.intervals.iter().map(|(_, d, _)| *d).min()
    }

    fn patience(&self) -> Duration {
        self.intervals
            .iter()
            .map(|(_, _, p)| *p)
            .max()
            .unwrap_or(POLL_GRACE)
    }
}

impl Shared {
    fn demand(&self) -> MutexGuard<'_, Demand> {
        self.demand.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PsFeed {
    /// The feed of the Ollama at `base` (any `OLLAMA_HOST` form); nothing is asked
    /// before the first subscription.
    pub fn new(base: &str) -> Result<PsFeed, ClientError> {
        PsFeed::build(base, false)
    }

    /// The adaptive feed of the Ollama at `base`: it asks at the shortest subscribed
    /// interval only around the changes it expects, every [`ps_schedule::SLOW`]
    /// otherwise (see the module doc).
    pub fn adaptive(base: &str) -> Result<PsFeed, ClientError> {
        PsFeed::build(base, true)
    }

    fn build(base: &str, adaptive: bool) -> Result<PsFeed, ClientError> {
        let client = OllamaClient::new(base)?;
        Ok(PsFeed {
            shared: Arc::new(Shared {
                base: client.base_url().to_string(),
                adaptive,
                latest: watch::Sender::new(PsLatest::default()),
                demand: Mutex::default(),
                wake: Notify::new(),
            }),
        })
    }

    /// The base URL polled, as [`OllamaClient::base_url`] writes it.
    pub fn base_url(&self) -> &str {
        &self.shared.base
    }

    /// What was published last.
    pub fn latest(&self) -> PsLatest {
        self.shared.latest.borrow().clone()
    }

    /// Whether the feed polls fast only around expected changes.
    pub fn is_adaptive(&self) -> bool {
        self.shared.adaptive
    }

    /// The longest a subscriber at `every` may wait between two answers while the
    /// poller is healthy: `every` on a fixed feed, at least [`ps_schedule::SLOW`] on an
    /// adaptive one.
    pub fn longest_gap(&self, every: Duration) -> Duration {
        if self.shared.adaptive {
            every.max(ps_schedule::SLOW)
        } else {
            every
        }
    }

    /// Tells an adaptive feed that a request of `model` with `keep_alive` is being
    /// sent, until the returned guard is dropped (when the request has ended): a model
    /// the latest listing lacks is expected to load, and one whose keep_alive is short
    /// to leave after it. Nothing on a fixed feed, nor for a listed model kept long.
    pub fn sending(&self, model: &str, keep_alive: Option<&KeepAlive>) -> PsSending {
        if !self.shared.adaptive {
            return PsSending(None);
        }
        let short = keep_alive
            .and_then(KeepAlive::duration)
            .filter(|d| *d < ps_schedule::SHORT_KEEP_ALIVE);
        let listed = self
            .shared
            .latest
            .borrow()
            .listing
            .as_ref()
            .is_some_and(|l| l.lists(model));
        if listed && short.is_none() {
            return PsSending(None);
        }
        if !listed {
            self.shared.demand().expect.load(model, Instant::now());
            self.shared.wake.notify_one();
        }
        PsSending(Some(Sending {
            shared: self.shared.clone(),
            model: model.to_string(),
            loading: !listed,
            short,
        }))
    }

    /// Asks for an answer at least every `every` (a zero interval counts as 1 ms) until
    /// the subscription is dropped, waiting `every` + [`POLL_GRACE`] for each; starts
    /// the poller if none runs, and has it ask at once.
    pub fn subscribe(&self, every: Duration) -> PsSubscription {
        self.subscribe_patient(every, every + POLL_GRACE)
    }

    /// [`PsFeed::subscribe`], waiting up to `patience` for an answer: a poll then gets
    /// the longest patience of the live subscriptions.
    pub fn subscribe_patient(&self, every: Duration, patience: Duration) -> PsSubscription {
        let since = Instant::now();
        let rx = self.shared.latest.subscribe();
        let (id, start) = {
            let mut d = self.shared.demand();
            let id = d.next_id;
            d.next_id += 1;
            d.intervals
                .push((id, every.max(Duration::from_millis(1)), patience));
            d.ask_now = true;
            let start = !d.running;
            d.running = true;
            (id, start)
        };
        if start {
            spawn_poller(self.shared.clone());
        }
        self.shared.wake.notify_one();
        PsSubscription {
            rx,
            since,
            _keep: Keep::Demand(DemandGuard {
                shared: self.shared.clone(),
                id,
            }),
        }
    }
}

/// A consumer's view of a feed; the poller keeps its interval while it lives.
pub struct PsSubscription {
    rx: watch::Receiver<PsLatest>,
    since: Instant,
    _keep: Keep,
}

/// What keeps a subscription's answers coming.
enum Keep {
    /// Its interval, withdrawn when it ends.
    Demand(#[allow(dead_code)] DemandGuard),
    /// The sending side of a fixed subscription (tests).
    #[cfg(test)]
    Fixed(#[allow(dead_code)] watch::Sender<PsLatest>),
}

impl PsSubscription {
    /// When the subscription started.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// What was published last.
    pub fn latest(&self) -> PsLatest {
        self.rx.borrow().clone()
    }

    /// The latest successful answer.
    pub fn listing(&self) -> Option<Arc<PsListing>> {
        self.rx.borrow().listing.clone()
    }

    /// Waits for the next answer and marks it seen; `false` when no answer can come
    /// any more.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }

    /// Waits (at most `within`) for a successful answer asked since the subscription
    /// started; `true` when one came.
    pub async fn fresh_listing(&self, within: Duration) -> bool {
        let mut rx = self.rx.clone();
        let since = self.since;
        let fresh = rx.wait_for(|l| l.listing.as_ref().is_some_and(|l| l.asked >= since));
        matches!(tokio::time::timeout(within, fresh).await, Ok(Ok(_)))
    }

    /// A subscription to no poller that holds `latest` (for tests of consumers).
    #[cfg(test)]
    pub(crate) fn fixed(latest: PsLatest) -> PsSubscription {
        let (tx, rx) = watch::channel(latest);
        PsSubscription {
            rx,
            since: Instant::now(),
            _keep: Keep::Fixed(tx),
        }
    }
}

/// A request an adaptive feed was told of ([`PsFeed::sending`]); dropping it says the
/// request ended.
pub struct PsSending(#[allow(dead_code)] Option<Sending>);

struct Sending {
    shared: Arc<Shared>,
    model: String,
    loading: bool,
    short: Option<Duration>,
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.shared
            .demand()
            .expect
            .ended(&self.model, self.loading, self.short, Instant::now());
        self.shared.wake.notify_one();
    }
}

/// Withdraws a subscription's interval when it ends.
struct DemandGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for DemandGuard {
    fn drop(&mut self) {
        self.shared
            .demand()
            .intervals
            .retain(|(i, _, _)| *i != self.id);
        self.shared.wake.notify_one();
    }
}

/// Starts the poller on a thread of its own; it ends when no subscription is left.
fn spawn_poller(shared: Arc<Shared>) {
    let on_thread = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("kabench-ps".into())
        .spawn(move || {
            let shared = on_thread;
            let built = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match (built, OllamaClient::new(&shared.base)) {
                (Ok(rt), Ok(client)) => rt.block_on(poll(&shared, &client)),
                (Err(e), _) => stop_with(&shared, &format!("no runtime for the poller: {e}")),
                (_, Err(e)) => stop_with(&shared, &e.to_string()),
            }
        });
    if let Err(e) = spawned {
        stop_with(&shared, &format!("no thread for the poller: {e}"));
    }
}

/// Marks the poller stopped after it could not start.
fn stop_with(shared: &Shared, reason: &str) {
    tracing::warn!(
        "/api/ps of {} cannot be polled: {reason}; residency reads as unknown and the ollama_ps telemetry has no rows",
        shared.base
    );
    shared.demand().running = false;
}

/// When the poll after one asked at `last` is due: an interval `every` later on a fixed
/// feed; on an adaptive one at the fast interval `every` from when a change is expected,
/// and [`ps_schedule::SLOW`] later (or `every`, when longer) at the latest.
fn next_poll(adaptive: bool, d: &Demand, last: Instant, every: Duration) -> Instant {
    if !adaptive {
        return last + every;
    }
    let slow = last + every.max(ps_schedule::SLOW);
    match d.expect.fast_from(Instant::now()) {
        Some(from) => slow.min((last + every).max(from)),
        None => slow,
    }
}

/// Asks `/api/ps` at the shortest subscribed interval (on an adaptive feed, only
/// around expected changes) and publishes every answer; returns when no subscription
/// is left.
async fn poll(shared: &Shared, client: &OllamaClient) {
    // The next poll goes an interval after the last was asked, or after it timed out.
    let mut last: Option<Instant> = None;
    loop {
        let (patience, due) = {
            let mut d = shared.demand();
            let Some(every) = d.every() else {
                d.running = false;
                return;
            };
            let now = Instant::now();
            let due = match last {
                Some(t) if !d.ask_now => next_poll(shared.adaptive, &d, t, every).max(now),
                _ => now,
            };
            (d.patience(), due)
        };
        if due > Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                // A subscription started or ended: the interval may have changed.
                _ = shared.wake.notified() => continue,
            }
        }
        shared.demand().ask_now = false;
        let asked = Instant::now();
        let reply = tokio::time::timeout(patience, client.ps());
        tokio::pin!(reply);
        let result = loop {
            tokio::select! {
                r = &mut reply => break r,
                _ = shared.wake.notified() => {
                    // Stop at once when the last subscription ended (a hung `/api/ps`
                    // must not keep the poller); a new one waits for this answer.
                    let mut d = shared.demand();
                    if d.intervals.is_empty() {
                        d.running = false;
                        return;
                    }
                }
            }
        };
        let answered = Instant::now();
        last = Some(asked);
        let result = match result {
            Ok(Ok(ps)) => {
                let listing = Arc::new(PsListing::new(asked, ps));
                if shared.adaptive {
                    let lists = |k: &str| listing.lists(k);
                    shared
                        .demand()
                        .expect
                        .observe(asked, &listing.response, lists);
                }
                Ok(listing)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                last = Some(answered);
                Err(ClientError::Timeout(format!(
                    "/api/ps: no answer within {patience:?}"
                )))
            }
        };
        let answer = Arc::new(PsAnswer {
            asked,
            answered,
            result,
        });
        shared.latest.send_modify(|l| {
            if let Ok(listing) = &answer.result {
                l.listing = Some(listing.clone());
            }
            l.answer = Some(answer);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ollama::api::PsModel;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_listing_matches_names_as_ollama_normalizes_them() {
        let ps = PsResponse {
            models: vec![PsModel {
                name: "m:latest".into(),
                model: "m:latest".into(),
                ..Default::default()
            }],
        };
        let l = PsListing::new(Instant::now(), ps);
        assert!(l.lists("m"));
        assert!(l.lists("m:latest"));
        assert!(!l.lists("n"));
    }

    /// Serves `/api/ps` listing `m:latest` (hanging instead when `hang`) on loopback;
    /// returns the base URL and the number of `/api/ps` requests so far.
    async fn serve(hang: bool) -> (String, Arc<AtomicUsize>) {
        serve_expiring(hang, "2026-01-01T00:00:00Z").await
    }

    /// [`serve`], its model expiring at `expires_at`.
    async fn serve_expiring(hang: bool, expires_at: &'static str) -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().route(
            "/api/ps",
            axum::routing::get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    (
                        [("content-type", "application/json")],
                        format!(
                            r#"{{"models":[{{"name":"m:latest","model":"m:latest","size":10,"digest":"d",
                            "details":{{}},"expires_at":"{expires_at}","size_vram":4}}]}}"#
                        ),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}"), hits)
    }

    fn running(feed: &PsFeed) -> bool {
        feed.shared.demand().running
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_consumers_at_the_same_interval_share_one_stream_of_polls() {
        let (base, hits) = serve(false).await;
        let feed = PsFeed::new(&base).unwrap();
        let every = Duration::from_millis(100);
        let (a, b) = (feed.subscribe(every), feed.subscribe(every));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n = hits.load(Ordering::SeqCst);
        // One poller: about 10 polls (a loaded machine makes fewer, never more); two
        // pollers would have asked about 20 times.
        assert!((3..=14).contains(&n), "{n} polls in 1 s at 100 ms");
        let (la, lb) = (a.listing().unwrap(), b.listing().unwrap());
        assert!(Arc::ptr_eq(&la, &lb), "both read the same answer");
        assert!(la.lists("m"));
        assert_eq!(la.response.models[0].size_vram, 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_poller_asks_at_the_shortest_interval_and_stops_with_the_last_subscription() {
        let (base, hits) = serve(false).await;
        let feed = PsFeed::new(&base).unwrap();
        assert!(!running(&feed), "nothing is asked before a subscription");
        let slow = feed.subscribe(Duration::from_secs(1));
        assert!(slow.fresh_listing(Duration::from_secs(5)).await);
        let fast = feed.subscribe(Duration::from_millis(20));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = hits.load(Ordering::SeqCst);
        // At 1 s alone it would have asked twice.
        assert!(n >= 6, "{n} polls in 0.5 s with a 20 ms subscriber");
        drop(fast);
        drop(slow);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !running(&feed),
            "the poller ends with the last subscription"
        );
        let stopped = hits.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(hits.load(Ordering::SeqCst), stopped);
        // A later subscription starts it again, and its first answer is a new one.
        let again = feed.subscribe(Duration::from_secs(1));
        assert!(again.fresh_listing(Duration::from_secs(5)).await);
        assert!(hits.load(Ordering::SeqCst) > stopped);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_subscription_gets_an_answer_asked_after_it_at_once() {
        let (base, _hits) = serve(false).await;
        let feed = PsFeed::new(&base).unwrap();
        let first = feed.subscribe(Duration::from_secs(10));
        assert!(first.fresh_listing(Duration::from_secs(5)).await);
        // The poller's next poll is 10 s away; a new subscriber has it ask now.
        let second = feed.subscribe(Duration::from_secs(10));
        assert!(second.fresh_listing(Duration::from_secs(3)).await);
        assert!(second.listing().unwrap().asked >= second.since());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_api_ps_is_a_timeout_and_cannot_keep_the_poller() {
        let (base, _hits) = serve(true).await;
        let feed = PsFeed::new(&base).unwrap();
        let mut sub = feed.subscribe(Duration::from_millis(20));
        let started = Instant::now();
        assert!(sub.changed().await);
        let answer = sub.latest().answer.unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= POLL_GRACE && waited < POLL_GRACE + Duration::from_secs(2),
            "{waited:?}"
        );
        assert!(
            matches!(answer.result, Err(ClientError::Timeout(_))),
            "{answer:?}"
        );
        assert!(sub.listing().is_none());
        // Dropped in the middle of the next (hung) poll: the poller stops at once.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(sub);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!running(&feed));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_adaptive_feed_asks_slowly_until_a_send_makes_a_change_expected() {
        // Kept forever: Ollama lists a date centuries ahead.
        let (base, hits) = serve_expiring(false, "2318-01-01T00:00:00Z").await;
        let feed = PsFeed::adaptive(&base).unwrap();
        let sub = feed.subscribe(Duration::from_millis(20));
        assert!(sub.fresh_listing(Duration::from_secs(5)).await);
        let n = || hits.load(Ordering::SeqCst);
        let start = n();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let slow = n() - start;
        // At 20 ms it would have asked about 75 times; at the slow 500 ms, 3 or 4.
        assert!(slow <= 4, "{slow} polls in 1.5 s with nothing expected");
        // A listed model kept long changes nothing.
        drop(feed.sending("m", None));
        // A model the listing lacks: its load is expected, asked for every 20 ms.
        let sending = feed.sending("other", None);
        let before = n();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let fast = n() - before;
        assert!(fast >= 8, "{fast} polls in 0.5 s while a load is expected");
        // Its request ended and a later poll still lacks it: no load is coming.
        drop(sending);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = n();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(n() - after <= 2, "{} polls in 0.6 s", n() - after);
        drop(sub);
    }
}
