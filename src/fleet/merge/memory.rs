//! The merged `vram.csv`: each host's series from the lowest shard that completed, or
//! stitched from the shards that stopped when none did, and the cells whose memory was
//! then not measured to their end (missing, never zero).

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::{ShardFolder, name_of};
use crate::folder::{self, RunFolder, RunStatus, VramSample};
use crate::units::limits::excerpt;

/// Where a host's memory samples end, when no shard that completed sampled it: the
/// shards that did stopped (killed, crashed), so past `end_ms` its memory is unknown.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SamplesEnd {
    host: String,
    end_ms: f64,
    shards: Vec<String>,
}

/// `out/vram.csv`: each host's series from the lowest shard that completed (it sampled
/// the whole run). A host that only shards that stopped sampled is stitched from all of
/// them, lowest first, each continuing where the one before ended, and where its
/// samples end is returned. Returns the samples, and those ends.
pub(super) fn merge_vram(
    out: &RunFolder,
    folders: &[ShardFolder],
) -> Result<(Vec<VramSample>, Vec<SamplesEnd>)> {
    // Per host: (completed, index, shard name, samples), one entry per shard.
    type Series = (bool, u32, String, Vec<VramSample>);
    let mut by_host: BTreeMap<String, Vec<Series>> = BTreeMap::new();
    for f in folders {
        let samples = folder::read_vram(&f.dir)
            .with_context(|| format!("reading the memory samples of {}", f.dir.display()))?;
        let mut mine: BTreeMap<String, Vec<VramSample>> = BTreeMap::new();
        for s in samples {
            mine.entry(s.host.clone()).or_default().push(s);
        }
        let complete = f.meta.status == RunStatus::Complete;
        for (host, samples) in mine {
            by_host
                .entry(host)
                .or_default()
                .push((complete, f.index, name_of(f), samples));
        }
    }
    let mut samples: Vec<VramSample> = Vec::new();
    let mut ends = Vec::new();
    for (host, mut series) in by_host {
        // Completed shards first, then by index.
        series.sort_by_key(|(complete, index, ..)| (!*complete, *index));
        if series[0].0 {
            samples.append(&mut series[0].3);
            continue;
        }
        let mut end = f64::NEG_INFINITY;
        let mut shards = Vec::new();
        for (_, _, name, part) in series {
            let before = samples.len();
            samples.extend(part.into_iter().filter(|s| s.t_ms > end));
            if samples.len() > before {
                shards.push(name);
            }
            end = samples[before..].iter().map(|s| s.t_ms).fold(end, f64::max);
        }
        if end.is_finite() {
            ends.push(SamplesEnd {
                host,
                end_ms: end,
                shards,
            });
        }
    }
    samples.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
    out.write_vram(&samples)?;
    Ok((samples, ends))
}

/// The cells whose memory was not measured to their end, with why: a host whose
/// samples end (see [`merge_vram`]) before the cell does. Their figures are missing,
/// never zero, and no keep_alive is recommended over them.
pub(super) fn memory_not_measured(
    cells: &[folder::CellMeta],
    ends: &[SamplesEnd],
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for cell in cells {
        if cell.started_ms.is_none() {
            continue;
        }
        // A cell that never ended (its shards stopped in it) runs past any sample.
        let cell_end = cell.ended_ms.unwrap_or(f64::INFINITY);
        if let Some(e) = ends.iter().find(|e| e.end_ms < cell_end) {
            let host = if e.host.is_empty() {
                "the target".to_string()
            } else {
                excerpt(&e.host)
            };
            out.insert(
                cell.id.clone(),
                format!(
                    "the memory samples of {host} end at {:.1} s, before the cell {}: the shards that sampled it ({}) did not complete",
                    e.end_ms / 1000.0,
                    if cell_end.is_finite() {
                        format!("ends at {:.1} s", cell_end / 1000.0)
                    } else {
                        "ended".to_string()
                    },
                    e.shards.join(", ")
                ),
            );
        }
    }
    out
}
