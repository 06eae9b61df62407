//! A cell against a server kabench starts itself (llama.cpp's `llama-server`, its
//! router mode or llama-swap, whose config file and log check are `llama_kinds`'s): the
//! server started from its command template for this cell's idle-unload value on a
//! free loopback port, its output in `servers/<cell>.log` of the run folder (a path
//! kabench builds, never from server text), a bounded wait for `GET /health`, the
//! cell's sends at their intended times as streamed completions (`api = "chat"`:
//! `/v1/chat/completions`; `"generate"`: the native `/completion`), and the
//! server stopped (SIGTERM, then SIGKILL) when the cell ends, fails or is interrupted.
//!
//! Residency and the cold rule: just before each send, `GET /props` (which does not
//! reset the idle timer, unlike `/metrics` and `/slots`, never asked here) says
//! whether the model sleeps; a request that found it asleep (or unloaded) is cold
//! (`not_resident`), and so is one whose time to first token carries a load: the part
//! of it the server's own timings do not account for (its prompt time and one token),
//! recorded as `load_duration_ms`, at or over the cold threshold (`load_duration`).
//! The server loaded its model at start, so a cell's first request is warm unless the
//! server fell asleep before it. Memory: the RSS of the server's process tree, sampled
//! at the telemetry interval into `vram.csv` as source `server_rss`, from its start to
//! the end of the cell's idle horizon.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::folder::{self, RequestRecord, VramSample, classify_cold};
use crate::llama::server::{self, ManagedServer};
use crate::llama::{ChatExchange, Endpoint, LlamaClient, ModelResidency};
use crate::run::request::{self, RowGuard};
use crate::run::{CellTiming, Recorder};
use crate::scenario::{Cell, CellStream, ManagedCell};

/// The folder of the run folder that holds each started server's log.
pub const SERVERS_DIR: &str = "servers";

/// How long a managed server may take to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long the residency read before a send may take; past it the request goes out
/// with residency unknown.
pub const RESIDENCY_TIMEOUT: Duration = Duration::from_secs(1);

/// What a managed cell needs from the run.
pub(crate) struct ManagedRun<'a> {
    /// The cell's server name.
    pub name: &'a str,
    /// How to start it.
    pub managed: &'a ManagedCell,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// The cold threshold.
    pub cold_threshold: Duration,
    /// Memory sampling interval.
    pub interval: Duration,
    /// How long to watch after the last send (the idle horizon's tail).
    pub horizon_tail: Duration,
}

/// The log file of `cell`'s server in the run folder `dir`.
pub fn log_path(dir: &std::path::Path, cell: &str) -> PathBuf {
    dir.join(SERVERS_DIR).join(format!("{cell}.log"))
}

