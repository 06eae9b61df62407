//! `--slice` and `--client`: any input cut to a time slice and to some clients.

use std::collections::HashSet;

use crate::traffic::{RequestIter, Scan, Source, TrafficError};

/// `--slice START..END`: seconds of the input's own time from its first request (or
/// durations: `1d..2d`, `..6h`, `3600..`), before `--time-scale`.
pub fn parse_slice(text: &str) -> Result<(f64, f64), String> {
    let bad = || {
        format!(
            "--slice {text:?}: write START..END in seconds or durations from the input's start, e.g. 0..86400, 1d..8d, ..6h, 7d.."
        )
    };
    let (a, b) = text.split_once("..").ok_or_else(bad)?;
    let side = |s: &str, open: f64| -> Result<f64, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(open);
        }
        if let Ok(x) = s.parse::<f64>() {
            return crate::units::limits::duration_from_secs(x, "--slice")
                .map(|_| x)
                .map_err(|e| format!("{}: {}", bad(), e.message));
        }
        humantime::parse_duration(s)
            .map_err(|_| bad())
            .and_then(|d| {
                crate::units::limits::duration_from_secs(d.as_secs_f64(), "--slice")
                    .map(|d| d.as_secs_f64())
                    .map_err(|e| format!("{}: {}", bad(), e.message))
            })
    };
    let (start, end) = (side(a, 0.0)?, side(b, f64::INFINITY)?);
    if end <= start {
        return Err(format!("{}: its end is not after its start", bad()));
    }
    Ok((start, end))
}

/// An input cut to a time slice and to some clients: requests outside are dropped, and
/// times start at the slice's start. Its scan is a pass over the inner input's requests.
pub struct Filtered {
    inner: Box<dyn Source + Send>,
    scan: Scan,
    /// Slice bounds on the inner input's (scaled) clock.
    from: f64,
    to: f64,
    clients: Option<HashSet<u32>>,
}

impl Filtered {
    /// `inner` cut to `slice` (input seconds, multiplied by `time_scale`) and `clients`
    /// (names of the inner scan's clients; empty: all).
    pub fn new(
        inner: Box<dyn Source + Send>,
        slice: Option<(f64, f64)>,
        time_scale: f64,
        clients: &[String],
    ) -> Result<Filtered, TrafficError> {
        let s = inner.scan();
        let path = s.path.clone();
        let keep: Option<HashSet<u32>> = if clients.is_empty() {
            None
        } else {
            let mut set = HashSet::new();
            for c in clients {
                match s.clients.iter().position(|x| x == c) {
                    Some(i) => {
                        set.insert(i as u32);
                    }
                    None => {
                        return Err(TrafficError::Choose {
                            path,
                            what: format!(
                                "it has no client \"{}\"; its clients: {}",
                                crate::units::limits::excerpt(c),
                                if s.clients.is_empty() {
                                    "none (no client column)".to_string()
                                } else {
                                    crate::traffic::some_names(s.clients.iter().map(String::as_str))
                                }
                            ),
                        });
                    }
                }
            }
            Some(set)
        };
        let (from, to) = slice.map_or((0.0, f64::INFINITY), |(a, b)| {
            (a * time_scale, b * time_scale)
        });
        let mut scan = s.clone();
        scan.rows = 0;
        scan.model_rows = vec![0; s.models.len()];
        let mut last: f64 = 0.0;
        for r in inner.requests()? {
            let r = r?;
            if r.t < from
                || r.t >= to
                || keep
                    .as_ref()
                    .is_some_and(|k| !r.client.is_some_and(|c| k.contains(&c)))
            {
                continue;
            }
            scan.rows += 1;
            scan.model_rows[r.model as usize] += 1;
            last = last.max(r.t - from);
        }
        if scan.rows == 0 {
            return Err(TrafficError::Empty {
                path: s.path.clone(),
                what: "no request falls in the --slice and --client asked for".into(),
            });
        }
        scan.span_s = if to.is_finite() {
            (to - from).min(s.span_s - from).max(last)
        } else {
            last
        };
        if let Some((a, b)) = slice {
            scan.notes.push(format!(
                "slice {}..{} of the input's time ({} requests)",
                crate::units::format_go_duration(std::time::Duration::from_secs_f64(
                    a.min(crate::units::limits::MAX_INPUT_SECS)
                )),
                if b.is_finite() {
                    crate::units::format_go_duration(std::time::Duration::from_secs_f64(
                        b.min(crate::units::limits::MAX_INPUT_SECS),
                    ))
                } else {
                    "end".into()
                },
                scan.rows
            ));
        }
        if !clients.is_empty() {
            scan.notes
                .push(format!("clients {} only", clients.join(", ")));
        }
        Ok(Filtered {
            inner,
            scan,
            from,
            to,
            clients: keep,
        })
    }
}

impl Source for Filtered {
    fn scan(&self) -> &Scan {
        &self.scan
    }

    fn requests(&self) -> Result<RequestIter, TrafficError> {
        let (from, to, keep) = (self.from, self.to, self.clients.clone());
        Ok(Box::new(self.inner.requests()?.filter_map(
            move |r| match r {
                Err(e) => Some(Err(e)),
                Ok(mut r) => {
                    if r.t < from
                        || r.t >= to
                        || keep
                            .as_ref()
                            .is_some_and(|k| !r.client.is_some_and(|c| k.contains(&c)))
                    {
                        return None;
                    }
                    r.t -= from;
                    Some(Ok(r))
                }
            },
        )))
    }

    fn logged_unloads(&self) -> Option<&[crate::traffic::LoggedUnload]> {
        // Unloads are on the whole input's clock: only an uncut input is checked.
        None
    }
}
