//! The release wait: after a cell's last request, how long the driver watches the
//! target release its models on its own (`release_tail`), when the cell's keep_alives
//! make a release due (`expected_release`), and the watch itself (`await_release`),
//! which asks `/api/ps` slowly until a release is due and quickly around it. The send
//! loop (`open_loop`) calls it; it shares only the host's `/api/ps` feed and the cancel
//! token with it.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::folder;
use crate::scenario::{Cell, Plan};
use crate::telemetry::ps_feed::PsFeed;

/// Longest tail a cell waits after its last request for the target to release the
/// model on its own (so release delay and idle VRAM are observed); beyond it, the
/// next cell unloads everything.
pub const RELEASE_WAIT_CAP: Duration = folder::horizon::KEEP_ALIVE_CAP;

/// How long each cell is watched at least after its last request ends: the longest
/// finite keep_alive of the plan (capped at `RELEASE_WAIT_CAP`) plus a second, so the
/// release delay is observed. The watch also runs to the end of the cell's idle horizon
/// (`folder::horizon`), over which every cell's memory is counted; a model released
/// before it ends the watch early (nothing more accrues).
pub fn release_tail(plan: &Plan) -> Duration {
    let longest = plan
        .cells
        .iter()
        .flat_map(|c| c.streams.iter())
        .filter_map(|s| s.keep_alive.as_ref().and_then(|k| k.duration()))
        .filter(|d| *d <= RELEASE_WAIT_CAP)
        .max()
        .unwrap_or(Duration::ZERO);
    longest + Duration::from_secs(1)
}

/// How often the release wait needs `/api/ps` answered from [`RELEASE_LEAD`] before the
/// release it expects.
const RELEASE_POLL: Duration = Duration::from_millis(50);
/// How often it needs `/api/ps` answered before that, or when it expects no release
/// (every model kept forever): a release nobody expected (another client's unload, a
/// runner that died) then ends the wait at most this late; the memory is counted over
/// the cell's idle horizon either way.
const RELEASE_POLL_SLOW: Duration = Duration::from_millis(500);
/// How long before the expected release the release wait asks at [`RELEASE_POLL`].
const RELEASE_LEAD: Duration = Duration::from_millis(200);

/// When a cell whose last request ended at `ended` can first release a model: after
/// the shortest keep_alive its streams send (0: at once). A stream that sends none
/// leaves it to the server's default, which kabench does not know: at once, too.
/// `None` when every stream keeps its model forever.
pub fn expected_release(cell: &Cell, ended: Instant) -> Option<Instant> {
    cell.streams
        .iter()
        .filter_map(|s| match &s.keep_alive {
            Some(k) if k.is_forever() => None,
            Some(k) => Some(k.duration().unwrap_or(Duration::ZERO)),
            None => Some(Duration::ZERO),
        })
        .min()
        .map(|d| ended + d)
}

/// After a cell's last request, watches the host's `/api/ps` answers until the target
/// has released every model (then nothing more accrues) or `deadline` has passed; a
/// failed poll ends the wait. It asks every [`RELEASE_POLL_SLOW`] until
/// [`RELEASE_LEAD`] before `expected` (a release the cell's keep_alives make due;
/// `None`: none is), then every [`RELEASE_POLL`]. After a release it waits `settle`
/// more, so every telemetry source samples the freed memory inside the cell.
pub async fn await_release(
    feed: &PsFeed,
    deadline: Instant,
    expected: Option<Instant>,
    settle: Duration,
    cancel: &CancellationToken,
) {
    let mut fast_from = expected.map(|at| at.checked_sub(RELEASE_LEAD).unwrap_or(at));
    let mut sub = match fast_from {
        Some(at) if at <= Instant::now() => {
            fast_from = None;
            feed.subscribe(RELEASE_POLL)
        }
        _ => feed.subscribe(RELEASE_POLL_SLOW),
    };
    let since = sub.since();
    loop {
        let speed_up = async {
            match fast_from {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            more = sub.changed() => if !more { return },
            _ = speed_up => {
                fast_from = None;
                sub = feed.subscribe(RELEASE_POLL);
                continue;
            }
            _ = tokio::time::sleep_until(deadline.into()) => return,
            _ = cancel.cancelled() => return,
        }
        let Some(answer) = sub.latest().answer else {
            continue;
        };
        if answer.asked < since {
            continue;
        }
        match &answer.result {
            Ok(listing) if listing.response.models.is_empty() => {
                drop(sub);
                tokio::select! {
                    _ = tokio::time::sleep(settle) => {}
                    _ = cancel.cancelled() => {}
                }
                return;
            }
            Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn plan_of(sweep: &str) -> Plan {
        let text = format!(
            "[[stream]]\nmodel = \"m\"\narrival = {{ kind = \"constant\", rate = \"1/s\" }}\n\
             [run]\nrequests = 1\n[sweep]\nkeep_alive = {sweep}\n"
        );
        let s = crate::scenario::parse(&text, Path::new("/s/x.toml")).unwrap();
        crate::scenario::plan(&s)
    }

    #[test]
    fn the_tail_is_the_longest_finite_keep_alive_plus_a_second() {
        let plan = plan_of("[\"0\", \"1s\", \"4s\", -1]");
        assert_eq!(release_tail(&plan), Duration::from_secs(5));
        let forever = plan_of("[-1]");
        assert_eq!(release_tail(&forever), Duration::from_secs(1));
    }

    #[test]
    fn a_release_is_due_after_the_shortest_keep_alive_and_never_for_minus_one() {
        let plan = plan_of("[\"0\", \"4s\", -1]");
        let ended = Instant::now();
        let due: Vec<_> = plan
            .cells
            .iter()
            .map(|c| expected_release(c, ended).map(|at| at - ended))
            .collect();
        assert_eq!(
            due,
            [Some(Duration::ZERO), Some(Duration::from_secs(4)), None]
        );
        // A stream that sends no keep_alive leaves it to the server: due at once, even
        // beside a stream that keeps its model forever.
        let text = "[[stream]]\nmodel = \"m\"\nkeep_alive = -1\n\
                    arrival = { kind = \"constant\", rate = \"1/s\" }\n\
                    [[stream]]\nname = \"b\"\nmodel = \"n\"\n\
                    arrival = { kind = \"constant\", rate = \"1/s\" }\n[run]\nrequests = 1\n";
        let s = crate::scenario::parse(text, Path::new("/s/x.toml")).unwrap();
        let mixed = crate::scenario::plan(&s);
        assert_eq!(mixed.cells.len(), 1);
        assert_eq!(expected_release(&mixed.cells[0], ended), Some(ended));
    }
}