impl ManagedRun<'_> {
    /// Starts the server, runs the cell, stops the server (on every path).
    pub async fn run_cell(
        &self,
        cell: &Cell,
        rec: &mut Recorder,
        cancel: &CancellationToken,
    ) -> Result<CellTiming> {
        let port = server::free_port().context("choosing a free port for the server")?;
        let mut values: Vec<(&str, String)> = self
            .managed
            .values
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        values.push(("port", port.to_string()));
        values.extend(super::llama_kinds::prepare(self.managed, cell, &rec.dir)?);
        let argv = server::fill(&self.managed.command, &values)?;
        let log = log_path(&rec.dir, &cell.id);
        std::fs::create_dir_all(log.parent().unwrap_or(&rec.dir))
            .with_context(|| format!("creating {}", log.display()))?;
        let mut srv = ManagedServer::start(
            &argv,
            &log,
            &format!("http://127.0.0.1:{port}"),
            self.managed.kind,
            self.managed.health_timeout,
            cancel,
        )
        .await
        .with_context(|| format!("server {:?} for cell {}", self.name, cell.id))?;
        // The cell starts at its first send, and so do its memory samples: the
        // server's start-up belongs to no cell (a sample before the first send would
        // fall in the previous cell's window).
        let start = Instant::now() + Duration::from_millis(20);
        let sampling = CancellationToken::new();
        let sampler = rec.extra_rows().zip(srv.pid()).map(|(rows, pid)| {
            tokio::spawn(sample_memory(
                pid,
                self.name.to_string(),
                rows,
                (rec.epoch, start),
                self.interval,
                sampling.clone(),
            ))
        });
        let colds = Arc::new(Mutex::new(Vec::new()));
        let ran = self
            .sends(cell, start, &srv.client, rec, &colds, cancel)
            .await;
        if let Ok(t) = &ran
            && !cancel.is_cancelled()
        {
            // Watch memory to the end of the idle horizon: the sleep shows in it.
            let last_send = request::plan_sends(cell)?
                .last()
                .map_or(Duration::ZERO, |p| p.offset);
            let end = rec.epoch
                + Duration::from_secs_f64(t.started_ms.max(0.0) / 1000.0)
                + last_send
                + self.horizon_tail;
            tokio::select! {
                _ = tokio::time::sleep_until(end.into()) => {}
                _ = cancel.cancelled() => {}
            }
        }
        sampling.cancel();
        if let Some(task) = sampler {
            let _ = task.await;
        }
        srv.stop(super::llama_kinds::stop_grace(
            self.managed.kind,
            STOP_GRACE,
        ))
        .await;
        let started_ms = ran?.started_ms;
        if !cancel.is_cancelled() {
            let sent = colds.lock().map(|c| c.clone()).unwrap_or_default();
            super::llama_kinds::check(
                self.managed.kind,
                cell,
                self.managed.knob,
                &log,
                &sent,
                rec,
            )?;
        }
        Ok(CellTiming {
            started_ms,
            ended_ms: rec.now_ms(),
        })
    }

    /// The cell's sends at their intended times, each a task under the concurrency
    /// cap; returns when every one has ended (or been cancelled).
    async fn sends(
        &self,
        cell: &Cell,
        start: Instant,
        client: &LlamaClient,
        rec: &Recorder,
        colds: &Arc<Mutex<Vec<super::llama_kinds::Sent>>>,
        cancel: &CancellationToken,
    ) -> Result<CellTiming> {
        let planned = request::plan_sends(cell)?;
        let started_ms = folder::ms(start.saturating_duration_since(rec.epoch));
        let cap = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for p in planned {
            let stream = cell.streams[p.stream].clone();
            let intended = start + p.offset;
            let mut row = request::new_row(&cell.id, p.seq, &stream);
            row.intended_ms = folder::ms(intended.saturating_duration_since(rec.epoch));
            let colds = colds.clone();
            let (client, cap, rows, epoch, cancel) = (
                client.clone(),
                cap.clone(),
                rec.rows.clone(),
                rec.epoch,
                cancel.clone(),
            );
            let (timeout, threshold) = (self.timeout, self.cold_threshold);
            tasks.spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep_until(intended.into()) => {}
                    _ = cancel.cancelled() => return,
                }
                let mut guard = RowGuard::new(row, rows.clone(), epoch);
                let Ok(_permit) = cap.try_acquire() else {
                    if let Some(mut row) = guard.take() {
                        row.end_ms = folder::ms(Instant::now().saturating_duration_since(epoch));
                        row.error = "saturated".into();
                        row.error_detail = "the concurrency cap was reached".into();
                        let _ = rows.send(row);
                    }
                    return;
                };
                let residency = client.residency(&stream.model, RESIDENCY_TIMEOUT).await;
                let (endpoint, body) = request_body(&stream);
                let ex = tokio::select! {
                    ex = client.stream(endpoint, &body, timeout) => ex,
                    _ = cancel.cancelled() => return,
                };
                if let Some(row) = guard.take() {
                    let row = fill_row(row, residency, &ex, intended, epoch, threshold);
                    if let Ok(mut c) = colds.lock() {
                        c.push(super::llama_kinds::Sent::of(&stream.model, &row));
                    }
                    let _ = rows.send(row);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok(CellTiming {
            started_ms,
            ended_ms: rec.now_ms(),
        })
    }
}

/// The endpoint and body of a stream's requests: `api = "chat"` a
/// `/v1/chat/completions` body, `"generate"` a native `/completion` one (scenario
/// validation refuses `"embed"` against these servers).
pub fn request_body(stream: &CellStream) -> (Endpoint, serde_json::Value) {
    let prompt = request::prompt_text(stream);
    match stream.api {
        crate::scenario::Api::Generate => (
            Endpoint::Completion,
            json!({
                "model": stream.model,
                "prompt": prompt,
                "n_predict": stream.max_tokens,
                "stream": true,
            }),
        ),
        _ => (
            Endpoint::Chat,
            json!({
                "model": stream.model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": stream.max_tokens,
                "stream": true,
            }),
        ),
    }
}

