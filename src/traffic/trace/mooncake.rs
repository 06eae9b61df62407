//! Mooncake's JSON Lines, each timestamp bucket spread evenly up to the next.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::{TraceOptions, models_for, read_error, sha256_of};
use crate::traffic::{Request, RequestIter, Scan, Source, TrafficError};

/// One Mooncake line.
#[derive(Debug, serde::Deserialize)]
struct MooncakeRow {
    timestamp: f64,
    input_length: Option<u32>,
    output_length: Option<u32>,
}

/// A Mooncake JSON Lines trace, scanned.
#[derive(Debug, Clone)]
pub struct Mooncake {
    scan: Scan,
    options: TraceOptions,
    first_ms: f64,
    /// The usual bucket width, ms (for the last bucket).
    bucket_ms: f64,
}

fn mooncake_rows(
    path: &Path,
) -> Result<
    impl Iterator<Item = Result<(u64, MooncakeRow), TrafficError>> + Send + use<>,
    TrafficError,
> {
    let file = crate::traffic::open_bounded(path)?;
    let path = path.to_path_buf();
    Ok(BufReader::with_capacity(1 << 16, file)
        .lines()
        .enumerate()
        .filter_map(move |(i, line)| {
            let line_no = i as u64 + 1;
            let text = match line {
                Ok(t) => t,
                Err(e) => return Some(Err(read_error(&path, format!("line {line_no}: {e}")))),
            };
            if text.trim().is_empty() {
                return None;
            }
            Some(
                serde_json::from_str::<MooncakeRow>(&text)
                    .map_err(|e| TrafficError::Value {
                        path: path.clone(),
                        line: line_no,
                        column: "timestamp".into(),
                        value: text,
                        expected: format!("a JSON object with a numeric \"timestamp\" (ms): {e}"),
                    })
                    .and_then(|r| {
                        if r.timestamp.is_finite() && r.timestamp >= 0.0 {
                            Ok((line_no, r))
                        } else {
                            Err(TrafficError::Value {
                                path: path.clone(),
                                line: line_no,
                                column: "timestamp".into(),
                                value: r.timestamp.to_string(),
                                expected: "milliseconds of at least 0".into(),
                            })
                        }
                    }),
            )
        }))
}

impl Mooncake {
    /// Scans `path`: rows, span, order, the bucket width.
    pub fn open(path: &Path, options: TraceOptions) -> Result<Mooncake, TrafficError> {
        let models = models_for(path, &options.models, &[])?;
        if !options.clients.is_empty() {
            return Err(TrafficError::Choose {
                path: path.to_path_buf(),
                what: "a Mooncake trace names no clients: leave out --client".into(),
            });
        }
        let mut scan = Scan {
            path: path.to_path_buf(),
            sha256: sha256_of(path)?,
            sorted: true,
            format: "Mooncake JSON Lines".into(),
            columns: vec![
                "timestamp".into(),
                "input_length".into(),
                "output_length".into(),
            ],
            models: vec![models[0].clone()],
            model_ctx: vec![None],
            ..Scan::default()
        };
        let (mut first, mut last, mut prev) = (None::<f64>, 0.0f64, f64::NEG_INFINITY);
        let mut widths: HashMap<u64, u64> = HashMap::new();
        for row in mooncake_rows(path)? {
            let (line, r) = row?;
            if r.timestamp < prev {
                return Err(TrafficError::Value {
                    path: path.to_path_buf(),
                    line,
                    column: "timestamp".into(),
                    value: r.timestamp.to_string(),
                    expected: format!(
                        "at least the previous line's {prev} (the trace is in time order)"
                    ),
                });
            }
            if r.timestamp > prev && prev.is_finite() {
                *widths
                    .entry((r.timestamp - prev).round() as u64)
                    .or_default() += 1;
            }
            prev = r.timestamp;
            let from = *first.get_or_insert(r.timestamp);
            crate::traffic::checked_secs(
                path,
                line,
                "timestamp (ms from the first, after --time-scale)",
                &r.timestamp.to_string(),
                (r.timestamp - from) / 1000.0 * options.time_scale,
            )?;
            last = r.timestamp;
            scan.rows += 1;
        }
        let Some(first) = first else {
            return Err(TrafficError::Empty {
                path: path.to_path_buf(),
                what: "no JSON lines".into(),
            });
        };
        let bucket_ms = widths
            .iter()
            .max_by_key(|(w, n)| (**n, Reverse(**w)))
            .map_or(0.0, |(w, _)| *w as f64);
        scan.model_rows = vec![scan.rows];
        scan.span_s = crate::traffic::checked_secs(
            path,
            0,
            "timestamp (the span, after --time-scale)",
            &format!("{last}"),
            (last - first + bucket_ms) / 1000.0 * options.time_scale,
        )?;
        scan.first = format!("{first} ms");
        scan.last = format!("{last} ms");
        scan.notes.push(format!(
            "Mooncake timestamps come in buckets (most often {bucket_ms:.0} ms apart): the requests of a bucket are spread evenly up to the next one"
        ));
        Ok(Mooncake {
            scan,
            options,
            first_ms: first,
            bucket_ms,
        })
    }
}

impl Source for Mooncake {
    fn scan(&self) -> &Scan {
        &self.scan
    }

    fn requests(&self) -> Result<RequestIter, TrafficError> {
        let rows = mooncake_rows(&self.scan.path)?;
        Ok(Box::new(Spread {
            rows: Box::new(rows),
            bucket: Vec::new(),
            next: None,
            out: std::collections::VecDeque::new(),
            first_ms: self.first_ms,
            bucket_ms: self.bucket_ms,
            scale: self.options.time_scale,
            done: false,
        }))
    }
}

type MooncakeRows = Box<dyn Iterator<Item = Result<(u64, MooncakeRow), TrafficError>> + Send>;

/// Mooncake rows with each bucket's requests spread evenly up to the next bucket.
struct Spread {
    rows: MooncakeRows,
    bucket: Vec<MooncakeRow>,
    next: Option<MooncakeRow>,
    out: std::collections::VecDeque<Request>,
    first_ms: f64,
    bucket_ms: f64,
    scale: f64,
    done: bool,
}

impl Iterator for Spread {
    type Item = Result<Request, TrafficError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.out.pop_front() {
                return Some(Ok(r));
            }
            if self.done {
                return None;
            }
            // Gather one bucket (rows of one timestamp) and the first row after it.
            self.bucket.clear();
            if let Some(n) = self.next.take() {
                self.bucket.push(n);
            }
            loop {
                match self.rows.next() {
                    Some(Ok((_, r))) => {
                        if self
                            .bucket
                            .first()
                            .is_none_or(|b| b.timestamp == r.timestamp)
                        {
                            self.bucket.push(r);
                        } else {
                            self.next = Some(r);
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                    None => {
                        self.done = true;
                        break;
                    }
                }
            }
            let head = self.bucket.first()?;
            let at = head.timestamp;
            let width = self
                .next
                .as_ref()
                .map_or(self.bucket_ms, |n| n.timestamp - at);
            let k = self.bucket.len() as f64;
            for (i, r) in self.bucket.iter().enumerate() {
                let ms = at - self.first_ms + width * i as f64 / k;
                self.out.push_back(Request {
                    t: ms / 1000.0 * self.scale,
                    model: 0,
                    prompt_tokens: r.input_length,
                    output_tokens: r.output_length,
                    num_ctx: None,
                    client: None,
                    keep_alive: None,
                    service_s: None,
                    kind: crate::traffic::Kind::Serve,
                });
            }
        }
    }
}
