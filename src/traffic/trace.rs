//! The public traces of `../shared/traces` as inputs: ServeGen's per-client windows
//! (`client_id,window_start_s,rate_rps,iat_cv,iat_dist,dist_shape,dist_scale`: one
//! client's rate over 600 s and the Gamma or Weibull its gaps follow; the requests are
//! regenerated per window as ServeGen's loader does, `rate × 600` gaps drawn and
//! rescaled to fill the window, seeded per client and window so every pass draws the
//! same ones), and Mooncake's JSON Lines (`timestamp` ms in about 3-s buckets,
//! `input_length`, `output_length`; the requests of one bucket are spread evenly up to
//! the next bucket). Per-request CSVs (the Azure traces) are read by `request_log`.
//! [`Filtered`] cuts any input to `--slice` and `--client`. Memory stays flat: ServeGen
//! clients stream from their own part of the file and are merged in time order.
//!
//! Over 600 lines (about 850 before its tests): three readers (ServeGen, Mooncake, the
//! `--slice`/`--client` filter) that share the window, seeding and merge helpers above
//! them; each is about 250 lines and reads as one unit with those helpers.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Gamma, Weibull};
use sha2::{Digest, Sha256};

use super::{Request, RequestIter, Scan, Source, TrafficError};

/// ServeGen's window, seconds.
pub const WINDOW_S: f64 = 600.0;

/// The columns a ServeGen windows file starts with.
const SERVEGEN_HEADER: &str = "client_id,window_start_s,rate_rps";

/// How to read a trace.
#[derive(Debug, Clone, Default)]
pub struct TraceOptions {
    /// The model of every request, or one per selected client (in `clients` order).
    pub models: Vec<String>,
    /// Clients to replay (ServeGen); empty: refused with the list of clients.
    pub clients: Vec<String>,
    /// Multiplies every gap.
    pub time_scale: f64,
    /// Seed of the regenerated gaps.
    pub seed: u64,
}

/// What kind of file `path` is: `"servegen"`, `"mooncake"` or `"csv"` (a per-request CSV).
pub fn detect(path: &Path) -> Result<&'static str, TrafficError> {
    let file = File::open(path).map_err(|e| read_error(path, e))?;
    let mut first = String::new();
    BufReader::new(file)
        .take(64 * 1024)
        .read_line(&mut first)
        .map_err(|e| read_error(path, e))?;
    let first = first.trim_start_matches('\u{feff}').trim();
    Ok(if first.starts_with('{') {
        "mooncake"
    } else if first.starts_with(SERVEGEN_HEADER) {
        "servegen"
    } else {
        "csv"
    })
}

