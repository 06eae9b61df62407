//! The Prometheus source, for GPUs on other hosts: either an instant query against a
//! Prometheus server (`/api/v1/query`, JSON) or a scrape of an exporter's `/metrics`
//! (text format, parsed here). It reads DCGM's framebuffer metrics (MiB) per GPU, and the
//! simulator's `kabench_sim_*` metrics (bytes), which is how the `sim` source works.
//! Knows nothing of Ollama's API or of the run folder.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{Reading, Sampler, SourceError};

/// DCGM framebuffer used, MiB.
pub const DCGM_FB_USED: &str = "DCGM_FI_DEV_FB_USED";
/// DCGM framebuffer free, MiB.
pub const DCGM_FB_FREE: &str = "DCGM_FI_DEV_FB_FREE";
/// DCGM framebuffer reserved by the driver, MiB.
pub const DCGM_FB_RESERVED: &str = "DCGM_FI_DEV_FB_RESERVED";
/// DCGM framebuffer total, MiB (some exporter versions).
pub const DCGM_FB_TOTAL: &str = "DCGM_FI_DEV_FB_TOTAL";
/// Simulator: modelled VRAM in use, bytes.
pub const SIM_USED: &str = "kabench_sim_vram_used_bytes";
/// Simulator: modelled VRAM size, bytes.
pub const SIM_TOTAL: &str = "kabench_sim_vram_total_bytes";
/// Simulator: one resident model's `size_vram`, bytes (label `model`).
pub const SIM_MODEL: &str = "kabench_sim_model_size_vram_bytes";
/// Query sent to a Prometheus server when none is configured.
pub const DEFAULT_QUERY: &str = DCGM_FB_USED;

const MIB: f64 = 1024.0 * 1024.0;

/// One series of a text exposition: name, labels, value (timestamps are ignored).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Metric name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// A line of a text exposition that could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

/// Parses Prometheus' text exposition format (version 0.0.4): comments and blank lines
/// are skipped; every other line must be `name{labels} value [timestamp]`.
pub fn parse_text(text: &str) -> Result<Vec<Series>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).map_err(|reason| ParseError {
            line: i + 1,
            reason,
        })?);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<Series, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("a metric name without a value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, tail) = parse_labels(after)?;
        labels = parsed;
        rest = tail;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    Ok(Series {
        name: name.to_string(),
        labels,
        value: parse_value(value)?,
    })
}

/// Reads `k="v",…}` and returns the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start();
        if let Some(tail) = s.strip_prefix('}') {
            return Ok((labels, tail));
        }
        let eq = s.find('=').ok_or("a label without '='")?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start();
        s = s.strip_prefix('"').ok_or("a label value without quotes")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("an unfinished escape".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("an unterminated label value".into()),
            }
        };
        labels.insert(key, value);
        s = s[end + 1..].trim_start();
        if let Some(tail) = s.strip_prefix(',') {
            s = tail;
        } else if !s.starts_with('}') {
            return Err("labels not separated by ','".into());
        }
    }
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => v.parse::<f64>().map_err(|_| format!("bad value {v:?}")),
    }
}

/// The device a series describes: `gpu<N>`, prefixed by `Hostname` (or `instance`) when
/// present (`node-a/gpu0`), so several hosts can share one Prometheus.
pub fn device_of(labels: &BTreeMap<String, String>) -> String {
    let gpu = labels
        .get("gpu")
        .map(|g| format!("gpu{g}"))
        .or_else(|| labels.get("device").cloned())
        .unwrap_or_else(|| "gpu".into());
    match labels.get("Hostname").or_else(|| labels.get("instance")) {
        Some(host) if !host.is_empty() => format!("{host}/{gpu}"),
        _ => gpu,
    }
}

fn to_bytes(v: f64, scale: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        (v * scale).round() as u64
    } else {
        0
    }
}

