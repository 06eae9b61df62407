//! ServeGen's per-client windows, regenerated as requests and merged in time order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Gamma, Weibull};

use crate::units::limits::LineBounded;

use super::{TraceOptions, WINDOW_S, models_for, read_error, sha256_of};
use crate::traffic::{Request, RequestIter, Scan, Source, TrafficError};

/// One ServeGen window of one client.
#[derive(Debug, Clone, PartialEq)]
struct Window {
    start: f64,
    requests: u64,
    dist: String,
    shape: f64,
    scale: f64,
}

fn parse_window(path: &Path, line: u64, rec: &csv::StringRecord) -> Result<Window, TrafficError> {
    let bad = |column: &str, value: &str, expected: &str| TrafficError::Value {
        path: path.to_path_buf(),
        line,
        column: column.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    };
    let num = |i: usize, column: &str| -> Result<f64, TrafficError> {
        let v = rec.get(i).unwrap_or("").trim();
        v.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| bad(column, v, "a number of at least 0"))
    };
    let start = num(1, "window_start_s")?;
    crate::traffic::checked_secs(
        path,
        line,
        "window_start_s",
        rec.get(1).unwrap_or(""),
        start + WINDOW_S,
    )?;
    let rate = num(2, "rate_rps")?;
    // The window's requests are drawn into memory at once: their count is checked first.
    let requests = rate * WINDOW_S;
    if requests.round() > MAX_WINDOW_REQUESTS as f64 {
        return Err(bad(
            "rate_rps",
            rec.get(2).unwrap_or(""),
            &format!(
                "a rate the replay can draw: at most {MAX_WINDOW_REQUESTS} requests in one {WINDOW_S} s window ({:.0} per second), the limit on one window",
                MAX_WINDOW_REQUESTS as f64 / WINDOW_S
            ),
        ));
    }
    let dist = rec.get(4).unwrap_or("").trim().to_string();
    let (shape, scale) = if rate > 0.0 {
        (num(5, "dist_shape")?, num(6, "dist_scale")?)
    } else {
        (0.0, 0.0)
    };
    Ok(Window {
        start,
        requests: requests.round() as u64,
        dist,
        shape,
        scale,
    })
}

/// The most requests one window may hold (drawn into memory at once, 16 bytes each:
/// 160 MB at most). ServeGen's busiest published window is 2,442 requests/s, 1.47 M.
pub const MAX_WINDOW_REQUESTS: u64 = 10_000_000;

/// The arrivals of one window, seconds of trace time: `n + 1` gaps drawn from the
/// window's distribution and rescaled to fill it (evenly spaced when its parameters
/// cannot be drawn from).
fn window_arrivals(w: &Window, seed: u64, client: &str) -> Vec<f64> {
    let n = w.requests as usize;
    if n == 0 {
        return Vec::new();
    }
    let client_hash = client.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = StdRng::seed_from_u64(crate::rng::splitmix64(
        seed ^ crate::rng::splitmix64(client_hash) ^ (w.start as u64).wrapping_mul(0x9E37_79B9),
    ));
    let mut gaps: Vec<f64> = match w.dist.as_str() {
        "Gamma" => Gamma::new(w.shape, w.scale)
            .ok()
            .map(|d| (0..=n).map(|_| d.sample(&mut rng)).collect()),
        "Weibull" => Weibull::new(w.scale, w.shape)
            .ok()
            .map(|d| (0..=n).map(|_| d.sample(&mut rng)).collect()),
        _ => None,
    }
    .unwrap_or_default();
    let total: f64 = gaps.iter().sum();
    if gaps.len() != n + 1 || !(total.is_finite() && total > 0.0) {
        gaps = vec![1.0; n + 1];
    }
    let total: f64 = gaps.iter().sum();
    let mut t = w.start;
    gaps[..n]
        .iter()
        .map(|g| {
            t += g / total * WINDOW_S;
            t.min(w.start + WINDOW_S)
        })
        .collect()
}

/// A ServeGen windows file, scanned.
#[derive(Debug, Clone)]
pub struct ServeGen {
    scan: Scan,
    options: TraceOptions,
    /// Per selected client: its name and the byte range of its rows.
    sections: Vec<(String, u64, u64)>,
}