fn read_error(path: &Path, e: impl std::fmt::Display) -> TrafficError {
    TrafficError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn sha256_of(path: &Path) -> Result<String, TrafficError> {
    let mut file = BufReader::new(File::open(path).map_err(|e| read_error(path, e))?);
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).map_err(|e| read_error(path, e))?;
    Ok(format!("{:x}", h.finalize()))
}

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
    let rate = num(2, "rate_rps")?;
    let dist = rec.get(4).unwrap_or("").trim().to_string();
    let (shape, scale) = if rate > 0.0 {
        (num(5, "dist_shape")?, num(6, "dist_scale")?)
    } else {
        (0.0, 0.0)
    };
    Ok(Window {
        start,
        requests: (rate * WINDOW_S).round() as u64,
        dist,
        shape,
        scale,
    })
}

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
        let file = File::open(path).map_err(|e| read_error(path, e))?;
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(BufReader::with_capacity(1 << 16, file));
        let header = reader.headers().map_err(|e| read_error(path, e))?.clone();
        let mut rec = csv::StringRecord::new();
        // client → (first byte, end byte, requests, active windows, last window end)
        let mut clients: Vec<(String, u64, u64, u64, u64, f64)> = Vec::new();
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
                }
                _ => {
                    if clients.iter().any(|c| c.0 == client) {
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
        let list = || {
            clients
                .iter()
                .map(|c| format!("{} ({} requests, {} active windows)", c.0, c.3, c.4))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if options.clients.is_empty() {
            return Err(TrafficError::Choose {
                path: path.to_path_buf(),
                what: format!(
                    "ServeGen windows are one stream per client: give --client ID (several: comma-separated, each its own model with --model a,b). Its clients: {}",
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
        for (i, wanted) in options.clients.iter().enumerate() {
            let Some(c) = clients.iter().find(|c| c.0 == *wanted) else {
                return Err(TrafficError::Choose {
                    path: path.to_path_buf(),
                    what: format!("it has no client {wanted:?}; its clients: {}", list()),
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
            span = span.max(c.5);
        }
        if scan.rows == 0 {
            return Err(TrafficError::Empty {
                path: path.to_path_buf(),
                what: format!("client(s) {} sent no request", options.clients.join(", ")),
            });
        }
        scan.span_s = span * options.time_scale;
        scan.first = "0 s (trace time)".into();
        scan.last = format!("{span} s (trace time)");
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

/// One model per client, or one for all.
fn models_for(
    path: &Path,
    models: &[String],
    clients: &[String],
) -> Result<Vec<String>, TrafficError> {
    match models.len() {
        0 => Err(TrafficError::Choose {
            path: path.to_path_buf(),
            what: "a trace names no model: give --model NAME (the model that serves these requests), or one per client, comma-separated".into(),
        }),
        1 => Ok(vec![models[0].clone(); clients.len().max(1)]),
        n if n == clients.len() => Ok(models.to_vec()),
        n => Err(TrafficError::Choose {
            path: path.to_path_buf(),
            what: format!(
                "--model names {n} models for {} client(s): give one for all, or one per client",
                clients.len()
            ),
        }),
    }
}

/// One client's arrivals, window by window, from its part of the file.
struct ClientStream {
    reader: csv::Reader<std::io::Take<BufReader<File>>>,
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
                .from_reader(BufReader::new(file).take(to - from));
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
            kind: super::Kind::Serve,
        }))
    }
}

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
    let file = File::open(path).map_err(|e| read_error(path, e))?;
    let path = path.to_path_buf();
    Ok(BufReader::with_capacity(1 << 16, file)
        .lines()
        .enumerate()
        .filter_map(move |(i, line)| {
            let line_no = i as u64 + 1;
            let text = match line {
                Ok(t) => t,
                Err(e) => return Some(Err(read_error(&path, e))),
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
                        value: text.chars().take(80).collect(),
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
            first.get_or_insert(r.timestamp);
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
        scan.span_s = (last - first + bucket_ms) / 1000.0 * options.time_scale;
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
                    kind: super::Kind::Serve,
                });
            }
        }
    }
}

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
            return (x.is_finite() && x >= 0.0).then_some(x).ok_or_else(bad);
        }
        humantime::parse_duration(s)
            .map(|d| d.as_secs_f64())
            .map_err(|_| bad())
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
                                "it has no client {c:?}; its clients: {}",
                                if s.clients.is_empty() {
                                    "none (no client column)".to_string()
                                } else {
                                    s.clients.join(", ")
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
                crate::units::format_go_duration(std::time::Duration::from_secs_f64(a)),
                if b.is_finite() {
                    crate::units::format_go_duration(std::time::Duration::from_secs_f64(b))
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

    fn logged_unloads(&self) -> Option<&[super::LoggedUnload]> {
        // Unloads are on the whole input's clock: only an uncut input is checked.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/traces")
            .join(name)
    }

    fn all(s: &dyn Source) -> Vec<Request> {
        s.requests()
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    fn opts(models: &[&str], clients: &[&str]) -> TraceOptions {
        TraceOptions {
            models: models.iter().map(|m| m.to_string()).collect(),
            clients: clients.iter().map(|c| c.to_string()).collect(),
            time_scale: 1.0,
            seed: 7,
        }
    }

    #[test]
    fn formats_are_told_apart() {
        assert_eq!(detect(&fixture("servegen-cut.csv")).unwrap(), "servegen");
        assert_eq!(detect(&fixture("mooncake-cut.jsonl")).unwrap(), "mooncake");
        let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/predict/gaps.csv");
        assert_eq!(detect(&csv).unwrap(), "csv");
    }

    #[test]
    fn servegen_windows_become_their_requests() {
        let path = fixture("servegen-cut.csv");
        let e = ServeGen::open(&path, opts(&["m"], &[])).unwrap_err();
        assert!(e.to_string().contains("give --client"), "{e}");
        assert!(e.to_string().contains("2 (290 requests"), "{e}");
        let e = ServeGen::open(&path, opts(&[], &["2"])).unwrap_err();
        assert!(e.to_string().contains("--model"), "{e}");
        let e = ServeGen::open(&path, opts(&["m"], &["9"])).unwrap_err();
        assert!(e.to_string().contains("no client \"9\""), "{e}");
        let g = ServeGen::open(&path, opts(&["m"], &["2"])).unwrap();
        assert_eq!(g.scan().rows, 290);
        assert_eq!(g.scan().span_s, 21600.0);
        let r = all(&g);
        assert_eq!(r.len(), 290);
        assert!(r.windows(2).all(|w| w[0].t <= w[1].t));
        // Each window's requests fall inside it: as many as rate × 600 (window 0: 53).
        assert_eq!(r.iter().filter(|q| q.t < 600.0).count(), 53);
        // The same seed draws the same gaps; another seed others.
        assert_eq!(all(&g), r);
        let other = ServeGen::open(
            &path,
            TraceOptions {
                seed: 8,
                ..opts(&["m"], &["2"])
            },
        )
        .unwrap();
        assert_ne!(all(&other), r);
        // Two clients, each its own model, merged in time order.
        let two = ServeGen::open(&path, opts(&["a", "b"], &["2", "40"])).unwrap();
        assert_eq!(two.scan().models, ["a", "b"].map(String::from));
        assert_eq!(two.scan().model_rows, [290, 16490]);
        let r2 = all(&two);
        assert_eq!(r2.len(), 290 + 16490);
        assert!(r2.windows(2).all(|w| w[0].t <= w[1].t));
        let mine: Vec<f64> = r2.iter().filter(|q| q.model == 0).map(|q| q.t).collect();
        assert_eq!(mine, r.iter().map(|q| q.t).collect::<Vec<_>>());
    }

    #[test]
    fn mooncake_buckets_are_spread_to_the_next() {
        let m = Mooncake::open(&fixture("mooncake-cut.jsonl"), opts(&["m"], &[])).unwrap();
        assert_eq!(m.scan().rows, 40);
        assert!((m.scan().span_s - 15.0).abs() < 1e-9);
        let r = all(&m);
        let t: Vec<f64> = r.iter().map(|q| q.t).collect();
        assert_eq!(t.len(), 40);
        for (i, x) in t[..10].iter().enumerate() {
            assert!((x - 0.3 * i as f64).abs() < 1e-9, "{t:?}");
        }
        // The 3 requests at 5999 ms share the 3001 ms up to 9000.
        assert!((t[26] - 5.999).abs() < 1e-9 && (t[27] - (5.999 + 3.001 / 3.0)).abs() < 1e-9);
        // The last bucket takes the usual width.
        assert!((t[39] - 13.5).abs() < 1e-9, "{t:?}");
        assert_eq!(r[0].prompt_tokens, Some(6758));
        assert_eq!(r[0].output_tokens, Some(500));
        let e = Mooncake::open(&fixture("mooncake-cut.jsonl"), opts(&["m"], &["1"])).unwrap_err();
        assert!(e.to_string().contains("no clients"), "{e}");
    }

    #[test]
    fn a_slice_cuts_and_rebases() {
        let m = Mooncake::open(&fixture("mooncake-cut.jsonl"), opts(&["m"], &[])).unwrap();
        let f = Filtered::new(Box::new(m), Some((3.0, 9.0)), 1.0, &[]).unwrap();
        // Buckets 3000 (16) and 5999 (3) only, from 0.
        assert_eq!(f.scan().rows, 19);
        assert_eq!(f.scan().span_s, 6.0);
        let t: Vec<f64> = all(&f).iter().map(|q| q.t).collect();
        assert!(
            t[0].abs() < 1e-9 && t.iter().all(|x| (0.0..6.0).contains(x)),
            "{t:?}"
        );
        // With a time scale the slice is still in the input's seconds.
        let scaled = TraceOptions {
            time_scale: 2.0,
            ..opts(&["m"], &[])
        };
        let m = Mooncake::open(&fixture("mooncake-cut.jsonl"), scaled).unwrap();
        let f = Filtered::new(Box::new(m), Some((3.0, 9.0)), 2.0, &[]).unwrap();
        assert_eq!(f.scan().rows, 19);
        let m = Mooncake::open(&fixture("mooncake-cut.jsonl"), opts(&["m"], &[])).unwrap();
        let e = Filtered::new(Box::new(m), Some((100.0, 200.0)), 1.0, &[])
            .err()
            .unwrap();
        assert!(e.to_string().contains("no request falls"), "{e}");
        assert_eq!(parse_slice("1d..8d").unwrap(), (86400.0, 8.0 * 86400.0));
        assert_eq!(parse_slice("..6h").unwrap(), (0.0, 21600.0));
        assert_eq!(parse_slice("3600..").unwrap().0, 3600.0);
        assert!(parse_slice("5..2").is_err());
        assert!(parse_slice("soon").is_err());
    }
}