/// What a failed request's detail adds when it was sent while llama-swap showed its
/// model `stopping` ([`ModelResidency::Stopping`]).
pub const STOPPING_HANG: &str = "; sent while GET /running showed the model stopping: llama-swap (v235) never answers a request sent then, nor later ones to that model until it is unloaded (POST /api/models/unload/<model>)";

/// The row of one chat exchange, with the cold rule of a llama.cpp server (see the
/// module doc).
pub fn fill_row(
    mut row: RequestRecord,
    residency: Option<ModelResidency>,
    ex: &ChatExchange,
    intended: Instant,
    epoch: Instant,
    threshold: Duration,
) -> RequestRecord {
    let at = |t: Instant| folder::ms(t.saturating_duration_since(epoch));
    let since_intended = |t: Instant| folder::ms(t.saturating_duration_since(intended));
    row.sent_ms = Some(at(ex.sent_at));
    row.first_byte_ms = ex.first_byte_at.map(at);
    row.first_token_ms = ex.first_token_at.map(at);
    row.first_answer_ms = ex.first_token_at.map(at);
    row.end_ms = at(ex.end_at);
    row.status = ex.status;
    row.resident_before = residency.map(ModelResidency::is_resident);
    row.prompt_eval_count = ex.prompt_n;
    row.prompt_eval_ms = ex.prompt_ms;
    row.eval_count = ex.predicted_n;
    row.eval_ms = ex.predicted_ms;
    // The load a time to first token carries: what the server's own timings leave
    // unexplained (its prompt time and one token's generation).
    if let (Some(ft), Some(prompt_ms)) = (ex.first_token_at, ex.prompt_ms) {
        let per_token = match (ex.predicted_ms, ex.predicted_n) {
            (Some(ms), Some(n)) if n > 0 => ms / n as f64,
            _ => 0.0,
        };
        let ttft_sent = folder::ms(ft.saturating_duration_since(ex.sent_at));
        row.load_duration_ms = Some((ttft_sent - prompt_ms - per_token).max(0.0));
    }
    let load = row
        .load_duration_ms
        .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    let reason = classify_cold(row.resident_before, load, threshold);
    row.cold = reason.is_some();
    row.cold_reason = reason.map(|r| r.as_str().to_string()).unwrap_or_default();
    match &ex.error {
        Some((kind, detail)) => {
            row.error = kind.clone();
            row.error_detail = detail.clone();
            if residency == Some(ModelResidency::Stopping) {
                row.error_detail.push_str(STOPPING_HANG);
            }
        }
        None => {
            row.ttft_ms = ex.first_token_at.or(ex.first_byte_at).map(since_intended);
            row.e2e_ms = Some(since_intended(ex.end_at));
            let tokens = ex.predicted_n.unwrap_or(u64::from(ex.chunks));
            if let Some(ft) = ex.first_token_at
                && tokens > 1
            {
                row.itl_ms =
                    Some(folder::ms(ex.end_at.saturating_duration_since(ft)) / (tokens - 1) as f64);
            }
        }
    }
    row
}

