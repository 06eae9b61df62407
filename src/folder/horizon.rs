//! The idle-memory horizon of a sweep (`run.json` `idle_horizon`): every cell's memory
//! figures are counted from the cell's first send to its last send plus one common
//! tail, the same for every cell of the run, keep_alive `0` and `-1` alike. A
//! keep_alive that holds longer then never looks cheaper for having been measured over
//! a shorter span, and a run cut into shards measures each cell over the span one
//! process does.
//!
//! The tail is the longest finite keep_alive of the sweep (at most
//! [`KEEP_ALIVE_CAP`]) plus [`LOAD_ALLOWANCE`], time for the last request's load and
//! answer before its keep_alive starts to run. The run records it; the report reads it
//! back (a folder written before it was recorded gets the same rule from its cells).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CellMeta, RequestRecord, ms};
use crate::units::KeepAlive;

/// The longest keep_alive the tail waits out; a longer one is cut at the horizon like
/// `-1`.
pub const KEEP_ALIVE_CAP: Duration = Duration::from_secs(30);
/// Time in the tail for the last request to load its model and answer before its
/// keep_alive starts to run.
pub const LOAD_ALLOWANCE: Duration = Duration::from_secs(5);

/// `run.json` `idle_horizon`: the common tail after each cell's last send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IdleHorizon {
    /// The tail after each cell's last send, ms.
    pub tail_ms: f64,
    /// How the tail was chosen, in words.
    pub rule: String,
}

/// One cell's horizon on the run's clock: `[from_ms, to_ms]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellWindow {
    /// The cell's first send (intended time).
    pub from_ms: f64,
    /// Its last send (intended time) plus the tail.
    pub to_ms: f64,
}

impl IdleHorizon {
    /// The horizon of a sweep whose streams send these keep_alives (`None`: not sent,
    /// the server's default then runs, which the tail does not wait for).
    pub fn of_keep_alives<'a>(
        keep_alives: impl IntoIterator<Item = Option<&'a KeepAlive>>,
    ) -> Self {
        let longest = keep_alives
            .into_iter()
            .filter_map(|k| k.and_then(KeepAlive::duration))
            .filter(|d| *d <= KEEP_ALIVE_CAP)
            .max()
            .unwrap_or(Duration::ZERO);
        let tail = longest + LOAD_ALLOWANCE;
        IdleHorizon {
            tail_ms: ms(tail),
            rule: format!(
                "each cell from its first send to its last send + {:.0} s: the longest finite keep_alive of the sweep up to {} s ({:.0} s) + {} s for the last load and answer",
                tail.as_secs_f64(),
                KEEP_ALIVE_CAP.as_secs(),
                longest.as_secs_f64(),
                LOAD_ALLOWANCE.as_secs()
            ),
        }
    }

    /// The horizon of the cells of a run folder, from their streams' keep_alives.
    pub fn of_cells(cells: &[CellMeta]) -> Self {
        Self::of_keep_alives(
            cells
                .iter()
                .flat_map(|c| c.streams.iter())
                .map(|s| s.keep_alive.as_ref()),
        )
    }

    /// The tail as a duration.
    pub fn tail(&self) -> Duration {
        Duration::from_secs_f64(self.tail_ms.max(0.0) / 1000.0)
    }

    /// `cell`'s horizon from its rows (every row of the cell, warm-up and failures
    /// included: the schedule sent them); `None` when the cell sent nothing.
    pub fn window(&self, rows: &[RequestRecord], cell: &CellMeta) -> Option<CellWindow> {
        let mut sends = rows
            .iter()
            .filter(|r| r.cell.is_empty() || r.cell == cell.id)
            .map(|r| r.intended_ms)
            .filter(|t| t.is_finite());
        let first = sends.next()?;
        let (from, last) = sends.fold((first, first), |(a, b), t| (a.min(t), b.max(t)));
        Some(CellWindow {
            from_ms: from,
            to_ms: last + self.tail_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_the_longest_finite_keep_alive_plus_the_load_allowance() {
        let kas: Vec<Option<KeepAlive>> = ["0", "1s", "4s", "-1", "10m"]
            .iter()
            .map(|k| KeepAlive::from_written(k))
            .chain([None])
            .collect();
        let h = IdleHorizon::of_keep_alives(kas.iter().map(Option::as_ref));
        assert_eq!(h.tail(), Duration::from_secs(4) + LOAD_ALLOWANCE);
        assert!(h.rule.contains("last send + 9 s"), "{}", h.rule);
        let none = IdleHorizon::of_keep_alives([None, KeepAlive::from_written("-1").as_ref()]);
        assert_eq!(none.tail(), LOAD_ALLOWANCE);
    }

    #[test]
    fn a_cell_window_runs_from_its_first_to_its_last_send_plus_the_tail() {
        let h = IdleHorizon {
            tail_ms: 9000.0,
            rule: String::new(),
        };
        let cell = CellMeta {
            id: "c0".into(),
            ..Default::default()
        };
        let row = |cell: &str, t: f64| RequestRecord {
            cell: cell.into(),
            intended_ms: t,
            ..Default::default()
        };
        let rows = [
            row("c0", 700.0),
            row("c0", 300.0),
            row("c1", 99.0),
            row("c0", 5000.0),
        ];
        let w = h.window(&rows, &cell).unwrap();
        assert_eq!((w.from_ms, w.to_ms), (300.0, 14_000.0));
        assert!(h.window(&rows[2..3], &cell).is_none());
    }
}