impl ServeGen {
    /// Scans `path`: where each client's rows are, and the requests of the selected ones.
    pub fn open(path: &Path, options: TraceOptions) -> Result<ServeGen, TrafficError> {
        let file = crate::traffic::open_bounded(path)?;
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(BufReader::with_capacity(1 << 16, file));
        let header = reader.headers().map_err(|e| read_error(path, e))?.clone();
        let mut rec = csv::StringRecord::new();
        // client → (first byte, end byte, requests, active windows, last window end,
        // last active window end)
        let mut clients: Vec<(String, u64, u64, u64, u64, f64, f64)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            let pos = reader.position().byte();
            match reader.read_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(read_error(path, e)),
            }
            let line = rec.position().map_or(0, |p| p.line());
            let client = rec.get(0).unwrap_or("").trim().to_string();
            let w = parse_window(path, line, &rec)?;
            let end = reader.position().byte();
            match clients.last_mut() {
                Some(c) if c.0 == client => {
                    if w.start + WINDOW_S < c.5 {
                        return Err(TrafficError::Value {
                            path: path.to_path_buf(),
                            line,
                            column: "window_start_s".into(),
                            value: w.start.to_string(),
                            expected: format!(
                                "a window after the client's previous one (which ends at {} s): a client's windows in time order",
                                c.5
                            ),
                        });
                    }
                    c.2 = end;
                    c.3 += w.requests;
                    c.4 += u64::from(w.requests > 0);
                    c.5 = c.5.max(w.start + WINDOW_S);
                    if w.requests > 0 {
                        c.6 = c.6.max(w.start + WINDOW_S);
                    }
                }
                _ => {
                    if !seen.insert(client.clone()) {
                        return Err(TrafficError::Value {
                            path: path.to_path_buf(),
                            line,
                            column: "client_id".into(),
                            value: client,
                            expected: "the rows of one client together (ServeGen's files are concatenated per client)".into(),
                        });
                    }
                    clients.push((
                        client,
                        pos,
                        end,
                        w.requests,
                        u64::from(w.requests > 0),
                        w.start + WINDOW_S,
                        if w.requests > 0 {
                            w.start + WINDOW_S
                        } else {
                            0.0
                        },
                    ));
                }
            }
        }
        if clients.is_empty() {
            return Err(TrafficError::Empty {
                path: path.to_path_buf(),
                what: "a header and no window rows".into(),
            });
        }
        // One per line, the busiest first (a file holds thousands of clients).
        let list = || {
            let mut order: Vec<&(String, u64, u64, u64, u64, f64, f64)> = clients.iter().collect();
            order.sort_by(|a, b| b.3.cmp(&a.3).then(b.4.cmp(&a.4)));
            order
                .iter()
                .take(20)
                .map(|c| {
                    format!(
                        "\n  {} ({} requests, {} active windows)",
                        crate::units::limits::excerpt(&c.0),
                        c.3,
                        c.4
                    )
                })
                .chain((clients.len() > 20).then(|| format!("\n  and {} more", clients.len() - 20)))
                .collect::<String>()
        };
        if options.clients.is_empty() {
            return Err(TrafficError::Choose {
                path: path.to_path_buf(),
                what: format!(
                    "ServeGen windows are one stream per client: give --client ID (several: comma-separated, each its own model with --model a,b). Its clients, the busiest first:{}",
                    list()
                ),
            });
        }
        let mut sections = Vec::new();
        let mut scan = Scan {
            path: path.to_path_buf(),
            sha256: sha256_of(path)?,
            sorted: true,
            format: "ServeGen client windows".into(),
            columns: header.iter().map(str::to_string).collect(),
            ..Scan::default()
        };
        let models = models_for(path, &options.models, &options.clients)?;
        let mut span: f64 = 0.0;
        let mut file_span: f64 = 0.0;
        for (i, wanted) in options.clients.iter().enumerate() {
            let Some(c) = clients.iter().find(|c| c.0 == *wanted) else {
                return Err(TrafficError::Choose {
                    path: path.to_path_buf(),
                    what: format!(
                        "it has no client \"{}\"; its clients, the busiest first:{}",
                        crate::units::limits::excerpt(wanted),
                        list()
                    ),
                });
            };
            sections.push((c.0.clone(), c.1, c.2));
            scan.clients.push(c.0.clone());
            let m = match scan.models.iter().position(|x| *x == models[i]) {
                Some(m) => m,
                None => {
                    scan.models.push(models[i].clone());
                    scan.model_rows.push(0);
                    scan.model_ctx.push(None);
                    scan.models.len() - 1
                }
            };
            scan.model_rows[m] += c.3;
            scan.rows += c.3;
            // The client's span: to the end of its last window with requests (a file's
            // idle tail is not the client's traffic, and a split there is empty).
            span = span.max(c.6);
            file_span = file_span.max(c.5);
        }
        if scan.rows == 0 {
            return Err(TrafficError::Empty {
                path: path.to_path_buf(),
                what: format!("client(s) {} sent no request", options.clients.join(", ")),
            });
        }
        scan.span_s = crate::traffic::checked_secs(
            path,
            0,
            "window_start_s (the last window's end, after --time-scale)",
            &format!("{}", span * options.time_scale),
            span * options.time_scale,
        )?;
        scan.first = "0 s (trace time)".into();
        scan.last = format!("{span} s (trace time)");
        if file_span > span {
            scan.notes.push(format!(
                "the client's traffic ends at {} s of the file's {} s (its last window with requests): the span replayed and split is the client's",
                span, file_span
            ));
        }
        scan.notes.push(format!(
            "ServeGen windows regenerated as requests (rate × 600 s gaps per window from its fitted {}, seed {}): the idle windows are real, the gaps inside a window are drawn",
            "Gamma or Weibull", options.seed
        ));
        Ok(ServeGen {
            scan,
            options,
            sections,
        })
    }
}

