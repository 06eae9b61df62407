//! The semantic checks of a `run.json` that its schema (the typed parse) cannot make:
//! prices and thresholds finite and not negative, cell ids and stream names unique,
//! times and rates finite, counts within limits. A folder that fails one is refused by
//! the report and `compare` with the field named, instead of rendering figures and a
//! recommendation from it.

use std::collections::BTreeSet;

use super::RunMeta;
use crate::units::ParseError;
use crate::units::limits::{check_count, excerpt};

/// Most cells a `run.json` may list (a sweep of 10 000 cells is already far past any
/// real one).
pub const MAX_CELLS: u64 = 10_000;
/// Most streams one cell may list (a proxy log's distinct models included).
pub const MAX_STREAMS_PER_CELL: u64 = 100_000;
/// The highest price `[cost]` may hold per unit (wait second or GB-hour): far past any
/// real one, small enough that every cost stays a finite number.
pub const MAX_PRICE: f64 = 1e12;

fn bad(field: &str, why: String) -> ParseError {
    ParseError::new(format!("run.json {field}: {why}"))
}

fn price(field: &str, v: f64) -> Result<(), ParseError> {
    if !v.is_finite() || !(0.0..=MAX_PRICE).contains(&v) {
        return Err(bad(
            field,
            format!("{v} is not a price (a finite number from 0 to {MAX_PRICE})"),
        ));
    }
    Ok(())
}

fn time_ms(field: &str, v: Option<f64>) -> Result<(), ParseError> {
    match v {
        Some(x) if !x.is_finite() || x < 0.0 => Err(bad(
            field,
            format!("{x} is not a time (a finite number of ms from 0)"),
        )),
        _ => Ok(()),
    }
}

/// Checks what the typed parse of `run.json` cannot: the first field that fails is
/// named in the error (exit 2).
pub fn check_meta(meta: &RunMeta) -> Result<(), ParseError> {
    if let Some(cost) = &meta.cost {
        price("cost.vram_gb_hour", cost.vram_gb_hour)?;
        price("cost.ram_gb_hour", cost.ram_gb_hour)?;
        price("cost.wait_second", cost.wait_second)?;
    }
    let t = meta.cold_threshold_ms;
    if !t.is_finite() || t < 0.0 {
        return Err(bad(
            "cold_threshold_ms",
            format!("{t} is not a threshold (a finite number of ms from 0)"),
        ));
    }
    check_count(meta.cells.len() as u64, MAX_CELLS, "run.json cells")?;
    let mut ids = BTreeSet::new();
    for (i, cell) in meta.cells.iter().enumerate() {
        if !ids.insert(cell.id.as_str()) {
            return Err(bad(
                &format!("cells[{i}].id"),
                format!(
                    "cell {} is listed twice; each cell id must be unique",
                    excerpt(&cell.id)
                ),
            ));
        }
        time_ms(&format!("cells[{i}].started_ms"), cell.started_ms)?;
        time_ms(&format!("cells[{i}].ended_ms"), cell.ended_ms)?;
        check_count(
            cell.streams.len() as u64,
            MAX_STREAMS_PER_CELL,
            &format!("run.json cells[{i}].streams"),
        )?;
        let mut names = BTreeSet::new();
        for (j, s) in cell.streams.iter().enumerate() {
            if !names.insert(s.name.as_str()) {
                return Err(bad(
                    &format!("cells[{i}].streams[{j}].name"),
                    format!(
                        "stream {} is listed twice in cell {}; each stream name must be unique in its cell",
                        excerpt(&s.name),
                        excerpt(&cell.id)
                    ),
                ));
            }
            if let Some(r) = s.rate_per_s
                && (!r.is_finite() || r < 0.0)
            {
                return Err(bad(
                    &format!("cells[{i}].streams[{j}].rate_per_s"),
                    format!("{r} is not a rate (a finite number of requests/s from 0)"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folder::{CellMeta, CostSettings, StreamMeta};

    fn meta() -> RunMeta {
        let stream = StreamMeta {
            name: "chat".into(),
            model: "m".into(),
            ..Default::default()
        };
        RunMeta {
            cold_threshold_ms: 100.0,
            cost: Some(CostSettings::default()),
            cells: vec![CellMeta {
                id: "c0".into(),
                params: Default::default(),
                streams: vec![stream],
                started_ms: Some(0.0),
                ended_ms: Some(10.0),
                host: None,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_sound_run_passes() {
        check_meta(&meta()).unwrap();
    }

    #[test]
    fn negative_and_infinite_prices_are_named() {
        for v in [-1.0, f64::INFINITY, f64::NAN, 1e300] {
            let mut m = meta();
            m.cost.as_mut().unwrap().vram_gb_hour = v;
            let e = check_meta(&m).unwrap_err();
            assert!(e.message.contains("cost.vram_gb_hour"), "{}", e.message);
        }
    }

    #[test]
    fn duplicate_cells_and_streams_are_named() {
        let mut m = meta();
        m.cells.push(m.cells[0].clone());
        let e = check_meta(&m).unwrap_err();
        assert!(e.message.contains("cells[1].id"), "{}", e.message);
        let mut m = meta();
        let s = m.cells[0].streams[0].clone();
        m.cells[0].streams.push(s);
        let e = check_meta(&m).unwrap_err();
        assert!(
            e.message.contains("cells[0].streams[1].name"),
            "{}",
            e.message
        );
    }
}
