//! The doctor's side of the wire: raw JSON requests (so any keep_alive form, even an
//! invalid one, goes out exactly as written), `/api/ps` read back with `expires_at`
//! parsed, and the server's clock estimated from `created_at` so an expiry is measured
//! against the server's time, not this machine's. Every body is read up to
//! [`MAX_BODY_BYTES`]; a redirect is an error naming where it points (never followed);
//! a `created_at` or `expires_at` far off any real clock cannot overflow the clock
//! arithmetic.

use std::time::{Duration, Instant};

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ollama::name;

/// How long one request may take (a cold load of a large model on a busy host).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest body the doctor reads (16 MiB): an `/api/ps` or `/api/tags` of
/// thousands of models fits; a server that never stops sending does not.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// The largest clock difference taken from a `created_at` (one day): a stamp further
/// off this machine's clock is a bogus stamp, not a skewed clock, and is not used.
const MAX_SKEW: time::Duration = time::Duration::days(1);

/// The server answered with a redirect, which the doctor never follows: a redirected
/// POST arrives as a GET elsewhere and its answer would be read as a verdict.
#[derive(Debug, thiserror::Error)]
#[error(
    "{method} {url}: the server answered HTTP {status} with a redirect to {location}; kabench does not follow redirects (a redirected POST arrives as a GET, and the answer from elsewhere would be misread as the server's verdict): point --target at the address Ollama itself answers on, or fix the proxy in front of it"
)]
pub struct Redirected {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The URL requested.
    pub url: String,
    /// The 3xx status.
    pub status: u16,
    /// The `Location` header, or a note that there was none.
    pub location: String,
}

/// A body longer than [`MAX_BODY_BYTES`].
#[derive(Debug, thiserror::Error)]
#[error(
    "{method} {url}: the reply body is longer than {limit} bytes (the doctor's body limit); this is not an Ollama reply"
)]
pub struct BodyTooLong {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The URL requested.
    pub url: String,
    /// The limit, bytes.
    pub limit: usize,
}

/// One request as it went out: method, path and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Req {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// Path on the server, e.g. `/api/generate` (one naming a model is built).
    pub path: std::borrow::Cow<'static, str>,
    /// JSON body (POST only).
    pub body: Option<Value>,
}

impl Req {
    /// A POST with a JSON body.
    pub fn post(path: &'static str, body: Value) -> Req {
        Req {
            method: "POST",
            path: path.into(),
            body: Some(body),
        }
    }

    /// A GET.
    pub fn get(path: &'static str) -> Req {
        Req {
            method: "GET",
            path: path.into(),
            body: None,
        }
    }

    /// A POST without a body to a path built at run time (llama-swap's
    /// `/api/models/unload/<model>`).
    pub fn post_empty(path: String) -> Req {
        Req {
            method: "POST",
            path: path.into(),
            body: None,
        }
    }

    /// `POST /api/generate {"model":…,"keep_alive":0}` (E6): unload, any model.
    pub fn unload(model: &str) -> Req {
        Req::post(
            "/api/generate",
            serde_json::json!({"model": model, "keep_alive": 0}),
        )
    }

    /// `METHOD PATH BODY` on one line.
    pub fn line(&self) -> String {
        match &self.body {
            Some(b) => format!("{} {} {b}", self.method, self.path),
            None => format!("{} {}", self.method, self.path),
        }
    }
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body, parsed when it is JSON.
    pub json: Option<Value>,
    /// The body as text.
    pub text: String,
    /// When the reply ended, in server time: the later of its `created_at` and the
    /// moment its last byte arrived here (corrected by the estimated clock offset).
    /// The server hears of a request's end no earlier than it wrote the reply, which
    /// on a busy host can come seconds after the `created_at` stamped in it.
    pub end: OffsetDateTime,
    /// Time from sending to the end of the body, on this machine.
    pub elapsed: Duration,
}

impl Reply {
    /// `load_duration` of the reply, seconds.
    pub fn load_seconds(&self) -> Option<f64> {
        let ns = self.json.as_ref()?.get("load_duration")?.as_f64()?;
        Some(ns / 1e9)
    }

    /// The `version` string of a `/api/version` answer (Ollama, llama-swap).
    pub fn version(&self) -> Option<String> {
        let v = self.json.as_ref()?.get("version")?.as_str()?;
        Some(v.to_string())
    }