/// Samples the RSS of the server's process tree every `interval` into `vram.csv`
/// (source `server_rss`, device: the server's name) from `from` until `stop`; times
/// count from `epoch`.
async fn sample_memory(
    pid: u32,
    name: String,
    rows: std::sync::mpsc::Sender<VramSample>,
    (epoch, from): (Instant, Instant),
    interval: Duration,
    stop: CancellationToken,
) {
    let every = interval.max(Duration::from_millis(10));
    tokio::select! {
        _ = tokio::time::sleep_until(from.into()) => {}
        _ = stop.cancelled() => return,
    }
    loop {
        let bytes = tokio::task::spawn_blocking(move || crate::telemetry::rss::tree_rss(pid))
            .await
            .ok()
            .flatten();
        if let Some(used) = bytes {
            let sample = VramSample {
                t_ms: folder::ms(Instant::now().saturating_duration_since(epoch)),
                source: folder::SERVER_RSS.into(),
                device: name.clone(),
                model: String::new(),
                used_bytes: used,
                total_bytes: None,
                extra: format!("pid {pid}"),
                ..Default::default()
            };
            if rows.send(sample).is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(sent: Instant, ttft_ms: u64, prompt_ms: f64) -> ChatExchange {
        ChatExchange {
            sent_at: sent,
            first_byte_at: Some(sent),
            first_token_at: Some(sent + Duration::from_millis(ttft_ms)),
            end_at: sent + Duration::from_millis(ttft_ms + 30),
            status: Some(200),
            chunks: 4,
            prompt_n: Some(16),
            prompt_ms: Some(prompt_ms),
            predicted_n: Some(4),
            predicted_ms: Some(40.0),
            error: None,
        }
    }

    #[test]
    fn asleep_or_a_load_in_the_first_token_is_cold_and_nothing_else_is() {
        let epoch = Instant::now();
        let sent = epoch + Duration::from_secs(1);
        let t = Duration::from_millis(100);
        let row = || RequestRecord::default();
        // Found asleep by /props: cold whatever the timing.
        let r = fill_row(
            row(),
            Some(ModelResidency::Sleeping),
            &exchange(sent, 30, 15.0),
            sent,
            epoch,
            t,
        );
        assert!(r.cold && r.cold_reason == "not_resident", "{r:?}");
        assert_eq!(r.resident_before, Some(false));
        // Loaded, but 300 ms of the first token is not prompt nor a token: a load.
        let r = fill_row(
            row(),
            Some(ModelResidency::Loaded),
            &exchange(sent, 330, 15.0),
            sent,
            epoch,
            t,
        );
        assert!(r.cold && r.cold_reason == "load_duration", "{r:?}");
        assert!((r.load_duration_ms.unwrap() - 305.0).abs() < 1.0, "{r:?}");
        // Loaded and fast: warm.
        let r = fill_row(
            row(),
            Some(ModelResidency::Loaded),
            &exchange(sent, 30, 15.0),
            sent,
            epoch,
            t,
        );
        assert!(!r.cold, "{r:?}");
        assert_eq!(r.ttft_ms, Some(30.0));
        assert_eq!(r.eval_count, Some(4));
        // Unknown residency and no timings: warm, nothing guessed.
        let mut ex = exchange(sent, 30, 15.0);
        ex.prompt_ms = None;
        let r = fill_row(row(), None, &ex, sent, epoch, t);
        assert!(!r.cold && r.resident_before.is_none() && r.load_duration_ms.is_none());
    }

    #[test]
    fn a_failure_sent_while_llama_swap_stopped_the_model_says_so_and_no_other_does() {
        let epoch = Instant::now();
        let sent = epoch + Duration::from_secs(1);
        let fill = |residency, ex: &ChatExchange| {
            let t = Duration::from_millis(100);
            fill_row(
                RequestRecord::default(),
                Some(residency),
                ex,
                sent,
                epoch,
                t,
            )
        };
        let mut failed = exchange(sent, 30, 15.0);
        failed.error = Some(("timeout".into(), "no end within 6s".into()));
        let r = fill(ModelResidency::Stopping, &failed);
        assert_eq!(r.error, "timeout");
        assert_eq!(r.error_detail, format!("no end within 6s{STOPPING_HANG}"));
        assert_eq!(r.resident_before, Some(false));
        let r = fill(ModelResidency::Unloaded, &failed);
        assert_eq!(r.error_detail, "no end within 6s");
        // Answered while stopping: nothing to explain.
        let r = fill(ModelResidency::Stopping, &exchange(sent, 330, 15.0));
        assert!(r.error_detail.is_empty() && r.cold, "{r:?}");
    }

    #[test]
    fn the_body_is_a_streamed_chat_or_native_completion_with_the_streams_output_cap() {
        let mut stream = CellStream {
            name: "s".into(),
            model: "tiny".into(),
            api: crate::scenario::Api::Chat,
            num_ctx: 512,
            prompt: crate::scenario::Prompt::Text("hi".into()),
            max_tokens: 4,
            keep_alive: None,
            arrival: crate::scenario::Arrival::Constant {
                rate: crate::units::Rate::parse("1/s").unwrap(),
            },
            requests: Some(1),
            duration: None,
            warmup: 0,
            images: 0,
            think: None,
            repetition: 0,
            seed: 0,
        };
        let (endpoint, b) = request_body(&stream);
        assert_eq!(endpoint, Endpoint::Chat);
        assert_eq!(b["stream"], true);
        assert_eq!(b["max_tokens"], 4);
        assert_eq!(b["messages"][0]["content"], "hi");
        assert!(b.get("keep_alive").is_none());
        stream.api = crate::scenario::Api::Generate;
        let (endpoint, b) = request_body(&stream);
        assert_eq!(endpoint, Endpoint::Completion);
        assert_eq!((&b["prompt"], &b["n_predict"]), (&json!("hi"), &json!(4)));
        assert_eq!(b["model"], "tiny");
    }
}
