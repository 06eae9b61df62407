//! A scenario's streams as an input (`--scenario FILE --horizon 7d`): each stream of
//! the scenario's first cell sends by its arrival process, with its own seed (the seed
//! `kabench run` gives it, so both meet the same arrivals), until the horizon; the
//! streams are merged in time order. A stream's `keep_alive` is what "as sent" replays.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;
use std::time::Duration;

use super::{Request, RequestIter, Scan, Source, TrafficError};
use crate::scenario::{self, CellStream, Prompt};
use crate::units::KeepAlive;
use crate::workload::{self, Limit};

/// The most requests a `--horizon` replay plans (10⁷: the replay streams them, but
/// each is replayed through every policy, and the count is checked before planning).
pub const MAX_PLANNED: u64 = 10_000_000;

/// A scenario's streams, run for a horizon.
#[derive(Debug, Clone)]
pub struct Streams {
    scan: Scan,
    streams: Vec<CellStream>,
    /// Per stream: its model's index, its keep_alive's index.
    index: Vec<(u32, Option<u32>)>,
    horizon: Duration,
    time_scale: f64,
}

impl Streams {
    /// The streams of the scenario at `path`, sending until `horizon`.
    pub fn open(path: &Path, horizon: Duration, time_scale: f64) -> Result<Streams, TrafficError> {
        let bad = |message: String| TrafficError::Read {
            path: path.to_path_buf(),
            message,
        };
        let scenario = scenario::load(path).map_err(|e| bad(format!("{e:#}")))?;
        let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let plan = scenario::plan(&scenario);
        let Some(cell) = plan.cells.first() else {
            return Err(TrafficError::Empty {
                path: path.to_path_buf(),
                what: "no cell to take the streams from".into(),
            });
        };
        let mut scan = Scan {
            path: path.to_path_buf(),
            sha256: {
                use sha2::Digest;
                format!("{:x}", sha2::Sha256::digest(&text))
            },
            sorted: true,
            format: "scenario streams".into(),
            columns: vec!["streams".into()],
            ..Scan::default()
        };
        // The requests planned, from each stream's rate, checked before any is drawn.
        let expected: f64 = cell
            .streams
            .iter()
            .filter_map(|s| s.arrival.rate())
            .map(|r| r.value() * horizon.as_secs_f64())
            .sum();
        let too_many = |n: String| TrafficError::Choose {
            path: path.to_path_buf(),
            what: format!(
                "--horizon {}: its streams would send {n} requests, over the limit of {MAX_PLANNED} requests one replay plans: give a shorter --horizon",
                crate::units::format_go_duration(horizon)
            ),
        };
        if expected > MAX_PLANNED as f64 {
            return Err(too_many(format!("about {expected:.3e}")));
        }
        let mut index = Vec::new();
        for s in &cell.streams {
            let m = match scan.models.iter().position(|m| *m == s.model) {
                Some(m) => m,
                None => {
                    scan.models.push(s.model.clone());
                    scan.model_rows.push(0);
                    scan.model_ctx.push(Some(s.num_ctx));
                    scan.models.len() - 1
                }
            };
            scan.clients.push(s.name.clone());
            let ka = s.keep_alive.as_ref().map(|k| {
                match scan
                    .keep_alives
                    .iter()
                    .position(|x| x.written() == k.written())
                {
                    Some(i) => i as u32,
                    None => {
                        scan.keep_alives.push(k.clone());
                        (scan.keep_alives.len() - 1) as u32
                    }
                }
            });
            scan.has_keep_alive |= ka.is_some();
            index.push((m as u32, ka));
            // Counted no further than the limit (a trace stream has no rate to plan by).
            let n = workload::offsets(&s.arrival, Limit::Duration(horizon), s.seed)
                .map_err(|e| bad(format!("stream {}: {e}", s.name)))?
                .take((MAX_PLANNED - scan.rows.min(MAX_PLANNED) + 1) as usize)
                .count() as u64;
            if scan.rows + n > MAX_PLANNED {
                return Err(too_many(format!("over {MAX_PLANNED}")));
            }
            scan.model_rows[m] += n;
            scan.rows += n;
        }
        if scan.rows == 0 {
            return Err(TrafficError::Empty {
                path: path.to_path_buf(),
                what: format!(
                    "its streams send nothing within {}",
                    crate::units::format_go_duration(horizon)
                ),
            });
        }
        scan.span_s = horizon.as_secs_f64() * time_scale;
        scan.first = "0 s".into();
        scan.last = crate::units::format_go_duration(horizon);
        scan.notes.push(format!(
            "the streams of {} (cell {}) sent for {}, each with the seed `kabench run` gives it",
            path.display(),
            cell.id,
            crate::units::format_go_duration(horizon)
        ));
        Ok(Streams {
            scan,
            streams: cell.streams.clone(),
            index,
            horizon,
            time_scale,
        })
    }

    /// The keep_alive each stream sends, as written.
    pub fn sent(&self) -> Vec<Option<KeepAlive>> {
        self.streams.iter().map(|s| s.keep_alive.clone()).collect()
    }
}

impl Source for Streams {
    fn scan(&self) -> &Scan {
        &self.scan
    }

    fn requests(&self) -> Result<RequestIter, TrafficError> {
        let mut its = Vec::new();
        let mut heap = BinaryHeap::new();
        for (i, s) in self.streams.iter().enumerate() {
            let mut it = workload::offsets(&s.arrival, Limit::Duration(self.horizon), s.seed)
                .map_err(|e| TrafficError::Read {
                    path: self.scan.path.clone(),
                    message: format!("stream {}: {e}", s.name),
                })?;
            if let Some(t) = it.next() {
                heap.push(Reverse((t, i)));
            }
            its.push(it);
        }
        let streams = self.streams.clone();
        let index = self.index.clone();
        let scale = self.time_scale;
        Ok(Box::new(std::iter::from_fn(move || {
            let Reverse((t, i)) = heap.pop()?;
            if let Some(next) = its[i].next() {
                heap.push(Reverse((next, i)));
            }
            let s = &streams[i];
            Some(Ok(Request {
                t: t.as_secs_f64() * scale,
                model: index[i].0,
                prompt_tokens: match s.prompt {
                    Prompt::Tokens(n) => Some(n),
                    Prompt::Text(_) => None,
                },
                output_tokens: Some(s.max_tokens),
                num_ctx: Some(s.num_ctx),
                client: Some(i as u32),
                keep_alive: index[i].1,
                service_s: None,
                kind: super::Kind::Serve,
            }))
        })))
    }
}