    /// The `error` text of an error body (`{"error":"…"}` or OpenAI's
    /// `{"error":{"message":"…"}}`), else the body.
    pub fn error_text(&self) -> String {
        let e = self.json.as_ref().and_then(|j| j.get("error"));
        match e {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| v.to_string(), str::to_string),
            None => self.text.chars().take(200).collect(),
        }
    }
}

/// One model of `/api/ps`.
#[derive(Debug, Clone, PartialEq)]
pub struct Resident {
    /// Name as listed (`tiny-50m:latest`).
    pub name: String,
    /// Unload deadline.
    pub expires_at: OffsetDateTime,
    /// Per-slot `num_ctx`, when listed.
    pub context_length: Option<u64>,
    /// Resident bytes.
    pub size: u64,
    /// Of them, bytes in GPU memory (0 on a CPU-only host).
    pub size_vram: u64,
}

impl Resident {
    /// Whether the deadline is Go's maximum duration ahead (forever, P4).
    pub fn forever(&self, now: OffsetDateTime) -> bool {
        (self.expires_at - now).whole_days() > 365 * 100
    }
}

/// What went wrong with a request that got no HTTP answer, named: the connection
/// refused, a timeout, a name that does not resolve, TLS, or the innermost error's
/// own words; walked down the error's source chain (reqwest's own text stops at
/// "error sending request for url").
pub fn cause(e: &reqwest::Error) -> String {
    let mut chain = Vec::new();
    let mut io_kind = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind = io_kind.or(Some(io.kind()));
        }
        chain.push(s.to_string());
        source = s.source();
    }
    let all = chain.join(": ").to_ascii_lowercase();
    let inner = chain.last().cloned().unwrap_or_default();
    let named = if e.is_timeout() || io_kind == Some(std::io::ErrorKind::TimedOut) {
        format!(
            "timed out (no answer within {} s): the server is busy or a firewall drops the packets",
            REQUEST_TIMEOUT.as_secs()
        )
    } else if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
        "connection refused: nothing listens on that address and port (is Ollama running there? check OLLAMA_HOST on the server and --target)".into()
    } else if all.contains("dns error") || all.contains("failed to lookup address") {
        format!("the host name does not resolve (DNS: {inner})")
    } else if all.contains("tls")
        || all.contains("certificate")
        || all.contains("scheme is not http")
    {
        format!("TLS: {inner}; kabench talks plain http to Ollama: give an http:// --target")
    } else if io_kind == Some(std::io::ErrorKind::ConnectionReset) {
        format!("the connection was reset by the server ({inner})")
    } else {
        return chain.join(": ");
    };
    format!("{named} [{}]", chain.join(": "))
}

/// `local` corrected by `skew`; the local clock itself where that would pass the end
/// of the calendar (never an overflow).
fn server_time(local: OffsetDateTime, skew: time::Duration) -> OffsetDateTime {
    local.checked_add(skew).unwrap_or(local)
}

/// The end of a reply whose last byte arrived at `local_end` (this machine's clock)
/// with the server's `created_at` stamp, if it had one, and the clock offset `skew`
/// estimated so far; with the offset estimated anew. A `created_at` is stamped before
/// the reply is written, so `created_at − local_end` is at most the true offset: the
/// largest seen is the best estimate. A server on this machine shares its clock.
fn reply_end(
    created: Option<OffsetDateTime>,
    local_end: OffsetDateTime,
    skew: Option<time::Duration>,
    same_clock: bool,
) -> (OffsetDateTime, Option<time::Duration>) {
    let skew = match created {
        _ if same_clock => None,
        Some(c) => Some(skew.map_or(c - local_end, |s| s.max(c - local_end))),
        None => skew,
    };
    let arrived = server_time(local_end, skew.unwrap_or(time::Duration::ZERO));
    (created.map_or(arrived, |c| c.max(arrived)), skew)
}

/// A server being probed.
pub struct Server {
    http: reqwest::Client,
    base: String,
    /// Server clock minus local clock, once a `created_at` gave an estimate (never
    /// for a server on this machine).
    skew: Option<time::Duration>,
    /// The most distinct models any `/api/ps` answer listed at once.
    pub most_resident: usize,
    /// The models the probes load: their leaving `/api/ps` is no eviction.
    pub probes: Vec<String>,
    /// Models that left `/api/ps` before their keep-alive ran out, in order.
    pub evictions: Vec<Eviction>,
    /// The last `/api/ps` listing, to compare the next with.
    last_listing: Option<Vec<Resident>>,
}