/// One client's arrivals, window by window, from its part of the file.
struct ClientStream {
    reader: csv::Reader<LineBounded<std::io::Take<BufReader<File>>>>,
    rec: csv::StringRecord,
    path: PathBuf,
    client: String,
    seed: u64,
    pending: std::vec::IntoIter<f64>,
}

impl Iterator for ClientStream {
    type Item = Result<f64, TrafficError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(t) = self.pending.next() {
                return Some(Ok(t));
            }
            match self.reader.read_record(&mut self.rec) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(read_error(&self.path, e))),
            }
            let w = match parse_window(&self.path, 0, &self.rec) {
                Ok(w) => w,
                Err(e) => return Some(Err(e)),
            };
            self.pending = window_arrivals(&w, self.seed, &self.client).into_iter();
        }
    }
}

impl Source for ServeGen {
    fn scan(&self) -> &Scan {
        &self.scan
    }

    fn requests(&self) -> Result<RequestIter, TrafficError> {
        let path = &self.scan.path;
        let models = models_for(path, &self.options.models, &self.options.clients)?;
        let mut streams = Vec::new();
        for (i, (client, from, to)) in self.sections.iter().enumerate() {
            let mut file = File::open(path).map_err(|e| read_error(path, e))?;
            file.seek(SeekFrom::Start(*from))
                .map_err(|e| read_error(path, e))?;
            let reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(LineBounded::new(BufReader::new(file).take(to - from)));
            let model = self
                .scan
                .models
                .iter()
                .position(|m| *m == models[i])
                .unwrap_or(0) as u32;
            streams.push((
                ClientStream {
                    reader,
                    rec: csv::StringRecord::new(),
                    path: path.clone(),
                    client: client.clone(),
                    seed: self.options.seed,
                    pending: Vec::new().into_iter(),
                },
                model,
                i as u32,
            ));
        }
        Ok(Box::new(Merge::new(streams, self.options.time_scale)))
    }
}

/// Client streams merged in time order.
struct Merge {
    streams: Vec<(ClientStream, u32, u32)>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    scale: f64,
    failed: Option<TrafficError>,
}

impl Merge {
    fn new(mut streams: Vec<(ClientStream, u32, u32)>, scale: f64) -> Merge {
        let mut heap = BinaryHeap::new();
        let mut failed = None;
        for (i, s) in streams.iter_mut().enumerate() {
            match s.0.next() {
                Some(Ok(t)) => heap.push(Reverse((t.to_bits(), i))),
                Some(Err(e)) => failed = Some(e),
                None => {}
            }
        }
        Merge {
            streams,
            heap,
            scale,
            failed,
        }
    }
}

impl Iterator for Merge {
    type Item = Result<Request, TrafficError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.failed.take() {
            self.heap.clear();
            return Some(Err(e));
        }
        // Non-negative f64 bits order as the numbers do.
        let Reverse((bits, i)) = self.heap.pop()?;
        let t = f64::from_bits(bits);
        match self.streams[i].0.next() {
            Some(Ok(next)) => self.heap.push(Reverse((next.to_bits(), i))),
            Some(Err(e)) => self.failed = Some(e),
            None => {}
        }
        let (_, model, client) = &self.streams[i];
        Some(Ok(Request {
            t: t * self.scale,
            model: *model,
            prompt_tokens: None,
            output_tokens: None,
            num_ctx: None,
            client: Some(*client),
            keep_alive: None,
            service_s: None,
            kind: crate::traffic::Kind::Serve,
        }))
    }
}