/// Memory readings from a scrape: one row per GPU from DCGM's framebuffer metrics
/// (total = used + free + reserved, or DCGM's total), and the simulator's device and
/// per-model rows. Other series are ignored.
pub fn readings_from_series(series: &[Series]) -> Vec<Reading> {
    let mut extra_mib: BTreeMap<String, f64> = BTreeMap::new();
    let mut dcgm_total: BTreeMap<String, f64> = BTreeMap::new();
    let mut sim_total: BTreeMap<String, u64> = BTreeMap::new();
    for s in series {
        let dev = device_of(&s.labels);
        match s.name.as_str() {
            DCGM_FB_FREE | DCGM_FB_RESERVED => *extra_mib.entry(dev).or_default() += s.value,
            DCGM_FB_TOTAL => {
                dcgm_total.insert(dev, s.value);
            }
            SIM_TOTAL => {
                sim_total.insert(sim_device(s), to_bytes(s.value, 1.0));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for s in series {
        match s.name.as_str() {
            DCGM_FB_USED => {
                let dev = device_of(&s.labels);
                let total = dcgm_total
                    .get(&dev)
                    .copied()
                    .or_else(|| extra_mib.get(&dev).map(|x| x + s.value));
                out.push(Reading {
                    model: String::new(),
                    used_bytes: to_bytes(s.value, MIB),
                    total_bytes: total.map(|t| to_bytes(t, MIB)),
                    extra: s.labels.get("modelName").cloned().unwrap_or_default(),
                    device: dev,
                });
            }
            SIM_USED => {
                let dev = sim_device(s);
                out.push(Reading {
                    model: String::new(),
                    used_bytes: to_bytes(s.value, 1.0),
                    total_bytes: sim_total.get(&dev).copied(),
                    extra: String::new(),
                    device: dev,
                });
            }
            SIM_MODEL => out.push(Reading {
                device: sim_device(s),
                model: s.labels.get("model").cloned().unwrap_or_default(),
                used_bytes: to_bytes(s.value, 1.0),
                total_bytes: None,
                extra: String::new(),
            }),
            _ => {}
        }
    }
    out
}

fn sim_device(s: &Series) -> String {
    s.labels
        .get("device")
        .cloned()
        .unwrap_or_else(|| "sim".into())
}

/// A Prometheus `/api/v1/query` reply.
#[derive(Debug, Deserialize)]
struct QueryReply {
    status: String,
    #[serde(default)]
    data: Option<QueryData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct QueryData {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: Vec<QuerySeries>,
}

#[derive(Debug, Deserialize)]
struct QuerySeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// Readings from an instant query's JSON reply: one row per series of the vector. Values
/// are MiB when the series (or, lacking a name, the query) is a DCGM framebuffer metric,
/// bytes otherwise.
pub fn readings_from_query(body: &[u8], query: &str) -> Result<Vec<Reading>, SourceError> {
    let reply: QueryReply = serde_json::from_slice(body)
        .map_err(|e| SourceError::Failed(format!("Prometheus reply is not JSON: {e}")))?;
    if reply.status != "success" {
        return Err(SourceError::Failed(format!(
            "Prometheus query failed: {}",
            reply.error.unwrap_or(reply.status)
        )));
    }
    let data = reply
        .data
        .ok_or_else(|| SourceError::Failed("Prometheus reply has no data".into()))?;
    if data.result_type != "vector" {
        return Err(SourceError::Unavailable(format!(
            "query {query:?} gives a {}, not an instant vector",
            data.result_type
        )));
    }
    let query_is_dcgm = query.contains("DCGM_FI_DEV_FB");
    data.result
        .into_iter()
        .map(|s| {
            let v = parse_value(&s.value.1).map_err(SourceError::Failed)?;
            let dcgm = match s.metric.get("__name__") {
                Some(n) => n.starts_with("DCGM_FI_DEV_FB"),
                None => query_is_dcgm,
            };
            Ok(Reading {
                device: device_of(&s.metric),
                model: String::new(),
                used_bytes: to_bytes(v, if dcgm { MIB } else { 1.0 }),
                total_bytes: None,
                extra: s.metric.get("modelName").cloned().unwrap_or_default(),
            })
        })
        .collect()
}

/// What the sampler asks.
#[derive(Debug, Clone)]
enum Mode {
    /// GET an exposition text.
    Scrape(reqwest::Url),
    /// GET an instant query.
    Query(reqwest::Url, String),
}

/// Scrapes an exporter or queries a Prometheus server.
pub struct PromSampler {
    name: String,
    http: reqwest::Client,
    mode: Mode,
}

fn client(interval: Duration) -> Result<reqwest::Client, SourceError> {
    // A poll may take longer than one interval (ticks are skipped), never forever.
    let timeout = (interval * 20).clamp(Duration::from_secs(1), Duration::from_secs(10));
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| SourceError::Unavailable(format!("HTTP client: {e}")))
}

fn parse_url(url: &str) -> Result<reqwest::Url, SourceError> {
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    reqwest::Url::parse(&with_scheme)
        .map_err(|e| SourceError::Unavailable(format!("bad URL {url:?}: {e}")))
}

impl PromSampler {
    /// A sampler named `name` for `url`: a URL whose path ends in `/metrics` is scraped;
    /// any other is a Prometheus server asked `query` (default [`DEFAULT_QUERY`]) at
    /// `/api/v1/query` (appended unless the URL already ends with it).
    pub fn new(
        name: &str,
        url: &str,
        query: Option<&str>,
        interval: Duration,
    ) -> Result<Self, SourceError> {
        let parsed = parse_url(url)?;
        let path = parsed.path().trim_end_matches('/').to_string();
        if path.ends_with("/metrics") && query.is_none() {
            return Self::scrape(name, url, interval);
        }
        let mut q = parsed.clone();
        if !path.ends_with("/api/v1/query") {
            q.set_path(&format!("{path}/api/v1/query"));
        }
        let query = query.unwrap_or(DEFAULT_QUERY).to_string();
        q.query_pairs_mut().append_pair("query", &query);
        Ok(PromSampler {
            name: name.to_string(),
            http: client(interval)?,
            mode: Mode::Query(q, query),
        })
    }

    /// A sampler named `name` that scrapes the exposition text at `url`.
    pub fn scrape(name: &str, url: &str, interval: Duration) -> Result<Self, SourceError> {
        Ok(PromSampler {
            name: name.to_string(),
            http: client(interval)?,
            mode: Mode::Scrape(parse_url(url)?),
        })
    }

    async fn get(&self, url: &reqwest::Url) -> Result<bytes::Bytes, SourceError> {
        let resp = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| SourceError::Failed(format!("GET {url}: {e}")))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(SourceError::Unavailable(format!(
                "GET {url}: 404 Not Found"
            )));
        }
        if !status.is_success() {
            return Err(SourceError::Failed(format!("GET {url}: HTTP {status}")));
        }
        resp.bytes()
            .await
            .map_err(|e| SourceError::Failed(format!("GET {url}: {e}")))
    }
}

impl Sampler for PromSampler {
    fn name(&self) -> &str {
        &self.name
    }

    async fn sample(&mut self) -> Result<Vec<Reading>, SourceError> {
        match &self.mode {
            Mode::Scrape(url) => {
                let body = self.get(url).await?;
                let text = String::from_utf8_lossy(&body);
                let series =
                    parse_text(&text).map_err(|e| SourceError::Failed(format!("{url}: {e}")))?;
                Ok(readings_from_series(&series))
            }
            Mode::Query(url, query) => {
                let body = self.get(url).await?;
                readings_from_query(&body, query)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_with_escapes_commas_and_braces_parse() {
        let s = parse_text(
            "# HELP x y\n\nm{a=\"1\",b=\"q\\\"uo}te,\\n\",} 2.5e3 1700000000000\nplain 7\n",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].labels["b"], "q\"uo}te,\n");
        assert_eq!(s[0].value, 2500.0);
        assert_eq!(s[1].name, "plain");
        assert!(s[1].labels.is_empty());
    }

    #[test]
    fn a_broken_line_is_an_error_with_its_number() {
        let e = parse_text("ok 1\nbad{a=\"x} 3\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse_text("m{a=1} 2").is_err());
        assert!(parse_text("m 1x").is_err());
    }

    #[test]
    fn simulator_metrics_give_device_and_model_rows() {
        let text = "kabench_sim_vram_used_bytes 3000\nkabench_sim_vram_total_bytes 8000\n\
                    kabench_sim_model_size_vram_bytes{model=\"a:1b\"} 1000\n\
                    kabench_sim_model_size_vram_bytes{model=\"b:2b\"} 2000\n";
        let r = readings_from_series(&parse_text(text).unwrap());
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].device.as_str(), r[0].model.as_str()), ("sim", ""));
        assert_eq!((r[0].used_bytes, r[0].total_bytes), (3000, Some(8000)));
        assert_eq!((r[2].model.as_str(), r[2].used_bytes), ("b:2b", 2000));
    }

    #[test]
    fn instant_query_reply_in_mib_per_host_and_gpu() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"DCGM_FI_DEV_FB_USED","gpu":"1","Hostname":"node-a"},
             "value":[1724400000.123,"2048"]}]}}"#;
        let r = readings_from_query(body, "DCGM_FI_DEV_FB_USED").unwrap();
        assert_eq!(r[0].device, "node-a/gpu1");
        assert_eq!(r[0].used_bytes, 2048 * 1024 * 1024);
        let bytes = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"instance":"h:9100"},"value":[1.0,"1000"]}]}}"#;
        let r = readings_from_query(bytes, "sum(gpu_used_bytes)").unwrap();
        assert_eq!(
            (r[0].device.as_str(), r[0].used_bytes),
            ("h:9100/gpu", 1000)
        );
        let err = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert!(readings_from_query(err, "x(").is_err());
    }

    #[test]
    fn url_decides_between_scrape_and_query() {
        let i = Duration::from_millis(100);
        let s = PromSampler::new("prometheus", "http://h:9400/metrics", None, i).unwrap();
        assert!(matches!(s.mode, Mode::Scrape(_)));
        let q = PromSampler::new("prometheus", "h:9090", None, i).unwrap();
        match q.mode {
            Mode::Query(u, _) => {
                assert_eq!(u.path(), "/api/v1/query");
                assert_eq!(u.query(), Some("query=DCGM_FI_DEV_FB_USED"));
            }
            Mode::Scrape(_) => panic!("expected a query"),
        }
    }
}