/// A model that left `/api/ps` with keep-alive left: the scheduler evicted it.
#[derive(Debug, Clone, PartialEq)]
pub struct Eviction {
    /// The model evicted.
    pub victim: String,
    /// The probe model that appeared in the same listing (the load that evicted it),
    /// if one did; none when the probe model was already resident (a reload).
    pub by: Option<String>,
    /// How many models `/api/ps` listed just before.
    pub resident_before: usize,
    /// Every model of both listings had `size_vram` 0: a CPU-only host, where only
    /// `OLLAMA_MAX_LOADED_MODELS` evicts.
    pub cpu_only: bool,
}

impl Server {
    /// A client for `base` (`http://host:port`, no trailing slash).
    pub fn new(base: &str) -> anyhow::Result<Server> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Server {
            http,
            base: base.trim_end_matches('/').to_string(),
            skew: None,
            most_resident: 0,
            probes: Vec::new(),
            evictions: Vec::new(),
            last_listing: None,
        })
    }

    /// `http://host:port` of the server.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether the server is on this machine (a loopback address), so that its files
    /// are this machine's.
    pub fn is_local(&self) -> bool {
        reqwest::Url::parse(&self.base)
            .ok()
            .and_then(|u| {
                let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
                Some(
                    host.eq_ignore_ascii_case("localhost")
                        || host
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback()),
                )
            })
            .unwrap_or(false)
    }

    /// The server's clock now (the local clock corrected by the last `created_at`).
    pub fn now(&self) -> OffsetDateTime {
        server_time(
            OffsetDateTime::now_utc(),
            self.skew.unwrap_or(time::Duration::ZERO),
        )
    }

    /// Sends `req`; an error (naming the request, the status and the server's words)
    /// unless HTTP 200.
    pub async fn send_ok(&mut self, req: &Req) -> anyhow::Result<Reply> {
        let r = self.send(req).await?;
        if r.status != 200 {
            anyhow::bail!(
                "{}: HTTP {}: {}",
                req.line(),
                r.status,
                crate::units::limits::excerpt(&r.error_text())
            );
        }
        Ok(r)
    }

    /// Sends `req`; an error only when no HTTP answer came.
    pub async fn send(&mut self, req: &Req) -> anyhow::Result<Reply> {
        let url = format!("{}{}", self.base, req.path);
        let start = Instant::now();
        let builder = match req.method {
            "GET" => self.http.get(&url),
            _ => self.http.post(&url),
        };
        let builder = match &req.body {
            Some(b) => builder.json(b),
            None => builder,
        };
        let mut resp = builder
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{} {url}: {}", req.method, cause(&e)))?;
        let status = resp.status().as_u16();
        if (300..400).contains(&status) {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map_or("(no Location header)".into(), |v| {
                    crate::units::limits::excerpt(&String::from_utf8_lossy(v.as_bytes()))
                });
            return Err(Redirected {
                method: req.method,
                url,
                status,
                location,
            }
            .into());
        }
        let mut body = Vec::new();
        while let Some(piece) = resp
            .chunk()
            .await
            .map_err(|e| anyhow::anyhow!("{} {url}: reading the body: {}", req.method, cause(&e)))?
        {
            if body.len() + piece.len() > MAX_BODY_BYTES {
                return Err(BodyTooLong {
                    method: req.method,
                    url,
                    limit: MAX_BODY_BYTES,
                }
                .into());
            }
            body.extend_from_slice(&piece);
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        drop(body);
        let local_end = OffsetDateTime::now_utc();
        let elapsed = start.elapsed();
        let json: Option<Value> = serde_json::from_str(&text).ok();
        let created = json
            .as_ref()
            .and_then(|j| j.get("created_at"))
            .and_then(Value::as_str)
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
            .filter(|c| (*c - local_end).abs() <= MAX_SKEW);
        let (end, skew) = reply_end(created, local_end, self.skew, self.is_local());
        self.skew = skew;
        Ok(Reply {
            status,
            json,
            text,
            end,
            elapsed,
        })
    }

    /// `GET /api/ps`, parsed.
    pub async fn ps(&mut self) -> anyhow::Result<Vec<Resident>> {
        let reply = self.send(&Req::get("/api/ps")).await?;
        let models = reply
            .json
            .as_ref()
            .and_then(|j| j.get("models"))
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow::anyhow!("/api/ps: unexpected reply {}", reply.text))?;
        let mut names: Vec<&str> = models
            .iter()
            .filter_map(|m| m.get("name")?.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        self.most_resident = self.most_resident.max(names.len());
        let listed: Vec<Resident> = models
            .iter()
            .filter_map(|m| {
                Some(Resident {
                    name: m.get("name")?.as_str()?.to_string(),
                    expires_at: OffsetDateTime::parse(m.get("expires_at")?.as_str()?, &Rfc3339)
                        .ok()?,
                    context_length: m.get("context_length").and_then(Value::as_u64),
                    size: m.get("size").and_then(Value::as_u64).unwrap_or(0),
                    size_vram: m.get("size_vram").and_then(Value::as_u64).unwrap_or(0),
                })
            })
            .collect();
        self.note_evictions(&listed);
        Ok(listed)
    }

    /// Compares `now` with the listing before it: a model that left `/api/ps` with
    /// more than a second of keep-alive left, and is not a probe model, was evicted.
    fn note_evictions(&mut self, now: &[Resident]) {
        let server_now = self.now();
        if let Some(last) = self.last_listing.take() {
            let probe = |n: &str| self.probes.iter().any(|p| name::same_model(p, n));
            let loaded_probe = now
                .iter()
                .find(|m| probe(&m.name) && !last.iter().any(|l| l.name == m.name));
            for gone in last.iter().filter(|l| {
                !probe(&l.name)
                    && !now.iter().any(|m| m.name == l.name)
                    && (l.forever(server_now) || (l.expires_at - server_now).as_seconds_f64() > 1.0)
            }) {
                self.evictions.push(Eviction {
                    victim: gone.name.clone(),
                    by: loaded_probe.map(|m| m.name.clone()),
                    resident_before: last.len(),
                    cpu_only: last.iter().chain(now).all(|m| m.size_vram == 0),
                });
            }
        }
        self.last_listing = Some(now.to_vec());
    }

    /// `model` in `/api/ps`, if resident.
    pub async fn find(&mut self, model: &str) -> anyhow::Result<Option<Resident>> {
        Ok(self
            .ps()
            .await?
            .into_iter()
            .find(|m| name::same_model(&m.name, model)))
    }

    /// Polls `/api/ps` every 50 ms until `model` is gone or `limit` passes; true when gone.
    pub async fn wait_gone(&mut self, model: &str, limit: Duration) -> anyhow::Result<bool> {
        let start = Instant::now();
        loop {
            if self.find(model).await?.is_none() {
                return Ok(true);
            }
            if start.elapsed() > limit {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Unloads `model` (E6) and waits until it left `/api/ps` (up to 10 s).
    pub async fn unload(&mut self, model: &str) -> anyhow::Result<()> {
        let reply = self.send(&Req::unload(model)).await?;
        if reply.status != 200 {
            anyhow::bail!(
                "unloading {model}: HTTP {}: {}",
                reply.status,
                reply.error_text()
            );
        }
        if !self.wait_gone(model, Duration::from_secs(10)).await? {
            anyhow::bail!("unloading {model}: still in /api/ps after 10 s");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_clock_never_overflows_the_calendar() {
        let last = OffsetDateTime::parse("9999-12-31T23:59:59.999999999Z", &Rfc3339).unwrap();
        let now = OffsetDateTime::now_utc();
        // A skew that would pass the end of the calendar falls back to the local clock.
        assert_eq!(server_time(now, last - now + time::Duration::days(1)), now);
        assert_eq!(
            server_time(now, time::Duration::seconds(5)),
            now + time::Duration::seconds(5)
        );
        // A stamp that far off is never taken as the server's clock.
        assert!((last - now).abs() > MAX_SKEW);
    }

    #[test]
    fn a_reply_written_late_ends_when_it_arrived_not_when_it_was_stamped() {
        let s = time::Duration::seconds;
        let arrived = OffsetDateTime::now_utc();
        // On this machine: stamped 2 s before its last byte arrived (a busy host).
        let (end, skew) = reply_end(Some(arrived - s(2)), arrived, None, true);
        assert_eq!((end, skew), (arrived, None));
        // A remote server 10 s ahead: the offset is the largest stamp minus arrival,
        // and a late reply does not pull it back.
        let (end, skew) = reply_end(Some(arrived + s(10)), arrived, None, false);
        assert_eq!((end, skew), (arrived + s(10), Some(s(10))));
        let (end, skew) = reply_end(Some(arrived + s(8)), arrived, skew, false);
        assert_eq!((end, skew), (arrived + s(10), Some(s(10))));
        // No stamp: the arrival in server time.
        let (end, _) = reply_end(None, arrived, Some(s(10)), false);
        assert_eq!(end, arrived + s(10));
    }
}
